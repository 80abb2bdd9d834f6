//! The configuration in force, as Pulsar's runtime-configuration map
//! (`pulsar-admin brokers get-runtime-configuration`): every key tierfs reads, under its
//! current name, with the value the mount uses (defaults filled in).
//!
//! Credentials are masked here, the one place that turns a [`Config`] into text: the secret
//! key is shown as `****` and the access key id as `****` plus its last four characters, as
//! `aws configure list` does, so an operator can tell which key is in use without the dump
//! holding it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::offload::{
    KEY_AUTO_THRESHOLD, KEY_BUCKET, KEY_CREDENTIAL_ID, KEY_CREDENTIAL_SECRET, KEY_DELETION_LAG,
    KEY_DRIVER, KEY_ENDPOINT, KEY_FILESYSTEM_URI, KEY_MAX_BLOCK, KEY_MAX_THREADS, KEY_PREFIX,
    KEY_READ_BUFFER, KEY_READ_PRIORITY, KEY_REGION, KEY_THRESHOLD_SECONDS,
};
use super::{
    Config, Driver, KEY_MAX_ENTRIES, KEY_MAX_ROLLOVER_MINUTES, KEY_MAX_SIZE_MB,
    KEY_MIN_ROLLOVER_MINUTES, KEY_RETENTION_MINUTES, KEY_RETENTION_SIZE_MB,
};
use crate::offload::RetentionPolicy;

/// What a masked value shows instead of the secret.
pub const MASK: &str = "****";

impl Config {
    /// The effective configuration, key by key; `data_dir` resolves the `filesystem` driver's
    /// default directory.
    pub fn runtime_configuration(&self, data_dir: &Path) -> BTreeMap<String, String> {
        let rollover = &self.rollover;
        let offload = &self.offload;
        let credentials = offload.credentials.as_ref();
        let filesystem_root = match offload.driver {
            Driver::Filesystem => offload
                .filesystem_root
                .clone()
                .unwrap_or_else(|| data_dir.join("offload"))
                .display()
                .to_string(),
            _ => String::new(),
        };
        let retention = self.retention.unwrap_or(RetentionPolicy {
            time_minutes: -1,
            size_mb: -1,
        });
        let entries: [(&str, String); 21] = [
            (KEY_MAX_ENTRIES, rollover.max_entries.to_string()),
            (KEY_MIN_ROLLOVER_MINUTES, minutes(rollover.min_age)),
            (KEY_MAX_ROLLOVER_MINUTES, minutes(rollover.max_age)),
            (KEY_MAX_SIZE_MB, megabytes(rollover.max_size_bytes)),
            (KEY_RETENTION_MINUTES, retention.time_minutes.to_string()),
            (KEY_RETENTION_SIZE_MB, retention.size_mb.to_string()),
            (KEY_DRIVER, offload.driver.name().to_string()),
            (KEY_BUCKET, offload.bucket.clone()),
            (KEY_REGION, offload.region.clone().unwrap_or_default()),
            (KEY_ENDPOINT, offload.endpoint.clone().unwrap_or_default()),
            (KEY_MAX_BLOCK, offload.max_block_size.to_string()),
            (KEY_READ_BUFFER, offload.read_buffer_size.to_string()),
            (
                KEY_DELETION_LAG,
                offload.deletion_lag.as_millis().to_string(),
            ),
            (KEY_AUTO_THRESHOLD, offload.auto_threshold_bytes.to_string()),
            (KEY_THRESHOLD_SECONDS, offload.threshold_seconds.to_string()),
            (KEY_READ_PRIORITY, offload.read_priority.name().to_string()),
            (KEY_MAX_THREADS, offload.max_threads.to_string()),
            (KEY_PREFIX, offload.prefix.clone()),
            (KEY_FILESYSTEM_URI, filesystem_root),
            (
                KEY_CREDENTIAL_ID,
                credentials.map_or_else(String::new, |c| mask_key_id(&c.access_key_id)),
            ),
            (
                KEY_CREDENTIAL_SECRET,
                credentials.map_or_else(String::new, |_| MASK.to_string()),
            ),
        ];
        entries
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect()
    }
}

/// `****` and the last four characters, or only `****` for an id too short to keep any.
fn mask_key_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() < 12 {
        return MASK.to_string();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{MASK}{tail}")
}

/// Minutes as the properties file writes them: whole where they are whole.
fn minutes(age: Duration) -> String {
    number(age.as_secs_f64() / 60.0)
}

fn megabytes(bytes: u64) -> String {
    number(bytes as f64 / (1024.0 * 1024.0))
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Properties;

    fn dump(text: &str, env: &[(&str, &str)]) -> BTreeMap<String, String> {
        let env = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let (config, _) =
            Config::from_properties_with_env(&Properties::parse(text), "broker.conf", &env)
                .unwrap();
        config.runtime_configuration(Path::new("/data"))
    }

    #[test]
    fn defaults_are_filled_in_under_pulsars_names() {
        let map = dump("", &[]);
        assert_eq!(map[KEY_MAX_ENTRIES], "5000");
        assert_eq!(map[KEY_MIN_ROLLOVER_MINUTES], "2");
        assert_eq!(map[KEY_MAX_ROLLOVER_MINUTES], "240");
        assert_eq!(map[KEY_MAX_SIZE_MB], "2048");
        assert_eq!(map[KEY_DRIVER], "filesystem");
        assert_eq!(map[KEY_FILESYSTEM_URI], "/data/offload");
        assert_eq!(map[KEY_READ_BUFFER], "1048576");
        assert_eq!(map[KEY_DELETION_LAG], "14400000");
        assert_eq!(map[KEY_CREDENTIAL_SECRET], "");
        assert_eq!(map[KEY_RETENTION_MINUTES], "-1");
        assert_eq!(map[KEY_RETENTION_SIZE_MB], "-1");
        assert_eq!(map.len(), 21);
    }

    #[test]
    fn values_in_force_follow_the_file_and_legacy_aliases() {
        let map = dump(
            "managedLedgerMaxLedgerRolloverTimeMinutes=0.5\n\
             managedLedgerMaxSizePerLedgerMbytes=0.5\n\
             managedLedgerOffloadDriver=aws-s3\n\
             s3ManagedLedgerOffloadBucket=legacy-bucket\n\
             s3ManagedLedgerOffloadRegion=eu-west-1\n",
            &[],
        );
        assert_eq!(map[KEY_MAX_ROLLOVER_MINUTES], "0.5");
        assert_eq!(map[KEY_MAX_SIZE_MB], "0.5");
        assert_eq!(map[KEY_BUCKET], "legacy-bucket");
        assert_eq!(map[KEY_REGION], "eu-west-1");
        assert_eq!(map[KEY_FILESYSTEM_URI], "");
    }

    #[test]
    fn credentials_are_masked() {
        let map = dump(
            "managedLedgerOffloadDriver=S3\nmanagedLedgerOffloadBucket=b\n\
             managedLedgerOffloadServiceEndpoint=http://127.0.0.1:9000\n\
             s3ManagedLedgerOffloadCredentialId=AKIAEXAMPLEKEYID1234\n\
             s3ManagedLedgerOffloadCredentialSecret=very-secret-value\n",
            &[],
        );
        assert_eq!(map[KEY_CREDENTIAL_ID], "****1234");
        assert_eq!(map[KEY_CREDENTIAL_SECRET], MASK);
        let text = format!("{map:?}");
        assert!(!text.contains("very-secret-value") && !text.contains("AKIAEXAMPLE"));
        let map = dump(
            "managedLedgerOffloadDriver=aliyun-oss\nmanagedLedgerOffloadBucket=b\n\
             managedLedgerOffloadServiceEndpoint=http://oss-cn-hongkong.aliyuncs.com\n",
            &[
                ("ALIYUN_OSS_ACCESS_KEY_ID", "short"),
                ("ALIYUN_OSS_ACCESS_KEY_SECRET", "aliyun-secret"),
            ],
        );
        assert_eq!(map[KEY_CREDENTIAL_ID], MASK);
        assert_eq!(map[KEY_CREDENTIAL_SECRET], MASK);
    }
}
