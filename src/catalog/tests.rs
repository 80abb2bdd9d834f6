//! The catalog against the in-memory store: commits, refreshes, checkpoints, collection,
//! fencing and crashes between the steps of a commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::*;
use crate::name::TopicName;
use crate::store::ObjectStore;
use crate::store::memory::MemoryStore;

fn entry(id: u64) -> SegmentEntry {
    SegmentEntry {
        id,
        uuid: format!("uuid-{id}"),
        entries: 10,
        size: 1000,
        crc32c: 7,
        created_ms: 1,
        sealed_ms: 2,
        offloaded_ms: 3,
    }
}

fn offloaded(topic: &str, id: u64) -> Change {
    Change::Offloaded {
        topic: topic.to_string(),
        segment: entry(id),
    }
}

fn pair() -> (Arc<MemoryStore>, Arc<Catalog>) {
    let store = Arc::new(MemoryStore::default());
    let catalog = Catalog::new(store.clone(), "pre");
    (store, catalog)
}

#[tokio::test]
async fn a_second_reader_sees_every_commit_and_an_idle_refresh_is_one_request() {
    let (store, writer) = pair();
    writer.open_for_writing().await.unwrap();
    assert!(writer.conditional_writes());
    for id in 1..=5 {
        writer.commit(vec![offloaded("t/ns/a", id)]).await.unwrap();
    }
    let reader = Catalog::new(store.clone(), "pre");
    reader.load().await.unwrap();
    assert_eq!(reader.state().seq, 5);
    assert_eq!(*reader.state(), *writer.state());

    let before = store.requests.load(Ordering::SeqCst);
    assert!(!reader.refresh().await.unwrap());
    assert_eq!(store.requests.load(Ordering::SeqCst) - before, 1);

    writer
        .commit(vec![offloaded("t/ns/b", 1), offloaded("t/ns/a", 6)])
        .await
        .unwrap();
    let before = store.requests.load(Ordering::SeqCst);
    assert!(reader.refresh().await.unwrap());
    assert_eq!(
        store.requests.load(Ordering::SeqCst) - before,
        2,
        "the head and the one new journal record"
    );
    let b = TopicName::parse("t/ns/b").unwrap();
    assert_eq!(reader.state().segments(&b).count(), 1);
    assert_eq!(reader.state().segment_count(), 7);
}

/// A writer whose topic `t/ns/long` holds `base` segments, and the mean catalog bytes it then
/// writes per single-segment commit over `commits` commits, after 256 commits of warm-up (the
/// base is loaded 1,000 segments a commit: its records are paged once, at the first checkpoint,
/// which a topic offloaded one segment at a time spreads over its own life).
async fn mean_commit_bytes(base: u64, commits: u64) -> (Arc<MemoryStore>, Arc<Catalog>, u64) {
    let (store, writer) = pair();
    writer.open_for_writing().await.unwrap();
    let mut id = 0;
    while id < base {
        let batch: Vec<Change> = (id + 1..=(id + 1000).min(base))
            .map(|i| offloaded("t/ns/long", i))
            .collect();
        id += batch.len() as u64;
        writer.commit(batch).await.unwrap();
    }
    for _ in 0..256 {
        id += 1;
        writer
            .commit(vec![offloaded("t/ns/long", id)])
            .await
            .unwrap();
    }
    let before = writer.bytes_written();
    for _ in 0..commits {
        id += 1;
        writer
            .commit(vec![offloaded("t/ns/long", id)])
            .await
            .unwrap();
    }
    let mean = (writer.bytes_written() - before) / commits;
    (store, writer, mean)
}

#[tokio::test]
async fn metadata_per_offload_stays_flat_as_a_topic_grows() {
    let (_, _, short) = mean_commit_bytes(300, 384).await;
    let (store, writer, long) = mean_commit_bytes(20_000, 384).await;
    // Checkpoints are in both windows (every 128 commits at least): the means are amortised.
    assert!(long < 2048, "{long} bytes per offload with 20,000 segments");
    assert!(
        long < 2 * short,
        "{long} bytes per offload with 20,000 segments, {short} with 300"
    );
    // Pages hold the old records: the newest checkpoint is small whatever the topic's length.
    let checkpoints = store
        .list(&format!("{}checkpoint/", writer.keys().root()))
        .await
        .unwrap();
    let newest = checkpoints
        .iter()
        .max_by_key(|o| o.key.clone())
        .unwrap_or_else(|| panic!("no checkpoint; head {:?}", writer.read().head));
    assert!(
        newest.size < 200_000,
        "a checkpoint of {} bytes",
        newest.size
    );
    // Collection (in the background) keeps the journal short.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let journal = store
        .list(&format!("{}journal/", writer.keys().root()))
        .await
        .unwrap();
    assert!(
        journal.len() <= 2 * 128 + 1,
        "{} journal records kept",
        journal.len()
    );
    // A fresh reader gets the same state from the checkpoint, its pages and the journal tail.
    let reader = Catalog::new(store.clone(), "pre");
    let before = store.requests.load(Ordering::SeqCst);
    reader.load().await.unwrap();
    let pages = 20_640 / 256 + 1;
    assert!(store.requests.load(Ordering::SeqCst) - before <= 2 + pages + 128);
    assert_eq!(*reader.state(), *writer.state());
    assert_eq!(reader.state().segment_count(), 20_640);
}

#[tokio::test]
async fn a_change_inside_a_page_retires_it_and_readers_stay_exact() {
    let (store, writer, _) = mean_commit_bytes(2_000, 200).await;
    let long = TopicName::parse("t/ns/long").unwrap();
    // Delete segments inside the oldest pages and replace one with another copy.
    writer
        .commit(vec![
            Change::SegmentDeleted {
                topic: "t/ns/long".into(),
                id: 1,
                uuid: None,
            },
            Change::Offloaded {
                topic: "t/ns/long".into(),
                segment: SegmentEntry {
                    uuid: "another-copy".into(),
                    ..entry(300)
                },
            },
        ])
        .await
        .unwrap();
    for id in 2_457..=2_756 {
        writer
            .commit(vec![offloaded("t/ns/long", id)])
            .await
            .unwrap();
    }
    let reader = Catalog::new(store.clone(), "pre");
    reader.load().await.unwrap();
    assert_eq!(*reader.state(), *writer.state());
    let state = reader.state();
    assert!(state.segment(&long, 1).is_none());
    assert_eq!(state.segment(&long, 300).unwrap().uuid, "another-copy");
    assert_eq!(state.segment_count(), 2_755);
    // Pages no kept checkpoint references were collected; the ones referenced are all there.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let listed: std::collections::BTreeSet<String> = store
        .list(&format!("{}page/", writer.keys().root()))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(writer.state().page_keys().is_subset(&listed));
}

#[tokio::test]
async fn a_reader_far_behind_starts_again_from_the_checkpoint() {
    let (store, writer) = pair();
    writer.open_for_writing().await.unwrap();
    writer.commit(vec![offloaded("t/ns/a", 1)]).await.unwrap();
    let reader = Catalog::new(store.clone(), "pre");
    reader.load().await.unwrap();
    for id in 2..=400 {
        writer.commit(vec![offloaded("t/ns/a", id)]).await.unwrap();
    }
    // Let the background collection run.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(reader.refresh().await.unwrap());
    assert_eq!(*reader.state(), *writer.state());
}

#[tokio::test]
async fn a_commit_cut_short_before_its_head_leaves_the_old_state() {
    let (store, writer) = pair();
    writer.open_for_writing().await.unwrap();
    writer.commit(vec![offloaded("t/ns/a", 1)]).await.unwrap();
    // A crash after the journal record and before the head: debris at seq 2.
    let debris = JournalRecord {
        format: FORMAT,
        seq: 2,
        time_ms: 0,
        changes: vec![offloaded("t/ns/a", 99)],
    };
    store.insert(&writer.keys().journal(2), format::encode(&debris));
    let restarted = Catalog::new(store.clone(), "pre");
    restarted.open_for_writing().await.unwrap();
    let a = TopicName::parse("t/ns/a").unwrap();
    assert!(restarted.state().segment(&a, 99).is_none());
    restarted
        .commit(vec![offloaded("t/ns/a", 2)])
        .await
        .unwrap();
    let reader = Catalog::new(store.clone(), "pre");
    reader.load().await.unwrap();
    let ids: Vec<u64> = reader.state().segments(&a).map(|s| s.id).collect();
    assert_eq!(ids, [1, 2], "the debris was overwritten, never applied");
}

#[tokio::test]
async fn a_second_writer_is_fenced_and_named() {
    let (store, first) = pair();
    first.open_for_writing().await.unwrap();
    first.commit(vec![offloaded("t/ns/a", 1)]).await.unwrap();
    let second = Catalog::new(store.clone(), "pre");
    second.open_for_writing().await.unwrap();
    second.commit(vec![offloaded("t/ns/a", 2)]).await.unwrap();
    let err = first
        .commit(vec![offloaded("t/ns/a", 3)])
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Fenced { .. }), "{err}");
    assert!(err.to_string().contains(&process_identity()), "{err}");
    assert!(first.is_fenced());
    // Fenced for good: later commits are refused without touching the store.
    assert!(matches!(
        first.commit(vec![offloaded("t/ns/a", 4)]).await,
        Err(CatalogError::Fenced { .. })
    ));
}

#[tokio::test]
async fn damaged_and_newer_heads_are_refused_with_their_key() {
    let (store, reader) = pair();
    store.insert(&reader.keys().head(), "{\"format\":2,\"seq\":1}");
    let err = reader.load().await.unwrap_err().to_string();
    assert!(err.contains("pre/_tierfs/head.json has format 2"), "{err}");
    store.insert(&reader.keys().head(), "garbage");
    let err = reader.load().await.unwrap_err().to_string();
    assert!(
        err.contains("is not a valid tierfs catalog object"),
        "{err}"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_and_an_empty_bucket_is_an_empty_catalog() {
    let (store, writer) = pair();
    writer.load().await.unwrap();
    assert_eq!(writer.state().seq, 0);
    store.failing.store(true, Ordering::SeqCst);
    let healer = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            store.failing.store(false, Ordering::SeqCst);
        })
    };
    writer.commit(vec![offloaded("t/ns/a", 1)]).await.unwrap();
    healer.await.unwrap();
    let reader = Catalog::new(store.clone(), "pre");
    reader.load().await.unwrap();
    assert_eq!(reader.state().segment_count(), 1);
}

#[tokio::test]
async fn a_commit_before_any_read_reads_the_bucket_first_and_overwrites_nothing() {
    let (store, first) = pair();
    first.commit(vec![offloaded("t/ns/a", 1)]).await.unwrap();
    let second = Catalog::new(store.clone(), "pre");
    let seq = second.commit(vec![offloaded("t/ns/a", 2)]).await.unwrap();
    assert_eq!(seq, 2);
    let reader = Catalog::new(store.clone(), "pre");
    reader.load().await.unwrap();
    assert_eq!(reader.state().segment_count(), 2);
}
