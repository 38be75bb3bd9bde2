"""PyTorch on the CPU, on the cases of `benches/ops.rs` and `benches/sgemm.rs`, for ratios
measured in the same run on the same machine:

    python3 backend-fast-cpu/bench/torch_cpu.py [--threads N]

Every case is f32 and uses the same shapes as the Rust benches; the time is the best of
several calls after a warm-up (as criterion's minimum would be). PyTorch uses all cores
unless --threads says otherwise; the fast CPU backend uses rayon's default (all cores).
"""

import argparse
import time

import torch
import torch.nn.functional as F


def best(f, min_s=0.5, min_reps=5):
    f()
    t, reps, start = float("inf"), 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < min_s:
        s = time.perf_counter()
        f()
        t = min(t, time.perf_counter() - s)
        reps += 1
    return t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, f32 on the CPU")

    def report(name, t, work, unit):
        print(f"{name:<36} {t * 1e3:>10.4f} ms  {work / t / 1e9:>9.2f} {unit}")

    for n in (512, 1024, 2048, 4096):
        a, b = torch.rand(n, n), torch.rand(n, n)
        report(f"sgemm_{n}", best(lambda: torch.mm(a, b)), 2 * n**3, "GFLOP/s")

    rows, cols = 1024, 4096
    x = torch.rand(rows, cols) * 10 - 5
    g, bt = torch.rand(cols), torch.rand(cols)
    nbytes = 8 * rows * cols
    report("rows softmax", best(lambda: torch.softmax(x, -1)), nbytes, "GB/s")
    report("rows log_softmax", best(lambda: torch.log_softmax(x, -1)), nbytes, "GB/s")
    report("rows layer_norm", best(lambda: F.layer_norm(x, (cols,), g, bt, 1e-5)), nbytes, "GB/s")
    if hasattr(F, "rms_norm"):
        report("rows rms_norm", best(lambda: F.rms_norm(x, (cols,), g, 1e-5)), nbytes, "GB/s")

    h, s, d = 8, 1024, 64
    q, k, v = (torch.rand(1, h, s, d) for _ in range(3))
    flops = 4 * h * s * s * d
    for causal in (False, True):
        name = "attention_b1_h8_s1024_d64 " + ("causal" if causal else "full")
        f = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=0.125)
        report(name, best(f), flops, "GFLOP/s")

    convs = [
        ("conv1_7x7s2", (1, 3, 224, 224), (64, 3, 7, 7), 2, 3),
        ("res2_3x3", (1, 64, 56, 56), (64, 64, 3, 3), 1, 1),
        ("res3_3x3", (1, 128, 28, 28), (128, 128, 3, 3), 1, 1),
        ("res4_3x3", (1, 256, 14, 14), (256, 256, 3, 3), 1, 1),
        ("res5_3x3", (1, 512, 7, 7), (512, 512, 3, 3), 1, 1),
        ("res2_1x1", (1, 256, 56, 56), (64, 256, 1, 1), 1, 0),
    ]
    with torch.no_grad():
        for name, xs, ws, stride, pad in convs:
            xi, w = torch.rand(*xs), torch.rand(*ws)
            y = F.conv2d(xi, w, stride=stride, padding=pad)
            work = 2 * y.numel() * ws[1] * ws[2] * ws[3]
            report(f"conv2d_resnet50_n1 {name}", best(lambda: F.conv2d(xi, w, stride=stride, padding=pad)), work, "GFLOP/s")


if __name__ == "__main__":
    main()
