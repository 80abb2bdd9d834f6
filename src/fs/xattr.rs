//! Extended attributes that tell where a segment lives (`user.tierfs.*`).
//!
//! Read-only; computed from the topic's state at the moment of the call.

use crate::log::{ActiveInfo, SealedSegment};

pub const STATE: &str = "user.tierfs.state";
pub const LOCAL: &str = "user.tierfs.local";
pub const ENTRIES: &str = "user.tierfs.entries";
pub const CRC32C: &str = "user.tierfs.crc32c";

/// The attributes of a sealed segment, in listing order.
pub fn of_sealed(segment: &SealedSegment) -> Vec<(&'static str, String)> {
    vec![
        (STATE, "sealed".to_string()),
        (LOCAL, "yes".to_string()),
        (ENTRIES, segment.entries.to_string()),
        (CRC32C, format!("{:08x}", segment.crc32c)),
    ]
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

/// The `listxattr` answer: names, each followed by a NUL.
pub fn name_list(attrs: &[(&'static str, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, _) in attrs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }
    out
}
