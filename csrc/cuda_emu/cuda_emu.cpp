// CPU runtime of the CUDA emulation (cuda_emu.h).
//
// Execution model. A launch runs synchronously: its blocks are handed out to W worker OS
// threads (EET_CUDA_EMU_THREADS, default 2), one block at a time per worker. The threads of a
// block are fibers on that worker (a hand-written x86-64 context switch, 64 KiB stacks with a
// guard page, reused). A fiber runs until it reaches __syncthreads, a warp shuffle or
// __syncwarp, or exits; then the scheduler runs the next one. When no fiber can run, the
// scheduler completes every warp operation whose lanes all arrived, else releases the
// barrier if every thread of the block is waiting at the same one, else reports the
// divergence. Between two synchronization points the fibers run in an order shuffled by
// EET_CUDA_EMU_SEED (default 1; 0 = in thread order), so a missing barrier gives wrong
// results instead of lucky ones.
//
// Shared memory. `__shared__` is thread_local (cuda_emu.h), so static shared arrays live in
// the TLS block of the worker for the module the kernels are linked into (the executable, or
// the Python extension of the emulation build); dynamic shared memory lives in thread_local
// arenas whose definitions the build generates for the `extern __shared__` names. A worker
// fills its whole TLS block with 0xFF bytes (NaN in fp32/fp16/bf16) when it starts a launch;
// after its first block it records the TLS range that block wrote and re-poisons that range
// (and the requested dynamic bytes plus a guard zone) before every later block. The guard
// zone after the dynamic bytes is checked after every block (writes past the end).
//
// Checks fail loudly (message naming the kernel, then abort): launch limits, the kernel's
// launch bounds where declared (EET_EMU_LAUNCH_BOUNDS), dynamic shared memory over 48 KiB without
// cudaFuncSetAttribute (227 KiB with it), barriers not reached by every thread, warp
// operations whose mask names a lane that did not reach the same operation, shuffles reading
// a lane outside the mask, dynamic shared memory writes past the end. Misaligned vector
// accesses are caught by -fsanitize=alignment, with which the build compiles the kernels.
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cuda_emu.h"

#if defined(__SANITIZE_ADDRESS__)
#define EET_EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

extern "C" void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));

#if !defined(__x86_64__)
#error "the CUDA emulation's context switch is written for x86-64"
#endif

// eet_emu_swap_ctx(save, to): saves the callee-saved registers on the current stack, stores
// the stack pointer in *save, switches to the stack `to` and restores its registers.
asm(R"(
.pushsection .text
.globl eet_emu_swap_ctx
.type eet_emu_swap_ctx,@function
eet_emu_swap_ctx:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size eet_emu_swap_ctx,.-eet_emu_swap_ctx
.popsection
)");
extern "C" void eet_emu_swap_ctx(void** save, void* to);

// `extern __shared__ T x[];` in an anonymous namespace is an internal-linkage thread_local that
// the translation unit never defines; GCC then calls the unit's TLS initializer __tls_init,
// which such a unit (without dynamically initialized thread_locals) does not emit. The arenas
// need no initialization: this global no-op satisfies those calls (a unit that has its own
// __tls_init binds to it locally).
asm(R"(
.pushsection .text
.globl __tls_init
.hidden __tls_init
.type __tls_init,@function
__tls_init:
  ret
.size __tls_init,.-__tls_init
.popsection
)");

__thread eet_emu::Tls eet_emu::tls;

namespace eet_emu {
namespace {

constexpr size_t kDefaultSmem = 48 * 1024;
constexpr size_t kMaxSmemOptin = 227 * 1024;
constexpr size_t kGuard = 256;  // checked bytes after the requested dynamic shared memory

enum FState { kRunnable, kBarrier, kWarp, kDone };

struct Fiber : ThreadState {
  int linear = 0;
  FState st = kDone;
  void* sp = nullptr;
  char* stack_lo = nullptr;
  size_t stack_size = 0;
  void* fake = nullptr;  // ASan fake stack while suspended
  // Where the fiber waits.
  const char* what = nullptr;
  const char* file = nullptr;
  int line = 0;
  WarpKind kind = kSyncWarp;
  unsigned mask = 0;
  int param = 0, width = 32;
  uint64_t value = 0, result = 0;
};

struct Launch {
  LaunchConfig cfg;
  std::string name;
  void (*invoke)(void*);
  void* args;
  uint64_t nblocks;
  uint64_t index;
  std::atomic<uint64_t> next{0};
};

struct Worker : BlockState {
  std::vector<Fiber> fibers;
  std::vector<int> order;
  void* sched_sp = nullptr;
  const void* sched_bottom = nullptr;
  size_t sched_size = 0;
  void* sched_fake = nullptr;
  Launch* L = nullptr;
  uint64_t rng = 0;
  unsigned char* tls_lo = nullptr;  // the executable's TLS block (.tbss part) of this thread
  unsigned char* tls_hi = nullptr;
  unsigned char* learned_lo = nullptr;
  unsigned char* learned_hi = nullptr;
  bool learned = false;
};

struct Arena {
  unsigned char* (*get)();
  size_t bytes;
};

std::mutex g_launch_mu;
std::mutex g_attr_mu;
// Function-local statics: kernels may declare their bounds during static initialization.
std::map<const void*, int>& max_dyn_smem() {
  static std::map<const void*, int> m;
  return m;
}
std::map<std::string, int>& launch_bounds_map() {
  static std::map<std::string, int> m;
  return m;
}
std::vector<Arena>& arenas() {
  static std::vector<Arena> a;
  return a;
}
std::vector<std::unique_ptr<Worker>> g_workers;  // by worker index; reused across launches
std::atomic<Launch*> g_current{nullptr};
cudaError_t g_last_error = cudaSuccess;
uint64_t g_launch_count = 0;
bool g_log_on = false;              // guarded by g_launch_mu
std::deque<LaunchRecord> g_log;     // guarded by g_launch_mu

size_t stack_bytes() {
  static const size_t s = [] {
    const char* e = std::getenv("EET_CUDA_EMU_STACK_KB");
    size_t kb = e != nullptr ? std::strtoul(e, nullptr, 10) : 0;
#ifdef EET_EMU_ASAN
    if (kb == 0) kb = 256;
#else
    if (kb == 0) kb = 64;
#endif
    return kb * 1024;
  }();
  return s;
}

uint64_t seed() {
  static const uint64_t s = [] {
    const char* e = std::getenv("EET_CUDA_EMU_SEED");
    return e != nullptr ? std::strtoull(e, nullptr, 10) : 1ull;
  }();
  return s;
}

unsigned worker_count() {
  static const unsigned n = [] {
    const char* e = std::getenv("EET_CUDA_EMU_THREADS");
    unsigned v = e != nullptr ? static_cast<unsigned>(std::strtoul(e, nullptr, 10)) : 2u;
    if (v < 1) v = 1;
    if (v > 64) v = 64;
    return v;
  }();
  return n;
}

Worker* cur_worker() { return static_cast<Worker*>(tls.blk); }

std::string describe_context() {
  std::string s;
  Launch* L = g_current.load();
  if (L == nullptr) return s;
  char buf[512];
  std::snprintf(buf, sizeof buf, "kernel %s (launched at %s:%d, grid (%u,%u,%u), block (%u,%u,%u))",
                L->name.c_str(), L->cfg.file, L->cfg.line, L->cfg.grid.x, L->cfg.grid.y,
                L->cfg.grid.z, L->cfg.block.x, L->cfg.block.y, L->cfg.block.z);
  s = buf;
  if (Worker* w = cur_worker()) {
    std::snprintf(buf, sizeof buf, ", block (%u,%u,%u)", w->bid.x, w->bid.y, w->bid.z);
    s += buf;
    if (tls.cur != nullptr) {
      std::snprintf(buf, sizeof buf, ", thread (%u,%u,%u)", tls.cur->tid.x, tls.cur->tid.y,
                    tls.cur->tid.z);
      s += buf;
    }
  }
  return s;
}

[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void fail(const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "eet cuda emulation: %s: %s\n", describe_context().c_str(), msg);
  std::fflush(stderr);
  std::abort();
}

void death_callback() {
  const std::string ctx = describe_context();
  if (!ctx.empty()) std::fprintf(stderr, "eet cuda emulation: the error above happened in %s\n", ctx.c_str());
}

struct DeathHook {
  DeathHook() {
    if (__sanitizer_set_death_callback != nullptr) __sanitizer_set_death_callback(death_callback);
  }
} g_death_hook;

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// ---------------------------------------------------------------------------------------
// TLS poisoning.

// The module (executable or shared library) whose TLS block holds the kernels' shared memory:
// the one this runtime is linked into (the ctest executables, or the Python extension of the
// CUDA emulation build), found by the address of one of its functions.
int find_tls(dl_phdr_info* info, size_t, void* data) {
  auto* w = static_cast<Worker*>(data);
  const auto here = reinterpret_cast<uintptr_t>(&find_tls);
  bool mine = false;
  for (int i = 0; i < info->dlpi_phnum && !mine; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    mine = ph.p_type == PT_LOAD && here >= lo && here < lo + ph.p_memsz;
  }
  if (!mine) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_TLS && info->dlpi_tls_data != nullptr) {
      auto* base = static_cast<unsigned char*>(info->dlpi_tls_data);
      w->tls_lo = base + ph.p_filesz;  // only the zero-initialized part (.tbss)
      w->tls_hi = base + ph.p_memsz;
    }
  }
  return 1;
}

// Fills [lo, hi) with 0xFF, except this runtime's own TLS state.
void poison(unsigned char* lo, unsigned char* hi) {
  if (hi <= lo) return;
  const Tls saved = tls;
  std::memset(lo, 0xFF, static_cast<size_t>(hi - lo));
  tls = saved;
}

void poison_arenas(size_t dyn_bytes) {
  for (const Arena& a : arenas()) std::memset(a.get(), 0xFF, dyn_bytes + kGuard);
}

void check_arenas(size_t dyn_bytes) {
  for (const Arena& a : arenas()) {
    const unsigned char* p = a.get() + dyn_bytes;
    for (size_t i = 0; i < kGuard; ++i)
      if (p[i] != 0xFF)
        fail("wrote %zu byte(s) past the end of its %zu bytes of dynamic shared memory",
             i + 1, dyn_bytes);
  }
}

// After the first block of a launch on this worker: the TLS range it wrote (static shared
// arrays), to re-poison before each later block.
void learn_range(Worker& w, size_t dyn_bytes) {
  poison_arenas(dyn_bytes);
  const Tls saved = tls;
  std::memset(&tls, 0xFF, sizeof tls);
  unsigned char* lo = nullptr;
  unsigned char* hi = nullptr;
  for (unsigned char* p = w.tls_lo; p < w.tls_hi; ++p) {
    if (*p != 0xFF) {
      if (lo == nullptr) lo = p;
      hi = p + 1;
    }
  }
  tls = saved;
  w.learned_lo = lo;
  w.learned_hi = hi;
  w.learned = true;
}

// ---------------------------------------------------------------------------------------
// Fibers.

#ifdef EET_EMU_ASAN
void asan_start(void** fake, const void* bottom, size_t size) {
  __sanitizer_start_switch_fiber(fake, bottom, size);
}
void asan_finish(void* fake, const void** bottom, size_t* size) {
  __sanitizer_finish_switch_fiber(fake, bottom, size);
}
#else
void asan_start(void**, const void*, size_t) {}
void asan_finish(void*, const void**, size_t*) {}
#endif

extern "C" void eet_emu_fiber_entry() {
  Worker& w = *cur_worker();
  Fiber& f = *static_cast<Fiber*>(tls.cur);
  asan_finish(nullptr, &w.sched_bottom, &w.sched_size);
  w.L->invoke(w.L->args);
  f.st = kDone;
  asan_start(nullptr, w.sched_bottom, w.sched_size);
  eet_emu_swap_ctx(&f.sp, w.sched_sp);
  std::abort();  // a finished fiber is never resumed
}

void init_fiber(Fiber& f) {
  if (f.stack_lo == nullptr) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t size = stack_bytes();
    void* m = mmap(nullptr, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (m == MAP_FAILED) fail("cannot allocate a fiber stack");
    mprotect(m, page, PROT_NONE);  // guard page: a stack overflow faults
    f.stack_lo = static_cast<char*>(m) + page;
    f.stack_size = size;
  }
#ifdef EET_EMU_ASAN
  __asan_unpoison_memory_region(f.stack_lo, f.stack_size);
#endif
  auto top = reinterpret_cast<uintptr_t>(f.stack_lo + f.stack_size) & ~uintptr_t{15};
  auto* s = reinterpret_cast<void**>(top);
  s[-1] = nullptr;                                            // fake return address
  s[-2] = reinterpret_cast<void*>(&eet_emu_fiber_entry);      // popped by ret
  for (int i = 3; i <= 8; ++i) s[-i] = nullptr;               // rbp rbx r12 r13 r14 r15
  f.sp = &s[-8];
  f.fake = nullptr;
}

void resume(Worker& w, Fiber& f) {
  tls.cur = &f;
  asan_start(&w.sched_fake, f.stack_lo, f.stack_size);
  eet_emu_swap_ctx(&w.sched_sp, f.sp);
  asan_finish(w.sched_fake, nullptr, nullptr);
  tls.cur = nullptr;
}

void yield(Fiber& f) {
  Worker& w = *cur_worker();
  asan_start(&f.fake, w.sched_bottom, w.sched_size);
  eet_emu_swap_ctx(&f.sp, w.sched_sp);
  asan_finish(f.fake, nullptr, nullptr);
}

Fiber& cur_fiber(const char* what) {
  if (tls.cur == nullptr) {
    std::fprintf(stderr, "eet cuda emulation: %s called outside a kernel\n", what);
    std::abort();
  }
  return *static_cast<Fiber*>(tls.cur);
}

// ---------------------------------------------------------------------------------------
// Scheduler.

const char* state_text(const Fiber& g, char* buf, size_t n) {
  switch (g.st) {
    case kDone: return "it exited";
    case kBarrier: std::snprintf(buf, n, "it waits at __syncthreads at %s:%d", g.file, g.line); return buf;
    case kWarp:
      std::snprintf(buf, n, "it waits at %s at %s:%d with mask 0x%08x", g.what, g.file, g.line,
                    g.mask);
      return buf;
    default: return "it is runnable";
  }
}

int source_lane(const Fiber& f, int lane) {
  const int w = f.width;
  switch (f.kind) {
    case kShflIdx: return (lane & ~(w - 1)) + (f.param & (w - 1));
    case kShflUp: return (lane & (w - 1)) - f.param < 0 ? lane : lane - f.param;
    case kShflDown: return (lane & (w - 1)) + f.param >= w ? lane : lane + f.param;
    case kShflXor: {
      const int s = lane ^ f.param;
      return (s / w) > (lane / w) ? lane : s;  // later groups: own value
    }
    default: return lane;
  }
}

// Completes every warp operation whose lanes have all arrived. True if any did.
bool resolve_warps(Worker& w, int n) {
  bool progress = false;
  for (int base = 0; base < n; base += 32) {
    const int lanes = n - base < 32 ? n - base : 32;
    for (int l = 0; l < lanes; ++l) {
      Fiber& f = w.fibers[base + l];
      if (f.st != kWarp) continue;
      const unsigned m = f.mask;
      if (!(m >> l & 1u)) {
        tls.cur = &f;
        fail("%s at %s:%d: mask 0x%08x does not include the calling lane %d", f.what, f.file,
             f.line, m, l);
      }
      if (lanes < 32 && (m >> lanes) != 0u) {
        tls.cur = &f;
        fail("%s at %s:%d: mask 0x%08x names lanes past the end of the block's last warp "
             "(%d lanes)", f.what, f.file, f.line, m, lanes);
      }
      bool ready = true;
      for (int b = 0; b < lanes && ready; ++b) {
        if (!(m >> b & 1u)) continue;
        const Fiber& g = w.fibers[base + b];
        ready = g.st == kWarp && g.file == f.file && g.line == f.line && g.mask == m &&
                g.kind == f.kind;
      }
      if (!ready) continue;
      for (int b = 0; b < lanes; ++b) {
        if (!(m >> b & 1u)) continue;
        Fiber& g = w.fibers[base + b];
        if (g.kind != kSyncWarp) {
          const int s = source_lane(g, b);
          if (s < 0 || s >= 32 || !(m >> s & 1u)) {
            tls.cur = &g;
            fail("%s at %s:%d: lane %d reads lane %d, which is not in the mask 0x%08x", g.what,
                 g.file, g.line, b, s, m);
          }
          g.result = w.fibers[base + s].value;
        }
      }
      for (int b = 0; b < lanes; ++b)
        if (m >> b & 1u) w.fibers[base + b].st = kRunnable;
      progress = true;
    }
  }
  return progress;
}

[[noreturn]] void diagnose_deadlock(Worker& w, int n) {
  char buf[256];
  for (int i = 0; i < n; ++i) {
    Fiber& f = w.fibers[i];
    if (f.st != kWarp) continue;
    const int base = i & ~31, lanes = n - base < 32 ? n - base : 32;
    for (int b = 0; b < lanes; ++b) {
      if (!(f.mask >> b & 1u)) continue;
      const Fiber& g = w.fibers[base + b];
      if (g.st == kWarp && g.file == f.file && g.line == f.line && g.mask == f.mask &&
          g.kind == f.kind)
        continue;
      tls.cur = &f;
      fail("divergent warp operation: %s at %s:%d with mask 0x%08x (warp %d): lane %d did not "
           "reach it (%s)", f.what, f.file, f.line, f.mask, base / 32, b,
           state_text(g, buf, sizeof buf));
    }
  }
  fail("deadlock in the block scheduler");
}

void run_block(Worker& w) {
  const int n = static_cast<int>(w.bdim.x * w.bdim.y * w.bdim.z);
  if (static_cast<int>(w.fibers.size()) < n) w.fibers.resize(n);
  for (int i = 0; i < n; ++i) {
    Fiber& f = w.fibers[i];
    f.linear = i;
    f.tid = {static_cast<unsigned>(i) % w.bdim.x, (static_cast<unsigned>(i) / w.bdim.x) % w.bdim.y,
             static_cast<unsigned>(i) / (w.bdim.x * w.bdim.y)};
    f.st = kRunnable;
    init_fiber(f);
  }
  const bool shuffle = seed() != 0;
  for (;;) {
    w.order.clear();
    for (int i = 0; i < n; ++i)
      if (w.fibers[i].st == kRunnable) w.order.push_back(i);
    if (shuffle) {
      for (size_t i = w.order.size(); i > 1; --i) {
        const size_t j = splitmix(w.rng) % i;
        std::swap(w.order[i - 1], w.order[j]);
      }
    }
    for (int i : w.order) resume(w, w.fibers[i]);
    if (resolve_warps(w, n)) continue;
    int done = 0, barrier = 0, first_done = -1, first_barrier = -1;
    for (int i = 0; i < n; ++i) {
      const FState st = w.fibers[i].st;
      if (st == kDone) {
        ++done;
        if (first_done < 0) first_done = i;
      } else if (st == kBarrier) {
        ++barrier;
        if (first_barrier < 0) first_barrier = i;
      }
    }
    if (done == n) return;
    if (barrier + done == n) {
      Fiber& f = w.fibers[first_barrier];
      if (done > 0) {
        tls.cur = &f;
        const Fiber& g = w.fibers[first_done];
        fail("__syncthreads at %s:%d was reached by %d of the block's %d threads; thread "
             "(%u,%u,%u) exited without reaching it", f.file, f.line, barrier, n, g.tid.x,
             g.tid.y, g.tid.z);
      }
      for (int i = 0; i < n; ++i) {
        const Fiber& g = w.fibers[i];
        if (g.file != f.file || g.line != f.line) {
          tls.cur = &f;
          fail("threads of one block wait at different barriers: __syncthreads at %s:%d "
               "(thread (%u,%u,%u)) and at %s:%d (thread (%u,%u,%u))", f.file, f.line, f.tid.x,
               f.tid.y, f.tid.z, g.file, g.line, g.tid.x, g.tid.y, g.tid.z);
        }
      }
      for (int i = 0; i < n; ++i) w.fibers[i].st = kRunnable;
      continue;
    }
    diagnose_deadlock(w, n);
  }
}

void worker_main(Launch* L, unsigned index) {
  Worker& w = *g_workers[index];
  w.L = L;
  w.bdim = L->cfg.block;
  w.gdim = L->cfg.grid;
  tls.blk = &w;
  tls.cur = nullptr;
  w.tls_lo = w.tls_hi = nullptr;
  dl_iterate_phdr(find_tls, &w);
  poison(w.tls_lo, w.tls_hi);
  w.learned = false;
  const size_t dyn = L->cfg.smem;
  const uint64_t gx = L->cfg.grid.x, gy = L->cfg.grid.y;
  for (;;) {
    const uint64_t b = L->next.fetch_add(1);
    if (b >= L->nblocks) break;
    w.bid = {static_cast<unsigned>(b % gx), static_cast<unsigned>((b / gx) % gy),
             static_cast<unsigned>(b / (gx * gy))};
    uint64_t s = seed() * 0x2545F4914F6CDD1Dull ^ (L->index << 32) ^ b;
    w.rng = splitmix(s);
    if (w.learned) poison(w.learned_lo, w.learned_hi);
    poison_arenas(dyn);
    run_block(w);
    check_arenas(dyn);
    if (!w.learned) learn_range(w, dyn);
  }
  tls.blk = nullptr;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Kernel-side entry points.

void syncthreads(const char* file, int line) {
  Fiber& f = cur_fiber("__syncthreads");
  f.st = kBarrier;
  f.file = file;
  f.line = line;
  yield(f);
}

uint64_t warp_op(WarpKind kind, unsigned mask, uint64_t value, int param, int width,
                 const char* what, const char* file, int line) {
  Fiber& f = cur_fiber(what);
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    fail("%s at %s:%d: width %d is not a power of two <= 32", what, file, line, width);
  f.st = kWarp;
  f.kind = kind;
  f.mask = mask;
  f.value = value;
  f.param = param;
  f.width = width;
  f.what = what;
  f.file = file;
  f.line = line;
  yield(f);
  return f.result;
}

// The kernel's name in an EET_LAUNCH expression: "detail::foo_kernel<T, 4>" -> "foo_kernel".
std::string kernel_base_name(const char* expr) {
  std::string s(expr);
  s = s.substr(0, s.find('<'));
  const size_t colon = s.rfind("::");
  if (colon != std::string::npos) s = s.substr(colon + 2);
  const size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

int set_launch_bounds(const char* kernel_name, int max_threads) {
  std::lock_guard<std::mutex> lock(g_attr_mu);
  launch_bounds_map()[kernel_base_name(kernel_name)] = max_threads;
  return max_threads;
}

void launch(const LaunchConfig& cfg, const void* func, void (*invoke)(void*), void* args) {
  std::lock_guard<std::mutex> lock(g_launch_mu);
  Launch L;
  L.cfg = cfg;
  // The kernel expression, plus the template arguments of the launching function.
  L.name = cfg.expr;
  const std::string site = cfg.site;
  const size_t at = site.find(" [with ");
  if (at != std::string::npos) L.name += site.substr(at);
  int launch_bounds = 0;
  {
    std::lock_guard<std::mutex> alock(g_attr_mu);
    auto it = launch_bounds_map().find(kernel_base_name(cfg.expr));
    if (it != launch_bounds_map().end()) launch_bounds = it->second;
  }
  L.invoke = invoke;
  L.args = args;
  L.index = g_launch_count++;
  if (g_log_on) {
    if (g_log.size() == kLaunchLogMax) g_log.pop_front();
    g_log.push_back(LaunchRecord{cfg.expr, cfg.grid, cfg.block, cfg.smem});
  }
  g_current.store(&L);
  const dim3 b = cfg.block, g = cfg.grid;
  const uint64_t threads = static_cast<uint64_t>(b.x) * b.y * b.z;
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0)
    fail("invalid launch configuration: a zero grid or block dimension");
  if (threads > 1024)
    fail("invalid launch configuration: %llu threads per block (limit 1024)",
         static_cast<unsigned long long>(threads));
  if (b.x > 1024 || b.y > 1024 || b.z > 64)
    fail("invalid launch configuration: block (%u,%u,%u) exceeds the per-dimension limits "
         "(1024,1024,64)", b.x, b.y, b.z);
  if (launch_bounds > 0 && threads > static_cast<uint64_t>(launch_bounds))
    fail("invalid launch configuration: %llu threads per block exceed the kernel's "
         "__launch_bounds__(%d)", static_cast<unsigned long long>(threads), launch_bounds);
  if (g.x > 2147483647u || g.y > 65535u || g.z > 65535u)
    fail("invalid launch configuration: grid (%u,%u,%u) exceeds the limits "
         "(2147483647,65535,65535)", g.x, g.y, g.z);
  size_t limit = kDefaultSmem;
  {
    std::lock_guard<std::mutex> alock(g_attr_mu);
    auto it = max_dyn_smem().find(func);
    if (func != nullptr && it != max_dyn_smem().end()) limit = static_cast<size_t>(it->second) > kDefaultSmem ? it->second : kDefaultSmem;
  }
  if (cfg.smem > limit) {
    if (limit == kDefaultSmem)
      fail("invalid launch configuration: %zu bytes of dynamic shared memory exceed 48 KiB "
           "without cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, "
           "...)", cfg.smem);
    fail("invalid launch configuration: %zu bytes of dynamic shared memory exceed the %zu set "
         "with cudaFuncAttributeMaxDynamicSharedMemorySize", cfg.smem, limit);
  }
  if (cfg.smem > 0 && arenas().empty())
    fail("dynamic shared memory requested, but no extern __shared__ array is defined (link "
         "the file generated by cmake/cuda_emu_dynsmem.cmake)");
  L.nblocks = static_cast<uint64_t>(g.x) * g.y * g.z;
  unsigned nw = worker_count();
  if (nw > L.nblocks) nw = static_cast<unsigned>(L.nblocks);
  while (g_workers.size() < nw) g_workers.push_back(std::make_unique<Worker>());
  if (nw == 1) {
    std::thread t(worker_main, &L, 0u);  // always a worker thread: its own TLS block
    t.join();
  } else {
    std::vector<std::thread> ts;
    for (unsigned i = 0; i < nw; ++i) ts.emplace_back(worker_main, &L, i);
    for (auto& t : ts) t.join();
  }
  g_current.store(nullptr);
}

void enable_launch_log(bool on) {
  std::lock_guard<std::mutex> lock(g_launch_mu);
  g_log_on = on;
  if (!on) g_log.clear();
}

size_t take_launch_log(LaunchRecord* out, size_t max) {
  std::lock_guard<std::mutex> lock(g_launch_mu);
  const size_t n = g_log.size() < max ? g_log.size() : max;
  for (size_t i = 0; i < n; ++i) out[i] = g_log[i];
  g_log.clear();
  return n;
}

}  // namespace eet_emu

extern "C" void eet_emu_register_dynsmem(unsigned char* (*get)(), size_t bytes) {
  if (bytes < eet_emu::kMaxSmemOptin + eet_emu::kGuard) std::abort();
  eet_emu::arenas().push_back({get, bytes});
}

// ---------------------------------------------------------------------------------------
// Runtime API: one emulated device, host memory, synchronous streams.

struct CUstream_st {};
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
};

namespace {
cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) eet_emu::g_last_error = e;
  return e;
}
}  // namespace

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return cudaGetErrorName(e);
  }
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = eet_emu::g_last_error;
  eet_emu::g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return eet_emu::g_last_error; }
cudaError_t cudaGetDeviceCount(int* n) {
  if (n == nullptr) return set_error(cudaErrorInvalidValue);
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* dev) {
  if (dev == nullptr) return set_error(cudaErrorInvalidValue);
  *dev = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int dev) { return dev == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice); }
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int dev) {
  if (value == nullptr) return set_error(cudaErrorInvalidValue);
  if (dev != 0) return set_error(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 227 * 1024; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = 132; break;  // an H100/H200
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    default: return set_error(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (p == nullptr) return set_error(cudaErrorInvalidValue);
  void* m = nullptr;
  if (posix_memalign(&m, 256, bytes == 0 ? 1 : bytes) != 0) {
    *p = nullptr;
    return set_error(cudaErrorMemoryAllocation);
  }
  std::memset(m, 0xFF, bytes);  // uninitialized device memory reads as NaN
  *p = m;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return set_error(cudaErrorInvalidValue);
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, kind);
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (p == nullptr) return set_error(cudaErrorInvalidValue);
  std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  return cudaMemset(p, value, bytes);
}
cudaError_t cudaStreamCreate(cudaStream_t* s) {
  if (s == nullptr) return set_error(cudaErrorInvalidValue);
  *s = new CUstream_st();
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  if (e == nullptr) return set_error(cudaErrorInvalidValue);
  *e = new CUevent_st();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  if (e == nullptr) return set_error(cudaErrorInvalidResourceHandle);
  e->t = std::chrono::steady_clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  return e == nullptr ? set_error(cudaErrorInvalidResourceHandle) : cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (ms == nullptr || a == nullptr || b == nullptr) return set_error(cudaErrorInvalidValue);
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (func == nullptr) return set_error(cudaErrorInvalidValue);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || static_cast<size_t>(value) > eet_emu::kMaxSmemOptin)
      return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(eet_emu::g_attr_mu);
    eet_emu::max_dyn_smem()[func] = value;
    return cudaSuccess;
  }
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  return set_error(cudaErrorInvalidValue);
}
