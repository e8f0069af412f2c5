#!/usr/bin/env bash
# One call on a lent GPU machine (CUDA torch, transformers, nvcc, ninja; no network, no fairseq):
# builds the CUDA extension in place, runs the GPU test suite, compute-sanitizer (memcheck,
# racecheck) over every CUDA op, and the GPU benchmarks. Logs and JSON go to $LOGS (default
# out/gpu); when $OUT is set (the device tool's folder that comes back), they are also packed
# into $OUT/gpu_session.tgz after every stage, so a run cut short still returns what it did.
# A summary table is printed last.
#
#   bash benchmarks/gpu_session.sh [STAGE ...]
#   stages: build tests sanitize bench-gen bench-bert bench-gen-xl bench-ops (default: all, in that order)
#
# Env: EET_CUDA_ARCHS (default 90), MAX_JOBS (default nproc), PY (default python3),
#      GEN_ENGINES (bench-gen engines), STAGE_TIMEOUT (seconds per bench stage),
#      SANITIZER_TIMEOUT (seconds per compute-sanitizer tool).
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${LOGS:-out/gpu}
mkdir -p "$LOGS"
pack() { [ -n "${OUT:-}" ] && tar czf "$OUT/gpu_session.tgz" -C "$LOGS" . 2>/dev/null; return 0; }
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
export EET_CUDA_ARCHS=${EET_CUDA_ARCHS:-90} MAX_JOBS=${MAX_JOBS:-$(nproc)}
T=${STAGE_TIMEOUT:-300}
TS=${SANITIZER_TIMEOUT:-100}
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(build tests sanitize bench-gen bench-bert bench-gen-xl bench-ops)
summary=()
note() { echo "[gpu_session $(date +%T)] $*"; }
record() { summary+=("$(printf '%-14s %-6s %6ss  %s' "$1" "$2" "$3" "$4")"); }

stage() {  # stage NAME LOG CMD...: runs CMD, logs to $LOGS/LOG, records rc and time
  local name=$1 log=$2; shift 2
  note "$name: $*"
  local t0=$SECONDS
  "$@" >"$LOGS/$log" 2>&1
  local rc=$?
  local tail_line
  tail_line=$(grep -E "passed|failed|error|FAIL|ERROR SUMMARY|RACECHECK SUMMARY|failures" "$LOGS/$log" | tail -n 1)
  record "$name" "rc=$rc" "$((SECONDS - t0))" "${tail_line:0:90}"
  pack
  return $rc
}

for s in "${stages[@]}"; do
  case $s in
    build)
      # On the lent H200 image (2026-11-30) the default g++ (/opt/gcc) built an extension that
      # crashed inside std::ostream << long, i.e. in every C++ error message with a number in
      # it (all bad-input paths segfaulted; cuda-gdb backtrace in gdb.log of that session).
      # Build with the system compiler, whose libstdc++ is the one torch and python load.
      if [ -z "${CXX:-}" ] && [ -x /usr/bin/g++ ] && [ "$(command -v g++)" != /usr/bin/g++ ]; then
        export CC=/usr/bin/gcc CXX=/usr/bin/g++
      fi
      { nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
        "$PY" -c 'import torch, transformers, sys; print(sys.version); print("torch", torch.__version__, "transformers", transformers.__version__)'
        nvcc --version | tail -n 2; git log -1 --oneline 2>/dev/null
        echo "CXX=${CXX:-$(command -v g++)}: $("${CXX:-g++}" --version | head -n 1)"; } >"$LOGS/env.txt" 2>&1
      stage build build.log env EET_NVCC_FLAGS="-Xptxas=-v" "$PY" setup.py build_ext --inplace || break
      # A bad input must raise, not crash: one C++ error path before anything else runs.
      stage error-path error_path.log "$PY" -c "import torch, eet_like
try:
    eet_like.ops.layernorm(torch.randn(2, 8, device='cuda'), torch.ones(7, device='cuda'), torch.zeros(7, device='cuda'))
except ValueError as e:
    print('raised ValueError:', e)" || break
      grep -E "spill|stack frame" "$LOGS/build.log" | grep -v " 0 bytes spill stores, 0 bytes spill loads" \
        >"$LOGS/spills.txt" || true
      ;;
    diag)
      # Error paths that crash instead of raising, each in its own process, and the native
      # backtrace of one of them.
      stage diag diag.log "$PY" tests/gpu_diag_errors.py
      stage gdb gdb.log timeout 120 cuda-gdb -batch -ex run -ex bt --args "$PY" -c \
        "import torch, eet_like; eet_like.ops.embedding(torch.tensor([[60]], device='cuda'), torch.randn(50, 8, device='cuda'), torch.randn(4, 8, device='cuda'))"
      ;;
    tests)
      # Every CUDA case: ops in fp32/fp16/bf16, their bad inputs, GPT-2 and BERT on device="cuda".
      # xdist workers: a test that crashes its process is reported and the run goes on.
      stage tests tests.log "$PY" -m pytest -n ${TEST_WORKERS:-8} tests/test_cuda_paths.py tests/test_ops.py tests/test_ops_errors.py tests/test_gpt2.py \
        tests/test_bert.py tests/test_generate.py -k cuda -q -ra -p no:cacheprovider \
        --junitxml="$LOGS/junit.xml"
      ;;
    sanitize)
      stage smoke sanitize_smoke.log "$PY" tests/gpu_sanitize.py
      # No caching allocator, so an out-of-bounds access lands outside any allocation.
      # racecheck and synccheck on float16 only (the same kernels and barriers as the other
      # dtypes; each costs minutes on the whole set).
      stage memcheck memcheck.log env PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$TS" \
        compute-sanitizer --tool memcheck --leak-check no --error-exitcode 3 --print-limit 50 \
        "$PY" tests/gpu_sanitize.py
      stage racecheck racecheck.log timeout "$TS" \
        compute-sanitizer --tool racecheck --racecheck-report all --error-exitcode 3 --print-limit 50 \
        "$PY" tests/gpu_sanitize.py --dtypes float16
      stage synccheck synccheck.log timeout "$TS" \
        compute-sanitizer --tool synccheck --error-exitcode 3 --print-limit 50 "$PY" tests/gpu_sanitize.py \
        --dtypes float16
      ;;
    bench-ops)
      stage bench-ops bench_ops.log timeout "$T" "$PY" benchmarks/bench_ops.py --device cuda --dtype float16 \
        --json "$LOGS/ops_cuda.json"
      ;;
    bench-gen)
      # GPT-2 small: prompt 128, 128 new tokens, fp16, against transformers eager / sdpa /
      # static cache + torch.compile.
      # transformers' static cache + torch.compile at the batches in COMPILE_BATCHES only: each
      # batch size compiles for a minute or more.
      stage bench-gen bench_gen.log timeout "$T" "$PY" benchmarks/bench_generate.py --device cuda \
        --models small --batch 1 8 64 --prompt 128 --new 128 --compile-batch ${COMPILE_BATCHES:-1} \
        --engines ${GEN_ENGINES:-eet_like hf-eager hf-sdpa hf-static-compile} --json "$LOGS/generate_cuda.json"
      ;;
    bench-gen-xl)
      stage bench-gen-xl bench_gen_xl.log timeout "$T" "$PY" benchmarks/bench_generate.py --device cuda \
        --models xl --batch 1 8 64 --prompt 128 --new 128 \
        --engines ${GEN_XL_ENGINES:-eet_like hf-eager hf-sdpa} --json "$LOGS/generate_cuda_xl.json"
      ;;
    bench-bert)
      stage bench-bert bench_bert.log timeout "$T" "$PY" benchmarks/bench_bert.py --device cuda --dtype float16 \
        --batches 1,32 --json "$LOGS/bert_cuda.json"
      ;;
    *) echo "unknown stage $s (see the header)"; exit 2 ;;
  esac
done

echo
echo "== gpu_session summary ($(head -n 2 "$LOGS/env.txt" 2>/dev/null | tail -n 1))"
printf '%s\n' "${summary[@]}"
grep -hE "^(FAILED|ERROR) " "$LOGS/tests.log" 2>/dev/null | head -n 40
grep -h "^FAIL " "$LOGS"/sanitize_smoke.log 2>/dev/null | head -n 20
grep -hE "^========= (Invalid|Race|Error|Barrier|Program hit)" "$LOGS"/{memcheck,racecheck,synccheck}.log 2>/dev/null |
  sort | uniq -c | head -n 20
