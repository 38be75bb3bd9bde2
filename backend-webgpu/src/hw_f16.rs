//! Whether the adapter's own f16 conversions are exact, found out once at initialisation.
//!
//! The kernels convert f16 on the bits (common.wgsl): exact everywhere, but a dozen
//! integer operations each way, which on an H100 bound the f16 elementwise kernels below
//! their bf16 twins. WGSL's `unpack2x16float` and `pack2x16float` are one instruction on
//! most GPUs, but the language promises neither round-to-nearest-even, infinity on
//! overflow, nor subnormals. So the backend asks the adapter: the cast kernel, built with
//! the hardware conversions, widens every one of the 65536 f16 bit patterns and narrows a
//! set of f32 values on and beside every rounding boundary of every f16 binade (ties,
//! one f32 ulp either side, the overflow threshold 65520, subnormal results), and the
//! results must equal the exact conversions bit for bit (a NaN must stay a NaN). Only
//! then does every kernel take them; any difference, error or failure keeps the bit
//! arithmetic. The probe's allocations are freed and its staged bytes not counted.

use std::sync::atomic::Ordering;

use backend_api::half::f16;
use backend_api::{BackendResult, ComputeBackend, DType};

use crate::WebGpuBackend;

/// The f32 values whose f16 rounding the probe checks: for each f16 binade (subnormals
/// included) some mantissas with even and odd last bits, each value itself, the midpoint
/// to the next f16 value and one f32 ulp either side of it; the overflow threshold and
/// beyond; both zeros, infinities, a NaN; 2^15 bit patterns spread over all of f32; all
/// of them with both signs.
pub(crate) fn narrowing_inputs() -> Vec<f32> {
    let mut v = Vec::new();
    for e in 0u16..31 {
        for m in [0u16, 1, 2, 3, 0x155, 0x2aa, 0x3fe, 0x3ff] {
            let h = (e << 10) | m;
            let x = f16::from_bits(h).to_f32();
            let next = if h == 0x7bff {
                65536.0 // where the ulp-spaced successor of 65504 would be
            } else {
                f16::from_bits(h + 1).to_f32()
            };
            let mid = (x + next) / 2.0; // exact: f16 values have 11 significant bits
            v.extend([x, mid, mid.next_up(), mid.next_down()]);
        }
    }
    v.extend([
        65519.996,
        65520.0,
        65536.0,
        1e6,
        f32::MAX,
        f32::MIN_POSITIVE,
        1e-40,
    ]);
    v.extend([0.0, f32::INFINITY, f32::NAN]);
    // And 2^15 f32 bit patterns spread over the whole range, for faults no rule predicts.
    v.extend((0..1u32 << 15).map(|i| f32::from_bits(i.wrapping_mul(0x9e37_79b9) & 0x7fff_ffff)));
    let negative: Vec<f32> = v.iter().map(|x| -x).collect();
    v.extend(negative);
    v
}

/// Bit-for-bit equality of conversion results, except that any NaN matches any NaN.
fn same(got: u32, want: u32, nan: impl Fn(u32) -> bool) -> bool {
    got == want || (nan(got) && nan(want))
}

/// True when `got[i]` is the f32 bits of f16 pattern `i`, for all 65536 of them.
fn widening_exact(got: &[u32]) -> bool {
    let nan = |x: u32| f32::from_bits(x).is_nan();
    got.len() == 1 << 16
        && (0..=u16::MAX)
            .zip(got)
            .all(|(h, &g)| same(g, f16::from_bits(h).to_f32().to_bits(), nan))
}

/// True when `got[i]` is `inputs[i]` rounded to f16 to nearest even (infinity past 65504).
fn narrowing_exact(inputs: &[f32], got: &[u16]) -> bool {
    let nan = |x: u32| f16::from_bits(x as u16).is_nan();
    inputs.len() == got.len()
        && inputs
            .iter()
            .zip(got)
            .all(|(&x, &g)| same(u32::from(g), u32::from(f16::from_f32(x).to_bits()), nan))
}

/// Runs the probe on a freshly initialised backend and switches the kernels to the
/// hardware conversions if it passes. Never fails: a problem means "not exact".
pub(crate) async fn probe(b: &WebGpuBackend) {
    let Some(ctx) = b.ctx.clone() else {
        return;
    };
    ctx.hw_f16.store(true, Ordering::Relaxed);
    let exact = matches!(check(b).await, Ok(true));
    ctx.hw_f16.store(exact, Ordering::Relaxed);
    ctx.staged.store(0, Ordering::Relaxed);
    tracing::info!(exact, "probed the adapter's f16 conversions");
}

/// Widens all 65536 f16 patterns and narrows [`narrowing_inputs`] with the kernels as
/// they are set now; true when every result is the exact one.
async fn check(b: &WebGpuBackend) -> BackendResult<bool> {
    let halves: Vec<u16> = (0..=u16::MAX).collect();
    let narrow = narrowing_inputs();
    let (nh, nn) = (halves.len(), narrow.len());
    let mut ptrs = Vec::new();
    let result = async {
        let mut alloc = |bytes| -> BackendResult<u64> {
            let p = b.alloc(bytes)?;
            ptrs.push(p);
            Ok(p)
        };
        let (h_in, h_out) = (alloc(2 * nh)?, alloc(4 * nh)?);
        let (n_in, n_out) = (alloc(4 * nn)?, alloc(2 * nn)?);
        b.copy_htod(h_in, bytemuck::cast_slice(&halves))?;
        b.copy_htod(n_in, bytemuck::cast_slice(&narrow))?;
        b.cast(h_in, DType::F16, h_out, DType::F32, nh)?;
        b.cast(n_in, DType::F32, n_out, DType::F16, nn)?;
        let mut widened = vec![0u8; 4 * nh];
        let mut narrowed = vec![0u8; 2 * nn];
        b.copy_dtoh_many_async(&mut [(h_out, &mut widened[..]), (n_out, &mut narrowed[..])])
            .await?;
        Ok(widening_exact(bytemuck::cast_slice(&widened))
            && narrowing_exact(&narrow, bytemuck::cast_slice(&narrowed)))
    }
    .await;
    for p in ptrs {
        let _ = b.free(p);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inputs_hold_ties_neighbours_and_the_overflow_threshold() {
        let v = narrowing_inputs();
        // 1 + 2^-11 is the tie between 1 and its successor, with its f32 neighbours.
        let tie = 1.0 + 2f32.powi(-11);
        assert!(v.contains(&tie) && v.contains(&tie.next_up()) && v.contains(&tie.next_down()));
        assert!(v.contains(&65520.0) && v.contains(&-65520.0));
        // The smallest subnormal's tie with zero (2^-25).
        assert!(v.contains(&2f32.powi(-25)));
        assert!(v.iter().any(|x| x.is_nan()));
        // half's conversion, which the probe holds the adapter to, rounds ties to even.
        assert_eq!(f16::from_f32(tie).to_bits(), 0x3c00);
        assert_eq!(f16::from_f32(65520.0).to_bits(), 0x7c00);
    }

    /// The conversions a GPU may have instead of IEEE's, simulated on the host: the probe's
    /// inputs must expose each.
    #[test]
    fn the_probe_rejects_each_inexact_conversion() {
        let v = narrowing_inputs();
        let exact: Vec<u16> = v.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
        assert!(narrowing_exact(&v, &exact));
        let with = |f: &dyn Fn(f32, u16) -> u16| -> Vec<u16> {
            v.iter().zip(&exact).map(|(&x, &r)| f(x, r)).collect()
        };
        let finite = |r: u16| r & 0x7fff < 0x7c00 && r & 0x7fff != 0;
        // Round toward zero: one step down wherever nearest rounded away from zero.
        let toward_zero = with(&|x, r| {
            let away = f16::from_bits(r).to_f32().abs() > x.abs();
            if finite(r) && away { r - 1 } else { r }
        });
        assert!(!narrowing_exact(&v, &toward_zero));
        // Ties away from zero: a tie that went to the value below goes up instead.
        let ties_away = with(&|x, r| {
            let lo = f16::from_bits(r).to_f32().abs();
            let hi = f16::from_bits(r + 1).to_f32().abs();
            let tie = finite(r) && x.abs() - lo == hi - x.abs() && x.abs() > lo;
            if tie { r + 1 } else { r }
        });
        assert!(!narrowing_exact(&v, &ties_away));
        // Subnormal results flushed to zero, and overflow saturating at 65504.
        let flush = with(&|x, r| {
            if x.abs() < 2f32.powi(-14) {
                r & 0x8000
            } else {
                r
            }
        });
        assert!(!narrowing_exact(&v, &flush));
        let saturate = with(&|x, r| {
            if x.is_finite() && r & 0x7fff == 0x7c00 {
                r - 1
            } else {
                r
            }
        });
        assert!(!narrowing_exact(&v, &saturate));
        // Widening that flushes subnormal inputs to zero.
        let widen = |flush: bool| -> Vec<u32> {
            (0..=u16::MAX)
                .map(|h| {
                    let x = f16::from_bits(h).to_f32();
                    let sub = x != 0.0 && x.abs() < 2f32.powi(-14);
                    if flush && sub {
                        x.to_bits() & 0x8000_0000
                    } else {
                        x.to_bits()
                    }
                })
                .collect()
        };
        assert!(widening_exact(&widen(false)));
        assert!(!widening_exact(&widen(true)));
    }

    #[test]
    fn any_nan_matches_any_nan_and_nothing_else_differs() {
        let nan = |x: u32| f32::from_bits(x).is_nan();
        assert!(same(0x7fc0_0000, 0x7fc0_0001, nan));
        assert!(!same(0x7f80_0000, 0x7fc0_0000, nan));
        assert!(same(0x3f80_0000, 0x3f80_0000, nan));
        assert!(!same(0x8000_0000, 0, nan));
    }
}
