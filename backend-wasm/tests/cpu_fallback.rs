//! `WasmBackend` in a browser without WebGPU: headless Chromium started without
//! `--enable-unsafe-webgpu` (`scripts/test-web`), where `navigator.gpu` exists but gives
//! no adapter. `WasmBackend::open` must fall back to the fast CPU engine compiled into the
//! module (simd128, one thread), which then runs the whole conformance suite here, the
//! misuse and ordering checks included. A second test hides `navigator.gpu` altogether.
//!
//! Run with WebGPU on, these tests fail (they want the fallback): only the script's
//! WebGPU-less browser runs them.

#![cfg(target_arch = "wasm32")]

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use backend_api::{BackendError, BinaryOp, ComputeBackend, ComputeBackendExt};
use backend_wasm::{Engine, WasmBackend};
use conformance::Check;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    static BACKEND: RefCell<Option<Rc<WasmBackend>>> = const { RefCell::new(None) };
}

/// One backend for the page, from `open(None)`, which must have fallen back.
async fn backend() -> Rc<WasmBackend> {
    if let Some(b) = BACKEND.with(|c| c.borrow().clone()) {
        return b;
    }
    let b = WasmBackend::open(None)
        .await
        .expect("open falls back rather than failing");
    assert_eq!(
        b.engine(),
        Engine::FastCpu,
        "this browser gave WebGPU ({}); these tests need one without (scripts/test-web \
         starts Chromium without --enable-unsafe-webgpu for them)",
        b.name()
    );
    console_log!(
        "CPU fallback tests on {} (fallback because: {:?})",
        b.name(),
        b.fallback_reason()
    );
    let b = Rc::new(b);
    BACKEND.with(|c| *c.borrow_mut() = Some(b.clone()));
    b
}

async fn check(check: Check) {
    let suite = support::run_one(&*backend().await, check).await;
    console_log!("{}", suite.summary());
    suite.assert_ok();
}

conformance::check_tests!(async mod cpu_fallback, check, wasm_bindgen_test);

#[wasm_bindgen_test]
async fn the_fallback_says_why_and_runs_simd128() {
    let b = backend().await;
    assert_eq!(b.name(), "wasm: fast-cpu (wasm simd128, one thread)");
    let reason = b.fallback_reason().expect("a fallback says why");
    assert!(reason.contains("WebGPU initialisation failed"), "{reason}");
    assert!(b.adapter().is_none() && b.webgpu().is_none());
    // The CPU engine never waits, so the blocking calls work in a page.
    let x = b.upload(&[3.0f32, -1.0]).unwrap();
    b.binary(BinaryOp::Mul, x, x, x, 2).unwrap();
    b.synchronize().unwrap();
    assert_eq!(b.copy_dtoh_vec::<f32>(x, 2).unwrap(), [9.0, 1.0]);
    b.free(x).unwrap();
    assert!(matches!(b.free(x), Err(BackendError::InvalidArgument(_))));
}

/// A browser with no `navigator.gpu` at all (older browsers, WebGPU switched off by
/// policy): hidden here by redefining the getter, then restored.
#[wasm_bindgen_test]
async fn without_navigator_gpu_open_falls_back_too() {
    let hide = "globalThis.__savedGpu = Object.getOwnPropertyDescriptor(Navigator.prototype, 'gpu'); \
                Object.defineProperty(Navigator.prototype, 'gpu', { get() { return undefined; }, configurable: true }); \
                typeof navigator.gpu";
    let restore = "Object.defineProperty(Navigator.prototype, 'gpu', globalThis.__savedGpu); \
                   typeof navigator.gpu";
    let hidden = js_sys::eval(hide).expect("redefine navigator.gpu");
    assert_eq!(hidden.as_string().as_deref(), Some("undefined"));
    let opened = WasmBackend::open(None).await;
    let shown = js_sys::eval(restore).expect("restore navigator.gpu");
    assert_eq!(shown.as_string().as_deref(), Some("object"));

    let b = opened.expect("open falls back rather than failing");
    assert_eq!(b.engine(), Engine::FastCpu);
    let reason = b.fallback_reason().expect("a fallback says why");
    assert!(reason.contains("navigator.gpu is undefined"), "{reason}");
    let x = b.upload(&[0.25f32]).unwrap();
    b.unary(backend_api::UnaryOp::Sqrt, x, x, 1).unwrap();
    assert_eq!(b.copy_dtoh_vec_async::<f32>(x, 1).await.unwrap(), [0.5]);
}
