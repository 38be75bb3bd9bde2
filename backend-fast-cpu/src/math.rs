//! `exp` in plain f32 arithmetic that the compiler vectorises (libm's `expf` is a call
//! per element, which no loop around it can vectorise): softmax rows and attention
//! scores spend most of their time here.
//!
//! The method is the classic one (Cody-Waite range reduction, then Cephes' degree-6
//! polynomial): `x = n ln2 + r` with `|r| <= ln2 / 2`, `e^r` by the polynomial,
//! `e^x = e^r 2^n` with `2^n` built from its exponent bits in two halves, so that results
//! down to the smallest normal f32 come out right. Accuracy: within 1 ulp of the exact
//! value (`tests::exp_f32_is_within_one_ulp`: 0.98 ulp at worst over every 97th f32);
//! results below the smallest normal f32 are flushed to 0, which every bound of the
//! contract allows (`FTZ`).

/// 1.5 * 2^23: adding it to an f32 of magnitude < 2^22 rounds that to an integer, which
/// then sits in the low bits of the sum.
const ROUND: f32 = 12_582_912.0;
/// `ln 2` split so that `n * LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below `ln(2^-126)` the result is subnormal: flushed to 0.
const MIN_ARG: f32 = -87.336_55;
/// The smallest argument computed: just above `MIN_ARG`, so that no product is subnormal.
const CLAMP_LO: f32 = -87.3364;
/// Above `ln(f32::MAX)` the result is infinite.
const MAX_ARG: f32 = 88.722_84;

/// e^x for every f32 `x`: NaN gives NaN, -inf 0, +inf +inf.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    // Clamped to arguments whose results are normal (NaN passes through clamp): a
    // subnormal product costs a microcode assist of ~100 cycles per vector on x86, and
    // attention's far-below-maximum scores are such arguments (their result is the 0
    // chosen below). The floor sits 1.5e-4 above MIN_ARG, where e^x is safely above
    // 2^-126; the few arguments in between get that floor's result, within 2e-4 relative
    // (under 3e-42 absolute, far inside the flushing allowance).
    let xc = x.clamp(CLAMP_LO, MAX_ARG);
    let t = xc * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // The integer n, read from the low bits of t (wrapping: garbage only for NaN, whose
    // result is NaN whatever the scale).
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let er = p * r * r + r + 1.0;
    let h = ni >> 1;
    let s1 = f32::from_bits((h.wrapping_add(127) as u32) << 23);
    let s2 = f32::from_bits((ni.wrapping_sub(h).wrapping_add(127) as u32) << 23);
    let e = er * s1 * s2;
    if x < MIN_ARG {
        0.0
    } else if x > MAX_ARG {
        f32::INFINITY
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place of the f32 nearest the exact value.
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let ulp = f64::from(f32::from_bits(w.abs().to_bits() + 1) - w.abs());
        (f64::from(got) - want).abs() / ulp
    }

    #[test]
    fn exp_f32_is_within_one_ulp() {
        let mut worst = (0.0f64, 0.0f32);
        // Every 97th f32 of [-87.33, 88.72], both signs, plus the neighbourhood of 0.
        let mut check = |x: f32| {
            let want = f64::from(x).exp();
            let got = exp_f32(x);
            let tiny = f64::from(f32::MIN_POSITIVE);
            if want < tiny {
                assert!(
                    got == 0.0 || (f64::from(got) - want).abs() <= tiny,
                    "{x}: {got}"
                );
                return;
            }
            if x < CLAMP_LO {
                // Between MIN_ARG and the clamp: the clamp's result, within 2e-4 relative.
                assert!((f64::from(got) - want).abs() <= 2e-4 * want, "{x}: {got}");
                return;
            }
            let u = ulps(got, want);
            if u > worst.0 {
                worst = (u, x);
            }
        };
        let top = MAX_ARG.to_bits();
        let mut bits = 0u32;
        while bits <= top {
            check(f32::from_bits(bits));
            bits += 97;
        }
        let bottom = (-MIN_ARG).to_bits();
        let mut bits = 0u32;
        while bits <= bottom {
            check(-f32::from_bits(bits));
            bits += 97;
        }
        assert!(worst.0 <= 1.0, "worst {} ulp at x = {}", worst.0, worst.1);
    }

    #[test]
    fn exp_f32_edges() {
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-0.0), 1.0);
        assert_eq!(exp_f32(88.8), f32::INFINITY);
        assert_eq!(exp_f32(-100.0), 0.0);
        // The largest finite results and the smallest normal ones.
        assert!(exp_f32(88.72).is_finite() && exp_f32(88.72) > 3.3e38);
        assert!(exp_f32(-87.33) >= f32::MIN_POSITIVE);
        // Every argument from the clamp down to MIN_ARG, one by one, then just below.
        let mut x = CLAMP_LO;
        while x >= MIN_ARG {
            let (got, want) = (f64::from(exp_f32(x)), f64::from(x).exp());
            assert!((got - want).abs() <= 2e-4 * want, "{x}: {got} vs {want}");
            x = f32::from_bits(x.to_bits() + 1);
        }
        assert_eq!(exp_f32(f32::from_bits(MIN_ARG.to_bits() + 1)), 0.0);
    }
}
