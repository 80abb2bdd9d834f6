//! The read path of offloaded segments: cached, verified, ranged reads.
//!
//! A read of `[offset, end)` of an offloaded segment becomes reads of its blocks (the segment's
//! read block size, `managedLedgerOffloadReadBufferSizeInBytes`, recorded in its index object).
//! Each block is looked for in this order:
//!
//! 1. the memory cache (LRU, bounded in bytes, [`memory`]);
//! 2. the disk cache, on by default under `<data-dir>/cache` (bounded, survives restarts, each
//!    block checksummed, [`disk`]). Blocks read at random and segments fetched whole for a
//!    random reader are kept there; a sequential reader's blocks stay in memory ([`Keep`]),
//!    since the kernel's page cache keeps what it read and a scan would push out of the disk
//!    cache what random readers come back to;
//! 3. a fetch already in flight for it (single-flight: concurrent readers of one block wait for
//!    one GET);
//! 4. for a sequential reader's read-ahead, the reader's streamed GET ([`stream`]); otherwise a
//!    ranged GET of a run of consecutive missing blocks, at most `max_get_bytes` long.
//!
//! The first read of a segment does not wait for its index object and then its block: both
//! GETs go out at once, and when the read lies in the block's first [`HEAD_BYTES`] it is
//! answered from them as soon as they are in and checked against the index object's head
//! CRC32C (version 2 index objects), while the rest of the block is still coming.
//!
//! Every fetched block is checked against the CRC32C in the segment's index object before it is
//! cached or returned; a mismatch is an error (EIO at the mount), counted and logged, never
//! wrong bytes. Reads that stay sequential also fetch ahead ([`readahead`]) in the background,
//! within a global budget of bytes in flight. A read that cannot complete within `read_timeout`
//! (the store's client retries included) fails.

pub mod disk;
mod hydrate;
pub mod memory;
pub mod readahead;
pub mod stream;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use lru::LruCache;
use tokio::sync::{OnceCell, Semaphore, oneshot, watch};
use tracing::{error, warn};

pub use disk::DiskCache;
pub use memory::{BlockKey, MemoryCache};
pub use readahead::ReadAhead;

use crate::buffer_pool::BufferPool;
use crate::metrics::Metrics;
use crate::offload::{HEAD_BYTES, IndexObject};
use crate::store::{ObjectStore, StoreError};

/// Marks a [`BlockKey`] as the head of block `index & !HEAD_FLAG` (see [`head_key`]).
const HEAD_FLAG: u64 = 1 << 63;

/// The memory cache's key for the verified head of block `i` of `object`: kept, within the
/// cache's bound, only until the block itself arrives, never written to disk.
fn head_key(object: &Arc<str>, i: u64) -> BlockKey {
    BlockKey {
        object: Arc::clone(object),
        index: HEAD_FLAG | i,
    }
}

/// Free block buffers kept for reuse, per block size, in bytes (see [`Cache::block_pool`]).
const POOLED_BYTES: usize = 4 << 20;
/// Units of the in-flight budget semaphore.
const BUDGET_UNIT: u64 = 64 * 1024;
/// Index objects kept decoded in memory.
const INDEXES: usize = 4096;
/// Reads that jump before a reader's segment is fetched whole: two, so that a reader that
/// reads a header and then seeks once to where it reads on (`file`, a tool resuming at an
/// offset) does not fetch the whole segment.
const HYDRATE_AFTER: u32 = 2;
/// The disk cache's directory under the data directory, unless `--cache-dir` names another.
pub const DISK_CACHE_DIR: &str = "cache";

/// Where fetched blocks are kept: blocks read at random go to the disk cache too; blocks of a
/// sequential stream only to memory, since the kernel's page cache keeps what a reader read
/// (and a scan through the disk cache would evict what random readers keep coming back to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    InMemory,
    OnDisk,
}

impl Keep {
    fn for_reader(at_random: bool) -> Self {
        if at_random {
            Keep::OnDisk
        } else {
            Keep::InMemory
        }
    }
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Memory cache bound (`--cache-size`).
    pub memory_bytes: u64,
    /// Disk cache directory and bound (`--cache-dir`, `--cache-max-size`).
    pub disk: Option<(PathBuf, u64)>,
    /// Largest single ranged GET.
    pub max_get_bytes: u64,
    /// First and largest read-ahead window per open file.
    pub readahead_initial: u64,
    pub readahead_max: u64,
    /// Bytes of read-ahead fetches in flight at once, across all files.
    pub inflight_bytes: u64,
    /// A read fails if it cannot complete within this time.
    pub read_timeout: Duration,
    /// The block size segments are most likely offloaded with (the configured
    /// `managedLedgerOffloadReadBufferSizeInBytes`): the first read of a segment fetches its
    /// blocks at this size beside the index object, instead of after it. 0: never guess.
    pub expected_block_size: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 8 << 20,
            disk: None,
            max_get_bytes: 8 << 20,
            readahead_initial: 1 << 20,
            readahead_max: 64 << 20,
            inflight_bytes: 24 << 20,
            read_timeout: Duration::from_secs(20),
            expected_block_size: 0,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("block {block} of {object} fails its CRC32C check (the object was changed or damaged)")]
    Corrupt { object: String, block: u64 },
    #[error("index object {key}: {reason}")]
    Index { key: String, reason: String },
    #[error("reading {object} did not complete within {seconds} s")]
    Timeout { object: String, seconds: u64 },
    #[error("a read at {offset} assembled {got} bytes instead of {expected}")]
    Short {
        offset: u64,
        expected: u64,
        got: u64,
    },
    #[error("the fetch of block {block} of {object} was abandoned")]
    Abandoned { object: String, block: u64 },
}

/// An offloaded segment as readers see it.
#[derive(Debug, Clone)]
pub struct RemoteObject {
    pub data_key: Arc<str>,
    pub index_key: String,
    pub size: u64,
}

type Flight = watch::Receiver<Option<Result<Bytes, CacheError>>>;
type Answer = watch::Sender<Option<Result<Bytes, CacheError>>>;

/// The blocks one fetch claimed. Dropped with blocks still unanswered (an error, or the read
/// that ran the fetch timed out and was dropped), it answers them `Abandoned` and releases
/// them, so no block is ever left claimed by a fetch that no longer runs.
struct Flights {
    cache: Arc<Cache>,
    object: Arc<str>,
    senders: Vec<(BlockKey, Answer)>,
}

impl Flights {
    fn fail_all(&mut self, error: &CacheError) {
        for (key, tx) in std::mem::take(&mut self.senders) {
            self.cache.answer(&key, &tx, Err(error.clone()));
        }
    }
}

impl Drop for Flights {
    fn drop(&mut self) {
        for (key, tx) in std::mem::take(&mut self.senders) {
            let abandoned = CacheError::Abandoned {
                object: self.object.to_string(),
                block: key.index,
            };
            self.cache.answer(&key, &tx, Err(abandoned));
        }
    }
}
type IndexCell = Arc<OnceCell<Arc<IndexObject>>>;

pub struct Cache {
    store: Arc<dyn ObjectStore>,
    config: CacheConfig,
    memory: Mutex<MemoryCache>,
    disk: Option<Arc<DiskCache>>,
    inflight: Mutex<HashMap<BlockKey, Flight>>,
    indexes: Mutex<LruCache<Arc<str>, IndexCell>>,
    budget: Arc<Semaphore>,
    /// Sequential readers' streamed read-ahead GETs ([`stream`]).
    streams: stream::Streams,
    /// Recycled block buffers, by block size ([`BufferPool`]).
    pools: Mutex<HashMap<usize, Arc<BufferPool>>>,
    /// Segments being fetched whole for a reader at random ([`hydrate`]).
    hydrating: Mutex<std::collections::HashSet<Arc<str>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache over `store`. An unusable disk cache directory is reported and the cache runs
    /// on memory alone.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        config: CacheConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let disk = config.disk.as_ref().and_then(|(dir, max)| match DiskCache::open(dir, *max) {
            Ok(disk) => Some(Arc::new(disk)),
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "the disk cache directory is unusable; caching in memory only");
                None
            }
        });
        if let Some(disk) = &disk {
            metrics.disk_cache_bytes.set(disk.bytes() as i64);
        }
        let units = (config.inflight_bytes / BUDGET_UNIT).max(1) as usize;
        Arc::new(Self {
            store,
            memory: Mutex::new(MemoryCache::new(config.memory_bytes)),
            disk,
            inflight: Mutex::new(HashMap::new()),
            indexes: Mutex::new(LruCache::new(NonZeroUsize::new(INDEXES).expect("non-zero"))),
            budget: Arc::new(Semaphore::new(units)),
            streams: stream::Streams::default(),
            pools: Mutex::new(HashMap::new()),
            hydrating: Mutex::new(std::collections::HashSet::new()),
            metrics,
            config,
        })
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The pool of `size`-byte block buffers: blocks evicted from the memory cache lend their
    /// memory, already faulted in, to blocks coming in. Each pool keeps at most
    /// [`POOLED_BYTES`] of free buffers (none when a block is larger).
    fn block_pool(&self, size: usize) -> Arc<BufferPool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            pools
                .entry(size)
                .or_insert_with(|| BufferPool::new(size, POOLED_BYTES / size.max(1))),
        )
    }

    /// Units of the in-flight budget in all.
    fn budget_units(&self) -> u64 {
        (self.config.inflight_bytes / BUDGET_UNIT).max(1)
    }

    fn update_memory_gauge(&self, cached: u64) {
        let inflight = self.budget_units() - self.budget.available_permits() as u64;
        self.metrics.cache_bytes.set(cached as i64);
        self.metrics
            .memory_in_use
            .set((cached + inflight * BUDGET_UNIT) as i64);
    }

    /// Reads `[offset, offset + len)` of `object`, updating the reader's read-ahead state.
    pub async fn read(
        self: &Arc<Self>,
        object: &RemoteObject,
        readahead: &Mutex<ReadAhead>,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, CacheError> {
        let seconds = self.config.read_timeout.as_secs();
        tokio::time::timeout(
            self.config.read_timeout,
            self.read_inner(object, readahead, offset, len),
        )
        .await
        .unwrap_or_else(|_| {
            Err(CacheError::Timeout {
                object: object.data_key.to_string(),
                seconds,
            })
        })
    }

    async fn read_inner(
        self: &Arc<Self>,
        object: &RemoteObject,
        readahead: &Mutex<ReadAhead>,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, CacheError> {
        let end = offset.saturating_add(len).min(object.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let index = match self.kept_index(object) {
            Some(index) => index,
            None => self.index_with_first_blocks(object, offset, end).await?,
        };
        let block = u64::from(index.block_size);
        let at_random = self.account(object, &index, readahead, offset, end);
        if let Some(bytes) = self.read_from_disk(object, block, offset, end) {
            return Ok(bytes);
        }
        if let Some(bytes) = self.read_from_head(object, &index, offset, end) {
            return Ok(bytes);
        }
        let blocks = self
            .blocks(
                object,
                &index,
                offset / block..end.div_ceil(block),
                Keep::for_reader(at_random),
            )
            .await?;
        assemble(&blocks, block, offset, end).ok_or_else(|| CacheError::Short {
            offset,
            expected: end - offset,
            got: blocks
                .iter()
                .map(|(i, data)| {
                    let start = i * block;
                    end.min(start + data.len() as u64)
                        .saturating_sub(offset.max(start))
                })
                .sum(),
        })
    }

    /// What a read of `[offset, end)` means beyond its own bytes: the reader's read-ahead
    /// state is updated and its window's missing blocks, the topic's next segment or the whole
    /// segment (a reader at random) are started in the background. Returns whether the reader
    /// reads at random. Needs the runtime's context (it spawns fetches).
    fn account(
        self: &Arc<Self>,
        object: &RemoteObject,
        index: &Arc<IndexObject>,
        readahead: &Mutex<ReadAhead>,
        offset: u64,
        end: u64,
    ) -> bool {
        let block = u64::from(index.block_size);
        let (decision, at_random, reader) = {
            let mut readahead = readahead.lock().unwrap_or_else(|p| p.into_inner());
            let max = self.readahead_max(block);
            let decision =
                readahead.on_read(offset, end, object.size, self.config.readahead_initial, max);
            // A reader's read-ahead is streamed once its window has grown to the full and it
            // has read a window's worth: a first read, or a short sequential one (`head`), does
            // not open a GET to the end of the segment whose sends would compete with its own.
            // (The kernel's own read-ahead grows the window within a few ms of `open`, before
            // the reader has its first bytes.)
            let streamed = readahead.window() >= max && offset >= max;
            (
                decision,
                readahead.reads_at_random(),
                streamed.then(|| readahead.reader_id()),
            )
        };
        let room = self
            .config
            .memory_bytes
            .max(self.disk.as_ref().map_or(0, |disk| disk.capacity()));
        let hydrate = object.size <= room / 2
            && readahead
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .hydrate(HYDRATE_AFTER);
        if hydrate {
            hydrate::hydrate(self, object, index);
        }
        if decision.reset {
            self.metrics.readahead_resets.inc();
        }
        if let Some((from, to)) = decision.ahead {
            self.prefetch(object, index, from / block..to.div_ceil(block), reader);
            let next = readahead
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .crossing(to, object.size);
            if let Some(next) = next {
                self.start_next_segment(next);
            }
        }
        at_random
    }

    /// A read answered at once, on the caller's thread, when its bytes are cached: in blocks
    /// held in memory, or within one block verified on disk. Its read-ahead is accounted for as
    /// [`Cache::read`] does. `None`, with nothing recorded, when the read has to wait (its
    /// segment's index object is not decoded yet, or a block is missing): it then goes through
    /// [`Cache::read`]. Call within the runtime's context.
    pub fn read_now(
        self: &Arc<Self>,
        object: &RemoteObject,
        readahead: &Mutex<ReadAhead>,
        offset: u64,
        len: u64,
    ) -> Option<Bytes> {
        let end = offset.saturating_add(len).min(object.size);
        if offset >= end {
            return Some(Bytes::new());
        }
        let index = self.kept_index(object)?;
        let block = u64::from(index.block_size);
        let bytes = self
            .read_from_memory(object, block, offset, end)
            .or_else(|| self.read_from_disk(object, block, offset, end))?;
        self.account(object, &index, readahead, offset, end);
        Some(bytes)
    }

    /// `[offset, end)` when every block it spans is in the memory cache.
    fn read_from_memory(
        &self,
        object: &RemoteObject,
        block: u64,
        offset: u64,
        end: u64,
    ) -> Option<Bytes> {
        let first = offset / block;
        let last = (end - 1) / block;
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        let mut blocks = Vec::with_capacity((last - first + 1) as usize);
        for i in first..=last {
            let key = BlockKey {
                object: Arc::clone(&object.data_key),
                index: i,
            };
            blocks.push((i, memory.get(&key)?));
        }
        drop(memory);
        self.metrics.cache_hits.inc_by(blocks.len() as u64);
        assemble(&blocks, block, offset, end)
    }

    /// The largest read-ahead window: the configured one, but at most a quarter of the memory
    /// cache (and at least a block). Blocks fetched ahead wait in the memory cache for their
    /// reader, beside the blocks it read last; with a larger window some were evicted before
    /// their reader came and fetched again (half the cache was not enough in
    /// `read_ahead_never_runs_further_ahead_than_the_memory_cache_holds`; against `rclone serve
    /// s3`, a 64 MiB window through a 24 MiB cache read at 140 MiB/s instead of ~400).
    fn readahead_max(&self, block: u64) -> u64 {
        self.config
            .readahead_max
            .min(self.config.memory_bytes / 4)
            .max(block)
    }

    /// Starts fetching the topic's next segment for a sequential reader about to reach it: its
    /// index object, then its first read-ahead window of blocks.
    fn start_next_segment(self: &Arc<Self>, next: RemoteObject) {
        self.metrics.readahead_next_segments.inc();
        let this = Arc::clone(self);
        tokio::spawn(async move {
            match this.index(&next).await {
                Ok(index) => {
                    let block = u64::from(index.block_size).max(1);
                    let window = this.config.readahead_initial.max(block).min(next.size);
                    this.prefetch(&next, &index, 0..window.div_ceil(block), None);
                }
                Err(e) => {
                    warn!(object = %next.data_key, error = %e, "read-ahead of the next segment failed");
                }
            }
        });
    }

    /// The segment's index object if it is decoded already.
    fn kept_index(&self, object: &RemoteObject) -> Option<Arc<IndexObject>> {
        let indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        indexes.peek(&object.data_key)?.get().cloned()
    }

    /// The first read of a segment: its index object and, at the same time, the blocks of
    /// `[offset, end)` at the expected block size, or the index's own when the disk cache kept
    /// the index object (one GET of at most `max_get_bytes`), so that
    /// the time to the first byte is one round trip, not two. When the read lies in the head of
    /// its block ([`HEAD_BYTES`]), that head is taken from the block's GET as soon as it is in
    /// (see [`Cache::spawn_guessed_fetch`]): it is checked against the index object's head
    /// checksum and answers the read (and the kernel's next reads within it) while the rest of
    /// the block is still coming. The blocks are claimed at once
    /// (concurrent readers wait for them rather than fetch them again) and kept only if the
    /// index says that block size and their CRC32Cs match; otherwise they are released and the
    /// read goes on as usual.
    async fn index_with_first_blocks(
        self: &Arc<Self>,
        object: &RemoteObject,
        offset: u64,
        end: u64,
    ) -> Result<Arc<IndexObject>, CacheError> {
        let index_on_disk = self.disk.as_ref().is_some_and(|disk| {
            disk.contains(&BlockKey {
                object: Arc::from(object.index_key.as_str()),
                index: 0,
            })
        });
        // An index object kept on disk (a remount) is read at once: its block size is known.
        let known = if index_on_disk {
            Some(self.index(object).await?)
        } else {
            None
        };
        let guess = known
            .as_ref()
            .map_or(self.config.expected_block_size, |index| {
                u64::from(index.block_size)
            });
        if guess == 0 || guess > u64::from(u32::MAX) {
            return self.index(object).await;
        }
        let first = offset / guess;
        let first_key = BlockKey {
            object: Arc::clone(&object.data_key),
            index: first,
        };
        if known.is_some() && self.disk.as_ref().is_some_and(|d| d.contains(&first_key)) {
            return self.index(object).await; // the disk cache has the block
        }
        let last = end
            .div_ceil(guess)
            .min(first + (self.config.max_get_bytes / guess).max(1));
        let flights = self.claim(object, first..last);
        if flights.senders.first().map(|(key, _)| key.index) != Some(first) {
            // Someone else fetches (or holds) the first block already.
            drop(flights);
            return self.index(object).await;
        }
        let head_start = first * guess;
        let head_end = head_start + u64::from(HEAD_BYTES);
        let head_wanted = end <= head_end && head_end < (head_start + guess).min(object.size);
        let (head_tx, head_rx) = if head_wanted {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.spawn_guessed_fetch(object, flights, guess, head_tx);
        let Some(head_rx) = head_rx else {
            return self.index(object).await;
        };
        let (index, head) = tokio::join!(self.index(object), head_rx);
        let index = index?;
        // No head (the GET failed before it): the read waits for the block, or fetches it.
        if let Ok(head) = head {
            let expected = (u64::from(index.block_size) == guess)
                .then(|| index.head_crc(first, head.len() as u64))
                .flatten();
            match expected {
                Some(crc) if crc == crc32c::crc32c(&head) => {
                    self.remember(head_key(&object.data_key, first), head, None);
                }
                Some(_) => {
                    // The read waits for the whole block instead, which is checked on its own.
                    self.metrics.checksum_failures.inc();
                    error!(object = %object.data_key, block = first, "fetched block head fails its CRC32C check; refusing it");
                }
                None => {} // an index object without head checksums (version 1)
            }
        }
        Ok(index)
    }

    /// Fetches blocks claimed at the expected block size before the index object was known:
    /// one GET, streamed; its first [`HEAD_BYTES`] go to `head` as soon as they are in (for the
    /// first read to check and answer); then each block is checked against the index object
    /// (fetched meanwhile) and kept, or released when the index says another block size or the
    /// GET fails (their readers then fetch them themselves, with retries).
    fn spawn_guessed_fetch(
        self: &Arc<Self>,
        object: &RemoteObject,
        flights: Flights,
        guess: u64,
        head: Option<oneshot::Sender<Bytes>>,
    ) {
        let (this, object) = (Arc::clone(self), object.clone());
        tokio::spawn(async move {
            let mut flights = flights;
            let Some(first) = flights.senders.first().map(|(key, _)| key.index) else {
                return;
            };
            let last = first + flights.senders.len() as u64;
            let bytes = first * guess..(last * guess).min(object.size);
            let len = (bytes.end - bytes.start) as usize;
            let units = (len as u64).div_ceil(BUDGET_UNIT).min(this.budget_units()) as u32;
            // Within the in-flight budget, as every fetch of the read path.
            let Ok(_permit) = Arc::clone(&this.budget).acquire_many_owned(units).await else {
                return;
            };
            let fetch = async {
                this.metrics.get_requests.inc();
                let started = Instant::now();
                let mut frames = this
                    .store
                    .get_range_stream(&object.data_key, bytes.clone())
                    .await?;
                let mut body = BytesMut::with_capacity(len);
                let mut head = head;
                while let Some(frame) = frames.recv().await {
                    body.extend_from_slice(&frame?);
                    if body.len() >= HEAD_BYTES as usize
                        && let Some(tx) = head.take()
                    {
                        let _ = tx.send(Bytes::copy_from_slice(&body[..HEAD_BYTES as usize]));
                    }
                }
                this.metrics
                    .get_latency
                    .observe(started.elapsed().as_secs_f64());
                if body.len() != len {
                    return Err(StoreError::Transient(format!(
                        "asked for {len} bytes of {}, got {}",
                        object.data_key,
                        body.len()
                    )));
                }
                Ok(body.freeze())
            };
            // Bounded as every read: a stalled GET must not keep its blocks claimed.
            let timeout = this.config.read_timeout;
            let fetch = async {
                tokio::time::timeout(timeout, fetch)
                    .await
                    .unwrap_or_else(|_| {
                        Err(StoreError::Transient(format!(
                            "no answer within {} ms",
                            timeout.as_millis()
                        )))
                    })
            };
            let index = tokio::time::timeout(timeout, this.index(&object));
            let (index, body) = tokio::join!(index, fetch);
            let mut body = match body {
                Ok(body) => body,
                Err(e) => {
                    this.metrics.get_errors.inc();
                    warn!(object = %object.data_key, range = ?bytes, error = %e, "ranged GET failed; its readers fetch again");
                    return; // dropping the flights releases the blocks
                }
            };
            this.metrics.get_bytes.inc_by(len as u64);
            let index = match index {
                Ok(Ok(index)) if u64::from(index.block_size) == guess => index,
                // Dropping the flights releases the blocks: readers fetch them at the right size.
                _ => return,
            };
            for (key, tx) in std::mem::take(&mut flights.senders) {
                let piece = body.split_to((guess as usize).min(body.len()));
                // As before the index was known: a first read may be the first of a random reader.
                let verdict = this.verify(&key, &index, piece, Keep::OnDisk);
                this.answer(&key, &tx, verdict);
            }
        });
    }

    /// The segment's index object, fetched once and kept decoded.
    async fn index(&self, object: &RemoteObject) -> Result<Arc<IndexObject>, CacheError> {
        let cell = {
            let mut indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                indexes.get_or_insert(Arc::clone(&object.data_key), || Arc::new(OnceCell::new())),
            )
        };
        let index = cell
            .get_or_try_init(|| async {
                // The disk cache keeps index objects too (as block 0 of the index key), so a
                // remount can read cached blocks while the store is unreachable.
                let disk_key = BlockKey {
                    object: Arc::from(object.index_key.as_str()),
                    index: 0,
                };
                let cached = self.disk.as_ref().and_then(|disk| {
                    let bytes = tokio::task::block_in_place(|| disk.get(&disk_key))?;
                    IndexObject::decode(&bytes).ok()
                });
                let index = match cached {
                    Some(index) => index,
                    None => {
                        let bytes = self.store.get(&object.index_key).await?;
                        let index =
                            IndexObject::decode(&bytes).map_err(|reason| CacheError::Index {
                                key: object.index_key.clone(),
                                reason,
                            })?;
                        self.write_to_disk(disk_key, bytes, None);
                        index
                    }
                };
                // Reads need the block checksums, not the entry offsets: do not keep those.
                let index = IndexObject {
                    entry_ends: Vec::new(),
                    ..index
                };
                if index.size != object.size {
                    return Err(CacheError::Index {
                        key: object.index_key.clone(),
                        reason: format!(
                            "describes {} bytes, the segment has {}",
                            index.size, object.size
                        ),
                    });
                }
                Ok::<_, CacheError>(Arc::new(index))
            })
            .await?;
        Ok(Arc::clone(index))
    }

    /// The blocks `range` of an object, in order.
    async fn blocks(
        self: &Arc<Self>,
        object: &RemoteObject,
        index: &Arc<IndexObject>,
        range: Range<u64>,
        keep: Keep,
    ) -> Result<Vec<(u64, Bytes)>, CacheError> {
        let mut fetched: HashMap<u64, Bytes> = HashMap::new();
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        for i in range.clone() {
            let key = BlockKey {
                object: Arc::clone(&object.data_key),
                index: i,
            };
            let data = loop {
                if let Some(data) = fetched.remove(&i) {
                    break data;
                }
                if let Some(data) = self.lookup(&key, index).await {
                    break data;
                }
                let flight = self
                    .inflight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&key)
                    .cloned();
                if let Some(mut flight) = flight {
                    let outcome = flight
                        .wait_for(Option::is_some)
                        .await
                        .map(|result| result.clone().expect("waited for Some"));
                    match outcome {
                        Ok(result) => match result {
                            // The fetch this read waited on was dropped: fetch again.
                            Err(CacheError::Abandoned { .. }) => continue,
                            other => break other?,
                        },
                        Err(_) => {
                            // Its fetcher vanished without answering: drop the entry, look again.
                            let mut inflight =
                                self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                            if inflight
                                .get(&key)
                                .is_some_and(|rx| rx.same_channel(&flight))
                            {
                                inflight.remove(&key);
                            }
                            continue;
                        }
                    }
                }
                let run_end = range
                    .end
                    .min(i + (self.config.max_get_bytes / u64::from(index.block_size)).max(1));
                // A reader's own fetch counts against the same in-flight budget as read-ahead
                // (it waits for room rather than going over it), so memory held for reads stays
                // within --cache-size plus --readahead-budget whatever the read pattern.
                let block = u64::from(index.block_size);
                let units = ((run_end - i) * block)
                    .div_ceil(BUDGET_UNIT)
                    .min(self.budget_units()) as u32;
                let permit = Arc::clone(&self.budget)
                    .acquire_many_owned(units)
                    .await
                    .map_err(|_| CacheError::Abandoned {
                        object: object.data_key.to_string(),
                        block: i,
                    })?;
                let cached = self
                    .memory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .bytes();
                self.update_memory_gauge(cached);
                fetched = self.fetch_run(object, index, i..run_end, keep).await?;
                drop(permit);
                if !fetched.contains_key(&i) {
                    // Someone else fetched it or started to in the meantime (a read-ahead that
                    // ended between the looks above): take theirs.
                    continue;
                }
                // A miss is a block this reader had to fetch itself.
                self.metrics.cache_misses.inc();
            };
            out.push((i, data));
        }
        Ok(out)
    }

    /// A cached block: memory first, then disk (verified again against the index object).
    async fn lookup(&self, key: &BlockKey, index: &IndexObject) -> Option<Bytes> {
        if let Some(data) = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            self.metrics.cache_hits.inc();
            return Some(data);
        }
        let disk = self.disk.as_ref()?;
        let data = tokio::task::block_in_place(|| disk.get(key))?;
        if index.block_crcs.get(key.index as usize) != Some(&crc32c::crc32c(&data)) {
            warn!(object = %key.object, block = key.index, "a disk cache block does not match the index object; dropped");
            disk.remove(key);
            return None;
        }
        disk.mark_verified(key);
        self.metrics.disk_cache_hits.inc();
        self.remember(key.clone(), data.clone(), None);
        Some(data)
    }

    /// `[offset, end)` when it lies in one block that is not in memory but on disk and verified
    /// in this session: just those bytes, read from the block's file (a random reader of a
    /// segment fetched whole to disk pays a small pread, not a block read and its checksums).
    fn read_from_disk(
        &self,
        object: &RemoteObject,
        block: u64,
        offset: u64,
        end: u64,
    ) -> Option<Bytes> {
        let disk = self.disk.as_ref()?;
        let i = offset / block;
        if (end - 1) / block != i {
            return None;
        }
        let key = BlockKey {
            object: Arc::clone(&object.data_key),
            index: i,
        };
        if self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return None;
        }
        // Most misses are blocks not on disk (a scan's): answered without leaving the runtime.
        if !disk.is_verified(&key) {
            return None;
        }
        let range = (offset - i * block) as usize..(end - i * block) as usize;
        let bytes = tokio::task::block_in_place(|| disk.read_verified(&key, range))?;
        self.metrics.disk_cache_hits.inc();
        Some(bytes)
    }

    /// `[offset, end)` from the verified head of its block, kept by a segment's first read,
    /// while the block itself is not in memory yet.
    fn read_from_head(
        &self,
        object: &RemoteObject,
        index: &IndexObject,
        offset: u64,
        end: u64,
    ) -> Option<Bytes> {
        if index.head_size == 0 {
            return None;
        }
        let block = u64::from(index.block_size);
        let i = offset / block;
        let start = i * block;
        if end > start + u64::from(index.head_size) {
            return None;
        }
        let head = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&head_key(&object.data_key, i))?;
        self.metrics.cache_hits.inc();
        Some(head.slice((offset - start) as usize..(end - start) as usize))
    }

    /// Keeps a block in the memory cache and, given the CRC32C it was verified with, on disk.
    fn remember(&self, key: BlockKey, data: Bytes, to_disk: Option<u32>) {
        let (evicted, cached) = {
            let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            let evicted = memory.insert(key.clone(), data.clone());
            (evicted, memory.bytes())
        };
        self.metrics.cache_evictions.inc_by(evicted.blocks);
        self.update_memory_gauge(cached);
        if let Some(crc) = to_disk {
            self.write_to_disk(key, data, Some(crc));
        }
    }

    /// Writes a verified block to the disk cache in the background: off the path of the read
    /// that fetched it (a file created and renamed costs milliseconds on some filesystems).
    fn write_to_disk(&self, key: BlockKey, data: Bytes, crc: Option<u32>) {
        let Some(disk) = &self.disk else {
            return;
        };
        let (disk, metrics) = (Arc::clone(disk), Arc::clone(&self.metrics));
        tokio::task::spawn_blocking(move || {
            match match crc {
                Some(crc) => disk.put_with_crc(&key, &data, crc),
                None => disk.put(&key, &data),
            } {
                Ok(evicted) => {
                    metrics.disk_cache_evictions.inc_by(evicted);
                    metrics.disk_cache_bytes.set(disk.bytes() as i64);
                }
                Err(e) => warn!(error = %e, "cannot write a block to the disk cache"),
            }
        });
    }

    /// Fetches the first run of consecutive blocks of `range` that nobody holds or fetches, as
    /// one ranged GET; returns the blocks it fetched (blocks held or in flight before the run
    /// are passed over; the run stops before the next one).
    /// Transient failures (including a body cut short) are retried with backoff while the read
    /// deadline allows. Whatever happens, even if this future is dropped, every block it claimed
    /// is answered and released (see [`Flights`]).
    async fn fetch_run(
        self: &Arc<Self>,
        object: &RemoteObject,
        index: &IndexObject,
        range: Range<u64>,
        keep: Keep,
    ) -> Result<HashMap<u64, Bytes>, CacheError> {
        let flights = self.claim(object, range);
        self.fetch_claimed(object, index, flights, keep).await
    }

    /// Claims the first run of consecutive blocks of `range` that nobody holds or fetches
    /// (blocks held or in flight before it are passed over: read-ahead windows overlap the
    /// blocks the last window asked for; the run ends at the next held block). Claimed blocks
    /// are in flight from now on: readers wait for them instead of fetching them again.
    fn claim(self: &Arc<Self>, object: &RemoteObject, range: Range<u64>) -> Flights {
        let mut flights = Flights {
            cache: Arc::clone(self),
            object: Arc::clone(&object.data_key),
            senders: Vec::new(),
        };
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        let memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        for i in range {
            let key = BlockKey {
                object: Arc::clone(&object.data_key),
                index: i,
            };
            if inflight.contains_key(&key) || memory.contains(&key) {
                if flights.senders.is_empty() {
                    continue;
                }
                break;
            }
            let (tx, rx) = watch::channel(None);
            inflight.insert(key.clone(), rx);
            flights.senders.push((key, tx));
        }
        flights
    }

    /// Fetches claimed blocks as one ranged GET, verifies and caches them, answers their
    /// waiters; returns them.
    async fn fetch_claimed(
        &self,
        object: &RemoteObject,
        index: &IndexObject,
        mut flights: Flights,
        keep: Keep,
    ) -> Result<HashMap<u64, Bytes>, CacheError> {
        let block = u64::from(index.block_size);
        let Some(first) = flights.senders.first().map(|(k, _)| k.index) else {
            return Ok(HashMap::new());
        };
        let last = first + flights.senders.len() as u64;
        let bytes = first * block..(last * block).min(object.size);
        let pieces = match self
            .get_with_retries(object, bytes.clone(), block as usize)
            .await
        {
            Ok(data) => data,
            Err(e) => {
                self.metrics.get_errors.inc();
                warn!(object = %object.data_key, range = ?bytes, error = %e, "ranged GET failed");
                flights.fail_all(&e);
                return Err(e);
            }
        };
        self.metrics.get_bytes.inc_by(bytes.end - bytes.start);
        let mut fetched = HashMap::new();
        let mut first_error = None;
        // Each block arrives in its own buffer, so the cache's byte count is the memory it holds.
        let senders = std::mem::take(&mut flights.senders);
        for ((key, tx), piece) in senders.into_iter().zip(pieces) {
            let verdict = self.verify(&key, index, piece, keep);
            match &verdict {
                Ok(piece) => {
                    fetched.insert(key.index, piece.clone());
                }
                Err(e) => {
                    first_error.get_or_insert(e.clone());
                }
            }
            self.answer(&key, &tx, verdict);
        }
        first_error.map_or(Ok(fetched), Err)
    }

    /// A fetched block checked against the index object's CRC32C: kept and returned, or
    /// refused (counted and logged).
    fn verify(
        &self,
        key: &BlockKey,
        index: &IndexObject,
        piece: Bytes,
        keep: Keep,
    ) -> Result<Bytes, CacheError> {
        let crc = crc32c::crc32c(&piece);
        if index.block_crcs.get(key.index as usize) == Some(&crc) {
            self.remember(
                key.clone(),
                piece.clone(),
                (keep == Keep::OnDisk).then_some(crc),
            );
            // The block's head (kept for a first read) is of no more use.
            if index.head_size > 0 && key.index < HEAD_FLAG {
                self.memory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&head_key(&key.object, key.index));
            }
            return Ok(piece);
        }
        self.metrics.checksum_failures.inc();
        error!(object = %key.object, block = key.index, "fetched block fails its CRC32C check; refusing it");
        Err(CacheError::Corrupt {
            object: key.object.to_string(),
            block: key.index,
        })
    }

    /// One ranged GET, retried on transient failures with exponential backoff (100 ms, 200 ms,
    /// …) for as long as the read timeout allows; each attempt is itself bounded by it.
    async fn get_with_retries(
        &self,
        object: &RemoteObject,
        bytes: Range<u64>,
        block: usize,
    ) -> Result<Vec<Bytes>, CacheError> {
        let deadline = Instant::now() + self.config.read_timeout;
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            self.metrics.get_requests.inc();
            let left = deadline.saturating_duration_since(started);
            let attempt = tokio::time::timeout(
                left,
                self.store.get_range(&object.data_key, bytes.clone(), block),
            )
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Transient(format!(
                    "no answer within {} ms",
                    left.as_millis()
                )))
            });
            self.metrics
                .get_latency
                .observe(started.elapsed().as_secs_f64());
            let got = |pieces: &[Bytes]| pieces.iter().map(|p| p.len() as u64).sum::<u64>();
            let error = match attempt {
                Ok(pieces) if got(&pieces) == bytes.end - bytes.start => return Ok(pieces),
                Ok(pieces) => StoreError::Transient(format!(
                    "asked for {} bytes of {}, got {}",
                    bytes.end - bytes.start,
                    object.data_key,
                    got(&pieces)
                )),
                Err(e) => e,
            };
            if !error.is_transient() || Instant::now() + backoff >= deadline {
                return Err(CacheError::Store(error));
            }
            warn!(object = %object.data_key, error = %error, retry_in_ms = backoff.as_millis() as u64, "ranged GET failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Sends a block's outcome to its waiters and releases its in-flight entry.
    fn answer(&self, key: &BlockKey, tx: &Answer, result: Result<Bytes, CacheError>) {
        let _ = tx.send(Some(result));
        self.release(key, tx);
    }

    /// Removes a block's in-flight entry if it is still the one `tx` feeds.
    fn release(&self, key: &BlockKey, tx: &Answer) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if inflight
            .get(key)
            .is_some_and(|rx| rx.same_channel(&tx.subscribe()))
        {
            inflight.remove(key);
        }
    }

    /// Whether block `index` of `object` is cached in memory, verified on disk or in flight.
    fn held(&self, object: &RemoteObject, index: u64) -> bool {
        let key = BlockKey {
            object: Arc::clone(&object.data_key),
            index,
        };
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&key)
            || self
                .memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&key)
            || self
                .disk
                .as_ref()
                .is_some_and(|disk| disk.is_verified(&key))
    }

    /// The first block of `range` that nobody holds (see [`Cache::held`]).
    fn first_missing(&self, object: &RemoteObject, range: Range<u64>) -> Option<u64> {
        range.into_iter().find(|&i| !self.held(object, i))
    }

    /// The runs of consecutive blocks of `range` that are neither cached in memory nor in
    /// flight, each at most `per_get` blocks long: what read-ahead still has to fetch. Windows
    /// of successive reads overlap; only their new blocks are fetched, and none is skipped.
    fn missing_runs(
        &self,
        object: &RemoteObject,
        range: Range<u64>,
        per_get: u64,
    ) -> Vec<Range<u64>> {
        let inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        let memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        let mut runs: Vec<Range<u64>> = Vec::new();
        for i in range {
            let key = BlockKey {
                object: Arc::clone(&object.data_key),
                index: i,
            };
            if inflight.contains_key(&key) || memory.contains(&key) {
                continue;
            }
            match runs.last_mut() {
                Some(run) if run.end == i && run.end - run.start < per_get => run.end += 1,
                _ => runs.push(i..i + 1),
            }
        }
        runs
    }

    /// Starts background fetches of the blocks of `range` that are missing, as far as the
    /// in-flight budget allows: handed to `reader`'s streamed GET ([`stream`]) when there is
    /// a reader, else as ranged GETs of their own.
    fn prefetch(
        self: &Arc<Self>,
        object: &RemoteObject,
        index: &Arc<IndexObject>,
        range: Range<u64>,
        reader: Option<u64>,
    ) {
        let block = u64::from(index.block_size);
        let budget_blocks = ((self.config.inflight_bytes / block).max(1)).max(1);
        let per_get = (self.config.max_get_bytes / block).clamp(1, budget_blocks);
        let blocks = object.size.div_ceil(block.max(1));
        for run in self.missing_runs(object, range.clone(), per_get) {
            // A window slides on by one read at a time: the stretch it adds at its end waits
            // until it is half a window long (or reaches the segment's end), so that blocks
            // ahead come in GETs of half a window and more, not one block per GET.
            let short = (range.end - run.start) * 2 < range.end - range.start;
            if run.end == range.end && range.end < blocks && short {
                continue;
            }
            let units = ((run.end - run.start) * block).div_ceil(BUDGET_UNIT) as u32;
            let Ok(permit) = Arc::clone(&self.budget).try_acquire_many_owned(units) else {
                return; // the budget is spent: read-ahead waits for memory
            };
            if let Some(reader) = reader {
                self.streams
                    .feed(self, reader, object, index, run.clone(), permit);
                continue;
            }
            // Claimed now, not when the task runs: the next read must find them in flight.
            let flights = self.claim(object, run.clone());
            if flights.senders.is_empty() {
                continue;
            }
            let (this, object, index) = (Arc::clone(self), object.clone(), Arc::clone(index));
            let start = run.start;
            tokio::spawn(async move {
                let _permit = permit;
                let cached = this
                    .memory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .bytes();
                this.update_memory_gauge(cached);
                if let Err(e) = this
                    .fetch_claimed(&object, &index, flights, Keep::InMemory)
                    .await
                {
                    warn!(object = %object.data_key, block = start, error = %e, "read-ahead fetch failed");
                }
            });
        }
    }
}

/// `[offset, end)` out of consecutive `(index, data)` blocks of `block` bytes: within one
/// block a view of its bytes (no copy), else the pieces copied together; `None` when the
/// blocks do not hold the range.
fn assemble(blocks: &[(u64, Bytes)], block: u64, offset: u64, end: u64) -> Option<Bytes> {
    if let [(i, data)] = blocks {
        let start = i * block;
        let range = (offset.checked_sub(start)? as usize)..(end.checked_sub(start)? as usize);
        return data.get(range.clone()).map(|_| data.slice(range));
    }
    let mut out = BytesMut::with_capacity((end - offset) as usize);
    for (i, data) in blocks {
        let start = i * block;
        let from = (offset.max(start) - start) as usize;
        let to = (end.min(start + data.len() as u64).saturating_sub(start)) as usize;
        out.extend_from_slice(data.get(from..to.max(from))?);
    }
    (out.len() as u64 == end - offset).then(|| out.freeze())
}

#[cfg(test)]
mod tests;
