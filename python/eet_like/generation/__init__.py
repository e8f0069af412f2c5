"""Decoding machinery: the preallocated KV cache (and, with the models, the decode loop)."""
from .kv_cache import KVCache

__all__ = ["KVCache"]
