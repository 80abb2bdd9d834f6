//! Deleting segments everywhere: retention, `topics truncate` and `topics delete`.
//!
//! A deletion is recorded before anything is removed, and removed in an order that never lets a
//! reader see a segment whose objects are half gone:
//!
//! 1. **Local record** (the commit point on this mount): the segments move from the topic's
//!    log to its manifest's `deleting` list (retention, truncate), or the whole topic directory
//!    moves under `<data-dir>/deleting/` (topic deletion). Listings, opens and offloads stop
//!    seeing them at once, and the kernel is told to forget their names.
//! 2. **Catalog**: one commit of `SegmentDeleted` (with the offload's uuid) for every segment
//!    that has objects, under the topic's lock, so no offload of the topic commits in between.
//!    Read-only mounts stop showing the segments at their next refresh.
//! 3. **Objects**: once the deletion grace has passed since step 1 (`--deletion-grace`, 30 s:
//!    read-only mounts refresh well within it, so none shows a segment whose objects are
//!    gone), the data and index objects are deleted (a multipart upload still open is
//!    aborted). An object that a file handle of this mount still reads waits until the handle
//!    is closed, as an unlinked file stays readable while open.
//! 4. **Local files**, then the record (or the topic's directory) goes.
//!
//! A crash anywhere leaves the record of step 1, and the pending deletion is finished at the
//! next start: each step is idempotent (a missing object or file is fine; a catalog record
//! already gone is left alone). A step that fails is retried with a growing delay.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{error, info, warn};

use super::OffloadError;
use super::service::{Offloader, blocking, now_ms};
use crate::catalog::Change;
use crate::log::{DeletedSegment, LogError, Topic, TopicTombstone};
use crate::name::TopicName;
use crate::store::StoreError;

/// First wait before a failed deletion is tried again; it doubles up to the maximum.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(120);

/// What deletion asks of, and tells, the mounted filesystem.
pub trait MountView: Send + Sync {
    /// Whether an open file handle still reads this object: its deletion waits for it.
    fn reads_object(&self, data_key: &str) -> bool;
    /// The oldest segment of the topic that readers hold (open, or a reading process's last
    /// open): retention deletes only segments before it, as Pulsar's trims only ledgers before
    /// the slowest cursor.
    fn retention_floor(&self, topic: &TopicName) -> Option<u64>;
    /// The segment left the topic: the kernel forgets its name.
    fn segment_gone(&self, topic: &TopicName, id: u64);
    /// The segment's local copy went: the kernel forgets its cached attributes (`du`).
    fn local_copy_gone(&self, topic: &TopicName, id: u64);
}

impl Offloader {
    /// How long a deleted segment's objects stay in the bucket after its deletion is
    /// recorded (`--deletion-grace`), so that read-only mounts stop showing it first.
    pub fn set_deletion_grace(&self, grace: Duration) {
        self.deletion_grace_ms
            .store(grace.as_millis() as u64, Ordering::Relaxed);
    }

    fn deletion_grace(&self) -> Duration {
        Duration::from_millis(self.deletion_grace_ms.load(Ordering::Relaxed))
    }

    /// Tells deletion about the mounted filesystem (after it is mounted).
    pub fn attach_view(&self, view: Arc<dyn MountView>) {
        let _ = self.view.set(view);
    }

    pub(super) fn tell_view(&self, what: impl FnOnce(&dyn MountView)) {
        if let Some(view) = self.view.get() {
            what(view.as_ref());
        }
    }

    /// Applies retention to one topic: the segments its policy picks leave the log now; their
    /// objects and files go in the background. Returns how many were picked.
    pub(crate) async fn apply_retention(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        now: u64,
    ) -> Result<usize, OffloadError> {
        let Some(policy) = self.policies.retention(&topic.name().namespace_name()) else {
            return Ok(0);
        };
        let ids = topic.with_sealed(|sealed, active| policy.pick(sealed, active.size, now));
        if ids.is_empty() {
            return Ok(0);
        }
        let view = self.view.get().cloned();
        let name = topic.name().clone();
        let held = move || view.as_ref().and_then(|v| v.retention_floor(&name));
        let taken = self.take_out(topic, ids, held).await?;
        if taken > 0 {
            info!(topic = %topic.name(), segments = taken, policy = %policy, "retention deletes the oldest segments");
        }
        Ok(taken)
    }

    /// `topics truncate`: every sealed segment leaves the log; the active one stays.
    pub async fn truncate(self: &Arc<Self>, name: &TopicName) -> Result<usize, OffloadError> {
        let topic = self.log.topic(name)?;
        let ids: Vec<u64> = topic.snapshot().sealed.iter().map(|s| s.id).collect();
        info!(topic = %name, segments = ids.len(), "truncating the topic");
        self.take_out(&topic, ids, || None).await
    }

    /// `topics delete`: the topic leaves the tree at once with everything it holds; its
    /// objects and files go in the background.
    pub async fn delete_topic(self: &Arc<Self>, name: &TopicName) -> Result<(), OffloadError> {
        let log = Arc::clone(&self.log);
        let removed = name.clone();
        let tomb = blocking(move || log.delete_topic(&removed)).await?;
        info!(topic = %name, segments = tomb.segments.len(), "topic deleted; removing its segments and objects");
        self.deletions_due.store(0, Ordering::Relaxed);
        self.drain_deletions_in_background();
        Ok(())
    }

    /// Takes `ids` out of the log, all but those at or after the segment `held` names.
    async fn take_out(
        self: &Arc<Self>,
        topic: &Arc<Topic>,
        ids: Vec<u64>,
        held: impl Fn() -> Option<u64> + Send + 'static,
    ) -> Result<usize, OffloadError> {
        let t = Arc::clone(topic);
        let taken =
            blocking(move || t.begin_delete(&ids, held, std::time::SystemTime::now())).await?;
        for segment in &taken {
            self.tell_view(|v| v.segment_gone(topic.name(), segment.id));
        }
        self.deletions_due.store(0, Ordering::Relaxed);
        self.drain_deletions_in_background();
        Ok(taken.len())
    }

    /// Starts finishing every pending deletion, unless that is already running or a failure
    /// asked to wait.
    pub(super) fn drain_deletions_in_background(self: &Arc<Self>) {
        if !*self.recovered.borrow() || now_ms() < self.deletions_due.load(Ordering::Relaxed) {
            return;
        }
        if self.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let result = this.drain_deletions().await;
            this.draining.store(false, Ordering::Release);
            match result {
                Ok(()) => {
                    this.deletion_failures.store(0, Ordering::Relaxed);
                }
                Err(e) => {
                    this.metrics.deletion_errors.inc();
                    let failures = this.deletion_failures.fetch_add(1, Ordering::Relaxed);
                    let wait = RETRY_FIRST
                        .saturating_mul(1 << failures.min(16))
                        .min(RETRY_MAX);
                    this.deletions_due
                        .store(now_ms() + wait.as_millis() as u64, Ordering::Relaxed);
                    error!(error = %e, retry_in = ?wait, "deleting segments failed; the deletion is recorded and is tried again");
                }
            }
        });
    }

    /// Finishes every pending deletion: segments taken out of live topics, then deleted topics.
    /// Segments a reader still holds open are left for a later pass.
    pub(crate) async fn drain_deletions(self: &Arc<Self>) -> Result<(), OffloadError> {
        for topic in self.log.all_topics() {
            let doomed = topic.deleting();
            if doomed.is_empty() {
                continue;
            }
            for id in self.delete_from_bucket(topic.name(), &doomed).await? {
                let t = Arc::clone(&topic);
                blocking(move || t.finish_delete(id)).await?;
                self.metrics.segments_deleted.inc();
                info!(topic = %topic.name(), segment = id, "segment deleted: local copy, objects and catalog record");
            }
        }
        let log = Arc::clone(&self.log);
        let tombs = blocking(move || Ok::<_, LogError>(log.tombstones())).await?;
        for tomb in tombs {
            let done = self.delete_from_bucket(&tomb.topic, &tomb.segments).await?;
            if done.len() < tomb.segments.len() {
                continue;
            }
            let log = Arc::clone(&self.log);
            let buried: TopicTombstone = tomb.clone();
            blocking(move || log.bury(&buried)).await?;
            self.metrics
                .segments_deleted
                .inc_by(tomb.segments.len() as u64);
            info!(topic = %tomb.topic, segments = tomb.segments.len(), "deleted topic removed: local files, objects and catalog records");
        }
        Ok(())
    }

    /// Steps 2 and 3 for segments of one topic; returns the ids whose objects are gone (all
    /// but those an open file handle still reads).
    async fn delete_from_bucket(
        &self,
        topic: &TopicName,
        segments: &[DeletedSegment],
    ) -> Result<Vec<u64>, OffloadError> {
        let mut done: Vec<u64> = segments
            .iter()
            .filter(|d| d.segment.offload.is_none())
            .map(|d| d.segment.id)
            .collect();
        let with_objects: Vec<_> = segments
            .iter()
            .filter_map(|d| {
                d.segment
                    .offload
                    .as_ref()
                    .map(|r| (d.segment.id, d.deleted_ms, r))
            })
            .collect();
        if with_objects.is_empty() {
            return Ok(done);
        }
        {
            // Under the topic's lock, so that an offload of it running now has committed (or
            // failed) first; the catalog's records are read only then.
            let lock = self.topic_lock(topic);
            let _held = lock.lock().await;
            self.ensure_lease().await?;
            let state = self.catalog.state();
            let changes: Vec<Change> = with_objects
                .iter()
                .filter(|(id, _, record)| {
                    state
                        .segment(topic, *id)
                        .is_some_and(|entry| entry.uuid == record.uuid)
                })
                .map(|(id, _, record)| Change::SegmentDeleted {
                    topic: topic.to_string(),
                    id: *id,
                    uuid: Some(record.uuid.clone()),
                })
                .collect();
            drop(state);
            if !changes.is_empty() {
                self.catalog.commit(changes).await?;
            }
        }
        let grace = self.deletion_grace();
        for (id, deleted_ms, record) in with_objects {
            if now_ms() < deleted_ms.saturating_add(grace.as_millis() as u64) {
                // Read-only mounts of the bucket stop showing it at their next refresh first.
                continue;
            }
            if self
                .view
                .get()
                .is_some_and(|v| v.reads_object(&record.data_key))
            {
                self.note_deferred(topic, id, &record.data_key);
                continue;
            }
            if let Some(upload_id) = record
                .upload_id
                .as_deref()
                .filter(|_| !record.is_complete())
                && let Err(e) = self
                    .store
                    .abort_multipart(&record.data_key, upload_id)
                    .await
            {
                // Gone already (completed or aborted): nothing is left to abort.
                warn!(topic = %topic, segment = id, error = %e, "cannot abort the segment's multipart upload");
            }
            for key in [&record.data_key, &record.index_key] {
                match self.store.delete(key).await {
                    Ok(()) | Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.deferred
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&record.data_key);
            done.push(id);
        }
        Ok(done)
    }

    /// Says once per segment that its objects wait for the files open on it.
    fn note_deferred(&self, topic: &TopicName, id: u64, data_key: &str) {
        let mut noted = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
        if noted.insert(data_key.to_string()) {
            info!(topic = %topic, segment = id, "a deleted segment's objects stay until the files open on it are closed");
        }
    }
}
