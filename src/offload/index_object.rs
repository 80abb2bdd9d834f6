//! The index object written beside each offloaded segment.
//!
//! It lets a reader that has only the bucket find entries and verify every block it fetches.
//! Format, version 1, little-endian:
//!
//! ```text
//! magic "TFSOIDX1" | version u32 | segment id u64 | entries u64 | size u64 | block size u32
//! | block count u32 | segment CRC32C u32
//! | entry end offsets   u64 × entries
//! | block CRC32Cs       u32 × block count   (block i covers [i·block size, (i+1)·block size))
//! | CRC32C of everything above   u32
//! ```
//!
//! Decoding checks every length and the trailing checksum; it never panics on bad input.

const MAGIC: &[u8; 8] = b"TFSOIDX1";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 8 + 4 + 4 + 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexObject {
    pub segment: u64,
    pub size: u64,
    pub block_size: u32,
    pub segment_crc32c: u32,
    /// End offset of each entry.
    pub entry_ends: Vec<u64>,
    /// CRC32C of each block.
    pub block_crcs: Vec<u32>,
}

impl IndexObject {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER_LEN + self.entry_ends.len() * 8 + self.block_crcs.len() * 4 + 4,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.segment.to_le_bytes());
        out.extend_from_slice(&(self.entry_ends.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.block_size.to_le_bytes());
        out.extend_from_slice(&(self.block_crcs.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.segment_crc32c.to_le_bytes());
        for end in &self.entry_ends {
            out.extend_from_slice(&end.to_le_bytes());
        }
        for crc in &self.block_crcs {
            out.extend_from_slice(&crc.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < HEADER_LEN + 4 {
            return Err(format!("index object is {} bytes, too short", bytes.len()));
        }
        let (body, trailer) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
        if crc32c::crc32c(body) != stored {
            return Err("index object fails its checksum".to_string());
        }
        if &body[..8] != MAGIC {
            return Err("not a tierfs index object (bad magic)".to_string());
        }
        let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(format!("index object version {version} is not supported"));
        }
        let segment = u64_at(12);
        let entries = u64_at(20);
        let size = u64_at(28);
        let block_size = u32_at(36);
        let blocks = u32_at(40) as u64;
        let segment_crc32c = u32_at(44);
        let expected = (HEADER_LEN as u64)
            .checked_add(entries.checked_mul(8).ok_or("entry count overflows")?)
            .and_then(|n| n.checked_add(blocks * 4))
            .ok_or("index object lengths overflow")?;
        if expected != body.len() as u64 {
            return Err(format!(
                "index object body is {} bytes, its header says {expected}",
                body.len()
            ));
        }
        if block_size == 0 || blocks != size.div_ceil(u64::from(block_size)) {
            return Err(format!(
                "index object has {blocks} blocks of {block_size} bytes for {size} bytes"
            ));
        }
        let mut at = HEADER_LEN;
        let mut entry_ends = Vec::with_capacity(entries as usize);
        let mut previous = 0;
        for _ in 0..entries {
            let end = u64_at(at);
            if end <= previous || end > size {
                return Err(format!(
                    "entry end {end} is out of order or past the segment's {size} bytes"
                ));
            }
            previous = end;
            entry_ends.push(end);
            at += 8;
        }
        let block_crcs = (0..blocks).map(|i| u32_at(at + i as usize * 4)).collect();
        Ok(Self {
            segment,
            size,
            block_size,
            segment_crc32c,
            entry_ends,
            block_crcs,
        })
    }
}

/// CRC32C of each `block_size` block of `data`.
pub fn block_crcs(data: &[u8], block_size: usize) -> Vec<u32> {
    data.chunks(block_size).map(crc32c::crc32c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IndexObject {
        let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        IndexObject {
            segment: 7,
            size: 2500,
            block_size: 1024,
            segment_crc32c: crc32c::crc32c(&data),
            entry_ends: vec![100, 1000, 2500],
            block_crcs: block_crcs(&data, 1024),
        }
    }

    #[test]
    fn round_trips() {
        let index = sample();
        assert_eq!(index.block_crcs.len(), 3);
        assert_eq!(IndexObject::decode(&index.encode()).unwrap(), index);
    }

    #[test]
    fn every_truncation_and_flip_is_refused_without_panic() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(
                IndexObject::decode(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(IndexObject::decode(&bad).is_err(), "flip at {at}");
        }
    }
}
