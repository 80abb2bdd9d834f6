//! `tierfs mount`: brings a mount up and takes it down, in order.
//!
//! Up: validate the configuration, lock the data directory, recover the local log, bind the
//! admin endpoint, mount FUSE, then publish the admin address (so a CLI that finds it can rely
//! on the mount being there) and start the rollover timer. Down, on SIGINT/SIGTERM or an
//! external `fusermount3 -u`: unmount, stop the timer and the endpoint, fsync every topic,
//! withdraw the address, release the lock.
//!
//! A read-only mount (`--read-only`) has no local log: it reads the bucket's catalog, mounts
//! what it records, and refreshes it every `--refresh-interval`; its data directory holds only
//! the lock, the admin address and the disk cache.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::admin::read_only::{self, ReadOnlyState};
use crate::admin::server::AdminState;
use crate::admin::{endpoint, server};
use crate::cache::{Cache, CacheConfig};
use crate::catalog::{Catalog, CatalogError, Lease, LeaseError};
use crate::config::ReadPriority;
use crate::config::{Config, ConfigError, Secret};
use crate::fs::{BucketTree, Node, RemoteTier, TierFs};
use crate::fuse::{FuseAdapter, MountSettings};
use crate::log::{DataDirLock, LocalLog, LogError, SealListener};
use crate::metrics::Metrics;
use crate::name::TopicName;
use crate::offload::{Layout, LeaseSettings, Offloader, Policies, PolicyError};
use crate::store::{self, StoreError};

#[derive(Debug, Clone)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    pub data_dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub admin_listen: SocketAddr,
    /// Required on every admin request; mandatory when the endpoint is not on loopback.
    pub admin_token: Option<Secret>,
    pub settings: MountSettings,
    pub cache: CacheConfig,
    /// Show the bucket's catalog read-only instead of a local log.
    pub read_only: bool,
    /// How often a read-only mount looks for changes in the bucket.
    pub refresh_interval: Duration,
    /// How long a deleted segment's objects stay in the bucket after the deletion is recorded.
    pub deletion_grace: Duration,
    /// Take the prefix's writer lease even from a writer that looks alive.
    pub take_over: bool,
    /// Show the ledgers Pulsar's own offloader left in the bucket, read-only.
    pub pulsar: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("mountpoint {path}: {reason}")]
    Mountpoint { path: PathBuf, reason: String },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot mount at {path}: {source}")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serve the admin endpoint on {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "the admin endpoint would listen on {0}, which is not loopback: set --admin-token (or TIERFS_ADMIN_TOKEN) so that every request must carry it"
    )]
    AdminWithoutToken(SocketAddr),
    #[error("cannot open the offload store: {0}")]
    Store(StoreError),
    #[error("cannot read the bucket's catalog: {0}")]
    Catalog(CatalogError),
    #[error(transparent)]
    Lease(LeaseError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("--pulsar: {0}")]
    Pulsar(String),
    #[error(
        "the read buffer size (managedLedgerOffloadReadBufferSizeInBytes = {block} bytes) is larger than the memory cache (--cache-size {cache} bytes): no block read from the store could be kept; raise --cache-size or lower the read buffer size"
    )]
    CacheSmallerThanBlock { block: u64, cache: u64 },
}

/// Why the mount is going down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Signal(&'static str),
    Unmounted,
}

pub fn run(options: MountOptions) -> Result<(), MountError> {
    if !options.admin_listen.ip().is_loopback() && options.admin_token.is_none() {
        return Err(MountError::AdminWithoutToken(options.admin_listen));
    }
    let config = load_config(options.config_file.as_deref())?;
    check_mountpoint(&options.mountpoint)?;
    std::fs::create_dir_all(&options.data_dir).map_err(|source| MountError::DataDir {
        path: options.data_dir.clone(),
        source,
    })?;
    let _lock = DataDirLock::acquire(&options.data_dir, &options.mountpoint)?;
    if options.pulsar {
        return run_pulsar(&options, &config);
    }
    if config.offload.read_buffer_size > options.cache.memory_bytes {
        return Err(MountError::CacheSmallerThanBlock {
            block: config.offload.read_buffer_size,
            cache: options.cache.memory_bytes,
        });
    }
    if options.read_only {
        return run_read_only(&options, &config);
    }
    let (sealed_tx, sealed_rx) = tokio::sync::mpsc::unbounded_channel::<TopicName>();
    let on_seal: SealListener = Arc::new(move |topic: &TopicName| {
        let _ = sealed_tx.send(topic.clone());
    });
    let (log, report) =
        LocalLog::open_with_listener(&options.data_dir, config.rollover, Some(on_seal))?;
    info!(
        topics = report.topics,
        repaired = report.repaired.len(),
        data_dir = %options.data_dir.display(),
        "local log recovered"
    );
    let log = Arc::new(log);

    let runtime = start_runtime()?;
    let metrics = Arc::new(Metrics::default());
    let catalog = connect_catalog(&runtime, &config, &options.data_dir, &metrics)?;
    let lease = take_lease_at_start(&runtime, &catalog, &options)?;
    let policies = Policies::load(&options.data_dir, &config.offload)?
        .with_default_retention(config.retention);
    if let Some(retention) = config.retention {
        info!(%retention, "default retention: sealed segments past it are deleted everywhere");
    }
    let offloader = Offloader::new(
        Arc::clone(&log),
        Arc::clone(&catalog),
        config.offload.clone(),
        policies,
        Arc::clone(&metrics),
        LeaseSettings {
            data_dir: options.data_dir.clone(),
            take_over: options.take_over,
        },
    );
    offloader.set_deletion_grace(options.deletion_grace);
    if let Some(lease) = lease {
        offloader.hold_lease(lease);
    }
    let (listener, admin_addr) = bind_admin(&runtime, options.admin_listen)?;
    let fs = Arc::new(TierFs::with_remote(
        Arc::clone(&log),
        Some(remote_tier(&runtime, &catalog, &options, &config, &metrics)),
    ));
    let session = mount_fuse(&fs, &options)?;
    offloader.attach_view(Arc::clone(&fs) as Arc<dyn crate::offload::MountView>);
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = runtime.spawn(server::serve(
        listener,
        server::router(AdminState {
            log: Arc::clone(&log),
            offloader: Arc::clone(&offloader),
            metrics: Arc::clone(&metrics),
            fs: Some(Arc::clone(&fs)),
            token: options.admin_token.clone(),
            runtime_configuration: Arc::new(config.runtime_configuration(&options.data_dir)),
        }),
        async {
            let _ = admin_stopped.await;
        },
    ));
    let (stop_offloader, offloader_stopped) = tokio::sync::watch::channel(false);
    let offloads = runtime.spawn(Arc::clone(&offloader).run(sealed_rx, offloader_stopped));
    let url =
        endpoint::publish(&options.data_dir, admin_addr).map_err(|source| MountError::Admin {
            addr: admin_addr,
            source,
        })?;
    let (stop_timer, timer) =
        start_rollover_timer(Arc::clone(&log), config.rollover.timer_period());
    info!(
        mountpoint = %options.mountpoint.display(),
        admin = %url,
        "tierfs mounted"
    );

    serve_until_stopped(&runtime, session, &options.mountpoint);
    let _ = stop_timer.send(());
    let _ = timer.join();
    let _ = stop_admin.send(());
    let _ = runtime.block_on(admin);
    let _ = stop_offloader.send(true);
    let _ = runtime.block_on(offloads);
    if offloader.busy() {
        info!("stopping with offloads in flight; they are cleaned and retried at the next mount");
    }
    runtime.block_on(async {
        if tokio::time::timeout(Duration::from_secs(5), offloader.release_lease())
            .await
            .is_err()
        {
            warn!(
                "the store did not answer in time to release the writer lease; it expires by itself"
            );
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    endpoint::withdraw(&options.data_dir);
    log.sync_all()?;
    info!("tierfs stopped cleanly; every entry is on disk");
    Ok(())
}

/// A read-only mount of the bucket's catalog (see the module doc).
fn run_read_only(options: &MountOptions, config: &Config) -> Result<(), MountError> {
    let runtime = start_runtime()?;
    let metrics = Arc::new(Metrics::default());
    let catalog = open_catalog(&runtime, config, &options.data_dir, &metrics)?;
    let state = catalog.state();
    info!(
        topics = state.topics().count(),
        segments = state.segment_count(),
        seq = state.seq,
        "bucket catalog read"
    );
    let (listener, admin_addr) = bind_admin(&runtime, options.admin_listen)?;
    let fs = Arc::new(TierFs::read_only(
        BucketTree {
            catalog: Arc::clone(&catalog),
            layout: Layout::new(&config.offload.prefix),
            mounted: SystemTime::now(),
            data_dir: options.data_dir.clone(),
        },
        remote_tier(&runtime, &catalog, options, config, &metrics),
    ));
    let session = mount_fuse(&fs, options)?;
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = runtime.spawn(server::serve(
        listener,
        read_only::router(ReadOnlyState {
            catalog: Arc::clone(&catalog),
            metrics: Arc::clone(&metrics),
            token: options.admin_token.clone(),
            runtime_configuration: Arc::new(config.runtime_configuration(&options.data_dir)),
        }),
        async {
            let _ = admin_stopped.await;
        },
    ));
    let (stop_refresh, refresh_stopped) = tokio::sync::watch::channel(false);
    let refresher = runtime.spawn(follow_bucket(
        Arc::clone(&fs),
        Arc::clone(&catalog),
        Arc::clone(&metrics),
        options.refresh_interval,
        refresh_stopped,
    ));
    let url =
        endpoint::publish(&options.data_dir, admin_addr).map_err(|source| MountError::Admin {
            addr: admin_addr,
            source,
        })?;
    info!(
        mountpoint = %options.mountpoint.display(),
        admin = %url,
        refresh = ?options.refresh_interval,
        "tierfs mounted read-only over the bucket"
    );
    serve_until_stopped(&runtime, session, &options.mountpoint);
    let _ = stop_refresh.send(true);
    let _ = runtime.block_on(refresher);
    let _ = stop_admin.send(());
    let _ = runtime.block_on(admin);
    runtime.shutdown_timeout(Duration::from_secs(5));
    endpoint::withdraw(&options.data_dir);
    info!("tierfs stopped cleanly");
    Ok(())
}

/// A read-only mount of the ledgers Pulsar's offloader left in a bucket (`--pulsar`): the
/// bucket is surveyed, one file shown per complete ledger, and surveyed again every
/// `--refresh-interval`.
fn run_pulsar(options: &MountOptions, config: &Config) -> Result<(), MountError> {
    use crate::pulsar::{bucket::IndexCache, reader::LedgerCache, tree::PulsarBucket};
    if options.config_file.is_none() {
        return Err(MountError::Pulsar(
            "needs --config: a broker.conf naming the offload bucket (managedLedgerOffloadDriver, s3ManagedLedgerOffloadBucket, …)".into(),
        ));
    }
    if !config.offload.driver.is_object_store() {
        return Err(MountError::Pulsar(format!(
            "the {} driver writes Hadoop MapFiles, which tierfs does not read; --pulsar mounts buckets of the aws-s3, S3 and aliyun-oss drivers",
            config.offload.driver
        )));
    }
    let runtime = start_runtime()?;
    let metrics = Arc::new(Metrics::default());
    let store = runtime
        .block_on(store::connect(&config.offload, &options.data_dir))
        .map_err(MountError::Store)?;
    let cache = LedgerCache::new(
        runtime.handle().clone(),
        Arc::clone(&store),
        options.cache.memory_bytes,
        options.cache.read_timeout,
        Arc::clone(&metrics),
    );
    let index_dir = options.data_dir.join("pulsar-index");
    let index_cache = IndexCache::open(&index_dir).map_err(|source| MountError::DataDir {
        path: index_dir,
        source,
    })?;
    let prefix = match config.offload.prefix.as_str() {
        "" => String::new(),
        p => format!("{p}/"),
    };
    let bucket = runtime
        .block_on(PulsarBucket::open(
            cache,
            prefix,
            Some(index_cache),
            options.data_dir.clone(),
        ))
        .map_err(MountError::Store)?;
    let bucket = Arc::new(bucket);
    let survey = bucket.survey();
    info!(
        store = %store.url(""),
        ledgers = bucket.tree().len(),
        copies = survey.copies.len(),
        uploads = survey.uploads.len(),
        "Pulsar offload bucket surveyed"
    );
    let (listener, admin_addr) = bind_admin(&runtime, options.admin_listen)?;
    let fs = Arc::new(TierFs::pulsar(
        Arc::clone(&bucket),
        RemoteTier {
            store: Arc::clone(&store),
            prefer_remote: true,
            cache: Cache::new(
                Arc::clone(&store),
                options.cache.clone(),
                Arc::clone(&metrics),
            ),
            runtime: runtime.handle().clone(),
        },
    ));
    let session = mount_fuse(&fs, options)?;
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = runtime.spawn(server::serve(
        listener,
        crate::admin::pulsar_mount::router(Arc::clone(&metrics), options.admin_token.clone()),
        async {
            let _ = admin_stopped.await;
        },
    ));
    let (stop_refresh, refresh_stopped) = tokio::sync::watch::channel(false);
    let refresher = runtime.spawn(follow_pulsar_bucket(
        Arc::clone(&fs),
        bucket,
        metrics,
        options.refresh_interval,
        refresh_stopped,
    ));
    let url =
        endpoint::publish(&options.data_dir, admin_addr).map_err(|source| MountError::Admin {
            addr: admin_addr,
            source,
        })?;
    info!(mountpoint = %options.mountpoint.display(), admin = %url, "tierfs mounted read-only over Pulsar's offloaded ledgers");
    serve_until_stopped(&runtime, session, &options.mountpoint);
    let _ = stop_refresh.send(true);
    let _ = runtime.block_on(refresher);
    let _ = stop_admin.send(());
    let _ = runtime.block_on(admin);
    runtime.shutdown_timeout(Duration::from_secs(5));
    endpoint::withdraw(&options.data_dir);
    info!("tierfs stopped cleanly");
    Ok(())
}

/// The pace of a read-only mount's refresh loop: a tick every `every` (the first one after a
/// full interval), until the mount stops.
struct Pace {
    ticker: tokio::time::Interval,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Pace {
    async fn start(every: Duration, stop: tokio::sync::watch::Receiver<bool>) -> Self {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        Self { ticker, stop }
    }

    /// Waits for the next tick; `false` once the mount is stopping.
    async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.ticker.tick() => true,
            _ = self.stop.changed() => false,
        }
    }
}

/// A `--pulsar` mount's refresh loop: the bucket is listed again (index objects already read
/// are not read again); ledgers that left it are dropped from the kernel's cache.
async fn follow_pulsar_bucket(
    fs: Arc<TierFs>,
    bucket: Arc<crate::pulsar::tree::PulsarBucket>,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut pace = Pace::start(every, stop).await;
    let mut failing = false;
    while pace.next().await {
        metrics.catalog_refreshes.inc();
        match bucket.refresh().await {
            Ok(gone) => {
                for (dir, id) in gone {
                    let parent = match dir.as_str() {
                        "" => Node::Root,
                        _ => Node::LedgerDir(dir),
                    };
                    fs.forget_name(&parent, &crate::pulsar::bucket::ledger_file_name(id));
                }
                if failing {
                    info!("the bucket is readable again");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, "cannot list the bucket again; showing what was last listed");
                }
                failing = true;
            }
        }
    }
}

/// A read-only mount's refresh loop: one conditional GET of the catalog's head per interval;
/// segments that left the bucket are dropped from the kernel's cache.
async fn follow_bucket(
    fs: Arc<TierFs>,
    catalog: Arc<Catalog>,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut pace = Pace::start(every, stop).await;
    let mut failing = false;
    while pace.next().await {
        let before = catalog.state();
        metrics.catalog_refreshes.inc();
        match catalog.refresh().await {
            Ok(false) => {}
            Ok(true) => {
                let after = catalog.state();
                info!(
                    seq = after.seq,
                    segments = after.segment_count(),
                    "the bucket changed"
                );
                for topic in before.topics() {
                    for segment in before.segments(topic) {
                        if after.segment(topic, segment.id).is_none() {
                            fs.forget_name(
                                &Node::Topic(topic.clone()),
                                &crate::log::data_file_name(segment.id),
                            );
                        }
                    }
                }
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, "cannot refresh the bucket's catalog; showing what was last read");
                }
                failing = true;
                continue;
            }
        }
        if failing {
            info!("the bucket's catalog is readable again");
            failing = false;
        }
    }
}

fn start_runtime() -> Result<tokio::runtime::Runtime, MountError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tierfs-admin")
        .enable_all()
        .build()
        .map_err(MountError::Runtime)
}

/// Connects to the store; the catalog is not read yet.
fn connect_catalog(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    data_dir: &Path,
    metrics: &Arc<Metrics>,
) -> Result<Arc<Catalog>, MountError> {
    let store = runtime
        .block_on(store::connect(&config.offload, data_dir))
        .map_err(MountError::Store)?;
    info!(driver = %config.offload.driver, store = %store.url(""), "offload store ready");
    let catalog = Catalog::new(store, &config.offload.prefix);
    catalog.report_to(Arc::clone(metrics));
    Ok(catalog)
}

/// How long a writable mount's start waits for the store to settle the writer lease; past it
/// (the store is down) the mount serves its local log and takes the lease in the background.
const LEASE_AT_START: Duration = Duration::from_secs(5);

/// Takes the prefix's writer lease before mounting, so that a second writer is refused at
/// once, naming the holder. A store that cannot answer in time defers it to the offloader.
fn take_lease_at_start(
    runtime: &tokio::runtime::Runtime,
    catalog: &Arc<Catalog>,
    options: &MountOptions,
) -> Result<Option<Lease>, MountError> {
    let attempt = async {
        catalog
            .probe_conditional_writes()
            .await
            .map_err(|e| match e {
                CatalogError::Store(e) => LeaseError::Store(e),
                other => LeaseError::Store(StoreError::Other(other.to_string())),
            })?;
        Lease::acquire(
            Arc::clone(catalog.store()),
            catalog.keys(),
            &options.data_dir,
            options.take_over,
            catalog.conditional_writes(),
        )
        .await
    };
    match runtime.block_on(async { tokio::time::timeout(LEASE_AT_START, attempt).await }) {
        Ok(Ok(lease)) => Ok(Some(lease)),
        Ok(Err(e @ LeaseError::Held { .. })) => Err(MountError::Lease(e)),
        Ok(Err(e)) => {
            warn!(error = %e, "cannot take the writer lease now; the mount serves its local log and offloads wait for the lease");
            Ok(None)
        }
        Err(_) => {
            warn!(wait = ?LEASE_AT_START, "the store did not answer in time to take the writer lease; the mount serves its local log and offloads wait for the lease");
            Ok(None)
        }
    }
}

/// Connects to the store and reads its catalog (a store that fails at first is tried again a
/// few times; an unknown catalog format is refused at once).
fn open_catalog(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    data_dir: &Path,
    metrics: &Arc<Metrics>,
) -> Result<Arc<Catalog>, MountError> {
    let catalog = connect_catalog(runtime, config, data_dir, metrics)?;
    let mut attempt = 1;
    loop {
        match runtime.block_on(catalog.load()) {
            Ok(()) => return Ok(catalog),
            Err(e) if e.is_transient() && attempt < 4 => {
                warn!(error = %e, attempt, "cannot read the bucket's catalog yet; retrying");
                std::thread::sleep(Duration::from_millis(500 * attempt));
                attempt += 1;
            }
            Err(e) => return Err(MountError::Catalog(e)),
        }
    }
}

fn remote_tier(
    runtime: &tokio::runtime::Runtime,
    catalog: &Catalog,
    options: &MountOptions,
    config: &Config,
    metrics: &Arc<Metrics>,
) -> RemoteTier {
    RemoteTier {
        store: Arc::clone(catalog.store()),
        prefer_remote: config.offload.read_priority == ReadPriority::TieredStorageFirst,
        cache: Cache::new(
            Arc::clone(catalog.store()),
            CacheConfig {
                expected_block_size: config.offload.read_buffer_size,
                ..options.cache.clone()
            },
            Arc::clone(metrics),
        ),
        runtime: runtime.handle().clone(),
    }
}

fn bind_admin(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
) -> Result<(tokio::net::TcpListener, SocketAddr), MountError> {
    let fail = |source| MountError::Admin { addr, source };
    let listener = runtime.block_on(server::bind(addr)).map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    Ok((listener, bound))
}

/// Mounts `fs` and lets it tell the kernel to forget names.
fn mount_fuse(
    fs: &Arc<TierFs>,
    options: &MountOptions,
) -> Result<fuser::BackgroundSession, MountError> {
    let session = fuser::Session::new(
        FuseAdapter::new(Arc::clone(fs)),
        &options.mountpoint,
        &FuseAdapter::config(&options.settings),
    )
    .and_then(fuser::Session::spawn)
    .map_err(|source| MountError::Mount {
        path: options.mountpoint.clone(),
        source,
    })?;
    let notifier = session.notifier();
    fs.set_invalidator(Box::new(move |parent, name| {
        let _ = notifier.inval_entry(fuser::INodeNo(parent), std::ffi::OsStr::new(name));
    }));
    let notifier = session.notifier();
    fs.set_attr_invalidator(Box::new(move |ino| {
        // A negative offset drops the cached attributes only, not the cached pages.
        let _ = notifier.inval_inode(fuser::INodeNo(ino), -1, 0);
    }));
    Ok(session)
}

/// Serves until a signal or an external unmount, then unmounts.
fn serve_until_stopped(
    runtime: &tokio::runtime::Runtime,
    session: fuser::BackgroundSession,
    mountpoint: &Path,
) {
    let stop = runtime.block_on(wait_for_stop(&session));
    info!(?stop, "unmounting");
    let ended = match stop {
        Stop::Signal(_) => session.umount_and_join().or_else(|e| {
            detach(mountpoint, &e);
            Ok(())
        }),
        Stop::Unmounted => session.join(),
    };
    if let Err(e) = ended {
        warn!(error = %e, "FUSE session ended with an error");
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, MountError> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let (config, notes) = Config::load(path)?;
    if !notes.unknown_keys.is_empty() {
        let shown: Vec<_> = notes
            .unknown_keys
            .iter()
            .take(10)
            .map(String::as_str)
            .collect();
        warn!(
            file = %path.display(),
            count = notes.unknown_keys.len(),
            "keys tierfs does not use were ignored: {}{}",
            shown.join(", "),
            if notes.unknown_keys.len() > shown.len() { ", …" } else { "" }
        );
    }
    for (key, line) in &notes.duplicate_keys {
        warn!(file = %path.display(), key, line, "key given more than once; the last value wins");
    }
    info!(file = %path.display(), rollover = ?config.rollover, "configuration loaded");
    Ok(config)
}

fn check_mountpoint(path: &Path) -> Result<(), MountError> {
    let fail = |reason: String| MountError::Mountpoint {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_dir() {
        return Err(fail("not a directory".to_string()));
    }
    Ok(())
}

async fn wait_for_stop(session: &fuser::BackgroundSession) -> Stop {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers; stop the mount with fusermount3 -u");
        loop {
            if session.guard.is_finished() {
                return Stop::Unmounted;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => return Stop::Signal("SIGTERM"),
            _ = int.recv() => return Stop::Signal("SIGINT"),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if session.guard.is_finished() {
                    return Stop::Unmounted;
                }
            }
        }
    }
}

/// Detaches a mount that could not be unmounted (files still open on it): it disappears from
/// the namespace now, and open files get ENOTCONN once this process exits.
fn detach(mountpoint: &Path, why: &std::io::Error) {
    warn!(error = %why, "cannot unmount {}; detaching it lazily", mountpoint.display());
    let Ok(path) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: umount2 reads the NUL-terminated path only.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
        let status = std::process::Command::new("fusermount3")
            .args(["-u", "-z", "--"])
            .arg(mountpoint)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            error!(
                "cannot detach {}; run fusermount3 -uz on it",
                mountpoint.display()
            );
        }
    }
}

fn start_rollover_timer(
    log: Arc<LocalLog>,
    period: Duration,
) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = thread::Builder::new()
        .name("tierfs-rollover".to_string())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                log.tick(SystemTime::now());
            }
        })
        .expect("spawn the rollover timer thread");
    (stop, handle)
}
