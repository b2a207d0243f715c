//! Random and damaged bytes through the decoders recovery runs on disk contents: records (and
//! batches), hint files, segment headers. Nothing panics or reads out of bounds (the decoders'
//! postconditions are asserted in `flin_engine::fuzzing`), damage is caught at or before the
//! damaged record, and errors name a byte offset inside the input.
//!
//! Cases: proptest's default (256), or `PROPTEST_CASES=100000` for a long run. The fuzz targets
//! in `fuzz/` drive the same functions (docs/reliability.md).

use flin_engine::format::{self, RecordKind, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use flin_engine::fuzzing::{decode_hint, decode_hint_entries, decode_segment_header, scan_records};
use proptest::prelude::*;

/// A segment image with `records` (key, value, is_delete) written from offset 32, zero-padded;
/// returns the image and each record's start offset.
fn segment_with(records: &[(Vec<u8>, Vec<u8>, bool)]) -> (Vec<u8>, Vec<usize>) {
    let total: usize = records
        .iter()
        .map(|(k, v, _)| format::record_len(k.len(), v.len()))
        .sum();
    let mut image = vec![0u8; SEGMENT_HEADER_BYTES + total + 64];
    format::encode_segment_header(&mut image, 1, format::SegmentOrigin::Log);
    let mut at = SEGMENT_HEADER_BYTES;
    let mut starts = Vec::new();
    for (seq, (key, value, delete)) in records.iter().enumerate() {
        starts.push(at);
        let (kind, value) = if *delete {
            (RecordKind::Delete, &[][..])
        } else {
            (RecordKind::Put, value.as_slice())
        };
        let header = format::Header {
            kind,
            namespace_tag: 1,
            flags: 0,
            seq: seq as u64 + 1,
            term: 1,
            expiry_ms: 0,
        };
        at += format::encode_record(&mut image[at..], &header, key, value);
    }
    (image, starts)
}

fn records() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>, bool)>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(any::<u8>(), 0..12),
            proptest::collection::vec(any::<u8>(), 0..40),
            any::<bool>(),
        ),
        1..8,
    )
}

proptest! {
    #[test]
    fn random_segment_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for verify in [true, false] {
            let (_, end) = scan_records(&bytes, verify);
            prop_assert!(end.offset <= bytes.len());
        }
        let _ = decode_segment_header(&bytes);
    }

    /// Random bytes behind a plausible record header reach the length and batch checks.
    #[test]
    fn random_records_after_a_valid_header(
        kind in 0u8..7, namespace in 0u8..7, key_len in 0u32..64, value_len in 0u32..256,
        tail in proptest::collection::vec(any::<u8>(), 0..320),
    ) {
        let mut bytes = vec![0u8; SEGMENT_HEADER_BYTES];
        let mut header = [0u8; RECORD_HEADER_BYTES];
        header[4] = kind;
        header[5] = namespace;
        header[8..12].copy_from_slice(&key_len.to_le_bytes());
        header[12..16].copy_from_slice(&value_len.to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&tail);
        let (_, end) = scan_records(&bytes, false);
        prop_assert!(end.offset <= bytes.len());
    }

    /// Damage to record `i` (a flipped byte or a cut) stops the scan at or before record `i`,
    /// and every record before it still decodes.
    #[test]
    fn damage_is_caught_at_or_before_the_damaged_record(
        records in records(), pick in any::<prop::sample::Index>(), byte in any::<prop::sample::Index>(),
        flip in 1u8..=255, cut in any::<bool>(),
    ) {
        let (mut image, starts) = segment_with(&records);
        let (count, clean) = scan_records(&image, true);
        prop_assert_eq!(count, records.len() as u64);
        prop_assert_eq!(clean.reason, None);
        let damaged = pick.index(records.len());
        let start = starts[damaged];
        let end = starts.get(damaged + 1).copied().unwrap_or(clean.offset);
        let at = start + byte.index(end - start);
        if cut {
            image.truncate(at.max(start + 1));
        } else {
            image[at] ^= flip;
        }
        let (count, stop) = scan_records(&image, true);
        prop_assert!(stop.offset <= start, "damage at {} (record at {}) read past: {:?}", at, start, stop);
        prop_assert_eq!(count, damaged as u64);
        if !cut {
            prop_assert!(stop.reason.is_some(), "a flipped byte is named");
        }
    }

    #[test]
    fn random_hint_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), id in 0u64..4) {
        if let Err(why) = decode_hint(&bytes, id) {
            prop_assert!(why.contains("byte") || why.contains("bytes long"), "no position in {:?}", why);
        }
    }

    /// Random entries inside a valid header and footer reach the entry decoder; an error names
    /// a byte offset inside the file.
    #[test]
    fn random_hint_entries_never_panic(
        entries in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), any::<u8>()], 0..256),
    ) {
        if let Err(why) = decode_hint_entries(&entries) {
            let offset: usize = why
                .strip_prefix("malformed entry at byte ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected error {why:?}"));
            prop_assert!(offset < 24 + entries.len());
        }
    }
}
