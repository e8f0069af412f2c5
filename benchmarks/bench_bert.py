"""BERT-base encoder (12 layers, hidden 768, 12 heads, FFN 3072, vocab 30522; random weights),
eet_like.BertModel against its peers side by side in one run, seq 128:

    CPU (fp32): transformers (sdpa and eager), CTranslate2 float32 and int8, batch 1 and 16
    CUDA (fp16/bf16): transformers eager and sdpa (+ CTranslate2 float16 when it has CUDA),
                      batch 1 and 32

Runners are interleaved round by round (each round runs every runner once) so that load from
other processes on a shared machine hits them alike; the median per runner is reported.
Prints a table (ms per batch, sentences/s, speedup of eet_like over each peer) and writes JSON.

    python benchmarks/bench_bert.py [--device cpu|cuda] [--dtype float32|float16|bfloat16]
                                    [--batches 1,16] [--seq 128] [--json PATH] [--quick]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ops import machine_info  # noqa: E402

import eet_like  # noqa: E402,F401
from eet_like.models.bert import BertModel  # noqa: E402

BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)
QUICK = dict(BERT_BASE, num_hidden_layers=2)


def build_hf(cfg_kw, attn, device, dtype):
    import transformers
    torch.manual_seed(0)
    cfg = transformers.BertConfig(**cfg_kw)
    cfg._attn_implementation = attn
    return transformers.BertModel(cfg).eval().to(device, dtype)


def ct2_encoder(hf, workdir, compute_type, device, threads):
    """Converts the transformers model to CTranslate2 once (quantization at load via compute_type)."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter
    src, out = os.path.join(workdir, "hf"), os.path.join(workdir, "ct2")
    if not os.path.isdir(out):
        hf.float().cpu().save_pretrained(src)
        # ctranslate2's BERT loader reads config.position_embedding_type, which transformers 5
        # no longer writes.
        with open(os.path.join(src, "config.json")) as f:
            cfg = json.load(f)
        cfg["position_embedding_type"] = "absolute"
        with open(os.path.join(src, "config.json"), "w") as f:
            json.dump(cfg, f)
        TransformersConverter(src).convert(out, quantization="float32", force=True)
    return ctranslate2.Encoder(out, device=device, compute_type=compute_type, intra_threads=threads)


def runners(args, device, dtype, cfg_kw, workdir):
    """name -> (factory of a callable(ids, mask, types) -> last hidden state as a torch tensor)."""
    out = {}

    hf_models = {}

    def hf_runner(attn):
        def make():
            m = hf_models.get(attn) or build_hf(cfg_kw, attn, device, dtype)
            hf_models[attn] = m
            return lambda ids, mask, types: m(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        return make

    def eet_make():
        hf = hf_models.get("sdpa") or build_hf(cfg_kw, "sdpa", device, dtype)
        hf_models["sdpa"] = hf
        m = BertModel.from_pretrained(hf, dtype=dtype, device=device)
        return lambda ids, mask, types: m(ids, attention_mask=mask, token_type_ids=types).last_hidden_state

    out["eet_like"] = eet_make
    out["transformers-sdpa"] = hf_runner("sdpa")
    out["transformers-eager"] = hf_runner("eager")
    if args.no_ct2:
        return out
    try:
        import ctranslate2
        import numpy as np
    except ImportError:
        print("[bench] ctranslate2 not installed: pip install ctranslate2 (skipping its rows)")
        return out
    ct2_types = []
    if device == "cpu":
        ct2_types = ["float32", "int8"]
    elif ctranslate2.get_cuda_device_count() > 0:
        ct2_types = [{torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(dtype, "float32")]

    def ct2_make(ct):
        def make():
            hf = hf_models.get("sdpa") or build_hf(cfg_kw, "sdpa", device, dtype)
            hf_models["sdpa"] = hf
            enc = ct2_encoder(build_hf(cfg_kw, "sdpa", "cpu", torch.float32), workdir, ct, device,
                              torch.get_num_threads() if device == "cpu" else 0)

            def run(ids, mask, types):
                lengths = mask.sum(1).int().cpu().numpy()
                r = enc.forward_batch(ctranslate2.StorageView.from_array(ids.int().cpu().numpy()),
                                      ctranslate2.StorageView.from_array(lengths.astype(np.int32)),
                                      types.tolist())
                x = r.last_hidden_state
                return torch.as_tensor(np.array(x)) if device == "cpu" else torch.as_tensor(x, device=device)
            return run
        return make

    for ct in ct2_types:
        out[f"ctranslate2-{ct}"] = ct2_make(ct)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                    help="default: float32 on CPU, float16 on CUDA")
    ap.add_argument("--batches", default=None, help="comma list; default 1,16 (CPU) or 1,32 (CUDA)")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per batch (default 5 CPU, 30 CUDA)")
    ap.add_argument("--json", default=None, help="default benchmarks/results/bert_<device>.json")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 layers, seq 32, 2 rounds")
    ap.add_argument("--no-ct2", action="store_true", help="leave out CTranslate2")
    args = ap.parse_args()

    device = args.device
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.float32 if device == "cpu" else torch.float16)
    if device == "cpu" and dtype != torch.float32:
        ap.error("CPU runs float32 (the eet_like CPU kernels are fp32)")
    batches = [int(b) for b in (args.batches or ("1,16" if device == "cpu" else "1,32")).split(",")]
    seq = 32 if args.quick else args.seq
    rounds = 2 if args.quick else (args.rounds or (5 if device == "cpu" else 30))
    cfg_kw = QUICK if args.quick else BERT_BASE
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    json_path = args.json or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                          f"bert_{device}{'_quick' if args.quick else ''}.json")

    with tempfile.TemporaryDirectory() as workdir, torch.inference_mode():
        makers = runners(args, device, dtype, cfg_kw, workdir)
        fns = {name: make() for name, make in makers.items()}
        rows = []
        for b in batches:
            g = torch.Generator().manual_seed(b)
            ids = torch.randint(1000, cfg_kw["vocab_size"], (b, seq), generator=g).to(device)
            mask = torch.ones(b, seq, dtype=torch.long, device=device)
            types = torch.zeros(b, seq, dtype=torch.long, device=device)
            outs = {}
            for name, fn in fns.items():  # warm-up (+ outputs for the accuracy column)
                outs[name] = fn(ids, mask, types).float().to(device)
                fn(ids, mask, types)
            times = {name: [] for name in fns}
            for _ in range(rounds):
                for name, fn in fns.items():
                    sync()
                    t0 = time.perf_counter()
                    fn(ids, mask, types)
                    sync()
                    times[name].append(time.perf_counter() - t0)
            ref = outs["transformers-sdpa"]
            eet_ms = statistics.median(times["eet_like"]) * 1e3
            for name in fns:
                ms = statistics.median(times[name]) * 1e3
                rows.append({"batch": b, "seq": seq, "runner": name, "ms": ms, "min_ms": min(times[name]) * 1e3,
                             "sentences_per_s": b / ms * 1e3, "eet_speedup": ms / eet_ms,
                             "max_abs_diff_vs_transformers": (outs[name] - ref).abs().max().item()})

    print(f"\nBERT {'(quick: 2 layers)' if args.quick else 'base'} seq {seq}, {device} {str(dtype).split('.')[-1]}, "
          f"threads {torch.get_num_threads()}, {rounds} rounds (median)")
    print(f"{'batch':>5}  {'runner':<22} {'ms/batch':>10} {'min ms':>9} {'sent/s':>9} {'eet speedup':>12} "
          f"{'max|diff|':>10}")
    for r in rows:
        print(f"{r['batch']:>5}  {r['runner']:<22} {r['ms']:>10.1f} {r['min_ms']:>9.1f} {r['sentences_per_s']:>9.1f} "
              f"{r['eet_speedup']:>11.2f}x {r['max_abs_diff_vs_transformers']:>10.2e}")
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump({"benchmark": "bert", "machine": dict(machine_info(device), dtype=str(dtype).split(".")[-1]),
                   "model": cfg_kw, "quick": args.quick, "rounds": rounds,
                   "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
                   "rows": rows}, f, indent=2)
    print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
