//! A small CNN classifier, built only from `ComputeBackend` calls:
//!
//! ```text
//! [2, 3, 16, 16] -> conv 3x3 (8) -> relu -> maxpool 2x2 -> conv 3x3 (16) -> relu -> maxpool 2x2
//!                -> global mean pool -> linear (10) -> softmax (one call)
//! ```
//!
//! Pooling is two `reduce(Max)` calls over a reshaped view (no data movement): the NCHW
//! tensor `[N*C, H, W]` is `[N*C, H, W/2, 2]` (reduce axis 3), then `[N*C, H/2, 2, W/2]`
//! (reduce axis 2). The bias is broadcast with an outer product (a gemm with `k = 1`).
//!
//! ```sh
//! cargo run --release -p backends --example cnn                      # CPU
//! cargo run --release -p backends --features webgpu --example cnn   # + WebGPU, compared
//! ```

pub(crate) mod common;

use std::process::ExitCode;
use std::sync::OnceLock;

use backends::backend_api::memory::ArenaPlan;
use backends::{BackendResult, ComputeBackend, ComputeBackendExt, ReduceOp, UnaryOp};
use common::{Arena, Row, values};

/// Batch, input channels, image side, the two convolutions' filters, classes.
pub(crate) const N: usize = 2;
pub(crate) const C: usize = 3;
pub(crate) const SIDE: usize = 16;
pub(crate) const K1: usize = 8;
pub(crate) const K2: usize = 16;
pub(crate) const CLASSES: usize = 10;

/// Multiply-adds times two, per forward pass (the convolutions and the linear layer).
pub(crate) const FLOPS: usize = 2 * N * K1 * SIDE * SIDE * C * 9
    + 2 * N * K2 * (SIDE / 2) * (SIDE / 2) * K1 * 9
    + 2 * N * K2 * CLASSES;

/// 2x2 max pooling with stride 2 of `x[planes, h, w]` into `out[planes, h/2, w/2]`.
fn maxpool(
    ar: &mut Arena<'_>,
    x: u64,
    out: u64,
    planes: usize,
    h: usize,
    w: usize,
) -> BackendResult<()> {
    let half = ar.alloc(planes * h * (w / 2))?;
    ar.b.reduce(ReduceOp::Max, x, half, &[planes, h, w / 2, 2], 3)?;
    ar.b.reduce(ReduceOp::Max, half, out, &[planes, h / 2, 2, w / 2], 2)?;
    ar.done(half)
}

/// 3x3 convolution, stride 1, padding 1 (same size), then relu in place.
fn conv_relu(
    ar: &mut Arena<'_>,
    x: u64,
    filter: u64,
    [n, c, h, w]: [usize; 4],
    k: usize,
) -> BackendResult<u64> {
    let out = ar.alloc(n * k * h * w)?;
    ar.b.conv2d_forward(
        x,
        &[n, c, h, w],
        filter,
        &[k, c, 3, 3],
        out,
        &[n, k, h, w],
        &[1, 1],
        &[1, 1],
    )?;
    ar.b.unary(UnaryOp::Relu, out, out, n * k * h * w)?;
    Ok(out)
}

/// One forward pass on an arena for `input` (`[N, C, SIDE, SIDE]`); returns the class
/// probabilities, `[N, CLASSES]` row-major. Each activation ends (`done`) after the last
/// op that reads it, which lets the planned arena reuse its bytes.
pub(crate) fn graph(ar: &mut Arena<'_>, input: &[f32]) -> BackendResult<Vec<f32>> {
    let b = ar.b;
    let x = ar.upload(input)?;
    let f1 = ar.upload(&values(11, K1 * C * 9, 1.0 / (C as f32 * 9.0).sqrt()))?;
    let f2 = ar.upload(&values(12, K2 * K1 * 9, 1.0 / (K1 as f32 * 9.0).sqrt()))?;
    let wfc = ar.upload(&values(13, K2 * CLASSES, 16.0 / (K2 as f32).sqrt()))?;
    let bfc = ar.upload(&values(14, CLASSES, 0.1))?;
    let ones_n = ar.filled(N, 1.0)?;

    let s = SIDE;
    let a1 = conv_relu(ar, x, f1, [N, C, s, s], K1)?;
    let p1 = ar.alloc(N * K1 * (s / 2) * (s / 2))?;
    maxpool(ar, a1, p1, N * K1, s, s)?;
    ar.done(a1)?;
    let s = s / 2;
    let a2 = conv_relu(ar, p1, f2, [N, K1, s, s], K2)?;
    ar.done(p1)?;
    let p2 = ar.alloc(N * K2 * (s / 2) * (s / 2))?;
    maxpool(ar, a2, p2, N * K2, s, s)?;
    ar.done(a2)?;
    let s = s / 2;

    // Global average pooling: [N * K2, s * s] -> [N, K2].
    let feat = ar.alloc(N * K2)?;
    b.reduce(ReduceOp::Mean, p2, feat, &[N * K2, s * s], 1)?;
    ar.done(p2)?;
    // Linear layer: logits = bias (broadcast) + feat * Wfc.
    let logits = ar.alloc(N * CLASSES)?;
    ar.outer(ones_n, bfc, logits, N, CLASSES)?;
    ar.matmul(feat, wfc, logits, (N, K2, CLASSES), 1.0)?;
    ar.done(feat)?;
    // Softmax over each row (stable: the row maximum is subtracted first), in place.
    b.softmax(logits, logits, N, CLASSES)?;
    b.copy_dtoh_vec(logits, N * CLASSES)
}

/// One forward pass on `b` for `input` with the activations in a planned arena.
pub(crate) fn forward_on(b: &dyn ComputeBackend, input: &[f32]) -> BackendResult<Vec<f32>> {
    static PLAN: OnceLock<ArenaPlan> = OnceLock::new();
    let plan = common::cached_plan(&PLAN, b, graph, input)?;
    common::run_planned(b, graph, input, plan)
}

/// The activations' plan of the CNN on `b`, and both runs' outputs.
pub(crate) fn plan_report(b: &dyn ComputeBackend) -> BackendResult<common::PlanReport> {
    common::plan_and_run(b, graph, &input())
}

/// The example's input: fixed pseudo-random images.
pub(crate) fn input() -> Vec<f32> {
    values(10, N * C * SIDE * SIDE, 1.0)
}

/// The example's model on its input.
pub(crate) fn forward(b: &dyn ComputeBackend) -> BackendResult<Vec<f32>> {
    forward_on(b, &input())
}

/// Runs the CNN on every backend available and compares; `reps` timed passes each.
pub(crate) fn run(reps: usize) -> Result<Vec<Row>, String> {
    let what = format!(
        "cnn: input [{N}, {C}, {SIDE}, {SIDE}], conv3x3({K1}) relu pool, conv3x3({K2}) relu \
         pool, mean, linear({CLASSES}), softmax ({:.2} MFLOP per forward)",
        FLOPS as f64 / 1e6
    );
    let rows = common::run_everywhere(&what, forward, reps)?;
    let report = backends::default_backend()
        .and_then(|b| plan_report(b.as_ref()))
        .map_err(|e| format!("planning the activations: {e}"))?;
    println!("{}", report.describe());
    if let Some(first) = rows.first() {
        for (i, p) in first.output.chunks(CLASSES).enumerate() {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            println!("image {i}: class {best} (p = {:.3})", p[best]);
        }
    }
    Ok(rows)
}

#[cfg_attr(test, allow(dead_code, reason = "the tests call run(), not main"))]
fn main() -> ExitCode {
    common::exit_code(run(5).map(drop))
}
