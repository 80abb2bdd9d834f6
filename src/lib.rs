//! tierfs: a FUSE-mounted, tiered segment log filesystem modelled on Apache Pulsar's tiered
//! storage. See `README.md` for use and `docs/` for the contract.

pub mod admin;
pub mod allocator;
pub mod buffer_pool;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod fs;
pub mod fuse;
pub mod log;
pub mod metrics;
pub mod mount;
pub mod name;
pub mod offload;
pub mod pulsar;
pub mod recover;
#[cfg(test)]
mod reftest;
pub mod store;
pub mod units;
