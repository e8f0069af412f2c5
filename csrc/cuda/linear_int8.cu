// int8 weights on CUDA: quantize_int8 (w [N, K] -> q int8 [N, K] + fp32 scales [N], one block
// per row, bit-identical to the CPU op for fp32 input), dequantize_int8 (w = q * scales into a
// [N, K] buffer of the activations' dtype, for the prompt GEMM on cuBLAS) and linear_int8, the
// weight-only (W8A16) GEMV/GEMM of decode steps: y[m, n] = act(scales[n] * sum_k x[m, k] q[n, k]
// + bias[n]) for m <= kLinearInt8MaxRows rows, x/bias/y fp32/fp16/bf16, fp32 math. Check:
// tests/cpp/cuda_ops_test.cu and tests/test_int8_ops.py (reference.linear_int8_weight_only).
#include "common.cuh"
#include "eet/ops_cuda.h"

namespace eet {
namespace cuda {
namespace {

using detail::from_float;
using detail::is_aligned16;
using detail::to_float;

// ---------------------------------------------------------------------------------------
// linear_int8: one warp per kColsPerWarp weight rows (output columns), all m rows of x at
// once, so every weight byte is read once per call. Each lane takes 16-byte chunks of the
// weight rows (VEC: K % 16 == 0 and q 16-byte aligned; else one int8 at a time), converts
// them to float in registers and multiplies them into its rows' partial sums; a warp-shuffle
// sum, then scale, bias and activation once per output. x is re-read from L1/L2 per warp.

constexpr int kGemvThreads = 128;  // 4 warps
constexpr int kColsPerWarp = 2;

bool act_known(Act a) {
  return a == Act::kIdentity || a == Act::kRelu || a == Act::kGeluErf || a == Act::kGeluTanh;
}

// act is checked on the host (act_known) before any launch.
__device__ __forceinline__ float activate_rt(Act act, float v) {
  switch (act) {
    case Act::kRelu: return activate<Act::kRelu>(v);
    case Act::kGeluErf: return activate<Act::kGeluErf>(v);
    case Act::kGeluTanh: return activate<Act::kGeluTanh>(v);
    default: return v;
  }
}

// Byte b (0 = lowest address, little endian) of a 32-bit word as a signed int8, by shifts so
// the loaded words stay in registers.
__device__ __forceinline__ float s8_of(int word, int b) {
  return static_cast<float>(static_cast<int>(static_cast<unsigned>(word) << (24 - 8 * b)) >> 24);
}

// 16 consecutive int8 of a weight row as floats; p is 16-byte aligned.
__device__ __forceinline__ void load16_s8(const int8_t* p, float (&w)[16]) {
  const int4 raw = *reinterpret_cast<const int4*>(p);
  const int words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int b = 0; b < 4; ++b) w[4 * i + b] = s8_of(words[i], b);
}

EET_EMU_LAUNCH_BOUNDS(kGemvThreads, linear_int8_kernel)
template <typename T, int MT, bool VEC>
__global__ void __launch_bounds__(kGemvThreads)
    linear_int8_kernel(const T* x,             // [m, k]
                       const int8_t* q,        // [n, k]
                       const float* scales,    // [n]
                       const T* bias,          // [n] or null
                       T* y,                   // [m, n]
                       int m, int64_t n, int64_t k, Act act,
                       bool x_vec) {           // VEC only: x 16-byte aligned
  const int lane = threadIdx.x & 31;
  const int64_t wpb = blockDim.x >> 5;
  // The column loop is warp-uniform: every lane reaches every shuffle below.
  for (int64_t c0 = (blockIdx.x * wpb + (threadIdx.x >> 5)) * kColsPerWarp; c0 < n;
       c0 += static_cast<int64_t>(gridDim.x) * wpb * kColsPerWarp) {
    const int ncols = n - c0 < kColsPerWarp ? static_cast<int>(n - c0) : kColsPerWarp;
    float acc[MT][kColsPerWarp];
#pragma unroll
    for (int r = 0; r < MT; ++r)
#pragma unroll
      for (int j = 0; j < kColsPerWarp; ++j) acc[r][j] = 0.f;
    if (VEC) {
      const int64_t nchunk = k / 16;
      for (int64_t ch = lane; ch < nchunk; ch += 32) {
        const int64_t off = ch * 16;
        float w[kColsPerWarp][16];
#pragma unroll
        for (int j = 0; j < kColsPerWarp; ++j) {
          if (j < ncols) {
            load16_s8(q + (c0 + j) * k + off, w[j]);
          } else {
#pragma unroll
            for (int e = 0; e < 16; ++e) w[j][e] = 0.f;
          }
        }
#pragma unroll
        for (int r = 0; r < MT; ++r) {
          if (r >= m) break;
          float xa[8], xb[8];
          detail::load8(x + r * k + off, x_vec, xa);
          detail::load8(x + r * k + off + 8, x_vec, xb);
#pragma unroll
          for (int j = 0; j < kColsPerWarp; ++j) {
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[r][j] = fmaf(w[j][e], xa[e], acc[r][j]);
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[r][j] = fmaf(w[j][8 + e], xb[e], acc[r][j]);
          }
        }
      }
    } else {
      for (int64_t kk = lane; kk < k; kk += 32) {
        float w[kColsPerWarp];
#pragma unroll
        for (int j = 0; j < kColsPerWarp; ++j)
          w[j] = j < ncols ? static_cast<float>(q[(c0 + j) * k + kk]) : 0.f;
#pragma unroll
        for (int r = 0; r < MT; ++r) {
          if (r >= m) break;
          const float xv = to_float(x[r * k + kk]);
#pragma unroll
          for (int j = 0; j < kColsPerWarp; ++j) acc[r][j] = fmaf(w[j], xv, acc[r][j]);
        }
      }
    }
    // Epilogue: scale once per output (the dot product is over the raw int8 values).
#pragma unroll
    for (int j = 0; j < kColsPerWarp; ++j) {
      if (j >= ncols) break;
      const int64_t col = c0 + j;
      const float s = scales[col];
      const float b = bias != nullptr ? to_float(bias[col]) : 0.f;
#pragma unroll
      for (int r = 0; r < MT; ++r) {
        if (r >= m) break;
        const float v = detail::warp_sum(acc[r][j]);
        if (lane == ((r * kColsPerWarp + j) & 31)) y[r * n + col] = from_float<T>(activate_rt(act, v * s + b));
      }
    }
  }
}

template <typename T, int MT>
cudaError_t run_linear(const T* x, const int8_t* q, const float* scales, const T* bias, Act act, T* y,
                       int m, int64_t n, int64_t k, cudaStream_t stream) {
  constexpr int64_t kColsPerBlock = (kGemvThreads / 32) * kColsPerWarp;
  const unsigned int grid = detail::grid_for(n, kColsPerBlock, 1 << 20);
  if (k % 16 == 0 && is_aligned16(q)) {
    const bool x_vec = is_aligned16(x);
    EET_LAUNCH(grid, kGemvThreads, 0, stream, linear_int8_kernel<T, MT, true>)(
        x, q, scales, bias, y, m, n, k, act, x_vec);
  } else {
    EET_LAUNCH(grid, kGemvThreads, 0, stream, linear_int8_kernel<T, MT, false>)(
        x, q, scales, bias, y, m, n, k, act, false);
  }
  return cudaGetLastError();
}

// ---------------------------------------------------------------------------------------
// dequantize_int8: grid-stride over the [n, k] weight, 8 elements at a time when k % 8 == 0
// (8-byte int8 loads, 16-byte stores) and the pointers allow it.

EET_EMU_LAUNCH_BOUNDS(256, dequantize_int8_kernel)
template <typename T, bool VEC>
__global__ void __launch_bounds__(256)
    dequantize_int8_kernel(const int8_t* q,      // [n, k]
                           const float* scales,  // [n]
                           T* w,                 // [n, k]
                           int64_t n, int64_t k) {
  const int64_t total = n * k;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if (VEC) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total / 8; i += step) {
      const int64_t off = i * 8;
      const float s = scales[off / k];
      const int2 raw = *reinterpret_cast<const int2*>(q + off);
      float v[8];
#pragma unroll
      for (int b = 0; b < 4; ++b) {
        v[b] = s8_of(raw.x, b) * s;
        v[4 + b] = s8_of(raw.y, b) * s;
      }
      detail::store8_vec(w + off, v);
    }
  } else {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total; i += step)
      w[i] = from_float<T>(static_cast<float>(q[i]) * scales[i / k]);
  }
}

// ---------------------------------------------------------------------------------------
// quantize_int8: one block per row. amax = max |w| (exact in any order), s = amax / 127,
// q = rint(clamp(w / s, -127, 127)) (IEEE division and round-half-even, as the CPU kernel and
// torch.round), an all-zero row: s = 0, q = 0. fp16/bf16 weights are converted to fp32 first.

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Max over the block, returned to every thread; red: >= 32 floats of shared memory. The
// leading barrier lets the next row reuse red (as detail::block_sum).
__device__ __forceinline__ float block_max(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nwarps ? red[lane] : 0.f;
  return warp_max(v);
}

EET_EMU_LAUNCH_BOUNDS(256, quantize_int8_kernel)
template <typename T>
__global__ void __launch_bounds__(256)
    quantize_int8_kernel(const T* w,       // [n, k]
                         int64_t n, int64_t k,
                         int8_t* q,        // [n, k]
                         float* scales) {  // [n]
  __shared__ float red[32];
  const int tid = threadIdx.x, nth = blockDim.x;
  // The row loop is block-uniform, so block_max's barriers are reached by every thread.
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const T* row = w + r * k;
    int8_t* qr = q + r * k;
    float amax = 0.f;
    for (int64_t c = tid; c < k; c += nth) amax = fmaxf(amax, fabsf(to_float(row[c])));
    amax = block_max(amax, red);
    const float s = amax / 127.f;
    if (tid == 0) scales[r] = s;
    if (!(s > 0.f)) {
      for (int64_t c = tid; c < k; c += nth) qr[c] = 0;
      continue;
    }
    for (int64_t c = tid; c < k; c += nth)
      qr[c] = static_cast<int8_t>(rintf(fminf(127.f, fmaxf(-127.f, to_float(row[c]) / s))));
  }
}

}  // namespace

cudaError_t linear_int8(DType dt, const void* x, const int8_t* q, const float* scales, const void* bias,
                        Act act, void* y, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  if (m <= 0 || n <= 0 || k <= 0) return cudaSuccess;
  if (m > kLinearInt8MaxRows || x == nullptr || q == nullptr || scales == nullptr || y == nullptr ||
      !act_known(act))
    return cudaErrorInvalidValue;
  const int mi = static_cast<int>(m);
  return detail::dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xt = static_cast<const T*>(x);
    const T* bt = static_cast<const T*>(bias);
    T* yt = static_cast<T*>(y);
    if (mi == 1) return run_linear<T, 1>(xt, q, scales, bt, act, yt, mi, n, k, stream);
    if (mi == 2) return run_linear<T, 2>(xt, q, scales, bt, act, yt, mi, n, k, stream);
    if (mi <= 4) return run_linear<T, 4>(xt, q, scales, bt, act, yt, mi, n, k, stream);
    if (mi <= 8) return run_linear<T, 8>(xt, q, scales, bt, act, yt, mi, n, k, stream);
    return run_linear<T, 16>(xt, q, scales, bt, act, yt, mi, n, k, stream);
  });
}

cudaError_t dequantize_int8(DType dt, const int8_t* q, const float* scales, void* w, int64_t n, int64_t k,
                            cudaStream_t stream) {
  if (n <= 0 || k <= 0) return cudaSuccess;
  if (q == nullptr || scales == nullptr || w == nullptr) return cudaErrorInvalidValue;
  constexpr int kThreads = 256;
  constexpr int64_t kMaxBlocks = 1 << 16;
  return detail::dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* wt = static_cast<T*>(w);
    const bool vec = k % 8 == 0 && (reinterpret_cast<uintptr_t>(q) & 7u) == 0 && is_aligned16(w);
    if (vec) {
      EET_LAUNCH(detail::grid_for(n * k / 8, kThreads, kMaxBlocks), kThreads, 0, stream,
                 dequantize_int8_kernel<T, true>)(q, scales, wt, n, k);
    } else {
      EET_LAUNCH(detail::grid_for(n * k, kThreads, kMaxBlocks), kThreads, 0, stream,
                 dequantize_int8_kernel<T, false>)(q, scales, wt, n, k);
    }
    return cudaGetLastError();
  });
}

cudaError_t quantize_int8(DType dt, const void* w, int64_t n, int64_t k, int8_t* q, float* scales,
                          cudaStream_t stream) {
  if (n <= 0 || k <= 0) return cudaSuccess;
  if (w == nullptr || q == nullptr || scales == nullptr) return cudaErrorInvalidValue;
  int64_t threads = (k + 31) / 32 * 32;
  if (threads > 256) threads = 256;
  const unsigned int grid = detail::grid_for(n, 1, 1 << 16);
  return detail::dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    EET_LAUNCH(grid, static_cast<int>(threads), 0, stream, quantize_int8_kernel<T>)(
        static_cast<const T*>(w), n, k, q, scales);
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace eet
