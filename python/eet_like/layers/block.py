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
import os
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

from .. import ops
from ..validation import cuda_emulated
from .attention import CrossAttention, SelfAttention
from .ffn import FeedForward
from .gemm import Gemm, Int8Weight, PackedDecodeGemm, quantize_int8_
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
        per output row; packed for the CPU panel GEMM where Int8Weight.pack_applies); the GEMM
        runners then run the int8 kernels."""
        names = [(self.attn, "qkv_weight"), (self.attn, "out_weight"), (self.mlp, "w1"), (self.mlp, "w2")]
        if self.cross is not None:
            names += [(self.cross, "q_weight"), (self.cross, "kv_weight"), (self.cross, "out_weight")]
        for module, name in names:
            quantize_int8_(module, name, pack=True)


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
    if (isinstance(attend, Step) and pre_norm and final_norm is not None and encoder is None
            and collect is None and not last_only):
        weights = fused_step_weights(blocks, final_norm, gemm, x)
        if weights is not None:
            a = blocks[0].attn
            return ops.decode_layers(x, weights, attend.cache.k[:len(blocks)], attend.cache.v[:len(blocks)],
                                     attend.positions, a.num_heads, [b.attn.scale for b in blocks],
                                     final_norm.eps, blocks[0].mlp.activation, attend.key_start, attend.max_keys)
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


def fused_decode_enabled() -> bool:
    """Whether CPU decode steps run the block stack as one ops.decode_layers call
    (EET_LIKE_FUSED_DECODE, default 1; 0 runs the same kernels from the Python loop)."""
    v = os.environ.get("EET_LIKE_FUSED_DECODE", "1")
    if v not in ("0", "1"):
        raise ValueError(f"EET_LIKE_FUSED_DECODE must be 0 or 1, got {v!r}")
    return v == "1"


def fused_step_weights(blocks, final_norm: LayerNorm, gemm, x) -> Optional[list]:
    """The `weights` of ops.decode_layers for a pre-norm decode step of `blocks` on x, or None
    where that op does not run the kernels the Python loop would: not CPU float32 (or the CUDA
    emulation build), a block with cross-attention or its own head count, layernorm eps or
    activation, or a float weight that `gemm` would not run through the packed kernel (more
    rows than PackedDecodeGemm.max_rows, or EET_LIKE_PACKED_DECODE=0)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 2 or cuda_emulated():
        return None
    if not fused_decode_enabled():
        return None
    first = blocks[0]
    packed = isinstance(gemm, PackedDecodeGemm) and gemm._use(x)
    out = []

    def lin(w, b=None, with_bias=True):
        if isinstance(w, Int8Weight):
            out.extend((w.q, w.scales))
        elif packed:
            out.extend((gemm.packed(w), None))
        else:
            return False
        if with_bias:
            out.append(b)
        return True

    for blk in blocks:
        at, mlp = blk.attn, blk.mlp
        if (blk.cross is not None or at.num_heads != first.attn.num_heads or not at.causal
                or mlp.activation != first.mlp.activation
                or blk.ln_attn.eps != final_norm.eps or blk.ln_mlp.eps != final_norm.eps):
            return None
        out.extend((blk.ln_attn.weight, blk.ln_attn.bias))
        if not lin(at.qkv_weight, at.qkv_bias) or not lin(at.out_weight, with_bias=False):
            return None
        out.extend((at.out_bias, blk.ln_mlp.weight, blk.ln_mlp.bias))
        if not lin(mlp.w1, mlp.b1) or not lin(mlp.w2, with_bias=False):
            return None
        out.append(mlp.b2)
    out.extend((final_norm.weight, final_norm.bias))
    return out
