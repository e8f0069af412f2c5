// What the glue of the three attention ops shares (attention.cpp, masked_attention.cpp,
// cross_attention.cpp): the head-dim and scale arguments, the KV-cache check, and the calls
// of the one strided attention kernel and of the cache write on each device.
// KV cache layout: [Bmax, H, Smax, D] per layer (keys of one head contiguous, so a decode
// step streams them; positions are shared by left-padded rows, so a step has static shapes).
#pragma once

#include <torch/extension.h>

#include <cmath>

#include "checks.h"
#include "eet/ops.h"
#ifdef WITH_CUDA
#include "cuda_launch.h"
#include "enums.h"
#endif

namespace eet {

inline int64_t head_dim_of(int64_t width, int64_t num_heads, const char* name, const char* spec) {
  TORCH_CHECK_VALUE(num_heads > 0, "num_heads must be > 0, got ", num_heads);
  TORCH_CHECK_VALUE(width % num_heads == 0 && width > 0, name, " last dim (", width,
                    ") must be ", spec, " with num_heads = ", num_heads);
  return width / num_heads;
}

inline float scale_or_default(const c10::optional<double>& scale, int64_t D) {
  return scale.has_value() ? static_cast<float>(*scale)
                           : static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
}

inline void check_cache(const at::Tensor& c, const char* name, const at::Tensor& ref, int64_t B,
                        int64_t H, int64_t D) {
  check_like(c, name, ref, "qkv");
  check_rank(c, name, 4, "[Bmax, H, Smax, D]");
  TORCH_CHECK_VALUE(c.size(0) >= B && c.size(1) == H && c.size(3) == D, name,
                    " must be [Bmax >= ", B, ", H = ", H, ", Smax, D = ", D, "], got ",
                    shape_str(c));
  check_contiguous(c, name);
}

// The kernels of one device, called with `ref` (a checked input) naming the device and dtype.
struct AttentionKernels {
  void (*attention)(const at::Tensor& ref, const AttnParams& p, const char* op);
  void (*cache_write)(const at::Tensor& ref, const CacheWriteParams& p, const char* op);
  bool host_memory;  // the tensors can be read on the host without a sync (CPU)
};

inline void attention_cpu_kernel(const at::Tensor&, const AttnParams& p, const char*) {
  cpu::attention(p);
}
inline void cache_write_cpu_kernel(const at::Tensor&, const CacheWriteParams& p, const char*) {
  cpu::kv_cache_write(p);
}
inline constexpr AttentionKernels kCpuAttention = {&attention_cpu_kernel, &cache_write_cpu_kernel,
                                                   true};

#ifdef WITH_CUDA
inline void attention_cuda_kernel(const at::Tensor& ref, const AttnParams& p, const char* op) {
  TORCH_CHECK(on_kernel_device(ref), op, ": the CUDA implementation got tensors on ", ref.device());
  const DeviceGuard guard(ref.device());
  EET_CHECK_LAUNCH(cuda::attention(to_dtype(ref), p, current_stream()), op);
}
inline void cache_write_cuda_kernel(const at::Tensor& ref, const CacheWriteParams& p,
                                    const char* op) {
  TORCH_CHECK(on_kernel_device(ref), op, ": the CUDA implementation got tensors on ", ref.device());
  const DeviceGuard guard(ref.device());
  EET_CHECK_LAUNCH(cuda::kv_cache_write(to_dtype(ref), p, current_stream()), op);
}
inline constexpr AttentionKernels kCudaAttention = {&attention_cuda_kernel,
                                                    &cache_write_cuda_kernel, false};
#endif

}  // namespace eet
