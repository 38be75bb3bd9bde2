//! Mutation tests of the conformance suite: a backend that is wrong in one known way must
//! fail the check that covers it.
//!
//! [`Mutant`] (from [`conformance::mutant`]) wraps a `CpuBackend` (the oracle itself) and
//! delegates every method to it, except for one injected [`Fault`]. Each fault is made by
//! calling the inner backend with altered arguments, or by running the correct op and then
//! corrupting memory through the inner backend's own copies. For every fault a test runs
//! the relevant check with 64 cases and asserts that it fails, with a message that names
//! the right thing. A last test runs the whole suite on the un-mutated wrapper, so a
//! failure above is the fault's doing and not the wrapper's.

use conformance::mutant::{Fault, Mutant, f16_truncated};
use conformance::{Check, CheckReport, Config, SuiteReport, run_check};

fn summary(report: &CheckReport) -> String {
    SuiteReport {
        backend: "mutant".into(),
        checks: vec![report.clone()],
    }
    .summary()
}

/// Runs `check` (64 cases) on a mutant with `fault` and asserts that it fails, and that
/// some failure message contains every one of `words`.
fn assert_caught(fault: Fault, check: Check, words: &[&str]) {
    assert_caught_in(fault, check, words, 64);
}

/// [`assert_caught`] with `cases` cases, for a fault of one op among many in its check.
fn assert_caught_in(fault: Fault, check: Check, words: &[&str], cases: u32) {
    let report = run_check(&Mutant::new(fault), check, &Config::new(cases));
    let text = summary(&report);
    eprintln!("fault {fault:?}, check {check}:\n{text}");
    assert!(
        !report.ok(),
        "fault {fault:?} was NOT caught by the {check} check:\n{text}"
    );
    assert!(
        report
            .failures
            .iter()
            .any(|f| words.iter().all(|w| f.message.contains(w))),
        "fault {fault:?} failed the {check} check, but no failure message mentions all of {words:?}:\n{text}"
    );
}

#[test]
fn gemm_ignoring_beta_is_caught() {
    assert_caught(Fault::GemmIgnoresBeta, Check::Gemm, &["C["]);
}

#[test]
fn gemm_reading_c_when_beta_is_zero_is_caught() {
    assert_caught(
        Fault::GemmReadsCWhenBetaZero,
        Check::Gemm,
        &["C[", "got NaN"],
    );
}

#[test]
fn gemm_treating_trans_a_as_no_trans_is_caught() {
    assert_caught(Fault::GemmTransAAsNoTrans, Check::Gemm, &["C["]);
}

#[test]
fn gemm_zeroing_padding_rows_of_c_is_caught() {
    assert_caught(Fault::GemmZeroesPaddingRows, Check::Gemm, &["C[", "want"]);
}

#[test]
fn batched_gemm_skipping_the_last_batch_is_caught() {
    assert_caught(
        Fault::BatchedGemmSkipsLastBatch,
        Check::BatchedGemm,
        &["C["],
    );
}

#[test]
fn unary_writing_past_the_output_is_caught() {
    assert_caught(
        Fault::UnaryWritesPastEnd,
        Check::Unary,
        &["bytes after output"],
    );
}

#[test]
fn relu_turning_nan_into_zero_is_caught() {
    // Relu is one of 34 unary ops: 64 cases hold about two.
    assert_caught_in(
        Fault::ReluNanToZero,
        Check::Unary,
        &["relu output[", "want NaN"],
        512,
    );
}

#[test]
fn reduce_max_over_an_empty_axis_writing_zero_is_caught() {
    assert_caught(
        Fault::ReduceMaxEmptyAxisZero,
        Check::Reduce,
        &["output[", "want -inf"],
    );
}

#[test]
fn reduce_mean_dividing_by_len_minus_one_is_caught() {
    assert_caught(Fault::ReduceMeanBiased, Check::Reduce, &["output["]);
}

#[test]
fn layer_norm_with_the_unbiased_variance_is_caught() {
    assert_caught(Fault::LayerNormUnbiased, Check::Rows, &["layer_norm y["]);
}

#[test]
fn attention_ignoring_causal_when_rectangular_is_caught() {
    assert_caught(
        Fault::AttentionCausalIgnoredWhenRectangular,
        Check::Attention,
        &["O["],
    );
}

#[test]
fn attention_ex_interleaving_kv_groups_is_caught() {
    assert_caught(
        Fault::AttentionExInterleavedGroups,
        Check::AttentionEx,
        &["O["],
    );
}

#[test]
fn binary_broadcast_swapping_its_inputs_is_caught() {
    assert_caught(
        Fault::BroadcastSwapsInputs,
        Check::BinaryBroadcast,
        &["output["],
    );
}

#[test]
fn gather_reading_the_next_row_is_caught() {
    assert_caught(
        Fault::GatherReadsNextRow,
        Check::Gather,
        &["gather output["],
    );
}

#[test]
fn conv2d_ex_dropping_its_bias_is_caught() {
    assert_caught(Fault::ConvExDropsBias, Check::Conv2dEx, &["output["]);
}

#[test]
fn gemm_q_swapping_nibbles_is_caught() {
    assert_caught(Fault::GemmQSwapsNibbles, Check::GemmQ, &["C["]);
}

#[test]
fn selu_ignoring_its_scale_is_caught() {
    assert_caught(
        Fault::SeluIgnoresScale,
        Check::UnaryParam,
        &["selu", "output["],
    );
}

#[test]
fn mod_rounding_its_quotient_is_caught() {
    assert_caught(Fault::ModRoundsQuotient, Check::Binary, &["mod output["]);
}

#[test]
fn conv2d_flipping_the_filter_is_caught() {
    assert_caught(Fault::ConvFlipsFilter, Check::Conv2d, &["output["]);
}

#[test]
fn copy_htod_overtaking_queued_work_is_caught() {
    assert_caught(
        Fault::HtodOvertakesQueue,
        Check::Ordering,
        &["copy_htod overtook a queued op", "program order"],
    );
}

/// The queueing mutant is right whenever uploads come before the ops that read them, so
/// the ordering check above fails for the ordering bug and nothing else.
#[test]
fn queueing_mutant_passes_the_property_checks() {
    let m = Mutant::new(Fault::HtodOvertakesQueue);
    let config = Config::new(16);
    for check in [Check::Gemm, Check::Unary, Check::Binary, Check::Copy] {
        run_check(&m, check, &config).assert_ok();
    }
}

#[test]
fn free_accepting_an_interior_pointer_is_caught() {
    assert_caught(
        Fault::FreeAcceptsInterior,
        Check::Misuse,
        &["free(interior)", "succeeded"],
    );
}

#[test]
fn cast_to_f16_truncating_is_caught() {
    assert_caught(Fault::CastF16Truncates, Check::Cast, &["cast f32 -> f16["]);
}

#[test]
fn copy_dtod_one_byte_short_is_caught() {
    assert_caught(Fault::DtodOneByteShort, Check::Copy, &["after copy_dtod"]);
}

#[test]
fn gemm_dropping_the_last_term_is_caught() {
    assert_caught(Fault::GemmDropsLastTerm, Check::Gemm, &["C["]);
}

#[test]
fn f16_truncation_helper_rounds_toward_zero() {
    // 1 + 2^-11 is halfway between 1 and the next f16: nearest-even gives 1, truncation too.
    assert_eq!(f16_truncated(1.0 + 2f32.powi(-11)), 0x3c00);
    // Just below the next f16: nearest rounds up, truncation does not.
    assert_eq!(f16_truncated(1.0 + 2f32.powi(-10) * 0.9), 0x3c00);
    assert_eq!(f16_truncated(-(1.0 + 2f32.powi(-10) * 0.9)), 0xbc00);
    // Past the f16 range: the largest finite f16, not infinity.
    assert_eq!(f16_truncated(1e6), 0x7bff);
    assert_eq!(f16_truncated(f32::INFINITY), 0x7c00);
    assert!(half::f16::from_bits(f16_truncated(f32::NAN)).is_nan());
}

/// The wrapper without a fault passes every check, so the failures above are the faults'.
#[test]
fn unmutated_wrapper_passes_every_check() {
    let m = Mutant::new(Fault::None);
    let report = conformance::run_all(&m, &Config::new(64));
    eprintln!("{}", report.summary());
    report.assert_ok();
}

/// Every fault, with the check meant to catch it.
const FAULTS: [(Fault, Check); 24] = [
    (Fault::GemmIgnoresBeta, Check::Gemm),
    (Fault::GemmReadsCWhenBetaZero, Check::Gemm),
    (Fault::GemmTransAAsNoTrans, Check::Gemm),
    (Fault::GemmZeroesPaddingRows, Check::Gemm),
    (Fault::BatchedGemmSkipsLastBatch, Check::BatchedGemm),
    (Fault::UnaryWritesPastEnd, Check::Unary),
    (Fault::ReluNanToZero, Check::Unary),
    (Fault::ReduceMaxEmptyAxisZero, Check::Reduce),
    (Fault::ReduceMeanBiased, Check::Reduce),
    (Fault::LayerNormUnbiased, Check::Rows),
    (
        Fault::AttentionCausalIgnoredWhenRectangular,
        Check::Attention,
    ),
    (Fault::AttentionExInterleavedGroups, Check::AttentionEx),
    (Fault::ConvFlipsFilter, Check::Conv2d),
    (Fault::HtodOvertakesQueue, Check::Ordering),
    (Fault::FreeAcceptsInterior, Check::Misuse),
    (Fault::CastF16Truncates, Check::Cast),
    (Fault::DtodOneByteShort, Check::Copy),
    (Fault::GemmDropsLastTerm, Check::Gemm),
    (Fault::BroadcastSwapsInputs, Check::BinaryBroadcast),
    (Fault::GatherReadsNextRow, Check::Gather),
    (Fault::ConvExDropsBias, Check::Conv2dEx),
    (Fault::GemmQSwapsNibbles, Check::GemmQ),
    (Fault::SeluIgnoresScale, Check::UnaryParam),
    (Fault::ModRoundsQuotient, Check::Binary),
];

/// How robustly each fault is caught: failing cases (of 64) under the default seed for
/// every check, and for the fault's own check the number of 20 other seeds that catch
/// it. Run with `cargo test -p conformance --test mutants -- --ignored --nocapture`.
#[test]
#[ignore = "a survey for humans, not an assertion"]
fn catch_rates() {
    let quick = |seed: u64, cases: u32| {
        let mut c = Config::new(cases);
        c.seed = seed;
        c.max_failures = 0; // no shrinking: only the counts are wanted
        c
    };
    for (fault, own) in FAULTS {
        let m = Mutant::new(fault);
        let row: Vec<String> = Check::ALL
            .iter()
            .map(|&check| {
                let r = run_check(&m, check, &quick(conformance::DEFAULT_SEED, 64));
                format!("{check}={}", r.failed)
            })
            .collect();
        eprintln!(
            "{fault:?}: default seed, failures per check: {}",
            row.join(" ")
        );
        if own.is_property() {
            let first = (0..64u32).find(|&i| {
                let mut c = quick(conformance::DEFAULT_SEED, 64);
                c.cases = i + 1;
                run_check(&m, own, &c).failed > 0
            });
            eprintln!("{fault:?}: default seed, first failing case index {first:?}");
            let counts: Vec<u32> = (0..20)
                .map(|s| run_check(&m, own, &quick(s, 64)).failed)
                .collect();
            let caught = counts.iter().filter(|&&c| c > 0).count();
            eprintln!(
                "{fault:?}: {own} caught under {caught} of 20 seeds; failing cases per seed {counts:?}"
            );
        }
    }
}
