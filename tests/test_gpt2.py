"""eet_like GPT-2 against transformers' GPT-2 on tiny random-weight configs: logits of padded
batches, loading from directories and in-memory models, config options, bad input, GPU dtypes."""
import json
import os

import pytest
import torch

import eet_like  # noqa: F401
from eet_like.models import GPT2LMHeadModel, GPT2Model

transformers = pytest.importorskip("transformers")

from conftest import TOL_LOOSE, cuda_like  # noqa: E402

# (name, GPT2Config kwargs): head_dim 32, 80, 64, 128; vocab not a multiple of 8; every
# activation; untied head; per-layer attention scaling; custom n_inner and eps.
CONFIGS = {
    "d32-gelu_new": dict(n_embd=64, n_head=2, vocab_size=1000),
    "d80-gelu-untied": dict(n_embd=160, n_head=2, vocab_size=1003, activation_function="gelu",
                            tie_word_embeddings=False),
    "d64-relu-layerscale": dict(n_embd=128, n_head=2, vocab_size=1003, activation_function="relu",
                                scale_attn_by_inverse_layer_idx=True, n_inner=200, layer_norm_epsilon=1e-6),
    "d128-noscale": dict(n_embd=128, n_head=1, vocab_size=515, scale_attn_weights=False,
                         activation_function="gelu_pytorch_tanh"),
}


def make_hf(seed=0, cls=None, **kw):
    base = dict(n_layer=2, n_positions=64, initializer_range=0.2, bos_token_id=None, eos_token_id=None)
    base.update(kw)
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(**base)
    return (cls or transformers.GPT2LMHeadModel)(cfg).eval()


def left_padded(vocab, lengths, pad_id=0, seed=1):
    g = torch.Generator().manual_seed(seed)
    s = max(lengths)
    ids = torch.randint(1, vocab, (len(lengths), s), generator=g)
    mask = torch.zeros(len(lengths), s, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, s - n:] = 1
    return ids.masked_fill(mask == 0, pad_id), mask


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request):
    hf = make_hf(**CONFIGS[request.param])
    return hf, GPT2LMHeadModel.from_pretrained(hf)


def test_logits_left_padded_match_per_prompt(pair):
    hf, m = pair
    ids, mask = left_padded(hf.config.vocab_size, [9, 4, 1, 7])
    out = m(ids, attention_mask=mask).logits
    assert out.shape == (4, 9, hf.config.vocab_size) and out.dtype == torch.float32
    with torch.no_grad():
        for b in range(ids.shape[0]):
            real = ids[b][mask[b] == 1][None]
            ref = hf(real).logits[0]
            assert (out[b][mask[b] == 1] - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("gemm", ["eet", "onednn"])
def test_cpu_gemm_backends_agree(gemm, monkeypatch):
    """Both CPU GEMM paths of the linear/ffn ops (torch.mm + the eet_like bias_act epilogue,
    and oneDNN with fused post-ops) give transformers' logits and tokens."""
    if gemm == "onednn" and not (torch.backends.mkldnn.is_available()
                                 and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        pytest.skip("torch without oneDNN (mkldnn)")
    monkeypatch.setenv("EET_LIKE_CPU_GEMM", gemm)
    assert eet_like.ops.cpu_gemm() == gemm
    hf = make_hf(**CONFIGS["d64-relu-layerscale"])
    m = GPT2LMHeadModel.from_pretrained(hf)
    ids, mask = left_padded(1003, [6, 3])
    out = m(ids, attention_mask=mask).logits
    with torch.no_grad():
        for b in range(2):
            ref = hf(ids[b][mask[b] == 1][None]).logits[0]
            assert (out[b][mask[b] == 1] - ref).abs().max().item() <= 1e-4
        g = hf.generate(ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0, num_beams=2)
    assert torch.equal(m.generate(ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0, num_beams=2), g)


@pytest.mark.parametrize("packed", ["1", "0"])
@pytest.mark.parametrize("name", ["d80-gelu-untied", "d64-relu-layerscale"])
def test_packed_decode_matches_transformers(name, packed, monkeypatch):
    """Decode steps on the packed-weight CPU kernel (default) and on oneDNN give transformers'
    tokens, greedy (3 rows) and beam search (8 rows, still on the packed path)."""
    monkeypatch.setenv("EET_LIKE_PACKED_DECODE", packed)
    hf = make_hf(**CONFIGS[name])
    m = GPT2LMHeadModel.from_pretrained(hf)
    vocab = CONFIGS[name]["vocab_size"]
    ids, mask = left_padded(vocab, [7, 2, 5])
    for kw in (dict(), dict(num_beams=2)):
        with torch.no_grad():
            ref = hf.generate(ids, attention_mask=mask, max_new_tokens=10, pad_token_id=0, **kw)
        assert torch.equal(m.generate(ids, attention_mask=mask, max_new_tokens=10, pad_token_id=0, **kw), ref)
    assert bool(m.transformer.decode_gemm._packed) == (packed == "1")


def test_packed_decode_follows_weight_changes():
    """The packed copies are rebuilt when a weight changes in place (no stale decode)."""
    hf = make_hf(**CONFIGS["d32-gelu_new"])
    m = GPT2LMHeadModel.from_pretrained(hf)
    ids, mask = left_padded(1000, [4, 6])
    m.generate(ids, attention_mask=mask, max_new_tokens=3, pad_token_id=0)
    with torch.no_grad():
        hf.transformer.h[1].mlp.c_fc.weight.mul_(-1.5)
        hf.transformer.wte.weight[:, :5].mul_(2.0)
        m.transformer.blocks[1].mlp.w1.mul_(-1.5)          # eet_like keeps nn.Linear layout: c_fc is transposed
        m.transformer.embed.word[:, :5].mul_(2.0)          # tied: also the LM head
        ref = hf.generate(ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0)
    assert torch.equal(m.generate(ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0), ref)


def test_packed_decode_env_error(monkeypatch):
    monkeypatch.setenv("EET_LIKE_PACKED_DECODE", "yes")
    m = GPT2LMHeadModel.from_pretrained(make_hf(**CONFIGS["d32-gelu_new"]))
    with pytest.raises(ValueError, match="EET_LIKE_PACKED_DECODE must be 0 or 1, got 'yes'"):
        m.generate(torch.tensor([[5, 6]]), max_new_tokens=2, pad_token_id=0)


def test_logits_right_padded_and_unpadded(pair):
    hf, m = pair
    ids, mask = left_padded(hf.config.vocab_size, [6, 3])
    right_ids = torch.stack([torch.roll(ids[b], -int((mask[b] == 0).sum())) for b in range(2)])
    right_mask = torch.stack([torch.roll(mask[b], -int((mask[b] == 0).sum())) for b in range(2)])
    out = m(right_ids, attention_mask=right_mask).logits
    with torch.no_grad():
        for b in range(2):
            real = right_ids[b][right_mask[b] == 1][None]
            assert (out[b][right_mask[b] == 1] - hf(real).logits[0]).abs().max().item() <= 1e-4
        full = hf(ids).logits
    assert (m(ids).logits - full).abs().max().item() <= 1e-4


def test_gpt2model_hidden_states():
    hf = make_hf(cls=transformers.GPT2Model, **CONFIGS["d80-gelu-untied"])
    m = GPT2Model.from_pretrained(hf)
    ids, mask = left_padded(hf.config.vocab_size, [5, 8])
    out = m(ids, attention_mask=mask).last_hidden_state
    with torch.no_grad():
        for b in range(2):
            ref = hf(ids[b][mask[b] == 1][None]).last_hidden_state[0]
            assert (out[b][mask[b] == 1] - ref).abs().max().item() <= 1e-4


def test_lm_head_from_trunk_only_model():
    """A transformers GPT2Model (no lm_head) loads into GPT2LMHeadModel with tied embeddings."""
    hf_trunk = make_hf(cls=transformers.GPT2Model, **CONFIGS["d32-gelu_new"])
    m = GPT2LMHeadModel.from_pretrained(hf_trunk)
    ids = torch.randint(0, 1000, (1, 5))
    with torch.no_grad():
        ref = hf_trunk(ids).last_hidden_state @ hf_trunk.wte.weight.t()
    assert (m(ids).logits - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_load_from_directory(tmp_path, fmt):
    hf = make_hf(**CONFIGS["d80-gelu-untied"])
    if fmt == "safetensors":
        hf.save_pretrained(tmp_path)
        assert any(f.endswith(".safetensors") for f in os.listdir(tmp_path))
    else:
        hf.config.save_pretrained(tmp_path)
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    m = GPT2LMHeadModel.from_pretrained(str(tmp_path))
    ref = GPT2LMHeadModel.from_pretrained(hf)
    ids, mask = left_padded(1003, [6, 2])
    assert torch.equal(m(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits)


def test_generation_config_json_defaults(tmp_path):
    """generate() without arguments uses the checkpoint's generation_config.json, as transformers."""
    hf = make_hf(**CONFIGS["d32-gelu_new"])
    hf.generation_config.max_length = 13
    hf.generation_config.num_beams = 2
    hf.save_pretrained(tmp_path)
    with open(tmp_path / "generation_config.json") as f:
        assert json.load(f)["max_length"] == 13
    m = GPT2LMHeadModel.from_pretrained(str(tmp_path))
    ids = torch.randint(1, 1000, (1, 4))
    out = m.generate(ids)
    assert torch.equal(out, hf.generate(ids))
    assert out.shape[1] <= 13


@pytest.mark.parametrize("kw,match", [
    (dict(add_cross_attention=True), "add_cross_attention"),
    (dict(activation_function="silu"), "activation_function"),
    (dict(n_embd=64, n_head=3), "n_head"),
])
def test_unsupported_config_raises(kw, match):
    base = dict(CONFIGS["d32-gelu_new"])
    base.update(kw)
    if "n_head" in kw:
        cfg = dict(model_type="gpt2", **{k: v for k, v in base.items()})
        with pytest.raises(ValueError, match=match):
            GPT2LMHeadModel(eet_like.models.gpt2.GPT2Config.from_hf(cfg))
        return
    hf = make_hf(**base)
    with pytest.raises(ValueError, match=match):
        GPT2LMHeadModel.from_pretrained(hf)


def test_checkpoint_mismatch_raises(tmp_path):
    hf = make_hf(**CONFIGS["d32-gelu_new"])
    hf.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["n_embd"] = 128
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="wte.weight"):
        GPT2LMHeadModel.from_pretrained(str(tmp_path))


def test_bad_input_raises():
    hf = make_hf(**CONFIGS["d32-gelu_new"])
    m = GPT2LMHeadModel.from_pretrained(hf, max_batch=2, max_seq_len=32)
    ids = torch.randint(1, 1000, (2, 5))
    with pytest.raises(TypeError, match="input_ids"):
        m(ids.float())
    with pytest.raises(TypeError, match="input_ids"):
        m([[1, 2, 3]])
    with pytest.raises(ValueError, match="input_ids"):
        m(ids[0])
    with pytest.raises(ValueError, match="attention_mask"):
        m(ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        m(ids, attention_mask=torch.tensor([[1, 0, 1, 1, 1], [1, 1, 1, 1, 1]]))  # a hole
    with pytest.raises(ValueError, match="n_positions"):
        m(torch.randint(1, 1000, (1, 65)))
    with pytest.raises(ValueError, match="max_batch"):
        m.generate(torch.randint(1, 1000, (3, 5)), max_new_tokens=2)
    with pytest.raises(ValueError, match="max_batch"):
        m.generate(ids, max_new_tokens=2, num_beams=2)
    with pytest.raises(ValueError, match="max_seq_len"):
        m.generate(ids, max_new_tokens=40)
    with pytest.raises(ValueError, match="max_seq_len"):
        GPT2LMHeadModel.from_pretrained(hf, max_seq_len=65)
    with pytest.raises(ValueError, match="max_batch"):
        GPT2LMHeadModel.from_pretrained(hf, max_batch=0)
    with pytest.raises(ValueError, match="dtype"):
        GPT2LMHeadModel.from_pretrained(hf, dtype=torch.float16, device="cpu")
    with pytest.raises(ValueError, match="unknown arguments"):
        GPT2LMHeadModel.from_pretrained(hf, max_batchs=4)
    with pytest.raises(FileNotFoundError, match="path_or_hf_model"):
        GPT2LMHeadModel.from_pretrained("/nonexistent/dir")
    m2 = GPT2LMHeadModel.from_pretrained(hf, max_batch=2)
    with pytest.raises(ValueError, match="n_positions"):
        m2.generate(ids, max_new_tokens=64)


def test_beyond_n_positions_checked_before_compute():
    hf = make_hf(**CONFIGS["d32-gelu_new"])
    m = GPT2LMHeadModel.from_pretrained(hf, max_batch=1)
    poison = torch.full_like(m.cache.k[0], 7.0)
    m.cache.k[0].copy_(poison)
    with pytest.raises(ValueError, match="n_positions"):
        m.generate(torch.randint(1, 1000, (1, 10)), max_new_tokens=60)
    assert torch.equal(m.cache.k[0], poison)  # nothing ran


def agreed_prefix(a, b):
    """Length of the common prefix of two 1-D token tensors."""
    diff = (a[: min(len(a), len(b))] != b[: min(len(a), len(b))]).nonzero()
    return int(diff[0]) if len(diff) else min(len(a), len(b))


def decisive_prefix(hf32, prompt, tokens, margin):
    """How many leading `tokens` (a greedy continuation of prompt [1, S]) transformers' float32
    model prefers by more than `margin` over its runner-up. Where two logits are closer than
    twice the error of a half-precision run, either may win: a tie at that precision, not a bug."""
    seq = torch.cat([prompt, tokens[None].to(prompt.device)], dim=1)
    with torch.no_grad():
        top2 = hf32(seq).logits[0, prompt.shape[1] - 1:-1].topk(2).values
    return agreed_prefix((top2[:, 0] - top2[:, 1] > margin).cpu(), torch.ones(len(tokens), dtype=torch.bool))


@pytest.mark.emulated
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_low_precision(dtype):
    """fp16/bf16 on CUDA, by the rule of the BERT GPU test: the logits' error against
    transformers in float32 at most 2x transformers' own error in that dtype (+ atol), every
    real position of a left-padded batch; then 12 greedy tokens per prompt, equal to
    transformers' half-precision tokens wherever transformers' fp32 and half runs agree (the
    agreed prefix: beyond the first fp32/half split the contexts differ) and fp32 prefers the
    token by more than twice eet's largest logit error on the prompt (decisive_prefix)."""
    dev = cuda_like("cuda")  # cpu in the CUDA emulation build
    hf = make_hf(**CONFIGS["d80-gelu-untied"])
    hf32 = make_hf(**CONFIGS["d80-gelu-untied"]).to(dev)          # same seed: the same weights
    hf_lp = make_hf(**CONFIGS["d80-gelu-untied"]).to(dev, dtype)
    m = GPT2LMHeadModel.from_pretrained(hf, dtype=dtype, device=dev)
    ids, mask = left_padded(1003, [9, 5, 3])
    out = m(ids.to(dev), attention_mask=mask.to(dev)).logits.float()
    atol = TOL_LOOSE[dtype][0]
    errs = []  # eet's largest logit error per row
    with torch.no_grad():
        for b in range(3):
            real = ids[b][mask[b] == 1][None].to(dev)
            ref = hf32(real).logits[0]
            err = (out[b][mask[b].to(dev) == 1] - ref).abs().max().item()
            err_hf = (hf_lp(real).logits[0].float() - ref).abs().max().item()
            assert err <= 2 * err_hf + atol, f"row {b}: eet {err:.3g} vs transformers in {dtype} {err_hf:.3g}"
            errs.append(err)

    new = 12
    g = m.generate(ids.to(dev), attention_mask=mask.to(dev), max_new_tokens=new, pad_token_id=0).cpu()
    agreed = 0
    with torch.no_grad():
        for b in range(3):
            real = ids[b][mask[b] == 1][None].to(dev)
            kw = dict(max_new_tokens=new, do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(real))
            t32 = hf32.generate(real, **kw)[0, real.shape[1]:].cpu()
            tlp = hf_lp.generate(real, **kw)[0, real.shape[1]:].cpu()
            n = min(agreed_prefix(t32, tlp), decisive_prefix(hf32, real, t32, 2 * errs[b]))
            ours = g[b, ids.shape[1]:]
            assert torch.equal(ours[:n], tlp[:n]), f"row {b}: {ours.tolist()} vs transformers {tlp.tolist()} ({n} agreed)"
            agreed += n
    assert agreed >= 3, "transformers' fp32 and half runs agree on too few tokens for a meaningful check"


@pytest.mark.emulated
def test_cuda_fp32_greedy_matches():
    dev = cuda_like("cuda")
    hf = make_hf(**CONFIGS["d64-relu-layerscale"])
    m = GPT2LMHeadModel.from_pretrained(hf, device=dev)
    ids, mask = left_padded(1003, [7, 3])
    g = m.generate(ids.to(dev), attention_mask=mask.to(dev), max_new_tokens=12).cpu()
    assert torch.equal(g, hf.generate(ids, attention_mask=mask, max_new_tokens=12, pad_token_id=0))
