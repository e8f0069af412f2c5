// CUDA launchers: same semantics as the eet::cpu functions in ops.h, for fp32/fp16/bf16
// (dt picks the element type of every floating-point pointer; math is done in fp32).
// Each launcher returns the launch status (cudaGetLastError after its launches) and never
// synchronizes; argument validation is the caller's job (csrc/torch/*.cpp).
#pragma once

#include <cuda_runtime.h>

#include "eet/ops.h"

namespace eet {
namespace cuda {

cudaError_t layernorm(DType dt, const void* x, const void* residual, const void* bias,
                      const void* gamma, const void* beta, void* y, void* h_out, int64_t rows,
                      int64_t hidden, float eps, cudaStream_t stream);

// Out-of-range ids are clamped into range here (memory safety only): the caller validates.
cudaError_t embedding(DType dt, const int64_t* ids, const int64_t* pos_ids,
                      const int64_t* type_ids, const void* word, const void* pos,
                      const void* type, const void* gamma, const void* beta, void* out,
                      int64_t tokens, int64_t hidden, int64_t vocab, int64_t n_pos,
                      int64_t n_types, float eps, cudaStream_t stream);

cudaError_t bias_act(DType dt, void* x, const void* bias, const void* residual, Act act,
                     int64_t rows, int64_t cols, cudaStream_t stream);

// Any head_dim >= 1: a fast path for head_dim % 8 == 0 && head_dim <= 256, a generic
// (slower, still exact) path for everything else.
cudaError_t attention(DType dt, const AttnParams& p, cudaStream_t stream);

cudaError_t kv_cache_write(DType dt, const CacheWriteParams& p, cudaStream_t stream);

// int8 weights (linear_int8.cu). q [n, k] int8 and scales [n] float32 (whatever dt is) are
// cpu::quantize_int8's format; dt is the dtype of w, x, bias and y.
// quantize_int8: w [n, k] -> q, scales; the CPU kernel's formula, bit-identical for fp32 w.
// dequantize_int8: w[r, c] = q[r, c] * scales[r] (in fp32, then rounded to dt), w [n, k].
// linear_int8: weight-only (W8A16) y[m, n] = act(scales[n] * (x[m, :] . q[n, :]) + bias[n])
// for 1 <= m <= kLinearInt8MaxRows (cudaErrorInvalidValue above: larger m is the prompt path,
// dequantize_int8 + a GEMM), x [m, k], bias [n] or null, y [m, n]; fp32 accumulation.
constexpr int64_t kLinearInt8MaxRows = 16;
cudaError_t quantize_int8(DType dt, const void* w, int64_t n, int64_t k, int8_t* q, float* scales,
                          cudaStream_t stream);
cudaError_t dequantize_int8(DType dt, const int8_t* q, const float* scales, void* w, int64_t n,
                            int64_t k, cudaStream_t stream);
cudaError_t linear_int8(DType dt, const void* x, const int8_t* q, const float* scales,
                        const void* bias, Act act, void* y, int64_t m, int64_t n, int64_t k,
                        cudaStream_t stream);

}  // namespace cuda
}  // namespace eet
