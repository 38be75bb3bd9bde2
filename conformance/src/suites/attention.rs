//! attention and attention_ex against the oracle.
//!
//! `attention` cases are contiguous `[b, h, s, d]` with one K/V head per query head.
//! `attention_ex` cases add grouped heads (GQA and MQA), `[b, s, h, d]` layouts, KV caches
//! of a larger capacity read in place (and an O with spare rows, whose gaps must keep
//! their bytes), masks broadcast over batch and heads with `-inf` entries and whole
//! `-inf` rows, a soft cap, a sliding window and a V head size of its own.

use backend_api::validate::{self, AttentionPlan};
use backend_api::{AttentionArgs, AttentionMask, ComputeBackend, DType, HeadTensor};
use backend_cpu::reference;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Suite, dim, storage};
use crate::data::{Rng, f32_dtype, stored, to_bytes};
use crate::harness::{Dev, op_failed};
use crate::tolerance::{Closeness, EPS, FTZ, Tol, compare, unchanged};
use crate::{Check, Profile};

/// One attention case. The fields after `seed` are `attention_ex`'s (their defaults
/// make an `attention` case).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(missing_docs, reason = "the fields are attention's arguments")]
pub struct AttentionCase {
    pub batch: usize,
    pub heads: usize,
    pub seq_q: usize,
    pub seq_kv: usize,
    pub head_dim: usize,
    /// Multiplies the scores; `None` means `1 / sqrt(head_dim)`.
    pub scale: Option<f64>,
    pub causal: bool,
    /// Interior-pointer offsets of Q, K, V and O, in elements.
    pub offsets: [usize; 4],
    /// A few NaN in Q, K and V.
    pub nan: bool,
    /// Seed of the data.
    pub seed: u64,
    /// Key/value heads (`None`: `heads`).
    #[serde(default)]
    pub kv_heads: Option<usize>,
    /// V and O rows (`None`: `head_dim`).
    #[serde(default)]
    pub v_head_dim: Option<usize>,
    /// `[b, s, h, d]` instead of `[b, h, s, d]`.
    #[serde(default)]
    pub bshd: bool,
    /// Spare rows per head of K, V (a cache's capacity beyond `seq_kv`) and of O.
    #[serde(default)]
    pub spare_rows: usize,
    /// A mask, and whether it has its own batch and head dimensions.
    #[serde(default)]
    pub mask: Option<[bool; 2]>,
    #[serde(default)]
    pub softcap: Option<f64>,
    #[serde(default)]
    pub window: Option<usize>,
    /// Storage of Q, K, V and O (f16/bf16 through `AttentionArgs::dtype`).
    #[serde(default = "f32_dtype")]
    pub dtype: DType,
}

impl AttentionCase {
    /// The scale passed to the backend.
    pub fn scale(&self) -> f64 {
        self.scale
            .unwrap_or(1.0 / (self.head_dim.max(1) as f64).sqrt())
    }

    fn kv_heads(&self) -> usize {
        self.kv_heads.unwrap_or(self.heads)
    }

    fn v_dim(&self) -> usize {
        self.v_head_dim.unwrap_or(self.head_dim)
    }

    /// An operand of `heads` heads of `rows` rows of `dim` in the case's layout.
    fn tensor(&self, ptr: u64, heads: usize, rows: usize, dim: usize) -> HeadTensor {
        if self.bshd {
            HeadTensor::bshd(ptr, heads, rows, dim)
        } else {
            HeadTensor::bhsd(ptr, heads, rows, dim)
        }
    }

    /// The mask's `[batch, heads]`.
    fn mask_dims(&self) -> Option<[usize; 2]> {
        self.mask.map(|[b, h]| {
            [
                if b { self.batch } else { 1 },
                if h { self.heads } else { 1 },
            ]
        })
    }
}

pub(crate) struct AttentionSuite;

fn plain(p: &Profile) -> impl Strategy<Value = AttentionCase> + use<> {
    let shape = (
        1..=2usize,
        1..=3usize,
        dim(p.attn_seq),
        dim(p.attn_seq),
        dim(p.attn_head_dim),
    );
    let scale = prop_oneof![4 => Just(None), 1 => Just(Some(1.0)), 1 => Just(Some(2.0)), 1 => (-1.0..1.0f64).prop_map(Some)];
    let rest = (
        any::<bool>(),
        prop::array::uniform4(0..4usize),
        prop::bool::weighted(0.1),
        any::<u64>(),
    );
    (shape, scale, rest).prop_map(
        |((batch, heads, seq_q, seq_kv, head_dim), scale, (causal, offsets, nan, seed))| {
            // Often whole vec4 rows on 16-byte boundaries, which vectorised kernels
            // take: head_dim and the offsets multiples of 4.
            let aligned = seed % 2 == 0;
            let up = |v: usize| if aligned { v.div_ceil(4) * 4 } else { v };
            AttentionCase {
                batch,
                heads,
                seq_q,
                seq_kv,
                head_dim: up(head_dim),
                scale,
                causal,
                offsets: offsets.map(|o| if aligned { o / 4 * 4 } else { o }),
                nan,
                seed,
                kv_heads: None,
                v_head_dim: None,
                bshd: false,
                spare_rows: 0,
                mask: None,
                softcap: None,
                window: None,
                dtype: DType::F32,
            }
        },
    )
}

impl Suite for AttentionSuite {
    type Case = AttentionCase;

    fn strategy(check: Check, p: &Profile) -> BoxedStrategy<AttentionCase> {
        if check != Check::AttentionEx {
            return plain(p).boxed();
        }
        let ex = (
            (1..=2usize, 1..=3usize),
            prop::option::weighted(0.3, dim(p.attn_head_dim)),
            any::<bool>(),
            prop_oneof![1 => Just(0usize), 1 => 1..=5usize],
            prop::option::weighted(0.5, any::<[bool; 2]>()),
            prop::option::weighted(0.2, 0.5..8.0f64),
            prop::option::weighted(0.2, 1..=12usize),
            storage(),
            // Often few query rows (decoding), which backends split over the keys.
            prop::option::weighted(0.35, 1..=4usize),
        );
        (plain(p), ex)
            .prop_map(
                |(
                    mut c,
                    ((kv_heads, group), v_dim, bshd, spare, mask, softcap, window, dtype, decode),
                )| {
                    if let Some(rows) = decode {
                        c.seq_q = rows;
                    }
                    c.heads = kv_heads * group;
                    c.kv_heads = Some(kv_heads);
                    c.v_head_dim = v_dim.map(|v| {
                        if c.head_dim.is_multiple_of(4) {
                            v.div_ceil(4) * 4
                        } else {
                            v
                        }
                    });
                    c.bshd = bshd;
                    c.spare_rows = spare;
                    c.mask = mask;
                    c.softcap = softcap;
                    c.window = window;
                    c.causal |= window.is_some();
                    c.dtype = dtype;
                    c
                },
            )
            .boxed()
    }

    fn tags(c: &AttentionCase) -> Vec<&'static str> {
        let mut t = vec![];
        if c.nan {
            t.push("non-finite");
        }
        if c.causal && c.seq_q > c.seq_kv {
            t.push("rows-without-keys");
        }
        if c.mask.is_some() {
            t.push("masked");
        }
        t
    }

    fn kind(c: &AttentionCase) -> String {
        let mut k = vec![];
        match c.dtype {
            DType::F16 => k.push("f16"),
            DType::BF16 => k.push("bf16"),
            DType::F32 => {}
        }
        if c.kv_heads.is_some_and(|kv| kv < c.heads) {
            k.push("gqa");
        }
        if c.mask.is_some() {
            k.push("mask");
        }
        if c.softcap.is_some() {
            k.push("softcap");
        }
        if c.window.is_some() {
            k.push("window");
        }
        k.join("+")
    }

    async fn run(
        b: &dyn ComputeBackend,
        check: Check,
        c: &AttentionCase,
    ) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let (d, dv) = (c.head_dim, c.v_dim());
        let (heads, kv_heads) = (c.heads, c.kv_heads());
        let kv_rows = c.seq_kv + c.spare_rows;
        let o_rows = c.seq_q + c.spare_rows;
        let mut q = rng.fill(c.batch * heads * c.seq_q * d, -1.0, 1.0);
        let mut k = rng.fill(c.batch * kv_heads * kv_rows * d, -1.0, 1.0);
        let mut v = rng.fill(c.batch * kv_heads * kv_rows * dv, -1.0, 1.0);
        if c.nan {
            for x in [&mut q, &mut k, &mut v] {
                rng.sprinkle(x, &[f32::NAN], 0.002);
            }
        }
        // What a backend reads from f16/bf16 storage, so that the oracle sees it too.
        let dt = c.dtype;
        let (q, k, v) = (stored(dt, &q), stored(dt, &k), stored(dt, &v));
        let mask = match c.mask_dims() {
            Some([mb, mh]) => {
                let mut m = rng.fill(mb * mh * c.seq_q * c.seq_kv, -2.0, 2.0);
                rng.sprinkle(&mut m, &[f32::NEG_INFINITY], 0.2);
                // Some rows exclude every key.
                for row in m.chunks_mut(c.seq_kv.max(1)) {
                    if rng.below(8) == 0 {
                        row.fill(f32::NEG_INFINITY);
                    }
                }
                m
            }
            None => Vec::new(),
        };
        let o0 = stored(dt, &rng.sentinels(c.batch * heads * o_rows * dv));
        let mut dev = Dev::new(b);
        let q_dev = dev.put_typed(&mut rng, dt, &q, c.offsets[0], 2)?;
        let k_dev = dev.put_typed(&mut rng, dt, &k, c.offsets[1], 2)?;
        let v_dev = dev.put_typed(&mut rng, dt, &v, c.offsets[2], 2)?;
        let o_dev = dev.put_typed(&mut rng, dt, &o0, c.offsets[3], 2)?;
        let m_dev = dev.put_f32(&mut rng, &mask, 0, 2)?;
        let scale = c.scale();
        let plan = if check == Check::AttentionEx {
            let mut args = AttentionArgs::new(
                c.batch,
                heads,
                kv_heads,
                c.seq_q,
                c.seq_kv,
                d,
                c.tensor(q_dev.ptr, heads, c.seq_q, d),
                c.tensor(k_dev.ptr, kv_heads, kv_rows, d),
                c.tensor(v_dev.ptr, kv_heads, kv_rows, dv),
                c.tensor(o_dev.ptr, heads, o_rows, dv),
            )
            .scale(scale)
            .causal(c.causal)
            .v_head_dim(dv)
            .dtype(dt);
            args.mask = c.mask_dims().map(|[batch, heads]| AttentionMask {
                ptr: m_dev.ptr,
                batch,
                heads,
            });
            args.softcap = c.softcap;
            args.window = c.window;
            b.attention_ex(&args)
                .map_err(|e| op_failed("attention_ex", e))?;
            validate::attention_ex(&args)
        } else {
            let (q, k, v, o) = (q_dev.ptr, k_dev.ptr, v_dev.ptr, o_dev.ptr);
            let (batch, seq_q, seq_kv) = (c.batch, c.seq_q, c.seq_kv);
            b.attention(q, k, v, o, batch, heads, seq_q, seq_kv, d, scale, c.causal)
                .map_err(|e| op_failed("attention", e))?;
            validate::attention(q, k, v, o, batch, heads, seq_q, seq_kv, d, scale, c.causal)
        };
        let plan = plan.map_err(|e| format!("the oracle's validation refused the case: {e}"))?;

        // The oracle on f32 copies (its plan's strides are in elements, whatever the
        // storage), the output rounded to the storage type.
        let run = |v: &[f32]| {
            let mut o = o0.clone();
            if let Some(p) = &plan {
                reference::attention(p, &q, &k, v, &mask, &mut o);
            }
            stored(dt, &o)
        };
        let want = run(&v);
        // sum_j p_j |v_j| per output element: the oracle on |V|.
        let weighted_abs_v = run(&v.iter().map(|x| x.abs()).collect::<Vec<_>>());
        // Error bound. A score s_j = scale * q.k_j carries an error of at most
        // E = |scale| * (d + 2) * EPS * sum_t |q_t k_jt| (the dot bound); the soft cap
        // (slope at most 1) adds its tanh's error, a few ulp of the cap, and the mask one
        // rounding of the sum. The softmax weights then carry a relative error of at most
        // 2E (the row maximum cancels in the normalisation) plus the exp and division
        // errors (WGSL: exp within 3 + 2|x| ulp, which times e^x is at most 3 ulp;
        // division 2.5 ulp) and the online rescaling (one exp per key block, at most
        // seq_kv of them). The output is a convex combination of V rows, so those
        // relative errors multiply sum_j p_j |v_j|, plus the summation bound over seq_kv
        // terms.
        let abs_max = |x: &[f32]| {
            f64::from(
                x.iter()
                    .filter(|x| x.is_finite())
                    .fold(0.0f32, |m, x| m.max(x.abs())),
            )
        };
        let max_qk = abs_max(&q) * abs_max(&k) * d as f64;
        let mut e = scale.abs() * (d as f64 + 2.0) * EPS * max_qk;
        let mut max_score = scale.abs() * max_qk;
        if let Some(cap) = c.softcap {
            e += 16.0 * cap * EPS;
            max_score = max_score.min(cap);
        }
        if c.mask.is_some() {
            e += 2.0 * EPS * (max_score + abs_max(&mask));
        }
        let rel = 2.0 * e + 4.0 * (c.seq_kv as f64 + 4.0) * EPS;
        let got = reference::decode(dt, &dev.output(&o_dev, "O").await?);
        // The elements of O's rows; the rest (spare rows) must keep their bytes.
        let mut written = vec![false; o0.len()];
        if let Some(p) = &plan {
            for row in 0..c.batch * heads * c.seq_q {
                let (bh, i) = (row / c.seq_q, row % c.seq_q);
                let at = AttentionPlan::at(p.o_strides, bh / heads, bh % heads, i);
                written[at..][..dv].fill(true);
            }
        }
        let pick = |x: &[f32], keep: bool| -> Vec<f32> {
            x.iter()
                .zip(&written)
                .filter(|&(_, &w)| w == keep)
                .map(|(&x, _)| x)
                .collect()
        };
        unchanged(
            "O's elements outside its rows (spare rows)",
            &to_bytes(&pick(&got, false)),
            &to_bytes(&pick(&o0, false)),
        )?;
        let bound = pick(&weighted_abs_v, true);
        let close = compare("O", &pick(&got, true), &pick(&want, true), |i| {
            Tol {
                atol: rel * f64::from(bound[i]) + FTZ,
                rtol: 4.0 * EPS,
            }
            .stored(dt)
        })
        .map_err(|m| m.to_string())?;
        for (r, what) in [
            (&q_dev, "Q"),
            (&k_dev, "K"),
            (&v_dev, "V"),
            (&m_dev, "mask"),
        ] {
            dev.unchanged(r, what).await?;
        }
        Ok(close)
    }
}
