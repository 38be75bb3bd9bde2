//! The conformance configuration `WasmBackend` is held to, shared by the native tests,
//! the browser tests and the page (`backend-js/src/conformance_run.rs` includes this file),
//! so all of them run the same cases with the same expectations.

#![allow(
    dead_code,
    reason = "each test binary and the page use a different part of this module"
)]

use backend_wasm::WasmBackend;
use conformance::{Check, Config, Expectation, Profile, SuiteReport};

/// Cases per property check in the browser tests and the page (plus the committed
/// regression cases, which always run): as many as native lavapipe runs, with the small
/// size profile, since SwiftShader is a software GPU too. The seed is fixed, so every
/// run is the same.
pub(crate) const BROWSER_CASES: u32 = 24;

/// Cases per property check when the native tests run `WasmBackend` (the full suite on
/// the same adapter is `backend-webgpu`'s job; these check the delegation).
pub(crate) const NATIVE_CASES: u32 = 12;

/// The checks a browser runs: every property check, misuse and ordering. (`threads`
/// needs threads; a page has one.)
pub(crate) fn browser_checks() -> Vec<Check> {
    Check::ALL
        .iter()
        .copied()
        .filter(|&c| c != Check::Threads)
        .collect()
}

/// The suite's configuration for `b`: `cases` cases per property check, the small size
/// profile on software adapters (lavapipe, SwiftShader), and the known differences.
pub(crate) fn config(b: &WasmBackend, cases: u32) -> Config {
    let software = b.adapter().is_none_or(|a| a.is_software());
    let mut config = Config::new(cases).with_profile(Profile::for_device(software));
    config.expected = expectations(b);
    config
}

/// Differences of this backend that a user would accept, from the one table
/// ([`conformance::known`]). Strict: an expectation whose cases all pass fails the run.
pub(crate) fn expectations(b: &WasmBackend) -> Vec<Expectation> {
    let (label, driver) = b
        .adapter()
        .map(|a| (a.label(), a.driver.clone()))
        .unwrap_or_default();
    let browser = b.browser_adapter().map(|i| i.label()).unwrap_or_default();
    conformance::known::expectations_for(
        backend_api::ComputeBackend::name(b),
        &format!("{label} {browser}"),
        &driver,
    )
}

/// One check of the suite on `b` through the crate's async driver, with
/// [`BROWSER_CASES`] cases: the report the browser tests log and assert.
pub(crate) async fn run_one(b: &WasmBackend, check: Check) -> SuiteReport {
    let config = config(b, BROWSER_CASES);
    let report = conformance::run_check_async(b, check, &config, &mut |_| {}).await;
    SuiteReport {
        backend: backend_api::ComputeBackend::name(b).to_string(),
        checks: vec![report],
    }
}
