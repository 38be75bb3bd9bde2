//! A decode-sized gemm whose weights live in host memory: imported in place
//! (`with_host_memory`, `VK_EXT_external_memory_host`: the GPU reads them over the bus)
//! against copying them to the device first, and against weights already resident.
//!
//! ```sh
//! cargo run --release -p backend-webgpu --features host-import --example import_gemm -- [k] [n] [reps]
//! ```
//!
//! `C (m x n) = X (m x k) · W (k x n)` for m = 1 and 8, column-major; W is `k x n` f32.

use std::time::Instant;

use backend_api::{BackendResult, BackendTranspose, ComputeBackend, ComputeBackendExt};
use backend_webgpu::WebGpuBackend;

fn gemm(
    b: &WebGpuBackend,
    m: usize,
    n: usize,
    k: usize,
    x: u64,
    w: u64,
    c: u64,
) -> BackendResult<()> {
    b.gemm(
        BackendTranspose::NoTrans,
        BackendTranspose::NoTrans,
        m,
        n,
        k,
        1.0,
        x,
        m,
        w,
        k,
        0.0,
        c,
        m,
    )
}

/// Milliseconds per repetition of `f`, after one warm-up, with a synchronize at the end.
fn time(
    b: &WebGpuBackend,
    reps: usize,
    mut f: impl FnMut() -> BackendResult<()>,
) -> BackendResult<f64> {
    f()?;
    b.synchronize()?;
    let t = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    b.synchronize()?;
    Ok(t.elapsed().as_secs_f64() * 1e3 / reps as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let k = args.first().copied().unwrap_or(4096);
    let n = args.get(1).copied().unwrap_or(4096);
    let reps = args.get(2).copied().unwrap_or(20);
    let mut b = WebGpuBackend::new();
    b.init()?;
    println!("{}; host import: {}", b.name(), b.host_import_supported());
    if !b.host_import_supported() {
        return Err("this adapter cannot import host memory".into());
    }
    let mut host_w: Vec<f32> = (0..k * n)
        .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5)
        .collect();
    let w_bytes = (k * n * 4) as f64;
    let resident = b.upload(&host_w)?;
    println!(
        "{:>3} {:>22} {:>10} {:>12}   (W = {k} x {n} f32, {:.0} MiB; {reps} reps)",
        "m",
        "mode",
        "ms/call",
        "W GB/s",
        w_bytes / (1 << 20) as f64
    );
    for m in [1usize, 8] {
        let x = b.upload(&vec![0.25f32; m * k])?;
        let c = b.alloc(m * n * 4)?;
        let mut want = vec![0.0f32; m * n];
        let row = |name: &str, ms: f64| {
            println!("{m:>3} {name:>22} {ms:>10.3} {:>12.1}", w_bytes / ms / 1e6);
        };
        row(
            "resident",
            time(&b, reps, || gemm(&b, m, n, k, x, resident, c))?,
        );
        b.copy_dtoh(bytemuck::cast_slice_mut(&mut want), c)?;
        row(
            "copy only",
            time(&b, reps, || {
                b.copy_htod(resident, bytemuck::cast_slice(&host_w))
            })?,
        );
        row(
            "copy + gemm",
            time(&b, reps, || {
                b.copy_htod(resident, bytemuck::cast_slice(&host_w))?;
                gemm(&b, m, n, k, x, resident, c)
            })?,
        );
        // Imported: the import made once around the timed loop, and the whole scope
        // (import, one gemm, synchronize, release) timed on its own.
        let ms = b.with_host_memory(bytemuck::cast_slice_mut(&mut host_w), |w| {
            time(&b, reps, || gemm(&b, m, n, k, x, w, c))
        })??;
        row("imported", ms);
        let mut got = vec![0.0f32; m * n];
        b.copy_dtoh(bytemuck::cast_slice_mut(&mut got), c)?;
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff <= 1e-3,
            "imported result differs from resident by {diff}"
        );
        let t = Instant::now();
        for _ in 0..reps.min(5) {
            b.with_host_memory(bytemuck::cast_slice_mut(&mut host_w), |w| {
                gemm(&b, m, n, k, x, w, c)
            })??;
        }
        row(
            "import + gemm + release",
            t.elapsed().as_secs_f64() * 1e3 / reps.min(5) as f64,
        );
        b.free(x)?;
        b.free(c)?;
    }
    Ok(())
}
