//! f32 gemm on faer's matrix multiply, with BLAS semantics.
//!
//! faer is the safe interface of the gemm crate's author: on x86-64 it dispatches at run
//! time to AVX-512 or AVX2+FMA kernels, and to small-matrix kernels for tiny products,
//! and splits large products over rayon's pool. This module adds what BLAS asks and faer
//! does not do: `beta` other than 0 and 1, and the `alpha == 0` / `k == 0` cases in which
//! A and B are not read.

use backend_api::validate::GemmPlan;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Below this many multiply-adds a product runs on the calling thread.
const PAR_MIN_WORK: usize = 1 << 18;

/// `C = alpha * op(A) * op(B) + beta * C`, column-major, every operand given from its
/// first element with its leading dimension: C is not read when `beta == 0`, A and B are
/// not read when `alpha == 0` or `k == 0`. `par`: may use rayon's pool.
pub fn sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    par: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let c = &mut c[..ldc * (n - 1) + m];
    let reads_ab = alpha != 0.0 && k != 0;
    if !reads_ab || (beta != 0.0 && beta != 1.0) {
        // C = beta * C first (never reading C when beta == 0).
        for col in c.chunks_mut(ldc) {
            let col = &mut col[..m];
            if beta == 0.0 {
                col.fill(0.0);
            } else if beta != 1.0 {
                col.iter_mut().for_each(|x| *x *= beta);
            }
        }
        if !reads_ab {
            return;
        }
    }
    if PLAIN_KERNEL {
        if beta == 0.0 {
            for col in c.chunks_mut(ldc) {
                col[..m].fill(0.0);
            }
        }
        plain::gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, c, ldc);
        return;
    }
    let accum = if beta == 0.0 {
        Accum::Replace
    } else {
        Accum::Add
    };
    let op_a = if trans_a {
        MatRef::from_column_major_slice_with_stride(&a[..lda * (m - 1) + k], k, m, lda).transpose()
    } else {
        MatRef::from_column_major_slice_with_stride(&a[..lda * (k - 1) + m], m, k, lda)
    };
    let op_b = if trans_b {
        MatRef::from_column_major_slice_with_stride(&b[..ldb * (k - 1) + n], n, k, ldb).transpose()
    } else {
        MatRef::from_column_major_slice_with_stride(&b[..ldb * (n - 1) + k], k, n, ldb)
    };
    let dst = MatMut::from_column_major_slice_with_stride_mut(c, m, n, ldc);
    let par = parallelism(par && m * n * k >= PAR_MIN_WORK);
    faer::linalg::matmul::matmul(dst, accum, op_a, op_b, alpha, par);
}

/// On wasm32 faer's f32 kernels are not vectorised (a module built with and without
/// simd128 ran them at the same 6 GFLOP/s in Chromium, where a plain loop reached 10):
/// there the products go to [`plain::gemm`], whose loops the compiler vectorises.
const PLAIN_KERNEL: bool = cfg!(target_arch = "wasm32");

/// faer's parallelism: rayon's pool natively, one thread on wasm32 (faer's pool has no
/// wasm32 port).
#[cfg(not(target_arch = "wasm32"))]
fn parallelism(par: bool) -> Par {
    if par { Par::rayon(0) } else { Par::Seq }
}

#[cfg(target_arch = "wasm32")]
fn parallelism(_par: bool) -> Par {
    Par::Seq
}

/// Every batch of a checked gemm plan; `a`, `b` (f32, widened if need be) and `c` start
/// at the operands' first elements.
pub(crate) fn batched(p: &GemmPlan, a: &[f32], b: &[f32], c: &mut [f32]) {
    let (alpha, beta) = (p.alpha as f32, p.beta as f32);
    let reads_ab = p.reads_ab();
    let one = |i: usize, c: &mut [f32], par: bool| {
        let (a, b) = if reads_ab {
            (&a[i * p.batch.stride_a..], &b[i * p.batch.stride_b..])
        } else {
            (a, b)
        };
        sgemm(
            p.trans_a, p.trans_b, p.m, p.n, p.k, alpha, a, p.lda, b, p.ldb, beta, c, p.ldc, par,
        );
    };
    let count = p.batch.count;
    if count == 1 {
        one(0, c, true);
        return;
    }
    let work = p.m * p.n * p.k.max(1);
    let threads = rayon::current_num_threads();
    if count >= threads && work * count >= PAR_MIN_WORK && work < (1 << 24) {
        // Many small products: one per task, each on one thread. stride_c is at least C's
        // span (checked), so the batches' chunks are disjoint.
        c.par_chunks_mut(p.batch.stride_c)
            .take(count)
            .enumerate()
            .for_each(|(i, c)| one(i, c, false));
    } else {
        for i in 0..count {
            one(i, &mut c[i * p.batch.stride_c..], true);
        }
    }
}

/// A packed, register-blocked f32 gemm in plain Rust: `C += alpha op(A) op(B)` (C
/// column-major, `m x n`, leading dimension `ldc`). Panels of `MR` rows of op(A) and `NR`
/// columns of alpha op(B) are packed per `KC`-long slice of k (zero-padded at the edges);
/// each `MR x NR` tile of C is accumulated in a fixed-size array that the compiler keeps
/// in vector registers (simd128 on wasm32), then added to C. One thread.
pub(crate) mod plain {
    const MR: usize = 8;
    const NR: usize = 4;
    const KC: usize = 256;

    #[expect(clippy::too_many_arguments, reason = "BLAS's arguments")]
    pub(crate) fn gemm(
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        ldc: usize,
    ) {
        let at = |i: usize, p: usize| {
            if trans_a {
                a[i * lda + p]
            } else {
                a[p * lda + i]
            }
        };
        let bt = |p: usize, j: usize| {
            if trans_b {
                b[p * ldb + j]
            } else {
                b[j * ldb + p]
            }
        };
        let (mp, np) = (m.div_ceil(MR), n.div_ceil(NR));
        let mut apack = vec![0.0f32; mp * MR * KC.min(k)];
        let mut bpack = vec![0.0f32; np * NR * KC.min(k)];
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            for (ip, panel) in apack.chunks_exact_mut(kc * MR).take(mp).enumerate() {
                for (p, row) in panel.chunks_exact_mut(MR).enumerate() {
                    for (r, v) in row.iter_mut().enumerate() {
                        let i = ip * MR + r;
                        *v = if i < m { at(i, p0 + p) } else { 0.0 };
                    }
                }
            }
            for (jp, panel) in bpack.chunks_exact_mut(kc * NR).take(np).enumerate() {
                for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                    for (s, v) in row.iter_mut().enumerate() {
                        let j = jp * NR + s;
                        *v = if j < n { alpha * bt(p0 + p, j) } else { 0.0 };
                    }
                }
            }
            for (jp, bpanel) in bpack.chunks_exact(kc * NR).take(np).enumerate() {
                for (ip, apanel) in apack.chunks_exact(kc * MR).take(mp).enumerate() {
                    let acc = tile(apanel, bpanel);
                    for (s, acc_col) in acc.iter().enumerate() {
                        let j = jp * NR + s;
                        if j >= n {
                            break;
                        }
                        let rows = MR.min(m - ip * MR);
                        let col = &mut c[j * ldc + ip * MR..][..rows];
                        for (x, &v) in col.iter_mut().zip(acc_col) {
                            *x += v;
                        }
                    }
                }
            }
        }
    }

    /// One `MR x NR` tile: the sum over the packed slice of outer products.
    #[inline(always)]
    fn tile(apanel: &[f32], bpanel: &[f32]) -> [[f32; MR]; NR] {
        let mut acc = [[0.0f32; MR]; NR];
        for (av, bv) in apanel.chunks_exact(MR).zip(bpanel.chunks_exact(NR)) {
            let av: &[f32; MR] = av.try_into().expect("MR values");
            let bv: &[f32; NR] = bv.try_into().expect("NR values");
            for (acc_col, &bs) in acc.iter_mut().zip(bv) {
                for (x, &ar) in acc_col.iter_mut().zip(av) {
                    *x += ar * bs;
                }
            }
        }
        acc
    }

    #[cfg(test)]
    mod tests {
        /// Against f64 triple loops: every transpose, edges of MR, NR and KC, padded
        /// leading dimensions, C accumulated onto.
        #[test]
        fn plain_gemm_matches_f64_loops() {
            let val = |i: usize| ((i * 7919 % 613) as f32) / 613.0 - 0.5;
            for &(m, n, k) in &[
                (1, 1, 1),
                (7, 5, 3),
                (8, 4, 256),
                (9, 5, 257),
                (33, 17, 600),
                (3, 40, 1),
            ] {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let (lda, ldb, ldc) = (
                        if ta { k } else { m } + 2,
                        if tb { n } else { k } + 1,
                        m + 3,
                    );
                    let a: Vec<f32> = (0..lda * if ta { m } else { k }).map(val).collect();
                    let b: Vec<f32> = (0..ldb * if tb { k } else { n })
                        .map(|i| val(i + 5))
                        .collect();
                    let mut c: Vec<f32> = (0..ldc * n).map(|i| val(i + 11)).collect();
                    let c0 = c.clone();
                    super::gemm(ta, tb, m, n, k, 1.5, &a, lda, &b, ldb, &mut c, ldc);
                    for j in 0..n {
                        for i in 0..m {
                            let dot: f64 = (0..k)
                                .map(|p| {
                                    let x = if ta { a[i * lda + p] } else { a[p * lda + i] };
                                    let y = if tb { b[p * ldb + j] } else { b[j * ldb + p] };
                                    f64::from(x) * f64::from(y)
                                })
                                .sum();
                            let want = f64::from(c0[j * ldc + i]) + 1.5 * dot;
                            let got = f64::from(c[j * ldc + i]);
                            assert!(
                                (got - want).abs() <= 1e-5 * (1.0 + k as f64),
                                "{m}x{n}x{k} {ta} {tb} C[{i},{j}]: {got} vs {want}"
                            );
                        }
                        // Rows past m in C's padding are untouched.
                        for i in m..ldc.min(c.len() - j * ldc) {
                            assert_eq!(c[j * ldc + i], c0[j * ldc + i]);
                        }
                    }
                }
            }
        }
    }
}
