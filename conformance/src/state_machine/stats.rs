//! What a run counts ([`Stats`]), its digest ([`Digest`]) and how it reports a failure
//! ([`MachineFailure`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::call::Op;

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
    /// Successful frees of allocations.
    pub frees: u64,
    /// Aliases made.
    pub aliases: u64,
    /// Successful frees of aliases.
    pub alias_frees: u64,
    /// Successful `retire` calls (frame and arena resets).
    pub resets: u64,
    /// Aliases retired in all: by `retire`, by `free` of them, of what they were made
    /// from, or of their allocation.
    pub retired: u64,
    /// Valid data calls (copies and ops) that named an operand through a live alias.
    pub via_alias: u64,
    /// Calls refused because operands overlap only in the physical bytes that aliases
    /// name (different addresses, the same memory).
    pub physical_overlaps: u64,
    /// Uses of retired aliases refused with an `InvalidArgument` that says "stale".
    pub stale_refused: u64,
    /// Calls the backend does not have (`"alias"`, `"retire"`): answered `Unsupported`,
    /// after which the run makes no more of them.
    pub unsupported: BTreeSet<&'static str>,
    /// Read-back bytes compared exactly with the model.
    pub bytes_exact: u64,
    /// Read-back f32 values compared within a tolerance.
    pub values_approx: u64,
    /// Most allocations live at once.
    pub peak_live: usize,
    /// Digest of every outcome and every checked byte, in order.
    pub digest: u64,
    /// One digest per step, with [`Options::transcript`](super::Options::transcript).
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
        self.aliases += o.aliases;
        self.alias_frees += o.alias_frees;
        self.resets += o.resets;
        self.retired += o.retired;
        self.stale_refused += o.stale_refused;
        self.via_alias += o.via_alias;
        self.physical_overlaps += o.physical_overlaps;
        self.unsupported.extend(&o.unsupported);
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
             peak {} live; {} aliases made, {} alias frees, {} resets, {} aliases retired, \
             {} stale uses refused, {} valid calls through aliases, {} physical overlaps \
             refused; {} bytes compared exactly, {} values within tolerance",
            self.steps,
            self.valid,
            self.invalid,
            self.out_of_memory,
            self.allocs,
            self.frees,
            self.peak_live,
            self.aliases,
            self.alias_frees,
            self.resets,
            self.retired,
            self.stale_refused,
            self.via_alias,
            self.physical_overlaps,
            self.bytes_exact,
            self.values_approx
        )?;
        if !self.unsupported.is_empty() {
            let names: Vec<&str> = self.unsupported.iter().copied().collect();
            write!(f, "; unsupported by the backend: {}", names.join(", "))?;
        }
        Ok(())
    }
}

/// Where and how a run went wrong, with what a reproduction needs.
#[derive(Debug, Clone)]
pub struct MachineFailure {
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

impl fmt::Display for MachineFailure {
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

impl std::error::Error for MachineFailure {}

/// FNV-1a, for digests that are stable across runs and platforms.
#[derive(Debug, Clone, Copy)]
pub(super) struct Digest(pub(super) u64);

impl Digest {
    pub(super) const START: Digest = Digest(0xcbf2_9ce4_8422_2325);

    fn bytes(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}
