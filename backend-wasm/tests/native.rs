//! `WasmBackend` natively (lavapipe in CI): the wrapper must delegate every call, the
//! blocking ones included (through `pollster`), so the conformance checks run on it here
//! with the same configuration as in the browser, only with fewer cases (the whole suite on
//! this adapter is `backend-webgpu`'s test). Without an adapter the tests say so loudly
//! and pass, unless `BACKEND_REQUIRE_ADAPTER=1` (set by CI), which makes that a failure.

#![cfg(not(target_arch = "wasm32"))]

#[path = "support/packed.rs"]
mod packed;
mod support;

use std::sync::OnceLock;

use backend_api::{BackendError, ComputeBackend, ComputeBackendExt, UnaryOp};
use backend_wasm::{WasmBackend, WebGpuError};
use conformance::Check;

/// One initialised backend shared by the tests, or `None` (after a loud message) when
/// there is no adapter and none is required.
fn backend() -> Option<&'static WasmBackend> {
    static BACKEND: OnceLock<Option<WasmBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut b = WasmBackend::new();
            match b.init() {
                Ok(()) => {
                    eprintln!("backend-wasm native tests on {}", b.name());
                    Some(b)
                }
                Err(e) => {
                    conformance::skip_without_adapter(&e);
                    None
                }
            }
        })
        .as_ref()
}

fn check(check: Check) {
    if let Some(b) = backend() {
        let config = support::config(b, support::NATIVE_CASES);
        conformance::assert_check(b, b.name(), check, &config);
    }
}

conformance::check_tests!(mod wasm_native, check);

#[test]
fn uninitialized_backend_refuses_every_call() {
    conformance::check_uninitialized(&WasmBackend::new()).unwrap();
}

#[test]
fn init_from_canvas_needs_a_browser() {
    let e = pollster::block_on(WasmBackend::init_from_canvas("gpu-canvas")).unwrap_err();
    match &e {
        WebGpuError::NoDocument(m) => {
            assert!(
                m.contains("gpu-canvas") && m.contains("not running in a browser"),
                "{m}"
            )
        }
        other => panic!("want NoDocument, got {other:?}"),
    }
    assert!(matches!(
        BackendError::from(e),
        BackendError::Unsupported(_)
    ));
}

#[test]
fn async_init_then_blocking_calls_work_natively() {
    if backend().is_none() {
        return;
    }
    let mut b = pollster::block_on(WasmBackend::init_without_canvas()).unwrap();
    assert!(b.is_initialized());
    assert!(b.canvas_id().is_none());
    assert!(b.name().starts_with("wasm: webgpu ("), "{}", b.name());
    let adapter = b.adapter().expect("initialised").clone();
    // Initialising again, either way, is a no-op.
    b.init().unwrap();
    pollster::block_on(b.init_async()).unwrap();
    assert_eq!(b.adapter(), Some(&adapter));

    let x = b.upload(&[1.0f32, 4.0, 9.0]).unwrap();
    b.unary(UnaryOp::Sqrt, x, x, 3).unwrap();
    b.synchronize().unwrap();
    assert_eq!(b.copy_dtoh_vec::<f32>(x, 3).unwrap(), [1.0, 2.0, 3.0]);
    b.unary(UnaryOp::Neg, x, x, 3).unwrap();
    pollster::block_on(b.synchronize_async()).unwrap();
    let v: Vec<f32> = pollster::block_on(b.copy_dtoh_vec_async(x, 3)).unwrap();
    assert_eq!(v, [-1.0, -2.0, -3.0]);
    let info = b.memory_info().unwrap();
    assert_eq!(info.live_allocations, 1);
    assert!(info.allocated_bytes >= 12);
    b.free(x).unwrap();
    assert_eq!(b.memory_info().unwrap().live_allocations, 0);
    assert!(b.is_usable());
    assert!(b.webgpu().is_initialized());
}

#[test]
fn packed_operands_match_the_cpu() {
    let Some(b) = backend() else {
        return;
    };
    pollster::block_on(packed::packed_operands_match_the_cpu(b)).unwrap();
}

#[test]
fn bad_arguments_are_reported_by_the_wrapper_too() {
    let Some(b) = backend() else {
        return;
    };
    let p = b.alloc(16).unwrap();
    let e = b.copy_dtoh(&mut [0u8; 32], p).unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    let e = b.unary(UnaryOp::Exp, p, p + 4, 4).unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    b.free(p).unwrap();
    assert!(b.free(p).unwrap_err().is_invalid_argument());
}
