"""numpy (OpenBLAS) SGEMM on the sizes the fast-cpu bench times, for the ratio in one run.

    python3 backend-fast-cpu/bench/numpy_sgemm.py [512 1024 2048 4096]

Prints one line per size: the best of several calls, in ms and GFLOP/s (2 n^3 / time).
"""

import sys
import time

import numpy as np


def best(f, reps):
    f()
    t = float("inf")
    for _ in range(reps):
        s = time.perf_counter()
        f()
        t = min(t, time.perf_counter() - s)
    return t


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [512, 1024, 2048]
    cfg = np.show_config(mode="dicts") if hasattr(np, "show_config") else None
    blas = "unknown"
    try:
        blas = cfg["Build Dependencies"]["blas"]["name"]
    except (TypeError, KeyError):
        pass
    print(f"numpy {np.__version__}, BLAS {blas}")
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        reps = 3 if n >= 2048 else 10
        t = best(lambda: np.matmul(a, b, out=c), reps)
        print(f"numpy sgemm n={n}: {t * 1e3:.2f} ms, {2 * n**3 / t / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
