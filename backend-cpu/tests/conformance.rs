//! The whole conformance suite on the CPU backend. The oracle checked against itself
//! still tests everything but the arithmetic: pointers, ranges, guards, aliasing,
//! validation, ordering and threads. The arithmetic is checked against numpy in
//! `tests/fixtures.rs`.

use backend_api::ComputeBackend;
use backend_cpu::CpuBackend;
use conformance::{Check, Config, Profile};

fn backend() -> CpuBackend {
    let mut b = CpuBackend::new();
    b.init().expect("CPU init cannot fail");
    b
}

/// 48 cases per check; under Miri (an interpreter, thousands of times slower) two tiny
/// ones, which still run every code path of the backend under Miri's checks.
fn config() -> Config {
    if !cfg!(miri) {
        return Config::from_env(48);
    }
    let mut c = Config::from_env(2).with_profile(Profile {
        gemm_max: 5,
        conv_batch: 1,
        conv_channels: 2,
        conv_hw: 4,
        conv_filters: 2,
        attn_seq: 4,
        attn_head_dim: 4,
        reduce_side: 3,
        reduce_long: 8,
        elementwise_max: 16,
        copy_max: 64,
    });
    c.max_shrink_iters = 0;
    c
}

fn check(c: Check) {
    conformance::assert_check(&backend(), "cpu", c, &config());
}

conformance::check_tests!(mod cpu, check);

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
