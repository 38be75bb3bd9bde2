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
use backend_wasm::{Engine, WasmBackend, WebGpuError, WebGpuOptions};
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

/// The fast CPU engine (the browser's fallback) behind the same wrapper, with the
/// browser's configuration: every check, so a call the wrapper forwards to the wrong
/// engine, or not at all, fails here as well as in Chromium without WebGPU.
fn check_cpu(check: Check) {
    static CPU: OnceLock<WasmBackend> = OnceLock::new();
    let b = CPU.get_or_init(|| WasmBackend::fast_cpu().expect("the CPU engine always opens"));
    let config = support::config(b, support::NATIVE_CASES);
    conformance::assert_check(b, b.name(), check, &config);
}

conformance::check_tests!(mod wasm_native_fast_cpu, check_cpu);

#[test]
fn fast_cpu_engine_says_what_it_is_and_serves_blocking_calls() {
    let b = WasmBackend::fast_cpu().unwrap();
    assert_eq!(b.engine(), Engine::FastCpu);
    assert_eq!(b.name(), "wasm: fast-cpu (native)");
    assert!(b.adapter().is_none() && b.webgpu().is_none() && b.browser_adapter().is_none());
    assert_eq!(b.fallback_reason(), None);
    assert!(b.is_usable());
    let x = b.upload(&[1.0f32, 4.0, 9.0]).unwrap();
    b.unary(UnaryOp::Sqrt, x, x, 3).unwrap();
    b.synchronize().unwrap();
    assert_eq!(b.copy_dtoh_vec::<f32>(x, 3).unwrap(), [1.0, 2.0, 3.0]);
    let v: Vec<f32> = pollster::block_on(b.copy_dtoh_vec_async(x, 3)).unwrap();
    assert_eq!(v, [1.0, 2.0, 3.0]);
}

/// No adapter matches: `init_or_fall_back` opens the CPU engine and says why, where
/// `init_async` fails.
#[test]
fn without_an_adapter_open_falls_back_to_the_cpu() {
    let options = || WebGpuOptions::adapter("no adapter is called this");
    let mut strict = WasmBackend::with_options(options());
    let e = pollster::block_on(strict.init_async()).unwrap_err();
    assert!(matches!(e, WebGpuError::Init(_)), "{e:?}");
    assert!(!strict.is_initialized());

    let b =
        pollster::block_on(WasmBackend::with_options(options()).init_or_fall_back(None)).unwrap();
    assert_eq!(b.engine(), Engine::FastCpu);
    let reason = b.fallback_reason().expect("a fallback says why");
    assert!(reason.contains("no adapter is called this"), "{reason}");
    let x = b.upload(&[2.0f32]).unwrap();
    b.binary(backend_api::BinaryOp::Mul, x, x, x, 1).unwrap();
    assert_eq!(b.copy_dtoh_vec::<f32>(x, 1).unwrap(), [4.0]);

    // A page's mistake is not a reason to fall back.
    let e = pollster::block_on(WasmBackend::open(Some("gpu-canvas"))).unwrap_err();
    assert!(matches!(e, WebGpuError::NoDocument(_)), "{e:?}");
}

/// With no adapter named, `open` keeps a hardware adapter and leaves a software one
/// (lavapipe in CI) for the CPU engine, saying why; `init_async` keeps whatever it found.
#[test]
fn open_prefers_the_cpu_engine_to_a_software_adapter() {
    let opened = pollster::block_on(
        WasmBackend::with_options(WebGpuOptions::default()).init_or_fall_back(None),
    )
    .unwrap();
    let mut gpu = WasmBackend::with_options(WebGpuOptions::default());
    let reason = opened.fallback_reason().unwrap_or_default().to_string();
    match pollster::block_on(gpu.init_async()) {
        Err(e) => {
            eprintln!("no adapter here ({e}): open must have fallen back for that");
            assert_eq!(opened.engine(), Engine::FastCpu);
            assert!(!reason.contains("software"), "{reason}");
        }
        Ok(()) => {
            let adapter = gpu.adapter().expect("initialised");
            eprintln!("adapter {}: open gave {}", adapter.label(), opened.name());
            if adapter.is_software() {
                assert_eq!(opened.engine(), Engine::FastCpu);
                assert!(reason.contains("software one"), "{reason}");
                assert!(reason.contains(&adapter.label()), "{reason}");
            } else {
                assert_eq!(opened.engine(), Engine::WebGpu, "{reason}");
            }
        }
    }
    // A named adapter is kept, software or not.
    if let Some(named) = gpu
        .adapter()
        .filter(|a| a.is_software())
        .map(|a| a.name.clone())
    {
        let kept = pollster::block_on(
            WasmBackend::with_options(WebGpuOptions::adapter(&named)).init_or_fall_back(None),
        )
        .unwrap();
        assert_eq!(
            kept.engine(),
            Engine::WebGpu,
            "{:?}",
            kept.fallback_reason()
        );
    }
}

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
    assert!(b.webgpu().expect("the WebGPU engine").is_initialized());
    assert_eq!(b.engine(), Engine::WebGpu);
    assert_eq!(b.fallback_reason(), None);
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
