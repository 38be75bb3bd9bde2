//! `binary_broadcast` (`kernels/broadcast.wgsl`) and `gather` (`kernels/gather.wgsl`).

use backend_api::validate::{BroadcastPlan, GatherPlan, MAX_BROADCAST_RANK};
use backend_api::{BackendError, BackendResult, BinaryOp};
use bytemuck::bytes_of;

use super::elementwise::elementwise_piece;
use super::{dtype_code, groups_of_256, sub};
use crate::kernels::{Kernel, PipelineKey, op_code, params};
use crate::stream::Bound;
use crate::{Ctx, State};

/// The broadcast entry point: which input, if any, is the output's exact range, and
/// whether each thread writes a vec4 (`vec4`: the last merged dimension is a multiple of
/// 4 and the output starts on a 16-byte boundary of its binding).
fn broadcast_entry(out_is_a: bool, out_is_b: bool, vec4: bool) -> &'static str {
    match (out_is_a, out_is_b, vec4) {
        (true, _, false) => "out_is_a",
        (false, true, false) => "out_is_b",
        (false, false, false) => "main",
        (true, _, true) => "out_is_a4",
        (false, true, true) => "out_is_b4",
        (false, false, true) => "main4",
    }
}

/// The plan's merged shape and strides as the kernel's `array<vec4<u32>, 2>`s.
fn words(v: &[usize; MAX_BROADCAST_RANK]) -> [u32; 8] {
    let mut w = [1u32; 8];
    for (w, &v) in w.iter_mut().zip(v) {
        *w = v as u32;
    }
    w
}

/// Rows of the table per gather dispatch: as many whole rows as one binding holds.
fn table_rows_per_piece(piece_elems: usize, cols: usize) -> usize {
    piece_elems / cols
}

/// Checks a broadcast's ranges and binds each input that is broadcast whole (`None` for
/// one that is not: it is read at the output's own index, bound piece by piece with it).
fn bind_broadcast(
    st: &mut State,
    limits: &crate::stream::Limits,
    p: &BroadcastPlan,
) -> BackendResult<(Option<Bound>, Option<Bound>)> {
    for o in [&p.a, &p.b, &p.output] {
        st.check_range(p.op, o)?;
    }
    let whole = |o: &backend_api::Operand| {
        (o.bytes != p.output.bytes)
            .then(|| st.bind(limits, p.op, o))
            .transpose()
    };
    Ok((whole(&p.a)?, whole(&p.b)?))
}

impl Ctx {
    /// Whether [`binary_broadcast_half`](Self::binary_broadcast_half) takes `p`: the
    /// output starts on a 32-bit word (or nothing is broadcast).
    pub(crate) fn broadcast_on_half_storage(p: &BroadcastPlan) -> bool {
        p.as_binary().is_some() || p.output.ptr.is_multiple_of(4)
    }

    /// `binary_broadcast_ex` on f16/bf16 storage without f32 copies (`broadcast::half`, a
    /// word of the output per thread), for the calls
    /// [`broadcast_on_half_storage`](Self::broadcast_on_half_storage) accepts.
    pub(crate) fn binary_broadcast_half(
        &self,
        op: BinaryOp,
        p: &BroadcastPlan,
    ) -> BackendResult<()> {
        if let Some(plain) = p.as_binary() {
            return self.binary_ex(op, &plain);
        }
        debug_assert!(Self::broadcast_on_half_storage(p));
        let _span =
            tracing::debug_span!("binary_broadcast_half", op = op.name(), n = p.n).entered();
        if p.n > u32::MAX as usize {
            return Err(BackendError::Unsupported(format!(
                "{}: {} output elements, more than the kernel's u32 indices",
                p.op, p.n
            )));
        }
        let size = p.dtype.size_bytes();
        let code = f64::from(op_code(BinaryOp::ALL, op));
        let (out_is_a, out_is_b) = (p.output.same_range(&p.a), p.output.same_range(&p.b));
        let in_place = if out_is_a {
            1.0
        } else if out_is_b {
            2.0
        } else {
            0.0
        };
        let limits = &self.limits;
        let mut st = self.lock();
        let (whole_a, whole_b) = bind_broadcast(&mut st, limits, p)?;
        // Even, so that every piece but the last ends on a word.
        let piece = elementwise_piece(limits, 4) & !1;
        let key = PipelineKey::new(Kernel::Broadcast, "half")
            .with("OP", code)
            .with("DTYPE", dtype_code(p.dtype))
            .with("IN_PLACE", in_place);
        for start in (0..p.n).step_by(piece) {
            let n = piece.min(p.n - start);
            let a = match &whole_a {
                Some(w) => w.clone(),
                None => st.bind(limits, p.op, &sub(&p.a, start, n, size))?,
            };
            let b = match &whole_b {
                Some(w) => w.clone(),
                None => st.bind(limits, p.op, &sub(&p.b, start, n, size))?,
            };
            let out = st.bind(limits, p.op, &sub(&p.output, start, n, size))?;
            let prm = params::Broadcast {
                n: n as u32,
                rank: p.rank as u32,
                start: start as u32,
                a_off: a.elem(size as u64),
                b_off: b.elem(size as u64),
                out_off: out.elem(size as u64),
                a_sub: if whole_a.is_some() { 0 } else { start as u32 },
                b_sub: if whole_b.is_some() { 0 } else { start as u32 },
                shape: words(&p.shape),
                a_strides: words(&p.a_strides),
                b_strides: words(&p.b_strides),
            };
            let State { stream, .. } = &mut *st;
            let unused = stream.unused();
            let bindings: [(u32, &Bound); 3] = [
                (4, if out_is_a { &unused } else { &a }),
                (5, if out_is_b { &unused } else { &b }),
                (6, &out),
            ];
            let grid = limits.grid(groups_of_256(n.div_ceil(2) as u64))?;
            self.dispatch(stream, &key, bytes_of(&prm), &bindings, grid)?;
        }
        Ok(())
    }

    pub(crate) fn binary_broadcast(&self, op: BinaryOp, p: &BroadcastPlan) -> BackendResult<()> {
        if let Some(plain) = p.as_binary() {
            return self.binary(op, &plain);
        }
        let _span = tracing::debug_span!("binary_broadcast", op = op.name(), n = p.n).entered();
        if p.n > u32::MAX as usize {
            return Err(BackendError::Unsupported(format!(
                "{}: {} output elements, more than the kernel's u32 indices",
                p.op, p.n
            )));
        }
        let code = f64::from(op_code(BinaryOp::ALL, op));
        let (out_is_a, out_is_b) = (p.output.same_range(&p.a), p.output.same_range(&p.b));
        let limits = &self.limits;
        let mut st = self.lock();
        let (whole_a, whole_b) = bind_broadcast(&mut st, limits, p)?;
        let piece = elementwise_piece(limits, 4);
        let rows_of_4 = p.shape[p.rank - 1].is_multiple_of(4);
        for start in (0..p.n).step_by(piece) {
            let n = piece.min(p.n - start);
            let a = match &whole_a {
                Some(w) => w.clone(),
                None => st.bind(limits, p.op, &sub(&p.a, start, n, 4))?,
            };
            let b = match &whole_b {
                Some(w) => w.clone(),
                None => st.bind(limits, p.op, &sub(&p.b, start, n, 4))?,
            };
            let out = st.bind16(limits, p.op, &sub(&p.output, start, n, 4))?;
            let vec4 = rows_of_4 && out.byte.is_multiple_of(16);
            let entry = broadcast_entry(out_is_a, out_is_b, vec4);
            let prm = params::Broadcast {
                n: n as u32,
                rank: p.rank as u32,
                start: start as u32,
                a_off: a.elem(4),
                b_off: b.elem(4),
                out_off: out.elem(4),
                a_sub: if whole_a.is_some() { 0 } else { start as u32 },
                b_sub: if whole_b.is_some() { 0 } else { start as u32 },
                shape: words(&p.shape),
                a_strides: words(&p.a_strides),
                b_strides: words(&p.b_strides),
            };
            let mut bindings: Vec<(u32, &Bound)> = Vec::with_capacity(3);
            if !out_is_a {
                bindings.push((1, &a));
            }
            if !out_is_b {
                bindings.push((2, &b));
            }
            bindings.push((if vec4 { 7 } else { 3 }, &out));
            let key = PipelineKey::new(Kernel::Broadcast, entry).with("OP", code);
            let State { stream, .. } = &mut *st;
            let threads = if vec4 { n.div_ceil(4) } else { n } as u64;
            let grid = limits.grid(groups_of_256(threads))?;
            self.dispatch(stream, &key, bytes_of(&prm), &bindings, grid)?;
        }
        Ok(())
    }

    pub(crate) fn gather(&self, p: &GatherPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!("gather", rows = p.rows, cols = p.cols, n = p.n).entered();
        let limits = &self.limits;
        let mut st = self.lock();
        if let Some(t) = &p.table {
            st.check_range(p.op, t)?;
        }
        let indices = st.bind(limits, p.op, &p.indices)?;
        let out = st.bind(limits, p.op, &p.output)?;
        let elems = p.n.saturating_mul(p.cols);
        if elems > u32::MAX as usize {
            return Err(BackendError::Unsupported(format!(
                "{}: {elems} output elements, more than the kernel's u32 indices",
                p.op
            )));
        }
        let per_piece = table_rows_per_piece(elementwise_piece(limits, 4), p.cols);
        if per_piece == 0 {
            return Err(BackendError::Unsupported(format!(
                "{}: a table row of {} f32 is more than one binding of this adapter holds",
                p.op, p.cols
            )));
        }
        // At least one dispatch, which also writes the zero rows (a table of no rows has
        // only out-of-range indices).
        let mut row0 = 0;
        loop {
            let row1 = p.rows.min(row0 + per_piece);
            let table = match &p.table {
                Some(t) if row1 > row0 => st.bind(
                    limits,
                    p.op,
                    &sub(t, row0 * p.cols, (row1 - row0) * p.cols, 4),
                )?,
                _ => st.stream.unused(),
            };
            let prm = params::Gather {
                n: elems as u32,
                cols: p.cols as u32,
                rows: super::u32_saturating(p.rows),
                row0: row0 as u32,
                row1: super::u32_saturating(row1),
                first: u32::from(row0 == 0),
                t_off: table.elem(4),
                i_off: indices.elem(4),
                out_off: out.elem(4),
                _pad: [0; 3],
            };
            let key = PipelineKey::new(Kernel::Gather, "main");
            let State { stream, .. } = &mut *st;
            let grid = limits.grid(groups_of_256(elems as u64))?;
            self.dispatch(
                stream,
                &key,
                bytes_of(&prm),
                &[(1, &table), (2, &indices), (3, &out)],
                grid,
            )?;
            row0 = row1;
            if row0 >= p.rows {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        assert_eq!(broadcast_entry(false, false, false), "main");
        assert_eq!(broadcast_entry(true, false, false), "out_is_a");
        assert_eq!(broadcast_entry(false, true, false), "out_is_b");
        assert_eq!(broadcast_entry(false, false, true), "main4");
        assert_eq!(broadcast_entry(true, false, true), "out_is_a4");
        assert_eq!(broadcast_entry(false, true, true), "out_is_b4");
        for e in [
            "main",
            "out_is_a",
            "out_is_b",
            "main4",
            "out_is_a4",
            "out_is_b4",
        ] {
            assert!(Kernel::Broadcast.entries().contains(&e), "{e}");
        }
    }

    #[test]
    fn shape_words_pad_with_ones() {
        let w = words(&[3, 4, 1, 1, 1, 1]);
        assert_eq!(w, [3, 4, 1, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn table_pieces_are_whole_rows() {
        assert_eq!(table_rows_per_piece(1000, 7), 142);
        assert_eq!(table_rows_per_piece(6, 7), 0);
    }
}
