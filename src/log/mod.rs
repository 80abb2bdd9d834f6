//! The local tier: every topic's append-only log of segments on local disk.
//!
//! Layout under the data directory:
//!
//! ```text
//! <data-dir>/tierfs.lock                      held while a mount uses the directory
//! <data-dir>/topics/<tenant>/<namespace>/<topic>/
//!     manifest.json                           sealed segments + the active one (atomic replace)
//!     00000000000000000001.seg / .idx         a segment's bytes and its entry index
//! <data-dir>/deleting/<uuid>/                 a deleted topic's directory, until its objects go
//! ```
//!
//! This module knows nothing of FUSE or HTTP; the filesystem and admin layers call it.

mod index;
mod local;
mod lock;
mod manifest;
mod rollover;
mod segment;
mod topic;

use std::path::{Path, PathBuf};

pub use index::IndexRecord;
pub use local::{LocalLog, OpenReport, TopicTombstone};
pub use lock::DataDirLock;
pub use manifest::{
    DeletedSegment, OffloadRecord, SealedSegment, from_millis as manifest_time, to_millis,
};
pub use rollover::{RolloverPolicy, RolloverReason};
pub use segment::{RecoveryReport, data_file_name, parse_data_file_name};
pub use topic::{ActiveInfo, AppendAt, Appended, SealListener, Topic, TopicSnapshot};

use crate::name::{NameError, TopicName};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} is not empty")]
    NotEmpty(String),
    #[error("{path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("active is append-only: a write at offset {offset} was refused; the end is at {end}")]
    NotAtEnd { offset: u64, end: u64 },
    #[error("the active segment of {0} is empty; there is nothing to seal")]
    NothingToSeal(TopicName),
    #[error("{0} has no local copy")]
    NotLocal(String),
    #[error("{0} is not offloaded")]
    NotOffloaded(String),
    #[error("topic {0} was removed")]
    Removed(TopicName),
    #[error("data directory {path} is in use by another tierfs mount ({holder})")]
    Locked { path: PathBuf, holder: String },
}

impl LogError {
    /// The OS error behind an I/O failure, if there is one (ENOSPC, EIO, …).
    pub fn os_error(&self) -> Option<i32> {
        match self {
            LogError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Wraps an I/O error with the path and what was being done to it.
pub(crate) fn io_error(
    path: &Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.to_path_buf();
    move |source| LogError::Io {
        path,
        action,
        source,
    }
}

#[cfg(test)]
thread_local! {
    /// A slow disk, for tests of what waits on directory fsyncs (this thread's only).
    pub(crate) static SLOW_DIR_SYNC: std::cell::Cell<std::time::Duration> =
        const { std::cell::Cell::new(std::time::Duration::ZERO) };
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    #[cfg(test)]
    std::thread::sleep(SLOW_DIR_SYNC.with(|d| d.get()));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir, "fsync directory"))
}
