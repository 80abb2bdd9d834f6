//! Writes one ledger in the layout of Pulsar's blob-store offloader (format version 1), for
//! tests and benchmarks that need a bucket as a Pulsar broker leaves it: the data object's
//! parts (one block each) and the index object.
//!
//! Every block but the last is exactly `block_size` bytes (header, entry records, padding);
//! the last is sized to hold the remaining entries, as Pulsar sizes it.

use super::PulsarError;
use super::offload_format::{
    BLOCK_HEADER_LEN, BLOCK_PADDING, BlockHeader, BlockRef, CustomMetadata, ENTRY_RECORD_HEADER,
    LedgerIndex, LedgerMetadataFormat,
};

/// The objects of one offloaded ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenLedger {
    /// The data object, one part (block) at a time.
    pub parts: Vec<Vec<u8>>,
    /// The index object.
    pub index: Vec<u8>,
}

impl WrittenLedger {
    /// The whole data object.
    pub fn data(&self) -> Vec<u8> {
        self.parts.concat()
    }
}

/// Lays `entries` (entry ids 0, 1, …) out in blocks of `block_size` bytes; `managed_ledger`
/// goes into the ledger metadata's `pulsar/managed-ledger`, as brokers set it.
pub fn write_ledger(
    entries: &[Vec<u8>],
    block_size: u64,
    managed_ledger: Option<&str>,
    ctime_ms: i64,
) -> Result<WrittenLedger, PulsarError> {
    let room = block_size.saturating_sub(BLOCK_HEADER_LEN);
    let mut parts = Vec::new();
    let mut blocks = Vec::new();
    let mut offset = 0u64;
    let mut next = 0usize;
    while next < entries.len() {
        let first = next;
        let mut used = 0u64;
        while next < entries.len() {
            let record = ENTRY_RECORD_HEADER + entries[next].len() as u64;
            if used + record > room {
                break;
            }
            used += record;
            next += 1;
        }
        if next == first {
            return Err(PulsarError::Writer(format!(
                "entry {first} ({} bytes) does not fit in a block of {block_size} bytes",
                entries[first].len()
            )));
        }
        let last_block = next == entries.len();
        let block_len = if last_block {
            BLOCK_HEADER_LEN + used
        } else {
            block_size
        };
        let mut block = BlockHeader {
            header_len: BLOCK_HEADER_LEN,
            block_len,
            first_entry_id: first as u64,
        }
        .encode();
        for (id, entry) in entries.iter().enumerate().take(next).skip(first) {
            block.extend_from_slice(&(entry.len() as u32).to_be_bytes());
            block.extend_from_slice(&(id as u64).to_be_bytes());
            block.extend_from_slice(entry);
        }
        let mut i = 0;
        while (block.len() as u64) < block_len {
            block.push(BLOCK_PADDING[i % 4]);
            i += 1;
        }
        blocks.push(BlockRef {
            first_entry_id: first as u64,
            part: parts.len() as u32 + 1,
            offset,
        });
        offset += block_len;
        parts.push(block);
    }
    let mut custom_metadata = vec![CustomMetadata {
        key: Some("application".into()),
        value: Some(b"pulsar".to_vec()),
    }];
    if let Some(name) = managed_ledger {
        custom_metadata.push(CustomMetadata {
            key: Some("pulsar/managed-ledger".into()),
            value: Some(name.as_bytes().to_vec()),
        });
    }
    let metadata = LedgerMetadataFormat {
        quorum_size: Some(2),
        ensemble_size: Some(2),
        length: Some(entries.iter().map(|e| e.len() as i64).sum()),
        last_entry_id: Some(entries.len() as i64 - 1),
        state: Some(3),
        digest_type: Some(3),
        ack_quorum_size: Some(2),
        ctime: Some(ctime_ms),
        custom_metadata,
    };
    let index = LedgerIndex {
        data_object_len: offset,
        data_header_len: BLOCK_HEADER_LEN,
        metadata,
        blocks,
    }
    .encode();
    Ok(WrittenLedger { parts, index })
}
