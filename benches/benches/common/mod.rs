//! Shared by every bench file: one criterion group per (op family, backend), each case
//! timed with `iter_custom` ending in `synchronize()`, throughput in FLOP or bytes.

use std::time::Duration;

use benches::{Work, catalogue, open, time_runs};
use criterion::{Criterion, Throughput};

/// Benchmarks the catalogue's cases of `groups` on every backend that opens here.
pub(crate) fn run(c: &mut Criterion, groups: &[&str]) {
    for backend in ["cpu", "webgpu"] {
        let opened = match open(backend, None) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("SKIPPED {backend}: {e}");
                continue;
            }
        };
        let b = opened.backend.as_ref();
        let cases: Vec<_> = catalogue(opened.scale)
            .into_iter()
            .filter(|k| groups.contains(&k.group))
            .collect();
        if cases.is_empty() {
            continue;
        }
        let mut group = c.benchmark_group(format!("{}/{}", groups[0], b.name()));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_secs(2));
        for case in cases {
            let prepared = match case.prepare(b) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("SKIPPED {} on {}: {e}", case.name, b.name());
                    continue;
                }
            };
            match case.work {
                Work::Flops(f) => group.throughput(Throughput::Elements(f as u64)),
                Work::Bytes(n) => group.throughput(Throughput::Bytes(n as u64)),
                Work::Latency => group.throughput(Throughput::Elements(1)),
            };
            group.bench_function(&case.name, |bencher| {
                bencher.iter_custom(|iters| {
                    time_runs(b, &prepared, iters as u32).expect("benchmark run failed")
                })
            });
            prepared.free(b);
        }
        group.finish();
    }
}
