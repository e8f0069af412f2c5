// kv_cache_write (CUDA): k_cache[b, h, pos_b + s, :] = k[b, s, h, :] (same for v), skipping
// destinations outside [0, max_seq). Bit-exact copies of 2- or 4-byte elements (fp32/fp16/
// bf16), moved 16 bytes at a time when every address and stride allows it. Any head_dim.
#include "common.cuh"
#include "eet/ops_cuda.h"

namespace eet {
namespace cuda {
namespace {

// Everything below is in units of U (the copy word), not in elements.
struct Geometry {
  int64_t k_sb, k_ss, k_sh, v_sb, v_ss, v_sh;  // source strides
  int64_t cache_sb;                            // cache row stride
  int64_t du;                                  // head_dim in units
  int batch, seq, heads, max_seq;
};

EET_EMU_LAUNCH_BOUNDS(256, kv_write_kernel)
template <typename U>
__global__ void __launch_bounds__(256)
    kv_write_kernel(const U* k,                 // [B, S, H, D] strided
                    const U* v,                 // [B, S, H, D] strided
                    U* k_cache,                 // [Bc, H, max_seq, D]
                    U* v_cache,                 // [Bc, H, max_seq, D]
                    const int32_t* positions,   // [B] or null
                    Geometry g) {
  const int64_t total = static_cast<int64_t>(g.batch) * g.seq * g.heads * g.du;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = idx % g.du;
    int64_t t = idx / g.du;
    const int64_t h = t % g.heads;
    t /= g.heads;
    const int64_t s = t % g.seq;
    const int64_t b = t / g.seq;
    const int64_t dst = (positions != nullptr ? static_cast<int64_t>(positions[b]) : 0) + s;
    if (dst < 0 || dst >= g.max_seq) continue;
    const int64_t off = b * g.cache_sb + (h * g.max_seq + dst) * g.du + d;
    k_cache[off] = k[b * g.k_sb + s * g.k_ss + h * g.k_sh + d];
    v_cache[off] = v[b * g.v_sb + s * g.v_ss + h * g.v_sh + d];
  }
}

template <typename U>
cudaError_t launch(const CacheWriteParams& p, int64_t elem_size, cudaStream_t stream) {
  const int64_t r = static_cast<int64_t>(sizeof(U)) / elem_size;  // elements per unit
  const Geometry g{p.k_stride_b / r, p.k_stride_s / r, p.k_stride_h / r,
                   p.v_stride_b / r, p.v_stride_s / r, p.v_stride_h / r,
                   p.cache_stride_b / r, p.head_dim / r,
                   p.batch, p.seq, p.heads, p.max_seq};
  const int64_t total = static_cast<int64_t>(p.batch) * p.seq * p.heads * g.du;
  constexpr int kThreads = 256;
  EET_LAUNCH(detail::grid_for(total, kThreads, 1 << 16), kThreads, 0, stream, kv_write_kernel<U>)(
      static_cast<const U*>(p.k), static_cast<const U*>(p.v), static_cast<U*>(p.k_cache),
      static_cast<U*>(p.v_cache), p.positions, g);
  return cudaGetLastError();
}

}  // namespace

cudaError_t kv_cache_write(DType dt, const CacheWriteParams& p, cudaStream_t stream) {
  if (p.batch <= 0 || p.seq <= 0 || p.heads <= 0 || p.head_dim <= 0 || p.max_seq <= 0)
    return cudaSuccess;
  if (p.k == nullptr || p.v == nullptr || p.k_cache == nullptr || p.v_cache == nullptr)
    return cudaErrorInvalidValue;
  int64_t es = 0;
  switch (dt) {
    case DType::kFloat32: es = 4; break;
    case DType::kFloat16:
    case DType::kBFloat16: es = 2; break;
    default: return cudaErrorInvalidValue;
  }
  // 16-byte words need every base, every stride and the head row itself to be multiples of
  // 16 bytes; the cache's inner strides (max_seq * D, D) then are too.
  const bool vec = (p.head_dim * es) % 16 == 0 &&
                   detail::strides_aligned16(p.k, es, p.k_stride_b, p.k_stride_s, p.k_stride_h) &&
                   detail::strides_aligned16(p.v, es, p.v_stride_b, p.v_stride_s, p.v_stride_h) &&
                   detail::strides_aligned16(p.k_cache, es, p.cache_stride_b, 0, 0) &&
                   detail::strides_aligned16(p.v_cache, es, p.cache_stride_b, 0, 0);
  if (vec) return launch<uint4>(p, es, stream);
  return es == 4 ? launch<uint32_t>(p, es, stream) : launch<uint16_t>(p, es, stream);
}

}  // namespace cuda
}  // namespace eet
