//! Offload settings: Pulsar's `managedLedgerOffload*` keys, their legacy `s3ManagedLedgerOffload*`
//! aliases, defaults and validation, and where credentials come from.
//!
//! Secrets are held in [`Secret`], which never prints its value.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Reader};

pub const KEY_DRIVER: &str = "managedLedgerOffloadDriver";
pub const KEY_BUCKET: &str = "managedLedgerOffloadBucket";
pub const KEY_REGION: &str = "managedLedgerOffloadRegion";
pub const KEY_ENDPOINT: &str = "managedLedgerOffloadServiceEndpoint";
pub const KEY_MAX_BLOCK: &str = "managedLedgerOffloadMaxBlockSizeInBytes";
pub const KEY_READ_BUFFER: &str = "managedLedgerOffloadReadBufferSizeInBytes";
pub const KEY_DELETION_LAG: &str = "managedLedgerOffloadDeletionLagMs";
pub const KEY_AUTO_THRESHOLD: &str = "managedLedgerOffloadAutoTriggerSizeThresholdBytes";
pub const KEY_THRESHOLD_SECONDS: &str = "managedLedgerOffloadThresholdInSeconds";
pub const KEY_READ_PRIORITY: &str = "managedLedgerDataReadPriority";
pub const KEY_MAX_THREADS: &str = "managedLedgerOffloadMaxThreads";
pub const KEY_PREFIX: &str = "managedLedgerOffloadPrefix";
pub const KEY_FILESYSTEM_URI: &str = "fileSystemURI";
pub const KEY_LEGACY_BUCKET: &str = "s3ManagedLedgerOffloadBucket";
pub const KEY_LEGACY_REGION: &str = "s3ManagedLedgerOffloadRegion";
pub const KEY_LEGACY_ENDPOINT: &str = "s3ManagedLedgerOffloadServiceEndpoint";
pub const KEY_LEGACY_MAX_BLOCK: &str = "s3ManagedLedgerOffloadMaxBlockSizeInBytes";
pub const KEY_LEGACY_READ_BUFFER: &str = "s3ManagedLedgerOffloadReadBufferSizeInBytes";
pub const KEY_CREDENTIAL_ID: &str = "s3ManagedLedgerOffloadCredentialId";
pub const KEY_CREDENTIAL_SECRET: &str = "s3ManagedLedgerOffloadCredentialSecret";

/// Every key this module reads.
pub const KEYS: &[&str] = &[
    KEY_DRIVER,
    KEY_BUCKET,
    KEY_REGION,
    KEY_ENDPOINT,
    KEY_MAX_BLOCK,
    KEY_READ_BUFFER,
    KEY_DELETION_LAG,
    KEY_AUTO_THRESHOLD,
    KEY_THRESHOLD_SECONDS,
    KEY_READ_PRIORITY,
    KEY_MAX_THREADS,
    KEY_PREFIX,
    KEY_FILESYSTEM_URI,
    KEY_LEGACY_BUCKET,
    KEY_LEGACY_REGION,
    KEY_LEGACY_ENDPOINT,
    KEY_LEGACY_MAX_BLOCK,
    KEY_LEGACY_READ_BUFFER,
    KEY_CREDENTIAL_ID,
    KEY_CREDENTIAL_SECRET,
];

pub const ALIYUN_KEY_ID_ENV: &str = "ALIYUN_OSS_ACCESS_KEY_ID";
pub const ALIYUN_SECRET_ENV: &str = "ALIYUN_OSS_ACCESS_KEY_SECRET";

pub const MIN_BLOCK_SIZE: u64 = 5 * 1024 * 1024;
pub const DEFAULT_MAX_BLOCK_SIZE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_READ_BUFFER_SIZE: u64 = 1024 * 1024;
pub const DEFAULT_DELETION_LAG: Duration = Duration::from_secs(4 * 60 * 60);
pub const DEFAULT_MAX_THREADS: usize = 2;

/// Where sealed segments are offloaded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Amazon S3 (region or endpoint).
    AwsS3,
    /// Any S3-compatible endpoint.
    S3,
    /// Aliyun OSS through its S3-compatible API (virtual-hosted style).
    AliyunOss,
    /// A local or mounted directory.
    Filesystem,
}

impl Driver {
    pub const ALL: [Driver; 4] = [
        Driver::AwsS3,
        Driver::S3,
        Driver::AliyunOss,
        Driver::Filesystem,
    ];

    /// Pulsar's name for the driver.
    pub fn name(self) -> &'static str {
        match self {
            Driver::AwsS3 => "aws-s3",
            Driver::S3 => "S3",
            Driver::AliyunOss => "aliyun-oss",
            Driver::Filesystem => "filesystem",
        }
    }

    /// Case-insensitive, as Pulsar matches driver names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(name.trim()))
    }

    pub fn is_object_store(self) -> bool {
        self != Driver::Filesystem
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `managedLedgerDataReadPriority`: which copy is read while a segment has both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPriority {
    TieredStorageFirst,
    BookkeeperFirst,
}

impl ReadPriority {
    pub fn name(self) -> &'static str {
        match self {
            ReadPriority::TieredStorageFirst => "tiered-storage-first",
            ReadPriority::BookkeeperFirst => "bookkeeper-first",
        }
    }
}

/// A credential that must never reach a log line, an error or a config dump.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value, for the one place that signs requests with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// An access key given in the configuration (or, for aliyun-oss, the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OffloadConfig {
    pub driver: Driver,
    pub bucket: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// Multipart part size.
    pub max_block_size: u64,
    /// Read and checksum block size.
    pub read_buffer_size: u64,
    pub deletion_lag: Duration,
    /// Broker-level default for namespaces without a threshold policy; < 0 disables.
    pub auto_threshold_bytes: i64,
    /// Offload segments older than this many seconds; < 0 disables.
    pub threshold_seconds: i64,
    pub read_priority: ReadPriority,
    /// Static credentials; `None` means the AWS default chain.
    pub credentials: Option<StaticCredentials>,
    /// The `filesystem` driver's directory; `None` means `<data-dir>/offload`.
    pub filesystem_root: Option<PathBuf>,
    /// Key prefix inside the bucket (or directory).
    pub prefix: String,
    /// Parts uploaded at once.
    pub max_threads: usize,
}

impl Default for OffloadConfig {
    fn default() -> Self {
        Self {
            driver: Driver::Filesystem,
            bucket: String::new(),
            region: None,
            endpoint: None,
            max_block_size: DEFAULT_MAX_BLOCK_SIZE,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            deletion_lag: DEFAULT_DELETION_LAG,
            auto_threshold_bytes: -1,
            threshold_seconds: -1,
            read_priority: ReadPriority::TieredStorageFirst,
            credentials: None,
            filesystem_root: None,
            prefix: String::new(),
            max_threads: DEFAULT_MAX_THREADS,
        }
    }
}

fn offload_error(r: &Reader<'_>, message: String) -> ConfigError {
    ConfigError::Offload {
        file: r.origin.to_string(),
        message,
    }
}

impl OffloadConfig {
    /// Reads and validates the offload keys. `env` looks up environment variables (the
    /// aliyun-oss credentials); it is a parameter so that tests need not touch the process's.
    pub(super) fn read(
        r: &Reader<'_>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let defaults = OffloadConfig::default();
        let driver = match r.text(KEY_DRIVER) {
            None => Driver::Filesystem,
            Some((name, prop)) => Driver::parse(name).ok_or_else(|| {
                offload_error(
                    r,
                    format!(
                        "line {}: No offloader found for driver '{name}' ({KEY_DRIVER}); tierfs supports aws-s3, S3, aliyun-oss and filesystem",
                        prop.line
                    ),
                )
            })?,
        };
        // The legacy s3ManagedLedgerOffload* keys count for aws-s3 only, as in Pulsar.
        let pick = |current: &'static str, legacy: &'static str| -> Option<&'static str> {
            if driver == Driver::AwsS3 {
                r.first_of(&[current, legacy])
            } else {
                r.first_of(&[current])
            }
        };
        let text = |current, legacy| {
            pick(current, legacy)
                .and_then(|k| r.text(k))
                .map(|(v, _)| v.to_string())
        };
        let bucket = text(KEY_BUCKET, KEY_LEGACY_BUCKET).unwrap_or_default();
        let region = text(KEY_REGION, KEY_LEGACY_REGION);
        let endpoint = text(KEY_ENDPOINT, KEY_LEGACY_ENDPOINT);
        let max_block_size = match pick(KEY_MAX_BLOCK, KEY_LEGACY_MAX_BLOCK) {
            Some(key) => r.positive_integer(key)?.unwrap_or(defaults.max_block_size),
            None => defaults.max_block_size,
        };
        let read_buffer_size = match pick(KEY_READ_BUFFER, KEY_LEGACY_READ_BUFFER) {
            Some(key) => r
                .positive_integer(key)?
                .unwrap_or(defaults.read_buffer_size),
            None => defaults.read_buffer_size,
        };
        if max_block_size < MIN_BLOCK_SIZE {
            return Err(offload_error(
                r,
                format!(
                    "ManagedLedgerOffloadMaxBlockSizeInBytes cannot be less than 5MB for {driver} offload (got {max_block_size}; the smallest part S3 accepts is {MIN_BLOCK_SIZE} bytes)"
                ),
            ));
        }
        let deletion_lag = match r.integer(KEY_DELETION_LAG)? {
            Some(ms) if ms >= 0 => Duration::from_millis(ms as u64),
            Some(_) => {
                let prop = r.raw(KEY_DELETION_LAG).expect("set");
                return Err(r.invalid(KEY_DELETION_LAG, prop, "expected milliseconds, 0 or more"));
            }
            None => defaults.deletion_lag,
        };
        let read_priority = match r.text(KEY_READ_PRIORITY) {
            None => defaults.read_priority,
            Some((v, _)) if v.eq_ignore_ascii_case("tiered-storage-first") => {
                ReadPriority::TieredStorageFirst
            }
            Some((v, _)) if v.eq_ignore_ascii_case("bookkeeper-first") => {
                ReadPriority::BookkeeperFirst
            }
            Some((_, prop)) => {
                return Err(r.invalid(
                    KEY_READ_PRIORITY,
                    prop,
                    "expected tiered-storage-first or bookkeeper-first",
                ));
            }
        };
        let max_threads = r
            .positive_integer(KEY_MAX_THREADS)?
            .map_or(defaults.max_threads, |n| n.min(64) as usize);
        let filesystem_root = match r.text(KEY_FILESYSTEM_URI) {
            None => None,
            Some((uri, prop)) => Some(parse_directory_uri(uri).ok_or_else(|| {
                r.invalid(
                    KEY_FILESYSTEM_URI,
                    prop,
                    "expected a local directory: an absolute path or file:///path",
                )
            })?),
        };
        let prefix = r
            .text(KEY_PREFIX)
            .map(|(v, _)| v.trim_matches('/').to_string())
            .unwrap_or_default();
        let credentials = read_credentials(r, driver, env)?;

        if driver.is_object_store() && bucket.is_empty() {
            return Err(offload_error(
                r,
                format!("Bucket cannot be empty for {driver} offload (set {KEY_BUCKET})"),
            ));
        }
        match driver {
            Driver::AwsS3 if region.is_none() && endpoint.is_none() => {
                return Err(offload_error(
                    r,
                    format!(
                        "Either Region or ServiceEndpoint must specified for aws-s3 offload (set {KEY_REGION} or {KEY_ENDPOINT})"
                    ),
                ));
            }
            Driver::S3 | Driver::AliyunOss if endpoint.is_none() => {
                return Err(offload_error(
                    r,
                    format!(
                        "ServiceEndpoint must be specified for {driver} offload (set {KEY_ENDPOINT})"
                    ),
                ));
            }
            _ => {}
        }
        if let Some(endpoint) = &endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(offload_error(
                r,
                format!(
                    "{KEY_ENDPOINT} = {endpoint} must be a URL starting with http:// or https://"
                ),
            ));
        }
        Ok(Self {
            driver,
            bucket,
            region,
            endpoint,
            max_block_size,
            read_buffer_size,
            deletion_lag,
            auto_threshold_bytes: r.integer(KEY_AUTO_THRESHOLD)?.unwrap_or(-1),
            threshold_seconds: r.integer(KEY_THRESHOLD_SECONDS)?.unwrap_or(-1),
            read_priority,
            credentials,
            filesystem_root,
            prefix,
            max_threads,
        })
    }
}

fn read_credentials(
    r: &Reader<'_>,
    driver: Driver,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<StaticCredentials>, ConfigError> {
    match driver {
        Driver::AliyunOss => {
            let id = env(ALIYUN_KEY_ID_ENV).filter(|v| !v.is_empty());
            let secret = env(ALIYUN_SECRET_ENV).filter(|v| !v.is_empty());
            match (id, secret) {
                (Some(id), Some(secret)) => Ok(Some(StaticCredentials {
                    access_key_id: id,
                    secret_access_key: Secret::new(secret),
                })),
                _ => Err(offload_error(
                    r,
                    format!(
                        "the aliyun-oss offload driver needs the environment variables {ALIYUN_KEY_ID_ENV} and {ALIYUN_SECRET_ENV}"
                    ),
                )),
            }
        }
        Driver::AwsS3 | Driver::S3 => {
            let id = r.text(KEY_CREDENTIAL_ID).map(|(v, _)| v.to_string());
            let secret = r.text(KEY_CREDENTIAL_SECRET).map(|(v, _)| v.to_string());
            match (id, secret) {
                (Some(id), Some(secret)) => Ok(Some(StaticCredentials {
                    access_key_id: id,
                    secret_access_key: Secret::new(secret),
                })),
                (None, None) => Ok(None),
                _ => Err(offload_error(
                    r,
                    format!("{KEY_CREDENTIAL_ID} and {KEY_CREDENTIAL_SECRET} must be set together"),
                )),
            }
        }
        Driver::Filesystem => Ok(None),
    }
}

fn parse_directory_uri(uri: &str) -> Option<PathBuf> {
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    (path.starts_with('/') && !uri.contains("://") || uri.starts_with("file:///"))
        .then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Properties;

    fn read(text: &str, env: &[(&str, &str)]) -> Result<OffloadConfig, ConfigError> {
        let props = Properties::parse(text);
        let r = Reader {
            props: &props,
            origin: "broker.conf",
        };
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OffloadConfig::read(&r, &move |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    fn message(text: &str) -> String {
        read(text, &[]).unwrap_err().to_string()
    }

    #[test]
    fn defaults_to_the_filesystem_driver() {
        let c = read("", &[]).unwrap();
        assert_eq!(c, OffloadConfig::default());
        assert_eq!(c.max_block_size, 64 << 20);
        assert_eq!(c.read_buffer_size, 1 << 20);
        assert_eq!(c.deletion_lag, Duration::from_secs(14400));
    }

    #[test]
    fn driver_names_are_case_insensitive_and_unknown_ones_refused() {
        let c = read("managedLedgerOffloadDriver=s3\nmanagedLedgerOffloadBucket=b\nmanagedLedgerOffloadServiceEndpoint=http://localhost:3900\n", &[]).unwrap();
        assert_eq!(c.driver, Driver::S3);
        assert!(
            message("managedLedgerOffloadDriver=google-cloud-storage")
                .contains("No offloader found for driver 'google-cloud-storage'")
        );
    }

    #[test]
    fn pulsars_validation_rules() {
        assert!(
            message("managedLedgerOffloadDriver=aws-s3\nmanagedLedgerOffloadRegion=eu-west-1\n")
                .contains("Bucket cannot be empty for aws-s3 offload")
        );
        assert!(
            message("managedLedgerOffloadDriver=aws-s3\nmanagedLedgerOffloadBucket=b\n")
                .contains("Either Region or ServiceEndpoint must specified for aws-s3 offload")
        );
        assert!(
            message("managedLedgerOffloadDriver=S3\nmanagedLedgerOffloadBucket=b\n")
                .contains("ServiceEndpoint must be specified for S3 offload")
        );
        assert!(
            message("managedLedgerOffloadMaxBlockSizeInBytes=1048576\n")
                .contains("cannot be less than 5MB")
        );
        assert!(message("managedLedgerOffloadDriver=aliyun-oss\nmanagedLedgerOffloadBucket=b\nmanagedLedgerOffloadServiceEndpoint=http://oss\n").contains("ALIYUN_OSS_ACCESS_KEY_ID"));
        assert!(
            message("managedLedgerDataReadPriority=fastest\n")
                .contains("tiered-storage-first or bookkeeper-first")
        );
        assert!(
            message("fileSystemURI=hdfs://namenode/x\n").contains("expected a local directory")
        );
    }

    #[test]
    fn legacy_keys_count_for_aws_s3_only() {
        let c = read("managedLedgerOffloadDriver=aws-s3\ns3ManagedLedgerOffloadBucket=old\ns3ManagedLedgerOffloadRegion=us-west-2\ns3ManagedLedgerOffloadMaxBlockSizeInBytes=10485760\n", &[]).unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.region.as_deref(), c.max_block_size),
            ("old", Some("us-west-2"), 10 << 20)
        );
        assert!(message("managedLedgerOffloadDriver=S3\ns3ManagedLedgerOffloadBucket=old\nmanagedLedgerOffloadServiceEndpoint=http://x\n").contains("Bucket cannot be empty"));
    }

    #[test]
    fn secrets_never_print() {
        let c = read(
            "managedLedgerOffloadDriver=aliyun-oss\nmanagedLedgerOffloadBucket=b\nmanagedLedgerOffloadServiceEndpoint=http://oss-cn-hongkong.aliyuncs.com\n",
            &[("ALIYUN_OSS_ACCESS_KEY_ID", "LTAIid"), ("ALIYUN_OSS_ACCESS_KEY_SECRET", "very-secret-value")],
        )
        .unwrap();
        let dump = format!("{c:?}");
        assert!(
            dump.contains("LTAIid") && !dump.contains("very-secret-value"),
            "{dump}"
        );
        let c = read("managedLedgerOffloadDriver=aws-s3\nmanagedLedgerOffloadBucket=b\nmanagedLedgerOffloadRegion=r\ns3ManagedLedgerOffloadCredentialId=AKIA\ns3ManagedLedgerOffloadCredentialSecret=hush-hush\n", &[]).unwrap();
        assert!(!format!("{c:?}").contains("hush-hush"));
    }
}
