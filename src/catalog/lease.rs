//! The writer lease: `<prefix>/_tierfs/lease.json` names the one mount allowed to offload and
//! commit under a prefix (host, data directory, pid, start time, heartbeat).
//!
//! * **Acquire** (a writable mount's start): no lease, a lease whose heartbeat is older than
//!   its TTL, or a lease of this very host and data directory (whose lock this process holds,
//!   so its previous holder is dead) is taken; a fresh lease of anyone else is refused, naming
//!   the holder, unless the operator says `--take-over`.
//! * **Heartbeat** every third of the TTL: the lease is rewritten with a new heartbeat, on the
//!   condition that it is still ours (`If-Match` its ETag where the store honours conditional
//!   writes; a read-back of the holder where it does not).
//! * **Lost**: a heartbeat that finds another holder reports it; the mount stops offloading.
//! * **Release** at a clean unmount: the lease is deleted if it is still ours.
//!
//! Freshness compares the heartbeat's wall-clock time with ours: hosts that share a prefix
//! need clocks within a few seconds of each other (NTP).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::format::{self, CatalogKeys, FORMAT, FormatError};
use crate::store::{Fetched, ObjectStore, PutCondition, StoreError};

/// How long a lease stays fresh without a heartbeat.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// The file in a data directory that names it for good: a random id made on first use, so
/// that "the same data directory" is never guessed from a host name and a path.
const DATA_DIR_ID_FILE: &str = "writer-id";

/// The lease object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub format: u32,
    /// Unique per acquisition.
    pub holder: String,
    pub host: String,
    pub data_dir: String,
    /// The data directory's own id (`<data-dir>/writer-id`).
    #[serde(default)]
    pub data_dir_id: String,
    pub pid: u32,
    pub started_ms: u64,
    pub heartbeat_ms: u64,
    pub ttl_ms: u64,
}

impl LeaseRecord {
    fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.heartbeat_ms) < self.ttl_ms
    }

    /// The holder in words, for refusals and log lines.
    pub fn describe(&self, now_ms: u64) -> String {
        format!(
            "host {} (data directory {}, pid {}, holding since {}, last heartbeat {:.0} s ago)",
            self.host,
            self.data_dir,
            self.pid,
            humantime::format_rfc3339_seconds(crate::log::manifest_time(self.started_ms)),
            now_ms.saturating_sub(self.heartbeat_ms) as f64 / 1000.0
        )
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LeaseError {
    #[error("writer lease: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(
        "another writer holds the prefix {url}: {holder}. Stop it first; if it is dead, mount with --take-over"
    )]
    Held { url: String, holder: String },
    #[error("the writer lease at {url} was taken by {holder}; this mount stops offloading")]
    Lost { url: String, holder: String },
    #[error("cannot read or create the data directory's id {path}: {source}")]
    DataDirId {
        path: std::path::PathBuf,
        source: std::sync::Arc<std::io::Error>,
    },
}

/// The data directory's id, made (and fsynced) on first use.
fn data_dir_id(data_dir: &std::path::Path) -> Result<String, LeaseError> {
    let path = data_dir.join(DATA_DIR_ID_FILE);
    let fail = |e: std::io::Error| LeaseError::DataDirId {
        path: path.clone(),
        source: std::sync::Arc::new(e),
    };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let id = uuid::Uuid::new_v4().to_string();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{id}\n")).map_err(fail)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, &path).map_err(fail)?;
    Ok(id)
}

/// This mount's hold on the prefix.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    key: String,
    record: std::sync::Mutex<LeaseRecord>,
    etag: std::sync::Mutex<Option<String>>,
    conditional: bool,
    /// When the lease was last written successfully.
    renewed: std::sync::Mutex<std::time::Instant>,
    /// One heartbeat at a time: two with the same ETag would refuse each other.
    beating: tokio::sync::Mutex<()>,
}

fn now_ms() -> u64 {
    crate::log::to_millis(SystemTime::now())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".to_string())
}

impl Lease {
    /// Takes the prefix's writer lease, or says who holds it. `conditional`: whether the store
    /// honours conditional writes (see `Catalog::open_for_writing`).
    pub async fn acquire(
        store: Arc<dyn ObjectStore>,
        keys: &CatalogKeys,
        data_dir: &std::path::Path,
        take_over: bool,
        conditional: bool,
    ) -> Result<Self, LeaseError> {
        let key = keys.lease();
        let now = now_ms();
        let ours = LeaseRecord {
            format: FORMAT,
            holder: uuid::Uuid::new_v4().to_string(),
            host: host_name(),
            data_dir: data_dir.display().to_string(),
            data_dir_id: data_dir_id(data_dir)?,
            pid: std::process::id(),
            started_ms: now,
            heartbeat_ms: now,
            ttl_ms: LEASE_TTL.as_millis() as u64,
        };
        let condition = match store.get_if_changed(&key, None).await {
            Err(StoreError::NotFound(_)) => PutCondition::IfAbsent,
            Err(e) => return Err(e.into()),
            Ok(Fetched::Unchanged) => unreachable!("no ETag was given"),
            Ok(Fetched::Object { body, etag }) => {
                let current: LeaseRecord = format::decode(&key, &body)?;
                // This very data directory (its lock, held by us, proves the old holder gone).
                let same_directory =
                    !current.data_dir_id.is_empty() && current.data_dir_id == ours.data_dir_id;
                let holder = current.describe(now);
                if current.is_fresh(now) && !same_directory && !take_over {
                    return Err(LeaseError::Held {
                        url: store.url(&key),
                        holder,
                    });
                }
                if take_over && current.is_fresh(now) && !same_directory {
                    warn!(%holder, "taking the writer lease over (--take-over)");
                } else if !same_directory {
                    info!(%holder, "taking over a writer lease whose heartbeat stopped");
                }
                etag.map_or(PutCondition::Always, PutCondition::IfMatch)
            }
        };
        let condition = if conditional {
            condition
        } else {
            PutCondition::Always
        };
        let lease = Self {
            store,
            key,
            record: std::sync::Mutex::new(ours),
            etag: std::sync::Mutex::new(None),
            conditional,
            renewed: std::sync::Mutex::new(std::time::Instant::now()),
            beating: tokio::sync::Mutex::new(()),
        };
        lease.write(condition).await.map_err(|e| match e {
            LeaseError::Lost { url, holder } => LeaseError::Held { url, holder },
            other => other,
        })?;
        lease.check_holder().await?;
        info!(lease = %lease.store.url(&lease.key), "writer lease taken");
        Ok(lease)
    }

    /// Whether the lease was renewed recently enough that no other mount can have taken it
    /// as stale (two thirds of the TTL, leaving a third for clock differences).
    pub fn is_current(&self) -> bool {
        self.renewed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
            < LEASE_TTL * 2 / 3
    }

    /// The lease as this mount wrote it last.
    pub fn record(&self) -> LeaseRecord {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes our record under `condition`; a failed condition means someone else holds it.
    async fn write(&self, condition: PutCondition) -> Result<(), LeaseError> {
        let body = Bytes::from(format::encode(&self.record()));
        match self.store.put_if(&self.key, body, condition).await {
            Ok(etag) => {
                *self.etag.lock().unwrap_or_else(|p| p.into_inner()) = etag;
                *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
                Ok(())
            }
            Err(StoreError::PreconditionFailed(_)) => Err(self.lost().await),
            Err(e) => Err(e.into()),
        }
    }

    /// The error naming whoever holds the lease now.
    async fn lost(&self) -> LeaseError {
        let holder = match self.store.get(&self.key).await {
            Ok(body) => format::decode::<LeaseRecord>(&self.key, &body)
                .map(|r| r.describe(now_ms()))
                .unwrap_or_else(|e| e.to_string()),
            Err(StoreError::NotFound(_)) => "nobody (it was deleted)".to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        LeaseError::Lost {
            url: self.store.url(&self.key),
            holder,
        }
    }

    /// Reads the lease back: still ours?
    async fn check_holder(&self) -> Result<(), LeaseError> {
        let body = match self.store.get(&self.key).await {
            Ok(body) => body,
            Err(StoreError::NotFound(_)) => return Err(self.lost().await),
            Err(e) => return Err(e.into()),
        };
        let current: LeaseRecord = format::decode(&self.key, &body)?;
        if current.holder != self.record().holder {
            return Err(LeaseError::Lost {
                url: self.store.url(&self.key),
                holder: current.describe(now_ms()),
            });
        }
        Ok(())
    }

    /// Renews the heartbeat, on condition that the lease is still ours.
    pub async fn heartbeat(&self) -> Result<(), LeaseError> {
        let _one_at_a_time = self.beating.lock().await;
        if !self.conditional {
            self.check_holder().await?;
        }
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .heartbeat_ms = now_ms();
        let etag = self.etag.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let condition = match (self.conditional, etag) {
            (true, Some(etag)) => PutCondition::IfMatch(etag),
            _ => PutCondition::Always,
        };
        self.write(condition).await
    }

    /// Gives the lease up (a clean unmount), if it is still ours.
    pub async fn release(&self) -> Result<(), LeaseError> {
        self.check_holder().await?;
        self.store.delete(&self.key).await?;
        info!(lease = %self.store.url(&self.key), "writer lease released");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn keys() -> CatalogKeys {
        CatalogKeys::new("pre")
    }

    #[tokio::test]
    async fn a_fresh_lease_of_another_directory_is_refused_naming_its_holder() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::default());
        let first = Lease::acquire(store.clone(), &keys(), a.path(), false, true)
            .await
            .unwrap();
        let err = Lease::acquire(store.clone(), &keys(), b.path(), false, true)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LeaseError::Held { .. }), "{text}");
        assert!(
            text.contains(&format!("data directory {}", a.path().display())),
            "{text}"
        );
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("--take-over"), "{text}");
        // The same data directory (a restart after a crash) takes it back.
        let again = Lease::acquire(store.clone(), &keys(), a.path(), false, true)
            .await
            .unwrap();
        // The first holder's heartbeat now finds the lease taken.
        assert!(matches!(
            first.heartbeat().await,
            Err(LeaseError::Lost { .. })
        ));
        again.heartbeat().await.unwrap();
        assert!(again.is_current());
    }

    #[tokio::test]
    async fn the_same_path_on_another_machine_is_another_directory() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::default());
        let _first = Lease::acquire(store.clone(), &keys(), a.path(), false, true)
            .await
            .unwrap();
        // Same host name and path, but the directory's id differs (another container).
        std::fs::write(b.path().join(DATA_DIR_ID_FILE), "another\n").unwrap();
        let mut record: LeaseRecord =
            format::decode(&keys().lease(), &store.get(&keys().lease()).await.unwrap()).unwrap();
        record.data_dir = b.path().display().to_string();
        store
            .put(&keys().lease(), Bytes::from(format::encode(&record)))
            .await
            .unwrap();
        assert!(matches!(
            Lease::acquire(store.clone(), &keys(), b.path(), false, true).await,
            Err(LeaseError::Held { .. })
        ));
    }

    #[tokio::test]
    async fn concurrent_heartbeats_never_fence_their_own_holder() {
        let a = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::default());
        let lease = Arc::new(
            Lease::acquire(store.clone(), &keys(), a.path(), false, true)
                .await
                .unwrap(),
        );
        let beats: Vec<_> = (0..8)
            .map(|_| {
                let lease = Arc::clone(&lease);
                tokio::spawn(async move { lease.heartbeat().await })
            })
            .collect();
        for beat in beats {
            beat.await.unwrap().unwrap();
        }
        // A write of ours that landed while its answer was lost: the ETag we hold is stale.
        store
            .put(
                &keys().lease(),
                Bytes::from(format::encode(&lease.record())),
            )
            .await
            .unwrap();
        lease.heartbeat().await.unwrap();
    }

    #[tokio::test]
    async fn take_over_and_release() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::default());
        let first = Lease::acquire(store.clone(), &keys(), a.path(), false, false)
            .await
            .unwrap();
        let second = Lease::acquire(store.clone(), &keys(), b.path(), true, false)
            .await
            .unwrap();
        // Without conditional writes the heartbeat reads the holder back first.
        let lost = first.heartbeat().await.unwrap_err();
        assert!(
            lost.to_string()
                .contains(&format!("data directory {}", b.path().display())),
            "{lost}"
        );
        assert!(matches!(
            first.release().await,
            Err(LeaseError::Lost { .. })
        ));
        second.release().await.unwrap();
        assert!(matches!(
            store.get(&keys().lease()).await,
            Err(StoreError::NotFound(_))
        ));
        // Released: anyone may take it.
        Lease::acquire(store.clone(), &keys(), c.path(), false, true)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_stale_lease_is_taken_without_being_asked() {
        let a = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::default());
        let stale = LeaseRecord {
            format: FORMAT,
            holder: "old".into(),
            host: "elsewhere".into(),
            data_dir: "/data/old".into(),
            data_dir_id: "old".into(),
            pid: 1,
            started_ms: 0,
            heartbeat_ms: now_ms() - LEASE_TTL.as_millis() as u64 - 1000,
            ttl_ms: LEASE_TTL.as_millis() as u64,
        };
        store
            .put(&keys().lease(), Bytes::from(format::encode(&stale)))
            .await
            .unwrap();
        let lease = Lease::acquire(store.clone(), &keys(), a.path(), false, true)
            .await
            .unwrap();
        assert_eq!(lease.record().data_dir, a.path().display().to_string());
    }
}
