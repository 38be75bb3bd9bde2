//! Host views ([`ComputeBackend::map_host`](crate::ComputeBackend::map_host)): device bytes
//! seen as a host `[u8]`, with zero copies where the memory is shared.
//!
//! A backend lends the bytes through [`ViewMemory`]: the CPU backends lend the
//! allocation itself (its `Vec<u8>` leaves the address space while the view lives), a GPU
//! backend without mappable memory lends a staged copy that it writes back when the view
//! ends. While a view lives, the address space refuses every other use of the bytes it
//! covers ([`AddressSpace::add_view`](crate::AddressSpace::add_view)), so a view never
//! races an op: the op fails with `InvalidArgument` saying so.

use std::ops::Deref;

use crate::{AddressSpace, BackendError, BackendResult, Operand, invalid};

/// What a view may do with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapMode {
    /// Read only: [`HostView::bytes_mut`] refuses.
    Read,
    /// Write: the view's initial contents are unspecified (the device bytes where the
    /// view is the device memory, zeros where it is staged); what is written is
    /// published when the view ends.
    Write,
    /// Read the device bytes, write, publish at the end.
    ReadWrite,
}

impl MapMode {
    /// True when the view starts with the device bytes.
    pub const fn reads(self) -> bool {
        matches!(self, MapMode::Read | MapMode::ReadWrite)
    }

    /// True when the view's bytes are published when it ends.
    pub const fn writes(self) -> bool {
        matches!(self, MapMode::Write | MapMode::ReadWrite)
    }
}

/// The memory behind a [`HostView`], lent by a backend.
pub trait ViewMemory: Send {
    /// The viewed bytes.
    fn bytes(&self) -> &[u8];
    /// The viewed bytes, mutably (only called for modes that write).
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Ends the view (called once): gives lent memory back, publishes the bytes when
    /// `publish` (a staged view writes them to the device), and lifts the address
    /// space's refusal of the covered bytes.
    fn end(&mut self, publish: bool) -> BackendResult<()>;
}

/// Device bytes as a host `[u8]` ([`ComputeBackend::map_host`](crate::ComputeBackend::map_host)).
/// Derefs to the bytes; [`bytes_mut`](Self::bytes_mut) for modes that write;
/// [`finish`](Self::finish) ends it and reports an error of the publication, which a drop
/// can only log.
pub struct HostView<'a> {
    ptr: u64,
    mode: MapMode,
    memory: Option<Box<dyn ViewMemory + 'a>>,
}

impl std::fmt::Debug for HostView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostView")
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("mode", &self.mode)
            .field("bytes", &self.len())
            .finish()
    }
}

impl<'a> HostView<'a> {
    /// A view of the bytes at `ptr` held by `memory` (for backends).
    pub fn new(ptr: u64, mode: MapMode, memory: Box<dyn ViewMemory + 'a>) -> Self {
        Self {
            ptr,
            mode,
            memory: Some(memory),
        }
    }

    /// A view of no bytes (a zero-length `map_host`).
    pub fn empty(ptr: u64, mode: MapMode) -> Self {
        Self {
            ptr,
            mode,
            memory: None,
        }
    }

    /// The device address it views.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Its mode.
    pub fn mode(&self) -> MapMode {
        self.mode
    }

    /// The bytes, mutably; `InvalidArgument` for a `Read` view.
    pub fn bytes_mut(&mut self) -> BackendResult<&mut [u8]> {
        if !self.mode.writes() {
            return Err(invalid!(
                "host view: the view of {:#x} is Read-only; map it with Write or ReadWrite",
                self.ptr
            ));
        }
        Ok(match self.memory.as_mut() {
            Some(m) => m.bytes_mut(),
            None => &mut [],
        })
    }

    /// The bytes as `T`s; `InvalidArgument` when they are not aligned or sized for `T`.
    pub fn typed<T: bytemuck::Pod>(&self) -> BackendResult<&[T]> {
        bytemuck::try_cast_slice(self).map_err(|e| cast_error::<T>(self.ptr, e))
    }

    /// The bytes as mutable `T`s (modes that write).
    pub fn typed_mut<T: bytemuck::Pod>(&mut self) -> BackendResult<&mut [T]> {
        let ptr = self.ptr;
        bytemuck::try_cast_slice_mut(self.bytes_mut()?).map_err(|e| cast_error::<T>(ptr, e))
    }

    /// Ends the view: publishes what was written (modes that write) and lets other calls
    /// use the bytes again. Dropping the view does the same but can only log an error.
    pub fn finish(mut self) -> BackendResult<()> {
        self.end()
    }

    fn end(&mut self) -> BackendResult<()> {
        match self.memory.take() {
            Some(mut m) => m.end(self.mode.writes()),
            None => Ok(()),
        }
    }
}

fn cast_error<T>(ptr: u64, e: bytemuck::PodCastError) -> BackendError {
    invalid!(
        "host view: the view of {ptr:#x} cannot be seen as {} ({e:?})",
        std::any::type_name::<T>()
    )
}

impl Deref for HostView<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.memory {
            Some(m) => m.bytes(),
            None => &[],
        }
    }
}

impl Drop for HostView<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            tracing::warn!(ptr = self.ptr, error = %e, "ending a host view failed; use HostView::finish to see such errors");
        }
    }
}

/// A view that holds an allocation's own `Vec<T>` (taken out of the address space while
/// the view lives) and hands it back at the end: the CPU backends' zero-copy views.
pub struct LentVec<'a, T: bytemuck::Pod + Send = u8> {
    buf: Vec<T>,
    /// The viewed byte range of `buf`.
    start: usize,
    end: usize,
    give_back: Option<GiveBack<'a, T>>,
}

type GiveBack<'a, T> = Box<dyn FnOnce(Vec<T>) -> BackendResult<()> + Send + 'a>;

/// Where a lent allocation goes back to: its address space, its start and the view's id.
#[derive(Debug, Clone, Copy)]
pub struct Lent {
    /// The allocation's start.
    pub base: u64,
    /// The view's registration ([`AddressSpace::add_view`]).
    pub id: u64,
}

impl Lent {
    /// Puts `buf` back as the allocation's memory and ends the view.
    pub fn give_back<T>(self, space: &mut AddressSpace<Vec<T>>, buf: Vec<T>) {
        if let Some(a) = space.get_mut(self.base) {
            a.handle = buf;
        }
        space.end_view(self.id);
    }
}

impl<'a, T: bytemuck::Pod + Send> LentVec<'a, T> {
    /// The CPU backends' `map_host`: takes the allocation that `device` lies in out of
    /// `space` (registering a view of the whole allocation) and lends its bytes to a
    /// view; `give_back` receives the memory when the view ends and must return it
    /// ([`Lent::give_back`]).
    pub fn lend(
        space: &mut AddressSpace<Vec<T>>,
        op: &str,
        device: &Operand,
        mode: MapMode,
        give_back: impl FnOnce(Lent, Vec<T>) -> BackendResult<()> + Send + 'a,
    ) -> BackendResult<HostView<'a>> {
        let r = space.resolve(op, device)?;
        let (base, offset, len) = (r.base, r.offset, r.bytes);
        let id = space.add_view(base, offset, len, true);
        let buf = std::mem::take(&mut space.get_mut(base).expect("resolved above").handle);
        let lent = Lent { base, id };
        let start = offset as usize;
        let memory = LentVec::new(buf, start, start + len as usize, move |buf| {
            give_back(lent, buf)
        });
        Ok(HostView::new(device.ptr, mode, Box::new(memory)))
    }

    /// Lends bytes `start..end` of `buf`; `give_back` receives `buf` when the view ends.
    pub fn new(
        buf: Vec<T>,
        start: usize,
        end: usize,
        give_back: impl FnOnce(Vec<T>) -> BackendResult<()> + Send + 'a,
    ) -> Self {
        Self {
            buf,
            start,
            end,
            give_back: Some(Box::new(give_back)),
        }
    }
}

impl<T: bytemuck::Pod + Send> ViewMemory for LentVec<'_, T> {
    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<T, u8>(&self.buf)[self.start..self.end]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<T, u8>(&mut self.buf)[self.start..self.end]
    }

    fn end(&mut self, _publish: bool) -> BackendResult<()> {
        match self.give_back.take() {
            Some(f) => f(std::mem::take(&mut self.buf)),
            None => Ok(()),
        }
    }
}
