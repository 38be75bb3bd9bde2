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

// ---- `tiled`: 128 x 128 blocks staged through workgroup memory --------------------------
// 8 subgroups of 32: subgroup w computes rows 64 (w % 2).. and columns 32 (w / 2).. of the
// block as 4 x 2 accumulators. Each k-step stages 32 columns of op(A) and 32 rows of op(B)
// with 16-byte loads (the operands are viewed as u32x4 words: 8 halves), prefetching the
// next step into registers while this one is multiplied. The host uses it for m and n
// multiples of 128 and k a multiple of 32.

@group(0) @binding(4) var<storage, read_write> a8: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> b8: array<vec4<u32>>;

const PAD_LONG: u32 = 136u; // 128 halves + 8: stride of a 128-long staged dimension
const PAD_SHORT: u32 = 40u; // 32 halves + 8: stride of a 32-long staged dimension

var<workgroup> sa: array<f16, 5120>;
var<workgroup> sb: array<f16, 5120>;
var<workgroup> cs: array<f32, 2048>; // one 16x16 result tile per subgroup

struct Staged {
    a0: vec4<u32>,
    a1: vec4<u32>,
    b0: vec4<u32>,
    b1: vec4<u32>,
}

// Word (8 halves) p of the A stage and its place in `sa`: returns the global word index.
fn a_word(p: u32, i0: u32, k0: u32, base: u32) -> u32 {
    if (TRANS_A) {
        // op(A)[i, l] = A[l + i lda]: rows of 32 k, 4 words each.
        let i = p / 4u;
        let q = p % 4u;
        return (base + k0 + 8u * q + (i0 + i) * params.lda) / 8u;
    }
    // op(A)[i, l] = A[i + l lda]: columns of 128 rows, 16 words each.
    let l = p / 16u;
    let q = p % 16u;
    return (base + i0 + 8u * q + (k0 + l) * params.lda) / 8u;
}

fn a_slot(p: u32) -> u32 {
    if (TRANS_A) {
        return (p / 4u) * PAD_SHORT + 8u * (p % 4u); // [i][l]
    }
    return (p / 16u) * PAD_LONG + 8u * (p % 16u); // [l][i]
}

fn b_word(p: u32, j0: u32, k0: u32, base: u32) -> u32 {
    if (TRANS_B) {
        // op(B)[l, j] = B[j + l ldb]: rows of 128 columns, 16 words each.
        let l = p / 16u;
        let q = p % 16u;
        return (base + j0 + 8u * q + (k0 + l) * params.ldb) / 8u;
    }
    // op(B)[l, j] = B[l + j ldb]: columns of 32 k, 4 words each.
    let j = p / 4u;
    let q = p % 4u;
    return (base + k0 + 8u * q + (j0 + j) * params.ldb) / 8u;
}

fn b_slot(p: u32) -> u32 {
    if (TRANS_B) {
        return (p / 16u) * PAD_LONG + 8u * (p % 16u); // [l][j]
    }
    return (p / 4u) * PAD_SHORT + 8u * (p % 4u); // [j][l]
}

// Eight halves from one u32x4 word into `sa` (to_a) or `sb` at `at`. Exact: every f16
// value is an f32 value and back.
fn put8(to_a: bool, at: u32, w: vec4<u32>) {
    let h = array<vec2<f16>, 4>(
        vec2<f16>(unpack2x16float(w.x)),
        vec2<f16>(unpack2x16float(w.y)),
        vec2<f16>(unpack2x16float(w.z)),
        vec2<f16>(unpack2x16float(w.w)),
    );
    for (var e = 0u; e < 4u; e = e + 1u) {
        if (to_a) {
            sa[at + 2u * e] = h[e].x;
            sa[at + 2u * e + 1u] = h[e].y;
        } else {
            sb[at + 2u * e] = h[e].x;
            sb[at + 2u * e + 1u] = h[e].y;
        }
    }
}

fn stage_load(lid: u32, i0: u32, j0: u32, k0: u32, a_base: u32, b_base: u32) -> Staged {
    var s: Staged;
    s.a0 = a8[a_word(lid, i0, k0, a_base)];
    s.a1 = a8[a_word(lid + 256u, i0, k0, a_base)];
    s.b0 = b8[b_word(lid, j0, k0, b_base)];
    s.b1 = b8[b_word(lid + 256u, j0, k0, b_base)];
    return s;
}

fn stage_store(lid: u32, s: Staged) {
    put8(true, a_slot(lid), s.a0);
    put8(true, a_slot(lid + 256u), s.a1);
    put8(false, b_slot(lid), s.b0);
    put8(false, b_slot(lid + 256u), s.b1);
}

fn frag_a(i: u32, l: u32) -> coop_mat16x16<f16, A> {
    if (TRANS_A) {
        return coopLoadT<coop_mat16x16<f16, A>>(&sa[i * PAD_SHORT + l], PAD_SHORT);
    }
    return coopLoad<coop_mat16x16<f16, A>>(&sa[l * PAD_LONG + i], PAD_LONG);
}

fn frag_b(l: u32, j: u32) -> coop_mat16x16<f16, B> {
    if (TRANS_B) {
        return coopLoadT<coop_mat16x16<f16, B>>(&sb[l * PAD_LONG + j], PAD_LONG);
    }
    return coopLoad<coop_mat16x16<f16, B>>(&sb[j * PAD_SHORT + l], PAD_SHORT);
}

// Writes one 16x16 accumulator through this subgroup's scratch tile, applying alpha/beta.
fn epilogue(acc: coop_mat16x16<f32, C>, warp: u32, lane: u32, i: u32, j: u32, c_base: u32) {
    coopStore(acc, &cs[warp * 256u], 16u);
    workgroupBarrier();
    for (var e = lane; e < 256u; e = e + 32u) {
        let idx = c_base + (i + e % 16u) + (j + e / 16u) * params.ldc;
        var out = params.alpha * cs[warp * 256u + e];
        if (params.beta != 0.0) {
            out = out + params.beta * c[idx];
        }
        c[idx] = out;
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let batch = params.batch_base + wid.z;
    let a_base = params.a_off + batch * params.stride_a;
    let b_base = params.b_off + batch * params.stride_b;
    let c_base = params.c_off + batch * params.stride_c;
    let i0 = wid.x * 128u;
    let j0 = wid.y * 128u;
    let warp = lid / 32u;
    let lane = lid % 32u;
    let wi = 64u * (warp % 2u);
    let wj = 32u * (warp / 2u);
    var x00 = coop_mat16x16<f32, C>(); var x01 = coop_mat16x16<f32, C>();
    var x10 = coop_mat16x16<f32, C>(); var x11 = coop_mat16x16<f32, C>();
    var x20 = coop_mat16x16<f32, C>(); var x21 = coop_mat16x16<f32, C>();
    var x30 = coop_mat16x16<f32, C>(); var x31 = coop_mat16x16<f32, C>();
    var next = stage_load(lid, i0, j0, 0u, a_base, b_base);
    for (var k0 = 0u; k0 < params.k; k0 = k0 + 32u) {
        workgroupBarrier();
        stage_store(lid, next);
        workgroupBarrier();
        if (k0 + 32u < params.k) {
            next = stage_load(lid, i0, j0, k0 + 32u, a_base, b_base);
        }
        for (var l = 0u; l < 32u; l = l + 16u) {
            let b0 = frag_b(l, wj);
            let b1 = frag_b(l, wj + 16u);
            let a0 = frag_a(wi, l);
            x00 = coopMultiplyAdd(a0, b0, x00);
            x01 = coopMultiplyAdd(a0, b1, x01);
            let a1 = frag_a(wi + 16u, l);
            x10 = coopMultiplyAdd(a1, b0, x10);
            x11 = coopMultiplyAdd(a1, b1, x11);
            let a2 = frag_a(wi + 32u, l);
            x20 = coopMultiplyAdd(a2, b0, x20);
            x21 = coopMultiplyAdd(a2, b1, x21);
            let a3 = frag_a(wi + 48u, l);
            x30 = coopMultiplyAdd(a3, b0, x30);
            x31 = coopMultiplyAdd(a3, b1, x31);
        }
    }
    let ii = i0 + wi;
    let jj = j0 + wj;
    epilogue(x00, warp, lane, ii, jj, c_base);
    epilogue(x01, warp, lane, ii, jj + 16u, c_base);
    epilogue(x10, warp, lane, ii + 16u, jj, c_base);
    epilogue(x11, warp, lane, ii + 16u, jj + 16u, c_base);
    epilogue(x20, warp, lane, ii + 32u, jj, c_base);
    epilogue(x21, warp, lane, ii + 32u, jj + 16u, c_base);
    epilogue(x30, warp, lane, ii + 48u, jj, c_base);
    epilogue(x31, warp, lane, ii + 48u, jj + 16u, c_base);
}
