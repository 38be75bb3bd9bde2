//! Random call sequences against a model of device memory: the reliability state machine.
//!
//! A *call language* ([`Op`]: alloc, free, the three copies, `copy_dtoh_many`, unary,
//! binary, reduce, gemm, alias, retire, synchronize, memory_info and a full read-back of
//! every allocation) is generated from a byte stream ([`Source`]): a seeded generator in
//! tests, the fuzzer's input in `fuzz/`. Calls are drawn from what is live — mostly
//! valid, often not: offsets past the end, unaligned operands, freed and made-up
//! pointers, retired aliases, partial overlaps (also of the same bytes under two names),
//! bad leading dimensions, absurd sizes. Each call runs on the backend and on a
//! [`Machine`]'s model of device memory: host bytes per live allocation, each byte
//! *known* (written, or the result of an exact op), *approximate* (an f32 op result with
//! the tolerance the conformance suite allows, from [`tolerance`](crate::tolerance)) or
//! *unknown* (never written, or derived from approximate data). The model decides
//! independently of `backend_api::validate` whether a call is valid, and
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
//! *Aliases* are an indirection over the byte model: the machine records each live
//! alias as (root allocation, offset, length, parent), resolves a pointer into it to the
//! root's bytes for every effect, and applies every overlap rule to the physical bytes.
//! Frames are aliases of aliases, and a frame reset is `retire` of the root alias: it,
//! and `free` of an alias, retire the alias with everything made from it; `free` of an
//! allocation retires every alias into it. A retired alias is stale: any use must be
//! `InvalidArgument`, whose message says "stale" while the backend can still know (the
//! most recent 2^14 retirements, in a run that has the backend to itself).
//! `copy_dtoh_many` is all or nothing: a bad entry fails it with no destination written.
//! Aliases cost no memory, so `memory_info` must not count them. A backend whose `alias`
//! or `retire` is `Unsupported` runs without them ([`Stats::unsupported`]).
//!
//! Everything is deterministic: the same seed (or bytes) gives the same calls, and for
//! the same backend the same [`Stats::digest`] of every checked byte, which the
//! concurrency test uses to compare threaded runs with single-threaded ones.

mod call;
mod machine;
mod memory;
mod rules;
mod source;
mod stats;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;

pub use call::Op;
pub use machine::{Machine, run, run_bytes, run_seed};
pub use rules::HUGE_ALLOC;
pub use source::{Fill, Options, Source};
pub use stats::{MachineFailure, Stats};

pub use crate::test_tools::{
    SoakReport, assert_threads_match, assert_works_when_full, env_u64, in_own_process, rss_kib,
    run_threads, same_results, soak, state_machine_seeds, threaded, watchdog,
};
