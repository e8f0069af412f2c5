"""Proves the emulated CUDA test can fail: each mutant removes one barrier from, or puts an
off-by-one into, an attention kernel of csrc/cuda/attention.cu; the emulated ctest
(cuda_ops_emulated_test: tests/cpp/cuda_ops_test.cu on csrc/cuda_emu) must fail for every one.

    python scripts/emu_mutants.py [--build build/mutants] [--only NAME ...]   # or: make emu-mutants

The repository's sources are copied to BUILD/src (the working tree stays as it is), one mutant
at a time is applied there, and the test is rebuilt incrementally (only attention.cu) and run.
Prints a table (mutant, what it breaks, caught or MISSED, the first failure line) and exits 1 if
a mutant was missed or the unmutated copy fails."""
import argparse
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL = os.path.join("csrc", "cuda", "attention.cu")

# name -> (what it breaks, exact text in attention.cu, replacement)
MUTANTS = {
    "tiled-no-staged-barrier": (
        "prompt kernel: the barrier after staging a K/V tile in shared memory",
        "      __syncthreads();  // the tile is staged\n", ""),
    "tiled-no-reuse-barrier": (
        "prompt kernel: the barrier before a tile's shared memory is overwritten",
        "      __syncthreads();  // everyone is done reading the previous tile\n", ""),
    "decode-no-combine-barrier": (
        "decode kernel: the barrier before the groups' softmax states are merged",
        "    __syncthreads();\n    combine_and_store<T>(sm_m, sm_l, sm_acc, NG, D, o);",
        "    combine_and_store<T>(sm_m, sm_l, sm_acc, NG, D, o);"),
    "generic-no-query-barrier": (
        "generic kernel: the barrier after the scaled query is written to shared memory",
        "    __syncthreads();  // sq is complete\n", ""),
    "generic-no-combine-barrier": (
        "generic kernel: the barrier before the warps' softmax states are merged",
        "    __syncthreads();\n    combine_and_store<T>(sm_m, sm_l, sm_acc, nw, D, o);",
        "    combine_and_store<T>(sm_m, sm_l, sm_acc, nw, D, o);"),
    "key-end-minus-one": (
        "every kernel: each row sees one key fewer (key_end off by one)",
        "(p.key_end != nullptr ? static_cast<int64_t>(p.key_end[b]) : p.k_len) + p.key_end_add;",
        "(p.key_end != nullptr ? static_cast<int64_t>(p.key_end[b]) : p.k_len) + p.key_end_add - 1;"),
    "causal-plus-one": (
        "every kernel: a causal query sees the next position too",
        "const int64_t c = i + p.causal_offset + 1;", "const int64_t c = i + p.causal_offset + 2;"),
    "decode-mask-off-by-one": (
        "decode kernel: the key one past the row's range is scored",
        "s[u] = j < hi ? a : -INFINITY;", "s[u] = j <= hi ? a : -INFINITY;"),
    "key-start-plus-one": (
        "every kernel: the first visible key of a left-padded row is skipped",
        "ks = p.key_start != nullptr ? static_cast<int64_t>(p.key_start[b]) : 0;",
        "ks = p.key_start != nullptr ? static_cast<int64_t>(p.key_start[b]) + 1 : 0;"),
}


def run(cmd, cwd, log):
    with open(log, "w") as f:
        return subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode


def first_failure(log):
    with open(log, errors="replace") as f:
        lines = [line.strip() for line in f]
    for key in ("FAIL", "error", "Error", "mismatch", "eet_emu"):
        for line in lines:
            if key in line:
                return line[:160]
    return lines[-1][:160] if lines else ""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "mutants"))
    ap.add_argument("--only", nargs="+", choices=list(MUTANTS), default=list(MUTANTS))
    a = ap.parse_args(argv)
    src, bld = os.path.join(a.build, "src"), os.path.join(a.build, "build")
    for part in ("CMakeLists.txt", "cmake", "csrc", os.path.join("tests", "cpp")):
        dst = os.path.join(src, part)
        if os.path.isdir(os.path.join(ROOT, part)):
            shutil.copytree(os.path.join(ROOT, part), dst, dirs_exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, part), dst)
    with open(os.path.join(ROOT, KERNEL)) as f:
        original = f.read()
    target = os.path.join(src, KERNEL)
    jobs = os.environ.get("MAX_JOBS", "2")
    if run(["cmake", "-S", src, "-B", bld, "-DCMAKE_BUILD_TYPE=Release", "-DEET_WITH_CUDA=OFF"], a.build,
           os.path.join(a.build, "configure.log")):
        sys.exit(f"cmake configure failed: {os.path.join(a.build, 'configure.log')}")

    def build_and_test(name, text):
        with open(target, "w") as f:
            f.write(text)
        log = os.path.join(a.build, f"{name}.log")
        if run(["cmake", "--build", bld, "-j", jobs, "--target", "cuda_ops_emulated_test"], a.build, log):
            return "build failed", first_failure(log)
        test = os.path.join(bld, "cuda_ops_emulated_test")
        rc = run([test], bld, log)
        return ("passed" if rc == 0 else f"failed (rc {rc})"), first_failure(log)

    status, line = build_and_test("original", original)
    print(f"{'original':28s} {status}")
    ok = status == "passed"
    rows = []
    for name in a.only:
        what, old, new = MUTANTS[name]
        if original.count(old) != 1:
            sys.exit(f"mutant {name}: its text occurs {original.count(old)} times in {KERNEL} (expected once)")
        status, line = build_and_test(name, original.replace(old, new))
        caught = status.startswith("failed")
        ok &= caught
        rows.append((name, what, "caught" if caught else f"MISSED ({status})", line))
        print(f"{name:28s} {rows[-1][2]:10s} {what}\n{'':28s} {line}", flush=True)
    with open(target, "w") as f:
        f.write(original)
    print(f"\n{sum(r[2] == 'caught' for r in rows)}/{len(rows)} mutants caught")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
