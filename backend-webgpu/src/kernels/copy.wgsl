// Byte copies at any alignment: each thread owns one destination word and merges the
// bytes it copies with the bytes around the range it must keep. Offsets are in bytes
// from the start of each binding. `within` copies inside one binding (source and
// destination in the same allocation), which WebGPU would not let us bind twice.

struct Params {
    src_off: u32,
    dst_off: u32,
    bytes: u32,
    first_word: u32,
    words: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

const WG: u32 = 256u;

fn src_byte(i: u32) -> u32 {
    return (src[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn copy_word(t: u32, from_dst: bool) {
    let w = params.first_word + t;
    let base = w * 4u;
    let start = params.dst_off;
    let end = params.dst_off + params.bytes;
    var word = select(0u, dst[w], base < start || base + 4u > end);
    for (var k = 0u; k < 4u; k = k + 1u) {
        let d = base + k;
        if (d >= start && d < end) {
            let i = params.src_off + d - start;
            var byte = 0u;
            if (from_dst) {
                byte = (dst[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
            } else {
                byte = src_byte(i);
            }
            let shift = k * 8u;
            word = (word & ~(0xffu << shift)) | (byte << shift);
        }
    }
    dst[w] = word;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    if (t >= params.words) {
        return;
    }
    let w = params.first_word + t;
    let base = w * 4u;
    let start = params.dst_off;
    if (base >= start && base + 4u <= start + params.bytes && ((params.src_off + base - start) & 3u) == 0u) {
        // Whole word from an aligned source: one load.
        dst[w] = src[(params.src_off + base - start) >> 2u];
        return;
    }
    copy_word(t, false);
}

@compute @workgroup_size(WG)
fn within(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let t = flat_index(wid, nwg, lid, WG);
    if (t < params.words) {
        copy_word(t, true);
    }
}
