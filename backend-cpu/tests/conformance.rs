//! The whole conformance suite on the CPU backend. The oracle checked against itself
//! still tests everything but the arithmetic: pointers, ranges, guards, aliasing,
//! validation, ordering and threads. The arithmetic is checked against numpy in
//! `tests/fixtures.rs`.

use backend_api::ComputeBackend;
use backend_cpu::CpuBackend;
use conformance::{Check, Config, run_check};

fn backend() -> CpuBackend {
    let mut b = CpuBackend::new();
    b.init().expect("CPU init cannot fail");
    b
}

fn check(c: Check) {
    let report = run_check(&backend(), c, &Config::from_env(48));
    eprintln!(
        "{}",
        conformance::SuiteReport {
            backend: "cpu".into(),
            checks: vec![report.clone()]
        }
        .summary()
    );
    report.assert_ok();
}

#[test]
fn gemm() {
    check(Check::Gemm);
}

#[test]
fn batched_gemm() {
    check(Check::BatchedGemm);
}

#[test]
fn gemm_ex() {
    check(Check::GemmEx);
}

#[test]
fn conv2d() {
    check(Check::Conv2d);
}

#[test]
fn attention() {
    check(Check::Attention);
}

#[test]
fn reduce() {
    check(Check::Reduce);
}

#[test]
fn unary() {
    check(Check::Unary);
}

#[test]
fn binary() {
    check(Check::Binary);
}

#[test]
fn copy() {
    check(Check::Copy);
}

#[test]
fn cast() {
    check(Check::Cast);
}

#[test]
fn misuse() {
    check(Check::Misuse);
}

#[test]
fn ordering() {
    check(Check::Ordering);
}

#[test]
fn threads() {
    check(Check::Threads);
}

#[test]
fn uninitialized_backend_refuses_every_call() {
    conformance::check_uninitialized(&CpuBackend::new()).unwrap();
}

#[test]
fn init_twice_is_a_no_op() {
    let mut b = backend();
    let p = b.alloc(16).unwrap();
    b.init().unwrap();
    b.free(p).expect("allocations survive a second init");
}
