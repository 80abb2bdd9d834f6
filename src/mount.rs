//! `tierfs mount`: brings a mount up and takes it down, in order.
//!
//! Up: validate the configuration, lock the data directory, recover the local log, bind the
//! admin endpoint, mount FUSE, then publish the admin address (so a CLI that finds it can rely
//! on the mount being there) and start the rollover timer. Down, on SIGINT/SIGTERM or an
//! external `fusermount3 -u`: unmount, stop the timer and the endpoint, fsync every topic,
//! withdraw the address, release the lock.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::admin::server::AdminState;
use crate::admin::{endpoint, server};
use crate::cache::{Cache, CacheConfig};
use crate::config::{Config, ConfigError, Secret};
use crate::fs::{RemoteTier, TierFs};
use crate::fuse::{FuseAdapter, MountSettings};
use crate::log::{DataDirLock, LocalLog, LogError, SealListener};
use crate::metrics::Metrics;
use crate::name::TopicName;
use crate::offload::{Offloader, Policies, PolicyError};
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
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tierfs-admin")
        .enable_all()
        .build()
        .map_err(MountError::Runtime)?;
    let store = runtime
        .block_on(store::connect(&config.offload, &options.data_dir))
        .map_err(MountError::Store)?;
    info!(driver = %config.offload.driver, store = %store.url(""), "offload store ready");
    let policies = Policies::load(&options.data_dir, &config.offload)?;
    let metrics = Arc::new(Metrics::default());
    let offloader = Offloader::new(
        Arc::clone(&log),
        store,
        config.offload.clone(),
        policies,
        Arc::clone(&metrics),
    );
    let listener = runtime
        .block_on(server::bind(options.admin_listen))
        .map_err(|source| MountError::Admin {
            addr: options.admin_listen,
            source,
        })?;
    let admin_addr = listener.local_addr().map_err(|source| MountError::Admin {
        addr: options.admin_listen,
        source,
    })?;

    let fs = Arc::new(TierFs::with_remote(
        Arc::clone(&log),
        Some(RemoteTier {
            cache: Cache::new(
                Arc::clone(offloader.store()),
                options.cache.clone(),
                Arc::clone(&metrics),
            ),
            offloader: Arc::clone(&offloader),
            runtime: runtime.handle().clone(),
        }),
    ));
    let session = fuser::Session::new(
        FuseAdapter::new(Arc::clone(&fs)),
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
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = runtime.spawn(server::serve(
        listener,
        AdminState {
            log: Arc::clone(&log),
            offloader: Arc::clone(&offloader),
            metrics: Arc::clone(&metrics),
            fs: Some(Arc::clone(&fs)),
            token: options.admin_token.clone(),
            runtime_configuration: Arc::new(config.runtime_configuration(&options.data_dir)),
        },
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

    let stop = runtime.block_on(wait_for_stop(&session));
    info!(?stop, "unmounting");
    let ended = match stop {
        Stop::Signal(_) => session.umount_and_join().or_else(|e| {
            detach(&options.mountpoint, &e);
            Ok(())
        }),
        Stop::Unmounted => session.join(),
    };
    if let Err(e) = ended {
        warn!(error = %e, "FUSE session ended with an error");
    }
    let _ = stop_timer.send(());
    let _ = timer.join();
    let _ = stop_admin.send(());
    let _ = runtime.block_on(admin);
    let _ = stop_offloader.send(true);
    let _ = runtime.block_on(offloads);
    if offloader.busy() {
        info!("stopping with offloads in flight; they are cleaned and retried at the next mount");
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    endpoint::withdraw(&options.data_dir);
    log.sync_all()?;
    info!("tierfs stopped cleanly; every entry is on disk");
    Ok(())
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
