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

}  // namespace eet
