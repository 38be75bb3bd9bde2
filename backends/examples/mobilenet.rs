//! A MobileNetV2 inverted-residual block, built only from `ComputeBackend` calls:
//!
//! ```text
//! h = relu6(conv1x1(x) + b1)          conv2d_forward_ex with a bias; relu6 = unary Relu,
//!                                     then binary_broadcast Min against the scalar 6
//! h = relu6(depthwise3x3(h) + b2)     conv2d_forward_ex, groups = channels, "same" padding
//! y = x + conv1x1(h) + b3             conv2d_forward_ex, then binary Add (the residual)
//! ```
//!
//! on a `[2, 16, 14, 14]` input expanded 6x to 96 channels. It runs on the backend the
//! `backends` features and `BACKEND` select and on every other backend compiled in,
//! checks that they agree, and `backends/tests/examples.rs` checks the output against the
//! numpy reference `examples/reference/mobilenet.py` (its output is `mobilenet.json`):
//!
//! ```sh
//! cargo run --release -p backends --example mobilenet
//! cargo run --release -p backends --features webgpu --example mobilenet
//! ```

#[allow(
    dead_code,
    reason = "this example uses the harness, not the planned arenas"
)]
pub(crate) mod common;

use std::process::ExitCode;

use backends::{BackendResult, BinaryOp, Buffer, ComputeBackend, Conv2dArgs, UnaryOp};
use common::{Row, values};

pub(crate) const N: usize = 2;
pub(crate) const C: usize = 16;
pub(crate) const H: usize = 14;
pub(crate) const W: usize = 14;
const EXPAND: usize = 6;
const E: usize = C * EXPAND;
const SEED: u64 = 23;

/// The input and weights, as `reference/mobilenet.py` makes them.
pub(crate) struct Weights {
    pub(crate) x: Vec<f32>,
    pub(crate) w_expand: Vec<f32>,
    pub(crate) b_expand: Vec<f32>,
    pub(crate) w_dw: Vec<f32>,
    pub(crate) b_dw: Vec<f32>,
    pub(crate) w_project: Vec<f32>,
    pub(crate) b_project: Vec<f32>,
}

impl Weights {
    pub(crate) fn new() -> Self {
        Self {
            x: values(SEED, N * C * H * W, 4.0),
            w_expand: values(SEED + 1, E * C, 0.5),
            b_expand: values(SEED + 2, E, 0.1),
            w_dw: values(SEED + 3, E * 9, 0.5),
            b_dw: values(SEED + 4, E, 0.1),
            w_project: values(SEED + 5, C * E, 1.0 / (E as f32).sqrt()),
            b_project: values(SEED + 6, C, 0.1),
        }
    }
}

/// `min(max(x, 0), 6)` in place over `shape`: a unary Relu and a broadcast Min against a
/// one-element (rank 0) tensor holding 6.
fn relu6(b: &dyn ComputeBackend, x: u64, shape: &[usize], six: u64) -> BackendResult<()> {
    let n = shape.iter().product();
    b.unary(UnaryOp::Relu, x, x, n)?;
    b.binary_broadcast(BinaryOp::Min, x, shape, six, &[], x, shape)
}

/// The block on `b`: returns `y`, `[N, C, H, W]`.
pub(crate) fn forward(b: &dyn ComputeBackend) -> BackendResult<Vec<f32>> {
    let w = Weights::new();
    let put = |v: &[f32]| Buffer::from_slice(b, v);
    let x = put(&w.x)?;
    let (w1, b1) = (put(&w.w_expand)?, put(&w.b_expand)?);
    let (w2, b2) = (put(&w.w_dw)?, put(&w.b_dw)?);
    let (w3, b3) = (put(&w.w_project)?, put(&w.b_project)?);
    let six = put(&[6.0])?;
    let wide = [N, E, H, W];
    let h1 = Buffer::<f32>::zeros(b, N * E * H * W)?;
    let h2 = Buffer::<f32>::zeros(b, N * E * H * W)?;
    let y = Buffer::<f32>::zeros(b, N * C * H * W)?;

    let expand = Conv2dArgs::new(
        x.ptr(),
        [N, C, H, W],
        w1.ptr(),
        [E, C, 1, 1],
        h1.ptr(),
        wide,
    )
    .bias(b1.ptr());
    b.conv2d_forward_ex(&expand)?;
    relu6(b, h1.ptr(), &wide, six.ptr())?;
    let depthwise = Conv2dArgs::new(h1.ptr(), wide, w2.ptr(), [E, 1, 3, 3], h2.ptr(), wide)
        .padding([1, 1, 1, 1])
        .groups(E)
        .bias(b2.ptr());
    b.conv2d_forward_ex(&depthwise)?;
    relu6(b, h2.ptr(), &wide, six.ptr())?;
    let project = Conv2dArgs::new(
        h2.ptr(),
        wide,
        w3.ptr(),
        [C, E, 1, 1],
        y.ptr(),
        [N, C, H, W],
    )
    .bias(b3.ptr());
    b.conv2d_forward_ex(&project)?;
    b.binary(BinaryOp::Add, y.ptr(), x.ptr(), y.ptr(), N * C * H * W)?;
    y.read()
}

/// Runs the block on every backend available and compares; `reps` timed runs each.
pub(crate) fn run(reps: usize) -> Result<Vec<Row>, String> {
    let what = format!(
        "MobileNetV2 inverted residual: [{N}, {C}, {H}, {W}], expansion {EXPAND} ({E} channels), \
         depthwise 3x3, biases, ReLU6, residual"
    );
    common::run_everywhere(&what, forward, reps)
}

#[cfg_attr(test, allow(dead_code, reason = "the tests call run(), not main"))]
fn main() -> ExitCode {
    common::exit_code(run(5).map(drop))
}
