//! Settling the past against the bucket: at start, and whenever a topic holds an offload
//! attempt that no running task owns.
//!
//! * The catalog is read first (retried until the store answers: nothing is offloaded before).
//! * Namespace policies: the bucket's are adopted; ones only the data directory knows (written
//!   by a tierfs from before the catalog) are committed to it.
//! * Segments whose offload completed locally but that the catalog lacks (the same upgrade
//!   case) are committed: republished, never uploaded again.
//! * An attempt a crash (or a commit of unknown outcome) left behind is settled: if the
//!   catalog records its uuid, it completed, and is marked so locally (rolled forward);
//!   otherwise its multipart upload is aborted, its objects deleted, its intent cleared and
//!   the segment offloaded again (rolled back). Only uploads of the attempt's own key — a key
//!   holding a uuid only this data directory ever used — are aborted.

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use super::OffloadError;
use super::attempt::catalog_entry;
use super::service::{Offloader, blocking};
use crate::catalog::{Change, Lease, LeaseError};
use crate::log::Topic;
use crate::name::NamespaceName;

/// Longest wait between two tries to read the catalog at start.
const MAX_LOAD_BACKOFF: Duration = Duration::from_secs(30);

impl Offloader {
    /// At start: reads the catalog, reconciles policies and completed offloads with it, then
    /// lets offloads run, settling interrupted attempts first.
    pub async fn recover(self: &Arc<Self>) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.catalog.open_for_writing().await {
                Ok(()) => {
                    self.set_unavailable(None);
                    break;
                }
                Err(e) => {
                    self.set_unavailable(Some(e.to_string()));
                    error!(error = %e, retry_in = ?delay, "cannot read the bucket's catalog; offloads wait for it");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_LOAD_BACKOFF);
                }
            }
        }
        if !self.take_lease().await {
            return;
        }
        if let Err(e) = self.reconcile_policies().await {
            error!(error = %e, "cannot reconcile namespace policies with the bucket");
        }
        for topic in self.log.all_topics() {
            if let Err(e) = self.republish(&topic).await {
                error!(topic = %topic.name(), error = %e, "cannot record completed offloads in the bucket's catalog");
            }
        }
        self.recovered.send_replace(true);
        for topic in self.log.all_topics() {
            if has_unsettled(&topic) {
                info!(topic = %topic.name(), "settling offloads a crash interrupted");
                if let Err(e) = self.start(Arc::clone(&topic), Vec::new()) {
                    warn!(topic = %topic.name(), error = %e, "cannot settle interrupted offloads");
                }
            }
        }
    }

    /// Takes the writer lease unless the mount already did; retried while the store fails.
    /// Returns false when another writer holds it (offloads are halted).
    async fn take_lease(&self) -> bool {
        if self.lease.get().is_some() {
            return true;
        }
        let mut delay = Duration::from_millis(200);
        loop {
            let taken = Lease::acquire(
                Arc::clone(&self.store),
                self.catalog.keys(),
                &self.lease_settings.data_dir,
                self.lease_settings.take_over,
                self.catalog.conditional_writes(),
            )
            .await;
            match taken {
                Ok(lease) => {
                    self.set_unavailable(None);
                    let _ = self.lease.set(Arc::new(lease));
                    return true;
                }
                Err(e @ LeaseError::Held { .. }) => {
                    self.halt(e.to_string());
                    return false;
                }
                Err(e) => {
                    self.set_unavailable(Some(e.to_string()));
                    error!(error = %e, retry_in = ?delay, "cannot take the writer lease; offloads wait for it");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_LOAD_BACKOFF);
                }
            }
        }
    }

    async fn reconcile_policies(&self) -> Result<(), OffloadError> {
        let bucket = self.catalog.state().policies().clone();
        let local = self.policies.all();
        let only_local: Vec<Change> = local
            .iter()
            .filter(|(ns, _)| !bucket.contains_key(*ns))
            .map(|(ns, policy)| Change::Policy {
                namespace: ns.clone(),
                policy: Some(policy.clone()),
            })
            .collect();
        if !only_local.is_empty() {
            info!(
                namespaces = only_local.len(),
                "recording namespace policies in the bucket's catalog"
            );
            self.ensure_lease().await?;
            self.catalog.commit(only_local).await?;
        }
        let adopted = self.catalog.state().policies().clone();
        if adopted != local {
            info!("adopting the namespace policies recorded in the bucket");
        }
        // A small file, once at start: written in place rather than off the workers.
        self.policies.replace_all(adopted)?;
        Ok(())
    }

    /// Commits the topic's locally completed offloads that the catalog lacks.
    async fn republish(&self, topic: &Arc<Topic>) -> Result<(), OffloadError> {
        let state = self.catalog.state();
        let mut missing = Vec::new();
        for segment in topic.snapshot().sealed {
            let Some(record) = segment.offload.as_ref().filter(|r| r.is_complete()) else {
                continue;
            };
            match state.segment(topic.name(), segment.id) {
                Some(entry) if entry.uuid == record.uuid => {}
                Some(entry) => warn!(
                    topic = %topic.name(),
                    segment = segment.id,
                    local = %record.uuid,
                    bucket = %entry.uuid,
                    "the bucket records another copy of this segment than the data directory; the bucket's is the one readers see"
                ),
                None => missing.push(Change::Offloaded {
                    topic: topic.name().to_string(),
                    segment: catalog_entry(
                        &segment,
                        record,
                        record.completed_ms.unwrap_or(record.started_ms),
                    ),
                }),
            }
        }
        if !missing.is_empty() {
            info!(topic = %topic.name(), segments = missing.len(), "republishing completed offloads in the bucket's catalog");
            self.ensure_lease().await?;
            self.catalog.commit(missing).await?;
        }
        Ok(())
    }

    /// Settles every attempt of `topic` that no task is running (the caller holds the topic's
    /// offload slot): completed ones are marked so, the rest cleaned. Returns the segments to
    /// offload again.
    pub(super) async fn settle(&self, topic: &Arc<Topic>) -> Result<Vec<u64>, OffloadError> {
        if !has_unsettled(topic) {
            return Ok(Vec::new());
        }
        self.catalog.refresh().await?;
        let state = self.catalog.state();
        let mut retry = Vec::new();
        for segment in topic.snapshot().sealed {
            let Some(record) = segment.offload.clone().filter(|r| !r.is_complete()) else {
                continue;
            };
            let id = segment.id;
            match state.segment(topic.name(), id) {
                Some(entry) if entry.uuid == record.uuid => {
                    info!(topic = %topic.name(), segment = id, "an interrupted offload had reached the bucket's catalog; completing it");
                    self.mark_complete(topic, id, entry.offloaded_ms).await?;
                }
                _ => {
                    warn!(topic = %topic.name(), segment = id, key = %record.data_key, "cleaning an offload interrupted by a crash");
                    self.discard_attempt(&record).await;
                    let t = Arc::clone(topic);
                    blocking(move || t.update_sealed(id, |s| s.offload = None)).await?;
                    retry.push(id);
                }
            }
        }
        Ok(retry)
    }

    /// Records a namespace's policy in the bucket's catalog (before the data directory).
    pub async fn record_policy(
        &self,
        ns: &NamespaceName,
        policy: &super::NamespacePolicy,
    ) -> Result<(), OffloadError> {
        let policy = (*policy != super::NamespacePolicy::default()).then(|| policy.clone());
        self.ensure_lease().await?;
        self.catalog
            .commit(vec![Change::Policy {
                namespace: ns.to_string(),
                policy,
            }])
            .await?;
        Ok(())
    }
}

/// Whether the topic holds an offload attempt that has not completed.
pub(super) fn has_unsettled(topic: &Topic) -> bool {
    topic.with_sealed(|sealed, _| {
        sealed
            .iter()
            .any(|s| s.offload.as_ref().is_some_and(|r| !r.is_complete()))
    })
}
