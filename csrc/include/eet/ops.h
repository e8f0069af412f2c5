// Kernel entry points shared by the CPU and CUDA sides: raw pointers in, raw pointers out.
// No torch headers here, so CMake can build and test the kernels without Python.
// Shapes are written as [B, S, H]; every tensor is row-major and densely packed unless a
// stride argument says otherwise. All strides are in elements, never bytes.
#pragma once

#include <cstdint>

#include "eet/activations.h"  // Act, the activation names and formulas

namespace eet {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Width of the column panels of the packed-weight GEMM (below): a packed [N, K] weight is
// [ceil(N / kPanelWidth), K, kPanelWidth]. Exported to Python as eet_like.ops.PANEL_WIDTH.
constexpr int64_t kPanelWidth = 16;

// Generic multi-head attention over strided Q/K/V (the head dim D is always contiguous):
//   out[b, i, h, :] = sum_j softmax_j(scale * q[b, i, h, :] . k[b, j, h, :]) v[b, j, h, :]
// over the keys j with key_start[b] <= j < key_end[b] + key_end_add and, when causal,
// j <= i + causal_offset. A query with no visible key gets an all-zero output row.
// Used by the prompt pass (Q/K/V read from the packed QKV projection), by the decode step
// (one query per row against the KV cache) and by cross attention (encoder K/V).
struct AttnParams {
  const void* q = nullptr;  // [B, Sq, H, D] with the strides below
  const void* k = nullptr;  // [B, Sk, H, D]
  const void* v = nullptr;  // [B, Sk, H, D]
  void* out = nullptr;      // [B, Sq, H, D]
  int64_t q_stride_b = 0, q_stride_s = 0, q_stride_h = 0;
  int64_t k_stride_b = 0, k_stride_s = 0, k_stride_h = 0;
  int64_t v_stride_b = 0, v_stride_s = 0, v_stride_h = 0;
  int64_t o_stride_b = 0, o_stride_s = 0, o_stride_h = 0;
  int batch = 0, heads = 0, q_len = 0, k_len = 0, head_dim = 0;
  const int32_t* key_start = nullptr;  // [B] first visible key per row; null = 0
  const int32_t* key_end = nullptr;    // [B] one past the last visible key; null = k_len
  int key_end_add = 0;                 // added to key_end[b] (decode: key_end = positions, add 1)
  // A row whose key_end[b] + key_end_add exceeds k_len sees no key at all (zeros) instead of
  // being clamped: a decode position outside the cache must not attend over unwritten slots.
  bool past_end_empty = false;
  bool causal = false;
  int causal_offset = 0;               // causal: key j visible to query i iff j <= i + causal_offset
  float scale = 1.f;
  // Host-known upper bound of the keys any row sees (e.g. the decode length + 1; 0 = k_len).
  // Only picks the launch configuration: the key ranges above decide what is read, so a hint
  // below the real count costs speed, never correctness.
  int64_t keys_hint = 0;
};

// Copy of new keys/values into the preallocated cache:
//   k_cache[b, h, pos_b + s, :] = k[b, s, h, :] (same for v), pos_b = positions ? positions[b] : 0.
// Positions with pos_b + s outside [0, max_seq) are skipped (memory safety); the callers
// validate them first and report the error.
struct CacheWriteParams {
  const void* k = nullptr;  // [B, S, H, D] strided like AttnParams
  const void* v = nullptr;
  int64_t k_stride_b = 0, k_stride_s = 0, k_stride_h = 0;
  int64_t v_stride_b = 0, v_stride_s = 0, v_stride_h = 0;
  void* k_cache = nullptr;  // [Bc, H, max_seq, D] dense in its last three dims
  void* v_cache = nullptr;
  int64_t cache_stride_b = 0;          // elements between cache rows (H * max_seq * D when dense)
  const int32_t* positions = nullptr;  // [B] or null
  int batch = 0, seq = 0, heads = 0, head_dim = 0, max_seq = 0;
};

namespace cpu {

// y = LN(h) * gamma + beta with h = x (+ residual) (+ bias); h_out (if not null) receives h.
void layernorm(const float* x, const float* residual, const float* bias, const float* gamma,
               const float* beta, float* y, float* h_out, int64_t rows, int64_t hidden, float eps);

// out[t] = word[ids[t]] + pos[pos_ids[t]] (+ type[type_ids[t]]), then LN if gamma is not null.
// Returns -1 when all ids are in range, else the index t of the first bad token (nothing is
// read out of bounds; the caller raises).
int64_t embedding(const int64_t* ids, const int64_t* pos_ids, const int64_t* type_ids,
                  const float* word, const float* pos, const float* type, const float* gamma,
                  const float* beta, float* out, int64_t tokens, int64_t hidden, int64_t vocab,
                  int64_t n_pos, int64_t n_types, float eps);

// x[n, c] = act(x[n, c] + bias[c]) + residual[n, c]; bias and residual may be null.
void bias_act(float* x, const float* bias, const float* residual, Act act, int64_t rows,
              int64_t cols);

// Packed-weight GEMM (gemm_packed.cpp). A [N, K] nn.Linear weight is packed once into panels
// of kPanelWidth output columns, [ceil(N / kPanelWidth)][K][kPanelWidth], zero padded, so the
// kernel streams each panel contiguously; y[M, N] = act(x[M, K] W^T + bias), bias may be null.
void pack_weight(const float* w, int64_t n, int64_t k, float* packed);
void gemm_packed(const float* x, int64_t m, int64_t k, const float* packed, int64_t n,
                 const float* bias, Act act, float* y);
// The packed GEMM's kernel on this CPU: "avx512" (12 rows x 32 columns) or "avx2" (6 x 16),
// bit-identical; EET_LIKE_NO_AVX512 in the environment (read once) forces "avx2".
const char* gemm_packed_isa();

// int8 linear (gemm_int8.cpp). quantize_int8: symmetric per row of an [N, K] float matrix,
// scales[r] = max|w[r, :]| / qmax, q = round-half-even(w / scale) clamped to [-qmax, qmax] (an
// all-zero row gets scale 0); used for the weights (once, qmax 127) and for the activations
// (every call, one scale per token, qmax = int8_activation_max()). int8_activation_max: 127
// with AVX-512 VNNI; 63 (7-bit activations) on AVX2-only CPUs, where the panel GEMM's
// vpmaddubsw is exact only for |xq| <= 63 (EET_LIKE_NO_AVX512 forces the AVX2 kernels and 63).
// gemm_s8s8_s32: acc[M, N] = xq[M, K] q[N, K]^T, exact int32 (K <= kInt8MaxK) for
// |xq| <= int8_activation_max(), AVX-512 VNNI or AVX2 chosen at run time (gemm_s8s8_isa() says
// which), any row count (AVX2: a panel GEMM from 16 rows).
// dequant_bias_act: y[m, n] = act(float(acc[m, n]) * (sx[m] * sw[n]) + bias[n]), bias may be null.
constexpr int64_t kInt8MaxK = 65536;  // (q + 128) * w sums stay below 2^31
void quantize_int8(const float* w, int64_t n, int64_t k, int8_t* q, float* scales, int qmax = 127);
int int8_activation_max();
void gemm_s8s8_s32(const int8_t* xq, int64_t m, int64_t k, const int8_t* q, int64_t n, int32_t* acc);
const char* gemm_s8s8_isa();
// The same product on Intel AMX (gemm_amx.cpp) for K % 64 == 0; false (nothing written) where it
// cannot run: no AMX-INT8, no permission for the tile registers, EET_LIKE_NO_AMX set, or K.
bool gemm_s8s8_amx(const int8_t* xq, int64_t m, int64_t k, const int8_t* q, int64_t n, int32_t* acc);
bool gemm_s8s8_amx_available();
// Prepacked int8 weights for the AVX2 panel GEMM (any x86-64 CPU with AVX2). pack_int8_panels:
// q [n, k] -> ceil(n / 16) panels of packed_int8_bytes(n, k) / panels bytes each: ceil(k / 4)
// quads of 16 x 4 weights (out[p][j][e] = q[16 panel + j, 4p + e], zero padded), then the 16
// int32 column sums (sum_k q) in one more 64-byte quad. linear_s8_packed: y [m, n] =
// act(float(xq q^T) * (sx * sw) + bias) (dequant_bias_act's formula and bits), each row of x
// [m, k] quantized to 7 bits (sx[i] = max|x_i| / 63, as quantize_int8 with qmax 63), the int32
// sums exact, read from the panels with no per-call repacking, each panel's epilogue applied
// while its sums are in cache; any row count.
int64_t packed_int8_bytes(int64_t n, int64_t k);
void pack_int8_panels(const int8_t* q, int64_t n, int64_t k, int8_t* out);
void linear_s8_packed(const float* x, int64_t m, int64_t k, const int8_t* packed, int64_t n, const float* sw,
                      const float* bias, Act act, float* y);
constexpr int kPackedInt8ActivationMax = 63;
constexpr int kPackedInt8PanelCols = 16;  // output columns per panel
void dequant_bias_act(const int32_t* acc, const float* sx, const float* sw, const float* bias, Act act,
                      int64_t m, int64_t n, float* y);

void attention(const AttnParams& p);             // fp32 (attention.cpp)
void kv_cache_write(const CacheWriteParams& p);  // fp32 (kv_cache.cpp)

}  // namespace cpu
}  // namespace eet
