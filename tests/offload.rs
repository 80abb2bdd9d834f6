//! Offload through real mounts against the S3 server of scripts/s3-server.sh (Garage) and the
//! filesystem driver: manual and threshold offload, status strings, deletion lag, reads from the
//! store, aliyun-oss addressing, bad credentials, a missing bucket, and kill -9 mid-upload.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const ROLL_EVERY_5: &str =
    "managedLedgerMaxEntriesPerLedger=5\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n";

/// Appends `count` entries of varied sizes; returns all bytes written.
fn fill(topic: &Path, count: u64) -> Vec<u8> {
    let mut f = OpenOptions::new()
        .append(true)
        .open(topic.join("active"))
        .unwrap();
    let mut all = Vec::new();
    for i in 0..count {
        let entry = pattern(i, 100 + (i as usize * 7919) % 5000);
        f.write_all(&entry).unwrap();
        all.extend_from_slice(&entry);
    }
    all
}

fn sealed_names(topic: &Path) -> Vec<String> {
    listing(topic)
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect()
}

fn wait_all_remote(topic: &Path) {
    wait_for(
        "local copies to be deleted after the lag",
        Duration::from_secs(30),
        || {
            sealed_names(topic)
                .iter()
                .all(|n| xattr(&topic.join(n), "user.tierfs.local") == "no")
        },
    );
}

/// Reads every byte back, whole and by random preads, and compares.
fn check_reads(topic: &Path, written: &[u8]) {
    assert!(
        cat_all(topic) == written,
        "cat of the topic differs from what was written"
    );
    let mut offset_in_topic = 0u64;
    for name in listing(topic) {
        let file = fs::File::open(topic.join(&name)).unwrap();
        let len = file.metadata().unwrap().len();
        for i in 0..20u64 {
            let at = (i * 7_777_777) % len.max(1);
            let want = ((i * 131) % 9000 + 1).min(len - at) as usize;
            let mut buf = vec![0u8; want];
            file.read_exact_at(&mut buf, at).unwrap();
            let start = (offset_in_topic + at) as usize;
            assert!(
                buf == written[start..start + want],
                "pread of {name} at {at} differs"
            );
        }
        offset_in_topic += len;
    }
}

#[test]
fn manual_offload_moves_segments_to_s3_and_reads_follow() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("manual");
    let config = format!(
        "{ROLL_EVERY_5}managedLedgerOffloadDeletionLagMs=500\n{}",
        s3.config(&prefix)
    );
    let m = TestMount::start(&config);
    let topic = m.topic("t/ns/orders");
    let written = fill(&topic, 23);
    assert_eq!(sealed_names(&topic).len(), 4);

    let out = m.admin(&["topics", "offload-status", "t/ns/orders"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Offload has not been run for persistent://t/ns/orders since broker startup\n"
    );
    assert_eq!(
        m.admin_ok(&["topics", "offload", "--size-threshold", "0", "t/ns/orders"]),
        "Offload triggered for persistent://t/ns/orders for messages before 5:0:-1\n"
    );
    assert_eq!(
        m.admin_ok(&["topics", "offload-status", "-w", "t/ns/orders"]),
        "Offload was a success\n"
    );
    let first = topic.join("00000000000000000001.seg");
    assert_eq!(xattr(&first, "user.tierfs.state"), "offloaded");
    let url = xattr(&first, "user.tierfs.object");
    assert!(
        url.starts_with(&format!(
            "s3://{}/{prefix}/t/ns/orders/00000000000000000001-",
            s3.bucket
        )),
        "{url}"
    );

    wait_all_remote(&topic);
    let local_dir = m.data.join("topics/t/ns/orders");
    assert!(
        !local_dir.join("00000000000000000001.seg").exists(),
        "the local copy is still there"
    );
    let sizes: u64 = listing(&topic)
        .iter()
        .map(|n| fs::metadata(topic.join(n)).unwrap().len())
        .sum();
    assert_eq!(
        sizes,
        written.len() as u64,
        "ls -l sizes must not change when a segment leaves local disk"
    );
    check_reads(&topic, &written);

    let stats: serde_json::Value =
        serde_json::from_str(&m.admin_ok(&["topics", "stats-internal", "t/ns/orders"])).unwrap();
    let offloaded: Vec<bool> = stats["ledgers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["offloaded"].as_bool().unwrap())
        .collect();
    assert_eq!(offloaded, vec![true, true, true, true, false]);

    // The bucket alone describes the topic: data and index objects plus the manifest object.
    let probe = StoreProbe::new(&config, &m.data);
    let keys = probe.keys(&format!("{prefix}/"));
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".seg")).count(),
        4,
        "{keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".idx")).count(),
        4,
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("{prefix}/_tierfs/head.json")),
        "{keys:?}"
    );
    let referenced = probe.referenced_keys(&prefix, "t/ns/orders");
    assert_eq!(
        referenced,
        probe.segment_keys(&prefix),
        "objects and the bucket's catalog disagree"
    );
    let catalog = probe.catalog(&prefix);
    let orders = tierfs::name::TopicName::parse("t/ns/orders").unwrap();
    let layout = tierfs::offload::Layout::new(&prefix);
    assert_eq!(catalog.segments(&orders).count(), 4);
    for segment in catalog.segments(&orders) {
        let index_key = layout.index_key(&orders, segment.id, &segment.uuid);
        let index = tierfs::offload::IndexObject::decode(&probe.get(&index_key)).unwrap();
        assert_eq!(index.entry_ends.len() as u64, segment.entries);
        assert_eq!(index.size, segment.size);
        let data = probe.get(&layout.data_key(&orders, segment.id, &segment.uuid));
        assert_eq!(crc32c::crc32c(&data), segment.crc32c);
        assert_eq!(index.block_size, 1 << 20);
    }
    assert!(probe.pending_uploads(&format!("{prefix}/")).is_empty());
    assert_eq!(
        m.admin_ok(&["topics", "offload", "-s", "1G", "t/ns/orders"]),
        "Nothing to offload\n"
    );
}

#[test]
fn namespace_threshold_offloads_as_segments_seal() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("threshold");
    // 1000-byte entries, 2 per segment: each sealed segment is 2000 bytes.
    let config = format!(
        "managedLedgerMaxEntriesPerLedger=2\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n{}",
        s3.config(&prefix)
    );
    let m = TestMount::start(&config);
    let topic = m.topic("t/ns/auto");
    assert_eq!(
        m.admin_ok(&["namespaces", "get-offload-threshold", "t/ns"]),
        "-1\n"
    );
    m.admin_ok(&[
        "namespaces",
        "set-offload-threshold",
        "--size",
        "5K",
        "t/ns",
    ]);
    assert_eq!(
        m.admin_ok(&["namespaces", "get-offload-threshold", "t/ns"]),
        "5120\n"
    );
    assert_eq!(
        m.admin_ok(&["namespaces", "get-offload-deletion-lag", "t/ns"]),
        "Unset for namespace. Defaulting to broker setting.\n"
    );
    m.admin_ok(&[
        "namespaces",
        "set-offload-deletion-lag",
        "--lag",
        "10m",
        "t/ns",
    ]);
    assert_eq!(
        m.admin_ok(&["namespaces", "get-offload-deletion-lag", "t/ns"]),
        "10 minute(s)\n"
    );
    let written = append_patterns(&topic.join("active"), 0..12, 1000);
    // Six sealed segments of 2000 bytes; the newest two (4000 ≤ 5120) stay, the rest go.
    wait_for("automatic offload", Duration::from_secs(30), || {
        (1..=4).all(|id| {
            xattr(&topic.join(format!("{id:020}.seg")), "user.tierfs.state") == "offloaded"
        })
    });
    for id in 5..=6 {
        assert_eq!(
            xattr(&topic.join(format!("{id:020}.seg")), "user.tierfs.state"),
            "sealed"
        );
    }
    // The 10-minute lag keeps every local copy.
    assert!(
        sealed_names(&topic)
            .iter()
            .all(|n| xattr(&topic.join(n), "user.tierfs.local") == "yes")
    );
    assert_eq!(cat_all(&topic), written);
    m.admin_ok(&["namespaces", "remove-offload-threshold", "t/ns"]);
    assert_eq!(
        m.admin_ok(&["namespaces", "get-offload-threshold", "t/ns"]),
        "-1\n"
    );
    m.admin_ok(&["namespaces", "clear-offload-deletion-lag", "t/ns"]);
    let bad = m.admin(&[
        "namespaces",
        "set-offload-threshold",
        "--size",
        "10MB",
        "t/ns",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Invalid size '10MB'"));
}

#[test]
fn filesystem_driver_is_the_default() {
    let m = TestMount::start(&format!(
        "{ROLL_EVERY_5}managedLedgerOffloadDeletionLagMs=0\n"
    ));
    let topic = m.topic("t/ns/local");
    let written = fill(&topic, 12);
    m.admin_ok(&["topics", "offload", "-s", "0", "t/ns/local"]);
    assert_eq!(
        m.admin_ok(&["topics", "offload-status", "-w", "t/ns/local"]),
        "Offload was a success\n"
    );
    wait_all_remote(&topic);
    let url = xattr(
        &topic.join("00000000000000000001.seg"),
        "user.tierfs.object",
    );
    assert!(
        url.starts_with(&format!("file://{}/offload/t/ns/local/", m.data.display())),
        "{url}"
    );
    // Two segments: a data and an index object each; the catalog beside the tenants.
    assert_eq!(
        fs::read_dir(m.data.join("offload/t/ns/local"))
            .unwrap()
            .count(),
        4
    );
    assert!(m.data.join("offload/_tierfs/head.json").exists());
    check_reads(&topic, &written);
}

/// A loopback TCP proxy to the S3 server that records the head of the first request on each
/// connection, to see the Host header and content encodings tierfs sends.
fn recording_proxy(upstream: &str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let upstream = upstream.trim_start_matches("http://").to_string();
    let seen = Arc::clone(&heads);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, seen) = (upstream.clone(), Arc::clone(&seen));
            std::thread::spawn(move || {
                let mut client = client;
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let Ok(mut server) = TcpStream::connect(&upstream) else {
                    return;
                };
                let _ = server.write_all(&head);
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
                let _ = std::io::copy(&mut client, &mut server);
                let _ = server.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, heads)
}

#[test]
fn aliyun_oss_driver_sends_virtual_hosted_requests_without_checksum_trailers() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("oss");
    let (port, heads) = recording_proxy(&s3.endpoint);
    let config = format!(
        "{ROLL_EVERY_5}managedLedgerOffloadDeletionLagMs=0\nmanagedLedgerOffloadDriver=aliyun-oss\n\
         managedLedgerOffloadBucket={}\nmanagedLedgerOffloadServiceEndpoint=http://localhost:{port}\n\
         managedLedgerOffloadPrefix={prefix}\n",
        s3.oss_bucket
    );
    let m = TestMount::start_with_env(
        &config,
        &[
            ("ALIYUN_OSS_ACCESS_KEY_ID", &s3.key_id),
            ("ALIYUN_OSS_ACCESS_KEY_SECRET", &s3.secret),
        ],
    );
    let topic = m.topic("t/ns/oss");
    let written = fill(&topic, 11);
    m.admin_ok(&["topics", "offload", "-s", "0", "t/ns/oss"]);
    let status = m.admin(&["topics", "offload-status", "-w", "t/ns/oss"]);
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "Offload was a success\n",
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    wait_all_remote(&topic);
    check_reads(&topic, &written);
    let url = xattr(
        &topic.join("00000000000000000001.seg"),
        "user.tierfs.object",
    );
    assert!(
        url.starts_with(&format!("oss://{}/{prefix}/", s3.oss_bucket)),
        "{url}"
    );
    let heads = heads.lock().unwrap();
    assert!(!heads.is_empty());
    let want_host = format!("host: {}.localhost:{port}", s3.oss_bucket);
    for head in heads.iter() {
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains(&want_host), "not virtual-hosted: {head}");
        assert!(
            !lower.contains("aws-chunked") && !lower.contains("x-amz-trailer"),
            "checksum trailer sent: {head}"
        );
    }
}

#[test]
fn wrong_credentials_fail_the_offload_with_the_stores_reason() {
    let s3 = S3Env::get();
    // Automatic offload on from the start: a forbidden store must be retried at the
    // re-evaluation period, not in a tight loop.
    let config = format!(
        "{ROLL_EVERY_5}managedLedgerOffloadAutoTriggerSizeThresholdBytes=0\n{}s3ManagedLedgerOffloadCredentialId=GK00000000000000000000dead\n\
         s3ManagedLedgerOffloadCredentialSecret=0000000000000000000000000000000000000000000000000000000000000000\n",
        s3.config(&unique_prefix("badcreds"))
    );
    let m = TestMount::start(&config);
    let topic = m.topic("t/ns/denied");
    let written = fill(&topic, 7);
    m.admin_ok(&["topics", "offload", "-s", "0", "t/ns/denied"]);
    let out = m.admin(&["topics", "offload-status", "-w", "t/ns/denied"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Error in offload\n");
    let reason = String::from_utf8_lossy(&out.stderr);
    assert!(
        reason.contains("Reason: Error offloading: access denied"),
        "{reason}"
    );
    assert!(reason.contains("HTTP 403"), "{reason}");
    assert!(
        !reason.contains("0000000000000000000000000000000000000000000000000000000000000000"),
        "secret leaked: {reason}"
    );
    assert!(
        !m.log_text()
            .contains("0000000000000000000000000000000000000000000000000000000000000000"),
        "secret in the log"
    );
    let first = topic.join("00000000000000000001.seg");
    assert_eq!(xattr(&first, "user.tierfs.state"), "sealed");
    assert_eq!(xattr(&first, "user.tierfs.local"), "yes");
    assert_eq!(cat_all(&topic), written);
    // Namespace policies live in the bucket: a change is refused with the store's reason.
    let policy = m.admin(&["namespaces", "set-offload-threshold", "-s", "0", "t/ns"]);
    assert_eq!(policy.status.code(), Some(1));
    let refusal = String::from_utf8_lossy(&policy.stderr);
    assert!(
        refusal.contains("cannot record the namespace policy in the bucket: access denied"),
        "{refusal}"
    );
    append_patterns(&topic.join("active"), 100..102, 100);
    std::thread::sleep(Duration::from_secs(4));
    let failures = m.log_text().matches("offload failed").count();
    assert!(
        (1..=3).contains(&failures),
        "{failures} failed attempts in about 4 s"
    );
}

#[test]
fn a_missing_bucket_fails_the_offload_with_the_stores_reason() {
    let s3 = S3Env::get();
    let config = format!(
        "{ROLL_EVERY_5}managedLedgerOffloadDriver=S3\nmanagedLedgerOffloadBucket=tierfs-no-such-bucket\n\
         managedLedgerOffloadServiceEndpoint={}\n",
        s3.endpoint
    );
    let m = TestMount::start(&config);
    let topic = m.topic("t/ns/nobucket");
    fill(&topic, 6);
    m.admin_ok(&["topics", "offload", "-s", "0", "t/ns/nobucket"]);
    let out = m.admin(&["topics", "offload-status", "-w", "t/ns/nobucket"]);
    assert_eq!(out.status.code(), Some(1));
    let reason = String::from_utf8_lossy(&out.stderr);
    assert!(reason.contains("NoSuchBucket"), "{reason}");
    assert_eq!(
        xattr(&topic.join("00000000000000000001.seg"), "user.tierfs.local"),
        "yes"
    );
}

#[test]
fn kill_9_during_a_multipart_upload_leaves_no_orphan_and_the_offload_is_retried() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("crash");
    // One 160 MiB segment (320 entries of 512 KiB), uploaded in 5 MiB parts one at a time.
    let config = format!(
        "managedLedgerMaxEntriesPerLedger=320\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n\
         managedLedgerOffloadMaxBlockSizeInBytes=5242880\nmanagedLedgerOffloadMaxThreads=1\n\
         managedLedgerOffloadDeletionLagMs=0\n{}",
        s3.config(&prefix)
    );
    let mut m = TestMount::start(&config);
    let topic = m.topic("t/ns/big");
    let written = append_patterns(&topic.join("active"), 0..321, 512 << 10);
    assert_eq!(sealed_names(&topic).len(), 1);
    m.admin_ok(&["topics", "offload", "-s", "0", "t/ns/big"]);
    let again = m.admin(&["topics", "offload", "-s", "0", "t/ns/big"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "a second offload while one runs must be refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("Offload already in progress"));
    let probe = StoreProbe::new(&config, &m.data);
    wait_for(
        "the multipart upload to start",
        Duration::from_secs(30),
        || !probe.pending_uploads(&format!("{prefix}/")).is_empty(),
    );
    // The upload id is recorded right after the store hands it out: kill after that.
    let manifest_path = m.data.join("topics/t/ns/big/manifest.json");
    wait_for(
        "the upload id to be recorded",
        Duration::from_secs(30),
        || fs::read_to_string(&manifest_path).is_ok_and(|t| t.contains("upload_id")),
    );
    m.kill9();
    let manifest = fs::read_to_string(&manifest_path).unwrap();
    assert!(
        manifest.contains("upload_id") && !manifest.contains("completed_ms"),
        "the kill did not land mid-upload:\n{manifest}"
    );
    assert_eq!(
        probe.pending_uploads(&format!("{prefix}/")).len(),
        1,
        "the crash should leave its upload behind"
    );

    m.restart();
    assert_eq!(
        wait_offload_status(
            &m,
            "t/ns/big",
            "Offload was a success",
            Duration::from_secs(120)
        ),
        "Offload was a success\n"
    );
    assert!(
        m.log_text()
            .contains("cleaning an offload interrupted by a crash")
    );
    assert!(
        probe.pending_uploads(&format!("{prefix}/")).is_empty(),
        "an orphaned multipart upload remains"
    );
    let keys = probe.segment_keys(&prefix);
    assert_eq!(
        keys.len(),
        2,
        "exactly one data object and one index object: {keys:?}"
    );
    assert_eq!(keys, probe.referenced_keys(&prefix, "t/ns/big"));
    wait_all_remote(&topic);
    assert!(
        cat_all(&topic) == written,
        "data differs after the crash and the retry"
    );
}

#[test]
fn bad_offload_configuration_fails_before_mounting() {
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let cases = [
        (
            "managedLedgerOffloadDriver=aws-s3\nmanagedLedgerOffloadRegion=eu-west-1\n",
            "Bucket cannot be empty for aws-s3 offload",
        ),
        (
            "managedLedgerOffloadDriver=aws-s3\nmanagedLedgerOffloadBucket=b\n",
            "Either Region or ServiceEndpoint must specified for aws-s3 offload",
        ),
        (
            "managedLedgerOffloadDriver=hdfs\n",
            "No offloader found for driver 'hdfs'",
        ),
        (
            "managedLedgerOffloadMaxBlockSizeInBytes=4194304\n",
            "cannot be less than 5MB",
        ),
        (
            "managedLedgerOffloadDriver=aliyun-oss\nmanagedLedgerOffloadBucket=b\nmanagedLedgerOffloadServiceEndpoint=http://oss-cn-hongkong.aliyuncs.com\n",
            "ALIYUN_OSS_ACCESS_KEY_ID",
        ),
    ];
    for (text, message) in cases {
        let conf = root.path().join("broker.conf");
        fs::write(&conf, text).unwrap();
        let out = std::process::Command::new(BIN)
            .arg("mount")
            .arg(&mnt)
            .arg("--data-dir")
            .arg(root.path().join("data"))
            .arg("--config")
            .arg(&conf)
            .env_remove("ALIYUN_OSS_ACCESS_KEY_ID")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{text}: {stderr}");
        assert!(!is_mounted(&mnt));
    }
}

#[test]
fn scan_offloaded_finds_and_removes_unreferenced_objects_and_stale_uploads() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("scan");
    let config = format!(
        "{ROLL_EVERY_5}managedLedgerOffloadDeletionLagMs=0\n{}",
        s3.config(&prefix)
    );
    let m = TestMount::start(&config);
    let topic = m.topic("t/ns/kept");
    let written = fill(&topic, 12);
    m.admin_ok(&["topics", "offload", "-s", "0", "t/ns/kept"]);
    assert_eq!(
        m.admin_ok(&["topics", "offload-status", "-w", "t/ns/kept"]),
        "Offload was a success\n"
    );
    wait_all_remote(&topic);
    assert_eq!(
        m.admin_ok(&["scan-offloaded", "t/ns"]),
        "Found 0 unreferenced object(s) and 0 stale multipart upload(s) in t/ns\n"
    );
    let probe = StoreProbe::new(&config, &m.data);
    probe.put(
        &format!("{prefix}/t/ns/gone/00000000000000000001-x.seg"),
        b"stray".to_vec(),
    );
    probe.start_upload(&format!("{prefix}/t/ns/kept/00000000000000000009-y.seg"));
    // A segment another writer's catalog commit references: never unreferenced.
    let foreign_key = format!("{prefix}/t/ns/foreign/00000000000000000001-z.seg");
    probe.put(&foreign_key, b"theirs".to_vec());
    probe.commit(
        &prefix,
        tierfs::catalog::Change::Offloaded {
            topic: "t/ns/foreign".into(),
            segment: tierfs::catalog::SegmentEntry {
                id: 1,
                uuid: "z".into(),
                entries: 1,
                size: 6,
                crc32c: crc32c::crc32c(b"theirs"),
                created_ms: 0,
                sealed_ms: 0,
                offloaded_ms: 0,
            },
        },
    );
    let found = m.admin_ok(&["scan-offloaded", "t/ns"]);
    assert!(!found.contains("foreign"), "{found}");
    assert!(
        found.contains(&format!(
            "Unreferenced object: s3://{}/{prefix}/t/ns/gone/00000000000000000001-x.seg (5 bytes)",
            s3.bucket
        )),
        "{found}"
    );
    assert!(found.contains("Stale multipart upload: "), "{found}");
    assert!(
        found.ends_with("Found 1 unreferenced object(s) and 1 stale multipart upload(s) in t/ns\n"),
        "{found}"
    );
    let removed = m.admin_ok(&["scan-offloaded", "--delete", "t/ns"]);
    assert!(
        removed.ends_with(
            "Removed 1 unreferenced object(s) and 1 stale multipart upload(s) in t/ns\n"
        ),
        "{removed}"
    );
    assert_eq!(
        m.admin_ok(&["scan-offloaded", "t/ns"]),
        "Found 0 unreferenced object(s) and 0 stale multipart upload(s) in t/ns\n"
    );
    assert!(probe.pending_uploads(&format!("{prefix}/")).is_empty());
    assert_eq!(
        probe.get(&foreign_key),
        b"theirs",
        "an object the catalog references was deleted"
    );
    check_reads(&topic, &written);
}
