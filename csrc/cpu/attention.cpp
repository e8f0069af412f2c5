// attention (CPU, fp32): multi-head softmax(scale * q k^T) v over strided Q/K/V with per-row
// key ranges and optional causal masking (see AttnParams in ops.h). Any head_dim, any length.
// One task per (batch, head). Prompt passes run GEMM-style register-blocked micro-kernels
// (4 queries x 16 keys, then 4 queries x 16 dims) over a transposed copy of K; decode steps
// (fewer than 4 queries) take one dot product per key.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <immintrin.h>

#include "eet/ops.h"
#include "vec_math.h"

namespace eet {
namespace cpu {

namespace {

constexpr int kQB = 4;        // queries per register block (AVX2; 8 with AVX-512)
constexpr int kQBMax = 8;
constexpr int kKBMax = 32;    // keys per register block: two vectors (16 AVX2, 32 AVX-512)

// GCC: the generic helpers below take and return v16 by value; they are always inlined into the
// AVX-512 kernel, so the ABI note about AVX-512 vectors never applies.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v16 __attribute__((vector_size(64), aligned(4)));

// Unaligned loads and stores through memcpy: a template argument drops the aligned(4) of the
// v8/v16 typedefs, so a dereference would assume full vector alignment.
template <class V>
__attribute__((always_inline)) inline V vload(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <class V>
__attribute__((always_inline)) inline void vstore(float* p, V x) { std::memcpy(p, &x, sizeof(V)); }

// Softmax of s[0, n) in place, zeroing s[n, n_pad); returns 1/sum (0 when n <= 0). Not inlined:
// its vectorized sums must not change with the instruction set of the caller (the AVX-512 and
// AVX2 prompt kernels give the same bits).
__attribute__((noinline)) float softmax_row(float* s, int64_t n, int64_t n_pad) {
  if (n <= 0) {
    std::fill(s, s + n_pad, 0.f);
    return 0.f;
  }
  // The max 8 lanes at a time (GCC leaves the omp simd max reduction scalar: a 4-cycle
  // dependency per score, most of a prompt pass's softmax). The max is the same whatever order.
  __m256 vm = _mm256_set1_ps(s[0]);
  int64_t j8 = 0;
  for (; j8 + 8 <= n; j8 += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j8));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vm);
  float mx = lanes[0];
  for (float l : lanes) mx = std::max(mx, l);
  for (; j8 < n; ++j8) mx = std::max(mx, s[j8]);
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    s[j] = vexp(s[j] - mx);
    sum += s[j];
  }
  std::fill(s + n, s + n_pad, 0.f);
  return 1.f / sum;
}

// Prompt pass for one (b, h): K is transposed once into kt [D, n_pad] (zero padded), then
// blocks of QB queries x 2 vectors of keys are computed with the accumulators in registers
// (scores), and the same for QB queries x 2 vectors of output dims (P V), GEMM-style. V is the
// vector type: v8 (AVX2, QB 4) or v16 (AVX-512, QB 8). Each score and output element is one FMA
// chain over d (scores) or over the keys (P V) in the same order whatever V and QB, so both
// instances give the same bits (the AVX-512 one is inlined into a target("avx512f") wrapper).
template <class V, int QB>
__attribute__((always_inline)) inline void attend_block_rows_t(const AttnParams& p, int64_t b, int64_t h, int64_t ks,
                                                               int64_t ke, float* kt, float* scores, float* qbuf) {
  constexpr int L = sizeof(V) / sizeof(float), KB = 2 * L;
  const int64_t D = p.head_dim, Sq = p.q_len;
  const float* q = static_cast<const float*>(p.q) + b * p.q_stride_b + h * p.q_stride_h;
  const float* k = static_cast<const float*>(p.k) + b * p.k_stride_b + h * p.k_stride_h;
  const float* v = static_cast<const float*>(p.v) + b * p.v_stride_b + h * p.v_stride_h;
  float* out = static_cast<float*>(p.out) + b * p.o_stride_b + h * p.o_stride_h;
  const int64_t n_all = std::max<int64_t>(ke - ks, 0);
  const int64_t n_pad = (n_all + KB - 1) / KB * KB;
  for (int64_t j = 0; j < n_all; ++j) {
    const float* kj = k + (ks + j) * p.k_stride_s;
    for (int64_t d = 0; d < D; ++d) kt[d * n_pad + j] = kj[d];
  }
  for (int64_t d = 0; d < D; ++d)
    for (int64_t j = n_all; j < n_pad; ++j) kt[d * n_pad + j] = 0.f;

  for (int64_t i0 = 0; i0 < Sq; i0 += QB) {
    const int64_t qb = std::min<int64_t>(QB, Sq - i0);
    int64_t row_n[QB];
    int64_t n = 0;
    for (int r = 0; r < QB; ++r) {
      const int64_t i = i0 + std::min<int64_t>(r, qb - 1);
      const int64_t hi = p.causal ? std::min<int64_t>(ke, i + p.causal_offset + 1) : ke;
      row_n[r] = r < qb ? std::max<int64_t>(hi - ks, 0) : 0;
      n = std::max(n, row_n[r]);
      const float* qi = q + i * p.q_stride_s;
      for (int64_t d = 0; d < D; ++d) qbuf[d * QB + r] = qi[d] * p.scale;
    }
    const int64_t nb = (n + KB - 1) / KB * KB;
    for (int64_t j0 = 0; j0 < nb; j0 += KB) {
      V acc[QB][2];
#pragma GCC unroll 8
      for (int r = 0; r < QB; ++r) acc[r][0] = acc[r][1] = V{};
      const float* ktj = kt + j0;
      for (int64_t d = 0; d < D; ++d) {
        const V k0 = vload<V>(ktj + d * n_pad), k1 = vload<V>(ktj + d * n_pad + L);
#pragma GCC unroll 8
        for (int r = 0; r < QB; ++r) {
          const float qd = qbuf[d * QB + r];  // scalar x vector: one broadcast
          acc[r][0] += qd * k0;
          acc[r][1] += qd * k1;
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < QB; ++r) {
        vstore(scores + r * n_pad + j0, acc[r][0]);
        vstore(scores + r * n_pad + j0 + L, acc[r][1]);
      }
    }
    float inv[QB];
    for (int r = 0; r < QB; ++r) inv[r] = softmax_row(scores + r * n_pad, row_n[r], nb);
    // The probabilities key-major (pt[j * QB + r]): the P V loops broadcast the QB values of a
    // key from one base address (row-major, each row took a register of its own and spilled).
    float* pt = scores + QB * n_pad;
    for (int64_t j = 0; j < n; ++j)
      for (int r = 0; r < QB; ++r) pt[j * QB + r] = scores[r * n_pad + j];
    int64_t d0 = 0;
    for (; d0 + KB <= D; d0 += KB) {
      V acc[QB][2];
#pragma GCC unroll 8
      for (int r = 0; r < QB; ++r) acc[r][0] = acc[r][1] = V{};
      for (int64_t j = 0; j < n; ++j) {
        const float* vj = v + (ks + j) * p.v_stride_s + d0;
        const V v0 = vload<V>(vj), v1 = vload<V>(vj + L);
#pragma GCC unroll 8
        for (int r = 0; r < QB; ++r) {
          const float pj = pt[j * QB + r];
          acc[r][0] += pj * v0;
          acc[r][1] += pj * v1;
        }
      }
      for (int r = 0; r < qb; ++r) {
        float* o = out + (i0 + r) * p.o_stride_s + d0;
        vstore(o, acc[r][0] * inv[r]);
        vstore(o + L, acc[r][1] * inv[r]);
      }
    }
    for (; d0 + L <= D; d0 += L) {  // one vector of dims left (AVX-512: head_dim % 32 == 16)
      V acc[QB];
      for (int r = 0; r < QB; ++r) acc[r] = V{};
      for (int64_t j = 0; j < n; ++j) {
        const V v0 = vload<V>(v + (ks + j) * p.v_stride_s + d0);
        for (int r = 0; r < QB; ++r) acc[r] += pt[j * QB + r] * v0;
      }
      for (int r = 0; r < qb; ++r) vstore(out + (i0 + r) * p.o_stride_s + d0, acc[r] * inv[r]);
    }
    for (; d0 + 8 <= D; d0 += 8) {  // 8 dims left (AVX-512: as the AVX2 kernel does them)
      v8 acc[QB];
      for (int r = 0; r < QB; ++r) acc[r] = splat(0.f);
      for (int64_t j = 0; j < n; ++j) {
        const v8 v0 = vload<v8>(v + (ks + j) * p.v_stride_s + d0);
        for (int r = 0; r < QB; ++r) acc[r] += splat(pt[j * QB + r]) * v0;
      }
      for (int r = 0; r < qb; ++r) vstore(out + (i0 + r) * p.o_stride_s + d0, acc[r] * splat(inv[r]));
    }
    for (; d0 < D; ++d0) {  // head_dim tail (head_dim % 8 != 0)
      float acc[QB] = {};
      for (int64_t j = 0; j < n; ++j) {
        const float vj = v[(ks + j) * p.v_stride_s + d0];
        for (int r = 0; r < QB; ++r) acc[r] = __builtin_fmaf(pt[j * QB + r], vj, acc[r]);  // fused, whatever vectorizes it
      }
      for (int r = 0; r < qb; ++r) out[(i0 + r) * p.o_stride_s + d0] = acc[r] * inv[r];
    }
  }
}

void attend_block_rows(const AttnParams& p, int64_t b, int64_t h, int64_t ks, int64_t ke, float* kt, float* scores,
                       float* qbuf) {
  attend_block_rows_t<v8, kQB>(p, b, h, ks, ke, kt, scores, qbuf);
}

__attribute__((target("avx512f"))) void attend_block_rows512(const AttnParams& p, int64_t b, int64_t h, int64_t ks,
                                                             int64_t ke, float* kt, float* scores, float* qbuf) {
  attend_block_rows_t<v16, kQBMax>(p, b, h, ks, ke, kt, scores, qbuf);
}

// The sums of the lanes of each of a[0..7], as one vector [sum a[0], ..., sum a[7]].
inline v8 hsum8x8(const v8* a) {
  const __m256 t0 = _mm256_hadd_ps((__m256)a[0], (__m256)a[1]), t1 = _mm256_hadd_ps((__m256)a[2], (__m256)a[3]);
  const __m256 t2 = _mm256_hadd_ps((__m256)a[4], (__m256)a[5]), t3 = _mm256_hadd_ps((__m256)a[6], (__m256)a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return (v8)_mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// s[j] = scale * q . k_{ks + j} for 8 keys (head_dim D, a multiple of 8): one partial-sum
// vector per key, all 8 in flight at once, then reduced together (a key at a time waits on its
// own add chain and a horizontal sum per key).
inline void scores8(const float* q, const float* k0, int64_t k_stride, int64_t D, float scale, float* s) {
  v8 acc[8];
  for (int t = 0; t < 8; ++t) acc[t] = splat(0.f);
  for (int64_t d = 0; d < D; d += 8) {
    const v8 qd = load8(q + d);
    for (int t = 0; t < 8; ++t) acc[t] += qd * load8(k0 + t * k_stride + d);
  }
  store8(s, hsum8x8(acc) * splat(scale));
}

// a[0, 8*NC) += sum_j s[j] v_j[0, 8*NC) over n keys, the NC accumulators in registers.
template <int NC>
inline void pv_chunk(const float* s, int64_t n, const float* v0, int64_t v_stride, float* a) {
  v8 acc[NC];
  for (int c = 0; c < NC; ++c) acc[c] = splat(0.f);
  for (int64_t j = 0; j < n; ++j) {
    const v8 pj = splat(s[j]);
    const float* vj = v0 + j * v_stride;
    for (int c = 0; c < NC; ++c) acc[c] += pj * load8(vj + 8 * c);
  }
  for (int c = 0; c < NC; ++c) store8(a + 8 * c, acc[c]);
}

// a[0, D) = sum_j s[j] v_j for D a multiple of 8, 64 columns at a time.
void pv_rows(const float* s, int64_t n, const float* v0, int64_t v_stride, int64_t D, float* a) {
  int64_t d = 0;
  for (; d + 64 <= D; d += 64) pv_chunk<8>(s, n, v0 + d, v_stride, a + d);
  switch ((D - d) / 8) {
    case 7: return pv_chunk<7>(s, n, v0 + d, v_stride, a + d);
    case 6: return pv_chunk<6>(s, n, v0 + d, v_stride, a + d);
    case 5: return pv_chunk<5>(s, n, v0 + d, v_stride, a + d);
    case 4: return pv_chunk<4>(s, n, v0 + d, v_stride, a + d);
    case 3: return pv_chunk<3>(s, n, v0 + d, v_stride, a + d);
    case 2: return pv_chunk<2>(s, n, v0 + d, v_stride, a + d);
    case 1: return pv_chunk<1>(s, n, v0 + d, v_stride, a + d);
    default: return;
  }
}

// Few queries (decode): K and V read once, no transposition. head_dim a multiple of 8 (every
// GPT-2/BERT size) takes the register-blocked loops above; other sizes one key at a time.
void attend_rows_direct(const AttnParams& p, int64_t b, int64_t h, int64_t ks, int64_t ke,
                        float* s, float* a) {
  const int64_t D = p.head_dim;
  const bool vec = D % 8 == 0;
  const float* kbh = static_cast<const float*>(p.k) + b * p.k_stride_b + h * p.k_stride_h;
  const float* vbh = static_cast<const float*>(p.v) + b * p.v_stride_b + h * p.v_stride_h;
  for (int64_t i = 0; i < p.q_len; ++i) {
    float* o = static_cast<float*>(p.out) + b * p.o_stride_b + i * p.o_stride_s + h * p.o_stride_h;
    const int64_t hi = p.causal ? std::min<int64_t>(ke, i + p.causal_offset + 1) : ke;
    const int64_t n = hi - ks;
    if (n <= 0) {
      std::memset(o, 0, sizeof(float) * D);
      continue;
    }
    const float* qi = static_cast<const float*>(p.q) + b * p.q_stride_b + i * p.q_stride_s + h * p.q_stride_h;
    int64_t j = 0;
    if (vec)
      for (; j + 8 <= n; j += 8) scores8(qi, kbh + (ks + j) * p.k_stride_s, p.k_stride_s, D, p.scale, s + j);
    for (; j < n; ++j) {
      const float* kj = kbh + (ks + j) * p.k_stride_s;
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int64_t d = 0; d < D; ++d) dot += qi[d] * kj[d];
      s[j] = dot * p.scale;
    }
    const float inv = softmax_row(s, n, n);
    if (vec) {
      pv_rows(s, n, vbh + ks * p.v_stride_s, p.v_stride_s, D, a);
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) o[d] = a[d] * inv;
      continue;
    }
    std::fill(a, a + D, 0.f);
    for (int64_t j = 0; j < n; ++j) {
      const float pj = s[j];
      const float* vj = vbh + (ks + j) * p.v_stride_s;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) a[d] += pj * vj[d];
    }
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) o[d] = a[d] * inv;
  }
}

}  // namespace

// The AVX-512 prompt kernel exactly where the packed GEMM runs its AVX-512 kernel (AVX-512F,
// EET_LIKE_NO_AVX512 unset: one switch for both); same bits as the AVX2 kernel.
static bool prompt_avx512() {
  static const bool yes = std::strcmp(gemm_packed_isa(), "avx512") == 0;
  return yes;
}

void attention(const AttnParams& p) {
  const int64_t B = p.batch, H = p.heads, Sk = p.k_len, D = p.head_dim;
  const bool blocked = p.q_len >= kQB;
  const bool wide = blocked && prompt_avx512();
  const int64_t n_pad = (Sk + kKBMax - 1) / kKBMax * kKBMax;
  // Tiny problems (a short decode step of one row) run on the calling thread: waking the
  // team costs more than the work.
  const bool parallel = B * H * p.q_len * Sk * D > 262144;
#pragma omp parallel if (parallel)
  {
    std::vector<float> kt(blocked ? static_cast<size_t>(D * n_pad) : 0);
    // Prompt: QB rows of scores, then their probabilities key-major (2 * QB * n_pad).
    std::vector<float> scores(static_cast<size_t>((blocked ? 2 * kQBMax : 1) * std::max<int64_t>(n_pad, 1)));
    std::vector<float> qbuf(static_cast<size_t>(kQBMax * D)), acc(static_cast<size_t>(D));
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        int64_t ks = p.key_start != nullptr ? p.key_start[b] : 0;
        int64_t ke = (p.key_end != nullptr ? p.key_end[b] : Sk) + p.key_end_add;
        if (p.past_end_empty && ke > Sk) ke = 0;
        ks = std::clamp<int64_t>(ks, 0, Sk);
        ke = std::clamp<int64_t>(ke, 0, Sk);
        if (wide)
          attend_block_rows512(p, b, h, ks, ke, kt.data(), scores.data(), qbuf.data());
        else if (blocked)
          attend_block_rows(p, b, h, ks, ke, kt.data(), scores.data(), qbuf.data());
        else
          attend_rows_direct(p, b, h, ks, ke, scores.data(), acc.data());
      }
    }
  }
}

}  // namespace cpu
}  // namespace eet
