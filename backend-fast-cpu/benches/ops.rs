//! Row ops, unary ops, attention and conv on the fast CPU backend, through the trait: softmax,
//! log_softmax, layer_norm (with gamma and beta), rms_norm over 1024 x 4096 (throughput
//! in bytes read and written); attention b1 h8 s1024 d64, full and causal (throughput:
//! the `4 b h s^2 d` FLOPs of QK^T and PV, also for causal); the 3x3 and 7x7 ResNet-50
//! conv layers at batch 1 (FLOPs). PyTorch CPU on the same cases:
//! `bench/torch_cpu.py`.
//!
//! `cargo bench -p backend-fast-cpu --bench ops`.
#![expect(
    missing_docs,
    reason = "criterion's macros generate the undocumented entry points"
)]

use std::time::{Duration, Instant};

use backend_api::{ComputeBackend, ComputeBackendExt, UnaryOp};
use backend_fast_cpu::FastCpuBackend;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ROWS: usize = 1024;
const COLS: usize = 4096;

fn values(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 % 1009) as f32) * 0.01 - 5.0)
        .collect()
}

fn timed(b: &dyn ComputeBackend, iters: u64, mut call: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        call();
    }
    b.synchronize().unwrap();
    start.elapsed()
}

fn rows(c: &mut Criterion) {
    let mut b = FastCpuBackend::new();
    b.init().unwrap();
    let n = ROWS * COLS;
    let x = b.upload(&values(n)).unwrap();
    let y = b.alloc(4 * n).unwrap();
    let gamma = b.upload(&values(COLS)).unwrap();
    let beta = b.upload(&values(COLS)).unwrap();
    let mut group = c.benchmark_group(format!("rows_{ROWS}x{COLS}"));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(300));
    group.throughput(Throughput::Bytes(8 * n as u64));
    group.bench_function("softmax", |bench| {
        bench.iter_custom(|it| timed(&b, it, || b.softmax(x, y, ROWS, COLS).unwrap()))
    });
    group.bench_function("log_softmax", |bench| {
        bench.iter_custom(|it| timed(&b, it, || b.log_softmax(x, y, ROWS, COLS).unwrap()))
    });
    group.bench_function("layer_norm", |bench| {
        bench.iter_custom(|it| {
            timed(&b, it, || {
                b.layer_norm(x, Some(gamma), Some(beta), y, ROWS, COLS, 1e-5)
                    .unwrap()
            })
        })
    });
    group.bench_function("rms_norm", |bench| {
        bench.iter_custom(|it| {
            timed(&b, it, || {
                b.rms_norm(x, Some(gamma), y, ROWS, COLS, 1e-5).unwrap()
            })
        })
    });
    group.finish();

    // Elementwise at 2^24 (bytes read and written): exp and silu were libm calls per element.
    let n = 1 << 24;
    let x = b.upload(&values(n)).unwrap();
    let y = b.alloc(4 * n).unwrap();
    let mut group = c.benchmark_group("unary_2^24");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(8 * n as u64));
    for op in [UnaryOp::Relu, UnaryOp::Exp, UnaryOp::Sigmoid, UnaryOp::Silu] {
        group.bench_function(op.to_string(), |bench| {
            bench.iter_custom(|it| timed(&b, it, || b.unary(op, x, y, n).unwrap()))
        });
    }
    group.finish();

    let (heads, s, d) = (8, 1024, 64);
    let len = heads * s * d;
    let q = b.upload(&values(len)).unwrap();
    let k = b.upload(&values(len)).unwrap();
    let v = b.upload(&values(len)).unwrap();
    let o = b.alloc(4 * len).unwrap();
    let mut group = c.benchmark_group("attention_b1_h8_s1024_d64");
    group.sample_size(10);
    group.throughput(Throughput::Elements(4 * (heads * s * s * d) as u64));
    for causal in [false, true] {
        let name = if causal { "causal" } else { "full" };
        group.bench_function(name, |bench| {
            bench.iter_custom(|it| {
                timed(&b, it, || {
                    b.attention(q, k, v, o, 1, heads, s, s, d, 0.125, causal)
                        .unwrap()
                })
            })
        });
    }
    group.finish();
}

/// A conv layer: name, input NCHW, filter KCRS, stride, padding.
type ConvLayer = (&'static str, [usize; 4], [usize; 4], usize, usize);

/// ResNet-50's conv layers at batch 1.
const CONVS: [ConvLayer; 6] = [
    ("conv1_7x7s2", [1, 3, 224, 224], [64, 3, 7, 7], 2, 3),
    ("res2_3x3", [1, 64, 56, 56], [64, 64, 3, 3], 1, 1),
    ("res3_3x3", [1, 128, 28, 28], [128, 128, 3, 3], 1, 1),
    ("res4_3x3", [1, 256, 14, 14], [256, 256, 3, 3], 1, 1),
    ("res5_3x3", [1, 512, 7, 7], [512, 512, 3, 3], 1, 1),
    ("res2_1x1", [1, 256, 56, 56], [64, 256, 1, 1], 1, 0),
];

fn conv(c: &mut Criterion) {
    let mut b = FastCpuBackend::new();
    b.init().unwrap();
    let mut group = c.benchmark_group("conv2d_resnet50_n1");
    group.sample_size(20);
    for (name, input, filter, stride, pad) in CONVS {
        let [n, ch, h, w] = input;
        let [k, _, r, s] = filter;
        let out = [
            n,
            k,
            (h + 2 * pad - r) / stride + 1,
            (w + 2 * pad - s) / stride + 1,
        ];
        let x = b.upload(&values(input.iter().product())).unwrap();
        let f = b.upload(&values(filter.iter().product())).unwrap();
        let y = b.alloc(4 * out.iter().product::<usize>()).unwrap();
        group.throughput(Throughput::Elements(
            2 * (out.iter().product::<usize>() * ch * r * s) as u64,
        ));
        group.bench_function(name, |bench| {
            bench.iter_custom(|it| {
                timed(&b, it, || {
                    b.conv2d_forward(x, &input, f, &filter, y, &out, &[stride; 2], &[pad; 2])
                        .unwrap()
                })
            })
        });
        for p in [x, f, y] {
            b.free(p).unwrap();
        }
    }
    group.finish();
}

criterion_group!(benches, rows, conv);
criterion_main!(benches);
