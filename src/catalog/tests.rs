//! The catalog against the in-memory store: commits, refreshes, checkpoints, collection,
//! fencing and crashes between the steps of a commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::*;
use crate::name::TopicName;
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

#[tokio::test]
async fn commits_write_constant_metadata_and_checkpoints_are_amortised() {
    let (store, writer) = pair();
    writer.open_for_writing().await.unwrap();
    // A long topic: 3,000 segments in one checkpointed state.
    let many: Vec<Change> = (1..=3000).map(|id| offloaded("t/ns/long", id)).collect();
    writer.commit(many).await.unwrap();
    let mut per_commit = Vec::new();
    for id in 3001..=3200 {
        let before = store.put_bytes.load(Ordering::SeqCst);
        writer
            .commit(vec![offloaded("t/ns/long", id)])
            .await
            .unwrap();
        per_commit.push(store.put_bytes.load(Ordering::SeqCst) - before);
    }
    per_commit.sort_unstable();
    let median = per_commit[per_commit.len() / 2];
    let total: u64 = per_commit.iter().sum();
    assert!(median < 1024, "a plain commit wrote {median} bytes");
    // Checkpoints of ~3,000 records were written every 64 commits: their cost spread over
    // the commits stays a small multiple of a record, whatever the topic's length.
    let record = format::encode(&entry(3000)).len() as u64;
    assert!(
        total / 200 < 1024 + 3200 * record / 64 + record,
        "average {} bytes per commit",
        total / 200
    );
    // Collection (in the background) keeps the journal short.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let journal = store
        .list(&format!("{}journal/", writer.keys().root()))
        .await
        .unwrap();
    assert!(
        journal.len() <= 2 * 64 + 1,
        "{} journal records kept",
        journal.len()
    );
    // A fresh reader gets the same state from the checkpoint and the tail of the journal.
    let reader = Catalog::new(store.clone(), "pre");
    let before = store.requests.load(Ordering::SeqCst);
    reader.load().await.unwrap();
    assert!(store.requests.load(Ordering::SeqCst) - before <= 2 + 64);
    assert_eq!(*reader.state(), *writer.state());
    assert_eq!(reader.state().segment_count(), 3200);
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
