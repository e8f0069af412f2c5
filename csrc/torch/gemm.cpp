// The GemmBackend of each device (see gemm.h). oneDNN is reached through the torch dispatcher
// (the mkldnn::_linear_pointwise op torch's own inductor uses), so no oneDNN headers or link
// flags are needed here. Also cpu_gemm_backend(), exported as eet_like._C.cpu_gemm().
#include "gemm.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdlib>

#include "op_impls.h"
#ifdef WITH_CUDA
#include "cuda_launch.h"
#include "enums.h"
#endif

namespace eet {

namespace {

using LinearPointwise =
    at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
               c10::string_view, c10::List<std::optional<at::Scalar>>,
               std::optional<c10::string_view>);

// The op handle, or null when this torch has no oneDNN linear (non-x86 builds, no mkldnn).
const c10::TypedOperatorHandle<LinearPointwise>* onednn_linear() {
  static const auto handle = []() -> std::optional<c10::TypedOperatorHandle<LinearPointwise>> {
    if (!at::hasMKLDNN()) return std::nullopt;
    auto op = c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
    if (!op.has_value() || !op->hasKernelForDispatchKey(c10::DispatchKey::CPU)) return std::nullopt;
    return op->typed<LinearPointwise>();
  }();
  return handle.has_value() ? &*handle : nullptr;
}

bool use_onednn() {
  const char* env = std::getenv("EET_LIKE_CPU_GEMM");
  const std::string v = env != nullptr ? env : "";
  TORCH_CHECK_VALUE(v.empty() || v == "onednn" || v == "eet",
                    "EET_LIKE_CPU_GEMM must be 'onednn' or 'eet', got '", v, "'");
  if (v == "eet") return false;
  TORCH_CHECK(v.empty() || onednn_linear() != nullptr,
              "EET_LIKE_CPU_GEMM=onednn, but this torch build has no oneDNN linear "
              "(mkldnn::_linear_pointwise); unset it to use at::mm");
  return onednn_linear() != nullptr;
}

void bias_act_cpu(at::Tensor& y, const at::Tensor* bias, const at::Tensor* residual, Act act) {
  cpu::bias_act(y.data_ptr<float>(), bias ? bias->data_ptr<float>() : nullptr,
                residual ? residual->data_ptr<float>() : nullptr, act, y.size(0), y.size(1));
}

at::Tensor gemm_bias_act_cpu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                             Act act) {
  if (use_onednn()) {
    const char* attr = "none";
    std::optional<c10::string_view> alg = c10::string_view("");
    switch (act) {
      case Act::kIdentity: break;
      case Act::kRelu: attr = "relu"; break;
      case Act::kGeluErf: attr = "gelu"; alg = c10::string_view("none"); break;
      case Act::kGeluTanh: attr = "gelu"; alg = c10::string_view("tanh"); break;
    }
    const std::optional<at::Tensor> b = bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt;
    return onednn_linear()->call(x, w, b, attr, c10::List<std::optional<at::Scalar>>(), alg);
  }
  if (act == Act::kIdentity)
    return bias.defined() ? at::addmm(bias, x, w.t()) : at::mm(x, w.t());
  at::Tensor y = at::mm(x, w.t());
  bias_act_cpu(y, bias.defined() ? &bias : nullptr, nullptr, act);
  return y;
}

#ifdef WITH_CUDA
void bias_act_cuda(at::Tensor& y, const at::Tensor* bias, const at::Tensor* residual, Act act) {
  TORCH_CHECK(on_kernel_device(y), "bias_act: the CUDA implementation got a tensor on ", y.device());
  const DeviceGuard guard(y.device());
  EET_CHECK_LAUNCH(cuda::bias_act(to_dtype(y), y.data_ptr(), bias ? bias->data_ptr() : nullptr,
                                  residual ? residual->data_ptr() : nullptr, act, y.size(0),
                                  y.size(1), current_stream()),
                   "bias_act");
}

at::Tensor gemm_bias_act_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                              Act act) {
  TORCH_CHECK(on_kernel_device(x), "gemm: the CUDA implementation got x on ", x.device());
  if (act == Act::kIdentity)
    return bias.defined() ? at::addmm(bias, x, w.t()) : at::mm(x, w.t());
  at::Tensor y = at::mm(x, w.t());
  bias_act_cuda(y, bias.defined() ? &bias : nullptr, nullptr, act);
  return y;
}
#endif

}  // namespace

const GemmBackend kCpuGemm = {&gemm_bias_act_cpu, &bias_act_cpu};
#ifdef WITH_CUDA
const GemmBackend kCudaGemm = {&gemm_bias_act_cuda, &bias_act_cuda};
#endif

std::string cpu_gemm_backend() { return use_onednn() ? "onednn" : "eet"; }

}  // namespace eet
