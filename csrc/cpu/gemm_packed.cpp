// Packed-weight GEMM (CPU, fp32): y = act(x W^T + bias) with W prepacked into column panels
// (see ops.h). Register-blocked
// micro-kernels of R rows x 16 columns (R = 6, 4, 3, 2, 1; 12 accumulators at R = 6) stream
// a panel once per row block; bias and activation are applied to the accumulators before the
// store (no second pass). Rows are processed in chunks that stay in cache while
// every panel streams past them; panels run in parallel.
// Why: decode GEMMs have 1-8 rows and are bound by reading the weights; oneDNN/MKL repack
// the weight on every call and reach ~16-19 GB/s per core here, a prepacked stream ~24-28.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include <immintrin.h>

#include "eet/ops.h"
#include "vec_math.h"

namespace eet {
namespace cpu {

static_assert(kPanelWidth == 16, "the micro-kernels hold one panel row in two v8 registers");

namespace {

template <Act A>
inline v8 act8(v8 v) {
  if constexpr (A == Act::kIdentity) {
    return v;
  } else {
    v8 out;  // the scalar formula per lane; GCC vectorizes the loop (vec_math.h)
    for (int i = 0; i < 8; ++i) out[i] = activate<A, VecMath>(v[i]);
    return out;
  }
}

inline void load_row16(const float* p, v8& w0, v8& w1) {
  w0 = load8(p);
  w1 = load8(p + 8);
}

// The 16 per-column values at v (the bias) as two vectors; `cols` < 16 pads with pad.
inline void load_cols16(const float* v, int64_t cols, float pad, v8& v0, v8& v1) {
  if (cols == kPanelWidth) {
    v0 = load8(v);
    v1 = load8(v + 8);
    return;
  }
  float tmp[kPanelWidth];
  for (int64_t c = 0; c < kPanelWidth; ++c) tmp[c] = c < cols ? v[c] : pad;
  v0 = load8(tmp);
  v1 = load8(tmp + 8);
}

// One row's 16 accumulated columns: + bias, activation, store `cols` (<= 16) of them at y.
// Every kernel ends here, so a row's result does not depend on which kernel summed it.
template <Act A>
inline void finish16(v8 a0, v8 a1, v8 b0, v8 b1, float* y, int64_t cols) {
  const v8 o0 = act8<A>(a0 + b0), o1 = act8<A>(a1 + b1);
  if (cols == kPanelWidth) {
    store8(y, o0);
    store8(y + 8, o1);
  } else {
    float tmp[kPanelWidth];
    store8(tmp, o0);
    store8(tmp + 8, o1);
    std::memcpy(y, tmp, sizeof(float) * cols);
  }
}

// R rows of x (row stride k) times one panel; writes `cols` (<= 16) columns of y (row stride
// n). bias points at this panel's columns, or is null.
template <typename W, int R, Act A>
void micro(const float* x, int64_t k, const W* panel, const float* bias,
           float* y, int64_t n, int64_t cols) {
  v8 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = splat(0.f);
  for (int64_t j = 0; j < k; ++j) {
    v8 w0, w1;
    load_row16(panel + j * kPanelWidth, w0, w1);
    for (int r = 0; r < R; ++r) {
      const v8 a = splat(x[r * k + j]);
      acc[r][0] += a * w0;
      acc[r][1] += a * w1;
    }
  }
  v8 b0 = splat(0.f), b1 = b0;
  if (bias != nullptr) load_cols16(bias, cols, 0.f, b0, b1);
  for (int r = 0; r < R; ++r) finish16<A>(acc[r][0], acc[r][1], b0, b1, y + r * n, cols);
}

// ---- AVX-512 (chosen at run time): R rows x NP panels, one zmm accumulator each ----------
// The AVX2 micro-kernel above holds 6 rows x 16 columns in its 16 ymm registers and is FMA
// bound from ~4 rows on (a decode step of 8-64 rows: the server's batches). With 32 zmm
// registers, 12 rows x 2 panels keep 24 accumulators and issue 2 weight loads + 12 broadcasts
// per 24 FMAs of twice the width. Each lane sums a_j * w_j over j in the same order with one
// rounding per FMA, as the AVX2 kernel does (it is compiled with -mfma), and both end in the
// same finish16 (not inlined here, so not compiled for AVX-512): the results are
// bit-identical to the AVX2 kernel's (tested), so a row's result still depends on nothing but
// the row.
#define EET_AVX512_TARGET __attribute__((target("avx512f")))

bool use_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f") && std::getenv("EET_LIKE_NO_AVX512") == nullptr;
  return yes;
}

template <Act A>
__attribute__((noinline)) void finish_rows(const float* acc, int rows, int np, const float* bias, int64_t cols,
                                           float* y, int64_t n) {
  for (int p = 0; p < np; ++p) {
    const int64_t c = std::min<int64_t>(kPanelWidth, cols - p * kPanelWidth);
    v8 b0 = splat(0.f), b1 = b0;
    if (bias != nullptr) load_cols16(bias + p * kPanelWidth, c, 0.f, b0, b1);
    for (int r = 0; r < rows; ++r) {
      const float* a = acc + (r * np + p) * kPanelWidth;
      finish16<A>(load8(a), load8(a + 8), b0, b1, y + r * n + p * kPanelWidth, c);
    }
  }
}

// R rows of x times NP consecutive panels (NP * 16 >= cols > (NP - 1) * 16 columns of y).
template <int R, int NP, Act A>
EET_AVX512_TARGET void micro512(const float* x, int64_t k, const float* panel, const float* bias, float* y,
                                int64_t n, int64_t cols) {
  __m512 acc[R][NP];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_setzero_ps();
  const int64_t stride = k * kPanelWidth;
  for (int64_t j = 0; j < k; ++j) {
    __m512 w[NP];
    for (int p = 0; p < NP; ++p) w[p] = _mm512_loadu_ps(panel + p * stride + j * kPanelWidth);
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(x[r * k + j]);
      for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_fmadd_ps(a, w[p], acc[r][p]);
    }
  }
  alignas(64) float out[R * NP * kPanelWidth];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < NP; ++p) _mm512_store_ps(out + (r * NP + p) * kPanelWidth, acc[r][p]);
  finish_rows<A>(out, R, NP, bias, cols, y, n);
}

template <int NP, Act A>
EET_AVX512_TARGET void rows512(const float* x, int64_t m0, int64_t m1, int64_t k, const float* panel,
                               const float* bias, float* y, int64_t n, int64_t c0, int64_t cols) {
  int64_t i = m0;
  while (i < m1) {
    const int64_t left = m1 - i;
    const float* xi = x + i * k;
    float* yi = y + i * n + c0;
    if (left >= 12) {
      micro512<12, NP, A>(xi, k, panel, bias, yi, n, cols);
      i += 12;
    } else if (left >= 8) {
      micro512<8, NP, A>(xi, k, panel, bias, yi, n, cols);
      i += 8;
    } else if (left >= 4) {
      micro512<4, NP, A>(xi, k, panel, bias, yi, n, cols);
      i += 4;
    } else if (left == 3) {
      micro512<3, NP, A>(xi, k, panel, bias, yi, n, cols);
      i += 3;
    } else if (left == 2) {
      micro512<2, NP, A>(xi, k, panel, bias, yi, n, cols);
      i += 2;
    } else {
      micro512<1, NP, A>(xi, k, panel, bias, yi, n, cols);
      i += 1;
    }
  }
}

template <Act A>
void run512(const float* x, int64_t m, int64_t k, const float* packed, int64_t n, const float* bias, float* y) {
  const int64_t panels = (n + kPanelWidth - 1) / kPanelWidth, pairs = (panels + 1) / 2;
  const int64_t chunk = std::max<int64_t>(12, (65536 / std::max<int64_t>(k, 1)) / 12 * 12);
  for (int64_t m0 = 0; m0 < m; m0 += chunk) {
    const int64_t m1 = std::min(m, m0 + chunk);
#pragma omp parallel for schedule(static) if ((m1 - m0) * n * k > 262144)
    for (int64_t q = 0; q < pairs; ++q) {
      const int64_t p = 2 * q, c0 = p * kPanelWidth, cols = std::min(2 * kPanelWidth, n - c0);
      const float* panel = packed + p * k * kPanelWidth;
      const float* bp = bias != nullptr ? bias + c0 : nullptr;
      if (cols > kPanelWidth) {
        rows512<2, A>(x, m0, m1, k, panel, bp, y, n, c0, cols);
      } else {
        rows512<1, A>(x, m0, m1, k, panel, bp, y, n, c0, cols);
      }
    }
  }
}

template <typename W, Act A>
void run(const float* x, int64_t m, int64_t k, const W* packed, int64_t n, const float* bias,
         float* y) {
  if constexpr (std::is_same_v<W, float>) {
    if (use_avx512()) return run512<A>(x, m, k, packed, n, bias, y);
  }
  const int64_t panels = (n + kPanelWidth - 1) / kPanelWidth;
  // Row chunk: ~256 KiB of x stays in L2 while all panels stream past it.
  const int64_t chunk = std::max<int64_t>(6, (65536 / std::max<int64_t>(k, 1)) / 6 * 6);
  for (int64_t m0 = 0; m0 < m; m0 += chunk) {
    const int64_t m1 = std::min(m, m0 + chunk);
#pragma omp parallel for schedule(static) if ((m1 - m0) * n * k > 262144)
    for (int64_t p = 0; p < panels; ++p) {
      const W* panel = packed + p * k * kPanelWidth;
      const int64_t c0 = p * kPanelWidth, cols = std::min(kPanelWidth, n - c0);
      const float* bp = bias != nullptr ? bias + c0 : nullptr;
      int64_t i = m0;
      while (i < m1) {
        const int64_t left = m1 - i;
        const float* xi = x + i * k;
        float* yi = y + i * n + c0;
        if (left >= 6 && left != 8) {
          micro<W, 6, A>(xi, k, panel, bp, yi, n, cols);
          i += 6;
        } else if (left >= 4) {
          micro<W, 4, A>(xi, k, panel, bp, yi, n, cols);
          i += 4;
        } else if (left == 3) {
          micro<W, 3, A>(xi, k, panel, bp, yi, n, cols);
          i += 3;
        } else if (left == 2) {
          micro<W, 2, A>(xi, k, panel, bp, yi, n, cols);
          i += 2;
        } else {
          micro<W, 1, A>(xi, k, panel, bp, yi, n, cols);
          i += 1;
        }
      }
    }
  }
}

template <typename W>
void pack(const W* w, int64_t n, int64_t k, W* packed) {
  const int64_t panels = (n + kPanelWidth - 1) / kPanelWidth;
#pragma omp parallel for schedule(static) if (n * k > 262144)
  for (int64_t p = 0; p < panels; ++p) {
    W* dst = packed + p * k * kPanelWidth;
    for (int64_t j = 0; j < k; ++j)
      for (int64_t c = 0; c < kPanelWidth; ++c) {
        const int64_t row = p * kPanelWidth + c;
        dst[j * kPanelWidth + c] = row < n ? w[row * k + j] : W(0);
      }
  }
}

template <typename W>
void dispatch(const float* x, int64_t m, int64_t k, const W* packed, int64_t n, const float* bias,
              Act act, float* y) {
  switch (act) {
    case Act::kIdentity: return run<W, Act::kIdentity>(x, m, k, packed, n, bias, y);
    case Act::kRelu: return run<W, Act::kRelu>(x, m, k, packed, n, bias, y);
    case Act::kGeluErf: return run<W, Act::kGeluErf>(x, m, k, packed, n, bias, y);
    case Act::kGeluTanh: return run<W, Act::kGeluTanh>(x, m, k, packed, n, bias, y);
  }
}

}  // namespace

void pack_weight(const float* w, int64_t n, int64_t k, float* packed) { pack(w, n, k, packed); }

const char* gemm_packed_isa() { return use_avx512() ? "avx512" : "avx2"; }

void gemm_packed(const float* x, int64_t m, int64_t k, const float* packed, int64_t n,
                 const float* bias, Act act, float* y) {
  dispatch<float>(x, m, k, packed, n, bias, act, y);
}

}  // namespace cpu
}  // namespace eet
