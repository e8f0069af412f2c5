// Torch glue of linear_packed: act(x W^T + bias) on CPU float32 x [..., K] with W given as
// pack_linear(W): the register-blocked packed GEMM (cpu::gemm_packed), bias and activation
// applied before the store. CPU only.
#include "enums.h"
#include "gemm.h"
#include "op_impls.h"

namespace eet {

at::Tensor linear_packed_cpu(const at::Tensor& x, const at::Tensor& packed, int64_t out_features,
                             const c10::optional<at::Tensor>& bias, c10::string_view activation) {
  const Act act = to_act(activation);
  at::Tensor b;
  const int64_t K = check_packed_gemm(x, packed, at::kFloat, "pack_linear", out_features, bias,
                                      "linear_packed", b);
  at::Tensor y = at::empty(with_last_dim(x, out_features), x.options());
  cpu::gemm_packed(x.data_ptr<float>(), x.numel() / K, K, packed.data_ptr<float>(), out_features,
                   b.defined() ? b.data_ptr<float>() : nullptr, act, y.data_ptr<float>());
  return y;
}

#ifdef WITH_CUDA
at::Tensor linear_packed_cuda(const at::Tensor& x, const at::Tensor& packed, int64_t out_features,
                              const c10::optional<at::Tensor>& bias, c10::string_view activation) {
  to_act(activation);
  at::Tensor b;
  check_packed_gemm(x, packed, at::kFloat, "pack_linear", out_features, bias, "linear_packed", b);
  cpu_only_op("linear_packed");
}
#endif

}  // namespace eet
