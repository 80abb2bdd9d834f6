//! When the active segment seals: Pulsar's managed-ledger rollover rule.
//!
//! A segment seals when `(entries ≥ max entries or size ≥ max size or age ≥ max age)` and
//! `age ≥ min age`, and never while it is empty. This module is the rule alone, a pure function
//! of the segment's counters and the clock, so it is checked the same way on every append and
//! by the rollover timer.

use std::time::Duration;

/// Defaults from Pulsar's `broker.conf`.
pub const DEFAULT_MAX_ENTRIES: u64 = 5000;
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(2 * 60);
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(240 * 60);
pub const DEFAULT_MAX_SIZE_BYTES: u64 = 2048 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloverPolicy {
    /// `managedLedgerMaxEntriesPerLedger`
    pub max_entries: u64,
    /// `managedLedgerMinLedgerRolloverTimeMinutes`
    pub min_age: Duration,
    /// `managedLedgerMaxLedgerRolloverTimeMinutes`
    pub max_age: Duration,
    /// `managedLedgerMaxSizePerLedgerMbytes`, in bytes
    pub max_size_bytes: u64,
}

impl Default for RolloverPolicy {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            min_age: DEFAULT_MIN_AGE,
            max_age: DEFAULT_MAX_AGE,
            max_size_bytes: DEFAULT_MAX_SIZE_BYTES,
        }
    }
}

/// Why a segment sealed; shown in the log line of each rollover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloverReason {
    Entries,
    Size,
    Age,
    Admin,
}

impl std::fmt::Display for RolloverReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RolloverReason::Entries => "entry limit reached",
            RolloverReason::Size => "size limit reached",
            RolloverReason::Age => "age limit reached",
            RolloverReason::Admin => "sealed by admin request",
        })
    }
}

impl RolloverPolicy {
    /// Whether a segment with these counters must seal now, and why.
    pub fn check(&self, entries: u64, size: u64, age: Duration) -> Option<RolloverReason> {
        if entries == 0 || age < self.min_age {
            return None;
        }
        if entries >= self.max_entries {
            Some(RolloverReason::Entries)
        } else if size >= self.max_size_bytes {
            Some(RolloverReason::Size)
        } else if age >= self.max_age {
            Some(RolloverReason::Age)
        } else {
            None
        }
    }

    /// How often the timer should look at every topic: often enough to honour the shortest
    /// configured age, never more than ten times a second.
    pub fn timer_period(&self) -> Duration {
        let shortest = self.max_age.min(self.min_age.max(Duration::from_millis(1)));
        (shortest / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RolloverPolicy {
        RolloverPolicy {
            max_entries: 10,
            min_age: Duration::from_secs(60),
            max_age: Duration::from_secs(600),
            max_size_bytes: 1000,
        }
    }

    #[test]
    fn seals_on_each_limit_once_old_enough() {
        let p = policy();
        let old = Duration::from_secs(61);
        assert_eq!(p.check(10, 5, old), Some(RolloverReason::Entries));
        assert_eq!(p.check(3, 1000, old), Some(RolloverReason::Size));
        assert_eq!(
            p.check(3, 5, Duration::from_secs(600)),
            Some(RolloverReason::Age)
        );
        assert_eq!(p.check(9, 999, old), None);
    }

    #[test]
    fn min_age_holds_back_and_empty_never_seals() {
        let p = policy();
        assert_eq!(p.check(100, 1_000_000, Duration::from_secs(59)), None);
        assert_eq!(p.check(0, 0, Duration::from_secs(100_000)), None);
    }

    #[test]
    fn defaults_are_pulsars() {
        let p = RolloverPolicy::default();
        assert_eq!(p.max_entries, 5000);
        assert_eq!(p.min_age, Duration::from_secs(120));
        assert_eq!(p.max_age, Duration::from_secs(14400));
        assert_eq!(p.max_size_bytes, 2 << 30);
        assert_eq!(p.timer_period(), Duration::from_secs(1));
    }
}
