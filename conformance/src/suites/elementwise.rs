//! unary and binary ops against the oracle, including in-place calls.

use backend_api::{BinaryOp, ComputeBackend, UnaryOp, UnaryParamOp};
use backend_cpu::reference;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::Suite;
use crate::data::{NON_FINITE_AND_ZEROS, Rng, from_bytes};
use crate::harness::{Dev, op_failed};
use crate::tolerance::{Closeness, EPS, FTZ, Tol, compare};
use crate::{Check, Profile};

/// 2^-22: the absolute error allowed where a transcendental result crosses zero
/// (tanh, gelu, silu near 0). WGSL only promises absolute accuracy there
/// (e.g. `log` within 2^-21 absolute on [0.5, 2]).
const NEAR_ZERO: f64 = 1.0 / (1u64 << 22) as f64;

/// The contract's relative bound for exp/log-type functions.
const TRANSCENDENTAL: f64 = 1e-5;

/// What every device must meet for `op`, against the f64 oracle.
pub fn unary_tolerance(op: UnaryOp) -> Tol {
    match op {
        // Exact in IEEE arithmetic.
        UnaryOp::Relu
        | UnaryOp::Abs
        | UnaryOp::Neg
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Sign
        | UnaryOp::Round => Tol::EXACT,
        // One correctly rounded multiplication.
        UnaryOp::Square => Tol::ROUNDED,
        // WGSL division: 2.5 ulp.
        UnaryOp::Recip => Tol::rel(4.0 * EPS),
        // 1 + |x| and a division.
        UnaryOp::Softsign => Tol::rel(6.0 * EPS),
        // x + 3 (exact near -3), a product and a division.
        UnaryOp::HardSwish => Tol::rel(8.0 * EPS),
        // Relative accuracy everywhere: polynomials on reduced arguments, log1p/expm1
        // forms where a result goes to 0 (asin/atan/asinh/atanh at 0, acos and acosh at
        // 1), and exp(|x|/2)^2 / 2 where sinh and cosh overflow exp but not f32.
        UnaryOp::Exp
        | UnaryOp::Sqrt
        | UnaryOp::Rsqrt
        | UnaryOp::Sigmoid
        | UnaryOp::Erf
        | UnaryOp::Softplus
        | UnaryOp::Asin
        | UnaryOp::Acos
        | UnaryOp::Atan
        | UnaryOp::Sinh
        | UnaryOp::Cosh
        | UnaryOp::Asinh
        | UnaryOp::Acosh
        | UnaryOp::Atanh => Tol::rel(TRANSCENDENTAL),
        // log(x) crosses zero at 1, where WGSL's own log is only absolutely accurate (2^-21).
        UnaryOp::Log => Tol {
            atol: 2.0 * NEAR_ZERO,
            rtol: TRANSCENDENTAL,
        },
        UnaryOp::Tanh | UnaryOp::Gelu | UnaryOp::Silu | UnaryOp::Mish | UnaryOp::GeluTanh => Tol {
            atol: NEAR_ZERO,
            rtol: TRANSCENDENTAL,
        },
        // Argument reduction for |x| <= 100 leaves ~1 ulp of 1.0 absolute near the zeros.
        // Tan's relative error near a pole p grows as 3e-13 / |x - p| (the reduction's
        // absolute error): the suite keeps its inputs 1e-4 away from the poles.
        UnaryOp::Sin | UnaryOp::Cos | UnaryOp::Tan => Tol {
            atol: 4.0 * NEAR_ZERO,
            rtol: TRANSCENDENTAL,
        },
    }
}

/// What every device must meet for `op`, against the f64 oracle.
pub fn binary_tolerance(op: BinaryOp) -> Tol {
    match op {
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul => Tol::ROUNDED,
        BinaryOp::Max | BinaryOp::Min => Tol::EXACT,
        // WGSL division: 2.5 ulp for divisors in the normal range.
        BinaryOp::Div => Tol::rel(4.0 * EPS),
        BinaryOp::Pow => Tol::rel(TRANSCENDENTAL),
        // fmod is exact (its result is always representable), up to subnormal flushing.
        BinaryOp::Mod => Tol::ROUNDED,
    }
}

/// What every device must meet for `op` with parameters `a`, `b` at input `x`, against
/// the f64 oracle.
pub fn unary_param_tolerance(op: UnaryParamOp, a: f32, b: f32, x: f32) -> Tol {
    let (a, b, x) = (f64::from(a), f64::from(b), f64::from(x));
    match op {
        UnaryParamOp::Clip => Tol::EXACT,
        // One product.
        UnaryParamOp::LeakyRelu => Tol::ROUNDED,
        // a * x + b in f32 cancels where it crosses 0: two roundings of its terms'
        // size, then clamped into [0, 1].
        UnaryParamOp::HardSigmoid => Tol {
            atol: 2.0 * EPS * ((a * x).abs() + b.abs()) + FTZ,
            rtol: 0.0,
        },
        // expm1 (relative accuracy), times one or two parameters; Celu's x / a, and
        // exactly one of its terms is non-zero.
        UnaryParamOp::Elu | UnaryParamOp::Selu | UnaryParamOp::Celu => Tol::rel(TRANSCENDENTAL),
    }
}

/// A magnitude spread log-uniformly over `2^lo .. 2^hi`, with a random sign when `signed`.
fn log_uniform(rng: &mut Rng, lo: f64, hi: f64, signed: bool) -> f32 {
    let m = (lo + (hi - lo) * rng.unit()).exp2();
    (if signed && rng.below(2) == 0 { -m } else { m }) as f32
}

/// A general input: mostly moderate, sometimes of any normal magnitude.
fn general(rng: &mut Rng) -> f32 {
    if rng.below(4) == 0 {
        log_uniform(rng, -60.0, 60.0, true)
    } else {
        rng.uniform(-10.0, 10.0)
    }
}

/// Near 1 from below: `1 - 2^-e` for `e` in 1..24, or a uniform value in [-1, 1].
fn unit_interval(rng: &mut Rng) -> f32 {
    let v = if rng.below(3) == 0 {
        1.0 - log_uniform(rng, -24.0, -1.0, false)
    } else {
        rng.uniform(-1.0, 1.0)
    };
    if rng.below(2) == 0 { -v } else { v }
}

pub(crate) fn unary_input(op: UnaryOp, rng: &mut Rng) -> f32 {
    match op {
        UnaryOp::Tan => loop {
            // 1e-4 away from the poles (see unary_tolerance).
            let x = rng.uniform(-100.0, 100.0);
            if f64::from(x).cos().abs() > 1e-4 {
                break x;
            }
        },
        UnaryOp::Asin | UnaryOp::Acos | UnaryOp::Atanh => {
            if rng.below(8) == 0 {
                rng.uniform(-2.0, 2.0)
            } else if rng.below(4) == 0 {
                log_uniform(rng, -60.0, -1.0, true)
            } else {
                unit_interval(rng)
            }
        }
        UnaryOp::Acosh => match rng.below(4) {
            0 => rng.uniform(0.0, 1.5),
            1 => 1.0 + log_uniform(rng, -23.0, 0.0, false),
            _ => log_uniform(rng, 0.0, 120.0, false),
        },
        UnaryOp::Sinh | UnaryOp::Cosh => {
            if rng.below(4) == 0 {
                log_uniform(rng, -40.0, 0.0, true)
            } else {
                rng.uniform(-90.0, 90.0)
            }
        }
        UnaryOp::Erf | UnaryOp::Softplus | UnaryOp::Mish | UnaryOp::GeluTanh => {
            match rng.below(4) {
                0 => log_uniform(rng, -40.0, 0.0, true),
                1 => rng.uniform(-40.0, 40.0),
                _ => rng.uniform(-6.0, 6.0),
            }
        }
        UnaryOp::HardSwish => {
            if rng.below(2) == 0 {
                rng.uniform(-4.0, 4.0)
            } else {
                general(rng)
            }
        }
        UnaryOp::Round => {
            // Halves (ties to even), and values of every magnitude.
            if rng.below(2) == 0 {
                (rng.below(400) as f32 - 200.0) * 0.5
            } else {
                log_uniform(rng, -2.0, 30.0, true)
            }
        }
        UnaryOp::Atan | UnaryOp::Asinh | UnaryOp::Softsign | UnaryOp::Sign => {
            if rng.below(3) == 0 {
                log_uniform(rng, -100.0, 120.0, true)
            } else {
                general(rng)
            }
        }
        UnaryOp::Exp => rng.uniform(-100.0, 100.0),
        UnaryOp::Sin | UnaryOp::Cos => rng.uniform(-100.0, 100.0),
        UnaryOp::Tanh | UnaryOp::Sigmoid | UnaryOp::Silu | UnaryOp::Gelu => {
            if rng.below(4) == 0 {
                rng.uniform(-0.01, 0.01)
            } else {
                rng.uniform(-20.0, 20.0)
            }
        }
        UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt => match rng.below(4) {
            0 => rng.uniform(0.5, 2.0),
            1 => rng.uniform(-1.0, 4.0),
            _ => log_uniform(rng, -120.0, 120.0, false),
        },
        UnaryOp::Recip => log_uniform(rng, -120.0, 120.0, true),
        UnaryOp::Floor | UnaryOp::Ceil => {
            if rng.below(4) == 0 {
                log_uniform(rng, 0.0, 40.0, true)
            } else {
                rng.uniform(-1e4, 1e4)
            }
        }
        UnaryOp::Relu | UnaryOp::Abs | UnaryOp::Neg | UnaryOp::Square => general(rng),
    }
}

pub(crate) fn binary_inputs(op: BinaryOp, rng: &mut Rng) -> (f32, f32) {
    match op {
        BinaryOp::Div => (general(rng), log_uniform(rng, -100.0, 100.0, true)),
        // Quotients from below 1 to 2^80 (long divisions), subnormal remainders included.
        BinaryOp::Mod => (
            log_uniform(rng, -130.0, 60.0, true),
            log_uniform(rng, -140.0, 20.0, true),
        ),
        BinaryOp::Pow => {
            let base = rng.uniform(-4.0, 4.0);
            // Integer exponents make negative bases meaningful; fractional ones give NaN.
            let exp = if rng.below(2) == 0 {
                (rng.below(17) as f32) - 8.0
            } else {
                rng.uniform(-6.0, 6.0)
            };
            (base, exp)
        }
        _ => (general(rng), general(rng)),
    }
}

/// One unary case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnaryCase {
    /// The function.
    pub op: UnaryOp,
    /// Element count.
    pub n: usize,
    /// Output is the input's exact range.
    pub in_place: bool,
    /// Interior-pointer offsets of input and output, in elements.
    pub offsets: [usize; 2],
    /// NaN, infinities, zeros (and negatives) in the input.
    pub specials: bool,
    /// Seed of the data.
    pub seed: u64,
}

/// How a binary case's operands alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alias {
    /// Three separate ranges.
    None,
    /// `output == a`.
    OutIsA,
    /// `output == b`.
    OutIsB,
    /// `a == b == output`.
    AllSame,
    /// `a == b`, separate output.
    AIsB,
}

/// One binary case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryCase {
    /// The function.
    pub op: BinaryOp,
    /// Element count.
    pub n: usize,
    /// Operand aliasing.
    pub alias: Alias,
    /// Interior-pointer offsets of a, b and output, in elements.
    pub offsets: [usize; 3],
    /// NaN, infinities and zeros (and ±1 for pow) in the inputs.
    pub specials: bool,
    /// Seed of the data.
    pub seed: u64,
}

pub(crate) fn count(p: &Profile) -> impl Strategy<Value = usize> + use<> {
    prop_oneof![2 => 0..=16usize, 3 => 0..=p.elementwise_max]
}

pub(crate) struct UnarySuite;

impl Suite for UnarySuite {
    type Case = UnaryCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<UnaryCase> {
        let op = proptest::sample::select(UnaryOp::ALL);
        (
            op,
            count(p),
            any::<bool>(),
            prop::array::uniform2(0..4usize),
            prop::bool::weighted(0.3),
            any::<u64>(),
        )
            .prop_map(|(op, n, in_place, offsets, specials, seed)| UnaryCase {
                op,
                n,
                in_place,
                offsets,
                specials,
                seed,
            })
            .boxed()
    }

    fn kind(c: &UnaryCase) -> String {
        c.op.name().to_string()
    }

    fn tags(c: &UnaryCase) -> Vec<&'static str> {
        if c.specials {
            vec!["non-finite"]
        } else {
            vec![]
        }
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &UnaryCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let mut x: Vec<f32> = (0..c.n).map(|_| unary_input(c.op, &mut rng)).collect();
        if c.specials {
            rng.inject(&mut x, &NON_FINITE_AND_ZEROS, 0.05);
            rng.sprinkle(&mut x, &[-1.0, -2.5, 1.0], 0.02);
        }
        let want: Vec<f32> = x.iter().map(|&v| reference::unary(c.op, v)).collect();
        let call = |i, o| b.unary(c.op, i, o, c.n);
        let tol = |_| unary_tolerance(c.op);
        let what = format!("unary {}", c.op);
        one_input(
            b, &mut rng, &x, c.in_place, c.offsets, &what, call, &want, tol,
        )
        .await
    }
}

/// Places `x` at `offsets[0]` (and the output in place, or as sentinels at
/// `offsets[1]`), runs `call(input, output)`, and compares the output with `want` under
/// `tol`; the input must be untouched when the call is not in place.
#[expect(
    clippy::too_many_arguments,
    reason = "one case's parts, named at each call"
)]
async fn one_input(
    b: &dyn ComputeBackend,
    rng: &mut Rng,
    x: &[f32],
    in_place: bool,
    offsets: [usize; 2],
    what: &str,
    call: impl FnOnce(u64, u64) -> backend_api::BackendResult<()>,
    want: &[f32],
    tol: impl Fn(usize) -> Tol,
) -> Result<Closeness, String> {
    let mut dev = Dev::new(b);
    let x_dev = dev.put_f32(rng, x, offsets[0], 2)?;
    let out_dev = if in_place {
        x_dev.clone()
    } else {
        let s = rng.sentinels(x.len());
        dev.put_f32(rng, &s, offsets[1], 2)?
    };
    call(x_dev.ptr, out_dev.ptr).map_err(|e| op_failed(what, e))?;
    let got = from_bytes(&dev.output(&out_dev, "output").await?);
    let close = compare(&format!("{what} output"), &got, want, tol)
        .map_err(|m| format!("{m} (input {:e})", x[m.index]))?;
    if !in_place {
        dev.unchanged(&x_dev, "input").await?;
    }
    Ok(close)
}

/// One unary_param case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnaryParamCase {
    /// The function.
    pub op: UnaryParamOp,
    /// Its parameters.
    pub a: f32,
    /// Its parameters.
    pub b: f32,
    /// Element count.
    pub n: usize,
    /// Output is the input's exact range.
    pub in_place: bool,
    /// Interior-pointer offsets of input and output, in elements.
    pub offsets: [usize; 2],
    /// NaN, infinities and zeros (and negatives) in the input.
    pub specials: bool,
    /// Seed of the data.
    pub seed: u64,
}

/// Parameters for `op`: the frameworks' defaults half the time, else random valid ones.
pub(crate) fn param_values(op: UnaryParamOp, rng: &mut Rng) -> (f32, f32) {
    let defaults = rng.below(2) == 0;
    match op {
        UnaryParamOp::LeakyRelu if defaults => (0.01, 0.0),
        UnaryParamOp::LeakyRelu => (rng.uniform(-2.0, 2.0), 0.0),
        UnaryParamOp::Elu if defaults => (1.0, 0.0),
        UnaryParamOp::Elu => (rng.uniform(0.0, 3.0), 0.0),
        UnaryParamOp::Selu if defaults => (1.673_263_2, 1.050_701),
        UnaryParamOp::Selu => (rng.uniform(0.0, 3.0), rng.uniform(-2.0, 2.0)),
        UnaryParamOp::Celu if defaults => (1.0, 0.0),
        UnaryParamOp::Celu => {
            let a = log_uniform(rng, -3.0, 3.0, true);
            (a, 0.0)
        }
        UnaryParamOp::HardSigmoid if defaults => (0.2, 0.5),
        UnaryParamOp::HardSigmoid => (rng.uniform(-1.0, 1.0), rng.uniform(-2.0, 2.0)),
        UnaryParamOp::Clip => {
            let (lo, hi) = (rng.uniform(-10.0, 10.0), rng.uniform(-10.0, 10.0));
            match rng.below(5) {
                0 => (f32::NEG_INFINITY, hi),
                1 => (lo, f32::INFINITY),
                2 => (lo, lo),
                _ => (lo.min(hi), lo.max(hi)),
            }
        }
    }
}

pub(crate) struct UnaryParamSuite;

impl Suite for UnaryParamSuite {
    type Case = UnaryParamCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<UnaryParamCase> {
        let op = proptest::sample::select(UnaryParamOp::ALL);
        (
            op,
            count(p),
            any::<bool>(),
            prop::array::uniform2(0..4usize),
            prop::bool::weighted(0.3),
            any::<u64>(),
        )
            .prop_map(|(op, n, in_place, offsets, specials, seed)| {
                let (a, b) = param_values(op, &mut Rng::new(seed ^ 0x9e37_79b9));
                UnaryParamCase {
                    op,
                    a,
                    b,
                    n,
                    in_place,
                    offsets,
                    specials,
                    seed,
                }
            })
            .boxed()
    }

    fn kind(c: &UnaryParamCase) -> String {
        c.op.name().to_string()
    }

    fn tags(c: &UnaryParamCase) -> Vec<&'static str> {
        if c.specials {
            vec!["non-finite"]
        } else {
            vec![]
        }
    }

    async fn run(
        b: &dyn ComputeBackend,
        _: Check,
        c: &UnaryParamCase,
    ) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let mut x: Vec<f32> = (0..c.n)
            .map(|_| {
                if rng.below(4) == 0 {
                    general(&mut rng)
                } else {
                    rng.uniform(-12.0, 12.0)
                }
            })
            .collect();
        if c.specials {
            rng.inject(&mut x, &NON_FINITE_AND_ZEROS, 0.05);
        }
        let what = format!("unary_param {}({:e}, {:e})", c.op, c.a, c.b);
        let want: Vec<f32> = x
            .iter()
            .map(|&v| reference::unary_param(c.op, c.a, c.b, v))
            .collect();
        let call = |i, o| b.unary_param(c.op, c.a, c.b, i, o, c.n);
        let tol = |i: usize| unary_param_tolerance(c.op, c.a, c.b, x[i]);
        one_input(
            b, &mut rng, &x, c.in_place, c.offsets, &what, call, &want, tol,
        )
        .await
    }
}

pub(crate) struct BinarySuite;

impl Suite for BinarySuite {
    type Case = BinaryCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<BinaryCase> {
        let op = proptest::sample::select(BinaryOp::ALL);
        let alias = prop_oneof![
            4 => Just(Alias::None),
            1 => Just(Alias::OutIsA),
            1 => Just(Alias::OutIsB),
            1 => Just(Alias::AllSame),
            1 => Just(Alias::AIsB),
        ];
        (
            op,
            count(p),
            alias,
            prop::array::uniform3(0..4usize),
            prop::bool::weighted(0.3),
            any::<u64>(),
        )
            .prop_map(|(op, n, alias, offsets, specials, seed)| BinaryCase {
                op,
                n,
                alias,
                offsets,
                specials,
                seed,
            })
            .boxed()
    }

    fn kind(c: &BinaryCase) -> String {
        c.op.name().to_string()
    }

    fn tags(c: &BinaryCase) -> Vec<&'static str> {
        if c.specials {
            vec!["non-finite"]
        } else {
            vec![]
        }
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &BinaryCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let (mut a, mut bv): (Vec<f32>, Vec<f32>) =
            (0..c.n).map(|_| binary_inputs(c.op, &mut rng)).unzip();
        if c.specials {
            for v in [&mut a, &mut bv] {
                rng.inject(v, &NON_FINITE_AND_ZEROS, 0.05);
                rng.sprinkle(v, &[1.0, -1.0, 0.5, 2.0], 0.02);
            }
        }
        if matches!(c.alias, Alias::AllSame | Alias::AIsB) {
            bv = a.clone();
        }
        let mut dev = Dev::new(b);
        let a_dev = dev.put_f32(&mut rng, &a, c.offsets[0], 2)?;
        let b_dev = match c.alias {
            Alias::AllSame | Alias::AIsB => a_dev.clone(),
            _ => dev.put_f32(&mut rng, &bv, c.offsets[1], 2)?,
        };
        let out_dev = match c.alias {
            Alias::OutIsA | Alias::AllSame => a_dev.clone(),
            Alias::OutIsB => b_dev.clone(),
            Alias::None | Alias::AIsB => {
                let s = rng.sentinels(c.n);
                dev.put_f32(&mut rng, &s, c.offsets[2], 2)?
            }
        };
        b.binary(c.op, a_dev.ptr, b_dev.ptr, out_dev.ptr, c.n)
            .map_err(|e| op_failed(&format!("binary {}", c.op), e))?;
        let want: Vec<f32> = a
            .iter()
            .zip(&bv)
            .map(|(&x, &y)| reference::binary(c.op, x, y))
            .collect();
        let got = from_bytes(&dev.output(&out_dev, "output").await?);
        let close = compare(&format!("{} output", c.op), &got, &want, |_| {
            binary_tolerance(c.op)
        })
        .map_err(|m| format!("{m} (inputs {:e}, {:e})", a[m.index], bv[m.index]))?;
        for (r, what) in [(&a_dev, "a"), (&b_dev, "b")] {
            if r.ptr != out_dev.ptr {
                dev.unchanged(r, what).await?;
            }
        }
        Ok(close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_are_not_vacuous() {
        for &op in UnaryOp::ALL {
            let t = unary_tolerance(op);
            assert!(
                t.rtol <= TRANSCENDENTAL && t.atol <= 4.0 * NEAR_ZERO,
                "{op}: {t:?}"
            );
        }
        const { assert!(FTZ < NEAR_ZERO) };
    }
}
