//! Offload policies: per-namespace settings (as `pulsar-admin namespaces set-offload-threshold`
//! and `set-offload-deletion-lag` set them) over the broker-level defaults, and the rule that
//! picks which sealed segments to offload.
//!
//! Namespace policies are kept in the bucket's catalog (the source of truth, adopted at start)
//! and in `<data-dir>/namespace-policies.json`, replaced atomically, for the mount's own use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::retention::RetentionPolicy;
use crate::config::OffloadConfig;
use crate::log::SealedSegment;
use crate::name::NamespaceName;

const POLICIES_FILE: &str = "namespace-policies.json";

/// One namespace's settings; `None` falls back to the broker's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacePolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload_threshold: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload_deletion_lag_ms: Option<u64>,
    /// `set-retention`; `None` falls back to the broker's default retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionPolicy>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot save namespace policies to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
}

#[derive(Debug)]
pub struct Policies {
    path: PathBuf,
    broker_threshold: i64,
    broker_threshold_seconds: i64,
    broker_deletion_lag: Duration,
    /// `defaultRetentionTimeInMinutes` / `defaultRetentionSizeInMB`; `None`: keep everything.
    broker_retention: Option<RetentionPolicy>,
    namespaces: Mutex<BTreeMap<String, NamespacePolicy>>,
}

/// What applies to one namespace right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub threshold_bytes: i64,
    pub threshold_seconds: i64,
    pub deletion_lag: Duration,
}

impl Policies {
    pub fn load(data_dir: &Path, config: &OffloadConfig) -> Result<Self, PolicyError> {
        let path = data_dir.join(POLICIES_FILE);
        let namespaces = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PolicyError::Damaged {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(PolicyError::Damaged {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        Ok(Self {
            path,
            broker_threshold: config.auto_threshold_bytes,
            broker_threshold_seconds: config.threshold_seconds,
            broker_deletion_lag: config.deletion_lag,
            broker_retention: None,
            namespaces: Mutex::new(namespaces),
        })
    }

    /// The broker's default retention, for namespaces without a policy of their own.
    pub fn with_default_retention(mut self, retention: Option<RetentionPolicy>) -> Self {
        self.broker_retention = retention;
        self
    }

    /// The retention in force for a namespace: its own, else the broker's; `None` keeps all.
    pub fn retention(&self, ns: &NamespaceName) -> Option<RetentionPolicy> {
        self.get(ns).retention.or(self.broker_retention)
    }

    pub fn get(&self, ns: &NamespaceName) -> NamespacePolicy {
        self.namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ns.to_string())
            .cloned()
            .unwrap_or_default()
    }

    pub fn effective(&self, ns: &NamespaceName) -> Effective {
        let policy = self.get(ns);
        Effective {
            threshold_bytes: policy.offload_threshold.unwrap_or(self.broker_threshold),
            threshold_seconds: self.broker_threshold_seconds,
            deletion_lag: policy
                .offload_deletion_lag_ms
                .map_or(self.broker_deletion_lag, Duration::from_millis),
        }
    }

    /// What `change` would make of one namespace's policy; nothing is saved.
    pub fn preview(
        &self,
        ns: &NamespaceName,
        change: impl FnOnce(&mut NamespacePolicy),
    ) -> NamespacePolicy {
        let mut policy = self.get(ns);
        change(&mut policy);
        policy
    }

    /// Changes one namespace's policy and saves all of them.
    pub fn update(
        &self,
        ns: &NamespaceName,
        change: impl FnOnce(&mut NamespacePolicy),
    ) -> Result<NamespacePolicy, PolicyError> {
        let policy = self.preview(ns, change);
        self.set(ns, &policy)?;
        Ok(policy)
    }

    /// Sets one namespace's policy (the default one removes it) and saves all of them.
    pub fn set(&self, ns: &NamespaceName, policy: &NamespacePolicy) -> Result<(), PolicyError> {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = namespaces.clone();
        if *policy == NamespacePolicy::default() {
            next.remove(&ns.to_string());
        } else {
            next.insert(ns.to_string(), policy.clone());
        }
        if next != *namespaces {
            self.save(&next)?;
            *namespaces = next;
        }
        Ok(())
    }

    /// Every namespace's own policy, by `tenant/namespace`.
    pub fn all(&self) -> BTreeMap<String, NamespacePolicy> {
        self.namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces every namespace's policy with `all` (the bucket's, at start) and saves them.
    pub fn replace_all(&self, all: BTreeMap<String, NamespacePolicy>) -> Result<(), PolicyError> {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        if all != *namespaces {
            self.save(&all)?;
            *namespaces = all;
        }
        Ok(())
    }

    /// Forgets a namespace's policy (when the namespace is deleted).
    pub fn forget(&self, ns: &NamespaceName) -> Result<(), PolicyError> {
        self.set(ns, &NamespacePolicy::default())
    }

    fn save(&self, namespaces: &BTreeMap<String, NamespacePolicy>) -> Result<(), PolicyError> {
        let err = |source| PolicyError::Save {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(namespaces).expect("policies serialize");
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

/// The sealed segments automatic offload picks, oldest first: walking from the newest, sizes
/// add up (offloaded ones included, as in Pulsar); a segment not yet offloaded goes once the
/// sum passes the byte threshold, or once it has been sealed longer than the age threshold.
/// A negative threshold disables that rule.
pub fn pick_for_offload(
    sealed: &[SealedSegment],
    threshold_bytes: i64,
    threshold_seconds: i64,
    now_ms: u64,
) -> Vec<u64> {
    let mut picked = Vec::new();
    let mut sum = 0u64;
    for segment in sealed.iter().rev() {
        sum += segment.size;
        if segment.offload.is_some() || !segment.local {
            continue;
        }
        let by_size = threshold_bytes >= 0 && sum > threshold_bytes as u64;
        let by_age = threshold_seconds >= 0
            && now_ms.saturating_sub(segment.sealed_ms) >= threshold_seconds as u64 * 1000;
        if by_size || by_age {
            picked.push(segment.id);
        }
    }
    picked.reverse();
    picked
}

/// The segments a manual offload "for messages before `ledger`:0" covers, oldest first.
pub fn pick_before(sealed: &[SealedSegment], ledger: u64) -> Vec<u64> {
    sealed
        .iter()
        .filter(|s| s.id < ledger && s.offload.is_none() && s.local)
        .map(|s| s.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::OffloadRecord;

    fn segment(id: u64, size: u64, sealed_ms: u64) -> SealedSegment {
        SealedSegment::for_tests(id, size, sealed_ms)
    }

    #[test]
    fn keeps_the_newest_bytes_under_the_threshold() {
        let sealed = vec![segment(1, 100, 0), segment(2, 100, 0), segment(3, 100, 0)];
        assert_eq!(pick_for_offload(&sealed, 150, -1, 0), vec![1, 2]);
        assert_eq!(pick_for_offload(&sealed, 200, -1, 0), vec![1]);
        assert_eq!(pick_for_offload(&sealed, 300, -1, 0), Vec::<u64>::new());
        assert_eq!(pick_for_offload(&sealed, 0, -1, 0), vec![1, 2, 3]);
        assert!(pick_for_offload(&sealed, -1, -1, 0).is_empty());
    }

    #[test]
    fn already_offloaded_segments_count_but_are_not_picked_again() {
        let mut sealed = vec![segment(1, 100, 0), segment(2, 100, 0), segment(3, 100, 0)];
        sealed[0].offload = Some(OffloadRecord::completed_for_tests());
        assert_eq!(pick_for_offload(&sealed, 50, -1, 0), vec![2, 3]);
    }

    #[test]
    fn age_threshold_picks_old_segments() {
        let sealed = vec![segment(1, 10, 1_000), segment(2, 10, 9_000)];
        assert_eq!(pick_for_offload(&sealed, -1, 5, 10_000), vec![1]);
    }

    #[test]
    fn manual_offload_covers_segments_before_the_message_id() {
        let sealed = vec![segment(1, 1, 0), segment(2, 1, 0), segment(3, 1, 0)];
        assert_eq!(pick_before(&sealed, 3), vec![1, 2]);
        assert!(pick_before(&sealed, 1).is_empty());
    }

    #[test]
    fn namespace_policies_persist_and_fall_back_to_the_broker() {
        let dir = tempfile::tempdir().unwrap();
        let config = OffloadConfig::default();
        let ns = NamespaceName::new("t", "ns").unwrap();
        let policies = Policies::load(dir.path(), &config).unwrap();
        assert_eq!(policies.effective(&ns).threshold_bytes, -1);
        policies
            .update(&ns, |p| p.offload_threshold = Some(10 << 20))
            .unwrap();
        policies
            .update(&ns, |p| p.offload_deletion_lag_ms = Some(60_000))
            .unwrap();
        let reloaded = Policies::load(dir.path(), &config).unwrap();
        let effective = reloaded.effective(&ns);
        assert_eq!(effective.threshold_bytes, 10 << 20);
        assert_eq!(effective.deletion_lag, Duration::from_secs(60));
        reloaded
            .update(&ns, |p| p.offload_threshold = None)
            .unwrap();
        assert_eq!(reloaded.effective(&ns).threshold_bytes, -1);
    }
}
