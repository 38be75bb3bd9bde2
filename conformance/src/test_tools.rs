//! General tooling of the reliability tests: a watchdog against hangs, threaded state
//! machine runs and their comparison with single-threaded ones, a check of a backend that
//! is out of memory, a soak run with its VmRSS samples, and running a test in a process
//! of its own. Re-exported by [`state_machine`](crate::state_machine), where the tests
//! import them from.

use std::fmt;

use backend_api::{BackendError, BackendTranspose, BinaryOp, ComputeBackend, MemoryInfo, UnaryOp};
use backend_cpu::reference;

use crate::data::Rng;
use crate::state_machine::{MachineFailure, Options, Stats, run_seed};

/// `name` from the environment as a number, else `default` (the rules:
/// [`backend_api::env`]).
pub fn env_u64(name: &str, default: u64) -> u64 {
    backend_api::env::parse(name)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or(default)
}

/// Runs `f` on a thread of its own and returns its result; when it has not finished
/// after `limit`, prints what hung and exits the process with status 124, so that a
/// deadlock fails a test run instead of hanging it. A panic in `f` is re-raised.
#[cfg(not(target_arch = "wasm32"))]
pub fn watchdog<T: Send + 'static>(
    what: &str,
    limit: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    use std::sync::mpsc::{RecvTimeoutError, channel};
    let (tx, rx) = channel();
    let handle = std::thread::Builder::new()
        .name(format!("watched: {what}"))
        .spawn(move || {
            let r = f();
            let _ = tx.send(());
            r
        })
        .expect("spawning a thread");
    match rx.recv_timeout(limit) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(RecvTimeoutError::Timeout) => {
            eprintln!(
                "WATCHDOG: {what} did not finish within {limit:?}: a deadlock or a hang. \
                 Exiting with status 124."
            );
            std::process::exit(124)
        }
    }
}

/// Runs the state machine for seeds `0..seeds` (`run` runs one: on a fresh backend or a
/// shared one), prints the totals under `name`, and checks the mix the generator is meant
/// to give: over a quarter of the calls valid, over a tenth invalid. Panics with the
/// first failure. Returns the totals for the caller's own checks.
#[cfg(not(target_arch = "wasm32"))]
pub fn state_machine_seeds(
    name: &str,
    seeds: u64,
    opts: &Options,
    mut run: impl FnMut(u64) -> Result<Stats, Box<MachineFailure>>,
) -> Stats {
    let start = std::time::Instant::now();
    let mut total = Stats::default();
    for seed in 0..seeds {
        total.add(&run(seed).unwrap_or_else(|f| panic!("{f}")));
    }
    eprintln!(
        "{name}: {seeds} seeds x {} steps in {:.1} s: {total}\n  per op (valid, invalid): {:?}",
        opts.steps,
        start.elapsed().as_secs_f64(),
        total.per_op
    );
    assert!(
        total.valid > total.steps / 4,
        "{name}: too few valid calls: {total}"
    );
    assert!(
        total.invalid > total.steps / 10,
        "{name}: too few invalid calls: {total}"
    );
    total
}

/// Options for machines that share one backend across threads: no made-up pointers
/// that could hit another thread's allocation, no global memory counts, every
/// allocation filled at once (so results do not depend on what another thread left in
/// reused memory), and a per-step transcript to compare with a single-threaded run.
pub fn threaded(opts: &Options) -> Options {
    Options {
        shared: true,
        init_allocs: true,
        transcript: true,
        ..opts.clone()
    }
}

/// One state machine per seed, each on its own thread, all on `backend` at once.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_threads(
    backend: &dyn ComputeBackend,
    seeds: &[u64],
    opts: &Options,
) -> Vec<Result<Stats, Box<MachineFailure>>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .iter()
            .map(|&seed| s.spawn(move || run_seed(backend, seed, opts)))
            .collect();
        handles
            .into_iter()
            .zip(seeds)
            .map(|(h, &seed)| {
                h.join().unwrap_or_else(|_| {
                    Err(Box::new(MachineFailure {
                        backend: backend.name().to_string(),
                        seed: Some(seed),
                        step: 0,
                        op: None,
                        message: "the thread panicked".into(),
                        live: Vec::new(),
                        history: Vec::new(),
                    }))
                })
            })
            .collect()
    })
}

/// Checks a backend that has just refused an allocation for lack of memory, with `held`
/// its live allocations (at least two, of 12 bytes or more): `size`, 1 TiB and
/// `usize::MAX` are refused with `OutOfMemory`, and copies and an op on what it holds still
/// work.
#[track_caller]
pub fn assert_works_when_full(b: &dyn ComputeBackend, held: &[u64], size: usize) {
    use backend_api::ComputeBackendExt as _;
    for bytes in [usize::MAX, 1 << 40, size] {
        let e = b.alloc(bytes).unwrap_err();
        assert!(e.is_out_of_memory(), "{bytes}: {e}");
    }
    b.copy_htod_slice(held[0], &[1.0f32, -2.0, 3.0]).unwrap();
    b.unary(UnaryOp::Neg, held[0], held[1], 3).unwrap();
    assert_eq!(
        b.copy_dtoh_vec::<f32>(held[1], 3).unwrap(),
        [-1.0, 2.0, -3.0]
    );
}

/// Runs `seeds` at once on `shared` ([`run_threads`]) and panics unless each thread's run
/// equals `single[i]`, the same seed's run alone ([`same_results`]), and `shared` holds no
/// allocation afterwards. Returns the threaded runs' combined statistics.
#[track_caller]
pub fn assert_threads_match(
    single: &[Stats],
    shared: &dyn ComputeBackend,
    seeds: &[u64],
    opts: &Options,
) -> Stats {
    let mut total = Stats::default();
    let results = run_threads(shared, seeds, opts);
    for ((r, want), seed) in results.into_iter().zip(single).zip(seeds) {
        let got = r.unwrap_or_else(|f| panic!("{f}"));
        if let Err(m) = same_results(want, &got) {
            panic!("seed {seed}: threaded run differs from the single-threaded one: {m}");
        }
        total.add(&got);
    }
    let info = shared.memory_info().unwrap();
    assert_eq!(info.live_allocations, 0, "{info:?}");
    total
}

/// Checks that a run gave exactly the outcomes and checked bytes of another run of the
/// same calls (e.g. threaded against single-threaded); says at which step they part.
pub fn same_results(want: &Stats, got: &Stats) -> Result<(), String> {
    if let Some(i) = want
        .transcript
        .iter()
        .zip(&got.transcript)
        .position(|(a, b)| a != b)
    {
        return Err(format!(
            "results differ from step {i} on (outcome or read-back bytes)"
        ));
    }
    if want.transcript.len() != got.transcript.len() || want.digest != got.digest {
        return Err(format!(
            "runs differ: {} vs {} steps, digest {:#x} vs {:#x}",
            want.transcript.len(),
            got.transcript.len(),
            want.digest,
            got.digest
        ));
    }
    Ok(())
}

/// The resident set size of this process in KiB (`VmRSS` in `/proc/self/status`), where
/// the platform has it.
pub fn rss_kib() -> Option<u64> {
    if cfg!(miri) {
        return None; // Miri's isolation forbids reading files.
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Figures of a soak run.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// Cycles run.
    pub cycles: u64,
    /// Cycles before the baseline was taken (pools and caches warm).
    pub warmup: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Allocations made (and freed).
    pub allocs: u64,
    /// Elements read back and checked bit for bit.
    pub checked: u64,
    /// `(cycle, VmRSS KiB)` samples: after warm-up, every tenth of the run, at the end.
    pub rss_kib: Vec<(u64, u64)>,
    /// `memory_info` after warm-up.
    pub info_baseline: Option<MemoryInfo>,
    /// Largest `reserved_bytes` seen at the samples.
    pub reserved_peak: u64,
    /// `memory_info` at the end, everything freed.
    pub info_end: Option<MemoryInfo>,
}

impl SoakReport {
    /// VmRSS growth from the baseline to the end, in KiB (0 where unknown).
    pub fn rss_growth_kib(&self) -> i64 {
        match (self.rss_kib.first(), self.rss_kib.last()) {
            (Some(&(_, a)), Some(&(_, b))) => b as i64 - a as i64,
            _ => 0,
        }
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} cycles ({} warm-up) in {:.1} s: {} allocations, {} elements checked",
            self.cycles, self.warmup, self.seconds, self.allocs, self.checked
        )?;
        let mib = |kib: u64| kib as f64 / 1024.0;
        let rss: Vec<String> = self
            .rss_kib
            .iter()
            .map(|&(c, k)| format!("{c}: {:.1}", mib(k)))
            .collect();
        writeln!(f, "  VmRSS MiB by cycle: {}", rss.join(", "))?;
        writeln!(
            f,
            "  VmRSS growth after warm-up: {:+.1} MiB",
            self.rss_growth_kib() as f64 / 1024.0
        )?;
        writeln!(
            f,
            "  memory_info after warm-up: {:?}; peak reserved {} B",
            self.info_baseline, self.reserved_peak
        )?;
        write!(f, "  memory_info at the end:    {:?}", self.info_end)
    }
}

/// `cycles` alloc / upload / compute / free cycles with a rolling set of held buffers,
/// checking every result that is read back bit for bit, zeros of either sign aside (small
/// integers, for which every op used is exact on every device), then frees everything. Returns the figures; the
/// caller judges flatness. Fails on any error or wrong result.
pub fn soak(b: &dyn ComputeBackend, cycles: u64, seed: u64) -> Result<SoakReport, String> {
    use backend_api::ComputeBackendExt;

    let start = web_time::Instant::now();
    let mut rng = Rng::new(seed);
    let warmup = (cycles / 10).min(2000);
    let samples = 10u64;
    let mut report = SoakReport {
        cycles,
        warmup,
        ..SoakReport::default()
    };
    let info = |b: &dyn ComputeBackend| b.memory_info().ok();
    let mut held: Vec<(u64, Vec<f32>)> = Vec::new();
    let check = |b: &dyn ComputeBackend, p: u64, want: &[f32], cycle: u64| {
        let got = b
            .copy_dtoh_vec::<f32>(p, want.len())
            .map_err(|e| format!("cycle {cycle}: copy_dtoh: {e}"))?;
        // Bit for bit, except that zeros match whatever their sign: the CPU oracle's
        // gemm gives -0 where every product is -0, BLAS and the GPU +0
        // (docs/RELIABILITY.md).
        match got
            .iter()
            .zip(want)
            .position(|(g, w)| g.to_bits() != w.to_bits() && !(*g == 0.0 && *w == 0.0))
        {
            None => Ok(want.len() as u64),
            Some(i) => Err(format!(
                "cycle {cycle}: element {i} of {} is {}, want {}",
                want.len(),
                got[i],
                want[i]
            )),
        }
    };
    for cycle in 0..cycles {
        let e =
            |what: &'static str| move |err: BackendError| format!("cycle {cycle}: {what}: {err}");
        if cycle == warmup {
            b.synchronize().map_err(e("synchronize"))?;
            report.info_baseline = info(b);
            if let Some(r) = rss_kib() {
                report.rss_kib.push((cycle, r));
            }
        } else if cycle > warmup
            && (cycle - warmup).is_multiple_of(((cycles - warmup) / samples).max(1))
        {
            if let Some(r) = rss_kib() {
                report.rss_kib.push((cycle, r));
            }
            if let Some(i) = info(b) {
                report.reserved_peak = report.reserved_peak.max(i.reserved_bytes);
            }
        }
        // Mostly small, now and then past the WebGPU pool's 1 MiB sub-allocation size
        // (not under Miri, which is thousands of times slower).
        let n = if rng.below(512) == 0 && !cfg!(miri) {
            (1 << 18) + rng.below(1 << 17)
        } else {
            1 + rng.below(if cfg!(miri) { 64 } else { 2048 })
        };
        let x: Vec<f32> = (0..n).map(|_| rng.below(17) as f32 - 8.0).collect();
        let px = b.alloc(4 * n).map_err(e("alloc"))?;
        let py = b.alloc(4 * n).map_err(e("alloc"))?;
        report.allocs += 2;
        b.copy_htod_slice(px, &x).map_err(e("copy_htod"))?;
        let want: Vec<f32> = match cycle % 4 {
            0 => {
                b.unary(UnaryOp::Neg, px, py, n).map_err(e("unary"))?;
                x.iter().map(|v| -v).collect()
            }
            1 => {
                b.binary(BinaryOp::Mul, px, px, py, n)
                    .map_err(e("binary"))?;
                x.iter().map(|v| v * v).collect()
            }
            2 => {
                b.unary(UnaryOp::Abs, px, px, n).map_err(e("unary"))?;
                b.copy_dtod(py, px, 4 * n).map_err(e("copy_dtod"))?;
                x.iter().map(|v| v.abs()).collect()
            }
            _ => {
                // C (m x m) = X (m x k) * X^T with k = n / 8 and m <= 8 such that X and C
                // fit in n elements: exact for small integers.
                let k = n / 8;
                if let Some(q) = n.checked_div(k) {
                    let m = 8.min(q).min((n as f64).sqrt() as usize);
                    b.gemm(
                        BackendTranspose::NoTrans,
                        BackendTranspose::Trans,
                        m,
                        m,
                        k,
                        1.0,
                        px,
                        m,
                        px,
                        m,
                        0.0,
                        py,
                        m,
                    )
                    .map_err(e("gemm"))?;
                    let mut c = vec![0.0f32; m * m];
                    reference::gemm(false, true, m, m, k, 1.0, &x, m, &x, m, 0.0, &mut c, m);
                    c
                } else {
                    b.binary(BinaryOp::Add, px, px, py, n)
                        .map_err(e("binary"))?;
                    x.iter().map(|v| v + v).collect()
                }
            }
        };
        // Freed while the op that reads it may still be queued.
        b.free(px).map_err(e("free"))?;
        if cycle % 8 == 0 {
            report.checked += check(b, py, &want, cycle)?;
            b.free(py).map_err(e("free"))?;
        } else {
            held.push((py, want));
            if held.len() > 16 {
                let (p, want) = held.swap_remove(rng.below(held.len()));
                if rng.below(4) == 0 {
                    report.checked += check(b, p, &want, cycle)?;
                }
                b.free(p).map_err(e("free"))?;
            }
        }
    }
    for (p, want) in held.drain(..) {
        report.checked += check(b, p, &want, cycles)?;
        b.free(p).map_err(|e| format!("final free: {e}"))?;
    }
    b.synchronize()
        .map_err(|e| format!("final synchronize: {e}"))?;
    report.info_end = info(b);
    if let Some(r) = rss_kib() {
        report.rss_kib.push((cycles, r));
    }
    report.seconds = start.elapsed().as_secs_f64();
    if let Some(end) = report.info_end
        && (end.allocated_bytes != 0 || end.live_allocations != 0)
    {
        return Err(format!(
            "everything was freed, but memory_info says {end:?}"
        ));
    }
    Ok(report)
}

/// Runs the test `test` (its full name in this test binary) in a child process of its
/// own and fails if it fails; in the child, runs `body`. For measurements that other
/// tests running in the same process would disturb (VmRSS). Under Miri, which cannot
/// start processes, runs `body` in place.
#[cfg(not(target_arch = "wasm32"))]
pub fn in_own_process(test: &str, body: impl FnOnce()) {
    const ENV: &str = "RELIABILITY_OWN_PROCESS";
    if cfg!(miri) || backend_api::env::var(ENV).as_deref() == Some(test) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(ENV, test)
        .output()
        .expect("starting the test binary again");
    eprint!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{test} failed in its own process ({})",
        out.status
    );
}

/// Figures of a [`frame_soak`] run.
#[derive(Debug, Clone, Default)]
pub struct FrameSoakReport {
    /// Frames run (alloc, compute, read, reset each).
    pub frames: u64,
    /// Frames before the baseline was taken.
    pub warmup: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// `memory_info` after warm-up and at the end (the arena still alive).
    pub info: Option<(MemoryInfo, MemoryInfo)>,
    /// VmRSS after warm-up and at the end, KiB.
    pub rss_kib: Option<(u64, u64)>,
}

impl FrameSoakReport {
    /// VmRSS growth after warm-up, KiB (0 where it cannot be read).
    pub fn rss_growth_kib(&self) -> u64 {
        self.rss_kib.map_or(0, |(a, b)| b.saturating_sub(a))
    }
}

impl fmt::Display for FrameSoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} frames in {:.1} s ({:.1} us a frame); memory_info after warm-up / at the end: \
             {:?}; VmRSS {:?} KiB",
            self.frames,
            self.seconds,
            self.seconds * 1e6 / self.frames.max(1) as f64,
            self.info
                .map(|(a, b)| (a.allocated_bytes, b.allocated_bytes)),
            self.rss_kib
        )
    }
}

/// `frames` frames of a [`FrameArena`](backend_api::memory::FrameArena): four slices,
/// a write, two ops, a read every 97th frame (checked exactly), a reset. Device memory
/// must stay what it was after warm-up (the arena is one allocation; slices are aliases),
/// and a stale slice must stay refused.
pub fn frame_soak(b: &dyn ComputeBackend, frames: u64) -> Result<FrameSoakReport, String> {
    use backend_api::memory::FrameArena;
    let start = web_time::Instant::now();
    let warmup = (frames / 10).clamp(1, 1000);
    let frame = FrameArena::new(b, 64 << 10, 256).map_err(|e| e.to_string())?;
    let mut report = FrameSoakReport {
        frames,
        warmup,
        ..FrameSoakReport::default()
    };
    let (mut base_info, mut base_rss) = (None, None);
    let mut stale = None;
    let n = 256;
    for i in 0..frames {
        if i == warmup {
            base_info = b.memory_info().ok();
            base_rss = rss_kib();
        }
        let step = || -> Result<(), String> {
            let e = |e: BackendError| format!("frame {i}: {e}");
            let x = frame.alloc::<f32>(n).map_err(e)?;
            let y = frame.alloc::<f32>(n).map_err(e)?;
            let z = frame.alloc::<f32>(n).map_err(e)?;
            let _scratch = frame.alloc::<u32>(n).map_err(e)?;
            let v = (i % 1000) as f32;
            x.write(&vec![v; n]).map_err(e)?;
            b.unary(UnaryOp::Neg, x.ptr(), y.ptr(), n).map_err(e)?;
            b.binary(BinaryOp::Add, x.ptr(), y.ptr(), z.ptr(), n)
                .map_err(e)?;
            if i % 97 == 0 {
                let got = z.read().map_err(e)?;
                if got.iter().any(|&g| g.to_bits() != 0.0f32.to_bits()) {
                    return Err(format!("frame {i}: x + (-x) read back as {:?}", &got[..4]));
                }
            }
            Ok(())
        };
        step()?;
        if i == warmup {
            stale = frame.alloc::<f32>(4).ok().map(|s| s.ptr());
        }
        frame
            .reset()
            .map_err(|e| format!("reset of frame {i}: {e}"))?;
        // Right after its frame, a slice's pointer is refused as stale; much later (its
        // record evicted from the bounded list) it is still refused.
        if let Some(p) = stale.filter(|_| i == warmup || i + 1 == frames) {
            match b.copy_htod(p, &[0u8; 16]) {
                Err(BackendError::InvalidArgument(m)) if i > warmup || m.contains("stale") => {}
                other => {
                    return Err(format!(
                        "frame {i}: a slice of a past frame was not refused as stale: {other:?}"
                    ));
                }
            }
        }
    }
    b.synchronize().map_err(|e| e.to_string())?;
    report.info = base_info.zip(b.memory_info().ok());
    report.rss_kib = base_rss.zip(rss_kib());
    report.seconds = start.elapsed().as_secs_f64();
    if let Some((a, z)) = report.info
        && (a.allocated_bytes, a.live_allocations) != (z.allocated_bytes, z.live_allocations)
    {
        return Err(format!(
            "device memory moved over the frames: {a:?} -> {z:?}"
        ));
    }
    Ok(report)
}
