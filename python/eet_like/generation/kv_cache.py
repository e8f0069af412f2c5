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

    def reorder_(self, index: torch.Tensor, length: int = None) -> None:
        """Row b of the cache becomes old row index[b] (beam search), for the first `length`
        positions (all when None). Rows beyond index.numel() are left alone."""
        n = index.numel()
        s = self.max_seq if length is None else length
        for buf in (*self.k, *self.v):
            buf[:n, :, :s] = buf[:, :, :s].index_select(0, index)
