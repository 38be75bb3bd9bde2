//! Argument validation shared by every backend.
//!
//! Each function here checks one op's scalar arguments, shapes and pointer arithmetic —
//! leading dimensions, extents, strides, expected output shapes, overflow, alignment and
//! forbidden overlaps — and returns a plan: the checked sizes plus the byte range
//! ([`Operand`]) of every operand the op will touch. A backend then resolves those ranges in
//! its [`AddressSpace`](crate::AddressSpace) and runs the plan without checking again.
//! `Ok(None)` means the call is a valid no-op (a zero-sized output).
//!
//! Operands that the op does not touch (zero extent, or A and B when `alpha == 0`) are not
//! part of the plan and so are never range-checked, as CONTRACT.md requires.

pub use crate::RowOp;
use crate::address::fmt_range;
use crate::{
    AttentionArgs, BackendResult, BackendTranspose, DType, HeadTensor, Operand, QuantFormat,
    UnaryParamOp, invalid,
};

/// `a * b` in u64, or an `InvalidArgument` naming what overflowed.
fn mul(op: &str, what: &str, a: u64, b: u64) -> BackendResult<u64> {
    a.checked_mul(b)
        .ok_or_else(|| invalid!("{op}: size overflow computing {what} ({a} * {b})"))
}

/// Product of all dimensions, overflow-checked.
fn product(op: &str, what: &str, dims: &[usize]) -> BackendResult<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| mul(op, what, acc, d as u64))
}

/// An operand of `elems` elements of `dtype` at `ptr`, checked for alignment and for the
/// end address overflowing; `None` when it has no bytes.
fn operand(
    op: &str,
    name: &'static str,
    ptr: u64,
    elems: u64,
    dtype: DType,
) -> BackendResult<Option<Operand>> {
    let size = dtype.size_bytes() as u64;
    let bytes = mul(op, &format!("the byte size of {name}"), elems, size)?;
    if bytes == 0 {
        return Ok(None);
    }
    if !ptr.is_multiple_of(size) {
        return Err(invalid!(
            "{op}: operand {name} address {ptr:#x} is not {size}-byte aligned ({dtype})"
        ));
    }
    if ptr.checked_add(bytes).is_none() {
        return Err(invalid!(
            "{op}: operand {name} at {ptr:#x} with {bytes} bytes wraps past the end of the address space"
        ));
    }
    Ok(Some(Operand { name, ptr, bytes }))
}

/// Like [`operand`] for f32 data that is known to be non-empty.
fn required(op: &str, name: &'static str, ptr: u64, elems: u64) -> BackendResult<Operand> {
    required_typed(op, name, ptr, elems, DType::F32)
}

/// Like [`operand`] for data of `dtype` that is known to be non-empty.
fn required_typed(
    op: &str,
    name: &'static str,
    ptr: u64,
    elems: u64,
    dtype: DType,
) -> BackendResult<Operand> {
    Ok(operand(op, name, ptr, elems, dtype)?.expect("caller checked elems > 0"))
}

/// An operand as overlap errors name it: its role, then its name where that says more
/// ("output C", "input b", but "input", not "input input").
fn in_role(role: &str, operand: &Operand) -> String {
    if operand.name == role {
        role.to_string()
    } else {
        format!("{role} {}", operand.name)
    }
}

/// Rejects an output that shares bytes with an input.
fn disjoint(op: &str, output: &Operand, input: Option<&Operand>) -> BackendResult<()> {
    match input {
        Some(i) if output.overlaps(i) => Err(invalid!(
            "{op}: {} range {} overlaps {} range {}; outputs must not alias inputs",
            in_role("output", output),
            fmt_range(output.ptr, output.bytes),
            in_role("input", i),
            fmt_range(i.ptr, i.bytes)
        )),
        _ => Ok(()),
    }
}

/// Elements spanned by a column-major `rows x cols` matrix with leading dimension `ld`:
/// `ld * (cols - 1) + rows`, or 0 when it has no elements.
pub fn matrix_extent(rows: usize, cols: usize, ld: usize) -> Option<u64> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (ld as u64)
        .checked_mul(cols as u64 - 1)?
        .checked_add(rows as u64)
}

/// The arguments of `gemm`, `gemm_ex`, `batched_gemm` and `batched_gemm_ex` (a plain
/// gemm is one batch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmArgs {
    /// How A is read.
    pub trans_a: BackendTranspose,
    /// How B is read.
    pub trans_b: BackendTranspose,
    /// Rows of op(A) and of C.
    pub m: usize,
    /// Columns of op(B) and of C.
    pub n: usize,
    /// Columns of op(A), rows of op(B).
    pub k: usize,
    /// Scale of the product.
    pub alpha: f64,
    /// Address of A.
    pub a_ptr: u64,
    /// Element type of A.
    pub a_dtype: DType,
    /// Leading dimension of A.
    pub lda: usize,
    /// Address of B.
    pub b_ptr: u64,
    /// Element type of B.
    pub b_dtype: DType,
    /// Leading dimension of B.
    pub ldb: usize,
    /// Scale of the old C.
    pub beta: f64,
    /// Address of C.
    pub c_ptr: u64,
    /// Element type of C (f32 but for `batched_gemm_ex`).
    pub c_dtype: DType,
    /// Leading dimension of C.
    pub ldc: usize,
    /// Element strides between batches of A, B and C, and the batch count.
    pub batch: Batch,
}

impl GemmArgs {
    /// A plain f32 gemm's arguments, in the trait's order.
    pub fn new(
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a_ptr: u64,
        lda: usize,
        b_ptr: u64,
        ldb: usize,
        beta: f64,
        c_ptr: u64,
        ldc: usize,
    ) -> Self {
        Self {
            trans_a,
            trans_b,
            m,
            n,
            k,
            alpha,
            a_ptr,
            a_dtype: DType::F32,
            lda,
            b_ptr,
            b_dtype: DType::F32,
            ldb,
            beta,
            c_ptr,
            c_dtype: DType::F32,
            ldc,
            batch: Batch::ONE,
        }
    }

    /// The same with C of the given element type (batched_gemm_ex).
    pub fn with_c_dtype(self, c_dtype: DType) -> Self {
        Self { c_dtype, ..self }
    }

    /// The same with A and B of the given element types (gemm_ex).
    pub fn with_dtypes(self, a_dtype: DType, b_dtype: DType) -> Self {
        Self {
            a_dtype,
            b_dtype,
            ..self
        }
    }

    /// The same, batched (batched_gemm).
    pub fn with_batch(
        self,
        stride_a: usize,
        stride_b: usize,
        stride_c: usize,
        count: usize,
    ) -> Self {
        Self {
            batch: Batch {
                stride_a,
                stride_b,
                stride_c,
                count,
            },
            ..self
        }
    }
}

/// Batch layout of a batched gemm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Elements between consecutive A matrices (0: shared).
    pub stride_a: usize,
    /// Elements between consecutive B matrices (0: shared).
    pub stride_b: usize,
    /// Elements between consecutive C matrices.
    pub stride_c: usize,
    /// Number of products.
    pub count: usize,
}

impl Batch {
    /// A plain, unbatched gemm.
    pub const ONE: Self = Self {
        stride_a: 0,
        stride_b: 0,
        stride_c: 0,
        count: 1,
    };
}

/// A checked gemm / gemm_ex / batched_gemm.
#[derive(Debug, Clone, Copy)]
pub struct GemmPlan {
    /// The op that made the plan, as errors name it (`"gemm"`, `"batched_gemm"`, ...).
    pub op: &'static str,
    /// A is read transposed.
    pub trans_a: bool,
    /// B is read transposed.
    pub trans_b: bool,
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// Leading dimension of A.
    pub lda: usize,
    /// Leading dimension of B.
    pub ldb: usize,
    /// Leading dimension of C.
    pub ldc: usize,
    /// Scale of the product.
    pub alpha: f64,
    /// Scale of the old C; C is not read when it is 0.
    pub beta: f64,
    /// Element type of A.
    pub a_dtype: DType,
    /// Element type of B.
    pub b_dtype: DType,
    /// Element type of C.
    pub c_dtype: DType,
    /// Batch strides and count (count >= 1).
    pub batch: Batch,
    /// Every batch's A, as one range; `None` when A and B are not read (`alpha == 0` or `k == 0`).
    pub a: Option<Operand>,
    /// Every batch's B, as one range; `None` exactly when `a` is.
    pub b: Option<Operand>,
    /// Every batch's C, as one range.
    pub c: Operand,
}

impl GemmPlan {
    /// True when C's old contents are read (`beta != 0`).
    pub fn reads_c(&self) -> bool {
        self.beta != 0.0
    }

    /// True when A and B are read (`alpha != 0 && k != 0`).
    pub fn reads_ab(&self) -> bool {
        self.a.is_some()
    }
}

/// Validates a gemm, gemm_ex or batched_gemm; `op` names it in errors.
pub fn gemm(op: &'static str, g: &GemmArgs) -> BackendResult<Option<GemmPlan>> {
    let trans_a = g.trans_a.is_transposed();
    let trans_b = g.trans_b.is_transposed();
    let (rows_a, cols_a) = if trans_a { (g.k, g.m) } else { (g.m, g.k) };
    let (rows_b, cols_b) = if trans_b { (g.n, g.k) } else { (g.k, g.n) };
    let check_ld = |name: &str, ld: usize, rows: usize, what: &str| {
        if ld < rows.max(1) {
            Err(invalid!(
                "{op}: {name} {ld} < max(1, {rows}) rows of {what} as stored"
            ))
        } else {
            Ok(())
        }
    };
    check_ld("lda", g.lda, rows_a, "A")?;
    check_ld("ldb", g.ldb, rows_b, "B")?;
    check_ld("ldc", g.ldc, g.m, "C")?;
    if g.m == 0 || g.n == 0 || g.batch.count == 0 {
        return Ok(None);
    }
    let batches = g.batch.count as u64 - 1;
    let overflow = || invalid!("{op}: size overflow computing operand extents");
    // Span of all batches of one operand: stride * (count - 1) + extent.
    let span = |stride: usize, extent: u64| -> BackendResult<u64> {
        (stride as u64)
            .checked_mul(batches)
            .and_then(|s| s.checked_add(extent))
            .ok_or_else(overflow)
    };
    let extent_c = matrix_extent(g.m, g.n, g.ldc).ok_or_else(overflow)?;
    if g.batch.count > 1 && (g.batch.stride_c as u64) < extent_c {
        return Err(invalid!(
            "{op}: stride_c {} < {extent_c} elements spanned by each C (ldc * (n - 1) + m): the batches' C ranges overlap",
            g.batch.stride_c
        ));
    }
    let c = required_typed(
        op,
        "C",
        g.c_ptr,
        span(g.batch.stride_c, extent_c)?,
        g.c_dtype,
    )?;
    let (mut a, mut b) = (None, None);
    if g.alpha != 0.0 && g.k != 0 {
        let extent_a = matrix_extent(rows_a, cols_a, g.lda).ok_or_else(overflow)?;
        let extent_b = matrix_extent(rows_b, cols_b, g.ldb).ok_or_else(overflow)?;
        a = operand(
            op,
            "A",
            g.a_ptr,
            span(g.batch.stride_a, extent_a)?,
            g.a_dtype,
        )?;
        b = operand(
            op,
            "B",
            g.b_ptr,
            span(g.batch.stride_b, extent_b)?,
            g.b_dtype,
        )?;
    }
    finish(GemmPlan {
        op,
        trans_a,
        trans_b,
        m: g.m,
        n: g.n,
        k: g.k,
        lda: g.lda,
        ldb: g.ldb,
        ldc: g.ldc,
        alpha: g.alpha,
        beta: g.beta,
        a_dtype: g.a_dtype,
        b_dtype: g.b_dtype,
        c_dtype: g.c_dtype,
        batch: g.batch,
        a,
        b,
        c,
    })
}

/// A checked [`ComputeBackend::gemm_q`](crate::ComputeBackend::gemm_q).
#[derive(Debug, Clone, Copy)]
pub struct GemmQPlan {
    /// The op that made the plan, as errors name it.
    pub op: &'static str,
    /// The weights' block format.
    pub format: QuantFormat,
    /// Rows of A and C.
    pub m: usize,
    /// Columns of B and C.
    pub n: usize,
    /// Columns of A, rows of B (a multiple of 32).
    pub k: usize,
    /// Scales the product.
    pub alpha: f64,
    /// Scales C; 0 means C is not read.
    pub beta: f64,
    /// B's element type (f32 or f16).
    pub b_dtype: DType,
    /// Leading dimension of B (column-major, `k x n`).
    pub ldb: usize,
    /// Leading dimension of C (column-major, `m x n`).
    pub ldc: usize,
    /// The weights, `m` rows of `k / 32` blocks; `None` when the product is not read
    /// (`alpha == 0` or `k == 0`).
    pub a: Option<Operand>,
    /// The activations; `None` when the product is not read.
    pub b: Option<Operand>,
    /// The output.
    pub c: Operand,
}

impl GemmQPlan {
    /// Bytes of one row of A.
    pub fn row_bytes(&self) -> usize {
        self.k / QuantFormat::BLOCK * self.format.block_bytes()
    }

    /// True when the product is computed (A and B are read).
    pub fn reads_ab(&self) -> bool {
        self.a.is_some()
    }
}

/// Validates a quantized gemm: `C = alpha * A * B + beta * C`, A `m x k` in `format`'s
/// blocks (row by row), B `k x n` column-major in `b_dtype`, C `m x n` column-major f32.
pub fn gemm_q(
    format: QuantFormat,
    m: usize,
    n: usize,
    k: usize,
    alpha: f64,
    a_ptr: u64,
    b_ptr: u64,
    b_dtype: DType,
    ldb: usize,
    beta: f64,
    c_ptr: u64,
    ldc: usize,
) -> BackendResult<Option<GemmQPlan>> {
    const OP: &str = "gemm_q";
    if !k.is_multiple_of(QuantFormat::BLOCK) {
        return Err(invalid!(
            "{OP}: k = {k} is not a multiple of the {format} block size {}",
            QuantFormat::BLOCK
        ));
    }
    if b_dtype == DType::BF16 {
        return Err(invalid!("{OP}: B must be f32 or f16, got {b_dtype}"));
    }
    if !alpha.is_finite() || !beta.is_finite() {
        return Err(invalid!(
            "{OP}: alpha {alpha} and beta {beta} must be finite"
        ));
    }
    if ldb < k.max(1) {
        return Err(invalid!("{OP}: ldb {ldb} < max(1, {k}) rows of B"));
    }
    if ldc < m.max(1) {
        return Err(invalid!("{OP}: ldc {ldc} < max(1, {m}) rows of C"));
    }
    if m == 0 || n == 0 {
        return Ok(None);
    }
    let overflow = || invalid!("{OP}: size overflow computing operand extents");
    let c = required(
        OP,
        "C",
        c_ptr,
        matrix_extent(m, n, ldc).ok_or_else(overflow)?,
    )?;
    let (mut a, mut b) = (None, None);
    if alpha != 0.0 && k != 0 {
        let blocks = mul(
            OP,
            "the blocks of A",
            m as u64,
            (k / QuantFormat::BLOCK) as u64,
        )?;
        let bytes = mul(OP, "the bytes of A", blocks, format.block_bytes() as u64)?;
        // Counted in 2-byte units: the block scale is an f16, so A is 2-byte aligned.
        a = operand(OP, "A", a_ptr, bytes / 2, DType::F16)?;
        b = operand(
            OP,
            "B",
            b_ptr,
            matrix_extent(k, n, ldb).ok_or_else(overflow)?,
            b_dtype,
        )?;
    }
    finish(GemmQPlan {
        op: OP,
        format,
        m,
        n,
        k,
        alpha,
        beta,
        b_dtype,
        ldb,
        ldc,
        a,
        b,
        c,
    })
}

/// A checked conv2d_forward.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dPlan {
    /// The op that made the plan, as errors name it (`"gemm"`, `"batched_gemm"`, ...).
    pub op: &'static str,
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels (filters).
    pub k: usize,
    /// Filter height.
    pub r: usize,
    /// Filter width.
    pub s: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Zero rows added above (and, for `conv2d_forward`, below).
    pub pad_h: usize,
    /// Zero columns added on the left (and, for `conv2d_forward`, on the right).
    pub pad_w: usize,
    /// Zero rows added below (only `OH` depends on it).
    pub pad_bottom: usize,
    /// Zero columns added on the right (only `OW` depends on it).
    pub pad_right: usize,
    /// Rows between the filter's taps (1: adjacent).
    pub dil_h: usize,
    /// Columns between the filter's taps.
    pub dil_w: usize,
    /// Channel groups: output channel `k` reads input channels `k / (K / groups) * (C /
    /// groups) ..` and the filter holds `C / groups` channels.
    pub groups: usize,
    /// The input, `None` when it has no elements.
    pub input: Option<Operand>,
    /// The filter, `None` when it has no elements.
    pub filter: Option<Operand>,
    /// `K` values added to each output channel.
    pub bias: Option<Operand>,
    /// The output.
    pub output: Operand,
    /// Storage of the input, filter, bias and output.
    pub dtype: DType,
}

impl Conv2dPlan {
    /// `conv2d_forward`'s case: one group, no dilation, symmetric padding, no bias.
    pub fn is_plain(&self) -> bool {
        self.groups == 1
            && self.dil_h == 1
            && self.dil_w == 1
            && self.bias.is_none()
            && self.pad_bottom == self.pad_h
            && self.pad_right == self.pad_w
    }

    /// Input channels per group (the filter's second dimension).
    pub fn group_channels(&self) -> usize {
        self.c / self.groups
    }

    /// Output channels per group.
    pub fn group_filters(&self) -> usize {
        self.k / self.groups
    }
}

/// Validates a conv2d_forward (NCHW input, KCRS filter, NKOHOW output).
pub fn conv2d(
    input_ptr: u64,
    input_shape: &[usize],
    filter_ptr: u64,
    filter_shape: &[usize],
    output_ptr: u64,
    output_shape: &[usize],
    stride: &[usize],
    padding: &[usize],
) -> BackendResult<Option<Conv2dPlan>> {
    const OP: &str = "conv2d_forward";
    let expect_len = |name: &str, v: &[usize], len: usize, layout: &str| {
        if v.len() == len {
            Ok(())
        } else {
            Err(invalid!(
                "{OP}: {name} must have {len} entries {layout}, got {v:?}"
            ))
        }
    };
    expect_len("input_shape", input_shape, 4, "[N, C, H, W]")?;
    expect_len("filter_shape", filter_shape, 4, "[K, C, R, S]")?;
    expect_len("output_shape", output_shape, 4, "[N, K, OH, OW]")?;
    expect_len("stride", stride, 2, "[stride_h, stride_w]")?;
    expect_len("padding", padding, 2, "[pad_h, pad_w]")?;
    let [n, c, h, w] = [
        input_shape[0],
        input_shape[1],
        input_shape[2],
        input_shape[3],
    ];
    let [k, fc, r, s] = [
        filter_shape[0],
        filter_shape[1],
        filter_shape[2],
        filter_shape[3],
    ];
    let [sh, sw] = [stride[0], stride[1]];
    let [ph, pw] = [padding[0], padding[1]];
    if fc != c {
        return Err(invalid!(
            "{OP}: filter has {fc} input channels (filter_shape[1]) but the input has {c} (input_shape[1])"
        ));
    }
    if sh == 0 || sw == 0 {
        return Err(invalid!(
            "{OP}: stride {stride:?} must be >= 1 in both dimensions"
        ));
    }
    if r == 0 || s == 0 {
        return Err(invalid!(
            "{OP}: filter spatial size {r}x{s} must be at least 1x1"
        ));
    }
    let padded = |x: usize, p: usize| {
        p.checked_mul(2)
            .and_then(|p2| x.checked_add(p2))
            .ok_or_else(|| invalid!("{OP}: size overflow computing the padded input size"))
    };
    let (hp, wp) = (padded(h, ph)?, padded(w, pw)?);
    if hp < r || wp < s {
        return Err(invalid!(
            "{OP}: filter {r}x{s} is larger than the padded input {hp}x{wp} (input {h}x{w}, padding {padding:?})"
        ));
    }
    let (oh, ow) = ((hp - r) / sh + 1, (wp - s) / sw + 1);
    let expected = [n, k, oh, ow];
    if output_shape != expected {
        return Err(invalid!(
            "{OP}: output_shape {output_shape:?} does not match the expected [N, K, OH, OW] = {expected:?} \
             (OH = (H + 2*pad_h - R) / stride_h + 1)"
        ));
    }
    let out_elems = product(OP, "the output size", &expected)?;
    let in_elems = product(OP, "the input size", input_shape)?;
    let f_elems = product(OP, "the filter size", filter_shape)?;
    if out_elems == 0 {
        return Ok(None);
    }
    let output = required(OP, "output", output_ptr, out_elems)?;
    let input = operand(OP, "input", input_ptr, in_elems, DType::F32)?;
    let filter = operand(OP, "filter", filter_ptr, f_elems, DType::F32)?;
    finish(Conv2dPlan {
        op: OP,
        n,
        c,
        h,
        w,
        k,
        r,
        s,
        oh,
        ow,
        stride_h: sh,
        stride_w: sw,
        pad_h: ph,
        pad_w: pw,
        pad_bottom: ph,
        pad_right: pw,
        dil_h: 1,
        dil_w: 1,
        groups: 1,
        input,
        filter,
        bias: None,
        output,
        dtype: DType::F32,
    })
}

/// Validates a [`ComputeBackend::conv2d_forward_ex`](crate::ComputeBackend::conv2d_forward_ex).
pub fn conv2d_ex(args: &crate::Conv2dArgs) -> BackendResult<Option<Conv2dPlan>> {
    const OP: &str = "conv2d_forward_ex";
    let [n, c, h, w] = args.input_shape;
    let [k, fc, r, s] = args.filter_shape;
    let [sh, sw] = args.stride;
    let [top, left, bottom, right] = args.padding;
    let [dh, dw] = args.dilation;
    let g = args.groups;
    if g == 0 {
        return Err(invalid!("{OP}: groups must be >= 1, got 0"));
    }
    if !c.is_multiple_of(g) || !k.is_multiple_of(g) {
        return Err(invalid!(
            "{OP}: groups {g} must divide the input channels C = {c} and the filters K = {k}"
        ));
    }
    if fc != c / g {
        return Err(invalid!(
            "{OP}: filter has {fc} input channels (filter_shape[1]) but C / groups = {c} / {g} = {}",
            c / g
        ));
    }
    if sh == 0 || sw == 0 {
        return Err(invalid!(
            "{OP}: stride {:?} must be >= 1 in both dimensions",
            args.stride
        ));
    }
    if dh == 0 || dw == 0 {
        return Err(invalid!(
            "{OP}: dilation {:?} must be >= 1 in both dimensions",
            args.dilation
        ));
    }
    if r == 0 || s == 0 {
        return Err(invalid!(
            "{OP}: filter spatial size {r}x{s} must be at least 1x1"
        ));
    }
    let overflow =
        || invalid!("{OP}: size overflow computing the padded input or the dilated filter");
    let padded = |x: usize, a: usize, b: usize| x.checked_add(a)?.checked_add(b);
    let span = |f: usize, d: usize| (f - 1).checked_mul(d)?.checked_add(1);
    let (hp, wp) = (
        padded(h, top, bottom).ok_or_else(overflow)?,
        padded(w, left, right).ok_or_else(overflow)?,
    );
    let (rs, ss) = (
        span(r, dh).ok_or_else(overflow)?,
        span(s, dw).ok_or_else(overflow)?,
    );
    if hp < rs || wp < ss {
        return Err(invalid!(
            "{OP}: the dilated filter {rs}x{ss} (filter {r}x{s}, dilation {:?}) is larger than the \
             padded input {hp}x{wp} (input {h}x{w}, padding {:?})",
            args.dilation,
            args.padding
        ));
    }
    let (oh, ow) = ((hp - rs) / sh + 1, (wp - ss) / sw + 1);
    let expected = [n, k, oh, ow];
    if args.output_shape != expected {
        return Err(invalid!(
            "{OP}: output_shape {:?} does not match the expected [N, K, OH, OW] = {expected:?} \
             (OH = (H + top + bottom - dh * (R - 1) - 1) / stride_h + 1)",
            args.output_shape
        ));
    }
    let out_elems = product(OP, "the output size", &expected)?;
    let in_elems = product(OP, "the input size", &args.input_shape)?;
    let f_elems = product(OP, "the filter size", &args.filter_shape)?;
    if out_elems == 0 {
        return Ok(None);
    }
    let dt = args.dtype;
    let output = required_typed(OP, "output", args.output, out_elems, dt)?;
    let input = operand(OP, "input", args.input, in_elems, dt)?;
    let filter = operand(OP, "filter", args.filter, f_elems, dt)?;
    let bias = args
        .bias
        .map(|b| required_typed(OP, "bias", b, k as u64, dt))
        .transpose()?;
    finish(Conv2dPlan {
        op: OP,
        n,
        c,
        h,
        w,
        k,
        r,
        s,
        oh,
        ow,
        stride_h: sh,
        stride_w: sw,
        pad_h: top,
        pad_w: left,
        pad_bottom: bottom,
        pad_right: right,
        dil_h: dh,
        dil_w: dw,
        groups: g,
        input,
        filter,
        bias,
        output,
        dtype: dt,
    })
}

/// A checked attention call (`attention` and `attention_ex`; `attention` is the case of
/// contiguous `[b, h, s, d]` operands, `kv_heads == heads` and no mask).
///
/// Element offsets: row `i` of head `h` of batch entry `b` of an operand starts at
/// `b * strides[0] + h * strides[1] + i * strides[2]` elements past the operand's start
/// ([`AttentionPlan::at`]); K and V are indexed by the key/value head
/// ([`AttentionPlan::kv_head`]).
#[derive(Debug, Clone, Copy)]
pub struct AttentionPlan {
    /// The op that made the plan, as errors name it (`"attention"`, `"attention_ex"`).
    pub op: &'static str,
    /// Batch size.
    pub batch: usize,
    /// Query heads per batch entry.
    pub heads: usize,
    /// Key/value heads per batch entry (divides `heads`).
    pub kv_heads: usize,
    /// Query rows per head.
    pub seq_q: usize,
    /// Key/value rows per head.
    pub seq_kv: usize,
    /// Elements per Q and K row.
    pub head_dim: usize,
    /// Elements per V and O row.
    pub v_head_dim: usize,
    /// Multiplies Q*K^T before the softmax.
    pub scale: f64,
    /// Bottom-right causal frontier.
    pub causal: bool,
    /// `cap * tanh(s / cap)` of the scaled scores, before the mask.
    pub softcap: Option<f64>,
    /// Sliding window (only with `causal`).
    pub window: Option<usize>,
    /// Q, `None` when `head_dim == 0`.
    pub q: Option<Operand>,
    /// K, `None` when no key is read (`seq_kv == 0` or `head_dim == 0`).
    pub k: Option<Operand>,
    /// V, `None` when `seq_kv == 0`.
    pub v: Option<Operand>,
    /// O.
    pub o: Operand,
    /// The f32 mask, `None` without one (or when it has no elements).
    pub mask: Option<Operand>,
    /// Element strides `[batch, head, row]` of Q, K, V and O.
    pub q_strides: [usize; 3],
    /// See `q_strides`.
    pub k_strides: [usize; 3],
    /// See `q_strides`.
    pub v_strides: [usize; 3],
    /// See `q_strides`.
    pub o_strides: [usize; 3],
    /// Element strides of the mask between batch entries and heads (0 where it is
    /// broadcast); its rows are `seq_kv` apart.
    pub mask_strides: [usize; 2],
    /// Storage of Q, K, V and O (the mask is f32).
    pub dtype: DType,
}

impl AttentionPlan {
    /// Query heads per key/value head.
    pub fn group(&self) -> usize {
        self.heads / self.kv_heads.max(1)
    }

    /// The key/value head that query head `h` reads.
    pub fn kv_head(&self, h: usize) -> usize {
        h / self.group().max(1)
    }

    /// Element offset of row `i` of head `h` of batch entry `b` under `strides`.
    pub fn at(strides: [usize; 3], b: usize, h: usize, i: usize) -> usize {
        b * strides[0] + h * strides[1] + i * strides[2]
    }

    /// Element offset of mask row `i` for batch entry `b` and query head `h`.
    pub fn mask_at(&self, b: usize, h: usize, i: usize) -> usize {
        b * self.mask_strides[0] + h * self.mask_strides[1] + i * self.seq_kv
    }

    /// The keys query row `i` may see before the mask: all, or the causal frontier and
    /// the window's start (an empty range when it sees none).
    pub fn visible(&self, i: usize) -> std::ops::Range<usize> {
        if !self.causal {
            return 0..self.seq_kv;
        }
        // Keys j <= i + seq_kv - seq_q: that many plus one, or none.
        let end = (i + self.seq_kv + 1)
            .saturating_sub(self.seq_q)
            .min(self.seq_kv);
        let start = self.window.map_or(0, |w| end.saturating_sub(w));
        start..end
    }
}

/// Validates an attention call.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q_ptr: u64,
    k_ptr: u64,
    v_ptr: u64,
    o_ptr: u64,
    batch: usize,
    heads: usize,
    seq_q: usize,
    seq_kv: usize,
    head_dim: usize,
    scale: f64,
    causal: bool,
) -> BackendResult<Option<AttentionPlan>> {
    const OP: &str = "attention";
    // The sizes of the contiguous layout are checked before its strides are formed.
    product(OP, "the size of Q", &[batch, heads, seq_q, head_dim])?;
    product(OP, "the size of K", &[batch, heads, seq_kv, head_dim])?;
    let args = AttentionArgs {
        scale,
        causal,
        ..AttentionArgs::new(
            batch,
            heads,
            heads.max(1),
            seq_q,
            seq_kv,
            head_dim,
            HeadTensor::bhsd(q_ptr, heads, seq_q, head_dim),
            HeadTensor::bhsd(k_ptr, heads, seq_kv, head_dim),
            HeadTensor::bhsd(v_ptr, heads, seq_kv, head_dim),
            HeadTensor::bhsd(o_ptr, heads, seq_q, head_dim),
        )
    };
    attention_plan(OP, &args)
}

/// Validates an `attention_ex` call.
pub fn attention_ex(args: &AttentionArgs) -> BackendResult<Option<AttentionPlan>> {
    attention_plan("attention_ex", args)
}

/// Elements spanned by `counts = [batch, heads, rows]` rows of `dim` elements under
/// `strides`, or 0 when there are none. Several rows need a row stride of at least `dim`.
fn head_extent(
    op: &str,
    name: &str,
    counts: [usize; 3],
    strides: [usize; 3],
    dim: usize,
) -> BackendResult<u64> {
    if counts.contains(&0) || dim == 0 {
        return Ok(0);
    }
    if counts[2] > 1 && strides[2] < dim {
        return Err(invalid!(
            "{op}: {name}'s row stride {} is less than its row length {dim}",
            strides[2]
        ));
    }
    let what = format!("the extent of {name}");
    counts
        .iter()
        .zip(strides)
        .try_fold(dim as u64, |acc, (&n, s)| {
            let span = mul(op, &what, n as u64 - 1, s as u64)?;
            acc.checked_add(span)
                .ok_or_else(|| invalid!("{op}: size overflow computing {what}"))
        })
}

/// True when no two of the `counts` rows of `dim` elements under `strides` share an
/// element (sufficient: each dimension's stride clears everything below it).
fn rows_disjoint(counts: [usize; 3], strides: [usize; 3], dim: usize) -> bool {
    let mut dims: Vec<(usize, usize)> = counts
        .into_iter()
        .zip(strides)
        .filter(|&(n, _)| n > 1)
        .map(|(n, s)| (s, n))
        .collect();
    dims.sort_unstable();
    let mut span = dim as u128;
    for (stride, n) in dims {
        if (stride as u128) < span {
            return false;
        }
        span += stride as u128 * (n as u128 - 1);
    }
    true
}

fn attention_plan(op: &'static str, a: &AttentionArgs) -> BackendResult<Option<AttentionPlan>> {
    let (batch, heads, kv_heads) = (a.batch, a.heads, a.kv_heads);
    if heads > 0 && (kv_heads == 0 || !heads.is_multiple_of(kv_heads)) {
        return Err(invalid!(
            "{op}: heads {heads} is not a multiple of kv_heads {kv_heads}"
        ));
    }
    if let Some(m) = &a.mask
        && (![1, batch].contains(&m.batch) || ![1, heads].contains(&m.heads))
    {
        return Err(invalid!(
            "{op}: mask shape [{}, {}, {}, {}] does not broadcast to [{batch}, {heads}, {}, {}] \
             (its batch must be 1 or {batch}, its heads 1 or {heads})",
            m.batch,
            m.heads,
            a.seq_q,
            a.seq_kv,
            a.seq_q,
            a.seq_kv
        ));
    }
    if let Some(cap) = a.softcap
        && !(cap.is_finite() && cap > 0.0)
    {
        return Err(invalid!("{op}: softcap {cap} must be finite and positive"));
    }
    match a.window {
        Some(0) => return Err(invalid!("{op}: window 0 must be at least 1")),
        Some(w) if !a.causal => {
            return Err(invalid!(
                "{op}: window {w} needs causal (it counts back from the causal frontier)"
            ));
        }
        _ => {}
    }
    let (d, dv) = (a.head_dim, a.v_head_dim);
    let q_counts = [batch, heads, a.seq_q];
    let kv_counts = [batch, kv_heads, a.seq_kv];
    let o_elems = head_extent(op, "O", q_counts, a.o.strides(), dv)?;
    if o_elems == 0 {
        return Ok(None);
    }
    if !rows_disjoint(q_counts, a.o.strides(), dv) {
        return Err(invalid!(
            "{op}: O's strides {:?} make rows of {dv} elements overlap; every output row \
             needs its own elements",
            a.o.strides()
        ));
    }
    let q_elems = head_extent(op, "Q", q_counts, a.q.strides(), d)?;
    let k_elems = head_extent(op, "K", kv_counts, a.k.strides(), d)?;
    let v_elems = head_extent(op, "V", kv_counts, a.v.strides(), dv)?;
    let q = operand(op, "Q", a.q.ptr, q_elems, a.dtype)?;
    let k = operand(op, "K", a.k.ptr, k_elems, a.dtype)?;
    let v = operand(op, "V", a.v.ptr, v_elems, a.dtype)?;
    let o = required_typed(op, "O", a.o.ptr, o_elems, a.dtype)?;
    let (mask, mask_strides) = match &a.mask {
        Some(m) => {
            let rows = mul(op, "the size of the mask", a.seq_q as u64, a.seq_kv as u64)?;
            let elems = product(op, "the size of the mask", &[m.batch, m.heads])
                .and_then(|bh| mul(op, "the size of the mask", bh, rows))?;
            let per_head = a.seq_q * a.seq_kv;
            let strides = [
                if m.batch > 1 { m.heads * per_head } else { 0 },
                if m.heads > 1 { per_head } else { 0 },
            ];
            (operand(op, "mask", m.ptr, elems, DType::F32)?, strides)
        }
        None => (None, [0, 0]),
    };
    finish(AttentionPlan {
        op,
        batch,
        heads,
        kv_heads,
        seq_q: a.seq_q,
        seq_kv: a.seq_kv,
        head_dim: d,
        v_head_dim: dv,
        scale: a.scale,
        causal: a.causal,
        softcap: a.softcap,
        window: a.window,
        q,
        k,
        v,
        o,
        mask,
        q_strides: a.q.strides(),
        k_strides: a.k.strides(),
        v_strides: a.v.strides(),
        o_strides: a.o.strides(),
        mask_strides,
        dtype: a.dtype,
    })
}

/// A checked reduce: the input viewed as `[outer, len, inner]`, reduced over `len`.
#[derive(Debug, Clone, Copy)]
pub struct ReducePlan {
    /// The op that made the plan, as errors name it (`"gemm"`, `"batched_gemm"`, ...).
    pub op: &'static str,
    /// Product of the dimensions before the axis.
    pub outer: usize,
    /// The reduced dimension.
    pub len: usize,
    /// Product of the dimensions after the axis.
    pub inner: usize,
    /// The input, `None` when the reduced axis is empty.
    pub input: Option<Operand>,
    /// The `outer * inner` results.
    pub output: Operand,
    /// The storage type of input and output (f32 but for `reduce_ex`).
    pub dtype: DType,
}

/// Validates a reduce over `axis` of the row-major `shape`.
pub fn reduce(
    input_ptr: u64,
    output_ptr: u64,
    shape: &[usize],
    axis: usize,
) -> BackendResult<Option<ReducePlan>> {
    reduce_typed("reduce", DType::F32, input_ptr, output_ptr, shape, axis)
}

/// Validates `reduce_ex`: a reduce whose input and output are stored as `dtype`.
pub fn reduce_ex(
    dtype: DType,
    input_ptr: u64,
    output_ptr: u64,
    shape: &[usize],
    axis: usize,
) -> BackendResult<Option<ReducePlan>> {
    reduce_typed("reduce_ex", dtype, input_ptr, output_ptr, shape, axis)
}

fn reduce_typed(
    op: &'static str,
    dtype: DType,
    input_ptr: u64,
    output_ptr: u64,
    shape: &[usize],
    axis: usize,
) -> BackendResult<Option<ReducePlan>> {
    #[expect(non_snake_case, reason = "the op name, as in the other validators")]
    let OP = op;
    if shape.is_empty() {
        return Err(invalid!("{OP}: shape must have at least one dimension"));
    }
    if axis >= shape.len() {
        return Err(invalid!(
            "{OP}: axis {axis} is out of range for shape {shape:?} ({} dimensions)",
            shape.len()
        ));
    }
    let outer = product(OP, "the outer size", &shape[..axis])?;
    let inner = product(OP, "the inner size", &shape[axis + 1..])?;
    let total = product(OP, "the input size", shape)?;
    let out_elems = mul(OP, "the output size", outer, inner)?;
    let as_usize =
        |v: u64| usize::try_from(v).map_err(|_| invalid!("{OP}: {v} elements do not fit in usize"));
    if out_elems == 0 {
        return Ok(None);
    }
    let output = operand(OP, "output", output_ptr, out_elems, dtype)?.expect("non-empty");
    let input = operand(OP, "input", input_ptr, total, dtype)?;
    finish(ReducePlan {
        op: OP,
        outer: as_usize(outer)?,
        len: shape[axis],
        inner: as_usize(inner)?,
        input,
        output,
        dtype,
    })
}

/// A checked row op over a row-major `[rows x cols]` f32 matrix.
#[derive(Debug, Clone, Copy)]
pub struct RowPlan {
    /// The op that made the plan, as errors name it.
    pub op: &'static str,
    /// What it computes.
    pub kind: RowOp,
    /// Rows.
    pub rows: usize,
    /// Elements per row.
    pub cols: usize,
    /// The norms' epsilon (0 for softmax).
    pub eps: f64,
    /// The input.
    pub x: Operand,
    /// The norms' per-column scale, `cols` values.
    pub gamma: Option<Operand>,
    /// The layer norm's per-column shift, `cols` values.
    pub beta: Option<Operand>,
    /// The output: the input's exact range, or disjoint from it.
    pub y: Operand,
    /// The storage type of x, gamma, beta and y (f32 but for `rows_ex`).
    pub dtype: DType,
}

impl RowPlan {
    /// True when the op runs in place.
    pub fn in_place(&self) -> bool {
        self.x.same_range(&self.y)
    }
}

/// Validates a row op: `gamma`/`beta` only where `kind` takes them (the trait's
/// signatures see to that).
pub fn rows(
    kind: RowOp,
    x_ptr: u64,
    gamma: Option<u64>,
    beta: Option<u64>,
    y_ptr: u64,
    rows: usize,
    cols: usize,
    eps: f64,
) -> BackendResult<Option<RowPlan>> {
    rows_typed(
        kind.name(),
        kind,
        DType::F32,
        x_ptr,
        gamma,
        beta,
        y_ptr,
        rows,
        cols,
        eps,
    )
}

/// Validates `rows_ex`: a row op whose operands are stored as `dtype`; `gamma` only for
/// the norms, `beta` only for the layer norm.
pub fn rows_ex(
    kind: RowOp,
    dtype: DType,
    x_ptr: u64,
    gamma: Option<u64>,
    beta: Option<u64>,
    y_ptr: u64,
    rows: usize,
    cols: usize,
    eps: f64,
) -> BackendResult<Option<RowPlan>> {
    const OP: &str = "rows_ex";
    let takes_gamma = matches!(kind, RowOp::LayerNorm | RowOp::RmsNorm);
    if gamma.is_some() && !takes_gamma {
        return Err(invalid!("{OP}: {kind} takes no gamma"));
    }
    if beta.is_some() && kind != RowOp::LayerNorm {
        return Err(invalid!("{OP}: {kind} takes no beta"));
    }
    rows_typed(OP, kind, dtype, x_ptr, gamma, beta, y_ptr, rows, cols, eps)
}

fn rows_typed(
    op: &'static str,
    kind: RowOp,
    dtype: DType,
    x_ptr: u64,
    gamma: Option<u64>,
    beta: Option<u64>,
    y_ptr: u64,
    rows: usize,
    cols: usize,
    eps: f64,
) -> BackendResult<Option<RowPlan>> {
    if !eps.is_finite() || eps < 0.0 {
        return Err(invalid!("{op}: eps {eps} must be finite and >= 0"));
    }
    let n = mul(op, "rows x cols", rows as u64, cols as u64)?;
    if n == 0 {
        return Ok(None);
    }
    let typed = |name: &'static str, ptr: u64, elems: u64| -> BackendResult<Operand> {
        Ok(operand(op, name, ptr, elems, dtype)?.expect("elems > 0"))
    };
    let x = typed("x", x_ptr, n)?;
    let y = typed("y", y_ptr, n)?;
    let gamma = gamma.map(|g| typed("gamma", g, cols as u64)).transpose()?;
    let beta = beta.map(|b| typed("beta", b, cols as u64)).transpose()?;
    finish(RowPlan {
        op,
        kind,
        rows,
        cols,
        eps,
        x,
        gamma,
        beta,
        y,
        dtype,
    })
}

/// A checked unary op.
#[derive(Debug, Clone, Copy)]
pub struct UnaryPlan {
    /// The op that made the plan, as errors name it (`"gemm"`, `"batched_gemm"`, ...).
    pub op: &'static str,
    /// Element count.
    pub n: usize,
    /// The input.
    pub input: Operand,
    /// The output: the input's exact range, or disjoint from it.
    pub output: Operand,
    /// The storage type of input and output (f32 but for `unary_ex`).
    pub dtype: DType,
}

impl UnaryPlan {
    /// True when the op runs in place.
    pub fn in_place(&self) -> bool {
        self.input.same_range(&self.output)
    }
}

/// Rejects partial overlap; exact aliasing is allowed.
fn same_or_disjoint(op: &str, output: &Operand, input: &Operand) -> BackendResult<()> {
    if output.overlaps(input) && !output.same_range(input) {
        return Err(invalid!(
            "{op}: {} range {} partially overlaps {} range {}; an output may only alias an input exactly",
            in_role("output", output),
            fmt_range(output.ptr, output.bytes),
            in_role("input", input),
            fmt_range(input.ptr, input.bytes)
        ));
    }
    Ok(())
}

/// Validates a unary op over `n` f32 elements.
pub fn unary(input_ptr: u64, output_ptr: u64, n: usize) -> BackendResult<Option<UnaryPlan>> {
    unary_typed("unary", DType::F32, input_ptr, output_ptr, n)
}

/// Validates `unary_ex`: a unary op over `n` elements stored as `dtype`.
pub fn unary_ex(
    dtype: DType,
    input_ptr: u64,
    output_ptr: u64,
    n: usize,
) -> BackendResult<Option<UnaryPlan>> {
    unary_typed("unary_ex", dtype, input_ptr, output_ptr, n)
}

fn unary_typed(
    op: &'static str,
    dtype: DType,
    input_ptr: u64,
    output_ptr: u64,
    n: usize,
) -> BackendResult<Option<UnaryPlan>> {
    let (Some(input), Some(output)) = (
        operand(op, "input", input_ptr, n as u64, dtype)?,
        operand(op, "output", output_ptr, n as u64, dtype)?,
    ) else {
        return Ok(None);
    };
    finish(UnaryPlan {
        op,
        n,
        input,
        output,
        dtype,
    })
}

/// Validates a parameterised unary op over `n` f32 elements: the operands as
/// [`unary`] checks them (the plan's op is `"unary_param"`), and the parameters `op` uses.
pub fn unary_param(
    op: UnaryParamOp,
    a: f32,
    b: f32,
    input_ptr: u64,
    output_ptr: u64,
    n: usize,
) -> BackendResult<Option<UnaryPlan>> {
    unary_param_typed(
        "unary_param",
        op,
        DType::F32,
        a,
        b,
        input_ptr,
        output_ptr,
        n,
    )
}

/// [`unary_param`] over `n` elements stored as `dtype` (the plan's op is
/// `"unary_param_ex"`).
pub fn unary_param_ex(
    op: UnaryParamOp,
    dtype: DType,
    a: f32,
    b: f32,
    input_ptr: u64,
    output_ptr: u64,
    n: usize,
) -> BackendResult<Option<UnaryPlan>> {
    unary_param_typed("unary_param_ex", op, dtype, a, b, input_ptr, output_ptr, n)
}

#[allow(clippy::too_many_arguments)]
fn unary_param_typed(
    opn: &'static str,
    op: UnaryParamOp,
    dtype: DType,
    a: f32,
    b: f32,
    input_ptr: u64,
    output_ptr: u64,
    n: usize,
) -> BackendResult<Option<UnaryPlan>> {
    let finite = |name: &str, v: f32| {
        if v.is_finite() {
            Ok(())
        } else {
            Err(invalid!(
                "{opn} {op}: parameter {name} = {v} must be finite"
            ))
        }
    };
    match op {
        UnaryParamOp::LeakyRelu | UnaryParamOp::Elu => finite("a", a)?,
        UnaryParamOp::Selu | UnaryParamOp::HardSigmoid => {
            finite("a", a)?;
            finite("b", b)?;
        }
        UnaryParamOp::Celu => {
            finite("a", a)?;
            if a == 0.0 {
                return Err(invalid!("{opn} {op}: parameter a must be non-zero"));
            }
        }
        UnaryParamOp::Clip => {
            if a.is_nan() || b.is_nan() || a > b {
                return Err(invalid!(
                    "{opn} {op}: bounds a = {a}, b = {b} must not be NaN and need a <= b"
                ));
            }
        }
    }
    if n == 0 {
        return Ok(None);
    }
    let input = required_typed(opn, "input", input_ptr, n as u64, dtype)?;
    let output = required_typed(opn, "output", output_ptr, n as u64, dtype)?;
    finish(UnaryPlan {
        op: opn,
        n,
        input,
        output,
        dtype,
    })
}

/// A checked binary op.
#[derive(Debug, Clone, Copy)]
pub struct BinaryPlan {
    /// The op that made the plan, as errors name it (`"gemm"`, `"batched_gemm"`, ...).
    pub op: &'static str,
    /// Element count.
    pub n: usize,
    /// First input.
    pub a: Operand,
    /// Second input.
    pub b: Operand,
    /// The output: exactly `a`'s and/or `b`'s range, or disjoint from both.
    pub output: Operand,
    /// The storage type of the operands (f32 but for `binary_ex`).
    pub dtype: DType,
}

/// Validates a binary op over `n` f32 elements.
pub fn binary(
    a_ptr: u64,
    b_ptr: u64,
    output_ptr: u64,
    n: usize,
) -> BackendResult<Option<BinaryPlan>> {
    binary_typed("binary", DType::F32, a_ptr, b_ptr, output_ptr, n)
}

/// Validates `binary_ex`: a binary op over `n` elements stored as `dtype`.
pub fn binary_ex(
    dtype: DType,
    a_ptr: u64,
    b_ptr: u64,
    output_ptr: u64,
    n: usize,
) -> BackendResult<Option<BinaryPlan>> {
    binary_typed("binary_ex", dtype, a_ptr, b_ptr, output_ptr, n)
}

fn binary_typed(
    op: &'static str,
    dtype: DType,
    a_ptr: u64,
    b_ptr: u64,
    output_ptr: u64,
    n: usize,
) -> BackendResult<Option<BinaryPlan>> {
    let (Some(a), Some(b), Some(output)) = (
        operand(op, "a", a_ptr, n as u64, dtype)?,
        operand(op, "b", b_ptr, n as u64, dtype)?,
        operand(op, "output", output_ptr, n as u64, dtype)?,
    ) else {
        return Ok(None);
    };
    finish(BinaryPlan {
        op,
        n,
        a,
        b,
        output,
        dtype,
    })
}

/// The most dimensions a [`binary_broadcast`] shape may have.
pub const MAX_BROADCAST_RANK: usize = 6;

/// A checked [`ComputeBackend::binary_broadcast`](crate::ComputeBackend::binary_broadcast):
/// the output's shape with its size-1 dimensions dropped and neighbours that broadcast
/// alike merged (so `[8, 128, 64] + [64]` is `[1024, 64]` against `[0, 1]` strides), and
/// each input's element strides over it, 0 along a broadcast dimension.
#[derive(Debug, Clone, Copy)]
pub struct BroadcastPlan {
    /// The op that made the plan, as errors name it.
    pub op: &'static str,
    /// Output elements.
    pub n: usize,
    /// Dimensions in use in `shape` and the strides (1 to 6).
    pub rank: usize,
    /// The merged output shape; entries past `rank` are 1.
    pub shape: [usize; MAX_BROADCAST_RANK],
    /// `a`'s element stride along each merged dimension (0: broadcast).
    pub a_strides: [usize; MAX_BROADCAST_RANK],
    /// `b`'s element stride along each merged dimension (0: broadcast).
    pub b_strides: [usize; MAX_BROADCAST_RANK],
    /// First input.
    pub a: Operand,
    /// Second input.
    pub b: Operand,
    /// The output: exactly the range of an input that is not broadcast, or disjoint from
    /// both.
    pub output: Operand,
    /// Storage of a, b and the output.
    pub dtype: DType,
}

impl BroadcastPlan {
    /// The elements of `a` and `b` that output element `i` reads.
    pub fn sources(&self, i: usize) -> (usize, usize) {
        let (mut rest, mut ia, mut ib) = (i, 0, 0);
        for d in (0..self.rank).rev() {
            let x = rest % self.shape[d];
            rest /= self.shape[d];
            ia += x * self.a_strides[d];
            ib += x * self.b_strides[d];
        }
        (ia, ib)
    }

    /// The same op as a plain [`BinaryPlan`] when neither input is broadcast.
    pub fn as_binary(&self) -> Option<BinaryPlan> {
        let full = |bytes: u64| bytes == self.output.bytes;
        (full(self.a.bytes) && full(self.b.bytes)).then_some(BinaryPlan {
            op: self.op,
            n: self.n,
            a: self.a,
            b: self.b,
            output: self.output,
            dtype: self.dtype,
        })
    }
}

/// `[2, 3]`, as shapes print in errors.
fn fmt_shape(shape: &[usize]) -> String {
    format!("{shape:?}")
}

/// Validates a broadcasting binary op over row-major contiguous f32 operands: NumPy's
/// rules (shapes aligned at the last dimension, each pair equal or one of them 1),
/// `out_shape` the broadcast shape.
pub fn binary_broadcast(
    a_ptr: u64,
    a_shape: &[usize],
    b_ptr: u64,
    b_shape: &[usize],
    out_ptr: u64,
    out_shape: &[usize],
) -> BackendResult<Option<BroadcastPlan>> {
    broadcast_typed(
        "binary_broadcast",
        DType::F32,
        [a_ptr, b_ptr, out_ptr],
        [a_shape, b_shape, out_shape],
    )
}

/// [`binary_broadcast`] over operands stored as `dtype` (the plan's op is
/// `"binary_broadcast_ex"`).
pub fn binary_broadcast_ex(
    dtype: DType,
    a_ptr: u64,
    a_shape: &[usize],
    b_ptr: u64,
    b_shape: &[usize],
    out_ptr: u64,
    out_shape: &[usize],
) -> BackendResult<Option<BroadcastPlan>> {
    broadcast_typed(
        "binary_broadcast_ex",
        dtype,
        [a_ptr, b_ptr, out_ptr],
        [a_shape, b_shape, out_shape],
    )
}

fn broadcast_typed(
    opn: &'static str,
    dtype: DType,
    [a_ptr, b_ptr, out_ptr]: [u64; 3],
    [a_shape, b_shape, out_shape]: [&[usize]; 3],
) -> BackendResult<Option<BroadcastPlan>> {
    for (name, s) in [
        ("a_shape", a_shape),
        ("b_shape", b_shape),
        ("out_shape", out_shape),
    ] {
        if s.len() > MAX_BROADCAST_RANK {
            return Err(invalid!(
                "{opn}: {name} {} has {} dimensions, at most {MAX_BROADCAST_RANK}",
                fmt_shape(s),
                s.len()
            ));
        }
    }
    let rank = a_shape.len().max(b_shape.len());
    // Each shape left-padded with 1s to `rank`.
    let pad = |s: &[usize]| {
        let mut p = [1usize; MAX_BROADCAST_RANK];
        p[rank - s.len()..rank].copy_from_slice(s);
        p
    };
    let (pa, pb) = (pad(a_shape), pad(b_shape));
    let mut want = [1usize; MAX_BROADCAST_RANK];
    for d in 0..rank {
        want[d] = match (pa[d], pb[d]) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            (x, y) => {
                return Err(invalid!(
                    "{opn}: a_shape {} and b_shape {} do not broadcast: dimension {} is {x} \
                     against {y} (each pair must be equal or one of them 1)",
                    fmt_shape(a_shape),
                    fmt_shape(b_shape),
                    d as isize - rank as isize
                ));
            }
        };
    }
    if out_shape != &want[..rank] {
        return Err(invalid!(
            "{opn}: out_shape {} is not the broadcast shape {} of a_shape {} and b_shape {}",
            fmt_shape(out_shape),
            fmt_shape(&want[..rank]),
            fmt_shape(a_shape),
            fmt_shape(b_shape)
        ));
    }
    let n = product(opn, "the output's element count", out_shape)?;
    // The merged dimensions below multiply in usize: on 32-bit targets the count must fit.
    let n = usize::try_from(n).map_err(|_| {
        invalid!(
            "{opn}: size overflow: out_shape {} has {n} elements, more than this target's usize",
            fmt_shape(out_shape)
        )
    })?;
    if n == 0 {
        return Ok(None);
    }
    let a_elems = product(opn, "a's element count", a_shape)?;
    let b_elems = product(opn, "b's element count", b_shape)?;
    let a = required_typed(opn, "a", a_ptr, a_elems, dtype)?;
    let b = required_typed(opn, "b", b_ptr, b_elems, dtype)?;
    let output = required_typed(opn, "output", out_ptr, n as u64, dtype)?;
    // Merge: drop size-1 output dimensions, join neighbours whose inputs both broadcast
    // (or both do not) alike.
    let mut shape = [1usize; MAX_BROADCAST_RANK];
    let mut full = [[false; 2]; MAX_BROADCAST_RANK];
    let mut m = 0;
    for d in 0..rank {
        if want[d] == 1 {
            continue;
        }
        let f = [pa[d] != 1, pb[d] != 1];
        if m > 0 && full[m - 1] == f {
            shape[m - 1] *= want[d];
        } else {
            shape[m] = want[d];
            full[m] = f;
            m += 1;
        }
    }
    let rank = m.max(1);
    let strides = |which: usize| {
        let mut s = [0usize; MAX_BROADCAST_RANK];
        let mut step = 1;
        for d in (0..rank).rev() {
            if full[d][which] {
                s[d] = step;
                step *= shape[d];
            }
        }
        s
    };
    finish(BroadcastPlan {
        op: opn,
        n,
        rank,
        shape,
        a_strides: strides(0),
        b_strides: strides(1),
        a,
        b,
        output,
        dtype,
    })
}

/// A checked [`ComputeBackend::gather`](crate::ComputeBackend::gather).
#[derive(Debug, Clone, Copy)]
pub struct GatherPlan {
    /// The op that made the plan, as errors name it.
    pub op: &'static str,
    /// Rows of the table.
    pub rows: usize,
    /// Elements per row.
    pub cols: usize,
    /// Rows gathered.
    pub n: usize,
    /// The `rows x cols` f32 table; `None` when it has no rows (every index is out of
    /// range).
    pub table: Option<Operand>,
    /// `n` u32 row indices.
    pub indices: Operand,
    /// The `n x cols` output, disjoint from the table and the indices.
    pub output: Operand,
    /// Storage of the table and the output (the indices are u32).
    pub dtype: DType,
}

/// Validates a gather of `n` rows of a `rows x cols` f32 table by `n` u32 indices.
pub fn gather(
    table_ptr: u64,
    rows: usize,
    cols: usize,
    indices_ptr: u64,
    n: usize,
    out_ptr: u64,
) -> BackendResult<Option<GatherPlan>> {
    gather_typed(
        "gather",
        DType::F32,
        table_ptr,
        rows,
        cols,
        indices_ptr,
        n,
        out_ptr,
    )
}

/// [`gather`] of a table stored as `dtype` into an output of `dtype` (the plan's op is
/// `"gather_ex"`).
pub fn gather_ex(
    dtype: DType,
    table_ptr: u64,
    rows: usize,
    cols: usize,
    indices_ptr: u64,
    n: usize,
    out_ptr: u64,
) -> BackendResult<Option<GatherPlan>> {
    gather_typed(
        "gather_ex",
        dtype,
        table_ptr,
        rows,
        cols,
        indices_ptr,
        n,
        out_ptr,
    )
}

#[allow(clippy::too_many_arguments)]
fn gather_typed(
    opn: &'static str,
    dtype: DType,
    table_ptr: u64,
    rows: usize,
    cols: usize,
    indices_ptr: u64,
    n: usize,
    out_ptr: u64,
) -> BackendResult<Option<GatherPlan>> {
    let table_elems = mul(opn, "the table's rows x cols", rows as u64, cols as u64)?;
    let out_elems = mul(opn, "n x cols", n as u64, cols as u64)?;
    if out_elems == 0 {
        return Ok(None);
    }
    let table = operand(opn, "table", table_ptr, table_elems, dtype)?;
    // u32 indices: the size and alignment of f32.
    let indices = required(opn, "indices", indices_ptr, n as u64)?;
    let output = required_typed(opn, "output", out_ptr, out_elems, dtype)?;
    finish(GatherPlan {
        op: opn,
        rows,
        cols,
        n,
        table,
        indices,
        output,
        dtype,
    })
}

/// A checked copy between or within device ranges.
#[derive(Debug, Clone, Copy)]
pub struct CopyPlan {
    /// The op that made the plan, as errors name it (`"gemm"`, `"batched_gemm"`, ...).
    pub op: &'static str,
    /// Where the bytes come from.
    pub src: Operand,
    /// Where they go.
    pub dst: Operand,
}

impl CopyPlan {
    /// True when source and destination are the same bytes (a no-op once range-checked).
    pub fn identical(&self) -> bool {
        self.src.same_range(&self.dst)
    }
}

/// Validates a `copy_dtod` of `bytes` bytes. Byte copies need no alignment.
pub fn copy_dtod(dst: u64, src: u64, bytes: usize) -> BackendResult<Option<CopyPlan>> {
    const OP: &str = "copy_dtod";
    if bytes == 0 {
        return Ok(None);
    }
    let bytes = bytes as u64;
    let end_ok = |name, p: u64| {
        p.checked_add(bytes).map(|_| ()).ok_or_else(|| {
            invalid!("{OP}: operand {name} at {p:#x} with {bytes} bytes wraps past the end of the address space")
        })
    };
    end_ok("src", src)?;
    end_ok("dst", dst)?;
    let plan = CopyPlan {
        op: OP,
        src: Operand {
            name: "src",
            ptr: src,
            bytes,
        },
        dst: Operand {
            name: "dst",
            ptr: dst,
            bytes,
        },
    };
    finish(plan)
}

/// A checked host copy: the device range of a `copy_htod` destination or a `copy_dtoh`
/// source.
#[derive(Debug, Clone, Copy)]
pub struct HostCopyPlan {
    /// `"copy_htod"` or `"copy_dtoh"`.
    pub op: &'static str,
    /// The device bytes written or read.
    pub device: Operand,
}

/// Validates the device side of a host copy of `bytes` bytes at `ptr` (`name` is the
/// operand's name in the signature); `None` for an empty copy.
pub fn host_copy(
    op: &'static str,
    name: &'static str,
    ptr: u64,
    bytes: usize,
) -> BackendResult<Option<HostCopyPlan>> {
    if bytes == 0 {
        return Ok(None);
    }
    let bytes = bytes as u64;
    if ptr.checked_add(bytes).is_none() {
        return Err(invalid!(
            "{op}: operand {name} at {ptr:#x} with {bytes} bytes wraps past the end of the address space"
        ));
    }
    Ok(Some(HostCopyPlan {
        op,
        device: Operand { name, ptr, bytes },
    }))
}

/// A checked cast.
#[derive(Debug, Clone, Copy)]
pub struct CastPlan {
    /// The op that made the plan, as errors name it (`"gemm"`, `"batched_gemm"`, ...).
    pub op: &'static str,
    /// Element count.
    pub n: usize,
    /// Source element type.
    pub src_dtype: DType,
    /// Destination element type.
    pub dst_dtype: DType,
    /// Source range.
    pub src: Operand,
    /// Destination range.
    pub dst: Operand,
}

impl CastPlan {
    /// True when the cast is the identity on the same bytes.
    pub fn identical(&self) -> bool {
        self.src_dtype == self.dst_dtype && self.src.same_range(&self.dst)
    }
}

/// Validates a cast of `n` elements.
pub fn cast(
    src: u64,
    src_dtype: DType,
    dst: u64,
    dst_dtype: DType,
    n: usize,
) -> BackendResult<Option<CastPlan>> {
    const OP: &str = "cast";
    let (Some(s), Some(d)) = (
        operand(OP, "src", src, n as u64, src_dtype)?,
        operand(OP, "dst", dst, n as u64, dst_dtype)?,
    ) else {
        return Ok(None);
    };
    let plan = CastPlan {
        op: OP,
        n,
        src_dtype,
        dst_dtype,
        src: s,
        dst: d,
    };
    finish(plan)
}

/// What every checked plan offers the validating layer
/// ([`executor`](crate::executor)): its operands, so that addresses can be rewritten
/// through aliases to the physical bytes they name, and its overlap rules, so that they
/// can be checked again on those physical bytes.
pub trait Plan {
    /// The op that made the plan.
    fn op(&self) -> &'static str;

    /// The operands the op touches.
    fn operands_mut(&mut self) -> Vec<&mut Operand>;

    /// The op's rules on overlapping operands, on the operands as they are now.
    fn check_overlaps(&self) -> BackendResult<()>;
}

/// The plan once its overlap rules hold.
fn finish<P: Plan>(plan: P) -> BackendResult<Option<P>> {
    plan.check_overlaps()?;
    Ok(Some(plan))
}

/// `[a, b, ...]` of optional operands, as mutable references to those present.
fn present<'a>(ops: impl IntoIterator<Item = Option<&'a mut Operand>>) -> Vec<&'a mut Operand> {
    ops.into_iter().flatten().collect()
}

impl Plan for GemmPlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        present([self.a.as_mut(), self.b.as_mut(), Some(&mut self.c)])
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        disjoint(self.op, &self.c, self.a.as_ref())?;
        disjoint(self.op, &self.c, self.b.as_ref())
    }
}

impl Plan for GemmQPlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        present([self.a.as_mut(), self.b.as_mut(), Some(&mut self.c)])
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        disjoint(self.op, &self.c, self.a.as_ref())?;
        disjoint(self.op, &self.c, self.b.as_ref())
    }
}

impl Plan for Conv2dPlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        present([
            self.input.as_mut(),
            self.filter.as_mut(),
            self.bias.as_mut(),
            Some(&mut self.output),
        ])
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        disjoint(self.op, &self.output, self.input.as_ref())?;
        disjoint(self.op, &self.output, self.filter.as_ref())?;
        disjoint(self.op, &self.output, self.bias.as_ref())
    }
}

impl Plan for AttentionPlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        present([
            self.q.as_mut(),
            self.k.as_mut(),
            self.v.as_mut(),
            self.mask.as_mut(),
            Some(&mut self.o),
        ])
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        for input in [
            self.q.as_ref(),
            self.k.as_ref(),
            self.v.as_ref(),
            self.mask.as_ref(),
        ] {
            disjoint(self.op, &self.o, input)?;
        }
        Ok(())
    }
}

impl Plan for ReducePlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        present([self.input.as_mut(), Some(&mut self.output)])
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        disjoint(self.op, &self.output, self.input.as_ref())
    }
}

impl Plan for UnaryPlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        vec![&mut self.input, &mut self.output]
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        same_or_disjoint(self.op, &self.output, &self.input)
    }
}

impl Plan for BinaryPlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        vec![&mut self.a, &mut self.b, &mut self.output]
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        same_or_disjoint(self.op, &self.output, &self.a)?;
        same_or_disjoint(self.op, &self.output, &self.b)
    }
}

impl Plan for BroadcastPlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        vec![&mut self.a, &mut self.b, &mut self.output]
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        // Sharing an input's exact range means that input has the output's element
        // count, so it is not broadcast; any other overlap is partial.
        same_or_disjoint(self.op, &self.output, &self.a)?;
        same_or_disjoint(self.op, &self.output, &self.b)
    }
}

impl Plan for GatherPlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        present([
            self.table.as_mut(),
            Some(&mut self.indices),
            Some(&mut self.output),
        ])
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        disjoint(self.op, &self.output, self.table.as_ref())?;
        disjoint(self.op, &self.output, Some(&self.indices))
    }
}

impl Plan for RowPlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        present([
            Some(&mut self.x),
            self.gamma.as_mut(),
            self.beta.as_mut(),
            Some(&mut self.y),
        ])
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        same_or_disjoint(self.op, &self.y, &self.x)?;
        disjoint(self.op, &self.y, self.gamma.as_ref())?;
        disjoint(self.op, &self.y, self.beta.as_ref())
    }
}

impl Plan for CopyPlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        vec![&mut self.src, &mut self.dst]
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        if self.dst.overlaps(&self.src) && !self.identical() {
            return Err(invalid!(
                "{}: dst range {} overlaps src range {}; overlapping copies are not allowed",
                self.op,
                fmt_range(self.dst.ptr, self.dst.bytes),
                fmt_range(self.src.ptr, self.src.bytes)
            ));
        }
        Ok(())
    }
}

impl Plan for CastPlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        vec![&mut self.src, &mut self.dst]
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        if self.src.overlaps(&self.dst) && !self.identical() {
            return Err(invalid!(
                "{}: dst range {} overlaps src range {}; only an identical f32->f32 style no-op may alias",
                self.op,
                fmt_range(self.dst.ptr, self.dst.bytes),
                fmt_range(self.src.ptr, self.src.bytes)
            ));
        }
        Ok(())
    }
}

impl Plan for HostCopyPlan {
    fn op(&self) -> &'static str {
        self.op
    }

    fn operands_mut(&mut self) -> Vec<&mut Operand> {
        vec![&mut self.device]
    }

    fn check_overlaps(&self) -> BackendResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AttentionMask;
    use BackendTranspose::{NoTrans as N, Trans as T};

    fn g(ta: BackendTranspose, tb: BackendTranspose, m: usize, n: usize, k: usize) -> GemmArgs {
        GemmArgs {
            trans_a: ta,
            trans_b: tb,
            m,
            n,
            k,
            alpha: 1.0,
            a_ptr: 0x1000,
            a_dtype: DType::F32,
            lda: if ta.is_transposed() {
                k.max(1)
            } else {
                m.max(1)
            },
            b_ptr: 0x10000,
            b_dtype: DType::F32,
            ldb: if tb.is_transposed() {
                n.max(1)
            } else {
                k.max(1)
            },
            beta: 0.0,
            c_ptr: 0x100000,
            c_dtype: DType::F32,
            ldc: m.max(1),
            batch: Batch::ONE,
        }
    }

    fn err(r: BackendResult<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    fn bc(a: &[usize], b: &[usize], out: &[usize]) -> BackendResult<Option<BroadcastPlan>> {
        binary_broadcast(0x1000, a, 0x100000, b, 0x200000, out)
    }

    #[test]
    fn broadcast_merges_dimensions_that_broadcast_alike() {
        // [8, 128, 64] + [64]: rows of 64 against one row.
        let p = bc(&[8, 128, 64], &[64], &[8, 128, 64]).unwrap().unwrap();
        assert_eq!((p.rank, &p.shape[..2]), (2, &[1024, 64][..]));
        assert_eq!(
            (&p.a_strides[..2], &p.b_strides[..2]),
            (&[64, 1][..], &[0, 1][..])
        );
        // Size-1 output dimensions are dropped; a column against a row.
        let p = bc(&[1, 3, 1], &[1, 1, 4], &[1, 3, 4]).unwrap().unwrap();
        assert_eq!((p.rank, &p.shape[..2]), (2, &[3, 4][..]));
        assert_eq!(
            (&p.a_strides[..2], &p.b_strides[..2]),
            (&[1, 0][..], &[0, 1][..])
        );
        assert_eq!(p.sources(5), (1, 1));
        // Scalars: one element, rank 1.
        let p = bc(&[], &[], &[]).unwrap().unwrap();
        assert_eq!((p.n, p.rank, p.a_strides[0], p.b_strides[0]), (1, 1, 0, 0));
        // Equal shapes are a plain binary op.
        assert!(
            bc(&[2, 3], &[2, 3], &[2, 3])
                .unwrap()
                .unwrap()
                .as_binary()
                .is_some()
        );
        assert!(
            bc(&[2, 3], &[3], &[2, 3])
                .unwrap()
                .unwrap()
                .as_binary()
                .is_none()
        );
        // Zero-size dimensions broadcast against 1 and make a no-op.
        assert!(bc(&[0, 3], &[1, 3], &[0, 3]).unwrap().is_none());
    }

    #[test]
    fn broadcast_sources_walk_numpy_order() {
        // [2, 1, 3] op [4, 1]: out [2, 4, 3]; a repeats over the middle axis, b over the
        // outer and the last.
        let p = bc(&[2, 1, 3], &[4, 1], &[2, 4, 3]).unwrap().unwrap();
        let mut i = 0;
        for x in 0..2 {
            for y in 0..4 {
                for z in 0..3 {
                    assert_eq!(p.sources(i), (x * 3 + z, y), "element {i}");
                    i += 1;
                }
            }
        }
    }

    #[test]
    fn broadcast_errors_say_what_is_wrong() {
        let e = err(bc(&[4, 3], &[5], &[4, 3]));
        assert!(
            e.contains("do not broadcast") && e.contains("3 against 5"),
            "{e}"
        );
        let e = err(bc(&[2, 4], &[4], &[4, 4]));
        assert!(
            e.contains("out_shape [4, 4]") && e.contains("[2, 4]"),
            "{e}"
        );
        let e = err(bc(&[1; 7], &[1], &[1; 7]));
        assert!(e.contains("at most 6"), "{e}");
        let e = err(bc(&[usize::MAX, 2], &[1], &[usize::MAX, 2]));
        assert!(e.contains("overflow"), "{e}");
        // In place only over an input that is not broadcast.
        let e = err(binary_broadcast(
            0x1000,
            &[8, 4],
            0x1000,
            &[4],
            0x1000,
            &[8, 4],
        ));
        assert!(e.contains("partially overlaps"), "{e}");
        assert!(binary_broadcast(0x1000, &[8, 4], 0x9000, &[4], 0x1000, &[8, 4]).is_ok());
        assert!(binary_broadcast(0x1000, &[4], 0x9000, &[8, 4], 0x9000, &[8, 4]).is_ok());
    }

    #[test]
    fn gather_checks_its_operands() {
        let p = gather(0x1000, 10, 4, 0x2000, 3, 0x3000).unwrap().unwrap();
        assert_eq!(
            (p.table.unwrap().bytes, p.indices.bytes, p.output.bytes),
            (160, 12, 48)
        );
        // No rows: nothing is read from the table.
        let p = gather(0x1000, 0, 4, 0x2000, 3, 0x3000).unwrap().unwrap();
        assert!(p.table.is_none());
        assert!(gather(0x1000, 10, 0, 0x2000, 3, 0x3000).unwrap().is_none());
        assert!(gather(0x1000, 10, 4, 0x2000, 0, 0x3000).unwrap().is_none());
        let e = err(gather(0x1000, 10, 4, 0x2000, 3, 0x1010));
        assert!(e.contains("overlaps") && e.contains("table"), "{e}");
        let e = err(gather(0x1000, 10, 4, 0x2000, 3, 0x2004));
        assert!(e.contains("overlaps") && e.contains("indices"), "{e}");
        let e = err(gather(0x1000, 10, 4, 0x2002, 3, 0x3000));
        assert!(e.contains("indices") && e.contains("aligned"), "{e}");
        let e = err(gather(0x1000, usize::MAX, 4, 0x2000, 3, 0x3000));
        assert!(e.contains("rows x cols"), "{e}");
    }

    #[test]
    fn gemm_extents_follow_the_column_major_formula() {
        let mut a = g(T, N, 3, 4, 5);
        a.lda = 7;
        let p = gemm("gemm", &a).unwrap().unwrap();
        // A stored 5x3 with lda 7: 7*2 + 5 elements.
        assert_eq!(p.a.unwrap().bytes, 4 * 19);
        assert_eq!(p.b.unwrap().bytes, 4 * 20);
        assert_eq!(p.c.bytes, 4 * 12);
    }

    #[test]
    fn gemm_leading_dims_are_checked() {
        let mut a = g(N, N, 3, 4, 5);
        a.lda = 2;
        assert!(err(gemm("gemm", &a)).contains("lda 2 < max(1, 3) rows of A"));
        let mut a = g(N, T, 3, 4, 5);
        a.ldb = 3;
        assert!(err(gemm("gemm", &a)).contains("ldb 3 < max(1, 4)"));
        let mut a = g(N, N, 3, 4, 5);
        a.ldc = 0;
        assert!(err(gemm("gemm", &a)).contains("ldc 0"));
    }

    #[test]
    fn gemm_untouched_operands_are_not_checked() {
        let mut a = g(N, N, 3, 4, 5);
        a.alpha = 0.0;
        a.a_ptr = 3; // misaligned, but never read
        let p = gemm("gemm", &a).unwrap().unwrap();
        assert!(p.a.is_none() && p.b.is_none());
        let mut a = g(N, N, 0, 4, 5);
        a.c_ptr = 1;
        assert!(gemm("gemm", &a).unwrap().is_none());
    }

    #[test]
    fn gemm_misaligned_and_aliasing_operands_fail() {
        let mut a = g(N, N, 3, 4, 5);
        a.b_ptr += 2;
        assert!(err(gemm("gemm", &a)).contains("operand B address"));
        let mut a = g(N, N, 3, 4, 5);
        a.c_ptr = a.a_ptr + 8;
        assert!(err(gemm("gemm", &a)).contains("overlaps input A"));
        let mut a = g(N, N, 3, 4, 5);
        a.a_dtype = DType::F16;
        a.a_ptr += 2; // 2-byte aligned is enough for f16
        gemm("gemm_ex", &a).unwrap();
    }

    #[test]
    fn batched_spans_and_overlap() {
        let mut a = g(N, N, 2, 3, 4);
        a.batch = Batch {
            stride_a: 100,
            stride_b: 0,
            stride_c: 6,
            count: 3,
        };
        let p = gemm("batched_gemm", &a).unwrap().unwrap();
        assert_eq!(p.a.unwrap().bytes, 4 * (200 + 8));
        assert_eq!(p.b.unwrap().bytes, 4 * 12);
        assert_eq!(p.c.bytes, 4 * 18);
        a.batch.stride_c = 5;
        assert!(err(gemm("batched_gemm", &a)).contains("overlap"));
        a.batch.count = 1;
        gemm("batched_gemm", &a).unwrap();
        a.batch.count = 0;
        assert!(gemm("batched_gemm", &a).unwrap().is_none());
    }

    #[test]
    fn gemm_size_overflow_is_an_error() {
        let mut a = g(N, N, 2, usize::MAX / 2, 4);
        a.ldc = usize::MAX / 2;
        assert!(err(gemm("gemm", &a)).contains("overflow"));
    }

    #[test]
    fn conv_states_the_expected_shape() {
        let e = err(conv2d(
            0x1000,
            &[1, 2, 5, 5],
            0x2000,
            &[3, 2, 3, 3],
            0x3000,
            &[1, 3, 4, 4],
            &[1, 1],
            &[0, 0],
        ));
        assert!(e.contains("[1, 3, 3, 3]"), "{e}");
        let p = conv2d(
            0x1000,
            &[1, 2, 5, 5],
            0x2000,
            &[3, 2, 3, 3],
            0x3000,
            &[1, 3, 3, 3],
            &[2, 2],
            &[1, 1],
        )
        .unwrap()
        .unwrap();
        assert_eq!((p.oh, p.ow), (3, 3));
        assert!(
            err(conv2d(
                0,
                &[1, 2, 5],
                0,
                &[3, 2, 3, 3],
                0,
                &[1, 3, 3, 3],
                &[1, 1],
                &[0, 0]
            ))
            .contains("input_shape")
        );
        assert!(
            err(conv2d(
                0,
                &[1, 2, 5, 5],
                0,
                &[3, 1, 3, 3],
                0,
                &[1, 3, 3, 3],
                &[1, 1],
                &[0, 0]
            ))
            .contains("channels")
        );
        assert!(
            err(conv2d(
                0,
                &[1, 2, 2, 2],
                0,
                &[3, 2, 3, 3],
                0,
                &[1, 3, 1, 1],
                &[1, 1],
                &[0, 0]
            ))
            .contains("larger")
        );
        assert!(
            err(conv2d(
                0,
                &[1, 2, 5, 5],
                0,
                &[3, 2, 3, 3],
                0,
                &[1, 3, 3, 3],
                &[0, 1],
                &[0, 0]
            ))
            .contains("stride")
        );
    }

    #[test]
    fn reduce_axis_and_empty_axis() {
        assert!(err(reduce(0x1000, 0x2000, &[2, 3], 2)).contains("axis 2 is out of range"));
        assert!(err(reduce(0x1000, 0x2000, &[], 0)).contains("at least one"));
        let p = reduce(0x1000, 0x2000, &[2, 0, 3], 1).unwrap().unwrap();
        assert!(p.input.is_none());
        assert_eq!((p.outer, p.len, p.inner, p.output.bytes), (2, 0, 3, 24));
        assert!(reduce(0x1000, 0x2000, &[2, 0, 3], 0).unwrap().is_none());
    }

    #[test]
    fn unary_binary_alias_rules() {
        assert!(unary(0x1000, 0x1000, 8).unwrap().unwrap().in_place());
        assert!(err(unary(0x1000, 0x1004, 8)).contains("partially overlaps"));
        binary(0x1000, 0x1000, 0x1000, 8).unwrap();
        binary(0x1000, 0x1010, 0x2000, 8).unwrap(); // inputs may overlap each other
        assert!(err(binary(0x1000, 0x2000, 0x2004, 8)).contains("partially overlaps input b"));
        // Role and name are not repeated when they are the same word.
        let m = err(unary(0x1000, 0x1004, 8));
        assert!(
            m.contains("unary: output range") && m.contains("overlaps input range"),
            "{m}"
        );
        assert!(
            !m.contains("input input") && !m.contains("output output"),
            "{m}"
        );
    }

    #[test]
    fn copies_and_casts() {
        assert!(copy_dtod(0x1000, 0x1000, 16).unwrap().unwrap().identical());
        assert!(err(copy_dtod(0x1000, 0x1008, 16)).contains("overlaps"));
        assert!(
            copy_dtod(0x1001, 0x2003, 5).is_ok(),
            "byte copies need no alignment"
        );
        assert!(err(copy_dtod(u64::MAX - 2, 0x1000, 16)).contains("wraps"));
        assert!(err(cast(0x1002, DType::F32, 0x2000, DType::F16, 4)).contains("4-byte aligned"));
        cast(0x1000, DType::F32, 0x2002, DType::F16, 4).unwrap();
        assert!(
            cast(0x1000, DType::F16, 0x1000, DType::F16, 4)
                .unwrap()
                .unwrap()
                .identical()
        );
        assert!(err(cast(0x1000, DType::F32, 0x1000, DType::F16, 4)).contains("overlaps"));
    }

    #[test]
    fn attention_checks() {
        let p = attention(0x1000, 0x2000, 0x3000, 0x4000, 1, 2, 3, 0, 4, 0.5, true)
            .unwrap()
            .unwrap();
        assert!(p.k.is_none() && p.v.is_none());
        assert!(
            attention(0x1000, 0x2000, 0x3000, 0x4000, 0, 2, 3, 5, 4, 0.5, true)
                .unwrap()
                .is_none()
        );
        assert!(
            err(attention(
                0x1000, 0x2000, 0x3000, 0x1010, 1, 1, 2, 2, 4, 0.5, false
            ))
            .contains("overlaps input Q")
        );
        assert!(
            err(attention(
                0x1000,
                0x2000,
                0x3000,
                0x4000,
                usize::MAX,
                2,
                3,
                5,
                4,
                0.5,
                true
            ))
            .contains("overflow")
        );
    }

    fn gqa(heads: usize, kv_heads: usize) -> AttentionArgs {
        AttentionArgs::new(
            2,
            heads,
            kv_heads,
            3,
            5,
            4,
            HeadTensor::bhsd(0x10_0000, heads, 3, 4),
            HeadTensor::bhsd(0x20_0000, kv_heads, 8, 4),
            HeadTensor::bhsd(0x30_0000, kv_heads, 8, 4),
            HeadTensor::bhsd(0x40_0000, heads, 3, 4),
        )
    }

    #[test]
    fn attention_ex_checks() {
        let p = attention_ex(&gqa(8, 2)).unwrap().unwrap();
        assert_eq!((p.group(), p.kv_head(3), p.kv_head(4)), (4, 0, 1));
        // K spans the used rows of a cache of 8: (2 - 1) * 2 * 8 * 4 + (2 - 1) * 8 * 4
        // + (5 - 1) * 4 + 4 elements.
        assert_eq!(p.k.unwrap().bytes, 4 * (64 + 32 + 16 + 4));
        assert!(err(attention_ex(&gqa(8, 3))).contains("heads 8 is not a multiple of kv_heads 3"));
        assert!(err(attention_ex(&gqa(8, 0))).contains("kv_heads 0"));
        let bad_mask = gqa(8, 2).mask(AttentionMask {
            ptr: 0x50_0000,
            batch: 3,
            heads: 1,
        });
        assert!(err(attention_ex(&bad_mask)).contains("does not broadcast to [2, 8, 3, 5]"));
        let mask = gqa(8, 2).mask(AttentionMask {
            ptr: 0x50_0000,
            batch: 1,
            heads: 8,
        });
        let p = attention_ex(&mask).unwrap().unwrap();
        assert_eq!(p.mask_strides, [0, 15]);
        assert_eq!(p.mask.unwrap().bytes, 4 * 8 * 15);
        assert!(err(attention_ex(&gqa(8, 2).softcap(0.0))).contains("softcap 0"));
        assert!(err(attention_ex(&gqa(8, 2).softcap(f64::NAN))).contains("softcap NaN"));
        assert!(err(attention_ex(&gqa(8, 2).window(0))).contains("window 0"));
        let mut w = gqa(8, 2).window(2);
        w.causal = false;
        assert!(err(attention_ex(&w)).contains("needs causal"));
        // Rows of O that share elements, and row strides below the row.
        let mut o = gqa(8, 2);
        o.o = HeadTensor::new(0x40_0000, [96, 4, 8]);
        assert!(
            err(attention_ex(&o))
                .contains("O's strides [96, 4, 8] make rows of 4 elements overlap")
        );
        let mut q = gqa(8, 2);
        q.q.row_stride = 3;
        assert!(err(attention_ex(&q)).contains("Q's row stride 3 is less than its row length 4"));
        // [b, s, h, d] rows interleave without overlapping.
        let mut bshd = gqa(8, 2);
        bshd.o = HeadTensor::bshd(0x40_0000, 8, 3, 4);
        assert!(attention_ex(&bshd).unwrap().is_some());
        // Broadcast inputs (stride 0) are fine; O overlapping the mask is not.
        let mut shared = gqa(8, 2);
        shared.k.batch_stride = 0;
        assert!(attention_ex(&shared).unwrap().is_some());
        let over = gqa(8, 2).mask(AttentionMask::shared(0x40_0010));
        assert!(err(attention_ex(&over)).contains("overlaps input mask"));
        // V and O with their own head size.
        let mut dv = gqa(8, 2).v_head_dim(6);
        dv.o = HeadTensor::bhsd(0x40_0000, 8, 3, 6);
        dv.v = HeadTensor::bhsd(0x30_0000, 2, 8, 6);
        let p = attention_ex(&dv).unwrap().unwrap();
        assert_eq!(p.o.bytes, 4 * 2 * 8 * 3 * 6);
        // No output elements: a no-op, even with garbage pointers.
        let mut empty = gqa(8, 2);
        empty.seq_q = 0;
        empty.q.ptr = 3;
        assert!(attention_ex(&empty).unwrap().is_none());
        // Visible keys: causal frontier and window.
        let mut c = attention_ex(&gqa(8, 2).causal(true)).unwrap().unwrap();
        assert_eq!((c.visible(0), c.visible(2)), (0..3, 0..5));
        c.window = Some(2);
        assert_eq!((c.visible(0), c.visible(2)), (1..3, 3..5));
        c.seq_q = 7;
        assert_eq!(c.visible(0), 0..0);
    }
}
