// kv_cache_write (CPU, fp32): k_cache[b, h, pos_b + s, :] = k[b, s, h, :] (same for v), the
// K/V of a prompt pass or a decode step copied into the preallocated [B, H, Smax, D] cache;
// destinations outside [0, max_seq) are skipped (see CacheWriteParams in ops.h). Bit-exact
// copies, any head_dim. The CUDA twin is cuda/kv_cache.cu.
#include <cstring>

#include "eet/ops.h"

namespace eet {
namespace cpu {

void kv_cache_write(const CacheWriteParams& p) {
  const float* k = static_cast<const float*>(p.k);
  const float* v = static_cast<const float*>(p.v);
  float* kc = static_cast<float*>(p.k_cache);
  float* vc = static_cast<float*>(p.v_cache);
  const int64_t D = p.head_dim, S = p.seq, H = p.heads, M = p.max_seq;
#pragma omp parallel for schedule(static) collapse(2) if (p.batch * S * H * D > 65536)
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t base = p.positions != nullptr ? p.positions[b] : 0;
      for (int64_t s = 0; s < S; ++s) {
        const int64_t dst = base + s;
        if (dst < 0 || dst >= M) continue;
        const int64_t off = b * p.cache_stride_b + (h * M + dst) * D;
        std::memcpy(kc + off, k + b * p.k_stride_b + s * p.k_stride_s + h * p.k_stride_h,
                    sizeof(float) * D);
        std::memcpy(vc + off, v + b * p.v_stride_b + s * p.v_stride_s + h * p.v_stride_h,
                    sizeof(float) * D);
      }
    }
  }
}

}  // namespace cpu
}  // namespace eet
