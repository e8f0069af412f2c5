"""Adaptive intra-op thread count: fewer OpenMP threads while other processes keep our CPUs busy.

eet_like's CPU kernels (and oneDNN's) split each parallel region statically over torch's thread
team. When another process runs on one of the cores, the team member sharing that core gets
about half its time slices, and each of the hundreds of regions of a decode step waits for that
straggler: on the 2-core development machine with a busy loop on one core, GPT-2 small decoded
3x slower with 2 threads than with 1. So around generate() and BERT's forward on CPU, eet_like
estimates how many cores other processes use and runs with

    threads = min(T, max(1, len(affinity) - cores taken by others))

where T is torch.get_num_threads() of the calling thread when the call starts: the user's
setting (torch.set_num_threads, OMP_NUM_THREADS, or torch's default). It only ever lowers the
count below T, never raises it, and it sets T back (torch.set_num_threads, in the calling thread)
when the call returns, so code between eet_like calls sees the user's setting unchanged. With T
= 1 nothing is measured or changed. Only the thread that runs the call is touched:
omp_set_num_threads is per thread, and a call in a server's engine thread sets that thread's
count (torch.set_num_threads also sets torch's global default; two threads calling eet_like at
once may see each other's value there, not in their own OpenMP team).

The estimate: every INTERVAL_S at most (a /proc read costs tens of microseconds; decode loops
call tick() every step and it returns after one clock read in between), the busy jiffies of the
CPUs in os.sched_getaffinity(0) (/proc/stat: user + nice + system + irq + softirq + steal; steal
because a vCPU the hypervisor gives to another guest straggles just like a core shared with
another process) minus this process's own CPU time (time.process_time) over the same window,
smoothed with a time constant of TAU_S. Cores taken by others go up by one when that load exceeds
the cores already conceded by UP_MARGIN, and come back when it falls below DOWN_MARGIN above the
cores conceded minus one (hysteresis: with fewer threads of ours a competitor gets more of the
CPU and measures higher, which keeps a decision stable). Where /proc/stat cannot be read (not
Linux), nothing changes.

Off: EET_LIKE_ADAPTIVE_THREADS=0 in the environment (read at each call), or
eet_like.set_adaptive_threads(False), which wins over the environment
(set_adaptive_threads(None) goes back to it). On CUDA it never runs.
"""
import contextlib
import os
import threading
import time
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch

INTERVAL_S = 0.1     # the least time between two /proc/stat samples
TAU_S = 0.3          # smoothing time constant of the other processes' load
UP_MARGIN = 0.35     # concede one more core when others' load > conceded + UP_MARGIN cores
DOWN_MARGIN = 0.2    # take one back when others' load < conceded - 1 + DOWN_MARGIN cores

_ENV = "EET_LIKE_ADAPTIVE_THREADS"
_override: Optional[bool] = None


def set_adaptive_threads(enabled: Optional[bool]) -> None:
    """True/False turns the adaptive thread count on/off for this process (over
    EET_LIKE_ADAPTIVE_THREADS); None goes back to the environment variable (default on)."""
    global _override
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True, False or None, got {enabled!r}")
    _override = enabled


def adaptive_threads_enabled() -> bool:
    """Whether eet_like lowers its thread count under load (set_adaptive_threads, else
    EET_LIKE_ADAPTIVE_THREADS, default 1)."""
    if _override is not None:
        return _override
    v = os.environ.get(_ENV, "1")
    if v not in ("0", "1"):
        raise ValueError(f"{_ENV} must be 0 or 1, got {v!r}")
    return v == "1"


def read_proc_stat(path: str = "/proc/stat") -> Dict[int, Tuple[int, int]]:
    """{cpu: (busy jiffies, total jiffies)} from /proc/stat; busy = user + nice + system + irq +
    softirq + steal (guest time is already inside user and nice)."""
    out = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                if out:
                    break  # the cpuN lines come together, right after the total
                continue
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]] + [0] * max(0, 8 - len(vals))
            user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
            busy = user + nice + system + irq + softirq + steal
            out[int(name[3:])] = (busy, busy + idle + iowait)
    return out


class LoadEstimator:
    """The CPU that processes other than this one use on `cpus`, in cores, smoothed. Every
    source is injectable (tests): read_stat() -> {cpu: (busy, total) jiffies}, own_time() ->
    this process's CPU seconds, clock() -> seconds, hz = jiffies per second."""

    def __init__(self, cpus: Optional[Iterable[int]] = None, read_stat: Callable = read_proc_stat,
                 own_time: Callable[[], float] = time.process_time, clock: Callable[[], float] = time.monotonic,
                 hz: Optional[int] = None):
        self.cpus = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
        self.read_stat, self.own_time, self.clock = read_stat, own_time, clock
        self.hz = hz if hz is not None else os.sysconf("SC_CLK_TCK")
        self.load: Optional[float] = None    # smoothed other load in cores (None: not known yet)
        self._last = None                    # (clock, own_time, busy jiffies)

    def _busy(self) -> Optional[int]:
        try:
            stat = self.read_stat()
        except (OSError, ValueError):
            return None
        return sum(stat[c][0] for c in self.cpus if c in stat)

    def sample(self) -> Optional[float]:
        """Reads the sources; returns the smoothed load (None until two samples are in)."""
        busy = self._busy()
        if busy is None:
            return self.load
        now = (self.clock(), self.own_time(), busy)
        last, self._last = self._last, now
        if last is None:
            return self.load
        dt = now[0] - last[0]
        if dt <= 0:
            return self.load
        others = max(0.0, ((now[2] - last[2]) / self.hz - (now[1] - last[1])) / dt)
        others = min(others, float(len(self.cpus)))
        a = 1.0 - pow(2.718281828459045, -dt / TAU_S)  # a long window replaces the past
        self.load = others if self.load is None else self.load + a * (others - self.load)
        return self.load


class ThreadPolicy:
    """How many cores to leave to other processes, from the estimator's load, with hysteresis.
    One per process (policy()); thread safe."""

    def __init__(self, estimator: Optional[LoadEstimator] = None, interval: float = INTERVAL_S):
        self.estimator = estimator if estimator is not None else LoadEstimator()
        self.interval = interval
        self.conceded = 0          # cores left to others now
        self._next = None          # clock time of the next sample
        self._lock = threading.Lock()

    def update(self) -> int:
        """Samples if INTERVAL_S has passed since the last sample; returns the cores conceded."""
        est = self.estimator
        now = est.clock()
        if self._next is not None and now < self._next:
            return self.conceded
        with self._lock:
            if self._next is not None and now < self._next:
                return self.conceded
            self._next = now + self.interval
            load = est.sample()
            if load is not None:
                n = len(est.cpus)
                k = self.conceded
                while k < n - 1 and load > k + UP_MARGIN:
                    k += 1
                while k > 0 and load < k - 1 + DOWN_MARGIN:
                    k -= 1
                self.conceded = k
            return self.conceded

    def threads(self, user_threads: int) -> int:
        """The thread count for a caller whose own setting is user_threads."""
        return min(user_threads, max(1, len(self.estimator.cpus) - self.conceded))


_policy: Optional[ThreadPolicy] = None
_policy_lock = threading.Lock()
_local = threading.local()


def policy() -> ThreadPolicy:
    """The process's ThreadPolicy (made on first use)."""
    global _policy
    if _policy is None:
        with _policy_lock:
            if _policy is None:
                _policy = ThreadPolicy()
    return _policy


def set_policy(p: Optional[ThreadPolicy]) -> None:
    """Replaces the process's ThreadPolicy (tests inject fake /proc readers); None: a fresh one
    on next use."""
    global _policy
    _policy = p


class _Scope:
    def __init__(self, user_threads: int):
        self.user = user_threads
        self.current = user_threads

    def apply(self) -> None:
        want = policy().threads(self.user)
        if want != self.current:
            torch.set_num_threads(want)
            self.current = want


@contextlib.contextmanager
def adaptive(device) -> Iterable[None]:
    """Around one eet_like call on `device`: on CPU, with the feature on and more than one
    thread, runs it with policy().threads() and restores the caller's count after. Nested
    scopes in one thread are the outer one's. tick() inside adjusts as the load changes."""
    if (getattr(_local, "scope", None) is not None or torch.device(device).type != "cpu"
            or not adaptive_threads_enabled()):
        yield
        return
    user = torch.get_num_threads()
    if user <= 1:
        yield
        return
    scope = _Scope(user)
    _local.scope = scope
    try:
        policy().update()
        scope.apply()
        yield
    finally:
        _local.scope = None
        if scope.current != scope.user:
            torch.set_num_threads(scope.user)


def tick() -> None:
    """In a loop inside adaptive(): follow the load (a clock read unless INTERVAL_S passed)."""
    scope = getattr(_local, "scope", None)
    if scope is not None:
        policy().update()
        scope.apply()
