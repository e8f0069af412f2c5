# The two commands of the README. Both set everything up on a fresh machine first.
#   make demo   the main job: an offline demo on embedded defaults
#   make test   the test suite (pytest; CUDA cases skip without a GPU)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup setup-fairseq bench cmake-test
setup:
	VENV=$(VENV) bash scripts/setup_env.sh

# The optional fairseq integration is tested too: fairseq-fixed is built into the venv (~5 min once).
setup-fairseq: setup
	VENV=$(VENV) bash scripts/install_fairseq.sh

demo: setup
	$(PY) -m eet_like demo

test: setup setup-fairseq
	$(PY) -m pytest tests -q -ra

bench: setup
	$(PY) -m pip install -q -r requirements-bench.txt
	$(PY) -m eet_like bench

# The kernels without Python (CPU tests run; the CUDA test is skipped without a GPU).
cmake-test:
	cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Release
	cmake --build build/cmake -j2
	ctest --test-dir build/cmake --output-on-failure
