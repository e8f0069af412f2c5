// The GEMMs behind the ffn and linear ops: y = act(x W^T + b) for a contiguous [N, K] x.
// - CPU fp32: oneDNN (torch's mkldnn::_linear_pointwise) with the bias and activation as
//   fused post-ops when torch has it; on the AVX2 EPYC development CPU it runs the
//   768x3072 FFN GEMMs ~1.2x faster than MKL's sgemm (at::addmm) and streams cold weights
//   faster in decode. EET_LIKE_CPU_GEMM=eet selects at::mm + the eet_like bias_act epilogue.
// - CUDA: cuBLAS through at::mm / at::addmm + the bias_act epilogue kernel.
#pragma once

#include "binding_common.h"

namespace eet {

// In place on a [rows, cols] y: y = act(y + bias) + residual (either may be null).
void bias_act_epilogue(at::Tensor& y, const at::Tensor* bias, const at::Tensor* residual, Act act);

// act(x W^T + b); x [N, K] contiguous, w [M, K], bias [M] or undefined.
at::Tensor gemm_bias_act(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias, Act act);

// Which CPU GEMM gemm_bias_act uses now: "onednn" or "eet" (EET_LIKE_CPU_GEMM, default
// onednn where torch has it).
std::string cpu_gemm_backend();

// x of a GEMM op: float, non-empty [..., K], contiguous. Returns K.
inline int64_t check_gemm_input(const at::Tensor& x) {
  check_float(x, "x");
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.numel() > 0, "x must be a non-empty [..., K] tensor, got ",
                    shape_str(x));
  check_contiguous(x, "x");
  return x.size(-1);
}

// x's shape with the last dim replaced by n.
inline std::vector<int64_t> with_last_dim(const at::Tensor& x, int64_t n) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = n;
  return shape;
}

// The arguments of a packed-weight GEMM op (linear_packed, linear_int8_packed) on CPU: x
// [..., K] (returns K), packed [ceil(out_features / 16), K, 16] of `packed_dtype` made by
// `packer`, bias [out_features] or none (returned contiguous, or undefined).
inline int64_t check_packed_gemm(const at::Tensor& x, const at::Tensor& packed, at::ScalarType packed_dtype,
                                 const char* packer, int64_t out_features,
                                 const c10::optional<at::Tensor>& bias, const char* op, at::Tensor& bias_out) {
  TORCH_CHECK_VALUE(x.is_cpu(), "x must be on CPU: ", op, " is a CPU GEMM (use linear on CUDA), got ",
                    x.device());
  const int64_t K = check_gemm_input(x);
  if (packed_dtype == x.scalar_type()) {
    check_like(packed, "packed", x, "x");
  } else {
    TORCH_CHECK_TYPE(packed.scalar_type() == packed_dtype, "packed must be ",
                     packed_dtype == at::kChar ? "int8" : c10::toString(packed_dtype), " (from ", packer,
                     "), got ", packed.scalar_type());
    check_device(packed, "packed", x, "x");
  }
  check_contiguous(packed, "packed");
  TORCH_CHECK_VALUE(out_features > 0, "out_features must be > 0, got ", out_features);
  const int64_t panels = (out_features + cpu::kPanel - 1) / cpu::kPanel;
  const std::string spec = std::string("[ceil(out_features / 16), K, 16] (from ") + packer +
                           " of an [out_features, K] weight)";
  check_shape(packed, "packed", {panels, K, cpu::kPanel}, spec.c_str());
  if (bias.has_value()) {
    check_like(*bias, "bias", x, "x");
    check_shape(*bias, "bias", {out_features}, "[out_features]");
    bias_out = bias->contiguous();
  }
  return K;
}

}  // namespace eet
