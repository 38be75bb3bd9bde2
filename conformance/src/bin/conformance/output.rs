//! The run as a terminal table, as JSON and as a Markdown report.

use std::fmt::Write as _;

use conformance::{Check, CheckReport};
use serde_json::json;

use crate::machine::Machine;
use crate::run::{DEFAULT_CASES, Outcome, Plan, SOFTWARE_CASES, Status, repro, shell_quote};
use crate::targets::{AdapterInfo, Discovery, GL_SKIP, NO_WEBGPU, VULKAN_HINT};

/// Everything the reports need.
pub(crate) struct Run<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) outcomes: &'a [Outcome],
    pub(crate) discovery: &'a Discovery,
    pub(crate) seconds: f64,
    pub(crate) command: Vec<String>,
}

impl Run<'_> {
    fn ok(&self) -> bool {
        !self.outcomes.iter().any(Outcome::is_failure)
    }

    fn command_line(&self) -> String {
        let mut v = vec!["conformance".to_string()];
        v.extend(self.command.iter().skip(1).map(|a| shell_quote(a)));
        v.join(" ")
    }

    /// Every failure: (outcome, check report, index of the failure).
    fn failures(&self) -> impl Iterator<Item = (&Outcome, &CheckReport, &conformance::Failure)> {
        self.outcomes.iter().flat_map(|o| {
            o.report.iter().flat_map(move |r| {
                r.checks
                    .iter()
                    .flat_map(move |c| c.failures.iter().map(move |f| (o, c, f)))
            })
        })
    }
}

fn ratio(r: f64) -> String {
    if r == 0.0 {
        "0".to_string()
    } else if r >= 0.001 {
        format!("{r:.3}")
    } else {
        format!("{r:.1e}")
    }
}

fn bytes(b: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let f = b as f64;
    if f >= GIB {
        format!("{b} ({:.2} GiB)", f / GIB)
    } else if f >= MIB {
        format!("{b} ({:.1} MiB)", f / MIB)
    } else {
        format!("{b} ({} KiB)", b / 1024)
    }
}

fn cases(c: &CheckReport) -> u32 {
    c.passed + c.failed + c.expected_failures
}

/// One line per target: what it ran and how it went.
fn verdict(o: &Outcome) -> String {
    match (&o.report, o.status) {
        (Some(r), _) => {
            let ok = r.checks.iter().filter(|c| c.ok()).count();
            let n: u32 = r.checks.iter().map(cases).sum();
            format!(
                "{}: {ok}/{} checks passed, {n} cases, {:.1} s",
                o.status.name(),
                r.checks.len(),
                o.seconds
            )
        }
        (None, s) => format!("{}: {}", s.name(), o.reason.as_deref().unwrap_or("")),
    }
}

/// The terminal report: a table of target x check, then failures with repro commands.
pub(crate) fn text(run: &Run<'_>) -> String {
    let mut s = String::new();
    let width = run
        .outcomes
        .iter()
        .map(|o| o.target.label().len())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        s,
        "\nconformance: seed {}, {} check{}{}",
        run.plan.seed,
        run.plan.checks.len(),
        if run.plan.checks.len() == 1 { "" } else { "s" },
        match (&run.plan.replay, run.plan.case_seed) {
            (Some(_), _) => ", replaying one case".to_string(),
            (_, Some(c)) => format!(", only case seed {c}"),
            _ => String::new(),
        }
    );
    let _ = writeln!(
        s,
        "{:<width$}  {:<13} {:>6} {:>6} {:>6} {:>9} {:>9}",
        "target", "check", "passed", "failed", "xfail", "worst/tol", "time"
    );
    for o in run.outcomes {
        let label = o.target.label();
        match &o.report {
            Some(r) => {
                for (i, c) in r.checks.iter().enumerate() {
                    let _ = writeln!(
                        s,
                        "{:<width$}  {:<13} {:>6} {:>6} {:>6} {:>9} {:>7.2} s{}",
                        if i == 0 { label.as_str() } else { "" },
                        c.check.name(),
                        c.passed,
                        c.failed,
                        c.expected_failures,
                        ratio(c.worst_ratio),
                        c.millis / 1e3,
                        if c.ok() { "" } else { "  FAILED" }
                    );
                }
            }
            None => {
                // The first clause; the whole reason follows the table.
                let reason = o.reason.as_deref().unwrap_or("");
                let short = reason.split(';').next().unwrap_or(reason);
                let _ = writeln!(s, "{label:<width$}  {}: {short}", o.status.name());
            }
        }
    }
    let _ = writeln!(
        s,
        "\nworst/tol: the largest |got - want| / tolerance over passing cases (1 = at the bound)."
    );
    for o in run.outcomes {
        let _ = writeln!(s, "{}: {}", o.target.label(), verdict(o));
    }
    for note in &run.discovery.notes {
        let _ = writeln!(s, "note: {note}");
    }
    for o in run.outcomes {
        for c in o.report.iter().flat_map(|r| &r.checks) {
            for n in &c.notes {
                let _ = writeln!(s, "note: {} / {}: {n}", o.target.label(), c.check);
            }
        }
    }
    for (o, c, f) in run.failures() {
        let _ = writeln!(
            s,
            "\nFAILED {} / {}: {}",
            o.target.label(),
            c.check,
            f.message
        );
        f.write_details(&mut s);
        let _ = writeln!(
            s,
            "  reproduce: {}",
            repro(&o.target, run.plan, o, c.check, f)
        );
    }
    let _ = writeln!(
        s,
        "\n{} in {:.1} s",
        if run.ok() { "all passed" } else { "FAILED" },
        run.seconds
    );
    s
}

fn adapter_json(a: &AdapterInfo) -> serde_json::Value {
    serde_json::to_value(a).unwrap_or(serde_json::Value::Null)
}

/// Everything as JSON: machine, targets with adapters, per-check reports, repro commands.
pub(crate) fn json(run: &Run<'_>) -> String {
    let targets: Vec<_> = run
        .outcomes
        .iter()
        .map(|o| {
            let repros: Vec<_> = o
                .report
                .iter()
                .flat_map(|r| &r.checks)
                .flat_map(|c| {
                    c.failures.iter().map(move |f| {
                        json!({ "check": c.check, "command": repro(&o.target, run.plan, o, c.check, f) })
                    })
                })
                .collect();
            json!({
                "label": o.target.label(),
                "backend": o.target.kind.name(),
                "adapter": o.target.adapter.as_ref().map(adapter_json),
                "status": o.status.name().to_lowercase(),
                "reason": o.reason,
                "backend_name": o.backend_name,
                "profile": o.profile,
                "cases_per_check": o.cases,
                "seconds": o.seconds,
                "report": o.report,
                "repro": repros,
            })
        })
        .collect();
    let v = json!({
        "tool": "conformance",
        "version": env!("CARGO_PKG_VERSION"),
        "ok": run.ok(),
        "command": run.command_line(),
        "seed": run.plan.seed,
        "checks": run.plan.checks,
        "seconds": run.seconds,
        "machine": Machine::probe(),
        "adapters_found": run.discovery.adapters.iter().map(adapter_json).collect::<Vec<_>>(),
        "notes": run.discovery.notes,
        "targets": targets,
    });
    serde_json::to_string_pretty(&v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Device type, driver, features and the limits that decide kernels, as (label, value)
/// rows: shared by the Markdown report and `--list`.
fn properties(a: &AdapterInfo, features_label: &'static str) -> [(&'static str, String); 8] {
    [
        ("device type", a.device_type.clone()),
        ("driver", a.driver.clone()),
        (features_label, a.features.join(", ")),
        ("max_buffer_size", bytes(a.max_buffer_size)),
        (
            "max_storage_buffer_binding_size",
            bytes(a.max_storage_buffer_binding_size),
        ),
        (
            "max_compute_workgroup_storage_size",
            bytes(u64::from(a.max_compute_workgroup_storage_size)),
        ),
        (
            "max_compute_invocations_per_workgroup",
            a.max_compute_invocations_per_workgroup.to_string(),
        ),
        ("subgroup size (min)", a.subgroup_min_size.to_string()),
    ]
}

fn adapter_rows(s: &mut String, a: &AdapterInfo) {
    let _ = writeln!(s, "| property | value |\n|---|---|");
    let mut rows = vec![("API", a.api.clone())];
    rows.extend(properties(a, "features used"));
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {} |", md_escape(&v));
    }
    if a.identical_adapters > 0 {
        let _ = writeln!(
            s,
            "| identical adapters | {} more (only the first is tested) |",
            a.identical_adapters
        );
    }
}

/// A report to attach to a bug: machine, adapters with limits and features, the results,
/// and every failure with its minimal case and the command that reproduces it.
pub(crate) fn markdown(run: &Run<'_>) -> String {
    let mut s = String::new();
    let failed = run.outcomes.iter().filter(|o| o.is_failure()).count();
    let _ = writeln!(s, "# Conformance report\n");
    let _ = writeln!(
        s,
        "**{}** — {} target(s) run, {} failed, {} skipped; {} check(s) per target; seed {}; {:.1} s.\n",
        if run.ok() { "PASSED" } else { "FAILED" },
        run.outcomes
            .iter()
            .filter(|o| o.status != Status::Skipped)
            .count(),
        failed,
        run.outcomes
            .iter()
            .filter(|o| o.status == Status::Skipped)
            .count(),
        run.plan.checks.len(),
        run.plan.seed,
        run.seconds
    );
    let _ = writeln!(s, "Command: `{}`\n", run.command_line());

    let m = Machine::probe();
    let _ = writeln!(s, "## Machine\n\n| | |\n|---|---|");
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".to_string());
    let _ = writeln!(s, "| OS | {} |", md_escape(&m.os));
    let _ = writeln!(s, "| kernel | {} |", md_escape(&opt(&m.kernel)));
    let _ = writeln!(s, "| architecture | {} |", m.arch);
    let _ = writeln!(
        s,
        "| CPU | {} ({} threads) |",
        md_escape(&opt(&m.cpu)),
        m.cpu_threads
    );
    let _ = writeln!(
        s,
        "| memory | {} |",
        m.memory_gib
            .map_or("unknown".to_string(), |g| format!("{g} GiB"))
    );
    let _ = writeln!(s, "| rustc on PATH | {} |", md_escape(&opt(&m.rustc)));
    let _ = writeln!(
        s,
        "| git commit of the working directory | {} |",
        md_escape(&opt(&m.git_commit))
    );
    for (k, v) in &m.env {
        let _ = writeln!(s, "| `{k}` | `{}` |", md_escape(v));
    }

    let _ = writeln!(s, "\n## Adapters\n");
    if !cfg!(feature = "webgpu") {
        let _ = writeln!(s, "{NO_WEBGPU}.\n");
    } else if run.discovery.adapters.is_empty() {
        let _ = writeln!(
            s,
            "wgpu found no adapter{}.\n",
            if run
                .outcomes
                .iter()
                .any(|o| o.target.adapter.is_some() || o.target.kind.name() == "webgpu")
            {
                ""
            } else {
                " (WebGPU was not asked for)"
            }
        );
    }
    for a in &run.discovery.adapters {
        let tested = run.outcomes.iter().find(|o| {
            o.target
                .adapter
                .as_ref()
                .is_some_and(|t| t.label() == a.label())
        });
        let _ = writeln!(s, "### {}\n", md_escape(&a.label()));
        let _ = writeln!(
            s,
            "{}\n",
            match tested {
                Some(o) => verdict(o),
                None => "not selected in this run".to_string(),
            }
        );
        adapter_rows(&mut s, a);
        let _ = writeln!(s);
    }

    let _ = writeln!(s, "## Results\n");
    let checks = &run.plan.checks;
    let _ = write!(s, "| target |");
    for c in checks {
        let _ = write!(s, " {c} |");
    }
    let _ = write!(s, "\n|---|");
    for _ in checks {
        let _ = write!(s, "---|");
    }
    let _ = writeln!(s);
    for o in run.outcomes {
        let _ = write!(s, "| {} |", md_escape(&o.target.label()));
        match &o.report {
            Some(r) => {
                for c in checks {
                    let cell = match r.checks.iter().find(|x| x.check == *c) {
                        Some(x) if x.ok() => format!("pass {}", cases(x)),
                        Some(x) => format!("**FAIL {}/{}**", x.failed, cases(x)),
                        None => "-".to_string(),
                    };
                    let _ = write!(s, " {cell} |");
                }
            }
            None => {
                let _ = write!(s, " {} |", o.status.name());
                for _ in 1..checks.len() {
                    let _ = write!(s, " |");
                }
            }
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "\nCells: cases passed, or failed/run. Worst error is `|got - want| / tolerance` over passing \
         cases (1 = at the bound); the tolerances are in `conformance/src/tolerance.rs`.\n"
    );
    for o in run.outcomes {
        let _ = writeln!(s, "### {}\n", md_escape(&o.target.label()));
        let _ = writeln!(s, "{}\n", md_escape(&verdict(o)));
        let Some(r) = &o.report else { continue };
        let _ = writeln!(
            s,
            "Backend `{}`, profile `{}`, {} generated cases per property check.\n",
            r.backend,
            o.profile.unwrap_or("-"),
            o.cases.unwrap_or(0)
        );
        let _ = writeln!(
            s,
            "| check | passed | failed | expected failures | worst error / tol | worst abs error | time |\n|---|---|---|---|---|---|---|"
        );
        for c in &r.checks {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.2e} | {:.2} s |",
                c.check,
                c.passed,
                if c.failed > 0 {
                    format!("**{}**", c.failed)
                } else {
                    "0".to_string()
                },
                c.expected_failures,
                ratio(c.worst_ratio),
                c.worst_abs,
                c.millis / 1e3
            );
        }
        let _ = writeln!(s);
    }

    let failures: Vec<_> = run.failures().collect();
    if !failures.is_empty() || run.outcomes.iter().any(|o| o.status == Status::Error) {
        let _ = writeln!(s, "## Failures\n");
    }
    for o in run.outcomes.iter().filter(|o| o.status == Status::Error) {
        let _ = writeln!(
            s,
            "### {}: could not run\n\n```text\n{}\n```\n",
            md_escape(&o.target.label()),
            o.reason.as_deref().unwrap_or("")
        );
    }
    for (o, c, f) in failures {
        let _ = writeln!(s, "### {} / {}\n", md_escape(&o.target.label()), c.check);
        let _ = writeln!(s, "```text\n{}\n```\n", f.message);
        if let Some(case) = &f.case {
            let pretty = serde_json::from_str::<serde_json::Value>(case)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| case.clone());
            let _ = writeln!(
                s,
                "Minimal case (after {} shrink steps):\n\n```json\n{pretty}\n```\n",
                f.shrink_steps
            );
        }
        if let Some(seed) = f.case_seed {
            let _ = writeln!(s, "Case seed: `{seed}`\n");
        }
        let _ = writeln!(
            s,
            "Reproduce (in a clone of this repository):\n\n```sh\n{}\n```\n",
            repro(&o.target, run.plan, o, c.check, f)
        );
    }

    let notes: Vec<String> = run
        .discovery
        .notes
        .iter()
        .cloned()
        .chain(run.outcomes.iter().flat_map(|o| {
            o.report.iter().flat_map(|r| &r.checks).flat_map(move |c| {
                c.notes
                    .iter()
                    .map(move |n| format!("{} / {}: {n}", o.target.label(), c.check))
            })
        }))
        .chain(
            run.outcomes
                .iter()
                .filter(|o| o.status == Status::Skipped)
                .map(|o| {
                    format!(
                        "{} skipped: {}",
                        o.target.label(),
                        o.reason.as_deref().unwrap_or("")
                    )
                }),
        )
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "## Notes\n");
        for n in notes {
            let _ = writeln!(s, "- {}", md_escape(&n));
        }
        let _ = writeln!(s);
    }
    s
}

/// `--list`: the backends compiled in and every adapter with its limits and features.
pub(crate) fn listing(adapters: &[AdapterInfo]) -> String {
    let mut s = String::new();
    let compiled: Vec<&str> = backends::BackendKind::compiled()
        .iter()
        .filter(|k| **k != backends::BackendKind::Wasm)
        .map(|k| k.name())
        .collect();
    let _ = writeln!(s, "backends compiled in: {}", compiled.join(", "));
    let _ = writeln!(
        s,
        "checks: {}",
        Check::ALL
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !cfg!(feature = "webgpu") {
        let _ = writeln!(s, "\n{NO_WEBGPU}");
        return s;
    }
    if adapters.is_empty() {
        let _ = writeln!(s, "\nwgpu found no adapter: {VULKAN_HINT}");
        return s;
    }
    for a in adapters {
        let _ = writeln!(s, "\n{}", a.label());
        let native = adapters.iter().any(|x| x.api != "Gl");
        let run = if a.api == "Gl" && native {
            format!("skipped by default: {GL_SKIP}")
        } else if a.is_software() {
            format!("software adapter: small profile, {SOFTWARE_CASES} cases per check by default")
        } else {
            format!("hardware adapter: full profile, {DEFAULT_CASES} cases per check by default")
        };
        let mut rows = vec![("runs with", run)];
        rows.extend(properties(a, "features"));
        rows.push((
            "select with",
            format!("--adapter {}", shell_quote(&a.label())),
        ));
        for (k, v) in rows {
            let _ = writeln!(s, "  {k:<38} {v}");
        }
        if a.identical_adapters > 0 {
            let _ = writeln!(
                s,
                "  {:<38} {} more",
                "identical adapters", a.identical_adapters
            );
        }
    }
    if !adapters.iter().any(|a| a.api != "Gl") {
        let _ = writeln!(s, "\n{VULKAN_HINT}");
    }
    s
}
