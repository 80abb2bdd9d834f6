//! The object tier: one trait over every place sealed segments are offloaded to.
//!
//! [`ObjectStore`] is the seam: [`s3::S3Store`] speaks S3 (Amazon S3, Aliyun OSS and any
//! S3-compatible server) through aws-sdk-s3; [`dir::DirStore`] keeps objects as files under a
//! directory (the `filesystem` driver). Callers never know which one they hold. Keys are
//! `/`-separated and relative to the store's root (bucket or directory).

pub mod dir;
#[cfg(test)]
pub mod faulty;
#[cfg(test)]
pub mod memory;
pub mod s3;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::config::{Driver, OffloadConfig};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{0} does not exist in the store")]
    NotFound(String),
    #[error("access denied: {0}")]
    Forbidden(String),
    #[error("the bucket does not exist: {0}")]
    NoSuchBucket(String),
    /// Worth retrying: 5xx, throttling, resets, timeouts.
    #[error("the store is unavailable: {0}")]
    Transient(String),
    /// A conditional write found the object not as the condition required (HTTP 412).
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
}

/// A part of a multipart upload, as the store acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    pub number: i32,
    pub etag: String,
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    /// When the upload was started, where the store says.
    pub initiated: Option<SystemTime>,
}

/// What a conditional GET found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The object still has the ETag the caller already holds (HTTP 304).
    Unchanged,
    /// The object's bytes and its ETag (`None` where the store gives none).
    Object { body: Bytes, etag: Option<String> },
}

/// The condition a write is made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// Write whatever is there.
    Always,
    /// Write only if no object has the key (`If-None-Match: *`).
    IfAbsent,
    /// Write only if the object still has this ETag (`If-Match`).
    IfMatch(String),
}

impl PutCondition {
    /// Whether the condition holds for an object whose current ETag is `current` (`None`:
    /// absent).
    pub fn holds(&self, current: Option<&str>) -> bool {
        match self {
            PutCondition::Always => true,
            PutCondition::IfAbsent => current.is_none(),
            PutCondition::IfMatch(wanted) => current == Some(wanted.as_str()),
        }
    }
}

/// The ETag stores without one of their own give an object: its CRC32C and length.
pub(crate) fn content_etag(bytes: &[u8]) -> String {
    format!("\"{:08x}-{}\"", crc32c::crc32c(bytes), bytes.len())
}

/// The answer to a conditional GET of `body`, for stores that compute [`content_etag`].
pub(crate) fn answer_if_changed(body: Bytes, etag: Option<&str>) -> Fetched {
    let current = content_etag(&body);
    if etag == Some(current.as_str()) {
        return Fetched::Unchanged;
    }
    Fetched::Object {
        body,
        etag: Some(current),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// When the object was last written, where the store says.
    pub modified: Option<SystemTime>,
}

/// An object's user metadata (`x-amz-meta-<key>`), keys lower-cased.
pub type Metadata = BTreeMap<String, String>;

#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// A URL naming the object, for users (`s3://bucket/key`, `file:///dir/key`).
    fn url(&self, key: &str) -> String;
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError>;
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;
    /// The object unless its ETag is still `etag` (a conditional GET: one small request that
    /// answers 304 when nothing changed). A missing object is [`StoreError::NotFound`].
    async fn get_if_changed(&self, key: &str, etag: Option<&str>) -> Result<Fetched, StoreError>;
    /// Writes the object under `condition` and returns its new ETag. A condition that does
    /// not hold is [`StoreError::PreconditionFailed`]. Stores that ignore conditions (older
    /// S3-compatible servers) write unconditionally; [`conditional_writes`] tells them apart.
    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<Option<String>, StoreError>;
    /// Bytes `range` of the object, as consecutive pieces of `piece` bytes (the last may be
    /// shorter), each in its own buffer so that a caller may keep some and drop others; a range
    /// past the end is cut at the end.
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        piece: usize,
    ) -> Result<Vec<Bytes>, StoreError>;
    /// The object's size, or `None` if it does not exist.
    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError>;
    /// Deletes the object; deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError>;
    async fn create_multipart(&self, key: &str) -> Result<String, StoreError>;
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<UploadedPart, StoreError>;
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<(), StoreError>;
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError>;
    async fn list_multipart(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError>;

    /// Bytes `range` of the object as they arrive, in the buffers the transport gives (no
    /// copy); the last item is an error if the body breaks off. A range past the end is cut at
    /// the end. Stores without streaming send it in one piece.
    async fn get_range_stream(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Bytes, StoreError>>, StoreError> {
        Ok(stream_of(self.get_range(key, range, 1 << 20).await?))
    }

    /// The object and its user metadata. Stores that keep none answer an empty map.
    async fn get_with_metadata(&self, key: &str) -> Result<(Bytes, Metadata), StoreError> {
        Ok((self.get(key).await?, Metadata::new()))
    }
    /// The object's size and user metadata, or `None` if it does not exist.
    async fn head_with_metadata(&self, key: &str) -> Result<Option<(u64, Metadata)>, StoreError> {
        Ok(self.head(key).await?.map(|size| (size, Metadata::new())))
    }
    /// Writes the object with user metadata (the objects Pulsar's offloader leaves behind, as
    /// tests and benchmarks write them). Stores that keep no metadata refuse.
    async fn put_with_metadata(
        &self,
        key: &str,
        _body: Bytes,
        _metadata: &Metadata,
    ) -> Result<(), StoreError> {
        Err(StoreError::Other(format!(
            "{}: this store keeps no user metadata",
            self.url(key)
        )))
    }
    /// Starts a multipart upload whose object will carry user metadata.
    async fn create_multipart_with_metadata(
        &self,
        key: &str,
        _metadata: &Metadata,
    ) -> Result<String, StoreError> {
        Err(StoreError::Other(format!(
            "{}: this store keeps no user metadata",
            self.url(key)
        )))
    }
}

/// Pieces already in hand, as the stream [`ObjectStore::get_range_stream`] answers.
pub(crate) fn stream_of(
    pieces: Vec<Bytes>,
) -> tokio::sync::mpsc::Receiver<Result<Bytes, StoreError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(pieces.len().max(1));
    for piece in pieces {
        let _ = tx.try_send(Ok(piece));
    }
    rx
}

/// Whether the store honours [`PutCondition::IfAbsent`]: writes a probe object twice under
/// `probe_key`, the second time on condition that it is absent, and removes it.
pub async fn conditional_writes(
    store: &dyn ObjectStore,
    probe_key: &str,
) -> Result<bool, StoreError> {
    store
        .put_if(
            probe_key,
            Bytes::from_static(b"probe\n"),
            PutCondition::Always,
        )
        .await?;
    let honoured = match store
        .put_if(
            probe_key,
            Bytes::from_static(b"probe\n"),
            PutCondition::IfAbsent,
        )
        .await
    {
        Ok(_) => false,
        Err(StoreError::PreconditionFailed(_)) => true,
        Err(e) => return Err(e),
    };
    store.delete(probe_key).await?;
    Ok(honoured)
}

/// Opens the store the configuration names.
pub async fn connect(
    config: &OffloadConfig,
    data_dir: &Path,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    Ok(match config.driver {
        Driver::Filesystem => {
            let root = config
                .filesystem_root
                .clone()
                .unwrap_or_else(|| data_dir.join("offload"));
            Arc::new(dir::DirStore::open(&root)?)
        }
        Driver::AwsS3 | Driver::S3 | Driver::AliyunOss => {
            Arc::new(s3::S3Store::connect(config).await)
        }
    })
}
