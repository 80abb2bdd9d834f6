//! One Pulsar entry, as a broker wrote it to BookKeeper, decoded into its messages:
//!
//! ```text
//! [u16 0x0e02][u32 size][BrokerEntryMetadata]   optional
//! [u16 0x0e01][u32 crc32c]                      optional: CRC32C of every byte after it
//! [u32 metadata size][MessageMetadata][payload]
//! ```
//!
//! The payload is decompressed (LZ4 raw block, ZLIB, ZSTD, SNAPPY raw, by the codecs' own
//! crates) and, when the metadata says it is a batch, split into its messages
//! (`[u32 size][SingleMessageMetadata][payload]` each). Protobuf comes from prost. A malformed
//! entry is an error naming what is wrong; nothing here panics on bad input.

use std::collections::BTreeMap;
use std::io::Read;

use super::PulsarError;
use super::proto::{BrokerEntryMetadata, MessageMetadata, SingleMessageMetadata};

const BROKER_ENTRY_METADATA_MAGIC: u16 = 0x0e02;
const CHECKSUM_MAGIC: u16 = 0x0e01;
/// Refuse to inflate a payload beyond this (a damaged `uncompressed_size` must not exhaust
/// memory); Pulsar's own limit on a message is 5 MiB by default.
const MAX_UNCOMPRESSED: usize = 128 << 20;

/// One message of an entry, with what the metadata says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Position in its batch; -1 when the entry is not a batch.
    pub batch_index: i32,
    pub producer: String,
    pub sequence_id: u64,
    pub publish_time: u64,
    /// 0 when unset.
    pub event_time: u64,
    pub key: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub payload: Vec<u8>,
    pub broker_timestamp: Option<u64>,
    pub broker_index: Option<u64>,
}

/// What the entry's optional checksum says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// The entry carries none.
    Absent,
    Good,
    Bad {
        stored: u32,
        computed: u32,
    },
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn malformed(reason: impl Into<String>) -> PulsarError {
    PulsarError::Entry(reason.into())
}

/// The parts of an entry, not yet decompressed.
struct Framed<'a> {
    broker: Option<BrokerEntryMetadata>,
    checksum: Checksum,
    metadata: MessageMetadata,
    payload: &'a [u8],
}

fn frame(entry: &[u8]) -> Result<Framed<'_>, PulsarError> {
    let mut at = 0;
    let mut broker = None;
    if u16_at(entry, 0) == Some(BROKER_ENTRY_METADATA_MAGIC) {
        let size =
            u32_at(entry, 2).ok_or_else(|| malformed("broker entry metadata cut short"))? as usize;
        let bytes = entry
            .get(6..6 + size)
            .ok_or_else(|| malformed("broker entry metadata runs past the entry"))?;
        broker = Some(
            <BrokerEntryMetadata as prost::Message>::decode(bytes)
                .map_err(|e| malformed(format!("broker entry metadata: {e}")))?,
        );
        at = 6 + size;
    }
    let mut checksum = Checksum::Absent;
    if u16_at(entry, at) == Some(CHECKSUM_MAGIC) {
        let stored = u32_at(entry, at + 2).ok_or_else(|| malformed("checksum cut short"))?;
        let computed = crc32c::crc32c(&entry[at + 6..]);
        checksum = if stored == computed {
            Checksum::Good
        } else {
            Checksum::Bad { stored, computed }
        };
        at += 6;
    }
    let size = u32_at(entry, at).ok_or_else(|| malformed("metadata size cut short"))? as usize;
    let bytes = entry
        .get(at + 4..at + 4 + size)
        .ok_or_else(|| malformed(format!("metadata of {size} bytes runs past the entry")))?;
    let metadata = <MessageMetadata as prost::Message>::decode(bytes)
        .map_err(|e| malformed(format!("message metadata: {e}")))?;
    Ok(Framed {
        broker,
        checksum,
        metadata,
        payload: &entry[at + 4 + size..],
    })
}

/// The entry's checksum, checked (without decoding its payload).
pub fn checksum(entry: &[u8]) -> Result<Checksum, PulsarError> {
    frame(entry).map(|f| f.checksum)
}

fn decompress(codec: i32, payload: &[u8], size: usize) -> Result<Vec<u8>, PulsarError> {
    if size > MAX_UNCOMPRESSED {
        return Err(malformed(format!(
            "uncompressed size {size} is over the {MAX_UNCOMPRESSED} bytes tierfs inflates"
        )));
    }
    let inflated = match codec {
        0 => return Ok(payload.to_vec()),
        1 => lz4_flex::block::decompress(payload, size).map_err(|e| e.to_string()),
        2 => inflate(flate2::read::ZlibDecoder::new(payload), size),
        3 => zstd::stream::read::Decoder::new(payload)
            .map_err(|e| e.to_string())
            .and_then(|decoder| inflate(decoder, size)),
        4 => snap::raw::Decoder::new()
            .decompress_vec(payload)
            .map_err(|e| e.to_string()),
        other => return Err(malformed(format!("unknown compression type {other}"))),
    };
    let name = ["NONE", "LZ4", "ZLIB", "ZSTD", "SNAPPY"][codec as usize];
    let inflated = inflated.map_err(|e| malformed(format!("{name} payload: {e}")))?;
    if inflated.len() != size {
        return Err(malformed(format!(
            "{name} payload inflates to {} bytes; the metadata says {size}",
            inflated.len()
        )));
    }
    Ok(inflated)
}

/// Reads a decompressing stream to its end, never past `size` and one byte (a stream longer
/// than its metadata says is then refused by the length check).
fn inflate(reader: impl Read, size: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(size.min(1 << 20));
    reader
        .take(size as u64 + 1)
        .read_to_end(&mut out)
        .map(|_| out)
        .map_err(|e| e.to_string())
}

fn properties(list: &[super::proto::KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

/// Decodes an entry into its messages, in order.
pub fn messages(entry: &[u8]) -> Result<Vec<Message>, PulsarError> {
    let framed = frame(entry)?;
    let meta = &framed.metadata;
    let codec = meta.compression.unwrap_or(0);
    let size = match codec {
        0 => framed.payload.len(),
        _ => meta.uncompressed_size.unwrap_or(0) as usize,
    };
    let payload = decompress(codec, framed.payload, size)?;
    let base = Message {
        batch_index: -1,
        producer: meta.producer_name.clone(),
        sequence_id: meta.sequence_id,
        publish_time: meta.publish_time,
        event_time: meta.event_time.unwrap_or(0),
        key: meta.partition_key.clone(),
        properties: properties(&meta.properties),
        payload: Vec::new(),
        broker_timestamp: framed.broker.as_ref().and_then(|b| b.broker_timestamp),
        broker_index: framed.broker.as_ref().and_then(|b| b.index),
    };
    let Some(count) = meta.num_messages_in_batch else {
        return Ok(vec![Message { payload, ..base }]);
    };
    let mut out = Vec::with_capacity((count.max(0) as usize).min(payload.len() / 4 + 1));
    let mut at = 0;
    for i in 0..count.max(0) {
        let size = u32_at(&payload, at)
            .ok_or_else(|| malformed(format!("batch message {i}: metadata size cut short")))?
            as usize;
        let bytes = payload.get(at + 4..at + 4 + size).ok_or_else(|| {
            malformed(format!("batch message {i}: metadata runs past the payload"))
        })?;
        let single = <SingleMessageMetadata as prost::Message>::decode(bytes)
            .map_err(|e| malformed(format!("batch message {i}: {e}")))?;
        let start = at + 4 + size;
        let len = usize::try_from(single.payload_size)
            .map_err(|_| malformed(format!("batch message {i}: negative payload size")))?;
        let body = payload
            .get(start..start + len)
            .ok_or_else(|| malformed(format!("batch message {i}: payload runs past the batch")))?;
        out.push(Message {
            batch_index: i,
            sequence_id: single.sequence_id.unwrap_or(base.sequence_id + i as u64),
            event_time: single.event_time.unwrap_or(base.event_time),
            key: single.partition_key.clone(),
            properties: properties(&single.properties),
            payload: body.to_vec(),
            ..base.clone()
        });
        at = start + len;
    }
    if at != payload.len() {
        return Err(malformed(format!(
            "the batch of {count} messages ends at byte {at} of {}",
            payload.len()
        )));
    }
    Ok(out)
}

/// One message as `tierfs pulsar messages` prints it: a JSON object on one line, the payload
/// as UTF-8 text (`payload`) or, when it is not UTF-8, base64 (`payload_base64`).
pub fn json_line(ledger: u64, entry: u64, message: &Message) -> String {
    use base64::Engine as _;
    let mut object = serde_json::Map::new();
    object.insert("ledger".into(), ledger.into());
    object.insert("entry".into(), entry.into());
    object.insert("batch_index".into(), message.batch_index.into());
    object.insert("producer".into(), message.producer.clone().into());
    object.insert("sequence_id".into(), message.sequence_id.into());
    object.insert("publish_time".into(), message.publish_time.into());
    object.insert("event_time".into(), message.event_time.into());
    object.insert(
        "key".into(),
        message
            .key
            .clone()
            .map_or(serde_json::Value::Null, Into::into),
    );
    object.insert(
        "properties".into(),
        message
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    match std::str::from_utf8(&message.payload) {
        Ok(text) => object.insert("payload".into(), text.into()),
        Err(_) => object.insert(
            "payload_base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(&message.payload)
                .into(),
        ),
    };
    if let Some(timestamp) = message.broker_timestamp {
        object.insert("broker_timestamp".into(), timestamp.into());
    }
    if let Some(index) = message.broker_index {
        object.insert("broker_index".into(), index.into());
    }
    serde_json::Value::Object(object).to_string()
}
