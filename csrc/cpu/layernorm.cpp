// layernorm (CPU, fp32): y = LN(x + residual + bias) * gamma + beta, h_out = x + residual + bias.
// Rows in parallel; each row is normalized by layernorm_row (vec_math.h).
// Any hidden size; the inner loops are written for auto-vectorization.
#include <cmath>
#include <vector>

#include "eet/ops.h"
#include "vec_math.h"

namespace eet {
namespace cpu {

void layernorm(const float* x,         // [N, H]
               const float* residual,  // [N, H] or null
               const float* bias,      // [H] or null
               const float* gamma,     // [H]
               const float* beta,      // [H]
               float* y,               // [N, H]
               float* h_out,           // [N, H] or null
               int64_t rows, int64_t hidden, float eps) {
  const bool fused = residual != nullptr || bias != nullptr;
#pragma omp parallel if (rows * hidden > 32768)
  {
    std::vector<float> scratch(fused && h_out == nullptr ? hidden : 0);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * hidden;
      const float* h = xr;
      if (fused) {
        float* hr = h_out != nullptr ? h_out + r * hidden : scratch.data();
        const float* res = residual != nullptr ? residual + r * hidden : nullptr;
#pragma omp simd
        for (int64_t c = 0; c < hidden; ++c) {
          float v = xr[c];
          if (res != nullptr) v += res[c];
          if (bias != nullptr) v += bias[c];
          hr[c] = v;
        }
        h = hr;
      } else if (h_out != nullptr) {
        std::copy(xr, xr + hidden, h_out + r * hidden);
      }
      layernorm_row(h, y + r * hidden, gamma, beta, hidden, eps);
    }
  }
}

}  // namespace cpu
}  // namespace eet
