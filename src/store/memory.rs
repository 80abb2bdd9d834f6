//! An in-memory [`ObjectStore`] for unit tests of logic above the store: objects, their
//! metadata and multipart uploads (parts kept until completed or aborted, as S3 keeps them). It
//! counts requests and can be told to fail or to stall; [`super::faulty::FaultyStore`] fails
//! chosen operations of any store. Never used by a mount.

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
    /// Ranged GETs longer than this many bytes stall this long (the others answer at once);
    /// streamed, their first this many bytes come at once and the rest after the stall.
    pub stall_long_ranges: Mutex<Option<(u64, Duration)>>,
    /// Streamed GETs break off with a transient error after this many bytes of their body.
    pub break_streams: Mutex<Option<u64>>,
    uploads: Mutex<HashMap<String, Upload>>,
    next_upload: AtomicU64,
}

/// A multipart upload in progress.
#[derive(Debug)]
struct Upload {
    key: String,
    parts: std::collections::BTreeMap<i32, Bytes>,
    initiated: std::time::SystemTime,
}

impl MemoryStore {
    pub fn insert(&self, key: &str, data: impl Into<Bytes>) {
        self.objects
            .lock()
            .unwrap()
            .insert(key.to_string(), data.into());
    }

    fn check_failing(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Transient("injected failure".into()));
        }
        Ok(())
    }

    fn object(&self, key: &str) -> Result<Bytes, StoreError> {
        self.check_failing()?;
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

/// The upload `upload_id` of `key`; S3's NoSuchUpload (a 404) otherwise.
fn open_upload<'a>(
    uploads: &'a mut HashMap<String, Upload>,
    key: &str,
    upload_id: &str,
) -> Result<&'a mut Upload, StoreError> {
    uploads
        .get_mut(upload_id)
        .filter(|u| u.key == key)
        .ok_or_else(|| StoreError::NotFound(format!("upload {upload_id} of {key}")))
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
        let long_stall = *self.stall_long_ranges.lock().unwrap();
        if let Some((over, stall)) = long_stall
            && range.end - range.start > over
        {
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
    async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.check_failing()?;
        let id = format!("upload-{}", self.next_upload.fetch_add(1, Ordering::SeqCst));
        self.uploads.lock().unwrap().insert(
            id.clone(),
            Upload {
                key: key.to_string(),
                parts: Default::default(),
                initiated: std::time::SystemTime::now(),
            },
        );
        Ok(id)
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<UploadedPart, StoreError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.check_failing()?;
        let mut uploads = self.uploads.lock().unwrap();
        let upload = open_upload(&mut uploads, key, upload_id)?;
        let etag = super::content_etag(&body);
        self.put_bytes
            .fetch_add(body.len() as u64, Ordering::SeqCst);
        upload.parts.insert(number, body);
        Ok(UploadedPart { number, etag })
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<(), StoreError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.check_failing()?;
        let mut uploads = self.uploads.lock().unwrap();
        let upload = open_upload(&mut uploads, key, upload_id)?;
        let mut whole = Vec::new();
        for part in &parts {
            let body = upload
                .parts
                .get(&part.number)
                .filter(|body| super::content_etag(body) == part.etag)
                .ok_or_else(|| {
                    StoreError::Other(format!(
                        "InvalidPart: part {} of {key} was not uploaded as listed",
                        part.number
                    ))
                })?;
            whole.extend_from_slice(body);
        }
        uploads.remove(upload_id);
        drop(uploads);
        self.insert(key, whole);
        Ok(())
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.check_failing()?;
        let mut uploads = self.uploads.lock().unwrap();
        open_upload(&mut uploads, key, upload_id)?;
        uploads.remove(upload_id);
        Ok(())
    }
    async fn list_multipart(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.check_failing()?;
        Ok(self
            .uploads
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, u)| u.key.starts_with(prefix))
            .map(|(id, u)| PendingUpload {
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated: Some(u.initiated),
            })
            .collect())
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
        let break_after = *self.break_streams.lock().unwrap();
        if let Some(after) = break_after {
            let mut pieces = self.get_range(key, range.clone(), frame).await?;
            let mut kept = 0u64;
            pieces.retain(|piece| {
                kept += piece.len() as u64;
                kept <= after
            });
            let (tx, rx) = tokio::sync::mpsc::channel(pieces.len() + 1);
            for piece in pieces {
                let _ = tx.try_send(Ok(piece));
            }
            let _ = tx.try_send(Err(StoreError::Transient("the body broke off".into())));
            return Ok(rx);
        }
        let long_stall = *self.stall_long_ranges.lock().unwrap();
        let Some((over, stall)) = long_stall.filter(|(over, _)| range.end - range.start > *over)
        else {
            return Ok(super::stream_of(self.get_range(key, range, frame).await?));
        };
        // The first `over` bytes at once, the rest after the stall.
        self.range_gets.fetch_add(1, Ordering::SeqCst);
        let data = self.object(key)?;
        let end = (range.end as usize).min(data.len());
        let body = data.slice((range.start as usize).min(end)..end);
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let split = (over as usize).min(body.len());
        let _ = tx.try_send(Ok(body.slice(..split)));
        tokio::spawn(async move {
            tokio::time::sleep(stall).await;
            let _ = tx.send(Ok(body.slice(split..))).await;
        });
        Ok(rx)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multipart_uploads_complete_in_part_order_and_abort_cleanly() {
        let store = MemoryStore::default();
        let id = store.create_multipart("a/b").await.unwrap();
        let second = store
            .upload_part("a/b", &id, 2, Bytes::from_static(b"world"))
            .await
            .unwrap();
        let first = store
            .upload_part("a/b", &id, 1, Bytes::from_static(b"hello "))
            .await
            .unwrap();
        assert_eq!(store.list_multipart("a/").await.unwrap().len(), 1);
        assert!(
            store.get("a/b").await.is_err(),
            "not visible before completion"
        );
        store
            .complete_multipart("a/b", &id, vec![first, second])
            .await
            .unwrap();
        assert_eq!(store.get("a/b").await.unwrap(), "hello world");
        assert!(store.list_multipart("").await.unwrap().is_empty());

        let id = store.create_multipart("a/c").await.unwrap();
        let part = store
            .upload_part("a/c", &id, 1, Bytes::from_static(b"x"))
            .await
            .unwrap();
        store.abort_multipart("a/c", &id).await.unwrap();
        assert!(matches!(
            store.complete_multipart("a/c", &id, vec![part]).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.abort_multipart("a/c", &id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(store.get("a/c").await.is_err());
    }
}
