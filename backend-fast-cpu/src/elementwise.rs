//! Unary, binary and cast: one function per op applied over chunks, so that the simple ops
//! vectorise and large calls split over rayon's pool.

use backend_api::{BinaryOp, DType, UnaryOp, UnaryParamOp};
use half::{bf16, f16};
use rayon::prelude::*;

use crate::math::exp_f32;
use crate::simd::vectorized;

/// Elements per parallel task; below two of them a call runs on the calling thread.
const CHUNK: usize = 1 << 15;

/// Applies `f` to matching chunks of `out` and `x`.
fn map1(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    let body = |(o, x): (&mut [f32], &[f32])| {
        vectorized(
            #[inline(always)]
            || {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = f(x);
                }
            },
        );
    };
    if out.len() < 2 * CHUNK {
        body((out, x));
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(body);
    }
}

fn map1_in_place(y: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    let body = |o: &mut [f32]| {
        vectorized(
            #[inline(always)]
            || o.iter_mut().for_each(|v| *v = f(*v)),
        )
    };
    if y.len() < 2 * CHUNK {
        body(y);
    } else {
        y.par_chunks_mut(CHUNK).for_each(body);
    }
}

fn map2(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    let body = |((o, a), b): ((&mut [f32], &[f32]), &[f32])| {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    };
    if out.len() < 2 * CHUNK {
        body(((out, a), b));
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(body);
    }
}

/// `out = f(out, x)` (`x_first == false`) or `out = f(x, out)`.
fn map2_in_place(y: &mut [f32], x: &[f32], x_first: bool, f: impl Fn(f32, f32) -> f32 + Sync) {
    let body = |(o, x): (&mut [f32], &[f32])| {
        for (o, &x) in o.iter_mut().zip(x) {
            *o = if x_first { f(x, *o) } else { f(*o, x) };
        }
    };
    if y.len() < 2 * CHUNK {
        body((y, x));
    } else {
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(body);
    }
}

fn map_same(y: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    map1_in_place(y, |v| f(v, v));
}

/// Maximum that propagates NaN.
#[inline(always)]
pub(crate) fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a > b {
        a
    } else {
        b
    }
}

/// Minimum that propagates NaN.
#[inline]
pub(crate) fn nan_min(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a < b {
        a
    } else {
        b
    }
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// Gelu in its erf form, written with erfc (full relative accuracy for large negative x).
#[inline]
fn gelu(x: f32) -> f32 {
    0.5 * x * libm::erfcf(-x * std::f32::consts::FRAC_1_SQRT_2)
}

/// `ln(1 + e^x)` without overflow or cancellation.
#[inline]
fn softplus(x: f32) -> f32 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

#[inline]
fn hardswish(x: f32) -> f32 {
    if x <= -3.0 {
        0.0
    } else if x >= 3.0 {
        x
    } else {
        x * (x + 3.0) / 6.0
    }
}

#[inline]
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else if x.is_nan() {
        x
    } else {
        0.0
    }
}

/// GELU's tanh form as `x * sigmoid(2z)` (no cancellation of `1 + tanh(z)`).
#[inline]
fn gelu_tanh(x: f32) -> f32 {
    let z = 0.797_884_6 * (x + 0.044715 * x * x * x);
    x * sigmoid(2.0 * z)
}

#[inline]
fn softsign(x: f32) -> f32 {
    if x.is_infinite() {
        x.signum()
    } else {
        x / (1.0 + x.abs())
    }
}

/// Dispatches on `op` once, then runs `run` with the op's function.
macro_rules! with_unary {
    ($op:expr, $run:ident($($arg:expr),*)) => {
        match $op {
            UnaryOp::Relu => $run($($arg,)* |x: f32| if x.is_nan() || x > 0.0 { x } else { 0.0 }),
            UnaryOp::Sigmoid => $run($($arg,)* sigmoid),
            UnaryOp::Tanh => $run($($arg,)* f32::tanh),
            UnaryOp::Exp => $run($($arg,)* exp_f32),
            UnaryOp::Log => $run($($arg,)* f32::ln),
            UnaryOp::Sqrt => $run($($arg,)* f32::sqrt),
            UnaryOp::Abs => $run($($arg,)* f32::abs),
            UnaryOp::Neg => $run($($arg,)* |x: f32| -x),
            UnaryOp::Gelu => $run($($arg,)* gelu),
            UnaryOp::Silu => $run($($arg,)* |x: f32| x * sigmoid(x)),
            UnaryOp::Recip => $run($($arg,)* |x: f32| 1.0 / x),
            UnaryOp::Rsqrt => $run($($arg,)* |x: f32| 1.0 / x.sqrt()),
            UnaryOp::Square => $run($($arg,)* |x: f32| x * x),
            UnaryOp::Sin => $run($($arg,)* f32::sin),
            UnaryOp::Cos => $run($($arg,)* f32::cos),
            UnaryOp::Floor => $run($($arg,)* f32::floor),
            UnaryOp::Ceil => $run($($arg,)* f32::ceil),
            UnaryOp::Erf => $run($($arg,)* libm::erff),
            UnaryOp::Softplus => $run($($arg,)* softplus),
            UnaryOp::Softsign => $run($($arg,)* softsign),
            UnaryOp::Mish => $run($($arg,)* |x: f32| x * softplus(x).tanh()),
            UnaryOp::HardSwish => $run($($arg,)* hardswish),
            UnaryOp::Tan => $run($($arg,)* f32::tan),
            UnaryOp::Asin => $run($($arg,)* f32::asin),
            UnaryOp::Acos => $run($($arg,)* f32::acos),
            UnaryOp::Atan => $run($($arg,)* f32::atan),
            UnaryOp::Sinh => $run($($arg,)* f32::sinh),
            UnaryOp::Cosh => $run($($arg,)* f32::cosh),
            UnaryOp::Asinh => $run($($arg,)* libm::asinhf),
            UnaryOp::Acosh => $run($($arg,)* libm::acoshf),
            UnaryOp::Atanh => $run($($arg,)* libm::atanhf),
            UnaryOp::Sign => $run($($arg,)* sign),
            UnaryOp::Round => $run($($arg,)* f32::round_ties_even),
            UnaryOp::GeluTanh => $run($($arg,)* gelu_tanh),
        }
    };
}

macro_rules! with_binary {
    ($op:expr, $run:ident($($arg:expr),*)) => {
        match $op {
            BinaryOp::Add => $run($($arg,)* |a: f32, b: f32| a + b),
            BinaryOp::Sub => $run($($arg,)* |a: f32, b: f32| a - b),
            BinaryOp::Mul => $run($($arg,)* |a: f32, b: f32| a * b),
            BinaryOp::Div => $run($($arg,)* |a: f32, b: f32| a / b),
            BinaryOp::Max => $run($($arg,)* nan_max),
            BinaryOp::Min => $run($($arg,)* nan_min),
            BinaryOp::Pow => $run($($arg,)* f32::powf),
            // Rust's `%` is C's fmodf: exact.
            BinaryOp::Mod => $run($($arg,)* |a: f32, b: f32| a % b),
        }
    };
}

/// As `with_unary!` for the parameterised ops, with `a` and `b` captured.
macro_rules! with_unary_param {
    ($op:expr, $a:expr, $b:expr, $run:ident($($arg:expr),*)) => {{
        let (a, b): (f32, f32) = ($a, $b);
        // exp(x) - 1 for the negative branch of the ELU family.
        let elu = move |x: f32| if x > 0.0 { x } else { a * x.exp_m1() };
        match $op {
            UnaryParamOp::LeakyRelu => $run($($arg,)* move |x: f32| if x > 0.0 { x } else { a * x }),
            UnaryParamOp::Elu => $run($($arg,)* elu),
            UnaryParamOp::Selu => $run($($arg,)* move |x: f32| b * elu(x)),
            UnaryParamOp::Celu => $run($($arg,)* move |x: f32| {
                nan_max(0.0, x) + nan_min(0.0, a * (x / a).exp_m1())
            }),
            UnaryParamOp::HardSigmoid => {
                $run($($arg,)* move |x: f32| nan_max(0.0, nan_min(1.0, a * x + b)))
            }
            UnaryParamOp::Clip => $run($($arg,)* move |x: f32| nan_min(nan_max(x, a), b)),
        }
    }};
}

pub(crate) fn unary_param(op: UnaryParamOp, a: f32, b: f32, x: &[f32], out: &mut [f32]) {
    with_unary_param!(op, a, b, map1(x, out))
}

pub(crate) fn unary_param_in_place(op: UnaryParamOp, a: f32, b: f32, y: &mut [f32]) {
    with_unary_param!(op, a, b, map1_in_place(y))
}

pub(crate) fn unary(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    with_unary!(op, map1(x, out))
}

pub(crate) fn unary_in_place(op: UnaryOp, y: &mut [f32]) {
    with_unary!(op, map1_in_place(y))
}

pub(crate) fn binary(op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    with_binary!(op, map2(a, b, out))
}

/// `out = op(out, b)`: the output is `a`.
pub(crate) fn binary_into_a(op: BinaryOp, y: &mut [f32], b: &[f32]) {
    with_binary!(op, map2_in_place(y, b, false))
}

/// `out = op(a, out)`: the output is `b`.
pub(crate) fn binary_into_b(op: BinaryOp, a: &[f32], y: &mut [f32]) {
    with_binary!(op, map2_in_place(y, a, true))
}

/// `out = op(out, out)`: a, b and the output are one range.
pub(crate) fn binary_same(op: BinaryOp, y: &mut [f32]) {
    with_binary!(op, map_same(y))
}

/// `bytes` of `dtype` as f32 (exact).
pub(crate) fn widen(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0.0f32; bytes.len() / dtype_size(dtype)];
    cast(dtype, bytes, DType::F32, bytemuck::cast_slice_mut(&mut out));
    out
}

fn dtype_size(d: DType) -> usize {
    match d {
        DType::F32 => 4,
        DType::F16 | DType::BF16 => 2,
    }
}

/// Converts the elements of `src` (of `from`) into `dst` (of `to`): narrowing rounds to
/// nearest-even, overflows to infinity and keeps NaN; widening is exact.
pub(crate) fn cast(from: DType, src: &[u8], to: DType, dst: &mut [u8]) {
    if from == to || src.is_empty() {
        // (An empty slice may be unaligned: it is never cast.)
        dst.copy_from_slice(src);
        return;
    }
    let n = src.len() / dtype_size(from);
    let (s, d) = (dtype_size(from), dtype_size(to));
    let tasks = n.div_ceil(CHUNK).max(1);
    let body = |(src, dst): (&[u8], &mut [u8])| match (from, to) {
        (DType::F16, DType::F32) => {
            let (s, d): (&[f16], &mut [f32]) =
                (bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst));
            d.iter_mut().zip(s).for_each(|(d, s)| *d = s.to_f32());
        }
        (DType::BF16, DType::F32) => {
            let (s, d): (&[bf16], &mut [f32]) =
                (bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst));
            d.iter_mut().zip(s).for_each(|(d, s)| *d = s.to_f32());
        }
        (DType::F32, DType::F16) => {
            let (s, d): (&[f32], &mut [f16]) =
                (bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst));
            d.iter_mut()
                .zip(s)
                .for_each(|(d, &s)| *d = f16::from_f32(s));
        }
        (DType::F32, DType::BF16) => {
            let (s, d): (&[f32], &mut [bf16]) =
                (bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst));
            d.iter_mut()
                .zip(s)
                .for_each(|(d, &s)| *d = bf16::from_f32(s));
        }
        (DType::F16, DType::BF16) => {
            let (s, d): (&[f16], &mut [bf16]) =
                (bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst));
            d.iter_mut()
                .zip(s)
                .for_each(|(d, s)| *d = bf16::from_f32(s.to_f32()));
        }
        (DType::BF16, DType::F16) => {
            let (s, d): (&[bf16], &mut [f16]) =
                (bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst));
            d.iter_mut()
                .zip(s)
                .for_each(|(d, s)| *d = f16::from_f32(s.to_f32()));
        }
        _ => unreachable!("same dtype handled above"),
    };
    if tasks < 2 {
        body((src, dst));
    } else {
        src.par_chunks(CHUNK * s)
            .zip(dst.par_chunks_mut(CHUNK * d))
            .for_each(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_propagates_through_max_min_and_relu() {
        assert!(nan_max(f32::NAN, 1.0).is_nan() && nan_max(1.0, f32::NAN).is_nan());
        assert!(nan_min(f32::NAN, 1.0).is_nan() && nan_min(1.0, f32::NAN).is_nan());
        let mut y = [f32::NAN, -1.0, 2.0];
        unary_in_place(UnaryOp::Relu, &mut y);
        assert!(y[0].is_nan());
        assert_eq!(&y[1..], [0.0, 2.0]);
    }

    #[test]
    fn large_calls_split_and_match_small_ones() {
        let x: Vec<f32> = (0..3 * CHUNK + 5)
            .map(|i| i as f32 * 0.001 - 40.0)
            .collect();
        let mut big = vec![0.0; x.len()];
        unary(UnaryOp::Tanh, &x, &mut big);
        for (i, (&v, &y)) in x.iter().zip(&big).enumerate() {
            assert_eq!(y, v.tanh(), "element {i}");
        }
    }
}
