// Torch glue of quantize_int8: [N, K] float weight -> (int8 [N, K], float32 scales [N]),
// symmetric per output row: scale = max|w_row| / 127, q = round(w / scale) (an all-zero row
// gets scale 0). CPU: cpu::quantize_int8 on float32. CUDA: the same formula in ATen on the
// weight's device (a load-time op), float32 math.
#include "gemm.h"
#include "op_impls.h"

namespace eet {

namespace {

void check_quantize_args(const at::Tensor& weight) {
  check_float(weight, "weight");
  check_rank(weight, "weight", 2, "[N, K]");
  TORCH_CHECK_VALUE(weight.numel() > 0, "weight must be non-empty, got ", shape_str(weight));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> quantize_int8_cpu(const at::Tensor& weight) {
  check_quantize_args(weight);
  const at::Tensor w = weight.contiguous();
  const int64_t n = w.size(0), k = w.size(1);
  at::Tensor q = at::empty({n, k}, w.options().dtype(at::kChar));
  at::Tensor scales = at::empty({n}, w.options());
  cpu::quantize_int8(w.data_ptr<float>(), n, k, q.data_ptr<int8_t>(), scales.data_ptr<float>());
  return {q, scales};
}

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> quantize_int8_cuda(const at::Tensor& weight) {
  check_quantize_args(weight);
  const at::Tensor w = weight.to(at::kFloat);
  const at::Tensor scales = w.abs().amax(1) / 127.f;
  const at::Tensor safe = at::where(scales > 0, scales, at::ones_like(scales));
  at::Tensor q = at::round(w / safe.unsqueeze(1)).clamp_(-127, 127).to(at::kChar);
  return {q, scales};
}
#endif

}  // namespace eet
