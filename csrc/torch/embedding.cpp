// Torch glue of embedding: word[input_ids] + position[position_ids] (+ token type), then an
// optional layernorm. embedding_cpu -> cpu::embedding (reports the first out-of-range id),
// embedding_cuda -> cuda::embedding (clamps ids; the range check here is a host sync, skipped
// with check=False or under CUDA graph capture).
#include "checks.h"
#include "eet/ops.h"
#include "op_impls.h"
#ifdef WITH_CUDA
#include "cuda_launch.h"
#include "enums.h"
#endif

namespace eet {

namespace {

at::Tensor ids_as_long(const at::Tensor& t, const char* name, const at::Tensor& ref_ids) {
  check_index(t, name);
  check_device(t, name, ref_ids, "input_ids");
  TORCH_CHECK_VALUE(t.sizes() == ref_ids.sizes(), name, " must have the shape of input_ids (",
                    shape_str(ref_ids), "), got ", shape_str(t));
  return t.to(at::kLong).contiguous();
}

void check_table(const at::Tensor& t, const char* name, int64_t hidden) {
  check_rank(t, name, 2, "[N, H]");
  TORCH_CHECK_VALUE(t.size(1) == hidden && t.size(0) > 0, name, " must be [N, ", hidden,
                    "] like word_embeddings, got ", shape_str(t));
}

// The checked arguments: ids as contiguous int64, tables and layernorm params contiguous
// (types/type_table and g/b undefined when absent), the output allocated.
struct EmbeddingArgs {
  at::Tensor ids, pos, types, word, ptab, type_table, g, b, out;
  int64_t T = 0, H = 0, V = 0, P = 0, NT = 0;
};

EmbeddingArgs check_embedding_args(const at::Tensor& input_ids, const at::Tensor& position_ids,
                                   const at::Tensor& word_embeddings,
                                   const at::Tensor& position_embeddings,
                                   const c10::optional<at::Tensor>& token_type_ids,
                                   const c10::optional<at::Tensor>& token_type_embeddings,
                                   const c10::optional<at::Tensor>& ln_weight,
                                   const c10::optional<at::Tensor>& ln_bias, double eps) {
  EmbeddingArgs a;
  check_index(input_ids, "input_ids");
  TORCH_CHECK_VALUE(input_ids.dim() >= 1, "input_ids must be [B, S] (or [T]), got ",
                    shape_str(input_ids));
  check_float(word_embeddings, "word_embeddings");
  check_rank(word_embeddings, "word_embeddings", 2, "[V, H]");
  check_device(input_ids, "input_ids", word_embeddings, "word_embeddings");
  const int64_t H = word_embeddings.size(1);
  check_like(position_embeddings, "position_embeddings", word_embeddings, "word_embeddings");
  check_table(position_embeddings, "position_embeddings", H);
  a.ids = input_ids.to(at::kLong).contiguous();
  a.pos = ids_as_long(position_ids, "position_ids", input_ids);
  TORCH_CHECK_VALUE(token_type_ids.has_value() == token_type_embeddings.has_value(),
                    "token_type_ids and token_type_embeddings must be given together");
  if (token_type_ids.has_value()) {
    a.types = ids_as_long(*token_type_ids, "token_type_ids", input_ids);
    check_like(*token_type_embeddings, "token_type_embeddings", word_embeddings,
               "word_embeddings");
    check_table(*token_type_embeddings, "token_type_embeddings", H);
    a.type_table = token_type_embeddings->contiguous();
  }
  TORCH_CHECK_VALUE(ln_weight.has_value() == ln_bias.has_value(),
                    "ln_weight and ln_bias must be given together");
  if (ln_weight.has_value()) {
    check_like(*ln_weight, "ln_weight", word_embeddings, "word_embeddings");
    check_like(*ln_bias, "ln_bias", word_embeddings, "word_embeddings");
    check_shape(*ln_weight, "ln_weight", {H}, "[H]");
    check_shape(*ln_bias, "ln_bias", {H}, "[H]");
    TORCH_CHECK_VALUE(eps > 0, "eps must be > 0, got ", eps);
    a.g = ln_weight->contiguous();
    a.b = ln_bias->contiguous();
  }
  a.word = word_embeddings.contiguous();
  a.ptab = position_embeddings.contiguous();
  std::vector<int64_t> out_shape(input_ids.sizes().begin(), input_ids.sizes().end());
  out_shape.push_back(H);
  a.out = at::empty(out_shape, a.word.options());
  a.T = a.ids.numel();
  a.H = H;
  a.V = a.word.size(0);
  a.P = a.ptab.size(0);
  a.NT = a.types.defined() ? a.type_table.size(0) : 0;
  return a;
}

}  // namespace

at::Tensor embedding_cpu(const at::Tensor& input_ids, const at::Tensor& position_ids,
                         const at::Tensor& word_embeddings, const at::Tensor& position_embeddings,
                         const c10::optional<at::Tensor>& token_type_ids,
                         const c10::optional<at::Tensor>& token_type_embeddings,
                         const c10::optional<at::Tensor>& ln_weight,
                         const c10::optional<at::Tensor>& ln_bias, double eps, bool /*check*/) {
  EmbeddingArgs a = check_embedding_args(input_ids, position_ids, word_embeddings,
                                         position_embeddings, token_type_ids,
                                         token_type_embeddings, ln_weight, ln_bias, eps);
  if (a.T == 0) return a.out;
  // Always checked on CPU: the kernel finds the first bad token at no extra cost.
  const int64_t bad = cpu::embedding(
      a.ids.data_ptr<int64_t>(), a.pos.data_ptr<int64_t>(),
      a.types.defined() ? a.types.data_ptr<int64_t>() : nullptr, a.word.data_ptr<float>(),
      a.ptab.data_ptr<float>(), a.types.defined() ? a.type_table.data_ptr<float>() : nullptr,
      a.g.defined() ? a.g.data_ptr<float>() : nullptr,
      a.b.defined() ? a.b.data_ptr<float>() : nullptr, a.out.data_ptr<float>(), a.T, a.H, a.V,
      a.P, a.NT, static_cast<float>(eps));
  if (bad >= 0) {
    const int64_t id = a.ids.data_ptr<int64_t>()[bad], p = a.pos.data_ptr<int64_t>()[bad];
    TORCH_CHECK_VALUE(id >= 0 && id < a.V, "input_ids must be in [0, ", a.V, "), got ", id,
                      " at flat index ", bad);
    TORCH_CHECK_VALUE(p >= 0 && p < a.P, "position_ids must be in [0, ", a.P, "), got ", p,
                      " at flat index ", bad, " (sequence longer than the position table?)");
    TORCH_CHECK_VALUE(false, "token_type_ids must be in [0, ", a.NT, "), got ",
                      a.types.data_ptr<int64_t>()[bad], " at flat index ", bad);
  }
  return a.out;
}

#ifdef WITH_CUDA
at::Tensor embedding_cuda(const at::Tensor& input_ids, const at::Tensor& position_ids,
                          const at::Tensor& word_embeddings, const at::Tensor& position_embeddings,
                          const c10::optional<at::Tensor>& token_type_ids,
                          const c10::optional<at::Tensor>& token_type_embeddings,
                          const c10::optional<at::Tensor>& ln_weight,
                          const c10::optional<at::Tensor>& ln_bias, double eps, bool check) {
  EmbeddingArgs a = check_embedding_args(input_ids, position_ids, word_embeddings,
                                         position_embeddings, token_type_ids,
                                         token_type_embeddings, ln_weight, ln_bias, eps);
  TORCH_CHECK(on_kernel_device(a.out), "embedding: the CUDA implementation got word_embeddings on ",
              a.out.device());
  if (a.T == 0) return a.out;
  const DeviceGuard guard(a.out.device());
  // The kernel clamps ids for memory safety; report bad ids here (a host sync), unless the
  // caller validated them (check=False: the decode loops, whose ids come from the vocabulary
  // and whose positions are tracked on the host) or a CUDA graph is being captured.
  if (check && !capturing_cuda_graph()) {
    auto check_range = [](const at::Tensor& t, int64_t n, const char* name) {
      const auto mm = at::aminmax(t);
      const int64_t lo = std::get<0>(mm).item<int64_t>(), hi = std::get<1>(mm).item<int64_t>();
      TORCH_CHECK_VALUE(lo >= 0 && hi < n, name, " must be in [0, ", n, "), got values in [",
                        lo, ", ", hi, "]");
    };
    check_range(a.ids, a.V, "input_ids");
    check_range(a.pos, a.P, "position_ids");
    if (a.types.defined()) check_range(a.types, a.NT, "token_type_ids");
  }
  EET_CHECK_LAUNCH(
      cuda::embedding(to_dtype(a.word), a.ids.data_ptr<int64_t>(), a.pos.data_ptr<int64_t>(),
                      a.types.defined() ? a.types.data_ptr<int64_t>() : nullptr, a.word.data_ptr(),
                      a.ptab.data_ptr(), a.types.defined() ? a.type_table.data_ptr() : nullptr,
                      a.g.defined() ? a.g.data_ptr() : nullptr,
                      a.b.defined() ? a.b.data_ptr() : nullptr, a.out.data_ptr(), a.T, a.H, a.V,
                      a.P, a.NT, static_cast<float>(eps), current_stream()),
      "embedding");
  return a.out;
}
#endif

}  // namespace eet
