// The activations of the GEMM epilogues (bias_act, the packed GEMM), in one place for the CPU
// and CUDA sides: the Act enum, the one table of accepted names (exported to Python as
// eet_like._C.activations(), from which eet_like.ops.ACTIVATIONS is built) and the scalar
// formulas, callable from host and device code (nvcc, the host compiler, csrc/cuda_emu).
// No torch headers.
#pragma once

#include <cmath>
#include <cstring>

#if defined(__CUDACC__)
#define EET_HOST_DEVICE __host__ __device__
#define EET_FORCEINLINE __forceinline__
#else
#define EET_HOST_DEVICE
#define EET_FORCEINLINE inline
#endif

namespace eet {

// Activation applied after the bias add; names as in transformers' ACT2FN.
enum class Act : int { kIdentity = 0, kRelu = 1, kGeluErf = 2, kGeluTanh = 3 };

// Every accepted name, in the order Python lists them. "gelu" is the exact erf form;
// "gelu_new", "gelu_fast", "gelu_pytorch_tanh" and "gelu_tanh" are the tanh approximation;
// "identity" is the no-op ("linear" and "none" are not accepted: one spelling each).
struct ActName {
  const char* name;
  Act act;
};
inline constexpr ActName kActNames[] = {
    {"gelu", Act::kGeluErf},          {"gelu_new", Act::kGeluTanh}, {"gelu_fast", Act::kGeluTanh},
    {"gelu_pytorch_tanh", Act::kGeluTanh}, {"gelu_tanh", Act::kGeluTanh}, {"relu", Act::kRelu},
    {"identity", Act::kIdentity},
};

// Looks `name` up in kActNames; false when it is not there (the caller raises and lists them).
inline bool act_from_name(const char* name, Act* out) {
  for (const ActName& a : kActNames) {
    if (std::strcmp(a.name, name) == 0) {
      *out = a.act;
      return true;
    }
  }
  return false;
}

// The constants of the gelu forms: 1/sqrt(2) (erf form), sqrt(2/pi) and the cubic
// coefficient (tanh form).
constexpr float kGeluInvSqrt2 = 0.70710678118654752f;
constexpr float kGeluSqrt2OverPi = 0.79788456080286536f;
constexpr float kGeluCubic = 0.044715f;

// erf/tanh of the C library (CUDA's device math on the GPU). The CPU kernels pass their own
// branch-free versions instead (cpu/vec_math.h: VecMath), which auto-vectorize.
struct StdMath {
  static EET_HOST_DEVICE EET_FORCEINLINE float erf(float x) { return erff(x); }
  static EET_HOST_DEVICE EET_FORCEINLINE float tanh(float x) { return tanhf(x); }
};

// act(v) in fp32. relu maps NaN to 0 (v > 0 is false), on every device.
template <Act A, typename Math = StdMath>
EET_HOST_DEVICE EET_FORCEINLINE float activate(float v) {
  if constexpr (A == Act::kRelu) return v > 0.f ? v : 0.f;
  if constexpr (A == Act::kGeluErf) return 0.5f * v * (1.f + Math::erf(v * kGeluInvSqrt2));
  if constexpr (A == Act::kGeluTanh)
    return 0.5f * v * (1.f + Math::tanh(kGeluSqrt2OverPi * (v + kGeluCubic * v * v * v)));
  return v;
}

}  // namespace eet
