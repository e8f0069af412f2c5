// Torch binding of ffn: act(x W1^T + b1) W2^T + b2 (+ residual). The GEMMs go to torch
// (MKL/oneDNN on CPU, cuBLAS on CUDA); bias + activation and bias + residual are fused
// epilogue kernels (bias_act), one pass over each GEMM output.
#include "binding_common.h"

namespace eet {

namespace {

void epilogue(at::Tensor& y, const at::Tensor* bias, const at::Tensor* residual, Act act) {
  const int64_t rows = y.size(0), cols = y.size(1);
  if (y.is_cuda()) {
#ifdef WITH_CUDA
    const c10::cuda::CUDAGuard guard(y.device());
    EET_CHECK_LAUNCH(cuda::bias_act(to_dtype(y), y.data_ptr(), bias ? bias->data_ptr() : nullptr,
                                    residual ? residual->data_ptr() : nullptr, act, rows, cols,
                                    current_stream()),
                     "ffn");
#endif
    return;
  }
  cpu::bias_act(y.data_ptr<float>(), bias ? bias->data_ptr<float>() : nullptr,
                residual ? residual->data_ptr<float>() : nullptr, act, rows, cols);
}

}  // namespace

at::Tensor ffn(const at::Tensor& x, const at::Tensor& w1, const c10::optional<at::Tensor>& b1,
               const at::Tensor& w2, const c10::optional<at::Tensor>& b2,
               c10::string_view activation, const c10::optional<at::Tensor>& residual) {
  const Act act = to_act(std::string(activation));
  check_float(x, "x");
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.numel() > 0, "x must be a non-empty [..., H] tensor, got ",
                    shape_str(x));
  check_contiguous(x, "x");
  const int64_t H = x.size(-1), N = x.numel() / H;
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
  at::Tensor h = at::mm(x.view({N, H}), w1.t());
  epilogue(h, bb1.defined() ? &bb1 : nullptr, nullptr, act);
  at::Tensor out = at::mm(h, w2.t());
  if (bb2.defined() || res.defined())
    epilogue(out, bb2.defined() ? &bb2 : nullptr, res.defined() ? &res : nullptr,
             Act::kIdentity);
  return out.view(x.sizes());
}

}  // namespace eet
