"""eet_like: fast transformer inference with fused CUDA/CPU kernels.

    import eet_like
    y = eet_like.ops.layernorm(x, weight, bias)      # op level, CPU and CUDA
"""
import torch

from . import _C  # noqa: F401  (registers torch.ops.eet_like.*)
from . import _meta  # noqa: F401  (fake kernels for torch.compile / opcheck)
from . import ops, reference

__version__ = "0.1.0"


def cuda_kernels_available() -> bool:
    """True when this build of eet_like contains the CUDA kernels (a GPU may still be absent)."""
    return bool(_C.cuda_kernels_available())


__all__ = ["ops", "reference", "cuda_kernels_available", "__version__"]
