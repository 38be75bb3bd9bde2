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

use backend_api::{
    BackendFuture, BackendResult, BackendTranspose, BinaryOp, ComputeBackend, DType, MemoryInfo,
    ReduceOp, UnaryOp,
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

impl Default for WasmBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl WasmBackend {
    /// An uninitialised backend (cheap, infallible). Initialise it with
    /// [`init_async`](Self::init_async) (any target) or [`init`](ComputeBackend::init)
    /// (native only), or construct it initialised with
    /// [`init_from_canvas`](Self::init_from_canvas) /
    /// [`init_without_canvas`](Self::init_without_canvas).
    pub fn new() -> Self {
        Self::with_options(WebGpuOptions::default())
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

impl ComputeBackend for WasmBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn init(&mut self) -> BackendResult<()> {
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

    fn is_initialized(&self) -> bool {
        self.inner.is_initialized()
    }

    fn gemm(
        &self,
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a_ptr: u64,
        lda: usize,
        b_ptr: u64,
        ldb: usize,
        beta: f64,
        c_ptr: u64,
        ldc: usize,
    ) -> BackendResult<()> {
        self.inner.gemm(
            trans_a, trans_b, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c_ptr, ldc,
        )
    }

    fn batched_gemm(
        &self,
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a_ptr: u64,
        lda: usize,
        stride_a: usize,
        b_ptr: u64,
        ldb: usize,
        stride_b: usize,
        beta: f64,
        c_ptr: u64,
        ldc: usize,
        stride_c: usize,
        batch_count: usize,
    ) -> BackendResult<()> {
        self.inner.batched_gemm(
            trans_a,
            trans_b,
            m,
            n,
            k,
            alpha,
            a_ptr,
            lda,
            stride_a,
            b_ptr,
            ldb,
            stride_b,
            beta,
            c_ptr,
            ldc,
            stride_c,
            batch_count,
        )
    }

    fn gemm_ex(
        &self,
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a_ptr: u64,
        a_dtype: DType,
        lda: usize,
        b_ptr: u64,
        b_dtype: DType,
        ldb: usize,
        beta: f64,
        c_ptr: u64,
        ldc: usize,
    ) -> BackendResult<()> {
        self.inner.gemm_ex(
            trans_a, trans_b, m, n, k, alpha, a_ptr, a_dtype, lda, b_ptr, b_dtype, ldb, beta,
            c_ptr, ldc,
        )
    }

    fn conv2d_forward(
        &self,
        input_ptr: u64,
        input_shape: &[usize],
        filter_ptr: u64,
        filter_shape: &[usize],
        output_ptr: u64,
        output_shape: &[usize],
        stride: &[usize],
        padding: &[usize],
    ) -> BackendResult<()> {
        self.inner.conv2d_forward(
            input_ptr,
            input_shape,
            filter_ptr,
            filter_shape,
            output_ptr,
            output_shape,
            stride,
            padding,
        )
    }

    fn attention(
        &self,
        q_ptr: u64,
        k_ptr: u64,
        v_ptr: u64,
        o_ptr: u64,
        batch: usize,
        heads: usize,
        seq_q: usize,
        seq_kv: usize,
        head_dim: usize,
        scale: f64,
        causal: bool,
    ) -> BackendResult<()> {
        self.inner.attention(
            q_ptr, k_ptr, v_ptr, o_ptr, batch, heads, seq_q, seq_kv, head_dim, scale, causal,
        )
    }

    fn reduce(
        &self,
        op: ReduceOp,
        input_ptr: u64,
        output_ptr: u64,
        shape: &[usize],
        axis: usize,
    ) -> BackendResult<()> {
        self.inner.reduce(op, input_ptr, output_ptr, shape, axis)
    }

    fn unary(&self, op: UnaryOp, input_ptr: u64, output_ptr: u64, n: usize) -> BackendResult<()> {
        self.inner.unary(op, input_ptr, output_ptr, n)
    }

    fn binary(
        &self,
        op: BinaryOp,
        a_ptr: u64,
        b_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        self.inner.binary(op, a_ptr, b_ptr, output_ptr, n)
    }

    /// Natively waits for the device; on `wasm32` returns `Unsupported` (use
    /// [`synchronize_async`](ComputeBackend::synchronize_async)).
    fn synchronize(&self) -> BackendResult<()> {
        self.inner.synchronize()
    }

    fn alloc(&self, bytes: usize) -> BackendResult<u64> {
        self.inner.alloc(bytes)
    }

    fn free(&self, ptr: u64) -> BackendResult<()> {
        self.inner.free(ptr)
    }

    fn copy_htod(&self, dst: u64, src: &[u8]) -> BackendResult<()> {
        self.inner.copy_htod(dst, src)
    }

    /// Natively waits for the data; on `wasm32` returns `Unsupported` (use
    /// [`copy_dtoh_async`](ComputeBackend::copy_dtoh_async)).
    fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> BackendResult<()> {
        self.inner.copy_dtoh(dst, src)
    }

    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> BackendResult<()> {
        self.inner.copy_dtod(dst, src, bytes)
    }

    fn cast(
        &self,
        src: u64,
        src_dtype: DType,
        dst: u64,
        dst_dtype: DType,
        n: usize,
    ) -> BackendResult<()> {
        self.inner.cast(src, src_dtype, dst, dst_dtype, n)
    }

    fn copy_dtoh_async<'a>(&'a self, dst: &'a mut [u8], src: u64) -> BackendFuture<'a, ()> {
        self.inner.copy_dtoh_async(dst, src)
    }

    fn synchronize_async(&self) -> BackendFuture<'_, ()> {
        self.inner.synchronize_async()
    }

    fn memory_info(&self) -> BackendResult<MemoryInfo> {
        self.inner.memory_info()
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
