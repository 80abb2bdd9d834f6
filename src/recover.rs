//! `tierfs recover`: rebuilds a lost data directory from the bucket alone.
//!
//! Reads the catalog under the configured bucket and prefix and writes a new data directory in
//! which every topic the catalog records exists with every offloaded segment (remote only: no
//! local copy), the active segment numbered after the newest one, and the namespace policies.
//! A mount of that directory reads the recovered segments from the store and goes on appending.
//! It refuses a data directory that holds anything, and writes nothing to the bucket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::catalog::{Catalog, CatalogError, offloaded_segment};
use crate::config::{Config, ConfigError};
use crate::log::{DataDirLock, LocalLog, LogError};
use crate::offload::{Layout, Policies, PolicyError};
use crate::store::{self, StoreError};

#[derive(Debug, Clone)]
pub struct RecoverOptions {
    pub data_dir: PathBuf,
    pub config_file: PathBuf,
    /// Draw a progress bar (standard error is a terminal).
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "{path} is not empty ({found}); tierfs recover writes only into a new, empty data directory, so that nothing there is lost"
    )]
    NotEmpty { path: PathBuf, found: String },
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the offload store: {0}")]
    Store(StoreError),
    #[error("cannot read the bucket's catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error(
        "there is no tierfs catalog at {0}: nothing to recover (check managedLedgerOffloadBucket, managedLedgerOffloadPrefix and, for the filesystem driver, fileSystemURI)"
    )]
    NothingToRecover(String),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// What was rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverSummary {
    pub topics: usize,
    pub segments: usize,
    pub bytes: u64,
    pub policies: usize,
    pub source: String,
}

impl std::fmt::Display for RecoverSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Recovered {} topic(s), {} segment(s), {} bytes ({}) and {} namespace polic{} from {}",
            self.topics,
            self.segments,
            self.bytes,
            indicatif::HumanBytes(self.bytes),
            self.policies,
            if self.policies == 1 { "y" } else { "ies" },
            self.source
        )
    }
}

/// Refuses anything but a missing or empty directory, naming what it found.
fn check_empty(dir: &Path) -> Result<(), RecoverError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(RecoverError::DataDir {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let mut shown: Vec<&str> = names.iter().map(String::as_str).take(5).collect();
    shown.sort_unstable();
    Err(RecoverError::NotEmpty {
        path: dir.to_path_buf(),
        found: format!(
            "{}{}",
            shown.join(", "),
            if names.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ),
    })
}

pub fn run(options: &RecoverOptions) -> Result<RecoverSummary, RecoverError> {
    let (config, _) = Config::load(&options.config_file)?;
    check_empty(&options.data_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RecoverError::Runtime)?;
    let store = runtime
        .block_on(store::connect(&config.offload, &options.data_dir))
        .map_err(RecoverError::Store)?;
    let catalog = Catalog::new(Arc::clone(&store), &config.offload.prefix);
    runtime.block_on(catalog.load())?;
    let state = catalog.state();
    if state.seq == 0 {
        return Err(RecoverError::NothingToRecover(
            store.url(&catalog.keys().head()),
        ));
    }
    std::fs::create_dir_all(&options.data_dir).map_err(|source| RecoverError::DataDir {
        path: options.data_dir.clone(),
        source,
    })?;
    let _lock = DataDirLock::acquire(&options.data_dir, Path::new("tierfs recover"))?;
    let layout = Layout::new(&config.offload.prefix);
    let (log, _) = LocalLog::open(&options.data_dir, config.rollover)?;
    let topics: Vec<_> = state.topics().cloned().collect();
    let bar = if options.progress {
        indicatif::ProgressBar::new(state.segment_count() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} segments {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut summary = RecoverSummary {
        topics: 0,
        segments: 0,
        bytes: 0,
        policies: 0,
        source: store.url(catalog.keys().root()),
    };
    for topic in &topics {
        bar.set_message(topic.to_string());
        let sealed: Vec<_> = state
            .segments(topic)
            .map(|entry| offloaded_segment(&layout, topic, entry))
            .collect();
        summary.topics += 1;
        summary.segments += sealed.len();
        summary.bytes += sealed.iter().map(|s| s.size).sum::<u64>();
        let count = sealed.len() as u64;
        log.restore_topic(topic, sealed)?;
        bar.inc(count);
        tracing::info!(%topic, segments = count, "topic recovered");
    }
    bar.finish_and_clear();
    let policies = Policies::load(&options.data_dir, &config.offload)?;
    policies.replace_all(state.policies().clone())?;
    summary.policies = state.policies().len();
    log.sync_all()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_or_empty_directory_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_empty(&dir.path().join("new")).is_ok());
        assert!(check_empty(dir.path()).is_ok());
        std::fs::write(dir.path().join("tierfs.lock"), "").unwrap();
        let err = check_empty(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not empty (tierfs.lock)"), "{err}");
    }
}
