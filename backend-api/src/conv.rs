//! The arguments of [`ComputeBackend::conv2d_forward_ex`](crate::ComputeBackend::conv2d_forward_ex).

/// A 2-D convolution with dilation, groups, asymmetric padding and a bias: input NCHW
/// `[N, C, H, W]`, filter `[K, C / groups, R, S]`, output `[N, K, OH, OW]`, all
/// contiguous (f32 unless `dtype` says otherwise), with `OH = (H + top + bottom - dh * (R - 1) - 1) / sh + 1` (likewise
/// OW). Output channel `k` of group `g = k / (K / groups)` sees input channels
/// `g * C / groups ..` of its group; `groups == C == K` is depthwise. `bias` (optional)
/// is `K` values added to each output channel.
///
/// [`new`](Self::new) gives stride 1, no padding, dilation 1, one group and no bias (so
/// `conv2d_forward`'s call); the builder methods set the rest.
///
/// ```
/// use backend_api::Conv2dArgs;
/// // A depthwise 3x3 over 32 channels, stride 1, "same" padding, with a bias.
/// let (x, w, y, bias) = (0x1000, 0x20000, 0x40000, 0x60000);
/// let args = Conv2dArgs::new(x, [1, 32, 56, 56], w, [32, 1, 3, 3], y, [1, 32, 56, 56])
///     .padding([1, 1, 1, 1])
///     .groups(32)
///     .bias(bias);
/// assert_eq!(args.groups, 32);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dArgs {
    /// The input's address.
    pub input: u64,
    /// `[N, C, H, W]`.
    pub input_shape: [usize; 4],
    /// The filter's address.
    pub filter: u64,
    /// `[K, C / groups, R, S]`.
    pub filter_shape: [usize; 4],
    /// The output's address.
    pub output: u64,
    /// `[N, K, OH, OW]`; must be the expected shape.
    pub output_shape: [usize; 4],
    /// `[sh, sw]`, each >= 1.
    pub stride: [usize; 2],
    /// Zeros added `[top, left, bottom, right]`.
    pub padding: [usize; 4],
    /// `[dh, dw]`, each >= 1: the filter's taps are `dh` rows and `dw` columns apart.
    pub dilation: [usize; 2],
    /// Channel groups, dividing both C and K.
    pub groups: usize,
    /// `K` values added to each output channel.
    pub bias: Option<u64>,
    /// Storage of the input, filter, bias and output: f32, or f16/bf16 (widened exactly,
    /// accumulated in f32 or better, the output rounded once).
    pub dtype: crate::DType,
}

impl Conv2dArgs {
    /// Stride 1, no padding, dilation 1, one group, no bias.
    pub const fn new(
        input: u64,
        input_shape: [usize; 4],
        filter: u64,
        filter_shape: [usize; 4],
        output: u64,
        output_shape: [usize; 4],
    ) -> Self {
        Self {
            input,
            input_shape,
            filter,
            filter_shape,
            output,
            output_shape,
            stride: [1, 1],
            padding: [0; 4],
            dilation: [1, 1],
            groups: 1,
            bias: None,
            dtype: crate::DType::F32,
        }
    }

    /// `[sh, sw]`.
    pub const fn stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = stride;
        self
    }

    /// `[top, left, bottom, right]`.
    pub const fn padding(mut self, padding: [usize; 4]) -> Self {
        self.padding = padding;
        self
    }

    /// `[dh, dw]`.
    pub const fn dilation(mut self, dilation: [usize; 2]) -> Self {
        self.dilation = dilation;
        self
    }

    /// Channel groups.
    pub const fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// A bias of `K` values (of the args' dtype).
    pub const fn bias(mut self, bias: u64) -> Self {
        self.bias = Some(bias);
        self
    }

    /// With every operand stored as `dtype`.
    pub const fn dtype(mut self, dtype: crate::DType) -> Self {
        self.dtype = dtype;
        self
    }
}
