//! [`Buffer`]: an owned, typed device allocation that frees itself.
//!
//! The trait works on raw `u64` device pointers, which is what a framework's own tensor
//! type wraps. For everyone else, a `Buffer<T>` is the allocation with its length and
//! element type attached, freed when it is dropped; [`ptr`](Buffer::ptr) (or
//! [`at`](Buffer::at) for an interior element) is the `u64` every op takes, and
//! [`into_raw`](Buffer::into_raw) hands the allocation over to code that frees it itself.
//!
//! ```
//! use backend_api::{BackendResult, Buffer, ComputeBackend, UnaryOp};
//!
//! fn relu(b: &dyn ComputeBackend) -> BackendResult<Vec<f32>> {
//!     let x = Buffer::from_slice(b, &[-1.0f32, 2.0, -3.0])?;
//!     let y = Buffer::<f32>::zeros(b, x.len())?;
//!     b.unary(UnaryOp::Relu, x.ptr(), y.ptr(), x.len())?;
//!     y.read() // both are freed here
//! }
//! ```
//!
//! (`backends` runs this on a real backend: its crate docs and tests.)

use std::fmt;
use std::marker::PhantomData;

use crate::memory::{ElemType, Element};
use crate::{BackendResult, ComputeBackend, ComputeBackendExt, invalid};

/// An allocation of `len` elements of `T` on a backend, freed on drop.
///
/// `B` is the backend type; the default, `dyn ComputeBackend`, is what
/// `backends::default_backend()` returns. A `Buffer` borrows its backend, so it cannot
/// outlive it. Every method that touches device memory goes through the backend's
/// validated calls: a buffer whose allocation was freed behind its back (through the raw
/// pointer) gets the backend's use-after-free error, never undefined behaviour, and
/// dropping it then does nothing harmful (the failed free is ignored).
pub struct Buffer<'b, T: Element, B: ComputeBackend + ?Sized = dyn ComputeBackend + 'b> {
    backend: &'b B,
    ptr: u64,
    len: usize,
    _elem: PhantomData<T>,
}

impl<T: Element, B: ComputeBackend + ?Sized> fmt::Debug for Buffer<'_, T, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("backend", &self.backend.name())
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("len", &self.len)
            .field("dtype", &T::TYPE)
            .finish()
    }
}

/// Bytes of `len` elements of `T`, or `InvalidArgument` naming `op` when that overflows.
fn bytes_of<T: Element>(op: &str, len: usize) -> BackendResult<usize> {
    len.checked_mul(T::TYPE.size_bytes()).ok_or_else(|| {
        invalid!(
            "{op}: {len} elements of {:?} overflow the address space",
            T::TYPE
        )
    })
}

impl<'b, T: Element, B: ComputeBackend + ?Sized> Buffer<'b, T, B> {
    /// `len` elements whose contents are unspecified (as [`ComputeBackend::alloc`]'s are).
    pub fn uninit(backend: &'b B, len: usize) -> BackendResult<Self> {
        let ptr = backend.alloc(bytes_of::<T>("Buffer::uninit", len)?)?;
        Ok(Self::from_raw(backend, ptr, len))
    }

    /// `len` elements, every byte zero.
    pub fn zeros(backend: &'b B, len: usize) -> BackendResult<Self> {
        let buf = Self::uninit(backend, len)?;
        backend.copy_htod(buf.ptr, &vec![0u8; buf.byte_len()])?;
        Ok(buf)
    }

    /// A copy of `src`.
    pub fn from_slice(backend: &'b B, src: &[T]) -> BackendResult<Self> {
        let buf = Self::uninit(backend, src.len())?;
        backend.copy_htod_slice(buf.ptr, src)?;
        Ok(buf)
    }

    /// Takes ownership of `len` elements at `ptr`, an allocation's start from `backend`
    /// (e.g. one given up by [`into_raw`](Self::into_raw)): the buffer frees it on drop.
    /// Nothing is checked here; a wrong pointer or length fails at the first use.
    pub fn from_raw(backend: &'b B, ptr: u64, len: usize) -> Self {
        Self {
            backend,
            ptr,
            len,
            _elem: PhantomData,
        }
    }

    /// Gives up ownership: the allocation is no longer freed on drop, and the caller frees
    /// the returned pointer.
    pub fn into_raw(self) -> u64 {
        let ptr = self.ptr;
        std::mem::forget(self);
        ptr
    }

    /// The device pointer of the first element: what every op takes.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// The device pointer of element `index` (`index == len()` is the one-past-the-end
    /// pointer). Not checked here: an op given a pointer past the end refuses it.
    pub fn at(&self, index: usize) -> u64 {
        let offset = (index as u64).saturating_mul(T::TYPE.size_bytes() as u64);
        self.ptr.saturating_add(offset)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size in bytes.
    pub fn byte_len(&self) -> usize {
        self.len * T::TYPE.size_bytes()
    }

    /// The element type.
    pub fn dtype(&self) -> ElemType {
        T::TYPE
    }

    /// The backend it lives on.
    pub fn backend(&self) -> &'b B {
        self.backend
    }

    /// Every element, copied to the host (waits for earlier work).
    pub fn read(&self) -> BackendResult<Vec<T>> {
        self.backend.copy_dtoh_vec(self.ptr, self.len)
    }

    /// [`read`](Self::read) without blocking: the form a browser must use.
    pub async fn read_async(&self) -> BackendResult<Vec<T>> {
        self.backend.copy_dtoh_vec_async(self.ptr, self.len).await
    }

    /// Overwrites every element with `src`, which must have exactly [`len`](Self::len)
    /// elements.
    pub fn write(&self, src: &[T]) -> BackendResult<()> {
        if src.len() != self.len {
            return Err(invalid!(
                "Buffer::write: {} elements given for a buffer of {}",
                src.len(),
                self.len
            ));
        }
        self.write_at(0, src)
    }

    /// Overwrites elements `offset..offset + src.len()`, which must lie inside the buffer.
    pub fn write_at(&self, offset: usize, src: &[T]) -> BackendResult<()> {
        if offset > self.len || src.len() > self.len - offset {
            return Err(invalid!(
                "Buffer::write_at: elements [{offset}, {}) are outside the buffer's {}",
                offset.saturating_add(src.len()),
                self.len
            ));
        }
        if src.is_empty() {
            return Ok(());
        }
        self.backend.copy_htod_slice(self.at(offset), src)
    }

    /// Copies every element of `src`, a buffer of the same length, into this one.
    pub fn copy_from<C: ComputeBackend + ?Sized>(
        &self,
        src: &Buffer<'_, T, C>,
    ) -> BackendResult<()> {
        if src.len != self.len {
            return Err(invalid!(
                "Buffer::copy_from: a source of {} elements into a buffer of {}",
                src.len,
                self.len
            ));
        }
        self.backend.copy_dtod(self.ptr, src.ptr, self.byte_len())
    }

    /// Frees it now, returning the backend's error if the free fails (dropping frees too,
    /// ignoring errors).
    pub fn free(self) -> BackendResult<()> {
        let (backend, ptr) = (self.backend, self.into_raw());
        backend.free(ptr)
    }
}

impl<T: Element, B: ComputeBackend + ?Sized> Drop for Buffer<'_, T, B> {
    fn drop(&mut self) {
        // An error here means the allocation is gone already (freed through the raw
        // pointer, or the backend lost): nothing is left to release.
        let _ = self.backend.free(self.ptr);
    }
}
