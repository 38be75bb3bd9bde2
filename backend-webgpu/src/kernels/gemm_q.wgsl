// gemm_q: C = alpha * A * B + beta * C with A the m x k weights in GGML blocks of 32
// (FORMAT 0: Q8_0, an f16 scale then 32 i8; FORMAT 1: Q4_0, an f16 scale then 16 bytes of
// nibbles), stored row by row from byte a_byte of binding 1; B k x n column-major, f32 or
// (B_F16) f16 in packed words; C m x n column-major f32.
//
// A workgroup is 8 rows x 32 lanes and a tile of 8 columns (grid y walks the column
// tiles). Lane l of a row takes the row's blocks l, l + 32, ...: each block is
// dequantized once (its scale and quants read once) and multiplied into the 8 columns.
// The 32 lanes' sums are combined in a fixed order in workgroup memory.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_byte: u32,
    b_off: u32,
    c_off: u32,
    ldb: u32,
    ldc: u32,
    alpha: f32,
    beta: f32,
    // Bit 0: the product is read (alpha != 0 and k != 0); bit 1: beta != 0 (C is read).
    flags: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

override FORMAT: u32 = 0u;
override B_F16: bool = false;

const ROWS: u32 = 8u;
const LANES: u32 = 32u;
const COLS: u32 = 8u;

var<workgroup> partial: array<f32, 2048>; // ROWS * LANES * COLS

fn byte_at(p: u32) -> u32 {
    return (a[p >> 2u] >> ((p & 3u) * 8u)) & 0xffu;
}

// The f16 at even byte address p, as f32.
fn scale_at(p: u32) -> f32 {
    let w = a[p >> 2u];
    let h = select(w & 0xffffu, w >> 16u, (p & 2u) != 0u);
    return bitcast<f32>(f16_to_f32_bits(h));
}

fn b_at(i: u32) -> f32 {
    if (B_F16) {
        let w = b[i >> 1u];
        return bitcast<f32>(f16_to_f32_bits(select(w & 0xffffu, w >> 16u, (i & 1u) != 0u)));
    }
    return bitcast<f32>(b[i]);
}

fn block_bytes() -> u32 {
    return select(18u, 34u, FORMAT == 0u);
}

// Value e of the block starting at byte p, times nothing (the scale is applied by the
// caller): the integer q (Q8_0) or nibble - 8 (Q4_0).
fn quant(p: u32, e: u32) -> f32 {
    if (FORMAT == 0u) {
        let q = byte_at(p + 2u + e);
        return f32(i32(q) - select(0, 256, q >= 128u));
    }
    let byte = byte_at(p + 2u + (e & 15u));
    return f32(select(byte & 15u, byte >> 4u, e >= 16u)) - 8.0;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = lid / LANES;
    let lane = lid % LANES;
    let row = wid.x * ROWS + r;
    let col0 = wid.y * COLS;
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let blocks = params.k / 32u;
    if ((params.flags & 1u) != 0u && row < params.m) {
        let row_base = params.a_byte + row * blocks * block_bytes();
        for (var blk = lane; blk < blocks; blk = blk + LANES) {
            let p = row_base + blk * block_bytes();
            let d = scale_at(p);
            for (var e = 0u; e < 32u; e = e + 1u) {
                let w = quant(p, e) * d;
                let l = blk * 32u + e;
                for (var j = 0u; j < COLS; j = j + 1u) {
                    if (col0 + j < params.n) {
                        acc[j] = acc[j] + w * b_at(params.b_off + l + (col0 + j) * params.ldb);
                    }
                }
            }
        }
    }
    for (var j = 0u; j < COLS; j = j + 1u) {
        partial[(r * LANES + lane) * COLS + j] = acc[j];
    }
    workgroupBarrier();
    // Lanes 0..7 of each row finish one column each.
    let j = lane;
    let col = col0 + j;
    if (lane < COLS && row < params.m && col < params.n) {
        var sum = 0.0;
        for (var l = 0u; l < LANES; l = l + 1u) {
            sum = sum + partial[(r * LANES + l) * COLS + j];
        }
        let ci = params.c_off + row + col * params.ldc;
        let product = (params.flags & 1u) != 0u;
        let read_c = (params.flags & 2u) != 0u;
        // As BLAS: without a product C becomes beta * C (keeping -0), and with beta == 0
        // C is never read.
        var v = 0.0;
        if (product && read_c) {
            v = params.alpha * sum + params.beta * c[ci];
        } else if (product) {
            v = params.alpha * sum;
        } else if (read_c) {
            v = params.beta * c[ci];
        }
        c[ci] = v;
    }
}
