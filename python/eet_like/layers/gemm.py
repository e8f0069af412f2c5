"""The GEMM entry points the model code calls: both are eet_like ops, whose CPU backend
(oneDNN with fused bias/activation, or torch.mm + the eet_like bias_act epilogue) is chosen
inside the ops (eet_like.ops.cpu_gemm(), EET_LIKE_CPU_GEMM)."""
import torch

_ops = torch.ops.eet_like


class Gemm:
    @staticmethod
    def linear(x, w, b):
        """x @ w.T + b; x is made contiguous (a no-op when it already is)."""
        return _ops.linear(x.contiguous(), w, b, "identity")

    @staticmethod
    def ffn(m, mlp):
        """act(m W1^T + b1) W2^T for a FeedForward `mlp`; b2 is left to the next add_layernorm."""
        return _ops.ffn(m, mlp.w1, mlp.b1, mlp.w2, None, mlp.activation, None)
