//! Fetching a whole segment read at random ("hydration"), as s3fs does on open, but in the
//! background and block by block.
//!
//! When a reader's reads keep jumping ([`super::readahead`] decides when) and its segment fits
//! in half the cache, the segment is fetched by [`STREAMS`] streamed GETs at once, each over
//! its own contiguous part of the segment (one long GET per part: the store serves several
//! streams faster than one, and faster than a ranged GET per few MiB). A stream reads its body
//! block by block; each block is checked against the index object's CRC32C, kept in the memory
//! cache and on disk, and answered to whoever waits for it as soon as its bytes are in, so a
//! reader waits for one block, never for a whole GET. Reads go on meanwhile: the first reads
//! of a segment never wait for its hydration.
//!
//! Claims: a stream claims the block it reads next and the one after ([`CLAIM_AHEAD`]), each
//! holding its share of the in-flight budget until answered, so a reader that wants one of them
//! waits for the stream instead of sending a GET of its own; a reader that wants a block no
//! stream has claimed yet fetches it itself. A stream that reaches a block somebody else holds
//! (cached in memory or verified on disk, or claimed by another fetch) passes over its bytes;
//! when the next block it has to fetch is further than [`SKIP_BLOCKS`] blocks away, it closes
//! its GET and opens another there. A segment is hydrated by one reader at a time.
//!
//! Faults: a body that fails, ends early or stalls for a quarter of the read timeout closes
//! its stream and abandons the blocks it claimed (their readers fetch them themselves, with
//! retries); the stream starts again at the first block of its part still missing, after
//! 100 ms, 200 ms, …, up to [`ATTEMPTS`] times in a row without a block fetched. A block
//! that fails its CRC32C is refused (EIO to its reader, as any other).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};

use super::stream::{Body, open_stream};
use super::{Answer, BUDGET_UNIT, BlockKey, Cache, Keep, RemoteObject};
use crate::offload::IndexObject;
use crate::store::StoreError;

/// Streamed GETs that fetch one segment at once. Against Garage on loopback, one GET streams
/// about 400 MiB/s; four in parallel about 650 (boto3, 128 MiB in four parts).
pub const STREAMS: u64 = 4;
/// Blocks a stream claims ahead of its body, the one it reads included.
const CLAIM_AHEAD: usize = 2;
/// A gap of blocks held by others longer than this closes the stream's GET and opens another
/// past it, instead of passing over the gap's bytes.
const SKIP_BLOCKS: u64 = 4;
/// GETs of a part that fail in a row, none fetching a block, before its remaining blocks are
/// left to their readers.
const ATTEMPTS: u32 = 4;

/// Starts fetching every block of `object` that is missing, unless its hydration runs already.
pub(super) fn hydrate(cache: &Arc<Cache>, object: &RemoteObject, index: &Arc<IndexObject>) {
    {
        let mut hydrating = cache.hydrating.lock().unwrap_or_else(|p| p.into_inner());
        if !hydrating.insert(Arc::clone(&object.data_key)) {
            return;
        }
    }
    cache.metrics.hydrations.inc();
    let block = u64::from(index.block_size).max(1);
    let blocks = object.size.div_ceil(block);
    let per_part = blocks.div_ceil(STREAMS).max(1);
    let parts = Arc::new(Hydration {
        cache: Arc::clone(cache),
        object: Arc::clone(&object.data_key),
    });
    for start in (0..blocks).step_by(per_part as usize) {
        let part = start..(start + per_part).min(blocks);
        let (cache, object, index, hydration) = (
            Arc::clone(cache),
            object.clone(),
            Arc::clone(index),
            Arc::clone(&parts),
        );
        tokio::spawn(async move {
            let _running = hydration;
            hydrate_part(&cache, &object, &index, part).await;
        });
    }
}

/// Marks a segment's hydration as over once its last part's task has ended, however it ended.
struct Hydration {
    cache: Arc<Cache>,
    object: Arc<str>,
}

impl Drop for Hydration {
    fn drop(&mut self) {
        self.cache
            .hydrating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.object);
    }
}

/// Fetches the missing blocks of `part`, one streamed GET after another (after a gap, or a
/// fault).
async fn hydrate_part(
    cache: &Arc<Cache>,
    object: &RemoteObject,
    index: &Arc<IndexObject>,
    part: Range<u64>,
) {
    let mut at = part.start;
    let mut failures = 0;
    while let Some(first) = cache.first_missing(object, at..part.end) {
        match stream_part(cache, object, index, first..part.end).await {
            Ok(next) => at = next,
            Err((next, e)) => {
                cache.metrics.get_errors.inc();
                // Attempts count while they make no progress.
                if next > first {
                    failures = 0;
                }
                failures += 1;
                if failures >= ATTEMPTS {
                    warn!(object = %object.data_key, block = next, error = %e, "fetching a segment read at random failed; its readers fetch the rest themselves");
                    return;
                }
                warn!(object = %object.data_key, block = next, error = %e, "a GET fetching a segment read at random broke off; trying again");
                tokio::time::sleep(Duration::from_millis(100 << (failures - 1))).await;
                at = next;
            }
        }
    }
}

/// A claimed block waiting for its bytes, with its share of the in-flight budget.
struct Claimed {
    key: BlockKey,
    tx: Answer,
    _permit: OwnedSemaphorePermit,
}

/// One streamed GET over `range` (blocks), starting at its first block, which is missing.
/// Returns where the part goes on: its end, or the next missing block past a gap (the GET is
/// closed there); on a fault, the first block not fetched and the error.
async fn stream_part(
    cache: &Arc<Cache>,
    object: &RemoteObject,
    index: &Arc<IndexObject>,
    range: Range<u64>,
) -> Result<u64, (u64, StoreError)> {
    let block = u64::from(index.block_size).max(1);
    let bytes = range.start * block..(range.end * block).min(object.size);
    let timeout = cache.config.read_timeout / 4;
    let mut frames = open_stream(cache, &object.data_key, bytes, timeout)
        .await
        .map_err(|e| (range.start, e))?;
    let mut body = Body::new(&mut frames, timeout, cache.block_pool(block as usize));
    let units = block.div_ceil(BUDGET_UNIT).min(cache.budget_units()) as u32;
    // Blocks claimed ahead of the body, in order; `next_claim` is the first not yet tried.
    let mut claimed: VecDeque<Claimed> = VecDeque::new();
    let mut next_claim = range.start;
    let mut at = range.start;
    while at < range.end {
        while claimed.len() < CLAIM_AHEAD
            && next_claim < range.end
            && next_claim <= at + SKIP_BLOCKS
        {
            if cache.held(object, next_claim) {
                if claimed.is_empty() && next_claim == at {
                    break; // `at` is somebody else's: pass over it below
                }
                next_claim += 1;
                continue;
            }
            // Only a stream that holds no claim waits for budget: one that waited holding
            // some could wait for itself (a block as large as the whole budget).
            let permit = if claimed.is_empty() {
                match Arc::clone(&cache.budget).acquire_many_owned(units).await {
                    Ok(permit) => permit,
                    Err(_) => return Ok(range.end), // the cache is going away
                }
            } else {
                match Arc::clone(&cache.budget).try_acquire_many_owned(units) {
                    Ok(permit) => permit,
                    Err(_) => break,
                }
            };
            let mut flights = cache.claim(object, next_claim..next_claim + 1);
            if let Some((key, tx)) = flights.senders.pop() {
                claimed.push_back(Claimed {
                    key,
                    tx,
                    _permit: permit,
                });
            }
            next_claim += 1;
        }
        let len = (object.size - at * block).min(block) as usize;
        match claimed.front() {
            Some(next) if next.key.index == at => {
                let data = match body.next_block(len).await {
                    Ok(data) => data,
                    Err(e) => {
                        abandon(cache, &object.data_key, claimed);
                        return Err((at, e));
                    }
                };
                cache.metrics.get_bytes.inc_by(len as u64);
                let Claimed { key, tx, .. } = claimed.pop_front().expect("checked above");
                let verdict = cache.verify(&key, index, data, Keep::OnDisk);
                cache.answer(&key, &tx, verdict);
                at += 1;
            }
            _ => {
                // `at` is held by somebody else: pass over its bytes, or over the whole gap
                // with a new GET when the next block to fetch is far.
                let next_missing = claimed
                    .front()
                    .map(|c| c.key.index)
                    .or_else(|| cache.first_missing(object, at..range.end));
                let Some(next_missing) = next_missing else {
                    return Ok(range.end);
                };
                if next_missing == at {
                    next_claim = at; // released since it was found held: claim it now
                    continue;
                }
                if next_missing - at > SKIP_BLOCKS {
                    abandon(cache, &object.data_key, claimed);
                    return Ok(next_missing);
                }
                if let Err(e) = body.skip(len).await {
                    abandon(cache, &object.data_key, claimed);
                    return Err((at, e));
                }
                cache.metrics.get_bytes.inc_by(len as u64);
                at += 1;
                next_claim = next_claim.max(at);
            }
        }
    }
    debug!(object = %object.data_key, ?range, "hydrated a part of a segment read at random");
    Ok(range.end)
}

/// Releases blocks claimed ahead but not fetched: their readers fetch them themselves.
fn abandon(cache: &Cache, object: &Arc<str>, claimed: VecDeque<Claimed>) {
    for Claimed { key, tx, .. } in claimed {
        let abandoned = super::CacheError::Abandoned {
            object: object.to_string(),
            block: key.index,
        };
        cache.answer(&key, &tx, Err(abandoned));
    }
}
