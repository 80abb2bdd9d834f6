//! Pulsar's own offloaded ledgers: the formats its blob-store offloader writes, decoded and
//! checked ([`offload_format`], [`entry`]); a bucket surveyed ([`bucket`]) and shown as a tree
//! of ledger files ([`tree`]) read through [`reader`]; `tierfs pulsar messages|verify`
//! ([`cli`]) and `scan` ([`scan`]); a writer of the same format for tests and benchmarks.

pub mod bucket;
pub mod cli;
pub mod entry;
pub mod offload_format;
pub mod proto;
pub mod reader;
pub mod scan;
pub mod tree;
pub mod writer;

#[cfg(test)]
mod mount_tests;
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
