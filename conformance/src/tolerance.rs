//! How close a backend's result must be to the oracle's, and a comparison that says why
//! when it is not.
//!
//! A value passes when `|got - want| <= atol + rtol * |want|`, where `want` is the CPU
//! oracle's result (f64 arithmetic rounded once to f32). NaN matches only NaN, an infinity
//! only the same infinity, and a finite `want` never accepts a NaN or infinite `got`.
//!
//! Every bound below says where it comes from. `U` is the f32 unit roundoff 2^-24; the
//! oracle's own rounding contributes at most `U * |want|`, which every rtol here covers.

use std::fmt;

use backend_api::{DType, ReduceOp, RowOp};

/// 2^-23, one f32 ulp at 1.0 (twice the unit roundoff).
pub const EPS: f64 = f32::EPSILON as f64;

/// The smallest normal f32. WGSL and Vulkan let GPUs flush subnormal results to zero, so
/// every bound allows an absolute error of this size.
pub const FTZ: f64 = f32::MIN_POSITIVE as f64;

/// An absolute plus relative error bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tol {
    /// Absolute part.
    pub atol: f64,
    /// Relative part, times `|want|`.
    pub rtol: f64,
}

impl Tol {
    /// Bit-for-bit equal values (NaN matches NaN). For bytes an op must not touch and for
    /// ops that are exact in IEEE arithmetic on every device (abs, neg, floor, relu, ...).
    pub const EXACT: Tol = Tol {
        atol: 0.0,
        rtol: 0.0,
    };

    /// Correctly rounded in f32 (add, sub, mul): the device and the oracle round the same
    /// exact value, so they agree up to subnormal flushing.
    pub const ROUNDED: Tol = Tol {
        atol: FTZ,
        rtol: 0.0,
    };

    /// The given relative bound plus subnormal flushing.
    pub const fn rel(rtol: f64) -> Tol {
        Tol { atol: FTZ, rtol }
    }

    /// The bound for a value computed as a sum of `len` f32 products or terms whose
    /// absolute values sum to `abs_sum`: the classic recursive-summation bound
    /// `|fl(sum) - sum| <= gamma_len * sum|t|` with `gamma_len ~ len * U`, doubled (so `len *
    /// EPS`) for FMA-free products and blocked orders, plus 3 roundings for alpha, beta and
    /// the final store. Any summation order (sequential, blocked, tree) is inside it.
    pub fn dot(len: usize, abs_sum: f64) -> Tol {
        Tol {
            atol: (len as f64 + 3.0) * EPS * abs_sum + FTZ,
            rtol: EPS,
        }
    }

    /// The bound `self` (for a result computed in f32) once the result is stored as
    /// `dtype`: the device rounds its f32 value to `dtype`, the oracle its exact value,
    /// and two values within `self` of each other round at most one spacing of `dtype`
    /// apart (`2u` relative, `u` the unit roundoff: 2^-11 for f16, 2^-8 for bf16, plus the
    /// subnormal spacing). Exact results are exact in `dtype` too (they are one of its
    /// inputs, or an integer of an input's magnitude), so [`EXACT`](Self::EXACT) stays.
    pub fn stored(self, dtype: DType) -> Tol {
        let (u, spacing) = match dtype {
            DType::F32 => return self,
            DType::F16 => (2f64.powi(-11), 2f64.powi(-24)),
            DType::BF16 => (2f64.powi(-8), 2f64.powi(-133)),
        };
        if self == Tol::EXACT {
            return self;
        }
        Tol {
            atol: self.atol * (1.0 + 2.0 * u) + spacing,
            rtol: self.rtol * (1.0 + 2.0 * u) + 2.0 * u,
        }
    }

    /// The largest difference this bound accepts around `want`.
    pub fn bound(&self, want: f64) -> f64 {
        self.atol + self.rtol * want.abs()
    }
}

/// The bound for one output of a row op (`softmax`, `log_softmax`, `layer_norm`,
/// `rms_norm`) of the f32 `row` at element `x`, with that column's `gamma` and `beta`,
/// computed in f32 by any summation order, against the oracle's f64. Derived from the
/// recursive-summation bound of each pass ([`Tol::dot`]): an error `e_m` in the max or
/// mean moves every output, and a relative error in the sum or variance moves the scale.
/// The suite's rows check uses it.
pub fn row_tolerance(op: RowOp, row: &[f32], x: f32, gamma: f32, beta: f32, eps: f64) -> Tol {
    let n = row.len().max(1) as f64;
    let (x, gamma, beta) = (f64::from(x), f64::from(gamma).abs(), f64::from(beta).abs());
    let vals = || row.iter().map(|&v| f64::from(v));
    // The summations' relative error, a few roundings for exp, log, division and sqrt.
    let sum_rel = (n + 3.0) * EPS;
    match op {
        RowOp::Softmax | RowOp::LogSoftmax => {
            let max = vals().fold(f64::NEG_INFINITY, f64::max);
            // exp(x - max): x - max rounds (|x - max| * EPS absolute in the exponent).
            // An infinite x gives an exact 0 (softmax) or -inf (log_softmax).
            let arg = if x.is_finite() {
                (x - max).abs() * EPS
            } else {
                0.0
            } + 4.0 * EPS;
            if op == RowOp::Softmax {
                Tol::rel(arg + sum_rel + 4.0 * EPS)
            } else {
                let sum: f64 = vals().map(|v| (v - max).exp()).sum();
                Tol {
                    atol: arg + sum_rel + 4.0 * EPS * sum.ln().abs() + FTZ,
                    rtol: 2.0 * EPS,
                }
            }
        }
        RowOp::LayerNorm => {
            let abs_sum: f64 = vals().map(f64::abs).sum();
            let mean = vals().sum::<f64>() / n;
            let e_mean = sum_rel * abs_sum / n;
            let sq: f64 = vals().map(|v| (v - mean) * (v - mean)).sum();
            let abs_dev: f64 = vals().map(|v| (v - mean).abs()).sum();
            // Each centred value carries e_mean and a rounding; the squares' sum its own.
            let e_var = (sum_rel * sq + 2.0 * e_mean * abs_dev + n * e_mean * e_mean) / n;
            let var = sq / n + eps;
            let inv = 1.0 / var.sqrt();
            let inv_rel = 0.5 * e_var / var + 4.0 * EPS;
            let d = (x - mean).abs();
            Tol {
                atol: gamma * inv * (e_mean + d * EPS + d * inv_rel) + beta * EPS + FTZ,
                rtol: 3.0 * EPS,
            }
        }
        // inv = 1 / sqrt(mean + eps): half the sum's error and three roundings; two products.
        RowOp::RmsNorm => Tol::rel(0.5 * sum_rel + 6.0 * EPS),
    }
}

/// The bound for `reduce` with `op` of `len` elements whose absolute values sum to
/// `abs_sum` (one output element). The suite's reduce check and the state machine's model
/// both use it.
pub fn reduce_tolerance(op: ReduceOp, len: usize, abs_sum: f64) -> Tol {
    match op {
        // Any summation order is within the dot bound of the absolute sum; plus flushing
        // of terms a device scales by up to 2^-ceil(log2 len), as for Mean.
        ReduceOp::Sum => {
            let t = Tol::dot(len, abs_sum);
            Tol {
                atol: t.atol + 2.0 * len as f64 * FTZ,
                ..t
            }
        }
        // The sum's bound, divided by len, plus the division; and flushing of terms that
        // a device scales by up to 2^-ceil(log2 len) (so that no partial sum overflows).
        ReduceOp::Mean => Tol {
            atol: (len as f64 + 4.0) * EPS * abs_sum / len.max(1) as f64
                + (2.0 * len as f64 + 1.0) * FTZ,
            rtol: EPS,
        },
        // Each of the len - 1 products rounds once: (1 + u)^len - 1 <= len * EPS.
        ReduceOp::Prod => Tol::rel((len as f64 + 2.0) * EPS),
        // Selection is exact.
        ReduceOp::Max | ReduceOp::Min => Tol::EXACT,
        // Sums of non-negative terms (one more rounding each for the square): relative to
        // the result, plus each term's subnormal flushing.
        ReduceOp::SumSquare | ReduceOp::L1 => Tol {
            atol: (len as f64 + 1.0) * FTZ,
            rtol: (len as f64 + 3.0) * EPS,
        },
        // The square root halves the sum's relative error (and of its absolute part).
        ReduceOp::L2 => Tol {
            atol: ((len as f64 + 1.0) * FTZ).sqrt(),
            rtol: 0.5 * (len as f64 + 3.0) * EPS + 2.0 * EPS,
        },
        // m + log(s), s = sum exp(v - m) in [1, len]: s's relative error (the sum, each
        // exp and its rounded argument, |t| e^-t <= 1/e ulp) is an absolute error of
        // log(s); then log's and the addition's roundings.
        ReduceOp::LogSumExp => Tol {
            atol: (len as f64 + 8.0) * EPS + FTZ,
            rtol: 4.0 * EPS,
        },
    }
}

/// One element outside its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// What was compared, e.g. `"C"`.
    pub what: String,
    /// Element index within it.
    pub index: usize,
    /// The backend's value.
    pub got: f32,
    /// The oracle's value.
    pub want: f32,
    /// `|got - want|`, or NaN where one side is not finite.
    pub diff: f64,
    /// The bound that was exceeded.
    pub tol: Tol,
    /// How many elements failed in all.
    pub failed: usize,
    /// How many were compared.
    pub total: usize,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: got {:e} ({:#010x}), want {:e} ({:#010x}), |diff| {:e} > tolerance {:e} (atol {:e} + rtol {:e} * |want|); {} of {} elements out of tolerance",
            self.what,
            self.index,
            self.got,
            self.got.to_bits(),
            self.want,
            self.want.to_bits(),
            self.diff,
            self.tol.bound(f64::from(self.want)),
            self.tol.atol,
            self.tol.rtol,
            self.failed,
            self.total
        )
    }
}

/// How close a comparison came to its bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Closeness {
    /// Largest `|got - want| / bound` over finite elements with a non-zero bound; <= 1
    /// for a pass. Tells how much of the tolerance a backend uses.
    pub worst_ratio: f64,
    /// Largest `|got - want|` over finite elements.
    pub worst_abs: f64,
    /// Elements compared.
    pub elements: usize,
}

impl Closeness {
    /// Combines two comparisons.
    pub fn merge(self, other: Closeness) -> Closeness {
        Closeness {
            worst_ratio: self.worst_ratio.max(other.worst_ratio),
            worst_abs: self.worst_abs.max(other.worst_abs),
            elements: self.elements + other.elements,
        }
    }
}

/// Checks one value; `Ok` carries `(|diff|, ratio to the bound)`.
pub fn check_value(got: f32, want: f32, tol: Tol) -> Result<(f64, f64), f64> {
    if want.is_nan() {
        return if got.is_nan() {
            Ok((0.0, 0.0))
        } else {
            Err(f64::NAN)
        };
    }
    if want.is_infinite() {
        return if got == want {
            Ok((0.0, 0.0))
        } else {
            Err(f64::NAN)
        };
    }
    if !got.is_finite() {
        return Err(f64::NAN);
    }
    // A subnormal result flushed to zero is the allowance every bound carries (FTZ), not
    // an inaccuracy: it passes without counting towards the worst ratio.
    if got == 0.0 && want.is_subnormal() && tol.atol >= FTZ {
        return Ok((f64::from(want).abs(), 0.0));
    }
    let diff = (f64::from(got) - f64::from(want)).abs();
    let bound = tol.bound(f64::from(want));
    if diff <= bound {
        Ok((diff, if bound > 0.0 { diff / bound } else { 0.0 }))
    } else {
        Err(diff)
    }
}

/// Compares `got` with `want` element by element, each with the bound `tol(index)`.
/// On failure reports the first failing element and how many failed.
pub fn compare(
    what: &str,
    got: &[f32],
    want: &[f32],
    tol: impl Fn(usize) -> Tol,
) -> Result<Closeness, Box<Mismatch>> {
    assert_eq!(got.len(), want.len(), "compare {what}: lengths differ");
    let mut close = Closeness {
        elements: got.len(),
        ..Closeness::default()
    };
    let mut first: Option<Mismatch> = None;
    let mut failed = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let t = tol(i);
        match check_value(g, w, t) {
            Ok((diff, ratio)) => {
                close.worst_abs = close.worst_abs.max(diff);
                close.worst_ratio = close.worst_ratio.max(ratio);
            }
            Err(diff) => {
                failed += 1;
                first.get_or_insert(Mismatch {
                    what: what.to_string(),
                    index: i,
                    got: g,
                    want: w,
                    diff,
                    tol: t,
                    failed: 0,
                    total: got.len(),
                });
            }
        }
    }
    match first {
        Some(m) => Err(Box::new(Mismatch { failed, ..m })),
        None => Ok(close),
    }
}

/// Checks that bytes an op must not touch are unchanged; reports the first changed byte.
pub fn unchanged(what: &str, got: &[u8], before: &[u8]) -> Result<(), String> {
    match got.iter().zip(before).position(|(g, b)| g != b) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: byte {i} is {:#04x}, expected {:#04x} ({} bytes differ)",
            got[i],
            before[i],
            got.iter().zip(before).filter(|(g, b)| g != b).count()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_matches_only_nan() {
        assert!(check_value(f32::NAN, f32::NAN, Tol::EXACT).is_ok());
        assert!(check_value(1.0, f32::NAN, Tol::rel(1.0)).is_err());
        assert!(
            check_value(
                f32::NAN,
                1.0,
                Tol {
                    atol: f64::INFINITY,
                    rtol: 0.0
                }
            )
            .is_err()
        );
    }

    #[test]
    fn infinities_match_in_sign_and_never_pass_for_finite_wants() {
        assert!(check_value(f32::INFINITY, f32::INFINITY, Tol::EXACT).is_ok());
        assert!(check_value(f32::NEG_INFINITY, f32::INFINITY, Tol::rel(1.0)).is_err());
        assert!(check_value(f32::MAX, f32::INFINITY, Tol::rel(1.0)).is_err());
        // A huge tolerance still does not let an infinity stand in for a finite value.
        assert!(
            check_value(
                f32::INFINITY,
                1.0,
                Tol {
                    atol: f64::INFINITY,
                    rtol: 1.0
                }
            )
            .is_err()
        );
    }

    #[test]
    fn bound_is_abs_plus_rel_and_inclusive() {
        let t = Tol {
            atol: 0.5,
            rtol: 0.25,
        };
        assert_eq!(t.bound(-4.0), 1.5);
        assert!(check_value(5.5, 4.0, t).is_ok()); // diff 1.5 == bound
        assert!(check_value(5.5001, 4.0, t).is_err());
        assert!(check_value(2.5, 4.0, t).is_ok());
        assert!(check_value(2.49, 4.0, t).is_err());
    }

    #[test]
    fn flushed_subnormals_pass_without_using_the_bound() {
        let sub = f32::MIN_POSITIVE / 4.0;
        assert_eq!(
            check_value(0.0, sub, Tol::rel(1e-5)),
            Ok((f64::from(sub), 0.0))
        );
        // ... but only where the bound allows flushing, and only to zero.
        assert!(check_value(0.0, sub, Tol::EXACT).is_err());
        assert!(check_value(-1e-30, sub, Tol::rel(1e-5)).is_err());
    }

    #[test]
    fn exact_means_exact() {
        assert!(check_value(1.0, 1.0, Tol::EXACT).is_ok());
        assert!(check_value(1.0 + f32::EPSILON, 1.0, Tol::EXACT).is_err());
        assert!(check_value(-0.0, 0.0, Tol::EXACT).is_ok());
    }

    #[test]
    fn compare_reports_first_index_counts_and_values() {
        let got = [1.0, 2.5, 3.0, 9.0];
        let want = [1.0, 2.0, 3.0, 4.0];
        let m = compare("C", &got, &want, |_| Tol::rel(0.01)).unwrap_err();
        assert_eq!((m.index, m.failed, m.total), (1, 2, 4));
        assert_eq!((m.got, m.want), (2.5, 2.0));
        assert_eq!(m.diff, 0.5);
        let text = m.to_string();
        for part in ["C[1]", "got 2.5e0", "want 2e0", "|diff| 5e-1", "2 of 4"] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
    }

    #[test]
    fn stored_bounds_allow_one_spacing_of_the_type() {
        let t = Tol::rel(1e-5).stored(DType::F16);
        // Two f32 values 1e-5 apart around 1.0 may round to neighbouring f16 values
        // (spacing 2^-10 at 1.0): the bound must admit that, and no more than two.
        assert!(t.bound(1.0) >= 2f64.powi(-10));
        assert!(t.bound(1.0) < 2.0 * 2f64.powi(-10));
        let b = Tol::ROUNDED.stored(DType::BF16);
        assert!(b.bound(1.0) >= 2f64.powi(-7) && b.bound(1.0) < 2f64.powi(-6));
        assert_eq!(Tol::EXACT.stored(DType::F16), Tol::EXACT);
        assert_eq!(Tol::rel(0.5).stored(DType::F32), Tol::rel(0.5));
        // f16's smallest subnormal spacing is allowed absolutely.
        assert!(Tol::ROUNDED.stored(DType::F16).bound(0.0) >= 2f64.powi(-24));
    }

    #[test]
    fn compare_tracks_worst_ratio_and_abs() {
        let c = compare("x", &[1.0, 2.1], &[1.0, 2.0], |_| Tol {
            atol: 0.2,
            rtol: 0.0,
        })
        .unwrap();
        assert!((c.worst_abs - 0.1).abs() < 1e-6, "{c:?}");
        assert!((c.worst_ratio - 0.5).abs() < 1e-5, "{c:?}");
        assert_eq!(c.elements, 2);
    }

    #[test]
    fn per_element_tolerance_is_used() {
        let tol = |i| if i == 0 { Tol::EXACT } else { Tol::rel(1.0) };
        assert!(compare("x", &[1.0, 3.0], &[1.0, 2.0], tol).is_ok());
        assert!(compare("x", &[1.5, 2.0], &[1.0, 2.0], tol).is_err());
    }

    #[test]
    fn dot_bound_grows_with_length() {
        let short = Tol::dot(10, 1.0).bound(0.0);
        let long = Tol::dot(1000, 1.0).bound(0.0);
        assert!(long > 50.0 * short, "{short} {long}");
        // A single dropped term of a 100-term sum of unit products is far outside the bound.
        assert!(check_value(99.0, 100.0, Tol::dot(100, 100.0)).is_err());
    }

    #[test]
    fn reduce_tolerance_per_op() {
        assert_eq!(reduce_tolerance(ReduceOp::Sum, 10, 3.0), Tol::dot(10, 3.0));
        assert_eq!(
            reduce_tolerance(ReduceOp::Mean, 10, 3.0),
            Tol {
                atol: 14.0 * EPS * 3.0 / 10.0 + FTZ,
                rtol: EPS
            }
        );
        // An empty axis divides by 1, not 0.
        assert_eq!(
            reduce_tolerance(ReduceOp::Mean, 0, 3.0),
            Tol {
                atol: 4.0 * EPS * 3.0 + FTZ,
                rtol: EPS
            }
        );
        assert_eq!(
            reduce_tolerance(ReduceOp::Prod, 10, 3.0),
            Tol::rel(12.0 * EPS)
        );
        for op in [ReduceOp::Max, ReduceOp::Min] {
            assert_eq!(reduce_tolerance(op, 10, 3.0), Tol::EXACT);
        }
        // The mean's bound is the sum's, divided by the length, give or take a rounding.
        let (sum, mean) = (
            reduce_tolerance(ReduceOp::Sum, 1000, 1000.0),
            reduce_tolerance(ReduceOp::Mean, 1000, 1000.0),
        );
        assert!(
            (mean.atol - sum.atol / 1000.0).abs() < 2.0 * EPS,
            "{sum:?} {mean:?}"
        );
    }

    #[test]
    fn unchanged_names_the_first_changed_byte() {
        assert!(unchanged("guard", &[1, 2, 3], &[1, 2, 3]).is_ok());
        let e = unchanged("guard", &[1, 9, 8], &[1, 2, 3]).unwrap_err();
        assert!(
            e.contains("byte 1 is 0x09, expected 0x02") && e.contains("2 bytes differ"),
            "{e}"
        );
    }
}
