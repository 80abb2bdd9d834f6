//! `tierfs admin …`: pulsar-admin's commands and output, over the admin REST endpoint.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use hyper::Method;

use super::client::{AdminClient, ClientError};
use super::endpoint;
use super::model::{InternalStats, SealedInfo};
use crate::log::data_file_name;
use crate::name::{NameKind, NamespaceName, TopicName, validate};

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// URL of the mount's admin endpoint (default: read from <data-dir>/admin.addr)
    #[arg(long, env = "TIERFS_ADMIN_URL")]
    pub admin_url: Option<String>,
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
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List the topics of a namespace
    List { namespace: String },
    /// Create a topic: tenant/namespace/topic
    Create { topic: String },
    /// Delete a topic that holds no entries
    Delete { topic: String },
    /// The topic's segments ("ledgers") and counters, as Pulsar's internal stats
    StatsInternal { topic: String },
    /// Seal the active segment now and start a new one
    Seal { topic: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Endpoint(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Name(#[from] crate::name::NameError),
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
    let client = AdminClient::new(&url)?;
    let lines = |items: Vec<String>| items.into_iter().map(|l| l + "\n").collect::<String>();
    Ok(match args.command {
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
            TopicsCommand::Delete { topic } => {
                let topic = TopicName::parse(&topic)?;
                client.call(Method::DELETE, &topic_path(&topic)).await?;
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
        },
    })
}
