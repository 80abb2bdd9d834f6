//! A wrapper that makes any [`ObjectStore`] fail on demand, for unit tests of what sits above
//! the store (offloads, recovery, retention) without a server: a fault names an operation, a
//! part of the key it hits, how many times it fires (or for good) and the error it answers.
//! Everything else goes through to the wrapped store. Never used by a mount.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Fetched, Metadata, ObjectInfo, ObjectStore, PendingUpload, PutCondition, StoreError,
    UploadedPart,
};

/// The store operations a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
    GetRange,
    Head,
    Delete,
    List,
    CreateMultipart,
    UploadPart,
    CompleteMultipart,
    AbortMultipart,
    ListMultipart,
}

#[derive(Debug, Clone)]
struct Fault {
    op: Op,
    key_contains: String,
    /// How many more times it fires; `None`: until healed.
    remaining: Option<u32>,
    error: StoreError,
}

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Mutex<Vec<Fault>>,
    /// How many failures were injected so far.
    pub injected: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            faults: Mutex::new(Vec::new()),
            injected: AtomicU64::new(0),
        })
    }

    /// `op` on keys containing `key_contains` fails with a transient error, `times` times
    /// (`None`: until [`FaultyStore::heal`]).
    pub fn fail(&self, op: Op, key_contains: &str, times: Option<u32>) {
        self.fail_with(
            op,
            key_contains,
            times,
            StoreError::Transient(format!("injected failure of {op:?}")),
        );
    }

    /// As [`FaultyStore::fail`], answering `error`.
    pub fn fail_with(&self, op: Op, key_contains: &str, times: Option<u32>, error: StoreError) {
        self.faults.lock().unwrap().push(Fault {
            op,
            key_contains: key_contains.to_string(),
            remaining: times,
            error,
        });
    }

    /// Removes every fault.
    pub fn heal(&self) {
        self.faults.lock().unwrap().clear();
    }

    fn check(&self, op: Op, key: &str) -> Result<(), StoreError> {
        let mut faults = self.faults.lock().unwrap();
        let hit = faults
            .iter_mut()
            .find(|f| f.op == op && key.contains(&f.key_contains) && f.remaining != Some(0));
        let Some(fault) = hit else {
            return Ok(());
        };
        if let Some(n) = fault.remaining.as_mut() {
            *n -= 1;
        }
        self.injected.fetch_add(1, Ordering::SeqCst);
        Err(fault.error.clone())
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    fn url(&self, key: &str) -> String {
        self.inner.url(key)
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.check(Op::Put, key)?;
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.check(Op::Get, key)?;
        self.inner.get(key).await
    }
    async fn get_if_changed(&self, key: &str, etag: Option<&str>) -> Result<Fetched, StoreError> {
        self.check(Op::Get, key)?;
        self.inner.get_if_changed(key, etag).await
    }
    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> Result<Option<String>, StoreError> {
        self.check(Op::Put, key)?;
        self.inner.put_if(key, body, condition).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        piece: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        self.check(Op::GetRange, key)?;
        self.inner.get_range(key, range, piece).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.check(Op::Head, key)?;
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.check(Op::Delete, key)?;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.check(Op::List, prefix)?;
        self.inner.list(prefix).await
    }
    async fn create_multipart(&self, key: &str) -> Result<String, StoreError> {
        self.check(Op::CreateMultipart, key)?;
        self.inner.create_multipart(key).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<UploadedPart, StoreError> {
        self.check(Op::UploadPart, key)?;
        self.inner.upload_part(key, upload_id, number, body).await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<(), StoreError> {
        self.check(Op::CompleteMultipart, key)?;
        self.inner.complete_multipart(key, upload_id, parts).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.check(Op::AbortMultipart, key)?;
        self.inner.abort_multipart(key, upload_id).await
    }
    async fn list_multipart(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        self.check(Op::ListMultipart, prefix)?;
        self.inner.list_multipart(prefix).await
    }
    async fn get_range_stream(
        &self,
        key: &str,
        range: Range<u64>,
    ) -> Result<tokio::sync::mpsc::Receiver<Result<Bytes, StoreError>>, StoreError> {
        self.check(Op::GetRange, key)?;
        self.inner.get_range_stream(key, range).await
    }
    async fn get_with_metadata(&self, key: &str) -> Result<(Bytes, Metadata), StoreError> {
        self.check(Op::Get, key)?;
        self.inner.get_with_metadata(key).await
    }
    async fn head_with_metadata(&self, key: &str) -> Result<Option<(u64, Metadata)>, StoreError> {
        self.check(Op::Head, key)?;
        self.inner.head_with_metadata(key).await
    }
    async fn put_with_metadata(
        &self,
        key: &str,
        body: Bytes,
        metadata: &Metadata,
    ) -> Result<(), StoreError> {
        self.check(Op::Put, key)?;
        self.inner.put_with_metadata(key, body, metadata).await
    }
    async fn create_multipart_with_metadata(
        &self,
        key: &str,
        metadata: &Metadata,
    ) -> Result<String, StoreError> {
        self.check(Op::CreateMultipart, key)?;
        self.inner
            .create_multipart_with_metadata(key, metadata)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn faults_fire_as_many_times_as_asked_on_matching_keys_only() {
        let store = FaultyStore::new(Arc::new(MemoryStore::default()));
        store.fail(Op::Put, "data/", Some(2));
        assert!(store.put("data/a", Bytes::from_static(b"1")).await.is_err());
        assert!(store.put("other/a", Bytes::from_static(b"1")).await.is_ok());
        assert!(store.put("data/a", Bytes::from_static(b"1")).await.is_err());
        assert!(store.put("data/a", Bytes::from_static(b"1")).await.is_ok());
        assert_eq!(store.injected.load(Ordering::SeqCst), 2);
        store.fail_with(Op::Delete, "", None, StoreError::Forbidden("no".into()));
        for _ in 0..3 {
            assert!(matches!(
                store.delete("data/a").await,
                Err(StoreError::Forbidden(_))
            ));
        }
        store.heal();
        store.delete("data/a").await.unwrap();
        assert!(store.head("data/a").await.unwrap().is_none());
    }
}
