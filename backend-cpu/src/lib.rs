//! `CpuBackend`: the reference implementation of [`ComputeBackend`], and the oracle every
//! other backend is held to.
//!
//! Device memory is host memory (one `Vec<u8>` per allocation) behind the shared
//! [`AddressSpace`]; every op validates with [`backend_api::validate`], reads its inputs,
//! runs the plain f64-accumulating loops of [`reference`](mod@reference) and writes its output, all under
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

use backend_api::validate::{self, GemmArgs, GemmPlan};
use backend_api::{
    AddressSpace, BackendError, BackendResult, BackendTranspose, BinaryOp, ComputeBackend, DType,
    MemoryInfo, Operand, ReduceOp, UnaryOp,
};

/// Environment variable that caps the bytes a [`CpuBackend::new`] backend may allocate.
pub const MEMORY_LIMIT_ENV: &str = "CPU_BACKEND_MEMORY_LIMIT";

/// The CPU backend. See the [crate documentation](crate).
#[derive(Debug)]
pub struct CpuBackend {
    state: Option<Mutex<State>>,
    memory_limit: u64,
}

#[derive(Debug, Default)]
struct State {
    space: AddressSpace<Vec<u8>>,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// Half of physical memory where it can be read, else 4 GiB: allocating until refusal must
/// end in `OutOfMemory`, not in the kernel's OOM killer.
fn default_memory_limit() -> u64 {
    if let Some(v) = std::env::var(MEMORY_LIMIT_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return v;
    }
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    total_kib.map_or(4 << 30, |kib| kib * 1024 / 2)
}

impl CpuBackend {
    /// An uninitialised backend whose allocations may total at most the value of
    /// `CPU_BACKEND_MEMORY_LIMIT` (bytes) or, without it, half of physical memory.
    pub fn new() -> Self {
        Self::with_memory_limit(default_memory_limit())
    }

    /// An uninitialised backend whose live allocations may total at most `bytes`.
    pub fn with_memory_limit(bytes: u64) -> Self {
        Self {
            state: None,
            memory_limit: bytes,
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

    fn run_gemm(&self, op: &'static str, args: &GemmArgs) -> BackendResult<()> {
        let mut s = self.state()?;
        let Some(plan) = validate::gemm(op, args)? else {
            return Ok(());
        };
        let a = s.read(op, plan.a.as_ref(), plan.a_dtype)?;
        let b = s.read(op, plan.b.as_ref(), plan.b_dtype)?;
        let mut c = s.read(op, Some(&plan.c), DType::F32)?;
        gemm_batches(&plan, &a, &b, &mut c);
        s.write(op, &plan.c, &c)
    }
}

fn gemm_batches(p: &GemmPlan, a: &[f32], b: &[f32], c: &mut [f32]) {
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

impl ComputeBackend for CpuBackend {
    fn name(&self) -> &str {
        "cpu"
    }

    fn init(&mut self) -> BackendResult<()> {
        if self.state.is_none() {
            self.state = Some(Mutex::new(State::default()));
        }
        Ok(())
    }

    fn is_initialized(&self) -> bool {
        self.state.is_some()
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
        let args = GemmArgs::new(
            trans_a, trans_b, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c_ptr, ldc,
        );
        self.run_gemm("gemm", &args)
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
        let args = GemmArgs::new(
            trans_a, trans_b, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c_ptr, ldc,
        )
        .with_batch(stride_a, stride_b, stride_c, batch_count);
        self.run_gemm("batched_gemm", &args)
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
        let args = GemmArgs::new(
            trans_a, trans_b, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c_ptr, ldc,
        )
        .with_dtypes(a_dtype, b_dtype);
        self.run_gemm("gemm_ex", &args)
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
        const OP: &str = "conv2d_forward";
        let mut s = self.state()?;
        let Some(p) = validate::conv2d(
            input_ptr,
            input_shape,
            filter_ptr,
            filter_shape,
            output_ptr,
            output_shape,
            stride,
            padding,
        )?
        else {
            return Ok(());
        };
        let input = s.read(OP, p.input.as_ref(), DType::F32)?;
        let filter = s.read(OP, p.filter.as_ref(), DType::F32)?;
        s.check(OP, &p.output)?;
        let mut out = vec![0.0f32; p.n * p.k * p.oh * p.ow];
        if p.c > 0 && p.h > 0 && p.w > 0 {
            reference::conv2d(
                &input,
                [p.n, p.c, p.h, p.w],
                &filter,
                [p.k, p.c, p.r, p.s],
                &mut out,
                [p.stride_h, p.stride_w],
                [p.pad_h, p.pad_w],
            );
        }
        s.write(OP, &p.output, &out)
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
        const OP: &str = "attention";
        let mut s = self.state()?;
        let Some(p) = validate::attention(
            q_ptr, k_ptr, v_ptr, o_ptr, batch, heads, seq_q, seq_kv, head_dim, scale, causal,
        )?
        else {
            return Ok(());
        };
        let q = s.read(OP, Some(&p.q), DType::F32)?;
        let k = s.read(OP, p.k.as_ref(), DType::F32)?;
        let v = s.read(OP, p.v.as_ref(), DType::F32)?;
        s.check(OP, &p.o)?;
        let mut o = vec![0.0f32; q.len()];
        reference::attention(
            &q, &k, &v, &mut o, batch, heads, seq_q, seq_kv, head_dim, scale, causal,
        );
        s.write(OP, &p.o, &o)
    }

    fn reduce(
        &self,
        op: ReduceOp,
        input_ptr: u64,
        output_ptr: u64,
        shape: &[usize],
        axis: usize,
    ) -> BackendResult<()> {
        const OP: &str = "reduce";
        let mut s = self.state()?;
        let Some(p) = validate::reduce(input_ptr, output_ptr, shape, axis)? else {
            return Ok(());
        };
        let input = s.read(OP, p.input.as_ref(), DType::F32)?;
        s.check(OP, &p.output)?;
        let mut out = vec![0.0f32; p.outer * p.inner];
        reference::reduce(op, &input, &mut out, p.outer, p.len, p.inner);
        s.write(OP, &p.output, &out)
    }

    fn unary(&self, op: UnaryOp, input_ptr: u64, output_ptr: u64, n: usize) -> BackendResult<()> {
        const OP: &str = "unary";
        let mut s = self.state()?;
        let Some(p) = validate::unary(input_ptr, output_ptr, n)? else {
            return Ok(());
        };
        let x = s.read(OP, Some(&p.input), DType::F32)?;
        s.check(OP, &p.output)?;
        let y: Vec<f32> = x.iter().map(|&v| reference::unary(op, v)).collect();
        s.write(OP, &p.output, &y)
    }

    fn binary(
        &self,
        op: BinaryOp,
        a_ptr: u64,
        b_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        const OP: &str = "binary";
        let mut s = self.state()?;
        let Some(p) = validate::binary(a_ptr, b_ptr, output_ptr, n)? else {
            return Ok(());
        };
        let a = s.read(OP, Some(&p.a), DType::F32)?;
        let b = s.read(OP, Some(&p.b), DType::F32)?;
        s.check(OP, &p.output)?;
        let y: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| reference::binary(op, x, y))
            .collect();
        s.write(OP, &p.output, &y)
    }

    fn synchronize(&self) -> BackendResult<()> {
        self.state().map(drop)
    }

    fn alloc(&self, bytes: usize) -> BackendResult<u64> {
        let mut s = self.state()?;
        let bytes64 = bytes as u64;
        if bytes64 > self.memory_limit.saturating_sub(s.space.allocated_bytes()) {
            return Err(BackendError::OutOfMemory);
        }
        let mut mem = Vec::new();
        mem.try_reserve_exact(bytes)
            .map_err(|_| BackendError::OutOfMemory)?;
        mem.resize(bytes, 0);
        s.space.insert(bytes64, mem)
    }

    fn free(&self, ptr: u64) -> BackendResult<()> {
        self.state()?.space.remove(ptr).map(drop)
    }

    fn copy_htod(&self, dst: u64, src: &[u8]) -> BackendResult<()> {
        let mut s = self.state()?;
        match validate::host_copy("copy_htod", "dst", dst, src.len())? {
            Some(d) => s.write_bytes("copy_htod", &d, src),
            None => Ok(()),
        }
    }

    fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> BackendResult<()> {
        let s = self.state()?;
        if let Some(o) = validate::host_copy("copy_dtoh", "src", src, dst.len())? {
            dst.copy_from_slice(s.bytes("copy_dtoh", &o)?);
        }
        Ok(())
    }

    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> BackendResult<()> {
        const OP: &str = "copy_dtod";
        let mut s = self.state()?;
        let Some(p) = validate::copy_dtod(dst, src, bytes)? else {
            return Ok(());
        };
        let data = s.bytes(OP, &p.src)?.to_vec();
        s.check(OP, &p.dst)?;
        if p.identical() {
            return Ok(());
        }
        s.write_bytes(OP, &p.dst, &data)
    }

    fn cast(
        &self,
        src: u64,
        src_dtype: DType,
        dst: u64,
        dst_dtype: DType,
        n: usize,
    ) -> BackendResult<()> {
        const OP: &str = "cast";
        let mut s = self.state()?;
        let Some(p) = validate::cast(src, src_dtype, dst, dst_dtype, n)? else {
            return Ok(());
        };
        let values = s.read(OP, Some(&p.src), src_dtype)?;
        s.check(OP, &p.dst)?;
        if p.identical() {
            return Ok(());
        }
        s.write_bytes(OP, &p.dst, &reference::encode(dst_dtype, &values))
    }

    fn memory_info(&self) -> BackendResult<MemoryInfo> {
        let s = self.state()?;
        let allocated = s.space.allocated_bytes();
        Ok(MemoryInfo {
            allocated_bytes: allocated,
            reserved_bytes: allocated,
            live_allocations: s.space.len() as u64,
        })
    }
}
