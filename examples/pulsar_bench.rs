//! Writes Pulsar offload buckets for `scripts/bench-pulsar.sh`, through tierfs's writer of
//! Pulsar's format, and times a raw GET of an object for comparison.
//!
//! ```text
//! pulsar_bench big  --config broker.conf --size 256M --block 64M   # one ledger; prints its data key
//! pulsar_bench many --config broker.conf --ledgers 10000           # 100 topics of small ledgers
//! pulsar_bench raw-get --config broker.conf --key KEY               # MiB/s of one GET
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tierfs::pulsar::proto::{KeyValue, MessageMetadata};
use tierfs::pulsar::writer::{ObjectsMetadata, frame, upload, write_ledger};
use tierfs::store::ObjectStore;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn entry(i: u64, size: usize) -> Vec<u8> {
    let meta = MessageMetadata {
        producer_name: "bench-producer".into(),
        sequence_id: i,
        publish_time: 1_764_000_000_000 + i,
        properties: vec![KeyValue {
            key: "n".into(),
            value: i.to_string(),
        }],
        partition_key: Some(format!("key-{}", i % 1000)),
        ..Default::default()
    };
    let line = format!("message {i} of the benchmark ledger; ");
    let payload = line.repeat(size / line.len() + 1).into_bytes();
    frame(&meta, &payload[..size], true, None)
}

async fn store_of(config: &Path) -> (Arc<dyn ObjectStore>, String) {
    let (config, _) = tierfs::config::Config::load(config).expect("config");
    let store = tierfs::store::connect(&config.offload, Path::new("/tmp"))
        .await
        .expect("store");
    let prefix = match config.offload.prefix.as_str() {
        "" => String::new(),
        p => format!("{p}/"),
    };
    (store, prefix)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = PathBuf::from(arg(&args, "--config").expect("--config"));
    let (store, prefix) = store_of(&config).await;
    match args.first().map(String::as_str) {
        Some("big") => {
            let size = tierfs::units::parse_bytes(&arg(&args, "--size").unwrap_or("256M".into()))
                .expect("--size");
            let block = tierfs::units::parse_bytes(&arg(&args, "--block").unwrap_or("64M".into()))
                .expect("--block");
            let entry_size = 16 << 10;
            let count = size / (entry_size as u64 + 60);
            let entries: Vec<Vec<u8>> = (0..count).map(|i| entry(i, entry_size)).collect();
            let written = write_ledger(
                &entries,
                block,
                Some("bench/default/persistent/big"),
                1_764_000_000_000,
            )
            .expect("ledger");
            let meta = ObjectsMetadata {
                managed_ledger: Some("bench/default/persistent/big"),
                cluster: Some("bench"),
                ..ObjectsMetadata::default()
            };
            let (data, _) = upload(
                store.as_ref(),
                &prefix,
                "0b0b0b0b-0000-4000-8000-000000000001",
                1,
                &written,
                &meta,
            )
            .await
            .expect("upload");
            println!("{data}");
        }
        Some("many") => {
            let ledgers: u64 = arg(&args, "--ledgers")
                .unwrap_or("10000".into())
                .parse()
                .expect("--ledgers");
            let started = Instant::now();
            let limit = Arc::new(tokio::sync::Semaphore::new(64));
            let mut tasks = tokio::task::JoinSet::new();
            for id in 0..ledgers {
                let (store, prefix, limit) =
                    (Arc::clone(&store), prefix.clone(), Arc::clone(&limit));
                tasks.spawn(async move {
                    let _permit = limit.acquire_owned().await.expect("semaphore");
                    let topic = format!("bench/default/persistent/topic-{:03}", id % 100);
                    let entries: Vec<Vec<u8>> = (0..4).map(|i| entry(i, 200)).collect();
                    let written = write_ledger(&entries, 1 << 20, Some(&topic), 1_764_000_000_000)
                        .expect("ledger");
                    let meta = ObjectsMetadata {
                        managed_ledger: Some(&topic),
                        multipart: false,
                        ..ObjectsMetadata::default()
                    };
                    let uuid = format!("{:08x}-0000-4000-8000-{:012x}", id, id);
                    upload(store.as_ref(), &prefix, &uuid, id, &written, &meta)
                        .await
                        .expect("upload");
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("task");
            }
            eprintln!(
                "wrote {ledgers} ledgers in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        Some("raw-get") => {
            let key = arg(&args, "--key").expect("--key");
            let size = store.head(&key).await.expect("head").expect("exists");
            let started = Instant::now();
            let pieces = store.get_range(&key, 0..size, 8 << 20).await.expect("get");
            let secs = started.elapsed().as_secs_f64();
            let got: usize = pieces.iter().map(|p| p.len()).sum();
            assert_eq!(got as u64, size);
            println!("{:.1}", size as f64 / secs / (1 << 20) as f64);
        }
        _ => {
            eprintln!("usage: pulsar_bench big|many|raw-get --config broker.conf …");
            std::process::exit(2);
        }
    }
}
