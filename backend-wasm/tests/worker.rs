//! `WasmBackend` in a dedicated worker (no document, no canvas), in headless Chromium:
//! the async init without a canvas, conformance checks through the `conformance`
//! crate's async driver, and blocking calls that error instead of hanging.
//!
//! A worker without a WebGPU adapter fails these tests: there is no skip here.

#![cfg(target_arch = "wasm32")]

mod support;

use backend_api::{BackendError, ComputeBackend, ComputeBackendExt};
use backend_wasm::{WasmBackend, WebGpuError};
use conformance::Check;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

async fn backend() -> WasmBackend {
    match WasmBackend::init_without_canvas().await {
        Ok(b) => b,
        Err(e) => panic!(
            "no WebGPU in this worker, so the worker tests cannot run (they fail rather \
             than skip): {e}"
        ),
    }
}

#[wasm_bindgen_test]
async fn conformance_checks_in_a_worker() {
    let b = backend().await;
    console_log!("worker tests on {} ({:?})", b.name(), b.browser_adapter());
    assert_eq!(
        b.adapter().map(|a| a.backend.as_str()),
        Some("BrowserWebGpu")
    );
    // A few checks that cover every path (kernels, copies, misuse, program order); the
    // page test runs all of them.
    let checks = [Check::Gemm, Check::Binary, Check::Misuse, Check::Ordering];
    let config = support::config(&b, support::BROWSER_CASES / 2).only(&checks);
    let report = conformance::run_all_async(&b, &config, &mut |_| {}).await;
    console_log!("{}", report.summary());
    report.assert_ok();
    assert_eq!(report.checks.len(), checks.len());
}

#[wasm_bindgen_test]
async fn init_from_canvas_in_a_worker_says_what_to_use() {
    let e = WasmBackend::init_from_canvas("gpu-canvas")
        .await
        .unwrap_err();
    match &e {
        WebGpuError::NoDocument(m) => assert!(m.contains("init_without_canvas"), "{m}"),
        other => panic!("want NoDocument, got {other:?}"),
    }
    assert!(matches!(
        BackendError::from(e),
        BackendError::Unsupported(_)
    ));
}

#[wasm_bindgen_test]
async fn blocking_readback_errors_in_a_worker() {
    let b = backend().await;
    let p = b.upload(&[5.0f32, 6.0]).unwrap();
    match b.copy_dtoh(&mut [0u8; 8], p) {
        Err(BackendError::Unsupported(m)) => assert!(m.contains("copy_dtoh_async"), "{m}"),
        other => panic!("copy_dtoh: want Unsupported, got {other:?}"),
    }
    let v: Vec<f32> = b.copy_dtoh_vec_async(p, 2).await.unwrap();
    assert_eq!(v, [5.0, 6.0]);
    b.free(p).unwrap();
}
