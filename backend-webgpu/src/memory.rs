//! Device memory: small allocations are carved out of pooled chunk buffers, large ones
//! get a buffer of their own. Every block starts at a 256-byte boundary of its buffer,
//! so an operand inside it can always be bound (storage offsets must be multiples of
//! `min_storage_buffer_offset_alignment`, at most 256), and a word that straddles the
//! end of an allocation never belongs to another one.
//!
//! Freed ranges are reused at once. That is safe because the device runs one in-order
//! stream: any later work that touches the reused range was recorded after the work
//! that read the freed one, and wgpu orders the two with a barrier. Host writes go
//! through the same stream (see `stream.rs`), never around it. The buffers of freed
//! large allocations are kept, on the same grounds, for allocations of about their size
//! until the next synchronize (`Pool::release_cached`).

use std::collections::BTreeMap;
use std::sync::Arc;

use backend_api::{BackendError, BackendResult};

use crate::errors::ErrorScope;

/// Granularity of every block.
pub(crate) const BLOCK_ALIGN: u64 = 256;

/// A block of device memory: the handle stored in the address space.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub buffer: Arc<wgpu::Buffer>,
    /// Byte offset of the block in `buffer`.
    pub offset: u64,
    /// Bytes reserved (a multiple of `BLOCK_ALIGN`).
    pub size: u64,
    /// The chunk it came from, or `None` for a buffer of its own.
    chunk: Option<usize>,
    /// Host memory imported by `with_host_memory` (a buffer wgpu cannot map, which the
    /// pool neither counts nor frees).
    imported: bool,
}

impl Block {
    /// True for a block with a `wgpu::Buffer` of its own (not carved out of a chunk).
    #[cfg_attr(
        target_arch = "wasm32",
        expect(dead_code, reason = "browsers have no mappable device memory")
    )]
    pub(crate) fn own_buffer(&self) -> bool {
        self.chunk.is_none() && !self.imported
    }

    /// True for imported host memory: never mapped through wgpu, never returned to the pool.
    pub(crate) fn imported(&self) -> bool {
        self.imported
    }

    /// The block standing for imported host memory: `size` bytes from `offset` of `buffer`.
    #[cfg(all(feature = "host-import", not(target_arch = "wasm32")))]
    pub(crate) fn imported_at(buffer: Arc<wgpu::Buffer>, offset: u64, size: u64) -> Self {
        Block {
            buffer,
            offset,
            size,
            chunk: None,
            imported: true,
        }
    }
}

struct Chunk {
    buffer: Arc<wgpu::Buffer>,
    /// Free ranges: offset -> length, coalesced.
    free: BTreeMap<u64, u64>,
    used: u64,
}

pub(crate) struct Pool {
    chunks: Vec<Option<Chunk>>,
    chunk_size: u64,
    /// Allocations up to this size are sub-allocated.
    small_max: u64,
    max_buffer_size: u64,
    usage: wgpu::BufferUsages,
    reserved: u64,
    limit: u64,
    /// Buffers of freed large allocations, kept for an allocation of about their size
    /// until the next synchronize ([`release_cached`](Self::release_cached)), when
    /// memory is refused, or past `CACHE_MAX` of them: an op's temporary (the f32
    /// weights of a `gemm_q` prefill, the f32 copies of an f16 op) then costs a buffer
    /// creation once per synchronize, not once per call. Counted in `reserved` (each
    /// buffer's size is its block's).
    cached: Vec<Arc<wgpu::Buffer>>,
}

/// Freed large buffers kept at most.
const CACHE_MAX: usize = 4;

fn round_up(v: u64, to: u64) -> Option<u64> {
    v.checked_add(to - 1).map(|x| x / to * to)
}

impl Pool {
    pub(crate) fn new(limits: &wgpu::Limits, mappable: bool, limit: Option<u64>) -> Self {
        let mut usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        if mappable {
            usage |= wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::MAP_WRITE;
        }
        let chunk_size = (16u64 << 20).min(limits.max_buffer_size / BLOCK_ALIGN * BLOCK_ALIGN);
        Self {
            chunks: Vec::new(),
            chunk_size,
            small_max: (1 << 20).min(chunk_size),
            max_buffer_size: limits.max_buffer_size,
            usage,
            reserved: 0,
            limit: limit.unwrap_or(u64::MAX),
            cached: Vec::new(),
        }
    }

    /// Bytes held from the device.
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved
    }

    fn create_buffer(
        &self,
        device: &wgpu::Device,
        size: u64,
        label: &str,
    ) -> BackendResult<wgpu::Buffer> {
        if size > self.max_buffer_size {
            tracing::warn!(
                size,
                max_buffer_size = self.max_buffer_size,
                "allocation larger than max_buffer_size"
            );
            return Err(backend_api::oom!(
                "alloc: {} exceed the adapter's max_buffer_size of {}",
                backend_api::fmt_bytes(size),
                backend_api::fmt_bytes(self.max_buffer_size)
            ));
        }
        if size > self.limit.saturating_sub(self.reserved) {
            tracing::warn!(
                size,
                reserved = self.reserved,
                limit = self.limit,
                "allocation beyond the memory limit"
            );
            return Err(backend_api::oom!(
                "alloc: a {} buffer with {} already held of the {} limit (WebGpuOptions::memory_limit)",
                backend_api::fmt_bytes(size),
                backend_api::fmt_bytes(self.reserved),
                backend_api::fmt_bytes(self.limit)
            ));
        }
        let scope = ErrorScope::push(device);
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: self.usage,
            mapped_at_creation: false,
        });
        match scope.pop() {
            None => Ok(buffer),
            Some(wgpu::Error::OutOfMemory { .. }) => Err(backend_api::oom!(
                "alloc: the device refused a {} buffer",
                backend_api::fmt_bytes(size)
            )),
            Some(e) => Err(BackendError::DeviceError(format!(
                "creating a {size}-byte buffer failed: {e}"
            ))),
        }
    }

    /// The usage of every buffer the pool creates.
    #[cfg(all(feature = "host-import", not(target_arch = "wasm32")))]
    pub(crate) fn usage(&self) -> wgpu::BufferUsages {
        self.usage
    }

    /// A block of at least `bytes` bytes (at least one `BLOCK_ALIGN`).
    pub(crate) fn alloc(&mut self, device: &wgpu::Device, bytes: u64) -> BackendResult<Block> {
        let size = round_up(bytes.max(1), BLOCK_ALIGN)
            .ok_or_else(|| backend_api::oom!("alloc: {} bytes", bytes))?;
        if size > self.small_max {
            // A cached buffer of `size` to a quarter more, the smallest such.
            let fit = self
                .cached
                .iter()
                .enumerate()
                .filter(|(_, b)| b.size() >= size && b.size() - size <= size / 4)
                .min_by_key(|(_, b)| b.size())
                .map(|(i, _)| i);
            if let Some(i) = fit {
                let buffer = self.cached.swap_remove(i);
                return Ok(Block {
                    size: buffer.size(),
                    buffer,
                    offset: 0,
                    chunk: None,
                    imported: false,
                });
            }
            let buffer = self.create_or_release(device, size, "allocation")?;
            self.reserved += size;
            return Ok(Block {
                buffer: Arc::new(buffer),
                offset: 0,
                size,
                chunk: None,
                imported: false,
            });
        }
        for (i, slot) in self.chunks.iter_mut().enumerate() {
            if let Some(chunk) = slot
                && let Some(offset) = take_first_fit(&mut chunk.free, size)
            {
                chunk.used += size;
                return Ok(Block {
                    buffer: chunk.buffer.clone(),
                    offset,
                    size,
                    chunk: Some(i),
                    imported: false,
                });
            }
        }
        let buffer = Arc::new(self.create_or_release(device, self.chunk_size, "pool chunk")?);
        self.reserved += self.chunk_size;
        let mut free = BTreeMap::new();
        free.insert(size, self.chunk_size - size);
        let chunk = Chunk {
            buffer: buffer.clone(),
            free,
            used: size,
        };
        let index = match self.chunks.iter().position(Option::is_none) {
            Some(i) => {
                self.chunks[i] = Some(chunk);
                i
            }
            None => {
                self.chunks.push(Some(chunk));
                self.chunks.len() - 1
            }
        };
        Ok(Block {
            buffer,
            offset: 0,
            size,
            chunk: Some(index),
            imported: false,
        })
    }

    /// Returns a block. An empty chunk is released when another empty one is kept, so
    /// memory goes back to the device after a burst.
    pub(crate) fn free(&mut self, block: Block) {
        if block.imported {
            return;
        }
        let Some(i) = block.chunk else {
            if self.cached.len() < CACHE_MAX {
                debug_assert_eq!(block.buffer.size(), block.size);
                self.cached.push(block.buffer);
            } else {
                self.reserved -= block.size;
            }
            return;
        };
        let chunk = self.chunks[i].as_mut().expect("block of a live chunk");
        insert_coalesced(&mut chunk.free, block.offset, block.size);
        chunk.used -= block.size;
        if chunk.used == 0 {
            let other_empty = self
                .chunks
                .iter()
                .enumerate()
                .any(|(j, c)| j != i && c.as_ref().is_some_and(|c| c.used == 0));
            if other_empty {
                self.chunks[i] = None;
                self.reserved -= self.chunk_size;
            }
        }
    }

    /// [`create_buffer`](Self::create_buffer); refused with freed buffers cached, gives
    /// them back and asks once more.
    fn create_or_release(
        &mut self,
        device: &wgpu::Device,
        size: u64,
        label: &str,
    ) -> BackendResult<wgpu::Buffer> {
        match self.create_buffer(device, size, label) {
            Err(_) if !self.cached.is_empty() => {
                self.release_cached();
                self.create_buffer(device, size, label)
            }
            result => result,
        }
    }

    /// Drops the cached buffers of freed allocations (at each synchronize, and before
    /// asking again for memory the device refused). Recorded work that still uses one
    /// keeps it alive until it has run (wgpu holds its own reference).
    pub(crate) fn release_cached(&mut self) {
        for buffer in self.cached.drain(..) {
            self.reserved -= buffer.size();
        }
    }
}

fn take_first_fit(free: &mut BTreeMap<u64, u64>, size: u64) -> Option<u64> {
    let (&offset, &len) = free.iter().find(|&(_, &len)| len >= size)?;
    free.remove(&offset);
    if len > size {
        free.insert(offset + size, len - size);
    }
    Some(offset)
}

fn insert_coalesced(free: &mut BTreeMap<u64, u64>, mut offset: u64, mut len: u64) {
    if let Some((&prev, &plen)) = free.range(..offset).next_back()
        && prev + plen == offset
    {
        free.remove(&prev);
        offset = prev;
        len += plen;
    }
    if let Some(&next_len) = free.get(&(offset + len)) {
        free.remove(&(offset + len));
        len += next_len;
    }
    free.insert(offset, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_and_coalescing() {
        let mut free = BTreeMap::from([(0u64, 1024u64)]);
        let a = take_first_fit(&mut free, 256).unwrap();
        let b = take_first_fit(&mut free, 512).unwrap();
        let c = take_first_fit(&mut free, 256).unwrap();
        assert_eq!((a, b, c), (0, 256, 768));
        assert!(take_first_fit(&mut free, 256).is_none());
        insert_coalesced(&mut free, a, 256);
        insert_coalesced(&mut free, c, 256);
        assert_eq!(free.len(), 2);
        insert_coalesced(&mut free, b, 512);
        assert_eq!(free, BTreeMap::from([(0, 1024)]));
    }
}
