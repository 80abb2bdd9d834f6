//! The per-topic manifest object: the bucket alone describes every offloaded segment.
//!
//! Rewritten (one PUT, atomic in S3) after each segment's offload completes, from the local
//! manifest, so it lists exactly the segments whose data and index objects both exist.

use serde::{Deserialize, Serialize};

use crate::log::SealedSegment;
use crate::name::TopicName;

const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSegment {
    pub id: u64,
    pub uuid: String,
    pub entries: u64,
    pub size: u64,
    pub crc32c: u32,
    pub data_key: String,
    pub index_key: String,
    pub sealed_ms: u64,
    pub offloaded_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteManifest {
    pub format: u32,
    pub topic: String,
    pub segments: Vec<RemoteSegment>,
}

impl RemoteManifest {
    /// The manifest of every completely offloaded segment among `sealed`.
    pub fn of(topic: &TopicName, sealed: &[SealedSegment]) -> Self {
        let segments = sealed
            .iter()
            .filter_map(|s| {
                let record = s.offload.as_ref()?;
                Some(RemoteSegment {
                    id: s.id,
                    uuid: record.uuid.clone(),
                    entries: s.entries,
                    size: s.size,
                    crc32c: s.crc32c,
                    data_key: record.data_key.clone(),
                    index_key: record.index_key.clone(),
                    sealed_ms: s.sealed_ms,
                    offloaded_ms: record.completed_ms?,
                })
            })
            .collect();
        Self {
            format: FORMAT,
            topic: topic.persistent(),
            segments,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("manifest serializes");
        out.push(b'\n');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let manifest: Self = serde_json::from_slice(bytes)
            .map_err(|e| format!("manifest object is not valid: {e}"))?;
        if manifest.format != FORMAT {
            return Err(format!(
                "manifest object format {} is not supported",
                manifest.format
            ));
        }
        Ok(manifest)
    }

    /// Every object key the manifest references.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.segments
            .iter()
            .flat_map(|s| [s.data_key.as_str(), s.index_key.as_str()])
    }
}
