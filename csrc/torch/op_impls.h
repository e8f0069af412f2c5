// Declarations of the per-device implementations of every op, registered in bindings.cpp:
// <op>_cpu for the CPU dispatch key and, in WITH_CUDA builds, <op>_cuda for the CUDA key.
// Both take the op's schema arguments; each lives in csrc/torch/<op>.cpp. The ops with no
// CUDA kernel (the packed CPU GEMMs) still have an <op>_cuda: it runs the op's checks, which
// name the argument on the wrong device, and raises.
#pragma once

#include <torch/extension.h>

#include <string>
#include <tuple>

namespace eet {

#define EET_DECLARE_IMPL(ret, name, ...) \
  ret name##_cpu(__VA_ARGS__);           \
  ret name##_cuda(__VA_ARGS__)

using OptTensor = c10::optional<at::Tensor>;
using TensorPair = std::tuple<at::Tensor, at::Tensor>;

EET_DECLARE_IMPL(at::Tensor, layernorm, const at::Tensor& x, const at::Tensor& weight,
                 const at::Tensor& bias, double eps);
EET_DECLARE_IMPL(TensorPair, add_layernorm, const at::Tensor& x,
                 const at::Tensor& residual, const OptTensor& residual_bias,
                 const at::Tensor& weight, const at::Tensor& bias, double eps);
EET_DECLARE_IMPL(at::Tensor, embedding, const at::Tensor& input_ids,
                 const at::Tensor& position_ids, const at::Tensor& word_embeddings,
                 const at::Tensor& position_embeddings, const OptTensor& token_type_ids,
                 const OptTensor& token_type_embeddings, const OptTensor& ln_weight,
                 const OptTensor& ln_bias, double eps, bool check);
EET_DECLARE_IMPL(at::Tensor, ffn, const at::Tensor& x, const at::Tensor& w1, const OptTensor& b1,
                 const at::Tensor& w2, const OptTensor& b2, c10::string_view activation,
                 const OptTensor& residual);
EET_DECLARE_IMPL(at::Tensor, linear, const at::Tensor& x, const at::Tensor& weight,
                 const OptTensor& bias, c10::string_view activation);
EET_DECLARE_IMPL(at::Tensor, pack_linear, const at::Tensor& weight);
EET_DECLARE_IMPL(at::Tensor, linear_packed, const at::Tensor& x, const at::Tensor& packed,
                 int64_t out_features, const OptTensor& bias, c10::string_view activation);
EET_DECLARE_IMPL(TensorPair, quantize_int8, const at::Tensor& weight);
EET_DECLARE_IMPL(at::Tensor, pack_int8, const at::Tensor& qweight);
EET_DECLARE_IMPL(at::Tensor, linear_int8, const at::Tensor& x, const at::Tensor& qweight,
                 const at::Tensor& scales, const OptTensor& bias, c10::string_view activation);
EET_DECLARE_IMPL(at::Tensor, attention, const at::Tensor& qkv, int64_t num_heads, bool causal,
                 const OptTensor& key_start, const OptTensor& key_end, const OptTensor& k_cache,
                 const OptTensor& v_cache, c10::optional<double> scale);
EET_DECLARE_IMPL(at::Tensor, masked_attention, const at::Tensor& qkv, const at::Tensor& k_cache,
                 const at::Tensor& v_cache, const at::Tensor& positions,
                 const OptTensor& key_start, int64_t num_heads, c10::optional<double> scale,
                 c10::optional<int64_t> max_keys);
EET_DECLARE_IMPL(at::Tensor, cross_attention, const at::Tensor& q, const at::Tensor& k,
                 const at::Tensor& v, int64_t num_heads, const OptTensor& key_start,
                 const OptTensor& key_end, c10::optional<double> scale);

EET_DECLARE_IMPL(at::Tensor, decode_layers, const at::Tensor& x,
                 const c10::List<c10::optional<at::Tensor>>& weights, at::TensorList k_cache,
                 at::TensorList v_cache, const at::Tensor& positions, const OptTensor& key_start,
                 int64_t num_heads, at::ArrayRef<double> scales, double eps, c10::string_view activation,
                 c10::optional<int64_t> max_keys);

#undef EET_DECLARE_IMPL

// Which CPU GEMM ffn/linear use now: "onednn" or "eet" (EET_LIKE_CPU_GEMM); gemm.cpp.
std::string cpu_gemm_backend();

}  // namespace eet
