//! f16 and bf16 storage: `unary_ex`, `binary_ex`, `reduce_ex`, `rows_ex` and
//! `unary_param_ex` against the
//! oracle, which computes in f64 and rounds once to the storage type.
//!
//! Besides the ops' usual inputs (rounded to the type), two kinds of data aim at the bugs
//! peers keep shipping: values at the top of the type's range (65504 in f16), whose sums
//! overflow the type while their mean does not, and long rows of ones, whose sum an f16
//! accumulator stops growing at 2048. Operands start at odd elements (mid-word) and end
//! mid-word, and the bytes around every output must keep their values.

use backend_api::{BinaryOp, ComputeBackend, DType, ReduceOp, RowOp, UnaryOp, UnaryParamOp};
use backend_cpu::reference;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::Suite;
use super::elementwise::{
    Alias, binary_inputs, binary_tolerance, count, param_values, unary_input,
    unary_param_tolerance, unary_tolerance,
};
use crate::data::{NON_FINITE_AND_ZEROS, Rng};
use crate::harness::{Dev, Region, op_failed};
use crate::tolerance::{Closeness, Tol, compare, reduce_tolerance, row_tolerance};
use crate::{Check, Profile};

/// The call of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HalfCall {
    /// `unary_ex`, in place or not.
    Unary(UnaryOp, bool),
    /// `binary_ex` with its operands' aliasing.
    Binary(BinaryOp, Alias),
    /// `reduce_ex`.
    Reduce(ReduceOp),
    /// `rows_ex` (`n` split into rows of `shape[0]` columns), in place or not; the
    /// norms with gamma (and beta).
    Rows(RowOp, bool),
    /// `unary_param_ex`, in place or not; the parameters drawn from the seed.
    UnaryParam(UnaryParamOp, bool),
}

/// The data of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HalfData {
    /// The op's usual inputs, rounded to the type.
    Usual,
    /// Magnitudes between half the largest finite value and it.
    Largest,
    /// Ones.
    Ones,
}

/// One f16/bf16 storage case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HalfCase {
    /// The storage type: f16 or bf16.
    pub dtype: DType,
    /// What is called.
    pub call: HalfCall,
    /// Elements of an elementwise call.
    pub n: usize,
    /// The reduce shape and axis.
    pub shape: Vec<usize>,
    /// The reduced axis.
    pub axis: usize,
    /// Interior-pointer offsets of the operands in elements (odd: mid-word).
    pub offsets: [usize; 3],
    /// The data.
    pub data: HalfData,
    /// NaN, infinities and zeros in the inputs.
    pub specials: bool,
    /// Seed of the data.
    pub seed: u64,
}

/// Each output element's bound.
type Bound = Box<dyn Fn(usize) -> Tol>;

/// `v` rounded to `dtype` (to nearest even, overflow to infinity).
fn round16(dtype: DType, v: f32) -> f32 {
    reference::decode(dtype, &reference::encode(dtype, &[v]))[0]
}

fn largest(dtype: DType) -> f32 {
    match dtype {
        DType::F16 => 65504.0,
        DType::BF16 => f32::from_bits(0x7f7f_0000),
        DType::F32 => f32::MAX,
    }
}

pub(crate) struct HalfSuite;

impl Suite for HalfSuite {
    type Case = HalfCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<HalfCase> {
        let dtype = prop_oneof![Just(DType::F16), Just(DType::BF16)];
        let alias = prop_oneof![
            3 => Just(Alias::None),
            1 => Just(Alias::OutIsA),
            1 => Just(Alias::OutIsB),
            1 => Just(Alias::AllSame),
            1 => Just(Alias::AIsB),
        ];
        let call = prop_oneof![
            2 => (proptest::sample::select(UnaryOp::ALL), any::<bool>())
                .prop_map(|(op, in_place)| HalfCall::Unary(op, in_place)),
            2 => (proptest::sample::select(BinaryOp::ALL), alias)
                .prop_map(|(op, a)| HalfCall::Binary(op, a)),
            2 => proptest::sample::select(ReduceOp::ALL).prop_map(HalfCall::Reduce),
            2 => (proptest::sample::select(RowOp::ALL), any::<bool>())
                .prop_map(|(op, in_place)| HalfCall::Rows(op, in_place)),
            1 => (proptest::sample::select(UnaryParamOp::ALL), any::<bool>())
                .prop_map(|(op, in_place)| HalfCall::UnaryParam(op, in_place)),
        ];
        let data = prop_oneof![
            6 => Just(HalfData::Usual),
            1 => Just(HalfData::Largest),
            1 => Just(HalfData::Ones),
        ];
        let side = p.reduce_side;
        let shape = prop_oneof![
            3 => prop::collection::vec(0..=side, 1..=3usize),
            1 => (1..=3usize, 0..=p.reduce_long, 1..=3usize).prop_map(|(a, b, c)| vec![a, b, c]),
        ];
        (
            dtype,
            call,
            count(p),
            (shape, 0..3usize),
            prop::array::uniform3(0..4usize),
            data,
            prop::bool::weighted(0.2),
            any::<u64>(),
        )
            .prop_map(
                |(dtype, call, mut n, (mut shape, axis), mut offsets, data, specials, seed)| {
                    let mut axis = axis % shape.len();
                    if data != HalfData::Ones
                        && matches!(call, HalfCall::Reduce(_))
                        && seed % 4 == 3
                    {
                        // Rows of 72 to 1024 elements in whole 16-byte groups from a
                        // 16-byte boundary, 1 to 19 of them: WebGPU's `rows8h` with
                        // several rows a workgroup, the last workgroup part empty.
                        let rows = 1 + (seed >> 8) as usize % 19;
                        let len = 8 * (9 + (seed >> 16) as usize % 120);
                        (shape, axis) = (vec![rows, len], 1);
                        offsets[0] = 0;
                    }
                    if data == HalfData::Ones && matches!(call, HalfCall::Reduce(_)) {
                        // Sums of 10^5 ones: past 2048, where f16 stops adding 1, and
                        // past 65504 (the f16 result is +inf, the mean 1).
                        (shape, axis) = match seed % 3 {
                            0 => (vec![100_000], 0),
                            1 => (vec![2, 50_000], 1),
                            _ => (vec![40_000, 3], 0),
                        };
                    }
                    if let HalfCall::Rows(..) = call {
                        // Columns: 1 to past a workgroup's 256 threads; n a multiple.
                        let cols = [1, 7, 33, 256, 300][(seed % 5) as usize];
                        (shape, axis) = (vec![cols], 0);
                        n = (n / cols).clamp(1, 6) * cols;
                    }
                    HalfCase {
                        dtype,
                        call,
                        n,
                        shape,
                        axis,
                        offsets,
                        data,
                        specials,
                        seed,
                    }
                },
            )
            .boxed()
    }

    fn kind(c: &HalfCase) -> String {
        let call = match c.call {
            HalfCall::Unary(op, _) => format!("unary {op}"),
            HalfCall::Binary(op, _) => format!("binary {op}"),
            HalfCall::Reduce(op) => format!("reduce {op}"),
            HalfCall::Rows(op, _) => format!("rows {op}"),
            HalfCall::UnaryParam(op, _) => format!("unary_param {op}"),
        };
        format!("{} {call}", c.dtype)
    }

    fn tags(c: &HalfCase) -> Vec<&'static str> {
        let mut t = vec![match c.dtype {
            DType::BF16 => "bf16",
            _ => "f16",
        }];
        if c.specials {
            t.push("non-finite");
        }
        t
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &HalfCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let d = c.dtype;
        let values = match c.call {
            HalfCall::Reduce(_) => c.shape.iter().product::<usize>(),
            _ => c.n,
        };
        let make = |rng: &mut Rng, second: bool| -> Vec<f32> {
            let mut v: Vec<f32> = (0..values)
                .map(|_| match (c.data, c.call) {
                    (HalfData::Ones, _) => 1.0,
                    (HalfData::Largest, HalfCall::Rows(..)) => {
                        // f16's top of range in both types: a norm's squares of bf16's
                        // (3e38) overflow the f32 arithmetic the contract asks for.
                        let m = 65504.0 * rng.uniform(0.5, 1.0);
                        if rng.below(4) == 0 { -m } else { m }
                    }
                    (HalfData::Largest, _) => {
                        let m = largest(d) * rng.uniform(0.5, 1.0);
                        if rng.below(4) == 0 { -m } else { m }
                    }
                    (HalfData::Usual, HalfCall::Unary(op, _)) => unary_input(op, rng),
                    (HalfData::Usual, HalfCall::Binary(op, _)) => {
                        let (x, y) = binary_inputs(op, rng);
                        if second { y } else { x }
                    }
                    (HalfData::Usual, HalfCall::Reduce(ReduceOp::Prod)) => rng.uniform(0.95, 1.05),
                    (HalfData::Usual, HalfCall::Reduce(_)) => rng.uniform(-10.0, 10.0),
                    (HalfData::Usual, HalfCall::Rows(..)) => rng.uniform(-8.0, 8.0),
                    (HalfData::Usual, HalfCall::UnaryParam(..)) => rng.uniform(-12.0, 12.0),
                })
                .map(|v| round16(d, v))
                .collect();
            if c.specials {
                rng.inject(&mut v, &NON_FINITE_AND_ZEROS, 0.05);
            }
            v
        };
        let x = make(&mut rng, false);
        let mut dev = Dev::new(b);
        let put = |dev: &mut Dev<'_>, rng: &mut Rng, v: &[f32], off: usize| {
            dev.put(rng, &reference::encode(d, v), 2 * off, 6)
        };
        let sentinels = |rng: &mut Rng, n: usize| -> Vec<f32> {
            (0..n).map(|_| round16(d, rng.uniform(-1e3, 1e3))).collect()
        };
        let x_dev = put(&mut dev, &mut rng, &x, c.offsets[0])?;
        let what = format!("{} {}", HalfSuite::kind(c), "output");
        let (out_dev, want, tol): (Region, Vec<f64>, Bound) = match c.call {
            HalfCall::Unary(op, in_place) => {
                let out_dev = if in_place {
                    x_dev.clone()
                } else {
                    let s = sentinels(&mut rng, c.n);
                    put(&mut dev, &mut rng, &s, c.offsets[1])?
                };
                b.unary_ex(op, d, x_dev.ptr, out_dev.ptr, c.n)
                    .map_err(|e| op_failed(&format!("unary_ex {op} {d}"), e))?;
                let want = x
                    .iter()
                    .map(|&v| reference::unary64(op, f64::from(v)))
                    .collect();
                let t = unary_tolerance(op).stored(d);
                (out_dev, want, Box::new(move |_| t))
            }
            HalfCall::UnaryParam(op, in_place) => {
                let (pa, pb) = param_values(op, &mut Rng::new(c.seed ^ 0x9e37_79b9));
                let out_dev = if in_place {
                    x_dev.clone()
                } else {
                    let s = sentinels(&mut rng, c.n);
                    put(&mut dev, &mut rng, &s, c.offsets[1])?
                };
                b.unary_param_ex(op, d, pa, pb, x_dev.ptr, out_dev.ptr, c.n)
                    .map_err(|e| op_failed(&format!("unary_param_ex {op} {d}"), e))?;
                let want = x
                    .iter()
                    .map(|&v| reference::unary_param64(op, pa, pb, f64::from(v)))
                    .collect();
                let x2 = x.clone();
                let tol = move |i: usize| unary_param_tolerance(op, pa, pb, x2[i]).stored(d);
                (out_dev, want, Box::new(tol))
            }
            HalfCall::Binary(op, alias) => {
                let y = if matches!(alias, Alias::AllSame | Alias::AIsB) {
                    x.clone()
                } else {
                    make(&mut rng, true)
                };
                let y_dev = match alias {
                    Alias::AllSame | Alias::AIsB => x_dev.clone(),
                    _ => put(&mut dev, &mut rng, &y, c.offsets[1])?,
                };
                let out_dev = match alias {
                    Alias::OutIsA | Alias::AllSame => x_dev.clone(),
                    Alias::OutIsB => y_dev.clone(),
                    Alias::None | Alias::AIsB => {
                        let s = sentinels(&mut rng, c.n);
                        put(&mut dev, &mut rng, &s, c.offsets[2])?
                    }
                };
                b.binary_ex(op, d, x_dev.ptr, y_dev.ptr, out_dev.ptr, c.n)
                    .map_err(|e| op_failed(&format!("binary_ex {op} {d}"), e))?;
                let want = x
                    .iter()
                    .zip(&y)
                    .map(|(&p, &q)| reference::binary64(op, f64::from(p), f64::from(q)))
                    .collect();
                for (r, w) in [(&x_dev, "a"), (&y_dev, "b")] {
                    if r.ptr != out_dev.ptr {
                        dev.unchanged(r, w).await?;
                    }
                }
                let t = binary_tolerance(op).stored(d);
                (out_dev, want, Box::new(move |_| t))
            }
            HalfCall::Reduce(op) => {
                let outer: usize = c.shape[..c.axis].iter().product();
                let len = c.shape[c.axis];
                let inner: usize = c.shape[c.axis + 1..].iter().product();
                let s = sentinels(&mut rng, outer * inner);
                let out_dev = put(&mut dev, &mut rng, &s, c.offsets[1])?;
                b.reduce_ex(op, d, x_dev.ptr, out_dev.ptr, &c.shape, c.axis)
                    .map_err(|e| op_failed(&format!("reduce_ex {op} {d}"), e))?;
                let mut want = vec![0.0; outer * inner];
                reference::reduce64(op, &x, &mut want, outer, len, inner);
                let abs_x: Vec<f32> = x.iter().map(|v| v.abs()).collect();
                let mut abs_sum = vec![0.0; outer * inner];
                reference::reduce64(ReduceOp::Sum, &abs_x, &mut abs_sum, outer, len, inner);
                dev.unchanged(&x_dev, "input").await?;
                (
                    out_dev,
                    want,
                    Box::new(move |i| reduce_tolerance(op, len, abs_sum[i]).stored(d)),
                )
            }
            HalfCall::Rows(op, in_place) => {
                let cols = c.shape[0];
                let norm = matches!(op, RowOp::LayerNorm | RowOp::RmsNorm);
                let params = |rng: &mut Rng| -> Vec<f32> {
                    (0..cols)
                        .map(|_| round16(d, rng.uniform(0.5, 2.0)))
                        .collect()
                };
                let gamma = if norm { params(&mut rng) } else { Vec::new() };
                let beta = if op == RowOp::LayerNorm {
                    params(&mut rng)
                } else {
                    Vec::new()
                };
                let g_dev = (!gamma.is_empty())
                    .then(|| put(&mut dev, &mut rng, &gamma, c.offsets[2]))
                    .transpose()?;
                let bt_dev = (!beta.is_empty())
                    .then(|| put(&mut dev, &mut rng, &beta, c.offsets[2] + 1))
                    .transpose()?;
                let out_dev = if in_place {
                    x_dev.clone()
                } else {
                    let s = sentinels(&mut rng, c.n);
                    put(&mut dev, &mut rng, &s, c.offsets[1])?
                };
                let eps = 1e-5;
                b.rows_ex(
                    op,
                    d,
                    x_dev.ptr,
                    g_dev.as_ref().map(|r| r.ptr),
                    bt_dev.as_ref().map(|r| r.ptr),
                    out_dev.ptr,
                    c.n / cols,
                    cols,
                    eps,
                )
                .map_err(|e| op_failed(&format!("rows_ex {op} {d}"), e))?;
                let mut want = vec![0.0; c.n];
                reference::rows64(op, &x, &gamma, &beta, &mut want, cols, eps);
                for (r, w) in [(&g_dev, "gamma"), (&bt_dev, "beta")] {
                    if let Some(r) = r {
                        dev.unchanged(r, w).await?;
                    }
                }
                let x2 = x.clone();
                let tol = move |i: usize| {
                    let row = &x2[i / cols * cols..][..cols];
                    let g = gamma.get(i % cols).copied().unwrap_or(1.0);
                    let bt = beta.get(i % cols).copied().unwrap_or(0.0);
                    row_tolerance(op, row, x2[i], g, bt, eps).stored(d)
                };
                (out_dev, want, Box::new(tol))
            }
        };
        if let HalfCall::Unary(_, false)
        | HalfCall::Rows(_, false)
        | HalfCall::UnaryParam(_, false) = c.call
        {
            dev.unchanged(&x_dev, "input").await?;
        }
        let got = reference::decode(d, &dev.output(&out_dev, &what).await?);
        let want = reference::decode(d, &reference::encode64(d, &want));
        compare(&what, &got, &want, tol).map_err(|m| {
            let input = x
                .get(m.index)
                .map_or(String::new(), |v| format!(" (input {v:e})"));
            format!("{m}{input}")
        })
    }
}
