// Torch binding of embedding: token + position (+ token type) lookup, optional layernorm.
#include "binding_common.h"

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

}  // namespace

at::Tensor embedding(const at::Tensor& input_ids, const at::Tensor& position_ids,
                     const at::Tensor& word_embeddings, const at::Tensor& position_embeddings,
                     const c10::optional<at::Tensor>& token_type_ids,
                     const c10::optional<at::Tensor>& token_type_embeddings,
                     const c10::optional<at::Tensor>& ln_weight,
                     const c10::optional<at::Tensor>& ln_bias, double eps, bool check) {
  check_index(input_ids, "input_ids");
  TORCH_CHECK_VALUE(input_ids.dim() >= 1, "input_ids must be [B, S] (or [T]), got ",
                    shape_str(input_ids));
  check_float(word_embeddings, "word_embeddings");
  check_rank(word_embeddings, "word_embeddings", 2, "[V, H]");
  check_device(input_ids, "input_ids", word_embeddings, "word_embeddings");
  const int64_t H = word_embeddings.size(1);
  check_like(position_embeddings, "position_embeddings", word_embeddings, "word_embeddings");
  check_table(position_embeddings, "position_embeddings", H);
  const at::Tensor ids = input_ids.to(at::kLong).contiguous();
  const at::Tensor pos = ids_as_long(position_ids, "position_ids", input_ids);
  TORCH_CHECK_VALUE(token_type_ids.has_value() == token_type_embeddings.has_value(),
                    "token_type_ids and token_type_embeddings must be given together");
  at::Tensor types, type_table;
  if (token_type_ids.has_value()) {
    types = ids_as_long(*token_type_ids, "token_type_ids", input_ids);
    check_like(*token_type_embeddings, "token_type_embeddings", word_embeddings,
               "word_embeddings");
    check_table(*token_type_embeddings, "token_type_embeddings", H);
    type_table = token_type_embeddings->contiguous();
  }
  TORCH_CHECK_VALUE(ln_weight.has_value() == ln_bias.has_value(),
                    "ln_weight and ln_bias must be given together");
  at::Tensor g, b;
  if (ln_weight.has_value()) {
    check_like(*ln_weight, "ln_weight", word_embeddings, "word_embeddings");
    check_like(*ln_bias, "ln_bias", word_embeddings, "word_embeddings");
    check_shape(*ln_weight, "ln_weight", {H}, "[H]");
    check_shape(*ln_bias, "ln_bias", {H}, "[H]");
    TORCH_CHECK_VALUE(eps > 0, "eps must be > 0, got ", eps);
    g = ln_weight->contiguous();
    b = ln_bias->contiguous();
  }
  const at::Tensor word = word_embeddings.contiguous(), ptab = position_embeddings.contiguous();
  std::vector<int64_t> out_shape(input_ids.sizes().begin(), input_ids.sizes().end());
  out_shape.push_back(H);
  at::Tensor out = at::empty(out_shape, word.options());
  const int64_t T = ids.numel(), V = word.size(0), P = ptab.size(0);
  const int64_t NT = types.defined() ? type_table.size(0) : 0;
  if (T == 0) return out;
  if (out.is_cuda()) {
#ifdef WITH_CUDA
    const c10::cuda::CUDAGuard guard(out.device());
    // The kernel clamps ids for memory safety; report bad ids here (a host sync), unless the
    // caller validated them (check=False: the decode loops, whose ids come from the vocabulary
    // and whose positions are tracked on the host) or a CUDA graph is being captured.
    if (check &&
        c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None) {
      auto check_range = [](const at::Tensor& t, int64_t n, const char* name) {
        const auto mm = at::aminmax(t);
        const int64_t lo = std::get<0>(mm).item<int64_t>(), hi = std::get<1>(mm).item<int64_t>();
        TORCH_CHECK_VALUE(lo >= 0 && hi < n, name, " must be in [0, ", n, "), got values in [",
                          lo, ", ", hi, "]");
      };
      check_range(ids, V, "input_ids");
      check_range(pos, P, "position_ids");
      if (types.defined()) check_range(types, NT, "token_type_ids");
    }
    EET_CHECK_LAUNCH(
        cuda::embedding(to_dtype(word), ids.data_ptr<int64_t>(), pos.data_ptr<int64_t>(),
                        types.defined() ? types.data_ptr<int64_t>() : nullptr, word.data_ptr(),
                        ptab.data_ptr(), types.defined() ? type_table.data_ptr() : nullptr,
                        g.defined() ? g.data_ptr() : nullptr, b.defined() ? b.data_ptr() : nullptr,
                        out.data_ptr(), T, H, V, P, NT, static_cast<float>(eps), current_stream()),
        "embedding");
#endif
    return out;
  }
  const int64_t bad = cpu::embedding(
      ids.data_ptr<int64_t>(), pos.data_ptr<int64_t>(),
      types.defined() ? types.data_ptr<int64_t>() : nullptr, word.data_ptr<float>(),
      ptab.data_ptr<float>(), types.defined() ? type_table.data_ptr<float>() : nullptr,
      g.defined() ? g.data_ptr<float>() : nullptr, b.defined() ? b.data_ptr<float>() : nullptr,
      out.data_ptr<float>(), T, H, V, P, NT, static_cast<float>(eps));
  if (bad >= 0) {
    const int64_t id = ids.data_ptr<int64_t>()[bad], p = pos.data_ptr<int64_t>()[bad];
    TORCH_CHECK_VALUE(id >= 0 && id < V, "input_ids must be in [0, ", V, "), got ", id,
                      " at flat index ", bad);
    TORCH_CHECK_VALUE(p >= 0 && p < P, "position_ids must be in [0, ", P, "), got ", p,
                      " at flat index ", bad, " (sequence longer than the position table?)");
    TORCH_CHECK_VALUE(false, "token_type_ids must be in [0, ", NT, "), got ",
                      types.data_ptr<int64_t>()[bad], " at flat index ", bad);
  }
  return out;
}

}  // namespace eet
