"""fairseq integration: a drop-in FairseqIncrementalDecoder built from the eet_like ops.

    model.decoder = eet_like.fairseq.TransformerDecoder.from_fairseq(model.decoder)

is the whole change: fairseq's own SequenceGenerator (greedy, beam, sampling, prefix tokens)
then decodes with the fused kernels. Covers the decoders of `transformer_lm` language models
and of `transformer` encoder-decoder models (cross-attention over the encoder output).

How a decode runs (fairseq's incremental protocol, see FairseqIncrementalDecoder):
  * every call gets the whole prefix prev_output_tokens [B, t+1]; the first call with a fresh
    incremental_state runs one full pass over it (ops.attention, causal, writing the KV cache
    positions [0, t+1)) — with SequenceGenerator that prefix is the single BOS token; later
    calls run the last token only (masked_attention at the one shared cache position t).
  * positions come from fairseq's make_positions over the full prefix (pads get padding_idx),
    left pads are masked per row with key_start (a pad after real tokens, which fairseq only
    feeds to -inf-scored beams, stays visible: see _step).
  * the encoder output is projected to K/V once per sentence and kept in the state; the
    per-row encoder key ranges come from encoder_padding_mask.
  * reorder_incremental_state gathers the cache rows (beam search), also when fairseq drops
    finished sentences and the batch shrinks.
This module imports fairseq; `import eet_like` never imports it (eet_like.fairseq is lazy).
"""
import os
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

try:
    from fairseq.models import FairseqIncrementalDecoder
    from fairseq.models.transformer import TransformerDecoderBase
    from fairseq.modules import LearnedPositionalEmbedding, SinusoidalPositionalEmbedding
except ImportError as e:  # pragma: no cover - exercised only without fairseq
    raise ImportError(
        "eet_like.fairseq needs fairseq. On Python 3.11 install the maintained fork: "
        "pip install --no-build-isolation --no-deps fairseq-fixed==0.12.3.1 (see "
        "requirements-fairseq.txt / scripts/install_fairseq.sh in the eet_like repository)") from e

from .. import ops
from ..generation.kv_cache import KVCache
from ..layers import FeedForward, Gemm, LayerNorm, PackedDecodeGemm, SelfAttention

__all__ = ["TransformerDecoder", "optimize", "load_checkpoint", "FairseqCheckpoint", "ACTIVATIONS"]

# fairseq --activation-fn -> eet_like ffn activation. fairseq "gelu" is the erf form,
# "gelu_accurate" (and its deprecated alias "gelu_fast") the tanh form.
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gelu_accurate": "gelu_new", "gelu_fast": "gelu_new",
               "linear": "identity"}

_STATE_KEY = "eet_like"


def _unsupported(option: str, why: str = "") -> ValueError:
    return ValueError(f"eet_like.fairseq.TransformerDecoder does not support {option}"
                      + (f": {why}" if why else "") + " (NotImplemented)")


def _cfg_get(cfg, dotted: str, default=None):
    cur = cfg
    for part in dotted.split("."):
        if cur is None:
            return default
        cur = getattr(cur, part, None) if not isinstance(cur, dict) else cur.get(part)
    return default if cur is None else cur


def _check_decoder(decoder) -> None:
    """Raise ValueError/TypeError naming every option of `decoder` the fused decoder lacks."""
    if not isinstance(decoder, TransformerDecoderBase):
        raise TypeError("decoder must be a fairseq TransformerDecoder (transformer_lm or transformer "
                        f"models), got {type(decoder).__module__}.{type(decoder).__name__}")
    for name in ("forward", "extract_features", "extract_features_scriptable", "output_layer"):
        if getattr(type(decoder), name) is not getattr(TransformerDecoderBase, name):
            raise TypeError(f"{type(decoder).__name__} overrides TransformerDecoder.{name}; only "
                            "fairseq's own TransformerDecoder is converted")
    cfg = getattr(decoder, "cfg", None)
    if cfg is None:
        raise TypeError("decoder has no .cfg (a fairseq >= 0.10 TransformerDecoder is expected)")
    if decoder.adaptive_softmax is not None or _cfg_get(cfg, "adaptive_softmax_cutoff") is not None:
        raise _unsupported("adaptive softmax (adaptive_softmax_cutoff)")
    if _cfg_get(cfg, "adaptive_input", False) or not isinstance(decoder.embed_tokens, nn.Embedding):
        raise _unsupported("adaptive_input / character_embeddings",
                           f"embed_tokens is {type(decoder.embed_tokens).__name__}, not nn.Embedding")
    if _cfg_get(cfg, "tie_adaptive_weights", False):
        raise _unsupported("tie_adaptive_weights")
    if decoder.quant_noise is not None or float(_cfg_get(cfg, "quant_noise.pq", 0) or 0) > 0:
        raise _unsupported("quant-noise (quant_noise_pq > 0)")
    if float(_cfg_get(cfg, "quant_noise.scalar", 0) or 0) > 0:
        raise _unsupported("quant_noise_scalar > 0")
    if decoder.cross_self_attention:
        raise _unsupported("cross_self_attention")
    act = _cfg_get(cfg, "activation_fn", "relu")
    act = getattr(act, "value", act)
    if act not in ACTIVATIONS:
        raise _unsupported(f"activation_fn '{act}'", f"supported: {', '.join(ACTIVATIONS)}")
    if not isinstance(decoder.output_projection, nn.Linear):
        raise _unsupported(f"output_projection of type {type(decoder.output_projection).__name__}")
    ep = decoder.embed_positions
    if ep is not None and not isinstance(ep, (LearnedPositionalEmbedding, SinusoidalPositionalEmbedding)):
        raise _unsupported(f"positional embedding {type(ep).__name__}")
    if isinstance(ep, LearnedPositionalEmbedding) and ep.padding_idx is None:
        raise _unsupported("learned positions without padding_idx")
    for i, layer in enumerate(_all_layers(decoder)):
        where = f"decoder layer {i}"
        if type(layer).__name__ == "BaseLayer":
            raise _unsupported("base_layers > 0 (BASE layers)", where)
        for attr, option in (("attn_ln", "scale_attn"), ("c_attn", "scale_heads"),
                             ("ffn_layernorm", "scale_fc"), ("w_resid", "scale_resids")):
            if getattr(layer, attr, None) is not None:
                raise _unsupported(option, where)
        for attn_name in ("self_attn", "encoder_attn"):
            attn = getattr(layer, attn_name, None)
            if attn is None:
                continue
            if attn.bias_k is not None or attn.add_zero_attn:
                raise _unsupported("add_bias_kv / add_zero_attn", f"{where}.{attn_name}")
            if getattr(attn, "use_xformers", False):
                raise _unsupported("xformers_att_config", f"{where}.{attn_name}")
        if layer.self_attn.kdim != layer.embed_dim or layer.self_attn.vdim != layer.embed_dim:
            raise _unsupported("self-attention with kdim/vdim != embed_dim", where)


def _all_layers(decoder) -> list:
    """Every decoder layer. Iterating a LayerDropModuleList (decoder_layerdrop > 0) in training
    mode drops layers at random; at inference fairseq runs them all, and so do we."""
    return [decoder.layers[i] for i in range(len(decoder.layers))]


def _param(t: Optional[torch.Tensor], like_shape, dtype, device) -> torch.Tensor:
    if t is None:
        return torch.zeros(like_shape, dtype=dtype, device=device)
    return t.detach().to(dtype=dtype, device=device)


def _copy_ln(dst: LayerNorm, src: nn.Module) -> None:
    w, b = getattr(src, "weight", None), getattr(src, "bias", None)
    if w is not None:
        dst.weight.copy_(w.detach())
    if b is not None:
        dst.bias.copy_(b.detach())
    dst.eps = float(getattr(src, "eps", 1e-5))


class _CrossAttention(nn.Module):
    """Encoder-decoder attention: q from the decoder, K/V projected from the encoder output
    once per sentence (fused [K | V] projection). forward() leaves out_bias to the caller."""

    def __init__(self, hidden: int, kv_dim: int, num_heads: int, scale: float, dtype, device):
        super().__init__()
        p = dict(dtype=dtype, device=device)
        self.num_heads, self.scale, self.inner = num_heads, scale, hidden
        self.q_weight = nn.Parameter(torch.zeros(hidden, hidden, **p), requires_grad=False)
        self.q_bias = nn.Parameter(torch.zeros(hidden, **p), requires_grad=False)
        self.kv_weight = nn.Parameter(torch.zeros(2 * hidden, kv_dim, **p), requires_grad=False)
        self.kv_bias = nn.Parameter(torch.zeros(2 * hidden, **p), requires_grad=False)
        self.out_weight = nn.Parameter(torch.zeros(hidden, hidden, **p), requires_grad=False)
        self.out_bias = nn.Parameter(torch.zeros(hidden, **p), requires_grad=False)

    def project_kv(self, enc_bm: torch.Tensor, g=Gemm) -> torch.Tensor:
        """enc_bm [B, Sk, C] (batch-major encoder output) -> [B, Sk, 2*hidden] ([K | V])."""
        return g.linear(enc_bm.contiguous(), self.kv_weight, self.kv_bias)

    def forward(self, x, kv, key_start, key_end, g=Gemm):
        """x [B, S, hidden], kv [B, Sk, 2*hidden] -> [B, S, hidden] (no out_bias)."""
        q = g.linear(x, self.q_weight, self.q_bias)
        ctx = torch.ops.eet_like.cross_attention(q, kv[..., :self.inner], kv[..., self.inner:],
                                                 self.num_heads, key_start, key_end, self.scale)
        return g.linear(ctx, self.out_weight, None)


def _attend_prompt(g, sa: SelfAttention, y, key_start, key_end, k_cache=None, v_cache=None):
    """Causal self-attention over y [B, S, E] (optionally filling cache positions [0, S));
    returns the output projection without out_bias."""
    qkv = g.linear(y, sa.qkv_weight, sa.qkv_bias)
    ctx = torch.ops.eet_like.attention(qkv, sa.num_heads, True, key_start, key_end, k_cache, v_cache, sa.scale)
    return g.linear(ctx, sa.out_weight, None)


def _attend_step(g, sa: SelfAttention, y, k_cache, v_cache, slot, key_start):
    """One token per row, y [B, E], against the cache (written at `slot`); no out_bias."""
    qkv = g.linear(y, sa.qkv_weight, sa.qkv_bias)
    ctx = torch.ops.eet_like.masked_attention(qkv, k_cache, v_cache, slot, key_start, sa.num_heads, sa.scale)
    return g.linear(ctx, sa.out_weight, None)


class _Layer(nn.Module):
    def __init__(self, src, activation: str, dtype, device):
        super().__init__()
        E = src.embed_dim
        sa = src.self_attn
        H, D = sa.num_heads, sa.head_dim
        p = dict(dtype=dtype, device=device)
        self.self_attn = SelfAttention(E, H, head_dim=D, causal=True, scale=float(sa.scaling), **p)
        self.self_attn.qkv_weight.copy_(torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight]).detach())
        self.self_attn.qkv_bias.copy_(torch.cat([_param(m.bias, (H * D,), dtype, device)
                                                 for m in (sa.q_proj, sa.k_proj, sa.v_proj)]))
        self.self_attn.out_weight.copy_(sa.out_proj.weight.detach())
        self.self_attn.out_bias.copy_(_param(sa.out_proj.bias, (E,), dtype, device))
        self.ln_self = LayerNorm(E, **p)
        _copy_ln(self.ln_self, src.self_attn_layer_norm)
        ea = src.encoder_attn
        if ea is not None:
            self.cross = _CrossAttention(E, ea.kdim, ea.num_heads, float(ea.scaling), dtype, device)
            self.cross.q_weight.copy_(ea.q_proj.weight.detach())
            self.cross.q_bias.copy_(_param(ea.q_proj.bias, (E,), dtype, device))
            self.cross.kv_weight.copy_(torch.cat([ea.k_proj.weight, ea.v_proj.weight]).detach())
            self.cross.kv_bias.copy_(torch.cat([_param(m.bias, (E,), dtype, device)
                                                for m in (ea.k_proj, ea.v_proj)]))
            self.cross.out_weight.copy_(ea.out_proj.weight.detach())
            self.cross.out_bias.copy_(_param(ea.out_proj.bias, (E,), dtype, device))
            self.ln_cross = LayerNorm(E, **p)
            _copy_ln(self.ln_cross, src.encoder_attn_layer_norm)
        else:
            self.cross = self.ln_cross = None
        inner = src.fc1.out_features
        self.ffn = FeedForward(E, inner, activation, **p)
        self.ffn.w1.copy_(src.fc1.weight.detach())
        self.ffn.b1.copy_(_param(src.fc1.bias, (inner,), dtype, device))
        self.ffn.w2.copy_(src.fc2.weight.detach())
        self.ffn.b2.copy_(_param(src.fc2.bias, (E,), dtype, device))
        self.ln_ffn = LayerNorm(E, **p)
        _copy_ln(self.ln_ffn, src.final_layer_norm)


@dataclass
class _DecodeState:
    """What one incremental_state holds for this decoder (stored under one key)."""
    cache: KVCache            # per layer [Bcap, H, Scap, D]
    length: int               # cache positions filled, shared by all rows
    batch: int                # live rows (shrinks when fairseq drops finished sentences)
    cross_kv: Optional[List[torch.Tensor]]   # per layer [B, Sk, 2*E], or None (no encoder)
    cross_start: Optional[torch.Tensor]      # [B] int32 encoder key ranges, or None (no padding)
    cross_end: Optional[torch.Tensor]
    cross_group: Optional[torch.Tensor]      # [B] int64: rows with equal ids hold equal encoder rows
    owner: Optional[object]   # claim token on the decoder's preallocated cache, or None


class FairseqCheckpoint(NamedTuple):
    model: Any   # the fairseq model, its decoder swapped for eet_like's
    cfg: Any     # the checkpoint's config (omegaconf)
    task: Any    # the fairseq task (dictionaries: task.source_dictionary / target_dictionary)


class TransformerDecoder(FairseqIncrementalDecoder):
    """fairseq TransformerDecoder rebuilt from the eet_like fused ops (inference only: no
    dropout, no gradients). Build it with `TransformerDecoder.from_fairseq(decoder)`.

    Attention weights are not returned (extra["attn"] is [None]): the fused kernels never
    materialize them, so alignment output (alignment_layer/alignment_heads) is refused."""

    def __init__(self, decoder, dtype: Optional[torch.dtype] = None, device=None,
                 max_batch: Optional[int] = None, max_seq_len: Optional[int] = None):
        _check_decoder(decoder)
        super().__init__(decoder.dictionary)
        ref = decoder.embed_tokens.weight
        dtype = ref.dtype if dtype is None else dtype
        device = ref.device if device is None else torch.device(device)
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
        _check_dtype_device(dtype, device)
        p = dict(dtype=dtype, device=device)
        cfg = decoder.cfg
        self.padding_idx = int(decoder.padding_idx)
        self.embed_dim = decoder.embed_dim
        self.output_embed_dim = decoder.output_embed_dim
        self.max_target_positions = int(decoder.max_target_positions)
        self.embed_scale = float(decoder.embed_scale)
        layers = _all_layers(decoder)
        self.normalize_before = bool(layers[0].normalize_before if layers else
                                     _cfg_get(cfg, "decoder.normalize_before", False))
        self.activation = ACTIVATIONS[getattr(_cfg_get(cfg, "activation_fn", "relu"), "value",
                                              _cfg_get(cfg, "activation_fn", "relu"))]
        self.num_layers = len(layers)
        self.num_heads = layers[0].self_attn.num_heads if layers else 1
        self.head_dim = layers[0].self_attn.head_dim if layers else self.embed_dim
        self.has_encoder_attn = bool(layers) and layers[0].encoder_attn is not None

        with torch.no_grad():
            word = decoder.embed_tokens.weight.detach()
            self.project_in = (nn.Parameter(decoder.project_in_dim.weight.detach().to(**p), requires_grad=False)
                               if decoder.project_in_dim is not None else None)
            # The embedding scale is folded into the table: fl(s * w) is what fairseq computes
            # per looked-up row, so the sum with the positions rounds the same way.
            if self.project_in is None and self.embed_scale != 1.0:
                word_table = (word.to(**p) * self.embed_scale)
            else:
                word_table = word.to(**p)
            self.word = nn.Parameter(word_table, requires_grad=False)
            ep = decoder.embed_positions
            self.max_pos = self.max_target_positions if ep is None else min(self.max_target_positions,
                                                                             int(ep.max_positions))
            if ep is None:
                pos_table = torch.zeros(1, self.embed_dim, **p)
            elif isinstance(ep, LearnedPositionalEmbedding):
                pos_table = ep.weight.detach().to(**p)
            else:
                pos_table = SinusoidalPositionalEmbedding.get_embedding(
                    self.max_pos + self.padding_idx + 1, ep.embedding_dim, self.padding_idx).to(**p)
            self.has_positions = ep is not None
            self.positions = nn.Parameter(pos_table, requires_grad=False)
            lne = decoder.layernorm_embedding
            self.ln_embed_weight = self.ln_embed_bias = None
            self.ln_embed_eps = 1e-5
            if lne is not None:
                self.ln_embed_weight = nn.Parameter(_param(lne.weight, (self.embed_dim,), dtype, device)
                                                    if lne.weight is not None else torch.ones(self.embed_dim, **p),
                                                    requires_grad=False)
                self.ln_embed_bias = nn.Parameter(_param(lne.bias, (self.embed_dim,), dtype, device),
                                                  requires_grad=False)
                self.ln_embed_eps = float(getattr(lne, "eps", 1e-5))
            self.layers = nn.ModuleList([_Layer(layer, self.activation, dtype, device) for layer in layers])
            if decoder.layer_norm is not None:
                self.layer_norm = LayerNorm(self.embed_dim, **p)
                _copy_ln(self.layer_norm, decoder.layer_norm)
            else:
                self.layer_norm = None
            self.project_out = (nn.Parameter(decoder.project_out_dim.weight.detach().to(**p), requires_grad=False)
                                if decoder.project_out_dim is not None else None)
            proj = decoder.output_projection
            # Shared input/output embedding: the unscaled weight, the same storage as the fairseq
            # model's when dtype/device do not change.
            self.output_weight = nn.Parameter(proj.weight.detach().to(**p), requires_grad=False)
            self.output_bias = (nn.Parameter(proj.bias.detach().to(**p), requires_grad=False)
                                if proj.bias is not None else None)

        # Few-row GEMMs (incremental steps) on CPU run on packed weights; see PackedDecodeGemm.
        self._gemm = PackedDecodeGemm()
        self._fixed_cache: Optional[KVCache] = None
        self._cache_owner: Optional[object] = None
        if (max_batch is None) != (max_seq_len is None):
            raise ValueError("max_batch and max_seq_len go together (both set: one preallocated KV "
                             f"cache; both None: per-decode caches), got max_batch={max_batch!r}, "
                             f"max_seq_len={max_seq_len!r}")
        if max_batch is not None:
            if max_seq_len > self.max_pos:
                raise ValueError(f"max_seq_len ({max_seq_len}) exceeds the decoder's max_positions "
                                 f"({self.max_pos})")
            self._fixed_cache = KVCache.allocate(max(self.num_layers, 1), max_batch, self.num_heads,
                                                 max_seq_len, self.head_dim, **p)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_fairseq(cls, decoder, dtype: Optional[torch.dtype] = None, device=None,
                     max_batch: Optional[int] = None, max_seq_len: Optional[int] = None) -> "TransformerDecoder":
        """Convert a fairseq TransformerDecoder (transformer_lm or transformer models).

        dtype/device default to the fairseq decoder's. max_batch/max_seq_len (together)
        preallocate one KV cache [max_batch, H, max_seq_len, D] per layer, reused by every
        decode (static buffers; one live incremental_state at a time); without them each
        decode allocates its own cache, grown as needed. Unsupported options raise ValueError
        naming the option."""
        return cls(decoder, dtype=dtype, device=device, max_batch=max_batch, max_seq_len=max_seq_len)

    # ------------------------------------------------------------------ fairseq API
    def max_positions(self):
        return self.max_pos

    def forward(self, prev_output_tokens, encoder_out: Optional[Dict[str, List[torch.Tensor]]] = None,
                incremental_state: Optional[Dict[str, Dict[str, Optional[torch.Tensor]]]] = None,
                features_only: bool = False, full_context_alignment: bool = False,
                alignment_layer: Optional[int] = None, alignment_heads: Optional[int] = None,
                src_lengths: Optional[Any] = None, return_all_hiddens: bool = False):
        """-> (logits [B, T, V] (T = 1 with incremental_state), {"attn": [None], "inner_states"})."""
        x, extra = self.extract_features(prev_output_tokens, encoder_out=encoder_out,
                                         incremental_state=incremental_state,
                                         full_context_alignment=full_context_alignment,
                                         alignment_layer=alignment_layer, alignment_heads=alignment_heads,
                                         return_all_hiddens=return_all_hiddens)
        if not features_only:
            x = self.output_layer(x)
        return x, extra

    def output_layer(self, features):
        return self._g.linear(features.contiguous(), self.output_weight, self.output_bias)

    @torch.no_grad()
    def extract_features(self, prev_output_tokens, encoder_out: Optional[Dict[str, List[torch.Tensor]]] = None,
                         incremental_state: Optional[Dict[str, Dict[str, Optional[torch.Tensor]]]] = None,
                         full_context_alignment: bool = False, alignment_layer: Optional[int] = None,
                         alignment_heads: Optional[int] = None, return_all_hiddens: bool = False, **kwargs):
        if full_context_alignment:
            raise _unsupported("full_context_alignment=True")
        if alignment_layer is not None or alignment_heads is not None:
            raise _unsupported("alignment_layer / alignment_heads",
                               "the fused attention kernels do not return attention weights")
        if kwargs:
            raise TypeError(f"extract_features got unexpected arguments: {', '.join(sorted(kwargs))}")
        tokens = self._check_tokens(prev_output_tokens)
        enc, enc_pad = self._unpack_encoder_out(encoder_out)
        if self.has_encoder_attn and enc is None:
            raise ValueError("encoder_out is required: this decoder attends to an encoder output "
                             "(encoder_out['encoder_out'][0], [Sk, B, C])")
        if enc is not None and enc.size(1) != tokens.size(0):
            raise ValueError(f"encoder_out['encoder_out'][0] must be [Sk, B = {tokens.size(0)}, C], got "
                             f"{list(enc.shape)} (reorder the encoder output with the decoder state: "
                             "model.encoder.reorder_encoder_out)")
        if incremental_state is None:
            return self._full(tokens, enc, enc_pad, return_all_hiddens)
        state = self._get_state(incremental_state)
        if state is None:
            return self._prefill(tokens, enc, enc_pad, incremental_state, return_all_hiddens)
        return self._step(tokens, state, return_all_hiddens)

    def reorder_incremental_state(self, incremental_state: Dict[str, Dict[str, Optional[torch.Tensor]]],
                                  new_order: torch.Tensor):
        """Row b becomes old row new_order[b] (beam search); fewer rows when fairseq drops
        finished sentences."""
        state = self._get_state(incremental_state)
        if state is None:
            return
        if not isinstance(new_order, torch.Tensor) or new_order.dim() != 1 or \
                new_order.dtype not in (torch.int32, torch.int64):
            raise ValueError("new_order must be a 1-D int64 tensor of row indices, got "
                             f"{getattr(new_order, 'dtype', type(new_order).__name__)} "
                             f"{list(getattr(new_order, 'shape', []))}")
        n = new_order.numel()
        if n > 0:
            lo, hi = int(new_order.min()), int(new_order.max())
            if lo < 0 or hi >= state.batch:
                raise ValueError(f"new_order values must be in [0, {state.batch}) (the live rows), "
                                 f"got values in [{lo}, {hi}]")
        index = new_order.to(device=self.device, dtype=torch.int64)
        if n > state.cache.max_batch:
            k = [buf.index_select(0, index) for buf in state.cache.k]
            v = [buf.index_select(0, index) for buf in state.cache.v]
            state.cache, state.owner = KVCache(k, v), None
        elif state.length > 0:
            _reorder_rows_(state.cache, index, state.length)
        state.batch = n
        if state.cross_kv is not None:
            group = state.cross_group.index_select(0, index)
            if torch.equal(group, state.cross_group):
                # Beam search permutes the beams of a sentence, which share one encoder output:
                # every row already holds the encoder K/V it needs (fairseq skips this gather too).
                return
            state.cross_group = group
            state.cross_kv = [kv.index_select(0, index) for kv in state.cross_kv]
            if state.cross_start is not None:
                state.cross_start = state.cross_start.index_select(0, index)
                state.cross_end = state.cross_end.index_select(0, index)

    # ------------------------------------------------------------------ internals
    @property
    def dtype(self) -> torch.dtype:
        return self.word.dtype

    @property
    def device(self) -> torch.device:
        return self.word.device

    @property
    def _g(self):
        return self._gemm

    def _check_tokens(self, tokens):
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"prev_output_tokens must be a torch.Tensor, got {type(tokens).__name__}")
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"prev_output_tokens must be [B, T] int64, got {tokens.dtype} {list(tokens.shape)}")
        if tokens.size(1) == 0:
            raise ValueError("prev_output_tokens must hold at least one token per row, got [B, 0]")
        if tokens.device != self.word.device:
            raise ValueError(f"prev_output_tokens is on {tokens.device}, the decoder on {self.word.device}")
        if tokens.size(1) > self.max_pos:
            raise ValueError(f"prev_output_tokens has {tokens.size(1)} positions, more than the decoder's "
                             f"max_positions() = {self.max_pos}")
        return tokens

    def _unpack_encoder_out(self, encoder_out):
        if encoder_out is None:
            return None, None
        if not isinstance(encoder_out, dict) or "encoder_out" not in encoder_out:
            raise TypeError("encoder_out must be fairseq's encoder output dict with 'encoder_out' "
                            f"and 'encoder_padding_mask' lists, got {type(encoder_out).__name__}")
        enc = encoder_out["encoder_out"][0] if len(encoder_out["encoder_out"]) > 0 else None
        pad = encoder_out.get("encoder_padding_mask", [])
        pad = pad[0] if pad is not None and len(pad) > 0 else None
        if enc is None:
            return None, None
        if not self.has_encoder_attn:
            # fairseq's layers skip encoder attention without encoder_attn; so do we.
            return None, None
        if enc.dim() != 3:
            raise ValueError(f"encoder_out['encoder_out'][0] must be [Sk, B, C], got {list(enc.shape)}")
        return enc, pad

    def _cross_inputs(self, enc, enc_pad):
        """-> (per-layer K/V [B, Sk, 2E], key_start, key_end) from the encoder output."""
        enc_bm = enc.transpose(0, 1).to(self.dtype)
        kv = [layer.cross.project_kv(enc_bm, self._g) for layer in self.layers]
        if enc_pad is None:
            return kv, None, None
        if enc_pad.shape != enc_bm.shape[:2]:
            raise ValueError(f"encoder_padding_mask must be [B, Sk] = {list(enc_bm.shape[:2])}, got "
                             f"{list(enc_pad.shape)}")
        if not bool(enc_pad.any()):
            return kv, None, None
        try:
            start, end = ops.mask_to_ranges(enc_pad == 0)
        except ValueError as e:
            raise ValueError("encoder_padding_mask must pad each row at one end only (left or right "
                             "padding)") from e
        return kv, start, end

    def _positions(self, tokens, nonpad):
        """fairseq's make_positions: non-pad tokens count from padding_idx + 1, pads get padding_idx."""
        if not self.has_positions:
            return torch.zeros_like(tokens)
        if nonpad is None:
            return torch.arange(self.padding_idx + 1, self.padding_idx + 1 + tokens.size(1),
                                device=tokens.device).expand_as(tokens).contiguous()
        m = nonpad.to(torch.int64)
        return torch.cumsum(m, dim=1) * m + self.padding_idx

    def _embed(self, tokens, positions):
        if self.project_in is None:
            return ops.embedding(tokens, self.word, self.positions, position_ids=positions,
                                 ln_weight=self.ln_embed_weight, ln_bias=self.ln_embed_bias,
                                 eps=self.ln_embed_eps)
        x = self._g.linear(F.embedding(tokens, self.word) * self.embed_scale, self.project_in, None)
        x = x + F.embedding(positions, self.positions)
        if self.ln_embed_weight is not None:
            x = ops.layernorm(x, self.ln_embed_weight, self.ln_embed_bias, self.ln_embed_eps)
        return x

    def _layers(self, x, self_attn, cross, collect: bool):
        """The layer stack on x [B, S, E]. self_attn(i, layer, y) -> attention output without
        out_bias; cross(i, layer, y) likewise (or None). Residual adds are fused into the next
        layernorm. Returns (features before project_out, inner states or None)."""
        inner = [x] if collect else None
        n = len(self.layers)
        g = self._g
        if self.normalize_before:
            if n == 0:
                return (self.layer_norm(x) if self.layer_norm is not None else x), inner
            y = self.layers[0].ln_self(x)
            for i, layer in enumerate(self.layers):
                a = self_attn(i, layer, y)
                if layer.cross is not None and cross is not None:
                    y, x = layer.ln_cross(a, x, layer.self_attn.out_bias)
                    c = cross(i, layer, y)
                    y, x = layer.ln_ffn(c, x, layer.cross.out_bias)
                else:
                    y, x = layer.ln_ffn(a, x, layer.self_attn.out_bias)
                f = g.ffn(y, layer.ffn)
                if i + 1 < n:
                    y, x = self.layers[i + 1].ln_self(f, x, layer.ffn.b2)
                elif self.layer_norm is not None:
                    y, x = self.layer_norm(f, x, layer.ffn.b2)
                else:
                    x = f.add_(x).add_(layer.ffn.b2)
                    y = x
                if collect:
                    inner.append(x)
            return y, inner
        for i, layer in enumerate(self.layers):
            a = self_attn(i, layer, x)
            x, _ = layer.ln_self(a, x, layer.self_attn.out_bias)
            if layer.cross is not None and cross is not None:
                c = cross(i, layer, x)
                x, _ = layer.ln_cross(c, x, layer.cross.out_bias)
            f = g.ffn(x, layer.ffn)
            x, _ = layer.ln_ffn(f, x, layer.ffn.b2)
            if collect:
                inner.append(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return x, inner

    def _finish(self, x, inner):
        if self.project_out is not None:
            x = self._g.linear(x.contiguous(), self.project_out, None)
        if inner is not None:
            inner = [h.transpose(0, 1) for h in inner]   # fairseq's T x B x C
        return x, {"attn": [None], "inner_states": inner}

    def _self_ranges(self, tokens):
        """(nonpad mask or None when there is no pad, key_start, key_end) for a prompt pass."""
        nonpad = tokens.ne(self.padding_idx)
        if bool(nonpad.all()):
            return None, None, None
        try:
            start, end = ops.mask_to_ranges(nonpad)
        except ValueError as e:
            raise ValueError("prev_output_tokens must pad each row at one end only (left or right "
                             "padding), got a pad between real tokens") from e
        return nonpad, start, end

    def _full(self, tokens, enc, enc_pad, collect):
        """No incremental state: causal attention over the whole sequence (scoring)."""
        nonpad, ks, ke = self._self_ranges(tokens)
        x = self._embed(tokens, self._positions(tokens, nonpad))
        cross = None
        if enc is not None:
            kv, cs, ce = self._cross_inputs(enc, enc_pad)
            cross = lambda i, layer, y: layer.cross(y, kv[i], cs, ce, g)  # noqa: E731
        g = self._g
        x, inner = self._layers(x, lambda i, layer, y: _attend_prompt(g, layer.self_attn, y, ks, ke), cross, collect)
        return self._finish(x, inner)

    def _new_cache(self, batch, seq):
        if self._fixed_cache is not None:
            c = self._fixed_cache
            if batch > c.max_batch or seq > c.max_seq:
                raise ValueError(f"the preallocated KV cache holds max_batch={c.max_batch}, max_seq_len="
                                 f"{c.max_seq}; this decode needs batch {batch} and {seq} positions")
            owner = object()
            self._cache_owner = owner
            return c, owner
        cap = min(self.max_pos, max(64, 2 * seq))
        return KVCache.allocate(max(self.num_layers, 1), batch, self.num_heads, cap, self.head_dim,
                                dtype=self.dtype, device=self.device), None

    def _get_state(self, incremental_state) -> Optional[_DecodeState]:
        if not isinstance(incremental_state, dict):
            raise TypeError(f"incremental_state must be a dict, got {type(incremental_state).__name__}")
        holder = self.get_incremental_state(incremental_state, _STATE_KEY)
        if holder is None:
            return None
        state = holder["state"]
        if state.owner is not None and state.owner is not self._cache_owner:
            raise RuntimeError("this incremental_state's KV cache was taken over by a newer decode: the "
                               "decoder was built with max_batch/max_seq_len (one preallocated cache), so "
                               "only the most recent incremental_state can continue")
        return state

    def _prefill(self, tokens, enc, enc_pad, incremental_state, collect):
        """First call with a fresh state: one pass over the whole prefix fills the cache."""
        B, T = tokens.shape
        nonpad, ks, ke = self._self_ranges(tokens)
        cache, owner = self._new_cache(B, T)
        g = self._g
        state = _DecodeState(cache=cache, length=T, batch=B, cross_kv=None, cross_start=None,
                             cross_end=None, cross_group=None, owner=owner)
        cross = None
        if enc is not None:
            state.cross_kv, state.cross_start, state.cross_end = self._cross_inputs(enc, enc_pad)
            state.cross_group = _equal_row_groups(enc, enc_pad)
            cross = lambda i, layer, y: layer.cross(y, state.cross_kv[i], state.cross_start,  # noqa: E731
                                                    state.cross_end, g)
        x = self._embed(tokens, self._positions(tokens, nonpad))
        x, inner = self._layers(
            x, lambda i, layer, y: _attend_prompt(g, layer.self_attn, y, ks, ke, cache.k[i], cache.v[i]),
            cross, collect)
        self.set_incremental_state(incremental_state, _STATE_KEY, {"state": state})
        if inner is not None:
            inner = [h[:, -1:] for h in inner]
        return self._finish(x[:, -1:], inner)

    def _step(self, tokens, state: _DecodeState, collect):
        """One token per row at the shared cache position state.length."""
        B, T = tokens.shape
        if B != state.batch:
            raise ValueError(f"prev_output_tokens has {B} rows but the incremental_state holds {state.batch} "
                             "(call reorder_incremental_state when rows change)")
        if T != state.length + 1:
            raise ValueError(f"prev_output_tokens must be the whole prefix, {state.length + 1} tokens per row "
                             f"(the incremental_state holds {state.length}), got {T}")
        pos = state.length
        if pos >= state.cache.max_seq:
            self._grow(state, pos + 1)
        key_start = None
        last = tokens[:, -1:]
        nonpad = tokens.ne(self.padding_idx)
        if bool(nonpad.all()):
            positions = torch.full_like(last, self.padding_idx + T) if self.has_positions else torch.zeros_like(last)
        else:
            # Leading pads (left-padded prompts) are masked per row with key_start. A pad after
            # real tokens stays visible as a key: the cache keeps one contiguous key range per
            # row. fairseq's SequenceGenerator feeds such pads only to hypotheses whose score is
            # already -inf (beam search forced through prefix tokens picks -inf candidates), so
            # no hypothesis it can return depends on them.
            lead = (torch.cumsum(nonpad, dim=1) == 0).sum(dim=1)
            key_start = lead.to(torch.int32) if bool(lead.any()) else None
            positions = self._positions(tokens, nonpad)[:, -1:]
        x = self._embed(last.contiguous(), positions)
        slot = torch.full((B,), pos, dtype=torch.int32, device=self.device)
        cache, g = state.cache, self._g

        def self_attn(i, layer, y):
            out = _attend_step(g, layer.self_attn, y.view(B, -1), cache.k[i], cache.v[i], slot, key_start)
            return out.view(B, 1, -1)

        cross = None
        if state.cross_kv is not None:
            cross = lambda i, layer, y: layer.cross(y, state.cross_kv[i], state.cross_start,  # noqa: E731
                                                    state.cross_end, g)
        x, inner = self._layers(x, self_attn, cross, collect)
        state.length = pos + 1
        return self._finish(x, inner)

    def _grow(self, state: _DecodeState, needed: int):
        if state.owner is not None:
            raise ValueError(f"cache overflow: the preallocated KV cache holds max_seq_len="
                             f"{state.cache.max_seq} positions; build the decoder with a larger max_seq_len")
        old = state.cache
        cap = min(self.max_pos, max(needed, 2 * old.max_seq))
        if needed > cap:
            raise ValueError(f"the prefix needs {needed} positions, more than max_positions() = {self.max_pos}")
        new = KVCache.allocate(len(old.k), old.max_batch, self.num_heads, cap, self.head_dim,
                               dtype=self.dtype, device=self.device)
        for src, dst in zip((*old.k, *old.v), (*new.k, *new.v)):
            dst[:, :, :state.length].copy_(src[:, :, :state.length])
        state.cache = new


def _reorder_rows_(cache: KVCache, index: torch.Tensor, length: int) -> None:
    """Row b of every cache buffer becomes old row index[b], positions [0, length). Only the
    rows that change are copied: fairseq reorders every step, greedy search with the identity
    and beam search mostly within a few beams; a full gather per step would make a decode
    quadratic in its length."""
    n = index.numel()
    moved = (index != torch.arange(n, device=index.device)).nonzero().squeeze(1)
    if moved.numel() == 0:
        return
    src = index.index_select(0, moved)
    for buf in (*cache.k, *cache.v):
        live = buf[:, :, :length]
        live.index_copy_(0, moved, live.index_select(0, src))


def _equal_row_groups(enc, enc_pad) -> torch.Tensor:
    """[B] int64 ids, equal for neighbouring batch rows whose encoder output (and padding) are
    equal, as SequenceGenerator lays out the beams of a sentence. Equal ids imply equal rows,
    so a reorder that keeps every row's id needs no gather of the encoder K/V."""
    B = enc.size(1)
    if B <= 1:
        return torch.zeros(B, dtype=torch.int64, device=enc.device)
    same = (enc[:, 1:] == enc[:, :-1]).all(dim=2).all(dim=0)   # enc is [Sk, B, C]
    if enc_pad is not None:
        same &= (enc_pad[1:] == enc_pad[:-1]).all(dim=1)
    new = torch.cat([torch.zeros(1, dtype=torch.int64, device=enc.device), (~same).to(torch.int64)])
    return torch.cumsum(new, dim=0)


def _check_dtype_device(dtype, device):
    """Fail at conversion, not mid-decode, when the kernels lack this dtype/device."""
    x = torch.ones(1, 8, dtype=dtype, device=device) if dtype.is_floating_point else None
    if x is None:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    try:
        ops.layernorm(x, torch.ones(8, dtype=dtype, device=device), torch.zeros(8, dtype=dtype, device=device))
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as e:
        raise ValueError(f"the eet_like kernels do not support dtype {dtype} on {device}: {e}") from e


def optimize(model, dtype: Optional[torch.dtype] = None, device=None, **kwargs):
    """Swap model.decoder (a fairseq TransformerDecoder) for eet_like's and return the model.
    device moves the whole model (encoder included); dtype converts the decoder and the encoder
    (as model.half() would). kwargs (max_batch, max_seq_len) go to from_fairseq."""
    if not hasattr(model, "decoder"):
        raise TypeError(f"model must be a fairseq model with a .decoder, got {type(model).__name__}")
    if isinstance(model.decoder, TransformerDecoder):
        raise ValueError("model.decoder is already an eet_like TransformerDecoder")
    new = TransformerDecoder.from_fairseq(model.decoder, dtype=dtype, device=device, **kwargs)
    encoder = getattr(model, "encoder", None)
    if encoder is not None and (dtype is not None or device is not None):
        encoder.to(device=device, dtype=dtype)
    model.decoder = new
    return model


def load_checkpoint(path: str, trust_checkpoint: bool = False, dtype: Optional[torch.dtype] = None,
                    device=None, arg_overrides: Optional[Dict[str, Any]] = None, task=None,
                    **kwargs) -> FairseqCheckpoint:
    """Load a fairseq checkpoint (model.pt) and swap in the eet_like decoder.

    fairseq checkpoints are pickles: loading one runs code from the file. Pass
    trust_checkpoint=True only for files you trust; without it this raises ValueError and
    reads nothing. arg_overrides (e.g. {"data": "/path/with/dict.txt"}) and task go to
    fairseq.checkpoint_utils.load_model_ensemble_and_task. Returns FairseqCheckpoint(model,
    cfg, task) with the model in eval mode."""
    if trust_checkpoint is not True:
        raise ValueError("fairseq checkpoints are Python pickles and loading one can run arbitrary code; "
                         "pass trust_checkpoint=True if you trust the file "
                         f"({os.fspath(path)!r}); nothing was read")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no fairseq checkpoint file at {path!r}")
    from fairseq import checkpoint_utils

    key = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    old = os.environ.get(key)
    os.environ[key] = "1"  # fairseq pickles its config objects; torch >= 2.6 refuses them otherwise
    try:
        with warnings.catch_warnings():
            # the caller chose trust_checkpoint=True; torch's reminder says the same thing again
            warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
            models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
                [path], arg_overrides=arg_overrides, task=task)
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
    model = optimize(models[0], dtype=dtype, device=device, **kwargs).eval()
    return FairseqCheckpoint(model, cfg, task)
