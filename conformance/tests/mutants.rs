//! Mutation tests of the conformance suite: a backend that is wrong in one known way must
//! fail the check that covers it.
//!
//! [`Mutant`] wraps a [`CpuBackend`] (the oracle itself) and delegates every method to it,
//! except for one injected [`Fault`]. Each fault is made by calling the inner backend with
//! altered arguments, or by running the correct op and then corrupting memory through the
//! inner backend's own copies. For every fault a test runs the relevant check with 64
//! cases and asserts that it fails, with a message that names the right thing. A last
//! test runs the whole suite on the un-mutated wrapper, so a failure above is the fault's
//! doing and not the wrapper's.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use backend_api::{
    BackendFuture, BackendResult, BackendTranspose, BinaryOp, ComputeBackend, DType, MemoryInfo,
    ReduceOp, UnaryOp,
};
use backend_cpu::CpuBackend;
use conformance::{Check, CheckReport, Config, SuiteReport, run_check};

/// The one thing a [`Mutant`] does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Nothing: a faithful wrapper.
    None,
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
    /// 6. unary writes one extra f32 just past its output.
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
    /// 15. copy_dtod copies one byte fewer than asked.
    DtodOneByteShort,
    /// 16. gemm drops the last term of every dot product when `k > 8` (runs with `k - 1`,
    ///     which is a valid call for every transpose: it uses the first `k - 1` columns of
    ///     op(A) and rows of op(B)).
    GemmDropsLastTerm,
}

/// An op waiting in the queue of [`Fault::HtodOvertakesQueue`].
type Queued = Box<dyn FnOnce(&CpuBackend) -> BackendResult<()> + Send>;

/// A [`CpuBackend`] with one [`Fault`].
struct Mutant {
    inner: CpuBackend,
    fault: Fault,
    /// Ops not yet run ([`Fault::HtodOvertakesQueue`] only).
    queue: Mutex<Vec<Queued>>,
    /// Live allocations, base to size ([`Fault::FreeAcceptsInterior`] needs them).
    live: Mutex<BTreeMap<u64, usize>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The f16 bits of `x` rounded toward zero (what fault 14 produces).
fn f16_truncated(x: f32) -> u16 {
    let h = half::f16::from_f32(x);
    if x.is_finite() && h.to_f32().abs() > x.abs() {
        // Rounded away from zero (up to infinity included): one step back toward zero.
        h.to_bits() - 1
    } else {
        h.to_bits()
    }
}

impl Mutant {
    fn new(fault: Fault) -> Self {
        let mut inner = CpuBackend::new();
        inner.init().expect("CPU init cannot fail");
        Self {
            inner,
            fault,
            queue: Mutex::new(Vec::new()),
            live: Mutex::new(BTreeMap::new()),
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

    /// Runs every queued op; reports the first error one hit.
    fn flush(&self) -> BackendResult<()> {
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
        Ok(conformance::data::from_bytes(&bytes))
    }

    fn write_f32(&self, ptr: u64, values: &[f32]) -> BackendResult<()> {
        self.inner
            .copy_htod(ptr, &conformance::data::to_bytes(values))
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
                trans_a, trans_b, m, n, k_used, alpha, a_ptr, lda, b_ptr, ldb, beta_used, c_ptr,
                ldc,
            )
        })?;
        if self.fault == Fault::GemmZeroesPaddingRows && ldc > m && m > 0 && n > 1 {
            // Rows m..ldc of every column but the last lie inside C's extent.
            let zeros = vec![0.0f32; ldc - m];
            for j in 0..n - 1 {
                self.write_f32(c_ptr + 4 * (j * ldc + m) as u64, &zeros)?;
            }
        }
        Ok(())
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
        let batches = if self.fault == Fault::BatchedGemmSkipsLastBatch {
            batch_count.saturating_sub(1)
        } else {
            batch_count
        };
        self.op(move |b| {
            b.batched_gemm(
                trans_a, trans_b, m, n, k, alpha, a_ptr, lda, stride_a, b_ptr, ldb, stride_b, beta,
                c_ptr, ldc, stride_c, batches,
            )
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
    }

    fn reduce(
        &self,
        op: ReduceOp,
        input_ptr: u64,
        output_ptr: u64,
        shape: &[usize],
        axis: usize,
    ) -> BackendResult<()> {
        let owned = shape.to_vec();
        self.op(move |b| b.reduce(op, input_ptr, output_ptr, &owned, axis))?;
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
    }

    fn unary(&self, op: UnaryOp, input_ptr: u64, output_ptr: u64, n: usize) -> BackendResult<()> {
        self.op(move |b| b.unary(op, input_ptr, output_ptr, n))?;
        match self.fault {
            Fault::UnaryWritesPastEnd => {
                // Out of range is the inner backend's to refuse; ignore that.
                let _ = self.write_f32(output_ptr + 4 * n as u64, &[0.0]);
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
    }

    fn binary(
        &self,
        op: BinaryOp,
        a_ptr: u64,
        b_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        self.op(move |b| b.binary(op, a_ptr, b_ptr, output_ptr, n))
    }

    fn synchronize(&self) -> BackendResult<()> {
        self.flush()?;
        self.inner.synchronize()
    }

    fn alloc(&self, bytes: usize) -> BackendResult<u64> {
        let p = self.inner.alloc(bytes)?;
        lock(&self.live).insert(p, bytes);
        Ok(p)
    }

    fn free(&self, ptr: u64) -> BackendResult<()> {
        self.flush()?;
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
        self.inner.free(ptr)?;
        lock(&self.live).remove(&ptr);
        Ok(())
    }

    fn copy_htod(&self, dst: u64, src: &[u8]) -> BackendResult<()> {
        // Never waits for the queue: with HtodOvertakesQueue this is the fault.
        self.inner.copy_htod(dst, src)
    }

    fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> BackendResult<()> {
        self.flush()?;
        self.inner.copy_dtoh(dst, src)
    }

    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> BackendResult<()> {
        let bytes_used = if self.fault == Fault::DtodOneByteShort {
            bytes.saturating_sub(1)
        } else {
            bytes
        };
        self.op(move |b| b.copy_dtod(dst, src, bytes_used))
    }

    fn cast(
        &self,
        src: u64,
        src_dtype: DType,
        dst: u64,
        dst_dtype: DType,
        n: usize,
    ) -> BackendResult<()> {
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
        self.op(move |b| {
            b.gemm_ex(
                trans_a, trans_b, m, n, k, alpha, a_ptr, a_dtype, lda, b_ptr, b_dtype, ldb, beta,
                c_ptr, ldc,
            )
        })
    }

    fn copy_dtoh_async<'a>(&'a self, dst: &'a mut [u8], src: u64) -> BackendFuture<'a, ()> {
        if let Err(e) = self.flush() {
            return Box::pin(std::future::ready(Err(e)));
        }
        self.inner.copy_dtoh_async(dst, src)
    }

    fn synchronize_async(&self) -> BackendFuture<'_, ()> {
        if let Err(e) = self.flush() {
            return Box::pin(std::future::ready(Err(e)));
        }
        self.inner.synchronize_async()
    }

    fn memory_info(&self) -> BackendResult<MemoryInfo> {
        self.inner.memory_info()
    }
}

fn summary(report: &CheckReport) -> String {
    SuiteReport {
        backend: "mutant".into(),
        checks: vec![report.clone()],
    }
    .summary()
}

/// Runs `check` (64 cases) on a mutant with `fault` and asserts that it fails, and that
/// some failure message contains every one of `words`.
fn assert_caught(fault: Fault, check: Check, words: &[&str]) {
    let report = run_check(&Mutant::new(fault), check, &Config::new(64));
    let text = summary(&report);
    eprintln!("fault {fault:?}, check {check}:\n{text}");
    assert!(
        !report.ok(),
        "fault {fault:?} was NOT caught by the {check} check:\n{text}"
    );
    assert!(
        report
            .failures
            .iter()
            .any(|f| words.iter().all(|w| f.message.contains(w))),
        "fault {fault:?} failed the {check} check, but no failure message mentions all of {words:?}:\n{text}"
    );
}

#[test]
fn gemm_ignoring_beta_is_caught() {
    assert_caught(Fault::GemmIgnoresBeta, Check::Gemm, &["C["]);
}

#[test]
fn gemm_reading_c_when_beta_is_zero_is_caught() {
    assert_caught(
        Fault::GemmReadsCWhenBetaZero,
        Check::Gemm,
        &["C[", "got NaN"],
    );
}

#[test]
fn gemm_treating_trans_a_as_no_trans_is_caught() {
    assert_caught(Fault::GemmTransAAsNoTrans, Check::Gemm, &["C["]);
}

#[test]
fn gemm_zeroing_padding_rows_of_c_is_caught() {
    assert_caught(Fault::GemmZeroesPaddingRows, Check::Gemm, &["C[", "want"]);
}

#[test]
fn batched_gemm_skipping_the_last_batch_is_caught() {
    assert_caught(
        Fault::BatchedGemmSkipsLastBatch,
        Check::BatchedGemm,
        &["C["],
    );
}

#[test]
fn unary_writing_past_the_output_is_caught() {
    assert_caught(
        Fault::UnaryWritesPastEnd,
        Check::Unary,
        &["bytes after output"],
    );
}

#[test]
fn relu_turning_nan_into_zero_is_caught() {
    assert_caught(
        Fault::ReluNanToZero,
        Check::Unary,
        &["relu output[", "want NaN"],
    );
}

#[test]
fn reduce_max_over_an_empty_axis_writing_zero_is_caught() {
    assert_caught(
        Fault::ReduceMaxEmptyAxisZero,
        Check::Reduce,
        &["output[", "want -inf"],
    );
}

#[test]
fn reduce_mean_dividing_by_len_minus_one_is_caught() {
    assert_caught(Fault::ReduceMeanBiased, Check::Reduce, &["output["]);
}

#[test]
fn attention_ignoring_causal_when_rectangular_is_caught() {
    assert_caught(
        Fault::AttentionCausalIgnoredWhenRectangular,
        Check::Attention,
        &["O["],
    );
}

#[test]
fn conv2d_flipping_the_filter_is_caught() {
    assert_caught(Fault::ConvFlipsFilter, Check::Conv2d, &["output["]);
}

#[test]
fn copy_htod_overtaking_queued_work_is_caught() {
    assert_caught(
        Fault::HtodOvertakesQueue,
        Check::Ordering,
        &["copy_htod overtook a queued op", "program order"],
    );
}

/// The queueing mutant is right whenever uploads come before the ops that read them, so
/// the ordering check above fails for the ordering bug and nothing else.
#[test]
fn queueing_mutant_passes_the_property_checks() {
    let m = Mutant::new(Fault::HtodOvertakesQueue);
    let config = Config::new(16);
    for check in [Check::Gemm, Check::Unary, Check::Binary, Check::Copy] {
        run_check(&m, check, &config).assert_ok();
    }
}

#[test]
fn free_accepting_an_interior_pointer_is_caught() {
    assert_caught(
        Fault::FreeAcceptsInterior,
        Check::Misuse,
        &["free(interior)", "succeeded"],
    );
}

#[test]
fn cast_to_f16_truncating_is_caught() {
    assert_caught(Fault::CastF16Truncates, Check::Cast, &["cast f32 -> f16["]);
}

#[test]
fn copy_dtod_one_byte_short_is_caught() {
    assert_caught(Fault::DtodOneByteShort, Check::Copy, &["after copy_dtod"]);
}

#[test]
fn gemm_dropping_the_last_term_is_caught() {
    assert_caught(Fault::GemmDropsLastTerm, Check::Gemm, &["C["]);
}

#[test]
fn f16_truncation_helper_rounds_toward_zero() {
    // 1 + 2^-11 is halfway between 1 and the next f16: nearest-even gives 1, truncation too.
    assert_eq!(f16_truncated(1.0 + 2f32.powi(-11)), 0x3c00);
    // Just below the next f16: nearest rounds up, truncation does not.
    assert_eq!(f16_truncated(1.0 + 2f32.powi(-10) * 0.9), 0x3c00);
    assert_eq!(f16_truncated(-(1.0 + 2f32.powi(-10) * 0.9)), 0xbc00);
    // Past the f16 range: the largest finite f16, not infinity.
    assert_eq!(f16_truncated(1e6), 0x7bff);
    assert_eq!(f16_truncated(f32::INFINITY), 0x7c00);
    assert!(half::f16::from_bits(f16_truncated(f32::NAN)).is_nan());
}

/// The wrapper without a fault passes every check, so the failures above are the faults'.
#[test]
fn unmutated_wrapper_passes_every_check() {
    let m = Mutant::new(Fault::None);
    let report = conformance::run_all(&m, &Config::new(64));
    eprintln!("{}", report.summary());
    report.assert_ok();
}

/// Every fault, with the check meant to catch it.
const FAULTS: [(Fault, Check); 16] = [
    (Fault::GemmIgnoresBeta, Check::Gemm),
    (Fault::GemmReadsCWhenBetaZero, Check::Gemm),
    (Fault::GemmTransAAsNoTrans, Check::Gemm),
    (Fault::GemmZeroesPaddingRows, Check::Gemm),
    (Fault::BatchedGemmSkipsLastBatch, Check::BatchedGemm),
    (Fault::UnaryWritesPastEnd, Check::Unary),
    (Fault::ReluNanToZero, Check::Unary),
    (Fault::ReduceMaxEmptyAxisZero, Check::Reduce),
    (Fault::ReduceMeanBiased, Check::Reduce),
    (
        Fault::AttentionCausalIgnoredWhenRectangular,
        Check::Attention,
    ),
    (Fault::ConvFlipsFilter, Check::Conv2d),
    (Fault::HtodOvertakesQueue, Check::Ordering),
    (Fault::FreeAcceptsInterior, Check::Misuse),
    (Fault::CastF16Truncates, Check::Cast),
    (Fault::DtodOneByteShort, Check::Copy),
    (Fault::GemmDropsLastTerm, Check::Gemm),
];

/// How robustly each fault is caught: failing cases (of 64) under the default seed for
/// every check, and for the fault's own check the number of 20 other seeds that catch
/// it. Run with `cargo test -p conformance --test mutants -- --ignored --nocapture`.
#[test]
#[ignore = "a survey for humans, not an assertion"]
fn catch_rates() {
    let quick = |seed: u64, cases: u32| {
        let mut c = Config::new(cases);
        c.seed = seed;
        c.max_failures = 0; // no shrinking: only the counts are wanted
        c
    };
    for (fault, own) in FAULTS {
        let m = Mutant::new(fault);
        let row: Vec<String> = Check::ALL
            .iter()
            .map(|&check| {
                let r = run_check(&m, check, &quick(conformance::DEFAULT_SEED, 64));
                format!("{check}={}", r.failed)
            })
            .collect();
        eprintln!(
            "{fault:?}: default seed, failures per check: {}",
            row.join(" ")
        );
        if own.is_property() {
            let first = (0..64u32).find(|&i| {
                let mut c = quick(conformance::DEFAULT_SEED, 64);
                c.cases = i + 1;
                run_check(&m, own, &c).failed > 0
            });
            eprintln!("{fault:?}: default seed, first failing case index {first:?}");
            let counts: Vec<u32> = (0..20)
                .map(|s| run_check(&m, own, &quick(s, 64)).failed)
                .collect();
            let caught = counts.iter().filter(|&&c| c > 0).count();
            eprintln!(
                "{fault:?}: {own} caught under {caught} of 20 seeds; failing cases per seed {counts:?}"
            );
        }
    }
}
