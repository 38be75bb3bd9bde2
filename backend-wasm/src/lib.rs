//! `WasmBackend`: the [`ComputeBackend`] in a browser, on the browser's WebGPU.
//!
//! It wraps [`WebGpuBackend`] (every op a WGSL kernel, pooled memory, one in-order
//! stream) and adds what a page or a worker needs:
//!
//! - **Initialisation without blocking.** [`WasmBackend::init_from_canvas`] finds the
//!   page's `<canvas>` by id, then requests the adapter and device asynchronously;
//!   [`WasmBackend::init_without_canvas`] does the same without a canvas, for dedicated
//!   workers (which have no document). Failures are [`WebGpuError`]s that say what was
//!   missing (no element with that id, an element that is not a canvas, a browser
//!   without `navigator.gpu`, no adapter) and convert into [`BackendError`](backend_api::BackendError).
//! - **No hangs.** A browser resolves GPU readbacks only once control returns to its
//!   event loop, so blocking on one hangs the page forever. On `wasm32`, ops,
//!   `alloc`/`free` and `copy_htod` enqueue and return; the blocking
//!   [`copy_dtoh`](ComputeBackend::copy_dtoh), [`synchronize`](ComputeBackend::synchronize)
//!   and [`init`](ComputeBackend::init) return [`Unsupported`](backend_api::BackendError::Unsupported) naming the
//!   async method to use instead ([`copy_dtoh_async`](ComputeBackend::copy_dtoh_async),
//!   [`synchronize_async`](ComputeBackend::synchronize_async), the async inits). They
//!   never block.
//! - **Natively it is the WebGPU backend.** On other targets every call, the blocking
//!   ones included, works as on [`WebGpuBackend`] (blocking through `pollster`), so the
//!   wrapper's logic is tested natively on lavapipe as well as in headless Chromium.
//! - **A CPU fallback in the same module.** [`WasmBackend::open`] uses WebGPU when the
//!   browser gives an adapter and a device, and otherwise [`FastCpuBackend`] compiled
//!   to WebAssembly (SIMD128 with this workspace's `.cargo/config.toml`, one thread):
//!   [`engine`](WasmBackend::engine) says which, [`fallback_reason`](WasmBackend::fallback_reason)
//!   why. On the CPU engine every call works, the blocking ones included, since nothing
//!   waits for the event loop; [`WasmBackend::fast_cpu`] asks for it directly.
//!
//! Everything else — validation, errors, numerics — is the WebGPU backend's: see the
//! `backend-webgpu` and `backend-api` crate docs for the contract. In a browser, errors
//! of queued work (wgpu validation, out of memory) surface at a later
//! `synchronize_async`/`copy_dtoh_async`, as natively; `docs/WEB.md` says how the
//! browser may deliver a failed submission's follow-up error one sync point late.
//!
//! ```no_run
//! # async fn demo() -> Result<(), backend_api::BackendError> {
//! use backend_api::{ComputeBackend, ComputeBackendExt, UnaryOp};
//! use backend_wasm::WasmBackend;
//!
//! // WebGPU, or the CPU engine in a browser without it:
//! let b = WasmBackend::open(Some("gpu-canvas")).await?;
//! let x = b.upload(&[1.0f32, 4.0, 9.0])?;
//! b.unary(UnaryOp::Sqrt, x, x, 3)?;
//! let v: Vec<f32> = b.copy_dtoh_vec_async(x, 3).await?; // never `copy_dtoh` on the web
//! assert_eq!(v, [1.0, 2.0, 3.0]);
//! # Ok(()) }
//! ```

mod error;
#[cfg(target_arch = "wasm32")]
mod web;

use backend_api::executor::Executor;
use backend_api::validate::{
    AttentionPlan, BinaryPlan, BroadcastPlan, CastPlan, Conv2dPlan, CopyPlan, GatherPlan, GemmPlan,
    GemmQPlan, HostCopyPlan, ReducePlan, RowPlan, UnaryPlan,
};
use backend_api::{
    BackendFuture, BackendResult, BinaryOp, ComputeBackend, MemoryInfo, Operand, ReduceOp, Retired,
    UnaryOp, UnaryParamOp,
};
pub use backend_fast_cpu::FastCpuBackend;
pub use backend_webgpu::{AdapterSummary, WebGpuBackend, WebGpuOptions};
pub use error::WebGpuError;

/// The name of a backend before `init`.
const UNINIT_NAME: &str = "wasm";

/// The backend for browsers. See the [crate documentation](crate).
#[derive(Debug)]
pub struct WasmBackend {
    inner: Inner,
    name: String,
    canvas_id: Option<String>,
    browser_adapter: Option<BrowserAdapterInfo>,
    fallback_reason: Option<String>,
    /// The options (or `BACKEND_ADAPTER`) name an adapter: `open` then keeps it even when
    /// it is a software one.
    adapter_named: bool,
}

/// What runs the ops.
#[derive(Debug)]
enum Inner {
    WebGpu(WebGpuBackend),
    FastCpu(FastCpuBackend),
}

/// What a [`WasmBackend`] runs its ops on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The browser's WebGPU (natively: wgpu's adapter).
    WebGpu,
    /// [`FastCpuBackend`] compiled into the module (`simd128` when the module was built
    /// with it, one thread): the fallback where there is no WebGPU.
    FastCpu,
}

/// The call, forwarded to whichever engine runs the ops.
macro_rules! engine {
    ($self:ident, $b:ident => $call:expr) => {
        match &$self.inner {
            Inner::WebGpu($b) => $call,
            Inner::FastCpu($b) => $call,
        }
    };
}

/// The instruction set the fast CPU engine was compiled for, as its name shows it.
const CPU_FLAVOUR: &str = if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
    "wasm simd128, one thread"
} else if cfg!(target_arch = "wasm32") {
    "wasm scalar, one thread"
} else {
    "native"
};

/// The adapter as the browser describes it (`GPUAdapterInfo`), which wgpu does not pass
/// on: in a browser [`AdapterSummary::name`] is empty. Browsers may leave fields empty
/// for privacy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserAdapterInfo {
    /// E.g. `google`, `nvidia`.
    pub vendor: String,
    /// E.g. `swiftshader`, `ampere`.
    pub architecture: String,
    /// The device, often empty.
    pub device: String,
    /// A human-readable description, often empty.
    pub description: String,
    /// A fallback (software) adapter, such as SwiftShader.
    pub is_fallback: bool,
}

impl BrowserAdapterInfo {
    /// The non-empty fields, space-separated, e.g. `google swiftshader (fallback)`.
    pub fn label(&self) -> String {
        let mut parts: Vec<&str> = [
            &self.vendor,
            &self.architecture,
            &self.device,
            &self.description,
        ]
        .into_iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
        if self.is_fallback {
            parts.push("(fallback)");
        }
        parts.join(" ")
    }
}

/// Reads no environment variable: [`WebGpuOptions::default`] (`new()` applies the
/// environment).
impl Default for WasmBackend {
    fn default() -> Self {
        Self::with_options(WebGpuOptions::default())
    }
}

impl WasmBackend {
    /// An uninitialised backend (cheap, infallible). Initialise it with
    /// [`init_async`](Self::init_async) (any target) or [`init`](ComputeBackend::init)
    /// (native only), or construct it initialised with
    /// [`init_from_canvas`](Self::init_from_canvas) /
    /// [`init_without_canvas`](Self::init_without_canvas).
    pub fn new() -> Self {
        Self {
            inner: Inner::WebGpu(WebGpuBackend::new()),
            adapter_named: WebGpuOptions::from_env()
                .ok()
                .and_then(|o| o.selector())
                .is_some(),
            ..Self::default()
        }
    }

    /// An uninitialised backend with explicit adapter options (in a browser the browser
    /// picks the adapter; a selector in `options` must then match it).
    pub fn with_options(options: WebGpuOptions) -> Self {
        Self {
            adapter_named: options.selector().is_some(),
            inner: Inner::WebGpu(WebGpuBackend::with_options(options)),
            name: UNINIT_NAME.to_string(),
            canvas_id: None,
            browser_adapter: None,
            fallback_reason: None,
        }
    }

    /// An initialised backend on [`FastCpuBackend`], whatever the browser has: the
    /// engine [`open`](Self::open) falls back to. Every call works on it, the blocking
    /// ones included, since none of them waits for anything.
    pub fn fast_cpu() -> Result<Self, WebGpuError> {
        let mut b = Self::new();
        b.use_fast_cpu(None)?;
        Ok(b)
    }

    /// The backend a page or a worker should use: WebGPU when the browser gives a
    /// hardware adapter and a device, otherwise [`FastCpuBackend`] (then
    /// [`fallback_reason`](Self::fallback_reason) says why): without `navigator.gpu`,
    /// without an adapter or device, and when the adapter is a software one (SwiftShader,
    /// `isFallbackAdapter`; lavapipe natively), on which the CPU engine is 16-21x faster
    /// at SGEMM (docs/PERFORMANCE.md). A software adapter is kept when the options (or
    /// `BACKEND_ADAPTER`) name an adapter, and [`init_without_canvas`](Self::init_without_canvas)
    /// / [`init_from_canvas`](Self::init_from_canvas) always give WebGPU. With
    /// `Some(canvas_id)` the canvas is checked first, as `init_from_canvas` does, and its
    /// errors are returned whatever the engine: they are the page's mistakes.
    pub async fn open(canvas_id: Option<&str>) -> Result<Self, WebGpuError> {
        Self::new().init_or_fall_back(canvas_id).await
    }

    /// [`open`](Self::open) on this uninitialised backend (whose options pick the
    /// adapter); an initialised one is returned as it is.
    pub async fn init_or_fall_back(mut self, canvas_id: Option<&str>) -> Result<Self, WebGpuError> {
        if self.is_initialized() {
            return Ok(self);
        }
        if let Some(id) = canvas_id {
            find_canvas(id)?;
            self.canvas_id = Some(id.to_string());
        }
        match self.init_async().await {
            Ok(()) => {
                if !self.adapter_named
                    && let Some(why) = self.software_adapter()
                {
                    self.use_fast_cpu(Some(why))?;
                }
                Ok(self)
            }
            Err(e @ (WebGpuError::WebGpuUnavailable | WebGpuError::Init(_))) => {
                self.use_fast_cpu(Some(e.to_string()))?;
                Ok(self)
            }
            Err(e) => Err(e),
        }
    }

    /// Why the WebGPU adapter in use is not worth running on, if it is a software one.
    fn software_adapter(&self) -> Option<String> {
        let why = "the CPU engine is faster there (docs/PERFORMANCE.md); \
                   init_without_canvas keeps WebGPU";
        if let Some(info) = self.browser_adapter.as_ref().filter(|i| i.is_fallback) {
            return Some(format!(
                "the browser's WebGPU adapter is a software fallback ({}): {why}",
                info.label()
            ));
        }
        let adapter = self.adapter().filter(|a| a.is_software())?;
        Some(format!(
            "the WebGPU adapter is a software one ({}): {why}",
            adapter.label()
        ))
    }

    /// Switches a backend to the fast CPU engine and initialises it.
    fn use_fast_cpu(&mut self, reason: Option<String>) -> Result<(), WebGpuError> {
        let mut cpu = FastCpuBackend::new();
        cpu.init().map_err(WebGpuError::Init)?;
        self.inner = Inner::FastCpu(cpu);
        self.browser_adapter = None;
        self.fallback_reason = reason;
        self.after_init();
        Ok(())
    }

    /// Finds the `<canvas>` with id `canvas_id` in the page, then opens the browser's
    /// WebGPU adapter and device without blocking.
    ///
    /// Compute needs no surface, so the canvas is not configured or drawn on: it is
    /// located and checked, so that a page's setup mistakes show at init, and its id is
    /// kept ([`canvas_id`](Self::canvas_id)) for presenting results.
    ///
    /// Errors: [`WebGpuError::NoDocument`] outside a page (in a worker, or natively);
    /// [`WebGpuError::CanvasNotFound`] when no element has that id;
    /// [`WebGpuError::NotACanvas`] when the element is not a `<canvas>`;
    /// [`WebGpuError::WebGpuUnavailable`] when the browser has no `navigator.gpu`;
    /// [`WebGpuError::Init`] when no adapter or device could be had.
    pub async fn init_from_canvas(canvas_id: &str) -> Result<Self, WebGpuError> {
        find_canvas(canvas_id)?;
        let mut b = Self::new();
        b.canvas_id = Some(canvas_id.to_string());
        b.init_async().await?;
        Ok(b)
    }

    /// Opens the browser's WebGPU adapter and device without a canvas and without
    /// blocking: the initialisation for dedicated workers, which have no document.
    /// Natively it opens the best adapter (or the one `BACKEND_ADAPTER` names).
    pub async fn init_without_canvas() -> Result<Self, WebGpuError> {
        let mut b = Self::new();
        b.init_async().await?;
        Ok(b)
    }

    /// Opens the adapter and device without blocking; a no-op once initialised.
    pub async fn init_async(&mut self) -> Result<(), WebGpuError> {
        if self.is_initialized() {
            return Ok(());
        }
        let gpu = match &mut self.inner {
            Inner::WebGpu(gpu) => gpu,
            Inner::FastCpu(_) => return self.use_fast_cpu(self.fallback_reason.clone()),
        };
        #[cfg(target_arch = "wasm32")]
        web::check_webgpu()?;
        gpu.init_async().await.map_err(WebGpuError::Init)?;
        #[cfg(target_arch = "wasm32")]
        {
            self.browser_adapter = web::adapter_info().await;
        }
        self.after_init();
        Ok(())
    }

    fn after_init(&mut self) {
        self.name = match (&self.inner, &self.browser_adapter) {
            (Inner::WebGpu(gpu), Some(info))
                if gpu.adapter().is_some_and(|a| a.name.is_empty()) =>
            {
                let backend = gpu.adapter().map(|a| a.backend.clone()).unwrap_or_default();
                format!("wasm: webgpu ({backend}, {})", info.label())
            }
            (Inner::WebGpu(gpu), _) => format!("wasm: {}", gpu.name()),
            (Inner::FastCpu(cpu), _) => format!("wasm: {} ({CPU_FLAVOUR})", cpu.name()),
        };
        tracing::info!(
            backend = %self.name,
            canvas = ?self.canvas_id,
            fallback = ?self.fallback_reason,
            "wasm backend initialised"
        );
    }

    /// What runs the ops: WebGPU until [`open`](Self::open) falls back or
    /// [`fast_cpu`](Self::fast_cpu) is asked for.
    pub fn engine(&self) -> Engine {
        match self.inner {
            Inner::WebGpu(_) => Engine::WebGpu,
            Inner::FastCpu(_) => Engine::FastCpu,
        }
    }

    /// Why [`open`](Self::open) fell back to the fast CPU engine (no `navigator.gpu`,
    /// no adapter, no device); `None` on WebGPU or when the CPU was asked for.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// The adapter in use, once initialised on WebGPU.
    pub fn adapter(&self) -> Option<&AdapterSummary> {
        self.webgpu().and_then(WebGpuBackend::adapter)
    }

    /// The adapter as the browser describes it, once initialised in a browser (`None`
    /// natively, or when the browser gives no `GPUAdapterInfo`).
    pub fn browser_adapter(&self) -> Option<&BrowserAdapterInfo> {
        self.browser_adapter.as_ref()
    }

    /// The id of the canvas this backend was initialised from, if any.
    pub fn canvas_id(&self) -> Option<&str> {
        self.canvas_id.as_deref()
    }

    /// True while the device works; false after it was lost (then create a new backend).
    pub fn is_usable(&self) -> bool {
        match &self.inner {
            Inner::WebGpu(gpu) => gpu.is_usable(),
            Inner::FastCpu(cpu) => cpu.is_initialized(),
        }
    }

    /// The wrapped WebGPU backend, unless the engine is the CPU.
    pub fn webgpu(&self) -> Option<&WebGpuBackend> {
        match &self.inner {
            Inner::WebGpu(gpu) => Some(gpu),
            Inner::FastCpu(_) => None,
        }
    }
}

/// Checks that the page has a `<canvas>` with this id.
fn find_canvas(canvas_id: &str) -> Result<(), WebGpuError> {
    #[cfg(target_arch = "wasm32")]
    {
        web::find_canvas(canvas_id)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Err(WebGpuError::NoDocument(format!(
            "looking for canvas {canvas_id:?}: not running in a browser; natively use \
             WasmBackend::init_without_canvas or new() + init()"
        )))
    }
}

/// Every op goes to the engine's executor (the wrapped [`WebGpuBackend`] or
/// [`FastCpuBackend`]): the call was validated once, by this type's own
/// `ComputeBackend` layer.
impl Executor for WasmBackend {
    fn backend_name(&self) -> &str {
        &self.name
    }

    fn run_init(&mut self) -> BackendResult<()> {
        if self.initialized() {
            return Ok(());
        }
        let gpu = match &mut self.inner {
            Inner::WebGpu(gpu) => gpu,
            Inner::FastCpu(_) => return Ok(self.use_fast_cpu(self.fallback_reason.clone())?),
        };
        #[cfg(not(target_arch = "wasm32"))]
        {
            gpu.init()?;
            self.after_init();
            Ok(())
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = gpu;
            Err(backend_api::BackendError::Unsupported(
                "init would block, and a browser's main thread cannot block: use \
                 WasmBackend::open(canvas).await, WasmBackend::init_from_canvas(id).await, \
                 WasmBackend::init_without_canvas().await, init_async().await, or \
                 WasmBackend::fast_cpu() for the CPU engine"
                    .into(),
            ))
        }
    }

    fn initialized(&self) -> bool {
        engine!(self, b => b.is_initialized())
    }

    fn ready(&self) -> BackendResult<()> {
        engine!(self, b => b.ready())
    }

    fn run_gemm(&self, p: &GemmPlan) -> BackendResult<()> {
        engine!(self, b => b.run_gemm(p))
    }

    fn run_conv2d_forward(&self, p: &Conv2dPlan) -> BackendResult<()> {
        engine!(self, b => b.run_conv2d_forward(p))
    }

    fn run_attention(&self, p: &AttentionPlan) -> BackendResult<()> {
        engine!(self, b => b.run_attention(p))
    }

    fn run_reduce(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        engine!(self, b => b.run_reduce(op, p))
    }

    fn run_rows(&self, p: &RowPlan) -> BackendResult<()> {
        engine!(self, b => b.run_rows(p))
    }

    fn run_rows_ex(&self, p: &RowPlan) -> BackendResult<()> {
        engine!(self, b => b.run_rows_ex(p))
    }

    fn run_unary(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        engine!(self, b => b.run_unary(op, p))
    }

    fn run_unary_param(
        &self,
        op: UnaryParamOp,
        a: f32,
        b: f32,
        p: &UnaryPlan,
    ) -> BackendResult<()> {
        engine!(self, e => e.run_unary_param(op, a, b, p))
    }

    fn run_binary(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        engine!(self, b => b.run_binary(op, p))
    }

    fn run_unary_ex(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        engine!(self, b => b.run_unary_ex(op, p))
    }

    fn run_binary_ex(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        engine!(self, b => b.run_binary_ex(op, p))
    }

    fn run_reduce_ex(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        engine!(self, b => b.run_reduce_ex(op, p))
    }

    fn run_binary_broadcast(&self, op: BinaryOp, p: &BroadcastPlan) -> BackendResult<()> {
        engine!(self, b => b.run_binary_broadcast(op, p))
    }

    fn run_gather(&self, p: &GatherPlan) -> BackendResult<()> {
        engine!(self, b => b.run_gather(p))
    }

    fn run_gemm_q(&self, p: &GemmQPlan) -> BackendResult<()> {
        engine!(self, b => b.run_gemm_q(p))
    }

    fn run_gemm_ex(&self, p: &GemmPlan) -> BackendResult<()> {
        engine!(self, b => b.run_gemm_ex(p))
    }

    fn run_attention_ex(&self, p: &AttentionPlan) -> BackendResult<()> {
        engine!(self, b => b.run_attention_ex(p))
    }

    fn run_conv2d_ex(&self, p: &Conv2dPlan) -> BackendResult<()> {
        engine!(self, b => b.run_conv2d_ex(p))
    }

    fn run_binary_broadcast_ex(&self, op: BinaryOp, p: &BroadcastPlan) -> BackendResult<()> {
        engine!(self, b => b.run_binary_broadcast_ex(op, p))
    }

    fn run_gather_ex(&self, p: &GatherPlan) -> BackendResult<()> {
        engine!(self, b => b.run_gather_ex(p))
    }

    fn run_unary_param_ex(
        &self,
        op: UnaryParamOp,
        a: f32,
        b: f32,
        p: &UnaryPlan,
    ) -> BackendResult<()> {
        engine!(self, e => e.run_unary_param_ex(op, a, b, p))
    }

    /// Natively waits for the device; on `wasm32` returns `Unsupported` (use
    /// [`synchronize_async`](ComputeBackend::synchronize_async)).
    fn run_synchronize(&self) -> BackendResult<()> {
        engine!(self, b => b.run_synchronize())
    }

    fn run_alloc(&self, bytes: usize) -> BackendResult<u64> {
        engine!(self, b => b.run_alloc(bytes))
    }

    fn run_free(&self, ptr: u64) -> BackendResult<()> {
        engine!(self, b => b.run_free(ptr))
    }

    fn run_alias(&self, ptr: u64, bytes: usize) -> BackendResult<u64> {
        engine!(self, b => b.run_alias(ptr, bytes))
    }

    fn run_retire(&self, alias: u64, why: Retired) -> BackendResult<()> {
        engine!(self, b => b.run_retire(alias, why))
    }

    fn physical(&self, op: &'static str, operands: Vec<&mut Operand>) -> BackendResult<bool> {
        engine!(self, b => b.physical(op, operands))
    }

    fn run_copy_htod(&self, p: &HostCopyPlan, src: &[u8]) -> BackendResult<()> {
        engine!(self, b => b.run_copy_htod(p, src))
    }

    /// Natively waits for the data; on `wasm32` returns `Unsupported` (use
    /// [`copy_dtoh_async`](ComputeBackend::copy_dtoh_async)).
    fn run_copy_dtoh(&self, dst: &mut [u8], p: &HostCopyPlan) -> BackendResult<()> {
        engine!(self, b => b.run_copy_dtoh(dst, p))
    }

    fn run_copy_dtod(&self, p: &CopyPlan) -> BackendResult<()> {
        engine!(self, b => b.run_copy_dtod(p))
    }

    fn run_cast(&self, p: &CastPlan) -> BackendResult<()> {
        engine!(self, b => b.run_cast(p))
    }

    fn run_copy_dtoh_async<'a>(
        &'a self,
        dst: &'a mut [u8],
        p: HostCopyPlan,
    ) -> BackendFuture<'a, ()> {
        engine!(self, b => b.run_copy_dtoh_async(dst, p))
    }

    fn run_copy_dtoh_many(&self, reads: &mut [(HostCopyPlan, &mut [u8])]) -> BackendResult<()> {
        engine!(self, b => b.run_copy_dtoh_many(reads))
    }

    fn run_copy_dtoh_many_async<'a>(
        &'a self,
        reads: Vec<(HostCopyPlan, &'a mut [u8])>,
    ) -> BackendFuture<'a, ()> {
        engine!(self, b => b.run_copy_dtoh_many_async(reads))
    }

    fn run_synchronize_async(&self) -> BackendFuture<'_, ()> {
        engine!(self, b => b.run_synchronize_async())
    }

    fn run_memory_info(&self) -> BackendResult<MemoryInfo> {
        engine!(self, b => b.run_memory_info())
    }

    fn run_map_host(
        &self,
        p: &HostCopyPlan,
        mode: backend_api::MapMode,
    ) -> BackendResult<backend_api::HostView<'_>> {
        engine!(self, b => b.run_map_host(p, mode))
    }

    fn zero_copy_views(&self) -> bool {
        engine!(self, b => b.zero_copy_views())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_api::BackendError;

    #[test]
    fn new_is_uninitialised_and_refuses_calls() {
        let b = WasmBackend::new();
        assert!(!b.is_initialized());
        assert_eq!(b.name(), UNINIT_NAME);
        assert!(b.adapter().is_none());
        assert!(b.canvas_id().is_none());
        assert!(b.browser_adapter().is_none());
        assert_eq!(b.alloc(4), Err(BackendError::NotInitialized));
        assert_eq!(b.memory_info(), Err(BackendError::NotInitialized));
    }

    #[test]
    fn browser_adapter_label_names_the_known_fields() {
        let info = BrowserAdapterInfo {
            vendor: "google".into(),
            architecture: "swiftshader".into(),
            is_fallback: true,
            ..Default::default()
        };
        assert_eq!(info.label(), "google swiftshader (fallback)");
        assert_eq!(BrowserAdapterInfo::default().label(), "");
    }

    #[test]
    fn backend_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<WasmBackend>();
    }
}
