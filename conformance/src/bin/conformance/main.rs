//! `conformance`: the suite on every backend compiled in and every wgpu adapter present.
//!
//! ```text
//! cargo run --release -p conformance                       # everything found
//! cargo run --release -p conformance -- --list             # adapters, limits, features
//! cargo run --release -p conformance -- --backend webgpu --adapter llvmpipe --op gemm,conv2d
//! cargo run --release -p conformance -- --json report.json --markdown report.md
//! ```
//!
//! Exit status: 0 when everything that ran passed, 1 on any failure (each printed with its
//! minimal case and a command that reproduces it), 2 for bad arguments.

#[cfg(not(target_arch = "wasm32"))]
mod machine;
#[cfg(not(target_arch = "wasm32"))]
mod output;
#[cfg(not(target_arch = "wasm32"))]
mod run;
#[cfg(not(target_arch = "wasm32"))]
mod targets;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    run::main()
}

/// The runner drives native devices; in a browser the suite runs from `backend-wasm`'s
/// page through `conformance::run_all_async`.
#[cfg(target_arch = "wasm32")]
fn main() {}
