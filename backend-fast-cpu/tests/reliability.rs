//! Reliability of the fast CPU backend, as for the other backends (`docs/RELIABILITY.md`):
//! the state machine in its tolerant mode (the mode every backend but the oracle gets),
//! threads sharing one backend, and allocation until refusal. Each runs under a watchdog,
//! so a deadlock fails instead of hanging. `RELIABILITY_STEPS`, `RELIABILITY_SEEDS` and
//! `RELIABILITY_THREADS` size them.

use std::time::Duration;

use backend_api::{ComputeBackend, MemoryInfo};
use backend_fast_cpu::FastCpuBackend;
use conformance::state_machine::{
    self as sm, Options, assert_threads_match, env_u64, run_seed, state_machine_seeds, threaded,
    watchdog,
};

const LIMIT: u64 = 256 << 20;

fn fast() -> FastCpuBackend {
    let mut b = FastCpuBackend::with_memory_limit(LIMIT);
    b.init().expect("init cannot fail");
    b
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(60 * m)
}

#[test]
fn state_machine() {
    let opts = Options {
        big_allocs: true,
        ..Options::steps(env_u64("RELIABILITY_STEPS", 3000))
    };
    let seeds = env_u64("RELIABILITY_SEEDS", 4);
    watchdog("fast-cpu state machine", minutes(20), move || {
        let total = state_machine_seeds("fast-cpu state machine", seeds, &opts, |seed| {
            run_seed(&fast(), seed, &opts)
        });
        assert!(total.values_approx > 0 && total.bytes_exact > 0, "{total}");
        assert!(total.out_of_memory > 0, "no absurd allocation was tried");
    });
}

/// Threads sharing one backend, each running its own state machine; each thread's
/// outcomes and checked values must equal those of the same seed run alone.
#[test]
fn threads_give_the_single_threaded_results() {
    let threads = env_u64("RELIABILITY_THREADS", 4);
    let opts = threaded(&Options::steps(
        env_u64("RELIABILITY_STEPS", 3000).min(1000),
    ));
    let seeds: Vec<u64> = (100..100 + threads).collect();
    watchdog("fast-cpu threads", minutes(10), move || {
        let single: Vec<sm::Stats> = seeds
            .iter()
            .map(|&s| run_seed(&fast(), s, &opts).unwrap_or_else(|f| panic!("{f}")))
            .collect();
        let total = assert_threads_match(&single, &fast(), &seeds, &opts);
        eprintln!(
            "fast-cpu threads: {threads} threads, identical to single-threaded runs: {total}"
        );
    });
}

#[test]
fn allocating_until_refused_leaves_the_backend_usable() {
    watchdog("fast-cpu allocate until refused", minutes(2), || {
        let chunk = 4 << 20;
        let mut b = FastCpuBackend::with_memory_limit(16 * chunk as u64);
        b.init().unwrap();
        let mut held = Vec::new();
        let refused = loop {
            match b.alloc(chunk) {
                Ok(p) => held.push(p),
                Err(e) => break e,
            }
            assert!(held.len() <= 16, "the limit was never enforced");
        };
        assert!(refused.is_out_of_memory(), "{refused}");
        assert!(refused.to_string().contains("limit"), "{refused}");
        sm::assert_works_when_full(&b, &held, chunk);
        for p in held.drain(..) {
            b.free(p).unwrap();
        }
        assert_eq!(
            b.memory_info().unwrap(),
            MemoryInfo {
                allocated_bytes: 0,
                reserved_bytes: 0,
                live_allocations: 0,
                staged_bytes: 0,
            }
        );
        let mut d = FastCpuBackend::new();
        d.init().unwrap();
        assert!(d.alloc(usize::MAX).unwrap_err().is_out_of_memory());
    });
}
