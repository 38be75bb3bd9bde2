//! Row ops (softmax, log_softmax, layer_norm, rms_norm) over `x[rows x cols]`: each row's
//! statistics in f64, two passes (a row is small beside the cache, so the second pass and
//! the wider accumulator cost little next to the memory traffic), rayon over rows.

use backend_api::RowOp;
use rayon::prelude::*;

use crate::elementwise::nan_max;

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
        for (yr, xr) in yc.chunks_exact_mut(cols).zip(xc.chunks_exact(cols)) {
            row(op, xr, gamma, beta, yr, eps);
        }
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

fn row(op: RowOp, x: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32], eps: f64) {
    let n = x.len() as f64;
    let g = |j: usize| gamma.get(j).map_or(1.0, |&v| f64::from(v));
    let b = |j: usize| beta.get(j).map_or(0.0, |&v| f64::from(v));
    match op {
        RowOp::Softmax | RowOp::LogSoftmax => {
            let max = f64::from(x.iter().copied().fold(f32::NEG_INFINITY, nan_max));
            let sum: f64 = x.iter().map(|&v| (f64::from(v) - max).exp()).sum();
            let log_sum = sum.ln();
            for (o, &v) in y.iter_mut().zip(x) {
                let d = f64::from(v) - max;
                *o = if op == RowOp::Softmax {
                    d.exp() / sum
                } else {
                    d - log_sum
                } as f32;
            }
        }
        RowOp::LayerNorm => {
            let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = x
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            let inv = 1.0 / (var + eps).sqrt();
            for (j, (o, &v)) in y.iter_mut().zip(x).enumerate() {
                *o = ((f64::from(v) - mean) * inv * g(j) + b(j)) as f32;
            }
        }
        RowOp::RmsNorm => {
            let ms = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (ms + eps).sqrt();
            for (j, (o, &v)) in y.iter_mut().zip(x).enumerate() {
                *o = (f64::from(v) * inv * g(j)) as f32;
            }
        }
    }
}
