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
//! record that is torn, fails its checksum or goes backwards: that is the recovery point.
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
