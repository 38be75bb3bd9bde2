//! f16/bf16 storage through a backend's f32 kernels: every input widened (exactly) into
//! an f32 temporary with `run_cast`, the f32 op on the temporaries, the output rounded
//! once on its way back. The arithmetic is the f32 op's and the one rounding is the
//! cast's, which is what the contract asks of f16/bf16 storage; the cost is the casts'
//! traffic and an f32 copy of every operand alive for the call. These are the
//! [`Executor`] hooks' default bodies, so a backend gets every op on every storage type
//! from its f32 kernels and `run_cast`, and overrides a hook where a kernel of its own
//! pays.
//!
//! The temporaries come from `run_alloc` (so they count against a memory limit) and are
//! freed when the call ends, error or not. Output elements are written only where the
//! op writes: an output whose rows leave gaps (a strided attention O) is rounded back
//! row by row, never over the bytes between its rows.

use crate::executor::Executor;
use crate::validate::{
    AttentionPlan, BroadcastPlan, CastPlan, Conv2dPlan, GatherPlan, GemmPlan, UnaryPlan,
};
use crate::{BackendResult, BinaryOp, DType, Operand, UnaryParamOp};

/// The f32 temporaries of one call, freed on drop.
struct Temps<'e, E: Executor + ?Sized> {
    e: &'e E,
    op: &'static str,
    dtype: DType,
    ptrs: Vec<u64>,
}

impl<'e, E: Executor + ?Sized> Temps<'e, E> {
    fn new(e: &'e E, op: &'static str, dtype: DType) -> Self {
        Self {
            e,
            op,
            dtype,
            ptrs: Vec::new(),
        }
    }

    /// Elements of `dtype` in `o`.
    fn elems(&self, o: &Operand) -> u64 {
        o.bytes / self.dtype.size_bytes() as u64
    }

    /// An uninitialised f32 temporary with as many elements as `o`.
    fn scratch(&mut self, o: &Operand) -> BackendResult<Operand> {
        let bytes = self.elems(o) * 4;
        let ptr = self
            .e
            .run_alloc(usize::try_from(bytes).unwrap_or(usize::MAX))?;
        self.ptrs.push(ptr);
        Ok(Operand {
            name: o.name,
            ptr,
            bytes,
        })
    }

    fn cast(
        &self,
        src: &Operand,
        src_dtype: DType,
        dst: &Operand,
        dst_dtype: DType,
    ) -> BackendResult<()> {
        self.e.run_cast(&CastPlan {
            op: self.op,
            n: (dst.bytes / dst_dtype.size_bytes() as u64) as usize,
            src_dtype,
            dst_dtype,
            src: *src,
            dst: *dst,
        })
    }

    /// `o` widened into a new f32 temporary.
    fn widen(&mut self, o: &Operand) -> BackendResult<Operand> {
        let t = self.scratch(o)?;
        self.cast(o, self.dtype, &t, DType::F32)?;
        Ok(t)
    }

    fn widen_opt(&mut self, o: Option<&Operand>) -> BackendResult<Option<Operand>> {
        o.map(|o| self.widen(o)).transpose()
    }

    /// The f32 temporary `t` rounded into `dst` (as many elements).
    fn narrow(&self, t: &Operand, dst: &Operand) -> BackendResult<()> {
        self.cast(t, DType::F32, dst, self.dtype)
    }
}

impl<E: Executor + ?Sized> Drop for Temps<'_, E> {
    fn drop(&mut self) {
        for &p in &self.ptrs {
            // A free fails only for a device error, which the call reports already.
            let _ = self.e.run_free(p);
        }
    }
}

/// `attention_ex` on f16/bf16 Q, K, V and O: each widened with its strides kept (so a KV
/// cache's span is widened whole), O written to an f32 temporary of O's span and rounded
/// back in one cast when O's rows fill their span (the `[b, h, s, d]` and `[b, s, h, d]`
/// layouts), else row by row.
pub fn attention<E: Executor + ?Sized>(e: &E, p: &AttentionPlan) -> BackendResult<()> {
    let mut t = Temps::new(e, p.op, p.dtype);
    let mut f = *p;
    f.dtype = DType::F32;
    f.q = t.widen_opt(p.q.as_ref())?;
    f.k = t.widen_opt(p.k.as_ref())?;
    f.v = t.widen_opt(p.v.as_ref())?;
    f.o = t.scratch(&p.o)?;
    e.run_attention(&f)?;
    let dv = p.v_head_dim;
    let rows = p.batch * p.heads * p.seq_q;
    if t.elems(&p.o) == (rows * dv) as u64 {
        return t.narrow(&f.o, &p.o);
    }
    let size = p.dtype.size_bytes() as u64;
    for row in 0..rows {
        let (bh, i) = (row / p.seq_q, row % p.seq_q);
        let at = AttentionPlan::at(p.o_strides, bh / p.heads, bh % p.heads, i) as u64;
        let part = |o: &Operand, s: u64| Operand {
            name: o.name,
            ptr: o.ptr + at * s,
            bytes: dv as u64 * s,
        };
        t.narrow(&part(&f.o, 4), &part(&p.o, size))?;
    }
    Ok(())
}

/// `conv2d_forward_ex` on f16/bf16 operands.
pub fn conv2d<E: Executor + ?Sized>(e: &E, p: &Conv2dPlan) -> BackendResult<()> {
    let mut t = Temps::new(e, p.op, p.dtype);
    let mut f = *p;
    f.dtype = DType::F32;
    f.input = t.widen_opt(p.input.as_ref())?;
    f.filter = t.widen_opt(p.filter.as_ref())?;
    f.bias = t.widen_opt(p.bias.as_ref())?;
    f.output = t.scratch(&p.output)?;
    e.run_conv2d_forward(&f)?;
    t.narrow(&f.output, &p.output)
}

/// `binary_broadcast_ex` on f16/bf16 operands (in place included: the output is
/// rounded back after the f32 op has read both inputs).
pub fn binary_broadcast<E: Executor + ?Sized>(
    e: &E,
    op: BinaryOp,
    p: &BroadcastPlan,
) -> BackendResult<()> {
    let mut t = Temps::new(e, p.op, p.dtype);
    let mut f = *p;
    f.dtype = DType::F32;
    f.a = t.widen(&p.a)?;
    f.b = if p.b.same_range(&p.a) {
        f.a
    } else {
        t.widen(&p.b)?
    };
    f.output = t.scratch(&p.output)?;
    e.run_binary_broadcast(op, &f)?;
    t.narrow(&f.output, &p.output)
}

/// `gather_ex` on an f16/bf16 table: the whole table widened (a backend whose gather
/// copies bits should override this; its cost is the table's size, not the output's).
pub fn gather<E: Executor + ?Sized>(e: &E, p: &GatherPlan) -> BackendResult<()> {
    let mut t = Temps::new(e, p.op, p.dtype);
    let mut f = *p;
    f.dtype = DType::F32;
    f.table = t.widen_opt(p.table.as_ref())?;
    f.output = t.scratch(&p.output)?;
    e.run_gather(&f)?;
    t.narrow(&f.output, &p.output)
}

/// `unary_param_ex` on f16/bf16 elements.
pub fn unary_param<E: Executor + ?Sized>(
    e: &E,
    op: UnaryParamOp,
    a: f32,
    b: f32,
    p: &UnaryPlan,
) -> BackendResult<()> {
    let mut t = Temps::new(e, p.op, p.dtype);
    let mut f = *p;
    f.dtype = DType::F32;
    f.input = t.widen(&p.input)?;
    // In place on the temporary: the f32 op allows it.
    f.output = f.input;
    e.run_unary_param(op, a, b, &f)?;
    t.narrow(&f.output, &p.output)
}

/// `batched_gemm_ex` with an f16/bf16 C: C widened (only when `beta != 0`: else the f32
/// gemm never reads it) into an f32 temporary of C's span with C's own `ldc` and stride,
/// the f32-output gemm (A and B in their own types, as `gemm_ex` reads them), then C's
/// elements rounded back: in one cast when they fill their span (`ldc == m`, batches
/// adjacent), else column by column, so the rows below `m` and the gaps between batches
/// keep their bytes.
pub fn gemm<E: Executor + ?Sized>(e: &E, p: &GemmPlan) -> BackendResult<()> {
    let mut t = Temps::new(e, p.op, p.c_dtype);
    let mut f = *p;
    f.c_dtype = DType::F32;
    f.c = if p.reads_c() {
        t.widen(&p.c)?
    } else {
        t.scratch(&p.c)?
    };
    e.run_gemm(&f)?;
    let count = p.batch.count;
    if p.ldc == p.m && (count == 1 || p.batch.stride_c == p.m * p.n) {
        return t.narrow(&f.c, &p.c);
    }
    let size = p.c_dtype.size_bytes() as u64;
    for i in 0..count {
        for j in 0..p.n {
            let at = (i * p.batch.stride_c + j * p.ldc) as u64;
            let part = |o: &Operand, s: u64| Operand {
                name: o.name,
                ptr: o.ptr + at * s,
                bytes: p.m as u64 * s,
            };
            t.narrow(&part(&f.c, 4), &part(&p.c, size))?;
        }
    }
    Ok(())
}
