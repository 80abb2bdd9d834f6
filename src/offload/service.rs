//! The offload service: what starts offloads (a new segment, an admin request, the periodic
//! re-evaluation), the one task per topic that runs them in order, the deletion of local
//! copies after the lag, and the periodic retention pass (`deletion.rs` deletes). One segment's attempt is `attempt.rs`; settling the past against
//! the bucket is `recovery.rs`; `scan-offloaded` is `scan.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use super::OffloadError;
use super::backoff::{Failure, Failures};
use super::layout::Layout;
use super::policy::{Policies, pick_before, pick_for_offload};
use super::recovery::has_unsettled;
use super::status::{MessageId, OffloadStatus, Progress};
use crate::catalog::lease::LEASE_TTL;
use crate::catalog::{Catalog, CatalogError, Lease, LeaseError};
use crate::config::OffloadConfig;
use crate::log::{LocalLog, Topic, to_millis};
use crate::metrics::Metrics;
use crate::name::TopicName;
use crate::store::ObjectStore;

/// How often local copies past their deletion lag are looked for.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);
/// How often automatic offload is re-evaluated for every topic (age thresholds, retries).
const REEVALUATE_EVERY: u32 = 15;
/// How long a deleted segment's objects stay after its deletion is recorded, by default.
pub const DEFAULT_DELETION_GRACE: Duration = Duration::from_secs(30);

pub struct Offloader {
    /// False until the catalog is read and reconciled: new offloads wait for it.
    pub(super) recovered: tokio::sync::watch::Sender<bool>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) log: Arc<LocalLog>,
    pub(super) store: Arc<dyn ObjectStore>,
    /// The bucket's record of what is offloaded: an offload is complete once it says so.
    pub(super) catalog: Arc<Catalog>,
    pub(super) config: OffloadConfig,
    pub(super) layout: Layout,
    pub(super) policies: Policies,
    progress: Mutex<HashMap<TopicName, Arc<Progress>>>,
    /// Segments whose offload failed, and when automatic offload may try them again.
    failures: Failures,
    /// Set once the refusal to offload (another writer) has been logged.
    fenced_logged: AtomicBool,
    /// The prefix's writer lease, once held; offloads wait for it.
    pub(super) lease: tokio::sync::OnceCell<Arc<Lease>>,
    pub(super) lease_settings: LeaseSettings,
    /// Why offloads stopped for good (the lease was taken, or is held by another writer).
    halted: Mutex<Option<String>>,
    /// Why the catalog could not be read or the lease taken at start, while that lasts.
    pub(super) unavailable: Mutex<Option<String>>,
    /// Set when the mount stops: nothing more is committed.
    stopping: AtomicBool,
    /// Held by a topic's offload run and by deletions of its segments from the bucket, so
    /// that neither commits in the middle of the other.
    topic_locks: Mutex<HashMap<TopicName, Arc<tokio::sync::Mutex<()>>>>,
    /// The mounted filesystem, once mounted (`deletion.rs`).
    pub(super) view: std::sync::OnceLock<Arc<dyn super::deletion::MountView>>,
    /// Whether pending deletions are being finished now.
    pub(super) draining: AtomicBool,
    /// Not before this time (ms) are pending deletions tried again (after a failure).
    pub(super) deletions_due: AtomicU64,
    /// Failed deletion passes in a row.
    pub(super) deletion_failures: std::sync::atomic::AtomicU32,
    /// Deleted segments whose objects wait for open files, already said so in the log.
    pub(super) deferred: Mutex<std::collections::HashSet<String>>,
    /// `--deletion-grace`, in milliseconds (`deletion.rs`).
    pub(super) deletion_grace_ms: AtomicU64,
}

/// How this mount takes the prefix's writer lease.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub data_dir: std::path::PathBuf,
    /// Take the lease even from a writer that looks alive (`--take-over`).
    pub take_over: bool,
}

impl std::fmt::Debug for Offloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offloader")
            .field("driver", &self.config.driver)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::log::LogError> + Send + 'static,
) -> Result<T, OffloadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| OffloadError::Task(e.to_string()))?
        .map_err(OffloadError::from)
}

pub(super) fn now_ms() -> u64 {
    to_millis(SystemTime::now())
}

impl Offloader {
    pub fn new(
        log: Arc<LocalLog>,
        catalog: Arc<Catalog>,
        config: OffloadConfig,
        policies: Policies,
        metrics: Arc<Metrics>,
        lease_settings: LeaseSettings,
    ) -> Arc<Self> {
        let offloader = Arc::new(Self {
            recovered: tokio::sync::watch::Sender::new(false),
            metrics,
            layout: Layout::new(&config.prefix),
            log,
            store: Arc::clone(catalog.store()),
            catalog,
            config,
            policies,
            progress: Mutex::new(HashMap::new()),
            failures: Failures::default(),
            fenced_logged: AtomicBool::new(false),
            lease: tokio::sync::OnceCell::new(),
            lease_settings,
            halted: Mutex::new(None),
            unavailable: Mutex::new(None),
            stopping: AtomicBool::new(false),
            topic_locks: Mutex::new(HashMap::new()),
            view: std::sync::OnceLock::new(),
            draining: AtomicBool::new(false),
            deletions_due: AtomicU64::new(0),
            deletion_failures: std::sync::atomic::AtomicU32::new(0),
            deferred: Mutex::new(std::collections::HashSet::new()),
            deletion_grace_ms: AtomicU64::new(DEFAULT_DELETION_GRACE.as_millis() as u64),
        });
        let weak = Arc::downgrade(&offloader);
        offloader.catalog.guard_commits(Arc::new(move || {
            weak.upgrade()
                .ok_or_else(|| "the offloader is gone".to_string())?
                .may_commit()
        }));
        offloader
    }

    /// Whether a commit may go out now: this mount holds a current lease, was not deposed, and
    /// is not stopping. Asked by the catalog right before each head is written.
    fn may_commit(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err("the mount is stopping".to_string());
        }
        if let Some(reason) = self.halted() {
            return Err(reason);
        }
        match self.lease.get() {
            None => Err("this mount does not hold the writer lease yet".to_string()),
            Some(lease) if !lease.is_current() => Err(format!(
                "the writer lease was not renewed within {:?}",
                LEASE_TTL * 2 / 3
            )),
            Some(_) => Ok(()),
        }
    }

    /// Commits nothing more (the mount is going down); the lease can then be released.
    pub fn stop_committing(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Waits (up to `limit`) until the catalog is read and reconciled at start, so that an
    /// admin request made just after mounting is served rather than refused. Returns early,
    /// with the store's reason, when reading the catalog failed.
    pub async fn wait_recovered(&self, limit: Duration) -> Result<(), OffloadError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if *self.recovered.borrow() {
                return Ok(());
            }
            if let Some(reason) = self.unavailable() {
                return Err(OffloadError::Unavailable(reason));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(OffloadError::Recovering);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Why the bucket cannot be used yet, if reading it failed.
    pub(super) fn unavailable(&self) -> Option<String> {
        self.unavailable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set_unavailable(&self, reason: Option<String>) {
        *self.unavailable.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    /// Hands over a lease the mount took at start.
    pub fn hold_lease(&self, lease: Lease) {
        let _ = self.lease.set(Arc::new(lease));
    }

    /// Stops every offload for good, saying why.
    pub(super) fn halt(&self, reason: String) {
        error!(reason = %reason, "offloads stopped");
        *self.halted.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// Why offloads stopped for good, if they did.
    pub fn halted(&self) -> Option<String> {
        self.halted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether this mount may commit now: it holds the lease and renewed it recently (renewing
    /// it now if the heartbeat is late).
    pub(super) async fn ensure_lease(&self) -> Result<(), OffloadError> {
        if let Some(reason) = self.halted() {
            return Err(OffloadError::Halted(reason));
        }
        let Some(lease) = self.lease.get() else {
            return Err(OffloadError::Recovering);
        };
        if lease.is_current() {
            return Ok(());
        }
        match lease.heartbeat().await {
            Ok(()) => Ok(()),
            Err(e @ LeaseError::Lost { .. }) => {
                self.halt(e.to_string());
                Err(OffloadError::Halted(e.to_string()))
            }
            Err(e) => Err(OffloadError::Lease(e)),
        }
    }

    /// Renews the lease (the run loop's heartbeat); a lease found taken stops offloads.
    async fn heartbeat(&self) {
        if self.halted().is_some() {
            return;
        }
        let Some(lease) = self.lease.get() else {
            return;
        };
        match lease.heartbeat().await {
            Ok(()) => {}
            Err(e @ LeaseError::Lost { .. }) => self.halt(e.to_string()),
            Err(e) => {
                warn!(error = %e, "cannot renew the writer lease; commits wait until it is renewed")
            }
        }
    }

    /// Gives the lease up at a clean unmount, once nothing more can be committed.
    pub async fn release_lease(&self) {
        self.stop_committing();
        if let Some(lease) = self.lease.get()
            && self.halted().is_none()
            && let Err(e) = lease.release().await
        {
            warn!(error = %e, "cannot release the writer lease; it expires by itself");
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The refusal to offload once another writer committed to the prefix's catalog or took
    /// the lease.
    pub(super) fn fenced(&self) -> Option<OffloadError> {
        if let Some(reason) = self.halted() {
            return Some(OffloadError::Halted(reason));
        }
        if !self.catalog.is_fenced() {
            return None;
        }
        let err = match self.catalog.commit_refusal() {
            Some(e) => OffloadError::Catalog(e),
            None => OffloadError::Catalog(CatalogError::Fenced {
                head: self.catalog.keys().head(),
                writer: "unknown".into(),
            }),
        };
        if !self.fenced_logged.swap(true, Ordering::Relaxed) {
            error!(error = %err, "offloads stopped");
        }
        Some(err)
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn config(&self) -> &OffloadConfig {
        &self.config
    }

    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    fn progress(&self, topic: &TopicName) -> Arc<Progress> {
        Arc::clone(
            self.progress
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(topic.clone())
                .or_default(),
        )
    }

    /// The lock a topic's offload runs and bucket deletions take (see the field).
    pub(super) fn topic_lock(&self, topic: &TopicName) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(
            self.topic_locks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(topic.clone())
                .or_default(),
        )
    }

    pub fn status(&self, topic: &TopicName) -> OffloadStatus {
        self.progress(topic).snapshot()
    }

    /// The topic's segments whose offload is failing, by id (for `stats-internal`).
    pub fn failing_segments(&self, topic: &TopicName) -> HashMap<u64, Failure> {
        self.failures.of_topic(topic)
    }

    /// Automatic offload: called whenever a segment of `topic` seals, and periodically.
    pub fn evaluate(self: &Arc<Self>, topic: &TopicName) {
        let Ok(handle) = self.log.topic(topic) else {
            return;
        };
        if self.fenced().is_some() {
            return;
        }
        if has_unsettled(&handle) && !self.progress(topic).is_running() {
            // An attempt whose commit had an unknown outcome: settle it against the bucket.
            if let Err(e) = self.start(Arc::clone(&handle), Vec::new()) {
                warn!(topic = %topic, error = %e, "cannot settle an interrupted offload");
            }
            return;
        }
        let policy = self.policies.effective(&topic.namespace_name());
        if policy.threshold_bytes < 0 && policy.threshold_seconds < 0 {
            return;
        }
        let now = now_ms();
        let mut ids = handle.with_sealed(|sealed, _| {
            pick_for_offload(
                sealed,
                policy.threshold_bytes,
                policy.threshold_seconds,
                now,
            )
        });
        // A failing segment waits for its retry time; the segments after it do not wait.
        ids.retain(|id| self.failures.due(topic, *id, now));
        if ids.is_empty() {
            return;
        }
        match self.start(handle, ids) {
            Ok(()) | Err(OffloadError::AlreadyRunning) => {}
            Err(e) => warn!(topic = %topic, error = %e, "automatic offload not started"),
        }
    }

    /// Manual offload of every segment before `ledger` (Pulsar's "messages before L:0:-1").
    pub fn offload_before(
        self: &Arc<Self>,
        topic: &TopicName,
        ledger: u64,
    ) -> Result<(), OffloadError> {
        let handle = self.log.topic(topic)?;
        let ids = pick_before(&handle.snapshot().sealed, ledger);
        info!(topic = %topic, before = ledger, segments = ?ids, "offload requested");
        // Asked for by hand: failing segments are tried at once, their backoff started afresh.
        for id in &ids {
            self.failures.clear(topic, *id);
        }
        self.start(handle, ids)
    }

    /// Runs one task for the topic: settle earlier attempts no task owns, then offload `ids`
    /// (and the segments settling gave back) in order.
    pub(super) fn start(
        self: &Arc<Self>,
        topic: Arc<Topic>,
        ids: Vec<u64>,
    ) -> Result<(), OffloadError> {
        let progress = self.progress(topic.name());
        if !*self.recovered.borrow() {
            // As Pulsar does when the store refuses: the offload starts, and fails with why.
            let Some(reason) = self.unavailable() else {
                return Err(OffloadError::Recovering);
            };
            if !progress.try_start(0) {
                return Err(OffloadError::AlreadyRunning);
            }
            error!(topic = %topic.name(), error = %reason, "offload failed");
            progress.fail(reason);
            return Ok(());
        }
        let total = ids
            .iter()
            .filter_map(|id| topic.sealed_segment(*id))
            .map(|s| s.size)
            .sum();
        if !progress.try_start(total) {
            return Err(OffloadError::AlreadyRunning);
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let lock = this.topic_lock(topic.name());
            let _held = lock.lock().await;
            let mut ids = ids;
            match this.settle(&topic).await {
                Ok(mut retry) => {
                    retry.retain(|id| !ids.contains(id));
                    ids.splice(0..0, retry);
                    ids.sort_unstable();
                }
                Err(e) => {
                    error!(topic = %topic.name(), error = %e, "cannot settle interrupted offloads");
                    progress.fail(e.to_string());
                    return;
                }
            }
            let uploaded = Arc::new(AtomicU64::new(0));
            let mut failed: Vec<(u64, Failure)> = Vec::new();
            for id in ids {
                let watcher = Arc::clone(&uploaded);
                let report = Arc::clone(&progress);
                let mirror = tokio::spawn(async move {
                    loop {
                        report
                            .uploaded
                            .store(watcher.load(Ordering::Relaxed), Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                });
                let result = this.offload_segment(&topic, id, &uploaded).await;
                mirror.abort();
                progress
                    .uploaded
                    .store(uploaded.load(Ordering::Relaxed), Ordering::Relaxed);
                match result {
                    Ok(()) => this.failures.clear(topic.name(), id),
                    Err(e) => {
                        let failure =
                            this.failures
                                .record(topic.name(), id, &e.to_string(), now_ms());
                        let retry_in = failure.retry_at_ms.saturating_sub(now_ms()) / 1000;
                        error!(topic = %topic.name(), segment = id, attempts = failure.attempts, retry_in_s = retry_in, error = %e, "offload failed; the segment waits before it is tried again, the segments after it go on");
                        failed.push((id, failure));
                    }
                }
            }
            if failed.is_empty() {
                progress.succeed(first_unoffloaded(&topic));
            } else {
                progress.fail(describe_failures(&failed, now_ms()));
            }
        });
        Ok(())
    }

    /// One pass: drop local copies past their deletion lag; every few passes, re-evaluate
    /// automatic offload everywhere.
    async fn sweep(self: &Arc<Self>, pass: u32) {
        let now = now_ms();
        for topic in self.log.all_topics() {
            let lag = self
                .policies
                .effective(&topic.name().namespace_name())
                .deletion_lag;
            let due: Vec<u64> = topic.with_sealed(|sealed, _| {
                sealed
                    .iter()
                    .filter(|segment| {
                        segment.local
                            && segment
                                .offload
                                .as_ref()
                                .and_then(|r| r.completed_ms)
                                .is_some_and(|done| {
                                    now >= done.saturating_add(lag.as_millis() as u64)
                                })
                    })
                    .map(|segment| segment.id)
                    .collect()
            });
            for id in due {
                let t = Arc::clone(&topic);
                match blocking(move || t.drop_local_copy(id)).await {
                    Ok(()) => {
                        self.tell_view(|v| v.local_copy_gone(topic.name(), id));
                        info!(topic = %topic.name(), segment = id, "deleted the local copy of an offloaded segment (deletion lag passed)")
                    }
                    Err(e) => {
                        error!(topic = %topic.name(), segment = id, error = %e, "cannot delete the local copy")
                    }
                }
            }
            if let Err(e) = self.apply_retention(&topic, now).await {
                error!(topic = %topic.name(), error = %e, "retention could not delete segments; it tries again");
            }
            if pass % REEVALUATE_EVERY == 0 {
                self.evaluate(topic.name());
            }
        }
        self.drain_deletions_in_background();
    }

    /// Runs until `stop` resolves: seal notifications and the periodic sweep.
    pub async fn run(
        self: Arc<Self>,
        mut sealed: tokio::sync::mpsc::UnboundedReceiver<TopicName>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        // Heartbeats from the moment a lease is held: recovery may commit for a while.
        let heartbeats = tokio::spawn(Arc::clone(&self).renew_lease(stop.clone()));
        tokio::select! {
            _ = self.recover() => {}
            _ = stop.changed() => {
                heartbeats.abort();
                return;
            }
        }
        let mut ticker = tokio::time::interval(SWEEP_PERIOD);
        let mut pass = 0u32;
        loop {
            tokio::select! {
                Some(topic) = sealed.recv() => self.evaluate(&topic),
                _ = ticker.tick() => {
                    pass = pass.wrapping_add(1);
                    self.sweep(pass).await;
                }
                _ = stop.changed() => {
                    heartbeats.abort();
                    return;
                }
            }
        }
    }

    /// The lease's heartbeat, on a task of its own so that a slow store never holds up the
    /// sweep; each renewal is bounded by the heartbeat period.
    async fn renew_lease(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let period = LEASE_TTL / 3;
        // The first renewal one period on: the lease was just taken (at start or by recovery),
        // and a write to the store as the mount comes up would compete with its first reads.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if tokio::time::timeout(period, self.heartbeat()).await.is_err() {
                        warn!("renewing the writer lease took longer than {period:?}; commits wait until it is renewed");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Whether any offload is running (shutdown waits for none).
    pub fn busy(&self) -> bool {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|p| p.is_running())
    }
}

/// `lastError` of a run in which segments failed: each, with its error and when automatic
/// offload tries it again.
fn describe_failures(failed: &[(u64, Failure)], now_ms: u64) -> String {
    failed
        .iter()
        .map(|(id, f)| {
            format!(
                "segment {id}: {} (failed {} time(s) in a row; automatic offload tries it again in {} s)",
                f.last_error,
                f.attempts,
                f.retry_at_ms.saturating_sub(now_ms).div_ceil(1000)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Pulsar reports the first message not offloaded: entry 0 of the oldest segment still only
/// local (or the active one).
fn first_unoffloaded(topic: &Topic) -> MessageId {
    let snapshot = topic.snapshot();
    let ledger = snapshot
        .sealed
        .iter()
        .find(|s| !s.offloaded())
        .map_or(snapshot.active.id, |s| s.id);
    MessageId {
        ledger_id: ledger as i64,
        entry_id: 0,
        partition_index: -1,
    }
}
