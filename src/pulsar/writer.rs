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

/// What the objects of an upload say about themselves (user metadata), as brokers set it.
#[derive(Debug, Clone)]
pub struct ObjectsMetadata<'a> {
    /// `managedledgername`; brokers before 2022 did not set it.
    pub managed_ledger: Option<&'a str>,
    pub cluster: Option<&'a str>,
    pub format_version: &'a str,
    pub software_version: &'a str,
    /// Write the data object by multipart upload, one part per block, as brokers do (stores
    /// without multipart uploads get one PUT).
    pub multipart: bool,
}

impl Default for ObjectsMetadata<'_> {
    fn default() -> Self {
        Self {
            managed_ledger: None,
            cluster: None,
            format_version: super::offload_format::FORMAT_VERSION,
            software_version: "3.0.7",
            multipart: true,
        }
    }
}

/// The keys of an uploaded ledger: data and index.
pub fn object_keys(prefix: &str, uuid: &str, ledger: u64) -> (String, String) {
    let data = format!("{prefix}{uuid}-ledger-{ledger}");
    let index = format!("{data}-index");
    (data, index)
}

/// Uploads a written ledger as Pulsar's offloader does: the data object (multipart, one part
/// per block), then the index object; both with Pulsar's user metadata. Returns their keys.
pub async fn upload(
    store: &dyn crate::store::ObjectStore,
    prefix: &str,
    uuid: &str,
    ledger: u64,
    written: &WrittenLedger,
    meta: &ObjectsMetadata<'_>,
) -> Result<(String, String), crate::store::StoreError> {
    use super::bucket::{CLUSTER_KEY, NAME_KEY, SOFTWARE_VERSION_KEY, VERSION_KEY};
    let (data_key, index_key) = object_keys(prefix, uuid, ledger);
    let mut metadata = crate::store::Metadata::new();
    metadata.insert(VERSION_KEY.into(), meta.format_version.into());
    metadata.insert(SOFTWARE_VERSION_KEY.into(), meta.software_version.into());
    metadata.insert(
        "s3managedledgeroffloadersoftwaregitsha".into(),
        "0123abc".into(),
    );
    if let Some(name) = meta.managed_ledger {
        metadata.insert(NAME_KEY.into(), name.into());
    }
    if let Some(cluster) = meta.cluster {
        metadata.insert(CLUSTER_KEY.into(), cluster.into());
    }
    let mut data_meta = metadata.clone();
    data_meta.insert("role".into(), "data".into());
    if meta.multipart {
        let id = store
            .create_multipart_with_metadata(&data_key, &data_meta)
            .await?;
        let mut parts = Vec::with_capacity(written.parts.len());
        for (i, part) in written.parts.iter().enumerate() {
            parts.push(
                store
                    .upload_part(
                        &data_key,
                        &id,
                        i as i32 + 1,
                        bytes::Bytes::from(part.clone()),
                    )
                    .await?,
            );
        }
        store.complete_multipart(&data_key, &id, parts).await?;
    } else {
        store
            .put_with_metadata(&data_key, written.data().into(), &data_meta)
            .await?;
    }
    let mut index_meta = metadata;
    index_meta.insert("role".into(), "index".into());
    store
        .put_with_metadata(&index_key, written.index.clone().into(), &index_meta)
        .await?;
    Ok((data_key, index_key))
}

/// An entry as a broker frames it: optional broker entry metadata (`0x0e02`), optional
/// CRC32C (`0x0e01`) of everything after it, then the message metadata and the payload.
pub fn frame(
    meta: &super::proto::MessageMetadata,
    payload: &[u8],
    with_checksum: bool,
    broker: Option<super::proto::BrokerEntryMetadata>,
) -> Vec<u8> {
    use prost::Message as _;
    let meta = meta.encode_to_vec();
    let mut tail = (meta.len() as u32).to_be_bytes().to_vec();
    tail.extend_from_slice(&meta);
    tail.extend_from_slice(payload);
    let mut out = Vec::new();
    if let Some(broker) = broker {
        let bytes = broker.encode_to_vec();
        out.extend_from_slice(&0x0e02u16.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    if with_checksum {
        out.extend_from_slice(&0x0e01u16.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&tail).to_be_bytes());
    }
    out.extend_from_slice(&tail);
    out
}

/// A batch payload before compression: `[u32 size][SingleMessageMetadata][payload]` each.
pub fn batch(messages: &[(super::proto::SingleMessageMetadata, &[u8])]) -> Vec<u8> {
    use prost::Message as _;
    let mut out = Vec::new();
    for (single, body) in messages {
        let single = single.encode_to_vec();
        out.extend_from_slice(&(single.len() as u32).to_be_bytes());
        out.extend_from_slice(&single);
        out.extend_from_slice(body);
    }
    out
}

/// `data` compressed as Pulsar's codec `codec` does it (NONE 0, LZ4 1, ZLIB 2, ZSTD 3,
/// SNAPPY 4); `None` for any other codec.
pub fn compress(codec: i32, data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    Some(match codec {
        0 => data.to_vec(),
        1 => lz4_flex::block::compress(data),
        2 => {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(data).ok()?;
            z.finish().ok()?
        }
        3 => zstd::bulk::compress(data, 3).ok()?,
        4 => snap::raw::Encoder::new().compress_vec(data).ok()?,
        _ => return None,
    })
}
