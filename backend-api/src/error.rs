//! The one error type every backend returns.

/// Everything a [`ComputeBackend`](crate::ComputeBackend) call can fail with.
///
/// Messages name the op and, for argument errors, the operand and the byte range, e.g.
/// `gemm: operand A range [0x100000100, 0x100000500) extends 16 bytes past the end of its
/// allocation [0x100000100, 0x1000004f0)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend cannot do this (op, dtype, size) at all; the message says which and why.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The device failed: a validation error inside the driver stack, a lost device, a kernel
    /// that did not build. Reported at the call that hit it or at the next sync point.
    #[error("device error: {0}")]
    DeviceError(String),
    /// The caller passed something the contract forbids: a pointer outside any live
    /// allocation, a bad leading dimension, a wrong output shape. Reported synchronously by
    /// the call itself, before anything is queued; device memory is left untouched.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The device (or the host, for the CPU backend) could not provide the memory asked for.
    /// The backend stays usable.
    #[error("out of memory")]
    OutOfMemory,
    /// A call other than `init` was made before a successful `init`.
    #[error("backend not initialized: call init() first")]
    NotInitialized,
}

/// Shorthand for results of backend calls.
pub type BackendResult<T> = Result<T, BackendError>;

/// Builds an [`BackendError::InvalidArgument`] from `format!` arguments.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => {
        $crate::BackendError::InvalidArgument(format!($($arg)*))
    };
}

impl BackendError {
    /// True for [`BackendError::InvalidArgument`].
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, Self::InvalidArgument(_))
    }
}
