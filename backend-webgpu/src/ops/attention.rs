//! scaled_dot_product_attention: `kernels/attention.wgsl` (blocked flash attention, or
//! one row at a time).

use backend_api::validate::AttentionPlan;
use backend_api::{BackendResult, DType};
use bytemuck::bytes_of;

use super::{dtype_code, u32_saturating};
use crate::kernels::{Kernel, PipelineKey, params};
use crate::stream::Limits;
use crate::{Ctx, State};

/// The attention kernel for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttentionChoice {
    /// The blocked kernel (`attention::fast`) on 64 x 64 blocks of heads up to `dims` (64
    /// or 128) dimensions, with `stages` (1 or 2) of workgroup memory and 16-byte loads
    /// when `vec_loads`; a grid of `blocks` query blocks x `heads`.
    Blocked {
        dims: usize,
        stages: usize,
        vec_loads: bool,
        blocks: u64,
        heads: u64,
    },
    /// The row kernel (`attention::main`), one workgroup per query row.
    Rows,
    /// Split-KV for few query rows (decoding): `attention::split` over `splits` chunks of
    /// `chunk` keys for each of the `rows` query rows, then `attention::combine`.
    Split { splits: u64, chunk: u64, rows: u64 },
}

/// Query rows per head up to which the keys are split across workgroups.
const SPLIT_MAX_SEQ_Q: usize = 4;
/// Workgroups the split kernel aims for (a few per SM on large GPUs).
const SPLIT_TARGET_GROUPS: u64 = 1024;

/// Picks the kernel for `heads` (batch x heads) heads of `seq_q` query rows of
/// `head_dim` elements. `has_kv`: there are keys (`seq_kv > 0`); `aligned16`: Q, K and V
/// each start on a 16-byte boundary of their bindings.
fn choose(
    head_dim: usize,
    v_dim: usize,
    heads: u64,
    seq_q: usize,
    seq_kv: usize,
    has_kv: bool,
    aligned16: bool,
    limits: &Limits,
) -> AttentionChoice {
    let max = u64::from(limits.max_groups);
    if has_kv && seq_q <= SPLIT_MAX_SEQ_Q {
        // One workgroup per (row, chunk of keys): enough workgroups to fill the GPU
        // though there are few rows, each chunk a multiple of the walk's 64-key blocks.
        let rows = heads * seq_q as u64;
        let blocks = (seq_kv as u64).div_ceil(64);
        let splits = SPLIT_TARGET_GROUPS
            .div_ceil(rows.max(1))
            .clamp(1, blocks.max(1));
        let chunk = 64 * blocks.div_ceil(splits);
        let splits = (seq_kv as u64).div_ceil(chunk).max(1);
        let scratch = rows * splits * (v_dim as u64 + 2) * 4;
        if rows <= max && splits <= max && scratch <= limits.max_binding {
            return AttentionChoice::Split {
                splits,
                chunk,
                rows,
            };
        }
    }
    // The blocked kernel handles heads up to 128 dims in 64 x 64 blocks, with two
    // stages of workgroup memory where the adapter allows (36 KiB), else one (28 KiB);
    // other heads and small adapters (browsers default to 16 KiB) take the row kernel.
    let head_dim = head_dim.max(v_dim);
    let dims = if head_dim <= 64 { 64 } else { 128 };
    let blocks = (seq_q as u64).div_ceil(64);
    let storage = limits.workgroup_storage;
    let stages = if storage >= 36 << 10 { 2 } else { 1 };
    let blocked = head_dim <= 128
        && storage >= 28 << 10
        && limits.max_invocations >= 256
        && heads <= max
        && blocks <= max
        && has_kv;
    if !blocked {
        return AttentionChoice::Rows;
    }
    AttentionChoice::Blocked {
        dims,
        stages,
        // 16-byte loads when rows are whole vec4s and every operand starts on a 16-byte
        // boundary.
        vec_loads: head_dim.is_multiple_of(4) && aligned16,
        blocks,
        heads,
    }
}

impl AttentionChoice {
    /// The pipeline; the blocked kernel is specialised on the call's `features` (the
    /// kernel's `ATTENTION_*` bits), so a plain call carries no mask, cap or window code.
    fn key(self, features: u32) -> PipelineKey {
        match self {
            AttentionChoice::Blocked {
                dims,
                stages,
                vec_loads,
                ..
            } => PipelineKey::new(Kernel::Attention, "fast")
                .with("D", dims as f64)
                .with("STAGES", stages as f64)
                .with("VEC_LOADS", if vec_loads { 1.0 } else { 0.0 })
                .with("FEATURES", f64::from(features)),
            AttentionChoice::Rows => PipelineKey::new(Kernel::Attention, "main"),
            AttentionChoice::Split { .. } => PipelineKey::new(Kernel::Attention, "split"),
        }
    }
}

/// `[batch, head, row]` strides as the kernel's vec3.
fn strides(s: [usize; 3]) -> [u32; 3] {
    s.map(u32_saturating)
}

impl Ctx {
    /// Whether f16/bf16 attention runs on its own storage here (the split kernel, few
    /// query rows: decoding, where reading the KV cache is the cost): O's rows start on
    /// even elements and hold an even number, so `combine` writes whole words. Other calls
    /// go through f32 copies ([`backend_api::through_f32`]).
    pub(crate) fn attention_on_half_storage(&self, p: &AttentionPlan) -> bool {
        let split = matches!(
            choose(
                p.head_dim,
                p.v_head_dim,
                (p.batch * p.heads) as u64,
                p.seq_q,
                p.seq_kv,
                p.v.is_some(),
                false,
                &self.limits,
            ),
            AttentionChoice::Split { .. }
        );
        matches!(p.dtype, DType::F16 | DType::BF16)
            && split
            && p.v_head_dim.is_multiple_of(2)
            && (p.o.ptr / 2).is_multiple_of(2)
            && p.o_strides.iter().all(|s| s.is_multiple_of(2))
    }

    pub(crate) fn attention(&self, p: &AttentionPlan) -> BackendResult<()> {
        let _span = tracing::debug_span!(
            "attention",
            batch = p.batch,
            heads = p.heads,
            kv_heads = p.kv_heads,
            seq_q = p.seq_q,
            seq_kv = p.seq_kv,
            head_dim = p.head_dim,
            v_head_dim = p.v_head_dim
        )
        .entered();
        let limits = &self.limits;
        let mut st = self.lock();
        let o = st.bind(limits, p.op, &p.o)?;
        let bind16 = |operand: &Option<backend_api::Operand>| match operand {
            Some(x) => st.bind16(limits, p.op, x),
            None => Ok(st.stream.unused()),
        };
        let q = bind16(&p.q)?;
        let k = bind16(&p.k)?;
        let v = bind16(&p.v)?;
        let half = p.dtype != DType::F32;
        let size = p.dtype.size_bytes() as u64;
        let mask = match &p.mask {
            Some(m) => st.bind(limits, p.op, m)?,
            None => st.stream.unused(),
        };
        let rows = p.batch * p.heads * p.seq_q;
        let has_kv = p.v.is_some();
        let flag = |on: bool, bit: u32| if on { bit } else { 0 };
        let mut prm = params::Attention {
            rows: u32_saturating(rows),
            seq_q: u32_saturating(p.seq_q),
            seq_kv: if has_kv { u32_saturating(p.seq_kv) } else { 0 },
            head_dim: u32_saturating(p.head_dim),
            v_dim: u32_saturating(p.v_head_dim),
            heads: u32_saturating(p.heads),
            group: u32_saturating(p.group().max(1)),
            flags: flag(p.causal, params::ATTENTION_CAUSAL)
                | flag(p.mask.is_some(), params::ATTENTION_MASKED)
                | flag(p.softcap.is_some(), params::ATTENTION_CAPPED)
                | flag(p.window.is_some(), params::ATTENTION_WINDOWED),
            q_off: q.elem(size),
            k_off: k.elem(size),
            v_off: v.elem(size),
            o_off: o.elem(size),
            m_off: mask.elem(4),
            window: u32_saturating(p.window.unwrap_or(0)),
            scale: p.scale as f32,
            softcap: p.softcap.unwrap_or(1.0) as f32,
            q_s: strides(p.q_strides),
            splits: 0,
            k_s: strides(p.k_strides),
            chunk: 0,
            v_s: strides(p.v_strides),
            _p2: 0,
            o_s: strides(p.o_strides),
            _p3: 0,
            m_s: [
                u32_saturating(p.mask_strides[0]),
                u32_saturating(p.mask_strides[1]),
                0,
                0,
            ],
        };
        let State { stream, .. } = &mut *st;
        // 16-byte loads need every row of Q, K and V to start on a 16-byte boundary: the
        // bindings' starts and every stride of the operands read.
        let whole_quads = [p.q_strides, p.k_strides, p.v_strides]
            .iter()
            .flatten()
            .all(|s| s.is_multiple_of(4))
            && p.v_head_dim.is_multiple_of(4);
        let choice = choose(
            p.head_dim,
            p.v_head_dim,
            (p.batch * p.heads) as u64,
            p.seq_q,
            p.seq_kv,
            has_kv,
            whole_quads && [&q, &k, &v].iter().all(|b| b.byte.is_multiple_of(16)),
            limits,
        );
        let key = choice.key(prm.flags);
        if half && !matches!(choice, AttentionChoice::Split { .. }) {
            return Err(backend_api::BackendError::Unsupported(format!(
                "{}: f16/bf16 attention reached a kernel other than split ({choice:?})",
                p.op
            )));
        }
        let unused = stream.unused();
        // The f32 and the word views of Q, K and V (and O, which the split pass binds but
        // never writes): the one not used by this call is bound to a placeholder.
        let [q32, k32, v32, o32, q16, k16, v16] = if half {
            [&unused, &unused, &unused, &unused, &q, &k, &v]
        } else {
            [&q, &k, &v, &o, &unused, &unused, &unused]
        };
        match choice {
            AttentionChoice::Blocked {
                vec_loads,
                blocks,
                heads,
                ..
            } => {
                // The kernel declares both the scalar and the vec4 views, so the set not
                // used gets placeholders. O (written) last.
                let (s1, s2, s3, v1, v2, v3) = if vec_loads {
                    (&unused, &unused, &unused, &q, &k, &v)
                } else {
                    (&q, &k, &v, &unused, &unused, &unused)
                };
                let bindings = [
                    (1, s1),
                    (2, s2),
                    (3, s3),
                    (5, v1),
                    (6, v2),
                    (7, v3),
                    (8, &mask),
                    (4, &o),
                ];
                self.dispatch(
                    stream,
                    &key,
                    bytes_of(&prm),
                    &bindings,
                    [blocks as u32, heads as u32, 1],
                )
            }
            AttentionChoice::Rows => {
                let grid = limits.grid(rows as u64)?;
                self.dispatch(
                    stream,
                    &key,
                    bytes_of(&prm),
                    &[
                        (1, &q),
                        (2, &k),
                        (3, &v),
                        (8, &mask),
                        (9, &unused),
                        (10, &unused),
                        (11, &unused),
                        (12, &unused),
                        (4, &o),
                    ],
                    grid,
                )
            }
            AttentionChoice::Split {
                splits,
                chunk,
                rows,
            } => {
                prm.splits = splits as u32;
                prm.chunk = chunk as u32;
                let scratch =
                    stream.scratch(&self.device, rows * splits * (p.v_head_dim as u64 + 2) * 4);
                // The split pass writes the scratch (bound last); O is bound but not
                // written. The combine pass reads the scratch and writes O.
                let dtype = dtype_code(p.dtype);
                self.dispatch(
                    stream,
                    &key.with("DTYPE", dtype),
                    bytes_of(&prm),
                    &[
                        (1, q32),
                        (2, k32),
                        (3, v32),
                        (10, q16),
                        (11, k16),
                        (12, v16),
                        (8, &mask),
                        (4, o32),
                        (9, &scratch),
                    ],
                    [splits as u32, rows as u32, 1],
                )?;
                let combine = PipelineKey::new(Kernel::Attention, "combine").with("DTYPE", dtype);
                let grid = limits.grid(rows)?;
                // O's view this call writes, bound last, and the other one.
                let (o_other, o_used) = if half { (4, 13) } else { (13, 4) };
                self.dispatch(
                    stream,
                    &combine,
                    bytes_of(&prm),
                    &[(9, &scratch), (o_other, &unused), (o_used, &o)],
                    grid,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A native adapter's limits (48 KiB of workgroup memory).
    const NATIVE: Limits = Limits {
        storage_align: 256,
        max_binding: 1 << 30,
        max_groups: 65535,
        workgroup_storage: 48 << 10,
        max_invocations: 1024,
    };

    /// `choose` for heads whose V rows match Q's, with 100 keys.
    fn ch(
        head_dim: usize,
        heads: u64,
        seq_q: usize,
        has_kv: bool,
        aligned16: bool,
        limits: &Limits,
    ) -> AttentionChoice {
        choose(
            head_dim, head_dim, heads, seq_q, 100, has_kv, aligned16, limits,
        )
    }

    #[test]
    fn few_query_rows_split_the_keys() {
        // 32 rows of 4096 keys: 32 chunks of 128 keys each, 1024 workgroups.
        assert_eq!(
            choose(128, 128, 32, 1, 4096, true, true, &NATIVE),
            AttentionChoice::Split {
                splits: 32,
                chunk: 128,
                rows: 32
            }
        );
        // Many rows already fill the GPU: one chunk of whole 64-key blocks per row.
        assert_eq!(
            choose(64, 64, 4096, 4, 100, true, true, &NATIVE),
            AttentionChoice::Split {
                splits: 1,
                chunk: 128,
                rows: 16384
            }
        );
        // Up to 4 query rows per head; not without keys; not past the grid.
        assert!(matches!(
            ch(64, 1, 5, true, true, &NATIVE),
            AttentionChoice::Blocked { .. }
        ));
        assert_eq!(ch(64, 1, 1, false, true, &NATIVE), AttentionChoice::Rows);
        let small_grid = with(|l| l.max_groups = 8);
        assert_eq!(ch(64, 9, 1, true, true, &small_grid), AttentionChoice::Rows);
    }

    fn with(f: impl FnOnce(&mut Limits)) -> Limits {
        let mut l = NATIVE;
        f(&mut l);
        l
    }

    #[test]
    fn heads_up_to_128_take_the_blocked_kernel() {
        assert_eq!(
            ch(64, 16, 1000, true, true, &NATIVE),
            AttentionChoice::Blocked {
                dims: 64,
                stages: 2,
                vec_loads: true,
                blocks: 16,
                heads: 16
            }
        );
        assert_eq!(
            ch(96, 3, 64, true, true, &NATIVE),
            AttentionChoice::Blocked {
                dims: 128,
                stages: 2,
                vec_loads: true,
                blocks: 1,
                heads: 3
            }
        );
        assert!(matches!(
            ch(128, 1, 5, true, true, &NATIVE),
            AttentionChoice::Blocked { dims: 128, .. }
        ));
        assert!(matches!(
            ch(1, 1, 5, true, true, &NATIVE),
            AttentionChoice::Blocked { dims: 64, .. }
        ));
    }

    #[test]
    fn one_stage_between_28_and_36_kib() {
        for (storage, stages) in [(28 << 10, 1), ((36 << 10) - 1, 1), (36 << 10, 2)] {
            let limits = with(|l| l.workgroup_storage = storage);
            assert!(
                matches!(
                    ch(64, 1, 64, true, true, &limits),
                    AttentionChoice::Blocked { stages: s, .. } if s == stages
                ),
                "{storage}"
            );
        }
    }

    #[test]
    fn vec_loads_need_whole_vec4_rows_and_aligned_operands() {
        let vec = |head_dim, aligned16| match ch(head_dim, 1, 64, true, aligned16, &NATIVE) {
            AttentionChoice::Blocked { vec_loads, .. } => vec_loads,
            other => panic!("{other:?}"),
        };
        assert!(vec(64, true));
        assert!(!vec(62, true));
        assert!(!vec(64, false));
    }

    #[test]
    fn the_row_kernel_takes_the_rest() {
        let browser = with(|l| l.workgroup_storage = 16 << 10);
        let few_threads = with(|l| l.max_invocations = 128);
        let small_grid = with(|l| l.max_groups = 8);
        for (head_dim, heads, seq_q, has_kv, limits) in [
            (129, 1, 64, true, &NATIVE),
            (64, 1, 64, true, &browser),
            (64, 1, 64, true, &few_threads),
            (64, 9, 64, true, &small_grid),
            (64, 1, 64 * 8 + 1, true, &small_grid),
            (64, 1, 64, false, &NATIVE),
        ] {
            assert_eq!(
                ch(head_dim, heads, seq_q, has_kv, true, limits),
                AttentionChoice::Rows,
                "{head_dim} {heads} {seq_q} {has_kv} {limits:?}"
            );
        }
        assert!(matches!(
            ch(64, 8, 64 * 8, true, true, &small_grid),
            AttentionChoice::Blocked { .. }
        ));
    }

    #[test]
    fn keys() {
        let f = |v: f64| v.to_bits();
        let fast = AttentionChoice::Blocked {
            dims: 128,
            stages: 1,
            vec_loads: false,
            blocks: 1,
            heads: 1,
        }
        .key(params::ATTENTION_CAUSAL);
        assert_eq!((fast.kernel, fast.entry), (Kernel::Attention, "fast"));
        assert_eq!(
            fast.constants,
            [
                ("D", f(128.0)),
                ("STAGES", f(1.0)),
                ("VEC_LOADS", f(0.0)),
                ("FEATURES", f(1.0))
            ]
        );
        let rows = AttentionChoice::Rows.key(params::ATTENTION_MASKED);
        assert_eq!((rows.kernel, rows.entry), (Kernel::Attention, "main"));
        assert!(rows.constants.is_empty());
    }
}
