// Torch bindings of the weight-only int8 ops:
//   quantize_int8       [N, K] float weight -> (int8 [N, K], float32 scales [N]), symmetric
//                       per output row: scale = max|w_row| / 127, q = round(w / scale)
//   pack_linear_int8    int8 [N, K] -> [ceil(N / 16), K, 16] panels (CPU)
//   linear_int8_packed  act(scales * (x q^T) + bias) on CPU float32 activations, the int8
//                       weights converted in registers (gemm_packed.cpp)
#include "gemm.h"

namespace eet {

std::tuple<at::Tensor, at::Tensor> quantize_int8(const at::Tensor& weight) {
  check_float(weight, "weight");
  check_rank(weight, "weight", 2, "[N, K]");
  TORCH_CHECK_VALUE(weight.numel() > 0, "weight must be non-empty, got ", shape_str(weight));
  const int64_t n = weight.size(0), k = weight.size(1);
  if (!weight.is_cpu()) {
    // A load-time op: the same formula in ATen on the weight's device, float32 math.
    const at::Tensor w = weight.to(at::kFloat);
    const at::Tensor scales = w.abs().amax(1) / 127.f;
    const at::Tensor safe = at::where(scales > 0, scales, at::ones_like(scales));
    at::Tensor q = at::round(w / safe.unsqueeze(1)).clamp_(-127, 127).to(at::kChar);
    return {q, scales};
  }
  const at::Tensor w = weight.contiguous();
  at::Tensor q = at::empty({n, k}, w.options().dtype(at::kChar));
  at::Tensor scales = at::empty({n}, w.options());
  cpu::quantize_int8(w.data_ptr<float>(), n, k, q.data_ptr<int8_t>(), scales.data_ptr<float>());
  return {q, scales};
}

at::Tensor pack_linear_int8(const at::Tensor& qweight) {
  TORCH_CHECK_TYPE(qweight.scalar_type() == at::kChar, "qweight must be int8 (from quantize_int8), got ",
                   qweight.scalar_type());
  TORCH_CHECK_VALUE(qweight.is_cpu(), "qweight must be on CPU: packed int8 weights are the CPU GEMM's "
                    "format, got ", qweight.device());
  check_rank(qweight, "qweight", 2, "[N, K]");
  TORCH_CHECK_VALUE(qweight.numel() > 0, "qweight must be non-empty, got ", shape_str(qweight));
  const at::Tensor q = qweight.contiguous();
  const int64_t n = q.size(0), k = q.size(1);
  at::Tensor packed = at::empty({(n + cpu::kPanel - 1) / cpu::kPanel, k, cpu::kPanel}, q.options());
  cpu::pack_weight_int8(q.data_ptr<int8_t>(), n, k, packed.data_ptr<int8_t>());
  return packed;
}

at::Tensor linear_int8_packed(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& scales,
                              int64_t out_features, const c10::optional<at::Tensor>& bias,
                              c10::string_view activation) {
  const Act act = to_act(std::string(activation));
  at::Tensor b;
  const int64_t K = check_packed_gemm(x, packed, at::kChar, "pack_linear_int8", out_features, bias,
                                      "linear_int8_packed", b);
  check_like(scales, "scales", x, "x");
  check_shape(scales, "scales", {out_features}, "[out_features]");
  const at::Tensor s = scales.contiguous();
  at::Tensor y = at::empty(with_last_dim(x, out_features), x.options());
  cpu::gemm_packed_int8(x.data_ptr<float>(), x.numel() / K, K, packed.data_ptr<int8_t>(), s.data_ptr<float>(),
                        out_features, b.defined() ? b.data_ptr<float>() : nullptr, act, y.data_ptr<float>());
  return y;
}

}  // namespace eet
