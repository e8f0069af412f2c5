"""The argument checks shared by the models, the decode loop and the adapters: device/dtype,
token ids, masks, sizes. Each raises TypeError/ValueError naming the argument, before any
compute. (The ops check their own tensors in ops.py; the C++ side checks again.)"""
import torch

from . import _C


def cuda_kernels_available() -> bool:
    """True when this build of eet_like contains the CUDA kernels (a GPU may still be absent)."""
    return bool(_C.cuda_kernels_available())


def cuda_emulated() -> bool:
    """True in the CUDA emulation build (EET_CUDA_EMULATION=1 at build time): the ops on CPU
    tensors (float32, float16, bfloat16) run the CUDA kernels on the CPU through csrc/cuda_emu,
    and the models take their CUDA code path on CPU. A build for testing, not for speed."""
    return bool(_C.cuda_emulated())


def runs_cuda_kernels(device) -> bool:
    """Whether tensors on `device` run the CUDA kernels (and the models take their CUDA path):
    CUDA devices, and CPU in the CUDA emulation build."""
    dev = torch.device(device)
    return dev.type == "cuda" or (dev.type == "cpu" and cuda_emulated())


def check_device_dtype(dtype, device) -> torch.device:
    """The device a model with these weights can run on: CPU float32, or CUDA float32/16/bf16
    in a build with the CUDA kernels and a visible GPU (CPU float32/16/bf16 in the CUDA
    emulation build). Returns torch.device(device)."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}")
    dev = torch.device(device if device is not None else "cpu")
    if dev.type == "cpu" and cuda_emulated():
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype {dtype} is not supported (float32, float16, bfloat16 in the CUDA emulation build)")
    elif dev.type == "cpu":
        if dtype != torch.float32:
            raise ValueError(f"dtype {dtype} is not supported on CPU (the CPU kernels are float32 only)")
    elif dev.type == "cuda":
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype {dtype} is not supported on CUDA (float32, float16, bfloat16)")
        if not cuda_kernels_available():
            raise ValueError("device='cuda' needs eet_like built with its CUDA kernels "
                             "(eet_like.cuda_kernels_available() is False)")
        if not torch.cuda.is_available():
            raise ValueError(f"device {dev}: no CUDA device is visible")
    else:
        raise ValueError(f"device must be cpu or cuda, got {dev}")
    return dev


def check_positive_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_token_ids(ids, name: str = "input_ids"):
    """ids: a non-empty [B, S] int64/int32 tensor."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be int64 or int32, got {ids.dtype}")
    if ids.dim() != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [B, S] tensor, got {list(ids.shape)}")
    return ids


def check_like_ids(t, name: str, input_ids, device=None):
    """An optional per-token tensor (token_type_ids, position_ids, attention_mask) that must
    have the shape of input_ids (and sit on `device` when given)."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if name != "attention_mask" and t.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be int64 or int32, got {t.dtype}")
    if tuple(t.shape) != tuple(input_ids.shape):
        raise ValueError(f"{name} must have the shape of input_ids {list(input_ids.shape)}, got {list(t.shape)}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device} but the model is on {device}")
    return t


def check_ids_in_range(ids: torch.Tensor, size: int, name: str, what: str = "") -> None:
    """Every value of ids in [0, size) (a host sync on CUDA)."""
    if ids.numel() == 0:
        return
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= size:
        raise ValueError(f"{name} must be in [0, {size}){f' ({what})' if what else ''}, got values in [{lo}, {hi}]")


def check_row(row, rows: int) -> int:
    if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < rows:
        raise ValueError(f"row must be an int in [0, {rows}) (max_batch), got {row!r}")
    return row


QUANTIZE_MODES = (None, "int8")


def check_quantize(quantize, dtype, device) -> None:
    """quantize: None or "int8". int8 runs on CPU float32 (int8 weights and per-token int8
    activations) and wherever the CUDA kernels run (CUDA, or CPU in the CUDA emulation build) in
    float32/float16/bfloat16 (int8 weights only, activations stay in the model's dtype)."""
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {', '.join(map(repr, QUANTIZE_MODES))}, got {quantize!r}")
    if quantize is not None:
        dev = torch.device(device) if device is not None else torch.device("cpu")
        if runs_cuda_kernels(dev):
            if dtype not in (torch.float32, torch.float16, torch.bfloat16):
                raise ValueError(f"quantize={quantize!r} on {dev.type} needs dtype float32, float16 or bfloat16, "
                                 f"got {dtype}")
        elif dev.type != "cpu" or dtype != torch.float32:
            raise ValueError(f"quantize={quantize!r} runs on CPU in float32 only (or on CUDA in float32, float16, "
                             f"bfloat16), got device={dev.type}, dtype={dtype}")
