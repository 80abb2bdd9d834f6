//! The index object written beside each offloaded segment.
//!
//! It lets a reader that has only the bucket find entries and verify every block it fetches.
//! Format, versions 1 and 2, little-endian:
//!
//! ```text
//! magic "TFSOIDX1" | version u32 | segment id u64 | entries u64 | size u64 | block size u32
//! | block count u32 | segment CRC32C u32
//! | head size u32                            (version 2 only)
//! | entry end offsets   u64 × entries
//! | block CRC32Cs       u32 × block count   (block i covers [i·block size, (i+1)·block size))
//! | head CRC32Cs        u32 × block count   (version 2 only: the first head size bytes of
//! |                                           block i, or all of it when shorter)
//! | CRC32C of everything above   u32
//! ```
//!
//! The head checksums let a reader check the first [`HEAD_BYTES`] of a block on their own: the
//! first read of a segment is answered from a small GET of the head while the whole block is
//! still coming, instead of after it. Writers write version 2; version 1 objects (written by
//! tierfs before it) are read as having no heads.
//!
//! Decoding checks every length and the trailing checksum; it never panics on bad input.

const MAGIC: &[u8; 8] = b"TFSOIDX1";
const VERSION_WITHOUT_HEADS: u32 = 1;
const VERSION: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 8 + 4 + 4 + 4;
/// The head of a block whose checksum version 2 records: what the kernel's first reads of a
/// file ask for (16, 32 and 64 KiB as its read-ahead ramps up), in one small GET.
pub const HEAD_BYTES: u32 = 128 * 1024;

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
    /// Bytes at the start of each block that `head_crcs` cover; 0 when the object has none.
    pub head_size: u32,
    /// CRC32C of each block's first `head_size` bytes (empty when `head_size` is 0).
    pub head_crcs: Vec<u32>,
}

impl IndexObject {
    pub fn encode(&self) -> Vec<u8> {
        let heads = self.head_size > 0;
        let mut out = Vec::with_capacity(
            HEADER_LEN
                + 4
                + self.entry_ends.len() * 8
                + (self.block_crcs.len() + self.head_crcs.len()) * 4
                + 4,
        );
        out.extend_from_slice(MAGIC);
        let version = if heads {
            VERSION
        } else {
            VERSION_WITHOUT_HEADS
        };
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&self.segment.to_le_bytes());
        out.extend_from_slice(&(self.entry_ends.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.block_size.to_le_bytes());
        out.extend_from_slice(&(self.block_crcs.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.segment_crc32c.to_le_bytes());
        if heads {
            out.extend_from_slice(&self.head_size.to_le_bytes());
        }
        for end in &self.entry_ends {
            out.extend_from_slice(&end.to_le_bytes());
        }
        for crc in self
            .block_crcs
            .iter()
            .chain(heads.then_some(&self.head_crcs).into_iter().flatten())
        {
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
        if version != VERSION && version != VERSION_WITHOUT_HEADS {
            return Err(format!("index object version {version} is not supported"));
        }
        let heads = version == VERSION;
        let segment = u64_at(12);
        let entries = u64_at(20);
        let size = u64_at(28);
        let block_size = u32_at(36);
        let blocks = u32_at(40) as u64;
        let segment_crc32c = u32_at(44);
        let header = HEADER_LEN + if heads { 4 } else { 0 };
        if body.len() < header {
            return Err(format!("index object is {} bytes, too short", bytes.len()));
        }
        let head_size = if heads { u32_at(HEADER_LEN) } else { 0 };
        if heads && head_size == 0 {
            return Err("index object version 2 has a head size of 0".to_string());
        }
        let crc_lists = if heads { 2 } else { 1 };
        let expected = (header as u64)
            .checked_add(entries.checked_mul(8).ok_or("entry count overflows")?)
            .and_then(|n| n.checked_add(blocks * 4 * crc_lists))
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
        let mut at = header;
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
        at += blocks as usize * 4;
        let head_crcs = if heads {
            (0..blocks).map(|i| u32_at(at + i as usize * 4)).collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            segment,
            size,
            block_size,
            segment_crc32c,
            entry_ends,
            block_crcs,
            head_size,
            head_crcs,
        })
    }

    /// The CRC32C that the first `len` bytes of block `i` must have, when the object records
    /// one for exactly that many: its head (or the whole block when it is that short).
    pub fn head_crc(&self, i: u64, len: u64) -> Option<u32> {
        let block_len = self
            .size
            .checked_sub(i * u64::from(self.block_size))?
            .min(u64::from(self.block_size));
        if len == block_len {
            return self.block_crcs.get(i as usize).copied();
        }
        if self.head_size > 0 && len == u64::from(self.head_size) && len < block_len {
            return self.head_crcs.get(i as usize).copied();
        }
        None
    }
}

/// The checksums of a run of blocks: each block's CRC32C and its head's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BlockSums {
    pub blocks: Vec<u32>,
    pub heads: Vec<u32>,
}

impl BlockSums {
    /// The checksums of each `block_size` block of `data` and of its first [`HEAD_BYTES`], in
    /// one pass (a block's CRC32C continues its head's).
    pub fn of(data: &[u8], block_size: usize) -> Self {
        let mut sums = Self::default();
        for block in data.chunks(block_size.max(1)) {
            let (head, rest) = block.split_at(block.len().min(HEAD_BYTES as usize));
            let head_crc = crc32c::crc32c(head);
            sums.heads.push(head_crc);
            sums.blocks.push(crc32c::crc32c_append(head_crc, rest));
        }
        sums
    }

    pub fn extend(&mut self, other: &BlockSums) {
        self.blocks.extend_from_slice(&other.blocks);
        self.heads.extend_from_slice(&other.heads);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: usize = HEAD_BYTES as usize * 2;

    fn data() -> Vec<u8> {
        (0..BLOCK * 2 + 1000).map(|i| (i % 253) as u8).collect()
    }

    fn sample() -> IndexObject {
        let data = data();
        let sums = BlockSums::of(&data, BLOCK);
        IndexObject {
            segment: 7,
            size: data.len() as u64,
            block_size: BLOCK as u32,
            segment_crc32c: crc32c::crc32c(&data),
            entry_ends: vec![100, 1000, data.len() as u64],
            block_crcs: sums.blocks,
            head_size: HEAD_BYTES,
            head_crcs: sums.heads,
        }
    }

    #[test]
    fn round_trips_with_and_without_heads() {
        let index = sample();
        assert_eq!(index.block_crcs.len(), 3);
        assert_eq!(IndexObject::decode(&index.encode()).unwrap(), index);
        let v1 = IndexObject {
            head_size: 0,
            head_crcs: Vec::new(),
            ..sample()
        };
        let bytes = v1.encode();
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1);
        assert_eq!(IndexObject::decode(&bytes).unwrap(), v1);
    }

    #[test]
    fn block_and_head_checksums_match_the_bytes_they_cover() {
        let (data, index) = (data(), sample());
        for i in 0..3u64 {
            let start = i as usize * BLOCK;
            let block = &data[start..(start + BLOCK).min(data.len())];
            assert_eq!(index.block_crcs[i as usize], crc32c::crc32c(block));
            assert_eq!(
                index.head_crc(i, block.len() as u64),
                Some(crc32c::crc32c(block))
            );
        }
        let head = &data[BLOCK..BLOCK + HEAD_BYTES as usize];
        assert_eq!(
            index.head_crc(1, u64::from(HEAD_BYTES)),
            Some(crc32c::crc32c(head))
        );
        // The last block (1000 bytes) is shorter than a head: only its whole length is known.
        assert_eq!(index.head_crc(2, u64::from(HEAD_BYTES)), None);
        assert_eq!(index.head_crc(0, 4096), None);
        assert_eq!(index.head_crc(3, 1), None);
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
