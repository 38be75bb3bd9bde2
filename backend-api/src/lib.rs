#![doc = include_str!("../CONTRACT.md")]

mod address;
mod backend;
pub mod env;
mod error;
pub mod executor;
pub mod memory;
mod types;
pub mod validate;

pub use address::{ALLOC_ALIGN, AddressSpace, Allocation, Operand, Resolved, Retired, fmt_range};
pub use backend::{BackendFuture, ComputeBackend, ComputeBackendExt};
pub use error::{BackendError, BackendResult};
pub use types::{BackendTranspose, BinaryOp, DType, MemoryInfo, ReduceOp, RowOp, UnaryOp};
