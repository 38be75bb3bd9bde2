//! SGEMM on the fast CPU backend against the oracle, square sizes, through the trait (so
//! the call includes validation and address resolution). The numpy (OpenBLAS) figures of
//! the same run come from `bench/numpy_sgemm.py`.
//!
//! `cargo bench -p backend-fast-cpu --bench sgemm`; `SGEMM_SIZES=512,1024` to choose the
//! sizes, `SGEMM_ORACLE_MAX` (default 1024) the largest size the oracle runs.
#![expect(
    missing_docs,
    reason = "criterion's macros generate the undocumented entry points"
)]

use std::time::{Duration, Instant};

use backend_api::{BackendTranspose::NoTrans, ComputeBackend, ComputeBackendExt};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn sizes() -> Vec<usize> {
    std::env::var("SGEMM_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![512, 1024, 2048])
}

fn bench_backend(c: &mut Criterion, b: &dyn ComputeBackend, max: usize) {
    let mut group = c.benchmark_group(format!("sgemm/{}", b.name()));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    for n in sizes().into_iter().filter(|&n| n <= max) {
        let a: Vec<f32> = (0..n * n)
            .map(|i| ((i * 7 % 13) as f32) * 0.1 - 0.6)
            .collect();
        let pa = b.upload(&a).unwrap();
        let pb = b.upload(&a).unwrap();
        let pc = b.alloc(4 * n * n).unwrap();
        group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        group.bench_function(BenchmarkId::from_parameter(n), |bench| {
            bench.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    b.gemm(NoTrans, NoTrans, n, n, n, 1.0, pa, n, pb, n, 0.0, pc, n)
                        .unwrap();
                }
                b.synchronize().unwrap();
                start.elapsed()
            })
        });
        for p in [pa, pb, pc] {
            b.free(p).unwrap();
        }
    }
    group.finish();
}

fn sgemm(c: &mut Criterion) {
    let mut fast = backend_fast_cpu::FastCpuBackend::new();
    fast.init().unwrap();
    bench_backend(c, &fast, usize::MAX);
    let oracle_max = std::env::var("SGEMM_ORACLE_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut cpu = backend_cpu::CpuBackend::new();
    cpu.init().unwrap();
    bench_backend(c, &cpu, oracle_max);
}

criterion_group!(benches, sgemm);
criterion_main!(benches);
