// Torch glue of attention: the prompt pass over packed QKV [B, S, 3*H*D] (last dim [3][H][D]),
// per-row key ranges and optional causal masking, optionally filling the KV cache with K/V
// of positions [0, S). Runs the one strided attention kernel (attention.h) of each device.
#include "attention.h"
#include "op_impls.h"

namespace eet {

namespace {

at::Tensor attention_on(const AttentionKernels& kern, const at::Tensor& qkv, int64_t num_heads,
                        bool causal, const c10::optional<at::Tensor>& key_start,
                        const c10::optional<at::Tensor>& key_end,
                        const c10::optional<at::Tensor>& k_cache,
                        const c10::optional<at::Tensor>& v_cache, c10::optional<double> scale) {
  check_float(qkv, "qkv");
  check_rank(qkv, "qkv", 3, "[B, S, 3*H*D]");
  check_contiguous(qkv, "qkv");
  const int64_t B = qkv.size(0), S = qkv.size(1);
  TORCH_CHECK_VALUE(qkv.size(2) % 3 == 0, "qkv must be [B, S, 3*H*D], got last dim ",
                    qkv.size(2), " (not a multiple of 3)");
  const int64_t HD = qkv.size(2) / 3;
  const int64_t D = head_dim_of(HD, num_heads, "qkv", "3 * num_heads * head_dim");
  const int64_t H = num_heads;
  const auto ks = as_int32(key_start, "key_start", qkv, "qkv", B);
  const auto ke = as_int32(key_end, "key_end", qkv, "qkv", B);
  TORCH_CHECK_VALUE(k_cache.has_value() == v_cache.has_value(),
                    "k_cache and v_cache must be given together");
  at::Tensor out = at::empty({B, S, HD}, qkv.options());
  if (B == 0 || S == 0) return out;
  if (k_cache.has_value()) {
    check_cache(*k_cache, "k_cache", qkv, B, H, D);
    check_cache(*v_cache, "v_cache", qkv, B, H, D);
    TORCH_CHECK_VALUE(k_cache->sizes() == v_cache->sizes(), "v_cache must have the shape of k_cache (",
                      shape_str(*k_cache), "), got ", shape_str(*v_cache));
    TORCH_CHECK_VALUE(S <= k_cache->size(2), "cache overflow: the prompt has S = ", S,
                      " positions but k_cache holds Smax = ", k_cache->size(2));
    CacheWriteParams w;
    w.k = static_cast<const char*>(qkv.data_ptr()) + HD * qkv.element_size();
    w.v = static_cast<const char*>(qkv.data_ptr()) + 2 * HD * qkv.element_size();
    w.k_stride_b = w.v_stride_b = S * 3 * HD;
    w.k_stride_s = w.v_stride_s = 3 * HD;
    w.k_stride_h = w.v_stride_h = D;
    w.k_cache = k_cache->data_ptr();
    w.v_cache = v_cache->data_ptr();
    w.cache_stride_b = k_cache->stride(0);
    w.batch = B; w.seq = S; w.heads = H; w.head_dim = D; w.max_seq = k_cache->size(2);
    kern.cache_write(qkv, w, "attention");
  }
  AttnParams p;
  p.q = qkv.data_ptr();
  p.k = static_cast<const char*>(qkv.data_ptr()) + HD * qkv.element_size();
  p.v = static_cast<const char*>(qkv.data_ptr()) + 2 * HD * qkv.element_size();
  p.q_stride_b = p.k_stride_b = p.v_stride_b = S * 3 * HD;
  p.q_stride_s = p.k_stride_s = p.v_stride_s = 3 * HD;
  p.q_stride_h = p.k_stride_h = p.v_stride_h = D;
  p.out = out.data_ptr();
  p.o_stride_b = S * HD; p.o_stride_s = HD; p.o_stride_h = D;
  p.batch = B; p.heads = H; p.q_len = S; p.k_len = S; p.head_dim = D;
  p.key_start = ptr_or_null<int32_t>(ks);
  p.key_end = ptr_or_null<int32_t>(ke);
  p.causal = causal;
  p.causal_offset = 0;
  p.scale = scale_or_default(scale, D);
  kern.attention(qkv, p, "attention");
  return out;
}

}  // namespace

at::Tensor attention_cpu(const at::Tensor& qkv, int64_t num_heads, bool causal,
                         const c10::optional<at::Tensor>& key_start,
                         const c10::optional<at::Tensor>& key_end,
                         const c10::optional<at::Tensor>& k_cache,
                         const c10::optional<at::Tensor>& v_cache, c10::optional<double> scale) {
  return attention_on(kCpuAttention,
                      qkv, num_heads, causal, key_start, key_end, k_cache, v_cache, scale);
}

#ifdef WITH_CUDA
at::Tensor attention_cuda(const at::Tensor& qkv, int64_t num_heads, bool causal,
                          const c10::optional<at::Tensor>& key_start,
                          const c10::optional<at::Tensor>& key_end,
                          const c10::optional<at::Tensor>& k_cache,
                          const c10::optional<at::Tensor>& v_cache, c10::optional<double> scale) {
  return attention_on(kCudaAttention,
                      qkv, num_heads, causal, key_start, key_end, k_cache, v_cache, scale);
}
#endif

}  // namespace eet
