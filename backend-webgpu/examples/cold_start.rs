//! Cold start: the time from `init` to the first result of each op family, in a fresh
//! process, with the pipeline cache in `DIR` (empty the first time, filled by the run
//! before the second time).
//!
//! ```sh
//! rm -rf /tmp/pc
//! cargo run --release -p backend-webgpu --example cold_start -- /tmp/pc   # cold
//! cargo run --release -p backend-webgpu --example cold_start -- /tmp/pc   # cached
//! ```
//!
//! Drivers keep caches of their own (Mesa's `MESA_SHADER_CACHE_DISABLE=true` and NVIDIA's
//! `__GL_SHADER_DISK_CACHE=0` turn them off), which a measurement of ours must switch off.

use std::time::Instant;

use backend_api::{
    AttentionArgs, BackendResult, BackendTranspose, ComputeBackend, ComputeBackendExt, Conv2dArgs,
    DType, HeadTensor, QuantFormat, ReduceOp, RowOp, UnaryOp,
};
use backend_webgpu::{WebGpuBackend, WebGpuOptions};

/// The first op of each family, each ending with a 4-byte read of its output (so the time
/// includes building its pipelines and running it).
fn first_ops(b: &dyn ComputeBackend) -> BackendResult<Vec<(&'static str, f64)>> {
    let n = 256;
    let x = b.upload(&vec![0.5f32; n * n])?;
    let y = b.alloc(4 * n * n)?;
    let mut out = Vec::new();
    let mut timed = |name, f: &dyn Fn() -> BackendResult<()>, read: u64| -> BackendResult<()> {
        let t = Instant::now();
        f()?;
        let mut four = [0u8; 4];
        b.copy_dtoh(&mut four, read)?;
        out.push((name, t.elapsed().as_secs_f64() * 1e3));
        Ok(())
    };
    use BackendTranspose::NoTrans as N;
    timed(
        "gemm 256",
        &|| b.gemm(N, N, n, n, n, 1.0, x, n, x, n, 0.0, y, n),
        y,
    )?;
    timed("unary relu", &|| b.unary(UnaryOp::Relu, x, y, n * n), y)?;
    timed(
        "binary add",
        &|| b.binary(backend_api::BinaryOp::Add, x, x, y, n * n),
        y,
    )?;
    timed(
        "reduce sum",
        &|| b.reduce(ReduceOp::Sum, x, y, &[n, n], 1),
        y,
    )?;
    timed(
        "softmax",
        &|| b.rows_ex(RowOp::Softmax, DType::F32, x, None, None, y, n, n, 0.0),
        y,
    )?;
    let args = Conv2dArgs::new(x, [1, 4, 32, 32], x, [4, 1, 3, 3], y, [1, 4, 32, 32])
        .padding([1, 1, 1, 1])
        .groups(4);
    timed("conv2d depthwise", &|| b.conv2d_forward_ex(&args), y)?;
    let t = |p| HeadTensor::bhsd(p, 4, 64, 32);
    let att = AttentionArgs::new(1, 4, 4, 64, 64, 32, t(x), t(x), t(x), t(y)).causal(true);
    timed("attention", &|| b.attention_ex(&att), y)?;
    let q = b.upload(&vec![0u8; 64 * 2 * 18])?;
    timed(
        "gemm_q decode",
        &|| {
            b.gemm_q(
                QuantFormat::Q4_0,
                64,
                1,
                64,
                1.0,
                q,
                x,
                DType::F32,
                64,
                0.0,
                y,
                64,
            )
        },
        y,
    )?;
    timed(
        "cast f32->f16",
        &|| b.cast(x, DType::F32, y, DType::F16, n * n),
        y,
    )?;
    for p in [x, y, q] {
        b.free(p)?;
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: cold_start DIR")?;
    let start = Instant::now();
    let mut options = WebGpuOptions::from_env()?;
    options.pipeline_cache = Some(dir.into());
    let mut b = WebGpuBackend::with_options(options);
    b.init()?;
    let init_ms = start.elapsed().as_secs_f64() * 1e3;
    let loaded = b.pipeline_cache_loaded();
    println!("{}", b.name());
    println!(
        "pipeline cache: {} ({})",
        match loaded {
            None => "none on this adapter".to_string(),
            Some(0) => "empty (cold start)".to_string(),
            Some(n) => format!("{n} bytes loaded"),
        },
        b.save_pipeline_cache()
            .map_or("-".into(), |p| p.display().to_string())
    );
    println!("init: {init_ms:.1} ms");
    let ops = first_ops(&b)?;
    for (name, ms) in &ops {
        println!("first {name:<18} {ms:9.1} ms");
    }
    let first_gemm = init_ms + ops[0].1;
    println!("init to the first gemm result: {first_gemm:.1} ms");
    println!(
        "init to the last first result: {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    b.save_pipeline_cache();
    Ok(())
}
