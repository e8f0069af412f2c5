// int8 x int8 -> int32 GEMM (CPU) for dynamically quantized activations: acc[m, n] =
// sum_k xq[m, k] * q[n, k], both int8 row-major ([M, K] and the [N, K] nn.Linear layout), the
// sum exact in int32 (K <= kInt8MaxK), plus the two float steps around it: the symmetric
// per-row quantization (quantize_int8, also used for the weights; the activations' range is
// int8_activation_max()) and the epilogue
// y = act(float(acc) * (sx[m] * sw[n]) + bias[n]). Check: tests/test_int8_ops.py against
// eet_like.reference.linear_int8 (the integer part is exact, so any blocking, kernel or row
// count gives the same acc; the epilogue is one function for every path).
// Kernels, chosen at run time:
// - AVX-512 VNNI (vpdpbusd, 64 products per instruction; the activations offset by +128 to
//   unsigned and 128 * sum_k q[n, k] subtracted after), dot-product form: 4 weight rows x up
//   to 4 activation rows per block, the weight rows read once per call and reused from L1 for
//   every row block; made for the few-row GEMMs of decode steps (many rows with VNNI:
//   at::_int_mm or the AMX kernel, in the torch glue). EET_LIKE_NO_AVX512 forces AVX2.
// - AVX2, activations 7-bit (int8_activation_max() = 63): below kPanelMinRows rows the same
//   dot-product form (sign-extended to int16, vpmaddwd), from there a register-blocked
//   vpmaddubsw GEMM on re-laid-out weight panels (at::_int_mm has no fast path without VNNI:
//   ~1 GMAC/s on a 2-core EPYC).
#ifndef EET_INT8_PF
#define EET_INT8_PF 24576
#endif
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
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

// ---- AVX2, many rows: 7-bit activations, vpmaddubsw on 6 x 16 blocks ----------------------
// For prompts and BERT batches on CPUs without VNNI (at::_int_mm has no fast AVX2 path: ~1
// GMAC/s on a 2-core EPYC). Without VNNI the activations are quantized to 7 bits (|xq| <= 63,
// kAvx2ActivationMax), so xu = xq + 64 is in [1, 127] and one vpmaddubsw (unsigned x signed
// bytes, pairs summed to saturating int16) is exact: |xu0 w0 + xu1 w1| <= 2 * 127 * 127 < 2^15.
// vpmaddwd with ones then sums the int16 pairs into int32 (4 products per lane): 3 instructions
// per 32 products instead of the 4 of int16-widened operands (vpmaddwd + vpaddd per 16), and no
// widening of either operand. 64 * sum_k q[n, k] is subtracted at the end (the +64 offset).
// The weight is laid out panel by panel (16 weight rows, [K/4][16][4] int8, so one vector holds
// 8 output columns x 4 k) into a per-thread buffer; every activation row block passes over a
// K slice of it while the slice stays in L1.
constexpr int kPanelRows = 6;   // activation rows per block: 12 accumulators + ones + 3 temporaries
constexpr int kPanelCols = kPackedInt8PanelCols;  // 16 weight rows (output columns) per panel
constexpr int kAvx2ActivationMax = kPackedInt8ActivationMax;  // 63: |xq| without VNNI (int8_activation_max)
constexpr int kActOffset = 64;          // xu = xq + 64 in [1, 127]

// In-place 8 x 8 transpose of 32-bit elements.
inline void transpose8x8_epi32(__m256i r[8]) {
  __m256i t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
  }
}

// Weight rows [n0, n0 + 16) of q [n, k] as k quads: out[p * 64 + 4 * j + e] = q[n0 + j, 4p + e]
// (zero past n and k), k4 = ceil(k / 4) quads; colsum[j] = sum_k q[n0 + j, k].
void pack_panel(const int8_t* q, int64_t n, int64_t k, int64_t n0, int8_t* out, int32_t* colsum) {
  const int64_t k4 = (k + 3) / 4;
  int64_t j0 = 0;
  if (n - n0 >= kPanelCols) {
    for (; j0 + 32 <= k; j0 += 32)
      for (int h = 0; h < 2; ++h) {  // rows n0 + 8h .. +8: 8 rows x 8 quads, transposed to quads x rows
        __m256i r[8];
        for (int i = 0; i < 8; ++i)
          r[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + (n0 + 8 * h + i) * k + j0));
        transpose8x8_epi32(r);
        for (int p = 0; p < 8; ++p) _mm256_store_si256(reinterpret_cast<__m256i*>(out + (j0 / 4 + p) * 64 + 32 * h), r[p]);
      }
  }
  for (int64_t p = j0 / 4; p < k4; ++p)
    for (int j = 0; j < kPanelCols; ++j)
      for (int e = 0; e < 4; ++e) {
        const int64_t row = n0 + j, c = 4 * p + e;
        out[p * 64 + 4 * j + e] = row < n && c < k ? q[row * k + c] : 0;
      }
  // The column sums from the packed panel: bytes x 1 summed in pairs, then in quads.
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
  for (int64_t p = 0; p < k4; ++p) {
    const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(out + p * 64));
    const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(out + p * 64 + 32));
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, w0), ones16));
    s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, w1), ones16));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(colsum), s0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(colsum + 8), s1);
}

// The R < 6 row tails: out[r * 16 + c] (+)= sum over the panel's k4 quads of xu * w.
template <int R>
void panel_block(const uint8_t* xu, int64_t ld, const int8_t* panel, int64_t k4, int32_t* out, bool accumulate) {
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256i lo[R], hi[R];
  for (int r = 0; r < R; ++r) {
    lo[r] = accumulate ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(out + r * kPanelCols))
                       : _mm256_setzero_si256();
    hi[r] = accumulate ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(out + r * kPanelCols + 8))
                       : _mm256_setzero_si256();
  }
  for (int64_t p = 0; p < k4; ++p) {
    const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + p * 64));
    const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + p * 64 + 32));
    for (int r = 0; r < R; ++r) {
      int32_t quad;
      std::memcpy(&quad, xu + r * ld + 4 * p, sizeof(quad));
      const __m256i xb = _mm256_set1_epi32(quad);
      lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w0), ones16));
      hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w1), ones16));
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r * kPanelCols), lo[r]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r * kPanelCols + 8), hi[r]);
  }
}

// The 6-row block in assembly: GCC's allocation of an intrinsic version copies or spills the 12
// accumulators every step (the int16 kernel before this one ran at ~40% of the rate that way).
// ymm0-11 accumulate rows r = 0..5 (columns 0-7 in ymm 2r, 8-15 in ymm 2r+1), ymm12 holds int16
// ones, ymm13 the broadcast activation quad, ymm14/15 the products; the weights are memory
// operands (L1). Two k quads per loop trip, then the odd one.
// One row of a k quad: the activation quad at ADDR times the weight vectors at OW, OW2.
#define EET_PANEL_ROW(ADDR, OW, OW2, A, B)                 \
  "vpbroadcastd " ADDR ", %%ymm13\n\t"                     \
  "vpmaddubsw " #OW "(%[pw]), %%ymm13, %%ymm14\n\t"        \
  "vpmaddwd %%ymm12, %%ymm14, %%ymm14\n\t"                 \
  "vpaddd %%ymm14, %%ymm" #A ", %%ymm" #A "\n\t"           \
  "vpmaddubsw " #OW2 "(%[pw]), %%ymm13, %%ymm15\n\t"       \
  "vpmaddwd %%ymm12, %%ymm15, %%ymm15\n\t"                 \
  "vpaddd %%ymm15, %%ymm" #B ", %%ymm" #B "\n\t"
// One k quad: the activations at byte offset OX of each row, the weights at OW and OW2 = OW + 32.
#define EET_PANEL_QUAD(OX, OW, OW2)                        \
  EET_PANEL_ROW(#OX "(%[r0])", OW, OW2, 0, 1)              \
  EET_PANEL_ROW(#OX "(%[r0],%[ld],1)", OW, OW2, 2, 3)      \
  EET_PANEL_ROW(#OX "(%[r0],%[ld],2)", OW, OW2, 4, 5)      \
  EET_PANEL_ROW(#OX "(%[r3])", OW, OW2, 6, 7)              \
  EET_PANEL_ROW(#OX "(%[r3],%[ld],1)", OW, OW2, 8, 9)      \
  EET_PANEL_ROW(#OX "(%[r3],%[ld],2)", OW, OW2, 10, 11)

void panel_block6(const uint8_t* xu, int64_t ld, const int8_t* panel, int64_t k4, int32_t* out, bool accumulate) {
  const int64_t odd = k4 & 1, acc_in = accumulate;
  int64_t quads = k4 / 2;
  const uint8_t* r0 = xu;
  const uint8_t* r3 = xu + 3 * ld;
  const int8_t* pw = panel;
  static const int16_t ones[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  asm volatile(
      "vmovdqu %[ones], %%ymm12\n\t"
      "test %[acc_in], %[acc_in]\n\t"
      "jnz 4f\n\t"
      "vpxor %%xmm0, %%xmm0, %%xmm0\n\t"
      "vpxor %%xmm1, %%xmm1, %%xmm1\n\t"
      "vpxor %%xmm2, %%xmm2, %%xmm2\n\t"
      "vpxor %%xmm3, %%xmm3, %%xmm3\n\t"
      "vpxor %%xmm4, %%xmm4, %%xmm4\n\t"
      "vpxor %%xmm5, %%xmm5, %%xmm5\n\t"
      "vpxor %%xmm6, %%xmm6, %%xmm6\n\t"
      "vpxor %%xmm7, %%xmm7, %%xmm7\n\t"
      "vpxor %%xmm8, %%xmm8, %%xmm8\n\t"
      "vpxor %%xmm9, %%xmm9, %%xmm9\n\t"
      "vpxor %%xmm10, %%xmm10, %%xmm10\n\t"
      "vpxor %%xmm11, %%xmm11, %%xmm11\n\t"
      "jmp 5f\n\t"
      "4:\n\t"
      "vmovdqu 0(%[out]), %%ymm0\n\t"
      "vmovdqu 32(%[out]), %%ymm1\n\t"
      "vmovdqu 64(%[out]), %%ymm2\n\t"
      "vmovdqu 96(%[out]), %%ymm3\n\t"
      "vmovdqu 128(%[out]), %%ymm4\n\t"
      "vmovdqu 160(%[out]), %%ymm5\n\t"
      "vmovdqu 192(%[out]), %%ymm6\n\t"
      "vmovdqu 224(%[out]), %%ymm7\n\t"
      "vmovdqu 256(%[out]), %%ymm8\n\t"
      "vmovdqu 288(%[out]), %%ymm9\n\t"
      "vmovdqu 320(%[out]), %%ymm10\n\t"
      "vmovdqu 352(%[out]), %%ymm11\n\t"
      "5:\n\t"
      "test %[quads], %[quads]\n\t"
      "jz 2f\n\t"
      "1:\n\t"
      EET_PANEL_QUAD(0, 0, 32)
      EET_PANEL_QUAD(4, 64, 96)
      "add $128, %[pw]\n\t"
      "add $8, %[r0]\n\t"
      "add $8, %[r3]\n\t"
      "dec %[quads]\n\t"
      "jnz 1b\n\t"
      "2:\n\t"
      "test %[odd], %[odd]\n\t"
      "jz 3f\n\t"
      EET_PANEL_QUAD(0, 0, 32)
      "3:\n\t"
      "vmovdqu %%ymm0, 0(%[out])\n\t"
      "vmovdqu %%ymm1, 32(%[out])\n\t"
      "vmovdqu %%ymm2, 64(%[out])\n\t"
      "vmovdqu %%ymm3, 96(%[out])\n\t"
      "vmovdqu %%ymm4, 128(%[out])\n\t"
      "vmovdqu %%ymm5, 160(%[out])\n\t"
      "vmovdqu %%ymm6, 192(%[out])\n\t"
      "vmovdqu %%ymm7, 224(%[out])\n\t"
      "vmovdqu %%ymm8, 256(%[out])\n\t"
      "vmovdqu %%ymm9, 288(%[out])\n\t"
      "vmovdqu %%ymm10, 320(%[out])\n\t"
      "vmovdqu %%ymm11, 352(%[out])\n\t"
      "vzeroupper\n\t"
      : [r0] "+r"(r0), [r3] "+r"(r3), [pw] "+r"(pw), [quads] "+r"(quads)
      : [ld] "r"(ld), [odd] "r"(odd), [acc_in] "r"(acc_in), [out] "r"(out), [ones] "m"(ones)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
        "xmm12", "xmm13", "xmm14", "xmm15", "memory", "cc");
}
#undef EET_PANEL_QUAD
#undef EET_PANEL_ROW

void panel_rows(int64_t rows, const uint8_t* xu, int64_t ld, const int8_t* panel, int64_t k4, int32_t* out,
                bool accumulate) {
  switch (rows) {
    case 1: return panel_block<1>(xu, ld, panel, k4, out, accumulate);
    case 2: return panel_block<2>(xu, ld, panel, k4, out, accumulate);
    case 3: return panel_block<3>(xu, ld, panel, k4, out, accumulate);
    case 4: return panel_block<4>(xu, ld, panel, k4, out, accumulate);
    case 5: return panel_block<5>(xu, ld, panel, k4, out, accumulate);
    default: return panel_block6(xu, ld, panel, k4, out, accumulate);
  }
}

// k quads per pass over the rows: a 16 KB slice of the panel stays in L1 while every row block
// uses it (the int16 kernel before this one: K = 3072 without the split 81, with ~125 GMAC/s).
constexpr int64_t kPanelQuadsPerPass = 256;

// Bytes of one prepacked panel (pack_int8_panels): k4 quads of 16 x 4 weights, then the 16 int32
// column sums in one more 64-byte quad.
inline int64_t packed_panel_bytes(int64_t k) { return ((k + 3) / 4 + 1) * 64; }

// (xu - 64) q^T over panels, xu [m, ld] the offset activations (ld = 4 k4). `packed` null: each
// thread packs its panels from q [n, k] per call; else the panels of pack_int8_panels(q), read in
// place. Each panel's exact int32 result goes to emit(sums, c0, cols): sums [m][16] for output
// columns [c0, c0 + cols), already offset-corrected. Called by every thread of a parallel region
// (its panels are an orphaned omp for).
template <class Emit>
void panels_gemm(const uint8_t* xu, int64_t m, int64_t k, const int8_t* q, const int8_t* packed, int64_t n,
                 Emit&& emit) {
  const int64_t k4 = (k + 3) / 4, ld = 4 * k4, panels = (n + kPanelCols - 1) / kPanelCols;
  // Per thread: one packed panel when packing per call (32-byte aligned; the buffer holds one
  // vector more), its column sums and its [m][16] int32 sums, accumulated over the passes.
  std::vector<int8_t> buf(packed == nullptr ? k4 * 64 + 32 : 0);
  int8_t* own = reinterpret_cast<int8_t*>((reinterpret_cast<uintptr_t>(buf.data()) + 31) & ~uintptr_t(31));
  std::vector<int32_t> sums(m * kPanelCols);
  int32_t colsum[kPanelCols];
#pragma omp for schedule(dynamic, 1)
  for (int64_t pi = 0; pi < panels; ++pi) {
    const int64_t c0 = pi * kPanelCols;
    const int cols = static_cast<int>(std::min<int64_t>(kPanelCols, n - c0));
    const int8_t* panel = own;
    if (packed == nullptr) {
      pack_panel(q, n, k, c0, own, colsum);
    } else {
      panel = packed + pi * packed_panel_bytes(k);
      std::memcpy(colsum, panel + k4 * 64, sizeof(colsum));
    }
    for (int64_t p0 = 0; p0 < k4; p0 += kPanelQuadsPerPass) {
      const int64_t quads = std::min(kPanelQuadsPerPass, k4 - p0);
      for (int64_t i = 0; i < m; i += kPanelRows)
        panel_rows(std::min<int64_t>(kPanelRows, m - i), xu + i * ld + 4 * p0, ld, panel + p0 * 64, quads,
                   sums.data() + i * kPanelCols, p0 > 0);
    }
    // The +64 offset: sum_k (xq + 64) q = sum_k xq q + 64 colsum.
    const __m256i off0 = _mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(colsum)),
                                            _mm256_set1_epi32(kActOffset));
    const __m256i off1 = _mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(colsum + 8)),
                                            _mm256_set1_epi32(kActOffset));
    for (int64_t i = 0; i < m; ++i) {
      __m256i* r = reinterpret_cast<__m256i*>(sums.data() + i * kPanelCols);
      _mm256_storeu_si256(r, _mm256_sub_epi32(_mm256_loadu_si256(r), off0));
      _mm256_storeu_si256(r + 1, _mm256_sub_epi32(_mm256_loadu_si256(r + 1), off1));
    }
    emit(sums.data(), c0, cols);
  }
}

// xu[i, :] = xq[i, :] + 64, zero activations (64) past k up to ld = 4 ceil(k / 4).
inline void offset_row(const int8_t* xi, int64_t k, int64_t ld, uint8_t* oi) {
  const __m256i off = _mm256_set1_epi8(kActOffset);
  int64_t j = 0;
  for (; j + 32 <= k; j += 32)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(oi + j),
                        _mm256_add_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xi + j)), off));
  for (; j < ld; ++j) oi[j] = static_cast<uint8_t>((j < k ? xi[j] : 0) + kActOffset);
}

void gemm_avx2_panels(const int8_t* xq, int64_t m, int64_t k, const int8_t* q, int64_t n, int32_t* acc) {
  const int64_t ld = 4 * ((k + 3) / 4);
  std::vector<uint8_t> xu(m * ld);
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int64_t i = 0; i < m; ++i) offset_row(xq + i * k, k, ld, xu.data() + i * ld);
    panels_gemm(xu.data(), m, k, q, nullptr, n, [&](const int32_t* sums, int64_t c0, int cols) {
      for (int64_t i = 0; i < m; ++i) std::memcpy(acc + i * n + c0, sums + i * kPanelCols, cols * sizeof(int32_t));
    });
  }
}

// AVX-512 as the packed GEMM chose it (gemm_packed_isa: the CPU and EET_LIKE_NO_AVX512, one
// switch for every kernel), plus the VNNI extensions.
bool has_vnni() {
  static const bool yes = std::string(gemm_packed_isa()) == "avx512" && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return yes;
}

// Rows from which the AVX2 panel kernel takes over from the AVX2 dot-product kernel. Measured on
// the 2-core EPYC (Zen 3) over the 49 GEMMs of a GPT-2 small decode step, weights streamed from
// memory (ms): 8 rows 13.7 (dot) vs 17.5 (panels), 12 rows 18.9 vs 20.1, 16 rows 24.9 vs 24.1,
// 24 rows 36.3 vs 31.6, 32 rows 47.9 vs 39.9. Few rows are bound by reading the weights once;
// widening every weight panel to int16 only pays off where many rows share it.
constexpr int64_t kPanelMinRows = 16;

// One row of the epilogue: yi[c] = act(float(a[c]) * (s * sw[c]) + bias[c]) for c < n (bias may
// be null). The one definition both epilogues use, so they give the same bits.
template <Act A>
inline void epilogue_row(const int32_t* a, float s, const float* sw, const float* bias, int64_t n, float* yi) {
  if (bias != nullptr) {
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) yi[c] = activate<A, VecMath>(static_cast<float>(a[c]) * (s * sw[c]) + bias[c]);
  } else {
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) yi[c] = activate<A, VecMath>(static_cast<float>(a[c]) * (s * sw[c]));
  }
}

template <Act A>
void epilogue(const int32_t* acc, const float* sx, const float* sw, const float* bias, int64_t m, int64_t n,
              float* y) {
#pragma omp parallel for schedule(static) if (m * n > 32768)
  for (int64_t i = 0; i < m; ++i) epilogue_row<A>(acc + i * n, sx[i], sw, bias, n, y + i * n);
}

}  // namespace

const char* gemm_s8s8_isa() { return has_vnni() ? "avx512_vnni" : "avx2"; }

void gemm_s8s8_s32(const int8_t* xq, int64_t m, int64_t k, const int8_t* q, int64_t n, int32_t* acc) {
  if (has_vnni()) return gemm_vnni(xq, m, k, q, n, acc);
  if (m >= kPanelMinRows) return gemm_avx2_panels(xq, m, k, q, n, acc);
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

int int8_activation_max() { return has_vnni() ? 127 : kAvx2ActivationMax; }

namespace {

// One row of quantize_int8: qr = round-half-even(clamp(row / s, -qmax, qmax)), returns
// s = max|row| / qmax (0, with qr zero, for an all-zero row).
float quantize_row(const float* row, int64_t k, int8_t* qr, int qmax) {
  const float fmax = static_cast<float>(qmax);
  __m256 vmax = _mm256_setzero_ps();
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  int64_t j = 0;
  for (; j + 8 <= k; j += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(row + j), absmask));
  float lanes[8];
  _mm256_storeu_ps(lanes, vmax);
  float amax = 0.f;
  for (float v : lanes) amax = std::max(amax, v);
  for (; j < k; ++j) amax = std::max(amax, std::fabs(row[j]));
  const float s = amax / fmax;
  if (!(s > 0.f)) {
    std::fill(qr, qr + k, int8_t(0));
    return s;
  }
  // The division (not a reciprocal) and the rounding of the scalar tail and of torch's
  // reference, 8 at a time.
  const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-fmax), hi = _mm256_set1_ps(fmax);
  for (j = 0; j + 8 <= k; j += 8) {
    __m256 v = _mm256_div_ps(_mm256_loadu_ps(row + j), vs);
    v = _mm256_round_ps(_mm256_min_ps(hi, _mm256_max_ps(lo, v)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i i32 = _mm256_cvtps_epi32(v);
    const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(qr + j), _mm_packs_epi16(i16, i16));
  }
  for (; j < k; ++j) qr[j] = static_cast<int8_t>(std::nearbyint(std::min(fmax, std::max(-fmax, row[j] / s))));
  return s;
}

}  // namespace

void quantize_int8(const float* w, int64_t n, int64_t k, int8_t* q, float* scales, int qmax) {
#pragma omp parallel for schedule(static) if (n * k > 32768)
  for (int64_t r = 0; r < n; ++r) scales[r] = quantize_row(w + r * k, k, q + r * k, qmax);
}

int64_t packed_int8_bytes(int64_t n, int64_t k) {
  return (n + kPanelCols - 1) / kPanelCols * packed_panel_bytes(k);
}

void pack_int8_panels(const int8_t* q, int64_t n, int64_t k, int8_t* out) {
  const int64_t panels = (n + kPanelCols - 1) / kPanelCols, k4 = (k + 3) / 4;
#pragma omp parallel
  {
    std::vector<int8_t> buf(k4 * 64 + 32);  // pack_panel stores aligned vectors
    int8_t* panel = reinterpret_cast<int8_t*>((reinterpret_cast<uintptr_t>(buf.data()) + 31) & ~uintptr_t(31));
    int32_t colsum[kPanelCols];
#pragma omp for schedule(static)
    for (int64_t pi = 0; pi < panels; ++pi) {
      pack_panel(q, n, k, pi * kPanelCols, panel, colsum);
      int8_t* o = out + pi * packed_panel_bytes(k);
      std::memcpy(o, panel, k4 * 64);
      std::memcpy(o + k4 * 64, colsum, sizeof(colsum));
    }
  }
}

namespace {

template <Act A>
void linear_s8_packed_act(const float* x, int64_t m, int64_t k, const int8_t* packed, int64_t n, const float* sw,
                          const float* bias, float* y) {
  const int64_t ld = 4 * ((k + 3) / 4);
  std::vector<uint8_t> xu(m * ld);
  std::vector<float> sx(m);
#pragma omp parallel
  {
    std::vector<int8_t> xq(k);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < m; ++i) {
      sx[i] = quantize_row(x + i * k, k, xq.data(), kAvx2ActivationMax);
      offset_row(xq.data(), k, ld, xu.data() + i * ld);
    }
    // The epilogue of each panel while its sums are in L1: no [m, n] int32 round trip.
    // A full panel's rows with the width a constant: two whole vectors (a runtime width of 16
    // left GELU's erf ~4x slower than in the row-long epilogue).
    panels_gemm(xu.data(), m, k, nullptr, packed, n, [&](const int32_t* sums, int64_t c0, int cols) {
      const float* b = bias == nullptr ? nullptr : bias + c0;
      if (cols == kPanelCols) {
        for (int64_t i = 0; i < m; ++i)
          epilogue_row<A>(sums + i * kPanelCols, sx[i], sw + c0, b, kPanelCols, y + i * n + c0);
      } else {
        for (int64_t i = 0; i < m; ++i)
          epilogue_row<A>(sums + i * kPanelCols, sx[i], sw + c0, b, cols, y + i * n + c0);
      }
    });
  }
}

}  // namespace

void linear_s8_packed(const float* x, int64_t m, int64_t k, const int8_t* packed, int64_t n, const float* sw,
                      const float* bias, Act act, float* y) {
  switch (act) {
    case Act::kIdentity: return linear_s8_packed_act<Act::kIdentity>(x, m, k, packed, n, sw, bias, y);
    case Act::kRelu: return linear_s8_packed_act<Act::kRelu>(x, m, k, packed, n, sw, bias, y);
    case Act::kGeluErf: return linear_s8_packed_act<Act::kGeluErf>(x, m, k, packed, n, sw, bias, y);
    case Act::kGeluTanh: return linear_s8_packed_act<Act::kGeluTanh>(x, m, k, packed, n, sw, bias, y);
  }
}

}  // namespace cpu
}  // namespace eet
