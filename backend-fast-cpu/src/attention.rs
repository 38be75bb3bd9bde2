//! Fused, blocked attention with an online softmax (FlashAttention's recurrence on a CPU).
//!
//! Per (batch, query head) and block of `QB` queries, the keys are visited in blocks of
//! `KB`: the block's scores `K_blk Q_blk^T` come from one small gemm into a `KB x QB`
//! buffer (rows read in place through their strides, K/V from the query head's key/value
//! head), each query row keeps its running maximum `m` and denominator `l`, the output
//! rows are rescaled by `exp(m_old - m_new)` and `V_blk^T P` is added with a second gemm.
//! Nothing of size `seq_q x seq_kv` is ever held. (batch, head, query block) tasks run on
//! rayon, each into its own rows, which are then written through O's strides.
//!
//! NaN and infinities follow the oracle, which subtracts the true row maximum: a NaN or
//! `+inf` score makes the row NaN, a row whose scores are all `-inf` is NaN (`0 / 0`), and
//! a block whose scores are all `-inf` adds nothing (the offset is taken as 0 while the
//! running maximum is `-inf`, so no `-inf - -inf` appears). Excluded keys (past the causal
//! frontier, before the window, or with a `-inf` mask entry) are not read at all, and a
//! row that sees no key is zero.

use backend_api::validate::AttentionPlan;
use rayon::prelude::*;

use crate::elementwise::nan_max;
use crate::gemm::sgemm;
use crate::math::exp_f32;
use crate::reduce::sum_row;
use crate::rows::row_max;
use crate::simd::vectorized;

/// Queries per block.
const QB: usize = 64;
/// Keys per block.
const KB: usize = 128;

/// The operands of one call, each slice starting at its operand.
pub(crate) struct Operands<'a> {
    pub(crate) q: &'a [f32],
    pub(crate) k: &'a [f32],
    pub(crate) v: &'a [f32],
    pub(crate) mask: &'a [f32],
}

pub(crate) fn attention(p: &AttentionPlan, ins: &Operands<'_>, o: &mut [f32]) {
    let dv = p.v_head_dim;
    if dv == 0 {
        return;
    }
    let blocks = p.seq_q.div_ceil(QB);
    let tasks: Vec<(usize, usize, usize)> = (0..p.batch)
        .flat_map(|b| (0..p.heads).flat_map(move |h| (0..blocks).map(move |blk| (b, h, blk))))
        .collect();
    let outs: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(b, h, blk)| {
            let i0 = blk * QB;
            let rows = QB.min(p.seq_q - i0);
            let mut out = vec![0.0f32; rows * dv];
            if p.seq_kv > 0 {
                vectorized(
                    #[inline(always)]
                    || block(p, ins, b, h, i0, rows, &mut out),
                );
            }
            out
        })
        .collect();
    for (&(b, h, blk), out) in tasks.iter().zip(&outs) {
        for (r, row) in out.chunks(dv).enumerate() {
            let at = AttentionPlan::at(p.o_strides, b, h, blk * QB + r);
            o[at..][..dv].copy_from_slice(row);
        }
    }
}

/// One block of `rows` queries of head `h` of batch entry `b`, starting at query `i0`;
/// `out` is their contiguous output rows.
#[inline(always)]
fn block(
    p: &AttentionPlan,
    ins: &Operands<'_>,
    b: usize,
    h: usize,
    i0: usize,
    rows: usize,
    out: &mut [f32],
) {
    let (d, dv) = (p.head_dim, p.v_head_dim);
    let kvh = p.kv_head(h);
    let scale = p.scale as f32;
    let softcap = p.softcap.map(|c| c as f32);
    let mut m = vec![f32::NEG_INFINITY; rows];
    let mut l = vec![0.0f32; rows];
    let mut any = vec![false; rows];
    let mut s = vec![0.0f32; KB * rows];
    let mut seen = vec![false; KB * rows];
    // Keys some row of the block may see.
    let first = (0..rows)
        .map(|r| p.visible(i0 + r).start)
        .min()
        .unwrap_or(0);
    let last = (0..rows).map(|r| p.visible(i0 + r).end).max().unwrap_or(0);
    let (q_rs, k_rs, v_rs) = (p.q_strides[2], p.k_strides[2], p.v_strides[2]);
    let mut j0 = first;
    while j0 < last {
        let cols = KB.min(last - j0);
        let v_at = AttentionPlan::at(p.v_strides, b, kvh, j0);
        let v_blk = &ins.v[v_at..];
        // s[r * cols + j] = K_j . Q_r: column-major (cols x rows) = Kc^T Qc, where Kc and
        // Qc are the strided rows read as column-major d x cols and d x rows.
        if d > 0 {
            let q_at = AttentionPlan::at(p.q_strides, b, h, i0);
            let k_at = AttentionPlan::at(p.k_strides, b, kvh, j0);
            sgemm(
                true,
                false,
                cols,
                rows,
                d,
                1.0,
                &ins.k[k_at..],
                k_rs.max(d),
                &ins.q[q_at..],
                q_rs.max(d),
                0.0,
                &mut s[..cols * rows],
                cols,
                false,
            );
        } else {
            s[..cols * rows].fill(0.0);
        }
        let mut excluded = false;
        for r in 0..rows {
            let i = i0 + r;
            let vis = p.visible(i);
            let sr = &mut s[r * cols..][..cols];
            let seen_r = &mut seen[r * cols..][..cols];
            let mask_row = p.mask.map(|_| &ins.mask[p.mask_at(b, h, i) + j0..][..cols]);
            let all_seen =
                mask_row.is_none() && softcap.is_none() && vis.start <= j0 && j0 + cols <= vis.end;
            if all_seen {
                // The common block: every key seen, nothing but the scale (vectorised).
                sr.iter_mut().for_each(|x| *x *= scale);
                seen_r.fill(true);
            } else {
                for (j, (x, sn)) in sr.iter_mut().zip(seen_r.iter_mut()).enumerate() {
                    let mask = mask_row.map_or(0.0, |mr| mr[j]);
                    *sn = vis.contains(&(j0 + j)) && mask != f32::NEG_INFINITY;
                    if !*sn {
                        // -inf: out of the maximum, and 0 once exponentiated.
                        excluded = true;
                        *x = f32::NEG_INFINITY;
                        continue;
                    }
                    let mut v = *x * scale;
                    if let Some(cap) = softcap {
                        v = cap * (v / cap).tanh();
                    }
                    *x = v + mask;
                }
            }
            let mb = row_max(sr);
            any[r] |= seen_r.iter().any(|&x| x);
            let m_new = nan_max(m[r], mb);
            let off = if m_new == f32::NEG_INFINITY {
                0.0
            } else {
                m_new
            };
            let corr = exp_f32(m[r] - off);
            // Unseen keys hold -inf and become 0 (`off` is finite or +inf, never -inf).
            sr.iter_mut().for_each(|x| *x = exp_f32(*x - off));
            l[r] = l[r] * corr + sum_row(sr, f64::from) as f32;
            m[r] = m_new;
            if corr != 1.0 {
                out[r * dv..][..dv].iter_mut().for_each(|x| *x *= corr);
            }
        }
        if excluded {
            // Excluded keys are not read at all (a NaN in V there must not leak in as
            // 0 * NaN).
            for (r, o_row) in out.chunks_mut(dv).enumerate() {
                for j in (0..cols).filter(|&j| seen[r * cols + j]) {
                    let pj = s[r * cols + j];
                    let vj = &v_blk[j * v_rs..][..dv];
                    o_row.iter_mut().zip(vj).for_each(|(o, &x)| *o += pj * x);
                }
            }
        } else {
            // O_r += sum_j P[r, j] V_j: column-major (dv x rows) += Vc (dv x cols) * P.
            sgemm(
                false,
                false,
                dv,
                rows,
                cols,
                1.0,
                v_blk,
                v_rs.max(dv),
                &s[..cols * rows],
                cols,
                1.0,
                out,
                dv,
                false,
            );
        }
        j0 += cols;
    }
    for (r, o_row) in out.chunks_mut(dv).enumerate() {
        if any[r] {
            let inv = l[r];
            o_row.iter_mut().for_each(|x| *x /= inv);
        } else {
            o_row.fill(0.0);
        }
    }
}
