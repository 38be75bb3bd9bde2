// C = alpha * op(A) * op(B) + beta * C, column-major, batched over workgroup_id.z.
//
// A 64x64 tile of C per workgroup of 256 threads, each thread a 4x4 block, with A and B
// staged through workgroup memory 16 columns of k at a time. A and B are word arrays so
// that one kernel reads f32, f16 and bf16 (A_TYPE, B_TYPE); offsets and leading
// dimensions are in elements. B_IN_A reads B through A's binding when the two overlap
// (WebGPU forbids overlapping writable bindings). C is not read when beta is 0.

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
    var acc: array<array<f32, TN>, TM>;
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
            var av: array<f32, TM>;
            var bv: array<f32, TN>;
            for (var r = 0u; r < TM; r = r + 1u) {
                av[r] = tile_a[kk * BM + tr + 16u * r];
            }
            for (var s = 0u; s < TN; s = s + 1u) {
                bv[s] = tile_b[kk * BN + tc + 16u * s];
            }
            for (var r = 0u; r < TM; r = r + 1u) {
                for (var s = 0u; s < TN; s = s + 1u) {
                    acc[r][s] = acc[r][s] + av[r] * bv[s];
                }
            }
        }
        workgroupBarrier();
    }
    for (var s = 0u; s < TN; s = s + 1u) {
        let j = col0 + tc + 16u * s;
        if (j >= params.n) {
            continue;
        }
        for (var r = 0u; r < TM; r = r + 1u) {
            let i = row0 + tr + 16u * r;
            if (i >= params.m) {
                continue;
            }
            let idx = c_base + i + j * params.ldc;
            var v = params.alpha * acc[r][s];
            if (params.beta != 0.0) {
                v = v + params.beta * c[idx];
            }
            c[idx] = v;
        }
    }
}
