// Reductions of an [outer, len, inner] view over len. `rows` (inner == 1) gives each
// output row a workgroup that reduces it as a tree; `cols` gives each output a thread
// that walks len with consecutive threads on consecutive inner positions (coalesced).
// Max and Min propagate NaN; an empty axis yields the identity (Mean: NaN).

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

// 0 sum, 1 max, 2 min, 3 mean, 4 prod: ReduceOp's order.
override OP: u32 = 0u;

const WG: u32 = 256u;

fn identity() -> f32 {
    switch OP {
        case 1u: { return -inf_f32(); }
        case 2u: { return inf_f32(); }
        case 4u: { return 1.0; }
        default: { return 0.0; }
    }
}

fn combine(acc: f32, v: f32) -> f32 {
    switch OP {
        case 1u: { return max_nan(acc, v); }
        case 2u: { return min_nan(acc, v); }
        case 4u: { return acc * v; }
        default: { return acc + v; }
    }
}

fn finish(acc: f32) -> f32 {
    if (OP == 3u) {
        if (params.len == 0u) {
            return nan_f32();
        }
        return acc / f32(params.len);
    }
    return acc;
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
    for (var l = lid; l < params.len; l = l + WG) {
        acc = combine(acc, x[base + l]);
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            partial[lid] = combine(partial[lid], partial[lid + s]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        y[params.y_off + row] = finish(partial[0]);
    }
}

@compute @workgroup_size(WG)
fn cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = flat_index(wid, nwg, lid, WG);
    if (g >= params.outer * params.inner) {
        return;
    }
    let o = g / params.inner;
    let i = g % params.inner;
    var acc = identity();
    var idx = params.x_off + o * params.len * params.inner + i;
    for (var l = 0u; l < params.len; l = l + 1u) {
        acc = combine(acc, x[idx]);
        idx = idx + params.inner;
    }
    y[params.y_off + g] = finish(acc);
}
