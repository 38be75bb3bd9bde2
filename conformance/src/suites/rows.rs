//! softmax, log_softmax, layer_norm and rms_norm against the oracle.

use backend_api::{ComputeBackend, RowOp};
use backend_cpu::reference;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::Suite;
use crate::data::{NON_FINITE_AND_ZEROS, Rng, from_bytes};
use crate::harness::{Dev, op_failed};
use crate::tolerance::{Closeness, compare, row_tolerance};
use crate::{Check, Profile};

/// One row-op case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowsCase {
    /// The op.
    pub op: RowOp,
    /// Rows.
    pub rows: usize,
    /// Elements per row.
    pub cols: usize,
    /// Output is the input's exact range.
    pub in_place: bool,
    /// The norms' gamma and (layer norm) beta are given.
    pub affine: [bool; 2],
    /// The norms' epsilon.
    pub eps: f64,
    /// Rows with a large mean (1000) over a unit spread.
    pub offset: bool,
    /// Interior-pointer offsets of x, y, gamma and beta, in elements.
    pub offsets: [usize; 4],
    /// NaN, infinities and zeros in the input.
    pub specials: bool,
    /// Seed of the data.
    pub seed: u64,
}

pub(crate) struct RowsSuite;

impl Suite for RowsSuite {
    type Case = RowsCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<RowsCase> {
        let long = p.reduce_long;
        let shape = prop_oneof![
            3 => (0..=8usize, 0..=40usize),
            // Rows longer than a workgroup.
            1 => (1..=3usize, 200..=long),
            1 => (0..=300usize, 1..=4usize),
        ];
        (
            proptest::sample::select(RowOp::ALL),
            shape,
            any::<bool>(),
            prop::array::uniform2(any::<bool>()),
            prop_oneof![Just(0.0), Just(1e-5), Just(1e-2)],
            prop::bool::weighted(0.2),
            prop::array::uniform4(0..4usize),
            prop::bool::weighted(0.1),
            any::<u64>(),
        )
            .prop_map(
                |(op, (rows, cols), in_place, affine, eps, offset, offsets, specials, seed)| {
                    let norm = matches!(op, RowOp::LayerNorm | RowOp::RmsNorm);
                    RowsCase {
                        op,
                        rows,
                        cols,
                        in_place,
                        affine: [norm && affine[0], op == RowOp::LayerNorm && affine[1]],
                        eps: if norm { eps } else { 0.0 },
                        offset,
                        offsets,
                        specials,
                        seed,
                    }
                },
            )
            .boxed()
    }

    fn kind(c: &RowsCase) -> String {
        c.op.name().to_string()
    }

    fn tags(c: &RowsCase) -> Vec<&'static str> {
        let mut t = Vec::new();
        if c.specials {
            t.push("non-finite");
        }
        if c.in_place {
            t.push("in place");
        }
        t
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &RowsCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let n = c.rows * c.cols;
        let shift = if c.offset { 1000.0 } else { 0.0 };
        let mut x: Vec<f32> = rng.fill(n, -5.0, 5.0).iter().map(|v| v + shift).collect();
        if c.specials {
            rng.sprinkle(&mut x, &NON_FINITE_AND_ZEROS, 0.02);
        }
        let gamma = rng.fill(if c.affine[0] { c.cols } else { 0 }, 0.5, 1.5);
        let beta = rng.fill(if c.affine[1] { c.cols } else { 0 }, -1.0, 1.0);
        let mut dev = Dev::new(b);
        let x_dev = dev.put_f32(&mut rng, &x, c.offsets[0], 2)?;
        let y_dev = if c.in_place {
            x_dev.clone()
        } else {
            let s = rng.sentinels(n);
            dev.put_f32(&mut rng, &s, c.offsets[1], 2)?
        };
        let g_dev = match c.affine[0] {
            true => Some(dev.put_f32(&mut rng, &gamma, c.offsets[2], 2)?),
            false => None,
        };
        let b_dev = match c.affine[1] {
            true => Some(dev.put_f32(&mut rng, &beta, c.offsets[3], 2)?),
            false => None,
        };
        let (xp, yp) = (x_dev.ptr, y_dev.ptr);
        let (gp, bp) = (g_dev.as_ref().map(|r| r.ptr), b_dev.as_ref().map(|r| r.ptr));
        let (rows, cols, eps) = (c.rows, c.cols, c.eps);
        match c.op {
            RowOp::Softmax => b.softmax(xp, yp, rows, cols),
            RowOp::LogSoftmax => b.log_softmax(xp, yp, rows, cols),
            RowOp::LayerNorm => b.layer_norm(xp, gp, bp, yp, rows, cols, eps),
            RowOp::RmsNorm => b.rms_norm(xp, gp, yp, rows, cols, eps),
        }
        .map_err(|e| op_failed(c.op.name(), e))?;
        let mut want = vec![0.0f32; n];
        if n > 0 {
            reference::rows(c.op, &x, &gamma, &beta, &mut want, cols, eps);
        }
        let got = from_bytes(&dev.output(&y_dev, "y").await?);
        let tol = |i: usize| {
            let row = &x[i / cols * cols..][..cols];
            let g = gamma.get(i % cols).copied().unwrap_or(1.0);
            let bt = beta.get(i % cols).copied().unwrap_or(0.0);
            row_tolerance(c.op, row, x[i], g, bt, eps)
        };
        let close =
            compare(&format!("{} y", c.op.name()), &got, &want, tol).map_err(|m| m.to_string())?;
        if !c.in_place {
            dev.unchanged(&x_dev, "x").await?;
        }
        for (r, what) in [(&g_dev, "gamma"), (&b_dev, "beta")] {
            if let Some(r) = r {
                dev.unchanged(r, what).await?;
            }
        }
        Ok(close)
    }
}
