// Torch glue of pack_int8: a quantize_int8 weight (int8 [N, K]) -> the panels of the AVX2 int8
// GEMM, int8 [ceil(N / 16), ceil(K / 4) + 1, 16, 4] (cpu::pack_int8_panels: per panel the k
// quads of 16 weight rows x 4, then the 16 int32 column sums). linear_int8 takes it in place of
// qweight on CPU and then reads the weight with no per-call repacking. CPU only.
#include "gemm.h"
#include "op_impls.h"

namespace eet {

std::vector<int64_t> int8_panel_shape(int64_t n, int64_t k) {
  constexpr int64_t cols = cpu::kPackedInt8PanelCols;
  return {(n + cols - 1) / cols, (k + 3) / 4 + 1, cols, 4};
}

namespace {

void check_pack_int8_args(const at::Tensor& qweight) {
  TORCH_CHECK_TYPE(qweight.scalar_type() == at::kChar, "qweight must be int8 (from quantize_int8), got ",
                   qweight.scalar_type());
  TORCH_CHECK_VALUE(qweight.is_cpu(), "qweight must be on CPU: pack_int8 packs for the CPU int8 GEMM "
                    "(CUDA's linear_int8 reads the [N, K] weight), got ", qweight.device());
  check_rank(qweight, "qweight", 2, "[N, K]");
  TORCH_CHECK_VALUE(qweight.numel() > 0, "qweight must be non-empty, got ", shape_str(qweight));
  TORCH_CHECK_VALUE(qweight.size(1) <= cpu::kInt8MaxK, "qweight.size(1) must be <= ", cpu::kInt8MaxK,
                    " (int32 accumulation of the int8 products), got ", qweight.size(1));
}

}  // namespace

at::Tensor pack_int8_cpu(const at::Tensor& qweight) {
  check_pack_int8_args(qweight);
  const at::Tensor q = qweight.contiguous();
  const int64_t n = q.size(0), k = q.size(1);
  at::Tensor packed = at::empty(int8_panel_shape(n, k), q.options());
  TORCH_CHECK(packed.numel() == cpu::packed_int8_bytes(n, k), "pack_int8: panel size mismatch");
  cpu::pack_int8_panels(q.data_ptr<int8_t>(), n, k, packed.data_ptr<int8_t>());
  return packed;
}

#ifdef WITH_CUDA
at::Tensor pack_int8_cuda(const at::Tensor& qweight) {
  check_pack_int8_args(qweight);
  cpu_only_op("pack_int8");
}
#endif

}  // namespace eet
