// Torch glue of add_layernorm: h = x + residual (+ residual_bias), y = LN(h) * weight + bias,
// returns (y, h): the residual add fused into the norm. add_layernorm_cpu / _cuda call the
// layernorm kernel of each device with its residual inputs (layernorm.h).
#include "layernorm.h"
#include "op_impls.h"

namespace eet {

namespace {

// Checks the residual inputs; returns residual_bias contiguous (or undefined).
at::Tensor check_residual(const at::Tensor& x, const at::Tensor& residual,
                             const c10::optional<at::Tensor>& residual_bias) {
  check_like(residual, "residual", x, "x");
  TORCH_CHECK_VALUE(residual.sizes() == x.sizes(), "residual must have the shape of x (",
                    shape_str(x), "), got ", shape_str(residual));
  check_contiguous(residual, "residual");
  if (!residual_bias.has_value()) return at::Tensor();
  check_like(*residual_bias, "residual_bias", x, "x");
  check_shape(*residual_bias, "residual_bias", {x.size(-1)}, "[H] with H = x.size(-1)");
  return residual_bias->contiguous();
}

}  // namespace

TensorPair add_layernorm_cpu(const at::Tensor& x, const at::Tensor& residual,
                             const c10::optional<at::Tensor>& residual_bias,
                             const at::Tensor& weight, const at::Tensor& bias, double eps) {
  check_layernorm_args(x, weight, bias, eps);
  const at::Tensor rb = check_residual(x, residual, residual_bias);
  at::Tensor y = at::empty_like(x), h = at::empty_like(x);
  layernorm_run_cpu(x, &residual, rb.defined() ? &rb : nullptr, weight, bias, eps, y, &h);
  return {y, h};
}

#ifdef WITH_CUDA
TensorPair add_layernorm_cuda(const at::Tensor& x, const at::Tensor& residual,
                              const c10::optional<at::Tensor>& residual_bias,
                              const at::Tensor& weight, const at::Tensor& bias, double eps) {
  check_layernorm_args(x, weight, bias, eps);
  const at::Tensor rb = check_residual(x, residual, residual_bias);
  at::Tensor y = at::empty_like(x), h = at::empty_like(x);
  layernorm_run_cuda(x, &residual, rb.defined() ? &rb : nullptr, weight, bias, eps, y, &h);
  return {y, h};
}
#endif

}  // namespace eet
