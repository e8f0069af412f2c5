"""int8 ops: quantize_int8 and linear_int8 (int8 weights, per-row int8 activations, exact int32
sums) against eet_like.reference (exact quantization, fp32 tolerance after the epilogue), the
exactness of the integer part and of a row whatever the batch, the error bound against float,
opcheck and bad inputs. The CUDA kernels (weight-only): test_int8_cuda_ops.py."""
import os

import pytest
import torch

from eet_like import ops, reference
from conftest import EMULATED

# In the CUDA emulation build CPU tensors run the CUDA (weight-only) int8 kernels instead.
pytestmark = pytest.mark.skipif(EMULATED, reason="the CUDA emulation build runs the CUDA int8 kernels for CPU "
                                "tensors: test_int8_cuda_ops.py")

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


# Row blocks of the few-row kernel (4/3/2/1 rows; the first row block of a weight block sums its
# weights, the later ones reuse the sums; 4/1 weight rows; K tails of 64 and 16, and none), the
# many-row paths (at::_int_mm from 12 rows with VNNI, the AVX2 panel GEMM from 16), and odd
# GPT-2-like sizes.
CASES = [(rows, n, k, bias) for rows in (1, 2, 3, 4, 5, 7, 9, 11, 12, 31, 32, 45)
         for n, k, bias in ((50, 33, True), (7, 769, False))]
CASES += [(rows, 2304, 768, True) for rows in (1, 8, 11, 64)]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("rows,n,k,with_bias", CASES)
def test_linear_int8_matches_reference(rows, act, n, k, with_bias):
    g = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, k, generator=g)
    x[rows // 2] *= 40                                      # rows of very different range
    q, s = ops.quantize_int8(weight(n, k, seed=rows))
    bias = torch.randn(n, generator=g) if with_bias else None
    y = ops.linear_int8(x, q, s, bias, act)
    ref = reference.linear_int8(x, q, s, bias, act)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_linear_int8_integer_part_exact():
    """identity, no bias: y / (sx * scales) is the exact integer sum (checked on values where
    float32 holds it exactly), for both kernels (3 rows: eet_like's; 40: at::_int_mm or the
    AVX2 panel GEMM)."""
    n, k = 21, 769
    q, s = ops.quantize_int8(weight(n, k))
    ones = torch.ones(n)
    a = ops.int8_activation_max()
    for rows in (3, 40):
        x = torch.randint(-a, a + 1, (rows, k)).float()
        x[:, 0] = float(a)                                  # sx = 1 exactly
        y = ops.linear_int8(x, q, ones)
        assert torch.equal(y.double(), x.double() @ q.double().T)


@pytest.fixture(scope="module")
def vocab_weight():
    return ops.quantize_int8(torch.randn(50257, 769, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("rows", [1, 7, 300])
def test_linear_int8_vocab_sized(rows, vocab_weight):
    """An LM head of GPT-2's vocabulary (N = 50257) on K = 769."""
    q, s = vocab_weight
    x = torch.randn(rows, 769, generator=torch.Generator().manual_seed(rows))
    torch.testing.assert_close(ops.linear_int8(x, q, s), reference.linear_int8(x, q, s), atol=1e-5, rtol=1e-5)


def test_linear_int8_rows_independent():
    """[B, S, K] input; a row's result is bitwise the same whatever the other rows are and
    whichever kernel ran (1..300 rows cross the few-row kernel / at::_int_mm boundary)."""
    for n, k in ((40, 129), (40, 128)):  # K % 64 == 0: the AMX kernel from 4 to 128 rows
        q, s = ops.quantize_int8(weight(n, k))
        b = torch.randn(n)
        x = torch.randn(3, 100, k)
        y = ops.linear_int8(x, q, s, b, "gelu")
        assert y.shape == (3, 100, n)
        flat = x.view(-1, k)
        for rows in (1, 2, 3, 4, 5, 7, 8, 9, 33, 128, 129, 300):
            for start in (0, 300 - rows):
                part = ops.linear_int8(flat[start:start + rows].contiguous(), q, s, b, "gelu")
                assert torch.equal(part, y.view(-1, n)[start:start + rows]), (n, k, rows, start)


def test_linear_int8_error_bound_against_float():
    """Against the float product: the error is the rounding of x and of W (half a step each),
    |err| <= sum_j (|x_j| sw/2 + |w_j| sx/2 + sx sw/4) per output."""
    n, k = 96, 200
    w = weight(n, k)
    x = torch.randn(5, k)
    q, s = ops.quantize_int8(w)
    y = ops.linear_int8(x, q, s)
    exact = x.double() @ w.double().T
    sx = x.abs().amax(1, keepdim=True).double() / ops.int8_activation_max()
    sw = s.double()[None]
    bound = (x.double().abs().sum(1, keepdim=True) * sw / 2 + sx * (w.double().abs().sum(1)[None] / 2)
             + k * sx * sw / 4 + 1e-4)
    assert ((y.double() - exact).abs() <= bound).all()
    assert not torch.equal(y, x @ w.T)
    assert ops.int8_gemm_isa() in ("avx512_vnni", "avx2")


def test_int8_activation_range_follows_the_isa():
    """7-bit activations exactly where the AVX2 kernels run; the quantized rows use that range."""
    a = ops.int8_activation_max()
    assert a == (127 if ops.int8_gemm_isa() == "avx512_vnni" else 63)
    x = torch.randn(4, 300, generator=torch.Generator().manual_seed(2))
    xq, sx = reference.quantize_int8(x, a)
    assert int(xq.abs().amax()) == a and torch.equal(sx, x.abs().amax(1) / a)
    q, s = ops.quantize_int8(weight(9, 300))
    # The op's result is the reference's at this range, and not the other range's.
    other = 63 if a == 127 else 127
    y = ops.linear_int8(x, q, s)
    torch.testing.assert_close(y, reference.linear_int8(x, q, s, activation_max=a), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(y, reference.linear_int8(x, q, s, activation_max=other), atol=1e-5, rtol=1e-5)


def test_int8_opcheck():
    q, s = ops.quantize_int8(weight(20, 24))
    torch.library.opcheck(torch.ops.eet_like.quantize_int8.default, (weight(20, 24),))
    for rows in (3, 40):
        torch.library.opcheck(torch.ops.eet_like.linear_int8.default,
                              (torch.randn(rows, 24), q, s, torch.randn(20), "gelu_new"))


def test_int8_bad_inputs():
    w = weight(20, 24)
    q, s = ops.quantize_int8(w)
    x = torch.randn(3, 24)
    with pytest.raises(ValueError, match=r"weight must be \[N, K\]"):
        ops.quantize_int8(torch.randn(3))
    with pytest.raises(TypeError, match="weight must be float32 on CPU"):
        ops.quantize_int8(w.double())
    with pytest.raises(TypeError, match="qweight must be int8"):
        ops.linear_int8(x, w, s)
    with pytest.raises(ValueError, match=r"qweight must be \[N, K\]"):
        ops.linear_int8(x, q[0], s)
    with pytest.raises(ValueError, match=r"qweight must be \[N, K\] with K = x.size\(-1\) = 25"):
        ops.linear_int8(torch.randn(3, 25), q, s)
    with pytest.raises(ValueError, match="qweight must be contiguous"):
        ops.linear_int8(torch.randn(3, 12), q[:, ::2], s)
    with pytest.raises(ValueError, match=r"scales must be \[N\]"):
        ops.linear_int8(x, q, s[:10])
    with pytest.raises(TypeError, match="scales must have the dtype of x"):
        ops.linear_int8(x, q, s.double())
    with pytest.raises(ValueError, match=r"bias must be \[N\]"):
        ops.linear_int8(x, q, s, torch.randn(7))
    with pytest.raises(ValueError, match="activation must be one of"):
        ops.linear_int8(x, q, s, None, "swish")
    with pytest.raises(TypeError, match="x must be float32 on CPU"):
        ops.linear_int8(x.double(), q, s)
    with pytest.raises(ValueError, match="x must be contiguous"):
        ops.linear_int8(torch.randn(24, 3).t(), q, s)
    with pytest.raises(TypeError, match="scales must be a torch.Tensor"):
        ops.linear_int8(x, q, None)



# The AMX kernel (4..128 rows, K % 64 == 0, where the CPU has AMX-INT8): its row blocks of 16 and
# 32 with row tails, its weight-row pairs with a 16-row and a partial (N % 16) tail, K steps of 64.
AMX_CASES = [(rows, n, k) for rows in (4, 5, 15, 16, 17, 31, 32, 33, 64, 100, 128, 129)
             for n, k in ((50, 64), (16, 128), (7, 192), (33, 640))] + [(rows, 2304, 768) for rows in (4, 40, 128)]


@pytest.mark.parametrize("rows,n,k", AMX_CASES)
def test_linear_int8_amx_shapes_match_reference(rows, n, k):
    g = torch.Generator().manual_seed(rows * 7 + n)
    x = torch.randn(rows, k, generator=g)
    x[rows // 3] *= 50
    q, s = ops.quantize_int8(weight(n, k, seed=n))
    bias = torch.randn(n, generator=g)
    torch.testing.assert_close(ops.linear_int8(x, q, s, bias, "gelu_new"),
                               reference.linear_int8(x, q, s, bias, "gelu_new"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rows", [4, 17, 100])
def test_linear_int8_amx_integer_part_exact(rows):
    n, k = 37, 192
    q, s = ops.quantize_int8(weight(n, k))
    a = ops.int8_activation_max()
    x = torch.randint(-a, a + 1, (rows, k)).float()
    x[:, 0] = float(a)                                      # sx = 1 exactly
    y = ops.linear_int8(x, q, torch.ones(n))
    assert torch.equal(y.double(), x.double() @ q.double().T)


def linear_int8_in_second_interpreter(tmp_path, env, check, q, s, b, xs):
    """ops.linear_int8(x, q, s, b, 'gelu') for every x of xs in a second interpreter with `env`
    added to the environment (the kernel switches are read once per process), after it asserts
    `check` (a Python expression over ops)."""
    import subprocess
    import sys
    torch.save((q, s, b, xs), tmp_path / "in.pt")
    code = ("import torch, sys\nfrom eet_like import ops\n"
            "q, s, b, xs = torch.load(sys.argv[1])\n"
            f"assert {check}\n"
            "torch.save([ops.linear_int8(x, q, s, b, 'gelu') for x in xs], sys.argv[2])\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")], check=True,
                   env=dict(os.environ, **env))
    return torch.load(tmp_path / "out.pt")


def test_linear_int8_same_bits_without_amx(tmp_path):
    """EET_LIKE_NO_AMX (read once per process, so in a second interpreter) sends 4..128 rows to
    the VNNI/AVX2 kernel or at::_int_mm: the same integers, so the same bits."""
    g = torch.Generator().manual_seed(5)
    q, s = ops.quantize_int8(weight(70, 256))
    b = torch.randn(70, generator=g)
    xs = [torch.randn(rows, 256, generator=g) for rows in (4, 9, 16, 33, 128)]
    other = linear_int8_in_second_interpreter(tmp_path, {"EET_LIKE_NO_AMX": "1"}, "not ops.int8_gemm_amx()",
                                              q, s, b, xs)
    for x, y in zip(xs, other):
        assert torch.equal(ops.linear_int8(x, q, s, b, "gelu"), y)


# The AVX2 panel GEMM (from 16 rows without VNNI; on a VNNI machine these run the other kernels and
# test_linear_int8_same_bits_with_avx2 runs them here): 6-row blocks with 1..5-row tails, 16-column
# panels with a partial one, K not a multiple of 4 (the last k quad zero-padded: 33, 1, 1031),
# and K over 1024 (1031: the 256-quad passes accumulate).
PANEL_CASES = [(rows, n, k) for rows in (16, 17, 18, 19, 20, 21, 47, 130)
               for n, k in ((50, 33), (16, 64), (7, 1), (33, 1031))] + [(rows, 3072, 768) for rows in (16, 64)]


@pytest.mark.parametrize("rows,n,k", PANEL_CASES)
def test_linear_int8_many_rows_match_reference(rows, n, k):
    g = torch.Generator().manual_seed(rows * 11 + n)
    x = torch.randn(rows, k, generator=g)
    x[rows // 4] *= 30
    q, s = ops.quantize_int8(weight(n, k, seed=n + k))
    bias = torch.randn(n, generator=g)
    torch.testing.assert_close(ops.linear_int8(x, q, s, bias, "gelu"), reference.linear_int8(x, q, s, bias, "gelu"),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rows,k", [(16, 1031), (23, 1100), (40, 64)])
def test_linear_int8_many_rows_integer_part_exact(rows, k):
    n = 35
    q, s = ops.quantize_int8(weight(n, k))
    a = ops.int8_activation_max()
    x = torch.randint(-a, a + 1, (rows, k)).float()
    x[:, 0] = float(a)                                      # sx = 1 exactly
    x[1] = float(a)                                         # the largest sums (AVX2: every
    x[2, 1:] = float(-a)                                    # vpmaddubsw pair at +-2 * 127 * 127)
    q[2] = 127
    q[3] = -127
    y = ops.linear_int8(x, q, torch.ones(n))
    assert torch.equal(y.double(), x.double() @ q.double().T)


def test_linear_int8_same_bits_with_avx2(tmp_path):
    """EET_LIKE_NO_AVX512 + EET_LIKE_NO_AMX (in a second interpreter) run linear_int8 on the AVX2
    kernels alone (dot product below 16 rows, the panel GEMM from 16) with 7-bit activations:
    the reference at activation_max 63 there, and this process's bits where this CPU has no
    VNNI either (where it has, the VNNI/AMX/oneDNN kernels run 8-bit activations: other bits)."""
    g = torch.Generator().manual_seed(9)
    q, s = ops.quantize_int8(weight(70, 1030))
    b = torch.randn(70, generator=g)
    xs = [torch.randn(rows, 1030, generator=g) for rows in (1, 5, 15, 16, 17, 64, 131)]
    other = linear_int8_in_second_interpreter(
        tmp_path, {"EET_LIKE_NO_AVX512": "1", "EET_LIKE_NO_AMX": "1"},
        "ops.int8_gemm_isa() == 'avx2' and not ops.int8_gemm_amx() and ops.int8_activation_max() == 63",
        q, s, b, xs)
    for x, y in zip(xs, other):
        torch.testing.assert_close(y, reference.linear_int8(x, q, s, b, "gelu", activation_max=63),
                                   atol=1e-5, rtol=1e-5)
        if ops.int8_activation_max() == 63:
            assert torch.equal(ops.linear_int8(x, q, s, b, "gelu"), y)
    # The rows of the AVX2 kernels are independent of each other too (1 + 15 and 16 + 1 rows).
    rows = torch.cat([xs[0], xs[2]]), torch.cat([xs[3], xs[0]])
    both = linear_int8_in_second_interpreter(tmp_path, {"EET_LIKE_NO_AVX512": "1", "EET_LIKE_NO_AMX": "1"},
                                             "ops.int8_activation_max() == 63", q, s, b, list(rows))
    assert torch.equal(both[0], torch.cat([other[0], other[2]]))
    assert torch.equal(both[1], torch.cat([other[3], other[0]]))


# pack_int8: the AVX2 panel GEMM's weight layout (16 output columns per panel, K in quads, the
# column sums last), read in place by linear_int8 for every row count, 7-bit activations.
PACK_SHAPES = [(1, 1), (16, 4), (17, 5), (50, 33), (7, 769), (70, 1030), (2304, 768)]


@pytest.mark.parametrize("n,k", PACK_SHAPES)
def test_pack_int8_matches_reference(n, k):
    q, _ = ops.quantize_int8(weight(n, k))
    p = ops.pack_int8(q)
    assert p.dtype == torch.int8 and p.shape == ((n + 15) // 16, (k + 3) // 4 + 1, 16, 4)
    assert torch.equal(p, reference.pack_int8(q))
    assert torch.equal(reference.unpack_int8(p, n)[:, :k], q)
    # The last quad row of a panel holds its 16 int32 column sums.
    sums = p[:, -1].contiguous().view(torch.int32).reshape(-1)[:n]
    assert torch.equal(sums, q.sum(1, dtype=torch.int32))


@pytest.mark.parametrize("act", ["identity", "gelu"])
@pytest.mark.parametrize("rows", [1, 2, 5, 6, 7, 12, 16, 17, 64, 131])
@pytest.mark.parametrize("n,k", [(50, 33), (7, 769), (70, 1030), (2304, 768)])
def test_linear_int8_packed_matches_reference(rows, n, k, act):
    """Every row-block shape (6-row blocks and 1-5 row tails), N and K tails, passes of 256
    quads (K = 1030): the reference at 7-bit activations, and on an AVX2-only CPU the bits of
    the [N, K] weight (the same panel kernel from 16 rows, the dot-product kernel below)."""
    g = torch.Generator().manual_seed(rows * 7 + n)
    x = torch.randn(rows, k, generator=g)
    x[rows // 2] *= 40
    q, s = ops.quantize_int8(weight(n, k, seed=rows))
    bias = torch.randn(n, generator=g)
    y = ops.linear_int8(x, ops.pack_int8(q), s, bias, act)
    assert y.shape == (rows, n)
    torch.testing.assert_close(y, reference.linear_int8(x, q, s, bias, act, activation_max=63),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y, reference.linear_int8(x, ops.pack_int8(q), s, bias, act), atol=1e-5, rtol=1e-5)
    if ops.int8_activation_max() == 63:
        assert torch.equal(y, ops.linear_int8(x, q, s, bias, act))


def test_linear_int8_packed_integer_part_exact():
    """The integer sums at the saturation edge of vpmaddubsw pairs (xq = +-63 offset to 127 / 1,
    weights +-127) and with random values are exact, for 1 to 40 rows, rows independent."""
    n, k = 37, 1030
    g = torch.Generator().manual_seed(4)
    q = torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)
    q[0] = 127
    q[1] = -127
    p = ops.pack_int8(q)
    ones = torch.ones(n)
    x = torch.randint(-63, 64, (40, k), generator=g).float()
    x[:, 0] = 63.0                                           # sx = 1 exactly
    x[1] = 63.0
    x[2, 1:] = -63.0
    full = ops.linear_int8(x, p, ones)
    assert torch.equal(full.double(), x.double() @ q.double().T)
    for rows in (1, 3, 6, 11, 17):
        assert torch.equal(ops.linear_int8(x[5:5 + rows].contiguous(), p, ones), full[5:5 + rows])


def test_pack_int8_opcheck():
    q, s = ops.quantize_int8(weight(20, 24))
    torch.library.opcheck(torch.ops.eet_like.pack_int8.default, (q,))
    p = ops.pack_int8(q)
    for rows in (3, 40):
        torch.library.opcheck(torch.ops.eet_like.linear_int8.default,
                              (torch.randn(rows, 24), p, s, torch.randn(20), "gelu"))


def test_pack_int8_bad_inputs():
    q, s = ops.quantize_int8(weight(20, 24))
    p = ops.pack_int8(q)
    x = torch.randn(3, 24)
    with pytest.raises(TypeError, match="qweight must be int8"):
        ops.pack_int8(q.float())
    with pytest.raises(ValueError, match=r"qweight must be \[N, K\]"):
        ops.pack_int8(q[0])
    with pytest.raises(ValueError, match="qweight must be non-empty"):
        ops.pack_int8(q[:0])
    with pytest.raises(TypeError, match="qweight must be a torch.Tensor"):
        ops.pack_int8(None)
    # linear_int8 with packed panels: N comes from scales, K from x.
    with pytest.raises(ValueError, match=r"qweight must be \[ceil\(N / 16\), ceil\(K / 4\) \+ 1, 16, 4\]"):
        ops.linear_int8(torch.randn(3, 40), p, s)
    with pytest.raises(ValueError, match=r"qweight must be \[ceil\(N / 16\)"):
        ops.linear_int8(x, p, torch.ones(40))
    with pytest.raises(ValueError, match=r"scales must be \[N\]"):
        ops.linear_int8(x, p, s[None])
    with pytest.raises(ValueError, match=r"bias must be \[N\]"):
        ops.linear_int8(x, p, s, torch.randn(7))
    with pytest.raises(ValueError, match="qweight must be contiguous"):
        ops.linear_int8(x, torch.cat([p, p], 3)[..., ::2], s)
    with pytest.raises(ValueError, match=r"qweight must be \[N, K\] \(2-D\) or pack_int8's panels"):
        torch.ops.eet_like.linear_int8(x, p[0], s, None, "identity")
    with pytest.raises(ValueError, match=r"qweight must be \[N, K\] \(or pack_int8"):
        ops.linear_int8(x, p[0], s)


def test_int8_weight_packs_where_it_applies(monkeypatch):
    """Int8Weight.quantize(pack=True) keeps pack_int8 panels on AVX2-only CPUs (the same results
    as the [N, K] weight there) and [N, K] elsewhere or with EET_LIKE_INT8_PACK=0; packed rows
    dequantize like the [N, K] ones (GPT-2's tied word matrix)."""
    from eet_like.layers import Int8Weight
    w = weight(50, 33)
    plain = Int8Weight.quantize(w)
    packed = Int8Weight.quantize(w, pack=True)
    assert not plain.packed and packed.shape == plain.shape == (50, 33)
    assert packed.packed == (ops.int8_activation_max() == 63)
    idx = torch.tensor([[0, 17], [49, 25]])
    assert torch.equal(packed.rows(idx), plain.rows(idx))
    x = torch.randn(4, 33)
    assert torch.equal(packed.linear(x, None), plain.linear(x, None))
    monkeypatch.setenv("EET_LIKE_INT8_PACK", "0")
    assert not Int8Weight.quantize(w, pack=True).packed
    monkeypatch.setenv("EET_LIKE_INT8_PACK", "yes")
    with pytest.raises(ValueError, match="EET_LIKE_INT8_PACK must be 0 or 1"):
        Int8Weight.quantize(w, pack=True)
    forced = Int8Weight(ops.pack_int8(plain.q), plain.scales, 33)   # packed on any CPU
    assert torch.equal(forced.rows(idx), plain.rows(idx))
    torch.testing.assert_close(forced.linear(x, None),
                               reference.linear_int8(x, plain.q, plain.scales, activation_max=63),
                               atol=1e-5, rtol=1e-5)
