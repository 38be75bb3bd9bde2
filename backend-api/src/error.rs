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
    /// The device (or the host, for the CPU backends) could not provide the memory asked
    /// for. The message says how much was asked and, where the backend knows them, the
    /// limit and what is already held against it. The backend stays usable.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
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

/// Builds an [`BackendError::OutOfMemory`] from `format!` arguments.
#[macro_export]
macro_rules! oom {
    ($($arg:tt)*) => {
        $crate::BackendError::OutOfMemory(format!($($arg)*))
    };
}

/// `bytes` the way size messages print it: exact, and in binary units past 1 KiB
/// (`"1610612736 bytes (1.50 GiB)"`).
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{bytes} bytes ({v:.2} {})", UNITS[unit])
}

impl BackendError {
    /// True for [`BackendError::InvalidArgument`].
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, Self::InvalidArgument(_))
    }

    /// True for [`BackendError::OutOfMemory`].
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, Self::OutOfMemory(_))
    }

    /// The kind as one word (`"InvalidArgument"`, `"OutOfMemory"`, ...), e.g. for a
    /// binding that maps kinds to its own error classes.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unsupported(_) => "Unsupported",
            Self::DeviceError(_) => "DeviceError",
            Self::InvalidArgument(_) => "InvalidArgument",
            Self::OutOfMemory(_) => "OutOfMemory",
            Self::NotInitialized => "NotInitialized",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_print_exactly_and_in_binary_units() {
        assert_eq!(fmt_bytes(0), "0 bytes");
        assert_eq!(fmt_bytes(1023), "1023 bytes");
        assert_eq!(fmt_bytes(1024), "1024 bytes (1.00 KiB)");
        assert_eq!(fmt_bytes(3 << 29), "1610612736 bytes (1.50 GiB)");
        assert_eq!(
            fmt_bytes(u64::MAX),
            "18446744073709551615 bytes (16384.00 PiB)"
        );
    }

    #[test]
    fn kinds_name_their_variant() {
        assert_eq!(oom!("x").kind(), "OutOfMemory");
        assert_eq!(invalid!("x").kind(), "InvalidArgument");
        assert!(
            oom!("alloc: 4 bytes")
                .to_string()
                .starts_with("out of memory: alloc")
        );
    }
}
