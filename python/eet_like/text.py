"""Text in, text out around a GPT-2 model: the tokenizer loader and the batched generation of
decoded continuations that `eet-like predict` (eet_like.app.cli) and the Ray workers
(eet_like.ray) share, so both produce the same records."""
from .errors import UsageError


def load_tokenizer(path):
    """transformers' AutoTokenizer from directory `path`; UsageError when transformers is
    missing or `path` holds no usable tokenizer."""
    try:
        # transformers is an optional dependency (the `hf` extra): imported on first use.
        from transformers import AutoTokenizer
    except ImportError as e:
        raise UsageError("this command needs transformers for the tokenizer: pip install transformers") from e
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UsageError(f"no usable tokenizer in {path!r} (pass --tokenizer DIR): {str(e).splitlines()[0]}") from e


def generate_window(model, tok, prompts, batch_size, device, kw, progress=None):
    """Continuations (decoded new tokens) of token-id lists `prompts`, in their order. They run
    batch_size at a time, sorted by length so each left-padded batch has little padding.
    `kw` goes to model.generate; `progress(n)` is called after each batch of n prompts."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = tok.pad({"input_ids": [prompts[i] for i in idx]}, return_tensors="pt")
        gen = model.generate(batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                             pad_token_id=tok.pad_token_id, **kw)
        new = gen[:, batch["input_ids"].shape[1]:].cpu()
        for row, i in enumerate(idx):
            results[i] = tok.decode(new[row], skip_special_tokens=True)
        if progress is not None:
            progress(len(idx))
    return results
