"""fairseq generation speed, side by side in one run: fairseq's own TransformerDecoder vs the
eet_like one (eet_like.fairseq.TransformerDecoder), float32 and with int8 weights
(from_fairseq(quantize="int8")), all driven by fairseq's SequenceGenerator.

Models have RANDOM weights (no download): a GPT-2-small-shaped transformer_lm (12 x 768, 12
heads, 50k symbols) and a transformer-base-shaped encoder-decoder (6 + 6 x 512, 8 heads, 32k
symbols). Every case generates exactly --new tokens per sentence after the prompt / for the
source (eos held back by min_len), best of --repeats timed runs after a warm-up. tokens/s =
sentences * new tokens / wall time of the whole generate call (encoder, prompt and beam
bookkeeping included: what a fairseq user sees).

    python benchmarks/bench_fairseq.py                       # CPU fp32, 1 thread (~2 min)
    python benchmarks/bench_fairseq.py --threads 0           # CPU, torch's default threads
    python benchmarks/bench_fairseq.py --quick               # tiny smoke run
    python benchmarks/bench_fairseq.py --quantize none       # eet_like float only (int8: int8 only)
    python benchmarks/bench_fairseq.py --device cuda --dtype float16

Writes a table to stdout and JSON to --json (default benchmarks/results/fairseq_<device>.json).
"""
import argparse
import copy
import gc
import json
import logging
import os
import platform
import subprocess
import sys
import time
from types import SimpleNamespace

import torch

logging.disable(logging.WARNING)   # fairseq logs its optional-dependency notes at import

from fairseq.data import Dictionary  # noqa: E402
from fairseq.models.transformer import TransformerModel  # noqa: E402
from fairseq.models.transformer_lm import TransformerLanguageModel, base_lm_architecture  # noqa: E402
from fairseq.sequence_generator import SequenceGenerator  # noqa: E402

import eet_like  # noqa: E402
import eet_like.fairseq  # noqa: E402

SHAPES = {
    "gpt2-small": dict(kind="lm", layers=12, embed=768, heads=12, vocab=50264),
    "lm-tiny": dict(kind="lm", layers=2, embed=128, heads=2, vocab=8192),
    "transformer-base": dict(kind="mt", layers=6, embed=512, heads=8, vocab=32000),
    "mt-tiny": dict(kind="mt", layers=2, embed=128, heads=2, vocab=8192),
}

# (shape, batch, beam): the default CPU run; --quick and CUDA pick their own.
CPU_CASES = [("gpt2-small", 1, 1), ("gpt2-small", 4, 1), ("gpt2-small", 2, 4), ("transformer-base", 8, 4)]
CUDA_CASES = [("gpt2-small", 1, 1), ("gpt2-small", 8, 1), ("gpt2-small", 64, 1), ("gpt2-small", 8, 4),
              ("transformer-base", 32, 4), ("transformer-base", 128, 4)]
QUICK_CASES = [("lm-tiny", 2, 1), ("lm-tiny", 2, 4), ("mt-tiny", 4, 4)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                   help="default: float32 on CPU, float16 on CUDA")
    p.add_argument("--prompt", type=int, default=8, help="LM prompt / MT source length")
    p.add_argument("--new", type=int, default=24, help="new tokens per sentence")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs per case and decoder, alternating between the two (best is reported)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads; default 1 on CPU (0: torch's default). On the shared 2-core "
                        "development machine OpenMP spin-waits made 2-thread timings swing up to 10x "
                        "while other jobs ran; one thread gives both decoders the same, stable footing")
    p.add_argument("--quick", action="store_true", help="tiny models, a smoke run")
    p.add_argument("--quantize", choices=["none", "int8"], default=None,
                   help="the eet_like decoders: float only (none) or int8 weights only (default: both)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    a.dtype = a.dtype or ("float16" if a.device == "cuda" else "float32")
    if a.threads is None and a.device == "cpu":
        a.threads = 1
    a.cases = QUICK_CASES if a.quick else (CUDA_CASES if a.device == "cuda" else CPU_CASES)
    if a.quick:
        a.new, a.prompt, a.repeats = 8, 8, 1
    if a.json is None:
        a.json = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                              f"fairseq_{a.device}{'_quick' if a.quick else ''}.json")
    return a


def _dictionary(n):
    d = Dictionary()
    for i in range(n - len(d)):
        d.add_symbol(f"tok{i}")
    return d


def build(shape, seed=0):
    s = SHAPES[shape]
    d = _dictionary(s["vocab"])
    torch.manual_seed(seed)
    if s["kind"] == "lm":
        args = argparse.Namespace(decoder_layers=s["layers"], decoder_embed_dim=s["embed"],
                                  decoder_ffn_embed_dim=4 * s["embed"], decoder_attention_heads=s["heads"],
                                  decoder_learned_pos=True, activation_fn="gelu", dropout=0.0,
                                  share_decoder_input_output_embed=False, max_target_positions=1024)
        base_lm_architecture(args)
        model = TransformerLanguageModel.build_model(args, SimpleNamespace(source_dictionary=d, target_dictionary=d))
        ln = model.decoder.layer_norm
    else:
        args = argparse.Namespace(encoder_layers=s["layers"], decoder_layers=s["layers"],
                                  encoder_embed_dim=s["embed"], decoder_embed_dim=s["embed"],
                                  encoder_ffn_embed_dim=4 * s["embed"], decoder_ffn_embed_dim=4 * s["embed"],
                                  encoder_attention_heads=s["heads"], decoder_attention_heads=s["heads"],
                                  dropout=0.0, share_all_embeddings=True, max_source_positions=1024,
                                  max_target_positions=1024)
        model = TransformerModel.build_model(args, SimpleNamespace(source_dictionary=d, target_dictionary=d))
        ln = model.decoder.layers[-1].final_layer_norm
    with torch.no_grad():
        ln.weight.mul_(4.0)   # decisive choices: rounding differences cannot flip near-ties
    return model.eval(), d


def make_sample(kind, d, batch, length, device):
    g = torch.Generator().manual_seed(1)
    toks = torch.randint(d.nspecial, len(d), (batch, length), generator=g)
    if kind == "mt":
        toks[:, -1] = d.eos()
    sample = {"net_input": {"src_tokens": toks.to(device), "src_lengths": torch.full((batch,), length, device=device)}}
    return sample, (toks.to(device) if kind == "lm" else None)


def timed_generate(model, d, sample, prefix, beam, total_len, device):
    gen = SequenceGenerator([model], d, beam_size=beam, max_len_b=total_len, min_len=total_len)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        hypos = gen.generate([model], sample, prefix_tokens=prefix)
        sync()
    return time.perf_counter() - t0, [h[0]["tokens"].cpu() for h in hypos]


def machine(args):
    info = dict(device=args.device, dtype=args.dtype, torch=torch.__version__, fairseq=__import__("fairseq").__version__,
                eet_like=eet_like.__version__, threads=torch.get_num_threads(), python=platform.python_version(),
                prompt=args.prompt, new_tokens=args.new, repeats=args.repeats,
                note="random weights; tokens/s = sentences * new tokens / best wall time of SequenceGenerator.generate")
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"], info["cores"] = names[0], len(names)
        info["loadavg_before"] = os.getloadavg()[0]
    except (OSError, IndexError):
        pass
    if args.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    try:
        info["commit"] = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                                 cwd=os.path.dirname(os.path.abspath(__file__)),
                                                 stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = "unknown"
    return info


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    meta = machine(args)
    print(f"# fairseq SequenceGenerator: fairseq decoder vs eet_like decoder, {args.device} {args.dtype}, "
          f"prompt/source {args.prompt}, {args.new} new tokens, torch threads {torch.get_num_threads()}, "
          f"random weights", flush=True)
    engines = ["fairseq"] + (["eet_like"] if args.quantize != "int8" else []) + \
        (["eet_like-int8"] if args.quantize != "none" else [])
    meta["engines"] = engines
    results, models = [], {}
    for shape, batch, beam in args.cases:
        if shape not in models:
            models.clear()
            gc.collect()
            ref, d = build(shape)
            ref = ref.to(device=args.device, dtype=dtype)
            decoders = {"fairseq": ref}
            for name in engines[1:]:
                fast = copy.deepcopy(ref)
                fast.decoder = eet_like.fairseq.TransformerDecoder.from_fairseq(
                    fast.decoder, quantize="int8" if name == "eet_like-int8" else None)
                decoders[name] = fast
            models[shape] = (decoders, d)
        decoders, d = models[shape]
        kind = SHAPES[shape]["kind"]
        sample, prefix = make_sample(kind, d, batch, args.prompt, args.device)
        total = args.prompt + args.new if kind == "lm" else args.new
        # warm-up: allocator, oneDNN primitives, CUDA kernels
        warm, wprefix = make_sample(kind, d, batch, 4, args.device)
        for model in decoders.values():
            timed_generate(model, d, warm, wprefix, beam, 4 + 2 if kind == "lm" else 2, args.device)
        row = dict(model=shape, kind=kind, batch=batch, beam=beam)
        best, tokens = {name: float("inf") for name in engines}, {}
        for _ in range(args.repeats):   # alternating, so a busy moment of a shared CPU hits all
            for name, model in decoders.items():
                secs, tokens[name] = timed_generate(model, d, sample, prefix, beam, total, args.device)
                best[name] = min(best[name], secs)
        for name, secs in best.items():
            key = name.replace("-", "_")
            row[f"{key}_seconds"] = secs
            row[f"{key}_tokens_per_s"] = batch * args.new / secs
        # float: the same tokens as fairseq (token-exact); int8: the share of sentences whose
        # tokens all match (random weights give flat distributions, so int8 rounding flips picks).
        if "eet_like" in decoders:
            row["speedup"] = row["fairseq_seconds"] / row["eet_like_seconds"]
            row["tokens_equal"] = all(torch.equal(a, b) for a, b in zip(tokens["fairseq"], tokens["eet_like"]))
        if "eet_like-int8" in decoders:
            row["speedup_int8"] = row["fairseq_seconds"] / row["eet_like_int8_seconds"]
            same = [torch.equal(a, b) for a, b in zip(tokens["fairseq"], tokens["eet_like-int8"])]
            row["int8_same_sentences"] = sum(same) / len(same)
        results.append(row)
        print(f"  {shape:17s} b={batch:<3d} beam={beam}  " + "  ".join(
            f"{name} {row[name.replace('-', '_') + '_tokens_per_s']:8.1f} tok/s" for name in engines) +
              (f"  x{row['speedup']:.2f} equal={row['tokens_equal']}" if "speedup" in row else "") +
              (f"  int8 x{row['speedup_int8']:.2f}" if "speedup_int8" in row else ""), flush=True)
    print()
    cols = [("fairseq tok/s", lambda r: f"{r['fairseq_tokens_per_s']:.1f}")]
    if "eet_like" in engines:
        cols += [("eet_like tok/s", lambda r: f"{r['eet_like_tokens_per_s']:.1f}"),
                 ("speedup", lambda r: f"{r['speedup']:.2f}"), ("tokens equal", lambda r: str(r["tokens_equal"]))]
    if "eet_like-int8" in engines:
        cols += [("eet_like-int8 tok/s", lambda r: f"{r['eet_like_int8_tokens_per_s']:.1f}"),
                 ("int8 speedup", lambda r: f"{r['speedup_int8']:.2f}"),
                 ("int8 same sentences", lambda r: f"{r['int8_same_sentences']:.0%}")]
    print(f"{'model':17s} {'batch':>5s} {'beam':>4s} " + " ".join(f"{h:>{len(h)}s}" for h, _ in cols))
    for r in results:
        print(f"{r['model']:17s} {r['batch']:5d} {r['beam']:4d} " + " ".join(f"{f(r):>{len(h)}s}" for h, f in cols))
    meta["loadavg_after"] = os.getloadavg()[0]
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(dict(meta=meta, results=results), f, indent=2)
    print(f"\nwrote {args.json}")
    return 0 if all(r.get("tokens_equal", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
