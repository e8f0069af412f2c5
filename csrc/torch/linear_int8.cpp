// Torch glue of linear_int8: y = act(x W^T + bias) on CPU float32 x [..., K] with W given as
// quantize_int8(W) = (qweight int8 [N, K], scales [N]). Each row of x is quantized to int8 with
// its own symmetric scale (cpu::quantize_int8), the product is exact int32, then
// cpu::dequant_bias_act. The int32 GEMM: the eet_like VNNI/AVX2 kernel for few rows (decode
// steps), at::_int_mm (oneDNN) from kIntMmMinRows rows (prompts, BERT batches). Both give the
// same integers and share the epilogue, so a row's result depends on that row only. CPU only.
#include "enums.h"
#include "gemm.h"
#include "op_impls.h"

namespace eet {

namespace {

// Rows from which at::_int_mm (oneDNN, AMX on the development Xeon: ~0.14 ms flat for 2304x768
// up to 16 rows) beats the eet_like VNNI kernel (~0.05 ms at 1 row, +0.016 ms per row).
constexpr int64_t kIntMmMinRows = 8;

// Returns K; b receives the bias (contiguous) or stays undefined.
int64_t check_linear_int8_args(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                               const c10::optional<at::Tensor>& bias, at::Tensor& b) {
  TORCH_CHECK_VALUE(x.is_cpu(), "x must be on CPU: linear_int8 is a CPU GEMM, got ", x.device());
  const int64_t K = check_gemm_input(x);
  TORCH_CHECK_TYPE(qweight.scalar_type() == at::kChar, "qweight must be int8 (from quantize_int8), got ",
                   qweight.scalar_type());
  check_device(qweight, "qweight", x, "x");
  check_rank(qweight, "qweight", 2, "[N, K]");
  TORCH_CHECK_VALUE(qweight.size(1) == K, "qweight must be [N, K] with K = x.size(-1) = ", K, ", got ",
                    shape_str(qweight));
  TORCH_CHECK_VALUE(qweight.size(0) > 0, "qweight must be non-empty, got ", shape_str(qweight));
  check_contiguous(qweight, "qweight");
  TORCH_CHECK_VALUE(K <= cpu::kInt8MaxK, "x.size(-1) must be <= ", cpu::kInt8MaxK,
                    " (int32 accumulation of the int8 products), got ", K);
  const int64_t N = qweight.size(0);
  check_like(scales, "scales", x, "x");
  check_shape(scales, "scales", {N}, "[N] (from quantize_int8)");
  if (bias.has_value()) {
    check_like(*bias, "bias", x, "x");
    check_shape(*bias, "bias", {N}, "[N]");
    b = bias->contiguous();
  }
  return K;
}

}  // namespace

at::Tensor linear_int8_cpu(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                           const c10::optional<at::Tensor>& bias, c10::string_view activation) {
  const Act act = to_act(activation);
  at::Tensor b;
  const int64_t K = check_linear_int8_args(x, qweight, scales, bias, b);
  const int64_t M = x.numel() / K, N = qweight.size(0);
  const at::Tensor sw = scales.contiguous();
  at::Tensor xq = at::empty({M, K}, x.options().dtype(at::kChar));
  at::Tensor sx = at::empty({M}, x.options());
  cpu::quantize_int8(x.data_ptr<float>(), M, K, xq.data_ptr<int8_t>(), sx.data_ptr<float>());
  at::Tensor acc;
  if (M >= kIntMmMinRows) {
    acc = at::_int_mm(xq, qweight.t());
  } else {
    acc = at::empty({M, N}, x.options().dtype(at::kInt));
    cpu::gemm_s8s8_s32(xq.data_ptr<int8_t>(), M, K, qweight.data_ptr<int8_t>(), N, acc.data_ptr<int32_t>());
  }
  TORCH_CHECK(acc.is_contiguous() && acc.scalar_type() == at::kInt, "linear_int8: the int32 GEMM returned ",
              acc.scalar_type(), " with strides ", acc.strides());
  at::Tensor y = at::empty(with_last_dim(x, N), x.options());
  cpu::dequant_bias_act(acc.data_ptr<int32_t>(), sx.data_ptr<float>(), sw.data_ptr<float>(),
                        b.defined() ? b.data_ptr<float>() : nullptr, act, M, N, y.data_ptr<float>());
  return y;
}

#ifdef WITH_CUDA
at::Tensor linear_int8_cuda(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                            const c10::optional<at::Tensor>& bias, c10::string_view activation) {
  to_act(activation);
  at::Tensor b;
  check_linear_int8_args(x, qweight, scales, bias, b);
  cpu_only_op("linear_int8");
}
#endif

}  // namespace eet
