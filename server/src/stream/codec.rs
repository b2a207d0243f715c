//! The stream model's records in the engine's Stream namespace (storage-format.md 2.8):
//!
//! | key | kind | value |
//! |---|---|---|
//! | `t` + name | put | topic: u32 id, u32 partitions, u64 retention ms, u64 retention bytes (0 = none) |
//! | `n` | put | u32: the next topic id (ids are never reused) |
//! | `r` + u32 id + u32 partition + u64 base offset | append | a chunk: u32 count, u64 timestamp ms, count × record |
//! | `f` + u32 id + u32 partition | put | u64: the partition's first offset after retention |
//! | `g` + u32 id + group | put | u8 reset policy (0 earliest, 1 latest) |
//! | `c` + u32 id + u32 partition + group | put | u64: the group's committed offset |
//!
//! A record inside a chunk: i32 key length (−1: no key), key, u32 header count, each header
//! (u32 length, name, u32 length, value), u32 value length, value. Integers little-endian in
//! values, big-endian in keys (so a partition's chunks sort by offset under its prefix, which
//! is what a range marker's bound compares).

use std::fmt;

/// A topic's settings as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: u32,
    pub partitions: u32,
    pub retention_ms: u64,
    pub retention_bytes: u64,
}

/// Where a consumer group starts in a partition it has no committed offset for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reset {
    Earliest,
    Latest,
}

impl fmt::Display for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reset::Earliest => "earliest",
            Reset::Latest => "latest",
        })
    }
}

/// A record to publish (borrowed from the command's arguments).
#[derive(Clone, Copy, Debug)]
pub struct NewRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub headers: &'a [(&'a [u8], &'a [u8])],
    pub value: &'a [u8],
}

/// A record read from a chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: u64,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub value: Vec<u8>,
}

pub const TOPIC: u8 = b't';
pub const NEXT_ID: u8 = b'n';
pub const CHUNK: u8 = b'r';
pub const FLOOR: u8 = b'f';
pub const GROUP: u8 = b'g';
pub const COMMITTED: u8 = b'c';

/// Bytes of a chunk's header.
pub const CHUNK_HEADER_BYTES: usize = 12;

pub fn topic_key(name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(TOPIC);
    key.extend_from_slice(name);
    key
}

pub fn encode_topic(meta: &TopicMeta) -> Vec<u8> {
    let mut value = Vec::with_capacity(24);
    value.extend_from_slice(&meta.id.to_le_bytes());
    value.extend_from_slice(&meta.partitions.to_le_bytes());
    value.extend_from_slice(&meta.retention_ms.to_le_bytes());
    value.extend_from_slice(&meta.retention_bytes.to_le_bytes());
    value
}

pub fn decode_topic(value: &[u8]) -> Option<TopicMeta> {
    (value.len() == 24).then(|| TopicMeta {
        id: u32_le(value, 0),
        partitions: u32_le(value, 4),
        retention_ms: u64_le(value, 8),
        retention_bytes: u64_le(value, 16),
    })
}

/// `r` + id: every chunk of a topic.
pub fn topic_chunks_prefix(id: u32) -> Vec<u8> {
    let mut key = vec![CHUNK];
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// `r` + id + partition: every chunk of a partition (what a fetch reads and waits on).
pub fn partition_prefix(id: u32, partition: u32) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = CHUNK;
    key[1..5].copy_from_slice(&id.to_be_bytes());
    key[5..9].copy_from_slice(&partition.to_be_bytes());
    key
}

pub fn chunk_key(id: u32, partition: u32, base: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[..9].copy_from_slice(&partition_prefix(id, partition));
    key[9..].copy_from_slice(&base.to_be_bytes());
    key
}

/// (id, partition, base offset) of a chunk key.
pub fn decode_chunk_key(key: &[u8]) -> Option<(u32, u32, u64)> {
    (key.len() == 17 && key[0] == CHUNK).then(|| {
        (
            u32_be(key, 1),
            u32_be(key, 5),
            u64::from_be_bytes(key[9..17].try_into().expect("8 bytes")),
        )
    })
}

/// Bytes `record` takes inside a chunk.
pub fn record_bytes(record: &NewRecord<'_>) -> usize {
    4 + record.key.map_or(0, <[u8]>::len)
        + 4
        + record
            .headers
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>()
        + 4
        + record.value.len()
}

/// Starts a chunk of `count` records stamped `timestamp_ms` in `out` (cleared first).
pub fn begin_chunk(out: &mut Vec<u8>, count: u32, timestamp_ms: u64) {
    out.clear();
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
}

pub fn push_record(out: &mut Vec<u8>, record: &NewRecord<'_>) {
    match record.key {
        Some(key) => {
            out.extend_from_slice(&(key.len() as i32).to_le_bytes());
            out.extend_from_slice(key);
        }
        None => out.extend_from_slice(&(-1i32).to_le_bytes()),
    }
    out.extend_from_slice(&(record.headers.len() as u32).to_le_bytes());
    for (name, value) in record.headers {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&(record.value.len() as u32).to_le_bytes());
    out.extend_from_slice(record.value);
}

/// (count, timestamp) of a chunk.
pub fn chunk_header(value: &[u8]) -> Option<(u32, u64)> {
    (value.len() >= CHUNK_HEADER_BYTES).then(|| (u32_le(value, 0), u64_le(value, 4)))
}

/// A chunk's records, in order, each as (key, headers, value) borrowed from the chunk. `None`
/// if the chunk is malformed.
pub struct ChunkRecords<'a> {
    bytes: &'a [u8],
    at: usize,
    left: u32,
}

pub type BorrowedRecord<'a> = (Option<&'a [u8]>, Vec<(&'a [u8], &'a [u8])>, &'a [u8]);

pub fn chunk_records(value: &[u8]) -> Option<ChunkRecords<'_>> {
    let (count, _) = chunk_header(value)?;
    Some(ChunkRecords {
        bytes: value,
        at: CHUNK_HEADER_BYTES,
        left: count,
    })
}

impl<'a> ChunkRecords<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    /// Skips the next record without decoding it.
    pub fn skip(&mut self) -> Option<()> {
        self.next().map(|_| ())
    }

    fn record(&mut self) -> Option<BorrowedRecord<'a>> {
        let key_len = self.u32()? as i32;
        let key = match key_len {
            -1 => None,
            n if n >= 0 => Some(self.take(n as usize)?),
            _ => return None,
        };
        let header_count = self.u32()? as usize;
        let mut headers = Vec::with_capacity(header_count.min(64));
        for _ in 0..header_count {
            let n = self.u32()? as usize;
            let name = self.take(n)?;
            let n = self.u32()? as usize;
            headers.push((name, self.take(n)?));
        }
        let n = self.u32()? as usize;
        Some((key, headers, self.take(n)?))
    }
}

impl<'a> Iterator for ChunkRecords<'a> {
    type Item = BorrowedRecord<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let record = self.record();
        if record.is_none() {
            self.left = 0;
        }
        record
    }
}

pub fn floor_key(id: u32, partition: u32) -> [u8; 9] {
    let mut key = partition_prefix(id, partition);
    key[0] = FLOOR;
    key
}

pub fn group_key(id: u32, group: &[u8]) -> Vec<u8> {
    let mut key = vec![GROUP];
    key.extend_from_slice(&id.to_be_bytes());
    key.extend_from_slice(group);
    key
}

pub fn committed_key(id: u32, partition: u32, group: &[u8]) -> Vec<u8> {
    let mut key = partition_prefix(id, partition).to_vec();
    key[0] = COMMITTED;
    key.extend_from_slice(group);
    key
}

pub fn encode_reset(reset: Reset) -> [u8; 1] {
    [match reset {
        Reset::Earliest => 0,
        Reset::Latest => 1,
    }]
}

pub fn decode_reset(value: &[u8]) -> Reset {
    match value.first() {
        Some(0) => Reset::Earliest,
        _ => Reset::Latest,
    }
}

pub fn u32_be(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

pub fn u32_le(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

pub fn u64_le(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_round_trips_its_records() {
        let headers: [(&[u8], &[u8]); 2] = [(b"h1", b"v1"), (b"", b"")];
        let records = [
            NewRecord {
                key: Some(b"k"),
                headers: &headers,
                value: b"first",
            },
            NewRecord {
                key: None,
                headers: &[],
                value: b"",
            },
            NewRecord {
                key: Some(b""),
                headers: &[],
                value: &[0xFF; 300],
            },
        ];
        let mut chunk = Vec::new();
        begin_chunk(&mut chunk, 3, 1234);
        for r in &records {
            push_record(&mut chunk, r);
        }
        assert_eq!(
            chunk.len(),
            CHUNK_HEADER_BYTES + records.iter().map(record_bytes).sum::<usize>()
        );
        assert_eq!(chunk_header(&chunk), Some((3, 1234)));
        let read: Vec<_> = chunk_records(&chunk).unwrap().collect();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].0, Some(&b"k"[..]));
        assert_eq!(read[0].1, headers.to_vec());
        assert_eq!(read[0].2, b"first");
        assert_eq!(read[1].0, None);
        assert_eq!(read[2].0, Some(&b""[..]));
        assert_eq!(read[2].2, &[0xFF; 300][..]);
        // A cut chunk ends early instead of reading past its bytes.
        assert!(chunk_records(&chunk[..chunk.len() - 1]).unwrap().count() < 3);
    }

    #[test]
    fn keys_sort_by_offset_within_a_partition() {
        assert!(chunk_key(1, 2, 255) < chunk_key(1, 2, 256));
        assert_eq!(decode_chunk_key(&chunk_key(7, 3, 99)), Some((7, 3, 99)));
        assert!(chunk_key(1, 2, 0).starts_with(&partition_prefix(1, 2)));
        let meta = TopicMeta {
            id: 3,
            partitions: 8,
            retention_ms: 60_000,
            retention_bytes: 0,
        };
        assert_eq!(decode_topic(&encode_topic(&meta)), Some(meta));
    }
}
