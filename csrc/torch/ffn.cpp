// Torch glue of ffn: act(x W1^T + b1) W2^T + b2 (+ residual), x [..., H], w1 [I, H], w2 [H, I].
// Both GEMMs run on the device's GemmBackend (gemm.h: oneDNN with fused bias/activation on
// CPU, cuBLAS + the eet_like bias_act epilogue on CUDA); b2 + residual is one epilogue pass.
#include "enums.h"
#include "gemm.h"
#include "op_impls.h"

namespace eet {

namespace {

at::Tensor ffn_on(const GemmBackend& g, const at::Tensor& x, const at::Tensor& w1,
                  const c10::optional<at::Tensor>& b1, const at::Tensor& w2,
                  const c10::optional<at::Tensor>& b2, c10::string_view activation,
                  const c10::optional<at::Tensor>& residual) {
  const Act act = to_act(activation);
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
  const at::Tensor h = g.gemm_bias_act(x.view({N, H}), w1.contiguous(), bb1, act);
  if (!res.defined()) return g.gemm_bias_act(h, w2.contiguous(), bb2, Act::kIdentity).view(x.sizes());
  at::Tensor out = g.gemm_bias_act(h, w2.contiguous(), at::Tensor(), Act::kIdentity);
  g.bias_act(out, bb2.defined() ? &bb2 : nullptr, &res, Act::kIdentity);
  return out.view(x.sizes());
}

}  // namespace

at::Tensor ffn_cpu(const at::Tensor& x, const at::Tensor& w1, const c10::optional<at::Tensor>& b1,
                   const at::Tensor& w2, const c10::optional<at::Tensor>& b2,
                   c10::string_view activation, const c10::optional<at::Tensor>& residual) {
  return ffn_on(kCpuGemm, x, w1, b1, w2, b2, activation, residual);
}

#ifdef WITH_CUDA
at::Tensor ffn_cuda(const at::Tensor& x, const at::Tensor& w1, const c10::optional<at::Tensor>& b1,
                    const at::Tensor& w2, const c10::optional<at::Tensor>& b2,
                    c10::string_view activation, const c10::optional<at::Tensor>& residual) {
  return ffn_on(kCudaGemm, x, w1, b1, w2, b2, activation, residual);
}
#endif

}  // namespace eet
