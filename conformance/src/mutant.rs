//! Mutants: backends that are wrong in one known way, to prove that the tests catch it.
//!
//! A [`Mutant`] wraps a [`CpuBackend`] (the oracle itself) and delegates every method to
//! it, except for one injected [`Fault`]. Each fault is made by calling the inner backend
//! with altered arguments, or by running the correct op and then corrupting memory through
//! the inner backend's own copies. The mutant implements [`ComputeBackend`] directly (not
//! the `Executor` layer), so none of the shared validation stands between a fault and the
//! tests.
//!
//! A mutant is only useful with a test that sees its fault caught: for every fault, some
//! test runs the check meant for it on a `Mutant` and asserts that it fails, with a
//! message that names the right thing. The conformance suite's faults (1-16) are caught in
//! `conformance/tests/mutants.rs`, the state machine's (17-26) in
//! `backend-cpu/tests/reliability.rs`. [`Fault::None`] is the faithful wrapper that must
//! pass everything, so a failure is the fault's doing and not the wrapper's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use backend_api::{
    AttentionArgs, BackendError, BackendFuture, BackendResult, BackendTranspose, BinaryOp,
    ComputeBackend, Conv2dArgs, DType, HeadTensor, MemoryInfo, QuantFormat, ReduceOp, UnaryOp,
    UnaryParamOp,
};
use backend_cpu::CpuBackend;

use crate::data;

/// The one thing a [`Mutant`] does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: a faithful wrapper.
    None,

    // --- Caught by the conformance suite (`conformance/tests/mutants.rs`) ---
    /// 1. gemm always uses `beta = 0`.
    GemmIgnoresBeta,
    /// 2. gemm reads C when `beta == 0` (uses the smallest normal f64 instead, so NaN in C
    ///    propagates).
    GemmReadsCWhenBetaZero,
    /// 3. gemm reads a transposed A as if it were not transposed, whenever that is still a
    ///    call the inner backend accepts (else it computes correctly, so that only the
    ///    numerics can give it away).
    GemmTransAAsNoTrans,
    /// 4. gemm zeroes the padding rows (`m..ldc`) of C after computing.
    GemmZeroesPaddingRows,
    /// 5. batched_gemm skips the last batch.
    BatchedGemmSkipsLastBatch,
    /// 6. unary writes one extra f32 (zero) just past its output: always, also in place
    ///    and for `n == 0`. Compare [`UnaryWritesPastEndOutOfPlace`](Self::UnaryWritesPastEndOutOfPlace).
    UnaryWritesPastEnd,
    /// 7. unary Relu turns NaN into 0.
    ReluNanToZero,
    /// 8. reduce Max over an empty axis writes 0 instead of -inf.
    ReduceMaxEmptyAxisZero,
    /// 9. reduce Mean divides by `len - 1` (the output scaled by `len / (len - 1)`).
    ReduceMeanBiased,
    /// 10. attention ignores `causal` when `seq_q != seq_kv`.
    AttentionCausalIgnoredWhenRectangular,
    /// 11. conv2d flips the filter in R and S (true convolution).
    ConvFlipsFilter,
    /// 12. Every op is queued and runs only at copy_dtoh, copy_dtoh_async, synchronize or
    ///     free, while copy_htod writes at once, overtaking the queue.
    HtodOvertakesQueue,
    /// 13. free of an interior pointer returns Ok without freeing.
    FreeAcceptsInterior,
    /// 14. cast f32 -> f16 truncates (rounds toward zero) instead of rounding to nearest
    ///     even.
    CastF16Truncates,
    /// 15. copy_dtod copies one byte fewer than asked (a 1-byte copy copies nothing).
    ///     Compare [`DtodOneByteShortAboveOne`](Self::DtodOneByteShortAboveOne).
    DtodOneByteShort,
    /// 16. gemm drops the last term of every dot product when `k > 8` (runs with `k - 1`,
    ///     which is a valid call for every transpose: it uses the first `k - 1` columns of
    ///     op(A) and rows of op(B)).
    GemmDropsLastTerm,

    // --- Caught by the state machine (`backend-cpu/tests/reliability.rs`) ---
    /// 17. `copy_dtod` of 2 bytes or more copies one byte fewer than asked; copies of 0
    ///     or 1 byte are right (unlike [`DtodOneByteShort`](Self::DtodOneByteShort),
    ///     where a 1-byte copy copies nothing).
    DtodOneByteShortAboveOne,
    /// 18. `free` of an address that is not live returns Ok.
    FreeAcceptsUnknown,
    /// 19. `unary` also writes the f32 just past its output when it lies in the
    ///     allocation, with the value 1234.5, but only out of place and for `n > 0`
    ///     (unlike [`UnaryWritesPastEnd`](Self::UnaryWritesPastEnd), which writes a zero
    ///     always).
    UnaryWritesPastEndOutOfPlace,
    /// 20. `binary` with an output equal to `b` computes `op(a, a)`.
    BinaryInPlaceReadsAOnly,
    /// 21. `gemm` overwrites the first byte of the most recent allocation.
    GemmCorruptsAnotherAllocation,
    /// 22. `copy_htod` drops the last byte of writes longer than 64 bytes.
    HtodDropsLastByte,
    /// 23. `unary` of 7 elements panics.
    PanicsOnSeven,
    /// 24. `reduce` with a bad axis is a `DeviceError`, not `InvalidArgument`.
    WrongErrorKind,
    /// 25. `memory_info` forgets allocations of 0 bytes.
    MemoryInfoMiscounts,
    /// 26. `copy_dtoh` goes through one shared staging buffer, unlocked between filling
    ///     it and copying out: threads read each other's data.
    SharedStagingBuffer,
    /// 27. `alias` and `retire` are `Unsupported` (the trait's defaults): not a fault; a
    ///     backend without aliases must not fail the state machine.
    NoAliases,
    /// 28. `free` of an alias returns Ok and retires nothing.
    FreeOfAliasKeepsIt,
    /// 29. `copy_dtoh_many` writes the destinations before a later entry fails.
    ReadManyNotAllOrNothing,
    /// 30. `memory_info` counts live aliases as allocations.
    MemoryInfoCountsAliases,
    /// 31. Stale-pointer errors do not say "stale".
    StaleNotSaid,
    /// 32. `layer_norm` divides the variance by `cols - 1` (its output scaled by
    ///     `sqrt((cols - 1) / cols)`).
    LayerNormUnbiased,
    /// 33. `attention_ex` gives query head `h` key/value head `h % kv_heads` instead of
    ///     `h / (heads / kv_heads)` (the two agree when `kv_heads` is 1 or `heads`).
    AttentionExInterleavedGroups,
    /// 34. `binary_broadcast` passes `b` as the first input and `a` as the second
    ///     (right for the commutative ops only).
    BroadcastSwapsInputs,
    /// 35. `gather` reads row `indices[i] + 1` (the table passed one row on, with one row
    ///     fewer), so the last row's index reads zeros.
    GatherReadsNextRow,
    /// 36. `conv2d_forward_ex` ignores its bias.
    ConvExDropsBias,
    /// 37. `gemm_q` reads a Q4_0 block's elements `j` and `j + 16` from the wrong
    ///     nibbles (high for `j < 16`): it runs on a copy of A with every quant byte's
    ///     nibbles swapped.
    GemmQSwapsNibbles,
    /// 38. `unary_param` Selu ignores its scale `b` (runs with `b = 1`).
    SeluIgnoresScale,
    /// 39. `binary` Mod rounds the quotient to nearest (IEEE `remainder`) instead of
    ///     truncating it (C `fmod`).
    ModRoundsQuotient,
}

/// An op waiting in the queue of [`Fault::HtodOvertakesQueue`].
type Queued = Box<dyn FnOnce(&CpuBackend) -> BackendResult<()> + Send>;

/// A [`CpuBackend`] with one [`Fault`]. Its name is `"mutant"`.
pub struct Mutant {
    inner: CpuBackend,
    fault: Fault,
    /// Ops not yet run ([`Fault::HtodOvertakesQueue`] only).
    queue: Mutex<Vec<Queued>>,
    /// Live allocations, base to size ([`Fault::FreeAcceptsInterior`] needs them).
    live: Mutex<BTreeMap<u64, usize>>,
    /// The most recent allocation ([`Fault::GemmCorruptsAnotherAllocation`]).
    last_alloc: Mutex<u64>,
    /// Allocations of 0 bytes made ([`Fault::MemoryInfoMiscounts`]).
    zero_sized: Mutex<u64>,
    /// The buffer every read goes through ([`Fault::SharedStagingBuffer`]).
    staging: Mutex<Vec<u8>>,
    busy: AtomicBool,
    /// Aliases made and not freed ([`Fault::FreeOfAliasKeepsIt`],
    /// [`Fault::MemoryInfoCountsAliases`]).
    aliases: Mutex<std::collections::BTreeSet<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The f16 bits of `x` rounded toward zero (what [`Fault::CastF16Truncates`] produces).
pub fn f16_truncated(x: f32) -> u16 {
    let h = half::f16::from_f32(x);
    if x.is_finite() && h.to_f32().abs() > x.abs() {
        // Rounded away from zero (up to infinity included): one step back toward zero.
        h.to_bits() - 1
    } else {
        h.to_bits()
    }
}

impl Mutant {
    /// [`said`](Self::said) of what `call` returns.
    fn said_with<T>(&self, call: impl FnOnce() -> BackendResult<T>) -> BackendResult<T> {
        self.said(call())
    }

    /// `r`, with "stale" taken out of its message under [`Fault::StaleNotSaid`].
    fn said<T>(&self, r: BackendResult<T>) -> BackendResult<T> {
        match r {
            Err(BackendError::InvalidArgument(m))
                if self.fault == Fault::StaleNotSaid && m.contains("stale") =>
            {
                Err(BackendError::InvalidArgument(m.replace("stale", "gone")))
            }
            r => r,
        }
    }

    /// A mutant with `fault` around a fresh, initialised [`CpuBackend::new`].
    pub fn new(fault: Fault) -> Self {
        Self::with_backend(fault, CpuBackend::new())
    }

    /// A mutant with `fault` around `inner` (initialised here if it is not yet), for a
    /// CPU backend configured otherwise, such as with a memory limit.
    pub fn with_backend(fault: Fault, mut inner: CpuBackend) -> Self {
        inner.init().expect("CPU init cannot fail");
        Self {
            inner,
            fault,
            queue: Mutex::new(Vec::new()),
            live: Mutex::new(BTreeMap::new()),
            last_alloc: Mutex::new(0),
            zero_sized: Mutex::new(0),
            staging: Mutex::new(Vec::new()),
            busy: AtomicBool::new(false),
            aliases: Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    /// Runs an op now or, with [`Fault::HtodOvertakesQueue`], queues it.
    fn op(
        &self,
        f: impl FnOnce(&CpuBackend) -> BackendResult<()> + Send + 'static,
    ) -> BackendResult<()> {
        if self.fault == Fault::HtodOvertakesQueue {
            lock(&self.queue).push(Box::new(f));
            Ok(())
        } else {
            f(&self.inner)
        }
    }

    /// Runs every queued op; reports the first error one hit. Nothing is queued without
    /// [`Fault::HtodOvertakesQueue`].
    fn flush(&self) -> BackendResult<()> {
        if self.fault != Fault::HtodOvertakesQueue {
            return Ok(());
        }
        let mut queue = lock(&self.queue);
        let mut first = None;
        for f in queue.drain(..) {
            if let Err(e) = f(&self.inner) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn read_f32(&self, ptr: u64, n: usize) -> BackendResult<Vec<f32>> {
        let mut bytes = vec![0u8; 4 * n];
        self.inner.copy_dtoh(&mut bytes, ptr)?;
        Ok(data::from_bytes(&bytes))
    }

    fn write_f32(&self, ptr: u64, values: &[f32]) -> BackendResult<()> {
        self.inner.copy_htod(ptr, &data::to_bytes(values))
    }
}

impl ComputeBackend for Mutant {
    fn name(&self) -> &str {
        "mutant"
    }

    fn init(&mut self) -> BackendResult<()> {
        self.inner.init()
    }

    fn is_initialized(&self) -> bool {
        self.inner.is_initialized()
    }

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
    ) -> BackendResult<()> {
        self.said_with(|| {
            // A transposed A read as stored, wherever the inner backend accepts that call (a
            // refused call writes nothing; then the correct call below runs).
            if self.fault == Fault::GemmTransAAsNoTrans
                && trans_a.is_transposed()
                && self
                    .inner
                    .gemm(
                        BackendTranspose::NoTrans,
                        trans_b,
                        m,
                        n,
                        k,
                        alpha,
                        a_ptr,
                        lda,
                        b_ptr,
                        ldb,
                        beta,
                        c_ptr,
                        ldc,
                    )
                    .is_ok()
            {
                return Ok(());
            }
            let (mut k_used, mut beta_used) = (k, beta);
            match self.fault {
                Fault::GemmIgnoresBeta => beta_used = 0.0,
                Fault::GemmReadsCWhenBetaZero if beta == 0.0 => beta_used = f64::MIN_POSITIVE,
                Fault::GemmDropsLastTerm if k > 8 => k_used = k - 1,
                _ => {}
            }
            self.op(move |b| {
                b.gemm(
                    trans_a, trans_b, m, n, k_used, alpha, a_ptr, lda, b_ptr, ldb, beta_used,
                    c_ptr, ldc,
                )
            })?;
            match self.fault {
                Fault::GemmZeroesPaddingRows if ldc > m && m > 0 && n > 1 => {
                    // Rows m..ldc of every column but the last lie inside C's extent.
                    let zeros = vec![0.0f32; ldc - m];
                    for j in 0..n - 1 {
                        self.write_f32(c_ptr + 4 * (j * ldc + m) as u64, &zeros)?;
                    }
                }
                Fault::GemmCorruptsAnotherAllocation => {
                    let victim = *lock(&self.last_alloc);
                    let mut byte = [0u8];
                    if self.inner.copy_dtoh(&mut byte, victim).is_ok() {
                        let _ = self.inner.copy_htod(victim, &[byte[0] ^ 0x40]);
                    }
                }
                _ => {}
            }
            Ok(())
        })
    }

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
    ) -> BackendResult<()> {
        self.said_with(|| {
            let batches = if self.fault == Fault::BatchedGemmSkipsLastBatch {
                batch_count.saturating_sub(1)
            } else {
                batch_count
            };
            self.op(move |b| {
                b.batched_gemm(
                    trans_a, trans_b, m, n, k, alpha, a_ptr, lda, stride_a, b_ptr, ldb, stride_b,
                    beta, c_ptr, ldc, stride_c, batches,
                )
            })
        })
    }

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
    ) -> BackendResult<()> {
        self.said_with(|| {
            let (is, fs, os, st, pd) = (
                input_shape.to_vec(),
                filter_shape.to_vec(),
                output_shape.to_vec(),
                stride.to_vec(),
                padding.to_vec(),
            );
            // The correct call first: it validates exactly as the oracle does.
            self.op(move |b| {
                b.conv2d_forward(input_ptr, &is, filter_ptr, &fs, output_ptr, &os, &st, &pd)
            })?;
            if self.fault != Fault::ConvFlipsFilter {
                return Ok(());
            }
            let &[k, c, r, s] = filter_shape else {
                return Ok(());
            };
            let count = [k, c, r, s]
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .unwrap_or(0);
            if count == 0 {
                return Ok(());
            }
            let filter = self.read_f32(filter_ptr, count)?;
            let mut flipped = vec![0.0f32; count];
            for kc in 0..k * c {
                for i in 0..r {
                    for j in 0..s {
                        flipped[(kc * r + i) * s + j] =
                            filter[(kc * r + (r - 1 - i)) * s + (s - 1 - j)];
                    }
                }
            }
            let tmp = self.inner.alloc(4 * count)?;
            let result = self.write_f32(tmp, &flipped).and_then(|()| {
                self.inner.conv2d_forward(
                    input_ptr,
                    input_shape,
                    tmp,
                    filter_shape,
                    output_ptr,
                    output_shape,
                    stride,
                    padding,
                )
            });
            self.inner.free(tmp)?;
            result
        })
    }

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
    ) -> BackendResult<()> {
        self.said_with(|| {
            let causal_used =
                if self.fault == Fault::AttentionCausalIgnoredWhenRectangular && seq_q != seq_kv {
                    false
                } else {
                    causal
                };
            self.op(move |b| {
                b.attention(
                    q_ptr,
                    k_ptr,
                    v_ptr,
                    o_ptr,
                    batch,
                    heads,
                    seq_q,
                    seq_kv,
                    head_dim,
                    scale,
                    causal_used,
                )
            })
        })
    }

    fn reduce(
        &self,
        op: ReduceOp,
        input_ptr: u64,
        output_ptr: u64,
        shape: &[usize],
        axis: usize,
    ) -> BackendResult<()> {
        self.said_with(|| {
            let owned = shape.to_vec();
            match self.op(move |b| b.reduce(op, input_ptr, output_ptr, &owned, axis)) {
                Err(BackendError::InvalidArgument(m))
                    if self.fault == Fault::WrongErrorKind && m.contains("axis") =>
                {
                    return Err(BackendError::DeviceError(m));
                }
                r => r?,
            }
            let Some(&len) = shape.get(axis) else {
                return Ok(());
            };
            // Only reached after the inner call validated the shape (no fault below queues),
            // but checked anyway: the queueing mutant accepts any shape.
            let outputs = shape
                .iter()
                .enumerate()
                .filter(|&(d, _)| d != axis)
                .try_fold(1usize, |acc, (_, &s)| acc.checked_mul(s))
                .unwrap_or(0);
            match self.fault {
                Fault::ReduceMaxEmptyAxisZero if op == ReduceOp::Max && len == 0 => {
                    self.write_f32(output_ptr, &vec![0.0; outputs])?;
                }
                Fault::ReduceMeanBiased if op == ReduceOp::Mean && len > 1 => {
                    let factor = len as f64 / (len - 1) as f64;
                    let y: Vec<f32> = self
                        .read_f32(output_ptr, outputs)?
                        .iter()
                        .map(|&v| (f64::from(v) * factor) as f32)
                        .collect();
                    self.write_f32(output_ptr, &y)?;
                }
                _ => {}
            }
            Ok(())
        })
    }

    fn unary(&self, op: UnaryOp, input_ptr: u64, output_ptr: u64, n: usize) -> BackendResult<()> {
        self.said_with(|| {
            if self.fault == Fault::PanicsOnSeven && n == 7 {
                panic!("seven");
            }
            self.op(move |b| b.unary(op, input_ptr, output_ptr, n))?;
            match self.fault {
                Fault::UnaryWritesPastEnd => {
                    // Out of range is the inner backend's to refuse; ignore that.
                    let _ = self.write_f32(output_ptr + 4 * n as u64, &[0.0]);
                }
                Fault::UnaryWritesPastEndOutOfPlace if n > 0 && output_ptr != input_ptr => {
                    let past = output_ptr + 4 * n as u64;
                    let _ = self.inner.copy_htod(past, &1234.5f32.to_le_bytes());
                }
                Fault::ReluNanToZero if op == UnaryOp::Relu => {
                    let y: Vec<f32> = self
                        .read_f32(output_ptr, n)?
                        .iter()
                        .map(|&v| if v.is_nan() { 0.0 } else { v })
                        .collect();
                    self.write_f32(output_ptr, &y)?;
                }
                _ => {}
            }
            Ok(())
        })
    }

    fn binary(
        &self,
        op: BinaryOp,
        a_ptr: u64,
        b_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        self.said_with(|| {
            if self.fault == Fault::BinaryInPlaceReadsAOnly && output_ptr == b_ptr && a_ptr != b_ptr
            {
                self.inner.binary(op, a_ptr, b_ptr, output_ptr, n)?;
                return self.inner.binary(op, a_ptr, a_ptr, output_ptr, n);
            }
            if self.fault == Fault::ModRoundsQuotient && op == BinaryOp::Mod {
                // Read before the call: the output may be an input.
                let inputs = (self.read_f32(a_ptr, n).ok(), self.read_f32(b_ptr, n).ok());
                self.inner.binary(op, a_ptr, b_ptr, output_ptr, n)?;
                if let (Some(x), Some(y)) = inputs {
                    let r: Vec<f32> = x
                        .iter()
                        .zip(&y)
                        .map(|(&x, &y)| {
                            let (x, y) = (f64::from(x), f64::from(y));
                            (x - y * (x / y).round_ties_even()) as f32
                        })
                        .collect();
                    self.write_f32(output_ptr, &r)?;
                }
                return Ok(());
            }
            self.op(move |b| b.binary(op, a_ptr, b_ptr, output_ptr, n))
        })
    }

    fn unary_param(
        &self,
        op: UnaryParamOp,
        a: f32,
        b: f32,
        input_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        let b = if self.fault == Fault::SeluIgnoresScale && op == UnaryParamOp::Selu {
            1.0
        } else {
            b
        };
        self.said_with(|| self.op(move |m| m.unary_param(op, a, b, input_ptr, output_ptr, n)))
    }

    fn unary_ex(
        &self,
        op: UnaryOp,
        dtype: DType,
        input_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        self.said_with(|| self.op(move |m| m.unary_ex(op, dtype, input_ptr, output_ptr, n)))
    }

    fn batched_gemm_ex(&self, args: &backend_api::GemmArgs) -> BackendResult<()> {
        let args = *args;
        self.said_with(|| self.op(move |m| m.batched_gemm_ex(&args)))
    }

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
        self.said_with(|| {
            self.op(move |m| m.unary_param_ex(op, dtype, a, b, input_ptr, output_ptr, n))
        })
    }

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
        let (a_shape, b_shape, out_shape) =
            (a_shape.to_vec(), b_shape.to_vec(), out_shape.to_vec());
        self.said_with(|| {
            self.op(move |m| {
                m.binary_broadcast_ex(op, dtype, a, &a_shape, b, &b_shape, out, &out_shape)
            })
        })
    }

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
        self.said_with(|| self.op(move |m| m.gather_ex(dtype, table, rows, cols, indices, n, out)))
    }

    fn binary_ex(
        &self,
        op: BinaryOp,
        dtype: DType,
        a_ptr: u64,
        b_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        self.said_with(|| self.op(move |m| m.binary_ex(op, dtype, a_ptr, b_ptr, output_ptr, n)))
    }

    fn reduce_ex(
        &self,
        op: ReduceOp,
        dtype: DType,
        input_ptr: u64,
        output_ptr: u64,
        shape: &[usize],
        axis: usize,
    ) -> BackendResult<()> {
        let owned = shape.to_vec();
        self.said_with(|| {
            self.op(move |m| m.reduce_ex(op, dtype, input_ptr, output_ptr, &owned, axis))
        })
    }

    fn synchronize(&self) -> BackendResult<()> {
        self.flush()?;
        self.inner.synchronize()
    }

    fn alloc(&self, bytes: usize) -> BackendResult<u64> {
        let p = self.inner.alloc(bytes)?;
        lock(&self.live).insert(p, bytes);
        *lock(&self.last_alloc) = p;
        if bytes == 0 {
            *lock(&self.zero_sized) += 1;
        }
        Ok(p)
    }

    fn free(&self, ptr: u64) -> BackendResult<()> {
        self.said_with(|| {
            self.flush()?;
            if lock(&self.aliases).remove(&ptr) && self.fault == Fault::FreeOfAliasKeepsIt {
                return Ok(());
            }
            if self.fault == Fault::FreeAcceptsInterior {
                let live = lock(&self.live);
                let interior = !live.contains_key(&ptr)
                    && live
                        .range(..ptr)
                        .next_back()
                        .is_some_and(|(&base, &size)| ptr < base + size as u64);
                if interior {
                    return Ok(());
                }
            }
            match self.inner.free(ptr) {
                Ok(()) => {
                    lock(&self.live).remove(&ptr);
                    Ok(())
                }
                Err(BackendError::InvalidArgument(_))
                    if self.fault == Fault::FreeAcceptsUnknown =>
                {
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
    }

    fn copy_htod(&self, dst: u64, src: &[u8]) -> BackendResult<()> {
        self.said_with(|| {
            // Never waits for the queue: with HtodOvertakesQueue this is the fault.
            if self.fault == Fault::HtodDropsLastByte && src.len() > 64 {
                return self.inner.copy_htod(dst, &src[..src.len() - 1]);
            }
            self.inner.copy_htod(dst, src)
        })
    }

    fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> BackendResult<()> {
        self.said_with(|| {
            self.flush()?;
            if self.fault != Fault::SharedStagingBuffer {
                return self.inner.copy_dtoh(dst, src);
            }
            {
                let mut s = lock(&self.staging);
                s.resize(dst.len(), 0);
                self.inner.copy_dtoh(&mut s, src)?;
            }
            self.busy.store(true, Ordering::Relaxed);
            std::thread::yield_now();
            let s = lock(&self.staging).clone();
            let n = dst.len().min(s.len());
            dst[..n].copy_from_slice(&s[..n]);
            Ok(())
        })
    }

    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> BackendResult<()> {
        self.said_with(|| {
            let bytes_used = match self.fault {
                Fault::DtodOneByteShort => bytes.saturating_sub(1),
                Fault::DtodOneByteShortAboveOne if bytes > 1 => bytes - 1,
                _ => bytes,
            };
            self.op(move |b| b.copy_dtod(dst, src, bytes_used))
        })
    }

    fn attention_ex(&self, args: &AttentionArgs) -> BackendResult<()> {
        let a = *args;
        let interleave = self.fault == Fault::AttentionExInterleavedGroups
            && a.kv_heads > 1
            && a.kv_heads < a.heads
            && a.heads.is_multiple_of(a.kv_heads)
            // A mask per batch entry and head cannot be split by head with a pointer.
            && !a.mask.is_some_and(|m| m.batch > 1 && m.heads > 1);
        if !interleave {
            return self.said_with(|| self.op(move |b| b.attention_ex(&a)));
        }
        // One call per query head, each with the wrong key/value head.
        self.said_with(|| {
            self.op(move |b| {
                let elems = |t: &HeadTensor, head: usize| t.ptr + (4 * head * t.head_stride) as u64;
                for h in 0..a.heads {
                    let kvh = h % a.kv_heads;
                    let mut one = a;
                    one.heads = 1;
                    one.kv_heads = 1;
                    one.q.ptr = elems(&a.q, h);
                    one.o.ptr = elems(&a.o, h);
                    one.k.ptr = elems(&a.k, kvh);
                    one.v.ptr = elems(&a.v, kvh);
                    if let Some(m) = &mut one.mask
                        && m.heads > 1
                    {
                        m.ptr += (4 * h * a.seq_q * a.seq_kv) as u64;
                        m.heads = 1;
                    }
                    b.attention_ex(&one)?;
                }
                Ok(())
            })
        })
    }

    fn softmax(&self, x: u64, y: u64, rows: usize, cols: usize) -> BackendResult<()> {
        self.said_with(|| self.op(move |b| b.softmax(x, y, rows, cols)))
    }

    fn log_softmax(&self, x: u64, y: u64, rows: usize, cols: usize) -> BackendResult<()> {
        self.said_with(|| self.op(move |b| b.log_softmax(x, y, rows, cols)))
    }

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
        self.said_with(|| {
            self.op(move |b| b.layer_norm(x, gamma, beta, y, rows, cols, eps))?;
            if self.fault == Fault::LayerNormUnbiased && cols > 1 && rows > 0 {
                let f = ((cols - 1) as f64 / cols as f64).sqrt();
                let out: Vec<f32> = self
                    .read_f32(y, rows * cols)?
                    .iter()
                    .map(|&v| (f64::from(v) * f) as f32)
                    .collect();
                self.write_f32(y, &out)?;
            }
            Ok(())
        })
    }

    fn rms_norm(
        &self,
        x: u64,
        gamma: Option<u64>,
        y: u64,
        rows: usize,
        cols: usize,
        eps: f64,
    ) -> BackendResult<()> {
        self.said_with(|| self.op(move |b| b.rms_norm(x, gamma, y, rows, cols, eps)))
    }

    fn rows_ex(
        &self,
        op: backend_api::RowOp,
        dtype: DType,
        x: u64,
        gamma: Option<u64>,
        beta: Option<u64>,
        y: u64,
        rows: usize,
        cols: usize,
        eps: f64,
    ) -> BackendResult<()> {
        self.said_with(|| {
            self.op(move |b| b.rows_ex(op, dtype, x, gamma, beta, y, rows, cols, eps))
        })
    }

    fn conv2d_forward_ex(&self, args: &Conv2dArgs) -> BackendResult<()> {
        let mut args = *args;
        if self.fault == Fault::ConvExDropsBias {
            args.bias = None;
        }
        self.said_with(|| self.op(move |m| m.conv2d_forward_ex(&args)))
    }

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
        let (a_shape, b_shape, out_shape) =
            (a_shape.to_vec(), b_shape.to_vec(), out_shape.to_vec());
        let swap = self.fault == Fault::BroadcastSwapsInputs;
        self.said_with(|| {
            self.op(move |m| {
                if swap {
                    m.binary_broadcast(op, b, &b_shape, a, &a_shape, out, &out_shape)
                } else {
                    m.binary_broadcast(op, a, &a_shape, b, &b_shape, out, &out_shape)
                }
            })
        })
    }

    fn gather(
        &self,
        table: u64,
        rows: usize,
        cols: usize,
        indices: u64,
        n: usize,
        out: u64,
    ) -> BackendResult<()> {
        let shift = self.fault == Fault::GatherReadsNextRow && rows > 1 && cols > 0;
        self.said_with(|| {
            self.op(move |m| {
                if shift {
                    m.gather(table + 4 * cols as u64, rows - 1, cols, indices, n, out)
                } else {
                    m.gather(table, rows, cols, indices, n, out)
                }
            })
        })
    }

    fn cast(
        &self,
        src: u64,
        src_dtype: DType,
        dst: u64,
        dst_dtype: DType,
        n: usize,
    ) -> BackendResult<()> {
        self.said_with(|| {
            self.op(move |b| b.cast(src, src_dtype, dst, dst_dtype, n))?;
            if self.fault == Fault::CastF16Truncates
                && (src_dtype, dst_dtype) == (DType::F32, DType::F16)
                && n > 0
            {
                let bytes: Vec<u8> = self
                    .read_f32(src, n)?
                    .iter()
                    .flat_map(|&x| f16_truncated(x).to_le_bytes())
                    .collect();
                self.inner.copy_htod(dst, &bytes)?;
            }
            Ok(())
        })
    }

    fn gemm_q(
        &self,
        format: QuantFormat,
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
        let swap = self.fault == Fault::GemmQSwapsNibbles && format == QuantFormat::Q4_0;
        self.said_with(|| {
            self.op(move |inner| {
                let call =
                    |a| inner.gemm_q(format, m, n, k, alpha, a, b, b_dtype, ldb, beta, c, ldc);
                let bytes = m * (k / QuantFormat::BLOCK) * format.block_bytes();
                if !swap || alpha == 0.0 || bytes == 0 || n == 0 {
                    return call(a);
                }
                let mut host = vec![0u8; bytes];
                if inner.copy_dtoh(&mut host, a).is_err() {
                    // Not readable: the real call gives the real error.
                    return call(a);
                }
                for block in host.chunks_exact_mut(format.block_bytes()) {
                    block[2..].iter_mut().for_each(|q| *q = q.rotate_left(4));
                }
                let copy = inner.alloc(bytes)?;
                let result = inner.copy_htod(copy, &host).and_then(|()| call(copy));
                inner.free(copy)?;
                result
            })
        })
    }

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
        self.said_with(|| {
            self.op(move |b| {
                b.gemm_ex(
                    trans_a, trans_b, m, n, k, alpha, a_ptr, a_dtype, lda, b_ptr, b_dtype, ldb,
                    beta, c_ptr, ldc,
                )
            })
        })
    }

    fn copy_dtoh_async<'a>(&'a self, dst: &'a mut [u8], src: u64) -> BackendFuture<'a, ()> {
        if let Err(e) = self.flush() {
            return Box::pin(std::future::ready(Err(e)));
        }
        if self.fault == Fault::SharedStagingBuffer {
            // Through the same staging buffer as the blocking read.
            return Box::pin(std::future::ready(self.copy_dtoh(dst, src)));
        }
        self.inner.copy_dtoh_async(dst, src)
    }

    fn synchronize_async(&self) -> BackendFuture<'_, ()> {
        if let Err(e) = self.flush() {
            return Box::pin(std::future::ready(Err(e)));
        }
        self.inner.synchronize_async()
    }

    fn copy_dtoh_many(&self, reads: &mut [(u64, &mut [u8])]) -> BackendResult<()> {
        if self.fault == Fault::ReadManyNotAllOrNothing {
            for (src, dst) in reads.iter_mut() {
                self.inner.copy_dtoh(dst, *src)?;
            }
            return Ok(());
        }
        self.flush()?;
        self.said(self.inner.copy_dtoh_many(reads))
    }

    fn alias(&self, ptr: u64, bytes: usize) -> BackendResult<u64> {
        self.said_with(|| {
            if self.fault == Fault::NoAliases {
                return Err(BackendError::Unsupported("alias: not here".into()));
            }
            self.flush()?;
            let a = self.inner.alias(ptr, bytes)?;
            lock(&self.aliases).insert(a);
            Ok(a)
        })
    }

    fn retire(&self, alias: u64, why: backend_api::Retired) -> BackendResult<()> {
        self.said_with(|| {
            if self.fault == Fault::NoAliases {
                return Err(BackendError::Unsupported("retire: not here".into()));
            }
            self.flush()?;
            self.inner.retire(alias, why)
        })
    }

    fn memory_info(&self) -> BackendResult<MemoryInfo> {
        let mut info = self.inner.memory_info()?;
        if self.fault == Fault::MemoryInfoCountsAliases {
            info.live_allocations += lock(&self.aliases).len() as u64;
        }
        if self.fault == Fault::MemoryInfoMiscounts {
            info.live_allocations = info
                .live_allocations
                .saturating_sub(*lock(&self.zero_sized));
        }
        Ok(info)
    }

    fn map_host(
        &self,
        ptr: u64,
        bytes: usize,
        mode: backend_api::MapMode,
    ) -> BackendResult<backend_api::HostView<'_>> {
        self.inner.map_host(ptr, bytes, mode)
    }

    fn host_view_is_zero_copy(&self) -> bool {
        self.inner.host_view_is_zero_copy()
    }
}
