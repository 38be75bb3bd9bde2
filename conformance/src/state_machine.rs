//! Random call sequences against a model of device memory: the reliability state machine.
//!
//! A *call language* ([`Op`]: alloc, free, the three copies, unary, binary, reduce, gemm,
//! synchronize, memory_info and a full read-back of every allocation) is generated from
//! a byte stream ([`Source`]): a seeded generator in tests, the fuzzer's input in
//! `fuzz/`. Calls are drawn from what is live — mostly valid, often not: offsets past
//! the end, unaligned operands, freed and made-up pointers, partial overlaps, bad leading
//! dimensions, absurd sizes. Each call runs on the backend and on a [`Machine`]'s model
//! of device memory: host bytes per live allocation, each byte *known* (written, or the
//! result of an exact op), *approximate* (an f32 op result with the tolerance the
//! conformance suite allows, from [`tolerance`](crate::tolerance)) or *unknown* (never
//! written, or derived from approximate data). The model decides independently of
//! `backend_api::validate` whether a call is valid, and
//!
//! - a valid call must succeed and a read-back must match the model: known bytes
//!   exactly, approximate values within their tolerance (then the model adopts what it
//!   read, so error does not compound along chains of ops);
//! - an invalid call must fail with the right kind (`InvalidArgument` naming the op, or
//!   `OutOfMemory` for sizes no device has) and change nothing;
//! - no call may panic, and no allocation may change except through the calls that
//!   name it, which the periodic and final read-back of every allocation checks;
//! - `memory_info` (where a backend has it) must agree with the model, and be back to
//!   zero once everything is freed at the end.
//!
//! Everything is deterministic: the same seed (or bytes) gives the same calls, and for
//! the same backend the same [`Stats::digest`] of every checked byte, which the
//! concurrency test uses to compare threaded runs with single-threaded ones.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use backend_api::{
    BackendError, BackendTranspose, BinaryOp, ComputeBackend, MemoryInfo, ReduceOp, UnaryOp,
};
use backend_cpu::reference;

use crate::data::{NON_FINITE_AND_ZEROS, Rng, to_bytes};
use crate::suites::elementwise::{binary_tolerance, unary_tolerance};
use crate::tolerance::{EPS, FTZ, Tol, check_value};

/// Allocation sizes from here up are refused by every device: `OutOfMemory` is required.
pub const HUGE_ALLOC: u64 = 1 << 40;

/// Where the calls come from: a fuzzer's bytes (zeros once they run out), or a seeded
/// generator that never runs out.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    bytes: &'a [u8],
    pos: usize,
    rng: Option<Rng>,
}

impl<'a> Source<'a> {
    /// Decodes calls from `bytes` (the fuzz target's input).
    pub fn from_bytes(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            rng: None,
        }
    }

    /// An endless stream from a seed.
    pub fn from_seed(seed: u64) -> Source<'static> {
        Source {
            bytes: &[],
            pos: 0,
            rng: Some(Rng::new(seed)),
        }
    }

    /// True when decoding from bytes and all were used.
    pub fn is_exhausted(&self) -> bool {
        self.rng.is_none() && self.pos >= self.bytes.len()
    }

    fn u8(&mut self) -> u8 {
        if let Some(r) = &mut self.rng {
            return r.next_u64() as u8;
        }
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        if let Some(r) = &mut self.rng {
            return r.next_u64();
        }
        (0..8).fold(0u64, |acc, i| acc | u64::from(self.u8()) << (8 * i))
    }

    /// Uniform-ish in `0..n` (0 when `n == 0`); two bytes, so fuzzers can steer it.
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let v = if n <= 256 {
            u64::from(self.u8())
        } else if n <= 65_536 {
            u64::from(self.u16())
        } else {
            self.u64()
        };
        v % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// How a run generates and judges calls.
#[derive(Debug, Clone)]
pub struct Options {
    /// Calls to make (the final read-back and frees come on top).
    pub steps: u64,
    /// Op results must equal the oracle bit for bit (the CPU backend runs the oracle's
    /// own code); otherwise within the conformance tolerances, and only for inputs in the
    /// ranges the conformance suite tests.
    pub exact: bool,
    /// Live allocations at most; an alloc beyond becomes a free.
    pub max_live: usize,
    /// Live bytes at most.
    pub max_bytes: u64,
    /// Sometimes allocate 1-2 MiB (past the WebGPU pool's sub-allocation size).
    pub big_allocs: bool,
    /// Other threads use the backend too: no made-up pointers that could land in their
    /// allocations, and no global `memory_info` checks.
    pub shared: bool,
    /// Fill every fresh allocation at once, so no result depends on memory's previous
    /// contents (for comparing runs).
    pub init_allocs: bool,
    /// Keep one digest per step in [`Stats::transcript`].
    pub transcript: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            steps: 2000,
            exact: false,
            max_live: 24,
            max_bytes: 8 << 20,
            big_allocs: false,
            shared: false,
            init_allocs: false,
            transcript: false,
        }
    }
}

impl Options {
    /// `steps` calls with the defaults.
    pub fn steps(steps: u64) -> Self {
        Self {
            steps,
            ..Self::default()
        }
    }
}

/// What to write with `copy_htod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// Seed of the data.
    pub seed: u64,
    /// Random bytes (any f32 bit pattern) instead of f32 values in `[-4, 4)` with some
    /// NaN, infinities and signed zeros.
    pub raw: bool,
}

impl Fill {
    /// The `len` bytes this fill writes.
    pub fn bytes(&self, len: usize) -> Vec<u8> {
        let mut rng = Rng::new(self.seed);
        if self.raw {
            return rng.bytes(len);
        }
        let mut v = rng.fill(len.div_ceil(4), -4.0, 4.0);
        if rng.below(4) == 0 {
            rng.sprinkle(&mut v, &NON_FINITE_AND_ZEROS, 0.02);
        }
        let mut b = to_bytes(&v);
        b.truncate(len);
        b
    }
}

/// One call of the language, with concrete arguments.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "the fields are the trait method's arguments")]
pub enum Op {
    Alloc {
        bytes: usize,
    },
    Free {
        ptr: u64,
    },
    CopyHtod {
        dst: u64,
        len: usize,
        fill: Fill,
    },
    CopyDtoh {
        src: u64,
        len: usize,
    },
    CopyDtod {
        dst: u64,
        src: u64,
        bytes: usize,
    },
    Unary {
        op: UnaryOp,
        input: u64,
        output: u64,
        n: usize,
    },
    Binary {
        op: BinaryOp,
        a: u64,
        b: u64,
        output: u64,
        n: usize,
    },
    Reduce {
        op: ReduceOp,
        input: u64,
        output: u64,
        shape: Vec<usize>,
        axis: usize,
    },
    Gemm {
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a: u64,
        lda: usize,
        b: u64,
        ldb: usize,
        beta: f64,
        c: u64,
        ldc: usize,
    },
    Synchronize,
    MemoryInfo,
    /// Reads every live allocation back whole and checks it.
    CheckAll,
}

impl Op {
    /// The trait method's name (what an `InvalidArgument` message must mention).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Alloc { .. } => "alloc",
            Op::Free { .. } => "free",
            Op::CopyHtod { .. } => "copy_htod",
            Op::CopyDtoh { .. } => "copy_dtoh",
            Op::CopyDtod { .. } => "copy_dtod",
            Op::Unary { .. } => "unary",
            Op::Binary { .. } => "binary",
            Op::Reduce { .. } => "reduce",
            Op::Gemm { .. } => "gemm",
            Op::Synchronize => "synchronize",
            Op::MemoryInfo => "memory_info",
            Op::CheckAll => "check_all",
        }
    }
}

/// Counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls made.
    pub steps: u64,
    /// Valid calls, which succeeded.
    pub valid: u64,
    /// Invalid calls, which failed with `InvalidArgument` as required.
    pub invalid: u64,
    /// Absurd allocations refused with `OutOfMemory` as required.
    pub out_of_memory: u64,
    /// Successful allocations and frees.
    pub allocs: u64,
    /// Successful frees.
    pub frees: u64,
    /// Read-back bytes compared exactly with the model.
    pub bytes_exact: u64,
    /// Read-back f32 values compared within a tolerance.
    pub values_approx: u64,
    /// Most allocations live at once.
    pub peak_live: usize,
    /// Digest of every outcome and every checked byte, in order.
    pub digest: u64,
    /// One digest per step, with [`Options::transcript`].
    pub transcript: Vec<u64>,
    /// Per op: (valid calls, invalid calls).
    pub per_op: BTreeMap<&'static str, (u64, u64)>,
}

impl Stats {
    /// Adds another run's counts (digests are not combined).
    pub fn add(&mut self, o: &Stats) {
        self.steps += o.steps;
        self.valid += o.valid;
        self.invalid += o.invalid;
        self.out_of_memory += o.out_of_memory;
        self.allocs += o.allocs;
        self.frees += o.frees;
        self.bytes_exact += o.bytes_exact;
        self.values_approx += o.values_approx;
        self.peak_live = self.peak_live.max(o.peak_live);
        for (k, v) in &o.per_op {
            let e = self.per_op.entry(k).or_default();
            e.0 += v.0;
            e.1 += v.1;
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} calls: {} valid, {} invalid (InvalidArgument), {} OutOfMemory; {} allocs, {} frees, \
             peak {} live; {} bytes compared exactly, {} values within tolerance",
            self.steps,
            self.valid,
            self.invalid,
            self.out_of_memory,
            self.allocs,
            self.frees,
            self.peak_live,
            self.bytes_exact,
            self.values_approx
        )
    }
}

/// Where and how a run went wrong, with what a reproduction needs.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The backend's name.
    pub backend: String,
    /// The seed, when the calls came from one.
    pub seed: Option<u64>,
    /// Index of the failing call (0-based; `steps` for the final checks).
    pub step: u64,
    /// The call.
    pub op: Option<Op>,
    /// What was wrong.
    pub message: String,
    /// Live allocations (base, size) at the time.
    pub live: Vec<(u64, usize)>,
    /// The calls before it, oldest first.
    pub history: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "state machine on {}: step {}{}: {}",
            self.backend,
            self.step,
            self.seed
                .map(|s| format!(" of seed {s:#x}"))
                .unwrap_or_default(),
            self.message
        )?;
        if let Some(op) = &self.op {
            writeln!(f, "  call: {op:?}")?;
        }
        writeln!(f, "  live allocations (base, bytes): {:x?}", self.live)?;
        writeln!(f, "  previous calls, oldest first:")?;
        for h in &self.history {
            writeln!(f, "    {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

// ---------------------------------------------------------------------------------------
// The model of device memory

const UNKNOWN: u8 = 0;
const KNOWN: u8 = 1;
const APPROX: u8 = 2;

/// One allocation's modelled contents.
#[derive(Debug, Clone)]
struct Mem {
    bytes: Vec<u8>,
    state: Vec<u8>,
    /// Approximate f32 values by byte offset: (the oracle's value, the tolerance).
    approx: BTreeMap<usize, (f32, Tol)>,
}

/// A byte range copied out of a [`Mem`], approximate values fully inside it included.
struct Segment {
    bytes: Vec<u8>,
    state: Vec<u8>,
    approx: Vec<(usize, f32, Tol)>,
}

/// What the model predicts for one f32 output element.
#[derive(Clone, Copy)]
enum Value {
    Exact(f32),
    Approx(f32, Tol),
    Unknown,
}

impl Mem {
    fn new(size: usize) -> Self {
        Self {
            bytes: vec![0; size],
            state: vec![UNKNOWN; size],
            approx: BTreeMap::new(),
        }
    }

    /// Forgets approximate values that share a byte with `[s, e)`; their bytes outside
    /// the range become unknown.
    fn clobber(&mut self, s: usize, e: usize) {
        let keys: Vec<usize> = self
            .approx
            .range(s.saturating_sub(3)..e)
            .map(|(&k, _)| k)
            .collect();
        for k in keys {
            self.approx.remove(&k);
            for i in k..k + 4 {
                if i < s || i >= e {
                    self.state[i] = UNKNOWN;
                }
            }
        }
    }

    fn write_known(&mut self, off: usize, data: &[u8]) {
        let end = off + data.len();
        self.clobber(off, end);
        self.bytes[off..end].copy_from_slice(data);
        self.state[off..end].fill(KNOWN);
    }

    fn write_value(&mut self, off: usize, v: Value) {
        self.clobber(off, off + 4);
        // Rust leaves the sign and payload of a computed NaN unspecified (Miri picks them
        // at random): any NaN is the exact result.
        let v = match v {
            Value::Exact(x) if x.is_nan() => Value::Approx(x, Tol::EXACT),
            v => v,
        };
        match v {
            Value::Exact(x) => {
                self.bytes[off..off + 4].copy_from_slice(&x.to_le_bytes());
                self.state[off..off + 4].fill(KNOWN);
            }
            Value::Approx(x, tol) => {
                self.bytes[off..off + 4].copy_from_slice(&x.to_le_bytes());
                self.state[off..off + 4].fill(APPROX);
                self.approx.insert(off, (x, tol));
            }
            Value::Unknown => self.state[off..off + 4].fill(UNKNOWN),
        }
    }

    /// The f32 at `off` when all its bytes are known.
    fn known_f32(&self, off: usize) -> Option<f32> {
        self.state[off..off + 4]
            .iter()
            .all(|&s| s == KNOWN)
            .then(|| f32::from_le_bytes(self.bytes[off..off + 4].try_into().expect("4 bytes")))
    }

    fn segment(&self, off: usize, len: usize) -> Segment {
        let mut state = self.state[off..off + len].to_vec();
        let mut approx = Vec::new();
        for (&k, &(v, tol)) in self.approx.range(off.saturating_sub(3)..off + len) {
            if k >= off && k + 4 <= off + len {
                approx.push((k - off, v, tol));
            } else {
                // Part of an approximate value: its bytes alone mean nothing.
                for i in k.max(off)..(k + 4).min(off + len) {
                    state[i - off] = UNKNOWN;
                }
            }
        }
        Segment {
            bytes: self.bytes[off..off + len].to_vec(),
            state,
            approx,
        }
    }

    fn paste(&mut self, off: usize, seg: &Segment) {
        let end = off + seg.bytes.len();
        self.clobber(off, end);
        self.bytes[off..end].copy_from_slice(&seg.bytes);
        self.state[off..end].copy_from_slice(&seg.state);
        for &(k, v, tol) in &seg.approx {
            self.approx.insert(off + k, (v, tol));
        }
    }
}

#[derive(Debug, Clone)]
struct Live {
    base: u64,
    size: usize,
    mem: Mem,
}

/// An operand located in the model: (index into `live`, byte offset).
type Loc = (usize, usize);

/// FNV-1a, for digests that are stable across runs and platforms.
#[derive(Debug, Clone, Copy)]
struct Digest(u64);

impl Digest {
    const START: Digest = Digest(0xcbf2_9ce4_8422_2325);

    fn bytes(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

/// Is `x` an input whose result every device computes within the conformance
/// tolerances? Zeros, NaN and infinities are tested by the suite; finite values must be
/// normal (subnormals may be flushed) and moderate.
fn tame(x: f32) -> bool {
    !x.is_finite() || x == 0.0 || (x.is_normal() && (2f32.powi(-60)..=64.0).contains(&x.abs()))
}

fn tame_finite(x: f32) -> bool {
    x.is_finite() && tame(x)
}

/// The range `[p, p + bytes)` as u128 (never overflows).
fn overlaps(p: u64, q: u64, bytes_p: u128, bytes_q: u128) -> bool {
    let (p, q) = (u128::from(p), u128::from(q));
    p < q + bytes_q && q < p + bytes_p
}

fn trans(t: BackendTranspose) -> bool {
    !matches!(t, BackendTranspose::NoTrans)
}

/// Runs `call`, turning a panic into an error message (see [`crate::catch_panic`]).
fn guarded<R>(call: impl FnOnce() -> R) -> Result<R, String> {
    crate::catch_panic(call).map_err(|msg| format!("the backend panicked: {msg}"))
}

/// What the model expects of a call.
enum Expect {
    /// Success.
    Ok,
    /// `InvalidArgument`, for this reason.
    Invalid(String),
    /// `OutOfMemory`.
    OutOfMemory,
}

/// Drives one backend through calls and checks it against the model.
pub struct Machine<'b> {
    backend: &'b dyn ComputeBackend,
    opts: Options,
    seed: Option<u64>,
    live: Vec<Live>,
    by_base: BTreeMap<u64, usize>,
    /// Recently freed addresses (stale pointers to use).
    freed: VecDeque<u64>,
    /// Every address range ever handed out: start -> one past the end.
    handed_out: BTreeMap<u64, u64>,
    live_bytes: u64,
    history: VecDeque<String>,
    stats: Stats,
    digest: Digest,
    /// Whether the current call was valid (set by `judge`).
    last_valid: bool,
}

const HISTORY: usize = 16;

impl<'b> Machine<'b> {
    /// A machine with an empty model; `seed` only labels failures.
    pub fn new(backend: &'b dyn ComputeBackend, opts: Options, seed: Option<u64>) -> Self {
        Self {
            backend,
            opts,
            seed,
            live: Vec::new(),
            by_base: BTreeMap::new(),
            freed: VecDeque::new(),
            handed_out: BTreeMap::new(),
            live_bytes: 0,
            history: VecDeque::new(),
            stats: Stats::default(),
            digest: Digest::START,
            last_valid: true,
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn failure(&self, op: Option<&Op>, message: String) -> Box<Failure> {
        Box::new(Failure {
            backend: self.backend.name().to_string(),
            seed: self.seed,
            step: self.stats.steps,
            op: op.cloned(),
            message,
            live: self.live.iter().map(|l| (l.base, l.size)).collect(),
            history: self.history.iter().cloned().collect(),
        })
    }

    // -----------------------------------------------------------------------------------
    // Generation

    /// A pointer for an operand: mostly into a live allocation (at its start, an aligned
    /// or unaligned interior offset, its end, or past it), sometimes stale or made up.
    /// Returns it with the bytes left to the end of its allocation (0 when it is not in one).
    fn place(&self, src: &mut Source<'_>) -> (u64, u64) {
        let c = src.u8();
        if c < 210 && !self.live.is_empty() {
            let l = &self.live[src.below(self.live.len() as u64) as usize];
            let size = l.size as u64;
            let off = match src.u8() {
                0..120 => 0,
                120..200 => 4 * src.below(size / 4 + 1),
                200..225 => src.below(size + 1),
                225..240 => size,
                _ => size + 1 + src.below(64),
            };
            return (l.base + off, size.saturating_sub(off));
        }
        if c < 232 && !self.freed.is_empty() {
            let p = self.freed[src.below(self.freed.len() as u64) as usize];
            return (p.wrapping_add(4 * src.below(8)), 0);
        }
        let mut raw = vec![0, 4, 0xdead_0000, u64::MAX - 3, !255u64];
        if !self.opts.shared {
            raw.push(src.u64());
            if let Some(l) = self.live.last() {
                // In the gap after an allocation: unmapped, but close.
                raw.push(l.base + l.size as u64 + 1);
                raw.push((l.base + l.size as u64).next_multiple_of(256) + 256);
            }
        }
        (src.pick(&raw), 0)
    }

    /// A count of `unit`-byte elements for operands with `room` bytes left: mostly one
    /// that fits, sometimes 0, a small guess, just too many, or absurdly many.
    fn count(&self, src: &mut Source<'_>, room: u64, unit: u64) -> usize {
        let fit = room / unit;
        match src.u8() {
            0..190 if fit > 0 => (1 + src.below(fit)) as usize,
            0..190 => 1 + src.below(16) as usize,
            190..200 => fit as usize,
            200..210 => 0,
            210..235 => 1 + src.below(64) as usize,
            235..250 => (fit + 1) as usize,
            _ => src.pick(&[usize::MAX, usize::MAX / 4 + 1, 1 << 40]),
        }
    }

    /// A byte count for a host copy: like [`count`](Self::count), but a host buffer of
    /// that size must exist, so "absurd" is one byte past the end.
    fn host_len(&self, src: &mut Source<'_>, room: u64) -> usize {
        match self.count(src, room, 1) {
            n if n > 1 << 24 => room as usize + 1,
            n => n,
        }
    }

    fn alloc_size(&self, src: &mut Source<'_>) -> usize {
        match src.u8() {
            0..90 => src.below(257) as usize,
            90..180 => 257 + src.below(4096) as usize,
            180..225 => 4 * src.below(16_384) as usize,
            225..232 if self.opts.big_allocs => (1 << 20) + src.below(1 << 20) as usize,
            225..240 => 0,
            _ => src.pick(&[
                HUGE_ALLOC as usize,
                1 << 50,
                usize::MAX,
                usize::MAX - 255,
                1 << 62,
            ]),
        }
    }

    /// The next call, drawn from `src` and the model's state.
    pub fn generate(&self, src: &mut Source<'_>) -> Op {
        let mut kind = src.u8();
        if self.live.is_empty() && kind < 128 {
            kind = 0; // mostly allocate first
        }
        match kind {
            0..28 => {
                let bytes = self.alloc_size(src);
                let full = self.live.len() >= self.opts.max_live
                    || ((bytes as u64) < HUGE_ALLOC
                        && self.live_bytes + bytes as u64 > self.opts.max_bytes);
                if full && !self.live.is_empty() {
                    let l = &self.live[src.below(self.live.len() as u64) as usize];
                    Op::Free { ptr: l.base }
                } else {
                    Op::Alloc { bytes }
                }
            }
            28..46 => {
                let ptr = match src.u8() {
                    0..170 if !self.live.is_empty() => {
                        self.live[src.below(self.live.len() as u64) as usize].base
                    }
                    0..200 if !self.live.is_empty() => {
                        let l = &self.live[src.below(self.live.len() as u64) as usize];
                        l.base + 1 + src.below(l.size as u64 + 8)
                    }
                    _ => self.place(src).0,
                };
                Op::Free { ptr }
            }
            46..86 => {
                let (dst, room) = self.place(src);
                Op::CopyHtod {
                    dst,
                    len: self.host_len(src, room),
                    fill: Fill {
                        seed: src.u64(),
                        raw: src.below(5) == 0,
                    },
                }
            }
            86..114 => {
                let (src_ptr, room) = self.place(src);
                Op::CopyDtoh {
                    src: src_ptr,
                    len: self.host_len(src, room),
                }
            }
            114..134 => {
                let (s, room_s) = self.place(src);
                let (d, room_d) = match src.u8() {
                    0..12 => (s, room_s),
                    12..24 => (s.wrapping_add(1 + src.below(8)), room_s.saturating_sub(8)),
                    _ => self.place(src),
                };
                Op::CopyDtod {
                    dst: d,
                    src: s,
                    bytes: self.count(src, room_s.min(room_d), 1),
                }
            }
            134..166 => {
                let op = src.pick(UnaryOp::ALL);
                let (input, room_i) = self.place(src);
                let (output, room_o) = match src.u8() {
                    0..80 => (input, room_i),
                    80..90 => (input.wrapping_add(4), room_i.saturating_sub(4)),
                    _ => self.place(src),
                };
                Op::Unary {
                    op,
                    input,
                    output,
                    n: self.count(src, room_i.min(room_o), 4),
                }
            }
            166..194 => {
                let op = src.pick(BinaryOp::ALL);
                let (a, room_a) = self.place(src);
                let (b, room_b) = if src.below(6) == 0 {
                    (a, room_a)
                } else {
                    self.place(src)
                };
                let (output, room_o) = match src.u8() {
                    0..50 => (a, room_a),
                    50..75 => (b, room_b),
                    75..85 => (b.wrapping_add(4), room_b.saturating_sub(4)),
                    _ => self.place(src),
                };
                Op::Binary {
                    op,
                    a,
                    b,
                    output,
                    n: self.count(src, room_a.min(room_b).min(room_o), 4),
                }
            }
            194..210 => {
                let op = src.pick(ReduceOp::ALL);
                let rank = match src.u8() {
                    0..8 => 0,
                    _ => 1 + src.below(3) as usize,
                };
                let huge = src.below(32) == 0;
                let shape: Vec<usize> = (0..rank)
                    .map(|_| {
                        if huge {
                            1 + src.below(1 << 40) as usize
                        } else {
                            src.below(9) as usize
                        }
                    })
                    .collect();
                let axis = if src.below(12) == 0 {
                    rank + src.below(2) as usize
                } else {
                    src.below(rank as u64) as usize
                };
                let (input, _) = self.place(src);
                let (output, _) = self.place(src);
                Op::Reduce {
                    op,
                    input,
                    output,
                    shape,
                    axis,
                }
            }
            210..228 => {
                let t = [
                    BackendTranspose::NoTrans,
                    BackendTranspose::Trans,
                    BackendTranspose::ConjTrans,
                ];
                let (trans_a, trans_b) = (src.pick(&t), src.pick(&t));
                let (m, n, k) = (
                    src.below(13) as usize,
                    src.below(13) as usize,
                    src.below(13) as usize,
                );
                let mut ld = |rows: usize| match src.u8() {
                    0..200 => rows.max(1) + src.below(3) as usize,
                    200..225 => rows.max(1) - 1,
                    _ => rows.max(1) + src.below(40) as usize,
                };
                let lda = ld(if trans(trans_a) { k } else { m });
                let ldb = ld(if trans(trans_b) { n } else { k });
                let ldc = ld(m);
                let alpha = src.pick(&[1.0, 1.0, 0.0, -0.5, 2.0]);
                let beta = src.pick(&[0.0, 0.0, 1.0, 0.5, -1.0]);
                let (a, _) = self.place(src);
                let (b, _) = if src.below(8) == 0 {
                    (a, 0)
                } else {
                    self.place(src)
                };
                let (c, _) = if src.below(16) == 0 {
                    (a, 0)
                } else {
                    self.place(src)
                };
                Op::Gemm {
                    trans_a,
                    trans_b,
                    m,
                    n,
                    k,
                    alpha,
                    a,
                    lda,
                    b,
                    ldb,
                    beta,
                    c,
                    ldc,
                }
            }
            228..240 => Op::Synchronize,
            240..248 => Op::MemoryInfo,
            _ => Op::CheckAll,
        }
    }

    // -----------------------------------------------------------------------------------
    // The model's rules

    /// Locates `[ptr, ptr + bytes)` (`bytes > 0`) in one live allocation, `align`-aligned.
    fn locate(&self, name: &str, ptr: u64, bytes: u128, align: u64) -> Result<Loc, String> {
        if !ptr.is_multiple_of(align) {
            return Err(format!("{name} {ptr:#x} is not {align}-byte aligned"));
        }
        if let Some((&base, &i)) = self.by_base.range(..=ptr).next_back() {
            let off = ptr - base;
            if u128::from(off) + bytes <= self.live[i].size as u128 {
                return Ok((i, off as usize));
            }
        }
        Err(format!(
            "{name} [{ptr:#x}, +{bytes}) is not inside one live allocation"
        ))
    }

    fn read_f32s(&self, (i, off): Loc, n: usize) -> Vec<Option<f32>> {
        let mem = &self.live[i].mem;
        (0..n).map(|e| mem.known_f32(off + 4 * e)).collect()
    }

    // -----------------------------------------------------------------------------------
    // Running calls

    /// Compares a call's outcome with what the model expects. `Ok(true)`: a valid call
    /// succeeded, apply its effect.
    fn judge<T>(
        &mut self,
        op: &Op,
        got: &Result<T, BackendError>,
        want: &Expect,
    ) -> Result<bool, String> {
        let outcome = match got {
            Ok(_) => 0,
            Err(BackendError::InvalidArgument(_)) => 1,
            Err(BackendError::OutOfMemory) => 2,
            Err(_) => 3,
        };
        self.digest.u64(outcome);
        match (want, got) {
            (Expect::Ok, Ok(_)) => {
                self.stats.valid += 1;
                Ok(true)
            }
            (Expect::Ok, Err(e)) => Err(format!("a valid call failed: {e}")),
            (Expect::Invalid(_), Err(BackendError::InvalidArgument(m))) => {
                if !m.contains(op.name()) {
                    return Err(format!(
                        "InvalidArgument message {m:?} does not name the op {}",
                        op.name()
                    ));
                }
                self.stats.invalid += 1;
                self.last_valid = false;
                Ok(false)
            }
            (Expect::Invalid(why), Ok(_)) => Err(format!(
                "succeeded, but the call is invalid ({why}): InvalidArgument required"
            )),
            (Expect::Invalid(why), Err(e)) => Err(format!(
                "wrong error for an invalid call ({why}): {e}; InvalidArgument required"
            )),
            (Expect::OutOfMemory, Err(BackendError::OutOfMemory)) => {
                self.stats.out_of_memory += 1;
                self.last_valid = false;
                Ok(false)
            }
            (Expect::OutOfMemory, Ok(_)) => {
                Err("an absurd allocation succeeded: OutOfMemory required".into())
            }
            (Expect::OutOfMemory, Err(e)) => Err(format!(
                "an absurd allocation gave {e}: OutOfMemory required"
            )),
        }
    }

    /// Runs one call on the backend and the model.
    pub fn step(&mut self, op: &Op) -> Result<(), Box<Failure>> {
        self.last_valid = true;
        if let Err(m) = self.run_op(op) {
            return Err(self.failure(Some(op), m));
        }
        let counts = self.stats.per_op.entry(op.name()).or_default();
        if self.last_valid {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(format!("{op:?}"));
        if self.opts.transcript {
            self.stats.transcript.push(self.digest.0);
        }
        self.stats.steps += 1;
        self.stats.peak_live = self.stats.peak_live.max(self.live.len());
        Ok(())
    }

    fn run_op(&mut self, op: &Op) -> Result<(), String> {
        let b = self.backend;
        match op {
            &Op::Alloc { bytes } => {
                let want = if bytes as u64 >= HUGE_ALLOC {
                    Expect::OutOfMemory
                } else {
                    Expect::Ok
                };
                let got = guarded(|| b.alloc(bytes))?;
                if self.judge(op, &got, &want)? {
                    self.add_alloc(got.expect("judged Ok"), bytes)?;
                }
            }
            &Op::Free { ptr } => {
                let want = match self.by_base.get(&ptr) {
                    Some(_) => Expect::Ok,
                    None => Expect::Invalid(format!("{ptr:#x} is not a live allocation")),
                };
                let got = guarded(|| b.free(ptr))?;
                if self.judge(op, &got, &want)? {
                    self.remove_alloc(ptr);
                    self.stats.frees += 1;
                }
            }
            &Op::CopyHtod { dst, len, fill } => {
                let loc = (len > 0)
                    .then(|| self.locate("dst", dst, len as u128, 1))
                    .transpose();
                let data = fill.bytes(len);
                let got = guarded(|| b.copy_htod(dst, &data))?;
                let want = Self::want_of(&loc);
                if self.judge(op, &got, &want)?
                    && let Ok(Some((i, off))) = loc
                {
                    self.live[i].mem.write_known(off, &data);
                }
            }
            &Op::CopyDtoh { src, len } => {
                let loc = (len > 0)
                    .then(|| self.locate("src", src, len as u128, 1))
                    .transpose();
                let mut out = vec![0u8; len];
                let got = guarded(|| b.copy_dtoh(&mut out, src))?;
                let want = Self::want_of(&loc);
                if self.judge(op, &got, &want)?
                    && let Ok(Some(l)) = loc
                {
                    self.verify(l, &out, "copy_dtoh")?;
                }
            }
            &Op::CopyDtod { dst, src, bytes } => {
                let want = self.want_dtod(dst, src, bytes);
                let got = guarded(|| b.copy_dtod(dst, src, bytes))?;
                if self.judge(op, &got, &want.1)?
                    && let Some((s, d)) = want.0
                {
                    let seg = self.live[s.0].mem.segment(s.1, bytes);
                    self.live[d.0].mem.paste(d.1, &seg);
                }
            }
            &Op::Unary {
                op: f,
                input,
                output,
                n,
            } => {
                let plan = self.want_elementwise(&[("input", input)], output, n);
                let got = guarded(|| b.unary(f, input, output, n))?;
                if self.judge(op, &got, &plan.1)?
                    && let Some(locs) = plan.0
                {
                    let x = self.read_f32s(locs[0], n);
                    let (oi, ooff) = locs[1];
                    let exact = self.opts.exact;
                    for (e, x) in x.into_iter().enumerate() {
                        let v = match x {
                            Some(x) if exact => Value::Exact(reference::unary(f, x)),
                            Some(x) if tame(x) => {
                                Value::Approx(reference::unary(f, x), unary_tolerance(f))
                            }
                            _ => Value::Unknown,
                        };
                        self.live[oi].mem.write_value(ooff + 4 * e, v);
                    }
                }
            }
            &Op::Binary {
                op: f,
                a,
                b: bp,
                output,
                n,
            } => {
                let plan = self.want_elementwise(&[("a", a), ("b", bp)], output, n);
                let got = guarded(|| b.binary(f, a, bp, output, n))?;
                if self.judge(op, &got, &plan.1)?
                    && let Some(locs) = plan.0
                {
                    let xa = self.read_f32s(locs[0], n);
                    let xb = self.read_f32s(locs[1], n);
                    let (oi, ooff) = locs[2];
                    let exact = self.opts.exact;
                    let pow_ok = |x: f32, y: f32| {
                        f != BinaryOp::Pow
                            || (!x.is_finite() || x.abs() <= 4.0)
                                && (!y.is_finite() || y.abs() <= 6.0)
                    };
                    for (e, (x, y)) in xa.into_iter().zip(xb).enumerate() {
                        let v = match (x, y) {
                            (Some(x), Some(y)) if exact => Value::Exact(reference::binary(f, x, y)),
                            (Some(x), Some(y)) if tame(x) && tame(y) && pow_ok(x, y) => {
                                Value::Approx(reference::binary(f, x, y), binary_tolerance(f))
                            }
                            _ => Value::Unknown,
                        };
                        self.live[oi].mem.write_value(ooff + 4 * e, v);
                    }
                }
            }
            Op::Reduce {
                op: f,
                input,
                output,
                shape,
                axis,
            } => {
                let (plan, want) = self.want_reduce(*input, *output, shape, *axis);
                let got = guarded(|| b.reduce(*f, *input, *output, shape, *axis))?;
                if self.judge(op, &got, &want)?
                    && let Some(p) = plan
                {
                    self.apply_reduce(*f, &p);
                }
            }
            &Op::Gemm {
                trans_a,
                trans_b,
                m,
                n,
                k,
                alpha,
                a,
                lda,
                b: bp,
                ldb,
                beta,
                c,
                ldc,
            } => {
                let g = GemmCall {
                    ta: trans(trans_a),
                    tb: trans(trans_b),
                    m,
                    n,
                    k,
                    alpha,
                    lda,
                    ldb,
                    beta,
                    ldc,
                };
                let (plan, want) = self.want_gemm(&g, a, bp, c);
                let got = guarded(|| {
                    b.gemm(
                        trans_a, trans_b, m, n, k, alpha, a, lda, bp, ldb, beta, c, ldc,
                    )
                })?;
                if self.judge(op, &got, &want)?
                    && let Some(p) = plan
                {
                    self.apply_gemm(&g, p);
                }
            }
            Op::Synchronize => {
                let got = guarded(|| b.synchronize())?;
                self.judge(op, &got, &Expect::Ok)?;
            }
            Op::MemoryInfo => {
                let got = guarded(|| b.memory_info())?;
                self.check_memory_info(got)?;
            }
            Op::CheckAll => self.check_all()?,
        }
        Ok(())
    }

    fn want_of(loc: &Result<Option<Loc>, String>) -> Expect {
        match loc {
            Ok(_) => Expect::Ok,
            Err(why) => Expect::Invalid(why.clone()),
        }
    }

    fn want_dtod(&self, dst: u64, src: u64, bytes: usize) -> (Option<(Loc, Loc)>, Expect) {
        if bytes == 0 {
            return (None, Expect::Ok);
        }
        let len = bytes as u128;
        if overlaps(dst, src, len, len) && dst != src {
            return (None, Expect::Invalid("src and dst overlap".into()));
        }
        match (
            self.locate("src", src, len, 1),
            self.locate("dst", dst, len, 1),
        ) {
            (Ok(s), Ok(d)) => ((dst != src).then_some((s, d)), Expect::Ok),
            (Err(why), _) | (_, Err(why)) => (None, Expect::Invalid(why)),
        }
    }

    /// unary and binary: every input and the output `4 * n` bytes, f32-aligned, in live
    /// allocations; the output equal to an input's range or disjoint from it.
    fn want_elementwise(
        &self,
        inputs: &[(&str, u64)],
        output: u64,
        n: usize,
    ) -> (Option<Vec<Loc>>, Expect) {
        if n == 0 {
            return (None, Expect::Ok);
        }
        let bytes = 4 * n as u128;
        let mut locs = Vec::new();
        for &(name, p) in inputs.iter().chain(&[("output", output)]) {
            match self.locate(name, p, bytes, 4) {
                Ok(l) => locs.push(l),
                Err(why) => return (None, Expect::Invalid(why)),
            }
        }
        for &(name, p) in inputs {
            if p != output && overlaps(p, output, bytes, bytes) {
                return (
                    None,
                    Expect::Invalid(format!("output partially overlaps {name}")),
                );
            }
        }
        (Some(locs), Expect::Ok)
    }

    fn want_reduce(
        &self,
        input: u64,
        output: u64,
        shape: &[usize],
        axis: usize,
    ) -> (Option<ReducePlan>, Expect) {
        let invalid = |why: String| (None, Expect::Invalid(why));
        if shape.is_empty() {
            return invalid("empty shape".into());
        }
        if axis >= shape.len() {
            return invalid(format!("axis {axis} out of range for {shape:?}"));
        }
        let prod = |d: &[usize]| d.iter().fold(1u128, |a, &x| a.saturating_mul(x as u128));
        let (outer, inner, total) = (prod(&shape[..axis]), prod(&shape[axis + 1..]), prod(shape));
        if total > u128::from(u64::MAX) {
            return invalid("size overflow".into());
        }
        let out = outer * inner;
        if out == 0 {
            return (None, Expect::Ok);
        }
        let o = match self.locate("output", output, 4 * out, 4) {
            Ok(l) => l,
            Err(why) => return invalid(why),
        };
        let i = if total > 0 {
            match self.locate("input", input, 4 * total, 4) {
                Ok(l) if !overlaps(input, output, 4 * total, 4 * out) => Some(l),
                Ok(_) => return invalid("output overlaps input".into()),
                Err(why) => return invalid(why),
            }
        } else {
            None
        };
        let plan = ReducePlan {
            input: i,
            output: o,
            outer: outer as usize,
            len: shape[axis],
            inner: inner as usize,
        };
        (Some(plan), Expect::Ok)
    }

    fn apply_reduce(&mut self, f: ReduceOp, p: &ReducePlan) {
        let x = match p.input {
            Some(l) => self.read_f32s(l, p.outer * p.len * p.inner),
            None => Vec::new(),
        };
        let exact = self.opts.exact;
        for o in 0..p.outer {
            for ii in 0..p.inner {
                let vals: Option<Vec<f32>> = (0..p.len)
                    .map(|l| x[(o * p.len + l) * p.inner + ii])
                    .collect();
                let v = match vals {
                    Some(vals)
                        if exact
                            || vals.iter().all(|&v| {
                                tame(v)
                                    && (f != ReduceOp::Prod || !(v.abs() > 2.0 && v.is_finite()))
                            }) =>
                    {
                        let mut out = [0.0f32];
                        reference::reduce(f, &vals, &mut out, 1, p.len, 1);
                        if exact {
                            Value::Exact(out[0])
                        } else {
                            let abs: f64 = vals.iter().map(|v| f64::from(v.abs())).sum();
                            let len = p.len as f64;
                            let tol = match f {
                                ReduceOp::Sum => Tol::dot(p.len, abs),
                                ReduceOp::Mean => Tol {
                                    atol: (len + 4.0) * EPS * abs / len.max(1.0) + FTZ,
                                    rtol: EPS,
                                },
                                ReduceOp::Prod => Tol::rel((len + 2.0) * EPS),
                                ReduceOp::Max | ReduceOp::Min => Tol::EXACT,
                            };
                            Value::Approx(out[0], tol)
                        }
                    }
                    _ => Value::Unknown,
                };
                let (oi, ooff) = p.output;
                self.live[oi]
                    .mem
                    .write_value(ooff + 4 * (o * p.inner + ii), v);
            }
        }
    }

    fn want_gemm(&self, g: &GemmCall, a: u64, b: u64, c: u64) -> (Option<GemmPlan>, Expect) {
        let invalid = |why: String| (None, Expect::Invalid(why));
        let (rows_a, cols_a) = if g.ta { (g.k, g.m) } else { (g.m, g.k) };
        let (rows_b, cols_b) = if g.tb { (g.n, g.k) } else { (g.k, g.n) };
        if g.lda < rows_a.max(1) || g.ldb < rows_b.max(1) || g.ldc < g.m.max(1) {
            return invalid("a leading dimension is too small".into());
        }
        if g.m == 0 || g.n == 0 {
            return (None, Expect::Ok);
        }
        let extent = |rows: usize, cols: usize, ld: usize| {
            4 * (ld as u128 * (cols as u128 - 1) + rows as u128)
        };
        let ext_c = extent(g.m, g.n, g.ldc);
        let lc = match self.locate("C", c, ext_c, 4) {
            Ok(l) => l,
            Err(why) => return invalid(why),
        };
        let mut ab = None;
        if g.alpha != 0.0 && g.k != 0 {
            let (ext_a, ext_b) = (extent(rows_a, cols_a, g.lda), extent(rows_b, cols_b, g.ldb));
            let la = match self.locate("A", a, ext_a, 4) {
                Ok(l) => l,
                Err(why) => return invalid(why),
            };
            let lb = match self.locate("B", b, ext_b, 4) {
                Ok(l) => l,
                Err(why) => return invalid(why),
            };
            if overlaps(c, a, ext_c, ext_a) || overlaps(c, b, ext_c, ext_b) {
                return invalid("C overlaps A or B".into());
            }
            ab = Some((la, lb, (ext_a / 4) as usize, (ext_b / 4) as usize));
        }
        let plan = GemmPlan {
            ab,
            c: lc,
            ext_c: (ext_c / 4) as usize,
        };
        (Some(plan), Expect::Ok)
    }

    fn apply_gemm(&mut self, g: &GemmCall, p: GemmPlan) {
        let (a, b) = match p.ab {
            Some((la, lb, ea, eb)) => (self.read_f32s(la, ea), self.read_f32s(lb, eb)),
            None => (Vec::new(), Vec::new()),
        };
        let c = self.read_f32s(p.c, p.ext_c);
        let reads_ab = p.ab.is_some();
        let exact = self.opts.exact;
        let ok = |v: Option<f32>| v.filter(|&x| exact || tame_finite(x));
        let mut out = Vec::with_capacity(g.m * g.n);
        for j in 0..g.n {
            for i in 0..g.m {
                // Row i of op(A), column j of op(B) and, when read, C(i, j).
                let row: Option<Vec<f32>> = if reads_ab {
                    (0..g.k)
                        .map(|l| {
                            ok(if g.ta {
                                a[l + i * g.lda]
                            } else {
                                a[i + l * g.lda]
                            })
                        })
                        .collect()
                } else {
                    Some(Vec::new())
                };
                let col: Option<Vec<f32>> = if reads_ab {
                    (0..g.k)
                        .map(|l| {
                            ok(if g.tb {
                                b[j + l * g.ldb]
                            } else {
                                b[l + j * g.ldb]
                            })
                        })
                        .collect()
                } else {
                    Some(Vec::new())
                };
                let old = if g.beta != 0.0 {
                    ok(c[i + j * g.ldc])
                } else {
                    Some(0.0)
                };
                let v = match (row, col, old) {
                    (Some(row), Some(col), Some(old)) => {
                        // The oracle's own gemm on the 1 x 1 problem: same order of terms.
                        let one = |alpha: f64, beta: f64, row: &[f32], col: &[f32], old: f32| {
                            let mut cc = [old];
                            reference::gemm(
                                false,
                                false,
                                1,
                                1,
                                g.k,
                                alpha,
                                row,
                                1,
                                col,
                                g.k.max(1),
                                beta,
                                &mut cc,
                                1,
                            );
                            cc[0]
                        };
                        let want = one(g.alpha, g.beta, &row, &col, old);
                        if exact {
                            Value::Exact(want)
                        } else {
                            let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
                            let bound = one(
                                g.alpha.abs(),
                                g.beta.abs(),
                                &abs(&row),
                                &abs(&col),
                                old.abs(),
                            );
                            Value::Approx(want, Tol::dot(g.k, f64::from(bound)))
                        }
                    }
                    _ => Value::Unknown,
                };
                out.push((i + j * g.ldc, v));
            }
        }
        let (ci, coff) = p.c;
        for (e, v) in out {
            self.live[ci].mem.write_value(coff + 4 * e, v);
        }
    }

    fn add_alloc(&mut self, ptr: u64, bytes: usize) -> Result<(), String> {
        if ptr == 0 || !ptr.is_multiple_of(256) {
            return Err(format!(
                "alloc returned {ptr:#x}: not a non-zero, 256-byte aligned address"
            ));
        }
        let end = ptr + bytes as u64; // the one-past-the-end pointer belongs to it too
        if let Some((&s, &e)) = self.handed_out.range(..=end).next_back()
            && e >= ptr
        {
            return Err(format!(
                "alloc({bytes}) returned {ptr:#x}, but [{s:#x}, {e:#x}] was handed out before \
                 (addresses must never overlap or be reused)"
            ));
        }
        self.handed_out.insert(ptr, end);
        self.by_base.insert(ptr, self.live.len());
        self.live.push(Live {
            base: ptr,
            size: bytes,
            mem: Mem::new(bytes),
        });
        self.live_bytes += bytes as u64;
        self.stats.allocs += 1;
        if self.opts.init_allocs && bytes > 0 {
            let fill = Fill {
                seed: self.stats.steps ^ 0x1ee7,
                raw: false,
            };
            let data = fill.bytes(bytes);
            guarded(|| self.backend.copy_htod(ptr, &data))?
                .map_err(|e| format!("filling a fresh allocation: {e}"))?;
            let i = self.live.len() - 1;
            self.live[i].mem.write_known(0, &data);
        }
        Ok(())
    }

    fn remove_alloc(&mut self, ptr: u64) {
        let i = self.by_base.remove(&ptr).expect("live");
        let gone = self.live.swap_remove(i);
        if i < self.live.len() {
            self.by_base.insert(self.live[i].base, i);
        }
        self.live_bytes -= gone.size as u64;
        if self.freed.len() == 64 {
            self.freed.pop_front();
        }
        self.freed.push_back(ptr);
    }

    /// Compares bytes read back from `loc` with the model, then adopts them.
    fn verify(&mut self, (i, off): Loc, got: &[u8], what: &str) -> Result<(), String> {
        let base = self.live[i].base;
        let mem = &self.live[i].mem;
        let mut exact = 0u64;
        for (j, &g) in got.iter().enumerate() {
            if mem.state[off + j] == KNOWN {
                exact += 1;
                let want = mem.bytes[off + j];
                self.digest.u64(((off + j) as u64) << 8 | u64::from(g));
                if g != want {
                    let diff = got
                        .iter()
                        .enumerate()
                        .filter(|&(k, &g)| mem.state[off + k] == KNOWN && g != mem.bytes[off + k])
                        .count();
                    return Err(format!(
                        "{what}: byte {} of allocation {base:#x} ({} bytes) is {g:#04x}, the \
                         model says {want:#04x} ({diff} known bytes of {} read differ)",
                        off + j,
                        self.live[i].size,
                        got.len()
                    ));
                }
            }
        }
        let mut approx = 0u64;
        for (&k, &(want, tol)) in mem.approx.range(off..off + got.len()) {
            if k + 4 > off + got.len() {
                continue;
            }
            let g = f32::from_le_bytes(got[k - off..k - off + 4].try_into().expect("4 bytes"));
            approx += 1;
            let bits = if g.is_nan() { 0x7fc0_0000 } else { g.to_bits() };
            self.digest.u64((k as u64) << 32 | u64::from(bits));
            if check_value(g, want, tol).is_err() {
                return Err(format!(
                    "{what}: f32 at byte {k} of allocation {base:#x} is {g:e} ({:#010x}), the \
                     oracle says {want:e} ({:#010x}), tolerance atol {:e} + rtol {:e}",
                    g.to_bits(),
                    want.to_bits(),
                    tol.atol,
                    tol.rtol
                ));
            }
        }
        self.stats.bytes_exact += exact;
        self.stats.values_approx += approx;
        self.live[i].mem.write_known(off, got);
        Ok(())
    }

    fn check_all(&mut self) -> Result<(), String> {
        for i in 0..self.live.len() {
            let (base, size) = (self.live[i].base, self.live[i].size);
            let mut out = vec![0u8; size];
            guarded(|| self.backend.copy_dtoh(&mut out, base))?
                .map_err(|e| format!("reading back allocation {base:#x}: {e}"))?;
            self.verify((i, 0), &out, "read-back of every allocation")?;
        }
        Ok(())
    }

    fn check_memory_info(&mut self, got: Result<MemoryInfo, BackendError>) -> Result<(), String> {
        match got {
            Ok(info) => {
                if self.opts.shared {
                    return Ok(());
                }
                let live = self.live.len() as u64;
                if info.live_allocations != live || info.allocated_bytes != self.live_bytes {
                    return Err(format!(
                        "memory_info says {} live allocations of {} bytes, the model {live} of {}",
                        info.live_allocations, info.allocated_bytes, self.live_bytes
                    ));
                }
                if info.reserved_bytes < info.allocated_bytes {
                    return Err(format!(
                        "memory_info: reserved_bytes {} < allocated_bytes {}",
                        info.reserved_bytes, info.allocated_bytes
                    ));
                }
                Ok(())
            }
            Err(BackendError::Unsupported(_)) => Ok(()),
            Err(e) => Err(format!("memory_info failed: {e}")),
        }
    }

    /// The final checks: every allocation read back, every one freed (successfully), and
    /// `memory_info` (where supported and not shared) back at zero.
    pub fn finish(mut self) -> Result<Stats, Box<Failure>> {
        let finish = |m: &mut Self| -> Result<(), String> {
            m.check_all()?;
            let s = m.backend.synchronize();
            m.judge(&Op::Synchronize, &s, &Expect::Ok)?;
            while let Some(l) = m.live.last() {
                let ptr = l.base;
                guarded(|| m.backend.free(ptr))?
                    .map_err(|e| format!("freeing live allocation {ptr:#x}: {e}"))?;
                m.remove_alloc(ptr);
                m.stats.frees += 1;
            }
            let info = guarded(|| m.backend.memory_info())?;
            m.check_memory_info(info)
        };
        match finish(&mut self) {
            Ok(()) => {
                self.stats.digest = self.digest.0;
                Ok(self.stats)
            }
            Err(msg) => Err(self.failure(None, format!("final checks: {msg}"))),
        }
    }
}

struct ReducePlan {
    input: Option<Loc>,
    output: Loc,
    outer: usize,
    len: usize,
    inner: usize,
}

struct GemmCall {
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f64,
    lda: usize,
    ldb: usize,
    beta: f64,
    ldc: usize,
}

struct GemmPlan {
    /// A and B with their extents in elements, when read.
    ab: Option<(Loc, Loc, usize, usize)>,
    c: Loc,
    ext_c: usize,
}

/// Runs `opts.steps` calls from `src` (fewer if its bytes run out), then the final
/// checks.
pub fn run(
    backend: &dyn ComputeBackend,
    src: &mut Source<'_>,
    opts: &Options,
    seed: Option<u64>,
) -> Result<Stats, Box<Failure>> {
    let mut m = Machine::new(backend, opts.clone(), seed);
    while m.stats.steps < opts.steps && !src.is_exhausted() {
        let op = m.generate(src);
        m.step(&op)?;
    }
    m.finish()
}

/// [`run`] with calls from a seed.
pub fn run_seed(
    backend: &dyn ComputeBackend,
    seed: u64,
    opts: &Options,
) -> Result<Stats, Box<Failure>> {
    run(backend, &mut Source::from_seed(seed), opts, Some(seed))
}

/// [`run`] with calls decoded from bytes (the fuzz target).
pub fn run_bytes(
    backend: &dyn ComputeBackend,
    bytes: &[u8],
    opts: &Options,
) -> Result<Stats, Box<Failure>> {
    run(backend, &mut Source::from_bytes(bytes), opts, None)
}

/// `name` from the environment as a number, else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------
// Threads, watchdog, soak

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
) -> Vec<Result<Stats, Box<Failure>>> {
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
                    Err(Box::new(Failure {
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
        assert_eq!(b.alloc(bytes), Err(BackendError::OutOfMemory), "{bytes}");
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
    if cfg!(miri) || std::env::var(ENV).as_deref() == Ok(test) {
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
