// Registration of every eet_like op: one schema each in the `eet_like` torch library, the
// same implementation registered for CPU and (when built with CUDA) for CUDA; the functions
// branch on the tensors' device. Fake (meta) kernels for torch.compile live in
// python/eet_like/_meta.py.
#include "torch/binding_common.h"

namespace eet {
at::Tensor layernorm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                     double eps);
std::tuple<at::Tensor, at::Tensor> add_layernorm(const at::Tensor& x, const at::Tensor& residual,
                                                 const c10::optional<at::Tensor>& residual_bias,
                                                 const at::Tensor& weight,
                                                 const at::Tensor& bias, double eps);
at::Tensor embedding(const at::Tensor& input_ids, const at::Tensor& position_ids,
                     const at::Tensor& word_embeddings, const at::Tensor& position_embeddings,
                     const c10::optional<at::Tensor>& token_type_ids,
                     const c10::optional<at::Tensor>& token_type_embeddings,
                     const c10::optional<at::Tensor>& ln_weight,
                     const c10::optional<at::Tensor>& ln_bias, double eps, bool check);
at::Tensor ffn(const at::Tensor& x, const at::Tensor& w1, const c10::optional<at::Tensor>& b1,
               const at::Tensor& w2, const c10::optional<at::Tensor>& b2,
               c10::string_view activation, const c10::optional<at::Tensor>& residual);
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                  c10::string_view activation);
std::string cpu_gemm();
at::Tensor pack_linear(const at::Tensor& weight);
std::tuple<at::Tensor, at::Tensor> quantize_int8(const at::Tensor& weight);
at::Tensor pack_linear_int8(const at::Tensor& qweight);
at::Tensor linear_int8_packed(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                              int64_t out_features, const c10::optional<at::Tensor>& bias,
                              c10::string_view activation);
at::Tensor linear_packed(const at::Tensor& x, const at::Tensor& packed, int64_t out_features,
                         const c10::optional<at::Tensor>& bias, c10::string_view activation);
at::Tensor attention(const at::Tensor& qkv, int64_t num_heads, bool causal,
                     const c10::optional<at::Tensor>& key_start,
                     const c10::optional<at::Tensor>& key_end,
                     const c10::optional<at::Tensor>& k_cache,
                     const c10::optional<at::Tensor>& v_cache, c10::optional<double> scale);
at::Tensor masked_attention(const at::Tensor& qkv, const at::Tensor& k_cache,
                            const at::Tensor& v_cache, const at::Tensor& positions,
                            const c10::optional<at::Tensor>& key_start, int64_t num_heads,
                            c10::optional<double> scale);
at::Tensor cross_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           int64_t num_heads, const c10::optional<at::Tensor>& key_start,
                           const c10::optional<at::Tensor>& key_end,
                           c10::optional<double> scale);
}  // namespace eet

TORCH_LIBRARY(eet_like, m) {
  m.def("layernorm(Tensor x, Tensor weight, Tensor bias, float eps) -> Tensor");
  m.def(
      "add_layernorm(Tensor x, Tensor residual, Tensor? residual_bias, Tensor weight, "
      "Tensor bias, float eps) -> (Tensor, Tensor)");
  m.def(
      "embedding(Tensor input_ids, Tensor position_ids, Tensor word_embeddings, "
      "Tensor position_embeddings, Tensor? token_type_ids, Tensor? token_type_embeddings, "
      "Tensor? ln_weight, Tensor? ln_bias, float eps, bool check=True) -> Tensor");
  m.def(
      "ffn(Tensor x, Tensor w1, Tensor? b1, Tensor w2, Tensor? b2, str activation, "
      "Tensor? residual) -> Tensor");
  m.def("linear(Tensor x, Tensor weight, Tensor? bias, str activation) -> Tensor");
  m.def("pack_linear(Tensor weight) -> Tensor");
  m.def("quantize_int8(Tensor weight) -> (Tensor, Tensor)");
  m.def("pack_linear_int8(Tensor qweight) -> Tensor");
  m.def(
      "linear_int8_packed(Tensor x, Tensor packed, Tensor scales, int out_features, Tensor? bias, "
      "str activation) -> Tensor");
  m.def(
      "linear_packed(Tensor x, Tensor packed, int out_features, Tensor? bias, str activation) "
      "-> Tensor");
  m.def(
      "attention(Tensor qkv, int num_heads, bool causal, Tensor? key_start, Tensor? key_end, "
      "Tensor(a!)? k_cache, Tensor(b!)? v_cache, float? scale) -> Tensor");
  m.def(
      "masked_attention(Tensor qkv, Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor positions, "
      "Tensor? key_start, int num_heads, float? scale) -> Tensor");
  m.def(
      "cross_attention(Tensor q, Tensor k, Tensor v, int num_heads, Tensor? key_start, "
      "Tensor? key_end, float? scale) -> Tensor");
}

#define EET_REGISTER_ALL(m)                          \
  m.impl("layernorm", &eet::layernorm);              \
  m.impl("add_layernorm", &eet::add_layernorm);      \
  m.impl("embedding", &eet::embedding);              \
  m.impl("ffn", &eet::ffn);                          \
  m.impl("linear", &eet::linear);                    \
  m.impl("pack_linear", &eet::pack_linear);          \
  m.impl("linear_packed", &eet::linear_packed);      \
  m.impl("quantize_int8", &eet::quantize_int8);      \
  m.impl("pack_linear_int8", &eet::pack_linear_int8); \
  m.impl("linear_int8_packed", &eet::linear_int8_packed); \
  m.impl("attention", &eet::attention);              \
  m.impl("masked_attention", &eet::masked_attention); \
  m.impl("cross_attention", &eet::cross_attention)

TORCH_LIBRARY_IMPL(eet_like, CPU, m) { EET_REGISTER_ALL(m); }

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(eet_like, CUDA, m) { EET_REGISTER_ALL(m); }
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "eet_like compiled kernels (ops are registered under torch.ops.eet_like)";
  m.def("cuda_kernels_available", &eet::built_with_cuda,
        "True when this build contains the CUDA kernels");
  m.def("cpu_gemm", &eet::cpu_gemm,
        "The CPU GEMM backend the ffn/linear ops use now: 'onednn' or 'eet' (EET_LIKE_CPU_GEMM)");
}
