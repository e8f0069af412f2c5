"""Weight-only int8 ops: quantize_int8, pack_linear_int8, linear_int8_packed against
eet_like.reference (exact for the data movement, fp32 tolerance for the GEMM), the
quantization error bound, opcheck and bad inputs."""
import pytest
import torch

from eet_like import ops, reference
from conftest import cuda_ready

ACTS = ["identity", "relu", "gelu", "gelu_new"]


def weight(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * torch.rand(n, 1, generator=g) * 3  # rows of varied range
    w[n // 2] = 0.0                                                     # an all-zero row
    return w


@pytest.mark.parametrize("n,k", [(1, 1), (37, 50), (64, 768), (50, 129)])
def test_quantize_int8_matches_reference(n, k):
    w = weight(n, k)
    q, s = ops.quantize_int8(w)
    rq, rs = reference.quantize_int8(w)
    assert q.dtype == torch.int8 and s.dtype == torch.float32
    assert torch.equal(q, rq) and torch.equal(s, rs)
    assert int(q.abs().max()) <= 127
    # Every row uses the full range (|q| reaches 127) unless it is all zero.
    full = q.abs().amax(1)
    assert torch.equal(full[s > 0], torch.full_like(full[s > 0], 127))
    assert torch.equal(q[s == 0], torch.zeros_like(q[s == 0]))
    # Round to nearest: the dequantized weight is within half a step of the original.
    assert ((q.float() * s[:, None] - w).abs() <= s[:, None] / 2 + 1e-6).all()


@pytest.mark.parametrize("n,k", [(16, 8), (37, 50), (3, 129)])
def test_pack_linear_int8_matches_reference(n, k):
    q, _ = ops.quantize_int8(weight(n, k))
    p = ops.pack_linear_int8(q)
    assert p.dtype == torch.int8 and p.shape == ((n + 15) // 16, k, 16)
    assert torch.equal(p, reference.pack_linear_int8(q))


# Every row block (6/4/3/2/1 and chunks) on small shapes; two row counts on a GPT-2-sized one.
CASES = [(rows, n, k, bias) for rows in (1, 2, 3, 4, 5, 6, 8, 11, 17) for n, k, bias in ((50, 33, True), (64, 768, False))]
CASES += [(rows, 2304, 768, True) for rows in (1, 8)]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("rows,n,k,with_bias", CASES)
def test_linear_int8_packed_matches_reference(rows, act, n, k, with_bias):
    g = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, k, generator=g)
    q, s = ops.quantize_int8(weight(n, k, seed=rows))
    packed = ops.pack_linear_int8(q)
    bias = torch.randn(n, generator=g) if with_bias else None
    y = ops.linear_int8_packed(x, packed, s, n, bias, act)
    ref = reference.linear_int8_packed(x, packed, s, n, bias, act)
    torch.testing.assert_close(y, ref, atol=1e-4, rtol=1e-4)


def test_linear_int8_packed_batched_shape_and_rows_independent():
    """[B, S, K] input; each row's result does not depend on which row block computed it."""
    n, k = 40, 64
    q, s = ops.quantize_int8(weight(n, k))
    packed = ops.pack_linear_int8(q)
    x = torch.randn(2, 7, k)
    y = ops.linear_int8_packed(x, packed, s, n)
    assert y.shape == (2, 7, n)
    for i in range(7):
        assert torch.equal(ops.linear_int8_packed(x[:, i].contiguous(), packed, s, n), y[:, i])


def test_int8_error_bound_against_float():
    """|x W^T - x Wq^T| <= sum_j |x_j| * scale / 2 per output: the only error is the rounding."""
    n, k = 96, 200
    w = weight(n, k)
    x = torch.randn(5, k)
    q, s = ops.quantize_int8(w)
    y = ops.linear_int8_packed(x, ops.pack_linear_int8(q), s, n)
    exact = (x.double() @ w.double().T)
    bound = x.double().abs().sum(1, keepdim=True) * s.double()[None] / 2 + 1e-4
    assert ((y.double() - exact).abs() <= bound).all()
    # and it is a real approximation, not a copy of the float result
    assert not torch.equal(y, x @ w.T)


def test_int8_opcheck():
    q, s = ops.quantize_int8(weight(20, 24))
    packed = ops.pack_linear_int8(q)
    torch.library.opcheck(torch.ops.eet_like.quantize_int8.default, (weight(20, 24),))
    torch.library.opcheck(torch.ops.eet_like.pack_linear_int8.default, (q,))
    torch.library.opcheck(torch.ops.eet_like.linear_int8_packed.default,
                          (torch.randn(3, 24), packed, s, 20, torch.randn(20), "gelu_new"))


def test_int8_bad_inputs():
    w = weight(20, 24)
    q, s = ops.quantize_int8(w)
    packed = ops.pack_linear_int8(q)
    x = torch.randn(3, 24)
    with pytest.raises(ValueError, match=r"weight must be \[N, K\]"):
        ops.quantize_int8(torch.randn(3))
    with pytest.raises(TypeError, match="weight must be float32 on CPU"):
        ops.quantize_int8(w.double())
    with pytest.raises(TypeError, match="qweight must be int8"):
        ops.pack_linear_int8(w)
    with pytest.raises(TypeError, match="packed must be int8"):
        ops.linear_int8_packed(x, ops.pack_linear(w), s, 20)
    with pytest.raises(ValueError, match=r"packed must be \[ceil\(out_features / 16\), K, 16\]"):
        ops.linear_int8_packed(torch.randn(3, 25), packed, s, 20)
    with pytest.raises(ValueError, match=r"packed must be \[ceil\(out_features / 16\), K, 16\]"):
        ops.linear_int8_packed(x, packed, s, 40)
    with pytest.raises(ValueError, match=r"scales must be \[out_features\]"):
        ops.linear_int8_packed(x, packed, s[:10], 20)
    with pytest.raises(ValueError, match=r"bias must be \[out_features\]"):
        ops.linear_int8_packed(x, packed, s, 20, torch.randn(7))
    with pytest.raises(ValueError, match="activation must be one of"):
        ops.linear_int8_packed(x, packed, s, 20, None, "swish")
    with pytest.raises(TypeError, match="out_features must be an int"):
        ops.linear_int8_packed(x, packed, s, 20.0)
    with pytest.raises(ValueError, match="x must be contiguous"):
        ops.linear_int8_packed(torch.randn(24, 3).t(), packed, s, 20)


@pytest.mark.skipif(not cuda_ready(), reason="no CUDA device or eet_like built without CUDA kernels")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_quantize_int8_cuda_matches_cpu(dtype):
    w = weight(37, 50).to(dtype)
    q, s = ops.quantize_int8(w.cuda())
    rq, rs = reference.quantize_int8(w)
    assert torch.equal(q.cpu(), rq) and torch.equal(s.cpu(), rs)
