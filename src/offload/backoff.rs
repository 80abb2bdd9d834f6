//! Segments whose offload failed, and when automatic offload may try each again.
//!
//! A segment that fails (its bytes no longer match its recorded CRC32C, the store refuses it,
//! …) waits before automatic offload tries it again: [`FIRST_DELAY`] after the first failure,
//! twice as long after each further one, at most [`MAX_DELAY`]. It holds up nothing: the
//! segments after it are offloaded meanwhile. A manual offload (`topics offload`) tries it at
//! once and starts its backoff afresh. A success forgets its failures. `offload-status` and `stats-internal` report them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::name::TopicName;

/// Delay before the first retry of a failed segment.
pub const FIRST_DELAY: Duration = Duration::from_secs(15);
/// Longest delay between two tries of a failing segment.
pub const MAX_DELAY: Duration = Duration::from_secs(30 * 60);

/// How one segment's offloads have failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Failed attempts in a row.
    pub attempts: u32,
    pub last_error: String,
    /// When automatic offload may try it again (ms since the epoch).
    pub retry_at_ms: u64,
}

/// The delay after `attempts` failures in a row.
pub fn delay_after(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

/// Every failing segment of a mount, by topic and segment id.
#[derive(Debug, Default)]
pub struct Failures {
    by_segment: Mutex<HashMap<(String, u64), Failure>>,
}

impl Failures {
    /// Records a failed attempt at segment `id`; returns its record.
    pub fn record(&self, topic: &TopicName, id: u64, error: &str, now_ms: u64) -> Failure {
        let mut map = self.by_segment.lock().unwrap_or_else(|p| p.into_inner());
        let failure = map
            .entry((topic.to_string(), id))
            .or_insert_with(|| Failure {
                attempts: 0,
                last_error: String::new(),
                retry_at_ms: 0,
            });
        failure.attempts += 1;
        failure.last_error = error.to_string();
        failure.retry_at_ms = now_ms + delay_after(failure.attempts).as_millis() as u64;
        failure.clone()
    }

    /// Segment `id` was offloaded: its failures are forgotten.
    pub fn clear(&self, topic: &TopicName, id: u64) {
        self.by_segment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(topic.to_string(), id));
    }

    /// Whether automatic offload may try segment `id` now.
    pub fn due(&self, topic: &TopicName, id: u64, now_ms: u64) -> bool {
        self.by_segment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(topic.to_string(), id))
            .is_none_or(|f| f.retry_at_ms <= now_ms)
    }

    /// The failing segments of a topic, by id.
    pub fn of_topic(&self, topic: &TopicName) -> HashMap<u64, Failure> {
        let name = topic.to_string();
        self.by_segment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((t, _), _)| *t == name)
            .map(|((_, id), f)| (*id, f.clone()))
            .collect()
    }

    /// Forgets a topic (it was deleted).
    pub fn forget_topic(&self, topic: &TopicName) {
        let name = topic.to_string();
        self.by_segment
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(t, _), _| *t != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_fifteen_seconds_up_to_half_an_hour() {
        let secs: Vec<u64> = (1..=10).map(|n| delay_after(n).as_secs()).collect();
        assert_eq!(secs, [15, 30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn a_failed_segment_waits_and_a_success_forgets_it() {
        let failures = Failures::default();
        let topic = TopicName::new("t", "ns", "x").unwrap();
        assert!(failures.due(&topic, 3, 0));
        let first = failures.record(&topic, 3, "crc mismatch", 1_000);
        assert_eq!((first.attempts, first.retry_at_ms), (1, 16_000));
        assert!(!failures.due(&topic, 3, 15_999));
        assert!(failures.due(&topic, 3, 16_000));
        assert!(
            failures.due(&topic, 4, 1_000),
            "other segments are not held up"
        );
        let second = failures.record(&topic, 3, "crc mismatch", 16_000);
        assert_eq!((second.attempts, second.retry_at_ms), (2, 46_000));
        assert_eq!(failures.of_topic(&topic).len(), 1);
        failures.clear(&topic, 3);
        assert!(failures.due(&topic, 3, 16_000));
        assert!(failures.of_topic(&topic).is_empty());
    }
}
