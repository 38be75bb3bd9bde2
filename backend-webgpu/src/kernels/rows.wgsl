// Row ops over the last (contiguous) axis of a row-major [rows, cols] matrix: softmax,
// log_softmax, layer_norm and rms_norm. A workgroup per row; the row's statistics are
// accumulated in f32 per thread, combined as a tree in workgroup memory (a fixed order),
// in two passes over the row where the op needs them (max, then the sum of exp(x - max);
// mean, then the sum of centred squares, so a large mean does not cancel), then each
// thread writes its elements. In place, the dispatch binds a copy of x (the stream
// keeps bindings disjoint), so reading x after y is written is safe.

struct Params {
    rows: u32,
    cols: u32,
    x_off: u32,
    y_off: u32,
    g_off: u32,
    b_off: u32,
    // Bit 0: gamma is bound; bit 1: beta is bound.
    flags: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> beta: array<f32>;

// OP is one of the ROW_* constants, which the Rust side generates from RowOp.
override OP: u32 = 0u;

const WG: u32 = 256u;

var<workgroup> partial: array<f32, WG>;

// The workgroup's combination of every thread's `v` (max with NaN propagating, or sum),
// returned to every thread.
fn tree(lid: u32, v: f32, is_max: bool) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            let a = partial[lid];
            let b = partial[lid + s];
            partial[lid] = select(a + b, max_nan(a, b), is_max);
        }
        workgroupBarrier();
    }
    let r = partial[0];
    // Every thread has read the result before the next tree overwrites it.
    workgroupBarrier();
    return r;
}

fn scale(l: u32) -> f32 {
    if ((params.flags & 1u) != 0u) {
        return gamma[params.g_off + l];
    }
    return 1.0;
}

fn shift(l: u32) -> f32 {
    if ((params.flags & 2u) != 0u) {
        return beta[params.b_off + l];
    }
    return 0.0;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    // Uniform per workgroup, so the barriers below are reached by all or none.
    if (row >= params.rows) {
        return;
    }
    let cols = params.cols;
    let xb = params.x_off + row * cols;
    let yb = params.y_off + row * cols;
    let n = f32(cols);
    switch OP {
        case ROW_SOFTMAX, ROW_LOG_SOFTMAX: {
            var m = -inf_f32();
            for (var l = lid; l < cols; l = l + WG) {
                m = max_nan(m, x[xb + l]);
            }
            m = tree(lid, m, true);
            var s = 0.0;
            for (var l = lid; l < cols; l = l + WG) {
                s = s + exp_acc(x[xb + l] - m);
            }
            s = tree(lid, s, false);
            if (OP == ROW_SOFTMAX) {
                for (var l = lid; l < cols; l = l + WG) {
                    y[yb + l] = div_acc(exp_acc(x[xb + l] - m), s);
                }
            } else {
                let log_s = log_acc(s);
                for (var l = lid; l < cols; l = l + WG) {
                    y[yb + l] = (x[xb + l] - m) - log_s;
                }
            }
        }
        case ROW_LAYER_NORM: {
            var s = 0.0;
            for (var l = lid; l < cols; l = l + WG) {
                s = s + x[xb + l];
            }
            let mean = div_acc(tree(lid, s, false), n);
            var q = 0.0;
            for (var l = lid; l < cols; l = l + WG) {
                let d = x[xb + l] - mean;
                q = q + d * d;
            }
            let inv = div_acc(1.0, sqrt_acc(div_acc(tree(lid, q, false), n) + params.eps));
            for (var l = lid; l < cols; l = l + WG) {
                y[yb + l] = (x[xb + l] - mean) * inv * scale(l) + shift(l);
            }
        }
        default: { // ROW_RMS_NORM
            var q = 0.0;
            for (var l = lid; l < cols; l = l + WG) {
                let v = x[xb + l];
                q = q + v * v;
            }
            let inv = div_acc(1.0, sqrt_acc(div_acc(tree(lid, q, false), n) + params.eps));
            for (var l = lid; l < cols; l = l + WG) {
                y[yb + l] = x[xb + l] * inv * scale(l);
            }
        }
    }
}
