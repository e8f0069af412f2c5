// A small CUDA runtime for the CPU: with this directory first on the include path, the host
// C++ compiler builds the unmodified csrc/cuda/*.cu kernels (launched through EET_LAUNCH) and
// runs them on fibers. Implementation and the execution model: cuda_emu.cpp.
//
// What it provides: the CUDA keywords, threadIdx/blockIdx/blockDim/gridDim, dim3 and the
// vector types, __half/__nv_bfloat16 (+ x2 forms), the math functions and intrinsics the
// kernels use, __syncthreads/__syncwarp/__shfl*_sync, static and dynamic __shared__ memory
// (one copy per running block, poisoned with 0xFF bytes = NaN at block start), and the runtime
// API calls of the tests (memory on the host heap, one emulated device, synchronous streams).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------------------------------
// Keywords. __shared__ is thread_local: a block-scope thread_local is static (one copy per OS
// thread, and an OS thread runs one block at a time), and `extern __shared__ T x[];` stays a
// valid declaration whose definition the build generates (cmake/cuda_emu_dynsmem.cmake).
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __shared__ thread_local
#define __constant__
#define __managed__
// The attribute cannot be read back from a template function; checks use
// EET_EMU_LAUNCH_BOUNDS declarations (see below) where a test needs them.
#define __launch_bounds__(...)
#define __CUDACC_EMULATION__ 1

#ifndef INFINITY
#define INFINITY __builtin_inff()
#endif

// ---------------------------------------------------------------------------------------
// Vector types (same sizes and alignments as CUDA's).
#define EET_EMU_VEC2(T, N, A) \
  struct alignas(A) N##2 { T x, y; };
#define EET_EMU_VEC4(T, N, A) \
  struct alignas(A) N##4 { T x, y, z, w; };
struct uint3 { unsigned int x, y, z; };
struct int3 { int x, y, z; };
struct float3 { float x, y, z; };
EET_EMU_VEC2(float, float, 8)
EET_EMU_VEC4(float, float, 16)
EET_EMU_VEC2(int, int, 8)
EET_EMU_VEC4(int, int, 16)
EET_EMU_VEC2(unsigned int, uint, 8)
EET_EMU_VEC4(unsigned int, uint, 16)
EET_EMU_VEC2(short, short, 4)
EET_EMU_VEC4(short, short, 8)
EET_EMU_VEC2(unsigned short, ushort, 4)
EET_EMU_VEC4(unsigned short, ushort, 8)
EET_EMU_VEC2(signed char, char, 2)
EET_EMU_VEC4(signed char, char, 4)
EET_EMU_VEC2(unsigned char, uchar, 2)
EET_EMU_VEC4(unsigned char, uchar, 4)
EET_EMU_VEC2(double, double, 16)
EET_EMU_VEC2(long long, longlong, 16)
#undef EET_EMU_VEC2
#undef EET_EMU_VEC4

inline float2 make_float2(float x, float y) { return {x, y}; }
inline float3 make_float3(float x, float y, float z) { return {x, y, z}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return {x, y, z}; }
};

// ---------------------------------------------------------------------------------------
// Math and intrinsics (fp32; the fast-math forms are the accurate ones here).
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.f / x; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
template <typename T>
inline T __ldg(const T* p) { return *p; }
// erff, exp2f, expf, fmaf, fmaxf, fminf, sqrtf, tanhf, ...: the C library's (from <cmath>).

// ---------------------------------------------------------------------------------------
// fp16 / bf16.
namespace eet_emu {
inline uint32_t f2u(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float u2f(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

inline uint16_t float_to_half_bits(float f) {
  const uint32_t x = f2u(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return 0x7fffu;                       // NaN
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520: inf
  if (ax <= 0x33000000u) return static_cast<uint16_t>(sign);  // <= 2^-25: (ties to) zero
  if (ax < 0x38800000u) {                                     // half subnormal
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(ax >> 23);
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t h = (ax - 0x38000000u) >> 13;
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = std::ldexp(static_cast<float>(m), -24);
    return sign ? -v : v;
  }
  if (e == 31) return u2f(sign | 0x7f800000u | (m << 13));
  return u2f(sign | ((e + 112u) << 23) | (m << 13));
}

inline uint16_t float_to_bf16_bits(float f) {
  const uint32_t x = f2u(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
inline float bf16_bits_to_float(uint16_t b) { return u2f(static_cast<uint32_t>(b) << 16); }
}  // namespace eet_emu

struct __half {
  unsigned short __x;
  __half() = default;
  __half(float f) : __x(eet_emu::float_to_half_bits(f)) {}
  __half(double f) : __x(eet_emu::float_to_half_bits(static_cast<float>(f))) {}
  operator float() const { return eet_emu::half_bits_to_float(__x); }
};
struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(eet_emu::float_to_bf16_bits(f)) {}
  __nv_bfloat16(double f) : __x(eet_emu::float_to_bf16_bits(static_cast<float>(f))) {}
  operator float() const { return eet_emu::bf16_bits_to_float(__x); }
};
struct alignas(4) __half2 { __half x, y; };
struct alignas(4) __nv_bfloat162 { __nv_bfloat16 x, y; };
using half = __half;
using half2 = __half2;

inline float __half2float(__half h) { return eet_emu::half_bits_to_float(h.__x); }
inline __half __float2half_rn(float f) { __half h; h.__x = eet_emu::float_to_half_bits(f); return h; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float2 __half22float2(__half2 h) { return {__half2float(h.x), __half2float(h.y)}; }
inline __half2 __floats2half2_rn(float a, float b) { return {__float2half_rn(a), __float2half_rn(b)}; }
inline __half2 __float22half2_rn(float2 f) { return __floats2half2_rn(f.x, f.y); }
inline __half2 __half2half2(__half h) { return {h, h}; }
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }

inline float __bfloat162float(__nv_bfloat16 b) { return eet_emu::bf16_bits_to_float(b.__x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  __nv_bfloat16 b;
  b.__x = eet_emu::float_to_bf16_bits(f);
  return b;
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float2 __bfloat1622float2(__nv_bfloat162 h) { return {__bfloat162float(h.x), __bfloat162float(h.y)}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}
inline __nv_bfloat162 __float22bfloat162_rn(float2 f) { return __floats2bfloat162_rn(f.x, f.y); }

// Arithmetic on the 16-bit types: fp32 math, one rounding (like CUDA on sm_80+).
#define EET_EMU_ARITH(T, CVT)                                                     \
  inline T operator+(T a, T b) { return CVT(float(a) + float(b)); }             \
  inline T operator-(T a, T b) { return CVT(float(a) - float(b)); }             \
  inline T operator*(T a, T b) { return CVT(float(a) * float(b)); }             \
  inline T operator/(T a, T b) { return CVT(float(a) / float(b)); }             \
  inline T operator-(T a) { T r = a; r.__x ^= 0x8000u; return r; }               \
  inline T& operator+=(T& a, T b) { return a = a + b; }                          \
  inline T& operator*=(T& a, T b) { return a = a * b; }                          \
  inline bool operator==(T a, T b) { return float(a) == float(b); }              \
  inline bool operator!=(T a, T b) { return float(a) != float(b); }              \
  inline bool operator<(T a, T b) { return float(a) < float(b); }                \
  inline bool operator>(T a, T b) { return float(a) > float(b); }
EET_EMU_ARITH(__half, __float2half_rn)
EET_EMU_ARITH(__nv_bfloat16, __float2bfloat16_rn)
#undef EET_EMU_ARITH
inline __half __hadd(__half a, __half b) { return a + b; }
inline __half __hmul(__half a, __half b) { return a * b; }
inline __nv_bfloat16 __hadd(__nv_bfloat16 a, __nv_bfloat16 b) { return a + b; }
inline __nv_bfloat16 __hmul(__nv_bfloat16 a, __nv_bfloat16 b) { return a * b; }

// ---------------------------------------------------------------------------------------
// Runtime API.
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorLaunchFailure = 4,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorLaunchOutOfResources = 701,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDevice(int* dev);
cudaError_t cudaSetDevice(int dev);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int dev);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaMalloc(void** p, size_t bytes);
template <typename T>
inline cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value);
template <typename F>
inline cudaError_t cudaFuncSetAttribute(F* func, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}

// ---------------------------------------------------------------------------------------
// Execution. See cuda_emu.cpp for the scheduler.
namespace eet_emu {

struct ThreadState {
  uint3 tid;  // first member: threadIdx reads it through the current fiber pointer
};
struct BlockState {
  uint3 bid;
  dim3 bdim, gdim;
};
// Per OS thread (a __thread POD, so no TLS wrapper calls): the running fiber and block.
struct Tls {
  ThreadState* cur;
  BlockState* blk;
};
extern __thread Tls tls;

enum WarpKind { kShflIdx = 0, kShflUp = 1, kShflDown = 2, kShflXor = 3, kSyncWarp = 4 };
uint64_t warp_op(WarpKind kind, unsigned mask, uint64_t value, int param, int width,
                 const char* what, const char* file, int line);
void syncthreads(const char* file, int line);

template <typename T>
inline T shfl(WarpKind kind, unsigned mask, T v, int param, int width, const char* what,
              const char* file, int line) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                "warp shuffles move up to 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  b = warp_op(kind, mask, b, param, width, what, file, line);
  T r;
  std::memcpy(&r, &b, sizeof(T));
  return r;
}

struct LaunchConfig {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  const char* expr;  // the kernel expression at the launch site
  const char* site;  // __PRETTY_FUNCTION__ of the launching function (its template arguments)
  const char* file;
  int line;
};
// Runs the grid to completion (the launch is synchronous); invoke(args) runs the kernel body
// for the current fiber. func: the kernel's address, or null where it could not be resolved.
// Launch-limit violations abort with a message naming the kernel.
void launch(const LaunchConfig& cfg, const void* func, void (*invoke)(void*), void* args);

// The launch log: what ran, with which configuration (for tests of the launch heuristics).
// Off until enable_launch_log(true); then the newest kLaunchLogMax launches are kept.
struct LaunchRecord {
  const char* kernel;  // the kernel expression of EET_LAUNCH (static storage)
  dim3 grid, block;
  size_t smem;
};
constexpr size_t kLaunchLogMax = 4096;
void enable_launch_log(bool on);
// Returns the logged launches, oldest first, and clears the log.
size_t take_launch_log(LaunchRecord* out, size_t max);

// Declares a kernel's __launch_bounds__ to the emulator (the attribute itself cannot be read
// back): EET_EMU_LAUNCH_BOUNDS(128, kernel_name) next to the kernel, by the kernel's name
// (a template: every instantiation; the name as the launches spell it, without namespaces).
// nvcc builds define it empty (csrc/cuda/common.cuh); tests/test_cuda_sources.py checks that
// every __launch_bounds__ kernel of csrc/cuda has its declaration with the same value.
int set_launch_bounds(const char* kernel_name, int max_threads);
#define EET_EMU_LAUNCH_BOUNDS(n, name)                                                   \
  static const int EET_EMU_CAT(eet_emu_lb_, __LINE__) = ::eet_emu::set_launch_bounds(#name, (n));
#define EET_EMU_CAT2(a, b) a##b
#define EET_EMU_CAT(a, b) EET_EMU_CAT2(a, b)

template <typename T>
struct Tag {
  using type = T;
};

// call(args...) calls the kernel (template arguments deduced like a <<<>>> launch does);
// addr(Tag<void (*)(P...)>) converts the kernel to that pointer type where it can.
template <typename Call, typename Addr>
struct Launcher {
  LaunchConfig cfg;
  Call call;
  Addr addr;
  template <typename... A>
  void operator()(A&&... a) const {
    struct Pack {
      Call call;
      std::tuple<std::decay_t<A>...> args;
    } pack{call, std::tuple<std::decay_t<A>...>(std::forward<A>(a)...)};
    using FP = void (*)(std::decay_t<A>...);
    const void* func = nullptr;
    if constexpr (std::is_invocable<Addr, Tag<FP>>::value)
      func = reinterpret_cast<const void*>(addr(Tag<FP>{}));
    launch(cfg, func,
           [](void* p) {
             Pack& k = *static_cast<Pack*>(p);
             std::apply(k.call, k.args);  // each thread's kernel parameters: copies
           },
           &pack);
  }
};
template <typename Call, typename Addr>
Launcher<Call, Addr> make_launcher(const LaunchConfig& cfg, Call call, Addr addr) {
  return {cfg, call, addr};
}

}  // namespace eet_emu

#define threadIdx (::eet_emu::tls.cur->tid)
#define blockIdx (::eet_emu::tls.blk->bid)
#define blockDim (::eet_emu::tls.blk->bdim)
#define gridDim (::eet_emu::tls.blk->gdim)
constexpr int warpSize = 32;

#define __syncthreads() ::eet_emu::syncthreads(__FILE__, __LINE__)
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  ::eet_emu::warp_op(::eet_emu::kSyncWarp, mask, 0, 0, 32, "__syncwarp", file, line);
}
#define EET_EMU_SHFL(NAME, KIND)                                                         \
  template <typename T>                                                                  \
  inline T NAME(unsigned mask, T v, int p, int width = 32,                               \
                const char* file = __builtin_FILE(), int line = __builtin_LINE()) {      \
    return ::eet_emu::shfl(::eet_emu::KIND, mask, v, p, width, #NAME, file, line);       \
  }
EET_EMU_SHFL(__shfl_sync, kShflIdx)
EET_EMU_SHFL(__shfl_up_sync, kShflUp)
EET_EMU_SHFL(__shfl_down_sync, kShflDown)
EET_EMU_SHFL(__shfl_xor_sync, kShflXor)
#undef EET_EMU_SHFL

// The one launch form of the kernels: EET_LAUNCH(grid, block, smem, stream, kernel)(args...)
// (nvcc: kernel<<<grid, block, smem, stream>>>(args...), see csrc/cuda/common.cuh).
#define EET_LAUNCH(grid, block, smem, stream, ...)                                          \
  ::eet_emu::make_launcher(                                                                  \
      ::eet_emu::LaunchConfig{dim3(grid), dim3(block), static_cast<size_t>(smem), (stream),   \
                              #__VA_ARGS__, __PRETTY_FUNCTION__, __FILE__, __LINE__},         \
      [](auto&&... eet_a) { __VA_ARGS__(static_cast<decltype(eet_a)&&>(eet_a)...); },          \
      [](auto eet_tag) -> decltype(static_cast<typename decltype(eet_tag)::type>(               \
                           &__VA_ARGS__)) {                                                   \
        return static_cast<typename decltype(eet_tag)::type>(&__VA_ARGS__);                   \
      })
