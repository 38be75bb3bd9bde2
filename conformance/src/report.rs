//! What a run found, as data (serializable to JSON) and as text.

use std::fmt::Write as _;

use serde::Serialize;

use crate::Check;

/// One failing case (or check).
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The minimal failing case as JSON, for `--replay` / [`Config::replay`](crate::Config::replay).
    pub case: Option<String>,
    /// The seed that generated the original (unshrunk) case.
    pub case_seed: Option<u64>,
    /// Shrinking steps taken.
    pub shrink_steps: u32,
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// The indented lines under a failure's heading: the minimal case and the case seed,
    /// where known.
    pub fn write_details(&self, s: &mut String) {
        if let Some(case) = &self.case {
            let _ = writeln!(
                s,
                "  minimal case (after {} shrink steps): {case}",
                self.shrink_steps
            );
        }
        if let Some(seed) = self.case_seed {
            let _ = writeln!(s, "  case seed: {seed}");
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The check.
    pub check: Check,
    /// Cases that passed.
    pub passed: u32,
    /// Cases that failed, unexpectedly.
    pub failed: u32,
    /// Cases that failed as an [`Expectation`](crate::Expectation) said they would.
    pub expected_failures: u32,
    /// Largest `|got - want| / tolerance` over all elements of passing cases.
    pub worst_ratio: f64,
    /// Largest `|got - want|` over all elements of passing cases.
    pub worst_abs: f64,
    /// `worst_ratio` per kind of case (e.g. per unary function), where the check has kinds.
    pub worst_by_kind: std::collections::BTreeMap<String, f64>,
    /// Wall time of the check, in milliseconds.
    pub millis: f64,
    /// The first failures, shrunk.
    pub failures: Vec<Failure>,
    /// Remarks (skipped parts, expectations that were not exercised).
    pub notes: Vec<String>,
}

impl CheckReport {
    pub(crate) fn new(check: Check) -> Self {
        Self {
            check,
            passed: 0,
            failed: 0,
            expected_failures: 0,
            worst_ratio: 0.0,
            worst_abs: 0.0,
            worst_by_kind: Default::default(),
            millis: 0.0,
            failures: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// True when nothing failed unexpectedly.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// Panics with a summary unless the check passed.
    #[track_caller]
    pub fn assert_ok(&self) {
        let suite = SuiteReport {
            backend: String::new(),
            checks: vec![self.clone()],
        };
        assert!(self.ok(), "{}", suite.summary());
    }

    pub(crate) fn fail(&mut self, message: String) {
        self.failed += 1;
        self.failures.push(Failure {
            case: None,
            case_seed: None,
            shrink_steps: 0,
            message,
        });
    }
}

/// The outcome of a run on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    /// The backend's name.
    pub backend: String,
    /// One report per check run.
    pub checks: Vec<CheckReport>,
}

impl SuiteReport {
    /// True when every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(CheckReport::ok)
    }

    /// A table of the checks, then every failure in full.
    pub fn summary(&self) -> String {
        let mut s = format!("conformance on {}\n", self.backend);
        let _ = writeln!(
            s,
            "{:<14} {:>7} {:>7} {:>9} {:>11} {:>11} {:>10}",
            "check", "passed", "failed", "expected", "worst/tol", "worst abs", "time ms"
        );
        for c in &self.checks {
            let _ = writeln!(
                s,
                "{:<14} {:>7} {:>7} {:>9} {:>11.3e} {:>11.3e} {:>10.1}",
                c.check.name(),
                c.passed,
                c.failed,
                c.expected_failures,
                c.worst_ratio,
                c.worst_abs,
                c.millis
            );
        }
        for c in &self.checks {
            let mut kinds: Vec<_> = c.worst_by_kind.iter().filter(|(_, r)| **r > 0.0).collect();
            kinds.sort_by(|a, b| b.1.total_cmp(a.1));
            if !kinds.is_empty() {
                let top: Vec<String> = kinds
                    .iter()
                    .take(4)
                    .map(|(k, r)| format!("{k} {r:.3}"))
                    .collect();
                let _ = writeln!(s, "closest to tolerance: {}: {}", c.check, top.join(", "));
            }
        }
        for c in &self.checks {
            for n in &c.notes {
                let _ = writeln!(s, "note: {}: {n}", c.check);
            }
            for f in &c.failures {
                let _ = writeln!(s, "FAILED {}: {}", c.check, f.message);
                f.write_details(&mut s);
            }
        }
        s
    }

    /// Panics with the summary unless every check passed: the one-line assertion of each
    /// backend crate's tests.
    #[track_caller]
    pub fn assert_ok(&self) {
        assert!(self.ok(), "{}", self.summary());
    }
}
