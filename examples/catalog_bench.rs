//! Helper of `scripts/bench-catalog.sh`: writes large catalogs into a real bucket and measures
//! what one offload's commit costs in a long topic. Not part of tierfs itself.
//!
//! ```text
//! catalog_bench populate --config broker.conf --topics 100 --segments 1000 [--objects]
//! catalog_bench offload-cost --config broker.conf --base 100000 --offloads 256
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use tierfs::catalog::{Catalog, Change, SegmentEntry};
use tierfs::config::{Config, Properties};
use tierfs::name::TopicName;
use tierfs::offload::Layout;
use tierfs::store::ObjectStore;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Commits TOPICS topics of SEGMENTS offloaded segments each (one commit per topic)
    Populate {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 100)]
        topics: u64,
        #[arg(long, default_value_t = 1000)]
        segments: u64,
        /// Also write each segment's data and index objects (one 64-byte entry each)
        #[arg(long)]
        objects: bool,
    },
    /// Fills one topic with BASE segments (1,000 a commit), offloads WARMUP more one at a
    /// time (the bulk-loaded records get paged at the first checkpoint), then OFFLOADS more,
    /// and reports the catalog bytes each of those commits wrote
    OffloadCost {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        base: u64,
        #[arg(long, default_value_t = 256)]
        warmup: u64,
        #[arg(long, default_value_t = 256)]
        offloads: u64,
    },
}

fn entry(id: u64, size: u64) -> SegmentEntry {
    SegmentEntry {
        id,
        uuid: uuid::Uuid::new_v4().to_string(),
        entries: 1,
        size,
        crc32c: 0,
        created_ms: 1_764_000_000_000 + id,
        sealed_ms: 1_764_000_000_000 + id,
        offloaded_ms: 1_764_000_000_000 + id,
    }
}

async fn open(config: &PathBuf) -> (Arc<dyn ObjectStore>, Config) {
    let text = std::fs::read_to_string(config).expect("read the config");
    let (config, _) =
        Config::from_properties(&Properties::parse(&text), "bench").expect("valid config");
    let store = tierfs::store::connect(&config.offload, std::path::Path::new("/tmp"))
        .await
        .expect("connect");
    (store, config)
}

/// Writes a segment's data object (one entry) and index object, as an offload would.
async fn write_objects(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    topic: &TopicName,
    e: &SegmentEntry,
) {
    let data = vec![b'x'; e.size as usize];
    let index = tierfs::offload::IndexObject {
        segment: e.id,
        size: e.size,
        block_size: 1 << 20,
        segment_crc32c: crc32c::crc32c(&data),
        entry_ends: vec![e.size],
        block_crcs: vec![crc32c::crc32c(&data)],
        head_size: 0,
        head_crcs: Vec::new(),
    };
    store
        .put(&layout.data_key(topic, e.id, &e.uuid), Bytes::from(data))
        .await
        .expect("put data");
    store
        .put(
            &layout.index_key(topic, e.id, &e.uuid),
            Bytes::from(index.encode()),
        )
        .await
        .expect("put index");
}

#[tokio::main]
async fn main() {
    match Args::parse().command {
        Command::Populate {
            config,
            topics,
            segments,
            objects,
        } => {
            let (store, config) = open(&config).await;
            let layout = Layout::new(&config.offload.prefix);
            let catalog = Catalog::new(Arc::clone(&store), &config.offload.prefix);
            catalog.load().await.expect("load");
            let started = Instant::now();
            for t in 0..topics {
                let topic =
                    TopicName::new("bench", &format!("ns{}", t % 10), &format!("topic-{t:03}"))
                        .unwrap();
                let entries: Vec<SegmentEntry> = (1..=segments).map(|id| entry(id, 64)).collect();
                if objects {
                    let mut writes = tokio::task::JoinSet::new();
                    for chunk in entries.chunks(entries.len().div_ceil(32).max(1)) {
                        let (store, layout, topic, chunk) = (
                            Arc::clone(&store),
                            layout.clone(),
                            topic.clone(),
                            chunk.to_vec(),
                        );
                        writes.spawn(async move {
                            for e in &chunk {
                                write_objects(&store, &layout, &topic, e).await;
                            }
                        });
                    }
                    while writes.join_next().await.is_some() {}
                }
                let changes = entries
                    .into_iter()
                    .map(|segment| Change::Offloaded {
                        topic: topic.to_string(),
                        segment,
                    })
                    .collect();
                catalog.commit(changes).await.expect("commit");
            }
            println!(
                "populated {topics} topics x {segments} segments in {:.1} s: catalog seq {}, {} bytes of catalog written, objects: {}",
                started.elapsed().as_secs_f64(),
                catalog.state().seq,
                catalog.bytes_written(),
                if objects {
                    "written"
                } else {
                    "none (metadata only)"
                }
            );
        }
        Command::OffloadCost {
            config,
            base,
            warmup,
            offloads,
        } => {
            let (store, config) = open(&config).await;
            let catalog = Catalog::new(store, &config.offload.prefix);
            catalog.load().await.expect("load");
            let topic = "cost/ns/long";
            let mut id = 0;
            while id < base {
                let batch: Vec<Change> = (id + 1..=(id + 1000).min(base))
                    .map(|i| Change::Offloaded {
                        topic: topic.to_string(),
                        segment: entry(i, 64 << 20),
                    })
                    .collect();
                id += batch.len() as u64;
                catalog.commit(batch).await.expect("commit");
            }
            // One offload's commit: what a writer commits when a segment's objects are done.
            let offload = |id: u64| {
                catalog.commit(vec![Change::Offloaded {
                    topic: topic.to_string(),
                    segment: entry(id, 64 << 20),
                }])
            };
            for _ in 0..warmup {
                id += 1;
                offload(id).await.expect("commit");
            }
            let mut costs = Vec::new();
            let mut requests = Vec::new();
            for _ in 0..offloads {
                id += 1;
                let (bytes, asked) = (catalog.bytes_written(), catalog.requests());
                offload(id).await.expect("commit");
                costs.push(catalog.bytes_written() - bytes);
                requests.push(catalog.requests() - asked);
            }
            let total: u64 = costs.iter().sum();
            costs.sort_unstable();
            requests.sort_unstable();
            println!(
                "one offload in a topic of {base}+{warmup} segments, {offloads} offloads: median {} bytes, mean {} bytes (checkpoints and pages included), max {} bytes; median {} requests",
                costs[costs.len() / 2],
                total / offloads,
                costs[costs.len() - 1],
                requests[requests.len() / 2]
            );
        }
    }
}
