//! Reductions over one axis of `[outer, len, inner]`.
//!
//! Sum, Mean and Prod accumulate in f64 (the reduction is bound by memory bandwidth, so
//! the wider accumulator costs nothing and matches the oracle closely); Max and Min are
//! exact in f32 and propagate NaN. Contiguous rows (`inner == 1`) use eight independent
//! accumulators, which the compiler keeps in vector registers; otherwise a row of `inner`
//! accumulators is updated by each slice along the axis. Rows split over rayon's pool.

use backend_api::ReduceOp;
use rayon::prelude::*;

use crate::elementwise::{nan_max, nan_min};

/// Input elements per parallel task.
const TASK_ELEMENTS: usize = 1 << 16;

pub(crate) const LANES: usize = 8;

/// What each element adds to a sum-type reduction (Sum, Mean, SumSquare, L1, L2).
#[inline]
fn summand(op: ReduceOp, v: f32) -> f64 {
    let v = f64::from(v);
    match op {
        ReduceOp::SumSquare | ReduceOp::L2 => v * v,
        ReduceOp::L1 => v.abs(),
        _ => v,
    }
}

/// A sum-type reduction's result from its sum over `len` elements.
fn finish_sum(op: ReduceOp, s: f64, len: usize) -> f32 {
    (match op {
        ReduceOp::Mean => s / len as f64,
        ReduceOp::L2 => s.sqrt(),
        _ => s,
    }) as f32
}

/// `f` summed over a contiguous row in f64, with `LANES` independent accumulators.
#[inline(always)]
pub(crate) fn sum_row(x: &[f32], f: impl Fn(f32) -> f64) -> f64 {
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut acc = [0.0f64; LANES];
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let mut s = acc.iter().sum::<f64>() + 0.0;
    for &v in tail {
        s += f(v);
    }
    s
}

/// `max + ln(sum(exp(v - max)))` given the row's NaN-propagating `max`.
fn log_sum_exp(max: f32, sum_exp: impl FnOnce(f64) -> f64) -> f32 {
    if !max.is_finite() {
        return max;
    }
    let m = f64::from(max);
    (m + sum_exp(m).ln()) as f32
}

/// One contiguous row reduced.
fn row(op: ReduceOp, x: &[f32]) -> f32 {
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    match op {
        ReduceOp::Sum | ReduceOp::Mean | ReduceOp::SumSquare | ReduceOp::L1 | ReduceOp::L2 => {
            finish_sum(op, sum_row(x, |v| summand(op, v)), x.len())
        }
        ReduceOp::LogSumExp => log_sum_exp(row(ReduceOp::Max, x), |m| {
            sum_row(x, |v| (f64::from(v) - m).exp())
        }),
        ReduceOp::Prod => {
            let mut acc = [1.0f64; LANES];
            for c in chunks {
                for (a, &v) in acc.iter_mut().zip(c) {
                    *a *= f64::from(v);
                }
            }
            let mut p: f64 = acc.iter().product();
            for &v in tail {
                p *= f64::from(v);
            }
            p as f32
        }
        ReduceOp::Max | ReduceOp::Min => {
            let max = op == ReduceOp::Max;
            let start = if max {
                f32::NEG_INFINITY
            } else {
                f32::INFINITY
            };
            let mut acc = [start; LANES];
            let mut nan = false;
            for c in chunks {
                for (a, &v) in acc.iter_mut().zip(c) {
                    nan |= v.is_nan();
                    *a = if (v > *a) == max && v != *a { v } else { *a };
                }
            }
            let pick = if max { nan_max } else { nan_min };
            let r = acc.iter().chain(tail).copied().fold(start, pick);
            if nan { f32::NAN } else { r }
        }
    }
}

/// `out[j] = op over l of x[l * inner + j]` for one outer index.
fn strided(op: ReduceOp, x: &[f32], len: usize, inner: usize, out: &mut [f32]) {
    match op {
        ReduceOp::Prod => {
            let mut acc = vec![1.0f64; inner];
            for l in 0..len {
                let xs = &x[l * inner..][..inner];
                acc.iter_mut()
                    .zip(xs)
                    .for_each(|(a, &v)| *a *= f64::from(v));
            }
            for (o, a) in out.iter_mut().zip(acc) {
                *o = a as f32;
            }
        }
        ReduceOp::Sum | ReduceOp::Mean | ReduceOp::SumSquare | ReduceOp::L1 | ReduceOp::L2 => {
            let mut acc = vec![0.0f64; inner];
            for l in 0..len {
                let xs = &x[l * inner..][..inner];
                acc.iter_mut()
                    .zip(xs)
                    .for_each(|(a, &v)| *a += summand(op, v));
            }
            for (o, a) in out.iter_mut().zip(acc) {
                *o = finish_sum(op, a, len);
            }
        }
        ReduceOp::LogSumExp => {
            strided(ReduceOp::Max, x, len, inner, out);
            let mut acc = vec![0.0f64; inner];
            for l in 0..len {
                let xs = &x[l * inner..][..inner];
                for ((a, &v), &m) in acc.iter_mut().zip(xs).zip(out.iter()) {
                    *a += (f64::from(v) - f64::from(m)).exp();
                }
            }
            for (o, a) in out.iter_mut().zip(acc) {
                *o = log_sum_exp(*o, |_| a);
            }
        }
        ReduceOp::Max | ReduceOp::Min => {
            let pick = if op == ReduceOp::Max {
                nan_max
            } else {
                nan_min
            };
            let start = if op == ReduceOp::Max {
                f32::NEG_INFINITY
            } else {
                f32::INFINITY
            };
            out.fill(start);
            for l in 0..len {
                let xs = &x[l * inner..][..inner];
                out.iter_mut().zip(xs).for_each(|(o, &v)| *o = pick(*o, v));
            }
        }
    }
}

/// Reduces `input`, viewed as `[outer, len, inner]`, over `len` into `outer * inner`
/// values; an empty axis gives the op's identity (Mean: NaN).
pub(crate) fn reduce(
    op: ReduceOp,
    input: &[f32],
    output: &mut [f32],
    outer: usize,
    len: usize,
    inner: usize,
) {
    let output = &mut output[..outer * inner];
    if len == 0 {
        let v = match op {
            ReduceOp::Sum => 0.0,
            ReduceOp::Prod => 1.0,
            ReduceOp::Max => f32::NEG_INFINITY,
            ReduceOp::Min => f32::INFINITY,
            ReduceOp::Mean => f32::NAN,
            ReduceOp::SumSquare | ReduceOp::L1 | ReduceOp::L2 => 0.0,
            ReduceOp::LogSumExp => f32::NEG_INFINITY,
        };
        output.fill(v);
        return;
    }
    let slab = len * inner;
    let parallel = outer * slab >= 2 * TASK_ELEMENTS;
    if inner == 1 {
        let rows_per_task = (TASK_ELEMENTS / len).max(1);
        let body = |(out, x): (&mut [f32], &[f32])| {
            for (o, r) in out.iter_mut().zip(x.chunks(len)) {
                *o = row(op, r);
            }
        };
        if !parallel {
            body((output, input));
        } else if outer >= 2 * rayon::current_num_threads() || len < TASK_ELEMENTS {
            output
                .par_chunks_mut(rows_per_task)
                .zip(input[..outer * len].par_chunks(rows_per_task * len))
                .for_each(body);
        } else {
            // Few long rows: split each row, then combine the parts' results exactly as
            // one row would (sums and products of parts in f64 would round differently,
            // so long rows reduce through f64 partials).
            for (o, r) in output.iter_mut().zip(input.chunks(len)) {
                *o = long_row(op, r);
            }
        }
    } else {
        let body = |(out, x): (&mut [f32], &[f32])| {
            for (o, xs) in out.chunks_mut(inner).zip(x.chunks(slab)) {
                strided(op, xs, len, inner, o);
            }
        };
        if parallel && outer >= 2 {
            let per_task = (TASK_ELEMENTS / slab).max(1);
            output
                .par_chunks_mut(per_task * inner)
                .zip(input[..outer * slab].par_chunks(per_task * slab))
                .for_each(body);
        } else {
            body((output, input));
        }
    }
}

/// One long row reduced in parallel parts, combined in f64.
fn long_row(op: ReduceOp, x: &[f32]) -> f32 {
    let part = TASK_ELEMENTS;
    match op {
        ReduceOp::Sum | ReduceOp::Mean | ReduceOp::SumSquare | ReduceOp::L1 | ReduceOp::L2 => {
            let s: f64 = x
                .par_chunks(part)
                .map(|c| sum_row(c, |v| summand(op, v)))
                .sum::<f64>()
                + 0.0;
            finish_sum(op, s, x.len())
        }
        ReduceOp::LogSumExp => log_sum_exp(long_row(ReduceOp::Max, x), |m| {
            x.par_chunks(part)
                .map(|c| sum_row(c, |v| (f64::from(v) - m).exp()))
                .sum::<f64>()
        }),
        ReduceOp::Prod => x
            .par_chunks(part)
            .map(|c| c.iter().map(|&v| f64::from(v)).product::<f64>())
            .product::<f64>() as f32,
        ReduceOp::Max => x
            .par_chunks(part)
            .map(|c| row(op, c))
            .reduce(|| f32::NEG_INFINITY, nan_max),
        ReduceOp::Min => x
            .par_chunks(part)
            .map(|c| row(op, c))
            .reduce(|| f32::INFINITY, nan_min),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_and_nan() {
        let mut out = [0.0f32; 1];
        reduce(ReduceOp::Prod, &[], &mut out, 1, 0, 1);
        assert_eq!(out, [1.0]);
        let x = [1.0, 5.0, f32::NAN, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5];
        reduce(ReduceOp::Max, &x, &mut out, 1, x.len(), 1);
        assert!(out[0].is_nan());
        reduce(ReduceOp::Min, &x[3..], &mut out, 1, 7, 1);
        assert_eq!(out, [0.5]);
        reduce(ReduceOp::Max, &x[3..], &mut out, 1, 7, 1);
        assert_eq!(out, [2.0]);
    }

    #[test]
    fn long_rows_and_strided_agree_with_a_plain_loop() {
        let n = 5 * TASK_ELEMENTS + 3;
        let x: Vec<f32> = (0..n).map(|i| ((i % 7) as f32) - 3.0).collect();
        let want: f64 = x.iter().map(|&v| f64::from(v)).sum();
        let mut out = [0.0f32];
        reduce(ReduceOp::Sum, &x, &mut out, 1, n, 1);
        assert_eq!(out[0], want as f32);
        // [2, 3, 2] over axis 1.
        let y = [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0,
        ];
        let mut o = [0.0f32; 4];
        reduce(ReduceOp::Sum, &y, &mut o, 2, 3, 2);
        assert_eq!(o, [9.0, 12.0, 27.0, 30.0]);
        reduce(ReduceOp::Max, &y, &mut o, 2, 3, 2);
        assert_eq!(o, [5.0, 6.0, 11.0, 12.0]);
    }
}
