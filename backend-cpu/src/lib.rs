//! `CpuBackend`: the reference implementation of [`ComputeBackend`](backend_api::ComputeBackend), and the oracle every
//! other backend is held to.
//!
//! Device memory is host memory (one `Vec<u8>` per allocation) behind the shared
//! [`AddressSpace`]. It implements [`Executor`], so every call reaches it validated by
//! `backend_api`'s layer; each op reads its inputs, runs the plain f64-accumulating loops of [`reference`](mod@reference) and writes its output, all under
//! one lock, so each call is atomic and the stream is trivially in order. Work is split
//! over `std::thread::scope` when it is large enough to pay for the threads.
//!
//! ```
//! use backend_api::{ComputeBackend, ComputeBackendExt, UnaryOp};
//! let mut cpu = backend_cpu::CpuBackend::new();
//! cpu.init()?;
//! let x = cpu.upload(&[-1.0f32, 4.0])?;
//! cpu.unary(UnaryOp::Relu, x, x, 2)?;
//! assert_eq!(cpu.copy_dtoh_vec::<f32>(x, 2)?, [0.0, 4.0]);
//! # Ok::<(), backend_api::BackendError>(())
//! ```

mod parallel;
pub mod reference;

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

/// Environment variable that caps the bytes a [`CpuBackend::from_env`] (and so
/// [`CpuBackend::new`]) backend may allocate.
pub const MEMORY_LIMIT_ENV: &str = backend_api::env::CPU_MEMORY_LIMIT;

/// The CPU backend. See the [crate documentation](crate).
#[derive(Debug)]
pub struct CpuBackend {
    state: Option<Mutex<State>>,
    memory_limit: u64,
    /// A bad `CPU_BACKEND_MEMORY_LIMIT` seen by `from_env`: `init` returns it.
    config_error: Option<BackendError>,
}

#[derive(Debug, Default)]
struct State {
    space: AddressSpace<Vec<u8>>,
}

/// An uninitialised backend capped at half of physical memory; reads no environment
/// variable (that is [`CpuBackend::from_env`]).
impl Default for CpuBackend {
    fn default() -> Self {
        Self::with_memory_limit(backend_api::env::host_memory_limit())
    }
}

impl CpuBackend {
    /// [`CpuBackend::from_env`]: the usual constructor.
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

    /// This backend with the limit of `CPU_BACKEND_MEMORY_LIMIT` where it is set (a bad
    /// value is refused by `init`, as in [`from_env`](Self::from_env)).
    pub fn with_env(mut self) -> Self {
        match backend_api::env::parse(MEMORY_LIMIT_ENV) {
            Ok(Some(limit)) => self.memory_limit = limit,
            Ok(None) => {}
            Err(e) => self.config_error = Some(e),
        }
        self
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

    fn state(&self) -> BackendResult<MutexGuard<'_, State>> {
        let m = self.state.as_ref().ok_or(BackendError::NotInitialized)?;
        // A panic inside an op cannot leave memory half-validated: state changes happen
        // after all checks. Keep serving rather than poisoning every later call.
        Ok(m.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn gemm_batches<T: reference::Out>(p: &GemmPlan, a: &[f32], b: &[f32], c: &mut [T]) {
    for i in 0..p.batch.count {
        let a = if p.reads_ab() {
            &a[i * p.batch.stride_a..]
        } else {
            a
        };
        let b = if p.reads_ab() {
            &b[i * p.batch.stride_b..]
        } else {
            b
        };
        let c = &mut c[i * p.batch.stride_c..];
        reference::gemm(
            p.trans_a, p.trans_b, p.m, p.n, p.k, p.alpha, a, p.lda, b, p.ldb, p.beta, c, p.ldc,
        );
    }
}

/// The oracle's description of a plan's geometry.
fn conv_geometry(p: &Conv2dPlan) -> reference::Conv {
    reference::Conv {
        out_hw: [p.oh, p.ow],
        stride: [p.stride_h, p.stride_w],
        top_left: [p.pad_h, p.pad_w],
        dilation: [p.dil_h, p.dil_w],
        groups: p.groups,
    }
}

impl State {
    fn bytes(&self, op: &str, operand: &Operand) -> BackendResult<&[u8]> {
        let r = self.space.resolve(op, operand)?;
        Ok(&r.handle[r.offset as usize..][..r.bytes as usize])
    }

    /// Reads an operand as f32 (decoding f16/bf16); an untouched operand reads as empty.
    fn read(&self, op: &str, operand: Option<&Operand>, dtype: DType) -> BackendResult<Vec<f32>> {
        match operand {
            Some(o) => Ok(reference::decode(dtype, self.bytes(op, o)?)),
            None => Ok(Vec::new()),
        }
    }

    /// Checks that `operand` can be written, without writing.
    fn check(&self, op: &str, operand: &Operand) -> BackendResult<()> {
        self.space.resolve(op, operand).map(drop)
    }

    fn write_bytes(&mut self, op: &str, operand: &Operand, data: &[u8]) -> BackendResult<()> {
        let r = self.space.resolve(op, operand)?;
        let (base, offset) = (r.base, r.offset as usize);
        let alloc = self.space.get_mut(base).expect("resolved above");
        alloc.handle[offset..][..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn write(&mut self, op: &str, operand: &Operand, values: &[f32]) -> BackendResult<()> {
        self.write_bytes(op, operand, &reference::encode(DType::F32, values))
    }
}

impl Executor for CpuBackend {
    fn backend_name(&self) -> &str {
        "cpu"
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
        let a = s.read(p.op, p.a.as_ref(), p.a_dtype)?;
        let b = s.read(p.op, p.b.as_ref(), p.b_dtype)?;
        let mut c = s.read(p.op, Some(&p.c), DType::F32)?;
        gemm_batches(p, &a, &b, &mut c);
        s.write(p.op, &p.c, &c)
    }

    fn run_conv2d_forward(&self, p: &Conv2dPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let input = s.read(p.op, p.input.as_ref(), DType::F32)?;
        let filter = s.read(p.op, p.filter.as_ref(), DType::F32)?;
        let bias = s.read(p.op, p.bias.as_ref(), DType::F32)?;
        s.check(p.op, &p.output)?;
        let mut out = vec![0.0f32; p.n * p.k * p.oh * p.ow];
        // An empty input reads nothing: every output is its channel's bias (or 0).
        reference::conv2d_ex(
            &input,
            [p.n, p.c, p.h, p.w],
            &filter,
            [p.k, p.group_channels(), p.r, p.s],
            &bias,
            &mut out,
            conv_geometry(p),
        );
        s.write(p.op, &p.output, &out)
    }

    fn run_attention(&self, p: &AttentionPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let q = s.read(p.op, p.q.as_ref(), DType::F32)?;
        let k = s.read(p.op, p.k.as_ref(), DType::F32)?;
        let v = s.read(p.op, p.v.as_ref(), DType::F32)?;
        let mask = s.read(p.op, p.mask.as_ref(), DType::F32)?;
        // O may be strided: the elements between its rows keep their values.
        let mut o = s.read(p.op, Some(&p.o), DType::F32)?;
        reference::attention(p, &q, &k, &v, &mask, &mut o);
        s.write(p.op, &p.o, &o)
    }

    fn run_reduce(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let input = s.read(p.op, p.input.as_ref(), DType::F32)?;
        s.check(p.op, &p.output)?;
        let mut out = vec![0.0f32; p.outer * p.inner];
        reference::reduce(op, &input, &mut out, p.outer, p.len, p.inner);
        s.write(p.op, &p.output, &out)
    }

    fn run_reduce_ex(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let input = s.read(p.op, p.input.as_ref(), p.dtype)?;
        s.check(p.op, &p.output)?;
        let mut out = vec![0.0f64; p.outer * p.inner];
        reference::reduce64(op, &input, &mut out, p.outer, p.len, p.inner);
        s.write_bytes(p.op, &p.output, &reference::encode64(p.dtype, &out))
    }

    fn run_unary_ex(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let x = s.read(p.op, Some(&p.input), p.dtype)?;
        s.check(p.op, &p.output)?;
        let y: Vec<f64> = x
            .iter()
            .map(|&v| reference::unary64(op, f64::from(v)))
            .collect();
        s.write_bytes(p.op, &p.output, &reference::encode64(p.dtype, &y))
    }

    fn run_binary_ex(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let a = s.read(p.op, Some(&p.a), p.dtype)?;
        let b = s.read(p.op, Some(&p.b), p.dtype)?;
        s.check(p.op, &p.output)?;
        let y: Vec<f64> = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| reference::binary64(op, f64::from(x), f64::from(y)))
            .collect();
        s.write_bytes(p.op, &p.output, &reference::encode64(p.dtype, &y))
    }

    fn run_rows(&self, p: &RowPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let x = s.read(p.op, Some(&p.x), DType::F32)?;
        let gamma = s.read(p.op, p.gamma.as_ref(), DType::F32)?;
        let beta = s.read(p.op, p.beta.as_ref(), DType::F32)?;
        s.check(p.op, &p.y)?;
        let mut y = vec![0.0f32; p.rows * p.cols];
        reference::rows(p.kind, &x, &gamma, &beta, &mut y, p.cols, p.eps);
        s.write(p.op, &p.y, &y)
    }

    fn run_rows_ex(&self, p: &RowPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let x = s.read(p.op, Some(&p.x), p.dtype)?;
        let gamma = s.read(p.op, p.gamma.as_ref(), p.dtype)?;
        let beta = s.read(p.op, p.beta.as_ref(), p.dtype)?;
        s.check(p.op, &p.y)?;
        let mut y = vec![0.0f64; p.rows * p.cols];
        reference::rows64(p.kind, &x, &gamma, &beta, &mut y, p.cols, p.eps);
        s.write_bytes(p.op, &p.y, &reference::encode64(p.dtype, &y))
    }

    fn run_unary(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let x = s.read(p.op, Some(&p.input), DType::F32)?;
        s.check(p.op, &p.output)?;
        let y: Vec<f32> = x.iter().map(|&v| reference::unary(op, v)).collect();
        s.write(p.op, &p.output, &y)
    }

    fn run_unary_param(
        &self,
        op: UnaryParamOp,
        a: f32,
        b: f32,
        p: &UnaryPlan,
    ) -> BackendResult<()> {
        let mut s = self.state()?;
        let x = s.read(p.op, Some(&p.input), DType::F32)?;
        s.check(p.op, &p.output)?;
        let y: Vec<f32> = x
            .iter()
            .map(|&v| reference::unary_param(op, a, b, v))
            .collect();
        s.write(p.op, &p.output, &y)
    }

    fn run_binary(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let a = s.read(p.op, Some(&p.a), DType::F32)?;
        let b = s.read(p.op, Some(&p.b), DType::F32)?;
        s.check(p.op, &p.output)?;
        let y: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| reference::binary(op, x, y))
            .collect();
        s.write(p.op, &p.output, &y)
    }

    fn run_gemm_q(&self, p: &GemmQPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let a = match &p.a {
            Some(o) => s.bytes(p.op, o)?.to_vec(),
            None => Vec::new(),
        };
        let b = s.read(p.op, p.b.as_ref(), p.b_dtype)?;
        let mut c = s.read(p.op, Some(&p.c), DType::F32)?;
        reference::gemm_q(
            p.format, p.m, p.n, p.k, p.alpha, &a, &b, p.ldb, p.beta, &mut c, p.ldc,
        );
        s.write(p.op, &p.c, &c)
    }

    fn run_binary_broadcast(&self, op: BinaryOp, p: &BroadcastPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let a = s.read(p.op, Some(&p.a), DType::F32)?;
        let b = s.read(p.op, Some(&p.b), DType::F32)?;
        s.check(p.op, &p.output)?;
        let y: Vec<f32> = (0..p.n)
            .map(|i| {
                let (ia, ib) = p.sources(i);
                reference::binary(op, a[ia], b[ib])
            })
            .collect();
        s.write(p.op, &p.output, &y)
    }

    fn run_gather(&self, p: &GatherPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let table = s.read(p.op, p.table.as_ref(), DType::F32)?;
        let indices: Vec<u32> = s
            .bytes(p.op, &p.indices)?
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
            .collect();
        s.check(p.op, &p.output)?;
        let mut out = vec![0.0f32; p.n * p.cols];
        reference::gather(&table, p.rows, p.cols, &indices, &mut out);
        s.write(p.op, &p.output, &out)
    }

    /// C in f16/bf16: the product in f64 from C's stored values, each of C's elements
    /// rounded once; the bytes between C's columns and batches are left as they are.
    fn run_gemm_ex(&self, p: &GemmPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let a = s.read(p.op, p.a.as_ref(), p.a_dtype)?;
        let b = s.read(p.op, p.b.as_ref(), p.b_dtype)?;
        let mut bytes = s.bytes(p.op, &p.c)?.to_vec();
        let mut c: Vec<f64> = reference::decode(p.c_dtype, &bytes)
            .into_iter()
            .map(f64::from)
            .collect();
        gemm_batches(p, &a, &b, &mut c);
        let size = p.c_dtype.size_bytes();
        for i in 0..p.batch.count {
            for j in 0..p.n {
                let at = i * p.batch.stride_c + j * p.ldc;
                let col = reference::encode64(p.c_dtype, &c[at..at + p.m]);
                bytes[at * size..][..p.m * size].copy_from_slice(&col);
            }
        }
        s.write_bytes(p.op, &p.c, &bytes)
    }

    fn run_attention_ex(&self, p: &AttentionPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let q = s.read(p.op, p.q.as_ref(), p.dtype)?;
        let k = s.read(p.op, p.k.as_ref(), p.dtype)?;
        let v = s.read(p.op, p.v.as_ref(), p.dtype)?;
        let mask = s.read(p.op, p.mask.as_ref(), DType::F32)?;
        // O may be strided: only its rows' bytes change.
        let mut o = s.bytes(p.op, &p.o)?.to_vec();
        let dv = p.v_head_dim;
        let size = p.dtype.size_bytes();
        let rows = reference::attention64(p, &q, &k, &v, &mask);
        for (row, values) in rows.chunks(dv.max(1)).enumerate() {
            let (bh, i) = (row / p.seq_q, row % p.seq_q);
            let at = AttentionPlan::at(p.o_strides, bh / p.heads, bh % p.heads, i);
            o[at * size..][..dv * size].copy_from_slice(&reference::encode64(p.dtype, values));
        }
        s.write_bytes(p.op, &p.o, &o)
    }

    fn run_conv2d_ex(&self, p: &Conv2dPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let input = s.read(p.op, p.input.as_ref(), p.dtype)?;
        let filter = s.read(p.op, p.filter.as_ref(), p.dtype)?;
        let bias = s.read(p.op, p.bias.as_ref(), p.dtype)?;
        s.check(p.op, &p.output)?;
        let mut out = vec![0.0f64; p.n * p.k * p.oh * p.ow];
        reference::conv2d_ex64(
            &input,
            [p.n, p.c, p.h, p.w],
            &filter,
            [p.k, p.group_channels(), p.r, p.s],
            &bias,
            &mut out,
            conv_geometry(p),
        );
        s.write_bytes(p.op, &p.output, &reference::encode64(p.dtype, &out))
    }

    fn run_binary_broadcast_ex(&self, op: BinaryOp, p: &BroadcastPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let a = s.read(p.op, Some(&p.a), p.dtype)?;
        let b = s.read(p.op, Some(&p.b), p.dtype)?;
        s.check(p.op, &p.output)?;
        let y: Vec<f64> = (0..p.n)
            .map(|i| {
                let (ia, ib) = p.sources(i);
                reference::binary64(op, f64::from(a[ia]), f64::from(b[ib]))
            })
            .collect();
        s.write_bytes(p.op, &p.output, &reference::encode64(p.dtype, &y))
    }

    /// Rows copied as bytes: exact, NaN payloads included.
    fn run_gather_ex(&self, p: &GatherPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let table = match &p.table {
            Some(t) => s.bytes(p.op, t)?.to_vec(),
            None => Vec::new(),
        };
        let indices = s.bytes(p.op, &p.indices)?.to_vec();
        s.check(p.op, &p.output)?;
        let row = p.cols * p.dtype.size_bytes();
        let mut out = vec![0u8; p.n * row];
        for (dst, i) in out.chunks_exact_mut(row).zip(indices.chunks_exact(4)) {
            let i = u32::from_le_bytes(i.try_into().expect("4 bytes"));
            if let Ok(i) = usize::try_from(i)
                && i < p.rows
            {
                dst.copy_from_slice(&table[i * row..][..row]);
            }
        }
        s.write_bytes(p.op, &p.output, &out)
    }

    fn run_unary_param_ex(
        &self,
        op: UnaryParamOp,
        a: f32,
        b: f32,
        p: &UnaryPlan,
    ) -> BackendResult<()> {
        let mut s = self.state()?;
        let x = s.read(p.op, Some(&p.input), p.dtype)?;
        s.check(p.op, &p.output)?;
        let y: Vec<f64> = x
            .iter()
            .map(|&v| reference::unary_param64(op, a, b, f64::from(v)))
            .collect();
        s.write_bytes(p.op, &p.output, &reference::encode64(p.dtype, &y))
    }

    fn run_synchronize(&self) -> BackendResult<()> {
        self.state().map(drop)
    }

    fn run_alloc(&self, bytes: usize) -> BackendResult<u64> {
        let mut s = self.state()?;
        let bytes64 = bytes as u64;
        backend_api::env::check_cpu_limit(bytes64, s.space.allocated_bytes(), self.memory_limit)?;
        let mut mem = Vec::new();
        mem.try_reserve_exact(bytes)
            .map_err(|_| backend_api::env::host_refused(bytes64))?;
        mem.resize(bytes, 0);
        s.space.insert(bytes64, mem)
    }

    fn run_free(&self, ptr: u64) -> BackendResult<()> {
        self.state()?.space.remove(ptr).map(drop)
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
        self.state()?.write_bytes(p.op, &p.device, src)
    }

    fn run_copy_dtoh(&self, dst: &mut [u8], p: &HostCopyPlan) -> BackendResult<()> {
        dst.copy_from_slice(self.state()?.bytes(p.op, &p.device)?);
        Ok(())
    }

    fn run_copy_dtod(&self, p: &CopyPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let data = s.bytes(p.op, &p.src)?.to_vec();
        s.check(p.op, &p.dst)?;
        if p.identical() {
            return Ok(());
        }
        s.write_bytes(p.op, &p.dst, &data)
    }

    fn run_cast(&self, p: &CastPlan) -> BackendResult<()> {
        let mut s = self.state()?;
        let values = s.read(p.op, Some(&p.src), p.src_dtype)?;
        s.check(p.op, &p.dst)?;
        if p.identical() {
            return Ok(());
        }
        s.write_bytes(p.op, &p.dst, &reference::encode(p.dst_dtype, &values))
    }

    /// The allocation itself, lent whole: its memory leaves the address space while the
    /// view lives, so every call touching any byte of it is refused until the view ends.
    fn run_map_host(&self, p: &HostCopyPlan, mode: MapMode) -> BackendResult<HostView<'_>> {
        let mut s = self.state()?;
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
