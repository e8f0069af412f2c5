// Torch glue of pack_linear: a CPU float32 [N, K] nn.Linear weight -> the panels of the packed
// GEMM, [ceil(N / kPanelWidth), K, kPanelWidth], zero padded (cpu::pack_weight). CPU only.
#include "gemm.h"
#include "op_impls.h"

namespace eet {

namespace {

void check_pack_linear_args(const at::Tensor& weight) {
  check_float(weight, "weight");
  TORCH_CHECK_VALUE(weight.is_cpu(), "weight must be on CPU: packed weights are the CPU GEMM's "
                    "format (use linear on CUDA), got ", weight.device());
  TORCH_CHECK_TYPE(weight.scalar_type() == at::kFloat,
                   "weight must be float32: pack_linear packs for the CPU float32 GEMM, got ",
                   weight.scalar_type());
  check_rank(weight, "weight", 2, "[N, K]");
  TORCH_CHECK_VALUE(weight.numel() > 0, "weight must be non-empty, got ", shape_str(weight));
}

}  // namespace

at::Tensor pack_linear_cpu(const at::Tensor& weight) {
  check_pack_linear_args(weight);
  const at::Tensor w = weight.contiguous();
  const int64_t n = w.size(0), k = w.size(1);
  at::Tensor packed = at::empty(panel_shape(n, k), w.options());
  cpu::pack_weight(w.data_ptr<float>(), n, k, packed.data_ptr<float>());
  return packed;
}

#ifdef WITH_CUDA
at::Tensor pack_linear_cuda(const at::Tensor& weight) {
  check_pack_linear_args(weight);
  cpu_only_op("pack_linear");
}
#endif

}  // namespace eet
