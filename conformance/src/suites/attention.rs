//! attention against the oracle.

use backend_api::ComputeBackend;
use backend_cpu::reference;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Suite, dim};
use crate::data::{Rng, from_bytes};
use crate::harness::{Dev, op_failed};
use crate::tolerance::{Closeness, EPS, FTZ, Tol, compare};
use crate::{Check, Profile};

/// One attention case.
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
}

impl AttentionCase {
    /// The scale passed to the backend.
    pub fn scale(&self) -> f64 {
        self.scale
            .unwrap_or(1.0 / (self.head_dim.max(1) as f64).sqrt())
    }
}

pub(crate) struct AttentionSuite;

impl Suite for AttentionSuite {
    type Case = AttentionCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<AttentionCase> {
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
        (shape, scale, rest)
            .prop_map(
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
                    }
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
        t
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &AttentionCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let d = c.head_dim;
        let q_len = c.batch * c.heads * c.seq_q * d;
        let kv_len = c.batch * c.heads * c.seq_kv * d;
        let mut q = rng.fill(q_len, -1.0, 1.0);
        let mut k = rng.fill(kv_len, -1.0, 1.0);
        let mut v = rng.fill(kv_len, -1.0, 1.0);
        if c.nan {
            for x in [&mut q, &mut k, &mut v] {
                rng.sprinkle(x, &[f32::NAN], 0.002);
            }
        }
        let o0 = rng.sentinels(q_len);
        let mut dev = Dev::new(b);
        let q_dev = dev.put_f32(&mut rng, &q, c.offsets[0], 2)?;
        let k_dev = dev.put_f32(&mut rng, &k, c.offsets[1], 2)?;
        let v_dev = dev.put_f32(&mut rng, &v, c.offsets[2], 2)?;
        let o_dev = dev.put_f32(&mut rng, &o0, c.offsets[3], 2)?;
        let scale = c.scale();
        b.attention(
            q_dev.ptr, k_dev.ptr, v_dev.ptr, o_dev.ptr, c.batch, c.heads, c.seq_q, c.seq_kv, d,
            scale, c.causal,
        )
        .map_err(|e| op_failed("attention", e))?;

        let run = |v: &[f32]| {
            let mut o = vec![0.0; q_len];
            reference::attention(
                &q, &k, v, &mut o, c.batch, c.heads, c.seq_q, c.seq_kv, d, scale, c.causal,
            );
            o
        };
        let want = run(&v);
        // sum_j p_j |v_j| per output element: the oracle on |V|.
        let weighted_abs_v = run(&v.iter().map(|x| x.abs()).collect::<Vec<_>>());
        // Error bound. A score s_j = scale * q.k_j carries an error of at most
        // E = |scale| * (d + 2) * EPS * sum_t |q_t k_jt| (the dot bound); the softmax
        // weights then carry a relative error of at most 2E (the row maximum cancels
        // in the normalisation) plus the exp and division errors (WGSL: exp within
        // 3 + 2|x| ulp, which times e^x is at most 3 ulp; division 2.5 ulp) and the
        // online rescaling (one exp per key block, at most seq_kv of them). The output is
        // a convex combination of V rows, so those relative errors multiply
        // sum_j p_j |v_j|, plus the summation bound over seq_kv terms.
        let max_qk = (q.iter().fold(0.0f32, |m, x| m.max(x.abs()))
            * k.iter().fold(0.0f32, |m, x| m.max(x.abs()))) as f64
            * d as f64;
        let e = scale.abs() * (d as f64 + 2.0) * EPS * max_qk;
        let rel = 2.0 * e + 4.0 * (c.seq_kv as f64 + 4.0) * EPS;
        let got = from_bytes(&dev.output(&o_dev, "O").await?);
        let close = compare("O", &got, &want, |i| Tol {
            atol: rel * f64::from(weighted_abs_v[i]) + FTZ,
            rtol: 4.0 * EPS,
        })
        .map_err(|m| m.to_string())?;
        for (r, what) in [(&q_dev, "Q"), (&k_dev, "K"), (&v_dev, "V")] {
            dev.unchanged(r, what).await?;
        }
        Ok(close)
    }
}
