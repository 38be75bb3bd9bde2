//! conv2d_forward against the oracle.

use backend_api::ComputeBackend;
use backend_cpu::reference;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::Suite;
use crate::data::{NON_FINITE_AND_ZEROS, Rng, from_bytes};
use crate::harness::{Dev, op_failed};
use crate::tolerance::{Closeness, Tol, compare};
use crate::{Check, Profile};

/// One conv2d case: input `[n, c, h, w]`, filter `[k, c, r, s]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the fields are the conv2d shape letters of CONTRACT.md"
)]
pub struct ConvCase {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub r: usize,
    pub s: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    /// Interior-pointer offsets of input, filter and output, in elements.
    pub offsets: [usize; 3],
    /// NaN, infinities and zeros in the input.
    pub specials: bool,
    /// Seed of the data.
    pub seed: u64,
}

impl ConvCase {
    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.padding[0] - self.r) / self.stride[0] + 1,
            (self.w + 2 * self.padding[1] - self.s) / self.stride[1] + 1,
        )
    }
}

pub(crate) struct ConvSuite;

impl Suite for ConvSuite {
    type Case = ConvCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<ConvCase> {
        let sizes = (
            1..=p.conv_batch,
            0..=p.conv_channels,
            0..=p.conv_hw,
            0..=p.conv_hw,
            1..=p.conv_filters,
        );
        let filter = (
            1..=5usize,
            1..=5usize,
            prop::array::uniform2(1..=3usize),
            prop::array::uniform2(0..=3usize),
        );
        let rest = (
            prop::array::uniform3(0..4usize),
            prop::bool::weighted(0.1),
            any::<u64>(),
        );
        (sizes, filter, rest)
            .prop_map(
                |((n, c, h, w, k), (r, s, stride, padding), (offsets, specials, seed))| {
                    // Keep the filter inside the padded input, which the contract requires.
                    let r = r.min(h + 2 * padding[0]).max(1);
                    let s = s.min(w + 2 * padding[1]).max(1);
                    let (h, w) = (
                        h.max(r.saturating_sub(2 * padding[0])),
                        w.max(s.saturating_sub(2 * padding[1])),
                    );
                    ConvCase {
                        n,
                        c,
                        h,
                        w,
                        k,
                        r,
                        s,
                        stride,
                        padding,
                        offsets,
                        specials,
                        seed,
                    }
                },
            )
            .boxed()
    }

    fn tags(c: &ConvCase) -> Vec<&'static str> {
        if c.specials {
            vec!["non-finite"]
        } else {
            vec![]
        }
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &ConvCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let (oh, ow) = c.out_hw();
        let mut input = rng.fill(c.n * c.c * c.h * c.w, -1.0, 1.0);
        if c.specials {
            rng.sprinkle(&mut input, &NON_FINITE_AND_ZEROS, 0.02);
        }
        let filter = rng.fill(c.k * c.c * c.r * c.s, -1.0, 1.0);
        let out_len = c.n * c.k * oh * ow;
        let out0 = rng.sentinels(out_len);
        let mut dev = Dev::new(b);
        let i_dev = dev.put_f32(&mut rng, &input, c.offsets[0], 2)?;
        let f_dev = dev.put_f32(&mut rng, &filter, c.offsets[1], 2)?;
        let o_dev = dev.put_f32(&mut rng, &out0, c.offsets[2], 2)?;
        b.conv2d_forward(
            i_dev.ptr,
            &[c.n, c.c, c.h, c.w],
            f_dev.ptr,
            &[c.k, c.c, c.r, c.s],
            o_dev.ptr,
            &[c.n, c.k, oh, ow],
            &c.stride,
            &c.padding,
        )
        .map_err(|e| op_failed("conv2d_forward", e))?;
        let run = |inp: &[f32], fil: &[f32]| {
            let mut out = vec![0.0; out_len];
            if c.c * c.h * c.w > 0 {
                reference::conv2d(
                    inp,
                    [c.n, c.c, c.h, c.w],
                    fil,
                    [c.k, c.c, c.r, c.s],
                    &mut out,
                    c.stride,
                    c.padding,
                );
            }
            out
        };
        let want = run(&input, &filter);
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        let abs_sum = run(&abs(&input), &abs(&filter));
        let got = from_bytes(&dev.output(&o_dev, "output").await?);
        let len = c.c * c.r * c.s;
        let close = compare("output", &got, &want, |i| {
            Tol::dot(len, f64::from(abs_sum[i]))
        })
        .map_err(|m| m.to_string())?;
        dev.unchanged(&i_dev, "input").await?;
        dev.unchanged(&f_dev, "filter").await?;
        Ok(close)
    }
}
