//! Cases the generated suite does not reach, where this backend's fast paths differ in
//! structure from the oracle's loops: infinities in a padded conv filter (im2col multiplies
//! padding zeros by the filter, the oracle skips them) and NaN in the values of keys that
//! a causal mask hides (the fused kernel must not read them).

use backend_api::{ComputeBackend, ComputeBackendExt};
use backend_fast_cpu::FastCpuBackend;

fn fast() -> FastCpuBackend {
    let mut b = FastCpuBackend::new();
    b.init().unwrap();
    b
}

fn same(got: &[f32], want: &[f32]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= 1e-5 * w.abs().max(1.0);
        assert!(ok, "element {i}: got {g}, want {w}");
    }
}

#[test]
fn padded_conv_with_an_infinite_filter_matches_the_oracle() {
    let b = fast();
    let x: Vec<f32> = (0..2 * 5 * 5)
        .map(|i| (i % 7) as f32 * 0.5 + 0.25)
        .collect();
    let mut f: Vec<f32> = (0..3 * 2 * 3 * 3)
        .map(|i| (i % 5) as f32 * 0.1 - 0.2)
        .collect();
    f[0] = f32::INFINITY; // tap (0, 0): over padding for the first output row and column
    let (px, pf, po) = (
        b.upload(&x).unwrap(),
        b.upload(&f).unwrap(),
        b.alloc(4 * 3 * 25).unwrap(),
    );
    b.conv2d_forward(
        px,
        &[1, 2, 5, 5],
        pf,
        &[3, 2, 3, 3],
        po,
        &[1, 3, 5, 5],
        &[1, 1],
        &[1, 1],
    )
    .unwrap();
    let got = b.copy_dtoh_vec::<f32>(po, 3 * 25).unwrap();
    let mut want = vec![0.0f32; 3 * 25];
    backend_cpu::reference::conv2d(
        &x,
        [1, 2, 5, 5],
        &f,
        [3, 2, 3, 3],
        &mut want,
        [1, 1],
        [1, 1],
    );
    // Output (0, 0) has the infinite tap over padding: finite for the oracle, which
    // skips it; outputs whose tap lands inside the image are infinite.
    assert!(want[0].is_finite() && want.iter().any(|w| w.is_infinite()));
    same(&got, &want);
}

#[test]
fn causal_attention_never_reads_masked_values() {
    let b = fast();
    let (s, d) = (200, 8);
    let q: Vec<f32> = (0..s * d)
        .map(|i| ((i * 7 % 11) as f32) * 0.1 - 0.5)
        .collect();
    let k: Vec<f32> = (0..s * d)
        .map(|i| ((i * 5 % 13) as f32) * 0.1 - 0.6)
        .collect();
    let mut v: Vec<f32> = (0..s * d)
        .map(|i| ((i * 3 % 17) as f32) * 0.1 - 0.8)
        .collect();
    v[(s - 1) * d..].fill(f32::NAN); // the last key: only the last query sees it
    let (pq, pk, pv) = (
        b.upload(&q).unwrap(),
        b.upload(&k).unwrap(),
        b.upload(&v).unwrap(),
    );
    let po = b.alloc(4 * s * d).unwrap();
    let scale = 1.0 / (d as f64).sqrt();
    b.attention(pq, pk, pv, po, 1, 1, s, s, d, scale, true)
        .unwrap();
    let got = b.copy_dtoh_vec::<f32>(po, s * d).unwrap();
    let mut want = vec![0.0f32; s * d];
    let plan = backend_api::validate::attention(pq, pk, pv, po, 1, 1, s, s, d, scale, true)
        .unwrap()
        .unwrap();
    backend_cpu::reference::attention(&plan, &q, &k, &v, &[], &mut want);
    assert!(want[..(s - 1) * d].iter().all(|w| w.is_finite()));
    same(&got, &want);
}
