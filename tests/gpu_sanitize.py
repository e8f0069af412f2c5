"""Every CUDA op once per dtype over a few shapes that reach each kernel path (vectorized and
scalar, decode / tiled / generic attention, odd hidden sizes and head dims), checked against
eet_like.reference. Small on purpose: it is the program compute-sanitizer (memcheck,
racecheck) runs on the GPU (benchmarks/gpu_session.sh); it also runs alone as a smoke check.

    python tests/gpu_sanitize.py [--dtypes float16 ...]   # exits 1 if any result is wrong
"""
import argparse
import sys

import torch

import eet_like
from eet_like import ops, reference

failures = []


def check(name, got, ref):
    got, ref = got.float().cpu(), ref.float().cpu()
    if got.shape != ref.shape:
        failures.append(f"{name}: shape {tuple(got.shape)} != {tuple(ref.shape)}")
        return
    err = (got - ref).abs().max().item() if ref.numel() else 0.0
    bound = 0.03 * max(ref.abs().max().item() if ref.numel() else 0.0, 1.0)
    if not err <= bound:  # NaN fails too
        failures.append(f"{name}: max abs err {err:.3g} > {bound:.3g}")


def rnd(*shape, dtype, scale=1.0):
    return (torch.randn(*shape) * scale).to(device="cuda", dtype=dtype)


def f32(t):
    return t.float().cpu()


def run(dtype):
    tag = str(dtype).split(".")[-1]
    for H in (8, 768, 769, 1600):
        x, r = rnd(5, H, dtype=dtype), rnd(5, H, dtype=dtype)
        w, b = rnd(H, dtype=dtype), rnd(H, dtype=dtype)
        check(f"layernorm H={H} {tag}", ops.layernorm(x, w, b), reference.layernorm(f32(x), f32(w), f32(b)))
        y, h = ops.layernorm(x, w, b, residual=r, residual_bias=b)
        ry, rh = reference.layernorm(f32(x), f32(w), f32(b), residual=f32(r), residual_bias=f32(b))
        check(f"add_layernorm H={H} {tag}", y, ry)
        check(f"add_layernorm residual H={H} {tag}", h, rh)
    for H in (768, 769):
        ids = torch.randint(0, 100, (2, 7), device="cuda")
        pos = torch.arange(7, device="cuda").expand(2, 7)
        we, pe, te = rnd(100, H, dtype=dtype), rnd(16, H, dtype=dtype), rnd(2, H, dtype=dtype)
        tt = torch.randint(0, 2, (2, 7), device="cuda")
        lw, lb = rnd(H, dtype=dtype), rnd(H, dtype=dtype)
        check(f"embedding H={H} {tag}", ops.embedding(ids, we, pe, position_ids=pos),
              reference.embedding(ids.cpu(), f32(we), f32(pe), position_ids=pos.cpu()))
        check(f"embedding+ln H={H} {tag}",
              ops.embedding(ids, we, pe, position_ids=pos, token_type_ids=tt, token_type_embeddings=te,
                            ln_weight=lw, ln_bias=lb),
              reference.embedding(ids.cpu(), f32(we), f32(pe), position_ids=pos.cpu(), token_type_ids=tt.cpu(),
                                  token_type_embeddings=f32(te), ln_weight=f32(lw), ln_bias=f32(lb)))
    for act in ("identity", "gelu", "gelu_new", "relu"):
        x, w, bb = rnd(3, 5, 64, dtype=dtype), rnd(97, 64, dtype=dtype, scale=0.1), rnd(97, dtype=dtype)
        check(f"linear {act} {tag}", ops.linear(x, w, bb, act), reference.linear(f32(x), f32(w), f32(bb), act))
        w2, b2 = rnd(64, 97, dtype=dtype, scale=0.1), rnd(64, dtype=dtype)
        check(f"ffn {act} {tag}", ops.ffn(x, w, bb, w2, b2, act, residual=x),
              reference.ffn(f32(x), f32(w), f32(bb), f32(w2), f32(b2), act, residual=f32(x)))
    for D in (8, 64, 80, 100, 128, 256):
        Hh = 3
        for S in (1, 3, 5, 40, 130):
            for causal in (False, True):
                qkv = rnd(2, S, 3 * Hh * D, dtype=dtype)
                ks = torch.tensor([0, min(2, S - 1)], dtype=torch.int32, device="cuda")
                kc = torch.full((3, Hh, S + 4, D), float("nan"), device="cuda", dtype=dtype)
                vc = torch.full_like(kc, float("nan"))
                out = ops.attention(qkv, Hh, causal=causal, key_start=ks, k_cache=kc, v_cache=vc)
                ref = reference.attention(f32(qkv), Hh, causal=causal, key_start=ks.cpu())
                check(f"attention D={D} S={S} causal={causal} {tag}", out, ref)
                k = qkv.view(2, S, 3, Hh, D)[:, :, 1].transpose(1, 2)
                if not torch.equal(kc[:2, :, :S], k):
                    failures.append(f"attention cache write D={D} S={S} {tag}")
        Smax = 70
        kc, vc = rnd(3, Hh, Smax, D, dtype=dtype), rnd(3, Hh, Smax, D, dtype=dtype)
        for pos in ((0, 5, 69), (33, 33, 33), (64, 1, 40)):
            qkv = rnd(3, 3 * Hh * D, dtype=dtype)
            p = torch.tensor(pos, dtype=torch.int32, device="cuda")
            ks = torch.tensor([0, 1, 7], dtype=torch.int32, device="cuda")
            rk, rv = f32(kc), f32(vc)
            ref = reference.masked_attention(f32(qkv), rk, rv, p.cpu(), Hh, key_start=ks.cpu())
            out = ops.masked_attention(qkv, kc, vc, p, Hh, key_start=ks)
            check(f"masked_attention D={D} pos={pos} {tag}", out, ref)
            check(f"masked_attention cache D={D} pos={pos} {tag}", kc, rk)
        for Sq in (1, 5):
            q, kv = rnd(2, Sq, Hh * D, dtype=dtype), rnd(2, 9, 2 * Hh * D, dtype=dtype)
            pad = torch.zeros(2, 9, dtype=torch.bool, device="cuda")
            pad[1, 6:] = True
            out = ops.cross_attention(q, kv[..., :Hh * D], kv[..., Hh * D:], Hh, key_padding_mask=pad)
            ke = torch.tensor([9, 6], dtype=torch.int32)
            ref = reference.cross_attention(f32(q), f32(kv[..., :Hh * D]), f32(kv[..., Hh * D:]), Hh, key_end=ke)
            check(f"cross_attention D={D} Sq={Sq} {tag}", out, ref)


def main():
    if not (torch.cuda.is_available() and eet_like.cuda_kernels_available()):
        sys.exit("gpu_sanitize: needs a GPU and eet_like built with its CUDA kernels")
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float16", "bfloat16"],
                    choices=["float32", "float16", "bfloat16"])
    torch.manual_seed(0)
    for name in ap.parse_args().dtypes:
        run(getattr(torch, name))
    torch.cuda.synchronize()
    for f in failures:
        print("FAIL", f)
    print(f"gpu_sanitize: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
