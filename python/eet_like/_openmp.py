"""OpenMP's spin before a waiting thread sleeps, set before torch loads its OpenMP runtime.

torch's CPU kernels and eet_like's run in OpenMP parallel regions. Between regions libgomp's
worker threads spin (by default 300,000 iterations, ~0.1-1 ms) before they sleep. On a quiet
machine that spin is what makes the next region start at once; on a shared machine a spinning
thread burns the core that a descheduled team member (or another process) needs, and a decode
step of hundreds of regions crawls. Measured on the 2-core development machine with a busy loop
on one core (`eet-like bench --busy-core`), GOMP_SPINCOUNT=10000 made GPT-2 small decoding
1.4-1.5x faster than libgomp's default there and cost nothing measurable on the quiet machine
(1000 or OMP_WAIT_POLICY=PASSIVE cost 10-25% quiet). libgomp reads the variable once, when torch
is imported, so this works only when eet_like is imported first (the `eet-like` commands, the
server and the Ray workers do); a GOMP_SPINCOUNT or OMP_WAIT_POLICY already in the environment
is the user's choice and is left alone."""
import os
import sys

SPIN_COUNT = "10000"


def configure(environ=None) -> bool:
    """Sets GOMP_SPINCOUNT (SPIN_COUNT) for the OpenMP runtime torch is about to load; True if
    it did. Nothing when torch is already imported or the user set the wait policy."""
    env = os.environ if environ is None else environ
    if "torch" in sys.modules or "GOMP_SPINCOUNT" in env or "OMP_WAIT_POLICY" in env:
        return False
    env["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True


SET_BY_EET_LIKE = configure()
