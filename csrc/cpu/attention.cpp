// attention (CPU, fp32): multi-head softmax(scale * q k^T) v over strided Q/K/V with per-row
// key ranges and optional causal masking (see AttnParams in ops.h). Any head_dim, any length.
// One task per (batch, head); with several queries K is transposed once into [D, keys] so
// the score row is a vectorized axpy over keys instead of one horizontal dot per key.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "eet/ops.h"
#include "vec_math.h"

namespace eet {
namespace cpu {

void attention(const AttnParams& p) {
  const int64_t B = p.batch, H = p.heads, Sq = p.q_len, Sk = p.k_len, D = p.head_dim;
  const float* q = static_cast<const float*>(p.q);
  const float* k = static_cast<const float*>(p.k);
  const float* v = static_cast<const float*>(p.v);
  float* out = static_cast<float*>(p.out);
  // Transposing K only pays when several queries reuse it.
  const bool transpose_k = Sq >= 4;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(std::max<int64_t>(Sk, 1)));
    std::vector<float> kt(transpose_k ? static_cast<size_t>(D * Sk) : 0);
    std::vector<float> acc(static_cast<size_t>(D));
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        int64_t ks = p.key_start != nullptr ? p.key_start[b] : 0;
        int64_t ke = (p.key_end != nullptr ? p.key_end[b] : Sk) + p.key_end_add;
        ks = std::clamp<int64_t>(ks, 0, Sk);
        ke = std::clamp<int64_t>(ke, 0, Sk);
        const float* kbh = k + b * p.k_stride_b + h * p.k_stride_h;
        const float* vbh = v + b * p.v_stride_b + h * p.v_stride_h;
        const int64_t n_all = std::max<int64_t>(ke - ks, 0);
        if (transpose_k) {
          for (int64_t j = 0; j < n_all; ++j) {
            const float* kj = kbh + (ks + j) * p.k_stride_s;
            for (int64_t d = 0; d < D; ++d) kt[d * n_all + j] = kj[d];
          }
        }
        for (int64_t i = 0; i < Sq; ++i) {
          float* o = out + b * p.o_stride_b + i * p.o_stride_s + h * p.o_stride_h;
          int64_t hi = ke;
          if (p.causal) hi = std::min<int64_t>(hi, i + p.causal_offset + 1);
          const int64_t n = hi - ks;
          if (n <= 0) {
            std::memset(o, 0, sizeof(float) * D);
            continue;
          }
          const float* qi = q + b * p.q_stride_b + i * p.q_stride_s + h * p.q_stride_h;
          float* s = scores.data();
          if (transpose_k) {
            std::fill(s, s + n, 0.f);
            for (int64_t d = 0; d < D; ++d) {
              const float qd = qi[d] * p.scale;
              const float* ktd = kt.data() + d * n_all;
#pragma omp simd
              for (int64_t j = 0; j < n; ++j) s[j] += qd * ktd[j];
            }
          } else {
            for (int64_t j = 0; j < n; ++j) {
              const float* kj = kbh + (ks + j) * p.k_stride_s;
              float dot = 0.f;
#pragma omp simd reduction(+ : dot)
              for (int64_t d = 0; d < D; ++d) dot += qi[d] * kj[d];
              s[j] = dot * p.scale;
            }
          }
          float mx = s[0];
#pragma omp simd reduction(max : mx)
          for (int64_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
          float sum = 0.f;
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < n; ++j) {
            s[j] = vexp(s[j] - mx);
            sum += s[j];
          }
          std::fill(acc.begin(), acc.end(), 0.f);
          float* a = acc.data();
          for (int64_t j = 0; j < n; ++j) {
            const float pj = s[j];
            const float* vj = vbh + (ks + j) * p.v_stride_s;
#pragma omp simd
            for (int64_t d = 0; d < D; ++d) a[d] += pj * vj[d];
          }
          const float inv = 1.f / sum;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) o[d] = a[d] * inv;
        }
      }
    }
  }
}

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
