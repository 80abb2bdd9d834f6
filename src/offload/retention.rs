//! Retention as Pulsar does it: a policy of time and size (`set-retention --time 3d --size 10G`,
//! or the broker's `defaultRetentionTimeInMinutes` / `defaultRetentionSizeInMB`), and the rule
//! that picks which sealed segments it deletes.
//!
//! tierfs has no subscriptions, so every sealed segment counts as retained data. As in Pulsar's
//! trimming (`ManagedLedgerImpl.internalTrimLedgers`), segments are looked at oldest first and
//! the first one kept stops the walk, so what remains is always a suffix of the log:
//!
//! * a segment **expired** when it was sealed more than the retention time ago;
//! * a segment is **over quota** when, with it and every older one gone, the topic (the active
//!   segment included) still holds at least the retention size.
//!
//! `-1` means no limit on that side; `0` on both sides keeps nothing sealed. The active segment
//! never goes. Without any policy everything is kept: a deliberate difference from Pulsar's
//! default of 0/0, which with no subscriptions would delete every sealed segment.

use serde::{Deserialize, Serialize};

use crate::log::SealedSegment;

const MIB: i64 = 1024 * 1024;

/// Pulsar's `RetentionPolicies`, in its JSON shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    #[serde(rename = "retentionTimeInMinutes")]
    pub time_minutes: i64,
    #[serde(rename = "retentionSizeInMB")]
    pub size_mb: i64,
}

impl RetentionPolicy {
    /// Refuses what Pulsar's broker refuses, with its words.
    pub fn validate(&self) -> Result<(), String> {
        if self.size_mb < -1 {
            return Err("Invalid retention policy: size limit must be >= -1".into());
        }
        if self.time_minutes < -1 {
            return Err("Invalid retention policy: time limit must be >= -1".into());
        }
        if (self.time_minutes == 0) != (self.size_mb == 0) {
            return Err("Invalid retention policy: Setting a single time or size limit to 0 is invalid when one of the limits has a non-zero value. Use the value of -1 instead of 0 to ignore a specific limit. To disable retention both limits must be set to 0.".into());
        }
        Ok(())
    }

    /// Whether the policy can delete anything at all.
    pub fn is_infinite(&self) -> bool {
        self.time_minutes < 0 && self.size_mb < 0
    }

    /// The sealed segments (oldest first) this policy deletes now, oldest first. `active_size`
    /// counts toward the topic's size.
    pub fn pick(&self, sealed: &[SealedSegment], active_size: u64, now_ms: u64) -> Vec<u64> {
        if self.is_infinite() {
            return Vec::new();
        }
        let total = sealed.iter().map(|s| s.size).sum::<u64>() + active_size;
        let quota = (self.size_mb >= 0).then(|| self.size_mb.saturating_mul(MIB) as u64);
        let max_age_ms = (self.time_minutes >= 0).then(|| self.time_minutes as u64 * 60_000);
        let mut to_delete = 0u64;
        let mut picked = Vec::new();
        for segment in sealed {
            to_delete += segment.size;
            let over_quota = quota.is_some_and(|q| total - to_delete >= q);
            let expired =
                max_age_ms.is_some_and(|age| now_ms.saturating_sub(segment.sealed_ms) > age);
            if !(over_quota || expired) {
                break;
            }
            picked.push(segment.id);
        }
        picked
    }
}

impl std::fmt::Display for RetentionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |v: i64, unit: &str| match v {
            -1 => "unlimited".to_string(),
            v => format!("{v} {unit}"),
        };
        write!(
            f,
            "time {}, size {}",
            side(self.time_minutes, "minute(s)"),
            side(self.size_mb, "MB")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(id: u64, size: u64, sealed_ms: u64) -> SealedSegment {
        SealedSegment::for_tests(id, size, sealed_ms)
    }

    fn policy(time_minutes: i64, size_mb: i64) -> RetentionPolicy {
        RetentionPolicy {
            time_minutes,
            size_mb,
        }
    }

    #[test]
    fn size_keeps_at_least_the_quota_and_deletes_oldest_first() {
        let mib = MIB as u64;
        let sealed: Vec<_> = (1..=5).map(|id| segment(id, 4 * mib, 0)).collect();
        // 20 MiB sealed + 0 active, quota 10 MiB: 16 and 12 remain >= 10, 8 would not.
        assert_eq!(policy(-1, 10).pick(&sealed, 0, 0), vec![1, 2]);
        // The active segment counts: with 4 MiB in it, one more can go.
        assert_eq!(policy(-1, 10).pick(&sealed, 4 * mib, 0), vec![1, 2, 3]);
        assert!(policy(-1, 100).pick(&sealed, 0, 0).is_empty());
        assert_eq!(policy(-1, 0).pick(&sealed, 0, 0), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn time_deletes_segments_sealed_longer_ago_and_stops_at_the_first_kept() {
        let minute = 60_000;
        let sealed = vec![
            segment(1, 1, 0),
            segment(2, 1, 5 * minute),
            segment(3, 1, 0),
            segment(4, 1, 9 * minute),
        ];
        // At minute 10 with 3 minutes: 1 expired, 2 expired, 3 expired, 4 kept.
        assert_eq!(policy(3, -1).pick(&sealed, 0, 10 * minute), vec![1, 2, 3]);
        // With 6 minutes, 2 is kept and 3 (older, but after it) stays too: never a hole.
        assert_eq!(policy(6, -1).pick(&sealed, 0, 10 * minute), vec![1]);
        assert!(policy(-1, -1).pick(&sealed, 0, u64::MAX).is_empty());
        assert_eq!(policy(0, 0).pick(&sealed, 0, 10 * minute), vec![1, 2, 3, 4]);
    }

    #[test]
    fn either_limit_deletes() {
        let mib = MIB as u64;
        let sealed = vec![segment(1, mib, 0), segment(2, mib, 100 * 60_000)];
        // Segment 1 expired; segment 2 is young, but over the 0 MB... not allowed alone:
        assert!(policy(5, 0).validate().is_err());
        assert_eq!(policy(5, 100).pick(&sealed, 0, 101 * 60_000), vec![1]);
        assert_eq!(policy(500, 1).pick(&sealed, 0, 101 * 60_000), vec![1]);
    }

    #[test]
    fn pulsar_refusals_and_json_shape() {
        assert!(policy(-1, -1).validate().is_ok());
        assert!(policy(0, 0).validate().is_ok());
        assert!(
            policy(-2, 5)
                .validate()
                .unwrap_err()
                .contains("time limit must be >= -1")
        );
        assert!(
            policy(5, -2)
                .validate()
                .unwrap_err()
                .contains("size limit must be >= -1")
        );
        assert!(
            policy(0, 5)
                .validate()
                .unwrap_err()
                .contains("Use the value of -1")
        );
        assert_eq!(
            serde_json::to_string(&policy(4320, 10240)).unwrap(),
            r#"{"retentionTimeInMinutes":4320,"retentionSizeInMB":10240}"#
        );
        assert_eq!(policy(-1, 10).to_string(), "time unlimited, size 10 MB");
    }
}
