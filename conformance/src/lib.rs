//! The conformance suite: every backend, checked against the CPU oracle.
//!
//! - **Properties** ([`Check::Gemm`] ... [`Check::Cast`]): proptest strategies generate
//!   cases — sizes from 0 and 1 to past any kernel tile, every transpose pair, padded
//!   leading dimensions, interior pointers, in-place calls, alpha/beta edge values, NaN
//!   and infinities, causal and not, every reduce axis, batches with gaps — and each case
//!   runs on the backend and on the oracle ([`backend_cpu::reference`]), compared within
//!   the bounds in [`tolerance`]. Every operand sits inside a larger allocation between
//!   random sentinel bytes that must survive. A failing case is shrunk to a minimal one
//!   and reported as JSON that [`Config::replay`] (and the runner's `--replay`) runs
//!   again; cases in `regressions/` run first, always.
//! - **Misuse** ([`Check::Misuse`]): every bad-input class of the contract must give an
//!   error — never a panic — and leave device memory as it was.
//! - **Ordering** ([`Check::Ordering`]): program order holds whatever the backend
//!   batches.
//! - **Threads** ([`Check::Threads`], native only): threads sharing one backend.
//!
//! Everything is async at the edges (readback through
//! [`ComputeBackend::copy_dtoh_async`]) so the same driver runs in a browser;
//! [`run_all`] and [`run_check`] block on it natively.
//!
//! ```
//! use backend_api::ComputeBackend;
//! let mut cpu = backend_cpu::CpuBackend::new();
//! cpu.init().unwrap();
//! let config = conformance::Config::new(4).only(&[conformance::Check::Unary]);
//! let report = conformance::run_all(&cpu, &config);
//! assert!(report.ok(), "{}", report.summary());
//! ```

pub mod data;
mod driver;
mod harness;
pub mod known;
mod memory;
mod misuse;
#[cfg(not(target_arch = "wasm32"))]
pub mod mutant;
mod ordering;
mod report;
#[cfg(not(target_arch = "wasm32"))]
pub mod state_machine;
pub mod suites;
#[cfg(not(target_arch = "wasm32"))]
pub mod test_tools;
mod testgen;
#[cfg(not(target_arch = "wasm32"))]
mod threads;
pub mod tolerance;

use std::fmt;

use backend_api::ComputeBackend;
use serde::{Deserialize, Serialize};

pub use driver::{Progress, run_all_async, run_check_async};
pub use misuse::check_uninitialized;
pub use report::{CheckReport, Failure, SuiteReport};

__for_each_check!(__define_checks());

impl Check {
    /// The check named `name`.
    pub fn from_name(name: &str) -> Option<Check> {
        Check::ALL
            .iter()
            .copied()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Size limits of generated cases. Software devices (lavapipe, the browser's SwiftShader)
/// run a few GFLOP/s at best, so they get [`Profile::small`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "each field is the largest size of the named dimension"
)]
pub struct Profile {
    pub gemm_max: usize,
    pub conv_batch: usize,
    pub conv_channels: usize,
    pub conv_hw: usize,
    pub conv_filters: usize,
    pub attn_seq: usize,
    pub attn_head_dim: usize,
    pub reduce_side: usize,
    pub reduce_long: usize,
    pub elementwise_max: usize,
    pub copy_max: usize,
}

impl Profile {
    /// For the CPU and real GPUs: every dimension past a 128-wide tile.
    pub fn full() -> Self {
        Self {
            gemm_max: 160,
            conv_batch: 3,
            conv_channels: 6,
            conv_hw: 22,
            conv_filters: 72,
            attn_seq: 150,
            attn_head_dim: 160,
            reduce_side: 24,
            reduce_long: 5000,
            elementwise_max: 70_000,
            copy_max: 70_000,
        }
    }

    /// The one rule for choosing a profile: [`small`](Self::small) on a software device
    /// (lavapipe, SwiftShader, WARP, or a browser adapter that does not say what it is),
    /// else [`full`](Self::full). The tests, the runner and the browser page all use it.
    pub fn for_device(software: bool) -> Self {
        if software {
            Self::small()
        } else {
            Self::full()
        }
    }

    /// For software devices: still past every tile of the GPU kernels, fewer elements.
    pub fn small() -> Self {
        Self {
            gemm_max: 136,
            conv_batch: 3,
            conv_channels: 4,
            conv_hw: 18,
            conv_filters: 68,
            attn_seq: 80,
            attn_head_dim: 136,
            reduce_side: 16,
            reduce_long: 3000,
            elementwise_max: 20_000,
            copy_max: 20_000,
        }
    }
}

/// A difference a backend is known to have, with the reason a user would read.
///
/// Cases of `check` that carry `tag` (all its cases when `tag` is `None`) may fail
/// without failing the suite — but if such cases ran and none failed, the expectation
/// is stale and the suite fails ("expected to fail, but passed").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    /// The check.
    pub check: Check,
    /// The case tag (e.g. `"non-finite"`, `"f16"`), or every case.
    pub tag: Option<String>,
    /// Why, in words a user can check.
    pub reason: String,
}

/// What to run, and how hard.
#[derive(Debug, Clone)]
pub struct Config {
    /// Generated cases per property check.
    pub cases: u32,
    /// Seed of the case generator; the same seed gives the same cases.
    pub seed: u64,
    /// Size limits.
    pub profile: Profile,
    /// The checks to run.
    pub checks: Vec<Check>,
    /// Known differences of the backend under test.
    pub expected: Vec<Expectation>,
    /// Shrinking steps per failure at most.
    pub max_shrink_iters: u32,
    /// Failures reported (and shrunk) per check at most.
    pub max_failures: usize,
    /// Threads of the threads check.
    pub threads: usize,
    /// Run only this case (JSON, as a failure prints it) of the single check in `checks`.
    pub replay: Option<String>,
    /// Run only the case generated from this seed (a failure's `case_seed`).
    pub case_seed: Option<u64>,
}

/// The default seed: fixed, so CI runs the same cases every time.
pub const DEFAULT_SEED: u64 = 0x5eed_c0de;

impl Config {
    /// `cases` cases per property check, every check, the full profile, the default seed.
    pub fn new(cases: u32) -> Self {
        Self {
            cases,
            seed: DEFAULT_SEED,
            profile: Profile::full(),
            checks: Check::ALL.to_vec(),
            expected: Vec::new(),
            max_shrink_iters: 200,
            max_failures: 3,
            threads: 4,
            replay: None,
            case_seed: None,
        }
    }

    /// [`Config::new`] with `CONFORMANCE_CASES` and `CONFORMANCE_SEED` from the
    /// environment where set, else `default_cases` and [`DEFAULT_SEED`].
    pub fn from_env(default_cases: u32) -> Self {
        use backend_api::env;
        // A test knob that does not parse stops the run, naming the variable.
        let cases = env::parse("CONFORMANCE_CASES").unwrap_or_else(|e| panic!("{e}"));
        let mut c = Self::new(cases.unwrap_or(default_cases));
        if let Some(seed) = env::parse("CONFORMANCE_SEED").unwrap_or_else(|e| panic!("{e}")) {
            c.seed = seed;
        }
        c
    }

    /// Only these checks.
    pub fn only(mut self, checks: &[Check]) -> Self {
        self.checks = checks.to_vec();
        self
    }

    /// With this size profile.
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// With a known difference.
    pub fn expect_failure(mut self, check: Check, tag: Option<&str>, reason: &str) -> Self {
        self.expected.push(Expectation {
            check,
            tag: tag.map(str::to_string),
            reason: reason.to_string(),
        });
        self
    }
}

/// Runs `call`; a panic becomes `Err` with the panic's message where unwinding is
/// available (not on wasm32, where a panic aborts).
pub(crate) fn catch_panic<R>(call: impl FnOnce() -> R) -> Result<R, String> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    }
    #[cfg(target_arch = "wasm32")]
    {
        Ok(call())
    }
}

/// Runs every check in `config` on `backend`, blocking until done (native only; in a
/// browser use [`run_all_async`]).
pub fn run_all(backend: &dyn ComputeBackend, config: &Config) -> SuiteReport {
    pollster::block_on(run_all_async(backend, config, &mut |_| {}))
}

/// Runs one check, blocking until done.
pub fn run_check(backend: &dyn ComputeBackend, check: Check, config: &Config) -> CheckReport {
    pollster::block_on(run_check_async(backend, check, config, &mut |_| {}))
}

/// Runs one check on `backend` (called `name` in the report), prints its summary, and
/// panics with it unless the check passed: the body of a backend crate's per-check test.
#[track_caller]
pub fn assert_check(backend: &dyn ComputeBackend, name: &str, check: Check, config: &Config) {
    let report = SuiteReport {
        backend: name.to_string(),
        checks: vec![run_check(backend, check, config)],
    };
    eprintln!("{}", report.summary());
    report.assert_ok();
}

/// The environment variable (set to 1 by CI) that turns a missing GPU adapter in a
/// backend's tests from a loud skip into a failure.
pub const REQUIRE_ADAPTER_ENV: &str = "BACKEND_REQUIRE_ADAPTER";

/// What a GPU backend's test does when its backend did not open (`e` says why): panics
/// when [`REQUIRE_ADAPTER_ENV`] is on (`1`), else says loudly that the test is skipped.
#[track_caller]
pub fn skip_without_adapter(e: &dyn fmt::Display) {
    if backend_api::env::flag(REQUIRE_ADAPTER_ENV) {
        panic!("{REQUIRE_ADAPTER_ENV}=1 but no usable adapter: {e}");
    }
    eprintln!(
        "SKIPPED: no WebGPU adapter ({e}); set {REQUIRE_ADAPTER_ENV}=1 to make this a failure"
    );
}
