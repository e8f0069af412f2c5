// Torch glue of layernorm: y = LN(x) * weight + bias over the last dim of x [..., H].
// layernorm_cpu -> cpu::layernorm, layernorm_cuda -> cuda::layernorm (registered per
// dispatch key in bindings.cpp).
#include "layernorm.h"
#include "op_impls.h"

namespace eet {

at::Tensor layernorm_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         double eps) {
  check_layernorm_args(x, weight, bias, eps);
  at::Tensor y = at::empty_like(x);
  layernorm_run_cpu(x, nullptr, nullptr, weight, bias, eps, y, nullptr);
  return y;
}

#ifdef WITH_CUDA
at::Tensor layernorm_cuda(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                          double eps) {
  check_layernorm_args(x, weight, bias, eps);
  at::Tensor y = at::empty_like(x);
  layernorm_run_cuda(x, nullptr, nullptr, weight, bias, eps, y, nullptr);
  return y;
}
#endif

}  // namespace eet
