// Torch glue of linear_int8_packed: act(scales * (x q^T) + bias) on CPU float32 x [..., K],
// q given as pack_linear_int8(q) and scales [out_features] from quantize_int8; the int8
// weights are converted in registers (cpu::gemm_packed_int8). CPU only.
#include "enums.h"
#include "gemm.h"
#include "op_impls.h"

namespace eet {

namespace {

// Returns K; b receives the bias (contiguous) or stays undefined.
int64_t check_linear_int8_args(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                               int64_t out_features, const c10::optional<at::Tensor>& bias, at::Tensor& b) {
  const int64_t K = check_packed_gemm(x, packed, at::kChar, "pack_linear_int8", out_features, bias,
                                      "linear_int8_packed", b);
  check_like(scales, "scales", x, "x");
  check_shape(scales, "scales", {out_features}, "[out_features]");
  return K;
}

}  // namespace

at::Tensor linear_int8_packed_cpu(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                                  int64_t out_features, const c10::optional<at::Tensor>& bias,
                                  c10::string_view activation) {
  const Act act = to_act(activation);
  at::Tensor b;
  const int64_t K = check_linear_int8_args(x, packed, scales, out_features, bias, b);
  const at::Tensor s = scales.contiguous();
  at::Tensor y = at::empty(with_last_dim(x, out_features), x.options());
  cpu::gemm_packed_int8(x.data_ptr<float>(), x.numel() / K, K, packed.data_ptr<int8_t>(), s.data_ptr<float>(),
                        out_features, b.defined() ? b.data_ptr<float>() : nullptr, act, y.data_ptr<float>());
  return y;
}

#ifdef WITH_CUDA
at::Tensor linear_int8_packed_cuda(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                                   int64_t out_features, const c10::optional<at::Tensor>& bias,
                                   c10::string_view activation) {
  to_act(activation);
  at::Tensor b;
  check_linear_int8_args(x, packed, scales, out_features, bias, b);
  cpu_only_op("linear_int8_packed");
}
#endif

}  // namespace eet
