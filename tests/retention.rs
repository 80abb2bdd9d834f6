//! Retention and deletion through real mounts against the S3 server of scripts/s3-server.sh
//! (Garage): retention by size (`set-retention`) and by time (the broker's default), topics
//! truncated and deleted with their objects, a deletion interrupted by `kill -9` and finished
//! after the restart, and `cat topic/*` showing a suffix of the log while retention deletes.

mod common;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// Two entries per segment; every sealed segment is offloaded at once and its local copy
/// dropped at once, so reads of sealed segments go to the bucket.
fn config(store: &str, entries_per_segment: u32) -> String {
    format!(
        "managedLedgerMaxEntriesPerLedger={entries_per_segment}\n\
         managedLedgerMinLedgerRolloverTimeMinutes=0\n\
         managedLedgerOffloadAutoTriggerSizeThresholdBytes=0\n\
         managedLedgerOffloadDeletionLagMs=0\n{store}"
    )
}

/// A writer mount whose deleted segments' objects go at once (`--deletion-grace 0s`).
fn writer(config: &str) -> TestMount {
    TestMount::start_with(config, &[], &["--deletion-grace", "0s"])
}

fn segment_ids(topic: &Path) -> Vec<u64> {
    listing(topic)
        .iter()
        .filter_map(|n| n.strip_suffix(".seg")?.parse().ok())
        .collect()
}

/// The segment ids whose objects are under the topic's prefix in the bucket.
fn ids_in_bucket(probe: &StoreProbe, prefix: &str, topic: &str) -> BTreeSet<u64> {
    probe
        .keys(&format!("{prefix}/{topic}/"))
        .iter()
        .filter_map(|k| k.rsplit('/').next()?.get(..20)?.parse().ok())
        .collect()
}

fn ids_in_catalog(probe: &StoreProbe, prefix: &str, topic: &str) -> BTreeSet<u64> {
    let topic = tierfs::name::TopicName::parse(topic).unwrap();
    probe
        .catalog(prefix)
        .segments(&topic)
        .map(|s| s.id)
        .collect()
}

fn wait_offloaded(topic: &Path, ids: std::ops::RangeInclusive<u64>) {
    wait_for(
        "segments offloaded, local copies dropped",
        Duration::from_secs(60),
        || {
            ids.clone().all(|id| {
                let seg = topic.join(format!("{id:020}.seg"));
                seg.exists() && xattr(&seg, "user.tierfs.local") == "no"
            })
        },
    );
}

#[test]
fn retention_by_size_deletes_the_oldest_segments_everywhere() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("retention-size");
    let store = s3.config(&prefix);
    let m = TestMount::start_with(&config(&store, 2), &[], &["--deletion-grace", "10s"]);
    let probe = StoreProbe::new(&store, &m.data);
    let topic = m.topic("t/ns/sized");
    // Five sealed segments of 512 KiB (2.5 MiB), nothing in the active one.
    let written = append_patterns(&topic.join("active"), 0..10, 256 << 10);
    wait_offloaded(&topic, 1..=5);
    assert_eq!(
        ids_in_bucket(&probe, &prefix, "t/ns/sized"),
        (1..=5).collect()
    );
    assert_eq!(
        m.admin_ok(&["namespaces", "get-retention", "t/ns"]),
        "null\n"
    );
    // A reader of the bucket, as on another host.
    let reader =
        TestMount::start_with(&store, &[], &["--read-only", "--refresh-interval", "500ms"]);
    let seen = reader.mnt.join("t/ns/sized");
    wait_for(
        "the reader to see every segment",
        Duration::from_secs(10),
        || segment_ids(&seen) == [1, 2, 3, 4, 5],
    );

    m.admin_ok(&[
        "namespaces",
        "set-retention",
        "--size",
        "1M",
        "--time",
        "-1",
        "t/ns",
    ]);
    assert_eq!(
        m.admin_ok(&["namespaces", "get-retention", "t/ns"]),
        "{\n  \"retentionTimeInMinutes\" : -1,\n  \"retentionSizeInMB\" : 1\n}\n"
    );
    // With 1, 2 and 3 gone 1 MiB remains; without 4 it would be under 1 MiB: 4 and 5 stay.
    wait_for(
        "retention to delete segments 1-3",
        Duration::from_secs(30),
        || segment_ids(&topic) == [4, 5],
    );
    assert_eq!(cat_all(&topic), written[6 * (256 << 10)..]);
    // The catalog drops them at once; the reader follows within its refresh, while their
    // objects stay for the deletion grace: it never shows a segment whose objects are gone.
    assert_eq!(ids_in_catalog(&probe, &prefix, "t/ns/sized"), [4, 5].into());
    wait_for("the reader to drop them", Duration::from_secs(5), || {
        segment_ids(&seen) == [4, 5]
    });
    assert_eq!(
        ids_in_bucket(&probe, &prefix, "t/ns/sized"),
        (1..=5).collect(),
        "objects deleted before the grace"
    );
    assert_eq!(cat_all(&seen), written[6 * (256 << 10)..]);
    wait_for(
        "their objects to go after the grace",
        Duration::from_secs(30),
        || ids_in_bucket(&probe, &prefix, "t/ns/sized") == [4, 5].into(),
    );
    assert_eq!(ids_in_catalog(&probe, &prefix, "t/ns/sized"), [4, 5].into());
    let stats = m.admin_ok(&["topics", "stats-internal", "t/ns/sized"]);
    assert!(!stats.contains("\"ledgerId\": 3,"), "{stats}");
    assert!(
        m.log_text()
            .contains("retention deletes the oldest segments")
    );

    // Refused as Pulsar refuses: a single limit of 0.
    let bad = m.admin(&[
        "namespaces",
        "set-retention",
        "--size",
        "0",
        "--time",
        "3d",
        "t/ns",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Use the value of -1 instead of 0"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    m.admin_ok(&["namespaces", "remove-retention", "t/ns"]);
    assert_eq!(
        m.admin_ok(&["namespaces", "get-retention", "t/ns"]),
        "null\n"
    );
    assert_eq!(ids_in_bucket(&probe, &prefix, "t/ns/sized"), [4, 5].into());
}

#[test]
fn the_brokers_default_retention_time_deletes_segments_sealed_longer_ago() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("retention-time");
    let store = s3.config(&prefix);
    let m = writer(&format!(
        "defaultRetentionTimeInMinutes=1\n{}",
        config(&store, 1)
    ));
    let probe = StoreProbe::new(&store, &m.data);
    let topic = m.topic("t/ns/aged");
    append_patterns(&topic.join("active"), 0..2, 4096);
    wait_offloaded(&topic, 1..=2);
    // Past the minute, two more seal: only the first two are older than the retention time.
    std::thread::sleep(Duration::from_secs(50));
    let young = append_patterns(&topic.join("active"), 2..4, 4096);
    wait_for(
        "the old segments to expire",
        Duration::from_secs(40),
        || segment_ids(&topic) == [3, 4],
    );
    assert_eq!(cat_all(&topic), young);
    // The young ones are offloaded meanwhile: wait for that to end before looking.
    wait_offloaded(&topic, 3..=4);
    wait_for("their objects to go", Duration::from_secs(30), || {
        ids_in_bucket(&probe, &prefix, "t/ns/aged") == [3, 4].into()
    });
    assert_eq!(ids_in_catalog(&probe, &prefix, "t/ns/aged"), [3, 4].into());
    let config = m.admin_ok(&["brokers", "get-runtime-configuration"]);
    assert!(
        config.contains("\"defaultRetentionTimeInMinutes\": \"1\""),
        "{config}"
    );
}

#[test]
fn truncate_and_delete_remove_a_topics_segments_and_objects() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("truncate");
    let store = s3.config(&prefix);
    let m = writer(&config(&store, 2));
    let probe = StoreProbe::new(&store, &m.data);
    let topic = m.topic("t/ns/cut");
    append_patterns(&topic.join("active"), 0..7, 1000);
    wait_offloaded(&topic, 1..=3);
    // rmdir of a topic that holds entries stays ENOTEMPTY.
    assert_eq!(errno(std::fs::remove_dir(&topic)), libc::ENOTEMPTY);

    m.admin_ok(&["topics", "truncate", "t/ns/cut"]);
    assert!(
        segment_ids(&topic).is_empty(),
        "sealed segments gone at once"
    );
    assert_eq!(
        std::fs::read(topic.join("active")).unwrap(),
        pattern(6, 1000)
    );
    wait_for(
        "the truncated segments' objects to go",
        Duration::from_secs(30),
        || ids_in_bucket(&probe, &prefix, "t/ns/cut").is_empty(),
    );
    assert!(ids_in_catalog(&probe, &prefix, "t/ns/cut").is_empty());
    // New segments continue the numbering.
    append_patterns(&topic.join("active"), 7..9, 1000);
    wait_offloaded(&topic, 4..=4);

    // A writer holds `active` open: delete without -f is refused, as Pulsar refuses a topic
    // with producers.
    let mut writer = OpenOptions::new()
        .append(true)
        .open(topic.join("active"))
        .unwrap();
    let refused = m.admin(&["topics", "delete", "t/ns/cut"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("active producers"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    m.admin_ok(&["topics", "delete", "-f", "t/ns/cut"]);
    assert!(!topic.exists());
    assert!(
        writer.write_all(b"after").is_err(),
        "appends to a deleted topic fail"
    );
    wait_for(
        "the deleted topic's objects to go",
        Duration::from_secs(30),
        || ids_in_bucket(&probe, &prefix, "t/ns/cut").is_empty(),
    );
    assert!(ids_in_catalog(&probe, &prefix, "t/ns/cut").is_empty());
    wait_for(
        "the deleted topic's directory to go",
        Duration::from_secs(30),
        || {
            std::fs::read_dir(m.data.join("deleting"))
                .map(|d| d.count() == 0)
                .unwrap_or(true)
        },
    );
    // Namespaces and tenants go only when empty, as in Pulsar.
    m.admin_ok(&["namespaces", "delete", "t/ns"]);
    m.admin_ok(&["tenants", "delete", "t"]);
    let missing = m.admin(&["topics", "delete", "t/ns/cut"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn a_deletion_interrupted_by_kill_9_is_finished_after_the_restart() {
    let s3 = OwnS3::start();
    let prefix = unique_prefix("deletion-kill");
    let store = s3.config(&prefix);
    let mut m = writer(&config(&store, 2));
    let probe = StoreProbe::new(&store, &m.data);
    let cut = m.topic("t/ns/cut");
    let gone = m.topic("t/ns/gone");
    append_patterns(&cut.join("active"), 0..6, 1000);
    append_patterns(&gone.join("active"), 0..4, 1000);
    wait_offloaded(&cut, 1..=3);
    wait_offloaded(&gone, 1..=2);

    // The store stops answering: both deletions are recorded, neither can reach the bucket.
    s3.stop();
    m.admin_ok(&["topics", "truncate", "t/ns/cut"]);
    m.admin_ok(&["topics", "delete", "t/ns/gone"]);
    assert!(segment_ids(&cut).is_empty());
    assert!(!gone.exists());
    wait_for(
        "the deletion to fail against the stopped store",
        Duration::from_secs(30),
        || m.log_text().contains("deleting segments failed"),
    );
    m.kill9();
    s3.resume();
    assert_eq!(
        ids_in_bucket(&probe, &prefix, "t/ns/cut"),
        (1..=3).collect()
    );
    assert_eq!(
        ids_in_bucket(&probe, &prefix, "t/ns/gone"),
        (1..=2).collect()
    );

    m.restart();
    assert!(
        segment_ids(&cut).is_empty(),
        "truncated segments stay gone after the restart"
    );
    assert!(
        !gone.exists(),
        "the deleted topic stays gone after the restart"
    );
    wait_for(
        "the interrupted deletions to finish",
        Duration::from_secs(60),
        || {
            ids_in_bucket(&probe, &prefix, "t/ns/cut").is_empty()
                && ids_in_bucket(&probe, &prefix, "t/ns/gone").is_empty()
        },
    );
    assert!(ids_in_catalog(&probe, &prefix, "t/ns/cut").is_empty());
    assert!(ids_in_catalog(&probe, &prefix, "t/ns/gone").is_empty());
}

/// Fixed-size entries, so that an entry's seed can be read from its position in any output.
const ENTRY: usize = 16 << 10;

/// Whether `out` is whole entries `k, k+1, …` of the stream written with seeds `0..`.
fn is_contiguous_run(out: &[u8]) -> bool {
    if out.is_empty() {
        return true;
    }
    if out.len() % ENTRY != 0 {
        return false;
    }
    let first = (0..1_000_000u64).find(|seed| out[..32] == pattern(*seed, 32)[..]);
    let Some(first) = first else {
        return false;
    };
    out.chunks(ENTRY)
        .zip(first..)
        .all(|(chunk, seed)| chunk == pattern(seed, ENTRY))
}

#[test]
fn cat_of_a_topic_shows_a_suffix_of_the_log_while_retention_deletes() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("retention-cat");
    let m = writer(&config(&s3.config(&prefix), 4));
    let topic = m.topic("t/ns/rolling");
    // Segments of 64 KiB; retention keeps at least 1 MiB, so segments go continually.
    m.admin_ok(&[
        "namespaces",
        "set-retention",
        "--size",
        "1M",
        "--time",
        "-1",
        "t/ns",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, appended, active) = (stop.clone(), appended.clone(), topic.join("active"));
        std::thread::spawn(move || {
            let mut f = OpenOptions::new().append(true).open(active).unwrap();
            let mut seed = 0;
            while !stop.load(Ordering::Relaxed) {
                f.write_all(&pattern(seed, ENTRY)).unwrap();
                seed += 1;
                appended.store(seed, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let mut checks = 0;
    while started.elapsed() < Duration::from_secs(15) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("cat {}/*.seg", topic.display()))
            .output()
            .unwrap();
        assert!(
            is_contiguous_run(&out.stdout),
            "cat topic/*.seg showed {} bytes that are not a run of the log (stderr: {})",
            out.stdout.len(),
            String::from_utf8_lossy(&out.stderr)
        );
        checks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let first = segment_ids(&topic).first().copied().unwrap_or(0);
    assert!(
        first > 5,
        "retention deleted segments while cat ran (first segment now {first}, {} entries appended)",
        appended.load(Ordering::Relaxed)
    );
    assert!(checks >= 10, "only {checks} reads of the topic");
}

#[test]
fn du_follows_a_local_copy_that_went() {
    use std::os::unix::fs::MetadataExt;
    let s3 = S3Env::get();
    let prefix = unique_prefix("du");
    let m = TestMount::start(&format!(
        "managedLedgerMaxEntriesPerLedger=2\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n\
         managedLedgerOffloadDeletionLagMs=2000\n{}",
        s3.config(&prefix)
    ));
    let topic = m.topic("t/ns/du");
    append_patterns(&topic.join("active"), 0..2, 100_000);
    let segment = topic.join("00000000000000000001.seg");
    // The kernel caches a sealed segment's attributes for a day: this stat fills that cache.
    assert!(std::fs::metadata(&segment).unwrap().blocks() >= 200_000 / 512);
    m.admin_ok(&["topics", "offload", "-s", "0", "t/ns/du"]);
    wait_offloaded(&topic, 1..=1);
    wait_for(
        "stat to show no local blocks once the local copy went",
        Duration::from_secs(10),
        || std::fs::metadata(&segment).unwrap().blocks() == 0,
    );
}
