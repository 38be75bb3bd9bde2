//! Host memory imported in place (feature `host-import`): the only unsafe code of the crate.
//!
//! [`FastCpuBackend::with_host_memory`](crate::FastCpuBackend::with_host_memory) lends the
//! backend a `&mut [u8]` for the length of a closure; while it runs, the bytes are one
//! allocation of the address space and every op reads and writes them where they are (a
//! Wasm guest's linear memory, a memory-mapped file, a buffer of the framework's). The
//! borrow cannot be stored in the backend's state with its lifetime (the state outlives
//! the closure), so it is kept here as a pointer and a length, and handed out as slices
//! only while the closure's `&mut` borrow is known to be live.

use std::ptr::NonNull;

use backend_api::{BackendError, BackendResult};

/// Bytes lent by the caller of `with_host_memory`: one per import, never cloned, so a
/// `&mut HostRange` is the only way to its bytes, as a `&mut Vec` is for an allocation.
#[derive(Debug)]
pub(crate) struct HostRange {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a HostRange stands for a `&mut [u8]` (which is `Send`) that its owner cannot use
// while the import lasts; it is only ever reached through the backend's mutex.
unsafe impl Send for HostRange {}

impl HostRange {
    /// Records `bytes`, which must stay borrowed (and unused by anyone else) until
    /// [`HostRange`] is dropped: `with_host_memory` removes it from the state before it
    /// returns or unwinds, while its `&mut [u8]` argument is still borrowed.
    pub(crate) fn new(bytes: &mut [u8]) -> BackendResult<Self> {
        // Every f32 view of an operand is cast from these bytes: the start must be as
        // aligned as a `Vec<u32>`'s (a Wasm memory's start is page-aligned).
        if !(bytes.as_ptr() as usize).is_multiple_of(4) {
            return Err(BackendError::InvalidArgument(format!(
                "with_host_memory: host memory at {:p} ({} bytes) is not 4-byte aligned",
                bytes.as_ptr(),
                bytes.len()
            )));
        }
        let len = bytes.len();
        Ok(Self {
            ptr: NonNull::from(bytes).cast(),
            len,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr`/`len` come from a live `&mut [u8]` whose borrow outlasts this
        // HostRange (see `new`); the shared borrow of `self` excludes `bytes_mut` for as
        // long as the returned slice lives, and nothing else reaches the memory.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; the exclusive borrow of the only HostRange over these
        // bytes makes the returned slice the only reference to them while it lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}
