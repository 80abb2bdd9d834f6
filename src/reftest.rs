//! A reference-model test, after awslabs/mountpoint-s3's `reftests`: random sequences of steps
//! — topics created and deleted, entries of random sizes appended, segments sealed, offloaded
//! (to completion, or cut off by a crash), their local copies dropped as the deletion lag does,
//! retention, truncation, remounts, and crashes with a deletion half done — are applied to the
//! filesystem layer (`TierFs`, no kernel) over the local log, the offloader and an in-memory
//! store, and to a plain model of what each topic holds. After every step the two are compared:
//! the listing, every file's size, locality and bytes (read through the same calls the FUSE
//! adapter makes), and the bucket's objects, uploads and catalog.
//!
//! A crash is the mount's runtime shut down mid-flight (its tasks dropped where they stand)
//! with nothing flushed, then a fresh mount over the same data directory and store.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use crate::cache::{Cache, CacheConfig};
use crate::catalog::Catalog;
use crate::config::OffloadConfig;
use crate::fs::{ROOT_INO, RemoteTier, TierFs};
use crate::log::{LocalLog, RolloverPolicy, data_file_name};
use crate::metrics::Metrics;
use crate::name::{NamespaceName, TopicName};
use crate::offload::{
    Layout, LeaseSettings, MountView, Offloader, Policies, RetentionPolicy, State,
};
use crate::store::ObjectStore;
use crate::store::memory::MemoryStore;

const TOPICS: [&str; 2] = ["a", "b"];
const MIB: u64 = 1 << 20;

#[derive(Debug, Clone)]
enum Step {
    CreateTopic(usize),
    Append {
        topic: usize,
        len: usize,
        seed: u8,
    },
    Seal(usize),
    Offload(usize),
    /// An offload cut off by a crash after `after_ms`, then offloaded again after recovery.
    OffloadThenCrash {
        topic: usize,
        after_ms: u64,
    },
    /// The deletion lag passes for every offloaded segment of the topic.
    DropLocalCopies(usize),
    Retention {
        topic: usize,
        size_mb: u64,
    },
    /// Retention takes segments out of the log, then a crash before anything else is removed.
    RetentionThenCrash {
        topic: usize,
        size_mb: u64,
    },
    Truncate(usize),
    DeleteTopic(usize),
    Remount,
}

fn step() -> impl Strategy<Value = Step> {
    let topic = 0..TOPICS.len();
    prop_oneof![
        2 => topic.clone().prop_map(Step::CreateTopic),
        8 => (topic.clone(), 1..1_500_000usize, any::<u8>())
            .prop_map(|(topic, len, seed)| Step::Append { topic, len, seed }),
        4 => topic.clone().prop_map(Step::Seal),
        2 => topic.clone().prop_map(Step::Offload),
        1 => (topic.clone(), 0..20u64).prop_map(|(topic, after_ms)| Step::OffloadThenCrash { topic, after_ms }),
        2 => topic.clone().prop_map(Step::DropLocalCopies),
        3 => (topic.clone(), 1..3u64).prop_map(|(topic, size_mb)| Step::Retention { topic, size_mb }),
        1 => (topic.clone(), 1..3u64).prop_map(|(topic, size_mb)| Step::RetentionThenCrash { topic, size_mb }),
        1 => topic.clone().prop_map(Step::Truncate),
        1 => topic.clone().prop_map(Step::DeleteTopic),
        1 => Just(Step::Remount),
    ]
}

// ---- the model ----

#[derive(Debug, Clone)]
struct ModelSegment {
    id: u64,
    bytes: Vec<u8>,
    offloaded: bool,
    local: bool,
}

#[derive(Debug, Clone)]
struct ModelTopic {
    sealed: Vec<ModelSegment>,
    active_id: u64,
    active: Vec<u8>,
}

impl ModelTopic {
    fn new() -> Self {
        Self {
            sealed: Vec::new(),
            active_id: 1,
            active: Vec::new(),
        }
    }

    /// Pulsar's trimming, written out again: oldest first, a segment goes while what remains
    /// after it still holds the quota; the first one kept stops the walk.
    fn retain(&mut self, size_mb: u64) {
        let total: u64 = self
            .sealed
            .iter()
            .map(|s| s.bytes.len() as u64)
            .sum::<u64>()
            + self.active.len() as u64;
        let mut deleted = 0u64;
        let mut cut = 0;
        for segment in &self.sealed {
            deleted += segment.bytes.len() as u64;
            if total - deleted >= size_mb * MIB {
                cut += 1;
            } else {
                break;
            }
        }
        self.sealed.drain(..cut);
    }
}

#[derive(Debug, Default)]
struct Model {
    topics: BTreeMap<String, ModelTopic>,
}

// ---- the system ----

/// One mount: its runtime, log, offloader and filesystem.
struct Mount {
    runtime: tokio::runtime::Runtime,
    log: Arc<LocalLog>,
    offloader: Arc<Offloader>,
    fs: Arc<TierFs>,
}

struct System {
    _root: tempfile::TempDir,
    data: std::path::PathBuf,
    store: Arc<MemoryStore>,
    config: OffloadConfig,
    mount: Option<Mount>,
}

fn rollover_by_hand() -> RolloverPolicy {
    RolloverPolicy {
        max_entries: u64::MAX,
        min_age: Duration::ZERO,
        max_age: Duration::from_secs(1 << 30),
        max_size_bytes: u64::MAX,
    }
}

fn ns() -> NamespaceName {
    NamespaceName::new("t", "ns").unwrap()
}

fn topic_name(i: usize) -> TopicName {
    TopicName::new("t", "ns", TOPICS[i]).unwrap()
}

impl System {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let config = OffloadConfig {
            // Small blocks, so that reads of offloaded segments cross many of them.
            read_buffer_size: 64 << 10,
            ..OffloadConfig::default()
        };
        let mut system = Self {
            _root: root,
            data,
            store: Arc::new(MemoryStore::default()),
            config,
            mount: None,
        };
        system.open();
        let log = &system.mount().log;
        log.create_tenant("t").unwrap();
        log.create_namespace(&ns()).unwrap();
        system
    }

    fn mount(&self) -> &Mount {
        self.mount.as_ref().expect("mounted")
    }

    /// Mounts: opens the log, recovers the offloader against the bucket (settling interrupted
    /// offloads, finishing interrupted deletions), and builds the filesystem over both.
    fn open(&mut self) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (log, _) = LocalLog::open(&self.data, rollover_by_hand()).unwrap();
        let log = Arc::new(log);
        let store: Arc<dyn ObjectStore> = self.store.clone();
        let metrics = Arc::new(Metrics::default());
        let offloader = Offloader::new(
            Arc::clone(&log),
            Catalog::new(Arc::clone(&store), ""),
            self.config.clone(),
            Policies::load(&self.data, &self.config).unwrap(),
            Arc::clone(&metrics),
            LeaseSettings {
                data_dir: self.data.clone(),
                take_over: true,
            },
        );
        let fs = {
            let _entered = runtime.enter();
            Arc::new(TierFs::with_remote(
                Arc::clone(&log),
                Some(RemoteTier {
                    store: Arc::clone(&store),
                    prefer_remote: false,
                    cache: Cache::new(
                        store,
                        CacheConfig {
                            memory_bytes: 2 << 20,
                            ..CacheConfig::default()
                        },
                        metrics,
                    ),
                    runtime: runtime.handle().clone(),
                }),
            ))
        };
        offloader.attach_view(Arc::clone(&fs) as Arc<dyn MountView>);
        offloader.set_deletion_grace(Duration::ZERO);
        runtime.block_on(offloader.recover());
        self.mount = Some(Mount {
            runtime,
            log,
            offloader,
            fs,
        });
        for topic in 0..TOPICS.len() {
            self.wait_offloads(topic);
        }
        let mount = self.mount();
        mount
            .runtime
            .block_on(mount.offloader.drain_deletions())
            .unwrap();
    }

    /// A clean unmount: every entry synced, nothing running.
    fn unmount(&mut self) {
        for topic in 0..TOPICS.len() {
            self.wait_offloads(topic);
        }
        let mount = self.mount.take().unwrap();
        mount.log.sync_all().unwrap();
        mount.runtime.shutdown_timeout(Duration::from_secs(5));
    }

    /// A crash: the runtime's tasks are dropped where they stand (a file operation already
    /// under way completes, as a system call does when the process is killed); nothing is
    /// flushed.
    fn crash(&mut self) {
        let mount = self.mount.take().unwrap();
        mount.runtime.shutdown_timeout(Duration::from_secs(5));
    }

    fn wait_offloads(&self, topic: usize) {
        let name = topic_name(topic);
        for _ in 0..3000 {
            if self.mount().offloader.status(&name).status != State::Running {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the offload of {name} did not end");
    }

    fn start_offload(&self, topic: usize) {
        let mount = self.mount();
        let _entered = mount.runtime.enter();
        mount
            .offloader
            .offload_before(&topic_name(topic), u64::MAX)
            .unwrap();
    }

    fn set_retention(&self, size_mb: u64) {
        self.mount()
            .offloader
            .policies()
            .update(&ns(), |p| {
                p.retention = Some(RetentionPolicy {
                    time_minutes: -1,
                    size_mb: size_mb as i64,
                })
            })
            .unwrap();
    }

    fn lookup(&self, parent: u64, name: &str) -> Option<crate::fs::Attr> {
        self.mount().fs.lookup(parent, OsStr::new(name)).ok()
    }

    fn ns_ino(&self) -> u64 {
        let tenant = self.lookup(ROOT_INO, "t").expect("tenant t").ino;
        self.lookup(tenant, "ns").expect("namespace t/ns").ino
    }

    fn read_all(&self, ino: u64, size: u64) -> Vec<u8> {
        let mount = self.mount();
        let opened = mount.fs.open(ino, libc::O_RDONLY).unwrap();
        let mut out = Vec::new();
        while (out.len() as u64) < size {
            let chunk = mount
                .fs
                .read(opened.fh, out.len() as u64, 128 << 10)
                .wait(Some(mount.runtime.handle()))
                .unwrap();
            assert!(!chunk.is_empty(), "a short file at {}", out.len());
            out.extend_from_slice(&chunk);
        }
        mount.fs.release(opened.fh);
        out
    }

    fn apply(&mut self, step: &Step, model: &mut Model) {
        match *step {
            Step::CreateTopic(i) => {
                let created = self.mount().fs.mkdir(self.ns_ino(), OsStr::new(TOPICS[i]));
                let exists = model.topics.contains_key(TOPICS[i]);
                assert_eq!(created.is_err(), exists, "mkdir {}: {created:?}", TOPICS[i]);
                model
                    .topics
                    .entry(TOPICS[i].to_string())
                    .or_insert_with(ModelTopic::new);
            }
            Step::Append { topic, len, seed } => {
                let Some(modelled) = model.topics.get_mut(TOPICS[topic]) else {
                    return;
                };
                let bytes: Vec<u8> = (0..len)
                    .map(|i| (i as u8).wrapping_mul(seed) ^ seed)
                    .collect();
                let fs = &self.mount().fs;
                let dir = self.lookup(self.ns_ino(), TOPICS[topic]).unwrap().ino;
                let active = self.lookup(dir, "active").unwrap().ino;
                let opened = fs.open(active, libc::O_WRONLY | libc::O_APPEND).unwrap();
                fs.write(opened.fh, 0, &bytes).unwrap();
                fs.release(opened.fh);
                modelled.active.extend_from_slice(&bytes);
            }
            Step::Seal(topic) => {
                let Some(modelled) = model.topics.get_mut(TOPICS[topic]) else {
                    return;
                };
                let sealed = self
                    .mount()
                    .log
                    .topic(&topic_name(topic))
                    .unwrap()
                    .seal_now(SystemTime::now());
                assert_eq!(sealed.is_err(), modelled.active.is_empty(), "{sealed:?}");
                if sealed.is_ok() {
                    modelled.sealed.push(ModelSegment {
                        id: modelled.active_id,
                        bytes: std::mem::take(&mut modelled.active),
                        offloaded: false,
                        local: true,
                    });
                    modelled.active_id += 1;
                }
            }
            Step::Offload(topic) | Step::OffloadThenCrash { topic, .. } => {
                let Some(modelled) = model.topics.get_mut(TOPICS[topic]) else {
                    return;
                };
                self.wait_offloads(topic);
                self.start_offload(topic);
                if let Step::OffloadThenCrash { after_ms, .. } = *step {
                    std::thread::sleep(Duration::from_millis(after_ms));
                    self.crash();
                    self.open();
                    // Whatever the crash cut off was settled; offload the rest.
                    self.start_offload(topic);
                }
                self.wait_offloads(topic);
                let status = self.mount().offloader.status(&topic_name(topic));
                assert_eq!(status.status, State::Success, "{status:?}");
                for segment in &mut modelled.sealed {
                    segment.offloaded |= segment.local;
                }
            }
            Step::DropLocalCopies(topic) => {
                let Some(modelled) = model.topics.get_mut(TOPICS[topic]) else {
                    return;
                };
                self.wait_offloads(topic);
                let handle = self.mount().log.topic(&topic_name(topic)).unwrap();
                for segment in modelled
                    .sealed
                    .iter_mut()
                    .filter(|s| s.offloaded && s.local)
                {
                    handle.drop_local_copy(segment.id).unwrap();
                    self.mount()
                        .fs
                        .local_copy_gone(&topic_name(topic), segment.id);
                    segment.local = false;
                }
            }
            Step::Retention { topic, size_mb } | Step::RetentionThenCrash { topic, size_mb } => {
                let Some(modelled) = model.topics.get_mut(TOPICS[topic]) else {
                    return;
                };
                self.wait_offloads(topic);
                self.set_retention(size_mb);
                let mount = self.mount();
                let handle = mount.log.topic(&topic_name(topic)).unwrap();
                let now = crate::log::to_millis(SystemTime::now());
                mount
                    .runtime
                    .block_on(mount.offloader.apply_retention(&handle, now))
                    .unwrap();
                if matches!(step, Step::RetentionThenCrash { .. }) {
                    self.crash();
                    self.open();
                } else {
                    mount
                        .runtime
                        .block_on(mount.offloader.drain_deletions())
                        .unwrap();
                }
                self.mount()
                    .offloader
                    .policies()
                    .update(&ns(), |p| p.retention = None)
                    .unwrap();
                let before = modelled.sealed.len();
                modelled.retain(size_mb);
                if std::env::var_os("REFTEST_TRACE").is_some() {
                    eprintln!(
                        "  retention deleted {} segment(s)",
                        before - modelled.sealed.len()
                    );
                }
            }
            Step::Truncate(topic) => {
                let Some(modelled) = model.topics.get_mut(TOPICS[topic]) else {
                    return;
                };
                self.wait_offloads(topic);
                let mount = self.mount();
                mount
                    .runtime
                    .block_on(mount.offloader.truncate(&topic_name(topic)))
                    .unwrap();
                mount
                    .runtime
                    .block_on(mount.offloader.drain_deletions())
                    .unwrap();
                modelled.sealed.clear();
            }
            Step::DeleteTopic(topic) => {
                if model.topics.remove(TOPICS[topic]).is_none() {
                    return;
                }
                self.wait_offloads(topic);
                let mount = self.mount();
                mount
                    .runtime
                    .block_on(mount.offloader.delete_topic(&topic_name(topic)))
                    .unwrap();
                mount
                    .runtime
                    .block_on(mount.offloader.drain_deletions())
                    .unwrap();
            }
            Step::Remount => {
                self.unmount();
                self.open();
            }
        }
    }

    /// Compares everything a user or the bucket shows with the model.
    fn check(&self, model: &Model) {
        let ns_ino = self.ns_ino();
        let fs = &self.mount().fs;
        let topics: Vec<String> = fs
            .list(ns_ino)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(
            topics,
            model.topics.keys().cloned().collect::<Vec<_>>(),
            "the namespace's listing"
        );
        let layout = Layout::new("");
        let catalog = self.mount().offloader.catalog().state();
        let mut expected_objects = BTreeSet::new();
        for (name, modelled) in &model.topics {
            let topic = TopicName::new("t", "ns", name).unwrap();
            let dir = self.lookup(ns_ino, name).unwrap().ino;
            let mut expected: Vec<String> = modelled
                .sealed
                .iter()
                .map(|s| data_file_name(s.id))
                .collect();
            expected.push("active".into());
            let listed: Vec<String> = fs.list(dir).unwrap().into_iter().map(|e| e.name).collect();
            assert_eq!(listed, expected, "the listing of {topic}");
            for segment in &modelled.sealed {
                let attr = self.lookup(dir, &data_file_name(segment.id)).unwrap();
                assert_eq!(
                    attr.size,
                    segment.bytes.len() as u64,
                    "{topic} {}",
                    segment.id
                );
                assert_eq!(
                    attr.local, segment.local,
                    "locality of {topic} {}",
                    segment.id
                );
                assert!(
                    self.read_all(attr.ino, attr.size) == segment.bytes,
                    "the bytes of {topic} segment {}",
                    segment.id
                );
            }
            let active = self.lookup(dir, "active").unwrap();
            assert_eq!(active.size, modelled.active.len() as u64);
            assert!(self.read_all(active.ino, active.size) == modelled.active);
            let on_disk: BTreeSet<String> =
                std::fs::read_dir(self.mount().log.topic(&topic).unwrap().dir())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".seg"))
                    .collect();
            let local: BTreeSet<String> = modelled
                .sealed
                .iter()
                .filter(|s| s.local)
                .map(|s| s.id)
                .chain([modelled.active_id])
                .map(data_file_name)
                .collect();
            assert_eq!(on_disk, local, "the local segment files of {topic}");
            let offloaded: BTreeSet<u64> = modelled
                .sealed
                .iter()
                .filter(|s| s.offloaded)
                .map(|s| s.id)
                .collect();
            let recorded: BTreeSet<u64> = catalog.segments(&topic).map(|s| s.id).collect();
            assert_eq!(recorded, offloaded, "the catalog's segments of {topic}");
            for entry in catalog.segments(&topic) {
                expected_objects.insert(layout.data_key(&topic, entry.id, &entry.uuid));
                expected_objects.insert(layout.index_key(&topic, entry.id, &entry.uuid));
            }
        }
        let mount = self.mount();
        let objects: BTreeSet<String> = mount
            .runtime
            .block_on(self.store.list("t/"))
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(objects, expected_objects, "the bucket's segment objects");
        let uploads = mount
            .runtime
            .block_on(self.store.list_multipart(""))
            .unwrap();
        assert!(uploads.is_empty(), "uploads left open: {uploads:?}");
        assert!(
            mount.log.tombstones().is_empty(),
            "deleted topics not finished"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_filesystem_matches_the_model_after_every_step(steps in proptest::collection::vec(step(), 1..40)) {
        let mut system = System::new();
        let mut model = Model::default();
        let created = (0..TOPICS.len()).map(Step::CreateTopic);
        for step in created.chain(steps.iter().cloned()) {
            let step = &step;
            if std::env::var_os("REFTEST_TRACE").is_some() {
                eprintln!("{step:?}");
            }
            system.apply(step, &mut model);
            system.check(&model);
        }
        system.unmount();
    }
}
