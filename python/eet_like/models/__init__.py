"""Model classes built from the eet_like layers (no transformers or fairseq import)."""
from .bert import BertModel
from .gpt2 import GPT2Model
from .gpt2_lm import GPT2LMHeadModel

__all__ = ["BertModel", "GPT2LMHeadModel", "GPT2Model"]
