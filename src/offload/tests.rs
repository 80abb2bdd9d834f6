//! The offloader against the `filesystem` store in a temporary directory, and against the
//! in-memory store with injected faults: offloads commit to the catalog, and attempts a crash
//! interrupted are settled against it at the next start — rolled forward when the catalog
//! recorded them, rolled back and redone when it did not; deletions are recorded first and
//! finished once the store lets them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::catalog::{Catalog, Change};
use crate::config::OffloadConfig;
use crate::log::{AppendAt, LocalLog, RolloverPolicy, Topic};
use crate::metrics::Metrics;
use crate::name::TopicName;
use crate::store::ObjectStore;
use crate::store::dir::DirStore;
use crate::store::faulty::{FaultyStore, Op};
use crate::store::memory::MemoryStore;

struct Fixture {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    log: Arc<LocalLog>,
    store: Arc<dyn ObjectStore>,
    config: OffloadConfig,
    topic: Arc<Topic>,
}

fn fixture() -> Fixture {
    fixture_on(|dir| Arc::new(DirStore::open(&dir.join("store")).unwrap()))
}

/// A fixture over the store `make` builds in the fixture's directory.
fn fixture_on(make: impl FnOnce(&std::path::Path) -> Arc<dyn ObjectStore>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (log, _) = LocalLog::open(&data, RolloverPolicy::default()).unwrap();
    let log = Arc::new(log);
    let name = TopicName::new("t", "ns", "x").unwrap();
    log.create_tenant("t").unwrap();
    log.create_namespace(&name.namespace_name()).unwrap();
    let topic = log.create_topic(&name).unwrap();
    for segment in 0..2u8 {
        topic
            .append(&[segment; 3000], AppendAt::Tail, SystemTime::now())
            .unwrap();
        topic.seal_now(SystemTime::now()).unwrap();
    }
    let store = make(dir.path());
    Fixture {
        data,
        log,
        store,
        config: OffloadConfig::default(),
        topic,
        _dir: dir,
    }
}

fn offloader(f: &Fixture) -> Arc<Offloader> {
    let catalog = Catalog::new(f.store.clone(), "");
    let o = Offloader::new(
        Arc::clone(&f.log),
        catalog,
        f.config.clone(),
        Policies::load(&f.data, &f.config).unwrap(),
        Arc::new(Metrics::default()),
        LeaseSettings {
            data_dir: f.data.clone(),
            take_over: false,
        },
    );
    o.set_deletion_grace(Duration::ZERO);
    o
}

async fn offloaded(topic: &Topic) {
    for _ in 0..500 {
        if topic.snapshot().sealed.iter().all(|s| s.offloaded()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("segments not offloaded: {:?}", topic.snapshot().sealed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offload_is_complete_once_the_catalog_records_it() {
    let f = fixture();
    let o = offloader(&f);
    o.recover().await;
    o.offload_before(f.topic.name(), 3).unwrap();
    offloaded(&f.topic).await;
    let reader = Catalog::new(f.store.clone(), "");
    reader.load().await.unwrap();
    let ids: Vec<u64> = reader
        .state()
        .segments(f.topic.name())
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, [1, 2]);
    for segment in f.topic.snapshot().sealed {
        let record = segment.offload.unwrap();
        assert_eq!(
            reader
                .state()
                .segment(f.topic.name(), segment.id)
                .unwrap()
                .uuid,
            record.uuid
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_commit_is_rolled_forward_without_uploading_again() {
    let f = fixture();
    let o = offloader(&f);
    o.recover().await;
    o.offload_before(f.topic.name(), 2).unwrap();
    for _ in 0..500 {
        if f.topic.sealed_segment(1).unwrap().offloaded() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // As if the process died between the catalog commit and the local completion.
    f.topic
        .update_sealed(1, |s| {
            if let Some(r) = s.offload.as_mut() {
                r.completed_ms = None;
            }
        })
        .unwrap();
    let uuid = f.topic.sealed_segment(1).unwrap().offload.unwrap().uuid;
    let restarted = offloader(&f);
    restarted.recover().await;
    offloaded_segment_1(&f.topic).await;
    let record = f.topic.sealed_segment(1).unwrap().offload.unwrap();
    assert_eq!(
        record.uuid, uuid,
        "the committed attempt was kept, not redone"
    );
    assert!(f.store.head(&record.data_key).await.unwrap().is_some());
}

async fn offloaded_segment_1(topic: &Topic) {
    for _ in 0..500 {
        if topic.sealed_segment(1).unwrap().offloaded() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("segment 1 was not settled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_commit_is_rolled_back_and_offloaded_again() {
    let f = fixture();
    let layout = Layout::new("");
    // An attempt that uploaded its data object and then died before committing.
    let stale = crate::log::OffloadRecord {
        uuid: "dead".into(),
        data_key: layout.data_key(f.topic.name(), 1, "dead"),
        index_key: layout.index_key(f.topic.name(), 1, "dead"),
        upload_id: None,
        started_ms: 0,
        completed_ms: None,
    };
    f.store
        .put(&stale.data_key, bytes::Bytes::from_static(b"partial"))
        .await
        .unwrap();
    let upload = f.store.create_multipart(&stale.data_key).await.unwrap();
    let recorded = stale.clone();
    f.topic
        .update_sealed(1, |s| s.offload = Some(recorded))
        .unwrap();
    // Another writer's upload under the same topic: not this data directory's, left alone.
    let foreign = layout.data_key(f.topic.name(), 7, "someone-else");
    let foreign_upload = f.store.create_multipart(&foreign).await.unwrap();
    let o = offloader(&f);
    o.recover().await;
    offloaded_segment_1(&f.topic).await;
    let record = f.topic.sealed_segment(1).unwrap().offload.unwrap();
    assert_ne!(record.uuid, "dead");
    assert!(f.store.head(&stale.data_key).await.unwrap().is_none());
    let pending = f.store.list_multipart("").await.unwrap();
    assert!(pending.iter().all(|u| u.upload_id != upload), "{pending:?}");
    assert!(
        pending.iter().any(|u| u.upload_id == foreign_upload),
        "a foreign upload was aborted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buckets_policies_are_adopted_and_local_ones_recorded() {
    let f = fixture();
    let ns = f.topic.name().namespace_name();
    let other = crate::name::NamespaceName::new("t", "other").unwrap();
    // The bucket knows a policy for t/ns; the data directory only one for t/other.
    let bucket = Catalog::new(f.store.clone(), "");
    bucket
        .commit(vec![Change::Policy {
            namespace: ns.to_string(),
            policy: Some(NamespacePolicy {
                offload_threshold: Some(0),
                ..Default::default()
            }),
        }])
        .await
        .unwrap();
    Policies::load(&f.data, &f.config)
        .unwrap()
        .update(&other, |p| p.offload_threshold = Some(5))
        .unwrap();
    let o = offloader(&f);
    o.recover().await;
    assert_eq!(o.policies().get(&ns).offload_threshold, Some(0));
    assert_eq!(o.policies().get(&other).offload_threshold, Some(5));
    bucket.load().await.unwrap();
    assert_eq!(
        bucket.state().policies()["t/other"].offload_threshold,
        Some(5)
    );
}

async fn settled(o: &Offloader, topic: &TopicName) -> OffloadStatus {
    for _ in 0..500 {
        let status = o.status(topic);
        if status.status != State::Running {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the offload of {topic} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_segment_backs_off_and_does_not_hold_up_the_ones_after_it() {
    let mut f = fixture();
    f.config.auto_threshold_bytes = 0; // automatic offload of every sealed segment
    // Segment 1's bytes no longer match the CRC32C the manifest records for it.
    let path = f.topic.sealed_data_path(1);
    let good = std::fs::read(&path).unwrap();
    let writable = |path: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    writable(&path);
    let mut bad = good.clone();
    bad[100] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let o = offloader(&f);
    o.recover().await;
    o.evaluate(f.topic.name());
    let status = settled(&o, f.topic.name()).await;
    assert_eq!(status.status, State::Error);
    assert!(
        status.last_error.starts_with("segment 1: ")
            && status
                .last_error
                .contains("failed 1 time(s) in a row; automatic offload tries it again in 15 s"),
        "{}",
        status.last_error
    );
    let sealed = f.topic.snapshot().sealed;
    assert!(!sealed[0].offloaded(), "segment 1 cannot be offloaded");
    assert!(
        sealed[1].offloaded(),
        "segment 2 after it is offloaded all the same"
    );
    let failing = o.failing_segments(f.topic.name());
    assert_eq!(failing.keys().copied().collect::<Vec<_>>(), [1]);
    assert_eq!(failing[&1].attempts, 1);
    // Automatic offload leaves it alone until its retry time.
    o.evaluate(f.topic.name());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(o.status(f.topic.name()), status, "tried again before 15 s");
    // Mended, and offloaded by hand: tried at once, and its failures are forgotten.
    std::fs::write(&path, &good).unwrap();
    o.offload_before(f.topic.name(), 3).unwrap();
    assert_eq!(settled(&o, f.topic.name()).await.status, State::Success);
    assert!(f.topic.snapshot().sealed[0].offloaded());
    assert!(o.failing_segments(f.topic.name()).is_empty());
}

/// Every object key under the topic's prefix.
async fn objects_of(f: &Fixture, topic: &TopicName) -> Vec<String> {
    f.store
        .list(&Layout::new("").topic_prefix(topic))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

async fn catalog_ids(f: &Fixture, topic: &TopicName) -> Vec<u64> {
    let reader = Catalog::new(f.store.clone(), "");
    reader.load().await.unwrap();
    reader.state().segments(topic).map(|s| s.id).collect()
}

fn keep_nothing_sealed(o: &Offloader, topic: &TopicName) {
    o.policies()
        .update(&topic.namespace_name(), |p| {
            p.retention = Some(RetentionPolicy {
                time_minutes: 0,
                size_mb: 0,
            })
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_a_segment_everywhere() {
    let f = fixture();
    let o = offloader(&f);
    o.recover().await;
    o.offload_before(f.topic.name(), 2).unwrap();
    offloaded_segment_1(&f.topic).await;
    assert_eq!(settled(&o, f.topic.name()).await.status, State::Success);
    assert_eq!(objects_of(&f, f.topic.name()).await.len(), 2);
    assert_eq!(catalog_ids(&f, f.topic.name()).await, [1]);
    keep_nothing_sealed(&o, f.topic.name());
    let picked = o
        .apply_retention(&f.topic, crate::log::to_millis(SystemTime::now()) + 1)
        .await
        .unwrap();
    assert_eq!(picked, 2, "both sealed segments are past a 0/0 retention");
    assert!(
        f.topic.snapshot().sealed.is_empty(),
        "gone from the log at once"
    );
    o.drain_deletions().await.unwrap();
    assert!(f.topic.deleting().is_empty());
    assert!(objects_of(&f, f.topic.name()).await.is_empty());
    assert!(catalog_ids(&f, f.topic.name()).await.is_empty());
    for id in [1, 2] {
        assert!(!f.topic.sealed_data_path(id).exists(), "local copy of {id}");
    }
    assert_eq!(f.topic.snapshot().active.id, 3, "the active segment stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_a_crash_interrupted_is_finished_at_the_next_start() {
    let f = fixture();
    let o = offloader(&f);
    o.recover().await;
    o.offload_before(f.topic.name(), 3).unwrap();
    offloaded(&f.topic).await;
    // The local record is written, then the process dies before the bucket is touched.
    f.topic
        .begin_delete(&[1], || None, SystemTime::now())
        .unwrap();
    drop(o);
    let (log, _) = LocalLog::open(&f.data, RolloverPolicy::default()).unwrap();
    let log = Arc::new(log);
    let reopened = log.topic(f.topic.name()).unwrap();
    assert_eq!(
        reopened
            .snapshot()
            .sealed
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        [2],
        "a segment being deleted is not shown again after a restart"
    );
    assert_eq!(reopened.deleting().len(), 1);
    let restarted = Fixture {
        log: Arc::clone(&log),
        topic: Arc::clone(&reopened),
        ..f
    };
    let o = offloader(&restarted);
    o.recover().await;
    o.drain_deletions().await.unwrap();
    assert!(reopened.deleting().is_empty());
    assert_eq!(catalog_ids(&restarted, reopened.name()).await, [2]);
    let left = objects_of(&restarted, reopened.name()).await;
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter().all(|k| k.contains("00000000000000000002-")),
        "{left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_goes_everywhere_and_its_name_can_be_used_again() {
    let f = fixture();
    let o = offloader(&f);
    o.recover().await;
    o.offload_before(f.topic.name(), 3).unwrap();
    offloaded(&f.topic).await;
    let name = f.topic.name().clone();
    let tomb = f.log.delete_topic(&name).unwrap();
    assert!(f.log.topic(&name).is_err(), "gone from the tree at once");
    assert_eq!(tomb.segments.len(), 2);
    // Created again before the old one's objects are gone: its segment 1 is another one.
    let again = f.log.create_topic(&name).unwrap();
    again
        .append(b"new", AppendAt::Tail, SystemTime::now())
        .unwrap();
    again.seal_now(SystemTime::now()).unwrap();
    o.offload_before(&name, 2).unwrap();
    offloaded(&again).await;
    o.drain_deletions().await.unwrap();
    assert!(f.log.tombstones().is_empty());
    assert!(!tomb.dir.exists());
    assert_eq!(
        catalog_ids(&f, &name).await,
        [1],
        "the new topic's segment 1 stays"
    );
    let new_uuid = again.sealed_segment(1).unwrap().offload.unwrap().uuid;
    let left = objects_of(&f, &name).await;
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|k| k.contains(&new_uuid)), "{left:?}");
}

fn faulty_fixture() -> (Fixture, Arc<FaultyStore>) {
    let faulty = FaultyStore::new(Arc::new(MemoryStore::default()));
    let store = Arc::clone(&faulty);
    (fixture_on(move |_| store), faulty)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offload_whose_upload_cannot_complete_leaves_nothing_and_succeeds_later() {
    let (f, faulty) = faulty_fixture();
    let o = offloader(&f);
    o.recover().await;
    faulty.fail(Op::CompleteMultipart, ".seg", Some(1));
    o.offload_before(f.topic.name(), 2).unwrap();
    let status = settled(&o, f.topic.name()).await;
    assert_eq!(status.status, State::Error, "{status:?}");
    assert!(
        f.topic.sealed_segment(1).unwrap().offload.is_none(),
        "intent cleared"
    );
    assert!(
        objects_of(&f, f.topic.name()).await.is_empty(),
        "nothing left behind"
    );
    assert!(
        f.store.list_multipart("").await.unwrap().is_empty(),
        "upload aborted"
    );
    assert!(catalog_ids(&f, f.topic.name()).await.is_empty());
    o.offload_before(f.topic.name(), 2).unwrap();
    assert_eq!(settled(&o, f.topic.name()).await.status, State::Success);
    assert_eq!(catalog_ids(&f, f.topic.name()).await, [1]);
    assert_eq!(objects_of(&f, f.topic.name()).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_the_store_refuses_stays_recorded_and_is_finished_once_it_answers() {
    let (f, faulty) = faulty_fixture();
    let o = offloader(&f);
    o.recover().await;
    o.offload_before(f.topic.name(), 3).unwrap();
    offloaded(&f.topic).await;
    faulty.fail(Op::Delete, ".seg", None);
    keep_nothing_sealed(&o, f.topic.name());
    o.apply_retention(&f.topic, crate::log::to_millis(SystemTime::now()) + 1)
        .await
        .unwrap();
    assert!(
        o.drain_deletions().await.is_err(),
        "the store refuses the deletes"
    );
    assert!(f.topic.snapshot().sealed.is_empty());
    assert_eq!(f.topic.deleting().len(), 2, "still recorded");
    assert!(
        catalog_ids(&f, f.topic.name()).await.is_empty(),
        "gone from the catalog first"
    );
    assert_eq!(objects_of(&f, f.topic.name()).await.len(), 4);
    faulty.heal();
    o.drain_deletions().await.unwrap();
    assert!(f.topic.deleting().is_empty());
    assert!(objects_of(&f, f.topic.name()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_waits_out_a_store_that_fails_to_give_the_catalog() {
    let (f, faulty) = faulty_fixture();
    let o = offloader(&f);
    o.recover().await;
    o.offload_before(f.topic.name(), 2).unwrap();
    offloaded_segment_1(&f.topic).await;
    faulty.fail(Op::Get, "head.json", Some(3));
    let restarted = offloader(&f);
    tokio::time::timeout(Duration::from_secs(30), restarted.recover())
        .await
        .expect("recovery gets through once the store answers");
    assert!(faulty.injected.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    restarted.offload_before(f.topic.name(), 3).unwrap();
    offloaded(&f.topic).await;
    assert_eq!(catalog_ids(&f, f.topic.name()).await, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_segments_objects_stay_for_the_grace_after_the_catalog_drops_it() {
    let f = fixture();
    let o = offloader(&f);
    o.set_deletion_grace(Duration::from_millis(1500));
    o.recover().await;
    o.offload_before(f.topic.name(), 2).unwrap();
    offloaded_segment_1(&f.topic).await;
    keep_nothing_sealed(&o, f.topic.name());
    o.apply_retention(&f.topic, crate::log::to_millis(SystemTime::now()) + 1)
        .await
        .unwrap();
    o.drain_deletions().await.unwrap();
    assert!(
        catalog_ids(&f, f.topic.name()).await.is_empty(),
        "readers drop it at once"
    );
    assert_eq!(
        objects_of(&f, f.topic.name()).await.len(),
        2,
        "its objects stay a while"
    );
    // Segment 2 was never offloaded: it is gone already; segment 1's objects wait.
    let waiting: Vec<u64> = f.topic.deleting().iter().map(|d| d.segment.id).collect();
    assert_eq!(waiting, [1]);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    o.drain_deletions().await.unwrap();
    assert!(objects_of(&f, f.topic.name()).await.is_empty());
    assert!(f.topic.deleting().is_empty());
}
