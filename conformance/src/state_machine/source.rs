//! Where calls come from ([`Source`]), how a run generates and judges them
//! ([`Options`]), and what `copy_htod` writes ([`Fill`]).

use crate::data::{NON_FINITE_AND_ZEROS, Rng, to_bytes};

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

    pub(super) fn u8(&mut self) -> u8 {
        if let Some(r) = &mut self.rng {
            return r.next_u64() as u8;
        }
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub(super) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub(super) fn u64(&mut self) -> u64 {
        if let Some(r) = &mut self.rng {
            return r.next_u64();
        }
        (0..8).fold(0u64, |acc, i| acc | u64::from(self.u8()) << (8 * i))
    }

    /// Uniform-ish in `0..n` (0 when `n == 0`); two bytes, so fuzzers can steer it.
    pub(super) fn below(&mut self, n: u64) -> u64 {
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

    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
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
    /// Keep one digest per step in [`Stats::transcript`](super::Stats::transcript).
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
