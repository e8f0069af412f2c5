"""The modules every model is built from: attention (prompt, decode step, cross), FFN,
embedding, layernorm, the one transformer block and the loop over a stack of blocks, and the
GEMM runners (Gemm; PackedDecodeGemm for CPU decode steps; Int8Weight for quantized weights)."""
from .attention import CrossAttention, SelfAttention
from .block import EncoderKV, Prompt, Step, TransformerBlock, run_blocks
from .embedding import Embedding
from .ffn import FeedForward
from .gemm import Gemm, Int8Weight, PackedDecodeGemm
from .layernorm import LayerNorm

__all__ = ["CrossAttention", "Embedding", "EncoderKV", "FeedForward", "Gemm", "Int8Weight", "LayerNorm",
           "PackedDecodeGemm", "Prompt", "SelfAttention", "Step", "TransformerBlock", "run_blocks"]
