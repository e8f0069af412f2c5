"""Model classes built from the eet_like layers (no transformers import)."""
from .gpt2 import GPT2LMHeadModel, GPT2Model
from .bert import BertModel
