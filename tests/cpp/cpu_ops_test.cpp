// C++ tests of the CPU kernels (no torch, no Python): each kernel against a naive
// double-precision loop over odd sizes. Prints one line per case and "N passed, N failed".
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "eet/ops.h"

namespace {

int g_pass = 0, g_fail = 0;
std::mt19937 g_rng(1234);

std::vector<float> randv(size_t n, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g_rng);
  return v;
}

void report(const char* name, double err, double tol) {
  const bool ok = err <= tol;  // NaN fails
  std::printf("%-48s max err %.3g (tol %.1g) %s\n", name, err, tol, ok ? "ok" : "FAIL");
  (ok ? g_pass : g_fail)++;
}

double max_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(a[i] - b[i]);
    if (!(d <= m)) m = d;  // propagates NaN
  }
  return m;
}

// scale: spread of x, residual and bias (a small one puts the row variance near eps, where a
// wrong eps shows); eps: the layernorm epsilon.
void test_layernorm(int64_t rows, int64_t hidden, bool fused, float scale = 1.f, float eps = 1e-5f) {
  auto x = randv(rows * hidden, 2.f * scale), r = randv(rows * hidden, scale), bias = randv(hidden, scale);
  auto g = randv(hidden), b = randv(hidden);
  std::vector<float> y(rows * hidden, NAN), h(rows * hidden, NAN);
  eet::cpu::layernorm(x.data(), fused ? r.data() : nullptr, fused ? bias.data() : nullptr, g.data(),
                      b.data(), y.data(), h.data(), rows, hidden, eps);
  std::vector<double> yr(rows * hidden), hr(rows * hidden);
  for (int64_t i = 0; i < rows; ++i) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < hidden; ++c) {
      double v = x[i * hidden + c];
      if (fused) v += r[i * hidden + c] + bias[c];
      hr[i * hidden + c] = v;
      mean += v;
    }
    mean /= hidden;
    for (int64_t c = 0; c < hidden; ++c) var += (hr[i * hidden + c] - mean) * (hr[i * hidden + c] - mean);
    const double rstd = 1.0 / std::sqrt(var / hidden + (double)eps);
    for (int64_t c = 0; c < hidden; ++c)
      yr[i * hidden + c] = (hr[i * hidden + c] - mean) * rstd * g[c] + b[c];
  }
  char name[96];
  std::snprintf(name, sizeof(name), "layernorm rows=%lld hidden=%lld fused=%d scale=%g eps=%g",
                (long long)rows, (long long)hidden, fused, scale, eps);
  report(name, std::max(max_diff(y, yr), max_diff(h, hr)), 2e-5);
}

void test_embedding() {
  const int64_t T = 9, H = 769, V = 50, P = 12, NT = 2;
  auto word = randv(V * H), pos = randv(P * H), type = randv(NT * H), g = randv(H), b = randv(H);
  std::vector<int64_t> ids(T), pids(T), tids(T);
  for (int64_t t = 0; t < T; ++t) ids[t] = (t * 7) % V, pids[t] = t % P, tids[t] = t % NT;
  std::vector<float> out(T * H, NAN);
  const int64_t bad = eet::cpu::embedding(ids.data(), pids.data(), tids.data(), word.data(), pos.data(),
                                          type.data(), nullptr, nullptr, out.data(), T, H, V, P, NT, 1e-12f);
  std::vector<double> ref(T * H);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < H; ++c)
      ref[t * H + c] = (double)word[ids[t] * H + c] + pos[pids[t] * H + c] + type[tids[t] * H + c];
  report("embedding token+pos+type, hidden 769", bad == -1 ? max_diff(out, ref) : 1e9, 1e-6);
  ids[4] = V;  // out of range: reported, nothing read
  const int64_t bad2 = eet::cpu::embedding(ids.data(), pids.data(), nullptr, word.data(), pos.data(),
                                           nullptr, g.data(), b.data(), out.data(), T, H, V, P, NT, 1e-12f);
  report("embedding reports the first bad id", bad2 == 4 ? 0.0 : 1.0, 0.0);
}

void test_bias_act() {
  const int64_t N = 7, C = 1001;
  const eet::Act acts[] = {eet::Act::kIdentity, eet::Act::kRelu, eet::Act::kGeluErf, eet::Act::kGeluTanh};
  const char* names[] = {"identity", "relu", "gelu", "gelu_new"};
  for (int a = 0; a < 4; ++a) {
    auto x = randv(N * C, 4.f), bias = randv(C), res = randv(N * C);
    std::vector<double> ref(N * C);
    for (int64_t i = 0; i < N * C; ++i) {
      const double v = (double)x[i] + bias[i % C];
      double y = v;
      if (a == 1) y = v > 0 ? v : 0;
      if (a == 2) y = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
      if (a == 3) y = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
      ref[i] = y + res[i];
    }
    eet::cpu::bias_act(x.data(), bias.data(), res.data(), acts[a], N, C);
    char name[64];
    std::snprintf(name, sizeof(name), "bias_act %s", names[a]);
    report(name, max_diff(x, ref), 5e-6);
  }
  // extreme inputs stay finite and saturate correctly
  std::vector<float> big = {-100.f, -20.f, 20.f, 100.f};
  eet::cpu::bias_act(big.data(), nullptr, nullptr, eet::Act::kGeluTanh, 1, 4);
  report("bias_act gelu_new saturation", max_diff(big, {0, 0, 20, 100}), 1e-5);
}

// Packed qkv [B, S, 3, H, D]; left padding via key_start (row b starts at min(b * pad_step, S)),
// causal.
void test_attention(int B, int S, int H, int D, bool causal, int pad_step = 2) {
  const int64_t W = 3LL * H * D;
  auto qkv = randv((size_t)B * S * W);
  std::vector<int32_t> ks(B);
  for (int b = 0; b < B; ++b) ks[b] = std::min(b * pad_step, S);  // last rows may be fully padded
  std::vector<float> out((size_t)B * S * H * D, NAN);
  eet::AttnParams p;
  p.q = qkv.data();
  p.k = qkv.data() + H * D;
  p.v = qkv.data() + 2 * H * D;
  p.q_stride_b = p.k_stride_b = p.v_stride_b = S * W;
  p.q_stride_s = p.k_stride_s = p.v_stride_s = W;
  p.q_stride_h = p.k_stride_h = p.v_stride_h = D;
  p.out = out.data();
  p.o_stride_b = (int64_t)S * H * D;
  p.o_stride_s = (int64_t)H * D;
  p.o_stride_h = D;
  p.batch = B, p.heads = H, p.q_len = S, p.k_len = S, p.head_dim = D;
  p.key_start = ks.data();
  p.causal = causal;
  p.scale = 1.f / std::sqrt((float)D);
  eet::cpu::attention(p);
  std::vector<double> ref(out.size(), 0.0);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < S; ++i) {
        const float* q = &qkv[(size_t)b * S * W + i * W + h * D];
        const int hi = causal ? std::min(S, i + 1) : S;
        std::vector<double> s;
        double mx = -1e300;
        for (int j = ks[b]; j < hi; ++j) {
          const float* k = &qkv[(size_t)b * S * W + j * W + H * D + h * D];
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += (double)q[d] * k[d];
          s.push_back(dot * p.scale);
          mx = std::max(mx, s.back());
        }
        double sum = 0;
        for (double& v : s) sum += (v = std::exp(v - mx));
        double* o = &ref[(size_t)b * S * H * D + (size_t)i * H * D + h * D];
        for (size_t jj = 0; jj < s.size(); ++jj) {
          const float* v = &qkv[(size_t)b * S * W + (ks[b] + jj) * W + 2 * H * D + h * D];
          for (int d = 0; d < D; ++d) o[d] += s[jj] / sum * v[d];
        }
      }
  char name[96];
  std::snprintf(name, sizeof(name), "attention B=%d S=%d H=%d D=%d causal=%d pad_step=%d", B, S, H, D, causal,
                pad_step);
  report(name, max_diff(out, ref), 2e-5);
}

void test_kv_cache_write() {
  const int B = 3, S = 4, H = 2, D = 80, M = 10;
  auto k = randv((size_t)B * S * H * D), v = randv((size_t)B * S * H * D);
  std::vector<float> kc((size_t)B * H * M * D, NAN), vc((size_t)B * H * M * D, NAN);
  std::vector<int32_t> pos = {0, 5, 8};  // row 2 overflows after 2 positions: skipped
  eet::CacheWriteParams p;
  p.k = k.data(), p.v = v.data();
  p.k_stride_b = p.v_stride_b = (int64_t)S * H * D;
  p.k_stride_s = p.v_stride_s = (int64_t)H * D;
  p.k_stride_h = p.v_stride_h = D;
  p.k_cache = kc.data(), p.v_cache = vc.data();
  p.cache_stride_b = (int64_t)H * M * D;
  p.positions = pos.data();
  p.batch = B, p.seq = S, p.heads = H, p.head_dim = D, p.max_seq = M;
  eet::cpu::kv_cache_write(p);
  int wrong = 0;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int m = 0; m < M; ++m)
        for (int d = 0; d < D; ++d) {
          const int s = m - pos[b];
          const float got = kc[(((size_t)b * H + h) * M + m) * D + d];
          const float gotv = vc[(((size_t)b * H + h) * M + m) * D + d];
          if (s >= 0 && s < S) {
            const size_t src = (size_t)b * S * H * D + (size_t)s * H * D + h * D + d;
            wrong += got != k[src] || gotv != v[src];
          } else {
            wrong += !std::isnan(got) || !std::isnan(gotv);  // untouched
          }
        }
  report("kv_cache_write exact, overflow skipped", wrong, 0);
}

}  // namespace

int main() {
  test_layernorm(1, 1, false);
  test_layernorm(5, 769, false);
  test_layernorm(5, 769, true);
  test_layernorm(3, 4096, true);
  // Row variance ~1e-6..1e-5, at or below eps: the result depends on eps at first order.
  test_layernorm(4, 769, false, 1e-3f, 1e-5f);
  test_layernorm(4, 300, true, 1e-3f, 1e-5f);
  test_layernorm(3, 257, false, 1.f, 0.5f);  // a large eps on unit-variance rows
  test_embedding();
  test_bias_act();
  test_attention(2, 1, 2, 64, true);
  // Prompts of 2 and 3 tokens take the few-query path (one dot product per key): its causal
  // limit, with left padding (key_start 0, 1, 2) so rows start at different keys.
  test_attention(2, 2, 2, 64, true, 1);
  test_attention(3, 3, 2, 40, true, 1);
  test_attention(3, 3, 3, 80, false, 1);
  test_attention(3, 37, 4, 80, true);
  test_attention(3, 37, 4, 80, false);
  test_attention(2, 11, 1, 100, true);
  test_attention(1, 300, 2, 264, true);
  test_kv_cache_write();
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}
