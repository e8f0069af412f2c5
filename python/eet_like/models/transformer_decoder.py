"""The fairseq Transformer decoder's maths on the eet_like layers (no fairseq import: the
adapter in integrations/fairseq.py converts fairseq's options and weights into this model and
implements fairseq's incremental-decoder protocol on top of it).

A stack of TransformerBlocks, pre-norm (--decoder-normalize-before) or post-norm, causal, with
cross-attention over an encoder output for `transformer` (encoder-decoder) models. Embedding:
scaled word embeddings (the scale folded into the table when there is no input projection),
fairseq's positions (make_positions: real tokens count from padding_idx + 1, pads get
padding_idx), optional layernorm; at the end an optional layernorm, output projection to the
vocabulary.

Decoding: start() gives a DecodeState on a KV cache (the decoder's preallocated one, claimed,
or a new one grown as needed); prefill() runs the whole prefix once writing cache positions
[0, T); step() runs the last token of each row at the shared position `length`. Left pads are
masked per row with key_start; the encoder K/V are projected once per sentence.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..generation import DecodeState, KVCache
from ..layers import EncoderKV, LayerNorm, PackedDecodeGemm, Prompt, Step, TransformerBlock, run_blocks
from ..layers.gemm import quantize_int8_, weight_bytes


@dataclass
class DecoderConfig:
    vocab_size: int
    embed_dim: int
    num_layers: int
    num_heads: int
    head_dim: int
    ffn_dim: int
    activation: str             # an eet_like activation (ops.ACTIVATIONS)
    pre_norm: bool
    padding_idx: int
    max_positions: int
    embed_scale: float = 1.0
    position_rows: int = 0      # rows of the position table; 0: no positional embedding
    input_embed_dim: Optional[int] = None   # word embedding width when it is projected in
    output_embed_dim: Optional[int] = None  # features are projected out to this width
    embed_layernorm: bool = False
    final_layernorm: bool = False
    output_bias: bool = False
    cross_kv_dim: Optional[int] = None      # encoder width (encoder-decoder models)
    cross_heads: Optional[int] = None


def _weight(shape, p, value=0.0):
    return nn.Parameter(torch.full(shape, value, **p), requires_grad=False)


class TransformerDecoderModel(nn.Module):
    def __init__(self, c: DecoderConfig, dtype=torch.float32, device=None, max_batch: Optional[int] = None,
                 max_seq_len: Optional[int] = None):
        super().__init__()
        p = dict(dtype=dtype, device=device)
        self.config = c
        word_dim = c.input_embed_dim or c.embed_dim
        self.word = _weight((c.vocab_size, word_dim), p)
        self.project_in = _weight((c.embed_dim, word_dim), p) if c.input_embed_dim is not None else None
        self.positions = _weight((max(c.position_rows, 1), c.embed_dim), p)
        self.ln_embed = LayerNorm(c.embed_dim, **p) if c.embed_layernorm else None
        self.layers = nn.ModuleList(
            TransformerBlock(c.embed_dim, c.num_heads, c.ffn_dim, c.activation, causal=True, pre_norm=c.pre_norm,
                             head_dim=c.head_dim, cross_kv_dim=c.cross_kv_dim, cross_heads=c.cross_heads,
                             cross_scale=1.0, **p) for _ in range(c.num_layers))
        self.layer_norm = LayerNorm(c.embed_dim, **p) if c.final_layernorm else None
        out_dim = c.output_embed_dim or c.embed_dim
        self.project_out = _weight((out_dim, c.embed_dim), p) if c.output_embed_dim is not None else None
        self.output_weight = _weight((c.vocab_size, out_dim), p)
        self.output_bias = _weight((c.vocab_size,), p) if c.output_bias else None
        # Few-row GEMMs (incremental steps) on CPU run on packed weights; see PackedDecodeGemm.
        self.gemm = PackedDecodeGemm()
        if (max_batch is None) != (max_seq_len is None):
            raise ValueError("max_batch and max_seq_len go together (both set: one preallocated KV "
                             f"cache; both None: per-decode caches), got max_batch={max_batch!r}, "
                             f"max_seq_len={max_seq_len!r}")
        self.fixed_cache: Optional[KVCache] = None
        self.cache_owner: Optional[object] = None   # the DecodeState.owner holding fixed_cache
        if max_batch is not None:
            if max_seq_len > c.max_positions:
                raise ValueError(f"max_seq_len ({max_seq_len}) exceeds the decoder's max_positions "
                                 f"({c.max_positions})")
            self.fixed_cache = KVCache.allocate(max(c.num_layers, 1), max_batch, c.num_heads, max_seq_len,
                                                c.head_dim, **p)

    @torch.no_grad()
    def quantize_int8_(self) -> None:
        """int8 (ops.linear_int8) for every linear weight: the blocks', the input/output projections
        and the output embedding. The word table (an embedding lookup, with the embedding
        scale folded in) stays float."""
        for blk in self.layers:
            blk.quantize_int8_()
        for name in ("project_in", "project_out", "output_weight"):
            if getattr(self, name) is not None:
                quantize_int8_(self, name, pack=True)
        self.gemm = PackedDecodeGemm()   # drop float packed copies made before

    def memory_bytes(self) -> int:
        return weight_bytes(self)

    @property
    def dtype(self) -> torch.dtype:
        return self.word.dtype

    @property
    def device(self) -> torch.device:
        return self.word.device

    # ------------------------------------------------------------------ pieces
    def make_positions(self, tokens, nonpad=None):
        """fairseq's make_positions: non-pad tokens count from padding_idx + 1, pads get padding_idx."""
        pad = self.config.padding_idx
        if self.config.position_rows == 0:
            return torch.zeros_like(tokens)
        if nonpad is None:
            return torch.arange(pad + 1, pad + 1 + tokens.size(1), device=tokens.device).expand_as(tokens).contiguous()
        m = nonpad.to(torch.int64)
        return torch.cumsum(m, dim=1) * m + pad

    def embed(self, tokens, positions):
        ln = self.ln_embed
        if self.project_in is None:
            return ops.embedding(tokens, self.word, self.positions, position_ids=positions,
                                 ln_weight=None if ln is None else ln.weight, ln_bias=None if ln is None else ln.bias,
                                 eps=1e-5 if ln is None else ln.eps)
        x = self.gemm.linear(F.embedding(tokens, self.word) * self.config.embed_scale, self.project_in, None)
        x = x + F.embedding(positions, self.positions)
        return ln(x) if ln is not None else x

    def self_ranges(self, tokens):
        """(nonpad mask or None when there is no pad, key_start, key_end) for a prompt pass."""
        nonpad = tokens.ne(self.config.padding_idx)
        if bool(nonpad.all()):
            return None, None, None
        try:
            start, end = ops.mask_to_ranges(nonpad)
        except ValueError as e:
            raise ValueError("prev_output_tokens must pad each row at one end only (left or right "
                             "padding), got a pad between real tokens") from e
        return nonpad, start, end

    def encoder_inputs(self, enc, enc_pad) -> EncoderKV:
        """enc [B, Sk, C] (batch-major encoder output), enc_pad [B, Sk] (True = pad) or None ->
        every layer's projected K/V and the encoder key range of each row."""
        enc = enc.to(self.dtype)
        kv = [layer.cross.project_kv(enc, self.gemm) for layer in self.layers]
        if enc_pad is None:
            return EncoderKV(kv)
        if enc_pad.shape != enc.shape[:2]:
            raise ValueError(f"encoder_padding_mask must be [B, Sk] = {list(enc.shape[:2])}, got "
                             f"{list(enc_pad.shape)}")
        if not bool(enc_pad.any()):
            return EncoderKV(kv)
        try:
            start, end = ops.mask_to_ranges(enc_pad == 0)
        except ValueError as e:
            raise ValueError("encoder_padding_mask must pad each row at one end only (left or right "
                             "padding)") from e
        return EncoderKV(kv, start, end)

    def _blocks(self, x, attend, encoder, collect: bool):
        """-> (features [..., E], inner states or None)."""
        inner = [x] if collect else None
        y = run_blocks(self.layers, x, attend, gemm=self.gemm, pre_norm=self.config.pre_norm,
                       final_norm=self.layer_norm, encoder=encoder, collect=inner)
        return y, inner

    def finish(self, x, inner):
        """Features -> (project_out(features), {"attn": [None], "inner_states"}) as fairseq returns
        them (inner states T x B x C)."""
        if self.project_out is not None:
            x = self.gemm.linear(x, self.project_out, None)
        if inner is not None:
            inner = [h.transpose(0, 1) for h in inner]
        return x, {"attn": [None], "inner_states": inner}

    def output_layer(self, features):
        return self.gemm.linear(features, self.output_weight, self.output_bias)

    # ------------------------------------------------------------------ passes
    def full(self, tokens, encoder: Optional[EncoderKV], collect: bool):
        """No decode state: causal attention over the whole sequences (scoring)."""
        nonpad, ks, ke = self.self_ranges(tokens)
        x = self.embed(tokens, self.make_positions(tokens, nonpad))
        return self.finish(*self._blocks(x, Prompt(ks, ke), encoder, collect))

    def start(self, batch: int, seq: int) -> DecodeState:
        """A decode state for `batch` rows: on the preallocated cache (claimed from any earlier
        state) or on a new cache of at least `seq` positions."""
        c = self.fixed_cache
        if c is not None:
            if batch > c.max_batch or seq > c.max_seq:
                raise ValueError(f"the preallocated KV cache holds max_batch={c.max_batch}, max_seq_len="
                                 f"{c.max_seq}; this decode needs batch {batch} and {seq} positions")
            self.cache_owner = object()
            return DecodeState(c, owner=self.cache_owner)
        cap = min(self.config.max_positions, max(64, 2 * seq))
        cfg = self.config
        return DecodeState(KVCache.allocate(max(cfg.num_layers, 1), batch, cfg.num_heads, cap, cfg.head_dim,
                                            dtype=self.dtype, device=self.device))

    def prefill(self, tokens, state: DecodeState, collect: bool):
        """One pass over the whole prefix [B, T] writing cache positions [0, T); the features of
        the last position."""
        b, t = tokens.shape
        nonpad, ks, ke = self.self_ranges(tokens)
        x = self.embed(tokens, self.make_positions(tokens, nonpad))
        x, inner = self._blocks(x, Prompt(ks, ke, state.cache), state.encoder, collect)
        state.n, state.length = b, t
        if inner is not None:
            inner = [h[:, -1:] for h in inner]
        return self.finish(x[:, -1:], inner)

    def step(self, tokens, state: DecodeState, collect: bool):
        """The last token of each row of the prefix [B, T] (T = state.length + 1) at cache
        position state.length."""
        b, t = tokens.shape
        pos = state.length
        if pos >= state.cache.max_seq:
            self._grow(state, pos + 1)
        key_start = None
        last = tokens[:, -1:]
        nonpad = tokens.ne(self.config.padding_idx)
        if bool(nonpad.all()):
            positions = (torch.full_like(last, self.config.padding_idx + t) if self.config.position_rows
                         else torch.zeros_like(last))
        else:
            # Leading pads (left-padded prompts) are masked per row with key_start. A pad after
            # real tokens stays visible as a key: the cache keeps one contiguous key range per
            # row. fairseq's SequenceGenerator feeds such pads only to hypotheses whose score is
            # already -inf (beam search forced through prefix tokens picks -inf candidates), so
            # no hypothesis it can return depends on them.
            lead = (torch.cumsum(nonpad, dim=1) == 0).sum(dim=1)
            key_start = lead.to(torch.int32) if bool(lead.any()) else None
            positions = self.make_positions(tokens, nonpad)[:, -1:]
        x = self.embed(last.contiguous(), positions)
        slot = torch.full((b,), pos, dtype=torch.int32, device=self.device)
        x, inner = self._blocks(x, Step(state.cache, slot, key_start, max_keys=pos + 1), state.encoder, collect)
        state.length = pos + 1
        return self.finish(x, inner)

    def _grow(self, state: DecodeState, needed: int):
        if state.owner is not None:
            raise ValueError(f"cache overflow: the preallocated KV cache holds max_seq_len="
                             f"{state.cache.max_seq} positions; build the decoder with a larger max_seq_len")
        cap = min(self.config.max_positions, max(needed, 2 * state.cache.max_seq))
        if needed > cap:
            raise ValueError(f"the prefix needs {needed} positions, more than max_positions() = "
                             f"{self.config.max_positions}")
        state.cache = state.cache.grow(cap, state.length)
