// int8 x int8 -> int32 GEMM on Intel AMX (CPU): acc[m, n] = sum_k xq[m, k] * q[n, k], xq [M, K]
// and q [N, K] int8 row-major, the sums exact in int32 like every other kernel of linear_int8
// (so the float results are bit-identical whichever kernel ran). Check: tests/test_int8_ops.py.
// Computed as C^T = Q X^T so that the weight, as stored ([N, K]), is the A operand of TDPBSSD
// (16 weight rows x 64 bytes per tile, read in place); X is repacked per call into B tiles
// (4 consecutive k of 16 activation rows per 64-byte tile row, rows padded to 16 with zeros).
// Blocks of 32 weight rows x 32 activation rows: 2 A + 2 B tiles feed 4 C tiles per 64-k step.
// Needs K % 64 == 0 (else gemm_s8s8_amx returns false and the caller takes another kernel), a
// CPU with AMX-INT8 and the kernel's permission to use the tile registers (Linux 5.16+:
// arch_prctl(ARCH_REQ_XCOMP_PERM), requested once). EET_LIKE_NO_AMX (any value) turns it off.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "eet/ops.h"

namespace eet {
namespace cpu {

namespace {

#define EET_AMX_TARGET __attribute__((target("amx-tile,amx-int8,avx512f")))

// GCC 12's AVX-512 headers seed unmasked shuffles with a self-initialized "undefined" vector,
// which -Wall reports in every caller.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

constexpr int kTileRows = 16;  // rows of every tile
constexpr int kTileBytes = 64;  // bytes per tile row
constexpr int64_t kKStep = 64;  // k per tile product (64 int8 per A row)

// The 64-byte tile configuration (palette 1): tiles 0-3 C (16 x 16 int32), 4-5 A, 6-7 B.
struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

bool request_amx() {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

bool amx_usable() {
  static const bool ok = std::getenv("EET_LIKE_NO_AMX") == nullptr && __builtin_cpu_supports("amx-tile") &&
                         __builtin_cpu_supports("amx-int8") && request_amx();
  return ok;
}

// xb: the B tiles of X, tile (kk, mb) at (kk * mblocks + mb) * 1024 bytes: row r, bytes
// [4 * i, 4 * i + 4) = xq[16 * mb + i, 64 * kk + 4 * r .. + 4] (zeros for rows past m).
void pack_x(const int8_t* xq, int64_t m, int64_t k, int64_t mblocks, int8_t* xb) {
  const int64_t ksteps = k / kKStep;
#pragma omp parallel for schedule(static) if (m * k > 65536)
  for (int64_t kk = 0; kk < ksteps; ++kk) {
    for (int64_t mb = 0; mb < mblocks; ++mb) {
      int8_t* t = xb + (kk * mblocks + mb) * (kTileRows * kTileBytes);
      for (int i = 0; i < kTileRows; ++i) {
        const int64_t row = mb * kTileRows + i;
        for (int r = 0; r < kTileRows; ++r) {
          int32_t v = 0;
          if (row < m) std::memcpy(&v, xq + row * k + kk * kKStep + 4 * r, 4);
          std::memcpy(t + r * kTileBytes + 4 * i, &v, 4);
        }
      }
    }
  }
}

// One block: weight rows w (nrows_a = 1 or 2 tiles of 16, row stride k), activation tiles
// mb0 (and mb0 + 1 when two_b); writes the sums into acc[m, n] (transposed from C^T), rows
// below m and columns below n only.
// dst[i * ld + j] = t[j][i] for a full 16 x 16 int32 tile: four rounds of in-register shuffles
// (the scalar loop costed more than the tile products at K = 768).
EET_AMX_TARGET inline void store_transposed16(const int32_t (&t)[kTileRows][kTileRows], int32_t* dst, int64_t ld) {
  __m512i r[16], u[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_load_si512(t[i]);
  for (int i = 0; i < 16; i += 2) {  // 2x2 blocks of 32-bit elements
    u[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    u[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // 4x4 blocks
    r[i] = _mm512_unpacklo_epi64(u[i], u[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(u[i], u[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(u[i + 1], u[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(u[i + 1], u[i + 3]);
  }
  for (int i = 0; i < 4; ++i) {  // 8x8 blocks: 128-bit lanes of rows i, i + 4 and i + 8, i + 12
    u[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
    u[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
    u[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
    u[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {  // 16x16
    r[i] = _mm512_shuffle_i32x4(u[i], u[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(u[i], u[i + 8], 0xdd);
    r[i + 4] = _mm512_shuffle_i32x4(u[i + 4], u[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_i32x4(u[i + 4], u[i + 12], 0xdd);
  }
  for (int i = 0; i < 16; ++i) _mm512_storeu_si512(dst + i * ld, r[i]);
}

// next_w (or null): the weight rows of the thread's next block, prefetched one cache line per
// row and k step (a decode step streams each weight from memory once; the tile loads alone
// leave the kernel waiting on memory).
template <int NA, int NBT>
EET_AMX_TARGET void amx_block(const int8_t* w, int64_t k, const int8_t* xb, int64_t mblocks, int64_t mb0,
                              int64_t n0, int64_t n, int64_t m, int32_t* acc, const int8_t* next_w,
                              int64_t next_rows) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const int64_t ksteps = k / kKStep;
  for (int64_t kk = 0; kk < ksteps; ++kk) {
    const int8_t* bt = xb + (kk * mblocks + mb0) * (kTileRows * kTileBytes);
    if (next_w != nullptr)
      for (int64_t r = 0; r < next_rows; ++r) _mm_prefetch(reinterpret_cast<const char*>(next_w + r * k + kk * kKStep), _MM_HINT_T0);
    _tile_loadd(4, w + kk * kKStep, k);
    if (NA == 2) _tile_loadd(5, w + 16 * k + kk * kKStep, k);
    _tile_loadd(6, bt, kTileBytes);
    if (NBT == 2) _tile_loadd(7, bt + kTileRows * kTileBytes, kTileBytes);
    _tile_dpbssd(0, 4, 6);
    if (NBT == 2) _tile_dpbssd(1, 4, 7);
    if (NA == 2) _tile_dpbssd(2, 5, 6);
    if (NA == 2 && NBT == 2) _tile_dpbssd(3, 5, 7);
  }
  alignas(64) int32_t c[4][kTileRows][kTileRows];
  _tile_stored(0, c[0], kTileBytes);
  if (NBT == 2) _tile_stored(1, c[1], kTileBytes);
  if (NA == 2) _tile_stored(2, c[2], kTileBytes);
  if (NA == 2 && NBT == 2) _tile_stored(3, c[3], kTileBytes);
  for (int a = 0; a < NA; ++a)
    for (int bt = 0; bt < NBT; ++bt) {
      const int32_t(&t)[kTileRows][kTileRows] = c[a * 2 + bt];
      const int64_t r0 = (mb0 + bt) * kTileRows, c0 = n0 + a * kTileRows;
      const int64_t rr = std::min<int64_t>(kTileRows, m - r0), cc = std::min<int64_t>(kTileRows, n - c0);
      if (rr == kTileRows && cc == kTileRows) {
        store_transposed16(t, acc + r0 * n + c0, n);
        continue;
      }
      for (int64_t i = 0; i < rr; ++i)
        for (int64_t j = 0; j < cc; ++j) acc[(r0 + i) * n + c0 + j] = t[j][i];  // C^T[n][m]
    }
}

template <int NA>
EET_AMX_TARGET void amx_rows(const int8_t* w, int64_t k, const int8_t* xb, int64_t mblocks, int64_t n0, int64_t n,
                             int64_t m, int32_t* acc, const int8_t* next_w, int64_t next_rows) {
  int64_t mb = 0;
  for (; mb + 2 <= mblocks; mb += 2)
    amx_block<NA, 2>(w, k, xb, mblocks, mb, n0, n, m, acc, mb == 0 ? next_w : nullptr, next_rows);
  if (mb < mblocks) amx_block<NA, 1>(w, k, xb, mblocks, mb, n0, n, m, acc, mb == 0 ? next_w : nullptr, next_rows);
}

EET_AMX_TARGET void gemm_amx(const int8_t* xq, int64_t m, int64_t k, const int8_t* q, int64_t n, int32_t* acc) {
  const int64_t mblocks = (m + kTileRows - 1) / kTileRows;
  std::vector<int8_t> xb(static_cast<size_t>(k / kKStep * mblocks * kTileRows * kTileBytes));
  pack_x(xq, m, k, mblocks, xb.data());
  const int64_t full = n / kTileRows;       // whole 16-row weight tiles
  const int64_t pairs = (full + 1) / 2;     // blocks of 32 weight rows (the last may hold 16)
  const int64_t tail = n - full * kTileRows;
  const int64_t blocks = pairs + (tail > 0 ? 1 : 0);
#pragma omp parallel if (m * n * k > 262144)
  {
    TileConfig cfg;
    for (int t = 0; t < 8; ++t) {
      cfg.rows[t] = kTileRows;
      cfg.colsb[t] = kTileBytes;
    }
    _tile_loadconfig(&cfg);
    std::vector<int8_t> wtail;  // the last n % 16 weight rows, zero padded to a tile
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      if (blk < pairs) {
        const int64_t n0 = blk * 2 * kTileRows, next0 = n0 + 2 * kTileRows;
        const int64_t next_rows = std::min<int64_t>(2 * kTileRows, n - std::min(n, next0));
        const int8_t* next_w = next_rows > 0 ? q + next0 * k : nullptr;
        if (n0 + 2 * kTileRows <= full * kTileRows)
          amx_rows<2>(q + n0 * k, k, xb.data(), mblocks, n0, n, m, acc, next_w, next_rows);
        else
          amx_rows<1>(q + n0 * k, k, xb.data(), mblocks, n0, n, m, acc, next_w, next_rows);
      } else {
        const int64_t n0 = full * kTileRows;
        wtail.assign(static_cast<size_t>(kTileRows * k), 0);
        std::memcpy(wtail.data(), q + n0 * k, static_cast<size_t>(tail * k));
        amx_rows<1>(wtail.data(), k, xb.data(), mblocks, n0, n, m, acc, nullptr, 0);
      }
    }
    _tile_release();
  }
}

}  // namespace

bool gemm_s8s8_amx_available() { return amx_usable(); }

bool gemm_s8s8_amx(const int8_t* xq, int64_t m, int64_t k, const int8_t* q, int64_t n, int32_t* acc) {
  if (k % kKStep != 0 || k <= 0 || m <= 0 || n <= 0 || !amx_usable()) return false;
  gemm_amx(xq, m, k, q, n, acc);
  return true;
}

}  // namespace cpu
}  // namespace eet
