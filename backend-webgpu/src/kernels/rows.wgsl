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
var<workgroup> partial32: array<f32, 32>;
var<workgroup> partial4: array<f32, 4>;

fn combine(a: f32, b: f32, is_max: bool) -> f32 {
    return select(a + b, max_nan(a, b), is_max);
}

// The workgroup's combination of every thread's `v` (max with NaN propagating, or sum),
// returned to every thread: eight at a time in a fixed order, 256 -> 32 -> 4 -> 1, so
// five barriers instead of a binary tree's nine.
fn tree(lid: u32, v: f32, is_max: bool) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    if (lid < 32u) {
        var acc = partial[8u * lid];
        for (var i = 1u; i < 8u; i = i + 1u) {
            acc = combine(acc, partial[8u * lid + i], is_max);
        }
        partial32[lid] = acc;
    }
    workgroupBarrier();
    if (lid < 4u) {
        var acc = partial32[8u * lid];
        for (var i = 1u; i < 8u; i = i + 1u) {
            acc = combine(acc, partial32[8u * lid + i], is_max);
        }
        partial4[lid] = acc;
    }
    workgroupBarrier();
    let r = combine(combine(partial4[0], partial4[1], is_max),
                    combine(partial4[2], partial4[3], is_max), is_max);
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

// ---- rows of up to 4 * WG * CV elements held in registers ------------------------------
// The row is read once, as vec4s (cols % 4 == 0, x and y on 16-byte boundaries of their
// bindings): each thread keeps its CV vec4s, the statistics come from them, and the row
// is written once. So the op is one read and one write of the row, and running in place
// needs no copy of x (IN_PLACE: the row is read from y, every read before any write,
// rows disjoint between workgroups). Same fixed-order trees as `main`.

@group(0) @binding(5) var<storage, read_write> x4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y4: array<vec4<f32>>;

override IN_PLACE: bool = false;

const CV: u32 = 4u;

fn max4(v: vec4<f32>) -> f32 {
    return max_nan(max_nan(v.x, v.y), max_nan(v.z, v.w));
}

fn sum4(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

fn exp4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(exp_acc(v.x), exp_acc(v.y), exp_acc(v.z), exp_acc(v.w));
}

fn gamma4(l: u32) -> vec4<f32> {
    if ((params.flags & 1u) != 0u) {
        let g = params.g_off + 4u * l;
        return vec4<f32>(gamma[g], gamma[g + 1u], gamma[g + 2u], gamma[g + 3u]);
    }
    return vec4<f32>(1.0);
}

fn beta4(l: u32) -> vec4<f32> {
    if ((params.flags & 2u) != 0u) {
        let b = params.b_off + 4u * l;
        return vec4<f32>(beta[b], beta[b + 1u], beta[b + 2u], beta[b + 3u]);
    }
    return vec4<f32>(0.0);
}

@compute @workgroup_size(WG)
fn cached4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= params.rows) {
        return;
    }
    let c4 = params.cols / 4u;
    let xb = params.x_off / 4u + row * c4;
    let yb = params.y_off / 4u + row * c4;
    let n = f32(params.cols);
    var v: array<vec4<f32>, CV>;
    for (var j = 0u; j < CV; j = j + 1u) {
        let l = lid + j * WG;
        if (l < c4) {
            if (IN_PLACE) {
                v[j] = y4[yb + l];
            } else {
                v[j] = x4[xb + l];
            }
        }
    }
    switch OP {
        case ROW_SOFTMAX, ROW_LOG_SOFTMAX: {
            var m = -inf_f32();
            for (var j = 0u; j < CV; j = j + 1u) {
                if (lid + j * WG < c4) {
                    m = max_nan(m, max4(v[j]));
                }
            }
            m = tree(lid, m, true);
            var s = 0.0;
            if (OP == ROW_SOFTMAX) {
                // Each exp once: kept in the registers for the write.
                for (var j = 0u; j < CV; j = j + 1u) {
                    if (lid + j * WG < c4) {
                        v[j] = exp4(v[j] - m);
                        s = s + sum4(v[j]);
                    }
                }
            } else {
                for (var j = 0u; j < CV; j = j + 1u) {
                    if (lid + j * WG < c4) {
                        s = s + sum4(exp4(v[j] - m));
                    }
                }
            }
            s = tree(lid, s, false);
            if (OP == ROW_SOFTMAX) {
                let r = div_acc(1.0, s);
                for (var j = 0u; j < CV; j = j + 1u) {
                    let l = lid + j * WG;
                    if (l < c4) {
                        y4[yb + l] = v[j] * r;
                    }
                }
            } else {
                let log_s = log_acc(s);
                for (var j = 0u; j < CV; j = j + 1u) {
                    let l = lid + j * WG;
                    if (l < c4) {
                        y4[yb + l] = (v[j] - m) - log_s;
                    }
                }
            }
        }
        case ROW_LAYER_NORM: {
            var s = 0.0;
            for (var j = 0u; j < CV; j = j + 1u) {
                if (lid + j * WG < c4) {
                    s = s + sum4(v[j]);
                }
            }
            let mean = div_acc(tree(lid, s, false), n);
            var q = 0.0;
            for (var j = 0u; j < CV; j = j + 1u) {
                if (lid + j * WG < c4) {
                    let d = v[j] - mean;
                    q = q + sum4(d * d);
                }
            }
            let inv = div_acc(1.0, sqrt_acc(div_acc(tree(lid, q, false), n) + params.eps));
            for (var j = 0u; j < CV; j = j + 1u) {
                let l = lid + j * WG;
                if (l < c4) {
                    y4[yb + l] = (v[j] - mean) * inv * gamma4(l) + beta4(l);
                }
            }
        }
        default: { // ROW_RMS_NORM
            var q = 0.0;
            for (var j = 0u; j < CV; j = j + 1u) {
                if (lid + j * WG < c4) {
                    q = q + sum4(v[j] * v[j]);
                }
            }
            let inv = div_acc(1.0, sqrt_acc(div_acc(tree(lid, q, false), n) + params.eps));
            for (var j = 0u; j < CV; j = j + 1u) {
                let l = lid + j * WG;
                if (l < c4) {
                    y4[yb + l] = v[j] * inv * gamma4(l);
                }
            }
        }
    }
}
