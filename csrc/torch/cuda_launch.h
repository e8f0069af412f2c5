// The CUDA side of the torch glue (WITH_CUDA builds only): the device guard, the current
// stream, the graph-capture query, the device check of the *_cuda implementations and the
// check of every launcher's status. Included by the *_cuda implementations.
//
// EET_CUDA_EMULATION (the build flavour of setup.py with EET_CUDA_EMULATION=1): the same
// *_cuda glue, compiled without ATen CUDA, calls the kernels of csrc/cuda built as C++ against
// csrc/cuda_emu; its "device" is the CPU (tensors on CPU, the emulator's default stream, no
// device guard, never capturing a graph).
#pragma once

#ifndef WITH_CUDA
#error "cuda_launch.h is for WITH_CUDA builds only"
#endif

#include <torch/extension.h>
#ifndef EET_CUDA_EMULATION
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include "eet/ops_cuda.h"  // <cuda_runtime.h>: csrc/cuda_emu's in the emulation build

#define EET_CHECK_LAUNCH(expr, op)                                                       \
  do {                                                                                   \
    const cudaError_t eet_err_ = (expr);                                                 \
    TORCH_CHECK(eet_err_ == cudaSuccess, op, ": CUDA kernel failed: ",                   \
                cudaGetErrorString(eet_err_));                                           \
  } while (0)

namespace eet {
#ifdef EET_CUDA_EMULATION
// Launches are synchronous on the emulator; its default stream is the null stream.
inline cudaStream_t current_stream() { return nullptr; }
struct DeviceGuard {
  explicit DeviceGuard(const c10::Device&) {}
};
// The tensors the CUDA kernels run on: CPU tensors (host memory is the emulated device's).
inline bool on_kernel_device(const at::Tensor& t) { return t.is_cpu(); }
inline bool capturing_cuda_graph() { return false; }
#else
inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream(); }
using DeviceGuard = c10::cuda::CUDAGuard;
inline bool on_kernel_device(const at::Tensor& t) { return t.is_cuda(); }
inline bool capturing_cuda_graph() {
  return c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None;
}
#endif
}  // namespace eet
