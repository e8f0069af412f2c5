// bias_act (CPU, fp32, in place): x = act(x + bias) + residual, the epilogue of a GEMM done
// by torch (MKL/oneDNN). act: identity, relu, gelu (erf), gelu_new (tanh), the formulas of
// eet/activations.h with the vectorizable erf/tanh of vec_math.h. One pass over x.
#include "eet/ops.h"
#include "vec_math.h"

namespace eet {
namespace cpu {

namespace {

template <Act A>
void run(float* x, const float* bias, const float* residual, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * cols;
    const float* res = residual != nullptr ? residual + r * cols : nullptr;
    if (bias != nullptr && res != nullptr) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) xr[c] = activate<A, VecMath>(xr[c] + bias[c]) + res[c];
    } else if (bias != nullptr) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) xr[c] = activate<A, VecMath>(xr[c] + bias[c]);
    } else if (res != nullptr) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) xr[c] = activate<A, VecMath>(xr[c]) + res[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) xr[c] = activate<A, VecMath>(xr[c]);
    }
  }
}

}  // namespace

void bias_act(float* x,               // [N, C], in place
              const float* bias,      // [C] or null
              const float* residual,  // [N, C] or null
              Act act, int64_t rows, int64_t cols) {
  switch (act) {
    case Act::kIdentity: return run<Act::kIdentity>(x, bias, residual, rows, cols);
    case Act::kRelu: return run<Act::kRelu>(x, bias, residual, rows, cols);
    case Act::kGeluErf: return run<Act::kGeluErf>(x, bias, residual, rows, cols);
    case Act::kGeluTanh: return run<Act::kGeluTanh>(x, bias, residual, rows, cols);
  }
  // Unreachable for valid enums; the binding maps names to Act and rejects the rest.
}

}  // namespace cpu
}  // namespace eet
