//! The on-disk format: segment header and record layout, encoded and decoded in one place.
//!
//! docs/storage-format.md draws these byte by byte; any change here changes that document and
//! the format version.

use crate::error::Corruption;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FLINSEG\0";
/// Version of the segment and record layout. Bumped on any incompatible change (history in
/// docs/storage-format.md: version 2 added the term to every record header).
pub const FORMAT_VERSION: u16 = 2;
/// Bytes of the segment header; the first record starts right after it.
pub const SEGMENT_HEADER_BYTES: usize = 32;
/// Bytes of a record header; the key and then the value follow it.
pub const RECORD_HEADER_BYTES: usize = 40;

/// Largest key accepted, in bytes. Keys live in the record and are compared on every lookup.
pub const KEY_BYTES_MAX: usize = 1 << 20;
/// Largest value accepted, in bytes: Redis's proto-max-bulk-len.
pub const VALUE_BYTES_MAX: usize = 512 << 20;

/// Pins the header sizes: the layout below writes exactly these many bytes.
#[repr(C)]
struct RecordHeaderLayout {
    crc32: u32,
    kind: u8,
    namespace: u8,
    flags: u16,
    key_len: u32,
    value_len: u32,
    seq: u64,
    term: u64,
    expiry_ms: u64,
}
#[repr(C)]
struct SegmentHeaderLayout {
    magic: [u8; 8],
    version: u16,
    header_bytes: u16,
    origin: u8,
    reserved: [u8; 3],
    segment_id: u64,
    reserved2: u32,
    crc32: u32,
}
const _: () = assert!(std::mem::size_of::<RecordHeaderLayout>() == RECORD_HEADER_BYTES);
const _: () = assert!(std::mem::size_of::<SegmentHeaderLayout>() == SEGMENT_HEADER_BYTES);

/// What a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// Sets key to value (with an optional expiry).
    Put = 1,
    /// Removes key (a tombstone).
    Delete = 2,
    /// An atomic group: the value holds whole inner records of the other kinds, sharing this
    /// seq.
    Batch = 3,
    /// A log-only record: kept in the log under its key, never in the hash index. Data models
    /// find it by seq (a stream partition's records); it is dropped by the `DropRange` marker
    /// that covers it.
    Append = 4,
    /// A range marker: every `Append` record of its namespace whose key starts with this
    /// record's key (the prefix), whose rest of the key sorts before this record's value (the
    /// bound), and whose seq is lower than this record's, is dropped. One record reclaims a
    /// whole range (a stream's retention, a queue's consumed prefix).
    DropRange = 5,
}

impl RecordKind {
    pub fn from_u8(byte: u8) -> Option<RecordKind> {
        match byte {
            1 => Some(RecordKind::Put),
            2 => Some(RecordKind::Delete),
            3 => Some(RecordKind::Batch),
            4 => Some(RecordKind::Append),
            5 => Some(RecordKind::DropRange),
            _ => None,
        }
    }

    /// Whether records of this kind live in the hash index (a key's current value).
    pub fn is_indexed(self) -> bool {
        matches!(self, RecordKind::Put | RecordKind::Delete)
    }
}

/// Keeps the keys of the four data models apart in one engine. Tag 0 belongs to no namespace
/// (batch records carry it); a zeroed header is told apart by its kind byte, never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Namespace {
    /// Redis-style strings.
    Kv = 1,
    /// Message queues.
    Queue = 2,
    /// Streams (topics, partitions, offsets).
    Stream = 3,
    /// JSON documents and their indexes.
    Document = 4,
    /// Engine and server metadata (consumer offsets, cluster state, ...).
    System = 5,
}

impl Namespace {
    /// Every namespace, in tag order.
    pub const ALL: [Namespace; 5] = [
        Namespace::Kv,
        Namespace::Queue,
        Namespace::Stream,
        Namespace::Document,
        Namespace::System,
    ];

    /// The tag stored on disk.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// The namespace of an on-disk tag.
    pub fn from_tag(tag: u8) -> Option<Namespace> {
        Namespace::ALL.get((tag as usize).wrapping_sub(1)).copied()
    }
}

/// Record flag: this record sits inside a batch record.
pub const FLAG_IN_BATCH: u16 = 1;

/// A record as read from a segment: borrowed key and value.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    pub kind: RecordKind,
    /// Raw namespace tag; 0 for a batch.
    pub namespace_tag: u8,
    pub flags: u16,
    pub seq: u64,
    /// The term of the leader that wrote the record (0 on a node that never ran replication).
    pub term: u64,
    pub expiry_ms: u64,
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// Header + key + value.
    pub len: usize,
}

impl RecordView<'_> {
    /// The record's namespace (Batch records have none).
    pub fn namespace(&self) -> Option<Namespace> {
        Namespace::from_tag(self.namespace_tag)
    }

    /// Whether the record's expiry time has passed at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expiry_ms != 0 && self.expiry_ms <= now_ms
    }
}

/// Why a record could not be decoded at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// All-zero header: the end of the written part of a preallocated segment.
    End,
    /// The record claims more bytes than the buffer holds (a torn tail, or garbage).
    Truncated,
    /// The header or the checksum is wrong.
    Corrupt(Corruption),
}

/// Encoded length of a record.
pub fn record_len(key_len: usize, value_len: usize) -> usize {
    RECORD_HEADER_BYTES + key_len + value_len
}

/// The fixed fields of a record header (the lengths come from the key and value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: RecordKind,
    pub namespace_tag: u8,
    pub flags: u16,
    pub seq: u64,
    pub term: u64,
    pub expiry_ms: u64,
}

/// Writes a record into `out` (exactly `record_len(key, value)` bytes) and returns its length.
pub fn encode_record(out: &mut [u8], header: &Header, key: &[u8], value: &[u8]) -> usize {
    let len = record_len(key.len(), value.len());
    assert!(out.len() >= len, "record buffer too small");
    encode_header(
        &mut out[..RECORD_HEADER_BYTES],
        header,
        key.len(),
        value.len(),
    );
    out[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + key.len()].copy_from_slice(key);
    out[RECORD_HEADER_BYTES + key.len()..len].copy_from_slice(value);
    seal_record(&mut out[..len]);
    len
}

/// Writes a record header without its checksum (see `seal_record`).
pub fn encode_header(out: &mut [u8], header: &Header, key_len: usize, value_len: usize) {
    assert!(key_len <= KEY_BYTES_MAX && value_len <= u32::MAX as usize);
    out[0..4].copy_from_slice(&0u32.to_le_bytes());
    out[4] = header.kind as u8;
    out[5] = header.namespace_tag;
    out[6..8].copy_from_slice(&header.flags.to_le_bytes());
    out[8..12].copy_from_slice(&(key_len as u32).to_le_bytes());
    out[12..16].copy_from_slice(&(value_len as u32).to_le_bytes());
    out[16..24].copy_from_slice(&header.seq.to_le_bytes());
    out[24..32].copy_from_slice(&header.term.to_le_bytes());
    out[32..40].copy_from_slice(&header.expiry_ms.to_le_bytes());
}

/// Computes the CRC32 over everything after the checksum field and stores it.
pub fn seal_record(record: &mut [u8]) {
    let crc = crc32fast::hash(&record[4..]);
    record[0..4].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the key and value lengths from a header without checking anything else.
pub fn peek_lengths(header: &[u8]) -> (usize, usize) {
    (u32_at(header, 8) as usize, u32_at(header, 12) as usize)
}

/// Reads the seq of the record at the start of `buf` without checking it.
pub fn peek_seq(buf: &[u8]) -> u64 {
    u64_at(buf, 16)
}

/// Reads the term of the record at the start of `buf` without checking it.
pub fn peek_term(buf: &[u8]) -> u64 {
    u64_at(buf, 24)
}

/// Reads the expiry of the record at the start of `buf` without checking it.
pub fn peek_expiry(buf: &[u8]) -> u64 {
    u64_at(buf, 32)
}

/// Reads the kind byte of the record at the start of `buf` without checking it.
pub fn peek_kind(buf: &[u8]) -> u8 {
    buf[4]
}

/// Decodes the record at the start of `buf`. With `verify_crc`, the checksum is checked too.
/// `offset` is only used to name the position in errors.
pub fn decode_record(
    buf: &[u8],
    offset: u64,
    verify_crc: bool,
) -> Result<RecordView<'_>, DecodeError> {
    if buf.len() < RECORD_HEADER_BYTES {
        if buf.iter().all(|&b| b == 0) {
            return Err(DecodeError::End);
        }
        return Err(DecodeError::Truncated);
    }
    let header = &buf[..RECORD_HEADER_BYTES];
    if header.iter().all(|&b| b == 0) {
        return Err(DecodeError::End);
    }
    let corrupt = |reason: String| DecodeError::Corrupt(Corruption { offset, reason });
    let Some(kind) = RecordKind::from_u8(header[4]) else {
        return Err(corrupt(format!("unknown record kind {}", header[4])));
    };
    let namespace_tag = header[5];
    let flags = u16::from_le_bytes([header[6], header[7]]);
    let (key_len, value_len) = peek_lengths(header);
    match kind {
        RecordKind::Batch if namespace_tag != 0 || key_len != 0 => {
            return Err(corrupt("batch record with a key or namespace".into()))
        }
        RecordKind::Batch => {}
        _ if Namespace::from_tag(namespace_tag).is_none() => {
            return Err(corrupt(format!("unknown namespace tag {namespace_tag}")))
        }
        _ => {}
    }
    if key_len > KEY_BYTES_MAX {
        return Err(corrupt(format!(
            "key length {key_len} exceeds {KEY_BYTES_MAX}"
        )));
    }
    let len = RECORD_HEADER_BYTES + key_len + value_len;
    if buf.len() < len {
        return Err(DecodeError::Truncated);
    }
    let stored_crc = u32_at(header, 0);
    if verify_crc {
        let actual = crc32fast::hash(&buf[4..len]);
        if actual != stored_crc {
            return Err(corrupt(format!(
                "checksum mismatch: stored {stored_crc:#010x}, computed {actual:#010x}"
            )));
        }
    }
    Ok(RecordView {
        kind,
        namespace_tag,
        flags,
        seq: u64_at(header, 16),
        term: u64_at(header, 24),
        expiry_ms: u64_at(header, 32),
        key: &buf[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + key_len],
        value: &buf[RECORD_HEADER_BYTES + key_len..len],
        len,
    })
}

/// Who wrote a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SegmentOrigin {
    /// The log writer: the newest such segment is the tail, where a torn write may sit.
    Log = 0,
    /// Compaction: written whole and synced before it was installed, so never torn.
    Compaction = 1,
}

/// Writes the segment header for `segment_id` into `out`.
pub fn encode_segment_header(out: &mut [u8], segment_id: u64, origin: SegmentOrigin) {
    out[..SEGMENT_HEADER_BYTES].fill(0);
    out[0..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[10..12].copy_from_slice(&(SEGMENT_HEADER_BYTES as u16).to_le_bytes());
    out[12] = origin as u8;
    out[16..24].copy_from_slice(&segment_id.to_le_bytes());
    let crc = crc32fast::hash(&out[0..28]);
    out[28..32].copy_from_slice(&crc.to_le_bytes());
}

/// Why a segment of another format version is refused: named so an operator knows what to do.
pub fn unsupported_version(version: u16) -> String {
    match version {
        1 => format!(
            "segment format version 1 is not readable by this build, which reads version \
             {FORMAT_VERSION} (since version 2 every record carries the term it was written in); \
             run the build that wrote it and copy the keys out with a Redis client \
             (docs/storage-format.md, section 8)"
        ),
        other => format!("unsupported format version {other} (this build reads {FORMAT_VERSION})"),
    }
}

/// Checks a segment header and returns the segment id it names and its origin.
pub fn decode_segment_header(buf: &[u8]) -> Result<(u64, SegmentOrigin), Corruption> {
    let bad = |reason: &str| Corruption {
        offset: 0,
        reason: reason.to_string(),
    };
    if buf.len() < SEGMENT_HEADER_BYTES {
        return Err(bad("file shorter than the segment header"));
    }
    if buf[0..8] != SEGMENT_MAGIC {
        return Err(bad("bad magic bytes (not a Flin segment)"));
    }
    let version = u16::from_le_bytes([buf[8], buf[9]]);
    if version != FORMAT_VERSION {
        return Err(Corruption {
            offset: 8,
            reason: unsupported_version(version),
        });
    }
    let crc = crc32fast::hash(&buf[0..28]);
    if crc != u32_at(buf, 28) {
        return Err(Corruption {
            offset: 28,
            reason: "segment header checksum mismatch".into(),
        });
    }
    let origin = match buf[12] {
        0 => SegmentOrigin::Log,
        1 => SegmentOrigin::Compaction,
        other => {
            return Err(Corruption {
                offset: 12,
                reason: format!("unknown segment origin {other}"),
            })
        }
    };
    Ok((u64_at(buf, 16), origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: RecordKind, seq: u64) -> Header {
        Header {
            kind,
            namespace_tag: Namespace::Kv.tag(),
            flags: 0,
            seq,
            term: 3,
            expiry_ms: 7,
        }
    }

    #[test]
    fn every_kind_round_trips_and_needs_a_namespace() {
        for kind in [
            RecordKind::Put,
            RecordKind::Delete,
            RecordKind::Append,
            RecordKind::DropRange,
        ] {
            let mut buf = vec![0u8; 100];
            let len = encode_record(&mut buf, &header(kind, 5), b"k", b"v");
            assert_eq!(decode_record(&buf, 0, true).unwrap().kind, kind);
            let mut without = header(kind, 5);
            without.namespace_tag = 0;
            encode_record(&mut buf, &without, b"k", b"v");
            assert!(matches!(
                decode_record(&buf[..len], 0, true),
                Err(DecodeError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn version_1_segments_are_refused_by_name() {
        let mut buf = [0u8; SEGMENT_HEADER_BYTES];
        encode_segment_header(&mut buf, 3, SegmentOrigin::Log);
        buf[8..10].copy_from_slice(&1u16.to_le_bytes());
        let refused = decode_segment_header(&buf).unwrap_err();
        assert_eq!(refused.offset, 8);
        assert!(
            refused.reason.contains("format version 1"),
            "{}",
            refused.reason
        );
        assert!(
            refused.reason.contains("reads version 2"),
            "{}",
            refused.reason
        );
    }

    #[test]
    fn record_round_trip() {
        let mut buf = vec![0u8; 100];
        let len = encode_record(&mut buf, &header(RecordKind::Put, 42), b"key", b"value");
        assert_eq!(len, RECORD_HEADER_BYTES + 8);
        let record = decode_record(&buf, 0, true).unwrap();
        assert_eq!(record.kind, RecordKind::Put);
        assert_eq!(record.namespace(), Some(Namespace::Kv));
        assert_eq!((record.seq, record.term, record.expiry_ms), (42, 3, 7));
        assert_eq!((record.key, record.value), (&b"key"[..], &b"value"[..]));
        assert_eq!(
            decode_record(&buf[len..], len as u64, true).err(),
            Some(DecodeError::End)
        );
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = vec![0u8; 64];
        let len = encode_record(&mut buf, &header(RecordKind::Put, 9), b"k", b"some value");
        for bit in 0..len * 8 {
            let mut copy = buf[..len].to_vec();
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_record(&copy, 0, true).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn short_buffer_is_truncated_not_corrupt() {
        let mut buf = vec![0u8; 64];
        let len = encode_record(&mut buf, &header(RecordKind::Put, 1), b"k", b"v");
        for cut in 1..len {
            assert_eq!(
                decode_record(&buf[..cut], 0, true).err(),
                Some(DecodeError::Truncated),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn segment_header_round_trip_and_checks() {
        let mut buf = [0u8; SEGMENT_HEADER_BYTES];
        encode_segment_header(&mut buf, 77, SegmentOrigin::Compaction);
        assert_eq!(
            decode_segment_header(&buf),
            Ok((77, SegmentOrigin::Compaction))
        );
        buf[3] ^= 1;
        assert!(decode_segment_header(&buf).is_err());
    }

    #[test]
    fn namespace_tags_round_trip() {
        for ns in Namespace::ALL {
            assert_eq!(Namespace::from_tag(ns.tag()), Some(ns));
        }
        assert_eq!(Namespace::from_tag(0), None);
        assert_eq!(Namespace::from_tag(200), None);
    }
}
