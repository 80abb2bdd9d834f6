//! The catalog: the bucket's own record of everything offloaded under a prefix — every
//! segment of every topic and every namespace's policies — so that the bucket alone is the
//! source of truth. The writer commits to it, read-only mounts follow it, `tierfs recover`
//! rebuilds a data directory from it; all three use this one type.
//!
//! It is a journal with checkpoints (`format.rs` has the objects, `docs/FORMAT.md` the
//! contract):
//!
//! * **Commit** (the writer): PUT `journal/<seq>` with the changes, then — every so often — a
//!   `checkpoint/<seq>` of the whole state, then PUT `head.json` naming `seq`. The head PUT is
//!   the commit point: a journal record past the head's `seq` is debris of a commit that never
//!   happened, and is overwritten by the next one. Where the store honours conditional writes
//!   the head is written `If-Match` its last ETag, so a second writer is detected (`Fenced`)
//!   instead of silently forking the history.
//! * **Cost**: one commit writes its journal record and the head, both O(1) in the length of
//!   any topic; a checkpoint (O(state)) is written only after `max(64, segments / 64)` commits,
//!   so its cost spread over those commits is at most 64 segment records each.
//! * **Refresh** (readers): one conditional GET of the head (`If-None-Match`), answered 304
//!   while nothing changed: O(1) requests whatever the number of topics. When it changed, the
//!   journal records since the reader's sequence number are fetched in parallel (their keys
//!   follow from the numbers; nothing is listed); a reader too far behind, or whose records
//!   were already collected, starts again from the newest checkpoint.
//! * **Collection**: when a checkpoint is written, the journal records and checkpoint older
//!   than the *previous* checkpoint are deleted, so a reader one checkpoint behind still
//!   finds what it needs.

pub mod format;
pub mod lease;
mod state;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tracing::{debug, info, warn};

pub use format::{CatalogKeys, Change, FormatError, Head, SegmentEntry};
pub use lease::{Lease, LeaseError};
pub use state::CatalogState;

use format::{Checkpoint, FORMAT, JournalRecord};

use crate::store::{Fetched, ObjectStore, PutCondition, StoreError};

/// Fewest commits between two checkpoints.
const CHECKPOINT_MIN_COMMITS: u64 = 64;
/// A checkpoint is written once the commits since the last one reach the segment count over
/// this: each commit then pays for at most this many segment records of checkpoint.
const CHECKPOINT_SPREAD: u64 = 64;
/// Journal records fetched at once.
const PARALLEL_GETS: usize = 32;
/// How often a commit that met a transient store error is tried in all.
const COMMIT_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Someone else committed: this process is no longer the prefix's only writer.
    #[error(
        "the catalog at {head} was changed by another writer ({writer}); this mount stops committing offloads"
    )]
    Fenced { head: String, writer: String },
}

impl CatalogError {
    pub fn is_transient(&self) -> bool {
        matches!(self, CatalogError::Store(e) if e.is_transient())
    }
}

#[derive(Debug, Default)]
struct Loaded {
    state: Arc<CatalogState>,
    head: Option<Head>,
    etag: Option<String>,
    /// The in-memory state may differ from the bucket (a commit failed after applying its
    /// changes): the next commit reloads first.
    stale: bool,
    /// Whether the bucket was read at all (an absent head counts): commits need it.
    known: bool,
}

pub struct Catalog {
    store: Arc<dyn ObjectStore>,
    keys: CatalogKeys,
    loaded: RwLock<Loaded>,
    commits: tokio::sync::Mutex<()>,
    /// Whether the store refuses a conditional write whose condition fails.
    conditional: AtomicBool,
    /// Set once another writer's commit was found: who it was (from the head it wrote).
    fenced_by: std::sync::Mutex<Option<String>>,
    requests: AtomicU64,
    /// Bytes of catalog objects this catalog has written (journal, checkpoints, head).
    written: AtomicU64,
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
    writer: String,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("head", &self.keys.head())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    crate::log::to_millis(SystemTime::now())
}

/// A catalog entry as a sealed segment of a local log: offloaded, with no local copy.
pub fn offloaded_segment(
    layout: &crate::offload::Layout,
    topic: &crate::name::TopicName,
    entry: &SegmentEntry,
) -> crate::log::SealedSegment {
    crate::log::SealedSegment {
        id: entry.id,
        entries: entry.entries,
        size: entry.size,
        crc32c: entry.crc32c,
        created_ms: entry.created_ms,
        sealed_ms: entry.sealed_ms,
        local: false,
        offload: Some(crate::log::OffloadRecord {
            uuid: entry.uuid.clone(),
            data_key: layout.data_key(topic, entry.id, &entry.uuid),
            index_key: layout.index_key(topic, entry.id, &entry.uuid),
            upload_id: None,
            started_ms: entry.offloaded_ms,
            completed_ms: Some(entry.offloaded_ms),
        }),
    }
}

/// `host pid`, recorded in the head for people reading the bucket.
pub fn process_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".to_string());
    format!("{host} {}", std::process::id())
}

impl Catalog {
    /// A catalog over `prefix` of `store`, not yet read (see [`Catalog::load`]).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Arc<Self> {
        Arc::new(Self {
            store,
            keys: CatalogKeys::new(prefix),
            loaded: RwLock::new(Loaded::default()),
            commits: tokio::sync::Mutex::new(()),
            conditional: AtomicBool::new(false),
            fenced_by: std::sync::Mutex::new(None),
            requests: AtomicU64::new(0),
            written: AtomicU64::new(0),
            metrics: std::sync::OnceLock::new(),
            writer: process_identity(),
        })
    }

    pub fn keys(&self) -> &CatalogKeys {
        &self.keys
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The state as last read or committed; cheap (shared).
    pub fn state(&self) -> Arc<CatalogState> {
        Arc::clone(&self.read().state)
    }

    /// Requests this catalog has made to the store (for metrics and tests).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Bytes of catalog objects this catalog has written.
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    fn wrote(&self, bytes: &[u8]) {
        self.written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if let Some(metrics) = self.metrics.get() {
            metrics.catalog_bytes_written.inc_by(bytes.len() as u64);
        }
    }

    /// Whether commits are fenced by conditional writes on this store.
    pub fn conditional_writes(&self) -> bool {
        self.conditional.load(Ordering::Relaxed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Loaded> {
        self.loaded.write().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, n: u64) {
        self.requests.fetch_add(n, Ordering::Relaxed);
        if let Some(metrics) = self.metrics.get() {
            metrics.catalog_requests.inc_by(n);
        }
    }

    /// Counts this catalog's requests, sequence number and size in `metrics` too.
    pub fn report_to(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
        self.report_state();
    }

    fn report_state(&self) {
        if let Some(metrics) = self.metrics.get() {
            let state = self.state();
            metrics.catalog_seq.set(state.seq as i64);
            metrics.catalog_segments.set(state.segment_count() as i64);
        }
    }

    /// Reads the catalog (an absent head is an empty catalog).
    pub async fn load(&self) -> Result<(), CatalogError> {
        self.write().etag = None;
        self.refresh().await.map(drop)
    }

    /// Prepares this catalog for commits: reads it and finds out whether the store honours
    /// conditional writes.
    pub async fn open_for_writing(&self) -> Result<(), CatalogError> {
        self.load().await?;
        self.probe_conditional_writes().await
    }

    /// Finds out whether the store honours conditional writes (a probe object is written
    /// twice and removed); commits and the lease rely on them where it does.
    pub async fn probe_conditional_writes(&self) -> Result<(), CatalogError> {
        self.count(3);
        let honoured = crate::store::conditional_writes(&*self.store, &self.keys.probe()).await?;
        self.conditional.store(honoured, Ordering::Relaxed);
        if honoured {
            info!(head = %self.keys.head(), "catalog commits are fenced by conditional writes");
        } else {
            warn!(
                head = %self.keys.head(),
                "the store ignores conditional writes: a second writer on this prefix cannot be detected by the store; only the writer lease keeps writers apart"
            );
        }
        Ok(())
    }

    /// Follows the bucket: one conditional GET of the head; when it changed, the journal
    /// records since our sequence number (or a checkpoint and the records after it). Returns
    /// whether the state changed.
    pub async fn refresh(&self) -> Result<bool, CatalogError> {
        let etag = self.read().etag.clone();
        self.count(1);
        let head_key = self.keys.head();
        let (head, etag) = match self.store.get_if_changed(&head_key, etag.as_deref()).await {
            Ok(Fetched::Unchanged) => return Ok(false),
            Ok(Fetched::Object { body, etag }) => (format::decode::<Head>(&head_key, &body)?, etag),
            Err(StoreError::NotFound(_)) => {
                let mut loaded = self.write();
                let had = loaded.head.is_some();
                if had {
                    warn!(head = %head_key, "the catalog's head is gone from the bucket; showing nothing until it is back");
                }
                *loaded = Loaded {
                    known: true,
                    ..Loaded::default()
                };
                return Ok(had);
            }
            Err(e) => return Err(e.into()),
        };
        self.catch_up(head, etag).await
    }

    /// Brings the state to `head`.
    async fn catch_up(&self, head: Head, etag: Option<String>) -> Result<bool, CatalogError> {
        let current = self.state();
        if head.seq == current.seq && self.read().head.is_some() {
            let mut loaded = self.write();
            loaded.head = Some(head);
            loaded.etag = etag;
            loaded.known = true;
            return Ok(false);
        }
        let behind_by = head.seq.saturating_sub(current.seq);
        let replayable = head.seq > current.seq
            && current.seq >= head.previous_checkpoint
            && behind_by <= CHECKPOINT_MIN_COMMITS.max(current.segment_count() as u64 / 8);
        let mut state = None;
        if replayable {
            let mut next = (*current).clone();
            match self.replay(&mut next, current.seq + 1, head.seq).await {
                Ok(()) => state = Some(next),
                Err(CatalogError::Store(StoreError::NotFound(key))) => {
                    debug!(%key, "journal record already collected; reading the checkpoint")
                }
                Err(e) => return Err(e),
            }
        }
        let state = match state {
            Some(state) => state,
            None => self.read_from_checkpoint(&head).await?,
        };
        let mut loaded = self.write();
        loaded.state = Arc::new(state);
        loaded.head = Some(head);
        loaded.etag = etag;
        loaded.stale = false;
        loaded.known = true;
        drop(loaded);
        self.report_state();
        Ok(true)
    }

    /// The state at `head`, from its checkpoint and the journal after it.
    async fn read_from_checkpoint(&self, head: &Head) -> Result<CatalogState, CatalogError> {
        let mut state = if head.checkpoint > 0 {
            let key = self.keys.checkpoint(head.checkpoint);
            self.count(1);
            let bytes = self.store.get(&key).await?;
            let checkpoint: Checkpoint = format::decode(&key, &bytes)?;
            if checkpoint.seq != head.checkpoint {
                return Err(FormatError::Invalid {
                    key,
                    reason: format!("holds sequence number {}", checkpoint.seq),
                }
                .into());
            }
            CatalogState::from_checkpoint(&key, checkpoint)?
        } else {
            CatalogState::default()
        };
        self.replay(&mut state, head.checkpoint + 1, head.seq)
            .await?;
        Ok(state)
    }

    /// Applies journal records `from..=to`, fetched in parallel, in order.
    async fn replay(
        &self,
        state: &mut CatalogState,
        from: u64,
        to: u64,
    ) -> Result<(), CatalogError> {
        let mut next = from;
        while next <= to {
            let last = to.min(next + PARALLEL_GETS as u64 - 1);
            let mut fetches = tokio::task::JoinSet::new();
            for seq in next..=last {
                let (store, key) = (Arc::clone(&self.store), self.keys.journal(seq));
                fetches.spawn(async move {
                    let bytes = store.get(&key).await;
                    (seq, key, bytes)
                });
            }
            self.count(last - next + 1);
            let mut records = Vec::with_capacity(fetches.len());
            while let Some(done) = fetches.join_next().await {
                let (seq, key, bytes) =
                    done.map_err(|e| StoreError::Other(format!("catalog fetch failed: {e}")))?;
                let record: JournalRecord = format::decode(&key, &bytes?)?;
                if record.seq != seq {
                    return Err(FormatError::Invalid {
                        key,
                        reason: format!("holds sequence number {}", record.seq),
                    }
                    .into());
                }
                records.push((key, record));
            }
            records.sort_by_key(|(_, r)| r.seq);
            for (key, record) in records {
                state.apply(&key, record.seq, &record.changes)?;
            }
            next = last + 1;
        }
        Ok(())
    }

    /// Commits `changes`, retrying transient store errors with backoff. A retried commit may
    /// land twice; changes are idempotent, so the state is the same.
    pub async fn commit(&self, changes: Vec<Change>) -> Result<u64, CatalogError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match self.commit_once(&changes).await {
                Err(e) if e.is_transient() && attempt < COMMIT_ATTEMPTS => {
                    warn!(error = %e, attempt, "catalog commit failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn commit_once(&self, changes: &[Change]) -> Result<u64, CatalogError> {
        let _one_at_a_time = self.commits.lock().await;
        if let Some(e) = self.commit_refusal() {
            return Err(e);
        }
        let must_read = {
            let loaded = self.read();
            loaded.stale || !loaded.known
        };
        if must_read {
            self.write().etag = None;
            self.refresh().await?;
        }
        let (head, etag) = {
            let loaded = self.read();
            (loaded.head.clone(), loaded.etag.clone())
        };
        let previous = head.unwrap_or(Head {
            format: FORMAT,
            seq: 0,
            checkpoint: 0,
            previous_checkpoint: 0,
            writer: String::new(),
            updated_ms: 0,
        });
        let seq = previous.seq + 1;
        let journal_key = self.keys.journal(seq);
        let record = JournalRecord {
            format: FORMAT,
            seq,
            time_ms: now_ms(),
            changes: changes.to_vec(),
        };
        self.count(1);
        let journal = format::encode(&record);
        self.wrote(&journal);
        self.store.put(&journal_key, Bytes::from(journal)).await?;
        let checkpoint = {
            let mut loaded = self.write();
            loaded.stale = true;
            Arc::make_mut(&mut loaded.state).apply(&journal_key, seq, changes)?;
            let since = seq - previous.checkpoint;
            let due = since
                >= CHECKPOINT_MIN_COMMITS
                    .max(loaded.state.segment_count() as u64 / CHECKPOINT_SPREAD);
            due.then(|| format::encode(&loaded.state.to_checkpoint()))
        };
        let mut next = Head {
            format: FORMAT,
            seq,
            checkpoint: previous.checkpoint,
            previous_checkpoint: previous.previous_checkpoint,
            writer: self.writer.clone(),
            updated_ms: now_ms(),
        };
        if let Some(bytes) = checkpoint {
            self.count(1);
            self.wrote(&bytes);
            self.store
                .put(&self.keys.checkpoint(seq), Bytes::from(bytes))
                .await?;
            next.checkpoint = seq;
            next.previous_checkpoint = previous.checkpoint;
        }
        let condition = match (&etag, self.conditional.load(Ordering::Relaxed)) {
            (_, false) => PutCondition::Always,
            (Some(etag), true) => PutCondition::IfMatch(etag.clone()),
            (None, true) => PutCondition::IfAbsent,
        };
        self.count(1);
        let new_etag = match self
            .store
            .put_if(
                &self.keys.head(),
                Bytes::from(format::encode(&next)),
                condition,
            )
            .await
        {
            Ok(etag) => etag,
            Err(StoreError::PreconditionFailed(_)) => {
                let writer = match self.store.get(&self.keys.head()).await {
                    Ok(bytes) => format::decode::<Head>(&self.keys.head(), &bytes)
                        .map(|h| h.writer)
                        .unwrap_or_default(),
                    Err(_) => String::new(),
                };
                let writer = if writer.is_empty() {
                    "unknown".to_string()
                } else {
                    writer
                };
                warn!(head = %self.keys.head(), %writer, "another writer committed to this prefix's catalog; offloads stop here");
                *self.fenced_by.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
                return Err(self.commit_refusal().expect("just set"));
            }
            Err(e) => return Err(e.into()),
        };
        {
            let mut loaded = self.write();
            loaded.stale = new_etag.is_none();
            loaded.known = true;
            loaded.etag = new_etag;
            loaded.head = Some(next.clone());
        }
        if next.checkpoint != previous.checkpoint {
            self.collect(previous.previous_checkpoint, previous.checkpoint);
        }
        self.report_state();
        Ok(seq)
    }

    /// Deletes, in the background, the journal records `(older, newer]` and checkpoint
    /// `older`: superseded by checkpoint `newer` and by the one just written.
    fn collect(&self, older: u64, newer: u64) {
        let mut keys: Vec<String> = (older + 1..=newer).map(|s| self.keys.journal(s)).collect();
        if older > 0 {
            keys.push(self.keys.checkpoint(older));
        }
        if keys.is_empty() {
            return;
        }
        self.count(keys.len() as u64);
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            for key in keys {
                if let Err(e) = store.delete(&key).await {
                    debug!(%key, error = %e, "cannot collect a superseded catalog object; it is harmless");
                }
            }
        });
    }

    /// Why commits are refused, once another writer was found to have committed.
    pub fn commit_refusal(&self) -> Option<CatalogError> {
        let writer = self
            .fenced_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(CatalogError::Fenced {
            head: self.store.url(&self.keys.head()),
            writer,
        })
    }

    /// Whether the writer was fenced off (another writer committed).
    pub fn is_fenced(&self) -> bool {
        self.commit_refusal().is_some()
    }
}

#[cfg(test)]
mod tests;
