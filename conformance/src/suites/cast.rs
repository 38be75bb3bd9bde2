//! cast between f32, f16 and bf16.

use backend_api::{ComputeBackend, DType};
use backend_cpu::reference;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::Suite;
use crate::data::{NON_FINITE_AND_ZEROS, Rng};
use crate::harness::{Dev, op_failed};
use crate::tolerance::{Closeness, Tol, compare};
use crate::{Check, Profile};

/// One cast case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CastCase {
    /// Source element type.
    pub src: DType,
    /// Destination element type.
    pub dst: DType,
    /// Element count.
    pub n: usize,
    /// Interior-pointer offsets of source and destination, in elements.
    pub offsets: [usize; 2],
    /// Seed of the data.
    pub seed: u64,
}

/// A source value: normal f32s of every size that matters to the narrower types (f16
/// overflow past 65504, f16 subnormals and underflow, exact rounding ties), NaN and
/// infinities; for 16-bit sources, any bit pattern.
fn source(dtype: DType, rng: &mut Rng) -> Vec<u8> {
    match dtype {
        DType::F32 => {
            let v = match rng.below(8) {
                0 => rng.uniform(-70000.0, 70000.0),
                1 => {
                    ((rng.unit() * 30.0 - 30.0).exp2() * if rng.below(2) == 0 { 1.0 } else { -1.0 })
                        as f32
                }
                // Halfway between two normal f16 values: an f16 widened to f32 has 13 zero
                // low bits; setting the top one of them is half an f16 ulp.
                2 => {
                    let bits = rng.next_u64() as u16;
                    let h = half::f16::from_bits(
                        (bits & 0x7fff).clamp(0x0400, 0x7bff) | (bits & 0x8000),
                    );
                    f32::from_bits(h.to_f32().to_bits() | 0x1000)
                }
                // Halfway between two bf16 values: 16 dropped bits = 0x8000.
                3 => {
                    let v = rng.uniform(-1e30, 1e30);
                    f32::from_bits((v.to_bits() & 0xffff_0000) | 0x8000)
                }
                4 => NON_FINITE_AND_ZEROS[rng.below(NON_FINITE_AND_ZEROS.len())],
                _ => {
                    // Any normal f32 (subnormal inputs may be flushed by GPUs).
                    let bits = rng.next_u64() as u32;
                    let v = f32::from_bits(bits);
                    if v.is_normal() { v } else { 1.5 }
                }
            };
            v.to_le_bytes().to_vec()
        }
        DType::F16 | DType::BF16 => (rng.next_u64() as u16).to_le_bytes().to_vec(),
    }
}

pub(crate) struct CastSuite;

impl Suite for CastSuite {
    type Case = CastCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<CastCase> {
        let dtype = || proptest::sample::select(DType::ALL);
        let n = prop_oneof![2 => 0..=16usize, 3 => 0..=p.elementwise_max];
        (
            dtype(),
            dtype(),
            n,
            prop::array::uniform2(0..5usize),
            any::<u64>(),
        )
            .prop_map(|(src, dst, n, offsets, seed)| CastCase {
                src,
                dst,
                n,
                offsets,
                seed,
            })
            .boxed()
    }

    fn kind(c: &CastCase) -> String {
        format!("{}->{}", c.src, c.dst)
    }

    fn tags(c: &CastCase) -> Vec<&'static str> {
        let mut t = vec![];
        if [c.src, c.dst].contains(&DType::F16) {
            t.push("f16");
        }
        if [c.src, c.dst].contains(&DType::BF16) {
            t.push("bf16");
        }
        t
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &CastCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let src_bytes: Vec<u8> = (0..c.n).flat_map(|_| source(c.src, &mut rng)).collect();
        let dst_old = rng.bytes(c.n * c.dst.size_bytes());
        let mut dev = Dev::new(b);
        let s = dev.put(&mut rng, &src_bytes, c.offsets[0] * c.src.size_bytes(), 6)?;
        let d = dev.put(&mut rng, &dst_old, c.offsets[1] * c.dst.size_bytes(), 6)?;
        b.cast(s.ptr, c.src, d.ptr, c.dst, c.n)
            .map_err(|e| op_failed("cast", e))?;
        let values = reference::decode(c.src, &src_bytes);
        // Round through the destination type: exact, round-to-nearest-even.
        let want = reference::decode(c.dst, &reference::encode(c.dst, &values));
        let got = reference::decode(c.dst, &dev.output(&d, "dst").await?);
        let what = format!("cast {} -> {}", c.src, c.dst);
        let close = compare(&what, &got, &want, |_| Tol::EXACT)
            .map_err(|m| format!("{m} (source {:e})", values[m.index]))?;
        dev.unchanged(&s, "src").await?;
        Ok(close)
    }
}
