// Torch bindings of the GEMM ops:
//   ffn:    act(x W1^T + b1) W2^T + b2 (+ residual)
//   linear: act(x W^T + b)   (the QKV / output projections and the LM head)
// The GEMMs run through gemm.h (oneDNN with fused bias/activation on CPU, cuBLAS + the
// eet_like bias_act epilogue on CUDA); bias + residual is one fused epilogue pass.
#include "gemm.h"

namespace eet {

at::Tensor ffn(const at::Tensor& x, const at::Tensor& w1, const c10::optional<at::Tensor>& b1,
               const at::Tensor& w2, const c10::optional<at::Tensor>& b2,
               c10::string_view activation, const c10::optional<at::Tensor>& residual) {
  const Act act = to_act(std::string(activation));
  const int64_t H = check_gemm_input(x), N = x.numel() / H;
  check_like(w1, "w1", x, "x");
  check_rank(w1, "w1", 2, "[I, H]");
  TORCH_CHECK_VALUE(w1.size(1) == H, "w1 must be [I, H] with H = x.size(-1) = ", H, ", got ",
                    shape_str(w1));
  const int64_t I = w1.size(0);
  check_like(w2, "w2", x, "x");
  check_shape(w2, "w2", {H, I}, "[H, I] (the transpose shape of w1)");
  at::Tensor bb1, bb2, res;
  if (b1.has_value()) {
    check_like(*b1, "b1", x, "x");
    check_shape(*b1, "b1", {I}, "[I]");
    bb1 = b1->contiguous();
  }
  if (b2.has_value()) {
    check_like(*b2, "b2", x, "x");
    check_shape(*b2, "b2", {H}, "[H]");
    bb2 = b2->contiguous();
  }
  if (residual.has_value()) {
    check_like(*residual, "residual", x, "x");
    TORCH_CHECK_VALUE(residual->sizes() == x.sizes(), "residual must have the shape of x (",
                      shape_str(x), "), got ", shape_str(*residual));
    res = residual->contiguous().view({N, H});
  }
  const at::Tensor h = gemm_bias_act(x.view({N, H}), w1.contiguous(), bb1, act);
  if (!res.defined()) return gemm_bias_act(h, w2.contiguous(), bb2, Act::kIdentity).view(x.sizes());
  at::Tensor out = gemm_bias_act(h, w2.contiguous(), at::Tensor(), Act::kIdentity);
  bias_act_epilogue(out, bb2.defined() ? &bb2 : nullptr, &res, Act::kIdentity);
  return out.view(x.sizes());
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                  c10::string_view activation) {
  const Act act = to_act(std::string(activation));
  const int64_t K = check_gemm_input(x), N = x.numel() / K;
  check_like(weight, "weight", x, "x");
  check_rank(weight, "weight", 2, "[M, K]");
  TORCH_CHECK_VALUE(weight.size(1) == K, "weight must be [M, K] with K = x.size(-1) = ", K,
                    ", got ", shape_str(weight));
  const int64_t M = weight.size(0);
  at::Tensor b;
  if (bias.has_value()) {
    check_like(*bias, "bias", x, "x");
    check_shape(*bias, "bias", {M}, "[M]");
    b = bias->contiguous();
  }
  return gemm_bias_act(x.view({N, K}), weight.contiguous(), b, act).view(with_last_dim(x, M));
}

std::string cpu_gemm() { return cpu_gemm_backend(); }

at::Tensor pack_linear(const at::Tensor& weight) {
  check_float(weight, "weight");
  TORCH_CHECK_VALUE(weight.is_cpu(), "weight must be on CPU: packed weights are the CPU GEMM's "
                    "format (use linear on CUDA), got ", weight.device());
  check_rank(weight, "weight", 2, "[N, K]");
  TORCH_CHECK_VALUE(weight.numel() > 0, "weight must be non-empty, got ", shape_str(weight));
  const at::Tensor w = weight.contiguous();
  const int64_t n = w.size(0), k = w.size(1);
  at::Tensor packed = at::empty({(n + cpu::kPanel - 1) / cpu::kPanel, k, cpu::kPanel}, w.options());
  cpu::pack_weight(w.data_ptr<float>(), n, k, packed.data_ptr<float>());
  return packed;
}

at::Tensor linear_packed(const at::Tensor& x, const at::Tensor& packed, int64_t out_features,
                         const c10::optional<at::Tensor>& bias, c10::string_view activation) {
  const Act act = to_act(std::string(activation));
  at::Tensor b;
  const int64_t K = check_packed_gemm(x, packed, at::kFloat, "pack_linear", out_features, bias, "linear_packed", b);
  at::Tensor y = at::empty(with_last_dim(x, out_features), x.options());
  cpu::gemm_packed(x.data_ptr<float>(), x.numel() / K, K, packed.data_ptr<float>(), out_features,
                   b.defined() ? b.data_ptr<float>() : nullptr, act, y.data_ptr<float>());
  return y;
}

}  // namespace eet
