"""CUDA-only behaviour of the decode loop (skipped without a GPU): the decode step replayed
from CUDA graphs gives the eager step's tokens, the embedding's unchecked path, and a decode
row whose position lies outside the cache attending nothing (zeros, never unwritten slots)."""
import pytest
import torch

import eet_like
from eet_like import ops, reference
from conftest import cuda_ready

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.skipif(not cuda_ready(), reason="no CUDA device or eet_like built without CUDA kernels")


def _model(dtype, max_batch=8, quantize=None):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=3, n_embd=96, n_head=4, vocab_size=211, n_positions=96,
                                  bos_token_id=0, eos_token_id=1)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    return eet_like.GPT2LMHeadModel.from_pretrained(hf, dtype=dtype, device="cuda", max_batch=max_batch,
                                                    max_seq_len=96, quantize=quantize)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_graph_decode_equals_eager(dtype, monkeypatch):
    m = _model(dtype)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(2, 211, (5, 9), generator=g).cuda()
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[4, :6] = 0
    kw = dict(attention_mask=mask, max_new_tokens=20, min_new_tokens=20, pad_token_id=0)
    monkeypatch.setenv("EET_LIKE_CUDA_GRAPHS", "0")
    eager = m.generate(ids, **kw)
    eager_beam = m.generate(ids[:2], attention_mask=mask[:2], max_new_tokens=12, num_beams=3, pad_token_id=0)
    assert not m._decode_graphs
    monkeypatch.setenv("EET_LIKE_CUDA_GRAPHS", "1")
    graphed = m.generate(ids, **kw)
    # One graph per row count and power-of-two context bound: keys 10..29 -> bounds 16 and 32.
    assert sorted(m._decode_graphs) == [(5, 16), (5, 32)]
    assert torch.equal(graphed, eager)
    # A second call replays the captured graph from its first step on, other rows included.
    assert torch.equal(m.generate(ids, **kw), eager)
    assert torch.equal(m.generate(ids[:2], attention_mask=mask[:2], max_new_tokens=12, num_beams=3,
                                  pad_token_id=0), eager_beam)
    # Sampling replays the same graphs; seeded runs repeat.
    s1 = m.generate(ids, do_sample=True, top_k=20, seed=7, **kw)
    s2 = m.generate(ids, do_sample=True, top_k=20, seed=7, **kw)
    assert torch.equal(s1, s2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_graph_decode_int8(dtype, monkeypatch):
    """quantize="int8": linear_int8 makes no host syncs, so the decode step is captured too,
    and the replayed graph gives the eager tokens (the LM head's logits copied into the
    static buffer)."""
    m = _model(dtype, quantize="int8")
    ids = torch.randint(2, 211, (3, 9), generator=torch.Generator().manual_seed(4)).cuda()
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    kw = dict(attention_mask=mask, max_new_tokens=16, min_new_tokens=16, pad_token_id=0)
    monkeypatch.setenv("EET_LIKE_CUDA_GRAPHS", "0")
    eager = m.generate(ids, **kw)
    monkeypatch.setenv("EET_LIKE_CUDA_GRAPHS", "1")
    assert torch.equal(m.generate(ids, **kw), eager)
    assert 3 in m._decode_graphs
    assert torch.equal(m.generate(ids, **kw), eager)


def test_cuda_graphs_env_value_checked(monkeypatch):
    m = _model(torch.float16)
    monkeypatch.setenv("EET_LIKE_CUDA_GRAPHS", "yes")
    with pytest.raises(ValueError, match="EET_LIKE_CUDA_GRAPHS"):
        m.generate(torch.tensor([[5, 6, 7]]).cuda(), max_new_tokens=3, pad_token_id=0)


def test_embedding_unchecked_skips_sync_but_computes_the_same():
    we, pe = torch.randn(50, 64, device="cuda"), torch.randn(20, 64, device="cuda")
    ids = torch.randint(0, 50, (3, 7), device="cuda")
    pos = torch.arange(7, device="cuda").expand(3, 7)
    ref = reference.embedding(ids, we, pe, position_ids=pos)
    torch.testing.assert_close(ops.embedding(ids, we, pe, position_ids=pos, check=False), ref)
    with pytest.raises(ValueError, match="input_ids must be in"):
        ops.embedding(ids + 50, we, pe, position_ids=pos)
    # Under graph capture the range check is skipped as well (no host sync while capturing).
    out = torch.empty_like(ref)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out.copy_(ops.embedding(ids, we, pe, position_ids=pos))
    graph.replay()
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("D", [64, 80])
def test_masked_attention_position_outside_cache_sees_no_keys(dtype, D):
    H, Smax = 2, 16
    kc = torch.randn(3, H, Smax, D, device="cuda", dtype=dtype)
    vc = torch.randn_like(kc)
    before_k, before_v = kc.clone(), vc.clone()
    qkv = torch.randn(3, 3 * H * D, device="cuda", dtype=dtype)
    pos = torch.tensor([4, Smax, Smax + 7], dtype=torch.int32, device="cuda")
    out = ops.masked_attention(qkv, kc, vc, pos, H, check=False)
    # Rows 1 and 2 are outside the cache: nothing written, no key visible, zeros out.
    assert torch.equal(out[1:], torch.zeros_like(out[1:]))
    assert torch.equal(kc[1:], before_k[1:]) and torch.equal(vc[1:], before_v[1:])
    rk, rv = before_k[:1].float().cpu(), before_v[:1].float().cpu()
    ref = reference.masked_attention(qkv[:1].float().cpu(), rk, rv, pos[:1].cpu(), H)
    torch.testing.assert_close(out[:1].float().cpu(), ref, atol=2e-2, rtol=2e-2)
    with pytest.raises(ValueError, match="cache overflow"):
        ops.masked_attention(qkv, kc, vc, pos, H)


def _bad_cuda_calls():
    c = dict(device="cuda")
    x, w = torch.randn(3, 8, **c), torch.randn(8, **c)
    H, D = 2, 16
    kc = torch.zeros(2, H, 8, D, **c)
    return [
        ("layernorm shape", ValueError, r"weight must be \[H\]", lambda: ops.layernorm(x, torch.randn(7, **c), w)),
        ("layernorm device", (ValueError, TypeError), "weight", lambda: ops.layernorm(x, w.cpu(), w)),
        ("layernorm dtype", TypeError, "weight must have the dtype of x", lambda: ops.layernorm(x, w.half(), w)),
        ("embedding id", ValueError, r"input_ids must be in \[0, 10\), got .*10",
         lambda: ops.embedding(torch.tensor([[1, 10]], **c), torch.randn(10, 4, **c), torch.randn(6, 4, **c))),
        ("embedding position", ValueError, r"position_ids must be in \[0, 6\)",
         lambda: ops.embedding(torch.randint(0, 10, (1, 7), **c), torch.randn(10, 4, **c), torch.randn(6, 4, **c))),
        ("linear shape", ValueError, "weight", lambda: ops.linear(x, torch.randn(5, 7, **c))),
        ("ffn activation", ValueError, "activation must be one of",
         lambda: ops.ffn(x, torch.randn(16, 8, **c), None, torch.randn(8, 16, **c), None, "swish")),
        ("attention heads", ValueError, "num_heads",
         lambda: ops.attention(torch.randn(2, 5, 3 * H * D, **c), 5)),
        ("masked_attention cache", ValueError, "k_cache must be",
         lambda: ops.masked_attention(torch.randn(2, 3 * H * D, **c), torch.zeros(2, H, 8, D + 1, **c),
                                      torch.zeros(2, H, 8, D + 1, **c), torch.zeros(2, dtype=torch.int32, **c), H)),
        ("masked_attention overflow", ValueError, "cache overflow",
         lambda: ops.masked_attention(torch.randn(2, 3 * H * D, **c), kc, kc.clone(),
                                      torch.full((2,), 8, dtype=torch.int32, **c), H)),
        ("cross_attention shape", ValueError, "",
         lambda: ops.cross_attention(torch.randn(2, 1, H * D, **c), torch.randn(2, 4, H * D + 1, **c),
                                     torch.randn(2, 4, H * D + 1, **c), H)),
    ]


@pytest.mark.parametrize("case", range(11))
def test_cuda_bad_inputs_raise(case):
    """Every C++ error path on CUDA tensors raises with its message (on one GPU image the
    extension crashed while formatting such messages; see benchmarks/gpu_session.sh)."""
    name, exc, match, call = _bad_cuda_calls()[case]
    with pytest.raises(exc, match=match):
        call()
