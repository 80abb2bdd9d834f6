//! The filesystem layer's error: every way a file operation can be refused or fail.
//!
//! Each variant carries the reason in words; `crate::fuse::errno` turns it into an errno and a
//! log level in one place.

use crate::log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{path}: {source}")]
    Log { path: String, source: LogError },
    /// The operation is one tierfs never allows on this node (EPERM).
    #[error("{path}: {reason}")]
    NotPermitted { path: String, reason: &'static str },
    /// The request itself is malformed for this node (EINVAL).
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{0} is a directory")]
    IsDirectory(String),
    #[error("{0} is not a directory")]
    NotDirectory(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Reading an offloaded segment failed (store errors after retries, a checksum mismatch,
    /// a timeout): EIO, never ENOENT.
    #[error("{path}: {source}")]
    Cache {
        path: String,
        source: crate::cache::CacheError,
    },
    /// A change asked of a read-only mount (EROFS); `why` says which kind of mount.
    #[error("{path}: {op} refused: {why}")]
    ReadOnly {
        path: String,
        op: &'static str,
        why: &'static str,
    },
    /// Reading a Pulsar ledger failed (the store, or a block not as its index describes): EIO.
    #[error("{path}: {source}")]
    Ledger {
        path: String,
        source: crate::pulsar::reader::ReadError,
    },
    #[error("file handle {0} is not open")]
    BadHandle(u64),
    #[error("{path} has no extended attribute {name}")]
    NoAttribute { path: String, name: String },
    /// A namespace of attributes tierfs does not keep at all (security labels, POSIX ACLs).
    #[error("{path}: tierfs keeps no {name} (only user.* attributes)")]
    AttributeNotSupported { path: String, name: String },
}

impl FsError {
    pub fn log(path: impl ToString) -> impl FnOnce(LogError) -> FsError {
        let path = path.to_string();
        move |source| FsError::Log { path, source }
    }
}
