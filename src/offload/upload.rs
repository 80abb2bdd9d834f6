//! Copying one sealed segment's bytes into the store as a multipart upload.
//!
//! Parts are `part_size` bytes (the max block size), read from the local file and sent up to
//! `concurrency` at a time; memory in use is at most `concurrency × part_size`. The caller owns
//! the upload's lifecycle (create, record, complete or abort); this module only moves bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::OffloadError;
use crate::store::{ObjectStore, UploadedPart};

pub struct PartUpload<'a> {
    pub store: &'a Arc<dyn ObjectStore>,
    pub key: &'a str,
    pub upload_id: &'a str,
    pub file: &'a Path,
    pub size: u64,
    pub part_size: u64,
    pub concurrency: usize,
    pub progress: &'a Arc<AtomicU64>,
}

impl PartUpload<'_> {
    /// Uploads every part; on the first failure the others are cancelled and the error returned.
    pub async fn run(&self) -> Result<Vec<UploadedPart>, OffloadError> {
        let file = Arc::new(File::open(self.file).map_err(|source| OffloadError::Read {
            path: self.file.to_path_buf(),
            source,
        })?);
        let parts = self.size.div_ceil(self.part_size);
        let limit = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut done = Vec::with_capacity(parts as usize);
        for index in 0..parts {
            let permit = Arc::clone(&limit)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            while let Some(finished) = tasks.try_join_next() {
                done.push(flatten(finished)?);
            }
            let start = index * self.part_size;
            let len = self.part_size.min(self.size - start);
            let (store, key, upload_id) = (
                Arc::clone(self.store),
                self.key.to_string(),
                self.upload_id.to_string(),
            );
            let (file, path, progress) = (
                Arc::clone(&file),
                self.file.to_path_buf(),
                Arc::clone(self.progress),
            );
            tasks.spawn(async move {
                let _permit = permit;
                let bytes = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len as usize];
                    file.read_exact_at(&mut buf, start)
                        .map(|()| Bytes::from(buf))
                        .map_err(|source| OffloadError::Read { path, source })
                })
                .await
                .map_err(|e| OffloadError::Task(e.to_string()))??;
                let part = store
                    .upload_part(&key, &upload_id, index as i32 + 1, bytes)
                    .await?;
                progress.fetch_add(len, Ordering::Relaxed);
                Ok::<_, OffloadError>(part)
            });
        }
        while let Some(finished) = tasks.join_next().await {
            match flatten(finished) {
                Ok(part) => done.push(part),
                Err(e) => {
                    tasks.abort_all();
                    return Err(e);
                }
            }
        }
        done.sort_by_key(|p| p.number);
        Ok(done)
    }
}

fn flatten(
    joined: Result<Result<UploadedPart, OffloadError>, tokio::task::JoinError>,
) -> Result<UploadedPart, OffloadError> {
    joined.map_err(|e| OffloadError::Task(e.to_string()))?
}
