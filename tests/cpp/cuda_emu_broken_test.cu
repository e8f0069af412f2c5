// The CUDA emulation (csrc/cuda_emu) proves it can fail: small deliberately broken kernels,
// each run in a child process that must fail with the expected message, and their correct
// twins, which must pass. Built only for the emulation (CMakeLists.txt).
//   cuda_emu_broken_test          runs every case, exit 0 when each behaved as expected
//   cuda_emu_broken_test CASE     runs one case in this process
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/wait.h>
#include <vector>

namespace {

#define CK(expr)                                                                      \
  do {                                                                                \
    const cudaError_t e_ = (expr);                                                    \
    if (e_ != cudaSuccess) {                                                          \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(3);                                                                   \
    }                                                                                 \
  } while (0)

// out[t] = in[(t + 1) % n] staged through shared memory; without the barrier a thread may
// read its neighbour's slot before the neighbour wrote it.
template <bool kBarrier>
__global__ void rotate_kernel(const float* in, float* out) {
  __shared__ float s[256];
  const int t = threadIdx.x, n = blockDim.x;
  s[t] = in[blockIdx.x * n + t];
  if (kBarrier) __syncthreads();
  out[blockIdx.x * n + t] = s[(t + 1) % n];
}

// One float of dynamic shared memory per thread; kPastEnd writes one element too many.
template <bool kPastEnd>
__global__ void dyn_smem_kernel(float* out) {
  extern __shared__ float dyn[];
  const int t = threadIdx.x;
  dyn[t] = static_cast<float>(t);
  if (kPastEnd && t == 0) dyn[blockDim.x] = 1.f;
  __syncthreads();
  out[t] = dyn[blockDim.x - 1 - t];
}

// Warp sum; kDivergent runs the shuffle in half of the warp only.
template <bool kDivergent>
__global__ void warp_sum_kernel(float* out) {
  float v = static_cast<float>(threadIdx.x);
  if (!kDivergent || threadIdx.x < 16) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  }
  out[threadIdx.x] = v;
}

// A barrier inside a branch that only the first warp takes.
__global__ void partial_barrier_kernel(float* out) {
  if (threadIdx.x < 32) __syncthreads();
  out[threadIdx.x] = 1.f;
}

__global__ void copy_kernel(const float* in, float* out) {
  out[threadIdx.x] = in[threadIdx.x];
}

// 16-byte vector load at base + off floats.
__global__ void vec_load_kernel(const float* in, int off, float* out) {
  const float4 v = *reinterpret_cast<const float4*>(in + off);
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

// Block 0 fills static shared memory, block 1 only reads it: block 1 must see the poison
// (NaN), not what block 0 left there.
__global__ void uninit_shared_kernel(float* out) {
  __shared__ float s[64];
  if (blockIdx.x == 0) s[threadIdx.x] = 1.f;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = s[threadIdx.x];
}

__global__ void __launch_bounds__(128) bounded_kernel(float* out) { out[threadIdx.x] = 2.f; }
// The emulator cannot read __launch_bounds__ back; this declaration gives it.
EET_EMU_LAUNCH_BOUNDS(128, bounded_kernel);

struct Dev {
  float* d = nullptr;
  size_t n;
  explicit Dev(size_t count, float fill = 0.f) : n(count) {
    CK(cudaMalloc(&d, n * sizeof(float)));
    std::vector<float> h(n, fill);
    for (size_t i = 0; i < n; ++i) h[i] = fill + static_cast<float>(i);
    CK(cudaMemcpy(d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  }
  ~Dev() { cudaFree(d); }
  std::vector<float> get() const {
    std::vector<float> h(n);
    CK(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
  }
};

int rotate(bool barrier) {
  const int n = 256, blocks = 4;
  Dev in(n * blocks), out(n * blocks);
  if (barrier) EET_LAUNCH(blocks, n, 0, nullptr, rotate_kernel<true>)(in.d, out.d);
  else EET_LAUNCH(blocks, n, 0, nullptr, rotate_kernel<false>)(in.d, out.d);
  CK(cudaDeviceSynchronize());
  const std::vector<float> h = out.get();
  int bad = 0;
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < n; ++t)
      if (h[b * n + t] != static_cast<float>(b * n + (t + 1) % n)) ++bad;
  if (bad != 0) {
    std::printf("wrong result: %d of %d outputs differ (a missing __syncthreads?)\n", bad,
                n * blocks);
    return 1;
  }
  return 0;
}

int dyn_smem(bool past_end) {
  const int n = 64;
  Dev out(n);
  if (past_end) EET_LAUNCH(1, n, n * sizeof(float), nullptr, dyn_smem_kernel<true>)(out.d);
  else EET_LAUNCH(1, n, n * sizeof(float), nullptr, dyn_smem_kernel<false>)(out.d);
  const std::vector<float> h = out.get();
  for (int t = 0; t < n; ++t)
    if (h[t] != static_cast<float>(n - 1 - t)) return 1;
  return 0;
}

int warp_sum(bool divergent) {
  Dev out(32);
  if (divergent) EET_LAUNCH(1, 32, 0, nullptr, warp_sum_kernel<true>)(out.d);
  else EET_LAUNCH(1, 32, 0, nullptr, warp_sum_kernel<false>)(out.d);
  for (float v : out.get())
    if (v != 496.f) return 1;
  return 0;
}

int big_smem(bool with_attribute) {
  const size_t bytes = 64 * 1024;
  Dev out(64);
  if (with_attribute)
    CK(cudaFuncSetAttribute(dyn_smem_kernel<false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                            static_cast<int>(bytes)));
  EET_LAUNCH(1, 64, bytes, nullptr, dyn_smem_kernel<false>)(out.d);
  const std::vector<float> h = out.get();
  for (int t = 0; t < 64; ++t)
    if (h[t] != static_cast<float>(63 - t)) return 1;
  return 0;
}

int run_case(const std::string& c) {
  if (c == "missing_barrier") return rotate(false);
  if (c == "with_barrier") return rotate(true);
  if (c == "smem_past_end") return dyn_smem(true);
  if (c == "smem_in_bounds") return dyn_smem(false);
  if (c == "divergent_shuffle") return warp_sum(true);
  if (c == "converged_shuffle") return warp_sum(false);
  if (c == "partial_barrier") {
    Dev out(64);
    EET_LAUNCH(1, 64, 0, nullptr, partial_barrier_kernel)(out.d);
    return 0;
  }
  if (c == "block_2048") {
    Dev in(2048), out(2048);
    EET_LAUNCH(1, 2048, 0, nullptr, copy_kernel)(in.d, out.d);
    return 0;
  }
  if (c == "grid_y_65536") {
    Dev in(32), out(32);
    EET_LAUNCH(dim3(1, 65536), 32, 0, nullptr, copy_kernel)(in.d, out.d);
    return 0;
  }
  if (c == "smem_64k_no_attribute") return big_smem(false);
  if (c == "smem_64k_attribute") return big_smem(true);
  if (c == "launch_bounds_256_of_128") {
    Dev out(256);
    EET_LAUNCH(1, 256, 0, nullptr, bounded_kernel)(out.d);
    return 0;
  }
  if (c == "launch_bounds_128_of_128") {
    Dev out(128);
    EET_LAUNCH(1, 128, 0, nullptr, bounded_kernel)(out.d);
    for (float v : out.get())
      if (v != 2.f) return 1;
    return 0;
  }
  if (c == "misaligned_float4") {
    Dev in(64), out(1);
    EET_LAUNCH(1, 1, 0, nullptr, vec_load_kernel)(in.d, 1, out.d);
    return 0;
  }
  if (c == "aligned_float4") {
    Dev in(64), out(1);
    EET_LAUNCH(1, 1, 0, nullptr, vec_load_kernel)(in.d, 4, out.d);
    return out.get()[0] == 4.f + 5.f + 6.f + 7.f ? 0 : 1;
  }
  if (c == "uninitialized_shared_is_nan") {
    setenv("EET_CUDA_EMU_THREADS", "1", 1);  // both blocks on one worker, in order
    Dev out(128);
    EET_LAUNCH(2, 64, 0, nullptr, uninit_shared_kernel)(out.d);
    const std::vector<float> h = out.get();
    for (int i = 0; i < 128; ++i)
      if (i < 64 ? h[i] != 1.f : !std::isnan(h[i])) {
        std::printf("static shared memory was not poisoned: out[%d] = %g\n", i, h[i]);
        return 1;
      }
    return 0;
  }
  std::printf("unknown case %s\n", c.c_str());
  return 2;
}

struct Expect {
  const char* name;
  const char* message;  // nullptr: the case must pass (exit 0)
};

const Expect kCases[] = {
    {"missing_barrier", "wrong result"},
    {"with_barrier", nullptr},
    {"smem_past_end", "dyn_smem_kernel<true>"},
    {"smem_past_end", "past the end of its 256 bytes of dynamic shared memory"},
    {"smem_in_bounds", nullptr},
    {"divergent_shuffle", "divergent warp operation: __shfl_xor_sync"},
    {"divergent_shuffle", "warp_sum_kernel<true>"},
    {"converged_shuffle", nullptr},
    {"partial_barrier", "__syncthreads at"},
    {"partial_barrier", "was reached by 32 of the block's 64 threads"},
    {"block_2048", "copy_kernel"},
    {"block_2048", "2048 threads per block (limit 1024)"},
    {"grid_y_65536", "grid (1,65536,1) exceeds the limits"},
    {"smem_64k_no_attribute", "65536 bytes of dynamic shared memory exceed 48 KiB without cudaFuncSetAttribute"},
    {"smem_64k_attribute", nullptr},
    {"launch_bounds_256_of_128", "256 threads per block exceed the kernel's __launch_bounds__(128)"},
    {"launch_bounds_128_of_128", nullptr},
    {"misaligned_float4", "misaligned address"},
#if !defined(__SANITIZE_ADDRESS__)
    // The runtime names the kernel from the sanitizer's death callback, which the combined
    // ASan + UBSan runtime does not call for UBSan errors (there only the source line).
    {"misaligned_float4", "vec_load_kernel"},
#endif
    {"aligned_float4", nullptr},
    {"uninitialized_shared_is_nan", nullptr},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) return run_case(argv[1]);
  int failures = 0;
  for (const Expect& e : kCases) {
    const std::string cmd = std::string(argv[0]) + " " + e.name + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) {
      std::printf("FAIL %s: cannot run\n", e.name);
      ++failures;
      continue;
    }
    std::string out;
    char buf[4096];
    size_t k;
    while ((k = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, k);
    const int st = pclose(p);
    const bool ok_exit = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    bool ok;
    if (e.message == nullptr) ok = ok_exit;
    else ok = !ok_exit && out.find(e.message) != std::string::npos;
    std::printf("%s %-28s expected %s\n", ok ? "PASS" : "FAIL", e.name,
                e.message != nullptr ? e.message : "success");
    if (!ok) {
      ++failures;
      std::printf("  output:\n%s\n", out.c_str());
    }
  }
  std::printf("%d/%zu cases behaved as expected\n",
              static_cast<int>(sizeof kCases / sizeof kCases[0]) - failures,
              sizeof kCases / sizeof kCases[0]);
  return failures == 0 ? 0 : 1;
}
