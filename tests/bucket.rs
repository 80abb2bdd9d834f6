//! Read-only mounts of the bucket (`tierfs mount --read-only`) against a real S3 server: every
//! offloaded segment shown byte-exact from the catalog alone, new offloads followed within the
//! refresh interval, an idle refresh costing one request, every change refused with EROFS,
//! admin changes refused, and an unknown catalog format refused at mount.

mod common;

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;

const ENTRY: usize = 1000;

fn writer_config(s3: &S3Env, prefix: &str) -> String {
    format!(
        "managedLedgerMaxEntriesPerLedger=4\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n{}",
        s3.config(prefix)
    )
}

fn read_only(config: &str) -> TestMount {
    TestMount::start_with(config, &[], &["--read-only", "--refresh-interval", "1s"])
}

/// Waits until every sealed segment of the writer's topic is offloaded.
fn wait_offloaded(topic: &std::path::Path, count: usize) {
    wait_for("segments to be offloaded", Duration::from_secs(60), || {
        let sealed: Vec<String> = listing(topic)
            .into_iter()
            .filter(|n| n.ends_with(".seg"))
            .collect();
        sealed.len() == count
            && sealed
                .iter()
                .all(|n| xattr(&topic.join(n), "user.tierfs.state") == "offloaded")
    });
}

#[test]
fn read_only_mounts_show_the_bucket_and_follow_the_writer() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("readonly");
    let config = writer_config(&s3, &prefix);
    let writer = TestMount::start(&config);
    let topic = writer.topic("t/ns/orders");
    let other = writer.topic("t/ns/audit");
    writer.admin_ok(&["namespaces", "set-offload-threshold", "--size", "0", "t/ns"]);
    let mut written = append_patterns(&topic.join("active"), 0..8, ENTRY);
    let audit = append_patterns(&other.join("active"), 100..104, ENTRY);
    wait_offloaded(&topic, 2);
    wait_offloaded(&other, 1);

    // Two read-only mounts of the same bucket and prefix, with data directories of their own.
    let readers = [read_only(&config), read_only(&config)];
    for reader in &readers {
        let orders = reader.mnt.join("t/ns/orders");
        assert_eq!(listing(&reader.mnt), ["t"]);
        assert_eq!(listing(&reader.mnt.join("t/ns")), ["audit", "orders"]);
        assert_eq!(
            listing(&orders),
            ["00000000000000000001.seg", "00000000000000000002.seg"],
            "offloaded segments only, no active"
        );
        assert_eq!(cat_all(&orders), written);
        assert_eq!(cat_all(&reader.mnt.join("t/ns/audit")), audit);
        let first = orders.join("00000000000000000001.seg");
        assert_eq!(xattr(&first, "user.tierfs.state"), "offloaded");
        assert_eq!(xattr(&first, "user.tierfs.local"), "no");
        assert_eq!(xattr(&first, "user.tierfs.entries"), "4");
        assert!(xattr(&first, "user.tierfs.object").starts_with("s3://"));
        assert_eq!(fs::metadata(&first).unwrap().len(), 4 * ENTRY as u64);
    }

    // The writer goes on: a new segment appears in the readers within the refresh interval.
    written.extend(append_patterns(&topic.join("active"), 8..12, ENTRY));
    wait_offloaded(&topic, 3);
    for reader in &readers {
        let orders = reader.mnt.join("t/ns/orders");
        wait_for("the new segment to appear", Duration::from_secs(10), || {
            listing(&orders).len() == 3
        });
        assert_eq!(cat_all(&orders), written);
    }

    // An idle refresh is one request, however many topics.
    let reader = &readers[0];
    std::thread::sleep(Duration::from_millis(1500));
    let (requests, refreshes) = (
        metric(reader, "tierfs_catalog_requests_total"),
        metric(reader, "tierfs_catalog_refreshes_total"),
    );
    std::thread::sleep(Duration::from_millis(3500));
    let idle_refreshes = metric(reader, "tierfs_catalog_refreshes_total") - refreshes;
    let idle_requests = metric(reader, "tierfs_catalog_requests_total") - requests;
    assert!(idle_refreshes >= 2.0, "{idle_refreshes} refreshes in 3.5 s");
    assert_eq!(
        idle_requests, idle_refreshes,
        "an idle refresh must cost exactly one request"
    );

    // The namespace's policy is in the bucket, beside the segments.
    let probe = StoreProbe::new(&config, &writer.data);
    let catalog = probe.catalog(&prefix);
    assert_eq!(catalog.policies()["t/ns"].offload_threshold, Some(0));
    assert_eq!(catalog.segment_count(), 4);

    // A segment deleted from the bucket's catalog (as retention does) disappears from readers.
    probe.commit(
        &prefix,
        tierfs::catalog::Change::SegmentDeleted {
            topic: "t/ns/orders".into(),
            id: 1,
            uuid: None,
        },
    );
    for reader in &readers {
        let orders = reader.mnt.join("t/ns/orders");
        // Gone from the listing and from lookups (the kernel's cached name is dropped just
        // after the listing changes).
        wait_for("the deleted segment to go", Duration::from_secs(10), || {
            listing(&orders) == ["00000000000000000002.seg", "00000000000000000003.seg"]
                && !orders.join("00000000000000000001.seg").exists()
        });
        assert_eq!(cat_all(&orders), written[4 * ENTRY..]);
    }
}

#[test]
fn every_change_to_a_read_only_mount_is_refused_with_erofs() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("rochanges");
    let config = writer_config(&s3, &prefix);
    let writer = TestMount::start(&config);
    let topic = writer.topic("t/ns/x");
    append_patterns(&topic.join("active"), 0..4, ENTRY);
    writer.admin_ok(&["topics", "offload", "-s", "0", "t/ns/x"]);
    assert_eq!(
        writer.admin_ok(&["topics", "offload-status", "-w", "t/ns/x"]),
        "Offload was a success\n"
    );
    let reader = read_only(&config);
    let dir = reader.mnt.join("t/ns/x");
    let segment = dir.join("00000000000000000001.seg");
    assert_eq!(fs::read(&segment).unwrap().len(), 4 * ENTRY);

    assert_eq!(errno(fs::create_dir(reader.mnt.join("t2"))), libc::EROFS);
    assert_eq!(
        errno(fs::create_dir(reader.mnt.join("t/ns/y"))),
        libc::EROFS
    );
    assert_eq!(errno(fs::remove_dir(&dir)), libc::EROFS);
    assert_eq!(errno(fs::remove_file(&segment)), libc::EROFS);
    assert_eq!(
        errno(fs::OpenOptions::new().append(true).open(&segment)),
        libc::EROFS
    );
    assert_eq!(
        errno(
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(dir.join("active"))
        ),
        libc::EROFS
    );
    assert_eq!(
        errno(fs::rename(&segment, dir.join("renamed"))),
        libc::EROFS
    );
    let truncate = Command::new("truncate")
        .args(["-s", "0"])
        .arg(&segment)
        .output()
        .unwrap();
    assert!(!truncate.status.success());
    assert!(
        String::from_utf8_lossy(&truncate.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&truncate.stderr)
    );
    let setfattr = Command::new("setfattr")
        .args(["-n", "user.tierfs.state", "-v", "x"])
        .arg(&segment)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&setfattr.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&setfattr.stderr)
    );
    let log = reader.log_text();
    assert!(
        log.contains("mkdir refused: this mount shows the bucket read-only"),
        "{log}"
    );

    // Admin changes are refused with the reason; listings are answered from the bucket.
    let seal = reader.admin(&["topics", "seal", "t/ns/x"]);
    assert!(!seal.status.success());
    assert!(
        String::from_utf8_lossy(&seal.stderr).contains("this mount is read-only"),
        "{}",
        String::from_utf8_lossy(&seal.stderr)
    );
    let threshold = reader.admin(&[
        "namespaces",
        "set-offload-threshold",
        "--size",
        "1M",
        "t/ns",
    ]);
    assert!(!threshold.status.success());
    assert!(String::from_utf8_lossy(&threshold.stderr).contains("this mount is read-only"));
    assert_eq!(
        reader.admin_ok(&["topics", "list", "t/ns"]),
        "persistent://t/ns/x\n"
    );
    // The writer was never disturbed.
    assert_eq!(listing(&topic).len(), 2);
}

#[test]
fn an_unknown_catalog_format_is_refused_at_mount_with_its_key() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("roformat");
    let config = s3.config(&prefix);
    let root = tempfile::tempdir().unwrap();
    let probe = StoreProbe::new(&config, root.path());
    probe.put(
        &format!("{prefix}/_tierfs/head.json"),
        br#"{"format":99,"seq":1,"checkpoint":0,"updated_ms":0}"#.to_vec(),
    );
    let (mnt, data) = (root.path().join("mnt"), root.path().join("data"));
    fs::create_dir_all(&mnt).unwrap();
    let conf = root.path().join("broker.conf");
    fs::write(&conf, &config).unwrap();
    let out = Command::new(BIN)
        .arg("mount")
        .arg(&mnt)
        .args(["--read-only", "--config"])
        .arg(&conf)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{prefix}/_tierfs/head.json has format 99")),
        "{stderr}"
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn an_empty_bucket_mounts_empty_and_shows_topics_once_offloaded() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("roempty");
    let config = writer_config(&s3, &prefix);
    let reader = read_only(&config);
    assert!(listing(&reader.mnt).is_empty());
    let writer = TestMount::start(&config);
    let topic = writer.topic("a/b/c");
    let bytes = append_patterns(&topic.join("active"), 0..4, ENTRY);
    writer.admin_ok(&["topics", "offload", "-s", "0", "a/b/c"]);
    wait_for("the topic to appear", Duration::from_secs(30), || {
        reader.mnt.join("a/b/c").exists()
    });
    assert_eq!(cat_all(&reader.mnt.join("a/b/c")), bytes);
}

/// Runs `tierfs mount` expecting a refusal; returns its stderr.
fn refused_mount(config: &str, flags: &[&str]) -> String {
    let root = tempfile::tempdir().unwrap();
    let (mnt, data) = (root.path().join("mnt"), root.path().join("data"));
    fs::create_dir_all(&mnt).unwrap();
    let conf = root.path().join("broker.conf");
    fs::write(&conf, config).unwrap();
    let out = Command::new(BIN)
        .arg("mount")
        .arg(&mnt)
        .arg("--config")
        .arg(&conf)
        .arg("--data-dir")
        .arg(&data)
        .args(flags)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the mount was not refused");
    assert!(!is_mounted(&mnt));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn one_writer_per_prefix_take_over_and_release() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("lease");
    let config = writer_config(&s3, &prefix);
    let lease_key = format!("{prefix}/_tierfs/lease.json");
    let mut first = TestMount::start(&config);
    let probe = StoreProbe::new(&config, &first.data);
    assert!(probe.keys(&format!("{prefix}/")).contains(&lease_key));
    let lease: serde_json::Value = serde_json::from_slice(&probe.get(&lease_key)).unwrap();
    assert_eq!(lease["data_dir"], first.data.display().to_string());
    assert_eq!(lease["pid"], first.pid().unwrap());

    // A second writer is refused, told who holds the prefix.
    let stderr = refused_mount(&config, &[]);
    assert!(
        stderr.contains("another writer holds the prefix"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("data directory {}", first.data.display())),
        "{stderr}"
    );
    assert!(stderr.contains("--take-over"), "{stderr}");

    // A restart of the same data directory after kill -9 takes its own lease back at once.
    let topic = first.topic("t/ns/x");
    append_patterns(&topic.join("active"), 0..4, ENTRY);
    first.kill9();
    first.restart();
    first.admin_ok(&["topics", "offload", "-s", "0", "t/ns/x"]);
    assert_eq!(
        first.admin_ok(&["topics", "offload-status", "-w", "t/ns/x"]),
        "Offload was a success\n"
    );

    // --take-over: the second writer gets the prefix; the first notices and stops offloading.
    let mut second = TestMount::start_with(&config, &[], &["--take-over"]);
    assert!(
        second
            .log_text()
            .contains("taking the writer lease over (--take-over)")
    );
    wait_for(
        "the first writer to notice its lease was taken",
        Duration::from_secs(30),
        || first.log_text().contains("offloads stopped"),
    );
    assert!(first.log_text().contains("was taken by host"));
    append_patterns(&topic.join("active"), 4..8, ENTRY);
    first.admin_ok(&["topics", "offload", "-s", "0", "t/ns/x"]);
    let status = first.admin(&["topics", "offload-status", "-w", "t/ns/x"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(text.contains("Error in offload"), "{text}");
    assert!(text.contains("was taken by"), "{text}");
    assert_eq!(
        probe.catalog(&prefix).segment_count(),
        1,
        "the deposed writer committed nothing"
    );

    // A clean unmount releases the lease; the deposed writer's unmount leaves it alone.
    assert_eq!(first.stop(), Some(0));
    assert!(probe.keys(&format!("{prefix}/")).contains(&lease_key));
    assert_eq!(second.stop(), Some(0));
    assert!(!probe.keys(&format!("{prefix}/")).contains(&lease_key));
}

/// Runs `tierfs recover` into `data`.
fn recover(config_path: &std::path::Path, data: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .arg("recover")
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config_path)
        .output()
        .unwrap()
}

#[test]
fn recover_rebuilds_a_lost_data_directory_and_the_log_goes_on() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("recover");
    let config = writer_config(&s3, &prefix);
    let mut writer = TestMount::start(&config);
    let a = writer.topic("t/ns/a");
    let b = writer.topic("t/ns/b");
    writer.admin_ok(&["namespaces", "set-offload-threshold", "--size", "0", "t/ns"]);
    let offloaded_a = append_patterns(&a.join("active"), 0..8, ENTRY);
    let offloaded_b = append_patterns(&b.join("active"), 10..14, ENTRY);
    // Not offloaded: lost with the data directory, as the issue's contract says.
    append_patterns(&a.join("active"), 20..22, ENTRY);
    wait_offloaded(&a, 2);
    wait_offloaded(&b, 1);
    assert_eq!(writer.stop(), Some(0));

    // A prefix with no catalog has nothing to recover, and nothing is written.
    let empty_conf = writer.root.path().join("empty.conf");
    fs::write(&empty_conf, writer_config(&s3, &unique_prefix("nothing"))).unwrap();
    let fresh = writer.root.path().join("fresh");
    let nothing = recover(&empty_conf, &fresh);
    assert_eq!(nothing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&nothing.stderr);
    assert!(
        stderr.contains("there is no tierfs catalog at s3://"),
        "{stderr}"
    );
    assert!(!fresh.exists());

    // A data directory that holds anything is refused.
    let refused = recover(&writer.config, &writer.data);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert!(writer.data.join("topics/t/ns/a/manifest.json").exists());

    // A new, empty one is rebuilt from the bucket alone; a mount of it goes on appending.
    let config_path = writer.config.clone();
    let mut summary = String::new();
    let m = TestMount::start_prepared(&config, &[], &[], |data| {
        let out = recover(&config_path, data);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        summary = String::from_utf8_lossy(&out.stdout).into_owned();
    });
    assert!(
        summary.starts_with(&format!(
            "Recovered 2 topic(s), 3 segment(s), {} bytes",
            12 * ENTRY
        )),
        "{summary}"
    );
    assert!(
        summary.contains("and 1 namespace policy from s3://"),
        "{summary}"
    );
    let a = m.mnt.join("t/ns/a");
    assert_eq!(
        listing(&a),
        [
            "00000000000000000001.seg",
            "00000000000000000002.seg",
            "active"
        ]
    );
    let first = a.join("00000000000000000001.seg");
    assert_eq!(xattr(&first, "user.tierfs.local"), "no");
    assert_eq!(xattr(&first, "user.tierfs.state"), "offloaded");
    assert_eq!(cat_all(&a), offloaded_a);
    assert_eq!(cat_all(&m.mnt.join("t/ns/b")), offloaded_b);
    assert_eq!(
        m.admin_ok(&["namespaces", "get-offload-threshold", "t/ns"])
            .trim(),
        "0"
    );
    // The log goes on after the recovered segments: `cat topic/*` is the old, then the new.
    let mut expected = offloaded_a.clone();
    expected.extend(append_patterns(&a.join("active"), 30..34, ENTRY));
    assert_eq!(cat_all(&a), expected);
    wait_offloaded(&a, 3);
    let probe = StoreProbe::new(&config, &m.data);
    let topic = tierfs::name::TopicName::parse("t/ns/a").unwrap();
    let ids: Vec<u64> = probe
        .catalog(&prefix)
        .segments(&topic)
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, [1, 2, 3]);
}
