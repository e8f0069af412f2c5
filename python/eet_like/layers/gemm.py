"""The GEMM entry points the model code calls: both are eet_like ops, whose CPU backend
(oneDNN with fused bias/activation, or torch.mm + the eet_like bias_act epilogue) is chosen
inside the ops (eet_like.ops.cpu_gemm(), EET_LIKE_CPU_GEMM); PackedDecodeGemm runs the
few-row GEMMs of CPU decode steps on prepacked weights. A weight may also be an Int8Weight
(quantize="int8"): every entry point then runs ops.linear_int8, whose kernel is chosen inside by
the device and the row count (CPU float32: int8 weights and per-row int8 activations, exact int32
sums; CUDA, and CPU in the emulation build: int8 weights only, activations in x's dtype)."""
import os
from dataclasses import dataclass

import torch

from .. import ops
from ..validation import cuda_emulated

_ops = torch.ops.eet_like


@dataclass(eq=False)
class Int8Weight:
    """An int8 [out_features, in_features] nn.Linear weight in place of the float one: q and the
    per-row scales of ops.quantize_int8 (W ~ q * scales[:, None]), the one copy every GEMM path
    reads (ops.linear_int8). The float weight is not kept. The scales are float32 whatever the
    model's dtype (what the CUDA kernels read).

    Packed (quantize(..., pack=True) where pack_applies): q is ops.pack_int8's panels instead of
    [N, K], the layout of the AVX2 panel GEMM, so no call repacks the weight; same bytes (plus 4
    per output column) and, on the AVX2-only CPUs where it applies, the same results."""
    q: torch.Tensor        # [N, K] int8, or its pack_int8 panels [ceil(N/16), ceil(K/4) + 1, 16, 4]
    scales: torch.Tensor   # [N] float32
    in_features: int = -1  # K (given for packed q, whose K is padded to quads)

    def __post_init__(self):
        if self.in_features < 0:
            self.in_features = self.q.shape[1]

    @classmethod
    def quantize(cls, w: torch.Tensor, pack: bool = False) -> "Int8Weight":
        q, scales = ops.quantize_int8(w.detach().contiguous())
        if pack and cls.pack_applies(q):
            return cls(ops.pack_int8(q), scales, q.shape[1])
        return cls(q, scales)

    @staticmethod
    def pack_applies(q: torch.Tensor) -> bool:
        """Whether quantize(pack=True) packs: a CPU weight (not in the CUDA emulation build, whose
        CPU tensors take the CUDA kernels) on an AVX2-only CPU (ops.int8_activation_max() == 63:
        the panel GEMM is linear_int8's kernel there anyway, with the same 7-bit activations),
        unless EET_LIKE_INT8_PACK=0. With AVX-512 VNNI the [N, K] kernels (VNNI, AMX, oneDNN)
        are faster and use 8-bit activations, so the weight stays [N, K]."""
        v = os.environ.get("EET_LIKE_INT8_PACK", "1")
        if v not in ("0", "1"):
            raise ValueError(f"EET_LIKE_INT8_PACK must be 0 or 1, got {v!r}")
        return (v == "1" and q.device.type == "cpu" and not cuda_emulated()
                and ops.int8_activation_max() == 63)

    @property
    def packed(self) -> bool:
        return self.q.dim() == 4

    @property
    def shape(self) -> tuple:
        return (self.scales.shape[0], self.in_features)

    def rows(self, index: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """Dequantized rows W[index] ([*index.shape, K], computed in float32, returned in
        `dtype`): the embedding lookup of a quantized word-embedding matrix (GPT-2's tied LM
        head: packed rows are gathered from their panels)."""
        if self.packed:  # row n is q[n // 16, :quads, n % 16, :]
            q = self.q[index // 16, :-1, index % 16].flatten(-2)[..., :self.in_features]
        else:
            q = self.q[index]
        return (q.float() * self.scales[index].unsqueeze(-1)).to(dtype)

    def nbytes(self) -> int:
        return self.q.numel() * self.q.element_size() + self.scales.numel() * 4

    def linear(self, x, b, activation="identity"):
        return _ops.linear_int8(x.contiguous(), self.q, self.scales, b, activation)


def quantize_int8_(module, name: str, pack: bool = False) -> None:
    """module.<name> (a float weight Parameter) becomes its Int8Weight (packed for the CPU panel
    GEMM with `pack` where Int8Weight.pack_applies); the float tensor is dropped."""
    q = Int8Weight.quantize(getattr(module, name), pack=pack)
    delattr(module, name)
    setattr(module, name, q)


def weight_bytes(model) -> int:
    """Bytes of the weights `model` holds: parameters (shared storage counted once), int8
    weights and their scales, and the packed copies of its PackedDecodeGemm runners (the KV
    cache and decode buffers not counted)."""
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    for m in model.modules():
        for v in vars(m).values():
            if isinstance(v, (Int8Weight, PackedDecodeGemm)):
                total += v.nbytes()
    return total


class Gemm:
    @staticmethod
    def linear(x, w, b):
        """x @ w.T + b; x is made contiguous (a no-op when it already is)."""
        if isinstance(w, Int8Weight):
            return w.linear(x, b)
        return _ops.linear(x.contiguous(), w, b, "identity")

    @staticmethod
    def ffn(m, mlp):
        """act(m W1^T + b1) W2^T for a FeedForward `mlp`; b2 is left to the next add_layernorm."""
        if isinstance(mlp.w1, Int8Weight):
            return mlp.w2.linear(mlp.w1.linear(m, mlp.b1, mlp.activation), None)
        return _ops.ffn(m, mlp.w1, mlp.b1, mlp.w2, None, mlp.activation, None)


class PackedDecodeGemm:
    """The GEMMs of a decode step (a few rows: one token per sequence) on CPU float32, through
    the eet_like packed-weight kernel (ops.linear_packed: 1.2-1.75x oneDNN at 1-8 rows on the
    development CPU, where oneDNN/MKL repack the weight on every call). Larger row counts, other
    devices and dtypes go to Gemm.

    Each weight is packed on first use and repacked when it changes (its tensor version moves),
    so loading or editing weights never leaves a stale copy. The packed copies cost as much
    memory as the weights they mirror (GPT-2 small: ~0.5 GB). EET_LIKE_PACKED_DECODE=0 turns
    the path off. An Int8Weight is never packed: it goes to ops.linear_int8 for any row count
    (its few-row kernel serves decode steps; exact int32 sums, so rows never mix)."""

    MAX_ROWS = 16

    def __init__(self, max_rows=MAX_ROWS, _shared=None):
        self.max_rows = max_rows  # None: any number of rows
        self._packed = {} if _shared is None else _shared  # id(weight) -> (weight, version, packed)

    def any_rows(self) -> "PackedDecodeGemm":
        """The same packed weights, used for any number of rows. The packed kernel computes each
        output row with the same instructions whatever the row count (oneDNN picks kernels by
        shape), so a row's result does not depend on which other rows share the step: what a
        server batching independent requests needs for exact per-request results."""
        return PackedDecodeGemm(max_rows=None, _shared=self._packed)

    @staticmethod
    def enabled() -> bool:
        v = os.environ.get("EET_LIKE_PACKED_DECODE", "1")
        if v not in ("0", "1"):
            raise ValueError(f"EET_LIKE_PACKED_DECODE must be 0 or 1, got {v!r}")
        return v == "1"

    def _use(self, x) -> bool:
        # Not in the CUDA emulation build: its CPU tensors take the CUDA path (linear/ffn ops).
        return (x.device.type == "cpu" and x.dtype == torch.float32 and not cuda_emulated()
                and (self.max_rows is None or x.numel() // x.shape[-1] <= self.max_rows) and self.enabled())

    def nbytes(self) -> int:
        """Bytes of the packed float copies made so far."""
        return sum(p.numel() * p.element_size() for _, _, p in self._packed.values())

    def packed(self, w):
        hit = self._packed.get(id(w))
        if hit is None or hit[0] is not w or hit[1] != w._version:
            hit = (w, w._version, _ops.pack_linear(w.detach()))
            self._packed[id(w)] = hit
        return hit[2]

    def linear(self, x, w, b, activation="identity"):
        if isinstance(w, Int8Weight):
            return w.linear(x, b, activation)
        if not self._use(x):
            return _ops.linear(x.contiguous(), w, b, activation)
        return _ops.linear_packed(x.contiguous(), self.packed(w), w.shape[0], b, activation)

    def ffn(self, m, mlp):
        """act(m W1^T + b1) W2^T (b2 left to the next add_layernorm), as Gemm.ffn."""
        if isinstance(mlp.w1, Int8Weight) or not self._use(m):
            return Gemm.ffn(m, mlp)
        return self.linear(self.linear(m, mlp.w1, mlp.b1, mlp.activation), mlp.w2, None)
