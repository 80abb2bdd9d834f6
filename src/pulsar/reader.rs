//! Reads a ledger file of a `--pulsar` mount: the ledger's entries, concatenated, out of the
//! data object's blocks, every record of a block checked before its bytes are served.
//!
//! The ledger file's bytes are the blocks' entry bytes with block headers, entry framing
//! (`[i32 length][i64 entryId]`) and padding removed. Where block `i`'s bytes start in the file
//! depends on how many payload bytes the blocks before it hold, which their framing and padding
//! decide. So:
//!
//! - A block is **walked** the first time any byte of it is needed, by a task of its own: ranged
//!   GET whose body is fed, as it arrives, to a [`BlockWalker`], which checks magic, header and block lengths, the first entry id against
//!   the index, consecutive entry ids, lengths adding up and padding. An entry's bytes go into
//!   the memory cache, in chunks of [`CHUNK`] bytes, once the record after it checks out too;
//!   readers waiting on the block are woken chunk by chunk. Its entry lengths (its *layout*) are
//!   kept for the life of the mount. At most [`WALKS`] blocks are walked at once.
//! - Where the blocks carry no padding at all (the index and the ledger's length say so: the
//!   data object is exactly headers, framing and entries), every block's place is known
//!   without walking; otherwise a block's place is known once the blocks before it are walked,
//!   and a read far into the file walks every block that may precede it, in parallel.
//! - A chunk evicted from the memory cache (or never kept: a walk run for the layout alone) is
//!   fetched again by one ranged GET of just its bytes, mapped through the layout; every entry
//!   header inside the range must say the length and id the walk found. Readers that want the
//!   same chunk meanwhile share that GET.
//! - A sequential reader of a walked block whose chunks are not cached (a ledger read again,
//!   or read after its entry lengths were: a walk run for the layout alone keeps none) has the
//!   rest of the block *streamed again*: one GET from the chunk it needs to the block's end,
//!   cut into chunks through the layout (every entry header checked as above), paced as a walk
//!   is, [`LedgerCache::restream_ahead`] chunks beyond what its readers asked for (half the
//!   memory cache). One GET per chunk instead would pay a round trip per MiB, and on a server
//!   that does not set `TCP_NODELAY` (Garage) a delayed-ACK stall of up to 40 ms for many of
//!   them (measured: a 256 MiB ledger read after its entry lengths took 9 s that way).
//! - A sequential reader has the next [`WALK_AHEAD`] blocks walked in the background once it
//!   is two windows (see below) from the end of the block it reads.
//! - A walk is paced by its readers: it keeps at most a *window* of payload (half the memory
//!   cache shared by the [`WALKS`] walks there can be, between 1 and 32 chunks) beyond the
//!   furthest byte a reader of the block has asked for, then stops reading its GET's body until
//!   a reader asks for more; one that no reader wants for [`IDLE_WALK`] is given up (its
//!   connection closed) and started again when a reader comes. So a walk ahead of a reader
//!   brings the block's first window and waits, and a small cache is never flooded by blocks
//!   nobody reads yet. A walk run for its layout alone (to place a block after it, or for the
//!   entry lengths) does not wait: past the window it keeps only the entries' lengths, and a
//!   reader that comes later fetches those chunks again through the layout. A chunk evicted
//!   behind a walk in progress is fetched again through the entries it has checked so far.
//! - Chunk buffers come from a [`BufferPool`]: a chunk evicted from the cache lends its
//!   memory, already faulted in, to the next one.
//!
//! Any mismatch is [`ReadError::Structure`], naming the object and the offset: EIO at the
//! mount, and a log line, never wrong bytes. Pulsar's blocks carry no checksum of their own;
//! entries that carry a CRC32C (magic `0x0e01`) are checked by `tierfs pulsar verify`.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{OnceCell, watch};
use tracing::error;

use super::bucket::Ledger;
use super::offload_format::{BLOCK_HEADER_LEN, BlockWalker, ENTRY_RECORD_HEADER};
use crate::buffer_pool::BufferPool;
use crate::cache::{BlockKey, MemoryCache};
use crate::metrics::Metrics;
use crate::store::{ObjectStore, StoreError};

/// Bytes of ledger payload per cached chunk.
pub const CHUNK: u64 = 1 << 20;
/// Blocks fetched (walked) at once across a mount: each holds one block in memory while it
/// arrives (64 MiB by default in Pulsar).
pub const WALKS: usize = 3;
/// Blocks walked ahead of a sequential reader.
pub const WALK_AHEAD: usize = 1;
/// A walk paused with no reader asking for more for this long is given up.
pub const IDLE_WALK: Duration = Duration::from_secs(5);
/// A chunk fetched again through its block's layout: `None` until its GET has ended.
type Refetch = watch::Receiver<Option<Result<Bytes, ReadError>>>;
/// Where the fetch of a chunk taken on ([`Claim::Taken`]) hands its result to its readers.
type Settle = watch::Sender<Option<Result<Bytes, ReadError>>>;

/// What [`LedgerReader::claim_chunk`] found.
enum Claim {
    /// The caller fetches the chunk and settles it ([`LedgerReader::settle_chunk`]).
    Taken(Settle),
    /// Someone fetches it already.
    OnItsWay(Refetch),
    Cached,
}

impl Claim {
    fn taken(self) -> Option<Settle> {
        match self {
            Claim::Taken(done) => Some(done),
            Claim::OnItsWay(_) | Claim::Cached => None,
        }
    }
}

/// Free chunk buffers a mount keeps for reuse (see [`BufferPool`]).
const POOLED_CHUNKS: usize = 8;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data object is not what its index object describes.
    #[error("{object} at offset {offset}: {reason}")]
    Structure {
        object: String,
        offset: u64,
        reason: String,
    },
    #[error("{object}: {reason}")]
    Version { object: String, reason: String },
    #[error("reading {object} did not complete within {seconds} s")]
    Timeout { object: String, seconds: u64 },
    /// A walk paused for [`IDLE_WALK`] with no reader asking for more, and was given up; a
    /// reader that comes later starts it again.
    #[error("the walk of block {block} of {object} waited for a reader in vain and was given up")]
    Suspended { object: String, block: usize },
}

/// The memory every ledger of a mount shares: payload chunks, bounded in bytes.
#[derive(Debug)]
pub struct LedgerCache {
    /// Where walks run (they are started from FUSE threads too).
    runtime: tokio::runtime::Handle,
    store: Arc<dyn ObjectStore>,
    memory: Mutex<MemoryCache>,
    metrics: Arc<Metrics>,
    read_timeout: Duration,
    walks: tokio::sync::Semaphore,
    /// Payload a walk keeps beyond what its readers asked for (see the module doc).
    window: u64,
    /// Chunks a stream of a walked block fetches beyond what its readers asked for (half the
    /// memory cache, between 2 and 8).
    restream_ahead: u64,
    /// How long a paused walk waits for a reader ([`IDLE_WALK`]; tests shorten it), in ms.
    idle_walk_ms: std::sync::atomic::AtomicU64,
    pool: Arc<BufferPool>,
}

impl LedgerCache {
    pub fn new(
        runtime: tokio::runtime::Handle,
        store: Arc<dyn ObjectStore>,
        memory_bytes: u64,
        read_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            store,
            memory: Mutex::new(MemoryCache::new(memory_bytes)),
            metrics,
            read_timeout,
            walks: tokio::sync::Semaphore::new(WALKS),
            window: (memory_bytes / 2 / WALKS as u64).clamp(CHUNK, 32 * CHUNK),
            restream_ahead: (memory_bytes / 2 / CHUNK).clamp(2, 8),
            pool: BufferPool::new(CHUNK as usize, POOLED_CHUNKS),
            idle_walk_ms: (IDLE_WALK.as_millis() as u64).into(),
        })
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// How long a paused walk waits for a reader before it is given up.
    pub fn set_idle_walk(&self, idle: Duration) {
        self.idle_walk_ms.store(
            idle.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn idle_walk(&self) -> Duration {
        Duration::from_millis(self.idle_walk_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn get(&self, key: &BlockKey) -> Option<Bytes> {
        let hit = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key);
        if hit.is_some() {
            self.metrics.cache_hits.inc();
        }
        hit
    }

    /// Whether `key` is in the memory cache (not counted as a hit or a miss).
    fn holds(&self, key: &BlockKey) -> bool {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    fn put(&self, key: BlockKey, data: Bytes) {
        let (evicted, bytes) = {
            let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            let evicted = memory.insert(key, data);
            (evicted, memory.bytes())
        };
        self.metrics.cache_evictions.inc_by(evicted.blocks);
        self.metrics.cache_bytes.set(bytes as i64);
        self.metrics.memory_in_use.set(bytes as i64);
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, ReadError> {
        self.metrics.get_requests.inc();
        let started = std::time::Instant::now();
        let len = (range.end - range.start) as usize;
        let pieces = self.store.get_range(key, range.clone(), len.max(1)).await;
        self.metrics
            .get_latency
            .observe(started.elapsed().as_secs_f64());
        let mut pieces = pieces.inspect_err(|_| {
            self.metrics.get_errors.inc();
        })?;
        let got: usize = pieces.iter().map(Bytes::len).sum();
        if got != len {
            self.metrics.get_errors.inc();
            return Err(StoreError::Transient(format!(
                "asked for {len} bytes of {key} at {}, got {got}",
                range.start
            ))
            .into());
        }
        self.metrics.get_bytes.inc_by(len as u64);
        Ok(match pieces.len() {
            1 => pieces.pop().expect("one piece"),
            _ => pieces.concat().into(),
        })
    }
}

/// One block as the index describes it.
#[derive(Debug, Clone)]
struct Span {
    physical: Range<u64>,
    first_entry: u64,
    entries: u64,
    /// The payload the block would hold without padding: its size less header and framing.
    unpadded: u64,
}

/// What a walk of a block found: its entries' lengths.
#[derive(Debug)]
struct Layout {
    /// End of each entry's bytes within the block's payload (prefix sums of the lengths).
    ends: Vec<u64>,
}

impl Layout {
    fn payload(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    fn len_of(&self, k: usize) -> u64 {
        self.ends[k] - if k == 0 { 0 } else { self.ends[k - 1] }
    }

    /// Where payload byte `x` of the block lies, from the block's start, and its entry.
    fn physical(&self, x: u64) -> (u64, usize) {
        let k = self.ends.partition_point(|end| *end <= x);
        (
            BLOCK_HEADER_LEN + ENTRY_RECORD_HEADER * (k as u64 + 1) + x,
            k,
        )
    }
}

/// How far a walk of a block has come.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Bytes of the block's payload checked and in the cache, from its start.
    published: u64,
    /// The walk is over: its layout is set, or it failed (`error`), or it was given up.
    ended: bool,
    error: Option<ReadError>,
}

/// What the readers of a block ask of its walk.
#[derive(Debug, Clone, Copy, Default)]
struct Demand {
    /// Payload bytes of the block, from its start, some reader has asked for.
    upto: u64,
    /// Someone needs the block's layout: its walk must not pause.
    layout: bool,
}

/// A walk's payload, cut into chunks as it arrives.
#[derive(Debug)]
struct Chunks {
    pool: Arc<BufferPool>,
    filling: Vec<u8>,
    full: std::collections::VecDeque<Bytes>,
    /// Payload bytes received so far.
    received: u64,
    /// Payload bytes checked so far (an entry is checked once the record after it is).
    verified: u64,
    /// Payload bytes handed to the cache, in `count` chunks.
    published: u64,
    count: u64,
    /// Whether arriving bytes are kept; once not, no later byte of the walk is.
    keeping: bool,
}

impl Chunks {
    fn new(pool: Arc<BufferPool>) -> Self {
        Self {
            pool,
            filling: Vec::new(),
            full: Default::default(),
            received: 0,
            verified: 0,
            published: 0,
            count: 0,
            keeping: true,
        }
    }

    fn append(&mut self, mut bytes: &[u8]) {
        self.received += bytes.len() as u64;
        if !self.keeping {
            return;
        }
        while !bytes.is_empty() {
            if self.filling.capacity() == 0 {
                self.filling = self.pool.take();
            }
            let take = (CHUNK as usize - self.filling.len()).min(bytes.len());
            self.filling.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.filling.len() as u64 == CHUNK {
                let full = std::mem::take(&mut self.filling);
                self.full.push_back(self.pool.freeze(full));
            }
        }
    }

    /// From here on the walk keeps only the layout: the chunk being filled is dropped.
    fn stop_keeping(&mut self) {
        self.keeping = false;
        self.filling = Vec::new();
    }

    /// The last, partial chunk is complete too.
    fn close(&mut self) {
        if self.keeping && !self.filling.is_empty() {
            let last = std::mem::take(&mut self.filling);
            self.full.push_back(self.pool.freeze(last));
        }
    }
}

/// A ledger's reader, shared by every open handle of its file.
#[derive(Debug)]
pub struct LedgerReader {
    ledger: Arc<Ledger>,
    cache: Arc<LedgerCache>,
    object: Arc<str>,
    spans: Vec<Span>,
    layouts: Vec<OnceCell<Arc<Layout>>>,
    /// A task walks block `i` now.
    walking: Vec<std::sync::atomic::AtomicBool>,
    /// How far each block's walk has come, for readers waiting on it.
    progress: Vec<watch::Sender<Progress>>,
    /// What readers ask of each block's walk, which paces it.
    demand: Vec<watch::Sender<Demand>>,
    /// The entry ends a walk in progress has checked so far (its layout, as far as it goes).
    partial: Vec<Mutex<Vec<u64>>>,
    /// A block found malformed stays so (its objects never change): refused at once after.
    failed: Vec<Mutex<Option<ReadError>>>,
    /// Chunks being fetched again through their block's layout, by key index: readers that
    /// want one meanwhile wait for that GET instead of sending their own.
    refetching: Mutex<HashMap<u64, Refetch>>,
    /// While a task streams block `i` again (see the module doc): the chunk it takes on next.
    streaming: Vec<watch::Sender<Option<u64>>>,
    /// Whether the blocks carry no padding at all (then every block's place is known
    /// without a walk): the data object is exactly headers, framing and the ledger's bytes.
    unpadded: Option<()>,
    /// All the padding the blocks carry, together.
    padding: u64,
}

impl LedgerReader {
    pub fn new(ledger: Arc<Ledger>, cache: Arc<LedgerCache>) -> Result<Self, ReadError> {
        let index = &ledger.index;
        let object = Arc::<str>::from(ledger.data_key.as_str());
        let mut spans = Vec::with_capacity(index.blocks.len());
        for i in 0..index.blocks.len() {
            let (physical, ids) = index.block_span(i).ok_or_else(|| ReadError::Structure {
                object: ledger.index_key.clone(),
                offset: 0,
                reason: format!("index entry {i} describes an empty or inverted block"),
            })?;
            let entries = ids.end() - ids.start() + 1;
            let framing = ENTRY_RECORD_HEADER
                .checked_mul(entries)
                .and_then(|f| f.checked_add(BLOCK_HEADER_LEN))
                .filter(|f| *f <= physical.end - physical.start)
                .ok_or_else(|| ReadError::Structure {
                    object: ledger.index_key.clone(),
                    offset: physical.start,
                    reason: format!("block {i} is too small for its {entries} entries"),
                })?;
            spans.push(Span {
                unpadded: physical.end - physical.start - framing,
                physical,
                first_entry: *ids.start(),
                entries,
            });
        }
        let most: u64 = spans.iter().map(|s| s.unpadded).sum();
        let padding = most.checked_sub(ledger.length).ok_or_else(|| ReadError::Structure {
            object: ledger.index_key.clone(),
            offset: 0,
            reason: format!(
                "the blocks cannot hold more than {most} bytes of entries; the ledger metadata says {}",
                ledger.length
            ),
        })?;
        let unpadded = (padding == 0).then_some(());
        Ok(Self {
            layouts: spans.iter().map(|_| OnceCell::new()).collect(),
            failed: spans.iter().map(|_| Mutex::new(None)).collect(),
            refetching: Mutex::new(HashMap::new()),
            streaming: spans.iter().map(|_| watch::Sender::new(None)).collect(),
            walking: spans
                .iter()
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
            progress: spans
                .iter()
                .map(|_| watch::Sender::new(Progress::default()))
                .collect(),
            demand: spans
                .iter()
                .map(|_| watch::Sender::new(Demand::default()))
                .collect(),
            partial: spans.iter().map(|_| Mutex::new(Vec::new())).collect(),
            spans,
            unpadded,
            padding,
            object,
            cache,
            ledger,
        })
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    pub fn cache(&self) -> &Arc<LedgerCache> {
        &self.cache
    }

    fn structure(&self, offset: u64, reason: impl Into<String>) -> ReadError {
        let e = ReadError::Structure {
            object: self.ledger.data_key.clone(),
            offset,
            reason: reason.into(),
        };
        self.cache.metrics.checksum_failures.inc();
        error!(ledger = self.ledger.id, "refusing a block: {e}");
        e
    }

    /// Runs `work` within the read timeout. Walks it starts run as tasks of their own, so a
    /// read that times out leaves them to finish for the next one.
    async fn timed<T>(
        &self,
        work: impl Future<Output = Result<T, ReadError>>,
    ) -> Result<T, ReadError> {
        let seconds = self.cache.read_timeout.as_secs();
        tokio::time::timeout(self.cache.read_timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(ReadError::Timeout {
                    object: self.ledger.data_key.clone(),
                    seconds,
                })
            })
    }

    /// Reads `[offset, offset + len)` of the ledger file. `sequential`: the reader goes on
    /// where it stopped, so the blocks after the one it reads are walked ahead of it.
    pub async fn read(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        sequential: bool,
    ) -> Result<Bytes, ReadError> {
        self.timed(async {
            let bytes = self.read_inner(offset, len, sequential).await?;
            if !bytes.is_empty() {
                self.check_end(offset + bytes.len() as u64).await?;
            }
            Ok(bytes)
        })
        .await
    }

    async fn read_inner(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        sequential: bool,
    ) -> Result<Bytes, ReadError> {
        let end = offset.saturating_add(len).min(self.ledger.length);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let mut out = BytesMut::new();
        let mut pos = offset;
        while pos < end {
            let (i, start) = self.locate(pos, sequential).await?;
            let chunk = (pos - start) / CHUNK;
            let data = self.chunk(i, chunk, sequential).await?;
            let chunk_start = start + chunk * CHUNK;
            let from = (pos - chunk_start) as usize;
            let to = ((end - chunk_start) as usize).min(data.len());
            if from >= to {
                return Err(self.structure(
                    self.spans[i].physical.start,
                    format!("the block's payload ends before ledger byte {pos}"),
                ));
            }
            if pos == offset && to - from == (end - offset) as usize {
                // Within one chunk: a view of the cached bytes, no copy.
                return Ok(data.slice(from..to));
            }
            if out.is_empty() {
                out.reserve((end - offset) as usize);
            }
            out.extend_from_slice(&data[from..to]);
            pos += (to - from) as u64;
        }
        Ok(out.freeze())
    }

    /// Whether a read of `[offset, end)` may be answered: one that reaches the file's end is
    /// answered only once the last block's walk has ended and the blocks' payloads add up to
    /// the length the ledger metadata gives. Bytes a walk has published may be served before
    /// it ends, so without this a ledger longer than its metadata says would read as a file
    /// cut short, without an error.
    async fn check_end(self: &Arc<Self>, end: u64) -> Result<(), ReadError> {
        let Some(last) = self.spans.len().checked_sub(1) else {
            return Ok(());
        };
        if end < self.ledger.length || self.end_known_right() {
            return Ok(());
        }
        self.walked(last).await?;
        self.locate(self.ledger.length - 1, false).await.map(|_| ())
    }

    /// [`Self::check_end`] without waiting: `true` when the end is known to be right, `false`
    /// when a read reaching it must go through [`Self::read`].
    fn end_known_right(&self) -> bool {
        let mut total = 0u64;
        for (i, span) in self.spans.iter().enumerate() {
            total += match (&self.unpadded, self.layouts[i].get()) {
                (_, Some(layout)) => layout.payload(),
                (Some(_), None) if i + 1 < self.spans.len() => span.unpadded,
                _ => return false,
            };
        }
        total == self.ledger.length
    }

    /// `[offset, offset + len)` at once, when it lies in one chunk that is in the memory cache
    /// and its block's place is known without waiting; `None` otherwise (then [`Self::read`]).
    /// Asks for what a read asks for (the walk's pace, the next block walked ahead) either way
    /// it is answered.
    pub fn read_cached(self: &Arc<Self>, offset: u64, len: u64, sequential: bool) -> Option<Bytes> {
        let end = offset.saturating_add(len).min(self.ledger.length);
        if offset >= end {
            return Some(Bytes::new());
        }
        if end == self.ledger.length && !self.end_known_right() {
            return None;
        }
        let (i, start) = self.placed(offset)?;
        let n = (offset - start) / CHUNK;
        let chunk_start = start + n * CHUNK;
        if end > chunk_start + CHUNK {
            return None;
        }
        let data = self.cache.get(&self.key(i, n))?;
        let (from, to) = (
            (offset - chunk_start) as usize,
            (end - chunk_start) as usize,
        );
        if to > data.len() {
            return None;
        }
        self.ask(i, (n + 1) * CHUNK);
        self.walk_ahead(i, offset - start, sequential);
        if sequential && let Some(layout) = self.layouts[i].get() {
            self.stream_ahead(i, n, layout);
        }
        Some(data.slice(from..to))
    }

    /// The block holding ledger byte `pos` and where its payload starts, if known now: every
    /// block before it has a known size, and it is known to reach `pos`.
    fn placed(&self, pos: u64) -> Option<(usize, u64)> {
        let mut start = 0;
        for i in 0..self.spans.len() {
            let payload = match (&self.unpadded, self.layouts[i].get()) {
                (_, Some(layout)) => layout.payload(),
                (Some(_), None) => self.spans[i].unpadded,
                (None, None) => {
                    let published = self.progress[i].borrow().published;
                    return (pos < start + published).then_some((i, start));
                }
            };
            if pos < start + payload {
                return Some((i, start));
            }
            start += payload;
        }
        None
    }

    /// Starts a walk of block `i` as a task of its own, unless it is walked or being walked.
    fn start_walk(self: &Arc<Self>, i: usize) {
        if i >= self.spans.len()
            || self.layouts[i].initialized()
            || self.walking[i].swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        // Readers that look now wait for this walk, not for how the last one ended.
        self.progress[i].send_replace(Progress::default());
        let this = Arc::clone(self);
        self.cache.runtime.spawn(async move {
            match this.layout(i).await {
                Ok(_) => {}
                Err(e @ ReadError::Suspended { .. }) => {
                    tracing::debug!(ledger = this.ledger.id, block = i, "{e}")
                }
                Err(e) => {
                    tracing::warn!(ledger = this.ledger.id, block = i, error = %e, "walk failed")
                }
            }
        });
    }

    /// Block `i`'s layout, walked by a task of its own (so that a reader that gives up does
    /// not cancel it).
    async fn walked(self: &Arc<Self>, i: usize) -> Result<Arc<Layout>, ReadError> {
        if let Some(layout) = self.layouts[i].get() {
            return Ok(Arc::clone(layout));
        }
        self.need_layout(i);
        let this = Arc::clone(self);
        self.cache
            .runtime
            .spawn(async move { this.layout(i).await })
            .await
            .unwrap_or_else(|e| {
                Err(ReadError::Store(StoreError::Other(format!(
                    "a walk of block {i} failed: {e}"
                ))))
            })
    }

    /// The block holding ledger byte `pos`: its number and where its payload starts in the
    /// file. Blocks that may precede `pos` and are not walked are walked at once, in parallel
    /// (their padding decides where `pos` lies); a block being walked answers as soon as its
    /// checked bytes reach `pos`. A sequential reader has the next [`WALK_AHEAD`] blocks walked.
    async fn locate(
        self: &Arc<Self>,
        pos: u64,
        sequential: bool,
    ) -> Result<(usize, u64), ReadError> {
        if self.unpadded.is_none() {
            // Block i cannot start later than the sum of the unpadded payloads before it, nor
            // earlier than that minus all the padding there is.
            let mut most = 0u64;
            for i in 0..self.spans.len() {
                if most.saturating_sub(self.padding) > pos {
                    break;
                }
                if most + self.spans[i].unpadded <= pos {
                    // The block ends before `pos` wherever it starts: only its layout matters.
                    self.need_layout(i);
                }
                self.start_walk(i);
                most += self.spans[i].unpadded;
            }
        }
        let mut start = 0;
        let last = self.spans.len().saturating_sub(1);
        for i in 0..self.spans.len() {
            let payload = match (&self.unpadded, self.layouts[i].get()) {
                (_, Some(layout)) => layout.payload(),
                (Some(_), None) => self.spans[i].unpadded,
                (None, None) => {
                    match pos - start {
                        within if within < self.spans[i].unpadded => self.ask(i, within + 1),
                        _ => self.need_layout(i),
                    }
                    self.start_walk(i);
                    let mut progress = self.progress[i].subscribe();
                    let reached = progress
                        .wait_for(|p| pos < start + p.published || p.ended)
                        .await
                        .map(|p| !p.ended)
                        .unwrap_or(false);
                    if reached {
                        self.walk_ahead(i, pos - start, sequential);
                        return Ok((i, start));
                    }
                    self.walked(i).await?.payload()
                }
            };
            if i == last && start + payload != self.ledger.length {
                return Err(self.structure(
                    self.spans[i].physical.start,
                    format!(
                        "the blocks hold {} bytes of entries; the ledger metadata says {}",
                        start + payload,
                        self.ledger.length
                    ),
                ));
            }
            if pos < start + payload {
                self.walk_ahead(i, pos - start, sequential);
                return Ok((i, start));
            }
            start += payload;
        }
        Err(self.structure(
            self.ledger.data_size,
            format!(
                "the blocks hold {start} bytes of entries; the ledger metadata says {}",
                self.ledger.length
            ),
        ))
    }

    /// A reader wants block `i`'s payload up to byte `upto`: its walk may go on that far and a
    /// window beyond.
    fn ask(&self, i: usize, upto: u64) {
        self.demand[i].send_if_modified(|d| {
            let more = upto > d.upto;
            d.upto = d.upto.max(upto);
            more
        });
    }

    /// Someone waits for block `i`'s layout: its walk must not pause.
    fn need_layout(&self, i: usize) {
        self.demand[i].send_if_modified(|d| !std::mem::replace(&mut d.layout, true));
    }

    /// A sequential reader at payload byte `within` of block `i` has the next blocks walked
    /// once it is two windows from the block's end: soon enough that their first bytes are
    /// there when it comes, late enough that they are not evicted before it does.
    fn walk_ahead(self: &Arc<Self>, i: usize, within: u64, sequential: bool) {
        let payload = self.layouts[i]
            .get()
            .map_or(self.spans[i].unpadded, |layout| layout.payload());
        if sequential && within.saturating_add(2 * self.cache.window) >= payload {
            for ahead in 1..=WALK_AHEAD {
                self.start_walk(i + ahead);
            }
        }
    }

    /// Block `i`'s layout, walking the block if no one has.
    async fn layout(&self, i: usize) -> Result<Arc<Layout>, ReadError> {
        let failed = self.failed[i]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let walked = match failed {
            Some(e) => Err(e),
            None => self.layouts[i].get_or_try_init(|| self.walk(i)).await,
        };
        let outcome = match walked {
            Ok(layout) => Ok(Arc::clone(layout)),
            Err(e) => {
                if matches!(e, ReadError::Structure { .. }) {
                    *self.failed[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                }
                Err(e)
            }
        };
        // A reader that finds this walk ended may start the next one at once.
        self.walking[i].store(false, std::sync::atomic::Ordering::Release);
        let error = match &outcome {
            Err(ReadError::Suspended { .. }) | Ok(_) => None,
            Err(e) => Some(e.clone()),
        };
        self.progress[i].send_modify(|p| {
            p.ended = true;
            p.error = error;
        });
        outcome
    }

    /// Why blocks of this ledger were refused, for `user.pulsar.error`.
    pub fn refusals(&self) -> Vec<String> {
        self.failed
            .iter()
            .filter_map(|slot| slot.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .map(|e| e.to_string())
            .collect()
    }

    /// Fetches block `i` by one GET whose body is checked as it arrives, and keeps its payload
    /// in the cache chunk by chunk, an entry's bytes once the record after it checks out too;
    /// returns its layout. At most [`WALKS`] blocks are fetched at once across the mount.
    async fn walk(&self, i: usize) -> Result<Arc<Layout>, ReadError> {
        let _permit = self.cache.walks.acquire().await.map_err(|e| {
            ReadError::Store(StoreError::Other(format!("walks are shut down: {e}")))
        })?;
        self.progress[i].send_replace(Progress::default());
        let span = &self.spans[i];
        let block_len = span.physical.end - span.physical.start;
        let last = span.first_entry + span.entries - 1;
        let mut walker = BlockWalker::new(block_len, span.first_entry, last);
        *self.partial[i].lock().unwrap_or_else(|p| p.into_inner()) =
            Vec::with_capacity(span.entries as usize);
        let mut chunks = Chunks::new(Arc::clone(&self.cache.pool));
        let mut demand = self.demand[i].subscribe();
        // One GET of the whole block, checked as its body arrives.
        self.cache.metrics.get_requests.inc();
        let mut body = self
            .cache
            .store
            .get_range_stream(&self.object, span.physical.clone())
            .await
            .inspect_err(|_| {
                self.cache.metrics.get_errors.inc();
            })?;
        loop {
            self.pace(i, &mut chunks, &mut demand).await?;
            let Some(bytes) = body.recv().await else {
                break;
            };
            let bytes = bytes.inspect_err(|_| {
                self.cache.metrics.get_errors.inc();
            })?;
            self.cache.metrics.get_bytes.inc_by(bytes.len() as u64);
            {
                let mut ends = self.partial[i].lock().unwrap_or_else(|p| p.into_inner());
                walker
                    .feed(&bytes, |entry, payload| {
                        // The record after an entry checked out: the entry before it is whole.
                        if let Some(end) = ends.last() {
                            chunks.verified = *end;
                        }
                        let end = ends.last().copied().unwrap_or(0) + entry.len;
                        ends.push(end);
                        chunks.append(payload);
                    })
                    .map_err(|e| self.structure(span.physical.start, e.to_string()))?;
            }
            self.publish(i, &mut chunks);
        }
        walker
            .finish()
            .map_err(|e| self.structure(span.physical.start, e.to_string()))?;
        let ends = std::mem::take(&mut *self.partial[i].lock().unwrap_or_else(|p| p.into_inner()));
        let layout = Layout { ends };
        if self.unpadded.is_some() && span.unpadded != layout.payload() {
            return Err(self.structure(
                span.physical.start,
                format!(
                    "the block holds {} bytes of entries; its size says {}",
                    layout.payload(),
                    span.unpadded
                ),
            ));
        }
        chunks.verified = layout.payload();
        chunks.close();
        self.publish(i, &mut chunks);
        Ok(Arc::new(layout))
    }

    /// Waits, before a walk of block `i` reads more of its body, until its readers want what
    /// comes next (see the module doc); past the window, a walk someone needs the layout of
    /// stops keeping bytes instead.
    async fn pace(
        &self,
        i: usize,
        chunks: &mut Chunks,
        demand: &mut watch::Receiver<Demand>,
    ) -> Result<(), ReadError> {
        loop {
            let wanted = *demand.borrow_and_update();
            if !chunks.keeping || chunks.received < wanted.upto.saturating_add(self.cache.window) {
                return Ok(());
            }
            if wanted.layout {
                chunks.stop_keeping();
                return Ok(());
            }
            match tokio::time::timeout(self.cache.idle_walk(), demand.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => {
                    return Err(ReadError::Suspended {
                        object: self.ledger.data_key.clone(),
                        block: i,
                    });
                }
            }
        }
    }

    /// Puts the chunks of block `i` whose bytes are all checked into the cache, and tells the
    /// readers waiting for them.
    fn publish(&self, i: usize, chunks: &mut Chunks) {
        let mut published = None;
        while let Some(front) = chunks.full.front() {
            if chunks.published + front.len() as u64 > chunks.verified {
                break;
            }
            let data = chunks.full.pop_front().expect("a front chunk");
            chunks.published += data.len() as u64;
            self.cache.put(self.key(i, chunks.count), data);
            chunks.count += 1;
            published = Some(chunks.published);
        }
        if let Some(published) = published {
            self.progress[i].send_modify(|p| p.published = published);
        }
    }

    fn key(&self, block: usize, chunk: u64) -> BlockKey {
        BlockKey {
            object: Arc::clone(&self.object),
            index: ((block as u64) << 32) | chunk,
        }
    }

    /// Chunk `n` of block `i`'s payload: cached, or on its way in a walk, or fetched again
    /// through the layout (with the chunks after it, for a `sequential` reader).
    async fn chunk(
        self: &Arc<Self>,
        i: usize,
        n: u64,
        sequential: bool,
    ) -> Result<Bytes, ReadError> {
        let key = self.key(i, n);
        let mut missed = false;
        loop {
            if let Some(data) = self.cache.get(&key) {
                return Ok(data);
            }
            if !missed {
                self.cache.metrics.cache_misses.inc();
                missed = true;
            }
            if let Some(layout) = self.layouts[i].get().cloned() {
                if sequential {
                    self.ask(i, (n + 1) * CHUNK);
                    self.restream(i, n, &layout);
                    // A stream of the block that will come to this chunk soon brings it.
                    let ahead = self.cache.restream_ahead;
                    let _ = self.streaming[i]
                        .subscribe()
                        .wait_for(|next| next.is_none_or(|at| at > n || n >= at + ahead))
                        .await;
                }
                return self.refetched(i, n, &layout).await;
            }
            self.ask(i, (n + 1) * CHUNK);
            self.start_walk(i);
            let mut progress = self.progress[i].subscribe();
            let seen = progress
                .wait_for(|p| p.published > n * CHUNK || p.ended)
                .await
                .map(|p| p.clone())
                .unwrap_or_else(|_| Progress {
                    ended: true,
                    ..Progress::default()
                });
            if let Some(e) = seen.error {
                return Err(e);
            }
            if !seen.ended {
                // Published: in the cache, unless already evicted behind the walk; then the
                // walk's layout will say where to fetch it again.
                if let Some(data) = self.cache.get(&key) {
                    return Ok(data);
                }
                return self.refetch_behind_walk(i, n).await;
            }
            // The walk is over: it left a layout, or was given up (a new one starts).
        }
    }

    /// Chunk `n` of block `i`, whose layout is known, fetched again: by the GET already on its
    /// way for it, or by a new one that readers wanting it meanwhile share.
    async fn refetched(
        self: &Arc<Self>,
        i: usize,
        n: u64,
        layout: &Arc<Layout>,
    ) -> Result<Bytes, ReadError> {
        // A stream that fails drops the chunks it took on: their readers fetch them alone.
        for _ in 0..2 {
            let mut fetch = self.start_refetch(i, n, layout);
            if let Ok(done) = fetch.wait_for(Option::is_some).await {
                return done.clone().expect("waited for it");
            }
        }
        Err(ReadError::Store(StoreError::Other(format!(
            "the fetch of chunk {n} of block {i} was dropped twice"
        ))))
    }

    /// Takes chunk `n` of block `i` on for the caller to fetch, unless it is cached or on its
    /// way.
    fn claim_chunk(&self, i: usize, n: u64) -> Claim {
        let key = self.key(i, n);
        let mut refetching = self.refetching.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fetch) = refetching.get(&key.index) {
            return Claim::OnItsWay(fetch.clone());
        }
        if self.cache.holds(&key) {
            return Claim::Cached;
        }
        let (done, fetch) = watch::channel(None);
        refetching.insert(key.index, fetch);
        Claim::Taken(done)
    }

    /// Ends the fetch of chunk `n` of block `i` taken on with [`Self::claim_chunk`]: its result
    /// cached and handed to its readers, or (`None`) given up, for them to fetch it alone.
    fn settle_chunk(
        &self,
        i: usize,
        n: u64,
        done: Settle,
        result: Option<Result<Bytes, ReadError>>,
    ) {
        let key = self.key(i, n);
        if let Some(Ok(data)) = &result {
            self.cache.put(key.clone(), data.clone());
        }
        self.refetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key.index);
        if result.is_some() {
            done.send_replace(result);
        }
    }

    /// The fetch of chunk `n` of block `i` through `layout`, started unless it is on its way.
    fn start_refetch(self: &Arc<Self>, i: usize, n: u64, layout: &Arc<Layout>) -> Refetch {
        let done = loop {
            match self.claim_chunk(i, n) {
                Claim::Taken(done) => break done,
                Claim::OnItsWay(fetch) => return fetch,
                Claim::Cached => {
                    if let Some(data) = self.cache.get(&self.key(i, n)) {
                        return watch::channel(Some(Ok(data))).1;
                    }
                    // Evicted in between: claim it again.
                }
            }
        };
        let fetch = done.subscribe();
        let (this, layout) = (Arc::clone(self), Arc::clone(layout));
        self.cache.runtime.spawn(async move {
            let range = n * CHUNK..((n + 1) * CHUNK).min(layout.payload());
            let result = this.refetch(i, &layout, range).await;
            this.settle_chunk(i, n, done, Some(result));
        });
        fetch
    }

    /// A sequential reader at chunk `n` of walked block `i`: unless the block's next
    /// [`LedgerCache::restream_ahead`] chunks are all cached or on their way, the rest of the
    /// block is streamed again from the first that is not ([`Self::restream`]).
    fn stream_ahead(self: &Arc<Self>, i: usize, n: u64, layout: &Arc<Layout>) {
        if self.streaming[i].borrow().is_some() {
            return;
        }
        let chunks = layout.payload().div_ceil(CHUNK);
        let missing = (n + 1..(n + 1 + self.cache.restream_ahead).min(chunks)).find(|m| {
            let key = self.key(i, *m);
            !self.cache.holds(&key)
                && !self
                    .refetching
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(&key.index)
        });
        if let Some(m) = missing {
            self.restream(i, m, layout);
        }
    }

    /// Streams walked block `i` again from chunk `from` (taken on at once, so its reader waits
    /// for this stream) to the block's end, unless a stream of the block runs already.
    fn restream(self: &Arc<Self>, i: usize, from: u64, layout: &Arc<Layout>) {
        let started = self.streaming[i].send_if_modified(|next| {
            let idle = next.is_none();
            if idle {
                *next = Some(from + 1);
            }
            idle
        });
        if !started {
            return;
        }
        let first = self.claim_chunk(i, from).taken();
        let (this, layout) = (Arc::clone(self), Arc::clone(layout));
        self.cache.runtime.spawn(async move {
            let result = this.run_restream(i, from, first, &layout).await;
            this.streaming[i].send_replace(None);
            if let Err(e) = result {
                tracing::warn!(ledger = this.ledger.id, block = i, error = %e, "streaming a block again failed; its readers fetch its chunks alone");
            }
        });
    }

    /// The stream of [`Self::restream`]: chunk by chunk, each checked through the layout,
    /// cached and handed to its readers; paced by them (see the module doc); given up when no
    /// reader asks for more for [`IDLE_WALK`], and ended when its body stalls for a quarter of
    /// the read timeout or fails (the chunks it took on are then fetched by their readers
    /// alone). Chunks cached or fetched by someone else meanwhile are passed over.
    async fn run_restream(
        &self,
        i: usize,
        from: u64,
        mut first: Option<Settle>,
        layout: &Arc<Layout>,
    ) -> Result<(), ReadError> {
        let span = &self.spans[i];
        let chunks = layout.payload().div_ceil(CHUNK);
        let range_of = |m: u64| m * CHUNK..((m + 1) * CHUNK).min(layout.payload());
        let start = self.raw_span(layout, &range_of(from)).start;
        let end = self.raw_span(layout, &range_of(chunks - 1)).end;
        let mut demand = self.demand[i].subscribe();
        self.cache.metrics.get_requests.inc();
        let body = self
            .cache
            .store
            .get_range_stream(
                &self.object,
                span.physical.start + start..span.physical.start + end,
            )
            .await;
        let mut body = match body {
            Ok(body) => body,
            Err(e) => {
                self.cache.metrics.get_errors.inc();
                if let Some(done) = first.take() {
                    self.settle_chunk(i, from, done, None);
                }
                return Err(e.into());
            }
        };
        let mut pending = BytesMut::new();
        let mut at = start;
        let stall = self.cache.read_timeout / 4;
        for m in from..chunks {
            let claimed = match (m == from, first.take()) {
                (true, claimed) => claimed,
                (false, _) => {
                    let ahead = self.cache.restream_ahead * CHUNK;
                    let asked = tokio::time::timeout(
                        self.cache.idle_walk(),
                        demand.wait_for(|d| m * CHUNK < d.upto.saturating_add(ahead)),
                    )
                    .await;
                    if !matches!(asked, Ok(Ok(_))) {
                        return Ok(()); // no reader came this far: given up
                    }
                    let claimed = self.claim_chunk(i, m).taken();
                    self.streaming[i].send_replace(Some(m + 1));
                    claimed
                }
            };
            let raw = self.raw_span(layout, &range_of(m));
            if raw.start < at {
                // Chunks follow one another in the block; a layout that says otherwise is not
                // this block's.
                if let Some(done) = claimed {
                    self.settle_chunk(i, m, done, None);
                }
                return Err(self.structure(
                    span.physical.start + raw.start,
                    "the block's walked entries overlap",
                ));
            }
            let taken = async {
                while (pending.len() as u64) < raw.end - at {
                    // A body that stalls ends the stream: its readers then fetch alone.
                    let Ok(next) = tokio::time::timeout(stall, body.recv()).await else {
                        return Err(ReadError::Store(StoreError::Transient(format!(
                            "{}: the body stalled for {stall:?}",
                            self.object
                        ))));
                    };
                    match next {
                        Some(Ok(bytes)) => {
                            self.cache.metrics.get_bytes.inc_by(bytes.len() as u64);
                            pending.extend_from_slice(&bytes);
                        }
                        Some(Err(e)) => {
                            self.cache.metrics.get_errors.inc();
                            return Err(ReadError::from(e));
                        }
                        None => {
                            return Err(self.structure(
                                span.physical.start + at,
                                "the block's body ended before its walked entries did",
                            ));
                        }
                    }
                }
                let skip = (raw.start - at) as usize;
                let _ = pending.split_to(skip);
                let bytes = pending.split_to((raw.end - raw.start) as usize).freeze();
                Ok(bytes)
            }
            .await;
            at = raw.end;
            let bytes = match taken {
                Ok(bytes) => bytes,
                Err(e) => {
                    if let Some(done) = claimed {
                        self.settle_chunk(i, m, done, None);
                    }
                    return Err(e);
                }
            };
            if let Some(done) = claimed {
                let result = self.extract(i, layout, range_of(m), &bytes, raw.start);
                let failed = result.as_ref().err().cloned();
                self.settle_chunk(i, m, done, Some(result));
                if let Some(e) = failed {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Chunk `n` of block `i`, published by the walk in progress and evicted since: fetched
    /// again through the entries the walk has checked so far.
    async fn refetch_behind_walk(self: &Arc<Self>, i: usize, n: u64) -> Result<Bytes, ReadError> {
        let partial = Layout {
            ends: self.partial[i]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        };
        let layout = match partial.payload() > n * CHUNK {
            true => Arc::new(partial),
            // The walk ended meanwhile and took its entries into its layout.
            false => self.walked(i).await?,
        };
        let range = n * CHUNK..((n + 1) * CHUNK).min(layout.payload());
        let data = self.refetch(i, &layout, range).await?;
        self.cache.put(self.key(i, n), data.clone());
        Ok(data)
    }

    /// Payload bytes `range` of block `i`, by one ranged GET of just the bytes that hold them;
    /// every entry header inside must match the layout.
    async fn refetch(
        &self,
        i: usize,
        layout: &Layout,
        range: Range<u64>,
    ) -> Result<Bytes, ReadError> {
        let span = &self.spans[i];
        let raw = self.raw_span(layout, &range);
        let physical = span.physical.start + raw.start..span.physical.start + raw.end;
        let bytes = self.cache.get_range(&self.object, physical).await?;
        self.extract(i, layout, range, &bytes, raw.start)
    }

    /// The bytes of block `i` (from its start) that hold payload `range`: from the header of
    /// the entry it starts in when it starts where that entry does (to check the header),
    /// to its last byte.
    fn raw_span(&self, layout: &Layout, range: &Range<u64>) -> Range<u64> {
        let (payload_at, first) = layout.physical(range.start);
        let at_entry = range.start == layout.ends[first] - layout.len_of(first);
        let from = payload_at - if at_entry { ENTRY_RECORD_HEADER } else { 0 };
        let (last_byte, _) = layout.physical(range.end - 1);
        from..last_byte + 1
    }

    /// Payload `range` of block `i` out of `raw`, its bytes from `from` on (see
    /// [`Self::raw_span`]); every entry header inside must say what the walk found.
    fn extract(
        &self,
        i: usize,
        layout: &Layout,
        range: Range<u64>,
        raw: &[u8],
        from: u64,
    ) -> Result<Bytes, ReadError> {
        let span = &self.spans[i];
        let (_, first) = layout.physical(range.start);
        let at_entry = range.start == layout.ends[first] - layout.len_of(first);
        let physical = span.physical.start + from;
        let mut out = self.cache.pool.take();
        let mut x = range.start;
        let mut k = first;
        while x < range.end {
            let entry_start = layout.ends[k] - layout.len_of(k);
            if x == entry_start && (x != range.start || at_entry) {
                // An entry header lies just before this byte: it must say what the walk found.
                let at = (BLOCK_HEADER_LEN + ENTRY_RECORD_HEADER * k as u64 + entry_start - from)
                    as usize;
                let header = &raw[at..at + ENTRY_RECORD_HEADER as usize];
                let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
                let id = u64::from_be_bytes(header[4..].try_into().expect("8 bytes"));
                let (want_len, want_id) = (layout.len_of(k), span.first_entry + k as u64);
                if u64::from(len) != want_len || id != want_id {
                    return Err(self.structure(
                        physical + at as u64,
                        format!(
                            "entry record says entry {id} of {len} bytes; entry {want_id} of {want_len} bytes was walked there"
                        ),
                    ));
                }
            }
            let upto = layout.ends[k].min(range.end);
            let (p, _) = layout.physical(x);
            let at = (p - from) as usize;
            out.extend_from_slice(&raw[at..at + (upto - x) as usize]);
            x = upto;
            k += 1;
        }
        Ok(self.cache.pool.freeze(out))
    }

    /// Every entry's length, in order (walking every block not walked yet): where each entry
    /// of the ledger file starts and ends.
    pub async fn entry_lengths(self: &Arc<Self>) -> Result<Vec<u64>, ReadError> {
        let mut lengths = Vec::with_capacity(self.ledger.entries as usize);
        for i in 0..self.spans.len() {
            let layout = self.timed(self.walked(i)).await?;
            lengths.extend((0..layout.ends.len()).map(|k| layout.len_of(k)));
        }
        Ok(lengths)
    }

    /// Entry lengths for entries `first..first + count` only (walking just their blocks).
    pub async fn lengths_of(
        self: &Arc<Self>,
        first: u64,
        count: u64,
    ) -> Result<Vec<u64>, ReadError> {
        let mut out = Vec::with_capacity(count as usize);
        let end = first + count;
        for (i, span) in self.spans.iter().enumerate() {
            let span_end = span.first_entry + span.entries;
            if span_end <= first || span.first_entry >= end {
                continue;
            }
            let layout = self.timed(self.walked(i)).await?;
            for id in first.max(span.first_entry)..end.min(span_end) {
                out.push(layout.len_of((id - span.first_entry) as usize));
            }
        }
        Ok(out)
    }
}
