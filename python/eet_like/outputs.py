"""The one output base of every model and of generate(): dataclasses that also index like a
transformers ModelOutput (out[0], out["logits"], iteration), None fields left out."""
from dataclasses import dataclass, fields
from typing import Optional, Tuple

import torch


class ModelOutput:
    def to_tuple(self) -> tuple:
        return tuple(v for v in (getattr(self, f.name) for f in fields(self)) if v is not None)

    def keys(self):
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self):
        return iter(self.to_tuple())

    def __len__(self):
        return len(self.to_tuple())


@dataclass
class BaseModelOutput(ModelOutput):
    last_hidden_state: torch.Tensor


@dataclass
class CausalLMOutput(ModelOutput):
    logits: torch.Tensor


@dataclass
class BertOutput(ModelOutput):
    """last_hidden_state [B, S, hidden], pooler_output [B, hidden] or None (then out[1] is
    missing, as in transformers). The other fields are what transformers' BertFor* heads also
    read from their encoder's output; eet_like never computes them."""
    last_hidden_state: torch.Tensor
    pooler_output: Optional[torch.Tensor] = None
    hidden_states: None = None
    attentions: None = None
    cross_attentions: None = None
    past_key_values: None = None


@dataclass
class GenerateOutput(ModelOutput):
    """return_dict_in_generate=True (the fields of transformers' GenerateDecoderOnlyOutput /
    GenerateBeamDecoderOnlyOutput that eet_like produces)."""
    sequences: torch.Tensor
    scores: Optional[Tuple[torch.Tensor, ...]] = None
    logits: Optional[Tuple[torch.Tensor, ...]] = None
    sequences_scores: Optional[torch.Tensor] = None
    beam_indices: Optional[torch.Tensor] = None
    attentions: None = None
    hidden_states: None = None
    past_key_values: None = None
