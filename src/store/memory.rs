//! An in-memory [`ObjectStore`] for unit tests of logic above the store: it counts requests and
//! can be told to fail or to stall. Never used by a mount.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Fetched, Metadata, ObjectInfo, ObjectStore, PendingUpload, PutCondition, StoreError,
    UploadedPart,
};

#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<String, Bytes>>,
    metadata: Mutex<HashMap<String, Metadata>>,
    pub range_gets: AtomicU64,
    /// Every request but ranged GETs: conditional GETs, GETs, PUTs, deletes, listings.
    pub requests: AtomicU64,
    /// Bytes written by PUTs.
    pub put_bytes: AtomicU64,
    pub failing: AtomicBool,
    /// Bytes per buffer of a streamed GET (0: 1 MiB), to cut records anywhere in tests.
    pub stream_frame: std::sync::atomic::AtomicUsize,
    pub stall: Mutex<Option<Duration>>,
}

impl MemoryStore {
    pub fn insert(&self, key: &str, data: impl Into<Bytes>) {
        self.objects
            .lock()
            .unwrap()
            .insert(key.to_string(), data.into());
    }

    fn object(&self, key: &str) -> Result<Bytes, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Transient("injected failure".into()));
        }
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.to_string()))
    }
}

impl MemoryStore {
    fn metadata_of(&self, key: &str) -> Metadata {
        self.metadata
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .unwrap_or_default()
    }
}

fn unsupported() -> StoreError {
    StoreError::Other("not supported by the memory store".into())
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn url(&self, key: &str) -> String {
        format!("memory://{key}")
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.put_if(key, body, PutCondition::Always).await.map(drop)
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.object(key)
    }
    async fn get_if_changed(&self, key: &str, etag: Option<&str>) -> Result<Fetched, StoreError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        Ok(super::answer_if_changed(self.object(key)?, etag))
    }
    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<Option<String>, StoreError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Transient("injected failure".into()));
        }
        let mut objects = self.objects.lock().unwrap();
        let current = objects.get(key).map(|b| super::content_etag(b));
        if !condition.holds(current.as_deref()) {
            return Err(StoreError::PreconditionFailed(format!(
                "{key}: {condition:?}"
            )));
        }
        let etag = super::content_etag(&body);
        self.put_bytes
            .fetch_add(body.len() as u64, Ordering::SeqCst);
        objects.insert(key.to_string(), body);
        Ok(Some(etag))
    }
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        piece: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        self.range_gets.fetch_add(1, Ordering::SeqCst);
        let stall = *self.stall.lock().unwrap();
        if let Some(stall) = stall {
            tokio::time::sleep(stall).await;
        }
        let data = self.object(key)?;
        let end = (range.end as usize).min(data.len());
        Ok(into_pieces(
            &data[(range.start as usize).min(end)..end],
            piece,
        ))
    }
    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.object(key).ok().map(|d| d.len() as u64))
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectInfo {
                key: k.clone(),
                size: v.len() as u64,
                modified: Some(std::time::SystemTime::now()),
            })
            .collect())
    }
    async fn create_multipart(&self, _key: &str) -> Result<String, StoreError> {
        Err(unsupported())
    }
    async fn upload_part(
        &self,
        _: &str,
        _: &str,
        _: i32,
        _: Bytes,
    ) -> Result<UploadedPart, StoreError> {
        Err(unsupported())
    }
    async fn complete_multipart(
        &self,
        _: &str,
        _: &str,
        _: Vec<UploadedPart>,
    ) -> Result<(), StoreError> {
        Err(unsupported())
    }
    async fn abort_multipart(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Err(unsupported())
    }
    async fn list_multipart(&self, _: &str) -> Result<Vec<PendingUpload>, StoreError> {
        Ok(Vec::new())
    }
    async fn get_range_stream(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Bytes, StoreError>>, StoreError> {
        let frame = match self.stream_frame.load(Ordering::SeqCst) {
            0 => 1 << 20,
            n => n,
        };
        Ok(super::stream_of(self.get_range(key, range, frame).await?))
    }
    async fn get_with_metadata(&self, key: &str) -> Result<(Bytes, Metadata), StoreError> {
        let body = self.get(key).await?;
        Ok((body, self.metadata_of(key)))
    }
    async fn head_with_metadata(&self, key: &str) -> Result<Option<(u64, Metadata)>, StoreError> {
        Ok(self
            .head(key)
            .await?
            .map(|size| (size, self.metadata_of(key))))
    }
    async fn put_with_metadata(
        &self,
        key: &str,
        body: Bytes,
        metadata: &Metadata,
    ) -> Result<(), StoreError> {
        self.put(key, body).await?;
        self.metadata
            .lock()
            .unwrap()
            .insert(key.to_string(), metadata.clone());
        Ok(())
    }
}

/// Cuts `data` into owned pieces of `piece` bytes (the last may be shorter), as a real store's
/// body arrives: each piece its own buffer.
fn into_pieces(data: &[u8], piece: usize) -> Vec<Bytes> {
    data.chunks(piece.max(1))
        .map(Bytes::copy_from_slice)
        .collect()
}
