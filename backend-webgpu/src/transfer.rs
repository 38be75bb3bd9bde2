//! Host transfers: `copy_htod` (through the staging belt, the upload arena, or by mapping
//! unified memory) and `copy_dtoh` (a staging readback, pipelined chunks for large
//! reads, or mapping unified memory).

use backend_api::validate::HostCopyPlan;
use backend_api::{BackendError, BackendResult};

#[cfg(not(target_arch = "wasm32"))]
use crate::memory::Block;
#[cfg(not(target_arch = "wasm32"))]
use crate::stream::Stream;
use crate::stream::{MapDone, Readback};
use crate::{Ctx, State};

impl Ctx {
    /// Counts `bytes` copied through an intermediate host-visible buffer.
    pub(crate) fn count_staged(&self, bytes: usize) {
        self.staged
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn copy_htod(&self, plan: &HostCopyPlan, data: &[u8]) -> BackendResult<()> {
        const OP: &str = "copy_htod";
        let operand = plan.device;
        let _span = tracing::debug_span!("copy_htod", bytes = data.len()).entered();
        let mut st = self.lock();
        let (block, off) = st.block(OP, &operand)?;
        let abs = block.offset + off;
        let aligned = abs.is_multiple_of(4) && data.len().is_multiple_of(4);
        #[cfg(not(target_arch = "wasm32"))]
        if aligned && self.mappable && !block.imported() && st.stream.is_empty() {
            // Unified memory with nothing recorded that this write could overtake.
            return write_mapped(self, &mut st.stream, &block, abs, data);
        }
        #[cfg(target_arch = "wasm32")]
        if aligned {
            // In a browser, `writeBuffer` takes a view of linear memory: the bytes go from
            // the caller's slice to the browser with no copy of ours (the staging belt
            // would copy them into a temporary, then into its mapped buffer). Recorded work
            // is submitted first, so that the write cannot overtake it.
            st.stream.flush(&self.queue);
            self.queue.write_buffer(&block.buffer, abs, data);
            return Ok(());
        }
        self.count_staged(data.len());
        if aligned {
            let mut in_flight = std::collections::VecDeque::new();
            for (i, chunk) in data
                .chunks(crate::stream::UPLOAD_CHUNK as usize)
                .enumerate()
            {
                let at = abs + (i as u64) * crate::stream::UPLOAD_CHUNK;
                st.stream
                    .upload(&self.device, &self.queue, &block.buffer, at, chunk);
                if data.len() as u64 > crate::stream::UPLOAD_CHUNK {
                    // Start this chunk's transfer now; keep at most four in flight so
                    // the staging belt recycles its chunks instead of growing.
                    in_flight.push_back(st.stream.flush(&self.queue));
                    if in_flight.len() > 4 {
                        let oldest = in_flight.pop_front().expect("non-empty");
                        self.wait(oldest)?;
                    }
                }
            }
            return Ok(());
        }
        let piece = st.stream.upload_capacity() as usize;
        let mut done = 0;
        while done < data.len() {
            let chunk = &data[done..(done + piece).min(data.len())];
            let staged = st
                .stream
                .stage(&self.queue, chunk)
                .expect("chunk fits the upload arena");
            let target_abs = abs + done as u64;
            if target_abs.is_multiple_of(4) && chunk.len().is_multiple_of(4) {
                st.stream.copy(
                    &self.device,
                    &self.queue,
                    &staged.buffer,
                    staged.offset,
                    &block.buffer,
                    target_abs,
                    chunk.len() as u64,
                );
            } else {
                let dst =
                    self.limits
                        .bind(OP, "dst", &block, off + done as u64, chunk.len() as u64)?;
                self.byte_copy(
                    &mut st.stream,
                    "main",
                    &staged,
                    0,
                    &dst,
                    dst.byte,
                    chunk.len() as u64,
                )?;
            }
            done += chunk.len();
        }
        Ok(())
    }

    pub(crate) async fn copy_dtoh(&self, dst: &mut [u8], plan: &HostCopyPlan) -> BackendResult<()> {
        let operand = plan.device;
        let readback = {
            let mut st = self.lock();
            let State { space, stream, .. } = &mut *st;
            let r = space.resolve(plan.op, &operand)?;
            let _span = tracing::debug_span!("copy_dtoh", bytes = dst.len()).entered();
            #[cfg(not(target_arch = "wasm32"))]
            if self.mappable && !r.handle.imported() {
                return read_mapped(self, stream, r.handle, r.offset, dst);
            }
            #[cfg(not(target_arch = "wasm32"))]
            if dst.len() as u64 > 2 * READBACK_CHUNK {
                read_pipelined(self, stream, r.handle, r.offset, dst)?;
                self.count_staged(dst.len());
                return self.errors.take();
            }
            stream.readback_many(
                &self.device,
                &self.queue,
                &[(r.handle.buffer.clone(), r.handle.offset + r.offset, r.bytes)],
            )
        };
        self.finish_readback(readback, &mut [dst]).await
    }

    /// Several readbacks in one submission and one wait, every range resolved before
    /// anything is recorded (so a bad one fails the call with nothing read or written).
    pub(crate) async fn copy_dtoh_many(
        &self,
        reads: &mut [(HostCopyPlan, &mut [u8])],
    ) -> BackendResult<()> {
        let readback = {
            let mut st = self.lock();
            let State { space, stream, .. } = &mut *st;
            let mut ranges = Vec::with_capacity(reads.len());
            for (plan, _) in reads.iter() {
                let r = space.resolve(plan.op, &plan.device)?;
                ranges.push((r.handle.buffer.clone(), r.handle.offset + r.offset, r.bytes));
            }
            let _span = tracing::debug_span!("copy_dtoh_many", reads = reads.len()).entered();
            stream.readback_many(&self.device, &self.queue, &ranges)
        };
        let mut dsts: Vec<&mut [u8]> = reads.iter_mut().map(|(_, d)| &mut **d).collect();
        self.finish_readback(readback, &mut dsts).await
    }

    /// Waits for a submitted readback's mapping, copies each read out to its destination,
    /// and gives the staging buffer back for reuse.
    async fn finish_readback(
        &self,
        readback: Readback,
        dsts: &mut [&mut [u8]],
    ) -> BackendResult<()> {
        let Readback {
            staging,
            starts,
            len,
            index,
            mapped,
        } = readback;
        let result = wait_mapped(self, mapped, len, index).await.and_then(|()| {
            let view = staging
                .slice(..len)
                .get_mapped_range()
                .map_err(mapping_failed)?;
            for (dst, &start) in dsts.iter_mut().zip(&starts) {
                let n = dst.len();
                // In a browser, straight from the mapped ArrayBuffer into the destination
                // (dereferencing the view would first copy the whole mapping into a
                // temporary in linear memory).
                #[cfg(target_arch = "wasm32")]
                view.as_uint8array()
                    .subarray(start as u32, (start as usize + n) as u32)
                    .copy_to(dst);
                #[cfg(not(target_arch = "wasm32"))]
                copy_out(dst, &view[start as usize..][..n]);
                self.count_staged(n);
            }
            Ok(())
        });
        if result.is_ok() {
            staging.unmap();
            self.lock().stream.return_staging(staging);
        }
        result?;
        self.errors.take()
    }
}

/// Readbacks up to this size spin-poll for completion instead of blocking.
#[cfg(not(target_arch = "wasm32"))]
const SPIN_MAX: u64 = 1 << 20;

/// Large readbacks are split into chunks of this size and pipelined (native).
#[cfg(not(target_arch = "wasm32"))]
const READBACK_CHUNK: u64 = 16 << 20;

/// Copies mapped device memory to the caller's buffer, on several threads when it is
/// large (one thread does not saturate the memory system). (Native: a browser copies
/// from the mapped `ArrayBuffer` directly.)
#[cfg(not(target_arch = "wasm32"))]
fn copy_out(dst: &mut [u8], src: &[u8]) {
    #[cfg(not(target_arch = "wasm32"))]
    if dst.len() >= 8 << 20 {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let part = dst.len().div_ceil(threads);
        std::thread::scope(|s| {
            for (d, c) in dst.chunks_mut(part).zip(src.chunks(part)) {
                s.spawn(move || d.copy_from_slice(c));
            }
        });
        return;
    }
    dst.copy_from_slice(src);
}

/// Waits until a readback's scheduled mapping (`[0, len)`, submission `index`) is done.
async fn wait_mapped(
    ctx: &Ctx,
    rx: MapDone,
    len: u64,
    index: wgpu::SubmissionIndex,
) -> BackendResult<()> {
    #[cfg(not(target_arch = "wasm32"))]
    let mut rx = rx;
    #[cfg(not(target_arch = "wasm32"))]
    {
        // A small readback is latency-bound: poll without sleeping for a moment (a
        // blocking wait adds tens of microseconds of wake-up), then block.
        let spin_until = std::time::Instant::now() + ctx.tuning.readback_spin;
        loop {
            if len > SPIN_MAX || std::time::Instant::now() > spin_until {
                ctx.wait_idle(index)?;
                break;
            }
            ctx.device
                .poll(wgpu::PollType::Poll)
                .map_err(|e| BackendError::DeviceError(format!("polling the device: {e}")))?;
            if let Ok(Some(r)) = rx.try_recv() {
                return r.map_err(|e| {
                    BackendError::DeviceError(format!("mapping a readback buffer failed: {e}"))
                });
            }
            std::hint::spin_loop();
        }
    }
    #[cfg(target_arch = "wasm32")]
    let _ = (ctx, index, len);
    match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(BackendError::DeviceError(format!(
            "mapping a readback buffer failed: {e}"
        ))),
        Err(_) => Err(BackendError::DeviceError(
            "the device dropped a readback".into(),
        )),
    }
}

fn mapping_failed(e: impl std::fmt::Display) -> BackendError {
    BackendError::DeviceError(format!("reading mapped memory failed: {e}"))
}

/// A mapped (or map-pending) buffer range, unmapped on every exit path: a buffer left
/// mapped would fail every later submission that uses it.
#[cfg(not(target_arch = "wasm32"))]
struct Mapping<'a> {
    buffer: &'a wgpu::Buffer,
    armed: bool,
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for Mapping<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.buffer.unmap();
        }
    }
}

/// Maps `range` of `buffer` once submission `index` is done, blocking (native).
#[cfg(not(target_arch = "wasm32"))]
fn map_blocking<'a>(
    ctx: &Ctx,
    buffer: &'a wgpu::Buffer,
    range: std::ops::Range<u64>,
    mode: wgpu::MapMode,
    index: wgpu::SubmissionIndex,
) -> BackendResult<Mapping<'a>> {
    let (tx, rx) = std::sync::mpsc::channel();
    buffer.slice(range).map_async(mode, move |r| {
        let _ = tx.send(r);
    });
    let mut mapping = Mapping {
        buffer,
        armed: true,
    };
    ctx.wait_idle(index)?;
    // The callback runs inside the poll; if it has not, poll until it does (bounded, so
    // a driver that never answers cannot hang the caller).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let result = loop {
        match rx.try_recv() {
            Ok(r) => break r,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                mapping.armed = false;
                return Err(BackendError::DeviceError(
                    "the device dropped a mapping".into(),
                ));
            }
            Err(std::sync::mpsc::TryRecvError::Empty) if std::time::Instant::now() > deadline => {
                return Err(BackendError::DeviceError(
                    "mapping device memory timed out".into(),
                ));
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                ctx.device
                    .poll(wgpu::PollType::Poll)
                    .map_err(|e| BackendError::DeviceError(format!("polling the device: {e}")))?;
                std::thread::yield_now();
            }
        }
    };
    match result {
        Ok(()) => Ok(mapping),
        Err(e) => {
            mapping.armed = false;
            // A failed map usually follows a failed submission: report that cause.
            ctx.errors.take()?;
            Err(BackendError::DeviceError(format!(
                "mapping device memory failed: {e}"
            )))
        }
    }
}

/// Device memory mapped for reading in place (native, unified memory): `copy_dtoh`'s
/// mapped read, and the memory of a `Read` host view of an allocation with a buffer of
/// its own.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) struct MappedRead {
    view: Option<wgpu::BufferView>,
    buffer: std::sync::Arc<wgpu::Buffer>,
    /// The viewed bytes inside the mapped range.
    skip: usize,
    len: usize,
}

#[cfg(not(target_arch = "wasm32"))]
impl MappedRead {
    /// Maps `len` bytes at `offset` of `block` once the recorded work is done.
    pub(crate) fn new(
        ctx: &Ctx,
        stream: &mut Stream,
        block: &Block,
        offset: u64,
        len: u64,
    ) -> BackendResult<Self> {
        let index = stream.flush(&ctx.queue);
        let abs = block.offset + offset;
        let (start, end) = (abs / 8 * 8, (abs + len).div_ceil(4) * 4);
        let mut mapping = map_blocking(ctx, &block.buffer, start..end, wgpu::MapMode::Read, index)?;
        let view = block
            .buffer
            .slice(start..end)
            .get_mapped_range()
            .map_err(mapping_failed)?;
        // The view now owns the mapping; `end` unmaps.
        mapping.armed = false;
        Ok(Self {
            view: Some(view),
            buffer: block.buffer.clone(),
            skip: (abs - start) as usize,
            len: len as usize,
        })
    }

    /// The viewed bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.view {
            Some(v) => &v[self.skip..self.skip + self.len],
            None => &[],
        }
    }

    /// Drops the view and unmaps (once; dropping does it too).
    pub(crate) fn unmap(&mut self) {
        if self.view.take().is_some() {
            self.buffer.unmap();
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for MappedRead {
    fn drop(&mut self) {
        self.unmap();
    }
}

/// Reads device memory by mapping it (unified-memory adapters): one copy, no staging.
#[cfg(not(target_arch = "wasm32"))]
fn read_mapped(
    ctx: &Ctx,
    stream: &mut Stream,
    block: &Block,
    offset: u64,
    dst: &mut [u8],
) -> BackendResult<()> {
    let mut mapped = MappedRead::new(ctx, stream, block, offset, dst.len() as u64)?;
    dst.copy_from_slice(mapped.bytes());
    mapped.unmap();
    ctx.errors.take()
}

/// Reads a large range in chunks through a ring of staging buffers: the device copies
/// chunk i + 3 while the host copies chunk i out (native).
#[cfg(not(target_arch = "wasm32"))]
fn read_pipelined(
    ctx: &Ctx,
    stream: &mut Stream,
    block: &Block,
    offset: u64,
    dst: &mut [u8],
) -> BackendResult<()> {
    use READBACK_CHUNK as CHUNK;
    const RING: usize = 3;
    let abs = block.offset + offset;
    let total = dst.len() as u64;
    let chunks = total.div_ceil(CHUNK) as usize;
    let staging: Vec<_> = (0..RING.min(chunks))
        .map(|_| stream.take_staging(&ctx.device, CHUNK + 8))
        .collect();
    type Pending = (
        wgpu::SubmissionIndex,
        u64,
        u64,
        std::sync::mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
    );
    let start = |stream: &mut Stream, i: usize, buf: &wgpu::Buffer| -> Pending {
        let from = abs + i as u64 * CHUNK;
        let len = CHUNK.min(total - i as u64 * CHUNK);
        let (s0, s1) = (from / 4 * 4, (from + len).div_ceil(4) * 4);
        stream.copy(&ctx.device, &ctx.queue, &block.buffer, s0, buf, 0, s1 - s0);
        let index = stream.flush(&ctx.queue);
        let (tx, rx) = std::sync::mpsc::channel();
        buf.slice(..s1 - s0)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        (index, from - s0, s1 - s0, rx)
    };
    let mut pending: Vec<Option<Pending>> = (0..staging.len())
        .map(|i| Some(start(stream, i, &staging[i])))
        .collect();
    let mut result = Ok(());
    for i in 0..chunks {
        let slot = i % RING;
        let (index, skip, len, rx) = pending[slot].take().expect("started");
        ctx.wait_idle(index)?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                result = Err(BackendError::DeviceError(format!(
                    "mapping a readback buffer failed: {e}"
                )));
                break;
            }
            Err(_) => {
                result = Err(BackendError::DeviceError(
                    "the device dropped a readback".into(),
                ));
                break;
            }
        }
        {
            let view = staging[slot]
                .slice(..len)
                .get_mapped_range()
                .map_err(mapping_failed)?;
            let at = i * CHUNK as usize;
            let n = (CHUNK as usize).min(dst.len() - at);
            copy_out(&mut dst[at..at + n], &view[skip as usize..][..n]);
        }
        staging[slot].unmap();
        if i + RING < chunks {
            pending[slot] = Some(start(stream, i + RING, &staging[slot]));
        }
    }
    if result.is_ok() {
        for b in staging {
            stream.return_staging(b);
        }
    }
    result
}

/// Writes device memory by mapping it (unified-memory adapters, nothing recorded).
#[cfg(not(target_arch = "wasm32"))]
fn write_mapped(
    ctx: &Ctx,
    stream: &mut Stream,
    block: &Block,
    abs: u64,
    data: &[u8],
) -> BackendResult<()> {
    let index = stream.flush(&ctx.queue);
    let (start, end) = (abs / 8 * 8, abs + data.len() as u64);
    let mapping = map_blocking(ctx, &block.buffer, start..end, wgpu::MapMode::Write, index)?;
    {
        let mut view = block
            .buffer
            .slice(start..end)
            .get_mapped_range_mut()
            .map_err(mapping_failed)?;
        view.slice((abs - start) as usize..).copy_from_slice(data);
    }
    drop(mapping);
    Ok(())
}
