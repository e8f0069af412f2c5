"""eet_like.fairseq.TransformerDecoder against fairseq itself: tiny random transformer_lm and
transformer (encoder-decoder) models, decoded by fairseq's own, unpatched SequenceGenerator
with the original decoder and with the eet_like one (tokens equal, scores within 1e-4), plus
full-forward logits, incremental-state protocol details and the refused options.

Needs fairseq (fairseq-fixed 0.12.3.1, see requirements-fairseq.txt); skipped without it."""
import argparse
import copy
import os
from types import SimpleNamespace

import pytest
import torch

fairseq = pytest.importorskip("fairseq")

from fairseq import search  # noqa: E402
from fairseq.data import Dictionary  # noqa: E402
from fairseq.models.transformer import TransformerModel  # noqa: E402
from fairseq.models.transformer_lm import TransformerLanguageModel, base_lm_architecture  # noqa: E402
from fairseq.sequence_generator import SequenceGenerator  # noqa: E402

import eet_like.fairseq as ef  # noqa: E402

ATOL = RTOL = 1e-4   # fp32: logits/scores of a whole decode (TOL_LOOSE in conftest)
VOCAB = 60           # symbols added to fairseq's 4 specials
PAD, EOS = 1, 2


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: intra-op threads only add contention on a shared CPU (3x slower here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_dict(n=VOCAB):
    d = Dictionary()
    for i in range(n):
        d.add_symbol(f"w{i}")
    return d


def _scale_(model, factor, seed):
    """Random weights, scaled so the next-token choices are decisive (no near-ties)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) * p.std().clamp_min(1e-3) * factor)
            elif "layer_norm" in name or "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g) if name.endswith("weight")
                        else 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def build_lm(normalize_before=True, learned=True, seed=0, factor=2.5, **kw):
    d = make_dict()
    args = dict(decoder_layers=2, decoder_embed_dim=64, decoder_ffn_embed_dim=128,
                decoder_attention_heads=2, decoder_learned_pos=learned, dropout=0.0,
                max_target_positions=64, share_decoder_input_output_embed=True)
    args.update(kw)
    args = argparse.Namespace(**args)
    base_lm_architecture(args)
    args.decoder_normalize_before = normalize_before   # base_lm_architecture forces pre-norm
    torch.manual_seed(seed)
    m = TransformerLanguageModel.build_model(args, SimpleNamespace(source_dictionary=d, target_dictionary=d))
    return _scale_(m, factor, seed), d


def build_mt(normalize_before=False, learned=False, seed=0, factor=2.5, **kw):
    src, tgt = make_dict(50), make_dict()
    args = dict(encoder_layers=2, decoder_layers=2, encoder_embed_dim=96, decoder_embed_dim=96,
                encoder_ffn_embed_dim=160, decoder_ffn_embed_dim=160, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_normalize_before=normalize_before,
                decoder_normalize_before=normalize_before, encoder_learned_pos=learned,
                decoder_learned_pos=learned, dropout=0.0, max_source_positions=64,
                max_target_positions=64, share_decoder_input_output_embed=False)
    args.update(kw)
    torch.manual_seed(seed)
    m = TransformerModel.build_model(argparse.Namespace(**args),
                                     SimpleNamespace(source_dictionary=src, target_dictionary=tgt))
    return _scale_(m, factor, seed), tgt


def swapped(model, **kw):
    m = copy.deepcopy(model)
    m.decoder = ef.TransformerDecoder.from_fairseq(m.decoder, **kw)
    return m


def left_padded(rows, pad=PAD):
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, width - len(r):] = torch.tensor(r)
    return out


def right_padded(rows, pad=PAD):
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r)
    return out


def random_rows(lengths, seed, lo=4, hi=4 + VOCAB):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(lo, hi, (n,), generator=g).tolist() for n in lengths]


def run(model, d, sample, prefix_tokens=None, seed=None, **gen_kw):
    gen = SequenceGenerator([model], d, **gen_kw)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        return gen.generate([model], sample, prefix_tokens=prefix_tokens)


def assert_same_hypos(ref, out):
    assert len(ref) == len(out)
    for r_sent, o_sent in zip(ref, out):
        assert len(r_sent) == len(o_sent)
        for r, o in zip(r_sent, o_sent):
            assert torch.equal(r["tokens"], o["tokens"]), (r["tokens"], o["tokens"])
            torch.testing.assert_close(o["score"], r["score"], atol=ATOL, rtol=RTOL)
            torch.testing.assert_close(o["positional_scores"], r["positional_scores"], atol=ATOL, rtol=RTOL)


class ReorderSpy:
    """Records the sizes of new_order that fairseq passes to reorder_incremental_state."""

    def __init__(self, decoder):
        self.sizes = []
        orig = decoder.reorder_incremental_state

        def spy(state, new_order):
            self.sizes.append(new_order.numel())
            return orig(state, new_order)
        decoder.reorder_incremental_state = spy


# ---------------------------------------------------------------------------- full forward
@pytest.mark.emulated  # also the CUDA kernels' test in the CUDA emulation build
@pytest.mark.parametrize("normalize_before", [True, False], ids=["prenorm", "postnorm"])
@pytest.mark.parametrize("learned", [True, False], ids=["learned", "sinusoidal"])
def test_lm_full_forward_logits(normalize_before, learned):
    m, d = build_lm(normalize_before, learned, seed=1)
    ours = ef.TransformerDecoder.from_fairseq(m.decoder)
    tokens = left_padded(random_rows([7, 4, 6], seed=2))
    real = tokens.ne(PAD)
    with torch.no_grad():
        ref, _ = m.decoder(tokens)
        out, extra = ours(tokens)
    assert out.shape == ref.shape and extra["attn"] == [None]
    # fairseq gives NaN for queries that only see pads; only real positions are compared.
    torch.testing.assert_close(out[real], ref[real], atol=ATOL, rtol=RTOL)


@pytest.mark.emulated  # also the CUDA kernels' test in the CUDA emulation build
@pytest.mark.parametrize("normalize_before", [True, False], ids=["prenorm", "postnorm"])
def test_mt_full_forward_logits(normalize_before):
    m, d = build_mt(normalize_before, learned=normalize_before, seed=3)
    ours = ef.TransformerDecoder.from_fairseq(m.decoder)
    src = left_padded(random_rows([5, 9, 2], seed=4, hi=4 + 50))
    src_lengths = src.ne(PAD).sum(1)
    prev = torch.cat([torch.full((3, 1), EOS), torch.randint(4, 4 + VOCAB, (3, 6))], dim=1)
    with torch.no_grad():
        enc = m.encoder(src, src_lengths=src_lengths)
        ref, ref_extra = m.decoder(prev, encoder_out=enc)
        out, extra = ours(prev, encoder_out=enc, return_all_hiddens=True)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=RTOL)
    assert len(extra["inner_states"]) == len(ref_extra["inner_states"])
    for a, b in zip(extra["inner_states"], ref_extra["inner_states"]):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL)


def test_project_in_out_dims_and_features_only():
    m, d = build_lm(seed=5, decoder_input_dim=48, decoder_output_dim=48, no_scale_embedding=True,
                    layernorm_embedding=True, activation_fn="gelu_accurate")
    assert m.decoder.project_in_dim is not None and m.decoder.project_out_dim is not None
    ours = ef.TransformerDecoder.from_fairseq(m.decoder)
    tokens = torch.randint(4, 4 + VOCAB, (2, 5))
    with torch.no_grad():
        ref, _ = m.decoder(tokens, features_only=True)
        out, _ = ours(tokens, features_only=True)
    assert out.shape == (2, 5, 48)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("kw", [dict(no_token_positional_embeddings=True),
                                dict(no_decoder_final_norm=True, activation_fn="relu")],
                         ids=["no-positions", "no-final-norm"])
def test_lm_options_full_and_incremental(kw):
    m, d = build_lm(seed=28, **kw)
    ours = ef.TransformerDecoder.from_fairseq(m.decoder)
    tokens = torch.randint(4, 4 + VOCAB, (2, 6), generator=torch.Generator().manual_seed(29))
    state = {}
    with torch.no_grad():
        ref, _ = m.decoder(tokens)
        torch.testing.assert_close(ours(tokens)[0], ref, atol=ATOL, rtol=RTOL)
        steps = [ours(tokens[:, :t], incremental_state=state)[0] for t in range(1, 7)]
    torch.testing.assert_close(torch.cat(steps, 1), ref, atol=ATOL, rtol=RTOL)


@pytest.mark.emulated  # also the CUDA kernels' test in the CUDA emulation build
def test_incremental_left_padded_matches_per_row_runs():
    """A left-padded batch decoded jointly (one prompt pass, then steps at one shared cache
    position) gives each row the logits of that row alone, without pads."""
    m, d = build_lm(seed=6, learned=False, activation_fn="gelu")
    ours = ef.TransformerDecoder.from_fairseq(m.decoder)
    rows = random_rows([3, 6, 1], seed=7)
    cont = torch.randint(4, 4 + VOCAB, (3, 4))
    tokens = left_padded(rows)
    state = {}
    with torch.no_grad():
        steps = [ours(tokens, incremental_state=state)[0]]
        for t in range(cont.size(1)):
            tokens = torch.cat([tokens, cont[:, t:t + 1]], dim=1)
            steps.append(ours(tokens, incremental_state=state)[0])
        got = torch.cat(steps, dim=1)                          # [B, 1 + 4, V]
        for b, r in enumerate(rows):
            full = torch.cat([torch.tensor(r), cont[b]])[None]
            ref, _ = m.decoder(full)
            torch.testing.assert_close(got[b], ref[0, len(r) - 1:], atol=ATOL, rtol=RTOL)


def _mt_steps(m, ours, src, tokens, orders, beam=1):
    """Decode `tokens` step by step with both decoders, reordering at the steps in `orders`;
    yields (ours, fairseq incremental, fairseq full forward) logits of the last position."""
    with torch.no_grad():
        enc = m.encoder(src, src_lengths=src.ne(PAD).sum(1))
        expand = torch.arange(src.size(0)).repeat_interleave(beam)
        enc = m.encoder.reorder_encoder_out(enc, expand)
        s_ref, s_out = {}, {}
        for t in range(1, tokens.size(1) + 1):
            if t in orders:
                order = orders[t]
                m.decoder.reorder_incremental_state_scripting(s_ref, order)
                ours.reorder_incremental_state_scripting(s_out, order)
                enc = m.encoder.reorder_encoder_out(enc, order)
                tokens = tokens.index_select(0, order)
            prev = tokens[:, :t]
            ref, _ = m.decoder(prev, encoder_out=enc, incremental_state=s_ref)
            out, _ = ours(prev, encoder_out=enc, incremental_state=s_out)
            full, _ = m.decoder(prev, encoder_out=enc)
            yield out, ref, full[:, -1:]


def test_reorder_beams_and_shrink_like_fairseq():
    """Beam-search reorders (within the beams of a sentence), then fairseq dropping a finished
    sentence (the batch shrinks), step by step against fairseq's own incremental decoder."""
    m, d = build_mt(normalize_before=True, seed=8)
    ours = ef.TransformerDecoder.from_fairseq(m.decoder)
    src = left_padded(random_rows([4, 7, 3], seed=9, hi=4 + 50))
    g = torch.Generator().manual_seed(10)
    tokens = torch.cat([torch.full((6, 1), EOS), torch.randint(4, 4 + VOCAB, (6, 6), generator=g)], dim=1)
    orders = {2: torch.tensor([1, 0, 2, 2, 5, 4]), 3: torch.tensor([0, 0, 3, 2, 4, 4]),
              4: torch.tensor([3, 2, 4, 5]), 6: torch.tensor([2, 3])}
    for out, ref, full in _mt_steps(m, ours, src, tokens, orders, beam=2):
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(out, full, atol=ATOL, rtol=RTOL)


def test_reorder_across_sentences_matches_full_forward():
    """Any permutation of rows is exact. (fairseq 0.12's own incremental decoder keeps the
    cached encoder K/V when the batch size does not change, so only the full forward is the
    reference here.)"""
    m, d = build_mt(normalize_before=False, seed=8)
    ours = ef.TransformerDecoder.from_fairseq(m.decoder)
    src = left_padded(random_rows([4, 7, 3, 6], seed=9, hi=4 + 50))
    g = torch.Generator().manual_seed(11)
    tokens = torch.cat([torch.full((4, 1), EOS), torch.randint(4, 4 + VOCAB, (4, 5), generator=g)], dim=1)
    orders = {2: torch.tensor([3, 1, 1, 0]), 3: torch.tensor([2, 0]), 4: torch.tensor([1, 1, 0])}
    for out, _, full in _mt_steps(m, ours, src, tokens, orders):
        torch.testing.assert_close(out, full, atol=ATOL, rtol=RTOL)


# ---------------------------------------------------------------------------- SequenceGenerator
@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("prefix", [False, True], ids=["noprefix", "prefix"])
@pytest.mark.parametrize("normalize_before,learned", [(True, True), (False, False)],
                         ids=["prenorm-learned", "postnorm-sinusoidal"])
def test_lm_sequence_generator(beam, prefix, normalize_before, learned):
    m, d = build_lm(normalize_before, learned, seed=11)
    ours = swapped(m)
    rows = random_rows([3, 1, 5], seed=12)
    sample = {"net_input": {"src_tokens": right_padded(rows), "src_lengths": torch.tensor([3, 1, 5])}}
    # prompts of different lengths, right-padded: fairseq forces a prefix token where it is not pad
    prefix_tokens = right_padded(rows) if prefix else None
    kw = dict(beam_size=beam, max_len_b=12, min_len=2)
    ref = run(m, d, sample, prefix_tokens, **kw)
    out = run(ours, d, sample, prefix_tokens, **kw)
    assert_same_hypos(ref, out)


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("prefix", [False, True], ids=["noprefix", "prefix"])
@pytest.mark.parametrize("normalize_before,learned", [(True, False), (False, True)],
                         ids=["prenorm-sinusoidal", "postnorm-learned"])
def test_mt_sequence_generator(beam, prefix, normalize_before, learned):
    m, d = build_mt(normalize_before, learned, seed=13)
    ours = swapped(m)
    rows = random_rows([6, 2, 9, 4], seed=14, hi=4 + 50)
    src = left_padded([r + [EOS] for r in rows])    # fairseq's default: left-padded source
    sample = {"net_input": {"src_tokens": src, "src_lengths": src.ne(PAD).sum(1)}}
    prefix_tokens = right_padded(random_rows([2, 1, 3, 1], seed=15)) if prefix else None
    kw = dict(beam_size=beam, max_len_a=1.0, max_len_b=3)
    ref = run(m, d, sample, prefix_tokens, **kw)
    out = run(ours, d, sample, prefix_tokens, **kw)
    assert_same_hypos(ref, out)


def _eos_prone(model, src, alpha=0.35):
    """Point the EOS output row along the mean decoder feature so some sentences end early and
    fairseq drops them from the batch (batch shrinking); alpha tuned for seed 16."""
    with torch.no_grad():
        enc = model.encoder(src, src_lengths=src.ne(PAD).sum(1))
        g = torch.Generator().manual_seed(0)
        prev = torch.cat([torch.full((src.size(0), 1), EOS),
                          torch.randint(4, 4 + VOCAB, (src.size(0), 6), generator=g)], 1)
        feat, _ = model.decoder(prev, encoder_out=enc, features_only=True)
        mu = feat.reshape(-1, feat.size(-1)).mean(0)
        w = model.decoder.output_projection.weight
        w[EOS] = mu / mu.norm() * w[4:].norm(dim=1).mean() * alpha
    return model


def test_beam_search_batch_shrinks():
    m, d = build_mt(normalize_before=True, seed=16)
    rows = random_rows([7, 3, 5, 8, 2, 6], seed=17, hi=4 + 50)
    src = left_padded([r + [EOS] for r in rows])
    _eos_prone(m, src)
    ours = swapped(m)
    spy = ReorderSpy(ours.decoder)
    sample = {"net_input": {"src_tokens": src, "src_lengths": src.ne(PAD).sum(1)}}
    kw = dict(beam_size=3, max_len_a=1.5, max_len_b=4)
    ref = run(m, d, sample, **kw)
    out = run(ours, d, sample, **kw)
    assert_same_hypos(ref, out)
    full = 3 * len(rows)
    assert len(set(spy.sizes)) >= 3 and min(spy.sizes) < full, f"batch did not shrink: {set(spy.sizes)}"


@pytest.mark.parametrize("kind", ["lm", "mt"])
def test_sampling_same_tokens(kind):
    if kind == "lm":
        m, d = build_lm(seed=18, factor=1.5)
        src = right_padded(random_rows([2, 4], seed=19))
        prefix = src
    else:
        m, d = build_mt(seed=18, factor=1.5)
        src = left_padded([r + [EOS] for r in random_rows([4, 7], seed=19, hi=4 + 50)])
        prefix = None
    ours = swapped(m)
    sample = {"net_input": {"src_tokens": src, "src_lengths": src.ne(PAD).sum(1)}}
    # what task.build_generator makes for --sampling --sampling-topk 8
    kw = dict(beam_size=2, max_len_b=10, search_strategy=search.Sampling(d, sampling_topk=8))
    ref = run(m, d, sample, prefix, seed=1234, **kw)
    out = run(ours, d, sample, prefix, seed=1234, **kw)
    assert_same_hypos(ref, out)


def test_preallocated_cache_and_optimize():
    m, d = build_lm(seed=20)
    ours = ef.optimize(copy.deepcopy(m), max_batch=8, max_seq_len=32)
    assert isinstance(ours.decoder, ef.TransformerDecoder)
    sample = {"net_input": {"src_tokens": right_padded(random_rows([2, 3], seed=21)),
                            "src_lengths": torch.tensor([2, 3])}}
    kw = dict(beam_size=4, max_len_b=10)
    ref = run(m, d, sample, **kw)
    assert_same_hypos(ref, run(ours, d, sample, **kw))
    assert_same_hypos(ref, run(ours, d, sample, **kw))   # the cache is reused
    # one preallocated cache: an older incremental_state cannot continue after a newer one
    dec, tok = ours.decoder, torch.full((2, 1), EOS)
    old, new = {}, {}
    dec(tok, incremental_state=old)
    dec(tok, incremental_state=new)
    with pytest.raises(RuntimeError, match="taken over by a newer decode"):
        dec(torch.cat([tok, tok], 1), incremental_state=old)
    with pytest.raises(ValueError, match="max_batch=8"):
        dec(torch.full((9, 1), EOS), incremental_state={})


def test_layerdrop_model_uses_all_layers_like_fairseq_eval():
    m, d = build_lm(seed=22, decoder_layerdrop=0.5, decoder_layers=4)
    m.train()   # a LayerDropModuleList drops layers when iterated in training mode
    ours = ef.TransformerDecoder.from_fairseq(m.decoder)
    m.eval()
    assert len(ours.layers) == 4
    tokens = torch.randint(4, 4 + VOCAB, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens)[0], m.decoder(tokens)[0], atol=ATOL, rtol=RTOL)


# ---------------------------------------------------------------------------- checkpoints
def test_load_checkpoint_requires_trust(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not read")
    with pytest.raises(ValueError, match="trust_checkpoint=True"):
        ef.load_checkpoint(str(path))
    with pytest.raises(ValueError, match="pickles"):
        ef.load_checkpoint(str(path), trust_checkpoint="yes")


def test_load_checkpoint_roundtrip(tmp_path):
    m, d = build_lm(seed=23)
    d.save(str(tmp_path / "dict.txt"))
    args = copy.deepcopy(m.decoder.args)
    args.arch, args.task, args.data = "transformer_lm", "language_modeling", str(tmp_path)
    args.tokens_per_sample = 64
    path = tmp_path / "checkpoint.pt"
    torch.save({"args": args, "model": m.state_dict(), "extra_state": {"train_iterator": {"epoch": 1}},
                "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "Adam",
                                       "lr_scheduler_state": {"best": None}, "num_updates": 0}]},
               str(path))
    before = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    model, cfg, task = ef.load_checkpoint(str(path), trust_checkpoint=True)
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == before
    assert isinstance(model.decoder, ef.TransformerDecoder)
    sample = {"net_input": {"src_tokens": right_padded(random_rows([3, 2], seed=24)),
                            "src_lengths": torch.tensor([3, 2])}}
    assert_same_hypos(run(m, d, sample, beam_size=2, max_len_b=8),
                      run(model, task.target_dictionary, sample, beam_size=2, max_len_b=8))


# ---------------------------------------------------------------------------- refused options, bad input
@pytest.mark.parametrize("kw,match", [
    (dict(adaptive_softmax_cutoff="20,40", share_decoder_input_output_embed=False), "adaptive softmax"),
    (dict(quant_noise_pq=0.1), "quant-noise"),
    (dict(activation_fn="tanh"), "activation_fn 'tanh'"),
    (dict(scale_attn=True), "scale_attn"),
    (dict(scale_fc=True), "scale_fc"),
])
def test_unsupported_lm_options_raise(kw, match):
    m, _ = build_lm(**kw)
    with pytest.raises(ValueError, match=match):
        ef.TransformerDecoder.from_fairseq(m.decoder)


def test_unsupported_mt_options_raise():
    m, _ = build_mt(cross_self_attention=True)
    with pytest.raises(ValueError, match="cross_self_attention"):
        ef.TransformerDecoder.from_fairseq(m.decoder)
    with pytest.raises(TypeError, match="fairseq TransformerDecoder"):
        ef.TransformerDecoder.from_fairseq(m.encoder)


def test_bad_inputs_raise():
    m, d = build_mt(seed=25)
    ours = ef.TransformerDecoder.from_fairseq(m.decoder)
    src = left_padded(random_rows([3, 5], seed=26, hi=4 + 50))
    with torch.no_grad():
        enc = m.encoder(src, src_lengths=src.ne(PAD).sum(1))
    prev = torch.tensor([[EOS, 5, 6], [EOS, 7, 8]])
    with pytest.raises(ValueError, match="alignment"):
        ours(prev, encoder_out=enc, alignment_layer=1)
    with pytest.raises(ValueError, match="encoder_out is required"):
        ours(prev)
    with pytest.raises(ValueError, match=r"prev_output_tokens must be \[B, T\] int64"):
        ours(prev.float(), encoder_out=enc)
    with pytest.raises(ValueError, match="max_positions"):
        ours(torch.full((2, 65), 5), encoder_out=enc)
    with pytest.raises(ValueError, match="one end only"):
        ours(torch.tensor([[EOS, PAD, 6], [EOS, 7, 8]]), encoder_out=enc)
    with pytest.raises(ValueError, match=r"\[Sk, B = 3, C\]"):
        ours(torch.cat([prev, prev[:1]]), encoder_out=enc)
    state = {}
    ours(prev[:, :1], encoder_out=enc, incremental_state=state)
    with pytest.raises(ValueError, match="whole prefix"):
        ours(prev, encoder_out=enc, incremental_state=state)
    with pytest.raises(ValueError, match="new_order values must be in"):
        ours.reorder_incremental_state(state, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="max_batch and max_seq_len go together"):
        ef.TransformerDecoder.from_fairseq(m.decoder, max_batch=4)
    with pytest.raises(ValueError, match="do not support dtype torch.float16 on cpu"):
        ef.TransformerDecoder.from_fairseq(m.decoder, dtype=torch.float16)


def test_incremental_pad_after_tokens_is_a_key():
    """A pad after real tokens (fairseq feeds those only to -inf-scored beams) does not stop
    the decode; rows without pads are unaffected."""
    m, d = build_lm(seed=27)
    ours = ef.TransformerDecoder.from_fairseq(m.decoder)
    s_out, s_ref = {}, {}
    tok = torch.tensor([[5, 6], [7, 8]])
    with torch.no_grad():
        ours(tok, incremental_state=s_out)
        m.decoder(tok[:, :1], incremental_state=s_ref)
        m.decoder(tok, incremental_state=s_ref)
        tok = torch.cat([tok, torch.tensor([[PAD], [9]])], 1)
        out, _ = ours(tok, incremental_state=s_out)
        ref, _ = m.decoder(tok, incremental_state=s_ref)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], ref[1], atol=ATOL, rtol=RTOL)


def test_lm_beam_prefix_pad_candidates():
    """Beam search forced through prefix tokens: at step 0 only one candidate per sentence is
    finite and topk fills the beam with -inf ones, the pad among them (fairseq's init and this
    vocabulary size make it pick pad); the decode must go on and agree with fairseq."""
    d = make_dict(8188)
    args = argparse.Namespace(decoder_layers=2, decoder_embed_dim=128, decoder_ffn_embed_dim=512,
                              decoder_attention_heads=2, decoder_learned_pos=True, activation_fn="gelu",
                              dropout=0.0, share_decoder_input_output_embed=False, max_target_positions=64)
    base_lm_architecture(args)
    torch.manual_seed(0)
    m = TransformerLanguageModel.build_model(args, SimpleNamespace(source_dictionary=d, target_dictionary=d))
    with torch.no_grad():
        m.decoder.layer_norm.weight.mul_(4.0)
    m.eval()
    ours = swapped(m)
    seen = []
    forward = ours.decoder.forward

    def spy(tokens, *a, **k):
        seen.append(bool(tokens[:, 1:].eq(PAD).any()))
        return forward(tokens, *a, **k)
    ours.decoder.forward = spy
    prompts = torch.randint(4, len(d), (2, 4), generator=torch.Generator().manual_seed(1))
    sample = {"net_input": {"src_tokens": prompts, "src_lengths": torch.tensor([4, 4])}}
    kw = dict(beam_size=4, max_len_b=8, min_len=8)
    assert_same_hypos(run(m, d, sample, prompts, **kw), run(ours, d, sample, prompts, **kw))
    assert any(seen), "no pad reached the decoder: the case this test is for did not happen"


def test_import_eet_like_does_not_import_fairseq():
    import subprocess
    import sys
    code = "import sys, eet_like; assert 'fairseq' not in sys.modules, 'fairseq imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
