//! The `BACKEND` environment variable, read by a child process (this test binary, run
//! again with the variable set), since tests share one process environment.

use std::process::Command;

const CHILD: &str = "child_reports_the_selection";

/// Runs [`child_reports_the_selection`] with `BACKEND=value`; returns its stdout.
fn with_backend(value: &str) -> String {
    with_vars(&[(backends::BACKEND_ENV, value)])
}

/// Runs [`child_reports_the_selection`] with `vars` set; returns its stdout.
fn with_vars(vars: &[(&str, &str)]) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([
            CHILD,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(vars.iter().copied())
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
        Ok(s) => {
            println!(
                "SELECTED kind={} name={} reason={}",
                s.kind,
                s.backend.name(),
                s.reason
            );
            match s.backend.alloc(8192) {
                Ok(_) => println!("ALLOC8K ok"),
                Err(e) => println!("ALLOC8K {e}"),
            }
        }
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

#[test]
fn a_memory_limit_that_is_not_a_number_is_refused_by_both_cpu_backends() {
    for kind in ["cpu", "fast-cpu"] {
        if kind == "fast-cpu" && !backends::BackendKind::FastCpu.is_compiled() {
            eprintln!("SKIP fast-cpu: not compiled in");
            continue;
        }
        let out = with_vars(&[
            (backends::BACKEND_ENV, kind),
            ("CPU_BACKEND_MEMORY_LIMIT", "abc"),
        ]);
        assert!(
            out.contains(&format!(
                r#"ERROR invalid argument: BACKEND={kind}: environment variable CPU_BACKEND_MEMORY_LIMIT="abc": expected an unsigned integer"#
            )),
            "{kind}: {out}"
        );
    }
}

#[test]
fn a_memory_limit_that_parses_is_applied_and_named_when_it_refuses() {
    let out = with_vars(&[
        (backends::BACKEND_ENV, "cpu"),
        ("CPU_BACKEND_MEMORY_LIMIT", " 4096 "),
    ]);
    assert!(
        out.contains("ALLOC8K out of memory: alloc: 8192 bytes (8.00 KiB) asked with 0 bytes of the 4096 bytes (4.00 KiB) limit already allocated"),
        "{out}"
    );
}

#[test]
fn a_webgpu_tuning_number_that_does_not_parse_is_refused() {
    if !backends::BackendKind::WebGpu.is_compiled() {
        eprintln!("SKIP: the webgpu backend is not compiled in");
        return;
    }
    let out = with_vars(&[
        (backends::BACKEND_ENV, "webgpu"),
        ("BACKEND_GEMM_NARROW_BELOW", "sixteen"),
    ]);
    assert!(
        out.contains(r#"environment variable BACKEND_GEMM_NARROW_BELOW="sixteen": expected an unsigned integer"#),
        "{out}"
    );
}
