"""The CUDA int8 ops (skipped without a GPU; run on CPU tensors, marked `emulated`, in the CUDA
emulation build): quantize_int8 bit-identical to the CPU op / reference for float32 weights (and
to the reference for float16/bfloat16 weights), linear_int8's weight-only kernels (the GEMV of
<= 16 rows and the dequantize + GEMM path above) against reference.linear_int8_weight_only in
float32/float16/bfloat16 over odd sizes, misaligned views, every activation, with and without
bias; opcheck; bad inputs."""
import pytest
import torch

from eet_like import ops, reference
from conftest import EMULATED

ACTS = ["identity", "relu", "gelu", "gelu_new"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
ids = lambda dt: str(dt).split(".")[-1]  # noqa: E731

# (atol, rtol) against the float32 reference on outputs of size ~1. float32: the summation
# order (warp tree in the GEMV, the BLAS on the prompt path). float16/bfloat16: the rounding of
# the output and, on the prompt path, of the dequantized weight to x's dtype before the GEMM.
TOL = {torch.float32: (1e-4, 1e-4), torch.float16: (4e-3, 4e-3), torch.bfloat16: (3e-2, 3e-2)}


@pytest.fixture
def dev(device):
    """The device of the CUDA kernels: cuda, or cpu in the emulation build (the "cpu" case of
    the `device` fixture is skipped: test_int8_ops.py covers the CPU kernels)."""
    if device == "cpu" and not EMULATED:
        pytest.skip("the CPU int8 ops are tested in test_int8_ops.py")
    return device


def weight(n, k, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * torch.rand(n, 1, generator=g) * 3  # rows of varied range
    w[n // 2] = 0.0                                                     # an all-zero row
    return w.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("n,k", [(1, 1), (37, 50), (64, 768), (50, 129), (3, 1000)])
def test_quantize_int8_cuda_bit_identical(dev, dtype, n, k):
    w = weight(n, k, dtype=dtype)
    q, s = ops.quantize_int8(w.to(dev))
    assert q.dtype == torch.int8 and s.dtype == torch.float32
    assert q.device.type == s.device.type == torch.device(dev).type
    rq, rs = reference.quantize_int8(w)
    assert torch.equal(q.cpu(), rq) and torch.equal(s.cpu(), rs)
    if dtype == torch.float32 and not EMULATED:
        cq, cs = ops.quantize_int8(w)   # the CPU kernel
        assert torch.equal(q.cpu(), cq) and torch.equal(s.cpu(), cs)
    assert torch.equal(q[n // 2].cpu(), torch.zeros(k, dtype=torch.int8)) and float(s[n // 2]) == 0.0


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_quantize_int8_rejects_non_finite_weights(device, dtype, bad):
    """CPU, CUDA (and the emulation build): the same ValueError naming the first bad weight."""
    if device == "cpu" and dtype != torch.float32 and not EMULATED:
        pytest.skip("the CPU op takes float32 weights")
    w = weight(5, 7, dtype=dtype)
    w[3, 2] = bad
    w[4, 0] = bad
    with pytest.raises(ValueError, match=r"weight must be finite to quantize: weight\[3, 2\]"):
        ops.quantize_int8(w.to(device))


def test_quantize_int8_cuda_rounds_half_to_even(dev):
    """w / scale landing on x.5 exactly: round half to even, like torch.round and the CPU op."""
    w = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5]])   # scale = 1
    q, s = ops.quantize_int8(w.to(dev))
    assert float(s[0]) == 1.0
    assert q.cpu().tolist() == [[127, 0, 2, 2, 0, -2, -2, 126]]


def _case(rows, n, k, dtype, with_bias, seed, misalign_x=False, misalign_q=False):
    g = torch.Generator().manual_seed(seed)
    if misalign_x:   # a contiguous view one element past a 16-byte boundary
        x = torch.randn(rows * k + 1, generator=g).to(dtype)[1:].view(rows, k)
    else:
        x = torch.randn(rows, k, generator=g).to(dtype)
    w = torch.randn(n, k, generator=g) / k ** 0.5
    q, s = ops.quantize_int8(w)
    if misalign_q:   # the scalar weight path
        q = torch.empty(n * k + 1, dtype=torch.int8)[1:].view(n, k).copy_(q)
    bias = (torch.randn(n, generator=g) * 0.5).to(dtype) if with_bias else None
    return x, q, s, bias


def _run(dev, x, q, s, bias, act):
    to = (lambda t: None if t is None else t.to(dev)) if dev == "cuda" else (lambda t: t)
    y = ops.linear_int8(to(x), to(q), to(s), to(bias), act)
    assert y.dtype == x.dtype and y.shape == (*x.shape[:-1], q.shape[0])
    return y.cpu()


def _check(y, x, q, s, bias, act):
    ref = reference.linear_int8_weight_only(x.float(), q, s, None if bias is None else bias.float(), act)
    atol, rtol = TOL[x.dtype]
    torch.testing.assert_close(y.float(), ref, atol=atol, rtol=rtol)


# rows <= 16: the GEMV (1, 2, 3-4, 5-8, 9-16 row tiles); 17 and 40: dequantize + GEMM.
# K % 16 == 0 (vector weight loads) and not (scalar), N odd.
@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("rows", [1, 2, 3, 7, 16, 17, 40])
@pytest.mark.parametrize("n,k", [(33, 64), (7, 769), (50, 48), (5, 1)])
@pytest.mark.parametrize("act", ACTS)
def test_linear_int8_cuda_matches_reference(dev, dtype, rows, n, k, act):
    with_bias = act != "relu"
    x, q, s, bias = _case(rows, n, k, dtype, with_bias, seed=rows * 7 + k)
    _check(_run(dev, x, q, s, bias, act), x, q, s, bias, act)


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("rows", [1, 5, 16, 20])
@pytest.mark.parametrize("what", ["x", "qweight"])
def test_linear_int8_cuda_misaligned_views(dev, dtype, rows, what):
    x, q, s, bias = _case(rows, 9, 96, dtype, True, seed=rows, misalign_x=what == "x", misalign_q=what == "qweight")
    _check(_run(dev, x, q, s, bias, "gelu_new"), x, q, s, bias, "gelu_new")


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_linear_int8_cuda_3d_and_vocab_sized(dev, dtype):
    """[B, S, K] input on both paths; an LM head of GPT-2's vocabulary size (N = 50257)."""
    x, q, s, bias = _case(6, 40, 80, dtype, True, seed=3)
    x3 = torch.randn(2, 3, 80).to(dtype)
    _check(_run(dev, x3, q, s, bias, "gelu"), x3, q, s, bias, "gelu")
    x3 = torch.randn(3, 9, 80).to(dtype)
    _check(_run(dev, x3, q, s, bias, "gelu"), x3, q, s, bias, "gelu")
    x, q, s, _ = _case(2, 50257, 64, dtype, False, seed=4)
    _check(_run(dev, x, q, s, None, "identity"), x, q, s, None, "identity")


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_linear_int8_cuda_rows_independent(dev, dtype):
    """A decode row's result is bitwise the same whatever the other rows (1..16 rows: the GEMV
    reads each row on its own, in the same order whatever the row tile)."""
    x, q, s, bias = _case(16, 21, 160, dtype, True, seed=5)
    to = (lambda t: t.to(dev)) if dev == "cuda" else (lambda t: t)
    y = ops.linear_int8(to(x), to(q), to(s), to(bias), "gelu").cpu()
    for rows in (1, 2, 3, 4, 5, 8, 9, 16):
        part = ops.linear_int8(to(x[16 - rows:].contiguous()), to(q), to(s), to(bias), "gelu").cpu()
        assert torch.equal(part, y[16 - rows:]), rows


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_int8_cuda_opcheck(dev, dtype):
    w = weight(20, 24, dtype=dtype).to(dev)
    torch.library.opcheck(torch.ops.eet_like.quantize_int8.default, (w,))
    q, s = ops.quantize_int8(w)
    for rows in (3, 40):
        torch.library.opcheck(torch.ops.eet_like.linear_int8.default,
                              (torch.randn(rows, 24).to(dtype).to(dev), q, s, torch.randn(20).to(dtype).to(dev),
                               "gelu_new"))


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_int8_cuda_bad_inputs(dev, dtype):
    w = weight(20, 24, dtype=dtype).to(dev)
    q, s = ops.quantize_int8(w)
    x = torch.randn(3, 24).to(dtype).to(dev)
    L = torch.ops.eet_like.linear_int8   # the C++ checks, past the Python wrapper's
    with pytest.raises(TypeError, match=r"scales must be float32 \(from quantize_int8\) whatever x's dtype, got"):
        L(x, q, s.to(torch.float16), None, "identity")
    with pytest.raises(TypeError, match="scales must be float32"):
        L(x, q, s.double(), None, "identity")
    with pytest.raises(ValueError, match=r"scales must be \[N\] \(from quantize_int8\), got \[10\]"):
        L(x, q, s[:10], None, "identity")
    with pytest.raises(ValueError, match=r"scales must be \[N\]"):
        L(x, q, s[None], None, "identity")
    with pytest.raises(TypeError, match="qweight must be int8"):
        L(x, w, s, None, "identity")
    with pytest.raises(TypeError, match="qweight must be int8"):
        ops.linear_int8(x, q.to(torch.int32), s)
    with pytest.raises(ValueError, match=r"qweight must be \[N, K\] \(2-D\)"):
        L(x, q[0], s, None, "identity")
    with pytest.raises(ValueError, match=r"qweight must be \[N, K\] with K = x.size\(-1\) = 25"):
        L(torch.randn(3, 25).to(dtype).to(dev), q, s, None, "identity")
    with pytest.raises(ValueError, match="qweight must be contiguous"):
        L(torch.randn(3, 12).to(dtype).to(dev), q[:, ::2], s, None, "identity")
    with pytest.raises(ValueError, match=r"bias must be \[N\]"):
        L(x, q, s, torch.randn(7).to(dtype).to(dev), "identity")
    other = torch.float32 if dtype != torch.float32 else torch.float16
    with pytest.raises(TypeError, match="bias must have the dtype of x"):
        L(x, q, s, torch.randn(20).to(other).to(dev), "identity")
    with pytest.raises(ValueError, match="activation must be one of"):
        L(x, q, s, None, "swish")
    with pytest.raises(TypeError, match="x must be float32, float16 or bfloat16"):
        L(x.double(), q, s, None, "identity")
    with pytest.raises(ValueError, match="x must be contiguous"):
        L(torch.randn(24, 3).to(dtype).to(dev).t(), q, s, None, "identity")
    with pytest.raises(ValueError, match=r"weight must be \[N, K\]"):
        ops.quantize_int8(torch.randn(3).to(dtype).to(dev))
    with pytest.raises(TypeError, match="weight must be float32, float16 or bfloat16"):
        ops.quantize_int8(w.double())
    with pytest.raises(ValueError, match="weight must be non-empty"):
        ops.quantize_int8(torch.empty(0, 4, dtype=dtype, device=dev))
