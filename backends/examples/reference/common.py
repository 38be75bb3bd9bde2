"""What the examples' numpy references share: `common::values` of the Rust examples."""

import json
import os

import numpy as np

M64 = (1 << 64) - 1


def values(seed, n, scale):
    """common::values: splitmix64, the top 24 bits as a unit in [0, 1), then f32 math, so
    the weights are bit-identical to the Rust side's."""
    s = seed
    units = []
    for _ in range(n):
        s = (s + 0x9E3779B97F4A7C15) & M64
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        units.append((z >> 40) / float(1 << 24))
    u = np.asarray(units, dtype=np.float32)
    return (u * np.float32(2.0) - np.float32(1.0)) * np.float32(scale)


def write_reference(here, name, weights32, output, **extra):
    """Writes `name` next to the script: the first four values' bits of every weight (the
    Rust test checks it made the same ones), `extra` fields, and the output."""
    doc = {**extra,
           "weights_head": {k: v[:4].view(np.uint32).tolist() for k, v in weights32.items()},
           "output": np.asarray(output).reshape(-1).tolist()}
    path = os.path.join(here, name)
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    rms = float(np.sqrt(np.mean(np.asarray(output) ** 2)))
    print(f"{name}: {os.path.getsize(path)} bytes, output rms {rms:.4f}")
