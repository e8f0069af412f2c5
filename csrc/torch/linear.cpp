// Torch glue of linear: act(x W^T + b), x [..., K], weight [M, K] (the QKV / output
// projections and the LM head), on the device's GemmBackend (gemm.h).
#include "enums.h"
#include "gemm.h"
#include "op_impls.h"

namespace eet {

namespace {

at::Tensor linear_on(const GemmBackend& g, const at::Tensor& x, const at::Tensor& weight,
                     const c10::optional<at::Tensor>& bias, c10::string_view activation) {
  const Act act = to_act(activation);
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
  return g.gemm_bias_act(x.view({N, K}), weight.contiguous(), b, act).view(with_last_dim(x, M));
}

}  // namespace

at::Tensor linear_cpu(const at::Tensor& x, const at::Tensor& weight,
                      const c10::optional<at::Tensor>& bias, c10::string_view activation) {
  return linear_on(kCpuGemm, x, weight, bias, activation);
}

#ifdef WITH_CUDA
at::Tensor linear_cuda(const at::Tensor& x, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bias, c10::string_view activation) {
  return linear_on(kCudaGemm, x, weight, bias, activation);
}
#endif

}  // namespace eet
