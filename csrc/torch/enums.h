// Torch values to the kernel enums of eet/ops.h: a tensor's dtype to DType, an activation
// name to Act (through the one name table of eet/activations.h). Every default raises and
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

// "gelu, gelu_new, ..., identity": the accepted names, for messages.
inline std::string activation_names() {
  std::string s;
  for (const ActName& a : kActNames) {
    if (!s.empty()) s += ", ";
    s += a.name;
  }
  return s;
}

inline Act to_act(c10::string_view name) {
  const std::string n(name);
  Act act = Act::kIdentity;
  TORCH_CHECK_VALUE(act_from_name(n.c_str(), &act), "activation must be one of ",
                    activation_names(), "; got '", n, "'");
  return act;
}

}  // namespace eet
