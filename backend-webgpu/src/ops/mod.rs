//! Recording each op: resolve the validated operands to buffer ranges, fill the kernel's
//! parameter block, pick the entry point and grid, dispatch.
//!
//! One file per op family, beside its WGSL in `kernels/`. Each one's kernel choice is a
//! pure function of plain numbers and flags (`choose` and friends), unit-tested without a
//! GPU; the recording code resolves operands, calls it, and dispatches what it says.
//! Host transfers are `transfer.rs`.

mod attention;
mod broadcast;
mod cast;
mod conv2d;
mod copy;
mod elementwise;
mod gemm;
pub(crate) mod gemm_q;
mod reduce;
mod rows;

use std::cell::Cell;

use backend_api::{BackendError, BackendResult, DType, Operand};

use crate::kernels::PipelineKey;
use crate::memory::Block;
use crate::stream::{Bound, Limits, Stream};
use crate::{Ctx, State};

/// Saturating conversion for kernel parameters: any value that does not fit is beyond
/// every binding anyway, and `bind` has refused it already.
fn u32_saturating(v: usize) -> u32 {
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
    fn bind(&self, limits: &Limits, op: &str, operand: &Operand) -> BackendResult<Bound> {
        let r = self.space.resolve(op, operand)?;
        limits.bind(op, operand.name, r.handle, r.offset, r.bytes)
    }

    /// Resolves and binds an operand with the binding's end rounded to 16 bytes, so the
    /// kernel may also view it as vec4s.
    fn bind16(&self, limits: &Limits, op: &str, operand: &Operand) -> BackendResult<Bound> {
        let r = self.space.resolve(op, operand)?;
        limits.bind_granule(op, operand.name, r.handle, r.offset, r.bytes, 16)
    }

    /// Binds an operand the op may not touch (`None`: a placeholder).
    fn bind_opt(
        &self,
        limits: &Limits,
        op: &str,
        operand: Option<&Operand>,
    ) -> BackendResult<Bound> {
        match operand {
            Some(o) => self.bind(limits, op, o),
            None => Ok(self.stream.unused()),
        }
    }

    /// Resolves a whole operand (checking its range) without binding it.
    pub(crate) fn check_range(&self, op: &str, operand: &Operand) -> BackendResult<()> {
        self.space.resolve(op, operand).map(drop)
    }

    /// The block an operand lies in and the operand's offset in it.
    pub(crate) fn block(&self, op: &str, operand: &Operand) -> BackendResult<(Block, u64)> {
        let r = self.space.resolve(op, operand)?;
        Ok((r.handle.clone(), r.offset))
    }
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

/// Bytes `[start, start + n)` elements of an operand, as an operand.
fn sub(o: &Operand, start: usize, n: usize, elem_bytes: usize) -> Operand {
    Operand {
        name: o.name,
        ptr: o.ptr + (start * elem_bytes) as u64,
        bytes: (n * elem_bytes) as u64,
    }
}

impl Ctx {
    /// Records one dispatch of `key`'s pipeline (nothing for an empty grid). Called with
    /// the state lock held (`stream` is in it).
    ///
    /// A pipeline not built yet is not built here when this is the first dispatch of an
    /// op run through [`Ctx::outside_lock`]: the op returns at once, having recorded
    /// nothing, and `outside_lock` builds the pipeline with the state lock released and
    /// runs the op again. So a first-use kernel compile (milliseconds to seconds) never
    /// blocks other threads' calls. A later dispatch of the same op (one that already
    /// recorded work) builds it here, under the lock, as a rare fallback. Lock order:
    /// state, then pipelines.
    fn dispatch(
        &self,
        stream: &mut Stream,
        key: &PipelineKey,
        params: &[u8],
        bindings: &[(u32, &Bound)],
        groups: [u32; 3],
    ) -> BackendResult<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        // Every kernel built on common.wgsl takes the adapter's f16 conversions where the
        // probe at initialisation found them exact.
        let hw;
        let key = if self.hw_f16.load(std::sync::atomic::Ordering::Relaxed)
            && key.kernel != crate::kernels::Kernel::GemmCoop
        {
            hw = key.clone().with(crate::kernels::HW_F16, 1.0);
            &hw
        } else {
            key
        };
        let state = MISS.with(Cell::take);
        let pipeline = match (self.cached_pipeline(key), state) {
            (None, Miss::Armed) => {
                MISS.with(|m| m.set(Miss::Found(Box::new(key.clone()))));
                return Err(BackendError::Unsupported(MISSED.into()));
            }
            (cached, state) => {
                // Inside `outside_lock`, this op has recorded work from now on.
                let inside = state != Miss::Off;
                MISS.with(|m| m.set(if inside { Miss::Recorded } else { Miss::Off }));
                match cached {
                    Some(p) => p,
                    None => self.pipeline(key)?,
                }
            }
        };
        stream.dispatch(
            &self.device,
            &self.queue,
            &pipeline,
            key.entry,
            params,
            bindings,
            groups,
        );
        Ok(())
    }

    /// Runs `record` (an op's recording, which takes the state lock itself) so that a
    /// pipeline it needs first is built with the state lock released; see
    /// [`dispatch`](Self::dispatch).
    pub(crate) fn outside_lock(
        &self,
        record: impl Fn(&Ctx) -> BackendResult<()>,
    ) -> BackendResult<()> {
        loop {
            MISS.with(|m| m.set(Miss::Armed));
            let result = record(self);
            match MISS.with(Cell::take) {
                Miss::Found(key) => {
                    debug_assert!(
                        matches!(&result, Err(BackendError::Unsupported(m)) if m == MISSED)
                    );
                    // Built without the state lock; the next round finds it cached. Each
                    // round builds one more of the op's finitely many pipelines.
                    self.pipeline(&key)?;
                }
                _ => return result,
            }
        }
    }
}

/// Where the op being recorded on this thread is, for [`Ctx::dispatch`].
#[derive(Debug, Default, PartialEq, Eq)]
enum Miss {
    /// Not inside [`Ctx::outside_lock`]: build pipelines where they are needed.
    #[default]
    Off,
    /// Inside it, nothing recorded yet: a missing pipeline ends the op early.
    Armed,
    /// Inside it, something recorded: a missing pipeline is built in place.
    Recorded,
    /// The op ended early for this pipeline.
    Found(Box<PipelineKey>),
}

thread_local! {
    static MISS: Cell<Miss> = const { Cell::new(Miss::Off) };
}

/// The error an op returns when it ended early for a pipeline (never seen by callers:
/// [`Ctx::outside_lock`] consumes it).
const MISSED: &str = "internal: a pipeline is to be built outside the state lock";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_saturating_saturates() {
        assert_eq!(u32_saturating(7), 7);
        assert_eq!(u32_saturating(u32::MAX as usize), u32::MAX);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(u32_saturating(u32::MAX as usize + 1), u32::MAX);
    }

    #[test]
    fn dtype_codes_match_the_wgsl() {
        assert_eq!(dtype_code(DType::F32), 0.0);
        assert_eq!(dtype_code(DType::F16), 1.0);
        assert_eq!(dtype_code(DType::BF16), 2.0);
    }

    #[test]
    fn sub_takes_whole_elements() {
        let o = Operand {
            name: "x",
            ptr: 0x1000,
            bytes: 400,
        };
        let s = sub(&o, 10, 5, 4);
        assert_eq!((s.name, s.ptr, s.bytes), ("x", 0x1000 + 40, 20));
        assert_eq!(groups_of_256(0), 0);
        assert_eq!(groups_of_256(257), 2);
    }
}
