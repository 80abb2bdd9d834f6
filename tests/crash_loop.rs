//! kill -9 of the mount at varying moments while a writer appends and offloads run, remounting
//! each time: at the end every acknowledged entry is present exactly once and in order, no
//! multipart upload is left behind, every object in the bucket is referenced, and every segment
//! reads back (locally or from the store).

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

const LEN: usize = 4096;

fn entry(seq: u64) -> Vec<u8> {
    let mut e = format!("seq={seq:012};").into_bytes();
    e.extend(pattern(seq, LEN - e.len()));
    e
}

/// The sequence numbers in the topic, checking every entry's bytes.
fn sequence(topic: &std::path::Path) -> Vec<u64> {
    let data = cat_all(topic);
    assert_eq!(data.len() % LEN, 0, "a torn entry");
    data.chunks(LEN)
        .map(|chunk| {
            let seq: u64 = std::str::from_utf8(&chunk[4..16]).unwrap().parse().unwrap();
            assert!(chunk == entry(seq), "entry {seq} is damaged");
            seq
        })
        .collect()
}

/// Appends from `next` on until stopped or the mount goes away; returns the last acked seq + 1.
fn writer(
    path: std::path::PathBuf,
    next: u64,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut f) = OpenOptions::new().append(true).open(path) else {
            return;
        };
        let mut seq = next;
        while !stop.load(Ordering::SeqCst) {
            if f.write_all(&entry(seq)).is_err() {
                return;
            }
            seq += 1;
            acked.store(seq, Ordering::SeqCst);
        }
    })
}

#[test]
fn acknowledged_entries_survive_repeated_kill_9_during_offloads() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("crashloop");
    let config = format!(
        "managedLedgerMaxEntriesPerLedger=40\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n\
         managedLedgerOffloadAutoTriggerSizeThresholdBytes=0\nmanagedLedgerOffloadDeletionLagMs=0\n\
         managedLedgerOffloadMaxBlockSizeInBytes=5242880\n{}",
        s3.config(&prefix)
    );
    let mut m = TestMount::start(&config);
    let topic = m.topic("t/ns/crashy");
    let mut next = 0u64;
    for round in 0..6u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(next));
        let w = writer(
            topic.join("active"),
            next,
            Arc::clone(&stop),
            Arc::clone(&acked),
        );
        std::thread::sleep(Duration::from_millis(300 + (round * 397) % 900));
        m.kill9();
        stop.store(true, Ordering::SeqCst);
        w.join().unwrap();
        let acked_before_kill = acked.load(Ordering::SeqCst);
        m.restart();
        let present = sequence(&topic);
        assert_eq!(
            present,
            (0..present.len() as u64).collect::<Vec<_>>(),
            "round {round}: entries missing, repeated or out of order"
        );
        assert!(
            present.len() as u64 >= acked_before_kill,
            "round {round}: {} present, {acked_before_kill} acknowledged",
            present.len()
        );
        assert!(
            present.len() as u64 <= acked_before_kill + 1,
            "round {round}: more than the one unacknowledged entry"
        );
        // Like an idempotent producer: continue after the last entry that made it.
        next = present.len() as u64;
    }
    // Let the offloads the last mount started (and the retries of interrupted ones) finish.
    wait_for("offloads to settle", Duration::from_secs(120), || {
        let status = m.admin(&["topics", "offload-status", "t/ns/crashy"]);
        let text = String::from_utf8_lossy(&status.stdout);
        status.status.success()
            && !text.contains("currently running")
            && listing(&topic)
                .iter()
                .filter(|n| n.ends_with(".seg"))
                .all(|n| xattr(&topic.join(n), "user.tierfs.state") == "offloaded")
    });
    let present = sequence(&topic);
    assert_eq!(present.len() as u64, next);
    let probe = StoreProbe::new(&config, &m.data);
    assert!(
        probe.pending_uploads(&format!("{prefix}/")).is_empty(),
        "multipart uploads were left behind"
    );
    // The bucket, listed without tierfs: exactly the objects the bucket's catalog references.
    let referenced = probe.referenced_keys(&prefix, "t/ns/crashy");
    let listed = probe.segment_keys(&prefix);
    assert_eq!(
        referenced, listed,
        "objects the catalog does not reference, or references and lacks"
    );
    assert_eq!(
        m.admin_ok(&["scan-offloaded", "t/ns"]),
        "Found 0 unreferenced object(s) and 0 stale multipart upload(s) in t/ns\n",
        "objects no manifest references"
    );
}
