//! The in-order command stream: ops are recorded into one command encoder (inside one
//! open compute pass where possible) and submitted at sync points or every
//! `SUBMIT_EVERY` commands.
//!
//! Host writes never overtake recorded work. `queue.write_buffer` lands before the
//! *next submission* executes, so writing straight into device memory while commands
//! are recorded but not submitted would let the write jump ahead of them. When the
//! encoder holds commands, the bytes go to a per-submission upload arena instead, and a
//! recorded copy moves them into place in program order. Kernel parameters use a
//! uniform arena the same way.

use std::sync::Arc;

use backend_api::{BackendError, BackendResult};

use crate::memory::Block;

/// Commands recorded before a submission is forced.
const SUBMIT_EVERY: u32 = 64;
/// Bytes of kernel parameters per submission (256 per dispatch).
const PARAMS_ARENA: u64 = 64 * 1024;
/// Parameter buffers used in turn, one a submission. One write a submission to a single
/// buffer made the tiny dispatch 9-10 us against 7 us with a write a dispatch; two took it
/// to 5.2 us (H100, docs/PERFORMANCE.md, session 11).
const PARAMS_BUFFERS: usize = 2;
/// Bytes of host uploads staged per submission.
const UPLOAD_ARENA: u64 = 8 << 20;
/// Largest kernel parameter block, as padded in the arena.
const PARAMS_SLOT: u64 = 256;
const _: () = assert!(SUBMIT_EVERY as u64 * PARAMS_SLOT <= PARAMS_ARENA);
/// Host uploads go through staging chunks of this size; larger copies are split and
/// submitted chunk by chunk so the device copies one while the host fills the next.
pub(crate) const UPLOAD_CHUNK: u64 = 16 << 20;
/// Readback buffers kept for reuse.
const STAGING_KEEP: usize = 8;
/// Readbacks of at most this many bytes (after 4-byte rounding) go through one fixed,
/// reused staging buffer of this size.
pub(crate) const SMALL_READ: u64 = 256;
/// Bytes of the placeholder buffer per unused binding: a multiple of every adapter's
/// `min_storage_buffer_offset_alignment` (at most 256 by the WebGPU spec).
const PLACEHOLDER_SLOT: u64 = 256;
/// Placeholders one dispatch can bind, each in its own slot so that none alias.
const PLACEHOLDERS: u64 = 8;

/// A bump allocator over one buffer, reset at each submission.
struct Arena {
    buffer: Arc<wgpu::Buffer>,
    size: u64,
    used: u64,
    align: u64,
}

impl Arena {
    fn new(
        device: &wgpu::Device,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
        align: u64,
    ) -> Self {
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        });
        Self {
            buffer: Arc::new(buffer),
            size,
            used: 0,
            align,
        }
    }

    fn reserve(&mut self, bytes: u64) -> Option<u64> {
        let start = self.used.div_ceil(self.align) * self.align;
        let end = start.checked_add(bytes)?;
        (end <= self.size).then(|| {
            self.used = end;
            start
        })
    }
}

/// A byte range of a buffer bound to a kernel, with where the operand starts inside it.
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    pub buffer: Arc<wgpu::Buffer>,
    /// Binding offset: a multiple of `min_storage_buffer_offset_alignment`.
    pub offset: u64,
    /// Binding size: a multiple of 4.
    pub size: u64,
    /// The operand's first byte, from the start of the binding.
    pub byte: u64,
}

impl Bound {
    /// True when the two bindings share bytes of one buffer.
    pub(crate) fn overlaps(&self, other: &Bound) -> bool {
        Arc::ptr_eq(&self.buffer, &other.buffer)
            && self.offset < other.offset + other.size
            && other.offset < self.offset + self.size
    }

    /// The operand's first element of `elem_bytes` bytes, from the start of the binding.
    pub(crate) fn elem(&self, elem_bytes: u64) -> u32 {
        (self.byte / elem_bytes) as u32
    }
}

/// The adapter limits that recording checks against: device facts, fixed at
/// initialisation and held by `Ctx` outside the state lock (no stream state involved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub storage_align: u64,
    pub max_binding: u64,
    pub max_groups: u32,
    pub workgroup_storage: u32,
    pub max_invocations: u32,
}

impl Limits {
    pub(crate) fn of(limits: &wgpu::Limits) -> Self {
        Self {
            storage_align: u64::from(limits.min_storage_buffer_offset_alignment),
            max_binding: limits.max_storage_buffer_binding_size,
            max_groups: limits.max_compute_workgroups_per_dimension,
            workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_invocations: limits.max_compute_invocations_per_workgroup,
        }
    }

    /// Binds bytes `[offset, offset + bytes)` of a block's buffer (`offset` relative to
    /// the block). Refuses, naming the limit, an operand larger than one binding.
    pub(crate) fn bind(
        &self,
        op: &str,
        what: &str,
        block: &Block,
        offset: u64,
        bytes: u64,
    ) -> BackendResult<Bound> {
        self.bind_granule(op, what, block, offset, bytes, 4)
    }

    /// [`bind`](Self::bind) with the end rounded up to `granule` bytes, for kernels that
    /// view the binding as an array of `granule`-byte vectors (the rounding stays inside the
    /// block, which is a whole number of 256-byte units).
    pub(crate) fn bind_granule(
        &self,
        op: &str,
        what: &str,
        block: &Block,
        offset: u64,
        bytes: u64,
        granule: u64,
    ) -> BackendResult<Bound> {
        let abs = block.offset + offset;
        let start = abs / self.storage_align * self.storage_align;
        let end = (abs + bytes.max(1)).div_ceil(granule) * granule;
        let size = end - start;
        if size > self.max_binding {
            return Err(BackendError::Unsupported(format!(
                "{op}: operand {what} spans {size} bytes, more than this adapter's \
                 max_storage_buffer_binding_size of {} bytes",
                self.max_binding
            )));
        }
        Ok(Bound {
            buffer: block.buffer.clone(),
            offset: start,
            size,
            byte: abs - start,
        })
    }

    /// A grid of at least `groups` workgroups, 2-D when more than one dimension's limit
    /// is needed; kernels fold it back with `flat_index`.
    pub(crate) fn grid(&self, groups: u64) -> BackendResult<[u32; 3]> {
        let max = u64::from(self.max_groups);
        if groups <= max {
            return Ok([groups as u32, 1, 1]);
        }
        let y = groups.div_ceil(max);
        if y > max {
            return Err(BackendError::Unsupported(format!(
                "{groups} workgroups exceed this adapter's {max} x {max} grid"
            )));
        }
        Ok([max as u32, y as u32, 1])
    }
}

pub(crate) struct Stream {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    recorded: u32,
    params: Arena,
    /// The parameter blocks of this submission, as they will lie in `params`: written
    /// with one `write_buffer` at the flush (wgpu stages each write in a buffer of its
    /// own and records a copy for it, a cost per dispatch that one write a submission
    /// avoids).
    params_host: Vec<u8>,
    /// The other parameter buffers, taken in turn at each flush: a submission's one write
    /// to its buffer waits (on the device) for the work that last read it, so with a
    /// single buffer each submission would wait for the one before to finish.
    params_ring: std::collections::VecDeque<Arc<wgpu::Buffer>>,
    uploads: Arena,
    staging: Vec<Arc<wgpu::Buffer>>,
    /// The small-read staging buffer, `None` while a read holds it.
    small: Option<Arc<wgpu::Buffer>>,
    belt: wgpu::util::StagingBelt,
    dummy: Arc<wgpu::Buffer>,
    /// Intermediate results of an op's passes (split-KV attention), reused by every call.
    scratch: Option<Arc<wgpu::Buffer>>,
}

impl Stream {
    pub(crate) fn new(device: &wgpu::Device, limits: &wgpu::Limits) -> Self {
        use wgpu::BufferUsages as U;
        let uniform_align = u64::from(limits.min_uniform_buffer_offset_alignment);
        let storage_align = u64::from(limits.min_storage_buffer_offset_alignment);
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused operand"),
            size: PLACEHOLDER_SLOT * PLACEHOLDERS,
            usage: U::STORAGE,
            mapped_at_creation: false,
        });
        let params_arena = || {
            Arena::new(
                device,
                "kernel parameters",
                PARAMS_ARENA,
                U::UNIFORM | U::COPY_DST,
                uniform_align,
            )
        };
        Self {
            encoder: None,
            pass: None,
            recorded: 0,
            params_host: Vec::with_capacity(PARAMS_ARENA as usize),
            params_ring: (1..PARAMS_BUFFERS).map(|_| params_arena().buffer).collect(),
            params: params_arena(),
            uploads: Arena::new(
                device,
                "upload staging",
                UPLOAD_ARENA.min(limits.max_storage_buffer_binding_size / 256 * 256),
                U::STORAGE | U::COPY_SRC | U::COPY_DST,
                storage_align.max(4),
            ),
            staging: Vec::new(),
            small: None,
            belt: wgpu::util::StagingBelt::new(device.clone(), UPLOAD_CHUNK),
            dummy: Arc::new(dummy),
            scratch: None,
        }
    }

    /// A binding of at least `bytes` for an op's intermediate results. One buffer serves
    /// every call: calls run in stream order, and wgpu orders the dispatches that write and
    /// read it. It grows (to a multiple of 1 MiB) when a call needs more; the old one lives
    /// as long as recorded work holds it.
    pub(crate) fn scratch(&mut self, device: &wgpu::Device, bytes: u64) -> Bound {
        let need = bytes.max(4).next_multiple_of(256);
        if self.scratch.as_ref().is_none_or(|b| b.size() < need) {
            self.scratch = Some(Arc::new(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("op scratch"),
                size: need.next_multiple_of(1 << 20),
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })));
        }
        Bound {
            buffer: self.scratch.clone().expect("made above"),
            offset: 0,
            size: need,
            byte: 0,
        }
    }

    /// True when nothing is recorded since the last submission.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn is_empty(&self) -> bool {
        self.recorded == 0
    }

    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("backend stream"),
            })
        })
    }

    /// The encoder with no compute pass open, for copies.
    fn copy_encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder(device)
    }

    /// Submits everything recorded (and any pending host writes); returns the index to
    /// wait on.
    pub(crate) fn flush(&mut self, queue: &wgpu::Queue) -> wgpu::SubmissionIndex {
        self.pass = None;
        let commands: Vec<wgpu::CommandBuffer> = self
            .encoder
            .take()
            .map(|e| e.finish())
            .into_iter()
            .collect();
        let _span = tracing::debug_span!("submit", commands = self.recorded).entered();
        if !self.params_host.is_empty() {
            // Lands before the submission's commands, as every write_buffer does.
            queue.write_buffer(&self.params.buffer, 0, &self.params_host);
            self.params_host.clear();
        }
        self.belt.finish();
        let index = queue.submit(commands);
        self.belt.recall();
        self.recorded = 0;
        self.params.used = 0;
        if let Some(next) = self.params_ring.pop_front() {
            let old = std::mem::replace(&mut self.params.buffer, next);
            self.params_ring.push_back(old);
        }
        self.uploads.used = 0;
        index
    }

    /// Records a host-to-device copy of `data` (4-byte aligned offset and length) to
    /// `dst` at `offset`, through the staging belt: the bytes are copied into mapped
    /// staging memory now (so `data` may be reused at once) and land in program order.
    pub(crate) fn upload(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        dst: &wgpu::Buffer,
        offset: u64,
        data: &[u8],
    ) {
        let Some(size) = wgpu::BufferSize::new(data.len() as u64) else {
            return;
        };
        self.pass = None;
        let encoder = self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("backend stream"),
            })
        });
        self.belt
            .write_buffer(encoder, dst, offset, size)
            .copy_from_slice(data);
        self.counted(queue);
    }

    fn counted(&mut self, queue: &wgpu::Queue) {
        self.recorded += 1;
        if self.recorded >= SUBMIT_EVERY {
            self.flush(queue);
        }
    }

    /// A placeholder for a binding the kernel declares but this call does not use.
    pub(crate) fn unused(&self) -> Bound {
        Bound {
            buffer: self.dummy.clone(),
            offset: 0,
            size: 256,
            byte: 0,
        }
    }

    /// Records one dispatch of `pipeline` (built by `Ctx::dispatch` from the pipeline
    /// cache, which the stream does not own; `label` names the bind group). `bindings` are
    /// `(binding index, range)` pairs after the parameter block at binding 0: the inputs
    /// first, the binding the kernel writes last. `groups` has no zero (`Ctx::dispatch`
    /// records nothing for an empty grid).
    pub(crate) fn dispatch(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        pipeline: &wgpu::ComputePipeline,
        label: &'static str,
        params: &[u8],
        bindings: &[(u32, &Bound)],
        groups: [u32; 3],
    ) {
        debug_assert!(!groups.contains(&0), "Ctx::dispatch skips empty grids");
        let bindings = self.separate(device, bindings);
        // Never flushes here: a flush between staging an upload and the dispatch that
        // reads it would let a later upload reuse the staged bytes too early.
        let offset = self
            .params
            .reserve(params.len() as u64)
            .expect("SUBMIT_EVERY parameter blocks fit the arena");
        let end = offset as usize + params.len();
        // Gaps between blocks (the uniform alignment) and the tail are zero; the length
        // stays a multiple of 4, as a buffer write's must.
        self.params_host.resize(end.next_multiple_of(4), 0);
        self.params_host[offset as usize..end].copy_from_slice(params);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.params.buffer,
                offset,
                size: wgpu::BufferSize::new(params.len() as u64),
            }),
        }];
        for (binding, b) in &bindings {
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &b.buffer,
                    offset: b.offset,
                    size: wgpu::BufferSize::new(b.size),
                }),
            });
        }
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if self.pass.is_none() {
            let encoder = self.encoder(device);
            let pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            self.pass = Some(pass.forget_lifetime());
        }
        let pass = self.pass.as_mut().expect("opened above");
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        self.counted(queue);
    }

    /// Makes the bindings of one dispatch disjoint, as WebGPU requires of writable
    /// storage bindings (ours are all `read_write`: a pool chunk often holds an op's
    /// inputs and its output, and one buffer cannot be both read-only and writable
    /// storage in one dispatch). Browsers (Dawn) refuse overlapping ones; Vulkan allows
    /// them, so natively this only costs a copy in the rare cases below.
    ///
    /// Operands themselves overlap only where the kernel expects it (the in-place and
    /// merged-binding entry points), or where two inputs may overlap. But a binding
    /// starts at the storage-alignment boundary below its operand, so two operands of one
    /// allocation less than 256 bytes apart get overlapping bindings, and so do
    /// overlapping inputs. Here each placeholder gets its own slot of the placeholder
    /// buffer, and each input whose binding overlaps another binding is copied to a
    /// buffer of its own, recorded just before the dispatch, so the kernel reads the same
    /// bytes. The written binding (last) is never moved.
    fn separate(&mut self, device: &wgpu::Device, bindings: &[(u32, &Bound)]) -> Vec<(u32, Bound)> {
        let mut out: Vec<(u32, Bound)> = bindings.iter().map(|&(i, b)| (i, b.clone())).collect();
        let mut slot = 0;
        for (_, b) in &mut out {
            if Arc::ptr_eq(&b.buffer, &self.dummy) {
                debug_assert!(slot < PLACEHOLDERS, "more placeholders than slots");
                b.offset = (slot % PLACEHOLDERS) * PLACEHOLDER_SLOT;
                slot += 1;
            }
        }
        for i in 0..out.len().saturating_sub(1) {
            let clash = (0..out.len()).any(|j| j != i && out[i].1.overlaps(&out[j].1));
            if !clash {
                continue;
            }
            let b = &out[i].1;
            let copy = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("copy of an aliased input"),
                size: b.size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            // Binding offsets are storage-aligned and sizes multiples of 4, as copies need.
            self.copy_encoder(device)
                .copy_buffer_to_buffer(&b.buffer, b.offset, &copy, 0, b.size);
            // Counted, but never flushed between this copy and its dispatch.
            self.recorded += 1;
            out[i].1 = Bound {
                buffer: Arc::new(copy),
                offset: 0,
                size: b.size,
                byte: b.byte,
            };
        }
        out
    }

    /// Records a buffer-to-buffer copy (4-byte aligned, different buffers).
    pub(crate) fn copy(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        bytes: u64,
    ) {
        self.copy_encoder(device)
            .copy_buffer_to_buffer(src, src_offset, dst, dst_offset, bytes);
        self.counted(queue);
    }

    /// Stages host bytes for this submission: returns the upload arena binding and the
    /// data's offset in it, flushing first if the arena is full. `None` when the data is
    /// larger than the arena.
    pub(crate) fn stage(&mut self, queue: &wgpu::Queue, data: &[u8]) -> Option<Bound> {
        let padded = (data.len() as u64).div_ceil(4) * 4;
        if padded > self.uploads.size {
            return None;
        }
        let offset = match self.uploads.reserve(padded) {
            Some(o) => o,
            None => {
                self.flush(queue);
                self.uploads.reserve(padded)?
            }
        };
        let whole = data.len() / 4 * 4;
        if whole > 0 {
            queue.write_buffer(&self.uploads.buffer, offset, &data[..whole]);
        }
        if whole < data.len() {
            let mut tail = [0u8; 4];
            tail[..data.len() - whole].copy_from_slice(&data[whole..]);
            queue.write_buffer(&self.uploads.buffer, offset + whole as u64, &tail);
        }
        Some(Bound {
            buffer: self.uploads.buffer.clone(),
            offset,
            size: padded.max(4),
            byte: 0,
        })
    }

    /// The largest upload staged in one piece.
    pub(crate) fn upload_capacity(&self) -> u64 {
        self.uploads.size
    }

    /// A readback buffer of at least `bytes` bytes, reused where possible.
    pub(crate) fn take_staging(&mut self, device: &wgpu::Device, bytes: u64) -> Arc<wgpu::Buffer> {
        if let Some(i) = self
            .staging
            .iter()
            .position(|b| b.size() >= bytes && b.size() <= bytes.max(4096) * 2)
        {
            return self.staging.swap_remove(i);
        }
        let size = bytes.max(4096).next_power_of_two();
        Arc::new(device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback staging"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    pub(crate) fn return_staging(&mut self, buffer: Arc<wgpu::Buffer>) {
        if buffer.size() == SMALL_READ {
            self.small.get_or_insert(buffer);
        } else if self.staging.len() < STAGING_KEEP {
            self.staging.push(buffer);
        }
    }

    /// The staging buffer for a readback of `bytes`: the fixed small-read buffer when the
    /// read fits in it and no other read holds it, else one from the pool.
    fn take_readback(&mut self, device: &wgpu::Device, bytes: u64) -> Arc<wgpu::Buffer> {
        if bytes > SMALL_READ {
            return self.take_staging(device, bytes);
        }
        self.small.take().unwrap_or_else(|| {
            Arc::new(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("small readback staging"),
                size: SMALL_READ,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }))
        })
    }

    /// Records staging copies for several readbacks, `(buffer, abs, bytes)` each, into one
    /// staging buffer, schedules its mapping with the submission (`map_buffer_on_submit`,
    /// so no `map_async` call follows the submit), and submits once. Reads of one buffer
    /// that lie close together share one copy ([`coalesce`]); reads that fit in
    /// [`SMALL_READ`] bytes use the fixed small-read buffer.
    pub(crate) fn readback_many(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        reads: &[(Arc<wgpu::Buffer>, u64, u64)],
    ) -> Readback {
        let spans: Vec<(usize, u64, u64)> = reads
            .iter()
            .map(|(buffer, abs, bytes)| {
                (
                    Arc::as_ptr(buffer) as usize,
                    abs / 4 * 4,
                    (abs + bytes).div_ceil(4) * 4,
                )
            })
            .collect();
        let (segments, at, total) = coalesce(&spans, COALESCE_GAP);
        // A mapped range is at least one word (every read here has bytes > 0, but the
        // mapping must not be empty whatever a caller passes).
        let len = total.max(4);
        let staging = self.take_readback(device, len);
        for &(first, start, end, to) in &segments {
            self.copy_encoder(device).copy_buffer_to_buffer(
                &reads[first].0,
                start,
                &staging,
                to,
                end - start,
            );
        }
        self.recorded += segments.len() as u32;
        let (tx, mapped) = futures_channel::oneshot::channel();
        self.copy_encoder(device).map_buffer_on_submit(
            &staging,
            wgpu::MapMode::Read,
            ..len,
            move |r| {
                let _ = tx.send(r);
            },
        );
        let index = self.flush(queue);
        let starts = reads
            .iter()
            .zip(&spans)
            .zip(at)
            .map(|(((_, abs, _), (_, start, _)), at)| at + abs - start)
            .collect();
        Readback {
            staging,
            starts,
            len,
            index,
            mapped,
        }
    }
}

/// A submitted readback: the staging buffer, where each read's bytes start in it, the
/// mapped length, the submission, and the mapping's completion.
pub(crate) struct Readback {
    pub(crate) staging: Arc<wgpu::Buffer>,
    pub(crate) starts: Vec<u64>,
    pub(crate) len: u64,
    pub(crate) index: wgpu::SubmissionIndex,
    pub(crate) mapped: MapDone,
}

/// Resolves when a scheduled mapping is done (or failed).
pub(crate) type MapDone = futures_channel::oneshot::Receiver<Result<(), wgpu::BufferAsyncError>>;

/// Reads of one buffer this close (bytes between them) share one staging copy: copying
/// the gap costs less than another copy command.
const COALESCE_GAP: u64 = 4096;

/// Groups 4-aligned spans `(buffer key, start, end)` into copies: spans of one buffer that
/// overlap or lie within `gap` bytes of each other become one segment. Returns the
/// segments as `(index of a span of its buffer, start, end, offset in staging)`, the
/// staging offset of each span's start, and the staging bytes used (all multiples of 4).
/// One staging copy of [`coalesce`]: (index of a span of its buffer, start, end, offset in
/// staging).
type Segment = (usize, u64, u64, u64);

fn coalesce(spans: &[(usize, u64, u64)], gap: u64) -> (Vec<Segment>, Vec<u64>, u64) {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].0, spans[i].1));
    let mut segments: Vec<Segment> = Vec::new();
    let mut at = vec![0u64; spans.len()];
    let mut total = 0u64;
    for i in order {
        let (key, start, end) = spans[i];
        match segments.last_mut() {
            Some((first, s, e, to)) if spans[*first].0 == key && start <= *e + gap => {
                if end > *e {
                    total += end - *e;
                    *e = end;
                }
                at[i] = *to + (start - *s);
            }
            _ => {
                segments.push((i, start, end, total));
                at[i] = total;
                total += end - start;
            }
        }
    }
    (segments, at, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reads_of_one_buffer_share_a_copy() {
        // Eight 4-byte reads 128 bytes apart in buffer 1, one far away, one in buffer 2.
        let mut spans: Vec<(usize, u64, u64)> = (0..8).map(|i| (1, 128 * i, 128 * i + 4)).collect();
        spans.push((1, 1 << 20, (1 << 20) + 8));
        spans.push((2, 0, 4));
        let (segments, at, total) = coalesce(&spans, COALESCE_GAP);
        assert_eq!(segments.len(), 3, "{segments:?}");
        assert_eq!(total, (7 * 128 + 4) + 8 + 4);
        for (i, &(_, start, end)) in spans.iter().enumerate() {
            // Each span's bytes sit at its staging offset, inside its segment's copy.
            let seg = segments
                .iter()
                .find(|&&(f, s, e, _)| spans[f].0 == spans[i].0 && s <= start && end <= e)
                .expect("every span is in a segment");
            assert_eq!(at[i], seg.3 + (start - seg.1));
            assert_eq!(at[i] % 4, 0);
        }
        // Overlapping and repeated reads, in any order.
        let spans = [(7, 16, 32), (7, 0, 24), (7, 16, 32)];
        let (segments, at, total) = coalesce(&spans, 0);
        assert_eq!((segments.len(), total), (1, 32));
        assert_eq!(at, vec![16, 0, 16]);
        // Without a gap, distant reads stay apart.
        let (segments, _, _) = coalesce(&[(1, 0, 4), (1, 8, 12)], 0);
        assert_eq!(segments.len(), 2);
    }

    #[test]
    fn grids_fold_into_two_dimensions_up_to_the_limit() {
        let limits = Limits {
            storage_align: 256,
            max_binding: 1 << 27,
            max_groups: 100,
            workgroup_storage: 16 << 10,
            max_invocations: 256,
        };
        assert_eq!(limits.grid(0).unwrap(), [0, 1, 1]);
        assert_eq!(limits.grid(100).unwrap(), [100, 1, 1]);
        assert_eq!(limits.grid(101).unwrap(), [100, 2, 1]);
        assert_eq!(limits.grid(10_000).unwrap(), [100, 100, 1]);
        let e = limits.grid(10_001).unwrap_err();
        assert!(
            e.to_string()
                .contains("10001 workgroups exceed this adapter's 100 x 100 grid"),
            "{e}"
        );
    }
}
