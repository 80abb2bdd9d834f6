//! `tierfs admin …`: pulsar-admin's commands and output, over the admin REST endpoint.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use hyper::Method;

use super::client::{AdminClient, ClientError};
use super::endpoint;
use super::model::{InternalStats, SealedInfo};
use crate::log::data_file_name;
use crate::name::{NameKind, NamespaceName, TopicName, validate};
use crate::offload::{MessageId, OffloadStatus, RetentionPolicy, ScanReport, State};

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// URL of the mount's admin endpoint (default: read from <data-dir>/admin.addr)
    #[arg(long, env = "TIERFS_ADMIN_URL")]
    pub admin_url: Option<String>,
    /// The admin token, when the mount requires one
    #[arg(long, env = "TIERFS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Data directory of the mount to talk to
    #[arg(long, env = "TIERFS_DATA_DIR", default_value_os_t = crate::config::default_data_dir())]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Tenants (top-level directories of the mount)
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Namespaces (tenant/namespace)
    #[command(subcommand)]
    Namespaces(NamespacesCommand),
    /// Topics (tenant/namespace/topic)
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// The mount itself (Pulsar's broker)
    #[command(subcommand)]
    Brokers(BrokersCommand),
    /// List objects in the store that no topic of the namespace references, and stale
    /// multipart uploads (like Pulsar's scanOffloadedLedgers)
    ScanOffloaded {
        /// Remove what was found
        #[arg(long)]
        delete: bool,
        namespace: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BrokersCommand {
    /// Every configuration key tierfs reads, with the value in force (credentials masked)
    GetRuntimeConfiguration,
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// List tenants
    List,
    /// Create a tenant
    Create { tenant: String },
    /// Delete an empty tenant
    Delete { tenant: String },
}

#[derive(Debug, Subcommand)]
pub enum NamespacesCommand {
    /// List the namespaces of a tenant
    List { tenant: String },
    /// Create a namespace: tenant/namespace
    Create { namespace: String },
    /// Delete an empty namespace
    Delete { namespace: String },
    /// Offload automatically once a topic keeps more than SIZE locally (0: at once; <0: never)
    SetOffloadThreshold {
        /// e.g. 10M, 16G, 3T, 100; negative disables automatic offload
        #[arg(short = 's', long = "size", allow_hyphen_values = true)]
        size: String,
        namespace: String,
    },
    /// The namespace's offload threshold in bytes (the broker's when unset)
    GetOffloadThreshold { namespace: String },
    /// Fall back to the broker's offload threshold
    RemoveOffloadThreshold { namespace: String },
    /// How long a local copy stays after its segment is offloaded (e.g. 10m, 5h, 3d, 2w)
    SetOffloadDeletionLag {
        #[arg(short = 'l', long = "lag")]
        lag: String,
        namespace: String,
    },
    /// The namespace's offload deletion lag
    GetOffloadDeletionLag { namespace: String },
    /// Fall back to the broker's offload deletion lag
    ClearOffloadDeletionLag { namespace: String },
    /// Bound every topic of the namespace by age and size: whole sealed segments go, oldest
    /// first, everywhere (local copy, objects, the bucket's catalog)
    SetRetention {
        /// Retention size limit (e.g. 10M, 16G, 3T); -1 is infinite, 0 keeps nothing sealed
        #[arg(short = 's', long = "size", allow_hyphen_values = true)]
        size: String,
        /// Retention time (e.g. 100m, 3h, 2d, 5w; seconds when bare); -1 is infinite
        #[arg(short = 't', long = "time", allow_hyphen_values = true)]
        time: String,
        namespace: String,
    },
    /// The namespace's retention policy (null when it has none: the broker's default applies)
    GetRetention { namespace: String },
    /// Fall back to the broker's default retention
    RemoveRetention { namespace: String },
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List the topics of a namespace
    List { namespace: String },
    /// Create a topic: tenant/namespace/topic
    Create { topic: String },
    /// Delete a topic with all its segments, local and offloaded
    Delete {
        /// Delete even while `active` is open for writing
        #[arg(short = 'f', long = "force")]
        force: bool,
        topic: String,
    },
    /// Delete every sealed segment of the topic, local and offloaded; the active one stays
    Truncate { topic: String },
    /// The topic's segments ("ledgers") and counters, as Pulsar's internal stats
    StatsInternal { topic: String },
    /// Seal the active segment now and start a new one
    Seal { topic: String },
    /// Offload the oldest segments, keeping at most --size-threshold bytes locally
    Offload {
        /// Maximum amount of data to keep locally for the topic (e.g. 10M, 5G)
        #[arg(short = 's', long = "size-threshold", allow_hyphen_values = true)]
        size_threshold: String,
        topic: String,
    },
    /// The status of the topic's last offload
    OffloadStatus {
        /// Wait for offloading to complete (with a progress bar on a terminal)
        #[arg(short = 'w', long = "wait-complete")]
        wait: bool,
        topic: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::model::LedgerInfo;

    #[test]
    fn retention_flags_convert_as_pulsar_admin_does() {
        assert_eq!(retention_minutes("3d").unwrap(), 3 * 24 * 60);
        assert_eq!(retention_minutes("-1").unwrap(), -1);
        assert_eq!(retention_minutes("120").unwrap(), 2);
        assert_eq!(retention_minutes("0").unwrap(), 0);
        assert!(retention_minutes("-2").is_err());
        assert_eq!(retention_megabytes("10G").unwrap(), 10 * 1024);
        assert_eq!(retention_megabytes("-1").unwrap(), -1);
        assert_eq!(retention_megabytes("512K").unwrap(), 0);
        assert!(retention_megabytes("-5M").is_err());
        assert!(retention_megabytes("ten").is_err());
    }

    #[test]
    fn json_is_printed_as_pulsar_admin_prints_it() {
        let policy = Some(RetentionPolicy {
            time_minutes: 4320,
            size_mb: 10240,
        });
        assert_eq!(
            pulsar_admin_json(&policy),
            "{\n  \"retentionTimeInMinutes\" : 4320,\n  \"retentionSizeInMB\" : 10240\n}\n"
        );
        assert_eq!(pulsar_admin_json(&None::<RetentionPolicy>), "null\n");
    }

    #[test]
    fn threshold_picks_the_message_id_like_pulsar_admin() {
        let ledger = |id, size| LedgerInfo {
            ledger_id: id,
            entries: 1,
            size,
            offloaded: false,
            under_replicated: false,
            offload_failure: None,
        };
        let mut stats = InternalStats::from(&crate::log::TopicSnapshot {
            sealed: vec![],
            active: crate::log::ActiveInfo {
                id: 2,
                size: 3000,
                entries: 1,
                crc32c: 0,
                created: std::time::SystemTime::now(),
                modified: std::time::SystemTime::now(),
            },
            created: std::time::SystemTime::now(),
        });
        stats.ledgers = vec![ledger(0, 1000), ledger(1, 2000), ledger(2, 0)];
        // Pulsar's own test: sizes 1000/2000/3000.
        assert_eq!(first_ledger_within_threshold(&stats, i64::MAX), None);
        assert_eq!(first_ledger_within_threshold(&stats, 0), Some(2));
        assert_eq!(first_ledger_within_threshold(&stats, 1000), Some(2));
        assert_eq!(first_ledger_within_threshold(&stats, 5000), Some(1));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Endpoint(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Name(#[from] crate::name::NameError),
    #[error("{0}")]
    Usage(String),
    /// The offload failed: Pulsar prints "Error in offload", then the reason, and exits 1.
    #[error("Reason: Error offloading: {0}")]
    OffloadFailed(String),
}

impl CliError {
    /// What goes to standard output before the error (Pulsar's "Error in offload").
    pub fn stdout(&self) -> Option<&'static str> {
        matches!(self, CliError::OffloadFailed(_)).then_some("Error in offload\n")
    }
}

fn parse_size(text: &str) -> Result<i64, CliError> {
    crate::units::parse_size(text).map_err(CliError::Usage)
}

fn parse_duration_ms(text: &str) -> Result<u64, CliError> {
    crate::units::parse_duration_ms(text).map_err(CliError::Usage)
}

/// `set-retention --time`: minutes, or -1 (infinite), as pulsar-admin converts it.
fn retention_minutes(text: &str) -> Result<i64, CliError> {
    if text.trim() == "-1" {
        return Ok(-1);
    }
    let ms = parse_duration_ms(text)?;
    Ok((ms / 60_000) as i64)
}

/// `set-retention --size`: whole megabytes (MiB), or -1 (infinite), as pulsar-admin converts it.
fn retention_megabytes(text: &str) -> Result<i64, CliError> {
    match parse_size(text)? {
        -1 => Ok(-1),
        n if n < 0 => Err(CliError::Usage(format!(
            "Invalid size '{text}': use -1 for an infinite size"
        ))),
        n => Ok(n / (1024 * 1024)),
    }
}

/// JSON as pulsar-admin prints it (Jackson's default pretty printer: `"key" : value`).
fn pulsar_admin_json<T: serde::Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, JacksonPretty::default());
    value
        .serialize(&mut serializer)
        .expect("admin answers serialize");
    out.push(b'\n');
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// serde_json's pretty printer with Jackson's `" : "` between a key and its value.
#[derive(Default)]
struct JacksonPretty(serde_json::ser::PrettyFormatter<'static>);

impl serde_json::ser::Formatter for JacksonPretty {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b" : ")
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// pulsar-admin's choice of the message id for `topics offload --size-threshold`: walking from
/// the newest ledger, the first one whose suffix of the topic exceeds the threshold; everything
/// before the next-newer ledger is offloaded.
fn first_ledger_within_threshold(stats: &InternalStats, threshold: i64) -> Option<i64> {
    let mut ledgers = stats.ledgers.clone();
    if let Some(last) = ledgers.last_mut() {
        last.size = stats.current_ledger_size as i64;
    }
    let mut suffix = 0i64;
    let mut previous = ledgers.last()?.ledger_id;
    for ledger in ledgers.iter().rev() {
        suffix += ledger.size;
        if suffix > threshold {
            return Some(previous);
        }
        previous = ledger.ledger_id;
    }
    None
}

fn namespace_path(ns: &NamespaceName, what: &str) -> String {
    format!("/admin/v2/namespaces/{}/{}/{what}", ns.tenant, ns.namespace)
}

async fn offload_status(
    client: &AdminClient,
    topic: &TopicName,
    wait: bool,
) -> Result<String, CliError> {
    let path = format!("{}/offload", topic_path(topic));
    let mut status: OffloadStatus = client.get_json(&path).await?;
    if wait && status.status == State::Running {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(status.bytes_total),
            indicatif::ProgressDrawTarget::stdout(),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        while status.status == State::Running {
            bar.set_length(status.bytes_total);
            bar.set_position(status.bytes_uploaded);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            status = client.get_json(&path).await?;
        }
        bar.finish_and_clear();
    }
    Ok(match status.status {
        State::NotRun => format!(
            "Offload has not been run for {} since broker startup\n",
            topic.persistent()
        ),
        State::Running => "Offload is currently running\n".to_string(),
        State::Success => "Offload was a success\n".to_string(),
        State::Error => return Err(CliError::OffloadFailed(status.last_error)),
    })
}

fn topic_path(topic: &TopicName) -> String {
    format!(
        "/admin/v2/persistent/{}/{}/{}",
        topic.tenant, topic.namespace, topic.topic
    )
}

/// Runs one admin command; what it prints on success is returned as text.
pub async fn run(args: AdminArgs) -> Result<String, CliError> {
    let url = match args.admin_url {
        Some(url) => url,
        None => endpoint::discover(&args.data_dir).map_err(CliError::Endpoint)?,
    };
    let client = AdminClient::new(&url, args.admin_token)?;
    let lines = |items: Vec<String>| items.into_iter().map(|l| l + "\n").collect::<String>();
    Ok(match args.command {
        AdminCommand::ScanOffloaded { delete, namespace } => {
            let ns = NamespaceName::parse(&namespace)?;
            let method = if delete { Method::DELETE } else { Method::GET };
            let report: ScanReport = client
                .json(method, &namespace_path(&ns, "scanOffloaded"))
                .await?;
            let mut out = String::new();
            for (url, size) in &report.unreferenced {
                out += &format!("Unreferenced object: {url} ({size} bytes)\n");
            }
            for (url, id) in &report.stale_uploads {
                out += &format!("Stale multipart upload: {url} (upload id {id})\n");
            }
            out += &format!(
                "{} {} unreferenced object(s) and {} stale multipart upload(s) in {ns}\n",
                if report.deleted { "Removed" } else { "Found" },
                report.unreferenced.len(),
                report.stale_uploads.len()
            );
            out
        }
        AdminCommand::Brokers(BrokersCommand::GetRuntimeConfiguration) => {
            let config: BTreeMap<String, String> = client
                .get_json("/admin/v2/brokers/configuration/runtime")
                .await?;
            serde_json::to_string_pretty(&config).expect("a map of strings serializes") + "\n"
        }
        AdminCommand::Tenants(cmd) => match cmd {
            TenantsCommand::List => lines(client.get_json("/admin/v2/tenants").await?),
            TenantsCommand::Create { tenant } => {
                validate(NameKind::Tenant, &tenant)?;
                client
                    .call(Method::PUT, &format!("/admin/v2/tenants/{tenant}"))
                    .await?;
                String::new()
            }
            TenantsCommand::Delete { tenant } => {
                validate(NameKind::Tenant, &tenant)?;
                client
                    .call(Method::DELETE, &format!("/admin/v2/tenants/{tenant}"))
                    .await?;
                String::new()
            }
        },
        AdminCommand::Namespaces(cmd) => match cmd {
            NamespacesCommand::List { tenant } => {
                validate(NameKind::Tenant, &tenant)?;
                lines(
                    client
                        .get_json(&format!("/admin/v2/namespaces/{tenant}"))
                        .await?,
                )
            }
            NamespacesCommand::Create { namespace } => {
                let ns = NamespaceName::parse(&namespace)?;
                client
                    .call(Method::PUT, &format!("/admin/v2/namespaces/{ns}"))
                    .await?;
                String::new()
            }
            NamespacesCommand::Delete { namespace } => {
                let ns = NamespaceName::parse(&namespace)?;
                client
                    .call(Method::DELETE, &format!("/admin/v2/namespaces/{ns}"))
                    .await?;
                String::new()
            }
            NamespacesCommand::SetOffloadThreshold { size, namespace } => {
                let ns = NamespaceName::parse(&namespace)?;
                let bytes = parse_size(&size)?;
                client
                    .send_json(
                        Method::PUT,
                        &namespace_path(&ns, "offloadThreshold"),
                        &bytes,
                    )
                    .await?;
                String::new()
            }
            NamespacesCommand::GetOffloadThreshold { namespace } => {
                let ns = NamespaceName::parse(&namespace)?;
                let bytes: i64 = client
                    .get_json(&namespace_path(&ns, "offloadThreshold"))
                    .await?;
                format!("{bytes}\n")
            }
            NamespacesCommand::RemoveOffloadThreshold { namespace } => {
                let ns = NamespaceName::parse(&namespace)?;
                client
                    .call(Method::DELETE, &namespace_path(&ns, "offloadThreshold"))
                    .await?;
                String::new()
            }
            NamespacesCommand::SetOffloadDeletionLag { lag, namespace } => {
                let ns = NamespaceName::parse(&namespace)?;
                let ms = parse_duration_ms(&lag)?;
                client
                    .send_json(
                        Method::PUT,
                        &namespace_path(&ns, "offloadDeletionLagMs"),
                        &ms,
                    )
                    .await?;
                String::new()
            }
            NamespacesCommand::GetOffloadDeletionLag { namespace } => {
                let ns = NamespaceName::parse(&namespace)?;
                let ms: Option<u64> = client
                    .get_json(&namespace_path(&ns, "offloadDeletionLagMs"))
                    .await?;
                match ms {
                    Some(ms) => format!("{} minute(s)\n", ms / 60_000),
                    None => "Unset for namespace. Defaulting to broker setting.\n".to_string(),
                }
            }
            NamespacesCommand::SetRetention {
                size,
                time,
                namespace,
            } => {
                let ns = NamespaceName::parse(&namespace)?;
                let policy = RetentionPolicy {
                    time_minutes: retention_minutes(&time)?,
                    size_mb: retention_megabytes(&size)?,
                };
                policy.validate().map_err(CliError::Usage)?;
                client
                    .send_json(Method::POST, &namespace_path(&ns, "retention"), &policy)
                    .await?;
                String::new()
            }
            NamespacesCommand::GetRetention { namespace } => {
                let ns = NamespaceName::parse(&namespace)?;
                let policy: Option<RetentionPolicy> =
                    client.get_json(&namespace_path(&ns, "retention")).await?;
                pulsar_admin_json(&policy)
            }
            NamespacesCommand::RemoveRetention { namespace } => {
                let ns = NamespaceName::parse(&namespace)?;
                client
                    .call(Method::DELETE, &namespace_path(&ns, "retention"))
                    .await?;
                String::new()
            }
            NamespacesCommand::ClearOffloadDeletionLag { namespace } => {
                let ns = NamespaceName::parse(&namespace)?;
                client
                    .call(Method::DELETE, &namespace_path(&ns, "offloadDeletionLagMs"))
                    .await?;
                String::new()
            }
        },
        AdminCommand::Topics(cmd) => match cmd {
            TopicsCommand::List { namespace } => {
                let ns = NamespaceName::parse(&namespace)?;
                lines(
                    client
                        .get_json(&format!("/admin/v2/persistent/{ns}"))
                        .await?,
                )
            }
            TopicsCommand::Create { topic } => {
                let topic = TopicName::parse(&topic)?;
                client.call(Method::PUT, &topic_path(&topic)).await?;
                String::new()
            }
            TopicsCommand::Delete { force, topic } => {
                let topic = TopicName::parse(&topic)?;
                let query = if force { "?force=true" } else { "" };
                client
                    .call(Method::DELETE, &format!("{}{query}", topic_path(&topic)))
                    .await?;
                String::new()
            }
            TopicsCommand::Truncate { topic } => {
                let topic = TopicName::parse(&topic)?;
                client
                    .call(Method::DELETE, &format!("{}/truncate", topic_path(&topic)))
                    .await?;
                String::new()
            }
            TopicsCommand::StatsInternal { topic } => {
                let topic = TopicName::parse(&topic)?;
                let stats: InternalStats = client
                    .get_json(&format!("{}/internalStats", topic_path(&topic)))
                    .await?;
                serde_json::to_string_pretty(&stats).expect("stats serialize") + "\n"
            }
            TopicsCommand::Seal { topic } => {
                let topic = TopicName::parse(&topic)?;
                let sealed: SealedInfo = client
                    .json(Method::POST, &format!("{}/seal", topic_path(&topic)))
                    .await?;
                format!(
                    "Sealed segment {} of {} ({} entries, {} bytes)\n",
                    data_file_name(sealed.ledger_id),
                    topic.persistent(),
                    sealed.entries,
                    sealed.size
                )
            }
            TopicsCommand::Offload {
                size_threshold,
                topic,
            } => {
                let topic = TopicName::parse(&topic)?;
                let threshold = parse_size(&size_threshold)?;
                let stats: InternalStats = client
                    .get_json(&format!("{}/internalStats", topic_path(&topic)))
                    .await?;
                if stats.ledgers.is_empty() {
                    return Err(CliError::Usage("Topic doesn't have any data".into()));
                }
                match first_ledger_within_threshold(&stats, threshold) {
                    None => "Nothing to offload\n".to_string(),
                    Some(ledger) => {
                        let id = MessageId {
                            ledger_id: ledger,
                            entry_id: 0,
                            partition_index: -1,
                        };
                        client
                            .send_json(Method::PUT, &format!("{}/offload", topic_path(&topic)), &id)
                            .await?;
                        format!(
                            "Offload triggered for {} for messages before {id}\n",
                            topic.persistent()
                        )
                    }
                }
            }
            TopicsCommand::OffloadStatus { wait, topic } => {
                let topic = TopicName::parse(&topic)?;
                offload_status(&client, &topic, wait).await?
            }
        },
    })
}
