#!/usr/bin/env python3
"""PyTorch reference times for the `bench` catalogue (same case names, same shapes).

Run on the same machine as `bench`, so every ratio compares one GPU with itself:

    python3 benches/reference/torch_baseline.py --json torch.json
    cargo run --release -p benches --bin bench -- --compare torch.json

TF32 is off (cuBLAS and cuDNN run true f32), as our kernels compute in f32. Timing
mirrors `benches::measure`: two warm-up runs, batches grown until they take a quarter of
the target, best of three batches, each batch ending in a device synchronize.
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")
torch.backends.cudnn.benchmark = True
dev = torch.device("cuda")


def measure(fn, target=0.2, repeats=3):
    def batch(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    batch(2)
    runs = 1
    while batch(runs) < target / 4 and runs < 1 << 16:
        runs *= 2
    return min(batch(runs) / runs for _ in range(repeats))


def rand(*shape):
    return torch.rand(*shape, device=dev) * 2 - 1


def cases():
    out = {}
    for s in (1024, 2048, 4096, 8192):
        a, b = rand(s, s), rand(s, s)
        out[f"gemm_nn_{s}"] = lambda a=a, b=b: torch.mm(a, b)
    a, b = rand(4096, 4096), rand(4096, 4096)
    out["gemm_nt_4096"] = lambda: torch.mm(a, b.t())
    out["gemm_tn_4096"] = lambda: torch.mm(a.t(), b)
    out["gemm_tt_4096"] = lambda: torch.mm(a.t(), b.t())
    ha, hb = rand(4096, 4096).half(), rand(4096, 4096).half()
    # cuBLAS HGEMM (f16 in, f16 out, f32 accumulate): the reference for gemm_ex with f16.
    out["gemm_ex_f16_4096"] = lambda: torch.mm(ha, hb)
    w, tokens = rand(4096, 4096), rand(4096, 16)
    # Bound now: `w` is a loop variable further down (the conv shapes).
    out["gemm_skinny_4096x16x4096"] = lambda w=w, tokens=tokens: torch.mm(w, tokens)
    ba, bb = rand(64, 512, 512), rand(64, 512, 512)
    out["batched_gemm_64x512"] = lambda: torch.bmm(ba, bb)

    convs = {
        "conv2d_resnet50_conv1_7x7s2": ((32, 3, 224, 224), (64, 3, 7, 7), 2, 3),
        "conv2d_resnet50_res2_3x3": ((32, 64, 56, 56), (64, 64, 3, 3), 1, 1),
        "conv2d_resnet50_res3_3x3": ((32, 128, 28, 28), (128, 128, 3, 3), 1, 1),
        "conv2d_resnet50_res4_3x3": ((32, 256, 14, 14), (256, 256, 3, 3), 1, 1),
        "conv2d_resnet50_res5_3x3": ((32, 512, 7, 7), (512, 512, 3, 3), 1, 1),
        "conv2d_resnet50_res2_1x1": ((32, 256, 56, 56), (64, 256, 1, 1), 1, 0),
    }
    for name, (xs, fs, stride, pad) in convs.items():
        xi, fi = rand(*xs), rand(*fs)
        out[name] = lambda xi=xi, fi=fi, stride=stride, pad=pad: F.conv2d(xi, fi, stride=stride, padding=pad)

    for (bt, h, s, d) in ((8, 16, 1024, 64), (8, 16, 2048, 128), (8, 16, 4096, 128)):
        q, k, v = rand(bt, h, s, d), rand(bt, h, s, d), rand(bt, h, s, d)
        for causal in (False, True):
            name = f"attention_b{bt}_h{h}_s{s}_d{d}" + ("_causal" if causal else "")
            out[name] = lambda q=q, k=k, v=v, causal=causal: F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    # Grouped-query attention, as `bench` names it: K/V heads shared by groups of query
    # heads (SDPA's enable_gqa where this torch has it, else the heads repeated, which is
    # what older versions of the models did), and decode steps over the first 4096 rows
    # of a cache of 8192 (a view: the cache is read in place).
    def gqa(q, k, v, causal):
        try:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        except TypeError:
            rep = q.shape[1] // k.shape[1]
            return F.scaled_dot_product_attention(
                q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), is_causal=causal)

    bt, h, kv, s, d = 8, 32, 8, 2048, 128
    q, k, v = rand(bt, h, s, d), rand(bt, kv, s, d), rand(bt, kv, s, d)
    for causal in (False, True):
        name = f"attention_gqa_b{bt}_h{h}_kv{kv}_s{s}_d{d}" + ("_causal" if causal else "")
        out[name] = lambda q=q, k=k, v=v, causal=causal: gqa(q, k, v, causal)
    for bt in (1, 8):
        h, kv, s, cap, d = 32, 8, 4096, 8192, 128
        q = rand(bt, h, 1, d)
        kc, vc = rand(bt, kv, cap, d), rand(bt, kv, cap, d)
        name = f"attention_decode_b{bt}_h{h}_kv{kv}_s{s}_cap{cap}_d{d}"
        # One query row: the causal frontier is the last key, so it sees them all.
        out[name] = lambda q=q, kc=kc, vc=vc, s=s: gqa(q, kc[:, :, :s], vc[:, :, :s], False)
    # f16 storage: PyTorch's f16 SDPA (flash attention) on the same shapes.
    bt, h, kv, s, d = 8, 32, 8, 2048, 128
    q, k, v = rand(bt, h, s, d).half(), rand(bt, kv, s, d).half(), rand(bt, kv, s, d).half()
    out[f"attention_gqa_f16_b{bt}_h{h}_kv{kv}_s{s}_d{d}_causal"] = lambda q=q, k=k, v=v: gqa(q, k, v, True)
    bt, h, kv, s, cap, d = 1, 32, 8, 4096, 8192, 128
    q = rand(bt, h, 1, d).half()
    kc, vc = rand(bt, kv, cap, d).half(), rand(bt, kv, cap, d).half()
    out[f"attention_decode_f16_b{bt}_h{h}_kv{kv}_s{s}_cap{cap}_d{d}"] = (
        lambda q=q, kc=kc, vc=vc, s=s: gqa(q, kc[:, :, :s], vc[:, :, :s], False))

    for rows, cols in ((1 << 14, 1 << 14), (1 << 12, 1 << 12)):
        xr = rand(rows, cols)
        out[f"reduce_sum_{rows}x{cols}_axis1"] = lambda xr=xr: xr.sum(dim=1)
        if rows == 1 << 14:
            out[f"reduce_sum_{rows}x{cols}_axis0"] = lambda xr=xr: xr.sum(dim=0)

    xr = rand(1 << 14, 4096)
    gr, br = rand(4096), rand(4096)
    out["softmax_16384x4096"] = lambda: torch.softmax(xr, dim=1)
    out["layer_norm_16384x4096"] = lambda: F.layer_norm(xr, (4096,), gr, br, 1e-5)
    out["rms_norm_16384x4096"] = lambda: F.rms_norm(xr, (4096,), gr, 1e-6)
    xl = rand(1 << 16, 4096)
    out["softmax_65536x4096"] = lambda: torch.softmax(xl, dim=1)
    out["layer_norm_65536x4096"] = lambda: F.layer_norm(xl, (4096,), gr, br, 1e-5)
    out["rms_norm_65536x4096"] = lambda: F.rms_norm(xl, (4096,), gr, 1e-6)

    for e in (24, 26, 28):
        n = 1 << e
        ex, ey, ez = rand(n), rand(n), torch.empty(n, device=dev)
        out[f"unary_relu_2^{e}"] = lambda ex=ex, ez=ez: torch.clamp_min(ex, 0.0, out=ez)
        out[f"binary_add_2^{e}"] = lambda ex=ex, ey=ey, ez=ez: torch.add(ex, ey, out=ez)
        if e == 28:
            out[f"unary_gelu_2^{e}"] = lambda ex=ex: F.gelu(ex)
            out[f"unary_exp_2^{e}"] = lambda ex=ex, ez=ez: torch.exp(ex, out=ez)

    # 16-bit storage at 2^28: PyTorch's own f16/bf16 kernels (reductions accumulate in f32).
    n16 = 1 << 28
    for tname, tdt in (("f16", torch.float16), ("bf16", torch.bfloat16)):
        hx, hy, hz = rand(n16).to(tdt), rand(n16).to(tdt), torch.empty(n16, dtype=tdt, device=dev)
        hr = torch.empty(n16 // 4096, dtype=tdt, device=dev)
        out[f"unary_{tname}_relu_2^28"] = lambda hx=hx, hz=hz: torch.clamp_min(hx, 0.0, out=hz)
        out[f"binary_{tname}_add_2^28"] = lambda hx=hx, hy=hy, hz=hz: torch.add(hx, hy, out=hz)
        out[f"reduce_{tname}_sum_2^28"] = lambda hx=hx, hr=hr: torch.sum(hx.view(-1, 4096), dim=1, out=hr)
        if tname == "f16":
            out["unary_f16_gelu_2^28"] = lambda hx=hx: F.gelu(hx)

    for size, label in ((4 << 10, "4KiB"), (1 << 20, "1MiB"), (16 << 20, "16MiB"), (256 << 20, "256MiB")):
        host = torch.full((size,), 0x5A, dtype=torch.uint8)  # pageable, like a Rust Vec
        devb = torch.empty(size, dtype=torch.uint8, device=dev)
        out[f"copy_htod_{label}"] = lambda host=host, devb=devb: devb.copy_(host)
        out[f"copy_dtoh_{label}"] = lambda host=host, devb=devb: host.copy_(devb)

    for tag, (n, c, h, w), st in (("mbv2_dw_96x112x112_s2", (32, 96, 112, 112), 2),
                                  ("mbv2_dw_144x56x56", (32, 144, 56, 56), 1),
                                  ("mbv2_dw_384x14x14", (32, 384, 14, 14), 1)):
        dx, dwt, db = rand(n, c, h, w), rand(c, 1, 3, 3), rand(c)
        out[f"conv2d_{tag}"] = lambda dx=dx, dwt=dwt, db=db, st=st, c=c: F.conv2d(
            dx, dwt, db, stride=st, padding=1, groups=c)

    # gemm_q: decode is compared with a device copy of the weights' bytes (the bandwidth a
    # memory-bound kernel can reach); prefill with an f16 matmul on the dequantized
    # weights (cuBLAS on tensor cores).
    def copy_of(nbytes):
        src = torch.empty(nbytes, dtype=torch.uint8, device=dev)
        dst = torch.empty(nbytes, dtype=torch.uint8, device=dev)
        return lambda: dst.copy_(src)

    for fmt, block in (("q4_0", 18), ("q8_0", 34)):
        out[f"gemm_q_{fmt}_4096x4096_n1"] = copy_of(4096 * 4096 // 32 * block)
        wq = rand(4096, 4096).half()
        # Several columns: the f16 matmul on the dequantized weights.
        for n in (16, 512) if fmt == "q8_0" else (4, 8, 16, 32, 64, 512):
            xn = rand(4096, n).half()
            out[f"gemm_q_{fmt}_4096x4096_n{n}"] = lambda wq=wq, xn=xn: torch.mm(wq, xn)
    # The decode's scaling with the rows: a copy of the same bytes at each size.
    for rows in (64, 1024, 2048, 16384):
        out[f"gemm_q_q4_0_{rows}x4096_n1"] = copy_of(rows * 4096 // 32 * 18)

    ba, bb, bz = rand(1 << 14, 4096), rand(4096), torch.empty(1 << 14, 4096, device=dev)
    out["broadcast_add_bias_16384x4096"] = lambda: torch.add(ba, bb, out=bz)
    ca, cb, cz = rand(4096, 1), rand(1, 4096), torch.empty(4096, 4096, device=dev)
    out["broadcast_mul_outer_4096x4096"] = lambda: torch.mul(ca, cb, out=cz)
    table = rand(128256, 4096)
    idx = (torch.arange(512, device=dev) * 7919) % 128256
    gz = torch.empty(512, 4096, device=dev)
    out["gather_128256x4096_n512"] = lambda: torch.index_select(table, 0, idx, out=gz)
    ha, hb, hz = ba.half(), bb.half(), bz.half()
    out["broadcast_f16_add_bias_16384x4096"] = lambda: torch.add(ha, hb, out=hz)
    htable, hgz = table.half(), gz.half()
    out["gather_f16_128256x4096_n512"] = lambda: torch.index_select(htable, 0, idx, out=hgz)

    tx, ty = rand(256), torch.empty(256, device=dev)
    out["dispatch_tiny_unary"] = lambda: torch.neg(tx, out=ty)
    out["latency_op_plus_4byte_readback"] = lambda: (torch.neg(tx, out=ty), ty[0].item())
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="write {case: seconds per run} here")
    p.add_argument("--only", default="", help="comma-separated substrings of case names")
    p.add_argument("--target-ms", type=float, default=200)
    args = p.parse_args()
    only = [o for o in args.only.split(",") if o]
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, TF32 off")
    results = {}
    for name, fn in cases().items():
        if only and not any(o in name for o in only):
            continue
        t = measure(fn, args.target_ms / 1e3)
        results[name] = t
        print(f"{name:<42} {t * 1e3:>10.4f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
