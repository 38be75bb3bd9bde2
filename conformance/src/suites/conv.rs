//! conv2d_forward against the oracle.

use backend_api::{ComputeBackend, DType};
use backend_cpu::reference;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Suite, storage};
use crate::data::{NON_FINITE_AND_ZEROS, Rng, f32_dtype, from_bytes, stored};
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

/// One `conv2d_forward_ex` case: `groups` groups of `cg` input channels and `kg` filters
/// each (so depthwise when `cg == kg == 1`), dilation, padding `[top, left, bottom,
/// right]`, sometimes a bias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the fields are the conv2d shape letters of CONTRACT.md"
)]
pub struct ConvExCase {
    pub n: usize,
    pub groups: usize,
    pub cg: usize,
    pub kg: usize,
    pub h: usize,
    pub w: usize,
    pub r: usize,
    pub s: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 4],
    pub dilation: [usize; 2],
    pub bias: bool,
    /// Interior-pointer offsets of input, filter, bias and output, in elements.
    pub offsets: [usize; 4],
    /// NaN, infinities and zeros in the input.
    pub specials: bool,
    /// Seed of the data.
    pub seed: u64,
    /// Storage of every operand (f16/bf16 through `Conv2dArgs::dtype`).
    #[serde(default = "f32_dtype")]
    pub dtype: DType,
}

impl ConvExCase {
    /// `[C, K]`.
    pub fn channels(&self) -> (usize, usize) {
        (self.groups * self.cg, self.groups * self.kg)
    }

    /// Output height and width (the contract's formula).
    pub fn out_hw(&self) -> (usize, usize) {
        let [t, l, b, rt] = self.padding;
        let [dh, dw] = self.dilation;
        (
            (self.h + t + b - dh * (self.r - 1) - 1) / self.stride[0] + 1,
            (self.w + l + rt - dw * (self.s - 1) - 1) / self.stride[1] + 1,
        )
    }
}

pub(crate) struct ConvExSuite;

impl Suite for ConvExSuite {
    type Case = ConvExCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<ConvExCase> {
        let groups = (
            1..=p.conv_batch,
            prop_oneof![2 => Just(1usize), 2 => 2..=4usize, 1 => 8..=24usize],
            prop_oneof![2 => Just(1usize), 1 => 2..=3usize, 1 => Just(0usize)],
            prop_oneof![2 => Just(1usize), 1 => 2..=3usize],
        );
        let geometry = (
            0..=p.conv_hw,
            0..=p.conv_hw,
            1..=4usize,
            1..=4usize,
            prop::array::uniform2(1..=3usize),
            prop::array::uniform4(0..=2usize),
            prop::array::uniform2(prop_oneof![2 => Just(1usize), 1 => 2..=3usize]),
        );
        let rest = (
            any::<bool>(),
            prop::array::uniform4(0..4usize),
            prop::bool::weighted(0.1),
            any::<u64>(),
            storage(),
        );
        (groups, geometry, rest)
            .prop_map(
                |(
                    (n, groups, cg, kg),
                    (h, w, r, s, stride, padding, dilation),
                    (bias, offsets, specials, seed, dtype),
                )| {
                    // Keep the dilated filter inside the padded input.
                    let span = |f: usize, d: usize| (f - 1) * d + 1;
                    let h = h.max(span(r, dilation[0]).saturating_sub(padding[0] + padding[2]));
                    let w = w.max(span(s, dilation[1]).saturating_sub(padding[1] + padding[3]));
                    ConvExCase {
                        n,
                        groups,
                        cg,
                        kg,
                        h,
                        w,
                        r,
                        s,
                        stride,
                        padding,
                        dilation,
                        bias,
                        offsets,
                        specials,
                        seed,
                        dtype,
                    }
                },
            )
            .boxed()
    }

    fn kind(c: &ConvExCase) -> String {
        let kind = match (c.cg, c.kg, c.groups) {
            (1, 1, g) if g > 1 => "depthwise",
            (_, _, 1) => "one group",
            _ => "grouped",
        };
        match c.dtype {
            DType::F32 => kind.into(),
            d => format!("{d} {kind}"),
        }
    }

    fn tags(c: &ConvExCase) -> Vec<&'static str> {
        if c.specials {
            vec!["non-finite"]
        } else {
            vec![]
        }
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &ConvExCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let (oh, ow) = c.out_hw();
        let (ch, k) = c.channels();
        let mut input = rng.fill(c.n * ch * c.h * c.w, -1.0, 1.0);
        if c.specials {
            rng.sprinkle(&mut input, &NON_FINITE_AND_ZEROS, 0.02);
        }
        let filter = rng.fill(k * c.cg * c.r * c.s, -1.0, 1.0);
        let bias = rng.fill(if c.bias { k } else { 0 }, -2.0, 2.0);
        // What a backend reads from f16/bf16 storage, so that the oracle sees it too.
        let dt = c.dtype;
        let (input, filter, bias) = (stored(dt, &input), stored(dt, &filter), stored(dt, &bias));
        let out_len = c.n * k * oh * ow;
        let out0 = rng.sentinels(out_len);
        let mut dev = Dev::new(b);
        let i_dev = dev.put_typed(&mut rng, dt, &input, c.offsets[0], 2)?;
        let f_dev = dev.put_typed(&mut rng, dt, &filter, c.offsets[1], 2)?;
        let b_dev = match c.bias {
            true => Some(dev.put_typed(&mut rng, dt, &bias, c.offsets[2], 2)?),
            false => None,
        };
        let o_dev = dev.put_typed(&mut rng, dt, &out0, c.offsets[3], 2)?;
        let mut args = backend_api::Conv2dArgs::new(
            i_dev.ptr,
            [c.n, ch, c.h, c.w],
            f_dev.ptr,
            [k, c.cg, c.r, c.s],
            o_dev.ptr,
            [c.n, k, oh, ow],
        )
        .stride(c.stride)
        .padding(c.padding)
        .dilation(c.dilation)
        .groups(c.groups)
        .dtype(dt);
        if let Some(r) = &b_dev {
            args = args.bias(r.ptr);
        }
        b.conv2d_forward_ex(&args)
            .map_err(|e| op_failed("conv2d_forward_ex", e))?;
        let run = |inp: &[f32], fil: &[f32], bias: &[f32]| {
            let mut out = vec![0.0; out_len];
            reference::conv2d_ex(
                inp,
                [c.n, ch, c.h, c.w],
                fil,
                [k, c.cg, c.r, c.s],
                bias,
                &mut out,
                reference::Conv {
                    out_hw: [oh, ow],
                    stride: c.stride,
                    top_left: [c.padding[0], c.padding[1]],
                    dilation: c.dilation,
                    groups: c.groups,
                },
            );
            out
        };
        let want = stored(dt, &run(&input, &filter, &bias));
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        let abs_sum = run(&abs(&input), &abs(&filter), &abs(&bias));
        let got = reference::decode(dt, &dev.output(&o_dev, "output").await?);
        // The bias is one more term of the sum.
        let len = c.cg * c.r * c.s + 1;
        let close = compare("output", &got, &want, |i| {
            Tol::dot(len, f64::from(abs_sum[i])).stored(dt)
        })
        .map_err(|m| m.to_string())?;
        dev.unchanged(&i_dev, "input").await?;
        dev.unchanged(&f_dev, "filter").await?;
        if let Some(r) = &b_dev {
            dev.unchanged(r, "bias").await?;
        }
        Ok(close)
    }
}
