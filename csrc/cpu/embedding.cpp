// embedding (CPU, fp32): out[t] = word[ids[t]] + pos[pos_ids[t]] (+ type[type_ids[t]]),
// optionally followed by layernorm (BERT). Ids are validated before any row is read: the
// index of the first bad token is returned and nothing is written.
#include <cmath>

#include "eet/ops.h"
#include "vec_math.h"

namespace eet {
namespace cpu {

int64_t embedding(const int64_t* ids,       // [T]
                  const int64_t* pos_ids,   // [T]
                  const int64_t* type_ids,  // [T] or null
                  const float* word,        // [V, H]
                  const float* pos,         // [P, H]
                  const float* type,        // [TT, H] or null
                  const float* gamma,       // [H] or null (no layernorm)
                  const float* beta,        // [H] or null
                  float* out,               // [T, H]
                  int64_t tokens, int64_t hidden, int64_t vocab, int64_t n_pos, int64_t n_types,
                  float eps) {
  for (int64_t t = 0; t < tokens; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab || pos_ids[t] < 0 || pos_ids[t] >= n_pos) return t;
    if (type_ids != nullptr && (type_ids[t] < 0 || type_ids[t] >= n_types)) return t;
  }
#pragma omp parallel for schedule(static) if (tokens * hidden > 32768)
  for (int64_t t = 0; t < tokens; ++t) {
    const float* w = word + ids[t] * hidden;
    const float* p = pos + pos_ids[t] * hidden;
    const float* ty = type_ids != nullptr ? type + type_ids[t] * hidden : nullptr;
    float* o = out + t * hidden;
    if (ty != nullptr) {
#pragma omp simd
      for (int64_t c = 0; c < hidden; ++c) o[c] = w[c] + p[c] + ty[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < hidden; ++c) o[c] = w[c] + p[c];
    }
    if (gamma == nullptr) continue;
    layernorm_row(o, o, gamma, beta, hidden, eps);
  }
  return -1;
}

}  // namespace cpu
}  // namespace eet
