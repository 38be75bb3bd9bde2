//! The reliability state machine (`conformance::state_machine`) driven by the fuzzer's
//! bytes against the CPU backend, in both of its modes: bit-exact (the CPU backend runs
//! the oracle's code) and tolerant (the rules every other backend is judged by). Any
//! divergence from the model — a wrong result, a wrong or missing error, a panic, a
//! corrupted allocation, a leak in `memory_info` — panics, which libFuzzer reports as a
//! crash with the input that reproduces it.
//!
//! Run: `cargo +nightly fuzz run state_machine` in the repository root (see
//! docs/RELIABILITY.md); reproduce a crash with `cargo +nightly fuzz run state_machine
//! <crash file>`.

#![no_main]

use backend_api::ComputeBackend;
use backend_cpu::CpuBackend;
use conformance::state_machine::{Options, run_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the mode, the rest are the calls.
    let Some((&mode, calls)) = data.split_first() else {
        return;
    };
    let mut cpu = CpuBackend::with_memory_limit(64 << 20);
    cpu.init().expect("CPU init cannot fail");
    let opts = Options {
        exact: mode & 1 == 0,
        big_allocs: mode & 2 != 0,
        steps: 10_000,
        ..Options::default()
    };
    if let Err(failure) = run_bytes(&cpu, calls, &opts) {
        panic!("{failure}");
    }
});
