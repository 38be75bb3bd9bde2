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
