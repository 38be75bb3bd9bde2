//! The examples' models on every backend available: the outputs of the CPU and the WebGPU
//! backend must agree (on lavapipe in CI), and the models' wiring is checked on the CPU.
//!
//! Without a WebGPU adapter (or without the `webgpu` feature) the comparison is skipped
//! loudly, and fails when `BACKEND_REQUIRE_ADAPTER=1` (set by `scripts/test`).

#![expect(
    clippy::duplicate_mod,
    reason = "each example binary includes the shared `common` module; here all four do"
)]

#[path = "../examples/cnn.rs"]
mod cnn;
#[path = "../examples/llama.rs"]
mod llama;
#[path = "../examples/mobilenet.rs"]
mod mobilenet;
#[path = "../examples/transformer.rs"]
mod transformer;

use backends::{BackendKind, ComputeBackend};

const REQUIRE_ENV: &str = "BACKEND_REQUIRE_ADAPTER";

/// Fails, or says loudly that it skips, when no WebGPU backend took part.
fn expect_gpu_compared(names: &[String]) {
    assert!(
        names.iter().any(|n| n.starts_with("cpu")),
        "the CPU did not run: {names:?}"
    );
    if names.iter().any(|n| n.starts_with("webgpu")) {
        return;
    }
    let why = if BackendKind::WebGpu.is_compiled() {
        match backends::create(BackendKind::WebGpu) {
            Ok(_) => "the WebGPU backend started but was not compared".to_string(),
            Err(e) => format!("no WebGPU backend: {e}"),
        }
    } else {
        "built without the `webgpu` feature of `backends`".to_string()
    };
    assert!(
        !backend_api::env::flag(REQUIRE_ENV),
        "{REQUIRE_ENV}=1 but the outputs were not compared with WebGPU: {why}"
    );
    eprintln!("SKIPPED the CPU vs WebGPU comparison: {why}; set {REQUIRE_ENV}=1 to fail instead");
}

fn cpu() -> Box<dyn ComputeBackend> {
    backends::create(BackendKind::Cpu).expect("the CPU backend starts")
}

#[test]
fn transformer_block_agrees_across_backends() {
    let rows = transformer::run(1).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    assert!(
        rows.iter()
            .all(|r| r.output.len() == transformer::SEQ * transformer::D)
    );
    assert!(
        rows.iter()
            .skip(1)
            .all(|r| r.worst_ratio.is_some_and(|x| x <= 1.0))
    );
    expect_gpu_compared(&names);
}

#[test]
fn cnn_agrees_across_backends() {
    let rows = cnn::run(1).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    assert!(rows.iter().all(|r| r.output.len() == cnn::N * cnn::CLASSES));
    assert!(
        rows.iter()
            .skip(1)
            .all(|r| r.worst_ratio.is_some_and(|x| x <= 1.0))
    );
    expect_gpu_compared(&names);
}

#[test]
fn the_transformer_block_is_causal() {
    let b = cpu();
    let mut w = transformer::Weights::new(7);
    let before = transformer::forward_with(b.as_ref(), &w).unwrap();
    // Change the last token only: every earlier position must be unchanged, bit for bit.
    let d = transformer::D;
    let last = (transformer::SEQ - 1) * d;
    for v in &mut w.x[last..] {
        *v = -*v + 0.5;
    }
    let after = transformer::forward_with(b.as_ref(), &w).unwrap();
    assert_eq!(
        before[..last],
        after[..last],
        "an earlier position saw a later token"
    );
    assert_ne!(
        before[last..],
        after[last..],
        "the last position ignored its own token"
    );
    // And the first token changes every position.
    let mut w2 = transformer::Weights::new(7);
    w2.x[0] += 1.0;
    let shifted = transformer::forward_with(b.as_ref(), &w2).unwrap();
    for t in 0..transformer::SEQ {
        assert_ne!(
            before[t * d..][..d],
            shifted[t * d..][..d],
            "position {t} ignored token 0"
        );
    }
}

#[test]
fn the_cnn_outputs_probabilities_per_image() {
    let b = cpu();
    let p = cnn::forward(b.as_ref()).unwrap();
    for row in p.chunks(cnn::CLASSES) {
        let sum: f32 = row.iter().sum();
        assert!(
            (sum - 1.0).abs() < 1e-5,
            "probabilities sum to {sum}: {row:?}"
        );
        assert!(row.iter().all(|&x| x > 0.0 && x < 1.0), "{row:?}");
    }
    assert_ne!(
        p[..cnn::CLASSES],
        p[cnn::CLASSES..],
        "two different images, same output"
    );
    // Each image is classified on its own: changing image 1 leaves image 0's output alone.
    let mut input = cnn::input();
    let per_image = input.len() / cnn::N;
    for v in &mut input[per_image..] {
        *v *= -1.0;
    }
    let q = cnn::forward_on(b.as_ref(), &input).unwrap();
    assert_eq!(p[..cnn::CLASSES], q[..cnn::CLASSES]);
    assert_ne!(p[cnn::CLASSES..], q[cnn::CLASSES..]);
}

#[test]
fn the_comparison_catches_a_wrong_output() {
    use transformer::common::worst_ratio;
    let want = vec![1.0f32, -2.0, 0.0, 3.0];
    assert_eq!(worst_ratio(&want, &want).unwrap(), 0.0);
    let mut got = want.clone();
    got[3] += 1e-3; // the bound at 3.0 is 1e-4 + 1e-4 * 3 = 4e-4
    assert!(worst_ratio(&want, &got).unwrap() > 1.0);
    got[3] = want[3] + 3e-4;
    assert!(worst_ratio(&want, &got).unwrap() <= 1.0);
    got[0] = f32::NAN;
    assert!(worst_ratio(&want, &got).is_err());
    assert!(worst_ratio(&want, &want[..3]).is_err());
}

/// Both models' activations in one planned arena: smaller than allocating each, never
/// below the bytes live at once, and the outputs unchanged bit for bit (the CPU oracle is
/// deterministic, so any byte shared by two live activations would show).
#[test]
fn planned_arenas_are_smaller_and_change_nothing() {
    let b = cpu();
    let t = transformer::plan_report(b.as_ref()).unwrap();
    let c = cnn::plan_report(b.as_ref()).unwrap();
    for (name, text, planned, unplanned, plan, sum) in [
        (
            "transformer",
            t.describe(),
            &t.planned,
            &t.unplanned,
            &t.plan,
            t.sum,
        ),
        (
            "cnn",
            c.describe(),
            &c.planned,
            &c.unplanned,
            &c.plan,
            c.sum,
        ),
    ] {
        eprintln!("{name}: {text}");
        assert_eq!(planned, unplanned, "{name}: the plan changed the output");
        assert!(plan.size < sum, "{name}: {plan:?} against {sum} bytes");
        assert!(plan.size >= plan.peak_live, "{name}: {plan:?}");
        assert!(
            plan.bytes.len() >= 8,
            "{name}: too few activations recorded"
        );
    }
}

/// An activation used after its `done` is refused in the planned arena (its alias is
/// freed), instead of reading bytes another activation may own by then.
#[test]
fn a_planned_activation_used_after_done_is_stale() {
    use backends::ComputeBackendExt;
    fn early_done(
        ar: &mut transformer::common::Arena<'_>,
        _: &(),
    ) -> backends::BackendResult<Vec<f32>> {
        let a = ar.alloc(64)?;
        let c = ar.alloc(64)?;
        ar.b.copy_htod_slice(a, &[1.0f32; 64])?;
        ar.done(a)?;
        ar.b.unary(backends::UnaryOp::Relu, a, c, 64)?; // `a` is already done
        ar.b.copy_dtoh_vec(c, 64)
    }
    let b = cpu();
    // Recording frees `a` at done, so the recording run already refuses the late use.
    let e = transformer::common::plan_and_run(b.as_ref(), early_done, &()).unwrap_err();
    assert!(
        matches!(e, backends::BackendError::InvalidArgument(_)),
        "{e}"
    );
    // A planned run (the lives as recording would give them) refuses it as stale.
    use backends::backend_api::memory::{TensorLife, plan_arena};
    let life = |first_use, last_use| TensorLife {
        bytes: 256,
        first_use,
        last_use,
    };
    let plan = plan_arena(&[life(1, 3), life(2, 4)], 256).unwrap();
    let e = transformer::common::run_planned(b.as_ref(), early_done, &(), &plan).unwrap_err();
    assert!(
        matches!(e, backends::BackendError::InvalidArgument(ref m) if m.contains("stale")),
        "{e}"
    );
}

#[test]
fn llama_block_agrees_across_backends() {
    let rows = llama::run(1).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    let tokens = llama::PREFILL + llama::DECODE;
    assert!(rows.iter().all(|r| r.output.len() == tokens * llama::D));
    assert!(
        rows.iter()
            .skip(1)
            .all(|r| r.worst_ratio.is_some_and(|x| x <= 1.0))
    );
    expect_gpu_compared(&names);
}

/// Checks that a numpy reference file (`examples/reference/*.json`) was made from the
/// same weights (their first four values' bits), then `got` against its output:
/// `|diff| <= 1e-4 + 1e-4 |want|` (f32 through a few ops against float64).
fn matches_reference(text: &str, weights: &[(&str, &[f32])], got: &[f32], row: usize) {
    let doc: serde_json::Value = serde_json::from_str(text).expect("the reference parses");
    let heads = &doc["weights_head"];
    for &(name, v) in weights {
        let want: Vec<u64> = serde_json::from_value(heads[name].clone()).expect(name);
        let got: Vec<u64> = v[..4].iter().map(|x| u64::from(x.to_bits())).collect();
        assert_eq!(got, want, "weight {name} differs from the reference's");
    }
    let want: Vec<f64> = serde_json::from_value(doc["output"].clone()).expect("output");
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let tol = 1e-4 + 1e-4 * w.abs();
        assert!(
            (f64::from(g) - w).abs() <= tol,
            "row {} element {}: {g} against numpy's {w}",
            i / row,
            i % row
        );
    }
}

/// Every token's output row against numpy (`examples/reference/llama.py`), after
/// checking that both sides made the same weights and tokens.
#[test]
fn llama_block_matches_numpy() {
    let text = include_str!("../examples/reference/llama.json");
    let doc: serde_json::Value = serde_json::from_str(text).expect("llama.json parses");
    let toks: Vec<u32> = serde_json::from_value(doc["tokens"].clone()).expect("tokens");
    assert_eq!(toks, llama::tokens());
    let w = llama::Weights::new();
    let got = llama::forward(cpu().as_ref()).unwrap();
    let weights: [(&str, &[f32]); 10] = [
        ("embed", &w.embed),
        ("g_attn", &w.g_attn),
        ("wq", &w.wq),
        ("wk", &w.wk),
        ("wv", &w.wv),
        ("wo", &w.wo),
        ("g_mlp", &w.g_mlp),
        ("wg", &w.wg),
        ("wu", &w.wu),
        ("wd", &w.wd),
    ];
    matches_reference(text, &weights, &got, llama::D);
}

/// The block with its projections in Q4_0 (`gemm_q` on blocks made by
/// `QuantFormat::quantize`) against numpy on gguf's dequantized weights: the quantizer,
/// the block layout `gemm_q` reads and the model's wiring of `gemm_q` all have to agree.
#[test]
fn llama_block_q4_0_matches_numpy() {
    let text = include_str!("../examples/reference/llama_q4_0.json");
    let w = llama::Weights::new();
    let got = llama::forward_q4_0(cpu().as_ref()).unwrap();
    let weights: [(&str, &[f32]); 3] = [("embed", &w.embed), ("wq", &w.wq), ("wd", &w.wd)];
    matches_reference(text, &weights, &got, llama::D);
    // And it is not the f32 block: quantization moved the outputs.
    let f32_out = llama::forward(cpu().as_ref()).unwrap();
    let moved = got
        .iter()
        .zip(&f32_out)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        moved > 1e-3,
        "Q4_0 output equals the f32 one (max |diff| {moved})"
    );
}

#[test]
fn llama_q4_0_block_agrees_across_backends() {
    let rows = llama::run_q4_0(1).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    assert!(
        rows.iter()
            .skip(1)
            .all(|r| r.worst_ratio.is_some_and(|x| x <= 1.0))
    );
    expect_gpu_compared(&names);
}

#[test]
fn mobilenet_block_agrees_across_backends() {
    let rows = mobilenet::run(1).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    let n = mobilenet::N * mobilenet::C * mobilenet::H * mobilenet::W;
    assert!(rows.iter().all(|r| r.output.len() == n));
    assert!(
        rows.iter()
            .skip(1)
            .all(|r| r.worst_ratio.is_some_and(|x| x <= 1.0))
    );
    expect_gpu_compared(&names);
}

/// The block's output against numpy (`examples/reference/mobilenet.py`).
#[test]
fn mobilenet_block_matches_numpy() {
    let w = mobilenet::Weights::new();
    let got = mobilenet::forward(cpu().as_ref()).unwrap();
    let weights: [(&str, &[f32]); 7] = [
        ("x", &w.x),
        ("w_expand", &w.w_expand),
        ("b_expand", &w.b_expand),
        ("w_dw", &w.w_dw),
        ("b_dw", &w.b_dw),
        ("w_project", &w.w_project),
        ("b_project", &w.b_project),
    ];
    let text = include_str!("../examples/reference/mobilenet.json");
    matches_reference(text, &weights, &got, mobilenet::W);
}

/// Decoding one token at a time through the KV cache gives what a prefill of the whole
/// sequence gives (the cache holds what a longer prefill would have computed).
#[test]
fn llama_decode_steps_equal_one_long_prefill() {
    let b = cpu();
    let stepped = llama::forward(b.as_ref()).unwrap();
    let all = llama::forward_prefill_only(b.as_ref()).unwrap();
    assert_eq!(stepped.len(), all.len());
    for (i, (x, y)) in stepped.iter().zip(&all).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
            "element {i}: {x} vs {y}"
        );
    }
}
