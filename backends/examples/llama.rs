//! A Llama-style decoder block, built only from `ComputeBackend` calls, run as a model is
//! served: a prefill of 8 tokens, then 32 decode steps of one token each, with the keys
//! and values kept in a KV cache that attention reads in place.
//!
//! ```text
//! x    = embed[tokens]                        gather (u32 token ids on the device)
//! h    = rms_norm(x) * g_attn                 rms_norm
//! q, k = h Wq, h Wk; v = h Wv                 gemm_row_major; v lands in the cache directly
//! q, k = q cos + rotate_half(q) sin           gemm by a fixed +-1 matrix, binary_broadcast
//!                                             of the [tokens, 1, head_dim] tables; k lands
//!                                             in the cache
//! o    = attention(q, Kcache, Vcache)         attention_ex: 4 query heads over 2 KV heads,
//!                                             [s, h, d] operands, causal, cache read in place
//! x1   = x + o Wo
//! y    = x1 + (silu(h2 Wg) * (h2 Wu)) Wd      h2 = rms_norm(x1) * g_mlp (SwiGLU)
//! ```
//!
//! The same block runs a second time with its seven projection matrices quantized to
//! GGML's Q4_0 (`QuantFormat::quantize`, 4.5 bits a weight) and multiplied by `gemm_q`
//! straight from the blocks, as a GGUF model is served.
//!
//! It runs on the backend the `backends` features and `BACKEND` select and on every other
//! backend compiled in, checks that they agree, and checks every output row against the
//! numpy reference `examples/reference/llama.py` (committed with its outputs, `llama.json`
//! and, with the weights quantized and dequantized by the `gguf` package,
//! `llama_q4_0.json`):
//!
//! ```sh
//! cargo run --release -p backends --example llama                      # CPU
//! cargo run --release -p backends --features webgpu --example llama   # + WebGPU
//! ```

#[allow(
    dead_code,
    reason = "this example uses the harness, not the planned arenas"
)]
pub(crate) mod common;

use std::process::ExitCode;

use backends::{
    AttentionArgs, BackendResult, BackendTranspose, BinaryOp, Buffer, ComputeBackend,
    ComputeBackendExt, DType, HeadTensor, QuantFormat, UnaryOp,
};
use common::{Row, values};

pub(crate) const VOCAB: usize = 256;
pub(crate) const D: usize = 64;
pub(crate) const HEADS: usize = 4;
pub(crate) const KV_HEADS: usize = 2;
pub(crate) const HEAD_DIM: usize = 16;
pub(crate) const FF: usize = 128;
pub(crate) const PREFILL: usize = 8;
pub(crate) const DECODE: usize = 32;
/// Rows the KV cache has room for (more than the 40 tokens used).
pub(crate) const CAP: usize = 48;
const EPS: f64 = 1e-5;
const THETA: f64 = 10_000.0;
const SEED: u64 = 11;
const Q_DIM: usize = HEADS * HEAD_DIM;
const KV_DIM: usize = KV_HEADS * HEAD_DIM;

/// The weights, as `reference/llama.py` makes them (same generator, same order).
pub(crate) struct Weights {
    pub(crate) embed: Vec<f32>,
    pub(crate) g_attn: Vec<f32>,
    pub(crate) wq: Vec<f32>,
    pub(crate) wk: Vec<f32>,
    pub(crate) wv: Vec<f32>,
    pub(crate) wo: Vec<f32>,
    pub(crate) g_mlp: Vec<f32>,
    pub(crate) wg: Vec<f32>,
    pub(crate) wu: Vec<f32>,
    pub(crate) wd: Vec<f32>,
}

impl Weights {
    pub(crate) fn new() -> Self {
        let w_in = 1.0 / (D as f32).sqrt();
        let w_ff = 1.0 / (FF as f32).sqrt();
        let gain = |s| values(s, D, 0.1).iter().map(|v| 1.0 + v).collect();
        Self {
            embed: values(SEED, VOCAB * D, 1.0),
            g_attn: gain(SEED + 1),
            wq: values(SEED + 2, D * Q_DIM, w_in),
            wk: values(SEED + 3, D * KV_DIM, w_in),
            wv: values(SEED + 4, D * KV_DIM, w_in),
            wo: values(SEED + 5, Q_DIM * D, w_in),
            g_mlp: gain(SEED + 6),
            wg: values(SEED + 7, D * FF, w_in),
            wu: values(SEED + 8, D * FF, w_in),
            wd: values(SEED + 9, FF * D, w_ff),
        }
    }
}

/// The token ids: the prompt, then one per decode step.
pub(crate) fn tokens() -> Vec<u32> {
    let prompt = (0..PREFILL).map(|i| (7 * i + 3) % VOCAB);
    let decode = (0..DECODE).map(|t| (13 * t + 5) % VOCAB);
    prompt.chain(decode).map(|t| t as u32).collect()
}

/// `rotate_half` as a matrix: row-major `[HEAD_DIM, HEAD_DIM]` with `x R = [-x2, x1]`.
fn rotate_half() -> Vec<f32> {
    let half = HEAD_DIM / 2;
    let mut r = vec![0.0f32; HEAD_DIM * HEAD_DIM];
    for j in 0..half {
        r[(j + half) * HEAD_DIM + j] = -1.0;
        r[j * HEAD_DIM + j + half] = 1.0;
    }
    r
}

/// The cos and sin tables of positions `0..CAP`, row-major `[CAP, HEAD_DIM]` (each
/// frequency twice: the half-split convention).
fn rope_tables() -> (Vec<f32>, Vec<f32>) {
    let half = HEAD_DIM / 2;
    let mut cos = Vec::with_capacity(CAP * HEAD_DIM);
    let mut sin = Vec::with_capacity(CAP * HEAD_DIM);
    for p in 0..CAP {
        for j in 0..HEAD_DIM {
            let inv_freq = THETA.powf(-2.0 * (j % half) as f64 / HEAD_DIM as f64);
            let angle = p as f64 * inv_freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

/// A projection matrix `[k, n]` (row-major, `x W`): f32, or its transpose `[n, k]`
/// quantized row by row (each output feature's `k` weights in blocks of 32, as GGUF
/// stores a linear layer), which `gemm_q` reads.
enum Linear<'b> {
    F32(Buffer<'b, f32>),
    Quant(Buffer<'b, u8>, QuantFormat),
}

impl<'b> Linear<'b> {
    fn new(
        b: &'b dyn ComputeBackend,
        w: &[f32],
        (k, n): (usize, usize),
        quant: Option<QuantFormat>,
    ) -> BackendResult<Self> {
        match quant {
            None => Ok(Self::F32(Buffer::from_slice(b, w)?)),
            Some(format) => {
                let wt: Vec<f32> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
                let blocks = format.quantize(&wt, n, k)?;
                Ok(Self::Quant(Buffer::from_slice(b, &blocks)?, format))
            }
        }
    }
}

/// The model on one backend: weights, KV cache and scratch for the longest step.
struct Model<'b> {
    b: &'b dyn ComputeBackend,
    embed: Buffer<'b, f32>,
    g_attn: Buffer<'b, f32>,
    wq: Linear<'b>,
    wk: Linear<'b>,
    wv: Linear<'b>,
    wo: Linear<'b>,
    g_mlp: Buffer<'b, f32>,
    wg: Linear<'b>,
    wu: Linear<'b>,
    wd: Linear<'b>,
    rot: Buffer<'b, f32>,
    cos: Buffer<'b, f32>,
    sin: Buffer<'b, f32>,
    /// `[CAP, KV_HEADS, HEAD_DIM]`: row `p` holds position `p`'s keys (after RoPE).
    k_cache: Buffer<'b, f32>,
    v_cache: Buffer<'b, f32>,
    ids: Buffer<'b, u32>,
    x: Buffer<'b, f32>,
    h: Buffer<'b, f32>,
    q: Buffer<'b, f32>,
    k: Buffer<'b, f32>,
    t1: Buffer<'b, f32>,
    t2: Buffer<'b, f32>,
    o: Buffer<'b, f32>,
    gate: Buffer<'b, f32>,
    up: Buffer<'b, f32>,
}

impl<'b> Model<'b> {
    /// The model with scratch for steps of up to `most` tokens, its projections in f32
    /// or quantized to `quant`.
    fn new(
        b: &'b dyn ComputeBackend,
        w: &Weights,
        most: usize,
        quant: Option<QuantFormat>,
    ) -> BackendResult<Self> {
        let put = |v: &[f32]| Buffer::from_slice(b, v);
        let lin = |v: &[f32], k, n| Linear::new(b, v, (k, n), quant);
        let scratch = |n: usize| Buffer::<f32>::zeros(b, n);
        let (cos, sin) = rope_tables();
        Ok(Self {
            b,
            embed: put(&w.embed)?,
            g_attn: put(&w.g_attn)?,
            wq: lin(&w.wq, D, Q_DIM)?,
            wk: lin(&w.wk, D, KV_DIM)?,
            wv: lin(&w.wv, D, KV_DIM)?,
            wo: lin(&w.wo, Q_DIM, D)?,
            g_mlp: put(&w.g_mlp)?,
            wg: lin(&w.wg, D, FF)?,
            wu: lin(&w.wu, D, FF)?,
            wd: lin(&w.wd, FF, D)?,
            rot: put(&rotate_half())?,
            cos: put(&cos)?,
            sin: put(&sin)?,
            k_cache: scratch(CAP * KV_DIM)?,
            v_cache: scratch(CAP * KV_DIM)?,
            ids: Buffer::zeros(b, most)?,
            x: scratch(most * D)?,
            h: scratch(most * D)?,
            q: scratch(most * Q_DIM)?,
            k: scratch(most * KV_DIM)?,
            t1: scratch(most * Q_DIM)?,
            t2: scratch(most * Q_DIM)?,
            o: scratch(most * Q_DIM)?,
            gate: scratch(most * FF)?,
            up: scratch(most * FF)?,
        })
    }

    /// Row-major `c[m x n] (+)= a[m x k] * w[k x n]`, all contiguous.
    fn matmul(
        &self,
        a: u64,
        w: u64,
        c: u64,
        (m, k, n): (usize, usize, usize),
        beta: f64,
    ) -> BackendResult<()> {
        use BackendTranspose::NoTrans;
        self.b
            .gemm_row_major(NoTrans, NoTrans, m, n, k, 1.0, a, k, w, n, beta, c, n)
    }

    /// Row-major `c[m x n] (+)= a[m x k] * W`: an f32 gemm, or `gemm_q` over the
    /// quantized transpose (in column-major terms `c^T = W^T a^T`: A the `n x k` blocks,
    /// B `a^T` with `ldb = k`, C `c^T` with `ldc = n`).
    fn linear(
        &self,
        a: u64,
        w: &Linear<'_>,
        c: u64,
        (m, k, n): (usize, usize, usize),
        beta: f64,
    ) -> BackendResult<()> {
        match w {
            Linear::F32(w) => self.matmul(a, w.ptr(), c, (m, k, n), beta),
            Linear::Quant(blocks, format) => self.b.gemm_q(
                *format,
                n,
                m,
                k,
                1.0,
                blocks.ptr(),
                a,
                DType::F32,
                k,
                beta,
                c,
                n,
            ),
        }
    }

    /// RoPE of `x` (`[t, heads, HEAD_DIM]` at positions `pos0..pos0 + t`) into `out`:
    /// `x * cos + (x R) * sin`, the tables broadcast over the heads.
    fn rope(&self, x: u64, heads: usize, t: usize, pos0: usize, out: u64) -> BackendResult<()> {
        let b = self.b;
        let (rows, n) = (t * heads, t * heads * HEAD_DIM);
        self.matmul(
            x,
            self.rot.ptr(),
            self.t1.ptr(),
            (rows, HEAD_DIM, HEAD_DIM),
            0.0,
        )?;
        let shape = [t, heads, HEAD_DIM];
        let table = [t, 1, HEAD_DIM];
        let (cos, sin) = (self.cos.at(pos0 * HEAD_DIM), self.sin.at(pos0 * HEAD_DIM));
        b.binary_broadcast(
            BinaryOp::Mul,
            self.t1.ptr(),
            &shape,
            sin,
            &table,
            self.t1.ptr(),
            &shape,
        )?;
        b.binary_broadcast(BinaryOp::Mul, x, &shape, cos, &table, self.t2.ptr(), &shape)?;
        b.binary(BinaryOp::Add, self.t2.ptr(), self.t1.ptr(), out, n)
    }

    /// One step over `tokens` at positions `pos0..`: returns the block's output rows.
    fn step(&self, tokens: &[u32], pos0: usize) -> BackendResult<Vec<f32>> {
        let (b, t) = (self.b, tokens.len());
        let seen = pos0 + t;
        self.ids.write_at(0, tokens)?;
        let x = self.x.ptr();
        b.gather(self.embed.ptr(), VOCAB, D, self.ids.ptr(), t, x)?;

        // Attention. V goes straight into its cache rows; K after RoPE.
        let h = self.h.ptr();
        b.rms_norm(x, Some(self.g_attn.ptr()), h, t, D, EPS)?;
        self.linear(h, &self.wq, self.q.ptr(), (t, D, Q_DIM), 0.0)?;
        self.linear(h, &self.wk, self.k.ptr(), (t, D, KV_DIM), 0.0)?;
        self.linear(
            h,
            &self.wv,
            self.v_cache.at(pos0 * KV_DIM),
            (t, D, KV_DIM),
            0.0,
        )?;
        self.rope(self.q.ptr(), HEADS, t, pos0, self.o.ptr())?;
        self.rope(
            self.k.ptr(),
            KV_HEADS,
            t,
            pos0,
            self.k_cache.at(pos0 * KV_DIM),
        )?;
        // The roped queries are in `o`; the output goes to `q` (free now).
        let (q, o) = (self.o.ptr(), self.q.ptr());
        let args = AttentionArgs::new(
            1,
            HEADS,
            KV_HEADS,
            t,
            seen,
            HEAD_DIM,
            HeadTensor::bshd(q, HEADS, t, HEAD_DIM),
            HeadTensor::bshd(self.k_cache.ptr(), KV_HEADS, CAP, HEAD_DIM),
            HeadTensor::bshd(self.v_cache.ptr(), KV_HEADS, CAP, HEAD_DIM),
            HeadTensor::bshd(o, HEADS, t, HEAD_DIM),
        )
        .causal(true);
        b.attention_ex(&args)?;
        // x1 = x + o Wo, accumulated into x (beta = 1).
        self.linear(o, &self.wo, x, (t, Q_DIM, D), 1.0)?;

        // SwiGLU MLP, accumulated into x1.
        b.rms_norm(x, Some(self.g_mlp.ptr()), h, t, D, EPS)?;
        let (gate, up) = (self.gate.ptr(), self.up.ptr());
        self.linear(h, &self.wg, gate, (t, D, FF), 0.0)?;
        self.linear(h, &self.wu, up, (t, D, FF), 0.0)?;
        b.unary(UnaryOp::Silu, gate, gate, t * FF)?;
        b.binary(BinaryOp::Mul, gate, up, gate, t * FF)?;
        self.linear(gate, &self.wd, x, (t, FF, D), 1.0)?;
        b.copy_dtoh_vec(x, t * D)
    }
}

/// Prefill then every decode step on `b`; the output rows of all 40 tokens, in order.
pub(crate) fn forward(b: &dyn ComputeBackend) -> BackendResult<Vec<f32>> {
    forward_with(b, None)
}

/// [`forward`] with the projections in Q4_0, multiplied by `gemm_q`.
pub(crate) fn forward_q4_0(b: &dyn ComputeBackend) -> BackendResult<Vec<f32>> {
    forward_with(b, Some(QuantFormat::Q4_0))
}

fn forward_with(b: &dyn ComputeBackend, quant: Option<QuantFormat>) -> BackendResult<Vec<f32>> {
    let model = Model::new(b, &Weights::new(), PREFILL, quant)?;
    let toks = tokens();
    let mut out = model.step(&toks[..PREFILL], 0)?;
    for (i, &tok) in toks[PREFILL..].iter().enumerate() {
        out.extend(model.step(&[tok], PREFILL + i)?);
    }
    Ok(out)
}

/// All 40 tokens as one prefill: what the decode steps must reproduce.
#[allow(
    dead_code,
    reason = "called by backends/tests/examples.rs, not by the example"
)]
pub(crate) fn forward_prefill_only(b: &dyn ComputeBackend) -> BackendResult<Vec<f32>> {
    let toks = tokens();
    Model::new(b, &Weights::new(), toks.len(), None)?.step(&toks, 0)
}

/// Runs the model on every backend available and compares; `reps` timed runs each.
pub(crate) fn run(reps: usize) -> Result<Vec<Row>, String> {
    let what = format!(
        "llama decoder block: d_model {D}, {HEADS} query heads over {KV_HEADS} KV heads of \
         {HEAD_DIM}, SwiGLU {FF}; prefill {PREFILL} tokens, then {DECODE} decode steps over a \
         KV cache of {CAP} rows"
    );
    common::run_everywhere(&what, forward, reps)
}

/// [`run`] with the projections in Q4_0.
pub(crate) fn run_q4_0(reps: usize) -> Result<Vec<Row>, String> {
    let what = format!(
        "llama decoder block, projections in Q4_0 through gemm_q: d_model {D}, {HEADS} query \
         heads over {KV_HEADS} KV heads of {HEAD_DIM}, SwiGLU {FF}; prefill {PREFILL} tokens, \
         then {DECODE} decode steps"
    );
    common::run_everywhere(&what, forward_q4_0, reps)
}

/// Milliseconds per decode step on `b` (the model built and prefilled first, pipelines
/// warm), each step ending with the output row read back, as a serving loop reads its
/// logits: the mean over the 32 steps, best of `reps` passes.
#[cfg_attr(test, allow(dead_code, reason = "the tests call run(), not main"))]
fn decode_step_ms(
    b: &dyn ComputeBackend,
    reps: usize,
    quant: Option<QuantFormat>,
) -> BackendResult<f64> {
    let toks = tokens();
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let model = Model::new(b, &Weights::new(), PREFILL, quant)?;
        model.step(&toks[..PREFILL], 0)?;
        let start = std::time::Instant::now();
        for (i, &tok) in toks[PREFILL..].iter().enumerate() {
            model.step(&[tok], PREFILL + i)?;
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e3 / DECODE as f64);
    }
    Ok(best)
}

#[cfg_attr(test, allow(dead_code, reason = "the tests call run(), not main"))]
fn main() -> ExitCode {
    for run in [run, run_q4_0] {
        if let Err(e) = run(3) {
            return common::exit_code(Err(e));
        }
    }
    for kind in backends::BackendKind::compiled() {
        let Ok(b) = backends::create(kind) else {
            continue;
        };
        for (quant, what) in [(None, "f32"), (Some(QuantFormat::Q4_0), "Q4_0")] {
            match decode_step_ms(b.as_ref(), 5, quant) {
                Ok(ms) => println!(
                    "{}: {ms:.3} ms per decode step, {what} projections (32 steps, output \
                     read each step)",
                    b.name()
                ),
                Err(e) => println!("{}: decode timing failed: {e}", b.name()),
            }
        }
    }
    ExitCode::SUCCESS
}
