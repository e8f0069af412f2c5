"""Greedy generation speed, side by side in one run: eet_like vs transformers vs CTranslate2.

GPT-2 with RANDOM weights (shape of GPT-2 small, or XL on GPU), a random prompt of --prompt
tokens, exactly --new greedy tokens per row (eos disabled / suppressed in every engine), batch
sizes --batch. Reports generated tokens/s (batch * new / wall time of the whole generate call,
prefill included; best of --repeats after a warm-up, engines interleaved round by round) and
whether the tokens agree with eet_like.

    python benchmarks/bench_generate.py                      # CPU fp32, batch 1 and 8
    python benchmarks/bench_generate.py --quick              # tiny smoke run
    python benchmarks/bench_generate.py --busy-core          # with a CPU hog on one core
    python benchmarks/bench_generate.py --device cuda --dtype float16 --batch 1 8 64 --models small xl

CPU engines: eet_like, transformers (eager), CTranslate2 float32 and int8 (pip install ctranslate2).
CUDA engines: eet_like, transformers eager, sdpa, and static cache + torch.compile.
Writes a table to stdout and JSON to --json (default benchmarks/results/generate_<device>.json).
The measuring code is eet_like.app.bench (also behind `eet-like bench`).
"""
import argparse
import os

from eet_like.app import bench


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                   help="default: float32 on CPU, float16 on CUDA")
    p.add_argument("--batch", type=int, nargs="+", default=None, help="default: 1 8 (CPU), 1 8 64 (CUDA)")
    p.add_argument("--models", nargs="+", default=None, choices=list(bench.GPT2_SHAPES),
                   help="default: small (CPU), small xl (CUDA)")
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per case (best is reported)")
    p.add_argument("--engines", nargs="+", default=None,
                   help=f"subset of: {' '.join(bench.GPT2_CPU_ENGINES)} (CPU); "
                        f"{' '.join(bench.GPT2_CUDA_ENGINES)} (CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch/CT2 threads (default: torch's)")
    p.add_argument("--compile-batch", type=int, nargs="+", default=None,
                   help="batch sizes at which hf-static-compile runs (default: all; each compiles for a minute)")
    p.add_argument("--quick", action="store_true", help="tiny model, 8 new tokens, batch 1 2: a smoke run")
    p.add_argument("--quantize", default=None, choices=bench.QUANTIZE_CHOICES,
                   help="the eet_like rows: float32 only (none) or int8 only (default: both)")
    p.add_argument("--busy-core", action="store_true",
                   help="time everything with a CPU hog (a busy loop) on one core: a shared machine")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    a.json = a.json or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                    f"generate_{a.device}{'_quick' if a.quick else ''}"
                                    f"{'_busy' if a.busy_core else ''}.json")
    return a


def main(argv=None):
    a = parse_args(argv)
    settings = bench.GenerateSettings(device=a.device, dtype=a.dtype, batch=a.batch, models=a.models, prompt=a.prompt,
                                      new=a.new, repeats=a.repeats, engines=a.engines, threads=a.threads,
                                      quick=a.quick, compile_batch=a.compile_batch, quantize=a.quantize,
                                      busy_core=a.busy_core)
    data = bench.bench_generate(settings, checkpoint=lambda partial: bench.write_json(a.json, partial))
    print()
    print(bench.generate_table(data))
    bench.write_json(a.json, data)
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
