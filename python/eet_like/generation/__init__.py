"""Decoding machinery: the KV cache, the decode state, and the generate() loop (decode.py)."""
from .kv_cache import KVCache
from .state import DecodeState

__all__ = ["DecodeState", "KVCache"]
