// attention (CUDA): out = softmax(scale * q k^T) v over strided Q/K/V with per-row key ranges
// and optional causal masking (AttnParams in ops.h). fp32/fp16/bf16 I/O, fp32 math, online
// softmax; no limit on q_len/k_len. head_dim % 8 == 0 && <= 256: decode kernel (q_len <= 4)
// or tiled prompt kernel; any other head_dim: a generic kernel (head_dim <= ~6000).
#include <cmath>

#include "common.cuh"
#include "eet/ops_cuda.h"

namespace eet {
namespace cuda {
namespace {

using detail::from_float;
using detail::load8;
using detail::to_float;

// Scores are kept in the log2 domain (q pre-scaled by scale * log2(e)) so exp2f does the
// softmax exponentials.
constexpr float kLog2e = 1.4426950408889634f;
constexpr unsigned kFull = 0xffffffffu;
constexpr int kDecodeMaxQ = 4;

// Visible keys of row b before the causal limit, clamped to [0, k_len] like the CPU twin.
__device__ __forceinline__ void key_range(const AttnParams& p, int64_t b, int64_t& ks,
                                          int64_t& ke) {
  ks = p.key_start != nullptr ? static_cast<int64_t>(p.key_start[b]) : 0;
  ke = (p.key_end != nullptr ? static_cast<int64_t>(p.key_end[b]) : p.k_len) + p.key_end_add;
  if (p.past_end_empty && ke > p.k_len) ke = 0;
  ks = ks < 0 ? 0 : (ks > p.k_len ? p.k_len : ks);
  ke = ke < 0 ? 0 : (ke > p.k_len ? p.k_len : ke);
}

// One past the last key query i may see.
__device__ __forceinline__ int64_t query_end(const AttnParams& p, int64_t i, int64_t ke) {
  if (!p.causal) return ke;
  const int64_t c = i + p.causal_offset + 1;
  return c < ke ? c : ke;
}

// Merges per-group partial softmax states (m: running max in log2 units, l: sum of
// exponentials, acc: unnormalized output) held in shared memory and writes the row.
// Groups that saw no key have m = -inf and contribute nothing.
template <typename T>
__device__ __forceinline__ void combine_and_store(const float* sm_m,    // [ng]
                                                  const float* sm_l,    // [ng]
                                                  const float* sm_acc,  // [ng, D]
                                                  int ng, int D, T* o /* [D] */) {
  float M = -INFINITY;
  for (int gi = 0; gi < ng; ++gi) M = fmaxf(M, sm_m[gi]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.f, L = 0.f;
    for (int gi = 0; gi < ng; ++gi) {
      const float m = sm_m[gi];
      if (m == -INFINITY) continue;
      const float w = exp2f(m - M);
      acc += w * sm_acc[gi * D + d];
      L += w * sm_l[gi];
    }
    o[d] = from_float<T>(L > 0.f ? acc / L : 0.f);
  }
}

// ---------------------------------------------------------------------------------------
// Decode: one block per (b, h, query). A group of G lanes (G = next pow2 >= D/8) owns one key
// at a time, each lane an 8-element chunk of the head dim; the block's NG = warps * 32/G
// groups stride over the key range, U keys per group per step so 2U loads are in flight per
// lane. Each group runs its own online softmax; the groups are merged at the end.
// Dynamic shared memory: NG * (D + 2) floats.
EET_EMU_LAUNCH_BOUNDS(512, attn_decode_kernel)
template <typename T, int G, int U>
__global__ void __launch_bounds__(512) attn_decode_kernel(AttnParams p, bool vec) {
  extern __shared__ float smem[];
  const int D = p.head_dim;
  const int nw = blockDim.x >> 5;
  constexpr int KPW = 32 / G;  // keys per warp per step
  const int NG = nw * KPW;
  float* sm_m = smem;
  float* sm_l = smem + NG;
  float* sm_acc = smem + 2 * NG;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane & (G - 1);
  const int gid = warp * KPW + lane / G;
  const bool active = g < D / 8;  // lanes past the head dim only join the shuffles

  const int64_t b = blockIdx.x / p.heads, h = blockIdx.x % p.heads;
  int64_t ks, ke;
  key_range(p, b, ks, ke);
  const T* kbase = static_cast<const T*>(p.k) + b * p.k_stride_b + h * p.k_stride_h + 8 * g;
  const T* vbase = static_cast<const T*>(p.v) + b * p.v_stride_b + h * p.v_stride_h + 8 * g;
  const float qscale = p.scale * kLog2e;

  for (int64_t i = blockIdx.y; i < p.q_len; i += gridDim.y) {
    T* o = static_cast<T*>(p.out) + b * p.o_stride_b + i * p.o_stride_s + h * p.o_stride_h;
    const int64_t hi = query_end(p, i, ke);
    if (hi <= ks) {  // block-uniform: no visible key
      for (int d = threadIdx.x; d < D; d += blockDim.x) o[d] = from_float<T>(0.f);
      continue;
    }
    // The previous query's combine may still be reading shared memory.
    __syncthreads();

    float q[8];
    if (active) {
      load8(static_cast<const T*>(p.q) + b * p.q_stride_b + i * p.q_stride_s +
                h * p.q_stride_h + 8 * g,
            vec, q);
#pragma unroll
      for (int e = 0; e < 8; ++e) q[e] *= qscale;
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) q[e] = 0.f;
    }
    float m = -INFINITY, l = 0.f, acc[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = 0.f;

    const int64_t step = static_cast<int64_t>(NG) * U;
    // The bound depends on the warp only, so every lane of a warp runs the same iterations
    // and the full-mask shuffles below are legal.
    for (int64_t base = ks; base + warp * KPW < hi; base += step) {
      float kf[U][8], vf[U][8], s[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int64_t j = base + static_cast<int64_t>(u) * NG + gid;
        if (active && j < hi) {
          load8(kbase + j * p.k_stride_s, vec, kf[u]);
          load8(vbase + j * p.v_stride_s, vec, vf[u]);
        } else {
#pragma unroll
          for (int e = 0; e < 8; ++e) kf[u][e] = vf[u][e] = 0.f;
        }
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        float a = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) a = fmaf(q[e], kf[u][e], a);
#pragma unroll
        for (int off = G / 2; off > 0; off >>= 1) a += __shfl_xor_sync(kFull, a, off);
        const int64_t j = base + static_cast<int64_t>(u) * NG + gid;
        s[u] = j < hi ? a : -INFINITY;
      }
      float mt = s[0];
#pragma unroll
      for (int u = 1; u < U; ++u) mt = fmaxf(mt, s[u]);
      const float mnew = fmaxf(m, mt);
      if (mnew != -INFINITY) {  // uniform within the group; no shuffles inside
        const float corr = exp2f(m - mnew);
        l *= corr;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] *= corr;
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const float pu = exp2f(s[u] - mnew);
          l += pu;
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[e] = fmaf(pu, vf[u][e], acc[e]);
        }
        m = mnew;
      }
    }

    if (g == 0) {
      sm_m[gid] = m;
      sm_l[gid] = l;
    }
    if (active) {
#pragma unroll
      for (int e = 0; e < 8; ++e) sm_acc[gid * D + 8 * g + e] = acc[e];
    }
    __syncthreads();
    combine_and_store<T>(sm_m, sm_l, sm_acc, NG, D, o);
  }
}

// ---------------------------------------------------------------------------------------
// Prompt: a block of 128 threads owns BQ = 128/G queries of one (b, h); G lanes per query,
// lane g holding float4 chunks g, g+G, ... (NC of them) of q and of the output accumulator.
// Key tiles of BK rows are staged in shared memory as fp32, rows padded to DP = 4*NC*G
// floats with zeros; the interleaved chunk ownership makes the float4 reads conflict-free
// (the G lanes of a query read G consecutive float4, the other groups the same addresses).
EET_EMU_LAUNCH_BOUNDS(128, attn_tiled_kernel)
template <typename T, int G, int NC, int BK>
__global__ void __launch_bounds__(128) attn_tiled_kernel(AttnParams p, bool vec) {
  constexpr int NT = 128;
  constexpr int BQ = NT / G;
  constexpr int DP = 4 * NC * G;
  constexpr int DP4 = DP / 4;
  __shared__ float4 Ks[BK * DP4];  // [BK, DP]
  __shared__ float4 Vs[BK * DP4];  // [BK, DP]

  const int D = p.head_dim;  // % 8 == 0, <= DP
  const int tid = threadIdx.x;
  const int g = tid & (G - 1);
  const int ql = tid / G;
  const int64_t b = blockIdx.x / p.heads, h = blockIdx.x % p.heads;
  int64_t ks, ke;
  key_range(p, b, ks, ke);
  const T* kbh = static_cast<const T*>(p.k) + b * p.k_stride_b + h * p.k_stride_h;
  const T* vbh = static_cast<const T*>(p.v) + b * p.v_stride_b + h * p.v_stride_h;
  const float qscale = p.scale * kLog2e;

  // Padding columns [D, DP) are never staged; zero them once so they add exact zeros (stale
  // shared memory could hold NaNs). The barrier after the first staging orders this.
  if (DP > D) {
    float* kf = reinterpret_cast<float*>(Ks);
    float* vf = reinterpret_cast<float*>(Vs);
    const int pad = DP - D;
    for (int idx = tid; idx < BK * pad; idx += NT) {
      const int r = idx / pad, c = D + idx % pad;
      kf[r * DP + c] = 0.f;
      vf[r * DP + c] = 0.f;
    }
  }

  const int64_t n_qtiles = (static_cast<int64_t>(p.q_len) + BQ - 1) / BQ;
  for (int64_t qt = blockIdx.y; qt < n_qtiles; qt += gridDim.y) {
    const int64_t i0 = qt * BQ;
    const int64_t i = i0 + ql;
    const bool qvalid = i < p.q_len;
    const int64_t hi = qvalid ? query_end(p, i, ke) : ks;
    // Key end of the whole tile: query_end grows with i, so the last query bounds it.
    const int64_t i_last = (i0 + BQ < p.q_len ? i0 + BQ : p.q_len) - 1;
    const int64_t hi_blk = query_end(p, i_last, ke);

    float4 q[NC], acc[NC];
    const T* qrow = static_cast<const T*>(p.q) + b * p.q_stride_b + i * p.q_stride_s +
                    h * p.q_stride_h;
#pragma unroll
    for (int t = 0; t < NC; ++t) {
      const int d = 4 * (g + G * t);
      float v[4];
#pragma unroll
      for (int e = 0; e < 4; ++e)
        v[e] = (qvalid && d + e < D) ? to_float(qrow[d + e]) * qscale : 0.f;
      q[t] = make_float4(v[0], v[1], v[2], v[3]);
      acc[t] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
    float m = -INFINITY, l = 0.f;

    const int c8n = D / 8;  // 8-element chunks per staged row
    for (int64_t k0 = ks; k0 < hi_blk; k0 += BK) {
      __syncthreads();  // everyone is done reading the previous tile
      for (int idx = tid; idx < BK * c8n; idx += NT) {
        const int r = idx / c8n, c8 = idx % c8n;
        const int64_t j = k0 + r;
        float kv[8], vv[8];
        if (j < hi_blk) {
          load8(kbh + j * p.k_stride_s + 8 * c8, vec, kv);
          load8(vbh + j * p.v_stride_s + 8 * c8, vec, vv);
        } else {  // rows past the range: zeros, so p = 0 never meets a stale NaN
#pragma unroll
          for (int e = 0; e < 8; ++e) kv[e] = vv[e] = 0.f;
        }
        Ks[r * DP4 + 2 * c8] = make_float4(kv[0], kv[1], kv[2], kv[3]);
        Ks[r * DP4 + 2 * c8 + 1] = make_float4(kv[4], kv[5], kv[6], kv[7]);
        Vs[r * DP4 + 2 * c8] = make_float4(vv[0], vv[1], vv[2], vv[3]);
        Vs[r * DP4 + 2 * c8 + 1] = make_float4(vv[4], vv[5], vv[6], vv[7]);
      }
      __syncthreads();  // the tile is staged

      float s[BK];
#pragma unroll
      for (int jj = 0; jj < BK; ++jj) {
        float a = 0.f;
#pragma unroll
        for (int t = 0; t < NC; ++t) {
          const float4 kk = Ks[jj * DP4 + g + G * t];
          a = fmaf(q[t].x, kk.x, a);
          a = fmaf(q[t].y, kk.y, a);
          a = fmaf(q[t].z, kk.z, a);
          a = fmaf(q[t].w, kk.w, a);
        }
        s[jj] = a;
      }
#pragma unroll
      for (int jj = 0; jj < BK; ++jj) {
#pragma unroll
        for (int off = G / 2; off > 0; off >>= 1) s[jj] += __shfl_xor_sync(kFull, s[jj], off);
      }
      float mt = -INFINITY;
#pragma unroll
      for (int jj = 0; jj < BK; ++jj) {
        if (k0 + jj >= hi) s[jj] = -INFINITY;
        mt = fmaxf(mt, s[jj]);
      }
      const float mnew = fmaxf(m, mt);
      if (mnew != -INFINITY) {  // uniform within the query's group; no shuffles inside
        const float corr = exp2f(m - mnew);
        l *= corr;
#pragma unroll
        for (int t = 0; t < NC; ++t) {
          acc[t].x *= corr;
          acc[t].y *= corr;
          acc[t].z *= corr;
          acc[t].w *= corr;
        }
#pragma unroll
        for (int jj = 0; jj < BK; ++jj) {
          const float pj = exp2f(s[jj] - mnew);
          l += pj;
#pragma unroll
          for (int t = 0; t < NC; ++t) {
            const float4 vv = Vs[jj * DP4 + g + G * t];
            acc[t].x = fmaf(pj, vv.x, acc[t].x);
            acc[t].y = fmaf(pj, vv.y, acc[t].y);
            acc[t].z = fmaf(pj, vv.z, acc[t].z);
            acc[t].w = fmaf(pj, vv.w, acc[t].w);
          }
        }
        m = mnew;
      }
    }

    if (qvalid) {
      T* orow = static_cast<T*>(p.out) + b * p.o_stride_b + i * p.o_stride_s +
                h * p.o_stride_h;
      const float inv = l > 0.f ? 1.f / l : 0.f;  // l == 0: no visible key, zeros
#pragma unroll
      for (int t = 0; t < NC; ++t) {
        const int d = 4 * (g + G * t);
        const float v[4] = {acc[t].x * inv, acc[t].y * inv, acc[t].z * inv, acc[t].w * inv};
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (d + e < D) orow[d + e] = from_float<T>(v[e]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Generic (any head_dim): one block per (b, h, query), each warp an online softmax over keys
// ks + warp, ks + warp + nw, ...; lanes split the head dim (d = lane + 32t) for the dot
// product and own those dims of the warp's accumulator in shared memory.
// Dynamic shared memory: D (scaled q) + nw * D (accumulators) + 2 * nw floats.
EET_EMU_LAUNCH_BOUNDS(256, attn_generic_kernel)
template <typename T>
__global__ void __launch_bounds__(256) attn_generic_kernel(AttnParams p) {
  extern __shared__ float smem[];
  const int D = p.head_dim;
  const int nw = blockDim.x >> 5;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* sq = smem;                  // [D]
  float* sm_acc = smem + D;          // [nw, D]
  float* sm_m = sm_acc + nw * D;     // [nw]
  float* sm_l = sm_m + nw;           // [nw]
  float* my_acc = sm_acc + warp * D;

  const int64_t b = blockIdx.x / p.heads, h = blockIdx.x % p.heads;
  int64_t ks, ke;
  key_range(p, b, ks, ke);
  const T* kbh = static_cast<const T*>(p.k) + b * p.k_stride_b + h * p.k_stride_h;
  const T* vbh = static_cast<const T*>(p.v) + b * p.v_stride_b + h * p.v_stride_h;
  const float qscale = p.scale * kLog2e;

  for (int64_t i = blockIdx.y; i < p.q_len; i += gridDim.y) {
    T* o = static_cast<T*>(p.out) + b * p.o_stride_b + i * p.o_stride_s + h * p.o_stride_h;
    const int64_t hi = query_end(p, i, ke);
    if (hi <= ks) {  // block-uniform
      for (int d = threadIdx.x; d < D; d += blockDim.x) o[d] = from_float<T>(0.f);
      continue;
    }
    __syncthreads();  // the previous query's combine may still read shared memory
    const T* qrow = static_cast<const T*>(p.q) + b * p.q_stride_b + i * p.q_stride_s +
                    h * p.q_stride_h;
    for (int d = threadIdx.x; d < D; d += blockDim.x) sq[d] = to_float(qrow[d]) * qscale;
    for (int d = lane; d < D; d += 32) my_acc[d] = 0.f;
    __syncthreads();  // sq is complete

    float m = -INFINITY, l = 0.f;
    for (int64_t j = ks + warp; j < hi; j += nw) {  // warp-uniform bound
      const T* kj = kbh + j * p.k_stride_s;
      const T* vj = vbh + j * p.v_stride_s;
      float a = 0.f;
      for (int d = lane; d < D; d += 32) a = fmaf(sq[d], to_float(kj[d]), a);
      const float s = detail::warp_sum(a);  // identical in every lane
      const float mnew = fmaxf(m, s);
      const float corr = exp2f(m - mnew);
      const float pj = exp2f(s - mnew);
      l = l * corr + pj;
      // Each lane touches only its own dims of the warp's accumulator: no races.
      for (int d = lane; d < D; d += 32) my_acc[d] = fmaf(pj, to_float(vj[d]), my_acc[d] * corr);
      m = mnew;
    }
    if (lane == 0) {
      sm_m[warp] = m;
      sm_l[warp] = l;
    }
    __syncthreads();
    combine_and_store<T>(sm_m, sm_l, sm_acc, nw, D, o);
  }
}

// ---------------------------------------------------------------------------------------
// Host side.

int sm_count() {
  int dev = 0, n = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) {
    cudaGetLastError();  // a failed query only costs the heuristic; do not report it
    return 132;
  }
  return n;
}

constexpr unsigned kMaxGridY = 65535;

template <typename T, int G>
cudaError_t launch_decode(const AttnParams& p, bool vec, cudaStream_t stream) {
  constexpr int U = 4;
  const int64_t blocks = static_cast<int64_t>(p.batch) * p.heads * p.q_len;
  const int sms = sm_count();
  // The live key count, not the cache length: a short context in a large cache is short.
  const int64_t keys = p.keys_hint > 0 && p.keys_hint < p.k_len ? p.keys_hint : p.k_len;
  // Few blocks and long key ranges: more warps per block to keep enough loads in flight on
  // the SMs that do get work. Many blocks or short ranges: small blocks.
  int nw = 8;
  if (blocks < sms && keys >= 1024) nw = 16;
  else if (blocks >= 4 * static_cast<int64_t>(sms) || keys < 256) nw = 4;
  const int ng = nw * (32 / G);
  const size_t smem = static_cast<size_t>(ng) * (p.head_dim + 2) * sizeof(float);
  const dim3 grid(static_cast<unsigned>(p.batch * p.heads),
                  static_cast<unsigned>(p.q_len < static_cast<int>(kMaxGridY) ? p.q_len : kMaxGridY));
  EET_LAUNCH(grid, nw * 32, smem, stream, attn_decode_kernel<T, G, U>)(p, vec);
  return cudaGetLastError();
}

template <typename T, int G, int NC, int BK>
cudaError_t launch_tiled(const AttnParams& p, bool vec, cudaStream_t stream) {
  constexpr int BQ = 128 / G;
  const int64_t n_qtiles = (static_cast<int64_t>(p.q_len) + BQ - 1) / BQ;
  const dim3 grid(static_cast<unsigned>(p.batch * p.heads),
                  static_cast<unsigned>(n_qtiles < kMaxGridY ? n_qtiles : kMaxGridY));
  EET_LAUNCH(grid, 128, 0, stream, attn_tiled_kernel<T, G, NC, BK>)(p, vec);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_generic(const AttnParams& p, cudaStream_t stream) {
  constexpr size_t kSmemLimit = 48 * 1024;  // no opt-in needed below this
  const size_t D = static_cast<size_t>(p.head_dim);
  int nw = 8;
  auto smem_for = [&](int w) { return (D + static_cast<size_t>(w) * (D + 2)) * sizeof(float); };
  while (nw > 1 && smem_for(nw) > kSmemLimit) nw /= 2;
  if (smem_for(nw) > kSmemLimit) return cudaErrorInvalidValue;  // head_dim > ~6000
  const dim3 grid(static_cast<unsigned>(p.batch * p.heads),
                  static_cast<unsigned>(p.q_len < static_cast<int>(kMaxGridY) ? p.q_len : kMaxGridY));
  EET_LAUNCH(grid, nw * 32, smem_for(nw), stream, attn_generic_kernel<T>)(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t run(const AttnParams& p, cudaStream_t stream) {
  const int D = p.head_dim;
  if (D % 8 != 0 || D > 256) return launch_generic<T>(p, stream);
  // 8-element chunks sit at multiples of 8 inside a row; vector loads also need every row
  // start (base + strides) 16-byte aligned.
  const int64_t es = sizeof(T);
  const bool vec =
      detail::strides_aligned16(p.q, es, p.q_stride_b, p.q_stride_s, p.q_stride_h) &&
      detail::strides_aligned16(p.k, es, p.k_stride_b, p.k_stride_s, p.k_stride_h) &&
      detail::strides_aligned16(p.v, es, p.v_stride_b, p.v_stride_s, p.v_stride_h);
  if (p.q_len <= kDecodeMaxQ) {
    const int chunks = D / 8;
    if (chunks <= 1) return launch_decode<T, 1>(p, vec, stream);
    if (chunks <= 2) return launch_decode<T, 2>(p, vec, stream);
    if (chunks <= 4) return launch_decode<T, 4>(p, vec, stream);
    if (chunks <= 8) return launch_decode<T, 8>(p, vec, stream);
    if (chunks <= 16) return launch_decode<T, 16>(p, vec, stream);
    return launch_decode<T, 32>(p, vec, stream);
  }
  // (G, NC): G lanes per query, NC float4 chunks per lane, rows padded to 4*NC*G.
  if (D <= 32) return launch_tiled<T, 1, 8, 32>(p, vec, stream);
  if (D <= 48) return launch_tiled<T, 2, 6, 32>(p, vec, stream);
  if (D <= 64) return launch_tiled<T, 2, 8, 32>(p, vec, stream);
  if (D <= 80) return launch_tiled<T, 4, 5, 32>(p, vec, stream);
  if (D <= 96) return launch_tiled<T, 4, 6, 32>(p, vec, stream);
  if (D <= 128) return launch_tiled<T, 4, 8, 32>(p, vec, stream);
  if (D <= 160) return launch_tiled<T, 8, 5, 16>(p, vec, stream);
  if (D <= 192) return launch_tiled<T, 8, 6, 16>(p, vec, stream);
  return launch_tiled<T, 8, 8, 16>(p, vec, stream);
}

}  // namespace

cudaError_t attention(DType dt, const AttnParams& p, cudaStream_t stream) {
  if (p.batch <= 0 || p.heads <= 0 || p.q_len <= 0 || p.head_dim <= 0) return cudaSuccess;
  if (p.q == nullptr || p.out == nullptr || (p.k_len > 0 && (p.k == nullptr || p.v == nullptr)))
    return cudaErrorInvalidValue;
  if (static_cast<int64_t>(p.batch) * p.heads > INT_MAX) return cudaErrorInvalidValue;
  return detail::dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return run<T>(p, stream);
  });
}

}  // namespace cuda
}  // namespace eet
