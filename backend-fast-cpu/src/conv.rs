//! conv2d_forward as im2col + gemm.
//!
//! Per image, the output `[K, OH * OW]` (row-major) is `filter [K, C*R*S] x col [C*R*S,
//! OH * OW]`, which column-major is `out^T = col^T * filter^T`: a NoTrans x NoTrans gemm
//! with `m = OH * OW`, `n = K`, `k = C * R * S`. A 1x1 filter with stride 1 and no
//! padding needs no col matrix: the image is it. Large images are done in bands of output
//! rows so that the col buffer stays bounded.
//!
//! Padding taps read zeros, where the oracle skips them. The two agree unless the filter
//! holds an infinity or NaN (`0 * inf` is NaN); such filters take a direct loop that skips
//! padding as the oracle does.

use backend_api::validate::Conv2dPlan;
use rayon::prelude::*;

use crate::gemm::sgemm;

/// At most this many f32 in one col buffer (64 MiB).
const COL_MAX: usize = 16 << 20;

pub(crate) fn conv2d(p: &Conv2dPlan, input: &[f32], filter: &[f32], bias: &[f32], out: &mut [f32]) {
    let plane = p.oh * p.ow;
    let out = &mut out[..p.n * p.k * plane];
    if !p.is_plain() {
        // Groups, dilation, a bias or asymmetric padding: the direct loop, one output
        // plane per task (a depthwise filter is R * S taps per output, no gemm to win).
        direct(p, input, filter, bias, out);
        return;
    }
    if input.is_empty() || filter.is_empty() || p.c == 0 || p.h == 0 || p.w == 0 {
        out.fill(0.0);
        return;
    }
    let padded = p.pad_h > 0 || p.pad_w > 0;
    if padded && filter.iter().any(|v| !v.is_finite()) {
        direct(p, input, filter, &[], out);
        return;
    }
    let crs = p.c * p.r * p.s;
    let image = p.c * p.h * p.w;
    let direct_1x1 = p.r == 1 && p.s == 1 && p.stride_h == 1 && p.stride_w == 1 && !padded;
    // Output rows per band.
    let band = (COL_MAX / (crs * p.ow).max(1)).clamp(1, p.oh);
    let mut col = if direct_1x1 {
        Vec::new()
    } else {
        vec![0.0f32; crs * band * p.ow]
    };
    for b in 0..p.n {
        let x = &input[b * image..][..image];
        let y = &mut out[b * p.k * plane..][..p.k * plane];
        if direct_1x1 {
            // col^T is the image itself: [C, H*W] row-major = column-major (H*W) x C.
            sgemm(
                false, false, plane, p.k, crs, 1.0, x, plane, filter, crs, 0.0, y, plane, true,
            );
            continue;
        }
        let mut y0 = 0;
        while y0 < p.oh {
            let rows = band.min(p.oh - y0);
            let m = rows * p.ow;
            im2col(p, x, y0, rows, &mut col[..crs * m]);
            sgemm(
                false,
                false,
                m,
                p.k,
                crs,
                1.0,
                &col,
                m,
                filter,
                crs,
                0.0,
                &mut y[y0 * p.ow..],
                plane,
                true,
            );
            y0 += rows;
        }
    }
}

/// `col[(ch, fy, fx), (y - y0, x)]` (row-major, `rows * OW` columns) = the input under tap
/// `(fy, fx)` of output pixel `(y, x)`, zero in the padding.
fn im2col(p: &Conv2dPlan, x: &[f32], y0: usize, rows: usize, col: &mut [f32]) {
    let m = rows * p.ow;
    let rs = p.r * p.s;
    col.par_chunks_mut(m).enumerate().for_each(|(row, dst)| {
        let (ch, tap) = (row / rs, row % rs);
        let (fy, fx) = (tap / p.s, tap % p.s);
        let src = &x[ch * p.h * p.w..][..p.h * p.w];
        for (yy, dst) in dst.chunks_mut(p.ow).enumerate() {
            let iy = ((y0 + yy) * p.stride_h + fy) as isize - p.pad_h as isize;
            if iy < 0 || iy >= p.h as isize {
                dst.fill(0.0);
                continue;
            }
            let line = &src[iy as usize * p.w..][..p.w];
            for (ox, d) in dst.iter_mut().enumerate() {
                let ix = (ox * p.stride_w + fx) as isize - p.pad_w as isize;
                *d = if ix < 0 || ix >= p.w as isize {
                    0.0
                } else {
                    line[ix as usize]
                };
            }
        }
    });
}

/// The oracle's loop in f32 (groups, dilation, bias): padding taps are skipped, not
/// multiplied by zero.
fn direct(p: &Conv2dPlan, input: &[f32], filter: &[f32], bias: &[f32], out: &mut [f32]) {
    let plane = p.oh * p.ow;
    let (cg, kg) = (p.group_channels(), p.group_filters());
    out.par_chunks_mut(plane).enumerate().for_each(|(pi, out)| {
        let (b, kk) = (pi / p.k, pi % p.k);
        let c0 = kk / kg * cg;
        let start = bias.get(kk).copied().unwrap_or(0.0);
        for y in 0..p.oh {
            for x in 0..p.ow {
                let mut acc = start;
                for ch in 0..cg {
                    let image = &input[(b * p.c + c0 + ch) * p.h * p.w..];
                    let taps = &filter[(kk * cg + ch) * p.r * p.s..];
                    for fy in 0..p.r {
                        let iy = (y * p.stride_h + fy * p.dil_h) as isize - p.pad_h as isize;
                        if iy < 0 || iy >= p.h as isize {
                            continue;
                        }
                        let line = &image[iy as usize * p.w..][..p.w];
                        for fx in 0..p.s {
                            let ix = (x * p.stride_w + fx * p.dil_w) as isize - p.pad_w as isize;
                            if ix < 0 || ix >= p.w as isize {
                                continue;
                            }
                            acc += line[ix as usize] * taps[fy * p.s + fx];
                        }
                    }
                }
                out[y * p.ow + x] = acc;
            }
        }
    });
}
