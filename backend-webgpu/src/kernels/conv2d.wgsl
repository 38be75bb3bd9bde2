// 2-D cross-correlation, NCHW input, KCRS filter, NKOHOW output, zero padding outside the
// input. Two entry points:
//
// - `main`, direct: one output element per thread. F_IN_X reads the filter through the
//   input's binding when the two overlap (WebGPU forbids overlapping writable bindings).
// - `implicit`, implicit GEMM: rows i = (n, oy, ox), columns j = output channel,
//   reduction l = (c, r, s); the gemm kernel's 128x128 tile and 8x8 register blocking,
//   with the input gathered (im2col on the fly) and each thread's row decodes hoisted out
//   of the reduction loop.

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    k: u32,
    r: u32,
    s: u32,
    oh: u32,
    ow: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    x_off: u32,
    f_off: u32,
    y_off: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> f: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

override F_IN_X: bool = false;

const WG: u32 = 256u;

fn filter_at(i: u32) -> f32 {
    if (F_IN_X) {
        return x[i];
    }
    return f[i];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = flat_index(wid, nwg, lid, WG);
    let total = params.n * params.k * params.oh * params.ow;
    if (g >= total) {
        return;
    }
    let ox = g % params.ow;
    let oy = (g / params.ow) % params.oh;
    let kk = (g / (params.ow * params.oh)) % params.k;
    let nn = g / (params.ow * params.oh * params.k);
    var acc = 0.0;
    for (var ch = 0u; ch < params.c; ch = ch + 1u) {
        let x_plane = params.x_off + (nn * params.c + ch) * params.h * params.w;
        let f_plane = params.f_off + (kk * params.c + ch) * params.r * params.s;
        for (var fy = 0u; fy < params.r; fy = fy + 1u) {
            let iy = i32(oy * params.stride_h + fy) - i32(params.pad_h);
            if (iy < 0 || iy >= i32(params.h)) {
                continue;
            }
            for (var fx = 0u; fx < params.s; fx = fx + 1u) {
                let ix = i32(ox * params.stride_w + fx) - i32(params.pad_w);
                if (ix < 0 || ix >= i32(params.w)) {
                    continue;
                }
                acc = acc + x[x_plane + u32(iy) * params.w + u32(ix)] * filter_at(f_plane + fy * params.s + fx);
            }
        }
    }
    y[params.y_off + g] = acc;
}

// ---- `implicit`: implicit GEMM ---------------------------------------------------------

// The filter as vec4s, for F_VEC4 (C * R * S and its offset multiples of 4).
@group(0) @binding(4) var<storage, read_write> f4: array<vec4<f32>>;
override F_VEC4: bool = false;

const CT: u32 = 128u; // tile rows (output positions), and columns when NB = 128
const CK: u32 = 8u; // tile depth (filter taps)
// Tile columns (output channels): 128, or 64 for problems too small to fill the device
// with the wide tile (each thread then owns 8x4 outputs; the first 2 NB threads load
// the filter).
override NB: u32 = 128u;

// [stage][kk][CT / 4] vec4s, as in gemm.wgsl's `tiled`.
var<workgroup> ta: array<vec4<f32>, 512>;
var<workgroup> tb: array<vec4<f32>, 512>;

// Where output row i reads the input: image base, and the top-left tap's coordinates.
struct Row {
    valid: bool,
    x_base: u32,
    iy0: i32,
    ix0: i32,
}

fn decode_row(i: u32) -> Row {
    var r: Row;
    let ohw = params.oh * params.ow;
    r.valid = i < params.n * ohw;
    let n = i / ohw;
    let p = i % ohw;
    r.x_base = params.x_off + n * params.c * params.h * params.w;
    r.iy0 = i32((p / params.ow) * params.stride_h) - i32(params.pad_h);
    r.ix0 = i32((p % params.ow) * params.stride_w) - i32(params.pad_w);
    return r;
}

// Filter tap l = (channel, fy, fx), decoded once per tile step and shared by the
// thread's four rows.
struct Tap {
    valid: bool,
    ch_off: u32,
    fy: i32,
    fx: i32,
}

fn decode_tap(l: u32) -> Tap {
    var t: Tap;
    let rs = params.r * params.s;
    t.valid = l < params.c * rs;
    let rem = l % rs;
    t.ch_off = (l / rs) * params.h * params.w;
    t.fy = i32(rem / params.s);
    t.fx = i32(rem % params.s);
    return t;
}

fn gather(row: Row, tap: Tap) -> f32 {
    let iy = row.iy0 + tap.fy;
    let ix = row.ix0 + tap.fx;
    if (!row.valid || !tap.valid || iy < 0 || ix < 0 || iy >= i32(params.h) || ix >= i32(params.w)) {
        return 0.0;
    }
    return x[row.x_base + tap.ch_off + u32(iy) * params.w + u32(ix)];
}

fn filter_tap(j: u32, l: u32, crs: u32) -> f32 {
    if (j >= params.k || l >= crs) {
        return 0.0;
    }
    return filter_at(params.f_off + j * crs + l);
}

struct Taps {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn fetch_taps(lid: u32, rows: array<Row, 4>, col0: u32, k0: u32) -> Taps {
    var t: Taps;
    // Four consecutive output positions at tap depth kk.
    let tap = decode_tap(k0 + lid / 32u);
    t.a = vec4<f32>(gather(rows[0], tap), gather(rows[1], tap), gather(rows[2], tap), gather(rows[3], tap));
    // Four consecutive taps of output channel j.
    let j = col0 + lid % NB;
    let kq = k0 + 4u * (lid / NB);
    let crs = params.c * params.r * params.s;
    t.b = vec4<f32>(0.0);
    if (lid >= 2u * NB) {
        return t;
    }
    if (F_VEC4) {
        // One 16-byte load: crs and the filter's offset are multiples of 4.
        if (j < params.k && kq < crs) {
            t.b = f4[(params.f_off + j * crs + kq) / 4u];
        }
    } else {
        t.b = vec4<f32>(filter_tap(j, kq, crs), filter_tap(j, kq + 1u, crs), filter_tap(j, kq + 2u, crs),
                        filter_tap(j, kq + 3u, crs));
    }
    return t;
}

fn store_taps(lid: u32, stage: u32, t: Taps) {
    let base = stage * 256u;
    ta[base + (lid / 32u) * 32u + lid % 32u] = t.a;
    if (lid >= 2u * NB) {
        return;
    }
    let j = lid % NB;
    let kq = 4u * (lid / NB);
    let q = base + j / 4u;
    let c = j % 4u;
    tb[q + (kq + 0u) * 32u][c] = t.b.x;
    tb[q + (kq + 1u) * 32u][c] = t.b.y;
    tb[q + (kq + 2u) * 32u][c] = t.b.z;
    tb[q + (kq + 3u) * 32u][c] = t.b.w;
}

// Writes output channel j for four consecutive output positions starting at i.
fn store_out(i: u32, j: u32, v: vec4<f32>) {
    let ohw = params.oh * params.ow;
    if (j >= params.k) {
        return;
    }
    for (var r = 0u; r < 4u; r = r + 1u) {
        let ii = i + r;
        if (ii < params.n * ohw) {
            let n = ii / ohw;
            y[params.y_off + (n * params.k + j) * ohw + ii % ohw] = v[r];
        }
    }
}

@compute @workgroup_size(256)
fn implicit(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.x * CT;
    let col0 = wid.y * NB;
    // The four output positions this thread gathers for, fixed for the whole reduction.
    let g = row0 + 4u * (lid % 32u);
    let rows = array<Row, 4>(decode_row(g), decode_row(g + 1u), decode_row(g + 2u), decode_row(g + 3u));
    let tr = lid % 16u;
    let tc = lid / 16u;
    var x_c0_h0 = vec4<f32>(0.0); var x_c0_h1 = vec4<f32>(0.0);
    var x_c1_h0 = vec4<f32>(0.0); var x_c1_h1 = vec4<f32>(0.0);
    var x_c2_h0 = vec4<f32>(0.0); var x_c2_h1 = vec4<f32>(0.0);
    var x_c3_h0 = vec4<f32>(0.0); var x_c3_h1 = vec4<f32>(0.0);
    var x_c4_h0 = vec4<f32>(0.0); var x_c4_h1 = vec4<f32>(0.0);
    var x_c5_h0 = vec4<f32>(0.0); var x_c5_h1 = vec4<f32>(0.0);
    var x_c6_h0 = vec4<f32>(0.0); var x_c6_h1 = vec4<f32>(0.0);
    var x_c7_h0 = vec4<f32>(0.0); var x_c7_h1 = vec4<f32>(0.0);

    let steps = (params.c * params.r * params.s + CK - 1u) / CK;
    if (steps > 0u) {
        store_taps(lid, 0u, fetch_taps(lid, rows, col0, 0u));
    }
    workgroupBarrier();
    for (var t = 0u; t < steps; t = t + 1u) {
        let stage = t % 2u;
        var next: Taps;
        let more = t + 1u < steps;
        if (more) {
            next = fetch_taps(lid, rows, col0, (t + 1u) * CK);
        }
        let base = stage * 256u;
        for (var kk = 0u; kk < CK; kk = kk + 1u) {
            let s = base + kk * 32u;
            let a0 = ta[s + tr];
            let a1 = ta[s + tr + 16u];
            let b0 = tb[s + tc];
            x_c0_h0 = fma(a0, vec4<f32>(b0.x), x_c0_h0); x_c0_h1 = fma(a1, vec4<f32>(b0.x), x_c0_h1);
            x_c1_h0 = fma(a0, vec4<f32>(b0.y), x_c1_h0); x_c1_h1 = fma(a1, vec4<f32>(b0.y), x_c1_h1);
            x_c2_h0 = fma(a0, vec4<f32>(b0.z), x_c2_h0); x_c2_h1 = fma(a1, vec4<f32>(b0.z), x_c2_h1);
            x_c3_h0 = fma(a0, vec4<f32>(b0.w), x_c3_h0); x_c3_h1 = fma(a1, vec4<f32>(b0.w), x_c3_h1);
            if (NB < CT) {
                continue;
            }
            let b1 = tb[s + tc + 16u];
            x_c4_h0 = fma(a0, vec4<f32>(b1.x), x_c4_h0); x_c4_h1 = fma(a1, vec4<f32>(b1.x), x_c4_h1);
            x_c5_h0 = fma(a0, vec4<f32>(b1.y), x_c5_h0); x_c5_h1 = fma(a1, vec4<f32>(b1.y), x_c5_h1);
            x_c6_h0 = fma(a0, vec4<f32>(b1.z), x_c6_h0); x_c6_h1 = fma(a1, vec4<f32>(b1.z), x_c6_h1);
            x_c7_h0 = fma(a0, vec4<f32>(b1.w), x_c7_h0); x_c7_h1 = fma(a1, vec4<f32>(b1.w), x_c7_h1);
        }
        if (more) {
            store_taps(lid, 1u - stage, next);
        }
        workgroupBarrier();
    }

    let i0 = row0 + 4u * tr;
    let i1 = i0 + 64u;
    let j0 = col0 + 4u * tc;
    let j1 = j0 + 64u;
    store_out(i0, j0 + 0u, x_c0_h0); store_out(i1, j0 + 0u, x_c0_h1);
    store_out(i0, j0 + 1u, x_c1_h0); store_out(i1, j0 + 1u, x_c1_h1);
    store_out(i0, j0 + 2u, x_c2_h0); store_out(i1, j0 + 2u, x_c2_h1);
    store_out(i0, j0 + 3u, x_c3_h0); store_out(i1, j0 + 3u, x_c3_h1);
    if (NB < CT) {
        return;
    }
    store_out(i0, j1 + 0u, x_c4_h0); store_out(i1, j1 + 0u, x_c4_h1);
    store_out(i0, j1 + 1u, x_c5_h0); store_out(i1, j1 + 1u, x_c5_h1);
    store_out(i0, j1 + 2u, x_c6_h0); store_out(i1, j1 + 2u, x_c6_h1);
    store_out(i0, j1 + 3u, x_c7_h0); store_out(i1, j1 + 3u, x_c7_h1);
}
