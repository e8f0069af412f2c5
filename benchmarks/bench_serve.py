"""`eet-like serve` under load: continuous batching vs the same server one request at a time vs
static batching, side by side in one run.

A GPT-2 checkpoint with RANDOM weights (GPT-2 small shape by default) is saved to a temp dir and
served three ways, by three server processes on 127.0.0.1 (all up, taking turns at each C):
    continuous   --max-batch B                     requests join the running batch at every step
    one-at-a-time --max-batch 1                    the next request starts when one has finished
    static       --max-batch B --batching static   a batch is admitted only when the previous
                                                   one has fully finished
Each is driven by the same closed loop at each concurrency C: C clients share one request list
(--requests per case); each sends a request, reads its stream to the end and takes the next one
not yet sent, so C requests are in flight until the list runs out (streaming, greedy, token-id
prompts of --prompt-min..--prompt-max tokens, --new-min..--new-max new tokens, seeded). Reported per case:
throughput (generated tokens / wall time of the case), time to first token (request sent ->
first token received) and inter-token latency (gap between consecutive tokens of a request),
p50/p99.

    python benchmarks/bench_serve.py                      # GPT-2 small, C = 1 4 16 64
    python benchmarks/bench_serve.py --quick              # tiny model, a smoke run
    python benchmarks/bench_serve.py --concurrency 1 4 16 64 --requests 2 8 32 64

Writes a table to stdout and JSON to --json (default benchmarks/results/serve_cpu.json);
benchmarks/make_report.py turns it into RESULTS.md rows.
"""
import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = {  # name -> extra serve arguments (B = --max-batch)
    "continuous": lambda b: ["--max-batch", str(b)],
    "one-at-a-time": lambda b: ["--max-batch", "1"],
    "static": lambda b: ["--max-batch", str(b), "--batching", "static"],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="small", help="GPT-2 shape of eet_like.app.bench.GPT2_SHAPES (default small)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--requests", type=int, nargs="+", default=None,
                   help="requests per case, one number per --concurrency (default 8 x C up to C=16, 4 x C above); "
                        "fewer than C lowers "
                        "the real concurrency")
    p.add_argument("--prompt-min", type=int, default=8)
    p.add_argument("--prompt-max", type=int, default=64)
    p.add_argument("--new-min", type=int, default=8)
    p.add_argument("--new-max", type=int, default=128)
    p.add_argument("--skip", nargs="+", default=[], metavar="MODE:C",
                   help="cases not to run, e.g. one-at-a-time:64 (its throughput is that of one row at any C)")
    p.add_argument("--max-batch", type=int, default=None, help="server rows (default: the largest concurrency)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quantize", choices=["none", "int8"], default="none",
                   help="int8: every server runs `eet-like serve --quantize int8` (int8 weights)")
    p.add_argument("--quick", action="store_true", help="tiny model, C = 1 4, short requests: a smoke run")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if a.quick:
        a.model, a.concurrency, a.requests, a.new_max, a.prompt_max = "tiny", [1, 4], [1, 4], 16, 16
    # Enough requests that the case is mostly steady load: its end, when the list has run out
    # and the last requests drain with fewer rows, is a smaller share of the wall time.
    a.requests = a.requests or [(8 if c <= 16 else 4) * c for c in a.concurrency]
    if len(a.requests) != len(a.concurrency):
        p.error(f"--requests needs one number per --concurrency ({len(a.concurrency)}), got {len(a.requests)}")
    a.json = a.json or os.path.join(
        HERE, "results", f"serve_cpu{'_int8' if a.quantize == 'int8' else ''}{'_quick' if a.quick else ''}.json")
    return a


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_checkpoint(shape: str, path: str):
    import torch
    import transformers

    from eet_like.app.bench import GPT2_SHAPES
    from eet_like.integrations.transformers import offline_gpt2_tokenizer
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(**GPT2_SHAPES[shape])
    transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(path)
    offline_gpt2_tokenizer().save_pretrained(path)
    return cfg


class Server:
    def __init__(self, model_dir, args, log):
        import httpx
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        self.log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "eet_like", "serve", "--model", model_dir, "--port",
                                      str(self.port), "--log-level", "warning", *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited with {self.proc.returncode}; see {log}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the server did not come up; see {log}")
            time.sleep(0.3)

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (user + system, all threads)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def _one(client, url, body):
    """-> (send time, [arrival time of each token])"""
    t0 = time.perf_counter()
    arrivals = []
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            d = json.loads(data)
            if "error" in d:
                raise RuntimeError(d["error"]["message"])
            now = time.perf_counter()
            for c in d["choices"]:
                arrivals += [now] * len(c.get("token_ids") or [])
    return t0, arrivals


async def run_case(url, requests, concurrency):
    import httpx
    # One shared list: a client that finishes takes the next request not yet sent, so C
    # requests are in flight until the list runs out (fixed per-client shares would leave the
    # clients with short requests idle while the longest share drains: a tail, not load).
    todo = list(reversed(requests))
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(3600.0), limits=limits) as client:
        async def worker():
            out = []
            while todo:  # one event loop: the pop cannot race
                out.append(await _one(client, url, todo.pop()))
            return out
        t0 = time.perf_counter()
        per_worker = await asyncio.gather(*[worker() for _ in range(min(concurrency, len(requests)))])
        wall = time.perf_counter() - t0
    return wall, [r for w in per_worker for r in w]


def server_stats(url) -> dict:
    """Decode steps so far, their seconds and rows (from the server's /metrics)."""
    import httpx
    out = {}
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        for key in ("eet_like_step_seconds_sum", "eet_like_step_seconds_count", "eet_like_step_rows_sum"):
            if line.startswith(key + " "):
                out[key] = float(line.split()[1])
    return out


def _pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def summarize(mode, concurrency, wall, results, before, after):
    ttft = [(a[0] - t0) * 1e3 for t0, a in results if a]
    itl = [(a[i] - a[i - 1]) * 1e3 for _, a in results for i in range(1, len(a))]
    tokens = sum(len(a) for _, a in results)
    steps = after["eet_like_step_seconds_count"] - before["eet_like_step_seconds_count"]
    step_s = after["eet_like_step_seconds_sum"] - before["eet_like_step_seconds_sum"]
    rows = after["eet_like_step_rows_sum"] - before["eet_like_step_rows_sum"]
    return {"mode": mode, "concurrency": concurrency, "requests": len(results), "tokens": tokens,
            "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 2),
            "ttft_p50_ms": _pct(ttft, 50), "ttft_p99_ms": _pct(ttft, 99),
            "itl_p50_ms": _pct(itl, 50), "itl_p99_ms": _pct(itl, 99),
            # server side: time in decode steps (model + token choice) and rows per step
            "steps": int(steps), "step_s_total": round(step_s, 3),
            "step_ms_mean": round(1e3 * step_s / steps, 2) if steps else None,
            "rows_per_step": round(rows / steps, 2) if steps else None}


def make_requests(a, vocab, n):
    rng = random.Random(a.seed)
    reqs = []
    for _ in range(n):
        prompt = [rng.randrange(vocab) for _ in range(rng.randint(a.prompt_min, a.prompt_max))]
        reqs.append({"prompt": prompt, "max_tokens": rng.randint(a.new_min, a.new_max), "temperature": 0,
                     "stream": True, "return_token_ids": True})
    return reqs


def table(rows):
    head = ["mode", "C", "requests", "tokens", "tok/s", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "ITL p99 ms",
            "rows/step", "step ms", "steps s / wall s", "server CPU s", "client CPU s"]
    out = [" | ".join(head)]
    for r in rows:
        out.append(" | ".join([r["mode"], str(r["concurrency"]), str(r["requests"]), str(r["tokens"]),
                               f"{r['tokens_per_s']:.1f}"] +
                              ["–" if r[k] is None else f"{r[k]:.1f}" for k in
                               ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "rows_per_step",
                                "step_ms_mean")] + [f"{r['step_s_total'] / r['wall_s']:.2f}"] +
                              [f"{r[k]:.1f}" if r.get(k) is not None else "–" for k in ("server_cpu_s", "client_cpu_s")]))
    return "\n".join(out)


def main(argv=None):
    a = parse_args(argv)
    from eet_like.app import bench
    max_batch = a.max_batch or max(a.concurrency)
    max_seq = a.prompt_max + a.new_max
    rows = []
    with tempfile.TemporaryDirectory(prefix="eet_bench_serve_") as tmp:
        model_dir = os.path.join(tmp, f"gpt2-{a.model}")
        print(f"saving a random GPT-2 {a.model} checkpoint ...", file=sys.stderr)
        cfg = save_checkpoint(a.model, model_dir)
        cases = {c: make_requests(a, cfg.vocab_size, n) for c, n in zip(a.concurrency, a.requests)}
        # All servers stay up (idle ones cost no CPU) and the modes take turns at each C, so a
        # change in the machine's load during the run hits every mode alike.
        servers = {}
        try:
            for mode in a.modes:
                args = MODES[mode](max_batch) + ["--max-seq-len", str(max_seq), "--max-queue", str(4 * max_batch)]
                if a.quantize == "int8":
                    args += ["--quantize", "int8"]
                print(f"{mode}: eet-like serve {' '.join(args)}", file=sys.stderr)
                servers[mode] = Server(model_dir, args, os.path.join(tmp, f"{mode}.log"))
                asyncio.run(run_case(servers[mode].url, make_requests(a, cfg.vocab_size, 2), 1))  # warm-up
            for c in a.concurrency:
                for mode in a.modes:
                    if f"{mode}:{c}" in a.skip:
                        continue
                    srv = servers[mode]
                    before = server_stats(srv.url)
                    cpu0, own0 = srv.cpu_seconds(), sum(os.times()[:2])
                    wall, results = asyncio.run(run_case(srv.url, cases[c], c))
                    row = summarize(mode, c, wall, results, before, server_stats(srv.url))
                    # the client shares the machine: what each side used of its cores
                    row["server_cpu_s"] = round(srv.cpu_seconds() - cpu0, 2)
                    row["client_cpu_s"] = round(sum(os.times()[:2]) - own0, 2)
                    rows.append(row)
                    print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
        finally:
            for srv in servers.values():
                srv.stop()
    machine = bench.machine_info("cpu")
    machine["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)  # the machine may be shared
    data = {"benchmark": "serve", "machine": machine, "quick": a.quick,
            "settings": {"model": a.model, "dtype": "float32", "quantize": a.quantize, "concurrency": a.concurrency, "requests": a.requests, "clients": "shared",
                         "prompt_tokens": [a.prompt_min, a.prompt_max],
                         "new_tokens": [a.new_min, a.new_max], "max_batch": max_batch, "max_seq_len": max_seq,
                         "seed": a.seed, "greedy": True, "streaming": True, "skipped": a.skip,
                         "interleaved": True},
            "rows": rows}
    print()
    print(table(rows))
    bench.write_json(a.json, data)
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
