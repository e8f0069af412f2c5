// Registration of every eet_like op: one schema each in the `eet_like` torch library, and one
// implementation per dispatch key: <op>_cpu for CPU and, in WITH_CUDA builds, <op>_cuda for
// CUDA (csrc/torch/<op>.cpp; op_impls.h). A CPU-only build registers, for CUDA, a kernel that
// says so. The CUDA emulation build (EET_CUDA_EMULATION, setup.py) registers the <op>_cuda
// implementations for CPU, except for the ops that only have a CPU kernel.
// Also the Python module eet_like._C (build facts, the activation names, the panel width).
// Fake (meta) kernels for torch.compile live in python/eet_like/_meta.py.
#include <torch/extension.h>
#include <torch/library.h>

#include <iterator>

#include "eet/activations.h"
#include "eet/ops.h"
#include "torch/op_impls.h"
#ifdef EET_CUDA_EMULATION
#include "cuda_runtime.h"  // csrc/cuda_emu: the launch log
#endif

namespace {

// The ops with a CPU kernel only: in the CUDA emulation build they keep their CPU
// implementation for the CPU key (the others run their CUDA implementation there).
#define EET_FOR_EACH_CPU_ONLY_OP(X) \
  X(pack_linear)                    \
  X(linear_packed)                  \
  X(pack_int8)                      \
  X(decode_layers)
#define EET_FOR_EACH_KERNEL_OP(X) \
  X(layernorm)                    \
  X(add_layernorm)                \
  X(embedding)                    \
  X(ffn)                          \
  X(linear)                       \
  X(quantize_int8)                \
  X(linear_int8)                  \
  X(attention)                    \
  X(masked_attention)             \
  X(cross_attention)
// Every op, for the registrations below.
#define EET_FOR_EACH_OP(X) EET_FOR_EACH_KERNEL_OP(X) EET_FOR_EACH_CPU_ONLY_OP(X)

// A real CUDA build (not the emulation flavour, whose `_cuda` glue serves CPU tensors).
#if defined(WITH_CUDA) && !defined(EET_CUDA_EMULATION)
#define EET_REAL_CUDA 1
#endif

#ifndef EET_REAL_CUDA
// The CUDA kernel of every op in a build without CUDA kernels: a clear message instead of
// torch's "Could not run ... with arguments from the 'CUDA' backend".
void cuda_not_built(const c10::OperatorHandle& op, torch::jit::Stack*) {
  TORCH_CHECK_NOT_IMPLEMENTED(false, op.schema().name(),
                              " got CUDA tensors, but this build of eet_like has no CUDA kernels "
                              "(eet_like.cuda_kernels_available() is False): rebuild it with a "
                              "CUDA build of torch and nvcc, or pass CPU tensors");
}
#endif

}  // namespace

TORCH_LIBRARY(eet_like, m) {
  m.def("layernorm(Tensor x, Tensor weight, Tensor bias, float eps) -> Tensor");
  m.def(
      "add_layernorm(Tensor x, Tensor residual, Tensor? residual_bias, Tensor weight, "
      "Tensor bias, float eps) -> (Tensor, Tensor)");
  m.def(
      "embedding(Tensor input_ids, Tensor position_ids, Tensor word_embeddings, "
      "Tensor position_embeddings, Tensor? token_type_ids, Tensor? token_type_embeddings, "
      "Tensor? ln_weight, Tensor? ln_bias, float eps, bool check=True) -> Tensor");
  m.def(
      "ffn(Tensor x, Tensor w1, Tensor? b1, Tensor w2, Tensor? b2, str activation, "
      "Tensor? residual) -> Tensor");
  m.def("linear(Tensor x, Tensor weight, Tensor? bias, str activation) -> Tensor");
  m.def("pack_linear(Tensor weight) -> Tensor");
  m.def("quantize_int8(Tensor weight) -> (Tensor, Tensor)");
  m.def("pack_int8(Tensor qweight) -> Tensor");
  m.def("linear_int8(Tensor x, Tensor qweight, Tensor scales, Tensor? bias, str activation) -> Tensor");
  m.def(
      "linear_packed(Tensor x, Tensor packed, int out_features, Tensor? bias, str activation) "
      "-> Tensor");
  m.def(
      "attention(Tensor qkv, int num_heads, bool causal, Tensor? key_start, Tensor? key_end, "
      "Tensor(a!)? k_cache, Tensor(b!)? v_cache, float? scale) -> Tensor");
  m.def(
      "masked_attention(Tensor qkv, Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor positions, "
      "Tensor? key_start, int num_heads, float? scale, int? max_keys=None) -> Tensor");
  m.def(
      "cross_attention(Tensor q, Tensor k, Tensor v, int num_heads, Tensor? key_start, "
      "Tensor? key_end, float? scale) -> Tensor");
  m.def(
      "decode_layers(Tensor x, Tensor?[] weights, Tensor(a!)[] k_cache, Tensor(b!)[] v_cache, "
      "Tensor positions, Tensor? key_start, int num_heads, float[] scales, float eps, str activation, "
      "int? max_keys=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(eet_like, CPU, m) {
#define EET_IMPL_CPU(op) m.impl(#op, &eet::op##_cpu);
#ifdef EET_CUDA_EMULATION
  // CPU tensors run the CUDA kernels (csrc/cuda on csrc/cuda_emu) through the CUDA glue.
#define EET_IMPL_EMULATED(op) m.impl(#op, &eet::op##_cuda);
  EET_FOR_EACH_KERNEL_OP(EET_IMPL_EMULATED)
  EET_FOR_EACH_CPU_ONLY_OP(EET_IMPL_CPU)
#undef EET_IMPL_EMULATED
#else
  EET_FOR_EACH_OP(EET_IMPL_CPU)
#endif
#undef EET_IMPL_CPU
}

TORCH_LIBRARY_IMPL(eet_like, CUDA, m) {
#ifdef EET_REAL_CUDA
#define EET_IMPL_CUDA(op) m.impl(#op, &eet::op##_cuda);
#else
#define EET_IMPL_CUDA(op) m.impl(#op, torch::CppFunction::makeFromBoxedFunction<&cuda_not_built>());
#endif
  EET_FOR_EACH_OP(EET_IMPL_CUDA)
#undef EET_IMPL_CUDA
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "eet_like compiled kernels (ops are registered under torch.ops.eet_like)";
  m.def("cuda_kernels_available", []() {
#ifdef EET_REAL_CUDA
        return true;
#else
        return false;
#endif
      },
      "True when this build contains the CUDA kernels for CUDA devices");
  m.def("cuda_emulated", []() {
#ifdef EET_CUDA_EMULATION
        return true;
#else
        return false;
#endif
      },
      "True in the CUDA emulation build: ops on CPU tensors run the CUDA kernels on the CPU");
#ifdef EET_CUDA_EMULATION
  m.def("emu_launch_log", &eet_emu::enable_launch_log, pybind11::arg("on"),
        "Emulation build: start (True) or stop and clear (False) logging the kernel launches");
  m.def("emu_take_launches", []() {
        std::vector<eet_emu::LaunchRecord> recs(eet_emu::kLaunchLogMax);
        recs.resize(eet_emu::take_launch_log(recs.data(), recs.size()));
        pybind11::list out;
        for (const auto& r : recs)
          out.append(pybind11::make_tuple(r.kernel, pybind11::make_tuple(r.grid.x, r.grid.y, r.grid.z),
                                          pybind11::make_tuple(r.block.x, r.block.y, r.block.z), r.smem));
        return out;
      },
      "Emulation build: the launches logged since the last call, oldest first, as (kernel, grid, "
      "block, dynamic shared bytes); clears the log");
#endif
  m.def("cpu_gemm", &eet::cpu_gemm_backend,
        "The CPU GEMM backend the ffn/linear ops use now: 'onednn' or 'eet' (EET_LIKE_CPU_GEMM)");
  m.def("activations", []() {
        pybind11::tuple names(std::size(eet::kActNames));
        for (size_t i = 0; i < std::size(eet::kActNames); ++i)
          names[i] = pybind11::str(eet::kActNames[i].name);
        return names;
      },
      "The activation names every op accepts (eet/activations.h), in order");
  m.attr("PANEL_WIDTH") = eet::kPanelWidth;
  m.def("packed_gemm_isa", &eet::cpu::gemm_packed_isa,
        "The instruction set of the float32 packed GEMM (decode steps) on this CPU: 'avx512' or 'avx2' "
        "(bit-identical results; EET_LIKE_NO_AVX512=1 forces 'avx2')");
  m.def("int8_gemm_amx", &eet::cpu::gemm_s8s8_amx_available,
        "Whether linear_int8 runs its AMX kernel (4 to 128 rows, K % 64 == 0) on this CPU: AMX-INT8 "
        "present, tile registers granted by the kernel, EET_LIKE_NO_AMX unset");
  m.def("int8_gemm_isa", &eet::cpu::gemm_s8s8_isa,
        "The instruction set of the few-row int8 GEMM of linear_int8 on this CPU: 'avx512_vnni' or 'avx2'");
  m.def("int8_activation_max", &eet::cpu::int8_activation_max,
        "The range [-q, q] linear_int8 quantizes activations to on this CPU: 127 with AVX-512 VNNI, 63 "
        "(7 bits, for exact vpmaddubsw products) on AVX2-only CPUs or with EET_LIKE_NO_AVX512");
}
