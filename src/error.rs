//! The one error type of radiant.
//!
//! Every failure that can reach a caller is a variant here, and every variant
//! names *what* failed (the op, or the backend, or the file) and *why*, so that
//! an engine can log it and a user can act on it without reading our source.

use crate::ops::OpKind;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An op is not available on a backend, with the reason (e.g. "bf16 needs
/// sm_80"). Returned by [`crate::Backend::supports`] and wrapped into
/// [`Error::Unsupported`] when a launch is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} is not supported on {backend}: {reason}")]
pub struct Unsupported {
    pub backend: String,
    pub op: OpKind,
    pub reason: String,
}

/// Everything that can go wrong in radiant.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller passed an argument that violates the op's contract
    /// (shape, dtype, layout, value range, aliasing, size overflow).
    #[error("{op}: invalid argument `{arg}`: {reason}")]
    InvalidArgument {
        op: &'static str,
        arg: &'static str,
        reason: String,
    },

    /// The backend exists but cannot run this op with these parameters.
    #[error(transparent)]
    Unsupported(#[from] Unsupported),

    /// A backend that cannot be used on this machine (no driver, no device,
    /// not compiled in).
    #[error("backend {backend} is unavailable: {reason}")]
    Unavailable { backend: String, reason: String },

    /// The device or its driver reported an error while running `op`.
    #[error("{backend}: device error in {op}: {reason}")]
    Device {
        backend: String,
        op: &'static str,
        reason: String,
    },

    /// An allocation failed.
    #[error("{backend}: out of memory allocating {bytes} bytes")]
    OutOfMemory { backend: String, bytes: usize },

    /// A file or its content (case file, checkpoint, config) is malformed.
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },

    /// An I/O error while reading or writing `path`.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand used by every validation routine.
    pub fn invalid(op: &'static str, arg: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            arg,
            reason: reason.into(),
        }
    }

    pub fn format(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
