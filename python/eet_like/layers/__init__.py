"""Modules built from the eet_like ops; the GPT-2, BERT and fairseq models compose these."""
from .attention import SelfAttention
from .embedding import Embedding
from .ffn import FeedForward
from .gemm import Gemm, Int8Weight, PackedDecodeGemm
from .layernorm import LayerNorm

__all__ = ["Embedding", "FeedForward", "Gemm", "Int8Weight", "PackedDecodeGemm", "LayerNorm", "SelfAttention"]
