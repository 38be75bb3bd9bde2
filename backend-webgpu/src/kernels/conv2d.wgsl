// Direct 2-D cross-correlation, NCHW input, KCRS filter, NKOHOW output: one output
// element per thread, zero padding outside the input. F_IN_X reads the filter through
// the input's binding when the two overlap (WebGPU forbids overlapping writable bindings).

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
