//! Open file and directory handles.
//!
//! A handle on a sealed segment holds the open data file; a handle on `active` holds the topic,
//! not a segment, so it keeps appending to the tail across rollovers; a directory handle holds
//! the listing taken at `opendir`, so a long `readdir` sees one consistent picture.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::attr::Attr;
use crate::cache::{ReadAhead, RemoteObject};
use crate::log::Topic;
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
}

impl HandleTable {
    pub fn insert(&self, handle: Handle) -> u64 {
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
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh)
    }
}
