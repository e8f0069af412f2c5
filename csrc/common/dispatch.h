// Maps torch dtypes and activation names to the kernel enums; every default raises and
// lists what is supported.
#pragma once

#include <torch/extension.h>

#include <string>

#include "eet/ops.h"

namespace eet {

inline DType to_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default:
      TORCH_CHECK_TYPE(false, "unsupported dtype ", t.scalar_type(),
                       "; supported: float32, float16, bfloat16");
  }
  return DType::kFloat32;
}

// Names as in transformers' ACT2FN; "gelu_new", "gelu_fast", "gelu_pytorch_tanh" are the
// tanh approximation, "gelu" is the exact erf form.
inline Act to_act(const std::string& name) {
  if (name == "identity" || name == "linear" || name == "none") return Act::kIdentity;
  if (name == "relu") return Act::kRelu;
  if (name == "gelu") return Act::kGeluErf;
  if (name == "gelu_new" || name == "gelu_fast" || name == "gelu_pytorch_tanh" ||
      name == "gelu_tanh")
    return Act::kGeluTanh;
  TORCH_CHECK_VALUE(false, "activation must be one of gelu, gelu_new (gelu_fast, ",
                    "gelu_pytorch_tanh, gelu_tanh), relu, identity; got '", name, "'");
  return Act::kIdentity;
}

}  // namespace eet
