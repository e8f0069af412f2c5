"""Builds eet_like and its compiled extension eet_like._C.

CPU kernels are always built. The CUDA kernels are added when torch is a CUDA build and
nvcc is found (CUDA_HOME); EET_FORCE_CPU=1 skips them. Target archs come from
EET_CUDA_ARCHS (default: cmake/cuda_archs.txt, "80;86;89;90", plus PTX of the last); MAX_JOBS limits parallel
compile jobs; EET_NVCC_FLAGS adds nvcc flags (e.g. -Xptxas=-v). CPU code targets any
x86-64 with AVX2+FMA; EET_CPU_NATIVE=1 uses -march=native.

Install with an existing torch:  pip install --no-build-isolation .
"""
import glob
import os
import platform
import warnings

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError as e:  # pragma: no cover - build-time message
    raise SystemExit(
        "eet_like builds against an installed torch: `pip install torch==2.13.0` (CPU) or a CUDA "
        "build first, then `pip install --no-build-isolation .`") from e

ROOT = os.path.dirname(os.path.abspath(__file__))


def rel(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def cpu_flags():
    # -fno-trapping-math lets GCC if-convert the float selects in vec_math.h (clamps, signs),
    # without which no loop calling vexp/verf/vtanh vectorizes. Nothing here uses FP traps.
    flags = ["-O3", "-fno-trapping-math", "-fopenmp", "-Wall", "-Wno-unknown-pragmas"]
    if os.environ.get("EET_CPU_NATIVE") == "1":
        flags.append("-march=native")
    elif platform.machine() in ("x86_64", "AMD64"):
        flags += ["-mavx2", "-mfma"]
    return flags


def default_cuda_archs():
    # cmake/cuda_archs.txt is the one place the default is written (CMakeLists.txt reads it too).
    with open(os.path.join(ROOT, "cmake", "cuda_archs.txt")) as f:
        return next(line.strip() for line in f if line.strip() and not line.lstrip().startswith("#"))


def cuda_archs():
    archs = [a.strip() for a in (os.environ.get("EET_CUDA_ARCHS") or default_cuda_archs()).split(";") if a.strip()]
    flags = []
    for a in archs:
        num = a.replace(".", "").replace("+PTX", "")
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
    last = archs[-1].replace(".", "").replace("+PTX", "")
    flags.append(f"-gencode=arch=compute_{last},code=compute_{last}")
    return flags


def want_cuda():
    if os.environ.get("EET_FORCE_CPU") == "1":
        return False
    if torch.version.cuda is None:
        warnings.warn("eet_like: torch is a CPU build; building the CPU kernels only")
        return False
    if CUDA_HOME is None or not os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")):
        warnings.warn("eet_like: nvcc not found (set CUDA_HOME); building the CPU kernels only")
        return False
    return True


sources = rel("csrc/bindings.cpp") + rel("csrc/torch/*.cpp") + rel("csrc/cpu/*.cpp")
include_dirs = [os.path.join(ROOT, "csrc", "include"), os.path.join(ROOT, "csrc")]
if want_cuda():
    ext = CUDAExtension(
        "eet_like._C",
        sources + rel("csrc/cuda/*.cu"),
        include_dirs=include_dirs,
        define_macros=[("WITH_CUDA", None)],
        extra_compile_args={
            "cxx": cpu_flags(),
            "nvcc": ["-O3", "--expt-relaxed-constexpr", "-lineinfo"] + cuda_archs()
            + os.environ.get("EET_NVCC_FLAGS", "").split(),
        },
        extra_link_args=["-fopenmp"],
    )
else:
    ext = CppExtension(
        "eet_like._C", sources, include_dirs=include_dirs,
        extra_compile_args={"cxx": cpu_flags()}, extra_link_args=["-fopenmp"])

setup(
    name="eet_like",
    version="0.1.0",
    description="Fast transformer inference: fused CUDA/CPU kernels, GPT-2 and BERT models",
    package_dir={"": "python"},
    packages=find_packages("python"),
    package_data={"eet_like": ["data/*"]},
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExtension},
    entry_points={"console_scripts": ["eet-like = eet_like.app.cli:main"]},
    python_requires=">=3.9",
    install_requires=["torch>=2.4", "numpy"],
    extras_require={
        "hf": ["transformers>=4.40", "safetensors"],
        "test": ["pytest", "transformers>=4.40", "safetensors"],
        # eet_like.ray and `eet-like embed|predict --ray`: batch inference on a Ray cluster
        "ray": ["ray[data]>=2.60", "transformers>=4.40", "safetensors"],
        "serve": ["starlette>=0.40", "uvicorn>=0.30", "prometheus_client>=0.20", "transformers>=4.40",
                  "safetensors"],
    },
)
