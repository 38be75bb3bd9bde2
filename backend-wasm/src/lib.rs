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
//! let b = WasmBackend::init_from_canvas("gpu-canvas").await?;
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
pub use backend_webgpu::{AdapterSummary, WebGpuBackend, WebGpuOptions};
pub use error::WebGpuError;

/// The name of a backend before `init`.
const UNINIT_NAME: &str = "wasm";

/// The WebGPU backend for browsers. See the [crate documentation](crate).
#[derive(Debug)]
pub struct WasmBackend {
    inner: WebGpuBackend,
    name: String,
    canvas_id: Option<String>,
    browser_adapter: Option<BrowserAdapterInfo>,
}

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
            inner: WebGpuBackend::new(),
            ..Self::default()
        }
    }

    /// An uninitialised backend with explicit adapter options (in a browser the browser
    /// picks the adapter; a selector in `options` must then match it).
    pub fn with_options(options: WebGpuOptions) -> Self {
        Self {
            inner: WebGpuBackend::with_options(options),
            name: UNINIT_NAME.to_string(),
            canvas_id: None,
            browser_adapter: None,
        }
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
        if self.inner.is_initialized() {
            return Ok(());
        }
        #[cfg(target_arch = "wasm32")]
        web::check_webgpu()?;
        self.inner.init_async().await.map_err(WebGpuError::Init)?;
        #[cfg(target_arch = "wasm32")]
        {
            self.browser_adapter = web::adapter_info().await;
        }
        self.after_init();
        Ok(())
    }

    fn after_init(&mut self) {
        self.name = match (self.inner.adapter(), &self.browser_adapter) {
            (Some(a), Some(info)) if a.name.is_empty() => {
                format!("wasm: webgpu ({}, {})", a.backend, info.label())
            }
            _ => format!("wasm: {}", self.inner.name()),
        };
        tracing::info!(backend = %self.name, canvas = ?self.canvas_id, "wasm backend initialised");
    }

    /// The adapter in use, once initialised.
    pub fn adapter(&self) -> Option<&AdapterSummary> {
        self.inner.adapter()
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
        self.inner.is_usable()
    }

    /// The wrapped WebGPU backend.
    pub fn webgpu(&self) -> &WebGpuBackend {
        &self.inner
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

/// Every op goes to the wrapped [`WebGpuBackend`]'s executor: the call was validated once,
/// by this type's own `ComputeBackend` layer.
impl Executor for WasmBackend {
    fn backend_name(&self) -> &str {
        &self.name
    }

    fn run_init(&mut self) -> BackendResult<()> {
        if self.inner.is_initialized() {
            return Ok(());
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.inner.init()?;
            self.after_init();
            Ok(())
        }
        #[cfg(target_arch = "wasm32")]
        {
            Err(backend_api::BackendError::Unsupported(
                "init would block, and a browser's main thread cannot block: use \
                 WasmBackend::init_from_canvas(id).await, WasmBackend::init_without_canvas().await \
                 or init_async().await"
                    .into(),
            ))
        }
    }

    fn initialized(&self) -> bool {
        self.inner.is_initialized()
    }

    fn ready(&self) -> BackendResult<()> {
        self.inner.ready()
    }

    fn run_gemm(&self, p: &GemmPlan) -> BackendResult<()> {
        self.inner.run_gemm(p)
    }

    fn run_conv2d_forward(&self, p: &Conv2dPlan) -> BackendResult<()> {
        self.inner.run_conv2d_forward(p)
    }

    fn run_attention(&self, p: &AttentionPlan) -> BackendResult<()> {
        self.inner.run_attention(p)
    }

    fn run_reduce(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        self.inner.run_reduce(op, p)
    }

    fn run_rows(&self, p: &RowPlan) -> BackendResult<()> {
        self.inner.run_rows(p)
    }

    fn run_unary(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        self.inner.run_unary(op, p)
    }

    fn run_unary_param(
        &self,
        op: UnaryParamOp,
        a: f32,
        b: f32,
        p: &UnaryPlan,
    ) -> BackendResult<()> {
        self.inner.run_unary_param(op, a, b, p)
    }

    fn run_binary(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        self.inner.run_binary(op, p)
    }

    fn run_unary_ex(&self, op: UnaryOp, p: &UnaryPlan) -> BackendResult<()> {
        self.inner.run_unary_ex(op, p)
    }

    fn run_binary_ex(&self, op: BinaryOp, p: &BinaryPlan) -> BackendResult<()> {
        self.inner.run_binary_ex(op, p)
    }

    fn run_reduce_ex(&self, op: ReduceOp, p: &ReducePlan) -> BackendResult<()> {
        self.inner.run_reduce_ex(op, p)
    }

    fn run_binary_broadcast(&self, op: BinaryOp, p: &BroadcastPlan) -> BackendResult<()> {
        self.inner.run_binary_broadcast(op, p)
    }

    fn run_gather(&self, p: &GatherPlan) -> BackendResult<()> {
        self.inner.run_gather(p)
    }

    fn run_gemm_q(&self, p: &GemmQPlan) -> BackendResult<()> {
        self.inner.run_gemm_q(p)
    }

    /// Natively waits for the device; on `wasm32` returns `Unsupported` (use
    /// [`synchronize_async`](ComputeBackend::synchronize_async)).
    fn run_synchronize(&self) -> BackendResult<()> {
        self.inner.run_synchronize()
    }

    fn run_alloc(&self, bytes: usize) -> BackendResult<u64> {
        self.inner.run_alloc(bytes)
    }

    fn run_free(&self, ptr: u64) -> BackendResult<()> {
        self.inner.run_free(ptr)
    }

    fn run_alias(&self, ptr: u64, bytes: usize) -> BackendResult<u64> {
        self.inner.run_alias(ptr, bytes)
    }

    fn run_retire(&self, alias: u64, why: Retired) -> BackendResult<()> {
        self.inner.run_retire(alias, why)
    }

    fn physical(&self, op: &'static str, operands: Vec<&mut Operand>) -> BackendResult<bool> {
        self.inner.physical(op, operands)
    }

    fn run_copy_htod(&self, p: &HostCopyPlan, src: &[u8]) -> BackendResult<()> {
        self.inner.run_copy_htod(p, src)
    }

    /// Natively waits for the data; on `wasm32` returns `Unsupported` (use
    /// [`copy_dtoh_async`](ComputeBackend::copy_dtoh_async)).
    fn run_copy_dtoh(&self, dst: &mut [u8], p: &HostCopyPlan) -> BackendResult<()> {
        self.inner.run_copy_dtoh(dst, p)
    }

    fn run_copy_dtod(&self, p: &CopyPlan) -> BackendResult<()> {
        self.inner.run_copy_dtod(p)
    }

    fn run_cast(&self, p: &CastPlan) -> BackendResult<()> {
        self.inner.run_cast(p)
    }

    fn run_copy_dtoh_async<'a>(
        &'a self,
        dst: &'a mut [u8],
        p: HostCopyPlan,
    ) -> BackendFuture<'a, ()> {
        self.inner.run_copy_dtoh_async(dst, p)
    }

    fn run_copy_dtoh_many(&self, reads: &mut [(HostCopyPlan, &mut [u8])]) -> BackendResult<()> {
        self.inner.run_copy_dtoh_many(reads)
    }

    fn run_copy_dtoh_many_async<'a>(
        &'a self,
        reads: Vec<(HostCopyPlan, &'a mut [u8])>,
    ) -> BackendFuture<'a, ()> {
        self.inner.run_copy_dtoh_many_async(reads)
    }

    fn run_synchronize_async(&self) -> BackendFuture<'_, ()> {
        self.inner.run_synchronize_async()
    }

    fn run_memory_info(&self) -> BackendResult<MemoryInfo> {
        self.inner.run_memory_info()
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
