//! softmax, log_softmax, layer_norm, rms_norm over the last axis: `kernels/rows.wgsl`.

use backend_api::BackendResult;
use backend_api::validate::{RowOp, RowPlan};
use bytemuck::bytes_of;

use super::u32_saturating;
use crate::kernels::{Kernel, PipelineKey, op_code, params};
use crate::{Ctx, State};

/// The `flags` word of the kernel: bit 0 when gamma is bound, bit 1 when beta is.
fn flags(p: &RowPlan) -> u32 {
    u32::from(p.gamma.is_some()) | (u32::from(p.beta.is_some()) << 1)
}

/// Elements a row may have for the register-cached entry: 4 (a vec4) x 256 threads x 4
/// vec4s each (`CV` in rows.wgsl).
const CACHED_COLS: usize = 4 * 256 * 4;

/// The row kernel's entry: `cached4` when the row fits the registers as vec4s (whole
/// vec4s, both operands on 16-byte boundaries of their bindings), else `main`.
fn entry(cols: usize, x_byte: u64, y_byte: u64) -> &'static str {
    if cols.is_multiple_of(4)
        && cols <= CACHED_COLS
        && x_byte.is_multiple_of(16)
        && y_byte.is_multiple_of(16)
    {
        "cached4"
    } else {
        "main"
    }
}

impl Ctx {
    pub(crate) fn rows(&self, p: &RowPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!("rows", op = p.op, rows = p.rows, cols = p.cols).entered();
        let limits = &self.limits;
        let mut st = self.lock();
        let x = st.bind16(limits, p.op, &p.x)?;
        let y = st.bind16(limits, p.op, &p.y)?;
        let g = st.bind_opt(limits, p.op, p.gamma.as_ref())?;
        let b = st.bind_opt(limits, p.op, p.beta.as_ref())?;
        let prm = params::Rows {
            rows: u32_saturating(p.rows),
            cols: u32_saturating(p.cols),
            x_off: x.elem(4),
            y_off: y.elem(4),
            g_off: g.elem(4),
            b_off: b.elem(4),
            flags: flags(p),
            eps: p.eps as f32,
        };
        let code = f64::from(op_code(RowOp::ALL, p.kind));
        let grid = limits.grid(p.rows as u64)?;
        let entry = entry(p.cols, x.byte, y.byte);
        if entry == "cached4" {
            // In place, the kernel reads the row from y before writing it: no copy.
            let in_place = p.in_place();
            let key = PipelineKey::new(Kernel::Rows, entry)
                .with("OP", code)
                .with("IN_PLACE", f64::from(u8::from(in_place)));
            let x = if in_place { st.stream.unused() } else { x };
            let State { stream, .. } = &mut *st;
            return self.dispatch(
                stream,
                &key,
                bytes_of(&prm),
                &[(5, &x), (3, &g), (4, &b), (6, &y)],
                grid,
            );
        }
        let State { stream, .. } = &mut *st;
        let key = PipelineKey::new(Kernel::Rows, "main").with("OP", code);
        // The written binding last: the stream keeps the others disjoint from it (in
        // place, x is read from a copy).
        self.dispatch(
            stream,
            &key,
            bytes_of(&prm),
            &[(1, &x), (3, &g), (4, &b), (2, &y)],
            grid,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_api::Operand;

    #[test]
    fn whole_aligned_rows_that_fit_take_the_cached_entry() {
        assert_eq!(entry(4096, 0, 16), "cached4");
        assert_eq!(entry(4, 32, 0), "cached4");
        assert_eq!(entry(4100, 0, 0), "main");
        assert_eq!(entry(4098, 0, 0), "main");
        assert_eq!(entry(6, 0, 0), "main");
        assert_eq!(entry(8, 4, 0), "main");
        assert_eq!(entry(8, 0, 8), "main");
        for e in ["main", "cached4"] {
            assert!(Kernel::Rows.entries().contains(&e), "{e}");
        }
    }

    #[test]
    fn flags_say_which_of_gamma_and_beta_are_bound() {
        let o = |ptr| Operand {
            name: "x",
            ptr,
            bytes: 16,
        };
        let mut p = RowPlan {
            op: "layer_norm",
            kind: RowOp::LayerNorm,
            rows: 1,
            cols: 4,
            eps: 1e-5,
            x: o(0),
            gamma: None,
            beta: None,
            y: o(256),
            dtype: backend_api::DType::F32,
        };
        assert_eq!(flags(&p), 0);
        p.gamma = Some(o(512));
        assert_eq!(flags(&p), 1);
        p.beta = Some(o(768));
        assert_eq!(flags(&p), 3);
    }
}
