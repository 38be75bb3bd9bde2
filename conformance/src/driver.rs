//! The async driver: generates cases from seeds, runs them, shrinks failures with
//! proptest's value trees, and applies expectations.

use backend_api::ComputeBackend;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use web_time::Instant;

use crate::data::Rng;
use crate::report::{CheckReport, Failure, SuiteReport};
use crate::suites::Suite;
use crate::suites::attention::AttentionSuite;
use crate::suites::broadcast::{BroadcastSuite, GatherSuite};
use crate::suites::cast::CastSuite;
use crate::suites::conv::{ConvExSuite, ConvSuite};
use crate::suites::copy::CopySuite;
use crate::suites::elementwise::{BinarySuite, UnaryParamSuite, UnarySuite};
use crate::suites::gemm::GemmSuite;
use crate::suites::gemm_q::GemmQSuite;
use crate::suites::half::HalfSuite;
use crate::suites::reduce::ReduceSuite;
use crate::suites::rows::RowsSuite;
use crate::tolerance::Closeness;
use crate::{Check, Config};

/// Progress of a run, for progress bars.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The check running.
    pub check: Check,
    /// Cases done in it.
    pub done: u32,
    /// Cases it will run.
    pub total: u32,
}

/// Runs every check in `config`, calling `progress` after each case.
pub async fn run_all_async(
    backend: &dyn ComputeBackend,
    config: &Config,
    progress: &mut dyn FnMut(Progress),
) -> SuiteReport {
    let mut checks = Vec::new();
    for &check in &config.checks {
        checks.push(run_check_async(backend, check, config, progress).await);
    }
    SuiteReport {
        backend: backend.name().to_string(),
        checks,
    }
}

/// Runs one check.
pub async fn run_check_async(
    backend: &dyn ComputeBackend,
    check: Check,
    config: &Config,
    progress: &mut dyn FnMut(Progress),
) -> CheckReport {
    let start = Instant::now();
    let mut report = match check {
        Check::Gemm | Check::BatchedGemm | Check::GemmEx => {
            run_suite::<GemmSuite>(backend, check, config, progress).await
        }
        Check::Conv2d => run_suite::<ConvSuite>(backend, check, config, progress).await,
        Check::Conv2dEx => run_suite::<ConvExSuite>(backend, check, config, progress).await,
        Check::GemmQ => run_suite::<GemmQSuite>(backend, check, config, progress).await,
        Check::UnaryParam => run_suite::<UnaryParamSuite>(backend, check, config, progress).await,
        Check::HalfStorage => run_suite::<HalfSuite>(backend, check, config, progress).await,
        Check::Attention | Check::AttentionEx => {
            run_suite::<AttentionSuite>(backend, check, config, progress).await
        }
        Check::Reduce => run_suite::<ReduceSuite>(backend, check, config, progress).await,
        Check::Rows => run_suite::<RowsSuite>(backend, check, config, progress).await,
        Check::Unary => run_suite::<UnarySuite>(backend, check, config, progress).await,
        Check::Binary => run_suite::<BinarySuite>(backend, check, config, progress).await,
        Check::Copy => run_suite::<CopySuite>(backend, check, config, progress).await,
        Check::Cast => run_suite::<CastSuite>(backend, check, config, progress).await,
        Check::BinaryBroadcast => {
            run_suite::<BroadcastSuite>(backend, check, config, progress).await
        }
        Check::Gather => run_suite::<GatherSuite>(backend, check, config, progress).await,
        Check::Misuse => crate::misuse::run(backend).await,
        Check::Memory => crate::memory::run(backend).await,
        Check::Ordering => crate::ordering::run(backend).await,
        #[cfg(not(target_arch = "wasm32"))]
        Check::Threads => crate::threads::run(backend, config.threads),
        #[cfg(target_arch = "wasm32")]
        Check::Threads => {
            let mut r = CheckReport::new(check);
            r.notes
                .push("skipped: a browser page has one thread".into());
            r
        }
    };
    report.millis = start.elapsed().as_secs_f64() * 1e3;
    progress(Progress {
        check,
        done: 1,
        total: 1,
    });
    report
}

/// The seed of case `index` of `check`: independent per case, so one case can be
/// regenerated alone.
pub(crate) fn case_seed(seed: u64, check: Check, index: u32) -> u64 {
    let mut r =
        Rng::new(seed ^ ((check as u64) << 40) ^ u64::from(index).wrapping_mul(0x9e37_79b9));
    r.next_u64()
}

fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    let mut r = Rng::new(seed);
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&r.next_u64().to_le_bytes());
    }
    TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

/// A committed regression: a case and why it is there.
#[derive(serde::Deserialize)]
struct Regression<C> {
    note: String,
    case: C,
    /// A case too large for Miri (an interpreter, thousands of times slower): skipped
    /// there, run everywhere else.
    #[serde(default)]
    large: bool,
}

/// Tracks how the cases an expectation covers turned out.
struct ExpectationUse {
    matched: u32,
    failed: u32,
}

async fn run_suite<S: Suite>(
    b: &dyn ComputeBackend,
    check: Check,
    cfg: &Config,
    progress: &mut dyn FnMut(Progress),
) -> CheckReport {
    let mut report = CheckReport::new(check);
    let expectations: Vec<_> = cfg.expected.iter().filter(|e| e.check == check).collect();
    let mut uses: Vec<ExpectationUse> = expectations
        .iter()
        .map(|_| ExpectationUse {
            matched: 0,
            failed: 0,
        })
        .collect();

    // Which expectations cover a case; records the outcome when `failed` is given.
    let mut covered = |case: &S::Case, failed: Option<bool>| -> bool {
        let tags = S::tags(case);
        let mut any = false;
        for (e, u) in expectations.iter().zip(uses.iter_mut()) {
            if e.tag.as_deref().is_none_or(|t| tags.contains(&t)) {
                any = true;
                if let Some(f) = failed {
                    u.matched += 1;
                    u.failed += u32::from(f);
                }
            }
        }
        any
    };

    let record = |report: &mut CheckReport, case: &S::Case, result: &Result<Closeness, String>| {
        if let Ok(c) = result {
            report.passed += 1;
            report.worst_ratio = report.worst_ratio.max(c.worst_ratio);
            report.worst_abs = report.worst_abs.max(c.worst_abs);
            let kind = S::kind(case);
            if !kind.is_empty() {
                let worst = report.worst_by_kind.entry(kind).or_insert(0.0);
                *worst = worst.max(c.worst_ratio);
            }
        }
    };

    // A replayed case runs alone.
    if let Some(json) = &cfg.replay {
        match serde_json::from_str::<S::Case>(json) {
            Ok(case) => {
                let result = S::run(b, check, &case).await;
                record(&mut report, &case, &result);
                if let Err(message) = result {
                    report.failed += 1;
                    report.failures.push(Failure {
                        case: Some(json.clone()),
                        case_seed: None,
                        shrink_steps: 0,
                        message,
                    });
                }
            }
            Err(e) => report.fail(format!("--replay: not a {check} case: {e}")),
        }
        return report;
    }

    let strategy = S::strategy(check, &cfg.profile);
    let regressions: Vec<Regression<S::Case>> = if cfg.case_seed.is_some() {
        Vec::new()
    } else {
        let all: Vec<Regression<S::Case>> = serde_json::from_str(check.regressions())
            .unwrap_or_else(|e| panic!("regressions/{check}.json: {e}"));
        all.into_iter()
            .filter(|r| !(cfg!(miri) && r.large))
            .collect()
    };
    let total = regressions.len() as u32
        + if cfg.case_seed.is_some() {
            1
        } else {
            cfg.cases
        };
    let mut done = 0;
    for r in &regressions {
        let result = S::run(b, check, &r.case).await;
        record(&mut report, &r.case, &result);
        let expected = covered(&r.case, Some(result.is_err()));
        if let Err(message) = result {
            if expected {
                report.expected_failures += 1;
            } else {
                report.failed += 1;
                report.failures.push(Failure {
                    case: serde_json::to_string(&r.case).ok(),
                    case_seed: None,
                    shrink_steps: 0,
                    message: format!("regression case ({}): {message}", r.note),
                });
            }
        }
        done += 1;
        progress(Progress { check, done, total });
    }

    let seeds: Vec<u64> = match cfg.case_seed {
        Some(s) => vec![s],
        None => (0..cfg.cases)
            .map(|i| case_seed(cfg.seed, check, i))
            .collect(),
    };
    for seed in seeds {
        let mut runner = runner(seed);
        let mut tree = match strategy.new_tree(&mut runner) {
            Ok(t) => t,
            Err(e) => {
                report.fail(format!("case generation failed: {e}"));
                break;
            }
        };
        let case = tree.current();
        let result = S::run(b, check, &case).await;
        record(&mut report, &case, &result);
        let expected = covered(&case, Some(result.is_err()));
        if let Err(message) = result {
            if expected {
                report.expected_failures += 1;
            } else {
                report.failed += 1;
                if report.failures.len() < cfg.max_failures {
                    let (case, message, steps) =
                        shrink::<S>(b, check, &mut tree, case, message, cfg.max_shrink_iters).await;
                    report.failures.push(Failure {
                        case: serde_json::to_string(&case).ok(),
                        case_seed: Some(seed),
                        shrink_steps: steps,
                        message,
                    });
                }
            }
        }
        done += 1;
        progress(Progress { check, done, total });
    }

    for (e, u) in expectations.iter().zip(&uses) {
        let what = format!(
            "expected failure ({}: {})",
            e.tag.as_deref().unwrap_or("every case"),
            e.reason
        );
        if u.matched == 0 {
            report
                .notes
                .push(format!("{what} was not exercised by this run's cases"));
        } else if u.failed == 0 {
            report.fail(format!(
                "{what}: expected to fail, but all {} covered cases passed; remove the expectation",
                u.matched
            ));
        } else {
            report.notes.push(format!(
                "{what}: {} of {} covered cases failed as expected",
                u.failed, u.matched
            ));
        }
    }
    report
}

/// proptest's shrinking loop, run asynchronously: simplify while the case fails,
/// complicate when a simplification passes, until neither moves.
async fn shrink<S: Suite>(
    b: &dyn ComputeBackend,
    check: Check,
    tree: &mut impl ValueTree<Value = S::Case>,
    mut case: S::Case,
    mut message: String,
    max_iters: u32,
) -> (S::Case, String, u32) {
    let mut steps = 0;
    if !tree.simplify() {
        return (case, message, steps);
    }
    while steps < max_iters {
        steps += 1;
        let candidate = tree.current();
        match S::run(b, check, &candidate).await {
            Err(m) => {
                case = candidate;
                message = m;
                if !tree.simplify() {
                    break;
                }
            }
            Ok(_) => {
                if !tree.complicate() {
                    break;
                }
            }
        }
    }
    (case, message, steps)
}
