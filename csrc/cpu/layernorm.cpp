// layernorm (CPU, fp32): y = LN(x + residual + bias) * gamma + beta, h_out = x + residual + bias.
// Two passes over each row (mean, then centered variance) for accuracy; rows in parallel.
// Any hidden size; the inner loops are written for auto-vectorization.
#include <cmath>
#include <vector>

#include "eet/ops.h"

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
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int64_t c = 0; c < hidden; ++c) sum += h[c];
      const float mean = sum / static_cast<float>(hidden);
      float sq = 0.f;
#pragma omp simd reduction(+ : sq)
      for (int64_t c = 0; c < hidden; ++c) {
        const float d = h[c] - mean;
        sq += d * d;
      }
      const float rstd = 1.f / std::sqrt(sq / static_cast<float>(hidden) + eps);
      float* yr = y + r * hidden;
#pragma omp simd
      for (int64_t c = 0; c < hidden; ++c) yr[c] = (h[c] - mean) * rstd * gamma[c] + beta[c];
    }
  }
}

}  // namespace cpu
}  // namespace eet
