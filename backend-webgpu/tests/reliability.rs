//! Reliability of the WebGPU backend (issue 7; figures in `docs/RELIABILITY.md`): random
//! call sequences against a model of device memory, threads sharing one backend, a soak,
//! allocation until refusal, device loss and kernels that fail to build. Every test runs
//! under a watchdog, so a hang or deadlock fails instead of stalling the run.
//!
//! Without an adapter the tests say so loudly and pass, unless `BACKEND_REQUIRE_ADAPTER=1`
//! (set by CI), which turns a missing adapter into a failure. Sizes are small: lavapipe is
//! a CPU. Environment: `RELIABILITY_STEPS` (calls per seed), `RELIABILITY_SEEDS`,
//! `RELIABILITY_THREADS`, `RELIABILITY_SOAK_CYCLES` (default 10000 here; the full 10^5 is
//! recorded in RELIABILITY.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_api::{
    BackendError, BackendTranspose, BinaryOp, ComputeBackend, ComputeBackendExt, DType, ReduceOp,
    UnaryOp,
};
use backend_webgpu::{WebGpuBackend, WebGpuOptions};
use conformance::state_machine::{
    self as sm, Options, assert_threads_match, env_u64, in_own_process, run_seed, soak,
    state_machine_seeds, threaded, watchdog,
};

/// Device memory these tests may hold (lavapipe's device memory is host memory).
const LIMIT: u64 = 512 << 20;

/// A fresh backend on the adapter the environment selects, with a memory limit; `None`
/// (after saying so) when there is no adapter and none is required.
fn backend() -> Option<WebGpuBackend> {
    backend_with(LIMIT)
}

fn backend_with(limit: u64) -> Option<WebGpuBackend> {
    let mut b = WebGpuBackend::with_options(WebGpuOptions {
        memory_limit: Some(limit),
        ..WebGpuOptions::from_env().expect("the environment")
    });
    match b.init() {
        Ok(()) => Some(b),
        Err(e) => {
            conformance::skip_without_adapter(&e);
            None
        }
    }
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(60 * m)
}

#[test]
fn state_machine() {
    let Some(b) = backend() else { return };
    let opts = Options {
        big_allocs: true,
        ..Options::steps(env_u64("RELIABILITY_STEPS", 3000))
    };
    let seeds = env_u64("RELIABILITY_SEEDS", 4);
    watchdog("webgpu state machine", minutes(30), move || {
        // One backend for every seed: each run ends with everything freed and
        // memory_info at zero, which the next run checks again from scratch.
        let name = format!("{}: state machine", b.name());
        let total = state_machine_seeds(&name, seeds, &opts, |seed| run_seed(&b, seed, &opts));
        assert!(total.values_approx > 0 && total.bytes_exact > 0, "{total}");
        assert!(b.is_usable());
    });
}

/// Threads sharing one backend, each running its own state machine; each thread's
/// outcomes and checked values must equal those of the same seed run alone.
#[test]
fn threads_give_the_single_threaded_results() {
    let Some(alone) = backend() else { return };
    let Some(shared) = backend() else { return };
    let threads = env_u64("RELIABILITY_THREADS", 4);
    let opts = threaded(&Options::steps(
        env_u64("RELIABILITY_STEPS", 3000).min(1000),
    ));
    let seeds: Vec<u64> = (100..100 + threads).collect();
    watchdog("webgpu threads", minutes(10), move || {
        let single: Vec<sm::Stats> = seeds
            .iter()
            .map(|&s| run_seed(&alone, s, &opts).unwrap_or_else(|f| panic!("{f}")))
            .collect();
        let start = Instant::now();
        let total = assert_threads_match(&single, &shared, &seeds, &opts);
        eprintln!(
            "{}: {threads} threads x {} steps in {:.1} s, results identical to \
             single-threaded runs: {total}",
            shared.name(),
            opts.steps,
            start.elapsed().as_secs_f64()
        );
    });
}

/// Threads reading one shared input at once while computing into their own buffers and
/// reading back: no lost or mixed-up results.
#[test]
fn threads_share_an_input() {
    let Some(b) = backend() else { return };
    watchdog("webgpu shared input", minutes(5), move || {
        let b: Arc<dyn ComputeBackend> = Arc::new(b);
        let (threads, rounds, n) = (4, 40, 3000);
        let x: Vec<f32> = (0..n).map(|i| (i % 17) as f32 - 8.0).collect();
        let px = b.upload(&x).unwrap();
        let ops = [UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Square, UnaryOp::Relu];
        std::thread::scope(|s| {
            for t in 0..threads {
                let (b, x) = (b.clone(), &x);
                s.spawn(move || {
                    let op = ops[t % ops.len()];
                    for round in 0..rounds {
                        let py = b.alloc(4 * n).unwrap();
                        b.unary(op, px, py, n).unwrap();
                        b.binary(BinaryOp::Add, py, px, py, n).unwrap();
                        let got = b.copy_dtoh_vec::<f32>(py, n).unwrap();
                        b.free(py).unwrap();
                        let want: Vec<f32> = x
                            .iter()
                            .map(|&v| backend_cpu::reference::unary(op, v) + v)
                            .collect();
                        assert_eq!(got, want, "thread {t} round {round}");
                    }
                });
            }
        });
        b.free(px).unwrap();
        assert_eq!(b.memory_info().unwrap().live_allocations, 0);
    });
}

/// In a process of its own: VmRSS is the process's, and other tests would move it.
#[test]
fn soak_memory_stays_flat() {
    in_own_process("soak_memory_stays_flat", soak_body);
}

/// Frames of a frame arena on the device: device memory flat, host memory flat.
#[test]
fn frame_soak_memory_stays_flat() {
    in_own_process("frame_soak_memory_stays_flat", || {
        let Some(b) = backend() else { return };
        let frames = env_u64("RELIABILITY_FRAMES", 10_000);
        watchdog("webgpu frame soak", minutes(10), move || {
            let r =
                conformance::test_tools::frame_soak(&b, frames).unwrap_or_else(|e| panic!("{e}"));
            eprintln!("{}: frame soak: {r}", b.name());
            assert!(
                r.rss_growth_kib() < 16 * 1024,
                "VmRSS grew by {} KiB after warm-up",
                r.rss_growth_kib()
            );
        });
    });
}

fn soak_body() {
    let Some(b) = backend() else { return };
    let cycles = env_u64("RELIABILITY_SOAK_CYCLES", 10_000);
    watchdog("webgpu soak", minutes(30), move || {
        let r = soak(&b, cycles, 7).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{}: soak: {r}", b.name());
        let (base, end) = (r.info_baseline.unwrap(), r.info_end.unwrap());
        assert_eq!(
            (end.allocated_bytes, end.live_allocations),
            (0, 0),
            "{end:?}"
        );
        // The pool keeps at most one empty chunk; large allocations return their buffers.
        assert!(
            end.reserved_bytes <= base.reserved_bytes.max(16 << 20),
            "reserved grew: {base:?} -> {end:?}"
        );
        // Driver caches settle during warm-up; a leak of 1 KiB per cycle would show as
        // 10 MB over 10^4 cycles.
        assert!(
            r.rss_growth_kib() < 16 * 1024,
            "VmRSS grew by {} KiB after warm-up",
            r.rss_growth_kib()
        );
        assert!(b.is_usable());
    });
}

#[test]
fn allocating_until_refused_leaves_the_backend_usable() {
    let Some(b) = backend_with(64 << 20) else {
        return;
    };
    watchdog("webgpu allocate until refused", minutes(5), move || {
        for (size, max) in [(4usize << 20, 16), (64 << 10, 1024)] {
            let mut held = Vec::new();
            let refused = loop {
                match b.alloc(size) {
                    Ok(p) => held.push(p),
                    Err(e) => break e,
                }
                assert!(held.len() <= max, "the limit was never enforced");
            };
            assert!(
                refused.is_out_of_memory(),
                "{size}-byte allocations: {refused}"
            );
            assert!(held.len() >= max / 2, "{} of {size} bytes", held.len());
            assert!(b.is_usable());
            // Still works while full: copies, ops and frees; absurd sizes refused.
            sm::assert_works_when_full(&b, &held, size);
            let count = held.len();
            for p in held.drain(..) {
                b.free(p).unwrap();
            }
            b.synchronize().unwrap();
            let info = b.memory_info().unwrap();
            assert_eq!((info.allocated_bytes, info.live_allocations), (0, 0));
            // The memory is back.
            let again: Vec<u64> = (0..count).map(|_| b.alloc(size).unwrap()).collect();
            for p in again {
                b.free(p).unwrap();
            }
        }
        // Without a limit, sizes past max_buffer_size are refused by the device itself.
        let Some(unlimited) = backend_with(u64::MAX) else {
            return;
        };
        for bytes in [usize::MAX, 1 << 40, 1 << 34] {
            let e = unlimited.alloc(bytes).unwrap_err();
            assert!(e.is_out_of_memory(), "{bytes}: {e}");
        }
        unlimited.free(unlimited.alloc(8).unwrap()).unwrap();
    });
}

/// Runs `call`; a panic is a failure naming the call.
fn no_panic<R>(what: &str, call: impl FnOnce() -> R) -> R {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
        .unwrap_or_else(|_| panic!("{what} panicked after device loss"))
}

fn device_error<T: std::fmt::Debug>(what: &str, r: Result<T, BackendError>) {
    match r {
        Err(BackendError::DeviceError(m)) => {
            assert!(m.contains("lost"), "{what}: {m}");
        }
        other => panic!("{what} after device loss: {other:?}, DeviceError required"),
    }
}

/// After the device is lost, with work queued and memory live, every call fails with
/// `DeviceError` — no panic, no hang — and the backend says it is no longer usable.
#[test]
fn device_loss_is_an_error_never_a_panic_or_a_hang() {
    let Some(b) = backend() else { return };
    watchdog("webgpu device loss", minutes(2), move || {
        let n = 4096;
        let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let p = b.upload(&x).unwrap();
        let q = b.alloc(4 * n).unwrap();
        // Work queued but not waited for.
        for _ in 0..8 {
            b.unary(UnaryOp::Exp, p, q, n).unwrap();
        }
        assert!(b.is_usable());
        b.simulate_device_loss();
        assert!(
            !b.is_usable(),
            "is_usable() is still true after device loss"
        );
        let mut out = vec![0u8; 16];
        device_error("synchronize", no_panic("synchronize", || b.synchronize()));
        device_error(
            "copy_dtoh",
            no_panic("copy_dtoh", || b.copy_dtoh(&mut out, p)),
        );
        device_error("alloc", no_panic("alloc", || b.alloc(64)));
        device_error(
            "copy_htod",
            no_panic("copy_htod", || b.copy_htod(p, &[0; 8])),
        );
        device_error("copy_dtod", no_panic("copy_dtod", || b.copy_dtod(q, p, 64)));
        device_error(
            "unary",
            no_panic("unary", || b.unary(UnaryOp::Neg, p, q, 16)),
        );
        device_error(
            "binary",
            no_panic("binary", || b.binary(BinaryOp::Add, p, p, q, 16)),
        );
        device_error(
            "reduce",
            no_panic("reduce", || b.reduce(ReduceOp::Sum, p, q, &[4, 4], 1)),
        );
        use BackendTranspose::NoTrans as N;
        device_error(
            "gemm",
            no_panic("gemm", || b.gemm(N, N, 4, 4, 4, 1.0, p, 4, p, 4, 0.0, q, 4)),
        );
        device_error(
            "batched_gemm",
            no_panic("batched_gemm", || {
                b.batched_gemm(N, N, 2, 2, 2, 1.0, p, 2, 4, p, 2, 4, 0.0, q, 2, 4, 2)
            }),
        );
        device_error(
            "conv2d_forward",
            no_panic("conv2d_forward", || {
                b.conv2d_forward(
                    p,
                    &[1, 1, 4, 4],
                    p,
                    &[1, 1, 3, 3],
                    q,
                    &[1, 1, 2, 2],
                    &[1, 1],
                    &[0, 0],
                )
            }),
        );
        device_error(
            "attention",
            no_panic("attention", || {
                b.attention(p, p, p, q, 1, 1, 4, 4, 4, 0.5, true)
            }),
        );
        device_error(
            "cast",
            no_panic("cast", || b.cast(p, DType::F32, q, DType::F16, 16)),
        );
        device_error("memory_info", no_panic("memory_info", || b.memory_info()));
        device_error(
            "copy_dtoh_async",
            no_panic("copy_dtoh_async", || {
                pollster::block_on(b.copy_dtoh_async(&mut out, p))
            }),
        );
        device_error(
            "synchronize_async",
            no_panic("synchronize_async", || {
                pollster::block_on(b.synchronize_async())
            }),
        );
        device_error(
            "try_build_kernel",
            no_panic("try_build_kernel", || {
                b.try_build_kernel("@compute @workgroup_size(1) fn main() {}")
            }),
        );
        device_error("free", no_panic("free", || b.free(p)));
        assert!(!b.is_usable());
        assert!(b.is_initialized());
        no_panic("drop", move || drop(b));
        // A new backend works.
        let fresh = backend().unwrap();
        let p = fresh.upload(&[1.0f32, 2.0]).unwrap();
        assert_eq!(fresh.copy_dtoh_vec::<f32>(p, 2).unwrap(), [1.0, 2.0]);
    });
}

/// A kernel that fails to build (syntax, types, a missing entry point, limits the device
/// does not have) is a `DeviceError`, and the backend stays usable.
#[test]
fn kernels_that_fail_to_build_are_errors() {
    let Some(b) = backend() else { return };
    watchdog("webgpu kernel build failures", minutes(2), move || {
        for (why, wgsl) in [
            ("syntax", "@compute @workgroup_size(1) fn main( {"),
            (
                "undefined name",
                "@compute @workgroup_size(1) fn main() { let x: f32 = undefined_thing; }",
            ),
            (
                "type mismatch",
                "@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }",
            ),
            (
                "no entry point main",
                "@compute @workgroup_size(1) fn other() {}",
            ),
            (
                "workgroup larger than the device allows",
                "@compute @workgroup_size(1024, 1024) fn main() {}",
            ),
            // Not here: workgroup memory beyond max_compute_workgroup_storage_size. wgpu 30
            // does not check that limit when it builds a pipeline, so such a kernel builds
            // (see docs/RELIABILITY.md).
            ("empty", ""),
        ] {
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.try_build_kernel(wgsl)))
                    .unwrap_or_else(|_| panic!("{why}: try_build_kernel panicked"));
            match r {
                Err(BackendError::DeviceError(m)) => {
                    assert!(m.contains("kernel failed to build"), "{why}: {m}")
                }
                other => panic!("{why}: {other:?}, DeviceError required"),
            }
            assert!(b.is_usable(), "{why}: the backend says it is unusable");
        }
        b.try_build_kernel(
            "@group(0) @binding(0) var<storage, read_write> x: array<f32>;
             @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) i: vec3u) {
                 x[i.x] = 2.0 * x[i.x];
             }",
        )
        .unwrap();
        // The backend's own kernels still run, and no error leaks into later calls.
        let p = b.upload(&[1.0f32, 4.0, 9.0]).unwrap();
        b.unary(UnaryOp::Sqrt, p, p, 3).unwrap();
        assert_eq!(b.copy_dtoh_vec::<f32>(p, 3).unwrap(), [1.0, 2.0, 3.0]);
        b.synchronize().unwrap();
        b.free(p).unwrap();
    });
}
