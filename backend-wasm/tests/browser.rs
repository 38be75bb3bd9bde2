//! `WasmBackend` in a real browser page (headless Chromium with WebGPU, driven by
//! `scripts/test-web`): the conformance suite through the async driver of the
//! `conformance` crate, `init_from_canvas` on a real canvas, a missing id and a
//! non-canvas element, and blocking calls that must return an error instead of hanging.
//!
//! A browser without a WebGPU adapter fails these tests: there is no skip here.

#![cfg(target_arch = "wasm32")]

#[path = "support/packed.rs"]
mod packed;
mod support;

use std::cell::RefCell;
use std::rc::Rc;

use backend_api::{BackendError, ComputeBackend, ComputeBackendExt, UnaryOp};
use backend_wasm::{Engine, WasmBackend, WebGpuError};
use conformance::Check;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// The canvas the shared backend is initialised from.
const CANVAS_ID: &str = "conformance-canvas";

thread_local! {
    static BACKEND: RefCell<Option<Rc<WasmBackend>>> = const { RefCell::new(None) };
}

fn document() -> web_sys::Document {
    web_sys::window()
        .and_then(|w| w.document())
        .expect("a browser test page has a document")
}

/// Adds `<tag id=id>` to the page's body.
fn add_element(tag: &str, id: &str) {
    let doc = document();
    let el = doc.create_element(tag).expect("create_element");
    el.set_id(id);
    doc.body()
        .expect("the test page has a body")
        .append_child(&el)
        .expect("append_child");
}

/// One backend for the whole page, initialised from a canvas the first time (shared so
/// SwiftShader compiles each kernel once).
async fn backend() -> Rc<WasmBackend> {
    if let Some(b) = BACKEND.with(|c| c.borrow().clone()) {
        return b;
    }
    add_element("canvas", CANVAS_ID);
    let b = match WasmBackend::init_from_canvas(CANVAS_ID).await {
        Ok(b) => b,
        Err(e) => panic!(
            "no WebGPU in this browser, so the browser tests cannot run (they fail rather \
             than skip): {e}"
        ),
    };
    console_log!("browser tests on {}", b.name());
    let b = Rc::new(b);
    BACKEND.with(|c| *c.borrow_mut() = Some(b.clone()));
    b
}

/// Runs one check of the conformance suite (the crate's async driver) and fails with its
/// report unless it passed.
async fn check(check: Check) {
    let suite = support::run_one(&*backend().await, check).await;
    console_log!("{}", suite.summary());
    suite.assert_ok();
}

conformance::check_tests!(async mod browser, check, wasm_bindgen_test);

#[wasm_bindgen_test]
async fn the_browser_has_a_webgpu_adapter() {
    let b = backend().await;
    let a = b.adapter().expect("an initialised backend has an adapter");
    console_log!(
        "adapter: {} | backend {} | type {} | driver {:?} | features {:?} | max buffer {} | \
         max storage binding {} | workgroup storage {} | invocations {}",
        a.name,
        a.backend,
        a.device_type,
        a.driver,
        a.features,
        a.max_buffer_size,
        a.max_storage_binding,
        a.max_workgroup_storage,
        a.max_invocations
    );
    let info = b
        .browser_adapter()
        .expect("the browser describes its adapter (GPUAdapterInfo)");
    console_log!("the browser's adapter info: {info:?}");
    assert!(!info.label().is_empty(), "{info:?}");
    assert_eq!(a.backend, "BrowserWebGpu", "{a:?}");
    assert!(b.is_usable());
    assert!(
        b.name().starts_with("wasm: webgpu (BrowserWebGpu"),
        "{}",
        b.name()
    );
}

/// `open` leaves a software adapter (SwiftShader here) for the CPU engine and says why;
/// `init_without_canvas` keeps it. On a browser with a hardware adapter `open` keeps that.
#[wasm_bindgen_test]
async fn open_prefers_the_cpu_engine_to_a_software_adapter() {
    let gpu = WasmBackend::init_without_canvas().await.expect("WebGPU");
    let software = gpu.browser_adapter().is_some_and(|i| i.is_fallback)
        || gpu.adapter().is_some_and(|a| a.is_software());
    let b = WasmBackend::open(None).await.expect("open");
    console_log!("open(None): {} ({:?})", b.name(), b.fallback_reason());
    if software {
        assert_eq!(b.engine(), Engine::FastCpu);
        let reason = b.fallback_reason().expect("a fallback says why");
        assert!(reason.contains("software"), "{reason}");
        let x = b.upload(&[3.0f32]).unwrap();
        b.unary(UnaryOp::Sqrt, x, x, 1).unwrap();
        let v: Vec<f32> = b.copy_dtoh_vec_async(x, 1).await.unwrap();
        assert_eq!(v, [3.0f32.sqrt()]);
    } else {
        assert_eq!(b.engine(), Engine::WebGpu, "{:?}", b.fallback_reason());
    }
}

/// Operands packed into one allocation closer than the 256-byte binding alignment, and
/// overlapping inputs: Chromium refuses overlapping writable bindings, Vulkan does not.
#[wasm_bindgen_test]
async fn packed_operands_match_the_cpu() {
    let b = backend().await;
    packed::packed_operands_match_the_cpu(&*b).await.unwrap();
}

#[wasm_bindgen_test]
fn uninitialized_backend_refuses_every_call() {
    conformance::check_uninitialized(&WasmBackend::new()).unwrap();
}

#[wasm_bindgen_test]
async fn blocking_calls_return_an_error_instead_of_hanging() {
    let b = backend().await;
    let p = b.upload(&[1.0f32, 4.0, 9.0]).unwrap();
    b.unary(UnaryOp::Sqrt, p, p, 3).unwrap();

    // Each of these would hang the page forever if it blocked on the GPU.
    let mut out = [0u8; 12];
    match b.copy_dtoh(&mut out, p) {
        Err(BackendError::Unsupported(m)) => assert!(m.contains("copy_dtoh_async"), "{m}"),
        other => panic!("copy_dtoh: want Unsupported naming copy_dtoh_async, got {other:?}"),
    }
    match b.copy_dtoh_vec::<f32>(p, 3) {
        Err(BackendError::Unsupported(m)) => assert!(m.contains("copy_dtoh_async"), "{m}"),
        other => panic!("copy_dtoh_vec: want Unsupported, got {other:?}"),
    }
    match b.synchronize() {
        Err(BackendError::Unsupported(m)) => assert!(m.contains("synchronize_async"), "{m}"),
        other => panic!("synchronize: want Unsupported naming synchronize_async, got {other:?}"),
    }
    let mut fresh = WasmBackend::new();
    match fresh.init() {
        Err(BackendError::Unsupported(m)) => assert!(m.contains("init_from_canvas"), "{m}"),
        other => panic!("init: want Unsupported naming init_from_canvas, got {other:?}"),
    }
    assert!(!fresh.is_initialized());

    // The refusals changed nothing: the async paths see the queued work.
    b.synchronize_async().await.unwrap();
    let v: Vec<f32> = b.copy_dtoh_vec_async(p, 3).await.unwrap();
    assert_eq!(v, [1.0, 2.0, 3.0]);
    b.free(p).unwrap();
}

#[wasm_bindgen_test]
async fn init_from_canvas_on_a_real_canvas() {
    let id = "test-canvas-real";
    add_element("canvas", id);
    let mut b = WasmBackend::init_from_canvas(id).await.unwrap();
    assert!(b.is_initialized());
    assert_eq!(b.canvas_id(), Some(id));
    assert!(
        b.name().starts_with("wasm: webgpu (BrowserWebGpu"),
        "{}",
        b.name()
    );
    // A second init, blocking or not, is a no-op on an initialised backend.
    b.init().unwrap();
    b.init_async().await.unwrap();

    let x = b.upload(&[-2.0f32, 0.5, 3.0]).unwrap();
    let y = b.alloc(12).unwrap();
    b.unary(UnaryOp::Abs, x, y, 3).unwrap();
    let v: Vec<f32> = b.copy_dtoh_vec_async(y, 3).await.unwrap();
    assert_eq!(v, [2.0, 0.5, 3.0]);
    let info = b.memory_info().unwrap();
    assert_eq!(info.live_allocations, 2);
    b.free(x).unwrap();
    b.free(y).unwrap();
}

#[wasm_bindgen_test]
async fn init_from_canvas_with_a_missing_id() {
    let e = WasmBackend::init_from_canvas("no-such-canvas")
        .await
        .unwrap_err();
    assert_eq!(
        e,
        WebGpuError::CanvasNotFound {
            id: "no-such-canvas".into()
        }
    );
    assert!(e.to_string().contains("no-such-canvas"), "{e}");
    assert!(
        matches!(BackendError::from(e), BackendError::InvalidArgument(_)),
        "a missing canvas is the caller's mistake"
    );
    let e = WasmBackend::init_from_canvas("").await.unwrap_err();
    assert_eq!(e, WebGpuError::CanvasNotFound { id: String::new() });
}

#[wasm_bindgen_test]
async fn init_from_canvas_on_an_element_that_is_not_a_canvas() {
    let id = "test-not-a-canvas";
    add_element("div", id);
    let e = WasmBackend::init_from_canvas(id).await.unwrap_err();
    assert_eq!(
        e,
        WebGpuError::NotACanvas {
            id: id.into(),
            tag: "div".into()
        }
    );
    assert!(e.to_string().contains("<div>"), "{e}");
    assert!(matches!(
        BackendError::from(e),
        BackendError::InvalidArgument(_)
    ));
}
