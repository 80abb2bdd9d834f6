//! One offload attempt of one sealed segment, two-phase and crash-safe:
//!
//! 1. intent: a fresh uuid and the object keys are recorded in the topic's local manifest;
//! 2. the data object is uploaded as a multipart upload (its upload id is recorded too);
//! 3. the index object (entry offsets, a CRC32C per read block) is written, at the same time
//!    as the multipart upload is completed;
//! 4. the segment is committed to the bucket's catalog — from here on it exists for every
//!    reader of the bucket — and only then marked complete in the local manifest.
//!
//! A failed attempt aborts its multipart upload and deletes what it wrote, then clears its
//! intent — except when the catalog commit may have landed (its outcome is unknown) or did
//! land (the local completion record then failed): the intent and the objects stay, and
//! recovery settles them against the catalog.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use tracing::{debug, error, info, warn};

use super::OffloadError;
use super::index_object::{BlockSums, HEAD_BYTES, IndexObject};
use super::service::{Offloader, blocking, now_ms};
use super::upload::PartUpload;
use crate::catalog::{Change, SegmentEntry};
use crate::log::{OffloadRecord, SealedSegment, Topic};

/// The catalog's record of a segment offloaded by `record`.
pub(super) fn catalog_entry(
    segment: &SealedSegment,
    record: &OffloadRecord,
    at_ms: u64,
) -> SegmentEntry {
    SegmentEntry {
        id: segment.id,
        uuid: record.uuid.clone(),
        entries: segment.entries,
        size: segment.size,
        crc32c: segment.crc32c,
        created_ms: segment.created_ms,
        sealed_ms: segment.sealed_ms,
        offloaded_ms: at_ms,
    }
}

impl Offloader {
    /// Offloads one sealed segment, two-phase; on failure nothing of the attempt remains.
    pub(super) async fn offload_segment(
        &self,
        topic: &Arc<Topic>,
        id: u64,
        uploaded: &Arc<AtomicU64>,
    ) -> Result<(), OffloadError> {
        let Some(segment) = topic.sealed_segment(id) else {
            return Ok(()); // the topic moved on; nothing to do
        };
        if segment.offload.is_some() || !segment.local {
            return Ok(());
        }
        if let Some(fenced) = self.fenced() {
            return Err(fenced);
        }
        let name = topic.name().clone();
        let uuid = uuid::Uuid::new_v4().to_string();
        let record = OffloadRecord {
            data_key: self.layout.data_key(&name, id, &uuid),
            index_key: self.layout.index_key(&name, id, &uuid),
            uuid,
            upload_id: None,
            started_ms: now_ms(),
            completed_ms: None,
        };
        let intent = record.clone();
        let t = Arc::clone(topic);
        blocking(move || t.update_sealed(id, |s| s.offload = Some(intent))).await?;
        info!(topic = %name, segment = id, key = %record.data_key, bytes = segment.size, "offloading segment");
        let started = std::time::Instant::now();
        let uploaded_objects = self.upload(topic, &segment, &record, uploaded).await;
        let uploaded_objects = match uploaded_objects {
            Ok(()) => self.ensure_lease().await,
            Err(e) => Err(e),
        };
        let result = match uploaded_objects {
            Ok(()) => {
                let completed = now_ms();
                let change = Change::Offloaded {
                    topic: name.to_string(),
                    segment: catalog_entry(&segment, &record, completed),
                };
                match self.catalog.commit(vec![change]).await {
                    Ok(seq) => {
                        debug!(topic = %name, segment = id, seq, "offload committed to the catalog");
                        if let Err(e) = self.mark_complete(topic, id, completed).await {
                            // The bucket has it: its objects must stay. The intent stays too,
                            // and the topic's next task rolls it forward.
                            self.metrics.offload_errors.inc();
                            error!(topic = %name, segment = id, error = %e, "the offload is committed to the catalog but cannot be recorded locally; it is settled by the topic's next offload task");
                            return Err(e);
                        }
                        Ok(())
                    }
                    Err(e) if e.may_have_landed() => {
                        // It may have landed: keep the intent and the objects for the topic's
                        // next task to settle against the bucket.
                        self.metrics.offload_errors.inc();
                        error!(topic = %name, segment = id, error = %e, "the catalog commit's outcome is unknown; the offload is settled against the bucket by the topic's next offload task");
                        return Err(e.into());
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                let secs = started.elapsed().as_secs_f64();
                self.metrics.offloads.inc();
                self.metrics.offload_bytes.inc_by(segment.size);
                self.metrics.offload_duration.observe(secs);
                info!(topic = %name, segment = id, bytes = segment.size, seconds = secs, "offload complete");
                Ok(())
            }
            Err(e) => {
                self.metrics.offload_errors.inc();
                let recorded = topic
                    .sealed_segment(id)
                    .and_then(|s| s.offload)
                    .unwrap_or(record);
                self.discard_attempt(&recorded).await;
                let t = Arc::clone(topic);
                if let Err(clear) =
                    blocking(move || t.update_sealed(id, |s| s.offload = None)).await
                {
                    error!(topic = %name, segment = id, error = %clear, "cannot clear the failed offload's record; it is cleaned at the next start");
                }
                Err(e)
            }
        }
    }

    /// Records locally that the segment's offload is complete (the catalog already says so).
    pub(super) async fn mark_complete(
        &self,
        topic: &Arc<Topic>,
        id: u64,
        completed_ms: u64,
    ) -> Result<(), OffloadError> {
        let t = Arc::clone(topic);
        blocking(move || {
            t.update_sealed(id, |s| {
                if let Some(r) = s.offload.as_mut() {
                    r.completed_ms = Some(completed_ms);
                }
            })
        })
        .await
        .map(drop)
    }

    async fn upload(
        &self,
        topic: &Arc<Topic>,
        segment: &SealedSegment,
        record: &OffloadRecord,
        uploaded: &Arc<AtomicU64>,
    ) -> Result<(), OffloadError> {
        let id = segment.id;
        let path = topic.sealed_data_path(id);
        let upload_id = self.store.create_multipart(&record.data_key).await?;
        let t = Arc::clone(topic);
        let recorded_id = upload_id.clone();
        blocking(move || {
            t.update_sealed(id, |s| {
                if let Some(r) = s.offload.as_mut() {
                    r.upload_id = Some(recorded_id);
                }
            })
        })
        .await?;
        let started = std::time::Instant::now();
        let parts = PartUpload {
            store: &self.store,
            key: &record.data_key,
            upload_id: &upload_id,
            file: &path,
            size: segment.size,
            part_size: self.config.max_block_size,
            concurrency: self.config.max_threads,
            block_size: self.config.read_buffer_size,
            progress: uploaded,
        }
        .run()
        .await?;
        if parts.crc32c != segment.crc32c {
            return Err(OffloadError::Log(crate::log::LogError::Corrupt {
                path,
                reason: "the segment's bytes no longer match the CRC32C recorded when it sealed"
                    .into(),
            }));
        }
        let uploaded_in = started.elapsed();
        // The index object is written while the upload completes: neither is visible to a
        // reader before the catalog commit, and an attempt that fails here deletes both.
        let complete = async {
            self.store
                .complete_multipart(&record.data_key, &upload_id, parts.parts)
                .await?;
            Ok::<_, OffloadError>(started.elapsed())
        };
        let index = async {
            let index = self.index_object(topic, segment, parts.block_sums).await?;
            self.store
                .put(&record.index_key, Bytes::from(index.encode()))
                .await?;
            Ok::<_, OffloadError>(started.elapsed())
        };
        let (completed_in, indexed_in) = tokio::try_join!(complete, index)?;
        debug!(
            parts_s = uploaded_in.as_secs_f64(),
            complete_s = (completed_in - uploaded_in).as_secs_f64(),
            index_s = (indexed_in - uploaded_in).as_secs_f64(),
            "offload phases"
        );
        Ok(())
    }

    /// Builds a segment's index object: entry ends from the local entry index, block checksums
    /// from the upload when it computed them, else from the local file.
    async fn index_object(
        &self,
        topic: &Arc<Topic>,
        segment: &SealedSegment,
        block_sums: Option<BlockSums>,
    ) -> Result<IndexObject, OffloadError> {
        let (t, id, size, crc) = (Arc::clone(topic), segment.id, segment.size, segment.crc32c);
        let block = self.config.read_buffer_size.min(u64::from(u32::MAX)) as usize;
        tokio::task::spawn_blocking(move || {
            let sums = match block_sums {
                Some(sums) => sums,
                None => {
                    // Parts were not whole blocks: read the file again, a block at a time.
                    let path = t.sealed_data_path(id);
                    let read = |source| OffloadError::Read {
                        path: path.clone(),
                        source,
                    };
                    let mut file = std::fs::File::open(&path).map_err(read)?;
                    let mut sums = BlockSums::default();
                    let mut buf = vec![0u8; block];
                    loop {
                        let n = std::io::Read::read(&mut file, &mut buf).map_err(read)?;
                        if n == 0 {
                            break;
                        }
                        let mut filled = n;
                        while filled < block {
                            let more =
                                std::io::Read::read(&mut file, &mut buf[filled..]).map_err(read)?;
                            if more == 0 {
                                break;
                            }
                            filled += more;
                        }
                        sums.extend(&BlockSums::of(&buf[..filled], block));
                    }
                    sums
                }
            };
            let entry_ends = t.sealed_index(id)?.into_iter().map(|r| r.end).collect();
            Ok(IndexObject {
                segment: id,
                size,
                block_size: block as u32,
                segment_crc32c: crc,
                entry_ends,
                block_crcs: sums.blocks,
                // Heads only help blocks longer than one.
                head_size: if block > HEAD_BYTES as usize {
                    HEAD_BYTES
                } else {
                    0
                },
                head_crcs: if block > HEAD_BYTES as usize {
                    sums.heads
                } else {
                    Vec::new()
                },
            })
        })
        .await
        .map_err(|e| OffloadError::Task(e.to_string()))?
    }

    /// Aborts an attempt's multipart upload and deletes whatever objects it wrote.
    pub(super) async fn discard_attempt(&self, record: &OffloadRecord) {
        if let Some(upload_id) = &record.upload_id
            && let Err(e) = self
                .store
                .abort_multipart(&record.data_key, upload_id)
                .await
        {
            warn!(key = %record.data_key, error = %e, "cannot abort the multipart upload");
        }
        match self.store.list_multipart(&record.data_key).await {
            Ok(uploads) => {
                for upload in uploads.iter().filter(|u| u.key == record.data_key) {
                    if let Err(e) = self
                        .store
                        .abort_multipart(&upload.key, &upload.upload_id)
                        .await
                    {
                        warn!(key = %upload.key, error = %e, "cannot abort the multipart upload");
                    }
                }
            }
            Err(e) => warn!(key = %record.data_key, error = %e, "cannot list multipart uploads"),
        }
        for key in [&record.data_key, &record.index_key] {
            if let Err(e) = self.store.delete(key).await {
                warn!(key = %key, error = %e, "cannot delete a partial object");
            }
        }
    }
}
