//! A pre-norm transformer block, built only from `ComputeBackend` calls, as an ML
//! framework would lower it:
//!
//! ```text
//! h   = layernorm(x)                      layer_norm (one call, gamma and beta)
//! Q,K,V per head = h * Wqkv               one batched_gemm (row-major recipe), heads as batches
//! o   = causal_attention(Q, K, V)         attention, bottom-right causal mask
//! x1  = x + sum_h o_h * Wo_h              gemm per head, accumulated with beta = 1
//! x2  = x1 + gelu(layernorm(x1) * W1 + b1) * W2 + b2
//! ```
//!
//! It runs on the backend the `backends` features and `BACKEND` select, then on every other
//! backend compiled in, and checks that the outputs agree:
//!
//! ```sh
//! cargo run --release -p backends --example transformer                      # CPU
//! cargo run --release -p backends --features webgpu --example transformer   # + WebGPU
//! BACKEND=webgpu cargo run --release -p backends --features webgpu --example transformer
//! ```

pub(crate) mod common;

use std::process::ExitCode;
use std::sync::OnceLock;

use backends::backend_api::memory::ArenaPlan;
use backends::{BackendResult, BinaryOp, ComputeBackend, ComputeBackendExt, UnaryOp};
use common::{Arena, Row, values};

/// Sequence length, model width, heads, MLP width.
pub(crate) const SEQ: usize = 16;
pub(crate) const D: usize = 64;
pub(crate) const HEADS: usize = 4;
pub(crate) const HEAD_DIM: usize = D / HEADS;
pub(crate) const FF: usize = 4 * D;

/// Multiply-adds times two, per forward pass.
pub(crate) const FLOPS: usize = 2 * SEQ * D * 3 * D  // QKV
    + 2 * HEADS * SEQ * SEQ * HEAD_DIM * 2     // scores and weighted sum
    + 2 * SEQ * D * D                          // output projection
    + 2 * 2 * SEQ * D * FF; // MLP

/// The input and weights: fixed, so every backend computes the same thing.
pub(crate) struct Weights {
    pub(crate) x: Vec<f32>,
    ln1: (Vec<f32>, Vec<f32>),
    /// `[3 * HEADS, D, HEAD_DIM]`: the Q heads, then K, then V.
    wqkv: Vec<f32>,
    /// `[HEADS, HEAD_DIM, D]`.
    wo: Vec<f32>,
    ln2: (Vec<f32>, Vec<f32>),
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

impl Weights {
    pub(crate) fn new(seed: u64) -> Self {
        let gain = |s, n| values(s, n, 0.1).iter().map(|v| 1.0 + v).collect();
        let w_in = 1.0 / (D as f32).sqrt();
        Self {
            x: values(seed, SEQ * D, 1.0),
            ln1: (gain(seed + 1, D), values(seed + 2, D, 0.1)),
            wqkv: values(seed + 3, 3 * D * D, w_in),
            wo: values(seed + 4, D * D, w_in),
            ln2: (gain(seed + 5, D), values(seed + 6, D, 0.1)),
            w1: values(seed + 7, D * FF, w_in),
            b1: values(seed + 8, FF, 0.1),
            w2: values(seed + 9, FF * D, 1.0 / (FF as f32).sqrt()),
            b2: values(seed + 10, D, 0.1),
        }
    }
}

/// One forward pass of the block on an arena; returns `x2`, row-major `[SEQ, D]`. Each
/// activation ends (`done`) after the last op that reads it, which is what lets the
/// planned arena reuse its bytes.
pub(crate) fn block(ar: &mut Arena<'_>, w: &Weights) -> BackendResult<Vec<f32>> {
    let b = ar.b;
    let x = ar.upload(&w.x)?;
    let ln1 = (ar.upload(&w.ln1.0)?, ar.upload(&w.ln1.1)?);
    let wqkv = ar.upload(&w.wqkv)?;
    let wo = ar.upload(&w.wo)?;
    let ln2 = (ar.upload(&w.ln2.0)?, ar.upload(&w.ln2.1)?);
    let (w1, b1) = (ar.upload(&w.w1)?, ar.upload(&w.b1)?);
    let (w2, b2) = (ar.upload(&w.w2)?, ar.upload(&w.b2)?);
    let ones_seq = ar.filled(SEQ, 1.0)?;

    // Attention.
    let h = ar.alloc(SEQ * D)?;
    b.layer_norm(x, Some(ln1.0), Some(ln1.1), h, SEQ, D, 1e-5)?;
    // Per head i (3 * HEADS of them): row-major C_i[SEQ x HEAD_DIM] = h[SEQ x D] * W_i[D x
    // HEAD_DIM], i.e. column-major C_i^T = W_i^T * h^T. h is shared (stride 0), and the
    // outputs land as [3, HEADS, SEQ, HEAD_DIM]: exactly the layout attention reads.
    let qkv = ar.alloc(3 * HEADS * SEQ * HEAD_DIM)?;
    use backends::BackendTranspose::NoTrans;
    b.batched_gemm(
        NoTrans,
        NoTrans,
        HEAD_DIM,
        SEQ,
        D,
        1.0,
        wqkv,
        HEAD_DIM,
        D * HEAD_DIM,
        h,
        D,
        0,
        0.0,
        qkv,
        HEAD_DIM,
        SEQ * HEAD_DIM,
        3 * HEADS,
    )?;
    ar.done(h)?;
    let part = (HEADS * SEQ * HEAD_DIM * 4) as u64; // bytes of Q (likewise K, V)
    let (q, k, v) = (qkv, qkv + part, qkv + 2 * part); // pointer arithmetic, as with cudaMalloc
    let o = ar.alloc(HEADS * SEQ * HEAD_DIM)?;
    let scale = 1.0 / (HEAD_DIM as f64).sqrt();
    b.attention(q, k, v, o, 1, HEADS, SEQ, SEQ, HEAD_DIM, scale, true)?;
    ar.done(qkv)?;
    // Output projection: attn[SEQ x D] = sum over heads of o_h[SEQ x HEAD_DIM] * Wo_h.
    let attn = ar.alloc(SEQ * D)?;
    for head in 0..HEADS {
        let o_h = o + (head * SEQ * HEAD_DIM * 4) as u64;
        let wo_h = wo + (head * HEAD_DIM * D * 4) as u64;
        let beta = if head == 0 { 0.0 } else { 1.0 };
        ar.matmul(o_h, wo_h, attn, (SEQ, HEAD_DIM, D), beta)?;
    }
    ar.done(o)?;
    let x1 = ar.alloc(SEQ * D)?;
    b.binary(BinaryOp::Add, x, attn, x1, SEQ * D)?;
    ar.done(attn)?;

    // MLP: biases are broadcast into the output first, then the gemm adds (beta = 1).
    let h2 = ar.alloc(SEQ * D)?;
    b.layer_norm(x1, Some(ln2.0), Some(ln2.1), h2, SEQ, D, 1e-5)?;
    let f = ar.alloc(SEQ * FF)?;
    ar.outer(ones_seq, b1, f, SEQ, FF)?;
    ar.matmul(h2, w1, f, (SEQ, D, FF), 1.0)?;
    ar.done(h2)?;
    b.unary(UnaryOp::Gelu, f, f, SEQ * FF)?;
    let y = ar.alloc(SEQ * D)?;
    ar.outer(ones_seq, b2, y, SEQ, D)?;
    ar.matmul(f, w2, y, (SEQ, FF, D), 1.0)?;
    ar.done(f)?;
    b.binary(BinaryOp::Add, x1, y, y, SEQ * D)?;
    ar.done(x1)?;
    b.copy_dtoh_vec(y, SEQ * D)
}

/// One forward pass of the block on `b` with its activations in a planned arena.
pub(crate) fn forward_with(b: &dyn ComputeBackend, w: &Weights) -> BackendResult<Vec<f32>> {
    static PLAN: OnceLock<ArenaPlan> = OnceLock::new();
    let plan = common::cached_plan(&PLAN, b, block, w)?;
    common::run_planned(b, block, w, plan)
}

/// The example's model: the block with the weights of seed 7.
pub(crate) fn forward(b: &dyn ComputeBackend) -> BackendResult<Vec<f32>> {
    forward_with(b, &Weights::new(7))
}

/// The activations' plan of the block on `b`, and both runs' outputs.
pub(crate) fn plan_report(b: &dyn ComputeBackend) -> BackendResult<common::PlanReport> {
    common::plan_and_run(b, block, &Weights::new(7))
}

/// Runs the block on every backend available and compares; `reps` timed passes each.
pub(crate) fn run(reps: usize) -> Result<Vec<Row>, String> {
    let what = format!(
        "transformer block: seq {SEQ}, d_model {D}, {HEADS} heads of {HEAD_DIM}, MLP {FF}, \
         causal ({:.2} MFLOP per forward)",
        FLOPS as f64 / 1e6
    );
    let rows = common::run_everywhere(&what, forward, reps)?;
    let report = backends::default_backend()
        .and_then(|b| plan_report(b.as_ref()))
        .map_err(|e| format!("planning the activations: {e}"))?;
    println!("{}", report.describe());
    for r in &rows {
        if r.millis > 0.0 {
            println!(
                "{}: {:.3} GFLOP/s",
                r.name,
                FLOPS as f64 / (r.millis * 1e-3) / 1e9
            );
        }
    }
    Ok(rows)
}

#[cfg_attr(test, allow(dead_code, reason = "the tests call run(), not main"))]
fn main() -> ExitCode {
    common::exit_code(run(5).map(drop))
}
