// Torch glue of pack_linear_int8: an int8 [N, K] weight from quantize_int8 -> the panels of
// the packed GEMM, [ceil(N / kPanelWidth), K, kPanelWidth] int8 (cpu::pack_weight_int8).
// CPU only.
#include "gemm.h"
#include "op_impls.h"

namespace eet {

namespace {

void check_pack_int8_args(const at::Tensor& qweight) {
  TORCH_CHECK_TYPE(qweight.scalar_type() == at::kChar, "qweight must be int8 (from quantize_int8), got ",
                   qweight.scalar_type());
  TORCH_CHECK_VALUE(qweight.is_cpu(), "qweight must be on CPU: packed int8 weights are the CPU GEMM's "
                    "format, got ", qweight.device());
  check_rank(qweight, "qweight", 2, "[N, K]");
  TORCH_CHECK_VALUE(qweight.numel() > 0, "qweight must be non-empty, got ", shape_str(qweight));
}

}  // namespace

at::Tensor pack_linear_int8_cpu(const at::Tensor& qweight) {
  check_pack_int8_args(qweight);
  const at::Tensor q = qweight.contiguous();
  const int64_t n = q.size(0), k = q.size(1);
  at::Tensor packed = at::empty(panel_shape(n, k), q.options());
  cpu::pack_weight_int8(q.data_ptr<int8_t>(), n, k, packed.data_ptr<int8_t>());
  return packed;
}

#ifdef WITH_CUDA
at::Tensor pack_linear_int8_cuda(const at::Tensor& qweight) {
  check_pack_int8_args(qweight);
  cpu_only_op("pack_linear_int8");
}
#endif

}  // namespace eet
