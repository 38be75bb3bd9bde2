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
}
