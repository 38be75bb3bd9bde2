// Attention with an online softmax, never materialising the score matrix. Query head h
// of batch entry b reads key/value head h / group; every operand is addressed through
// its (batch, head, row) element strides, so [b, s, h, d] tensors and KV caches are read
// in place. Query i sees key j when j lies in [lo, hi): hi = seq_kv, or the causal
// frontier i + seq_kv - seq_q + 1 (bottom-right), and lo = hi - window with a sliding
// window; and, with a mask, when its entry is not -inf. Scores are
// mask + cap(scale * q.k), cap(s) = softcap * tanh(s / softcap) when soft-capped. Two
// entry points:
//
// - `main`, any head size: one workgroup per query row walks the visible keys in blocks
//   of 64, keeping the running maximum m, the running sum l and the output accumulator
//   (up to 512 dimensions per pass; wider heads take several passes over the keys).
// - `split` then `combine`, for few query rows (decoding): `main`'s walk over one chunk of
//   `chunk` keys per workgroup, `splits` workgroups per row, each writing its running
//   maximum, sum and unnormalised accumulator to `scratch`; `combine` rescales the
//   chunks to the row's maximum and divides once (flash-decoding).
// - `fast`, head sizes up to 64 or 128 (override D): blocks of 64 query rows x 64 keys,
//   S = Q K^T and O += P V as register-blocked products through workgroup memory (see
//   below).
//
// A row that sees no key outputs zeros. Excluded keys add nothing, not even 0 * NaN.

struct Params {
    rows: u32,
    seq_q: u32,
    seq_kv: u32,
    head_dim: u32,
    v_dim: u32,
    heads: u32,
    group: u32,
    flags: u32, // CAUSAL | MASKED | CAPPED | WINDOWED
    q_off: u32,
    k_off: u32,
    v_off: u32,
    o_off: u32,
    m_off: u32,
    window: u32,
    scale: f32,
    softcap: f32,
    q_s: vec3<u32>, // (batch, head, row) element strides
    splits: u32, // `split`: key chunks per row
    k_s: vec3<u32>,
    chunk: u32, // `split`: keys per chunk
    v_s: vec3<u32>,
    _p2: u32,
    o_s: vec3<u32>,
    _p3: u32,
    m_s: vec2<u32>, // (batch, head); mask rows are seq_kv apart
    _p4: vec2<u32>,
}

const CAUSAL: u32 = 1u;
const MASKED: u32 = 2u;
const CAPPED: u32 = 4u;
const WINDOWED: u32 = 8u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(8) var<storage, read_write> mask: array<f32>;

// f16/bf16 storage (DTYPE, common.wgsl's codes) on the row and split paths: Q, K and V
// read as words of two elements, O written as whole words by `combine` (the host takes
// this path only where O's rows start on even elements and hold an even number). The
// arithmetic is the f32 path's; the output is rounded once, at the store. Each entry
// uses one of the two views of an operand; the other is bound to a placeholder.
override DTYPE: u32 = 0u;
@group(0) @binding(10) var<storage, read_write> q16: array<u32>;
@group(0) @binding(11) var<storage, read_write> k16: array<u32>;
@group(0) @binding(12) var<storage, read_write> v16: array<u32>;
@group(0) @binding(13) var<storage, read_write> o16: array<u32>;

fn ld_q(i: u32) -> f32 {
    if (DTYPE == DTYPE_F32) {
        return q[i];
    }
    return bitcast<f32>(decode_bits(q16[i >> 1u], i, DTYPE));
}

fn ld_k(i: u32) -> f32 {
    if (DTYPE == DTYPE_F32) {
        return k[i];
    }
    return bitcast<f32>(decode_bits(k16[i >> 1u], i, DTYPE));
}

fn ld_v(i: u32) -> f32 {
    if (DTYPE == DTYPE_F32) {
        return v[i];
    }
    return bitcast<f32>(decode_bits(v16[i >> 1u], i, DTYPE));
}

// Both elements of a word of DTYPE (f16 or bf16), low one first.
fn pair(w: u32) -> vec2<f32> {
    if (DTYPE == DTYPE_F16 && HW_F16) {
        return unpack2x16float(w);
    }
    return vec2<f32>(bitcast<f32>(decode_bits(w, 0u, DTYPE)), bitcast<f32>(decode_bits(w, 1u, DTYPE)));
}

// The call's features (CAUSAL | MASKED | CAPPED | WINDOWED), also a pipeline constant so
// that a plain call's pipeline carries no mask, cap or window code.
override FEATURES: u32 = 15u;

fn has(flag: u32) -> bool {
    return (FEATURES & params.flags & flag) != 0u;
}

// The first element of row `row` of head `head` of batch entry `b` under strides `st`.
fn at(off: u32, st: vec3<u32>, b: u32, head: u32, row: u32) -> u32 {
    return off + b * st.x + head * st.y + row * st.z;
}

// The keys query row i may see before the mask: [lo, hi).
fn key_range(i: u32) -> vec2<u32> {
    var hi = params.seq_kv;
    if (has(CAUSAL)) {
        hi = min(params.seq_kv, max(i + params.seq_kv + 1u, params.seq_q) - params.seq_q);
    }
    var lo = 0u;
    if (has(WINDOWED)) {
        lo = max(hi, params.window) - params.window;
    }
    return vec2<u32>(lo, hi);
}

// The soft cap of a scaled score; NaN stays NaN (clamp of NaN is not specified; the bit
// test survives fast-math), and
// the clamp keeps tanh's argument where every implementation is exact to f32 (tanh(15)
// rounds to 1).
fn cap(s: f32) -> f32 {
    let x = s / params.softcap;
    return select(params.softcap * tanh(clamp(x, -15.0, 15.0)), s, is_nan(x));
}

// The score of a visible key from its scaled dot product and the mask's row start;
// -inf when the mask excludes it.
fn score(scaled: f32, m_row: u32, j: u32) -> f32 {
    var s = scaled;
    if (has(CAPPED)) {
        s = cap(s);
    }
    if (has(MASKED)) {
        let mv = mask[m_row + j];
        s = select(s + mv, -inf_f32(), is_inf(mv) && mv < 0.0);
    }
    return s;
}

const WG: u32 = 64u;
const PER_THREAD: u32 = 8u;
const PASS_DIMS: u32 = 512u; // WG * PER_THREAD

var<workgroup> scores: array<f32, WG>;
var<workgroup> keep: array<u32, WG>; // the key is visible and not masked out

@group(0) @binding(9) var<storage, read_write> scratch: array<f32>;

// One query row's walk over keys [j_lo, j_hi) (the caller keeps it inside the row's
// visible range). With `to_scratch`, writes chunk `part`'s maximum, sum and
// unnormalised accumulator to scratch instead of the normalised row of O.
fn attend(row: u32, j_lo: u32, j_hi: u32, lid: u32, to_scratch: bool, part: u32) {
    let d = params.head_dim;
    let dv = params.v_dim;
    let i = row % params.seq_q;
    let bh = row / params.seq_q;
    let b = bh / params.heads;
    let h = bh % params.heads;
    let kvh = h / params.group;
    let q_base = at(params.q_off, params.q_s, b, h, i);
    let o_base = at(params.o_off, params.o_s, b, h, i);
    let k_head = at(params.k_off, params.k_s, b, kvh, 0u);
    let v_head = at(params.v_off, params.v_s, b, kvh, 0u);
    let m_row = params.m_off + b * params.m_s.x + h * params.m_s.y + i * params.seq_kv;
    let s_base = (row * params.splits + part) * (dv + 2u);
    for (var d0 = 0u; d0 < max(dv, 1u); d0 = d0 + PASS_DIMS) {
        // Explicitly zeroed: Chrome does not re-zero an uninitialised var declared in a loop.
        var acc = array<f32, PER_THREAD>();
        var m = -inf_f32();
        var l = 0.0;
        var any = false;
        for (var j0 = j_lo; j0 < j_hi; j0 = j0 + WG) {
            let j = j0 + lid;
            var s = -inf_f32();
            var kept = 0u;
            if (j < j_hi) {
                var dot = 0.0;
                let kr = k_head + j * params.k_s.z;
                if (DTYPE != DTYPE_F32 && ((d | q_base | kr) & 1u) == 0u) {
                    // Whole words of Q and K: two elements a load, summed in the same
                    // order as one at a time.
                    for (var t = 0u; t < d; t = t + 2u) {
                        let qp = pair(q16[(q_base + t) >> 1u]);
                        let kp = pair(k16[(kr + t) >> 1u]);
                        dot = dot + qp.x * kp.x;
                        dot = dot + qp.y * kp.y;
                    }
                } else {
                    for (var t = 0u; t < d; t = t + 1u) {
                        dot = dot + ld_q(q_base + t) * ld_k(kr + t);
                    }
                }
                s = score(params.scale * dot, m_row, j);
                kept = select(1u, 0u, has(MASKED) && bitcast<u32>(s) == 0xff800000u);
            }
            scores[lid] = s;
            keep[lid] = kept;
            workgroupBarrier();
            let block = min(WG, j_hi - j0);
            var mb = m;
            for (var jj = 0u; jj < block; jj = jj + 1u) {
                if (keep[jj] != 0u) {
                    mb = max(mb, scores[jj]);
                    any = true;
                }
            }
            // exp(-inf - finite) is 0; written out because WGSL's exp promises nothing there.
            let corr = select(exp(m - mb), 0.0, is_inf(m) && m < 0.0);
            l = l * corr;
            for (var u = 0u; u < PER_THREAD; u = u + 1u) {
                acc[u] = acc[u] * corr;
            }
            for (var jj = 0u; jj < block; jj = jj + 1u) {
                if (keep[jj] == 0u) {
                    continue;
                }
                let p = exp(scores[jj] - mb);
                l = l + p;
                let vr = v_head + (j0 + jj) * params.v_s.z;
                for (var u = 0u; u < PER_THREAD; u = u + 1u) {
                    let t = d0 + lid + u * WG;
                    if (t < dv) {
                        acc[u] = acc[u] + p * ld_v(vr + t);
                    }
                }
            }
            m = mb;
            workgroupBarrier();
        }
        if (to_scratch) {
            // A chunk that kept no key leaves m = -inf, l = 0: it adds nothing.
            if (lid == 0u) {
                scratch[s_base] = select(-inf_f32(), m, any);
                scratch[s_base + 1u] = select(0.0, l, any);
            }
            for (var u = 0u; u < PER_THREAD; u = u + 1u) {
                let t = d0 + lid + u * WG;
                if (t < dv) {
                    scratch[s_base + 2u + t] = select(0.0, acc[u], any);
                }
            }
        } else {
            for (var u = 0u; u < PER_THREAD; u = u + 1u) {
                let t = d0 + lid + u * WG;
                if (t < dv) {
                    o[o_base + t] = select(0.0, acc[u] / l, any);
                }
            }
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= params.rows) {
        return;
    }
    let range = key_range(row % params.seq_q);
    attend(row, range.x, range.y, lid, false, 0u);
}

// Grid: x = the row's chunk, y = the row.
@compute @workgroup_size(WG)
fn split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y;
    if (row >= params.rows) {
        return;
    }
    let range = key_range(row % params.seq_q);
    let lo = min(range.x + wid.x * params.chunk, range.y);
    let hi = min(lo + params.chunk, range.y);
    attend(row, lo, hi, lid, true, wid.x);
}

// A chunk's sum is exactly +0 when it kept no key (and NaN when a score was): a bit test,
// since an ordered comparison with NaN may be compiled away.
fn saw_keys(l: f32) -> bool {
    return bitcast<u32>(l) != 0u;
}

// One workgroup per row: the chunks' maxima to the row's, their sums and accumulators
// rescaled to it, one division. A row no chunk saw a key of is zeros.
@compute @workgroup_size(WG)
fn combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= params.rows) {
        return;
    }
    let dv = params.v_dim;
    let i = row % params.seq_q;
    let bh = row / params.seq_q;
    let o_base = at(params.o_off, params.o_s, bh / params.heads, bh % params.heads, i);
    let base = row * params.splits * (dv + 2u);
    var m = -inf_f32();
    var any = false;
    for (var c = 0u; c < params.splits; c = c + 1u) {
        let at_c = base + c * (dv + 2u);
        if (saw_keys(scratch[at_c + 1u])) {
            m = max(m, scratch[at_c]);
            any = true;
        }
    }
    var l = 0.0;
    for (var c = 0u; c < params.splits; c = c + 1u) {
        let at_c = base + c * (dv + 2u);
        if (saw_keys(scratch[at_c + 1u])) {
            l = l + scratch[at_c + 1u] * exp(scratch[at_c] - m);
        }
    }
    if (DTYPE != DTYPE_F32) {
        // Two elements a thread, one word of O each.
        for (var t = 2u * lid; t < dv; t = t + 2u * WG) {
            var a0 = 0.0;
            var a1 = 0.0;
            for (var c = 0u; c < params.splits; c = c + 1u) {
                let at_c = base + c * (dv + 2u);
                if (saw_keys(scratch[at_c + 1u])) {
                    a0 = a0 + scratch[at_c + 2u + t] * exp(scratch[at_c] - m);
                    a1 = a1 + scratch[at_c + 3u + t] * exp(scratch[at_c] - m);
                }
            }
            let lo = encode_bits(select(0.0, a0 / l, any), DTYPE);
            let hi = encode_bits(select(0.0, a1 / l, any), DTYPE);
            o16[(o_base + t) >> 1u] = lo | (hi << 16u);
        }
        return;
    }
    for (var t = lid; t < dv; t = t + WG) {
        var acc = 0.0;
        for (var c = 0u; c < params.splits; c = c + 1u) {
            let at_c = base + c * (dv + 2u);
            if (saw_keys(scratch[at_c + 1u])) {
                acc = acc + scratch[at_c + 2u + t] * exp(scratch[at_c] - m);
            }
        }
        o[o_base + t] = select(0.0, acc / l, any);
    }
}

override D: u32 = 128u; // 64 or 128: head dims handled (smaller heads are zero-padded)

fn neg_inf() -> f32 {
    return -inf_f32();
}

// ---- `fast` --------------------------------------------------------------------------
// Blocks of 64 query rows x 64 keys, 256 threads. Thread (tr, tc) owns query rows
// 4tr..4tr+3 in both products: in S = Q K^T it computes keys 4tc..4tc+3 of those rows, in
// O += P V output dims tc * DT .. + DT. So the running maximum, sum and rescale factor of
// each of its rows live in its registers; only the per-block row maxima and sums are
// combined across the 16 threads of a row, through workgroup memory. Q and K stream
// through workgroup memory 16 dims at a time (STAGES = 2 prefetches the next chunk while
// computing on this one), then V FV keys at a time; P is staged as [key][row].

override STAGES: u32 = 2u;
override DT: u32 = D / 16u; // output dims per thread: 8 (D = 128) or 4 (D = 64)

const FB: u32 = 64u; // query rows and keys per block
const FC: u32 = 16u; // dims per staged chunk of S
// Keys per staged chunk of V. 32 (where they fit: half the PV barriers) measured the
// same as 16 on the H200.
const FV: u32 = 16u;

// S chunks: Q [stage][dim][16 row-quads] at fqk[0..QK), K [stage][dim][16 key-quads] at
// fqk[QK..2 QK). The V chunk [key][D / 4 dim-quads] reuses the whole array once S is done,
// indexed directly (one array, so no branch on the index). With STAGES = 1 the whole
// kernel needs 28 KiB of workgroup memory, with 2 it needs 36 KiB.
override QK: u32 = 256u * STAGES; // vec4s of each of Q and K
override QK2: u32 = 2u * QK;
var<workgroup> fqk: array<vec4<f32>, QK2>;
var<workgroup> fp: array<vec4<f32>, 1024>; // P [key][16 row-quads]
var<workgroup> fred: array<vec4<f32>, 256>; // [row][4 quads of the 16 partials]

struct Chunk {
    q: vec4<f32>,
    k: vec4<f32>,
}

// Thread t brings 4 consecutive dims (d0 + 4 (t % 4) ..) of query row t / 4 and of key
// t / 4: coalesced 64-byte row segments.
// Q, K and V as vec4s, for VEC_LOADS (head_dim a multiple of 4 and every operand on a
// 16-byte boundary of its binding): one 16-byte load instead of four bounds-checked ones.
@group(0) @binding(5) var<storage, read_write> q4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> k4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> v4: array<vec4<f32>>;
override VEC_LOADS: bool = false;

fn fetch_qk(t: u32, q_base: u32, k_base: u32, q0: u32, j0: u32, d0: u32) -> Chunk {
    var c: Chunk;
    c.q = vec4<f32>(0.0);
    c.k = vec4<f32>(0.0);
    let row = t / 4u;
    let dim = d0 + 4u * (t % 4u);
    let d = params.head_dim;
    let qa = q_base + row * params.q_s.z + dim;
    let ka = k_base + row * params.k_s.z + dim;
    if (VEC_LOADS) {
        if (dim < d) {
            if (q0 + row < params.seq_q) {
                c.q = q4[qa / 4u];
            }
            if (j0 + row < params.seq_kv) {
                c.k = k4[ka / 4u];
            }
        }
        return c;
    }
    for (var e = 0u; e < 4u; e = e + 1u) {
        if (dim + e < d) {
            if (q0 + row < params.seq_q) {
                c.q[e] = q[qa + e];
            }
            if (j0 + row < params.seq_kv) {
                c.k[e] = k[ka + e];
            }
        }
    }
    return c;
}

// Quad e of a V chunk (16 keys from j0 + c0, [key][D / 4 quads]); keys past kv_end and
// dims past v_dim read as zero. `kv_base`: the key/value head's first V element.
fn fetch_v(e: u32, kv_base: u32, j0: u32, c0: u32, kv_end: u32) -> vec4<f32> {
    let d = params.v_dim;
    let key = j0 + c0 + e / (D / 4u);
    let dq = 4u * (e % (D / 4u));
    var val = vec4<f32>(0.0);
    if (key >= kv_end || dq >= d) {
        return val;
    }
    let va = kv_base + key * params.v_s.z + dq;
    if (VEC_LOADS) {
        return v4[va / 4u];
    }
    for (var x = 0u; x < 4u; x = x + 1u) {
        if (dq + x < d) {
            val[x] = v[va + x];
        }
    }
    return val;
}

// Quads of one V chunk: FV keys x D / 4, 512 (D = 128: two per thread) or 256 (one; the
// second of VQuads stays zero). Either fits in fqk, whatever STAGES is.
override V_QUADS: u32 = FV * D / 4u;

struct VQuads {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn fetch_vq(lid: u32, kv_base: u32, j0: u32, c0: u32, kv_end: u32) -> VQuads {
    var p: VQuads;
    p.a = fetch_v(lid, kv_base, j0, c0, kv_end);
    p.b = vec4<f32>(0.0);
    if (V_QUADS > 256u) {
        p.b = fetch_v(lid + 256u, kv_base, j0, c0, kv_end);
    }
    return p;
}

fn put_vq(lid: u32, p: VQuads) {
    fqk[lid] = p.a;
    if (V_QUADS > 256u) {
        fqk[lid + 256u] = p.b;
    }
}

fn store_qk(t: u32, stage: u32, c: Chunk) {
    let row = t / 4u;
    let dq = 4u * (t % 4u);
    let base = stage * 256u;
    for (var e = 0u; e < 4u; e = e + 1u) {
        let at = base + (dq + e) * 16u + row / 4u;
        fqk[at][row % 4u] = c.q[e];
        fqk[QK + at][row % 4u] = c.k[e];
    }
}

// Row r's scores for keys 4tc..4tc+3, scaled, capped and masked (-inf where the row must
// not see the key: outside [lo, lim], past seq_kv, or masked out). `m_row`: the row's
// first mask element.
fn masked(s: vec4<f32>, j0: u32, tc: u32, lo: i32, lim: i32, m_row: u32) -> vec4<f32> {
    let j = vec4<i32>(i32(j0 + 4u * tc)) + vec4<i32>(0, 1, 2, 3);
    let seen = (j <= vec4<i32>(lim)) & (j >= vec4<i32>(lo));
    if ((FEATURES & params.flags & (MASKED | CAPPED)) == 0u) {
        // The plain scores, as one vector select (a uniform branch).
        return select(vec4<f32>(neg_inf()), params.scale * s, seen);
    }
    var out = vec4<f32>(neg_inf());
    for (var e = 0u; e < 4u; e = e + 1u) {
        if (seen[e]) {
            out[e] = score(params.scale * s[e], m_row, u32(j[e]));
        }
    }
    return out;
}

fn hmax(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

// exp(s - m), and -0 for masked keys (even where m is -inf too): the P V loop skips keys
// whose probability has that sign bit, so that they add nothing, not even 0 * NaN.
fn probs(s: vec4<f32>, m: f32) -> vec4<f32> {
    let masked = (bitcast<vec4<u32>>(s) == vec4<u32>(0xff800000u));
    return select(exp(s - vec4<f32>(m)), vec4<f32>(-0.0), masked);
}

fn not_masked(p: vec4<f32>) -> vec4<bool> {
    return bitcast<vec4<u32>>(p) != vec4<u32>(0x80000000u);
}

// The 16 partials of owned row (4 tr + r), combined: the maximum, or the sum.
fn row_max(tr: u32, r: u32) -> f32 {
    let b = (4u * tr + r) * 4u;
    return max(max(hmax(fred[b]), hmax(fred[b + 1u])), max(hmax(fred[b + 2u]), hmax(fred[b + 3u])));
}

fn row_sum(tr: u32, r: u32) -> f32 {
    let b = (4u * tr + r) * 4u;
    let v = (fred[b] + fred[b + 1u]) + (fred[b + 2u] + fred[b + 3u]);
    return (v.x + v.y) + (v.z + v.w);
}

@compute @workgroup_size(256)
fn fast(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.y / params.heads;
    let h = wid.y % params.heads;
    let kvh = h / params.group;
    let q0 = wid.x * FB;
    let q_base = at(params.q_off, params.q_s, b, h, q0);
    let o_base = at(params.o_off, params.o_s, b, h, q0);
    let k_head = at(params.k_off, params.k_s, b, kvh, 0u);
    let kv_base = at(params.v_off, params.v_s, b, kvh, 0u);
    let m_head = params.m_off + b * params.m_s.x + h * params.m_s.y;
    let shift = i32(params.seq_kv) - i32(params.seq_q);
    let tr = lid % 16u;
    let tc = lid / 16u;
    let causal = has(CAUSAL);
    // Everything per owned row (x, y, z, w: rows 4tr .. 4tr + 3) lives in vec4 registers:
    // no arrays, so nothing can spill to local memory.
    let rows = vec4<i32>(i32(q0 + 4u * tr)) + vec4<i32>(0, 1, 2, 3);
    let last_key = vec4<i32>(i32(params.seq_kv) - 1);
    let lim = select(last_key, min(last_key, rows + vec4<i32>(shift)), causal);
    // The window's first key per row (lo <= 0: from the start).
    let lo = select(vec4<i32>(0), lim - vec4<i32>(i32(params.window)) + vec4<i32>(1), has(WINDOWED));
    // Each owned row's first mask element (rows past seq_q, whose scores are never
    // stored, read the last row's, so that every index stays in range).
    let m_rows = vec4<u32>(m_head) + min(vec4<u32>(rows), vec4<u32>(params.seq_q - 1u)) * params.seq_kv;
    var m = vec4<f32>(neg_inf());
    var l = vec4<f32>(0.0);
    // Output accumulators: row r, dim quad u (u = 1 only when D = 128).
    var o00 = vec4<f32>(0.0); var o01 = vec4<f32>(0.0);
    var o10 = vec4<f32>(0.0); var o11 = vec4<f32>(0.0);
    var o20 = vec4<f32>(0.0); var o21 = vec4<f32>(0.0);
    var o30 = vec4<f32>(0.0); var o31 = vec4<f32>(0.0);

    let last_row = min(q0 + FB, params.seq_q) - 1u;
    var kv_end = params.seq_kv;
    if (causal) {
        kv_end = u32(clamp(i32(last_row) + shift + 1, 0, i32(params.seq_kv)));
    }
    // With a window, keys before the block's first row's window are seen by no row. The
    // loop holds barriers, so its bounds are the workgroup's, not this thread's rows'.
    var j_start = 0u;
    if (causal && has(WINDOWED)) {
        j_start = u32(max(i32(q0) + shift - i32(params.window) + 1, 0));
    }
    let chunks = D / FC;
    for (var j0 = j_start; j0 < kv_end; j0 = j0 + FB) {
        let k_base = k_head + j0 * params.k_s.z;
        // ---- S = Q K^T: rows 4tr.., keys 4tc.. ----
        var s0 = vec4<f32>(0.0);
        var s1 = vec4<f32>(0.0);
        var s2 = vec4<f32>(0.0);
        var s3 = vec4<f32>(0.0);
        store_qk(lid, 0u, fetch_qk(lid, q_base, k_base, q0, j0, 0u));
        workgroupBarrier();
        for (var c = 0u; c < chunks; c = c + 1u) {
            let stage = select(0u, c % 2u, STAGES == 2u);
            let more = c + 1u < chunks;
            var next: Chunk;
            if (more) {
                next = fetch_qk(lid, q_base, k_base, q0, j0, (c + 1u) * FC);
            }
            let base = stage * 256u;
            for (var dd = 0u; dd < FC; dd = dd + 1u) {
                let qv = fqk[base + dd * 16u + tr];
                let kv = fqk[QK + base + dd * 16u + tc];
                s0 = fma(vec4<f32>(qv.x), kv, s0);
                s1 = fma(vec4<f32>(qv.y), kv, s1);
                s2 = fma(vec4<f32>(qv.z), kv, s2);
                s3 = fma(vec4<f32>(qv.w), kv, s3);
            }
            if (more) {
                if (STAGES == 1u) {
                    workgroupBarrier();
                }
                store_qk(lid, select(0u, 1u - stage, STAGES == 2u), next);
            }
            workgroupBarrier();
        }
        // V's first chunk loads in flight during the softmax.
        var vnext = fetch_vq(lid, kv_base, j0, 0u, kv_end);
        s0 = masked(s0, j0, tc, lo.x, lim.x, m_rows.x);
        s1 = masked(s1, j0, tc, lo.y, lim.y, m_rows.y);
        s2 = masked(s2, j0, tc, lo.z, lim.z, m_rows.z);
        s3 = masked(s3, j0, tc, lo.w, lim.w, m_rows.w);

        // ---- row maxima across the 16 threads of each row ----
        let slot = tc / 4u;
        let lane = tc % 4u;
        fred[(4u * tr + 0u) * 4u + slot][lane] = hmax(s0);
        fred[(4u * tr + 1u) * 4u + slot][lane] = hmax(s1);
        fred[(4u * tr + 2u) * 4u + slot][lane] = hmax(s2);
        fred[(4u * tr + 3u) * 4u + slot][lane] = hmax(s3);
        workgroupBarrier();
        let m_new = max(m, vec4<f32>(row_max(tr, 0u), row_max(tr, 1u), row_max(tr, 2u), row_max(tr, 3u)));
        workgroupBarrier();

        // ---- P = exp(S - m_new), stored [key][row quad]; row sums ----
        let p0 = probs(s0, m_new.x);
        let p1 = probs(s1, m_new.y);
        let p2 = probs(s2, m_new.z);
        let p3 = probs(s3, m_new.w);
        let pb = 4u * tc * 16u + tr;
        fp[pb] = vec4<f32>(p0.x, p1.x, p2.x, p3.x);
        fp[pb + 16u] = vec4<f32>(p0.y, p1.y, p2.y, p3.y);
        fp[pb + 32u] = vec4<f32>(p0.z, p1.z, p2.z, p3.z);
        fp[pb + 48u] = vec4<f32>(p0.w, p1.w, p2.w, p3.w);
        fred[(4u * tr + 0u) * 4u + slot][lane] = (p0.x + p0.y) + (p0.z + p0.w);
        fred[(4u * tr + 1u) * 4u + slot][lane] = (p1.x + p1.y) + (p1.z + p1.w);
        fred[(4u * tr + 2u) * 4u + slot][lane] = (p2.x + p2.y) + (p2.z + p2.w);
        fred[(4u * tr + 3u) * 4u + slot][lane] = (p3.x + p3.y) + (p3.z + p3.w);
        workgroupBarrier();
        let total = vec4<f32>(row_sum(tr, 0u), row_sum(tr, 1u), row_sum(tr, 2u), row_sum(tr, 3u));
        // exp(-inf - x) is 0; written out because WGSL's exp promises nothing there.
        let none_yet = bitcast<vec4<u32>>(m) == vec4<u32>(0xff800000u);
        let corr = select(exp(m - m_new), vec4<f32>(0.0), none_yet);
        l = l * corr + total;
        m = m_new;
        o00 = o00 * corr.x; o01 = o01 * corr.x;
        o10 = o10 * corr.y; o11 = o11 * corr.y;
        o20 = o20 * corr.z; o21 = o21 * corr.z;
        o30 = o30 * corr.w; o31 = o31 * corr.w;

        // ---- O += P V, FV keys of V at a time (in fqk) ----
        // Where every owned row sees every key of the block, no per-key check is needed;
        // otherwise a masked key (p = 0, but V possibly NaN) must be skipped.
        // A mask can exclude any key; a window the keys before lo.
        let full = !has(MASKED) && (!causal || i32(j0 + FB) - 1 <= lim.x) && i32(j0) >= lo.w;
        // The first V chunk's loads were issued before the softmax work above.
        for (var c0 = 0u; c0 < FB; c0 = c0 + FV) {
            put_vq(lid, vnext);
            workgroupBarrier();
            if (c0 + FV < FB) {
                // Issue the next chunk's loads before multiplying this one.
                vnext = fetch_vq(lid, kv_base, j0, c0 + FV, kv_end);
            }
            if (full) {
                for (var kk = 0u; kk < FV; kk = kk + 1u) {
                    let p4 = fp[(c0 + kk) * 16u + tr];
                    let e0 = kk * (D / 4u) + tc * (DT / 4u);
                    let v0 = fqk[e0];
                    o00 = fma(vec4<f32>(p4.x), v0, o00);
                    o10 = fma(vec4<f32>(p4.y), v0, o10);
                    o20 = fma(vec4<f32>(p4.z), v0, o20);
                    o30 = fma(vec4<f32>(p4.w), v0, o30);
                    if (DT == 8u) {
                        let v1 = fqk[e0 + 1u];
                        o01 = fma(vec4<f32>(p4.x), v1, o01);
                        o11 = fma(vec4<f32>(p4.y), v1, o11);
                        o21 = fma(vec4<f32>(p4.z), v1, o21);
                        o31 = fma(vec4<f32>(p4.w), v1, o31);
                    }
                }
            } else {
                for (var kk = 0u; kk < FV; kk = kk + 1u) {
                    let key = c0 + kk;
                    let p4 = fp[key * 16u + tr];
                    let e0 = kk * (D / 4u) + tc * (DT / 4u);
                    let v0 = fqk[e0];
                    // Masked keys add nothing, not even 0 * NaN.
                    let seen = not_masked(p4);
                    o00 = select(o00, fma(vec4<f32>(p4.x), v0, o00), seen.x);
                    o10 = select(o10, fma(vec4<f32>(p4.y), v0, o10), seen.y);
                    o20 = select(o20, fma(vec4<f32>(p4.z), v0, o20), seen.z);
                    o30 = select(o30, fma(vec4<f32>(p4.w), v0, o30), seen.w);
                    if (DT == 8u) {
                        let v1 = fqk[e0 + 1u];
                        o01 = select(o01, fma(vec4<f32>(p4.x), v1, o01), seen.x);
                        o11 = select(o11, fma(vec4<f32>(p4.y), v1, o11), seen.y);
                        o21 = select(o21, fma(vec4<f32>(p4.z), v1, o21), seen.z);
                        o31 = select(o31, fma(vec4<f32>(p4.w), v1, o31), seen.w);
                    }
                }
            }
            workgroupBarrier();
        }
    }

    // ---- O = acc / l; rows that saw no key output zeros ----
    let inv = select(vec4<f32>(1.0) / l, vec4<f32>(0.0), l == vec4<f32>(0.0));
    store_row(o_base, q0, tr, tc, 0u, o00 * inv.x, o01 * inv.x);
    store_row(o_base, q0, tr, tc, 1u, o10 * inv.y, o11 * inv.y);
    store_row(o_base, q0, tr, tc, 2u, o20 * inv.z, o21 * inv.z);
    store_row(o_base, q0, tr, tc, 3u, o30 * inv.w, o31 * inv.w);
}

fn store_row(o_base: u32, q0: u32, tr: u32, tc: u32, r: u32, a: vec4<f32>, b: vec4<f32>) {
    let row = 4u * tr + r;
    if (q0 + row >= params.seq_q) {
        return;
    }
    let d = params.v_dim;
    let base = o_base + row * params.o_s.z;
    for (var x = 0u; x < 4u; x = x + 1u) {
        let dim = tc * DT + x;
        if (dim < d) {
            o[base + dim] = a[x];
        }
        if (DT == 8u && dim + 4u < d) {
            o[base + dim + 4u] = b[x];
        }
    }
}
