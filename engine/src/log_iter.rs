//! Reading the log in seq order from a given seq: a k-way merge over segments, each of which
//! holds its records in seq order (the writer appends in seq order; compaction copies in seq
//! order). Replication ships records this way; compaction reads its inputs this way.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::engine::Inner;
use crate::error::{Error, Result};
use crate::format::{self, Namespace, RecordKind, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::index::Location;
use crate::segment::Segment;

/// One write read from the log (a put, delete, log-only append or range marker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOp {
    pub kind: RecordKind,
    pub namespace: Namespace,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub expiry_ms: u64,
    /// Where the record lives (compaction uses it to tell live records from dead ones).
    pub(crate) location: Location,
    pub(crate) record_len: usize,
}

/// Everything written under one seq: a single op, or every op of an atomic batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    /// The term the entry was written in.
    pub term: u64,
    pub ops: Vec<LogOp>,
}

impl LogOp {
    /// The op as an `Op` borrowing this one's bytes (to put in a `WriteBatch`).
    pub fn as_op(&self) -> crate::Op<'_> {
        crate::Op {
            kind: self.kind,
            namespace: self.namespace,
            key: &self.key,
            value: &self.value,
            expiry_ms: self.expiry_ms,
        }
    }
}

/// One write read from the log in place: borrowed from its segment (compaction and hint
/// writing read every record of their segments, and copying each key and value out was most
/// of their allocations).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpRef<'a> {
    pub kind: RecordKind,
    pub namespace: Namespace,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub expiry_ms: u64,
    pub location: Location,
    pub record_len: usize,
}

/// Decodes the record at `offset` of `segment` (a batch's members, or the record itself) into
/// `ops`; returns its seq, term and length. The batch's CRC covers its members, so they are
/// decoded without checking their own.
fn take_ops<'a>(
    segment: &'a Segment,
    offset: usize,
    end: usize,
    ops: &mut Vec<OpRef<'a>>,
) -> Result<(u64, u64, usize)> {
    let error =
        |at: usize, reason: String| Error::corrupt(segment.display_path(), at as u64, reason);
    let record = format::decode_record(segment.bytes(offset, end - offset), offset as u64, true)
        .map_err(|e| error(offset, format!("{e:?}")))?;
    let mut push = |view: &format::RecordView<'a>, at: usize| -> Result<()> {
        ops.push(OpRef {
            kind: view.kind,
            namespace: view
                .namespace()
                .ok_or_else(|| error(at, "record without a namespace".into()))?,
            key: view.key,
            value: view.value,
            expiry_ms: view.expiry_ms,
            location: Location {
                segment: segment.slot,
                offset: at as u32,
            },
            record_len: view.len,
        });
        Ok(())
    };
    if record.kind == RecordKind::Batch {
        let mut at = offset + RECORD_HEADER_BYTES;
        let batch_end = offset + record.len;
        while at < batch_end {
            let inner = format::decode_record(segment.bytes(at, batch_end - at), at as u64, false)
                .map_err(|e| error(at, format!("{e:?}")))?;
            push(&inner, at)?;
            at += inner.len;
        }
    } else {
        push(&record, offset)?;
    }
    Ok((record.seq, record.term, record.len))
}

/// The seq of the record at `offset`, if a whole header lies before `end`.
fn peek_seq_at(segment: &Segment, offset: usize, end: usize) -> Option<u64> {
    (offset + RECORD_HEADER_BYTES <= end)
        .then(|| format::peek_seq(segment.bytes(offset, RECORD_HEADER_BYTES)))
}

/// Calls `visit(seq, term, ops)` for every entry of `segments` with seq >= `from_seq`, in seq
/// order (a k-way merge), the ops borrowed from the segments: no copy, no allocation a record.
/// A former batch split into consecutive records with its seq (a compaction output) comes
/// back together.
pub(crate) fn merge_records<'a>(
    segments: &'a [Arc<Segment>],
    from_seq: u64,
    mut visit: impl FnMut(u64, u64, &[OpRef<'a>]) -> Result<()>,
) -> Result<()> {
    let mut offsets: Vec<usize> = vec![SEGMENT_HEADER_BYTES; segments.len()];
    let ends: Vec<usize> = segments.iter().map(|s| s.readable_len()).collect();
    let mut heap = BinaryHeap::new();
    for (index, segment) in segments.iter().enumerate() {
        if segment.max_seq.load(std::sync::atomic::Ordering::Relaxed) < from_seq {
            continue;
        }
        if let Some(seq) = peek_seq_at(segment, offsets[index], ends[index]) {
            heap.push(Reverse((seq, index)));
        }
    }
    let mut ops = Vec::new();
    while let Some(Reverse((seq, index))) = heap.pop() {
        let segment: &'a Segment = &segments[index];
        ops.clear();
        let (_, term, len) = take_ops(segment, offsets[index], ends[index], &mut ops)?;
        offsets[index] += len;
        while peek_seq_at(segment, offsets[index], ends[index]) == Some(seq) {
            let (_, _, len) = take_ops(segment, offsets[index], ends[index], &mut ops)?;
            offsets[index] += len;
        }
        if let Some(next) = peek_seq_at(segment, offsets[index], ends[index]) {
            heap.push(Reverse((next, index)));
        }
        if seq >= from_seq {
            visit(seq, term, &ops)?;
        }
    }
    Ok(())
}

struct Cursor {
    segment: Arc<Segment>,
    offset: usize,
    /// Published length when the iterator was made: later appends are not read.
    end: usize,
}

impl Cursor {
    fn peek_seq(&self) -> Option<u64> {
        peek_seq_at(&self.segment, self.offset, self.end)
    }

    /// Decodes the record at the cursor into ops and moves past it; returns its seq and term.
    fn take(&mut self, ops: &mut Vec<LogOp>) -> Result<(u64, u64)> {
        let mut found = Vec::new();
        let (seq, term, len) = take_ops(&self.segment, self.offset, self.end, &mut found)?;
        ops.extend(found.iter().map(|op| LogOp {
            kind: op.kind,
            namespace: op.namespace,
            key: op.key.to_vec(),
            value: op.value.to_vec(),
            expiry_ms: op.expiry_ms,
            location: op.location,
            record_len: op.record_len,
        }));
        self.offset += len;
        Ok((seq, term))
    }
}

/// Iterator over `LogEntry`s in seq order (see `Engine::log_from`).
pub struct LogIter {
    cursors: Vec<Cursor>,
    /// (next seq, cursor) of every cursor with records left.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    from_seq: u64,
    failed: bool,
}

impl LogIter {
    pub(crate) fn new(inner: &Inner, from_seq: u64) -> LogIter {
        let segments: Vec<Arc<Segment>> = inner
            .segments_read()
            .all()
            .filter(|s| !s.is_superseded())
            .cloned()
            .collect();
        LogIter::over(segments, from_seq)
    }

    /// Iterates over exactly these segments.
    pub(crate) fn over(segments: Vec<Arc<Segment>>, from_seq: u64) -> LogIter {
        let mut iter = LogIter {
            cursors: Vec::new(),
            heap: BinaryHeap::new(),
            from_seq,
            failed: false,
        };
        for segment in segments {
            if segment.max_seq.load(std::sync::atomic::Ordering::Relaxed) < from_seq {
                continue;
            }
            let end = segment.readable_len();
            let cursor = Cursor {
                segment,
                offset: SEGMENT_HEADER_BYTES,
                end,
            };
            if let Some(seq) = cursor.peek_seq() {
                iter.heap.push(Reverse((seq, iter.cursors.len())));
            }
            iter.cursors.push(cursor);
        }
        iter
    }

    fn next_entry(&mut self) -> Option<Result<LogEntry>> {
        loop {
            let Reverse((seq, index)) = self.heap.pop()?;
            let cursor = &mut self.cursors[index];
            let mut ops = Vec::new();
            let term = match cursor.take(&mut ops) {
                Ok((_, term)) => term,
                Err(e) => return Some(Err(e)),
            };
            // Compaction splits a batch into single records with the batch's seq: gather them.
            while cursor.peek_seq() == Some(seq) {
                if let Err(e) = cursor.take(&mut ops) {
                    return Some(Err(e));
                }
            }
            if let Some(next) = cursor.peek_seq() {
                self.heap.push(Reverse((next, index)));
            }
            if seq >= self.from_seq {
                return Some(Ok(LogEntry { seq, term, ops }));
            }
        }
    }
}

impl Iterator for LogIter {
    type Item = Result<LogEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_entry();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
        }
        item
    }
}

/// Calls `visit` with every record of a segment's published prefix and its offset: top-level
/// records and the members of each batch (not the batch record itself), without checking
/// CRCs (counting, not serving data). Stops at the first record that does not decode.
pub(crate) fn visit_records(
    segment: &Segment,
    mut visit: impl FnMut(&format::RecordView<'_>, usize),
) -> Result<()> {
    let end = segment.readable_len();
    let mut offset = SEGMENT_HEADER_BYTES;
    let bad = |offset: usize, e: format::DecodeError| {
        Error::corrupt(segment.display_path(), offset as u64, format!("{e:?}"))
    };
    while offset + RECORD_HEADER_BYTES <= end {
        let record =
            format::decode_record(segment.bytes(offset, end - offset), offset as u64, false)
                .map_err(|e| bad(offset, e))?;
        if record.kind == RecordKind::Batch {
            let mut at = offset + RECORD_HEADER_BYTES;
            while at < offset + record.len {
                let member = format::decode_record(
                    segment.bytes(at, offset + record.len - at),
                    at as u64,
                    false,
                )
                .map_err(|e| bad(at, e))?;
                visit(&member, at);
                at += member.len;
            }
        } else {
            visit(&record, offset);
        }
        offset += record.len;
    }
    Ok(())
}
