//! The offloader: copies sealed segments to the object store and drops local copies after the
//! deletion lag, as Pulsar's tiered storage does.
//!
//! An offload of segment N is two-phase and crash-safe:
//!
//! 1. intent: a fresh uuid and the object keys are recorded in the topic's local manifest;
//! 2. the data object is uploaded as a multipart upload (its upload id is recorded too);
//! 3. the index object (entry offsets, a CRC32C per read block) is written;
//! 4. completion is recorded in the local manifest, and the topic's manifest object rewritten.
//!
//! A failed attempt aborts its multipart upload and deletes what it wrote, then clears its
//! intent. At start, intents left by a crash are cleaned the same way (including uploads found
//! with ListMultipartUploads) and the segments offloaded again. Only a complete offload ever
//! lets the local copy go.

mod index_object;
mod layout;
mod policy;
mod remote_manifest;
mod service;
mod status;
mod upload;

pub use index_object::IndexObject;

/// An index object for `data` with one entry per block, for tests of the read path.
#[cfg(test)]
pub fn index_object_for_tests(data: &[u8], block: usize) -> IndexObject {
    let size = data.len() as u64;
    IndexObject {
        segment: 1,
        size,
        block_size: block as u32,
        segment_crc32c: crc32c::crc32c(data),
        entry_ends: (1..=data.len().div_ceil(block) as u64)
            .map(|i| (i * block as u64).min(size))
            .collect(),
        block_crcs: index_object::block_crcs(data, block),
    }
}
pub use layout::Layout;
pub use policy::{NamespacePolicy, Policies, PolicyError};
pub use remote_manifest::RemoteManifest;
pub use service::{Offloader, ScanReport};
pub use status::{MessageId, OffloadStatus, State};

use std::path::PathBuf;

use crate::log::LogError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Pulsar's answer to a second offload while one runs.
    #[error("Offload already in progress")]
    AlreadyRunning,
    #[error("offloads wait until the ones a crash interrupted are cleaned up; retry shortly")]
    Recovering,
    #[error("offload task failed: {0}")]
    Task(String),
}
