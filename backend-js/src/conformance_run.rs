//! `backend.runConformance(options, callbacks)` (feature `conformance`): the conformance
//! suite on this backend, as the conformance page runs it. The configuration is the one
//! the browser tests use (`backend-wasm/tests/support`), so the page and the tests hold
//! the backend to the same cases and expectations.

#[path = "../../backend-wasm/tests/support/mod.rs"]
mod support;

use backend_api::ComputeBackend;
use backend_wasm::WasmBackend;
use conformance::{Check, Config};
use js_sys::Reflect;
use serde_json::json;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::args;
use crate::backend::Backend;
use crate::error::invalid;

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

/// Calls `f(args...)` if `f` is a function; a callback that throws is logged, not fatal.
fn call(f: &JsValue, a: &[JsValue]) {
    let Some(f) = f.dyn_ref::<js_sys::Function>() else {
        return;
    };
    let r = match a {
        [x] => f.call1(&JsValue::NULL, x),
        [x, y, z] => f.call3(&JsValue::NULL, x, y, z),
        _ => Ok(JsValue::UNDEFINED),
    };
    if let Err(e) = r {
        web_sys::console::warn_1(&format!("a runConformance callback threw: {e:?}").into());
    }
}

#[wasm_bindgen]
impl Backend {
    /// Runs the conformance suite on this backend. `options`: `{ cases?, checks?, seed? }`
    /// (`cases` 0 or absent: the browser tests' number; `checks` a comma-separated list,
    /// empty: every check a browser runs). `callbacks`: `{ onStart(start), onProgress(check,
    /// done, total), onCheck(report) }`, all optional. Resolves to the whole report
    /// (`ok`: every check passed; `checks`: one report per check).
    #[wasm_bindgen(js_name = runConformance, unchecked_return_type = "Promise<any>")]
    pub fn run_conformance(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "{ cases?: number; checks?: string; seed?: string }"
        )]
        options: JsValue,
        #[wasm_bindgen(
            unchecked_param_type = "{ onStart?: (start: any) => void; onProgress?: (check: string, done: number, total: number) => void; onCheck?: (report: any) => void }"
        )]
        callbacks: JsValue,
    ) -> js_sys::Promise {
        let b = self.inner.clone();
        future_to_promise(async move {
            let op = "runConformance";
            let options = if options.is_undefined() || options.is_null() {
                js_sys::Object::new().into()
            } else {
                options
            };
            let cases = args::size_field_or(op, &options, "cases", 0)? as u32;
            let checks = args::str_field_or(op, &options, "checks", "")?;
            let seed = args::str_field_or(op, &options, "seed", "")?;
            let config =
                config(&b, cases, &checks, &seed).map_err(|e| invalid(format!("{op}: {e}")))?;
            let cb = |name: &str| {
                if callbacks.is_object() {
                    Reflect::get(&callbacks, &name.into()).unwrap_or(JsValue::UNDEFINED)
                } else {
                    JsValue::UNDEFINED
                }
            };
            let (on_start, on_progress, on_check) =
                (cb("onStart"), cb("onProgress"), cb("onCheck"));
            let parse = |v: &serde_json::Value| {
                js_sys::JSON::parse(&v.to_string()).unwrap_or(JsValue::NULL)
            };
            let adapter = b.adapter().map(|a| {
                json!({
                    "name": a.name, "backend": a.backend, "device_type": a.device_type,
                    "driver": a.driver, "features": a.features,
                    "max_buffer_size": a.max_buffer_size, "max_storage_binding": a.max_storage_binding,
                    "max_workgroup_storage": a.max_workgroup_storage, "max_invocations": a.max_invocations,
                    "subgroup_min_size": a.subgroup_min_size,
                })
            });
            let browser_adapter = b.browser_adapter().map(|i| {
                json!({
                    "vendor": i.vendor, "architecture": i.architecture, "device": i.device,
                    "description": i.description, "is_fallback": i.is_fallback,
                })
            });
            let start = json!({
                "backend": b.name(),
                "engine": format!("{:?}", b.engine()),
                "adapter": adapter,
                "browser_adapter": browser_adapter,
                "cases": config.cases,
                "seed": config.seed.to_string(),
                "profile": config.profile,
                "requested": config.checks,
                "expectations": config.expected,
            });
            call(&on_start, &[parse(&start)]);
            let mut reports = Vec::new();
            for &check in &config.checks {
                let report = conformance::run_check_async(&*b, check, &config, &mut |p| {
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
                let value = serde_json::to_value(&report).map_err(|e| invalid(e.to_string()))?;
                call(&on_check, &[parse(&value)]);
                reports.push(report);
            }
            let ok = reports.iter().all(|r| r.ok());
            let mut all = start;
            all["checks"] = serde_json::to_value(&reports).map_err(|e| invalid(e.to_string()))?;
            all["ok"] = json!(ok);
            Ok(parse(&all))
        })
    }
}
