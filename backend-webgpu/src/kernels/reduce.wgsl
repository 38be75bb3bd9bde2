// Reductions of an [outer, len, inner] view over len. Max and Min propagate NaN; an
// empty axis yields the identity (Mean: NaN, LogSumExp: -inf).
//
// Each element enters as `pre(v, m)` (its square, its magnitude, or exp(v - m)) and the
// partial results combine with `combine`. LogSumExp is two dispatches: REDUCE_MAX writes
// each output's maximum m to y, then REDUCE_LOGSUMEXP sums exp(v - m), reading m from the
// same output element (every thread of an output reads it before the barrier that
// precedes the one write), and writes m + log(sum).
//
// - `rows` / `rows4` (inner == 1, long rows): a workgroup per output row reduces it as a
//   tree; `rows4` reads 16 bytes at a time (rows start on 16-byte boundaries).
// - `cols` (everything else): a workgroup takes COLS consecutive outputs and splits the
//   reduced axis into 256 / COLS slices, one thread per (output, slice), so consecutive
//   threads read consecutive addresses and short outputs still fill the device; the
//   slices' partial results are combined in workgroup memory, in a fixed order.

struct Params {
    outer: u32,
    len: u32,
    inner: u32,
    x_off: u32,
    y_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// OP is one of the REDUCE_* constants, which the Rust side generates from ReduceOp.
override OP: u32 = 0u;

// The input's storage (DTYPE_*): f16 and bf16 are read from `xh` (binding 5) by `rows` and
// `cols`, each element widened exactly; the outputs are f32 (into a scratch buffer, which
// a cast then rounds once into the output's type). Binding 1 or 5 is a placeholder.
override DTYPE: u32 = 0u;
@group(0) @binding(5) var<storage, read_write> xh: array<u32>;

fn load(i: u32) -> f32 {
    if (DTYPE == DTYPE_F32) {
        return x[i];
    }
    return bitcast<f32>(decode_bits(xh[i >> 1u], i, DTYPE));
}

const WG: u32 = 256u;

fn identity() -> f32 {
    switch OP {
        case REDUCE_MAX: { return -inf_f32(); }
        case REDUCE_MIN: { return inf_f32(); }
        case REDUCE_PROD: { return 1.0; }
        default: { return 0.0; }
    }
}

// Not a ReduceOp: L2's first pass, the largest magnitude (see ops/reduce.rs).
const REDUCE_ABS_MAX: u32 = 100u;

fn combine(acc: f32, v: f32) -> f32 {
    switch OP {
        case REDUCE_MAX, REDUCE_ABS_MAX: { return max_nan(acc, v); }
        case REDUCE_MIN: { return min_nan(acc, v); }
        case REDUCE_PROD: { return acc * v; }
        default: { return acc + v; }
    }
}

// ceil(log2(len)): Sum and Mean add v / 2^s, so that no partial sum of finite values
// overflows (a mean of values near the f32 maximum, as bf16 storage holds, is finite, and
// so is a sum whose partial sums pass the maximum but whose result does not). Scaling by
// a power of two is exact: the sums round as unscaled ones would, but for terms that
// fall below the normal range.
fn mean_shift() -> i32 {
    if (params.len <= 1u) {
        return 0;
    }
    return i32(32u - countLeadingZeros(params.len - 1u));
}

// The exponent of L2's scale for a largest magnitude m: elements scaled by 2^-e have
// magnitudes below 4, so their squares neither overflow nor lose the small ones.
fn l2_exp(m: f32) -> i32 {
    return clamp(i32((bitcast<u32>(m) >> 23u) & 0xffu) - 127, -126, 126);
}

// What one element adds: m is the output's maximum (LogSumExp's second pass) or largest
// magnitude (L2's), read back from the output.
fn pre(v: f32, m: f32) -> f32 {
    switch OP {
        case REDUCE_SUM_SQUARE: { return v * v; }
        case REDUCE_L2: {
            let t = v * pow2i(-l2_exp(m));
            return t * t;
        }
        case REDUCE_L1, REDUCE_ABS_MAX: { return abs(v); }
        case REDUCE_LOGSUMEXP: { return exp_acc(v - m); }
        // m is the scale 2^-ceil(log2 len) here (`max_of`), computed once per thread.
        case REDUCE_MEAN, REDUCE_SUM: { return v * m; }
        default: { return v; }
    }
}

fn pre4(v: vec4<f32>, m: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(pre(v.x, m.x), pre(v.y, m.y), pre(v.z, m.z), pre(v.w, m.w));
}

// What `pre` needs besides the element: the maximum (or magnitude) the first pass of
// LogSumExp (or L2) left in y[i], or Sum's and Mean's scale; y is not read otherwise.
fn max_of(i: u32) -> f32 {
    if (OP == REDUCE_LOGSUMEXP || OP == REDUCE_L2) {
        return y[i];
    }
    if (OP == REDUCE_SUM || OP == REDUCE_MEAN) {
        return pow2i(-mean_shift());
    }
    return 0.0;
}

fn finish(acc: f32, m: f32) -> f32 {
    switch OP {
        case REDUCE_MEAN: {
            if (params.len == 0u) {
                return nan_f32();
            }
            return (acc / f32(params.len)) * pow2i(mean_shift());
        }
        case REDUCE_SUM: { return acc * pow2i(mean_shift()); }
        case REDUCE_L2: {
            if (is_nan(m) || is_inf(m) || m == 0.0) {
                return m;
            }
            return sqrt_acc(acc) * pow2i(l2_exp(m));
        }
        case REDUCE_LOGSUMEXP: {
            // NaN, +inf, and -inf (only -inf, or no values) are the result as they are.
            if (is_nan(m) || is_inf(m)) {
                return m;
            }
            return m + log_acc(acc);
        }
        default: { return acc; }
    }
}

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    // Uniform per workgroup, so the barriers below are reached by all or none.
    if (row >= params.outer) {
        return;
    }
    var acc = identity();
    let base = params.x_off + row * params.len;
    let m = max_of(params.y_off + row);
    for (var l = lid; l < params.len; l = l + WG) {
        acc = combine(acc, pre(load(base + l), m));
    }
    let total = tree(lid, acc);
    if (lid == 0u) {
        y[params.y_off + row] = finish(total, m);
    }
}

@group(0) @binding(3) var<storage, read_write> x4: array<vec4<f32>>;

fn combine4(acc: f32, v: vec4<f32>) -> f32 {
    return combine(combine(combine(combine(acc, v.x), v.y), v.z), v.w);
}

fn tree(lid: u32, acc: f32) -> f32 {
    return tree_of(lid, 0u, WG, acc);
}

// The tree over `width` threads (a power of two dividing WG), lanes 0.. of the group
// starting at thread `first`: every thread of the workgroup calls it (barriers), each
// gets its group's result.
fn tree_of(lid: u32, first: u32, width: u32, acc: f32) -> f32 {
    partial[lid] = acc;
    workgroupBarrier();
    let lane = lid - first;
    for (var s = width / 2u; s > 0u; s = s / 2u) {
        if (lane < s) {
            partial[lid] = combine(partial[lid], partial[lid + s]);
        }
        workgroupBarrier();
    }
    return partial[first];
}

@compute @workgroup_size(WG)
fn rows4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= params.outer) {
        return;
    }
    var acc = identity();
    let quads = params.len / 4u;
    let base = (params.x_off + row * params.len) / 4u;
    let m = max_of(params.y_off + row);
    for (var q = lid; q < quads; q = q + WG) {
        acc = combine4(acc, pre4(x4[base + q], vec4<f32>(m)));
    }
    let total = tree(lid, acc);
    if (lid == 0u) {
        y[params.y_off + row] = finish(total, m);
    }
}

// Outputs per workgroup in `cols`; 256 / COLS threads share each output.
override COLS: u32 = 32u;

@compute @workgroup_size(WG)
fn cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let slices = WG / COLS;
    let c = lid % COLS;
    let slice = lid / COLS;
    let g = (wid.x + wid.y * nwg.x) * COLS + c;
    let total = params.outer * params.inner;
    var acc = identity();
    var m = 0.0;
    if (g < total) {
        m = max_of(params.y_off + g);
        let o = g / params.inner;
        let i = g % params.inner;
        let chunk = (params.len + slices - 1u) / slices;
        let l0 = slice * chunk;
        let l1 = min(params.len, l0 + chunk);
        var idx = params.x_off + (o * params.len + l0) * params.inner + i;
        let step = params.inner;
        var l = l0;
        // Four loads in flight, combined in order (as in `cols4`).
        for (; l + 4u <= l1; l = l + 4u) {
            let v0 = pre(load(idx), m);
            let v1 = pre(load(idx + step), m);
            let v2 = pre(load(idx + 2u * step), m);
            let v3 = pre(load(idx + 3u * step), m);
            acc = combine(combine(combine(combine(acc, v0), v1), v2), v3);
            idx = idx + 4u * step;
        }
        for (; l < l1; l = l + 1u) {
            acc = combine(acc, pre(load(idx), m));
            idx = idx + step;
        }
    }
    partial[lid] = acc;
    workgroupBarrier();
    if (slice == 0u && g < total) {
        var r = partial[c];
        for (var t = 1u; t < slices; t = t + 1u) {
            r = combine(r, partial[t * COLS + c]);
        }
        y[params.y_off + g] = finish(r, m);
    }
}

// `cols4`: as `cols`, four adjacent outputs per thread with 16-byte loads and stores
// (inner a multiple of 4, both operands on 16-byte boundaries). COLS4 quads per
// workgroup, 256 / COLS4 slices of the reduced axis.
@group(0) @binding(4) var<storage, read_write> y4: array<vec4<f32>>;

override COLS4: u32 = 8u;

var<workgroup> partial4: array<vec4<f32>, WG>;

fn combine_v(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(combine(a.x, b.x), combine(a.y, b.y), combine(a.z, b.z), combine(a.w, b.w));
}

@compute @workgroup_size(WG)
fn cols4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let slices = WG / COLS4;
    let c = lid % COLS4;
    let slice = lid / COLS4;
    let g = (wid.x + wid.y * nwg.x) * COLS4 + c; // quad of outputs
    let quads = params.outer * params.inner / 4u;
    var acc = vec4<f32>(identity());
    var m = vec4<f32>(0.0);
    if (g < quads) {
        if (OP == REDUCE_LOGSUMEXP || OP == REDUCE_L2) {
            m = y4[params.y_off / 4u + g];
        } else if (OP == REDUCE_SUM || OP == REDUCE_MEAN) {
            // (Not through max_of: this entry binds y as y4 only.)
            m = vec4<f32>(pow2i(-mean_shift()));
        }
        let o = (4u * g) / params.inner;
        let i = (4u * g) % params.inner;
        let chunk = (params.len + slices - 1u) / slices;
        let l0 = slice * chunk;
        let l1 = min(params.len, l0 + chunk);
        let step = params.inner / 4u;
        var idx = (params.x_off + (o * params.len + l0) * params.inner + i) / 4u;
        var l = l0;
        // Four loads in flight before they are combined (in order: the result is the same
        // as one at a time), so that a thread keeps more than one load outstanding:
        // 0.77 -> 0.99 of PyTorch at 16384 x 16384 on the H200.
        for (; l + 4u <= l1; l = l + 4u) {
            let v0 = pre4(x4[idx], m);
            let v1 = pre4(x4[idx + step], m);
            let v2 = pre4(x4[idx + 2u * step], m);
            let v3 = pre4(x4[idx + 3u * step], m);
            acc = combine_v(combine_v(combine_v(combine_v(acc, v0), v1), v2), v3);
            idx = idx + 4u * step;
        }
        for (; l < l1; l = l + 1u) {
            acc = combine_v(acc, pre4(x4[idx], m));
            idx = idx + step;
        }
    }
    partial4[lid] = acc;
    workgroupBarrier();
    if (slice == 0u && g < quads) {
        var r = partial4[c];
        for (var t = 1u; t < slices; t = t + 1u) {
            r = combine_v(r, partial4[t * COLS4 + c]);
        }
        y4[params.y_off / 4u + g] =
            vec4<f32>(finish(r.x, m.x), finish(r.y, m.y), finish(r.z, m.z), finish(r.w, m.w));
    }
}

// `rows8h`: `rows` for 16-bit inputs (DTYPE) whose rows are whole groups of 8 elements
// starting on 16-byte boundaries: 16-byte loads of 8 elements each. A workgroup takes
// ROWS8H rows, WG / ROWS8H threads each (1 for long rows; 8 where a row is under 4 loads
// per thread of a whole workgroup, so that each thread has several loads in flight and
// a row's tree is 5 levels, not 8).
@group(0) @binding(6) var<storage, read_write> xh8: array<vec4<u32>>;

override ROWS8H: u32 = 1u;

fn combine_word(acc: f32, w: u32, m: f32) -> f32 {
    let v = decode_pair(w, DTYPE);
    return combine(combine(acc, pre(v.x, m)), pre(v.y, m));
}

@compute @workgroup_size(WG)
fn rows8h(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let width = WG / ROWS8H;
    let lane = lid % width;
    let first = (wid.x + wid.y * nwg.x) * ROWS8H;
    let row = first + lid / width;
    // A workgroup past the last row leaves (a uniform test: no thread of it reaches a
    // barrier); in the last one, a row past the end only skips its loads and its store.
    if (first >= params.outer) {
        return;
    }
    let live = row < params.outer;
    var acc = identity();
    var m = 0.0;
    if (live) {
        let octets = params.len / 8u;
        let base = (params.x_off + row * params.len) / 8u;
        m = max_of(params.y_off + row);
        for (var q = lane; q < octets; q = q + width) {
            let v = xh8[base + q];
            acc = combine_word(combine_word(combine_word(combine_word(acc, v.x, m), v.y, m), v.z, m), v.w, m);
        }
    }
    let total = tree_of(lid, lid - lane, width, acc);
    if (live && lane == 0u) {
        y[params.y_off + row] = finish(total, m);
    }
}
