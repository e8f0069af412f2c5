// Shared pieces of the torch bindings: the CUDA stream/guard and launch checking. Only this
// header knows whether the build has CUDA kernels (WITH_CUDA).
#pragma once

#include <torch/extension.h>

#include "common/checks.h"
#include "common/dispatch.h"
#include "eet/ops.h"

#ifdef WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>

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
#endif

namespace eet {

inline bool built_with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

template <typename T = void>
inline T* ptr_or_null(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? static_cast<T*>(t->data_ptr()) : nullptr;
}

// Optional int index tensor ([B]) as a contiguous int32 tensor on `ref`'s device.
inline c10::optional<at::Tensor> as_int32(const c10::optional<at::Tensor>& t, const char* name,
                                          const at::Tensor& ref, const char* ref_name,
                                          int64_t batch) {
  if (!t.has_value()) return c10::nullopt;
  check_index(*t, name);
  check_device(*t, name, ref, ref_name);
  check_shape(*t, name, {batch}, "[B]");
  return t->to(at::kInt).contiguous();
}

}  // namespace eet
