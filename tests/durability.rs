//! Durability: remounts, kill -9 mid-stream, torn tails, the data-directory lock, clean exits.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

const SMALL_SEGMENTS: &str =
    "managedLedgerMaxEntriesPerLedger=50\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n";

#[test]
fn everything_survives_a_remount_and_the_log_continues() {
    let mut m = TestMount::start(SMALL_SEGMENTS);
    let topic = m.topic("t/ns/persist");
    let mut written = append_patterns(&topic.join("active"), 0..120, 300);
    let before = listing(&topic);
    assert_eq!(m.stop(), Some(0), "SIGTERM must end the mount cleanly");
    assert!(!is_mounted(&m.mnt));
    assert!(!m.data.join("admin.addr").exists());
    m.restart();
    assert_eq!(listing(&topic), before);
    assert_eq!(cat_all(&topic), written);
    written.extend(append_patterns(&topic.join("active"), 120..140, 300));
    assert_eq!(cat_all(&topic), written);
    assert_eq!(
        listing(&topic),
        vec![
            "00000000000000000001.seg",
            "00000000000000000002.seg",
            "active"
        ]
    );
    assert_eq!(xattr(&topic.join("active"), "user.tierfs.entries"), "40");
}

#[test]
fn kill_9_loses_no_acknowledged_entry() {
    const LEN: usize = 200;
    let mut m = TestMount::start(SMALL_SEGMENTS);
    let topic = m.topic("t/ns/crash");
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, acked, stop) = (topic.join("active"), Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut f = OpenOptions::new().append(true).open(path).unwrap();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                if f.write_all(&pattern(i as u64, LEN)).is_err() {
                    break; // the daemon is gone
                }
                i += 1;
                acked.store(i, Ordering::SeqCst);
            }
        })
    };
    wait_for("some appends", Duration::from_secs(20), || {
        acked.load(Ordering::SeqCst) > 300
    });
    m.kill9();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    // Every write after the kill fails, so this counts exactly the writes that returned.
    let acked_at_kill = acked.load(Ordering::SeqCst);
    m.restart();
    let data = cat_all(&topic);
    assert_eq!(data.len() % LEN, 0, "a torn entry survived recovery");
    let present = data.len() / LEN;
    // Every acknowledged entry is there; at most the one in flight at the kill is extra.
    assert!(
        present >= acked_at_kill && present <= acked_at_kill + 1,
        "present {present}, acknowledged {acked_at_kill}"
    );
    for (i, entry) in data.chunks(LEN).enumerate() {
        assert!(entry == pattern(i as u64, LEN), "entry {i} differs");
    }
}

#[test]
fn torn_tail_on_disk_is_cut_at_remount() {
    let mut m = TestMount::start("");
    let topic = m.topic("t/ns/torn");
    fs::write(topic.join("active"), b"acknowledged\n").unwrap();
    assert_eq!(m.stop(), Some(0));
    // What a crash in the middle of an append leaves: bytes without an index record and
    // half an index record.
    let seg_dir = m.data.join("topics/t/ns/torn");
    let mut data = OpenOptions::new()
        .append(true)
        .open(seg_dir.join("00000000000000000001.seg"))
        .unwrap();
    data.write_all(b"never acknowledged").unwrap();
    let mut idx = OpenOptions::new()
        .append(true)
        .open(seg_dir.join("00000000000000000001.idx"))
        .unwrap();
    idx.write_all(&[0xAB; 9]).unwrap();
    m.restart();
    assert_eq!(fs::read(topic.join("active")).unwrap(), b"acknowledged\n");
    assert!(
        m.log_text().contains("repaired the torn tail"),
        "{}",
        m.log_text()
    );
    // And the log goes on from the repaired end.
    fs::OpenOptions::new()
        .append(true)
        .open(topic.join("active"))
        .unwrap()
        .write_all(b"next\n")
        .unwrap();
    assert_eq!(
        fs::read(topic.join("active")).unwrap(),
        b"acknowledged\nnext\n"
    );
}

#[test]
fn fsync_on_active_succeeds() {
    let m = TestMount::start("");
    let topic = m.topic("t/ns/sync");
    let mut f = OpenOptions::new()
        .append(true)
        .open(topic.join("active"))
        .unwrap();
    f.write_all(b"durable\n").unwrap();
    f.sync_all().unwrap();
    f.sync_data().unwrap();
}

#[test]
fn a_second_mount_of_the_same_data_dir_is_refused() {
    let m = TestMount::start("");
    let other = m.root.path().join("mnt2");
    fs::create_dir(&other).unwrap();
    let out = Command::new(BIN)
        .arg("mount")
        .arg(&other)
        .arg("--data-dir")
        .arg(&m.data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is in use by another tierfs mount"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid={}", m.pid().unwrap())),
        "{stderr}"
    );
    assert!(!is_mounted(&other));
}

#[test]
fn bad_configuration_fails_before_mounting() {
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let conf = root.path().join("broker.conf");
    fs::write(&conf, "managedLedgerMaxEntriesPerLedger=lots\n").unwrap();
    let out = Command::new(BIN)
        .arg("mount")
        .arg(&mnt)
        .arg("--data-dir")
        .arg(root.path().join("data"))
        .arg("--config")
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("broker.conf:1: invalid value \"lots\" for managedLedgerMaxEntriesPerLedger"),
        "{stderr}"
    );
    assert!(!is_mounted(&mnt));
    let out = Command::new(BIN)
        .arg("mount")
        .arg(root.path().join("no-such-dir"))
        .arg("--data-dir")
        .arg(root.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-dir"));
}

#[test]
fn external_unmount_ends_the_daemon_cleanly() {
    let mut m = TestMount::start("");
    let topic = m.topic("t/ns/unmount");
    fs::write(topic.join("active"), b"kept\n").unwrap();
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(&m.mnt)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(m.stop(), Some(0));
    m.restart();
    assert_eq!(fs::read(topic.join("active")).unwrap(), b"kept\n");
}

#[test]
fn a_damaged_manifest_is_refused_at_mount_with_the_reason() {
    let mut m = TestMount::start("");
    let topic = m.topic("t/ns/damaged");
    fs::write(topic.join("active"), b"kept\n").unwrap();
    assert_eq!(m.stop(), Some(0));
    let manifest = m.data.join("topics/t/ns/damaged/manifest.json");
    let original = fs::read(&manifest).unwrap();
    fs::write(&manifest, &original[..original.len() / 2]).unwrap();
    let out = Command::new(BIN)
        .arg("mount")
        .arg(&m.mnt)
        .arg("--data-dir")
        .arg(&m.data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("manifest.json is damaged: manifest is not valid"),
        "{stderr}"
    );
    assert!(!is_mounted(&m.mnt));
    // Nothing was dropped: with the manifest restored, the data is all there.
    fs::write(&manifest, &original).unwrap();
    m.restart();
    assert_eq!(fs::read(topic.join("active")).unwrap(), b"kept\n");
}

#[test]
fn unknown_keys_are_warned_about() {
    let m = TestMount::start("brokerServicePort=6650\nmanagedLedgerMaxEntriesPerLedger=10\n");
    let log = m.log_text();
    assert!(
        log.contains("keys tierfs does not use were ignored: brokerServicePort"),
        "{log}"
    );
}
