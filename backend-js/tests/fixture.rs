//! The fixture of the JS tests (`backend-js/test/fixture.json`): a gemm and two attention
//! calls computed natively by the CPU oracle on inputs that the JS tests rebuild from the
//! same formula. This test recomputes them and fails when the committed file differs, so
//! the browser tests compare the JS API against the oracle as it is now.
//! `BLESS=1 cargo test -p backend-js --test fixture` rewrites the file.

#![cfg(not(target_arch = "wasm32"))]

use backend_api::{
    AttentionArgs, AttentionMask, BackendTranspose, ComputeBackend, ComputeBackendExt, HeadTensor,
};
use backend_cpu::CpuBackend;
use serde_json::{Value, json};

/// Element `i` of input `seed`: the formula `test/tests.js` uses (`input(seed, len)`).
fn input(seed: u64, len: usize) -> Vec<f32> {
    (0..len as u64)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f64 / 500.0 - 1.0) as f32)
        .collect()
}

fn gemm_case(b: &CpuBackend) -> Value {
    // C (m x n) = 0.5 * A (m x k) * B^T, B stored n x k; column-major.
    let (m, n, k) = (13usize, 17usize, 40usize);
    let a = b.upload(&input(1, m * k)).unwrap();
    let bb = b.upload(&input(2, n * k)).unwrap();
    let c = b.upload(&vec![0f32; m * n]).unwrap();
    b.gemm(
        BackendTranspose::NoTrans,
        BackendTranspose::Trans,
        m,
        n,
        k,
        0.5,
        a,
        m,
        bb,
        n,
        0.0,
        c,
        m,
    )
    .unwrap();
    let out: Vec<f32> = b.copy_dtoh_vec(c, m * n).unwrap();
    json!({ "m": m, "n": n, "k": k, "alpha": 0.5, "transB": true, "seedA": 1, "seedB": 2, "c": out })
}

fn attention_case(b: &CpuBackend, masked: bool) -> Value {
    let (batch, heads, kv_heads, seq_q, seq_kv, d) =
        (2usize, 4usize, 2usize, 5usize, 9usize, 16usize);
    let q = b.upload(&input(3, batch * heads * seq_q * d)).unwrap();
    let k = b.upload(&input(4, batch * kv_heads * seq_kv * d)).unwrap();
    let v = b.upload(&input(5, batch * kv_heads * seq_kv * d)).unwrap();
    let o = b.upload(&vec![0f32; batch * heads * seq_q * d]).unwrap();
    let mut args = AttentionArgs::new(
        batch,
        heads,
        kv_heads,
        seq_q,
        seq_kv,
        d,
        HeadTensor::bhsd(q, heads, seq_q, d),
        HeadTensor::bhsd(k, kv_heads, seq_kv, d),
        HeadTensor::bhsd(v, kv_heads, seq_kv, d),
        HeadTensor::bhsd(o, heads, seq_q, d),
    )
    .causal(true);
    if masked {
        let mask = b.upload(&input(6, seq_q * seq_kv)).unwrap();
        args = args.mask(AttentionMask::shared(mask));
    }
    b.attention_ex(&args).unwrap();
    let out: Vec<f32> = b.copy_dtoh_vec(o, batch * heads * seq_q * d).unwrap();
    json!({
        "batch": batch, "heads": heads, "kvHeads": kv_heads, "seqQ": seq_q, "seqKv": seq_kv,
        "headDim": d, "causal": true, "seedQ": 3, "seedK": 4, "seedV": 5,
        "maskSeed": if masked { json!(6) } else { Value::Null }, "o": out,
    })
}

#[test]
fn the_committed_fixture_is_the_oracles_output() {
    let mut b = CpuBackend::new();
    b.init().unwrap();
    let fixture = json!({
        "about": "Outputs of the CPU oracle (backend-cpu) for the JS tests; made by backend-js/tests/fixture.rs (BLESS=1 to rewrite). Inputs: input(seed, len)[i] = fround(((i * 7919 + seed * 104729) % 1000) / 500 - 1).",
        "gemm": gemm_case(&b),
        "attention": attention_case(&b, false),
        "attentionMasked": attention_case(&b, true),
    });
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/test/fixture.json");
    let text = serde_json::to_string_pretty(&fixture).unwrap() + "\n";
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(path, &text).unwrap();
        return;
    }
    // Compared as text: serde_json's float parsing is not correctly rounded by default.
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == text,
        "{path} is not the oracle's output now: rerun with BLESS=1 and commit it"
    );
}
