//! The `conformance` binary, run as a user runs it: reports it writes, exit statuses, and
//! bad input (which must give a message and a non-zero status, never a panic).

#![cfg(feature = "runner")]

use std::path::PathBuf;
use std::process::{Command, Output};

use conformance::Check;

fn runner() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_conformance"));
    // The run must not depend on how the caller's environment picks adapters.
    c.env_remove("BACKEND_ADAPTER");
    c
}

fn run(args: &[&str]) -> Output {
    runner().args(args).output().expect("the runner starts")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("runner-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

#[test]
fn a_cpu_run_prints_the_table_and_writes_json_and_markdown_with_every_check() {
    let dir = scratch("cpu");
    let (json, md) = (dir.join("report.json"), dir.join("report.md"));
    let o = run(&[
        "--backend",
        "cpu",
        "--cases",
        "4",
        "--json",
        json.to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    for c in Check::ALL {
        assert!(stdout.contains(c.name()), "table lacks {c}: {stdout}");
    }
    assert!(stdout.contains("all passed"), "{stdout}");

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("valid JSON");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["tool"], "conformance");
    let targets = v["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 1, "only the CPU was asked for: {v}");
    let t = &targets[0];
    assert_eq!(t["backend"], "cpu");
    assert_eq!(t["status"], "passed");
    assert_eq!(t["cases_per_check"], 4);
    let checks = t["report"]["checks"].as_array().expect("per-check reports");
    for c in Check::ALL {
        let r = checks
            .iter()
            .find(|r| r["check"] == c.name())
            .unwrap_or_else(|| panic!("the JSON lacks {c}: {v}"));
        assert_eq!(r["failed"], 0, "{r}");
        assert!(r["passed"].as_u64().unwrap() > 0, "{c} ran nothing: {r}");
        assert!(r["worst_ratio"].as_f64().unwrap() <= 1.0, "{r}");
    }
    assert_eq!(v["checks"].as_array().unwrap().len(), Check::ALL.len());
    assert!(v["machine"]["cpu_threads"].as_u64().unwrap() >= 1, "{v}");

    let md = std::fs::read_to_string(&md).unwrap();
    for part in [
        "# Conformance report",
        "**PASSED**",
        "## Machine",
        "## Results",
        "| cpu |",
    ] {
        assert!(md.contains(part), "markdown lacks {part:?}:\n{md}");
    }
    let header = md
        .lines()
        .find(|l| l.starts_with("| target |"))
        .expect("a results table");
    for c in Check::ALL {
        assert!(header.contains(&format!(" {c} |")), "{header}");
    }
}

#[test]
fn a_replay_that_is_not_json_is_a_usage_error() {
    let o = run(&["--backend", "cpu", "--op", "gemm", "--replay", "{not json"]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("--replay: not JSON"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_replay_of_another_checks_case_fails_with_a_message_and_a_repro_command() {
    let o = run(&[
        "--backend",
        "cpu",
        "--op",
        "gemm",
        "--replay",
        r#"{"m": "x"}"#,
    ]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("FAILED cpu / gemm: --replay: not a gemm case"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            r#"reproduce: cargo run --release -p conformance -- --backend cpu --op gemm --replay '{"m": "x"}'"#
        ),
        "{stdout}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_replay_too_large_to_allocate_is_refused() {
    let case = r#"{"op":"Relu","n":1099511627776,"in_place":false,"offsets":[0,0],"specials":false,"seed":1}"#;
    let o = run(&["--backend", "cpu", "--op", "unary", "--replay", case]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("n = 1099511627776 is larger"), "{stderr}");
}

#[test]
fn a_valid_replay_and_a_case_seed_each_run_one_case() {
    let dir = scratch("replay");
    let json = dir.join("r.json");
    let case = r#"{"op":"Sub","n":7,"alias":"OutIsB","offsets":[1,0,3],"specials":true,"seed":42}"#;
    for args in [
        vec!["--op", "binary", "--replay", case],
        vec!["--op", "unary", "--case-seed", "12345"],
    ] {
        let mut all = vec!["--backend", "cpu", "--json", json.to_str().unwrap()];
        all.extend(args);
        let o = run(&all);
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "{all:?}: {stdout}\n{stderr}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let checks = v["targets"][0]["report"]["checks"].as_array().unwrap();
        assert_eq!(checks.len(), 1, "{v}");
        assert_eq!(checks[0]["passed"], 1, "exactly one case ran: {v}");
    }
}

#[test]
fn bad_arguments_are_usage_errors_that_say_what_is_allowed() {
    for (args, says) in [
        (vec!["--op", "gemmm"], "expected one of gemm, batched_gemm"),
        (vec!["--backend", "tpu"], "expected cpu or webgpu"),
        (vec!["--backend", "wasm"], "runs in a browser"),
        (vec!["--seed", "abc"], "not a 64-bit unsigned number"),
        (
            vec!["--op", "gemm,conv2d", "--case-seed", "1"],
            "exactly one --op",
        ),
        (
            vec!["--op", "misuse", "--case-seed", "1"],
            "no generated cases",
        ),
    ] {
        let o = run(&args);
        let (stdout, stderr) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn list_shows_the_backends_and_each_adapter_or_how_to_get_one() {
    let o = run(&["--list"]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("backends compiled in: "), "{stdout}");
    assert!(stdout.contains("cpu"), "{stdout}");
    assert!(
        stdout.contains("max_storage_buffer_binding_size")
            || stdout.contains("apt-get install mesa-vulkan-drivers"),
        "{stdout}"
    );
}

#[test]
fn an_adapter_that_matches_nothing_fails_and_lists_what_exists() {
    let o = run(&[
        "--adapter",
        "no-such-gpu-anywhere",
        "--op",
        "copy",
        "--cases",
        "1",
    ]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("no WebGPU adapter matches no-such-gpu-anywhere"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("\ncpu "),
        "an adapter selector runs no CPU row: {stdout}"
    );
}

#[test]
fn a_failing_case_prints_its_minimal_case_and_a_replay_command_that_reproduces_it() {
    // A hand-written case the gemm check never generates (batch 3 for the single-matrix
    // gemm), so even the oracle fails it: a real failure to check the output with.
    let case = r#"{"trans_a":"NoTrans","trans_b":"Trans","m":3,"n":2,"k":2,"pad_a":0,"pad_b":1,"pad_c":0,"alpha":1.0,"beta":0.0,"batch":3,"gap_a":0,"gap_b":null,"gap_c":1,"a_dtype":"F32","b_dtype":"F32","offsets":[0,1,2],"specials":false,"nan_c":false,"seed":5}"#;
    let dir = scratch("failure");
    let (json, md) = (dir.join("f.json"), dir.join("f.md"));
    let args = [
        "--backend",
        "cpu",
        "--op",
        "gemm",
        "--replay",
        case,
        "--json",
        json.to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
    ];
    let o = run(&args);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("FAILED cpu / gemm: "), "{stdout}");
    assert!(
        stdout.contains(&format!("minimal case (after 0 shrink steps): {case}")),
        "{stdout}"
    );
    let repro = format!(
        "reproduce: cargo run --release -p conformance -- --backend cpu --op gemm --replay '{case}'"
    );
    assert!(stdout.contains(&repro), "{stdout}");

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["targets"][0]["status"], "failed");
    assert_eq!(
        v["targets"][0]["report"]["checks"][0]["failures"][0]["case"],
        case
    );
    let cmd = v["targets"][0]["repro"][0]["command"].as_str().unwrap();
    assert!(repro.ends_with(cmd), "{cmd}");

    // The printed command, run through a shell, reproduces the failure.
    let shell = cmd.replace(
        "cargo run --release -p conformance --",
        &format!("'{}'", env!("CARGO_BIN_EXE_conformance")),
    );
    let again = Command::new("sh")
        .args(["-c", &shell])
        .env_remove("BACKEND_ADAPTER")
        .output()
        .unwrap();
    let (again_out, _) = text(&again);
    assert_eq!(again.status.code(), Some(1), "{again_out}");
    assert!(again_out.contains(&format!("minimal case (after 0 shrink steps): {case}")));

    let md = std::fs::read_to_string(&md).unwrap();
    for part in [
        "**FAILED**",
        "## Failures",
        "### cpu / gemm",
        "```json",
        "--replay '",
    ] {
        assert!(md.contains(part), "markdown lacks {part:?}:\n{md}");
    }
}

#[test]
fn without_a_gpu_driver_the_cpu_still_runs_and_the_fix_is_printed() {
    // Hide every Vulkan driver (the loader's variables) and every EGL vendor (glvnd's).
    let hide = |c: &mut Command| {
        c.env("VK_DRIVER_FILES", "/nonexistent/icd.json")
            .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl.json");
    };
    let mut list = runner();
    hide(&mut list);
    let (listed, _) = text(&list.arg("--list").output().unwrap());
    if !listed.contains("wgpu found no adapter") {
        eprintln!("SKIPPED: this machine's drivers cannot be hidden this way:\n{listed}");
        return;
    }
    let mut c = runner();
    hide(&mut c);
    let o = c.args(["--op", "copy", "--cases", "2"]).output().unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("cpu: passed"), "{stdout}");
    assert!(
        stdout.contains("apt-get install mesa-vulkan-drivers"),
        "{stdout}"
    );

    // Asking for the GPU explicitly, though, is a failure that says why.
    let mut c = runner();
    hide(&mut c);
    let o = c
        .args(["--backend", "webgpu", "--op", "copy", "--cases", "2"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("no WebGPU adapter found"), "{stdout}");
}

#[test]
fn the_help_names_every_check() {
    let o = run(&["--help"]);
    let (out, _) = text(&o);
    assert!(o.status.success(), "{out}");
    // The words after "One of:" up to the option's end, commas and a final period gone.
    let text: String = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let list = text
        .split("One of: ")
        .nth(1)
        .and_then(|rest| rest.split(" --").next())
        .unwrap_or_else(|| panic!("--help has no list of checks:\n{out}"));
    let listed: Vec<&str> = list
        .split([',', ' '])
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| !w.is_empty())
        .collect();
    for check in Check::ALL {
        assert!(
            listed.contains(&check.name()),
            "--help does not list the check {}:\n{out}",
            check.name()
        );
    }
}

#[test]
#[cfg(feature = "webgpu")]
fn a_bad_tuning_variable_is_a_usage_error_naming_it() {
    let o = runner()
        .env("BACKEND_GEMM_Q_DECODE", "fastest")
        .args(["--backend", "cpu", "--op", "copy", "--cases", "1"])
        .output()
        .expect("the runner starts");
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("BACKEND_GEMM_Q_DECODE") && stderr.contains("\"fastest\""),
        "{stderr}"
    );
    assert!(!stdout.contains("passed"), "nothing runs: {stdout}");
}
