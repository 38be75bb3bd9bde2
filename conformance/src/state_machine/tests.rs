//! Tests of the state machine itself: the alias, reset and batched-read calls run and are
//! judged, deterministically; a backend without aliases is no failure; and backends
//! wrong about aliases or `copy_dtoh_many` in one way each are caught, with a message
//! that names what is wrong.

use backend_api::ComputeBackend;
use backend_cpu::CpuBackend;

use crate::mutant::{Fault, Mutant};

use super::{Options, run_bytes, run_seed};
use crate::data::Rng;

fn cpu() -> CpuBackend {
    let mut b = CpuBackend::with_memory_limit(256 << 20);
    b.init().expect("CPU init cannot fail");
    b
}

fn exact(steps: u64) -> Options {
    Options {
        exact: true,
        ..Options::steps(steps)
    }
}

/// The CPU backend (256 MiB) with one [`Fault`].
fn wrong(fault: Fault) -> Mutant {
    Mutant::with_backend(fault, cpu())
}

#[test]
fn aliases_resets_and_batched_reads_run_and_repeat() {
    let opts = exact(3000);
    let a = run_seed(&cpu(), 5, &opts).unwrap_or_else(|f| panic!("{f}"));
    let again = run_seed(&cpu(), 5, &opts).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(a, again, "the same seed must give the same run");
    for op in ["alias", "retire", "copy_dtoh_many", "free"] {
        let (valid, invalid) = a.per_op.get(op).copied().unwrap_or_default();
        assert!(
            valid > 0 && invalid > 0,
            "{op}: {valid} valid, {invalid} invalid: {a}"
        );
    }
    assert!(
        a.aliases > 0
            && a.alias_frees > 0
            && a.resets > 0
            && a.retired == a.aliases
            && a.stale_refused > 0
            && a.via_alias > 0
            && a.unsupported.is_empty(),
        "{a}"
    );
    // The new calls are a modest share of the mix.
    let new: u64 = ["alias", "retire", "copy_dtoh_many"]
        .iter()
        .map(|op| a.per_op[op].0 + a.per_op[op].1)
        .sum();
    assert!(
        (a.steps / 12..a.steps / 6).contains(&new),
        "{new} of {}",
        a.steps
    );
}

#[test]
fn a_backend_without_aliases_is_no_failure() {
    let s = run_seed(&wrong(Fault::NoAliases), 5, &exact(2000)).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(s.aliases, 0);
    assert!(s.unsupported.contains("alias"), "{s}");
    assert!(
        !s.per_op.contains_key("alias") && s.per_op["copy_dtoh_many"].0 > 0,
        "{s:?}"
    );
}

/// The first failure of `fault` in 20 seeds.
fn caught(fault: Fault) -> String {
    for seed in 0..20 {
        if let Err(f) = run_seed(&wrong(fault), seed, &exact(2000)) {
            return f.to_string();
        }
    }
    panic!("{fault:?} was not caught in 20 seeds");
}

#[test]
fn backends_wrong_about_aliases_are_caught() {
    for (fault, words) in [
        (Fault::FreeOfAliasKeepsIt, "retired alias"),
        (Fault::ReadManyNotAllOrNothing, "all or nothing"),
        (Fault::MemoryInfoCountsAliases, "memory_info says"),
        (Fault::StaleNotSaid, "does not say \"stale\""),
    ] {
        let msg = caught(fault);
        assert!(msg.contains(words), "{fault:?}: {msg}");
        eprintln!(
            "caught {fault:?}: {}",
            msg.lines().next().unwrap_or_default()
        );
    }
}

#[test]
fn fuzzer_bytes_decode_to_runs_that_pass() {
    let mut rng = Rng::new(11);
    for len in [0, 1, 7, 100, 1000, 20_000] {
        for _ in 0..4 {
            let bytes = rng.bytes(len);
            for opts in [exact(10_000), Options::steps(10_000)] {
                run_bytes(&cpu(), &bytes, &opts).unwrap_or_else(|f| panic!("{f}"));
            }
        }
    }
}

#[test]
fn row_ops_run_valid_and_invalid_and_a_wrong_one_is_caught() {
    let a = run_seed(&cpu(), 7, &exact(3000)).unwrap_or_else(|f| panic!("{f}"));
    let (valid, invalid) = ["softmax", "log_softmax", "layer_norm", "rms_norm"]
        .iter()
        .filter_map(|op| a.per_op.get(*op))
        .fold((0, 0), |(v, i), &(dv, di)| (v + dv, i + di));
    assert!(
        valid > 0 && invalid > 0,
        "{valid} valid, {invalid} invalid: {a}"
    );
    // The first seed that catches the fault passes without it: the fault is what failed.
    let seed = (0..20)
        .find(|&seed| run_seed(&wrong(Fault::LayerNormUnbiased), seed, &exact(2000)).is_err())
        .expect("LayerNormUnbiased was not caught in 20 seeds");
    run_seed(&wrong(Fault::None), seed, &exact(2000)).unwrap_or_else(|f| panic!("{f}"));
}

#[test]
fn broadcast_and_gather_run_valid_and_invalid_and_wrong_ones_are_caught() {
    let a = run_seed(&cpu(), 7, &exact(3000)).unwrap_or_else(|f| panic!("{f}"));
    for op in ["binary_broadcast", "gather"] {
        let (valid, invalid) = a.per_op.get(op).copied().unwrap_or_default();
        assert!(
            valid > 0 && invalid > 0,
            "{op}: {valid} valid, {invalid} invalid: {a}"
        );
    }
    for fault in [Fault::BroadcastSwapsInputs, Fault::GatherReadsNextRow] {
        let seed = (0..20)
            .find(|&seed| run_seed(&wrong(fault), seed, &exact(2000)).is_err())
            .unwrap_or_else(|| panic!("{fault:?} was not caught in 20 seeds"));
        run_seed(&wrong(Fault::None), seed, &exact(2000)).unwrap_or_else(|f| panic!("{f}"));
    }
}

#[test]
fn conv2d_ex_runs_valid_and_invalid() {
    let a = run_seed(&cpu(), 7, &exact(3000)).unwrap_or_else(|f| panic!("{f}"));
    let (valid, invalid) = a
        .per_op
        .get("conv2d_forward_ex")
        .copied()
        .unwrap_or_default();
    assert!(
        valid > 0 && invalid > 0,
        "conv2d_forward_ex: {valid} valid, {invalid} invalid: {a}"
    );
}

#[test]
fn gemm_q_runs_valid_and_invalid() {
    let a = run_seed(&cpu(), 7, &exact(4000)).unwrap_or_else(|f| panic!("{f}"));
    let (valid, invalid) = a.per_op.get("gemm_q").copied().unwrap_or_default();
    assert!(
        valid > 0 && invalid > 0,
        "gemm_q: {valid} valid, {invalid} invalid: {a}"
    );
}

#[test]
fn half_storage_model_ops_run_valid_and_invalid() {
    let a = run_seed(&cpu(), 7, &exact(6000)).unwrap_or_else(|f| panic!("{f}"));
    for op in ["binary_broadcast_ex", "gather_ex", "unary_param_ex"] {
        let (valid, invalid) = a.per_op.get(op).copied().unwrap_or_default();
        assert!(
            valid > 0 && invalid > 0,
            "{op}: {valid} valid, {invalid} invalid: {a}"
        );
    }
}

#[test]
fn batched_gemm_ex_runs_valid_and_invalid() {
    let a = run_seed(&cpu(), 7, &exact(6000)).unwrap_or_else(|f| panic!("{f}"));
    let (valid, invalid) = a.per_op.get("batched_gemm_ex").copied().unwrap_or_default();
    assert!(
        valid > 0 && invalid > 0,
        "batched_gemm_ex: {valid} valid, {invalid} invalid: {a}"
    );
}
