// Torch glue of linear_int8: y = act(x W^T + bias), x [..., K], with W given as
// quantize_int8(W) = (qweight int8 [N, K], scales [N] float32).
// CPU (float32 x): each row of x is quantized to int8 with its own symmetric scale
// (cpu::quantize_int8 to +-cpu::int8_activation_max(): 127 with VNNI, 63 on AVX2-only CPUs for
// the exact vpmaddubsw of the AVX2 panel GEMM), the product is exact int32, then cpu::dequant_bias_act (W8A8). The
// int32 GEMM: the eet_like AMX kernel from kAmxMinRows to kAmxMaxRows rows where the CPU has
// AMX; with AVX-512 VNNI the eet_like VNNI kernel for fewer rows (decode steps) and at::_int_mm
// (oneDNN) from int_mm_min_rows() rows (prompts, BERT batches); with AVX2 only, the eet_like AVX2
// kernels for every row count (cpu::gemm_s8s8_s32 picks its panel GEMM for many rows: oneDNN's
// int8 GEMM without VNNI ran at ~1 GMAC/s). All give the same integers and share the epilogue,
// so a row's result depends on that row only.
// CUDA (float32/float16/bfloat16 x, bias and y; scales always float32): weight-only (W8A16),
// x is not quantized. Up to cuda::kLinearInt8MaxRows rows: cuda::linear_int8 (int8 weights
// dequantized in registers, fused bias + activation); more rows: cuda::dequantize_int8 into a
// [N, K] buffer of x's dtype (from the caching allocator), then the CUDA GEMM backend (cuBLAS
// + the bias_act kernel). No host syncs, so decode steps can be captured in CUDA graphs.
#include <limits>

#include "enums.h"
#include "gemm.h"
#include "op_impls.h"
#ifdef WITH_CUDA
#include "cuda_launch.h"
#endif

namespace eet {

namespace {

// Rows from which at::_int_mm (oneDNN; ~370 GMAC/s here, VNNI rates) takes over from the eet_like
// kernel. Measured on the 2-core Xeon over the 49 GEMMs of a GPT-2 small decode step (weights
// streamed from memory, as in decoding; best of 5): 8 rows VNNI 8.4 ms vs _int_mm 10.1, 12 rows
// 10.3 vs 10.8, 16 rows 12.6 vs 12.1. Without VNNI, never (the eet_like AVX2 panel GEMM).
constexpr int64_t kIntMmMinRowsVnni = 12;

// The row counts the AMX kernel (gemm_amx.cpp, where the CPU has AMX-INT8 and K % 64 == 0)
// takes. The same step's GEMMs (weights from memory): 2 rows AMX 6.8 ms vs VNNI 6.6, 4 rows 6.7
// vs 7.4, 8 rows 7.7 vs 10.1, 16 rows 8.7 vs 14.0 (_int_mm). Single GEMMs with the weight in
// cache: 32 rows 0.15-0.18 ms vs _int_mm 0.20-0.26, 128 rows even, 2048 rows mixed (19.3 vs 26.7
// and 13.7 vs 9.8 ms): from 129 rows _int_mm.
constexpr int64_t kAmxMinRows = 4;
constexpr int64_t kAmxMaxRows = 128;

int64_t int_mm_min_rows() {
  static const int64_t rows =
      std::string(cpu::gemm_s8s8_isa()) == "avx512_vnni" ? kIntMmMinRowsVnni : std::numeric_limits<int64_t>::max();
  return rows;
}


// The checks both devices share: x [..., K] float contiguous (returns K), qweight int8 [N, K]
// contiguous on x's device (or, with `packed_ok` (CPU), pack_int8's panels
// [ceil(N / 16), ceil(K / 4) + 1, 16, 4] with N = scales.size(0)), bias [N] like x (b receives it
// contiguous, or stays undefined); n receives N. scales is device-specific (the callers check it).
int64_t check_linear_int8_args(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                               const c10::optional<at::Tensor>& bias, bool packed_ok, at::Tensor& b, int64_t& n) {
  const int64_t K = check_gemm_input(x);
  TORCH_CHECK_TYPE(qweight.scalar_type() == at::kChar, "qweight must be int8 (from quantize_int8), got ",
                   qweight.scalar_type());
  check_device(qweight, "qweight", x, "x");
  if (packed_ok && qweight.dim() == 4) {
    check_rank(scales, "scales", 1, "[N] (from quantize_int8)");
    n = scales.size(0);
    TORCH_CHECK_VALUE(n > 0, "scales must be non-empty, got ", shape_str(scales));
    check_shape(qweight, "qweight", int8_panel_shape(n, K),
                "[ceil(N / 16), ceil(K / 4) + 1, 16, 4] (pack_int8 of an [N, K] weight; N = scales.size(0), "
                "K = x.size(-1))");
  } else {
    TORCH_CHECK_VALUE(qweight.dim() == 2, "qweight must be [N, K] (2-D)",
                      packed_ok ? " or pack_int8's panels [ceil(N / 16), ceil(K / 4) + 1, 16, 4] (4-D)"
                                : ": pack_int8's panels are CPU-only",
                      ", got ", shape_str(qweight));
    TORCH_CHECK_VALUE(qweight.size(1) == K, "qweight must be [N, K] with K = x.size(-1) = ", K, ", got ",
                      shape_str(qweight));
    TORCH_CHECK_VALUE(qweight.size(0) > 0, "qweight must be non-empty, got ", shape_str(qweight));
    n = qweight.size(0);
  }
  check_contiguous(qweight, "qweight");
  if (bias.has_value()) {
    check_like(*bias, "bias", x, "x");
    check_shape(*bias, "bias", {n}, "[N]");
    b = bias->contiguous();
  }
  return K;
}

}  // namespace

at::Tensor linear_int8_cpu(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                           const c10::optional<at::Tensor>& bias, c10::string_view activation) {
  const Act act = to_act(activation);
  TORCH_CHECK_VALUE(x.is_cpu(), "x must be on CPU: linear_int8 is a CPU GEMM, got ", x.device());
  at::Tensor b;
  int64_t N = 0;
  const int64_t K = check_linear_int8_args(x, qweight, scales, bias, /*packed_ok=*/true, b, N);
  TORCH_CHECK_VALUE(K <= cpu::kInt8MaxK, "x.size(-1) must be <= ", cpu::kInt8MaxK,
                    " (int32 accumulation of the int8 products), got ", K);
  const int64_t M = x.numel() / K;
  check_like(scales, "scales", x, "x");
  check_shape(scales, "scales", {N}, "[N] (from quantize_int8)");
  const at::Tensor sw = scales.contiguous();
  at::Tensor y = at::empty(with_last_dim(x, N), x.options());
  if (qweight.dim() == 4) {  // pack_int8's panels: 7-bit activations, the AVX2 panel GEMM, any row count
    cpu::linear_s8_packed(x.data_ptr<float>(), M, K, qweight.data_ptr<int8_t>(), N, sw.data_ptr<float>(),
                          b.defined() ? b.data_ptr<float>() : nullptr, act, y.data_ptr<float>());
    return y;
  }
  at::Tensor sx = at::empty({M}, x.options());
  at::Tensor xq = at::empty({M, K}, x.options().dtype(at::kChar));
  cpu::quantize_int8(x.data_ptr<float>(), M, K, xq.data_ptr<int8_t>(), sx.data_ptr<float>(),
                     cpu::int8_activation_max());
  at::Tensor acc;
  if (M >= kAmxMinRows && M <= kAmxMaxRows && K % 64 == 0 && cpu::gemm_s8s8_amx_available()) {
    acc = at::empty({M, N}, x.options().dtype(at::kInt));
    TORCH_CHECK(cpu::gemm_s8s8_amx(xq.data_ptr<int8_t>(), M, K, qweight.data_ptr<int8_t>(), N, acc.data_ptr<int32_t>()),
                "linear_int8: the AMX kernel refused its arguments");
  } else if (M >= int_mm_min_rows()) {
    acc = at::_int_mm(xq, qweight.t());
  } else {
    acc = at::empty({M, N}, x.options().dtype(at::kInt));
    cpu::gemm_s8s8_s32(xq.data_ptr<int8_t>(), M, K, qweight.data_ptr<int8_t>(), N, acc.data_ptr<int32_t>());
  }
  TORCH_CHECK(acc.is_contiguous() && acc.scalar_type() == at::kInt, "linear_int8: the int32 GEMM returned ",
              acc.scalar_type(), " with strides ", acc.strides());
  cpu::dequant_bias_act(acc.data_ptr<int32_t>(), sx.data_ptr<float>(), sw.data_ptr<float>(),
                        b.defined() ? b.data_ptr<float>() : nullptr, act, M, N, y.data_ptr<float>());
  return y;
}

#ifdef WITH_CUDA
at::Tensor linear_int8_cuda(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                            const c10::optional<at::Tensor>& bias, c10::string_view activation) {
  const Act act = to_act(activation);
  TORCH_CHECK_VALUE(on_kernel_device(x), "x must be on the CUDA device of linear_int8's CUDA kernels, got ",
                    x.device());
  at::Tensor b;
  int64_t N = 0;
  const int64_t K = check_linear_int8_args(x, qweight, scales, bias, /*packed_ok=*/false, b, N);
  const int64_t M = x.numel() / K;
  // The CUDA kernels read float32 scales whatever x's dtype (quantize_int8 makes them so).
  check_device(scales, "scales", x, "x");
  TORCH_CHECK_TYPE(scales.scalar_type() == at::kFloat,
                   "scales must be float32 (from quantize_int8) whatever x's dtype, got ", scales.scalar_type());
  check_shape(scales, "scales", {N}, "[N] (from quantize_int8)");
  const at::Tensor sw = scales.contiguous();
  const DeviceGuard guard(x.device());
  const DType dt = to_dtype(x);
  if (M <= cuda::kLinearInt8MaxRows) {
    at::Tensor y = at::empty(with_last_dim(x, N), x.options());
    EET_CHECK_LAUNCH(cuda::linear_int8(dt, x.data_ptr(), qweight.data_ptr<int8_t>(), sw.data_ptr<float>(),
                                       b.defined() ? b.data_ptr() : nullptr, act, y.data_ptr(), M, N, K,
                                       current_stream()),
                     "linear_int8");
    return y;
  }
  // Prompt path: the weight in x's dtype for this call only, then the GEMM of linear.
  at::Tensor w = at::empty({N, K}, x.options());
  EET_CHECK_LAUNCH(cuda::dequantize_int8(dt, qweight.data_ptr<int8_t>(), sw.data_ptr<float>(), w.data_ptr(),
                                         N, K, current_stream()),
                   "linear_int8 (dequantize_int8)");
  return kCudaGemm.gemm_bias_act(x.view({M, K}), w, b, act).view(with_last_dim(x, N));
}
#endif

}  // namespace eet
