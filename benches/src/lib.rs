//! The benchmark catalogue shared by the criterion benches (`benches/*.rs`) and the
//! `bench` binary: every case names an op and a shape, prepares its device buffers on a
//! backend, and says how much work one run is (FLOP or bytes), so throughput and ratios to
//! PyTorch (`reference/torch_baseline.py`, same case names) come out of one table.
//!
//! Timing always ends in `synchronize()`: the device's work is measured, not the queue's.

use std::time::{Duration, Instant};

use backend_api::{
    AttentionArgs, BackendResult, BackendTranspose, BinaryOp, ComputeBackend, DType, HeadTensor,
    QuantFormat, ReduceOp, RowOp, UnaryOp,
};

/// How a case's work is counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Work {
    /// Floating-point operations per run.
    Flops(f64),
    /// Bytes moved through device memory per run (each input read once, output written once).
    Bytes(f64),
    /// A latency: only the time per run matters.
    Latency,
}

/// Sizes: `Full` for real GPUs, `Small` for the CPU oracle and software adapters (and for
/// criterion's test mode in CI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// The shapes of the performance targets (gemm to 8192, ResNet-50 at N = 32, ...).
    Full,
    /// Shapes a software device runs in well under a second.
    Small,
}

/// One run of a case on a backend.
type Run = Box<dyn Fn(&dyn ComputeBackend) -> BackendResult<()>>;

/// Buffers on a backend and the call that runs the case once.
pub struct Prepared {
    buffers: Vec<u64>,
    run: Run,
}

impl Prepared {
    /// Runs the case once (enqueues; call `synchronize` to wait).
    pub fn run(&self, b: &dyn ComputeBackend) -> BackendResult<()> {
        (self.run)(b)
    }

    /// Frees the buffers.
    pub fn free(self, b: &dyn ComputeBackend) {
        for p in self.buffers {
            let _ = b.free(p);
        }
    }
}

type Build = Box<dyn Fn(&dyn ComputeBackend) -> BackendResult<Prepared>>;

/// One benchmark.
pub struct Case {
    /// Op family: `gemm`, `batched_gemm`, `conv2d`, `attention`, `reduce`, `rows`, `unary`,
    /// `binary`, `copy`, `dispatch`, `latency`.
    pub group: &'static str,
    /// Unique name, the key shared with the PyTorch baseline (e.g. `gemm_nn_4096`).
    pub name: String,
    /// Work per run.
    pub work: Work,
    build: Build,
}

impl Case {
    fn new(group: &'static str, name: impl Into<String>, work: Work, build: Build) -> Self {
        Self {
            group,
            name: name.into(),
            work,
            build,
        }
    }

    /// Allocates and fills the case's buffers.
    pub fn prepare(&self, b: &dyn ComputeBackend) -> BackendResult<Prepared> {
        (self.build)(b)
    }
}

/// Fills `n` f32 on the device with values in [-1, 1): a 4 MiB random block uploaded once
/// and copied device-side, so preparing gigabyte buffers does not take minutes.
fn random_buffer(b: &dyn ComputeBackend, n: usize, seed: u64) -> BackendResult<u64> {
    let p = b.alloc(4 * n)?;
    let block = (1usize << 20).min(n.max(1));
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let data: Vec<u8> = (0..block)
        .flat_map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0).to_le_bytes()
        })
        .collect();
    let first = block.min(n);
    b.copy_htod(p, &data[..4 * first])?;
    let mut filled = first;
    while filled < n {
        let chunk = filled.min(n - filled);
        b.copy_dtod(p + 4 * filled as u64, p, 4 * chunk)?;
        filled += chunk;
    }
    Ok(p)
}

fn buffers(b: &dyn ComputeBackend, sizes: &[usize]) -> BackendResult<Vec<u64>> {
    let mut out = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        match random_buffer(b, n, i as u64 + 1) {
            Ok(p) => out.push(p),
            Err(e) => {
                for p in out {
                    let _ = b.free(p);
                }
                return Err(e);
            }
        }
    }
    Ok(out)
}

fn gemm_case(
    name: String,
    ta: BackendTranspose,
    tb: BackendTranspose,
    m: usize,
    n: usize,
    k: usize,
) -> Case {
    let work = Work::Flops(2.0 * m as f64 * n as f64 * k as f64);
    Case::new(
        "gemm",
        name,
        work,
        Box::new(move |b| {
            let v = buffers(b, &[m * k, k * n, m * n])?;
            let (a, bb, c) = (v[0], v[1], v[2]);
            let lda = if ta.is_transposed() { k } else { m };
            let ldb = if tb.is_transposed() { n } else { k };
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| b.gemm(ta, tb, m, n, k, 1.0, a, lda, bb, ldb, 0.0, c, m)),
            })
        }),
    )
}

fn conv_case(name: &str, input: [usize; 4], filter: [usize; 4], stride: usize, pad: usize) -> Case {
    let [n, c, h, w] = input;
    let [k, _, r, s] = filter;
    let (oh, ow) = (
        (h + 2 * pad - r) / stride + 1,
        (w + 2 * pad - s) / stride + 1,
    );
    let work = Work::Flops(2.0 * (n * k * oh * ow) as f64 * (c * r * s) as f64);
    Case::new(
        "conv2d",
        name,
        work,
        Box::new(move |b| {
            let v = buffers(b, &[n * c * h * w, k * c * r * s, n * k * oh * ow])?;
            let (x, f, y) = (v[0], v[1], v[2]);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| {
                    b.conv2d_forward(
                        x,
                        &input,
                        f,
                        &filter,
                        y,
                        &[n, k, oh, ow],
                        &[stride, stride],
                        &[pad, pad],
                    )
                }),
            })
        }),
    )
}

fn attention_case(batch: usize, heads: usize, seq: usize, d: usize, causal: bool) -> Case {
    let full = 4.0 * (batch * heads) as f64 * (seq * seq) as f64 * d as f64;
    // Causal attention does about half the work; FLOP are counted as PyTorch's SDPA
    // benchmarks count them (half of the dense count).
    let work = Work::Flops(if causal { full / 2.0 } else { full });
    let name = format!(
        "attention_b{batch}_h{heads}_s{seq}_d{d}{}",
        if causal { "_causal" } else { "" }
    );
    Case::new(
        "attention",
        name,
        work,
        Box::new(move |b| {
            let len = batch * heads * seq * d;
            let v = buffers(b, &[len, len, len, len])?;
            let (q, k, vv, o) = (v[0], v[1], v[2], v[3]);
            let scale = 1.0 / (d as f64).sqrt();
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| {
                    b.attention(q, k, vv, o, batch, heads, seq, seq, d, scale, causal)
                }),
            })
        }),
    )
}

/// `attention_ex` with grouped heads: `heads` query heads over `kv_heads` K/V heads,
/// `seq_q` queries over the first `seq_kv` rows of a `[batch, kv_heads, capacity, d]`
/// cache read in place (causal, bottom-right). Prefill shapes count FLOP; decode
/// (`seq_q == 1`) is memory-bound and counts the bytes of K, V, Q and O it must move.
#[allow(clippy::too_many_arguments)]
fn attention_gqa_case(
    batch: usize,
    heads: usize,
    kv_heads: usize,
    seq_q: usize,
    seq_kv: usize,
    capacity: usize,
    d: usize,
    causal: bool,
) -> Case {
    attention_typed_case(
        DType::F32,
        batch,
        heads,
        kv_heads,
        seq_q,
        seq_kv,
        capacity,
        d,
        causal,
    )
}

/// [`attention_gqa_case`] with Q, K, V and O stored as `dtype` (named `attention_f16_...`
/// for f16; the mask-free operands hold f16 values of about 1).
#[allow(clippy::too_many_arguments)]
fn attention_typed_case(
    dtype: DType,
    batch: usize,
    heads: usize,
    kv_heads: usize,
    seq_q: usize,
    seq_kv: usize,
    capacity: usize,
    d: usize,
    causal: bool,
) -> Case {
    let decode = seq_q == 1;
    let size = dtype.size_bytes() as f64;
    let work = if decode {
        Work::Bytes(size * (batch * (2 * kv_heads * seq_kv + 2 * heads) * d) as f64)
    } else {
        let full = 4.0 * (batch * heads) as f64 * (seq_q * seq_kv) as f64 * d as f64;
        Work::Flops(if causal { full / 2.0 } else { full })
    };
    let t = match dtype {
        DType::F32 => String::new(),
        d => format!("{d}_"),
    };
    let name = if decode {
        format!("attention_decode_{t}b{batch}_h{heads}_kv{kv_heads}_s{seq_kv}_cap{capacity}_d{d}")
    } else {
        format!(
            "attention_gqa_{t}b{batch}_h{heads}_kv{kv_heads}_s{seq_q}_d{d}{}",
            if causal { "_causal" } else { "" }
        )
    };
    Case::new(
        "attention",
        name,
        work,
        Box::new(move |b| {
            let q_len = batch * heads * seq_q * d;
            let kv_len = batch * kv_heads * capacity * d;
            let v = buffers(b, &[q_len, kv_len, kv_len, q_len])?;
            if dtype != DType::F32 {
                // f16/bf16 values of 1 in the first half of each buffer (the random f32
                // bits would read as NaNs and infinities).
                let one = match dtype {
                    DType::F16 => half::f16::ONE.to_bits(),
                    _ => half::bf16::ONE.to_bits(),
                };
                for (&p, &len) in v.iter().zip(&[q_len, kv_len, kv_len, q_len]) {
                    let bytes: Vec<u8> = (0..len).flat_map(|_| one.to_le_bytes()).collect();
                    b.copy_htod(p, &bytes)?;
                }
            }
            let args = AttentionArgs::new(
                batch,
                heads,
                kv_heads,
                seq_q,
                seq_kv,
                d,
                HeadTensor::bhsd(v[0], heads, seq_q, d),
                HeadTensor::bhsd(v[1], kv_heads, capacity, d),
                HeadTensor::bhsd(v[2], kv_heads, capacity, d),
                HeadTensor::bhsd(v[3], heads, seq_q, d),
            )
            .causal(causal)
            .dtype(dtype);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| b.attention_ex(&args)),
            })
        }),
    )
}

fn reduce_case(rows: usize, cols: usize, axis: usize) -> Case {
    let out = if axis == 1 { rows } else { cols };
    let work = Work::Bytes(4.0 * (rows * cols + out) as f64);
    let name = format!("reduce_sum_{rows}x{cols}_axis{axis}");
    Case::new(
        "reduce",
        name,
        work,
        Box::new(move |b| {
            let v = buffers(b, &[rows * cols, out])?;
            let (x, y) = (v[0], v[1]);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| b.reduce(ReduceOp::Sum, x, y, &[rows, cols], axis)),
            })
        }),
    )
}

/// A row op over `[rows, cols]` (layer norm with gamma and beta): memory-bound, read
/// once and written once.
fn rows_case(op: RowOp, rows: usize, cols: usize) -> Case {
    let work = Work::Bytes(4.0 * (2 * rows * cols) as f64);
    let name = format!("{}_{rows}x{cols}", op.name());
    Case::new(
        "rows",
        name,
        work,
        Box::new(move |b| {
            let v = buffers(b, &[rows * cols, rows * cols, cols, cols])?;
            let (x, y, g, bt) = (v[0], v[1], v[2], v[3]);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| match op {
                    RowOp::Softmax => b.softmax(x, y, rows, cols),
                    RowOp::LogSoftmax => b.log_softmax(x, y, rows, cols),
                    RowOp::LayerNorm => b.layer_norm(x, Some(g), Some(bt), y, rows, cols, 1e-5),
                    RowOp::RmsNorm => b.rms_norm(x, Some(g), y, rows, cols, 1e-6),
                }),
            })
        }),
    )
}

fn unary_case(op: UnaryOp, n: usize) -> Case {
    let name = format!("unary_{}_2^{}", op.name(), n.trailing_zeros());
    Case::new(
        "unary",
        name,
        Work::Bytes(8.0 * n as f64),
        Box::new(move |b| {
            let v = buffers(b, &[n, n])?;
            let (x, y) = (v[0], v[1]);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| b.unary(op, x, y, n)),
            })
        }),
    )
}

fn binary_case(op: BinaryOp, n: usize) -> Case {
    let name = format!("binary_{}_2^{}", op.name(), n.trailing_zeros());
    Case::new(
        "binary",
        name,
        Work::Bytes(12.0 * n as f64),
        Box::new(move |b| {
            let v = buffers(b, &[n, n, n])?;
            let (x, y, z) = (v[0], v[1], v[2]);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| b.binary(op, x, y, z, n)),
            })
        }),
    )
}

/// `n` elements of `dtype` filled from [`random_buffer`]'s f32 values by `cast`.
fn typed_buffers(b: &dyn ComputeBackend, dtype: DType, sizes: &[usize]) -> BackendResult<Vec<u64>> {
    let mut out = Vec::new();
    let mut made = || -> BackendResult<()> {
        for (i, &n) in sizes.iter().enumerate() {
            let f = random_buffer(b, n, i as u64 + 1)?;
            let p = b.alloc(dtype.size_bytes() * n);
            let cast = p.and_then(|p| {
                out.push(p);
                b.cast(f, DType::F32, p, dtype, n)
            });
            b.free(f)?;
            cast?;
        }
        Ok(())
    };
    if let Err(e) = made() {
        for p in out {
            let _ = b.free(p);
        }
        return Err(e);
    }
    Ok(out)
}

/// `unary_ex`, `binary_ex` or `reduce_ex` (sum over rows of `[n / 4096, 4096]`) on
/// 16-bit storage: `{family}_{dtype}_{op}_2^{e}`.
fn half_case(family: &'static str, dtype: DType, op: &'static str, n: usize) -> Case {
    let name = format!("{family}_{}_{op}_2^{}", dtype.name(), n.trailing_zeros());
    let (operands, bytes) = match family {
        "unary" => (2, 4 * n),
        "binary" => (3, 6 * n),
        _ => (2, 2 * n + 2 * (n / 4096)),
    };
    Case::new(
        family,
        name,
        Work::Bytes(bytes as f64),
        Box::new(move |b| {
            let sizes: Vec<usize> = (0..operands)
                .map(|i| {
                    if family == "reduce" && i == 1 {
                        n / 4096
                    } else {
                        n
                    }
                })
                .collect();
            let v = typed_buffers(b, dtype, &sizes)?;
            let p = v.clone();
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| match family {
                    "unary" => {
                        b.unary_ex(UnaryOp::from_name(op).expect("op"), dtype, p[0], p[1], n)
                    }
                    "binary" => {
                        let op = BinaryOp::from_name(op).expect("op");
                        b.binary_ex(op, dtype, p[0], p[1], p[2], n)
                    }
                    _ => {
                        let op = ReduceOp::from_name(op).expect("op");
                        b.reduce_ex(op, dtype, p[0], p[1], &[n / 4096, 4096], 1)
                    }
                }),
            })
        }),
    )
}

fn copy_case(dir: &'static str, bytes: usize) -> Case {
    let name = format!("copy_{dir}_{}", human(bytes));
    Case::new(
        "copy",
        name,
        Work::Bytes(bytes as f64),
        Box::new(move |b| {
            let p = b.alloc(bytes)?;
            let host = vec![0x5au8; bytes];
            b.copy_htod(p, &host)?;
            let run: Run = if dir == "htod" {
                Box::new(move |b| b.copy_htod(p, &host))
            } else {
                let out = std::cell::RefCell::new(vec![0u8; bytes]);
                Box::new(move |b| b.copy_dtoh(&mut out.borrow_mut(), p))
            };
            Ok(Prepared {
                buffers: vec![p],
                run,
            })
        }),
    )
}

/// `4KiB`, `1MiB`, `256MiB`.
pub fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{}MiB", bytes >> 20)
    } else {
        format!("{}KiB", bytes >> 10)
    }
}

/// Every case at `scale`, in a stable order.
pub fn catalogue(scale: Scale) -> Vec<Case> {
    use BackendTranspose::{NoTrans as N, Trans as T};
    let mut v = Vec::new();
    let full = scale == Scale::Full;
    let squares: &[usize] = if full {
        &[1024, 2048, 4096, 8192]
    } else {
        &[64, 128]
    };
    for &s in squares {
        v.push(gemm_case(format!("gemm_nn_{s}"), N, N, s, s, s));
    }
    let t = if full { 4096 } else { 128 };
    for (ta, tb, tag) in [(N, T, "nt"), (T, N, "tn"), (T, T, "tt")] {
        v.push(gemm_case(format!("gemm_{tag}_{t}"), ta, tb, t, t, t));
    }
    // A decode-style skinny product: 16 tokens through a square weight (row-major x * W).
    let (big, thin) = if full { (4096, 16) } else { (256, 4) };
    v.push(gemm_case(
        format!("gemm_skinny_{big}x{thin}x{big}"),
        N,
        N,
        big,
        thin,
        big,
    ));

    // f16 inputs, f32 accumulation and output (gemm_ex): the tensor-core candidate.
    let h = if full { 4096 } else { 64 };
    v.push(Case::new(
        "gemm",
        format!("gemm_ex_f16_{h}"),
        Work::Flops(2.0 * (h * h) as f64 * h as f64),
        Box::new(move |b| {
            let c = random_buffer(b, h * h, 3)?;
            let mut v = vec![c];
            for seed in [1u64, 2] {
                let src = match random_buffer(b, h * h, seed) {
                    Ok(p) => p,
                    Err(e) => {
                        for p in v {
                            let _ = b.free(p);
                        }
                        return Err(e);
                    }
                };
                let half = b.alloc(2 * h * h)?;
                b.cast(src, DType::F32, half, DType::F16, h * h)?;
                b.free(src)?;
                v.push(half);
            }
            let (c, a, bb) = (v[0], v[1], v[2]);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| {
                    b.gemm_ex(
                        N,
                        N,
                        h,
                        h,
                        h,
                        1.0,
                        a,
                        DType::F16,
                        h,
                        bb,
                        DType::F16,
                        h,
                        0.0,
                        c,
                        h,
                    )
                }),
            })
        }),
    ));

    let (bc, bs) = if full { (64, 512) } else { (4, 32) };
    let work = Work::Flops(2.0 * bc as f64 * (bs * bs * bs) as f64);
    v.push(Case::new(
        "batched_gemm",
        format!("batched_gemm_{bc}x{bs}"),
        work,
        Box::new(move |b| {
            let m = bs * bs;
            let bufs = buffers(b, &[bc * m, bc * m, bc * m])?;
            let (a, bb, c) = (bufs[0], bufs[1], bufs[2]);
            Ok(Prepared {
                buffers: bufs,
                run: Box::new(move |b| {
                    b.batched_gemm(
                        N, N, bs, bs, bs, 1.0, a, bs, m, bb, bs, m, 0.0, c, bs, m, bc,
                    )
                }),
            })
        }),
    ));

    if full {
        // ResNet-50 layers at batch 32.
        v.push(conv_case(
            "conv2d_resnet50_conv1_7x7s2",
            [32, 3, 224, 224],
            [64, 3, 7, 7],
            2,
            3,
        ));
        v.push(conv_case(
            "conv2d_resnet50_res2_3x3",
            [32, 64, 56, 56],
            [64, 64, 3, 3],
            1,
            1,
        ));
        v.push(conv_case(
            "conv2d_resnet50_res3_3x3",
            [32, 128, 28, 28],
            [128, 128, 3, 3],
            1,
            1,
        ));
        v.push(conv_case(
            "conv2d_resnet50_res4_3x3",
            [32, 256, 14, 14],
            [256, 256, 3, 3],
            1,
            1,
        ));
        v.push(conv_case(
            "conv2d_resnet50_res5_3x3",
            [32, 512, 7, 7],
            [512, 512, 3, 3],
            1,
            1,
        ));
        v.push(conv_case(
            "conv2d_resnet50_res2_1x1",
            [32, 256, 56, 56],
            [64, 256, 1, 1],
            1,
            0,
        ));
    } else {
        v.push(conv_case(
            "conv2d_small_3x3",
            [2, 8, 16, 16],
            [16, 8, 3, 3],
            1,
            1,
        ));
    }

    let attn: &[(usize, usize, usize, usize)] = if full {
        &[(8, 16, 1024, 64), (8, 16, 2048, 128), (8, 16, 4096, 128)]
    } else {
        &[(1, 2, 64, 32)]
    };
    for &(bt, h, s, d) in attn {
        for causal in [false, true] {
            v.push(attention_case(bt, h, s, d, causal));
        }
    }
    // Grouped-query attention (Llama 3 8B's 32 query heads over 8 K/V heads): prefill,
    // and one decode step over 4096 cached rows of a cache with room for 8192.
    let (gqa, decode): (&[_], &[_]) = if full {
        (
            &[(8, 32, 8, 2048, 128)],
            &[(1, 32, 8, 4096, 8192, 128), (8, 32, 8, 4096, 8192, 128)],
        )
    } else {
        (&[(1, 4, 2, 64, 32)], &[(1, 4, 2, 64, 96, 32)])
    };
    for &(bt, h, kv, s, d) in gqa {
        for causal in [false, true] {
            v.push(attention_gqa_case(bt, h, kv, s, s, s, d, causal));
        }
    }
    for &(bt, h, kv, s, cap, d) in decode {
        v.push(attention_gqa_case(bt, h, kv, 1, s, cap, d, true));
    }
    // The same GQA prefill and the batch-1 decode on f16 storage (SDPA f16 in torch).
    for &(bt, h, kv, s, d) in gqa {
        v.push(attention_typed_case(
            DType::F16,
            bt,
            h,
            kv,
            s,
            s,
            s,
            d,
            true,
        ));
    }
    let &(bt, h, kv, s, cap, d) = &decode[0];
    v.push(attention_typed_case(
        DType::F16,
        bt,
        h,
        kv,
        1,
        s,
        cap,
        d,
        true,
    ));

    let (rows, cols) = if full { (1 << 14, 1 << 14) } else { (256, 256) };
    v.push(reduce_case(rows, cols, 1));
    v.push(reduce_case(rows, cols, 0));
    if full {
        v.push(reduce_case(1 << 12, 1 << 12, 1));
    }
    // Row ops at model shapes: attention scores (softmax) and activations (norms).
    let (r, c) = if full { (1 << 14, 4096) } else { (64, 256) };
    for op in [RowOp::Softmax, RowOp::LayerNorm, RowOp::RmsNorm] {
        v.push(rows_case(op, r, c));
        if full {
            // 2^28 elements, the size the targets are stated at.
            v.push(rows_case(op, 1 << 16, 4096));
        }
    }

    let sizes: &[u32] = if full { &[24, 26, 28] } else { &[14] };
    for &e in sizes {
        v.push(unary_case(UnaryOp::Relu, 1 << e));
        v.push(binary_case(BinaryOp::Add, 1 << e));
    }
    v.push(unary_case(
        UnaryOp::Gelu,
        if full { 1 << 28 } else { 1 << 14 },
    ));
    v.push(unary_case(
        UnaryOp::Exp,
        if full { 1 << 28 } else { 1 << 14 },
    ));
    // 16-bit storage at 2^28 (the size) and the same in bf16.
    let n16 = if full { 1 << 28 } else { 1 << 14 };
    for dtype in [DType::F16, DType::BF16] {
        v.push(half_case("unary", dtype, "relu", n16));
        v.push(half_case("binary", dtype, "add", n16));
        v.push(half_case("reduce", dtype, "sum", n16));
    }
    v.push(half_case("unary", DType::F16, "gelu", n16));

    let copies: &[usize] = if full {
        &[4 << 10, 1 << 20, 16 << 20, 256 << 20]
    } else {
        &[4 << 10, 1 << 20]
    };
    for &bytes in copies {
        v.push(copy_case("htod", bytes));
        v.push(copy_case("dtoh", bytes));
    }

    // The cost of one tiny op when many are batched, and of one op followed by a 4-byte
    // readback (a full round trip).
    v.push(Case::new(
        "dispatch",
        "dispatch_tiny_unary",
        Work::Latency,
        Box::new(|b| {
            let v = buffers(b, &[256, 256])?;
            let (x, y) = (v[0], v[1]);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| b.unary(UnaryOp::Neg, x, y, 256)),
            })
        }),
    ));
    v.push(Case::new(
        "latency",
        "latency_op_plus_4byte_readback",
        Work::Latency,
        Box::new(|b| {
            let v = buffers(b, &[256, 256])?;
            let (x, y) = (v[0], v[1]);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| {
                    b.unary(UnaryOp::Neg, x, y, 256)?;
                    let mut out = [0u8; 4];
                    b.copy_dtoh(&mut out, y)
                }),
            })
        }),
    ));
    // A frame of 16 slices allocated and reset, as `memory::FrameArena` does it: one
    // alias over the backing allocation, 16 aliases into it, one retire. No device work.
    v.push(Case::new(
        "latency",
        "memory_frame_16_slices_alloc_reset",
        Work::Latency,
        Box::new(|b| {
            let v = buffers(b, &[16 * 256])?;
            let backing = v[0];
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| {
                    let root = b.alias(backing, 16 * 256 * 4)?;
                    for i in 0..16u64 {
                        b.alias(root + 1024 * i, 1024)?;
                    }
                    b.retire(root, backend_api::Retired::FrameReset)
                }),
            })
        }),
    ));
    // Eight small outputs of one step read together (one submission and one wait on
    // WebGPU), against the single read above.
    v.push(Case::new(
        "latency",
        "latency_op_plus_8x4byte_readback_many",
        Work::Latency,
        Box::new(|b| {
            let v = buffers(b, &[256, 256])?;
            let (x, y) = (v[0], v[1]);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| {
                    b.unary(UnaryOp::Neg, x, y, 256)?;
                    let mut outs = [[0u8; 4]; 8];
                    let mut reads: Vec<(u64, &mut [u8])> = outs
                        .iter_mut()
                        .enumerate()
                        .map(|(i, o)| (y + 128 * i as u64, &mut o[..]))
                        .collect();
                    b.copy_dtoh_many(&mut reads)
                }),
            })
        }),
    ));
    // Broadcasting at model shapes: a bias over every row, and a column times a row.
    let (r, c) = if full { (1 << 14, 4096) } else { (64, 256) };
    v.push(broadcast_case(
        DType::F32,
        "add_bias",
        BinaryOp::Add,
        &[r, c],
        &[c],
        &[r, c],
    ));
    v.push(broadcast_case(
        DType::F32,
        "mul_outer",
        BinaryOp::Mul,
        &[c, 1],
        &[1, c],
        &[c, c],
    ));
    // The bias add on f16 storage (a model's activations in half precision).
    v.push(broadcast_case(
        DType::F16,
        "add_bias",
        BinaryOp::Add,
        &[r, c],
        &[c],
        &[r, c],
    ));
    // MobileNetV2's depthwise 3x3 layers at batch 32 (with their bias), and one grouped,
    // dilated conv.
    if full {
        v.push(depthwise_case(
            "mbv2_dw_96x112x112_s2",
            [32, 96, 112, 112],
            2,
        ));
        v.push(depthwise_case("mbv2_dw_144x56x56", [32, 144, 56, 56], 1));
        v.push(depthwise_case("mbv2_dw_384x14x14", [32, 384, 14, 14], 1));
    } else {
        v.push(depthwise_case("dw_8x16x16", [2, 8, 16, 16], 1));
    }
    // Quantized weights: a 4096 x 4096 projection, one token (decode: memory-bound on
    // the weights) and 512 (prefill).
    let (qm, qk) = if full { (4096, 4096) } else { (256, 256) };
    for format in [QuantFormat::Q4_0, QuantFormat::Q8_0] {
        for n in [1, 16, if full { 512 } else { 32 }] {
            v.push(gemm_q_case(format, qm, n, qk));
        }
    }
    // The decode's scaling with the rows (no PyTorch counterpart): a fixed cost per call
    // shows as a flat time, a kernel limited by the weights' bytes as a linear one.
    if full {
        for rows in [64, 1024, 2048, 16_384] {
            v.push(gemm_q_case(QuantFormat::Q4_0, rows, 1, qk));
        }
        // And with the columns (a batch of decodes, a short prompt): where the decode
        // kernels, reading each weight block once per tile of columns, give way to the
        // prefill path (the weights dequantized once, then the f32 gemm).
        for n in [4, 8, 32, 64] {
            v.push(gemm_q_case(QuantFormat::Q4_0, qm, n, qk));
        }
    }
    // An embedding lookup: Llama 3's vocabulary and width, 512 tokens.
    let (rows, cols, n) = if full {
        (128_256, 4096, 512)
    } else {
        (1000, 64, 16)
    };
    v.push(gather_case(DType::F32, rows, cols, n));
    v.push(gather_case(DType::F16, rows, cols, n));
    v
}

/// A depthwise 3x3 `conv2d_forward_ex` ("same" padding, bias) over `input`: memory-bound,
/// so its work is the bytes of input, output, filter and bias.
fn depthwise_case(tag: &str, input: [usize; 4], stride: usize) -> Case {
    let [n, c, h, w] = input;
    let (oh, ow) = ((h + 2 - 3) / stride + 1, (w + 2 - 3) / stride + 1);
    let bytes = 4 * (n * c * h * w + n * c * oh * ow + c * 9 + c);
    Case::new(
        "conv2d",
        format!("conv2d_{tag}"),
        Work::Bytes(bytes as f64),
        Box::new(move |b| {
            let v = buffers(b, &[n * c * h * w, c * 9, c, n * c * oh * ow])?;
            let (x, f, bias, y) = (v[0], v[1], v[2], v[3]);
            let args = backend_api::Conv2dArgs::new(x, input, f, [c, 1, 3, 3], y, [n, c, oh, ow])
                .stride([stride, stride])
                .padding([1, 1, 1, 1])
                .groups(c)
                .bias(bias);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| b.conv2d_forward_ex(&args)),
            })
        }),
    )
}

/// `binary_broadcast` over the given shapes on `dtype` storage (`binary_broadcast_ex`
/// for f16/bf16, whose names carry the type: `broadcast_f16_add_bias_...`):
/// memory-bound, each input read once (the broadcast one from cache) and the output
/// written once.
fn broadcast_case(
    dtype: DType,
    tag: &str,
    op: BinaryOp,
    a_shape: &[usize],
    b_shape: &[usize],
    out_shape: &[usize],
) -> Case {
    let size = dtype.size_bytes();
    let count = |s: &[usize]| s.iter().product::<usize>();
    let (na, nb, n) = (count(a_shape), count(b_shape), count(out_shape));
    let dims = |s: &[usize]| {
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x")
    };
    let ty = match dtype {
        DType::F32 => String::new(),
        d => format!("{d}_"),
    };
    let name = format!("broadcast_{ty}{tag}_{}", dims(out_shape));
    let (a_shape, b_shape, out_shape) = (a_shape.to_vec(), b_shape.to_vec(), out_shape.to_vec());
    let words = move |e: usize| (e * size).div_ceil(4);
    Case::new(
        "broadcast",
        name,
        Work::Bytes((size * (na + nb + n)) as f64),
        Box::new(move |b| {
            let v = buffers(b, &[words(na), words(nb), words(n)])?;
            let (x, y, z) = (v[0], v[1], v[2]);
            let (a_shape, b_shape, out_shape) =
                (a_shape.clone(), b_shape.clone(), out_shape.clone());
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| match dtype {
                    DType::F32 => b.binary_broadcast(op, x, &a_shape, y, &b_shape, z, &out_shape),
                    _ => b.binary_broadcast_ex(op, dtype, x, &a_shape, y, &b_shape, z, &out_shape),
                }),
            })
        }),
    )
}

/// `gemm_q` of `m x k` weights in `format` by `n` columns of f32 activations. Decode
/// (`n == 1`) counts the bytes of the weights (the reference is a device copy of as many
/// bytes); prefill counts flops.
fn gemm_q_case(format: QuantFormat, m: usize, n: usize, k: usize) -> Case {
    let a_bytes = m * k / QuantFormat::BLOCK * format.block_bytes();
    let work = if n == 1 {
        Work::Bytes(a_bytes as f64)
    } else {
        Work::Flops(2.0 * (m * n * k) as f64)
    };
    Case::new(
        "gemm_q",
        format!("gemm_q_{}_{m}x{k}_n{n}", format.name()),
        work,
        Box::new(move |b| {
            let v = buffers(b, &[a_bytes.div_ceil(4), k * n, m * n])?;
            // Valid blocks: a scale of 1/16 and random quants.
            let mut s = 0x2545_f491_4f6c_dd1du64;
            let mut host: Vec<u8> = (0..a_bytes)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 32) as u8
                })
                .collect();
            for block in host.chunks_exact_mut(format.block_bytes()) {
                block[..2].copy_from_slice(&half::f16::from_f32(0.0625).to_le_bytes());
            }
            b.copy_htod(v[0], &host)?;
            let (a, x, c) = (v[0], v[1], v[2]);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| {
                    b.gemm_q(format, m, n, k, 1.0, a, x, DType::F32, k, 0.0, c, m)
                }),
            })
        }),
    )
}

/// `gather` of `n` rows of a `rows x cols` table of `dtype` by indices spread over the
/// table (`gather_ex` for f16/bf16, named `gather_f16_...`).
fn gather_case(dtype: DType, rows: usize, cols: usize, n: usize) -> Case {
    let ty = match dtype {
        DType::F32 => String::new(),
        d => format!("{d}_"),
    };
    let name = format!("gather_{ty}{rows}x{cols}_n{n}");
    let size = dtype.size_bytes();
    let words = move |e: usize| (e * size).div_ceil(4);
    Case::new(
        "gather",
        name,
        Work::Bytes((2 * size * n * cols + 4 * n) as f64),
        Box::new(move |b| {
            let v = buffers(b, &[words(rows * cols), n, words(n * cols)])?;
            let indices: Vec<u8> = (0..n)
                .flat_map(|i| ((i * 7919 % rows) as u32).to_le_bytes())
                .collect();
            b.copy_htod(v[1], &indices)?;
            let (t, idx, out) = (v[0], v[1], v[2]);
            Ok(Prepared {
                buffers: v,
                run: Box::new(move |b| match dtype {
                    DType::F32 => b.gather(t, rows, cols, idx, n, out),
                    _ => b.gather_ex(dtype, t, rows, cols, idx, n, out),
                }),
            })
        }),
    )
}

/// What a measurement's clock covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The runs and the `synchronize` that ends them: what a caller waits for.
    Completion,
    /// The host's part only: recording and submitting the runs. The `synchronize` comes
    /// after the clock stops. Where this is close to `Completion`, the host, not the
    /// device, sets the pace.
    Host,
}

/// Times `runs` back-to-back runs ending in one `synchronize`.
pub fn time_runs(b: &dyn ComputeBackend, p: &Prepared, runs: u32) -> BackendResult<Duration> {
    time_runs_by(b, p, runs, Clock::Completion)
}

/// Times `runs` back-to-back runs and one `synchronize`; `clock` says whether the wait
/// is inside the time.
pub fn time_runs_by(
    b: &dyn ComputeBackend,
    p: &Prepared,
    runs: u32,
    clock: Clock,
) -> BackendResult<Duration> {
    let start = Instant::now();
    for _ in 0..runs {
        p.run(b)?;
    }
    let host = start.elapsed();
    b.synchronize()?;
    Ok(match clock {
        Clock::Completion => start.elapsed(),
        Clock::Host => host,
    })
}

/// Seconds per run: warm up, then grow the batch until it takes `target`, and keep the
/// best of `repeats` batches.
pub fn measure(
    b: &dyn ComputeBackend,
    p: &Prepared,
    target: Duration,
    repeats: u32,
) -> BackendResult<f64> {
    measure_by(b, p, target, repeats, Clock::Completion)
}

/// `measure` with the clock chosen (`Clock::Host`: the host's part of each run).
pub fn measure_by(
    b: &dyn ComputeBackend,
    p: &Prepared,
    target: Duration,
    repeats: u32,
    clock: Clock,
) -> BackendResult<f64> {
    time_runs(b, p, 2)?;
    let mut runs = 1u32;
    loop {
        let t = time_runs_by(b, p, runs, clock)?;
        if t >= target / 4 || runs >= 1 << 16 {
            break;
        }
        runs *= 2;
    }
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let t = time_runs_by(b, p, runs, clock)?.as_secs_f64() / f64::from(runs);
        best = best.min(t);
    }
    Ok(best)
}

/// Throughput of `work` done in `seconds`, in GFLOP/s or GB/s (`None` for latencies).
pub fn throughput(work: Work, seconds: f64) -> Option<f64> {
    match work {
        Work::Flops(f) | Work::Bytes(f) => Some(f / seconds / 1e9),
        Work::Latency => None,
    }
}

/// An initialised backend and the scale it can afford.
pub struct Opened {
    /// The backend.
    pub backend: Box<dyn ComputeBackend>,
    /// Full shapes on hardware GPUs, small ones on the CPU oracle and software adapters.
    pub scale: Scale,
}

/// Opens `cpu` or `webgpu` (on the adapter whose name or backend contains `adapter`).
pub fn open(backend: &str, adapter: Option<&str>) -> BackendResult<Opened> {
    match backend {
        "cpu" => {
            let mut b = backend_cpu::CpuBackend::new();
            b.init()?;
            Ok(Opened {
                backend: Box::new(b),
                scale: Scale::Small,
            })
        }
        "fast-cpu" => {
            let mut b = backend_fast_cpu::FastCpuBackend::new();
            b.init()?;
            Ok(Opened {
                backend: Box::new(b),
                scale: Scale::Full,
            })
        }
        "webgpu" => {
            let env = backend_webgpu::WebGpuOptions::from_env().expect("the environment");
            let mut b =
                backend_webgpu::WebGpuBackend::with_options(backend_webgpu::WebGpuOptions {
                    adapter: adapter.map(str::to_string).or(env.adapter.clone()),
                    ..env
                });
            b.init()?;
            let software = b.adapter().is_some_and(|a| a.is_software());
            println!(
                "f16 conversions: {}",
                if b.hardware_f16_conversions() {
                    "the adapter's (probed exact)"
                } else {
                    "bit arithmetic"
                }
            );
            Ok(Opened {
                backend: Box::new(b),
                scale: if software { Scale::Small } else { Scale::Full },
            })
        }
        other => Err(backend_api::BackendError::InvalidArgument(format!(
            "unknown backend {other:?}: use cpu, fast-cpu or webgpu"
        ))),
    }
}
