"""The feed-forward module of every block: act(x W1^T + b1) W2^T, bias + activation fused."""
import torch
from torch import nn

from .. import ops
from .gemm import Gemm


class FeedForward(nn.Module):
    """act(x W1^T + b1) W2^T, nn.Linear weight layout. forward() leaves b2 out: the caller fuses
    it into the next add_layernorm (residual_bias=self.b2), saving a pass over the output."""

    def __init__(self, hidden: int, inner: int, activation: str, dtype=torch.float32, device=None):
        super().__init__()
        if activation not in ops.ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ops.ACTIVATIONS)}; got '{activation}'")
        p = dict(dtype=dtype, device=device)
        self.activation = activation
        self.w1 = nn.Parameter(torch.zeros(inner, hidden, **p), requires_grad=False)
        self.b1 = nn.Parameter(torch.zeros(inner, **p), requires_grad=False)
        self.w2 = nn.Parameter(torch.zeros(hidden, inner, **p), requires_grad=False)
        self.b2 = nn.Parameter(torch.zeros(hidden, **p), requires_grad=False)

    def forward(self, x, gemm=Gemm):
        return gemm.ffn(x, self)
