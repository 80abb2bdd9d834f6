//! Faults between tierfs and the store, injected by a proxy on loopback: resets, stalls,
//! latency, 500/503 answers and truncated bodies. Reads return the right bytes or EIO within the
//! read timeout; offloads complete or report the store's reason and are retried; no local copy
//! goes before its offload is complete; the mount never panics or hangs.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::proxy::{Fault, FaultProxy};
use common::*;

const MIB: u64 = 1 << 20;

fn config_via(proxy: &FaultProxy, bucket: &str, prefix: &str, extra: &str) -> String {
    format!(
        "managedLedgerMinLedgerRolloverTimeMinutes=0\nmanagedLedgerOffloadDriver=S3\n\
         managedLedgerOffloadBucket={bucket}\nmanagedLedgerOffloadServiceEndpoint={}\n\
         managedLedgerOffloadPrefix={prefix}\nmanagedLedgerOffloadMaxBlockSizeInBytes=5242880\n{extra}",
        proxy.endpoint()
    )
}

#[test]
fn reads_under_faults_are_exact_or_eio_within_the_timeout() {
    let s3 = S3Env::get();
    let proxy = FaultProxy::start(&s3.endpoint);
    let config = config_via(
        &proxy,
        &s3.bucket,
        &unique_prefix("readfaults"),
        "managedLedgerMaxEntriesPerLedger=16\nmanagedLedgerOffloadDeletionLagMs=0\n",
    );
    // No disk cache: every fresh mount must read through the proxy.
    let flags = [
        "--read-timeout",
        "4s",
        "--cache-size",
        "2M",
        "--readahead-budget",
        "2M",
        "--no-disk-cache",
    ];
    let mut m = TestMount::start_with(&config, &[], &flags);
    let topic = m.topic("t/ns/faulty");
    // 512 KiB entries: each one write, one entry (a 1 MiB unaligned write would be split).
    append_patterns(&topic.join("active"), 0..17, (MIB / 2) as usize);
    m.admin_ok(&["topics", "offload", "-s", "0", "t/ns/faulty"]);
    assert_eq!(
        m.admin_ok(&["topics", "offload-status", "-w", "t/ns/faulty"]),
        "Offload was a success\n"
    );
    let segment = topic.join("00000000000000000001.seg");
    wait_for("the local copy to go", Duration::from_secs(30), || {
        xattr(&segment, "user.tierfs.local") == "no"
    });
    let expected = {
        let mut all = Vec::new();
        for i in 0..16 {
            all.extend(pattern(i, (MIB / 2) as usize));
        }
        all
    };
    let faults = [
        Fault::Reset,
        Fault::Status(500),
        Fault::Status(503),
        Fault::Truncate,
        Fault::Latency(Duration::from_millis(300)),
        Fault::Stall(Duration::from_secs(30)),
    ];
    for fault in faults {
        for every in [2, 1] {
            // A fresh mount: empty caches, every read goes through the proxy.
            m.stop();
            m.restart();
            drop_page_cache();
            let faults_before = proxy.faults.load(Ordering::SeqCst);
            proxy.set(fault, every);
            let file = fs::File::open(&segment).unwrap();
            let mut slowest = Duration::ZERO;
            let (mut ok, mut eio) = (0, 0);
            let reads = if matches!(fault, Fault::Stall(_)) {
                4
            } else {
                12
            };
            for i in 0..reads {
                let at = (i * 524_287) % (8 * MIB - 65_536);
                let mut buf = vec![0u8; 65_536];
                let started = Instant::now();
                match file.read_exact_at(&mut buf, at) {
                    Ok(()) => {
                        assert!(
                            buf == expected[at as usize..at as usize + 65_536],
                            "{fault:?}/{every}: wrong bytes at {at}"
                        );
                        ok += 1;
                    }
                    Err(e) => {
                        assert_eq!(
                            e.raw_os_error(),
                            Some(libc::EIO),
                            "{fault:?}/{every}: {e} at {at}"
                        );
                        eio += 1;
                    }
                }
                slowest = slowest.max(started.elapsed());
            }
            eprintln!("{fault:?} every {every}: {ok} exact, {eio} EIO, slowest {slowest:?}");
            assert!(
                proxy.faults.load(Ordering::SeqCst) > faults_before,
                "{fault:?}/{every}: the fault never reached a request"
            );
            if every == 1 && !matches!(fault, Fault::Latency(_)) {
                assert!(
                    eio > 0,
                    "{fault:?} on every request, yet every read succeeded"
                );
            }
            assert!(
                // One pread may be several FUSE reads, each bounded by --read-timeout (4 s).
                slowest < Duration::from_secs(20),
                "{fault:?}/{every}: a read took {slowest:?}"
            );
            if fault == Fault::Latency(Duration::from_millis(300)) {
                assert_eq!(eio, 0, "latency alone must not fail reads");
            }
            proxy.set(Fault::None, 1);
            let mut buf = vec![0u8; 65_536];
            file.read_exact_at(&mut buf, 3 * MIB)
                .unwrap_or_else(|e| panic!("{fault:?}: no recovery: {e}"));
            assert!(buf == expected[3 * MIB as usize..3 * MIB as usize + 65_536]);
            assert!(is_mounted(&m.mnt));
        }
    }
    assert!(!m.log_text().contains("panicked"), "the daemon panicked");
}

#[test]
fn offloads_under_faults_fail_with_the_reason_keep_local_data_and_are_retried() {
    let s3 = S3Env::get();
    let proxy = FaultProxy::start(&s3.endpoint);
    let prefix = unique_prefix("offloadfaults");
    let config = config_via(
        &proxy,
        &s3.bucket,
        &prefix,
        "managedLedgerMaxEntriesPerLedger=6\nmanagedLedgerOffloadDeletionLagMs=0\n",
    );
    let m = TestMount::start(&config);
    let topic = m.topic("t/ns/retry");
    let written = append_patterns(&topic.join("active"), 0..13, 300_000);
    let keeps_local_copies = |after: &str| {
        for name in listing(&topic).iter().filter(|n| n.ends_with(".seg")) {
            assert_eq!(
                xattr(&topic.join(name), "user.tierfs.local"),
                "yes",
                "{name} lost its local copy after {after}"
            );
        }
    };
    // Each fault on every request: the manual offload fails with the store's reason (after the
    // client's own retries), and every local copy stays.
    for (fault, reason_has) in [
        (Fault::Status(503), "SlowDown"),
        (Fault::Status(500), "500"),
        (Fault::Reset, ""),
        (Fault::Truncate, ""),
    ] {
        let before = proxy.faults.load(Ordering::SeqCst);
        proxy.set(fault, 1);
        m.admin_ok(&["topics", "offload", "-s", "0", "t/ns/retry"]);
        let out = m.admin(&["topics", "offload-status", "-w", "t/ns/retry"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let reason = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{fault:?}: {stdout}{reason}");
        assert!(stdout.contains("Error in offload"), "{fault:?}: {stdout}");
        assert!(
            reason.contains("Reason: Error offloading: ") && reason.contains(reason_has),
            "{fault:?}: {reason}"
        );
        assert!(
            proxy.faults.load(Ordering::SeqCst) > before,
            "{fault:?} never reached a request"
        );
        keeps_local_copies(&format!("{fault:?}"));
    }
    // Slow but working: the automatic offload (threshold 0) retries and completes.
    let before = proxy.faults.load(Ordering::SeqCst);
    proxy.set(Fault::Latency(Duration::from_millis(300)), 1);
    m.admin_ok(&["namespaces", "set-offload-threshold", "-s", "0", "t/ns"]);
    wait_for(
        "the automatic retry to offload everything",
        Duration::from_secs(60),
        || {
            listing(&topic)
                .iter()
                .filter(|n| n.ends_with(".seg"))
                .all(|n| xattr(&topic.join(n), "user.tierfs.state") == "offloaded")
        },
    );
    for name in listing(&topic).iter().filter(|n| n.ends_with(".seg")) {
        let path = topic.join(name);
        if xattr(&path, "user.tierfs.local") == "no" {
            assert_eq!(xattr(&path, "user.tierfs.state"), "offloaded");
        }
    }
    assert!(
        proxy.faults.load(Ordering::SeqCst) > before,
        "the latency never reached a request"
    );
    proxy.set(Fault::None, 1);
    drop_page_cache();
    assert!(cat_all(&topic) == written);
    let probe = StoreProbe::new(&config.replace(&proxy.endpoint(), &s3.endpoint), &m.data);
    assert!(probe.pending_uploads(&format!("{prefix}/")).is_empty());
    assert!(!m.log_text().contains("panicked"));
}

#[test]
fn offloads_work_with_a_store_speaking_gofakes3s_multipart_dialect() {
    // `rclone serve s3` (gofakes3) names the CreateMultipartUpload answer's root element
    // InitiateMultipartUpload; the AWS SDK refuses it, tierfs takes the upload id from it.
    let s3 = S3Env::get();
    let proxy = FaultProxy::start(&s3.endpoint);
    proxy.set(Fault::GofakeS3Multipart, 1);
    let config = config_via(
        &proxy,
        &s3.bucket,
        &unique_prefix("gofakes3"),
        "managedLedgerMaxEntriesPerLedger=12\nmanagedLedgerOffloadDeletionLagMs=0\n",
    );
    let m = TestMount::start(&config);
    let topic = m.topic("t/ns/dialect");
    let written = append_patterns(&topic.join("active"), 0..12, MIB as usize / 2);
    m.admin_ok(&["topics", "offload", "-s", "0", "t/ns/dialect"]);
    assert_eq!(
        m.admin_ok(&["topics", "offload-status", "-w", "t/ns/dialect"]),
        "Offload was a success\n"
    );
    let segment = topic.join("00000000000000000001.seg");
    wait_for("the local copy to go", Duration::from_secs(30), || {
        xattr(&segment, "user.tierfs.local") == "no"
    });
    drop_page_cache();
    assert!(fs::read(&segment).unwrap() == written, "read back differs");
}
