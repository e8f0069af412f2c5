// bias_act (CPU, fp32, in place): x = act(x + bias) + residual, the epilogue of a GEMM done
// by torch (MKL/oneDNN). act: identity, relu, gelu (erf), gelu_new (tanh). One pass over x.
#include "eet/ops.h"
#include "vec_math.h"

namespace eet {
namespace cpu {

namespace {

template <Act A>
inline float apply(float v) {
  if constexpr (A == Act::kRelu) return v > 0.f ? v : 0.f;
  if constexpr (A == Act::kGeluErf) return 0.5f * v * (1.f + verf(v * 0.70710678118654752f));
  if constexpr (A == Act::kGeluTanh)
    return 0.5f * v * (1.f + vtanh(0.79788456080286536f * (v + 0.044715f * v * v * v)));
  return v;
}

template <Act A>
void run(float* x, const float* bias, const float* residual, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * cols;
    const float* res = residual != nullptr ? residual + r * cols : nullptr;
    if (bias != nullptr && res != nullptr) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) xr[c] = apply<A>(xr[c] + bias[c]) + res[c];
    } else if (bias != nullptr) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) xr[c] = apply<A>(xr[c] + bias[c]);
    } else if (res != nullptr) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) xr[c] = apply<A>(xr[c]) + res[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) xr[c] = apply<A>(xr[c]);
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
