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

}  // namespace cuda
}  // namespace eet
