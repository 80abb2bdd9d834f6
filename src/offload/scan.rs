//! `scan-offloaded`: what under a namespace's prefix nothing references (Pulsar's
//! scanOffloadedLedgers), and, with `--delete`, its removal.
//!
//! Referenced is whatever the bucket's catalog records (read afresh, so segments another
//! mount's catalog knows are never taken for debris) and whatever this data directory's
//! offload attempts are writing. Multipart uploads are stale only when they belong to no
//! attempt of this data directory and to no segment of the catalog.

use std::collections::HashSet;

use tracing::info;

use super::OffloadError;
use super::service::Offloader;
use crate::name::{NamespaceName, TopicName};

/// What `scan-offloaded` found.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanReport {
    /// Object URL and size.
    pub unreferenced: Vec<(String, u64)>,
    /// Object URL and upload id.
    pub stale_uploads: Vec<(String, String)>,
    pub deleted: bool,
}

impl Offloader {
    /// Objects under a namespace's prefix that neither the catalog nor an offload attempt
    /// references, and multipart uploads no attempt owns; with `delete`, removes them.
    pub async fn scan(&self, ns: &NamespaceName, delete: bool) -> Result<ScanReport, OffloadError> {
        let prefix = self.layout.namespace_prefix(&ns.tenant, &ns.namespace);
        // List first, then look at what references: an offload that starts in between records
        // its intent before uploading, and commits to the catalog before we read it.
        let objects = self.store.list(&prefix).await?;
        let uploads = self.store.list_multipart(&prefix).await?;
        self.catalog.refresh().await?;
        let catalog = self.catalog.state();
        let mut referenced = HashSet::new();
        let mut uploading = HashSet::new();
        for topic in catalog.topics().filter(|t| t.namespace_name() == *ns) {
            for segment in catalog.segments(topic) {
                referenced.insert(self.layout.data_key(topic, segment.id, &segment.uuid));
                referenced.insert(self.layout.index_key(topic, segment.id, &segment.uuid));
            }
        }
        for topic in self.log.topics(ns)? {
            let name = TopicName::new(&ns.tenant, &ns.namespace, &topic)
                .map_err(crate::log::LogError::from)?;
            let handle = self.log.topic(&name)?;
            for segment in handle.snapshot().sealed {
                if let Some(record) = segment.offload {
                    if !record.is_complete() {
                        uploading.insert(record.data_key.clone());
                    }
                    referenced.insert(record.data_key);
                    referenced.insert(record.index_key);
                }
            }
        }
        let mut report = ScanReport::default();
        for object in objects {
            if !referenced.contains(&object.key) {
                report
                    .unreferenced
                    .push((self.store.url(&object.key), object.size));
                if delete {
                    self.store.delete(&object.key).await?;
                }
            }
        }
        for upload in uploads {
            if !uploading.contains(&upload.key) {
                report
                    .stale_uploads
                    .push((self.store.url(&upload.key), upload.upload_id.clone()));
                if delete {
                    self.store
                        .abort_multipart(&upload.key, &upload.upload_id)
                        .await?;
                }
            }
        }
        report.deleted = delete;
        if delete && !(report.unreferenced.is_empty() && report.stale_uploads.is_empty()) {
            info!(namespace = %ns, objects = report.unreferenced.len(), uploads = report.stale_uploads.len(), "removed unreferenced objects and stale uploads");
        }
        Ok(report)
    }
}
