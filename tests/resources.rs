//! Resource faults: a full local disk.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::process::Command;

use common::*;

#[test]
fn a_full_disk_gives_enospc_and_keeps_everything_written() {
    let mut m = TestMount::start_prepared(NO_ROLLOVER, &[], &[], |data| {
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=2m",
                "tierfs-test",
                data.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot mount a tmpfs for the data directory"
        );
    });
    let topic = m.topic("t/ns/full");
    let mut f = OpenOptions::new()
        .append(true)
        .open(topic.join("active"))
        .unwrap();
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..10_000u64 {
        let entry = pattern(i, 1000);
        match f.write(&entry) {
            Ok(n) => {
                assert_eq!(n, entry.len(), "a partial write");
                acked.extend_from_slice(&entry);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a 2 MiB disk never filled up");
    assert_eq!(failure.raw_os_error(), Some(libc::ENOSPC), "{failure}");
    assert!(acked.len() > 100_000, "only {} bytes fit", acked.len());
    assert!(
        cat_all(&topic) == acked,
        "what was acknowledged is not exactly what is there"
    );
    assert!(m.log_text().contains("No space left on device"));
    assert_eq!(m.stop(), Some(0));
    m.restart();
    assert!(cat_all(&topic) == acked, "data changed across the remount");
    m.stop();
    let data = m.data.clone();
    let _ = Command::new("umount").arg(&data).status();
}
