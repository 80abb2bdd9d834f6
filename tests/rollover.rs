//! Rollover through a real mount: by entries, size and age, the minimum age, and admin seal.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

#[test]
fn seals_by_entry_count() {
    let m = TestMount::start(
        "managedLedgerMaxEntriesPerLedger=10\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n",
    );
    let topic = m.topic("t/ns/entries");
    let written = append_patterns(&topic.join("active"), 0..35, 100);
    let names = listing(&topic);
    assert_eq!(
        names,
        vec![
            "00000000000000000001.seg",
            "00000000000000000002.seg",
            "00000000000000000003.seg",
            "active"
        ]
    );
    for name in &names[..3] {
        assert_eq!(fs::metadata(topic.join(name)).unwrap().len(), 1000);
        assert_eq!(xattr(&topic.join(name), "user.tierfs.entries"), "10");
    }
    assert_eq!(fs::metadata(topic.join("active")).unwrap().len(), 500);
    assert_eq!(cat_all(&topic), written);
}

#[test]
fn seals_by_size() {
    // 0.01 MB = 10485 bytes: the 11th entry of 1 KiB crosses it.
    let m = TestMount::start(
        "managedLedgerMaxSizePerLedgerMbytes=0.01\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n",
    );
    let topic = m.topic("t/ns/size");
    let written = append_patterns(&topic.join("active"), 0..25, 1024);
    let names = listing(&topic);
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(
        fs::metadata(topic.join(&names[0])).unwrap().len(),
        11 * 1024
    );
    assert_eq!(
        fs::metadata(topic.join(&names[1])).unwrap().len(),
        11 * 1024
    );
    assert_eq!(fs::metadata(topic.join("active")).unwrap().len(), 3 * 1024);
    assert_eq!(cat_all(&topic), written);
}

#[test]
fn seals_by_age_on_the_timer() {
    // 0.02 minutes = 1.2 s.
    let m = TestMount::start(
        "managedLedgerMaxLedgerRolloverTimeMinutes=0.02\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n",
    );
    let topic = m.topic("t/ns/age");
    let written = append_patterns(&topic.join("active"), 0..3, 10);
    wait_for("a timed rollover", Duration::from_secs(15), || {
        listing(&topic).len() == 2
    });
    assert_eq!(fs::metadata(topic.join("active")).unwrap().len(), 0);
    assert_eq!(cat_all(&topic), written);
    // An empty active segment never seals, however old.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(listing(&topic).len(), 2);
}

#[test]
fn minimum_age_holds_a_full_segment_back() {
    // Full after 1 entry, but must be 0.05 minutes (3 s) old.
    let m = TestMount::start(
        "managedLedgerMaxEntriesPerLedger=1\nmanagedLedgerMinLedgerRolloverTimeMinutes=0.05\n",
    );
    let topic = m.topic("t/ns/minage");
    let started = std::time::Instant::now();
    let written = append_patterns(&topic.join("active"), 0..3, 10);
    let names = listing(&topic);
    if started.elapsed() < Duration::from_millis(2500) {
        assert_eq!(names, vec!["active"], "sealed before the minimum age");
    }
    wait_for("the held-back rollover", Duration::from_secs(15), || {
        listing(&topic).len() == 2
    });
    assert_eq!(
        xattr(
            &topic.join("00000000000000000001.seg"),
            "user.tierfs.entries"
        ),
        "3"
    );
    assert_eq!(cat_all(&topic), written);
}

#[test]
fn admin_seal_seals_now() {
    let m = TestMount::start("");
    let topic = m.topic("t/ns/manual");
    let out = m.admin(&["topics", "seal", "t/ns/manual"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is empty; there is nothing to seal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = append_patterns(&topic.join("active"), 0..4, 5);
    let out = m.admin_ok(&["topics", "seal", "persistent://t/ns/manual"]);
    assert_eq!(
        out,
        "Sealed segment 00000000000000000001.seg of persistent://t/ns/manual (4 entries, 20 bytes)\n"
    );
    assert_eq!(listing(&topic), vec!["00000000000000000001.seg", "active"]);
    assert_eq!(cat_all(&topic), written);
    assert!(m.log_text().contains("sealed by admin request"));
}
