//! The tree of tenants, namespaces and topics on local disk, and its recovery at start.
//!
//! Owns the directory layout under `<data-dir>/topics` and the in-memory map of open topics.
//! Creating and removing tenants, namespaces and topics goes through here so that the map and
//! the disk always agree. Lock order: the changes lock (creations and removals, held across
//! their directory work), the tree's lock (held only to read or change the map), a topic's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use tracing::{error, warn};

use super::manifest::{DeletedSegment, Manifest, SealedSegment};
use super::rollover::RolloverPolicy;
use super::segment::RecoveryReport;
use super::topic::{CREATING_PREFIX, SealListener, Topic};
use super::{LogError, io_error, sync_dir};
use crate::name::{NameKind, NamespaceName, TopicName, validate};

const TOPICS_DIR: &str = "topics";
/// Where a deleted topic's directory waits, under a fresh name, for its objects to go.
const DELETING_DIR: &str = "deleting";

type Topics = BTreeMap<String, Arc<Topic>>;
type Namespaces = BTreeMap<String, Topics>;
type Tenants = BTreeMap<String, Namespaces>;

/// What opening the data directory found and repaired.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub topics: usize,
    pub repaired: Vec<(TopicName, RecoveryReport)>,
}

/// A deleted topic whose objects and files are still to be removed.
#[derive(Debug, Clone)]
pub struct TopicTombstone {
    /// The topic's directory, moved under `<data-dir>/deleting/`.
    pub dir: PathBuf,
    pub topic: TopicName,
    /// Every segment it had, oldest first.
    pub segments: Vec<DeletedSegment>,
}

pub struct LocalLog {
    root: PathBuf,
    graveyard: PathBuf,
    policy: RolloverPolicy,
    tree: RwLock<Tenants>,
    /// Serializes creations and removals. Their directory work (creates, renames, fsyncs) runs
    /// under this lock only; the tree's write lock is taken just to change the map, so lookups
    /// never wait for a disk.
    changes: Mutex<()>,
    on_seal: Option<SealListener>,
}

impl std::fmt::Debug for LocalLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLog")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl LocalLog {
    /// Opens (creating if needed) the local tier under `data_dir` and recovers every topic.
    /// A topic whose files are damaged beyond a torn tail fails the whole open, with the path
    /// and the reason: tierfs never serves a log it cannot vouch for.
    pub fn open(data_dir: &Path, policy: RolloverPolicy) -> Result<(Self, OpenReport), LogError> {
        Self::open_with_listener(data_dir, policy, None)
    }

    /// As [`LocalLog::open`], telling `on_seal` of every segment that seals from now on.
    pub fn open_with_listener(
        data_dir: &Path,
        policy: RolloverPolicy,
        on_seal: Option<SealListener>,
    ) -> Result<(Self, OpenReport), LogError> {
        let root = data_dir.join(TOPICS_DIR);
        std::fs::create_dir_all(&root).map_err(io_error(&root, "create"))?;
        let mut report = OpenReport::default();
        let mut tenants = Tenants::new();
        for tenant in subdirectories(&root, NameKind::Tenant)? {
            let tenant_dir = root.join(&tenant);
            let mut namespaces = Namespaces::new();
            for namespace in subdirectories(&tenant_dir, NameKind::Namespace)? {
                let ns_dir = tenant_dir.join(&namespace);
                let mut topics = Topics::new();
                for topic in subdirectories(&ns_dir, NameKind::Topic)? {
                    let name = TopicName::new(&tenant, &namespace, &topic)?;
                    let (opened, recovery) =
                        Topic::open(&ns_dir.join(&topic), name.clone(), policy)?;
                    if !recovery.is_clean() {
                        warn!(topic = %name, dropped_bytes = recovery.dropped_bytes, dropped_records = recovery.dropped_records, "repaired the torn tail of the active segment (entries whose write had not returned)");
                        report.repaired.push((name, recovery));
                    }
                    let opened = Arc::new(opened.with_seal_listener(on_seal.clone()));
                    // A segment that filled up just before a crash seals now, before anyone
                    // reads: otherwise a listing taken at start could watch `active` move on.
                    opened.tick(SystemTime::now())?;
                    topics.insert(topic, opened);
                    report.topics += 1;
                }
                namespaces.insert(namespace, topics);
            }
            tenants.insert(tenant, namespaces);
        }
        Ok((
            Self {
                graveyard: data_dir.join(DELETING_DIR),
                root,
                policy,
                tree: RwLock::new(tenants),
                changes: Mutex::new(()),
                on_seal,
            },
            report,
        ))
    }

    fn read(&self) -> RwLockReadGuard<'_, Tenants> {
        self.tree.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tenants> {
        self.tree.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Taken first by every creation and removal (lock order: this, the tree, a topic).
    fn changing(&self) -> MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.root.join(tenant)
    }

    pub fn namespace_dir(&self, ns: &NamespaceName) -> PathBuf {
        self.root.join(&ns.tenant).join(&ns.namespace)
    }

    /// The directory that holds the tenants.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.read().contains_key(tenant)
    }

    pub fn has_namespace(&self, ns: &NamespaceName) -> bool {
        namespace_of(&self.read(), ns).is_ok()
    }

    pub fn tenants(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    pub fn namespaces(&self, tenant: &str) -> Result<Vec<String>, LogError> {
        let tree = self.read();
        let namespaces = tree
            .get(tenant)
            .ok_or_else(|| LogError::NotFound(format!("tenant {tenant}")))?;
        Ok(namespaces.keys().cloned().collect())
    }

    pub fn topics(&self, ns: &NamespaceName) -> Result<Vec<String>, LogError> {
        let tree = self.read();
        let topics = namespace_of(&tree, ns)?;
        Ok(topics.keys().cloned().collect())
    }

    pub fn topic(&self, name: &TopicName) -> Result<Arc<Topic>, LogError> {
        let tree = self.read();
        namespace_of(&tree, &name.namespace_name())?
            .get(&name.topic)
            .cloned()
            .ok_or_else(|| LogError::NotFound(format!("topic {name}")))
    }

    pub fn all_topics(&self) -> Vec<Arc<Topic>> {
        self.read()
            .values()
            .flat_map(|ns| ns.values())
            .flat_map(|topics| topics.values())
            .cloned()
            .collect()
    }

    pub fn create_tenant(&self, tenant: &str) -> Result<(), LogError> {
        validate(NameKind::Tenant, tenant)?;
        let _changing = self.changing();
        if self.read().contains_key(tenant) {
            return Err(LogError::AlreadyExists(format!("tenant {tenant}")));
        }
        create_dir_durably(&self.root, tenant)?;
        self.write().insert(tenant.to_string(), Namespaces::new());
        Ok(())
    }

    pub fn create_namespace(&self, ns: &NamespaceName) -> Result<(), LogError> {
        let _changing = self.changing();
        {
            let tree = self.read();
            let namespaces = tree
                .get(&ns.tenant)
                .ok_or_else(|| LogError::NotFound(format!("tenant {}", ns.tenant)))?;
            if namespaces.contains_key(&ns.namespace) {
                return Err(LogError::AlreadyExists(format!("namespace {ns}")));
            }
        }
        create_dir_durably(&self.tenant_dir(&ns.tenant), &ns.namespace)?;
        if let Some(namespaces) = self.write().get_mut(&ns.tenant) {
            namespaces.insert(ns.namespace.clone(), Topics::new());
        }
        Ok(())
    }

    pub fn create_topic(&self, name: &TopicName) -> Result<Arc<Topic>, LogError> {
        self.add_topic(name, Vec::new())
    }

    /// Creates a topic whose log holds `sealed` already, in an existing namespace.
    fn add_topic(
        &self,
        name: &TopicName,
        sealed: Vec<SealedSegment>,
    ) -> Result<Arc<Topic>, LogError> {
        let ns = name.namespace_name();
        let ns_dir = self.namespace_dir(&ns);
        let _changing = self.changing();
        if namespace_of(&self.read(), &ns)?.contains_key(&name.topic) {
            return Err(LogError::AlreadyExists(format!("topic {name}")));
        }
        let topic = Arc::new(
            Topic::create_with(
                &ns_dir,
                name.clone(),
                self.policy,
                sealed,
                SystemTime::now(),
            )?
            .with_seal_listener(self.on_seal.clone()),
        );
        namespace_of_mut(&mut self.write(), &ns)?.insert(name.topic.clone(), Arc::clone(&topic));
        Ok(topic)
    }

    /// Creates a topic (and its tenant and namespace, if new) whose log already holds
    /// `sealed`, segments that live only in the object store (`tierfs recover`).
    pub fn restore_topic(
        &self,
        name: &TopicName,
        sealed: Vec<SealedSegment>,
    ) -> Result<Arc<Topic>, LogError> {
        for created in [
            self.create_tenant(&name.tenant),
            self.create_namespace(&name.namespace_name()),
        ] {
            match created {
                Ok(()) | Err(LogError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.add_topic(name, sealed)
    }

    pub fn remove_tenant(&self, tenant: &str) -> Result<(), LogError> {
        let _changing = self.changing();
        {
            let tree = self.read();
            let namespaces = tree
                .get(tenant)
                .ok_or_else(|| LogError::NotFound(format!("tenant {tenant}")))?;
            if !namespaces.is_empty() {
                return Err(LogError::NotEmpty(format!("tenant {tenant}")));
            }
        }
        remove_dir_durably(&self.root, tenant)?;
        self.write().remove(tenant);
        Ok(())
    }

    pub fn remove_namespace(&self, ns: &NamespaceName) -> Result<(), LogError> {
        let _changing = self.changing();
        if !namespace_of(&self.read(), ns)?.is_empty() {
            return Err(LogError::NotEmpty(format!("namespace {ns}")));
        }
        remove_dir_durably(&self.tenant_dir(&ns.tenant), &ns.namespace)?;
        if let Some(namespaces) = self.write().get_mut(&ns.tenant) {
            namespaces.remove(&ns.namespace);
        }
        Ok(())
    }

    /// Removes a topic that holds no entries.
    pub fn remove_topic(&self, name: &TopicName) -> Result<(), LogError> {
        let _changing = self.changing();
        let ns = name.namespace_name();
        let topic = namespace_of(&self.read(), &ns)?
            .get(&name.topic)
            .cloned()
            .ok_or_else(|| LogError::NotFound(format!("topic {name}")))?;
        topic.mark_removed()?;
        let dir = topic.dir().to_path_buf();
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            topic.unmark_removed();
            return Err(io_error(&dir, "remove")(e));
        }
        if let Ok(topics) = namespace_of_mut(&mut self.write(), &ns) {
            topics.remove(&name.topic);
        }
        sync_dir(&self.namespace_dir(&ns))
    }

    /// Deletes a topic with everything it holds (`topics delete`): its directory moves under
    /// `<data-dir>/deleting/` at once, so the name is gone (and free) from then on; its objects,
    /// then the directory, are removed by whoever finishes [`LocalLog::tombstones`].
    pub fn delete_topic(&self, name: &TopicName) -> Result<TopicTombstone, LogError> {
        let ns = name.namespace_name();
        let _changing = self.changing();
        let topic = namespace_of(&self.read(), &ns)?
            .get(&name.topic)
            .cloned()
            .ok_or_else(|| LogError::NotFound(format!("topic {name}")))?;
        std::fs::create_dir_all(&self.graveyard).map_err(io_error(&self.graveyard, "create"))?;
        let segments = topic.retire(SystemTime::now())?;
        let tomb = self
            .graveyard
            .join(uuid::Uuid::new_v4().simple().to_string());
        if let Err(e) = std::fs::rename(topic.dir(), &tomb) {
            // Nothing is deleted: the topic stays as it was.
            topic.unmark_removed();
            return Err(io_error(topic.dir(), "move to the deleted topics")(e));
        }
        topic.forget_retired_manifest();
        if let Ok(topics) = namespace_of_mut(&mut self.write(), &ns) {
            topics.remove(&name.topic);
        }
        sync_dir(&self.namespace_dir(&ns))?;
        sync_dir(&self.graveyard)?;
        Ok(TopicTombstone {
            dir: tomb,
            topic: name.clone(),
            segments,
        })
    }

    /// The deleted topics whose removal is not finished (a crash, a store that refused).
    pub fn tombstones(&self) -> Vec<TopicTombstone> {
        let Ok(entries) = std::fs::read_dir(&self.graveyard) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            let manifest = match Manifest::load(&dir) {
                Ok(m) => m,
                Err(e) => {
                    // Its objects cannot be named: what the bucket holds of it is left for
                    // `scan-offloaded` to find.
                    warn!(path = %dir.display(), error = %e, "a deleted topic's manifest cannot be read; removing its directory");
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
            };
            let Ok(topic) = TopicName::parse(&manifest.topic) else {
                warn!(path = %dir.display(), topic = %manifest.topic, "a deleted topic's manifest names no valid topic; removing its directory");
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            };
            let segments = manifest.deleting;
            found.push(TopicTombstone {
                dir,
                topic,
                segments,
            });
        }
        found
    }

    /// Removes a deleted topic's directory once its objects are gone.
    pub fn bury(&self, tomb: &TopicTombstone) -> Result<(), LogError> {
        match std::fs::remove_dir_all(&tomb.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&tomb.dir, "remove")(e)),
        }
        sync_dir(&self.graveyard)
    }

    /// One pass of the rollover timer over every topic.
    pub fn tick(&self, now: SystemTime) {
        for topic in self.all_topics() {
            if let Err(e) = topic.tick(now) {
                error!(topic = %topic.name(), error = %e, "timed rollover failed; will retry");
            }
        }
    }

    /// Makes every topic's appended entries durable; reports the first failure.
    pub fn sync_all(&self) -> Result<(), LogError> {
        let mut first_error = None;
        for topic in self.all_topics() {
            if let Err(e) = topic.sync() {
                error!(topic = %topic.name(), error = %e, "fsync failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn namespace_of<'a>(tree: &'a Tenants, ns: &NamespaceName) -> Result<&'a Topics, LogError> {
    tree.get(&ns.tenant)
        .ok_or_else(|| LogError::NotFound(format!("tenant {}", ns.tenant)))?
        .get(&ns.namespace)
        .ok_or_else(|| LogError::NotFound(format!("namespace {ns}")))
}

fn namespace_of_mut<'a>(
    tree: &'a mut Tenants,
    ns: &NamespaceName,
) -> Result<&'a mut Topics, LogError> {
    tree.get_mut(&ns.tenant)
        .ok_or_else(|| LogError::NotFound(format!("tenant {}", ns.tenant)))?
        .get_mut(&ns.namespace)
        .ok_or_else(|| LogError::NotFound(format!("namespace {ns}")))
}

fn create_dir_durably(parent: &Path, name: &str) -> Result<(), LogError> {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).map_err(io_error(&dir, "create"))?;
    sync_dir(parent)
}

fn remove_dir_durably(parent: &Path, name: &str) -> Result<(), LogError> {
    let dir = parent.join(name);
    std::fs::remove_dir(&dir).map_err(io_error(&dir, "remove"))?;
    sync_dir(parent)
}

/// The subdirectories of `dir` that are valid names of `kind`. Leftovers of an interrupted topic
/// creation are removed; anything else unexpected is left alone and reported.
fn subdirectories(dir: &Path, kind: NameKind) -> Result<Vec<String>, LogError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir, "list"))? {
        let entry = entry.map_err(io_error(dir, "list"))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if kind == NameKind::Topic && name.starts_with(CREATING_PREFIX) {
            warn!(path = %path.display(), "removing a topic directory whose creation was interrupted");
            std::fs::remove_dir_all(&path).map_err(io_error(&path, "remove"))?;
            continue;
        }
        if !path.is_dir() {
            warn!(path = %path.display(), "ignoring a file that is not part of the {kind} layout");
            continue;
        }
        if let Err(e) = validate(kind, &name) {
            warn!(path = %path.display(), reason = %e, "ignoring a directory that is not a valid {kind}");
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_topic_whose_directory_cannot_move_is_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        // The deleted topics' folder on another filesystem: the move fails (EXDEV).
        let elsewhere = tempfile::tempdir_in("/dev/shm").unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join(DELETING_DIR)).unwrap();
        let (log, _) = LocalLog::open(dir.path(), RolloverPolicy::default()).unwrap();
        let name = TopicName::new("t", "ns", "x").unwrap();
        log.create_tenant("t").unwrap();
        log.create_namespace(&name.namespace_name()).unwrap();
        let topic = log.create_topic(&name).unwrap();
        topic
            .append(b"a", super::super::AppendAt::Tail, SystemTime::now())
            .unwrap();
        topic.seal_now(SystemTime::now()).unwrap();
        assert!(log.delete_topic(&name).is_err());
        let kept = log.topic(&name).unwrap();
        assert_eq!(kept.snapshot().sealed.len(), 1);
        assert!(
            kept.deleting().is_empty(),
            "nothing is left marked for deletion"
        );
        kept.append(b"b", super::super::AppendAt::Tail, SystemTime::now())
            .unwrap();
        drop(log);
        let (reopened, _) = LocalLog::open(dir.path(), RolloverPolicy::default()).unwrap();
        let topic = reopened.topic(&name).unwrap();
        assert_eq!(topic.snapshot().sealed.len(), 1);
        assert!(topic.deleting().is_empty());
    }

    #[test]
    fn lookups_do_not_wait_for_a_topic_creations_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LocalLog::open(dir.path(), RolloverPolicy::default()).unwrap();
        let log = Arc::new(log);
        let ns = NamespaceName::new("t", "ns").unwrap();
        log.create_tenant("t").unwrap();
        log.create_namespace(&ns).unwrap();
        let creator = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                super::super::SLOW_DIR_SYNC.with(|d| d.set(std::time::Duration::from_millis(1000)));
                log.create_topic(&TopicName::new("t", "ns", "slow").unwrap())
                    .unwrap();
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        let started = std::time::Instant::now();
        assert_eq!(log.tenants(), ["t"]);
        assert!(log.topics(&ns).unwrap().is_empty(), "not created yet");
        let waited = started.elapsed();
        creator.join().unwrap();
        assert!(
            waited < std::time::Duration::from_millis(1000),
            "a lookup waited {waited:?} for another topic's creation"
        );
        assert_eq!(log.topics(&ns).unwrap(), ["slow"]);
    }

    use super::*;
    use crate::log::AppendAt;

    #[test]
    fn tree_round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let policy = RolloverPolicy::default();
        let (log, _) = LocalLog::open(dir.path(), policy).unwrap();
        log.create_tenant("t").unwrap();
        let ns = NamespaceName::new("t", "ns").unwrap();
        log.create_namespace(&ns).unwrap();
        let name = TopicName::new("t", "ns", "x").unwrap();
        let topic = log.create_topic(&name).unwrap();
        topic
            .append(b"entry", AppendAt::Tail, SystemTime::now())
            .unwrap();
        assert!(matches!(
            log.create_topic(&name),
            Err(LogError::AlreadyExists(_))
        ));
        assert!(matches!(
            log.remove_namespace(&ns),
            Err(LogError::NotEmpty(_))
        ));
        assert!(matches!(
            log.remove_topic(&name),
            Err(LogError::NotEmpty(_))
        ));
        drop((log, topic));

        let (log, report) = LocalLog::open(dir.path(), policy).unwrap();
        assert_eq!(report.topics, 1);
        assert_eq!(log.tenants(), vec!["t"]);
        assert_eq!(log.topics(&ns).unwrap(), vec!["x"]);
        assert_eq!(log.topic(&name).unwrap().snapshot().active.size, 5);
    }

    #[test]
    fn empty_things_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = LocalLog::open(dir.path(), RolloverPolicy::default()).unwrap();
        log.create_tenant("t").unwrap();
        let ns = NamespaceName::new("t", "ns").unwrap();
        log.create_namespace(&ns).unwrap();
        let name = TopicName::new("t", "ns", "x").unwrap();
        let topic = log.create_topic(&name).unwrap();
        log.remove_topic(&name).unwrap();
        assert!(matches!(
            topic.append(b"late", AppendAt::Tail, SystemTime::now()),
            Err(LogError::Removed(_))
        ));
        log.remove_namespace(&ns).unwrap();
        log.remove_tenant("t").unwrap();
        assert!(log.tenants().is_empty());
        assert!(std::fs::read_dir(log.root_dir()).unwrap().next().is_none());
    }

    #[test]
    fn interrupted_creation_is_cleaned_and_foreign_entries_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ns_dir = dir.path().join("topics/t/ns");
        std::fs::create_dir_all(ns_dir.join("#creating-x")).unwrap();
        std::fs::create_dir_all(ns_dir.join("bad name")).unwrap();
        let (log, report) = LocalLog::open(dir.path(), RolloverPolicy::default()).unwrap();
        assert_eq!(report.topics, 0);
        assert!(!ns_dir.join("#creating-x").exists());
        assert!(ns_dir.join("bad name").exists());
        let ns = NamespaceName::new("t", "ns").unwrap();
        assert!(log.topics(&ns).unwrap().is_empty());
    }
}
