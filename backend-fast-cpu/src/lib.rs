//! `FastCpuBackend`: the fast CPU implementation of
//! [`ComputeBackend`](backend_api::ComputeBackend).
//!
//! Where the oracle (`backend-cpu`) runs plain f64 loops, this backend runs f32 kernels on
//! every core, and is held to the same tolerances by the whole conformance suite:
//!
//! - `gemm`, `batched_gemm`, `gemm_ex`: faer's matrix multiply (the gemm crate's author's
//!   safe interface, AVX-512/AVX2 kernels chosen at run time), every transpose, leading
//!   dimension, `alpha` and `beta` as BLAS; batches in parallel when there are enough of
//!   them, otherwise one multi-threaded multiply per batch. f16/bf16 inputs are widened to
//!   f32 first.
//! - `conv2d_forward`: im2col (skipped for 1x1 stride-1 unpadded filters) and one gemm per
//!   image and band of output rows.
//! - `attention`: fused and blocked, with an online softmax; no `seq_q x seq_kv` buffer.
//! - `reduce`, `unary`, `binary`, `cast`: chunked loops that the compiler vectorises,
//!   split over rayon's pool above a size threshold.
//!
//! Memory is host memory (one `Vec<u32>` per allocation, so every f32 view is aligned)
//! behind the shared [`AddressSpace`]. Each call runs under one lock, so calls are atomic
//! and the stream is in order; the parallelism is inside each call.
//!
//! ```
//! use backend_api::{ComputeBackend, ComputeBackendExt, UnaryOp};
//! let mut b = backend_fast_cpu::FastCpuBackend::new();
//! b.init()?;
//! let x = b.upload(&[-1.0f32, 4.0])?;
//! b.unary(UnaryOp::Relu, x, x, 2)?;
//! assert_eq!(b.copy_dtoh_vec::<f32>(x, 2)?, [0.0, 4.0]);
//! # Ok::<(), backend_api::BackendError>(())
//! ```

// Unsafe code is refused everywhere but in `import` (feature `host-import`), whose blocks
// each carry a SAFETY comment.
#![deny(unsafe_code)]

mod attention;
mod broadcast;
mod conv;
mod elementwise;
pub mod gemm;
#[cfg(feature = "host-import")]
#[allow(unsafe_code)]
mod import;
mod math;
mod quant;
mod reduce;
mod rows;
mod simd;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Mutex, MutexGuard, PoisonError};

use backend_api::executor::Executor;
use backend_api::validate::{
    AttentionPlan, BinaryPlan, BroadcastPlan, CastPlan, Conv2dPlan, CopyPlan, GatherPlan, GemmPlan,
    GemmQPlan, HostCopyPlan, ReducePlan, RowPlan, UnaryPlan,
};
use backend_api::{
    AddressSpace, BackendError, BackendResult, BinaryOp, DType, HostView, LentVec, MapMode,
    MemoryInfo, Operand, ReduceOp, Retired, UnaryOp, UnaryParamOp,
};

/// Environment variable that caps the bytes a [`FastCpuBackend::from_env`] backend may
/// allocate: the CPU backends share it.
pub const MEMORY_LIMIT_ENV: &str = backend_api::env::CPU_MEMORY_LIMIT;

/// The fast CPU backend. See the [crate documentation](crate).
#[derive(Debug)]
pub struct FastCpuBackend {
    state: Option<Mutex<State>>,
    memory_limit: u64,
    /// A bad `CPU_BACKEND_MEMORY_LIMIT` seen by `from_env`: `init` returns it.
    config_error: Option<BackendError>,
}

#[derive(Debug, Default)]
struct State {
    space: AddressSpace<Vec<u32>>,
    /// Host memory lent by [`FastCpuBackend::with_host_memory`], by the base address of the
    /// allocation that stands for it (whose own `Vec` stays empty).
    #[cfg(feature = "host-import")]
    imports: std::collections::BTreeMap<u64, import::HostRange>,
}

/// An allocation's bytes, taken out of the state while an op writes them.
enum Taken {
    Owned(Vec<u32>),
    #[cfg(feature = "host-import")]
    Imported(import::HostRange),
}

impl Taken {
    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Taken::Owned(v) => bytes_of_mut(v),
            #[cfg(feature = "host-import")]
            Taken::Imported(r) => r.bytes_mut(),
        }
    }
}

/// An uninitialised backend capped at half of physical memory; reads no environment
/// variable (that is [`FastCpuBackend::from_env`]).
impl Default for FastCpuBackend {
    fn default() -> Self {
        Self::with_memory_limit(backend_api::env::host_memory_limit())
    }
}

impl FastCpuBackend {
    /// [`FastCpuBackend::from_env`]: the usual constructor.
    pub fn new() -> Self {
        Self::from_env()
    }

    /// An uninitialised backend whose allocations may total at most the value of
    /// `CPU_BACKEND_MEMORY_LIMIT` (bytes) or, without it, half of physical memory.
    ///
    /// A value that is not a byte count is refused: [`init`](backend_api::ComputeBackend::init) returns
    /// the `InvalidArgument` that names it.
    pub fn from_env() -> Self {
        match backend_api::env::cpu_memory_limit() {
            Ok(limit) => Self::with_memory_limit(limit),
            Err(e) => Self {
                config_error: Some(e),
                ..Self::default()
            },
        }
    }

    /// An uninitialised backend whose live allocations may total at most `bytes`.
    pub fn with_memory_limit(bytes: u64) -> Self {
        Self {
            state: None,
            memory_limit: bytes,
            config_error: None,
        }
    }

    /// The cap on live allocated bytes.
    pub fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    /// Runs `f` with `memory` lent to the backend as one allocation, whose base address
    /// `f` receives: every op reads and writes those bytes where they lie, with no copy
    /// (`memory_info().staged_bytes` stays 0). This is how a Wasm guest's linear memory,
    /// a memory-mapped file or a framework's own buffer becomes device memory.
    ///
    /// The allocation leaves the address space when `f` returns or unwinds (aliases of it
    /// are then stale, its address is never reused); meanwhile it cannot be freed or
    /// mapped with `map_host` (`InvalidArgument`). `memory` must be 4-byte aligned, as
    /// every allocation is (`InvalidArgument` otherwise); its bytes count as allocated
    /// while lent, but not against the memory limit.
    ///
    /// ```
    /// use backend_api::{BinaryOp, ComputeBackend};
    /// let mut b = backend_fast_cpu::FastCpuBackend::new();
    /// b.init()?;
    /// let mut words = [1.0f32, 2.0, 10.0, 20.0, 0.0, 0.0];
    /// b.with_host_memory(bytemuck::cast_slice_mut(&mut words), |base| {
    ///     b.binary(BinaryOp::Add, base, base + 8, base + 16, 2)
    /// })??;
    /// assert_eq!(words[4..], [11.0, 22.0]);
    /// # Ok::<(), backend_api::BackendError>(())
    /// ```
    #[cfg(feature = "host-import")]
    pub fn with_host_memory<R>(
        &self,
        memory: &mut [u8],
        f: impl FnOnce(u64) -> R,
    ) -> BackendResult<R> {
        /// Ends the import however `f` ends: after this, nothing holds the pointer.
        struct Import<'b> {
            backend: &'b FastCpuBackend,
            base: u64,
        }
        impl Drop for Import<'_> {
            fn drop(&mut self) {
                // `state()` fails only before `init`, which cannot have been undone while
                // `&self` is borrowed; `remove` cannot refuse (no view of it exists).
                if let Ok(mut s) = self.backend.state() {
                    s.imports.remove(&self.base);
                    let _ = s.space.remove(self.base);
                }
            }
        }
        let range = import::HostRange::new(memory)?;
        let base = {
            let mut s = self.state()?;
            let base = s.space.insert(range.len() as u64, Vec::new())?;
            s.imports.insert(base, range);
            base
        };
        let import = Import {
            backend: self,
            base,
        };
        let result = f(base);
        drop(import);
        Ok(result)
    }

    fn state(&self) -> BackendResult<MutexGuard<'_, State>> {
        let m = self.state.as_ref().ok_or(BackendError::NotInitialized)?;
        // Every state change happens after all checks, and an op that panics puts its
        // output buffer back (`State::with`): keep serving rather than poisoning.
        Ok(m.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Where a resolved operand lies: allocation base, byte offset, byte length.
#[derive(Debug, Clone, Copy)]
struct Place {
    base: u64,
    offset: usize,
    bytes: usize,
}

/// The bytes of an input operand: borrowed from its allocation, or copied (when it lies in
/// the allocation being written).
enum Input<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u32>, usize),
}

impl Input<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Input::Borrowed(b) => b,
            Input::Owned(v, len) => &bytemuck::cast_slice(v)[..*len],
        }
    }

    fn f32s(&self) -> &[f32] {
        bytemuck::cast_slice(self.bytes())
    }
}

/// The inputs of an op, in the order they were asked for; `None` for an untouched operand.
struct Inputs<'a>(Vec<Option<Input<'a>>>);

impl Inputs<'_> {
    fn f32s(&self, i: usize) -> &[f32] {
        self.0[i].as_ref().map_or(&[], Input::f32s)
    }

    fn bytes(&self, i: usize) -> &[u8] {
        self.0[i].as_ref().map_or(&[], Input::bytes)
    }

    /// Input `i` widened to f32 (borrowed when it already is f32).
    fn widened(&self, i: usize, dtype: DType) -> std::borrow::Cow<'_, [f32]> {
        match dtype {
            DType::F32 => std::borrow::Cow::Borrowed(self.f32s(i)),
            _ => std::borrow::Cow::Owned(elementwise::widen(dtype, self.bytes(i))),
        }
    }
}

fn bytes_of(v: &[u32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

fn bytes_of_mut(v: &mut [u32]) -> &mut [u8] {
    bytemuck::cast_slice_mut(v)
}

impl State {
    fn place(&self, op: &str, operand: &Operand) -> BackendResult<Place> {
        let r = self.space.resolve(op, operand)?;
        Ok(Place {
            base: r.base,
            offset: r.offset as usize,
            bytes: r.bytes as usize,
        })
    }

    fn bytes(&self, op: &str, operand: &Operand) -> BackendResult<&[u8]> {
        let r = self.space.resolve(op, operand)?;
        Ok(&self.alloc_bytes(r.base)[r.offset as usize..][..r.bytes as usize])
    }

    /// Runs `f` on the bytes of `output` (writable) and of `inputs` (read-only; `None` for
    /// an untouched operand). Every operand is resolved before anything runs, so a bad one
    /// fails the call with nothing written. An input in the output's allocation (disjoint
    /// from the output unless the op allows exactly in place, which `f` handles) is copied
    /// first.
    fn with<R>(
        &mut self,
        op: &str,
        output: &Operand,
        inputs: &[Option<&Operand>],
        f: impl FnOnce(&mut [u8], &Inputs<'_>) -> R,
    ) -> BackendResult<R> {
        let out = self.place(op, output)?;
        let places = inputs
            .iter()
            .map(|o| o.map(|o| self.place(op, o)).transpose())
            .collect::<BackendResult<Vec<_>>>()?;
        let mut taken = self.take(out.base);
        let result = {
            let this = &*self;
            let whole = taken.bytes_mut();
            let out_end = out.offset + out.bytes;
            // An input overlapping the output (exactly in place) is read from a copy made
            // before anything is written; every other input is borrowed where it lies,
            // those in the output's allocation from the bytes on either side of it.
            let mut copies: Vec<Option<Input<'_>>> = places
                .iter()
                .map(|p| match p {
                    Some(p)
                        if p.base == out.base
                            && p.offset < out_end
                            && out.offset < p.offset + p.bytes =>
                    {
                        let src = &whole[p.offset..][..p.bytes];
                        let mut copy = vec![0u32; p.bytes.div_ceil(4)];
                        bytes_of_mut(&mut copy)[..p.bytes].copy_from_slice(src);
                        Some(Input::Owned(copy, p.bytes))
                    }
                    _ => None,
                })
                .collect();
            let (head, rest) = whole.split_at_mut(out.offset);
            let (dst, tail) = rest.split_at_mut(out.bytes);
            let (head, tail): (&[u8], &[u8]) = (head, tail);
            let ins = Inputs(
                places
                    .iter()
                    .zip(copies.iter_mut())
                    .map(|(p, copy)| {
                        let p = (*p)?;
                        Some(match copy.take() {
                            Some(owned) => owned,
                            None if p.base != out.base => {
                                Input::Borrowed(&this.alloc_bytes(p.base)[p.offset..][..p.bytes])
                            }
                            None if p.offset < out.offset => {
                                Input::Borrowed(&head[p.offset..][..p.bytes])
                            }
                            None => Input::Borrowed(&tail[p.offset - out_end..][..p.bytes]),
                        })
                    })
                    .collect(),
            );
            catch_unwind(AssertUnwindSafe(|| f(dst, &ins)))
        };
        self.put_back(out.base, taken);
        match result {
            Ok(r) => Ok(r),
            Err(panic) => resume_unwind(panic),
        }
    }

    /// The bytes of the allocation at `base` out of the state, for an op to write.
    fn take(&mut self, base: u64) -> Taken {
        #[cfg(feature = "host-import")]
        if let Some(range) = self.imports.remove(&base) {
            return Taken::Imported(range);
        }
        let alloc = self.space.get_mut(base).expect("resolved above");
        Taken::Owned(std::mem::take(&mut alloc.handle))
    }

    fn put_back(&mut self, base: u64, taken: Taken) {
        match taken {
            Taken::Owned(v) => self.space.get_mut(base).expect("still there").handle = v,
            #[cfg(feature = "host-import")]
            Taken::Imported(range) => {
                self.imports.insert(base, range);
            }
        }
    }

    /// All the bytes of the live allocation at `base`.
    fn alloc_bytes(&self, base: u64) -> &[u8] {
        #[cfg(feature = "host-import")]
        if let Some(range) = self.imports.get(&base) {
            return range.bytes();
        }
        bytes_of(&self.space.get(base).expect("resolved above").handle)
    }

    /// Bytes lent by `with_host_memory` (counted as allocated, not against the limit).
    fn imported_bytes(&self) -> u64 {
        #[cfg(feature = "host-import")]
        return self.imports.values().map(|r| r.len() as u64).sum();
        #[cfg(not(feature = "host-import"))]
        0
    }

    /// Refuses an allocation that is imported host memory, for calls that need one of
    /// the backend's own.
    fn check_owned(&self, op: &str, base: u64) -> BackendResult<()> {
        #[cfg(feature = "host-import")]
        if let Some(range) = self.imports.get(&base) {
            return Err(BackendError::InvalidArgument(format!(
                "{op}: {} is host memory imported by with_host_memory; it is freed by \
                 nobody and cannot be mapped (its owner holds it already)",
                backend_api::fmt_range(base, range.len() as u64)
            )));
        }
        let _ = (op, base);
        Ok(())
    }

    /// [`State::with`] for an op whose output is f32.
    fn with_f32<R>(
        &mut self,
        op: &str,
        output: &Operand,
        inputs: &[Option<&Operand>],
        f: impl FnOnce(&mut [f32], &Inputs<'_>) -> R,
    ) -> BackendResult<R> {
        self.with(op, output, inputs, |dst, ins| {
            f(bytemuck::cast_slice_mut(dst), ins)
        })
    }
}

impl Executor for FastCpuBackend {
    fn backend_name(&self) -> &str {
        "fast-cpu"
    }

    fn run_init(&mut self) -> BackendResult<()> {
        if let Some(e) = &self.config_error {
            return Err(e.clone());
        }
        if self.state.is_none() {
            self.state = Some(Mutex::new(State::default()));
        }
        Ok(())
    }

    fn initialized(&self) -> bool {
        self.state.is_some()
    }

    fn run_gemm(&self, p: &GemmPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        s.with_f32(p.op, &p.c, &[p.a.as_ref(), p.b.as_ref()], |c, ins| {
            let a = ins.widened(0, p.a_dtype);
            let b = ins.widened(1, p.b_dtype);
            gemm::batched(p, &a, &b, c);
        })
    }

    fn run_conv2d_forward(&self, p: &Conv2dPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        s.with_f32(
            p.op,
            &p.output,
            &[p.input.as_ref(), p.filter.as_ref(), p.bias.as_ref()],
            |out, ins| conv::conv2d(p, ins.f32s(0), ins.f32s(1), ins.f32s(2), out),
        )
    }

    fn run_attention(&self, p: &AttentionPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        s.with_f32(
            p.op,
            &p.o,
            &[p.q.as_ref(), p.k.as_ref(), p.v.as_ref(), p.mask.as_ref()],
            |o, ins| {
                let operands = attention::Operands {
                    q: ins.f32s(0),
                    k: ins.f32s(1),
                    v: ins.f32s(2),
                    mask: ins.f32s(3),
                };
                attention::attention(p, &operands, o)
            },
        )
    }

    fn run_reduce(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        let mut s = self.state()?;
        s.with_f32(p.op, &p.output, &[p.input.as_ref()], |out, ins| {
            reduce::reduce(op, ins.f32s(0), out, p.outer, p.len, p.inner)
        })
    }

    // f16/bf16 storage: widened to f32 (exactly), the f32 op, one rounding at the store.

    fn run_reduce_ex(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        let mut s = self.state()?;
        s.with(p.op, &p.output, &[p.input.as_ref()], |dst, ins| {
            let mut out = vec![0.0f32; p.outer * p.inner];
            reduce::reduce(
                op,
                &ins.widened(0, p.dtype),
                &mut out,
                p.outer,
                p.len,
                p.inner,
            );
            elementwise::cast(DType::F32, bytemuck::cast_slice(&out), p.dtype, dst);
        })
    }

    fn run_unary_ex(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        s.with(p.op, &p.output, &[Some(&p.input)], |dst, ins| {
            let mut y = vec![0.0f32; p.n];
            elementwise::unary(op, &ins.widened(0, p.dtype), &mut y);
            elementwise::cast(DType::F32, bytemuck::cast_slice(&y), p.dtype, dst);
        })
    }

    fn run_binary_ex(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        s.with(p.op, &p.output, &[Some(&p.a), Some(&p.b)], |dst, ins| {
            let mut y = vec![0.0f32; p.n];
            let (a, b) = (ins.widened(0, p.dtype), ins.widened(1, p.dtype));
            elementwise::binary(op, &a, &b, &mut y);
            elementwise::cast(DType::F32, bytemuck::cast_slice(&y), p.dtype, dst);
        })
    }

    fn run_rows(&self, p: &RowPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        // In place, x is in y's allocation and so is read from a copy (`State::with`).
        s.with_f32(
            p.op,
            &p.y,
            &[Some(&p.x), p.gamma.as_ref(), p.beta.as_ref()],
            |y, ins| {
                rows::rows(
                    p.kind,
                    ins.f32s(0),
                    ins.f32s(1),
                    ins.f32s(2),
                    y,
                    p.cols,
                    p.eps,
                )
            },
        )
    }

    fn run_rows_ex(&self, p: &RowPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        // In place, x is in y's allocation and so is read from a copy (`State::with`).
        s.with(
            p.op,
            &p.y,
            &[Some(&p.x), p.gamma.as_ref(), p.beta.as_ref()],
            |dst, ins| {
                let mut y = vec![0.0f32; p.rows * p.cols];
                rows::rows(
                    p.kind,
                    &ins.widened(0, p.dtype),
                    &ins.widened(1, p.dtype),
                    &ins.widened(2, p.dtype),
                    &mut y,
                    p.cols,
                    p.eps,
                );
                elementwise::cast(DType::F32, bytemuck::cast_slice(&y), p.dtype, dst);
            },
        )
    }

    fn run_unary(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        if p.in_place() {
            s.with_f32(p.op, &p.output, &[], |y, _| {
                elementwise::unary_in_place(op, y)
            })
        } else {
            s.with_f32(p.op, &p.output, &[Some(&p.input)], |y, ins| {
                elementwise::unary(op, ins.f32s(0), y)
            })
        }
    }

    fn run_unary_param(
        &self,
        op: UnaryParamOp,
        a: f32,
        b: f32,
        p: &UnaryPlan,
    ) -> BackendResult<()> {
        let mut s = self.state()?;
        if p.in_place() {
            s.with_f32(p.op, &p.output, &[], |y, _| {
                elementwise::unary_param_in_place(op, a, b, y)
            })
        } else {
            s.with_f32(p.op, &p.output, &[Some(&p.input)], |y, ins| {
                elementwise::unary_param(op, a, b, ins.f32s(0), y)
            })
        }
    }

    fn run_binary(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let (a_is_out, b_is_out) = (p.a == p.output, p.b == p.output);
        let a = (!a_is_out).then_some(&p.a);
        let b = (!b_is_out).then_some(&p.b);
        s.with_f32(p.op, &p.output, &[a, b], |y, ins| {
            match (a_is_out, b_is_out) {
                (true, true) => elementwise::binary_same(op, y),
                (true, false) => elementwise::binary_into_a(op, y, ins.f32s(1)),
                (false, true) => elementwise::binary_into_b(op, ins.f32s(0), y),
                (false, false) => elementwise::binary(op, ins.f32s(0), ins.f32s(1), y),
            }
        })
    }

    fn run_gemm_q(&self, p: &GemmQPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        s.with_f32(p.op, &p.c, &[p.a.as_ref(), p.b.as_ref()], |c, ins| {
            let b = ins.widened(1, p.b_dtype);
            quant::gemm_q(p, ins.bytes(0), &b, c)
        })
    }

    fn run_binary_broadcast(&self, op: BinaryOp, p: &BroadcastPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let (a_is_out, b_is_out) = (p.a == p.output, p.b == p.output);
        let a = (!a_is_out).then_some(&p.a);
        let b = (!b_is_out).then_some(&p.b);
        s.with_f32(p.op, &p.output, &[a, b], |y, ins| {
            let a = (!a_is_out).then(|| ins.f32s(0));
            let b = (!b_is_out).then(|| ins.f32s(1));
            broadcast::binary_broadcast(op, p, a, b, y)
        })
    }

    fn run_gather(&self, p: &GatherPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        s.with_f32(
            p.op,
            &p.output,
            &[p.table.as_ref(), Some(&p.indices)],
            |y, ins| broadcast::gather(p, ins.f32s(0), ins.bytes(1), y),
        )
    }

    /// f16/bf16 rows copied as bytes: exact, no widening of the table.
    fn run_gather_ex(&self, p: &GatherPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        s.with(
            p.op,
            &p.output,
            &[p.table.as_ref(), Some(&p.indices)],
            |y, ins| broadcast::gather_bytes(p, ins.bytes(0), ins.bytes(1), y),
        )
    }

    fn run_synchronize(&self) -> BackendResult<()> {
        self.state().map(drop)
    }

    fn run_alloc(&self, bytes: usize) -> BackendResult<u64> {
        let mut s = self.state()?;
        let bytes64 = bytes as u64;
        let own = s.space.allocated_bytes() - s.imported_bytes();
        backend_api::env::check_cpu_limit(bytes64, own, self.memory_limit)?;
        let words = bytes.div_ceil(4);
        let mut mem = Vec::new();
        mem.try_reserve_exact(words)
            .map_err(|_| backend_api::env::host_refused(bytes64))?;
        mem.resize(words, 0u32);
        s.space.insert(bytes64, mem)
    }

    fn run_free(&self, ptr: u64) -> BackendResult<()> {
        let mut s = self.state()?;
        s.check_owned("free", ptr)?;
        s.space.remove(ptr).map(drop)
    }

    fn run_alias(&self, ptr: u64, bytes: usize) -> BackendResult<u64> {
        self.state()?.space.alias(ptr, bytes as u64)
    }

    fn run_retire(&self, alias: u64, why: Retired) -> BackendResult<()> {
        self.state()?.space.retire(alias, why)
    }

    fn physical(&self, op: &'static str, operands: Vec<&mut Operand>) -> BackendResult<bool> {
        self.state()?.space.rewrite_physical(op, operands)
    }

    fn run_copy_htod(&self, p: &HostCopyPlan, src: &[u8]) -> BackendResult<()> {
        self.state()?
            .with(p.op, &p.device, &[], |dst, _| dst.copy_from_slice(src))
    }

    fn run_copy_dtoh(&self, dst: &mut [u8], p: &HostCopyPlan) -> BackendResult<()> {
        dst.copy_from_slice(self.state()?.bytes(p.op, &p.device)?);
        Ok(())
    }

    fn run_copy_dtoh_many(&self, reads: &mut [(HostCopyPlan, &mut [u8])]) -> BackendResult<()> {
        // One lock for all of them; every source resolved before any destination is
        // written, so the call is all or nothing.
        let s = self.state()?;
        let sources = reads
            .iter()
            .map(|(p, _)| s.bytes(p.op, &p.device))
            .collect::<BackendResult<Vec<_>>>()?;
        for ((_, dst), src) in reads.iter_mut().zip(sources) {
            dst.copy_from_slice(src);
        }
        Ok(())
    }

    fn run_copy_dtod(&self, p: &CopyPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        if p.identical() {
            // Still range-checked.
            s.place(p.op, &p.src)?;
            return s.place(p.op, &p.dst).map(drop);
        }
        s.with(p.op, &p.dst, &[Some(&p.src)], |dst, ins| {
            dst.copy_from_slice(ins.bytes(0))
        })
    }

    fn run_cast(&self, p: &CastPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        if p.identical() {
            s.place(p.op, &p.src)?;
            return s.place(p.op, &p.dst).map(drop);
        }
        s.with(p.op, &p.dst, &[Some(&p.src)], |dst, ins| {
            elementwise::cast(p.src_dtype, ins.bytes(0), p.dst_dtype, dst)
        })
    }

    /// The allocation itself, lent whole: its memory leaves the address space while the
    /// view lives, so every call touching any byte of it is refused until the view ends.
    fn run_map_host(&self, p: &HostCopyPlan, mode: MapMode) -> BackendResult<HostView<'_>> {
        let mut s = self.state()?;
        let base = s.place(p.op, &p.device)?.base;
        s.check_owned(p.op, base)?;
        LentVec::lend(&mut s.space, p.op, &p.device, mode, move |lent, buf| {
            lent.give_back(&mut self.state()?.space, buf);
            Ok(())
        })
    }

    fn zero_copy_views(&self) -> bool {
        true
    }

    fn run_memory_info(&self) -> BackendResult<MemoryInfo> {
        let s = self.state()?;
        let allocated = s.space.allocated_bytes();
        Ok(MemoryInfo {
            allocated_bytes: allocated,
            reserved_bytes: allocated,
            live_allocations: s.space.len() as u64,
            // Device memory is host memory: copies go straight to the allocation.
            staged_bytes: 0,
        })
    }
}
