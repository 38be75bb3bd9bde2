//! `gemm_q`: the weights dequantized in bands of rows (in parallel), each band one f32
//! gemm against B through `gemm::sgemm`, so prefill runs at f32 gemm speed and decode
//! reads each quantized weight once.

use backend_api::QuantFormat;
use backend_api::validate::GemmQPlan;
use rayon::prelude::*;

use crate::gemm::sgemm;

/// f32 values per dequantized band (16 MiB).
const BAND: usize = 4 << 20;

/// Dequantizes `rows` rows of `k` values from `bytes` into `out` (row-major).
fn dequantize(format: QuantFormat, bytes: &[u8], k: usize, out: &mut [f32]) {
    let per_row = k / QuantFormat::BLOCK;
    let block = format.block_bytes();
    out.par_chunks_mut(k)
        .zip(bytes.par_chunks(per_row * block))
        .for_each(|(row, src)| {
            for (vals, blk) in row
                .chunks_exact_mut(QuantFormat::BLOCK)
                .zip(src.chunks_exact(block))
            {
                let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                let q = &blk[2..];
                match format {
                    QuantFormat::Q8_0 => {
                        for (v, &x) in vals.iter_mut().zip(q) {
                            *v = f32::from(x as i8) * d;
                        }
                    }
                    QuantFormat::Q4_0 => {
                        for (j, &x) in q.iter().enumerate() {
                            vals[j] = (f32::from(x & 15) - 8.0) * d;
                            vals[j + 16] = (f32::from(x >> 4) - 8.0) * d;
                        }
                    }
                }
            }
        });
}

/// `C = alpha * A * B + beta * C` over checked, resolved operands (`a` empty when the
/// product is not read; `b` widened to f32).
pub(crate) fn gemm_q(p: &GemmQPlan, a: &[u8], b: &[f32], c: &mut [f32]) {
    let (alpha, beta) = (p.alpha as f32, p.beta as f32);
    if !p.reads_ab() {
        // C = beta * C (or zeros), as sgemm does without a product.
        sgemm(
            true,
            false,
            p.m,
            p.n,
            0,
            0.0,
            &[],
            1,
            &[],
            p.ldb,
            beta,
            c,
            p.ldc,
            true,
        );
        return;
    }
    let band = (BAND / p.k).clamp(1, p.m);
    let mut weights = vec![0.0f32; band * p.k];
    for r0 in (0..p.m).step_by(band) {
        let rows = band.min(p.m - r0);
        let w = &mut weights[..rows * p.k];
        dequantize(
            p.format,
            &a[r0 * p.row_bytes()..][..rows * p.row_bytes()],
            p.k,
            w,
        );
        sgemm(
            true,
            false,
            rows,
            p.n,
            p.k,
            alpha,
            w,
            p.k,
            b,
            p.ldb,
            beta,
            &mut c[r0..],
            p.ldc,
            true,
        );
    }
}
