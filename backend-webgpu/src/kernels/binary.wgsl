// out = f(a, b) elementwise. OP selects f. The entry point says which operands alias:
// WebGPU forbids binding overlapping ranges where one is writable, so an aliased
// operand is read through the binding it shares.

struct Params {
    n: u32,
    a_off: u32,
    b_off: u32,
    out_off: u32,
    // Always 0, but unknown to the shader compiler: see `second`.
    zero: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override OP: u32 = 0u;

const WG: u32 = 256u;

fn apply(x: f32, y: f32) -> f32 {
    switch OP {
        case 0u: { return x + y; }
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return div_acc(x, y); }
        case 4u: { return max_nan(x, y); }
        case 5u: { return min_nan(x, y); }
        case 6u: { return pow_acc(x, y); }
        default: { return nan_f32(); }
    }
}

// The same value again, through an opaque identity. When both operands are provably
// one value, shader compilers that treat float ops as inexact (Mesa's NIR, for one)
// fold x - x to 0 and x / x to 1, which is wrong for infinities and NaN.
fn second(v: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v) ^ params.zero);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        out[params.out_off + i] = apply(a[params.a_off + i], b[params.b_off + i]);
    }
}

@compute @workgroup_size(WG)
fn out_is_a(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        let o = params.out_off + i;
        out[o] = apply(out[o], b[params.b_off + i]);
    }
}

@compute @workgroup_size(WG)
fn out_is_b(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        let o = params.out_off + i;
        out[o] = apply(a[params.a_off + i], out[o]);
    }
}

@compute @workgroup_size(WG)
fn all_same(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        let o = params.out_off + i;
        let v = out[o];
        out[o] = apply(v, second(v));
    }
}

@compute @workgroup_size(WG)
fn a_is_b(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        let v = a[params.a_off + i];
        out[params.out_off + i] = apply(v, second(v));
    }
}
