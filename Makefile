# The two commands of the README. Both set everything up on a fresh machine first.
#   make demo   the main job: an offline demo on embedded defaults
#   make test   the test suite (pytest; CUDA cases skip without a GPU)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-latest setup setup-fairseq bench cmake-test constraints test-cuda-emu \
	test-cuda-emu-sanitize test-cuda-emu-py emu-mutants
setup:
	VENV=$(VENV) bash scripts/setup_env.sh

# The optional fairseq integration is tested too: fairseq-fixed is built into the venv (~5 min once).
setup-fairseq: setup
	VENV=$(VENV) bash scripts/install_fairseq.sh

demo: setup
	$(PY) -m eet_like demo

# Every dependency at its version in constraints.txt; the versions are printed (and checked)
# before the tests run.
test: setup setup-fairseq
	$(PY) scripts/check_pins.py $(if $(EET_UNPINNED),--latest,)
	$(PY) -m pytest tests -q -ra

# The same suite on the newest release of every dependency (no constraints; torch stays the
# 2.13.0 CPU wheel), in its own venv: shows what the next pin bump would break. Not run by CI.
test-latest:
	$(MAKE) test VENV=.venv-latest EET_UNPINNED=1

# Rewrites constraints.txt from the packages installed in $(VENV) (after a pin bump).
constraints:
	{ sed -n '/^#/p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^eet[-_]like' | sort -f; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

bench: setup
	$(PY) -m pip install -q -c constraints.txt -r requirements-bench.txt
	$(PY) -m eet_like bench

# The kernels without Python (CPU tests run; the CUDA test is skipped without a GPU).
cmake-test:
	cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Release
	cmake --build build/cmake -j2
	ctest --test-dir build/cmake --output-on-failure

# The CUDA kernels on the CPU (csrc/cuda_emu): the CUDA test and the broken-kernel checks,
# built with the host compiler, normally and under AddressSanitizer + UBSan; then the Python
# flavour (test-cuda-emu-py).
EMU_TESTS := cuda_ops_emulated_test cuda_emu_broken_test
test-cuda-emu:
	cmake -S . -B build/emu -DCMAKE_BUILD_TYPE=Release -DEET_WITH_CUDA=OFF
	cmake --build build/emu -j2 --target $(EMU_TESTS)
	ctest --test-dir build/emu --output-on-failure -R 'cuda_ops_emulated|cuda_emu_broken'
	$(MAKE) test-cuda-emu-sanitize
	$(MAKE) test-cuda-emu-py

# eet_like built with EET_CUDA_EMULATION=1 (ops on CPU tensors run csrc/cuda/*.cu on the
# emulator; build dir build/emu-py) into its own site directory, so the normal build in
# $(VENV) stays as it is; then the pytest suite's emulated cases (`-m emulated`: every CUDA case
# of the op tests in fp32/fp16/bf16, GPT-2, BERT and fairseq against transformers/fairseq).
EMU_SITE := build/emu-py/site
test-cuda-emu-py: setup setup-fairseq
	EET_CUDA_EMULATION=1 MAX_JOBS=$${MAX_JOBS:-2} $(PY) -m pip install -q --no-build-isolation --no-deps \
		--upgrade --target $(EMU_SITE) .
	PYTHONPATH=$(EMU_SITE) $(PY) -c 'import eet_like; assert eet_like.cuda_emulated(), eet_like.__file__'
	PYTHONPATH=$(EMU_SITE) $(PY) -m pytest tests -m emulated -q -ra --durations=10

# Proves the emulated CUDA test fails when an attention kernel loses a barrier or gets an
# off-by-one (scripts/emu_mutants.py; ~15 min, not run by CI).
emu-mutants:
	python3 scripts/emu_mutants.py

test-cuda-emu-sanitize:
	cmake -S . -B build/emu-san -DCMAKE_BUILD_TYPE=Release -DEET_WITH_CUDA=OFF -DEET_EMU_SANITIZE=ON
	cmake --build build/emu-san -j2 --target $(EMU_TESTS)
	ctest --test-dir build/emu-san --output-on-failure -R 'cuda_ops_emulated|cuda_emu_broken'
