"""The `eet-like` command (also `python -m eet_like`).

    eet-like demo                          offline demo: semantic search (real MiniLM weights) and
                                           GPT-2-shaped generation speed, eet_like vs transformers
    eet-like generate --model DIR ...      text generation with any local GPT-2 checkpoint
    eet-like embed --model DIR --input F   sentence embeddings (JSONL or .npy)
    eet-like predict --model DIR --data-file in.jsonl --output-file out.jsonl ...
                                           batch generation over a JSONL file
    eet-like embed|predict ... --ray       the same on a Ray cluster (app/ray_cli.py on eet_like.ray)
    eet-like bench                         side-by-side benchmarks (GPT-2 and BERT shapes)
    eet-like serve --model DIR ...         OpenAI-compatible HTTP server (app/serve.py on eet_like.server)

Every user mistake ends with one line on stderr and exit status 2, never a traceback.
"""
import argparse
import os
import sys

import numpy as np
import torch

from .. import BertModel, GPT2LMHeadModel, encode_sentences
from ..errors import UsageError
from ..text import generate_window, load_tokenizer
from . import bench, demo, serve
from .common import (check_device, embedding_record, model_type_of, predict_record, quantize_arg, read_jsonl,
                     read_lines, resume_point, sampling_kwargs, torch_dtype)


PREDICT_WINDOW = 16  # batches sorted together by length in `predict` (see cmd_predict)


# ---------------------------------------------------------------- helpers

def _check_gpt2(args):
    """The cheap checks of a GPT-2 command's --model/--dtype/--device, before anything loads."""
    model_type = model_type_of(args.model)
    if model_type != "gpt2":
        raise UsageError(f"--model: model_type {model_type!r} is not supported by this command (supported: gpt2)")
    dtype = torch_dtype(args.dtype)
    check_device(args.device, dtype)
    return dtype


def _load_gpt2(args, max_batch, max_seq_len=None):
    kw = dict(dtype=_check_gpt2(args), device=args.device, max_batch=max_batch, quantize=quantize_arg(args))
    if max_seq_len is not None:
        kw["max_seq_len"] = max_seq_len
    return GPT2LMHeadModel.from_pretrained(args.model, **kw)


# ---------------------------------------------------------------- generate

def cmd_generate(args):
    prompts = [args.prompt] if args.prompt is not None else [l for l in read_lines(args.input, "--input") if l]
    if not prompts:
        raise UsageError("nothing to generate: give --prompt TEXT or --input FILE with one prompt per line")
    if args.stream and (args.num_beams or 1) > 1:
        raise UsageError("--stream prints one sequence as it grows: it cannot be combined with --num-beams > 1")
    _check_gpt2(args)
    tok = load_tokenizer(args.tokenizer or args.model)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = _load_gpt2(args, max_batch=max(args.num_beams or 1, 1))
    kw = sampling_kwargs(args)
    if args.seed is not None:
        kw["generator"] = torch.Generator(device=args.device).manual_seed(args.seed)
    for prompt in prompts:
        enc = tok([prompt], return_tensors="pt")
        ids, mask = enc["input_ids"].to(args.device), enc["attention_mask"].to(args.device)
        if args.stream:
            from transformers import TextStreamer
            print(prompt, end="", flush=True)
            model.generate(ids, attention_mask=mask, pad_token_id=tok.pad_token_id,
                           streamer=TextStreamer(tok, skip_prompt=True), **kw)
        else:
            out = model.generate(ids, attention_mask=mask, pad_token_id=tok.pad_token_id, **kw)
            print(tok.decode(out[0], skip_special_tokens=True))
    return 0


# ---------------------------------------------------------------- embed

def _ray_cli(args):
    """eet_like.app.ray_cli (on eet_like.ray) for `--ray`; the Ray options without --ray are a mistake."""
    if args.ray and args.quantize != "none":
        raise UsageError("--quantize with --ray is not supported yet (the Ray workers load float weights)")
    if not args.ray:
        for opt in ("ray_address", "num_workers", "threads_per_worker"):
            if getattr(args, opt) is not None:
                raise UsageError(f"--{opt.replace('_', '-')} needs --ray")
        for opt in ("input", "output", "data_file", "output_file"):
            if (getattr(args, opt, None) or "").rstrip("/").endswith(".parquet"):
                raise UsageError(f"--{opt.replace('_', '-')}: Parquet needs --ray")
        return None
    try:
        # Ray is heavy and optional (the `ray` extra): imported for --ray only.
        from . import ray_cli
    except ImportError as e:
        raise UsageError(f"--ray needs Ray, which is not installed: pip install 'eet_like[ray]' (or 'ray[data]'): "
                         f"{e.__cause__ or e}") from None
    return ray_cli


def cmd_embed(args):
    ray_cli = _ray_cli(args)
    if ray_cli:
        return ray_cli.run_embed_cli(args)
    model_type = model_type_of(args.model)
    if model_type != "bert":
        raise UsageError(f"--model: model_type {model_type!r} is not supported by embed (supported: bert)")
    texts = [l for l in read_lines(args.input, "--input") if l.strip()]
    if not texts:
        raise UsageError(f"--input: {args.input!r} has no non-empty line")
    out = args.output or os.path.splitext(args.input)[0] + ".embeddings.jsonl"
    if not (out.endswith(".jsonl") or out.endswith(".npy")):
        raise UsageError(f"--output must end in .jsonl or .npy, got {out!r}")
    dtype = torch_dtype(args.dtype)
    check_device(args.device, dtype)
    tok = load_tokenizer(args.model)
    model = BertModel.from_pretrained(args.model, dtype=dtype, device=args.device, quantize=quantize_arg(args))
    emb = encode_sentences(model, tok, texts, pooling=args.pooling, normalize=not args.no_normalize,
                           batch_size=args.batch_size)
    emb = emb.float().cpu().numpy() if isinstance(emb, torch.Tensor) else np.asarray(emb, dtype=np.float32)
    if out.endswith(".npy"):
        np.save(out, emb)
    else:
        with open(out, "w", encoding="utf-8") as f:
            for text, vec in zip(texts, emb):
                f.write(embedding_record({"text": text}, vec) + "\n")
    print(f"wrote {len(texts)} embeddings of dim {emb.shape[1]} to {out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- predict

def cmd_predict(args):
    from tqdm import tqdm  # a dependency of transformers, not of eet_like: loaded when needed
    for name in ("batch_size", "src_length", "max_length"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    ray_cli = _ray_cli(args)
    if ray_cli:
        return ray_cli.run_predict_cli(args)
    _check_gpt2(args)
    rows = read_jsonl(args.data_file)
    done = 0
    if os.path.exists(args.output_file):
        if not args.resume:
            raise UsageError(f"--output-file {args.output_file!r} exists: pass --resume to continue it "
                             "or remove it")
        done = resume_point(args.output_file, rows)
    todo = list(range(done, len(rows)))
    if not todo:
        print(f"nothing to do: {args.output_file} already has all {len(rows)} results", file=sys.stderr)
        return 0
    tok = load_tokenizer(args.tokenizer or args.model)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    encoded = {i: tok(rows[i]["src"])["input_ids"][-args.src_length:] for i in todo}  # keep the prompt's end
    empty = [i for i in todo if not encoded[i]]
    if empty:
        raise UsageError(f"--data-file {args.data_file}: record {empty[0] + 1} has an empty src")
    model = _load_gpt2(args, max_batch=args.batch_size, max_seq_len=args.src_length + args.max_length)
    kw = sampling_kwargs(argparse.Namespace(max_new_tokens=args.max_length, do_sample=args.do_sample,
                                            top_k=args.top_k, top_p=args.top_p, temperature=args.temperature,
                                            repetition_penalty=args.repetition_penalty, num_beams=None))
    if args.seed is not None:
        kw["generator"] = torch.Generator(device=args.device).manual_seed(args.seed)
    # Records go in windows of PREDICT_WINDOW batches, in input order; inside a window they are
    # sorted by length so each batch has little padding. A window's results are written in input
    # order and flushed before the next starts: an interrupted run loses at most one window and
    # --resume continues after the last written record.
    window = args.batch_size * PREDICT_WINDOW
    with open(args.output_file, "a", encoding="utf-8") as out, \
            tqdm(total=len(rows), initial=done, desc="predict", unit="rec", disable=args.quiet) as bar:
        for w in range(0, len(todo), window):
            part = todo[w:w + window]
            texts = generate_window(model, tok, [encoded[i] for i in part], args.batch_size, args.device, kw,
                                    progress=bar.update)
            for i, text in zip(part, texts):
                out.write(predict_record(rows[i], text) + "\n")
            out.flush()
    print(f"wrote {len(todo)} results to {args.output_file}" + (f" (after {done} from before)" if done else ""),
          file=sys.stderr)
    return 0


# ---------------------------------------------------------------- bench, demo

def cmd_bench(args):
    check_device(args.device, torch.float32 if args.device == "cpu" else torch.float16)
    return bench.run(quick=args.quick, json_path=args.json, device=args.device,
                     quantize=None if args.quantize == "both" else args.quantize, busy=args.busy_core)


def cmd_demo(args):
    return demo.run(quick=args.quick, quantize=None if args.quantize == "none" else args.quantize)


# ---------------------------------------------------------------- parser

class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    p = _Parser(prog="eet-like", description="Fast transformer inference (eet_like).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("demo", help="offline demo: semantic search + generation speed vs transformers")
    d.add_argument("--quick", action="store_true", help="2-layer generation model, 16 tokens: a fast look")
    d.add_argument("--quantize", default="none", choices=["none", "int8"],
                   help="int8: both eet_like models with int8 weights")
    d.set_defaults(func=cmd_demo)

    def model_opts(q):
        q.add_argument("--model", required=True, help="local transformers checkpoint directory")
        q.add_argument("--dtype", default="float32", help="float32 (CPU/GPU), float16, bfloat16 (GPU)")
        q.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
        q.add_argument("--quantize", default="none", choices=["none", "int8"],
                       help="int8: int8 weights (CPU float32: also per-token int8 activations; CUDA: weight-only)")

    def sampling_opts(q):
        q.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
        q.add_argument("--top-k", type=int, default=None)
        q.add_argument("--top-p", type=float, default=None)
        q.add_argument("--temperature", type=float, default=None)
        q.add_argument("--repetition-penalty", type=float, default=None)
        q.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
        q.add_argument("--tokenizer", default=None, help="tokenizer directory (default: --model)")

    g = sub.add_parser("generate", help="generate text with a local GPT-2 checkpoint")
    model_opts(g)
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="the prompt text")
    src.add_argument("--input", help="a file with one prompt per line")
    g.add_argument("--max-new-tokens", type=int, default=50)
    g.add_argument("--num-beams", type=int, default=None)
    g.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    sampling_opts(g)
    g.set_defaults(func=cmd_generate)

    def ray_opts(q):
        q.add_argument("--ray", action="store_true", help="run on a Ray cluster (pip install 'eet_like[ray]')")
        q.add_argument("--ray-address", default=None, help="HOST:PORT of a Ray head (default: a local Ray instance)")
        q.add_argument("--num-workers", type=int, default=None, help="--ray: model replicas (default 1)")
        q.add_argument("--threads-per-worker", type=int, default=None,
                       help="--ray: torch threads (and Ray CPUs) per worker (default: torch's own, 1 CPU)")

    e = sub.add_parser("embed", help="sentence embeddings with a local BERT checkpoint")
    model_opts(e)
    e.add_argument("--input", required=True, help="a file with one sentence per line (--ray: or Parquet, a "
                   '"text" column)')
    e.add_argument("--output", default=None, help="out.jsonl or out.npy (default: <input>.embeddings.jsonl); "
                   "--ray: or a Parquet directory (DIR.parquet)")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--pooling", default="mean", choices=["mean", "cls"])
    e.add_argument("--no-normalize", action="store_true", help="skip L2 normalization")
    ray_opts(e)
    e.set_defaults(func=cmd_embed)

    r = sub.add_parser("predict", help="batch generation over a JSONL file ({\"src\": ...} per line)")
    model_opts(r)
    r.add_argument("--data-file", required=True)
    r.add_argument("--output-file", required=True)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--src-length", type=int, default=256, help="max prompt tokens (longer prompts keep their end)")
    r.add_argument("--max-length", type=int, default=64, help="max new tokens per record")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run's --output-file")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    sampling_opts(r)
    ray_opts(r)
    r.set_defaults(func=cmd_predict)

    b = sub.add_parser("bench", help="side-by-side benchmarks: GPT-2 and BERT shapes vs transformers")
    b.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke run")
    b.add_argument("--json", default=None, help="also save the results to this JSON file")
    b.add_argument("--device", default="cpu")
    b.add_argument("--quantize", default="both", choices=["both"] + bench.QUANTIZE_CHOICES,
                   help="the eet_like rows: float32 and int8 (both), float32 only (none) or int8 only")
    b.add_argument("--busy-core", action="store_true",
                   help="run everything with a CPU hog (a busy loop) on one core: speed on a shared machine")
    b.set_defaults(func=cmd_bench)

    serve.add_arguments(sub.add_parser("serve", help="OpenAI-compatible HTTP server with continuous batching "
                                   "(GPT-2: completions, BERT: embeddings)"), model_opts)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except UsageError as e:
        print(f"eet-like: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        # Library input errors (bad option values, unsupported configs) are user mistakes too.
        # EET_DEBUG=1 shows the traceback.
        if os.environ.get("EET_DEBUG") == "1":
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"eet-like: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eet-like: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
