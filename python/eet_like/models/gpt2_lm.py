"""GPT2LMHeadModel: the GPT-2 trunk (gpt2.py) with its LM head, a preallocated KV cache and a
transformers-compatible generate(), and the interface the decode loops drive:

    check_request / prefill / decode_step / reorder_cache     generate() (generation/decode.py)
    prefill_row / decode_rows / move_cache_row                continuous batching (eet_like.server)

On CUDA a decode step is replayed from a CUDA graph (one per row count and power-of-two bound
of the context, captured after its first eager run): a step is hundreds of small kernels whose launches otherwise cost more than
their work at small batches. Every input and output of a step is a static buffer of the
DecodeState, so a replay needs no copies. EET_LIKE_CUDA_GRAPHS=0 turns it off.
"""
import json
import os
from typing import Optional

import torch
from torch import nn

from .. import _threads
from ..generation import decode as _decode
from ..generation import DecodeState, KVCache
from ..integrations.transformers import load_config_and_state_dict, strip_prefix
from ..layers import Gemm, PackedDecodeGemm
from ..layers.gemm import Int8Weight, quantize_int8_, weight_bytes
from ..outputs import CausalLMOutput
from ..validation import (check_device_dtype, check_ids_in_range, check_positive_int, check_quantize, check_row,
                          check_token_ids, runs_cuda_kernels)
from .gpt2 import GPT2Config, GPT2Model


def cuda_graphs_enabled() -> bool:
    v = os.environ.get("EET_LIKE_CUDA_GRAPHS", "1")
    if v not in ("0", "1"):
        raise ValueError(f"EET_LIKE_CUDA_GRAPHS must be 0 or 1, got {v!r}")
    return v == "1"


class GPT2LMHeadModel(nn.Module):
    """GPT-2 with its LM head, a preallocated KV cache and generate().

        model = GPT2LMHeadModel.from_pretrained(path_or_hf_model, dtype=torch.float16, device="cuda",
                                                max_batch=16, max_seq_len=1024)
        out = model.generate(input_ids, attention_mask=mask, max_new_tokens=64, do_sample=True, top_p=0.9)
    """

    def __init__(self, config: GPT2Config, dtype=torch.float32, device=None, max_batch: int = 8,
                 max_seq_len: Optional[int] = None, generation_defaults: Optional[dict] = None):
        super().__init__()
        dev = check_device_dtype(dtype, device)
        self.transformer = GPT2Model(config, dtype=dtype, device=dev)
        self.config = self.transformer.config
        if max_seq_len is None:
            max_seq_len = config.n_positions
        check_positive_int("max_batch", max_batch)
        check_positive_int("max_seq_len", max_seq_len)
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
        self.state = DecodeState.allocate(self.cache, config.vocab_size, dtype)
        self.quantization = None   # or "int8" after quantize_()
        self._decode_graphs = {}   # (rows, keys bound) -> torch.cuda.CUDAGraph of a decode step (CUDA)
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
        quantize="int8": int8 GEMMs (see quantize_): CPU float32, CUDA float32/float16/bfloat16."""
        if kwargs:
            raise ValueError(f"GPT2LMHeadModel.from_pretrained got unknown arguments: {sorted(kwargs)}")
        check_device_dtype(dtype, device)
        check_quantize(quantize, dtype, device)
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
        """int8 in place (None: no change). Every linear weight of the blocks and the LM head
        becomes an Int8Weight (one symmetric scale per output row; every pass runs
        ops.linear_int8: on CPU float32 activations quantized per token, on CUDA int8 weights
        only); the float weights are dropped. The tied word-embedding matrix is stored
        once, in int8, and its rows are dequantized at lookup (a few rows per step), so the
        model holds about a quarter of its float32 bytes (memory_bytes()). On AVX2-only CPUs the
        int8 weights are kept in the panel layout of the int8 GEMM (Int8Weight.pack_applies)."""
        check_quantize(quantize, self.dtype, self.device)
        if quantize is None or self.quantization == quantize:
            return self
        t = self.transformer
        with torch.no_grad():
            for blk in t.blocks:
                blk.quantize_int8_()
            if self.lm_head is None:
                quantize_int8_(t.embed, "word", pack=True)
            else:
                quantize_int8_(self, "lm_head", pack=True)
        t.decode_gemm = PackedDecodeGemm()  # drop float packed copies made before
        self.quantization = quantize
        return self

    def memory_bytes(self) -> int:
        """Bytes of the weights this model holds (layers.gemm.weight_bytes)."""
        return weight_bytes(self)

    @torch.no_grad()
    def forward(self, input_ids, attention_mask=None, position_ids=None):
        """input_ids [B, S] -> .logits [B, S, V] (model dtype). Left- or right-padded batches
        via attention_mask; at real positions each row equals its unpadded run."""
        t = self.transformer
        input_ids = t.check_inputs(input_ids, attention_mask)
        pos, ks, ke = t.positions_and_ranges(input_ids, attention_mask, position_ids)
        with _threads.adaptive(self.device):
            return CausalLMOutput(Gemm.linear(t.prompt(input_ids, pos, ks, ke), self.lm_weight, None))

    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, streamer=None, generator=None, seed=None,
                 generation_config=None, **kwargs):
        """transformers-compatible generate (see generation/decode.py for the options): returns
        [B * num_return_sequences, prompt_len + new] token ids, or a GenerateOutput with
        return_dict_in_generate=True."""
        return _decode.generate(self, input_ids, attention_mask=attention_mask, streamer=streamer,
                                generator=generator, seed=seed, generation_config=generation_config,
                                **kwargs)

    # -- the decode-loop interface of generation/decode.py -----------------------------------

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
        """Prompt pass of a left-padded batch [n, S] (key_start [n] int32 = pad counts): fills
        cache positions [0, S) of rows [0, n) and returns the last position's logits [n, V]."""
        st = self.state
        n, s = input_ids.shape
        pos = (torch.arange(s, device=input_ids.device)[None, :] - key_start[:, None].long()).clamp_(min=0)
        hidden = self.transformer.prompt(input_ids, pos, key_start, None, self.cache, last_only=True)
        logits = self._lm_head(hidden[:, 0])
        st.n, st.length = n, s
        st.key_start[:n].copy_(key_start)
        st.positions[:n].fill_(s)
        st.position_ids[:n].copy_(s - key_start.long())
        return logits

    def decode_step(self, tokens):
        """Feed one token per row ([n] int64) at cache position state.length; returns logits
        [n, V] (a view of the static logits buffer on CUDA, valid until the next step)."""
        st = self.state
        n = st.n
        st.tokens[:n].copy_(tokens)
        keys = _keys_bucket(st.length + 1, self.max_seq_len)
        graph = self._decode_graphs.get((n, keys))
        if graph is not None:
            graph.replay()
            logits = st.logits[:n]
        else:
            logits = self._step(n, keys)
            if self.device.type == "cuda" and cuda_graphs_enabled():
                self._decode_graphs[n, keys] = self._capture_step(n, keys)
        st.length += 1
        return logits

    def reorder_cache(self, index):
        """Row b becomes old row index[b] (beam search, or replicating prompts into beams)."""
        self.state.reorder_(index)

    def _step(self, n: int, max_keys: int):
        """The kernels of one decode step over rows [0, n), reading and writing only the state
        and the cache; no row sees more than max_keys keys."""
        st = self.state
        hidden = self.transformer.step(st.tokens[:n], st.position_ids[:n], st.positions[:n], st.key_start[:n],
                                       self.cache, max_keys=max_keys)
        logits = self._lm_head(hidden)
        st.positions[:n].add_(1)
        st.position_ids[:n].add_(1)
        return logits

    def _capture_step(self, n: int, max_keys: int):
        """Records _step for n rows (recording runs nothing: the eager step before it was the
        real one and warmed up cuBLAS). The graphs of one model share a memory pool."""
        if self._graph_pool is None:
            self._graph_pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._graph_pool):
            out = self._step(n, max_keys)
        if out.data_ptr() != self.state.logits.data_ptr():
            raise RuntimeError("decode step graph: logits not written into the static buffer")
        return graph

    def _lm_head(self, hidden):
        """hidden [n, H] -> logits [n, V]: into the static buffer on CUDA (CUDA-graph
        friendly); on CPU through the decode GEMM (packed weights for few rows)."""
        if not runs_cuda_kernels(hidden.device):
            return self.transformer.decode_gemm.linear(hidden, self.lm_weight, None)
        logits = self.state.logits[:hidden.shape[0]]
        w = self.lm_weight
        if isinstance(w, Int8Weight):
            logits.copy_(w.linear(hidden, None))  # ops.linear_int8 has no out=; one [n, V] copy
        else:
            torch.mm(hidden, w.t(), out=logits)
        return logits

    # -- rows at their own positions (continuous batching: eet_like.server) --------------------

    def prefill_row(self, row: int, input_ids):
        """The prefill of generate() for one unpadded prompt [1, S] alone, into cache row `row`
        (positions [0, S)), leaving the other rows alone; returns its last position's logits
        [1, V]. Cache rows never mix, so these are the logits generate() computes for it."""
        check_token_ids(input_ids)
        if input_ids.shape[0] != 1:
            raise ValueError(f"input_ids must be one sequence [1, S], got {list(input_ids.shape)}")
        check_row(row, self.max_batch)
        s = input_ids.shape[1]
        if s > self.max_seq_len:
            raise ValueError(f"the prompt has {s} tokens, more than max_seq_len={self.max_seq_len}")
        ids = input_ids.to(device=self.device, dtype=torch.int64)
        key_start = torch.zeros(1, dtype=torch.int32, device=ids.device)
        pos = torch.arange(s, device=ids.device)[None, :]
        hidden = self.transformer.prompt(ids, pos, key_start, None, self.cache.rows(row, row + 1), last_only=True)
        return self._lm_head(hidden[:, 0])

    def decode_rows(self, tokens, positions):
        """One token per cache row b in [0, n), each row at its own position (no padding: a
        row's position id is its cache slot): tokens [n] int64, positions [n] int32 (the slot
        written and attended up to). Returns logits [n, V]. On CPU float32 the GEMMs run on the
        packed kernel for any row count (PackedDecodeGemm.any_rows), whose per-row arithmetic
        does not depend on the other rows: a row gets exactly the logits generate() computes
        for its sequence alone (there, a 1-row step also runs on the packed kernel)."""
        n = tokens.shape[0] if isinstance(tokens, torch.Tensor) and tokens.dim() == 1 else -1
        if n <= 0 or tokens.dtype != torch.int64:
            raise ValueError("tokens must be a non-empty [n] int64 tensor")
        if n > self.max_batch:
            raise ValueError(f"{n} rows, more than max_batch={self.max_batch}")
        if not isinstance(positions, torch.Tensor) or positions.shape != (n,) or positions.dtype != torch.int32:
            raise ValueError(f"positions must be an [n={n}] int32 tensor")
        # step() skips the embedding's range check (no host sync): check here, once.
        check_ids_in_range(positions, self.max_seq_len, "positions", "max_seq_len")
        check_ids_in_range(tokens, self.config.vocab_size, "tokens", "vocab_size")
        t = self.transformer
        g = t.decode_gemm.any_rows()
        max_keys = int(positions.max()) + 1
        positions = positions.to(self.device)
        hidden = t.step(tokens.to(self.device), positions.long(), positions, None, self.cache, gemm=g,
                        max_keys=max_keys)
        if not runs_cuda_kernels(hidden.device):
            return g.linear(hidden, self.lm_weight, None)
        return self._lm_head(hidden)

    def move_cache_row(self, src: int, dst: int, length: int):
        """Cache row dst <- row src, positions [0, length)."""
        self.cache.copy_row_(src, dst, length)


def _keys_bucket(keys: int, max_seq_len: int) -> int:
    """The bound of the keys a decode step sees, rounded up to a power of two (capped at the
    cache length): the attention launch is sized by it, and a CUDA graph is captured per
    (rows, bound), so a generation of L tokens replays at most log2(L) graphs per row count."""
    return min(1 << max(keys - 1, 0).bit_length(), max_seq_len)


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
