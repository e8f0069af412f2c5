"""The attention modules of every model: self-attention over a prompt (optionally filling the
KV cache), one decode step against the cache, and cross-attention over an encoder output.
Each takes its GEMM runner (layers.gemm: Gemm, or PackedDecodeGemm for CPU decode steps) and
returns the output projection WITHOUT its bias: the caller fuses out_bias into the next
add_layernorm."""
import math

import torch
from torch import nn

from .. import ops
from .gemm import Gemm


def _param(shape, p):
    return nn.Parameter(torch.zeros(shape, **p), requires_grad=False)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection ([3][H][D] output layout)."""

    def __init__(self, hidden: int, num_heads: int, head_dim: int = None, causal: bool = True,
                 scale: float = None, dtype=torch.float32, device=None):
        super().__init__()
        if head_dim is None:
            if num_heads <= 0 or hidden % num_heads != 0:
                raise ValueError(f"hidden ({hidden}) must be divisible by num_heads ({num_heads})")
            head_dim = hidden // num_heads
        p = dict(dtype=dtype, device=device)
        self.num_heads, self.head_dim, self.causal = num_heads, head_dim, causal
        self.scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
        inner = num_heads * head_dim
        self.qkv_weight = _param((3 * inner, hidden), p)
        self.qkv_bias = _param((3 * inner,), p)
        self.out_weight = _param((hidden, inner), p)
        self.out_bias = _param((hidden,), p)

    def prompt(self, x, gemm=Gemm, key_start=None, key_end=None, k_cache=None, v_cache=None,
               last_only: bool = False):
        """x [B, S, hidden] -> [B, S, hidden] ([B, 1, hidden] with last_only: the output
        projection of the last position only). With k_cache/v_cache [Bmax, H, Smax, D], K/V of
        positions [0, S) are written into rows [0, B)."""
        qkv = gemm.linear(x, self.qkv_weight, self.qkv_bias)
        ctx = ops.attention(qkv, self.num_heads, self.causal, key_start=key_start, key_end=key_end,
                            k_cache=k_cache, v_cache=v_cache, scale=self.scale)
        if last_only:
            ctx = ctx[:, -1:]
        return gemm.linear(ctx, self.out_weight, None)

    def step(self, x, k_cache, v_cache, positions, key_start=None, gemm=Gemm, max_keys=None):
        """One new token per row: x [B, hidden] (or [B, 1, hidden]) -> the same shape. Row b
        writes its K/V at cache slot positions[b] and attends over slots
        [key_start[b], positions[b]]. No host sync: the caller keeps positions in the cache.
        max_keys: the host's bound of the keys a row sees (sizes the CUDA launch; None = Smax)."""
        qkv = gemm.linear(x.reshape(x.shape[0], -1), self.qkv_weight, self.qkv_bias)
        ctx = ops.masked_attention(qkv, k_cache, v_cache, positions, self.num_heads, key_start=key_start,
                                   scale=self.scale, check=False, max_keys=max_keys)
        return gemm.linear(ctx, self.out_weight, None).view(x.shape)


class CrossAttention(nn.Module):
    """Encoder-decoder attention: queries from the decoder, K/V projected from the encoder
    output once per sequence (fused [K | V] projection)."""

    def __init__(self, hidden: int, kv_dim: int, num_heads: int, scale: float, dtype=torch.float32,
                 device=None):
        super().__init__()
        p = dict(dtype=dtype, device=device)
        self.num_heads, self.scale, self.inner = num_heads, scale, hidden
        self.q_weight = _param((hidden, hidden), p)
        self.q_bias = _param((hidden,), p)
        self.kv_weight = _param((2 * hidden, kv_dim), p)
        self.kv_bias = _param((2 * hidden,), p)
        self.out_weight = _param((hidden, hidden), p)
        self.out_bias = _param((hidden,), p)

    def project_kv(self, enc, gemm=Gemm):
        """enc [B, Sk, kv_dim] (batch-major encoder output) -> [B, Sk, 2*hidden] ([K | V])."""
        return gemm.linear(enc, self.kv_weight, self.kv_bias)

    def forward(self, x, kv, key_start=None, key_end=None, gemm=Gemm):
        """x [B, S, hidden], kv [B, Sk, 2*hidden] -> [B, S, hidden]; row b sees encoder
        positions [key_start[b], key_end[b])."""
        q = gemm.linear(x, self.q_weight, self.q_bias)
        ctx = ops.cross_attention(q, kv[..., :self.inner], kv[..., self.inner:], self.num_heads,
                                  key_start=key_start, key_end=key_end, scale=self.scale)
        return gemm.linear(ctx, self.out_weight, None)
