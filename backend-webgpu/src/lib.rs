//! `WebGpuBackend`: the [`ComputeBackend`](backend_api::ComputeBackend) on wgpu, so on
//! Vulkan, Metal, DX12 and in browsers, with every op a WGSL kernel
//! (`src/kernels/*.wgsl`).
//!
//! - **Device.** [`WebGpuBackend::with_options`] picks the adapter (by name or backend,
//!   or the `BACKEND_ADAPTER` environment variable) and opens it with its own limits
//!   and the optional features it has: mappable primary buffers on unified-memory
//!   devices (one-copy host transfers), shader-f16 (used by the tensor-core gemm_ex
//!   kernel), and, when asked for, cooperative matrices. Subgroups and timestamp queries
//!   are requested where present but no kernel uses them yet; every kernel has a
//!   portable path (the browser's adapter has no f16).
//! - **Kernels.** Chosen per call by shape, alignment and adapter limits: a register-tiled
//!   gemm for 4-aligned operands (f32, f16, bf16; 128x128 tiles, or 128x64 where the wide
//!   ones would underfill the device or leave half a tile empty) and a general one for the
//!   rest, implicit-GEMM (same tiles) or direct conv2d, a blocked flash-attention kernel for heads up to
//!   128 dims (one or two stages of workgroup memory by what the adapter allows) and a
//!   row kernel for the rest, 16-byte paths for elementwise ops and reductions. Each op
//!   family is one file of `src/ops/` beside its WGSL, its choice a pure function with
//!   unit tests.
//!   `gemm_ex` with f16 inputs runs on matrix units with
//!   [`WebGpuOptions::cooperative_matrix`] (experimental in wgpu, so opt-in).
//! - **Memory.** Pointers come from the shared address space and map to (buffer, byte
//!   offset); small allocations share pooled buffers (`memory.rs`).
//! - **Stream.** Ops are recorded into one command encoder and submitted at sync points,
//!   in program order, host writes included (`stream.rs`; host copies `transfer.rs`).
//! - **Errors.** Arguments are validated by `backend_api::validate` before anything is
//!   recorded; wgpu's own errors (validation, out of memory, device loss) are collected
//!   and returned at the next sync point, never as panics (`errors.rs`).
//!
//! Native calls block through `pollster`; in a browser use the async paths
//! ([`copy_dtoh_async`](backend_api::ComputeBackend::copy_dtoh_async),
//! [`synchronize_async`](backend_api::ComputeBackend::synchronize_async),
//! [`WebGpuBackend::init_async`]).

mod device;
mod errors;
mod hw_f16;
#[cfg(all(feature = "host-import", not(target_arch = "wasm32")))]
#[allow(unsafe_code)]
mod import;
mod kernels;
mod memory;
mod ops;
#[cfg(not(target_arch = "wasm32"))]
mod pipeline_cache;
mod stream;
mod transfer;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use backend_api::executor::Executor;
use backend_api::validate::{
    AttentionPlan, BinaryPlan, BroadcastPlan, CastPlan, Conv2dPlan, CopyPlan, GatherPlan, GemmPlan,
    GemmQPlan, HostCopyPlan, ReducePlan, RowPlan, UnaryPlan,
};
use backend_api::{
    AddressSpace, BackendError, BackendFuture, BackendResult, BinaryOp, HostView, MapMode,
    MemoryInfo, Operand, ReduceOp, Retired, UnaryOp, UnaryParamOp, ViewMemory,
};

#[cfg(not(target_arch = "wasm32"))]
pub use device::list_adapters;
pub use device::{
    ADAPTER_ENV, AdapterSummary, DEPTHWISE_DIRECT_ENV, DEPTHWISE_TILED_ENV, GEMM_Q_DECODE_ENV,
    GemmQDecode, HW_F16_ENV, NARROW_BELOW_ENV, PIPELINE_CACHE_ENV, READBACK_SPIN_ENV,
    TENSOR_CORES_ENV, Tuning, WebGpuOptions,
};

use errors::ErrorSink;
use kernels::{PipelineKey, Pipelines};
use memory::{Block, Pool};
use stream::{Limits, Stream};

/// The WebGPU backend. See the [crate documentation](crate).
pub struct WebGpuBackend {
    options: WebGpuOptions,
    ctx: Option<Arc<Ctx>>,
    name: String,
    /// A bad environment variable seen by `new`: `init` returns it.
    config_error: Option<BackendError>,
}

/// The device and everything recorded on it.
pub(crate) struct Ctx {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: AdapterSummary,
    errors: Arc<ErrorSink>,
    /// gemm_ex with f16 inputs may use the cooperative-matrix kernel.
    coop: bool,
    /// The options' tuning knobs.
    tuning: Tuning,
    /// The device was opened with VK_EXT_external_memory_host (`with_host_memory`).
    #[cfg_attr(
        not(all(feature = "host-import", not(target_arch = "wasm32"))),
        expect(dead_code, reason = "read only by with_host_memory")
    )]
    host_import: bool,
    /// The adapter limits recording checks against (fixed at initialisation, so outside
    /// the state lock).
    limits: Limits,
    /// Host copies map device memory directly (unified-memory adapters, native only).
    #[cfg_attr(
        target_arch = "wasm32",
        expect(dead_code, reason = "browsers have no mappable device memory")
    )]
    mappable: bool,
    /// Bytes copied through intermediate host-visible buffers (`MemoryInfo::staged_bytes`).
    staged: std::sync::atomic::AtomicU64,
    /// Kernels convert f16 with the adapter's instructions (`hw_f16.rs` found them exact).
    hw_f16: std::sync::atomic::AtomicBool,
    /// The recording state. Lock order: this lock first, then `pipelines`.
    state: Mutex<State>,
    /// Compiled kernels, built on first use; locked only inside the state lock, briefly
    /// ([`Ctx::pipeline`]).
    pipelines: Mutex<Pipelines>,
}

pub(crate) struct State {
    space: AddressSpace<Block>,
    pool: Pool,
    stream: Stream,
}

/// Reads no environment variable: [`WebGpuOptions::default`] (`new()` applies the
/// environment).
impl Default for WebGpuBackend {
    fn default() -> Self {
        Self::with_options(WebGpuOptions::default())
    }
}

impl std::fmt::Debug for WebGpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebGpuBackend")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish()
    }
}

impl WebGpuBackend {
    /// An uninitialised backend with [`WebGpuOptions::from_env`]: the best adapter, or
    /// the one `BACKEND_ADAPTER` names. A variable that does not parse is refused by
    /// `init` (`InvalidArgument` naming it).
    pub fn new() -> Self {
        match WebGpuOptions::from_env() {
            Ok(options) => Self::with_options(options),
            Err(e) => Self {
                config_error: Some(e),
                ..Self::default()
            },
        }
    }

    /// An uninitialised backend with explicit adapter options.
    pub fn with_options(options: WebGpuOptions) -> Self {
        Self {
            options,
            ctx: None,
            name: "webgpu".to_string(),
            config_error: None,
        }
    }

    /// Opens the device without blocking: the initialisation a browser must use.
    pub async fn init_async(&mut self) -> BackendResult<()> {
        if self.ctx.is_some() {
            return Ok(());
        }
        if let Some(e) = &self.config_error {
            return Err(e.clone());
        }
        let adapter = device::choose_adapter(&self.options).await?;
        let summary = AdapterSummary::of(&adapter);
        let features = device::wanted_features(&adapter, &self.options);
        let desc = wgpu::DeviceDescriptor {
            label: Some("backend-webgpu"),
            required_features: features,
            required_limits: adapter.limits(),
            experimental_features: experimental(features),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        // With `host-import`, a Vulkan adapter offering VK_EXT_external_memory_host is
        // opened with it (wgpu does not enable it by itself).
        #[cfg(all(feature = "host-import", not(target_arch = "wasm32")))]
        let host_import = import::supported(&adapter);
        #[cfg(not(all(feature = "host-import", not(target_arch = "wasm32"))))]
        let host_import = false;
        let (device, queue) = if host_import {
            #[cfg(all(feature = "host-import", not(target_arch = "wasm32")))]
            {
                import::open(&adapter, &desc)?
            }
            #[cfg(not(all(feature = "host-import", not(target_arch = "wasm32"))))]
            unreachable!("host_import is false without the feature")
        } else {
            adapter.request_device(&desc).await.map_err(|e| {
                BackendError::DeviceError(format!("opening {}: {e}", summary.label()))
            })?
        };
        let errors = ErrorSink::install(&device);
        #[cfg(not(target_arch = "wasm32"))]
        let disk = self.options.pipeline_cache.as_deref().and_then(|dir| {
            pipeline_cache::DiskCache::open(&device, &adapter.get_info(), dir).map(Arc::new)
        });
        let limits = device.limits();
        let mappable = features.contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS);
        let coop = features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        let state = State {
            space: AddressSpace::new(),
            pool: Pool::new(&limits, mappable, self.options.memory_limit),
            stream: Stream::new(&device, &limits),
        };
        tracing::info!(adapter = %summary.label(), ?features, "webgpu backend initialised");
        self.name = format!("webgpu ({}, {})", summary.backend, summary.name);
        self.ctx = Some(Arc::new(Ctx {
            device,
            queue,
            adapter: summary,
            errors,
            coop,
            tuning: self.options.tuning,
            limits: Limits::of(&limits),
            mappable,
            host_import,
            staged: std::sync::atomic::AtomicU64::new(0),
            hw_f16: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(state),
            pipelines: Mutex::new(Pipelines {
                #[cfg(not(target_arch = "wasm32"))]
                disk,
                ..Pipelines::default()
            }),
        }));
        if self.options.tuning.hw_f16 {
            hw_f16::probe(self).await;
        }
        Ok(())
    }

    /// Writes the compiled pipelines to the pipeline cache's file now (it is also written
    /// every few new pipelines and when the backend is dropped); the file, or `None`
    /// without a cache (not Vulkan, `pipeline_cache: None`, `BACKEND_PIPELINE_CACHE=off`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save_pipeline_cache(&self) -> Option<std::path::PathBuf> {
        let disk = self.ctx.as_deref()?.disk_cache()?;
        disk.save();
        Some(disk.path().to_path_buf())
    }

    /// Bytes of compiled pipelines the cache held at `init` (0: a cold start), or `None`
    /// without a cache.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn pipeline_cache_loaded(&self) -> Option<usize> {
        Some(self.ctx.as_deref()?.disk_cache()?.loaded)
    }

    /// Whether kernels convert f16 with the adapter's own instructions, which the probe
    /// at initialisation found exact (`BACKEND_HW_F16=0` keeps the bit arithmetic).
    pub fn hardware_f16_conversions(&self) -> bool {
        self.ctx
            .as_deref()
            .is_some_and(|c| c.hw_f16.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether [`with_host_memory`](Self::with_host_memory) can import host memory here:
    /// a Vulkan device opened with `VK_EXT_external_memory_host` (feature `host-import`).
    pub fn host_import_supported(&self) -> bool {
        #[cfg(all(feature = "host-import", not(target_arch = "wasm32")))]
        return self.ctx.as_deref().is_some_and(|c| c.host_import);
        #[cfg(not(all(feature = "host-import", not(target_arch = "wasm32"))))]
        false
    }

    /// Runs `f` with `memory` imported as device memory (`VK_EXT_external_memory_host`):
    /// one allocation, whose base address `f` receives, that kernels read and write in
    /// place: on unified memory (lavapipe, integrated GPUs) no byte is copied; on a
    /// discrete GPU kernels reach the host pages over the bus. Native Vulkan only, with the
    /// feature `host-import`; elsewhere `Unsupported` ([`host_import_supported`](Self::host_import_supported)).
    ///
    /// When `f` returns or unwinds the backend waits for all recorded work
    /// (`synchronize`), removes the allocation (its aliases turn stale) and frees the
    /// import, so afterwards no device work can touch `memory`. Meanwhile it cannot be
    /// freed or mapped (`InvalidArgument`); `copy_htod`/`copy_dtoh` on it go through the
    /// usual staged path. `memory` must start 4-byte aligned and hold a multiple of 4
    /// bytes (kernels write whole 4-byte words); the pages around it are imported whole
    /// (Vulkan's `minImportedHostPointerAlignment`), but only its own bytes are addressable.
    /// An error of the final `synchronize` is returned instead of `f`'s result.
    #[cfg(all(feature = "host-import", not(target_arch = "wasm32")))]
    pub fn with_host_memory<R>(
        &self,
        memory: &mut [u8],
        f: impl FnOnce(u64) -> R,
    ) -> BackendResult<R> {
        /// Ends the import however `f` ends.
        struct Import<'b> {
            ctx: &'b Ctx,
            base: u64,
            imported: Option<import::Imported>,
        }
        impl Import<'_> {
            fn end(&mut self) -> BackendResult<()> {
                let Some(imported) = self.imported.take() else {
                    return Ok(());
                };
                let synced = pollster::block_on(self.ctx.synchronize());
                // Removing drops the block's handle on the buffer; `release` holds the last.
                drop(self.ctx.lock().space.remove(self.base));
                imported.release(&self.ctx.device);
                synced
            }
        }
        impl Drop for Import<'_> {
            fn drop(&mut self) {
                let _ = self.end();
            }
        }
        let ctx = self.ctx()?;
        if !ctx.host_import {
            return Err(BackendError::Unsupported(format!(
                "with_host_memory: {} has no VK_EXT_external_memory_host (or is not Vulkan)",
                ctx.adapter.label()
            )));
        }
        let (addr, len) = (memory.as_ptr() as usize, memory.len());
        if !addr.is_multiple_of(4) || !len.is_multiple_of(4) {
            return Err(BackendError::InvalidArgument(format!(
                "with_host_memory: host memory at {addr:#x} ({len} bytes) must start 4-byte \
                 aligned and hold a multiple of 4 bytes"
            )));
        }
        let usage = ctx.lock().pool.usage();
        let imported = import::Imported::new(&ctx.device, usage, memory)?;
        let block = Block::imported_at(imported.buffer.clone(), imported.offset, imported.size);
        let base = match ctx.lock().space.insert(len as u64, block) {
            Ok(base) => base,
            Err(e) => {
                imported.release(&ctx.device);
                return Err(e);
            }
        };
        let mut guard = Import {
            ctx,
            base,
            imported: Some(imported),
        };
        let result = f(base);
        guard.end()?;
        Ok(result)
    }

    /// The adapter in use, once initialised.
    pub fn adapter(&self) -> Option<&AdapterSummary> {
        self.ctx.as_deref().map(|c| &c.adapter)
    }

    /// True while the device works; false after it was lost (then every call fails
    /// and a new backend must be created).
    pub fn is_usable(&self) -> bool {
        self.ctx.as_deref().is_some_and(|c| !c.errors.is_lost())
    }

    /// Destroys the device, as a driver reset or unplugged GPU would: afterwards every
    /// call fails with `DeviceError` and [`is_usable`](Self::is_usable) is false. For
    /// testing how callers handle device loss.
    pub fn simulate_device_loss(&self) {
        if let Some(ctx) = self.ctx.as_deref() {
            ctx.device.destroy();
            // wgpu's `destroy` only marks the device invalid: the device-lost callback,
            // which makes every later call fail, runs at the next poll that finds the
            // queue empty, and a later synchronize never gets there (its wait on a
            // submission made after `destroy` fails first). Wait for the queue now, so
            // the callback runs, as a real loss runs it at once; and record the loss in
            // case it did not (in a browser it arrives later).
            #[cfg(not(target_arch = "wasm32"))]
            let _ = ctx.device.poll(wgpu::PollType::wait_indefinitely());
            ctx.errors.mark_lost("Destroyed: simulate_device_loss");
        }
    }

    /// Builds `wgsl` as a kernel with entry point `main`, reporting a kernel that fails to
    /// build as the backend reports its own: a `DeviceError` naming it, never a panic.
    /// For testing (and for checking a kernel against an adapter).
    pub fn try_build_kernel(&self, wgsl: &str) -> BackendResult<()> {
        let ctx = self.ctx()?;
        let scope = errors::ErrorScope::push(&ctx.device);
        let module = ctx
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("user kernel"),
                source: wgpu::ShaderSource::Wgsl(wgsl.into()),
            });
        let _pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("user kernel"),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        match scope.pop() {
            None => Ok(()),
            Some(e) => Err(BackendError::DeviceError(format!(
                "kernel failed to build: {e}"
            ))),
        }
    }

    fn ctx(&self) -> BackendResult<&Ctx> {
        let ctx = self.ctx.as_deref().ok_or(BackendError::NotInitialized)?;
        ctx.errors.check_lost()?;
        Ok(ctx)
    }
}

impl Ctx {
    /// The on-disk pipeline cache, where there is one.
    #[cfg(not(target_arch = "wasm32"))]
    fn disk_cache(&self) -> Option<Arc<pipeline_cache::DiskCache>> {
        self.pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .disk
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State changes happen after all validation; a panic cannot leave it half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for submission `index` (natively; in a browser the event loop finishes work
    /// on its own, so this only lets callbacks run).
    fn wait(&self, index: wgpu::SubmissionIndex) -> BackendResult<()> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.wait_idle(index)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = index;
            Ok(())
        }
    }

    /// Submits everything and waits for the device (native).
    #[cfg(not(target_arch = "wasm32"))]
    fn wait_idle(&self, index: wgpu::SubmissionIndex) -> BackendResult<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map(drop)
            .map_err(|e| BackendError::DeviceError(format!("waiting for the device: {e}")))
    }

    async fn synchronize(&self) -> BackendResult<()> {
        let index = {
            let mut st = self.lock();
            st.pool.release_cached();
            st.stream.flush(&self.queue)
        };
        #[cfg(not(target_arch = "wasm32"))]
        self.wait_idle(index)?;
        #[cfg(target_arch = "wasm32")]
        {
            let _ = index;
            let (tx, rx) = futures_channel::oneshot::channel();
            self.queue.on_submitted_work_done(move || {
                let _ = tx.send(());
            });
            rx.await
                .map_err(|_| BackendError::DeviceError("the device dropped a submission".into()))?;
        }
        self.errors.take()
    }

    /// The pipeline for `key`, built on first use.
    ///
    /// Lock order: recording holds the state lock ([`lock`](Self::lock)) and takes this
    /// one inside it, briefly; nothing takes the state lock while holding this one.
    fn pipeline(&self, key: &PipelineKey) -> BackendResult<Arc<wgpu::ComputePipeline>> {
        self.pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&self.device, key)
    }

    /// The pipeline for `key` if it is built already.
    fn cached_pipeline(&self, key: &PipelineKey) -> Option<Arc<wgpu::ComputePipeline>> {
        self.pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cached(key)
    }
}

/// wgpu's token for experimental features, given only when one is requested (the
/// cooperative matrices behind `WebGpuOptions::cooperative_matrix`, off by default).
fn experimental(features: wgpu::Features) -> wgpu::ExperimentalFeatures {
    if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        // SAFETY: the caller opted in (`WebGpuOptions::cooperative_matrix`), whose
        // documentation states wgpu's caveat; the one kernel that uses the feature only
        // loads whole, aligned 16x16 tiles inside ranges validated on the host.
        #[expect(
            unsafe_code,
            reason = "wgpu gates experimental features behind an unsafe token"
        )]
        unsafe {
            wgpu::ExperimentalFeatures::enabled()
        }
    } else {
        wgpu::ExperimentalFeatures::disabled()
    }
}

/// The refusal of `free`/`map_host` on imported host memory.
fn imported_refused(op: &str, base: u64, bytes: u64) -> BackendError {
    BackendError::InvalidArgument(format!(
        "{op}: {} is host memory imported by with_host_memory; it is freed by nobody and \
         cannot be mapped (its owner holds it already)",
        backend_api::fmt_range(base, bytes)
    ))
}

/// The error a blocking call gives in a browser, where blocking would hang the page.
#[cfg(target_arch = "wasm32")]
fn would_block(what: &str) -> BackendError {
    BackendError::Unsupported(format!(
        "{what} would block, and a browser's main thread cannot block (the page would hang): \
         use {what}_async"
    ))
}

/// The pipelines built since the last save reach the disk when the context goes.
#[cfg(not(target_arch = "wasm32"))]
impl Drop for Ctx {
    fn drop(&mut self) {
        if let Some(d) = self.disk_cache() {
            d.save();
        }
    }
}

impl Executor for WebGpuBackend {
    fn backend_name(&self) -> &str {
        &self.name
    }

    fn run_init(&mut self) -> BackendResult<()> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            pollster::block_on(self.init_async())
        }
        #[cfg(target_arch = "wasm32")]
        {
            if self.ctx.is_some() {
                return Ok(());
            }
            Err(BackendError::Unsupported(
                "init would block in a browser: use WebGpuBackend::init_async (or WasmBackend)"
                    .into(),
            ))
        }
    }

    fn initialized(&self) -> bool {
        self.ctx.is_some()
    }

    /// Initialised, and the device not lost.
    fn ready(&self) -> BackendResult<()> {
        self.ctx().map(drop)
    }

    fn run_gemm(&self, p: &GemmPlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.gemm(p))
    }

    fn run_conv2d_forward(&self, p: &Conv2dPlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.conv2d(p))
    }

    fn run_attention(&self, p: &AttentionPlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.attention(p))
    }

    fn run_attention_ex(&self, p: &AttentionPlan) -> BackendResult<()> {
        if self.ctx()?.attention_on_half_storage(p) {
            self.ctx()?.outside_lock(|c| c.attention(p))
        } else {
            backend_api::through_f32::attention(self, p)
        }
    }

    fn run_reduce(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.reduce(op, p))
    }

    fn run_rows(&self, p: &RowPlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.rows(p))
    }

    /// f16/bf16 rows through f32: x, gamma and beta widened (exactly) into temporaries,
    /// the f32 row kernel, y rounded once on the way back: three casts more than f32, on
    /// adapters with and without `shader-f16` alike (the casts read and write packed
    /// words). A kernel of its own would save the casts' traffic; not written yet.
    fn run_rows_ex(&self, p: &RowPlan) -> BackendResult<()> {
        use backend_api::{ComputeBackend as _, DType, RowOp};
        // Every operand checked under this op's name first: the steps below are calls of
        // their own (`cast`, `softmax`, ...), whose errors would name them instead.
        {
            let st = self.ctx()?.lock();
            let operands = [Some(&p.x), Some(&p.y), p.gamma.as_ref(), p.beta.as_ref()];
            for o in operands.into_iter().flatten() {
                st.check_range(p.op, o)?;
            }
        }
        let n = p.rows * p.cols;
        let mut temps: Vec<u64> = Vec::new();
        let result = (|| {
            let mut widened = |src: Option<&backend_api::Operand>, elems: usize| {
                src.map(|o| -> BackendResult<u64> {
                    let t = self.alloc(elems * 4)?;
                    temps.push(t);
                    self.cast(o.ptr, p.dtype, t, DType::F32, elems)?;
                    Ok(t)
                })
                .transpose()
            };
            let x = widened(Some(&p.x), n)?.expect("x is always there");
            let gamma = widened(p.gamma.as_ref(), p.cols)?;
            let beta = widened(p.beta.as_ref(), p.cols)?;
            // In place (y = x), the f32 op runs in place on the widened copy.
            let (eps, rows, cols) = (p.eps, p.rows, p.cols);
            match p.kind {
                RowOp::Softmax => self.softmax(x, x, rows, cols)?,
                RowOp::LogSoftmax => self.log_softmax(x, x, rows, cols)?,
                RowOp::LayerNorm => self.layer_norm(x, gamma, beta, x, rows, cols, eps)?,
                RowOp::RmsNorm => self.rms_norm(x, gamma, x, rows, cols, eps)?,
            }
            self.cast(x, DType::F32, p.y.ptr, p.dtype, n)
        })();
        for t in temps {
            // Frees only fail for a device error, which the result reports already.
            let _ = self.free(t);
        }
        result
    }

    fn run_unary(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.unary(op, p))
    }

    fn run_unary_param(
        &self,
        op: UnaryParamOp,
        a: f32,
        b: f32,
        p: &UnaryPlan,
    ) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.unary_param(op, a, b, p))
    }

    fn run_binary(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.binary(op, p))
    }

    fn run_unary_ex(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.unary_ex(op, p))
    }

    fn run_binary_ex(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.binary_ex(op, p))
    }

    fn run_reduce_ex(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.reduce(op, p))
    }

    /// Few columns (decode): the block kernels. Many (prefill,
    /// `ops::gemm_q::PREFILL_COLUMNS` and up): the weights dequantized once into an f32
    /// temporary, then the tiled f32 gemm, which reads each weight once per tile of
    /// columns rather than dequantizing every block once per 8 columns.
    fn run_gemm_q(&self, p: &GemmQPlan) -> BackendResult<()> {
        let ctx = self.ctx()?;
        if !ops::gemm_q::prefill(p, ctx.limits.max_binding) {
            return ctx.outside_lock(|c| c.gemm_q(p));
        }
        let bytes = p.m * p.k * 4;
        let w = self.run_alloc(bytes)?;
        let temp = backend_api::Operand {
            name: "A (dequantized)",
            ptr: w,
            bytes: bytes as u64,
        };
        let result = ctx
            .outside_lock(|c| c.gemm_q_dequantize(p, &temp))
            .and_then(|()| self.run_gemm(&ops::gemm_q::prefill_gemm(p, temp)));
        // A free fails only for a device error, which the result reports already.
        let _ = self.run_free(w);
        result
    }

    fn run_binary_broadcast(&self, op: BinaryOp, p: &BroadcastPlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.binary_broadcast(op, p))
    }

    /// f16/bf16 broadcasting in place where the output starts on a 32-bit word (a word
    /// of the output per thread); otherwise through f32 copies.
    fn run_binary_broadcast_ex(&self, op: BinaryOp, p: &BroadcastPlan) -> BackendResult<()> {
        if Ctx::broadcast_on_half_storage(p) {
            self.ctx()?.outside_lock(|c| c.binary_broadcast_half(op, p))
        } else {
            backend_api::through_f32::binary_broadcast(self, op, p)
        }
    }

    fn run_gather(&self, p: &GatherPlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.gather(p))
    }

    /// f16/bf16 tables whose rows are whole 32-bit words (an even row length, table and
    /// output on 4-byte boundaries) are gathered in place as rows of words: no f32 copy of
    /// the table (an embedding table is often the largest tensor of a model). Others go
    /// through f32 copies.
    fn run_gather_ex(&self, p: &GatherPlan) -> BackendResult<()> {
        use backend_api::DType;
        let words = (p.cols * p.dtype.size_bytes()).is_multiple_of(4)
            && p.output.ptr.is_multiple_of(4)
            && p.table.is_none_or(|t| t.ptr.is_multiple_of(4));
        if !words {
            return backend_api::through_f32::gather(self, p);
        }
        let as_words = GatherPlan {
            cols: p.cols * p.dtype.size_bytes() / 4,
            dtype: DType::F32,
            ..*p
        };
        self.ctx()?.outside_lock(|c| c.gather(&as_words))
    }

    fn run_synchronize(&self) -> BackendResult<()> {
        let ctx = self.ctx()?;
        #[cfg(not(target_arch = "wasm32"))]
        {
            pollster::block_on(ctx.synchronize())
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = ctx;
            Err(would_block("synchronize"))
        }
    }

    fn run_alloc(&self, bytes: usize) -> BackendResult<u64> {
        let ctx = self.ctx()?;
        let mut st = ctx.lock();
        let block = st.pool.alloc(&ctx.device, bytes as u64)?;
        st.space.insert(bytes as u64, block)
    }

    fn run_free(&self, ptr: u64) -> BackendResult<()> {
        let ctx = self.ctx()?;
        let mut st = ctx.lock();
        if let Some(a) = st.space.get(ptr)
            && a.handle.imported()
        {
            return Err(imported_refused("free", ptr, a.size));
        }
        // `None`: `ptr` was an alias (backend-api's address space), which holds no memory.
        if let Some(a) = st.space.remove(ptr)? {
            st.pool.free(a.handle);
        }
        Ok(())
    }

    fn run_alias(&self, ptr: u64, bytes: usize) -> BackendResult<u64> {
        self.ctx()?.lock().space.alias(ptr, bytes as u64)
    }

    fn run_retire(&self, alias: u64, why: Retired) -> BackendResult<()> {
        self.ctx()?.lock().space.retire(alias, why)
    }

    fn physical(&self, op: &'static str, operands: Vec<&mut Operand>) -> BackendResult<bool> {
        self.ctx()?.lock().space.rewrite_physical(op, operands)
    }

    fn run_copy_htod(&self, p: &HostCopyPlan, src: &[u8]) -> BackendResult<()> {
        self.ctx()?.copy_htod(p, src)
    }

    /// A staged view: the bytes are copied into a host buffer (for modes that read) and
    /// written back when the view ends (modes that write), each copy counted in
    /// `staged_bytes`. Only the viewed bytes are refused to other calls meanwhile. (Mapping
    /// unified memory in place would map the pool's whole shared buffer, which other
    /// allocations live in; not done.) In a browser a `Read`/`ReadWrite` view would block
    /// on the readback: `Unsupported`, as `copy_dtoh` there.
    fn run_map_host(&self, p: &HostCopyPlan, mode: MapMode) -> BackendResult<HostView<'_>> {
        let ctx = self.ctx()?;
        {
            let st = ctx.lock();
            let r = st.space.resolve(p.op, &p.device)?;
            if r.handle.imported() {
                return Err(imported_refused(p.op, r.base, r.handle.size));
            }
        }
        // A Read view of an allocation with a buffer of its own, on unified memory: the
        // buffer mapped in place, no copy. The whole allocation is refused meanwhile (a
        // mapped buffer may not be used by any submission).
        #[cfg(not(target_arch = "wasm32"))]
        if mode == MapMode::Read && ctx.mappable {
            let mut st = ctx.lock();
            let State { space, stream, .. } = &mut *st;
            let r = space.resolve(p.op, &p.device)?;
            if r.handle.own_buffer() {
                let (base, offset, block) = (r.base, r.offset, r.handle.clone());
                let mapped =
                    transfer::MappedRead::new(ctx, stream, &block, offset, p.device.bytes)?;
                let id = space.add_view(base, offset, p.device.bytes, true);
                let view = InPlaceRead {
                    backend: self,
                    id,
                    mapped,
                };
                return Ok(HostView::new(p.device.ptr, mode, Box::new(view)));
            }
        }
        let bytes = p.device.bytes as usize;
        #[cfg(target_arch = "wasm32")]
        if mode.reads() {
            ctx.lock().space.resolve(p.op, &p.device)?;
            return Err(BackendError::Unsupported(format!(
                "{}: a {mode:?} view would block on the readback, and a browser's main thread cannot block; read with copy_dtoh_async, or map with MapMode::Write",
                p.op
            )));
        }
        let mut buf = vec![0u8; bytes];
        if mode.reads() {
            self.run_copy_dtoh(&mut buf, p)?;
            ctx.count_staged(bytes);
        }
        let id = {
            let mut st = ctx.lock();
            let r = st.space.resolve(p.op, &p.device)?;
            let (base, offset) = (r.base, r.offset);
            st.space.add_view(base, offset, p.device.bytes, false)
        };
        let staged = StagedView {
            backend: self,
            plan: *p,
            id,
            buf,
        };
        Ok(HostView::new(p.device.ptr, mode, Box::new(staged)))
    }

    fn run_copy_dtoh(&self, dst: &mut [u8], p: &HostCopyPlan) -> BackendResult<()> {
        let ctx = self.ctx()?;
        #[cfg(not(target_arch = "wasm32"))]
        {
            pollster::block_on(ctx.copy_dtoh(dst, p))
        }
        #[cfg(target_arch = "wasm32")]
        {
            // A bad range is still reported as such, before the refusal to block.
            let _ = dst;
            ctx.lock().space.resolve(p.op, &p.device)?;
            Err(would_block(p.op))
        }
    }

    fn run_copy_dtod(&self, p: &CopyPlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.copy_dtod(p))
    }

    fn run_cast(&self, p: &CastPlan) -> BackendResult<()> {
        self.ctx()?.outside_lock(|c| c.cast(p))
    }

    fn run_copy_dtoh_async<'a>(
        &'a self,
        dst: &'a mut [u8],
        p: HostCopyPlan,
    ) -> BackendFuture<'a, ()> {
        Box::pin(async move { self.ctx()?.copy_dtoh(dst, &p).await })
    }

    fn run_copy_dtoh_many(&self, reads: &mut [(HostCopyPlan, &mut [u8])]) -> BackendResult<()> {
        let ctx = self.ctx()?;
        #[cfg(not(target_arch = "wasm32"))]
        {
            pollster::block_on(ctx.copy_dtoh_many(reads))
        }
        #[cfg(target_arch = "wasm32")]
        {
            // Bad ranges are still reported as such, before the refusal to block.
            for (p, _) in reads.iter() {
                ctx.lock().space.resolve(p.op, &p.device)?;
            }
            Err(would_block("copy_dtoh_many"))
        }
    }

    fn run_copy_dtoh_many_async<'a>(
        &'a self,
        reads: Vec<(HostCopyPlan, &'a mut [u8])>,
    ) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let mut reads = reads;
            self.ctx()?.copy_dtoh_many(&mut reads).await
        })
    }

    fn run_synchronize_async(&self) -> BackendFuture<'_, ()> {
        Box::pin(async move { self.ctx()?.synchronize().await })
    }

    fn run_memory_info(&self) -> BackendResult<MemoryInfo> {
        let ctx = self.ctx()?;
        let st = ctx.lock();
        Ok(MemoryInfo {
            allocated_bytes: st.space.allocated_bytes(),
            reserved_bytes: st.pool.reserved(),
            live_allocations: st.space.len() as u64,
            staged_bytes: ctx.staged.load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}

/// The memory of a staged host view (`map_host` on the WebGPU backend).
struct StagedView<'a> {
    backend: &'a WebGpuBackend,
    plan: HostCopyPlan,
    /// Its registration in the address space.
    id: u64,
    buf: Vec<u8>,
}

impl ViewMemory for StagedView<'_> {
    fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    fn end(&mut self, publish: bool) -> BackendResult<()> {
        let ctx = self.backend.ctx()?;
        ctx.lock().space.end_view(self.id);
        if publish {
            ctx.copy_htod(&self.plan, &self.buf)?;
            ctx.count_staged(self.buf.len());
        }
        Ok(())
    }
}

/// The memory of an in-place `Read` host view (unified memory, native).
#[cfg(not(target_arch = "wasm32"))]
struct InPlaceRead<'a> {
    backend: &'a WebGpuBackend,
    id: u64,
    mapped: transfer::MappedRead,
}

#[cfg(not(target_arch = "wasm32"))]
impl ViewMemory for InPlaceRead<'_> {
    fn bytes(&self) -> &[u8] {
        self.mapped.bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // Never called: `HostView` refuses `bytes_mut` on a Read view.
        &mut []
    }

    fn end(&mut self, _publish: bool) -> BackendResult<()> {
        self.mapped.unmap();
        self.backend.ctx()?.lock().space.end_view(self.id);
        Ok(())
    }
}
