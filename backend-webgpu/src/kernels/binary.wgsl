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
    // Output words of the `packed16` entry (two 16-bit elements each).
    words: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override OP: u32 = 0u;

const WG: u32 = 256u;

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

// ---- vec4 entries: every operand starts on a 16-byte boundary of its binding -----------
// Each thread handles four consecutive elements with 16-byte loads and stores; the last
// thread finishes a partial vector element by element.

@group(0) @binding(5) var<storage, read_write> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> b4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> out4: array<vec4<f32>>;

fn apply4(x: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
    switch OP {
        // The exact ones vectorise directly; the rest go element by element.
        case BINARY_ADD: { return x + y; }
        case BINARY_SUB: { return x - y; }
        case BINARY_MUL: { return x * y; }
        default: {
            return vec4<f32>(apply(x.x, y.x), apply(x.y, y.y), apply(x.z, y.z), apply(x.w, y.w));
        }
    }
}

fn second4(v: vec4<f32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(bitcast<vec4<u32>>(v) ^ vec4<u32>(params.zero));
}

@compute @workgroup_size(WG)
fn main4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let whole = params.n / 4u;
    if (t < whole) {
        out4[params.out_off / 4u + t] = apply4(a4[params.a_off / 4u + t], b4[params.b_off / 4u + t]);
    } else if (t == whole) {
        for (var e = 0u; e < params.n - 4u * whole; e = e + 1u) {
            out4[params.out_off / 4u + t][e] = apply(a4[params.a_off / 4u + t][e], b4[params.b_off / 4u + t][e]);
        }
    }
}

@compute @workgroup_size(WG)
fn out_is_a4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let whole = params.n / 4u;
    let o = params.out_off / 4u + t;
    if (t < whole) {
        out4[o] = apply4(out4[o], b4[params.b_off / 4u + t]);
    } else if (t == whole) {
        for (var e = 0u; e < params.n - 4u * whole; e = e + 1u) {
            out4[o][e] = apply(out4[o][e], b4[params.b_off / 4u + t][e]);
        }
    }
}

@compute @workgroup_size(WG)
fn out_is_b4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let whole = params.n / 4u;
    let o = params.out_off / 4u + t;
    if (t < whole) {
        out4[o] = apply4(a4[params.a_off / 4u + t], out4[o]);
    } else if (t == whole) {
        for (var e = 0u; e < params.n - 4u * whole; e = e + 1u) {
            out4[o][e] = apply(a4[params.a_off / 4u + t][e], out4[o][e]);
        }
    }
}

@compute @workgroup_size(WG)
fn all_same4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let whole = params.n / 4u;
    let o = params.out_off / 4u + t;
    if (t < whole) {
        let v = out4[o];
        out4[o] = apply4(v, second4(v));
    } else if (t == whole) {
        for (var e = 0u; e < params.n - 4u * whole; e = e + 1u) {
            let v = out4[o][e];
            out4[o][e] = apply(v, second(v));
        }
    }
}

@compute @workgroup_size(WG)
fn a_is_b4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let whole = params.n / 4u;
    let o = params.out_off / 4u + t;
    if (t < whole) {
        let v = a4[params.a_off / 4u + t];
        out4[o] = apply4(v, second4(v));
    } else if (t == whole) {
        for (var e = 0u; e < params.n - 4u * whole; e = e + 1u) {
            let v = a4[params.a_off / 4u + t][e];
            out4[o][e] = apply(v, second(v));
        }
    }
}

// ---- f16/bf16 storage (DTYPE): `packed16` --------------------------------------------
// One 32-bit output word (two elements) per thread, the half-word outside the range kept;
// offsets in elements from the start of the bindings. ALIAS says which operands share a
// range (the values of `Aliasing` in ops/elementwise.rs): an aliased operand is read
// through the binding it shares, and its own binding is a placeholder.

@group(0) @binding(8) var<storage, read_write> ah: array<u32>;
@group(0) @binding(9) var<storage, read_write> bh: array<u32>;
@group(0) @binding(10) var<storage, read_write> outh: array<u32>;

override DTYPE: u32 = 1u;
override ALIAS: u32 = 0u;
const ALIAS_DISTINCT: u32 = 0u;
const ALIAS_OUT_IS_A: u32 = 1u;
const ALIAS_OUT_IS_B: u32 = 2u;
const ALIAS_ALL_SAME: u32 = 3u;
const ALIAS_A_IS_B: u32 = 4u;

fn store_half(v: f32) -> u32 {
    if (DTYPE == DTYPE_F16) {
        return f32_to_f16_bits(bitcast<u32>(v)) & 0xffffu;
    }
    return f32_to_bf16_bits(bitcast<u32>(v)) & 0xffffu;
}

fn half_of(arr_word: u32, e: u32) -> f32 {
    return bitcast<f32>(decode_bits(arr_word, e, DTYPE));
}

// Output words per thread, grid-strided (each pass over the words coalesced).
const PW: u32 = 4u;

fn packed_word(w: u32, start: u32, end: u32) {
    let e0 = 2u * w;
    let i0 = e0 - start;
    // Fast path: both halves in range and every operand's words line up with the
    // output's: one load per distinct operand, no merge.
    if (e0 >= start && e0 + 2u <= end && ((params.a_off ^ start) & 1u) == 0u
        && ((params.b_off ^ start) & 1u) == 0u) {
        var aw: u32;
        var bw: u32;
        switch ALIAS {
            case ALIAS_OUT_IS_A: {
                aw = outh[w];
                bw = bh[(params.b_off + i0) >> 1u];
            }
            case ALIAS_OUT_IS_B: {
                aw = ah[(params.a_off + i0) >> 1u];
                bw = outh[w];
            }
            case ALIAS_ALL_SAME: {
                aw = outh[w];
                bw = aw;
            }
            case ALIAS_A_IS_B: {
                aw = ah[(params.a_off + i0) >> 1u];
                bw = aw;
            }
            default: {
                aw = ah[(params.a_off + i0) >> 1u];
                bw = bh[(params.b_off + i0) >> 1u];
            }
        }
        let same = ALIAS == ALIAS_ALL_SAME || ALIAS == ALIAS_A_IS_B;
        var r = 0u;
        for (var h = 0u; h < 2u; h = h + 1u) {
            let x = half_of(aw, h);
            var y = half_of(bw, h);
            if (same) {
                y = second(x);
            }
            r = r | (store_half(apply(x, y)) << (16u * h));
        }
        outh[w] = r;
        return;
    }
    let old = outh[w];
    var word = old;
    for (var h = 0u; h < 2u; h = h + 1u) {
        let e = e0 + h;
        if (e >= start && e < end) {
            let i = e - start;
            let ae = params.a_off + i;
            let be = params.b_off + i;
            var x: f32;
            var y: f32;
            switch ALIAS {
                case ALIAS_OUT_IS_A: {
                    x = half_of(old, e);
                    y = half_of(bh[be >> 1u], be);
                }
                case ALIAS_OUT_IS_B: {
                    x = half_of(ah[ae >> 1u], ae);
                    y = half_of(old, e);
                }
                case ALIAS_ALL_SAME: {
                    x = half_of(old, e);
                    y = second(x);
                }
                case ALIAS_A_IS_B: {
                    x = half_of(ah[ae >> 1u], ae);
                    y = second(x);
                }
                default: {
                    x = half_of(ah[ae >> 1u], ae);
                    y = half_of(bh[be >> 1u], be);
                }
            }
            let shift = h * 16u;
            word = (word & ~(0xffffu << shift)) | (store_half(apply(x, y)) << shift);
        }
    }
    outh[w] = word;
}

@compute @workgroup_size(WG)
fn packed16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let threads = (params.words + PW - 1u) / PW;
    if (t >= threads) {
        return;
    }
    let start = params.out_off;
    let end = params.out_off + params.n;
    for (var i = 0u; i < PW; i = i + 1u) {
        let tw = t + i * threads;
        if (tw < params.words) {
            packed_word(params.out_off / 2u + tw, start, end);
        }
    }
}

// `packed16x8`: as `packed16` when every operand starts at the same element offset
// modulo 8 (same 16-byte phase): one 16-byte load per distinct operand and one store of 8
// elements per thread; a quad only partly in range keeps its other elements.
@group(0) @binding(11) var<storage, read_write> aq: array<vec4<u32>>;
@group(0) @binding(12) var<storage, read_write> bq: array<vec4<u32>>;
@group(0) @binding(13) var<storage, read_write> outq: array<vec4<u32>>;

@compute @workgroup_size(WG)
fn packed16x8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    if (t >= params.words) {
        return;
    }
    let start = params.out_off;
    let end = params.out_off + params.n;
    let q = start / 8u + t;
    let e0 = 8u * q;
    let whole = e0 >= start && e0 + 8u <= end;
    // The output's quad is read only where it is an input or keeps elements.
    var old = vec4<u32>(0u);
    if (!whole || ALIAS == ALIAS_OUT_IS_A || ALIAS == ALIAS_OUT_IS_B || ALIAS == ALIAS_ALL_SAME) {
        old = outq[q];
    }
    var av: vec4<u32>;
    var bv: vec4<u32>;
    switch ALIAS {
        case ALIAS_OUT_IS_A: {
            av = old;
            bv = bq[params.b_off / 8u + t];
        }
        case ALIAS_OUT_IS_B: {
            av = aq[params.a_off / 8u + t];
            bv = old;
        }
        case ALIAS_ALL_SAME: {
            av = old;
            bv = old;
        }
        case ALIAS_A_IS_B: {
            av = aq[params.a_off / 8u + t];
            bv = av;
        }
        default: {
            av = aq[params.a_off / 8u + t];
            bv = bq[params.b_off / 8u + t];
        }
    }
    let same = ALIAS == ALIAS_ALL_SAME || ALIAS == ALIAS_A_IS_B;
    // A whole quad of distinct operands: a word (two elements) per conversion.
    if (whole && !same) {
        var out: vec4<u32>;
        for (var i = 0u; i < 4u; i = i + 1u) {
            let x = decode_pair(av[i], DTYPE);
            let y = decode_pair(bv[i], DTYPE);
            out[i] = encode_pair(vec2<f32>(apply(x.x, y.x), apply(x.y, y.y)), DTYPE);
        }
        outq[q] = out;
        return;
    }
    var out = old;
    for (var e = 0u; e < 8u; e = e + 1u) {
        let g = e0 + e;
        if (g >= start && g < end) {
            let x = half_of(av[e / 2u], e);
            var y = half_of(bv[e / 2u], e);
            if (same) {
                y = second(x);
            }
            let shift = (e & 1u) * 16u;
            out[e / 2u] = (out[e / 2u] & ~(0xffffu << shift)) | (store_half(apply(x, y)) << shift);
        }
    }
    outq[q] = out;
}
