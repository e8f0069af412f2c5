"""Beam search state and step, vectorized over the batch with static shapes, following
transformers' (>= 4.50) beam search exactly so the tokens match: every step keeps the top
K = max(2, 1 + #eos) * num_beams continuations, the best num_beams non-finished ones run on,
finished ones compete (length-penalized) for the num_beams output slots; early_stopping
True / False / "never" decide when the search stops."""
from dataclasses import dataclass
from typing import Optional

import torch

from .config import GenerationOptions


def _gather(t, idx):
    """t [B, beams, ...], idx [B, k] -> t[b, idx[b, j], ...]."""
    while idx.dim() < t.dim():
        idx = idx.unsqueeze(-1)
    return torch.take_along_dim(t, idx, dim=1)


@dataclass
class BeamState:
    running_sequences: torch.Tensor     # [B, beams, max_length] int64
    running_scores: torch.Tensor        # [B, beams] float32, summed log-probs
    running_indices: torch.Tensor       # [B, beams, max_new] int32, flat source row per step
    sequences: torch.Tensor             # [B, beams, max_length], finished hypotheses
    scores: torch.Tensor                # [B, beams], their length-penalized scores
    indices: torch.Tensor               # [B, beams, max_new]
    is_finished: torch.Tensor           # [B, beams] bool, slot holds a finished hypothesis
    can_improve: torch.Tensor           # [B, 1] bool, running beams may still beat a finished one
    hit_stop: torch.Tensor              # [B, K] bool, last step's candidates that stopped


def init_state(prompt, batch: int, opts: GenerationOptions) -> BeamState:
    """prompt [B * beams, S] (each prompt repeated num_beams times)."""
    nb, s, L = opts.num_beams, prompt.shape[1], opts.max_length
    dev = prompt.device
    eos, pad = opts.eos_token_id, opts.pad_token_id
    fill = (pad if pad else eos[0]) if eos is not None else -1  # transformers' fill value
    running = torch.full((batch, nb, L), fill, dtype=torch.int64, device=dev)
    running[:, :, :s] = prompt.view(batch, nb, s)
    scores = torch.zeros((batch, nb), dtype=torch.float32, device=dev)
    scores[:, 1:] = -1e9  # only the first beam expands at step 0
    idx = torch.full((batch, nb, L - s), -1, dtype=torch.int32, device=dev)
    k = max(2, 1 + (len(eos) if eos else 0)) * nb
    return BeamState(running, scores, idx, running.clone(),
                     torch.full((batch, nb), -1e9, dtype=torch.float32, device=dev), idx.clone(),
                     torch.zeros((batch, nb), dtype=torch.bool, device=dev),
                     torch.ones((batch, 1), dtype=torch.bool, device=dev),
                     torch.zeros((batch, k), dtype=torch.bool, device=dev))


def step(st: BeamState, log_probs, cur_len: int, prompt_len: int, opts: GenerationOptions,
         eos_ids: Optional[torch.Tensor], generator=None) -> torch.Tensor:
    """One beam step from processed log-probs [B * beams, V]. Updates st in place-style
    (rebinding fields) and returns the flat source row of each running beam [B * beams]
    for the KV-cache reorder."""
    b, nb = st.running_scores.shape
    v = log_probs.shape[-1]
    k = st.hit_stop.shape[1]
    acc = (log_probs.view(b, nb, v) + st.running_scores[:, :, None]).reshape(b, nb * v)

    # Top-K continuations over all beams of a prompt.
    if opts.do_sample:
        top_idx = torch.multinomial(torch.softmax(acc, dim=-1), num_samples=k, generator=generator)
        top_lp = torch.gather(acc, 1, top_idx)
    else:
        top_lp, top_idx = torch.topk(acc, k=k)
    src_beam = top_idx // v
    top_ids = top_idx % v
    top_indices = _gather(st.running_indices, src_beam)
    top_seqs = _gather(st.running_sequences, src_beam)
    top_seqs[:, :, cur_len] = top_ids
    offset = torch.arange(b, device=acc.device).view(-1, 1) * nb
    top_indices[:, :, cur_len - prompt_len] = (src_beam + offset).to(top_indices.dtype)

    # Which candidates stop (max length for all, or eos as last token).
    if cur_len + 1 >= opts.max_length:
        hit = torch.ones_like(top_ids, dtype=torch.bool)
    elif eos_ids is not None:
        hit = torch.isin(top_ids, eos_ids)
    else:
        hit = torch.zeros_like(top_ids, dtype=torch.bool)
    st.hit_stop = hit

    # The best num_beams candidates that did not stop keep running.
    run_lp = top_lp + hit.to(torch.float32) * -1.0e9
    nxt = torch.topk(run_lp, k=nb)[1]
    st.running_sequences = _gather(top_seqs, nxt)
    st.running_scores = _gather(run_lp, nxt)
    st.running_indices = _gather(top_indices, nxt)

    # Finished candidates among the top num_beams compete for the output slots.
    top_nb = torch.zeros(k, dtype=torch.bool, device=acc.device)
    top_nb[:nb] = True
    just_finished = hit & top_nb[None, :]
    fin_lp = top_lp / ((cur_len + 1 - prompt_len) ** opts.length_penalty)
    full = torch.all(st.is_finished, dim=-1, keepdim=True) & (opts.early_stopping is True)
    fin_lp = fin_lp + full.to(torch.float32) * -1.0e9
    fin_lp = fin_lp + (~st.can_improve).to(torch.float32) * -1.0e9
    fin_lp = fin_lp + (~just_finished) * -1.0e9
    m_seqs = torch.cat((st.sequences, top_seqs), dim=1)
    m_scores = torch.cat((st.scores, fin_lp), dim=1)
    m_idx = torch.cat((st.indices, top_indices), dim=1)
    m_fin = torch.cat((st.is_finished, just_finished), dim=1)
    best = torch.topk(m_scores, k=nb)[1]
    st.sequences = _gather(m_seqs, best)
    st.scores = _gather(m_scores, best)
    st.indices = _gather(m_idx, best)
    st.is_finished = _gather(m_fin, best)

    # Can a running beam still beat the worst finished one (transformers' heuristic)?
    new_len = cur_len + 1
    if opts.early_stopping == "never" and opts.length_penalty > 0.0:
        best_len = opts.max_length - prompt_len
    else:
        best_len = new_len - prompt_len
    best_running = st.running_scores[:, :1] / (best_len ** opts.length_penalty)
    worst_fin = torch.where(st.is_finished, torch.min(st.scores, dim=1, keepdim=True)[0], -1.0e9)
    st.can_improve = st.can_improve & torch.any(best_running > worst_fin, dim=-1, keepdim=True)

    return st.running_indices[..., cur_len - prompt_len].reshape(-1).long()


def done(st: BeamState, opts: GenerationOptions) -> bool:
    """The whole search stops (one host sync)."""
    improvable = torch.any(st.can_improve)
    open_beam = ~(torch.all(st.is_finished) & (opts.early_stopping is True))
    continuable = ~torch.all(st.hit_stop)
    return not bool(improvable & open_beam & continuable)


def finalize(st: BeamState, prompt_len: int, num_return: int):
    """-> (sequences [B * num_return, prompt + gen], scores [B * num_return],
    beam_indices [B * num_return, gen]), cropped to the longest kept hypothesis."""
    seqs = st.sequences[:, :num_return].flatten(0, 1)
    scores = st.scores[:, :num_return].flatten(0, 1)
    idx = st.indices[:, :num_return].flatten(0, 1)
    gen = int(((idx + 1).bool()).sum(dim=1).max())
    return seqs[:, :prompt_len + gen], scores, idx[:, :gen]
