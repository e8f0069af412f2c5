import math

import torch
from torch import nn

from .. import ops


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection ([3][H][D] output layout).

    prefill(x, ...) runs the prompt pass (optionally filling a KV cache), decode(x, ...) one
    token per row against the cache. Both return the context projected by out_weight but
    WITHOUT out_bias: callers fuse the bias into the following add_layernorm."""

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
        self.qkv_weight = nn.Parameter(torch.zeros(3 * inner, hidden, **p), requires_grad=False)
        self.qkv_bias = nn.Parameter(torch.zeros(3 * inner, **p), requires_grad=False)
        self.out_weight = nn.Parameter(torch.zeros(hidden, inner, **p), requires_grad=False)
        self.out_bias = nn.Parameter(torch.zeros(hidden, **p), requires_grad=False)

    def _qkv(self, x):
        return ops.linear(x.contiguous(), self.qkv_weight, self.qkv_bias)

    def _out(self, ctx):
        return ops.linear(ctx.contiguous(), self.out_weight)

    def prefill(self, x, key_start=None, key_end=None, k_cache=None, v_cache=None):
        """x [B, S, hidden] -> [B, S, hidden] (no out_bias)."""
        ctx = torch.ops.eet_like.attention(self._qkv(x), self.num_heads, self.causal, key_start,
                                           key_end, k_cache, v_cache, self.scale)
        return self._out(ctx)

    def decode(self, x, k_cache, v_cache, positions, key_start=None):
        """x [B, hidden] (one new token per row) -> [B, hidden] (no out_bias)."""
        ctx = torch.ops.eet_like.masked_attention(self._qkv(x), k_cache, v_cache, positions,
                                                  key_start, self.num_heads, self.scale)
        return self._out(ctx)
