//! criterion: the gemm cases of the catalogue on every backend (throughput in FLOP/s or bytes/s).
#![expect(
    missing_docs,
    reason = "criterion's macros generate the undocumented entry points"
)]

use criterion::{Criterion, criterion_group, criterion_main};

mod common;

fn bench(c: &mut Criterion) {
    common::run(c, &["gemm", "batched_gemm"]);
}

criterion_group!(benches, bench);
criterion_main!(benches);
