//! Reading offloaded segments through the cache on real mounts against a real S3 server:
//! byte-exact sequential and random reads, concurrent readers, the memory and disk bounds, the
//! disk cache across a remount with the store down, a corrupted object, and the store stopping
//! in the middle of reads.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;

/// Writes one sealed segment of `mib` MiB (1 MiB entries from page-aligned buffers via dd),
/// offloads it, waits until the local copy is gone; returns the segment's path and bytes.
fn offloaded_segment(m: &TestMount, topic: &str, mib: u64) -> (std::path::PathBuf, Vec<u8>) {
    let dir = m.topic(topic);
    append_random_mib(&dir, mib);
    let segment = dir.join("00000000000000000001.seg");
    let bytes = fs::read(&segment).unwrap();
    assert_eq!(bytes.len() as u64, mib * MIB);
    m.admin_ok(&["topics", "offload", "-s", "0", topic]);
    assert_eq!(
        m.admin_ok(&["topics", "offload-status", "-w", topic]),
        "Offload was a success\n"
    );
    wait_for("the local copy to go", Duration::from_secs(30), || {
        xattr(&segment, "user.tierfs.local") == "no"
    });
    // The kernel may still hold the pages read from the local copy; reads must reach tierfs.
    drop_page_cache();
    (segment, bytes)
}

/// Appends `mib` entries of 1 MiB of random bytes (page-aligned buffers, via dd) to a topic.
fn append_random_mib(topic: &Path, mib: u64) {
    let status = std::process::Command::new("dd")
        .args([
            "if=/dev/urandom",
            "bs=1M",
            &format!("count={mib}"),
            "oflag=append",
            "conv=notrunc",
            "status=none",
        ])
        .arg(format!("of={}", topic.join("active").display()))
        .status()
        .unwrap();
    assert!(status.success());
}

fn config(s3: &str, mib: u64) -> String {
    format!(
        "managedLedgerMaxEntriesPerLedger={mib}\nmanagedLedgerMinLedgerRolloverTimeMinutes=0\n\
         managedLedgerOffloadDeletionLagMs=0\n{s3}"
    )
}

#[test]
fn sequential_random_and_concurrent_reads_are_exact_and_bounded() {
    let s3 = S3Env::get();
    let cache_dir = tempfile::tempdir().unwrap();
    let m = TestMount::start_with(
        &config(&s3.config(&unique_prefix("reads")), 48),
        &[],
        &[
            "--cache-size",
            "8M",
            "--cache-dir",
            cache_dir.path().to_str().unwrap(),
            "--cache-max-size",
            "16M",
            "--readahead-budget",
            "16M",
        ],
    );
    let (segment, bytes) = offloaded_segment(&m, "t/ns/reads", 48);
    // Writing and uploading the segment hold their own buffers (an upload part is up to the
    // max block size); the bound under test is the read path's, so measure from here.
    let pid = m.pid().unwrap();
    let before_reads = current_rss(pid);
    reset_peak_rss(pid);

    drop_page_cache();
    assert!(
        fs::read(&segment).unwrap() == bytes,
        "sequential read differs"
    );
    // Its read-ahead was streamed: a few GETs while the window grew, then one for the rest
    // (a GET per window or per block would be dozens for 48 blocks).
    assert_eq!(metric(&m, "tierfs_readahead_streams_total"), 1.0);
    let gets = metric(&m, "tierfs_store_get_requests_total");
    assert!(gets <= 8.0, "{gets} GETs for one sequential read");
    let file = fs::File::open(&segment).unwrap();
    for i in 0..300u64 {
        let at = (i * 104_729 * 37) % (bytes.len() as u64 - 1);
        let len = (1 + (i * 7919) % 20_000).min(bytes.len() as u64 - at) as usize;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, at).unwrap();
        assert!(
            buf == bytes[at as usize..at as usize + len],
            "pread at {at}+{len} differs"
        );
    }
    let readers: Vec<_> = (0..6)
        .map(|r| {
            let (segment, expected) = (segment.clone(), bytes.clone());
            std::thread::spawn(move || {
                let file = fs::File::open(&segment).unwrap();
                for i in 0..50u64 {
                    let at = ((r * 50 + i) * 1_000_003) % (expected.len() as u64 - 4096);
                    let mut buf = vec![0u8; 4096];
                    file.read_exact_at(&mut buf, at).unwrap();
                    assert!(buf == expected[at as usize..at as usize + 4096]);
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    // Many sequential readers at once, each with its own read-ahead window.
    drop_page_cache();
    let sequential: Vec<_> = (0..4)
        .map(|_| {
            let (segment, expected) = (segment.clone(), bytes.clone());
            std::thread::spawn(move || assert!(fs::read(&segment).unwrap() == expected))
        })
        .collect();
    for r in sequential {
        r.join().unwrap();
    }
    let rss = peak_rss(pid);
    let disk = disk_usage(cache_dir.path());
    eprintln!(
        "RSS before reads {} MiB, peak during reads {} MiB, disk cache {} MiB",
        before_reads / MIB,
        rss / MIB,
        disk / MIB
    );
    assert!(
        disk <= 16 * MIB,
        "the disk cache holds {disk} bytes, over its 16 MiB bound"
    );
    // 8 MiB cache + 16 MiB in-flight budget (read-ahead and readers' own fetches alike), over
    // what the process held before; a 48 MiB segment must not fit.
    assert!(
        rss < before_reads + 40 * MIB,
        "peak RSS {} MiB during reads, {} MiB before",
        rss / MIB,
        before_reads / MIB
    );
    assert!(metric(&m, "tierfs_cache_bytes") <= (8 * MIB) as f64);
    assert!(metric(&m, "tierfs_store_get_requests_total") > 0.0);
    assert!(metric(&m, "tierfs_cache_hits_total") > 0.0);
    assert!(metric(&m, "tierfs_readahead_resets_total") > 0.0);
}

#[test]
fn a_corrupted_object_byte_is_eio_never_wrong_bytes() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("corrupt");
    let conf = config(&s3.config(&prefix), 4);
    let m = TestMount::start(&conf);
    let (segment, bytes) = offloaded_segment(&m, "t/ns/corrupt", 4);
    let probe = StoreProbe::new(&conf, &m.data);
    let key = probe
        .keys(&format!("{prefix}/"))
        .into_iter()
        .find(|k| k.ends_with(".seg"))
        .unwrap();
    let mut damaged = bytes.clone();
    damaged[(2 * MIB + 12345) as usize] ^= 0x01;
    probe.put(&key, damaged);
    let file = fs::File::open(&segment).unwrap();
    let mut buf = vec![0u8; 4096];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf == bytes[..4096], "an intact block reads fine");
    let err = file.read_exact_at(&mut buf, 2 * MIB + 12000).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(m.log_text().contains("fails its CRC32C check"));
    assert!(metric(&m, "tierfs_checksum_failures_total") >= 1.0);
}

#[test]
fn a_cold_segments_first_read_is_answered_from_a_checked_head() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("head");
    let conf = config(&s3.config(&prefix), 4);
    let mut m = TestMount::start(&conf);
    let (segment, bytes) = offloaded_segment(&m, "t/ns/head", 4);
    let probe = StoreProbe::new(&conf, &m.data);
    let keys = probe.keys(&format!("{prefix}/"));
    let index = probe.get(keys.iter().find(|k| k.ends_with(".idx")).unwrap());
    assert_eq!(
        &index[8..12],
        &2u32.to_le_bytes(),
        "index objects are version 2"
    );
    // A cold mount (the disk cache keeps the index object, not the blocks): the first 4 KiB,
    // then the rest, exact.
    m.stop();
    m.restart();
    drop_page_cache();
    let file = fs::File::open(&segment).unwrap();
    let mut buf = vec![0u8; 4096];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf == bytes[..4096]);
    drop(file);
    assert_eq!(fs::read(&segment).unwrap(), bytes);
    // A byte of the head damaged in the bucket: the head fails its check, then the block does,
    // and the first read is EIO (never the damaged bytes).
    let key = keys.iter().find(|k| k.ends_with(".seg")).unwrap();
    let mut damaged = bytes.clone();
    damaged[1000] ^= 0x01;
    probe.put(key, damaged);
    m.stop();
    let _ = fs::remove_dir_all(m.data.join("cache"));
    m.restart();
    drop_page_cache();
    let file = fs::File::open(&segment).unwrap();
    let err = file.read_exact_at(&mut buf, 0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let log = m.log_text();
    assert!(
        log.contains("fetched block head fails its CRC32C check"),
        "{log}"
    );
    assert!(
        log.contains("fetched block fails its CRC32C check"),
        "{log}"
    );
}

#[test]
fn the_default_disk_cache_keeps_what_is_read_at_random_and_serves_a_remount_while_the_store_is_down()
 {
    let s3 = OwnS3::start();
    // Defaults: a disk cache under the data directory, bounded by --cache-max-size.
    let flags = ["--cache-max-size", "64M", "--read-timeout", "5s"];
    let mut m = TestMount::start_with(&config(&s3.config("diskcache"), 8), &[], &flags);
    let cache_dir = m.data.join("cache");
    let disk_bytes = |m: &TestMount| metric(m, "tierfs_disk_cache_bytes");
    let (sequential, seq_bytes) = offloaded_segment(&m, "t/ns/scan", 8);
    drop_page_cache();
    assert!(fs::read(&sequential).unwrap() == seq_bytes);
    // A sequential read passes through memory: it is not fetched whole to disk, and at most
    // the few blocks whose reads the kernel sent out of order at its start went there.
    assert_eq!(metric(&m, "tierfs_segment_hydrations_total"), 0.0);
    assert!(
        disk_bytes(&m) < (8 * MIB) as f64,
        "a scan filled the disk cache: {} bytes",
        disk_bytes(&m)
    );
    // Reads at random: after three jumps the segment (8 MiB, within half the disk cache) is
    // fetched whole, to memory and disk.
    let (segment, bytes) = offloaded_segment(&m, "t/ns/warm", 8);
    drop_page_cache();
    let file = fs::File::open(&segment).unwrap();
    let mut buf = vec![0u8; 4096];
    for at in [5 * MIB, MIB + 4096, 7 * MIB, 3 * MIB + 8192] {
        file.read_exact_at(&mut buf, at).unwrap();
        assert!(buf == bytes[at as usize..at as usize + 4096]);
    }
    drop(file);
    wait_for("the segment on disk", Duration::from_secs(30), || {
        disk_bytes(&m) >= (8 * MIB) as f64
    });
    assert!(
        cache_dir.is_dir(),
        "the disk cache lives under the data directory"
    );
    assert_eq!(m.stop(), Some(0));
    s3.stop();
    m.restart();
    drop_page_cache();
    assert!(
        fs::read(&segment).unwrap() == bytes,
        "the disk cache did not serve the segment"
    );
    assert!(metric(&m, "tierfs_disk_cache_hits_total") >= 8.0);
}

#[test]
fn no_disk_cache_keeps_nothing_on_disk() {
    let s3 = OwnS3::start();
    let m = TestMount::start_with(&config(&s3.config("nodisk"), 8), &[], &["--no-disk-cache"]);
    let (segment, bytes) = offloaded_segment(&m, "t/ns/mem", 8);
    drop_page_cache();
    let file = fs::File::open(&segment).unwrap();
    let mut buf = vec![0u8; 4096];
    for at in [5 * MIB, MIB, 7 * MIB, 3 * MIB] {
        file.read_exact_at(&mut buf, at).unwrap();
        assert!(buf == bytes[at as usize..at as usize + 4096]);
    }
    assert!(!m.data.join("cache").exists());
    assert_eq!(metric(&m, "tierfs_disk_cache_bytes"), 0.0);
}

#[test]
fn a_store_that_stops_mid_read_gives_eio_in_bounded_time_then_recovers() {
    let s3 = OwnS3::start();
    let m = TestMount::start_with(
        &config(&s3.config("stop"), 16),
        &[],
        &["--read-timeout", "5s", "--cache-size", "4M"],
    );
    let (segment, bytes) = offloaded_segment(&m, "t/ns/flaky", 16);
    drop_page_cache();
    let file = fs::File::open(&segment).unwrap();
    let mut buf = vec![0u8; 4096];
    file.read_exact_at(&mut buf, 0).unwrap();
    s3.stop();
    let started = Instant::now();
    let err = file.read_exact_at(&mut buf, 12 * MIB).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(took < Duration::from_secs(15), "EIO took {took:?}");
    assert!(is_mounted(&m.mnt), "the mount must stay up");
    s3.resume();
    wait_for("reads to recover", Duration::from_secs(30), || {
        file.read_exact_at(&mut buf, 12 * MIB).is_ok()
    });
    assert!(buf == bytes[(12 * MIB) as usize..(12 * MIB) as usize + 4096]);
    eprintln!("EIO after {took:?} with the store down");
    let _ = Path::new("");
}

#[test]
fn read_ahead_crosses_into_the_next_segment_only_for_a_sequential_reader_near_the_end() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("cross-segment");
    // Four sealed segments of 16 MiB (1 MiB entries), offloaded, local copies gone.
    let m = TestMount::start(&config(&s3.config(&prefix), 16));
    let dir = m.topic("t/ns/cross");
    append_random_mib(&dir, 64);
    let segments: Vec<_> = (1..=4u64)
        .map(|id| dir.join(format!("{id:020}.seg")))
        .collect();
    let written: Vec<u8> = segments.iter().flat_map(|s| fs::read(s).unwrap()).collect();
    m.admin_ok(&["topics", "offload", "-s", "0", "t/ns/cross"]);
    assert_eq!(
        m.admin_ok(&["topics", "offload-status", "-w", "t/ns/cross"]),
        "Offload was a success\n"
    );
    wait_for("the local copies to go", Duration::from_secs(30), || {
        segments
            .iter()
            .all(|s| xattr(s, "user.tierfs.local") == "no")
    });
    drop_page_cache();
    let crossed = || metric(&m, "tierfs_readahead_next_segments_total");
    assert_eq!(crossed(), 0.0);

    // Reads at random never start the next segment.
    let file = fs::File::open(&segments[0]).unwrap();
    let mut buf = vec![0u8; 4096];
    for i in 0..20u64 {
        let offset = (i * 7919 * 4096) % (16 * MIB - 4096);
        file.read_exact_at(&mut buf, offset).unwrap();
        assert_eq!(buf, written[offset as usize..offset as usize + 4096]);
    }
    drop(file);
    // Nor does a sequential read that stops far from the end.
    let file = fs::File::open(&segments[1]).unwrap();
    let mut head = vec![0u8; 2 * MIB as usize];
    file.read_exact_at(&mut head, 0).unwrap();
    drop(file);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(crossed(), 0.0, "started by a random or a short reader");

    // `cat topic/*`: nearing the end of each segment starts the next one, once each.
    drop_page_cache();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cat {}/*.seg", dir.display()))
        .output()
        .unwrap();
    assert!(
        out.stdout == written,
        "cat topic/* differs from what was written"
    );
    assert_eq!(crossed(), 3.0, "segments 2, 3 and 4, each once");
}
