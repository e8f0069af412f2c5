"""LayerNorm with the residual add (and the previous GEMM's bias) fused in."""
import torch
from torch import nn

from .. import ops


class LayerNorm(nn.Module):
    """LayerNorm with the residual add fused in: forward(x) -> y, or
    forward(x, residual, residual_bias) -> (y, x + residual + residual_bias)."""

    def __init__(self, hidden: int, eps: float = 1e-5, dtype=torch.float32, device=None):
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(hidden, dtype=dtype, device=device), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(hidden, dtype=dtype, device=device), requires_grad=False)

    def forward(self, x, residual=None, residual_bias=None):
        return ops.layernorm(x, self.weight, self.bias, self.eps, residual=residual, residual_bias=residual_bias)
