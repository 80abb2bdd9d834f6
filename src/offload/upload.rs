//! Copying one sealed segment's bytes into the store as a multipart upload.
//!
//! Parts are `part_size` bytes (the max block size), read from the local file and sent up to
//! `concurrency` at a time; memory in use is at most `concurrency × part_size`. The caller owns
//! the upload's lifecycle (create, record, complete or abort); this module only moves bytes.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::OffloadError;
use super::index_object::BlockSums;
use crate::store::{ObjectStore, UploadedPart};

/// What the upload learnt of the bytes it sent: their CRC32C, and the checksums of each read
/// block when parts are whole multiples of the block size (else the caller computes them).
#[derive(Debug)]
pub struct Uploaded {
    pub parts: Vec<UploadedPart>,
    pub crc32c: u32,
    pub block_sums: Option<BlockSums>,
}

struct PartDone {
    part: UploadedPart,
    len: u64,
    crc32c: u32,
    block_sums: BlockSums,
}

pub struct PartUpload<'a> {
    pub store: &'a Arc<dyn ObjectStore>,
    pub key: &'a str,
    pub upload_id: &'a str,
    pub file: &'a Path,
    pub size: u64,
    pub part_size: u64,
    pub concurrency: usize,
    /// The read block size, for the index object's checksums.
    pub block_size: u64,
    pub progress: &'a Arc<AtomicU64>,
}

impl PartUpload<'_> {
    /// Uploads every part; on the first failure the others are cancelled and the error returned.
    pub async fn run(&self) -> Result<Uploaded, OffloadError> {
        let aligned = self.block_size > 0 && self.part_size % self.block_size == 0;
        let block = if aligned { self.block_size as usize } else { 0 };
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
                let begun = std::time::Instant::now();
                // Mapped, not copied (see `mapped`); populating the mapping may read the disk.
                let bytes = tokio::task::spawn_blocking(move || {
                    super::mapped::map_range(&file, start, len as usize)
                        .map_err(|source| OffloadError::Read { path, source })
                })
                .await
                .map_err(|e| OffloadError::Task(e.to_string()))??;
                let read = begun.elapsed();
                // One pass over the bytes: the part's CRC32C is combined from its blocks'.
                let (crc32c, block_sums) = if block > 0 {
                    let sums = BlockSums::of(&bytes, block);
                    let whole = bytes
                        .chunks(block)
                        .zip(&sums.blocks)
                        .fold(0, |crc, (chunk, c)| {
                            crc32c::crc32c_combine(crc, *c, chunk.len())
                        });
                    (whole, sums)
                } else {
                    (crc32c::crc32c(&bytes), BlockSums::default())
                };
                let part = store
                    .upload_part(&key, &upload_id, index as i32 + 1, bytes)
                    .await?;
                tracing::debug!(
                    part = index + 1,
                    read_s = read.as_secs_f64(),
                    upload_s = (begun.elapsed() - read).as_secs_f64(),
                    "part uploaded"
                );
                progress.fetch_add(len, Ordering::Relaxed);
                Ok::<_, OffloadError>(PartDone {
                    part,
                    len,
                    crc32c,
                    block_sums,
                })
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
        done.sort_by_key(|p| p.part.number);
        let mut crc = 0u32;
        let mut block_sums = BlockSums::default();
        for part in &done {
            crc = crc32c::crc32c_combine(crc, part.crc32c, part.len as usize);
            block_sums.extend(&part.block_sums);
        }
        Ok(Uploaded {
            parts: done.into_iter().map(|p| p.part).collect(),
            crc32c: crc,
            block_sums: aligned.then_some(block_sums),
        })
    }
}

fn flatten(
    joined: Result<Result<PartDone, OffloadError>, tokio::task::JoinError>,
) -> Result<PartDone, OffloadError> {
    joined.map_err(|e| OffloadError::Task(e.to_string()))?
}
