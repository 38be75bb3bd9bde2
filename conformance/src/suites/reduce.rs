//! reduce against the oracle.

use backend_api::{ComputeBackend, ReduceOp};
use backend_cpu::reference;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::Suite;
use crate::data::{NON_FINITE_AND_ZEROS, Rng, from_bytes};
use crate::harness::{Dev, op_failed};
use crate::tolerance::{Closeness, compare, reduce_tolerance};
use crate::{Check, Profile};

/// One reduce case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReduceCase {
    /// The reduction.
    pub op: ReduceOp,
    /// Row-major input shape.
    pub shape: Vec<usize>,
    /// The reduced axis.
    pub axis: usize,
    /// Interior-pointer offsets of input and output, in elements.
    pub offsets: [usize; 2],
    /// NaN, infinities and zeros in the input.
    pub specials: bool,
    /// Seed of the data.
    pub seed: u64,
}

pub(crate) struct ReduceSuite;

impl Suite for ReduceSuite {
    type Case = ReduceCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<ReduceCase> {
        let side = p.reduce_side;
        let shapes = prop_oneof![
            3 => prop::collection::vec(0..=side, 1..=4usize),
            // One long axis with a little on either side: rows longer than any workgroup.
            1 => (1..=3usize, 0..=p.reduce_long, 1..=3usize).prop_map(|(a, b, c)| vec![a, b, c]),
            1 => (0..=p.reduce_long).prop_map(|n| vec![n]),
        ];
        let op = proptest::sample::select(ReduceOp::ALL);
        (
            op,
            shapes,
            0..4usize,
            prop::array::uniform2(0..4usize),
            (prop::bool::weighted(0.1), prop::bool::weighted(0.15)),
            any::<u64>(),
        )
            .prop_map(
                |(op, mut shape, axis, mut offsets, (specials, empty), seed)| {
                    let axis = axis % shape.len();
                    if empty {
                        // An empty axis yields each op's identity: make it common.
                        shape[axis] = 0;
                    }
                    // Often make rows whole vec4s on 16-byte boundaries, which vectorised
                    // kernels take: the last dimension and both offsets multiples of 4.
                    if seed % 3 == 0 {
                        let last = shape.len() - 1;
                        shape[last] = shape[last].div_ceil(4) * 4;
                        offsets = offsets.map(|o| o / 4 * 4);
                    }
                    ReduceCase {
                        op,
                        shape,
                        axis,
                        offsets,
                        specials,
                        seed,
                    }
                },
            )
            .boxed()
    }

    fn kind(c: &ReduceCase) -> String {
        c.op.name().to_string()
    }

    fn tags(c: &ReduceCase) -> Vec<&'static str> {
        if c.specials {
            vec!["non-finite"]
        } else {
            vec![]
        }
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &ReduceCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let outer: usize = c.shape[..c.axis].iter().product();
        let len = c.shape[c.axis];
        let inner: usize = c.shape[c.axis + 1..].iter().product();
        let total = outer * len * inner;
        let mut x = match c.op {
            // Magnitudes near 1 keep long products inside the f32 range.
            ReduceOp::Prod => (0..total)
                .map(|_| rng.uniform(0.95, 1.05) * if rng.below(2) == 0 { -1.0 } else { 1.0 })
                .collect(),
            ReduceOp::Max | ReduceOp::Min => rng.fill(total, -10.0, 10.0),
            _ => rng.fill(total, -1.0, 1.0),
        };
        // Now and then magnitudes at the ends of the f32 range: a mean whose naive sum
        // overflows, an L2 whose naive squares overflow or vanish.
        if matches!(c.op, ReduceOp::Mean | ReduceOp::Sum | ReduceOp::L2) && c.seed.is_multiple_of(5)
        {
            let scale = if c.seed.is_multiple_of(10) {
                2f32.powi(126)
            } else {
                2f32.powi(-100)
            };
            x.iter_mut().for_each(|v| *v *= scale);
        }
        if c.specials {
            rng.sprinkle(&mut x, &NON_FINITE_AND_ZEROS, 0.01);
        }
        let out0 = rng.sentinels(outer * inner);
        let mut dev = Dev::new(b);
        let i_dev = dev.put_f32(&mut rng, &x, c.offsets[0], 2)?;
        let o_dev = dev.put_f32(&mut rng, &out0, c.offsets[1], 2)?;
        b.reduce(c.op, i_dev.ptr, o_dev.ptr, &c.shape, c.axis)
            .map_err(|e| op_failed("reduce", e))?;
        let mut want = vec![0.0; outer * inner];
        reference::reduce(c.op, &x, &mut want, outer, len, inner);
        let mut abs_sum = vec![0.0; outer * inner];
        let abs_x: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        reference::reduce(ReduceOp::Sum, &abs_x, &mut abs_sum, outer, len, inner);
        let got = from_bytes(&dev.output(&o_dev, "output").await?);
        let tol = |i: usize| reduce_tolerance(c.op, len, f64::from(abs_sum[i]));
        let close = compare("output", &got, &want, tol).map_err(|m| m.to_string())?;
        dev.unchanged(&i_dev, "input").await?;
        Ok(close)
    }
}
