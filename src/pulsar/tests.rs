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
fn a_block_fed_in_pieces_walks_as_the_whole_block_does() {
    let entries = entries();
    let ledger = write_ledger(&entries, 2048, None, 0).unwrap();
    let index = LedgerIndex::decode(&ledger.index).unwrap();
    for (i, block) in ledger.parts.iter().enumerate() {
        let (_, ids) = index.block_span(i).unwrap();
        let whole = entries_of_block(block, *ids.start(), *ids.end()).unwrap();
        for piece in [1, 5, 12, 13, 100, 4096] {
            let mut walker = BlockWalker::new(block.len() as u64, *ids.start(), *ids.end());
            let mut seen = Vec::new();
            for bytes in block.chunks(piece) {
                walker
                    .feed(bytes, |e, payload| {
                        assert_eq!(
                            payload,
                            &block[e.offset as usize..(e.offset + e.len) as usize]
                        );
                        seen.push(e);
                    })
                    .unwrap();
            }
            walker.finish().unwrap();
            assert_eq!(seen, whole, "block {i} in pieces of {piece}");
        }
        // Cut short: refused at the end, whatever was fed.
        let mut walker = BlockWalker::new(block.len() as u64, *ids.start(), *ids.end());
        walker.feed(&block[..block.len() - 1], |_, _| {}).unwrap();
        assert!(walker.finish().is_err());
    }
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

mod entries {
    use crate::pulsar::entry::{Checksum, checksum, messages};
    use crate::pulsar::proto::{
        BrokerEntryMetadata, KeyValue, MessageMetadata, SingleMessageMetadata,
    };

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }

    fn metadata() -> MessageMetadata {
        MessageMetadata {
            producer_name: "producer-1".into(),
            sequence_id: 10,
            publish_time: 1_764_000_000_000,
            properties: vec![kv("a", "1")],
            partition_key: Some("key-1".into()),
            ..Default::default()
        }
    }

    use crate::pulsar::writer::{compress, frame};

    fn batch(bodies: &[&[u8]]) -> Vec<u8> {
        let messages: Vec<(SingleMessageMetadata, &[u8])> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let single = SingleMessageMetadata {
                    properties: vec![kv("i", &i.to_string())],
                    partition_key: Some(format!("k{i}")),
                    payload_size: body.len() as i32,
                    event_time: Some(5),
                    sequence_id: Some(100 + i as u64),
                };
                (single, *body)
            })
            .collect();
        crate::pulsar::writer::batch(&messages)
    }

    #[test]
    fn a_plain_message_with_checksum_key_and_properties() {
        let entry = frame(&metadata(), b"hello", true, None);
        assert_eq!(checksum(&entry).unwrap(), Checksum::Good);
        let decoded = messages(&entry).unwrap();
        assert_eq!(decoded.len(), 1);
        let m = &decoded[0];
        assert_eq!(m.batch_index, -1);
        assert_eq!(m.producer, "producer-1");
        assert_eq!(m.sequence_id, 10);
        assert_eq!(m.key.as_deref(), Some("key-1"));
        assert_eq!(m.properties["a"], "1");
        assert_eq!(m.payload, b"hello");
        assert_eq!((m.event_time, m.broker_timestamp), (0, None));
        let mut flipped = entry.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(checksum(&flipped).unwrap(), Checksum::Bad { .. }));
        let plain = frame(&metadata(), b"hello", false, None);
        assert_eq!(checksum(&plain).unwrap(), Checksum::Absent);
    }

    #[test]
    fn batches_in_every_codec_split_into_their_messages() {
        let bodies: [&[u8]; 3] = [b"first", b"", &[0xff, 0x00, 0x80]];
        let raw = batch(&bodies);
        for codec in 0..=4 {
            let meta = MessageMetadata {
                compression: Some(codec),
                uncompressed_size: Some(raw.len() as u32),
                num_messages_in_batch: Some(3),
                ..metadata()
            };
            let entry = frame(
                &meta,
                &compress(codec, &raw).unwrap(),
                true,
                Some(BrokerEntryMetadata {
                    broker_timestamp: Some(77),
                    index: Some(9),
                }),
            );
            let decoded = messages(&entry).unwrap_or_else(|e| panic!("codec {codec}: {e}"));
            assert_eq!(decoded.len(), 3, "codec {codec}");
            for (i, m) in decoded.iter().enumerate() {
                assert_eq!(m.batch_index, i as i32);
                assert_eq!(m.payload, bodies[i]);
                assert_eq!(m.sequence_id, 100 + i as u64);
                assert_eq!(m.key.as_deref(), Some(format!("k{i}").as_str()));
                assert_eq!(m.properties["i"], i.to_string());
                assert_eq!(m.event_time, 5);
                assert_eq!((m.broker_timestamp, m.broker_index), (Some(77), Some(9)));
            }
        }
    }

    #[test]
    fn messages_print_as_one_json_line_each() {
        let entry = frame(
            &metadata(),
            b"hello",
            false,
            Some(BrokerEntryMetadata {
                broker_timestamp: Some(1),
                index: Some(2),
            }),
        );
        let m = &messages(&entry).unwrap()[0];
        let line = crate::pulsar::entry::json_line(7, 3, m);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["ledger"], 7);
        assert_eq!(value["entry"], 3);
        assert_eq!(value["batch_index"], -1);
        assert_eq!(value["producer"], "producer-1");
        assert_eq!(value["key"], "key-1");
        assert_eq!(value["properties"]["a"], "1");
        assert_eq!(value["payload"], "hello");
        assert_eq!(value["broker_timestamp"], 1);
        assert_eq!(value["broker_index"], 2);
        assert!(!line.contains('\n'));
        let binary = frame(
            &MessageMetadata {
                partition_key: None,
                ..metadata()
            },
            &[0xff, 0xfe],
            false,
            None,
        );
        let value: serde_json::Value = serde_json::from_str(&crate::pulsar::entry::json_line(
            7,
            4,
            &messages(&binary).unwrap()[0],
        ))
        .unwrap();
        assert_eq!(value["payload_base64"], "//4=");
        assert!(value["key"].is_null());
        assert!(value.get("payload").is_none() && value.get("broker_index").is_none());
    }

    #[test]
    fn malformed_entries_are_errors_never_panics() {
        let raw = batch(&[b"abc", b"defg"]);
        let meta = MessageMetadata {
            compression: Some(1),
            uncompressed_size: Some(raw.len() as u32),
            num_messages_in_batch: Some(2),
            ..metadata()
        };
        let entry = frame(&meta, &compress(1, &raw).unwrap(), true, None);
        for len in 0..entry.len() {
            let _ = messages(&entry[..len]);
        }
        for at in 0..entry.len() {
            let mut bad = entry.clone();
            bad[at] ^= 0x5a;
            let _ = messages(&bad);
        }
        let lying = MessageMetadata {
            uncompressed_size: Some(raw.len() as u32 + 1),
            ..meta.clone()
        };
        let err = messages(&frame(&lying, &compress(1, &raw).unwrap(), false, None)).unwrap_err();
        assert!(err.to_string().contains("LZ4 payload"), "{err}");
        let unknown = MessageMetadata {
            compression: Some(9),
            ..meta
        };
        let err = messages(&frame(&unknown, b"x", false, None)).unwrap_err();
        assert!(
            err.to_string().contains("unknown compression type 9"),
            "{err}"
        );
    }
}
