//! conv2d_forward: `kernels/conv2d.wgsl` (implicit GEMM, or one thread per output).

use backend_api::validate::Conv2dPlan;
use backend_api::{BackendError, BackendResult};
use bytemuck::bytes_of;

use super::gemm::tile_columns;
use super::{groups_of_256, u32_saturating, union};
use crate::kernels::{Kernel, PipelineKey, params};
use crate::{Ctx, State};

/// The convolution kernel for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConvChoice {
    /// Implicit GEMM (`conv2d::implicit`) on tiles of 128 output positions x `nb` output
    /// channels, a `groups.0 x groups.1` grid; the filter read as vec4s when `f_vec4`.
    Implicit {
        nb: u32,
        f_vec4: bool,
        groups: (u64, u64),
    },
    /// One thread per output (`conv2d::main`), `groups` workgroups of 256.
    Direct { groups: u64 },
}

/// Picks the kernel for `total` outputs at `rows` output positions (batch x height x
/// width) and `k` output channels of `c x r x s` taps each. `filter16_byte`: where the
/// filter starts in its 16-byte-granule binding, `None` when it has none (no filter, or
/// one read through the input's binding); `narrow_below` as for [`tile_columns`].
fn choose(
    empty_input: bool,
    c: usize,
    k: usize,
    r: usize,
    s: usize,
    rows: u64,
    total: u64,
    filter16_byte: Option<u64>,
    narrow_below: usize,
) -> ConvChoice {
    // Implicit GEMM pays once there are enough output channels to fill much of its
    // 128-wide tile and enough work to fill the device; small problems go direct.
    let implicit = !empty_input && k >= 16 && total >= 4096;
    if !implicit {
        return ConvChoice::Direct {
            groups: groups_of_256(total),
        };
    }
    let nb = tile_columns(rows as usize, k, 1, narrow_below) as u32;
    // 16-byte filter loads when every output channel's taps start on a 16-byte boundary
    // (C * R * S a multiple of 4), else scalar ones.
    let f_vec4 =
        filter16_byte.is_some_and(|byte| byte.is_multiple_of(16) && (c * r * s).is_multiple_of(4));
    ConvChoice::Implicit {
        nb,
        f_vec4,
        groups: (rows.div_ceil(128), (k as u64).div_ceil(u64::from(nb))),
    }
}

impl ConvChoice {
    /// `f_in_x`: the filter is read through the input's binding.
    fn key(self, f_in_x: bool) -> PipelineKey {
        let f_in_x = if f_in_x { 1.0 } else { 0.0 };
        match self {
            ConvChoice::Implicit { nb, f_vec4, .. } => PipelineKey::new(Kernel::Conv2d, "implicit")
                .with("NB", f64::from(nb))
                .with("F_IN_X", f_in_x)
                .with("F_VEC4", if f_vec4 { 1.0 } else { 0.0 }),
            ConvChoice::Direct { .. } => {
                PipelineKey::new(Kernel::Conv2d, "main").with("F_IN_X", f_in_x)
            }
        }
    }
}

/// The `conv2d_ex.wgsl` entry for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExChoice {
    /// One input channel per group, the input tile in workgroup memory: `TW` outputs
    /// wide, `256 / TW` high.
    Tiled { tw: usize },
    /// One input channel per group: four outputs of a row per thread.
    Depthwise4,
    /// One thread per output.
    Main,
}

/// The input elements `tiled` can hold (`TILE_MAX` in `conv2d_ex.wgsl`).
const TILE_MAX: usize = 2048;

/// Picks the kernel: `tiled` for one input channel per group when its input tile fits
/// (16 wide for planes up to 16 outputs wide, else 32) and `tiled` is on, else
/// `depthwise4`; `main` for everything else.
fn choose_ex(p: &Conv2dPlan, depthwise: bool, tiled: bool) -> ExChoice {
    if !depthwise {
        return ExChoice::Main;
    }
    let tw = if p.ow <= 16 { 16 } else { 32 };
    let th = 256 / tw;
    let span = |n: usize, stride: usize, taps: usize, dil: usize| {
        (n - 1) * stride + (taps.max(1) - 1) * dil + 1
    };
    let elems = span(tw, p.stride_w, p.s, p.dil_w) * span(th, p.stride_h, p.r, p.dil_h);
    if tiled && elems <= TILE_MAX {
        ExChoice::Tiled { tw }
    } else {
        ExChoice::Depthwise4
    }
}

impl Ctx {
    /// `conv2d_forward_ex` beyond `conv2d_forward`'s case (groups, dilation, a bias,
    /// asymmetric padding): `kernels/conv2d_ex.wgsl`, one thread per output.
    fn conv2d_ex(&self, p: &Conv2dPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!("conv2d_ex", n = p.n, c = p.c, k = p.k, groups = p.groups)
            .entered();
        let limits = &self.limits;
        let mut st = self.lock();
        let y = st.bind(limits, p.op, &p.output)?;
        let x = st.bind_opt(limits, p.op, p.input.as_ref())?;
        let f = st.bind_opt(limits, p.op, p.filter.as_ref())?;
        let b = st.bind_opt(limits, p.op, p.bias.as_ref())?;
        let empty_input = p.input.is_none() || p.filter.is_none();
        let total = [p.n, p.k, p.oh, p.ow]
            .iter()
            .map(|&d| d as u64)
            .product::<u64>();
        if total > u64::from(u32::MAX) {
            return Err(BackendError::Unsupported(format!(
                "{}: {total} outputs, more than the kernel's u32 indices",
                p.op
            )));
        }
        let prm = params::Conv2dEx {
            n: u32_saturating(p.n),
            // No input: every output is its bias.
            c: if empty_input { 0 } else { u32_saturating(p.c) },
            h: u32_saturating(p.h),
            w: u32_saturating(p.w),
            k: u32_saturating(p.k),
            r: u32_saturating(p.r),
            s: u32_saturating(p.s),
            oh: u32_saturating(p.oh),
            ow: u32_saturating(p.ow),
            stride_h: u32_saturating(p.stride_h),
            stride_w: u32_saturating(p.stride_w),
            pad_h: u32_saturating(p.pad_h),
            pad_w: u32_saturating(p.pad_w),
            dil_h: u32_saturating(p.dil_h),
            dil_w: u32_saturating(p.dil_w),
            groups: u32_saturating(p.groups),
            x_off: x.elem(4),
            f_off: f.elem(4),
            y_off: y.elem(4),
            b_off: b.elem(4),
            flags: u32::from(p.bias.is_some()),
            _pad: [0; 3],
        };
        let depthwise = !empty_input && p.group_channels() == 1 && !self.tuning.depthwise_direct;
        let (key, groups) = match choose_ex(p, depthwise, self.tuning.depthwise_tiled) {
            ExChoice::Tiled { tw } => {
                let tiles =
                    (p.n * p.k) as u64 * p.oh.div_ceil(256 / tw) as u64 * p.ow.div_ceil(tw) as u64;
                let key = PipelineKey::new(Kernel::Conv2dEx, "tiled").with("TW", tw as f64);
                (key, tiles)
            }
            // Four outputs of a row per thread.
            ExChoice::Depthwise4 => (
                PipelineKey::new(Kernel::Conv2dEx, "depthwise4"),
                groups_of_256(total / p.ow as u64 * p.ow.div_ceil(4) as u64),
            ),
            ExChoice::Main => (
                PipelineKey::new(Kernel::Conv2dEx, "main"),
                groups_of_256(total),
            ),
        };
        let State { stream, .. } = &mut *st;
        let grid = limits.grid(groups)?;
        self.dispatch(
            stream,
            &key,
            bytes_of(&prm),
            &[(1, &x), (2, &f), (4, &b), (3, &y)],
            grid,
        )
    }

    pub(crate) fn conv2d(&self, p: &Conv2dPlan) -> BackendResult<()> {
        if !p.is_plain() {
            return self.conv2d_ex(p);
        }
        let _span =
            tracing::debug_span!("conv2d", n = p.n, c = p.c, k = p.k, h = p.h, w = p.w).entered();
        let limits = &self.limits;
        let mut st = self.lock();
        let y = st.bind(limits, p.op, &p.output)?;
        let mut x = st.bind_opt(limits, p.op, p.input.as_ref())?;
        let mut f = st.bind_opt(limits, p.op, p.filter.as_ref())?;
        let empty_input = p.input.is_none() || p.filter.is_none();
        let (mut x_off, mut f_off) = (x.elem(4), f.elem(4));
        let f_in_x = !empty_input && x.overlaps(&f);
        if f_in_x {
            let (merged, x_byte, f_byte) = union(&x, &f);
            (x_off, f_off) = ((x_byte / 4) as u32, (f_byte / 4) as u32);
            x = merged;
            f = st.stream.unused();
        }
        let prm = params::Conv2d {
            n: u32_saturating(p.n),
            c: if empty_input { 0 } else { u32_saturating(p.c) },
            h: u32_saturating(p.h),
            w: u32_saturating(p.w),
            k: u32_saturating(p.k),
            r: u32_saturating(p.r),
            s: u32_saturating(p.s),
            oh: u32_saturating(p.oh),
            ow: u32_saturating(p.ow),
            stride_h: u32_saturating(p.stride_h),
            stride_w: u32_saturating(p.stride_w),
            pad_h: u32_saturating(p.pad_h),
            pad_w: u32_saturating(p.pad_w),
            x_off,
            f_off,
            y_off: y.elem(4),
        };
        let total = (p.n * p.k * p.oh * p.ow) as u64;
        let rows = (p.n * p.oh * p.ow) as u64;
        // The filter viewed as vec4s (binding end rounded to 16 bytes), unless it shares
        // the input's binding.
        let filter16 = match (&p.filter, f_in_x) {
            (Some(fo), false) => Some(st.bind16(limits, p.op, fo)?),
            _ => None,
        };
        let State { stream, .. } = &mut *st;
        let choice = choose(
            empty_input,
            p.c,
            p.k,
            p.r,
            p.s,
            rows,
            total,
            filter16.as_ref().map(|f| f.byte),
            self.tuning.gemm_narrow_below,
        );
        let key = choice.key(f_in_x);
        match choice {
            ConvChoice::Implicit {
                f_vec4,
                groups: (gx, gy),
                ..
            } => {
                let max = u64::from(limits.max_groups);
                if gx > max || gy > max {
                    return Err(BackendError::Unsupported(format!(
                        "{}: {rows} output positions x {} channels exceed the adapter's grid",
                        p.op, p.k
                    )));
                }
                // Vec4 filter loads at binding 4, scalar ones at binding 2; the kernel
                // declares both, so the other gets a placeholder.
                let placeholder = stream.unused();
                let (scalar, vector) = match (&filter16, f_vec4) {
                    (Some(f16), true) => (&placeholder, f16),
                    _ => (&f, &placeholder),
                };
                // The written binding last (Stream::dispatch relies on it).
                let bindings = [(1, &x), (2, scalar), (4, vector), (3, &y)];
                self.dispatch(
                    stream,
                    &key,
                    bytes_of(&prm),
                    &bindings,
                    [gx as u32, gy as u32, 1],
                )
            }
            ConvChoice::Direct { groups } => {
                let grid = limits.grid(groups)?;
                self.dispatch(
                    stream,
                    &key,
                    bytes_of(&prm),
                    &[(1, &x), (2, &f), (3, &y)],
                    grid,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depthwise_plan(hw: usize, stride: usize, r: usize, dil: usize) -> Conv2dPlan {
        let pad = r / 2 * dil;
        let o = (hw + 2 * pad - dil * (r - 1) - 1) / stride + 1;
        let args = backend_api::Conv2dArgs::new(
            0x1000,
            [1, 8, hw, hw],
            0x100_0000,
            [8, 1, r, r],
            0x200_0000,
            [1, 8, o, o],
        )
        .stride([stride; 2])
        .padding([pad; 4])
        .dilation([dil; 2])
        .groups(8);
        backend_api::validate::conv2d_ex(&args)
            .expect("valid")
            .expect("not empty")
    }

    #[test]
    fn depthwise_tiles_fit_workgroup_memory_or_fall_back() {
        // MobileNetV2's depthwise layers: 16 wide for small planes, else 32.
        assert_eq!(
            choose_ex(&depthwise_plan(14, 1, 3, 1), true, true),
            ExChoice::Tiled { tw: 16 }
        );
        assert_eq!(
            choose_ex(&depthwise_plan(112, 2, 3, 1), true, true),
            ExChoice::Tiled { tw: 32 }
        );
        // A 7x7 filter at dilation 6 reaches 68 x 44 inputs: too many for the tile.
        assert_eq!(
            choose_ex(&depthwise_plan(64, 1, 7, 6), true, true),
            ExChoice::Depthwise4
        );
        assert_eq!(
            choose_ex(&depthwise_plan(14, 1, 3, 1), true, false),
            ExChoice::Depthwise4
        );
        assert_eq!(
            choose_ex(&depthwise_plan(14, 1, 3, 1), false, true),
            ExChoice::Main
        );
    }

    const NARROW: usize = 192;

    /// A 3x3 convolution of `c` channels to `k` at `rows` output positions, the filter
    /// 16-byte aligned.
    fn conv(c: usize, k: usize, rows: u64) -> ConvChoice {
        choose(false, c, k, 3, 3, rows, rows * k as u64, Some(0), NARROW)
    }

    #[test]
    fn small_or_empty_problems_go_direct() {
        // Fewer than 16 output channels.
        assert_eq!(conv(4, 8, 4096), ConvChoice::Direct { groups: 128 });
        // Fewer than 4096 outputs.
        assert_eq!(conv(4, 16, 255), ConvChoice::Direct { groups: 16 });
        // No input or no filter: zeros, one thread per output.
        assert_eq!(
            choose(true, 4, 64, 3, 3, 4096, 64 * 4096, None, NARROW),
            ConvChoice::Direct { groups: 1024 }
        );
    }

    #[test]
    fn large_problems_take_implicit_gemm_with_gemm_tile_widths() {
        // 64 output channels: 64-wide tiles.
        assert_eq!(
            conv(4, 64, 1 << 16),
            ConvChoice::Implicit {
                nb: 64,
                f_vec4: true,
                groups: (512, 1)
            }
        );
        // 256 channels at many positions: 128-wide tiles.
        assert_eq!(
            conv(4, 256, 1 << 16),
            ConvChoice::Implicit {
                nb: 128,
                f_vec4: true,
                groups: (512, 2)
            }
        );
        // 256 channels at few positions: 128-wide tiles would underfill the device.
        assert_eq!(
            conv(4, 256, 1024),
            ConvChoice::Implicit {
                nb: 64,
                f_vec4: true,
                groups: (8, 4)
            }
        );
        // Exactly 16 channels and 4096 outputs.
        assert!(matches!(
            conv(4, 16, 256),
            ConvChoice::Implicit { nb: 64, .. }
        ));
    }

    #[test]
    fn vec4_filter_loads_need_an_aligned_start_and_whole_vec4_taps() {
        let f_vec4 = |c: usize, filter16_byte: Option<u64>| match choose(
            false,
            c,
            64,
            3,
            3,
            1 << 16,
            64 << 16,
            filter16_byte,
            NARROW,
        ) {
            ConvChoice::Implicit { f_vec4, .. } => f_vec4,
            other => panic!("{other:?}"),
        };
        assert!(f_vec4(4, Some(0)));
        assert!(f_vec4(4, Some(32)));
        // 3 x 3 x 3 taps: channels do not start on 16-byte boundaries.
        assert!(!f_vec4(3, Some(0)));
        assert!(!f_vec4(4, Some(8)));
        // The filter read through the input's binding.
        assert!(!f_vec4(4, None));
    }

    #[test]
    fn keys() {
        let f = |v: f64| v.to_bits();
        let implicit = ConvChoice::Implicit {
            nb: 128,
            f_vec4: true,
            groups: (1, 1),
        }
        .key(false);
        assert_eq!(
            (implicit.kernel, implicit.entry),
            (Kernel::Conv2d, "implicit")
        );
        assert_eq!(
            implicit.constants,
            [("NB", f(128.0)), ("F_IN_X", f(0.0)), ("F_VEC4", f(1.0))]
        );
        let direct = ConvChoice::Direct { groups: 1 }.key(true);
        assert_eq!((direct.kernel, direct.entry), (Kernel::Conv2d, "main"));
        assert_eq!(direct.constants, [("F_IN_X", f(1.0))]);
        for key in [implicit, direct] {
            assert!(Kernel::Conv2d.entries().contains(&key.entry));
            assert!(
                key.constants
                    .iter()
                    .all(|(c, _)| Kernel::Conv2d.constants().contains(c))
            );
        }
    }
}
