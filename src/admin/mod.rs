//! Administration: the REST endpoint a mount serves, and the `tierfs admin` CLI that calls it.

pub mod cli;
pub mod client;
pub mod endpoint;
pub mod model;
pub mod pulsar_mount;
pub mod read_only;
pub mod server;
