// CPU vector helpers: the 8-float vector type v8, a row sum and the layernorm row, and
// branch-free fp32 exp/tanh/erf written so that GCC/Clang auto-vectorize the loops that call
// them (libm calls block vectorization without -ffast-math). Accuracy: exp ~2 ulp over
// [-87, 88]; tanh and erf absolute error < 3e-7, well inside the fp32 test tolerance.
#pragma once

#include <cstdint>
#include <cstring>

namespace eet {
namespace cpu {

// 8 floats; aligned(4) makes dereferences unaligned loads/stores (vmovups on AVX2). GCC and
// Clang lower this on any target, so the code stays portable.
typedef float v8 __attribute__((vector_size(32), aligned(4)));

static inline v8 splat(float x) { return v8{x, x, x, x, x, x, x, x}; }
static inline v8 load8(const float* p) { return *reinterpret_cast<const v8*>(p); }
static inline void store8(float* p, v8 x) { *reinterpret_cast<v8*>(p) = x; }
static inline float hsum(v8 x) {
  return ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7]));
}

// Sum of f(p[i]) for i in [0, n) with four independent vector accumulators, so the adds
// pipeline instead of waiting on one another (one accumulator is add-latency bound).
template <typename F>
static inline float sum_map(const float* p, int64_t n, F f) {
  v8 a0 = splat(0.f), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 += f(load8(p + i));
    a1 += f(load8(p + i + 8));
    a2 += f(load8(p + i + 16));
    a3 += f(load8(p + i + 24));
  }
  for (; i + 8 <= n; i += 8) a0 += f(load8(p + i));
  float s = hsum((a0 + a1) + (a2 + a3));
  for (; i < n; ++i) s += f(splat(p[i]))[0];
  return s;
}

// y = (h - mean) / sqrt(var + eps) * gamma + beta over one row of n; y may alias h. Two
// passes (mean, then centered variance) for accuracy.
static inline void layernorm_row(const float* h, float* y, const float* gamma, const float* beta,
                                 int64_t n, float eps) {
  const float mean = sum_map(h, n, [](v8 v) { return v; }) / static_cast<float>(n);
  const v8 m = splat(mean);
  const float var = sum_map(h, n, [m](v8 v) { return (v - m) * (v - m); }) / static_cast<float>(n);
  const float rstd = 1.f / __builtin_sqrtf(var + eps);
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) y[c] = (h[c] - mean) * rstd * gamma[c] + beta[c];
}

static inline float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof(f));
  return f;
}

// Cephes-style expf: x = n ln2 + r, exp(r) by a degree-6 polynomial, 2^n by exponent bits.
// Below -86.6 the result is flushed to 0: exp(-87.3) times a polynomial value < 1 would be a
// denormal, and denormal arithmetic costs ~100 cycles per op on x86 (softmax tails and the
// erf of large |x| hit it constantly). 0 is within 1.7e-38 of the true value.
static inline float vexp(float x) {
  const bool tiny = x < -86.6f;
  x = x < -86.6f ? -86.6f : (x > 88.3f ? 88.3f : x);
  float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const float y = p * bits_to_float((static_cast<int32_t>(n) + 127) << 23);
  return tiny ? 0.f : y;
}

static inline float vtanh(float x) {
  // tanh saturates to 1 in fp32 beyond |x| ~ 9; the clamp keeps exp finite.
  x = x < -9.f ? -9.f : (x > 9.f ? 9.f : x);
  return 1.f - 2.f / (vexp(2.f * x) + 1.f);
}

// Abramowitz & Stegun 7.1.26 with the sign restored. |x| is capped at 4 (erf(4) rounds to 1
// in fp32), which keeps exp(-x^2) far from the denormal range.
static inline float verf(float x) {
  float a = x < 0.f ? -x : x;
  a = a > 4.f ? 4.f : a;
  float t = 1.f / (1.f + 0.3275911f * a);
  float r = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t +
             0.254829592f) * t;
  float y = 1.f - r * vexp(-a * a);
  return x < 0.f ? -y : y;
}

// The Math of eet::activate (eet/activations.h) on the CPU: these branch-free forms instead of
// libm's, so the loops applying an activation vectorize.
struct VecMath {
  static inline float erf(float x) { return verf(x); }
  static inline float tanh(float x) { return vtanh(x); }
};

}  // namespace cpu
}  // namespace eet
