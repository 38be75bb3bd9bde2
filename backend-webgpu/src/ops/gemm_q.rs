//! gemm_q: `kernels/gemm_q.wgsl`, a workgroup per 8 rows of A and 8 columns of B; for
//! many columns (prefill), the weights dequantized into an f32 temporary and the tiled
//! f32 gemm.

use backend_api::validate::{Batch, GemmPlan, GemmQPlan};
use backend_api::{BackendError, BackendResult, DType, Operand, QuantFormat};
use bytemuck::bytes_of;

use super::u32_saturating;
use crate::kernels::{Kernel, PipelineKey, params};
use crate::{Ctx, GemmQDecode, State};

/// Rows of one workgroup's tile (`ROWS` in gemm_q.wgsl).
const ROWS: u64 = 8;
/// Warps sharing a row in `decode_vec` (`ROW_WARPS`): a workgroup of 256 threads takes
/// `ROWS / ROW_WARPS` rows.
const ROW_WARPS: u64 = 4;
/// Warps sharing a set of rows in `decode_rows` (`WARPS_K`): a workgroup holds
/// `8 / WARPS_K` sets.
const WARPS_K: u64 = 4;

/// Columns of one workgroup's tile (`COLS`): the smallest of 1, 2, 4, 8 that holds `n`.
fn tile_columns(n: usize) -> u64 {
    (n.max(1).next_power_of_two() as u64).min(8)
}

/// Rows a thread of `decode_rows` takes (`RPT`) for `cols` columns: its sums (rows
/// times columns) are at most 8.
fn rows_per_thread(cols: u64) -> u64 {
    (8 / cols).min(4)
}

/// Rows from which `decode_rows` runs rather than `decode_vec`. On an H100 (k = 4096)
/// `decode_rows` took 18.6 us at 4096 rows where `decode_vec` took 25.0, but 15.0 at 64
/// and 1024 rows where `decode_vec` took 12.3: with few rows, its 4 rows a thread leave
/// too few workgroups to cover the SMs' latency (docs/PERFORMANCE.md, session 10).
const DECODE_ROWS_FROM: usize = 2048;

/// The kernel. Above 4 columns: where B's columns start on 4 elements (`b_vec4`),
/// `decode_rows` over tiles of 4 columns (on an H100 at 8 columns 115 us against `main`'s
/// 555), else `main` (a lane per block, each block dequantized once for 8 columns). Up
/// to 4, where `b_vec4`, `decode_rows` (RPT rows a thread) from `DECODE_ROWS_FROM` rows
/// and `decode_vec` (4 warps a row) below; else `decode_row` (32 lanes per row, B read
/// as scalars). `forced` names another (`vec` and `rows` only where B allows them).
fn entry(m: usize, n: usize, b_vec4: bool, forced: Option<GemmQDecode>) -> &'static str {
    if n > 4 {
        // Up to PREFILL_COLUMNS (from there the prefill path runs instead): tiles of 4
        // columns, each reading the weights once.
        return if b_vec4 { "decode_rows" } else { "main" };
    }
    match (forced, b_vec4) {
        (Some(GemmQDecode::Decode), _) => "decode",
        (Some(GemmQDecode::Row), _) | (_, false) => "decode_row",
        (Some(GemmQDecode::Vec), true) => "decode_vec",
        (Some(GemmQDecode::Rows), true) => "decode_rows",
        (None, true) if m >= DECODE_ROWS_FROM => "decode_rows",
        (None, true) => "decode_vec",
    }
}

/// True when B can be read 4 elements a load (a vec4 of f32, two words of f16): starting
/// on 4 elements of its binding, and each column too (one column, or `ldb` a multiple of
/// 4).
fn b_vec4(p: &GemmQPlan, b_byte: u64) -> bool {
    b_byte.is_multiple_of(4 * p.b_dtype.size_bytes() as u64)
        && (p.n <= 1 || p.ldb.is_multiple_of(4))
}

/// Columns from which the product dequantizes the weights once into f32 and runs the
/// tiled gemm, instead of dequantizing each block once per tile of columns. On an H100
/// (4096 x 4096 Q4_0) the prefill path took 874-881 us from 16 to 64 columns and 1.04 ms
/// at 512, `decode_rows` in tiles of 4 columns 216 us at 16, 414 at 32, 814 at 64 and
/// 6.3 ms at 512 (docs/PERFORMANCE.md, session 11).
pub(crate) const PREFILL_COLUMNS: usize = 65;

/// True when `p` takes the prefill path: enough columns, a product to compute, and the
/// f32 weights within one binding.
pub(crate) fn prefill(p: &GemmQPlan, max_binding: u64) -> bool {
    p.n >= PREFILL_COLUMNS
        && p.reads_ab()
        && (p.m as u64)
            .checked_mul(p.k as u64)
            .and_then(|e| e.checked_mul(4))
            .is_some_and(|bytes| bytes <= max_binding && bytes / 4 <= u64::from(u32::MAX))
}

/// The f32 gemm of the prefill path: `C = alpha * W * B + beta * C` with W the
/// dequantized weights at `w`, row-major `m x k` (column-major `k x m`, read transposed).
pub(crate) fn prefill_gemm(p: &GemmQPlan, w: Operand) -> GemmPlan {
    GemmPlan {
        op: p.op,
        trans_a: true,
        trans_b: false,
        m: p.m,
        n: p.n,
        k: p.k,
        lda: p.k,
        ldb: p.ldb,
        ldc: p.ldc,
        alpha: p.alpha,
        beta: p.beta,
        a_dtype: DType::F32,
        b_dtype: p.b_dtype,
        c_dtype: DType::F32,
        batch: Batch::ONE,
        a: Some(w),
        b: p.b,
        c: p.c,
    }
}

/// The `FORMAT` override of a block format.
fn format_code(f: QuantFormat) -> f64 {
    match f {
        QuantFormat::Q8_0 => 0.0,
        QuantFormat::Q4_0 => 1.0,
    }
}

impl Ctx {
    /// The prefill path's first step: A dequantized into `out` (`m * k` f32, row-major).
    pub(crate) fn gemm_q_dequantize(&self, p: &GemmQPlan, out: &Operand) -> BackendResult<()> {
        let limits = &self.limits;
        let mut st = self.lock();
        let o = st.bind(limits, p.op, out)?;
        let a = st.bind_opt(limits, p.op, p.a.as_ref())?;
        let prm = params::GemmQ {
            m: u32_saturating(p.m),
            n: u32_saturating(p.n),
            k: u32_saturating(p.k),
            a_byte: a.byte as u32,
            b_off: 0,
            c_off: o.elem(4),
            ldb: 0,
            ldc: 0,
            alpha: 1.0,
            beta: 0.0,
            flags: 1,
            _pad: 0,
        };
        let grid = limits.grid(((p.m * p.k / 4) as u64).div_ceil(256))?;
        let key = PipelineKey::new(Kernel::GemmQ, "dequant").with("FORMAT", format_code(p.format));
        let State { stream, .. } = &mut *st;
        self.dispatch(stream, &key, bytes_of(&prm), &[(1, &a), (3, &o)], grid)
    }

    pub(crate) fn gemm_q(&self, p: &GemmQPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!("gemm_q", m = p.m, n = p.n, k = p.k).entered();
        let limits = &self.limits;
        let mut st = self.lock();
        let c = st.bind(limits, p.op, &p.c)?;
        let a = st.bind_opt(limits, p.op, p.a.as_ref())?;
        // Rounded to 16 bytes for `decode_vec`'s vec4 view (inside the block).
        let b = match &p.b {
            Some(o) => st.bind16(limits, p.op, o)?,
            None => st.stream.unused(),
        };
        let b_elem = p.b_dtype.size_bytes() as u64;
        let prm = params::GemmQ {
            m: u32_saturating(p.m),
            n: u32_saturating(p.n),
            k: u32_saturating(p.k),
            a_byte: a.byte as u32,
            b_off: (b.byte / b_elem) as u32,
            c_off: c.elem(4),
            ldb: u32_saturating(p.ldb),
            ldc: u32_saturating(p.ldc),
            alpha: p.alpha as f32,
            beta: p.beta as f32,
            flags: u32::from(p.reads_ab()) | (u32::from(p.beta != 0.0) << 1),
            _pad: 0,
        };
        let entry = entry(p.m, p.n, b_vec4(p, b.byte), self.tuning.gemm_q_decode);
        let cols = if entry == "main" {
            tile_columns(p.n)
        } else {
            tile_columns(p.n).min(4)
        };
        let key = PipelineKey::new(Kernel::GemmQ, entry)
            .with("FORMAT", format_code(p.format))
            .with("B_F16", f64::from(u8::from(p.b_dtype == DType::F16)))
            .with("COLS", cols as f64);
        // `decode_vec` gives a row ROW_WARPS warps, `decode_rows` a set of rows WARPS_K:
        // a workgroup takes fewer rows, and the kernel is built for them.
        let (rows, key) = match entry {
            "decode_vec" => (ROWS / ROW_WARPS, key.with("ROW_WARPS", ROW_WARPS as f64)),
            "decode_rows" => {
                let rpt = rows_per_thread(cols);
                let key = key.with("RPT", rpt as f64).with("WARPS_K", WARPS_K as f64);
                (rpt * (8 / WARPS_K), key)
            }
            _ => (ROWS, key),
        };
        let (gx, gy) = ((p.m as u64).div_ceil(rows), (p.n as u64).div_ceil(cols));
        let max = u64::from(limits.max_groups);
        if gx > max || gy > max {
            return Err(BackendError::Unsupported(format!(
                "{}: {gx} x {gy} workgroups exceed this adapter's {max} per dimension",
                p.op
            )));
        }
        let State { stream, .. } = &mut *st;
        self.dispatch(
            stream,
            &key,
            bytes_of(&prm),
            &[(1, &a), (2, &b), (3, &c)],
            [gx as u32, gy as u32, 1],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_columns_take_the_decode_kernel() {
        let big = DECODE_ROWS_FROM;
        // Past 4 columns too, in tiles of 4 (up to PREFILL_COLUMNS, checked by the caller).
        assert_eq!(
            [1, 4, 5, 64].map(|n| entry(big, n, true, None)),
            ["decode_rows"; 4]
        );
        assert_eq!(entry(big - 1, 1, true, None), "decode_vec");
        assert_eq!(
            [1, 4, 5].map(|n| entry(big, n, false, None)),
            ["decode_row", "decode_row", "main"]
        );
        let forced = |k| [true, false].map(|v| entry(64, 1, v, Some(k)));
        assert_eq!(forced(GemmQDecode::Decode), ["decode", "decode"]);
        assert_eq!(forced(GemmQDecode::Row), ["decode_row", "decode_row"]);
        assert_eq!(forced(GemmQDecode::Vec), ["decode_vec", "decode_row"]);
        assert_eq!(forced(GemmQDecode::Rows), ["decode_rows", "decode_row"]);
        assert_eq!(entry(64, 8, true, Some(GemmQDecode::Vec)), "decode_rows");
    }

    #[test]
    fn decode_kernels_are_named_as_in_the_variable() {
        let names = ["decode", "row", "vec", "rows"].map(GemmQDecode::parse);
        let want = [
            GemmQDecode::Decode,
            GemmQDecode::Row,
            GemmQDecode::Vec,
            GemmQDecode::Rows,
        ];
        assert_eq!(names, want.map(Some));
        assert_eq!(GemmQDecode::parse(" Rows "), Some(GemmQDecode::Rows));
        assert_eq!(GemmQDecode::parse("vec4"), None);
    }

    #[test]
    fn a_decode_rows_thread_holds_at_most_8_sums() {
        for cols in [1, 2, 4] {
            let r = rows_per_thread(cols);
            assert!(r * cols <= 8 && r >= 1, "{cols} columns: {r} rows");
        }
        assert_eq!([1, 2, 4].map(rows_per_thread), [4, 4, 2]);
    }

    #[test]
    fn b_is_read_4_elements_a_load_only_where_every_column_starts_on_4() {
        let plan = |n, ldb, b_dtype| GemmQPlan {
            op: "gemm_q",
            format: QuantFormat::Q8_0,
            m: 64,
            n,
            k: 64,
            alpha: 1.0,
            beta: 0.0,
            b_dtype,
            ldb,
            ldc: 64,
            a: None,
            b: None,
            c: Operand {
                name: "C",
                ptr: 0,
                bytes: 64 * 4 * n as u64,
            },
        };
        assert!(b_vec4(&plan(1, 64, DType::F32), 0));
        assert!(b_vec4(&plan(1, 65, DType::F32), 16));
        assert!(b_vec4(&plan(4, 68, DType::F32), 32));
        assert!(!b_vec4(&plan(1, 64, DType::F32), 8));
        assert!(!b_vec4(&plan(2, 66, DType::F32), 0));
        assert!(b_vec4(&plan(1, 64, DType::F16), 8));
        assert!(b_vec4(&plan(3, 68, DType::F16), 0));
        assert!(!b_vec4(&plan(1, 64, DType::F16), 4));
        assert!(!b_vec4(&plan(2, 66, DType::F16), 0));
    }

    #[test]
    fn many_columns_dequantize_first_when_the_weights_fit_a_binding() {
        let o = |bytes| Operand {
            name: "x",
            ptr: 0,
            bytes,
        };
        let plan = |n, alpha: f64| GemmQPlan {
            op: "gemm_q",
            format: QuantFormat::Q4_0,
            m: 4096,
            n,
            k: 4096,
            alpha,
            beta: 0.0,
            b_dtype: DType::F32,
            ldb: 4096,
            ldc: 4096,
            a: (alpha != 0.0).then(|| o(4096 * 128 * 18)),
            b: (alpha != 0.0).then(|| o(4096 * 4 * n as u64)),
            c: o(4096 * 4 * n as u64),
        };
        let big = 1 << 30;
        assert!(!prefill(&plan(PREFILL_COLUMNS - 1, 1.0), big));
        assert!(prefill(&plan(PREFILL_COLUMNS, 1.0), big));
        assert!(prefill(&plan(512, 1.0), big));
        // No product to compute, or f32 weights (64 MiB) past the binding limit.
        assert!(!prefill(&plan(512, 0.0), big));
        assert!(!prefill(&plan(512, 1.0), (64 << 20) - 1));
        let g = prefill_gemm(&plan(512, 1.0), o(4096 * 4096 * 4));
        assert!(g.trans_a && !g.trans_b && g.lda == 4096);
    }

    #[test]
    fn column_tiles_hold_n_up_to_eight() {
        let got: Vec<u64> = [0, 1, 2, 3, 4, 5, 8, 9, 512].map(tile_columns).to_vec();
        assert_eq!(got, [1, 1, 2, 4, 4, 8, 8, 8, 8]);
    }
}
