//! `binary_broadcast` and `gather` against the oracle.

use backend_api::{BinaryOp, ComputeBackend, DType};
use backend_cpu::reference;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::elementwise::binary_tolerance;
use super::{Suite, storage};
use crate::data::{NON_FINITE_AND_ZEROS, Rng, f32_dtype, stored};
use crate::harness::{Dev, op_failed};
use crate::tolerance::{Closeness, Tol, compare};
use crate::{Check, Profile};

/// One `binary_broadcast` case. The inputs' shapes come from `base`: each drops its
/// first `drop` dimensions and has size 1 where its `ones` bit is set; the output shape
/// is their broadcast shape, computed here from NumPy's rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BroadcastCase {
    /// The function.
    pub op: BinaryOp,
    /// The shape the inputs are cut from (0 to 6 dimensions).
    pub base: Vec<usize>,
    /// Leading dimensions a and b leave out.
    pub drop: [usize; 2],
    /// Per dimension of `base`, bit `d`: a (`ones[0]`) or b has size 1 there.
    pub ones: [u8; 2],
    /// The output is a's range (0), b's (1), or its own (2); only where that input is
    /// not broadcast, else its own.
    pub alias: u8,
    /// Interior-pointer offsets of a, b and the output, in elements.
    pub offsets: [usize; 3],
    /// NaN, infinities and zeros in the inputs.
    pub specials: bool,
    /// Seed of the data.
    pub seed: u64,
    /// Storage of a, b and the output (f16/bf16 through `binary_broadcast_ex`).
    #[serde(default = "f32_dtype")]
    pub dtype: DType,
}

impl BroadcastCase {
    /// a's and b's shapes.
    pub fn shapes(&self) -> [Vec<usize>; 2] {
        [0, 1].map(|w| {
            let drop = self.drop[w].min(self.base.len());
            (drop..self.base.len())
                .map(|d| {
                    if self.ones[w] >> d & 1 == 1 {
                        1
                    } else {
                        self.base[d]
                    }
                })
                .collect()
        })
    }

    /// The broadcast shape of `a` and `b`, by NumPy's rule (they always broadcast: each
    /// dimension is `base`'s or 1).
    pub fn out_shape(&self) -> Vec<usize> {
        let [a, b] = self.shapes();
        let rank = a.len().max(b.len());
        let at = |s: &[usize], d: usize| {
            if d + s.len() < rank {
                1
            } else {
                s[d + s.len() - rank]
            }
        };
        (0..rank)
            .map(|d| match (at(&a, d), at(&b, d)) {
                (1, y) => y,
                (x, _) => x,
            })
            .collect()
    }
}

pub(crate) struct BroadcastSuite;

impl Suite for BroadcastSuite {
    type Case = BroadcastCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<BroadcastCase> {
        let max = p.elementwise_max;
        let dims = (0..=6usize).prop_flat_map(|rank| {
            prop::collection::vec(
                prop_oneof![6 => 1..=4usize, 1 => Just(0usize), 2 => 5..=40usize, 1 => 100..=300usize],
                rank,
            )
        });
        (
            proptest::sample::select(BinaryOp::ALL),
            dims,
            prop::array::uniform2(0..=3usize),
            prop::array::uniform2(any::<u8>()),
            0..3u8,
            prop::array::uniform3(0..4usize),
            prop::bool::weighted(0.2),
            (any::<u64>(), storage()),
        )
            .prop_map(
                move |(op, mut base, drop, ones, alias, offsets, specials, (seed, dtype))| {
                    // Keep the output within the profile's size: shrink the largest
                    // dimensions first.
                    while base.iter().product::<usize>() > max {
                        let big = (0..base.len()).max_by_key(|&d| base[d]).expect("non-empty");
                        base[big] = base[big].div_ceil(4);
                    }
                    BroadcastCase {
                        op,
                        base,
                        drop,
                        ones,
                        alias,
                        offsets,
                        specials,
                        seed,
                        dtype,
                    }
                },
            )
            .boxed()
    }

    fn kind(c: &BroadcastCase) -> String {
        match c.dtype {
            DType::F32 => c.op.name().to_string(),
            d => format!("{d} {}", c.op.name()),
        }
    }

    fn tags(c: &BroadcastCase) -> Vec<&'static str> {
        let mut t = Vec::new();
        if c.specials {
            t.push("non-finite");
        }
        if c.alias < 2 {
            t.push("in place");
        }
        t
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &BroadcastCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let [a_shape, b_shape] = c.shapes();
        let out_shape = c.out_shape();
        let count = |s: &[usize]| s.iter().product::<usize>();
        let (na, nb, n) = (count(&a_shape), count(&b_shape), count(&out_shape));
        let mut a = rng.fill(na, -4.0, 4.0);
        let mut bv = rng.fill(nb, -4.0, 4.0);
        if c.op == BinaryOp::Pow {
            // Integer exponents, so negative bases are meaningful.
            bv.iter_mut().for_each(|v| *v = v.round());
        }
        if c.specials {
            for v in [&mut a, &mut bv] {
                rng.inject(v, &NON_FINITE_AND_ZEROS, 0.05);
            }
        }
        let dt = c.dtype;
        let (a, bv) = (stored(dt, &a), stored(dt, &bv));
        // In place only on an input that is not broadcast: the one asked for, else the
        // other one where it is not (so that in-place calls with broadcasting are common).
        let alias = match c.alias {
            0 if na == n => 0,
            1 if nb == n => 1,
            0 | 1 if na == n => 0,
            0 | 1 if nb == n => 1,
            _ => 2,
        };
        let mut dev = Dev::new(b);
        let a_dev = dev.put_typed(&mut rng, dt, &a, c.offsets[0], 2)?;
        let b_dev = dev.put_typed(&mut rng, dt, &bv, c.offsets[1], 2)?;
        let out_dev = match alias {
            0 => a_dev.clone(),
            1 => b_dev.clone(),
            _ => {
                let s = rng.sentinels(n);
                dev.put_typed(&mut rng, dt, &s, c.offsets[2], 2)?
            }
        };
        let (ap, bp, op) = (a_dev.ptr, b_dev.ptr, out_dev.ptr);
        match dt {
            DType::F32 => b.binary_broadcast(c.op, ap, &a_shape, bp, &b_shape, op, &out_shape),
            _ => b.binary_broadcast_ex(c.op, dt, ap, &a_shape, bp, &b_shape, op, &out_shape),
        }
        .map_err(|e| {
            op_failed(
                &format!(
                    "binary_broadcast {} {a_shape:?} {b_shape:?} -> {out_shape:?}",
                    c.op
                ),
                e,
            )
        })?;
        // Rounded once from f64 to the storage type.
        let want = reference::binary_broadcast64(c.op, &a, &a_shape, &bv, &b_shape, &out_shape);
        let want = reference::decode(dt, &reference::encode64(dt, &want));
        let got = reference::decode(dt, &dev.output(&out_dev, "output").await?);
        let close = compare(
            &format!("{} {a_shape:?} {b_shape:?} -> {out_shape:?} output", c.op),
            &got,
            &want,
            |_| binary_tolerance(c.op).stored(dt),
        )
        .map_err(|m| m.to_string())?;
        for (r, what, w) in [(&a_dev, "a", 0), (&b_dev, "b", 1)] {
            if alias != w {
                dev.unchanged(r, what).await?;
            }
        }
        Ok(close)
    }
}

/// One `gather` case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatherCase {
    /// Rows of the table.
    pub rows: usize,
    /// Elements per row.
    pub cols: usize,
    /// Rows gathered.
    pub n: usize,
    /// Fraction (of 8) of the indices that are out of range.
    pub out_of_range: u8,
    /// Interior-pointer offsets of the table, the indices and the output, in elements.
    pub offsets: [usize; 3],
    /// NaN, infinities and zeros in the table (copied bit for bit).
    pub specials: bool,
    /// Seed of the data.
    pub seed: u64,
    /// Storage of the table and the output (f16/bf16 through `gather_ex`).
    #[serde(default = "f32_dtype")]
    pub dtype: DType,
}

pub(crate) struct GatherSuite;

impl Suite for GatherSuite {
    type Case = GatherCase;

    fn strategy(_: Check, _: &Profile) -> BoxedStrategy<GatherCase> {
        (
            prop_oneof![3 => 0..=40usize, 1 => 41..=600usize],
            prop_oneof![3 => 0..=20usize, 1 => 200..=300usize],
            prop_oneof![3 => 0..=40usize, 1 => 41..=200usize],
            prop_oneof![2 => Just(0u8), 2 => 1..=3u8, 1 => Just(8u8)],
            prop::array::uniform3(0..4usize),
            prop::bool::weighted(0.2),
            (any::<u64>(), storage()),
        )
            .prop_map(
                |(rows, cols, n, out_of_range, offsets, specials, (seed, dtype))| GatherCase {
                    rows,
                    cols,
                    n,
                    out_of_range,
                    offsets,
                    specials,
                    seed,
                    dtype,
                },
            )
            .boxed()
    }

    fn kind(c: &GatherCase) -> String {
        match c.dtype {
            DType::F32 => String::new(),
            d => d.to_string(),
        }
    }

    fn tags(c: &GatherCase) -> Vec<&'static str> {
        let mut t = Vec::new();
        if c.specials {
            t.push("non-finite");
        }
        if c.out_of_range > 0 {
            t.push("out of range");
        }
        t
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &GatherCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let mut table = rng.fill(c.rows * c.cols, -10.0, 10.0);
        if c.specials {
            rng.inject(&mut table, &NON_FINITE_AND_ZEROS, 0.05);
        }
        let dt = c.dtype;
        let table = stored(dt, &table);
        let indices: Vec<u32> = (0..c.n)
            .map(|_| {
                if rng.below(8) < usize::from(c.out_of_range) || c.rows == 0 {
                    // Just past the end, far past it, and the largest u32.
                    [
                        c.rows as u32,
                        c.rows as u32 + 1 + rng.below(1000) as u32,
                        u32::MAX,
                    ][rng.below(3)]
                } else {
                    rng.below(c.rows) as u32
                }
            })
            .collect();
        let index_bytes: Vec<u8> = indices.iter().flat_map(|i| i.to_le_bytes()).collect();
        let mut dev = Dev::new(b);
        let t_dev = dev.put_typed(&mut rng, dt, &table, c.offsets[0], 2)?;
        let i_dev = dev.put(&mut rng, &index_bytes, 4 * c.offsets[1], 8)?;
        let i_ptr = i_dev.ptr;
        let s = rng.sentinels(c.n * c.cols);
        let out_dev = dev.put_typed(&mut rng, dt, &s, c.offsets[2], 2)?;
        let (t, o) = (t_dev.ptr, out_dev.ptr);
        match dt {
            DType::F32 => b.gather(t, c.rows, c.cols, i_ptr, c.n, o),
            _ => b.gather_ex(dt, t, c.rows, c.cols, i_ptr, c.n, o),
        }
        .map_err(|e| op_failed(&format!("gather {dt}"), e))?;
        let mut want = vec![0.0f32; c.n * c.cols];
        reference::gather(&table, c.rows, c.cols, &indices, &mut want);
        let got = reference::decode(dt, &dev.output(&out_dev, "output").await?);
        let close = compare("gather output", &got, &want, |_| Tol::EXACT).map_err(|m| {
            let row = m.index / c.cols.max(1);
            format!("{m} (output row {row}, index {})", indices[row])
        })?;
        dev.unchanged(&t_dev, "table").await?;
        dev.unchanged(&i_dev, "indices").await?;
        Ok(close)
    }
}
