//! gemm_q: `kernels/gemm_q.wgsl`, a workgroup per 8 rows of A and 8 columns of B.

use backend_api::validate::GemmQPlan;
use backend_api::{BackendError, BackendResult, DType, QuantFormat};
use bytemuck::bytes_of;

use super::u32_saturating;
use crate::kernels::{Kernel, PipelineKey, params};
use crate::{Ctx, State};

/// Rows of one workgroup's tile (`ROWS` in gemm_q.wgsl).
const ROWS: u64 = 8;

/// Columns of one workgroup's tile (`COLS`): the smallest of 1, 2, 4, 8 that holds `n`.
fn tile_columns(n: usize) -> u64 {
    (n.max(1).next_power_of_two() as u64).min(8)
}

/// The kernel: `decode` (8 lanes per block, coalesced reads of A and B) for up to 4
/// columns, `main` (a lane per block, each block dequantized once for 8 columns) above.
fn entry(n: usize) -> &'static str {
    if n <= 4 { "decode" } else { "main" }
}

/// The `FORMAT` override of a block format.
fn format_code(f: QuantFormat) -> f64 {
    match f {
        QuantFormat::Q8_0 => 0.0,
        QuantFormat::Q4_0 => 1.0,
    }
}

impl Ctx {
    pub(crate) fn gemm_q(&self, p: &GemmQPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!("gemm_q", m = p.m, n = p.n, k = p.k).entered();
        let limits = &self.limits;
        let mut st = self.lock();
        let c = st.bind(limits, p.op, &p.c)?;
        let a = st.bind_opt(limits, p.op, p.a.as_ref())?;
        let b = st.bind_opt(limits, p.op, p.b.as_ref())?;
        let b_elem = p.b_dtype.size_bytes() as u64;
        let prm = params::GemmQ {
            m: u32_saturating(p.m),
            n: u32_saturating(p.n),
            k: u32_saturating(p.k),
            a_byte: a.byte as u32,
            b_off: (b.byte / b_elem) as u32,
            c_off: c.elem(4),
            ldb: u32_saturating(p.ldb),
            ldc: u32_saturating(p.ldc),
            alpha: p.alpha as f32,
            beta: p.beta as f32,
            flags: u32::from(p.reads_ab()) | (u32::from(p.beta != 0.0) << 1),
            _pad: 0,
        };
        let cols = tile_columns(p.n);
        let (gx, gy) = ((p.m as u64).div_ceil(ROWS), (p.n as u64).div_ceil(cols));
        let max = u64::from(limits.max_groups);
        if gx > max || gy > max {
            return Err(BackendError::Unsupported(format!(
                "{}: {gx} x {gy} workgroups exceed this adapter's {max} per dimension",
                p.op
            )));
        }
        let key = PipelineKey::new(Kernel::GemmQ, entry(p.n))
            .with("FORMAT", format_code(p.format))
            .with("B_F16", f64::from(u8::from(p.b_dtype == DType::F16)))
            .with("COLS", cols as f64);
        let State { stream, .. } = &mut *st;
        self.dispatch(
            stream,
            &key,
            bytes_of(&prm),
            &[(1, &a), (2, &b), (3, &c)],
            [gx as u32, gy as u32, 1],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_columns_take_the_decode_kernel() {
        assert_eq!(
            [1, 4, 5, 512].map(entry),
            ["decode", "decode", "main", "main"]
        );
    }

    #[test]
    fn column_tiles_hold_n_up_to_eight() {
        let got: Vec<u64> = [0, 1, 2, 3, 4, 5, 8, 9, 512].map(tile_columns).to_vec();
        assert_eq!(got, [1, 1, 2, 4, 4, 8, 8, 8, 8]);
    }
}
