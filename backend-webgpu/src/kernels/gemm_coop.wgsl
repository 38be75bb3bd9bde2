// gemm_ex with f16 A and B on matrix units (NVIDIA tensor cores through Vulkan's
// cooperative matrices; wgpu's experimental `wgpu_cooperative_matrix`): 16x16x16 f16
// products accumulated in f32. A workgroup of 4 subgroups of 32 computes a 64x64 tile of
// C, each subgroup a 32x32 quadrant as 2 x 2 accumulators; A and B tiles are loaded
// straight from the operands (column-major, or row-major for transposed operands), and
// the result goes through workgroup memory so alpha and beta apply element by element.
// The host uses this only for f16 x f16 with m, n, k, leading dimensions and offsets
// multiples of 16 (whole tiles, aligned loads).

enable f16;
enable wgpu_cooperative_matrix;

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
@group(0) @binding(1) var<storage, read_write> a: array<f16>;
@group(0) @binding(2) var<storage, read_write> b: array<f16>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

override TRANS_A: bool = false;
override TRANS_B: bool = false;

// The 64x64 result tile, column-major.
var<workgroup> tile: array<f32, 4096>;

fn load_a(i: u32, l: u32, base: u32) -> coop_mat16x16<f16, A> {
    // op(A) rows i.., columns l..
    if (TRANS_A) {
        return coopLoadT<coop_mat16x16<f16, A>>(&a[base + l + i * params.lda], params.lda);
    }
    return coopLoad<coop_mat16x16<f16, A>>(&a[base + i + l * params.lda], params.lda);
}

fn load_b(l: u32, j: u32, base: u32) -> coop_mat16x16<f16, B> {
    if (TRANS_B) {
        return coopLoadT<coop_mat16x16<f16, B>>(&b[base + j + l * params.ldb], params.ldb);
    }
    return coopLoad<coop_mat16x16<f16, B>>(&b[base + l + j * params.ldb], params.ldb);
}

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let batch = params.batch_base + wid.z;
    let a_base = params.a_off + batch * params.stride_a;
    let b_base = params.b_off + batch * params.stride_b;
    let c_base = params.c_off + batch * params.stride_c;
    let warp = lid / 32u;
    let i0 = wid.x * 64u + 32u * (warp % 2u);
    let j0 = wid.y * 64u + 32u * (warp / 2u);
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    for (var l = 0u; l < params.k; l = l + 16u) {
        let a0 = load_a(i0, l, a_base);
        let a1 = load_a(i0 + 16u, l, a_base);
        let b0 = load_b(l, j0, b_base);
        let b1 = load_b(l, j0 + 16u, b_base);
        c00 = coopMultiplyAdd(a0, b0, c00);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c11 = coopMultiplyAdd(a1, b1, c11);
    }
    // Quadrant (warp % 2, warp / 2) of the 64x64 tile, column-major with stride 64.
    let q = 32u * (warp % 2u) + 64u * 32u * (warp / 2u);
    coopStore(c00, &tile[q], 64u);
    coopStore(c10, &tile[q + 16u], 64u);
    coopStore(c01, &tile[q + 16u * 64u], 64u);
    coopStore(c11, &tile[q + 16u * 64u + 16u], 64u);
    workgroupBarrier();
    for (var e = lid; e < 4096u; e = e + 128u) {
        let i = wid.x * 64u + e % 64u;
        let j = wid.y * 64u + e / 64u;
        if (i < params.m && j < params.n) {
            let idx = c_base + i + j * params.ldc;
            var out = params.alpha * tile[e];
            if (params.beta != 0.0) {
                out = out + params.beta * c[idx];
            }
            c[idx] = out;
        }
    }
}
