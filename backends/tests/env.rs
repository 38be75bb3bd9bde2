//! The `BACKEND` environment variable, read by a child process (this test binary, run
//! again with the variable set), since tests share one process environment.

use std::process::Command;

const CHILD: &str = "child_reports_the_selection";

/// Runs [`child_reports_the_selection`] with `BACKEND=value`; returns its stdout.
fn with_backend(value: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([
            CHILD,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(backends::BACKEND_ENV, value)
        .env_remove(backends::ADAPTER_ENV)
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("CHILD RAN"),
        "the child test did not run: {stdout}"
    );
    stdout
}

#[test]
#[ignore = "run by the other tests in a child process, with BACKEND set"]
fn child_reports_the_selection() {
    println!("CHILD RAN");
    match backends::select() {
        Ok(s) => println!(
            "SELECTED kind={} name={} reason={}",
            s.kind,
            s.backend.name(),
            s.reason
        ),
        Err(e) => println!("ERROR {e}"),
    }
    // default_backend() makes the same choice.
    match backends::default_backend() {
        Ok(b) => println!("DEFAULT {}", b.name()),
        Err(e) => println!("DEFAULT ERROR {e}"),
    }
}

#[test]
fn backend_cpu_selects_the_cpu() {
    let out = with_backend("cpu");
    assert!(
        out.contains("SELECTED kind=cpu name=cpu reason=BACKEND=cpu"),
        "{out}"
    );
    assert!(out.contains("DEFAULT cpu"), "{out}");
    let out = with_backend("CPU");
    assert!(out.contains("SELECTED kind=cpu"), "case-insensitive: {out}");
}

#[test]
fn backend_fast_cpu_selects_it_or_says_it_is_not_compiled_in() {
    let out = with_backend("fast-cpu");
    if backends::BackendKind::FastCpu.is_compiled() {
        assert!(
            out.contains("SELECTED kind=fast-cpu name=fast-cpu reason=BACKEND=fast-cpu"),
            "{out}"
        );
    } else {
        assert!(out.contains("not compiled in"), "{out}");
    }
}

#[test]
fn an_unknown_backend_is_an_error_naming_the_choices() {
    let out = with_backend("tpu");
    assert!(
        out.contains(
            r#"ERROR invalid argument: BACKEND="tpu": expected one of fast-cpu, cpu, webgpu, wasm, auto"#
        ),
        "{out}"
    );
    assert!(out.contains("DEFAULT ERROR"), "{out}");
}

#[test]
fn backend_webgpu_selects_the_gpu_or_says_why() {
    let out = with_backend("webgpu");
    if backends::BackendKind::WebGpu.is_compiled() {
        let started = out.contains("SELECTED kind=webgpu name=webgpu (");
        let failed = out.contains("ERROR device error: BACKEND=webgpu: ");
        assert!(started || failed, "{out}");
        assert!(
            !out.contains("SELECTED kind=cpu"),
            "no silent fallback: {out}"
        );
    } else {
        assert!(
            out.contains("ERROR unsupported: BACKEND=webgpu: the webgpu backend is not compiled in: enable the `webgpu` feature"),
            "{out}"
        );
    }
}

#[test]
fn auto_lets_the_facade_choose() {
    let out = with_backend("auto");
    assert!(out.contains("SELECTED kind="), "{out}");
    assert!(
        !out.contains("reason=BACKEND="),
        "auto is no override: {out}"
    );
}
