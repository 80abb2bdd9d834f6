//! Scale-out, for real: a 3-node Garage cluster (replication factor 3) on loopback behind
//! haproxy, one writer mount and three read-only mounts on one bucket. Readers check every
//! segment byte for byte while the writer keeps appending and offloading; one Garage node is
//! killed in the middle; reads stay exact (or EIO within the read timeout, then exact), the
//! offloads complete through the other nodes, and nothing is lost.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Entries per segment, and bytes per entry.
const PER_SEGMENT: u64 = 8;
const ENTRY: usize = 32 << 10;

/// The bytes segment `id` (1-based) holds: entries seeded by their position in the log.
fn segment_bytes(id: u64) -> Vec<u8> {
    let first = (id - 1) * PER_SEGMENT;
    (first..first + PER_SEGMENT)
        .flat_map(|seed| pattern(seed, ENTRY))
        .collect()
}

#[derive(Default)]
struct ReaderReport {
    verified: AtomicU64,
    eio: AtomicU64,
}

/// Reads every segment the mount shows, again and again, checking each against its expected
/// bytes; an EIO is counted and the segment read again. Any other error, or a wrong byte,
/// fails the test.
fn read_until(mnt: std::path::PathBuf, stop: Arc<AtomicBool>, report: Arc<ReaderReport>) {
    let topic = mnt.join("t/ns/log");
    while !stop.load(Ordering::Relaxed) {
        let names = if topic.exists() {
            listing(&topic)
        } else {
            Vec::new()
        };
        for name in names {
            let id: u64 = name.trim_end_matches(".seg").parse().unwrap();
            let started = Instant::now();
            loop {
                match fs::read(topic.join(&name)) {
                    Ok(bytes) => {
                        assert!(
                            bytes == segment_bytes(id),
                            "{}: segment {id} read wrong bytes ({} bytes)",
                            mnt.display(),
                            bytes.len()
                        );
                        report.verified.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        report.eio.fetch_add(1, Ordering::Relaxed);
                        assert!(
                            started.elapsed() < Duration::from_secs(60),
                            "segment {id} kept failing with EIO"
                        );
                    }
                    Err(e) => panic!("{}: reading segment {id}: {e}", mnt.display()),
                }
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_writer_and_three_readers_over_a_cluster_survive_a_node_loss() {
    let cluster = S3Cluster::start();
    let prefix = unique_prefix("scaleout");
    let config = format!(
        "managedLedgerMaxEntriesPerLedger={PER_SEGMENT}\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n\
         managedLedgerOffloadMaxBlockSizeInBytes=5242880\n{}",
        cluster.config(&prefix)
    );
    let writer = TestMount::start(&config);
    let topic = writer.topic("t/ns/log");
    writer.admin_ok(&["namespaces", "set-offload-threshold", "--size", "0", "t/ns"]);
    let readers: Vec<TestMount> = (0..3)
        .map(|_| {
            TestMount::start_with(
                &config,
                &[],
                &[
                    "--read-only",
                    "--refresh-interval",
                    "1s",
                    "--read-timeout",
                    "5s",
                ],
            )
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let reports: Vec<Arc<ReaderReport>> = (0..3).map(|_| Arc::default()).collect();
    let threads: Vec<_> = readers
        .iter()
        .zip(&reports)
        .map(|(reader, report)| {
            let (mnt, stop, report) = (reader.mnt.clone(), Arc::clone(&stop), Arc::clone(report));
            thread::spawn(move || read_until(mnt, stop, report))
        })
        .collect();

    // The writer appends 12 segments' worth, a segment at a time; node 2 dies after the 6th.
    let segments = 12;
    for id in 1..=segments {
        let first = (id - 1) * PER_SEGMENT;
        append_patterns(&topic.join("active"), first..first + PER_SEGMENT, ENTRY);
        if id == 6 {
            wait_for(
                "readers to see the first segments",
                Duration::from_secs(60),
                || {
                    reports
                        .iter()
                        .all(|r| r.verified.load(Ordering::Relaxed) >= 3)
                },
            );
            cluster.kill_node(2);
        }
        thread::sleep(Duration::from_millis(300));
    }
    // Every sealed segment offloads through the two nodes left.
    wait_for(
        "every segment to be offloaded",
        Duration::from_secs(120),
        || {
            let sealed: Vec<String> = listing(&topic)
                .into_iter()
                .filter(|n| n.ends_with(".seg"))
                .collect();
            sealed.len() as u64 == segments
                && sealed
                    .iter()
                    .all(|n| xattr(&topic.join(n), "user.tierfs.state") == "offloaded")
        },
    );
    // Every reader shows all of them, byte-exact.
    for reader in &readers {
        let shown = reader.mnt.join("t/ns/log");
        wait_for(
            "a reader to show every segment",
            Duration::from_secs(30),
            || shown.exists() && listing(&shown).len() as u64 == segments,
        );
    }
    let settled = reports
        .iter()
        .map(|r| r.verified.load(Ordering::Relaxed))
        .collect::<Vec<_>>();
    wait_for(
        "readers to verify the last segments",
        Duration::from_secs(60),
        || {
            reports
                .iter()
                .zip(&settled)
                .all(|(r, before)| r.verified.load(Ordering::Relaxed) >= before + segments)
        },
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a reader failed");
    }
    let expected: Vec<u8> = (1..=segments).flat_map(segment_bytes).collect();
    for reader in &readers {
        assert_eq!(cat_all(&reader.mnt.join("t/ns/log")), expected);
    }
    let probe = StoreProbe::new(&config, &writer.data);
    let catalog = probe.catalog(&prefix);
    let ids: Vec<u64> = catalog
        .segments(&tierfs::name::TopicName::parse("t/ns/log").unwrap())
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, (1..=segments).collect::<Vec<_>>());
    let counts: BTreeMap<usize, (u64, u64)> = reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                i,
                (
                    r.verified.load(Ordering::Relaxed),
                    r.eio.load(Ordering::Relaxed),
                ),
            )
        })
        .collect();
    eprintln!("reads verified / EIO per reader: {counts:?}");
}
