"""The generate() loop over a model that offers the joint-decoding interface:

    model.check_request(rows, max_length)   raise before any compute if it does not fit
    model.prefill(input_ids [n, S], key_start [n] int32) -> last-position logits [n, V]
    model.decode_step(tokens [n]) -> logits [n, V]       one token per row, static shapes
    model.reorder_cache(index [m])                       row b <- old row index[b]

A left-padded batch is prefilled once (num_beams / num_return_sequences copies are made by
reordering the cache, not by re-running the prompt), then decoded one token per row per step.
Semantics, defaults and output shapes follow transformers' generate (see config.py and
logits_process.py); rows that finish keep being fed pad tokens and are padded with pad_token_id.
"""
import torch

from .. import _threads, ops
from ..outputs import GenerateOutput
from ..validation import check_like_ids, check_token_ids
from . import beam as _beam
from . import logits_process, sampling
from .config import GenerationOptions, resolve


def _infer_mask(ids, opts: GenerationOptions):
    """transformers' rule: without an attention_mask, pad tokens are masked only when the pad
    id is known, present, and not an eos id."""
    pad, eos = opts.pad_token_id, opts.eos_token_id
    if pad is None or (eos is not None and pad in eos) or not bool((ids == pad).any()):
        return torch.ones_like(ids)
    return (ids != pad).long()


def generate(model, input_ids=None, attention_mask=None, streamer=None, generator=None, seed=None,
             generation_config=None, **kwargs):
    """transformers-compatible generate. Options (transformers' names and defaults):
    max_new_tokens, max_length, min_new_tokens, min_length, do_sample, temperature, top_k,
    top_p, repetition_penalty, no_repeat_ngram_size, num_beams, length_penalty, early_stopping,
    num_return_sequences, eos_token_id, pad_token_id, bos_token_id, return_dict_in_generate,
    output_scores, output_logits, use_cache; plus streamer (BaseStreamer-like: put/end),
    generator (torch.Generator) or seed (int) for reproducible sampling.
    Returns [B * num_return_sequences, prompt_len + new] int64, or a GenerateOutput.
    On CPU the thread count follows the machine's load (eet_like._threads)."""
    with _threads.adaptive(model.device):
        return _generate(model, input_ids, attention_mask, streamer, generator, seed, generation_config, kwargs)


def _generate(model, input_ids, attention_mask, streamer, generator, seed, generation_config, kwargs):
    device = model.device
    if input_ids is not None:
        check_token_ids(input_ids)
        check_like_ids(attention_mask, "attention_mask", input_ids)
        prompt_len = input_ids.shape[1]
    else:
        if attention_mask is not None:
            raise ValueError("attention_mask given without input_ids")
        prompt_len = 1
    opts = resolve(model.generation_defaults, generation_config, kwargs, prompt_len, model.config.n_positions)
    if input_ids is None:
        if opts.bos_token_id is None:
            raise ValueError("input_ids is None and there is no bos_token_id to start from")
        input_ids = torch.full((1, 1), opts.bos_token_id, dtype=torch.int64)
    if streamer is not None:
        if not (callable(getattr(streamer, "put", None)) and callable(getattr(streamer, "end", None))):
            raise TypeError("streamer must have put() and end() methods (a transformers BaseStreamer)")
        if opts.num_beams > 1:
            raise ValueError("streamer cannot be used with beam search (num_beams > 1), as in transformers")
    gen = sampling.make_generator(generator, seed, device)

    ids = input_ids.to(device=device, dtype=torch.int64)
    mask = _infer_mask(ids, opts) if attention_mask is None else attention_mask.to(device)
    if bool((mask[:, -1] == 0).any()):
        raise ValueError("input_ids look right-padded (attention_mask is 0 at the last position); "
                         "decoder-only generation needs left padding: set padding_side='left' on the tokenizer")
    key_start, _ = ops.mask_to_ranges(mask)
    batch = ids.shape[0]
    rows = batch * opts.expand
    model.check_request(rows, opts.max_length)

    logits = model.prefill(ids, key_start)
    if opts.expand > 1:
        # Copies of each prompt for beams / samples share its prefill: replicate cache rows.
        src = torch.arange(batch, device=device).repeat_interleave(opts.expand)
        model.reorder_cache(src)
        logits = logits.index_select(0, src)
        ids = ids.index_select(0, src)
        key_start = key_start.index_select(0, src)
    if streamer is not None:
        streamer.put(ids.cpu())
    eos_ids = None if opts.eos_token_id is None else torch.tensor(opts.eos_token_id, device=device)
    vocab = model.config.vocab_size
    in_vocab = [t for t in (opts.eos_token_id or ()) if t < vocab]  # ids the model can emit
    suppress = torch.tensor(in_vocab, device=device) if in_vocab else None
    pad_counts = key_start.long()
    if opts.num_beams > 1:
        out = _beam_search(model, ids, pad_counts, logits, opts, eos_ids, suppress, gen, batch)
    else:
        out = _sample(model, ids, pad_counts, logits, opts, eos_ids, suppress, gen, streamer)
    if streamer is not None:
        streamer.end()
    return out if opts.return_dict_in_generate else out.sequences


def _sample(model, ids, pad_counts, logits, opts: GenerationOptions, eos_ids, suppress, gen, streamer) -> GenerateOutput:
    """Greedy or multinomial decoding of n rows; stops at max_length or when every row has
    produced an eos (finished rows are fed and padded with pad_token_id)."""
    n, s = ids.shape
    seqs = torch.full((n, opts.max_length), opts.pad_token_id if opts.pad_token_id is not None else 0,
                      dtype=torch.int64, device=ids.device)
    seqs[:, :s] = ids
    unfinished = torch.ones(n, dtype=torch.bool, device=ids.device)
    pad = opts.pad_token_id
    all_scores, all_logits = [], []
    cur = s
    while True:
        raw = logits.to(dtype=torch.float32, copy=True)
        scores = logits_process.process(opts, seqs[:, :cur], raw, pad_counts, suppress)
        if opts.output_scores:
            all_scores.append(scores if scores is not raw else scores.clone())
        if opts.output_logits:
            all_logits.append(raw)
        tokens = sampling.sample(scores, gen) if opts.do_sample else sampling.greedy(scores)
        if eos_ids is not None:
            tokens = torch.where(unfinished, tokens, pad)
        seqs[:, cur] = tokens
        cur += 1
        if streamer is not None:
            streamer.put(tokens.cpu())
        if eos_ids is not None:
            unfinished &= ~torch.isin(tokens, eos_ids)
        # No row can finish while eos is suppressed (cur <= min_length): skip that host sync.
        if cur >= opts.max_length or (eos_ids is not None and cur > opts.min_length
                                      and not bool(unfinished.any())):
            break
        _threads.tick()
        logits = model.decode_step(tokens)
    return GenerateOutput(seqs[:, :cur], tuple(all_scores) if opts.output_scores else None,
                          tuple(all_logits) if opts.output_logits else None)


def _beam_search(model, ids, pad_counts, logits, opts: GenerationOptions, eos_ids, suppress, gen, batch) -> GenerateOutput:
    n, s = ids.shape
    st = _beam.init_state(ids, batch, opts)
    all_scores, all_logits = [], []
    flat = ids
    cur = s
    while True:
        raw = logits.to(dtype=torch.float32, copy=True)
        log_probs = torch.log_softmax(raw, dim=-1)
        log_probs = logits_process.process(opts, flat, log_probs, pad_counts, suppress)
        if opts.output_scores:
            all_scores.append(log_probs.clone())
        if opts.output_logits:
            all_logits.append(raw)
        src = _beam.step(st, log_probs, cur, s, opts, eos_ids, gen)
        cur += 1
        if _beam.done(st, opts):
            break
        _threads.tick()
        model.reorder_cache(src)
        flat = st.running_sequences[:, :, :cur].reshape(n, cur)
        logits = model.decode_step(flat[:, -1].contiguous())
    seqs, seq_scores, beam_indices = _beam.finalize(st, s, opts.num_return_sequences)
    return GenerateOutput(seqs, tuple(all_scores) if opts.output_scores else None,
                          tuple(all_logits) if opts.output_logits else None,
                          sequences_scores=seq_scores if opts.output_scores else None,
                          beam_indices=beam_indices)
