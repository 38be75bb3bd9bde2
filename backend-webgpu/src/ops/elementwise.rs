//! Elementwise f32 ops: unary (`kernels/unary.wgsl`) and binary (`kernels/binary.wgsl`),
//! in pieces of at most one binding each.

use backend_api::validate::{BinaryPlan, UnaryPlan};
use backend_api::{BackendResult, BinaryOp, DType, UnaryOp, UnaryParamOp};
use bytemuck::bytes_of;

use super::{dtype_code, groups_of_256, sub};
use crate::kernels::{Kernel, PipelineKey, op_code, param_op_code, params};
use crate::stream::{Bound, Limits};
use crate::{Ctx, State};

/// Elements per dispatch of an elementwise op: the largest multiple of the binding
/// alignment that fits one binding.
pub(super) fn elementwise_piece(limits: &Limits, elem_bytes: u64) -> usize {
    let align = limits.storage_align.max(4);
    let bytes = (limits.max_binding - align) / align * align;
    (bytes / elem_bytes) as usize
}

/// Output words per thread of the `packed16` entries (`PW` in their WGSL).
const PACKED_WORDS: u32 = 4;

/// Elements of 16-bit storage per dispatch: even, so that every piece but the last ends
/// on a 32-bit word.
fn piece16(limits: &Limits) -> usize {
    elementwise_piece(limits, 4) & !1
}

/// The 32-bit words (one thread each) that `n` 16-bit elements written from element
/// `off` of a binding touch.
pub(super) fn words16(off: u32, n: u32) -> u32 {
    (off + n).div_ceil(2) - off / 2
}

/// The 16-byte quads (8 16-bit elements, one thread each of `packed16x8`) that `n`
/// elements written from element `off` of a binding touch.
fn quads16(off: u32, n: u32) -> u32 {
    (off + n).div_ceil(8) - off / 8
}

/// Threads for `n` elements: one per vec4 (and one for a partial last vec4), or one per
/// element.
fn threads(n: usize, vec4: bool) -> u64 {
    if vec4 { n as u64 / 4 + 1 } else { n as u64 }
}

/// The unary kernel for one piece: entry point, the input's binding (none in place: the
/// kernel reads the output's), the output's, and the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UnaryChoice {
    entry: &'static str,
    x_slot: Option<u32>,
    y_slot: u32,
    threads: u64,
}

/// Picks the unary kernel for `n` elements; `x_byte`, `y_byte`: where input and output
/// start in their bindings.
fn choose_unary(n: usize, in_place: bool, x_byte: u64, y_byte: u64) -> UnaryChoice {
    // 16-byte loads and stores when both operands start on a 16-byte boundary.
    let vec4 = x_byte.is_multiple_of(16) && y_byte.is_multiple_of(16);
    let (entry, x_slot, y_slot) = match (in_place, vec4) {
        (true, true) => ("in_place4", None, 4),
        (true, false) => ("in_place", None, 2),
        (false, true) => ("main4", Some(3), 4),
        (false, false) => ("main", Some(1), 2),
    };
    UnaryChoice {
        entry,
        x_slot,
        y_slot,
        threads: threads(n, vec4),
    }
}

/// Which operands of a binary op are the same range (the kernel reads an aliased operand
/// through the binding it shares, see binary.wgsl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aliasing {
    /// The output is both inputs.
    AllSame,
    OutIsA,
    OutIsB,
    /// The inputs are one range, the output another.
    AIsB,
    /// No two are the same range.
    Distinct,
}

impl Aliasing {
    /// The `ALIAS` constant of `binary.wgsl::packed16`.
    fn code(self) -> u32 {
        match self {
            Aliasing::Distinct => 0,
            Aliasing::OutIsA => 1,
            Aliasing::OutIsB => 2,
            Aliasing::AllSame => 3,
            Aliasing::AIsB => 4,
        }
    }

    fn of(out_a: bool, out_b: bool, a_b: bool) -> Self {
        match (out_a, out_b, a_b) {
            (true, true, _) => Aliasing::AllSame,
            (true, false, _) => Aliasing::OutIsA,
            (false, true, _) => Aliasing::OutIsB,
            (false, false, true) => Aliasing::AIsB,
            (false, false, false) => Aliasing::Distinct,
        }
    }
}

/// The binary kernel for one piece: entry point, each operand's binding (`None`: read
/// through another's), and the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BinaryChoice {
    entry: &'static str,
    a_slot: Option<u32>,
    b_slot: Option<u32>,
    out_slot: u32,
    threads: u64,
}

/// Picks the binary kernel for `n` elements; the bytes are where each operand starts in
/// its binding.
fn choose_binary(
    n: usize,
    aliasing: Aliasing,
    a_byte: u64,
    b_byte: u64,
    out_byte: u64,
) -> BinaryChoice {
    let vec4 =
        a_byte.is_multiple_of(16) && b_byte.is_multiple_of(16) && out_byte.is_multiple_of(16);
    // The vec4 entries use bindings 5-7.
    let (ia, ib, io) = if vec4 { (5, 6, 7) } else { (1, 2, 3) };
    let (entry, entry4, a_slot, b_slot) = match aliasing {
        Aliasing::AllSame => ("all_same", "all_same4", None, None),
        Aliasing::OutIsA => ("out_is_a", "out_is_a4", None, Some(ib)),
        Aliasing::OutIsB => ("out_is_b", "out_is_b4", Some(ia), None),
        Aliasing::AIsB => ("a_is_b", "a_is_b4", Some(ia), None),
        Aliasing::Distinct => ("main", "main4", Some(ia), Some(ib)),
    };
    BinaryChoice {
        entry: if vec4 { entry4 } else { entry },
        a_slot,
        b_slot,
        out_slot: io,
        threads: threads(n, vec4),
    }
}

impl Ctx {
    pub(crate) fn unary(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!("unary", op = op.name(), n = p.n).entered();
        self.unary_code(op_code(UnaryOp::ALL, op), [0.0; 2], p)
    }

    pub(crate) fn unary_param(
        &self,
        op: UnaryParamOp,
        a: f32,
        b: f32,
        p: &UnaryPlan,
    ) -> BackendResult<()> {
        let _span = tracing::debug_span!("unary_param", op = op.name(), n = p.n).entered();
        self.unary_code(param_op_code(op), [a, b], p)
    }

    /// `unary_ex` on f16 or bf16 storage.
    pub(crate) fn unary_ex(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        let _span =
            tracing::debug_span!("unary_ex", op = op.name(), dtype = p.dtype.name(), n = p.n)
                .entered();
        self.unary_code(op_code(UnaryOp::ALL, op), [0.0; 2], p)
    }

    /// The unary kernel with `OP = code` and the parameters `[a, b]`.
    fn unary_code(&self, code: u32, [a, b]: [f32; 2], p: &UnaryPlan) -> BackendResult<()> {
        if p.dtype != DType::F32 {
            return self.unary_packed(f64::from(code), p);
        }
        let code = f64::from(code);
        let limits = &self.limits;
        let mut st = self.lock();
        let piece = elementwise_piece(limits, 4);
        // Resolve the whole ranges first, so a bad call records nothing.
        st.check_range(p.op, &p.input)?;
        st.check_range(p.op, &p.output)?;
        for start in (0..p.n).step_by(piece) {
            let n = piece.min(p.n - start);
            let x = st.bind16(limits, p.op, &sub(&p.input, start, n, 4))?;
            let y = st.bind16(limits, p.op, &sub(&p.output, start, n, 4))?;
            let prm = params::Unary {
                n: n as u32,
                x_off: x.elem(4),
                y_off: y.elem(4),
                words: 0,
                a,
                b,
                _pad1: 0,
                _pad2: 0,
            };
            let choice = choose_unary(n, p.in_place(), x.byte, y.byte);
            let State { stream, .. } = &mut *st;
            let grid = limits.grid(groups_of_256(choice.threads))?;
            let mut bindings: Vec<(u32, &Bound)> = Vec::with_capacity(2);
            bindings.extend(choice.x_slot.map(|s| (s, &x)));
            bindings.push((choice.y_slot, &y));
            let key = PipelineKey::new(Kernel::Unary, choice.entry).with("OP", code);
            self.dispatch(stream, &key, bytes_of(&prm), &bindings, grid)?;
        }
        Ok(())
    }

    /// `unary` on 16-bit storage: `unary.wgsl::packed16`, one output word per thread.
    fn unary_packed(&self, code: f64, p: &UnaryPlan) -> BackendResult<()> {
        let limits = &self.limits;
        let mut st = self.lock();
        st.check_range(p.op, &p.input)?;
        st.check_range(p.op, &p.output)?;
        let in_place = p.in_place();
        for start in (0..p.n).step_by(piece16(limits)) {
            let n = piece16(limits).min(p.n - start);
            let x = if in_place {
                st.stream.unused()
            } else {
                st.bind16(limits, p.op, &sub(&p.input, start, n, 2))?
            };
            let y = st.bind16(limits, p.op, &sub(&p.output, start, n, 2))?;
            let y_off = y.elem(2);
            // Same 16-byte phase: 8 elements per thread with 16-byte accesses.
            let x8 = in_place || x.byte % 16 == y.byte % 16;
            let (entry, slots, words) = if x8 {
                ("packed16x8", (7, 8), quads16(y_off, n as u32))
            } else {
                ("packed16", (5, 6), words16(y_off, n as u32))
            };
            let key = PipelineKey::new(Kernel::Unary, entry)
                .with("OP", code)
                .with("DTYPE", dtype_code(p.dtype))
                .with("IN_PLACE", f64::from(u8::from(in_place)));
            let prm = params::Unary {
                n: n as u32,
                x_off: if in_place { y_off } else { x.elem(2) },
                y_off,
                words,
                a: 0.0,
                b: 0.0,
                _pad1: 0,
                _pad2: 0,
            };
            let State { stream, .. } = &mut *st;
            let threads = if x8 {
                words
            } else {
                words.div_ceil(PACKED_WORDS)
            };
            let grid = limits.grid(groups_of_256(u64::from(threads)))?;
            let bindings = [(slots.0, &x), (slots.1, &y)];
            self.dispatch(stream, &key, bytes_of(&prm), &bindings, grid)?;
        }
        Ok(())
    }

    /// `binary_ex` on f16 or bf16 storage.
    pub(crate) fn binary_ex(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        let _span =
            tracing::debug_span!("binary_ex", op = op.name(), dtype = p.dtype.name(), n = p.n)
                .entered();
        let aliasing = Aliasing::of(
            p.output.same_range(&p.a),
            p.output.same_range(&p.b),
            p.a.same_range(&p.b),
        );
        let limits = &self.limits;
        let mut st = self.lock();
        for o in [&p.a, &p.b, &p.output] {
            st.check_range(p.op, o)?;
        }
        let code = f64::from(op_code(BinaryOp::ALL, op));
        // An operand read through another's binding is bound to the placeholder.
        let (own_a, own_b) = match aliasing {
            Aliasing::Distinct => (true, true),
            Aliasing::OutIsA => (false, true),
            Aliasing::OutIsB | Aliasing::AIsB => (true, false),
            Aliasing::AllSame => (false, false),
        };
        for start in (0..p.n).step_by(piece16(limits)) {
            let n = piece16(limits).min(p.n - start);
            let a = if own_a {
                st.bind16(limits, p.op, &sub(&p.a, start, n, 2))?
            } else {
                st.stream.unused()
            };
            let b = if own_b {
                st.bind16(limits, p.op, &sub(&p.b, start, n, 2))?
            } else {
                st.stream.unused()
            };
            let out = st.bind16(limits, p.op, &sub(&p.output, start, n, 2))?;
            let out_off = out.elem(2);
            // Every operand in the output's 16-byte phase: 8 elements per thread.
            let phase = out.byte % 16;
            let x8 = (!own_a || a.byte % 16 == phase) && (!own_b || b.byte % 16 == phase);
            let (entry, first_slot, words) = if x8 {
                ("packed16x8", 11, quads16(out_off, n as u32))
            } else {
                ("packed16", 8, words16(out_off, n as u32))
            };
            let key = PipelineKey::new(Kernel::Binary, entry)
                .with("OP", code)
                .with("DTYPE", dtype_code(p.dtype))
                .with("ALIAS", f64::from(aliasing.code()));
            let prm = params::Binary {
                n: n as u32,
                a_off: a.elem(2),
                b_off: b.elem(2),
                out_off,
                zero: 0,
                words,
                _pad: [0; 2],
            };
            let State { stream, .. } = &mut *st;
            let threads = if x8 {
                words
            } else {
                words.div_ceil(PACKED_WORDS)
            };
            let grid = limits.grid(groups_of_256(u64::from(threads)))?;
            let bindings = [
                (first_slot, &a),
                (first_slot + 1, &b),
                (first_slot + 2, &out),
            ];
            self.dispatch(stream, &key, bytes_of(&prm), &bindings, grid)?;
        }
        Ok(())
    }

    pub(crate) fn binary(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!("binary", op = op.name(), n = p.n).entered();
        let code = f64::from(op_code(BinaryOp::ALL, op));
        let aliasing = Aliasing::of(
            p.output.same_range(&p.a),
            p.output.same_range(&p.b),
            p.a.same_range(&p.b),
        );
        let limits = &self.limits;
        let mut st = self.lock();
        let piece = elementwise_piece(limits, 4);
        for o in [&p.a, &p.b, &p.output] {
            st.check_range(p.op, o)?;
        }
        for start in (0..p.n).step_by(piece) {
            let n = piece.min(p.n - start);
            let a = st.bind16(limits, p.op, &sub(&p.a, start, n, 4))?;
            let b = st.bind16(limits, p.op, &sub(&p.b, start, n, 4))?;
            let out = st.bind16(limits, p.op, &sub(&p.output, start, n, 4))?;
            let prm = params::Binary {
                n: n as u32,
                a_off: a.elem(4),
                b_off: b.elem(4),
                out_off: out.elem(4),
                zero: 0,
                words: 0,
                _pad: [0; 2],
            };
            let choice = choose_binary(n, aliasing, a.byte, b.byte, out.byte);
            let mut bindings: Vec<(u32, &Bound)> = Vec::with_capacity(3);
            bindings.extend(choice.a_slot.map(|s| (s, &a)));
            bindings.extend(choice.b_slot.map(|s| (s, &b)));
            bindings.push((choice.out_slot, &out));
            let key = PipelineKey::new(Kernel::Binary, choice.entry).with("OP", code);
            let State { stream, .. } = &mut *st;
            let grid = limits.grid(groups_of_256(choice.threads))?;
            self.dispatch(stream, &key, bytes_of(&prm), &bindings, grid)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_fill_one_binding_in_whole_alignment_units() {
        let limits = Limits {
            storage_align: 256,
            max_binding: 128 << 20,
            max_groups: 65535,
            workgroup_storage: 16 << 10,
            max_invocations: 256,
        };
        assert_eq!(elementwise_piece(&limits, 4), ((128 << 20) - 256) / 4);
        assert_eq!(elementwise_piece(&limits, 1), (128 << 20) - 256);
        let odd = Limits {
            storage_align: 64,
            max_binding: 1000,
            ..limits
        };
        // (1000 - 64) rounded down to 64: 896 bytes.
        assert_eq!(elementwise_piece(&odd, 4), 224);
        // Alignment below 4 counts as 4.
        let tiny = Limits {
            storage_align: 1,
            max_binding: 10,
            ..limits
        };
        assert_eq!(elementwise_piece(&tiny, 1), 4);
    }

    #[test]
    fn unary_entries_and_bindings() {
        let c = |in_place, x_byte, y_byte| choose_unary(10, in_place, x_byte, y_byte);
        assert_eq!(
            c(false, 0, 16),
            UnaryChoice {
                entry: "main4",
                x_slot: Some(3),
                y_slot: 4,
                threads: 3
            }
        );
        assert_eq!(
            c(false, 4, 16),
            UnaryChoice {
                entry: "main",
                x_slot: Some(1),
                y_slot: 2,
                threads: 10
            }
        );
        assert_eq!(
            c(true, 32, 32),
            UnaryChoice {
                entry: "in_place4",
                x_slot: None,
                y_slot: 4,
                threads: 3
            }
        );
        assert_eq!(
            c(true, 8, 8),
            UnaryChoice {
                entry: "in_place",
                x_slot: None,
                y_slot: 2,
                threads: 10
            }
        );
        // A whole number of vec4s still gets the extra thread.
        assert_eq!(choose_unary(8, false, 0, 0).threads, 3);
    }

    #[test]
    fn aliasing() {
        assert_eq!(Aliasing::of(true, true, true), Aliasing::AllSame);
        assert_eq!(Aliasing::of(true, false, false), Aliasing::OutIsA);
        assert_eq!(Aliasing::of(false, true, false), Aliasing::OutIsB);
        assert_eq!(Aliasing::of(false, false, true), Aliasing::AIsB);
        assert_eq!(Aliasing::of(false, false, false), Aliasing::Distinct);
    }

    #[test]
    fn binary_entries_and_bindings() {
        let cases = [
            (Aliasing::AllSame, "all_same", None, None),
            (Aliasing::OutIsA, "out_is_a", None, Some(2)),
            (Aliasing::OutIsB, "out_is_b", Some(1), None),
            (Aliasing::AIsB, "a_is_b", Some(1), None),
            (Aliasing::Distinct, "main", Some(1), Some(2)),
        ];
        for (aliasing, entry, a_slot, b_slot) in cases {
            // One operand off a 16-byte boundary: the scalar entry, bindings 1-3.
            for (a, b, o) in [(4, 0, 0), (0, 4, 0), (0, 0, 4)] {
                assert_eq!(
                    choose_binary(10, aliasing, a, b, o),
                    BinaryChoice {
                        entry,
                        a_slot,
                        b_slot,
                        out_slot: 3,
                        threads: 10
                    }
                );
            }
            // All aligned: the vec4 entry, bindings 5-7.
            let c = choose_binary(10, aliasing, 0, 16, 32);
            assert_eq!(c.entry, format!("{entry}4"));
            assert_eq!(c.a_slot, a_slot.map(|s| s + 4));
            assert_eq!(c.b_slot, b_slot.map(|s| s + 4));
            assert_eq!((c.out_slot, c.threads), (7, 3));
            for e in [entry, c.entry] {
                assert!(Kernel::Binary.entries().contains(&e), "{e}");
            }
        }
        for e in ["main", "main4", "in_place", "in_place4"] {
            assert!(Kernel::Unary.entries().contains(&e), "{e}");
        }
    }
}
