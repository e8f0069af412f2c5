"""Each eet_like op against its plain-torch reference (eet_like.reference) and torch's own
fused op where one exists (F.layer_norm, F.scaled_dot_product_attention), side by side in
one run. Prints a table and writes JSON.

    python benchmarks/bench_ops.py [--device cpu|cuda] [--dtype float32|float16|bfloat16]
                                   [--json PATH] [--quick]
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F

import eet_like
from eet_like import ops
from eet_like import reference as R
from eet_like.app.bench import machine_info


def timeit(fn, device, min_time=0.3, warmup=3, max_iters=200):
    for _ in range(warmup):
        fn()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    start = time.perf_counter()
    while (time.perf_counter() - start < min_time or len(times) < 5) and len(times) < max_iters:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3  # ms


def decode_layers_cases(hid, heads, g):
    """decode_layers (a whole decode step of 12 GPT-2 small blocks in one op call) against the
    same kernels called one op at a time from Python (the "fused" column: the block loop), float32
    packed and int8 weights, 1 and 8 rows, 100 keys in the cache."""
    from eet_like.generation.kv_cache import KVCache
    from eet_like.layers.block import Step, fused_step_weights, run_blocks
    from eet_like.models.gpt2 import GPT2Config, GPT2Model
    built = []
    with torch.inference_mode(False):  # packing tracks weight versions: no inference tensors
        for label in ("float32 packed", "int8"):
            torch.manual_seed(0)
            trunk = GPT2Model(GPT2Config(n_layer=12, n_embd=hid, n_head=heads))
            with torch.no_grad():
                for p in trunk.parameters():
                    p.normal_(0, 0.02)
            if label == "int8":
                for blk in trunk.blocks:
                    blk.quantize_int8_()
            for rows in (1, 8):
                cache = KVCache.allocate(12, rows, heads, 128, hid // heads)
                for t in cache.k + cache.v:
                    t.normal_()
                xr = torch.randn(rows, hid, generator=g)
                built.append((label, trunk, cache, xr, fused_step_weights(trunk.blocks, trunk.ln_f,
                                                                         trunk.decode_gemm, xr)))

    def loop(trunk, xr, cache, pos):
        os.environ["EET_LIKE_FUSED_DECODE"] = "0"
        try:
            return run_blocks(trunk.blocks, xr, Step(cache, pos), gemm=trunk.decode_gemm, pre_norm=True,
                              final_norm=trunk.ln_f)
        finally:
            os.environ.pop("EET_LIKE_FUSED_DECODE")

    for label, trunk, cache, xr, w in built:
        rows = xr.shape[0]
        pos = torch.full((rows,), 100, dtype=torch.int32)
        args = (xr, w, cache.k, cache.v, pos, heads, [b.attn.scale for b in trunk.blocks], 1e-5, "gelu_new")
        yield (f"decode_layers ({label}, {rows} rows)", f"12 blocks, [{rows}, {hid}], 100 keys",
               lambda args=args: ops.decode_layers(*args),
               lambda args=args: R.decode_layers(*args),
               lambda trunk=trunk, xr=xr, cache=cache, pos=pos: loop(trunk, xr, cache, pos))


def cases(device, dtype, quick):
    g = torch.Generator().manual_seed(0)

    def rnd(*s, scale=1.0):
        return (torch.randn(*s, generator=g) * scale).to(device, dtype)

    B, S, H, D = (2, 32, 12, 64) if quick else (8, 128, 12, 64)
    HID, INNER = H * D, 4 * H * D
    N = B * S
    x, res = rnd(N, HID), rnd(N, HID)
    w, b, rb = rnd(HID), rnd(HID), rnd(HID)
    yield ("layernorm", f"[{N}, {HID}]",
           lambda: ops.layernorm(x, w, b),
           lambda: R.layernorm(x, w, b),
           None)
    yield ("add_layernorm", f"[{N}, {HID}] + residual + bias",
           lambda: ops.layernorm(x, w, b, residual=res, residual_bias=rb),
           lambda: R.layernorm(x, w, b, residual=res, residual_bias=rb),
           None)

    V, P = 30522, 512
    word, pos, typ = rnd(V, HID, scale=0.02), rnd(P, HID, scale=0.02), rnd(2, HID, scale=0.02)
    ids = torch.randint(0, V, (B, S), generator=g).to(device)
    pids = torch.arange(S, device=device).expand(B, S)
    tids = torch.zeros(B, S, dtype=torch.long, device=device)
    yield ("embedding", f"[{B}, {S}] tok+pos+type+LN, H {HID}",
           lambda: ops.embedding(ids, word, pos, pids, tids, typ, w, b),
           lambda: R.embedding(ids, word, pos, pids, tids, typ, w, b),
           None)

    w1, b1 = rnd(INNER, HID, scale=HID ** -0.5), rnd(INNER)
    w2, b2 = rnd(HID, INNER, scale=INNER ** -0.5), rnd(HID)
    for act in ("gelu", "gelu_new"):
        yield (f"ffn ({act})", f"[{N}, {HID}] -> {INNER} + residual",
               lambda act=act: ops.ffn(x, w1, b1, w2, b2, act, residual=res),
               lambda act=act: R.ffn(x, w1, b1, w2, b2, act, residual=res),
               None)
    yield ("linear (qkv)", f"[{N}, {HID}] -> {3 * HID} + bias",
           lambda: ops.linear(x, w1[:3 * HID], b1[:3 * HID]),
           lambda: R.linear(x, w1[:3 * HID], b1[:3 * HID]),
           None)
    x8 = x[:8].contiguous()
    yield ("linear (decode, 8 rows)", f"[8, {HID}] -> {INNER} + bias + gelu",
           lambda: ops.linear(x8, w1, b1, "gelu"),
           lambda: R.linear(x8, w1, b1, "gelu"),
           None)
    if device == "cpu":  # the packed-weight GEMM vs the oneDNN linear (the "fused" column)
        w1p = ops.pack_linear(w1)
        for rows in (1, 8):
            xr = x[:rows].contiguous()
            yield (f"linear_packed (decode, {rows} rows)", f"[{rows}, {HID}] -> {INNER} + bias + gelu",
                   lambda xr=xr: ops.linear_packed(xr, w1p, INNER, b1, "gelu"),
                   lambda xr=xr: R.linear(xr, w1, b1, "gelu"),
                   lambda xr=xr: ops.linear(xr, w1, b1, "gelu"))
        # int8 (per-row int8 activations, exact int32 sums); "fused" = torch's own int8 linear
        # (fbgemm's dynamic quantized linear, per-tensor activation scale; deprecated in torch).
        q1, s1 = ops.quantize_int8(w1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fbgemm = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(HID, INNER)),
                                                            {torch.nn.Linear}, dtype=torch.qint8)
        for rows in (1, 8, N):
            xr = x[:rows].contiguous()
            yield (f"linear_int8 ({rows} rows)", f"[{rows}, {HID}] -> {INNER} + bias + gelu",
                   lambda xr=xr: ops.linear_int8(xr, q1, s1, b1, "gelu"),
                   lambda xr=xr: R.linear_int8(xr, q1, s1, b1, "gelu"),
                   lambda xr=xr: fbgemm(xr))
        yield from decode_layers_cases(HID, H, g)

    qkv = rnd(B, S, 3 * HID)
    pads = torch.tensor([i % 4 * 8 for i in range(B)], dtype=torch.int32, device=device)
    j = torch.arange(S, device=device)
    sdpa_mask = ((j[None, :] >= pads[:, None].long())[:, None, None, :] & (j[None, :] <= j[:, None])[None, None])

    def sdpa_prefill():
        q, k, v = qkv.view(B, S, 3, H, D).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=sdpa_mask).transpose(1, 2).reshape(B, S, HID)

    yield ("attention (causal, left pad)", f"B{B} S{S} H{H} D{D}",
           lambda: ops.attention(qkv, H, True, key_start=pads),
           lambda: R.attention(qkv, H, True, key_start=pads),
           sdpa_prefill)

    SMAX = 256 if quick else 1024
    L = SMAX // 2
    kc, vc = rnd(B, H, SMAX, D), rnd(B, H, SMAX, D)
    kc2, vc2 = kc.clone(), vc.clone()
    q1 = rnd(B, 3 * HID)
    positions = torch.full((B,), L, dtype=torch.int32, device=device)
    kl = torch.arange(SMAX, device=device)
    dec_mask = ((kl[None, :] >= pads[:, None].long()) & (kl[None, :] <= L))[:, None, None, :]

    def sdpa_decode():
        q, k, v = q1.view(B, 3, H, D).unbind(1)
        kc2[:, :, L] = k
        vc2[:, :, L] = v
        return F.scaled_dot_product_attention(q[:, :, None], kc2[:, :, :L + 1], vc2[:, :, :L + 1],
                                              attn_mask=dec_mask[..., :L + 1]).reshape(B, HID)

    yield ("masked_attention (decode)", f"B{B} H{H} D{D} cache {L + 1}/{SMAX}",
           lambda: torch.ops.eet_like.masked_attention(q1, kc, vc, positions, pads, H, None),
           lambda: R.masked_attention(q1, kc2, vc2, positions, H, pads),
           sdpa_decode)

    SK = S
    qc = rnd(B, 1, HID)
    kv = rnd(B, SK, 2 * HID)
    k_, v_ = kv[..., :HID], kv[..., HID:]
    enc_end = torch.full((B,), SK, dtype=torch.int32, device=device)

    def sdpa_cross():
        qh = qc.view(B, 1, H, D).transpose(1, 2)
        kh = k_.reshape(B, SK, H, D).transpose(1, 2)
        vh = v_.reshape(B, SK, H, D).transpose(1, 2)
        return F.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).reshape(B, 1, HID)

    yield ("cross_attention", f"B{B} Sq1 Sk{SK} H{H} D{D}",
           lambda: ops.cross_attention(qc, k_, v_, H, key_end=enc_end),
           lambda: R.cross_attention(qc, k_, v_, H, key_end=enc_end),
           sdpa_cross)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--json", default=None, help="output path (default benchmarks/results/ops_<device>.json)")
    ap.add_argument("--quick", action="store_true", help="small shapes, for a smoke run")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not (torch.cuda.is_available() and eet_like.cuda_kernels_available()):
        sys.exit("bench_ops: --device cuda needs a GPU and eet_like built with CUDA kernels")
    dtype = getattr(torch, args.dtype or ("float16" if args.device == "cuda" else "float32"))
    rows = []
    with torch.inference_mode():
        for name, shape, eet_fn, ref_fn, fused_fn in cases(args.device, dtype, args.quick):
            t_eet = timeit(eet_fn, args.device)
            t_ref = timeit(ref_fn, args.device)
            t_fused = timeit(fused_fn, args.device) if fused_fn else None
            rows.append({"op": name, "shape": shape, "eet_ms": t_eet, "reference_ms": t_ref,
                         "torch_fused_ms": t_fused, "speedup_vs_reference": t_ref / t_eet,
                         "speedup_vs_torch_fused": (t_fused / t_eet) if t_fused else None})
    info = machine_info(args.device)
    info["dtype"] = str(dtype).split(".")[-1]
    print(f"eet_like ops vs plain torch — {info.get('gpu', info['cpu'])}, {info['dtype']}, "
          f"{info['threads']} threads, commit {info['commit']}")
    hdr = f"{'op':<30} {'shape':<34} {'eet ms':>9} {'torch ref ms':>13} {'x ref':>7} {'sdpa/fused ms':>14} {'x fused':>8}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        fused = f"{r['torch_fused_ms']:14.3f} {r['speedup_vs_torch_fused']:8.2f}" if r["torch_fused_ms"] else f"{'-':>14} {'-':>8}"
        print(f"{r['op']:<30} {r['shape']:<34} {r['eet_ms']:9.3f} {r['reference_ms']:13.3f} "
              f"{r['speedup_vs_reference']:7.2f} {fused}")
    path = args.json or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                     f"ops_{args.device}{'_quick' if args.quick else ''}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"benchmark": "ops", "machine": info, "quick": args.quick, "rows": rows}, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
