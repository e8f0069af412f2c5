// int8 x int8 -> int32 GEMM (CPU) for dynamically quantized activations: acc[m, n] =
// sum_k xq[m, k] * q[n, k], both int8 row-major ([M, K] and the [N, K] nn.Linear layout), the
// sum exact in int32 (K <= kInt8MaxK), plus the two float steps around it: the symmetric
// per-row quantization (quantize_int8, also used for the weights) and the epilogue
// y = act(float(acc) * (sx[m] * sw[n]) + bias[n]). Check: tests/test_int8_ops.py against
// eet_like.reference.linear_int8 (the integer part is exact, so any blocking, kernel or row
// count gives the same acc; the epilogue is one function for every path).
// Kernels, chosen at run time: AVX-512 VNNI (vpdpbusd, 64 products per instruction; the
// activations offset by +128 to unsigned and 128 * sum_k q[n, k] subtracted after) and an
// AVX2 fallback (sign-extended to int16, vpmaddwd). Dot-product form: 4 weight rows x up to 4
// activation rows per block, the weight rows read once per call and reused from L1 for every
// row block; made for the few-row GEMMs of decode steps (many rows: at::_int_mm, the torch glue).
#ifndef EET_INT8_PF
#define EET_INT8_PF 24576
#endif
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "eet/ops.h"
#include "vec_math.h"

namespace eet {
namespace cpu {

namespace {

#define EET_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

// GCC 12's AVX-512 headers seed unmasked intrinsics (unpack, extract) with a self-initialized
// "undefined" vector, which -Wall reports as -Wuninitialized in every caller.
#pragma GCC diagnostic ignored "-Wuninitialized"

// ---- AVX-512 VNNI: R activation rows x NB weight rows; xu = xq + 128 (unsigned) ----------
// The sum of one vector (the lone weight rows of an N tail).
EET_VNNI_TARGET inline int32_t hsum16(__m512i v) {
  alignas(64) int32_t t[16];
  _mm512_store_si512(t, v);
  int32_t s = 0;
  for (int32_t e : t) s += e;
  return s;
}

// The sums of a, b, c, d as [sa, sb, sc, sd]: interleave and add pairwise, then add the four
// 128-bit lanes (13 instructions for four sums; the reductions dominate the time at a few rows).
EET_VNNI_TARGET inline __m128i hsum4x16(__m512i a, __m512i b, __m512i c, __m512i d) {
  const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
  s = _mm512_add_epi32(s, _mm512_shuffle_i64x2(s, s, 0x4e));
  s = _mm512_add_epi32(s, _mm512_shuffle_i64x2(s, s, 0xb1));
  return _mm512_castsi512_si128(s);
}

// How far ahead of its loads (bytes of weight) the VNNI kernel prefetches: a decode step reads
// each weight once from DRAM, and the hardware prefetcher alone left the kernel latency-bound
// (GPT-2 small's 48 block GEMVs, 1 row: 9.5 ms without, 3.3 ms with, on the 2-core Xeon).
constexpr int64_t kPrefetchBytes = EET_INT8_PF;

// One 64-byte step of the R x NB block at column j: weight rows w + b * k, activation rows
// xu + r * k; CS: also the column sums of the weight rows (for the +128 offset).
template <int R, int NB, bool CS, bool MASKED>
EET_VNNI_TARGET inline void vnni_step(const uint8_t* xu, int64_t k, const int8_t* w, int64_t j, __mmask64 mask,
                                      __m512i (&acc)[R][NB], __m512i (&cs)[NB]) {
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i wv[NB];
  for (int b = 0; b < NB; ++b) {
    if (CS) _mm_prefetch(reinterpret_cast<const char*>(w + b * k + j + kPrefetchBytes), _MM_HINT_T0);
    wv[b] = MASKED ? _mm512_maskz_loadu_epi8(mask, w + b * k + j) : _mm512_loadu_si512(w + b * k + j);
    if (CS) cs[b] = _mm512_dpbusd_epi32(cs[b], ones, wv[b]);
  }
  for (int r = 0; r < R; ++r) {
    const __m512i xv = MASKED ? _mm512_maskz_loadu_epi8(mask, xu + r * k + j) : _mm512_loadu_si512(xu + r * k + j);
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], xv, wv[b]);
  }
}

// acc_out[r * n + b] = sum_k xq[r, k] * w[b, k] for R activation rows and NB weight rows. The
// first row block of a weight block (CS) reads the weights from memory (prefetching ahead) and
// also sums them into offset[b] = 128 * sum_k w[b, k]; the next row blocks find the weights in
// L1 and reuse the offsets.
template <int R, int NB, bool CS>
EET_VNNI_TARGET void vnni_block(const uint8_t* xu, int64_t k, const int8_t* w, int32_t* acc_out, int64_t n,
                                int32_t* offset) {
  __m512i acc[R][NB], cs[NB];
  for (int b = 0; b < NB; ++b) {
    cs[b] = _mm512_setzero_si512();
    for (int r = 0; r < R; ++r) acc[r][b] = _mm512_setzero_si512();
  }
  const int64_t full = k & ~int64_t(63);
  for (int64_t j = 0; j < full; j += 64) vnni_step<R, NB, CS, false>(xu, k, w, j, 0, acc, cs);
  if (full < k)  // the tail loads zeros past k (a masked load reads nothing there)
    vnni_step<R, NB, CS, true>(xu, k, w, full, (__mmask64(1) << (k - full)) - 1, acc, cs);
  if constexpr (NB == 4) {
    __m128i off;
    if (CS) {
      off = _mm_slli_epi32(hsum4x16(cs[0], cs[1], cs[2], cs[3]), 7);  // 128 * sum_k q
      _mm_storeu_si128(reinterpret_cast<__m128i*>(offset), off);
    } else {
      off = _mm_loadu_si128(reinterpret_cast<const __m128i*>(offset));
    }
    for (int r = 0; r < R; ++r)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(acc_out + r * n),
                       _mm_sub_epi32(hsum4x16(acc[r][0], acc[r][1], acc[r][2], acc[r][3]), off));
  } else {
    for (int b = 0; b < NB; ++b) {
      if (CS) offset[b] = 128 * hsum16(cs[b]);
      for (int r = 0; r < R; ++r) acc_out[r * n + b] = hsum16(acc[r][b]) - offset[b];
    }
  }
}

template <int R, bool CS>
EET_VNNI_TARGET void vnni_rows(const uint8_t* xu, int64_t k, const int8_t* w, int nb, int32_t* acc, int64_t n,
                               int32_t* offset) {
  if (nb == 4) return vnni_block<R, 4, CS>(xu, k, w, acc, n, offset);
  for (int b = 0; b < nb; ++b) vnni_block<R, 1, CS>(xu, k, w + b * k, acc + b, n, offset + b);
}

template <bool CS>
EET_VNNI_TARGET int64_t vnni_row_block(const uint8_t* xi, int64_t rows, int64_t k, const int8_t* w, int nb,
                                       int32_t* ai, int64_t n, int32_t* offset) {
  switch (std::min<int64_t>(4, rows)) {
    case 4: vnni_rows<4, CS>(xi, k, w, nb, ai, n, offset); return 4;
    case 3: vnni_rows<3, CS>(xi, k, w, nb, ai, n, offset); return 3;
    case 2: vnni_rows<2, CS>(xi, k, w, nb, ai, n, offset); return 2;
    default: vnni_rows<1, CS>(xi, k, w, nb, ai, n, offset); return 1;
  }
}

EET_VNNI_TARGET void gemm_vnni(const int8_t* xq, int64_t m, int64_t k, const int8_t* q, int64_t n, int32_t* acc) {
  std::vector<uint8_t> xu(m * k);
  for (int64_t i = 0; i < m * k; ++i) xu[i] = static_cast<uint8_t>(xq[i] ^ 0x80);  // xq + 128
  const int64_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (m * n * k > 262144)
  for (int64_t nb0 = 0; nb0 < blocks; ++nb0) {
    const int64_t c0 = nb0 * 4;
    const int nb = static_cast<int>(std::min<int64_t>(4, n - c0));
    const int8_t* w = q + c0 * k;
    int32_t offset[4];
    int64_t i = vnni_row_block<true>(xu.data(), m, k, w, nb, acc + c0, n, offset);
    while (i < m) i += vnni_row_block<false>(xu.data() + i * k, m - i, k, w, nb, acc + i * n + c0, n, offset);
  }
}

// ---- AVX2: int8 -> int16, vpmaddwd; R activation rows x NB weight rows --------------------
inline int32_t hsum8(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

template <int R, int NB>
void avx2_block(const int8_t* x, int64_t k, const int8_t* w, int32_t* acc_out, int64_t n) {
  __m256i acc[R][NB];
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm256_setzero_si256();
  int64_t j = 0;
  for (; j + 16 <= k; j += 16) {
    __m256i wv[NB];
    for (int b = 0; b < NB; ++b) {
      if ((j & 63) == 0) _mm_prefetch(reinterpret_cast<const char*>(w + b * k + j + kPrefetchBytes), _MM_HINT_T0);
      wv[b] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + b * k + j)));
    }
    for (int r = 0; r < R; ++r) {
      const __m256i xv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + r * k + j)));
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm256_add_epi32(acc[r][b], _mm256_madd_epi16(xv, wv[b]));
    }
  }
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < NB; ++b) {
      int32_t s = hsum8(acc[r][b]);
      for (int64_t t = j; t < k; ++t) s += int32_t(x[r * k + t]) * int32_t(w[b * k + t]);
      acc_out[r * n + b] = s;
    }
}

template <int R>
void avx2_rows(const int8_t* x, int64_t k, const int8_t* w, int nb, int32_t* acc, int64_t n) {
  if (nb == 4) return avx2_block<R, 4>(x, k, w, acc, n);
  for (int b = 0; b < nb; ++b) avx2_block<R, 1>(x, k, w + b * k, acc + b, n);
}

void gemm_avx2(const int8_t* xq, int64_t m, int64_t k, const int8_t* q, int64_t n, int32_t* acc) {
  const int64_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (m * n * k > 262144)
  for (int64_t nb0 = 0; nb0 < blocks; ++nb0) {
    const int64_t c0 = nb0 * 4;
    const int nb = static_cast<int>(std::min<int64_t>(4, n - c0));
    for (int64_t i = 0; i < m;) {
      if (m - i >= 2) {
        avx2_rows<2>(xq + i * k, k, q + c0 * k, nb, acc + i * n + c0, n);
        i += 2;
      } else {
        avx2_rows<1>(xq + i * k, k, q + c0 * k, nb, acc + i * n + c0, n);
        i += 1;
      }
    }
  }
}

bool has_vnni() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return yes;
}

template <Act A>
void epilogue(const int32_t* acc, const float* sx, const float* sw, const float* bias, int64_t m, int64_t n,
              float* y) {
#pragma omp parallel for schedule(static) if (m * n > 32768)
  for (int64_t i = 0; i < m; ++i) {
    const float s = sx[i];
    const int32_t* a = acc + i * n;
    float* yi = y + i * n;
    if (bias != nullptr) {
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) yi[c] = activate<A, VecMath>(static_cast<float>(a[c]) * (s * sw[c]) + bias[c]);
    } else {
#pragma omp simd
      for (int64_t c = 0; c < n; ++c) yi[c] = activate<A, VecMath>(static_cast<float>(a[c]) * (s * sw[c]));
    }
  }
}

}  // namespace

const char* gemm_s8s8_isa() { return has_vnni() ? "avx512_vnni" : "avx2"; }

void gemm_s8s8_s32(const int8_t* xq, int64_t m, int64_t k, const int8_t* q, int64_t n, int32_t* acc) {
  if (has_vnni()) return gemm_vnni(xq, m, k, q, n, acc);
  gemm_avx2(xq, m, k, q, n, acc);
}

void dequant_bias_act(const int32_t* acc, const float* sx, const float* sw, const float* bias, Act act,
                      int64_t m, int64_t n, float* y) {
  switch (act) {
    case Act::kIdentity: return epilogue<Act::kIdentity>(acc, sx, sw, bias, m, n, y);
    case Act::kRelu: return epilogue<Act::kRelu>(acc, sx, sw, bias, m, n, y);
    case Act::kGeluErf: return epilogue<Act::kGeluErf>(acc, sx, sw, bias, m, n, y);
    case Act::kGeluTanh: return epilogue<Act::kGeluTanh>(acc, sx, sw, bias, m, n, y);
  }
}

void quantize_int8(const float* w, int64_t n, int64_t k, int8_t* q, float* scales) {
#pragma omp parallel for schedule(static) if (n * k > 32768)
  for (int64_t r = 0; r < n; ++r) {
    const float* row = w + r * k;
    int8_t* qr = q + r * k;
    __m256 vmax = _mm256_setzero_ps();
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    int64_t j = 0;
    for (; j + 8 <= k; j += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(row + j), absmask));
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    float amax = 0.f;
    for (float v : lanes) amax = std::max(amax, v);
    for (; j < k; ++j) amax = std::max(amax, std::fabs(row[j]));
    const float s = amax / 127.f;
    scales[r] = s;
    if (!(s > 0.f)) {
      std::fill(qr, qr + k, int8_t(0));
      continue;
    }
    // q = round-half-even(clamp(w / s, -127, 127)): the division (not a reciprocal) and the
    // rounding of the scalar tail and of torch's reference, 8 at a time.
    const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
    for (j = 0; j + 8 <= k; j += 8) {
      __m256 v = _mm256_div_ps(_mm256_loadu_ps(row + j), vs);
      v = _mm256_round_ps(_mm256_min_ps(hi, _mm256_max_ps(lo, v)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256i i32 = _mm256_cvtps_epi32(v);
      const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(qr + j), _mm_packs_epi16(i16, i16));
    }
    for (; j < k; ++j) qr[j] = static_cast<int8_t>(std::nearbyint(std::min(127.f, std::max(-127.f, row[j] / s))));
  }
}

}  // namespace cpu
}  // namespace eet
