#!/usr/bin/env bash
# Creates the project venv (default .venv) with everything the demo and the tests need, then
# builds eet_like into it. Idempotent: a second run only rebuilds what changed.
# - A python that already has a CUDA build of torch is reused (venv with system packages),
#   so the CUDA kernels get built; otherwise the CPU wheel torch==2.13.0 is installed
#   (never a bare `torch`, which would pull a multi-GB CUDA build).
# - Every package comes at the exact version in constraints.txt, so the suite gives the same
#   answer tomorrow. EET_UNPINNED=1 (make test-latest) installs the newest releases instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
PIN=(-c constraints.txt)
[ "${EET_UNPINNED:-0}" = 1 ] && PIN=()

if [ ! -x "$VENV/bin/python" ]; then
  if "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null; then
    echo "[setup] using the existing CUDA build of torch from $PYTHON"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "[setup] installing torch==2.13.0 (CPU)"
  "$PY" -m pip install -q torch==2.13.0
fi
"$PY" -m pip install -q ${PIN[@]+"${PIN[@]}"} -r requirements-test.txt
# The build compiles against the torch above; build isolation would fetch another one.
stamp="$VENV/.eet_like_build"
if [ ! -f "$stamp" ] || [ -n "$(find csrc setup.py -newer "$stamp" -print -quit)" ] ||
   ! "$PY" -c 'import eet_like' 2>/dev/null; then
  echo "[setup] building eet_like (MAX_JOBS=${MAX_JOBS:-2})"
  MAX_JOBS=${MAX_JOBS:-2} "$PY" -m pip install -q --no-build-isolation -e . 
  touch "$stamp"
fi
"$PY" -c 'import eet_like; print("[setup] eet_like", eet_like.__version__, "CUDA kernels:", eet_like.cuda_kernels_available())'
