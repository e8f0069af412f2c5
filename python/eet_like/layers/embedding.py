import torch
from torch import nn

from .. import ops


class Embedding(nn.Module):
    """Token + position (+ token type) embedding with an optional fused layernorm (BERT).
    Position ids are explicit so left-padded rows get the positions of their real tokens."""

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

    def forward(self, input_ids, position_ids, token_type_ids=None):
        if token_type_ids is None and self.token_type is not None:
            token_type_ids = torch.zeros_like(input_ids)
        return ops.embedding(input_ids, self.word, self.position, position_ids=position_ids,
                             token_type_ids=token_type_ids,
                             token_type_embeddings=self.token_type if token_type_ids is not None else None,
                             ln_weight=self.ln_weight, ln_bias=self.ln_bias, eps=self.eps)
