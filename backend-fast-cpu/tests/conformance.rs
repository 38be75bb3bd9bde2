//! The whole conformance suite on the fast CPU backend, against the oracle, with the
//! tolerances every backend is held to (misuse, ordering, memory and threads included).

use backend_api::ComputeBackend;
use backend_fast_cpu::FastCpuBackend;
use conformance::{Check, Config, Profile};

fn backend() -> FastCpuBackend {
    let mut b = FastCpuBackend::new();
    b.init().expect("init cannot fail");
    b
}

fn check(c: Check) {
    let b = backend();
    let mut config = Config::from_env(48).with_profile(Profile::for_device(false));
    config.expected = conformance::known::expectations_for(b.name(), "", "");
    conformance::assert_check(&b, b.name(), c, &config);
}

conformance::check_tests!(mod fast_cpu, check);

#[test]
fn uninitialized_backend_refuses_every_call() {
    conformance::check_uninitialized(&FastCpuBackend::new()).unwrap();
}

#[test]
fn init_twice_is_a_no_op() {
    let mut b = backend();
    let p = b.alloc(16).unwrap();
    b.init().unwrap();
    b.free(p).expect("allocations survive a second init");
}
