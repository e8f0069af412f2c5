"""fairseq integration: a drop-in FairseqIncrementalDecoder on the eet_like kernels.

    model.decoder = eet_like.fairseq.TransformerDecoder.from_fairseq(model.decoder)

is the whole change: fairseq's own SequenceGenerator (greedy, beam, sampling, prefix tokens)
then decodes with the fused kernels. Covers the decoders of `transformer_lm` language models
and of `transformer` encoder-decoder models (cross-attention over the encoder output).

This adapter validates fairseq's options (anything the fused decoder cannot honour raises,
naming the option), converts the weights into models.transformer_decoder (the maths), and
implements fairseq's incremental protocol on it:
  * every call gets the whole prefix prev_output_tokens [B, t+1]; the first call with a fresh
    incremental_state runs one pass over it writing the KV cache — with SequenceGenerator that
    prefix is the single BOS token; later calls run the last token only;
  * the encoder output is projected to K/V once per sentence and kept in the decode state;
  * reorder_incremental_state reorders the cache rows (only the rows that change), also when
    fairseq drops finished sentences and the batch shrinks.
Checkpoint loading is in integrations/fairseq_checkpoint.py. This module imports fairseq;
`import eet_like` never imports it (eet_like.fairseq is lazy).
"""
from typing import Any, Dict, List, Optional

import torch
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

from ..generation import DecodeState
from ..layers.activations import FOREIGN_ACTIVATIONS
from ..models.transformer_decoder import DecoderConfig, TransformerDecoderModel
from ..validation import check_device_dtype, check_quantize

__all__ = ["TransformerDecoder", "optimize", "ACTIVATIONS"]

# fairseq --activation-fn -> eet_like ffn activation
ACTIVATIONS = FOREIGN_ACTIVATIONS["fairseq"]

_STATE_KEY = "eet_like"


def _activation_fn(cfg) -> str:
    act = _cfg_get(cfg, "activation_fn", "relu")
    return getattr(act, "value", act)


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
    act = _activation_fn(cfg)
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


def _bias(m: nn.Module, rows: int):
    return m.bias if m.bias is not None else torch.zeros(rows)


def _copy_ln(dst, src: Optional[nn.Module]) -> None:
    w, b = getattr(src, "weight", None), getattr(src, "bias", None)
    if w is not None:
        dst.weight.copy_(w.detach())
    if b is not None:
        dst.bias.copy_(b.detach())
    dst.eps = float(getattr(src, "eps", 1e-5))


def _config(decoder) -> DecoderConfig:
    layers = _all_layers(decoder)
    cfg = decoder.cfg
    E = decoder.embed_dim
    ep = decoder.embed_positions
    max_pos = int(decoder.max_target_positions)
    if ep is not None:
        max_pos = min(max_pos, int(ep.max_positions))
    pad = int(decoder.padding_idx)
    sa = layers[0].self_attn if layers else None
    ea = layers[0].encoder_attn if layers else None
    rows = 0
    if isinstance(ep, LearnedPositionalEmbedding):
        rows = ep.weight.shape[0]
    elif ep is not None:
        rows = max_pos + pad + 1
    return DecoderConfig(
        vocab_size=decoder.embed_tokens.weight.shape[0], embed_dim=E, num_layers=len(layers),
        num_heads=sa.num_heads if sa is not None else 1, head_dim=sa.head_dim if sa is not None else E,
        ffn_dim=layers[0].fc1.out_features if layers else 1, activation=ACTIVATIONS[_activation_fn(cfg)],
        pre_norm=bool(layers[0].normalize_before if layers else _cfg_get(cfg, "decoder.normalize_before", False)),
        padding_idx=pad, max_positions=max_pos, embed_scale=float(decoder.embed_scale), position_rows=rows,
        input_embed_dim=decoder.embed_tokens.weight.shape[1] if decoder.project_in_dim is not None else None,
        output_embed_dim=decoder.output_embed_dim if decoder.project_out_dim is not None else None,
        embed_layernorm=decoder.layernorm_embedding is not None, final_layernorm=decoder.layer_norm is not None,
        output_bias=decoder.output_projection.bias is not None,
        cross_kv_dim=ea.kdim if ea is not None else None, cross_heads=ea.num_heads if ea is not None else None)


@torch.no_grad()
def _convert(decoder, model: TransformerDecoderModel) -> None:
    """fairseq's weights into `model` (built from _config(decoder))."""
    c = model.config
    word = decoder.embed_tokens.weight.detach()
    # The embedding scale is folded into the table: fl(s * w) is what fairseq computes per
    # looked-up row, so the sum with the positions rounds the same way.
    if model.project_in is None and c.embed_scale != 1.0:
        model.word.copy_(word.to(model.dtype) * c.embed_scale)
    else:
        model.word.copy_(word)
        if model.project_in is not None:
            model.project_in.copy_(decoder.project_in_dim.weight.detach())
    ep = decoder.embed_positions
    if isinstance(ep, LearnedPositionalEmbedding):
        model.positions.copy_(ep.weight.detach())
    elif ep is not None:
        model.positions.copy_(SinusoidalPositionalEmbedding.get_embedding(c.position_rows, ep.embedding_dim,
                                                                           c.padding_idx))
    if model.ln_embed is not None:
        _copy_ln(model.ln_embed, decoder.layernorm_embedding)
    E = c.embed_dim
    for blk, src in zip(model.layers, _all_layers(decoder)):
        sa = src.self_attn
        blk.attn.scale = float(sa.scaling)
        blk.attn.qkv_weight.copy_(torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight]))
        blk.attn.qkv_bias.copy_(torch.cat([_bias(m, c.num_heads * c.head_dim) for m in (sa.q_proj, sa.k_proj,
                                                                                          sa.v_proj)]))
        blk.attn.out_weight.copy_(sa.out_proj.weight)
        blk.attn.out_bias.copy_(_bias(sa.out_proj, E))
        _copy_ln(blk.ln_attn, src.self_attn_layer_norm)
        ea = src.encoder_attn
        if ea is not None:
            blk.cross.scale = float(ea.scaling)
            blk.cross.q_weight.copy_(ea.q_proj.weight)
            blk.cross.q_bias.copy_(_bias(ea.q_proj, E))
            blk.cross.kv_weight.copy_(torch.cat([ea.k_proj.weight, ea.v_proj.weight]))
            blk.cross.kv_bias.copy_(torch.cat([_bias(m, E) for m in (ea.k_proj, ea.v_proj)]))
            blk.cross.out_weight.copy_(ea.out_proj.weight)
            blk.cross.out_bias.copy_(_bias(ea.out_proj, E))
            _copy_ln(blk.ln_cross, src.encoder_attn_layer_norm)
        blk.mlp.w1.copy_(src.fc1.weight)
        blk.mlp.b1.copy_(_bias(src.fc1, c.ffn_dim))
        blk.mlp.w2.copy_(src.fc2.weight)
        blk.mlp.b2.copy_(_bias(src.fc2, E))
        _copy_ln(blk.ln_mlp, src.final_layer_norm)
    if model.layer_norm is not None:
        _copy_ln(model.layer_norm, decoder.layer_norm)
    if model.project_out is not None:
        model.project_out.copy_(decoder.project_out_dim.weight)
    model.output_weight.copy_(decoder.output_projection.weight)
    if model.output_bias is not None:
        model.output_bias.copy_(decoder.output_projection.bias)


class TransformerDecoder(FairseqIncrementalDecoder):
    """fairseq TransformerDecoder rebuilt from the eet_like fused ops (inference only: no
    dropout, no gradients). Build it with `TransformerDecoder.from_fairseq(decoder)`.

    Attention weights are not returned (extra["attn"] is [None]): the fused kernels never
    materialize them, so alignment output (alignment_layer/alignment_heads) is refused."""

    def __init__(self, decoder, dtype: Optional[torch.dtype] = None, device=None,
                 max_batch: Optional[int] = None, max_seq_len: Optional[int] = None,
                 quantize: Optional[str] = None):
        _check_decoder(decoder)
        super().__init__(decoder.dictionary)
        ref = decoder.embed_tokens.weight
        dtype = ref.dtype if dtype is None else dtype
        device = ref.device if device is None else torch.device(device)
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        try:
            check_device_dtype(dtype, device)
        except ValueError as e:
            raise ValueError(f"the eet_like kernels do not support dtype {dtype} on {device}: {e}") from e
        check_quantize(quantize, dtype, device)
        self.model = TransformerDecoderModel(_config(decoder), dtype=dtype, device=device, max_batch=max_batch,
                                             max_seq_len=max_seq_len)
        _convert(decoder, self.model)
        if quantize == "int8":
            self.model.quantize_int8_()
        self.padding_idx = self.model.config.padding_idx
        self.has_encoder_attn = self.model.config.cross_kv_dim is not None

    @classmethod
    def from_fairseq(cls, decoder, dtype: Optional[torch.dtype] = None, device=None,
                     max_batch: Optional[int] = None, max_seq_len: Optional[int] = None,
                     quantize: Optional[str] = None) -> "TransformerDecoder":
        """Convert a fairseq TransformerDecoder (transformer_lm or transformer models).

        dtype/device default to the fairseq decoder's. max_batch/max_seq_len (together)
        preallocate one KV cache [max_batch, H, max_seq_len, D] per layer, reused by every
        decode (static buffers; one live incremental_state at a time); without them each
        decode allocates its own cache, grown as needed. quantize="int8": int8 GEMMs
        for every linear weight (CPU float32, CUDA float32/float16/bfloat16; the word-embedding
        lookup stays float).
        Unsupported options raise ValueError naming the option."""
        return cls(decoder, dtype=dtype, device=device, max_batch=max_batch, max_seq_len=max_seq_len,
                   quantize=quantize)

    @property
    def layers(self):
        return self.model.layers

    # ------------------------------------------------------------------ fairseq API
    def max_positions(self):
        return self.model.config.max_positions

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
        return self.model.output_layer(features)

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
        m = self.model
        if self.has_encoder_attn and enc is None:
            raise ValueError("encoder_out is required: this decoder attends to an encoder output "
                             "(encoder_out['encoder_out'][0], [Sk, B, C])")
        if enc is not None and enc.size(1) != tokens.size(0):
            raise ValueError(f"encoder_out['encoder_out'][0] must be [Sk, B = {tokens.size(0)}, C], got "
                             f"{list(enc.shape)} (reorder the encoder output with the decoder state: "
                             "model.encoder.reorder_encoder_out)")
        encoder = None
        state = self._get_state(incremental_state) if incremental_state is not None else None
        if enc is not None and state is None:
            encoder = m.encoder_inputs(enc.transpose(0, 1), enc_pad)
        if incremental_state is None:
            return m.full(tokens, encoder, return_all_hiddens)
        if state is None:
            state = m.start(*tokens.shape)
            if encoder is not None:
                state.encoder, state.encoder_group = encoder, _equal_row_groups(enc, enc_pad)
            out = m.prefill(tokens, state, return_all_hiddens)
            self.set_incremental_state(incremental_state, _STATE_KEY, {"state": state})
            return out
        b, t = tokens.shape
        if b != state.n:
            raise ValueError(f"prev_output_tokens has {b} rows but the incremental_state holds {state.n} "
                             "(call reorder_incremental_state when rows change)")
        if t != state.length + 1:
            raise ValueError(f"prev_output_tokens must be the whole prefix, {state.length + 1} tokens per row "
                             f"(the incremental_state holds {state.length}), got {t}")
        return m.step(tokens, state, return_all_hiddens)

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
            if lo < 0 or hi >= state.n:
                raise ValueError(f"new_order values must be in [0, {state.n}) (the live rows), "
                                 f"got values in [{lo}, {hi}]")
        state.reorder_(new_order.to(device=self.model.device, dtype=torch.int64), changed_only=True)

    def _check_tokens(self, tokens):
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"prev_output_tokens must be a torch.Tensor, got {type(tokens).__name__}")
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"prev_output_tokens must be [B, T] int64, got {tokens.dtype} {list(tokens.shape)}")
        if tokens.size(1) == 0:
            raise ValueError("prev_output_tokens must hold at least one token per row, got [B, 0]")
        if tokens.device != self.model.device:
            raise ValueError(f"prev_output_tokens is on {tokens.device}, the decoder on {self.model.device}")
        if tokens.size(1) > self.max_positions():
            raise ValueError(f"prev_output_tokens has {tokens.size(1)} positions, more than the decoder's "
                             f"max_positions() = {self.max_positions()}")
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

    def _get_state(self, incremental_state) -> Optional[DecodeState]:
        if not isinstance(incremental_state, dict):
            raise TypeError(f"incremental_state must be a dict, got {type(incremental_state).__name__}")
        holder = self.get_incremental_state(incremental_state, _STATE_KEY)
        if holder is None:
            return None
        state = holder["state"]
        if state.owner is not None and state.owner is not self.model.cache_owner:
            raise RuntimeError("this incremental_state's KV cache was taken over by a newer decode: the "
                               "decoder was built with max_batch/max_seq_len (one preallocated cache), so "
                               "only the most recent incremental_state can continue")
        return state


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


def optimize(model, dtype: Optional[torch.dtype] = None, device=None, **kwargs):
    """Swap model.decoder (a fairseq TransformerDecoder) for eet_like's and return the model.
    device moves the whole model (encoder included); dtype converts the decoder and the encoder
    (as model.half() would). kwargs (max_batch, max_seq_len, quantize) go to from_fairseq."""
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


