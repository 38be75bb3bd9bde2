//! Reliability of the CPU backend (issue 7; figures in `docs/RELIABILITY.md`): random call
//! sequences against a model of device memory, threads sharing one backend, a soak, and
//! allocation until refusal. Each test runs under a watchdog, so a deadlock fails instead
//! of hanging the run. Mutant backends at the end show that the state machine and the
//! concurrency check catch what they are for.
//!
//! Environment: `RELIABILITY_STEPS` (calls per seed, default 3000), `RELIABILITY_SEEDS`
//! (seeds, default 8), `RELIABILITY_THREADS` (default 8), `RELIABILITY_SOAK_CYCLES`
//! (default 100000). `RELIABILITY_STEPS=1000000` is the long mode.
//!
//! Under Miri (`scripts/test-reliability`) the same tests run with Miri-sized defaults
//! ([`miri_or`]); the two that check the tests themselves (mutants, the watchdog's child
//! process) are skipped there.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backend_api::{BackendError, BinaryOp, ComputeBackend, ComputeBackendExt, MemoryInfo, UnaryOp};
use backend_cpu::CpuBackend;
use conformance::mutant::{Fault, Mutant};
use conformance::state_machine::{
    self as sm, Options, assert_threads_match, env_u64, in_own_process, run_seed, run_threads,
    soak, state_machine_seeds, threaded, watchdog,
};

/// Live allocations the CPU backend may hold in these tests: far above what they use,
/// far below the machine's memory.
const LIMIT: u64 = 256 << 20;

fn cpu() -> CpuBackend {
    let mut b = CpuBackend::with_memory_limit(LIMIT);
    b.init().expect("CPU init cannot fail");
    b
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(60 * m)
}

/// `native`, or `miri` under Miri (an interpreter, thousands of times slower).
fn miri_or(native: u64, miri: u64) -> u64 {
    if cfg!(miri) { miri } else { native }
}

/// Under Miri, fewer and smaller live allocations (every byte read back costs).
fn miri_sized(o: Options) -> Options {
    if !cfg!(miri) {
        return o;
    }
    Options {
        max_live: 8,
        max_bytes: 16 << 10,
        big_allocs: false,
        ..o
    }
}

/// Runs the state machine for `seeds` seeds on fresh backends made by `make`.
fn state_machine(
    name: &'static str,
    make: fn() -> Box<dyn ComputeBackend>,
    opts: Options,
    seeds: u64,
) {
    watchdog(name, minutes(30), move || {
        let total = state_machine_seeds(name, seeds, &opts, |seed| {
            run_seed(make().as_ref(), seed, &opts)
        });
        assert!(
            total.out_of_memory > 0 || cfg!(miri),
            "no absurd allocation was tried"
        );
    });
}

/// Bit-exact: the CPU backend runs the oracle's own code, so any difference is state
/// (pointers, ranges, copies, aliasing, frees), not arithmetic.
#[test]
fn state_machine_exact() {
    let opts = Options {
        exact: true,
        big_allocs: !cfg!(miri),
        ..Options::steps(env_u64("RELIABILITY_STEPS", miri_or(3000, 40)))
    };
    state_machine(
        "cpu state machine (exact)",
        || Box::new(cpu()),
        miri_sized(opts),
        env_u64("RELIABILITY_SEEDS", miri_or(8, 1)),
    );
}

/// The tolerant mode every other backend gets, run on the oracle too, so that its rules
/// (tameness, approximate values, adoption on read-back) are exercised everywhere.
#[test]
fn state_machine_tolerant() {
    let opts = Options::steps(env_u64("RELIABILITY_STEPS", miri_or(3000, 40)));
    state_machine(
        "cpu state machine (tolerant)",
        || Box::new(cpu()),
        miri_sized(opts),
        env_u64("RELIABILITY_SEEDS", miri_or(8, 2)).div_ceil(2),
    );
}

/// Threads sharing one backend, each running its own state machine; each thread's
/// outcomes and checked bytes must equal those of the same seed run alone.
#[test]
fn threads_give_the_single_threaded_results() {
    let threads = env_u64("RELIABILITY_THREADS", miri_or(8, 2));
    let steps = env_u64("RELIABILITY_STEPS", miri_or(3000, 20)).min(2000);
    let opts = miri_sized(Options {
        exact: true,
        ..threaded(&Options::steps(steps))
    });
    let seeds: Vec<u64> = (100..100 + threads).collect();
    watchdog("cpu threads", minutes(10), move || {
        let single: Vec<sm::Stats> = seeds
            .iter()
            .map(|&s| run_seed(&cpu(), s, &opts).unwrap_or_else(|f| panic!("{f}")))
            .collect();
        let shared = cpu();
        let start = Instant::now();
        let total = assert_threads_match(&single, &shared, &seeds, &opts);
        eprintln!(
            "cpu threads: {threads} threads x {} steps in {:.1} s, results identical to \
             single-threaded runs: {total}",
            opts.steps,
            start.elapsed().as_secs_f64()
        );
    });
}

/// Threads reading one shared input at once while computing into their own buffers.
#[test]
fn threads_share_an_input() {
    watchdog("cpu shared input", minutes(5), || {
        let b: Arc<dyn ComputeBackend> = Arc::new(cpu());
        shared_input(&b, miri_or(8, 2) as usize, miri_or(200, 3) as usize).unwrap();
    });
}

/// `threads` threads each compute `op(x)` from one shared `x` into buffers of their own,
/// `rounds` times, and check every result (small integers: exact everywhere).
fn shared_input(b: &Arc<dyn ComputeBackend>, threads: usize, rounds: usize) -> Result<(), String> {
    let n = miri_or(1000, 64) as usize;
    let x: Vec<f32> = (0..n).map(|i| (i % 17) as f32 - 8.0).collect();
    let px = b.upload(&x).map_err(|e| e.to_string())?;
    let ops = [UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Square, UnaryOp::Relu];
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (b, x) = (b.clone(), &x);
                s.spawn(move || -> Result<(), String> {
                    let op = ops[t % ops.len()];
                    let e = |e: BackendError| format!("thread {t}: {e}");
                    for round in 0..rounds {
                        let py = b.alloc(4 * n).map_err(e)?;
                        b.unary(op, px, py, n).map_err(e)?;
                        b.binary(BinaryOp::Add, py, px, py, n).map_err(e)?;
                        let got = b.copy_dtoh_vec::<f32>(py, n).map_err(e)?;
                        b.free(py).map_err(e)?;
                        let want: Vec<f32> = x
                            .iter()
                            .map(|&v| backend_cpu::reference::unary(op, v) + v)
                            .collect();
                        if got != want {
                            return Err(format!("thread {t} round {round}: wrong result"));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a thread panicked".into())))
            .collect()
    });
    b.free(px).map_err(|e| e.to_string())?;
    results.into_iter().collect()
}

/// In a process of its own: VmRSS is the process's, and other tests would move it.
#[test]
fn soak_memory_stays_flat() {
    in_own_process("soak_memory_stays_flat", soak_body);
}

fn soak_body() {
    let cycles = env_u64("RELIABILITY_SOAK_CYCLES", miri_or(100_000, 10));
    watchdog("cpu soak", minutes(30), move || {
        let b = cpu();
        let r = soak(&b, cycles, 7).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("cpu soak: {r}");
        let end = r.info_end.expect("the CPU backend has memory_info");
        assert_eq!(
            (
                end.allocated_bytes,
                end.reserved_bytes,
                end.live_allocations
            ),
            (0, 0, 0)
        );
        // The heap may keep some freed pages; a leak of even 100 bytes per cycle would
        // show as 10 MB over 10^5 cycles.
        assert!(
            r.rss_growth_kib() < 8 * 1024,
            "VmRSS grew by {} KiB after warm-up",
            r.rss_growth_kib()
        );
    });
}

/// 10^5 frames of a frame arena: device memory flat, host memory flat (own process).
#[test]
fn frame_soak_memory_stays_flat() {
    in_own_process("frame_soak_memory_stays_flat", || {
        let frames = env_u64("RELIABILITY_FRAMES", miri_or(100_000, 20));
        watchdog("cpu frame soak", minutes(10), move || {
            let r = conformance::test_tools::frame_soak(&cpu(), frames)
                .unwrap_or_else(|e| panic!("{e}"));
            eprintln!("cpu frame soak: {r}");
            assert!(
                r.rss_growth_kib() < 8 * 1024,
                "VmRSS grew by {} KiB after warm-up",
                r.rss_growth_kib()
            );
        });
    });
}

#[test]
fn allocating_until_refused_leaves_the_backend_usable() {
    watchdog("cpu allocate until refused", minutes(2), || {
        // 16 chunks fit; under Miri 512-byte ones (Miri zero-fills byte by byte).
        let chunk = miri_or(4 << 20, 512) as usize;
        let mut b = CpuBackend::with_memory_limit(16 * chunk as u64);
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
        let m = refused.to_string();
        assert!(m.contains("1 MiB") || m.contains("bytes"), "{m}");
        assert!(m.contains("limit"), "the limit is not named: {m}");
        assert_eq!(held.len(), 16);
        // Still works while full: copies, ops and frees; sizes that do not fit are refused.
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
        // The memory is back.
        let all: Vec<u64> = (0..16).map(|_| b.alloc(chunk).unwrap()).collect();
        for p in all {
            b.free(p).unwrap();
        }
        // The default backend refuses what no machine has.
        let mut d = CpuBackend::new();
        d.init().unwrap();
        assert!(d.alloc(usize::MAX).unwrap_err().is_out_of_memory());
        assert!(d.alloc(1 << 50).unwrap_err().is_out_of_memory());
        d.free(d.alloc(8).unwrap()).unwrap();
    });
}

/// A deadlock must fail, not hang: this test runs itself again as a child process in
/// which a watched closure never finishes, and expects the watchdog's exit status.
#[test]
#[cfg_attr(miri, ignore = "starts a child process, which Miri cannot")]
fn a_deadlock_fails_instead_of_hanging() {
    const CHILD: &str = "RELIABILITY_DEADLOCK_CHILD";
    if std::env::var(CHILD).is_ok() {
        let a = Arc::new(Mutex::new(()));
        let b = Arc::new(Mutex::new(()));
        watchdog("a deliberate deadlock", Duration::from_secs(1), move || {
            // Two threads taking two locks in opposite orders.
            let (a2, b2) = (a.clone(), b.clone());
            let t = std::thread::spawn(move || {
                let _x = b2.lock();
                std::thread::sleep(Duration::from_millis(100));
                let _y = a2.lock();
            });
            let _x = a.lock();
            std::thread::sleep(Duration::from_millis(100));
            let _y = b.lock();
            t.join().unwrap();
        });
        unreachable!("the watchdog exits the process");
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_deadlock_fails_instead_of_hanging",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    assert!(
        stderr.contains("WATCHDOG: a deliberate deadlock"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Mutants: a wrong backend must fail these tests.

/// A [`Mutant`] with `fault` around the CPU backend of these tests ([`cpu`]).
fn mutant(fault: Fault) -> Mutant {
    Mutant::with_backend(fault, cpu())
}

fn caught(fault: Fault, opts: &Options) -> String {
    for seed in 0..20 {
        let b = mutant(fault);
        if let Err(f) = run_seed(&b, seed, opts) {
            return f.to_string();
        }
    }
    panic!("{fault:?} was not caught by the state machine in 20 seeds");
}

#[test]
#[cfg_attr(miri, ignore = "checks the state machine itself, not the backend")]
fn the_state_machine_catches_broken_backends() {
    watchdog("cpu mutants", minutes(10), || {
        let opts = Options {
            exact: true,
            ..Options::steps(2000)
        };
        for (fault, words) in [
            (Fault::DtodOneByteShortAboveOne, ""),
            (Fault::FreeAcceptsUnknown, "InvalidArgument required"),
            (Fault::UnaryWritesPastEndOutOfPlace, "model says"),
            (Fault::BinaryInPlaceReadsAOnly, "model says"),
            (Fault::GemmCorruptsAnotherAllocation, "model says"),
            // Caught as wrong bytes, or as a too-long write that it accepted (the
            // mutant checks the shortened range): which comes first depends on the seed.
            (
                Fault::HtodDropsLastByte,
                "model says|InvalidArgument required",
            ),
            (Fault::PanicsOnSeven, "panicked: seven"),
            (Fault::WrongErrorKind, "wrong error"),
            (Fault::MemoryInfoMiscounts, "memory_info says"),
        ] {
            let msg = caught(fault, &opts);
            assert!(
                words.split('|').any(|w| msg.contains(w)),
                "{fault:?}: {msg}"
            );
            eprintln!(
                "caught {fault:?}: {}",
                msg.lines().next().unwrap_or_default()
            );
        }
        // The tolerant mode catches data faults too.
        caught(Fault::UnaryWritesPastEndOutOfPlace, &Options::steps(2000));
    });
}

#[test]
#[cfg_attr(miri, ignore = "checks the concurrency test itself, not the backend")]
fn the_concurrency_check_catches_mixed_up_reads() {
    watchdog("cpu concurrency mutant", minutes(5), || {
        let opts = Options {
            exact: true,
            ..threaded(&Options::steps(1500))
        };
        let b = mutant(Fault::SharedStagingBuffer);
        let seeds: Vec<u64> = (0..8).collect();
        let failed = run_threads(&b, &seeds, &opts)
            .into_iter()
            .filter(|r| r.is_err())
            .count();
        assert!(
            failed > 0,
            "threads reading through one staging buffer were not caught"
        );
        // Alone, the same mutant is correct.
        run_seed(&mutant(Fault::SharedStagingBuffer), 0, &opts).unwrap();
    });
}
