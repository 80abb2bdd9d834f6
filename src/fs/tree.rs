//! Where the tree a mount shows comes from: the writer's local log (tenants, namespaces and
//! topics on local disk, each with its sealed segments and `active`), or — for a read-only
//! mount — the bucket's catalog (every offloaded segment of every topic; no `active`).
//!
//! The filesystem asks its [`Tree`] the questions a path walk and a listing need; only the
//! writer's tree can change.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::catalog::{Catalog, offloaded_segment};
use crate::log::{LocalLog, SealedSegment};
use crate::name::{NamespaceName, TopicName};
use crate::offload::Layout;
use crate::pulsar::tree::PulsarBucket;

/// A read-only mount's tree: the catalog as last refreshed.
#[derive(Debug, Clone)]
pub struct BucketTree {
    pub catalog: Arc<Catalog>,
    pub layout: Layout,
    /// Directories carry this time (the bucket keeps none for them).
    pub mounted: SystemTime,
    /// The mount's data directory (its cache): `statfs` reports its filesystem.
    pub data_dir: std::path::PathBuf,
}

#[derive(Debug, Clone)]
pub enum Tree {
    Log(Arc<LocalLog>),
    Bucket(BucketTree),
    /// A bucket written by Pulsar's offloader (`--pulsar`): ledgers, not topics.
    Pulsar(Arc<PulsarBucket>),
}

impl Tree {
    pub fn log(&self) -> Option<&Arc<LocalLog>> {
        match self {
            Tree::Log(log) => Some(log),
            Tree::Bucket(_) | Tree::Pulsar(_) => None,
        }
    }

    pub fn has_tenant(&self, tenant: &str) -> bool {
        match self {
            Tree::Log(log) => log.has_tenant(tenant),
            Tree::Bucket(b) => b.catalog.state().tenants().contains(tenant),
            Tree::Pulsar(_) => false,
        }
    }

    pub fn has_namespace(&self, ns: &NamespaceName) -> bool {
        match self {
            Tree::Log(log) => log.has_namespace(ns),
            Tree::Bucket(b) => b
                .catalog
                .state()
                .namespaces(&ns.tenant)
                .contains(&ns.namespace),
            Tree::Pulsar(_) => false,
        }
    }

    pub fn has_topic(&self, topic: &TopicName) -> bool {
        match self {
            Tree::Log(log) => log.topic(topic).is_ok(),
            Tree::Bucket(b) => b.catalog.state().has_topic(topic),
            Tree::Pulsar(_) => false,
        }
    }

    pub fn tenants(&self) -> Vec<String> {
        match self {
            Tree::Log(log) => log.tenants(),
            Tree::Bucket(b) => b.catalog.state().tenants().into_iter().collect(),
            Tree::Pulsar(_) => Vec::new(),
        }
    }

    /// `None` when the tenant does not exist.
    pub fn namespaces(&self, tenant: &str) -> Option<Vec<String>> {
        match self {
            Tree::Log(log) => log.namespaces(tenant).ok(),
            Tree::Bucket(b) => {
                let names: Vec<String> = b.catalog.state().namespaces(tenant).into_iter().collect();
                (!names.is_empty()).then_some(names)
            }
            Tree::Pulsar(_) => None,
        }
    }

    /// `None` when the namespace does not exist.
    pub fn topics(&self, ns: &NamespaceName) -> Option<Vec<String>> {
        match self {
            Tree::Log(log) => log.topics(ns).ok(),
            Tree::Bucket(_) if !self.has_namespace(ns) => None,
            Tree::Bucket(b) => Some(b.catalog.state().topics_of(ns)),
            Tree::Pulsar(_) => None,
        }
    }

    /// A sealed segment of a topic.
    pub fn sealed_segment(&self, topic: &TopicName, id: u64) -> Option<SealedSegment> {
        match self {
            Tree::Log(log) => log.topic(topic).ok()?.sealed_segment(id),
            Tree::Bucket(b) => {
                let state = b.catalog.state();
                let entry = state.segment(topic, id)?;
                Some(offloaded_segment(&b.layout, topic, entry))
            }
            Tree::Pulsar(_) => None,
        }
    }

    /// Every sealed segment of a bucket topic, oldest first (`None`: no such topic).
    pub fn bucket_segments(&self, topic: &TopicName) -> Option<Vec<SealedSegment>> {
        let Tree::Bucket(b) = self else {
            return None;
        };
        let state = b.catalog.state();
        if !state.has_topic(topic) {
            return None;
        }
        Some(
            state
                .segments(topic)
                .map(|e| offloaded_segment(&b.layout, topic, e))
                .collect(),
        )
    }

    /// The directory whose filesystem `statfs` reports.
    pub fn space_dir(&self) -> &Path {
        match self {
            Tree::Log(log) => log.root_dir(),
            Tree::Bucket(b) => &b.data_dir,
            Tree::Pulsar(p) => &p.data_dir,
        }
    }

    /// When bucket directories say they were modified.
    pub fn mounted(&self) -> Option<SystemTime> {
        match self {
            Tree::Log(_) => None,
            Tree::Bucket(b) => Some(b.mounted),
            Tree::Pulsar(p) => Some(p.mounted),
        }
    }
}
