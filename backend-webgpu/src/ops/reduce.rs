//! reduce (sum, max, ...) over one axis: `kernels/reduce.wgsl`.

use backend_api::validate::ReducePlan;
use backend_api::{BackendResult, ReduceOp};
use bytemuck::bytes_of;

use super::u32_saturating;
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

impl Ctx {
    pub(crate) fn reduce(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        let _span = tracing::debug_span!(
            "reduce",
            op = op.name(),
            outer = p.outer,
            len = p.len,
            inner = p.inner
        )
        .entered();
        let limits = &self.limits;
        let mut st = self.lock();
        let y = st.bind16(limits, p.op, &p.output)?;
        let x = match &p.input {
            Some(i) => st.bind16(limits, p.op, i)?,
            None => st.stream.unused(),
        };
        let prm = params::Reduce {
            outer: u32_saturating(p.outer),
            len: if p.input.is_some() {
                u32_saturating(p.len)
            } else {
                0
            },
            inner: u32_saturating(p.inner),
            x_off: x.elem(4),
            y_off: y.elem(4),
            _pad: [0; 3],
        };
        let State { stream, .. } = &mut *st;
        let choice = choose(p.outer, p.len, p.inner, x.byte, y.byte);
        let grid = limits.grid(choice.groups())?;
        let (xs, ys) = choice.slots();
        // LogSumExp: each output's maximum first, which the second pass reads back.
        let passes: &[ReduceOp] = match op {
            ReduceOp::LogSumExp => &[ReduceOp::Max, ReduceOp::LogSumExp],
            _ => &[op],
        };
        for &pass in passes {
            let code = f64::from(op_code(ReduceOp::ALL, pass));
            self.dispatch(
                stream,
                &choice.key(code),
                bytes_of(&prm),
                &[(xs, &x), (ys, &y)],
                grid,
            )?;
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
