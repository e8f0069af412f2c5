#!/usr/bin/env bash
# Installs the optional fairseq integration into the project venv (default .venv):
# fairseq-fixed 0.12.3.1 built against the torch already there, without torchaudio, plus its
# runtime deps (requirements-fairseq.txt). Fails if torch changed or torchaudio appeared.
# Run after scripts/setup_env.sh. Idempotent. Takes ~5 min on 2 cores (fairseq's C++/Cython
# extensions; MAX_JOBS is respected).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
PIN=(-c constraints.txt)   # exact versions, as in setup_env.sh; EET_UNPINNED=1 lifts them
[ "${EET_UNPINNED:-0}" = 1 ] && PIN=()
torch_before=$("$PY" -c 'import torch; print(torch.__version__)')

if ! "$PY" -c 'import fairseq' 2>/dev/null; then
  # No build isolation: the build must see this env's torch (an isolated build would fetch
  # another torch). The build imports numpy and cython; numpy comes with requirements-test.txt.
  "$PY" -m pip install -q ${PIN[@]+"${PIN[@]}"} cython
  "$PY" -c 'import numpy' 2>/dev/null || "$PY" -m pip install -q ${PIN[@]+"${PIN[@]}"} numpy
  echo "[fairseq] building fairseq-fixed==0.12.3.1 (takes a few minutes)"
  MAX_JOBS=${MAX_JOBS:-2} "$PY" -m pip install -q --no-build-isolation --no-deps fairseq-fixed==0.12.3.1
fi
"$PY" -m pip install -q ${PIN[@]+"${PIN[@]}"} -r requirements-fairseq.txt

torch_after=$("$PY" -c 'import torch; print(torch.__version__)')
if [ "$torch_before" != "$torch_after" ]; then
  echo "[fairseq] ERROR: torch changed from $torch_before to $torch_after" >&2
  exit 1
fi
if "$PY" -m pip show torchaudio >/dev/null 2>&1; then
  echo "[fairseq] ERROR: torchaudio is installed; it breaks 'import transformers' beside torch $torch_after" >&2
  exit 1
fi
"$PY" -c 'import fairseq, transformers, eet_like.fairseq; print("[fairseq] fairseq", fairseq.__version__, "with torch", __import__("torch").__version__)' 2>&1 | grep -v '^INFO'
