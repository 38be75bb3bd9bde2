//! The enums the trait's methods take.

use std::fmt;

macro_rules! op_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[ $( Self::$variant, )+ ];

            /// The lower-case name used in error messages, reports and command lines.
            pub const fn name(self) -> &'static str {
                match self { $( Self::$variant => $text, )+ }
            }

            /// The variant whose [`name`](Self::name) is `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.name().eq_ignore_ascii_case(name))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

op_enum! {
    /// How a gemm operand is read: as stored, or transposed.
    BackendTranspose {
        /// Use the matrix as stored.
        NoTrans => "n",
        /// Use the transpose.
        Trans => "t",
        /// Conjugate transpose; identical to [`Trans`](Self::Trans) for real data.
        ConjTrans => "c",
    }
}

impl BackendTranspose {
    /// True for `Trans` and `ConjTrans`.
    pub const fn is_transposed(self) -> bool {
        !matches!(self, Self::NoTrans)
    }
}

op_enum! {
    /// What a row op computes over each row (the last, contiguous axis): the ops
    /// `softmax`, `log_softmax`, `layer_norm` and `rms_norm`.
    RowOp {
        /// `exp(x - max) / sum`.
        Softmax => "softmax",
        /// `x - max - log(sum)`.
        LogSoftmax => "log_softmax",
        /// `(x - mean) / sqrt(var + eps) * gamma + beta`.
        LayerNorm => "layer_norm",
        /// `x / sqrt(mean(x^2) + eps) * gamma`.
        RmsNorm => "rms_norm",
    }
}

op_enum! {
    /// Reductions over one axis.
    ReduceOp {
        /// Sum; 0 over an empty axis.
        Sum => "sum",
        /// Maximum, propagating NaN; -inf over an empty axis.
        Max => "max",
        /// Minimum, propagating NaN; +inf over an empty axis.
        Min => "min",
        /// Arithmetic mean; NaN over an empty axis.
        Mean => "mean",
        /// Product; 1 over an empty axis.
        Prod => "prod",
        /// Sum of squares; 0 over an empty axis.
        SumSquare => "sum_square",
        /// Sum of absolute values (the L1 norm); 0 over an empty axis.
        L1 => "l1",
        /// Square root of the sum of squares (the L2 norm); 0 over an empty axis.
        L2 => "l2",
        /// `max + log(sum(exp(x - max)))`, stable; -inf over an empty axis, +inf when
        /// any value is +inf (and no NaN).
        LogSumExp => "logsumexp",
    }
}

op_enum! {
    /// Elementwise functions of one f32.
    UnaryOp {
        /// `max(x, 0)`, propagating NaN.
        Relu => "relu",
        /// `1 / (1 + exp(-x))`.
        Sigmoid => "sigmoid",
        /// Hyperbolic tangent.
        Tanh => "tanh",
        /// `e^x`.
        Exp => "exp",
        /// Natural logarithm; `-inf` at 0, NaN below.
        Log => "log",
        /// Square root; NaN below 0.
        Sqrt => "sqrt",
        /// Absolute value.
        Abs => "abs",
        /// Negation.
        Neg => "neg",
        /// GELU in its exact form, `x/2 * (1 + erf(x/sqrt(2)))`.
        Gelu => "gelu",
        /// `x * sigmoid(x)`.
        Silu => "silu",
        /// `1 / x`.
        Recip => "recip",
        /// `1 / sqrt(x)`.
        Rsqrt => "rsqrt",
        /// `x * x`.
        Square => "square",
        /// Sine.
        Sin => "sin",
        /// Cosine.
        Cos => "cos",
        /// Round toward -inf.
        Floor => "floor",
        /// Round toward +inf.
        Ceil => "ceil",
        /// The error function.
        Erf => "erf",
        /// `log(1 + exp(x))`, computed stably (`x` for large `x`, `exp(x)` for very
        /// negative `x`).
        Softplus => "softplus",
        /// `x / (1 + |x|)`; +-1 at +-inf.
        Softsign => "softsign",
        /// `x * tanh(softplus(x))`; NaN at -inf, as IEEE arithmetic of the formula gives.
        Mish => "mish",
        /// `x * relu6(x + 3) / 6`: 0 for `x <= -3` (-inf included), `x` for `x >= 3`.
        HardSwish => "hardswish",
        /// Tangent.
        Tan => "tan",
        /// Arcsine; NaN outside [-1, 1].
        Asin => "asin",
        /// Arccosine; NaN outside [-1, 1].
        Acos => "acos",
        /// Arctangent.
        Atan => "atan",
        /// Hyperbolic sine.
        Sinh => "sinh",
        /// Hyperbolic cosine.
        Cosh => "cosh",
        /// Inverse hyperbolic sine.
        Asinh => "asinh",
        /// Inverse hyperbolic cosine; NaN below 1.
        Acosh => "acosh",
        /// Inverse hyperbolic tangent; +-inf at +-1, NaN outside [-1, 1].
        Atanh => "atanh",
        /// -1, 0 or 1 by the sign of `x`; +0 for both zeros (as NumPy and PyTorch); NaN
        /// stays NaN.
        Sign => "sign",
        /// Round to the nearest integer, halves to even.
        Round => "round",
        /// GELU in its tanh approximation, `x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715
        /// x^3)))`, computed as `x * sigmoid(2 * sqrt(2/pi) * (x + 0.044715 x^3))` (the
        /// same function, without the cancellation of `1 + tanh` for negative `x`).
        GeluTanh => "gelu_tanh",
    }
}

op_enum! {
    /// Elementwise functions of one f32 with one or two f32 parameters `a`, `b`, for
    /// [`unary_param`](crate::ComputeBackend::unary_param). Parameters an op does not
    /// use are ignored.
    UnaryParamOp {
        /// `x` for `x > 0`, else `a * x` (`a` the negative slope, finite).
        LeakyRelu => "leaky_relu",
        /// `x` for `x > 0`, else `a * (exp(x) - 1)` (`a` finite).
        Elu => "elu",
        /// `b * (x for x > 0, else a * (exp(x) - 1))`: ONNX's `Selu(alpha = a, gamma =
        /// b)`, PyTorch's with `a = 1.6732632`, `b = 1.0507010` (both finite).
        Selu => "selu",
        /// `max(0, x) + min(0, a * (exp(x / a) - 1))` (`a` finite and non-zero).
        Celu => "celu",
        /// `max(0, min(1, a * x + b))` (both finite; ONNX's default is `a = 0.2, b =
        /// 0.5`, PyTorch's `a = 1/6, b = 0.5`).
        HardSigmoid => "hard_sigmoid",
        /// `min(max(x, a), b)`, NaN propagating; `a <= b`, either may be infinite. A zero
        /// clipped at a zero bound may keep either sign.
        Clip => "clip",
    }
}

op_enum! {
    /// Elementwise functions of two f32 operands of the same length.
    BinaryOp {
        /// `a + b`.
        Add => "add",
        /// `a - b`.
        Sub => "sub",
        /// `a * b`.
        Mul => "mul",
        /// `a / b`.
        Div => "div",
        /// Maximum, propagating NaN.
        Max => "max",
        /// Minimum, propagating NaN.
        Min => "min",
        /// `a^b` with IEEE `pow` special cases.
        Pow => "pow",
        /// C `fmod`: `a - trunc(a / b) * b` computed exactly, with the sign of `a`; NaN
        /// when `b` is 0 or `a` infinite, `a` when `b` is infinite and `a` finite.
        Mod => "mod",
    }
}

op_enum! {
    /// Element types for [`cast`](crate::ComputeBackend::cast) and
    /// [`gemm_ex`](crate::ComputeBackend::gemm_ex).
    DType {
        /// IEEE binary32.
        F32 => "f32",
        /// IEEE binary16.
        F16 => "f16",
        /// bfloat16: the top 16 bits of an f32.
        BF16 => "bf16",
    }
}

impl DType {
    /// Bytes per element; also the required alignment of an operand of this type.
    pub const fn size_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
        }
    }
}

op_enum! {
    /// GGML block formats of [`gemm_q`](crate::ComputeBackend::gemm_q)'s weights: 32
    /// values per block along k, bit-compatible with GGUF tensors of these types.
    QuantFormat {
        /// An f16 scale `d`, then 32 `i8`: `x = q * d` (34 bytes).
        Q8_0 => "q8_0",
        /// An f16 scale `d`, then 16 bytes: element `j < 16` is the low nibble of byte
        /// `j`, element `j + 16` its high nibble; `x = (nibble - 8) * d` (18 bytes).
        Q4_0 => "q4_0",
    }
}

impl QuantFormat {
    /// Values per block.
    pub const BLOCK: usize = 32;

    /// Bytes per block: the 2-byte scale and the quants.
    pub const fn block_bytes(self) -> usize {
        match self {
            Self::Q8_0 => 34,
            Self::Q4_0 => 18,
        }
    }

    /// Quantizes `rows x k` f32 weights, row-major, into this format as GGML's reference
    /// quantizer does (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`; bit for bit what
    /// the `gguf` package writes, which the fixtures check): per block of 32, Q8_0 takes
    /// `d = max|x| / 127` and `q = round(x / d)` (half away from zero); Q4_0 takes the
    /// value of largest magnitude `m`, `d = m / -8` and `q = min(15, trunc(x / d + 8.5))`;
    /// `1 / d` in f32 (0 for an all-zero block) and `d` stored as f16. The result is
    /// `gemm_q`'s A: row `i` at `i * (k / 32) * block_bytes`.
    ///
    /// Errors: `InvalidArgument` when `k` is not a multiple of 32 or `weights` does not
    /// hold `rows * k` values.
    ///
    /// ```
    /// use backend_api::QuantFormat;
    /// let w: Vec<f32> = (0..64).map(|i| i as f32 - 32.0).collect();
    /// let q = QuantFormat::Q4_0.quantize(&w, 1, 64).unwrap();
    /// assert_eq!(q.len(), 2 * 18);
    /// // The first block's largest magnitude is -32: d = 4 (f16 0x4400).
    /// assert_eq!(&q[..2], &[0x00, 0x44]);
    /// ```
    pub fn quantize(self, weights: &[f32], rows: usize, k: usize) -> crate::BackendResult<Vec<u8>> {
        if !k.is_multiple_of(Self::BLOCK) {
            return Err(crate::BackendError::InvalidArgument(format!(
                "quantize {self}: k = {k} is not a multiple of {}",
                Self::BLOCK
            )));
        }
        if rows.checked_mul(k) != Some(weights.len()) {
            return Err(crate::BackendError::InvalidArgument(format!(
                "quantize {self}: {} weights for rows x k = {rows} x {k}",
                weights.len()
            )));
        }
        let mut out = Vec::with_capacity(weights.len() / Self::BLOCK * self.block_bytes());
        for x in weights.chunks_exact(Self::BLOCK) {
            let d = match self {
                Self::Q8_0 => x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0,
                Self::Q4_0 => {
                    // The first value of the largest magnitude, with its sign.
                    let mut max = 0.0f32;
                    for &v in x {
                        if v.abs() > max.abs() {
                            max = v;
                        }
                    }
                    max / -8.0
                }
            };
            let id = if d == 0.0 { 0.0 } else { 1.0 / d };
            out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
            match self {
                Self::Q8_0 => out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8)),
                Self::Q4_0 => {
                    let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
                    out.extend((0..16).map(|j| q(x[j]) | (q(x[j + 16]) << 4)));
                }
            }
        }
        Ok(out)
    }
}

/// What a backend has allocated, from [`memory_info`](crate::ComputeBackend::memory_info).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryInfo {
    /// Bytes in live allocations, as the caller asked for them.
    pub allocated_bytes: u64,
    /// Bytes the backend holds from the device or host, including pools and padding;
    /// `>= allocated_bytes` except while freed memory waits for queued work to finish.
    pub reserved_bytes: u64,
    /// Number of live allocations.
    pub live_allocations: u64,
    /// Bytes this backend has copied through intermediate host-visible buffers since
    /// `init` (staging belts, readback staging, temporaries), counted once per copy. A
    /// transfer that reads or writes device memory in place (the CPU backends, mapped
    /// unified memory, a browser's `writeBuffer` on a view of linear memory) adds 0, so
    /// "zero copies" is a measured claim. Copies a driver or browser makes internally are
    /// not visible here.
    pub staged_bytes: u64,
}
