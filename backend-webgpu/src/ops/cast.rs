//! cast between f32, f16 and bf16: `kernels/cast.wgsl`.

use backend_api::validate::CastPlan;
use backend_api::{BackendResult, DType};
use bytemuck::bytes_of;

use super::elementwise::elementwise_piece;
use super::{dtype_code, groups_of_256, sub};
use crate::kernels::{Kernel, PipelineKey, params};
use crate::stream::Limits;
use crate::{Ctx, State};

/// The one cast kernel, specialised by the two element types.
fn key(src: DType, dst: DType) -> PipelineKey {
    PipelineKey::new(Kernel::Cast, "main")
        .with("SRC", dtype_code(src))
        .with("DST", dtype_code(dst))
}

/// Elements per dispatch: even, so that every piece but the last ends on a 32-bit word
/// of a 16-bit destination.
fn piece(limits: &Limits) -> usize {
    elementwise_piece(limits, 4) & !1
}

/// The 32-bit words (one thread each) that `n` elements written from element `dst_off`
/// of the destination binding touch: one per f32, or those holding the 16-bit elements.
fn words(dst: DType, dst_off: u32, n: u32) -> u32 {
    if dst == DType::F32 {
        n
    } else {
        (dst_off + n).div_ceil(2) - dst_off / 2
    }
}

impl Ctx {
    pub(crate) fn cast(&self, p: &CastPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!(
            "cast",
            src = p.src_dtype.name(),
            dst = p.dst_dtype.name(),
            n = p.n
        )
        .entered();
        let limits = &self.limits;
        let mut st = self.lock();
        st.check_range(p.op, &p.src)?;
        st.check_range(p.op, &p.dst)?;
        if p.identical() {
            return Ok(());
        }
        let (ss, ds) = (p.src_dtype.size_bytes(), p.dst_dtype.size_bytes());
        let piece = piece(limits);
        let key = key(p.src_dtype, p.dst_dtype);
        for start in (0..p.n).step_by(piece) {
            let n = piece.min(p.n - start);
            let src = st.bind(limits, p.op, &sub(&p.src, start, n, ss))?;
            let dst = st.bind(limits, p.op, &sub(&p.dst, start, n, ds))?;
            let dst_off = dst.elem(ds as u64);
            let words = words(p.dst_dtype, dst_off, n as u32);
            let prm = params::Cast {
                n: n as u32,
                src_off: src.elem(ss as u64),
                dst_off,
                words,
            };
            let State { stream, .. } = &mut *st;
            let grid = limits.grid(groups_of_256(u64::from(words)))?;
            self.dispatch(stream, &key, bytes_of(&prm), &[(1, &src), (2, &dst)], grid)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_pieces_and_key() {
        assert_eq!(words(DType::F32, 3, 5), 5);
        // 16-bit elements two to a word; a start or end inside a word counts it.
        assert_eq!(words(DType::F16, 0, 4), 2);
        assert_eq!(words(DType::F16, 0, 3), 2);
        assert_eq!(words(DType::BF16, 1, 2), 2);
        assert_eq!(words(DType::BF16, 2, 2), 1);
        assert_eq!(words(DType::F16, 1, 1), 1);
        let limits = Limits {
            storage_align: 4,
            max_binding: 26,
            max_groups: 65535,
            workgroup_storage: 16 << 10,
            max_invocations: 256,
        };
        // 22 bytes, 5 f32 elements, rounded down to even.
        assert_eq!(piece(&limits), 4);
        let k = key(DType::BF16, DType::F32);
        assert_eq!((k.kernel, k.entry), (Kernel::Cast, "main"));
        assert_eq!(
            k.constants,
            [("SRC", 2f64.to_bits()), ("DST", 0f64.to_bits())]
        );
    }
}
