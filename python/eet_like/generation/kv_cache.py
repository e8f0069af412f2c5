"""The one KV cache of every model: preallocated per-layer K/V buffers."""
from dataclasses import dataclass, field
from typing import List

import torch


@dataclass
class KVCache:
    """Preallocated per-layer K/V buffers [max_batch, H, max_seq, D].

    Joint decoding keeps every row at the same position: the prompt pass fills [0, S), step
    t writes S + t, and rows mask their left padding with key_start. The buffers never move,
    so a decode step has static shapes (CUDA-graph friendly)."""

    k: List[torch.Tensor] = field(default_factory=list)
    v: List[torch.Tensor] = field(default_factory=list)

    @classmethod
    def allocate(cls, num_layers: int, max_batch: int, num_heads: int, max_seq: int, head_dim: int,
                 dtype=torch.float32, device=None) -> "KVCache":
        for name, val in (("num_layers", num_layers), ("max_batch", max_batch), ("num_heads", num_heads),
                          ("max_seq", max_seq), ("head_dim", head_dim)):
            if not isinstance(val, int) or val <= 0:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        shape = (max_batch, num_heads, max_seq, head_dim)
        return cls([torch.empty(shape, dtype=dtype, device=device) for _ in range(num_layers)],
                   [torch.empty(shape, dtype=dtype, device=device) for _ in range(num_layers)])

    @property
    def max_batch(self) -> int:
        return self.k[0].shape[0]

    @property
    def max_seq(self) -> int:
        return self.k[0].shape[2]

    def rows(self, start: int, stop: int) -> "KVCache":
        """Rows [start, stop) as a KVCache of views (contiguous: the row is the outer dim), so a
        prompt pass can fill one row while other rows hold other sequences."""
        if not 0 <= start < stop <= self.max_batch:
            raise ValueError(f"rows [{start}, {stop}) are outside the cache's {self.max_batch} rows")
        return KVCache([k[start:stop] for k in self.k], [v[start:stop] for v in self.v])

    def copy_row_(self, src: int, dst: int, length: int) -> None:
        """Row dst <- row src for positions [0, length) (compacting the rows of a running batch)."""
        for name, r in (("src", src), ("dst", dst)):
            if not 0 <= r < self.max_batch:
                raise ValueError(f"{name} row {r} is outside the cache's {self.max_batch} rows")
        if not 0 <= length <= self.max_seq:
            raise ValueError(f"length must be in [0, {self.max_seq}], got {length}")
        for buf in (*self.k, *self.v):
            buf[dst, :, :length].copy_(buf[src, :, :length])

    def reorder_(self, index: torch.Tensor, length: int = None, changed_only: bool = False) -> "KVCache":
        """Row b becomes old row index[b] for positions [0, length) (all when None); rows beyond
        index.numel() are left alone. Two strategies, the same result:
        - a full gather (default): one index_select per buffer, any permutation;
        - changed_only=True: only the rows whose index differs from b are copied. For a caller
          that reorders every step with (mostly) the identity, e.g. fairseq's beam search, a
          full gather per step would make a decode quadratic in its length.
        An index with more rows than the cache holds returns a new, gathered cache."""
        n = index.numel()
        s = self.max_seq if length is None else length
        if n > self.max_batch:
            return KVCache([buf.index_select(0, index) for buf in self.k],
                           [buf.index_select(0, index) for buf in self.v])
        if changed_only:
            moved = (index != torch.arange(n, device=index.device)).nonzero().squeeze(1)
            if moved.numel() == 0:
                return self
            src = index.index_select(0, moved)
            for buf in (*self.k, *self.v):
                live = buf[:, :, :s]
                live.index_copy_(0, moved, live.index_select(0, src))
            return self
        for buf in (*self.k, *self.v):
            buf[:n, :, :s] = buf[:, :, :s].index_select(0, index)
        return self

    def grow(self, max_seq: int, length: int) -> "KVCache":
        """A cache of max_seq positions holding positions [0, length) of this one."""
        new = KVCache.allocate(len(self.k), self.max_batch, self.k[0].shape[1], max_seq, self.k[0].shape[3],
                               dtype=self.k[0].dtype, device=self.k[0].device)
        for src, dst in zip((*self.k, *self.v), (*new.k, *new.v)):
            dst[:, :, :length].copy_(src[:, :, :length])
        return new
