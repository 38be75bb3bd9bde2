#![doc = include_str!("../CONTRACT.md")]

mod address;
mod attention;
mod backend;
mod buffer;
mod conv;
pub mod env;
mod error;
pub mod executor;
mod host_view;
pub mod memory;
pub mod row_major;
pub mod through_f32;
mod types;
pub mod validate;

pub use address::{ALLOC_ALIGN, AddressSpace, Allocation, Operand, Resolved, Retired, fmt_range};
pub use attention::{AttentionArgs, AttentionMask, HeadTensor};
pub use backend::{BackendFuture, ComputeBackend, ComputeBackendExt};
pub use buffer::Buffer;
pub use conv::Conv2dArgs;
pub use error::{BackendError, BackendResult, fmt_bytes};
/// The `half` crate, whose `f16` and `bf16` are the element types of f16/bf16 storage
/// ([`Buffer`]`<f16>`, the `_ex` ops), re-exported so callers use the same version.
pub use half;
pub use host_view::{HostView, Lent, LentVec, MapMode, ViewMemory};
pub use types::{
    BackendTranspose, BinaryOp, DType, MemoryInfo, QuantFormat, ReduceOp, RowOp, UnaryOp,
    UnaryParamOp,
};
pub use validate::{Batch, GemmArgs};
