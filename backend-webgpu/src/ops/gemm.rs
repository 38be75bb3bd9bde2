//! gemm, gemm_ex and batched_gemm: `kernels/gemm.wgsl` (register-tiled and general
//! kernels) and `kernels/gemm_coop.wgsl` (matrix units).

use backend_api::validate::GemmPlan;
use backend_api::{BackendError, BackendResult, DType};
use bytemuck::bytes_of;

use super::{dtype_code, u32_saturating, union};
use crate::kernels::{Kernel, PipelineKey, params};
use crate::stream::Bound;
use crate::{Ctx, State};

/// Columns per tile (64 or 128) for the tiled gemm and the implicit-GEMM convolution, whose
/// tiles are 128 rows tall: 64 when 128 x 128 tiles would leave 64 columns of the last
/// tile column empty (e.g. 64 output channels), or would number fewer than
/// `narrow_below` ([`Tuning::gemm_narrow_below`](crate::Tuning::gemm_narrow_below)) over
/// all batches (at 1024^3 the wide tile gives 64 workgroups, which leaves half of a
/// 132-multiprocessor GPU idle). Measured on the H200 in docs/PERFORMANCE.md.
pub(super) fn tile_columns(rows: usize, cols: usize, batch: usize, narrow_below: usize) -> usize {
    let wide_tiles = rows.div_ceil(128) * cols.div_ceil(128) * batch;
    if cols.div_ceil(64) % 2 == 1 || wide_tiles < narrow_below {
        64
    } else {
        128
    }
}

/// What the gemm kernel choice depends on: the plan's shape and layout, and where each
/// operand starts in its binding.
#[derive(Debug, Clone, Copy)]
struct GemmShape {
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    trans_a: bool,
    trans_b: bool,
    lda: usize,
    ldb: usize,
    ldc: usize,
    stride_a: usize,
    stride_b: usize,
    stride_c: usize,
    a_dtype: DType,
    b_dtype: DType,
    /// A and B are read (neither `alpha` nor `k` is zero).
    reads_ab: bool,
    /// A's and B's bindings overlap, so both are read through one merged binding.
    b_in_a: bool,
    /// Each operand's first byte in its own binding (A's and B's before any merge).
    a_byte: u64,
    b_byte: u64,
    c_byte: u64,
}

impl GemmShape {
    fn of(p: &GemmPlan, b_in_a: bool, [a_byte, b_byte, c_byte]: [u64; 3]) -> Self {
        Self {
            m: p.m,
            n: p.n,
            k: p.k,
            batch: p.batch.count,
            trans_a: p.trans_a,
            trans_b: p.trans_b,
            lda: p.lda,
            ldb: p.ldb,
            ldc: p.ldc,
            stride_a: p.batch.stride_a,
            stride_b: p.batch.stride_b,
            stride_c: p.batch.stride_c,
            a_dtype: p.a_dtype,
            b_dtype: p.b_dtype,
            reads_ab: p.reads_ab(),
            b_in_a,
            a_byte,
            b_byte,
            c_byte,
        }
    }
}

/// The gemm kernel for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GemmChoice {
    /// Matrix units on 128 x 128 blocks staged through workgroup memory, A and B read as
    /// 16-byte words (`gemm_coop::tiled`).
    CoopTiled,
    /// Matrix units on 64 x 64 tiles (`gemm_coop::main`).
    Coop,
    /// The register-tiled kernel on 128 x `nb` tiles, C written as vec4s when `c_vec4`
    /// (`gemm::tiled`).
    Tiled { nb: usize, c_vec4: bool },
    /// At most 16 f32 columns with A not transposed (decode): 16 rows of C a workgroup, k
    /// split over its 64 slices, A read as 16-byte columns (`gemm::skinny`); `ns` bounds
    /// the columns (1, 2, 4, 8 or 16).
    Skinny {
        ns: usize,
        c_vec4: bool,
        b_vec4: bool,
    },
    /// The general kernel on 64 x 64 tiles (`gemm::main`).
    General,
}

/// Columns up to which an f32 product with A not transposed takes the skinny kernel.
const SKINNY_COLUMNS: usize = 16;

/// Picks the kernel. `coop_available`: the device may use the cooperative-matrix kernel
/// ([`WebGpuOptions::cooperative_matrix`](crate::WebGpuOptions::cooperative_matrix) and
/// an adapter that has it); `narrow_below` as for [`tile_columns`].
fn choose(s: &GemmShape, coop_available: bool, narrow_below: usize) -> GemmChoice {
    // The fast kernel: every operand's contiguous dimension, leading dimension, batch
    // stride and start (within its binding) a multiple of 4 elements.
    let four = |v: usize| v.is_multiple_of(4);
    let a_contig = if s.trans_a { s.k } else { s.m };
    let b_contig = if s.trans_b { s.n } else { s.k };
    // Four elements of A (and of B) are one 16-byte f32 vector or one 8-byte word pair
    // of f16/bf16; each operand must start on such a boundary within its binding.
    let vec_bytes = |d: DType| 4 * d.size_bytes() as u64;
    let tiled = s.reads_ab
        && !s.b_in_a
        && four(s.lda)
        && four(s.ldb)
        && four(a_contig)
        && four(b_contig)
        && four(s.stride_a)
        && four(s.stride_b)
        && four(s.stride_c)
        && s.a_byte.is_multiple_of(vec_bytes(s.a_dtype))
        && s.b_byte.is_multiple_of(vec_bytes(s.b_dtype));
    // Matrix units: f16 x f16 in whole 64 x 64 x 16 tiles, 16-byte aligned columns.
    let eight = |v: u64| v.is_multiple_of(8);
    let a_off = s.a_byte / s.a_dtype.size_bytes() as u64;
    let b_off = s.b_byte / s.b_dtype.size_bytes() as u64;
    let coop = coop_available
        && s.reads_ab
        && !s.b_in_a
        && s.a_dtype == DType::F16
        && s.b_dtype == DType::F16
        && s.m.is_multiple_of(64)
        && s.n.is_multiple_of(64)
        && s.k.is_multiple_of(16)
        && eight(s.lda as u64)
        && eight(s.ldb as u64)
        && eight(s.stride_a as u64)
        && eight(s.stride_b as u64)
        && eight(a_off)
        && eight(b_off);
    let coop_tiled =
        coop && s.m.is_multiple_of(128) && s.n.is_multiple_of(128) && s.k.is_multiple_of(32);
    // Skinny: A's columns (rows of C) read as vec4s; B and C as the tiled kernel allows.
    let skinny = s.reads_ab
        && !s.b_in_a
        && s.n <= SKINNY_COLUMNS
        && s.a_dtype == DType::F32
        && s.b_dtype == DType::F32
        && !s.trans_a
        && four(s.m)
        && four(s.lda)
        && four(s.stride_a)
        && s.a_byte.is_multiple_of(16);
    if skinny {
        GemmChoice::Skinny {
            ns: s.n.next_power_of_two(),
            c_vec4: four(s.ldc) && four(s.stride_c) && s.c_byte.is_multiple_of(16),
            b_vec4: !s.trans_b
                && four(s.k)
                && four(s.ldb)
                && four(s.stride_b)
                && s.b_byte.is_multiple_of(16),
        }
    } else if coop_tiled {
        GemmChoice::CoopTiled
    } else if coop {
        GemmChoice::Coop
    } else if tiled {
        GemmChoice::Tiled {
            nb: tile_columns(s.m, s.n, s.batch, narrow_below),
            c_vec4: four(s.ldc) && four(s.m) && s.c_byte.is_multiple_of(16),
        }
    } else {
        GemmChoice::General
    }
}

impl GemmChoice {
    /// Rows x columns of C per workgroup.
    fn tile(self) -> (usize, usize) {
        match self {
            GemmChoice::CoopTiled => (128, 128),
            GemmChoice::Tiled { nb, .. } => (128, nb),
            GemmChoice::Coop | GemmChoice::General => (64, 64),
            GemmChoice::Skinny { .. } => (16, SKINNY_COLUMNS),
        }
    }

    fn key(self, s: &GemmShape) -> PipelineKey {
        let flag = |b: bool| f64::from(u8::from(b));
        match self {
            GemmChoice::CoopTiled => PipelineKey::new(Kernel::GemmCoop, "tiled")
                .with("TRANS_A", flag(s.trans_a))
                .with("TRANS_B", flag(s.trans_b)),
            GemmChoice::Coop => PipelineKey::new(Kernel::GemmCoop, "main")
                .with("TRANS_A", flag(s.trans_a))
                .with("TRANS_B", flag(s.trans_b)),
            GemmChoice::Tiled { nb, c_vec4 } => PipelineKey::new(Kernel::Gemm, "tiled")
                .with("NB", f64::from(nb as u32))
                .with("TRANS_A", flag(s.trans_a))
                .with("TRANS_B", flag(s.trans_b))
                .with("C_VEC4", flag(c_vec4))
                .with("A_TYPE", dtype_code(s.a_dtype))
                .with("B_TYPE", dtype_code(s.b_dtype)),
            GemmChoice::Skinny { ns, c_vec4, b_vec4 } => PipelineKey::new(Kernel::Gemm, "skinny")
                .with("NS", ns as f64)
                .with("TRANS_B", flag(s.trans_b))
                .with("C_VEC4", flag(c_vec4))
                .with("SK_B_VEC", flag(b_vec4)),
            GemmChoice::General => PipelineKey::new(Kernel::Gemm, "main")
                .with("A_TYPE", dtype_code(s.a_dtype))
                .with("B_TYPE", dtype_code(s.b_dtype))
                .with("B_IN_A", if s.b_in_a { 1.0 } else { 0.0 }),
        }
    }
}

/// The tiled kernel's binding for an operand of `dtype`, and the one the other type would
/// use, which gets a placeholder (the kernel declares both): f32 operands at `f32_at`,
/// 16-bit ones at `half_at`.
fn tiled_slot(dtype: DType, f32_at: u32, half_at: u32) -> (u32, u32) {
    if dtype == DType::F32 {
        (f32_at, half_at)
    } else {
        (half_at, f32_at)
    }
}

/// Workgroups per batch entry, (tiles down M, tiles across N); `None` when either is
/// more than the adapter's `max_groups` per dimension.
fn grid(m: usize, n: usize, tile: (usize, usize), max_groups: usize) -> Option<(usize, usize)> {
    let gx = m.div_ceil(tile.0);
    let gy = n.div_ceil(tile.1);
    (gx <= max_groups && gy <= max_groups).then_some((gx, gy))
}

/// The dispatches of a batch: (first entry, entries), at most `max_groups` entries each
/// (the grid's third dimension).
fn batch_chunks(batch: usize, max_groups: usize) -> Vec<(usize, usize)> {
    let mut chunks = Vec::new();
    let mut base = 0;
    while base < batch {
        let count = (batch - base).min(max_groups);
        chunks.push((base, count));
        base += count;
    }
    chunks
}

impl Ctx {
    pub(crate) fn gemm(&self, p: &GemmPlan) -> BackendResult<()> {
        let op = p.op;
        let _span =
            tracing::debug_span!("gemm", op, m = p.m, n = p.n, k = p.k, batch = p.batch.count)
                .entered();
        let limits = &self.limits;
        let mut st = self.lock();
        let c = st.bind(limits, op, &p.c)?;
        let mut a = st.bind_opt(limits, op, p.a.as_ref())?;
        let mut b = st.bind_opt(limits, op, p.b.as_ref())?;
        let (sa, sb) = (p.a_dtype.size_bytes() as u64, p.b_dtype.size_bytes() as u64);
        let (mut a_off, mut b_off) = (a.byte / sa, b.byte / sb);
        let b_in_a = p.reads_ab() && a.overlaps(&b);
        let shape = GemmShape::of(p, b_in_a, [a.byte, b.byte, c.byte]);
        if b_in_a {
            let (merged, a_byte, b_byte) = union(&a, &b);
            if merged.size > limits.max_binding {
                return Err(BackendError::Unsupported(format!(
                    "{op}: A and B overlap and together span more than max_storage_buffer_binding_size"
                )));
            }
            (a_off, b_off) = (a_byte / sa, b_byte / sb);
            a = merged;
            b = st.stream.unused();
        }
        let choice = choose(&shape, self.coop, self.tuning.gemm_narrow_below);
        let key = choice.key(&shape);
        let bindings = match choice {
            GemmChoice::CoopTiled => {
                let a16 = st.bind16(limits, op, p.a.as_ref().expect("reads_ab"))?;
                let b16 = st.bind16(limits, op, p.b.as_ref().expect("reads_ab"))?;
                vec![(4, a16), (5, b16), (3, c.clone())]
            }
            GemmChoice::Tiled { .. } => {
                // Rebind with 16-byte ends: the kernel views A, B and C as vector arrays.
                let a16 = st.bind16(limits, op, p.a.as_ref().expect("reads_ab"))?;
                let b16 = st.bind16(limits, op, p.b.as_ref().expect("reads_ab"))?;
                let c16 = st.bind16(limits, op, &p.c)?;
                // f32 operands at bindings 4 and 5, 16-bit ones at 7 and 8. C (written) last.
                let (a_at, a_other) = tiled_slot(p.a_dtype, 4, 7);
                let (b_at, b_other) = tiled_slot(p.b_dtype, 5, 8);
                let unused = st.stream.unused();
                vec![
                    (a_at, a16),
                    (b_at, b16),
                    (a_other, unused.clone()),
                    (b_other, unused),
                    (6, c16),
                ]
            }
            GemmChoice::Skinny { b_vec4, .. } => {
                let a16 = st.bind16(limits, op, p.a.as_ref().expect("reads_ab"))?;
                let c16 = st.bind16(limits, op, &p.c)?;
                // B at 5 as vec4s or at 2 as scalars; the other binding a placeholder.
                let unused = st.stream.unused();
                let (b_at, b_other, b) = if b_vec4 {
                    (
                        5,
                        2,
                        st.bind16(limits, op, p.b.as_ref().expect("reads_ab"))?,
                    )
                } else {
                    (2, 5, b)
                };
                vec![(4, a16), (b_at, b), (b_other, unused), (6, c16)]
            }
            GemmChoice::Coop | GemmChoice::General => vec![(1, a), (2, b), (3, c.clone())],
        };
        let tile = choice.tile();
        let max_groups = limits.max_groups as usize;
        let Some((gx, gy)) = grid(p.m, p.n, tile, max_groups) else {
            return Err(BackendError::Unsupported(format!(
                "{op}: {} x {} is more than this adapter's {max_groups} workgroups of {} x {} per dimension",
                p.m, p.n, tile.0, tile.1
            )));
        };
        for (base, count) in batch_chunks(p.batch.count, max_groups) {
            let prm = params::Gemm {
                m: u32_saturating(p.m),
                n: u32_saturating(p.n),
                k: if p.reads_ab() { u32_saturating(p.k) } else { 0 },
                lda: u32_saturating(p.lda),
                ldb: u32_saturating(p.ldb),
                ldc: u32_saturating(p.ldc),
                a_off: a_off as u32,
                b_off: b_off as u32,
                c_off: c.elem(4),
                stride_a: u32_saturating(p.batch.stride_a),
                stride_b: u32_saturating(p.batch.stride_b),
                stride_c: u32_saturating(p.batch.stride_c),
                trans_a: u32::from(p.trans_a),
                trans_b: u32::from(p.trans_b),
                alpha: p.alpha as f32,
                beta: p.beta as f32,
                batch_base: base as u32,
                _pad: [0; 3],
            };
            let State { stream, .. } = &mut *st;
            let refs: Vec<(u32, &Bound)> = bindings.iter().map(|(i, b)| (*i, b)).collect();
            self.dispatch(
                stream,
                &key,
                bytes_of(&prm),
                &refs,
                [gx as u32, gy as u32, count as u32],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A column-major f32 m x k times k x n, every operand aligned, one batch entry.
    fn shape(m: usize, n: usize, k: usize) -> GemmShape {
        GemmShape {
            m,
            n,
            k,
            batch: 1,
            trans_a: false,
            trans_b: false,
            lda: m,
            ldb: k,
            ldc: m,
            stride_a: 0,
            stride_b: 0,
            stride_c: 0,
            a_dtype: DType::F32,
            b_dtype: DType::F32,
            reads_ab: true,
            b_in_a: false,
            a_byte: 0,
            b_byte: 0,
            c_byte: 0,
        }
    }

    fn f16(s: GemmShape) -> GemmShape {
        GemmShape {
            a_dtype: DType::F16,
            b_dtype: DType::F16,
            ..s
        }
    }

    const NARROW: usize = 192;

    #[test]
    fn tile_columns_narrows_a_half_empty_last_tile() {
        // 64 output channels: a 128-wide tile would be half empty.
        assert_eq!(tile_columns(1 << 20, 64, 1, NARROW), 64);
        // 192 columns: three 64-column halves, the last 128-wide tile half empty.
        assert_eq!(tile_columns(1 << 20, 192, 1, NARROW), 64);
        assert_eq!(tile_columns(1 << 20, 256, 1, NARROW), 128);
    }

    #[test]
    fn tile_columns_narrows_when_wide_tiles_underfill_the_device() {
        // 1024^3: 8 x 8 = 64 wide tiles, fewer than 192.
        assert_eq!(tile_columns(1024, 1024, 1, NARROW), 64);
        // Batches count: 3 x 64 = 192 tiles is enough.
        assert_eq!(tile_columns(1024, 1024, 3, NARROW), 128);
        assert_eq!(tile_columns(4096, 4096, 1, NARROW), 128);
        // narrow_below 0: never narrow for the count.
        assert_eq!(tile_columns(1024, 1024, 1, 0), 128);
        assert_eq!(tile_columns(128, 128, 1, 0), 128);
    }

    #[test]
    fn aligned_operands_take_the_tiled_kernel() {
        assert_eq!(
            choose(&shape(4096, 4096, 4096), false, NARROW),
            GemmChoice::Tiled {
                nb: 128,
                c_vec4: true
            }
        );
        assert_eq!(
            choose(&shape(1024, 1024, 1024), false, NARROW),
            GemmChoice::Tiled {
                nb: 64,
                c_vec4: true
            }
        );
        // f16 and bf16 operands need 8-byte starts, not 16.
        let half = GemmShape {
            a_byte: 8,
            b_byte: 24,
            ..f16(shape(256, 256, 256))
        };
        assert!(matches!(
            choose(&half, false, NARROW),
            GemmChoice::Tiled { .. }
        ));
        let mixed = GemmShape {
            b_dtype: DType::BF16,
            ..shape(256, 256, 256)
        };
        assert!(matches!(
            choose(&mixed, false, NARROW),
            GemmChoice::Tiled { .. }
        ));
    }

    #[test]
    fn few_f32_columns_with_a_not_transposed_take_the_skinny_kernel() {
        let skinny = |ns, c_vec4, b_vec4| GemmChoice::Skinny { ns, c_vec4, b_vec4 };
        let s = shape(4096, 16, 4096);
        assert_eq!(choose(&s, true, NARROW), skinny(16, true, true));
        let s = shape(4096, 1, 4096);
        assert_eq!(choose(&s, true, NARROW), skinny(1, true, true));
        // k not a multiple of 4, or B's start off 16 bytes: B as scalars.
        let s = shape(64, 3, 10);
        assert_eq!(choose(&s, true, NARROW), skinny(4, true, false));
        let s = GemmShape {
            b_byte: 8,
            ..shape(64, 3, 16)
        };
        assert_eq!(choose(&s, true, NARROW), skinny(4, true, false));
        // B transposed or unaligned, C unaligned: still skinny (B is read as scalars).
        let loose = GemmShape {
            trans_b: true,
            ldb: 5,
            b_byte: 4,
            ldc: 66,
            ..shape(64, 5, 10)
        };
        assert_eq!(choose(&loose, true, NARROW), skinny(8, false, false));
        // More columns, A transposed, A's rows or start off vec4s, 16-bit operands: not.
        let base = shape(256, 16, 256);
        for s in [
            shape(256, 17, 256),
            GemmShape {
                trans_a: true,
                ..base
            },
            GemmShape {
                m: 254,
                lda: 256,
                ..base
            },
            GemmShape { lda: 258, ..base },
            GemmShape { a_byte: 8, ..base },
            GemmShape {
                stride_a: 2,
                ..base
            },
            f16(base),
            GemmShape {
                b_dtype: DType::F16,
                ..base
            },
            GemmShape {
                reads_ab: false,
                ..base
            },
        ] {
            assert!(
                !matches!(choose(&s, false, NARROW), GemmChoice::Skinny { .. }),
                "{s:?}"
            );
        }
    }

    #[test]
    fn c_vec4_needs_aligned_rows_and_start() {
        let tiled = |s: GemmShape| match choose(&s, false, NARROW) {
            GemmChoice::Tiled { c_vec4, .. } => c_vec4,
            other => panic!("{other:?}"),
        };
        assert!(tiled(shape(256, 256, 256)));
        assert!(!tiled(GemmShape {
            ldc: 258,
            ..shape(256, 256, 256)
        }));
        assert!(!tiled(GemmShape {
            c_byte: 4,
            ..shape(256, 256, 256)
        }));
        // M a multiple of 4 too (A transposed, so its rows need not be).
        assert!(!tiled(GemmShape {
            m: 254,
            trans_a: true,
            ..shape(256, 256, 256)
        }));
    }

    #[test]
    fn unaligned_merged_or_empty_operands_take_the_general_kernel() {
        let base = shape(256, 256, 256);
        for s in [
            GemmShape { lda: 257, ..base },
            GemmShape { ldb: 258, ..base },
            GemmShape {
                m: 255,
                lda: 256,
                ..base
            },
            GemmShape {
                trans_b: true,
                n: 254,
                ldb: 256,
                ..base
            },
            GemmShape {
                stride_a: 2,
                ..base
            },
            GemmShape {
                stride_c: 6,
                ..base
            },
            GemmShape { a_byte: 8, ..base },
            GemmShape { b_byte: 4, ..base },
            GemmShape {
                b_in_a: true,
                ..base
            },
            GemmShape {
                reads_ab: false,
                ..base
            },
        ] {
            assert_eq!(choose(&s, true, NARROW), GemmChoice::General, "{s:?}");
        }
    }

    #[test]
    fn f16_on_matrix_units_when_available_and_whole_tiles() {
        let s = f16(shape(256, 256, 256));
        assert_eq!(choose(&s, true, NARROW), GemmChoice::CoopTiled);
        // Whole 64 x 64 x 16 tiles, not 128 x 128 x 32 ones.
        for s in [
            f16(shape(192, 256, 256)),
            f16(shape(256, 192, 256)),
            f16(shape(256, 256, 48)),
        ] {
            assert_eq!(choose(&s, true, NARROW), GemmChoice::Coop, "{s:?}");
        }
        // Not available: the tiled kernel.
        assert!(matches!(
            choose(&s, false, NARROW),
            GemmChoice::Tiled { .. }
        ));
    }

    #[test]
    fn matrix_units_need_f16_whole_tiles_and_8_element_alignment() {
        let s = f16(shape(256, 256, 256));
        for other in [
            GemmShape {
                b_dtype: DType::BF16,
                ..s
            },
            GemmShape {
                m: 240,
                lda: 240,
                ldc: 240,
                ..s
            },
            GemmShape {
                k: 40,
                ldb: 40,
                ..s
            },
            GemmShape { lda: 260, ..s },
            GemmShape { stride_b: 4, ..s },
            // Element 4: on the tiled kernel's 8-byte boundary, not on the coop one's.
            GemmShape { a_byte: 8, ..s },
            GemmShape { b_byte: 8, ..s },
        ] {
            let c = choose(&other, true, NARROW);
            assert!(
                !matches!(c, GemmChoice::Coop | GemmChoice::CoopTiled),
                "{other:?}: {c:?}"
            );
        }
        assert_eq!(
            choose(&GemmShape { a_byte: 16, ..s }, true, NARROW),
            GemmChoice::CoopTiled
        );
    }

    #[test]
    fn keys_name_the_kernels_entry_points_and_constants() {
        let f = |v: f64| v.to_bits();
        let s = GemmShape {
            trans_b: true,
            ldb: 256,
            ..shape(256, 256, 256)
        };
        let tiled = GemmChoice::Tiled {
            nb: 64,
            c_vec4: true,
        }
        .key(&s);
        assert_eq!((tiled.kernel, tiled.entry), (Kernel::Gemm, "tiled"));
        assert_eq!(
            tiled.constants,
            [
                ("NB", f(64.0)),
                ("TRANS_A", f(0.0)),
                ("TRANS_B", f(1.0)),
                ("C_VEC4", f(1.0)),
                ("A_TYPE", f(0.0)),
                ("B_TYPE", f(0.0)),
            ]
        );
        let general = GemmChoice::General.key(&GemmShape {
            b_in_a: true,
            b_dtype: DType::BF16,
            ..s
        });
        assert_eq!((general.kernel, general.entry), (Kernel::Gemm, "main"));
        assert_eq!(
            general.constants,
            [("A_TYPE", f(0.0)), ("B_TYPE", f(2.0)), ("B_IN_A", f(1.0))]
        );
        for (choice, entry) in [(GemmChoice::CoopTiled, "tiled"), (GemmChoice::Coop, "main")] {
            let key = choice.key(&s);
            assert_eq!((key.kernel, key.entry), (Kernel::GemmCoop, entry));
            assert_eq!(key.constants, [("TRANS_A", f(0.0)), ("TRANS_B", f(1.0))]);
        }
    }

    #[test]
    fn every_choice_names_a_listed_entry_point_and_constants() {
        let s = shape(256, 256, 256);
        for choice in [
            GemmChoice::CoopTiled,
            GemmChoice::Coop,
            GemmChoice::Tiled {
                nb: 128,
                c_vec4: false,
            },
            GemmChoice::Skinny {
                ns: 16,
                c_vec4: true,
                b_vec4: true,
            },
            GemmChoice::General,
        ] {
            let key = choice.key(&s);
            assert!(key.kernel.entries().contains(&key.entry), "{key:?}");
            for (c, _) in &key.constants {
                assert!(key.kernel.constants().contains(c), "{key:?}");
            }
        }
    }

    #[test]
    fn tiles_and_grids() {
        assert_eq!(GemmChoice::CoopTiled.tile(), (128, 128));
        assert_eq!(GemmChoice::Coop.tile(), (64, 64));
        assert_eq!(GemmChoice::General.tile(), (64, 64));
        let tiled = GemmChoice::Tiled {
            nb: 64,
            c_vec4: false,
        };
        assert_eq!(tiled.tile(), (128, 64));
        assert_eq!(grid(1000, 1000, (128, 64), 65535), Some((8, 16)));
        assert_eq!(grid(64 * 65535, 1, (64, 64), 65535), Some((65535, 1)));
        assert_eq!(grid(64 * 65535 + 1, 1, (64, 64), 65535), None);
        assert_eq!(grid(1, 64 * 65536, (64, 64), 65535), None);
    }

    #[test]
    fn batches_split_at_the_grid_limit() {
        assert_eq!(batch_chunks(1, 65535), [(0, 1)]);
        assert_eq!(batch_chunks(5, 2), [(0, 2), (2, 2), (4, 1)]);
        assert_eq!(batch_chunks(4, 2), [(0, 2), (2, 2)]);
        assert!(batch_chunks(0, 2).is_empty());
    }

    #[test]
    fn tiled_bindings_by_element_type() {
        assert_eq!(tiled_slot(DType::F32, 4, 7), (4, 7));
        assert_eq!(tiled_slot(DType::F16, 4, 7), (7, 4));
        assert_eq!(tiled_slot(DType::BF16, 5, 8), (8, 5));
    }
}
