//! The validating layer: backends implement [`Executor`] in terms of checked plans, and
//! one generic `impl ComputeBackend for E: Executor` does everything else.
//!
//! This is the wgpu-core-over-wgpu-hal shape. [`ComputeBackend`] is what a framework
//! calls; it takes raw `u64` pointers and BLAS-shaped argument lists. [`Executor`] is what
//! a backend implements; it takes the plans of [`validate`], whose every
//! operand range has been checked for overflow, alignment and forbidden overlap. The
//! blanket implementation below runs, for every call and in this order:
//!
//! 1. [`Executor::ready`] (`NotInitialized` before `init`, or the backend's own refusal,
//!    e.g. a lost device);
//! 2. the op's `validate::*` function, which names the op, the operand and the range in
//!    its `InvalidArgument`;
//! 3. the no-op return when the plan is empty (a zero-sized output);
//! 4. the executor's `run_*` method with the plan.
//!
//! So a backend cannot receive an unchecked call: what remains for it is to resolve each
//! [`Operand`] in its [`AddressSpace`](crate::AddressSpace) (which checks
//! that the range lies in one live allocation) and do the work. Each `run_X` is
//! `ComputeBackend::X` after the checks; the methods have their own names so that a type
//! implementing both traits never makes a call ambiguous.
//!
//! A backend that wants to break the contract on purpose (the conformance suite's mutants)
//! implements [`ComputeBackend`] directly instead, usually by wrapping a real backend.

use crate::backend::write_staged;
use crate::validate::{
    self, AttentionPlan, BinaryPlan, BroadcastPlan, CastPlan, Conv2dPlan, CopyPlan, GatherPlan,
    GemmArgs, GemmPlan, GemmQPlan, HostCopyPlan, Plan, ReducePlan, RowOp, RowPlan, UnaryPlan,
};
use crate::{
    AttentionArgs, BackendError, BackendFuture, BackendResult, BackendTranspose, BinaryOp,
    ComputeBackend, DType, MemoryInfo, Operand, ReduceOp, Retired, UnaryOp, UnaryParamOp,
};
use crate::{HostView, MapMode};

/// A backend in terms of checked plans. Implementing it gives the type
/// [`ComputeBackend`] through the blanket implementation in this module; see the
/// [module documentation](self) for what that implementation checks, and in which order.
///
/// ```
/// use backend_api::executor::Executor;
/// use backend_api::validate::{GemmPlan, UnaryPlan};
/// use backend_api::{BackendError, BackendResult, ComputeBackend, UnaryOp};
///
/// /// A backend that allocates nothing and can run nothing, yet validates every call.
/// struct Nothing;
///
/// impl Executor for Nothing {
///     fn backend_name(&self) -> &str { "nothing" }
///     fn run_init(&mut self) -> BackendResult<()> { Ok(()) }
///     fn initialized(&self) -> bool { true }
///     fn run_unary(&self, _: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
///         Err(BackendError::Unsupported(format!("{}: no memory", p.op)))
///     }
///     // ... every other run_* method likewise
/// #   fn run_gemm(&self, _: &GemmPlan) -> BackendResult<()> { unimplemented!() }
/// #   fn run_conv2d_forward(&self, _: &backend_api::validate::Conv2dPlan) -> BackendResult<()> { unimplemented!() }
/// #   fn run_attention(&self, _: &backend_api::validate::AttentionPlan) -> BackendResult<()> { unimplemented!() }
/// #   fn run_reduce(&self, _: backend_api::ReduceOp, _: &backend_api::validate::ReducePlan) -> BackendResult<()> { unimplemented!() }
/// #   fn run_binary(&self, _: backend_api::BinaryOp, _: &backend_api::validate::BinaryPlan) -> BackendResult<()> { unimplemented!() }
/// #   fn run_synchronize(&self) -> BackendResult<()> { Ok(()) }
/// #   fn run_alloc(&self, _: usize) -> BackendResult<u64> { Err(BackendError::OutOfMemory("none".into())) }
/// #   fn run_free(&self, _: u64) -> BackendResult<()> { unimplemented!() }
/// #   fn run_copy_htod(&self, _: &backend_api::validate::HostCopyPlan, _: &[u8]) -> BackendResult<()> { unimplemented!() }
/// #   fn run_copy_dtoh(&self, _: &mut [u8], _: &backend_api::validate::HostCopyPlan) -> BackendResult<()> { unimplemented!() }
/// #   fn run_copy_dtod(&self, _: &backend_api::validate::CopyPlan) -> BackendResult<()> { unimplemented!() }
/// }
///
/// // A misaligned operand never reaches `run_unary`:
/// let e = Nothing.unary(UnaryOp::Relu, 0x1002, 0x2000, 4).unwrap_err();
/// assert!(e.to_string().contains("unary: operand input address 0x1002 is not 4-byte aligned"));
/// // An empty one is a no-op:
/// Nothing.unary(UnaryOp::Relu, 0x1002, 0x2000, 0).unwrap();
/// ```
pub trait Executor: Send + Sync {
    /// [`ComputeBackend::name`].
    fn backend_name(&self) -> &str;

    /// [`ComputeBackend::init`].
    fn run_init(&mut self) -> BackendResult<()>;

    /// [`ComputeBackend::is_initialized`].
    fn initialized(&self) -> bool;

    /// Called first by every method but `name`, `init` and `is_initialized`: an error
    /// here is the call's result. The default is `NotInitialized` until [`run_init`]
    /// succeeded; a backend may add its own refusals (a lost device).
    ///
    /// [`run_init`]: Self::run_init
    fn ready(&self) -> BackendResult<()> {
        if self.initialized() {
            Ok(())
        } else {
            Err(BackendError::NotInitialized)
        }
    }

    /// `gemm`, `batched_gemm` and `gemm_ex` (`plan.op` says which; A and B may be f16 or
    /// bf16 only for `gemm_ex`).
    fn run_gemm(&self, plan: &GemmPlan) -> BackendResult<()>;

    /// [`ComputeBackend::conv2d_forward`] and [`ComputeBackend::conv2d_forward_ex`]
    /// (`plan.is_plain()` for the former).
    fn run_conv2d_forward(&self, plan: &Conv2dPlan) -> BackendResult<()>;

    /// [`ComputeBackend::attention`] and [`ComputeBackend::attention_ex`].
    fn run_attention(&self, plan: &AttentionPlan) -> BackendResult<()>;

    /// [`ComputeBackend::reduce`].
    fn run_reduce(&self, op: ReduceOp, plan: &ReducePlan) -> BackendResult<()>;

    /// [`ComputeBackend::unary`].
    fn run_unary(&self, op: UnaryOp, plan: &UnaryPlan) -> BackendResult<()>;

    /// [`ComputeBackend::binary`].
    fn run_binary(&self, op: BinaryOp, plan: &BinaryPlan) -> BackendResult<()>;

    /// [`ComputeBackend::synchronize`].
    fn run_synchronize(&self) -> BackendResult<()>;

    /// [`ComputeBackend::alloc`].
    fn run_alloc(&self, bytes: usize) -> BackendResult<u64>;

    /// [`ComputeBackend::free`].
    fn run_free(&self, ptr: u64) -> BackendResult<()>;

    /// [`ComputeBackend::copy_htod`]; `src.len() == plan.device.bytes`.
    fn run_copy_htod(&self, plan: &HostCopyPlan, src: &[u8]) -> BackendResult<()>;

    /// [`ComputeBackend::copy_dtoh`]; `dst.len() == plan.device.bytes`.
    fn run_copy_dtoh(&self, dst: &mut [u8], plan: &HostCopyPlan) -> BackendResult<()>;

    /// [`ComputeBackend::copy_dtod`].
    fn run_copy_dtod(&self, plan: &CopyPlan) -> BackendResult<()>;

    /// [`ComputeBackend::cast`]; the default returns `Unsupported`.
    fn run_cast(&self, plan: &CastPlan) -> BackendResult<()> {
        Err(BackendError::Unsupported(format!(
            "{}: {} -> {} is not implemented by {}",
            plan.op,
            plan.src_dtype,
            plan.dst_dtype,
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::softmax`], `log_softmax`, `layer_norm` and `rms_norm` (by
    /// `plan.kind`); the default returns `Unsupported`.
    fn run_rows(&self, plan: &RowPlan) -> BackendResult<()> {
        Err(BackendError::Unsupported(format!(
            "{}: not implemented by {}",
            plan.op,
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::rows_ex`] on f16/bf16 storage (f32 goes to `run_rows`); the
    /// default returns `Unsupported`.
    fn run_rows_ex(&self, plan: &RowPlan) -> BackendResult<()> {
        Err(BackendError::Unsupported(format!(
            "{} {} {}: not implemented by {}",
            plan.op,
            plan.kind,
            plan.dtype,
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::gemm_q`]; the default returns `Unsupported`.
    fn run_gemm_q(&self, plan: &GemmQPlan) -> BackendResult<()> {
        Err(BackendError::Unsupported(format!(
            "{} {}: not implemented by {}",
            plan.op,
            plan.format,
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::binary_broadcast`]; the default returns `Unsupported`.
    fn run_binary_broadcast(&self, op: BinaryOp, plan: &BroadcastPlan) -> BackendResult<()> {
        Err(BackendError::Unsupported(format!(
            "{} {op}: not implemented by {}",
            plan.op,
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::unary_param`] (parameters checked); the default returns
    /// `Unsupported`.
    fn run_unary_param(
        &self,
        op: UnaryParamOp,
        a: f32,
        b: f32,
        plan: &UnaryPlan,
    ) -> BackendResult<()> {
        let _ = (a, b);
        Err(BackendError::Unsupported(format!(
            "{} {op}: not implemented by {}",
            plan.op,
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::unary_ex`] with an f16 or bf16 `plan.dtype` (f32 calls go to
    /// [`run_unary`](Self::run_unary)); the default returns `Unsupported`.
    fn run_unary_ex(&self, op: UnaryOp, plan: &UnaryPlan) -> BackendResult<()> {
        Err(BackendError::Unsupported(format!(
            "{} {op} {}: not implemented by {}",
            plan.op,
            plan.dtype,
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::binary_ex`] with an f16 or bf16 `plan.dtype`; the default
    /// returns `Unsupported`.
    fn run_binary_ex(&self, op: BinaryOp, plan: &BinaryPlan) -> BackendResult<()> {
        Err(BackendError::Unsupported(format!(
            "{} {op} {}: not implemented by {}",
            plan.op,
            plan.dtype,
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::reduce_ex`] with an f16 or bf16 `plan.dtype`; the default
    /// returns `Unsupported`.
    fn run_reduce_ex(&self, op: ReduceOp, plan: &ReducePlan) -> BackendResult<()> {
        Err(BackendError::Unsupported(format!(
            "{} {op} {}: not implemented by {}",
            plan.op,
            plan.dtype,
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::gather`]; the default returns `Unsupported`.
    fn run_gather(&self, plan: &GatherPlan) -> BackendResult<()> {
        Err(BackendError::Unsupported(format!(
            "{}: not implemented by {}",
            plan.op,
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::batched_gemm_ex`] with an f16/bf16 C (A and B of any type go to
    /// `run_gemm` as for `gemm_ex`); the default runs [`run_gemm`](Self::run_gemm) into an
    /// f32 copy of C ([`through_f32`](crate::through_f32)).
    fn run_gemm_ex(&self, plan: &GemmPlan) -> BackendResult<()> {
        crate::through_f32::gemm(self, plan)
    }

    /// [`ComputeBackend::attention_ex`] with f16/bf16 Q, K, V and O; the default runs
    /// [`run_attention`](Self::run_attention) on f32 temporaries
    /// ([`through_f32`](crate::through_f32)).
    fn run_attention_ex(&self, plan: &AttentionPlan) -> BackendResult<()> {
        crate::through_f32::attention(self, plan)
    }

    /// [`ComputeBackend::conv2d_forward_ex`] on f16/bf16 operands; the default runs
    /// [`run_conv2d_forward`](Self::run_conv2d_forward) on f32 temporaries.
    fn run_conv2d_ex(&self, plan: &Conv2dPlan) -> BackendResult<()> {
        crate::through_f32::conv2d(self, plan)
    }

    /// [`ComputeBackend::binary_broadcast_ex`] on f16/bf16 operands; the default runs
    /// [`run_binary_broadcast`](Self::run_binary_broadcast) on f32 temporaries.
    fn run_binary_broadcast_ex(&self, op: BinaryOp, plan: &BroadcastPlan) -> BackendResult<()> {
        crate::through_f32::binary_broadcast(self, op, plan)
    }

    /// [`ComputeBackend::gather_ex`] of an f16/bf16 table; the default runs
    /// [`run_gather`](Self::run_gather) on an f32 copy of the table.
    fn run_gather_ex(&self, plan: &GatherPlan) -> BackendResult<()> {
        crate::through_f32::gather(self, plan)
    }

    /// [`ComputeBackend::unary_param_ex`] on f16/bf16 elements; the default runs
    /// [`run_unary_param`](Self::run_unary_param) on an f32 temporary.
    fn run_unary_param_ex(
        &self,
        op: UnaryParamOp,
        a: f32,
        b: f32,
        plan: &UnaryPlan,
    ) -> BackendResult<()> {
        crate::through_f32::unary_param(self, op, a, b, plan)
    }

    /// [`ComputeBackend::copy_dtoh_async`]; the default runs the blocking copy.
    fn run_copy_dtoh_async<'a>(
        &'a self,
        dst: &'a mut [u8],
        plan: HostCopyPlan,
    ) -> BackendFuture<'a, ()> {
        Box::pin(std::future::ready(self.run_copy_dtoh(dst, &plan)))
    }

    /// [`ComputeBackend::copy_dtoh_many`], every entry checked and non-empty; the
    /// default reads each into host staging with [`run_copy_dtoh`](Self::run_copy_dtoh)
    /// and writes the destinations only once every read succeeded.
    fn run_copy_dtoh_many(&self, reads: &mut [(HostCopyPlan, &mut [u8])]) -> BackendResult<()> {
        let mut staged = Vec::with_capacity(reads.len());
        for (plan, dst) in reads.iter() {
            let mut buf = vec![0u8; dst.len()];
            self.run_copy_dtoh(&mut buf, plan)?;
            staged.push(buf);
        }
        write_staged(reads, staged);
        Ok(())
    }

    /// [`ComputeBackend::copy_dtoh_many_async`], every entry checked and non-empty; the
    /// default stages through [`run_copy_dtoh_async`](Self::run_copy_dtoh_async).
    fn run_copy_dtoh_many_async<'a>(
        &'a self,
        reads: Vec<(HostCopyPlan, &'a mut [u8])>,
    ) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let mut reads = reads;
            let mut staged = Vec::with_capacity(reads.len());
            for (plan, dst) in reads.iter() {
                let mut buf = vec![0u8; dst.len()];
                self.run_copy_dtoh_async(&mut buf, *plan).await?;
                staged.push(buf);
            }
            write_staged(&mut reads, staged);
            Ok(())
        })
    }

    /// [`ComputeBackend::synchronize_async`]; the default blocks.
    fn run_synchronize_async(&self) -> BackendFuture<'_, ()> {
        Box::pin(std::future::ready(self.run_synchronize()))
    }

    /// Rewrites each operand that names bytes through an alias to the physical address
    /// of those bytes (checking that it lies inside the alias, and saying so when the
    /// alias is stale), and returns true when it rewrote any. The layer then checks the
    /// plan's overlap rules again, on physical bytes. The default, for a backend without
    /// aliases, rewrites nothing. `AddressSpace::physical` does it for one operand.
    fn physical(&self, op: &'static str, operands: Vec<&mut Operand>) -> BackendResult<bool> {
        let _ = (op, operands);
        Ok(false)
    }

    /// [`ComputeBackend::alias`]; the default returns `Unsupported`.
    fn run_alias(&self, ptr: u64, bytes: usize) -> BackendResult<u64> {
        let _ = (ptr, bytes);
        Err(BackendError::Unsupported(format!(
            "alias: not implemented by {}",
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::retire`]; the default returns `Unsupported`.
    fn run_retire(&self, alias: u64, why: Retired) -> BackendResult<()> {
        let _ = (alias, why);
        Err(BackendError::Unsupported(format!(
            "retire: not implemented by {}",
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::map_host`] on a checked, non-empty range (rewritten to physical
    /// bytes); the default returns `Unsupported`. The backend registers the view in its
    /// address space ([`AddressSpace::add_view`](crate::AddressSpace::add_view)) so that
    /// other calls touching the bytes are refused while it lives.
    fn run_map_host(&self, p: &HostCopyPlan, mode: MapMode) -> BackendResult<HostView<'_>> {
        let _ = (p, mode);
        Err(BackendError::Unsupported(format!(
            "map_host: not implemented by {}",
            self.backend_name()
        )))
    }

    /// [`ComputeBackend::host_view_is_zero_copy`]; the default says no.
    fn zero_copy_views(&self) -> bool {
        false
    }

    /// [`ComputeBackend::memory_info`]; the default returns `Unsupported`.
    fn run_memory_info(&self) -> BackendResult<MemoryInfo> {
        Err(BackendError::Unsupported(format!(
            "memory_info: not implemented by {}",
            self.backend_name()
        )))
    }
}

/// The plan with its operands rewritten to physical bytes and its overlap rules checked
/// on them again; `None` for a no-op.
fn physical_plan<E: Executor + ?Sized, P: Plan>(
    e: &E,
    plan: BackendResult<Option<P>>,
) -> BackendResult<Option<P>> {
    let Some(mut p) = plan? else {
        return Ok(None);
    };
    if e.physical(p.op(), p.operands_mut())? {
        p.check_overlaps().map_err(|err| match err {
            BackendError::InvalidArgument(m) => BackendError::InvalidArgument(format!(
                "{m} (through an alias: the ranges shown are the physical bytes)"
            )),
            other => other,
        })?;
    }
    Ok(Some(p))
}

/// Runs `plan` through `run` unless the call is a no-op.
fn dispatch<E: Executor + ?Sized, P: Plan>(
    e: &E,
    plan: BackendResult<Option<P>>,
    run: impl FnOnce(&P) -> BackendResult<()>,
) -> BackendResult<()> {
    match physical_plan(e, plan)? {
        Some(p) => run(&p),
        None => Ok(()),
    }
}

/// The checked, non-empty entries of a `copy_dtoh_many`: all or nothing, so the first bad
/// entry fails the call before anything is read.
fn many_plans<'r, E: Executor + ?Sized>(
    e: &E,
    reads: &'r mut [(u64, &mut [u8])],
) -> BackendResult<Vec<(HostCopyPlan, &'r mut [u8])>> {
    let mut plans = Vec::with_capacity(reads.len());
    for (src, dst) in reads.iter() {
        plans.push(physical_plan(
            e,
            validate::host_copy("copy_dtoh", "src", *src, dst.len()),
        )?);
    }
    Ok(plans
        .into_iter()
        .zip(reads.iter_mut())
        .filter_map(|(plan, (_, dst))| plan.map(|p| (p, &mut **dst)))
        .collect())
}

/// An already-finished future holding `result`.
fn done<'a, T: 'a>(result: BackendResult<T>) -> BackendFuture<'a, T> {
    Box::pin(std::future::ready(result))
}

impl<E: Executor> ComputeBackend for E {
    fn name(&self) -> &str {
        self.backend_name()
    }

    fn init(&mut self) -> BackendResult<()> {
        self.run_init()
    }

    fn is_initialized(&self) -> bool {
        self.initialized()
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
        self.ready()?;
        let args = GemmArgs::new(
            trans_a, trans_b, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c_ptr, ldc,
        );
        dispatch(self, validate::gemm("gemm", &args), |p| self.run_gemm(p))
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
        self.ready()?;
        let args = GemmArgs::new(
            trans_a, trans_b, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c_ptr, ldc,
        )
        .with_batch(stride_a, stride_b, stride_c, batch_count);
        dispatch(self, validate::gemm("batched_gemm", &args), |p| {
            self.run_gemm(p)
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
        self.ready()?;
        let args = GemmArgs::new(
            trans_a, trans_b, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c_ptr, ldc,
        )
        .with_dtypes(a_dtype, b_dtype);
        dispatch(self, validate::gemm("gemm_ex", &args), |p| self.run_gemm(p))
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
        self.ready()?;
        let plan = validate::conv2d(
            input_ptr,
            input_shape,
            filter_ptr,
            filter_shape,
            output_ptr,
            output_shape,
            stride,
            padding,
        );
        dispatch(self, plan, |p| self.run_conv2d_forward(p))
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
        self.ready()?;
        let plan = validate::attention(
            q_ptr, k_ptr, v_ptr, o_ptr, batch, heads, seq_q, seq_kv, head_dim, scale, causal,
        );
        dispatch(self, plan, |p| self.run_attention(p))
    }

    fn attention_ex(&self, args: &AttentionArgs) -> BackendResult<()> {
        self.ready()?;
        dispatch(self, validate::attention_ex(args), |p| match p.dtype {
            DType::F32 => self.run_attention(p),
            _ => self.run_attention_ex(p),
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
        self.ready()?;
        let plan = validate::reduce(input_ptr, output_ptr, shape, axis);
        dispatch(self, plan, |p| self.run_reduce(op, p))
    }

    fn unary(&self, op: UnaryOp, input_ptr: u64, output_ptr: u64, n: usize) -> BackendResult<()> {
        self.ready()?;
        let plan = validate::unary(input_ptr, output_ptr, n);
        dispatch(self, plan, |p| self.run_unary(op, p))
    }

    fn binary(
        &self,
        op: BinaryOp,
        a_ptr: u64,
        b_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        self.ready()?;
        let plan = validate::binary(a_ptr, b_ptr, output_ptr, n);
        dispatch(self, plan, |p| self.run_binary(op, p))
    }

    fn synchronize(&self) -> BackendResult<()> {
        self.ready()?;
        self.run_synchronize()
    }

    fn alloc(&self, bytes: usize) -> BackendResult<u64> {
        self.ready()?;
        self.run_alloc(bytes)
    }

    fn free(&self, ptr: u64) -> BackendResult<()> {
        self.ready()?;
        self.run_free(ptr)
    }

    fn copy_htod(&self, dst: u64, src: &[u8]) -> BackendResult<()> {
        self.ready()?;
        let plan = validate::host_copy("copy_htod", "dst", dst, src.len());
        dispatch(self, plan, |p| self.run_copy_htod(p, src))
    }

    fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> BackendResult<()> {
        self.ready()?;
        let plan = validate::host_copy("copy_dtoh", "src", src, dst.len());
        dispatch(self, plan, |p| self.run_copy_dtoh(dst, p))
    }

    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> BackendResult<()> {
        self.ready()?;
        dispatch(self, validate::copy_dtod(dst, src, bytes), |p| {
            self.run_copy_dtod(p)
        })
    }

    fn softmax(&self, x: u64, y: u64, rows: usize, cols: usize) -> BackendResult<()> {
        self.ready()?;
        let plan = validate::rows(RowOp::Softmax, x, None, None, y, rows, cols, 0.0);
        dispatch(self, plan, |p| self.run_rows(p))
    }

    fn log_softmax(&self, x: u64, y: u64, rows: usize, cols: usize) -> BackendResult<()> {
        self.ready()?;
        let plan = validate::rows(RowOp::LogSoftmax, x, None, None, y, rows, cols, 0.0);
        dispatch(self, plan, |p| self.run_rows(p))
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
        self.ready()?;
        let plan = validate::rows(RowOp::LayerNorm, x, gamma, beta, y, rows, cols, eps);
        dispatch(self, plan, |p| self.run_rows(p))
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
        self.ready()?;
        let plan = validate::rows(RowOp::RmsNorm, x, gamma, None, y, rows, cols, eps);
        dispatch(self, plan, |p| self.run_rows(p))
    }

    fn rows_ex(
        &self,
        op: RowOp,
        dtype: DType,
        x: u64,
        gamma: Option<u64>,
        beta: Option<u64>,
        y: u64,
        rows: usize,
        cols: usize,
        eps: f64,
    ) -> BackendResult<()> {
        self.ready()?;
        let plan = validate::rows_ex(op, dtype, x, gamma, beta, y, rows, cols, eps);
        dispatch(self, plan, |p| match p.dtype {
            DType::F32 => self.run_rows(p),
            _ => self.run_rows_ex(p),
        })
    }

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
        self.ready()?;
        let plan = validate::gemm_q(format, m, n, k, alpha, a, b, b_dtype, ldb, beta, c, ldc);
        dispatch(self, plan, |p| self.run_gemm_q(p))
    }

    fn conv2d_forward_ex(&self, args: &crate::Conv2dArgs) -> BackendResult<()> {
        self.ready()?;
        dispatch(self, validate::conv2d_ex(args), |p| match p.dtype {
            DType::F32 => self.run_conv2d_forward(p),
            _ => self.run_conv2d_ex(p),
        })
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
        self.ready()?;
        let plan = validate::binary_broadcast(a, a_shape, b, b_shape, out, out_shape);
        dispatch(self, plan, |p| self.run_binary_broadcast(op, p))
    }

    fn batched_gemm_ex(&self, args: &crate::GemmArgs) -> BackendResult<()> {
        self.ready()?;
        dispatch(self, validate::gemm("batched_gemm_ex", args), |p| {
            match p.c_dtype {
                DType::F32 => self.run_gemm(p),
                _ => self.run_gemm_ex(p),
            }
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
        self.ready()?;
        let plan = validate::binary_broadcast_ex(dtype, a, a_shape, b, b_shape, out, out_shape);
        dispatch(self, plan, |p| match p.dtype {
            DType::F32 => self.run_binary_broadcast(op, p),
            _ => self.run_binary_broadcast_ex(op, p),
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
        self.ready()?;
        let plan = validate::unary_param(op, a, b, input_ptr, output_ptr, n);
        dispatch(self, plan, |p| self.run_unary_param(op, a, b, p))
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
        self.ready()?;
        let plan = validate::unary_param_ex(op, dtype, a, b, input_ptr, output_ptr, n);
        dispatch(self, plan, |p| match p.dtype {
            DType::F32 => self.run_unary_param(op, a, b, p),
            _ => self.run_unary_param_ex(op, a, b, p),
        })
    }

    fn unary_ex(
        &self,
        op: UnaryOp,
        dtype: DType,
        input_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        self.ready()?;
        let plan = validate::unary_ex(dtype, input_ptr, output_ptr, n);
        dispatch(self, plan, |p| match p.dtype {
            DType::F32 => self.run_unary(op, p),
            _ => self.run_unary_ex(op, p),
        })
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
        self.ready()?;
        let plan = validate::binary_ex(dtype, a_ptr, b_ptr, output_ptr, n);
        dispatch(self, plan, |p| match p.dtype {
            DType::F32 => self.run_binary(op, p),
            _ => self.run_binary_ex(op, p),
        })
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
        self.ready()?;
        let plan = validate::reduce_ex(dtype, input_ptr, output_ptr, shape, axis);
        dispatch(self, plan, |p| match p.dtype {
            DType::F32 => self.run_reduce(op, p),
            _ => self.run_reduce_ex(op, p),
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
        self.ready()?;
        let plan = validate::gather(table, rows, cols, indices, n, out);
        dispatch(self, plan, |p| self.run_gather(p))
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
        self.ready()?;
        let plan = validate::gather_ex(dtype, table, rows, cols, indices, n, out);
        dispatch(self, plan, |p| match p.dtype {
            DType::F32 => self.run_gather(p),
            _ => self.run_gather_ex(p),
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
        self.ready()?;
        let plan = validate::cast(src, src_dtype, dst, dst_dtype, n);
        dispatch(self, plan, |p| self.run_cast(p))
    }

    fn copy_dtoh_async<'a>(&'a self, dst: &'a mut [u8], src: u64) -> BackendFuture<'a, ()> {
        if let Err(e) = self.ready() {
            return done(Err(e));
        }
        match physical_plan(
            self,
            validate::host_copy("copy_dtoh", "src", src, dst.len()),
        ) {
            Ok(Some(plan)) => self.run_copy_dtoh_async(dst, plan),
            Ok(None) => done(Ok(())),
            Err(e) => done(Err(e)),
        }
    }

    fn copy_dtoh_many(&self, reads: &mut [(u64, &mut [u8])]) -> BackendResult<()> {
        self.ready()?;
        let mut work = many_plans(self, reads)?;
        if work.is_empty() {
            return Ok(());
        }
        self.run_copy_dtoh_many(&mut work)
    }

    fn copy_dtoh_many_async<'a>(
        &'a self,
        reads: &'a mut [(u64, &'a mut [u8])],
    ) -> BackendFuture<'a, ()> {
        if let Err(e) = self.ready() {
            return done(Err(e));
        }
        match many_plans(self, reads) {
            Ok(work) if work.is_empty() => done(Ok(())),
            Ok(work) => self.run_copy_dtoh_many_async(work),
            Err(e) => done(Err(e)),
        }
    }

    fn synchronize_async(&self) -> BackendFuture<'_, ()> {
        match self.ready() {
            Ok(()) => self.run_synchronize_async(),
            Err(e) => done(Err(e)),
        }
    }

    fn alias(&self, ptr: u64, bytes: usize) -> BackendResult<u64> {
        self.ready()?;
        self.run_alias(ptr, bytes)
    }

    fn retire(&self, alias: u64, why: Retired) -> BackendResult<()> {
        self.ready()?;
        self.run_retire(alias, why)
    }

    fn memory_info(&self) -> BackendResult<MemoryInfo> {
        self.ready()?;
        self.run_memory_info()
    }

    fn map_host(&self, ptr: u64, bytes: usize, mode: MapMode) -> BackendResult<HostView<'_>> {
        self.ready()?;
        match physical_plan(self, validate::host_copy("map_host", "ptr", ptr, bytes))? {
            Some(p) => self.run_map_host(&p, mode),
            None => Ok(HostView::empty(ptr, mode)),
        }
    }

    fn host_view_is_zero_copy(&self) -> bool {
        self.zero_copy_views()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::BackendTranspose::NoTrans;

    /// Drives a future that is known to be ready (the default async paths) to completion.
    fn now<F: std::future::Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the future was not ready"),
        }
    }

    /// Records which `run_*` methods were reached, and with which op name.
    #[derive(Default)]
    struct Recorder {
        open: bool,
        calls: Mutex<Vec<String>>,
    }

    impl Recorder {
        fn log(&self, what: &str) -> BackendResult<()> {
            self.calls.lock().unwrap().push(what.to_string());
            Ok(())
        }
        fn calls(&self) -> Vec<String> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }
    }

    impl Executor for Recorder {
        fn backend_name(&self) -> &str {
            "recorder"
        }
        fn run_init(&mut self) -> BackendResult<()> {
            self.open = true;
            Ok(())
        }
        fn initialized(&self) -> bool {
            self.open
        }
        fn run_gemm(&self, p: &GemmPlan) -> BackendResult<()> {
            self.log(p.op)
        }
        fn run_conv2d_forward(&self, p: &Conv2dPlan) -> BackendResult<()> {
            self.log(p.op)
        }
        fn run_attention(&self, p: &AttentionPlan) -> BackendResult<()> {
            self.log(p.op)
        }
        fn run_reduce(&self, _: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
            self.log(p.op)
        }
        fn run_unary(&self, _: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
            self.log(p.op)
        }
        fn run_binary(&self, _: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
            self.log(p.op)
        }
        fn run_synchronize(&self) -> BackendResult<()> {
            self.log("synchronize")
        }
        fn run_alloc(&self, _: usize) -> BackendResult<u64> {
            self.log("alloc").map(|()| 1 << 32)
        }
        fn run_free(&self, _: u64) -> BackendResult<()> {
            self.log("free")
        }
        fn run_copy_htod(&self, p: &HostCopyPlan, _: &[u8]) -> BackendResult<()> {
            self.log(p.op)
        }
        fn run_copy_dtoh(&self, _: &mut [u8], p: &HostCopyPlan) -> BackendResult<()> {
            self.log(p.op)
        }
        fn run_copy_dtod(&self, p: &CopyPlan) -> BackendResult<()> {
            self.log(p.op)
        }
    }

    /// One valid, non-empty call of every method that takes operands, by name.
    fn every_call(b: &dyn ComputeBackend) -> Vec<(&'static str, BackendResult<()>)> {
        let (x, y, z) = (0x1000u64, 0x2000u64, 0x3000u64);
        let mut buf = [0u8; 4];
        vec![
            (
                "gemm",
                b.gemm(NoTrans, NoTrans, 2, 2, 2, 1.0, x, 2, y, 2, 0.0, z, 2),
            ),
            (
                "batched_gemm",
                b.batched_gemm(
                    NoTrans, NoTrans, 2, 2, 2, 1.0, x, 2, 4, y, 2, 4, 0.0, z, 2, 4, 2,
                ),
            ),
            (
                "gemm_ex",
                b.gemm_ex(
                    NoTrans,
                    NoTrans,
                    2,
                    2,
                    2,
                    1.0,
                    x,
                    DType::F16,
                    2,
                    y,
                    DType::F32,
                    2,
                    0.0,
                    z,
                    2,
                ),
            ),
            (
                "conv2d_forward",
                b.conv2d_forward(
                    x,
                    &[1, 1, 2, 2],
                    y,
                    &[1, 1, 1, 1],
                    z,
                    &[1, 1, 2, 2],
                    &[1, 1],
                    &[0, 0],
                ),
            ),
            (
                "attention",
                b.attention(x, y, z, 0x4000, 1, 1, 2, 2, 4, 0.5, false),
            ),
            ("reduce", b.reduce(ReduceOp::Sum, x, y, &[2, 3], 1)),
            ("unary", b.unary(UnaryOp::Relu, x, x, 4)),
            ("binary", b.binary(BinaryOp::Add, x, y, z, 4)),
            ("copy_htod", b.copy_htod(x, &[1, 2, 3])),
            ("copy_dtoh", b.copy_dtoh(&mut buf, x)),
            ("copy_dtoh", now(b.copy_dtoh_async(&mut buf, x))),
            ("copy_dtod", b.copy_dtod(x, y, 3)),
            ("cast", b.cast(x, DType::F32, y, DType::F16, 4)),
        ]
    }

    #[test]
    fn nothing_reaches_the_executor_before_init() {
        let b = Recorder::default();
        for (name, r) in every_call(&b) {
            assert_eq!(r, Err(BackendError::NotInitialized), "{name}");
        }
        assert_eq!(b.alloc(4), Err(BackendError::NotInitialized));
        assert_eq!(b.free(1), Err(BackendError::NotInitialized));
        assert_eq!(b.synchronize(), Err(BackendError::NotInitialized));
        assert_eq!(
            now(b.synchronize_async()),
            Err(BackendError::NotInitialized)
        );
        assert_eq!(b.memory_info(), Err(BackendError::NotInitialized));
        assert!(b.calls().is_empty());
    }

    #[test]
    fn valid_calls_reach_the_executor_with_their_op_name() {
        let mut b = Recorder::default();
        b.init().unwrap();
        let mut want = Vec::new();
        for (name, r) in every_call(&b) {
            match name {
                // The default cast is Unsupported and names the op.
                "cast" => assert!(r.unwrap_err().to_string().contains("cast: f32 -> f16")),
                _ => {
                    r.unwrap();
                    want.push(name.to_string());
                }
            }
        }
        assert_eq!(b.calls(), want);
    }

    #[test]
    fn invalid_and_empty_calls_stop_in_the_layer() {
        let mut b = Recorder::default();
        b.init().unwrap();
        let e = b.unary(UnaryOp::Relu, 0x1002, 0x2000, 4).unwrap_err();
        assert!(e.to_string().contains("unary: operand input"), "{e}");
        let e = b.gemm(
            NoTrans, NoTrans, 2, 2, 2, 1.0, 0x1000, 1, 0x2000, 2, 0.0, 0x3000, 2,
        );
        assert!(e.unwrap_err().to_string().contains("gemm: lda 1"));
        let e = b.copy_dtod(0x1000, 0x1001, 4).unwrap_err();
        assert!(e.to_string().contains("copy_dtod"), "{e}");
        let e = now(b.copy_dtoh_async(&mut [0u8; 4], u64::MAX - 1)).unwrap_err();
        assert!(e.to_string().contains("copy_dtoh"), "{e}");
        b.unary(UnaryOp::Relu, 0x1002, 0x2000, 0).unwrap();
        b.reduce(ReduceOp::Sum, 0x1000, 0x2000, &[0, 3], 1).unwrap();
        b.copy_htod(0x1001, &[]).unwrap();
        assert!(b.calls().is_empty());
    }
}
