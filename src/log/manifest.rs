//! The per-topic manifest: which segments a topic has and which one is active.
//!
//! Stored as `manifest.json` in the topic's directory and replaced atomically: the new text is
//! written to a temporary file, fsynced, renamed over the old one, and the directory fsynced.
//! A reader therefore sees the old manifest or the new one, never a mix. The format carries a
//! version number from its first day.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{LogError, io_error, sync_dir};

pub const MANIFEST_FILE: &str = "manifest.json";
const MANIFEST_TMP: &str = "manifest.json.tmp";
const FORMAT: u32 = 1;

/// A sealed segment: immutable, described once and for all when it sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSegment {
    pub id: u64,
    pub entries: u64,
    pub size: u64,
    /// CRC32C of the segment's bytes.
    pub crc32c: u32,
    pub created_ms: u64,
    pub sealed_ms: u64,
    /// Whether the segment's files are on local disk; false once offloaded and past the
    /// deletion lag.
    #[serde(default = "yes")]
    pub local: bool,
    /// The segment's offload, recorded before the upload starts (intent) and completed after
    /// the index object exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadRecord>,
}

fn yes() -> bool {
    true
}

impl SealedSegment {
    /// A local, never offloaded segment of one entry, for tests of the rules over segments.
    #[cfg(test)]
    pub fn for_tests(id: u64, size: u64, sealed_ms: u64) -> Self {
        Self {
            id,
            entries: 1,
            size,
            crc32c: 0,
            created_ms: 0,
            sealed_ms,
            local: true,
            offload: None,
        }
    }

    /// Whether a complete copy is in the object store.
    pub fn offloaded(&self) -> bool {
        self.offload
            .as_ref()
            .is_some_and(OffloadRecord::is_complete)
    }
}

/// One offload of a sealed segment: its object keys and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadRecord {
    pub uuid: String,
    pub data_key: String,
    pub index_key: String,
    /// The multipart upload, once the store has given it an id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    pub started_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_ms: Option<u64>,
}

impl OffloadRecord {
    /// A completed offload with placeholder keys, for tests of the rules over segments.
    #[cfg(test)]
    pub fn completed_for_tests() -> Self {
        Self {
            uuid: "u".into(),
            data_key: "d".into(),
            index_key: "i".into(),
            upload_id: None,
            started_ms: 0,
            completed_ms: Some(1),
        }
    }

    pub fn is_complete(&self) -> bool {
        self.completed_ms.is_some()
    }
}

/// The active segment as the manifest knows it; its counters live in its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveRef {
    pub id: u64,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// `tenant/namespace/topic`, as a check that the directory holds what it claims.
    pub topic: String,
    pub created_ms: u64,
    /// Oldest first.
    pub sealed: Vec<SealedSegment>,
    pub active: ActiveRef,
    /// Segments being deleted (retention, truncate, the whole topic): gone from the log
    /// already, their local files and objects removed next; a restart finishes what a crash
    /// interrupted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleting: Vec<DeletedSegment>,
}

/// A segment taken out of the log for deletion, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedSegment {
    #[serde(flatten)]
    pub segment: SealedSegment,
    pub deleted_ms: u64,
}

impl Manifest {
    /// The manifest of a new topic whose first segment is `1`.
    pub fn new(topic: String, now: SystemTime) -> Self {
        let now_ms = to_millis(now);
        Self {
            format: FORMAT,
            topic,
            created_ms: now_ms,
            sealed: Vec::new(),
            active: ActiveRef {
                id: 1,
                created_ms: now_ms,
            },
            deleting: Vec::new(),
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    pub fn load(dir: &Path) -> Result<Self, LogError> {
        let path = Self::path(dir);
        let text = std::fs::read(&path).map_err(io_error(&path, "read manifest"))?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| LogError::Corrupt {
            path: path.clone(),
            reason: format!("manifest is not valid: {e}"),
        })?;
        if manifest.format != FORMAT {
            return Err(LogError::Corrupt {
                path,
                reason: format!(
                    "manifest format {} is not supported (this tierfs reads format {FORMAT})",
                    manifest.format
                ),
            });
        }
        manifest.check_order().map_err(|reason| LogError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        Ok(manifest)
    }

    /// Replaces the manifest on disk atomically and durably.
    pub fn save(&self, dir: &Path) -> Result<(), LogError> {
        let tmp = dir.join(MANIFEST_TMP);
        let mut text = serde_json::to_vec_pretty(self).expect("manifest serializes");
        text.push(b'\n');
        let mut file = File::create(&tmp).map_err(io_error(&tmp, "create"))?;
        file.write_all(&text).map_err(io_error(&tmp, "write"))?;
        file.sync_all().map_err(io_error(&tmp, "fsync"))?;
        let path = Self::path(dir);
        std::fs::rename(&tmp, &path).map_err(io_error(&path, "replace manifest"))?;
        // The rename is done: the new manifest is what a restart reads, so report success and
        // keep memory in step with it. A failed directory fsync only weakens power-loss safety.
        if let Err(e) = sync_dir(dir) {
            tracing::error!(error = %e, "manifest replaced, but its directory could not be fsynced");
        }
        Ok(())
    }

    fn check_order(&self) -> Result<(), String> {
        let mut previous = 0;
        for segment in &self.sealed {
            if segment.id <= previous {
                return Err(format!(
                    "sealed segment ids are not increasing ({} after {previous})",
                    segment.id
                ));
            }
            previous = segment.id;
        }
        if self.active.id <= previous {
            return Err(format!(
                "active segment {} is not after the last sealed segment {previous}",
                self.active.id
            ));
        }
        Ok(())
    }
}

pub fn to_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

pub fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::new("t/ns/x".into(), SystemTime::now());
        manifest.save(dir.path()).unwrap();
        manifest.sealed.push(SealedSegment {
            id: 1,
            entries: 2,
            size: 3,
            crc32c: 4,
            created_ms: 5,
            sealed_ms: 6,
            local: true,
            offload: None,
        });
        manifest.active.id = 2;
        manifest.save(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), manifest);
        assert!(!dir.path().join(MANIFEST_TMP).exists());
    }

    proptest::proptest! {
        #[test]
        fn loading_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(Manifest::path(dir.path()), &bytes).unwrap();
            let _ = Manifest::load(dir.path());
        }
    }

    #[test]
    fn refuses_damaged_manifests_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Manifest::path(dir.path()), b"{\"format\":1,").unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("manifest is not valid"), "{err}");

        let mut manifest = Manifest::new("t/ns/x".into(), SystemTime::now());
        manifest.active.id = 0;
        let text = serde_json::to_vec(&manifest).unwrap();
        std::fs::write(Manifest::path(dir.path()), text).unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not after the last sealed"), "{err}");
    }
}
