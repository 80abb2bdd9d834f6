//! The cache over an in-memory store: hits, single-flight, verification, bounds, timeouts and
//! the disk cache, without a kernel or a network.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::offload::IndexObject;
use crate::offload::index_object_for_tests as build_index;
use crate::store::StoreError;
use crate::store::memory::MemoryStore;

const BLOCK: usize = 1024;

fn object(store: &MemoryStore, key: &str, size: usize) -> (RemoteObject, Vec<u8>) {
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let index: IndexObject = build_index(&data, BLOCK);
    store.insert(key, data.clone());
    store.insert(&format!("{key}.idx"), index.encode());
    (
        RemoteObject {
            data_key: Arc::from(key),
            index_key: format!("{key}.idx"),
            size: size as u64,
        },
        data,
    )
}

fn config() -> CacheConfig {
    CacheConfig {
        memory_bytes: 64 * BLOCK as u64,
        disk: None,
        max_get_bytes: 4 * BLOCK as u64,
        readahead_initial: BLOCK as u64,
        readahead_max: 8 * BLOCK as u64,
        inflight_bytes: 1 << 20,
        read_timeout: Duration::from_secs(5),
        expected_block_size: 0,
    }
}

fn cache(store: &Arc<MemoryStore>, config: CacheConfig) -> Arc<Cache> {
    Cache::new(
        Arc::clone(store) as Arc<dyn ObjectStore>,
        config,
        Arc::new(Metrics::default()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_exact_and_repeat_reads_hit_the_cache() {
    let store = Arc::new(MemoryStore::default());
    let (obj, data) = object(&store, "a.seg", 10 * BLOCK + 100);
    let cache = cache(&store, config());
    let ra = Mutex::new(ReadAhead::new());
    for (offset, len) in [
        (0, 100),
        (100, 5000),
        (5100, 6000),
        (3, 1),
        (10 * BLOCK as u64, 1000),
    ] {
        let got = cache.read(&obj, &ra, offset, len).await.unwrap();
        let end = ((offset + len) as usize).min(data.len());
        assert_eq!(
            &got[..],
            &data[offset as usize..end],
            "read at {offset}+{len}"
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await; // let read-ahead settle
    let gets = store.range_gets.load(Ordering::SeqCst);
    let fresh = Mutex::new(ReadAhead::new());
    let again = cache.read(&obj, &fresh, 2000, 4000).await.unwrap();
    assert_eq!(&again[..], &data[2000..6000]);
    assert_eq!(
        store.range_gets.load(Ordering::SeqCst),
        gets,
        "a cached range needs no GET"
    );
    assert!(cache.metrics.cache_hits.get() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_of_one_block_cause_one_get() {
    let store = Arc::new(MemoryStore::default());
    let (obj, data) = object(&store, "b.seg", BLOCK);
    *store.stall.lock().unwrap() = Some(Duration::from_millis(200));
    let cache = cache(&store, config());
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (cache, obj) = (Arc::clone(&cache), obj.clone());
            tokio::spawn(async move {
                let ra = Mutex::new(ReadAhead::new());
                cache.read(&obj, &ra, 0, BLOCK as u64).await.unwrap()
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(&reader.await.unwrap()[..], &data[..]);
    }
    assert_eq!(store.range_gets.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_object_is_an_error_never_wrong_bytes() {
    let store = Arc::new(MemoryStore::default());
    let (obj, mut data) = object(&store, "c.seg", 3 * BLOCK);
    data[BLOCK + 7] ^= 0x55;
    store.insert("c.seg", data);
    let cache = cache(&store, config());
    let ra = Mutex::new(ReadAhead::new());
    assert!(
        cache.read(&obj, &ra, 0, 100).await.is_ok(),
        "block 0 is intact"
    );
    let err = cache
        .read(&obj, &Mutex::new(ReadAhead::new()), BLOCK as u64, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Corrupt { block: 1, .. }), "{err}");
    assert!(cache.metrics.checksum_failures.get() >= 1);
}

/// Reads an object's first `blocks` blocks in order, one read per block, as one reader.
async fn read_block_by_block(cache: &Arc<Cache>, obj: &RemoteObject, blocks: u64) -> Vec<u8> {
    let ra = Mutex::new(ReadAhead::new());
    let mut read = Vec::new();
    for i in 0..blocks {
        let got = cache
            .read(obj, &ra, i * BLOCK as u64, BLOCK as u64)
            .await
            .unwrap();
        read.extend_from_slice(&got);
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ahead_covers_a_sequential_read_without_holes_or_duplicates() {
    let store = Arc::new(MemoryStore::default());
    let blocks = 200;
    let (obj, data) = object(&store, "seq.seg", blocks * BLOCK);
    *store.stall.lock().unwrap() = Some(Duration::from_millis(2));
    let mut cfg = config();
    cfg.memory_bytes = (blocks * BLOCK) as u64;
    cfg.readahead_max = 32 * BLOCK as u64;
    // Budget for every window at once (its units are 64 KiB, whatever the block size): this
    // test is about holes, not about read-ahead waiting for memory.
    cfg.inflight_bytes = 64 << 20;
    let cache = cache(&store, cfg);
    let read = read_block_by_block(&cache, &obj, blocks as u64).await;
    assert!(read == data);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Only the first read waits for a GET of its own; read-ahead fetched every other block,
    // each once.
    assert_eq!(
        cache.metrics.cache_misses.get(),
        1,
        "holes in the read-ahead"
    );
    assert_eq!(
        cache.metrics.get_bytes.get(),
        data.len() as u64,
        "a block fetched twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_readers_read_ahead_is_streamed_by_one_get_paced_by_the_reader() {
    let store = Arc::new(MemoryStore::default());
    let blocks = 200u64;
    let (obj, data) = object(&store, "stream.seg", blocks as usize * BLOCK);
    store.stream_frame.store(300, Ordering::SeqCst); // frames straddle blocks
    let mut cfg = config();
    cfg.memory_bytes = blocks * BLOCK as u64;
    cfg.readahead_max = 16 * BLOCK as u64;
    cfg.inflight_bytes = 64 << 20;
    let streaming = cache(&store, cfg);
    let ra = Mutex::new(ReadAhead::new());
    let mut read = Vec::new();
    for i in 0..blocks {
        if i == 20 {
            // The stream reads its body only for the blocks read-ahead handed it: a window
            // beyond the reader, not the rest of the segment.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(streaming.streams.open(), 1);
            let fetched = streaming.metrics.get_bytes.get();
            assert!(
                fetched <= (20 + 16 + 1) * BLOCK as u64,
                "{} blocks fetched for a reader at block 20",
                fetched / BLOCK as u64
            );
        }
        let at = i * BLOCK as u64;
        read.extend_from_slice(&streaming.read(&obj, &ra, at, BLOCK as u64).await.unwrap());
    }
    assert!(read == data);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The first block's GET, ranged GETs while the window grows and the reader reads its first
    // window's worth (16 blocks), then one streamed GET for the other 180-odd blocks.
    let gets = store.range_gets.load(Ordering::SeqCst);
    assert!(
        gets <= 12,
        "{gets} GETs for one sequential read of 200 blocks"
    );
    assert_eq!(streaming.metrics.readahead_streams.get(), 1);
    assert_eq!(
        streaming.streams.open(),
        0,
        "a stream that answered the segment's last block is closed"
    );
    assert_eq!(
        streaming.metrics.cache_misses.get(),
        1,
        "holes in the read-ahead"
    );
    assert_eq!(streaming.metrics.get_bytes.get(), data.len() as u64);
    // A jump closes the stream; reading on from there opens one at the new place.
    let gets = store.range_gets.load(Ordering::SeqCst);
    let again = cache(&store, config());
    let ra = Mutex::new(ReadAhead::new());
    let at = |i: u64| i * BLOCK as u64;
    again.read(&obj, &ra, at(0), BLOCK as u64).await.unwrap();
    again.read(&obj, &ra, at(1), BLOCK as u64).await.unwrap();
    for i in 100..140 {
        let got = again.read(&obj, &ra, at(i), BLOCK as u64).await.unwrap();
        assert!(got[..] == data[at(i) as usize..at(i + 1) as usize]);
    }
    assert_eq!(
        again.metrics.readahead_streams.get(),
        1,
        "two reads do not open a stream; forty from block 100 on open one"
    );
    assert!(store.range_gets.load(Ordering::SeqCst) - gets <= 12);
    assert_eq!(again.streams.open(), 1);
    tokio::time::sleep(stream::STREAM_IDLE * 2).await;
    assert_eq!(again.streams.open(), 0, "an idle stream is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_get_that_breaks_off_leaves_its_blocks_to_their_readers() {
    let store = Arc::new(MemoryStore::default());
    let blocks = 60u64;
    let (obj, data) = object(&store, "broken.seg", blocks as usize * BLOCK);
    // Every streamed GET breaks off five and a half blocks into its body.
    *store.break_streams.lock().unwrap() = Some(5 * BLOCK as u64 + BLOCK as u64 / 2);
    store.stream_frame.store(BLOCK / 2, Ordering::SeqCst);
    let mut cfg = config();
    cfg.memory_bytes = blocks * BLOCK as u64;
    cfg.inflight_bytes = 64 << 20;
    let cache = cache(&store, cfg);
    let read = read_block_by_block(&cache, &obj, blocks).await;
    assert!(read == data, "every block read, exactly");
    assert!(cache.metrics.get_errors.get() >= 1, "the break is counted");
    assert_eq!(cache.metrics.checksum_failures.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_get_that_stalls_gives_its_blocks_up_in_time_for_their_readers() {
    let store = Arc::new(MemoryStore::default());
    let blocks = 60u64;
    let (obj, data) = object(&store, "stalled.seg", blocks as usize * BLOCK);
    // GETs of more than 20 blocks (the stream; a reader's own GET is at most 4) bring 20
    // blocks at once and the rest a minute later.
    *store.stall_long_ranges.lock().unwrap() = Some((20 * BLOCK as u64, Duration::from_secs(60)));
    let mut cfg = config();
    cfg.memory_bytes = blocks * BLOCK as u64;
    cfg.inflight_bytes = 64 << 20;
    let cache = cache(&store, cfg);
    let started = std::time::Instant::now();
    // Each read has 5 s (the read timeout); the stream gives up after a quarter of that.
    let read = read_block_by_block(&cache, &obj, blocks).await;
    assert!(read == data, "every block read, exactly");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The stalled stream's blocks were fetched by their readers, and the reader's next window
    // opened a stream where it had got to.
    assert!(cache.metrics.readahead_streams.get() >= 2);
    assert!(cache.metrics.get_errors.get() >= 1, "the stall is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ahead_never_runs_further_ahead_than_the_memory_cache_holds() {
    let store = Arc::new(MemoryStore::default());
    let blocks = 120;
    let (obj, data) = object(&store, "small-cache.seg", blocks * BLOCK);
    let mut cfg = config();
    // A window that could grow to 64 blocks, through a cache of 8: blocks fetched further
    // ahead than the cache holds would be evicted before their reader comes, and fetched again.
    cfg.memory_bytes = 8 * BLOCK as u64;
    cfg.readahead_max = 64 * BLOCK as u64;
    cfg.inflight_bytes = 64 << 20;
    let cache = cache(&store, cfg);
    let read = read_block_by_block(&cache, &obj, blocks as u64).await;
    assert!(read == data);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        cache.metrics.get_bytes.get(),
        data.len() as u64,
        "blocks fetched ahead were evicted and fetched again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_read_fetches_its_block_beside_the_index_not_after_it() {
    for (guess, right) in [(BLOCK as u64, true), (2 * BLOCK as u64, false)] {
        let store = Arc::new(MemoryStore::default());
        let (obj, data) = object(&store, "first.seg", 10 * BLOCK);
        let mut cfg = config();
        cfg.readahead_initial = 0;
        cfg.readahead_max = 0;
        cfg.expected_block_size = guess;
        let cache = cache(&store, cfg);
        let ra = Mutex::new(ReadAhead::new());
        let got = cache
            .read(&obj, &ra, 3 * BLOCK as u64 + 5, 100)
            .await
            .unwrap();
        assert_eq!(&got[..], &data[3 * BLOCK + 5..3 * BLOCK + 105]);
        // The guessed fetch runs on a task of its own: let it end.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ranged = store.range_gets.load(Ordering::SeqCst);
        if right {
            assert_eq!(ranged, 1, "one GET, made beside the index object's");
            assert_eq!(cache.metrics.cache_misses.get(), 0);
        } else {
            assert_eq!(ranged, 2, "a wrong guess costs one GET more, nothing else");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_reader_near_the_end_has_the_next_segment_coming() {
    let store = Arc::new(MemoryStore::default());
    let (a, data_a) = object(&store, "seg-1", 16 * BLOCK);
    let (b, data_b) = object(&store, "seg-2", 16 * BLOCK);
    let mut cfg = config();
    cfg.readahead_initial = 2 * BLOCK as u64;
    let cache = cache(&store, cfg);
    // Reading half of A, or all of it at random, does not start B.
    let ra = Mutex::new(ReadAhead::followed_by(Some(b.clone())));
    for i in 0..4u64 {
        cache
            .read(&a, &ra, i * BLOCK as u64, BLOCK as u64)
            .await
            .unwrap();
    }
    let random = Mutex::new(ReadAhead::followed_by(Some(b.clone())));
    for i in [15u64, 3, 9, 0, 12, 6] {
        cache
            .read(&a, &random, i * BLOCK as u64, BLOCK as u64)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(cache.metrics.readahead_next_segments.get(), 0);
    // Reading A to the end starts B, once.
    for i in 4..16u64 {
        let got = cache
            .read(&a, &ra, i * BLOCK as u64, BLOCK as u64)
            .await
            .unwrap();
        assert_eq!(
            &got[..],
            &data_a[i as usize * BLOCK..(i as usize + 1) * BLOCK]
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(cache.metrics.readahead_next_segments.get(), 1);
    assert!(
        cache.kept_index(&b).is_some(),
        "B's index object is fetched"
    );
    let misses = cache.metrics.cache_misses.get();
    let fresh = Mutex::new(ReadAhead::new());
    let got = cache.read(&b, &fresh, 0, 2 * BLOCK as u64).await.unwrap();
    assert_eq!(&got[..], &data_b[..2 * BLOCK]);
    assert_eq!(
        cache.metrics.cache_misses.get(),
        misses,
        "B's first blocks are there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_read_at_random_is_fetched_whole_in_the_background() {
    let store = Arc::new(MemoryStore::default());
    let (small, data) = object(&store, "small.seg", 64 * BLOCK);
    let (large, _) = object(&store, "large.seg", 200 * BLOCK);
    let mut cfg = config();
    cfg.memory_bytes = 256 * BLOCK as u64;
    let cache = cache(&store, cfg);
    // Sequential readers never trigger it; nor do random readers of a segment larger than half
    // the cache.
    let seq = Mutex::new(ReadAhead::new());
    for i in 0..8u64 {
        cache
            .read(&small, &seq, i * BLOCK as u64, BLOCK as u64)
            .await
            .unwrap();
    }
    let jumpy = Mutex::new(ReadAhead::new());
    for i in [150u64, 7, 99, 42, 180] {
        cache
            .read(&large, &jumpy, i * BLOCK as u64, 10)
            .await
            .unwrap();
    }
    assert_eq!(cache.metrics.hydrations.get(), 0);
    let random = Mutex::new(ReadAhead::new());
    for i in [50u64, 3, 33, 60, 17] {
        let at = i * BLOCK as u64 + 7;
        let got = cache.read(&small, &random, at, 100).await.unwrap();
        assert_eq!(&got[..], &data[at as usize..at as usize + 100]);
    }
    // The hydration runs in the background: wait (boundedly) until no block is missing or
    // on its way.
    for _ in 0..100 {
        let settled = cache.missing_runs(&small, 0..64, 1).is_empty()
            && cache.inflight.lock().unwrap().is_empty();
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cache.metrics.hydrations.get(), 1);
    let misses = cache.metrics.cache_misses.get();
    let fresh = Mutex::new(ReadAhead::new());
    for i in (0..64u64).rev() {
        cache
            .read(&small, &fresh, i * BLOCK as u64, 1)
            .await
            .unwrap();
    }
    assert_eq!(
        cache.metrics.cache_misses.get(),
        misses,
        "every block is cached"
    );
}

/// Waits (boundedly) until no block of `obj`'s first `blocks` is missing or on its way.
async fn wait_until_hydrated(cache: &Arc<Cache>, obj: &RemoteObject, blocks: u64) {
    for _ in 0..200 {
        if cache.first_missing(obj, 0..blocks).is_none()
            && cache.inflight.lock().unwrap().is_empty()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the segment was not fetched whole within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_read_at_random_is_fetched_by_a_few_streamed_gets_each_block_once() {
    let store = Arc::new(MemoryStore::default());
    let blocks = 64u64;
    let (obj, data) = object(&store, "random.seg", blocks as usize * BLOCK);
    let mut cfg = config();
    cfg.memory_bytes = 256 * BLOCK as u64;
    let cache = cache(&store, cfg);
    let random = Mutex::new(ReadAhead::new());
    // Two jumps: the third read starts the hydration.
    for i in [50u64, 3, 33] {
        let at = i * BLOCK as u64 + 7;
        let got = cache.read(&obj, &random, at, 100).await.unwrap();
        assert_eq!(&got[..], &data[at as usize..at as usize + 100]);
    }
    wait_until_hydrated(&cache, &obj, blocks).await;
    assert_eq!(cache.metrics.hydrations.get(), 1);
    // The reads' own GETs (the index object is not a ranged GET) and one per part.
    let gets = store.range_gets.load(Ordering::SeqCst);
    assert!(
        gets <= 3 + hydrate::STREAMS,
        "{gets} ranged GETs for 3 reads and a hydration"
    );
    // Every block came once, but for the reads' own blocks, which a stream passed over.
    let fetched = cache.metrics.get_bytes.get();
    assert!(
        fetched <= (blocks + 3) * BLOCK as u64,
        "{fetched} bytes fetched for {} bytes",
        blocks as usize * BLOCK
    );
    let fresh = Mutex::new(ReadAhead::new());
    for i in 0..blocks {
        let at = i * BLOCK as u64;
        let got = cache
            .read_now(&obj, &fresh, at, BLOCK as u64)
            .expect("cached");
        assert!(
            got[..] == data[at as usize..at as usize + BLOCK],
            "block {i} exact"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hydration_whose_get_breaks_off_goes_on_where_it_stopped() {
    let store = Arc::new(MemoryStore::default());
    let blocks = 64u64;
    let (obj, data) = object(&store, "breaks.seg", blocks as usize * BLOCK);
    // Every streamed GET breaks off five and a half blocks into its body; parts are 16 blocks.
    *store.break_streams.lock().unwrap() = Some(5 * BLOCK as u64 + BLOCK as u64 / 2);
    store.stream_frame.store(BLOCK / 2, Ordering::SeqCst);
    let mut cfg = config();
    cfg.memory_bytes = 256 * BLOCK as u64;
    let cache = cache(&store, cfg);
    let random = Mutex::new(ReadAhead::new());
    for i in [50u64, 3, 33] {
        cache
            .read(&obj, &random, i * BLOCK as u64, 10)
            .await
            .unwrap();
    }
    wait_until_hydrated(&cache, &obj, blocks).await;
    assert!(
        cache.metrics.get_errors.get() >= 4,
        "each part's GET broke off"
    );
    assert_eq!(cache.metrics.checksum_failures.get(), 0);
    let fresh = Mutex::new(ReadAhead::new());
    let mut read = Vec::new();
    for i in 0..blocks {
        let got = cache
            .read_now(&obj, &fresh, i * BLOCK as u64, BLOCK as u64)
            .expect("every block was fetched, in the GETs that broke off and the ones after");
        read.extend_from_slice(&got);
    }
    assert!(read == data, "every block exact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_read_is_answered_at_once_and_still_drives_read_ahead() {
    let store = Arc::new(MemoryStore::default());
    let blocks = 32u64;
    let (obj, data) = object(&store, "now.seg", blocks as usize * BLOCK);
    let cache = cache(&store, config());
    let reader = Mutex::new(ReadAhead::new());
    assert!(
        cache.read_now(&obj, &reader, 0, 100).is_none(),
        "the index object is not decoded yet: the read has to wait"
    );
    cache.read(&obj, &reader, 0, BLOCK as u64).await.unwrap();
    // Each read answered at once must still grow the window and fetch ahead: a sequential
    // reader of cached blocks keeps finding the next ones cached, up to the end.
    let mut at = BLOCK as u64;
    let mut waited = 0;
    while at < blocks * BLOCK as u64 {
        match cache.read_now(&obj, &reader, at, BLOCK as u64) {
            Some(got) => {
                assert!(got[..] == data[at as usize..at as usize + BLOCK]);
                at += BLOCK as u64;
            }
            None => {
                waited += 1;
                assert!(waited < 500, "read-ahead stopped at {at}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    assert_eq!(
        cache.metrics.cache_hits.get(),
        blocks - 1,
        "every read after the first was answered from the memory cache"
    );
    assert_eq!(cache.metrics.readahead_resets.get(), 0);
    // Across blocks: one answer from two cached blocks.
    let got = cache
        .read_now(&obj, &reader, BLOCK as u64 / 2, BLOCK as u64)
        .expect("both blocks cached");
    assert!(got[..] == data[BLOCK / 2..BLOCK / 2 + BLOCK]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_bound_holds() {
    let store = Arc::new(MemoryStore::default());
    let (obj, data) = object(&store, "d.seg", 200 * BLOCK);
    let mut cfg = config();
    cfg.memory_bytes = 16 * BLOCK as u64;
    let cache = cache(&store, cfg);
    let ra = Mutex::new(ReadAhead::new());
    let mut offset = 0;
    while offset < data.len() as u64 {
        let got = cache.read(&obj, &ra, offset, 4096).await.unwrap();
        assert_eq!(
            &got[..],
            &data[offset as usize..offset as usize + got.len()]
        );
        offset += got.len() as u64;
        assert!(cache.memory.lock().unwrap().bytes() <= 16 * BLOCK as u64);
    }
    assert!(cache.metrics.cache_evictions.get() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_fails_the_read_in_bounded_time_then_recovers() {
    let store = Arc::new(MemoryStore::default());
    let (obj, data) = object(&store, "e.seg", 2 * BLOCK);
    let mut cfg = config();
    cfg.read_timeout = Duration::from_millis(300);
    cfg.readahead_initial = 0; // no background fetches racing the stall
    cfg.readahead_max = 0;
    let cache = cache(&store, cfg);
    // The index object is fetched with a plain GET; warm it first.
    cache
        .read(&obj, &Mutex::new(ReadAhead::new()), 0, 1)
        .await
        .unwrap();
    *store.stall.lock().unwrap() = Some(Duration::from_secs(60));
    let started = std::time::Instant::now();
    let err = cache
        .read(&obj, &Mutex::new(ReadAhead::new()), BLOCK as u64, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::Timeout { .. } | CacheError::Store(StoreError::Transient(_))
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    *store.stall.lock().unwrap() = None;
    let got = cache
        .read(&obj, &Mutex::new(ReadAhead::new()), BLOCK as u64, 10)
        .await
        .unwrap();
    assert_eq!(&got[..], &data[BLOCK..BLOCK + 10]);
    store.failing.store(true, Ordering::SeqCst);
    let err = cache
        .read(&obj, &Mutex::new(ReadAhead::new()), 1500, 10)
        .await;
    assert!(
        err.is_ok(),
        "block 1 is cached now, the failing store is not asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_cache_serves_a_fresh_cache_when_the_store_is_down() {
    let store = Arc::new(MemoryStore::default());
    let (obj, data) = object(&store, "f.seg", 6 * BLOCK);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.disk = Some((dir.path().to_path_buf(), 1 << 20));
    let first = cache(&store, cfg.clone());
    // Read at random: these blocks go to disk (a scan's would stay in memory).
    let random = Mutex::new(ReadAhead::new());
    for i in [5u64, 1, 3, 0, 4, 2] {
        first
            .read(&obj, &random, i * BLOCK as u64, BLOCK as u64)
            .await
            .unwrap();
    }
    // Its reads jumped enough to start fetching the segment whole: let that finish (it holds
    // the cache, and with it the disk cache's lock) before a second cache opens the directory.
    // So do the background writes to disk.
    for _ in 0..200 {
        let writes_done = first.disk.as_ref().map(Arc::strong_count) == Some(1);
        if Arc::strong_count(&first) == 1 && writes_done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(first);
    let second = cache(&store, cfg);
    second.index(&obj).await.unwrap(); // the index object is small and fetched first
    store.failing.store(true, Ordering::SeqCst);
    let got = second
        .read(&obj, &Mutex::new(ReadAhead::new()), 0, data.len() as u64)
        .await
        .unwrap();
    assert_eq!(&got[..], &data[..]);
    assert!(second.metrics.disk_cache_hits.get() >= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_keeps_its_blocks_in_memory_and_out_of_the_disk_cache() {
    let store = Arc::new(MemoryStore::default());
    let (obj, data) = object(&store, "s.seg", 6 * BLOCK);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.disk = Some((dir.path().to_path_buf(), 1 << 20));
    let cache = cache(&store, cfg);
    let scan = Mutex::new(ReadAhead::new());
    for i in 0..6u64 {
        let got = cache
            .read(&obj, &scan, i * BLOCK as u64, BLOCK as u64)
            .await
            .unwrap();
        assert_eq!(
            &got[..],
            &data[i as usize * BLOCK..(i as usize + 1) * BLOCK]
        );
    }
    // The index object may be there (it is kept for remounts); no block is.
    let on_disk = cache.metrics.disk_cache_bytes.get();
    assert!(
        on_disk < BLOCK as i64,
        "a scan filled the disk cache: {on_disk} bytes"
    );
    assert!(
        cache.metrics.cache_bytes.get() > 0,
        "its blocks are in memory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_cache_dir_falls_back_to_memory() {
    let store = Arc::new(MemoryStore::default());
    let (obj, data) = object(&store, "g.seg", BLOCK);
    let mut cfg = config();
    cfg.disk = Some(("/proc/tierfs-cannot-write-here".into(), 1 << 20));
    let cache = cache(&store, cfg);
    assert!(cache.disk.is_none());
    let got = cache
        .read(&obj, &Mutex::new(ReadAhead::new()), 0, BLOCK as u64)
        .await
        .unwrap();
    assert_eq!(&got[..], &data[..]);
    let _ = Bytes::new();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_times_out_releases_its_blocks_for_the_next_reader() {
    let store = Arc::new(MemoryStore::default());
    let (obj, data) = object(&store, "h.seg", 4 * BLOCK);
    let mut cfg = config();
    cfg.read_timeout = Duration::from_millis(300);
    cfg.readahead_initial = 0;
    cfg.readahead_max = 0;
    let cache = cache(&store, cfg);
    // The index is fetched cold inside the read, so the read's own deadline fires first and
    // drops the fetch mid-GET.
    *store.stall.lock().unwrap() = Some(Duration::from_secs(60));
    let err = cache
        .read(&obj, &Mutex::new(ReadAhead::new()), 0, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::Timeout { .. } | CacheError::Store(StoreError::Transient(_))
        ),
        "{err}"
    );
    assert!(
        cache.inflight.lock().unwrap().is_empty(),
        "a dropped fetch left its blocks claimed"
    );
    *store.stall.lock().unwrap() = None;
    let started = std::time::Instant::now();
    let got = cache
        .read(&obj, &Mutex::new(ReadAhead::new()), 0, 10)
        .await
        .unwrap();
    assert_eq!(&got[..], &data[..10]);
    assert!(
        // The dead fetch stalled for 60 s: anything well short of that shows it was not awaited.
        started.elapsed() < Duration::from_secs(5),
        "the next read waited on a dead fetch"
    );
}

/// An object of 512 KiB blocks whose index object records head checksums (version 2).
fn object_with_heads(store: &MemoryStore, key: &str, blocks: usize) -> (RemoteObject, Vec<u8>) {
    const BIG: usize = 4 * HEAD_BYTES as usize;
    let data: Vec<u8> = (0..blocks * BIG).map(|i| (i * 7 % 253) as u8).collect();
    let sums = crate::offload::BlockSums::of(&data, BIG);
    let index = IndexObject {
        block_crcs: sums.blocks,
        head_size: HEAD_BYTES,
        head_crcs: sums.heads,
        ..build_index(&data, BIG)
    };
    store.insert(key, data.clone());
    store.insert(&format!("{key}.idx"), index.encode());
    let object = RemoteObject {
        data_key: Arc::from(key),
        index_key: format!("{key}.idx"),
        size: data.len() as u64,
    };
    (object, data)
}

fn head_config() -> CacheConfig {
    CacheConfig {
        memory_bytes: 32 << 20,
        max_get_bytes: 4 * HEAD_BYTES as u64,
        readahead_initial: 0,
        readahead_max: 0,
        expected_block_size: 4 * HEAD_BYTES as u64,
        ..config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_read_is_answered_from_its_blocks_head_while_the_block_is_coming() {
    let store = Arc::new(MemoryStore::default());
    let (obj, data) = object_with_heads(&store, "head.seg", 3);
    // The block's GET: its first 128 KiB at once, the rest 2 s later.
    *store.stall_long_ranges.lock().unwrap() =
        Some((u64::from(HEAD_BYTES), Duration::from_secs(2)));
    let cache = cache(&store, head_config());
    let ra = Mutex::new(ReadAhead::new());
    let started = std::time::Instant::now();
    // The kernel's first reads of a file: 16, 32 and 64 KiB.
    for (offset, len) in [(0u64, 16384u64), (16384, 32768), (49152, 65536)] {
        let got = cache.read(&obj, &ra, offset, len).await.unwrap();
        assert_eq!(&got[..], &data[offset as usize..(offset + len) as usize]);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered from the head, not after the block"
    );
    // Past the head: the block, from the GET already made (one GET in all: the head came
    // with the block's first bytes).
    let got = cache.read(&obj, &ra, 114_688, 131_072).await.unwrap();
    assert_eq!(&got[..], &data[114_688..245_760]);
    assert_eq!(store.range_gets.load(Ordering::SeqCst), 1, "one GET");
    // The block replaced its head in memory.
    let head = head_key(&obj.data_key, 0);
    assert!(!cache.memory.lock().unwrap().contains(&head));
    assert_eq!(cache.metrics.checksum_failures.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_head_is_refused_and_the_read_waits_for_its_checked_block() {
    let store = Arc::new(MemoryStore::default());
    let (obj, data) = object_with_heads(&store, "bad-head.seg", 2);
    let mut damaged = data.clone();
    damaged[1000] ^= 0x01;
    store.insert("bad-head.seg", damaged);
    let cache = cache(&store, head_config());
    let ra = Mutex::new(ReadAhead::new());
    let err = cache.read(&obj, &ra, 100, 4096).await.unwrap_err();
    assert!(matches!(err, CacheError::Corrupt { block: 0, .. }), "{err}");
    // The head, then the block (and the block again if the reader came after the first
    // fetch had ended and fetched it itself).
    assert!(cache.metrics.checksum_failures.get() >= 2);
    assert!(
        !cache
            .memory
            .lock()
            .unwrap()
            .contains(&head_key(&obj.data_key, 0))
    );
    // The second block, intact, reads fine.
    let block = 4 * HEAD_BYTES as u64;
    let got = cache.read(&obj, &ra, block, 4096).await.unwrap();
    assert_eq!(&got[..], &data[block as usize..block as usize + 4096]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_object_without_heads_reads_as_before() {
    let store = Arc::new(MemoryStore::default());
    const BIG: usize = 4 * HEAD_BYTES as usize;
    let data: Vec<u8> = (0..2 * BIG).map(|i| (i % 249) as u8).collect();
    store.insert("v1.seg", data.clone());
    store.insert("v1.seg.idx", build_index(&data, BIG).encode());
    let obj = RemoteObject {
        data_key: Arc::from("v1.seg"),
        index_key: "v1.seg.idx".to_string(),
        size: data.len() as u64,
    };
    let cache = cache(&store, head_config());
    let ra = Mutex::new(ReadAhead::new());
    let got = cache.read(&obj, &ra, 0, 16384).await.unwrap();
    assert_eq!(&got[..], &data[..16384]);
    let got = cache.read(&obj, &ra, 16384, BIG as u64).await.unwrap();
    assert_eq!(&got[..], &data[16384..BIG + 16384]);
    assert_eq!(cache.metrics.checksum_failures.get(), 0);
}
