// Torch glue of masked_attention: one decode step per row; the new K/V of qkv [B, 3*H*D] are
// written into the cache at positions[b], then the query attends over cache entries
// key_start[b] <= j <= positions[b]. Positions are checked on CPU; on CUDA the kernels skip
// out-of-range rows (no host sync; the Python wrapper checks them). max_keys (optional, host
// known, e.g. the decode length + 1) sizes the CUDA launch by the live context instead of Smax.
#include "attention.h"
#include "op_impls.h"

namespace eet {

namespace {

at::Tensor masked_attention_on(const AttentionKernels& kern, const at::Tensor& qkv,
                               const at::Tensor& k_cache, const at::Tensor& v_cache,
                               const at::Tensor& positions,
                               const c10::optional<at::Tensor>& key_start, int64_t num_heads,
                               c10::optional<double> scale, c10::optional<int64_t> max_keys) {
  check_float(qkv, "qkv");
  check_rank(qkv, "qkv", 2, "[B, 3*H*D] (one new token per row)");
  check_contiguous(qkv, "qkv");
  const int64_t B = qkv.size(0);
  TORCH_CHECK_VALUE(qkv.size(1) % 3 == 0, "qkv must be [B, 3*H*D], got last dim ", qkv.size(1),
                    " (not a multiple of 3)");
  const int64_t HD = qkv.size(1) / 3;
  const int64_t D = head_dim_of(HD, num_heads, "qkv", "3 * num_heads * head_dim");
  const int64_t H = num_heads;
  check_cache(k_cache, "k_cache", qkv, B, H, D);
  check_cache(v_cache, "v_cache", qkv, B, H, D);
  TORCH_CHECK_VALUE(k_cache.sizes() == v_cache.sizes(), "v_cache must have the shape of k_cache (",
                    shape_str(k_cache), "), got ", shape_str(v_cache));
  const int64_t M = k_cache.size(2);
  TORCH_CHECK_VALUE(!max_keys.has_value() || *max_keys >= 1,
                    "max_keys must be >= 1 (a bound of the keys a row sees this step), got ",
                    max_keys.value_or(0));
  const auto pos = as_int32(positions, "positions", qkv, "qkv", B);
  const auto ks = as_int32(key_start, "key_start", qkv, "qkv", B);
  if (kern.host_memory) {
    // On CUDA the kernels skip out-of-range positions (no host sync in the decode loop); the
    // Python wrapper eet_like.ops.masked_attention checks them there.
    const int32_t* pp = pos->data_ptr<int32_t>();
    for (int64_t b = 0; b < B; ++b)
      TORCH_CHECK_VALUE(pp[b] >= 0 && pp[b] < M, "cache overflow: positions[", b, "] = ", pp[b],
                        " is outside the cache (Smax = ", M, ")");
  }
  at::Tensor out = at::empty({B, HD}, qkv.options());
  if (B == 0) return out;
  const char* base = static_cast<const char*>(qkv.data_ptr());
  CacheWriteParams w;
  w.k = base + HD * qkv.element_size();
  w.v = base + 2 * HD * qkv.element_size();
  w.k_stride_b = w.v_stride_b = 3 * HD;
  w.k_stride_s = w.v_stride_s = 3 * HD;
  w.k_stride_h = w.v_stride_h = D;
  w.k_cache = k_cache.data_ptr();
  w.v_cache = v_cache.data_ptr();
  w.cache_stride_b = k_cache.stride(0);
  w.positions = pos->data_ptr<int32_t>();
  w.batch = B; w.seq = 1; w.heads = H; w.head_dim = D; w.max_seq = M;
  kern.cache_write(qkv, w, "masked_attention");
  AttnParams p;
  p.q = qkv.data_ptr();
  p.q_stride_b = 3 * HD; p.q_stride_s = 3 * HD; p.q_stride_h = D;
  p.k = k_cache.data_ptr();
  p.v = v_cache.data_ptr();
  p.k_stride_b = p.v_stride_b = k_cache.stride(0);
  p.k_stride_s = p.v_stride_s = D;
  p.k_stride_h = p.v_stride_h = M * D;
  p.out = out.data_ptr();
  p.o_stride_b = HD; p.o_stride_s = HD; p.o_stride_h = D;
  p.batch = B; p.heads = H; p.q_len = 1; p.k_len = M; p.head_dim = D;
  p.key_start = ptr_or_null<int32_t>(ks);
  p.key_end = pos->data_ptr<int32_t>();
  p.key_end_add = 1;
  p.past_end_empty = true;  // positions[b] >= Smax (unchecked on CUDA): no keys, zeros
  p.scale = scale_or_default(scale, D);
  p.keys_hint = max_keys.value_or(0);
  kern.attention(qkv, p, "masked_attention");
  return out;
}

}  // namespace

at::Tensor masked_attention_cpu(const at::Tensor& qkv, const at::Tensor& k_cache,
                                const at::Tensor& v_cache, const at::Tensor& positions,
                                const c10::optional<at::Tensor>& key_start, int64_t num_heads,
                                c10::optional<double> scale, c10::optional<int64_t> max_keys) {
  return masked_attention_on(kCpuAttention,
                             qkv, k_cache, v_cache, positions, key_start, num_heads, scale, max_keys);
}

#ifdef WITH_CUDA
at::Tensor masked_attention_cuda(const at::Tensor& qkv, const at::Tensor& k_cache,
                                 const at::Tensor& v_cache, const at::Tensor& positions,
                                 const c10::optional<at::Tensor>& key_start, int64_t num_heads,
                                 c10::optional<double> scale, c10::optional<int64_t> max_keys) {
  return masked_attention_on(kCudaAttention,
                             qkv, k_cache, v_cache, positions, key_start, num_heads, scale, max_keys);
}
#endif

}  // namespace eet
