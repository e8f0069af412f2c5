"""Score processing, in transformers' order and with its exact formulas (so tokens match):
repetition_penalty -> no_repeat_ngram -> min-length eos suppression, then (sampling only)
temperature -> top_k -> top_p. Pure functions on float32 scores [N, V]; `seqs` [N, L] are the
tokens so far, left padding included (as transformers' input_ids)."""
import math
from typing import Optional

import torch

from .config import GenerationOptions


def repetition_penalty(seqs, scores, penalty: float, ignore_before: Optional[torch.Tensor]):
    """Tokens already in a row are divided (score > 0) or multiplied (score < 0) by penalty.
    ignore_before [N]: positions before it (the left padding) do not count."""
    v = scores.shape[-1]
    if ignore_before is not None:
        j = torch.arange(seqs.shape[1], device=seqs.device)
        seqs = seqs.masked_fill(j[None, :] < ignore_before[:, None], v)
    seqs = seqs.clamp(max=v)
    padded = torch.nn.functional.pad(scores, (0, 1))  # column v absorbs ignored ids
    s = torch.gather(padded, 1, seqs)
    s = torch.where(s < 0, s * penalty, s / penalty)
    return padded.scatter(1, seqs, s)[..., :v]


def no_repeat_ngram(seqs, scores, n: int):
    """Ban any token that would complete an n-gram already present in the row."""
    cur_len = seqs.shape[-1]
    if cur_len < n:
        return scores
    prefix = seqs[:, cur_len + 1 - n:]
    windows = seqs.unfold(dimension=1, size=n, step=1)
    matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)
    v = scores.shape[-1]
    banned = scores.new_zeros((scores.shape[0], v + 1), dtype=torch.bool)
    banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=v), v), True)
    return scores.masked_fill(banned[:, :v], -float("inf"))


def suppress_eos(scores, eos_ids: torch.Tensor):
    """eos columns -> -inf (touches only those columns)."""
    return scores.index_fill(1, eos_ids, -math.inf)


def top_k_filter(scores, k: int, min_keep: int = 1):
    k = min(max(k, min_keep), scores.shape[-1])
    kth = torch.topk(scores, k)[0][..., -1, None]
    return scores.masked_fill(scores < kth, -float("inf"))


def top_p_filter(scores, p: float, min_keep: int = 1):
    """Keep the smallest set of most likely tokens whose probability mass reaches p."""
    sorted_logits, sorted_idx = torch.sort(scores, descending=False)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove = cum <= (1 - p)
    remove[..., -min_keep:] = 0
    remove = remove.scatter(1, sorted_idx, remove)
    return scores.masked_fill(remove, -float("inf"))


def process(opts: GenerationOptions, seqs, scores, pad_counts, eos_ids: Optional[torch.Tensor]):
    """All enabled processors for one step. seqs [N, cur_len]; scores [N, V] float32;
    eos_ids: the eos ids inside the vocabulary (suppressed below min_length)."""
    if opts.repetition_penalty != 1.0:
        scores = repetition_penalty(seqs, scores, opts.repetition_penalty, pad_counts)
    if opts.no_repeat_ngram_size > 0:
        scores = no_repeat_ngram(seqs, scores, opts.no_repeat_ngram_size)
    if eos_ids is not None and opts.min_length > 0 and seqs.shape[-1] < opts.min_length:
        scores = suppress_eos(scores, eos_ids)
    if opts.do_sample:
        # Beam sampling keeps one more candidate than there are eos tokens (transformers).
        min_keep = (len(opts.eos_token_id) + 1 if opts.eos_token_id else 2) if opts.num_beams > 1 else 1
        if opts.temperature != 1.0:
            scores = scores / opts.temperature
        if opts.top_k != 0:
            scores = top_k_filter(scores, opts.top_k, min_keep)
        if opts.top_p < 1.0:
            scores = top_p_filter(scores, opts.top_p, min_keep)
    return scores
