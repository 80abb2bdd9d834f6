//! The catalog's objects and their encoding (`docs/FORMAT.md` is the user-facing copy).
//!
//! ```text
//! <prefix>/_tierfs/head.json                        the root: latest sequence number, checkpoint
//! <prefix>/_tierfs/journal/<seq:020>.json           one commit: the changes it made
//! <prefix>/_tierfs/checkpoint/<seq:020>.json        the whole state after commit <seq>
//! <prefix>/_tierfs/page/<seq:020>-<n:04>.json       a page of one topic's segment records
//! <prefix>/_tierfs/lease.json                       the writer lease (`lease.rs`)
//! ```
//!
//! Every object is JSON with a `format` number; a reader refuses a number it does not know,
//! naming the object, rather than guess. Segment records carry no object keys: a segment's
//! data and index keys follow from its topic, id and uuid (`crate::offload::Layout`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::offload::NamespacePolicy;

/// The one format version this build reads and writes.
pub const FORMAT: u32 = 1;

/// The folder under the prefix that holds the catalog. `_tierfs` is reserved as a tenant name
/// so that no topic's objects ever land here.
pub const CATALOG_DIR: &str = "_tierfs";

/// Where the catalog's objects live under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogKeys {
    root: String,
}

impl CatalogKeys {
    pub fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        let root = if prefix.is_empty() {
            format!("{CATALOG_DIR}/")
        } else {
            format!("{prefix}/{CATALOG_DIR}/")
        };
        Self { root }
    }

    pub fn head(&self) -> String {
        format!("{}head.json", self.root)
    }

    pub fn journal(&self, seq: u64) -> String {
        format!("{}journal/{seq:020}.json", self.root)
    }

    pub fn checkpoint(&self, seq: u64) -> String {
        format!("{}checkpoint/{seq:020}.json", self.root)
    }

    /// Page `n` written with checkpoint `seq`.
    pub fn page(&self, seq: u64, n: usize) -> String {
        format!("{}page/{seq:020}-{n:04}.json", self.root)
    }

    /// The writer lease (`lease.rs`).
    pub fn lease(&self) -> String {
        format!("{}lease.json", self.root)
    }

    /// A scratch key for probing whether the store honours conditional writes.
    pub fn probe(&self) -> String {
        format!("{}probe-{}", self.root, uuid::Uuid::new_v4())
    }

    /// The key prefix of everything the catalog writes.
    pub fn root(&self) -> &str {
        &self.root
    }
}

/// A completely offloaded segment, as the bucket records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub id: u64,
    /// The offload attempt whose objects hold the segment.
    pub uuid: String,
    pub entries: u64,
    pub size: u64,
    pub crc32c: u32,
    pub created_ms: u64,
    pub sealed_ms: u64,
    pub offloaded_ms: u64,
}

/// One change to the catalog's state. `topic` is `tenant/namespace/topic`, `namespace`
/// `tenant/namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// A segment's data and index objects are complete: from now on it exists in the bucket.
    Offloaded {
        topic: String,
        segment: SegmentEntry,
    },
    /// A segment left the bucket (retention, `topics truncate`, `topics delete`): readers stop
    /// showing it at once; its objects are removed after this is committed. With `uuid`, only
    /// the record of that offload goes (a topic deleted and created again under the same name
    /// reuses segment ids).
    SegmentDeleted {
        topic: String,
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uuid: Option<String>,
    },
    /// A namespace's offload policies; `null` when they were removed.
    Policy {
        namespace: String,
        policy: Option<NamespacePolicy>,
    },
}

/// The root object: the only one that changes in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub format: u32,
    /// The last committed journal record; 0 when nothing was ever committed.
    pub seq: u64,
    /// The newest checkpoint (0: none; replay the journal from 1).
    pub checkpoint: u64,
    /// The checkpoint before it, kept for readers that are still replaying from it.
    #[serde(default)]
    pub previous_checkpoint: u64,
    /// Who committed last (`host pid`), for people reading the bucket.
    #[serde(default)]
    pub writer: String,
    pub updated_ms: u64,
}

/// One commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRecord {
    pub format: u32,
    pub seq: u64,
    pub time_ms: u64,
    pub changes: Vec<Change>,
}

/// The whole state after commit `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u32,
    pub seq: u64,
    /// Policies by `tenant/namespace`.
    pub policies: BTreeMap<String, NamespacePolicy>,
    /// Segments by `tenant/namespace/topic`.
    pub topics: BTreeMap<String, TopicCheckpoint>,
}

/// One topic in a checkpoint: pages written once and referenced by every later checkpoint,
/// and the records no page holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicCheckpoint {
    /// Oldest first, ranges not overlapping.
    #[serde(default)]
    pub pages: Vec<PageRef>,
    /// Oldest first.
    #[serde(default)]
    pub segments: Vec<SegmentEntry>,
}

/// A page: every segment record of one topic whose id lies in `first..=last`, when it was
/// written. Pages never change; a change to a segment in a page's range retires the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRef {
    pub key: String,
    pub first: u64,
    pub last: u64,
    pub count: u64,
}

/// A page object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub format: u32,
    pub topic: String,
    pub segments: Vec<SegmentEntry>,
}

/// Why an object of the catalog cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{key} is not a valid tierfs catalog object: {reason}")]
    Invalid { key: String, reason: String },
    #[error(
        "{key} has format {found}; this tierfs reads format {FORMAT} only (upgrade tierfs to read this bucket)"
    )]
    UnknownVersion { key: String, found: u32 },
}

/// Decodes a catalog object, checking its `format` before anything else so that a newer
/// format's different fields are reported as a newer format, not as damage.
pub fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, FormatError> {
    #[derive(Deserialize)]
    struct Versioned {
        format: u32,
    }
    let invalid = |e: serde_json::Error| FormatError::Invalid {
        key: key.to_string(),
        reason: e.to_string(),
    };
    let versioned: Versioned = serde_json::from_slice(bytes).map_err(invalid)?;
    if versioned.format != FORMAT {
        return Err(FormatError::UnknownVersion {
            key: key.to_string(),
            found: versioned.format,
        });
    }
    serde_json::from_slice(bytes).map_err(invalid)
}

/// Encodes a catalog object: compact JSON, one trailing newline.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec(value).expect("catalog objects serialize");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_reserved_folder() {
        let keys = CatalogKeys::new("/tiered/");
        assert_eq!(keys.head(), "tiered/_tierfs/head.json");
        assert_eq!(
            keys.journal(7),
            "tiered/_tierfs/journal/00000000000000000007.json"
        );
        assert_eq!(
            CatalogKeys::new("").checkpoint(12),
            "_tierfs/checkpoint/00000000000000000012.json"
        );
    }

    #[test]
    fn records_round_trip_and_unknown_versions_are_refused_by_name() {
        let record = JournalRecord {
            format: FORMAT,
            seq: 3,
            time_ms: 9,
            changes: vec![
                Change::Offloaded {
                    topic: "t/ns/x".into(),
                    segment: SegmentEntry {
                        id: 1,
                        uuid: "u".into(),
                        entries: 2,
                        size: 3,
                        crc32c: 4,
                        created_ms: 5,
                        sealed_ms: 6,
                        offloaded_ms: 7,
                    },
                },
                Change::SegmentDeleted {
                    topic: "t/ns/x".into(),
                    id: 1,
                    uuid: Some("u".into()),
                },
                Change::Policy {
                    namespace: "t/ns".into(),
                    policy: None,
                },
            ],
        };
        let bytes = encode(&record);
        assert_eq!(decode::<JournalRecord>("k", &bytes).unwrap(), record);
        let newer = String::from_utf8(bytes)
            .unwrap()
            .replace("\"format\":1", "\"format\":2");
        let err = decode::<JournalRecord>("k", newer.as_bytes()).unwrap_err();
        assert_eq!(
            err,
            FormatError::UnknownVersion {
                key: "k".into(),
                found: 2
            }
        );
        assert!(err.to_string().contains("upgrade tierfs"));
        assert!(matches!(
            decode::<Head>("h", b"{\"format\":1}"),
            Err(FormatError::Invalid { .. })
        ));
        assert!(matches!(
            decode::<Head>("h", b"not json"),
            Err(FormatError::Invalid { .. })
        ));
    }
}
