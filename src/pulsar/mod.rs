//! Pulsar's own offloaded ledgers (issue 11, in steps): the formats its blob-store offloader
//! writes, decoded and checked here; a writer of the same format for tests and benchmarks.
//! The `--pulsar` mount, `tierfs pulsar messages|verify|scan` build on these.

pub mod entry;
pub mod offload_format;
pub mod proto;
pub mod writer;

#[cfg(test)]
mod tests;

/// Why Pulsar's bytes cannot be used; every variant names what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PulsarError {
    #[error("data block: {0}")]
    Block(String),
    #[error("index object: {0}")]
    Index(String),
    #[error("malformed entry: {0}")]
    Entry(String),
    #[error("cannot write a ledger: {0}")]
    Writer(String),
}
