//! The validated configuration of a mount.
//!
//! Owns the translation from a `broker.conf`-style properties file (Pulsar's key names and
//! defaults) into one [`Config`] value that the rest of tierfs reads. No other module reads
//! configuration files or the environment. Bad values fail here, before anything is mounted,
//! with the key, the line and what was expected.

mod offload;
mod properties;
mod reader;
mod runtime;

use std::path::{Path, PathBuf};

pub use offload::{Driver, OffloadConfig, ReadPriority, Secret};
pub use properties::{Properties, Property};
use reader::Reader;

use crate::log::RolloverPolicy;
use crate::offload::RetentionPolicy;

pub const KEY_MAX_ENTRIES: &str = "managedLedgerMaxEntriesPerLedger";
pub const KEY_MIN_ROLLOVER_MINUTES: &str = "managedLedgerMinLedgerRolloverTimeMinutes";
pub const KEY_MAX_ROLLOVER_MINUTES: &str = "managedLedgerMaxLedgerRolloverTimeMinutes";
pub const KEY_MAX_SIZE_MB: &str = "managedLedgerMaxSizePerLedgerMbytes";
pub const KEY_RETENTION_MINUTES: &str = "defaultRetentionTimeInMinutes";
pub const KEY_RETENTION_SIZE_MB: &str = "defaultRetentionSizeInMB";

/// The data directory when none is given: `/var/lib/tierfs` for root, else
/// `$HOME/.local/share/tierfs`.
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/tierfs");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/tierfs"),
        None => PathBuf::from("/var/lib/tierfs"),
    }
}

/// Every key tierfs reads; anything else in the file is reported once and ignored.
const KNOWN_KEYS: &[&str] = &[
    KEY_MAX_ENTRIES,
    KEY_MIN_ROLLOVER_MINUTES,
    KEY_MAX_ROLLOVER_MINUTES,
    KEY_MAX_SIZE_MB,
    KEY_RETENTION_MINUTES,
    KEY_RETENTION_SIZE_MB,
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: invalid offload configuration: {message}")]
    Offload { file: String, message: String },
    #[error("{file}: invalid retention configuration: {message}")]
    Retention { file: String, message: String },
    #[error("{file}:{line}: invalid value {value:?} for {key}: {expected}")]
    Invalid {
        file: String,
        line: usize,
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Everything a mount is configured with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub rollover: RolloverPolicy,
    pub offload: OffloadConfig,
    /// The broker's default retention; `None` (nothing set, or Pulsar's stock 0/0) keeps
    /// everything.
    pub retention: Option<RetentionPolicy>,
}

/// What loading found worth telling the operator, beside errors.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigNotes {
    pub unknown_keys: Vec<String>,
    pub duplicate_keys: Vec<(String, usize)>,
}

impl Config {
    /// Reads and validates a properties file.
    pub fn load(path: &Path) -> Result<(Self, ConfigNotes), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_properties_with_env(
            &Properties::parse(&text),
            &path.display().to_string(),
            &|name| std::env::var(name).ok(),
        )
    }

    /// Validates parsed properties; `origin` names the file in error messages.
    pub fn from_properties(
        props: &Properties,
        origin: &str,
    ) -> Result<(Self, ConfigNotes), ConfigError> {
        Self::from_properties_with_env(props, origin, &|_| None)
    }

    /// As [`Config::from_properties`], with `env` answering environment lookups.
    pub fn from_properties_with_env(
        props: &Properties,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Self, ConfigNotes), ConfigError> {
        let reader = Reader { props, origin };
        let defaults = RolloverPolicy::default();
        let rollover = RolloverPolicy {
            max_entries: reader
                .positive_integer(KEY_MAX_ENTRIES)?
                .unwrap_or(defaults.max_entries),
            min_age: reader
                .minutes(KEY_MIN_ROLLOVER_MINUTES)?
                .unwrap_or(defaults.min_age),
            max_age: reader
                .minutes(KEY_MAX_ROLLOVER_MINUTES)?
                .unwrap_or(defaults.max_age),
            max_size_bytes: reader
                .megabytes(KEY_MAX_SIZE_MB)?
                .unwrap_or(defaults.max_size_bytes),
        };
        let notes = ConfigNotes {
            unknown_keys: props
                .keys()
                .filter(|k| !KNOWN_KEYS.contains(k) && !offload::KEYS.contains(k))
                .map(str::to_string)
                .collect(),
            duplicate_keys: props.duplicates().to_vec(),
        };
        let offload = OffloadConfig::read(&reader, env)?;
        let retention = read_retention(&reader)?;
        Ok((
            Config {
                rollover,
                offload,
                retention,
            },
            notes,
        ))
    }
}

/// The broker's default retention. Unset keys are -1 (no limit); both unset, or both at
/// Pulsar's stock value 0 (which with no subscriptions would delete every sealed segment), mean
/// no default retention: everything is kept.
fn read_retention(reader: &Reader<'_>) -> Result<Option<RetentionPolicy>, ConfigError> {
    let time = reader.integer(KEY_RETENTION_MINUTES)?;
    let size = reader.integer(KEY_RETENTION_SIZE_MB)?;
    let policy = RetentionPolicy {
        time_minutes: time.unwrap_or(-1),
        size_mb: size.unwrap_or(-1),
    };
    if time == Some(0) && size == Some(0) {
        return Ok(None);
    }
    policy
        .validate()
        .map_err(|message| ConfigError::Retention {
            file: reader.origin.to_string(),
            message: format!("{KEY_RETENTION_MINUTES} / {KEY_RETENTION_SIZE_MB}: {message}"),
        })?;
    Ok((!policy.is_infinite()).then_some(policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn load(text: &str) -> Result<(Config, ConfigNotes), ConfigError> {
        Config::from_properties(&Properties::parse(text), "broker.conf")
    }

    #[test]
    fn empty_file_gives_pulsar_defaults() {
        let (config, notes) = load("").unwrap();
        assert_eq!(config.rollover, RolloverPolicy::default());
        assert_eq!(notes, ConfigNotes::default());
    }

    #[test]
    fn reads_rollover_keys() {
        let (config, _) = load(
            "managedLedgerMaxEntriesPerLedger=10\n\
             managedLedgerMinLedgerRolloverTimeMinutes=0\n\
             managedLedgerMaxLedgerRolloverTimeMinutes=0.5\n\
             managedLedgerMaxSizePerLedgerMbytes=0.5\n",
        )
        .unwrap();
        assert_eq!(config.rollover.max_entries, 10);
        assert_eq!(config.rollover.min_age, Duration::ZERO);
        assert_eq!(config.rollover.max_age, Duration::from_secs(30));
        assert_eq!(config.rollover.max_size_bytes, 512 * 1024);
    }

    #[test]
    fn empty_value_means_default() {
        let (config, _) = load("managedLedgerMaxEntriesPerLedger=\n").unwrap();
        assert_eq!(config.rollover.max_entries, 5000);
    }

    #[test]
    fn bad_values_name_key_line_and_expectation() {
        let err = load("# x\nmanagedLedgerMaxEntriesPerLedger=many\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "broker.conf:2: invalid value \"many\" for managedLedgerMaxEntriesPerLedger: \
             expected a whole number greater than 0"
        );
        assert!(load("managedLedgerMaxEntriesPerLedger=0").is_err());
        assert!(load("managedLedgerMinLedgerRolloverTimeMinutes=-1").is_err());
        assert!(load("managedLedgerMaxLedgerRolloverTimeMinutes=NaN").is_err());
        assert!(load("managedLedgerMaxSizePerLedgerMbytes=0").is_err());
        assert!(load("managedLedgerMaxLedgerRolloverTimeMinutes=1e300").is_err());
        assert!(load("managedLedgerMaxSizePerLedgerMbytes=1e300").is_err());
    }

    #[test]
    fn default_retention_keeps_everything_unless_set() {
        assert_eq!(load("").unwrap().0.retention, None);
        // Pulsar's stock broker.conf: 0/0 would delete every sealed segment here.
        let stock = "defaultRetentionTimeInMinutes=0\ndefaultRetentionSizeInMB=0\n";
        assert_eq!(load(stock).unwrap().0.retention, None);
        let (config, _) = load("defaultRetentionTimeInMinutes=60\n").unwrap();
        assert_eq!(
            config.retention,
            Some(RetentionPolicy {
                time_minutes: 60,
                size_mb: -1
            })
        );
        let err = load("defaultRetentionTimeInMinutes=60\ndefaultRetentionSizeInMB=0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Use the value of -1"), "{err}");
        assert!(load("defaultRetentionSizeInMB=-5\n").is_err());
    }

    #[test]
    fn unknown_and_duplicate_keys_are_noted() {
        let (_, notes) =
            load("brokerServicePort=6650\nmanagedLedgerMaxEntriesPerLedger=1\nmanagedLedgerMaxEntriesPerLedger=2\n")
                .unwrap();
        assert_eq!(notes.unknown_keys, vec!["brokerServicePort".to_string()]);
        assert_eq!(
            notes.duplicate_keys,
            vec![("managedLedgerMaxEntriesPerLedger".to_string(), 3)]
        );
    }
}
