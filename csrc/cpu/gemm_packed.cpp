// Packed-weight GEMM (CPU, fp32): y = act(x W^T + bias) with W prepacked into column panels
// (see ops.h). Register-blocked micro-kernels of R rows x 16 columns (R = 6, 4, 3, 2, 1; 12
// accumulators at R = 6) stream a panel once per row block; bias and activation are applied
// to the accumulators before the store (no second pass). Rows are processed in chunks that
// stay in cache while every panel streams past them; panels run in parallel.
// Why: decode GEMMs have 1-8 rows and are bound by reading the weights; oneDNN/MKL repack
// the weight on every call and reach ~16-19 GB/s per core here, a prepacked stream ~24-28.
#include <algorithm>
#include <cstring>

#include "eet/ops.h"
#include "vec_math.h"

namespace eet {
namespace cpu {

namespace {

template <Act A>
inline v8 act8(v8 v) {
  if constexpr (A == Act::kIdentity) {
    return v;
  } else {
    v8 out;
    for (int i = 0; i < 8; ++i) {
      const float t = v[i];
      if constexpr (A == Act::kRelu) out[i] = t > 0.f ? t : 0.f;
      if constexpr (A == Act::kGeluErf) out[i] = 0.5f * t * (1.f + verf(t * 0.70710678118654752f));
      if constexpr (A == Act::kGeluTanh)
        out[i] = 0.5f * t * (1.f + vtanh(0.79788456080286536f * (t + 0.044715f * t * t * t)));
    }
    return out;
  }
}

// R rows of x (row stride k) times one panel; writes `cols` (<= 16) columns of y (row stride n).
template <int R, Act A>
void micro(const float* x, int64_t k, const float* panel, const float* bias, float* y, int64_t n,
           int64_t cols) {
  v8 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = splat(0.f);
  for (int64_t j = 0; j < k; ++j) {
    const v8 w0 = load8(panel + j * kPanel), w1 = load8(panel + j * kPanel + 8);
    for (int r = 0; r < R; ++r) {
      const v8 a = splat(x[r * k + j]);
      acc[r][0] += a * w0;
      acc[r][1] += a * w1;
    }
  }
  v8 b0 = splat(0.f), b1 = b0;
  float btmp[kPanel] = {0.f};
  if (bias != nullptr) {
    if (cols == kPanel) {
      b0 = load8(bias);
      b1 = load8(bias + 8);
    } else {
      std::memcpy(btmp, bias, sizeof(float) * cols);
      b0 = load8(btmp);
      b1 = load8(btmp + 8);
    }
  }
  for (int r = 0; r < R; ++r) {
    const v8 o0 = act8<A>(acc[r][0] + b0), o1 = act8<A>(acc[r][1] + b1);
    float* yr = y + r * n;
    if (cols == kPanel) {
      store8(yr, o0);
      store8(yr + 8, o1);
    } else {
      float tmp[kPanel];
      store8(tmp, o0);
      store8(tmp + 8, o1);
      std::memcpy(yr, tmp, sizeof(float) * cols);
    }
  }
}

template <Act A>
void run(const float* x, int64_t m, int64_t k, const float* packed, int64_t n, const float* bias,
         float* y) {
  const int64_t panels = (n + kPanel - 1) / kPanel;
  // Row chunk: ~256 KiB of x stays in L2 while all panels stream past it.
  const int64_t chunk = std::max<int64_t>(6, (65536 / std::max<int64_t>(k, 1)) / 6 * 6);
  for (int64_t m0 = 0; m0 < m; m0 += chunk) {
    const int64_t m1 = std::min(m, m0 + chunk);
#pragma omp parallel for schedule(static) if ((m1 - m0) * n * k > 262144)
    for (int64_t p = 0; p < panels; ++p) {
      const float* panel = packed + p * k * kPanel;
      const int64_t c0 = p * kPanel, cols = std::min(kPanel, n - c0);
      const float* bp = bias != nullptr ? bias + c0 : nullptr;
      int64_t i = m0;
      while (i < m1) {
        const int64_t left = m1 - i;
        const float* xi = x + i * k;
        float* yi = y + i * n + c0;
        if (left >= 6 && left != 8) {
          micro<6, A>(xi, k, panel, bp, yi, n, cols);
          i += 6;
        } else if (left >= 4) {
          micro<4, A>(xi, k, panel, bp, yi, n, cols);
          i += 4;
        } else if (left == 3) {
          micro<3, A>(xi, k, panel, bp, yi, n, cols);
          i += 3;
        } else if (left == 2) {
          micro<2, A>(xi, k, panel, bp, yi, n, cols);
          i += 2;
        } else {
          micro<1, A>(xi, k, panel, bp, yi, n, cols);
          i += 1;
        }
      }
    }
  }
}

}  // namespace

int64_t packed_size(int64_t n, int64_t k) { return (n + kPanel - 1) / kPanel * k * kPanel; }

void pack_weight(const float* w, int64_t n, int64_t k, float* packed) {
  const int64_t panels = (n + kPanel - 1) / kPanel;
#pragma omp parallel for schedule(static) if (n * k > 262144)
  for (int64_t p = 0; p < panels; ++p) {
    float* dst = packed + p * k * kPanel;
    for (int64_t j = 0; j < k; ++j)
      for (int64_t c = 0; c < kPanel; ++c) {
        const int64_t row = p * kPanel + c;
        dst[j * kPanel + c] = row < n ? w[row * k + j] : 0.f;
      }
  }
}

void gemm_packed(const float* x, int64_t m, int64_t k, const float* packed, int64_t n,
                 const float* bias, Act act, float* y) {
  switch (act) {
    case Act::kIdentity: return run<Act::kIdentity>(x, m, k, packed, n, bias, y);
    case Act::kRelu: return run<Act::kRelu>(x, m, k, packed, n, bias, y);
    case Act::kGeluErf: return run<Act::kGeluErf>(x, m, k, packed, n, bias, y);
    case Act::kGeluTanh: return run<Act::kGeluTanh>(x, m, k, packed, n, bias, y);
  }
}

}  // namespace cpu
}  // namespace eet
