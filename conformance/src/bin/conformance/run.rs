//! Arguments, the run over every target, and the exit status.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use backends::{BackendKind, ComputeBackend};
use clap::Parser;
use conformance::{Check, CheckReport, Config, Failure, Profile, SuiteReport};
use indicatif::{ProgressBar, ProgressStyle};

use crate::output;
use crate::targets::{self, OpenError, Target};

/// Runs the conformance suite on every backend compiled in and every wgpu adapter found,
/// and prints a table of what passed.
///
/// With no arguments: the CPU backend and each WebGPU adapter, each its own row (GL
/// adapters only when no Vulkan, Metal or DX12 adapter exists, or when --adapter selects
/// them). Exit status 0 when everything passed, 1 on any failure, 2 for bad arguments.
#[derive(Debug, Parser)]
#[command(name = "conformance", version, about, long_about = None)]
#[command(after_help = "Examples:\n  \
    conformance --list\n  \
    conformance --backend webgpu --adapter llvmpipe --op gemm,attention --cases 8\n  \
    conformance --json report.json --markdown report.md\n  \
    conformance --backend cpu --op gemm --replay '<a failure's case JSON>'")]
pub(crate) struct Args {
    /// Backends to run: cpu, fast-cpu, webgpu (repeatable or comma-separated). Default: every backend
    /// compiled in; only webgpu when --adapter is given.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub(crate) backend: Vec<String>,

    /// WebGPU adapters whose "name (API)" contains this, case-insensitive (repeatable).
    /// Default: every adapter (GL ones only when there is no other); the BACKEND_ADAPTER
    /// variable when set.
    #[arg(long, value_name = "SUBSTRING")]
    pub(crate) adapter: Vec<String>,

    /// Checks to run (repeatable or comma-separated); default: all. One of: gemm,
    /// batched_gemm, gemm_ex, conv2d, conv2d_ex, attention, attention_ex, reduce, rows,
    /// unary, unary_param, binary, binary_broadcast, gather, gemm_q, half_storage, copy,
    /// cast, misuse, memory, ordering, threads.
    #[arg(long = "op", value_delimiter = ',', value_name = "CHECK")]
    pub(crate) ops: Vec<String>,

    /// Generated cases per property check. Default: 128 (CPU and hardware adapters), 48
    /// (software adapters such as lavapipe, which run a few GFLOP/s at best).
    #[arg(long, value_name = "N")]
    pub(crate) cases: Option<u32>,

    /// Seed of the case generator (decimal or 0x-hex); the same seed gives the same cases.
    #[arg(long, value_parser = parse_u64, value_name = "N")]
    pub(crate) seed: Option<u64>,

    /// Size limits of generated cases: full or small. Default: small on software adapters,
    /// full elsewhere.
    #[arg(long, value_parser = ["full", "small"], value_name = "PROFILE")]
    pub(crate) profile: Option<String>,

    /// Write the results as JSON.
    #[arg(long, value_name = "PATH")]
    pub(crate) json: Option<PathBuf>,

    /// Write a Markdown report (machine, adapters, limits, results, failures with minimal
    /// cases and repro commands) to attach to a bug report.
    #[arg(long, value_name = "PATH")]
    pub(crate) markdown: Option<PathBuf>,

    /// List the backends compiled in and every adapter with its limits and features; run
    /// nothing.
    #[arg(long)]
    pub(crate) list: bool,

    /// Run only this case (the JSON of a failure's minimal case) of the single --op.
    #[arg(long, value_name = "JSON", conflicts_with = "case_seed")]
    pub(crate) replay: Option<String>,

    /// Run only the case generated from this seed (a failure's case seed) of the single --op.
    #[arg(long, value_parser = parse_u64, value_name = "N")]
    pub(crate) case_seed: Option<u64>,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => s.replace('_', "").parse(),
    };
    parsed.map_err(|e| format!("{s:?} is not a 64-bit unsigned number: {e}"))
}

/// The largest size a replayed case may name. Generated cases stay far below it (the
/// full profile's largest is 70 000 elements); a hand-edited case above it would make the
/// suite allocate its host-side data before any backend could refuse it.
const REPLAY_SIZE_LIMIT: u64 = 1 << 24;

/// Refuses replayed cases whose sizes would exhaust host memory. Seeds are exempt.
fn check_replay_sizes(v: &serde_json::Value, key: &str) -> Result<(), String> {
    match v {
        serde_json::Value::Number(n) if !key.contains("seed") => {
            // Sizes are integers; floats (alpha, beta) are not sizes.
            if n.as_u64().is_some_and(|u| u > REPLAY_SIZE_LIMIT) {
                return Err(format!(
                    "--replay: {key} = {n} is larger than any generated case ({REPLAY_SIZE_LIMIT} \
                     at most); refusing to allocate for it"
                ));
            }
            Ok(())
        }
        serde_json::Value::Array(items) => {
            items.iter().try_for_each(|x| check_replay_sizes(x, key))
        }
        serde_json::Value::Object(map) => {
            map.iter().try_for_each(|(k, x)| check_replay_sizes(x, k))
        }
        _ => Ok(()),
    }
}

/// Generated cases per property check on the CPU and on hardware adapters.
pub(crate) const DEFAULT_CASES: u32 = 128;
/// ... and on software adapters (lavapipe, SwiftShader), with the small profile.
pub(crate) const SOFTWARE_CASES: u32 = 48;

/// What the user asked for, checked.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) kinds: Option<Vec<BackendKind>>,
    pub(crate) selectors: Vec<String>,
    pub(crate) checks: Vec<Check>,
    pub(crate) seed: u64,
    pub(crate) cases: Option<u32>,
    pub(crate) profile: Option<String>,
    pub(crate) replay: Option<String>,
    pub(crate) case_seed: Option<u64>,
    /// The WebGPU tuning variables (a kernel forced for comparison), read once here so
    /// that a bad value is a usage error before anything runs.
    #[cfg(feature = "webgpu")]
    pub(crate) tuning: backends::backend_webgpu::Tuning,
}

fn plan(args: &Args) -> Result<Plan, String> {
    let mut kinds = Vec::new();
    for name in args
        .backend
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        let kind: BackendKind = name
            .parse()
            .map_err(|_| format!("--backend {name:?}: expected cpu or webgpu"))?;
        if kind == BackendKind::Wasm {
            return Err(
                "--backend wasm: the browser backend runs in a browser; its suite runs \
                        under headless Chromium (scripts/test-web). Natively use --backend webgpu"
                    .to_string(),
            );
        }
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let mut checks = Vec::new();
    for name in args.ops.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let check = Check::from_name(name).ok_or_else(|| {
            format!(
                "--op {name:?}: unknown check; expected one of {}",
                Check::ALL
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if !checks.contains(&check) {
            checks.push(check);
        }
    }
    if checks.is_empty() {
        checks = Check::ALL.to_vec();
    }
    if args.replay.is_some() || args.case_seed.is_some() {
        let what = if args.replay.is_some() {
            "--replay"
        } else {
            "--case-seed"
        };
        let [check] = checks[..] else {
            return Err(format!(
                "{what} runs one case of one check: give exactly one --op (the failure's check)"
            ));
        };
        if !check.is_property() {
            return Err(format!(
                "{what}: {check} has no generated cases; run it with --op {check} alone"
            ));
        }
    }
    if let Some(json) = &args.replay {
        let value = serde_json::from_str::<serde_json::Value>(json)
            .map_err(|e| format!("--replay: not JSON ({e}); pass the case exactly as printed"))?;
        check_replay_sizes(&value, "")?;
    }
    let mut selectors: Vec<String> = args
        .adapter
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if selectors.is_empty()
        && let Some(env) = backend_api::env::var(backends::ADAPTER_ENV)
    {
        if cfg!(feature = "webgpu") {
            eprintln!(
                "note: {}={env} selects the adapters (as --adapter would)",
                backends::ADAPTER_ENV
            );
            selectors.push(env.trim().to_string());
        } else {
            // The environment names a GPU for whichever runner reads it; this one has
            // none to select (`--adapter`, an explicit request, is still an error).
            eprintln!(
                "note: {}={env} is ignored: this is the CPU-only runner",
                backends::ADAPTER_ENV
            );
        }
    }
    #[cfg(feature = "webgpu")]
    let tuning = backends::backend_webgpu::Tuning::default()
        .with_env()
        .map_err(|e| e.to_string())?;
    Ok(Plan {
        kinds: (!kinds.is_empty()).then_some(kinds),
        selectors,
        checks,
        seed: args.seed.unwrap_or(conformance::DEFAULT_SEED),
        cases: args.cases,
        profile: args.profile.clone(),
        replay: args.replay.clone(),
        case_seed: args.case_seed,
        #[cfg(feature = "webgpu")]
        tuning,
    })
}

/// How one target was run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Passed,
    Failed,
    Skipped,
    Error,
}

impl Status {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
            Status::Error => "ERROR",
        }
    }
}

/// One target's outcome.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) target: Target,
    pub(crate) status: Status,
    /// Why it was skipped, or the error that stopped it.
    pub(crate) reason: Option<String>,
    pub(crate) backend_name: Option<String>,
    pub(crate) profile: Option<&'static str>,
    pub(crate) cases: Option<u32>,
    pub(crate) report: Option<SuiteReport>,
    pub(crate) seconds: f64,
}

impl Outcome {
    pub(crate) fn is_failure(&self) -> bool {
        matches!(self.status, Status::Failed | Status::Error)
    }
}

/// The command that reruns one failure (or, without a case, its whole check) on `target`.
pub(crate) fn repro(
    target: &Target,
    plan: &Plan,
    o: &Outcome,
    check: Check,
    f: &Failure,
) -> String {
    let mut args = target.selector_args();
    args.extend(["--op".to_string(), check.to_string()]);
    if let Some(case) = f.case.as_ref().or(plan.replay.as_ref()) {
        args.extend(["--replay".to_string(), case.clone()]);
    } else if let Some(seed) = f.case_seed {
        args.extend(["--case-seed".to_string(), seed.to_string()]);
        if let Some(p) = o.profile {
            args.extend(["--profile".to_string(), p.to_string()]);
        }
    } else {
        args.extend(["--seed".to_string(), plan.seed.to_string()]);
        if let Some(c) = o.cases {
            args.extend(["--cases".to_string(), c.to_string()]);
        }
        if let Some(p) = o.profile {
            args.extend(["--profile".to_string(), p.to_string()]);
        }
    }
    let mut cmd = String::from("cargo run --release -p conformance --");
    for a in args {
        cmd.push(' ');
        cmd.push_str(&shell_quote(&a));
    }
    cmd
}

/// Quotes for POSIX shells when needed.
pub(crate) fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./,:=@%+".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn run_target(target: &Target, plan: &Plan) -> Outcome {
    let mut outcome = Outcome {
        target: target.clone(),
        status: Status::Skipped,
        reason: None,
        backend_name: None,
        profile: None,
        cases: None,
        report: None,
        seconds: 0.0,
    };
    if let Some(why) = &target.skip {
        outcome.reason = Some(why.clone());
        return outcome;
    }
    if let Some(e) = &target.error {
        outcome.status = Status::Error;
        outcome.reason = Some(e.clone());
        return outcome;
    }
    let start = Instant::now();
    let backend = match catch_unwind(|| target.open(plan)) {
        Ok(Ok(b)) => b,
        Ok(Err(OpenError::Failed(e))) => {
            outcome.status = Status::Error;
            outcome.reason = Some(e);
            return outcome;
        }
        Ok(Err(OpenError::Overridden(e))) => {
            outcome.reason = Some(e);
            return outcome;
        }
        Err(panic) => {
            outcome.status = Status::Error;
            outcome.reason = Some(format!(
                "opening the backend panicked: {}",
                panic_text(&*panic)
            ));
            return outcome;
        }
    };
    let software = target.is_software();
    let profile = match plan.profile.as_deref() {
        Some("small") => "small",
        Some(_) => "full",
        None if software => "small",
        None => "full",
    };
    let cases = plan.cases.unwrap_or(if software {
        SOFTWARE_CASES
    } else {
        DEFAULT_CASES
    });
    let mut config = Config::new(cases)
        .only(&plan.checks)
        .with_profile(Profile::for_device(profile == "small"));
    config.expected = match &target.adapter {
        Some(a) => conformance::known::expectations_for(backend.name(), &a.label(), &a.driver),
        None => conformance::known::expectations_for(backend.name(), "", ""),
    };
    config.seed = plan.seed;
    config.replay = plan.replay.clone();
    config.case_seed = plan.case_seed;
    outcome.profile = Some(profile);
    outcome.cases = Some(cases);
    outcome.backend_name = Some(backend.name().to_string());

    let report = run_checks(&*backend, target, &config);
    outcome.seconds = start.elapsed().as_secs_f64();
    outcome.status = if report.ok() {
        Status::Passed
    } else {
        Status::Failed
    };
    outcome.report = Some(report);
    outcome
}

/// Each check under a progress bar; a panicking check is a failure, not the end of the run.
fn run_checks(backend: &dyn ComputeBackend, target: &Target, config: &Config) -> SuiteReport {
    const STEPS: u64 = 1000;
    let n = config.checks.len() as u64;
    let bar = ProgressBar::new(n * STEPS);
    bar.set_style(
        ProgressStyle::with_template("{prefix:.bold} [{bar:30.cyan/blue}] {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(target.label());
    let mut checks = Vec::new();
    for (i, &check) in config.checks.iter().enumerate() {
        let base = i as u64 * STEPS;
        bar.set_position(base);
        bar.set_message(check.to_string());
        let start = Instant::now();
        let mut on_progress = |p: conformance::Progress| {
            let frac = if p.total == 0 {
                STEPS
            } else {
                u64::from(p.done.min(p.total)) * STEPS / u64::from(p.total)
            };
            bar.set_position(base + frac);
            bar.set_message(format!("{} {}/{}", p.check, p.done, p.total));
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            pollster::block_on(conformance::run_check_async(
                backend,
                check,
                config,
                &mut on_progress,
            ))
        }));
        let report = result.unwrap_or_else(|panic| CheckReport {
            check,
            passed: 0,
            failed: 1,
            expected_failures: 0,
            worst_ratio: 0.0,
            worst_abs: 0.0,
            worst_by_kind: Default::default(),
            millis: start.elapsed().as_secs_f64() * 1e3,
            failures: vec![Failure {
                case: None,
                case_seed: None,
                shrink_steps: 0,
                message: format!("the check panicked: {}", panic_text(&*panic)),
            }],
            notes: Vec::new(),
        });
        checks.push(report);
    }
    bar.finish_and_clear();
    SuiteReport {
        backend: backend.name().to_string(),
        checks,
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

pub(crate) fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.list {
        print!("{}", output::listing(&targets::adapters()));
        return ExitCode::SUCCESS;
    }
    let discovery = targets::discover(plan.kinds.as_deref(), &plan.selectors);
    let start = Instant::now();
    let mut outcomes = Vec::new();
    for target in &discovery.targets {
        let outcome = run_target(target, &plan);
        eprintln!(
            "{:<8} {} ({:.1} s){}",
            outcome.status.name(),
            target.label(),
            outcome.seconds,
            outcome
                .reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
        outcomes.push(outcome);
    }
    let total = start.elapsed().as_secs_f64();
    let run = output::Run {
        plan: &plan,
        outcomes: &outcomes,
        discovery: &discovery,
        seconds: total,
        command: std::env::args().collect(),
    };
    print!("{}", output::text(&run));

    let mut status = if outcomes.iter().any(Outcome::is_failure) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    if let Some(path) = &args.json {
        if let Err(e) = std::fs::write(path, output::json(&run)) {
            eprintln!("error: writing --json {}: {e}", path.display());
            status = ExitCode::FAILURE;
        } else {
            eprintln!("wrote {}", path.display());
        }
    }
    if let Some(path) = &args.markdown {
        if let Err(e) = std::fs::write(path, output::markdown(&run)) {
            eprintln!("error: writing --markdown {}: {e}", path.display());
            status = ExitCode::FAILURE;
        } else {
            eprintln!("wrote {}", path.display());
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_arguments_survive_a_posix_shell() {
        for s in [
            r#"{"op":"Sub","note":"it's"}"#,
            "plain",
            "",
            "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)",
            "$HOME `x` \\ \"",
        ] {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {}", shell_quote(s))])
                .output()
                .expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }

    #[test]
    fn numbers_parse_in_decimal_and_hex() {
        assert_eq!(parse_u64("1592639710"), Ok(1_592_639_710));
        assert_eq!(parse_u64("0x5eed_c0de"), Ok(0x5eed_c0de));
        assert!(parse_u64("-1").is_err());
        assert!(parse_u64("0x").is_err());
    }

    #[test]
    fn replayed_sizes_are_bounded_but_seeds_are_not() {
        let ok = serde_json::json!({"n": 70000, "seed": u64::MAX, "shape": [3, 4], "alpha": 1e30});
        assert_eq!(check_replay_sizes(&ok, ""), Ok(()));
        let big = serde_json::json!({"shape": [3, 1u64 << 40]});
        assert!(check_replay_sizes(&big, "").unwrap_err().contains("shape"));
    }
}
