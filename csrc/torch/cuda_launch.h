// The CUDA side of the torch glue (WITH_CUDA builds only): the device guard, the current
// stream and the check of every launcher's status. Included by the *_cuda implementations.
#pragma once

#ifndef WITH_CUDA
#error "cuda_launch.h is for WITH_CUDA builds only"
#endif

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include "eet/ops_cuda.h"

#define EET_CHECK_LAUNCH(expr, op)                                                       \
  do {                                                                                   \
    const cudaError_t eet_err_ = (expr);                                                 \
    TORCH_CHECK(eet_err_ == cudaSuccess, op, ": CUDA kernel failed: ",                   \
                cudaGetErrorString(eet_err_));                                           \
  } while (0)

namespace eet {
inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream(); }
}  // namespace eet
