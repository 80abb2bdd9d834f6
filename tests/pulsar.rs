//! `tierfs mount --pulsar` and `tierfs pulsar messages|verify|scan` against a real S3 server,
//! over a bucket laid out by a writer of Pulsar's offload format (several blocks per ledger,
//! entries of every kind), with objects from before 2022 (no name metadata), incomplete
//! offloads, a duplicate copy, an open upload, a foreign object and damaged ledgers.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::*;
use tierfs::pulsar::proto::{
    BrokerEntryMetadata, KeyValue, MessageMetadata, SingleMessageMetadata,
};
use tierfs::pulsar::writer::{ObjectsMetadata, batch, compress, frame, upload, write_ledger};
use tierfs::store::ObjectStore;

const ORDERS: &str = "public/default/persistent/orders";
const LEGACY: &str = "public/default/persistent/legacy";
const V1: &str = "acme/us-west/ns/persistent/events";
const BLOCK: u64 = 5 << 20;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

/// One expected message: (batch index, key, payload, broker timestamp).
type Expected = (i32, Option<String>, Vec<u8>, Option<u64>);

/// Entry `i` of a ledger, of kind `i % 9`: plain with and without a checksum, with broker
/// entry metadata, a binary payload, and batches in each codec. Returns it and its messages.
fn entry(ledger: u64, i: u64, size: usize) -> (Vec<u8>, Vec<Expected>) {
    let body = |n: u64| -> Vec<u8> {
        let text = format!("ledger {ledger} entry {i} message {n} ");
        text.repeat(size / text.len() + 1).into_bytes()[..size].to_vec()
    };
    let meta = MessageMetadata {
        producer_name: format!("producer-{ledger}"),
        sequence_id: i,
        publish_time: 1_764_000_000_000 + i,
        properties: vec![kv("entry", &i.to_string())],
        partition_key: Some(format!("key-{i}")),
        ..Default::default()
    };
    let key = Some(format!("key-{i}"));
    match i % 9 {
        0 => (
            frame(&meta, &body(0), true, None),
            vec![(-1, key, body(0), None)],
        ),
        1 => (
            frame(&meta, &body(0), false, None),
            vec![(-1, key, body(0), None)],
        ),
        2 => {
            let broker = BrokerEntryMetadata {
                broker_timestamp: Some(1_764_000_000_500 + i),
                index: Some(i * 10),
            };
            (
                frame(&meta, &body(0), true, Some(broker)),
                vec![(-1, key, body(0), Some(1_764_000_000_500 + i))],
            )
        }
        3 => {
            let binary: Vec<u8> = (0..size).map(|b| (b * 7 + 0x80) as u8 | 0x80).collect();
            (
                frame(&meta, &binary, true, None),
                vec![(-1, key, binary, None)],
            )
        }
        kind => {
            let codec = (kind - 4) as i32;
            let bodies: Vec<Vec<u8>> = (0..3).map(body).collect();
            let singles: Vec<(SingleMessageMetadata, &[u8])> = bodies
                .iter()
                .enumerate()
                .map(|(n, b)| {
                    (
                        SingleMessageMetadata {
                            properties: vec![kv("n", &n.to_string())],
                            partition_key: Some(format!("k{n}")),
                            payload_size: b.len() as i32,
                            event_time: None,
                            sequence_id: Some(n as u64),
                        },
                        b.as_slice(),
                    )
                })
                .collect();
            let raw = batch(&singles);
            let meta = MessageMetadata {
                compression: Some(codec),
                uncompressed_size: Some(raw.len() as u32),
                num_messages_in_batch: Some(3),
                ..meta
            };
            let expected = bodies
                .iter()
                .enumerate()
                .map(|(n, b)| (n as i32, Some(format!("k{n}")), b.clone(), None))
                .collect();
            (
                frame(&meta, &compress(codec, &raw).unwrap(), true, None),
                expected,
            )
        }
    }
}

struct Written {
    entries: Vec<Vec<u8>>,
    messages: Vec<Vec<Expected>>,
}

fn ledger_entries(ledger: u64, count: u64, size: usize) -> Written {
    let (entries, messages) = (0..count).map(|i| entry(ledger, i, size)).unzip();
    Written { entries, messages }
}

struct Bucket {
    runtime: tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Bucket {
    fn new(config: &str, prefix: &str) -> Self {
        let props = tierfs::config::Properties::parse(config);
        let (config, _) = tierfs::config::Config::from_properties(&props, "test").unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = runtime
            .block_on(tierfs::store::connect(&config.offload, Path::new("/tmp")))
            .unwrap();
        Self {
            runtime,
            store,
            prefix: format!("{prefix}/"),
        }
    }

    fn offload(
        &self,
        uuid: &str,
        ledger: u64,
        written: &Written,
        name: Option<&str>,
        name_in_metadata: bool,
    ) -> (String, String) {
        let objects = write_ledger(&written.entries, BLOCK, name, 1_764_000_000_000).unwrap();
        let meta = ObjectsMetadata {
            managed_ledger: if name_in_metadata { name } else { None },
            cluster: name_in_metadata.then_some("pulsar-test"),
            ..ObjectsMetadata::default()
        };
        self.runtime
            .block_on(upload(
                self.store.as_ref(),
                &self.prefix,
                uuid,
                ledger,
                &objects,
                &meta,
            ))
            .unwrap()
    }

    /// Rewrites an object with the same metadata and `change` applied to its bytes.
    fn damage(&self, key: &str, change: impl FnOnce(&mut Vec<u8>)) {
        let (body, metadata) = self
            .runtime
            .block_on(self.store.get_with_metadata(key))
            .unwrap();
        let mut bytes = body.to_vec();
        change(&mut bytes);
        self.runtime
            .block_on(self.store.put_with_metadata(key, bytes.into(), &metadata))
            .unwrap();
    }
}

fn uuid(n: u32) -> String {
    format!("{n:08x}-0000-4000-8000-000000000000")
}

fn pulsar_cli(args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("pulsar").args(args).output().unwrap()
}

fn pulsar_mount(config: &str) -> TestMount {
    TestMount::start_with(config, &[], &["--pulsar", "--refresh-interval", "1s"])
}

#[test]
fn pulsars_offloaded_ledgers_are_files_their_messages_decoded_and_the_bucket_checked() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("pulsar");
    let config = s3.config(&prefix);
    let bucket = Bucket::new(&config, &prefix);

    // Ledger 10: one block; 11: three blocks (with padding), and an older copy of it;
    // 12: written before 2022 (name only inside the index); 13: no name anywhere;
    // 16: a v1 five-part name.
    let ten = ledger_entries(10, 50, 3000);
    let eleven = ledger_entries(11, 450, 30_000);
    let twelve = ledger_entries(12, 30, 500);
    let thirteen = ledger_entries(13, 9, 100);
    let sixteen = ledger_entries(16, 18, 200);
    bucket.offload(&uuid(1), 11, &eleven, Some(ORDERS), true);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    bucket.offload(&uuid(2), 10, &ten, Some(ORDERS), true);
    bucket.offload(&uuid(3), 11, &eleven, Some(ORDERS), true);
    bucket.offload(&uuid(4), 12, &twelve, Some(LEGACY), false);
    bucket.offload(&uuid(5), 13, &thirteen, None, false);
    bucket.offload(&uuid(6), 16, &sixteen, Some(V1), true);
    // Ledger 14: data without index; 15: an upload left open; a foreign object.
    let (data14, index14) = bucket.offload(&uuid(7), 14, &twelve, Some(ORDERS), true);
    bucket
        .runtime
        .block_on(bucket.store.delete(&index14))
        .unwrap();
    let open_key = format!("{}{}-ledger-15", bucket.prefix, uuid(8));
    bucket
        .runtime
        .block_on(bucket.store.create_multipart(&open_key))
        .unwrap();
    bucket
        .runtime
        .block_on(
            bucket
                .store
                .put(&format!("{}readme.txt", bucket.prefix), "x".into()),
        )
        .unwrap();

    let m = pulsar_mount(&config);
    let mnt = &m.mnt;
    assert_eq!(listing(mnt), ["_unknown", "acme", "public"]);
    assert_eq!(
        listing(&mnt.join(ORDERS)),
        ["00000000000000000010.ledger", "00000000000000000011.ledger"]
    );
    assert_eq!(listing(&mnt.join(LEGACY)), ["00000000000000000012.ledger"]);
    assert_eq!(
        listing(&mnt.join("_unknown")),
        ["00000000000000000013.ledger"]
    );
    assert_eq!(listing(&mnt.join(V1)), ["00000000000000000016.ledger"]);
    assert!(!data14.is_empty());

    // Content: the entries, concatenated, byte-exact; size, mtime and attributes.
    let file11 = mnt.join(ORDERS).join("00000000000000000011.ledger");
    let expected11 = eleven.entries.concat();
    assert!(expected11.len() as u64 > 2 * BLOCK, "several blocks");
    let meta = fs::metadata(&file11).unwrap();
    assert_eq!(meta.len(), expected11.len() as u64);
    assert_eq!(meta.mode() & 0o777, 0o444);
    let age = std::time::SystemTime::now()
        .duration_since(meta.modified().unwrap())
        .unwrap();
    assert!(
        age.as_secs() < 600,
        "mtime is the offload time, {age:?} ago"
    );
    assert!(
        fs::read(&file11).unwrap() == expected11,
        "ledger 11 byte-exact"
    );
    for (name, written) in [
        (format!("{ORDERS}/00000000000000000010.ledger"), &ten),
        (format!("{LEGACY}/00000000000000000012.ledger"), &twelve),
        (
            "_unknown/00000000000000000013.ledger".to_string(),
            &thirteen,
        ),
        (format!("{V1}/00000000000000000016.ledger"), &sixteen),
    ] {
        assert!(
            fs::read(mnt.join(&name)).unwrap() == written.entries.concat(),
            "{name}"
        );
    }
    assert_eq!(xattr(&file11, "user.pulsar.ledger"), "11");
    assert_eq!(xattr(&file11, "user.pulsar.entries"), "450");
    assert_eq!(
        xattr(&file11, "user.pulsar.uuid"),
        uuid(3),
        "the newest copy"
    );
    assert_eq!(xattr(&file11, "user.pulsar.cluster"), "pulsar-test");
    assert_eq!(xattr(&file11, "user.pulsar.software-version"), "3.0.7");
    assert_eq!(
        xattr(&file11, "user.pulsar.object"),
        format!("s3://{}/{}{}-ledger-11", s3.bucket, bucket.prefix, uuid(3))
    );

    // Random reads on a cold mount, and tail -c.
    drop_page_cache();
    let file = fs::File::open(&file11).unwrap();
    let mut seed = 7u64;
    for _ in 0..200 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let offset = (seed >> 11) % expected11.len() as u64;
        let len = ((seed >> 3) % 70_000) as usize + 1;
        let mut buf = vec![0; len];
        let n = file.read_at(&mut buf, offset).unwrap();
        let end = (offset as usize + len).min(expected11.len());
        assert!(
            buf[..n] == expected11[offset as usize..end],
            "pread at {offset}"
        );
    }
    let tail = Command::new("tail")
        .args(["-c", "100000"])
        .arg(&file11)
        .output()
        .unwrap();
    assert!(
        tail.stdout == expected11[expected11.len() - 100_000..],
        "tail -c"
    );

    // Every change is refused with EROFS.
    let orders = mnt.join(ORDERS);
    assert_eq!(errno(fs::create_dir(orders.join("x"))), libc::EROFS);
    assert_eq!(errno(fs::write(orders.join("new"), b"x")), libc::EROFS);
    assert_eq!(errno(fs::remove_file(&file11)), libc::EROFS);
    assert_eq!(
        errno(fs::OpenOptions::new().append(true).open(&file11)),
        libc::EROFS
    );
    assert!(m.log_text().contains("tierfs mount --pulsar"));

    // messages: one JSON line per message, in order, batches split.
    let out = pulsar_cli(&["messages", orders.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut wanted = Vec::new();
    for (ledger, written) in [(10u64, &ten), (11, &eleven)] {
        for (i, messages) in written.messages.iter().enumerate() {
            for m in messages {
                wanted.push((ledger, i as u64, m));
            }
        }
    }
    assert_eq!(lines.len(), wanted.len());
    for (line, (ledger, entry, (batch_index, key, payload, broker))) in lines.iter().zip(&wanted) {
        assert_eq!(line["ledger"], *ledger);
        assert_eq!(line["entry"], *entry);
        assert_eq!(line["batch_index"], *batch_index);
        assert_eq!(line["key"].as_str(), key.as_deref());
        assert_eq!(line["producer"], format!("producer-{ledger}"));
        match std::str::from_utf8(payload) {
            Ok(text) => assert_eq!(line["payload"], text),
            Err(_) => assert!(line["payload_base64"].is_string() && line.get("payload").is_none()),
        }
        assert_eq!(line["broker_timestamp"].as_u64(), *broker);
    }

    // verify: every ledger OK.
    let out = pulsar_cli(&["verify", mnt.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().filter(|l| l.contains(": OK")).count(),
        5,
        "{text}"
    );
    assert!(text.contains("ledger 11: 450 entries"), "{text}");

    // scan: every verdict, the open upload, totals.
    let out = pulsar_cli(&["scan", "--config", m.config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "OK",
        "INCOMPLETE",
        "DUPLICATE",
        "UNKNOWN",
        "UPLOAD",
        "readme.txt",
        ORDERS,
    ] {
        assert!(text.contains(want), "scan lacks {want}:\n{text}");
    }
    let out = pulsar_cli(&["scan", "--config", m.config.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["counts"]["OK"], 5);
    assert_eq!(report["counts"]["DUPLICATE"], 1);
    assert_eq!(report["counts"]["INCOMPLETE"], 1);
    assert_eq!(report["counts"]["UNKNOWN"], 1);
    assert_eq!(report["topics"][ORDERS]["ledgers"], 2);
    assert_eq!(report["topics"][ORDERS]["entries"], 500);
    assert_eq!(
        report["topics"][ORDERS]["bytes"],
        (ten.entries.concat().len() + expected11.len()) as u64
    );
    assert_eq!(report["uploads"].as_array().unwrap().len(), 1);
    let listed = |b: &Bucket| {
        b.runtime
            .block_on(b.store.list_multipart(&b.prefix))
            .unwrap()
            .len()
    };
    assert_eq!(listed(&bucket), 1, "scan deletes nothing");
    let out = pulsar_cli(&[
        "scan",
        "--config",
        m.config.to_str().unwrap(),
        "--abort-uploads-older-than",
        "0s",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("aborted"));
    assert_eq!(listed(&bucket), 0, "the stale upload is aborted");
}

#[test]
fn damaged_ledgers_give_eio_and_named_entries() {
    let s3 = S3Env::get();
    let prefix = unique_prefix("pulsar-damage");
    let config = s3.config(&prefix);
    let bucket = Bucket::new(&config, &prefix);
    let framing = ledger_entries(20, 40, 1000);
    let payload = ledger_entries(21, 40, 1000);
    let (data20, _) = bucket.offload(&uuid(1), 20, &framing, Some(ORDERS), true);
    let (data21, _) = bucket.offload(&uuid(2), 21, &payload, Some(ORDERS), true);
    // Ledger 20: entry 5's record says another entry id. Ledger 21: a payload byte of entry 9
    // (which carries a CRC32C) changes.
    let before5: usize = framing.entries[..5].iter().map(Vec::len).sum();
    bucket.damage(&data20, |b| b[128 + 5 * 12 + before5 + 4 + 7] ^= 0x01);
    let before9: usize = payload.entries[..9].iter().map(Vec::len).sum();
    let at9 = 128 + 10 * 12 + before9 + payload.entries[9].len() - 3;
    bucket.damage(&data21, |b| b[at9] ^= 0x20);

    let m = pulsar_mount(&config);
    let orders = m.mnt.join(ORDERS);
    let twenty = orders.join("00000000000000000020.ledger");
    assert_eq!(errno(fs::read(&twenty)), libc::EIO, "never wrong bytes");
    assert!(
        m.log_text().contains(&format!("{data20} at offset 0")),
        "the log names object and offset:\n{}",
        m.log_text()
    );
    // The payload damage is not in the framing: the mount serves the bytes; verify finds it.
    let twenty_one = orders.join("00000000000000000021.ledger");
    assert_eq!(
        fs::read(&twenty_one).unwrap().len(),
        payload.entries.concat().len()
    );
    let out = pulsar_cli(&["verify", twenty_one.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("21:9: CRC32C mismatch"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 BAD: 21:9"));
    let out = pulsar_cli(&["verify", twenty.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("20:0: cannot be read"), "{stderr}");
    // The mount's reason names the damaged entry record.
    assert!(stderr.contains("entry 5 was expected"), "{stderr}");
    assert!(xattr(&twenty, "user.pulsar.error").contains(&data20));
    // messages goes on past the bad entry of 21 (it decodes; its CRC is verify's business)
    // and names every unreadable entry of 20.
    let out = pulsar_cli(&["messages", orders.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("20:0:") && stderr.contains("20:39:"),
        "{stderr}"
    );
    let decoded = String::from_utf8_lossy(&out.stdout).lines().count();
    let wanted: usize = payload.messages.iter().map(Vec::len).sum();
    assert_eq!(decoded, wanted, "every message of ledger 21");
}

#[test]
fn the_filesystem_drivers_format_and_a_missing_config_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let conf = root.path().join("broker.conf");
    fs::write(
        &conf,
        "managedLedgerOffloadDriver=filesystem\nfileSystemURI=file:///tmp/x\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("mount")
            .arg(&mnt)
            .arg("--data-dir")
            .arg(root.path().join("data"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--pulsar", "--config", conf.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Hadoop"),
        "{out:?}"
    );
    let out = run(&["--pulsar"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs --config"),
        "{out:?}"
    );
    assert!(!is_mounted(&mnt));
}
