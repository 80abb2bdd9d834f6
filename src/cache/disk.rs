//! The optional disk cache: verified blocks kept as files, LRU within a byte bound, reused
//! across restarts.
//!
//! A block file is `<dir>/<crc32c(object key):08x>-<block index:010>.blk`:
//!
//! ```text
//! magic "TFSBLK01" | key length u32 | key bytes | block index u64 | data length u32
//! | data CRC32C u32 | header CRC32C u32 | data
//! ```
//!
//! A file whose header does not parse, names another object or block, or whose data fails its
//! checksum is deleted and treated as a miss: a corrupt or foreign block is never returned.
//! Files are written to a temporary name and renamed, so a crash leaves whole blocks or none.
//! At start the directory is scanned and its files ordered by modification time.
//!
//! A block written in this session, or read whole and checked in it, is *verified*: a read of a
//! part of it ([`DiskCache::read_verified`]) reads just those bytes, without reading and
//! checking the whole block again (a random 4 KiB read of a 1 MiB block would otherwise cost a
//! 1 MiB read and two checksums). A file damaged after that is found at the next mount, whose
//! first read of each block checks it whole.

use std::fs;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;
use tracing::warn;

use super::memory::BlockKey;

const MAGIC: &[u8; 8] = b"TFSBLK01";
const SUFFIX: &str = ".blk";
const LOCK_FILE: &str = "tierfs-cache.lock";

#[derive(Debug)]
pub struct DiskCache {
    /// Held for the cache's life: one mount per cache directory (each counts it as its own).
    _lock: fs::File,
    dir: PathBuf,
    capacity: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// File name → size, least recently used first.
    files: LruCache<String, u64>,
    bytes: u64,
    /// Files written or checked whole in this session.
    verified: std::collections::HashSet<String>,
    /// Open descriptors of verified files recently read in part: a reader at random of a
    /// segment fetched whole reads each block many times.
    handles: LruCache<String, Arc<fs::File>>,
    /// Counts changes to the set of files (writes, removals): a descriptor opened before one
    /// is not kept.
    generation: u64,
}

/// Descriptors of block files kept open for partial reads.
const OPEN_FILES: usize = 64;

fn file_name(key: &BlockKey) -> String {
    format!(
        "{:08x}-{:010}{SUFFIX}",
        crc32c::crc32c(key.object.as_bytes()),
        key.index
    )
}

/// Where a block's data starts in its file.
fn header_len(key: &BlockKey) -> usize {
    32 + key.object.len()
}

/// A block file's header: the data that follows is `len` bytes whose CRC32C is `data_crc`.
fn encode_header(key: &BlockKey, len: usize, data_crc: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(key));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(key.object.len() as u32).to_le_bytes());
    out.extend_from_slice(key.object.as_bytes());
    out.extend_from_slice(&key.index.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&data_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out
}

/// The block's data if the file is whole and is this block's; `None` otherwise.
fn decode(key: &BlockKey, bytes: &[u8]) -> Option<Bytes> {
    let take = |at: usize, n: usize| bytes.get(at..at + n);
    if take(0, 8)? != MAGIC {
        return None;
    }
    let key_len = u32::from_le_bytes(take(8, 4)?.try_into().ok()?) as usize;
    let stored_key = take(12, key_len)?;
    let at = 12 + key_len;
    let index = u64::from_le_bytes(take(at, 8)?.try_into().ok()?);
    let len = u32::from_le_bytes(take(at + 8, 4)?.try_into().ok()?) as usize;
    let data_crc = u32::from_le_bytes(take(at + 12, 4)?.try_into().ok()?);
    let header_crc = u32::from_le_bytes(take(at + 16, 4)?.try_into().ok()?);
    if crc32c::crc32c(&bytes[..at + 16]) != header_crc
        || stored_key != key.object.as_bytes()
        || index != key.index
    {
        return None;
    }
    let data = take(at + 20, len)?;
    if bytes.len() != at + 20 + len || crc32c::crc32c(data) != data_crc {
        return None;
    }
    Some(Bytes::copy_from_slice(data))
}

impl DiskCache {
    /// Opens (creating) the cache directory and indexes what an earlier run left.
    /// The cache's bound in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn open(dir: &Path, capacity: u64) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            return Err(std::io::Error::other(format!(
                "{} is in use by another tierfs mount",
                dir.display()
            )));
        }
        // Probe that the directory is writable now rather than at the first block.
        let probe = dir.join(".tierfs-probe");
        fs::write(&probe, b"")?;
        fs::remove_file(&probe)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(SUFFIX) {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                found.push((meta.modified().ok(), name, meta.len()));
            }
        }
        found.sort();
        let mut state = State {
            files: LruCache::unbounded(),
            bytes: 0,
            verified: Default::default(),
            handles: LruCache::new(NonZeroUsize::new(OPEN_FILES).expect("non-zero")),
            generation: 0,
        };
        for (_, name, size) in found {
            state.bytes += size;
            state.files.put(name, size);
        }
        let cache = Self {
            _lock: lock,
            dir: dir.to_path_buf(),
            capacity,
            state: Mutex::new(state),
        };
        cache.evict();
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a copy of the block is on disk (not read, not checked).
    pub fn contains(&self, key: &BlockKey) -> bool {
        self.lock().files.contains(&file_name(key))
    }

    /// The block, if a valid copy is on disk; invalid copies are deleted.
    pub fn get(&self, key: &BlockKey) -> Option<Bytes> {
        let name = file_name(key);
        self.lock().files.get(&name)?;
        let path = self.dir.join(&name);
        match fs::read(&path).ok().and_then(|bytes| decode(key, &bytes)) {
            Some(data) => Some(data),
            None => {
                warn!(file = %path.display(), "dropping a disk cache block that is damaged or belongs to another object");
                self.forget(&name);
                None
            }
        }
    }

    /// Drops a block (a copy that failed the index object's checksum).
    pub fn remove(&self, key: &BlockKey) {
        self.forget(&file_name(key));
    }

    /// Bytes `range` of a verified block's data (see the module doc); `None` when the block is
    /// not on disk or not verified in this session.
    pub fn read_verified(&self, key: &BlockKey, range: std::ops::Range<usize>) -> Option<Bytes> {
        use std::os::unix::fs::FileExt;
        let name = file_name(key);
        let (handle, generation) = {
            let mut state = self.lock();
            if !state.verified.contains(&name) {
                return None;
            }
            state.files.get(&name)?;
            (state.handles.get(&name).cloned(), state.generation)
        };
        let path = self.dir.join(&name);
        let file = match handle {
            Some(file) => Ok(file),
            None => fs::File::open(&path).map(|file| {
                let file = Arc::new(file);
                let mut state = self.lock();
                if state.generation == generation {
                    state.handles.put(name.clone(), Arc::clone(&file));
                }
                file
            }),
        };
        let mut buf = vec![0u8; range.end - range.start];
        let read = file
            .and_then(|file| file.read_exact_at(&mut buf, (header_len(key) + range.start) as u64));
        match read {
            Ok(()) => Some(Bytes::from(buf)),
            Err(e) => {
                warn!(file = %path.display(), error = %e, "dropping a disk cache block that cannot be read");
                self.forget(&name);
                None
            }
        }
    }

    /// Whether the block is on disk and verified in this session (no file is touched).
    pub fn is_verified(&self, key: &BlockKey) -> bool {
        self.lock().verified.contains(&file_name(key))
    }

    /// The block on disk was read whole and matched the index object's checksum.
    pub fn mark_verified(&self, key: &BlockKey) {
        let name = file_name(key);
        let mut state = self.lock();
        if state.files.contains(&name) {
            state.verified.insert(name);
        }
    }

    fn forget(&self, name: &str) {
        let mut state = self.lock();
        state.verified.remove(name);
        state.handles.pop(name);
        state.generation += 1;
        if let Some(size) = state.files.pop(name) {
            state.bytes -= size;
        }
        drop(state);
        let _ = fs::remove_file(self.dir.join(name));
    }

    /// Stores a verified block; returns how many blocks were evicted to make room.
    pub fn put(&self, key: &BlockKey, data: &[u8]) -> std::io::Result<u64> {
        self.put_with_crc(key, data, crc32c::crc32c(data))
    }

    /// [`DiskCache::put`] of a block whose CRC32C the caller has computed already (checked
    /// against the index object): the header and the data are written as they are, without
    /// another pass over the data or a copy of it.
    pub fn put_with_crc(&self, key: &BlockKey, data: &[u8], crc: u32) -> std::io::Result<u64> {
        use std::io::Write;
        let name = file_name(key);
        let header = encode_header(key, data.len(), crc);
        let size = (header.len() + data.len()) as u64;
        if size > self.capacity {
            return Ok(0);
        }
        let tmp = self.dir.join(format!("{name}.{}.tmp", std::process::id()));
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&header)?;
        file.write_all(data)?;
        drop(file);
        fs::rename(&tmp, self.dir.join(&name))?;
        {
            let mut state = self.lock();
            state.handles.pop(&name);
            state.generation += 1;
            if let Some(old) = state.files.put(name.clone(), size) {
                state.bytes -= old;
            }
            state.bytes += size;
            // Written from bytes the caller checked against the index object.
            state.verified.insert(name);
        }
        Ok(self.evict())
    }

    fn evict(&self) -> u64 {
        let mut evicted = 0;
        loop {
            let victim = {
                let mut state = self.lock();
                if state.bytes <= self.capacity {
                    return evicted;
                }
                match state.files.pop_lru() {
                    Some((name, size)) => {
                        state.bytes -= size;
                        state.verified.remove(&name);
                        state.handles.pop(&name);
                        state.generation += 1;
                        name
                    }
                    None => return evicted,
                }
            };
            let _ = fs::remove_file(self.dir.join(victim));
            evicted += 1;
        }
    }

    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(object: &str, index: u64) -> BlockKey {
        BlockKey {
            object: Arc::from(object),
            index,
        }
    }

    #[test]
    fn blocks_survive_reopen_and_the_bound_holds() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 10_000).unwrap();
        for i in 0..5 {
            cache.put(&key("a/b.seg", i), &vec![i as u8; 3000]).unwrap();
        }
        assert!(cache.bytes() <= 10_000);
        assert!(
            cache.get(&key("a/b.seg", 0)).is_none(),
            "the oldest blocks were evicted"
        );
        assert_eq!(cache.get(&key("a/b.seg", 4)).unwrap(), vec![4u8; 3000]);
        drop(cache);
        let reopened = DiskCache::open(dir.path(), 10_000).unwrap();
        assert_eq!(reopened.get(&key("a/b.seg", 4)).unwrap(), vec![4u8; 3000]);
        let on_disk: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(on_disk <= 10_000, "{on_disk} bytes on disk");
    }

    #[test]
    fn a_verified_block_is_read_in_part_and_a_reopened_one_only_once_checked() {
        let dir = tempfile::tempdir().unwrap();
        let k = key("v.seg", 2);
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
        cache.put(&k, &data).unwrap();
        assert_eq!(cache.read_verified(&k, 100..300).unwrap(), data[100..300]);
        drop(cache);
        let reopened = DiskCache::open(dir.path(), 1 << 20).unwrap();
        assert!(
            reopened.read_verified(&k, 100..300).is_none(),
            "not checked in this session yet"
        );
        assert_eq!(reopened.get(&k).unwrap(), data);
        reopened.mark_verified(&k);
        assert_eq!(
            reopened.read_verified(&k, 4990..5000).unwrap(),
            data[4990..]
        );
        reopened.remove(&k);
        assert!(reopened.read_verified(&k, 0..10).is_none());
    }

    #[test]
    fn one_mount_per_cache_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = DiskCache::open(dir.path(), 1 << 20).unwrap();
        let err = DiskCache::open(dir.path(), 1 << 20).unwrap_err();
        assert!(
            err.to_string().contains("in use by another tierfs mount"),
            "{err}"
        );
        drop(first);
        DiskCache::open(dir.path(), 1 << 20).unwrap();
    }

    #[test]
    fn corrupt_and_foreign_blocks_are_dropped_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 1 << 20).unwrap();
        let k = key("x.seg", 1);
        cache.put(&k, b"good bytes").unwrap();
        let path = dir.path().join(file_name(&k));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(cache.get(&k).is_none());
        assert!(!path.exists(), "a corrupt block is deleted");
        // A file under this block's name that holds another object's block.
        cache.put(&key("other.seg", 1), b"theirs").unwrap();
        let theirs = dir.path().join(file_name(&key("other.seg", 1)));
        fs::copy(&theirs, &path).unwrap();
        drop(cache);
        let reopened = DiskCache::open(dir.path(), 1 << 20).unwrap();
        assert!(reopened.get(&k).is_none());
    }
}
