//! The entry index of a segment: where each entry ends, and its checksum.
//!
//! On-disk format, version 1, little-endian:
//!
//! ```text
//! header  (16 bytes): magic "TFSEGIDX" | version u32 | reserved u32
//! record  (16 bytes): entry end offset u64 | CRC32C of the entry u32 | CRC32C of the first 12 bytes u32
//! ```
//!
//! Entry `i` spans `[end(i-1), end(i))` of the segment's data file (entry 0 starts at 0); entries
//! are never empty, so ends strictly increase. A
//! record is appended after its entry's bytes are in the data file, so a record that exists and
//! passes its own checksum describes an entry whose write completed. Decoding stops at the first
//! record that is torn, fails its checksum or goes backwards: that is the recovery point, as
//! long as nothing after it is an intact record. An intact record after a bad one is damage in
//! the middle of the file, not a torn tail: cutting there would drop entries whose writes
//! returned, so the decoders that recovery and offload use refuse it instead.
//! This module owns the encoding alone; files are `segment`'s business.

pub const HEADER_LEN: u64 = 16;
pub const RECORD_LEN: u64 = 16;
const MAGIC: &[u8; 8] = b"TFSEGIDX";
const VERSION: u32 = 1;

/// The header every index file starts with.
pub fn header() -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out
}

/// Checks an index file's header; the error says what is wrong with it.
pub fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < HEADER_LEN as usize {
        return Err(format!(
            "index header is {} bytes, expected {HEADER_LEN}",
            bytes.len()
        ));
    }
    if &bytes[..8] != MAGIC {
        return Err("index file does not start with the tierfs index magic".to_string());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!(
            "index format version {version} is not supported (this tierfs reads version {VERSION})"
        ));
    }
    Ok(())
}

/// One entry's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRecord {
    /// Offset just past the entry's last byte in the data file.
    pub end: u64,
    /// CRC32C of the entry's bytes.
    pub crc: u32,
}

impl IndexRecord {
    pub fn encode(&self) -> [u8; RECORD_LEN as usize] {
        let mut out = [0u8; RECORD_LEN as usize];
        out[..8].copy_from_slice(&self.end.to_le_bytes());
        out[8..12].copy_from_slice(&self.crc.to_le_bytes());
        let own = crc32c::crc32c(&out[..12]);
        out[12..].copy_from_slice(&own.to_le_bytes());
        out
    }

    /// Decodes one record; `None` when its own checksum does not match.
    pub fn decode(bytes: &[u8; RECORD_LEN as usize]) -> Option<Self> {
        let own = u32::from_le_bytes(bytes[12..].try_into().expect("4 bytes"));
        if crc32c::crc32c(&bytes[..12]) != own {
            return None;
        }
        Some(Self {
            end: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
            crc: u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")),
        })
    }
}

/// Decodes the records that follow the header, stopping at the first bad one.
pub fn decode_records(body: &[u8]) -> Vec<IndexRecord> {
    let mut records = Vec::with_capacity(body.len() / RECORD_LEN as usize);
    let mut previous_end = 0u64;
    for chunk in body.chunks_exact(RECORD_LEN as usize) {
        let Some(record) = IndexRecord::decode(chunk.try_into().expect("chunk of RECORD_LEN"))
        else {
            break;
        };
        if record.end <= previous_end {
            break;
        }
        previous_end = record.end;
        records.push(record);
    }
    records
}

/// The records of an active segment's index, up to a torn tail: an `Err` says why the file is
/// damaged before its end (a bad record followed by intact ones), which no crash produces.
pub fn decode_up_to_torn_tail(body: &[u8]) -> Result<Vec<IndexRecord>, String> {
    let records = decode_records(body);
    let bad = records.len();
    let later_intact = body
        .chunks_exact(RECORD_LEN as usize)
        .skip(bad + 1)
        .filter(|chunk| {
            IndexRecord::decode((*chunk).try_into().expect("chunk of RECORD_LEN")).is_some()
        })
        .count();
    if later_intact > 0 {
        return Err(format!(
            "index record {} (entry {bad}) is damaged but {later_intact} intact record(s) follow it: \
             this is damage inside the file, not a torn tail, and cutting the log there would drop \
             acknowledged entries",
            bad + 1
        ));
    }
    Ok(records)
}

/// The records of a sealed segment's index, which must all be intact: `entries` is the count
/// the manifest holds for the segment.
pub fn decode_complete(body: &[u8], entries: u64) -> Result<Vec<IndexRecord>, String> {
    let records = decode_records(body);
    let stored = body.len() as u64 / RECORD_LEN;
    if records.len() as u64 != entries || stored != entries || body.len() as u64 % RECORD_LEN != 0 {
        return Err(format!(
            "the manifest records {entries} entries; the index holds {stored} record(s) \
             ({} byte(s) over), of which the first {} are intact and in order",
            body.len() as u64 % RECORD_LEN,
            records.len()
        ));
    }
    Ok(records)
}

/// CRC32C of a whole segment, derived from its entries' checksums without reading the data.
pub fn segment_crc(records: &[IndexRecord]) -> u32 {
    let mut crc = 0u32;
    let mut start = 0u64;
    for record in records {
        crc = crc32c::crc32c_combine(crc, record.crc, (record.end - start) as usize);
        start = record.end;
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records_for(entries: &[&[u8]]) -> Vec<IndexRecord> {
        let mut end = 0;
        entries
            .iter()
            .map(|e| {
                end += e.len() as u64;
                IndexRecord {
                    end,
                    crc: crc32c::crc32c(e),
                }
            })
            .collect()
    }

    #[test]
    fn round_trips_and_stops_at_damage() {
        let records = records_for(&[b"hello", b"world!", b"x"]);
        let mut body: Vec<u8> = records.iter().flat_map(|r| r.encode()).collect();
        assert_eq!(decode_records(&body), records);
        body.extend_from_slice(&[1, 2, 3]); // torn tail
        assert_eq!(decode_records(&body), records);
        body[20] ^= 0xff; // damage the second record
        assert_eq!(decode_records(&body), records[..1]);
    }

    #[test]
    fn damage_inside_the_file_is_not_a_torn_tail() {
        let records = records_for(&[b"a", b"bb", b"ccc", b"dddd"]);
        let mut body: Vec<u8> = records.iter().flat_map(|r| r.encode()).collect();
        body.extend_from_slice(&[0u8; 40]); // zeroed pages past the end: a torn tail
        assert_eq!(decode_up_to_torn_tail(&body), Ok(records.clone()));
        body[(RECORD_LEN + 3) as usize] ^= 0x10; // one bit of the second record
        let err = decode_up_to_torn_tail(&body).unwrap_err();
        assert!(
            err.contains("record 2 (entry 1)") && err.contains("2 intact"),
            "{err}"
        );
        let last = (3 * RECORD_LEN) as usize;
        let mut torn: Vec<u8> = records.iter().flat_map(|r| r.encode()).collect();
        torn[last + 2] ^= 0x01; // the last record torn
        assert_eq!(decode_up_to_torn_tail(&torn), Ok(records[..3].to_vec()));
    }

    #[test]
    fn a_sealed_index_must_be_whole() {
        let records = records_for(&[b"a", b"bb", b"ccc"]);
        let body: Vec<u8> = records.iter().flat_map(|r| r.encode()).collect();
        assert_eq!(decode_complete(&body, 3), Ok(records.clone()));
        assert!(
            decode_complete(&body, 4)
                .unwrap_err()
                .contains("records 4 entries")
        );
        let mut damaged = body.clone();
        damaged[(2 * RECORD_LEN) as usize] ^= 0x01;
        assert!(
            decode_complete(&damaged, 3)
                .unwrap_err()
                .contains("first 2 are intact")
        );
        let mut long = body;
        long.push(0);
        assert!(decode_complete(&long, 3).is_err());
    }

    #[test]
    fn refuses_records_that_go_backwards() {
        let a = IndexRecord { end: 10, crc: 1 };
        let b = IndexRecord { end: 5, crc: 2 };
        let body: Vec<u8> = [a, b].iter().flat_map(|r| r.encode()).collect();
        assert_eq!(decode_records(&body), vec![a]);
    }

    #[test]
    fn segment_crc_equals_crc_of_all_bytes() {
        let entries: [&[u8]; 3] = [b"alpha", b"", b"gamma delta"];
        let all: Vec<u8> = entries.concat();
        assert_eq!(segment_crc(&records_for(&entries)), crc32c::crc32c(&all));
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let records = decode_records(&bytes);
            proptest::prop_assert!(records.windows(2).all(|w| w[0].end < w[1].end));
            let _ = decode_up_to_torn_tail(&bytes);
            let _ = decode_complete(&bytes, records.len() as u64);
            let _ = check_header(&bytes);
        }
    }

    #[test]
    fn header_checks() {
        assert_eq!(check_header(&header()), Ok(()));
        assert!(check_header(b"short").is_err());
        let mut wrong = header();
        wrong[8] = 9;
        assert!(check_header(&wrong).unwrap_err().contains("version 9"));
    }
}
