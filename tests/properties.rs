//! Property tests: the decoders of everything tierfs reads back (index records, index objects,
//! manifests, properties files, names, disk cache blocks) never panic on any input, and what
//! they encode they decode.

use proptest::prelude::*;
use tierfs::catalog::format::{Checkpoint, Head, JournalRecord, decode};
use tierfs::config::{Config, Properties};
use tierfs::name::{NameKind, NamespaceName, TopicName, validate};
use tierfs::offload::IndexObject;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn index_objects_decode_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = IndexObject::decode(&bytes);
    }

    #[test]
    fn index_objects_round_trip(
        block in 1u32..5000,
        sizes in proptest::collection::vec(1u64..10_000, 1..40),
        flip in any::<prop::sample::Index>(),
        head_size in prop_oneof![Just(0u32), 1u32..5000],
    ) {
        let mut ends = Vec::new();
        let mut end = 0;
        for s in &sizes {
            end += s;
            ends.push(end);
        }
        let blocks = end.div_ceil(u64::from(block)) as usize;
        let index = IndexObject {
            segment: 7,
            size: end,
            block_size: block,
            segment_crc32c: 1,
            entry_ends: ends,
            block_crcs: (0..blocks as u32).collect(),
            head_size,
            head_crcs: if head_size > 0 { (100..100 + blocks as u32).collect() } else { Vec::new() },
        };
        let encoded = index.encode();
        prop_assert_eq!(IndexObject::decode(&encoded).unwrap(), index);
        let mut damaged = encoded.clone();
        let at = flip.index(damaged.len());
        damaged[at] ^= 0x10;
        prop_assert!(IndexObject::decode(&damaged).is_err());
    }

    #[test]
    fn pulsar_blocks_and_indexes_decode_without_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..400), first in 0u64..4, last in 0u64..8) {
        let _ = tierfs::pulsar::offload_format::LedgerIndex::decode(&bytes);
        let _ = tierfs::pulsar::offload_format::entries_of_block(&bytes, first, last);
        let _ = tierfs::pulsar::offload_format::BlockHeader::decode(&bytes);
        let _ = tierfs::pulsar::entry::messages(&bytes);
        let _ = tierfs::pulsar::entry::checksum(&bytes);
    }

    #[test]
    fn catalog_objects_decode_without_panicking(text in "(?s).{0,300}") {
        let _ = decode::<Head>("head", text.as_bytes());
        let _ = decode::<JournalRecord>("journal", text.as_bytes());
        let _ = decode::<Checkpoint>("checkpoint", text.as_bytes());
    }

    #[test]
    fn catalog_records_with_any_values_decode_or_are_refused(
        format in 0u32..4, seq in any::<u64>(), op in prop::sample::select(vec![
            "offloaded", "segment_deleted", "policy", "unknown"]), topic in "[a-z/]{0,12}") {
        let text = format!(
            r#"{{"format":{format},"seq":{seq},"time_ms":0,"changes":[{{"op":"{op}","topic":"{topic}","id":1,"namespace":"{topic}","policy":null}}]}}"#
        );
        let _ = decode::<JournalRecord>("journal", text.as_bytes());
    }

    #[test]
    fn properties_and_config_never_panic(text in "(?s).{0,400}") {
        let props = Properties::parse(&text);
        let _ = Config::from_properties(&props, "fuzz.conf");
    }

    #[test]
    fn config_values_never_panic(key in prop::sample::select(vec![
        "managedLedgerMaxEntriesPerLedger", "managedLedgerMinLedgerRolloverTimeMinutes",
        "managedLedgerMaxLedgerRolloverTimeMinutes", "managedLedgerMaxSizePerLedgerMbytes",
        "managedLedgerOffloadDriver", "managedLedgerOffloadMaxBlockSizeInBytes",
        "managedLedgerOffloadReadBufferSizeInBytes", "managedLedgerOffloadDeletionLagMs",
        "managedLedgerDataReadPriority", "fileSystemURI", "managedLedgerOffloadMaxThreads",
    ]), value in ".{0,40}") {
        let props = Properties::parse(&format!("{key}={value}\n"));
        let _ = Config::from_properties(&props, "fuzz.conf");
    }

    #[test]
    fn names_never_panic_and_valid_ones_parse(input in ".{0,300}", name in "[A-Za-z0-9_=:.-]{1,50}") {
        let _ = TopicName::parse(&input);
        let _ = NamespaceName::parse(&input);
        let _ = validate(NameKind::Topic, &input);
        prop_assume!(name != "." && name != "..");
        let topic = TopicName::new(&name, &name, &name).unwrap();
        prop_assert_eq!(TopicName::parse(&topic.persistent()).unwrap(), topic);
    }
}
