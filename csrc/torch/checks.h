// Input checks of the torch glue (csrc/torch/*.cpp), shared by the CPU and CUDA
// implementations of every op. Every failure names the argument, what was expected and what
// came; value errors surface in Python as ValueError, dtype errors as TypeError.
#pragma once

#include <torch/extension.h>

#include <sstream>
#include <string>
#include <vector>

namespace eet {

inline std::string shape_str(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// dims: the expected sizes, -1 for "any". spec: the human form, e.g. "[B, S, 3*H*D]".
inline void check_shape(const at::Tensor& t, const char* name, const std::vector<int64_t>& dims,
                        const char* spec) {
  bool ok = t.dim() == static_cast<int64_t>(dims.size());
  for (size_t i = 0; ok && i < dims.size(); ++i) ok = dims[i] < 0 || t.size(i) == dims[i];
  TORCH_CHECK_VALUE(ok, name, " must be ", spec, ", got ", shape_str(t));
}

inline void check_rank(const at::Tensor& t, const char* name, int64_t rank, const char* spec) {
  TORCH_CHECK_VALUE(t.dim() == rank, name, " must be ", spec, " (", rank, "-D), got ",
                    shape_str(t));
}

inline void check_contiguous(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.is_contiguous(), name,
                    " must be contiguous (call .contiguous() first), got strides ", t.strides());
}

// Floating-point activations/weights: fp32 on CPU; fp32, fp16 or bf16 on CUDA, and on CPU in
// the CUDA emulation build (its CPU tensors run the CUDA kernels; the CPU-only ops check fp32
// themselves).
inline void check_float(const at::Tensor& t, const char* name) {
  const auto st = t.scalar_type();
#ifdef EET_CUDA_EMULATION
  if (t.is_cpu()) {
    TORCH_CHECK_TYPE(st == at::kFloat || st == at::kHalf || st == at::kBFloat16, name,
                     " must be float32, float16 or bfloat16 (CUDA kernels, emulated on CPU), got ",
                     st);
    return;
  }
#endif
  if (t.is_cuda()) {
    TORCH_CHECK_TYPE(st == at::kFloat || st == at::kHalf || st == at::kBFloat16, name,
                     " must be float32, float16 or bfloat16 on CUDA, got ", st);
  } else {
    TORCH_CHECK_VALUE(t.is_cpu(), name, " must be on CPU or CUDA, got ", t.device());
    TORCH_CHECK_TYPE(st == at::kFloat, name,
                     " must be float32 on CPU (the CPU kernels are fp32 only), got ", st);
  }
}

// `t` must live on the same device and have the same dtype as `ref`.
inline void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref,
                       const char* ref_name) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), name, " must be on the same device as ",
                    ref_name, " (", ref.device(), "), got ", t.device());
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), name, " must have the dtype of ",
                   ref_name, " (", ref.scalar_type(), "), got ", t.scalar_type());
}

inline void check_device(const at::Tensor& t, const char* name, const at::Tensor& ref,
                         const char* ref_name) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), name, " must be on the same device as ",
                    ref_name, " (", ref.device(), "), got ", t.device());
}

// Index tensors (token ids, positions, key ranges): int64 or int32.
inline void check_index(const at::Tensor& t, const char* name) {
  const auto st = t.scalar_type();
  TORCH_CHECK_TYPE(st == at::kLong || st == at::kInt, name, " must be int64 or int32, got ", st);
}

// Optional int index tensor ([B]) as a contiguous int32 tensor on `ref`'s device.
inline c10::optional<at::Tensor> as_int32(const c10::optional<at::Tensor>& t, const char* name,
                                          const at::Tensor& ref, const char* ref_name,
                                          int64_t batch) {
  if (!t.has_value()) return c10::nullopt;
  check_index(*t, name);
  check_device(*t, name, ref, ref_name);
  check_shape(*t, name, {batch}, "[B]");
  return t->to(at::kInt).contiguous();
}

template <typename T = void>
inline T* ptr_or_null(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? static_cast<T*>(t->data_ptr()) : nullptr;
}

}  // namespace eet
