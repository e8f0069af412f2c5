// Standalone test of the CUDA launchers in eet/ops_cuda.h (no torch, no gtest): random
// inputs on the host, each launcher run in fp32/fp16/bf16 on poisoned (NaN) outputs and
// compared with naive double-precision host references. Exit 0: pass, 1: failure, 77: no GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "eet/ops_cuda.h"

using eet::Act;
using eet::DType;

namespace {

int g_failures = 0;
int g_cases = 0;

#define CK(expr)                                                                        \
  do {                                                                                  \
    const cudaError_t err_ = (expr);                                                    \
    if (err_ != cudaSuccess) {                                                          \
      std::printf("CUDA error '%s' at %s:%d: %s\n", cudaGetErrorString(err_), __FILE__, \
                  __LINE__, #expr);                                                     \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------------------------------
// Types.

float to_f(float x) { return x; }
float to_f(__half x) { return __half2float(x); }
float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
T from_f(float x);
template <>
float from_f<float>(float x) { return x; }
template <>
__half from_f<__half>(float x) { return __float2half_rn(x); }
template <>
__nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

template <typename T>
struct TypeInfo;
template <>
struct TypeInfo<float> {
  static constexpr DType dt = DType::kFloat32;
  static constexpr const char* name = "fp32";
  static constexpr double atol = 2e-4, rtol = 2e-4;
};
template <>
struct TypeInfo<__half> {
  static constexpr DType dt = DType::kFloat16;
  static constexpr const char* name = "fp16";
  static constexpr double atol = 4e-3, rtol = 4e-3;
};
template <>
struct TypeInfo<__nv_bfloat16> {
  static constexpr DType dt = DType::kBFloat16;
  static constexpr const char* name = "bf16";
  static constexpr double atol = 2e-2, rtol = 1.6e-2;
};

// ---------------------------------------------------------------------------------------
// Helpers.

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<uint32_t>(s >> 11);
  }
  float uni(float lo, float hi) {  // [lo, hi)
    return lo + (hi - lo) * static_cast<float>(next() & 0xFFFFFF) / 16777216.f;
  }
  int64_t range(int64_t lo, int64_t hi) {  // [lo, hi]
    return lo + static_cast<int64_t>(next() % static_cast<uint32_t>(hi - lo + 1));
  }
};

// Device array of T with a host mirror holding exactly the values the device sees.
template <typename T>
struct Buf {
  size_t n = 0;
  T* d = nullptr;
  std::vector<float> h;
  explicit Buf(size_t count) : n(count < 1 ? 1 : count), h(n, 0.f) {
    CK(cudaMalloc(&d, n * sizeof(T)));
  }
  ~Buf() { cudaFree(d); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  void random(Rng& rng, float lo, float hi) {
    std::vector<T> t(n);
    for (size_t i = 0; i < n; ++i) {
      t[i] = from_f<T>(rng.uni(lo, hi));
      h[i] = to_f(t[i]);
    }
    CK(cudaMemcpy(d, t.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  // All-ones bytes are a NaN in fp32, fp16 and bf16 alike.
  void poison() { CK(cudaMemset(d, 0xFF, n * sizeof(T))); }
  std::vector<float> download() const {
    std::vector<T> t(n);
    CK(cudaMemcpy(t.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = to_f(t[i]);
    return out;
  }
};

template <typename I>
struct IdxBuf {
  I* d = nullptr;
  explicit IdxBuf(const std::vector<I>& v) {
    CK(cudaMalloc(&d, (v.empty() ? 1 : v.size()) * sizeof(I)));
    if (!v.empty()) CK(cudaMemcpy(d, v.data(), v.size() * sizeof(I), cudaMemcpyHostToDevice));
  }
  ~IdxBuf() { cudaFree(d); }
  IdxBuf(const IdxBuf&) = delete;
  IdxBuf& operator=(const IdxBuf&) = delete;
};

// ref[i] NaN: element must stay poisoned (NaN); else |got - ref| <= atol + rtol * |ref|.
void report(const std::string& name, const std::vector<float>& got,
            const std::vector<double>& ref, double atol, double rtol) {
  ++g_cases;
  size_t bad = 0, first = 0;
  double max_err = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    bool ok;
    if (std::isnan(ref[i])) {
      ok = std::isnan(got[i]);
    } else {
      const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
      ok = err <= atol + rtol * std::fabs(ref[i]);  // false for NaN got
      if (!std::isnan(err) && err > max_err) max_err = err;
    }
    if (!ok && bad++ == 0) first = i;
  }
  if (bad == 0) {
    std::printf("PASS %-72s max_err %.3g\n", name.c_str(), max_err);
  } else {
    ++g_failures;
    std::printf("FAIL %-72s %zu/%zu bad, first at %zu: got %g want %g\n", name.c_str(), bad,
                ref.size(), first, static_cast<double>(got[first]), ref[first]);
  }
}

void report_status(const std::string& name, cudaError_t st) {
  if (st != cudaSuccess) {
    ++g_cases;
    ++g_failures;
    std::printf("FAIL %s: launcher returned %s\n", name.c_str(), cudaGetErrorString(st));
  }
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof(buf), f, ap);
  va_end(ap);
  return buf;
}

// ---------------------------------------------------------------------------------------
// layernorm

void ln_ref(const float* h_in, int64_t hidden, const float* gamma, const float* beta,
            double eps, double* y) {
  double mean = 0.0, var = 0.0;
  for (int64_t c = 0; c < hidden; ++c) mean += h_in[c];
  mean /= static_cast<double>(hidden);
  for (int64_t c = 0; c < hidden; ++c) var += (h_in[c] - mean) * (h_in[c] - mean);
  var /= static_cast<double>(hidden);
  const double rstd = 1.0 / std::sqrt(var + eps);
  for (int64_t c = 0; c < hidden; ++c) y[c] = (h_in[c] - mean) * rstd * gamma[c] + beta[c];
}

// variant: 0 plain; 1 residual + bias + h_out; 2 bias + h_out; 3 residual, x misaligned by
// one element; 4 in place (y = x, h_out = residual) with residual + bias.
template <typename T>
void test_layernorm(int64_t rows, int64_t hidden, int variant, Rng& rng) {
  const float eps = 1e-5f;
  const int64_t n = rows * hidden;
  const int64_t xoff = variant == 3 ? 1 : 0;
  Buf<T> x(n + 1), res(n), bias(hidden), gamma(hidden), beta(hidden), y(n), hout(n);
  x.random(rng, 3.f, 7.f);  // a large mean exercises the two-pass variance
  res.random(rng, -1.f, 1.f);
  bias.random(rng, -0.5f, 0.5f);
  gamma.random(rng, 0.5f, 1.5f);
  beta.random(rng, -0.5f, 0.5f);
  y.poison();
  hout.poison();
  const bool use_res = variant == 1 || variant == 3 || variant == 4;
  const bool use_bias = variant == 1 || variant == 2 || variant == 4;
  const bool use_hout = variant == 1 || variant == 2 || variant == 4;

  std::vector<double> ref_y(n), ref_h(n, kNaN);
  std::vector<float> hrow(hidden);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < hidden; ++c) {
      float v = x.h[xoff + r * hidden + c];
      if (use_res) v += res.h[r * hidden + c];
      if (use_bias) v += bias.h[c];
      hrow[c] = v;
      if (use_hout) ref_h[r * hidden + c] = v;
    }
    ln_ref(hrow.data(), hidden, gamma.h.data(), beta.h.data(), eps, &ref_y[r * hidden]);
  }
  T* yp = variant == 4 ? x.d : y.d;
  T* hp = variant == 4 ? res.d : (use_hout ? hout.d : nullptr);
  const cudaError_t st = eet::cuda::layernorm(
      TypeInfo<T>::dt, x.d + xoff, use_res ? res.d : nullptr, use_bias ? bias.d : nullptr,
      gamma.d, beta.d, yp, hp, rows, hidden, eps, nullptr);
  CK(cudaDeviceSynchronize());
  const std::string name =
      fmt("layernorm %s rows=%lld hidden=%lld variant=%d", TypeInfo<T>::name,
          static_cast<long long>(rows), static_cast<long long>(hidden), variant);
  report_status(name, st);
  std::vector<float> got_y = variant == 4 ? x.download() : y.download();
  got_y.resize(n);
  report(name + " y", got_y, ref_y, TypeInfo<T>::atol, TypeInfo<T>::rtol);
  if (use_hout) {
    std::vector<float> got_h = variant == 4 ? res.download() : hout.download();
    got_h.resize(n);
    report(name + " h_out", got_h, ref_h, TypeInfo<T>::atol, TypeInfo<T>::rtol);
  }
}

// ---------------------------------------------------------------------------------------
// embedding

template <typename T>
void test_embedding(int64_t hidden, bool with_type, bool with_ln, Rng& rng) {
  const int64_t tokens = 9, vocab = 50, n_pos = 40, n_types = 3;
  const float eps = 1e-12f;
  Buf<T> word(vocab * hidden), pos(n_pos * hidden), type(n_types * hidden), gamma(hidden),
      beta(hidden), out(tokens * hidden);
  word.random(rng, -1.f, 1.f);
  pos.random(rng, -1.f, 1.f);
  type.random(rng, -1.f, 1.f);
  gamma.random(rng, 0.5f, 1.5f);
  beta.random(rng, -0.5f, 0.5f);
  out.poison();
  std::vector<int64_t> ids(tokens), pids(tokens), tids(tokens);
  for (int64_t t = 0; t < tokens; ++t) {
    ids[t] = rng.range(0, vocab - 1);
    pids[t] = rng.range(0, n_pos - 1);
    tids[t] = rng.range(0, n_types - 1);
  }
  // Out-of-range ids are clamped (memory safety only).
  ids[2] = vocab + 7;
  ids[3] = -4;
  pids[4] = n_pos + 60;
  tids[5] = 9;
  IdxBuf<int64_t> d_ids(ids), d_pids(pids), d_tids(tids);
  auto clampi = [](int64_t v, int64_t n) { return v < 0 ? 0 : (v >= n ? n - 1 : v); };

  std::vector<double> ref(tokens * hidden);
  std::vector<float> row(hidden);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t c = 0; c < hidden; ++c) {
      float v = word.h[clampi(ids[t], vocab) * hidden + c] + pos.h[clampi(pids[t], n_pos) * hidden + c];
      if (with_type) v += type.h[clampi(tids[t], n_types) * hidden + c];
      row[c] = v;
      ref[t * hidden + c] = v;
    }
    if (with_ln) ln_ref(row.data(), hidden, gamma.h.data(), beta.h.data(), eps, &ref[t * hidden]);
  }
  const cudaError_t st = eet::cuda::embedding(
      TypeInfo<T>::dt, d_ids.d, d_pids.d, with_type ? d_tids.d : nullptr, word.d, pos.d,
      with_type ? type.d : nullptr, with_ln ? gamma.d : nullptr, with_ln ? beta.d : nullptr,
      out.d, tokens, hidden, vocab, n_pos, n_types, eps, nullptr);
  CK(cudaDeviceSynchronize());
  const std::string name = fmt("embedding %s hidden=%lld type=%d ln=%d", TypeInfo<T>::name,
                               static_cast<long long>(hidden), with_type, with_ln);
  report_status(name, st);
  report(name, out.download(), ref, TypeInfo<T>::atol, TypeInfo<T>::rtol);
}

// ---------------------------------------------------------------------------------------
// bias_act

double act_ref(Act a, double v) {
  switch (a) {
    case Act::kRelu: return v > 0 ? v : 0;
    case Act::kGeluErf: return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    case Act::kGeluTanh:
      return 0.5 * v * (1 + std::tanh(0.79788456080286535588 * (v + 0.044715 * v * v * v)));
    default: return v;
  }
}

// variant: 0 bias + residual; 1 bias; 2 neither; 3 residual with x misaligned by one element.
template <typename T>
void test_bias_act(int64_t rows, int64_t cols, Act act, int variant, Rng& rng) {
  const int64_t n = rows * cols;
  const int64_t xoff = variant == 3 ? 1 : 0;
  Buf<T> x(n + 1), bias(cols), res(n);
  x.random(rng, -3.f, 3.f);
  bias.random(rng, -1.f, 1.f);
  res.random(rng, -1.f, 1.f);
  const bool use_bias = variant <= 1, use_res = variant == 0 || variant == 3;
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) {
    double v = x.h[xoff + i];
    if (use_bias) v += bias.h[i % cols];
    v = act_ref(act, v);
    if (use_res) v += res.h[i];
    ref[i] = v;
  }
  const cudaError_t st =
      eet::cuda::bias_act(TypeInfo<T>::dt, x.d + xoff, use_bias ? bias.d : nullptr,
                          use_res ? res.d : nullptr, act, rows, cols, nullptr);
  CK(cudaDeviceSynchronize());
  const std::string name = fmt("bias_act %s rows=%lld cols=%lld act=%d variant=%d",
                               TypeInfo<T>::name, static_cast<long long>(rows),
                               static_cast<long long>(cols), static_cast<int>(act), variant);
  report_status(name, st);
  std::vector<float> got = x.download();
  got.erase(got.begin(), got.begin() + xoff);
  got.resize(n);
  report(name, got, ref, TypeInfo<T>::atol, TypeInfo<T>::rtol);
}

// ---------------------------------------------------------------------------------------
// int8 weights: linear_int8 (weight-only GEMV, m <= kLinearInt8MaxRows), dequantize_int8 and
// quantize_int8 (exact: the CPU kernel's formula).

template <typename T>
void upload(Buf<T>& b, const std::vector<float>& v) {
  std::vector<T> t(b.n);
  for (size_t i = 0; i < b.n; ++i) {
    t[i] = from_f<T>(i < v.size() ? v[i] : 0.f);
    b.h[i] = to_f(t[i]);
  }
  CK(cudaMemcpy(b.d, t.data(), b.n * sizeof(T), cudaMemcpyHostToDevice));
}

std::vector<int8_t> random_q(size_t count, Rng& rng) {
  std::vector<int8_t> q(count);
  for (auto& v : q) v = static_cast<int8_t>(rng.range(-127, 127));
  return q;
}

// misalign: 1 = x one element off 16-byte alignment, 2 = q one byte off (the scalar path).
template <typename T>
void test_linear_int8(int64_t m, int64_t n, int64_t k, Act act, bool use_bias, int misalign, Rng& rng) {
  const int64_t xoff = misalign == 1 ? 1 : 0, qoff = misalign == 2 ? 1 : 0;
  Buf<T> x(m * k + 1), bias(n), y(m * n);
  Buf<float> scales(n);
  x.random(rng, -1.f, 1.f);
  bias.random(rng, -1.f, 1.f);
  scales.random(rng, 0.002f, 0.01f);
  const std::vector<int8_t> qh = random_q(n * k + 1, rng);
  IdxBuf<int8_t> q(qh);
  y.poison();
  std::vector<double> ref(m * n);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double acc = 0.0;
      for (int64_t j = 0; j < k; ++j) acc += static_cast<double>(x.h[xoff + r * k + j]) * qh[qoff + c * k + j];
      double v = acc * scales.h[c] + (use_bias ? bias.h[c] : 0.0);
      ref[r * n + c] = act_ref(act, v);
    }
  const cudaError_t st = eet::cuda::linear_int8(TypeInfo<T>::dt, x.d + xoff, q.d + qoff, scales.d,
                                                use_bias ? bias.d : nullptr, act, y.d, m, n, k, nullptr);
  CK(cudaDeviceSynchronize());
  const std::string name = fmt("linear_int8 %s m=%lld n=%lld k=%lld act=%d bias=%d misalign=%d",
                               TypeInfo<T>::name, static_cast<long long>(m), static_cast<long long>(n),
                               static_cast<long long>(k), static_cast<int>(act), use_bias ? 1 : 0, misalign);
  report_status(name, st);
  report(name, y.download(), ref, TypeInfo<T>::atol, TypeInfo<T>::rtol);
}

template <typename T>
void test_dequantize_int8(int64_t n, int64_t k, bool misalign, Rng& rng) {
  const int64_t off = misalign ? 1 : 0;
  Buf<T> w(n * k + 1);
  Buf<float> scales(n);
  scales.random(rng, 0.001f, 0.1f);
  const std::vector<int8_t> qh = random_q(n * k + 1, rng);
  IdxBuf<int8_t> q(qh);
  w.poison();
  std::vector<double> ref(n * k + 1, kNaN);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c)
      ref[off + r * k + c] = to_f(from_f<T>(static_cast<float>(qh[off + r * k + c]) * scales.h[r]));
  const cudaError_t st = eet::cuda::dequantize_int8(TypeInfo<T>::dt, q.d + off, scales.d, w.d + off, n, k, nullptr);
  CK(cudaDeviceSynchronize());
  const std::string name = fmt("dequantize_int8 %s n=%lld k=%lld misalign=%d", TypeInfo<T>::name,
                               static_cast<long long>(n), static_cast<long long>(k), misalign ? 1 : 0);
  report_status(name, st);
  report(name, w.download(), ref, 0.0, 0.0);
}

// Row n / 2 is all zero (scale 0, q 0); the others span very different ranges.
template <typename T>
void test_quantize_int8(int64_t n, int64_t k, Rng& rng) {
  Buf<T> w(n * k);
  std::vector<float> v(n * k);
  for (int64_t r = 0; r < n; ++r) {
    const float range = r == n / 2 ? 0.f : rng.uni(0.01f, 5.f);
    for (int64_t c = 0; c < k; ++c) v[r * k + c] = range * rng.uni(-1.f, 1.f);
  }
  upload(w, v);
  Buf<float> scales(n);
  scales.poison();
  int8_t* q = nullptr;
  CK(cudaMalloc(&q, n * k));
  CK(cudaMemset(q, 0x55, n * k));
  const cudaError_t st = eet::cuda::quantize_int8(TypeInfo<T>::dt, w.d, n, k, q, scales.d, nullptr);
  CK(cudaDeviceSynchronize());
  std::vector<int8_t> qg(n * k);
  CK(cudaMemcpy(qg.data(), q, n * k, cudaMemcpyDeviceToHost));
  cudaFree(q);
  std::vector<double> sref(n), qref(n * k);
  std::vector<float> qgot(n * k);
  for (int64_t r = 0; r < n; ++r) {
    float amax = 0.f;
    for (int64_t c = 0; c < k; ++c) amax = std::max(amax, std::fabs(w.h[r * k + c]));
    const float s = amax / 127.f;
    sref[r] = s;
    for (int64_t c = 0; c < k; ++c) {
      qref[r * k + c] = s > 0.f ? std::nearbyint(std::min(127.f, std::max(-127.f, w.h[r * k + c] / s))) : 0.0;
      qgot[r * k + c] = qg[r * k + c];
    }
  }
  const std::string name = fmt("quantize_int8 %s n=%lld k=%lld", TypeInfo<T>::name,
                               static_cast<long long>(n), static_cast<long long>(k));
  report_status(name, st);
  report(name + " scales", scales.download(), sref, 0.0, 0.0);
  report(name + " q", qgot, qref, 0.0, 0.0);
}

// ---------------------------------------------------------------------------------------
// kv_cache_write: exact copies; everything not written must keep its poison bytes.

template <typename T>
void test_kv_cache(int B, int S, int H, int D, int M, bool use_pos, int misalign, Rng& rng) {
  // Source: packed qkv [B, S, 3, H, D] view, k at +H*D and v at +2*H*D.
  const int64_t src_n = static_cast<int64_t>(B) * S * 3 * H * D + misalign;
  const int64_t cache_sb = static_cast<int64_t>(H) * M * D + 24;  // padded cache rows
  const int64_t cache_n = cache_sb * B;
  Buf<T> src(src_n), kc(cache_n), vc(cache_n);
  src.random(rng, -2.f, 2.f);
  kc.poison();
  vc.poison();
  std::vector<int32_t> positions(B);
  const int32_t pos_choices[] = {0, 7, M - 2, -2, 3};
  for (int b = 0; b < B; ++b) positions[b] = pos_choices[b % 5];
  IdxBuf<int32_t> d_pos(positions);

  eet::CacheWriteParams p;
  const int64_t sb = static_cast<int64_t>(S) * 3 * H * D, ss = 3LL * H * D, sh = D;
  p.k = src.d + misalign + H * D;
  p.v = src.d + misalign + 2 * H * D;
  p.k_stride_b = p.v_stride_b = sb;
  p.k_stride_s = p.v_stride_s = ss;
  p.k_stride_h = p.v_stride_h = sh;
  p.k_cache = kc.d;
  p.v_cache = vc.d;
  p.cache_stride_b = cache_sb;
  p.positions = use_pos ? d_pos.d : nullptr;
  p.batch = B;
  p.seq = S;
  p.heads = H;
  p.head_dim = D;
  p.max_seq = M;

  // Expected raw bytes: poison, then the copies (bytes, so no NaN is ever canonicalized).
  const size_t es = sizeof(T);
  std::vector<unsigned char> src_raw(src_n * es), exp_k(cache_n * es, 0xFF),
      exp_v(cache_n * es, 0xFF), got_k(cache_n * es), got_v(cache_n * es);
  CK(cudaMemcpy(src_raw.data(), src.d, src_n * es, cudaMemcpyDeviceToHost));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int s = 0; s < S; ++s) {
        const int64_t dst = (use_pos ? positions[b] : 0) + s;
        if (dst < 0 || dst >= M) continue;
        const int64_t o = b * cache_sb + (static_cast<int64_t>(h) * M + dst) * D;
        const int64_t i = misalign + b * sb + s * ss + h * sh;
        std::memcpy(&exp_k[o * es], &src_raw[(i + H * D) * es], D * es);
        std::memcpy(&exp_v[o * es], &src_raw[(i + 2 * H * D) * es], D * es);
      }
  const cudaError_t st = eet::cuda::kv_cache_write(TypeInfo<T>::dt, p, nullptr);
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpy(got_k.data(), kc.d, cache_n * es, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(got_v.data(), vc.d, cache_n * es, cudaMemcpyDeviceToHost));
  const std::string name = fmt("kv_cache_write %s B=%d S=%d H=%d D=%d M=%d pos=%d misalign=%d",
                               TypeInfo<T>::name, B, S, H, D, M, use_pos, misalign);
  report_status(name, st);
  ++g_cases;
  const bool ok = got_k == exp_k && got_v == exp_v;
  if (ok) {
    std::printf("PASS %-72s exact\n", name.c_str());
  } else {
    ++g_failures;
    std::printf("FAIL %-72s cache contents differ\n", name.c_str());
  }
}

// ---------------------------------------------------------------------------------------
// attention

enum Layout { kDense = 0, kPacked = 1, kCache = 2 };

struct AttnCase {
  const char* what = "";
  int B = 1, H = 1, Sq = 1, Sk = 1, D = 8;
  Layout layout = kDense;
  bool causal = false;
  int causal_offset = 0;
  std::vector<int32_t> key_start;  // empty: null
  std::vector<int32_t> key_end;    // empty: null
  int key_end_add = 0;
  int misalign = 0;  // elements added to the input base pointer
  int opad = 0;      // gap after each output head row (must stay poisoned)
  float scale = 0.f;  // 0: 1/sqrt(D)
};

struct View {
  int64_t off, sb, ss, sh;
};

template <typename T>
void test_attention(const AttnCase& c, Rng& rng) {
  const int64_t B = c.B, H = c.H, Sq = c.Sq, Sk = c.Sk, D = c.D;
  View q{}, k{}, v{};
  int64_t in_n = 0;
  if (c.layout == kPacked) {  // [B, S, 3, H, D]
    const int64_t ss = 3 * H * D, sb = Sq * ss;
    q = {c.misalign, sb, ss, D};
    k = {c.misalign + H * D, sb, ss, D};
    v = {c.misalign + 2 * H * D, sb, ss, D};
    in_n = c.misalign + B * sb;
  } else if (c.layout == kDense) {  // three [B, S, H, D] tensors
    q = {c.misalign, Sq * H * D, H * D, D};
    k = {q.off + B * Sq * H * D, Sk * H * D, H * D, D};
    v = {k.off + B * Sk * H * D, Sk * H * D, H * D, D};
    in_n = v.off + B * Sk * H * D;
  } else {  // q [B, Sq, H, D], K/V caches [B, H, Sk, D]
    q = {c.misalign, Sq * H * D, H * D, D};
    k = {q.off + B * Sq * H * D, H * Sk * D, D, Sk * D};
    v = {k.off + B * H * Sk * D, H * Sk * D, D, Sk * D};
    in_n = v.off + B * H * Sk * D;
  }
  Buf<T> in(in_n);
  in.random(rng, -2.f, 2.f);
  const int64_t osh = D + c.opad, oss = H * osh, osb = Sq * oss;
  Buf<T> out(B * osb);
  out.poison();
  IdxBuf<int32_t> d_ks(c.key_start), d_ke(c.key_end);
  const float scale = c.scale != 0.f ? c.scale : 1.f / std::sqrt(static_cast<float>(D));

  eet::AttnParams p;
  p.q = in.d + q.off;
  p.k = in.d + k.off;
  p.v = in.d + v.off;
  p.out = out.d;
  p.q_stride_b = q.sb, p.q_stride_s = q.ss, p.q_stride_h = q.sh;
  p.k_stride_b = k.sb, p.k_stride_s = k.ss, p.k_stride_h = k.sh;
  p.v_stride_b = v.sb, p.v_stride_s = v.ss, p.v_stride_h = v.sh;
  p.o_stride_b = osb, p.o_stride_s = oss, p.o_stride_h = osh;
  p.batch = c.B, p.heads = c.H, p.q_len = c.Sq, p.k_len = c.Sk, p.head_dim = c.D;
  p.key_start = c.key_start.empty() ? nullptr : d_ks.d;
  p.key_end = c.key_end.empty() ? nullptr : d_ke.d;
  p.key_end_add = c.key_end_add;
  p.causal = c.causal;
  p.causal_offset = c.causal_offset;
  p.scale = scale;

  std::vector<double> ref(B * osb, kNaN), sc(Sk > 0 ? Sk : 1), acc(D);
  const float* x = in.h.data();
  for (int64_t b = 0; b < B; ++b) {
    int64_t ks = c.key_start.empty() ? 0 : c.key_start[b];
    int64_t ke = (c.key_end.empty() ? Sk : c.key_end[b]) + c.key_end_add;
    ks = std::min<int64_t>(std::max<int64_t>(ks, 0), Sk);
    ke = std::min<int64_t>(std::max<int64_t>(ke, 0), Sk);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Sq; ++i) {
        double* o = &ref[b * osb + i * oss + h * osh];
        const int64_t hi = c.causal ? std::min<int64_t>(ke, i + c.causal_offset + 1) : ke;
        if (hi <= ks) {
          for (int64_t d = 0; d < D; ++d) o[d] = 0.0;
          continue;
        }
        const float* qi = x + q.off + b * q.sb + i * q.ss + h * q.sh;
        double mx = -INFINITY;
        for (int64_t j = ks; j < hi; ++j) {
          const float* kj = x + k.off + b * k.sb + j * k.ss + h * k.sh;
          double s = 0;
          for (int64_t d = 0; d < D; ++d) s += static_cast<double>(qi[d]) * kj[d];
          sc[j] = s * scale;
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = ks; j < hi; ++j) {
          const double pj = std::exp(sc[j] - mx);
          sum += pj;
          const float* vj = x + v.off + b * v.sb + j * v.ss + h * v.sh;
          for (int64_t d = 0; d < D; ++d) acc[d] += pj * vj[d];
        }
        for (int64_t d = 0; d < D; ++d) o[d] = acc[d] / sum;
      }
  }
  const cudaError_t st = eet::cuda::attention(TypeInfo<T>::dt, p, nullptr);
  CK(cudaDeviceSynchronize());
  const std::string name =
      fmt("attention %s %s B=%lld H=%lld Sq=%lld Sk=%lld D=%lld%s", TypeInfo<T>::name, c.what,
          static_cast<long long>(B), static_cast<long long>(H), static_cast<long long>(Sq),
          static_cast<long long>(Sk), static_cast<long long>(D), c.causal ? " causal" : "");
  report_status(name, st);
  report(name, out.download(), ref, TypeInfo<T>::atol, TypeInfo<T>::rtol);
}

AttnCase mk(const char* what, int B, int H, int Sq, int Sk, int D, Layout layout = kDense,
            bool causal = false, int causal_offset = 0) {
  AttnCase c;
  c.what = what;
  c.B = B, c.H = H, c.Sq = Sq, c.Sk = Sk, c.D = D;
  c.layout = layout;
  c.causal = causal;
  c.causal_offset = causal_offset;
  return c;
}

std::vector<AttnCase> attention_cases() {
  std::vector<AttnCase> v;
  auto add = [&](AttnCase c) { v.push_back(std::move(c)); };
  AttnCase c;
  // Prompt pass (tiled kernel for q_len > 4, generic kernel for other head dims).
  c = mk("dense", 2, 3, 37, 37, 64);
  add(c);
  c = mk("packed left-pad", 3, 2, 130, 130, 80, kPacked, true);
  c.key_start = {0, 5, 129};
  add(c);
  c = mk("packed left-pad", 2, 2, 65, 65, 72, kPacked, true);
  c.key_start = {3, 0};
  c.opad = 5;
  add(c);
  c = mk("dense", 1, 2, 200, 200, 128, kDense, true);
  add(c);
  c = mk("dense left-pad", 2, 1, 70, 70, 256, kDense, true);
  c.key_start = {0, 30};
  add(c);
  c = mk("dense key_end", 2, 2, 150, 150, 32, kDense, false);
  c.key_end = {100, 150};
  add(c);
  c = mk("dense", 1, 3, 40, 40, 8);
  add(c);
  c = mk("dense", 1, 2, 33, 33, 48, kDense, true);
  add(c);
  c = mk("dense", 1, 2, 20, 20, 96, kDense, true);
  add(c);
  c = mk("dense", 1, 2, 20, 25, 160);
  add(c);
  c = mk("dense", 1, 2, 19, 25, 192, kDense, true, 6);
  add(c);
  c = mk("packed generic", 2, 2, 33, 33, 100, kPacked, true);
  c.key_start = {0, 4};
  add(c);
  c = mk("dense generic", 1, 2, 5, 40, 264);
  add(c);
  c = mk("dense generic", 1, 2, 17, 17, 5, kDense, true);
  add(c);
  c = mk("cross key_end", 3, 2, 20, 77, 64);
  c.key_end = {77, 40, 1};
  add(c);
  c = mk("long keys", 1, 2, 5, 5000, 128);
  add(c);
  c = mk("long prompt", 1, 1, 1000, 1000, 64, kDense, true);
  c.key_start = {10};
  add(c);
  c = mk("no visible key (offset -10)", 2, 2, 50, 50, 64, kDense, true, -10);
  add(c);
  c = mk("packed misaligned", 2, 2, 40, 40, 64, kPacked, true);
  c.misalign = 1;
  add(c);
  c = mk("scale 0.3", 1, 2, 30, 30, 64, kDense, false);
  c.scale = 0.3f;
  add(c);
  c = mk("k_len 0", 2, 2, 9, 0, 64);
  add(c);
  c = mk("seq 1", 2, 3, 1, 1, 64, kDense, true);
  add(c);
  c = mk("seq 1", 2, 3, 1, 1, 80, kPacked, true);
  add(c);
  // Decode: one query against the cache, per-row key ranges (key_end = position, add 1).
  c = mk("decode", 3, 2, 1, 1000, 128, kCache);
  c.key_start = {0, 10, 500};
  c.key_end = {999, 500, 200};  // row 2: empty range, zeros
  c.key_end_add = 1;
  c.opad = 8;
  add(c);
  c = mk("decode", 2, 2, 1, 5000, 64, kCache);
  c.key_start = {0, 1000};
  c.key_end = {4999, 3000};
  c.key_end_add = 1;
  add(c);
  c = mk("decode", 2, 4, 1, 1, 80, kCache);
  c.key_end = {0, 0};
  c.key_end_add = 1;
  add(c);
  c = mk("decode", 2, 2, 1, 1000, 256, kCache);
  c.key_end = {999, 3};
  c.key_end_add = 1;
  add(c);
  c = mk("decode", 2, 2, 1, 1000, 72, kCache);
  c.key_start = {2, 0};
  c.key_end = {700, 999};
  c.key_end_add = 1;
  add(c);
  c = mk("decode", 1, 2, 1, 300, 8, kCache);
  add(c);
  c = mk("decode", 1, 2, 1, 300, 24, kCache);
  add(c);
  c = mk("decode generic", 2, 2, 1, 1000, 100, kCache);
  c.key_start = {0, 300};
  c.key_end = {999, 600};
  c.key_end_add = 1;
  add(c);
  c = mk("decode generic", 2, 2, 1, 300, 264, kCache);
  c.key_end = {299, 150};
  c.key_end_add = 1;
  add(c);
  c = mk("decode misaligned", 2, 2, 1, 1000, 64, kCache);
  c.misalign = 1;
  c.key_end = {999, 10};
  c.key_end_add = 1;
  add(c);
  c = mk("decode q_len 4 causal", 2, 2, 4, 1000, 128, kCache, true, 900);
  c.key_start = {0, 50};
  add(c);
  c = mk("decode q_len 3 causal offset -1", 1, 2, 3, 16, 64, kDense, true, -1);
  add(c);
  c = mk("decode many heads", 4, 40, 1, 600, 128, kCache);
  add(c);
  return v;
}

template <typename T>
void run_all(Rng& rng) {
  for (int64_t hidden : {1, 5, 32, 64, 768, 769, 1024, 1032, 4096, 8200, 20000, 33000}) {
    const int64_t rows = hidden <= 1100 ? 37 : 3;
    for (int variant = 0; variant <= 4; ++variant) test_layernorm<T>(rows, hidden, variant, rng);
  }
  for (int64_t hidden : {32, 768, 769})
    for (int wt = 0; wt <= 1; ++wt)
      for (int ln = 0; ln <= 1; ++ln) test_embedding<T>(hidden, wt != 0, ln != 0, rng);
  for (int64_t cols : {1, 7, 64, 768, 769})
    for (Act a : {Act::kIdentity, Act::kRelu, Act::kGeluErf, Act::kGeluTanh})
      for (int variant = 0; variant <= 3; ++variant) test_bias_act<T>(5, cols, a, variant, rng);
  for (int D : {64, 72, 5, 8})
    for (int S : {1, 5}) {
      test_kv_cache<T>(5, S, 2, D, 16, true, 0, rng);
      test_kv_cache<T>(2, S, 3, D, 16, false, 0, rng);
    }
  test_kv_cache<T>(5, 5, 2, 64, 16, true, 1, rng);
  for (int64_t m : {1, 2, 3, 5, 8, 16})
    for (const auto& nk : {std::pair<int64_t, int64_t>{7, 64}, {33, 769}, {64, 48}, {5, 16}, {3, 1}})
      for (Act a : {Act::kIdentity, Act::kRelu, Act::kGeluErf, Act::kGeluTanh})
        test_linear_int8<T>(m, nk.first, nk.second, a, a != Act::kRelu, 0, rng);
  for (int misalign = 1; misalign <= 2; ++misalign)
    for (int64_t m : {1, 4, 16}) test_linear_int8<T>(m, 9, 96, Act::kGeluTanh, true, misalign, rng);
  for (const auto& nk : {std::pair<int64_t, int64_t>{7, 64}, {33, 769}, {4, 8}, {3, 1}})
    for (bool mis : {false, true}) test_dequantize_int8<T>(nk.first, nk.second, mis, rng);
  for (const auto& nk : {std::pair<int64_t, int64_t>{7, 64}, {33, 769}, {5, 1000}, {3, 1}})
    test_quantize_int8<T>(nk.first, nk.second, rng);
  for (const AttnCase& c : attention_cases()) test_attention<T>(c, rng);
}

}  // namespace

int main() {
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  Rng rng(12345);
  run_all<float>(rng);
  run_all<__half>(rng);
  run_all<__nv_bfloat16>(rng);
  // Unknown dtype values must be refused, not run as some default type.
  {
    ++g_cases;
    Buf<float> one(1);
    const cudaError_t st = eet::cuda::bias_act(static_cast<DType>(7), one.d, nullptr, nullptr,
                                               Act::kIdentity, 1, 1, nullptr);
    if (st != cudaErrorInvalidValue) {
      ++g_failures;
      std::printf("FAIL bad dtype not rejected\n");
    }
  }
  // linear_int8 is for few rows only: more rows are the prompt path, refused here.
  {
    ++g_cases;
    Buf<float> x(17 * 16), y(17 * 4), s(4);
    IdxBuf<int8_t> q(std::vector<int8_t>(4 * 16, 1));
    const cudaError_t st = eet::cuda::linear_int8(DType::kFloat32, x.d, q.d, s.d, nullptr, Act::kIdentity,
                                                  y.d, eet::cuda::kLinearInt8MaxRows + 1, 4, 16, nullptr);
    if (st != cudaErrorInvalidValue) {
      ++g_failures;
      std::printf("FAIL linear_int8 with m > kLinearInt8MaxRows not rejected\n");
    }
  }
  std::printf("%d/%d cases passed\n", g_cases - g_failures, g_cases);
  return g_failures == 0 ? 0 : 1;
}
