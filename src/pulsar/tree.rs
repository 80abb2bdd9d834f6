//! The tree a `--pulsar` mount shows: one directory per managed ledger (its name's `/`s become
//! directories), one file `<ledgerId:020>.ledger` per ledger shown, `_unknown/` for ledgers
//! whose managed ledger the objects do not name. Built from a [`Survey`]; refreshed by
//! surveying again, keeping the readers (and what they walked) of ledgers that did not change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use super::bucket::{IndexCache, Survey, survey};
use super::reader::{LedgerCache, LedgerReader};
use crate::store::StoreError;

/// One directory of the tree.
#[derive(Debug, Default)]
pub struct Directory {
    pub subdirs: BTreeSet<String>,
    pub ledgers: BTreeMap<u64, Arc<LedgerReader>>,
}

/// A snapshot of the tree.
#[derive(Debug, Default)]
pub struct LedgerTree {
    /// By path without leading or trailing `/`; the root is `""`.
    dirs: BTreeMap<String, Directory>,
}

impl LedgerTree {
    fn build(survey: &Survey, cache: &Arc<LedgerCache>, previous: &LedgerTree) -> Self {
        let mut dirs: BTreeMap<String, Directory> = BTreeMap::new();
        dirs.insert(String::new(), Directory::default());
        let kept: BTreeMap<&str, &Arc<LedgerReader>> = previous
            .dirs
            .values()
            .flat_map(|d| d.ledgers.values())
            .map(|r| (r.ledger().index_key.as_str(), r))
            .collect();
        for ledger in survey.shown() {
            let reader = match kept.get(ledger.index_key.as_str()) {
                Some(reader) => Arc::clone(reader),
                None => match LedgerReader::new(Arc::clone(ledger), Arc::clone(cache)) {
                    Ok(reader) => Arc::new(reader),
                    Err(e) => {
                        tracing::warn!(ledger = ledger.id, error = %e, "ledger not shown");
                        continue;
                    }
                },
            };
            let path = ledger.directory().to_string();
            // Every ancestor lists its child directory.
            let mut parent = String::new();
            for part in path.split('/') {
                dirs.entry(parent.clone())
                    .or_default()
                    .subdirs
                    .insert(part.to_string());
                if !parent.is_empty() {
                    parent.push('/');
                }
                parent.push_str(part);
            }
            dirs.entry(path)
                .or_default()
                .ledgers
                .insert(ledger.id, reader);
        }
        Self { dirs }
    }

    pub fn dir(&self, path: &str) -> Option<&Directory> {
        self.dirs.get(path)
    }

    pub fn ledger(&self, dir: &str, id: u64) -> Option<&Arc<LedgerReader>> {
        self.dirs.get(dir)?.ledgers.get(&id)
    }

    /// Ledgers shown.
    pub fn len(&self) -> usize {
        self.dirs.values().map(|d| d.ledgers.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A Pulsar offload bucket as a mount shows it.
#[derive(Debug)]
pub struct PulsarBucket {
    cache: Arc<LedgerCache>,
    prefix: String,
    index_cache: Option<IndexCache>,
    tree: RwLock<Arc<LedgerTree>>,
    survey: RwLock<Arc<Survey>>,
    pub mounted: SystemTime,
    pub data_dir: std::path::PathBuf,
}

impl PulsarBucket {
    /// Surveys the bucket and builds the first tree.
    pub async fn open(
        cache: Arc<LedgerCache>,
        prefix: String,
        index_cache: Option<IndexCache>,
        data_dir: std::path::PathBuf,
    ) -> Result<Self, StoreError> {
        let bucket = Self {
            cache,
            prefix,
            index_cache,
            tree: RwLock::new(Arc::new(LedgerTree::default())),
            survey: RwLock::new(Arc::new(Survey::default())),
            mounted: SystemTime::now(),
            data_dir,
        };
        bucket.refresh().await?;
        Ok(bucket)
    }

    pub fn tree(&self) -> Arc<LedgerTree> {
        Arc::clone(&self.tree.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn survey(&self) -> Arc<Survey> {
        Arc::clone(&self.survey.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Lists the bucket again; new ledgers appear, deleted ones go. Returns the paths of
    /// ledger files that went (the kernel must forget them).
    pub async fn refresh(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let previous = self.survey();
        let fresh = survey(
            self.cache.store(),
            &self.prefix,
            self.index_cache.as_ref(),
            Some(&previous),
        )
        .await?;
        let old_tree = self.tree();
        let tree = LedgerTree::build(&fresh, &self.cache, &old_tree);
        let gone = old_tree
            .dirs
            .iter()
            .flat_map(|(dir, d)| d.ledgers.keys().map(move |id| (dir.clone(), *id)))
            .filter(|(dir, id)| tree.ledger(dir, *id).is_none())
            .collect();
        *self.tree.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tree);
        *self.survey.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(gone)
    }
}
