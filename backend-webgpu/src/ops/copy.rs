//! copy_dtod, and the byte-copy kernel that host uploads use too: `kernels/copy.wgsl`.

use backend_api::BackendResult;
use backend_api::validate::CopyPlan;
use bytemuck::bytes_of;

use super::elementwise::elementwise_piece;
use super::{groups_of_256, union};
use crate::Ctx;
use crate::kernels::{Kernel, PipelineKey, params};
use crate::stream::{Bound, Stream};

/// How a device-to-device copy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyPath {
    /// `copy_buffer_to_buffer`: different buffers, 4-byte aligned ends and length.
    Buffer,
    /// The byte-copy kernel, in pieces of one binding.
    Kernel,
}

/// `src_abs`, `dst_abs`: byte offsets in their buffers.
fn copy_path(same_buffer: bool, src_abs: u64, dst_abs: u64, len: u64) -> CopyPath {
    if !same_buffer
        && src_abs.is_multiple_of(4)
        && dst_abs.is_multiple_of(4)
        && len.is_multiple_of(4)
    {
        CopyPath::Buffer
    } else {
        CopyPath::Kernel
    }
}

/// The destination words the byte-copy kernel writes (one thread each) for `bytes` bytes
/// at `dst_byte` of its binding: (first word, words).
fn byte_copy_words(dst_byte: u64, bytes: u64) -> (u64, u64) {
    let first_word = dst_byte / 4;
    (first_word, (dst_byte + bytes).div_ceil(4) - first_word)
}

impl Ctx {
    pub(crate) fn copy_dtod(&self, p: &CopyPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!("copy_dtod", bytes = p.src.bytes).entered();
        let limits = &self.limits;
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
        if copy_path(same_buffer, sa, da, len) == CopyPath::Buffer {
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
        let piece = elementwise_piece(limits, 1) as u64;
        let mut done = 0;
        while done < len {
            let n = piece.min(len - done);
            let src = limits.bind(p.op, "src", &src_block, src_off + done, n)?;
            let dst = limits.bind(p.op, "dst", &dst_block, dst_off + done, n)?;
            if src.overlaps(&dst) {
                // Overlapping pieces are read and written through one binding.
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
    pub(crate) fn byte_copy(
        &self,
        stream: &mut Stream,
        entry: &'static str,
        src: &Bound,
        src_byte: u64,
        dst: &Bound,
        dst_byte: u64,
        bytes: u64,
    ) -> BackendResult<()> {
        let (first_word, words) = byte_copy_words(dst_byte, bytes);
        let prm = params::Copy {
            src_off: src_byte as u32,
            dst_off: dst_byte as u32,
            bytes: bytes as u32,
            first_word: first_word as u32,
            words: words as u32,
            _pad: [0; 3],
        };
        let grid = self.limits.grid(groups_of_256(words))?;
        self.dispatch(
            stream,
            &PipelineKey::new(Kernel::Copy, entry),
            bytes_of(&prm),
            &[(1, src), (2, dst)],
            grid,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_copies_need_two_buffers_and_aligned_words() {
        assert_eq!(copy_path(false, 0, 256, 1024), CopyPath::Buffer);
        assert_eq!(copy_path(true, 0, 256, 1024), CopyPath::Kernel);
        assert_eq!(copy_path(false, 2, 256, 1024), CopyPath::Kernel);
        assert_eq!(copy_path(false, 0, 258, 1024), CopyPath::Kernel);
        assert_eq!(copy_path(false, 0, 256, 1022), CopyPath::Kernel);
        // Every word the destination bytes touch, partial ones at either end included.
        assert_eq!(byte_copy_words(0, 8), (0, 2));
        assert_eq!(byte_copy_words(3, 2), (0, 2));
        assert_eq!(byte_copy_words(5, 1), (1, 1));
        assert_eq!(byte_copy_words(4, 9), (1, 3));
        assert_eq!(byte_copy_words(7, 2), (1, 2));
        for e in ["main", "within"] {
            assert!(Kernel::Copy.entries().contains(&e));
        }
    }
}
