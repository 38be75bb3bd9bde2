// Element type conversions on the bits: exact widening, round-to-nearest-even narrowing.
// SRC and DST are DTYPE_* constants. Offsets are in elements of each side's type from
// the start of its binding. A 16-bit destination is written one 32-bit word (two
// elements) per thread, keeping the half-word outside the range.

struct Params {
    n: u32,
    src_off: u32,
    dst_off: u32,
    words: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

override SRC: u32 = 0u;
override DST: u32 = 0u;

const WG: u32 = 256u;

fn load_bits(i: u32) -> u32 {
    let e = params.src_off + i;
    if (SRC == DTYPE_F32) {
        return src[e];
    }
    return decode_bits(src[e >> 1u], e, SRC);
}

fn encode16(bits: u32) -> u32 {
    if (DST == DTYPE_F16) {
        return f32_to_f16_bits(bits);
    }
    return f32_to_bf16_bits(bits);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    if (DST == DTYPE_F32) {
        if (t < params.n) {
            dst[params.dst_off + t] = load_bits(t);
        }
        return;
    }
    if (t >= params.words) {
        return;
    }
    // Word w of the destination holds elements 2w and 2w + 1.
    let w = params.dst_off / 2u + t;
    let start = params.dst_off;
    let end = params.dst_off + params.n;
    var word = 0u;
    let e0 = 2u * w;
    if (e0 < start || e0 + 2u > end) {
        word = dst[w];
    }
    for (var h = 0u; h < 2u; h = h + 1u) {
        let e = e0 + h;
        if (e >= start && e < end) {
            let v = encode16(load_bits(e - start)) & 0xffffu;
            let shift = h * 16u;
            word = (word & ~(0xffffu << shift)) | (v << shift);
        }
    }
    dst[w] = word;
}
