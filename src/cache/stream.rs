//! Sequential read-ahead as one streamed GET per reader.
//!
//! Read-ahead for a sequential reader does not send a ranged GET per window: once the reader's
//! window has grown to the full and it has read that far, the next window it fetches opens one
//! GET from its first block to the end of the segment (before that, a first read or a short
//! one such as `head`'s would only pay for a long GET's sends competing with its own), and
//! every later
//! window of the same reader that continues where the last one ended is handed to that GET
//! (a *batch*: the window's blocks, claimed, with their share of the in-flight budget). The
//! stream task reads the body block by block and answers each block as soon as its bytes are
//! in and its CRC32C checks out, so a reader waits for one block, not for a whole GET, and
//! the store streams at the speed of one long download instead of paying a request's start
//! for every few MiB.
//!
//! The GET is paced by its reader: the task reads the body only for the blocks it was handed.
//! When it has none, it stops reading; the store's sends then stall on TCP flow control, so
//! what is fetched ahead stays within the read-ahead window and the in-flight budget (plus
//! the few frames the store client buffers). A stream handed nothing for [`STREAM_IDLE`] is
//! closed; so is one whose reader jumped (the next window starts a new GET where it is).
//!
//! Faults: a body that fails, ends early or stalls for a quarter of the read timeout (as does
//! a GET that has not answered by then) closes the stream and
//! abandons the blocks it was handed; their readers fetch them again themselves, with retries
//! ([`super::Cache`]'s own GETs). A block that fails its CRC32C is refused as any other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::{debug, warn};

use super::{Cache, Flights, Keep, RemoteObject};
use crate::buffer_pool::BufferPool;
use crate::offload::IndexObject;
use crate::store::StoreError;

/// A stream handed no blocks for this long is closed (sooner in unit tests, which wait for it).
pub const STREAM_IDLE: Duration = if cfg!(test) {
    Duration::from_millis(200)
} else {
    Duration::from_secs(2)
};

/// A number unique in the process: names a reader (an open file's read-ahead state) and each
/// stream it opens.
pub fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A window's blocks handed to a stream, with the in-flight budget they hold until answered.
struct Batch {
    flights: Flights,
    _permit: OwnedSemaphorePermit,
}

/// A reader's open stream, as read-ahead sees it.
struct Handle {
    /// Tells this stream from the reader's earlier and later ones.
    stream: u64,
    object: Arc<str>,
    /// The block after the last one handed to the stream: the next batch must start here.
    next: u64,
    batches: mpsc::UnboundedSender<Batch>,
}

/// The open streams, one per sequential reader at most.
#[derive(Default)]
pub(super) struct Streams {
    by_reader: Mutex<HashMap<u64, Handle>>,
}

impl Streams {
    /// Claims `run` of `object` and hands it to `reader`'s stream, opening one (from the run's
    /// first block to the segment's end) unless the reader's stream continues right there.
    pub(super) fn feed(
        &self,
        cache: &Arc<Cache>,
        reader: u64,
        object: &RemoteObject,
        index: &Arc<IndexObject>,
        run: std::ops::Range<u64>,
        permit: OwnedSemaphorePermit,
    ) {
        let mut streams = self.by_reader.lock().unwrap_or_else(|p| p.into_inner());
        let flights = cache.claim(object, run);
        let Some(first) = flights.senders.first().map(|(key, _)| key.index) else {
            return;
        };
        let next = first + flights.senders.len() as u64;
        let mut batch = Batch {
            flights,
            _permit: permit,
        };
        if let Some(handle) = streams.get_mut(&reader)
            && handle.object == object.data_key
            && handle.next == first
        {
            match handle.batches.send(batch) {
                Ok(()) => {
                    handle.next = next;
                    return;
                }
                // The stream ended meanwhile (idle, or its GET failed): open another.
                Err(mpsc::error::SendError(returned)) => batch = returned,
            }
        }
        let (batches, queue) = mpsc::unbounded_channel();
        let _ = batches.send(batch);
        let stream = next_id();
        // A stream this replaces ends once it has answered what it was handed.
        streams.insert(
            reader,
            Handle {
                stream,
                object: Arc::clone(&object.data_key),
                next,
                batches,
            },
        );
        let closing = Closing {
            cache: Arc::clone(cache),
            reader,
            stream,
        };
        let (cache, object, index) = (Arc::clone(cache), object.clone(), Arc::clone(index));
        tokio::spawn(async move {
            let _closing = closing;
            stream_blocks(cache, object, index, first, queue).await
        });
    }

    /// Streams open now.
    #[cfg(test)]
    pub(super) fn open(&self) -> usize {
        self.by_reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

/// Forgets a stream's handle when its task ends, however it ends, unless a newer stream of the
/// same reader has taken its place.
struct Closing {
    cache: Arc<Cache>,
    reader: u64,
    stream: u64,
}

impl Drop for Closing {
    fn drop(&mut self) {
        let mut streams = self
            .cache
            .streams
            .by_reader
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if streams
            .get(&self.reader)
            .is_some_and(|handle| handle.stream == self.stream)
        {
            streams.remove(&self.reader);
        }
    }
}

/// One streamed GET of `object` from block `first` to its end, answering the blocks of each
/// batch it is handed, in order, as their bytes arrive.
async fn stream_blocks(
    cache: Arc<Cache>,
    object: RemoteObject,
    index: Arc<IndexObject>,
    first: u64,
    mut queue: mpsc::UnboundedReceiver<Batch>,
) {
    let block = u64::from(index.block_size).max(1);
    let range = first * block..object.size;
    // A quarter of the read timeout: a stream that stalls gives its blocks up while their
    // readers still have time to fetch them themselves, with retries.
    let timeout = cache.config.read_timeout / 4;
    cache.metrics.readahead_streams.inc();
    let opened = open_stream(&cache, &object.data_key, range.clone(), timeout).await;
    let mut body = match opened {
        Ok(body) => body,
        Err(e) => {
            cache.metrics.get_errors.inc();
            // Dropping the queue abandons its blocks: their readers fetch them themselves.
            warn!(object = %object.data_key, range = ?range, error = %e, "streamed read-ahead GET failed; readers fetch its blocks themselves");
            return;
        }
    };
    let mut body = Body::new(&mut body, timeout, cache.block_pool(block as usize));
    let mut at = first;
    while let Ok(Some(mut batch)) = tokio::time::timeout(STREAM_IDLE, queue.recv()).await {
        while let Some(index_of_next) = batch.flights.senders.first().map(|(key, _)| key.index) {
            if index_of_next != at {
                // Never handed a block out of order (see [`Streams::feed`]); if it were, the
                // body is not there: abandon the batch rather than misplace bytes.
                warn!(object = %object.data_key, block = index_of_next, at, "a streamed read-ahead was handed a block out of order");
                return;
            }
            let len = (object.size - at * block).min(block) as usize;
            let data = match body.next_block(len).await {
                Ok(data) => data,
                Err(e) => {
                    cache.metrics.get_errors.inc();
                    warn!(object = %object.data_key, block = at, error = %e, "streamed read-ahead GET broke off; readers fetch its blocks themselves");
                    return;
                }
            };
            cache.metrics.get_bytes.inc_by(len as u64);
            let (key, tx) = batch.flights.senders.remove(0);
            let verdict = cache.verify(&key, &index, data, Keep::InMemory);
            cache.answer(&key, &tx, verdict);
            at += 1;
        }
        if at * block >= object.size {
            break; // the segment's last block is answered: nothing more can come
        }
    }
    debug!(object = %object.data_key, at, "streamed read-ahead closed");
}

/// Opens a streamed GET of bytes `range` of `key`, counted as a request with its latency; a
/// store that has not answered within `timeout` is a transient error.
pub(super) async fn open_stream(
    cache: &Cache,
    key: &str,
    range: std::ops::Range<u64>,
    timeout: Duration,
) -> Result<mpsc::Receiver<Result<Bytes, StoreError>>, StoreError> {
    cache.metrics.get_requests.inc();
    let started = Instant::now();
    let opened = tokio::time::timeout(timeout, cache.store.get_range_stream(key, range))
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Transient(format!(
                "no answer within {} ms",
                timeout.as_millis()
            )))
        });
    cache
        .metrics
        .get_latency
        .observe(started.elapsed().as_secs_f64());
    opened
}

/// A GET's body, cut into blocks.
pub(super) struct Body<'a> {
    frames: &'a mut mpsc::Receiver<Result<Bytes, StoreError>>,
    /// Bytes of the last frame past the block they came with.
    carry: Bytes,
    timeout: Duration,
    /// Where block buffers come from (see [`BufferPool`]).
    pool: Arc<BufferPool>,
}

impl<'a> Body<'a> {
    /// The body arriving as `frames`, each frame awaited at most `timeout`.
    pub(super) fn new(
        frames: &'a mut mpsc::Receiver<Result<Bytes, StoreError>>,
        timeout: Duration,
        pool: Arc<BufferPool>,
    ) -> Self {
        Self {
            frames,
            carry: Bytes::new(),
            timeout,
            pool,
        }
    }

    /// Passes over the next `len` bytes.
    pub(super) async fn skip(&mut self, mut len: usize) -> Result<(), StoreError> {
        while len > 0 {
            if self.carry.is_empty() {
                self.carry = self.next_frame(len).await?;
            }
            let take = len.min(self.carry.len());
            let _ = self.carry.split_to(take);
            len -= take;
        }
        Ok(())
    }

    /// The body's next frame; `missing` bytes of the block being read are still to come.
    async fn next_frame(&mut self, missing: usize) -> Result<Bytes, StoreError> {
        match tokio::time::timeout(self.timeout, self.frames.recv()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => Err(StoreError::Transient(format!(
                "the body ended {missing} bytes short of a block"
            ))),
            Err(_) => Err(StoreError::Transient(format!(
                "the body stalled for {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    /// The next `len` bytes, in one buffer of their own (so the cache's byte count is the
    /// memory it holds), recycled from a block evicted before when there is one.
    pub(super) async fn next_block(&mut self, len: usize) -> Result<Bytes, StoreError> {
        let mut buf = self.pool.take();
        while buf.len() < len {
            if self.carry.is_empty() {
                self.carry = self.next_frame(len - buf.len()).await?;
            }
            let take = (len - buf.len()).min(self.carry.len());
            buf.extend_from_slice(&self.carry.split_to(take));
        }
        Ok(self.pool.freeze(buf))
    }
}
