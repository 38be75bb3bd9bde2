//! Matrix products for row-major callers, on the column-major (BLAS) `gemm`.
//!
//! A row-major `r x c` matrix with leading dimension `ld` is, byte for byte, the
//! column-major `c x r` matrix of its transpose, so the row-major
//! `C = alpha op(A) op(B) + beta C` is the column-major `C^T = alpha op(B)^T op(A)^T +
//! beta C^T`: one `gemm` with the operands, their leading dimensions and `m`/`n` swapped.
//! These helpers make that call, and check the arguments first *in the caller's terms*:
//! errors name `a`, `b`, `c`, `lda`, `ldb`, `ldc`, `m`, `n`, `k` as the caller passed them
//! (row-major), never BLAS's swapped ones. They are the methods
//! [`ComputeBackendExt::gemm_row_major`](crate::ComputeBackendExt::gemm_row_major),
//! [`matmul_row_major`](crate::ComputeBackendExt::matmul_row_major),
//! [`linear_row_major`](crate::ComputeBackendExt::linear_row_major) and
//! [`batched_matmul_row_major`](crate::ComputeBackendExt::batched_matmul_row_major).

use crate::{BackendError, BackendResult, BackendTranspose, ComputeBackend, invalid};

/// A row-major product, as the caller states it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowMajor {
    pub op: &'static str,
    pub trans_a: BackendTranspose,
    pub trans_b: BackendTranspose,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    /// Elements between consecutive a, b, c matrices, and how many (1: one product).
    pub strides: (usize, usize, usize),
    pub batch: usize,
}

impl RowMajor {
    /// One product of contiguous row-major matrices: every leading dimension is the
    /// column count of its matrix as stored.
    pub(crate) fn contiguous(
        op: &'static str,
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
        m: usize,
        k: usize,
        n: usize,
    ) -> Self {
        Self {
            op,
            trans_a,
            trans_b,
            m,
            n,
            k,
            lda: if trans_a.is_transposed() { m } else { k },
            ldb: if trans_b.is_transposed() { k } else { n },
            ldc: n,
            strides: (0, 0, 0),
            batch: 1,
        }
    }

    /// Checks the shapes in row-major terms: each leading dimension against the columns
    /// of its matrix as stored, and the batch strides of c.
    fn check(&self) -> BackendResult<()> {
        let op = self.op;
        let stored = |t: BackendTranspose, rows: usize, cols: usize| {
            if t.is_transposed() {
                (cols, rows)
            } else {
                (rows, cols)
            }
        };
        let (_, cols_a) = stored(self.trans_a, self.m, self.k);
        let (_, cols_b) = stored(self.trans_b, self.k, self.n);
        let shape = |t: BackendTranspose, r: &str, c: &str| {
            if t.is_transposed() {
                format!("{c} x {r}, transposed")
            } else {
                format!("{r} x {c}")
            }
        };
        for (name, ld, cols, what) in [
            (
                "lda",
                self.lda,
                cols_a,
                format!("a ({})", shape(self.trans_a, "m", "k")),
            ),
            (
                "ldb",
                self.ldb,
                cols_b,
                format!("b ({})", shape(self.trans_b, "k", "n")),
            ),
            ("ldc", self.ldc, self.n, "c (m x n)".to_string()),
        ] {
            if ld < cols.max(1) {
                return Err(invalid!(
                    "{op}: {name} {ld} < max(1, {cols}) columns of {what} as stored row-major"
                ));
            }
        }
        if self.batch > 1 && self.m > 0 && self.n > 0 {
            let extent_c = (self.m - 1)
                .checked_mul(self.ldc)
                .and_then(|e| e.checked_add(self.n))
                .ok_or_else(|| invalid!("{op}: size overflow computing c's extent"))?;
            if self.strides.2 < extent_c {
                return Err(invalid!(
                    "{op}: stride_c {} < {extent_c} elements spanned by each c (ldc * (m - 1) + n): the batches' c ranges overlap",
                    self.strides.2
                ));
            }
        }
        Ok(())
    }

    /// Runs it as one column-major gemm (or batched gemm) with a and b swapped.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run<B: ComputeBackend + ?Sized>(
        &self,
        backend: &B,
        alpha: f64,
        a: u64,
        b: u64,
        beta: f64,
        c: u64,
    ) -> BackendResult<()> {
        self.check()?;
        let r = if self.batch == 1 {
            backend.gemm(
                self.trans_b,
                self.trans_a,
                self.n,
                self.m,
                self.k,
                alpha,
                b,
                self.ldb,
                a,
                self.lda,
                beta,
                c,
                self.ldc,
            )
        } else {
            let (sa, sb, sc) = self.strides;
            backend.batched_gemm(
                self.trans_b,
                self.trans_a,
                self.n,
                self.m,
                self.k,
                alpha,
                b,
                self.ldb,
                sb,
                a,
                self.lda,
                sa,
                beta,
                c,
                self.ldc,
                sc,
                self.batch,
            )
        };
        r.map_err(|e| self.in_callers_terms(e))
    }

    /// Rewrites a gemm error (range, alignment and overlap errors: the shapes were checked
    /// in row-major terms already) to the caller's names: gemm's A is the caller's b, B is
    /// a, C is c.
    fn in_callers_terms(&self, e: BackendError) -> BackendError {
        let BackendError::InvalidArgument(m) = e else {
            return e;
        };
        let m = m
            .strip_prefix("batched_gemm: ")
            .or_else(|| m.strip_prefix("gemm: "))
            .unwrap_or(&m);
        // Placeholders keep A -> b and B -> a from undoing each other.
        let mut s = m.to_string();
        for (from, to) in [
            ("operand A", "\u{1}b"),
            ("operand B", "\u{1}a"),
            ("input A", "\u{2}b"),
            ("input B", "\u{2}a"),
            ("operand C", "\u{1}c"),
            ("output C", "\u{3}c"),
        ] {
            s = s.replace(from, to);
        }
        let s = s
            .replace('\u{1}', "operand ")
            .replace('\u{2}', "input ")
            .replace('\u{3}', "output ");
        invalid!("{}: {s}", self.op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BackendTranspose::{NoTrans, Trans};

    fn rm(
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
        lda: usize,
        ldb: usize,
        ldc: usize,
    ) -> RowMajor {
        RowMajor {
            op: "gemm_row_major",
            trans_a,
            trans_b,
            m: 2,
            n: 3,
            k: 4,
            lda,
            ldb,
            ldc,
            strides: (0, 0, 0),
            batch: 1,
        }
    }

    #[test]
    fn leading_dimensions_are_checked_against_row_major_columns() {
        rm(NoTrans, NoTrans, 4, 3, 3).check().unwrap();
        rm(Trans, Trans, 2, 4, 3).check().unwrap();
        let e = rm(NoTrans, NoTrans, 3, 3, 3)
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("gemm_row_major: lda 3 < max(1, 4) columns of a (m x k)"),
            "{e}"
        );
        let e = rm(NoTrans, Trans, 4, 3, 3).check().unwrap_err().to_string();
        assert!(
            e.contains("ldb 3 < max(1, 4) columns of b (n x k, transposed)"),
            "{e}"
        );
        let e = rm(NoTrans, NoTrans, 4, 3, 2)
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("ldc 2 < max(1, 3) columns of c"), "{e}");
    }

    #[test]
    fn gemm_errors_are_renamed_to_the_callers_operands() {
        let r = rm(NoTrans, NoTrans, 4, 3, 3);
        let e = r
            .in_callers_terms(invalid!(
                "gemm: output C range [0x1, 0x2) overlaps input A range [0x1, 0x2); operand B range [0x3, 0x4)"
            ))
            .to_string();
        assert!(
            e.contains("gemm_row_major: output c range [0x1, 0x2) overlaps input b range [0x1, 0x2); operand a range"),
            "{e}"
        );
        assert_eq!(
            r.in_callers_terms(BackendError::NotInitialized),
            BackendError::NotInitialized
        );
    }
}
