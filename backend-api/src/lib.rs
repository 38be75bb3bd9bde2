//! The interface every compute backend implements, and the bookkeeping they share.
//!
//! An ML framework codes against [`ComputeBackend`]; the same model then runs on the CPU
//! (`backend-cpu`), on any GPU through wgpu (`backend-webgpu`) or in a browser
//! (`backend-wasm`). This crate holds no backend code.
//!
//! # The contract
//!
//! The full text is `design/CONTRACT.md`; the conformance suite (`conformance` crate)
//! checks every backend against it. In short:
//!
//! **Construction.** A backend type has `new()` (cheap, infallible, uninitialised) and
//! [`ComputeBackend::init`]. Every call before a successful `init` fails with
//! [`BackendError::NotInitialized`]; a second `init` is a no-op.
//!
//! **Pointers.** [`alloc`](ComputeBackend::alloc) returns non-zero, 256-byte-aligned `u64`
//! addresses from an [`AddressSpace`]: allocations never overlap and an address is never
//! handed out again after `free`, so a stale pointer is an error, not silent aliasing.
//! `p + off` for `off <= size` is a valid pointer, as with `cudaMalloc`. Every range an op
//! touches must lie inside one live allocation; f32 operands must be 4-byte aligned
//! (f16/bf16: 2). Operands an op does not touch (zero extent) are not checked.
//!
//! **What is validated, and when.** All argument checks — pointers, ranges, leading
//! dimensions, strides, shapes, overflow, alignment, aliasing — run on the host, in the
//! call, before anything is queued, through the shared functions in [`validate`]. A bad
//! call returns [`BackendError::InvalidArgument`] naming the op, the operand and the
//! range, and leaves device memory untouched. Only failures of work already queued
//! (device errors, device loss) surface later, at the next sync point.
//!
//! **Ordering.** A backend behaves as one in-order stream: every call sees the effects
//! of every earlier call, whatever the backend batches. `copy_htod` returns once the
//! source may be reused; `copy_dtoh` returns with the data; `synchronize` waits for all
//! queued work and reports its errors. Calls may come from several threads; each is
//! atomic with respect to the stream.
//!
//! **Numerics.** f32 data, column-major BLAS gemm, NCHW cross-correlation, bottom-right
//! causal attention, IEEE NaN/inf propagation. Each method's documentation gives the
//! details; the conformance crate holds the accuracy each op is held to.
//!
//! **Aliasing.** Outputs never alias inputs, except that unary and binary ops may run in
//! place (output exactly equal to an input's range) and identical `copy_dtod`/`cast`
//! ranges are no-ops. Any other overlap is `InvalidArgument` — for gemm, conv2d,
//! attention and reduce this is stricter than BLAS's "undefined", because a GPU kernel
//! that reads what it writes gives results that depend on scheduling.
//!
//! # Row-major callers
//!
//! gemm is column-major. A row-major `m x n` matrix is the column-major `n x m` matrix of
//! its transpose, so a row-major `C = A * B` is the column-major `C^T = B^T * A^T`:
//!
//! ```
//! # use backend_api::*;
//! fn row_major_matmul(b: &dyn ComputeBackend, m: usize, n: usize, k: usize,
//!                     a: u64, bm: u64, c: u64) -> BackendResult<()> {
//!     use BackendTranspose::NoTrans;
//!     b.gemm(NoTrans, NoTrans, n, m, k, 1.0, bm, n, a, k, 0.0, c, n)
//! }
//! ```

mod address;
mod backend;
pub mod env;
mod error;
pub mod executor;
mod types;
pub mod validate;

pub use address::{ALLOC_ALIGN, AddressSpace, Allocation, Operand, Resolved, fmt_range};
pub use backend::{BackendFuture, ComputeBackend, ComputeBackendExt};
pub use error::{BackendError, BackendResult};
pub use types::{BackendTranspose, BinaryOp, DType, MemoryInfo, ReduceOp, UnaryOp};
