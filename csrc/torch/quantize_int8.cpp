// Torch glue of quantize_int8: [N, K] float weight -> (int8 [N, K], float32 scales [N]),
// symmetric per output row: scale = max|w_row| / 127, q = round(w / scale) (an all-zero row
// gets scale 0). CPU: cpu::quantize_int8 on float32. CUDA: cuda::quantize_int8 (one block per
// row) on float32/float16/bfloat16 weights, float32 math: bit-identical to the CPU op for
// float32; the scales are float32 whatever the weight's dtype.
#include "gemm.h"
#include "op_impls.h"
#ifdef WITH_CUDA
#include "cuda_launch.h"
#include "enums.h"
#endif

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
  TORCH_CHECK_VALUE(on_kernel_device(weight), "weight must be on the CUDA device of quantize_int8's CUDA kernel, got ",
                    weight.device());
  const at::Tensor w = weight.contiguous();
  const int64_t n = w.size(0), k = w.size(1);
  at::Tensor q = at::empty({n, k}, w.options().dtype(at::kChar));
  at::Tensor scales = at::empty({n}, w.options().dtype(at::kFloat));
  const DeviceGuard guard(w.device());
  EET_CHECK_LAUNCH(cuda::quantize_int8(to_dtype(w), w.data_ptr(), n, k, q.data_ptr<int8_t>(),
                                       scales.data_ptr<float>(), current_stream()),
                   "quantize_int8");
  return {q, scales};
}
#endif

}  // namespace eet
