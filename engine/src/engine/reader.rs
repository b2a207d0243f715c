//! [`LogReader`]: the log entry by entry from a seq, following the tail as it grows, never
//! skipping or repeating a seq. Replication ships entries to followers this way; a data model
//! can follow its namespace this way.
//!
//! How it stays exact:
//! - It holds a compaction pin at its next seq, so the records it has not read yet are never
//!   merged or dropped, wherever they are.
//! - Each entry it returns has exactly the seq it expects; a record with a higher seq means the
//!   entries in between are not in the log (compacted before the reader was made, or cut by
//!   a truncation): that is an error naming the seq ([`Error::NotInLog`]), never a skip.
//! - It reads a segment only up to its published length (appends after that are read by the
//!   next call) and up to a truncation's cut; after a truncation of entries it already
//!   returned, it fails with [`Error::Truncated`] rather than continue on a different history.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Inner;
use crate::error::{Error, Result};
use crate::format::{self, RecordKind, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::index::Location;
use crate::log_iter::{LogEntry, LogOp};
use crate::segment::Segment;
use crate::Pin;

/// Reads the log in seq order from a given seq (see the module doc). Made by `Engine::reader`;
/// like a clone of the engine, it keeps the engine (and its data directory's lock) open.
pub struct LogReader {
    inner: Arc<Inner>,
    next_seq: u64,
    pin: Pin,
    /// The segment being read and the offset of the next record in it.
    position: Option<(Arc<Segment>, usize)>,
    /// The engine's truncation count when this reader last checked.
    truncations: u64,
}

impl LogReader {
    pub(crate) fn new(inner: Arc<Inner>, from_seq: u64) -> LogReader {
        let pin = Pin::new(&inner.pins, from_seq);
        let truncations = inner.truncations.load(Ordering::Acquire);
        LogReader {
            inner,
            next_seq: from_seq.max(1),
            pin,
            position: None,
            truncations,
        }
    }

    /// The seq of the entry the next call returns.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The next entry, or `None` once the reader has caught up with the log's end (call again
    /// after more writes; `Engine::wake_on` tells when).
    pub fn next_entry(&mut self) -> Result<Option<LogEntry>> {
        let mut ops = Vec::new();
        let read = self.next_with(|view, location| {
            ops.push(LogOp {
                kind: view.kind,
                namespace: view.namespace,
                key: view.key.to_vec(),
                value: view.value.to_vec(),
                expiry_ms: view.expiry_ms,
                location,
                record_len: view.record_len,
            })
        })?;
        Ok(read.map(|(seq, term)| LogEntry { seq, term, ops }))
    }

    /// The next entry's ops handed to `visit` one by one, in the order written, borrowed from
    /// the log (no copy, no allocation); returns the entry's seq and term, or `None` once the
    /// reader has caught up, as [`LogReader::next_entry`]. For a reader that encodes what it
    /// reads (the cluster's leader proposing its writes).
    pub fn next_ops(
        &mut self,
        mut visit: impl FnMut(&crate::Op<'_>),
    ) -> Result<Option<(u64, u64)>> {
        self.next_with(|view, _| {
            visit(&crate::Op {
                kind: view.kind,
                namespace: view.namespace,
                key: view.key,
                value: view.value,
                expiry_ms: view.expiry_ms,
            })
        })
    }

    fn next_with(
        &mut self,
        mut visit: impl FnMut(&OpView<'_>, Location),
    ) -> Result<Option<(u64, u64)>> {
        self.check_truncations()?;
        if self.next_seq > self.inner.last_seq.load(Ordering::Acquire) {
            return Ok(None);
        }
        loop {
            if let Some(entry) = self.read_here(&mut visit)? {
                self.next_seq += 1;
                self.pin.advance(self.next_seq);
                return Ok(Some(entry));
            }
            // The current segment has nothing more at this seq: find the one that holds it.
            let found = self.find(self.next_seq)?;
            match found {
                Some(position) => self.position = Some(position),
                None => return Err(Error::NotInLog { seq: self.next_seq }),
            }
        }
    }

    /// Up to `max_entries` entries (fewer when caught up), stopping early once their ops'
    /// bytes pass `max_bytes` (one entry is returned whatever its size).
    pub fn read(&mut self, max_entries: usize, max_bytes: usize) -> Result<Vec<LogEntry>> {
        let mut entries = Vec::new();
        let mut bytes = 0;
        while entries.len() < max_entries && (entries.is_empty() || bytes < max_bytes) {
            let Some(entry) = self.next_entry()? else {
                break;
            };
            bytes += entry
                .ops
                .iter()
                .map(|op| op.key.len() + op.value.len())
                .sum::<usize>();
            entries.push(entry);
        }
        Ok(entries)
    }

    fn check_truncations(&mut self) -> Result<()> {
        let now = self.inner.truncations.load(Ordering::Acquire);
        if now != self.truncations {
            let kept_through = self.inner.kept_through_since(self.truncations);
            if self.next_seq > kept_through + 1 {
                return Err(Error::Truncated {
                    seq: kept_through,
                    reader_at: self.next_seq,
                });
            }
            self.truncations = now;
            self.position = None;
        }
        Ok(())
    }

    /// The entry with `next_seq` at the current position, if the record there has it. Records
    /// with lower seqs (a position found by scanning from a segment's start) are skipped; a
    /// higher one means the entry is missing.
    fn read_here(
        &mut self,
        visit: &mut impl FnMut(&OpView<'_>, Location),
    ) -> Result<Option<(u64, u64)>> {
        let Some((segment, offset)) = &mut self.position else {
            return Ok(None);
        };
        loop {
            let end = segment.readable_len();
            if *offset + RECORD_HEADER_BYTES > end {
                return Ok(None);
            }
            let record = decode(segment, *offset, end)?;
            if record.seq < self.next_seq {
                *offset += record.len;
                continue;
            }
            if record.seq > self.next_seq {
                return Err(Error::NotInLog { seq: self.next_seq });
            }
            let (seq, term) = (record.seq, record.term);
            let taken = record.len;
            visit_ops(segment, *offset, &record, visit)?;
            *offset += taken;
            // A compaction output holds a former batch as consecutive records with its seq.
            while *offset + RECORD_HEADER_BYTES <= end
                && format::peek_seq(segment.bytes(*offset, RECORD_HEADER_BYTES)) == seq
            {
                let member = decode(segment, *offset, end)?;
                let taken = member.len;
                visit_ops(segment, *offset, &member, visit)?;
                *offset += taken;
            }
            return Ok(Some((seq, term)));
        }
    }

    /// The segment (and offset, its first record) that holds `seq`: among the segments log
    /// readers see, one whose seq range covers it and that has a record with it.
    fn find(&self, seq: u64) -> Result<Option<(Arc<Segment>, usize)>> {
        let candidates: Vec<Arc<Segment>> = self
            .inner
            .segments_read()
            .all()
            .filter(|s| {
                !s.is_superseded()
                    && s.min_seq.load(Ordering::Relaxed) <= seq
                    && seq <= s.max_seq.load(Ordering::Relaxed)
            })
            .cloned()
            .collect();
        for segment in candidates {
            let end = segment.readable_len();
            let mut offset = SEGMENT_HEADER_BYTES;
            while offset + RECORD_HEADER_BYTES <= end {
                let header = segment.bytes(offset, RECORD_HEADER_BYTES);
                let found = format::peek_seq(header);
                if found >= seq {
                    if found == seq {
                        return Ok(Some((segment, offset)));
                    }
                    break;
                }
                let (key_len, value_len) = format::peek_lengths(header);
                offset += format::record_len(key_len, value_len);
            }
        }
        Ok(None)
    }
}

fn decode(segment: &Segment, offset: usize, end: usize) -> Result<format::RecordView<'_>> {
    format::decode_record(segment.bytes(offset, end - offset), offset as u64, true).map_err(|e| {
        Error::corrupt(
            segment.display_path(),
            offset as u64,
            format!("log reader: {e:?}"),
        )
    })
}

/// One op as it lies in its segment.
struct OpView<'a> {
    kind: RecordKind,
    namespace: crate::Namespace,
    key: &'a [u8],
    value: &'a [u8],
    expiry_ms: u64,
    record_len: usize,
}

/// Hands `visit` the ops of a record (a batch's members, or the record itself) and where each
/// lies.
fn visit_ops(
    segment: &Segment,
    offset: usize,
    record: &format::RecordView<'_>,
    visit: &mut impl FnMut(&OpView<'_>, Location),
) -> Result<()> {
    let mut op = |view: &format::RecordView<'_>, at: usize| -> Result<()> {
        let namespace = view.namespace().ok_or_else(|| {
            Error::corrupt(
                segment.display_path(),
                at as u64,
                "record without a namespace",
            )
        })?;
        let op = OpView {
            kind: view.kind,
            namespace,
            key: view.key,
            value: view.value,
            expiry_ms: view.expiry_ms,
            record_len: view.len,
        };
        let location = Location {
            segment: segment.slot,
            offset: at as u32,
        };
        visit(&op, location);
        Ok(())
    };
    if record.kind != RecordKind::Batch {
        return op(record, offset);
    }
    let mut at = offset + RECORD_HEADER_BYTES;
    while at < offset + record.len {
        let member = format::decode_record(
            segment.bytes(at, offset + record.len - at),
            at as u64,
            false,
        )
        .map_err(|e| Error::corrupt(segment.display_path(), at as u64, format!("{e:?}")))?;
        op(&member, at)?;
        at += member.len;
    }
    Ok(())
}
