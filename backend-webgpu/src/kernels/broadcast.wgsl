// out = f(a, b) with NumPy broadcasting: the plan's merged output shape (up to 6
// dimensions) and each input's element strides over it, 0 along a broadcast dimension.
// One thread per output element of this piece; `start` is the piece's first element in
// the whole output. An input that is not broadcast is bound as the piece's own range
// (its `*_sub` is `start`), a broadcast one whole (`*_sub` 0). The entry point says which
// input is the output's own range (in place), read through the output's binding.

struct Params {
    n: u32,
    rank: u32,
    start: u32,
    a_off: u32,
    b_off: u32,
    out_off: u32,
    a_sub: u32,
    b_sub: u32,
    shape: array<vec4<u32>, 2>,
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override OP: u32 = 0u;

const WG: u32 = 256u;

// The elements of a and b (within their bindings) that output element `g` reads.
fn sources(g: u32) -> vec2<u32> {
    var rest = g;
    var ia = 0u;
    var ib = 0u;
    for (var d = params.rank; d > 0u; d = d - 1u) {
        let k = d - 1u;
        let size = params.shape[k / 4u][k % 4u];
        let x = rest % size;
        rest = rest / size;
        ia = ia + x * params.a_strides[k / 4u][k % 4u];
        ib = ib + x * params.b_strides[k / 4u][k % 4u];
    }
    return vec2<u32>(params.a_off + ia - params.a_sub, params.b_off + ib - params.b_sub);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        let s = sources(params.start + i);
        out[params.out_off + i] = apply(a[s.x], b[s.y]);
    }
}

@compute @workgroup_size(WG)
fn out_is_a(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        let s = sources(params.start + i);
        let o = params.out_off + i;
        out[o] = apply(out[o], b[s.y]);
    }
}

@compute @workgroup_size(WG)
fn out_is_b(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        let s = sources(params.start + i);
        let o = params.out_off + i;
        out[o] = apply(a[s.x], out[o]);
    }
}

// ---- four outputs per thread --------------------------------------------------------
// When the last merged dimension is a multiple of 4 and the output starts on a 16-byte
// boundary of its binding: each thread finds the sources of its first element once and
// steps along the row by the inputs' last strides (0 or 1), writing one vec4.

@group(0) @binding(7) var<storage, read_write> out4: array<vec4<f32>>;

fn last_strides() -> vec2<u32> {
    let k = params.rank - 1u;
    return vec2<u32>(params.a_strides[k / 4u][k % 4u], params.b_strides[k / 4u][k % 4u]);
}

@compute @workgroup_size(WG)
fn main4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = 4u * flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        let s = sources(params.start + i);
        let st = last_strides();
        var r: vec4<f32>;
        for (var e = 0u; e < 4u; e = e + 1u) {
            r[e] = apply(a[s.x + e * st.x], b[s.y + e * st.y]);
        }
        out4[(params.out_off + i) / 4u] = r;
    }
}

@compute @workgroup_size(WG)
fn out_is_a4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = 4u * flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        let s = sources(params.start + i);
        let st = last_strides();
        let o = (params.out_off + i) / 4u;
        let x = out4[o];
        var r: vec4<f32>;
        for (var e = 0u; e < 4u; e = e + 1u) {
            r[e] = apply(x[e], b[s.y + e * st.y]);
        }
        out4[o] = r;
    }
}

@compute @workgroup_size(WG)
fn out_is_b4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = 4u * flat_index(wid, nwg, lid, WG);
    if (i < params.n) {
        let s = sources(params.start + i);
        let st = last_strides();
        let o = (params.out_off + i) / 4u;
        let y = out4[o];
        var r: vec4<f32>;
        for (var e = 0u; e < 4u; e = e + 1u) {
            r[e] = apply(a[s.x + e * st.x], y[e]);
        }
        out4[o] = r;
    }
}

// ---- f16/bf16 storage -----------------------------------------------------------------
// `half`: each thread writes one 32-bit word of the output (elements 2t and 2t + 1 of
// the piece; the host takes this path only where the output starts on a word and pieces
// hold an even number of elements), computing in f32 and rounding once at the store,
// as the f32 kernel on widened copies would. A piece's last word, when it holds one
// element, keeps its other half. IN_PLACE: 0, or 1 when a is the output's own range, 2
// when b is (read through the output's binding; the other view gets a placeholder).

override DTYPE: u32 = 1u;
override IN_PLACE: u32 = 0u;
@group(0) @binding(4) var<storage, read_write> a16: array<u32>;
@group(0) @binding(5) var<storage, read_write> b16: array<u32>;
@group(0) @binding(6) var<storage, read_write> out16: array<u32>;

fn half_at(word: u32, i: u32) -> f32 {
    return bitcast<f32>(decode_bits(word, i, DTYPE));
}

// Output element `i` of the piece reading sources `s`, `own` the word of the output
// holding it.
fn half_element(i: u32, s: vec2<u32>, own: u32) -> u32 {
    var x: f32;
    var y: f32;
    if (IN_PLACE == 1u) {
        x = half_at(own, i);
    } else {
        x = half_at(a16[s.x >> 1u], s.x);
    }
    if (IN_PLACE == 2u) {
        y = half_at(own, i);
    } else {
        y = half_at(b16[s.y >> 1u], s.y);
    }
    return encode_bits(apply(x, y), DTYPE);
}

@compute @workgroup_size(WG)
fn half(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = 2u * flat_index(wid, nwg, lid, WG);
    if (i >= params.n) {
        return;
    }
    let o = (params.out_off + i) >> 1u;
    var own = 0u;
    if (IN_PLACE != 0u || i + 1u >= params.n) {
        own = out16[o];
    }
    let s0 = sources(params.start + i);
    let lo = half_element(i, s0, own);
    var hi = own >> 16u;
    if (i + 1u < params.n) {
        // The next element is one step along the last dimension unless a row starts.
        let g = params.start + i + 1u;
        let k = params.rank - 1u;
        var s1 = s0 + last_strides();
        if (g % params.shape[k / 4u][k % 4u] == 0u) {
            s1 = sources(g);
        }
        hi = half_element(i + 1u, s1, own);
    }
    out16[o] = lo | (hi << 16u);
}
