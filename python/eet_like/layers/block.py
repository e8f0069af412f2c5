"""The one transformer block of every model, and the one loop over a stack of them.

A block is self-attention (+ cross-attention) + FFN with a layernorm per sub-layer, pre-norm
(GPT-2, fairseq --decoder-normalize-before) or post-norm (BERT, fairseq's default):

    pre-norm:   y = ln_attn(h); h += attn(y) + bo; [y = ln_cross(h); h += cross(y) + co];
                y = ln_mlp(h); h += mlp(y) + b2          (the next block's ln_attn, or the final norm)
    post-norm:  x = ln_attn(x + attn(x) + bo); [x = ln_cross(x + cross(x) + co)];
                x = ln_mlp(x + mlp(x) + b2)

Every bias add after a GEMM rides in the following add_layernorm (residual_bias), so a block is
GEMM -> attention -> GEMM -> add_layernorm [-> cross ...] -> FFN -> add_layernorm. How the
self-attention reaches its keys is the pass: Prompt (a whole prompt, optionally writing the KV
cache) or Step (one token per row against the cache)."""
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

from .attention import CrossAttention, SelfAttention
from .ffn import FeedForward
from .gemm import Gemm, quantize_int8_
from .layernorm import LayerNorm


class TransformerBlock(nn.Module):
    def __init__(self, hidden: int, num_heads: int, inner: int, activation: str, *, causal: bool,
                 pre_norm: bool, eps: float = 1e-5, head_dim: Optional[int] = None,
                 scale: Optional[float] = None, cross_kv_dim: Optional[int] = None,
                 cross_heads: Optional[int] = None, cross_scale: Optional[float] = None,
                 dtype=torch.float32, device=None):
        super().__init__()
        p = dict(dtype=dtype, device=device)
        self.pre_norm = pre_norm
        self.ln_attn = LayerNorm(hidden, eps, **p)
        self.attn = SelfAttention(hidden, num_heads, head_dim=head_dim, causal=causal, scale=scale, **p)
        if cross_kv_dim is not None:
            self.ln_cross = LayerNorm(hidden, eps, **p)
            self.cross = CrossAttention(hidden, cross_kv_dim, cross_heads, cross_scale, **p)
        else:
            self.ln_cross = self.cross = None
        self.ln_mlp = LayerNorm(hidden, eps, **p)
        self.mlp = FeedForward(hidden, inner, activation, **p)

    def quantize_int8_(self) -> None:
        """Every linear weight of the block becomes an Int8Weight (int8, one scale
        per output row); the GEMM runners then run the int8 kernels."""
        names = [(self.attn, "qkv_weight"), (self.attn, "out_weight"), (self.mlp, "w1"), (self.mlp, "w2")]
        if self.cross is not None:
            names += [(self.cross, "q_weight"), (self.cross, "kv_weight"), (self.cross, "out_weight")]
        for module, name in names:
            quantize_int8_(module, name)


@dataclass
class Prompt:
    """Self-attention over whole sequences [B, S]: keys key_start[b] <= j < key_end[b] (None:
    all), causal if the block's attention is; with `cache` (a KVCache), every layer's K/V of
    positions [0, S) is written into cache rows [0, B)."""
    key_start: Optional[torch.Tensor] = None
    key_end: Optional[torch.Tensor] = None
    cache: Optional[object] = None

    def __call__(self, i, attn: SelfAttention, y, gemm, last_only=False):
        kc = vc = None
        if self.cache is not None:
            kc, vc = self.cache.k[i], self.cache.v[i]
        return attn.prompt(y, gemm, self.key_start, self.key_end, kc, vc, last_only)


@dataclass
class Step:
    """One token per row against the KV cache: row b writes slot positions[b] ([B] int32) and
    attends over [key_start[b], positions[b]]."""
    cache: object
    positions: torch.Tensor
    key_start: Optional[torch.Tensor] = None
    max_keys: Optional[int] = None   # host-known bound of the keys a row sees (CUDA launch size)

    def __call__(self, i, attn: SelfAttention, y, gemm, last_only=False):
        return attn.step(y, self.cache.k[i], self.cache.v[i], self.positions, self.key_start, gemm,
                         self.max_keys)


@dataclass
class EncoderKV:
    """Cross-attention inputs: per layer the projected encoder K/V [B, Sk, 2*hidden], and the
    encoder positions [key_start[b], key_end[b]) each row sees (None: all)."""
    kv: List[torch.Tensor]
    key_start: Optional[torch.Tensor] = None
    key_end: Optional[torch.Tensor] = None


def run_blocks(blocks, x, attend, *, gemm=Gemm, pre_norm: bool, final_norm: Optional[LayerNorm] = None,
               encoder: Optional[EncoderKV] = None, last_only: bool = False,
               collect: Optional[list] = None):
    """The block stack on x [B, S, hidden] (or [B, hidden] for a Step): the output after the
    final norm (pre-norm without a final norm: the residual stream). last_only: the last
    block runs its output projection and FFN on the last position only ([B, 1, hidden] out).
    collect: a list that gets the residual stream after every block (fairseq's inner states)."""
    if len(blocks) == 0:
        return final_norm(x) if final_norm is not None else x
    last = len(blocks) - 1
    if pre_norm:
        h = x
        y = blocks[0].ln_attn(x)
        for i, blk in enumerate(blocks):
            lo = last_only and i == last
            a = attend(i, blk.attn, y, gemm, lo)
            if lo:
                h = h[:, -1:].contiguous()
            if blk.cross is not None and encoder is not None:
                y, h = blk.ln_cross(a, h, blk.attn.out_bias)
                c = blk.cross(y, encoder.kv[i], encoder.key_start, encoder.key_end, gemm)
                y, h = blk.ln_mlp(c, h, blk.cross.out_bias)
            else:
                y, h = blk.ln_mlp(a, h, blk.attn.out_bias)
            f = blk.mlp(y, gemm)
            nxt = blocks[i + 1].ln_attn if i < last else final_norm
            if nxt is not None:
                y, h = nxt(f, h, blk.mlp.b2)
            else:
                h = f.add_(h).add_(blk.mlp.b2)
                y = h
            if collect is not None:
                collect.append(h)
        return y
    for i, blk in enumerate(blocks):
        lo = last_only and i == last
        a = attend(i, blk.attn, x, gemm, lo)
        if lo:
            x = x[:, -1:].contiguous()
        x, _ = blk.ln_attn(a, x, blk.attn.out_bias)
        if blk.cross is not None and encoder is not None:
            c = blk.cross(x, encoder.kv[i], encoder.key_start, encoder.key_end, gemm)
            x, _ = blk.ln_cross(c, x, blk.cross.out_bias)
        f = blk.mlp(x, gemm)
        x, _ = blk.ln_mlp(f, x, blk.mlp.b2)
        if collect is not None:
            collect.append(x)
    return final_norm(x) if final_norm is not None else x
