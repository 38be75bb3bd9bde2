// conv2d_forward_ex: one thread per output element, output x fastest (so neighbouring
// threads read neighbouring input columns). Output channel k of group k / kg reads the
// group's cg input channels; tap (fy, fx) reads input row oy * sh + fy * dh - pad_top,
// skipped outside the input (as the oracle skips it: 0 * inf never enters). The sum
// starts at the channel's bias (flags bit 0) or 0.

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
    dil_h: u32,
    dil_w: u32,
    groups: u32,
    x_off: u32,
    f_off: u32,
    y_off: u32,
    b_off: u32,
    flags: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> f: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> bias: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid, WG);
    let total = params.n * params.k * params.oh * params.ow;
    if (i >= total) {
        return;
    }
    let ox = i % params.ow;
    let oy = (i / params.ow) % params.oh;
    let kk = (i / (params.ow * params.oh)) % params.k;
    let b = i / (params.ow * params.oh * params.k);
    let cg = params.c / params.groups;
    let kg = params.k / params.groups;
    let c0 = kk / kg * cg;
    var acc = 0.0;
    if ((params.flags & 1u) != 0u) {
        acc = bias[params.b_off + kk];
    }
    let y0 = i32(oy * params.stride_h) - i32(params.pad_h);
    let x0 = i32(ox * params.stride_w) - i32(params.pad_w);
    for (var ch = 0u; ch < cg; ch = ch + 1u) {
        let plane = params.x_off + ((b * params.c + c0 + ch) * params.h) * params.w;
        let taps = params.f_off + (kk * cg + ch) * params.r * params.s;
        for (var fy = 0u; fy < params.r; fy = fy + 1u) {
            let iy = y0 + i32(fy * params.dil_h);
            if (iy < 0 || iy >= i32(params.h)) {
                continue;
            }
            let line = plane + u32(iy) * params.w;
            for (var fx = 0u; fx < params.s; fx = fx + 1u) {
                let ix = x0 + i32(fx * params.dil_w);
                if (ix < 0 || ix >= i32(params.w)) {
                    continue;
                }
                acc = acc + x[line + u32(ix)] * f[taps + fy * params.s + fx];
            }
        }
    }
    y[params.y_off + i] = acc;
}

// One input channel per group (depthwise, or a channel multiplier): each thread computes
// four neighbouring outputs of one row, so each filter tap is loaded once for four
// outputs and the index arithmetic is done once. Same taps, same order as `main`.
@compute @workgroup_size(WG)
fn depthwise4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    let ow4 = (params.ow + 3u) / 4u;
    if (t >= params.n * params.k * params.oh * ow4) {
        return;
    }
    let ox0 = (t % ow4) * 4u;
    let oy = (t / ow4) % params.oh;
    let kk = (t / (ow4 * params.oh)) % params.k;
    let b = t / (ow4 * params.oh * params.k);
    let ch = kk / (params.k / params.groups);
    var acc = vec4<f32>(0.0);
    if ((params.flags & 1u) != 0u) {
        acc = vec4<f32>(bias[params.b_off + kk]);
    }
    let y0 = i32(oy * params.stride_h) - i32(params.pad_h);
    let x0 = i32(ox0 * params.stride_w) - i32(params.pad_w);
    let plane = params.x_off + ((b * params.c + ch) * params.h) * params.w;
    let taps = params.f_off + kk * params.r * params.s;
    for (var fy = 0u; fy < params.r; fy = fy + 1u) {
        let iy = y0 + i32(fy * params.dil_h);
        if (iy < 0 || iy >= i32(params.h)) {
            continue;
        }
        let line = plane + u32(iy) * params.w;
        for (var fx = 0u; fx < params.s; fx = fx + 1u) {
            let wv = f[taps + fy * params.s + fx];
            for (var e = 0u; e < 4u; e = e + 1u) {
                let ix = x0 + i32(e * params.stride_w + fx * params.dil_w);
                if (ix >= 0 && ix < i32(params.w)) {
                    acc[e] = acc[e] + x[line + u32(ix)] * wv;
                }
            }
        }
    }
    let out = params.y_off + ((b * params.k + kk) * params.oh + oy) * params.ow + ox0;
    for (var e = 0u; e < 4u; e = e + 1u) {
        if (ox0 + e < params.ow) {
            y[out + e] = acc[e];
        }
    }
}

// ---- `tiled`: one input channel per group, the input tile in workgroup memory ---------
// A workgroup computes a TH x TW tile of one output plane (TH = 256 / TW), one output per
// thread, after loading every input element its taps reach once, in coalesced rows
// (zeros outside the input, never used: each tap's bounds are checked as in `main`, so
// 0 * inf never enters). Same taps, same order as `main`: the same sums.

override TW: u32 = 32u;
const TILE_MAX: u32 = 2048u;
var<workgroup> tile: array<f32, TILE_MAX>;

@compute @workgroup_size(WG)
fn tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let th = WG / TW;
    let tiles_x = (params.ow + TW - 1u) / TW;
    let tiles_y = (params.oh + th - 1u) / th;
    let g = wid.x + wid.y * nwg.x;
    // Uniform per workgroup, so the barrier below is reached by all or none.
    if (g >= params.n * params.k * tiles_x * tiles_y) {
        return;
    }
    let tx0 = (g % tiles_x) * TW;
    let ty0 = ((g / tiles_x) % tiles_y) * th;
    let plane_out = g / (tiles_x * tiles_y);
    let kk = plane_out % params.k;
    let b = plane_out / params.k;
    let ch = kk / (params.k / params.groups);
    let iw = (TW - 1u) * params.stride_w + (params.s - 1u) * params.dil_w + 1u;
    let ih = (th - 1u) * params.stride_h + (params.r - 1u) * params.dil_h + 1u;
    let iy0 = i32(ty0 * params.stride_h) - i32(params.pad_h);
    let ix0 = i32(tx0 * params.stride_w) - i32(params.pad_w);
    let plane = params.x_off + ((b * params.c + ch) * params.h) * params.w;
    for (var e = lid; e < ih * iw; e = e + WG) {
        let iy = iy0 + i32(e / iw);
        let ix = ix0 + i32(e % iw);
        var v = 0.0;
        if (iy >= 0 && iy < i32(params.h) && ix >= 0 && ix < i32(params.w)) {
            v = x[plane + u32(iy) * params.w + u32(ix)];
        }
        tile[e] = v;
    }
    workgroupBarrier();
    let ox = tx0 + lid % TW;
    let oy = ty0 + lid / TW;
    if (ox >= params.ow || oy >= params.oh) {
        return;
    }
    var acc = 0.0;
    if ((params.flags & 1u) != 0u) {
        acc = bias[params.b_off + kk];
    }
    let taps = params.f_off + kk * params.r * params.s;
    let ly = (lid / TW) * params.stride_h;
    let lx = (lid % TW) * params.stride_w;
    for (var fy = 0u; fy < params.r; fy = fy + 1u) {
        let ty = ly + fy * params.dil_h;
        let iy = iy0 + i32(ty);
        if (iy < 0 || iy >= i32(params.h)) {
            continue;
        }
        for (var fx = 0u; fx < params.s; fx = fx + 1u) {
            let tx = lx + fx * params.dil_w;
            let ix = ix0 + i32(tx);
            if (ix < 0 || ix >= i32(params.w)) {
                continue;
            }
            acc = acc + tile[ty * iw + tx] * f[taps + fy * params.s + fx];
        }
    }
    y[params.y_off + (plane_out * params.oh + oy) * params.ow + ox] = acc;
}
