"""BERT-base encoder (12 layers, hidden 768, 12 heads, FFN 3072, vocab 30522; random weights),
eet_like.BertModel against its peers side by side in one run, seq 128:

    CPU (fp32): transformers (sdpa and eager), CTranslate2 float32 and int8, batch 1 and 16
    CUDA (fp16/bf16): transformers eager and sdpa (+ CTranslate2 float16 when it has CUDA),
                      batch 1 and 32

Runners are interleaved round by round (each round runs every runner once) so that load from
other processes on a shared machine hits them alike; the median per runner is reported.
Prints a table (ms per batch, sentences/s, speedup of eet_like over each peer) and writes JSON.
The measuring code is eet_like.app.bench (also behind `eet-like bench`).

    python benchmarks/bench_bert.py [--device cpu|cuda] [--dtype float32|float16|bfloat16]
                                    [--batches 1,16] [--seq 128] [--json PATH] [--quick]
                                    [--quantize none|int8] [--busy-core]
"""
import argparse
import os

import torch

from eet_like.app import bench


def main(argv=None):
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
    ap.add_argument("--quantize", default=None, choices=bench.QUANTIZE_CHOICES,
                    help="the eet_like rows: float32 only (none) or int8 only (default: both)")
    ap.add_argument("--busy-core", action="store_true",
                    help="time everything with a CPU hog (a busy loop) on one core: a shared machine")
    args = ap.parse_args(argv)
    if args.device == "cpu" and args.dtype not in (None, "float32"):
        ap.error("CPU runs float32 (the eet_like CPU kernels are fp32)")
    batches = [int(b) for b in args.batches.split(",")] if args.batches else None
    json_path = args.json or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                          f"bert_{args.device}{'_quick' if args.quick else ''}"
                                          f"{'_busy' if args.busy_core else ''}.json")
    data = bench.bench_bert(bench.BertSettings(device=args.device, dtype=args.dtype, batches=batches, seq=args.seq,
                                               rounds=args.rounds, quick=args.quick, no_ct2=args.no_ct2,
                                               quantize=args.quantize, busy_core=args.busy_core))
    print()
    print(bench.bert_table(data))
    bench.write_json(json_path, data)
    print(f"wrote {json_path}")


if __name__ == "__main__":
    main()
