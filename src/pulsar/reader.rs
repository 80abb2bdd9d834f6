//! Reads a ledger file of a `--pulsar` mount: the ledger's entries, concatenated, out of the
//! data object's blocks, every block checked structurally before a byte of it is served.
//!
//! The ledger file's bytes are the blocks' entry bytes with block headers, entry framing
//! (`[i32 length][i64 entryId]`) and padding removed. Where block `i`'s bytes start in the file
//! depends on how many payload bytes the blocks before it hold, which their framing and padding
//! decide. So:
//!
//! - A block is **walked** the first time any byte of it is needed: one ranged GET of the whole
//!   block, checked by [`entries_of_block`] (magic, header and block lengths, first entry id
//!   against the index, consecutive entry ids, lengths adding up, padding). Its entry lengths
//!   (its *layout*, 4 bytes an entry) are kept for the life of the mount, and its payload goes
//!   into the memory cache in chunks of [`CHUNK`] bytes.
//! - Where the blocks carry no padding at all (the index and the ledger's length say so: the
//!   data object is exactly headers, framing and entries), every block's place is known
//!   without walking; otherwise a block's place is known once the blocks before it are walked.
//! - A chunk evicted from the memory cache is fetched again by one ranged GET of just its bytes,
//!   mapped through the layout; every entry header inside the range must say the length and id
//!   the walk found.
//! - A sequential reader of block `i` has block `i + 1` walked in the background.
//!
//! Any mismatch is [`ReadError::Structure`], naming the object and the offset: EIO at the
//! mount, and a log line, never wrong bytes. Pulsar's blocks carry no checksum of their own;
//! entries that carry a CRC32C (magic `0x0e01`) are checked by `tierfs pulsar verify`.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::OnceCell;
use tracing::error;

use super::bucket::{Ledger, VERSION_KEY};
use super::offload_format::{
    BLOCK_HEADER_LEN, ENTRY_RECORD_HEADER, FORMAT_VERSION, entries_of_block,
};
use crate::cache::{BlockKey, MemoryCache};
use crate::metrics::Metrics;
use crate::store::{ObjectStore, StoreError};

/// Bytes of ledger payload per cached chunk.
pub const CHUNK: u64 = 1 << 20;

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
}

/// The memory every ledger of a mount shares: payload chunks, bounded in bytes.
#[derive(Debug)]
pub struct LedgerCache {
    store: Arc<dyn ObjectStore>,
    memory: Mutex<MemoryCache>,
    metrics: Arc<Metrics>,
    read_timeout: Duration,
}

impl LedgerCache {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        memory_bytes: u64,
        read_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            memory: Mutex::new(MemoryCache::new(memory_bytes)),
            metrics,
            read_timeout,
        })
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
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

/// A ledger's reader, shared by every open handle of its file.
#[derive(Debug)]
pub struct LedgerReader {
    ledger: Arc<Ledger>,
    cache: Arc<LedgerCache>,
    object: Arc<str>,
    spans: Vec<Span>,
    layouts: Vec<OnceCell<Arc<Layout>>>,
    /// A background walk of block `i` was asked for (asked once, whoever reads).
    ahead: Vec<std::sync::atomic::AtomicBool>,
    /// A block found malformed stays so (its objects never change): refused at once after.
    failed: Vec<Mutex<Option<ReadError>>>,
    /// Block `i`'s payload length, known without a walk when the blocks carry no padding.
    unpadded: Option<Vec<u64>>,
    version: OnceCell<()>,
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
            spans.push(Span {
                physical,
                first_entry: *ids.start(),
                entries: ids.end() - ids.start() + 1,
            });
        }
        let framing: u64 = spans
            .iter()
            .map(|s| BLOCK_HEADER_LEN + ENTRY_RECORD_HEADER * s.entries)
            .sum();
        let unpadded = (framing.checked_add(ledger.length) == Some(ledger.data_size)).then(|| {
            spans
                .iter()
                .map(|s| {
                    (s.physical.end - s.physical.start)
                        .saturating_sub(BLOCK_HEADER_LEN + ENTRY_RECORD_HEADER * s.entries)
                })
                .collect()
        });
        Ok(Self {
            layouts: spans.iter().map(|_| OnceCell::new()).collect(),
            failed: spans.iter().map(|_| Mutex::new(None)).collect(),
            ahead: spans
                .iter()
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
            spans,
            unpadded,
            version: OnceCell::new(),
            object,
            cache,
            ledger,
        })
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
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

    /// Reads `[offset, offset + len)` of the ledger file. `sequential`: the reader goes on
    /// where it stopped, so the next block is walked ahead of it.
    pub async fn read(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        sequential: bool,
    ) -> Result<Bytes, ReadError> {
        let seconds = self.cache.read_timeout.as_secs();
        tokio::time::timeout(
            self.cache.read_timeout,
            self.read_inner(offset, len, sequential),
        )
        .await
        .unwrap_or_else(|_| {
            Err(ReadError::Timeout {
                object: self.ledger.data_key.clone(),
                seconds,
            })
        })
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
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        let mut pos = offset;
        let mut last_block = 0;
        while pos < end {
            let (i, start, payload) = self.locate(pos).await?;
            last_block = i;
            let chunk = (pos - start) / CHUNK;
            let data = self.chunk(i, chunk, payload).await?;
            let chunk_start = start + chunk * CHUNK;
            let from = (pos - chunk_start) as usize;
            let to = ((end - chunk_start) as usize).min(data.len());
            if from >= to {
                return Err(self.structure(
                    self.spans[i].physical.start,
                    format!("the block's payload ends before ledger byte {pos}"),
                ));
            }
            if out.is_empty() && pos == offset && to - from == (end - offset) as usize {
                // Within one chunk: a view of the cached bytes, no copy.
                self.read_ahead(i, sequential);
                return Ok(data.slice(from..to));
            }
            out.extend_from_slice(&data[from..to]);
            pos += (to - from) as u64;
        }
        self.read_ahead(last_block, sequential);
        Ok(out.freeze())
    }

    /// Has the block after `i` walked in the background, for a sequential reader.
    fn read_ahead(self: &Arc<Self>, i: usize, sequential: bool) {
        let next = i + 1;
        if !sequential
            || next >= self.spans.len()
            || self.layouts[next].initialized()
            || self.ahead[next].swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = this.layout(next).await {
                tracing::warn!(ledger = this.ledger.id, block = next, error = %e, "read-ahead walk failed");
            }
        });
    }

    /// The block holding ledger byte `pos`: its number, where its payload starts in the file,
    /// and the payload's length.
    async fn locate(&self, pos: u64) -> Result<(usize, u64, u64), ReadError> {
        let mut start = 0;
        for i in 0..self.spans.len() {
            let payload = match (&self.unpadded, self.layouts[i].get()) {
                (_, Some(layout)) => layout.payload(),
                (Some(lengths), None) => lengths[i],
                (None, None) => self.layout(i).await?.payload(),
            };
            if pos < start + payload {
                return Ok((i, start, payload));
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

    /// Block `i`'s layout, walking the block if no one has.
    async fn layout(&self, i: usize) -> Result<Arc<Layout>, ReadError> {
        let failed = |slot: &Mutex<Option<ReadError>>| {
            slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
        };
        if let Some(e) = failed(&self.failed[i]) {
            return Err(e);
        }
        match self.layouts[i].get_or_try_init(|| self.walk(i)).await {
            Ok(layout) => Ok(Arc::clone(layout)),
            Err(e) => {
                if matches!(e, ReadError::Structure { .. } | ReadError::Version { .. }) {
                    *self.failed[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    /// Fetches block `i` whole, checks it, keeps its payload in the cache, returns its layout.
    async fn walk(&self, i: usize) -> Result<Arc<Layout>, ReadError> {
        self.check_version().await?;
        let span = &self.spans[i];
        let block = self
            .cache
            .get_range(&self.object, span.physical.clone())
            .await?;
        let last = span.first_entry + span.entries - 1;
        let entries = entries_of_block(&block, span.first_entry, last)
            .map_err(|e| self.structure(span.physical.start, e.to_string()))?;
        let mut ends = Vec::with_capacity(entries.len());
        let mut total = 0;
        for entry in &entries {
            total += entry.len;
            ends.push(total);
        }
        let layout = Layout { ends };
        if let Some(lengths) = &self.unpadded
            && lengths[i] != layout.payload()
        {
            return Err(self.structure(
                span.physical.start,
                format!(
                    "the block holds {} bytes of entries; its size says {}",
                    layout.payload(),
                    lengths[i]
                ),
            ));
        }
        // The payload, in chunks, each its own buffer.
        let mut chunk = BytesMut::with_capacity(CHUNK.min(layout.payload()) as usize);
        let mut n = 0;
        for entry in &entries {
            let mut bytes = &block[entry.offset as usize..(entry.offset + entry.len) as usize];
            while !bytes.is_empty() {
                let room = CHUNK as usize - chunk.len();
                let take = room.min(bytes.len());
                chunk.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if chunk.len() as u64 == CHUNK {
                    self.cache.put(self.key(i, n), chunk.split().freeze());
                    n += 1;
                }
            }
        }
        if !chunk.is_empty() {
            self.cache.put(self.key(i, n), chunk.freeze());
        }
        Ok(Arc::new(layout))
    }

    /// The data object must say format version 1, as Pulsar's own readers require.
    async fn check_version(&self) -> Result<(), ReadError> {
        self.version
            .get_or_try_init(|| async {
                let head = self.cache.store.head_with_metadata(&self.object).await?;
                let Some((size, metadata)) = head else {
                    return Err(StoreError::NotFound(self.object.to_string()).into());
                };
                let version = metadata.get(VERSION_KEY).map(String::as_str);
                if version != Some(FORMAT_VERSION) || size != self.ledger.data_size {
                    return Err(ReadError::Version {
                        object: self.object.to_string(),
                        reason: format!(
                            "format version {version:?} and {size} bytes; format \"{FORMAT_VERSION}\" and {} bytes expected",
                            self.ledger.data_size
                        ),
                    });
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn key(&self, block: usize, chunk: u64) -> BlockKey {
        BlockKey {
            object: Arc::clone(&self.object),
            index: ((block as u64) << 32) | chunk,
        }
    }

    /// Chunk `n` of block `i`'s payload (`payload` bytes long): cached, or walked, or fetched
    /// again through the layout.
    async fn chunk(&self, i: usize, n: u64, payload: u64) -> Result<Bytes, ReadError> {
        let key = self.key(i, n);
        if let Some(data) = self.cache.get(&key) {
            return Ok(data);
        }
        self.cache.metrics.cache_misses.inc();
        let walked_now = !self.layouts[i].initialized();
        let layout = self.layout(i).await?;
        if walked_now && let Some(data) = self.cache.get(&key) {
            return Ok(data);
        }
        let range = n * CHUNK..((n + 1) * CHUNK).min(payload);
        let data = self.refetch(i, &layout, range).await?;
        self.cache.put(key, data.clone());
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
        let (from, first) = layout.physical(range.start);
        let (last_byte, _) = layout.physical(range.end - 1);
        let physical = span.physical.start + from..span.physical.start + last_byte + 1;
        let raw = self.cache.get_range(&self.object, physical.clone()).await?;
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        let mut x = range.start;
        let mut k = first;
        while x < range.end {
            let entry_start = layout.ends[k] - layout.len_of(k);
            if x == entry_start && x != range.start {
                // An entry header lies just before this byte: it must say what the walk found.
                let at = (BLOCK_HEADER_LEN + ENTRY_RECORD_HEADER * k as u64 + entry_start - from)
                    as usize;
                let header = &raw[at..at + ENTRY_RECORD_HEADER as usize];
                let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
                let id = u64::from_be_bytes(header[4..].try_into().expect("8 bytes"));
                let (want_len, want_id) = (layout.len_of(k), span.first_entry + k as u64);
                if u64::from(len) != want_len || id != want_id {
                    return Err(self.structure(
                        physical.start + at as u64,
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
        Ok(out.freeze())
    }

    /// Every entry's length, in order (walking every block not walked yet): where each entry
    /// of the ledger file starts and ends.
    pub async fn entry_lengths(&self) -> Result<Vec<u64>, ReadError> {
        let mut lengths = Vec::with_capacity(self.ledger.entries as usize);
        for i in 0..self.spans.len() {
            let layout = self.layout(i).await?;
            lengths.extend((0..layout.ends.len()).map(|k| layout.len_of(k)));
        }
        Ok(lengths)
    }

    /// Entry lengths for entries `first..first + count` only (walking just their blocks).
    pub async fn lengths_of(&self, first: u64, count: u64) -> Result<Vec<u64>, ReadError> {
        let mut out = Vec::with_capacity(count as usize);
        let end = first + count;
        for (i, span) in self.spans.iter().enumerate() {
            let span_end = span.first_entry + span.entries;
            if span_end <= first || span.first_entry >= end {
                continue;
            }
            let layout = self.layout(i).await?;
            for id in first.max(span.first_entry)..end.min(span_end) {
                out.push(layout.len_of((id - span.first_entry) as usize));
            }
        }
        Ok(out)
    }
}
