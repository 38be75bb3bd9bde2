//! SGEMM in a browser, three ways, in one page: the fast CPU engine (`WasmBackend::fast_cpu`,
//! the fallback without WebGPU), the browser's WebGPU (`WasmBackend::init_without_canvas`, SwiftShader in
//! headless Chromium here) and a plain i-k-j triple loop in the same module. Run by
//! `scripts/bench-web` (release build, with and without `simd128`), not by CI: timings
//! are no test. What it does assert is that every engine's product matches the loop's,
//! so a fast wrong answer fails.
//!
//! Each measurement prints one line `BENCH engine=<name> n=<n> best_ms=<t> gflops=<g>`;
//! the script collects them.

#![cfg(target_arch = "wasm32")]

use backend_api::{BackendTranspose, ComputeBackend, ComputeBackendExt};
use backend_wasm::{Engine, WasmBackend};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// The sizes of the comparison: square SGEMM 256-1024.
const SIZES: [usize; 3] = [256, 512, 1024];

/// Each engine is timed for at least this long per size (after one warm-up call).
const MIN_MS: f64 = 400.0;

fn now_ms() -> f64 {
    let global = js_sys::global();
    let perf = js_sys::Reflect::get(&global, &"performance".into()).expect("performance");
    let now: js_sys::Function = js_sys::Reflect::get(&perf, &"now".into())
        .expect("performance.now")
        .unchecked_into();
    now.call0(&perf).expect("now()").as_f64().expect("a number")
}

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// C = A B, column-major n x n, as a user would write it without a library: i-k-j over
/// columns (j, k, i in column-major terms), the inner loop contiguous.
fn naive_gemm(n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    c.fill(0.0);
    for j in 0..n {
        for k in 0..n {
            let bkj = b[j * n + k];
            let a_col = &a[k * n..(k + 1) * n];
            let c_col = &mut c[j * n..(j + 1) * n];
            for (ci, ai) in c_col.iter_mut().zip(a_col) {
                *ci += ai * bkj;
            }
        }
    }
}

fn report(engine: &str, n: usize, best_ms: f64) {
    let gflops = 2.0 * (n as f64).powi(3) / (best_ms * 1e6);
    console_log!("BENCH engine={engine} n={n} best_ms={best_ms:.3} gflops={gflops:.3}");
}

/// The worst |x - y| relative to the largest |y|, or the first non-finite value.
fn check_close(engine: &str, n: usize, got: &[f32], want: &[f32]) {
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| {
            if g.is_finite() {
                (g - w).abs() / scale
            } else {
                f32::INFINITY
            }
        })
        .fold(0.0f32, f32::max);
    // f32 sums of n products of values in [-1, 1): a few ulps per term of error at most.
    let bound = 4.0 * f32::EPSILON * n as f32;
    assert!(
        worst <= bound,
        "{engine} n={n}: worst relative error {worst:e} > {bound:e}"
    );
}

/// Times `gemm` on `b` (its own uploads; `sync` waits for the device), checks C once.
async fn bench_backend(
    label: &str,
    b: &WasmBackend,
    n: usize,
    a: &[f32],
    bm: &[f32],
    want: &[f32],
) {
    let pa = b.upload(a).unwrap();
    let pb = b.upload(bm).unwrap();
    let pc = b.upload(&vec![0.0f32; n * n]).unwrap();
    let gemm = || {
        b.gemm(
            BackendTranspose::NoTrans,
            BackendTranspose::NoTrans,
            n,
            n,
            n,
            1.0,
            pa,
            n,
            pb,
            n,
            0.0,
            pc,
            n,
        )
        .unwrap()
    };
    // Warm-up (pipeline compilation on WebGPU), then the check.
    gemm();
    let got: Vec<f32> = b.copy_dtoh_vec_async(pc, n * n).await.unwrap();
    check_close(label, n, &got, want);
    let mut best = f64::INFINITY;
    let start = now_ms();
    let mut reps = 0;
    while reps < 3 || now_ms() - start < MIN_MS {
        let t = now_ms();
        gemm();
        b.synchronize_async().await.unwrap();
        best = best.min(now_ms() - t);
        reps += 1;
    }
    report(label, n, best);
    for p in [pa, pb, pc] {
        b.free(p).unwrap();
    }
}

#[wasm_bindgen_test]
async fn sgemm_fast_cpu_webgpu_and_a_plain_loop() {
    let simd = cfg!(target_feature = "simd128");
    let build = if simd { "simd128" } else { "scalar" };
    let cpu = WasmBackend::fast_cpu().unwrap();
    // WebGPU whatever the adapter (`open` would leave a software one for the CPU).
    let gpu = match WasmBackend::init_without_canvas().await {
        Ok(b) => b,
        Err(e) => {
            console_log!("no WebGPU here ({e}): timing the CPU engine and the loop only");
            WasmBackend::fast_cpu().unwrap()
        }
    };
    console_log!(
        "BENCH-INFO build={build} cpu={:?} gpu={:?} (engine {:?})",
        cpu.name(),
        gpu.name(),
        gpu.engine()
    );
    for n in SIZES {
        let a = values(n * n, 1);
        let bm = values(n * n, 2);
        let mut want = vec![0.0f32; n * n];
        let mut best = f64::INFINITY;
        let start = now_ms();
        let mut reps = 0;
        while reps < 2 || now_ms() - start < MIN_MS {
            let t = now_ms();
            naive_gemm(n, &a, &bm, &mut want);
            best = best.min(now_ms() - t);
            reps += 1;
        }
        report(&format!("loop-{build}"), n, best);

        bench_backend(&format!("fast-cpu-{build}"), &cpu, n, &a, &bm, &want).await;
        // WebGPU's kernels run in the GPU process whatever the module was built with:
        // timed once, in the simd128 build.
        if simd && gpu.engine() == Engine::WebGpu {
            bench_backend("webgpu", &gpu, n, &a, &bm, &want).await;
        }
    }
}
