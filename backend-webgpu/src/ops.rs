//! Recording each op: resolve the validated operands to buffer ranges, fill the kernel's
//! parameter block, pick the entry point and grid, dispatch.

use backend_api::validate::{
    AttentionPlan, BinaryPlan, CastPlan, Conv2dPlan, CopyPlan, GemmPlan, HostCopyPlan, ReducePlan,
    UnaryPlan,
};
use backend_api::{BackendError, BackendResult, BinaryOp, DType, Operand, ReduceOp, UnaryOp};
use bytemuck::bytes_of;

use crate::kernels::{Kernel, PipelineKey, op_code, params};
use crate::memory::Block;
use crate::stream::{Bound, Stream};
use crate::{Ctx, State};

/// Saturating conversion for kernel parameters: any value that does not fit is beyond
/// every binding anyway, and `bind` has refused it already.
fn u32s(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn dtype_code(d: DType) -> f64 {
    match d {
        DType::F32 => 0.0,
        DType::F16 => 1.0,
        DType::BF16 => 2.0,
    }
}

/// Workgroups of 256 threads for `n` items.
fn groups_of_256(n: u64) -> u64 {
    n.div_ceil(256)
}

impl State {
    /// Resolves and binds an operand.
    fn bind(&self, op: &str, operand: &Operand) -> BackendResult<Bound> {
        let r = self.space.resolve(op, operand)?;
        self.stream
            .bind(op, operand.name, r.handle, r.offset, r.bytes)
    }

    /// Resolves and binds an operand with the binding's end rounded to 16 bytes, so the
    /// kernel may also view it as vec4s.
    fn bind16(&self, op: &str, operand: &Operand) -> BackendResult<Bound> {
        let r = self.space.resolve(op, operand)?;
        self.stream
            .bind_granule(op, operand.name, r.handle, r.offset, r.bytes, 16)
    }

    /// Binds an operand the op may not touch (`None`: a placeholder).
    fn bind_opt(&self, op: &str, operand: Option<&Operand>) -> BackendResult<Bound> {
        match operand {
            Some(o) => self.bind(op, o),
            None => Ok(self.stream.unused()),
        }
    }
}

/// Columns per tile (64 or 128) for the tiled gemm and the implicit-GEMM convolution, whose
/// tiles are 128 rows tall: 64 when 128 x 128 tiles would leave 64 columns of the last
/// tile column empty (e.g. 64 output channels), or would number fewer than
/// `narrow_below` ([`Tuning::gemm_narrow_below`](crate::Tuning::gemm_narrow_below)) over all batches (at 1024^3 the wide tile gives 64 workgroups, which
/// leaves half of a 132-multiprocessor GPU idle). Measured on the H200 in
/// docs/PERFORMANCE.md.
fn tile_columns(rows: usize, cols: usize, batch: usize, narrow_below: usize) -> usize {
    let wide_tiles = rows.div_ceil(128) * cols.div_ceil(128) * batch;
    if cols.div_ceil(64) % 2 == 1 || wide_tiles < narrow_below {
        64
    } else {
        128
    }
}

/// True when two bindings share bytes of one buffer.
fn overlap(a: &Bound, b: &Bound) -> bool {
    std::sync::Arc::ptr_eq(&a.buffer, &b.buffer)
        && a.offset < b.offset + b.size
        && b.offset < a.offset + a.size
}

/// One binding covering both (same buffer), with each operand's first byte in it.
fn union(a: &Bound, b: &Bound) -> (Bound, u64, u64) {
    let start = a.offset.min(b.offset);
    let end = (a.offset + a.size).max(b.offset + b.size);
    let merged = Bound {
        buffer: a.buffer.clone(),
        offset: start,
        size: end - start,
        byte: 0,
    };
    (merged, a.offset + a.byte - start, b.offset + b.byte - start)
}

impl Ctx {
    fn dispatch(
        &self,
        stream: &mut Stream,
        key: &PipelineKey,
        params: &[u8],
        bindings: &[(u32, &Bound)],
        groups: [u32; 3],
    ) -> BackendResult<()> {
        stream.dispatch(&self.device, &self.queue, key, params, bindings, groups)
    }

    pub(crate) fn gemm(&self, p: &GemmPlan) -> BackendResult<()> {
        let op = p.op;
        let _span =
            tracing::debug_span!("gemm", op, m = p.m, n = p.n, k = p.k, batch = p.batch.count)
                .entered();
        let mut st = self.lock();
        let c = st.bind(op, &p.c)?;
        let mut a = st.bind_opt(op, p.a.as_ref())?;
        let mut b = st.bind_opt(op, p.b.as_ref())?;
        let (sa, sb) = (p.a_dtype.size_bytes() as u64, p.b_dtype.size_bytes() as u64);
        let (mut a_off, mut b_off) = (a.byte / sa, b.byte / sb);
        let b_in_a = p.reads_ab() && overlap(&a, &b);
        if b_in_a {
            let (merged, a_byte, b_byte) = union(&a, &b);
            if merged.size > st.stream.limits.max_binding {
                return Err(BackendError::Unsupported(format!(
                    "{op}: A and B overlap and together span more than max_storage_buffer_binding_size"
                )));
            }
            (a_off, b_off) = (a_byte / sa, b_byte / sb);
            a = merged;
            b = st.stream.unused();
        }
        // The fast kernel: f32, and every operand's contiguous dimension, leading dimension,
        // batch stride and start (within its binding) a multiple of 4 elements / 16 bytes.
        let four = |v: usize| v.is_multiple_of(4);
        let a_contig = if p.trans_a { p.k } else { p.m };
        let b_contig = if p.trans_b { p.n } else { p.k };
        // Four elements of A (and of B) are one 16-byte f32 vector or one 8-byte word pair
        // of f16/bf16; each operand must start on such a boundary within its binding.
        let vec_bytes = |d: DType| 4 * d.size_bytes() as u64;
        let tiled = p.reads_ab()
            && !b_in_a
            && four(p.lda)
            && four(p.ldb)
            && four(a_contig)
            && four(b_contig)
            && four(p.batch.stride_a)
            && four(p.batch.stride_b)
            && four(p.batch.stride_c)
            && a.byte.is_multiple_of(vec_bytes(p.a_dtype))
            && b.byte.is_multiple_of(vec_bytes(p.b_dtype));
        // Matrix units: f16 x f16 in whole 64 x 64 x 16 tiles, 16-byte aligned columns.
        let eight = |v: u64| v.is_multiple_of(8);
        let coop = self.coop
            && p.reads_ab()
            && !b_in_a
            && p.a_dtype == DType::F16
            && p.b_dtype == DType::F16
            && p.m.is_multiple_of(64)
            && p.n.is_multiple_of(64)
            && p.k.is_multiple_of(16)
            && eight(p.lda as u64)
            && eight(p.ldb as u64)
            && eight(p.batch.stride_a as u64)
            && eight(p.batch.stride_b as u64)
            && eight(a_off)
            && eight(b_off);
        let coop_tiled =
            coop && p.m.is_multiple_of(128) && p.n.is_multiple_of(128) && p.k.is_multiple_of(32);
        let (key, tile, bindings) = if coop_tiled {
            // 128 x 128 blocks staged through workgroup memory; A and B read as 16-byte words.
            let key = PipelineKey::new(Kernel::GemmCoop, "tiled")
                .with("TRANS_A", f64::from(u8::from(p.trans_a)))
                .with("TRANS_B", f64::from(u8::from(p.trans_b)));
            let a16 = st.bind16(op, p.a.as_ref().expect("reads_ab"))?;
            let b16 = st.bind16(op, p.b.as_ref().expect("reads_ab"))?;
            (key, (128, 128), vec![(4, a16), (5, b16), (3, c.clone())])
        } else if coop {
            let key = PipelineKey::new(Kernel::GemmCoop, "main")
                .with("TRANS_A", f64::from(u8::from(p.trans_a)))
                .with("TRANS_B", f64::from(u8::from(p.trans_b)));
            (
                key,
                (64, 64),
                vec![(1, a.clone()), (2, b.clone()), (3, c.clone())],
            )
        } else if tiled {
            let c_vec4 = four(p.ldc) && four(p.m) && c.byte % 16 == 0;
            let nb = tile_columns(p.m, p.n, p.batch.count, self.tuning.gemm_narrow_below);
            let key = PipelineKey::new(Kernel::Gemm, "tiled")
                .with("NB", f64::from(nb as u32))
                .with("TRANS_A", f64::from(u8::from(p.trans_a)))
                .with("TRANS_B", f64::from(u8::from(p.trans_b)))
                .with("C_VEC4", f64::from(u8::from(c_vec4)))
                .with("A_TYPE", dtype_code(p.a_dtype))
                .with("B_TYPE", dtype_code(p.b_dtype));
            // Rebind with 16-byte ends: the kernel views A, B and C as vector arrays.
            let rebind = |o: &Operand| -> BackendResult<Bound> {
                let r = st.space.resolve(op, o)?;
                st.stream
                    .bind_granule(op, o.name, r.handle, r.offset, r.bytes, 16)
            };
            let a16 = rebind(p.a.as_ref().expect("reads_ab"))?;
            let b16 = rebind(p.b.as_ref().expect("reads_ab"))?;
            let c16 = rebind(&p.c)?;
            // f32 operands at bindings 4 and 5, 16-bit ones at 7 and 8; the kernel
            // declares both, so the other gets a placeholder. C (written) last.
            let (a_at, a_other) = if p.a_dtype == DType::F32 {
                (4, 7)
            } else {
                (7, 4)
            };
            let (b_at, b_other) = if p.b_dtype == DType::F32 {
                (5, 8)
            } else {
                (8, 5)
            };
            let unused = st.stream.unused();
            (
                key,
                (128, nb),
                vec![
                    (a_at, a16),
                    (b_at, b16),
                    (a_other, unused.clone()),
                    (b_other, unused),
                    (6, c16),
                ],
            )
        } else {
            let key = PipelineKey::new(Kernel::Gemm, "main")
                .with("A_TYPE", dtype_code(p.a_dtype))
                .with("B_TYPE", dtype_code(p.b_dtype))
                .with("B_IN_A", if b_in_a { 1.0 } else { 0.0 });
            (
                key,
                (64, 64),
                vec![(1, a.clone()), (2, b.clone()), (3, c.clone())],
            )
        };
        let max_groups = st.stream.limits.max_groups as usize;
        let gx = p.m.div_ceil(tile.0);
        let gy = p.n.div_ceil(tile.1);
        if gx > max_groups || gy > max_groups {
            return Err(BackendError::Unsupported(format!(
                "{op}: {} x {} is more than this adapter's {max_groups} workgroups of {} x {} per dimension",
                p.m, p.n, tile.0, tile.1
            )));
        }
        let mut base = 0;
        while base < p.batch.count {
            let count = (p.batch.count - base).min(max_groups);
            let prm = params::Gemm {
                m: u32s(p.m),
                n: u32s(p.n),
                k: if p.reads_ab() { u32s(p.k) } else { 0 },
                lda: u32s(p.lda),
                ldb: u32s(p.ldb),
                ldc: u32s(p.ldc),
                a_off: a_off as u32,
                b_off: b_off as u32,
                c_off: c.elem(4),
                stride_a: u32s(p.batch.stride_a),
                stride_b: u32s(p.batch.stride_b),
                stride_c: u32s(p.batch.stride_c),
                trans_a: u32::from(p.trans_a),
                trans_b: u32::from(p.trans_b),
                alpha: p.alpha as f32,
                beta: p.beta as f32,
                batch_base: base as u32,
                _pad: [0; 3],
            };
            let State { stream, .. } = &mut *st;
            let refs: Vec<(u32, &Bound)> = bindings.iter().map(|(i, b)| (*i, b)).collect();
            self.dispatch(
                stream,
                &key,
                bytes_of(&prm),
                &refs,
                [gx as u32, gy as u32, count as u32],
            )?;
            base += count;
        }
        Ok(())
    }

    pub(crate) fn conv2d(&self, p: &Conv2dPlan) -> BackendResult<()> {
        let _span =
            tracing::debug_span!("conv2d", n = p.n, c = p.c, k = p.k, h = p.h, w = p.w).entered();
        let mut st = self.lock();
        let y = st.bind(p.op, &p.output)?;
        let mut x = st.bind_opt(p.op, p.input.as_ref())?;
        let mut f = st.bind_opt(p.op, p.filter.as_ref())?;
        let empty_input = p.input.is_none() || p.filter.is_none();
        let (mut x_off, mut f_off) = (x.elem(4), f.elem(4));
        let f_in_x = !empty_input && overlap(&x, &f);
        if f_in_x {
            let (merged, x_byte, f_byte) = union(&x, &f);
            (x_off, f_off) = ((x_byte / 4) as u32, (f_byte / 4) as u32);
            x = merged;
            f = st.stream.unused();
        }
        let prm = params::Conv2d {
            n: u32s(p.n),
            c: if empty_input { 0 } else { u32s(p.c) },
            h: u32s(p.h),
            w: u32s(p.w),
            k: u32s(p.k),
            r: u32s(p.r),
            s: u32s(p.s),
            oh: u32s(p.oh),
            ow: u32s(p.ow),
            stride_h: u32s(p.stride_h),
            stride_w: u32s(p.stride_w),
            pad_h: u32s(p.pad_h),
            pad_w: u32s(p.pad_w),
            x_off,
            f_off,
            y_off: y.elem(4),
        };
        let total = (p.n * p.k * p.oh * p.ow) as u64;
        let rows = (p.n * p.oh * p.ow) as u64;
        // The filter viewed as vec4s (binding end rounded to 16 bytes), unless it shares
        // the input's binding.
        let filter16 = match (&p.filter, f_in_x) {
            (Some(fo), false) => Some(st.bind16(p.op, fo)?),
            _ => None,
        };
        let State { stream, .. } = &mut *st;
        let f_in_x = if f_in_x { 1.0 } else { 0.0 };
        // Implicit GEMM pays once there are enough output channels to fill much of its
        // 128-wide tile and enough work to fill the device; small problems go direct.
        let implicit = !empty_input && p.k >= 16 && total >= 4096;
        let (key, grid) = if implicit {
            let nb = tile_columns(rows as usize, p.k, 1, self.tuning.gemm_narrow_below) as u32;
            let gx = rows.div_ceil(128);
            let gy = (p.k as u64).div_ceil(u64::from(nb));
            let max = u64::from(stream.limits.max_groups);
            if gx > max || gy > max {
                return Err(BackendError::Unsupported(format!(
                    "{}: {rows} output positions x {} channels exceed the adapter's grid",
                    p.op, p.k
                )));
            }
            // 16-byte filter loads (binding 4) when every output channel's taps start on a
            // 16-byte boundary (C * R * S a multiple of 4), else scalar ones (binding 2); the
            // kernel declares both, so the other gets a placeholder.
            let vec4 = filter16.filter(|f| f.byte % 16 == 0 && (p.c * p.r * p.s).is_multiple_of(4));
            let placeholder = stream.unused();
            let (f_vec4, scalar, vector) = match &vec4 {
                Some(f16) => (1.0, &placeholder, f16),
                None => (0.0, &f, &placeholder),
            };
            let key = PipelineKey::new(Kernel::Conv2d, "implicit")
                .with("NB", f64::from(nb))
                .with("F_IN_X", f_in_x)
                .with("F_VEC4", f_vec4);
            // The written binding last (Stream::dispatch relies on it).
            let bindings = [(1, &x), (2, scalar), (4, vector), (3, &y)];
            return self.dispatch(
                stream,
                &key,
                bytes_of(&prm),
                &bindings,
                [gx as u32, gy as u32, 1],
            );
        } else {
            let key = PipelineKey::new(Kernel::Conv2d, "main").with("F_IN_X", f_in_x);
            (key, stream.grid(groups_of_256(total))?)
        };
        self.dispatch(
            stream,
            &key,
            bytes_of(&prm),
            &[(1, &x), (2, &f), (3, &y)],
            grid,
        )
    }

    pub(crate) fn attention(&self, p: &AttentionPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!(
            "attention",
            batch = p.batch,
            heads = p.heads,
            seq_q = p.seq_q,
            seq_kv = p.seq_kv,
            head_dim = p.head_dim
        )
        .entered();
        let mut st = self.lock();
        let o = st.bind(p.op, &p.o)?;
        let q = st.bind16(p.op, &p.q)?;
        let k = match &p.k {
            Some(k) => st.bind16(p.op, k)?,
            None => st.stream.unused(),
        };
        let v = match &p.v {
            Some(v) => st.bind16(p.op, v)?,
            None => st.stream.unused(),
        };
        let rows = p.batch * p.heads * p.seq_q;
        let prm = params::Attention {
            rows: u32s(rows),
            seq_q: u32s(p.seq_q),
            seq_kv: if p.k.is_some() { u32s(p.seq_kv) } else { 0 },
            head_dim: u32s(p.head_dim),
            q_off: q.elem(4),
            k_off: k.elem(4),
            v_off: v.elem(4),
            o_off: o.elem(4),
            scale: p.scale as f32,
            causal: u32::from(p.causal),
            _pad: [0; 2],
        };
        let State { stream, .. } = &mut *st;
        // The blocked kernel handles heads up to 128 dims in 64 x 64 blocks, with two
        // stages of workgroup memory where the adapter allows (36 KiB), else one (28 KiB);
        // other heads and small adapters (browsers default to 16 KiB) take the row kernel.
        let dims = if p.head_dim <= 64 { 64 } else { 128 };
        let heads = (p.batch * p.heads) as u64;
        let blocks = (p.seq_q as u64).div_ceil(64);
        let max = u64::from(stream.limits.max_groups);
        let storage = stream.limits.workgroup_storage;
        let stages = if storage >= 36 << 10 { 2 } else { 1 };
        let blocked = p.head_dim <= 128
            && storage >= 28 << 10
            && stream.limits.max_invocations >= 256
            && heads <= max
            && blocks <= max
            && p.k.is_some();
        let (key, grid) = if blocked {
            // 16-byte loads when rows are whole vec4s and every operand starts on a
            // 16-byte boundary; the kernel declares both views, so the other set gets
            // placeholders. O (written) last.
            let vec = p.head_dim.is_multiple_of(4) && [&q, &k, &v].iter().all(|b| b.byte % 16 == 0);
            let key = PipelineKey::new(Kernel::Attention, "fast")
                .with("D", dims as f64)
                .with("STAGES", stages as f64)
                .with("VEC_LOADS", if vec { 1.0 } else { 0.0 });
            let unused = stream.unused();
            let (s1, s2, s3, v1, v2, v3) = if vec {
                (&unused, &unused, &unused, &q, &k, &v)
            } else {
                (&q, &k, &v, &unused, &unused, &unused)
            };
            let bindings = [
                (1, s1),
                (2, s2),
                (3, s3),
                (5, v1),
                (6, v2),
                (7, v3),
                (4, &o),
            ];
            return self.dispatch(
                stream,
                &key,
                bytes_of(&prm),
                &bindings,
                [blocks as u32, heads as u32, 1],
            );
        } else {
            (
                PipelineKey::new(Kernel::Attention, "main"),
                stream.grid(rows as u64)?,
            )
        };
        self.dispatch(
            stream,
            &key,
            bytes_of(&prm),
            &[(1, &q), (2, &k), (3, &v), (4, &o)],
            grid,
        )
    }

    pub(crate) fn reduce(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        let _span = tracing::debug_span!(
            "reduce",
            op = op.name(),
            outer = p.outer,
            len = p.len,
            inner = p.inner
        )
        .entered();
        let mut st = self.lock();
        let y = st.bind16(p.op, &p.output)?;
        let x = match &p.input {
            Some(i) => st.bind16(p.op, i)?,
            None => st.stream.unused(),
        };
        let prm = params::Reduce {
            outer: u32s(p.outer),
            len: if p.input.is_some() { u32s(p.len) } else { 0 },
            inner: u32s(p.inner),
            x_off: x.elem(4),
            y_off: y.elem(4),
            _pad: [0; 3],
        };
        let code = f64::from(op_code(ReduceOp::ALL, op));
        let outputs = (p.outer * p.inner) as u64;
        let State { stream, .. } = &mut *st;
        let key = PipelineKey::new(Kernel::Reduce, "").with("OP", code);
        if p.inner == 1 && p.len > 64 {
            // Long contiguous rows: a workgroup per row, 16-byte loads when rows are aligned.
            let grid = stream.grid(p.outer as u64)?;
            if x.byte % 16 == 0 && p.len.is_multiple_of(4) {
                let key = PipelineKey {
                    entry: "rows4",
                    ..key
                };
                return self.dispatch(stream, &key, bytes_of(&prm), &[(3, &x), (2, &y)], grid);
            }
            let key = PipelineKey {
                entry: "rows",
                ..key
            };
            return self.dispatch(stream, &key, bytes_of(&prm), &[(1, &x), (2, &y)], grid);
        }
        // Four adjacent outputs per thread with 16-byte accesses where rows of the inner
        // dimension are whole vec4s.
        if p.inner.is_multiple_of(4) && x.byte % 16 == 0 && y.byte % 16 == 0 {
            let quads = outputs / 4;
            let cols4: u64 = 8;
            let grid = stream.grid(quads.div_ceil(cols4))?;
            let key = PipelineKey {
                entry: "cols4",
                ..key
            }
            .with("COLS4", cols4 as f64);
            return self.dispatch(stream, &key, bytes_of(&prm), &[(3, &x), (4, &y)], grid);
        }
        // Few outputs get more threads each, so long reductions still fill the device.
        let cols: u64 = if outputs >= 8192 { 32 } else { 4 };
        let grid = stream.grid(outputs.div_ceil(cols))?;
        let key = PipelineKey {
            entry: "cols",
            ..key
        }
        .with("COLS", cols as f64);
        self.dispatch(stream, &key, bytes_of(&prm), &[(1, &x), (2, &y)], grid)
    }

    /// Elements per dispatch of an elementwise op: the largest multiple of the binding
    /// alignment that fits one binding.
    fn elementwise_piece(stream: &Stream, elem_bytes: u64) -> usize {
        let align = stream.limits.storage_align.max(4);
        let bytes = (stream.limits.max_binding - align) / align * align;
        (bytes / elem_bytes) as usize
    }

    pub(crate) fn unary(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!("unary", op = op.name(), n = p.n).entered();
        let code = f64::from(op_code(UnaryOp::ALL, op));
        let mut st = self.lock();
        let piece = Self::elementwise_piece(&st.stream, 4);
        // Resolve the whole ranges first, so a bad call records nothing.
        st.bind_range(p.op, &p.input)?;
        st.bind_range(p.op, &p.output)?;
        for start in (0..p.n).step_by(piece) {
            let n = piece.min(p.n - start);
            let x = st.bind16(p.op, &sub(&p.input, start, n, 4))?;
            let y = st.bind16(p.op, &sub(&p.output, start, n, 4))?;
            let prm = params::Unary {
                n: n as u32,
                x_off: x.elem(4),
                y_off: y.elem(4),
                _pad: 0,
            };
            // 16-byte loads and stores when both operands start on a 16-byte boundary.
            let vec4 = x.byte % 16 == 0 && y.byte % 16 == 0;
            let State { stream, .. } = &mut *st;
            let threads = if vec4 { n as u64 / 4 + 1 } else { n as u64 };
            let grid = stream.grid(groups_of_256(threads))?;
            let (entry, bindings): (&'static str, Vec<(u32, &Bound)>) = match (p.in_place(), vec4) {
                (true, true) => ("in_place4", vec![(4, &y)]),
                (true, false) => ("in_place", vec![(2, &y)]),
                (false, true) => ("main4", vec![(3, &x), (4, &y)]),
                (false, false) => ("main", vec![(1, &x), (2, &y)]),
            };
            let key = PipelineKey::new(Kernel::Unary, entry).with("OP", code);
            self.dispatch(stream, &key, bytes_of(&prm), &bindings, grid)?;
        }
        Ok(())
    }

    pub(crate) fn binary(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!("binary", op = op.name(), n = p.n).entered();
        let code = f64::from(op_code(BinaryOp::ALL, op));
        let (out_a, out_b, a_b) = (
            p.output.same_range(&p.a),
            p.output.same_range(&p.b),
            p.a.same_range(&p.b),
        );
        let entry = match (out_a, out_b, a_b) {
            (true, true, _) => "all_same",
            (true, false, _) => "out_is_a",
            (false, true, _) => "out_is_b",
            (false, false, true) => "a_is_b",
            (false, false, false) => "main",
        };
        let mut st = self.lock();
        let piece = Self::elementwise_piece(&st.stream, 4);
        for o in [&p.a, &p.b, &p.output] {
            st.bind_range(p.op, o)?;
        }
        for start in (0..p.n).step_by(piece) {
            let n = piece.min(p.n - start);
            let a = st.bind16(p.op, &sub(&p.a, start, n, 4))?;
            let b = st.bind16(p.op, &sub(&p.b, start, n, 4))?;
            let out = st.bind16(p.op, &sub(&p.output, start, n, 4))?;
            let vec4 = a.byte % 16 == 0 && b.byte % 16 == 0 && out.byte % 16 == 0;
            let prm = params::Binary {
                n: n as u32,
                a_off: a.elem(4),
                b_off: b.elem(4),
                out_off: out.elem(4),
                zero: 0,
                _pad: [0; 3],
            };
            // Aliased operands are read through the binding they share (see binary.wgsl);
            // the vec4 entries use bindings 5-7.
            let (ia, ib, io) = if vec4 { (5, 6, 7) } else { (1, 2, 3) };
            let bindings: Vec<(u32, &Bound)> = match entry {
                "all_same" => vec![(io, &out)],
                "out_is_a" => vec![(ib, &b), (io, &out)],
                "out_is_b" => vec![(ia, &a), (io, &out)],
                "a_is_b" => vec![(ia, &a), (io, &out)],
                _ => vec![(ia, &a), (ib, &b), (io, &out)],
            };
            let name: &'static str = if vec4 {
                match entry {
                    "all_same" => "all_same4",
                    "out_is_a" => "out_is_a4",
                    "out_is_b" => "out_is_b4",
                    "a_is_b" => "a_is_b4",
                    _ => "main4",
                }
            } else {
                entry
            };
            let key = PipelineKey::new(Kernel::Binary, name).with("OP", code);
            let State { stream, .. } = &mut *st;
            let threads = if vec4 { n as u64 / 4 + 1 } else { n as u64 };
            let grid = stream.grid(groups_of_256(threads))?;
            self.dispatch(stream, &key, bytes_of(&prm), &bindings, grid)?;
        }
        Ok(())
    }

    pub(crate) fn cast(&self, p: &CastPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!(
            "cast",
            src = p.src_dtype.name(),
            dst = p.dst_dtype.name(),
            n = p.n
        )
        .entered();
        let mut st = self.lock();
        st.bind_range(p.op, &p.src)?;
        st.bind_range(p.op, &p.dst)?;
        if p.identical() {
            return Ok(());
        }
        let (ss, ds) = (p.src_dtype.size_bytes(), p.dst_dtype.size_bytes());
        let piece = Self::elementwise_piece(&st.stream, 4) & !1;
        let key = PipelineKey::new(Kernel::Cast, "main")
            .with("SRC", dtype_code(p.src_dtype))
            .with("DST", dtype_code(p.dst_dtype));
        for start in (0..p.n).step_by(piece) {
            let n = piece.min(p.n - start);
            let src = st.bind(p.op, &sub(&p.src, start, n, ss))?;
            let dst = st.bind(p.op, &sub(&p.dst, start, n, ds))?;
            let dst_off = dst.elem(ds as u64);
            let words = if p.dst_dtype == DType::F32 {
                n as u32
            } else {
                (dst_off + n as u32).div_ceil(2) - dst_off / 2
            };
            let prm = params::Cast {
                n: n as u32,
                src_off: src.elem(ss as u64),
                dst_off,
                words,
            };
            let State { stream, .. } = &mut *st;
            let grid = stream.grid(groups_of_256(u64::from(words)))?;
            self.dispatch(stream, &key, bytes_of(&prm), &[(1, &src), (2, &dst)], grid)?;
        }
        Ok(())
    }

    pub(crate) fn copy_dtod(&self, p: &CopyPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!("copy_dtod", bytes = p.src.bytes).entered();
        let mut st = self.lock();
        let (src_block, src_off) = st.block(p.op, &p.src)?;
        let (dst_block, dst_off) = st.block(p.op, &p.dst)?;
        if p.identical() {
            return Ok(());
        }
        let (sa, da, len) = (
            src_block.offset + src_off,
            dst_block.offset + dst_off,
            p.src.bytes,
        );
        let same_buffer = std::sync::Arc::ptr_eq(&src_block.buffer, &dst_block.buffer);
        if !same_buffer && sa.is_multiple_of(4) && da.is_multiple_of(4) && len.is_multiple_of(4) {
            st.stream.copy(
                &self.device,
                &self.queue,
                &src_block.buffer,
                sa,
                &dst_block.buffer,
                da,
                len,
            );
            return Ok(());
        }
        let piece = Self::elementwise_piece(&st.stream, 1) as u64;
        let mut done = 0;
        while done < len {
            let n = piece.min(len - done);
            let src = st.stream.bind(p.op, "src", &src_block, src_off + done, n)?;
            let dst = st.stream.bind(p.op, "dst", &dst_block, dst_off + done, n)?;
            if overlap(&src, &dst) {
                let (merged, s_byte, d_byte) = union(&src, &dst);
                let placeholder = st.stream.unused();
                self.byte_copy(
                    &mut st.stream,
                    "within",
                    &placeholder,
                    s_byte,
                    &merged,
                    d_byte,
                    n,
                )?;
            } else {
                self.byte_copy(&mut st.stream, "main", &src, src.byte, &dst, dst.byte, n)?;
            }
            done += n;
        }
        Ok(())
    }

    /// Dispatches the byte-copy kernel: `bytes` bytes from `src_byte` of `src` to
    /// `dst_byte` of `dst` (offsets from the start of each binding).
    fn byte_copy(
        &self,
        stream: &mut Stream,
        entry: &'static str,
        src: &Bound,
        src_byte: u64,
        dst: &Bound,
        dst_byte: u64,
        bytes: u64,
    ) -> BackendResult<()> {
        let first_word = dst_byte / 4;
        let words = (dst_byte + bytes).div_ceil(4) - first_word;
        let prm = params::Copy {
            src_off: src_byte as u32,
            dst_off: dst_byte as u32,
            bytes: bytes as u32,
            first_word: first_word as u32,
            words: words as u32,
            _pad: [0; 3],
        };
        let grid = stream.grid(groups_of_256(words))?;
        stream.dispatch(
            &self.device,
            &self.queue,
            &PipelineKey::new(Kernel::Copy, entry),
            bytes_of(&prm),
            &[(1, src), (2, dst)],
            grid,
        )
    }

    pub(crate) fn copy_htod(&self, plan: &HostCopyPlan, data: &[u8]) -> BackendResult<()> {
        const OP: &str = "copy_htod";
        let operand = plan.device;
        let _span = tracing::debug_span!("copy_htod", bytes = data.len()).entered();
        let mut st = self.lock();
        let (block, off) = st.block(OP, &operand)?;
        let abs = block.offset + off;
        let aligned = abs.is_multiple_of(4) && data.len().is_multiple_of(4);
        #[cfg(not(target_arch = "wasm32"))]
        if aligned && self.mappable && st.stream.is_empty() {
            // Unified memory with nothing recorded that this write could overtake.
            return write_mapped(self, &mut st.stream, &block, abs, data);
        }
        if aligned {
            let mut in_flight = std::collections::VecDeque::new();
            for (i, chunk) in data
                .chunks(crate::stream::UPLOAD_CHUNK as usize)
                .enumerate()
            {
                let at = abs + (i as u64) * crate::stream::UPLOAD_CHUNK;
                st.stream
                    .upload(&self.device, &self.queue, &block.buffer, at, chunk);
                if data.len() as u64 > crate::stream::UPLOAD_CHUNK {
                    // Start this chunk's transfer now; keep at most four in flight so
                    // the staging belt recycles its chunks instead of growing.
                    in_flight.push_back(st.stream.flush(&self.queue));
                    if in_flight.len() > 4 {
                        let oldest = in_flight.pop_front().expect("non-empty");
                        self.wait(oldest)?;
                    }
                }
            }
            return Ok(());
        }
        let piece = st.stream.upload_capacity() as usize;
        let mut done = 0;
        while done < data.len() {
            let chunk = &data[done..(done + piece).min(data.len())];
            let staged = st
                .stream
                .stage(&self.queue, chunk)
                .expect("chunk fits the upload arena");
            let target_abs = abs + done as u64;
            if target_abs.is_multiple_of(4) && chunk.len().is_multiple_of(4) {
                st.stream.copy(
                    &self.device,
                    &self.queue,
                    &staged.buffer,
                    staged.offset,
                    &block.buffer,
                    target_abs,
                    chunk.len() as u64,
                );
            } else {
                let dst =
                    st.stream
                        .bind(OP, "dst", &block, off + done as u64, chunk.len() as u64)?;
                self.byte_copy(
                    &mut st.stream,
                    "main",
                    &staged,
                    0,
                    &dst,
                    dst.byte,
                    chunk.len() as u64,
                )?;
            }
            done += chunk.len();
        }
        Ok(())
    }
}

/// Bytes `[start, start + n)` elements of an operand, as an operand.
fn sub(o: &Operand, start: usize, n: usize, elem_bytes: usize) -> Operand {
    Operand {
        name: o.name,
        ptr: o.ptr + (start * elem_bytes) as u64,
        bytes: (n * elem_bytes) as u64,
    }
}

impl State {
    /// Resolves a whole operand (checking its range) without binding it.
    fn bind_range(&self, op: &str, operand: &Operand) -> BackendResult<()> {
        self.space.resolve(op, operand).map(drop)
    }

    /// The block an operand lies in and the operand's offset in it.
    fn block(&self, op: &str, operand: &Operand) -> BackendResult<(Block, u64)> {
        let r = self.space.resolve(op, operand)?;
        Ok((r.handle.clone(), r.offset))
    }
}

/// A mapped (or map-pending) buffer range, unmapped on every exit path: a buffer left
/// mapped would fail every later submission that uses it.
#[cfg(not(target_arch = "wasm32"))]
struct Mapping<'a> {
    buffer: &'a wgpu::Buffer,
    armed: bool,
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.buffer.unmap();
        }
    }
}

/// Maps `range` of `buffer` once submission `index` is done, blocking (native).
#[cfg(not(target_arch = "wasm32"))]
fn map_blocking<'a>(
    ctx: &Ctx,
    buffer: &'a wgpu::Buffer,
    range: std::ops::Range<u64>,
    mode: wgpu::MapMode,
    index: wgpu::SubmissionIndex,
) -> BackendResult<Mapping<'a>> {
    let (tx, rx) = std::sync::mpsc::channel();
    buffer.slice(range).map_async(mode, move |r| {
        let _ = tx.send(r);
    });
    let mut mapping = Mapping {
        buffer,
        armed: true,
    };
    ctx.wait_idle(index)?;
    // The callback runs inside the poll; if it has not, poll until it does (bounded, so
    // a driver that never answers cannot hang the caller).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let result = loop {
        match rx.try_recv() {
            Ok(r) => break r,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                mapping.armed = false;
                return Err(BackendError::DeviceError(
                    "the device dropped a mapping".into(),
                ));
            }
            Err(std::sync::mpsc::TryRecvError::Empty) if std::time::Instant::now() > deadline => {
                return Err(BackendError::DeviceError(
                    "mapping device memory timed out".into(),
                ));
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                ctx.device
                    .poll(wgpu::PollType::Poll)
                    .map_err(|e| BackendError::DeviceError(format!("polling the device: {e}")))?;
                std::thread::yield_now();
            }
        }
    };
    match result {
        Ok(()) => Ok(mapping),
        Err(e) => {
            mapping.armed = false;
            // A failed map usually follows a failed submission: report that cause.
            ctx.errors.take()?;
            Err(BackendError::DeviceError(format!(
                "mapping device memory failed: {e}"
            )))
        }
    }
}

/// Reads device memory by mapping it (unified-memory adapters): one copy, no staging.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_mapped(
    ctx: &Ctx,
    stream: &mut Stream,
    block: &Block,
    offset: u64,
    dst: &mut [u8],
) -> BackendResult<()> {
    let index = stream.flush(&ctx.queue);
    let abs = block.offset + offset;
    let (start, end) = (abs / 8 * 8, (abs + dst.len() as u64).div_ceil(4) * 4);
    let _mapping = map_blocking(ctx, &block.buffer, start..end, wgpu::MapMode::Read, index)?;
    {
        let view = block
            .buffer
            .slice(start..end)
            .get_mapped_range()
            .map_err(crate::mapping_failed)?;
        dst.copy_from_slice(&view[(abs - start) as usize..][..dst.len()]);
    }
    drop(_mapping);
    ctx.errors.take()
}

/// Reads a large range in chunks through a ring of staging buffers: the device copies
/// chunk i + 3 while the host copies chunk i out (native).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_pipelined(
    ctx: &Ctx,
    stream: &mut Stream,
    block: &Block,
    offset: u64,
    dst: &mut [u8],
) -> BackendResult<()> {
    use crate::READBACK_CHUNK as CHUNK;
    const RING: usize = 3;
    let abs = block.offset + offset;
    let total = dst.len() as u64;
    let chunks = total.div_ceil(CHUNK) as usize;
    let staging: Vec<_> = (0..RING.min(chunks))
        .map(|_| stream.take_staging(&ctx.device, CHUNK + 8))
        .collect();
    type Pending = (
        wgpu::SubmissionIndex,
        u64,
        u64,
        std::sync::mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
    );
    let start = |stream: &mut Stream, i: usize, buf: &wgpu::Buffer| -> Pending {
        let from = abs + i as u64 * CHUNK;
        let len = CHUNK.min(total - i as u64 * CHUNK);
        let (s0, s1) = (from / 4 * 4, (from + len).div_ceil(4) * 4);
        stream.copy(&ctx.device, &ctx.queue, &block.buffer, s0, buf, 0, s1 - s0);
        let index = stream.flush(&ctx.queue);
        let (tx, rx) = std::sync::mpsc::channel();
        buf.slice(..s1 - s0)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        (index, from - s0, s1 - s0, rx)
    };
    let mut pending: Vec<Option<Pending>> = (0..staging.len())
        .map(|i| Some(start(stream, i, &staging[i])))
        .collect();
    let mut result = Ok(());
    for i in 0..chunks {
        let slot = i % RING;
        let (index, skip, len, rx) = pending[slot].take().expect("started");
        ctx.wait_idle(index)?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                result = Err(BackendError::DeviceError(format!(
                    "mapping a readback buffer failed: {e}"
                )));
                break;
            }
            Err(_) => {
                result = Err(BackendError::DeviceError(
                    "the device dropped a readback".into(),
                ));
                break;
            }
        }
        {
            let view = staging[slot]
                .slice(..len)
                .get_mapped_range()
                .map_err(crate::mapping_failed)?;
            let at = i * CHUNK as usize;
            let n = (CHUNK as usize).min(dst.len() - at);
            crate::copy_out(&mut dst[at..at + n], &view[skip as usize..][..n]);
        }
        staging[slot].unmap();
        if i + RING < chunks {
            pending[slot] = Some(start(stream, i + RING, &staging[slot]));
        }
    }
    if result.is_ok() {
        for b in staging {
            stream.return_staging(b);
        }
    }
    result
}

/// Writes device memory by mapping it (unified-memory adapters, nothing recorded).
#[cfg(not(target_arch = "wasm32"))]
fn write_mapped(
    ctx: &Ctx,
    stream: &mut Stream,
    block: &Block,
    abs: u64,
    data: &[u8],
) -> BackendResult<()> {
    let index = stream.flush(&ctx.queue);
    let (start, end) = (abs / 8 * 8, abs + data.len() as u64);
    let mapping = map_blocking(ctx, &block.buffer, start..end, wgpu::MapMode::Write, index)?;
    {
        let mut view = block
            .buffer
            .slice(start..end)
            .get_mapped_range_mut()
            .map_err(crate::mapping_failed)?;
        view.slice((abs - start) as usize..).copy_from_slice(data);
    }
    drop(mapping);
    Ok(())
}
