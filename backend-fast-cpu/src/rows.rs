//! Row ops (softmax, log_softmax, layer_norm, rms_norm) over `x[rows x cols]`, rayon over
//! rows. Each row's sums accumulate in f64 in eight independent lanes (a row is small
//! beside the cache, so the extra passes and the wider accumulator cost little next to
//! the memory traffic, and the lanes let the compiler vectorise them); layer and RMS norm
//! apply their scale in f64 with one rounding at the store; softmax's exponentials are
//! the vectorised f32 `exp` of `math.rs` (within 1 ulp), stored and then scaled by the
//! reciprocal of their sum.

use backend_api::RowOp;
use rayon::prelude::*;

use crate::elementwise::nan_max;
use crate::math::exp_f32;
use crate::reduce::sum_row;
use crate::simd::vectorized;

/// Rows per parallel task: about 32768 elements.
fn rows_per_task(cols: usize) -> usize {
    ((1 << 15) / cols.max(1)).max(1)
}

pub(crate) fn rows(
    op: RowOp,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    cols: usize,
    eps: f64,
) {
    if cols == 0 {
        return;
    }
    let per = rows_per_task(cols);
    let body = |(yc, xc): (&mut [f32], &[f32])| {
        vectorized(
            #[inline(always)]
            || {
                for (yr, xr) in yc.chunks_exact_mut(cols).zip(xc.chunks_exact(cols)) {
                    row(op, xr, gamma, beta, yr, eps);
                }
            },
        );
    };
    let n = y.len().min(x.len());
    if n < 2 * per * cols {
        body((&mut y[..n], &x[..n]));
    } else {
        y[..n]
            .par_chunks_mut(per * cols)
            .zip(x[..n].par_chunks(per * cols))
            .for_each(body);
    }
}

#[inline(always)]
fn row(op: RowOp, x: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32], eps: f64) {
    let n = x.len() as f64;
    match op {
        RowOp::Softmax => {
            let (_, sum) = exps(x, y);
            let inv = (1.0 / sum) as f32;
            y.iter_mut().for_each(|o| *o *= inv);
        }
        RowOp::LogSoftmax => {
            let (max, sum) = exps(x, y);
            let log_sum = sum.ln();
            let m = f64::from(max);
            for (o, &v) in y.iter_mut().zip(x) {
                *o = (f64::from(v) - m - log_sum) as f32;
            }
        }
        RowOp::LayerNorm => {
            let mean = sum_row(x, f64::from) / n;
            let var = sum_row(x, |v| (f64::from(v) - mean).powi(2)) / n;
            let inv = 1.0 / (var + eps).sqrt();
            affine(x, gamma, beta, y, |v| (f64::from(v) - mean) * inv);
        }
        RowOp::RmsNorm => {
            let ms = sum_row(x, |v| f64::from(v).powi(2)) / n;
            let inv = 1.0 / (ms + eps).sqrt();
            affine(x, gamma, &[], y, |v| f64::from(v) * inv);
        }
    }
}

/// `y = exp(x - max)` in one vectorised pass: the row's maximum and the exponentials' sum
/// (in f64).
#[inline(always)]
fn exps(x: &[f32], y: &mut [f32]) -> (f32, f64) {
    let max = row_max(x);
    for (o, &v) in y.iter_mut().zip(x) {
        *o = exp_f32(v - max);
    }
    (max, sum_row(y, f64::from))
}

/// `y = f(x) * gamma + beta` in f64, one rounding at the store; an empty `gamma` is 1 and
/// an empty `beta` 0. One loop per case, so that each vectorises.
#[inline(always)]
fn affine(x: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32], f: impl Fn(f32) -> f64) {
    let xy = y.iter_mut().zip(x);
    match (gamma.is_empty(), beta.is_empty()) {
        (true, true) => xy.for_each(|(o, &v)| *o = f(v) as f32),
        (false, true) => xy
            .zip(gamma)
            .for_each(|((o, &v), &g)| *o = (f(v) * f64::from(g)) as f32),
        (true, false) => xy
            .zip(beta)
            .for_each(|((o, &v), &b)| *o = (f(v) + f64::from(b)) as f32),
        (false, false) => {
            xy.zip(gamma).zip(beta).for_each(|(((o, &v), &g), &b)| {
                *o = (f(v) * f64::from(g) + f64::from(b)) as f32;
            });
        }
    }
}

/// The row's maximum (NaN if any element is): 16 lanes of plain `max` with the NaNs
/// counted beside them (a NaN-propagating max in every lane is a longer dependency chain).
#[inline(always)]
pub(crate) fn row_max(x: &[f32]) -> f32 {
    const W: usize = 16;
    let chunks = x.chunks_exact(W);
    let tail = chunks.remainder();
    let mut acc = [f32::NEG_INFINITY; W];
    let mut nans = [0u32; W];
    for c in chunks {
        for ((a, n), &v) in acc.iter_mut().zip(nans.iter_mut()).zip(c) {
            *a = a.max(v);
            *n += u32::from(v.is_nan());
        }
    }
    if nans.iter().any(|&n| n > 0) {
        return f32::NAN;
    }
    acc.into_iter()
        .chain(tail.iter().copied())
        .fold(f32::NEG_INFINITY, nan_max)
}
