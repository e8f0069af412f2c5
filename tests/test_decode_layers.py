"""decode_layers: a whole CPU decode step through a pre-norm block stack in one op call. Checked
bit for bit (output and KV-cache writes) against the block loop of eet_like.layers running the
same kernels one op at a time, against eet_like.reference, through GPT-2 generate (fused on and
off: same tokens and scores), opcheck, and bad inputs."""
import os
from unittest import mock

import pytest
import torch

from eet_like import GPT2LMHeadModel, ops, reference
from eet_like.generation.kv_cache import KVCache
from eet_like.layers import Int8Weight
from eet_like.layers.block import Step, fused_step_weights, run_blocks
from eet_like.models.gpt2 import GPT2Config, GPT2Model
from conftest import EMULATED

pytestmark = pytest.mark.skipif(EMULATED, reason="CPU-only op; the CUDA emulation build runs the CUDA kernels "
                                "of each op from the block loop instead")


@pytest.fixture
def fused(monkeypatch):
    def set_(on: bool):
        monkeypatch.setenv("EET_LIKE_FUSED_DECODE", "1" if on else "0")
    return set_


def trunk(quantize, layers=3, hidden=96, heads=4, inner=None, seed=0):
    """A random GPT-2 trunk (every weight and norm random, so no term is a no-op)."""
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=300, n_positions=64, n_embd=hidden, n_layer=layers, n_head=heads,
                     n_inner=inner, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                     scale_attn_by_inverse_layer_idx=True)
    m = GPT2Model(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        for ln in [m.ln_f] + [n for blk in m.blocks for n in (blk.ln_attn, blk.ln_mlp)]:
            ln.weight.copy_(1 + 0.2 * torch.randn_like(ln.weight))
    if quantize:
        # "packed": pack_int8 panels on any CPU (by default only AVX2-only CPUs pack).
        with mock.patch.object(Int8Weight, "pack_applies", staticmethod(lambda q: quantize == "packed")):
            for blk in m.blocks:
                blk.quantize_int8_()
        assert m.blocks[0].mlp.w2.packed == (quantize == "packed")
    return m


def step_inputs(m, rows, smax=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    c = m.config
    cache = KVCache.allocate(c.n_layer, rows + 1, c.n_head, smax, c.n_embd // c.n_head)
    for t in cache.k + cache.v:
        t.copy_(torch.randn(t.shape, generator=g))
    x = torch.randn(rows, c.n_embd, generator=g)
    positions = torch.randint(3, smax, (rows,), generator=g, dtype=torch.int32)
    key_start = torch.minimum(torch.randint(0, 3, (rows,), generator=g, dtype=torch.int32), positions)
    return x, cache, positions, key_start


def loop_step(m, x, cache, positions, key_start, on, fused):
    fused(on)
    return run_blocks(m.blocks, x, Step(cache, positions, key_start), gemm=m.decode_gemm, pre_norm=True,
                      final_norm=m.ln_f)


@pytest.mark.parametrize("quantize", [False, "int8", "packed"], ids=["float32-packed", "int8", "int8-packed"])
@pytest.mark.parametrize("rows", [1, 3, 16])
def test_fused_equals_block_loop_bit_for_bit(quantize, rows, fused):
    m = trunk(quantize)
    x, cache, pos, ks = step_inputs(m, rows)
    c2 = KVCache([t.clone() for t in cache.k], [t.clone() for t in cache.v])
    want = loop_step(m, x, cache, pos, ks, False, fused)
    got = loop_step(m, x, c2, pos, ks, True, fused)
    assert torch.equal(got, want)
    for a, b in zip(cache.k + cache.v, c2.k + c2.v):
        assert torch.equal(a, b)


@pytest.mark.parametrize("quantize", [False, "int8", "packed"], ids=["float32-packed", "int8", "int8-packed"])
def test_fused_matches_reference(quantize, fused):
    m = trunk(quantize, inner=200)
    x, cache, pos, ks = step_inputs(m, 5)
    weights = fused_step_weights(m.blocks, m.ln_f, m.decode_gemm, x)
    assert weights is not None and len(weights) == 16 * 3 + 2
    rc = KVCache([t.clone() for t in cache.k], [t.clone() for t in cache.v])
    scales = [b.attn.scale for b in m.blocks]
    got = ops.decode_layers(x, weights, cache.k, cache.v, pos, 4, scales, 1e-5, "gelu_new", key_start=ks)
    want = reference.decode_layers(x, weights, rc.k, rc.v, pos, 4, scales, 1e-5, "gelu_new", key_start=ks)
    # int8: the reference quantizes activations exactly like the kernel, but a last-bit float
    # difference upstream can move a value across a rounding boundary: a looser bound there.
    tol = dict(atol=2e-3, rtol=2e-3) if quantize else dict(atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got, want, **tol)
    for a, b in zip(cache.k + cache.v, rc.k + rc.v):
        torch.testing.assert_close(a, b, **tol)


def test_scales_are_per_layer(fused):
    """GPT-2's scale_attn_by_inverse_layer_idx gives each layer its own scale; swapping them
    must change the result."""
    m = trunk(False)
    x, cache, pos, ks = step_inputs(m, 2)
    w = fused_step_weights(m.blocks, m.ln_f, m.decode_gemm, x)
    scales = [b.attn.scale for b in m.blocks]
    assert len(set(scales)) == 3
    a = ops.decode_layers(x, w, [t.clone() for t in cache.k], [t.clone() for t in cache.v], pos, 4, scales,
                          1e-5, "gelu_new", key_start=ks)
    b = ops.decode_layers(x, w, [t.clone() for t in cache.k], [t.clone() for t in cache.v], pos, 4,
                          scales[::-1], 1e-5, "gelu_new", key_start=ks)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_generate_same_with_and_without_fused_step(quantize, fused, tmp_path):
    from transformers import GPT2Config as HFConfig, GPT2LMHeadModel as HF
    torch.manual_seed(0)
    HF(HFConfig(n_layer=2, n_embd=64, n_head=4, vocab_size=300, n_positions=64, bos_token_id=0,
                eos_token_id=1)).save_pretrained(tmp_path)
    m = GPT2LMHeadModel.from_pretrained(tmp_path, max_batch=4, max_seq_len=48, quantize=quantize)
    ids = torch.randint(2, 300, (3, 7))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    out = {}
    for on in (False, True):
        fused(on)
        r = m.generate(ids, attention_mask=mask, max_new_tokens=12, min_new_tokens=12, output_scores=True,
                       return_dict_in_generate=True)
        out[on] = (r.sequences, torch.stack(r.scores))
    assert torch.equal(out[True][0], out[False][0])
    assert torch.equal(out[True][1], out[False][1])


def test_not_used_where_the_loop_runs_other_kernels(fused, monkeypatch):
    m = trunk(False)
    x = torch.randn(17, 96)
    assert fused_step_weights(m.blocks, m.ln_f, m.decode_gemm, x) is None   # > 16 rows: oneDNN
    assert fused_step_weights(m.blocks, m.ln_f, m.decode_gemm.any_rows(), x) is not None
    monkeypatch.setenv("EET_LIKE_PACKED_DECODE", "0")
    assert fused_step_weights(m.blocks, m.ln_f, m.decode_gemm, x[:2]) is None
    monkeypatch.delenv("EET_LIKE_PACKED_DECODE")
    fused(False)
    assert fused_step_weights(m.blocks, m.ln_f, m.decode_gemm, x[:2]) is None
    monkeypatch.setenv("EET_LIKE_FUSED_DECODE", "2")
    with pytest.raises(ValueError, match="EET_LIKE_FUSED_DECODE must be 0 or 1"):
        fused_step_weights(m.blocks, m.ln_f, m.decode_gemm, x[:2])


def test_opcheck():
    m = trunk(True, layers=2)
    x, cache, pos, ks = step_inputs(m, 2)
    w = fused_step_weights(m.blocks, m.ln_f, m.decode_gemm, x)
    torch.library.opcheck(torch.ops.eet_like.decode_layers.default,
                          (x, w, cache.k, cache.v, pos, ks, 4, [0.1, 0.2], 1e-5, "gelu_new", None))


def test_bad_inputs():
    m = trunk(True, layers=2)
    x, cache, pos, ks = step_inputs(m, 2)
    w = fused_step_weights(m.blocks, m.ln_f, m.decode_gemm, x)
    args = lambda **kw: dict(dict(x=x, weights=w, k_cache=cache.k, v_cache=cache.v, positions=pos, num_heads=4,
                                  scales=[0.1, 0.2], eps=1e-5, activation="gelu_new", key_start=ks), **kw)
    cases = [
        (ValueError, "weights must hold 16 entries per layer", args(weights=w[:-1])),
        (ValueError, "one tensor per layer", args(k_cache=cache.k[:1])),
        (ValueError, "one attention scale per layer", args(scales=[0.1])),
        (ValueError, r"weights\[3\] \(qkv scales\) must be given", args(weights=w[:3] + [None] + w[4:])),
        (ValueError, r"weights\[2\] \(qkv weight\) must be a tensor", args(weights=w[:2] + [None] + w[3:])),
        (ValueError, r"weights\[0\] \(ln1 weight\) must be a tensor", args(weights=[None] + w[1:])),
        (ValueError, "activation must be one of", args(activation="swish")),
        (ValueError, "x must be", args(x=x[None])),
        (TypeError, "x must be float32", args(x=x.double())),
        (ValueError, "qweight must be", args(weights=w[:2] + [w[2][:, :5]] + w[3:])),
        (ValueError, "cache overflow|positions", args(positions=torch.tensor([0, 99], dtype=torch.int32))),
    ]
    for exc, match, kw in cases:
        with pytest.raises(exc, match=match):
            ops.decode_layers(**kw)
    # A float packed weight with scales next to it.
    packed = trunk(False, layers=2)
    wf = fused_step_weights(packed.blocks, packed.ln_f, packed.decode_gemm, x)
    with pytest.raises(ValueError, match=r"weights\[3\] \(qkv scales\) must be None"):
        ops.decode_layers(**args(weights=wf[:3] + [torch.ones(288)] + wf[4:]))
