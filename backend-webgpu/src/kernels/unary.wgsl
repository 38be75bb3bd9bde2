// y = f(x) elementwise. OP selects f; `main` reads x and writes y, `in_place` updates y.

struct Params {
    n: u32,
    x_off: u32,
    y_off: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

override OP: u32 = 0u;

const WG: u32 = 256u;

fn apply(v: f32) -> f32 {
    switch OP {
        case 0u: { // relu
            if (is_nan(v)) {
                return v;
            }
            return select(0.0, v, v > 0.0);
        }
        case 1u: { return sigmoid_acc(v); }
        case 2u: { return tanh_acc(v); }
        case 3u: { return exp_acc(v); }
        case 4u: { return log_acc(v); }
        case 5u: { return sqrt_acc(v); }
        case 6u: { return abs(v); }
        case 7u: { return -v; }
        case 8u: { return gelu_acc(v); }
        case 9u: { // silu
            if (is_nan(v)) {
                return v;
            }
            if (is_inf(v)) {
                // x * sigmoid(x): -inf * 0 = NaN at -inf, as IEEE arithmetic (and PyTorch) gives.
                return select(v, nan_f32(), v < 0.0);
            }
            return v * sigmoid_acc(v);
        }
        case 10u: { return div_acc(1.0, v); }
        case 11u: { return rsqrt_acc(v); }
        case 12u: { return v * v; }
        case 13u: { return sin_acc(v); }
        case 14u: { return cos_acc(v); }
        case 15u: { return floor(v); }
        case 16u: { return ceil(v); }
        default: { return nan_f32(); }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        y[params.y_off + i] = apply(x[params.x_off + i]);
    }
}

@compute @workgroup_size(WG)
fn in_place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        y[params.y_off + i] = apply(y[params.y_off + i]);
    }
}
