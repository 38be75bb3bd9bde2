// y = f(x) elementwise. OP selects f: a UNARY_* op, or a UNARY_PARAM_* op with its
// parameters a and b; `main` reads x and writes y, `in_place` updates y.

struct Params {
    n: u32,
    x_off: u32,
    y_off: u32,
    // Output words of the `packed16` entry (two 16-bit elements each).
    words: u32,
    a: f32,
    b: f32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

override OP: u32 = 0u;

const WG: u32 = 256u;

fn apply(v: f32) -> f32 {
    switch OP {
        case UNARY_RELU: { // relu
            if (is_nan(v)) {
                return v;
            }
            return select(0.0, v, v > 0.0);
        }
        case UNARY_SIGMOID: { return sigmoid_acc(v); }
        case UNARY_TANH: { return tanh_acc(v); }
        case UNARY_EXP: { return exp_acc(v); }
        case UNARY_LOG: { return log_acc(v); }
        case UNARY_SQRT: { return sqrt_acc(v); }
        case UNARY_ABS: { return abs(v); }
        case UNARY_NEG: { return -v; }
        case UNARY_GELU: { return gelu_acc(v); }
        case UNARY_SILU: { // silu
            if (is_nan(v)) {
                return v;
            }
            if (is_inf(v)) {
                // x * sigmoid(x): -inf * 0 = NaN at -inf, as IEEE arithmetic (and PyTorch) gives.
                return select(v, nan_f32(), v < 0.0);
            }
            return v * sigmoid_acc(v);
        }
        case UNARY_RECIP: { return div_acc(1.0, v); }
        case UNARY_RSQRT: { return rsqrt_acc(v); }
        case UNARY_SQUARE: { return v * v; }
        case UNARY_SIN: { return sin_acc(v); }
        case UNARY_COS: { return cos_acc(v); }
        case UNARY_FLOOR: { return floor(v); }
        case UNARY_CEIL: { return ceil(v); }
        case UNARY_ERF: { return erf_acc(v); }
        case UNARY_SOFTPLUS: { return softplus_acc(v); }
        case UNARY_SOFTSIGN: {
            if (is_inf(v)) {
                return select(1.0, -1.0, v < 0.0);
            }
            return div_acc(v, 1.0 + abs(v));
        }
        // -inf * tanh(0) is NaN, as the formula gives.
        case UNARY_MISH: { return v * tanh_acc(softplus_acc(v)); }
        case UNARY_HARDSWISH: {
            if (v <= -3.0) {
                return 0.0;
            }
            if (v >= 3.0) {
                return v;
            }
            return v * (v + 3.0) / 6.0;
        }
        case UNARY_TAN: { return tan_acc(v); }
        case UNARY_ASIN: { return asin_acc(v); }
        case UNARY_ACOS: { return acos_acc(v); }
        case UNARY_ATAN: { return atan_acc(v); }
        case UNARY_SINH: { return sinh_acc(v); }
        case UNARY_COSH: { return cosh_acc(v); }
        case UNARY_ASINH: { return asinh_acc(v); }
        case UNARY_ACOSH: { return acosh_acc(v); }
        case UNARY_ATANH: { return atanh_acc(v); }
        case UNARY_SIGN: {
            if (is_nan(v)) {
                return v;
            }
            return select(select(0.0, -1.0, v < 0.0), 1.0, v > 0.0);
        }
        case UNARY_ROUND: { return round(v); }
        case UNARY_GELU_TANH: {
            if (is_nan(v)) {
                return v;
            }
            // x/2 (1 + tanh(z)) = x sigmoid(2z), z = sqrt(2/pi) (x + 0.044715 x^3).
            return v * sigmoid_acc(1.5957691216057308 * (v + 0.044715 * v * v * v));
        }
        case UNARY_PARAM_LEAKY_RELU: { return select(params.a * v, v, v > 0.0); }
        case UNARY_PARAM_ELU: { return select(params.a * expm1_acc(v), v, v > 0.0); }
        case UNARY_PARAM_SELU: {
            return params.b * select(params.a * expm1_acc(v), v, v > 0.0);
        }
        case UNARY_PARAM_CELU: {
            return max_nan(0.0, v) + min_nan(0.0, params.a * expm1_acc(div_acc(v, params.a)));
        }
        case UNARY_PARAM_HARD_SIGMOID: {
            return max_nan(0.0, min_nan(1.0, params.a * v + params.b));
        }
        case UNARY_PARAM_CLIP: { return min_nan(max_nan(v, params.a), params.b); }
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

// ---- vec4 entries: both operands start on a 16-byte boundary of their bindings ---------
// Each thread handles four consecutive elements with one 16-byte load and store; the
// last thread finishes a partial vector element by element.

@group(0) @binding(3) var<storage, read_write> x4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y4: array<vec4<f32>>;

fn apply4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(apply(v.x), apply(v.y), apply(v.z), apply(v.w));
}

@compute @workgroup_size(WG)
fn main4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let whole = params.n / 4u;
    let xo = params.x_off / 4u;
    let yo = params.y_off / 4u;
    if (t < whole) {
        y4[yo + t] = apply4(x4[xo + t]);
    } else if (t == whole) {
        for (var i = 4u * whole; i < params.n; i = i + 1u) {
            let e = i - 4u * whole;
            y4[yo + t][e] = apply(x4[xo + t][e]);
        }
    }
}

@compute @workgroup_size(WG)
fn in_place4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let whole = params.n / 4u;
    let yo = params.y_off / 4u;
    if (t < whole) {
        y4[yo + t] = apply4(y4[yo + t]);
    } else if (t == whole) {
        for (var i = 4u * whole; i < params.n; i = i + 1u) {
            let e = i - 4u * whole;
            y4[yo + t][e] = apply(y4[yo + t][e]);
        }
    }
}

// ---- f16/bf16 storage (DTYPE): `packed16` --------------------------------------------
// One 32-bit output word (two elements) per thread, the half-word outside the range kept;
// offsets in elements from the start of the bindings. Each element widened exactly, f(x)
// in f32, rounded once to DTYPE at the store. In place (IN_PLACE), x is read from the
// output's own word, and binding 5 is a placeholder.

@group(0) @binding(5) var<storage, read_write> xh: array<u32>;
@group(0) @binding(6) var<storage, read_write> yh: array<u32>;

override DTYPE: u32 = 1u;
override IN_PLACE: bool = false;

fn store_half(v: f32) -> u32 {
    if (DTYPE == DTYPE_F16) {
        return f32_to_f16_bits(bitcast<u32>(v)) & 0xffffu;
    }
    return f32_to_bf16_bits(bitcast<u32>(v)) & 0xffffu;
}

// Output words per thread, grid-strided (each pass over the words coalesced).
const PW: u32 = 4u;

fn packed_word(w: u32, start: u32, end: u32) {
    let e0 = 2u * w;
    // Fast path: both halves in range and the input's words line up with the output's
    // (or in place): one load, no merge.
    if (e0 >= start && e0 + 2u <= end && (IN_PLACE || ((params.x_off ^ start) & 1u) == 0u)) {
        var src: u32;
        if (IN_PLACE) {
            src = yh[w];
        } else {
            src = xh[(params.x_off + e0 - start) >> 1u];
        }
        let lo = store_half(apply(bitcast<f32>(decode_bits(src, 0u, DTYPE))));
        let hi = store_half(apply(bitcast<f32>(decode_bits(src, 1u, DTYPE))));
        yh[w] = lo | (hi << 16u);
        return;
    }
    let old = yh[w];
    var word = old;
    for (var h = 0u; h < 2u; h = h + 1u) {
        let e = e0 + h;
        if (e >= start && e < end) {
            var bits: u32;
            if (IN_PLACE) {
                bits = decode_bits(old, e, DTYPE);
            } else {
                let xe = params.x_off + (e - start);
                bits = decode_bits(xh[xe >> 1u], xe, DTYPE);
            }
            let shift = h * 16u;
            word = (word & ~(0xffffu << shift)) | (store_half(apply(bitcast<f32>(bits))) << shift);
        }
    }
    yh[w] = word;
}

@compute @workgroup_size(WG)
fn packed16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let threads = (params.words + PW - 1u) / PW;
    if (t >= threads) {
        return;
    }
    let start = params.y_off;
    let end = params.y_off + params.n;
    for (var i = 0u; i < PW; i = i + 1u) {
        let tw = t + i * threads;
        if (tw < params.words) {
            packed_word(params.y_off / 2u + tw, start, end);
        }
    }
}

// `packed16x8`: as `packed16` when input and output start at the same element offset
// modulo 8 (same 16-byte phase) or in place: one 16-byte load and store of 8 elements per
// thread. A quad only partly in range keeps its other elements (a whole-quad
// read-modify-write, which no other thread touches).
@group(0) @binding(7) var<storage, read_write> xq: array<vec4<u32>>;
@group(0) @binding(8) var<storage, read_write> yq: array<vec4<u32>>;

fn apply_word(w: u32) -> u32 {
    let lo = store_half(apply(bitcast<f32>(decode_bits(w, 0u, DTYPE))));
    let hi = store_half(apply(bitcast<f32>(decode_bits(w, 1u, DTYPE))));
    return lo | (hi << 16u);
}

@compute @workgroup_size(WG)
fn packed16x8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    if (t >= params.words) {
        return;
    }
    let start = params.y_off;
    let end = params.y_off + params.n;
    let q = start / 8u + t;
    var src: vec4<u32>;
    if (IN_PLACE) {
        src = yq[q];
    } else {
        src = xq[params.x_off / 8u + t];
    }
    let e0 = 8u * q;
    if (e0 >= start && e0 + 8u <= end) {
        yq[q] = vec4<u32>(apply_word(src.x), apply_word(src.y), apply_word(src.z), apply_word(src.w));
        return;
    }
    var out = yq[q];
    for (var e = 0u; e < 8u; e = e + 1u) {
        let g = e0 + e;
        if (g >= start && g < end) {
            let v = store_half(apply(bitcast<f32>(decode_bits(src[e / 2u], e, DTYPE))));
            let shift = (e & 1u) * 16u;
            out[e / 2u] = (out[e / 2u] & ~(0xffffu << shift)) | (v << shift);
        }
    }
    yq[q] = out;
}
