// Device helpers shared by the CUDA kernels: fp32 <-> float/__half/__nv_bfloat16 conversion,
// 8-element vector loads/stores, warp/block reductions, the dtype switch, and the row-wise
// "sum of up to three vectors, then layernorm" core used by layernorm.cu and embedding.cu.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "eet/ops.h"

// Every kernel launch: EET_LAUNCH(grid, block, smem, stream, kernel)(args...). With nvcc it
// is kernel<<<grid, block, smem, stream>>>(args...); the CPU emulation (csrc/cuda_emu,
// cuda_runtime.h) defines it first and runs the kernel on fibers.
#ifndef EET_EMU_LAUNCH_BOUNDS
// The emulator's copy of a kernel's __launch_bounds__ (csrc/cuda_emu/cuda_emu.h); nothing here.
#define EET_EMU_LAUNCH_BOUNDS(n, name)
#endif
#ifndef EET_LAUNCH
#define EET_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#endif

namespace eet {
namespace cuda {
namespace detail {

// ---------------------------------------------------------------------------------------
// Conversions. All math is fp32; only loads/stores touch the I/O dtype.

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// ---------------------------------------------------------------------------------------
// 8-element chunks. The vector forms need a 16-byte aligned pointer: callers check
// alignment at run time (is_aligned16 / strides_aligned16) and use the scalar form otherwise.

__device__ __forceinline__ void load8_vec(const float* p, float (&v)[8]) {
  const float4 a = *reinterpret_cast<const float4*>(p);
  const float4 b = *reinterpret_cast<const float4*>(p + 4);
  v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
  v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}
__device__ __forceinline__ void load8_vec(const __half* p, float (&v)[8]) {
  const uint4 r = *reinterpret_cast<const uint4*>(p);
  const __half2* h = reinterpret_cast<const __half2*>(&r);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}
__device__ __forceinline__ void load8_vec(const __nv_bfloat16* p, float (&v)[8]) {
  const uint4 r = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&r);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ void store8_vec(float* p, const float (&v)[8]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  *reinterpret_cast<float4*>(p + 4) = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void store8_vec(__half* p, const float (&v)[8]) {
  uint4 r;
  __half2* h = reinterpret_cast<__half2*>(&r);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = r;
}
__device__ __forceinline__ void store8_vec(__nv_bfloat16* p, const float (&v)[8]) {
  uint4 r;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&r);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = r;
}

// vec is block-uniform in every caller, so the branch does not diverge.
template <typename T>
__device__ __forceinline__ void load8(const T* p, bool vec, float (&v)[8]) {
  if (vec) {
    load8_vec(p, v);
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = to_float(p[e]);
  }
}

template <typename T>
__device__ __forceinline__ void store8(T* p, bool vec, const float (&v)[8]) {
  if (vec) {
    store8_vec(p, v);
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) p[e] = from_float<T>(v[e]);
  }
}

inline bool is_aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// True when p and every row start reached through the strides (elements of elem_size bytes)
// stay 16-byte aligned, i.e. 8-element chunks at multiples of 8 can use vector access.
inline bool strides_aligned16(const void* p, int64_t elem_size, int64_t s0, int64_t s1,
                              int64_t s2) {
  return is_aligned16(p) && (s0 * elem_size) % 16 == 0 && (s1 * elem_size) % 16 == 0 &&
         (s2 * elem_size) % 16 == 0;
}

// ---------------------------------------------------------------------------------------
// Reductions. Every lane of the warp must call them (full mask); blockDim.x must be a
// multiple of 32 for block_sum (all launchers guarantee it).

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block, returned to every thread. red: >= 32 floats of shared memory. The
// leading barrier lets back-to-back calls reuse red: nobody overwrites it before all
// threads have read the previous result.
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nwarps ? red[lane] : 0.f;
  return warp_sum(v);
}

// ---------------------------------------------------------------------------------------
// Dtype switch: f(TypeTag<T>{}) for the element type named by dt. Unknown values are an
// error, never a silent fallthrough to some default type.

template <typename T>
struct TypeTag {
  using type = T;
};

template <typename F>
inline cudaError_t dispatch_dtype(DType dt, F&& f) {
  switch (dt) {
    case DType::kFloat32: return f(TypeTag<float>{});
    case DType::kFloat16: return f(TypeTag<__half>{});
    case DType::kBFloat16: return f(TypeTag<__nv_bfloat16>{});
    default: return cudaErrorInvalidValue;
  }
}

// Grid size for grid-stride loops: enough blocks to cover n work items, capped so the
// launch stays legal (the kernels loop over what the grid does not cover).
inline unsigned int grid_for(int64_t n, int64_t per_block, int64_t cap = INT_MAX) {
  int64_t g = (n + per_block - 1) / per_block;
  if (g < 1) g = 1;
  if (g > cap) g = cap;
  return static_cast<unsigned int>(g);
}

// ---------------------------------------------------------------------------------------
// Row-wise normalization core. One row of the pre-norm values is h[c] = a[c] (+ b[c])
// (+ e[c]) (layernorm: x + residual + bias; embedding: word + pos + type), added in that
// order like the CPU twin. Then, if normalize: y = (h - mean) * rstd * gamma + beta with a
// two-pass (mean, then centered sum of squares) fp32 variance; else y = h. h_out gets h.

template <typename T>
struct SumRow {
  const T* a;  // [hidden]
  const T* b;  // [hidden] or null
  const T* e;  // [hidden] or null

  __device__ __forceinline__ float load1(int64_t c) const {
    float v = to_float(a[c]);
    if (b != nullptr) v += to_float(b[c]);
    if (e != nullptr) v += to_float(e[c]);
    return v;
  }
  // c: a multiple of 8; only called on the aligned path.
  __device__ __forceinline__ void load8(int64_t c, float (&v)[8]) const {
    load8_vec(a + c, v);
    float t[8];
    if (b != nullptr) {
      load8_vec(b + c, t);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] += t[i];
    }
    if (e != nullptr) {
      load8_vec(e + c, t);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] += t[i];
    }
  }
};

template <typename T>
struct NormOut {
  T* y;            // [rows, hidden]
  T* h_out;        // [rows, hidden] or null
  const T* gamma;  // [hidden] or null (= 1)
  const T* beta;   // [hidden] or null (= 0)
  bool normalize;
  float eps;
};

// Aligned path: hidden % 8 == 0, every pointer 16-byte aligned. The row lives in registers
// (CPT chunks of 8 per thread), so x is read once even though the variance is two-pass.
// WARP: the row belongs to one warp (tid = lane, nth = 32), no block barriers.
template <int CPT, bool WARP, typename T>
__device__ __forceinline__ void norm_row_vec(const SumRow<T>& row, const NormOut<T>& o,
                                             int64_t r, int64_t hidden, int tid, int nth,
                                             float* red) {
  const int64_t nchunk = hidden / 8;
  float v[CPT][8];
  float sum = 0.f;
#pragma unroll
  for (int k = 0; k < CPT; ++k) {
    const int64_t c = tid + static_cast<int64_t>(k) * nth;
    if (c < nchunk) {
      row.load8(c * 8, v[k]);
#pragma unroll
      for (int i = 0; i < 8; ++i) sum += v[k][i];
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) v[k][i] = 0.f;
    }
  }
  float mean = 0.f, rstd = 1.f;
  if (o.normalize) {
    mean = (WARP ? warp_sum(sum) : block_sum(sum, red)) / static_cast<float>(hidden);
    float sq = 0.f;
#pragma unroll
    for (int k = 0; k < CPT; ++k) {
      const int64_t c = tid + static_cast<int64_t>(k) * nth;
      if (c < nchunk) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const float d = v[k][i] - mean;
          sq += d * d;
        }
      }
    }
    sq = WARP ? warp_sum(sq) : block_sum(sq, red);
    rstd = 1.f / sqrtf(sq / static_cast<float>(hidden) + o.eps);
  }
  const int64_t base = r * hidden;
#pragma unroll
  for (int k = 0; k < CPT; ++k) {
    const int64_t c = tid + static_cast<int64_t>(k) * nth;
    if (c >= nchunk) continue;
    if (o.h_out != nullptr) store8_vec(o.h_out + base + c * 8, v[k]);
    float out[8];
    if (o.normalize) {
      float g[8], bt[8];
      if (o.gamma != nullptr) {
        load8_vec(o.gamma + c * 8, g);
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) g[i] = 1.f;
      }
      if (o.beta != nullptr) {
        load8_vec(o.beta + c * 8, bt);
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) bt[i] = 0.f;
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) out[i] = (v[k][i] - mean) * rstd * g[i] + bt[i];
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) out[i] = v[k][i];
    }
    store8_vec(o.y + base + c * 8, out);
  }
}

// Src::row(r) -> SumRow<T>. 4 warps per block, one row per warp.
EET_EMU_LAUNCH_BOUNDS(128, norm_rows_warp_kernel)
template <typename T, int CPT, typename Src>
__global__ void __launch_bounds__(128)
    norm_rows_warp_kernel(Src src, NormOut<T> o, int64_t rows, int64_t hidden) {
  const int lane = threadIdx.x & 31;
  const int64_t wpb = blockDim.x >> 5;
  for (int64_t r = blockIdx.x * wpb + (threadIdx.x >> 5); r < rows; r += gridDim.x * wpb) {
    norm_row_vec<CPT, true, T>(src.row(r), o, r, hidden, lane, 32, nullptr);
  }
}

// One row per block; the loop bound is block-uniform, so block_sum's barriers are safe.
EET_EMU_LAUNCH_BOUNDS(512, norm_rows_block_kernel)
template <typename T, int CPT, typename Src>
__global__ void __launch_bounds__(512)
    norm_rows_block_kernel(Src src, NormOut<T> o, int64_t rows, int64_t hidden) {
  __shared__ float red[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    norm_row_vec<CPT, false, T>(src.row(r), o, r, hidden, threadIdx.x, blockDim.x, red);
  }
}

// Any hidden, any alignment: three passes re-reading the row from global memory (mean,
// centered variance, output). Each column is owned by one thread in every pass and the
// passes are separated by block_sum's barriers, so y or h_out may alias x or residual.
EET_EMU_LAUNCH_BOUNDS(256, norm_rows_generic_kernel)
template <typename T, typename Src>
__global__ void __launch_bounds__(256)
    norm_rows_generic_kernel(Src src, NormOut<T> o, int64_t rows, int64_t hidden) {
  __shared__ float red[32];
  const int tid = threadIdx.x, nth = blockDim.x;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const SumRow<T> row = src.row(r);
    float mean = 0.f, rstd = 1.f;
    if (o.normalize) {
      float sum = 0.f;
      for (int64_t c = tid; c < hidden; c += nth) sum += row.load1(c);
      mean = block_sum(sum, red) / static_cast<float>(hidden);
      float sq = 0.f;
      for (int64_t c = tid; c < hidden; c += nth) {
        const float d = row.load1(c) - mean;
        sq += d * d;
      }
      sq = block_sum(sq, red);
      rstd = 1.f / sqrtf(sq / static_cast<float>(hidden) + o.eps);
    }
    const int64_t base = r * hidden;
    for (int64_t c = tid; c < hidden; c += nth) {
      const float h = row.load1(c);
      if (o.h_out != nullptr) o.h_out[base + c] = from_float<T>(h);
      float out = h;
      if (o.normalize) {
        const float g = o.gamma != nullptr ? to_float(o.gamma[c]) : 1.f;
        const float bt = o.beta != nullptr ? to_float(o.beta[c]) : 0.f;
        out = (h - mean) * rstd * g + bt;
      }
      o.y[base + c] = from_float<T>(out);
    }
    // Without normalize there is no barrier in the loop body; none is needed either, since
    // no shared memory is used then.
  }
}

// vec: the caller checked hidden % 8 == 0 and 16-byte alignment of every pointer involved.
template <typename T, typename Src>
inline cudaError_t launch_norm_rows(const Src& src, const NormOut<T>& o, int64_t rows,
                                    int64_t hidden, bool vec, cudaStream_t stream) {
  if (rows <= 0 || hidden <= 0) return cudaSuccess;
  const int64_t nchunk = hidden / 8;
  if (vec && nchunk <= 128) {
    // One warp per row: no block barriers, 4 rows per 128-thread block.
    const unsigned int grid = grid_for(rows, 4);
    if (nchunk <= 32) {
      EET_LAUNCH(grid, 128, 0, stream, norm_rows_warp_kernel<T, 1>)(src, o, rows, hidden);
    } else if (nchunk <= 64) {
      EET_LAUNCH(grid, 128, 0, stream, norm_rows_warp_kernel<T, 2>)(src, o, rows, hidden);
    } else if (nchunk <= 96) {
      EET_LAUNCH(grid, 128, 0, stream, norm_rows_warp_kernel<T, 3>)(src, o, rows, hidden);
    } else {
      EET_LAUNCH(grid, 128, 0, stream, norm_rows_warp_kernel<T, 4>)(src, o, rows, hidden);
    }
  } else if (vec && nchunk <= 4096) {
    // Block per row, at most 512 threads, CPT chunks of 8 per thread held in registers.
    const int cpt = nchunk <= 512 ? 1 : nchunk <= 1024 ? 2 : nchunk <= 2048 ? 4 : 8;
    const int64_t used = (nchunk + cpt - 1) / cpt;
    const int threads = static_cast<int>((used + 31) / 32 * 32);
    const unsigned int grid = grid_for(rows, 1);
    switch (cpt) {
      case 1: EET_LAUNCH(grid, threads, 0, stream, norm_rows_block_kernel<T, 1>)(src, o, rows, hidden); break;
      case 2: EET_LAUNCH(grid, threads, 0, stream, norm_rows_block_kernel<T, 2>)(src, o, rows, hidden); break;
      case 4: EET_LAUNCH(grid, threads, 0, stream, norm_rows_block_kernel<T, 4>)(src, o, rows, hidden); break;
      default: EET_LAUNCH(grid, threads, 0, stream, norm_rows_block_kernel<T, 8>)(src, o, rows, hidden); break;
    }
  } else {
    int64_t threads = (hidden + 31) / 32 * 32;
    if (threads > 256) threads = 256;
    EET_LAUNCH(grid_for(rows, 1), static_cast<int>(threads), 0, stream, norm_rows_generic_kernel<T>)(
        src, o, rows, hidden);
  }
  return cudaGetLastError();
}

}  // namespace detail
}  // namespace cuda
}  // namespace eet
