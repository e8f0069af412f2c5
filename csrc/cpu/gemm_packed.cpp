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
#include <cstring>

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
  for (int r = 0; r < R; ++r) {
    const v8 o0 = act8<A>(acc[r][0] + b0), o1 = act8<A>(acc[r][1] + b1);
    float* yr = y + r * n;
    if (cols == kPanelWidth) {
      store8(yr, o0);
      store8(yr + 8, o1);
    } else {
      float tmp[kPanelWidth];
      store8(tmp, o0);
      store8(tmp + 8, o1);
      std::memcpy(yr, tmp, sizeof(float) * cols);
    }
  }
}

template <typename W, Act A>
void run(const float* x, int64_t m, int64_t k, const W* packed, int64_t n, const float* bias,
         float* y) {
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

void gemm_packed(const float* x, int64_t m, int64_t k, const float* packed, int64_t n,
                 const float* bias, Act act, float* y) {
  dispatch<float>(x, m, k, packed, n, bias, act, y);
}

}  // namespace cpu
}  // namespace eet
