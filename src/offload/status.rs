//! Each topic's offload status, as `pulsar-admin topics offload-status` reports it, plus the
//! byte counts behind the `-w` progress bar.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    NotRun,
    Running,
    Success,
    Error,
}

/// Pulsar's `MessageIdImpl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageId {
    pub ledger_id: i64,
    pub entry_id: i64,
    #[serde(default = "minus_one")]
    pub partition_index: i32,
}

fn minus_one() -> i32 {
    -1
}

impl MessageId {
    pub fn earliest() -> Self {
        Self {
            ledger_id: -1,
            entry_id: -1,
            partition_index: -1,
        }
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.ledger_id, self.entry_id, self.partition_index
        )
    }
}

/// Pulsar's `OffloadProcessStatus`, with tierfs's byte counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffloadStatus {
    pub status: State,
    pub last_error: String,
    pub first_unoffloaded_message: MessageId,
    #[serde(default)]
    pub bytes_total: u64,
    #[serde(default)]
    pub bytes_uploaded: u64,
}

/// The live status of one topic's offloads.
#[derive(Debug)]
pub struct Progress {
    state: Mutex<(State, String, MessageId)>,
    pub total: AtomicU64,
    pub uploaded: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            state: Mutex::new((State::NotRun, String::new(), MessageId::earliest())),
            total: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
        }
    }
}

impl Progress {
    /// Moves to RUNNING unless already there; false if an offload is running.
    pub fn try_start(&self, total: u64) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 == State::Running {
            return false;
        }
        *state = (State::Running, String::new(), state.2);
        self.total.store(total, Ordering::Relaxed);
        self.uploaded.store(0, Ordering::Relaxed);
        true
    }

    pub fn succeed(&self, first_unoffloaded: MessageId) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) =
            (State::Success, String::new(), first_unoffloaded);
    }

    pub fn fail(&self, reason: String) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = (State::Error, reason, state.2);
    }

    pub fn is_running(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 == State::Running
    }

    pub fn snapshot(&self) -> OffloadStatus {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        OffloadStatus {
            status: state.0,
            last_error: state.1,
            first_unoffloaded_message: state.2,
            bytes_total: self.total.load(Ordering::Relaxed),
            bytes_uploaded: self.uploaded.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pulsars() {
        let p = Progress::default();
        assert!(p.try_start(10));
        assert!(
            !p.try_start(10),
            "a second offload must not start while one runs"
        );
        p.fail("AccessDenied".into());
        let json = serde_json::to_value(p.snapshot()).unwrap();
        assert_eq!(json["status"], "ERROR");
        assert_eq!(json["lastError"], "AccessDenied");
        assert_eq!(json["firstUnoffloadedMessage"]["ledgerId"], -1);
        let id: MessageId =
            serde_json::from_str(r#"{"ledgerId":2,"entryId":0,"partitionIndex":-1}"#).unwrap();
        assert_eq!(id.to_string(), "2:0:-1");
    }
}
