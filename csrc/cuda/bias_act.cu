// bias_act (CUDA, in place): x[n, c] = act(x[n, c] + bias[c]) + residual[n, c], bias and
// residual optional; act: identity, relu, gelu (erf), gelu_new (tanh), the formulas of
// eet/activations.h (shared with the CPU twin) with CUDA's erff/tanhf. fp32/fp16/bf16, fp32
// math. Grid-stride; 8-element vectors when cols % 8 == 0 and aligned.
#include "common.cuh"
#include "eet/ops_cuda.h"

namespace eet {
namespace cuda {
namespace {

using detail::from_float;
using detail::is_aligned16;
using detail::to_float;

EET_EMU_LAUNCH_BOUNDS(256, bias_act_vec_kernel)
template <typename T, Act A>
__global__ void __launch_bounds__(256)
    bias_act_vec_kernel(T* x,                // [rows, cols], cols % 8 == 0
                        const T* bias,       // [cols] or null
                        const T* residual,   // [rows, cols] or null
                        int64_t nchunk, int64_t cols) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < nchunk;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t off = i * 8;
    float v[8], t[8];
    detail::load8_vec(x + off, v);
    if (bias != nullptr) {
      detail::load8_vec(bias + off % cols, t);
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] += t[e];
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = activate<A>(v[e]);
    if (residual != nullptr) {
      detail::load8_vec(residual + off, t);
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] += t[e];
    }
    detail::store8_vec(x + off, v);
  }
}

EET_EMU_LAUNCH_BOUNDS(256, bias_act_scalar_kernel)
template <typename T, Act A>
__global__ void __launch_bounds__(256)
    bias_act_scalar_kernel(T* x,               // [rows, cols]
                           const T* bias,      // [cols] or null
                           const T* residual,  // [rows, cols] or null
                           int64_t n, int64_t cols) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = to_float(x[i]);
    if (bias != nullptr) v += to_float(bias[i % cols]);
    v = activate<A>(v);
    if (residual != nullptr) v += to_float(residual[i]);
    x[i] = from_float<T>(v);
  }
}

template <typename T, Act A>
cudaError_t run(T* x, const T* bias, const T* residual, int64_t rows, int64_t cols,
                cudaStream_t stream) {
  constexpr int kThreads = 256;
  // Enough blocks to fill any GPU several times over; the loops cover the rest.
  constexpr int64_t kMaxBlocks = 1 << 16;
  const int64_t n = rows * cols;
  const bool vec = cols % 8 == 0 && is_aligned16(x) && is_aligned16(bias) &&
                   is_aligned16(residual);
  if (vec) {
    const int64_t nchunk = n / 8;
    EET_LAUNCH(detail::grid_for(nchunk, kThreads, kMaxBlocks), kThreads, 0, stream,
               bias_act_vec_kernel<T, A>)(x, bias, residual, nchunk, cols);
  } else {
    EET_LAUNCH(detail::grid_for(n, kThreads, kMaxBlocks), kThreads, 0, stream,
               bias_act_scalar_kernel<T, A>)(x, bias, residual, n, cols);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t run_act(void* x, const void* bias, const void* residual, Act act, int64_t rows,
                    int64_t cols, cudaStream_t stream) {
  T* xt = static_cast<T*>(x);
  const T* b = static_cast<const T*>(bias);
  const T* r = static_cast<const T*>(residual);
  switch (act) {
    case Act::kIdentity: return run<T, Act::kIdentity>(xt, b, r, rows, cols, stream);
    case Act::kRelu: return run<T, Act::kRelu>(xt, b, r, rows, cols, stream);
    case Act::kGeluErf: return run<T, Act::kGeluErf>(xt, b, r, rows, cols, stream);
    case Act::kGeluTanh: return run<T, Act::kGeluTanh>(xt, b, r, rows, cols, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t bias_act(DType dt, void* x, const void* bias, const void* residual, Act act,
                     int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  if (x == nullptr) return cudaErrorInvalidValue;
  return detail::dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return run_act<T>(x, bias, residual, act, rows, cols, stream);
  });
}

}  // namespace cuda
}  // namespace eet
