//! The model's rules: whether a call is valid, and the effects the oracle predicts for
//! the valid ones.

use backend_api::{BackendTranspose, ReduceOp};
use backend_cpu::reference;

use super::machine::Machine;
use super::memory::{Loc, Value};
use crate::tolerance::{Tol, reduce_tolerance};

/// Allocation sizes from here up are refused by every device: `OutOfMemory` is required.
pub const HUGE_ALLOC: u64 = 1 << 40;

/// Is `x` an input whose result every device computes within the conformance
/// tolerances? Zeros, NaN and infinities are tested by the suite; finite values must be
/// normal (subnormals may be flushed) and moderate.
pub(super) fn tame(x: f32) -> bool {
    !x.is_finite() || x == 0.0 || (x.is_normal() && (2f32.powi(-60)..=64.0).contains(&x.abs()))
}

pub(super) fn tame_finite(x: f32) -> bool {
    x.is_finite() && tame(x)
}

/// The range `[p, p + bytes)` as u128 (never overflows).
pub(super) fn ranges_overlap(p: u64, q: u64, bytes_p: u128, bytes_q: u128) -> bool {
    let (p, q) = (u128::from(p), u128::from(q));
    p < q + bytes_q && q < p + bytes_p
}

pub(super) fn trans(t: BackendTranspose) -> bool {
    !matches!(t, BackendTranspose::NoTrans)
}

/// What the model expects of a call.
pub(super) enum Expect {
    /// Success.
    Ok,
    /// `InvalidArgument`, for this reason.
    Invalid(String),
    /// `OutOfMemory`.
    OutOfMemory,
}

impl Machine<'_> {
    // -----------------------------------------------------------------------------------
    // The model's rules

    /// Locates `[ptr, ptr + bytes)` (`bytes > 0`) in one live allocation, `align`-aligned.
    pub(super) fn locate(
        &self,
        name: &str,
        ptr: u64,
        bytes: u128,
        align: u64,
    ) -> Result<Loc, String> {
        if !ptr.is_multiple_of(align) {
            return Err(format!("{name} {ptr:#x} is not {align}-byte aligned"));
        }
        if let Some((&base, &i)) = self.by_base.range(..=ptr).next_back() {
            let off = ptr - base;
            if u128::from(off) + bytes <= self.live[i].size as u128 {
                return Ok((i, off as usize));
            }
        }
        Err(format!(
            "{name} [{ptr:#x}, +{bytes}) is not inside one live allocation"
        ))
    }

    pub(super) fn read_f32s(&self, (i, off): Loc, n: usize) -> Vec<Option<f32>> {
        let mem = &self.live[i].mem;
        (0..n).map(|e| mem.known_f32(off + 4 * e)).collect()
    }

    pub(super) fn want_of(loc: &Result<Option<Loc>, String>) -> Expect {
        match loc {
            Ok(_) => Expect::Ok,
            Err(why) => Expect::Invalid(why.clone()),
        }
    }

    pub(super) fn want_dtod(
        &self,
        dst: u64,
        src: u64,
        bytes: usize,
    ) -> (Option<(Loc, Loc)>, Expect) {
        if bytes == 0 {
            return (None, Expect::Ok);
        }
        let len = bytes as u128;
        if ranges_overlap(dst, src, len, len) && dst != src {
            return (None, Expect::Invalid("src and dst overlap".into()));
        }
        match (
            self.locate("src", src, len, 1),
            self.locate("dst", dst, len, 1),
        ) {
            (Ok(s), Ok(d)) => ((dst != src).then_some((s, d)), Expect::Ok),
            (Err(why), _) | (_, Err(why)) => (None, Expect::Invalid(why)),
        }
    }

    /// unary and binary: every input and the output `4 * n` bytes, f32-aligned, in live
    /// allocations; the output equal to an input's range or disjoint from it.
    pub(super) fn want_elementwise(
        &self,
        inputs: &[(&str, u64)],
        output: u64,
        n: usize,
    ) -> (Option<Vec<Loc>>, Expect) {
        if n == 0 {
            return (None, Expect::Ok);
        }
        let bytes = 4 * n as u128;
        let mut locs = Vec::new();
        for &(name, p) in inputs.iter().chain(&[("output", output)]) {
            match self.locate(name, p, bytes, 4) {
                Ok(l) => locs.push(l),
                Err(why) => return (None, Expect::Invalid(why)),
            }
        }
        for &(name, p) in inputs {
            if p != output && ranges_overlap(p, output, bytes, bytes) {
                return (
                    None,
                    Expect::Invalid(format!("output partially overlaps {name}")),
                );
            }
        }
        (Some(locs), Expect::Ok)
    }

    pub(super) fn want_reduce(
        &self,
        input: u64,
        output: u64,
        shape: &[usize],
        axis: usize,
    ) -> (Option<ModelReduce>, Expect) {
        let invalid = |why: String| (None, Expect::Invalid(why));
        if shape.is_empty() {
            return invalid("empty shape".into());
        }
        if axis >= shape.len() {
            return invalid(format!("axis {axis} out of range for {shape:?}"));
        }
        let prod = |d: &[usize]| d.iter().fold(1u128, |a, &x| a.saturating_mul(x as u128));
        let (outer, inner, total) = (prod(&shape[..axis]), prod(&shape[axis + 1..]), prod(shape));
        if total > u128::from(u64::MAX) {
            return invalid("size overflow".into());
        }
        let out = outer * inner;
        if out == 0 {
            return (None, Expect::Ok);
        }
        let o = match self.locate("output", output, 4 * out, 4) {
            Ok(l) => l,
            Err(why) => return invalid(why),
        };
        let i = if total > 0 {
            match self.locate("input", input, 4 * total, 4) {
                Ok(l) if !ranges_overlap(input, output, 4 * total, 4 * out) => Some(l),
                Ok(_) => return invalid("output overlaps input".into()),
                Err(why) => return invalid(why),
            }
        } else {
            None
        };
        let plan = ModelReduce {
            input: i,
            output: o,
            outer: outer as usize,
            len: shape[axis],
            inner: inner as usize,
        };
        (Some(plan), Expect::Ok)
    }

    pub(super) fn apply_reduce(&mut self, f: ReduceOp, p: &ModelReduce) {
        let x = match p.input {
            Some(l) => self.read_f32s(l, p.outer * p.len * p.inner),
            None => Vec::new(),
        };
        let exact = self.opts.exact;
        for o in 0..p.outer {
            for ii in 0..p.inner {
                let vals: Option<Vec<f32>> = (0..p.len)
                    .map(|l| x[(o * p.len + l) * p.inner + ii])
                    .collect();
                let v = match vals {
                    Some(vals)
                        if exact
                            || vals.iter().all(|&v| {
                                tame(v)
                                    && (f != ReduceOp::Prod || !(v.abs() > 2.0 && v.is_finite()))
                            }) =>
                    {
                        let mut out = [0.0f32];
                        reference::reduce(f, &vals, &mut out, 1, p.len, 1);
                        if exact {
                            Value::Exact(out[0])
                        } else {
                            let abs: f64 = vals.iter().map(|v| f64::from(v.abs())).sum();
                            Value::Approx(out[0], reduce_tolerance(f, p.len, abs))
                        }
                    }
                    _ => Value::Unknown,
                };
                let (oi, ooff) = p.output;
                self.live[oi]
                    .mem
                    .write_value(ooff + 4 * (o * p.inner + ii), v);
            }
        }
    }

    pub(super) fn want_gemm(
        &self,
        g: &ModelGemmCall,
        a: u64,
        b: u64,
        c: u64,
    ) -> (Option<ModelGemm>, Expect) {
        let invalid = |why: String| (None, Expect::Invalid(why));
        let (rows_a, cols_a) = if g.ta { (g.k, g.m) } else { (g.m, g.k) };
        let (rows_b, cols_b) = if g.tb { (g.n, g.k) } else { (g.k, g.n) };
        if g.lda < rows_a.max(1) || g.ldb < rows_b.max(1) || g.ldc < g.m.max(1) {
            return invalid("a leading dimension is too small".into());
        }
        if g.m == 0 || g.n == 0 {
            return (None, Expect::Ok);
        }
        let extent = |rows: usize, cols: usize, ld: usize| {
            4 * (ld as u128 * (cols as u128 - 1) + rows as u128)
        };
        let ext_c = extent(g.m, g.n, g.ldc);
        let lc = match self.locate("C", c, ext_c, 4) {
            Ok(l) => l,
            Err(why) => return invalid(why),
        };
        let mut ab = None;
        if g.alpha != 0.0 && g.k != 0 {
            let (ext_a, ext_b) = (extent(rows_a, cols_a, g.lda), extent(rows_b, cols_b, g.ldb));
            let la = match self.locate("A", a, ext_a, 4) {
                Ok(l) => l,
                Err(why) => return invalid(why),
            };
            let lb = match self.locate("B", b, ext_b, 4) {
                Ok(l) => l,
                Err(why) => return invalid(why),
            };
            if ranges_overlap(c, a, ext_c, ext_a) || ranges_overlap(c, b, ext_c, ext_b) {
                return invalid("C overlaps A or B".into());
            }
            ab = Some((la, lb, (ext_a / 4) as usize, (ext_b / 4) as usize));
        }
        let plan = ModelGemm {
            ab,
            c: lc,
            ext_c: (ext_c / 4) as usize,
        };
        (Some(plan), Expect::Ok)
    }

    pub(super) fn apply_gemm(&mut self, g: &ModelGemmCall, p: ModelGemm) {
        let (a, b) = match p.ab {
            Some((la, lb, ea, eb)) => (self.read_f32s(la, ea), self.read_f32s(lb, eb)),
            None => (Vec::new(), Vec::new()),
        };
        let c = self.read_f32s(p.c, p.ext_c);
        let reads_ab = p.ab.is_some();
        let exact = self.opts.exact;
        let ok = |v: Option<f32>| v.filter(|&x| exact || tame_finite(x));
        let mut out = Vec::with_capacity(g.m * g.n);
        for j in 0..g.n {
            for i in 0..g.m {
                // Row i of op(A), column j of op(B) and, when read, C(i, j).
                let row: Option<Vec<f32>> = if reads_ab {
                    (0..g.k)
                        .map(|l| {
                            ok(if g.ta {
                                a[l + i * g.lda]
                            } else {
                                a[i + l * g.lda]
                            })
                        })
                        .collect()
                } else {
                    Some(Vec::new())
                };
                let col: Option<Vec<f32>> = if reads_ab {
                    (0..g.k)
                        .map(|l| {
                            ok(if g.tb {
                                b[j + l * g.ldb]
                            } else {
                                b[l + j * g.ldb]
                            })
                        })
                        .collect()
                } else {
                    Some(Vec::new())
                };
                let old = if g.beta != 0.0 {
                    ok(c[i + j * g.ldc])
                } else {
                    Some(0.0)
                };
                let v = match (row, col, old) {
                    (Some(row), Some(col), Some(old)) => {
                        // The oracle's own gemm on the 1 x 1 problem: same order of terms.
                        let one = |alpha: f64, beta: f64, row: &[f32], col: &[f32], old: f32| {
                            let mut cc = [old];
                            reference::gemm(
                                false,
                                false,
                                1,
                                1,
                                g.k,
                                alpha,
                                row,
                                1,
                                col,
                                g.k.max(1),
                                beta,
                                &mut cc,
                                1,
                            );
                            cc[0]
                        };
                        let want = one(g.alpha, g.beta, &row, &col, old);
                        if exact {
                            Value::Exact(want)
                        } else {
                            let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
                            let bound = one(
                                g.alpha.abs(),
                                g.beta.abs(),
                                &abs(&row),
                                &abs(&col),
                                old.abs(),
                            );
                            Value::Approx(want, Tol::dot(g.k, f64::from(bound)))
                        }
                    }
                    _ => Value::Unknown,
                };
                out.push((i + j * g.ldc, v));
            }
        }
        let (ci, coff) = p.c;
        for (e, v) in out {
            self.live[ci].mem.write_value(coff + 4 * e, v);
        }
    }
}

pub(super) struct ModelReduce {
    input: Option<Loc>,
    output: Loc,
    outer: usize,
    len: usize,
    inner: usize,
}

pub(super) struct ModelGemmCall {
    pub(super) ta: bool,
    pub(super) tb: bool,
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) alpha: f64,
    pub(super) lda: usize,
    pub(super) ldb: usize,
    pub(super) beta: f64,
    pub(super) ldc: usize,
}

pub(super) struct ModelGemm {
    /// A and B with their extents in elements, when read.
    ab: Option<(Loc, Loc, usize, usize)>,
    c: Loc,
    ext_c: usize,
}
