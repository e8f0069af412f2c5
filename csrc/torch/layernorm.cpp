// Torch bindings of layernorm and add_layernorm (residual + bias add fused before the norm).
#include "binding_common.h"

namespace eet {

namespace {

void check_ln_params(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  check_float(x, "x");
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.numel() > 0, "x must be a non-empty [..., H] tensor, got ",
                    shape_str(x));
  check_contiguous(x, "x");
  const int64_t H = x.size(-1);
  check_like(weight, "weight", x, "x");
  check_like(bias, "bias", x, "x");
  check_shape(weight, "weight", {H}, "[H] with H = x.size(-1)");
  check_shape(bias, "bias", {H}, "[H] with H = x.size(-1)");
}

void run(const at::Tensor& x, const at::Tensor* residual, const at::Tensor* res_bias,
         const at::Tensor& weight, const at::Tensor& bias, double eps, at::Tensor& y,
         at::Tensor* h) {
  const int64_t H = x.size(-1), N = x.numel() / H;
  const at::Tensor w = weight.contiguous(), b = bias.contiguous();
  if (x.is_cuda()) {
#ifdef WITH_CUDA
    const c10::cuda::CUDAGuard guard(x.device());
    EET_CHECK_LAUNCH(
        cuda::layernorm(to_dtype(x), x.data_ptr(), residual ? residual->data_ptr() : nullptr,
                        res_bias ? res_bias->data_ptr() : nullptr, w.data_ptr(), b.data_ptr(),
                        y.data_ptr(), h ? h->data_ptr() : nullptr, N, H,
                        static_cast<float>(eps), current_stream()),
        "layernorm");
#endif
    return;
  }
  cpu::layernorm(x.data_ptr<float>(), residual ? residual->data_ptr<float>() : nullptr,
                 res_bias ? res_bias->data_ptr<float>() : nullptr, w.data_ptr<float>(),
                 b.data_ptr<float>(), y.data_ptr<float>(), h ? h->data_ptr<float>() : nullptr, N,
                 H, static_cast<float>(eps));
}

}  // namespace

at::Tensor layernorm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                     double eps) {
  check_ln_params(x, weight, bias);
  TORCH_CHECK_VALUE(eps > 0, "eps must be > 0, got ", eps);
  at::Tensor y = at::empty_like(x);
  run(x, nullptr, nullptr, weight, bias, eps, y, nullptr);
  return y;
}

std::tuple<at::Tensor, at::Tensor> add_layernorm(const at::Tensor& x, const at::Tensor& residual,
                                                 const c10::optional<at::Tensor>& residual_bias,
                                                 const at::Tensor& weight,
                                                 const at::Tensor& bias, double eps) {
  check_ln_params(x, weight, bias);
  TORCH_CHECK_VALUE(eps > 0, "eps must be > 0, got ", eps);
  check_like(residual, "residual", x, "x");
  TORCH_CHECK_VALUE(residual.sizes() == x.sizes(), "residual must have the shape of x (",
                    shape_str(x), "), got ", shape_str(residual));
  check_contiguous(residual, "residual");
  at::Tensor rb;
  if (residual_bias.has_value()) {
    check_like(*residual_bias, "residual_bias", x, "x");
    check_shape(*residual_bias, "residual_bias", {x.size(-1)}, "[H] with H = x.size(-1)");
    rb = residual_bias->contiguous();
  }
  at::Tensor y = at::empty_like(x);
  at::Tensor h = at::empty_like(x);
  run(x, &residual, residual_bias.has_value() ? &rb : nullptr, weight, bias, eps, y, &h);
  return {y, h};
}

}  // namespace eet
