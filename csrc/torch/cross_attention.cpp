// Torch glue of cross_attention: decoder queries q [B, Sq, H*D] against encoder keys/values
// k, v [B, Sk, H*D] (any strides with a contiguous last dim) with per-row key ranges.
#include "attention.h"
#include "op_impls.h"

namespace eet {

namespace {

at::Tensor cross_attention_on(const AttentionKernels& kern, const at::Tensor& q,
                              const at::Tensor& k, const at::Tensor& v, int64_t num_heads,
                              const c10::optional<at::Tensor>& key_start,
                              const c10::optional<at::Tensor>& key_end,
                              c10::optional<double> scale) {
  check_float(q, "q");
  check_rank(q, "q", 3, "[B, Sq, H*D]");
  check_contiguous(q, "q");
  const int64_t B = q.size(0), Sq = q.size(1), HD = q.size(2);
  const int64_t D = head_dim_of(HD, num_heads, "q", "num_heads * head_dim");
  check_like(k, "k", q, "q");
  check_like(v, "v", q, "q");
  check_rank(k, "k", 3, "[B, Sk, H*D]");
  TORCH_CHECK_VALUE(k.size(0) == B && k.size(2) == HD, "k must be [B = ", B, ", Sk, H*D = ", HD,
                    "], got ", shape_str(k));
  TORCH_CHECK_VALUE(v.sizes() == k.sizes(), "v must have the shape of k (", shape_str(k),
                    "), got ", shape_str(v));
  TORCH_CHECK_VALUE(k.stride(2) == 1 && v.stride(2) == 1,
                    "k and v must be contiguous in their last dim, got strides ", k.strides(),
                    " and ", v.strides());
  const int64_t Sk = k.size(1);
  const auto ks = as_int32(key_start, "key_start", q, "q", B);
  const auto ke = as_int32(key_end, "key_end", q, "q", B);
  at::Tensor out = at::empty({B, Sq, HD}, q.options());
  if (B == 0 || Sq == 0) return out;
  AttnParams p;
  p.q = q.data_ptr(); p.k = k.data_ptr(); p.v = v.data_ptr(); p.out = out.data_ptr();
  p.q_stride_b = Sq * HD; p.q_stride_s = HD; p.q_stride_h = D;
  p.k_stride_b = k.stride(0); p.k_stride_s = k.stride(1); p.k_stride_h = D;
  p.v_stride_b = v.stride(0); p.v_stride_s = v.stride(1); p.v_stride_h = D;
  p.o_stride_b = Sq * HD; p.o_stride_s = HD; p.o_stride_h = D;
  p.batch = B; p.heads = num_heads; p.q_len = Sq; p.k_len = Sk; p.head_dim = D;
  p.key_start = ptr_or_null<int32_t>(ks);
  p.key_end = ptr_or_null<int32_t>(ke);
  p.scale = scale_or_default(scale, D);
  kern.attention(q, p, "cross_attention");
  return out;
}

}  // namespace

at::Tensor cross_attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               int64_t num_heads, const c10::optional<at::Tensor>& key_start,
                               const c10::optional<at::Tensor>& key_end,
                               c10::optional<double> scale) {
  return cross_attention_on(kCpuAttention, q, k, v, num_heads, key_start, key_end, scale);
}

#ifdef WITH_CUDA
at::Tensor cross_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                int64_t num_heads, const c10::optional<at::Tensor>& key_start,
                                const c10::optional<at::Tensor>& key_end,
                                c10::optional<double> scale) {
  return cross_attention_on(kCudaAttention, q, k, v, num_heads, key_start, key_end, scale);
}
#endif

}  // namespace eet
