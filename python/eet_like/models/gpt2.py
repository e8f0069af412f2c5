"""GPT-2 built from the eet_like layers: GPT2Model (hidden states) and GPT2LMHeadModel (logits,
joint decoding and a transformers-compatible generate()).

Block (pre-LN, as GPT-2):  a = ln_1(h); h += attn(a) + out_bias; m = ln_2(h); h += ffn(m) + b2.
The two bias adds ride in the next add_layernorm (residual_bias), so every block is
qkv GEMM -> attention -> out GEMM -> add_layernorm -> ffn -> add_layernorm.

Joint decoding: a left-padded batch goes through ONE prefill pass that fills the KV cache
[0, S); decode step t feeds one token per row at cache position S + t. Row b masks its
padding with key_start[b] = pad count and embeds position S + t - key_start[b], which is
what transformers derives from the attention mask (cumsum(mask) - 1).

No transformers import here: checkpoints are read by integrations.transformers.
"""
import json
import math
import os
from dataclasses import dataclass, fields
from typing import Optional

import torch
from torch import nn

from .. import ops
from ..generation import decode as _decode
from ..generation.decode import check_input_ids as _check_input_ids, check_mask as _check_mask
from ..generation.kv_cache import KVCache
from ..integrations.transformers import load_config_and_state_dict, strip_prefix
from ..layers import Embedding, FeedForward, Gemm, Int8Weight, LayerNorm, PackedDecodeGemm, SelfAttention

_ops = torch.ops.eet_like

# transformers ACT2FN names -> eet_like activations (same formulas).
_ACTIVATIONS = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "gelu_fast": "gelu_fast",
                "gelu_pytorch_tanh": "gelu_pytorch_tanh"}


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
        if self.activation_function not in _ACTIVATIONS:
            raise ValueError(f"config activation_function '{self.activation_function}' is not supported; "
                             f"supported: {', '.join(_ACTIVATIONS)}")
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


@dataclass
class BaseModelOutput:
    last_hidden_state: torch.Tensor

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else (self.last_hidden_state,)[key]


@dataclass
class CausalLMOutput:
    logits: torch.Tensor

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else (self.logits,)[key]


class GPT2Block(nn.Module):
    def __init__(self, cfg: GPT2Config, layer_idx: int, dtype, device):
        super().__init__()
        p = dict(dtype=dtype, device=device)
        self.ln_1 = LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon, **p)
        self.attn = SelfAttention(cfg.n_embd, cfg.n_head, causal=True, scale=cfg.attn_scale(layer_idx), **p)
        self.ln_2 = LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon, **p)
        self.mlp = FeedForward(cfg.n_embd, cfg.inner, _ACTIVATIONS[cfg.activation_function], **p)


def _check_device_dtype(dtype, device):
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__}")
    dev = torch.device(device if device is not None else "cpu")
    if dev.type == "cpu" and dtype != torch.float32:
        raise ValueError(f"dtype {dtype} is not supported on CPU (the CPU kernels are float32)")
    if dev.type == "cuda":
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16 on CUDA, got {dtype}")
        from .. import cuda_kernels_available
        if not cuda_kernels_available():
            raise ValueError("device='cuda' needs eet_like built with its CUDA kernels "
                             "(eet_like.cuda_kernels_available() is False)")
    elif dev.type != "cpu":
        raise ValueError(f"device must be cpu or cuda, got {dev}")
    return dev


class GPT2Model(nn.Module):
    """GPT-2 trunk: embeddings, blocks, final layernorm. forward() -> .last_hidden_state [B, S, H]."""

    def __init__(self, config: GPT2Config, dtype=torch.float32, device=None):
        super().__init__()
        self.config = config.validate()
        p = dict(dtype=dtype, device=device)
        self.embed = Embedding(config.vocab_size, config.n_positions, config.n_embd, **p)
        self.blocks = nn.ModuleList(GPT2Block(config, i, dtype, device) for i in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd, config.layer_norm_epsilon, **p)
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
                for ln, hf in ((blk.ln_1, "ln_1"), (blk.ln_2, "ln_2")):
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
        dev = _check_device_dtype(dtype, device)
        cfg, state = load_config_and_state_dict(path_or_hf_model)
        config = GPT2Config.from_hf(cfg)
        state = strip_prefix(state, ("transformer.",))
        state.pop("lm_head.weight", None)
        model = cls(config, dtype=dtype, device=dev)
        model.load_hf_state_dict(state)
        return model.eval()

    # -- compute ---------------------------------------------------------------------------

    def _embed(self, ids, position_ids, check: bool):
        """word[ids] + position[position_ids]; check=False skips the range check (no host sync).
        A quantized (tied) word matrix is dequantized row by row."""
        word = self.embed.word
        if not isinstance(word, Int8Weight):
            return _ops.embedding(ids, position_ids, word, self.embed.position, None, None, None, None,
                                  1e-12, check)
        if check:
            for t, n, name in ((ids, word.shape[0], "input_ids"), (position_ids, self.embed.position.shape[0],
                                                                   "position_ids")):
                if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
                    raise ValueError(f"{name} must be in [0, {n}), got values in [{int(t.min())}, {int(t.max())}]")
        return word.rows(ids) + self.embed.position[position_ids]

    def run_prefill(self, input_ids, position_ids, key_start=None, key_end=None, cache: KVCache = None,
                    last_only: bool = False):
        """The prompt pass: [B, S] ids -> final-layernormed hidden [B, S, H] ([B, 1, H] with
        last_only: the last block's FFN and ln_f run on the last position only). With
        `cache`, K/V of positions [0, S) of every layer are written into rows [0, B)."""
        x = self._embed(input_ids, position_ids, True)
        g = Gemm
        blocks = self.blocks
        b0 = blocks[0].ln_1
        a = _ops.layernorm(x, b0.weight, b0.bias, b0.eps)
        h = x
        last = len(blocks) - 1
        for i, blk in enumerate(blocks):
            at = blk.attn
            kc = vc = None
            if cache is not None:
                kc, vc = cache.k[i], cache.v[i]
            ctx = _ops.attention(g.linear(a, at.qkv_weight, at.qkv_bias), at.num_heads, True, key_start,
                                 key_end, kc, vc, at.scale)
            if last_only and i == last:
                ctx, h = ctx[:, -1:].contiguous(), h[:, -1:].contiguous()
            o = g.linear(ctx, at.out_weight, None)
            m, h = _ops.add_layernorm(o, h, at.out_bias, blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps)
            f = g.ffn(m, blk.mlp)
            nxt = blocks[i + 1].ln_1 if i < last else self.ln_f
            a, h = _ops.add_layernorm(f, h, blk.mlp.b2, nxt.weight, nxt.bias, nxt.eps)
        return a

    def run_decode(self, tokens, position_ids, positions, key_start, cache: KVCache, gemm=None):
        """One token per row: tokens/position_ids [n] -> final-layernormed hidden [n, H].
        positions [n] int32 is the cache slot written and attended up to; no host sync (the
        tokens were sampled from the vocabulary and the positions are bounded by the cache, so
        the embedding skips its range check). gemm: the GEMMs' runner (default self.decode_gemm)."""
        x = self._embed(tokens, position_ids, False)
        g = self.decode_gemm if gemm is None else gemm
        blocks = self.blocks
        b0 = blocks[0].ln_1
        a = _ops.layernorm(x, b0.weight, b0.bias, b0.eps)
        h = x
        last = len(blocks) - 1
        for i, blk in enumerate(blocks):
            at = blk.attn
            ctx = _ops.masked_attention(g.linear(a, at.qkv_weight, at.qkv_bias), cache.k[i], cache.v[i],
                                        positions, key_start, at.num_heads, at.scale)
            o = g.linear(ctx, at.out_weight, None)
            m, h = _ops.add_layernorm(o, h, at.out_bias, blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps)
            f = g.ffn(m, blk.mlp)
            nxt = blocks[i + 1].ln_1 if i < last else self.ln_f
            a, h = _ops.add_layernorm(f, h, blk.mlp.b2, nxt.weight, nxt.bias, nxt.eps)
        return a

    def _positions_and_ranges(self, input_ids, attention_mask, position_ids):
        b, s = input_ids.shape
        if s > self.config.n_positions:
            raise ValueError(f"input_ids has {s} tokens, more than the model's n_positions "
                             f"({self.config.n_positions})")
        key_start = key_end = None
        if attention_mask is not None:
            attention_mask = attention_mask.to(input_ids.device)
            key_start, key_end = ops.mask_to_ranges(attention_mask)
            if position_ids is None:
                m = (attention_mask != 0).long()
                position_ids = (m.cumsum(-1) - 1).masked_fill(m == 0, 0)
        if position_ids is None:
            position_ids = torch.arange(s, device=input_ids.device).expand(b, s)
        elif position_ids.shape != input_ids.shape:
            raise ValueError(f"position_ids must have the shape of input_ids {list(input_ids.shape)}, "
                             f"got {list(position_ids.shape)}")
        return position_ids.contiguous(), key_start, key_end

    @torch.no_grad()
    def forward(self, input_ids, attention_mask=None, position_ids=None):
        """input_ids [B, S]; attention_mask [B, S] (left or right padding, no holes);
        position_ids default from the mask (cumsum - 1) so left-padded rows match their
        unpadded run. Returns .last_hidden_state [B, S, H] (padding rows: undefined values)."""
        _check_input_ids(input_ids)
        _check_mask(attention_mask, input_ids)
        input_ids = input_ids.to(self.device)
        pos, ks, ke = self._positions_and_ranges(input_ids, attention_mask, position_ids)
        return BaseModelOutput(self.run_prefill(input_ids, pos.to(self.device), ks, ke))


class GPT2LMHeadModel(nn.Module):
    """GPT-2 with its LM head, a preallocated KV cache and generate().

        model = GPT2LMHeadModel.from_pretrained(path_or_hf_model, dtype=torch.float16, device="cuda",
                                                max_batch=16, max_seq_len=1024)
        out = model.generate(input_ids, attention_mask=mask, max_new_tokens=64, do_sample=True, top_p=0.9)
    """

    def __init__(self, config: GPT2Config, dtype=torch.float32, device=None, max_batch: int = 8,
                 max_seq_len: Optional[int] = None, generation_defaults: Optional[dict] = None):
        super().__init__()
        dev = _check_device_dtype(dtype, device)
        self.transformer = GPT2Model(config, dtype=dtype, device=dev)
        self.config = self.transformer.config
        if max_seq_len is None:
            max_seq_len = config.n_positions
        for name, v in (("max_batch", max_batch), ("max_seq_len", max_seq_len)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if max_seq_len > config.n_positions:
            raise ValueError(f"max_seq_len ({max_seq_len}) must be <= the model's n_positions "
                             f"({config.n_positions})")
        if config.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = nn.Parameter(torch.zeros(config.vocab_size, config.n_embd, dtype=dtype, device=dev),
                                        requires_grad=False)
        self.max_batch, self.max_seq_len = max_batch, max_seq_len
        self.cache = KVCache.allocate(config.n_layer, max_batch, config.n_head, max_seq_len,
                                      config.head_dim, dtype=dtype, device=dev)
        self.state = DecodeState.allocate(max_batch, config.vocab_size, dtype, dev)
        self.quantization = None   # or "int8" after quantize_()
        self._decode_graphs = {}   # rows -> torch.cuda.CUDAGraph of one decode step (CUDA only)
        self._graph_pool = None
        # Defaults for generate(): the checkpoint's generation config (generation_config.json
        # or the in-memory model's), else transformers' global defaults.
        self.generation_defaults = dict(generation_defaults or {})
        for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if k not in self.generation_defaults and getattr(config, k) is not None:
                self.generation_defaults[k] = getattr(config, k)

    @property
    def dtype(self):
        return self.transformer.dtype

    @property
    def device(self):
        return self.transformer.device

    @property
    def lm_weight(self) -> torch.Tensor:
        """[V, H]: the tied word embeddings or the separate lm_head."""
        return self.transformer.embed.word if self.lm_head is None else self.lm_head

    @classmethod
    def from_pretrained(cls, path_or_hf_model, dtype=torch.float32, device=None, max_batch: int = 8,
                        max_seq_len: Optional[int] = None, quantize: Optional[str] = None, **kwargs):
        """A local transformers directory (config.json + model.safetensors / pytorch_model.bin,
        optional generation_config.json) or an in-memory transformers GPT2LMHeadModel/GPT2Model.
        max_batch/max_seq_len size the preallocated KV cache (rows include beams and
        num_return_sequences); generate() requests beyond them raise ValueError.
        quantize="int8": weight-only int8 (see quantize_), CPU float32 for now."""
        if kwargs:
            raise ValueError(f"GPT2LMHeadModel.from_pretrained got unknown arguments: {sorted(kwargs)}")
        _check_device_dtype(dtype, device)
        _check_quantize(quantize, dtype, device)
        cfg, state = load_config_and_state_dict(path_or_hf_model)
        config = GPT2Config.from_hf(cfg)
        model = cls(config, dtype=dtype, device=device, max_batch=max_batch, max_seq_len=max_seq_len,
                    generation_defaults=_read_generation_defaults(path_or_hf_model))
        lm = state.pop("lm_head.weight", None)
        state = strip_prefix(state, ("transformer.",))
        model.transformer.load_hf_state_dict(state)
        if model.lm_head is not None:
            if lm is None:
                raise ValueError("config tie_word_embeddings=False but the checkpoint has no 'lm_head.weight'")
            if tuple(lm.shape) != tuple(model.lm_head.shape):
                raise ValueError(f"checkpoint weight 'lm_head.weight' has shape {list(lm.shape)}, "
                                 f"expected {list(model.lm_head.shape)}")
            with torch.no_grad():
                model.lm_head.copy_(lm)
        return model.quantize_(quantize).eval()

    def quantize_(self, quantize: Optional[str] = "int8") -> "GPT2LMHeadModel":
        """Weight-only int8 in place (None: no change). Every linear weight of the blocks and the
        LM head becomes an Int8Weight (one symmetric scale per output row, the packed int8 GEMM
        of every pass); the float weights are dropped. The tied word-embedding matrix is stored
        once, in int8, and its rows are dequantized at lookup (a few rows per step), so the
        model holds about a quarter of its float32 bytes (memory_bytes())."""
        _check_quantize(quantize, self.dtype, self.device)
        if quantize is None or self.quantization == quantize:
            return self
        t = self.transformer
        with torch.no_grad():
            for blk in t.blocks:
                for mod, name in ((blk.attn, "qkv_weight"), (blk.attn, "out_weight"), (blk.mlp, "w1"),
                                  (blk.mlp, "w2")):
                    q = Int8Weight.quantize(getattr(mod, name))
                    delattr(mod, name)
                    setattr(mod, name, q)
            if self.lm_head is None:
                q = Int8Weight.quantize(t.embed.word)
                del t.embed.word
                t.embed.word = q
            else:
                q = Int8Weight.quantize(self.lm_head)
                del self.lm_head
                self.lm_head = q
        t.decode_gemm = PackedDecodeGemm()  # drop float packed copies made before
        self.quantization = quantize
        return self

    def memory_bytes(self) -> int:
        """Bytes of the weights this model holds: parameters, int8 weights and scales, and the
        packed copies of the CPU decode GEMM (the KV cache and decode buffers not counted)."""
        seen, total = set(), 0
        for p in self.parameters():
            if p.data_ptr() not in seen:
                seen.add(p.data_ptr())
                total += p.numel() * p.element_size()
        for m in self.modules():
            for v in vars(m).values():
                if isinstance(v, Int8Weight):
                    total += v.nbytes()
        return total + self.transformer.decode_gemm.nbytes()

    @torch.no_grad()
    def forward(self, input_ids, attention_mask=None, position_ids=None):
        """input_ids [B, S] -> .logits [B, S, V] (model dtype). Left- or right-padded batches
        via attention_mask; at real positions each row equals its unpadded run."""
        _check_input_ids(input_ids)
        _check_mask(attention_mask, input_ids)
        input_ids = input_ids.to(self.device)
        t = self.transformer
        pos, ks, ke = t._positions_and_ranges(input_ids, attention_mask, position_ids)
        hidden = t.run_prefill(input_ids, pos.to(self.device), ks, ke)
        return CausalLMOutput(Gemm.linear(hidden, self.lm_weight, None))

    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, streamer=None, generator=None, seed=None,
                 generation_config=None, **kwargs):
        """transformers-compatible generate (see generation/decode.py for the options): returns
        [B * num_return_sequences, prompt_len + new] token ids, or a GenerateOutput with
        return_dict_in_generate=True."""
        return _decode.generate(self, input_ids, attention_mask=attention_mask, streamer=streamer,
                                generator=generator, seed=seed, generation_config=generation_config,
                                **kwargs)

    # -- the decode-loop interface used by generation/decode.py --------------------------------

    def check_request(self, rows: int, max_length: int) -> None:
        """Raise before any compute when `rows` sequences of up to `max_length` tokens do not fit."""
        if rows > self.max_batch:
            raise ValueError(f"the request needs {rows} cache rows (batch x max(num_beams, "
                             f"num_return_sequences)), more than max_batch={self.max_batch}; "
                             "pass a larger max_batch to from_pretrained")
        # The last generated token is never fed back, so max_length - 1 positions are used.
        if max_length - 1 > self.config.n_positions:
            raise ValueError(f"max_length {max_length} (prompt + max_new_tokens) goes beyond the model's "
                             f"n_positions ({self.config.n_positions}); lower max_new_tokens/max_length")
        if max_length - 1 > self.max_seq_len:
            raise ValueError(f"max_length {max_length} (prompt + max_new_tokens) needs {max_length - 1} cache "
                             f"positions, more than max_seq_len={self.max_seq_len}; lower max_new_tokens or "
                             "pass a larger max_seq_len to from_pretrained")

    def prefill(self, input_ids, key_start):
        return prefill(self, self.state, input_ids, key_start)

    def decode_step(self, tokens):
        return decode_step(self, self.state, tokens)

    def reorder_cache(self, index, length: int):
        reorder(self, self.state, index, length)

    # -- rows at their own positions (continuous batching: eet_like.server) --------------------

    def prefill_row(self, row: int, input_ids):
        """Prompt pass of one unpadded sequence [1, S] into cache row `row` (positions [0, S)),
        leaving the other rows alone; returns its last position's logits [1, V]."""
        return prefill_row(self, row, input_ids)

    def decode_rows(self, tokens, positions):
        """One token per cache row b in [0, n), each row at its own position: tokens [n] int64,
        positions [n] int32 (the slot written and attended up to). Returns logits [n, V]."""
        return decode_rows(self, tokens, positions)

    def move_cache_row(self, src: int, dst: int, length: int):
        """Cache row dst <- row src, positions [0, length)."""
        self.cache.copy_row_(src, dst, length)


@dataclass
class DecodeState:
    """Static buffers of a joint decode ([max_batch] each; a request uses rows [0, n)).
    Updated in place so a decode step keeps its shapes and addresses (CUDA-graph friendly)."""
    tokens: torch.Tensor        # [Bmax] int64, the token fed at this step
    position_ids: torch.Tensor  # [Bmax] int64, embedding position of that token per row
    positions: torch.Tensor     # [Bmax] int32, cache slot written this step (same for all rows)
    key_start: torch.Tensor     # [Bmax] int32, left-pad count per row
    logits: torch.Tensor        # [Bmax, V] model dtype
    n: int = 0                  # rows in use
    length: int = 0             # cache positions filled (host-side, no sync)

    @classmethod
    def allocate(cls, max_batch, vocab, dtype, device):
        z = dict(device=device)
        return cls(torch.zeros(max_batch, dtype=torch.int64, **z), torch.zeros(max_batch, dtype=torch.int64, **z),
                   torch.zeros(max_batch, dtype=torch.int32, **z), torch.zeros(max_batch, dtype=torch.int32, **z),
                   torch.empty(max_batch, vocab, dtype=dtype, **z))


def prefill(model: GPT2LMHeadModel, st: DecodeState, input_ids, key_start):
    """Prompt pass of a left-padded batch [n, S] (key_start [n] int32 = pad counts): fills
    cache positions [0, S) of rows [0, n) and returns the last position's logits [n, V]."""
    n, s = input_ids.shape
    pos = (torch.arange(s, device=input_ids.device)[None, :] - key_start[:, None].long()).clamp_(min=0)
    hidden = model.transformer.run_prefill(input_ids, pos, key_start, None, model.cache, last_only=True)
    logits = _lm_head(model, st, hidden[:, 0])
    st.n, st.length = n, s
    st.key_start[:n].copy_(key_start)
    st.positions[:n].fill_(s)
    st.position_ids[:n].copy_(s - key_start.long())
    return logits


def decode_step(model: GPT2LMHeadModel, st: DecodeState, tokens):
    """Feed one token per row ([n] int64) at cache position st.length; returns logits [n, V]
    (a view of the static logits buffer, valid until the next step).

    On CUDA the step is replayed from a CUDA graph (one per row count n, captured after its
    first eager run): a step is hundreds of small kernels, whose launches otherwise cost more
    than their work at small batches. Every input and output is a static buffer of `st`, so a
    replay needs no copies. EET_LIKE_CUDA_GRAPHS=0 turns it off."""
    n = st.n
    st.tokens[:n].copy_(tokens)
    graph = model._decode_graphs.get(n)
    if graph is not None:
        graph.replay()
        logits = st.logits[:n]
    else:
        logits = _step(model, st, n)
        if model.device.type == "cuda" and cuda_graphs_enabled():
            model._decode_graphs[n] = _capture_step(model, st, n)
    st.length += 1
    return logits


def cuda_graphs_enabled() -> bool:
    v = os.environ.get("EET_LIKE_CUDA_GRAPHS", "1")
    if v not in ("0", "1"):
        raise ValueError(f"EET_LIKE_CUDA_GRAPHS must be 0 or 1, got {v!r}")
    return v == "1"


def _step(model: GPT2LMHeadModel, st: DecodeState, n: int):
    """The kernels of one decode step over rows [0, n), reading and writing only `st` and the cache."""
    hidden = model.transformer.run_decode(st.tokens[:n], st.position_ids[:n], st.positions[:n],
                                          st.key_start[:n], model.cache)
    logits = _lm_head(model, st, hidden)
    st.positions[:n].add_(1)
    st.position_ids[:n].add_(1)
    return logits


def _capture_step(model: GPT2LMHeadModel, st: DecodeState, n: int):
    """Records _step for n rows (recording runs nothing: the eager step before it was the real
    one and warmed up cuBLAS). The graphs of one model share a memory pool."""
    if model._graph_pool is None:
        model._graph_pool = torch.cuda.graph_pool_handle()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=model._graph_pool):
        out = _step(model, st, n)
    if out.data_ptr() != st.logits.data_ptr():
        raise RuntimeError("decode step graph: logits not written into the static buffer")
    return graph


def prefill_row(model: GPT2LMHeadModel, row: int, input_ids):
    """The prefill of generate() for one prompt alone ([1, S], no padding), but into cache row
    `row`: cache rows never mix, so the logits (and the cached K/V) are the ones generate()
    computes for that prompt alone."""
    _check_input_ids(input_ids)
    if input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must be one sequence [1, S], got {list(input_ids.shape)}")
    if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < model.max_batch:
        raise ValueError(f"row must be an int in [0, {model.max_batch}) (max_batch), got {row!r}")
    s = input_ids.shape[1]
    if s > model.max_seq_len:
        raise ValueError(f"the prompt has {s} tokens, more than max_seq_len={model.max_seq_len}")
    ids = input_ids.to(device=model.device, dtype=torch.int64)
    key_start = torch.zeros(1, dtype=torch.int32, device=ids.device)
    pos = torch.arange(s, device=ids.device)[None, :]
    hidden = model.transformer.run_prefill(ids, pos, key_start, None, model.cache.rows(row, row + 1),
                                           last_only=True)
    return _lm_head(model, model.state, hidden[:, 0])


def decode_rows(model: GPT2LMHeadModel, tokens, positions):
    """A decode step over cache rows [0, n) whose sequences sit at different positions (no
    padding: a row's position id is its cache slot). On CPU float32 the GEMMs run on the packed
    kernel for any row count (PackedDecodeGemm.any_rows), whose per-row arithmetic does not
    depend on the other rows: a row gets exactly the logits generate() computes for its
    sequence alone (there, a 1-row step also runs on the packed kernel)."""
    n = tokens.shape[0] if isinstance(tokens, torch.Tensor) and tokens.dim() == 1 else -1
    if n <= 0 or tokens.dtype != torch.int64:
        raise ValueError("tokens must be a non-empty [n] int64 tensor")
    if n > model.max_batch:
        raise ValueError(f"{n} rows, more than max_batch={model.max_batch}")
    if not isinstance(positions, torch.Tensor) or positions.shape != (n,) or positions.dtype != torch.int32:
        raise ValueError(f"positions must be an [n={n}] int32 tensor")
    # run_decode skips the embedding's range check (no host sync): check here, on the host copy.
    p, tk = positions.cpu(), tokens.cpu()
    if int(p.min()) < 0 or int(p.max()) >= model.max_seq_len:
        raise ValueError(f"positions must be in [0, {model.max_seq_len}) (max_seq_len), got values in "
                         f"[{int(p.min())}, {int(p.max())}]")
    if int(tk.min()) < 0 or int(tk.max()) >= model.config.vocab_size:
        raise ValueError(f"tokens must be in [0, {model.config.vocab_size}) (vocab_size), got values in "
                         f"[{int(tk.min())}, {int(tk.max())}]")
    t = model.transformer
    g = t.decode_gemm.any_rows()
    dev = model.device
    positions = positions.to(dev)
    hidden = t.run_decode(tokens.to(dev), positions.long(), positions, None, model.cache, gemm=g)
    if hidden.device.type == "cpu":
        return g.linear(hidden, model.lm_weight, None)
    return _lm_head(model, model.state, hidden)


def _lm_head(model: GPT2LMHeadModel, st: DecodeState, hidden):
    """hidden [n, H] -> logits [n, V]: into the static buffer on CUDA (CUDA-graph friendly); on
    CPU through the decode GEMM (packed weights for few rows), which allocates its output."""
    if hidden.device.type == "cpu":
        return model.transformer.decode_gemm.linear(hidden, model.lm_weight, None)
    logits = st.logits[:hidden.shape[0]]
    torch.mm(hidden, model.lm_weight.t(), out=logits)
    return logits


def reorder(model: GPT2LMHeadModel, st: DecodeState, index, length: int):
    """Row b becomes old row index[b] (beam search, or replicating prompts into beams)."""
    n = index.numel()
    model.cache.reorder_(index, length)
    for buf in (st.key_start, st.position_ids, st.positions):
        buf[:n] = buf.index_select(0, index)
    st.n = n


QUANTIZE_MODES = (None, "int8")


def _check_quantize(quantize, dtype, device) -> None:
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {', '.join(map(repr, QUANTIZE_MODES))}, got {quantize!r}")
    if quantize is not None:
        dev = torch.device(device) if device is not None else torch.device("cpu")
        if dev.type != "cpu" or dtype != torch.float32:
            raise ValueError(f"quantize={quantize!r} runs on CPU float32 for now (the CUDA int8 kernels are not "
                             f"written yet), got device={dev.type}, dtype={dtype}")


def _read_generation_defaults(path_or_hf_model) -> dict:
    if isinstance(path_or_hf_model, (str, os.PathLike)):
        f = os.path.join(os.fspath(path_or_hf_model), "generation_config.json")
        if not os.path.isfile(f):
            return {}
        with open(f) as fh:
            d = json.load(fh)
    else:
        gc = getattr(path_or_hf_model, "generation_config", None)
        if gc is None or not hasattr(gc, "to_dict"):
            return {}
        d = gc.to_dict()
    return {k: v for k, v in d.items() if v is not None}
