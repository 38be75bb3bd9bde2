//! gemm_q (Q8_0, Q4_0 weights) against the oracle.

use backend_api::{ComputeBackend, DType, QuantFormat};
use backend_cpu::reference;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::Suite;
use crate::data::{NON_FINITE_AND_ZEROS, Rng, from_bytes};
use crate::harness::{Dev, op_failed};
use crate::tolerance::{Closeness, Tol, compare};
use crate::{Check, Profile};

/// One gemm_q case: A `m x (32 * blocks)` quantized, B `k x n` column-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmQCase {
    /// The weights' block format.
    pub format: QuantFormat,
    /// Rows of A and C.
    pub m: usize,
    /// Columns of B and C.
    pub n: usize,
    /// Blocks per row of A (`k = 32 * blocks`).
    pub blocks: usize,
    /// Scales the product.
    pub alpha: f64,
    /// Scales C.
    pub beta: f64,
    /// B in f16 (else f32).
    pub b_f16: bool,
    /// Extra rows of B's and C's leading dimensions.
    pub pad: [usize; 2],
    /// Interior-pointer offsets: A in 2-byte units, B and C in elements.
    pub offsets: [usize; 3],
    /// NaN, infinities and zeros in B; NaN in C when `beta == 0` (never read).
    pub specials: bool,
    /// Seed of the data.
    pub seed: u64,
}

impl GemmQCase {
    /// `k`.
    pub fn k(&self) -> usize {
        QuantFormat::BLOCK * self.blocks
    }
}

/// Random blocks: an f16 scale of either sign (sometimes 0 or subnormal) and random
/// quants, exactly what a GGUF file may hold.
fn blocks(rng: &mut Rng, format: QuantFormat, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * format.block_bytes());
    for _ in 0..count {
        let d = match rng.below(16) {
            0 => half::f16::ZERO,
            1 => half::f16::from_bits(1 + rng.below(1023) as u16),
            _ => half::f16::from_f32(rng.uniform(-0.25, 0.25)),
        };
        out.extend(d.to_le_bytes());
        out.extend(rng.bytes(format.block_bytes() - 2));
    }
    out
}

pub(crate) struct GemmQSuite;

impl Suite for GemmQSuite {
    type Case = GemmQCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<GemmQCase> {
        let dims = (
            prop_oneof![2 => 0..=9usize, 1 => 1..=p.gemm_max],
            // Columns: the decode kernels (up to 4), their tiles of 4 (to 64) and the
            // prefill path (from 65) on both sides of each switch.
            prop_oneof![3 => 0..=9usize, 1 => 10..=40usize, 1 => 60..=70usize],
            // Past 4 blocks the decode kernels take two blocks per step.
            prop_oneof![1 => 0..=4usize, 1 => 5..=40usize],
        );
        (
            proptest::sample::select(QuantFormat::ALL),
            dims,
            prop_oneof![3 => Just(1.0), 1 => Just(0.0), 1 => Just(-0.5)],
            prop_oneof![2 => Just(0.0), 1 => Just(1.0), 1 => Just(0.25)],
            any::<bool>(),
            // Half the cases pad nothing and start B on 16 bytes: the vec4 decode path.
            prop_oneof![1 => Just([0, 0]), 1 => prop::array::uniform2(0..3usize)],
            prop_oneof![
                1 => prop::array::uniform3(0..4usize).prop_map(|[a, _, c]| [a, 0, c]),
                1 => prop::array::uniform3(0..4usize),
            ],
            prop::bool::weighted(0.15),
            any::<u64>(),
        )
            .prop_map(
                |(format, (m, n, blocks), alpha, beta, b_f16, pad, offsets, specials, seed)| {
                    GemmQCase {
                        format,
                        m,
                        n,
                        blocks,
                        alpha,
                        beta,
                        b_f16,
                        pad,
                        offsets,
                        specials,
                        seed,
                    }
                },
            )
            .boxed()
    }

    fn kind(c: &GemmQCase) -> String {
        c.format.name().to_string()
    }

    fn tags(c: &GemmQCase) -> Vec<&'static str> {
        if c.specials {
            vec!["non-finite"]
        } else {
            vec![]
        }
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &GemmQCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let (m, n, k) = (c.m, c.n, c.k());
        let (ldb, ldc) = (k.max(1) + c.pad[0], m.max(1) + c.pad[1]);
        let b_dtype = if c.b_f16 { DType::F16 } else { DType::F32 };
        let a = blocks(&mut rng, c.format, m * c.blocks);
        let b_len = if n == 0 { 0 } else { ldb * (n - 1) + k };
        let mut bm = rng.fill(b_len, -1.0, 1.0);
        if c.specials {
            rng.inject(&mut bm, &NON_FINITE_AND_ZEROS, 0.02);
        }
        // What B holds once stored in its dtype.
        let bm = reference::decode(b_dtype, &reference::encode(b_dtype, &bm));
        let c_len = if n == 0 { 0 } else { ldc * (n - 1) + m };
        let nan_c = c.specials && c.beta == 0.0;
        let c0: Vec<f32> = (0..c_len)
            .map(|_| {
                if nan_c {
                    f32::NAN
                } else {
                    rng.uniform(-1.0, 1.0)
                }
            })
            .collect();
        let mut dev = Dev::new(b);
        let a_dev = dev.put(&mut rng, &a, 2 * c.offsets[0], 6)?;
        let b_dev = dev.put(
            &mut rng,
            &reference::encode(b_dtype, &bm),
            c.offsets[1] * b_dtype.size_bytes(),
            8,
        )?;
        let c_dev = dev.put_f32(&mut rng, &c0, c.offsets[2], 3)?;
        b.gemm_q(
            c.format, m, n, k, c.alpha, a_dev.ptr, b_dev.ptr, b_dtype, ldb, c.beta, c_dev.ptr, ldc,
        )
        .map_err(|e| op_failed(&format!("gemm_q {}", c.format), e))?;
        let mut want = c0.clone();
        reference::gemm_q(
            c.format, m, n, k, c.alpha, &a, &bm, ldb, c.beta, &mut want, ldc,
        );
        // The same product over absolute values bounds the summation error.
        let weights: Vec<f32> = reference::dequantize(c.format, &a, m, k)
            .iter()
            .map(|x| x.abs())
            .collect();
        let abs_b: Vec<f32> = bm.iter().map(|x| x.abs()).collect();
        let mut abs_sum: Vec<f32> = c0.iter().map(|x| x.abs()).collect();
        reference::gemm(
            true,
            false,
            m,
            n,
            k,
            c.alpha.abs(),
            &weights,
            k.max(1),
            &abs_b,
            ldb,
            c.beta.abs(),
            &mut abs_sum,
            ldc,
        );
        let got = from_bytes(&dev.output(&c_dev, "C").await?);
        // Only C's m rows of each column are written; padding rows keep their bytes.
        let close = compare("C", &got, &want, |i| {
            if i % ldc < m {
                Tol::dot(k, f64::from(abs_sum[i]))
            } else {
                Tol::EXACT
            }
        })
        .map_err(|e| e.to_string())?;
        dev.unchanged(&a_dev, "A").await?;
        dev.unchanged(&b_dev, "B").await?;
        Ok(close)
    }
}
