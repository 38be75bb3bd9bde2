// C = alpha * op(A) * op(B) + beta * C, column-major, batched over workgroup_id.z.
//
// Two entry points share the parameter block:
//
// - `main`, the general kernel: any alignment, f32/f16/bf16 inputs. A 64x64 tile of C per
//   workgroup of 256 threads, each thread a 4x4 block, with A and B staged through
//   workgroup memory 16 columns of k at a time. A and B are word arrays so that one
//   kernel reads f32, f16 and bf16 (A_TYPE, B_TYPE); offsets and leading dimensions are in
//   elements. B_IN_A reads B through A's binding when the two overlap (WebGPU forbids
//   overlapping writable bindings).
// - `tiled`, the fast kernel (f32, f16 or bf16 inputs) for operands whose contiguous
//   dimension, leading dimension and offset are multiples of 4 (the host checks): a
//   128x128 tile per workgroup (128x64 when NB = 64, for problems too small to fill the
//   device with the wide tile), each thread an 8x8 (8x4) block held in vec4 registers,
//   16-byte global loads, and two stages of workgroup memory so that one barrier per
//   k-step suffices. TRANS_A and TRANS_B specialise the loads.
//
// C is not read when beta is 0.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    a_off: u32,
    b_off: u32,
    c_off: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    trans_a: u32,
    trans_b: u32,
    alpha: f32,
    beta: f32,
    batch_base: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> a: array<u32>;
@group(0) @binding(2) var<storage, read_write> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

override A_TYPE: u32 = 0u;
override B_TYPE: u32 = 0u;
override B_IN_A: bool = false;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const TM: u32 = 4u;
const TN: u32 = 4u;

var<workgroup> tile_a: array<f32, 1024>; // [BK][BM]
var<workgroup> tile_b: array<f32, 1024>; // [BK][BN]

fn load_a(e: u32) -> f32 {
    if (A_TYPE == DTYPE_F32) {
        return bitcast<f32>(a[e]);
    }
    return bitcast<f32>(decode_bits(a[e >> 1u], e, A_TYPE));
}

fn load_b(e: u32) -> f32 {
    if (B_IN_A) {
        if (B_TYPE == DTYPE_F32) {
            return bitcast<f32>(a[e]);
        }
        return bitcast<f32>(decode_bits(a[e >> 1u], e, B_TYPE));
    }
    if (B_TYPE == DTYPE_F32) {
        return bitcast<f32>(b[e]);
    }
    return bitcast<f32>(decode_bits(b[e >> 1u], e, B_TYPE));
}

// op(A)[i, l]: row i of C, column l of the reduction.
fn op_a(i: u32, l: u32, base: u32) -> f32 {
    if (i >= params.m || l >= params.k) {
        return 0.0;
    }
    if (params.trans_a != 0u) {
        return load_a(base + l + i * params.lda);
    }
    return load_a(base + i + l * params.lda);
}

// op(B)[l, j].
fn op_b(l: u32, j: u32, base: u32) -> f32 {
    if (l >= params.k || j >= params.n) {
        return 0.0;
    }
    if (params.trans_b != 0u) {
        return load_b(base + j + l * params.ldb);
    }
    return load_b(base + l + j * params.ldb);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let batch = params.batch_base + wid.z;
    let a_base = params.a_off + batch * params.stride_a;
    let b_base = params.b_off + batch * params.stride_b;
    let c_base = params.c_off + batch * params.stride_c;
    let row0 = wid.x * BM;
    let col0 = wid.y * BN;
    // Thread (tr, tc) owns rows row0 + tr + 16 * r and columns col0 + tc + 16 * s:
    // consecutive threads touch consecutive rows, which are contiguous in C.
    let tr = lid % 16u;
    let tc = lid / 16u;
    // Column s of the thread's 4x4 block, rows r as vector components: registers only.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < params.k; k0 = k0 + BK) {
        // Stage A[row0.., k0..] and B[k0.., col0..]: 1024 elements each, 4 per thread,
        // with the contiguous index varying fastest across threads.
        for (var t = 0u; t < 4u; t = t + 1u) {
            let e = lid + t * 256u;
            if (params.trans_a != 0u) {
                let kk = e % BK;
                let ii = e / BK;
                tile_a[kk * BM + ii] = op_a(row0 + ii, k0 + kk, a_base);
            } else {
                let ii = e % BM;
                let kk = e / BM;
                tile_a[kk * BM + ii] = op_a(row0 + ii, k0 + kk, a_base);
            }
            if (params.trans_b != 0u) {
                let jj = e % BN;
                let kk = e / BN;
                tile_b[kk * BN + jj] = op_b(k0 + kk, col0 + jj, b_base);
            } else {
                let kk = e % BK;
                let jj = e / BK;
                tile_b[kk * BN + jj] = op_b(k0 + kk, col0 + jj, b_base);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            let a = kk * BM + tr;
            let av = vec4<f32>(tile_a[a], tile_a[a + 16u], tile_a[a + 32u], tile_a[a + 48u]);
            let b = kk * BN + tc;
            acc0 = fma(av, vec4<f32>(tile_b[b]), acc0);
            acc1 = fma(av, vec4<f32>(tile_b[b + 16u]), acc1);
            acc2 = fma(av, vec4<f32>(tile_b[b + 32u]), acc2);
            acc3 = fma(av, vec4<f32>(tile_b[b + 48u]), acc3);
        }
        workgroupBarrier();
    }
    store_block_column(row0, col0 + tc, tr, c_base, acc0);
    store_block_column(row0, col0 + tc + 16u, tr, c_base, acc1);
    store_block_column(row0, col0 + tc + 32u, tr, c_base, acc2);
    store_block_column(row0, col0 + tc + 48u, tr, c_base, acc3);
}

// Column j of a 64-row tile: rows row0 + tr + 16 r for the four components r.
fn store_block_column(row0: u32, j: u32, tr: u32, c_base: u32, v: vec4<f32>) {
    if (j >= params.n) {
        return;
    }
    for (var r = 0u; r < TM; r = r + 1u) {
        let i = row0 + tr + 16u * r;
        if (i < params.m) {
            let idx = c_base + i + j * params.ldc;
            var out = params.alpha * v[r];
            if (params.beta != 0.0) {
                out = out + params.beta * c[idx];
            }
            c[idx] = out;
        }
    }
}

// ---- `tiled`: the fast f32 path ------------------------------------------------------

@group(0) @binding(4) var<storage, read_write> a4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> b4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> c4: array<vec4<f32>>;
// 16-bit A and B (A_TYPE, B_TYPE f16 or bf16): four elements per 8-byte word pair.
@group(0) @binding(7) var<storage, read_write> a2: array<vec2<u32>>;
@group(0) @binding(8) var<storage, read_write> b2: array<vec2<u32>>;

// Four consecutive 16-bit elements as f32: exact (the f16 conversion is the hardware's
// for finite values, the bit decoder's for infinities and NaN).
fn widen4(w: vec2<u32>, dtype: u32) -> vec4<f32> {
    if (dtype == DTYPE_BF16) {
        return bitcast<vec4<f32>>(vec4<u32>(w.x << 16u, w.x & 0xffff0000u, w.y << 16u, w.y & 0xffff0000u));
    }
    return vec4<f32>(
        bitcast<f32>(f16_to_f32_bits(w.x & 0xffffu)),
        bitcast<f32>(f16_to_f32_bits(w.x >> 16u)),
        bitcast<f32>(f16_to_f32_bits(w.y & 0xffffu)),
        bitcast<f32>(f16_to_f32_bits(w.y >> 16u)),
    );
}

fn load_a4(e: u32) -> vec4<f32> {
    if (A_TYPE == DTYPE_F32) {
        return a4[e >> 2u];
    }
    return widen4(a2[e >> 2u], A_TYPE);
}

fn load_b4(e: u32) -> vec4<f32> {
    if (B_TYPE == DTYPE_F32) {
        return b4[e >> 2u];
    }
    return widen4(b2[e >> 2u], B_TYPE);
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
// C's rows come in whole vec4s (ldc, c_off and m multiples of 4).
override C_VEC4: bool = true;

const TB: u32 = 128u; // tile rows (and columns when NB = 128)
// Tile columns: 128, or 64 (each thread then owns 8x4 of C and only the first 2 NB
// threads load B).
override NB: u32 = 128u;
const TK: u32 = 8u; // tile depth
const STAGE: u32 = 256u; // vec4s per stage: TK * TB / 4

// [stage][kk][TB / 4] vec4s: row (or column) 4q..4q+3 of depth kk.
var<workgroup> sa: array<vec4<f32>, 512>;
var<workgroup> sb: array<vec4<f32>, 512>;

// What one thread brings from device memory for one stage.
struct Fetch {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn fetch(lid: u32, row0: u32, col0: u32, k0: u32, a_base: u32, b_base: u32) -> Fetch {
    var f: Fetch;
    f.a = vec4<f32>(0.0);
    f.b = vec4<f32>(0.0);
    if (TRANS_A) {
        // A stored k x m: 4 consecutive k of row i.
        let i = row0 + lid % TB;
        let kq = k0 + 4u * (lid / TB);
        if (i < params.m && kq < params.k) {
            f.a = load_a4(a_base + kq + i * params.lda);
        }
    } else {
        // A stored m x k: 4 consecutive rows at depth kk.
        let i = row0 + 4u * (lid % 32u);
        let kk = k0 + lid / 32u;
        if (i < params.m && kk < params.k) {
            f.a = load_a4(a_base + i + kk * params.lda);
        }
    }
    if (TRANS_B) {
        // B stored n x k: 4 consecutive columns at depth kk.
        let j = col0 + 4u * (lid % (NB / 4u));
        let kk = k0 + lid / (NB / 4u);
        if (lid < 2u * NB && j < params.n && kk < params.k) {
            f.b = load_b4(b_base + j + kk * params.ldb);
        }
    } else {
        // B stored k x n: 4 consecutive k of column j.
        let j = col0 + lid % NB;
        let kq = k0 + 4u * (lid / NB);
        if (lid < 2u * NB && j < params.n && kq < params.k) {
            f.b = load_b4(b_base + kq + j * params.ldb);
        }
    }
    return f;
}

fn store(lid: u32, stage: u32, f: Fetch) {
    let base = stage * STAGE;
    if (TRANS_A) {
        let i = lid % TB;
        let kq = 4u * (lid / TB);
        let q = base + i / 4u;
        let c = i % 4u;
        sa[q + (kq + 0u) * 32u][c] = f.a.x;
        sa[q + (kq + 1u) * 32u][c] = f.a.y;
        sa[q + (kq + 2u) * 32u][c] = f.a.z;
        sa[q + (kq + 3u) * 32u][c] = f.a.w;
    } else {
        sa[base + (lid / 32u) * 32u + lid % 32u] = f.a;
    }
    if (lid >= 2u * NB) {
        return;
    }
    if (TRANS_B) {
        sb[base + (lid / (NB / 4u)) * 32u + lid % (NB / 4u)] = f.b;
    } else {
        let j = lid % NB;
        let kq = 4u * (lid / NB);
        let q = base + j / 4u;
        let c = j % 4u;
        sb[q + (kq + 0u) * 32u][c] = f.b.x;
        sb[q + (kq + 1u) * 32u][c] = f.b.y;
        sb[q + (kq + 2u) * 32u][c] = f.b.z;
        sb[q + (kq + 3u) * 32u][c] = f.b.w;
    }
}

fn store_column(j: u32, i: u32, c_base: u32, v: vec4<f32>) {
    if (j >= params.n || i >= params.m) {
        return;
    }
    let e = c_base + i + j * params.ldc;
    if (C_VEC4) {
        var out = params.alpha * v;
        if (params.beta != 0.0) {
            out = out + params.beta * c4[e >> 2u];
        }
        c4[e >> 2u] = out;
        return;
    }
    // C not vec4-aligned: element by element, through the same binding.
    for (var r = 0u; r < 4u; r = r + 1u) {
        if (i + r < params.m) {
            let x = e + r;
            var out = params.alpha * v[r];
            if (params.beta != 0.0) {
                out = out + params.beta * c4[x >> 2u][x & 3u];
            }
            c4[x >> 2u][x & 3u] = out;
        }
    }
}

@compute @workgroup_size(256)
fn tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let batch = params.batch_base + wid.z;
    let a_base = params.a_off + batch * params.stride_a;
    let b_base = params.b_off + batch * params.stride_b;
    let c_base = params.c_off + batch * params.stride_c;
    let row0 = wid.x * TB;
    let col0 = wid.y * NB;
    // Thread (tr, tc) owns rows 4tr..4tr+3 and 64+4tr..64+4tr+3 of the tile, and the same
    // columns with tc: two vec4s each way, 16 vec4 accumulators (x_cN_h: column N, half h).
    // With NB = 64 only columns 4tc..4tc+3 (x_c0 to x_c3).
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

    let steps = (params.k + TK - 1u) / TK;
    if (steps > 0u) {
        store(lid, 0u, fetch(lid, row0, col0, 0u, a_base, b_base));
    }
    workgroupBarrier();
    for (var t = 0u; t < steps; t = t + 1u) {
        let stage = t % 2u;
        var next: Fetch;
        let more = t + 1u < steps;
        if (more) {
            // Issue the next tile's loads before computing on this one.
            next = fetch(lid, row0, col0, (t + 1u) * TK, a_base, b_base);
        }
        let base = stage * STAGE;
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            let s = base + kk * 32u;
            let a0 = sa[s + tr];
            let a1 = sa[s + tr + 16u];
            let b0 = sb[s + tc];
            x_c0_h0 = fma(a0, vec4<f32>(b0.x), x_c0_h0); x_c0_h1 = fma(a1, vec4<f32>(b0.x), x_c0_h1);
            x_c1_h0 = fma(a0, vec4<f32>(b0.y), x_c1_h0); x_c1_h1 = fma(a1, vec4<f32>(b0.y), x_c1_h1);
            x_c2_h0 = fma(a0, vec4<f32>(b0.z), x_c2_h0); x_c2_h1 = fma(a1, vec4<f32>(b0.z), x_c2_h1);
            x_c3_h0 = fma(a0, vec4<f32>(b0.w), x_c3_h0); x_c3_h1 = fma(a1, vec4<f32>(b0.w), x_c3_h1);
            if (NB < TB) {
                continue;
            }
            let b1 = sb[s + tc + 16u];
            x_c4_h0 = fma(a0, vec4<f32>(b1.x), x_c4_h0); x_c4_h1 = fma(a1, vec4<f32>(b1.x), x_c4_h1);
            x_c5_h0 = fma(a0, vec4<f32>(b1.y), x_c5_h0); x_c5_h1 = fma(a1, vec4<f32>(b1.y), x_c5_h1);
            x_c6_h0 = fma(a0, vec4<f32>(b1.z), x_c6_h0); x_c6_h1 = fma(a1, vec4<f32>(b1.z), x_c6_h1);
            x_c7_h0 = fma(a0, vec4<f32>(b1.w), x_c7_h0); x_c7_h1 = fma(a1, vec4<f32>(b1.w), x_c7_h1);
        }
        if (more) {
            // The other stage was last read before the previous barrier.
            store(lid, 1u - stage, next);
        }
        workgroupBarrier();
    }

    let i0 = row0 + 4u * tr;
    let i1 = i0 + 64u;
    let j0 = col0 + 4u * tc;
    let j1 = j0 + 64u;
    store_column(j0 + 0u, i0, c_base, x_c0_h0); store_column(j0 + 0u, i1, c_base, x_c0_h1);
    store_column(j0 + 1u, i0, c_base, x_c1_h0); store_column(j0 + 1u, i1, c_base, x_c1_h1);
    store_column(j0 + 2u, i0, c_base, x_c2_h0); store_column(j0 + 2u, i1, c_base, x_c2_h1);
    store_column(j0 + 3u, i0, c_base, x_c3_h0); store_column(j0 + 3u, i1, c_base, x_c3_h1);
    if (NB < TB) {
        return;
    }
    store_column(j1 + 0u, i0, c_base, x_c4_h0); store_column(j1 + 0u, i1, c_base, x_c4_h1);
    store_column(j1 + 1u, i0, c_base, x_c5_h0); store_column(j1 + 1u, i1, c_base, x_c5_h1);
    store_column(j1 + 2u, i0, c_base, x_c6_h0); store_column(j1 + 2u, i1, c_base, x_c6_h1);
    store_column(j1 + 3u, i0, c_base, x_c7_h0); store_column(j1 + 3u, i1, c_base, x_c7_h1);
}

// ---- `skinny`: f32, A not transposed, at most 16 columns (decode) --------------------
// The tiled kernel's 128-row tiles leave a 4096 x 16 product 32 workgroups, each walking
// all of k: a few SMs stream the weights. Here a workgroup takes 16 rows of C (4 quads)
// and splits k over 64 slices: thread (quad q, slice s) accumulates rows 4q..4q+3 of
// its columns over k = s, s + 64, ... (two steps' loads issued together), reading A's
// column of 16 rows as one 16-byte load (a warp's loads cover 8 columns' 64-byte runs)
// and B's values (the same for the 4 quads of a slice). The 64 slices' sums are then
// added in a fixed order in workgroup memory, two columns a round: 8 slices at a time,
// then the 8 partial sums. NS (1, 2, 4, 8 or 16) bounds the columns.

override NS: u32 = 16u;
// B read as vec4s down its columns (the host's choice: B not transposed, its start, ldb
// and k multiples of 4); else as scalars through `b`. The other binding is a placeholder.
override SK_B_VEC: bool = false;

const SK_QUADS: u32 = 4u;
const SK_SLICES: u32 = 64u; // 256 / SK_QUADS

var<workgroup> sk_red: array<vec4<f32>, 512>; // two columns x 256 threads
var<workgroup> sk_red2: array<vec4<f32>, 64>; // two columns x 32 sums of 8 slices

fn sk_b(b_base: u32, kk: u32, j: u32) -> f32 {
    if (TRANS_B) {
        return bitcast<f32>(b[b_base + j + kk * params.ldb]);
    }
    return bitcast<f32>(b[b_base + kk + j * params.ldb]);
}

// acc plus 4 columns of A (a0..a3, 4 rows each) times B's 4 values down a column (bv),
// in k order.
fn sk_step(acc: vec4<f32>, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
           bv: vec4<f32>) -> vec4<f32> {
    var s = fma(a0, vec4<f32>(bv.x), acc);
    s = fma(a1, vec4<f32>(bv.y), s);
    s = fma(a2, vec4<f32>(bv.z), s);
    return fma(a3, vec4<f32>(bv.w), s);
}

@compute @workgroup_size(256)
fn skinny(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let batch = params.batch_base + wid.z;
    let a_base = params.a_off + batch * params.stride_a;
    let b_base = params.b_off + batch * params.stride_b;
    let c_base = params.c_off + batch * params.stride_c;
    let quad = lid % SK_QUADS;
    let slice = lid / SK_QUADS;
    let i = wid.x * (4u * SK_QUADS) + 4u * quad;
    var acc: array<vec4<f32>, 16>;
    for (var j = 0u; j < NS; j = j + 1u) {
        acc[j] = vec4<f32>(0.0);
    }
    if (i < params.m && SK_B_VEC) {
        // B's columns on 16 bytes (B not transposed, ldb and k multiples of 4): thread
        // (q, s) takes k = 4s..4s+3 of each 256, one 16-byte load of B per column for 4
        // of A.
        let a_row = (a_base + i) / 4u;
        let lda4 = params.lda / 4u;
        // Two steps a round (k0 and k0 + 256), their 8 loads of A issued together.
        let step = 4u * SK_SLICES;
        var k0 = 4u * slice;
        for (; k0 + step < params.k; k0 = k0 + 2u * step) {
            var av: array<vec4<f32>, 8>;
            for (var t = 0u; t < 4u; t = t + 1u) {
                av[t] = a4[a_row + (k0 + t) * lda4];
                av[4u + t] = a4[a_row + (k0 + step + t) * lda4];
            }
            for (var j = 0u; j < NS; j = j + 1u) {
                if (j < params.n) {
                    let bv = b4[(b_base + k0 + j * params.ldb) / 4u];
                    let bw = b4[(b_base + k0 + step + j * params.ldb) / 4u];
                    acc[j] = sk_step(sk_step(acc[j], av[0], av[1], av[2], av[3], bv), av[4], av[5], av[6], av[7], bw);
                }
            }
        }
        if (k0 < params.k) {
            let a0 = a4[a_row + k0 * lda4];
            let a1 = a4[a_row + (k0 + 1u) * lda4];
            let a2 = a4[a_row + (k0 + 2u) * lda4];
            let a3 = a4[a_row + (k0 + 3u) * lda4];
            for (var j = 0u; j < NS; j = j + 1u) {
                if (j < params.n) {
                    let bv = b4[(b_base + k0 + j * params.ldb) / 4u];
                    acc[j] = sk_step(acc[j], a0, a1, a2, a3, bv);
                }
            }
        }
    } else if (i < params.m) {
        let a_row = (a_base + i) / 4u;
        let lda4 = params.lda / 4u;
        var kk = slice;
        for (; kk + SK_SLICES < params.k; kk = kk + 2u * SK_SLICES) {
            let a0 = a4[a_row + kk * lda4];
            let a1 = a4[a_row + (kk + SK_SLICES) * lda4];
            for (var j = 0u; j < NS; j = j + 1u) {
                if (j < params.n) {
                    acc[j] = fma(a0, vec4<f32>(sk_b(b_base, kk, j)), acc[j]);
                    acc[j] = fma(a1, vec4<f32>(sk_b(b_base, kk + SK_SLICES, j)), acc[j]);
                }
            }
        }
        if (kk < params.k) {
            let a0 = a4[a_row + kk * lda4];
            for (var j = 0u; j < NS; j = j + 1u) {
                if (j < params.n) {
                    acc[j] = fma(a0, vec4<f32>(sk_b(b_base, kk, j)), acc[j]);
                }
            }
        }
    }
    for (var j0 = 0u; j0 < NS; j0 = j0 + 2u) {
        sk_red[lid] = acc[j0];
        sk_red[256u + lid] = acc[min(j0 + 1u, NS - 1u)];
        workgroupBarrier();
        if (lid < 64u) {
            // Column j0 + lid / 32, quad q, slices 8g..8g+7 (thread (q, s) wrote s * 4 + q).
            let col = lid / 32u;
            let q = lid % SK_QUADS;
            let g = (lid % 32u) / SK_QUADS;
            var s = vec4<f32>(0.0);
            for (var t = 0u; t < 8u; t = t + 1u) {
                s = s + sk_red[col * 256u + (8u * g + t) * SK_QUADS + q];
            }
            sk_red2[lid] = s;
        }
        workgroupBarrier();
        if (lid < 2u * SK_QUADS) {
            let col = lid / SK_QUADS;
            let q = lid % SK_QUADS;
            var s = vec4<f32>(0.0);
            for (var g = 0u; g < 8u; g = g + 1u) {
                s = s + sk_red2[col * 32u + g * SK_QUADS + q];
            }
            if (col == 0u || j0 + 1u < NS) {
                store_column(j0 + col, wid.x * (4u * SK_QUADS) + 4u * q, c_base, s);
            }
        }
    }
}
