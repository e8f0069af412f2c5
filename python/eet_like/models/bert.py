"""BERT encoder built from the eet_like ops: embedding (+ token types, fused layernorm),
non-causal fused-QKV self-attention, post-layernorm blocks with the attention out bias and
the FFN b2 fused into add_layernorm, erf-gelu FFN, and the pooler (dense + tanh, plain torch).

    model = BertModel.from_pretrained(path_or_hf_model, dtype=torch.float16, device="cuda")
    out = model(input_ids, attention_mask=mask, token_type_ids=types)
    out.last_hidden_state  # [B, S, hidden]
    out.pooler_output      # [B, hidden], None without pooler weights

Padded batches: the attention mask must mark one contiguous run of tokens per row.
- Right padding (the BERT tokenizers' default): identical to transformers, pad positions
  included.
- Left padding: every row equals that sentence run alone. Position ids start at 0 at the
  first real token, and the pooler reads the first real token (transformers would read the
  pad at index 0 and count positions from the pad, i.e. not what the sentence gives alone).
The rule in one line: the pooler reads each row's first real token.

swap_encoder(hf_model) puts this encoder inside a transformers BertFor* model, so the task
heads stay plain torch. No transformers import here: checkpoints are read through
eet_like.integrations.transformers.
"""
import json
import os
from dataclasses import dataclass, fields
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import _threads, ops
from ..integrations.transformers import load_config_and_state_dict, strip_prefix
from ..layers import Embedding, Gemm, Prompt, TransformerBlock, run_blocks
from ..layers.activations import activation
from ..outputs import BertOutput
from ..layers.gemm import quantize_int8_, weight_bytes
from ..validation import check_device_dtype, check_like_ids, check_quantize, check_token_ids


@dataclass
class BertConfig:
    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, cfg: dict) -> "BertConfig":
        """A transformers BERT config (dict) -> BertConfig; unsupported options raise ValueError."""
        if cfg.get("model_type", "bert") != "bert":
            raise ValueError(f"model_type must be 'bert', got {cfg.get('model_type')!r}")
        pet = cfg.get("position_embedding_type", "absolute")
        if pet not in (None, "absolute"):
            raise ValueError(f"position_embedding_type={pet!r} is not supported (only 'absolute')")
        for opt in ("is_decoder", "add_cross_attention"):
            if cfg.get(opt):
                raise ValueError(f"{opt}=True is not supported: eet_like.BertModel is an encoder only")
        activation(cfg.get("hidden_act", "gelu"), "transformers", "hidden_act")
        if "vocab_size" not in cfg:
            raise ValueError("config has no vocab_size")
        kw = {f.name: cfg[f.name] for f in fields(cls) if cfg.get(f.name) is not None}
        c = cls(**kw)
        if c.num_attention_heads <= 0 or c.hidden_size % c.num_attention_heads != 0:
            raise ValueError(f"hidden_size ({c.hidden_size}) must be divisible by "
                             f"num_attention_heads ({c.num_attention_heads})")
        return c

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class BertModel(nn.Module):
    """BERT encoder (+ optional pooler) on eet_like kernels. Build with from_pretrained."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True, dtype=torch.float32,
                 device=None):
        super().__init__()
        device = check_device_dtype(dtype, device)
        self.config = config
        c, p = config, dict(dtype=dtype, device=device)
        self.embeddings = Embedding(c.vocab_size, c.max_position_embeddings, c.hidden_size,
                                    type_vocab=c.type_vocab_size, layernorm=True,
                                    eps=c.layer_norm_eps, **p)
        act = activation(c.hidden_act, "transformers", "hidden_act")
        self.layers = nn.ModuleList(
            TransformerBlock(c.hidden_size, c.num_attention_heads, c.intermediate_size, act, causal=False,
                             pre_norm=False, eps=c.layer_norm_eps, **p) for _ in range(c.num_hidden_layers))
        if add_pooling_layer:
            self.pooler_weight = nn.Parameter(torch.zeros(c.hidden_size, c.hidden_size, **p),
                                              requires_grad=False)
            self.pooler_bias = nn.Parameter(torch.zeros(c.hidden_size, **p), requires_grad=False)
        else:
            self.pooler_weight = self.pooler_bias = None
        self.quantization = None   # or "int8" after quantize_()
        # Set by from_pretrained from a sentence-transformers directory (encode_sentences reads it).
        self.sentence_max_seq_length: Optional[int] = None

    @property
    def device(self) -> torch.device:
        return self.embeddings.position.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embeddings.position.dtype

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path_or_hf_model, dtype=None, device=None,
                        add_pooling_layer: Optional[bool] = None, quantize: Optional[str] = None) -> "BertModel":
        """path_or_hf_model: a local transformers directory (config.json + safetensors/.bin,
        BertModel or BertFor* checkpoints) or an in-memory transformers BertModel / BertFor*
        model (its `bert`). dtype defaults to float32 (CPU) / float16 (CUDA) for directories,
        to the model's own dtype for in-memory models; device defaults to the model's device
        (cpu for directories). add_pooling_layer: None = use the pooler if its weights are
        there; True requires them; False drops them. quantize="int8": int8 GEMMs (see
        quantize_), CPU float32 or CUDA float32/float16/bfloat16."""
        in_memory = not isinstance(path_or_hf_model, (str, os.PathLike))
        cfg, state = load_config_and_state_dict(path_or_hf_model)
        config = BertConfig.from_dict(cfg)
        state = _normalize_keys(strip_prefix(state, ("bert.",)))
        if device is None:
            device = next(iter(state.values())).device if in_memory and state else "cpu"
        device = torch.device(device)
        if dtype is None:
            if in_memory and "embeddings.word_embeddings.weight" in state:
                dtype = state["embeddings.word_embeddings.weight"].dtype
            else:
                dtype = torch.float16 if device.type == "cuda" else torch.float32
        has_pooler = "pooler.dense.weight" in state
        if add_pooling_layer is None:
            add_pooling_layer = has_pooler
        elif add_pooling_layer and not has_pooler:
            raise ValueError("add_pooling_layer=True but the checkpoint has no pooler weights "
                             "(pooler.dense.weight)")
        check_quantize(quantize, dtype, device)
        model = cls(config, add_pooling_layer=add_pooling_layer, dtype=dtype, device=device)
        model._load_hf_state(state)
        if not in_memory:
            model.sentence_max_seq_length = _sentence_max_seq_length(os.fspath(path_or_hf_model))
        return model.quantize_(quantize).eval()

    def quantize_(self, quantize: Optional[str] = "int8") -> "BertModel":
        """int8 in place (None: no change): every linear weight of the blocks and the
        word-embedding matrix become Int8Weights (one symmetric scale per output row; every GEMM
        runs ops.linear_int8); the word rows are dequantized at lookup. The pooler, the position/type tables, biases and
        layernorms stay in the model's dtype (a few MB)."""
        check_quantize(quantize, self.dtype, self.device)
        if quantize is None or self.quantization == quantize:
            return self
        with torch.no_grad():
            for layer in self.layers:
                layer.quantize_int8_()
            quantize_int8_(self.embeddings, "word")
        self.quantization = quantize
        return self

    def memory_bytes(self) -> int:
        """Bytes of the weights this model holds (layers.gemm.weight_bytes)."""
        return weight_bytes(self)

    @torch.no_grad()
    def _load_hf_state(self, state: Dict[str, torch.Tensor]):
        c = self.config
        used = set()

        def take(name, dst):
            if name not in state:
                raise ValueError(f"checkpoint is missing {name!r} (expected a BERT state dict)")
            src = state[name]
            if tuple(src.shape) != tuple(dst.shape):
                raise ValueError(f"{name} must be {list(dst.shape)} for this config, got {list(src.shape)}")
            dst.copy_(src)
            used.add(name)

        e = self.embeddings
        take("embeddings.word_embeddings.weight", e.word)
        take("embeddings.position_embeddings.weight", e.position)
        if e.token_type is not None:
            take("embeddings.token_type_embeddings.weight", e.token_type)
        take("embeddings.LayerNorm.weight", e.ln_weight)
        take("embeddings.LayerNorm.bias", e.ln_bias)
        hd = c.hidden_size
        for i, layer in enumerate(self.layers):
            pre = f"encoder.layer.{i}."
            a = layer.attn
            # Fused QKV rows in the [3][H][D] layout the attention kernel reads.
            for j, part in enumerate(("query", "key", "value")):
                take(f"{pre}attention.self.{part}.weight", a.qkv_weight[j * hd:(j + 1) * hd])
                take(f"{pre}attention.self.{part}.bias", a.qkv_bias[j * hd:(j + 1) * hd])
            take(f"{pre}attention.output.dense.weight", a.out_weight)
            take(f"{pre}attention.output.dense.bias", a.out_bias)
            take(f"{pre}attention.output.LayerNorm.weight", layer.ln_attn.weight)
            take(f"{pre}attention.output.LayerNorm.bias", layer.ln_attn.bias)
            take(f"{pre}intermediate.dense.weight", layer.mlp.w1)
            take(f"{pre}intermediate.dense.bias", layer.mlp.b1)
            take(f"{pre}output.dense.weight", layer.mlp.w2)
            take(f"{pre}output.dense.bias", layer.mlp.b2)
            take(f"{pre}output.LayerNorm.weight", layer.ln_mlp.weight)
            take(f"{pre}output.LayerNorm.bias", layer.ln_mlp.bias)
        if self.pooler_weight is not None:
            take("pooler.dense.weight", self.pooler_weight)
            take("pooler.dense.bias", self.pooler_bias)
        # Anything else inside the encoder means an architecture this class does not run.
        ignorable = ("embeddings.position_ids", "embeddings.token_type_ids")
        extra = sorted(k for k in state if k not in used and k not in ignorable and
                       k.startswith(("embeddings.", "encoder.")))
        if e.token_type is None:
            extra = [k for k in extra if k != "embeddings.token_type_embeddings.weight"]
        if extra:
            raise ValueError(f"checkpoint has weights this BERT config does not use: {extra[:5]}"
                             f"{' ...' if len(extra) > 5 else ''} (num_hidden_layers="
                             f"{c.num_hidden_layers}; unsupported architecture variant?)")

    # ------------------------------------------------------------------ forward
    def prepare_inputs(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None):
        """Checks the inputs (before any compute) -> (key_start, key_end, position_ids, first)
        where first [B] is each row's first real token (None: token 0)."""
        check_token_ids(input_ids)
        dev = self.device
        if input_ids.device != dev:
            raise ValueError(f"input_ids is on {input_ids.device} but the model is on {dev}")
        b, s = input_ids.shape
        c = self.config
        if s > c.max_position_embeddings:
            raise ValueError(f"input_ids has sequence length {s} > max_position_embeddings "
                             f"{c.max_position_embeddings}; truncate the input")
        if token_type_ids is not None:
            check_like_ids(token_type_ids, "token_type_ids", input_ids, dev)
            if self.embeddings.token_type is None:
                raise ValueError("token_type_ids given but the model has type_vocab_size=0")
        if position_ids is not None:
            check_like_ids(position_ids, "position_ids", input_ids, dev)
        key_start = key_end = first = None
        if attention_mask is not None:
            if not isinstance(attention_mask, torch.Tensor):
                raise TypeError(f"attention_mask must be a torch.Tensor, got {type(attention_mask).__name__}")
            if tuple(attention_mask.shape) != (b, s):
                raise ValueError(f"attention_mask must be [B, S] = {[b, s]} like input_ids, got "
                                 f"{list(attention_mask.shape)}")
            if attention_mask.device != dev:
                raise ValueError(f"attention_mask is on {attention_mask.device} but the model is on {dev}")
            key_start, key_end = ops.mask_to_ranges(attention_mask)  # holes raise ValueError
            if bool((key_end == key_start).any()):
                row = int((key_end == key_start).nonzero()[0])
                raise ValueError(f"attention_mask row {row} has no tokens (all zeros)")
            first = key_start.long()
            if position_ids is None:
                # Left padding: count positions from the first real token, as if run alone.
                j = torch.arange(s, device=dev)
                position_ids = (j[None, :] - first[:, None]).clamp_min_(0)
        if position_ids is None:
            position_ids = torch.arange(s, device=dev).expand(b, s)
        return key_start, key_end, position_ids, first

    @torch.no_grad()
    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None) -> BertOutput:
        """input_ids [B, S] int64/int32; attention_mask [B, S] (1 = token, one contiguous run
        per row: right or left padding; default all ones); token_type_ids [B, S] (default
        zeros); position_ids [B, S] (default 0.. from each row's first real token).
        On CPU the thread count follows the machine's load (eet_like._threads)."""
        with _threads.adaptive(self.device):
            return self._forward(input_ids, attention_mask, token_type_ids, position_ids)

    def _forward(self, input_ids, attention_mask, token_type_ids, position_ids) -> BertOutput:
        key_start, key_end, position_ids, first = self.prepare_inputs(
            input_ids, attention_mask, token_type_ids, position_ids)
        x = self.embeddings(input_ids, position_ids, token_type_ids)
        x = run_blocks(self.layers, x, Prompt(key_start, key_end), gemm=Gemm, pre_norm=False)
        pooled = None
        if self.pooler_weight is not None:
            cls_tok = x[:, 0] if first is None else x[torch.arange(x.shape[0], device=x.device), first]
            pooled = torch.tanh(F.linear(cls_tok, self.pooler_weight, self.pooler_bias))
        return BertOutput(x, pooled)


def _normalize_keys(state):
    # Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
    out = {}
    for k, v in state.items():
        if ".LayerNorm." in k or k.startswith("LayerNorm."):
            k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[k] = v
    return out


def _sentence_max_seq_length(path: str) -> Optional[int]:
    f = os.path.join(path, "sentence_bert_config.json")
    if not os.path.isfile(f):
        return None
    with open(f) as fh:
        v = json.load(fh).get("max_seq_length")
    return int(v) if v is not None else None


# ---------------------------------------------------------------------- task heads
class EetBertEncoder(nn.Module):
    """Stands in for the `bert` inside a transformers BertFor* model: same call signature as
    transformers' BertModel.forward for what eet_like supports, returns a BertOutput (out[0]
    is the sequence output, out[1] the pooled output), which is what the heads read."""

    def __init__(self, model: BertModel, hf_config=None):
        super().__init__()
        self.model = model
        self.config = hf_config

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, return_dict=True, output_attentions=None,
                output_hidden_states=None, **kwargs):
        if inputs_embeds is not None:
            raise ValueError("inputs_embeds is not supported by the eet_like BERT encoder; pass input_ids")
        if input_ids is None:
            raise ValueError("input_ids is required")
        for name, v in (("output_attentions", output_attentions),
                        ("output_hidden_states", output_hidden_states)):
            if v:
                raise ValueError(f"{name}=True is not supported by the eet_like BERT encoder")
        bad = [k for k, v in kwargs.items() if v is not None and v is not False]
        if bad:
            raise ValueError(f"unsupported arguments for the eet_like BERT encoder: {', '.join(sorted(bad))}")
        out = self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                         position_ids=position_ids)
        return out if return_dict or return_dict is None else out.to_tuple()


def swap_encoder(hf_model, dtype=None, device=None):
    """Replace `hf_model.bert` (a transformers BertFor* model: sequence/token classification,
    QA, multiple choice, MLM...) by an eet_like encoder, in place; the head stays plain torch.
    dtype/device default to those of the current encoder (move the head yourself if you pick
    another device). Returns hf_model. Same values as transformers for right-padded (or
    unpadded) batches; with left padding each row equals its sentence run alone."""
    bert = getattr(hf_model, "bert", None)
    if bert is None or not hasattr(bert, "state_dict"):
        raise TypeError(f"swap_encoder needs a transformers BertFor* model with a `.bert` submodule, "
                        f"got {type(hf_model).__name__} (for a bare BertModel use "
                        "eet_like.BertModel.from_pretrained)")
    if isinstance(bert, EetBertEncoder):
        return hf_model
    model = BertModel.from_pretrained(bert, dtype=dtype, device=device)
    hf_model.bert = EetBertEncoder(model, getattr(bert, "config", None))
    return hf_model
