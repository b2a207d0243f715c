//! Reading a namespace's log-only records from a seq: how a data model serves what it appended
//! (a stream partition's record batches) without the hash index knowing each record. The model
//! keeps a sparse map of its own (a partition's offsets to seqs); the engine finds the first
//! record at or after a seq in each segment through the segment's seq marks (`Segment::seek`)
//! and merges the segments in seq order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Engine;
use crate::error::{Error, Result};
use crate::format::{self, Namespace, RecordKind, RECORD_HEADER_BYTES};
use crate::segment::Segment;

/// A segment being read: where, and up to where (its readable length when the read began).
struct Cursor {
    segment: Arc<Segment>,
    offset: usize,
    end: usize,
}

impl Cursor {
    fn peek_seq(&self) -> Option<u64> {
        (self.offset + RECORD_HEADER_BYTES <= self.end)
            .then(|| {
                let header = self.segment.bytes(self.offset, RECORD_HEADER_BYTES);
                match header.iter().all(|&b| b == 0) {
                    true => u64::MAX,
                    false => format::peek_seq(header),
                }
            })
            .filter(|&seq| seq != u64::MAX)
    }
}

impl Engine {
    /// Calls `visit(seq, key, value)` for every `Append` record of `namespace` whose key starts
    /// with `prefix` and whose seq is >= `from_seq`, in seq order (within a seq, in written
    /// order), until `visit` answers `false`. Reads what is published now; the key and value
    /// are borrowed from the mapping for the call.
    ///
    /// Records that a range marker drops are still visited until compaction removes them:
    /// the caller knows its own floor (a partition's first offset) and skips them. Each
    /// top-level record visited is checked against its CRC (a batch's covers its members).
    pub fn read_appends(
        &self,
        namespace: Namespace,
        prefix: &[u8],
        from_seq: u64,
        mut visit: impl FnMut(u64, &[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let tag = namespace.tag();
        let mut segments: Vec<Arc<Segment>> = self
            .inner
            .segments_read()
            .all()
            .filter(|s| {
                !s.is_superseded()
                    && s.has_appends_in(tag)
                    && s.max_seq.load(Ordering::Acquire) >= from_seq
            })
            .cloned()
            .collect();
        segments.sort_by_key(|s| s.min_seq.load(Ordering::Relaxed));
        // Segments join the merge only once the merge reaches their first seq: most reads
        // stay inside one segment, and the heap then holds one cursor.
        let mut waiting = segments.into_iter().peekable();
        let mut cursors: Vec<Cursor> = Vec::new();
        let mut heap: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
        loop {
            let next_min = waiting
                .peek()
                .map(|s| s.min_seq.load(Ordering::Relaxed).max(from_seq));
            let admit = match (heap.peek(), next_min) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(Reverse((top, _))), Some(min)) => min <= *top,
            };
            if admit {
                let segment = waiting.next().expect("peeked");
                let offset = segment.seek(from_seq);
                let cursor = Cursor {
                    end: segment.readable_len(),
                    segment,
                    offset,
                };
                if let Some(seq) = cursor.peek_seq() {
                    heap.push(Reverse((seq, cursors.len())));
                }
                cursors.push(cursor);
                continue;
            }
            let Some(Reverse((seq, index))) = heap.pop() else {
                return Ok(());
            };
            let cursor = &mut cursors[index];
            let go_on = visit_record(cursor, tag, prefix, &mut |key, value| {
                visit(seq, key, value)
            })?;
            if !go_on {
                return Ok(());
            }
            if let Some(next) = cursor.peek_seq() {
                heap.push(Reverse((next, index)));
            }
        }
    }
}

/// Visits the matching ops of the record at the cursor and moves past it. Returns whether to
/// go on.
fn visit_record(
    cursor: &mut Cursor,
    tag: u8,
    prefix: &[u8],
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<bool> {
    let segment = &cursor.segment;
    let offset = cursor.offset;
    let header = segment.bytes(offset, RECORD_HEADER_BYTES);
    let (key_len, value_len) = format::peek_lengths(header);
    let len = format::record_len(key_len, value_len);
    if offset + len > cursor.end {
        return Err(Error::corrupt(
            segment.display_path(),
            offset as u64,
            format!(
                "record of {len} bytes runs past the readable {} bytes",
                cursor.end
            ),
        ));
    }
    cursor.offset += len;
    let kind = format::peek_kind(header);
    let is_batch = kind == RecordKind::Batch as u8;
    let matches = |view: &format::RecordView<'_>| {
        view.kind == RecordKind::Append && view.namespace_tag == tag && view.key.starts_with(prefix)
    };
    if !is_batch {
        if kind != RecordKind::Append as u8 || header[5] != tag || key_len < prefix.len() {
            return Ok(true);
        }
        let key = segment.bytes(offset + RECORD_HEADER_BYTES, prefix.len());
        if key != prefix {
            return Ok(true);
        }
    }
    let bad = |at: usize, e: format::DecodeError| {
        Error::corrupt(segment.display_path(), at as u64, format!("{e:?}"))
    };
    if !is_batch {
        let record = format::decode_record(segment.bytes(offset, len), offset as u64, true)
            .map_err(|e| bad(offset, e))?;
        return Ok(!matches(&record) || visit(record.key, record.value));
    }
    // A batch: its CRC (which covers its members) is checked once a member matches, so the
    // batches of other namespaces cost a header walk.
    let record = format::decode_record(segment.bytes(offset, len), offset as u64, false)
        .map_err(|e| bad(offset, e))?;
    let mut checked = false;
    let mut at = RECORD_HEADER_BYTES;
    while at < record.len {
        let bytes = segment.bytes(offset + at, record.len - at);
        let member = format::decode_record(bytes, (offset + at) as u64, false)
            .map_err(|e| bad(offset + at, e))?;
        at += member.len;
        if !matches(&member) {
            continue;
        }
        if !checked {
            format::decode_record(segment.bytes(offset, len), offset as u64, true)
                .map_err(|e| bad(offset, e))?;
            checked = true;
        }
        if !visit(member.key, member.value) {
            return Ok(false);
        }
    }
    Ok(true)
}
