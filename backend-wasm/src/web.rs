//! The browser side: finding the canvas, checking that WebGPU exists at all, and the
//! adapter's description as the browser gives it.

use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::{BrowserAdapterInfo, WebGpuError};

/// Checks that the page's document has a `<canvas>` with this id.
pub(crate) fn find_canvas(id: &str) -> Result<(), WebGpuError> {
    let window = web_sys::window().ok_or_else(|| {
        WebGpuError::NoDocument(format!(
            "looking for canvas {id:?}: there is no window here (a worker?); \
             use WasmBackend::init_without_canvas"
        ))
    })?;
    let document = window.document().ok_or_else(|| {
        WebGpuError::NoDocument(format!(
            "looking for canvas {id:?}: the window has no document"
        ))
    })?;
    let element = document
        .get_element_by_id(id)
        .ok_or_else(|| WebGpuError::CanvasNotFound { id: id.to_string() })?;
    if element.is_instance_of::<web_sys::HtmlCanvasElement>() {
        Ok(())
    } else {
        Err(WebGpuError::NotACanvas {
            id: id.to_string(),
            tag: element.tag_name().to_ascii_lowercase(),
        })
    }
}

/// `target[key]`, unless undefined or null.
fn get(target: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(target, &JsValue::from_str(key))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// `navigator.gpu` of the page or worker.
fn gpu() -> Option<JsValue> {
    get(&js_sys::global().into(), "navigator").and_then(|navigator| get(&navigator, "gpu"))
}

/// Checks that the browser has WebGPU (`navigator.gpu`).
pub(crate) fn check_webgpu() -> Result<(), WebGpuError> {
    gpu().map(drop).ok_or(WebGpuError::WebGpuUnavailable)
}

/// What the browser says about the adapter it gives for the request wgpu makes
/// (`requestAdapter({powerPreference: "high-performance"})`): wgpu does not pass
/// `GPUAdapterInfo` on. `None` when there is no adapter or no `info`.
pub(crate) async fn adapter_info() -> Option<BrowserAdapterInfo> {
    let gpu = gpu()?;
    let options = Object::new();
    Reflect::set(
        &options,
        &"powerPreference".into(),
        &"high-performance".into(),
    )
    .ok()?;
    let request: Function = get(&gpu, "requestAdapter")?.dyn_into().ok()?;
    let promise: Promise = request.call1(&gpu, &options).ok()?.dyn_into().ok()?;
    let adapter = JsFuture::from(promise).await.ok()?;
    if adapter.is_null() || adapter.is_undefined() {
        return None;
    }
    let info = get(&adapter, "info")?;
    let text = |key: &str| {
        get(&info, key)
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    // `isFallbackAdapter` moved from the adapter to its info; read either.
    let fallback = get(&info, "isFallbackAdapter")
        .or_else(|| get(&adapter, "isFallbackAdapter"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Some(BrowserAdapterInfo {
        vendor: text("vendor"),
        architecture: text("architecture"),
        device: text("device"),
        description: text("description"),
        is_fallback: fallback,
    })
}
