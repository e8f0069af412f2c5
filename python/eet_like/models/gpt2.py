"""GPT-2 built from the eet_like layers: the config, GPT2Model (the trunk: hidden states) and its
checkpoint loading; GPT2LMHeadModel (logits, joint decoding, generate()) is in gpt2_lm.py.

A GPT-2 block is the pre-norm TransformerBlock (layers/block.py), causal. Joint decoding: a
left-padded batch goes through ONE prompt pass that fills the KV cache [0, S); decode step t
feeds one token per row at cache position S + t. Row b masks its padding with key_start[b] =
pad count and embeds position S + t - key_start[b], which is what transformers derives from
the attention mask (cumsum(mask) - 1).

No transformers import here: checkpoints are read by integrations.transformers.
"""
import math
from dataclasses import dataclass, fields
from typing import Optional

import torch
from torch import nn

from .. import ops
from ..integrations.transformers import load_config_and_state_dict, strip_prefix
from ..layers import Embedding, Gemm, LayerNorm, PackedDecodeGemm, Prompt, Step, TransformerBlock, run_blocks
from ..layers.activations import activation
from ..outputs import BaseModelOutput
from ..validation import check_device_dtype, check_like_ids, check_token_ids
from ..validation import check_quantize as _check_quantize  # noqa: F401  (the name tests use)

@dataclass
class GPT2Config:
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: Optional[int] = None
    activation_function: str = "gelu_new"
    layer_norm_epsilon: float = 1e-5
    tie_word_embeddings: bool = True
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    bos_token_id: Optional[int] = 50256
    eos_token_id: Optional[object] = 50256
    pad_token_id: Optional[int] = None

    @property
    def inner(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def attn_scale(self, layer_idx: int) -> float:
        scale = 1.0 / math.sqrt(self.head_dim) if self.scale_attn_weights else 1.0
        if self.scale_attn_by_inverse_layer_idx:
            scale /= float(layer_idx + 1)
        return scale

    def validate(self) -> "GPT2Config":
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"config {name} must be a positive int, got {v!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"config n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_inner is not None and (not isinstance(self.n_inner, int) or self.n_inner <= 0):
            raise ValueError(f"config n_inner must be None or a positive int, got {self.n_inner!r}")
        activation(self.activation_function, "transformers", "config activation_function")
        if not self.layer_norm_epsilon > 0:
            raise ValueError(f"config layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon!r}")
        return self

    @classmethod
    def from_hf(cls, cfg: dict) -> "GPT2Config":
        """From a transformers GPT-2 config dict; options this model cannot honour raise."""
        if cfg.get("model_type", "gpt2") != "gpt2":
            raise ValueError(f"config model_type must be 'gpt2', got {cfg.get('model_type')!r}")
        if cfg.get("add_cross_attention", False):
            raise ValueError("config add_cross_attention=True (GPT-2 as a decoder with cross-attention) "
                             "is not supported")
        # reorder_and_upcast_attn only changes the mixed-precision order of operations in
        # transformers' eager attention; our kernels always accumulate scores and softmax in
        # fp32, so it is accepted (the fp32 result is the same).
        known = {f.name for f in fields(cls)}
        kw = {k: cfg[k] for k in known if k in cfg}
        return cls(**kw).validate()




class GPT2Model(nn.Module):
    """GPT-2 trunk: embeddings, blocks, final layernorm. forward() -> .last_hidden_state [B, S, H]."""

    def __init__(self, config: GPT2Config, dtype=torch.float32, device=None):
        super().__init__()
        self.config = c = config.validate()
        p = dict(dtype=dtype, device=device)
        self.embed = Embedding(c.vocab_size, c.n_positions, c.n_embd, **p)
        act = activation(c.activation_function, "transformers")
        self.blocks = nn.ModuleList(
            TransformerBlock(c.n_embd, c.n_head, c.inner, act, causal=True, pre_norm=True,
                             eps=c.layer_norm_epsilon, scale=c.attn_scale(i), **p) for i in range(c.n_layer))
        self.ln_f = LayerNorm(c.n_embd, c.layer_norm_epsilon, **p)
        # Decode steps' GEMMs on CPU: packed weights (packed lazily, see PackedDecodeGemm).
        self.decode_gemm = PackedDecodeGemm()

    @property
    def dtype(self):
        return self.ln_f.weight.dtype

    @property
    def device(self):
        return self.ln_f.weight.device

    # -- loading ---------------------------------------------------------------------------

    def load_hf_state_dict(self, state) -> None:
        """Copy a transformers GPT-2 trunk state dict (keys without 'transformer.') in,
        transposing Conv1D weights [in, out] into nn.Linear layout [out, in]."""
        state = dict(state)
        for k in [k for k in state if k.endswith((".attn.bias", ".attn.masked_bias"))]:
            del state[k]  # causal-mask buffers of old checkpoints, not weights

        def take(name, transpose=False):
            if name not in state:
                raise ValueError(f"checkpoint is missing weight '{name}'")
            t = state.pop(name)
            return t.t() if transpose else t

        def put(param, value, name):
            if tuple(value.shape) != tuple(param.shape):
                raise ValueError(f"checkpoint weight '{name}' has shape {list(value.shape)}, expected "
                                 f"{list(param.shape)} for this config")
            param.copy_(value)

        with torch.no_grad():
            put(self.embed.word, take("wte.weight"), "wte.weight")
            put(self.embed.position, take("wpe.weight"), "wpe.weight")
            for i, blk in enumerate(self.blocks):
                pre = f"h.{i}."
                for ln, hf in ((blk.ln_attn, "ln_1"), (blk.ln_mlp, "ln_2")):
                    put(ln.weight, take(pre + hf + ".weight"), pre + hf + ".weight")
                    put(ln.bias, take(pre + hf + ".bias"), pre + hf + ".bias")
                put(blk.attn.qkv_weight, take(pre + "attn.c_attn.weight", True), pre + "attn.c_attn.weight")
                put(blk.attn.qkv_bias, take(pre + "attn.c_attn.bias"), pre + "attn.c_attn.bias")
                put(blk.attn.out_weight, take(pre + "attn.c_proj.weight", True), pre + "attn.c_proj.weight")
                put(blk.attn.out_bias, take(pre + "attn.c_proj.bias"), pre + "attn.c_proj.bias")
                put(blk.mlp.w1, take(pre + "mlp.c_fc.weight", True), pre + "mlp.c_fc.weight")
                put(blk.mlp.b1, take(pre + "mlp.c_fc.bias"), pre + "mlp.c_fc.bias")
                put(blk.mlp.w2, take(pre + "mlp.c_proj.weight", True), pre + "mlp.c_proj.weight")
                put(blk.mlp.b2, take(pre + "mlp.c_proj.bias"), pre + "mlp.c_proj.bias")
            put(self.ln_f.weight, take("ln_f.weight"), "ln_f.weight")
            put(self.ln_f.bias, take("ln_f.bias"), "ln_f.bias")
        if state:
            raise ValueError(f"checkpoint has weights this GPT-2 model does not use: {sorted(state)[:8]}")

    @classmethod
    def from_pretrained(cls, path_or_hf_model, dtype=torch.float32, device=None, **kwargs):
        """A local transformers directory (config.json + safetensors/.bin) or an in-memory
        transformers GPT2Model / GPT2LMHeadModel."""
        if kwargs:
            raise ValueError(f"GPT2Model.from_pretrained got unknown arguments: {sorted(kwargs)}")
        dev = check_device_dtype(dtype, device)
        cfg, state = load_config_and_state_dict(path_or_hf_model)
        config = GPT2Config.from_hf(cfg)
        state = strip_prefix(state, ("transformer.",))
        state.pop("lm_head.weight", None)
        model = cls(config, dtype=dtype, device=dev)
        model.load_hf_state_dict(state)
        return model.eval()

    # -- compute ---------------------------------------------------------------------------

    def prompt(self, input_ids, position_ids, key_start=None, key_end=None, cache=None,
               last_only: bool = False):
        """The prompt pass: [B, S] ids -> final-layernormed hidden [B, S, H] ([B, 1, H] with
        last_only). With `cache` (a KVCache), K/V of positions [0, S) of every layer are
        written into its rows [0, B)."""
        x = self.embed(input_ids, position_ids)
        return run_blocks(self.blocks, x, Prompt(key_start, key_end, cache), gemm=Gemm, pre_norm=True,
                          final_norm=self.ln_f, last_only=last_only)

    def step(self, tokens, position_ids, positions, key_start, cache, gemm=None, max_keys=None):
        """One token per row: tokens/position_ids [n] -> final-layernormed hidden [n, H].
        positions [n] int32 is the cache slot written and attended up to. No host sync: the
        tokens were sampled from the vocabulary and the positions are bounded by the cache, so
        the embedding skips its range check. gemm: the GEMM runner (default self.decode_gemm).
        max_keys: the host's bound of positions + 1 (sizes the CUDA attention launch)."""
        x = self.embed(tokens, position_ids, check=False)
        return run_blocks(self.blocks, x, Step(cache, positions, key_start, max_keys),
                          gemm=self.decode_gemm if gemm is None else gemm, pre_norm=True, final_norm=self.ln_f)

    def positions_and_ranges(self, input_ids, attention_mask, position_ids):
        """(position_ids [B, S], key_start, key_end) of a padded batch: positions count from
        each row's first real token, as transformers derives them from the mask."""
        b, s = input_ids.shape
        if s > self.config.n_positions:
            raise ValueError(f"input_ids has {s} tokens, more than the model's n_positions "
                             f"({self.config.n_positions})")
        check_like_ids(position_ids, "position_ids", input_ids)
        key_start = key_end = None
        if attention_mask is not None:
            attention_mask = attention_mask.to(input_ids.device)
            key_start, key_end = ops.mask_to_ranges(attention_mask)
            if position_ids is None:
                m = (attention_mask != 0).long()
                position_ids = (m.cumsum(-1) - 1).masked_fill(m == 0, 0)
        if position_ids is None:
            position_ids = torch.arange(s, device=input_ids.device).expand(b, s)
        return position_ids.to(input_ids.device).contiguous(), key_start, key_end

    def check_inputs(self, input_ids, attention_mask):
        check_token_ids(input_ids)
        check_like_ids(attention_mask, "attention_mask", input_ids)
        return input_ids.to(self.device)

    @torch.no_grad()
    def forward(self, input_ids, attention_mask=None, position_ids=None):
        """input_ids [B, S]; attention_mask [B, S] (left or right padding, no holes);
        position_ids default from the mask (cumsum - 1) so left-padded rows match their
        unpadded run. Returns .last_hidden_state [B, S, H] (padding rows: undefined values)."""
        input_ids = self.check_inputs(input_ids, attention_mask)
        pos, ks, ke = self.positions_and_ranges(input_ids, attention_mask, position_ids)
        return BaseModelOutput(self.prompt(input_ids, pos, ks, ke))
