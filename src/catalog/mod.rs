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
//!   any topic. A checkpoint is written every `max(128, weight / 8)` commits; old records live
//!   in immutable pages of 256 (`state.rs`) that each checkpoint references instead of
//!   rewriting, so a checkpoint holds page references and at most two pages' worth of recent
//!   records per topic. Each record is paged once; spread over its commits a checkpoint costs
//!   at most 8 records each.
//! * **Refresh** (readers): one conditional GET of the head (`If-None-Match`), answered 304
//!   while nothing changed: O(1) requests whatever the number of topics. When it changed, the
//!   journal records since the reader's sequence number are fetched in parallel (their keys
//!   follow from the numbers; nothing is listed); a reader too far behind, or whose records
//!   were already collected, starts again from the newest checkpoint.
//! * **Collection**: when a checkpoint is written, the journal records and checkpoint older
//!   than the *previous* checkpoint are deleted, and the pages only that one referenced, so a
//!   reader one checkpoint behind still finds what it needs.

pub mod format;
pub mod lease;
mod state;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tracing::{debug, info, warn};

pub use format::{CatalogKeys, Change, FormatError, Head, SegmentEntry};
pub use lease::{Lease, LeaseError};
pub use state::CatalogState;

use format::{Checkpoint, FORMAT, JournalRecord, Page};

use crate::store::{Fetched, ObjectStore, PutCondition, StoreError};

/// Fewest commits between two checkpoints.
const CHECKPOINT_MIN_COMMITS: u64 = 128;
/// A checkpoint is written once the commits since the last one reach its weight (inline
/// records and page references) over this: each commit then pays for at most this many
/// records of checkpoint, besides writing its own records into a page once.
const CHECKPOINT_SPREAD: u64 = 8;
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
    /// The head was sent but its answer was lost: the commit may or may not have landed.
    #[error("the catalog commit's outcome is unknown: {0}")]
    OutcomeUnknown(String),
    /// The writer's guard refused the commit before its head was sent (no current lease, or
    /// the mount is stopping).
    #[error("the catalog commit was refused: {0}")]
    Refused(String),
    /// Someone else committed: this process is no longer the prefix's only writer.
    #[error(
        "the catalog at {head} was changed by another writer ({writer}); this mount stops committing offloads"
    )]
    Fenced { head: String, writer: String },
}

impl CatalogError {
    pub fn is_transient(&self) -> bool {
        match self {
            CatalogError::Store(e) => e.is_transient(),
            CatalogError::OutcomeUnknown(_) => true,
            _ => false,
        }
    }

    /// Whether the commit may have landed although it failed: its objects must stay.
    pub fn may_have_landed(&self) -> bool {
        matches!(self, CatalogError::OutcomeUnknown(_))
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
    /// Whether that was found out already (the probe runs once per mount).
    probed: AtomicBool,
    /// Set once another writer's commit was found: who it was (from the head it wrote).
    fenced_by: std::sync::Mutex<Option<String>>,
    /// Asked right before each head is written (the writer's lease).
    guard: std::sync::OnceLock<CommitGuard>,
    /// The pages the last checkpoints reference, by checkpoint (for collection).
    checkpoint_pages: std::sync::Mutex<VecDeque<(u64, BTreeSet<String>)>>,
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

/// Asked right before a commit's head is written; an error refuses the commit (the writer no
/// longer holds a current lease, or is stopping).
pub type CommitGuard = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

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
            probed: AtomicBool::new(false),
            fenced_by: std::sync::Mutex::new(None),
            guard: std::sync::OnceLock::new(),
            checkpoint_pages: std::sync::Mutex::new(VecDeque::new()),
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

    /// Installs the check every commit must pass right before its head is written.
    pub fn guard_commits(&self, guard: CommitGuard) {
        let _ = self.guard.set(guard);
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
        let _one_at_a_time = self.commits.lock().await;
        self.write().etag = None;
        self.refresh_locked().await.map(drop)
    }

    /// Prepares this catalog for commits: reads it and finds out whether the store honours
    /// conditional writes.
    pub async fn open_for_writing(&self) -> Result<(), CatalogError> {
        self.load().await?;
        if self.probed.load(Ordering::Relaxed) {
            // Probed when the mount started (before taking the lease): its three requests
            // need not compete with the first reads of the mount.
            return Ok(());
        }
        self.probe_conditional_writes().await
    }

    /// Finds out whether the store honours conditional writes (a probe object is written
    /// twice and removed); commits and the lease rely on them where it does.
    pub async fn probe_conditional_writes(&self) -> Result<(), CatalogError> {
        self.count(3);
        let honoured = crate::store::conditional_writes(&*self.store, &self.keys.probe()).await?;
        self.conditional.store(honoured, Ordering::Relaxed);
        self.probed.store(true, Ordering::Relaxed);
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
        // Never beside a commit: a refresh must not install an older state over a newer one.
        let _one_at_a_time = self.commits.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<bool, CatalogError> {
        let etag = {
            let loaded = self.read();
            // A stale state is read afresh, whatever the head's ETag says.
            (!loaded.stale).then(|| loaded.etag.clone()).flatten()
        };
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
            loaded.stale = false;
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

    /// The state at `head`, from its checkpoint (and its pages) and the journal after it.
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
            let page_keys: Vec<String> = checkpoint
                .topics
                .values()
                .flat_map(|t| t.pages.iter().map(|p| p.key.clone()))
                .collect();
            let mut pages = HashMap::with_capacity(page_keys.len());
            for (page_key, bytes) in self.fetch_all(page_keys).await? {
                let page: Page = format::decode(&page_key, &bytes)?;
                pages.insert(page_key, page);
            }
            let state = CatalogState::from_checkpoint(&key, checkpoint, &pages)?;
            self.remember_pages(head.checkpoint, state.page_keys());
            state
        } else {
            CatalogState::default()
        };
        self.replay(&mut state, head.checkpoint + 1, head.seq)
            .await?;
        Ok(state)
    }

    /// GETs every key, [`PARALLEL_GETS`] at a time; the answers in the keys' order.
    async fn fetch_all(&self, keys: Vec<String>) -> Result<Vec<(String, Bytes)>, CatalogError> {
        let mut fetched = Vec::with_capacity(keys.len());
        for batch in keys.chunks(PARALLEL_GETS) {
            let mut fetches = tokio::task::JoinSet::new();
            for (i, key) in batch.iter().enumerate() {
                let (store, key) = (Arc::clone(&self.store), key.clone());
                fetches.spawn(async move {
                    let bytes = store.get(&key).await;
                    (i, key, bytes)
                });
            }
            self.count(batch.len() as u64);
            let mut answers = Vec::with_capacity(batch.len());
            while let Some(done) = fetches.join_next().await {
                let (i, key, bytes) =
                    done.map_err(|e| StoreError::Other(format!("catalog fetch failed: {e}")))?;
                answers.push((i, key, bytes?));
            }
            answers.sort_by_key(|(i, _, _)| *i);
            fetched.extend(answers.into_iter().map(|(_, key, bytes)| (key, bytes)));
        }
        Ok(fetched)
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
            let keys = (next..=last).map(|seq| self.keys.journal(seq)).collect();
            for ((key, bytes), seq) in self.fetch_all(keys).await?.into_iter().zip(next..) {
                let record: JournalRecord = format::decode(&key, &bytes)?;
                if record.seq != seq {
                    return Err(FormatError::Invalid {
                        key,
                        reason: format!("holds sequence number {}", record.seq),
                    }
                    .into());
                }
                state.apply(&key, record.seq, &record.changes)?;
            }
            next = last + 1;
        }
        Ok(())
    }

    /// Keeps which pages checkpoint `seq` references (the last three checkpoints' sets), so
    /// that pages no kept checkpoint references can be collected.
    fn remember_pages(&self, seq: u64, pages: BTreeSet<String>) {
        let mut known = self
            .checkpoint_pages
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        known.retain(|(s, _)| *s != seq);
        known.push_back((seq, pages));
        while known.len() > 3 {
            known.pop_front();
        }
    }

    /// Pages checkpoint `older` referenced that neither `kept` checkpoint does, when all are
    /// known (after a restart some are not: their pages are then left, harmless).
    fn unreferenced_pages(&self, older: u64, kept: [u64; 2]) -> Vec<String> {
        let known = self
            .checkpoint_pages
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let find = |seq: u64| known.iter().find(|(s, _)| *s == seq).map(|(_, p)| p);
        match (find(older), find(kept[0]), find(kept[1])) {
            (Some(old), Some(a), Some(b)) => old
                .iter()
                .filter(|k| !a.contains(*k) && !b.contains(*k))
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Commits `changes`, retrying transient store errors with backoff. A retried commit may
    /// land twice; changes are idempotent, so the state is the same. When a try may have
    /// landed and the last one failed, the error says the outcome is unknown: the caller must
    /// not act as if nothing was committed.
    pub async fn commit(&self, changes: Vec<Change>) -> Result<u64, CatalogError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        let mut may_have_landed = false;
        loop {
            match self.commit_once(&changes).await {
                Ok(seq) => return Ok(seq),
                Err(e) => {
                    may_have_landed |= e.may_have_landed();
                    if e.is_transient() && attempt < COMMIT_ATTEMPTS {
                        warn!(error = %e, attempt, "catalog commit failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                        attempt += 1;
                        continue;
                    }
                    if may_have_landed && !e.may_have_landed() {
                        return Err(CatalogError::OutcomeUnknown(format!(
                            "{e} (an earlier try may have landed)"
                        )));
                    }
                    return Err(e);
                }
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
            self.refresh_locked().await?;
        }
        let (head, etag, current) = {
            let loaded = self.read();
            (
                loaded.head.clone(),
                loaded.etag.clone(),
                Arc::clone(&loaded.state),
            )
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
        // The new state is built aside and installed only once the head names it: nothing
        // uncommitted is ever visible, not even to this process.
        let mut state = (*current).clone();
        state.apply(&journal_key, seq, changes)?;
        let record = JournalRecord {
            format: FORMAT,
            seq,
            time_ms: now_ms(),
            changes: changes.to_vec(),
        };
        self.put_new(&journal_key, format::encode(&record), seq)
            .await?;
        let since = seq - previous.checkpoint;
        let due = since
            >= CHECKPOINT_MIN_COMMITS.max(state.checkpoint_weight() as u64 / CHECKPOINT_SPREAD);
        let mut next = Head {
            format: FORMAT,
            seq,
            checkpoint: previous.checkpoint,
            previous_checkpoint: previous.previous_checkpoint,
            writer: self.writer.clone(),
            updated_ms: now_ms(),
        };
        if due {
            for (key, page) in state.cut_pages(&self.keys, seq) {
                self.put_new(&key, format::encode(&page), seq).await?;
            }
            let bytes = format::encode(&state.to_checkpoint());
            self.put_new(&self.keys.checkpoint(seq), bytes, seq).await?;
            next.checkpoint = seq;
            next.previous_checkpoint = previous.checkpoint;
        }
        if let Some(guard) = self.guard.get() {
            guard().map_err(CatalogError::Refused)?;
        }
        let condition = match (&etag, self.conditional.load(Ordering::Relaxed)) {
            (_, false) => PutCondition::Always,
            (Some(etag), true) => PutCondition::IfMatch(etag.clone()),
            (None, true) => PutCondition::IfAbsent,
        };
        self.count(1);
        let head_bytes = format::encode(&next);
        self.wrote(&head_bytes);
        let new_etag = match self
            .store
            .put_if(&self.keys.head(), Bytes::from(head_bytes), condition)
            .await
        {
            Ok(etag) => etag,
            Err(StoreError::PreconditionFailed(_)) => match self.read_head().await {
                // A retried PUT whose first try landed: the head is ours.
                Ok(Some((found, etag))) if found == next => etag,
                Ok(found) => return Err(self.fence(found.map(|(h, _)| h.writer))),
                Err(e) => {
                    self.write().stale = true;
                    return Err(CatalogError::OutcomeUnknown(e.to_string()));
                }
            },
            Err(e) => {
                self.write().stale = true;
                return Err(CatalogError::OutcomeUnknown(e.to_string()));
            }
        };
        let checkpointed = next.checkpoint != previous.checkpoint;
        if checkpointed {
            self.remember_pages(seq, state.page_keys());
        }
        {
            let mut loaded = self.write();
            loaded.state = Arc::new(state);
            loaded.stale = new_etag.is_none();
            loaded.known = true;
            loaded.etag = new_etag;
            loaded.head = Some(next.clone());
        }
        if checkpointed {
            let pages =
                self.unreferenced_pages(previous.previous_checkpoint, [previous.checkpoint, seq]);
            self.collect(previous.previous_checkpoint, previous.checkpoint, pages);
        }
        self.report_state();
        Ok(seq)
    }

    /// Writes a journal record or checkpoint for commit `seq`. Where the store honours
    /// conditional writes it is written only if absent: an existing one is either debris of a
    /// commit of ours that never reached the head (overwritten) or another writer's committed
    /// record (this writer is fenced, and overwrites nothing).
    async fn put_new(&self, key: &str, bytes: Vec<u8>, seq: u64) -> Result<(), CatalogError> {
        self.count(1);
        self.wrote(&bytes);
        let body = Bytes::from(bytes);
        if !self.conditional.load(Ordering::Relaxed) {
            self.store.put(key, body).await?;
            return Ok(());
        }
        match self
            .store
            .put_if(key, body.clone(), PutCondition::IfAbsent)
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::PreconditionFailed(_)) => match self.read_head().await? {
                Some((head, _)) if head.seq >= seq => Err(self.fence(Some(head.writer))),
                _ => {
                    debug!(%key, "overwriting the debris of a commit that never reached the head");
                    self.count(1);
                    self.store.put(key, body).await?;
                    Ok(())
                }
            },
            Err(e) => Err(e.into()),
        }
    }

    /// The head as the bucket has it now, with its ETag (`None`: there is none).
    async fn read_head(&self) -> Result<Option<(Head, Option<String>)>, CatalogError> {
        self.count(1);
        match self.store.get_if_changed(&self.keys.head(), None).await {
            Ok(Fetched::Object { body, etag }) => {
                Ok(Some((format::decode(&self.keys.head(), &body)?, etag)))
            }
            Ok(Fetched::Unchanged) => unreachable!("no ETag was given"),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Records that another writer committed (`writer` as its head names it) and says so.
    fn fence(&self, writer: Option<String>) -> CatalogError {
        let writer = writer
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "unknown".to_string());
        warn!(head = %self.keys.head(), %writer, "another writer committed to this prefix's catalog; offloads stop here");
        *self.fenced_by.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
        self.write().stale = true;
        self.commit_refusal().expect("just set")
    }

    /// Deletes, in the background, the journal records `(older, newer]`, checkpoint `older`
    /// and `pages`: superseded by checkpoint `newer` and by the one just written.
    fn collect(&self, older: u64, newer: u64, pages: Vec<String>) {
        let mut keys: Vec<String> = (older + 1..=newer).map(|s| self.keys.journal(s)).collect();
        keys.extend(pages);
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
