//! One topic's local log: its manifest, its active segment, appends and sealing.
//!
//! All changes to a topic happen under its one lock, so entries from concurrent writers are
//! never interleaved and a rollover is atomic with respect to appends. Reads of sealed segments
//! need no lock (the files are immutable); reads of the active segment take the lock only to
//! learn its current file and length.

use std::fs::File;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use lru::LruCache;
use tracing::{error, info, warn};

use super::manifest::{ActiveRef, DeletedSegment, Manifest, SealedSegment, from_millis, to_millis};
use super::rollover::{RolloverPolicy, RolloverReason};
use super::segment::{self, ActiveSegment, RecoveryReport};
use super::{LogError, io_error, sync_dir};
use crate::name::TopicName;

/// How many sealed segment files one topic keeps open for readers.
const OPEN_SEALED_FILES: usize = 16;
/// Prefix of a topic directory under construction; `#` is not allowed in names.
pub(super) const CREATING_PREFIX: &str = "#creating-";

#[cfg(test)]
thread_local! {
    /// Run once by `open_sealed` between its look at the segment and its open (a race, made
    /// to happen in a test).
    static AFTER_LOCAL_CHECK: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        std::cell::RefCell::new(None);
}

/// Where an append must land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAt {
    /// At the tail, wherever it is (O_APPEND, or a writer continuing its own stream).
    Tail,
    /// At this offset of the active segment, which must be its current end.
    Offset(u64),
}

/// Where an appended entry went, and the segment it sealed, if the append triggered a rollover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub segment: u64,
    pub offset: u64,
    pub end: u64,
    pub sealed: Option<SealedSegment>,
}

/// The active segment's counters at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveInfo {
    pub id: u64,
    pub size: u64,
    pub entries: u64,
    pub crc32c: u32,
    pub created: SystemTime,
    pub modified: SystemTime,
}

/// A consistent picture of a topic for listings and stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSnapshot {
    pub sealed: Vec<SealedSegment>,
    pub active: ActiveInfo,
    pub created: SystemTime,
}

impl TopicSnapshot {
    pub fn total_entries(&self) -> u64 {
        self.sealed.iter().map(|s| s.entries).sum::<u64>() + self.active.entries
    }
    pub fn total_size(&self) -> u64 {
        self.sealed.iter().map(|s| s.size).sum::<u64>() + self.active.size
    }
}

#[derive(Debug)]
struct TopicState {
    manifest: Manifest,
    active: ActiveSegment,
    removed: bool,
    /// The manifest before [`Topic::retire`], until the topic's directory has moved.
    before_retired: Option<Manifest>,
}

/// Told the name of a topic each time one of its segments seals (the offload trigger).
pub type SealListener = Arc<dyn Fn(&TopicName) + Send + Sync>;

pub struct Topic {
    name: TopicName,
    dir: PathBuf,
    policy: RolloverPolicy,
    on_seal: Option<SealListener>,
    state: Mutex<TopicState>,
    sealed_files: Mutex<LruCache<u64, Arc<File>>>,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Topic {
    /// Creates a new, empty topic directory `namespace_dir/<topic>` atomically: it is built
    /// under a temporary name and renamed into place.
    pub fn create(
        namespace_dir: &Path,
        name: TopicName,
        policy: RolloverPolicy,
        now: SystemTime,
    ) -> Result<Self, LogError> {
        Self::create_with(namespace_dir, name, policy, Vec::new(), now)
    }

    /// Creates a topic directory, as [`Topic::create`], whose log already holds `sealed`
    /// (segments with no local copy, rebuilt from the bucket by `tierfs recover`): the active
    /// segment is the one after the newest.
    pub fn create_with(
        namespace_dir: &Path,
        name: TopicName,
        policy: RolloverPolicy,
        sealed: Vec<SealedSegment>,
        now: SystemTime,
    ) -> Result<Self, LogError> {
        let dir = namespace_dir.join(&name.topic);
        // The staging name does not grow with the topic's: a name of the longest length (255
        // bytes) must fit in a directory entry while it is created too. Stale staging
        // directories (a creation a crash interrupted) are removed when the log is opened.
        let staging = namespace_dir.join(format!(
            "{CREATING_PREFIX}{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&staging).map_err(io_error(&staging, "create"))?;
        let mut manifest = Manifest::new(name.to_string(), now);
        if let Some(newest) = sealed.iter().map(|s| s.id).max() {
            manifest.active.id = newest + 1;
            manifest.created_ms = sealed.iter().map(|s| s.created_ms).min().unwrap_or(0);
        }
        manifest.sealed = sealed;
        let active = ActiveSegment::create(&staging, manifest.active.id, now)?;
        drop(active);
        manifest.save(&staging)?;
        std::fs::rename(&staging, &dir).map_err(io_error(&dir, "create topic"))?;
        sync_dir(namespace_dir)?;
        let active = ActiveSegment::recover(&dir, manifest.active.id, now)?.0;
        Ok(Self::assemble(name, dir, policy, manifest, active))
    }

    /// Opens an existing topic directory, repairing a torn active tail.
    pub fn open(
        dir: &Path,
        name: TopicName,
        policy: RolloverPolicy,
    ) -> Result<(Self, RecoveryReport), LogError> {
        let manifest = Manifest::load(dir)?;
        if manifest.topic != name.to_string() {
            return Err(LogError::Corrupt {
                path: Manifest::path(dir),
                reason: format!(
                    "manifest describes topic {} but lives in the directory of {name}",
                    manifest.topic
                ),
            });
        }
        for sealed in &manifest.sealed {
            if sealed.local {
                check_sealed_file(dir, sealed)?;
            } else {
                remove_local_files(dir, sealed.id)?;
            }
        }
        remove_unreferenced_segments(dir, manifest.active.id)?;
        let (active, report) = ActiveSegment::recover(
            dir,
            manifest.active.id,
            from_millis(manifest.active.created_ms),
        )?;
        Ok((
            Self::assemble(name, dir.to_path_buf(), policy, manifest, active),
            report,
        ))
    }

    fn assemble(
        name: TopicName,
        dir: PathBuf,
        policy: RolloverPolicy,
        manifest: Manifest,
        active: ActiveSegment,
    ) -> Self {
        Self {
            name,
            dir,
            policy,
            on_seal: None,
            state: Mutex::new(TopicState {
                manifest,
                active,
                removed: false,
                before_retired: None,
            }),
            sealed_files: Mutex::new(LruCache::new(
                NonZeroUsize::new(OPEN_SEALED_FILES).expect("non-zero"),
            )),
        }
    }

    /// Installs the listener told of every seal.
    pub fn with_seal_listener(mut self, listener: Option<SealListener>) -> Self {
        self.on_seal = listener;
        self
    }

    pub fn name(&self) -> &TopicName {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, TopicState> {
        // A panic while holding the lock leaves the state as consistent as the files are.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn live(&self) -> Result<MutexGuard<'_, TopicState>, LogError> {
        let state = self.lock();
        if state.removed {
            return Err(LogError::Removed(self.name.clone()));
        }
        Ok(state)
    }

    /// Appends one entry to the active segment, then seals it if the rollover rule says so.
    /// A failed rollover does not fail the append (the entry is written); it is logged and
    /// retried by the timer.
    pub fn append(
        &self,
        bytes: &[u8],
        at: AppendAt,
        now: SystemTime,
    ) -> Result<Appended, LogError> {
        let mut state = self.live()?;
        if let AppendAt::Offset(offset) = at
            && offset != state.active.size()
        {
            return Err(LogError::NotAtEnd {
                offset,
                end: state.active.size(),
            });
        }
        let segment = state.active.id();
        let offset = state.active.append(bytes, now)?;
        let end = state.active.size();
        let sealed = match self.rollover_due(&state, now) {
            Some(reason) => match self.seal_locked(&mut state, reason, now) {
                Ok(sealed) => Some(sealed),
                Err(e) => {
                    error!(topic = %self.name, error = %e, "rollover failed; will retry");
                    None
                }
            },
            None => None,
        };
        Ok(Appended {
            segment,
            offset,
            end,
            sealed,
        })
    }

    /// The timer's check: seals the active segment if it is due.
    pub fn tick(&self, now: SystemTime) -> Result<Option<SealedSegment>, LogError> {
        let mut state = self.lock();
        if state.removed {
            return Ok(None);
        }
        match self.rollover_due(&state, now) {
            Some(reason) => self.seal_locked(&mut state, reason, now).map(Some),
            None => Ok(None),
        }
    }

    /// Seals the active segment now, whatever the rollover rule says, unless it is empty.
    pub fn seal_now(&self, now: SystemTime) -> Result<SealedSegment, LogError> {
        let mut state = self.live()?;
        if state.active.entries() == 0 {
            return Err(LogError::NothingToSeal(self.name.clone()));
        }
        self.seal_locked(&mut state, RolloverReason::Admin, now)
    }

    fn rollover_due(&self, state: &TopicState, now: SystemTime) -> Option<RolloverReason> {
        let age = now
            .duration_since(state.active.created())
            .unwrap_or(Duration::ZERO);
        self.policy
            .check(state.active.entries(), state.active.size(), age)
    }

    fn seal_locked(
        &self,
        state: &mut TopicState,
        reason: RolloverReason,
        now: SystemTime,
    ) -> Result<SealedSegment, LogError> {
        let old = &state.active;
        old.seal()?;
        let sealed = SealedSegment {
            id: old.id(),
            entries: old.entries(),
            size: old.size(),
            crc32c: old.crc(),
            created_ms: to_millis(old.created()),
            sealed_ms: to_millis(now),
            local: true,
            offload: None,
        };
        let next_id = old.id() + 1;
        let mut manifest = state.manifest.clone();
        manifest.sealed.push(sealed.clone());
        manifest.active = ActiveRef {
            id: next_id,
            created_ms: to_millis(now),
        };
        let committed = ActiveSegment::create(&self.dir, next_id, now)
            .and_then(|next| manifest.save(&self.dir).map(|()| next));
        let next = match committed {
            Ok(next) => next,
            Err(e) => {
                let data = self.dir.join(segment::data_file_name(sealed.id));
                let _ = std::fs::set_permissions(
                    &data,
                    std::os::unix::fs::PermissionsExt::from_mode(0o644),
                );
                return Err(e);
            }
        };
        state.manifest = manifest;
        state.active = next;
        if let Some(listener) = &self.on_seal {
            listener(&self.name);
        }
        info!(
            topic = %self.name,
            segment = sealed.id,
            entries = sealed.entries,
            bytes = sealed.size,
            reason = %reason,
            "sealed segment"
        );
        Ok(sealed)
    }

    /// Makes every entry appended so far durable.
    pub fn sync(&self) -> Result<(), LogError> {
        self.lock().active.sync()
    }

    pub fn snapshot(&self) -> TopicSnapshot {
        let state = self.lock();
        TopicSnapshot {
            sealed: state.manifest.sealed.clone(),
            active: active_info(&state.active),
            created: from_millis(state.manifest.created_ms),
        }
    }

    /// `f` over the sealed segments and the active segment's counters, under the topic's lock
    /// and without copying them: for the passes that look at every topic every second (a
    /// snapshot of a topic of 10,000 segments copies 30,000 strings).
    pub fn with_sealed<R>(&self, f: impl FnOnce(&[SealedSegment], &ActiveInfo) -> R) -> R {
        let state = self.lock();
        f(&state.manifest.sealed, &active_info(&state.active))
    }

    /// The active segment's counters alone, without copying the list of sealed segments.
    pub fn active_info(&self) -> ActiveInfo {
        active_info(&self.lock().active)
    }

    /// The active segment's id, data file and current length.
    pub fn active_file(&self) -> Result<(u64, Arc<File>, u64), LogError> {
        let state = self.live()?;
        Ok((
            state.active.id(),
            state.active.data_file(),
            state.active.size(),
        ))
    }

    pub fn sealed_segment(&self, id: u64) -> Option<SealedSegment> {
        let state = self.lock();
        state
            .manifest
            .sealed
            .binary_search_by_key(&id, |s| s.id)
            .ok()
            .map(|i| state.manifest.sealed[i].clone())
    }

    /// An open handle on a sealed segment's data file, shared between readers.
    pub fn open_sealed(&self, id: u64) -> Result<Arc<File>, LogError> {
        match self.sealed_segment(id) {
            None => {
                return Err(LogError::NotFound(format!(
                    "segment {} of {}",
                    segment::data_file_name(id),
                    self.name
                )));
            }
            Some(s) if !s.local => {
                return Err(LogError::NotLocal(format!(
                    "segment {} of {}",
                    segment::data_file_name(id),
                    self.name
                )));
            }
            Some(_) => {}
        }
        #[cfg(test)]
        if let Some(between) = AFTER_LOCAL_CHECK.with(|h| h.borrow_mut().take()) {
            between();
        }
        let mut files = self
            .sealed_files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(file) = files.get(&id) {
            return Ok(Arc::clone(file));
        }
        let path = self.dir.join(segment::data_file_name(id));
        let file = Arc::new(File::open(&path).map_err(io_error(&path, "open"))?);
        // The local copy may have gone (deletion lag, retention) between the look above and
        // the open: a file kept here would hold its disk space until evicted.
        if self.sealed_segment(id).is_some_and(|s| s.local) {
            files.put(id, Arc::clone(&file));
        }
        Ok(file)
    }

    /// Changes a sealed segment's record and saves the manifest; memory follows only once the
    /// manifest is on disk.
    pub fn update_sealed(
        &self,
        id: u64,
        change: impl FnOnce(&mut SealedSegment),
    ) -> Result<SealedSegment, LogError> {
        let mut state = self.live()?;
        let mut manifest = state.manifest.clone();
        let index = manifest
            .sealed
            .binary_search_by_key(&id, |s| s.id)
            .map_err(|_| LogError::NotFound(format!("segment {id} of {}", self.name)))?;
        change(&mut manifest.sealed[index]);
        manifest.save(&self.dir)?;
        let updated = manifest.sealed[index].clone();
        state.manifest = manifest;
        Ok(updated)
    }

    /// Deletes the local copy of an offloaded segment: the manifest first records it gone, then
    /// the files go (a crash in between leaves files that the next open removes).
    pub fn drop_local_copy(&self, id: u64) -> Result<(), LogError> {
        let segment = self
            .sealed_segment(id)
            .ok_or_else(|| LogError::NotFound(format!("segment {id} of {}", self.name)))?;
        if !segment.offloaded() {
            return Err(LogError::NotOffloaded(format!(
                "segment {id} of {}",
                self.name
            )));
        }
        self.update_sealed(id, |s| s.local = false)?;
        self.sealed_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop(&id);
        remove_local_files(&self.dir, id)
    }

    /// Takes sealed segments out of the log for deletion: the manifest records them as
    /// `deleting` (from then on no listing, open or offload sees them) and their files and
    /// objects are removed afterwards by [`Topic::finish_delete`]. `ids` not in the log are
    /// skipped; what was taken is returned, oldest first.
    /// `held` is asked under the topic's lock: segments at or after the one it names (one
    /// a reader holds) are kept.
    pub fn begin_delete(
        &self,
        ids: &[u64],
        held: impl FnOnce() -> Option<u64>,
        now: SystemTime,
    ) -> Result<Vec<SealedSegment>, LogError> {
        let mut state = self.live()?;
        let floor = held().unwrap_or(u64::MAX);
        let mut manifest = state.manifest.clone();
        let (taken, kept): (Vec<_>, Vec<_>) = manifest
            .sealed
            .into_iter()
            .partition(|s| ids.contains(&s.id) && s.id < floor);
        if taken.is_empty() {
            return Ok(taken);
        }
        manifest.sealed = kept;
        manifest
            .deleting
            .extend(taken.iter().cloned().map(|segment| DeletedSegment {
                segment,
                deleted_ms: to_millis(now),
            }));
        manifest.deleting.sort_by_key(|d| d.segment.id);
        manifest.save(&self.dir)?;
        state.manifest = manifest;
        drop(state);
        let mut files = self.sealed_files.lock().unwrap_or_else(|p| p.into_inner());
        for segment in &taken {
            files.pop(&segment.id);
        }
        Ok(taken)
    }

    /// The segments taken out by [`Topic::begin_delete`] whose deletion is not finished.
    pub fn deleting(&self) -> Vec<DeletedSegment> {
        self.lock().manifest.deleting.clone()
    }

    /// Ends a segment's deletion once its objects are gone: its local files go, then its
    /// record. A crash in between leaves the record, and the deletion is finished again.
    pub fn finish_delete(&self, id: u64) -> Result<(), LogError> {
        remove_local_files(&self.dir, id)?;
        let mut state = self.lock();
        let mut manifest = state.manifest.clone();
        manifest.deleting.retain(|d| d.segment.id != id);
        if manifest.deleting.len() == state.manifest.deleting.len() {
            return Ok(());
        }
        if !state.removed {
            manifest.save(&self.dir)?;
        }
        state.manifest = manifest;
        Ok(())
    }

    /// Path of a sealed segment's local data file.
    pub fn sealed_data_path(&self, id: u64) -> PathBuf {
        self.dir.join(segment::data_file_name(id))
    }

    /// The entry index of a sealed segment that is on local disk.
    pub fn sealed_index(&self, id: u64) -> Result<Vec<super::index::IndexRecord>, LogError> {
        let sealed = self
            .sealed_segment(id)
            .ok_or_else(|| LogError::NotFound(format!("segment {id} of topic {}", self.name)))?;
        segment::read_index(&self.dir, id, sealed.entries, sealed.size)
    }

    /// Marks the topic removed if it holds no entries; appends fail from then on.
    pub(super) fn mark_removed(&self) -> Result<(), LogError> {
        let mut state = self.live()?;
        if !state.manifest.sealed.is_empty() || state.active.entries() > 0 {
            return Err(LogError::NotEmpty(format!("topic {}", self.name)));
        }
        if !state.manifest.deleting.is_empty() {
            // Its objects are still being deleted: removing the directory now would lose track
            // of them.
            return Err(LogError::NotEmpty(format!(
                "topic {} (it is still deleting {} segment(s); try again shortly)",
                self.name,
                state.manifest.deleting.len()
            )));
        }
        state.removed = true;
        Ok(())
    }

    /// Marks the topic removed whatever it holds (`topics delete`): appends fail from then on,
    /// and its manifest records every sealed segment as being deleted (the record its
    /// directory carries to `<data-dir>/deleting/`). Returns them all.
    pub(super) fn retire(&self, now: SystemTime) -> Result<Vec<DeletedSegment>, LogError> {
        let mut state = self.live()?;
        state.before_retired = Some(state.manifest.clone());
        let mut manifest = state.manifest.clone();
        let sealed = std::mem::take(&mut manifest.sealed);
        manifest
            .deleting
            .extend(sealed.into_iter().map(|segment| DeletedSegment {
                segment,
                deleted_ms: to_millis(now),
            }));
        manifest.deleting.sort_by_key(|d| d.segment.id);
        manifest.save(&self.dir)?;
        let all = manifest.deleting.clone();
        state.manifest = manifest;
        state.removed = true;
        Ok(all)
    }

    /// The retired topic's directory has moved: there is no going back.
    pub(super) fn forget_retired_manifest(&self) {
        self.lock().before_retired = None;
    }

    /// Undoes [`Topic::mark_removed`] when the directory could not be removed, and
    /// [`Topic::retire`] when it could not be moved: the manifest is put back as it was.
    pub(super) fn unmark_removed(&self) {
        let mut state = self.lock();
        if let Some(before) = state.before_retired.take() {
            if let Err(e) = before.save(&self.dir) {
                error!(topic = %self.name, error = %e, "cannot put back the manifest of a topic whose deletion failed; its sealed segments stay recorded as being deleted");
                return;
            }
            state.manifest = before;
        }
        state.removed = false;
    }
}

fn active_info(active: &ActiveSegment) -> ActiveInfo {
    ActiveInfo {
        id: active.id(),
        size: active.size(),
        entries: active.entries(),
        crc32c: active.crc(),
        created: active.created(),
        modified: active.modified(),
    }
}

/// Removes a segment's local files; missing files are fine.
fn remove_local_files(dir: &Path, id: u64) -> Result<(), LogError> {
    for path in [
        dir.join(segment::data_file_name(id)),
        dir.join(segment::index_file_name(id)),
    ] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, "remove")(e)),
        }
    }
    Ok(())
}

fn check_sealed_file(dir: &Path, sealed: &SealedSegment) -> Result<(), LogError> {
    let path = dir.join(segment::data_file_name(sealed.id));
    let len = std::fs::metadata(&path)
        .map_err(|e| LogError::Corrupt {
            path: path.clone(),
            reason: format!(
                "sealed segment {} ({} entries, {} bytes) is in the manifest but its file cannot be read: {e}",
                sealed.id, sealed.entries, sealed.size
            ),
        })?
        .len();
    if len != sealed.size {
        return Err(LogError::Corrupt {
            path,
            reason: format!(
                "sealed segment {} is {len} bytes on disk but {} bytes in the manifest",
                sealed.id, sealed.size
            ),
        });
    }
    Ok(())
}

/// Removes segment files newer than the active one: a crash between creating the next
/// segment and recording it in the manifest leaves them, empty and unreferenced.
fn remove_unreferenced_segments(dir: &Path, active_id: u64) -> Result<(), LogError> {
    let entries = std::fs::read_dir(dir).map_err(io_error(dir, "list"))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let id = segment::parse_data_file_name(&name)
            .or_else(|| segment::parse_data_file_name(&name.replace(".idx", ".seg")));
        if let Some(id) = id
            && id > active_id
        {
            warn!(file = %entry.path().display(), "removing segment file no manifest references (left by an interrupted rollover)");
            std::fs::remove_file(entry.path()).map_err(io_error(&entry.path(), "remove"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_entries: u64) -> RolloverPolicy {
        RolloverPolicy {
            max_entries,
            min_age: Duration::ZERO,
            ..RolloverPolicy::default()
        }
    }

    fn topic(dir: &Path, max_entries: u64) -> Topic {
        let name = TopicName::new("t", "ns", "x").unwrap();
        Topic::create(dir, name, policy(max_entries), SystemTime::now()).unwrap()
    }

    #[test]
    fn a_topic_name_of_the_longest_length_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let long = "t".repeat(crate::name::MAX_NAME_LEN);
        let name = TopicName::new("t", "ns", &long).unwrap();
        let t = Topic::create(dir.path(), name, policy(10), SystemTime::now()).unwrap();
        t.append(b"x", AppendAt::Tail, SystemTime::now()).unwrap();
        assert!(dir.path().join(&long).is_dir());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no staging directory is left behind");
    }

    #[test]
    fn an_open_racing_the_drop_of_the_local_copy_keeps_no_descriptor_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let t = Arc::new(topic(dir.path(), 1));
        t.append(b"entry", AppendAt::Tail, SystemTime::now())
            .unwrap();
        t.update_sealed(1, |s| {
            s.offload = Some(super::super::OffloadRecord::completed_for_tests())
        })
        .unwrap();
        // The deletion lag's drop lands between the open's look and its open: the record
        // says "not local" and the descriptor cache is emptied, the file not yet removed.
        let dropping = Arc::clone(&t);
        AFTER_LOCAL_CHECK.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                dropping.update_sealed(1, |s| s.local = false).unwrap();
                dropping.sealed_files.lock().unwrap().pop(&1);
            }))
        });
        let opened = t.open_sealed(1).unwrap();
        remove_local_files(t.dir(), 1).unwrap();
        drop(opened);
        assert!(
            t.sealed_files.lock().unwrap().peek(&1).is_none(),
            "the descriptor cache holds the deleted file open (and its disk space)"
        );
    }

    #[test]
    fn rolls_over_by_entries_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let t = topic(dir.path(), 2);
        let now = SystemTime::now();
        assert_eq!(t.append(b"a", AppendAt::Tail, now).unwrap().sealed, None);
        let sealed = t
            .append(b"bc", AppendAt::Tail, now)
            .unwrap()
            .sealed
            .unwrap();
        assert_eq!((sealed.id, sealed.entries, sealed.size), (1, 2, 3));
        assert_eq!(sealed.crc32c, crc32c::crc32c(b"abc"));
        t.append(b"d", AppendAt::Offset(0), now).unwrap();
        drop(t);
        let name = TopicName::new("t", "ns", "x").unwrap();
        let (t, report) = Topic::open(&dir.path().join("x"), name, policy(2)).unwrap();
        assert!(report.is_clean());
        let snap = t.snapshot();
        assert_eq!(snap.sealed.len(), 1);
        assert_eq!((snap.active.id, snap.active.entries), (2, 1));
        assert_eq!(snap.total_size(), 4);
    }

    #[test]
    fn offset_appends_must_hit_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let t = topic(dir.path(), 100);
        t.append(b"abc", AppendAt::Tail, SystemTime::now()).unwrap();
        let err = t
            .append(b"x", AppendAt::Offset(1), SystemTime::now())
            .unwrap_err();
        assert!(matches!(err, LogError::NotAtEnd { offset: 1, end: 3 }));
    }

    #[test]
    fn seal_now_refuses_an_empty_segment() {
        let dir = tempfile::tempdir().unwrap();
        let t = topic(dir.path(), 100);
        assert!(matches!(
            t.seal_now(SystemTime::now()),
            Err(LogError::NothingToSeal(_))
        ));
        t.append(b"x", AppendAt::Tail, SystemTime::now()).unwrap();
        assert_eq!(t.seal_now(SystemTime::now()).unwrap().id, 1);
        assert_eq!(t.snapshot().active.id, 2);
    }

    #[test]
    fn unreferenced_next_segment_is_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let t = topic(dir.path(), 100);
        let tdir = t.dir().to_path_buf();
        drop(t);
        ActiveSegment::create(&tdir, 2, SystemTime::now()).unwrap();
        let name = TopicName::new("t", "ns", "x").unwrap();
        Topic::open(&tdir, name, policy(100)).unwrap();
        assert!(!tdir.join(segment::data_file_name(2)).exists());
        assert!(!tdir.join(segment::index_file_name(2)).exists());
    }

    #[test]
    fn missing_sealed_file_is_refused_with_reason() {
        let dir = tempfile::tempdir().unwrap();
        let t = topic(dir.path(), 1);
        t.append(b"x", AppendAt::Tail, SystemTime::now()).unwrap();
        let tdir = t.dir().to_path_buf();
        drop(t);
        std::fs::remove_file(tdir.join(segment::data_file_name(1))).unwrap();
        let name = TopicName::new("t", "ns", "x").unwrap();
        let err = Topic::open(&tdir, name, policy(1)).unwrap_err().to_string();
        assert!(
            err.contains("in the manifest but its file cannot be read"),
            "{err}"
        );
    }
}
