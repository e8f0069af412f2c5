import torch
from torch import nn

from .. import ops


class FeedForward(nn.Module):
    """act(x W1^T + b1) W2^T (+ b2) (+ residual), nn.Linear weight layout.

    forward(x, add_out_bias=False) leaves b2 out so the caller can fuse it into the next
    add_layernorm (residual_bias=self.b2), saving a pass over the output."""

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

    def forward(self, x, residual=None, add_out_bias: bool = True):
        return ops.ffn(x, self.w1, self.b1, self.w2, self.b2 if add_out_bias else None,
                       self.activation, residual)
