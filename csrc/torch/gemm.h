// What the GEMM ops' glue shares (ffn.cpp, linear.cpp and the packed CPU GEMMs):
// - GemmBackend: y = act(x W^T + b) for a contiguous [N, K] x and the in-place bias_act
//   epilogue, one per device (gemm.cpp). CPU fp32: oneDNN (torch's mkldnn::_linear_pointwise)
//   with the bias and activation as fused post-ops when torch has it; on the AVX2 EPYC
//   development CPU it runs the 768x3072 FFN GEMMs ~1.2x faster than MKL's sgemm
//   (at::addmm) and streams cold weights faster in decode. EET_LIKE_CPU_GEMM=eet selects
//   at::mm + the eet_like bias_act epilogue. CUDA: cuBLAS through at::mm / at::addmm + the
//   bias_act epilogue kernel.
// - the argument checks of the GEMM ops and the panel layout of the packed weights.
#pragma once

#include <torch/extension.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "checks.h"
#include "eet/ops.h"

namespace eet {

struct GemmBackend {
  // act(x W^T + b); x [N, K] contiguous, w [M, K] contiguous, bias [M] or undefined.
  at::Tensor (*gemm_bias_act)(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                              Act act);
  // In place on a [rows, cols] y: y = act(y + bias) + residual (either may be null).
  void (*bias_act)(at::Tensor& y, const at::Tensor* bias, const at::Tensor* residual, Act act);
};

extern const GemmBackend kCpuGemm;
#ifdef WITH_CUDA
extern const GemmBackend kCudaGemm;
#endif

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

// The shape of an [n, k] weight packed into panels: [ceil(n / kPanelWidth), k, kPanelWidth].
inline std::vector<int64_t> panel_shape(int64_t n, int64_t k) {
  return {(n + kPanelWidth - 1) / kPanelWidth, k, kPanelWidth};
}

// pack_int8's panels of an int8 [n, k] weight: [ceil(n / 16), ceil(k / 4) + 1, 16, 4] int8
// (pack_int8.cpp; cpu::pack_int8_panels, 16 = cpu::kPackedInt8PanelCols).
std::vector<int64_t> int8_panel_shape(int64_t n, int64_t k);

// The arguments of a packed-weight GEMM op (linear_packed) on CPU: x
// [..., K] (returns K), packed [ceil(out_features / kPanelWidth), K, kPanelWidth] of
// `packed_dtype` made by `packer`, bias [out_features] or none (returned contiguous, or
// undefined).
inline int64_t check_packed_gemm(const at::Tensor& x, const at::Tensor& packed, at::ScalarType packed_dtype,
                                 const char* packer, int64_t out_features,
                                 const c10::optional<at::Tensor>& bias, const char* op, at::Tensor& bias_out) {
  TORCH_CHECK_VALUE(x.is_cpu(), "x must be on CPU: ", op, " is a CPU GEMM (use linear on CUDA), got ",
                    x.device());
  const int64_t K = check_gemm_input(x);
  // check_gemm_input lets fp16/bf16 CPU tensors through in the CUDA emulation build.
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat, "x must be float32: ", op,
                   " is a CPU float32 GEMM, got ", x.scalar_type());
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
  const std::string spec = "[ceil(out_features / " + std::to_string(kPanelWidth) + "), K, " +
                           std::to_string(kPanelWidth) + "] (from " + packer +
                           " of an [out_features, K] weight)";
  check_shape(packed, "packed", panel_shape(out_features, K), spec.c_str());
  if (bias.has_value()) {
    check_like(*bias, "bias", x, "x");
    check_shape(*bias, "bias", {out_features}, "[out_features]");
    bias_out = bias->contiguous();
  }
  return K;
}

// The CUDA registration of an op with a CPU kernel only, after the op's checks (which reject
// the argument on CUDA by name) let it through.
[[noreturn]] inline void cpu_only_op(const char* op) {
  TORCH_CHECK(false, op, " is a CPU op (no CUDA kernel): pass CPU tensors");
  throw std::logic_error("unreachable");
}

}  // namespace eet
