"""Builds benchmarks/RESULTS.md and benchmarks/plots/*.png from the benchmark JSON in
benchmarks/results/ (never typed by hand: rerun a benchmark, then this script).

    python benchmarks/make_report.py [--results DIR] [--out RESULTS.md] [--plots DIR]

Reads every *.json in --results and recognizes it by content: GPT-2 generation
(bench_generate.py), BERT (bench_bert.py), fairseq (bench_fairseq.py), ops (bench_ops.py), Ray
(bench_ray.py), serving (bench_serve.py), and the combined file of `eet-like bench --json`
({"generate": ..., "bert": ...}). Quick smoke runs
of the model benchmarks are listed but not tabulated. Each table says its machine, commit and
date (from the JSON; for older files without them, from the git commit that recorded the file).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))

# The performance targets (PRODUCT.md): (batch, minimum eet_like / peer speed).
GPT2_CPU_TARGETS = {"transformers": {1: 1.3, 8: 1.5}, "ct2-float32": {1: 1.0, 8: 1.0}}
BERT_CPU_TARGETS = {"transformers": {1: 1.3, 16: 1.3}, "ctranslate2-float32": {1: 1.0, 16: 1.0}}
GPT2_CPU_INT8_TARGETS = {1: 1.3, 8: 1.0}  # eet_like-int8 / ct2-int8 tokens/s
BERT_CPU_INT8_TARGETS = {1: 1.0, 16: 1.0}  # ctranslate2-int8 ms / eet_like-int8 ms
# With a CPU hog on one core (--busy-core): eet_like (float32 and int8) / transformers > 1.
BUSY_TARGET = 1.0
GPT2_GPU_TARGET = ("small", 1, "hf-static-compile", 3.0)
GPT2_GPU_ROOFLINE_TARGET = ("xl", 1, 0.8)
# `eet-like serve` at this concurrency: continuous batching's throughput >= goal x each baseline's.
SERVE_TARGET_CONCURRENCY = 16
SERVE_TARGETS = {"one-at-a-time": 3.0, "static": 1.3}


# ---------------------------------------------------------------- loading

def _git(args: List[str], cwd: str) -> Optional[str]:
    try:
        out = subprocess.check_output(["git", *args], cwd=cwd, text=True, stderr=subprocess.DEVNULL).strip()
        return out or None
    except (OSError, subprocess.CalledProcessError):
        return None


def _recorded(path: str) -> Dict[str, str]:
    """Commit and date of the git commit that last recorded `path` (fallback provenance)."""
    out = _git(["log", "-1", "--format=%h %cs", "--", os.path.basename(path)], os.path.dirname(os.path.abspath(path)))
    if not out:  # not committed (yet): the file's own time
        import datetime
        mtime = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
        return {"date": mtime.strftime("%Y-%m-%d") + " (file time)"}
    commit, date = out.split()
    return {"commit": f"{commit} (results committed)", "date": date}


def classify(data: dict) -> List[tuple]:
    """[(kind, data)] for one JSON file; kind in generate, bert, fairseq, ops, ray, serve; [] if unknown."""
    if "generate" in data and "bert" in data:
        return classify(data["generate"]) + classify(data["bert"])
    if data.get("benchmark") in ("bert", "ops", "ray", "serve"):
        return [(data["benchmark"], data)]
    results = data.get("results")
    if isinstance(results, list) and results and "meta" in data:
        if "engine" in results[0]:
            return [("generate", data)]
        if "fairseq_tokens_per_s" in results[0]:
            return [("fairseq", data)]
    return []


def provenance(kind: str, data: dict, path: str) -> dict:
    """machine/versions/commit/date of one result set, normalized over the JSON formats."""
    info = dict(data.get("machine") or {}) if kind in ("bert", "ops", "ray", "serve") else dict(data["meta"])
    if kind == "generate" and "cpu" not in info:
        info["cpu"] = info.get("machine", "?")
    fallback = _recorded(path)
    for key in ("commit", "date"):
        if not info.get(key) or info[key] == "unknown":
            info[key] = fallback.get(key, "unknown")
    return info


def is_quick(kind: str, data: dict, path: str) -> bool:
    if kind == "generate":
        return bool(data["meta"].get("quick")) or path.endswith("_quick.json")
    if kind in ("bert", "serve"):
        return bool(data.get("quick"))
    return False


def load(results_dir: str) -> Dict[str, list]:
    """kind -> [(path, data, info)], sorted by path."""
    found = {"generate": [], "bert": [], "fairseq": [], "ops": [], "ray": [], "serve": [], "quick": [],
             "unknown": []}
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError:
                found["unknown"].append((path, None, None))
                continue
        kinds = classify(data) if isinstance(data, dict) else []
        if not kinds:
            found["unknown"].append((path, None, None))
        for kind, d in kinds:
            info = provenance(kind, d, path)
            if is_quick(kind, d, path) and kind in ("generate", "bert", "serve"):
                found["quick"].append((path, d, info))
            else:
                found[kind].append((path, d, info))
    return found


# ---------------------------------------------------------------- formatting

def _num(x: Optional[float], fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def _ms(x: Optional[float]) -> str:
    return "–" if x is None else (f"{x:.2f}" if x < 10 else f"{x:.1f}")


def _ratio(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.2f}x"


def _met(ratio: Optional[float], goal: float, strict: bool = False) -> str:
    if ratio is None:
        return "not measured"
    return "**yes**" if ratio > goal or (ratio == goal and not strict) else "**no**"


def table(header: List[str], rows: List[List[str]]) -> List[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def source_line(path: str, info: dict) -> str:
    bits = [f"`results/{os.path.basename(path)}`", f"{info.get('cpu', '?')}"]
    if info.get("cores"):
        bits[-1] += f", {info['cores']} cores"
    bits.append(f"{info.get('threads', '?')} threads")
    if info.get("gpu"):
        bits.append(f"GPU {info['gpu']}")
    versions = [f"{k} {info[k]}" for k in ("torch", "transformers", "ctranslate2", "fairseq") if info.get(k)]
    if versions:
        bits.append(", ".join(versions))
    bits.append(f"commit {info.get('commit', 'unknown')}")
    bits.append(f"date {info.get('date', 'unknown')}")
    return "Source: " + " · ".join(bits)


def _rel(path: str, start: str) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")


# ---------------------------------------------------------------- GPT-2 generation

def generate_section(path: str, data: dict, info: dict, plots_dir: str, out_dir: str, targets: list) -> List[str]:
    m, results = data["meta"], data["results"]
    busy = m.get("busy_core") is not None
    lines = []
    models = list(dict.fromkeys(r["model"] for r in results))
    engines = list(dict.fromkeys(r["engine"] for r in results))
    peers = [e for e in engines if e != "eet_like"]
    for model in models:
        rows = [r for r in results if r["model"] == model]
        lines += [f"### GPT-2 {model}, greedy generation ({m['device']}, {m['dtype']})"
                  + (", a CPU hog on one core" if busy else ""), "",
                  *([f"A busy loop ran on cpu {m['busy_core']} for the whole run (`--busy-core`): a shared "
                     "machine.", ""] if busy else []),
                  f"Prompt {m['prompt']} tokens, {m['new_tokens']} new tokens per row, tokens/s = batch × new tokens "
                  f"/ best wall time of `generate` over {m['repeats']} runs (prefill included); random weights. "
                  "`eet_like / X` > 1 means eet_like is faster; `same tokens` is the share of tokens equal to "
                  "eet_like's." + (" **Partial run**: it stopped before every case was measured." if m.get("partial")
                                   else ""), "", source_line(path, info), ""]
        batches = sorted({r["batch"] for r in rows})
        by = {(r["batch"], r["engine"]): r for r in rows}
        roof = any("roofline_tokens_per_s" in r for r in rows)
        header = ["batch"] + [f"{e} tok/s" for e in engines] + [f"eet_like / {p}" for p in peers] + \
                 [f"same tokens ({p})" for p in peers] + (["roofline tok/s", "eet_like / roofline"] if roof else [])
        body = []
        for b in batches:
            eet = by.get((b, "eet_like"))
            row = [str(b)] + [_num(by[(b, e)]["tokens_per_s"]) if (b, e) in by else "–" for e in engines]
            for p in peers:
                r = by.get((b, p))
                row.append(_ratio(eet["tokens_per_s"] / r["tokens_per_s"]) if eet and r else "–")
            for p in peers:
                r = by.get((b, p))
                agree = r.get("token_agreement") if r else None
                row.append("–" if agree is None else f"{agree:.0%}")
            if roof:
                rf = eet.get("roofline_tokens_per_s") if eet else None
                row += [_num(rf), "–" if rf is None else f"{eet['tokens_per_s'] / rf:.0%}"]
            body.append(row)
        lines += table(header, body) + [""]
        if roof:
            bw = m.get("copy_bandwidth_bytes_per_s")
            lines += [f"Roofline: batch × copy bandwidth ({_num(bw and bw / 1e12, '{:.2f}')} TB/s, read + write, "
                      "measured in the same run) / the bytes one decode step must read (every weight once + the "
                      f"K/V cache at the mean context {m['prompt'] + m['new_tokens'] // 2}); prefill is in the "
                      "measured time, not in the roofline.", ""]
        png = plot_speed(os.path.join(plots_dir, f"{os.path.splitext(os.path.basename(path))[0]}_{model}.png"),
                         f"GPT-2 {model} greedy generation, {m['device']} {m['dtype']} ({info.get('cpu', '')})",
                         {e: [(b, by[(b, e)]["tokens_per_s"]) for b in batches if (b, e) in by] for e in engines},
                         "tokens/s")
        if png:
            lines += [f"![tokens/s vs batch size]({_rel(png, out_dir)})", ""]
        if busy and model == "small":
            for b in batches:
                for e in ("eet_like", "eet_like-int8"):
                    r, hf = by.get((b, e)), by.get((b, "transformers"))
                    if r and hf:
                        ratio = r["tokens_per_s"] / hf["tokens_per_s"]
                        targets.append([f"GPT-2 small CPU, a busy core, batch {b}: {e} faster than transformers",
                                        _ratio(ratio), _met(ratio, BUSY_TARGET, strict=True),
                                        f"`{os.path.basename(path)}`"])
        elif m["device"] == "cpu" and m["dtype"] == "float32" and model == "small":
            for peer, goals in GPT2_CPU_TARGETS.items():
                for b, goal in goals.items():
                    eet, r = by.get((b, "eet_like")), by.get((b, peer))
                    ratio = eet["tokens_per_s"] / r["tokens_per_s"] if eet and r else None
                    what = f"≥ {goal}x {peer}" if goal != 1.0 else f"not slower than {peer}"
                    targets.append([f"GPT-2 small CPU fp32, batch {b}: eet_like {what}", _ratio(ratio),
                                    _met(ratio, goal), f"`{os.path.basename(path)}` ({info.get('cpu', '?')})"])
            for b, goal in GPT2_CPU_INT8_TARGETS.items():
                e8, c8 = by.get((b, "eet_like-int8")), by.get((b, "ct2-int8"))
                if e8 and c8:
                    ratio = e8["tokens_per_s"] / c8["tokens_per_s"]
                    targets.append([f"GPT-2 small CPU int8, batch {b}: eet_like-int8 ≥ {goal}x ct2-int8",
                                    _ratio(ratio), _met(ratio, goal),
                                    f"`{os.path.basename(path)}` ({info.get('cpu', '?')})"])
        if m["device"].startswith("cuda"):
            shape, b, peer, goal = GPT2_GPU_TARGET
            if model == shape:
                eet, r = by.get((b, "eet_like")), by.get((b, peer))
                ratio = eet["tokens_per_s"] / r["tokens_per_s"] if eet and r else None
                targets.append([f"GPT-2 {shape} GPU {m['dtype']}, batch {b}: eet_like ≥ {goal}x {peer}",
                                _ratio(ratio), _met(ratio, goal), f"`{os.path.basename(path)}`"])
            shape, b, goal = GPT2_GPU_ROOFLINE_TARGET
            eet = by.get((b, "eet_like"))
            if model == shape and eet and "roofline_tokens_per_s" in eet:
                frac = eet["tokens_per_s"] / eet["roofline_tokens_per_s"]
                targets.append([f"GPT-2 {shape} GPU {m['dtype']}, batch {b}: eet_like ≥ {goal:.0%} of the bandwidth "
                                "roofline", f"{frac:.0%}", _met(frac, goal), f"`{os.path.basename(path)}`"])
    return lines


# ---------------------------------------------------------------- BERT

def bert_section(path: str, data: dict, info: dict, plots_dir: str, out_dir: str, targets: list) -> List[str]:
    rows, m = data["rows"], data["machine"]
    busy = data.get("busy_core") is not None
    cfg = data.get("model", {})
    runners = list(dict.fromkeys(r["runner"] for r in rows))
    hf = [r for r in runners if r.startswith("transformers")]
    peers = [r for r in runners if r != "eet_like"]
    by = {(r["batch"], r["runner"]): r for r in rows}
    batches = sorted({r["batch"] for r in rows})
    seq = rows[0]["seq"] if rows else "?"
    name = "BERT-base" if cfg.get("num_hidden_layers") == 12 and cfg.get("hidden_size") == 768 else \
        f"BERT ({cfg.get('num_hidden_layers')} layers, hidden {cfg.get('hidden_size')})"
    lines = [f"### {name} encoder, seq {seq} ({m['device']}, {m.get('dtype', '?')})"
             + (", a CPU hog on one core" if busy else ""), "",
             *([f"A busy loop ran on cpu {data['busy_core']} for the whole run (`--busy-core`): a shared machine.",
                ""] if busy else []),
             f"ms per batch (median of {data.get('rounds', '?')} interleaved rounds); random weights. "
             "`eet_like / X` = X's time / eet_like's time (> 1: eet_like is faster); "
             "`best transformers` is the faster of its sdpa and eager attention.", "", source_line(path, info), ""]
    header = ["batch"] + [f"{r} ms" for r in runners] + ["eet_like / best transformers"] + \
             [f"eet_like / {p}" for p in peers if not p.startswith("transformers")] + ["max abs diff vs transformers"]
    body = []

    def best_hf(b):
        cands = [by[(b, r)]["ms"] for r in hf if (b, r) in by]
        return min(cands) if cands else None

    for b in batches:
        eet = by.get((b, "eet_like"))
        row = [str(b)] + [_ms(by[(b, r)]["ms"]) if (b, r) in by else "–" for r in runners]
        bh = best_hf(b)
        row.append(_ratio(bh / eet["ms"]) if eet and bh else "–")
        for p in peers:
            if not p.startswith("transformers"):
                r = by.get((b, p))
                row.append(_ratio(r["ms"] / eet["ms"]) if eet and r else "–")
        row.append(_num(eet.get("max_abs_diff_vs_transformers") if eet else None, "{:.1e}"))
        body.append(row)
    lines += table(header, body) + [""]
    # Named after a bench_bert JSON (bert_cpu_epyc.json -> bert_cpu_epyc.png), so two CPU files never
    # share a plot; the BERT part of a combined `eet-like bench --json` file: bert_<device>.png.
    stem = os.path.splitext(os.path.basename(path))[0]
    png = plot_speed(os.path.join(plots_dir, f"{stem if stem.startswith('bert') else 'bert_' + m['device']}.png"),
                     f"{name} seq {seq}, {m['device']} {m.get('dtype', '')} ({info.get('cpu', '')})",
                     {r: [(b, by[(b, r)]["sentences_per_s"]) for b in batches if (b, r) in by] for r in runners},
                     "sentences/s")
    if png:
        lines += [f"![sentences/s vs batch size]({_rel(png, out_dir)})", ""]
    if busy and name == "BERT-base":
        for b in batches:
            for e in ("eet_like", "eet_like-int8"):
                r, bh = by.get((b, e)), best_hf(b)
                if r and bh:
                    ratio = bh / r["ms"]
                    targets.append([f"BERT-base CPU, a busy core, batch {b}: {e} faster than transformers",
                                    _ratio(ratio), _met(ratio, BUSY_TARGET, strict=True), f"`{os.path.basename(path)}`"])
    elif m["device"] == "cpu" and m.get("dtype") == "float32" and name == "BERT-base":
        for b, goal in BERT_CPU_INT8_TARGETS.items():
            e8, c8 = by.get((b, "eet_like-int8")), by.get((b, "ctranslate2-int8"))
            if e8 and c8:
                ratio = c8["ms"] / e8["ms"]
                targets.append([f"BERT-base CPU int8, batch {b}: eet_like-int8 not slower than ctranslate2-int8",
                                _ratio(ratio), _met(ratio, goal), f"`{os.path.basename(path)}`"])
        for peer, goals in BERT_CPU_TARGETS.items():
            for b, goal in goals.items():
                eet = by.get((b, "eet_like"))
                other = best_hf(b) if peer == "transformers" else (by.get((b, peer)) or {}).get("ms")
                ratio = other / eet["ms"] if eet and other else None
                label = "best transformers" if peer == "transformers" else peer
                what = f"≥ {goal}x {label}" if goal != 1.0 else f"not slower than {label}"
                targets.append([f"BERT-base CPU fp32, batch {b}: eet_like {what}", _ratio(ratio), _met(ratio, goal),
                                f"`{os.path.basename(path)}`"])
    return lines


# ---------------------------------------------------------------- fairseq, ops

def fairseq_section(path: str, data: dict, info: dict) -> List[str]:
    m = data["meta"]
    lines = [f"### fairseq SequenceGenerator ({m['device']}, {m['dtype']}, {m.get('threads', '?')} threads)", "",
             f"fairseq's own decoder vs eet_like's, both under fairseq's SequenceGenerator; prompt {m.get('prompt')}, "
             f"{m.get('new_tokens')} new tokens, best of {m.get('repeats')}; random weights.", "",
             source_line(path, info), ""]
    res = data["results"]
    has_fp = any("eet_like_tokens_per_s" in r for r in res)
    has_int8 = any("eet_like_int8_tokens_per_s" in r for r in res)
    header = ["model", "kind", "batch", "beam", "fairseq tok/s"]
    if has_fp:
        header += ["eet_like tok/s", "eet_like / fairseq", "same tokens"]
    if has_int8:
        header += ["eet_like-int8 tok/s", "eet_like-int8 / fairseq", "same sentences (int8)"]
    body = []
    for r in res:
        row = [r["model"], r["kind"], str(r["batch"]), str(r["beam"]), _num(r["fairseq_tokens_per_s"])]
        if has_fp:
            row += [_num(r.get("eet_like_tokens_per_s")), _ratio(r.get("speedup")),
                    "yes" if r.get("tokens_equal") else "**no**"]
        if has_int8:
            same = r.get("int8_same_sentences")
            row += [_num(r.get("eet_like_int8_tokens_per_s")), _ratio(r.get("speedup_int8")),
                    "–" if same is None else f"{same:.0%}"]
        body.append(row)
    if has_int8:
        lines += ["The int8 decoder (`from_fairseq(quantize=\"int8\")`) is not token-exact against float32 "
                  "by design; with random weights the next-token distributions are flat, so int8 rounding "
                  "flips some greedy/beam picks (its accuracy tests use trained weights).", ""]
    return lines + table(header, body) + [""]


def ops_section(path: str, data: dict, info: dict) -> List[str]:
    m = data.get("machine", {})
    lines = [f"### Ops ({m.get('device', '?')}, {m.get('dtype', '?')}{', quick shapes' if data.get('quick') else ''})",
             "", "Median ms per call; `reference` is eet_like.reference (plain torch), `torch fused` is torch's own "
             "fused op where one exists.", "", source_line(path, info), ""]
    body = [[r["op"], r["shape"], _num(r["eet_ms"], "{:.3f}"), _num(r["reference_ms"], "{:.3f}"),
             _num(r.get("torch_fused_ms"), "{:.3f}"), _ratio(r.get("speedup_vs_reference")),
             _ratio(r.get("speedup_vs_torch_fused"))] for r in data["rows"]]
    return lines + table(["op", "shape", "eet_like ms", "reference ms", "torch fused ms", "eet_like / reference",
                          "eet_like / torch fused"], body) + [""]


def _load_text(load) -> str:
    if not load or len(load) != 6:
        return ""
    return (f" Load average (1/5/15 min) before: {load[0]}, {load[1]}, {load[2]}; after: {load[3]}, {load[4]}, "
            f"{load[5]} (other processes shared the cores).")


def ray_section(path: str, data: dict, info: dict, targets: list) -> List[str]:
    """benchmarks/bench_ray.py: the Ray path against the single process on the same cores."""
    s = data["summary"]
    lines = [f"### Ray batch embedding ({data['model']}, {data['sentences']} sentences, {data['cores']} cores, "
             f"ray {info.get('ray', '?')})", "",
             "`eet_like.ray.embed_dataset` on a local Ray instance limited to the same cores as the single process "
             "(`encode_sentences`, what `eet-like embed` runs), batch "
             f"{data['batch_size']}. `job s` is the whole Ray job (workers start and load the model inside it); "
             "`startup s` a job of one batch per worker; `steady` = sentences / (job - startup), the rate of a "
             "long job." + _load_text(data.get("load_average")), "", source_line(path, info), ""]
    body = [[r["runner"], str(r["workers"]), str(r["threads"]), _num(r["seconds"]), _num(r.get("startup_s")),
             _num(r["sentences_per_s"], "{:.0f}"), _num(r.get("steady_sentences_per_s"), "{:.0f}"),
             _num(r.get("max_abs_diff"), "{:.1e}")] for r in data["rows"]]
    lines += table(["runner", "workers", "threads", "job s", "startup s", "sentences/s", "steady sentences/s",
                    "max abs diff"], body) + [""]
    steady, total = s.get("overhead_steady"), s.get("overhead_total")
    lines += [f"Overhead of {s['best_ray']} against {s['single']}: steady "
              + ("–" if steady is None else f"{steady:+.1%}") + f", whole job {total:+.1%}.", ""]
    met = "not measured" if steady is None else ("**yes**" if steady <= s.get("goal", 0.15) else "**no**")
    targets.append([f"Ray embed on {data['cores']} cores: steady rate within {s.get('goal', 0.15):.0%} of the "
                    "single process", "–" if steady is None else f"{steady:+.1%}", met,
                    f"`{os.path.basename(path)}`"])
    return lines


def serve_section(path: str, data: dict, info: dict, targets: list) -> List[str]:
    st, rows = data["settings"], data["rows"]
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    by = {(r["mode"], r["concurrency"]): r for r in rows}
    int8 = st.get("quantize") == "int8"
    kind = "int8 weights" if int8 else st.get("dtype", "?")
    lines = [f"### `eet-like serve`: GPT-2 {st['model']}, continuous batching vs one at a time vs static batching "
             f"({info.get('device', 'cpu')}, {kind})", "",
             ("A closed loop of C clients sharing one request list (each sends a request, reads it to the end "
              "and takes the next one not yet sent: C requests in flight until the list runs out) "
              if st.get("clients") == "shared" else
              "A closed loop of C clients, each sending its share of the same requests one after the other ") +
             f"(streaming, greedy; prompts of {st['prompt_tokens'][0]}-{st['prompt_tokens'][1]} tokens, "
             f"{st['new_tokens'][0]}-{st['new_tokens'][1]} new tokens, requests per case "
             f"{', '.join(f'C={c}: {n}' for c, n in zip(st['concurrency'], st['requests']))}). Server rows "
             f"`--max-batch {st['max_batch']}` (one-at-a-time: 1), `--max-seq-len {st['max_seq_len']}`"
             f"{', `--quantize int8`' if int8 else ''}; one server "
             "process per mode, client on the same machine; random weights. tok/s = generated tokens / wall time of "
             "the case; TTFT = request sent -> first token received; ITL = gap between consecutive tokens of a "
             "request; rows/step = mean rows in the server's decode steps (static batching starts a batch when the "
             "previous one has finished, after waiting up to 0.1 s for it to fill).", "", source_line(path, info), ""]
    body = []
    for c in sorted({r["concurrency"] for r in rows}):
        cont = by.get(("continuous", c))
        for mode in modes:
            r = by.get((mode, c))
            if r is None:
                continue
            speed = "–" if mode == "continuous" or not cont else _ratio(cont["tokens_per_s"] / r["tokens_per_s"])
            body.append([str(c), mode, str(r["requests"]), str(r["tokens"]), _num(r["tokens_per_s"]),
                         _ms(r["ttft_p50_ms"]), _ms(r["ttft_p99_ms"]), _ms(r["itl_p50_ms"]), _ms(r["itl_p99_ms"]),
                         _num(r.get("rows_per_step")), speed])
    lines += table(["C", "mode", "requests", "tokens", "tok/s", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms",
                    "ITL p99 ms", "rows/step", "continuous tok/s / this"], body) + [""]
    if st.get("skipped"):
        lines += [f"Not run: {', '.join(x.replace(':', ' at C=') for x in st['skipped'])}.", ""]
    c = SERVE_TARGET_CONCURRENCY
    cont = by.get(("continuous", c))
    for base, goal in SERVE_TARGETS.items():
        r = by.get((base, c))
        ratio = cont["tokens_per_s"] / r["tokens_per_s"] if cont and r else None
        targets.append([f"serve GPT-2 {st['model']} CPU{' int8' if int8 else ''}, C={c}: continuous batching ≥ "
                        f"{goal}x {base} tokens/s",
                        _ratio(ratio), _met(ratio, goal), f"`{os.path.basename(path)}`"])
    r = by.get(("static", c))
    if cont and r:
        met = "**yes**" if cont["ttft_p50_ms"] < r["ttft_p50_ms"] else "**no**"
        measured = f"{_ms(cont['ttft_p50_ms'])} vs {_ms(r['ttft_p50_ms'])} ms"
    else:
        met, measured = "not measured", "–"
    targets.append([f"serve GPT-2 {st['model']} CPU{' int8' if int8 else ''}, C={c}: continuous batching p50 TTFT < "
                    "static batching's",
                    measured, met, f"`{os.path.basename(path)}`"])
    return lines


# ---------------------------------------------------------------- plots

def plot_speed(png: str, title: str, series: Dict[str, list], ylabel: str) -> Optional[str]:
    """One line per engine: speed vs batch size. Returns the PNG path, None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("make_report: matplotlib is not installed, no plots (pip install matplotlib)", file=sys.stderr)
        return None
    os.makedirs(os.path.dirname(png), exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    batches = sorted({b for pts in series.values() for b, _ in pts})
    for name, pts in series.items():
        if pts:
            ax.plot([b for b, _ in pts], [v for _, v in pts], marker="o",
                    linewidth=2.5 if name == "eet_like" else 1.5, label=name)
    if len(batches) > 1 and batches[-1] / max(batches[0], 1) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, metadata={"Software": None})
    plt.close(fig)
    return png


# ---------------------------------------------------------------- report

def build(results_dir: str, out_path: str, plots_dir: str) -> str:
    found = load(results_dir)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    targets, cpu, gpu, other = [], [], [], []
    for path, data, info in found["generate"]:
        dest = gpu if data["meta"]["device"].startswith("cuda") else cpu
        dest += generate_section(path, data, info, plots_dir, out_dir, targets)
    for path, data, info in found["bert"]:
        dest = gpu if data["machine"]["device"].startswith("cuda") else cpu
        dest += bert_section(path, data, info, plots_dir, out_dir, targets)
    for path, data, info in found["fairseq"]:
        dest = gpu if data["meta"]["device"].startswith("cuda") else other
        dest += fairseq_section(path, data, info)
    for path, data, info in found["serve"]:
        dest = gpu if data.get("machine", {}).get("device", "cpu").startswith("cuda") else other
        dest += serve_section(path, data, info, targets)
    for path, data, info in found["ops"]:
        dest = gpu if data.get("machine", {}).get("device", "cpu").startswith("cuda") else other
        dest += ops_section(path, data, info)
    for path, data, info in found["ray"]:
        other += ray_section(path, data, info, targets)

    lines = ["# Benchmark results", "",
             "<!-- Generated by benchmarks/make_report.py from benchmarks/results/*.json; do not edit by hand. -->",
             "", "Written by `python benchmarks/make_report.py` from the JSON the benchmark scripts save in "
             "`benchmarks/results/` (`bench_generate.py`, `bench_bert.py`, `bench_fairseq.py`, `bench_ops.py`, "
             "`bench_ray.py`, `bench_serve.py`; "
             "`make bench` / `eet-like bench` runs the GPT-2 and BERT ones). Every figure was measured side by side "
             "in one run on the machine named under its table. Models have random weights of the named shapes "
             "(speed does not depend on the weights).", ""]
    lines += ["## Targets", ""]
    if targets:
        lines += table(["target", "measured", "met", "from"], targets) + [""]
    else:
        lines += ["No result set the targets apply to yet.", ""]
    lines += ["## CPU", ""] + (cpu or ["No CPU GPT-2/BERT results yet.", ""])
    lines += ["## GPU", ""] + (gpu or ["No GPU results yet: run `python benchmarks/bench_generate.py --device cuda` "
                                      "and `python benchmarks/bench_bert.py --device cuda` on a GPU machine, then "
                                      "this script.", ""])
    if other:
        lines += ["## Other CPU benchmarks", ""] + other
    if found["quick"] or found["unknown"]:
        lines += ["## Not tabulated", ""]
        lines += [f"- `results/{os.path.basename(p)}`: quick smoke run" for p, _, _ in found["quick"]]
        lines += [f"- `results/{os.path.basename(p)}`: format not recognized" for p, _, _ in found["unknown"]]
        lines += [""]
    text = "\n".join(lines).rstrip() + "\n"
    os.makedirs(out_dir, exist_ok=True)
    with open(out_path, "w") as f:
        f.write(text)
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=os.path.join(HERE, "results"), help="directory of benchmark JSON")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--plots", default=None, help="PNG directory (default: plots/ next to --out)")
    a = ap.parse_args(argv)
    if not os.path.isdir(a.results):
        ap.error(f"--results: {a.results!r} is not a directory")
    plots = a.plots or os.path.join(os.path.dirname(os.path.abspath(a.out)), "plots")
    build(a.results, a.out, plots)
    print(f"wrote {a.out} (plots in {plots})")


if __name__ == "__main__":
    main()
