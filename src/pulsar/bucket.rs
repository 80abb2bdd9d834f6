//! A bucket written by Pulsar's blob-store offloader, surveyed: every object classified, every
//! complete ledger copy loaded (its index object read and checked), one copy per ledger chosen
//! to be shown. The `--pulsar` mount shows what a survey finds; `tierfs pulsar scan` reports it.
//!
//! A copy of ledger `L` is the pair `{uuid}-ledger-L` (data) and `{uuid}-ledger-L-index`. It is
//! shown only when both objects exist, the index object says format version `1` (Pulsar's
//! readers refuse any other, and so do we), decodes, and describes a data object of exactly the
//! size listed. Of several such copies the newest index object wins; the rest are duplicates.
//!
//! Index objects never change once written, so each one read is kept under the data directory
//! ([`IndexCache`]): a second mount of the same bucket lists it without reading them again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tracing::warn;

use super::offload_format::{FORMAT_VERSION, LedgerIndex, ObjectName};
use crate::store::{Metadata, ObjectInfo, ObjectStore, PendingUpload, StoreError};

/// User metadata keys Pulsar's offloader sets on both objects (lower-cased, as S3 keeps them).
pub const VERSION_KEY: &str = "s3managedledgeroffloaderformatversion";
pub const SOFTWARE_VERSION_KEY: &str = "s3managedledgeroffloadersoftwareversion";
pub const NAME_KEY: &str = "managedledgername";
pub const CLUSTER_KEY: &str = "pulsarclustername";
/// The ledger metadata's custom key naming the managed ledger (older brokers set only this).
pub const CUSTOM_NAME_KEY: &str = "pulsar/managed-ledger";
/// Where ledgers whose managed ledger cannot be told are shown.
pub const UNKNOWN_DIR: &str = "_unknown";
/// Index objects read at once while surveying.
const PARALLEL_LOADS: usize = 64;

/// One copy of a ledger: the objects one offload attempt (one uuid) left.
#[derive(Debug, Clone)]
pub struct Copy {
    pub ledger: u64,
    pub uuid: String,
    pub data: Option<ObjectInfo>,
    pub index: Option<ObjectInfo>,
}

/// A complete, readable copy of a ledger.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub id: u64,
    pub uuid: String,
    pub data_key: String,
    pub index_key: String,
    pub data_size: u64,
    pub index: LedgerIndex,
    /// The managed ledger's name as Pulsar stores it, when the objects say.
    pub managed_ledger: Option<String>,
    /// When the index object was written: the offload's completion.
    pub offloaded: SystemTime,
    pub cluster: Option<String>,
    pub software_version: Option<String>,
    /// Sum of the entries' lengths: the ledger file's size.
    pub length: u64,
    pub entries: u64,
}

impl Ledger {
    /// The directory of the mount the ledger is shown in.
    pub fn directory(&self) -> &str {
        self.managed_ledger.as_deref().unwrap_or(UNKNOWN_DIR)
    }

    /// The ledger file's name: `<ledgerId:020>.ledger`.
    pub fn file_name(&self) -> String {
        ledger_file_name(self.id)
    }
}

pub fn ledger_file_name(id: u64) -> String {
    format!("{id:020}.ledger")
}

/// Bytes per entry in an entry-lengths file: the entry's length, u64 big-endian.
pub const LENGTH_RECORD: u64 = 8;

/// The file of a ledger's entry lengths, beside its ledger file: found by name, never listed.
pub fn entry_lengths_name(id: u64) -> String {
    format!(".{id:020}.entries")
}

/// `.<ledgerId:020>.entries` → the id.
pub fn parse_entry_lengths_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('.')?.strip_suffix(".entries")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// `<ledgerId:020>.ledger` → the id.
pub fn parse_ledger_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".ledger")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// What a survey concluded about one copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Complete and shown.
    Ok,
    /// Data without index, index without data, or objects that do not agree.
    Incomplete(String),
    /// Complete, but another complete copy (this uuid) is newer and shown instead.
    Duplicate { shown: String },
    /// Not readable as format version 1.
    Unknown(String),
}

impl Status {
    pub fn label(&self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Incomplete(_) => "INCOMPLETE",
            Status::Duplicate { .. } => "DUPLICATE",
            Status::Unknown(_) => "UNKNOWN",
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Status::Ok => String::new(),
            Status::Incomplete(why) | Status::Unknown(why) => why.clone(),
            Status::Duplicate { shown } => format!("a newer complete copy ({shown}) is shown"),
        }
    }
}

/// One copy and its verdict.
#[derive(Debug, Clone)]
pub struct CopyReport {
    pub copy: Copy,
    pub status: Status,
    /// The loaded ledger, when the copy is complete (shown or duplicate).
    pub ledger: Option<Arc<Ledger>>,
}

/// Everything a listing of the bucket found.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// Every ledger copy, by ledger id then uuid.
    pub copies: Vec<CopyReport>,
    /// Objects of Pulsar's streaming offloader (PIP-76): reported, never shown.
    pub streaming: Vec<ObjectInfo>,
    /// Objects not named as Pulsar names them.
    pub foreign: Vec<ObjectInfo>,
    pub uploads: Vec<PendingUpload>,
}

impl Survey {
    /// The ledgers to show: one complete copy per ledger id.
    pub fn shown(&self) -> impl Iterator<Item = &Arc<Ledger>> {
        self.copies
            .iter()
            .filter(|c| c.status == Status::Ok)
            .filter_map(|c| c.ledger.as_ref())
    }
}

/// Objects grouped by what their keys say.
#[derive(Debug, Default)]
pub struct Grouped {
    pub copies: Vec<Copy>,
    pub streaming: Vec<ObjectInfo>,
    pub foreign: Vec<ObjectInfo>,
}

/// Whether `key` is a name Pulsar's offloader writes directly under `prefix` (its keys have no
/// `/` of their own).
pub fn pulsar_name(prefix: &str, key: &str) -> Option<ObjectName> {
    let name = key.strip_prefix(prefix)?;
    if name.contains('/') {
        return None;
    }
    ObjectName::parse(name)
}

/// Sorts a listing under `prefix` into ledger copies, streaming-offload objects and the rest.
pub fn group(prefix: &str, objects: Vec<ObjectInfo>) -> Grouped {
    let mut copies: BTreeMap<(u64, String), Copy> = BTreeMap::new();
    let mut grouped = Grouped::default();
    for object in objects {
        let (uuid, ledger, is_index) = match pulsar_name(prefix, &object.key) {
            Some(ObjectName::Data { uuid, ledger }) => (uuid, ledger, false),
            Some(ObjectName::Index { uuid, ledger }) => (uuid, ledger, true),
            None if is_streaming_name(prefix, &object.key) => {
                grouped.streaming.push(object);
                continue;
            }
            None => {
                grouped.foreign.push(object);
                continue;
            }
        };
        let copy = copies.entry((ledger, uuid.clone())).or_insert(Copy {
            ledger,
            uuid,
            data: None,
            index: None,
        });
        if is_index {
            copy.index = Some(object);
        } else {
            copy.data = Some(object);
        }
    }
    grouped.copies = copies.into_values().collect();
    grouped
}

/// `{uuid}` or `{uuid}-index` under `prefix`: the streaming offloader's keys.
fn is_streaming_name(prefix: &str, key: &str) -> bool {
    let Some(name) = key.strip_prefix(prefix).filter(|n| !n.contains('/')) else {
        return false;
    };
    let uuid = name.strip_suffix("-index").unwrap_or(name);
    uuid.len() == 36 && uuid::Uuid::parse_str(uuid).is_ok()
}

/// Index objects kept on local disk, with their user metadata: they never change.
#[derive(Debug, Clone)]
pub struct IndexCache {
    dir: PathBuf,
    writes: Arc<std::sync::atomic::AtomicU64>,
}

impl IndexCache {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            writes: Arc::default(),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key.replace('%', "%25").replace('/', "%2F"))
    }

    /// What is kept for `key`, if its body has the size the listing gives.
    fn get(&self, key: &str, size: u64) -> Option<(Bytes, Metadata)> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        let newline = bytes.iter().position(|b| *b == b'\n')?;
        let metadata = serde_json::from_slice(&bytes[..newline]).ok()?;
        let body = &bytes[newline + 1..];
        (body.len() as u64 == size).then(|| (Bytes::copy_from_slice(body), metadata))
    }

    fn put(&self, key: &str, body: &[u8], metadata: &Metadata) -> std::io::Result<()> {
        let mut out = serde_json::to_vec(metadata).map_err(std::io::Error::other)?;
        out.push(b'\n');
        out.extend_from_slice(body);
        let path = self.path(key);
        let n = self
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".tmp.{}.{n}", std::process::id()));
        std::fs::write(&tmp, &out)?;
        std::fs::rename(&tmp, &path)
    }
}

/// Lists the bucket under `prefix` and classifies every copy; index objects are read (in
/// parallel, from `cache` where kept) to tell complete copies from the rest.
pub async fn survey(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    cache: Option<&IndexCache>,
    previous: Option<&Survey>,
) -> Result<Survey, StoreError> {
    let objects = store.list(prefix).await?;
    let uploads = store.list_multipart(prefix).await?;
    let grouped = group(prefix, objects);
    // Copies already loaded by an earlier survey are not read again.
    let known: BTreeMap<&str, &Arc<Ledger>> = previous
        .into_iter()
        .flat_map(|s| s.copies.iter())
        .filter_map(|c| c.ledger.as_ref())
        .map(|l| (l.index_key.as_str(), l))
        .collect();
    let limit = Arc::new(Semaphore::new(PARALLEL_LOADS));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, copy) in grouped.copies.iter().enumerate() {
        if let (Some(_), Some(index)) = (&copy.data, &copy.index)
            && let Some(ledger) = known.get(index.key.as_str())
        {
            let ledger = Arc::clone(ledger);
            tasks.spawn(async move { (i, Ok(Ok(ledger))) });
            continue;
        }
        let (store, copy, cache, limit) = (
            Arc::clone(store),
            copy.clone(),
            cache.cloned(),
            Arc::clone(&limit),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let loaded = load(store.as_ref(), &copy, cache.as_ref()).await;
            (i, loaded.map(|outcome| outcome.map(Arc::new)))
        });
    }
    let mut loaded: Vec<Option<Result<Arc<Ledger>, Status>>> = vec![None; grouped.copies.len()];
    while let Some(joined) = tasks.join_next().await {
        let (i, outcome) = joined.map_err(|e| StoreError::Other(format!("a load failed: {e}")))?;
        // A store that fails for a while fails the survey: one that guessed would hide ledgers.
        loaded[i] = Some(outcome?);
    }
    let mut copies: Vec<CopyReport> = grouped
        .copies
        .into_iter()
        .zip(loaded)
        .map(
            |(copy, outcome)| match outcome.expect("every copy was loaded") {
                Ok(ledger) => CopyReport {
                    copy,
                    status: Status::Ok,
                    ledger: Some(ledger),
                },
                Err(status) => CopyReport {
                    copy,
                    status,
                    ledger: None,
                },
            },
        )
        .collect();
    choose_newest(&mut copies);
    Ok(Survey {
        copies,
        streaming: grouped.streaming,
        foreign: grouped.foreign,
        uploads,
    })
}

/// Of several complete copies of one ledger, keeps the newest (latest index object, then
/// greatest uuid) `Ok` and marks the others duplicates of it.
fn choose_newest(copies: &mut [CopyReport]) {
    // Ledger ids are unique within one BookKeeper cluster only: copies are of the same ledger
    // when their id, managed ledger and cluster agree.
    type Identity = (u64, String, Option<String>);
    let identity =
        |l: &Ledger| -> Identity { (l.id, l.directory().to_string(), l.cluster.clone()) };
    let mut newest: BTreeMap<Identity, (SystemTime, String)> = BTreeMap::new();
    for report in copies.iter().filter(|c| c.status == Status::Ok) {
        let ledger = report.ledger.as_ref().expect("ok copies are loaded");
        let candidate = (ledger.offloaded, ledger.uuid.clone());
        newest
            .entry(identity(ledger))
            .and_modify(|best| {
                if candidate > *best {
                    *best = candidate.clone();
                }
            })
            .or_insert(candidate);
    }
    for report in copies.iter_mut().filter(|c| c.status == Status::Ok) {
        let ledger = report.ledger.as_ref().expect("ok copies are loaded");
        let (_, shown) = &newest[&identity(ledger)];
        if *shown != report.copy.uuid {
            report.status = Status::Duplicate {
                shown: shown.clone(),
            };
        }
    }
}

/// Reads and checks one copy: its index object (kept in `cache`) and its data object's
/// metadata. The inner `Err` is the copy's verdict; the outer one a store that failed for a
/// while (the survey fails rather than guess). A store that refuses one object (access denied,
/// an archived object) makes that copy `UNKNOWN`, naming the reason.
pub async fn load(
    store: &dyn ObjectStore,
    copy: &Copy,
    cache: Option<&IndexCache>,
) -> Result<Result<Ledger, Status>, StoreError> {
    let (data, index) = match (&copy.data, &copy.index) {
        (Some(data), Some(index)) => (data, index),
        (Some(_), None) => {
            return Ok(Err(Status::Incomplete(
                "data object without an index object (an offload that did not finish)".into(),
            )));
        }
        (None, Some(_)) => {
            return Ok(Err(Status::Incomplete(
                "index object without a data object (a deletion that did not finish)".into(),
            )));
        }
        (None, None) => unreachable!("a copy has at least one object"),
    };
    let unreadable = |key: &str, e: StoreError| -> Result<Status, StoreError> {
        match e {
            StoreError::Transient(_) => Err(e),
            StoreError::NotFound(_) => Ok(Status::Incomplete(format!("{key} went while listing"))),
            other => Ok(Status::Unknown(format!("cannot read {key}: {other}"))),
        }
    };
    // The index object and the data object's metadata, both at once; both kept under the
    // data directory (the data object's as an empty body), as neither ever changes.
    let index_object = async {
        let kept = cache
            .and_then(|c| c.get(&index.key, index.size))
            .filter(|(body, _)| LedgerIndex::decode(body).is_ok());
        if let Some(kept) = kept {
            return Ok(Some(kept));
        }
        let fetched = match store.get_with_metadata(&index.key).await {
            Ok(fetched) => fetched,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(cache) = cache
            && let Err(e) = cache.put(&index.key, &fetched.0, &fetched.1)
        {
            warn!(key = %index.key, error = %e, "cannot keep an index object under the data directory");
        }
        Ok(Some(fetched))
    };
    let data_object = async {
        if let Some((_, kept)) = cache.and_then(|c| c.get(&data.key, 0)) {
            return Ok(Some(kept));
        }
        let head = store.head_with_metadata(&data.key).await?;
        if let (Some(cache), Some((_, metadata))) = (cache, &head)
            && let Err(e) = cache.put(&data.key, &[], metadata)
        {
            warn!(key = %data.key, error = %e, "cannot keep a data object's metadata under the data directory");
        }
        Ok(head.map(|(_, metadata)| metadata))
    };
    let (index_object, data_object) = tokio::join!(index_object, data_object);
    let gone = |key: &str| Ok(Err(Status::Incomplete(format!("{key} went while listing"))));
    let (body, metadata) = match index_object {
        Ok(Some(object)) => object,
        Ok(None) => return gone(&index.key),
        Err(e) => return unreadable(&index.key, e).map(Err),
    };
    let data_metadata = match data_object {
        Ok(Some(metadata)) => metadata,
        Ok(None) => return gone(&data.key),
        Err(e) => return unreadable(&data.key, e).map(Err),
    };
    if let Err(status) =
        format_version("index", &metadata).and_then(|()| format_version("data", &data_metadata))
    {
        return Ok(Err(status));
    }
    Ok(checked(copy, data, index, &body, &metadata))
}

/// The object's format version must be Pulsar's `1`, as Pulsar's readers require.
fn format_version(role: &str, metadata: &Metadata) -> Result<(), Status> {
    match metadata.get(VERSION_KEY).map(String::as_str) {
        Some(FORMAT_VERSION) => Ok(()),
        Some(other) => Err(Status::Unknown(format!(
            "the {role} object's format version is {other:?}; only \"{FORMAT_VERSION}\" is known"
        ))),
        None => Err(Status::Unknown(format!(
            "the {role} object has no {VERSION_KEY} metadata (Pulsar's readers refuse it too)"
        ))),
    }
}

/// The ledger an index object describes, if it agrees with itself and with the data object.
fn checked(
    copy: &Copy,
    data: &ObjectInfo,
    index: &ObjectInfo,
    body: &[u8],
    metadata: &Metadata,
) -> Result<Ledger, Status> {
    let decoded = LedgerIndex::decode(body).map_err(|e| Status::Unknown(e.to_string()))?;
    if decoded.data_object_len != data.size {
        return Err(Status::Incomplete(format!(
            "the index object describes a data object of {} bytes; the data object has {}",
            decoded.data_object_len, data.size
        )));
    }
    let length = decoded
        .metadata
        .length
        .filter(|l| *l >= 0)
        .ok_or_else(|| Status::Unknown("the ledger metadata has no length".into()))?
        as u64;
    // Every entry costs at least its 12-byte record header in the data object.
    let entries = match decoded.metadata.last_entry_id {
        Some(last) if last >= -1 && (last + 1) as u64 <= data.size / 12 => (last + 1) as u64,
        Some(last) => {
            return Err(Status::Unknown(format!(
                "the ledger metadata's last entry id {last} does not fit a data object of {} bytes",
                data.size
            )));
        }
        None => {
            return Err(Status::Unknown(
                "the ledger metadata has no last entry id".into(),
            ));
        }
    };
    // The blocks must cover entries 0..entries exactly, each block non-empty.
    let mut next = 0;
    for i in 0..decoded.blocks.len() {
        match decoded.block_span(i) {
            Some((_, ids)) if *ids.start() == next => next = ids.end() + 1,
            _ => {
                return Err(Status::Unknown(format!(
                    "index entry {i} does not describe a block of the next entries (from entry {next})"
                )));
            }
        }
    }
    if next != entries {
        return Err(Status::Unknown(format!(
            "the index's blocks hold entries up to {next}; the ledger has {entries}"
        )));
    }
    let managed_ledger = metadata
        .get(NAME_KEY)
        .cloned()
        .or_else(|| decoded.metadata.custom(CUSTOM_NAME_KEY))
        .filter(|name| usable_path(name));
    Ok(Ledger {
        id: copy.ledger,
        uuid: copy.uuid.clone(),
        data_key: data.key.clone(),
        index_key: index.key.clone(),
        data_size: data.size,
        managed_ledger,
        offloaded: index.modified.unwrap_or(SystemTime::UNIX_EPOCH),
        cluster: metadata.get(CLUSTER_KEY).cloned(),
        software_version: metadata.get(SOFTWARE_VERSION_KEY).cloned(),
        length,
        entries,
        index: decoded,
    })
}

/// Whether a managed-ledger name can be a directory path inside the mount: `/`-separated
/// components, none empty, `.`, `..` or the unknown directory's name at the top.
fn usable_path(name: &str) -> bool {
    let mut parts = name.split('/');
    let first = parts.clone().next();
    first != Some(UNKNOWN_DIR)
        && parts
            .all(|p| !p.is_empty() && p != "." && p != ".." && p.len() <= 255 && !p.contains('\0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 1,
            modified: None,
        }
    }

    const U1: &str = "0f3c1a5e-9d2b-4c8e-8a71-2b5d6e7f8091";
    const U2: &str = "1f3c1a5e-9d2b-4c8e-8a71-2b5d6e7f8091";

    #[test]
    fn keys_are_grouped_into_copies_streaming_objects_and_the_rest() {
        let grouped = group(
            "",
            vec![
                object(&format!("{U1}-ledger-7")),
                object(&format!("{U1}-ledger-7-index")),
                object(&format!("{U2}-ledger-7")),
                object(&format!("{U2}-index")),
                object(U2),
                object("notes.txt"),
                object(&format!("{U1}-ledger-8-index")),
            ],
        );
        assert_eq!(grouped.copies.len(), 3);
        let seven: Vec<_> = grouped.copies.iter().filter(|c| c.ledger == 7).collect();
        assert_eq!(seven.len(), 2);
        assert!(seven[0].data.is_some() && seven[0].index.is_some());
        assert!(seven[1].index.is_none());
        assert_eq!(grouped.streaming.len(), 2);
        assert_eq!(grouped.foreign.len(), 1);
    }

    #[test]
    fn ledger_file_names_round_trip() {
        assert_eq!(ledger_file_name(42), "00000000000000000042.ledger");
        assert_eq!(
            parse_ledger_file_name("00000000000000000042.ledger"),
            Some(42)
        );
        assert_eq!(parse_ledger_file_name("42.ledger"), None);
        assert_eq!(parse_ledger_file_name("00000000000000000042.seg"), None);
    }

    #[test]
    fn managed_ledger_names_must_be_paths() {
        assert!(usable_path("public/default/persistent/t"));
        assert!(usable_path("t/cluster/ns/persistent/x%20y"));
        assert!(!usable_path("a//b"));
        assert!(!usable_path("../etc"));
        assert!(!usable_path("_unknown/x"));
        assert!(!usable_path(""));
    }
}
