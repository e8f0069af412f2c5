"""Static checks of the CUDA sources that the emulation relies on (no build needed): every
launch goes through EET_LAUNCH (the one change the emulation allows in a kernel file), and every
kernel with __launch_bounds__ declares the same bound to the emulator next to it
(EET_EMU_LAUNCH_BOUNDS), so an emulated launch over the bound fails as it would on a GPU."""
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")) +
                 glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cuh")))


def read(path):
    with open(path) as f:
        return f.read()


def test_sources_found():
    assert any(p.endswith("attention.cu") for p in SOURCES) and len(SOURCES) >= 6


def test_every_launch_is_eet_launch():
    for path in SOURCES:
        code = re.sub(r"//[^\n]*", "", read(path))
        code = re.sub(r"#define EET_LAUNCH\(.*", "", code)  # the macro itself (nvcc's expansion)
        assert "<<<" not in code, f"{os.path.basename(path)}: a <<<...>>> launch; use EET_LAUNCH"


def test_launch_bounds_declared_to_the_emulator():
    bounds, declared = {}, {}
    for path in SOURCES:
        code = read(path)
        for n, name in re.findall(r"__global__\s+void\s+__launch_bounds__\(([^)]*)\)\s*(\w+)\s*\(", code):
            bounds[name] = n.strip()
        for n, name in re.findall(r"^\s*EET_EMU_LAUNCH_BOUNDS\(([^,]+),\s*(\w+)\)", code, re.M):
            declared[name] = n.strip()
    assert len(bounds) >= 10, bounds  # the regex still finds the kernels
    missing = {k: v for k, v in bounds.items() if declared.get(k) != v}
    assert not missing, f"kernels whose __launch_bounds__ the emulator is not told (or told wrong): {missing}"
    assert set(declared) <= set(bounds), f"declarations without a bounded kernel: {set(declared) - set(bounds)}"
