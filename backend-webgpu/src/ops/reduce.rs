//! reduce (sum, max, ...) over one axis: `kernels/reduce.wgsl`.

use backend_api::validate::ReducePlan;
use backend_api::{BackendError, BackendResult, DType, ReduceOp};
use bytemuck::bytes_of;

use super::elementwise::words16;
use super::{dtype_code, groups_of_256, u32_saturating};
use crate::kernels::{Kernel, PipelineKey, op_code, params};
use crate::{Ctx, State};

/// The reduce kernel for one call, with its workgroup count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReduceChoice {
    /// A workgroup per row of a long contiguous reduction (`rows`, or `rows4` with
    /// 16-byte loads when `vec4`).
    Rows { vec4: bool, groups: u64 },
    /// Four adjacent outputs per thread with 16-byte accesses, `cols4` quads per
    /// workgroup (`cols4`).
    Cols4 { cols4: u64, groups: u64 },
    /// `cols` outputs per workgroup (`cols`).
    Cols { cols: u64, groups: u64 },
}

/// Rows of `len` 16-bit elements per `rows8h` workgroup (`ROWS8H`): 8 (32 threads a row)
/// where a whole workgroup would give each thread fewer than 4 loads of 8 elements, so
/// that each thread has several loads in flight and a row's tree is shorter; else 1.
fn rows8h_per_workgroup(len: usize) -> u64 {
    if len / 8 < 4 * 256 { 8 } else { 1 }
}

/// Picks the kernel for `outer` x `len` x `inner` (reducing `len`). `x_byte`, `y_byte`:
/// where input and output start in their bindings.
fn choose(outer: usize, len: usize, inner: usize, x_byte: u64, y_byte: u64) -> ReduceChoice {
    let outputs = (outer * inner) as u64;
    if inner == 1 && len > 64 {
        // Long contiguous rows: a workgroup per row, 16-byte loads when rows are aligned.
        return ReduceChoice::Rows {
            vec4: x_byte.is_multiple_of(16) && len.is_multiple_of(4),
            groups: outer as u64,
        };
    }
    // Four adjacent outputs per thread with 16-byte accesses where rows of the inner
    // dimension are whole vec4s.
    if inner.is_multiple_of(4) && x_byte.is_multiple_of(16) && y_byte.is_multiple_of(16) {
        let quads = outputs / 4;
        let cols4: u64 = 8;
        return ReduceChoice::Cols4 {
            cols4,
            groups: quads.div_ceil(cols4),
        };
    }
    // Few outputs get more threads each, so long reductions still fill the device.
    let cols: u64 = if outputs >= 8192 { 32 } else { 4 };
    ReduceChoice::Cols {
        cols,
        groups: outputs.div_ceil(cols),
    }
}

impl ReduceChoice {
    /// Workgroups to dispatch.
    fn groups(self) -> u64 {
        match self {
            ReduceChoice::Rows { groups, .. }
            | ReduceChoice::Cols4 { groups, .. }
            | ReduceChoice::Cols { groups, .. } => groups,
        }
    }

    /// The input's and the output's bindings: the scalar views at 1 and 2, the vec4
    /// ones at 3 and 4.
    fn slots(self) -> (u32, u32) {
        match self {
            ReduceChoice::Rows { vec4: true, .. } => (3, 2),
            ReduceChoice::Rows { vec4: false, .. } | ReduceChoice::Cols { .. } => (1, 2),
            ReduceChoice::Cols4 { .. } => (3, 4),
        }
    }

    /// `code`: the op's `OP` value.
    fn key(self, code: f64) -> PipelineKey {
        let key = |entry| PipelineKey::new(Kernel::Reduce, entry).with("OP", code);
        match self {
            ReduceChoice::Rows { vec4: true, .. } => key("rows4"),
            ReduceChoice::Rows { vec4: false, .. } => key("rows"),
            ReduceChoice::Cols4 { cols4, .. } => key("cols4").with("COLS4", cols4 as f64),
            ReduceChoice::Cols { cols, .. } => key("cols").with("COLS", cols as f64),
        }
    }
}

/// `reduce.wgsl`'s `OP` for L2's first pass (the largest magnitude of each output).
const REDUCE_ABS_MAX: u32 = 100;
const _: () = assert!(ReduceOp::ALL.len() < REDUCE_ABS_MAX as usize);

impl Ctx {
    pub(crate) fn reduce(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        let _span = tracing::debug_span!(
            "reduce",
            op = op.name(),
            dtype = p.dtype.name(),
            outer = p.outer,
            len = p.len,
            inner = p.inner
        )
        .entered();
        let limits = &self.limits;
        let mut st = self.lock();
        let half = p.dtype != DType::F32;
        let outputs = (p.outer * p.inner) as u64;
        if half && 4 * outputs > limits.max_binding {
            return Err(BackendError::Unsupported(format!(
                "{}: {outputs} outputs of {} storage need a {} f32 scratch binding, over the \
                 adapter's {} limit",
                p.op,
                p.dtype,
                backend_api::fmt_bytes(4 * outputs),
                backend_api::fmt_bytes(limits.max_binding)
            )));
        }
        // f16/bf16: the f32 results go to the stream's scratch, then a cast rounds them
        // once into the output.
        let out = if half {
            Some(st.bind(limits, p.op, &p.output)?)
        } else {
            None
        };
        let y = match out {
            Some(_) => st.stream.scratch(&self.device, 4 * outputs),
            None => st.bind16(limits, p.op, &p.output)?,
        };
        let x = match &p.input {
            Some(i) if half => st.bind(limits, p.op, i)?,
            Some(i) => st.bind16(limits, p.op, i)?,
            None => st.stream.unused(),
        };
        let elem = p.dtype.size_bytes() as u64;
        let prm = params::Reduce {
            outer: u32_saturating(p.outer),
            len: if p.input.is_some() {
                u32_saturating(p.len)
            } else {
                0
            },
            inner: u32_saturating(p.inner),
            x_off: x.elem(elem),
            y_off: y.elem(4),
            _pad: [0; 3],
        };
        let State { stream, .. } = &mut *st;
        // 16-bit inputs take the scalar entries (as an unaligned f32 input would), or
        // `rows8h` for long rows of whole 16-byte groups.
        let x_byte = if half { 2 } else { x.byte };
        let mut choice = choose(p.outer, p.len, p.inner, x_byte, y.byte);
        let rows8h = half
            && matches!(choice, ReduceChoice::Rows { .. })
            && x.byte.is_multiple_of(16)
            && p.len.is_multiple_of(8);
        let per_group = rows8h_per_workgroup(p.len);
        if rows8h {
            choice = ReduceChoice::Rows {
                vec4: false,
                groups: (p.outer as u64).div_ceil(per_group),
            };
        }
        let grid = limits.grid(choice.groups())?;
        let (xs, ys) = choice.slots();
        // The scalar entries read f32 at 1 and 16-bit words at 5; the other is a placeholder.
        let placeholder = stream.unused();
        let mut bindings = vec![(ys, &y)];
        match (xs, half) {
            _ if rows8h => bindings.push((6, &x)),
            (1, false) => bindings.extend([(1, &x), (5, &placeholder)]),
            (1, true) => bindings.extend([(1, &placeholder), (5, &x)]),
            _ => bindings.push((xs, &x)),
        }
        // Inputs first, the written binding last.
        bindings.rotate_left(1);
        // LogSumExp: each output's maximum first, which the second pass reads back; L2
        // likewise each output's largest magnitude (`REDUCE_ABS_MAX`, not a `ReduceOp`).
        let code = |op| op_code(ReduceOp::ALL, op);
        let passes: &[u32] = match op {
            ReduceOp::LogSumExp => &[code(ReduceOp::Max), code(ReduceOp::LogSumExp)],
            ReduceOp::L2 => &[REDUCE_ABS_MAX, code(ReduceOp::L2)],
            _ => &[code(op)],
        };
        for &pass in passes {
            let mut key = if rows8h {
                PipelineKey::new(Kernel::Reduce, "rows8h")
                    .with("OP", f64::from(pass))
                    .with("ROWS8H", per_group as f64)
            } else {
                choice.key(f64::from(pass))
            };
            if half {
                key = key.with("DTYPE", dtype_code(p.dtype));
            }
            self.dispatch(stream, &key, bytes_of(&prm), &bindings, grid)?;
        }
        if let Some(out) = out {
            let dst_off = out.elem(elem);
            let words = words16(dst_off, outputs as u32);
            let prm = params::Cast {
                n: outputs as u32,
                src_off: 0,
                dst_off,
                words,
            };
            let key = PipelineKey::new(Kernel::Cast, "main")
                .with("SRC", dtype_code(DType::F32))
                .with("DST", dtype_code(p.dtype));
            let grid = limits.grid(groups_of_256(u64::from(words)))?;
            self.dispatch(stream, &key, bytes_of(&prm), &[(1, &y), (2, &out)], grid)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_contiguous_rows_get_a_workgroup_each() {
        assert_eq!(
            choose(10, 1000, 1, 0, 4),
            ReduceChoice::Rows {
                vec4: true,
                groups: 10
            }
        );
        // Unaligned start or rows of a length not a multiple of 4: scalar loads.
        for (len, x_byte) in [(1000, 4), (1001, 0)] {
            assert_eq!(
                choose(10, len, 1, x_byte, 0),
                ReduceChoice::Rows {
                    vec4: false,
                    groups: 10
                }
            );
        }
    }

    #[test]
    fn aligned_inner_dimensions_take_four_outputs_per_thread() {
        // Short rows (len <= 64) of a contiguous reduction are no "long rows".
        assert_eq!(
            choose(100, 64, 4, 0, 16),
            ReduceChoice::Cols4 {
                cols4: 8,
                groups: 13
            }
        );
        assert_eq!(
            choose(3, 1000, 256, 32, 0),
            ReduceChoice::Cols4 {
                cols4: 8,
                groups: 24
            }
        );
    }

    #[test]
    fn the_rest_takes_more_threads_per_output_when_outputs_are_many() {
        assert_eq!(
            choose(100, 64, 1, 0, 0),
            ReduceChoice::Cols {
                cols: 4,
                groups: 25
            }
        );
        // Misaligned output, or an inner dimension not a multiple of 4.
        assert_eq!(
            choose(1024, 5, 8, 0, 4),
            ReduceChoice::Cols {
                cols: 32,
                groups: 256
            }
        );
        assert_eq!(
            choose(8191, 5, 1, 0, 0),
            ReduceChoice::Cols {
                cols: 4,
                groups: 2048
            }
        );
        assert_eq!(
            choose(2, 5, 4097, 0, 0),
            ReduceChoice::Cols {
                cols: 32,
                groups: 257
            }
        );
    }

    #[test]
    fn short_half_rows_share_a_workgroup() {
        assert_eq!(rows8h_per_workgroup(4096), 8);
        assert_eq!(rows8h_per_workgroup(8184), 8);
        assert_eq!(rows8h_per_workgroup(8192), 1);
        assert_eq!(rows8h_per_workgroup(1 << 20), 1);
    }

    #[test]
    fn bindings_and_keys() {
        let f = |v: f64| v.to_bits();
        let cases = [
            (
                ReduceChoice::Rows {
                    vec4: true,
                    groups: 1,
                },
                "rows4",
                (3, 2),
                None,
            ),
            (
                ReduceChoice::Rows {
                    vec4: false,
                    groups: 1,
                },
                "rows",
                (1, 2),
                None,
            ),
            (
                ReduceChoice::Cols4 {
                    cols4: 8,
                    groups: 1,
                },
                "cols4",
                (3, 4),
                Some(("COLS4", f(8.0))),
            ),
            (
                ReduceChoice::Cols {
                    cols: 32,
                    groups: 1,
                },
                "cols",
                (1, 2),
                Some(("COLS", f(32.0))),
            ),
        ];
        for (choice, entry, slots, extra) in cases {
            let key = choice.key(3.0);
            assert_eq!((key.kernel, key.entry), (Kernel::Reduce, entry));
            let mut constants = vec![("OP", f(3.0))];
            constants.extend(extra);
            assert_eq!(key.constants, constants);
            assert_eq!(choice.slots(), slots);
            assert!(Kernel::Reduce.entries().contains(&key.entry));
        }
    }
}
