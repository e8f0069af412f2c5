"""Bad input to every op raises a ValueError/TypeError whose message names the argument and
what was expected: never a crash, never a silently wrong result."""
import pytest
import torch

import eet_like
from eet_like import ops

H, D = 2, 16
W = H * D


def qkv3(b=2, s=5):
    return torch.randn(b, s, 3 * W)


def cache(b=2, s=8, h=H, d=D):
    return torch.zeros(b, h, s, d)


# ---------------------------------------------------------------- layernorm

def test_layernorm_errors():
    x, w, b = torch.randn(3, 8), torch.randn(8), torch.randn(8)
    with pytest.raises(TypeError, match="x must be float32 on CPU"):
        ops.layernorm(x.double(), w, b)
    with pytest.raises(TypeError, match="weight must have the dtype of x"):
        ops.layernorm(x, w.half(), b)
    with pytest.raises(ValueError, match=r"weight must be \[H\]"):
        ops.layernorm(x, torch.randn(7), b)
    with pytest.raises(ValueError, match="x must be contiguous"):
        ops.layernorm(torch.randn(8, 3).t(), w[:3], b[:3])
    with pytest.raises(ValueError, match="residual must have the shape of x"):
        ops.layernorm(x, w, b, residual=torch.randn(2, 8))
    with pytest.raises(ValueError, match="residual_bias needs residual"):
        ops.layernorm(x, w, b, residual_bias=b)
    with pytest.raises(ValueError, match=r"residual_bias must be \[H\]"):
        ops.layernorm(x, w, b, residual=x, residual_bias=torch.randn(3))
    with pytest.raises(ValueError, match="eps must be > 0"):
        ops.layernorm(x, w, b, eps=0.0)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        ops.layernorm([1.0, 2.0], w, b)


# ---------------------------------------------------------------- embedding

def test_embedding_errors():
    word, pos = torch.randn(10, 4), torch.randn(6, 4)
    ids = torch.randint(0, 10, (2, 3))
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 10\), got 10"):
        ops.embedding(torch.tensor([[1, 10]]), word, pos)
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 10\), got -1"):
        ops.embedding(torch.tensor([[-1, 2]]), word, pos)
    with pytest.raises(ValueError, match=r"position_ids must be in \[0, 6\)"):
        ops.embedding(torch.randint(0, 10, (1, 7)), word, pos)  # longer than the position table
    with pytest.raises(TypeError, match="input_ids must be int32 or int64"):
        ops.embedding(ids.float(), word, pos)
    with pytest.raises(ValueError, match="position_ids must have the shape of input_ids"):
        ops.embedding(ids, word, pos, position_ids=torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"position_embeddings must be \[N, 4\]"):
        ops.embedding(ids, word, torch.randn(6, 5))
    with pytest.raises(ValueError, match="token_type_ids and token_type_embeddings must be given together"):
        ops.embedding(ids, word, pos, token_type_ids=torch.zeros_like(ids))
    with pytest.raises(ValueError, match=r"token_type_ids must be in \[0, 2\)"):
        ops.embedding(ids, word, pos, token_type_ids=torch.full_like(ids, 2),
                      token_type_embeddings=torch.randn(2, 4))
    with pytest.raises(ValueError, match="ln_weight and ln_bias must be given together"):
        ops.embedding(ids, word, pos, ln_weight=torch.ones(4))
    with pytest.raises(TypeError, match="word_embeddings must be float32 on CPU"):
        ops.embedding(ids, word.half(), pos.half())


# ---------------------------------------------------------------- ffn

def test_ffn_errors():
    x = torch.randn(3, 8)
    w1, b1, w2, b2 = torch.randn(16, 8), torch.randn(16), torch.randn(8, 16), torch.randn(8)
    with pytest.raises(ValueError, match="activation must be one of .* got 'swish'"):
        ops.ffn(x, w1, b1, w2, b2, "swish")
    with pytest.raises(ValueError, match="activation must be one of"):
        torch.ops.eet_like.ffn(x, w1, b1, w2, b2, "tanh", None)  # the C++ check too
    with pytest.raises(TypeError, match="activation must be a str"):
        ops.ffn(x, w1, b1, w2, b2, 3)
    with pytest.raises(ValueError, match=r"w1 must be \[I, H\] with H = x.size\(-1\) = 8"):
        ops.ffn(x, torch.randn(16, 9), b1, w2, b2)
    with pytest.raises(ValueError, match=r"w2 must be \[H, I\]"):
        ops.ffn(x, w1, b1, torch.randn(16, 8), b2)
    with pytest.raises(ValueError, match=r"b1 must be \[I\]"):
        ops.ffn(x, w1, torch.randn(8), w2, b2)
    with pytest.raises(TypeError, match="w2 must have the dtype of x"):
        ops.ffn(x, w1, b1, w2.double(), b2)
    with pytest.raises(ValueError, match="residual must have the shape of x"):
        ops.ffn(x, w1, b1, w2, b2, residual=torch.randn(4, 8))


# ---------------------------------------------------------------- linear

def test_linear_errors():
    x, w, b = torch.randn(3, 8), torch.randn(5, 8), torch.randn(5)
    with pytest.raises(ValueError, match="activation must be one of .* got 'swish'"):
        ops.linear(x, w, b, "swish")
    with pytest.raises(ValueError, match="activation must be one of"):
        torch.ops.eet_like.linear(x, w, b, "tanh")  # the C++ check too
    with pytest.raises(ValueError, match=r"weight must be \[M, K\] with K = x.size\(-1\) = 8"):
        ops.linear(x, torch.randn(5, 9), b)
    with pytest.raises(ValueError, match=r"weight must be rank 2|weight must be \[M, K\]"):
        ops.linear(x, torch.randn(5, 8, 1), b)
    with pytest.raises(ValueError, match=r"bias must be \[M\]"):
        ops.linear(x, w, torch.randn(4))
    with pytest.raises(TypeError, match="weight must have the dtype of x"):
        ops.linear(x, w.double(), b)
    with pytest.raises(TypeError, match="x must be float32 on CPU"):
        ops.linear(x.half(), w.half(), b.half())
    with pytest.raises(ValueError, match="x must be contiguous"):
        ops.linear(torch.randn(8, 3).t(), w, b)
    with pytest.raises(ValueError, match="x must be a non-empty"):
        ops.linear(torch.randn(0, 8), w, b)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        ops.linear([1.0] * 8, w, b)


def test_linear_packed_errors():
    x, w, b = torch.randn(3, 8), torch.randn(20, 8), torch.randn(20)
    p = ops.pack_linear(w)
    assert p.shape == (2, 8, 16)
    with pytest.raises(ValueError, match=r"weight must be \[N, K\]"):
        ops.pack_linear(torch.randn(20))
    with pytest.raises(TypeError, match="weight must be float32 on CPU"):
        ops.pack_linear(w.double())
    with pytest.raises(ValueError, match=r"packed must be \[2, 8, 16\]|packed must be \[ceil"):
        ops.linear_packed(x, p, 40, b)  # out_features does not match the packed weight
    with pytest.raises(ValueError, match=r"packed must be"):
        ops.linear_packed(torch.randn(3, 9), p, 20, b)  # K does not match
    with pytest.raises(ValueError, match=r"bias must be \[out_features\]"):
        ops.linear_packed(x, p, 20, torch.randn(19))
    with pytest.raises(ValueError, match="out_features must be > 0"):
        ops.linear_packed(x, p, 0)
    with pytest.raises(TypeError, match="out_features must be an int"):
        ops.linear_packed(x, p, 20.0)
    with pytest.raises(ValueError, match="activation must be one of"):
        ops.linear_packed(x, p, 20, b, "swish")
    with pytest.raises(ValueError, match="x must be contiguous"):
        ops.linear_packed(torch.randn(8, 3).t(), p, 20, b)
    with pytest.raises(TypeError, match="packed must have the dtype of x"):
        ops.linear_packed(x, p.double(), 20, b)


# ---------------------------------------------------------------- attention

def test_attention_errors():
    with pytest.raises(ValueError, match=r"qkv must be \[B, S, 3\*H\*D\]"):
        ops.attention(torch.randn(5, 3 * W), H)
    with pytest.raises(ValueError, match="not a multiple of 3"):
        ops.attention(torch.randn(2, 5, 3 * W + 1), H)
    with pytest.raises(ValueError, match="must be 3 \\* num_heads \\* head_dim with num_heads = 5"):
        ops.attention(qkv3(), 5)
    with pytest.raises(ValueError, match="num_heads must be > 0"):
        ops.attention(qkv3(), 0)
    with pytest.raises(ValueError, match="qkv must be contiguous"):
        ops.attention(torch.randn(2, 3 * W, 5).transpose(1, 2), H)
    with pytest.raises(TypeError, match="key_start must be int32 or int64"):
        ops.attention(qkv3(), H, key_start=torch.zeros(2))
    with pytest.raises(ValueError, match=r"key_start must be \[B\]"):
        ops.attention(qkv3(), H, key_start=torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="either attention_mask or key_start"):
        ops.attention(qkv3(), H, attention_mask=torch.ones(2, 5), key_start=torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match="one contiguous run"):
        ops.attention(qkv3(), H, attention_mask=torch.tensor([[1, 0, 1, 1, 1], [1, 1, 1, 1, 1]]))
    with pytest.raises(ValueError, match="k_cache and v_cache must be given together"):
        ops.attention(qkv3(), H, k_cache=cache())
    with pytest.raises(ValueError, match="cache overflow: the prompt has S = 9"):
        ops.attention(qkv3(s=9), H, k_cache=cache(), v_cache=cache())
    with pytest.raises(ValueError, match=r"k_cache must be \[Bmax >= 3"):
        ops.attention(qkv3(b=3), H, k_cache=cache(), v_cache=cache())
    with pytest.raises(ValueError, match=r"k_cache must be \[Bmax >= 2, H = 2, Smax, D = 16\]"):
        ops.attention(qkv3(), H, k_cache=cache(d=8), v_cache=cache(d=8))
    with pytest.raises(TypeError, match="k_cache must have the dtype of qkv"):
        ops.attention(qkv3(), H, k_cache=cache().double(), v_cache=cache().double())
    with pytest.raises(ValueError, match="k_cache must be contiguous"):
        ops.attention(qkv3(), H, k_cache=cache().transpose(2, 3).contiguous().transpose(2, 3), v_cache=cache())
    with pytest.raises(ValueError, match="v_cache must have the shape of k_cache"):
        ops.attention(qkv3(), H, k_cache=cache(), v_cache=cache(s=9))


def test_masked_attention_errors():
    q = torch.randn(2, 3 * W)
    pos = torch.tensor([3, 3], dtype=torch.int32)
    with pytest.raises(ValueError, match="cache overflow: positions must be in"):
        ops.masked_attention(q, cache(), cache(), torch.tensor([3, 8], dtype=torch.int32), H)
    with pytest.raises(ValueError, match=r"cache overflow: positions\[1\] = 8"):  # the C++ check too
        torch.ops.eet_like.masked_attention(q, cache(), cache(), torch.tensor([3, 8], dtype=torch.int32),
                                            None, H, None)
    with pytest.raises(ValueError, match=r"cache overflow: positions\[0\] = -1"):
        torch.ops.eet_like.masked_attention(q, cache(), cache(), torch.tensor([-1, 0], dtype=torch.int32),
                                            None, H, None)
    with pytest.raises(ValueError, match=r"qkv must be \[B, 3\*H\*D\]"):
        ops.masked_attention(torch.randn(2, 1, 3 * W), cache(), cache(), pos, H)
    with pytest.raises(ValueError, match=r"positions must be \[B\]"):
        ops.masked_attention(q, cache(), cache(), torch.tensor([3], dtype=torch.int32), H)
    with pytest.raises(TypeError, match="positions must be int32 or int64"):
        ops.masked_attention(q, cache(), cache(), pos.float(), H)
    with pytest.raises(ValueError, match="k_cache must be"):
        ops.masked_attention(q, cache(h=3), cache(h=3), pos, H)
    with pytest.raises(ValueError, match=r"k_cache must be \[Bmax, H, Smax, D\] \(4-D\)"):
        ops.masked_attention(q, torch.zeros(2, 8, W), cache(), pos, H)
    with pytest.raises(ValueError, match="max_keys must be >= 1"):
        ops.masked_attention(q, cache(), cache(), pos, H, max_keys=0)


def test_cross_attention_errors():
    q, k = torch.randn(2, 1, W), torch.randn(2, 7, W)
    with pytest.raises(ValueError, match=r"q must be \[B, Sq, H\*D\]"):
        ops.cross_attention(torch.randn(2, W), k, k, H)
    with pytest.raises(ValueError, match=r"k must be \[B = 2, Sk, H\*D = 32\]"):
        ops.cross_attention(q, torch.randn(3, 7, W), torch.randn(3, 7, W), H)
    with pytest.raises(ValueError, match="v must have the shape of k"):
        ops.cross_attention(q, k, torch.randn(2, 6, W), H)
    with pytest.raises(ValueError, match="contiguous in their last dim"):
        ops.cross_attention(q, torch.randn(2, W, 7).transpose(1, 2), k, H)
    with pytest.raises(ValueError, match=r"key_padding_mask must be \[B, Sk\]"):
        ops.cross_attention(q, k, k, H, key_padding_mask=torch.zeros(2, 7, 1, dtype=torch.bool))
    with pytest.raises(TypeError, match="v must have the dtype of q"):
        ops.cross_attention(q, k, k.double(), H)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_mix_errors():
    x, w, b = torch.randn(3, 8, device="cuda"), torch.randn(8), torch.randn(8)
    with pytest.raises(ValueError, match="weight must be on the same device as x"):
        ops.layernorm(x, w, b)
    q = torch.randn(2, 3 * W, device="cuda")
    with pytest.raises(ValueError, match="k_cache must be on the same device as qkv"):
        ops.masked_attention(q, cache(), cache(), torch.tensor([1, 1], dtype=torch.int32, device="cuda"), H)


@pytest.mark.skipif(eet_like.cuda_kernels_available(), reason="this build has the CUDA kernels")
def test_cpu_only_build_names_missing_cuda_kernels():
    """Without CUDA kernels every op still has a CUDA registration, which says so (instead of
    torch's "Could not run ... with arguments from the 'CUDA' backend"). Reached here through
    the CUDA dispatch key directly, since a CPU build of torch cannot make CUDA tensors."""
    cuda = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)
    x, w = torch.randn(3, 8), torch.randn(5, 8)
    for name in ("layernorm", "linear", "attention", "pack_linear"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"eet_like::{name}", "CUDA")
    with pytest.raises(NotImplementedError, match="eet_like::linear got CUDA tensors, but this build of "
                                                  "eet_like has no CUDA kernels"):
        torch.ops.eet_like.linear.default.redispatch(cuda, x, w, None, "identity")
