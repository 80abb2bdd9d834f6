//! Open file and directory handles.
//!
//! A handle on a sealed segment holds the open data file; a handle on `active` holds the topic,
//! not a segment, so it keeps appending to the tail across rollovers; a directory handle holds
//! the listing taken at `opendir`, so a long `readdir` sees one consistent picture.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::attr::Attr;
use crate::cache::{ReadAhead, RemoteObject};
use crate::log::Topic;
use crate::name::TopicName;
use crate::pulsar::reader::LedgerReader;

#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: String,
    pub attr: Attr,
}

#[derive(Debug)]
pub enum Handle {
    Sealed {
        file: Arc<File>,
        size: u64,
    },
    Active {
        topic: Arc<Topic>,
        writable: bool,
        append: bool,
        /// Where this handle's next write lands if it keeps writing its own stream.
        position: Mutex<u64>,
    },
    /// A sealed segment read from its object in the store.
    Remote {
        object: RemoteObject,
        readahead: Mutex<ReadAhead>,
    },
    Directory {
        entries: Vec<DirEntry>,
    },
    /// A Pulsar ledger file; `next` is where the last read ended (sequential detection).
    Ledger {
        reader: Arc<LedgerReader>,
        next: Mutex<Option<u64>>,
    },
    /// A ledger's entry-lengths file.
    EntryLengths {
        reader: Arc<LedgerReader>,
    },
}

#[derive(Debug, Default)]
pub struct HandleTable {
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next: AtomicU64,
    /// Open handles per object read (deletion waits for an object's readers).
    objects: Mutex<HashMap<Arc<str>, usize>>,
    /// The sealed segment each open handle reads, by handle.
    segments: Mutex<HashMap<u64, (TopicName, u64)>>,
    /// Each reading process's cursor in a topic: the last segment it opened, and when. Like a
    /// Pulsar subscription it holds retention back (see [`HandleTable::retention_floor`]).
    cursors: Mutex<HashMap<(TopicName, u32), (u64, Instant)>>,
}

/// How long a process's cursor holds retention back after its last open.
const CURSOR_IDLE: Duration = Duration::from_secs(10);
/// Past this many cursors, idle ones are dropped as new ones come (retention also drops them).
const CURSORS_KEPT: usize = 1024;

impl HandleTable {
    pub fn insert(&self, handle: Handle) -> u64 {
        if let Handle::Remote { object, .. } = &handle {
            *self
                .objects
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(Arc::clone(&object.data_key))
                .or_default() += 1;
        }
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(handle));
        fh
    }

    pub fn get(&self, fh: u64) -> Option<Arc<Handle>> {
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<Handle>> {
        let removed = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh);
        self.segments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh);
        if let Some(Handle::Remote { object, .. }) = removed.as_deref() {
            let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = objects.get_mut(&object.data_key) {
                *count -= 1;
                if *count == 0 {
                    objects.remove(&object.data_key);
                }
            }
        }
        removed
    }

    /// Records that process `pid` is opening segment `id` of `topic`; done before the segment
    /// is looked up, so that retention, which reads the cursors under the topic's lock, either
    /// sees this reader or has already taken the segment out.
    pub fn note_reader(&self, topic: &TopicName, id: u64, pid: u32) {
        if pid == 0 {
            return;
        }
        let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        if cursors.len() >= CURSORS_KEPT {
            cursors.retain(|_, (_, at)| at.elapsed() < CURSOR_IDLE);
        }
        cursors.insert((topic.clone(), pid), (id, Instant::now()));
    }

    /// Inserts a handle that reads segment `id` of `topic`.
    pub fn insert_segment(&self, handle: Handle, topic: &TopicName, id: u64) -> u64 {
        let fh = self.insert(handle);
        self.segments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, (topic.clone(), id));
        fh
    }

    /// The oldest segment of `topic` that readers hold: the oldest one open, or the oldest
    /// cursor of a process still alive that opened a segment of it within the last 10 s.
    /// Retention deletes only segments before it, so that a reader going through the topic
    /// (`cat topic/*`) never finds a segment gone after reading an older one.
    pub fn retention_floor(&self, topic: &TopicName) -> Option<u64> {
        let open = self
            .segments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|(t, _)| t == topic)
            .map(|(_, id)| *id)
            .min();
        let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        cursors.retain(|(_, pid), (_, at)| {
            at.elapsed() < CURSOR_IDLE && std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        let cursor = cursors
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|(_, (id, _))| *id)
            .min();
        open.into_iter().chain(cursor).min()
    }

    /// Whether an open handle reads this object.
    pub fn reads_object(&self, data_key: &str) -> bool {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(data_key)
    }

    /// How many handles have this topic's `active` open for writing.
    pub fn writers(&self, topic: &TopicName) -> usize {
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|h| {
                matches!(h.as_ref(), Handle::Active { topic: t, writable: true, .. } if t.name() == topic)
            })
            .count()
    }
}
