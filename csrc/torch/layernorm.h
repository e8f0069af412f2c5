// What layernorm.cpp and add_layernorm.cpp share: the checks of x/weight/bias and the call of
// the one layernorm kernel (residual and its bias optional) on each device.
#pragma once

#include <torch/extension.h>

#include "checks.h"
#include "eet/ops.h"
#ifdef WITH_CUDA
#include "cuda_launch.h"
#include "enums.h"
#endif

namespace eet {

inline void check_layernorm_args(const at::Tensor& x, const at::Tensor& weight,
                                 const at::Tensor& bias, double eps) {
  check_float(x, "x");
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.numel() > 0, "x must be a non-empty [..., H] tensor, got ",
                    shape_str(x));
  check_contiguous(x, "x");
  const int64_t H = x.size(-1);
  check_like(weight, "weight", x, "x");
  check_like(bias, "bias", x, "x");
  check_shape(weight, "weight", {H}, "[H] with H = x.size(-1)");
  check_shape(bias, "bias", {H}, "[H] with H = x.size(-1)");
  TORCH_CHECK_VALUE(eps > 0, "eps must be > 0, got ", eps);
}

// y = LN(x (+ residual) (+ res_bias)); h (if not null) receives the sum. x, residual, y and h
// are contiguous [..., H].
inline void layernorm_run_cpu(const at::Tensor& x, const at::Tensor* residual,
                              const at::Tensor* res_bias, const at::Tensor& weight,
                              const at::Tensor& bias, double eps, at::Tensor& y, at::Tensor* h) {
  const int64_t H = x.size(-1), N = x.numel() / H;
  const at::Tensor w = weight.contiguous(), b = bias.contiguous();
  cpu::layernorm(x.data_ptr<float>(), residual ? residual->data_ptr<float>() : nullptr,
                 res_bias ? res_bias->data_ptr<float>() : nullptr, w.data_ptr<float>(),
                 b.data_ptr<float>(), y.data_ptr<float>(), h ? h->data_ptr<float>() : nullptr, N,
                 H, static_cast<float>(eps));
}

#ifdef WITH_CUDA
inline void layernorm_run_cuda(const at::Tensor& x, const at::Tensor* residual,
                               const at::Tensor* res_bias, const at::Tensor& weight,
                               const at::Tensor& bias, double eps, at::Tensor& y, at::Tensor* h) {
  TORCH_CHECK(on_kernel_device(x), "layernorm: the CUDA implementation got x on ", x.device());
  const int64_t H = x.size(-1), N = x.numel() / H;
  const at::Tensor w = weight.contiguous(), b = bias.contiguous();
  const DeviceGuard guard(x.device());
  EET_CHECK_LAUNCH(
      cuda::layernorm(to_dtype(x), x.data_ptr(), residual ? residual->data_ptr() : nullptr,
                      res_bias ? res_bias->data_ptr() : nullptr, w.data_ptr(), b.data_ptr(),
                      y.data_ptr(), h ? h->data_ptr() : nullptr, N, H, static_cast<float>(eps),
                      current_stream()),
      "layernorm");
}
#endif

}  // namespace eet
