//! The wasm module of the conformance page (`backend-wasm/www/index.html`): runs the
//! conformance suite on the browser's WebGPU through `WasmBackend` and reports each check
//! to the page as JSON. `scripts/serve-web` builds it (`wasm-bindgen --target web`) and
//! serves the page; `scripts/test-web` drives it in headless Chromium.
//!
//! Natively this example is an empty library.

#![cfg(target_arch = "wasm32")]

#[path = "../tests/support/mod.rs"]
mod support;

use backend_api::ComputeBackend;
use backend_wasm::WasmBackend;
use conformance::{Check, Config};
use serde_json::json;
use wasm_bindgen::prelude::*;

/// What the page asks for: `cases` cases per property check (0: the tests' number),
/// `checks` a comma-separated list of check names (empty: every check a browser runs),
/// `seed` the case generator's seed (empty: the fixed default).
fn config(b: &WasmBackend, cases: u32, checks: &str, seed: &str) -> Result<Config, String> {
    let cases = if cases == 0 {
        support::BROWSER_CASES
    } else {
        cases
    };
    let mut config = support::config(b, cases);
    let wanted: Vec<&str> = checks
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    config.checks = if wanted.is_empty() {
        support::browser_checks()
    } else {
        wanted
            .iter()
            .map(|name| {
                Check::from_name(name).ok_or_else(|| {
                    let known: Vec<&str> = Check::ALL.iter().map(|c| c.name()).collect();
                    format!("unknown check {name:?}; known: {}", known.join(", "))
                })
            })
            .collect::<Result<_, _>>()?
    };
    if !seed.trim().is_empty() {
        config.seed = seed
            .trim()
            .parse()
            .map_err(|e| format!("seed {seed:?} is not a u64: {e}"))?;
    }
    Ok(config)
}

/// Initialises `WasmBackend` from the canvas `canvas_id`, then runs the suite. Calls
/// `on_start(json)` with the adapter, the configuration and the `requested` checks, `on_progress(check, done, total)`
/// after each case, and `on_check(json)` with each check's report; resolves to the whole
/// report as JSON (`checks`: one report per check; `ok`: true when every check passed). Rejects with a message when the
/// backend cannot be initialised or the arguments are wrong.
#[wasm_bindgen]
pub async fn run_conformance(
    canvas_id: String,
    cases: u32,
    checks: String,
    seed: String,
    on_start: js_sys::Function,
    on_progress: js_sys::Function,
    on_check: js_sys::Function,
) -> Result<String, JsError> {
    let b = WasmBackend::init_from_canvas(&canvas_id)
        .await
        .map_err(|e| JsError::new(&e.to_string()))?;
    let config = config(&b, cases, &checks, &seed).map_err(|e| JsError::new(&e))?;
    let adapter = b.adapter().map(|a| {
        json!({
            "name": a.name,
            "backend": a.backend,
            "device_type": a.device_type,
            "driver": a.driver,
            "features": a.features,
            "max_buffer_size": a.max_buffer_size,
            "max_storage_binding": a.max_storage_binding,
            "max_workgroup_storage": a.max_workgroup_storage,
            "max_invocations": a.max_invocations,
            "subgroup_min_size": a.subgroup_min_size,
        })
    });
    let browser_adapter = b.browser_adapter().map(|i| {
        json!({
            "vendor": i.vendor,
            "architecture": i.architecture,
            "device": i.device,
            "description": i.description,
            "is_fallback": i.is_fallback,
        })
    });
    let start = json!({
        "backend": b.name(),
        "adapter": adapter,
        "browser_adapter": browser_adapter,
        "cases": config.cases,
        "seed": config.seed.to_string(),
        "profile": config.profile,
        "requested": config.checks,
        "expectations": config.expected,
    });
    let call = |f: &js_sys::Function, args: &[JsValue]| {
        let r = match args {
            [a] => f.call1(&JsValue::NULL, a),
            [a, b, c] => f.call3(&JsValue::NULL, a, b, c),
            _ => Ok(JsValue::UNDEFINED),
        };
        if let Err(e) = r {
            web_sys::console::warn_1(&format!("a page callback threw: {e:?}").into());
        }
    };
    call(&on_start, &[JsValue::from_str(&start.to_string())]);

    let mut reports = Vec::new();
    for &check in &config.checks {
        let report = conformance::run_check_async(&b, check, &config, &mut |p| {
            call(
                &on_progress,
                &[
                    JsValue::from_str(p.check.name()),
                    JsValue::from(p.done),
                    JsValue::from(p.total),
                ],
            );
        })
        .await;
        let json = serde_json::to_string(&report).map_err(|e| JsError::new(&e.to_string()))?;
        call(&on_check, &[JsValue::from_str(&json)]);
        reports.push(report);
    }
    let ok = reports.iter().all(|r| r.ok());
    let mut all = start;
    all["checks"] = serde_json::to_value(&reports).map_err(|e| JsError::new(&e.to_string()))?;
    all["ok"] = json!(ok);
    Ok(all.to_string())
}
