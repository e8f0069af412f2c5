// embedding (CUDA): out[t] = word[ids[t]] + pos[pos_ids[t]] (+ type[type_ids[t]]), then an
// optional layernorm over hidden. fp32/fp16/bf16 tables, int64 ids (clamped into range for
// memory safety only), fp32 math. Any hidden >= 1; shares the row core with layernorm.cu.
#include "common.cuh"
#include "eet/ops_cuda.h"

namespace eet {
namespace cuda {
namespace {

using detail::is_aligned16;
using detail::SumRow;

__device__ __forceinline__ int64_t clamp_id(int64_t id, int64_t n) {
  return id < 0 ? 0 : (id >= n ? n - 1 : id);
}

template <typename T>
struct EmbSrc {
  const int64_t* ids;       // [tokens]
  const int64_t* pos_ids;   // [tokens]
  const int64_t* type_ids;  // [tokens] or null
  const T* word;            // [vocab, hidden]
  const T* pos;             // [n_pos, hidden]
  const T* type;            // [n_types, hidden] or null
  int64_t hidden, vocab, n_pos, n_types;

  __device__ __forceinline__ SumRow<T> row(int64_t t) const {
    const T* w = word + clamp_id(ids[t], vocab) * hidden;
    const T* p = pos + clamp_id(pos_ids[t], n_pos) * hidden;
    const T* ty = type_ids != nullptr ? type + clamp_id(type_ids[t], n_types) * hidden : nullptr;
    return {w, p, ty};
  }
};

template <typename T>
cudaError_t run(const int64_t* ids, const int64_t* pos_ids, const int64_t* type_ids,
                const void* word, const void* pos, const void* type, const void* gamma,
                const void* beta, void* out, int64_t tokens, int64_t hidden, int64_t vocab,
                int64_t n_pos, int64_t n_types, float eps, cudaStream_t stream) {
  // A type table without ids (or ids without a table) means no type embedding.
  if (type == nullptr || n_types <= 0) type_ids = nullptr;
  const EmbSrc<T> src{ids,
                      pos_ids,
                      type_ids,
                      static_cast<const T*>(word),
                      static_cast<const T*>(pos),
                      static_cast<const T*>(type),
                      hidden,
                      vocab,
                      n_pos,
                      n_types};
  const detail::NormOut<T> o{static_cast<T*>(out),         nullptr,
                             static_cast<const T*>(gamma), static_cast<const T*>(beta),
                             /*normalize=*/gamma != nullptr, eps};
  // Row starts are multiples of hidden elements, so aligned bases keep every row aligned.
  const bool vec = hidden % 8 == 0 && is_aligned16(word) && is_aligned16(pos) &&
                   is_aligned16(type) && is_aligned16(gamma) && is_aligned16(beta) &&
                   is_aligned16(out);
  return detail::launch_norm_rows<T>(src, o, tokens, hidden, vec, stream);
}

}  // namespace

cudaError_t embedding(DType dt, const int64_t* ids, const int64_t* pos_ids,
                      const int64_t* type_ids, const void* word, const void* pos,
                      const void* type, const void* gamma, const void* beta, void* out,
                      int64_t tokens, int64_t hidden, int64_t vocab, int64_t n_pos,
                      int64_t n_types, float eps, cudaStream_t stream) {
  if (tokens <= 0 || hidden <= 0) return cudaSuccess;
  if (ids == nullptr || pos_ids == nullptr || word == nullptr || pos == nullptr ||
      out == nullptr || vocab <= 0 || n_pos <= 0)
    return cudaErrorInvalidValue;
  return detail::dispatch_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return run<T>(ids, pos_ids, type_ids, word, pos, type, gamma, beta, out, tokens, hidden,
                  vocab, n_pos, n_types, eps, stream);
  });
}

}  // namespace cuda
}  // namespace eet
