//! The `ComputeBackend` trait.

use std::future::Future;
use std::pin::Pin;

use crate::row_major::RowMajor;
use crate::{
    AttentionArgs, BackendError, BackendResult, BackendTranspose, BinaryOp, DType, MemoryInfo,
    ReduceOp, Retired, UnaryOp, UnaryParamOp,
};
use crate::{HostView, MapMode};

/// A boxed future returned by the async methods. Not `Send`: on the web the futures hold
/// browser objects, and natively they are driven on the calling thread.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = BackendResult<T>> + 'a>>;

/// A compute device behind `u64` pointers: the interface an ML framework codes against.
///
/// See the [crate documentation](crate) for the contract every method follows (pointer
/// rules, ordering, numerics). In short: matrices are column-major f32 (BLAS conventions),
/// every operand range must lie inside one live allocation, bad arguments fail
/// synchronously with [`BackendError::InvalidArgument`] before anything is queued, and the
/// backend behaves as one in-order stream.
///
/// The trait is object-safe: frameworks hold a `Box<dyn ComputeBackend>` or
/// `Arc<dyn ComputeBackend>` and may call it from several threads.
pub trait ComputeBackend: Send + Sync {
    /// A short, stable name such as `"cpu"` or `"webgpu (Vulkan, NVIDIA H200)"`.
    fn name(&self) -> &str;

    /// Acquires the device. Every other call before a successful `init` returns
    /// [`BackendError::NotInitialized`]; calling `init` again is a no-op.
    fn init(&mut self) -> BackendResult<()>;

    /// True once [`init`](Self::init) has succeeded.
    fn is_initialized(&self) -> bool;

    /// `C = alpha * op(A) * op(B) + beta * C`, BLAS `sgemm` exactly.
    ///
    /// - Layout: column-major f32. `op(A)` is `m x k`, `op(B)` is `k x n`, C is `m x n`.
    ///   A is stored `m x k` (`NoTrans`) or `k x m` (`Trans`, `ConjTrans`) with leading
    ///   dimension `lda >= max(1, rows as stored)`; likewise B with `ldb`; `ldc >= max(1, m)`.
    ///   Element `(i, j)` of a matrix is at `ptr + 4 * (i + j * ld)`.
    /// - `beta == 0`: C is only written, never read (NaN in C does not propagate).
    ///   `alpha == 0` or `k == 0`: A and B are not read (nor range-checked); C becomes
    ///   `beta * C`. `m == 0` or `n == 0`: no-op.
    /// - Aliasing: C must not overlap A or B (`InvalidArgument`); A and B may overlap.
    /// - Row-major callers compute `C = A * B` (A `m x k`, B `k x n`, both row-major) as
    ///   `gemm(NoTrans, NoTrans, n, m, k, 1.0, B, n, A, k, 0.0, C, n)`.
    ///
    /// Errors: `InvalidArgument` for leading dimensions, misaligned or out-of-range
    /// operands, overflowing sizes, or aliasing.
    fn gemm(
        &self,
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
    ) -> BackendResult<()>;

    /// `batch_count` independent gemms; batch `i` uses `a_ptr + 4 * i * stride_a`, likewise
    /// B and C (strides in f32 elements).
    ///
    /// Each matrix spans `ld * (cols - 1) + rows` elements. A stride of 0 shares A or B
    /// between batches. Batches whose C ranges overlap (`stride_c` smaller than C's span,
    /// with `batch_count > 1`) are `InvalidArgument`. `batch_count == 0` is a no-op.
    /// Everything else is as for [`gemm`](Self::gemm).
    fn batched_gemm(
        &self,
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a_ptr: u64,
        lda: usize,
        stride_a: usize,
        b_ptr: u64,
        ldb: usize,
        stride_b: usize,
        beta: f64,
        c_ptr: u64,
        ldc: usize,
        stride_c: usize,
        batch_count: usize,
    ) -> BackendResult<()>;

    /// 2-D cross-correlation (no filter flip), as PyTorch and cuDNN compute it.
    ///
    /// Input NCHW `[N, C, H, W]`, filter `[K, C, R, S]`, output `[N, K, OH, OW]` with
    /// `OH = (H + 2 * pad_h - R) / stride_h + 1` (likewise OW), all contiguous f32.
    /// `stride = [sh, sw]`, each >= 1; `padding = [ph, pw]`, zeros on both sides.
    ///
    /// Errors: `InvalidArgument` for shapes of the wrong rank, mismatched channels, a
    /// filter larger than the padded input, or an `output_shape` other than the expected
    /// one (the message states it). An empty output is a no-op; an empty input with a
    /// non-empty output (C == 0, or only padding under the filter) writes zeros.
    fn conv2d_forward(
        &self,
        input_ptr: u64,
        input_shape: &[usize],
        filter_ptr: u64,
        filter_shape: &[usize],
        output_ptr: u64,
        output_shape: &[usize],
        stride: &[usize],
        padding: &[usize],
    ) -> BackendResult<()>;

    /// Scaled dot-product attention: `O = softmax(scale * Q * K^T) * V`, per batch and head.
    ///
    /// Q and O are `[batch, heads, seq_q, head_dim]`, K and V `[batch, heads, seq_kv,
    /// head_dim]`, contiguous row-major f32. `scale` multiplies the scores (pass
    /// `1 / sqrt(head_dim)` for the usual attention). The softmax subtracts the row maximum.
    /// With `causal`, query `i` sees keys `j <= i + (seq_kv - seq_q)` (bottom-right
    /// aligned); a query row that sees no key, and every row when `seq_kv == 0`, outputs
    /// zeros. O must not overlap Q, K or V. A call with no output elements is a no-op.
    fn attention(
        &self,
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
    ) -> BackendResult<()>;

    /// Attention with grouped key/value heads, strided operands, an additive mask, a
    /// causal frontier, a sliding window and a soft cap, fused (no `seq_q x seq_kv`
    /// matrix in device memory): see [`AttentionArgs`] for the semantics and layouts.
    /// [`attention`](Self::attention) is the case of contiguous `[b, h, s, d]` operands
    /// with `kv_heads == heads` and no mask. With `args.dtype` f16 or bf16, Q, K, V and
    /// O are stored as that type (the mask stays f32): arithmetic in f32 or better, O
    /// rounded once at the store.
    ///
    /// Errors: `InvalidArgument` when `heads % kv_heads != 0`, the mask does not
    /// broadcast (its batch must be 1 or `batch`, its heads 1 or `heads`), `softcap` is
    /// not finite and positive, `window` is 0 or given without `causal`, a row stride is
    /// below its row length, O's rows overlap each other, O overlaps an input, or any
    /// operand's extent leaves its allocation. No output elements: no-op.
    ///
    /// The default body returns `Unsupported`.
    fn attention_ex(&self, args: &AttentionArgs) -> BackendResult<()> {
        let _ = args;
        Err(BackendError::Unsupported(format!(
            "attention_ex: not implemented by {}",
            self.name()
        )))
    }

    /// Reduces the row-major f32 tensor of `shape` over `axis`.
    ///
    /// The output has `shape` with `axis` removed (`outer * inner` values in the same
    /// order). Over an empty axis: Sum 0, Prod 1, Max -inf, Min +inf, Mean NaN. Max and Min
    /// propagate NaN. `shape` must have at least one dimension and `axis < shape.len()`.
    /// The output must not overlap the input. No output elements: no-op.
    fn reduce(
        &self,
        op: ReduceOp,
        input_ptr: u64,
        output_ptr: u64,
        shape: &[usize],
        axis: usize,
    ) -> BackendResult<()>;

    /// `output[i] = op(input[i])` for `n` contiguous f32 elements.
    ///
    /// The output may be the input's exact range (in place); partial overlap is
    /// `InvalidArgument`. `n == 0` is a no-op. Gelu is the erf form; Relu propagates NaN.
    fn unary(&self, op: UnaryOp, input_ptr: u64, output_ptr: u64, n: usize) -> BackendResult<()>;

    /// `output[i] = op(a[i], b[i])` for `n` contiguous f32 elements.
    ///
    /// The output may be exactly `a`'s and/or `b`'s range; partial overlap with either is
    /// `InvalidArgument`. `a` and `b` may overlap each other. `Pow` follows IEEE `pow`;
    /// Max and Min propagate NaN. `n == 0` is a no-op.
    fn binary(
        &self,
        op: BinaryOp,
        a_ptr: u64,
        b_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()>;

    /// Waits for all queued work and reports any error that work hit.
    fn synchronize(&self) -> BackendResult<()>;

    /// Allocates `bytes` bytes and returns a non-zero, 256-byte-aligned address that no
    /// other allocation, live or freed, has used. `alloc(0)` returns a unique address.
    /// Contents are unspecified. Fails with `OutOfMemory` when the memory cannot be had;
    /// the backend stays usable.
    fn alloc(&self, bytes: usize) -> BackendResult<u64>;

    /// Frees the allocation that starts at `ptr`. Work already queued that uses it still
    /// completes; the memory is reclaimed afterwards. Anything but the start of a live
    /// allocation (an interior pointer, a freed or unknown one) is `InvalidArgument`.
    fn free(&self, ptr: u64) -> BackendResult<()>;

    /// Copies `src` to device memory at `dst`, after all earlier calls' effects. Returns
    /// once `src` may be reused. `dst..dst + src.len()` must lie in one live allocation.
    fn copy_htod(&self, dst: u64, src: &[u8]) -> BackendResult<()>;

    /// Copies `dst.len()` bytes from device memory at `src` to `dst`, waiting for all
    /// earlier work that the data depends on.
    fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> BackendResult<()>;

    /// Copies `bytes` bytes from `src` to `dst` on the device. Any byte alignment is
    /// allowed. Overlapping ranges are `InvalidArgument`, except identical ones (a no-op).
    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> BackendResult<()>;

    /// Converts `n` elements from `src_dtype` at `src` to `dst_dtype` at `dst`.
    ///
    /// Narrowing rounds to nearest-even, overflows to infinity and keeps NaN a NaN;
    /// widening is exact. Operands must be aligned to their element size. The ranges must
    /// not overlap unless they are identical with the same dtype (a no-op).
    ///
    /// The default body returns `Unsupported`, so a new backend can start without it.
    fn cast(
        &self,
        src: u64,
        src_dtype: DType,
        dst: u64,
        dst_dtype: DType,
        n: usize,
    ) -> BackendResult<()> {
        let _ = (src, dst, n);
        Err(BackendError::Unsupported(format!(
            "cast {src_dtype} -> {dst_dtype}: not implemented by {}",
            self.name()
        )))
    }

    /// Row-wise softmax of the row-major f32 `x[rows x cols]` into `y`, over the last
    /// (contiguous) axis, stable (the row's maximum is subtracted first): `y = exp(x -
    /// max) / sum(exp(x - max))`. A row holding NaN or +inf, or only -inf, gives NaN as the
    /// IEEE formula does. `y` is `x` exactly (in place) or disjoint from it.
    ///
    /// The default body returns `Unsupported`.
    fn softmax(&self, x: u64, y: u64, rows: usize, cols: usize) -> BackendResult<()> {
        let _ = (x, y, rows, cols);
        Err(BackendError::Unsupported(format!(
            "softmax: not implemented by {}",
            self.name()
        )))
    }

    /// Row-wise `log(softmax(x))` as [`softmax`](Self::softmax) defines it, computed as
    /// `x - max - log(sum(exp(x - max)))` (no `log(0)` for small probabilities).
    ///
    /// The default body returns `Unsupported`.
    fn log_softmax(&self, x: u64, y: u64, rows: usize, cols: usize) -> BackendResult<()> {
        let _ = (x, y, rows, cols);
        Err(BackendError::Unsupported(format!(
            "log_softmax: not implemented by {}",
            self.name()
        )))
    }

    /// Layer normalisation of each row of the row-major f32 `x[rows x cols]`: mean and
    /// biased variance over the row (two passes, so a large mean does not cancel), `y =
    /// (x - mean) / sqrt(var + eps) * gamma + beta`. `gamma` and `beta` are `cols` f32
    /// values, `None` meaning 1 and 0. `eps` must be finite and `>= 0`. `y` is `x` exactly
    /// or disjoint from it, and disjoint from `gamma` and `beta`.
    ///
    /// The default body returns `Unsupported`.
    fn layer_norm(
        &self,
        x: u64,
        gamma: Option<u64>,
        beta: Option<u64>,
        y: u64,
        rows: usize,
        cols: usize,
        eps: f64,
    ) -> BackendResult<()> {
        let _ = (x, gamma, beta, y, rows, cols, eps);
        Err(BackendError::Unsupported(format!(
            "layer_norm: not implemented by {}",
            self.name()
        )))
    }

    /// RMS normalisation of each row: `y = x / sqrt(mean(x^2) + eps) * gamma`, with the
    /// rules of [`layer_norm`](Self::layer_norm).
    ///
    /// The default body returns `Unsupported`.
    fn rms_norm(
        &self,
        x: u64,
        gamma: Option<u64>,
        y: u64,
        rows: usize,
        cols: usize,
        eps: f64,
    ) -> BackendResult<()> {
        let _ = (x, gamma, y, rows, cols, eps);
        Err(BackendError::Unsupported(format!(
            "rms_norm: not implemented by {}",
            self.name()
        )))
    }

    /// A row op ([`softmax`](Self::softmax), [`log_softmax`](Self::log_softmax),
    /// [`layer_norm`](Self::layer_norm), [`rms_norm`](Self::rms_norm), as `op` says) with
    /// x, gamma, beta and y stored as `dtype`: values widened exactly, the statistics and
    /// arithmetic in f32 or better, one rounding to `dtype` at the store (a result past
    /// the type's range is ±inf). `gamma` only for the norms and `beta` only for the layer
    /// norm (`InvalidArgument` otherwise); f16/bf16 operands 2-byte aligned. `DType::F32`
    /// is the f32 op itself.
    ///
    /// The default body returns `Unsupported`.
    fn rows_ex(
        &self,
        op: crate::RowOp,
        dtype: DType,
        x: u64,
        gamma: Option<u64>,
        beta: Option<u64>,
        y: u64,
        rows: usize,
        cols: usize,
        eps: f64,
    ) -> BackendResult<()> {
        let _ = (x, gamma, beta, y, rows, cols, eps);
        Err(BackendError::Unsupported(format!(
            "rows_ex {op} {dtype}: not implemented by {}",
            self.name()
        )))
    }

    /// Quantized matrix product `C = alpha * A * B + beta * C` with A the `m x k` weights
    /// in GGML blocks of 32 along k ([`QuantFormat`](crate::QuantFormat): Q8_0 or
    /// Q4_0), stored row by row as GGUF stores a tensor (each row's `k / 32` blocks
    /// contiguous, row `i` at `i * (k / 32) * block_bytes`); B `k x n` column-major in
    /// `b_dtype` (f32 or f16, each column one token's activations); C `m x n` column-major
    /// f32. Accumulation in f32 or better; the weights dequantize exactly (`x = q * d`, `x =
    /// (nibble - 8) * d`). `beta == 0` does not read C; `alpha == 0` or `k == 0` does not
    /// read A or B. A must be 2-byte aligned (its scales are f16), B aligned to its dtype.
    ///
    /// Errors: `InvalidArgument` when `k % 32 != 0`, B is bf16, `alpha` or `beta` is not
    /// finite, `ldb < k` or `ldc < m`, C overlaps A or B, or an operand leaves its
    /// allocation. An empty C is a no-op.
    ///
    /// The default body returns `Unsupported`.
    fn gemm_q(
        &self,
        format: crate::QuantFormat,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a: u64,
        b: u64,
        b_dtype: DType,
        ldb: usize,
        beta: f64,
        c: u64,
        ldc: usize,
    ) -> BackendResult<()> {
        let _ = (m, n, k, alpha, a, b, b_dtype, ldb, beta, c, ldc);
        Err(BackendError::Unsupported(format!(
            "gemm_q {format}: not implemented by {}",
            self.name()
        )))
    }

    /// [`conv2d_forward`](Self::conv2d_forward) with dilation, channel groups (depthwise
    /// when `groups == C == K`), padding `[top, left, bottom, right]` and an optional
    /// bias of `K` values: see [`Conv2dArgs`](crate::Conv2dArgs) for the shapes. With
    /// `args.dtype` f16 or bf16 every operand is stored as that type, accumulated in f32
    /// or better and rounded once at the store.
    /// `conv2d_forward` is the case of one group, dilation 1, symmetric padding and no
    /// bias, and keeps its exact behaviour.
    ///
    /// Errors: `InvalidArgument` when `groups` is 0 or does not divide C and K, the
    /// filter's channels are not `C / groups`, a stride or dilation is 0, the dilated
    /// filter is larger than the padded input, `output_shape` is not the expected one (the
    /// message states it), the output overlaps an input, or an operand leaves its
    /// allocation. No output elements: no-op; an empty input writes the bias (or zeros).
    ///
    /// The default body returns `Unsupported`.
    fn conv2d_forward_ex(&self, args: &crate::Conv2dArgs) -> BackendResult<()> {
        let _ = args;
        Err(BackendError::Unsupported(format!(
            "conv2d_forward_ex: not implemented by {}",
            self.name()
        )))
    }

    /// `out = op(a, b)` with NumPy broadcasting over row-major contiguous f32 operands of
    /// up to 6 dimensions ([`validate::MAX_BROADCAST_RANK`](crate::validate::MAX_BROADCAST_RANK)):
    /// the shapes are aligned at their last dimension, missing leading dimensions count
    /// as 1, and each pair of sizes must be equal or one of them 1. `out_shape` must be
    /// the broadcast shape (an `InvalidArgument` says which it should be). Each element
    /// is what [`binary`](Self::binary) computes. `out` may be exactly `a` or `b` when
    /// that input is not broadcast (in place), else it must be disjoint from both. No
    /// output elements: no-op.
    ///
    /// The default body returns `Unsupported`.
    fn binary_broadcast(
        &self,
        op: BinaryOp,
        a: u64,
        a_shape: &[usize],
        b: u64,
        b_shape: &[usize],
        out: u64,
        out_shape: &[usize],
    ) -> BackendResult<()> {
        let _ = (a, a_shape, b, b_shape, out, out_shape);
        Err(BackendError::Unsupported(format!(
            "binary_broadcast {op}: not implemented by {}",
            self.name()
        )))
    }

    /// [`binary_broadcast`](Self::binary_broadcast) over operands stored as `dtype` (f32,
    /// f16 or bf16): each element computed in f32 or better and rounded once at the
    /// store; operands aligned to `dtype`'s size.
    ///
    /// The default body returns `Unsupported`.
    #[allow(clippy::too_many_arguments)]
    fn binary_broadcast_ex(
        &self,
        op: BinaryOp,
        dtype: DType,
        a: u64,
        a_shape: &[usize],
        b: u64,
        b_shape: &[usize],
        out: u64,
        out_shape: &[usize],
    ) -> BackendResult<()> {
        let _ = (a, a_shape, b, b_shape, out, out_shape);
        Err(BackendError::Unsupported(format!(
            "binary_broadcast_ex {op} {dtype}: not implemented by {}",
            self.name()
        )))
    }

    /// [`unary_param`](Self::unary_param) on `n` elements stored as `dtype`, computed in
    /// f32 or better and rounded once at the store.
    ///
    /// The default body returns `Unsupported`.
    #[allow(clippy::too_many_arguments)]
    fn unary_param_ex(
        &self,
        op: UnaryParamOp,
        dtype: DType,
        a: f32,
        b: f32,
        input_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        let _ = (a, b, input_ptr, output_ptr, n);
        Err(BackendError::Unsupported(format!(
            "unary_param_ex {op} {dtype}: not implemented by {}",
            self.name()
        )))
    }

    /// [`gather`](Self::gather) of a table stored as `dtype` into an output of `dtype`:
    /// rows copied exactly (no rounding; a NaN stays a NaN, its payload need not), zeros
    /// for an out-of-range index.
    ///
    /// The default body returns `Unsupported`.
    #[allow(clippy::too_many_arguments)]
    fn gather_ex(
        &self,
        dtype: DType,
        table: u64,
        rows: usize,
        cols: usize,
        indices: u64,
        n: usize,
        out: u64,
    ) -> BackendResult<()> {
        let _ = (table, rows, cols, indices, n, out);
        Err(BackendError::Unsupported(format!(
            "gather_ex {dtype}: not implemented by {}",
            self.name()
        )))
    }

    /// `output[i] = op(input[i]; a, b)` for `n` contiguous f32 elements: the parameterised
    /// functions of [`UnaryParamOp`] (LeakyRelu, Elu, Selu, Celu, HardSigmoid, Clip).
    ///
    /// Aliasing and sizes as in [`unary`](Self::unary). A parameter the op uses must be
    /// finite (Clip's bounds may be infinite, with `a <= b`; Celu's `a` non-zero), else
    /// `InvalidArgument` naming it; one it does not use is ignored. NaN inputs give NaN.
    ///
    /// The default body returns `Unsupported`.
    fn unary_param(
        &self,
        op: UnaryParamOp,
        a: f32,
        b: f32,
        input_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        let _ = (a, b, input_ptr, output_ptr, n);
        Err(BackendError::Unsupported(format!(
            "unary_param {op}: not implemented by {}",
            self.name()
        )))
    }

    /// [`unary`](Self::unary) on `n` elements stored as `dtype` (f32, f16 or bf16): each
    /// input widened exactly to f32, the function computed in f32 or better, the result
    /// rounded once to `dtype` (to nearest even; overflow gives infinity, as IEEE
    /// f16/bf16 do). Operands are aligned to `dtype`'s size; aliasing as in `unary`. With
    /// `DType::F32` it is `unary`.
    ///
    /// The default body returns `Unsupported`.
    fn unary_ex(
        &self,
        op: UnaryOp,
        dtype: DType,
        input_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        let _ = (input_ptr, output_ptr, n);
        Err(BackendError::Unsupported(format!(
            "unary_ex {op} {dtype}: not implemented by {}",
            self.name()
        )))
    }

    /// [`binary`](Self::binary) on `n` elements stored as `dtype`, computed in f32 or
    /// better and rounded once at the store, as [`unary_ex`](Self::unary_ex) says.
    ///
    /// The default body returns `Unsupported`.
    fn binary_ex(
        &self,
        op: BinaryOp,
        dtype: DType,
        a_ptr: u64,
        b_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        let _ = (a_ptr, b_ptr, output_ptr, n);
        Err(BackendError::Unsupported(format!(
            "binary_ex {op} {dtype}: not implemented by {}",
            self.name()
        )))
    }

    /// [`reduce`](Self::reduce) of a tensor stored as `dtype` into outputs of `dtype`: the
    /// accumulation in f32 or better (so a sum of f16 values whose partial sums pass
    /// 65504 is right when the result fits), one rounding at the store.
    ///
    /// The default body returns `Unsupported`.
    fn reduce_ex(
        &self,
        op: ReduceOp,
        dtype: DType,
        input_ptr: u64,
        output_ptr: u64,
        shape: &[usize],
        axis: usize,
    ) -> BackendResult<()> {
        let _ = (input_ptr, output_ptr, shape, axis);
        Err(BackendError::Unsupported(format!(
            "reduce_ex {op} {dtype}: not implemented by {}",
            self.name()
        )))
    }

    /// Embedding lookup: `out[i, :] = table[indices[i], :]` for `i < n`, with `table`
    /// a row-major f32 `[rows x cols]`, `indices` `n` u32 values and `out` a row-major
    /// f32 `[n x cols]`. An index `>= rows` reads nothing: that output row is zeros. `out`
    /// must be disjoint from `table` and `indices`. No output elements: no-op.
    ///
    /// The default body returns `Unsupported`.
    fn gather(
        &self,
        table: u64,
        rows: usize,
        cols: usize,
        indices: u64,
        n: usize,
        out: u64,
    ) -> BackendResult<()> {
        let _ = (table, rows, cols, indices, n, out);
        Err(BackendError::Unsupported(format!(
            "gather: not implemented by {}",
            self.name()
        )))
    }

    /// [`gemm`](Self::gemm) with A and B in `a_dtype` / `b_dtype` (f32, f16 or bf16),
    /// accumulation in (at least) f32, and C in f32. Same BLAS semantics; A and B must be
    /// aligned to their element size.
    ///
    /// The default body returns `Unsupported`.
    fn gemm_ex(
        &self,
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a_ptr: u64,
        a_dtype: DType,
        lda: usize,
        b_ptr: u64,
        b_dtype: DType,
        ldb: usize,
        beta: f64,
        c_ptr: u64,
        ldc: usize,
    ) -> BackendResult<()> {
        let _ = (
            trans_a, trans_b, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c_ptr, ldc,
        );
        Err(BackendError::Unsupported(format!(
            "gemm_ex with {a_dtype} x {b_dtype} inputs: not implemented by {}",
            self.name()
        )))
    }

    /// The general gemm: [`batched_gemm`](Self::batched_gemm) with A, B and C each in its
    /// own storage type (`args.a_dtype`, `b_dtype`, `c_dtype`: f32, f16 or bf16), strides
    /// in elements of each operand's type. Accumulation in f32 or better; C read (when
    /// `beta != 0`) and written in `c_dtype`, rounded once at the store. Only C's `m`
    /// rows of each column change: the rows below them (`ldc > m`) and the gaps between
    /// batches keep their bytes. [`GemmArgs::new`](crate::GemmArgs::new) gives an f32
    /// gemm; `with_dtypes`, `with_c_dtype` and `with_batch` set the rest.
    ///
    /// Errors as for `batched_gemm`, with alignment to each operand's type.
    ///
    /// The default body returns `Unsupported`.
    fn batched_gemm_ex(&self, args: &crate::GemmArgs) -> BackendResult<()> {
        Err(BackendError::Unsupported(format!(
            "batched_gemm_ex with {} x {} -> {}: not implemented by {}",
            args.a_dtype,
            args.b_dtype,
            args.c_dtype,
            self.name()
        )))
    }

    /// [`copy_dtoh`](Self::copy_dtoh) without blocking: the path a browser must use,
    /// where blocking the main thread would hang the page. The default runs the blocking
    /// copy.
    fn copy_dtoh_async<'a>(&'a self, dst: &'a mut [u8], src: u64) -> BackendFuture<'a, ()> {
        Box::pin(std::future::ready(self.copy_dtoh(dst, src)))
    }

    /// Reads several device ranges: the same validation and results as that many
    /// [`copy_dtoh`](Self::copy_dtoh) calls in order, but all or nothing — a bad entry
    /// fails the call and no destination is written. The default reads every entry into
    /// host staging and writes the destinations once all reads succeeded; a backend with
    /// a queue may do it in one submission and one wait.
    fn copy_dtoh_many(&self, reads: &mut [(u64, &mut [u8])]) -> BackendResult<()> {
        let mut staged = Vec::with_capacity(reads.len());
        for (src, dst) in reads.iter() {
            let mut buf = vec![0u8; dst.len()];
            self.copy_dtoh(&mut buf, *src)?;
            staged.push(buf);
        }
        write_staged(reads, staged);
        Ok(())
    }

    /// [`copy_dtoh_many`](Self::copy_dtoh_many) without blocking (the browser's path);
    /// the default stages through [`copy_dtoh_async`](Self::copy_dtoh_async).
    fn copy_dtoh_many_async<'a>(
        &'a self,
        reads: &'a mut [(u64, &'a mut [u8])],
    ) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let mut staged = Vec::with_capacity(reads.len());
            for (src, dst) in reads.iter() {
                let mut buf = vec![0u8; dst.len()];
                self.copy_dtoh_async(&mut buf, *src).await?;
                staged.push(buf);
            }
            write_staged(reads, staged);
            Ok(())
        })
    }

    /// [`synchronize`](Self::synchronize) without blocking; the default blocks.
    fn synchronize_async(&self) -> BackendFuture<'_, ()> {
        Box::pin(std::future::ready(self.synchronize()))
    }

    /// A fresh address naming the bytes `ptr..ptr + bytes`, which must lie inside one live
    /// allocation or live alias (else `InvalidArgument` naming `alias`, the operand and
    /// the range).
    ///
    /// The alias `a` was never handed out before and never will be again, and
    /// `a % 256 == ptr % 256`, so every alignment rule answers the same through it.
    /// `a + off` names the bytes of `ptr + off` for `off <= bytes`, in every op and copy.
    /// Overlap rules compare the physical bytes: reading through `a` and writing through
    /// `ptr` into the same bytes is refused as if both were `ptr`. Aliases cost no device
    /// memory (`memory_info` does not count them). `free(a)` retires the alias and the
    /// aliases made from it; `free` of the allocation retires every alias into it; a
    /// retired alias is stale: every later use is `InvalidArgument` saying so and why.
    ///
    /// The default returns `Unsupported`.
    fn alias(&self, ptr: u64, bytes: usize) -> BackendResult<u64> {
        let _ = (ptr, bytes);
        Err(BackendError::Unsupported(format!(
            "alias: not implemented by {}",
            self.name()
        )))
    }

    /// Retires the live alias starting at `alias` (and every alias made from it) the way
    /// `free` does, but recording `why` for the stale-pointer errors: the frame and arena
    /// resets of [`memory`](crate::memory) use it. Anything but the start of a live alias
    /// is `InvalidArgument`. The default returns `Unsupported`.
    fn retire(&self, alias: u64, why: Retired) -> BackendResult<()> {
        let _ = (alias, why);
        Err(BackendError::Unsupported(format!(
            "retire: not implemented by {}",
            self.name()
        )))
    }

    /// What the backend has allocated. The default returns `Unsupported`.
    fn memory_info(&self) -> BackendResult<MemoryInfo> {
        Err(BackendError::Unsupported(format!(
            "memory_info: not implemented by {}",
            self.name()
        )))
    }

    /// A host view of the `bytes` bytes at `ptr` (docs/ZERO-COPY.md): a `[u8]` over device
    /// memory itself where the host shares it (the CPU backends), otherwise a staged copy
    /// (read from the device for `Read`/`ReadWrite`, written back when a `Write`/`ReadWrite`
    /// view ends, both counted in [`MemoryInfo::staged_bytes`]).
    ///
    /// While the view lives, every other call touching its bytes is `InvalidArgument`
    /// (never a race), and so is freeing its allocation; a backend that lends the whole
    /// allocation (the CPU backends) refuses every byte of it. End the view with
    /// [`HostView::finish`] (which reports a failed write-back) or by dropping it.
    /// Errors: as `copy_dtoh` for the range (out of range, freed, stale alias), plus
    /// bytes already under a live view. The default returns `Unsupported`.
    fn map_host(&self, ptr: u64, bytes: usize, mode: MapMode) -> BackendResult<HostView<'_>> {
        let _ = (ptr, bytes, mode);
        Err(BackendError::Unsupported(format!(
            "map_host: not implemented by {}",
            self.name()
        )))
    }

    /// True when [`map_host`](Self::map_host) views device memory itself (no copy); a
    /// capability query without side effects.
    fn host_view_is_zero_copy(&self) -> bool {
        false
    }
}

/// The second half of an all-or-nothing batched read: every read succeeded into
/// `staged`, so the destinations are written now.
pub(crate) fn write_staged<K>(reads: &mut [(K, &mut [u8])], staged: Vec<Vec<u8>>) {
    for ((_, dst), buf) in reads.iter_mut().zip(staged) {
        dst.copy_from_slice(&buf);
    }
}

/// Typed copies for callers who would rather not handle raw bytes. Implemented for every
/// [`ComputeBackend`], including `dyn ComputeBackend`.
///
/// ```
/// # use backend_api::{ComputeBackend, ComputeBackendExt, BackendResult};
/// fn roundtrip(b: &dyn ComputeBackend) -> BackendResult<Vec<f32>> {
///     let p = b.alloc(3 * 4)?;
///     b.copy_htod_slice(p, &[1.0f32, 2.0, 3.0])?;
///     let v = b.copy_dtoh_vec::<f32>(p, 3)?;
///     b.free(p)?;
///     Ok(v)
/// }
/// ```
pub trait ComputeBackendExt: ComputeBackend {
    /// Copies a slice of plain values to `dst`.
    fn copy_htod_slice<T: bytemuck::Pod>(&self, dst: u64, src: &[T]) -> BackendResult<()> {
        self.copy_htod(dst, bytemuck::cast_slice(src))
    }

    /// Reads `len` plain values from `src`.
    fn copy_dtoh_vec<T: bytemuck::Pod>(&self, src: u64, len: usize) -> BackendResult<Vec<T>> {
        let mut out = vec![T::zeroed(); len];
        self.copy_dtoh(bytemuck::cast_slice_mut(&mut out), src)?;
        Ok(out)
    }

    /// Reads `len` plain values from `src` without blocking.
    fn copy_dtoh_vec_async<T: bytemuck::Pod>(
        &self,
        src: u64,
        len: usize,
    ) -> impl Future<Output = BackendResult<Vec<T>>> + '_ {
        async move {
            let mut out = vec![T::zeroed(); len];
            self.copy_dtoh_async(bytemuck::cast_slice_mut(&mut out), src)
                .await?;
            Ok(out)
        }
    }

    /// Row-major `C = alpha * op(A) * op(B) + beta * C`, as `cblas_sgemm(CblasRowMajor, ..)`
    /// states it: `op(A)` is `m x k` (A stored `m x k`, or `k x m` when `trans_a`), `op(B)`
    /// is `k x n`, C is `m x n`; each leading dimension is at least the columns of its
    /// matrix as stored. Runs as one column-major [`gemm`](ComputeBackend::gemm) with the
    /// operands swapped ([`crate::row_major`]); errors name `a`, `b`, `c`, `lda`, `ldb`,
    /// `ldc` as passed here.
    #[allow(clippy::too_many_arguments)]
    fn gemm_row_major(
        &self,
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a: u64,
        lda: usize,
        b: u64,
        ldb: usize,
        beta: f64,
        c: u64,
        ldc: usize,
    ) -> BackendResult<()> {
        RowMajor {
            op: "gemm_row_major",
            trans_a,
            trans_b,
            m,
            n,
            k,
            lda,
            ldb,
            ldc,
            strides: (0, 0, 0),
            batch: 1,
        }
        .run(self, alpha, a, b, beta, c)
    }

    /// `C[m x n] = A[m x k] * B[k x n]`, all contiguous and row-major (numpy's `a @ b`).
    ///
    /// ```
    /// # use backend_api::{BackendResult, Buffer, ComputeBackend, ComputeBackendExt};
    /// fn matmul(be: &dyn ComputeBackend) -> BackendResult<Vec<f32>> {
    ///     let a = Buffer::from_slice(be, &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?; // 2 x 3
    ///     let b = Buffer::from_slice(be, &[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0])?; // 3 x 2
    ///     let c = Buffer::<f32>::uninit(be, 4)?;
    ///     be.matmul_row_major(2, 3, 2, a.ptr(), b.ptr(), c.ptr())?;
    ///     c.read() // [4, 5, 10, 11]
    /// }
    /// ```
    fn matmul_row_major(
        &self,
        m: usize,
        k: usize,
        n: usize,
        a: u64,
        b: u64,
        c: u64,
    ) -> BackendResult<()> {
        use BackendTranspose::NoTrans;
        RowMajor::contiguous("matmul_row_major", NoTrans, NoTrans, m, k, n)
            .run(self, 1.0, a, b, 0.0, c)
    }

    /// `y[m x n] = x[m x k] * w^T` with `w` stored `n x k` (a PyTorch `Linear` weight),
    /// all contiguous and row-major. Errors name `x` as `a` and `w` as `b`.
    fn linear_row_major(
        &self,
        m: usize,
        k: usize,
        n: usize,
        x: u64,
        w: u64,
        y: u64,
    ) -> BackendResult<()> {
        use BackendTranspose::{NoTrans, Trans};
        RowMajor::contiguous("linear_row_major", NoTrans, Trans, m, k, n)
            .run(self, 1.0, x, w, 0.0, y)
    }

    /// `batch` products `C_i[m x n] = A_i[m x k] * B_i[k x n]`, contiguous row-major, with
    /// `A_i` at `a + 4 * i * stride_a` (likewise B, C; strides in elements, 0 shares A or
    /// B). C strides smaller than `m * n` overlap and are refused.
    #[allow(clippy::too_many_arguments)]
    fn batched_matmul_row_major(
        &self,
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        a: u64,
        stride_a: usize,
        b: u64,
        stride_b: usize,
        c: u64,
        stride_c: usize,
    ) -> BackendResult<()> {
        use BackendTranspose::NoTrans;
        RowMajor {
            strides: (stride_a, stride_b, stride_c),
            batch,
            ..RowMajor::contiguous("batched_matmul_row_major", NoTrans, NoTrans, m, k, n)
        }
        .run(self, 1.0, a, b, 0.0, c)
    }

    /// A [`Buffer`](crate::Buffer) holding a copy of `src`, freed when dropped.
    fn buffer_from<T: crate::memory::Element>(
        &self,
        src: &[T],
    ) -> BackendResult<crate::Buffer<'_, T, Self>> {
        crate::Buffer::from_slice(self, src)
    }

    /// A zeroed [`Buffer`](crate::Buffer) of `len` elements, freed when dropped.
    fn buffer_zeros<T: crate::memory::Element>(
        &self,
        len: usize,
    ) -> BackendResult<crate::Buffer<'_, T, Self>> {
        crate::Buffer::zeros(self, len)
    }

    /// Allocates room for `src` and copies it there.
    fn upload<T: bytemuck::Pod>(&self, src: &[T]) -> BackendResult<u64> {
        let ptr = self.alloc(std::mem::size_of_val(src))?;
        if let Err(e) = self.copy_htod_slice(ptr, src) {
            let _ = self.free(ptr);
            return Err(e);
        }
        Ok(ptr)
    }
}

impl<B: ComputeBackend + ?Sized> ComputeBackendExt for B {}
