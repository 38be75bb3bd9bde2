//! The reference math: plain loops over host slices, accumulating in f64 and rounding
//! once to f32 at the end.
//!
//! These functions are the oracle. The conformance suite calls them directly to compute
//! what every backend must produce, and [`CpuBackend`](crate::CpuBackend) runs them on its
//! host memory. They are checked against numpy float64 fixtures (`fixtures/`), computed
//! outside this project, so the oracle is not only checked against itself.
//!
//! Slices start at the operand's first element and must be at least as long as the
//! operand's extent; callers (the backend, the conformance suite) guarantee that.

use backend_api::validate::{AttentionPlan, RowOp};
use backend_api::{BinaryOp, DType, QuantFormat, ReduceOp, UnaryOp, UnaryParamOp};

use crate::parallel::for_chunks;

/// An element of an oracle output: f32 (each result rounded once to it) or f64 (not
/// rounded, for outputs stored in another type and rounded by [`encode64`]).
pub trait Out: Copy + Send {
    /// The value, exactly.
    fn to_f64(self) -> f64;
    /// `v` rounded to the type.
    fn from_f64(v: f64) -> Self;
}

impl Out for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }

    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Out for f64 {
    fn to_f64(self) -> f64 {
        self
    }

    fn from_f64(v: f64) -> Self {
        v
    }
}

/// `C = alpha * op(A) * op(B) + beta * C`, column-major, BLAS semantics: C is not read
/// when `beta == 0`, A and B are not read when `alpha == 0` or `k == 0`.
pub fn gemm<T: Out>(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f64,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f64,
    c: &mut [T],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let c = &mut c[..ldc * (n - 1) + m];
    let reads_ab = alpha != 0.0 && k != 0;
    let a_at = |i: usize, l: usize| {
        f64::from(if trans_a {
            a[l + i * lda]
        } else {
            a[i + l * lda]
        })
    };
    let b_at = |l: usize, j: usize| {
        f64::from(if trans_b {
            b[j + l * ldb]
        } else {
            b[l + j * ldb]
        })
    };
    for_chunks(c, ldc, m * n * k, |first_col, cols| {
        for (jj, col) in cols.chunks_mut(ldc).enumerate() {
            let j = first_col + jj;
            for (i, out) in col[..m].iter_mut().enumerate() {
                let old = out.to_f64();
                // Exactly BLAS: without a product C becomes beta * C (keeping -0), and
                // with beta == 0 C is never read.
                let value = match (reads_ab, beta == 0.0) {
                    (false, true) => 0.0,
                    (false, false) => beta * old,
                    (true, zero_beta) => {
                        // Folded from +0 as BLAS accumulates (f64's `Sum` starts from -0,
                        // which would give -0 for a sum of negative zeros).
                        let sum = (0..k).fold(0.0, |acc, l| acc + a_at(i, l) * b_at(l, j));
                        let product = alpha * sum;
                        if zero_beta {
                            product
                        } else {
                            product + beta * old
                        }
                    }
                };
                *out = T::from_f64(value);
            }
        }
    });
}

/// The `rows x k` values of GGML-quantized weights, row by row: each block's f16 scale `d`
/// times its integers (`q` for Q8_0, `nibble - 8` for Q4_0). Every product is exact in
/// f32 (at most 11 + 8 significant bits).
pub fn dequantize(format: QuantFormat, bytes: &[u8], rows: usize, k: usize) -> Vec<f32> {
    let per_row = k / QuantFormat::BLOCK;
    let block = format.block_bytes();
    let mut out = Vec::with_capacity(rows * k);
    for blk in bytes[..rows * per_row * block].chunks_exact(block) {
        let d = f64::from(half::f16::from_le_bytes([blk[0], blk[1]]));
        let quants = &blk[2..];
        match format {
            QuantFormat::Q8_0 => {
                out.extend(quants.iter().map(|&q| (f64::from(q as i8) * d) as f32));
            }
            QuantFormat::Q4_0 => {
                let nibble = |j: usize| {
                    let byte = quants[j % 16];
                    f64::from(if j < 16 { byte & 15 } else { byte >> 4 }) - 8.0
                };
                out.extend((0..QuantFormat::BLOCK).map(|j| (nibble(j) * d) as f32));
            }
        }
    }
    out
}

/// `gemm_q`: the weights dequantized exactly, then [`gemm`] with A transposed (row-major
/// `m x k` is column-major `k x m`). `a` is empty when the product is not read.
pub fn gemm_q(
    format: QuantFormat,
    m: usize,
    n: usize,
    k: usize,
    alpha: f64,
    a: &[u8],
    b: &[f32],
    ldb: usize,
    beta: f64,
    c: &mut [f32],
    ldc: usize,
) {
    let weights = if a.is_empty() {
        Vec::new()
    } else {
        dequantize(format, a, m, k)
    };
    gemm(
        true,
        false,
        m,
        n,
        k,
        alpha,
        &weights,
        k.max(1),
        b,
        ldb,
        beta,
        c,
        ldc,
    );
}

/// `conv2d_forward`: [`conv2d_ex`] with one group, no dilation, symmetric padding and no
/// bias.
pub fn conv2d(
    input: &[f32],
    input_shape: [usize; 4],
    filter: &[f32],
    filter_shape: [usize; 4],
    output: &mut [f32],
    stride: [usize; 2],
    padding: [usize; 2],
) {
    let [_, _, h, w] = input_shape;
    let [_, _, r, s] = filter_shape;
    let oh = (h + 2 * padding[0] - r) / stride[0] + 1;
    let ow = (w + 2 * padding[1] - s) / stride[1] + 1;
    conv2d_ex(
        input,
        input_shape,
        filter,
        filter_shape,
        &[],
        output,
        Conv {
            out_hw: [oh, ow],
            stride,
            top_left: padding,
            dilation: [1, 1],
            groups: 1,
        },
    );
}

/// The geometry of a [`conv2d_ex`].
#[derive(Debug, Clone, Copy)]
pub struct Conv {
    /// `[OH, OW]` (bottom and right padding only shape these).
    pub out_hw: [usize; 2],
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// Zeros above and on the left.
    pub top_left: [usize; 2],
    /// `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
}

/// 2-D cross-correlation with groups and dilation, accumulated in f64: output channel
/// `k` of group `k / (K / groups)` reads that group's `C / groups` input channels, tap
/// `(fy, fx)` reads input row `y * sh + fy * dh - top`; zeros outside the input. `bias`
/// (empty, or `K` values) starts each output channel's sum.
pub fn conv2d_ex(
    input: &[f32],
    input_shape: [usize; 4],
    filter: &[f32],
    filter_shape: [usize; 4],
    bias: &[f32],
    output: &mut [f32],
    geo: Conv,
) {
    let mut out = vec![0.0f64; output.len()];
    conv2d_ex64(
        input,
        input_shape,
        filter,
        filter_shape,
        bias,
        &mut out,
        geo,
    );
    for (o, v) in output.iter_mut().zip(out) {
        *o = v as f32;
    }
}

/// [`conv2d_ex`] with its f64 sums not rounded (for outputs stored in another type).
pub fn conv2d_ex64(
    input: &[f32],
    input_shape: [usize; 4],
    filter: &[f32],
    filter_shape: [usize; 4],
    bias: &[f32],
    output: &mut [f64],
    geo: Conv,
) {
    let [n, c, h, w] = input_shape;
    let [k, cg, r, s] = filter_shape;
    let [oh, ow] = geo.out_hw;
    let kg = k / geo.groups;
    let plane = oh * ow;
    let output = &mut output[..n * k * plane];
    for_chunks(
        output,
        plane,
        n * k * plane * cg * r * s,
        |first, planes| {
            for (pi, out) in planes.chunks_mut(plane).enumerate() {
                let (b, kk) = ((first + pi) / k, (first + pi) % k);
                let c0 = kk / kg * cg;
                for y in 0..oh {
                    for x in 0..ow {
                        let mut acc = bias.get(kk).map_or(0.0, |&v| f64::from(v));
                        for ch in 0..cg {
                            for fy in 0..r {
                                let iy = (y * geo.stride[0] + fy * geo.dilation[0]) as isize
                                    - geo.top_left[0] as isize;
                                if iy < 0 || iy >= h as isize {
                                    continue;
                                }
                                for fx in 0..s {
                                    let ix = (x * geo.stride[1] + fx * geo.dilation[1]) as isize
                                        - geo.top_left[1] as isize;
                                    if ix < 0 || ix >= w as isize {
                                        continue;
                                    }
                                    let iv = input
                                        [((b * c + c0 + ch) * h + iy as usize) * w + ix as usize];
                                    let fv = filter[((kk * cg + ch) * r + fy) * s + fx];
                                    acc += f64::from(iv) * f64::from(fv);
                                }
                            }
                        }
                        out[y * ow + x] = acc;
                    }
                }
            }
        },
    );
}

/// Maximum that propagates NaN.
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Minimum that propagates NaN.
fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// `O = softmax(mask + cap(scale * Q K^T)) V` per (batch, query head) as
/// [`AttentionPlan`] describes it: query head `h` reads key/value head
/// `plan.kv_head(h)`, query `i` sees the keys of `plan.visible(i)` whose mask entry is not
/// `-inf`, and a row that sees none is zero. Each slice starts at its operand; `o` holds
/// O's whole extent, of which only the output rows are written.
pub fn attention(p: &AttentionPlan, q: &[f32], k: &[f32], v: &[f32], mask: &[f32], o: &mut [f32]) {
    let dv = p.v_head_dim;
    for (row, values) in attention64(p, q, k, v, mask).chunks(dv.max(1)).enumerate() {
        let (bh, i) = (row / p.seq_q, row % p.seq_q);
        let at = AttentionPlan::at(p.o_strides, bh / p.heads, bh % p.heads, i);
        for (o, &v) in o[at..][..dv].iter_mut().zip(values) {
            *o = v as f32;
        }
    }
}

/// [`attention`]'s output rows, `batch * heads * seq_q` of `v_head_dim` values in that
/// order, not rounded (for outputs stored in another type).
pub fn attention64(p: &AttentionPlan, q: &[f32], k: &[f32], v: &[f32], mask: &[f32]) -> Vec<f64> {
    let (d, dv) = (p.head_dim, p.v_head_dim);
    let rows = p.batch * p.heads * p.seq_q;
    if rows == 0 || dv == 0 {
        return Vec::new();
    }
    let mut out = vec![0.0f64; rows * dv];
    let work = rows * p.seq_kv * (d + dv);
    for_chunks(&mut out, dv, work, |first_row, out_rows| {
        let mut scores = vec![0.0f64; p.seq_kv];
        let mut seen = vec![false; p.seq_kv];
        for (ri, out) in out_rows.chunks_mut(dv).enumerate() {
            let row = first_row + ri;
            let (bh, i) = (row / p.seq_q, row % p.seq_q);
            let (b, h) = (bh / p.heads, bh % p.heads);
            let kvh = p.kv_head(h);
            let qi = AttentionPlan::at(p.q_strides, b, h, i);
            let visible = p.visible(i);
            let mask_row = p.mask.map(|_| &mask[p.mask_at(b, h, i)..][..p.seq_kv]);
            let mut any = false;
            let mut max = f64::NEG_INFINITY;
            for j in 0..p.seq_kv {
                seen[j] =
                    visible.contains(&j) && mask_row.is_none_or(|m| m[j] != f32::NEG_INFINITY);
                if !seen[j] {
                    continue;
                }
                any = true;
                let kj = AttentionPlan::at(p.k_strides, b, kvh, j);
                let dot = (0..d).fold(0.0, |acc, t| {
                    acc + f64::from(q[qi + t]) * f64::from(k[kj + t])
                });
                let mut s = p.scale * dot;
                if let Some(cap) = p.softcap {
                    s = cap * (s / cap).tanh();
                }
                if let Some(m) = mask_row {
                    s += f64::from(m[j]);
                }
                scores[j] = s;
                max = nan_max(max, s);
            }
            if !any {
                out.fill(0.0);
                continue;
            }
            let mut denom = 0.0;
            for j in (0..p.seq_kv).filter(|&j| seen[j]) {
                scores[j] = (scores[j] - max).exp();
                denom += scores[j];
            }
            for (t, out) in out.iter_mut().enumerate() {
                let acc = (0..p.seq_kv).filter(|&j| seen[j]).fold(0.0, |acc, j| {
                    let vj = AttentionPlan::at(p.v_strides, b, kvh, j);
                    acc + scores[j] * f64::from(v[vj + t])
                });
                *out = acc / denom;
            }
        }
    });
    out
}

/// Reduces `input`, viewed as `[outer, len, inner]`, over `len` into `outer * inner`
/// values.
pub fn reduce(
    op: ReduceOp,
    input: &[f32],
    output: &mut [f32],
    outer: usize,
    len: usize,
    inner: usize,
) {
    let mut wide = vec![0.0f64; outer * inner];
    reduce64(op, input, &mut wide, outer, len, inner);
    for (o, w) in output.iter_mut().zip(wide) {
        *o = w as f32;
    }
}

/// [`reduce`] before the rounding to f32: the f64 results, for outputs stored in another
/// type (rounded once, by [`encode64`]).
pub fn reduce64(
    op: ReduceOp,
    input: &[f32],
    output: &mut [f64],
    outer: usize,
    len: usize,
    inner: usize,
) {
    let output = &mut output[..outer * inner];
    for_chunks(output, inner.max(1), outer * len * inner, |first, rows| {
        for (oi, out_row) in rows.chunks_mut(inner.max(1)).enumerate() {
            let o = first + oi;
            for (ii, out) in out_row.iter_mut().enumerate() {
                let values = (0..len).map(|l| f64::from(input[(o * len + l) * inner + ii]));
                let r = match op {
                    // f64's `Sum` starts from -0.0; an empty sum is +0.
                    ReduceOp::Sum => values.fold(0.0, |a, v| a + v),
                    ReduceOp::Mean => values.fold(0.0, |a, v| a + v) / len as f64,
                    ReduceOp::Prod => values.product(),
                    ReduceOp::Max => values.fold(f64::NEG_INFINITY, nan_max),
                    ReduceOp::Min => values.fold(f64::INFINITY, nan_min),
                    ReduceOp::SumSquare => values.fold(0.0, |a, v| a + v * v),
                    ReduceOp::L1 => values.fold(0.0, |a, v| a + v.abs()),
                    ReduceOp::L2 => values.fold(0.0, |a, v| a + v * v).sqrt(),
                    ReduceOp::LogSumExp => log_sum_exp(values),
                };
                *out = r;
            }
        }
    });
}

/// `max + ln(sum(exp(v - max)))`: -inf for no values or only -inf, NaN with any NaN,
/// +inf with any +inf.
fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, nan_max);
    if !max.is_finite() {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// A row op over each row of `x[rows x cols]` into `y`, in f64 (two passes for the
/// statistics) and rounded to f32 once. `gamma`/`beta`: `cols` values or empty (1 and 0).
pub fn rows(
    op: RowOp,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    cols: usize,
    eps: f64,
) {
    let mut y64 = vec![0.0f64; y.len()];
    rows64(op, x, gamma, beta, &mut y64, cols, eps);
    for (o, v) in y.iter_mut().zip(y64) {
        *o = v as f32;
    }
}

/// [`rows`] in f64, not rounded (for outputs stored in another type).
pub fn rows64(
    op: RowOp,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f64],
    cols: usize,
    eps: f64,
) {
    let at = |v: &[f32], j: usize, default: f64| v.get(j).map_or(default, |&g| f64::from(g));
    for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(cols)) {
        let row = || xr.iter().map(|&v| f64::from(v));
        let n = cols as f64;
        match op {
            RowOp::Softmax | RowOp::LogSoftmax => {
                let max = row().fold(f64::NEG_INFINITY, nan_max);
                let sum: f64 = row().map(|v| (v - max).exp()).sum();
                for (o, v) in yr.iter_mut().zip(row()) {
                    *o = match op {
                        RowOp::Softmax => (v - max).exp() / sum,
                        _ => v - max - sum.ln(),
                    };
                }
            }
            RowOp::LayerNorm => {
                let mean = row().sum::<f64>() / n;
                let var = row().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                let inv = 1.0 / (var + eps).sqrt();
                for (j, (o, v)) in yr.iter_mut().zip(row()).enumerate() {
                    *o = (v - mean) * inv * at(gamma, j, 1.0) + at(beta, j, 0.0);
                }
            }
            RowOp::RmsNorm => {
                let ms = row().map(|v| v * v).sum::<f64>() / n;
                let inv = 1.0 / (ms + eps).sqrt();
                for (j, (o, v)) in yr.iter_mut().zip(row()).enumerate() {
                    *o = v * inv * at(gamma, j, 1.0);
                }
            }
        }
    }
}

/// One unary op, computed in f64 and rounded to f32.
pub fn unary(op: UnaryOp, x: f32) -> f32 {
    unary64(op, f64::from(x)) as f32
}

/// One unary op in f64, not rounded (for outputs stored in another type).
pub fn unary64(op: UnaryOp, x: f64) -> f64 {
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    match op {
        UnaryOp::Relu => {
            if x.is_nan() {
                x
            } else {
                x.max(0.0)
            }
        }
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Neg => -x,
        // x/2 * (1 + erf(x/sqrt 2)) written with erfc, which keeps full relative accuracy
        // for large negative x where 1 + erf cancels.
        UnaryOp::Gelu => 0.5 * x * libm::erfc(-x / std::f64::consts::SQRT_2),
        UnaryOp::Silu => x * sigmoid(x),
        UnaryOp::Recip => 1.0 / x,
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Square => x * x,
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Floor => x.floor(),
        UnaryOp::Ceil => x.ceil(),
        UnaryOp::Erf => libm::erf(x),
        UnaryOp::Softplus => softplus(x),
        UnaryOp::Softsign => {
            if x.is_infinite() {
                x.signum()
            } else {
                x / (1.0 + x.abs())
            }
        }
        UnaryOp::Mish => x * softplus(x).tanh(),
        UnaryOp::HardSwish => {
            if x <= -3.0 {
                0.0
            } else if x >= 3.0 {
                x
            } else {
                x * (x + 3.0) / 6.0
            }
        }
        UnaryOp::Tan => x.tan(),
        UnaryOp::Asin => x.asin(),
        UnaryOp::Acos => x.acos(),
        UnaryOp::Atan => x.atan(),
        UnaryOp::Sinh => x.sinh(),
        UnaryOp::Cosh => x.cosh(),
        UnaryOp::Asinh => x.asinh(),
        UnaryOp::Acosh => x.acosh(),
        UnaryOp::Atanh => x.atanh(),
        UnaryOp::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else if x.is_nan() {
                x
            } else {
                0.0
            }
        }
        UnaryOp::Round => x.round_ties_even(),
        // 0.5 * (1 + tanh(z)) is sigmoid(2z): the same function without the cancellation.
        UnaryOp::GeluTanh => {
            let z = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            x * sigmoid(2.0 * z)
        }
    }
}

/// `ln(1 + e^x)` without overflow or cancellation.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// One parameterised unary op, computed in f64 and rounded to f32.
pub fn unary_param(op: UnaryParamOp, a: f32, b: f32, x: f32) -> f32 {
    unary_param64(op, a, b, f64::from(x)) as f32
}

/// One parameterised unary op in f64, not rounded (for outputs stored in another type).
pub fn unary_param64(op: UnaryParamOp, a: f32, b: f32, x: f64) -> f64 {
    let (a, b) = (f64::from(a), f64::from(b));
    // exp(x) - 1 for x <= 0 (the negative branch of the ELU family).
    let elu = |x: f64, a: f64| if x > 0.0 { x } else { a * x.exp_m1() };
    match op {
        UnaryParamOp::LeakyRelu => {
            if x > 0.0 {
                x
            } else {
                a * x
            }
        }
        UnaryParamOp::Elu => elu(x, a),
        UnaryParamOp::Selu => b * elu(x, a),
        UnaryParamOp::Celu => nan_max(0.0, x) + nan_min(0.0, a * (x / a).exp_m1()),
        UnaryParamOp::HardSigmoid => nan_max(0.0, nan_min(1.0, a * x + b)),
        UnaryParamOp::Clip => nan_min(nan_max(x, a), b),
    }
}

/// One binary op, computed in f64 and rounded to f32.
pub fn binary(op: BinaryOp, a: f32, b: f32) -> f32 {
    binary64(op, f64::from(a), f64::from(b)) as f32
}

/// One binary op in f64, not rounded (for outputs stored in another type).
pub fn binary64(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => nan_max(a, b),
        BinaryOp::Min => nan_min(a, b),
        BinaryOp::Pow => a.powf(b),
        // Rust's `%` is C's fmod: exact, with the dividend's sign.
        BinaryOp::Mod => a % b,
    }
}

/// NumPy broadcasting of `op` over row-major `a` (`a_shape`) and `b` (`b_shape`) into
/// `out_shape`, element by element from the unmerged shapes: output index `i` is split
/// into coordinates of `out_shape`, and each input's coordinate along a dimension is 0
/// where its (left-padded) size is 1.
pub fn binary_broadcast(
    op: BinaryOp,
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out_shape: &[usize],
) -> Vec<f32> {
    binary_broadcast64(op, a, a_shape, b, b_shape, out_shape)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// [`binary_broadcast`] not rounded (for outputs stored in another type).
pub fn binary_broadcast64(
    op: BinaryOp,
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out_shape: &[usize],
) -> Vec<f64> {
    let rank = out_shape.len();
    let padded = |s: &[usize]| {
        let mut p = vec![1; rank - s.len()];
        p.extend_from_slice(s);
        p
    };
    let (pa, pb) = (padded(a_shape), padded(b_shape));
    let n: usize = out_shape.iter().product();
    let mut coord = vec![0usize; rank];
    (0..n)
        .map(|i| {
            let mut rest = i;
            for d in (0..rank).rev() {
                coord[d] = rest % out_shape[d];
                rest /= out_shape[d];
            }
            // Row-major offset of the coordinate clamped to each input's extent.
            let at = |p: &[usize]| {
                (0..rank).fold(0, |acc, d| {
                    acc * p[d] + if p[d] == 1 { 0 } else { coord[d] }
                })
            };
            binary64(op, f64::from(a[at(&pa)]), f64::from(b[at(&pb)]))
        })
        .collect()
}

/// `out[i, :] = table[indices[i], :]`, zeros for an index `>= rows`; `table` holds
/// `rows x cols` values, `out` `indices.len() x cols`.
pub fn gather(table: &[f32], rows: usize, cols: usize, indices: &[u32], out: &mut [f32]) {
    for (i, &t) in indices.iter().enumerate() {
        let dst = &mut out[i * cols..][..cols];
        match usize::try_from(t) {
            Ok(t) if t < rows => dst.copy_from_slice(&table[t * cols..][..cols]),
            _ => dst.fill(0.0),
        }
    }
}

/// Decodes `n` elements of `dtype` from little-endian bytes to f32 (exactly).
pub fn decode(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

/// Encodes f64 values as `dtype` little-endian bytes, each rounded once (to nearest
/// even, overflow to infinity, NaN stays NaN): the oracle's store for outputs of f16 and
/// bf16 storage, with no intermediate f32 rounding.
pub fn encode64(dtype: DType, values: &[f64]) -> Vec<u8> {
    // `half`'s own f64 conversions go through f32 or drop the low mantissa bits first
    // (a double rounding at ties), so the value is rounded here and converted exactly.
    match dtype {
        DType::F32 => values
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect(),
        DType::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f64(round_to(v, 11, -14, 15)).to_le_bytes())
            .collect(),
        DType::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f64(round_to(v, 8, -126, 127)).to_le_bytes())
            .collect(),
    }
}

/// `x` rounded once to the nearest value (ties to even) of a binary format with `digits`
/// significand bits and exponents `emin..=emax`, subnormals included; past the largest
/// finite value it is infinite. The result is exact in f32, so converting it to the
/// format's bits rounds nothing more.
pub fn round_to(x: f64, digits: i32, emin: i32, emax: i32) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let e = (((x.to_bits() >> 52) & 0x7ff) as i32 - 1023).max(emin);
    let quantum = pow2(e - (digits - 1));
    let r = (x / quantum).round_ties_even() * quantum;
    let max = (2.0 - pow2(1 - digits)) * pow2(emax);
    if r.abs() > max {
        x.signum() * f64::INFINITY
    } else {
        r
    }
}

/// `2^e` for `e` in the normal range of f64, built from its bits: exact everywhere
/// (`powi` need not be, and under Miri it is not).
fn pow2(e: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// Encodes f32 values as `dtype` little-endian bytes: round to nearest-even, overflow to
/// infinity, NaN stays NaN.
pub fn encode(dtype: DType, values: &[f32]) -> Vec<u8> {
    match dtype {
        DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        DType::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_beta_zero_ignores_nan_in_c() {
        let a = [1.0, 2.0];
        let b = [3.0, 4.0];
        let mut c = [f32::NAN];
        gemm(false, false, 1, 1, 2, 1.0, &a, 1, &b, 2, 0.0, &mut c, 1);
        assert_eq!(c, [11.0]);
        let mut c = [f32::NAN];
        gemm(
            false,
            false,
            1,
            1,
            2,
            0.0,
            &[f32::NAN; 2],
            1,
            &b,
            2,
            0.0,
            &mut c,
            1,
        );
        assert_eq!(c, [0.0]);
    }

    #[test]
    fn gemm_sums_from_positive_zero() {
        // 0 * -1 = -0; BLAS adds it to an accumulator that starts at +0.
        let mut c = [1.0f32];
        gemm(
            false,
            false,
            1,
            1,
            1,
            1.0,
            &[0.0],
            1,
            &[-1.0],
            1,
            0.0,
            &mut c,
            1,
        );
        assert!(c[0] == 0.0 && c[0].is_sign_positive(), "{}", c[0]);
    }

    #[test]
    fn gemm_leaves_the_padding_rows_alone() {
        // 2x2 C with ldc 3: element 2 is padding.
        let mut c = [0.0, 0.0, -7.0, 0.0, 0.0];
        gemm(
            false,
            false,
            2,
            2,
            1,
            1.0,
            &[1.0, 2.0],
            2,
            &[3.0, 4.0],
            1,
            0.0,
            &mut c,
            3,
        );
        assert_eq!(c, [3.0, 6.0, -7.0, 4.0, 8.0]);
    }

    #[test]
    fn causal_rows_that_see_nothing_are_zero() {
        // seq_q 3 > seq_kv 1: query 0 and 1 see no key, query 2 sees key 0.
        let q = [1.0; 3];
        let mut o = [9.0; 3];
        let p =
            backend_api::validate::attention(0x100, 0x200, 0x300, 0x400, 1, 1, 3, 1, 1, 1.0, true)
                .unwrap()
                .unwrap();
        attention(&p, &q, &[1.0], &[5.0], &[], &mut o);
        assert_eq!(o, [0.0, 0.0, 5.0]);
    }

    /// A plan for one batch entry of `heads` query heads over `kv_heads` key/value heads,
    /// one query row and `seq_kv` keys of one element, contiguous.
    fn gqa_plan(heads: usize, kv_heads: usize, seq_kv: usize) -> AttentionPlan {
        use backend_api::{AttentionArgs, HeadTensor};
        let args = AttentionArgs::new(
            1,
            heads,
            kv_heads,
            1,
            seq_kv,
            1,
            HeadTensor::bhsd(0x1000, heads, 1, 1),
            HeadTensor::bhsd(0x2000, kv_heads, seq_kv, 1),
            HeadTensor::bhsd(0x3000, kv_heads, seq_kv, 1),
            HeadTensor::bhsd(0x4000, heads, 1, 1),
        )
        .scale(1.0);
        backend_api::validate::attention_ex(&args).unwrap().unwrap()
    }

    #[test]
    fn grouped_heads_read_their_groups_kv_head() {
        // 4 query heads over 2 KV heads of one key each: heads 0, 1 see V = 10, heads 2, 3
        // see V = 20 (interleaving, h % 2, would give 10, 20, 10, 20).
        let p = gqa_plan(4, 2, 1);
        let mut o = [0.0; 4];
        attention(&p, &[1.0; 4], &[1.0, 1.0], &[10.0, 20.0], &[], &mut o);
        assert_eq!(o, [10.0, 10.0, 20.0, 20.0]);
    }

    #[test]
    fn masked_keys_are_skipped_and_fully_masked_rows_are_zero() {
        // Two keys; the mask excludes key 1, whose V is NaN, for head 0, and every key for
        // head 1.
        let mut p = gqa_plan(2, 1, 2);
        p.mask = Some(backend_api::Operand {
            name: "mask",
            ptr: 0x5000,
            bytes: 16,
        });
        p.mask_strides = [0, 2];
        let inf = f32::NEG_INFINITY;
        let mut o = [9.0; 2];
        attention(
            &p,
            &[1.0; 2],
            &[1.0, 1.0],
            &[3.0, f32::NAN],
            &[0.5, inf, inf, inf],
            &mut o,
        );
        assert_eq!(o, [3.0, 0.0]);
    }

    #[test]
    fn reduce_empty_axis_identities() {
        let mut out = [0.0; 1];
        for (op, want) in [
            (ReduceOp::Sum, 0.0),
            (ReduceOp::Prod, 1.0),
            (ReduceOp::Max, f32::NEG_INFINITY),
            (ReduceOp::Min, f32::INFINITY),
        ] {
            reduce(op, &[], &mut out, 1, 0, 1);
            assert_eq!(out[0], want, "{op}");
        }
        reduce(ReduceOp::Mean, &[], &mut out, 1, 0, 1);
        assert!(out[0].is_nan());
    }

    #[test]
    fn nan_propagates_through_max_min_relu() {
        assert!(binary(BinaryOp::Max, f32::NAN, 1.0).is_nan());
        assert!(binary(BinaryOp::Min, 1.0, f32::NAN).is_nan());
        assert!(unary(UnaryOp::Relu, f32::NAN).is_nan());
        let mut out = [0.0];
        reduce(ReduceOp::Max, &[1.0, f32::NAN, 3.0], &mut out, 1, 3, 1);
        assert!(out[0].is_nan());
    }

    #[test]
    fn encode64_rounds_once_from_f64() {
        // 1 + 2^-11 + 2^-40 is just above the f16 tie between 1 and 1 + 2^-10: rounding
        // through f32 (or dropping the low bits) would see the tie and give 1.
        let x = 1.0 + pow2(-11) + pow2(-40);
        assert_eq!(
            decode(DType::F16, &encode64(DType::F16, &[x]))[0],
            1.0 + pow2(-10) as f32
        );
        let y = 1.0 + pow2(-8) + pow2(-40);
        assert_eq!(
            decode(DType::BF16, &encode64(DType::BF16, &[y]))[0],
            1.0 + pow2(-7) as f32
        );
        // Ties to even, overflow, subnormals.
        let f16 = |v: f64| decode(DType::F16, &encode64(DType::F16, &[v]))[0];
        assert_eq!(f16(1.0 + pow2(-11)), 1.0);
        assert_eq!(f16(65519.0), 65504.0);
        assert_eq!(f16(65520.0), f32::INFINITY);
        assert_eq!(f16(-70000.0), f32::NEG_INFINITY);
        assert_eq!(f16(3.0 * pow2(-26)), pow2(-24) as f32); // 0.75 of the spacing
        assert_eq!(f16(pow2(-26)), 0.0);
        assert!(f16(f64::NAN).is_nan());
    }

    #[test]
    fn casts_round_to_nearest_even_and_saturate_to_inf() {
        let v = [
            1.0 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-11),
            1e6,
            f32::NAN,
        ];
        let back = decode(DType::F16, &encode(DType::F16, &v));
        assert_eq!(back[0], 1.0); // tie rounds to even
        assert_eq!(back[1], 1.0 + 2.0 * 2f32.powi(-10));
        assert_eq!(back[2], f32::INFINITY);
        assert!(back[3].is_nan());
    }
}
