// Attention with an online softmax, never materialising the score matrix. Causal masking
// is bottom-right: query i sees keys j <= i + seq_kv - seq_q. Two entry points:
//
// - `main`, any head size: one workgroup per query row walks the visible keys in blocks
//   of 64, keeping the running maximum m, the running sum l and the output accumulator
//   (up to 512 dimensions per pass; wider heads take several passes over the keys).
// - `tiled`, head sizes up to 64 or 128 (override D): one workgroup of 128 threads per
//   block of 32 query rows, looping over blocks of 32 keys: S = Q K^T and O += P V as
//   register-blocked products through workgroup memory, with the softmax statistics per
//   row reduced across the threads that share it. K and V are staged in chunks so the
//   whole footprint stays under 30 KiB (lavapipe allows 32 KiB).

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

// ---- `tiled` -----------------------------------------------------------------------------

override D: u32 = 128u; // 64 or 128: head dims handled (smaller heads are zero-padded)
const TQ: u32 = 32u; // query rows per workgroup
const TKV: u32 = 32u; // keys per block
const KCH: u32 = 64u; // dims of K per staged chunk
const VCH: u32 = 16u; // keys of V per staged chunk (at D = 128; 32 at D = 64)
override DV: u32 = D / 16u; // output dims per thread (8 or 4)

var<workgroup> qs: array<f32, D * TQ>; // [dim][row]
var<workgroup> kvs: array<f32, 2048>; // K chunk [dim][key] or V chunk [key][dim]
var<workgroup> ps: array<f32, TKV * TQ>; // [key][row]
var<workgroup> red: array<f32, TQ * 8u>; // [row][key group] partial maxima, then sums
var<workgroup> row_m: array<f32, TQ>;
var<workgroup> row_l: array<f32, TQ>;
var<workgroup> row_corr: array<f32, TQ>;

fn neg_inf() -> f32 {
    return -inf_f32();
}

@compute @workgroup_size(128)
fn tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let d = params.head_dim;
    let head = wid.y;
    let q0 = wid.x * TQ;
    let q_base = params.q_off + (head * params.seq_q + q0) * d;
    let o_base = params.o_off + (head * params.seq_q + q0) * d;
    let k_base = params.k_off + head * params.seq_kv * d;
    let v_base = params.v_off + head * params.seq_kv * d;
    let shift = i32(params.seq_kv) - i32(params.seq_q);

    // Q block, transposed into [dim][row]; rows past seq_q and dims past d are zero.
    for (var e = lid; e < D * TQ; e = e + 128u) {
        let row = e / D;
        let dim = e % D;
        var v = 0.0;
        if (q0 + row < params.seq_q && dim < d) {
            v = q[q_base + row * d + dim];
        }
        qs[dim * TQ + row] = v;
    }
    if (lid < TQ) {
        row_m[lid] = neg_inf();
        row_l[lid] = 0.0;
    }

    // S mapping: rows 2sr, 2sr + 1; keys 4sk .. 4sk + 3.
    let sr = lid / 8u;
    let sk = lid % 8u;
    // PV mapping: rows 4pr .. 4pr + 3; dims DV pd .. DV pd + DV - 1.
    let pr = lid % 8u;
    let pd = lid / 8u;
    var acc: array<vec4<f32>, 8>; // [row r][dim quad u] at r * 2 + u (u < DV / 4)

    // Keys past the last one any row here may see are never visited.
    let last_row = min(q0 + TQ, params.seq_q) - 1u;
    var kv_end = params.seq_kv;
    if (params.causal != 0u) {
        kv_end = u32(clamp(i32(last_row) + shift + 1, 0, i32(params.seq_kv)));
    }
    workgroupBarrier();

    for (var j0 = 0u; j0 < kv_end; j0 = j0 + TKV) {
        // ---- S = Q K^T for this block (scores in registers) ----
        var s0 = vec4<f32>(0.0);
        var s1 = vec4<f32>(0.0);
        for (var c0 = 0u; c0 < D; c0 = c0 + KCH) {
            for (var e = lid; e < KCH * TKV; e = e + 128u) {
                let key = e / KCH;
                let dim = c0 + e % KCH;
                var v = 0.0;
                if (j0 + key < params.seq_kv && dim < d) {
                    v = k[k_base + (j0 + key) * d + dim];
                }
                kvs[(dim - c0) * TKV + key] = v;
            }
            workgroupBarrier();
            for (var dd = 0u; dd < KCH; dd = dd + 1u) {
                let qa = qs[(c0 + dd) * TQ + 2u * sr];
                let qb = qs[(c0 + dd) * TQ + 2u * sr + 1u];
                let kk = vec4<f32>(kvs[dd * TKV + 4u * sk], kvs[dd * TKV + 4u * sk + 1u],
                                   kvs[dd * TKV + 4u * sk + 2u], kvs[dd * TKV + 4u * sk + 3u]);
                s0 = fma(vec4<f32>(qa), kk, s0);
                s1 = fma(vec4<f32>(qb), kk, s1);
            }
            workgroupBarrier();
        }
        // Scale and mask: keys past seq_kv, or past a row's causal limit, become -inf.
        let ra = q0 + 2u * sr;
        let rb = ra + 1u;
        var lim_a = i32(params.seq_kv) - 1;
        var lim_b = lim_a;
        if (params.causal != 0u) {
            lim_a = min(lim_a, i32(ra) + shift);
            lim_b = min(lim_b, i32(rb) + shift);
        }
        var ma = neg_inf();
        var mb = neg_inf();
        for (var u = 0u; u < 4u; u = u + 1u) {
            let j = i32(j0 + 4u * sk + u);
            s0[u] = select(neg_inf(), params.scale * s0[u], j <= lim_a);
            s1[u] = select(neg_inf(), params.scale * s1[u], j <= lim_b);
            ma = max(ma, s0[u]);
            mb = max(mb, s1[u]);
        }
        red[(2u * sr) * 8u + sk] = ma;
        red[(2u * sr + 1u) * 8u + sk] = mb;
        workgroupBarrier();
        // New row maxima, probabilities, partial sums.
        var new_a = row_m[2u * sr];
        var new_b = row_m[2u * sr + 1u];
        for (var g = 0u; g < 8u; g = g + 1u) {
            new_a = max(new_a, red[(2u * sr) * 8u + g]);
            new_b = max(new_b, red[(2u * sr + 1u) * 8u + g]);
        }
        var sum_a = 0.0;
        var sum_b = 0.0;
        for (var u = 0u; u < 4u; u = u + 1u) {
            // A masked key contributes nothing, even where the row has no key yet (-inf - -inf).
            let pa = select(exp(s0[u] - new_a), 0.0, is_inf(s0[u]) && s0[u] < 0.0);
            let pb = select(exp(s1[u] - new_b), 0.0, is_inf(s1[u]) && s1[u] < 0.0);
            ps[(4u * sk + u) * TQ + 2u * sr] = pa;
            ps[(4u * sk + u) * TQ + 2u * sr + 1u] = pb;
            sum_a = sum_a + pa;
            sum_b = sum_b + pb;
        }
        workgroupBarrier();
        red[(2u * sr) * 8u + sk] = sum_a;
        red[(2u * sr + 1u) * 8u + sk] = sum_b;
        workgroupBarrier();
        if (sk == 0u) {
            for (var h = 0u; h < 2u; h = h + 1u) {
                let row = 2u * sr + h;
                let old_m = row_m[row];
                let new_m = select(new_a, new_b, h == 1u);
                var total = 0.0;
                for (var g = 0u; g < 8u; g = g + 1u) {
                    total = total + red[row * 8u + g];
                }
                let corr = select(exp(old_m - new_m), 0.0, is_inf(old_m) && old_m < 0.0);
                row_corr[row] = corr;
                row_l[row] = row_l[row] * corr + total;
                row_m[row] = new_m;
            }
        }
        workgroupBarrier();

        // ---- O = O * corr + P V ----
        for (var r = 0u; r < 4u; r = r + 1u) {
            let corr = row_corr[4u * pr + r];
            acc[r * 2u] = acc[r * 2u] * corr;
            acc[r * 2u + 1u] = acc[r * 2u + 1u] * corr;
        }
        // Keys a row must not see have p = 0, but their V may hold anything (NaN
        // included) and 0 * NaN is NaN: blocks where some row is masked skip those keys
        // explicitly; fully visible blocks take the unchecked loop.
        let first_lim = select(i32(params.seq_kv) - 1, min(i32(params.seq_kv) - 1, i32(q0) + shift), params.causal != 0u);
        let full = i32(j0 + TKV) - 1 <= first_lim;
        var lim: array<i32, 4>;
        for (var r = 0u; r < 4u; r = r + 1u) {
            let row = q0 + 4u * pr + r;
            lim[r] = i32(params.seq_kv) - 1;
            if (params.causal != 0u) {
                lim[r] = min(lim[r], i32(row) + shift);
            }
        }
        let vch = 2048u / D;
        for (var c0 = 0u; c0 < TKV; c0 = c0 + vch) {
            for (var e = lid; e < vch * D; e = e + 128u) {
                let key = j0 + c0 + e / D;
                let dim = e % D;
                var val = 0.0;
                if (key < kv_end && dim < d) {
                    val = v[v_base + key * d + dim];
                }
                kvs[e] = val;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < vch; kk = kk + 1u) {
                let key = c0 + kk;
                let p4 = vec4<f32>(ps[key * TQ + 4u * pr], ps[key * TQ + 4u * pr + 1u],
                                   ps[key * TQ + 4u * pr + 2u], ps[key * TQ + 4u * pr + 3u]);
                for (var u = 0u; u < DV / 4u; u = u + 1u) {
                    let base = kk * D + DV * pd + 4u * u;
                    let v4 = vec4<f32>(kvs[base], kvs[base + 1u], kvs[base + 2u], kvs[base + 3u]);
                    if (full) {
                        acc[u] = fma(vec4<f32>(p4.x), v4, acc[u]);
                        acc[2u + u] = fma(vec4<f32>(p4.y), v4, acc[2u + u]);
                        acc[4u + u] = fma(vec4<f32>(p4.z), v4, acc[4u + u]);
                        acc[6u + u] = fma(vec4<f32>(p4.w), v4, acc[6u + u]);
                    } else {
                        let j = i32(j0 + key);
                        for (var r = 0u; r < 4u; r = r + 1u) {
                            if (j <= lim[r]) {
                                acc[r * 2u + u] = fma(vec4<f32>(p4[r]), v4, acc[r * 2u + u]);
                            }
                        }
                    }
                }
            }
            workgroupBarrier();
        }
    }

    // O = acc / l; rows that saw no key output zeros.
    for (var r = 0u; r < 4u; r = r + 1u) {
        let row = 4u * pr + r;
        if (q0 + row >= params.seq_q) {
            continue;
        }
        let l = row_l[row];
        let inv = select(1.0 / l, 0.0, l == 0.0);
        for (var u = 0u; u < DV / 4u; u = u + 1u) {
            let out = acc[r * 2u + u] * inv;
            for (var c = 0u; c < 4u; c = c + 1u) {
                let dim = DV * pd + 4u * u + c;
                if (dim < d) {
                    o[o_base + row * d + dim] = out[c];
                }
            }
        }
    }
}
