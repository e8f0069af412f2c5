"""The one decode-state class: what a joint decode holds between steps, for GPT-2's generate()
and for the fairseq adapter's incremental state."""
from dataclasses import dataclass
from typing import Optional

import torch

from .kv_cache import KVCache


@dataclass
class DecodeState:
    """Rows [0, n) of `cache` decode jointly; positions [0, length) of the cache are filled.
    The per-row buffers ([Bmax] each, allocate()) are updated in place so a step keeps its
    shapes and addresses (CUDA-graph friendly); a decoder that recomputes them per step (the
    fairseq adapter) leaves them None. `encoder` holds cross-attention inputs (EncoderKV) and
    `encoder_group` [n] int64 ids, equal for rows that hold the same encoder output."""
    cache: KVCache
    n: int = 0
    length: int = 0
    tokens: Optional[torch.Tensor] = None        # [Bmax] int64, the token fed at this step
    position_ids: Optional[torch.Tensor] = None  # [Bmax] int64, its embedding position per row
    positions: Optional[torch.Tensor] = None     # [Bmax] int32, the cache slot written this step
    key_start: Optional[torch.Tensor] = None     # [Bmax] int32, left-pad count per row
    logits: Optional[torch.Tensor] = None        # [Bmax, V] model dtype
    encoder: Optional[object] = None
    encoder_group: Optional[torch.Tensor] = None
    owner: Optional[object] = None               # claim on a preallocated cache

    @classmethod
    def allocate(cls, cache: KVCache, vocab: int, dtype) -> "DecodeState":
        bmax, dev = cache.max_batch, cache.k[0].device
        z = dict(device=dev)
        return cls(cache, tokens=torch.zeros(bmax, dtype=torch.int64, **z),
                   position_ids=torch.zeros(bmax, dtype=torch.int64, **z),
                   positions=torch.zeros(bmax, dtype=torch.int32, **z),
                   key_start=torch.zeros(bmax, dtype=torch.int32, **z),
                   logits=torch.empty(bmax, vocab, dtype=dtype, **z))

    def reorder_(self, index: torch.Tensor, changed_only: bool = False) -> None:
        """Row b becomes old row index[b] (beam search, replicating prompts into beams, or
        dropping finished rows): the cache (see KVCache.reorder_), the per-row buffers and the
        encoder inputs. The buffers keep their addresses."""
        n = index.numel()
        if self.length > 0 or n > self.cache.max_batch:
            cache = self.cache.reorder_(index, self.length, changed_only)
            if cache is not self.cache:
                self.cache, self.owner = cache, None
        for buf in (self.key_start, self.position_ids, self.positions):
            if buf is not None:
                buf[:n] = buf.index_select(0, index)
        self.n = n
        if self.encoder is not None:
            group = self.encoder_group.index_select(0, index)
            if torch.equal(group, self.encoder_group):
                # Beams of one sentence share its encoder output: every row already holds the
                # encoder K/V it needs (fairseq skips this gather too).
                return
            e = self.encoder
            self.encoder_group = group
            e.kv = [kv.index_select(0, index) for kv in e.kv]
            if e.key_start is not None:
                e.key_start = e.key_start.index_select(0, index)
                e.key_end = e.key_end.index_select(0, index)
