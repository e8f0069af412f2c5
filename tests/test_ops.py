"""Every eet_like op against its plain-torch reference (eet_like.reference), over odd shapes,
dtypes, devices and seeds; data movement (cache writes) must match exactly; opcheck on each
registered op. Bad-input tests live in test_ops_errors.py."""
import os
import subprocess
import sys

import pytest
import torch

from eet_like import ops
from eet_like import reference as R

from conftest import TOL, TOL_LOOSE, cuda_ready


def rand(*shape, dtype=torch.float32, device="cpu", scale=1.0, gen=None):
    return (torch.randn(*shape, generator=gen) * scale).to(dtype=dtype, device=device)


def check_close(out, ref32, ref_low, dtype, loose=False):
    """fp32: allclose to the fp32 reference. fp16/bf16: error against the fp32 reference at
    most 2x the error of plain torch run in the same dtype (ref_low), + a small slack."""
    atol, rtol = (TOL_LOOSE if loose else TOL)[dtype]
    if dtype == torch.float32:
        torch.testing.assert_close(out.float().cpu(), ref32.float().cpu(), atol=atol, rtol=rtol)
        return
    err = (out.float().cpu() - ref32.float().cpu()).abs().max().item()
    base = (ref_low.float().cpu() - ref32.float().cpu()).abs().max().item()
    assert err <= 2 * base + atol, f"error {err:.3g} vs plain torch in {dtype}: {base:.3g}"


def check_vs_reference(out, ref_fn, inputs32, dtype, loose=False):
    """Runs ref_fn on the fp32 inputs and on the same inputs cast to dtype, then check_close."""
    ref32 = ref_fn(*inputs32)
    ref_low = None
    if dtype != torch.float32:
        ref_low = ref_fn(*[t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
                           for t in inputs32])
    check_close(out, ref32, ref_low, dtype, loose)


# ---------------------------------------------------------------- layernorm

@pytest.mark.parametrize("shape", [(1, 1), (3, 769), (2, 5, 768), (64, 1024), (4, 4096)])
@pytest.mark.parametrize("seed", [0, 1])
def test_layernorm(device_dtype, shape, seed):
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(seed)
    h = shape[-1]
    x, w, b = rand(*shape, gen=g, scale=3.0), rand(h, gen=g), rand(h, gen=g)
    x[..., 0] += 10.0  # an offset mean catches E[x^2]-E[x]^2 cancellation
    out = ops.layernorm(x.to(dev, dt), w.to(dev, dt), b.to(dev, dt), 1e-5)
    check_vs_reference(out, lambda x_, w_, b_: R.layernorm(x_, w_, b_, 1e-5), [x, w, b], dt, loose=True)


@pytest.mark.parametrize("scale,eps", [(1e-3, 1e-5), (3e-3, 1e-5), (1.0, 0.5)])
@pytest.mark.parametrize("fused", [False, True])
def test_layernorm_eps_matters(device_dtype, scale, eps, fused):
    """Rows whose variance (~scale^2) is at or below eps, and a large eps on unit-variance rows:
    there eps changes the result at first order, so a kernel that misuses it fails (with
    variance ~4-9 as above, eps only moves the output by ~1e-6)."""
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(int(scale * 1000) + int(eps * 10))
    x, r, rb = rand(4, 769, gen=g, scale=scale), rand(4, 769, gen=g, scale=scale), rand(769, gen=g, scale=scale)
    w, b = rand(769, gen=g), rand(769, gen=g)
    cast = (lambda t: None if t is None else t.to(dev, dt))
    if not fused:
        r = rb = None
    kw = dict(residual=cast(r), residual_bias=cast(rb)) if fused else {}
    out = ops.layernorm(cast(x), cast(w), cast(b), eps, **kw)
    y = out[0] if fused else out
    ref = R.layernorm(x, w, b, eps, residual=r, residual_bias=rb)
    low = R.layernorm(cast(x), cast(w), cast(b), eps, residual=cast(r), residual_bias=cast(rb))
    ref, low = (ref[0], low[0]) if fused else (ref, low)
    assert ref.abs().max() > 0.1  # the normalized values are not ~0: eps is visible at this scale
    check_close(y, ref, low, dt, loose=True)


@pytest.mark.parametrize("shape", [(1, 1), (3, 769), (2, 5, 768)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_add_layernorm(device_dtype, shape, with_bias):
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(3)
    h = shape[-1]
    x, r, w, b = rand(*shape, gen=g), rand(*shape, gen=g), rand(h, gen=g), rand(h, gen=g)
    rb = rand(h, gen=g) if with_bias else None
    cast = (lambda t: None if t is None else t.to(dev, dt))
    y, hs = ops.layernorm(cast(x), cast(w), cast(b), 1e-6, residual=cast(r), residual_bias=cast(rb))
    y_ref, h_ref = R.layernorm(x, w, b, 1e-6, residual=r, residual_bias=rb)
    y_low, h_low = R.layernorm(cast(x), cast(w), cast(b), 1e-6, residual=cast(r), residual_bias=cast(rb))
    check_close(y, y_ref, y_low, dt, loose=True)
    check_close(hs, h_ref, h_low, dt)


# ---------------------------------------------------------------- embedding

@pytest.mark.parametrize("with_types,with_ln", [(False, False), (True, True), (False, True)])
@pytest.mark.parametrize("id_dtype", [torch.int64, torch.int32])
def test_embedding(device_dtype, with_types, with_ln, id_dtype):
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(5)
    B, S, H, V, P, T = 3, 7, 769, 1003, 64, 3
    word, pos = rand(V, H, gen=g), rand(P, H, gen=g)
    types = rand(T, H, gen=g) if with_types else None
    ln_w, ln_b = (rand(H, gen=g), rand(H, gen=g)) if with_ln else (None, None)
    ids = torch.randint(0, V, (B, S), generator=g)
    # Left padding: row b has b pad tokens; its real tokens get positions 0, 1, ...
    mask = torch.ones(B, S, dtype=torch.long)
    for b in range(B):
        mask[b, :b] = 0
    pos_ids = (mask.cumsum(1) - 1).clamp(min=0)
    tt = torch.randint(0, T, (B, S), generator=g) if with_types else None
    cast = (lambda t: None if t is None else t.to(dev, dt))
    icast = (lambda t: None if t is None else t.to(dev, id_dtype))
    out = ops.embedding(icast(ids), cast(word), cast(pos), position_ids=icast(pos_ids),
                        token_type_ids=icast(tt), token_type_embeddings=cast(types),
                        ln_weight=cast(ln_w), ln_bias=cast(ln_b), eps=1e-12)
    assert out.shape == (B, S, H) and out.dtype == dt
    ref = R.embedding(ids, word, pos, pos_ids, tt, types, ln_w, ln_b, 1e-12)
    if not with_ln:
        # Pure gathers + adds: exact in fp32, rounding of the sum only in low precision.
        atol = 0 if dt == torch.float32 else TOL[dt][0] * 8
        torch.testing.assert_close(out.float().cpu(), ref, atol=atol, rtol=TOL[dt][1] if atol else 0)
    else:
        low = R.embedding(ids.to(dev), cast(word), cast(pos), pos_ids.to(dev),
                          None if tt is None else tt.to(dev), cast(types), cast(ln_w), cast(ln_b), 1e-12)
        check_close(out, ref, low, dt, loose=True)


def test_embedding_default_positions():
    g = torch.Generator().manual_seed(0)
    word, pos = rand(50, 16, gen=g), rand(10, 16, gen=g)
    ids = torch.randint(0, 50, (2, 6), generator=g)
    torch.testing.assert_close(ops.embedding(ids, word, pos), R.embedding(ids, word, pos), atol=0, rtol=0)


# ---------------------------------------------------------------- ffn

@pytest.mark.parametrize("activation", ["gelu", "gelu_new", "relu", "gelu_pytorch_tanh", "identity"])
@pytest.mark.parametrize("shape,inner", [((2, 7, 769), 1001), ((1, 64), 256), ((33, 128), 512)])
def test_ffn(device_dtype, activation, shape, inner):
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(7)
    h = shape[-1]
    x = rand(*shape, gen=g)
    w1, b1 = rand(inner, h, gen=g, scale=h ** -0.5), rand(inner, gen=g)
    w2, b2 = rand(h, inner, gen=g, scale=inner ** -0.5), rand(h, gen=g)
    cast = (lambda t: t.to(dev, dt))
    out = ops.ffn(cast(x), cast(w1), cast(b1), cast(w2), cast(b2), activation)
    check_vs_reference(out, lambda *a: R.ffn(*a, activation=activation), [x, w1, b1, w2, b2], dt, loose=True)


@pytest.mark.parametrize("with_b1,with_b2,with_res", [(True, True, True), (False, False, True), (True, False, False)])
def test_ffn_optional_parts(device_dtype, with_b1, with_b2, with_res):
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(8)
    x = rand(5, 96, gen=g)
    w1, b1 = rand(200, 96, gen=g, scale=0.1), rand(200, gen=g)
    w2, b2 = rand(96, 200, gen=g, scale=0.07), rand(96, gen=g)
    r = rand(5, 96, gen=g)
    b1, b2, r = (b1 if with_b1 else None), (b2 if with_b2 else None), (r if with_res else None)
    cast = (lambda t: None if t is None else t.to(dev, dt))
    out = ops.ffn(cast(x), cast(w1), cast(b1), cast(w2), cast(b2), "gelu", residual=cast(r))
    ref = lambda x_, w1_, w2_: R.ffn(x_, w1_, None if b1 is None else b1.to(x_.dtype).to(x_.device), w2_,
                                     None if b2 is None else b2.to(x_.dtype).to(x_.device), "gelu",
                                     None if r is None else r.to(x_.dtype).to(x_.device))
    check_vs_reference(out, ref, [x, w1, w2], dt, loose=True)


@pytest.fixture(params=["onednn", "eet"])
def cpu_gemm(request, monkeypatch):
    """Both CPU GEMM backends of ffn/linear (EET_LIKE_CPU_GEMM); CUDA ignores it."""
    if request.param == "onednn" and not (torch.backends.mkldnn.is_available()
                                          and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        pytest.skip("torch without oneDNN (mkldnn)")
    monkeypatch.setenv("EET_LIKE_CPU_GEMM", request.param)
    assert ops.cpu_gemm() == request.param
    return request.param


@pytest.mark.parametrize("activation", ["gelu", "gelu_new", "relu", "identity"])
def test_ffn_cpu_gemm_backends(cpu_gemm, activation):
    g = torch.Generator().manual_seed(17)
    x, r = rand(3, 5, 200, gen=g), rand(3, 5, 200, gen=g)
    w1, b1 = rand(333, 200, gen=g, scale=0.07), rand(333, gen=g)
    w2, b2 = rand(200, 333, gen=g, scale=0.05), rand(200, gen=g)
    torch.testing.assert_close(ops.ffn(x, w1, b1, w2, b2, activation, residual=r),
                               R.ffn(x, w1, b1, w2, b2, activation, r), atol=2e-5, rtol=1e-5)


# ---------------------------------------------------------------- linear

@pytest.mark.parametrize("activation", ["identity", "gelu", "gelu_new", "relu"])
@pytest.mark.parametrize("shape,out,bias", [((2, 7, 769), 1001, True), ((1, 64), 256, False), ((33, 80), 3, True)])
def test_linear(device_dtype, activation, shape, out, bias):
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(11)
    x, w = rand(*shape, gen=g), rand(out, shape[-1], gen=g, scale=shape[-1] ** -0.5)
    b = rand(out, gen=g) if bias else None
    cast = (lambda t: None if t is None else t.to(dev, dt))
    y = ops.linear(cast(x), cast(w), cast(b), activation)
    assert y.shape == (*shape[:-1], out)
    ref = lambda x_, w_: R.linear(x_, w_, None if b is None else b.to(x_.device, x_.dtype), activation)
    check_vs_reference(y, ref, [x, w], dt, loose=True)


@pytest.mark.parametrize("activation", ["identity", "gelu", "gelu_new", "relu"])
def test_linear_cpu_gemm_backends(cpu_gemm, activation):
    g = torch.Generator().manual_seed(12)
    x, w, b = rand(9, 300, gen=g), rand(77, 300, gen=g, scale=0.06), rand(77, gen=g)
    torch.testing.assert_close(ops.linear(x, w, b, activation), R.linear(x, w, b, activation),
                               atol=2e-5, rtol=1e-5)


# ---------------------------------------------------------------- packed linear (CPU)

@pytest.mark.parametrize("activation", ["identity", "gelu", "gelu_new", "relu"])
@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8, 13, 25, 300])
@pytest.mark.parametrize("n,k", [(48, 64), (1001, 769), (7, 5)])
def test_linear_packed(activation, rows, n, k):
    """Every row block (AVX2 6/4/3/2/1, AVX-512 12/8/4/3/2/1), column tails (n % 16), a lone
    last panel (48 = 3 panels), odd K, row chunks (300 rows)."""
    g = torch.Generator().manual_seed(rows * 1000 + n)
    x, w, b = rand(rows, k, gen=g), rand(n, k, gen=g, scale=k ** -0.5), rand(n, gen=g)
    packed = ops.pack_linear(w)
    torch.testing.assert_close(packed, R.pack_linear(w), atol=0, rtol=0)
    torch.testing.assert_close(ops.linear_packed(x, packed, n, b, activation), R.linear(x, w, b, activation),
                               atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(ops.linear_packed(x, packed, n), R.linear(x, w), atol=2e-5, rtol=1e-5)


def _packed_outputs():
    """linear_packed over shapes that visit every row block and column tail, each activation."""
    g = torch.Generator().manual_seed(11)
    out = []
    for rows, n, k in [(1, 1001, 769), (7, 48, 64), (13, 1001, 769), (25, 33, 40), (64, 2304, 768)]:
        x, w, b = rand(rows, k, gen=g), rand(n, k, gen=g, scale=k ** -0.5), rand(n, gen=g)
        packed = ops.pack_linear(w)
        for act in ("identity", "gelu", "gelu_new", "relu"):
            out.append(ops.linear_packed(x, packed, n, b, act))
    return out


def _same_bits_as_avx2(outputs_fn, tmp_path):
    """outputs_fn() (a function of this module) here equals its result in a second interpreter
    with EET_LIKE_NO_AVX512=1 (the AVX2 kernels), bit for bit."""
    if ops.packed_gemm_isa() != "avx512":
        pytest.skip("this CPU has no AVX-512F: only the AVX2 kernels run here")
    path = tmp_path / "avx2.pt"
    code = ("import sys, torch; sys.path.insert(0, sys.argv[2]); from eet_like import ops; import test_ops; "
            f"assert ops.packed_gemm_isa() == 'avx2'; torch.save(test_ops.{outputs_fn.__name__}(), sys.argv[1])")
    env = dict(os.environ, EET_LIKE_NO_AVX512="1")
    subprocess.run([sys.executable, "-c", code, str(path), os.path.dirname(os.path.abspath(__file__))],
                   env=env, check=True)
    for a, b in zip(outputs_fn(), torch.load(path), strict=True):
        assert torch.equal(a, b)


def test_linear_packed_isas_bit_identical(tmp_path):
    """The AVX-512 kernel gives the AVX2 kernel's bits: a row's result does not depend on the
    CPU's kernel, so generate() and the server's decode_rows agree whichever one runs."""
    _same_bits_as_avx2(_packed_outputs, tmp_path)


def _prompt_attention_outputs():
    """The prompt attention on head dims of every vector tail (64, 80: a 16-dim tail at AVX-512
    width, 40 and 24: an 8-dim one, 20: scalar), causal and not, padded rows, 4-9 queries."""
    g = torch.Generator().manual_seed(12)
    out = []
    for b, s, h, d in [(1, 8, 2, 64), (1, 128, 12, 64), (2, 37, 3, 80), (3, 21, 2, 40), (2, 9, 1, 24),
                       (2, 5, 2, 20), (1, 4, 1, 64)]:
        qkv = rand(b, s, 3 * h * d, gen=g)
        ks = torch.tensor([i % 3 for i in range(b)], dtype=torch.int32)
        out.append(ops.attention(qkv, h, True, key_start=ks))
        out.append(ops.attention(qkv, h, False))
    return out


def test_prompt_attention_isas_bit_identical(tmp_path):
    """The AVX-512 prompt attention (8 queries x 32 keys blocks) gives the AVX2 kernel's bits."""
    _same_bits_as_avx2(_prompt_attention_outputs, tmp_path)


def test_linear_packed_row_invariant():
    """A row's result is the same bits alone or in a batch of any size (every row block)."""
    g = torch.Generator().manual_seed(5)
    n, k = 1001, 769
    x, w, b = rand(40, k, gen=g), rand(n, k, gen=g, scale=k ** -0.5), rand(n, gen=g)
    packed = ops.pack_linear(w)
    alone = torch.cat([ops.linear_packed(x[i:i + 1], packed, n, b, "gelu_new") for i in range(40)])
    for m in (2, 5, 12, 17, 40):
        assert torch.equal(ops.linear_packed(x[:m], packed, n, b, "gelu_new"), alone[:m])


def test_linear_packed_batched_shape():
    g = torch.Generator().manual_seed(3)
    x, w = rand(2, 3, 40, gen=g), rand(33, 40, gen=g)
    y = ops.linear_packed(x, ops.pack_linear(w), 33)
    assert y.shape == (2, 3, 33)
    torch.testing.assert_close(y, R.linear(x, w), atol=2e-5, rtol=1e-5)


def test_cpu_gemm_env_errors(monkeypatch):
    monkeypatch.setenv("EET_LIKE_CPU_GEMM", "mkl")
    with pytest.raises(ValueError, match="EET_LIKE_CPU_GEMM must be 'onednn' or 'eet', got 'mkl'"):
        ops.linear(torch.randn(2, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match="EET_LIKE_CPU_GEMM"):
        ops.cpu_gemm()


# ---------------------------------------------------------------- attention (prompt pass)

ATTN_SHAPES = [  # B, S, H, D
    (2, 1, 2, 64),
    (3, 37, 4, 80),
    (2, 19, 3, 72),
    (2, 23, 2, 100),   # head_dim not a multiple of 8: CUDA fallback path
    (1, 9, 1, 264),    # head_dim > 256: CUDA fallback path
    (1, 1000, 2, 64),
    (2, 2, 2, 64),     # prompts of 2 and 3 tokens: the CPU few-query path (one dot product per
    (3, 3, 2, 40),     # key) and its causal limit, left padding starting rows at key 1 and 2
]


@pytest.mark.parametrize("B,S,H,D", ATTN_SHAPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padding", ["none", "left", "right"])
def test_attention(device_dtype, B, S, H, D, causal, padding):
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(B * 1000 + S)
    qkv = rand(B, S, 3 * H * D, gen=g)
    ks = ke = None
    if padding == "left":
        ks = torch.tensor([min(b * 3, S - 1) for b in range(B)], dtype=torch.int32)
    elif padding == "right":
        ke = torch.tensor([max(S - b * 5, 1) for b in range(B)], dtype=torch.int32)
    icast = (lambda t: None if t is None else t.to(dev))
    out = ops.attention(qkv.to(dev, dt), H, causal, key_start=icast(ks), key_end=icast(ke))
    assert out.shape == (B, S, H * D)
    check_vs_reference(out, lambda q_: R.attention(q_, H, causal, icast(ks), icast(ke)),
                       [qkv.to(dev)], dt, loose=True)


def test_attention_mask_matches_ranges(device):
    g = torch.Generator().manual_seed(0)
    B, S, H, D = 3, 11, 2, 32
    qkv = rand(B, S, 3 * H * D, gen=g).to(device)
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, :4] = 0    # left padded
    mask[2, 7:] = 0    # right padded
    out = ops.attention(qkv, H, True, attention_mask=mask.to(device))
    ks, ke = ops.mask_to_ranges(mask)
    assert ks.tolist() == [0, 4, 0] and ke.tolist() == [11, 11, 7]
    torch.testing.assert_close(out, R.attention(qkv, H, True, ks.to(device), ke.to(device)),
                               atol=1e-5, rtol=1e-5)


def test_attention_fully_padded_row_is_zero(device):
    qkv = torch.randn(2, 5, 3 * 2 * 16, device=device)
    out = ops.attention(qkv, 2, False, key_start=torch.tensor([0, 5], dtype=torch.int32, device=device))
    assert torch.count_nonzero(out[1]) == 0 and torch.count_nonzero(out[0]) > 0


@pytest.mark.parametrize("B,S,H,D", [(2, 13, 3, 80), (1, 6, 2, 100)])
def test_attention_writes_cache_exactly(device_dtype, B, S, H, D):
    dev, dt = device_dtype
    qkv = torch.randn(B, S, 3 * H * D).to(dev, dt)
    Bmax, Smax = B + 2, S + 9
    kc = torch.full((Bmax, H, Smax, D), float("nan"), dtype=dt, device=dev)
    vc = torch.full_like(kc, float("nan"))
    ops.attention(qkv, H, True, k_cache=kc, v_cache=vc)
    k = qkv.view(B, S, 3, H, D)[:, :, 1].transpose(1, 2)
    v = qkv.view(B, S, 3, H, D)[:, :, 2].transpose(1, 2)
    assert torch.equal(kc[:B, :, :S], k) and torch.equal(vc[:B, :, :S], v)
    assert torch.isnan(kc[B:]).all() and torch.isnan(kc[:, :, S:]).all()  # nothing else written
    assert torch.isnan(vc[B:]).all() and torch.isnan(vc[:, :, S:]).all()


# ---------------------------------------------------------------- masked_attention (decode step)

@pytest.mark.parametrize("H,D", [(2, 64), (3, 80), (2, 72), (1, 100), (1, 264), (4, 128)])
@pytest.mark.parametrize("Smax", [17, 1000])
def test_masked_attention(device_dtype, H, D, Smax):
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(H * D + Smax)
    B, Bmax = 3, 5
    kc = rand(Bmax, H, Smax, D, gen=g).to(dev, dt)
    vc = rand(Bmax, H, Smax, D, gen=g).to(dev, dt)
    qkv = rand(B, 3 * H * D, gen=g).to(dev, dt)
    positions = torch.tensor([Smax - 1, Smax // 2, 0], dtype=torch.int32, device=dev)
    key_start = torch.tensor([2, 0, 0], dtype=torch.int32, device=dev)
    kc_ref, vc_ref = kc.clone(), vc.clone()
    out = ops.masked_attention(qkv, kc, vc, positions, H, key_start=key_start)
    ref32 = R.masked_attention(qkv.float(), kc_ref.float(), vc_ref.float(), positions, H, key_start)
    R.masked_attention(qkv, kc_ref, vc_ref, positions, H, key_start)  # low-precision cache update
    assert torch.equal(kc, kc_ref) and torch.equal(vc, vc_ref)  # the write is exact, nothing else moved
    low = R.masked_attention(qkv, kc.clone(), vc.clone(), positions, H, key_start)
    check_close(out, ref32, low, dt, loose=True)


@pytest.mark.parametrize("D", [64, 80, 100])
def test_prefill_then_decode_equals_full_attention(device_dtype, D):
    """Joint decoding: a left-padded prompt pass that fills the cache, then decode steps at
    shared positions, gives the same rows as one causal pass over the whole sequence."""
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(D)
    B, S, steps, H = 3, 9, 5, 2
    total = S + steps
    qkv = rand(B, total, 3 * H * D, gen=g).to(dev, dt)
    pads = torch.tensor([0, 3, 8], dtype=torch.int32, device=dev)
    kc = torch.zeros(B, H, total + 3, D, dtype=dt, device=dev)
    vc = torch.zeros_like(kc)
    prefill = ops.attention(qkv[:, :S].contiguous(), H, True, key_start=pads, k_cache=kc, v_cache=vc)
    outs = [prefill]
    for t in range(steps):
        pos = torch.full((B,), S + t, dtype=torch.int32, device=dev)
        outs.append(ops.masked_attention(qkv[:, S + t].contiguous(), kc, vc, pos, H, key_start=pads)[:, None])
    joint = torch.cat(outs, dim=1)
    full = ops.attention(qkv, H, True, key_start=pads)
    atol, rtol = TOL_LOOSE[dt]
    torch.testing.assert_close(joint, full, atol=atol, rtol=rtol)


# ---------------------------------------------------------------- cross_attention

@pytest.mark.parametrize("B,Sq,Sk,H,D", [(2, 1, 7, 2, 64), (3, 5, 40, 4, 80), (2, 3, 11, 1, 100)])
@pytest.mark.parametrize("padding", ["none", "left", "right"])
def test_cross_attention(device_dtype, B, Sq, Sk, H, D, padding):
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(Sk)
    q = rand(B, Sq, H * D, gen=g).to(dev)
    kv = rand(B, Sk, 2 * H * D, gen=g).to(dev)   # fused K/V projection: strided halves
    k, v = kv[..., : H * D], kv[..., H * D:]
    mask = None
    if padding != "none":
        mask = torch.zeros(B, Sk, dtype=torch.bool)
        for b in range(B):
            n = min(b * 2, Sk - 1)
            if padding == "left":
                mask[b, :n] = True
            else:
                mask[b, Sk - n:] = True
        mask = mask.to(dev)
    out = ops.cross_attention(q.to(dt), k.to(dt), v.to(dt), H, key_padding_mask=mask)
    assert out.shape == (B, Sq, H * D)
    ks, ke = (None, None) if mask is None else ops.mask_to_ranges(mask == 0)
    check_vs_reference(out, lambda q_, k_, v_: R.cross_attention(q_, k_, v_, H, ks, ke), [q, k, v], dt, loose=True)


# ---------------------------------------------------------------- CPU vs CUDA

@pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and the CUDA kernels")
def test_cpu_cuda_agree_fp32():
    g = torch.Generator().manual_seed(0)
    qkv = rand(2, 33, 3 * 4 * 80, gen=g)
    ks = torch.tensor([0, 5], dtype=torch.int32)
    a = ops.attention(qkv, 4, True, key_start=ks)
    b = ops.attention(qkv.cuda(), 4, True, key_start=ks.cuda()).cpu()
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    x, w, bb = rand(7, 769, gen=g), rand(769, gen=g), rand(769, gen=g)
    torch.testing.assert_close(ops.layernorm(x, w, bb), ops.layernorm(x.cuda(), w.cuda(), bb.cuda()).cpu(),
                               atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- opcheck

def _opcheck_cases():
    g = torch.Generator().manual_seed(0)
    x, w, b = rand(3, 40, gen=g), rand(40, gen=g), rand(40, gen=g)
    ids = torch.randint(0, 30, (2, 5), generator=g)
    pos = torch.arange(5).expand(2, 5).contiguous()
    qkv = rand(2, 6, 3 * 2 * 16, gen=g)
    kc, vc = torch.zeros(2, 2, 8, 16), torch.zeros(2, 2, 8, 16)
    ks = torch.tensor([0, 2], dtype=torch.int32)
    ops_ = torch.ops.eet_like
    return [
        (ops_.layernorm.default, (x, w, b, 1e-5)),
        (ops_.add_layernorm.default, (x, rand(3, 40, gen=g), b, w, b, 1e-5)),
        (ops_.embedding.default, (ids, pos, rand(30, 40, gen=g), rand(5, 40, gen=g), None, None, w, b, 1e-12)),
        (ops_.ffn.default, (x, rand(64, 40, gen=g), rand(64, gen=g), rand(40, 64, gen=g), None, "gelu_new", x)),
        (ops_.linear.default, (x, rand(24, 40, gen=g), rand(24, gen=g), "gelu")),
        (ops_.pack_linear.default, (rand(24, 40, gen=g),)),
        (ops_.linear_packed.default, (x, torch.ops.eet_like.pack_linear(rand(24, 40, gen=g)), 24, rand(24, gen=g),
                                      "relu")),
        (ops_.attention.default, (qkv, 2, True, ks, None, kc, vc, None)),
        (ops_.masked_attention.default, (rand(2, 96, gen=g), kc, vc, torch.tensor([6, 6], dtype=torch.int32),
                                         ks, 2, 0.25)),
        (ops_.cross_attention.default, (rand(2, 3, 32, gen=g), rand(2, 7, 32, gen=g), rand(2, 7, 32, gen=g), 2,
                                        ks, None, None)),
    ]


@pytest.mark.parametrize("case", range(10))
def test_opcheck(case):
    op, args = _opcheck_cases()[case]
    torch.library.opcheck(op, args)


# ---------------------------------------------------------------- CUDA kernel paths
# Every path of the CUDA attention kernels (csrc/cuda/attention.cu): decode (q_len <= 4, one
# group of G = next pow2 >= D/8 lanes per key) for every head dim 8..256 in steps of 8, the
# tiled prompt kernel for each of its (G, NC) configurations, the generic kernel for other head
# dims; key ranges that end on and just past the decode groups' and tiles' boundaries; views
# whose rows are not 16-byte aligned (the scalar fallbacks). They run on CPU tensors too.

@pytest.mark.parametrize("D", list(range(8, 257, 8)) + [1, 12, 100, 257])
def test_attention_head_dims(device_dtype, D):
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(D)
    B, H, Smax = 2, 2, 70
    kc, vc = rand(B, H, Smax, D, gen=g).to(dev, dt), rand(B, H, Smax, D, gen=g).to(dev, dt)
    qkv = rand(B, 3 * H * D, gen=g).to(dev, dt)
    positions = torch.tensor([Smax - 1, 33], dtype=torch.int32, device=dev)
    key_start = torch.tensor([5, 0], dtype=torch.int32, device=dev)
    ref32 = R.masked_attention(qkv.float(), kc.float(), vc.float(), positions, H, key_start)
    low = R.masked_attention(qkv, kc.clone(), vc.clone(), positions, H, key_start)
    out = ops.masked_attention(qkv, kc, vc, positions, H, key_start=key_start)
    check_close(out, ref32, low, dt, loose=True)
    # The prompt kernel (tiled for D % 8 == 0 && D <= 256): 2 query tiles, causal, left padded.
    S = 37
    p = rand(B, S, 3 * H * D, gen=g)
    ks = torch.tensor([0, 6], dtype=torch.int32, device=dev)
    out = ops.attention(p.to(dev, dt), H, True, key_start=ks)
    check_vs_reference(out, lambda q_: R.attention(q_, H, True, ks), [p.to(dev)], dt, loose=True)


@pytest.mark.parametrize("D", [8, 64, 80, 128, 256])
def test_masked_attention_key_counts(device_dtype, D):
    """Decode over 1..n live keys, n crossing the group and step boundaries of the decode
    kernel (groups of 32/G keys per warp, NG * U keys per step), in a cache much longer than
    the live length; rows at different positions and with different left pads."""
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(D + 1)
    H, Smax = 1, 300
    counts = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257]
    B = len(counts)
    kc, vc = rand(B, H, Smax, D, gen=g).to(dev, dt), rand(B, H, Smax, D, gen=g).to(dev, dt)
    qkv = rand(B, 3 * H * D, gen=g).to(dev, dt)
    pads = torch.tensor([(3 * b) % 4 if c > 4 else 0 for b, c in enumerate(counts)], dtype=torch.int32)
    positions = (pads + torch.tensor(counts, dtype=torch.int32) - 1).to(dev)
    pads = pads.to(dev)
    ref32 = R.masked_attention(qkv.float(), kc.float(), vc.float(), positions, H, pads)
    low = R.masked_attention(qkv, kc.clone(), vc.clone(), positions, H, pads)
    out = ops.masked_attention(qkv, kc, vc, positions, H, key_start=pads)
    check_close(out, ref32, low, dt, loose=True)
    # max_keys sizes the CUDA launch by the live context (the right bound, a loose one, one
    # below the real count, one past the cache): the launch changes, the result holds.
    live = int(positions.max()) + 1
    for bound in (live, 64, 1, Smax + 50):
        again = ops.masked_attention(qkv, kc.clone(), vc.clone(), positions, H, key_start=pads, max_keys=bound)
        check_close(again, ref32, low, dt, loose=True)


@pytest.mark.parametrize("D", [64, 80])
def test_kernels_on_misaligned_views(device_dtype, D):
    """Inputs whose base pointer is off 16-byte alignment by one element (views into a larger
    buffer): the kernels must notice and take their scalar paths."""
    dev, dt = device_dtype
    g = torch.Generator().manual_seed(D + 2)
    B, S, H = 2, 9, 2
    buf = rand(B * S * 3 * H * D + 1, gen=g).to(dev, dt)
    qkv = buf[1:].view(B, S, 3 * H * D)
    out = ops.attention(qkv, H, True)
    check_vs_reference(out, lambda q_: R.attention(q_, H, True), [qkv.float()], dt, loose=True)
    kv = rand(B * S * 2 * H * D + 1, gen=g).to(dev, dt)[1:].view(B, S, 2 * H * D)
    q = rand(B * 3 * H * D + 1, gen=g).to(dev, dt)[1:].view(B, 3, H * D)
    out = ops.cross_attention(q, kv[..., : H * D], kv[..., H * D:], H)
    check_vs_reference(out, lambda q_, k_, v_: R.cross_attention(q_, k_, v_, H),
                       [q.float(), kv[..., : H * D].float(), kv[..., H * D:].float()], dt, loose=True)
    hid = 8 * D
    x = rand(3 * hid + 1, gen=g).to(dev, dt)[1:].view(3, hid)
    w, b = rand(hid, gen=g).to(dev, dt), rand(hid, gen=g).to(dev, dt)
    out = ops.layernorm(x, w, b, 1e-5)
    check_vs_reference(out, lambda x_, w_, b_: R.layernorm(x_, w_, b_, 1e-5), [x.float(), w.float(), b.float()],
                       dt, loose=True)
    y = rand(4 * hid + 1, gen=g).to(dev, dt)[1:].view(4, hid)
    wl = rand(hid, hid, gen=g, scale=hid ** -0.5).to(dev, dt)
    bl = rand(hid + 1, gen=g).to(dev, dt)[1:]
    out = ops.linear(y, wl, bl, "gelu")
    check_vs_reference(out, lambda y_, w_, b_: R.linear(y_, w_, b_, "gelu"), [y.float(), wl.float(), bl.float()],
                       dt, loose=True)
