//! The bytes Pulsar's blob-store offloader (jcloud, format version 1) writes for one ledger:
//! its data object (blocks of entry records) and its index object (one entry per block plus
//! the ledger's BookKeeper metadata). All integers are big-endian. `../shared/`'s
//! `pulsar-offload-format.md` and `docs/PULSAR.md` describe the layout; the decoders here
//! check every length and magic number and never panic on bad input.
//!
//! ```text
//! data block:  magic 0xFBDBABCB | header len u64 (128) | block len u64 | first entry id u64
//!              | zeros to 128 | [i32 len][i64 entry id][len bytes] … | padding FE DC DE AD …
//! index:       magic 0xDE47DE47 | index len u32 | data object len u64 | data header len u64
//!              | K u32 | M u32 | LedgerMetadataFormat (M bytes, protobuf)
//!              | K × [i64 first entry id][i32 part number][i64 block offset]
//! ```

use super::PulsarError;

pub const BLOCK_MAGIC: u32 = 0xFBDB_ABCB;
pub const INDEX_MAGIC: u32 = 0xDE47_DE47;
/// Bytes of a data block header (the used fields, then zeros).
pub const BLOCK_HEADER_LEN: u64 = 128;
/// What fills a data block after its last entry record, repeated and cut anywhere.
pub const BLOCK_PADDING: [u8; 4] = [0xFE, 0xDC, 0xDE, 0xAD];
/// `[i32 length][i64 entry id]` before each entry's bytes.
pub const ENTRY_RECORD_HEADER: u64 = 12;
/// The one value of the objects' `s3managedledgeroffloaderformatversion` metadata read here.
pub const FORMAT_VERSION: &str = "1";

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// The header at the start of every data block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub header_len: u64,
    pub block_len: u64,
    pub first_entry_id: u64,
}

impl BlockHeader {
    pub fn decode(bytes: &[u8]) -> Result<Self, PulsarError> {
        if bytes.len() < 28 {
            return Err(PulsarError::Block(format!(
                "a block header is at least 28 bytes; {} were given",
                bytes.len()
            )));
        }
        let magic = u32_at(bytes, 0);
        if magic != BLOCK_MAGIC {
            return Err(PulsarError::Block(format!(
                "block magic is {magic:#010x}, not {BLOCK_MAGIC:#010x}"
            )));
        }
        let header = Self {
            header_len: u64_at(bytes, 4),
            block_len: u64_at(bytes, 12),
            first_entry_id: u64_at(bytes, 20),
        };
        if header.header_len != BLOCK_HEADER_LEN {
            return Err(PulsarError::Block(format!(
                "block header length is {}, not {BLOCK_HEADER_LEN}",
                header.header_len
            )));
        }
        if header.block_len < BLOCK_HEADER_LEN {
            return Err(PulsarError::Block(format!(
                "block length {} is shorter than its header",
                header.block_len
            )));
        }
        Ok(header)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BLOCK_HEADER_LEN as usize);
        out.extend_from_slice(&BLOCK_MAGIC.to_be_bytes());
        out.extend_from_slice(&self.header_len.to_be_bytes());
        out.extend_from_slice(&self.block_len.to_be_bytes());
        out.extend_from_slice(&self.first_entry_id.to_be_bytes());
        out.resize(BLOCK_HEADER_LEN as usize, 0);
        out
    }
}

/// Where one entry's bytes lie in its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryInBlock {
    pub entry_id: u64,
    /// Offset of the entry's bytes from the start of the block.
    pub offset: u64,
    pub len: u64,
}

/// Walks one whole block holding entries `first..=last`, checking its structure: the header
/// (magic, lengths, first entry id), consecutive entry ids, lengths that stay inside the block,
/// and nothing but padding after the last entry. Returns where each entry lies.
pub fn entries_of_block(
    block: &[u8],
    first: u64,
    last: u64,
) -> Result<Vec<EntryInBlock>, PulsarError> {
    let mut walker = BlockWalker::new(block.len() as u64, first, last);
    let mut entries = Vec::new();
    walker.feed(block, |entry, _| entries.push(entry))?;
    walker.finish()?;
    Ok(entries)
}

/// Where a [`BlockWalker`] is in its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalkState {
    Header,
    /// The next entry record, of this id.
    Entry(u64),
    /// After the last entry record, since this offset.
    Padding(u64),
}

/// Checks a block as its bytes arrive, in order, with the checks of [`entries_of_block`]:
/// each entry is handed over (with its bytes) as soon as it is whole, so a reader of the block
/// need not wait for all of it. Only an incomplete record is kept between calls.
#[derive(Debug)]
pub struct BlockWalker {
    block_len: u64,
    first: u64,
    last: u64,
    state: WalkState,
    /// Offset in the block of `pending[0]`.
    at: u64,
    /// Bytes of an incomplete header or entry record.
    pending: Vec<u8>,
}

impl BlockWalker {
    /// A walker of a block of `block_len` bytes (as the index places it) holding entries
    /// `first..=last`.
    pub fn new(block_len: u64, first: u64, last: u64) -> Self {
        Self {
            block_len,
            first,
            last,
            state: WalkState::Header,
            at: 0,
            pending: Vec::new(),
        }
    }

    /// Takes the next bytes of the block; `entry` is called for every entry they complete,
    /// with its bytes.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut entry: impl FnMut(EntryInBlock, &[u8]),
    ) -> Result<(), PulsarError> {
        if self.at + (self.pending.len() + bytes.len()) as u64 > self.block_len {
            return Err(PulsarError::Block(format!(
                "the block is longer than the {} bytes the index gives it",
                self.block_len
            )));
        }
        let mut bytes = bytes;
        // An incomplete record left from the last call is completed with just the bytes it
        // needs; the rest is walked where it lies, without a copy.
        while !self.pending.is_empty() && !bytes.is_empty() {
            let need = self.needed().saturating_sub(self.pending.len()).max(1);
            let take = need.min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            let pending = std::mem::take(&mut self.pending);
            let used = self.walk(&pending, &mut entry)?;
            self.at += used as u64;
            self.pending = pending[used..].to_vec();
        }
        if self.pending.is_empty() {
            let used = self.walk(bytes, &mut entry)?;
            self.at += used as u64;
            self.pending = bytes[used..].to_vec();
        }
        Ok(())
    }

    /// Bytes the next header or record needs in all, as far as `pending` tells.
    fn needed(&self) -> usize {
        match self.state {
            WalkState::Header => BLOCK_HEADER_LEN as usize,
            WalkState::Entry(_) if self.pending.len() < ENTRY_RECORD_HEADER as usize => {
                ENTRY_RECORD_HEADER as usize
            }
            WalkState::Entry(_) => {
                let len = u32_at(&self.pending, 0) as i32;
                ENTRY_RECORD_HEADER as usize + len.max(0) as usize
            }
            WalkState::Padding(_) => 1,
        }
    }

    /// Consumes what it can of `data` (which starts at `self.at`); returns how much.
    fn walk(
        &mut self,
        data: &[u8],
        entry: &mut impl FnMut(EntryInBlock, &[u8]),
    ) -> Result<usize, PulsarError> {
        let mut used = 0usize;
        loop {
            let here = self.at + used as u64;
            let left = &data[used..];
            match self.state {
                WalkState::Header => {
                    if (left.len() as u64) < BLOCK_HEADER_LEN {
                        return Ok(used);
                    }
                    let header = BlockHeader::decode(left)?;
                    if header.block_len != self.block_len {
                        return Err(PulsarError::Block(format!(
                            "block header says {} bytes; the block has {}",
                            header.block_len, self.block_len
                        )));
                    }
                    if header.first_entry_id != self.first {
                        return Err(PulsarError::Block(format!(
                            "block starts with entry {}; the index says {}",
                            header.first_entry_id, self.first
                        )));
                    }
                    used += BLOCK_HEADER_LEN as usize;
                    self.state = if self.first > self.last {
                        WalkState::Padding(BLOCK_HEADER_LEN)
                    } else {
                        WalkState::Entry(self.first)
                    };
                }
                WalkState::Entry(expected) => {
                    if here + ENTRY_RECORD_HEADER > self.block_len {
                        return Err(PulsarError::Block(format!(
                            "entry {expected}'s record would start at {here}, past the block's end"
                        )));
                    }
                    if (left.len() as u64) < ENTRY_RECORD_HEADER {
                        return Ok(used);
                    }
                    let len = u32_at(left, 0) as i32;
                    let id = u64_at(left, 4);
                    if len < 0 {
                        return Err(PulsarError::Block(format!(
                            "entry {expected} has a negative length ({len}) at offset {here}"
                        )));
                    }
                    if id != expected {
                        return Err(PulsarError::Block(format!(
                            "entry record at offset {here} holds entry {id}; entry {expected} was expected"
                        )));
                    }
                    let offset = here + ENTRY_RECORD_HEADER;
                    let end = offset + len as u64;
                    if end > self.block_len {
                        return Err(PulsarError::Block(format!(
                            "entry {id} ({len} bytes at offset {offset}) runs past the block's end"
                        )));
                    }
                    let record = ENTRY_RECORD_HEADER as usize + len as usize;
                    if left.len() < record {
                        return Ok(used);
                    }
                    entry(
                        EntryInBlock {
                            entry_id: id,
                            offset,
                            len: len as u64,
                        },
                        &left[ENTRY_RECORD_HEADER as usize..record],
                    );
                    used += record;
                    self.state = if id == self.last {
                        WalkState::Padding(end)
                    } else {
                        WalkState::Entry(id + 1)
                    };
                }
                WalkState::Padding(since) => {
                    if let Some(bad) = left.iter().enumerate().position(|(i, b)| {
                        *b != BLOCK_PADDING[(here - since + i as u64) as usize % 4]
                    }) {
                        return Err(PulsarError::Block(format!(
                            "the block's padding is wrong at offset {} (after entry {})",
                            here + bad as u64,
                            self.last
                        )));
                    }
                    return Ok(data.len());
                }
            }
        }
    }

    /// Ends the walk: the block must have been whole.
    pub fn finish(self) -> Result<(), PulsarError> {
        let reached = self.at + self.pending.len() as u64;
        match self.state {
            WalkState::Padding(_) if reached == self.block_len => Ok(()),
            WalkState::Header if self.block_len < BLOCK_HEADER_LEN => Err(PulsarError::Block(
                format!("a block of {} bytes cannot hold its header", self.block_len),
            )),
            WalkState::Entry(expected) => Err(PulsarError::Block(format!(
                "entry {expected}'s record is cut short at offset {reached}"
            ))),
            _ => Err(PulsarError::Block(format!(
                "the block ends at {reached} bytes; the index gives it {}",
                self.block_len
            ))),
        }
    }
}

/// BookKeeper's `LedgerMetadataFormat`, the fields read here (proto2; `DataFormats.proto`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LedgerMetadataFormat {
    #[prost(int32, optional, tag = "1")]
    pub quorum_size: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub ensemble_size: Option<i32>,
    /// Sum of the entries' lengths.
    #[prost(int64, optional, tag = "3")]
    pub length: Option<i64>,
    #[prost(int64, optional, tag = "4")]
    pub last_entry_id: Option<i64>,
    /// OPEN = 1, IN_RECOVERY = 2, CLOSED = 3.
    #[prost(int32, optional, tag = "5")]
    pub state: Option<i32>,
    #[prost(int32, optional, tag = "7")]
    pub digest_type: Option<i32>,
    #[prost(int32, optional, tag = "9")]
    pub ack_quorum_size: Option<i32>,
    #[prost(int64, optional, tag = "10")]
    pub ctime: Option<i64>,
    #[prost(message, repeated, tag = "11")]
    pub custom_metadata: Vec<CustomMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CustomMetadata {
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub value: Option<Vec<u8>>,
}

impl LedgerMetadataFormat {
    /// A custom metadata value as text (`pulsar/managed-ledger`, `application`, …).
    pub fn custom(&self, key: &str) -> Option<String> {
        self.custom_metadata
            .iter()
            .find(|m| m.key.as_deref() == Some(key))
            .and_then(|m| m.value.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// One index entry: where a block starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub first_entry_id: u64,
    /// The multipart part that holds the block, 1-based.
    pub part: u32,
    /// Offset of the block in the data object.
    pub offset: u64,
}

/// A decoded index object.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerIndex {
    pub data_object_len: u64,
    pub data_header_len: u64,
    pub metadata: LedgerMetadataFormat,
    /// Ordered by entry id and offset.
    pub blocks: Vec<BlockRef>,
}

impl LedgerIndex {
    pub fn decode(bytes: &[u8]) -> Result<Self, PulsarError> {
        let bad = |reason: String| PulsarError::Index(reason);
        if bytes.len() < 32 {
            return Err(bad(format!(
                "an index object is at least 32 bytes; this one is {}",
                bytes.len()
            )));
        }
        let magic = u32_at(bytes, 0);
        if magic != INDEX_MAGIC {
            return Err(bad(format!(
                "index magic is {magic:#010x}, not {INDEX_MAGIC:#010x}"
            )));
        }
        let index_len = u32_at(bytes, 4) as u64;
        let data_object_len = u64_at(bytes, 8);
        let data_header_len = u64_at(bytes, 16);
        let count = u32_at(bytes, 24) as u64;
        let metadata_len = u32_at(bytes, 28) as u64;
        let expected = 32 + metadata_len + count * 20;
        if index_len != bytes.len() as u64 || expected != index_len {
            return Err(bad(format!(
                "index object is {} bytes; it says {index_len}, and {count} blocks with {metadata_len} bytes of metadata make {expected}",
                bytes.len()
            )));
        }
        if data_header_len != BLOCK_HEADER_LEN {
            return Err(bad(format!(
                "data header length is {data_header_len}, not {BLOCK_HEADER_LEN}"
            )));
        }
        let metadata_end = 32 + metadata_len as usize;
        let metadata = <LedgerMetadataFormat as prost::Message>::decode(&bytes[32..metadata_end])
            .map_err(|e| bad(format!("ledger metadata is not valid protobuf: {e}")))?;
        let mut blocks: Vec<BlockRef> = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let at = metadata_end + i * 20;
            let block = BlockRef {
                first_entry_id: u64_at(bytes, at),
                part: u32_at(bytes, at + 8),
                offset: u64_at(bytes, at + 12),
            };
            if let Some(previous) = blocks.last() {
                if block.first_entry_id <= previous.first_entry_id
                    || block.offset <= previous.offset
                {
                    return Err(bad(format!(
                        "index entry {i} (entry {}, offset {}) does not follow entry {} at offset {}",
                        block.first_entry_id,
                        block.offset,
                        previous.first_entry_id,
                        previous.offset
                    )));
                }
            }
            if block.offset >= data_object_len {
                return Err(bad(format!(
                    "block {i} starts at {}, past the data object's {data_object_len} bytes",
                    block.offset
                )));
            }
            blocks.push(block);
        }
        Ok(Self {
            data_object_len,
            data_header_len,
            metadata,
            blocks,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let metadata = prost::Message::encode_to_vec(&self.metadata);
        let len = 32 + metadata.len() + self.blocks.len() * 20;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&INDEX_MAGIC.to_be_bytes());
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&self.data_object_len.to_be_bytes());
        out.extend_from_slice(&self.data_header_len.to_be_bytes());
        out.extend_from_slice(&(self.blocks.len() as u32).to_be_bytes());
        out.extend_from_slice(&(metadata.len() as u32).to_be_bytes());
        out.extend_from_slice(&metadata);
        for block in &self.blocks {
            out.extend_from_slice(&block.first_entry_id.to_be_bytes());
            out.extend_from_slice(&block.part.to_be_bytes());
            out.extend_from_slice(&block.offset.to_be_bytes());
        }
        out
    }

    /// The last entry id of the ledger (`None`: an empty ledger).
    pub fn last_entry_id(&self) -> Option<u64> {
        self.metadata
            .last_entry_id
            .filter(|id| *id >= 0)
            .map(|id| id as u64)
    }

    /// Block `i`'s byte range in the data object and the entry ids it holds.
    pub fn block_span(
        &self,
        i: usize,
    ) -> Option<(std::ops::Range<u64>, std::ops::RangeInclusive<u64>)> {
        let block = self.blocks.get(i)?;
        let (end, last) = match self.blocks.get(i + 1) {
            Some(next) => (next.offset, next.first_entry_id.checked_sub(1)?),
            None => (self.data_object_len, self.last_entry_id()?),
        };
        (block.offset < end && block.first_entry_id <= last)
            .then_some((block.offset..end, block.first_entry_id..=last))
    }
}

/// What an object's key says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectName {
    Data { uuid: String, ledger: u64 },
    Index { uuid: String, ledger: u64 },
}

impl ObjectName {
    /// `{uuid}-ledger-{id}` or `{uuid}-ledger-{id}-index` (after any key prefix); else `None`.
    pub fn parse(key: &str) -> Option<Self> {
        let name = key.rsplit('/').next()?;
        let (uuid, rest) = name.split_at_checked(36)?;
        if uuid::Uuid::parse_str(uuid).is_err() {
            return None;
        }
        let rest = rest.strip_prefix("-ledger-")?;
        let (digits, index) = match rest.strip_suffix("-index") {
            Some(digits) => (digits, true),
            None => (rest, false),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let ledger = digits.parse().ok()?;
        let uuid = uuid.to_string();
        Some(if index {
            ObjectName::Index { uuid, ledger }
        } else {
            ObjectName::Data { uuid, ledger }
        })
    }
}
