//! The decoders recovery runs on bytes from disk, reachable from the fuzz targets (`fuzz/`) and
//! the property tests (`tests/hostile_bytes.rs`). Not an API: hidden from the docs, and free
//! to change with the decoders.

use crate::format::{self, DecodeError, RecordKind, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::hint::HintWriter;
use crate::hint::{HintFile, HINT_FOOTER_BYTES, HINT_HEADER_BYTES};

/// Where a scan of records stopped and why (`None`: at the end, or at zeroed bytes).
#[derive(Debug, PartialEq, Eq)]
pub struct ScanEnd {
    pub offset: usize,
    pub reason: Option<String>,
}

/// Decodes records back to back from offset 32 of `segment`, batches included, as recovery's
/// scan does (with `verify_crc`) or as compaction's log iterator reads batch members (without).
/// Returns the number of put and delete records seen and where the valid records end.
pub fn scan_records(segment: &[u8], verify_crc: bool) -> (u64, ScanEnd) {
    let mut offset = SEGMENT_HEADER_BYTES.min(segment.len());
    let mut records = 0;
    loop {
        if offset == segment.len() {
            return (
                records,
                ScanEnd {
                    offset,
                    reason: None,
                },
            );
        }
        let record = match format::decode_record(&segment[offset..], offset as u64, verify_crc) {
            Ok(record) => record,
            Err(DecodeError::End) => {
                return (
                    records,
                    ScanEnd {
                        offset,
                        reason: None,
                    },
                )
            }
            Err(DecodeError::Truncated) => {
                let reason = Some("record runs past the end".to_string());
                return (records, ScanEnd { offset, reason });
            }
            Err(DecodeError::Corrupt(c)) => {
                assert_eq!(
                    c.offset, offset as u64,
                    "a corruption names the record's offset"
                );
                return (
                    records,
                    ScanEnd {
                        offset,
                        reason: Some(c.reason),
                    },
                );
            }
        };
        assert!(record.len >= RECORD_HEADER_BYTES && offset + record.len <= segment.len());
        assert_eq!(
            record.key.len() + record.value.len() + RECORD_HEADER_BYTES,
            record.len
        );
        if record.kind == RecordKind::Batch {
            let body_start = offset + RECORD_HEADER_BYTES;
            let mut at = 0;
            while at < record.value.len() {
                let inner = &record.value[at..];
                match format::decode_record(inner, (body_start + at) as u64, verify_crc) {
                    Ok(member) if member.kind != RecordKind::Batch => {
                        records += 1;
                        at += member.len;
                    }
                    _ => {
                        let reason = Some("bad record inside a batch".to_string());
                        return (
                            records,
                            ScanEnd {
                                offset: body_start + at,
                                reason,
                            },
                        );
                    }
                }
            }
        } else {
            records += 1;
        }
        offset += record.len;
    }
}

/// Checks hint-file bytes as recovery does and walks the entries; returns how many decoded, or
/// the first error (which names its byte offset where there is one).
pub fn decode_hint(bytes: &[u8], segment_id: u64) -> Result<u64, String> {
    let hints = HintFile::parse(bytes.to_vec(), segment_id)?;
    walk_entries(&hints, bytes.len())
}

/// Wraps `entries` in a valid header and footer (right magic, segment id 1, checksum), so the
/// entry decoder sees random entries past the checks that random bytes never pass.
pub fn decode_hint_entries(entries: &[u8]) -> Result<u64, String> {
    let file = HintWriter::with_raw_entries(1, entries);
    let hints = HintFile::parse(file, 1).expect("a sealed hint file passes its own checks");
    walk_entries(
        &hints,
        HINT_HEADER_BYTES + entries.len() + HINT_FOOTER_BYTES,
    )
}

fn walk_entries(hints: &HintFile, file_len: usize) -> Result<u64, String> {
    let mut count = 0;
    for entry in hints.iter() {
        let entry = entry?;
        assert!(entry.key.len() < file_len, "a key lies inside the file");
        count += 1;
    }
    Ok(count)
}

/// Checks a segment header.
pub fn decode_segment_header(bytes: &[u8]) -> Result<u64, String> {
    format::decode_segment_header(bytes)
        .map(|(id, _)| id)
        .map_err(|c| format!("at byte {}: {}", c.offset, c.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_a_batch_and_a_record() {
        let mut segment = vec![0u8; SEGMENT_HEADER_BYTES + 200];
        let mut at = SEGMENT_HEADER_BYTES;
        // A batch of two members, then a single put.
        let member_len = format::record_len(1, 1);
        let body = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES;
        let header = |kind: RecordKind, namespace_tag: u8, flags: u16, seq: u64| format::Header {
            kind,
            namespace_tag,
            flags,
            seq,
            term: 2,
            expiry_ms: 0,
        };
        format::encode_record(
            &mut segment[body..],
            &header(RecordKind::Put, 1, 1, 5),
            b"a",
            b"1",
        );
        format::encode_record(
            &mut segment[body + member_len..],
            &header(RecordKind::Delete, 1, 1, 5),
            b"b",
            b"",
        );
        let batch_len = RECORD_HEADER_BYTES + member_len + format::record_len(1, 0);
        format::encode_header(
            &mut segment[at..],
            &header(RecordKind::Batch, 0, 0, 5),
            0,
            batch_len - RECORD_HEADER_BYTES,
        );
        format::seal_record(&mut segment[at..at + batch_len]);
        at += batch_len;
        at += format::encode_record(
            &mut segment[at..],
            &header(RecordKind::Put, 1, 0, 6),
            b"c",
            b"3",
        );
        let (records, end) = scan_records(&segment, true);
        assert_eq!(
            (records, end),
            (
                3,
                ScanEnd {
                    offset: at,
                    reason: None
                }
            )
        );
        segment[at - 1] ^= 1;
        let (records, end) = scan_records(&segment, true);
        assert_eq!(records, 2);
        assert_eq!(end.offset, at - format::record_len(1, 1));
        assert!(end.reason.unwrap().contains("checksum"));
    }

    #[test]
    fn hint_entries_decode_and_stop_at_the_first_bad_one() {
        let mut entry = vec![0u8; 32];
        entry[24] = 2; // key_len
        entry[28] = 1; // Put
        entry.extend_from_slice(b"ab");
        assert_eq!(decode_hint_entries(&entry), Ok(1));
        entry[28] = 9;
        assert_eq!(
            decode_hint_entries(&entry),
            Err("malformed entry at byte 24".into())
        );
        assert!(decode_hint(&[0; 10], 1).unwrap_err().contains("10 bytes"));
    }
}
