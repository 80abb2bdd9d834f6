//! The offloader: copies sealed segments to the object store, records them in the bucket's
//! catalog (`crate::catalog`) and drops local copies after the deletion lag, as Pulsar's tiered
//! storage does. `attempt.rs` says how one segment's offload is made crash-safe.

mod attempt;
pub mod backoff;
mod deletion;
mod index_object;
mod layout;
mod mapped;
mod policy;
mod recovery;
pub mod retention;
mod scan;
mod service;
mod status;
#[cfg(test)]
mod tests;
mod upload;

pub use index_object::{BlockSums, HEAD_BYTES, IndexObject};

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
        block_crcs: index_object::BlockSums::of(data, block).blocks,
        head_size: 0,
        head_crcs: Vec::new(),
    }
}
pub use deletion::MountView;
pub use layout::Layout;
pub use policy::{NamespacePolicy, Policies, PolicyError};
pub use retention::RetentionPolicy;
pub use scan::ScanReport;
pub use service::{LeaseSettings, Offloader};
pub use status::{MessageId, OffloadStatus, State};

use std::path::PathBuf;

use crate::catalog::CatalogError;
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
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Lease(#[from] crate::catalog::LeaseError),
    /// Offloads stopped for good: another writer holds or took the prefix.
    #[error("{0}")]
    Halted(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Pulsar's answer to a second offload while one runs.
    #[error("Offload already in progress")]
    AlreadyRunning,
    #[error(
        "offloads wait until the bucket's catalog is read and the writer lease taken; retry shortly"
    )]
    Recovering,
    /// The bucket cannot be used (its catalog cannot be read, or the lease taken): why.
    #[error("{0}")]
    Unavailable(String),
    #[error("offload task failed: {0}")]
    Task(String),
}
