//! `binary_broadcast` and `gather`: one pass over the output, row by row of the plan's
//! last merged dimension, so the inner loop is a plain (vectorisable) slice loop against
//! a row or a scalar of each input; large calls split over rayon's pool.

use backend_api::BinaryOp;
use backend_api::validate::{BroadcastPlan, GatherPlan};
use rayon::prelude::*;

use crate::elementwise::{nan_max, nan_min};

/// Elements per parallel task, as in `elementwise`.
const CHUNK: usize = 1 << 15;

/// Where one output row reads an input from.
#[derive(Clone, Copy)]
enum Src<'a> {
    /// The output itself (the op runs in place on this input).
    Out,
    /// A row as long as the output's.
    Row(&'a [f32]),
    /// One value broadcast along the row.
    Scalar(f32),
}

/// `out = f(a, b)` over `p`'s merged shape; an input of `None` is the output's exact
/// range (in place, so not broadcast).
fn rows(
    p: &BroadcastPlan,
    a: Option<&[f32]>,
    b: Option<&[f32]>,
    out: &mut [f32],
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    let last = p.shape[p.rank - 1];
    let (sa, sb) = (p.a_strides[p.rank - 1], p.b_strides[p.rank - 1]);
    fn src(x: Option<&[f32]>, i: usize, stride: usize, last: usize) -> Src<'_> {
        match x {
            None => Src::Out,
            Some(x) if stride == 0 => Src::Scalar(x[i]),
            Some(x) => Src::Row(&x[i..][..last]),
        }
    }
    let body = |(r, o): (usize, &mut [f32])| {
        let (ia, ib) = p.sources(r * last);
        match (src(a, ia, sa, last), src(b, ib, sb, last)) {
            (Src::Row(x), Src::Row(y)) => {
                for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                    *o = f(x, y);
                }
            }
            (Src::Row(x), Src::Scalar(y)) => {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = f(x, y);
                }
            }
            (Src::Scalar(x), Src::Row(y)) => {
                for (o, &y) in o.iter_mut().zip(y) {
                    *o = f(x, y);
                }
            }
            (Src::Scalar(x), Src::Scalar(y)) => o.fill(f(x, y)),
            (Src::Out, Src::Row(y)) => {
                for (o, &y) in o.iter_mut().zip(y) {
                    *o = f(*o, y);
                }
            }
            (Src::Out, Src::Scalar(y)) => o.iter_mut().for_each(|o| *o = f(*o, y)),
            (Src::Row(x), Src::Out) => {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = f(x, *o);
                }
            }
            (Src::Scalar(x), Src::Out) => o.iter_mut().for_each(|o| *o = f(x, *o)),
            (Src::Out, Src::Out) => o.iter_mut().for_each(|o| *o = f(*o, *o)),
        }
    };
    for_rows(out, last, body);
}

/// `body((index, row))` for each row of `len` elements of `out`: on this thread when the
/// call is small, else over rayon's pool in tasks of about [`CHUNK`] elements.
fn for_rows<T: Send>(out: &mut [T], len: usize, body: impl Fn((usize, &mut [T])) + Send + Sync) {
    if out.len() < 2 * CHUNK {
        out.chunks_mut(len).enumerate().for_each(body);
    } else {
        out.par_chunks_mut(len)
            .enumerate()
            .with_min_len(CHUNK.div_ceil(len))
            .for_each(body);
    }
}

/// [`backend_api::ComputeBackend::binary_broadcast`] over checked, resolved operands.
pub(crate) fn binary_broadcast(
    op: BinaryOp,
    p: &BroadcastPlan,
    a: Option<&[f32]>,
    b: Option<&[f32]>,
    out: &mut [f32],
) {
    match op {
        BinaryOp::Add => rows(p, a, b, out, |a, b| a + b),
        BinaryOp::Sub => rows(p, a, b, out, |a, b| a - b),
        BinaryOp::Mul => rows(p, a, b, out, |a, b| a * b),
        BinaryOp::Div => rows(p, a, b, out, |a, b| a / b),
        BinaryOp::Max => rows(p, a, b, out, nan_max),
        BinaryOp::Min => rows(p, a, b, out, nan_min),
        BinaryOp::Pow => rows(p, a, b, out, f32::powf),
        BinaryOp::Mod => rows(p, a, b, out, |a, b| a % b),
    }
}

/// [`backend_api::ComputeBackend::gather`]: `indices` as little-endian u32 bytes.
pub(crate) fn gather(p: &GatherPlan, table: &[f32], indices: &[u8], out: &mut [f32]) {
    let cols = p.cols;
    let body = |(i, o): (usize, &mut [f32])| {
        let t = u32::from_le_bytes(indices[4 * i..][..4].try_into().expect("4 bytes"));
        match usize::try_from(t) {
            Ok(t) if t < p.rows => o.copy_from_slice(&table[t * cols..][..cols]),
            _ => o.fill(0.0),
        }
    };
    for_rows(out, cols, body);
}

/// [`gather`] of rows of `p.dtype` as bytes (exact: no element is converted).
pub(crate) fn gather_bytes(p: &GatherPlan, table: &[u8], indices: &[u8], out: &mut [u8]) {
    let row = p.cols * p.dtype.size_bytes();
    let body = |(i, o): (usize, &mut [u8])| {
        let t = u32::from_le_bytes(indices[4 * i..][..4].try_into().expect("4 bytes"));
        match usize::try_from(t) {
            Ok(t) if t < p.rows => o.copy_from_slice(&table[t * row..][..row]),
            _ => o.fill(0),
        }
    };
    for_rows(out, row, body);
}
