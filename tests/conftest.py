"""Shared fixtures: the `device` fixture over cpu/cuda (CUDA cases skip without a GPU or
without the CUDA kernels), the dtype list per device, and the one tolerance table."""
import pytest
import torch

import eet_like

# (atol, rtol) per dtype. Reductions (layernorm, softmax) get the "loose" row.
TOL = {
    torch.float32: (1e-5, 1e-5),
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}
TOL_LOOSE = {
    torch.float32: (1e-4, 1e-4),
    torch.float16: (5e-3, 5e-3),
    torch.bfloat16: (3e-2, 3e-2),
}


def cuda_ready() -> bool:
    return torch.cuda.is_available() and eet_like.cuda_kernels_available()


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not cuda_ready():
        pytest.skip("no CUDA device or eet_like built without CUDA kernels")
    return request.param


def dtypes_for(device):
    return [torch.float32] if device == "cpu" else [torch.float32, torch.float16, torch.bfloat16]


DEVICE_DTYPES = [("cpu", torch.float32)] + [
    ("cuda", dt) for dt in (torch.float32, torch.float16, torch.bfloat16)]


@pytest.fixture(params=DEVICE_DTYPES, ids=lambda p: f"{p[0]}-{str(p[1]).split('.')[-1]}")
def device_dtype(request):
    dev, dt = request.param
    if dev == "cuda" and not cuda_ready():
        pytest.skip("no CUDA device or eet_like built without CUDA kernels")
    return dev, dt
