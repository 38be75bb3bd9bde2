//! gemm, batched_gemm and gemm_ex against the oracle.

use backend_api::{BackendTranspose, ComputeBackend, ComputeBackendExt, DType, GemmArgs};
use backend_cpu::reference;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Suite, dim};
use crate::data::{NON_FINITE_AND_ZEROS, Rng};
use crate::harness::{Dev, op_failed};
use crate::tolerance::{Closeness, Tol, compare};
use crate::{Check, Profile};

/// One gemm-family case. A plain gemm has `batch == 1` and f32 inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmCase {
    /// How A is read.
    pub trans_a: BackendTranspose,
    /// How B is read.
    pub trans_b: BackendTranspose,
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// `lda - rows of A as stored`.
    pub pad_a: usize,
    /// `ldb - rows of B as stored`.
    pub pad_b: usize,
    /// `ldc - m`.
    pub pad_c: usize,
    /// Scale of the product.
    pub alpha: f64,
    /// Scale of the old C.
    pub beta: f64,
    /// Batch count.
    pub batch: usize,
    /// Elements between the end of one batch's A and the start of the next; `None`
    /// shares A between batches (stride 0).
    pub gap_a: Option<usize>,
    /// Likewise for B.
    pub gap_b: Option<usize>,
    /// Elements between consecutive C matrices beyond their extent.
    pub gap_c: usize,
    /// Element type of A (gemm_ex).
    pub a_dtype: DType,
    /// Element type of B (gemm_ex).
    pub b_dtype: DType,
    /// Element type of C (f16/bf16 through `batched_gemm_ex`).
    #[serde(default = "crate::data::f32_dtype")]
    pub c_dtype: DType,
    /// Interior-pointer offsets of A, B and C, in elements.
    pub offsets: [usize; 3],
    /// NaN, infinities and zeros sprinkled into A and B.
    pub specials: bool,
    /// C starts as NaN (with `beta == 0` it must not propagate).
    pub nan_c: bool,
    /// Seed of the data.
    pub seed: u64,
    /// Run a plain gemm through `gemm_row_major` instead: the same product stated
    /// row-major (operands, leading dimensions and `m`/`n` swapped), so the same oracle
    /// holds it.
    #[serde(default)]
    pub row_major: bool,
}

fn scalar() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), Just(-1.5), Just(0.75), -2.0..2.0f64]
}

fn transpose() -> impl Strategy<Value = BackendTranspose> {
    proptest::sample::select(BackendTranspose::ALL)
}

fn dtype() -> impl Strategy<Value = DType> {
    proptest::sample::select(DType::ALL)
}

/// Stored rows and columns of A (`m x k` as op(A)) and B (`k x n` as op(B)).
fn stored(c: &GemmCase) -> ((usize, usize), (usize, usize)) {
    let a = if c.trans_a.is_transposed() {
        (c.k, c.m)
    } else {
        (c.m, c.k)
    };
    let b = if c.trans_b.is_transposed() {
        (c.n, c.k)
    } else {
        (c.k, c.n)
    };
    (a, b)
}

/// Leading dimension, extent and batch stride of a stored operand.
fn layout(rows: usize, cols: usize, pad: usize, gap: Option<usize>) -> (usize, usize, usize) {
    let ld = rows.max(1) + pad;
    let extent = if rows == 0 || cols == 0 {
        0
    } else {
        ld * (cols - 1) + rows
    };
    (ld, extent, gap.map_or(0, |g| extent + g))
}

/// `count` column-major matrices: valid elements from `value`, everything else (padding
/// rows, gaps between batches) NaN, so a kernel that reads outside the matrix poisons C.
fn matrices(
    rows: usize,
    cols: usize,
    ld: usize,
    extent: usize,
    stride: usize,
    count: usize,
    mut value: impl FnMut() -> f32,
) -> Vec<f32> {
    let len = if count == 0 {
        0
    } else {
        stride * (count - 1) + extent
    };
    let mut v = vec![f32::NAN; len];
    for b in 0..count {
        for j in 0..cols {
            for i in 0..rows {
                v[b * stride + j * ld + i] = value();
            }
        }
        if stride == 0 {
            break;
        }
    }
    v
}

/// Rounds f32 values to `dtype` and back, so they are exactly representable in it.
fn representable(dtype: DType, v: &[f32]) -> Vec<f32> {
    reference::decode(dtype, &reference::encode(dtype, v))
}

pub(crate) struct GemmSuite;

impl Suite for GemmSuite {
    type Case = GemmCase;

    fn strategy(check: Check, p: &Profile) -> BoxedStrategy<GemmCase> {
        let max = if check == Check::BatchedGemm {
            p.gemm_max / 2
        } else {
            p.gemm_max
        };
        let batched = check == Check::BatchedGemm;
        let ex = check == Check::GemmEx;
        let shape = (
            transpose(),
            transpose(),
            dim(max),
            dim(max),
            dim(max),
            0..3usize,
            0..3usize,
            0..3usize,
        );
        let scalars = (scalar(), scalar());
        let gap = || prop_oneof![1 => Just(None), 3 => (0..4usize).prop_map(Some)];
        let batch = if batched {
            (0..=5usize, gap(), gap(), 0..4usize).boxed()
        } else if ex {
            // gemm_ex, or batched_gemm_ex of a few batches.
            prop_oneof![
                Just((1usize, Some(0usize), Some(0usize), 0usize)),
                (0..=3usize, gap(), gap(), 0..4usize),
            ]
            .boxed()
        } else {
            Just((1usize, Some(0usize), Some(0usize), 0usize)).boxed()
        };
        let dtypes = if ex {
            (dtype(), dtype(), super::storage()).boxed()
        } else {
            Just((DType::F32, DType::F32, DType::F32)).boxed()
        };
        let rest = (
            prop::array::uniform3(0..5usize),
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.7),
            any::<u64>(),
        );
        // Square problems are where reading A or B with the wrong transpose stays in
        // bounds; "aligned" problems (every size, leading dimension, offset and stride a
        // multiple of 4) are what fast vectorised kernels take.
        let layout_flags = (
            prop::bool::weighted(0.25),
            prop::bool::weighted(0.4),
            prop::bool::weighted(if batched || ex { 0.0 } else { 0.3 }),
        );
        (shape, scalars, batch, dtypes, rest, layout_flags)
            .prop_map(
                |(
                    (trans_a, trans_b, m, n, k, pad_a, pad_b, pad_c),
                    (alpha, beta),
                    (batch, gap_a, gap_b, gap_c),
                    (a_dtype, b_dtype, c_dtype),
                    (offsets, specials, nan_c, seed),
                    (square, aligned, row_major),
                )| {
                    let up = |v: usize| if aligned { v.div_ceil(4) * 4 } else { v };
                    let (n, k) = if square { (m, m) } else { (n, k) };
                    GemmCase {
                        trans_a,
                        trans_b,
                        m: up(m),
                        n: up(n),
                        k: up(k),
                        pad_a: up(pad_a),
                        pad_b: up(pad_b),
                        pad_c: up(pad_c),
                        alpha,
                        beta,
                        batch,
                        gap_a: gap_a.map(up),
                        gap_b: gap_b.map(up),
                        gap_c: up(gap_c),
                        a_dtype,
                        b_dtype,
                        c_dtype,
                        offsets: offsets.map(up),
                        specials,
                        // NaN in C only where beta == 0 says it must not propagate.
                        nan_c: nan_c && beta == 0.0,
                        seed,
                        row_major,
                    }
                },
            )
            .boxed()
    }

    fn kind(c: &GemmCase) -> String {
        match c.c_dtype {
            DType::F32 => format!("{}{} {}x{}", c.trans_a, c.trans_b, c.a_dtype, c.b_dtype),
            d => format!(
                "{}{} {}x{}->{d}",
                c.trans_a, c.trans_b, c.a_dtype, c.b_dtype
            ),
        }
    }

    fn tags(c: &GemmCase) -> Vec<&'static str> {
        let mut t = Vec::new();
        if c.specials {
            t.push("non-finite");
        }
        if c.nan_c {
            t.push("nan-c-beta-0");
        }
        if c.row_major {
            t.push("row-major");
        }
        if c.a_dtype == DType::F16 || c.b_dtype == DType::F16 {
            t.push("f16");
        }
        if c.a_dtype == DType::BF16 || c.b_dtype == DType::BF16 {
            t.push("bf16");
        }
        t
    }

    async fn run(b: &dyn ComputeBackend, check: Check, c: &GemmCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let ((ra, ca), (rb, cb)) = stored(c);
        let (lda, ext_a, stride_a) = layout(ra, ca, c.pad_a, c.gap_a);
        let (ldb, ext_b, stride_b) = layout(rb, cb, c.pad_b, c.gap_b);
        let (ldc, ext_c, stride_c) = layout(c.m, c.n, c.pad_c, Some(c.gap_c));
        let mut a = matrices(ra, ca, lda, ext_a, stride_a, c.batch, || {
            rng.uniform(-1.0, 1.0)
        });
        let mut bm = matrices(rb, cb, ldb, ext_b, stride_b, c.batch, || {
            rng.uniform(-1.0, 1.0)
        });
        if c.specials {
            // Only valid elements: padding and gaps are NaN already.
            for v in [&mut a, &mut bm] {
                let valid: Vec<usize> = (0..v.len()).filter(|&i| !v[i].is_nan()).collect();
                for _ in 0..valid.len().div_ceil(20) {
                    let i = valid[rng.below(valid.len())];
                    v[i] = NON_FINITE_AND_ZEROS[rng.below(NON_FINITE_AND_ZEROS.len())];
                }
            }
        }
        let (a, bm) = (representable(c.a_dtype, &a), representable(c.b_dtype, &bm));
        let c_len = if c.batch == 0 {
            0
        } else {
            stride_c * (c.batch - 1) + ext_c
        };
        let c0: Vec<f32> = (0..c_len)
            .map(|_| {
                if c.nan_c {
                    f32::NAN
                } else {
                    rng.uniform(-1.0, 1.0)
                }
            })
            .collect();
        let c0 = representable(c.c_dtype, &c0);

        let mut dev = Dev::new(b);
        let a_dev = dev.put(
            &mut rng,
            &reference::encode(c.a_dtype, &a),
            c.offsets[0] * c.a_dtype.size_bytes(),
            8,
        )?;
        let b_dev = dev.put(
            &mut rng,
            &reference::encode(c.b_dtype, &bm),
            c.offsets[1] * c.b_dtype.size_bytes(),
            8,
        )?;
        let c_dev = dev.put_typed(&mut rng, c.c_dtype, &c0, c.offsets[2], 3)?;
        let (ta, tb, m, n, k) = (c.trans_a, c.trans_b, c.m, c.n, c.k);
        let result = match check {
            // C^T = op(B)^T op(A)^T, stated row-major: the helper must swap back.
            Check::Gemm if c.row_major => b.gemm_row_major(
                tb, ta, n, m, k, c.alpha, b_dev.ptr, ldb, a_dev.ptr, lda, c.beta, c_dev.ptr, ldc,
            ),
            Check::Gemm => b.gemm(
                ta, tb, m, n, k, c.alpha, a_dev.ptr, lda, b_dev.ptr, ldb, c.beta, c_dev.ptr, ldc,
            ),
            Check::BatchedGemm => b.batched_gemm(
                ta, tb, m, n, k, c.alpha, a_dev.ptr, lda, stride_a, b_dev.ptr, ldb, stride_b,
                c.beta, c_dev.ptr, ldc, stride_c, c.batch,
            ),
            _ if c.batch == 1 && c.c_dtype == DType::F32 => b.gemm_ex(
                ta, tb, m, n, k, c.alpha, a_dev.ptr, c.a_dtype, lda, b_dev.ptr, c.b_dtype, ldb,
                c.beta, c_dev.ptr, ldc,
            ),
            _ => b.batched_gemm_ex(
                &GemmArgs::new(
                    ta, tb, m, n, k, c.alpha, a_dev.ptr, lda, b_dev.ptr, ldb, c.beta, c_dev.ptr,
                    ldc,
                )
                .with_dtypes(c.a_dtype, c.b_dtype)
                .with_c_dtype(c.c_dtype)
                .with_batch(stride_a, stride_b, stride_c, c.batch),
            ),
        };
        result.map_err(|e| op_failed(check.name(), e))?;

        // The oracle, and the same product over absolute values for the error bound.
        let mut want = c0.clone();
        let mut abs_sum: Vec<f32> = c0.iter().map(|x| x.abs()).collect();
        let (abs_a, abs_b): (Vec<f32>, Vec<f32>) = (
            a.iter().map(|x| x.abs()).collect(),
            bm.iter().map(|x| x.abs()).collect(),
        );
        for i in 0..c.batch {
            let (oa, ob, oc) = (i * stride_a, i * stride_b, i * stride_c);
            let (ta, tb) = (ta.is_transposed(), tb.is_transposed());
            let (a_s, b_s) = (a.get(oa..).unwrap_or(&[]), bm.get(ob..).unwrap_or(&[]));
            reference::gemm(
                ta,
                tb,
                m,
                n,
                k,
                c.alpha,
                a_s,
                lda,
                b_s,
                ldb,
                c.beta,
                &mut want[oc..],
                ldc,
            );
            let (a_s, b_s) = (
                abs_a.get(oa..).unwrap_or(&[]),
                abs_b.get(ob..).unwrap_or(&[]),
            );
            let (alpha, beta) = (c.alpha.abs(), c.beta.abs());
            reference::gemm(
                ta,
                tb,
                m,
                n,
                k,
                alpha,
                a_s,
                lda,
                b_s,
                ldb,
                beta,
                &mut abs_sum[oc..],
                ldc,
            );
        }
        let got = reference::decode(c.c_dtype, &dev.output(&c_dev, "C").await?);
        // Padding rows and gaps between batches must keep their bits.
        let computed = |i: usize| {
            let within = i % stride_c.max(1);
            within < ext_c && within % ldc < m
        };
        // C in f16/bf16: the f32 oracle's value rounded to it (gaps are exact already).
        let want = representable(c.c_dtype, &want);
        let close = compare("C", &got, &want, |i| {
            if computed(i) {
                Tol::dot(k, f64::from(abs_sum[i])).stored(c.c_dtype)
            } else {
                Tol::EXACT
            }
        })
        .map_err(|m| m.to_string())?;
        dev.unchanged(&a_dev, "A").await?;
        dev.unchanged(&b_dev, "B").await?;
        Ok(close)
    }
}
