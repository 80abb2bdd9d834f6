//! The JSON shapes of the admin API, as Pulsar's `/admin/v2` serves them.
//!
//! Field names follow Pulsar's `PersistentTopicInternalStats` and `ErrorData`, so tools written
//! for `pulsar-admin` output read tierfs's too. Segments appear as Pulsar's "ledgers".

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::log::{SealedSegment, TopicSnapshot, manifest_time};

/// Pulsar's error body: `{"reason": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerInfo {
    pub ledger_id: i64,
    pub entries: i64,
    pub size: i64,
    pub offloaded: bool,
    pub under_replicated: bool,
    /// tierfs: why the segment's offload is failing, while it is (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload_failure: Option<crate::offload::backoff::Failure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalStats {
    pub entries_added_counter: u64,
    pub number_of_entries: u64,
    pub total_size: u64,
    pub current_ledger_entries: u64,
    pub current_ledger_size: u64,
    pub last_ledger_created_timestamp: String,
    pub last_ledger_creation_failure_timestamp: Option<String>,
    pub waiting_cursors_count: u64,
    pub pending_add_entries_count: u64,
    pub last_confirmed_entry: String,
    pub state: String,
    pub ledgers: Vec<LedgerInfo>,
    pub cursors: serde_json::Map<String, serde_json::Value>,
    pub schema_ledgers: Vec<LedgerInfo>,
    pub compacted_ledger: LedgerInfo,
}

/// The answer to a seal request (a tierfs extension of the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedInfo {
    pub ledger_id: u64,
    pub entries: u64,
    pub size: u64,
}

impl From<&SealedSegment> for SealedInfo {
    fn from(s: &SealedSegment) -> Self {
        Self {
            ledger_id: s.id,
            entries: s.entries,
            size: s.size,
        }
    }
}

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl From<&TopicSnapshot> for InternalStats {
    fn from(snap: &TopicSnapshot) -> Self {
        let total_entries = snap.total_entries();
        let mut ledgers: Vec<LedgerInfo> = snap
            .sealed
            .iter()
            .map(|s| LedgerInfo {
                ledger_id: s.id as i64,
                entries: s.entries as i64,
                size: s.size as i64,
                offloaded: s.offloaded(),
                under_replicated: false,
                offload_failure: None,
            })
            .collect();
        ledgers.push(LedgerInfo {
            ledger_id: snap.active.id as i64,
            entries: snap.active.entries as i64,
            size: snap.active.size as i64,
            offloaded: false,
            under_replicated: false,
            offload_failure: None,
        });
        let last_confirmed_entry = if snap.active.entries > 0 {
            format!("{}:{}", snap.active.id, snap.active.entries - 1)
        } else if let Some(last) = snap.sealed.last() {
            format!("{}:{}", last.id, last.entries as i64 - 1)
        } else {
            format!("{}:-1", snap.active.id)
        };
        Self {
            entries_added_counter: total_entries,
            number_of_entries: total_entries,
            total_size: snap.total_size(),
            current_ledger_entries: snap.active.entries,
            current_ledger_size: snap.active.size,
            last_ledger_created_timestamp: timestamp(snap.active.created),
            last_ledger_creation_failure_timestamp: None,
            waiting_cursors_count: 0,
            pending_add_entries_count: 0,
            last_confirmed_entry,
            state: "LedgerOpened".to_string(),
            ledgers,
            cursors: serde_json::Map::new(),
            schema_ledgers: Vec::new(),
            compacted_ledger: LedgerInfo {
                ledger_id: -1,
                entries: -1,
                size: -1,
                offloaded: false,
                under_replicated: false,
                offload_failure: None,
            },
        }
    }
}

impl InternalStats {
    /// Marks the ledgers whose offload is failing with why, and when it is tried again.
    pub fn note_offload_failures(
        &mut self,
        failures: &std::collections::HashMap<u64, crate::offload::backoff::Failure>,
    ) {
        for ledger in &mut self.ledgers {
            ledger.offload_failure = failures.get(&(ledger.ledger_id as u64)).cloned();
        }
    }
}

/// When a sealed segment was created, for messages.
pub fn created_at(s: &SealedSegment) -> String {
    timestamp(manifest_time(s.created_ms))
}
