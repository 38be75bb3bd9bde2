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
// Columns per workgroup: 1, 2, 4 or 8 (the Rust side picks the smallest that holds n, up
// to 8), so a decode call (n = 1) runs one column's loop.
override COLS: u32 = 8u;

const ROWS: u32 = 8u;
const LANES: u32 = 32u;

var<workgroup> partial: array<f32, 2048>; // ROWS * LANES * 8 columns at most

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

// The 32-bit word of A starting at byte p (p even): two loads funnelled when p is not
// on a word boundary.
fn word_at(p: u32) -> u32 {
    let i = p >> 2u;
    if ((p & 2u) == 0u) {
        return a[i];
    }
    return (a[i] >> 16u) | (a[i + 1u] << 16u);
}

// The block's 32 integers (q for Q8_0, nibble - 8 for Q4_0) dotted with column col of B
// at rows l0.. (the scale is applied once by the caller).
fn block_dot(p: u32, l0: u32, col: u32) -> f32 {
    let bb = params.b_off + l0 + col * params.ldb;
    var s = 0.0;
    if (FORMAT == 0u) {
        for (var wi = 0u; wi < 8u; wi = wi + 1u) {
            let w = word_at(p + 2u + 4u * wi);
            for (var e = 0u; e < 4u; e = e + 1u) {
                let q = (w >> (8u * e)) & 0xffu;
                let v = f32(i32(q) - select(0, 256, q >= 128u));
                s = s + v * b_at(bb + 4u * wi + e);
            }
        }
    } else {
        for (var wi = 0u; wi < 4u; wi = wi + 1u) {
            let w = word_at(p + 2u + 4u * wi);
            for (var e = 0u; e < 4u; e = e + 1u) {
                let byte = (w >> (8u * e)) & 0xffu;
                let j = 4u * wi + e;
                s = s + (f32(byte & 15u) - 8.0) * b_at(bb + j);
                s = s + (f32(byte >> 4u) - 8.0) * b_at(bb + j + 16u);
            }
        }
    }
    return s;
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
            for (var j = 0u; j < COLS; j = j + 1u) {
                if (col0 + j < params.n) {
                    acc[j] = acc[j] + d * block_dot(p, blk * 32u, col0 + j);
                }
            }
        }
    }
    for (var j = 0u; j < COLS; j = j + 1u) {
        partial[(r * LANES + lane) * COLS + j] = acc[j];
    }
    workgroupBarrier();
    store_c(r, lane, row, col0);
}

// After the barrier: lanes 0..COLS-1 of each row sum the row's 32 partial results of one
// column, in lane order, and store C = alpha * sum + beta * C. As BLAS: without a product
// C becomes beta * C (keeping -0), and with beta == 0 C is never read.
fn store_c(r: u32, lane: u32, row: u32, col0: u32) {
    store_c_rows(r, lane, row, col0, LANES);
}

// `store_c` with row r's partial results `stride` lanes apart (its first 32 summed).
fn store_c_rows(r: u32, lane: u32, row: u32, col0: u32, stride: u32) {
    let j = lane;
    let col = col0 + j;
    if (lane < COLS && row < params.m && col < params.n) {
        var sum = 0.0;
        for (var l = 0u; l < LANES; l = l + 1u) {
            sum = sum + partial[(r * stride + l) * COLS + j];
        }
        store_one(row, col, sum);
    }
}

// C[row, col] = alpha * sum + beta * C[row, col], the product and C each read only where
// the flags say so.
fn store_one(row: u32, col: u32, sum: f32) {
    let ci = params.c_off + row + col * params.ldc;
    let product = (params.flags & 1u) != 0u;
    let read_c = (params.flags & 2u) != 0u;
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

// The decode kernels' end: each lane's sums (up to 4 columns) to workgroup memory, then
// `store_c`.
fn finish_decode(r: u32, lane: u32, row: u32, col0: u32, acc: array<f32, 4>) {
    for (var j = 0u; j < COLS; j = j + 1u) {
        partial[(r * LANES + lane) * COLS + j] = acc[j];
    }
    workgroupBarrier();
    store_c(r, lane, row, col0);
}

// ---- `decode`: few columns (n <= 4) -----------------------------------------------
// The same tile of 8 rows x 32 lanes, but 8 lanes share a block, 4 quants each, so that
// neighbouring lanes read neighbouring bytes of A and neighbouring rows of B (coalesced
// loads, where `main`'s lanes read B 32 floats apart); the 4 groups of 8 lanes take the
// row's blocks g, g + 4, .... Q4_0: lane t reads quant bytes 2t and 2t + 1 (elements 2t,
// 2t + 1 and, from their high nibbles, 2t + 16, 2t + 17); Q8_0: bytes 4t to 4t + 3.

// The 16 bits at even byte address p.
fn half_at(p: u32) -> u32 {
    let w = a[p >> 2u];
    return select(w & 0xffffu, w >> 16u, (p & 2u) != 0u);
}

@compute @workgroup_size(256)
fn decode(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = lid / LANES;
    let lane = lid % LANES;
    let group = lane / 8u;
    let t = lane % 8u;
    let row = wid.x * ROWS + r;
    let col0 = wid.y * COLS;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    let blocks = params.k / 32u;
    if ((params.flags & 1u) != 0u && row < params.m) {
        let row_base = params.a_byte + row * blocks * block_bytes();
        for (var blk = group; blk < blocks; blk = blk + 4u) {
            let p = row_base + blk * block_bytes();
            let d = scale_at(p);
            var q: vec4<f32>;
            var at: vec4<u32>;
            if (FORMAT == 0u) {
                let w = word_at(p + 2u + 4u * t);
                let qb = vec4<u32>(w & 0xffu, (w >> 8u) & 0xffu, (w >> 16u) & 0xffu, w >> 24u);
                q = vec4<f32>(vec4<i32>(qb) - select(vec4<i32>(0), vec4<i32>(256), qb >= vec4<u32>(128u)));
                at = vec4<u32>(4u * t) + vec4<u32>(0u, 1u, 2u, 3u);
            } else {
                let h = half_at(p + 2u + 2u * t);
                q = vec4<f32>(f32(h & 15u), f32((h >> 8u) & 15u), f32((h >> 4u) & 15u), f32(h >> 12u))
                    - vec4<f32>(8.0);
                at = vec4<u32>(2u * t, 2u * t + 1u, 2u * t + 16u, 2u * t + 17u);
            }
            for (var j = 0u; j < COLS; j = j + 1u) {
                if (col0 + j < params.n) {
                    let bb = params.b_off + blk * 32u + (col0 + j) * params.ldb;
                    let bv = vec4<f32>(b_at(bb + at.x), b_at(bb + at.y), b_at(bb + at.z), b_at(bb + at.w));
                    acc[j] = acc[j] + d * dot(q, bv);
                }
            }
        }
    }
    finish_decode(r, lane, row, col0, acc);
}

// Quad t (0..7) of the block at byte p: its elements 4t..4t+3 as integers (Q8_0 bytes
// 4t..4t+3; Q4_0 the low nibbles of bytes 4t..4t+3 for t < 4, the high nibbles of bytes
// 4(t-4).. for t >= 4, which hold elements 16 + 4(t-4)..).
fn quad(p: u32, t: u32) -> vec4<f32> {
    if (FORMAT == 0u) {
        return s8x4(word_at(p + 2u + 4u * t));
    }
    return nib4(word_at(p + 2u + 4u * (t % 4u)) >> select(0u, 4u, t >= 4u));
}

// ---- `dequant`: prefill (many columns) ----------------------------------------------
// The weights dequantized into f32, row-major m x k from element c_off of binding 3 (a
// temporary), for the tiled f32 gemm to multiply: each block's values read once for all
// n columns instead of once per 8. A thread writes 4 consecutive values (quad t of its
// block: Q8_0 bytes 4t..4t+3; Q4_0 the low nibbles of bytes 4t..4t+3 for t < 4, the high
// nibbles of bytes 4(t-4).. for t >= 4), so neighbouring threads write neighbouring
// 16 bytes. `d * q` is exact in f32, as in the oracle.
@compute @workgroup_size(256)
fn dequant(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let g = flat_index(wid, nwg, lid, 256u);
    let quads = params.k / 4u;
    if (g >= params.m * quads) {
        return;
    }
    let row = g / quads;
    let q4 = g % quads;
    let blk = q4 / 8u;
    let t = q4 % 8u;
    let p = params.a_byte + (row * (params.k / 32u) + blk) * block_bytes();
    let d = scale_at(p);
    let v = quad(p, t);
    let o = params.c_off + row * params.k + 4u * q4;
    c[o] = d * v.x;
    c[o + 1u] = d * v.y;
    c[o + 2u] = d * v.z;
    c[o + 3u] = d * v.w;
}

// ---- `decode_row`: few columns (n <= 4), a row per 32 lanes --------------------------
// `decode` walks a row's blocks 4 at a time, 32 steps for k = 4096, each waiting on its
// loads: latency-bound. Here the 32 lanes of a row take 8 blocks at once, 4 lanes a
// block (Q4_0: lane u reads quant bytes 4u..4u+3, elements 4u..4u+3 from their low
// nibbles and 4u+16..4u+19 from their high ones; Q8_0: bytes 8u..8u+7, elements
// 8u..8u+7), and each step takes two blocks (b and b + 8) whose loads are issued
// together: 8 steps for k = 4096. The B reads of a lane are two runs of 4 consecutive
// values. The lanes' sums are combined in lane order, as in `main`.

fn b4(i: u32) -> vec4<f32> {
    return vec4<f32>(b_at(i), b_at(i + 1u), b_at(i + 2u), b_at(i + 3u));
}

fn s8x4(w: u32) -> vec4<f32> {
    let qb = vec4<u32>(w & 0xffu, (w >> 8u) & 0xffu, (w >> 16u) & 0xffu, w >> 24u);
    return vec4<f32>(vec4<i32>(qb) - select(vec4<i32>(0), vec4<i32>(256), qb >= vec4<u32>(128u)));
}

fn nib4(w: u32) -> vec4<f32> {
    return vec4<f32>(f32(w & 15u), f32((w >> 8u) & 15u), f32((w >> 16u) & 15u), f32((w >> 24u) & 15u))
        - vec4<f32>(8.0);
}

// Lane u's part of the block at byte p: its 8 integers (two vec4s) and their first
// elements' indices within the block.
struct Part {
    q0: vec4<f32>,
    q1: vec4<f32>,
    i0: u32,
    i1: u32,
}

fn part(p: u32, u: u32) -> Part {
    if (FORMAT == 0u) {
        let q = p + 2u + 8u * u;
        return Part(s8x4(word_at(q)), s8x4(word_at(q + 4u)), 8u * u, 8u * u + 4u);
    }
    let w = word_at(p + 2u + 4u * u);
    return Part(nib4(w), nib4(w >> 4u), 4u * u, 4u * u + 16u);
}

@compute @workgroup_size(256)
fn decode_row(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = lid / LANES;
    let lane = lid % LANES;
    let slot = lane / 4u;
    let u = lane % 4u;
    let row = wid.x * ROWS + r;
    let col0 = wid.y * COLS;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    let blocks = params.k / 32u;
    if ((params.flags & 1u) != 0u && row < params.m) {
        let row_base = params.a_byte + row * blocks * block_bytes();
        for (var blk = slot; blk < blocks; blk = blk + 16u) {
            let p0 = row_base + blk * block_bytes();
            let two = blk + 8u < blocks;
            let p1 = select(p0, p0 + 8u * block_bytes(), two);
            let d0 = scale_at(p0);
            let d1 = scale_at(p1);
            let x0 = part(p0, u);
            let x1 = part(p1, u);
            for (var j = 0u; j < COLS; j = j + 1u) {
                if (col0 + j < params.n) {
                    let bb0 = params.b_off + blk * 32u + (col0 + j) * params.ldb;
                    let bb1 = bb0 + select(0u, 256u, two);
                    let s0 = dot(x0.q0, b4(bb0 + x0.i0)) + dot(x0.q1, b4(bb0 + x0.i1));
                    let s1 = dot(x1.q0, b4(bb1 + x1.i0)) + dot(x1.q1, b4(bb1 + x1.i1));
                    // Without a second block, s1 (block b's values again) is not added:
                    // 0 * s1 would be NaN for an infinite B.
                    var v = d0 * s0;
                    if (two) {
                        v = v + d1 * s1;
                    }
                    acc[j] = acc[j] + v;
                }
            }
        }
    }
    finish_decode(r, lane, row, col0, acc);
}

// ---- `decode_vec`: few columns (n <= 4), B's quads on vector boundaries -------------
// Lane l of a row takes quad t = l % 8 of block l / 8 of each group of blocks, so a warp
// reads 128 consecutive values of B as 32 16-byte loads (`bq`, the same binding as `b`
// seen as 16-byte words, of which f16 B uses half: the Rust side takes this entry only
// where B's offset and ldb are multiples of 4 elements) and 72 (Q4_0) or 136 (Q8_0)
// consecutive bytes of A, where `decode_row`'s scalar B loads touched 8 blocks' lines.
// Each step takes two groups, whose loads are issued together.

@group(0) @binding(2) var<storage, read_write> bq: array<vec4<u32>>;

// Elements 4i..4i+3 of B's binding: a vec4 of f32, or (B_F16) two words of halves, half
// of a 16-byte load.
fn b_quad(i: u32) -> vec4<f32> {
    if (B_F16) {
        let w = bq[i >> 1u];
        let h = select(w.xy, w.zw, (i & 1u) == 1u);
        return vec4<f32>(decode_pair(h.x, DTYPE_F16), decode_pair(h.y, DTYPE_F16));
    }
    return bitcast<vec4<f32>>(bq[i]);
}

// ROW_WARPS warps share a row (8 / ROW_WARPS rows a workgroup): a row's blocks are
// walked in k / (32 * 8 * ROW_WARPS) steps, since a decode call is as long as one warp's
// chain of dependent steps (a 64-row call took as long as a 1024-row one on an H100).
override ROW_WARPS: u32 = 4u;

@compute @workgroup_size(256)
fn decode_vec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let per_row = LANES * ROW_WARPS;
    let r = lid / per_row;
    let lane = lid % per_row;
    let sub = lane / 8u;
    let t = lane % 8u;
    let slots = per_row / 8u; // blocks a step's first group takes
    let row = wid.x * (ROWS / ROW_WARPS) + r;
    let col0 = wid.y * COLS;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    let blocks = params.k / 32u;
    if ((params.flags & 1u) != 0u && row < params.m) {
        let row_base = params.a_byte + row * blocks * block_bytes();
        for (var blk = sub; blk < blocks; blk = blk + 2u * slots) {
            let two = blk + slots < blocks;
            let p0 = row_base + blk * block_bytes();
            let p1 = select(p0, p0 + slots * block_bytes(), two);
            let d0 = scale_at(p0);
            let d1 = scale_at(p1);
            let q0 = quad(p0, t);
            let q1 = quad(p1, t);
            for (var j = 0u; j < COLS; j = j + 1u) {
                if (col0 + j < params.n) {
                    let i0 = (params.b_off + (col0 + j) * params.ldb) / 4u + blk * 8u + t;
                    var v = d0 * dot(q0, b_quad(i0));
                    // Without a second group, q1 (block blk's values again) is not added:
                    // 0 * q1 would be NaN for an infinite B.
                    if (two) {
                        v = v + d1 * dot(q1, b_quad(i0 + 8u * slots));
                    }
                    acc[j] = acc[j] + v;
                }
            }
        }
    }
    for (var j = 0u; j < COLS; j = j + 1u) {
        partial[lid * COLS + j] = acc[j];
    }
    workgroupBarrier();
    // The first warp of a row adds the row's other warps' sums to its own, lane by lane
    // in warp order (each reads and writes only its own lane's entries).
    if (lane < LANES) {
        for (var j = 0u; j < COLS; j = j + 1u) {
            var s = partial[lid * COLS + j];
            for (var w = 1u; w < ROW_WARPS; w = w + 1u) {
                s = s + partial[(lid + w * LANES) * COLS + j];
            }
            partial[lid * COLS + j] = s;
        }
    }
    workgroupBarrier();
    store_c_rows(r, lane, row, col0, per_row);
}

// ---- `decode_rows`: few columns, RPT rows a thread -------------------------------------
// A tile of COLS <= 4 columns a workgroup column (grid y walks the tiles: up to 64 columns
// the Rust side runs this over tiles of 4, each reading the weights once).
// `decode_vec` streams A at a third of the device's bandwidth: per 4 weights a lane loads
// a scale, converts it, funnels a word (a branch that splits the warp, since neighbouring
// blocks alternate between word-aligned and not), converts 4 integers and loads 4 values
// of B. Here a lane takes 8 weights of a block (4 lanes a block, 8 blocks a warp step:
// Q8_0 bytes 8u..8u+7; Q4_0 word u, elements 4u.. from its low nibbles and 4u + 16.. from
// its high ones) in each of RPT rows, so each B value loaded serves RPT rows and each
// scale 8 weights; the words are funnelled without a branch and the integers become
// floats by the 2^23 trick (`bytes4`), not by conversion instructions. WARPS_K warps
// share a set of RPT rows (a workgroup holds 8 / WARPS_K sets); the 32 * WARPS_K sums of
// each output are added in a fixed order (groups of WARPS_K * 4, then the 8 groups).

override RPT: u32 = 4u;
override WARPS_K: u32 = 4u;

// The 4 bytes of w as f32 (each under 2^8), less `bias`: a byte OR-ed into the mantissa
// of 2^23 is 2^23 + byte exactly, and the subtraction is exact.
fn bytes4(w: u32, bias: f32) -> vec4<f32> {
    let m = (vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(0xffu)) | vec4<u32>(0x4b000000u);
    return bitcast<vec4<f32>>(m) - vec4<f32>(8388608.0 + bias);
}

// Lane u's 8 integers of the block at byte p (even): Q8_0 bytes 8u..8u+7, Q4_0 the low
// then the high nibbles of word u. The words are read whole and funnelled where the
// bytes do not start on a word.
fn weights8(p: u32, u: u32) -> array<vec4<f32>, 2> {
    let q = p + 2u + select(4u * u, 8u * u, FORMAT == 0u);
    let i = q >> 2u;
    let odd = (q & 2u) != 0u;
    let l0 = a[i];
    let l1 = a[i + 1u];
    let w0 = select(l0, (l0 >> 16u) | (l1 << 16u), odd);
    if (FORMAT == 0u) {
        let l2 = a[i + 2u];
        let w1 = select(l1, (l1 >> 16u) | (l2 << 16u), odd);
        return array<vec4<f32>, 2>(bytes4(w0 ^ 0x80808080u, 128.0), bytes4(w1 ^ 0x80808080u, 128.0));
    }
    return array<vec4<f32>, 2>(bytes4(w0 & 0x0f0f0f0fu, 8.0), bytes4((w0 >> 4u) & 0x0f0f0f0fu, 8.0));
}

@compute @workgroup_size(256)
fn decode_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let per_set = LANES * WARPS_K;
    let sets = 8u / WARPS_K;
    let rset = lid / per_set;
    let s = lid % per_set;
    let lane = s % LANES;
    let u = lane % 4u;
    let row0 = (wid.x * sets + rset) * RPT;
    let col0 = wid.y * COLS;
    // B's quads under the lane's 8 weights.
    let qa = select(u, 2u * u, FORMAT == 0u);
    let qb = select(u + 4u, 2u * u + 1u, FORMAT == 0u);
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let blocks = params.k / 32u;
    if ((params.flags & 1u) != 0u && row0 < params.m) {
        let row_bytes = blocks * block_bytes();
        // Each step takes two blocks, blk and blk + 8 * WARPS_K, whose loads are issued
        // together (a call is as long as a thread's chain of steps where rows are few).
        let stride = 8u * WARPS_K;
        for (var blk = (s / LANES) * 8u + lane / 4u; blk < blocks; blk = blk + 2u * stride) {
            let two = blk + stride < blocks;
            let blk1 = select(blk, blk + stride, two);
            var b0: array<vec4<f32>, 4>;
            var b1: array<vec4<f32>, 4>;
            var b2: array<vec4<f32>, 4>;
            var b3: array<vec4<f32>, 4>;
            for (var j = 0u; j < COLS; j = j + 1u) {
                // Columns past n (and rows past m below) are read clamped and not stored.
                let ib = (params.b_off + min(col0 + j, params.n - 1u) * params.ldb) / 4u;
                b0[j] = b_quad(ib + blk * 8u + qa);
                b1[j] = b_quad(ib + blk * 8u + qb);
                b2[j] = b_quad(ib + blk1 * 8u + qa);
                b3[j] = b_quad(ib + blk1 * 8u + qb);
            }
            for (var i = 0u; i < RPT; i = i + 1u) {
                let base = params.a_byte + min(row0 + i, params.m - 1u) * row_bytes;
                let p0 = base + blk * block_bytes();
                let p1 = base + blk1 * block_bytes();
                let d0 = scale_at(p0);
                let d1 = scale_at(p1);
                let x0 = weights8(p0, u);
                let x1 = weights8(p1, u);
                for (var j = 0u; j < COLS; j = j + 1u) {
                    let v0 = d0 * (dot(x0[0], b0[j]) + dot(x0[1], b1[j]));
                    // Without a second block, x1 (blk's values again) is not added.
                    let v1 = select(0.0, d1 * (dot(x1[0], b2[j]) + dot(x1[1], b3[j])), two);
                    acc[i * COLS + j] = acc[i * COLS + j] + (v0 + v1);
                }
            }
        }
    }
    reduce_rows(wid, lid, acc, sets, per_set);
}

// The end of `decode_rows`: each thread's RPT x COLS sums (thread lid of set
// lid / per_set, slice lid % per_set) added over the set's slices in a fixed order (8
// groups of per_set / 8, then the groups) and stored.
fn reduce_rows(wid: vec3<u32>, lid: u32, acc: array<f32, 8>, sets: u32, per_set: u32) {
    let outs = RPT * COLS;
    for (var o = 0u; o < outs; o = o + 1u) {
        partial[o * 256u + lid] = acc[o];
    }
    workgroupBarrier();
    let per = per_set / 8u;
    let n1 = sets * outs * 8u;
    let g = lid % 8u;
    let o1 = (lid / 8u) % outs;
    let set1 = lid / (8u * outs);
    var v = 0.0;
    if (lid < n1) {
        for (var i = 0u; i < per; i = i + 1u) {
            v = v + partial[o1 * 256u + set1 * per_set + g * per + i];
        }
    }
    workgroupBarrier();
    if (lid < n1) {
        partial[lid] = v;
    }
    workgroupBarrier();
    if (lid < sets * outs) {
        var sum = 0.0;
        for (var h = 0u; h < 8u; h = h + 1u) {
            sum = sum + partial[lid * 8u + h];
        }
        let o = lid % outs;
        let row = (wid.x * sets + lid / outs) * RPT + o / COLS;
        let col = wid.y * COLS + o % COLS;
        if (row < params.m && col < params.n) {
            store_one(row, col, sum);
        }
    }
}
