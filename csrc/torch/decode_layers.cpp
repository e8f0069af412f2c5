// Torch glue of decode_layers: one CPU decode step through a whole stack of pre-norm
// transformer blocks (GPT-2's) in one op call, the same kernels in the same order as the Python
// block loop (eet_like.layers.block.run_blocks with a Step), so the result and the KV-cache
// writes are bit-identical to it. What it saves is the Python and dispatcher work between the
// ~100 kernels of a step (GPT-2 small: ~1.5 ms of a 5-8 ms CPU step at 1 row).
// x [n, hidden] (the embedded tokens) -> the final-layernormed hidden [n, hidden]. Per layer i
// the 16 entries of `weights` at 16*i (then ln_f weight, bias at the end):
//   ln1_w ln1_b | qkv_w qkv_s qkv_b | out_w out_s out_b | ln2_w ln2_b | fc1_w fc1_s fc1_b | fc2_w fc2_s fc2_b
// A linear weight is either int8 [N, K] (quantize_int8) or its pack_int8 panels, with its scales
// [N] (linear_int8), or a float32 pack_linear panel tensor with no scales (linear_packed).
// out_b and fc2_b ride in the following add_layernorm. CPU float32 only (no CUDA kernel: CUDA
// decode steps replay graphs).
#include "enums.h"
#include "gemm.h"
#include "op_impls.h"

namespace eet {

namespace {

constexpr int64_t kPerLayer = 16;

// act(x W^T + b) for one linear entry of `weights` (w at index i, its scales at i + 1).
at::Tensor run_linear(const at::Tensor& x, const c10::List<c10::optional<at::Tensor>>& weights, int64_t i,
                      int64_t out_features, const OptTensor& bias, c10::string_view act, const char* name) {
  const c10::optional<at::Tensor> w = weights.get(i), s = weights.get(i + 1);
  TORCH_CHECK_VALUE(w.has_value(), "weights[", i, "] (", name, " weight) must be a tensor, got None");
  if (w->scalar_type() == at::kChar) {
    TORCH_CHECK_VALUE(s.has_value(), "weights[", i + 1, "] (", name,
                      " scales) must be given for an int8 weight (from quantize_int8), got None");
    return linear_int8_cpu(x, *w, *s, bias, act);
  }
  TORCH_CHECK_VALUE(!s.has_value(), "weights[", i + 1, "] (", name,
                    " scales) must be None for a float32 packed weight (pack_linear), got a tensor");
  return linear_packed_cpu(x, *w, out_features, bias, act);
}

at::Tensor required(const c10::List<c10::optional<at::Tensor>>& weights, int64_t i, const char* name) {
  const c10::optional<at::Tensor> t = weights.get(i);
  TORCH_CHECK_VALUE(t.has_value(), "weights[", i, "] (", name, ") must be a tensor, got None");
  return *t;
}

// The inner size of a layer's FFN, from its second weight (at i; fc1's scales at i - 2): int8
// [hidden, inner], pack_int8 panels (inner = fc1's scales.size(0)) or packed float32
// [ceil(hidden / P), inner, P].
int64_t ffn_inner(const c10::List<c10::optional<at::Tensor>>& weights, int64_t i) {
  const at::Tensor w2 = required(weights, i, "fc2 weight");
  if (w2.dim() == 4 && w2.scalar_type() == at::kChar) return required(weights, i - 2, "fc1 scales").size(0);
  TORCH_CHECK_VALUE(w2.dim() == 2 || w2.dim() == 3, "weights[", i,
                    "] (fc2 weight) must be int8 [hidden, inner] or [panels, quads, 16, 4] (pack_int8), or "
                    "packed float32 [panels, inner, P], got ", shape_str(w2));
  return w2.size(1);
}

void check_decode_layers_args(const at::Tensor& x, const c10::List<c10::optional<at::Tensor>>& weights,
                              at::TensorList k_cache, at::TensorList v_cache, at::ArrayRef<double> scales) {
  TORCH_CHECK_VALUE(x.is_cpu(), "x must be on CPU: decode_layers is a CPU op, got ", x.device());
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat, "x must be float32, got ", x.scalar_type());
  check_rank(x, "x", 2, "[n, hidden]");
  const int64_t n = static_cast<int64_t>(weights.size());
  TORCH_CHECK_VALUE(n >= kPerLayer + 2 && (n - 2) % kPerLayer == 0, "weights must hold ", kPerLayer,
                    " entries per layer and the final layernorm's weight and bias (16 * layers + 2), got ", n);
  const int64_t layers = (n - 2) / kPerLayer;
  TORCH_CHECK_VALUE(static_cast<int64_t>(k_cache.size()) == layers && static_cast<int64_t>(v_cache.size()) == layers,
                    "k_cache and v_cache must have one tensor per layer (", layers, "), got ", k_cache.size(),
                    " and ", v_cache.size());
  TORCH_CHECK_VALUE(static_cast<int64_t>(scales.size()) == layers, "scales must have one attention scale per layer (",
                    layers, "), got ", scales.size());
}

}  // namespace

at::Tensor decode_layers_cpu(const at::Tensor& x, const c10::List<c10::optional<at::Tensor>>& weights,
                             at::TensorList k_cache, at::TensorList v_cache, const at::Tensor& positions,
                             const OptTensor& key_start, int64_t num_heads, at::ArrayRef<double> scales,
                             double eps, c10::string_view activation, c10::optional<int64_t> max_keys) {
  to_act(activation);
  check_decode_layers_args(x, weights, k_cache, v_cache, scales);
  const int64_t layers = static_cast<int64_t>(k_cache.size()), hidden = x.size(1);
  const OptTensor none;
  at::Tensor h = x.contiguous();
  at::Tensor y = layernorm_cpu(h, required(weights, 0, "ln1 weight"), required(weights, 1, "ln1 bias"), eps);
  for (int64_t l = 0; l < layers; ++l) {
    const int64_t o = l * kPerLayer;
    TORCH_CHECK_VALUE(k_cache[l].dim() == 4, "k_cache[", l, "] must be [Bmax, H, Smax, D], got ",
                      shape_str(k_cache[l]));
    const int64_t qkv_n = 3 * k_cache[l].size(1) * k_cache[l].size(3);
    const at::Tensor qkv = run_linear(y, weights, o + 2, qkv_n, weights.get(o + 4), "identity", "qkv");
    const at::Tensor ctx = masked_attention_cpu(qkv, k_cache[l], v_cache[l], positions, key_start, num_heads,
                                                scales[l], max_keys);
    const at::Tensor a = run_linear(ctx, weights, o + 5, hidden, none, "identity", "out");
    std::tie(y, h) = add_layernorm_cpu(a, h, weights.get(o + 7), required(weights, o + 8, "ln2 weight"),
                                       required(weights, o + 9, "ln2 bias"), eps);
    const at::Tensor f1 = run_linear(y, weights, o + 10, ffn_inner(weights, o + 13), weights.get(o + 12),
                                     activation, "fc1");
    const at::Tensor f = run_linear(f1, weights, o + 13, hidden, none, "identity", "fc2");
    // The next block's ln1 (or, after the last block, the final layernorm) with fc2's bias.
    const int64_t ln = l + 1 < layers ? o + kPerLayer : layers * kPerLayer;
    std::tie(y, h) = add_layernorm_cpu(f, h, weights.get(o + 15), required(weights, ln, "next layernorm weight"),
                                       required(weights, ln + 1, "next layernorm bias"), eps);
  }
  return y;
}

#ifdef WITH_CUDA
at::Tensor decode_layers_cuda(const at::Tensor& x, const c10::List<c10::optional<at::Tensor>>& weights,
                              at::TensorList k_cache, at::TensorList v_cache, const at::Tensor& positions,
                              const OptTensor& key_start, int64_t num_heads, at::ArrayRef<double> scales,
                              double eps, c10::string_view activation, c10::optional<int64_t> max_keys) {
  to_act(activation);
  check_decode_layers_args(x, weights, k_cache, v_cache, scales);
  cpu_only_op("decode_layers");
}
#endif

}  // namespace eet
