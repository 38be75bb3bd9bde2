// out[i, :] = table[indices[i], :], zeros for an index >= rows. The table is bound in
// pieces of whole rows, [row0, row1) per dispatch; each dispatch writes the output rows
// whose index falls in its piece, and the first (`first == 1`) also the zero rows of the
// out-of-range indices. One thread per output element. Elements are moved as 32-bit words,
// never as f32 values (which a device may flush or canonicalise), so f32 rows and rows of
// f16/bf16 pairs (the host passes those as words) are copied bit for bit.

struct Params {
    n: u32,
    cols: u32,
    rows: u32,
    row0: u32,
    row1: u32,
    first: u32,
    t_off: u32,
    i_off: u32,
    out_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> table: array<u32>;
@group(0) @binding(2) var<storage, read_write> indices: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, lid, WG);
    if (e >= params.n) {
        return;
    }
    let r = e / params.cols;
    let c = e % params.cols;
    let t = indices[params.i_off + r];
    if (t >= params.row0 && t < params.row1) {
        out[params.out_off + e] = table[params.t_off + (t - params.row0) * params.cols + c];
    } else if (t >= params.rows && params.first == 1u) {
        out[params.out_off + e] = 0u;
    }
}
