//! The nodes of a `--pulsar` mount: directories named after managed ledgers, ledger files and
//! their entry-length files. Everything is read-only; changes are refused by [`TierFs`]'s
//! common checks (EROFS).
//!
//! ```text
//! /<managed-ledger name>/<ledgerId:020>.ledger    the ledger's entries, concatenated, 0444
//! /<managed-ledger name>/.<ledgerId:020>.entries  each entry's length, u64 big-endian (not listed)
//! /_unknown/<ledgerId:020>.ledger                 ledgers whose objects name no managed ledger
//! ```

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::handle::{DirEntry, Handle};
use super::{Attr, FsError, Node, Opened, Read, TierFs, Tree};
use crate::pulsar::bucket::{
    LENGTH_RECORD, entry_lengths_name, ledger_file_name, parse_entry_lengths_name,
    parse_ledger_file_name,
};
use crate::pulsar::reader::LedgerReader;
use crate::pulsar::tree::PulsarBucket;

impl TierFs {
    fn pulsar_bucket(&self) -> Option<&Arc<PulsarBucket>> {
        match &self.tree {
            Tree::Pulsar(bucket) => Some(bucket),
            _ => None,
        }
    }

    /// The directory path a node stands for in a `--pulsar` mount (`""`: the root).
    fn ledger_dir_path(node: &Node) -> Option<&str> {
        match node {
            Node::Root => Some(""),
            Node::LedgerDir(path) => Some(path),
            _ => None,
        }
    }

    fn reader(&self, dir: &str, id: u64) -> Option<Arc<LedgerReader>> {
        self.pulsar_bucket()?.tree().ledger(dir, id).cloned()
    }

    /// `child` for a `--pulsar` mount.
    pub(super) fn ledger_child(&self, parent: &Node, name: &str) -> Result<Node, FsError> {
        let bucket = self.pulsar_bucket().expect("a --pulsar mount");
        let Some(dir) = Self::ledger_dir_path(parent) else {
            return Err(FsError::NotDirectory(parent.to_string()));
        };
        let tree = bucket.tree();
        let listing = tree.dir(dir);
        let path = if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        };
        let found = listing.and_then(|d| {
            if d.subdirs.contains(name) {
                return Some(Node::LedgerDir(path.clone()));
            }
            if let Some(id) = parse_ledger_file_name(name).filter(|id| d.ledgers.contains_key(id)) {
                return Some(Node::Ledger(dir.to_string(), id));
            }
            parse_entry_lengths_name(name)
                .filter(|id| d.ledgers.contains_key(id))
                .map(|id| Node::EntryLengths(dir.to_string(), id))
        });
        found.ok_or_else(|| FsError::NotFound(format!("/{path}")))
    }

    /// `attr_of` for a `--pulsar` mount.
    pub(super) fn ledger_attr(&self, node: &Node) -> Result<Attr, FsError> {
        let bucket = self.pulsar_bucket().expect("a --pulsar mount");
        let ino = self.inodes.ino(node);
        let missing = || FsError::NotFound(node.to_string());
        match node {
            Node::Root => Ok(self.owner.directory_at(ino, Some(bucket.mounted))),
            Node::LedgerDir(path) => {
                bucket.tree().dir(path).ok_or_else(missing)?;
                Ok(self.owner.directory_at(ino, Some(bucket.mounted)))
            }
            Node::Ledger(dir, id) => {
                let reader = self.reader(dir, *id).ok_or_else(missing)?;
                let ledger = reader.ledger();
                Ok(self
                    .owner
                    .immutable_remote(ino, ledger.length, ledger.offloaded))
            }
            Node::EntryLengths(dir, id) => {
                let reader = self.reader(dir, *id).ok_or_else(missing)?;
                let ledger = reader.ledger();
                Ok(self.owner.immutable_remote(
                    ino,
                    ledger.entries * LENGTH_RECORD,
                    ledger.offloaded,
                ))
            }
            _ => Err(missing()),
        }
    }

    /// `list` for a `--pulsar` mount: subdirectories, then ledger files by id.
    pub(super) fn ledger_list(&self, node: &Node) -> Result<Vec<DirEntry>, FsError> {
        let bucket = self.pulsar_bucket().expect("a --pulsar mount");
        let Some(dir) = Self::ledger_dir_path(node) else {
            return Err(FsError::NotDirectory(node.to_string()));
        };
        let tree = bucket.tree();
        let listing = tree
            .dir(dir)
            .ok_or_else(|| FsError::NotFound(node.to_string()))?;
        let mut entries = Vec::with_capacity(listing.subdirs.len() + listing.ledgers.len());
        for name in &listing.subdirs {
            let path = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let ino = self.inodes.ino(&Node::LedgerDir(path));
            entries.push(DirEntry {
                name: name.clone(),
                attr: self.owner.directory_at(ino, Some(bucket.mounted)),
            });
        }
        for (id, reader) in &listing.ledgers {
            let ino = self.inodes.ino(&Node::Ledger(dir.to_string(), *id));
            let ledger = reader.ledger();
            entries.push(DirEntry {
                name: ledger_file_name(*id),
                attr: self
                    .owner
                    .immutable_remote(ino, ledger.length, ledger.offloaded),
            });
        }
        Ok(entries)
    }

    /// `open` for a `--pulsar` mount: only reading, only files.
    pub(super) fn ledger_open(&self, node: &Node, writable: bool) -> Result<Opened, FsError> {
        let (dir, id, lengths) = match node {
            Node::Ledger(dir, id) => (dir, *id, false),
            Node::EntryLengths(dir, id) => (dir, *id, true),
            _ => return Err(FsError::IsDirectory(node.to_string())),
        };
        if writable {
            self.writable(node, "open for writing")?;
        }
        let reader = self
            .reader(dir, id)
            .ok_or_else(|| FsError::NotFound(node.to_string()))?;
        let handle = if lengths {
            Handle::EntryLengths { reader }
        } else {
            Handle::Ledger {
                reader,
                next: Mutex::new(None),
            }
        };
        // Entry lengths are read record by record: each read must reach the mount as asked
        // (through the page cache, one refused block would fail its neighbours' whole page).
        Ok(Opened {
            fh: self.handles.insert(handle),
            direct_io: lengths,
            keep_cache: !lengths,
        })
    }

    /// `read` of a ledger or entry-lengths handle; `None` for other handles.
    pub(super) fn ledger_read(&self, handle: &Arc<Handle>, offset: u64, size: u32) -> Option<Read> {
        let handle = Arc::clone(handle);
        let future = match handle.as_ref() {
            Handle::Ledger { reader, next } => {
                let sequential = {
                    let mut next = next.lock().unwrap_or_else(|p| p.into_inner());
                    let sequential = next.is_none_or(|n| n == offset);
                    *next = Some(offset + u64::from(size));
                    sequential
                };
                if let Some(bytes) = reader.read_cached(offset, u64::from(size), sequential) {
                    return Some(Read::Cached(bytes));
                }
                let path = format!("ledger {}", reader.ledger().id);
                Box::pin(async move {
                    let Handle::Ledger { reader, .. } = handle.as_ref() else {
                        unreachable!("matched above");
                    };
                    reader
                        .read(offset, u64::from(size), sequential)
                        .await
                        .map_err(|source| FsError::Ledger { path, source })
                }) as std::pin::Pin<Box<dyn Future<Output = _> + Send>>
            }
            Handle::EntryLengths { reader } => {
                let path = entry_lengths_name(reader.ledger().id);
                Box::pin(async move {
                    let Handle::EntryLengths { reader } = handle.as_ref() else {
                        unreachable!("matched above");
                    };
                    let size_total = reader.ledger().entries * LENGTH_RECORD;
                    let end = (offset + u64::from(size)).min(size_total);
                    if offset >= end {
                        return Ok(Bytes::new());
                    }
                    let first = offset / LENGTH_RECORD;
                    let count = end.div_ceil(LENGTH_RECORD) - first;
                    let lengths = reader
                        .lengths_of(first, count)
                        .await
                        .map_err(|source| FsError::Ledger { path, source })?;
                    let bytes: Vec<u8> = lengths.iter().flat_map(|l| l.to_be_bytes()).collect();
                    let from = (offset - first * LENGTH_RECORD) as usize;
                    let to = from + (end - offset) as usize;
                    Ok(Bytes::copy_from_slice(&bytes[from..to.min(bytes.len())]))
                })
            }
            _ => return None,
        };
        Some(Read::Later(future))
    }

    /// The extended attributes of a ledger file.
    pub(super) fn ledger_xattrs(&self, node: &Node) -> Vec<(&'static str, String)> {
        let Node::Ledger(dir, id) = node else {
            return Vec::new();
        };
        let (Some(reader), Some(remote)) = (self.reader(dir, *id), &self.remote) else {
            return Vec::new();
        };
        let ledger = reader.ledger();
        let mut attrs = super::xattr::of_ledger(ledger, remote.store.url(&ledger.data_key));
        let refusals = reader.refusals();
        if !refusals.is_empty() {
            attrs.push(("user.pulsar.error", refusals.join("; ")));
        }
        attrs
    }
}
