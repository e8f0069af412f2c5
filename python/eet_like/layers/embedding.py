"""The embedding module: token + position (+ token type) lookup, optional fused layernorm."""
import torch
from torch import nn

from .. import ops
from ..validation import check_ids_in_range
from .gemm import Int8Weight


class Embedding(nn.Module):
    """Token + position (+ token type) embedding with an optional fused layernorm (BERT).
    Position ids are explicit so left-padded rows get the positions of their real tokens.
    The word matrix may be an Int8Weight (GPT-2's quantized tied LM head): its rows are then
    dequantized at lookup."""

    def __init__(self, vocab: int, max_positions: int, hidden: int, type_vocab: int = 0,
                 layernorm: bool = False, eps: float = 1e-12, dtype=torch.float32, device=None):
        super().__init__()
        p = dict(dtype=dtype, device=device)
        self.word = nn.Parameter(torch.zeros(vocab, hidden, **p), requires_grad=False)
        self.position = nn.Parameter(torch.zeros(max_positions, hidden, **p), requires_grad=False)
        self.token_type = (nn.Parameter(torch.zeros(type_vocab, hidden, **p), requires_grad=False)
                           if type_vocab > 0 else None)
        self.eps = float(eps)
        if layernorm:
            self.ln_weight = nn.Parameter(torch.ones(hidden, **p), requires_grad=False)
            self.ln_bias = nn.Parameter(torch.zeros(hidden, **p), requires_grad=False)
        else:
            self.ln_weight = self.ln_bias = None

    def forward(self, input_ids, position_ids, token_type_ids=None, check: bool = True):
        """[B, S] (or [n]) ids -> [..., hidden]. check=False skips the id range check (no host
        sync) for ids known to be in range, e.g. sampled from the vocabulary."""
        word = self.word
        if token_type_ids is None and self.token_type is not None:
            token_type_ids = torch.zeros_like(input_ids)
        if isinstance(word, Int8Weight):
            return self._int8(input_ids, position_ids, token_type_ids, check)
        return ops.embedding(input_ids, word, self.position, position_ids=position_ids,
                             token_type_ids=token_type_ids,
                             token_type_embeddings=self.token_type if token_type_ids is not None else None,
                             ln_weight=self.ln_weight, ln_bias=self.ln_bias, eps=self.eps, check=check)

    def _int8(self, input_ids, position_ids, token_type_ids, check: bool):
        """The lookup of a quantized word matrix: its rows dequantized, the other tables float."""
        if check:
            check_ids_in_range(input_ids, self.word.shape[0], "input_ids")
            check_ids_in_range(position_ids, self.position.shape[0], "position_ids")
            if token_type_ids is not None:
                check_ids_in_range(token_type_ids, self.token_type.shape[0], "token_type_ids")
        x = self.word.rows(input_ids, self.position.dtype) + self.position[position_ids]
        if token_type_ids is not None:
            x = x + self.token_type[token_type_ids]
        if self.ln_weight is not None:
            x = ops.layernorm(x, self.ln_weight, self.ln_bias, self.eps)
        return x
