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

struct Cursor {
    segment: Arc<Segment>,
    offset: usize,
    /// Published length when the iterator was made: later appends are not read.
    end: usize,
}

impl Cursor {
    fn peek_seq(&self) -> Option<u64> {
        (self.offset + RECORD_HEADER_BYTES <= self.end)
            .then(|| format::peek_seq(self.segment.bytes(self.offset, RECORD_HEADER_BYTES)))
    }

    /// Decodes the record at the cursor into ops and moves past it; returns its seq and term.
    fn take(&mut self, ops: &mut Vec<LogOp>) -> Result<(u64, u64)> {
        let bytes = self.segment.bytes(self.offset, self.end - self.offset);
        let record = format::decode_record(bytes, self.offset as u64, true)
            .map_err(|e| self.error(self.offset, format!("{e:?}")))?;
        let (seq, term) = (record.seq, record.term);
        if record.kind == RecordKind::Batch {
            let mut at = self.offset + RECORD_HEADER_BYTES;
            let end = self.offset + record.len;
            while at < end {
                let inner =
                    format::decode_record(self.segment.bytes(at, end - at), at as u64, false)
                        .map_err(|e| self.error(at, format!("{e:?}")))?;
                ops.push(self.op(&inner, at)?);
                at += inner.len;
            }
        } else {
            ops.push(self.op(&record, self.offset)?);
        }
        self.offset += record.len;
        Ok((seq, term))
    }

    fn op(&self, record: &format::RecordView<'_>, offset: usize) -> Result<LogOp> {
        Ok(LogOp {
            kind: record.kind,
            namespace: record
                .namespace()
                .ok_or_else(|| self.error(offset, "record without a namespace".into()))?,
            key: record.key.to_vec(),
            value: record.value.to_vec(),
            expiry_ms: record.expiry_ms,
            location: Location {
                segment: self.segment.slot,
                offset: offset as u32,
            },
            record_len: record.len,
        })
    }

    fn error(&self, offset: usize, reason: String) -> Error {
        Error::corrupt(self.segment.display_path(), offset as u64, reason)
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
