//! Operands packed into one allocation, closer together than the 256-byte storage
//! binding alignment, and inputs that overlap each other: what a framework that carves
//! every tensor out of one big allocation does. WebGPU in browsers refuses a dispatch
//! whose writable bindings overlap, and a binding starts at the 256-byte boundary below
//! its operand, so each of these once failed in Chromium while passing on Vulkan.
//! Every scenario runs on the device and on the CPU oracle; the whole allocation must
//! come out the same (so writes outside the named ranges are caught too).

use backend_api::{
    BackendResult, BackendTranspose, BinaryOp, ComputeBackend, DType, ReduceOp, UnaryOp,
};
use backend_cpu::CpuBackend;

/// f32 elements of the one allocation each scenario uses.
const LEN: usize = 512;

type Scenario = fn(&dyn ComputeBackend, u64) -> BackendResult<()>;

/// Element `i` of the allocation as a byte address.
fn at(base: u64, i: u64) -> u64 {
    base + 4 * i
}

const N: BackendTranspose = BackendTranspose::NoTrans;

fn scenarios() -> Vec<(&'static str, Scenario)> {
    vec![
        ("unary, output right after the input", |b, p| {
            b.unary(UnaryOp::Neg, p, at(p, 5), 5)
        }),
        ("unary, output right before the input", |b, p| {
            b.unary(UnaryOp::Abs, at(p, 9), at(p, 1), 8)
        }),
        ("binary, a and b overlapping, output near", |b, p| {
            b.binary(BinaryOp::Add, p, at(p, 3), at(p, 20), 8)
        }),
        ("binary, all three disjoint in 256 bytes", |b, p| {
            b.binary(BinaryOp::Mul, at(p, 1), at(p, 9), at(p, 17), 8)
        }),
        ("binary in place, b right after", |b, p| {
            b.binary(BinaryOp::Sub, p, at(p, 8), p, 8)
        }),
        ("gemm, A, B and C adjacent", |b, p| {
            b.gemm(N, N, 2, 2, 3, 1.0, p, 2, at(p, 6), 3, 0.5, at(p, 12), 2)
        }),
        ("gemm, A and B overlapping, C adjacent", |b, p| {
            b.gemm(N, N, 3, 2, 3, 1.0, p, 3, at(p, 4), 3, 0.0, at(p, 13), 3)
        }),
        ("batched_gemm, three batches packed", |b, p| {
            b.batched_gemm(
                N,
                N,
                2,
                2,
                2,
                1.0,
                p,
                2,
                4,
                at(p, 12),
                2,
                4,
                0.0,
                at(p, 24),
                2,
                4,
                3,
            )
        }),
        ("conv2d, input, filter and output adjacent", |b, p| {
            b.conv2d_forward(
                p,
                &[1, 1, 4, 4],
                at(p, 16),
                &[1, 1, 2, 2],
                at(p, 20),
                &[1, 1, 3, 3],
                &[1, 1],
                &[0, 0],
            )
        }),
        ("attention, Q, K and V overlapping, O near", |b, p| {
            b.attention(p, at(p, 2), at(p, 4), at(p, 40), 1, 1, 2, 2, 4, 0.5, false)
        }),
        ("reduce, output right after the input", |b, p| {
            b.reduce(ReduceOp::Sum, p, at(p, 12), &[4, 3], 1)
        }),
        ("cast f32 -> f16, destination right after", |b, p| {
            b.cast(p, DType::F32, at(p, 8), DType::F16, 8)
        }),
        ("copy_dtod, unaligned and adjacent", |b, p| {
            b.copy_dtod(at(p, 9) + 1, p + 2, 30)
        }),
        ("two ops in a row on one allocation", |b, p| {
            b.unary(UnaryOp::Square, p, at(p, 4), 4)?;
            b.binary(BinaryOp::Max, at(p, 4), at(p, 6), at(p, 10), 4)
        }),
    ]
}

/// Small halves, so that every result but attention's is exact.
fn initial() -> Vec<f32> {
    (0..LEN)
        .map(|i| ((i * 37 + 11) % 17) as f32 * 0.5 - 4.0)
        .collect()
}

async fn run_one(b: &dyn ComputeBackend, scenario: Scenario) -> BackendResult<Vec<f32>> {
    let data = initial();
    let p = b.alloc(4 * LEN)?;
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let result = async {
        b.copy_htod(p, &bytes)?;
        scenario(b, p)?;
        let mut out = vec![0u8; 4 * LEN];
        b.copy_dtoh_async(&mut out, p).await?;
        Ok(out
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    .await;
    b.free(p)?;
    result
}

/// Runs every scenario on `dev` and on the CPU oracle; the error lists every difference.
pub(crate) async fn packed_operands_match_the_cpu(dev: &dyn ComputeBackend) -> Result<(), String> {
    let mut cpu = CpuBackend::new();
    cpu.init().map_err(|e| format!("cpu init: {e}"))?;
    let mut problems = Vec::new();
    for (name, scenario) in scenarios() {
        let want = match run_one(&cpu, scenario).await {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{name}: the CPU oracle refused it: {e}"));
                continue;
            }
        };
        match run_one(dev, scenario).await {
            Err(e) => problems.push(format!("{name}: {e}")),
            Ok(got) => {
                let bad = got.iter().zip(&want).position(|(g, w)| {
                    !(g.to_bits() == w.to_bits() || (g - w).abs() <= 1e-5 * w.abs().max(1.0))
                });
                if let Some(i) = bad {
                    problems.push(format!(
                        "{name}: element {i} of the allocation is {} but the CPU gives {}",
                        got[i], want[i]
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
