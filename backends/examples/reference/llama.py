#!/usr/bin/env python3
"""The numpy (float64) reference of `backends/examples/llama.rs`: one Llama-style decoder
block (token embedding, RMSNorm, rotary embedding, grouped-query attention over a KV cache,
SwiGLU MLP), a prefill of 8 tokens and then 32 decode steps of one token each.

Run from anywhere (it writes next to itself), with Python 3 and numpy:

    python3 backends/examples/reference/llama.py

It writes `llama.json`: the first values of every weight (so the Rust side can check that
it made the same weights), and the block's output for every token, in order; and
`llama_q4_0.json`, the same block with its seven projection matrices quantized to GGML's
Q4_0 and dequantized by the `gguf` package (llama.cpp's own Python implementation of the
format: `pip install gguf`), each transposed first so that a block runs along the input
dimension, as GGUF stores a linear layer. The weights
come from the same splitmix64 generator as `common::values` in the examples, computed here
with Python integers and float32 arithmetic, so they are bit-identical. Everything else is
written from the model's definition, not from the Rust code: RoPE by rotate_half, attention
by explicit softmax over the cached keys with the causal rule, the MLP as
silu(h Wg) * (h Wu) Wd.
"""

import json
import os

import numpy as np

from common import values, write_reference

HERE = os.path.dirname(os.path.abspath(__file__))

VOCAB, D, HEADS, KV_HEADS, HEAD_DIM, FF = 256, 64, 4, 2, 16, 128
PREFILL, DECODE, CAP = 8, 32, 48
EPS, THETA, SEED = 1e-5, 10000.0, 11


def weights():
    w_in = np.float32(1.0) / np.sqrt(np.float32(D))
    w_ff = np.float32(1.0) / np.sqrt(np.float32(FF))
    gain = lambda s: np.float32(1.0) + values(s, D, np.float32(0.1))
    return {
        "embed": values(SEED, VOCAB * D, np.float32(1.0)),
        "g_attn": gain(SEED + 1),
        "wq": values(SEED + 2, D * HEADS * HEAD_DIM, w_in),
        "wk": values(SEED + 3, D * KV_HEADS * HEAD_DIM, w_in),
        "wv": values(SEED + 4, D * KV_HEADS * HEAD_DIM, w_in),
        "wo": values(SEED + 5, HEADS * HEAD_DIM * D, w_in),
        "g_mlp": gain(SEED + 6),
        "wg": values(SEED + 7, D * FF, w_in),
        "wu": values(SEED + 8, D * FF, w_in),
        "wd": values(SEED + 9, FF * D, w_ff),
    }


def tokens():
    return [(7 * i + 3) % VOCAB for i in range(PREFILL)] + [(13 * t + 5) % VOCAB for t in range(DECODE)]


def rms_norm(x, g):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + EPS) * g


def rope(x, positions):
    """x [T, heads, HEAD_DIM]: the half-split rotation, x * cos + rotate_half(x) * sin."""
    half = HEAD_DIM // 2
    inv_freq = THETA ** (-np.arange(half, dtype=np.float64) * 2.0 / HEAD_DIM)
    angle = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos = np.concatenate([np.cos(angle)] * 2, axis=-1)[:, None, :]
    sin = np.concatenate([np.sin(angle)] * 2, axis=-1)[:, None, :]
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def silu(x):
    return x / (1.0 + np.exp(-x))


def step(w, toks, pos0, cache_k, cache_v):
    t = len(toks)
    x = w["embed"].reshape(VOCAB, D)[toks]
    h = rms_norm(x, w["g_attn"])
    q = (h @ w["wq"].reshape(D, -1)).reshape(t, HEADS, HEAD_DIM)
    k = (h @ w["wk"].reshape(D, -1)).reshape(t, KV_HEADS, HEAD_DIM)
    v = (h @ w["wv"].reshape(D, -1)).reshape(t, KV_HEADS, HEAD_DIM)
    positions = list(range(pos0, pos0 + t))
    q, k = rope(q, positions), rope(k, positions)
    cache_k[pos0:pos0 + t] = k
    cache_v[pos0:pos0 + t] = v
    seen = pos0 + t
    o = np.zeros((t, HEADS, HEAD_DIM))
    group = HEADS // KV_HEADS
    for head in range(HEADS):
        kv = head // group
        scores = q[:, head, :] @ cache_k[:seen, kv, :].T / np.sqrt(HEAD_DIM)
        for i in range(t):
            s = scores[i, : pos0 + i + 1]  # the causal rule: keys up to its own position
            p = np.exp(s - s.max())
            o[i, head] = (p / p.sum()) @ cache_v[: pos0 + i + 1, kv, :]
    x1 = x + o.reshape(t, -1) @ w["wo"].reshape(HEADS * HEAD_DIM, D)
    h2 = rms_norm(x1, w["g_mlp"])
    act = silu(h2 @ w["wg"].reshape(D, FF)) * (h2 @ w["wu"].reshape(D, FF))
    return x1 + act @ w["wd"].reshape(FF, D)


PROJECTIONS = {"wq": (D, HEADS * HEAD_DIM), "wk": (D, KV_HEADS * HEAD_DIM),
               "wv": (D, KV_HEADS * HEAD_DIM), "wo": (HEADS * HEAD_DIM, D),
               "wg": (D, FF), "wu": (D, FF), "wd": (FF, D)}


def q4_0_roundtrip(w, k, n):
    """W [k, n] (x W) through Q4_0 as gguf stores it: W^T [n, k] quantized row by row,
    dequantized, transposed back."""
    from gguf import GGMLQuantizationType, quants

    wt = np.ascontiguousarray(w.reshape(k, n).T)
    q = quants.quantize(wt, GGMLQuantizationType.Q4_0)
    return quants.dequantize(q, GGMLQuantizationType.Q4_0).reshape(n, k).T.reshape(-1)


def run(w):
    w = {name: v.astype(np.float64) for name, v in w.items()}
    toks = tokens()
    cache_k = np.zeros((CAP, KV_HEADS, HEAD_DIM))
    cache_v = np.zeros((CAP, KV_HEADS, HEAD_DIM))
    outs = [step(w, toks[:PREFILL], 0, cache_k, cache_v)]
    for i in range(DECODE):
        outs.append(step(w, [toks[PREFILL + i]], PREFILL + i, cache_k, cache_v))
    return np.concatenate(outs, axis=0)


def main():
    w32 = weights()
    toks = tokens()
    out = run(w32)
    write_reference(HERE, "llama.json", w32, out, shape=[len(toks), D], tokens=toks)
    wq4 = dict(w32)
    for name, (k, n) in PROJECTIONS.items():
        wq4[name] = q4_0_roundtrip(w32[name], k, n)
    out_q4 = run(wq4)
    print(f"Q4_0 against f32 weights: max |diff| {np.max(np.abs(out_q4 - out)):.3e}")
    write_reference(HERE, "llama_q4_0.json", w32, out_q4, shape=[len(toks), D], tokens=toks)


def torch_decode_step_ms(device="cuda", reps=5):
    """PyTorch eager, float32, the same block: ms per decode step after the prefill, each
    step's output copied to the host (as llama.rs reads its row back). Printed only."""
    import time

    import torch

    w = {k: torch.tensor(v, device=device) for k, v in weights().items()}
    embed = w["embed"].view(VOCAB, D)
    wq, wk, wv = (w[n].view(D, -1) for n in ("wq", "wk", "wv"))
    wo, wg, wu, wd = w["wo"].view(-1, D), w["wg"].view(D, FF), w["wu"].view(D, FF), w["wd"].view(FF, D)
    half = HEAD_DIM // 2
    inv_freq = THETA ** (-torch.arange(half, device=device, dtype=torch.float32) * 2.0 / HEAD_DIM)
    ang = torch.arange(CAP, device=device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    F = torch.nn.functional

    def rope(x, p0):
        t = x.shape[0]
        c, s = cos[p0:p0 + t, None, :], sin[p0:p0 + t, None, :]
        return x * c + torch.cat([-x[..., half:], x[..., :half]], -1) * s

    def step(ids, p0, kc, vc):
        t = ids.shape[0]
        x = embed[ids]
        h = F.rms_norm(x, (D,), w["g_attn"], EPS)
        q = rope((h @ wq).view(t, HEADS, HEAD_DIM), p0)
        kc[p0:p0 + t] = rope((h @ wk).view(t, KV_HEADS, HEAD_DIM), p0)
        vc[p0:p0 + t] = (h @ wv).view(t, KV_HEADS, HEAD_DIM)
        k, v = kc[: p0 + t].transpose(0, 1), vc[: p0 + t].transpose(0, 1)
        mask = torch.ones(t, p0 + t, dtype=torch.bool, device=device).tril(p0)
        o = F.scaled_dot_product_attention(q.transpose(0, 1), k, v, attn_mask=mask, enable_gqa=True)
        x1 = x + o.transpose(0, 1).reshape(t, -1) @ wo
        h2 = F.rms_norm(x1, (D,), w["g_mlp"], EPS)
        return x1 + (F.silu(h2 @ wg) * (h2 @ wu)) @ wd

    toks = torch.tensor(tokens(), device=device)
    best = float("inf")
    with torch.no_grad():
        for _ in range(reps):
            kc = torch.zeros(CAP, KV_HEADS, HEAD_DIM, device=device)
            vc = torch.zeros(CAP, KV_HEADS, HEAD_DIM, device=device)
            step(toks[:PREFILL], 0, kc, vc).cpu()
            start = time.perf_counter()
            outs = [step(toks[PREFILL + i:PREFILL + i + 1], PREFILL + i, kc, vc).cpu() for i in range(DECODE)]
            best = min(best, (time.perf_counter() - start) * 1e3 / DECODE)
    ref = json.load(open(os.path.join(HERE, "llama.json")))["output"]
    err = float(np.max(np.abs(torch.cat(outs).numpy().reshape(-1) - np.asarray(ref[PREFILL * D:]))))
    print(f"torch eager ({torch.cuda.get_device_name()}): {best:.3f} ms per decode step "
          f"(max |diff| against llama.json {err:.2e})")


if __name__ == "__main__":
    import sys

    if "--torch" in sys.argv:
        torch_decode_step_ms()
    else:
        main()
