// Torch bindings of the three attention ops, all running the one strided attention kernel:
//   attention         prompt pass over packed QKV [B, S, 3*H*D], optional KV-cache fill
//   masked_attention  one decode step per row: K/V appended at positions[b], then attend
//   cross_attention   queries against encoder keys/values with per-row key ranges
// KV cache layout: [Bmax, H, Smax, D] per layer (keys of one head contiguous, so a decode
// step streams them; positions are shared by left-padded rows, so a step has static shapes).
#include <cmath>

#include "binding_common.h"

namespace eet {

namespace {

int64_t head_dim_of(int64_t width, int64_t num_heads, const char* name, const char* spec) {
  TORCH_CHECK_VALUE(num_heads > 0, "num_heads must be > 0, got ", num_heads);
  TORCH_CHECK_VALUE(width % num_heads == 0 && width > 0, name, " last dim (", width,
                    ") must be ", spec, " with num_heads = ", num_heads);
  return width / num_heads;
}

float scale_or_default(const c10::optional<double>& scale, int64_t D) {
  return scale.has_value() ? static_cast<float>(*scale)
                           : static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
}

void check_cache(const at::Tensor& c, const char* name, const at::Tensor& ref, int64_t B,
                 int64_t H, int64_t D) {
  check_like(c, name, ref, "qkv");
  check_rank(c, name, 4, "[Bmax, H, Smax, D]");
  TORCH_CHECK_VALUE(c.size(0) >= B && c.size(1) == H && c.size(3) == D, name,
                    " must be [Bmax >= ", B, ", H = ", H, ", Smax, D = ", D, "], got ",
                    shape_str(c));
  check_contiguous(c, name);
}

void run_attention(const at::Tensor& ref, const AttnParams& p, const char* op) {
  if (ref.is_cuda()) {
#ifdef WITH_CUDA
    const c10::cuda::CUDAGuard guard(ref.device());
    EET_CHECK_LAUNCH(cuda::attention(to_dtype(ref), p, current_stream()), op);
#endif
    return;
  }
  cpu::attention(p);
}

void run_cache_write(const at::Tensor& ref, const CacheWriteParams& p, const char* op) {
  if (ref.is_cuda()) {
#ifdef WITH_CUDA
    const c10::cuda::CUDAGuard guard(ref.device());
    EET_CHECK_LAUNCH(cuda::kv_cache_write(to_dtype(ref), p, current_stream()), op);
#endif
    return;
  }
  cpu::kv_cache_write(p);
}

}  // namespace

at::Tensor attention(const at::Tensor& qkv, int64_t num_heads, bool causal,
                     const c10::optional<at::Tensor>& key_start,
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
    run_cache_write(qkv, w, "attention");
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
  run_attention(qkv, p, "attention");
  return out;
}

at::Tensor masked_attention(const at::Tensor& qkv, const at::Tensor& k_cache,
                            const at::Tensor& v_cache, const at::Tensor& positions,
                            const c10::optional<at::Tensor>& key_start, int64_t num_heads,
                            c10::optional<double> scale) {
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
  const auto pos = as_int32(positions, "positions", qkv, "qkv", B);
  const auto ks = as_int32(key_start, "key_start", qkv, "qkv", B);
  if (qkv.is_cpu()) {
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
  run_cache_write(qkv, w, "masked_attention");
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
  run_attention(qkv, p, "masked_attention");
  return out;
}

at::Tensor cross_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           int64_t num_heads, const c10::optional<at::Tensor>& key_start,
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
  run_attention(q, p, "cross_attention");
  return out;
}

}  // namespace eet
