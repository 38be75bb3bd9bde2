#!/usr/bin/env python3
"""The numpy (float64) reference of `backends/examples/mobilenet.rs`: one MobileNetV2
inverted-residual block (1x1 expansion to 6x the channels, ReLU6; depthwise 3x3, ReLU6;
1x1 projection; the residual add), all convolutions with a bias.

    python3 backends/examples/reference/mobilenet.py

writes `mobilenet.json`: the first values of each weight and the block's output. The
convolutions are written here from their definition (np.pad, strided windows, one
channel at a time for the depthwise one), not from the Rust code.
"""

import os

import numpy as np

from common import values, write_reference

HERE = os.path.dirname(os.path.abspath(__file__))

N, C, H, W, EXPAND, SEED = 2, 16, 14, 14, 6, 23
E = C * EXPAND


def weights():
    # Large enough that ReLU6 clips a good share of both activations.
    w1 = np.float32(0.5)
    w3 = np.float32(0.5)
    w2 = np.float32(1.0) / np.sqrt(np.float32(E))
    return {
        "x": values(SEED, N * C * H * W, np.float32(4.0)),
        "w_expand": values(SEED + 1, E * C, w1),
        "b_expand": values(SEED + 2, E, np.float32(0.1)),
        "w_dw": values(SEED + 3, E * 9, w3),
        "b_dw": values(SEED + 4, E, np.float32(0.1)),
        "w_project": values(SEED + 5, C * E, w2),
        "b_project": values(SEED + 6, C, np.float32(0.1)),
    }


def pointwise(x, w, b):
    """1x1 convolution: out[n, k] = sum_c w[k, c] x[n, c] + b[k]."""
    return np.einsum("kc,nchw->nkhw", w, x) + b[None, :, None, None]


def depthwise3x3(x, w, b):
    """Each channel with its own 3x3 filter, zero padding 1, stride 1."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros_like(x)
    for fy in range(3):
        for fx in range(3):
            out += xp[:, :, fy:fy + H, fx:fx + W] * w[None, :, fy, fx, None, None]
    return out + b[None, :, None, None]


def relu6(x):
    return np.minimum(np.maximum(x, 0.0), 6.0)


def main():
    w32 = weights()
    w = {k: v.astype(np.float64) for k, v in w32.items()}
    x = w["x"].reshape(N, C, H, W)
    h = relu6(pointwise(x, w["w_expand"].reshape(E, C), w["b_expand"]))
    h = relu6(depthwise3x3(h, w["w_dw"].reshape(E, 3, 3), w["b_dw"]))
    y = x + pointwise(h, w["w_project"].reshape(C, E), w["b_project"])
    write_reference(HERE, "mobilenet.json", w32, y, shape=[N, C, H, W])


if __name__ == "__main__":
    main()
