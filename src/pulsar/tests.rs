//! Pulsar's offload format: what our writer lays out, the decoders read back exactly; every
//! truncation and every flipped byte of an index object is refused without a panic; damaged
//! blocks are refused naming what is wrong.

use super::offload_format::*;
use super::writer::write_ledger;

fn entries() -> Vec<Vec<u8>> {
    (0..40u32)
        .map(|i| (0..(i * 37 % 300 + 1)).map(|b| (b ^ i) as u8).collect())
        .collect()
}

#[test]
fn a_written_ledger_reads_back_entry_for_entry() {
    let entries = entries();
    let ledger = write_ledger(&entries, 1024, Some("public/default/persistent/t"), 7).unwrap();
    let index = LedgerIndex::decode(&ledger.index).unwrap();
    assert_eq!(index.blocks.len(), ledger.parts.len());
    assert!(ledger.parts.len() > 3, "the entries span several blocks");
    assert_eq!(index.last_entry_id(), Some(39));
    assert_eq!(
        index.metadata.custom("pulsar/managed-ledger").as_deref(),
        Some("public/default/persistent/t")
    );
    let data = ledger.data();
    assert_eq!(index.data_object_len, data.len() as u64);
    let mut read = Vec::new();
    for i in 0..index.blocks.len() {
        let (range, ids) = index.block_span(i).unwrap();
        let block = &data[range.start as usize..range.end as usize];
        for e in entries_of_block(block, *ids.start(), *ids.end()).unwrap() {
            read.push(block[e.offset as usize..(e.offset + e.len) as usize].to_vec());
        }
        if i + 1 < index.blocks.len() {
            assert_eq!(
                range.end - range.start,
                1024,
                "full blocks are the block size"
            );
        }
    }
    assert_eq!(read, entries);
    assert_eq!(
        index.metadata.length,
        Some(entries.iter().map(|e| e.len() as i64).sum())
    );
}

#[test]
fn damaged_blocks_are_refused_naming_the_fault() {
    let entries = entries();
    let ledger = write_ledger(&entries, 1024, None, 0).unwrap();
    let index = LedgerIndex::decode(&ledger.index).unwrap();
    let (_, ids) = index.block_span(0).unwrap();
    let block = ledger.parts[0].clone();
    let check = |bytes: &[u8]| entries_of_block(bytes, *ids.start(), *ids.end());
    assert!(check(&block).is_ok());
    let mut magic = block.clone();
    magic[0] ^= 1;
    assert!(check(&magic).unwrap_err().to_string().contains("magic"));
    let mut id = block.clone();
    id[128 + 11] ^= 1; // the first record's entry id
    assert!(
        check(&id)
            .unwrap_err()
            .to_string()
            .contains("entry 0 was expected")
    );
    let mut padding = block.clone();
    let last = padding.len() - 1;
    padding[last] ^= 1;
    assert!(check(&padding).unwrap_err().to_string().contains("padding"));
    assert!(check(&block[..block.len() - 1]).is_err());
    assert!(entries_of_block(&block, 1, *ids.end()).is_err());
}

#[test]
fn every_truncation_and_flip_of_an_index_is_refused_or_decoded_without_panic() {
    let ledger = write_ledger(&entries(), 1024, Some("a/b/persistent/c"), 0).unwrap();
    for len in 0..ledger.index.len() {
        assert!(
            LedgerIndex::decode(&ledger.index[..len]).is_err(),
            "cut at {len}"
        );
    }
    for at in 0..ledger.index.len() {
        let mut bad = ledger.index.clone();
        bad[at] ^= 0x41;
        let _ = LedgerIndex::decode(&bad);
    }
}

#[test]
fn object_names_follow_pulsars_keys() {
    let uuid = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";
    assert_eq!(
        ObjectName::parse(&format!("{uuid}-ledger-42")),
        Some(ObjectName::Data {
            uuid: uuid.into(),
            ledger: 42
        })
    );
    assert_eq!(
        ObjectName::parse(&format!("prefix/{uuid}-ledger-42-index")),
        Some(ObjectName::Index {
            uuid: uuid.into(),
            ledger: 42
        })
    );
    for other in [
        format!("{uuid}-ledger-"),
        format!("{uuid}-ledger-4x"),
        format!("{uuid}-index"),
        "not-a-uuid-at-all-but-36-characters-ledger-1".to_string(),
        uuid.to_string(),
    ] {
        assert_eq!(ObjectName::parse(&other), None, "{other}");
    }
}

#[test]
fn an_entry_larger_than_a_block_is_refused() {
    let err = write_ledger(&[vec![0; 2000]], 1024, None, 0).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}
