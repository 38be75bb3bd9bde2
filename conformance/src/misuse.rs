//! Every bad-input class of the contract: each must return an error naming the op (and,
//! for ranges, the operand), never panic, never write, and leave the backend usable.

use backend_api::{
    AttentionArgs, AttentionMask, BackendError, BackendTranspose, BinaryOp, Buffer, ComputeBackend,
    ComputeBackendExt, Conv2dArgs, DType, GemmArgs, HeadTensor, MapMode, QuantFormat, ReduceOp,
    Retired, RowOp, UnaryOp, UnaryParamOp,
};

use crate::Check;
use crate::data::{Rng, to_bytes};
use crate::report::CheckReport;

use BackendTranspose::{NoTrans as N, Trans as T};

/// A valid depthwise 3x3 call over `[1, 4, 4, 4]` with "same" padding: input at `x`,
/// filter `[4, 1, 3, 3]` at `f`, output `[1, 4, 4, 4]` at `y`.
fn dw(x: u64, f: u64, y: u64) -> Conv2dArgs {
    Conv2dArgs::new(x, [1, 4, 4, 4], f, [4, 1, 3, 3], y, [1, 4, 4, 4])
        .padding([1, 1, 1, 1])
        .groups(4)
}

/// The error a misuse must produce.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// `InvalidArgument` whose message contains every listed word.
    Invalid(&'static [&'static str]),
    /// `OutOfMemory`.
    OutOfMemory,
    /// `InvalidArgument` as above, or `Unsupported` from a backend without the method.
    InvalidOrUnsupported(&'static [&'static str]),
}

/// Runs `call`, turning a panic into an error message (see [`crate::catch_panic`]).
fn guarded<R>(call: impl FnOnce() -> R) -> Result<R, String> {
    crate::catch_panic(call).map_err(|msg| format!("panicked: {msg}"))
}

fn judge(
    name: &str,
    want: Want,
    got: Result<Result<(), BackendError>, String>,
) -> Result<(), String> {
    let got = got.map_err(|p| format!("{name}: {p}"))?;
    let words_ok = |m: &str, words: &[&str]| words.iter().all(|w| m.contains(w));
    match (want, got) {
        (
            Want::Invalid(w) | Want::InvalidOrUnsupported(w),
            Err(BackendError::InvalidArgument(m)),
        ) => {
            if words_ok(&m, w) {
                Ok(())
            } else {
                Err(format!(
                    "{name}: InvalidArgument message {m:?} should mention {w:?}"
                ))
            }
        }
        (Want::InvalidOrUnsupported(_), Err(BackendError::Unsupported(_))) => Ok(()),
        (Want::OutOfMemory, Err(BackendError::OutOfMemory(m))) => {
            if m.contains("bytes") {
                Ok(())
            } else {
                Err(format!(
                    "{name}: OutOfMemory message {m:?} does not say how many bytes were asked"
                ))
            }
        }
        (_, Ok(())) => Err(format!(
            "{name}: succeeded, but the contract requires an error"
        )),
        (_, Err(e)) => Err(format!("{name}: wrong error kind: {e}")),
    }
}

/// Allocations with known contents that every misuse call points at, and that must be
/// intact at the end.
struct Sentinels {
    /// 1024 f32.
    a: u64,
    /// 1024 f32.
    b: u64,
    /// 64 f32.
    c: u64,
    contents: Vec<(u64, Vec<u8>)>,
}

fn setup(backend: &dyn ComputeBackend) -> Result<Sentinels, BackendError> {
    let mut rng = Rng::new(99);
    let mut contents = Vec::new();
    let mut make = |n: usize| -> Result<u64, BackendError> {
        let bytes = to_bytes(&rng.fill(n, -4.0, 4.0));
        let p = backend.alloc(bytes.len())?;
        backend.copy_htod(p, &bytes)?;
        contents.push((p, bytes));
        Ok(p)
    };
    let (a, b, c) = (make(1024)?, make(1024)?, make(64)?);
    Ok(Sentinels { a, b, c, contents })
}

pub(crate) async fn run(backend: &dyn ComputeBackend) -> CheckReport {
    let mut report = CheckReport::new(Check::Misuse);
    let s = match setup(backend) {
        Ok(s) => s,
        Err(e) => {
            report.fail(format!("setting up the sentinel allocations failed: {e}"));
            return report;
        }
    };
    let (a, bb, c) = (s.a, s.b, s.c);
    // A freed allocation, for use-after-free and double free.
    let freed = backend.alloc(256).and_then(|p| backend.free(p).map(|()| p));
    let freed = match freed {
        Ok(p) => p,
        Err(e) => {
            report.fail(format!("alloc/free of a scratch allocation failed: {e}"));
            return report;
        }
    };
    // A live alias of the first 64 bytes of `a`, and a retired one, for the alias cases.
    let aliases = backend.alias(a, 64).and_then(|live| {
        let stale = backend.alias(a + 64, 64)?;
        backend.retire(stale, Retired::FrameReset)?;
        Ok((live, stale))
    });
    let (live, stale) = match aliases {
        Ok(pair) => pair,
        Err(e) => {
            report.fail(format!("alias/retire of a sentinel failed: {e}"));
            return report;
        }
    };
    let huge = usize::MAX / 2;
    let b = backend;
    let ex = |q: u64, kv: u64, o: u64| {
        AttentionArgs::new(
            1,
            4,
            2,
            2,
            4,
            4,
            HeadTensor::bhsd(q, 4, 2, 4),
            HeadTensor::bhsd(kv, 2, 4, 4),
            HeadTensor::bhsd(kv + 4 * 64, 2, 4, 4),
            HeadTensor::bhsd(o, 4, 2, 4),
        )
    };
    type Call<'a> = Box<dyn FnOnce() -> Result<(), BackendError> + 'a>;
    let cases: Vec<(&str, Want, Call<'_>)> = vec![
        // free
        ("free(0)", Want::Invalid(&["free"]), Box::new(|| b.free(0))),
        (
            "free(unknown)",
            Want::Invalid(&["free"]),
            Box::new(|| b.free(0xdead_beef_0000)),
        ),
        (
            "free(interior)",
            Want::Invalid(&["free", "0x"]),
            Box::new(|| b.free(a + 4)),
        ),
        (
            "double free",
            Want::Invalid(&["free", "double free"]),
            Box::new(|| b.free(freed)),
        ),
        (
            "use after free",
            Want::Invalid(&["unary", "input", "was freed"]),
            Box::new(|| b.unary(UnaryOp::Neg, freed, c, 4)),
        ),
        // gemm ranges, alignment, leading dims, aliasing, overflow
        (
            "gemm C out of range",
            Want::Invalid(&["gemm", "C", "0x"]),
            Box::new(|| b.gemm(N, N, 9, 9, 8, 1.0, a, 9, bb, 8, 0.0, c, 9)),
        ),
        (
            "gemm A out of range",
            Want::Invalid(&["gemm", "A", "0x"]),
            Box::new(|| b.gemm(N, N, 4, 4, 4, 1.0, c + 4 * 60, 4, bb, 4, 0.0, a, 4)),
        ),
        (
            "gemm B out of range",
            Want::Invalid(&["gemm", "B", "0x"]),
            Box::new(|| b.gemm(N, N, 4, 4, 64, 1.0, a, 4, c, 64, 0.0, bb, 4)),
        ),
        (
            "gemm A misaligned",
            Want::Invalid(&["gemm", "A"]),
            Box::new(|| b.gemm(N, N, 2, 2, 2, 1.0, a + 2, 2, bb, 2, 0.0, c, 2)),
        ),
        (
            "gemm C misaligned",
            Want::Invalid(&["gemm", "C"]),
            Box::new(|| b.gemm(N, N, 2, 2, 2, 1.0, a, 2, bb, 2, 0.0, c + 1, 2)),
        ),
        (
            "gemm lda < m",
            Want::Invalid(&["gemm", "lda"]),
            Box::new(|| b.gemm(N, N, 4, 2, 2, 1.0, a, 3, bb, 2, 0.0, c, 4)),
        ),
        (
            "gemm lda < k (A transposed)",
            Want::Invalid(&["gemm", "lda"]),
            Box::new(|| b.gemm(T, N, 2, 2, 4, 1.0, a, 2, bb, 4, 0.0, c, 2)),
        ),
        (
            "gemm ldb < k",
            Want::Invalid(&["gemm", "ldb"]),
            Box::new(|| b.gemm(N, N, 2, 2, 4, 1.0, a, 2, bb, 3, 0.0, c, 2)),
        ),
        (
            "gemm ldc < m",
            Want::Invalid(&["gemm", "ldc"]),
            Box::new(|| b.gemm(N, N, 4, 2, 2, 1.0, a, 4, bb, 2, 0.0, c, 3)),
        ),
        (
            "gemm C aliases A",
            Want::Invalid(&["gemm", "C"]),
            Box::new(|| b.gemm(N, N, 4, 4, 4, 1.0, a, 4, bb, 4, 0.0, a + 32, 4)),
        ),
        (
            "gemm size overflow",
            Want::Invalid(&["gemm"]),
            Box::new(|| b.gemm(N, N, huge, huge, 2, 1.0, a, huge, bb, 2, 0.0, c, huge)),
        ),
        // batched_gemm
        (
            "batched_gemm overlapping C",
            Want::Invalid(&["batched_gemm", "stride_c"]),
            Box::new(|| b.batched_gemm(N, N, 4, 4, 4, 1.0, a, 4, 16, bb, 4, 16, 0.0, c, 4, 8, 2)),
        ),
        (
            "batched_gemm last batch out of range",
            Want::Invalid(&["batched_gemm", "C", "0x"]),
            Box::new(|| b.batched_gemm(N, N, 4, 4, 4, 1.0, a, 4, 16, bb, 4, 16, 0.0, c, 4, 16, 5)),
        ),
        // conv2d
        (
            "conv2d wrong output shape",
            Want::Invalid(&["conv2d", "[1, 2, 3, 3]"]),
            Box::new(|| {
                b.conv2d_forward(
                    a,
                    &[1, 1, 5, 5],
                    bb,
                    &[2, 1, 3, 3],
                    c,
                    &[1, 2, 5, 5],
                    &[1, 1],
                    &[0, 0],
                )
            }),
        ),
        (
            "conv2d wrong rank",
            Want::Invalid(&["conv2d", "input_shape"]),
            Box::new(|| {
                b.conv2d_forward(
                    a,
                    &[1, 5, 5],
                    bb,
                    &[2, 1, 3, 3],
                    c,
                    &[1, 2, 3, 3],
                    &[1, 1],
                    &[0, 0],
                )
            }),
        ),
        (
            "conv2d channel mismatch",
            Want::Invalid(&["conv2d", "channels"]),
            Box::new(|| {
                b.conv2d_forward(
                    a,
                    &[1, 2, 5, 5],
                    bb,
                    &[2, 1, 3, 3],
                    c,
                    &[1, 2, 3, 3],
                    &[1, 1],
                    &[0, 0],
                )
            }),
        ),
        (
            "conv2d zero stride",
            Want::Invalid(&["conv2d", "stride"]),
            Box::new(|| {
                b.conv2d_forward(
                    a,
                    &[1, 1, 5, 5],
                    bb,
                    &[2, 1, 3, 3],
                    c,
                    &[1, 2, 3, 3],
                    &[0, 1],
                    &[0, 0],
                )
            }),
        ),
        (
            "conv2d filter larger than input",
            Want::Invalid(&["conv2d"]),
            Box::new(|| {
                b.conv2d_forward(
                    a,
                    &[1, 1, 2, 2],
                    bb,
                    &[2, 1, 3, 3],
                    c,
                    &[1, 2, 0, 0],
                    &[1, 1],
                    &[0, 0],
                )
            }),
        ),
        (
            "conv2d output out of range",
            Want::Invalid(&["conv2d", "output", "0x"]),
            Box::new(|| {
                b.conv2d_forward(
                    a,
                    &[1, 1, 12, 12],
                    bb,
                    &[1, 1, 3, 3],
                    c,
                    &[1, 1, 10, 10],
                    &[1, 1],
                    &[0, 0],
                )
            }),
        ),
        // attention
        (
            "attention O out of range",
            Want::Invalid(&["attention", "O", "0x"]),
            Box::new(|| b.attention(a, bb, bb, c, 1, 1, 16, 16, 8, 0.35, false)),
        ),
        (
            "attention K out of range",
            Want::Invalid(&["attention", "K", "0x"]),
            Box::new(|| b.attention(bb, c, a, a + 4 * 512, 1, 1, 4, 16, 8, 0.35, false)),
        ),
        (
            "attention O aliases Q",
            Want::Invalid(&["attention", "O"]),
            Box::new(|| b.attention(a, bb, bb, a + 16, 1, 1, 4, 4, 8, 0.35, true)),
        ),
        // attention_ex: 4 query heads over 2 KV heads, 2 queries, 4 keys of 4 elements;
        // Q in a, K and V in b, O in c (all in range unless a case says otherwise).
        (
            "attention_ex heads not a multiple of kv_heads",
            Want::InvalidOrUnsupported(&["attention_ex", "kv_heads 3"]),
            Box::new(|| {
                let mut x = ex(a, bb, c);
                x.kv_heads = 3;
                b.attention_ex(&x)
            }),
        ),
        (
            "attention_ex mask that does not broadcast",
            Want::InvalidOrUnsupported(&[
                "attention_ex",
                "mask shape [1, 2, 2, 4]",
                "[1, 4, 2, 4]",
            ]),
            Box::new(|| {
                b.attention_ex(&ex(a, bb, c).mask(AttentionMask {
                    ptr: a + 4 * 512,
                    batch: 1,
                    heads: 2,
                }))
            }),
        ),
        (
            "attention_ex mask out of range",
            Want::InvalidOrUnsupported(&["attention_ex", "mask", "0x"]),
            Box::new(|| b.attention_ex(&ex(a, bb, c).mask(AttentionMask::shared(c + 4 * 60)))),
        ),
        (
            "attention_ex O overlaps the mask",
            Want::InvalidOrUnsupported(&["attention_ex", "overlaps input mask"]),
            Box::new(|| b.attention_ex(&ex(a, bb, c).mask(AttentionMask::shared(c)))),
        ),
        (
            "attention_ex KV cache past its allocation",
            Want::InvalidOrUnsupported(&["attention_ex", "K", "0x"]),
            Box::new(|| {
                // A cache of capacity 4096 rows per head: the second head is far past b.
                let mut x = ex(a, bb, c);
                x.k = HeadTensor::bhsd(bb, 2, 4096, 4);
                b.attention_ex(&x)
            }),
        ),
        (
            "attention_ex output rows overlapping",
            Want::InvalidOrUnsupported(&["attention_ex", "O's strides", "overlap"]),
            Box::new(|| {
                let mut x = ex(a, bb, c);
                x.o.head_stride = 0;
                b.attention_ex(&x)
            }),
        ),
        (
            "attention_ex row stride below the row",
            Want::InvalidOrUnsupported(&["attention_ex", "V's row stride 2"]),
            Box::new(|| {
                let mut x = ex(a, bb, c);
                x.v.row_stride = 2;
                b.attention_ex(&x)
            }),
        ),
        (
            // A 64-bit usize overflows the extent; a 32-bit one (wasm32) reaches past the
            // sentinels and over O: either way Q is named.
            "attention_ex Q's extent past the address space",
            Want::InvalidOrUnsupported(&["attention_ex", "Q"]),
            Box::new(|| {
                let mut x = ex(a, bb, c);
                x.q.head_stride = usize::MAX / 2;
                b.attention_ex(&x)
            }),
        ),
        (
            "attention_ex soft cap NaN",
            Want::InvalidOrUnsupported(&["attention_ex", "softcap NaN"]),
            Box::new(|| b.attention_ex(&ex(a, bb, c).softcap(f64::NAN))),
        ),
        (
            "attention_ex window without causal",
            Want::InvalidOrUnsupported(&["attention_ex", "window 2 needs causal"]),
            Box::new(|| {
                let mut x = ex(a, bb, c).window(2);
                x.causal = false;
                b.attention_ex(&x)
            }),
        ),
        (
            "attention_ex window 0",
            Want::InvalidOrUnsupported(&["attention_ex", "window 0"]),
            Box::new(|| b.attention_ex(&ex(a, bb, c).window(0))),
        ),
        // reduce
        (
            "reduce axis out of range",
            Want::Invalid(&["reduce", "axis"]),
            Box::new(|| b.reduce(ReduceOp::Sum, a, c, &[4, 4], 2)),
        ),
        (
            "reduce empty shape",
            Want::Invalid(&["reduce", "shape"]),
            Box::new(|| b.reduce(ReduceOp::Sum, a, c, &[], 0)),
        ),
        (
            "reduce output out of range",
            Want::Invalid(&["reduce", "output", "0x"]),
            Box::new(|| b.reduce(ReduceOp::Max, a, c, &[128, 2], 1)),
        ),
        (
            "reduce size overflow",
            Want::Invalid(&["reduce"]),
            Box::new(|| b.reduce(ReduceOp::Sum, a, c, &[huge, huge, 2], 2)),
        ),
        // unary / binary
        (
            "unary past the end",
            Want::Invalid(&["unary", "input", "0x"]),
            Box::new(|| b.unary(UnaryOp::Exp, c, a, 65)),
        ),
        (
            "unary misaligned",
            Want::Invalid(&["unary", "input"]),
            Box::new(|| b.unary(UnaryOp::Exp, a + 2, bb, 4)),
        ),
        (
            "unary partial overlap",
            Want::Invalid(&["unary", "overlap"]),
            Box::new(|| b.unary(UnaryOp::Neg, a, a + 4, 16)),
        ),
        (
            "unary size overflow",
            Want::Invalid(&["unary"]),
            Box::new(|| b.unary(UnaryOp::Neg, a, bb, huge)),
        ),
        (
            "unary_param past the end",
            Want::Invalid(&["unary_param", "input", "0x"]),
            Box::new(|| b.unary_param(UnaryParamOp::Clip, -1.0, 1.0, c, a, 65)),
        ),
        (
            "unary_param partial overlap",
            Want::Invalid(&["unary_param", "overlap"]),
            Box::new(|| b.unary_param(UnaryParamOp::Elu, 1.0, 0.0, a, a + 4, 16)),
        ),
        (
            "unary_param NaN parameter",
            Want::Invalid(&["unary_param", "leaky_relu", "parameter a", "finite"]),
            Box::new(|| b.unary_param(UnaryParamOp::LeakyRelu, f32::NAN, 0.0, a, bb, 4)),
        ),
        (
            "unary_param infinite parameter",
            Want::Invalid(&["unary_param", "selu", "parameter b", "finite"]),
            Box::new(|| b.unary_param(UnaryParamOp::Selu, 1.67, f32::INFINITY, a, bb, 4)),
        ),
        (
            "unary_param celu alpha 0",
            Want::Invalid(&["unary_param", "celu", "non-zero"]),
            Box::new(|| b.unary_param(UnaryParamOp::Celu, 0.0, 0.0, a, bb, 4)),
        ),
        (
            "unary_param clip bounds reversed",
            Want::Invalid(&["unary_param", "clip", "a <= b"]),
            Box::new(|| b.unary_param(UnaryParamOp::Clip, 1.0, -1.0, a, bb, 4)),
        ),
        (
            "unary_param clip NaN bound (even with n = 0)",
            Want::Invalid(&["unary_param", "clip", "NaN"]),
            Box::new(|| b.unary_param(UnaryParamOp::Clip, f32::NAN, 1.0, a, bb, 0)),
        ),
        (
            "unary_ex f16 odd address",
            Want::Invalid(&["unary_ex", "input", "2-byte aligned", "f16"]),
            Box::new(|| b.unary_ex(UnaryOp::Exp, DType::F16, a + 1, bb, 4)),
        ),
        (
            "unary_ex bf16 past the end",
            Want::Invalid(&["unary_ex", "output", "0x"]),
            Box::new(|| b.unary_ex(UnaryOp::Neg, DType::BF16, a, c, 129)),
        ),
        (
            "unary_ex f16 partial overlap (one element in)",
            Want::Invalid(&["unary_ex", "overlap"]),
            Box::new(|| b.unary_ex(UnaryOp::Neg, DType::F16, a, a + 2, 16)),
        ),
        (
            "rows_ex softmax given a gamma",
            Want::Invalid(&["rows_ex", "softmax", "gamma"]),
            Box::new(|| b.rows_ex(RowOp::Softmax, DType::F16, a, Some(bb), None, c, 1, 4, 0.0)),
        ),
        (
            "rows_ex rms_norm given a beta",
            Want::Invalid(&["rows_ex", "rms_norm", "beta"]),
            Box::new(|| {
                b.rows_ex(
                    RowOp::RmsNorm,
                    DType::BF16,
                    a,
                    None,
                    Some(bb),
                    c,
                    1,
                    4,
                    1e-5,
                )
            }),
        ),
        (
            "rows_ex f16 odd address",
            Want::Invalid(&["rows_ex", "x", "2-byte aligned", "f16"]),
            Box::new(|| {
                b.rows_ex(
                    RowOp::LayerNorm,
                    DType::F16,
                    a + 1,
                    None,
                    None,
                    bb,
                    1,
                    4,
                    1e-5,
                )
            }),
        ),
        (
            "rows_ex bf16 y past the end",
            Want::Invalid(&["rows_ex", "y", "0x"]),
            Box::new(|| b.rows_ex(RowOp::Softmax, DType::BF16, a, None, None, c, 1, 129, 0.0)),
        ),
        (
            "rows_ex f16 partial overlap (one element in)",
            Want::Invalid(&["rows_ex", "overlap"]),
            Box::new(|| b.rows_ex(RowOp::Softmax, DType::F16, a, None, None, a + 2, 1, 16, 0.0)),
        ),
        (
            "rows_ex layer_norm NaN eps",
            Want::Invalid(&["rows_ex", "eps"]),
            Box::new(|| {
                b.rows_ex(
                    RowOp::LayerNorm,
                    DType::F16,
                    a,
                    None,
                    None,
                    bb,
                    1,
                    4,
                    f64::NAN,
                )
            }),
        ),
        (
            "unary_ex f32 misaligned",
            Want::Invalid(&["unary_ex", "4-byte aligned"]),
            Box::new(|| b.unary_ex(UnaryOp::Neg, DType::F32, a + 2, bb, 4)),
        ),
        (
            "binary_ex bf16 b past the end",
            Want::Invalid(&["binary_ex", "b", "0x"]),
            Box::new(|| b.binary_ex(BinaryOp::Mul, DType::BF16, a, c, bb, 200)),
        ),
        (
            "binary_ex f16 output overlaps a partially",
            Want::Invalid(&["binary_ex", "overlap"]),
            Box::new(|| b.binary_ex(BinaryOp::Add, DType::F16, a, bb, a + 6, 8)),
        ),
        // batched_gemm_ex: C of f16 at an odd address; three bf16 batches of 8x8 C past
        // the end of c (3 * 64 elements of 2 bytes > 256 bytes).
        (
            "batched_gemm_ex f16 C misaligned",
            Want::Invalid(&["batched_gemm_ex", "C", "2-byte aligned", "f16"]),
            Box::new(|| {
                b.batched_gemm_ex(
                    &GemmArgs::new(N, N, 4, 4, 4, 1.0, a, 4, bb, 4, 0.0, c + 1, 4)
                        .with_c_dtype(DType::F16),
                )
            }),
        ),
        (
            "batched_gemm_ex bf16 C past the end",
            Want::Invalid(&["batched_gemm_ex", "C", "0x"]),
            Box::new(|| {
                b.batched_gemm_ex(
                    &GemmArgs::new(N, N, 8, 8, 8, 1.0, a, 8, bb, 8, 0.0, c, 8)
                        .with_c_dtype(DType::BF16)
                        .with_batch(64, 64, 64, 3),
                )
            }),
        ),
        (
            "batched_gemm_ex f16 C batches overlap",
            Want::Invalid(&["batched_gemm_ex", "stride_c"]),
            Box::new(|| {
                b.batched_gemm_ex(
                    &GemmArgs::new(N, N, 4, 4, 4, 1.0, a, 4, bb, 4, 0.0, c, 4)
                        .with_c_dtype(DType::F16)
                        .with_batch(16, 16, 8, 2),
                )
            }),
        ),
        // The model ops on f16/bf16 storage: alignment to 2 bytes, ranges in 2-byte
        // elements (c holds 128 of them), the f32 mask of an f16 attention.
        (
            "binary_broadcast_ex f16 odd address",
            Want::Invalid(&["binary_broadcast_ex", "a", "2-byte aligned", "f16"]),
            Box::new(|| {
                b.binary_broadcast_ex(BinaryOp::Add, DType::F16, a + 1, &[4], bb, &[4], c, &[4])
            }),
        ),
        (
            "binary_broadcast_ex bf16 output past the end",
            Want::Invalid(&["binary_broadcast_ex", "output", "0x"]),
            Box::new(|| {
                b.binary_broadcast_ex(
                    BinaryOp::Mul,
                    DType::BF16,
                    a,
                    &[3, 43],
                    bb,
                    &[43],
                    c,
                    &[3, 43],
                )
            }),
        ),
        (
            "gather_ex f16 misaligned table",
            Want::Invalid(&["gather_ex", "table", "2-byte aligned"]),
            Box::new(|| b.gather_ex(DType::F16, a + 3, 4, 4, bb, 1, c)),
        ),
        (
            "gather_ex bf16 output past the end",
            Want::Invalid(&["gather_ex", "output", "0x"]),
            Box::new(|| b.gather_ex(DType::BF16, a, 4, 65, bb, 2, c)),
        ),
        (
            "unary_param_ex f16 NaN parameter",
            Want::Invalid(&["unary_param_ex", "leaky_relu", "parameter a"]),
            Box::new(|| {
                b.unary_param_ex(UnaryParamOp::LeakyRelu, DType::F16, f32::NAN, 0.0, a, c, 8)
            }),
        ),
        (
            "attention_ex f16 Q misaligned",
            Want::InvalidOrUnsupported(&["attention_ex", "Q", "2-byte aligned"]),
            Box::new(|| b.attention_ex(&ex(a + 1, bb, c).dtype(DType::F16))),
        ),
        (
            "attention_ex bf16 O past the end",
            Want::InvalidOrUnsupported(&["attention_ex", "O", "0x"]),
            Box::new(|| b.attention_ex(&ex(a, bb, c + 2 * 100).dtype(DType::BF16))),
        ),
        (
            "conv2d_forward_ex f16 bias past the end",
            Want::InvalidOrUnsupported(&["conv2d_forward_ex", "bias", "0x"]),
            Box::new(|| b.conv2d_forward_ex(&dw(a, bb, c).bias(c + 2 * 126).dtype(DType::F16))),
        ),
        (
            "binary_ex size overflow",
            Want::Invalid(&["binary_ex"]),
            Box::new(|| b.binary_ex(BinaryOp::Add, DType::F16, a, bb, c, huge)),
        ),
        (
            "reduce_ex f16 output past the end",
            Want::Invalid(&["reduce_ex", "output", "0x"]),
            Box::new(|| b.reduce_ex(ReduceOp::Sum, DType::F16, a, c, &[257, 2], 1)),
        ),
        (
            "reduce_ex bf16 output overlaps the input",
            Want::Invalid(&["reduce_ex", "overlap"]),
            Box::new(|| b.reduce_ex(ReduceOp::Mean, DType::BF16, a, a + 2, &[4, 4], 1)),
        ),
        (
            "reduce_ex axis out of range",
            Want::Invalid(&["reduce_ex", "axis"]),
            Box::new(|| b.reduce_ex(ReduceOp::Max, DType::F16, a, bb, &[4, 4], 2)),
        ),
        (
            "binary partial overlap",
            Want::Invalid(&["binary", "overlap"]),
            Box::new(|| b.binary(BinaryOp::Add, a, bb, bb + 8, 16)),
        ),
        (
            "binary b out of range",
            Want::Invalid(&["binary", "b", "0x"]),
            Box::new(|| b.binary(BinaryOp::Mul, a, c, bb, 100)),
        ),
        // copies
        (
            "copy_htod past the end",
            Want::Invalid(&["copy_htod", "0x"]),
            Box::new(|| b.copy_htod(c + 200, &[0u8; 64])),
        ),
        (
            "copy_htod unknown pointer",
            Want::Invalid(&["copy_htod"]),
            Box::new(|| b.copy_htod(0x1234_5678, &[0u8; 4])),
        ),
        (
            "copy_dtoh past the end",
            Want::Invalid(&["copy_dtoh", "0x"]),
            Box::new(|| b.copy_dtoh(&mut [0u8; 300], c)),
        ),
        (
            "copy_dtod overlap",
            Want::Invalid(&["copy_dtod", "overlap"]),
            Box::new(|| b.copy_dtod(a + 8, a, 64)),
        ),
        (
            "copy_dtod past the end",
            Want::Invalid(&["copy_dtod", "0x"]),
            Box::new(|| b.copy_dtod(c, a, 4096)),
        ),
        // cast / gemm_ex (Unsupported is acceptable from a backend without them)
        (
            "cast misaligned f16",
            Want::InvalidOrUnsupported(&["cast"]),
            Box::new(|| b.cast(a, DType::F32, bb + 1, DType::F16, 4)),
        ),
        (
            "cast overlap",
            Want::InvalidOrUnsupported(&["cast", "overlap"]),
            Box::new(|| b.cast(a, DType::F32, a + 4, DType::BF16, 16)),
        ),
        (
            "cast out of range",
            Want::InvalidOrUnsupported(&["cast", "dst", "0x"]),
            Box::new(|| b.cast(a, DType::F32, c, DType::F16, 200)),
        ),
        (
            "gemm_ex misaligned f16 A",
            Want::InvalidOrUnsupported(&["gemm_ex", "A"]),
            Box::new(|| {
                b.gemm_ex(
                    N,
                    N,
                    2,
                    2,
                    2,
                    1.0,
                    a + 1,
                    DType::F16,
                    2,
                    bb,
                    DType::F32,
                    2,
                    0.0,
                    c,
                    2,
                )
            }),
        ),
        // row ops: softmax, log_softmax, layer_norm, rms_norm
        (
            "softmax y out of range",
            Want::InvalidOrUnsupported(&["softmax", "y", "0x"]),
            Box::new(|| b.softmax(a, c, 8, 16)),
        ),
        (
            "log_softmax partial overlap",
            Want::InvalidOrUnsupported(&["log_softmax", "overlap"]),
            Box::new(|| b.log_softmax(a, a + 4, 4, 8)),
        ),
        (
            "layer_norm gamma out of range",
            Want::InvalidOrUnsupported(&["layer_norm", "gamma", "0x"]),
            Box::new(|| b.layer_norm(a, Some(c + 200), None, bb, 2, 16, 1e-5)),
        ),
        (
            "layer_norm y overlaps beta",
            Want::InvalidOrUnsupported(&["layer_norm", "overlap"]),
            Box::new(|| b.layer_norm(a, None, Some(bb + 8), bb, 2, 16, 1e-5)),
        ),
        (
            "layer_norm eps NaN",
            Want::InvalidOrUnsupported(&["layer_norm", "eps"]),
            Box::new(|| b.layer_norm(a, None, None, bb, 2, 16, f64::NAN)),
        ),
        (
            "rms_norm eps negative",
            Want::InvalidOrUnsupported(&["rms_norm", "eps"]),
            Box::new(|| b.rms_norm(a, None, bb, 2, 16, -1.0)),
        ),
        (
            "rms_norm rows x cols overflow",
            Want::InvalidOrUnsupported(&["rms_norm"]),
            Box::new(|| b.rms_norm(a, None, bb, huge, 4, 1e-6)),
        ),
        // gemm_q: 4 rows of Q4_0 weights over k = 64 (4 * 2 * 18 bytes at a), B [64 x 2].
        (
            "gemm_q k not a multiple of 32",
            Want::InvalidOrUnsupported(&["gemm_q", "k = 48", "multiple of"]),
            Box::new(|| {
                b.gemm_q(
                    QuantFormat::Q4_0,
                    4,
                    2,
                    48,
                    1.0,
                    a,
                    bb,
                    DType::F32,
                    48,
                    0.0,
                    c,
                    4,
                )
            }),
        ),
        (
            "gemm_q B in bf16",
            Want::InvalidOrUnsupported(&["gemm_q", "bf16"]),
            Box::new(|| {
                b.gemm_q(
                    QuantFormat::Q8_0,
                    4,
                    2,
                    64,
                    1.0,
                    a,
                    bb,
                    DType::BF16,
                    64,
                    0.0,
                    c,
                    4,
                )
            }),
        ),
        (
            "gemm_q A out of range",
            Want::InvalidOrUnsupported(&["gemm_q", "A", "0x"]),
            Box::new(|| {
                b.gemm_q(
                    QuantFormat::Q8_0,
                    4,
                    2,
                    64,
                    1.0,
                    c + 8,
                    bb,
                    DType::F32,
                    64,
                    0.0,
                    a,
                    4,
                )
            }),
        ),
        (
            "gemm_q A unaligned",
            Want::InvalidOrUnsupported(&["gemm_q", "A", "aligned"]),
            Box::new(|| {
                b.gemm_q(
                    QuantFormat::Q4_0,
                    4,
                    2,
                    64,
                    1.0,
                    a + 1,
                    bb,
                    DType::F32,
                    64,
                    0.0,
                    c,
                    4,
                )
            }),
        ),
        (
            "gemm_q C overlaps B",
            Want::InvalidOrUnsupported(&["gemm_q", "overlap"]),
            Box::new(|| {
                b.gemm_q(
                    QuantFormat::Q4_0,
                    4,
                    2,
                    64,
                    1.0,
                    a,
                    bb,
                    DType::F32,
                    64,
                    0.0,
                    bb + 64,
                    4,
                )
            }),
        ),
        (
            "gemm_q ldc below m",
            Want::InvalidOrUnsupported(&["gemm_q", "ldc"]),
            Box::new(|| {
                b.gemm_q(
                    QuantFormat::Q4_0,
                    4,
                    2,
                    64,
                    1.0,
                    a,
                    bb,
                    DType::F32,
                    64,
                    0.0,
                    c,
                    3,
                )
            }),
        ),
        // conv2d_forward_ex: a depthwise 3x3 over [1, 4, 4, 4], "same" padding.
        (
            "conv2d_forward_ex groups 0",
            Want::InvalidOrUnsupported(&["conv2d_forward_ex", "groups"]),
            Box::new(|| b.conv2d_forward_ex(&dw(a, bb, c).groups(0))),
        ),
        (
            "conv2d_forward_ex groups not dividing C",
            Want::InvalidOrUnsupported(&["conv2d_forward_ex", "groups 3", "divide"]),
            Box::new(|| b.conv2d_forward_ex(&dw(a, bb, c).groups(3))),
        ),
        (
            "conv2d_forward_ex filter channels not C / groups",
            Want::InvalidOrUnsupported(&["conv2d_forward_ex", "C / groups"]),
            Box::new(|| b.conv2d_forward_ex(&dw(a, bb, c).groups(2))),
        ),
        (
            "conv2d_forward_ex dilation 0",
            Want::InvalidOrUnsupported(&["conv2d_forward_ex", "dilation"]),
            Box::new(|| b.conv2d_forward_ex(&dw(a, bb, c).dilation([1, 0]))),
        ),
        (
            "conv2d_forward_ex output shape ignoring the dilation",
            Want::InvalidOrUnsupported(&["conv2d_forward_ex", "output_shape", "[1, 4, 2, 2]"]),
            Box::new(|| b.conv2d_forward_ex(&dw(a, bb, c).dilation([2, 2]))),
        ),
        (
            "conv2d_forward_ex bias out of range",
            Want::InvalidOrUnsupported(&["conv2d_forward_ex", "bias", "0x"]),
            Box::new(|| b.conv2d_forward_ex(&dw(a, bb, c).bias(c + 248))),
        ),
        (
            "conv2d_forward_ex output overlaps the bias",
            Want::InvalidOrUnsupported(&["conv2d_forward_ex", "overlap", "bias"]),
            Box::new(|| b.conv2d_forward_ex(&dw(a, bb, c).bias(c + 16))),
        ),
        // binary_broadcast and gather
        (
            "binary_broadcast shapes that do not broadcast",
            Want::InvalidOrUnsupported(&["binary_broadcast", "do not broadcast", "3 against 5"]),
            Box::new(|| b.binary_broadcast(BinaryOp::Add, a, &[4, 3], bb, &[5], c, &[4, 3])),
        ),
        (
            "binary_broadcast wrong out_shape",
            Want::InvalidOrUnsupported(&["binary_broadcast", "out_shape", "[2, 4]"]),
            Box::new(|| b.binary_broadcast(BinaryOp::Mul, a, &[2, 4], bb, &[4], c, &[4, 4])),
        ),
        (
            "binary_broadcast seven dimensions",
            Want::InvalidOrUnsupported(&["binary_broadcast", "at most 6"]),
            Box::new(|| b.binary_broadcast(BinaryOp::Sub, a, &[1; 7], bb, &[1], c, &[1; 7])),
        ),
        (
            "binary_broadcast b out of range",
            Want::InvalidOrUnsupported(&["binary_broadcast", "b", "0x"]),
            Box::new(|| {
                b.binary_broadcast(BinaryOp::Add, a, &[8, 16], c + 200, &[16], bb, &[8, 16])
            }),
        ),
        (
            "binary_broadcast in place on a broadcast input",
            Want::InvalidOrUnsupported(&["binary_broadcast", "overlap"]),
            Box::new(|| b.binary_broadcast(BinaryOp::Add, bb, &[8, 16], a, &[16], a, &[8, 16])),
        ),
        (
            "binary_broadcast element count overflow",
            Want::InvalidOrUnsupported(&["binary_broadcast", "overflow"]),
            Box::new(|| b.binary_broadcast(BinaryOp::Add, a, &[huge, 4], bb, &[1], c, &[huge, 4])),
        ),
        (
            "gather indices out of range",
            Want::InvalidOrUnsupported(&["gather", "indices", "0x"]),
            Box::new(|| b.gather(a, 16, 8, c + 248, 4, bb)),
        ),
        (
            "gather output overlaps the table",
            Want::InvalidOrUnsupported(&["gather", "overlap", "table"]),
            Box::new(|| b.gather(a, 16, 8, c, 4, a + 64)),
        ),
        (
            // rows x cols overflows u64 on 64-bit targets; on 32-bit ones the table's
            // range runs over the output. Either way the table is named.
            "gather table of rows x cols past the address space",
            Want::InvalidOrUnsupported(&["gather", "table"]),
            Box::new(|| b.gather(a, huge, 4, c, 4, bb)),
        ),
        // aliases
        (
            "alias past the end",
            Want::Invalid(&["alias", "ptr", "past the end", "0x"]),
            Box::new(|| b.alias(c + 200, 100).map(drop)),
        ),
        (
            "alias of huge bytes",
            Want::Invalid(&["alias", "ptr"]),
            Box::new(|| b.alias(a, huge).map(drop)),
        ),
        (
            "alias of freed",
            Want::Invalid(&["alias", "ptr", "was freed"]),
            Box::new(|| b.alias(freed, 4).map(drop)),
        ),
        (
            "alias past the end of its alias",
            Want::Invalid(&["alias", "past the end of its alias"]),
            Box::new(|| b.alias(live + 32, 64).map(drop)),
        ),
        (
            "alias of a stale alias",
            Want::Invalid(&["alias", "stale", "frame reset"]),
            Box::new(|| b.alias(stale, 4).map(drop)),
        ),
        (
            "op on a stale alias",
            Want::Invalid(&["unary", "input", "stale", "frame reset"]),
            Box::new(|| b.unary(UnaryOp::Neg, stale, c, 4)),
        ),
        (
            "op past the end of an alias",
            Want::Invalid(&["unary", "output", "alias"]),
            Box::new(|| b.unary(UnaryOp::Neg, c, live, 32)),
        ),
        (
            "partial overlap through an alias",
            Want::Invalid(&["unary", "overlap"]),
            Box::new(|| b.unary(UnaryOp::Neg, live, a + 4, 8)),
        ),
        (
            "retire of an allocation",
            Want::Invalid(&["retire", "alias"]),
            Box::new(|| b.retire(a, Retired::Freed)),
        ),
        (
            "retire twice",
            Want::Invalid(&["retire", "stale"]),
            Box::new(|| b.retire(stale, Retired::Freed)),
        ),
        (
            "retire inside an alias",
            Want::Invalid(&["retire", "alias"]),
            Box::new(|| b.retire(live + 4, Retired::Freed)),
        ),
        // batched readback: one bad entry fails the whole call before anything is read
        (
            "copy_dtoh_many with a freed entry",
            Want::Invalid(&["copy_dtoh", "src"]),
            Box::new(|| {
                let (mut first, mut second) = ([0x5au8; 16], [0x5au8; 4]);
                let mut reads: [(u64, &mut [u8]); 2] = [(a, &mut first), (freed, &mut second)];
                let r = b.copy_dtoh_many(&mut reads);
                if first != [0x5a; 16] {
                    return Err(BackendError::DeviceError(
                        "copy_dtoh_many wrote the good read before failing on the bad one".into(),
                    ));
                }
                r
            }),
        ),
        (
            "copy_dtoh_many past the end",
            Want::Invalid(&["copy_dtoh", "src", "0x"]),
            Box::new(|| {
                let mut buf = [0u8; 300];
                b.copy_dtoh_many(&mut [(bb, &mut [0u8; 4][..]), (c, &mut buf[..])])
            }),
        ),
        // host views: checked like copies; while one lives, its bytes are refused
        (
            "map_host past the end",
            Want::InvalidOrUnsupported(&["map_host", "past the end"]),
            Box::new(|| b.map_host(c, 300, MapMode::Read).map(drop)),
        ),
        (
            "map_host of a freed pointer",
            Want::InvalidOrUnsupported(&["map_host", "freed"]),
            Box::new(|| b.map_host(freed, 4, MapMode::Write).map(drop)),
        ),
        (
            "map_host of more bytes than the address space",
            Want::InvalidOrUnsupported(&["map_host"]),
            Box::new(|| b.map_host(a, usize::MAX, MapMode::Write).map(drop)),
        ),
        (
            "an op on bytes under a live host view",
            Want::InvalidOrUnsupported(&["unary", "host view"]),
            Box::new(|| {
                // ReadWrite publishes the bytes it read, so the data survives either way.
                let view = b.map_host(a, 16, MapMode::ReadWrite)?;
                let r = b.unary(UnaryOp::Neg, a, a, 4);
                view.finish()?;
                r
            }),
        ),
        // row-major helpers: errors in the caller's terms (a, b, c as passed), not gemm's
        (
            "matmul_row_major: a past the end",
            Want::Invalid(&["matmul_row_major", "operand a range", "past the end"]),
            Box::new(|| b.matmul_row_major(2, 600, 1, a, bb, c)),
        ),
        (
            "matmul_row_major: b past the end",
            Want::Invalid(&["matmul_row_major", "operand b range", "past the end"]),
            // c (64 elements) ends the sentinels' allocation: as b it is too short.
            Box::new(|| b.matmul_row_major(1, 10, 10, a, c, bb)),
        ),
        (
            "matmul_row_major: c past the end",
            Want::Invalid(&["matmul_row_major", "operand c range", "past the end"]),
            Box::new(|| b.matmul_row_major(10, 2, 10, a, bb, c)),
        ),
        (
            "matmul_row_major: c overlaps a",
            Want::Invalid(&["matmul_row_major", "output c", "input a"]),
            Box::new(|| b.matmul_row_major(2, 2, 2, a, bb, a + 4)),
        ),
        (
            "gemm_row_major: lda below k",
            Want::Invalid(&["gemm_row_major", "lda 3 < max(1, 4) columns of a"]),
            Box::new(|| b.gemm_row_major(N, N, 2, 2, 4, 1.0, a, 3, bb, 2, 0.0, c, 2)),
        ),
        (
            "gemm_row_major: ldb below k for a transposed b",
            Want::Invalid(&["gemm_row_major", "ldb 3 < max(1, 4) columns of b"]),
            Box::new(|| b.gemm_row_major(N, T, 2, 2, 4, 1.0, a, 4, bb, 3, 0.0, c, 2)),
        ),
        (
            "linear_row_major: w past the end",
            Want::Invalid(&["linear_row_major", "operand b range"]),
            Box::new(|| b.linear_row_major(1, 10, 10, a, c, bb)),
        ),
        (
            "batched_matmul_row_major: c batches overlap",
            Want::Invalid(&["batched_matmul_row_major", "stride_c 3 < 4"]),
            Box::new(|| b.batched_matmul_row_major(2, 2, 2, 2, a, 4, bb, 4, c, 3)),
        ),
        (
            "matmul_row_major of freed",
            Want::Invalid(&["matmul_row_major", "operand a", "was freed"]),
            Box::new(|| b.matmul_row_major(2, 2, 2, freed, bb, c)),
        ),
        // Buffer<T>
        (
            "Buffer::write of the wrong length",
            Want::Invalid(&["Buffer::write", "3 elements given for a buffer of 4"]),
            Box::new(|| Buffer::<f32>::zeros(b, 4)?.write(&[1.0; 3])),
        ),
        (
            "Buffer::write_at past the end",
            Want::Invalid(&["Buffer::write_at", "[3, 5)", "4"]),
            Box::new(|| Buffer::<f32>::zeros(b, 4)?.write_at(3, &[1.0; 2])),
        ),
        (
            "Buffer::copy_from of another length",
            Want::Invalid(&["Buffer::copy_from", "5 elements into a buffer of 4"]),
            Box::new(|| Buffer::<f32>::zeros(b, 4)?.copy_from(&Buffer::<f32>::zeros(b, 5)?)),
        ),
        (
            "Buffer over a freed allocation",
            Want::Invalid(&["copy_dtoh", "was freed"]),
            Box::new(|| Buffer::<f32>::from_raw(b, freed, 4).read().map(drop)),
        ),
        (
            "Buffer::uninit of more elements than the address space",
            Want::Invalid(&["Buffer::uninit", "overflow"]),
            Box::new(|| Buffer::<f32>::uninit(b, usize::MAX / 2).map(drop)),
        ),
        // allocation
        (
            "alloc(usize::MAX)",
            Want::OutOfMemory,
            Box::new(|| b.alloc(usize::MAX).map(drop)),
        ),
        (
            "alloc(usize::MAX / 2)",
            Want::OutOfMemory,
            Box::new(|| b.alloc(usize::MAX / 2).map(drop)),
        ),
    ];
    for (name, want, call) in cases {
        match judge(name, want, guarded(call)) {
            Ok(()) => report.passed += 1,
            Err(m) => report.fail(m),
        }
    }

    // Nothing was deferred, nothing was written, and the backend still works.
    if let Err(e) = backend.synchronize_async().await {
        report.fail(format!("synchronize after the misuse calls reported an error: {e} (validation must not be deferred)"));
    }
    for (p, want) in &s.contents {
        let mut got = vec![0u8; want.len()];
        match backend.copy_dtoh_async(&mut got, *p).await {
            Ok(()) => match crate::tolerance::unchanged(
                &format!("allocation {p:#x} after the misuse calls"),
                &got,
                want,
            ) {
                Ok(()) => report.passed += 1,
                Err(m) => report.fail(m),
            },
            Err(e) => report.fail(format!(
                "reading back allocation {p:#x} after the misuse calls failed: {e}"
            )),
        }
    }
    match backend.unary(UnaryOp::Neg, s.a, s.b, 4) {
        Ok(()) => {
            let mut got = [0u8; 16];
            match backend.copy_dtoh_async(&mut got, s.b).await {
                Ok(()) => {
                    let want: Vec<u8> = s.contents[0].1[..16]
                        .chunks_exact(4)
                        .flat_map(|c| (-f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes())
                        .collect();
                    match crate::tolerance::unchanged(
                        "a valid op after the misuse calls",
                        &got,
                        &want,
                    ) {
                        Ok(()) => report.passed += 1,
                        Err(m) => report.fail(m),
                    }
                }
                Err(e) => report.fail(format!("readback after the misuse calls failed: {e}")),
            }
        }
        Err(e) => report.fail(format!("a valid op after the misuse calls failed: {e}")),
    }
    for (p, _) in &s.contents {
        if let Err(e) = backend.free(*p) {
            report.fail(format!("free of a sentinel allocation failed: {e}"));
        }
    }
    report
}

/// Checks that an uninitialised backend (fresh from `new()`) answers every call with
/// `NotInitialized` and reports itself uninitialised.
pub fn check_uninitialized(b: &dyn ComputeBackend) -> Result<(), String> {
    if b.is_initialized() {
        return Err("is_initialized() is true before init()".into());
    }
    type Call<'a> = Box<dyn FnOnce() -> Result<(), BackendError> + 'a>;
    let calls: Vec<(&str, Call<'_>)> = vec![
        ("alloc", Box::new(|| b.alloc(16).map(drop))),
        ("free", Box::new(|| b.free(0x1_0000_0000))),
        (
            "copy_htod",
            Box::new(|| b.copy_htod(0x1_0000_0000, &[0; 4])),
        ),
        (
            "copy_dtoh",
            Box::new(|| b.copy_dtoh(&mut [0; 4], 0x1_0000_0000)),
        ),
        (
            "copy_dtod",
            Box::new(|| b.copy_dtod(0x1_0000_0000, 0x2_0000_0000, 4)),
        ),
        ("synchronize", Box::new(|| b.synchronize())),
        ("alias", Box::new(|| b.alias(0x1_0000_0000, 4).map(drop))),
        (
            "softmax",
            Box::new(|| b.softmax(0x1_0000_0000, 0x2_0000_0000, 1, 1)),
        ),
        (
            "layer_norm",
            Box::new(|| b.layer_norm(0x1_0000_0000, None, None, 0x2_0000_0000, 1, 1, 0.0)),
        ),
        (
            "retire",
            Box::new(|| b.retire(0x1_0000_0000, Retired::Freed)),
        ),
        (
            "copy_dtoh_many",
            Box::new(|| b.copy_dtoh_many(&mut [(0x1_0000_0000, &mut [0u8; 4][..])])),
        ),
        (
            "gemm",
            Box::new(|| {
                b.gemm(
                    N,
                    N,
                    1,
                    1,
                    1,
                    1.0,
                    0x1_0000_0000,
                    1,
                    0x2_0000_0000,
                    1,
                    0.0,
                    0x3_0000_0000,
                    1,
                )
            }),
        ),
        (
            "unary",
            Box::new(|| b.unary(UnaryOp::Exp, 0x1_0000_0000, 0x2_0000_0000, 1)),
        ),
        (
            "unary_ex",
            Box::new(|| b.unary_ex(UnaryOp::Exp, DType::F16, 0x1_0000_0000, 0x2_0000_0000, 1)),
        ),
        (
            "rows_ex",
            Box::new(|| {
                b.rows_ex(
                    RowOp::Softmax,
                    DType::F16,
                    0x1_0000_0000,
                    None,
                    None,
                    0x2_0000_0000,
                    1,
                    1,
                    0.0,
                )
            }),
        ),
        (
            "binary_ex",
            Box::new(|| {
                b.binary_ex(
                    BinaryOp::Add,
                    DType::BF16,
                    0x1_0000_0000,
                    0x2_0000_0000,
                    0x3_0000_0000,
                    1,
                )
            }),
        ),
        (
            "reduce_ex",
            Box::new(|| {
                b.reduce_ex(
                    ReduceOp::Sum,
                    DType::F16,
                    0x1_0000_0000,
                    0x2_0000_0000,
                    &[2],
                    0,
                )
            }),
        ),
        (
            "unary_param",
            Box::new(|| {
                b.unary_param(
                    UnaryParamOp::Clip,
                    0.0,
                    1.0,
                    0x1_0000_0000,
                    0x2_0000_0000,
                    1,
                )
            }),
        ),
        (
            "binary",
            Box::new(|| {
                b.binary(
                    BinaryOp::Add,
                    0x1_0000_0000,
                    0x2_0000_0000,
                    0x3_0000_0000,
                    1,
                )
            }),
        ),
        (
            "reduce",
            Box::new(|| b.reduce(ReduceOp::Sum, 0x1_0000_0000, 0x2_0000_0000, &[2], 0)),
        ),
        (
            "gemm with a bad lda",
            Box::new(|| {
                b.gemm(
                    N,
                    N,
                    4,
                    1,
                    1,
                    1.0,
                    0x1_0000_0000,
                    1,
                    0x2_0000_0000,
                    1,
                    0.0,
                    0x3_0000_0000,
                    4,
                )
            }),
        ),
        (
            "unary n = 0",
            Box::new(|| b.unary(UnaryOp::Exp, 0x1_0000_0000, 0x2_0000_0000, 0)),
        ),
        (
            "binary_broadcast",
            Box::new(|| {
                b.binary_broadcast(
                    BinaryOp::Add,
                    0x1_0000_0000,
                    &[2, 2],
                    0x2_0000_0000,
                    &[2],
                    0x3_0000_0000,
                    &[2, 2],
                )
            }),
        ),
        (
            "gather",
            Box::new(|| b.gather(0x1_0000_0000, 2, 2, 0x2_0000_0000, 1, 0x3_0000_0000)),
        ),
        (
            "batched_gemm_ex",
            Box::new(|| {
                b.batched_gemm_ex(
                    &GemmArgs::new(
                        N,
                        N,
                        1,
                        1,
                        1,
                        1.0,
                        0x1_0000_0000,
                        1,
                        0x2_0000_0000,
                        1,
                        0.0,
                        0x3_0000_0000,
                        1,
                    )
                    .with_c_dtype(DType::F16),
                )
            }),
        ),
        (
            "binary_broadcast_ex",
            Box::new(|| {
                b.binary_broadcast_ex(
                    BinaryOp::Add,
                    DType::F16,
                    0x1_0000_0000,
                    &[2, 2],
                    0x2_0000_0000,
                    &[2],
                    0x3_0000_0000,
                    &[2, 2],
                )
            }),
        ),
        (
            "gather_ex",
            Box::new(|| {
                b.gather_ex(
                    DType::BF16,
                    0x1_0000_0000,
                    2,
                    2,
                    0x2_0000_0000,
                    1,
                    0x3_0000_0000,
                )
            }),
        ),
        (
            "unary_param_ex",
            Box::new(|| {
                b.unary_param_ex(
                    UnaryParamOp::Elu,
                    DType::F16,
                    1.0,
                    0.0,
                    0x1_0000_0000,
                    0x2_0000_0000,
                    1,
                )
            }),
        ),
        (
            "conv2d_forward_ex f16",
            Box::new(|| {
                b.conv2d_forward_ex(
                    &dw(0x1_0000_0000, 0x2_0000_0000, 0x3_0000_0000).dtype(DType::F16),
                )
            }),
        ),
        (
            "conv2d_forward_ex",
            Box::new(|| b.conv2d_forward_ex(&dw(0x1_0000_0000, 0x2_0000_0000, 0x3_0000_0000))),
        ),
        (
            "gemm_q",
            Box::new(|| {
                b.gemm_q(
                    QuantFormat::Q8_0,
                    1,
                    1,
                    32,
                    1.0,
                    0x1_0000_0000,
                    0x2_0000_0000,
                    DType::F32,
                    32,
                    0.0,
                    0x3_0000_0000,
                    1,
                )
            }),
        ),
        (
            "attention_ex",
            Box::new(|| {
                let t = HeadTensor::bhsd(0x1_0000_0000, 2, 2, 4);
                b.attention_ex(&AttentionArgs::new(1, 2, 1, 2, 2, 4, t, t, t, t))
            }),
        ),
    ];
    for (name, call) in calls {
        match guarded(call) {
            Ok(Err(BackendError::NotInitialized)) => {}
            Ok(other) => {
                return Err(format!(
                    "{name} before init returned {other:?}, not NotInitialized"
                ));
            }
            Err(p) => return Err(format!("{name} before init {p}")),
        }
    }
    Ok(())
}
