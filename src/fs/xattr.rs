//! Extended attributes that tell where a segment lives (`user.tierfs.*`).
//!
//! Read-only; computed from the topic's state at the moment of the call.

use crate::log::{ActiveInfo, SealedSegment};

pub const STATE: &str = "user.tierfs.state";
pub const LOCAL: &str = "user.tierfs.local";
pub const ENTRIES: &str = "user.tierfs.entries";
pub const CRC32C: &str = "user.tierfs.crc32c";
pub const OBJECT: &str = "user.tierfs.object";

/// The attributes of a sealed segment, in listing order; `object_url` names its data object
/// once an offload has started.
pub fn of_sealed(
    segment: &SealedSegment,
    object_url: Option<String>,
) -> Vec<(&'static str, String)> {
    let state = match &segment.offload {
        Some(record) if record.is_complete() => "offloaded",
        Some(_) => "offloading",
        None => "sealed",
    };
    let mut attrs = vec![
        (STATE, state.to_string()),
        (LOCAL, if segment.local { "yes" } else { "no" }.to_string()),
        (ENTRIES, segment.entries.to_string()),
        (CRC32C, format!("{:08x}", segment.crc32c)),
    ];
    if let Some(url) = object_url {
        attrs.push((OBJECT, url));
    }
    attrs
}

/// The attributes of the active segment, in listing order.
pub fn of_active(active: &ActiveInfo) -> Vec<(&'static str, String)> {
    vec![
        (STATE, "active".to_string()),
        (LOCAL, "yes".to_string()),
        (ENTRIES, active.entries.to_string()),
        (CRC32C, format!("{:08x}", active.crc32c)),
    ]
}

/// The attributes of a Pulsar ledger file (`user.pulsar.*`), in listing order; absent
/// metadata is left out.
pub fn of_ledger(
    ledger: &crate::pulsar::bucket::Ledger,
    object_url: String,
) -> Vec<(&'static str, String)> {
    let mut attrs = vec![
        ("user.pulsar.ledger", ledger.id.to_string()),
        ("user.pulsar.entries", ledger.entries.to_string()),
        ("user.pulsar.uuid", ledger.uuid.clone()),
    ];
    if let Some(cluster) = &ledger.cluster {
        attrs.push(("user.pulsar.cluster", cluster.clone()));
    }
    if let Some(version) = &ledger.software_version {
        attrs.push(("user.pulsar.software-version", version.clone()));
    }
    if let Some(name) = &ledger.managed_ledger {
        attrs.push(("user.pulsar.managed-ledger", name.clone()));
    }
    attrs.push(("user.pulsar.object", object_url));
    attrs
}

/// The `listxattr` answer: names, each followed by a NUL.
pub fn name_list(attrs: &[(&'static str, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, _) in attrs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }
    out
}
