//! Fused, blocked attention with an online softmax (FlashAttention's recurrence on a CPU).
//!
//! Per (batch, head) and block of `QB` queries, the keys are visited in blocks of `KB`: the
//! block's scores `K_blk Q_blk^T` come from one small gemm into a `KB x QB` buffer, each
//! query row keeps its running maximum `m` and denominator `l`, the output rows are
//! rescaled by `exp(m_old - m_new)` and `V_blk^T P` is added with a second gemm. Nothing of
//! size `seq_q x seq_kv` is ever held. (batch, head, query block) tasks run on rayon.
//!
//! NaN and infinities follow the oracle, which subtracts the true row maximum: a NaN or
//! `+inf` score makes the row NaN, a row whose scores are all `-inf` is NaN (`0 / 0`), and
//! a block whose scores are all `-inf` adds nothing (the offset is taken as 0 while the
//! running maximum is `-inf`, so no `-inf - -inf` appears). Causal rows that see no key
//! are zero.

use backend_api::validate::AttentionPlan;
use rayon::prelude::*;

use crate::elementwise::nan_max;
use crate::gemm::sgemm;

/// Queries per block.
const QB: usize = 64;
/// Keys per block.
const KB: usize = 128;

/// Keys query `i` sees: all of them, or with `causal` those `j` with
/// `j + seq_q <= i + seq_kv`.
fn visible(i: usize, seq_q: usize, seq_kv: usize, causal: bool) -> usize {
    if causal {
        (i + seq_kv + 1).saturating_sub(seq_q).min(seq_kv)
    } else {
        seq_kv
    }
}

pub(crate) fn attention(p: &AttentionPlan, q: &[f32], k: &[f32], v: &[f32], o: &mut [f32]) {
    let d = p.head_dim;
    let heads = p.batch * p.heads;
    let o = &mut o[..heads * p.seq_q * d];
    if d == 0 {
        return;
    }
    if p.seq_kv == 0 {
        o.fill(0.0);
        return;
    }
    let scale = p.scale as f32;
    o.par_chunks_mut(p.seq_q * d)
        .enumerate()
        .for_each(|(bh, o_head)| {
            let q_head = &q[bh * p.seq_q * d..][..p.seq_q * d];
            let k_head = &k[bh * p.seq_kv * d..][..p.seq_kv * d];
            let v_head = &v[bh * p.seq_kv * d..][..p.seq_kv * d];
            o_head
                .par_chunks_mut(QB * d)
                .enumerate()
                .for_each(|(blk, o_blk)| {
                    let i0 = blk * QB;
                    let rows = o_blk.len() / d;
                    let q_blk = &q_head[i0 * d..][..rows * d];
                    block(p, scale, i0, rows, q_blk, k_head, v_head, o_blk);
                });
        });
}

/// One block of `rows` queries starting at query `i0`; `o_blk` is their output rows.
fn block(
    p: &AttentionPlan,
    scale: f32,
    i0: usize,
    rows: usize,
    q_blk: &[f32],
    k_head: &[f32],
    v_head: &[f32],
    o_blk: &mut [f32],
) {
    let d = p.head_dim;
    let (seq_q, seq_kv, causal) = (p.seq_q, p.seq_kv, p.causal);
    let last_visible = visible(i0 + rows - 1, seq_q, seq_kv, causal);
    o_blk.fill(0.0);
    let mut m = vec![f32::NEG_INFINITY; rows];
    let mut l = vec![0.0f32; rows];
    let mut s = vec![0.0f32; KB * rows];
    let mut j0 = 0;
    while j0 < last_visible {
        let cols = KB.min(last_visible - j0);
        let k_blk = &k_head[j0 * d..][..cols * d];
        let v_blk = &v_head[j0 * d..][..cols * d];
        // s[i * cols + j] = K_j . Q_i: column-major (cols x rows) = Kc^T Qc, where Kc and Qc
        // are the row-major blocks read as column-major d x cols and d x rows.
        sgemm(
            true,
            false,
            cols,
            rows,
            d,
            1.0,
            k_blk,
            d,
            q_blk,
            d,
            0.0,
            &mut s[..cols * rows],
            cols,
            false,
        );
        for (r, sr) in s[..cols * rows].chunks_mut(cols).enumerate() {
            let vis = visible(i0 + r, seq_q, seq_kv, causal)
                .saturating_sub(j0)
                .min(cols);
            let mut mb = f32::NEG_INFINITY;
            for x in &mut sr[..vis] {
                *x *= scale;
                mb = nan_max(mb, *x);
            }
            let m_new = nan_max(m[r], mb);
            let off = if m_new == f32::NEG_INFINITY {
                0.0
            } else {
                m_new
            };
            let corr = (m[r] - off).exp();
            let mut sum = 0.0f32;
            for x in &mut sr[..vis] {
                *x = (*x - off).exp();
                sum += *x;
            }
            sr[vis..].fill(0.0);
            l[r] = l[r] * corr + sum;
            m[r] = m_new;
            if corr != 1.0 {
                o_blk[r * d..][..d].iter_mut().for_each(|x| *x *= corr);
            }
        }
        let masked = (0..rows).any(|r| visible(i0 + r, seq_q, seq_kv, causal) < j0 + cols);
        if masked {
            // Masked keys are not read at all (a NaN in V there must not leak in as 0 * NaN).
            for (r, out) in o_blk.chunks_mut(d).enumerate() {
                let vis = visible(i0 + r, seq_q, seq_kv, causal)
                    .saturating_sub(j0)
                    .min(cols);
                for (j, &pj) in s[r * cols..][..vis].iter().enumerate() {
                    let vj = &v_blk[j * d..][..d];
                    out.iter_mut().zip(vj).for_each(|(o, &x)| *o += pj * x);
                }
            }
            j0 += cols;
            continue;
        }
        // O_r += sum_j P[r, j] V_j: column-major (d x rows) += Vc (d x cols) * P (cols x rows).
        sgemm(
            false,
            false,
            d,
            rows,
            cols,
            1.0,
            v_blk,
            d,
            &s[..cols * rows],
            cols,
            1.0,
            o_blk,
            d,
            false,
        );
        j0 += cols;
    }
    for (r, out) in o_blk.chunks_mut(d).enumerate() {
        if visible(i0 + r, seq_q, seq_kv, causal) == 0 {
            out.fill(0.0);
        } else {
            let inv = l[r];
            out.iter_mut().for_each(|x| *x /= inv);
        }
    }
}
