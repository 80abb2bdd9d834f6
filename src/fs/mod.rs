//! The filesystem's behaviour, independent of the kernel interface.
//!
//! [`TierFs`] answers every file operation with plain values or an [`FsError`]; the FUSE
//! adapter (`crate::fuse`) only translates. The tree it presents:
//!
//! ```text
//! /<tenant>/<namespace>/<topic>/<20-digit id>.seg   sealed segments, 0444, immutable
//! /<tenant>/<namespace>/<topic>/active              the active segment, 0644, append-only
//! ```
//!
//! `docs/SEMANTICS.md` lists what each operation does, errno by errno.

mod attr;
mod error;
mod handle;
mod inode;
mod ledgers;
mod tree;
mod xattr;

use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

pub use attr::{Attr, Kind};
pub use error::FsError;
pub use handle::DirEntry;
pub use inode::{Node, ROOT_INO};
pub use tree::{BucketTree, Tree};

use attr::Owner;
use handle::{Handle, HandleTable};
use inode::InodeTable;

use crate::log::{AppendAt, LocalLog, SealedSegment, Topic, TopicSnapshot, parse_data_file_name};
use crate::name::{NamespaceName, TopicName};
use crate::store::ObjectStore;
use std::future::Future;
use std::pin::Pin;

use crate::cache::{Cache, ReadAhead, RemoteObject};

pub const ACTIVE_NAME: &str = "active";

/// How an opened file is to be cached by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// Every read and write goes to tierfs (the file changes under the kernel).
    pub direct_io: bool,
    /// Pages cached by earlier opens stay valid (the file never changes).
    pub keep_cache: bool,
}

/// The attribute changes a `setattr` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub size: Option<u64>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// atime, mtime or ctime: accepted and ignored, the log's own times stand.
    pub times: bool,
}

/// Space figures for `statfs`, those of the data directory's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// The object tier as the filesystem sees it: where offloaded bytes are read from.
#[derive(Debug, Clone)]
pub struct RemoteTier {
    pub store: Arc<dyn ObjectStore>,
    /// Read the object even while a local copy exists (`managedLedgerDataReadPriority` =
    /// `tiered-storage-first`).
    pub prefer_remote: bool,
    pub cache: Arc<Cache>,
    /// The runtime reads of offloaded segments run on.
    pub runtime: tokio::runtime::Handle,
}

/// A remote read's answer, refused when it is short of what the file holds at `offset`: a
/// short answer would make the kernel believe the file ends there.
fn check_length(
    object: &crate::cache::RemoteObject,
    offset: u64,
    size: u32,
    bytes: bytes::Bytes,
    url: impl FnOnce() -> String,
) -> Result<bytes::Bytes, FsError> {
    let expected = object.size.saturating_sub(offset).min(u64::from(size));
    if bytes.len() as u64 != expected {
        return Err(FsError::Cache {
            path: url(),
            source: crate::cache::CacheError::Short {
                offset,
                expected,
                got: bytes.len() as u64,
            },
        });
    }
    Ok(bytes)
}

/// The answer to a read: at once (local files), from memory at once (bytes of an offloaded
/// file already in the memory cache: no hop to the runtime), or later (offloaded bytes read
/// through the cache on the runtime, so that no FUSE thread waits on the network).
pub enum Read {
    Ready(Result<Vec<u8>, FsError>),
    Cached(bytes::Bytes),
    Later(Pin<Box<dyn Future<Output = Result<bytes::Bytes, FsError>> + Send>>),
}

impl Read {
    /// Waits for the answer on the current thread (tests, and callers outside the runtime).
    pub fn wait(self, runtime: Option<&tokio::runtime::Handle>) -> Result<Vec<u8>, FsError> {
        match self {
            Read::Ready(result) => result,
            Read::Cached(bytes) => Ok(bytes.to_vec()),
            Read::Later(future) => runtime
                .expect("a later read needs the runtime")
                .block_on(future)
                .map(|bytes| bytes.to_vec()),
        }
    }
}

/// A removed name is invalidated in the kernel a second time this long after the first (see
/// [`TierFs::forget_name`]).
pub const FORGET_AGAIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Tells the kernel to forget a cached name: `(parent inode, name)`.
pub type Invalidator = Box<dyn Fn(u64, &str) + Send + Sync>;
/// An [`Invalidator`] that a delayed second invalidation can hold too.
type SharedInvalidator = Arc<dyn Fn(u64, &str) + Send + Sync>;
/// Tells the kernel to forget an inode's cached attributes.
pub type AttrInvalidator = Box<dyn Fn(u64) + Send + Sync>;

pub struct TierFs {
    tree: Tree,
    remote: Option<RemoteTier>,
    invalidator: std::sync::OnceLock<SharedInvalidator>,
    attr_invalidator: std::sync::OnceLock<AttrInvalidator>,
    inodes: InodeTable,
    handles: HandleTable,
    owner: Owner,
}

impl std::fmt::Debug for TierFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierFs")
            .field("tree", &self.tree)
            .finish_non_exhaustive()
    }
}

impl TierFs {
    pub fn new(log: Arc<LocalLog>) -> Self {
        Self::with_remote(log, None)
    }

    /// A filesystem that also reads offloaded segments from the object tier.
    pub fn with_remote(log: Arc<LocalLog>, remote: Option<RemoteTier>) -> Self {
        Self::over(Tree::Log(log), remote)
    }

    /// A read-only filesystem of everything the bucket's catalog records.
    pub fn read_only(bucket: BucketTree, remote: RemoteTier) -> Self {
        Self::over(Tree::Bucket(bucket), Some(remote))
    }

    /// A read-only filesystem of the ledgers Pulsar's offloader left in a bucket.
    pub fn pulsar(bucket: Arc<crate::pulsar::tree::PulsarBucket>, remote: RemoteTier) -> Self {
        Self::over(Tree::Pulsar(bucket), Some(remote))
    }

    fn over(tree: Tree, remote: Option<RemoteTier>) -> Self {
        Self {
            tree,
            remote,
            invalidator: std::sync::OnceLock::new(),
            attr_invalidator: std::sync::OnceLock::new(),
            inodes: InodeTable::default(),
            handles: HandleTable::default(),
            owner: Owner::current(),
        }
    }

    /// Installs how names are dropped from the kernel's cache (the FUSE session's notifier).
    pub fn set_invalidator(&self, invalidator: Invalidator) {
        let _ = self.invalidator.set(Arc::from(invalidator));
    }

    /// Installs how cached attributes are dropped from the kernel's cache.
    pub fn set_attr_invalidator(&self, invalidator: AttrInvalidator) {
        let _ = self.attr_invalidator.set(invalidator);
    }

    /// How many handles have the topic's `active` open for writing (`topics delete` without
    /// `-f` refuses while there are any).
    pub fn writers(&self, topic: &TopicName) -> usize {
        self.handles.writers(topic)
    }

    /// A tenant, namespace, topic or segment was removed outside the kernel's sight (admin API,
    /// retention, the bucket's catalog): the kernel must not keep serving its cached name.
    ///
    /// The name is invalidated now and once more [`FORGET_AGAIN`] later: a listing answered
    /// just before the removal, whose reply reaches the kernel just after the first
    /// invalidation, caches the name again (for a sealed segment, for a day). Seen in
    /// `tests/bucket.rs` 1 run in 8 under load: the listing no longer showed the segment, but
    /// `stat` still found it.
    pub fn forget_name(&self, parent: &Node, name: &str) {
        let (Some(invalidate), Some(ino)) = (self.invalidator.get(), self.inodes.existing(parent))
        else {
            return;
        };
        invalidate(ino, name);
        if let Some(runtime) = self.runtime() {
            let (invalidate, name) = (Arc::clone(invalidate), name.to_string());
            runtime.spawn(async move {
                tokio::time::sleep(FORGET_AGAIN).await;
                invalidate(ino, &name);
            });
        }
    }

    fn node(&self, ino: u64) -> Result<Node, FsError> {
        self.inodes
            .node(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))
    }

    /// A topic of the writer's local log (a read-only mount has none: no `active`, no appends).
    fn topic(&self, name: &TopicName) -> Result<Arc<Topic>, FsError> {
        self.tree
            .log()
            .and_then(|log| log.topic(name).ok())
            .ok_or_else(|| FsError::NotFound(format!("/{name}")))
    }

    /// The writer's local log, or the refusal a read-only mount gives to a change.
    fn writable(&self, path: impl ToString, op: &'static str) -> Result<&Arc<LocalLog>, FsError> {
        self.tree.log().ok_or_else(|| FsError::ReadOnly {
            path: path.to_string(),
            op,
            why: match self.tree {
                Tree::Pulsar(_) => {
                    "this mount shows what Pulsar offloaded, read-only (tierfs mount --pulsar)"
                }
                _ => {
                    "this mount shows the bucket read-only (tierfs mount --read-only); change it through the writer's mount"
                }
            },
        })
    }

    /// Whether this mount shows the bucket, read-only.
    pub fn is_read_only(&self) -> bool {
        self.tree.log().is_none()
    }

    /// The tree this mount shows.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The child `name` of directory `parent`, if it exists.
    fn child(&self, parent: &Node, name: &str) -> Result<Node, FsError> {
        let missing = || {
            FsError::NotFound(format!(
                "{}/{name}",
                parent.to_string().trim_end_matches('/')
            ))
        };
        if self.pulsar_mount() {
            return self.ledger_child(parent, name);
        }
        let node = match parent {
            Node::Root => self
                .tree
                .has_tenant(name)
                .then(|| Node::Tenant(name.to_string())),
            Node::Tenant(t) => {
                let ns = NamespaceName {
                    tenant: t.clone(),
                    namespace: name.to_string(),
                };
                self.tree.has_namespace(&ns).then_some(Node::Namespace(ns))
            }
            Node::Namespace(ns) => {
                let topic = TopicName {
                    tenant: ns.tenant.clone(),
                    namespace: ns.namespace.clone(),
                    topic: name.to_string(),
                };
                self.tree.has_topic(&topic).then_some(Node::Topic(topic))
            }
            Node::Topic(t) => {
                if name == ACTIVE_NAME {
                    self.topic(t)?;
                    Some(Node::Active(t.clone()))
                } else {
                    parse_data_file_name(name)
                        .filter(|id| self.tree.sealed_segment(t, *id).is_some())
                        .map(|id| Node::Segment(t.clone(), id))
                }
            }
            _ => return Err(FsError::NotDirectory(parent.to_string())),
        };
        node.ok_or_else(missing)
    }

    /// A directory's attributes: a local directory's times, or the mount's for the bucket.
    fn directory_attr(
        &self,
        ino: u64,
        local: impl FnOnce(&LocalLog) -> std::path::PathBuf,
    ) -> Attr {
        match (&self.tree, self.tree.mounted()) {
            (Tree::Log(log), _) => self
                .owner
                .directory(ino, std::fs::metadata(local(log)).ok().as_ref()),
            (Tree::Bucket(_) | Tree::Pulsar(_), mounted) => self.owner.directory_at(ino, mounted),
        }
    }

    fn attr_of(&self, node: &Node) -> Result<Attr, FsError> {
        if self.pulsar_mount() {
            return self.ledger_attr(node);
        }
        let ino = self.inodes.ino(node);
        let missing = || FsError::NotFound(node.to_string());
        match node {
            Node::Root => Ok(self.directory_attr(ino, |log| log.root_dir().to_path_buf())),
            Node::Tenant(t) => {
                if !self.tree.has_tenant(t) {
                    return Err(missing());
                }
                Ok(self.directory_attr(ino, |log| log.tenant_dir(t)))
            }
            Node::Namespace(ns) => {
                if !self.tree.has_namespace(ns) {
                    return Err(missing());
                }
                Ok(self.directory_attr(ino, |log| log.namespace_dir(ns)))
            }
            Node::Topic(t) => {
                if !self.tree.has_topic(t) {
                    return Err(missing());
                }
                let dir = self.topic(t).map(|topic| topic.dir().to_path_buf());
                Ok(self.directory_attr(ino, |_| dir.unwrap_or_default()))
            }
            Node::Segment(t, id) => {
                let segment = self.tree.sealed_segment(t, *id).ok_or_else(missing)?;
                Ok(self.owner.sealed(ino, &segment))
            }
            Node::Active(t) => Ok(self.owner.active(ino, &self.topic(t)?.active_info())),
            Node::LedgerDir(_) | Node::Ledger(..) | Node::EntryLengths(..) => Err(missing()),
        }
    }

    /// Whether this mount shows a Pulsar offload bucket.
    fn pulsar_mount(&self) -> bool {
        matches!(self.tree, Tree::Pulsar(_))
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let parent = self.node(parent)?;
        // No valid name is anything but UTF-8, so such a name simply does not exist.
        let name = utf8(&parent, name).map_err(|_| {
            FsError::NotFound(format!(
                "{}/{}",
                parent.to_string().trim_end_matches('/'),
                name.to_string_lossy()
            ))
        })?;
        let child = self.child(&parent, name)?;
        self.attr_of(&child)
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        self.attr_of(&self.node(ino)?)
    }

    /// The entries of a directory, without `.` and `..`.
    pub fn list(&self, ino: u64) -> Result<Vec<DirEntry>, FsError> {
        let node = self.node(ino)?;
        if self.pulsar_mount() {
            return self.ledger_list(&node);
        }
        let dir_entry = |name: String, child: Node| -> Result<DirEntry, FsError> {
            Ok(DirEntry {
                attr: self.attr_of(&child)?,
                name,
            })
        };
        let mut entries = Vec::new();
        match &node {
            Node::Root => {
                for t in self.tree.tenants() {
                    entries.push(dir_entry(t.clone(), Node::Tenant(t))?);
                }
            }
            Node::Tenant(t) => {
                let namespaces = self
                    .tree
                    .namespaces(t)
                    .ok_or_else(|| FsError::NotFound(node.to_string()))?;
                for ns in namespaces {
                    let child = Node::Namespace(NamespaceName {
                        tenant: t.clone(),
                        namespace: ns.clone(),
                    });
                    entries.push(dir_entry(ns, child)?);
                }
            }
            Node::Namespace(ns) => {
                let topics = self
                    .tree
                    .topics(ns)
                    .ok_or_else(|| FsError::NotFound(node.to_string()))?;
                for topic in topics {
                    let name = TopicName {
                        tenant: ns.tenant.clone(),
                        namespace: ns.namespace.clone(),
                        topic: topic.clone(),
                    };
                    // A topic removed since the listing was taken is simply not shown.
                    if let Ok(entry) = dir_entry(topic, Node::Topic(name)) {
                        entries.push(entry);
                    }
                }
            }
            Node::Topic(t) if self.is_read_only() => {
                let segments = self
                    .tree
                    .bucket_segments(t)
                    .ok_or_else(|| FsError::NotFound(node.to_string()))?;
                for segment in &segments {
                    let ino = self.inodes.ino(&Node::Segment(t.clone(), segment.id));
                    entries.push(DirEntry {
                        name: crate::log::data_file_name(segment.id),
                        attr: self.owner.sealed(ino, segment),
                    });
                }
            }
            Node::Topic(t) => {
                let snapshot: TopicSnapshot = self.topic(t)?.snapshot();
                for segment in &snapshot.sealed {
                    let child = Node::Segment(t.clone(), segment.id);
                    let ino = self.inodes.ino(&child);
                    entries.push(DirEntry {
                        name: crate::log::data_file_name(segment.id),
                        attr: self.owner.sealed(ino, segment),
                    });
                }
                let ino = self.inodes.ino(&Node::Active(t.clone()));
                entries.push(DirEntry {
                    name: ACTIVE_NAME.to_string(),
                    attr: self.owner.active(ino, &snapshot.active),
                });
            }
            _ => return Err(FsError::NotDirectory(node.to_string())),
        }
        Ok(entries)
    }

    pub fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let entries = self.list(ino)?;
        Ok(self.handles.insert(Handle::Directory { entries }))
    }

    /// Hands the entries of an open directory, from position `offset` on, to `add` until it
    /// returns true (the reply is full). Each call costs what it hands over, not the listing:
    /// a directory of n entries is read in O(n) however many calls the kernel makes.
    pub fn readdir(
        &self,
        fh: u64,
        offset: usize,
        mut add: impl FnMut(&DirEntry) -> bool,
    ) -> Result<(), FsError> {
        match self.handles.get(fh).as_deref() {
            Some(Handle::Directory { entries }) => {
                for entry in entries.iter().skip(offset) {
                    if add(entry) {
                        break;
                    }
                }
                Ok(())
            }
            _ => Err(FsError::BadHandle(fh)),
        }
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles.remove(fh);
    }

    pub fn mkdir(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let parent = self.node(parent)?;
        let name = utf8(&parent, name)?;
        let path = format!("{}/{name}", parent.to_string().trim_end_matches('/'));
        let log = self.writable(&path, "mkdir")?;
        let node = match &parent {
            Node::Root => {
                log.create_tenant(name).map_err(FsError::log(&path))?;
                Node::Tenant(name.to_string())
            }
            Node::Tenant(t) => {
                let ns = NamespaceName::new(t, name).map_err(|e| FsError::log(&path)(e.into()))?;
                log.create_namespace(&ns).map_err(FsError::log(&path))?;
                Node::Namespace(ns)
            }
            Node::Namespace(ns) => {
                let topic = TopicName::new(&ns.tenant, &ns.namespace, name)
                    .map_err(|e| FsError::log(&path)(e.into()))?;
                log.create_topic(&topic).map_err(FsError::log(&path))?;
                Node::Topic(topic)
            }
            Node::Topic(_) => {
                return Err(FsError::NotPermitted {
                    path,
                    reason: "a topic holds segments, not directories",
                });
            }
            _ => return Err(FsError::NotDirectory(parent.to_string())),
        };
        self.attr_of(&node)
    }

    pub fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        let parent = self.node(parent)?;
        let name = utf8(&parent, name)?;
        let child = self.child(&parent, name)?;
        let path = child.to_string();
        let log = self.writable(&path, "rmdir")?;
        match &child {
            Node::Tenant(t) => log.remove_tenant(t),
            Node::Namespace(ns) => log.remove_namespace(ns),
            Node::Topic(t) => log.remove_topic(t),
            Node::Root => unreachable!("the root is nobody's child"),
            _ => return Err(FsError::NotDirectory(path)),
        }
        .map_err(FsError::log(path))
    }

    /// `unlink`: always EPERM; a topic's segments and `active` are never deleted by hand.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        let parent = self.node(parent)?;
        let name = utf8(&parent, name)?;
        let child = self.child(&parent, name)?;
        self.writable(&child, "unlink")?;
        Err(FsError::NotPermitted {
            path: child.to_string(),
            reason: "segments and active cannot be deleted; a topic's log is append-only",
        })
    }

    /// `rename`: names are the log's order and identity; nothing is renamed.
    pub fn rename(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        let parent = self.node(parent)?;
        let name = utf8(&parent, name)?;
        let child = self.child(&parent, name)?;
        self.writable(&child, "rename")?;
        Err(FsError::NotPermitted {
            path: child.to_string(),
            reason: "nothing in a tierfs mount can be renamed",
        })
    }

    /// `create`, `mknod`, `symlink`, `link`: files appear only as segments of the log.
    pub fn refuse_new_file(&self, parent: u64, name: &OsStr) -> FsError {
        let parent = self.node(parent).map(|n| n.to_string()).unwrap_or_default();
        let path = format!(
            "{}/{}",
            parent.trim_end_matches('/'),
            name.to_string_lossy()
        );
        if let Err(read_only) = self.writable(&path, "create") {
            return read_only;
        }
        FsError::NotPermitted {
            path,
            reason: "files cannot be created here; create tenants, namespaces and topics with mkdir and append to a topic's active file",
        }
    }

    /// `fallocate`: a segment's space is whatever its entries take.
    pub fn refuse_fallocate(&self, ino: u64) -> FsError {
        let path = self.node(ino).map(|n| n.to_string()).unwrap_or_default();
        if let Err(read_only) = self.writable(&path, "fallocate") {
            return read_only;
        }
        FsError::NotPermitted {
            path,
            reason: "space is allocated by appending entries, not by fallocate",
        }
    }

    pub fn setattr(&self, ino: u64, change: SetAttr) -> Result<Attr, FsError> {
        let node = self.node(ino)?;
        let path = node.to_string();
        if change != SetAttr::default() && self.is_read_only() {
            self.writable(&path, "setattr")?;
        }
        if change.mode.is_some() || change.uid.is_some() || change.gid.is_some() {
            return Err(FsError::NotPermitted {
                path,
                reason: "modes and owners are fixed by the segment's state",
            });
        }
        if let Some(size) = change.size {
            match &node {
                Node::Active(t) if self.topic(t)?.active_info().size == size => {}
                Node::Active(_) => {
                    return Err(FsError::NotPermitted {
                        path,
                        reason: "active is append-only; truncating it (or opening it with O_TRUNC while it holds entries) is refused",
                    });
                }
                Node::Segment(..) => {
                    return Err(FsError::NotPermitted {
                        path,
                        reason: "sealed segments are immutable",
                    });
                }
                _ => return Err(FsError::IsDirectory(path)),
            }
        }
        self.attr_of(&node)
    }

    pub fn open(&self, ino: u64, flags: i32) -> Result<Opened, FsError> {
        self.open_by(ino, flags, 0)
    }

    /// `open` by process `pid` (0: unknown): a reader of a sealed segment holds retention back
    /// (`HandleTable::retention_floor`).
    pub fn open_by(&self, ino: u64, flags: i32, pid: u32) -> Result<Opened, FsError> {
        let node = self.node(ino)?;
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if self.pulsar_mount() {
            return self.ledger_open(&node, writable);
        }
        match &node {
            Node::Segment(t, id) => {
                if writable {
                    self.writable(&node, "open for writing")?;
                    return Err(FsError::NotPermitted {
                        path: node.to_string(),
                        reason: "sealed segments are immutable; append to active instead",
                    });
                }
                self.handles.note_reader(t, *id, pid);
                let segment = self
                    .tree
                    .sealed_segment(t, *id)
                    .ok_or_else(|| FsError::NotFound(node.to_string()))?;
                let size = segment.size;
                let remote = |segment: &SealedSegment| {
                    self.remote_object(segment).map(|object| Handle::Remote {
                        object,
                        readahead: std::sync::Mutex::new(ReadAhead::followed_by(
                            self.next_remote(t, *id),
                        )),
                    })
                };
                let handle = match remote(&segment) {
                    Some(handle) => handle,
                    None => {
                        let topic = self.topic(t)?;
                        match topic.open_sealed(*id) {
                            Ok(file) => Handle::Sealed { file, size },
                            // The local copy went (deletion lag) between the look and the
                            // open: read the offloaded copy instead.
                            Err(e) => topic
                                .sealed_segment(*id)
                                .and_then(|fresh| remote(&fresh))
                                .ok_or_else(|| FsError::log(&node)(e))?,
                        }
                    }
                };
                let fh = self.handles.insert_segment(handle, t, *id);
                Ok(Opened {
                    fh,
                    direct_io: false,
                    keep_cache: true,
                })
            }
            Node::Active(t) => {
                let topic = self.topic(t)?;
                let position = topic.active_info().size;
                let fh = self.handles.insert(Handle::Active {
                    topic,
                    writable,
                    append: flags & libc::O_APPEND != 0,
                    position: std::sync::Mutex::new(position),
                });
                Ok(Opened {
                    fh,
                    direct_io: true,
                    keep_cache: false,
                })
            }
            _ => Err(FsError::IsDirectory(node.to_string())),
        }
    }

    /// Which copy of a sealed segment reads use: the object when there is no local copy, or
    /// when both exist and `managedLedgerDataReadPriority` is `tiered-storage-first`.
    fn remote_object(&self, segment: &SealedSegment) -> Option<RemoteObject> {
        let remote = self.remote.as_ref()?;
        let record = segment.offload.as_ref().filter(|r| r.is_complete())?;
        (!segment.local || remote.prefer_remote).then(|| RemoteObject {
            data_key: Arc::from(record.data_key.as_str()),
            index_key: record.index_key.clone(),
            size: segment.size,
        })
    }

    /// The topic's next sealed segment after `id`, if reads of it go to the store too.
    fn next_remote(&self, topic: &TopicName, id: u64) -> Option<RemoteObject> {
        let sealed = match &self.tree {
            Tree::Log(log) => log.topic(topic).ok()?.snapshot().sealed,
            Tree::Bucket(_) => self.tree.bucket_segments(topic)?,
            Tree::Pulsar(_) => return None,
        };
        let next = sealed.iter().filter(|s| s.id > id).min_by_key(|s| s.id)?;
        self.remote_object(next)
    }

    /// The runtime that completes [`Read::Later`] reads.
    pub fn runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.remote.as_ref().map(|r| &r.runtime)
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Read {
        let Some(handle) = self.handles.get(fh) else {
            return Read::Ready(Err(FsError::BadHandle(fh)));
        };
        if let Some(read) = self.ledger_read(&handle, offset, size) {
            return read;
        }
        if let Handle::Remote { object, readahead } = handle.as_ref() {
            let Some(remote) = self.remote.clone() else {
                return Read::Ready(Err(FsError::BadHandle(fh)));
            };
            // Bytes already cached are answered on this FUSE thread: no hop to the runtime
            // and back (a reader at random of a segment fetched whole makes 1,000s of them).
            let now = {
                let _runtime = remote.runtime.enter();
                remote
                    .cache
                    .read_now(object, readahead, offset, u64::from(size))
            };
            if let Some(bytes) = now {
                let url = || remote.store.url(&object.data_key);
                return match check_length(object, offset, size, bytes, url) {
                    Ok(bytes) => Read::Cached(bytes),
                    Err(e) => Read::Ready(Err(e)),
                };
            }
            let url = remote.store.url(&object.data_key);
            return Read::Later(Box::pin(async move {
                let Handle::Remote { object, readahead } = handle.as_ref() else {
                    unreachable!("matched above");
                };
                let bytes = remote
                    .cache
                    .read(object, readahead, offset, u64::from(size))
                    .await
                    .map_err(|source| FsError::Cache {
                        path: url.clone(),
                        source,
                    })?;
                check_length(object, offset, size, bytes, || url)
            }));
        }
        Read::Ready(self.read_local(&handle, fh, offset, size))
    }

    fn read_local(
        &self,
        handle: &Handle,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, FsError> {
        let (file, len, path) = match handle {
            Handle::Remote { .. } => unreachable!("remote handles are read through the cache"),
            Handle::Sealed { file, size } => (Arc::clone(file), *size, format!("file handle {fh}")),
            Handle::Active { topic, .. } => {
                let (_, file, len) = topic.active_file().map_err(FsError::log(topic.name()))?;
                (file, len, format!("/{}/active", topic.name()))
            }
            Handle::Directory { .. } | Handle::Ledger { .. } | Handle::EntryLengths { .. } => {
                return Err(FsError::BadHandle(fh));
            }
        };
        if offset >= len {
            return Ok(Vec::new());
        }
        let want = (len - offset).min(u64::from(size)) as usize;
        let mut buf = vec![0u8; want];
        file.read_exact_at(&mut buf, offset)
            .map_err(|source| FsError::Io { path, source })?;
        Ok(buf)
    }

    /// One `write(2)` on `active` is one entry, appended at the tail.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, FsError> {
        let handle = self.handles.get(fh).ok_or(FsError::BadHandle(fh))?;
        let Handle::Active {
            topic,
            writable: true,
            append,
            position,
        } = handle.as_ref()
        else {
            return Err(FsError::BadHandle(fh));
        };
        if data.is_empty() {
            return Ok(0);
        }
        let mut position = position.lock().unwrap_or_else(|p| p.into_inner());
        let at = if *append || offset == *position {
            AppendAt::Tail
        } else {
            AppendAt::Offset(offset)
        };
        topic
            .append(data, at, SystemTime::now())
            .map_err(FsError::log(format!("/{}/active", topic.name())))?;
        *position = offset + data.len() as u64;
        Ok(data.len() as u32)
    }

    /// `fsync` (and `fdatasync`): entries written through this handle's topic reach the disk.
    pub fn fsync(&self, fh: u64) -> Result<(), FsError> {
        match self.handles.get(fh).as_deref() {
            Some(Handle::Active { topic, .. }) => topic
                .sync()
                .map_err(FsError::log(format!("/{}/active", topic.name()))),
            Some(_) => Ok(()),
            None => Err(FsError::BadHandle(fh)),
        }
    }

    pub fn release(&self, fh: u64) {
        self.handles.remove(fh);
    }

    fn xattrs(&self, node: &Node) -> Result<Vec<(&'static str, String)>, FsError> {
        match node {
            Node::Segment(t, id) => {
                let segment = self
                    .tree
                    .sealed_segment(t, *id)
                    .ok_or_else(|| FsError::NotFound(node.to_string()))?;
                let url = match (&self.remote, &segment.offload) {
                    (Some(remote), Some(record)) => Some(remote.store.url(&record.data_key)),
                    _ => None,
                };
                Ok(xattr::of_sealed(&segment, url))
            }
            Node::Active(t) => Ok(xattr::of_active(&self.topic(t)?.active_info())),
            Node::Ledger(..) => Ok(self.ledger_xattrs(node)),
            _ => Ok(Vec::new()),
        }
    }

    /// An attribute's value. Names outside `user.*` (SELinux labels, POSIX ACLs, `trusted.*`)
    /// are EOPNOTSUPP rather than ENODATA: tierfs keeps none, and tools that learn so once
    /// stop asking — GNU `ls -l` then makes no request per file for its ACL and label marks.
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>, FsError> {
        let node = self.node(ino)?;
        let wanted = name.to_string_lossy();
        if !wanted.starts_with("user.") {
            return Err(FsError::AttributeNotSupported {
                path: node.to_string(),
                name: wanted.into_owned(),
            });
        }
        self.xattrs(&node)?
            .into_iter()
            .find(|(n, _)| *n == wanted)
            .map(|(_, v)| v.into_bytes())
            .ok_or_else(|| FsError::NoAttribute {
                path: node.to_string(),
                name: wanted.into_owned(),
            })
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let node = self.node(ino)?;
        Ok(xattr::name_list(&self.xattrs(&node)?))
    }

    pub fn refuse_xattr_change(&self, ino: u64) -> FsError {
        let path = self.node(ino).map(|n| n.to_string()).unwrap_or_default();
        if let Err(read_only) = self.writable(&path, "change an extended attribute") {
            return read_only;
        }
        FsError::NotPermitted {
            path,
            reason: "tierfs extended attributes are read-only",
        }
    }

    pub fn statfs(&self) -> Result<StatFs, FsError> {
        let dir = self.tree.space_dir();
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| FsError::NotFound("data directory".into()))?;
        // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(FsError::Io {
                path: dir.display().to_string(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(StatFs {
            blocks: st.f_blocks,
            bfree: st.f_bfree,
            bavail: st.f_bavail,
            files: st.f_files,
            ffree: st.f_ffree,
            bsize: st.f_bsize as u32,
            namelen: crate::name::MAX_NAME_LEN as u32,
            frsize: st.f_frsize as u32,
        })
    }
}

/// What deletion (`crate::offload`) asks of the mount and tells it.
impl crate::offload::MountView for TierFs {
    fn reads_object(&self, data_key: &str) -> bool {
        self.handles.reads_object(data_key)
    }

    fn retention_floor(&self, topic: &TopicName) -> Option<u64> {
        self.handles.retention_floor(topic)
    }

    fn segment_gone(&self, topic: &TopicName, id: u64) {
        self.forget_name(&Node::Topic(topic.clone()), &crate::log::data_file_name(id));
    }

    fn local_copy_gone(&self, topic: &TopicName, id: u64) {
        if let (Some(invalidate), Some(ino)) = (
            self.attr_invalidator.get(),
            self.inodes.existing(&Node::Segment(topic.clone(), id)),
        ) {
            invalidate(ino);
        }
    }
}

fn utf8<'a>(parent: &Node, name: &'a OsStr) -> Result<&'a str, FsError> {
    name.to_str().ok_or_else(|| FsError::Invalid {
        path: format!(
            "{}/{}",
            parent.to_string().trim_end_matches('/'),
            name.to_string_lossy()
        ),
        reason: "names must be UTF-8 (letters, digits, - _ . = :)".to_string(),
    })
}

#[cfg(test)]
mod tests;
