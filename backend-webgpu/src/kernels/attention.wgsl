// Attention with an online softmax, never materialising the score matrix. Causal masking
// is bottom-right: query i sees keys j <= i + seq_kv - seq_q. Two entry points:
//
// - `main`, any head size: one workgroup per query row walks the visible keys in blocks
//   of 64, keeping the running maximum m, the running sum l and the output accumulator
//   (up to 512 dimensions per pass; wider heads take several passes over the keys).
// - `fast`, head sizes up to 64 or 128 (override D): blocks of 64 query rows x 64 keys,
//   S = Q K^T and O += P V as register-blocked products through workgroup memory (see
//   below).

struct Params {
    rows: u32,
    seq_q: u32,
    seq_kv: u32,
    head_dim: u32,
    q_off: u32,
    k_off: u32,
    v_off: u32,
    o_off: u32,
    scale: f32,
    causal: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;

const WG: u32 = 64u;
const PER_THREAD: u32 = 8u;
const PASS_DIMS: u32 = 512u; // WG * PER_THREAD

var<workgroup> scores: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= params.rows) {
        return;
    }
    let d = params.head_dim;
    let i = row % params.seq_q;
    let head = row / params.seq_q;
    var visible = params.seq_kv;
    if (params.causal != 0u) {
        visible = min(params.seq_kv, max(i + params.seq_kv + 1u, params.seq_q) - params.seq_q);
    }
    let q_base = params.q_off + row * d;
    let o_base = params.o_off + row * d;
    let kv_base = head * params.seq_kv * d;
    if (visible == 0u) {
        for (var t = lid; t < d; t = t + WG) {
            o[o_base + t] = 0.0;
        }
        return;
    }
    for (var d0 = 0u; d0 < d; d0 = d0 + PASS_DIMS) {
        var acc: array<f32, PER_THREAD>;
        var m = -inf_f32();
        var l = 0.0;
        for (var j0 = 0u; j0 < visible; j0 = j0 + WG) {
            let j = j0 + lid;
            var s = -inf_f32();
            if (j < visible) {
                var dot = 0.0;
                let kr = params.k_off + kv_base + j * d;
                for (var t = 0u; t < d; t = t + 1u) {
                    dot = dot + q[q_base + t] * k[kr + t];
                }
                s = params.scale * dot;
            }
            scores[lid] = s;
            workgroupBarrier();
            let block = min(WG, visible - j0);
            var mb = m;
            for (var jj = 0u; jj < block; jj = jj + 1u) {
                mb = max(mb, scores[jj]);
            }
            // exp(-inf - finite) is 0; written out because WGSL's exp promises nothing there.
            let corr = select(exp(m - mb), 0.0, is_inf(m) && m < 0.0);
            l = l * corr;
            for (var u = 0u; u < PER_THREAD; u = u + 1u) {
                acc[u] = acc[u] * corr;
            }
            for (var jj = 0u; jj < block; jj = jj + 1u) {
                let p = exp(scores[jj] - mb);
                l = l + p;
                let vr = params.v_off + kv_base + (j0 + jj) * d;
                for (var u = 0u; u < PER_THREAD; u = u + 1u) {
                    let t = d0 + lid + u * WG;
                    if (t < d) {
                        acc[u] = acc[u] + p * v[vr + t];
                    }
                }
            }
            m = mb;
            workgroupBarrier();
        }
        for (var u = 0u; u < PER_THREAD; u = u + 1u) {
            let t = d0 + lid + u * WG;
            if (t < d) {
                o[o_base + t] = acc[u] / l;
            }
        }
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
// computing on this one), then V 16 keys at a time; P is staged as [key][row].

override STAGES: u32 = 2u;
override DT: u32 = D / 16u; // output dims per thread: 8 (D = 128) or 4 (D = 64)

const FB: u32 = 64u; // query rows and keys per block
const FC: u32 = 16u; // dims (S) or keys (PV) per staged chunk

// S chunks: Q [stage][dim][16 row-quads], K [stage][dim][16 key-quads]. The V chunk
// [key][D / 4 dim-quads] reuses the same memory (fq, then fk) once S is done. With
// STAGES = 1 the whole kernel needs 28 KiB of workgroup memory, with 2 it needs 36 KiB.
override QK: u32 = 256u * STAGES; // vec4s of each of fq and fk
var<workgroup> fq: array<vec4<f32>, QK>;
var<workgroup> fk: array<vec4<f32>, QK>;
var<workgroup> fp: array<vec4<f32>, 1024>; // P [key][16 row-quads]
var<workgroup> fred: array<vec4<f32>, 256>; // [row][4 quads of the 16 partials]

struct Chunk {
    q: vec4<f32>,
    k: vec4<f32>,
}

// Thread t brings 4 consecutive dims (d0 + 4 (t % 4) ..) of query row t / 4 and of key
// t / 4: coalesced 64-byte row segments.
fn fetch_qk(t: u32, q_base: u32, k_base: u32, q0: u32, j0: u32, d0: u32) -> Chunk {
    var c: Chunk;
    c.q = vec4<f32>(0.0);
    c.k = vec4<f32>(0.0);
    let row = t / 4u;
    let dim = d0 + 4u * (t % 4u);
    let d = params.head_dim;
    for (var e = 0u; e < 4u; e = e + 1u) {
        if (dim + e < d) {
            if (q0 + row < params.seq_q) {
                c.q[e] = q[q_base + row * d + dim + e];
            }
            if (j0 + row < params.seq_kv) {
                c.k[e] = k[k_base + row * d + dim + e];
            }
        }
    }
    return c;
}

fn store_qk(t: u32, stage: u32, c: Chunk) {
    let row = t / 4u;
    let dq = 4u * (t % 4u);
    let base = stage * 256u;
    for (var e = 0u; e < 4u; e = e + 1u) {
        let at = base + (dq + e) * 16u + row / 4u;
        fq[at][row % 4u] = c.q[e];
        fk[at][row % 4u] = c.k[e];
    }
}

@compute @workgroup_size(256)
fn fast(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let d = params.head_dim;
    let head = wid.y;
    let q0 = wid.x * FB;
    let q_base = params.q_off + (head * params.seq_q + q0) * d;
    let o_base = params.o_off + (head * params.seq_q + q0) * d;
    let kv_base = head * params.seq_kv * d;
    let shift = i32(params.seq_kv) - i32(params.seq_q);
    let tr = lid % 16u;
    let tc = lid / 16u;
    let causal = params.causal != 0u;

    // Per owned row: running max, running sum, visible-key limit.
    var m = vec4<f32>(neg_inf());
    var l = vec4<f32>(0.0);
    var lim: vec4<i32>;
    for (var r = 0u; r < 4u; r = r + 1u) {
        let row = i32(q0 + 4u * tr + r);
        lim[r] = select(i32(params.seq_kv) - 1, min(i32(params.seq_kv) - 1, row + shift), causal);
    }
    var acc: array<vec4<f32>, 8>; // [row r][dim quad u] at 2 r + u, u < DT / 4

    let last_row = min(q0 + FB, params.seq_q) - 1u;
    var kv_end = params.seq_kv;
    if (causal) {
        kv_end = u32(clamp(i32(last_row) + shift + 1, 0, i32(params.seq_kv)));
    }
    let chunks = D / FC;
    for (var j0 = 0u; j0 < kv_end; j0 = j0 + FB) {
        let k_base = params.k_off + kv_base + j0 * d;
        // ---- S = Q K^T: 4 rows x 4 keys per thread ----
        var s: array<vec4<f32>, 4>; // [row r] keys 4tc..4tc+3
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
                let qv = fq[base + dd * 16u + tr];
                let kv = fk[base + dd * 16u + tc];
                s[0] = fma(vec4<f32>(qv.x), kv, s[0]);
                s[1] = fma(vec4<f32>(qv.y), kv, s[1]);
                s[2] = fma(vec4<f32>(qv.z), kv, s[2]);
                s[3] = fma(vec4<f32>(qv.w), kv, s[3]);
            }
            if (more) {
                if (STAGES == 1u) {
                    workgroupBarrier();
                }
                store_qk(lid, select(0u, 1u - stage, STAGES == 2u), next);
            }
            workgroupBarrier();
        }

        // ---- scale, mask, block row maxima ----
        var bmax = vec4<f32>(neg_inf());
        for (var r = 0u; r < 4u; r = r + 1u) {
            for (var u = 0u; u < 4u; u = u + 1u) {
                let j = i32(j0 + 4u * tc + u);
                let v = select(neg_inf(), params.scale * s[r][u], j <= lim[r]);
                s[r][u] = v;
                bmax[r] = max(bmax[r], v);
            }
        }
        // fred[row][quad] holds the 16 partials of a row as 4 vec4s.
        for (var r = 0u; r < 4u; r = r + 1u) {
            fred[(4u * tr + r) * 4u + tc / 4u][tc % 4u] = bmax[r];
        }
        workgroupBarrier();
        var m_new = m;
        for (var r = 0u; r < 4u; r = r + 1u) {
            for (var g = 0u; g < 4u; g = g + 1u) {
                let v = fred[(4u * tr + r) * 4u + g];
                m_new[r] = max(m_new[r], max(max(v.x, v.y), max(v.z, v.w)));
            }
        }
        workgroupBarrier();
        // ---- P = exp(S - m_new) into [key][row], partial sums ----
        var psum = vec4<f32>(0.0);
        var pk: array<vec4<f32>, 4>; // [key u] rows 4tr..4tr+3
        for (var r = 0u; r < 4u; r = r + 1u) {
            for (var u = 0u; u < 4u; u = u + 1u) {
                let v = s[r][u];
                let p = select(exp(v - m_new[r]), 0.0, is_inf(v) && v < 0.0);
                pk[u][r] = p;
                psum[r] = psum[r] + p;
            }
        }
        for (var u = 0u; u < 4u; u = u + 1u) {
            fp[(4u * tc + u) * 16u + tr] = pk[u];
        }
        for (var r = 0u; r < 4u; r = r + 1u) {
            fred[(4u * tr + r) * 4u + tc / 4u][tc % 4u] = psum[r];
        }
        workgroupBarrier();
        for (var r = 0u; r < 4u; r = r + 1u) {
            var total = 0.0;
            for (var g = 0u; g < 4u; g = g + 1u) {
                let v = fred[(4u * tr + r) * 4u + g];
                total = total + (v.x + v.y) + (v.z + v.w);
            }
            let corr = select(exp(m[r] - m_new[r]), 0.0, is_inf(m[r]) && m[r] < 0.0);
            l[r] = l[r] * corr + total;
            acc[2u * r] = acc[2u * r] * corr;
            acc[2u * r + 1u] = acc[2u * r + 1u] * corr;
        }
        m = m_new;

        // ---- O += P V, 16 keys of V at a time (in fq/fk's memory) ----
        // Rows 4tr.. see every key of this block: no per-key check needed.
        let full = !causal || i32(j0 + FB) - 1 <= lim[0];
        for (var c0 = 0u; c0 < FB; c0 = c0 + FC) {
            // V rows j0 + c0 .. + 16 as [key][D / 4 quads]; keys past kv_end read as zero.
            for (var e = lid; e < FC * D / 4u; e = e + 256u) {
                let key = c0 + e / (D / 4u);
                let dq = 4u * (e % (D / 4u));
                var val = vec4<f32>(0.0);
                let kj = j0 + key;
                if (kj < kv_end) {
                    for (var x = 0u; x < 4u; x = x + 1u) {
                        if (dq + x < d) {
                            val[x] = v[params.v_off + kv_base + kj * d + dq + x];
                        }
                    }
                }
                if (e < QK) {
                    fq[e] = val;
                } else {
                    fk[e - QK] = val;
                }
            }
            workgroupBarrier();
            for (var kk = 0u; kk < FC; kk = kk + 1u) {
                let key = c0 + kk;
                let p4 = fp[key * 16u + tr];
                for (var u = 0u; u < DT / 4u; u = u + 1u) {
                    let e = kk * (D / 4u) + tc * (DT / 4u) + u;
                    var vv: vec4<f32>;
                    if (e < QK) {
                        vv = fq[e];
                    } else {
                        vv = fk[e - QK];
                    }
                    if (full) {
                        acc[u] = fma(vec4<f32>(p4.x), vv, acc[u]);
                        acc[2u + u] = fma(vec4<f32>(p4.y), vv, acc[2u + u]);
                        acc[4u + u] = fma(vec4<f32>(p4.z), vv, acc[4u + u]);
                        acc[6u + u] = fma(vec4<f32>(p4.w), vv, acc[6u + u]);
                    } else {
                        // A masked key has p = 0 but its V may be NaN: skip it.
                        let j = i32(j0 + key);
                        for (var r = 0u; r < 4u; r = r + 1u) {
                            if (j <= lim[r]) {
                                acc[2u * r + u] = fma(vec4<f32>(p4[r]), vv, acc[2u * r + u]);
                            }
                        }
                    }
                }
            }
            workgroupBarrier();
        }
    }

    // ---- O = acc / l; rows that saw no key output zeros ----
    for (var r = 0u; r < 4u; r = r + 1u) {
        let row = 4u * tr + r;
        if (q0 + row >= params.seq_q) {
            continue;
        }
        let inv = select(1.0 / l[r], 0.0, l[r] == 0.0);
        for (var u = 0u; u < DT / 4u; u = u + 1u) {
            let out = acc[2u * r + u] * inv;
            for (var x = 0u; x < 4u; x = x + 1u) {
                let dim = tc * DT + 4u * u + x;
                if (dim < d) {
                    o[o_base + row * d + dim] = out[x];
                }
            }
        }
    }
}
