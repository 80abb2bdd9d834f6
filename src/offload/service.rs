//! The offload service: triggers (a new segment, an admin request, retries), the two-phase
//! offload of each segment, recovery at start, and the deletion of local copies after the lag.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tracing::{debug, error, info, warn};

use super::OffloadError;
use super::index_object::{IndexObject, block_crcs as block_crcs_of};
use super::layout::Layout;
use super::policy::{Policies, pick_before, pick_for_offload};
use super::remote_manifest::RemoteManifest;
use super::status::{MessageId, OffloadStatus, Progress};
use super::upload::PartUpload;
use crate::config::OffloadConfig;
use crate::log::{LocalLog, OffloadRecord, SealedSegment, Topic, to_millis};
use crate::metrics::Metrics;
use crate::name::{NamespaceName, TopicName};

/// What `scan-offloaded` found.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanReport {
    /// Object URL and size.
    pub unreferenced: Vec<(String, u64)>,
    /// Object URL and upload id.
    pub stale_uploads: Vec<(String, String)>,
    pub deleted: bool,
}
use crate::store::ObjectStore;

/// How often local copies past their deletion lag are looked for.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);
/// How often automatic offload is re-evaluated for every topic (age thresholds, retries).
const REEVALUATE_EVERY: u32 = 15;

pub struct Offloader {
    /// False until interrupted offloads are cleaned: new offloads wait for it.
    recovered: std::sync::atomic::AtomicBool,
    metrics: Arc<Metrics>,
    log: Arc<LocalLog>,
    store: Arc<dyn ObjectStore>,
    config: OffloadConfig,
    layout: Layout,
    policies: Policies,
    progress: Mutex<HashMap<TopicName, Arc<Progress>>>,
}

impl std::fmt::Debug for Offloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offloader")
            .field("driver", &self.config.driver)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::log::LogError> + Send + 'static,
) -> Result<T, OffloadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| OffloadError::Task(e.to_string()))?
        .map_err(OffloadError::from)
}

fn now_ms() -> u64 {
    to_millis(SystemTime::now())
}

impl Offloader {
    pub fn new(
        log: Arc<LocalLog>,
        store: Arc<dyn ObjectStore>,
        config: OffloadConfig,
        policies: Policies,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            recovered: std::sync::atomic::AtomicBool::new(false),
            metrics,
            layout: Layout::new(&config.prefix),
            log,
            store,
            config,
            policies,
            progress: Mutex::new(HashMap::new()),
        })
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

    pub fn status(&self, topic: &TopicName) -> OffloadStatus {
        self.progress(topic).snapshot()
    }

    /// Automatic offload: called whenever a segment of `topic` seals, and periodically.
    pub fn evaluate(self: &Arc<Self>, topic: &TopicName) {
        let Ok(handle) = self.log.topic(topic) else {
            return;
        };
        let policy = self.policies.effective(&topic.namespace_name());
        if policy.threshold_bytes < 0 && policy.threshold_seconds < 0 {
            return;
        }
        let sealed = handle.snapshot().sealed;
        let ids = pick_for_offload(
            &sealed,
            policy.threshold_bytes,
            policy.threshold_seconds,
            now_ms(),
        );
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
        self.start(handle, ids)
    }

    fn start(self: &Arc<Self>, topic: Arc<Topic>, ids: Vec<u64>) -> Result<(), OffloadError> {
        if !self.recovered.load(Ordering::SeqCst) {
            return Err(OffloadError::Recovering);
        }
        let progress = self.progress(topic.name());
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
            let uploaded = Arc::new(AtomicU64::new(0));
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
                if let Err(e) = result {
                    error!(topic = %topic.name(), segment = id, error = %e, "offload failed");
                    progress.fail(e.to_string());
                    return;
                }
            }
            progress.succeed(first_unoffloaded(&topic));
        });
        Ok(())
    }

    /// Offloads one sealed segment, two-phase; on failure nothing of the attempt remains.
    async fn offload_segment(
        &self,
        topic: &Arc<Topic>,
        id: u64,
        uploaded: &Arc<AtomicU64>,
    ) -> Result<(), OffloadError> {
        let Some(segment) = topic.sealed_segment(id) else {
            return Ok(()); // the topic moved on; nothing to do
        };
        if segment.offload.is_some() || !segment.local {
            return Ok(());
        }
        let name = topic.name().clone();
        let uuid = uuid::Uuid::new_v4().to_string();
        let record = OffloadRecord {
            data_key: self.layout.data_key(&name, id, &uuid),
            index_key: self.layout.index_key(&name, id, &uuid),
            uuid,
            upload_id: None,
            started_ms: now_ms(),
            completed_ms: None,
        };
        let intent = record.clone();
        let t = Arc::clone(topic);
        blocking(move || t.update_sealed(id, |s| s.offload = Some(intent))).await?;
        info!(topic = %name, segment = id, key = %record.data_key, bytes = segment.size, "offloading segment");
        let started = std::time::Instant::now();
        match self.upload(topic, &segment, &record, uploaded).await {
            Ok(()) => {
                let t = Arc::clone(topic);
                blocking(move || {
                    t.update_sealed(id, |s| {
                        if let Some(r) = s.offload.as_mut() {
                            r.completed_ms = Some(now_ms());
                        }
                    })
                })
                .await?;
                self.publish_manifest(topic).await;
                let secs = started.elapsed().as_secs_f64();
                self.metrics.offloads.inc();
                self.metrics.offload_bytes.inc_by(segment.size);
                self.metrics.offload_duration.observe(secs);
                info!(topic = %name, segment = id, bytes = segment.size, seconds = secs, "offload complete");
                Ok(())
            }
            Err(e) => {
                self.metrics.offload_errors.inc();
                let recorded = topic
                    .sealed_segment(id)
                    .and_then(|s| s.offload)
                    .unwrap_or(record);
                self.discard_attempt(&recorded).await;
                let t = Arc::clone(topic);
                if let Err(clear) =
                    blocking(move || t.update_sealed(id, |s| s.offload = None)).await
                {
                    error!(topic = %name, segment = id, error = %clear, "cannot clear the failed offload's record; it is cleaned at the next start");
                }
                Err(e)
            }
        }
    }

    async fn upload(
        &self,
        topic: &Arc<Topic>,
        segment: &SealedSegment,
        record: &OffloadRecord,
        uploaded: &Arc<AtomicU64>,
    ) -> Result<(), OffloadError> {
        let id = segment.id;
        let path = topic.sealed_data_path(id);
        let upload_id = self.store.create_multipart(&record.data_key).await?;
        let t = Arc::clone(topic);
        let recorded_id = upload_id.clone();
        blocking(move || {
            t.update_sealed(id, |s| {
                if let Some(r) = s.offload.as_mut() {
                    r.upload_id = Some(recorded_id);
                }
            })
        })
        .await?;
        let started = std::time::Instant::now();
        let parts = PartUpload {
            store: &self.store,
            key: &record.data_key,
            upload_id: &upload_id,
            file: &path,
            size: segment.size,
            part_size: self.config.max_block_size,
            concurrency: self.config.max_threads,
            block_size: self.config.read_buffer_size,
            progress: uploaded,
        }
        .run()
        .await?;
        if parts.crc32c != segment.crc32c {
            return Err(OffloadError::Log(crate::log::LogError::Corrupt {
                path,
                reason: "the segment's bytes no longer match the CRC32C recorded when it sealed"
                    .into(),
            }));
        }
        let uploaded_in = started.elapsed();
        self.store
            .complete_multipart(&record.data_key, &upload_id, parts.parts)
            .await?;
        let completed_in = started.elapsed();
        let index = self.index_object(topic, segment, parts.block_crcs).await?;
        debug!(
            parts_s = uploaded_in.as_secs_f64(),
            complete_s = (completed_in - uploaded_in).as_secs_f64(),
            index_s = (started.elapsed() - completed_in).as_secs_f64(),
            "offload phases"
        );
        self.store
            .put(&record.index_key, Bytes::from(index.encode()))
            .await?;
        Ok(())
    }

    /// Builds a segment's index object: entry ends from the local entry index, block checksums
    /// from the upload when it computed them, else from the local file.
    async fn index_object(
        &self,
        topic: &Arc<Topic>,
        segment: &SealedSegment,
        block_crcs: Option<Vec<u32>>,
    ) -> Result<IndexObject, OffloadError> {
        let (t, id, size, crc) = (Arc::clone(topic), segment.id, segment.size, segment.crc32c);
        let block = self.config.read_buffer_size.min(u64::from(u32::MAX)) as usize;
        tokio::task::spawn_blocking(move || {
            let block_crcs = match block_crcs {
                Some(crcs) => crcs,
                None => {
                    // Parts were not whole blocks: read the file again, a block at a time.
                    let path = t.sealed_data_path(id);
                    let read = |source| OffloadError::Read {
                        path: path.clone(),
                        source,
                    };
                    let mut file = std::fs::File::open(&path).map_err(read)?;
                    let mut crcs = Vec::new();
                    let mut buf = vec![0u8; block];
                    loop {
                        let n = std::io::Read::read(&mut file, &mut buf).map_err(read)?;
                        if n == 0 {
                            break;
                        }
                        let mut filled = n;
                        while filled < block {
                            let more =
                                std::io::Read::read(&mut file, &mut buf[filled..]).map_err(read)?;
                            if more == 0 {
                                break;
                            }
                            filled += more;
                        }
                        crcs.extend(block_crcs_of(&buf[..filled], block));
                    }
                    crcs
                }
            };
            let entry_ends = t.sealed_index(id)?.into_iter().map(|r| r.end).collect();
            Ok(IndexObject {
                segment: id,
                size,
                block_size: block as u32,
                segment_crc32c: crc,
                entry_ends,
                block_crcs,
            })
        })
        .await
        .map_err(|e| OffloadError::Task(e.to_string()))?
    }

    /// Aborts an attempt's multipart upload and deletes whatever objects it wrote.
    async fn discard_attempt(&self, record: &OffloadRecord) {
        if let Some(upload_id) = &record.upload_id
            && let Err(e) = self
                .store
                .abort_multipart(&record.data_key, upload_id)
                .await
        {
            warn!(key = %record.data_key, error = %e, "cannot abort the multipart upload");
        }
        match self.store.list_multipart(&record.data_key).await {
            Ok(uploads) => {
                for upload in uploads.iter().filter(|u| u.key == record.data_key) {
                    if let Err(e) = self
                        .store
                        .abort_multipart(&upload.key, &upload.upload_id)
                        .await
                    {
                        warn!(key = %upload.key, error = %e, "cannot abort the multipart upload");
                    }
                }
            }
            Err(e) => warn!(key = %record.data_key, error = %e, "cannot list multipart uploads"),
        }
        for key in [&record.data_key, &record.index_key] {
            if let Err(e) = self.store.delete(key).await {
                warn!(key = %key, error = %e, "cannot delete a partial object");
            }
        }
    }

    async fn publish_manifest(&self, topic: &Arc<Topic>) {
        let manifest = RemoteManifest::of(topic.name(), &topic.snapshot().sealed);
        let key = self.layout.manifest_key(topic.name());
        if let Err(e) = self.store.put(&key, Bytes::from(manifest.encode())).await {
            warn!(topic = %topic.name(), error = %e, "cannot write the manifest object; it is rewritten at the next offload");
        }
    }

    /// At start: cleans every attempt a crash interrupted, then offloads those segments again.
    pub async fn recover(self: &Arc<Self>) {
        let mut retries = Vec::new();
        for topic in self.log.all_topics() {
            let interrupted: Vec<SealedSegment> = topic
                .snapshot()
                .sealed
                .into_iter()
                .filter(|s| s.offload.as_ref().is_some_and(|r| !r.is_complete()))
                .collect();
            let mut retry = Vec::new();
            for segment in interrupted {
                let record = segment.offload.clone().expect("filtered on offload");
                warn!(topic = %topic.name(), segment = segment.id, key = %record.data_key, "cleaning an offload interrupted by a crash");
                self.discard_attempt(&record).await;
                let t = Arc::clone(&topic);
                let id = segment.id;
                match blocking(move || t.update_sealed(id, |s| s.offload = None)).await {
                    Ok(_) => retry.push(id),
                    Err(e) => {
                        error!(topic = %topic.name(), segment = id, error = %e, "cannot clear the interrupted offload")
                    }
                }
            }
            self.abort_orphan_uploads(&topic).await;
            if !retry.is_empty() {
                retries.push((topic, retry));
            }
        }
        self.recovered.store(true, Ordering::SeqCst);
        for (topic, retry) in retries {
            info!(topic = %topic.name(), segments = ?retry, "retrying interrupted offloads");
            if let Err(e) = self.start(Arc::clone(&topic), retry) {
                warn!(topic = %topic.name(), error = %e, "cannot retry interrupted offloads");
            }
        }
    }

    /// Aborts multipart uploads under the topic's prefix that no complete offload owns.
    async fn abort_orphan_uploads(&self, topic: &Arc<Topic>) {
        let prefix = self.layout.topic_prefix(topic.name());
        let Ok(uploads) = self.store.list_multipart(&prefix).await else {
            return;
        };
        let sealed = topic.snapshot().sealed;
        for upload in uploads {
            let owned = sealed.iter().any(|s| {
                s.offload
                    .as_ref()
                    .is_some_and(|r| r.data_key == upload.key && !r.is_complete())
            });
            if !owned {
                warn!(key = %upload.key, upload_id = %upload.upload_id, "aborting an orphaned multipart upload");
                if let Err(e) = self
                    .store
                    .abort_multipart(&upload.key, &upload.upload_id)
                    .await
                {
                    warn!(key = %upload.key, error = %e, "cannot abort an orphaned multipart upload");
                }
            }
        }
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
            for segment in topic.snapshot().sealed {
                let due = segment.local
                    && segment
                        .offload
                        .as_ref()
                        .and_then(|r| r.completed_ms)
                        .is_some_and(|done| now >= done.saturating_add(lag.as_millis() as u64));
                if due {
                    let t = Arc::clone(&topic);
                    let id = segment.id;
                    match blocking(move || t.drop_local_copy(id)).await {
                        Ok(()) => {
                            info!(topic = %topic.name(), segment = id, "deleted the local copy of an offloaded segment (deletion lag passed)")
                        }
                        Err(e) => {
                            error!(topic = %topic.name(), segment = id, error = %e, "cannot delete the local copy")
                        }
                    }
                }
            }
            if pass % REEVALUATE_EVERY == 0 {
                self.evaluate(topic.name());
            }
        }
    }

    /// Runs until `stop` resolves: seal notifications and the periodic sweep.
    pub async fn run(
        self: Arc<Self>,
        mut sealed: tokio::sync::mpsc::UnboundedReceiver<TopicName>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        self.recover().await;
        let mut ticker = tokio::time::interval(SWEEP_PERIOD);
        let mut pass = 0u32;
        loop {
            tokio::select! {
                Some(topic) = sealed.recv() => self.evaluate(&topic),
                _ = ticker.tick() => {
                    pass = pass.wrapping_add(1);
                    self.sweep(pass).await;
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Objects under a namespace's prefix that no topic references, and multipart uploads no
    /// offload owns (Pulsar's scanOffloadedLedgers); with `delete`, removes them.
    pub async fn scan(&self, ns: &NamespaceName, delete: bool) -> Result<ScanReport, OffloadError> {
        let prefix = self.layout.namespace_prefix(&ns.tenant, &ns.namespace);
        // List first, then look at the manifests: an offload that starts in between records
        // its intent before uploading, so anything listed is already known when we look.
        let objects = self.store.list(&prefix).await?;
        let uploads = self.store.list_multipart(&prefix).await?;
        let mut referenced = std::collections::HashSet::new();
        let mut uploading = std::collections::HashSet::new();
        for topic in self.log.topics(ns)? {
            let name = TopicName::new(&ns.tenant, &ns.namespace, &topic)
                .map_err(crate::log::LogError::from)?;
            let handle = self.log.topic(&name)?;
            referenced.insert(self.layout.manifest_key(&name));
            for segment in handle.snapshot().sealed {
                if let Some(record) = segment.offload {
                    if !record.is_complete() {
                        uploading.insert(record.data_key.clone());
                    }
                    referenced.insert(record.data_key);
                    referenced.insert(record.index_key);
                }
            }
        }
        let mut report = ScanReport::default();
        for object in objects {
            if !referenced.contains(&object.key) {
                report
                    .unreferenced
                    .push((self.store.url(&object.key), object.size));
                if delete {
                    self.store.delete(&object.key).await?;
                }
            }
        }
        for upload in uploads {
            if !uploading.contains(&upload.key) {
                report
                    .stale_uploads
                    .push((self.store.url(&upload.key), upload.upload_id.clone()));
                if delete {
                    self.store
                        .abort_multipart(&upload.key, &upload.upload_id)
                        .await?;
                }
            }
        }
        report.deleted = delete;
        if delete && !(report.unreferenced.is_empty() && report.stale_uploads.is_empty()) {
            info!(namespace = %ns, objects = report.unreferenced.len(), uploads = report.stale_uploads.len(), "removed unreferenced objects and stale uploads");
        }
        Ok(report)
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
