//! The loader: rebuilds the index (highest seq wins), the range markers and each segment's
//! accounting while segments load, from hint files or by scanning every record.

use std::sync::Arc;

use crate::engine::{key_hash, Inner, SegmentTable};
use crate::error::{Error, Result};
use crate::format::{
    self, DecodeError, RecordKind, RecordView, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::hint::HintFile;
use crate::index::{Index, Location, Slot, EXPIRY_TOMBSTONE, NAMESPACE_TAGS, SHARD_COUNT};
use crate::ranges::{Marker, RangeMarkers};
use crate::segment::Segment;

/// Rebuilds the index while segments load.
pub(super) struct Loader {
    pub index: Index,
    pub table: SegmentTable,
    pub ranges: RangeMarkers,
    pub now_ms: u64,
    pub last_seq: u64,
    /// Where a record with seq `last_seq` is (its term is the log's last term).
    last_location: Option<Location>,
    pub key_counts: [u64; 8],
    /// Shards holding tombstone slots, purged at the end.
    shards_with_tombstones: Vec<bool>,
    pub records: u64,
    /// Lowest and highest seq seen in the segment being loaded, stored into it once it is
    /// done (`finish_segment`) rather than with two atomic updates per record.
    segment_seqs: (u64, u64),
    /// Records above this seq stay out of the index and the markers: a replicated engine's
    /// uncommitted entries, applied after recovery with their undo items.
    pub commit_limit: u64,
}

/// A record found by a scan or named by a hint, on its way to the index (puts and deletes wait
/// in a group for `resolve_group`).
struct Found<'a> {
    kind: RecordKind,
    namespace_tag: u8,
    key: &'a [u8],
    /// The value, for a range marker (its bound); puts and deletes do not need it.
    value: &'a [u8],
    location: Location,
    seq: u64,
    expiry_ms: u64,
    record_len: usize,
    hash: u64,
    /// A run of log-only records (from a hint file): `seq` and `location` are its last
    /// record's, `record_len` its bytes; this is its first seq and its count. A single
    /// record: its own seq and 1.
    first_seq: u64,
    count: u64,
}

impl<'a> Found<'a> {
    fn from_record(record: &RecordView<'a>, location: Location) -> Found<'a> {
        Found {
            kind: record.kind,
            namespace_tag: record.namespace_tag,
            key: record.key,
            value: record.value,
            location,
            seq: record.seq,
            expiry_ms: record.expiry_ms,
            record_len: record.len,
            hash: key_hash(record.namespace_tag, record.key),
            first_seq: record.seq,
            count: 1,
        }
    }
}

/// Records resolved together: their index slots are loaded first, all at once, so the cache
/// misses of a 10M-key index overlap instead of coming one per record (they were most of a
/// hinted open's time).
const RESOLVE_GROUP: usize = 16;

/// How often a hint entry is checked against its record while a hint file loads.
const HINT_SAMPLE_EVERY: u64 = 64;

impl Loader {
    pub fn new(now_ms: u64, commit_limit: u64) -> Loader {
        Loader {
            index: Index::new(),
            table: SegmentTable::default(),
            ranges: RangeMarkers::default(),
            now_ms,
            last_seq: 0,
            last_location: None,
            key_counts: [0; 8],
            shards_with_tombstones: vec![false; SHARD_COUNT],
            records: 0,
            segment_seqs: (u64::MAX, 0),
            commit_limit,
        }
    }

    /// Takes a record: puts and deletes join `group` (resolved once it is full), log-only
    /// records are counted in their segment, range markers compete for their prefix.
    fn push<'a>(&mut self, group: &mut Vec<Found<'a>>, found: Found<'a>) {
        self.records += found.count;
        if found.seq >= self.last_seq {
            self.last_seq = found.seq;
            self.last_location = Some(found.location);
        }
        self.segment_seqs = (
            self.segment_seqs.0.min(found.first_seq),
            self.segment_seqs.1.max(found.seq),
        );
        if found.seq > self.commit_limit && found.kind != RecordKind::Append {
            return;
        }
        match found.kind {
            RecordKind::Put | RecordKind::Delete => {
                group.push(found);
                if group.len() == RESOLVE_GROUP {
                    self.resolve_group(group);
                }
            }
            RecordKind::Append => self
                .table
                .get(found.location.segment)
                .note_append(found.namespace_tag, found.record_len),
            RecordKind::DropRange => {
                let marker = Marker {
                    bound: found.value.to_vec(),
                    seq: found.seq,
                    location: found.location,
                    record_len: found.record_len,
                };
                if let Some(dead) = self.ranges.install(found.namespace_tag, found.key, marker) {
                    self.table
                        .get(dead.location.segment)
                        .add_dead(dead.record_len);
                }
            }
            RecordKind::Batch => unreachable!("batches are unpacked before they get here"),
        }
    }

    /// Resolves (and empties) a group: touches every record's home slot, then applies each
    /// in order.
    fn resolve_group(&mut self, group: &mut Vec<Found<'_>>) {
        let mut touched = 0u64;
        for found in group.iter() {
            let shard = self
                .index
                .shard_mut(found.namespace_tag, Index::shard_of(found.hash));
            touched ^= shard.table.home_tag(found.hash) as u64;
        }
        std::hint::black_box(touched);
        for found in group.drain(..) {
            self.resolve(&found);
        }
    }

    /// Stores the seq range of the segment just loaded and starts a new one.
    fn finish_segment(&mut self, segment: &Segment) {
        let (min, max) = std::mem::replace(&mut self.segment_seqs, (u64::MAX, 0));
        if min <= max {
            segment.note_seq(min);
            segment.note_seq(max);
        }
    }

    /// Applies one put or delete found at `location` with the highest-seq-wins rule.
    fn resolve(&mut self, found: &Found<'_>) {
        let &Found {
            kind,
            namespace_tag,
            key,
            location,
            seq,
            expiry_ms,
            record_len,
            hash,
            ..
        } = found;
        let Loader {
            index,
            table: segments,
            key_counts,
            shards_with_tombstones,
            now_ms,
            ..
        } = self;
        let segment = segments.get(location.segment);
        let live = kind == RecordKind::Put && (expiry_ms == 0 || expiry_ms > *now_ms);
        if kind == RecordKind::Delete {
            segment.add_dead(record_len);
        }
        let shard = Index::shard_of(hash);
        let new_slot = Slot::new(
            hash,
            location,
            if live {
                Slot::indexed_expiry(expiry_ms)
            } else {
                EXPIRY_TOMBSTONE
            },
        );
        let table = &mut index.shard_mut(namespace_tag, shard).table;
        let found = table.find(hash, |l| Inner::record_is(segments, l, namespace_tag, key));
        match found {
            Some(position) => {
                let old = table.slot(position);
                let old_location = old.location();
                let old_seq = format::peek_seq(
                    segments
                        .get(old_location.segment)
                        .bytes(old_location.offset as usize, RECORD_HEADER_BYTES),
                );
                if seq >= old_seq {
                    Inner::mark_dead(segments, old_location);
                    table.replace(position, new_slot);
                    let count = &mut key_counts[namespace_tag as usize];
                    *count = *count + live as u64 - (!old.is_tombstone()) as u64;
                } else if kind == RecordKind::Put {
                    segment.add_dead(record_len);
                }
            }
            None => {
                table.insert_new(new_slot);
                key_counts[namespace_tag as usize] += live as u64;
            }
        }
        if !live {
            shards_with_tombstones[shard] = true;
        }
    }

    /// Loads a segment from its hint file. Every entry is checked before any is applied, so a
    /// rejected hint file leaves nothing behind for the scan that replaces it: bounds for every
    /// entry (from the hint alone), and the record itself (seq, kind, namespace, lengths, key)
    /// for the first, the last and every `HINT_SAMPLE_EVERY`-th entry, and for every range
    /// marker (whose bound, its value, is read from the segment). Checking every record would
    /// read the whole segment, which is what the hint file is there to avoid; a record the
    /// sample missed is still checked on read (CRC and key compare).
    pub fn load_hints(
        &mut self,
        segment: &Arc<Segment>,
        hints: &HintFile,
    ) -> std::result::Result<(), String> {
        let published = segment.capacity();
        segment.set_published(published);
        let mut entries = 0u64;
        let mut previous_end = SEGMENT_HEADER_BYTES;
        for entry in hints.iter() {
            let entry = entry?;
            let start = entry.offset as usize;
            let end = start + entry.record_len as usize;
            if start < previous_end
                || end > published
                || (entry.record_len as usize) < RECORD_HEADER_BYTES + entry.key.len()
            {
                return Err(format!(
                    "entry at offset {} lies outside the segment or overlaps another",
                    entry.offset
                ));
            }
            previous_end = end;
            if let Some(run) = entry.run {
                // A run: both ends are checked, always (a segment has few runs). The first
                // record at the entry's offset with its seq, the last one at the run's last
                // offset with its seq, ending where the run ends.
                let last = run.last_offset as usize;
                let record_is = |at: usize, seq: u64| match segment.record_at(at, false) {
                    Ok(record) => (record.seq == seq
                        && record.kind == RecordKind::Append
                        && record.namespace_tag == entry.namespace_tag)
                        .then_some(at + record.len),
                    Err(_) => None,
                };
                let first_ok = record_is(start, entry.seq).is_some();
                let last_end = (last >= start && last < end)
                    .then(|| record_is(last, run.last_seq))
                    .flatten();
                if run.count < 2 || !first_ok || last_end != Some(end) || run.last_seq < entry.seq {
                    return Err(format!(
                        "run entry at offset {} disagrees with the segment",
                        entry.offset
                    ));
                }
                entries += 1;
                continue;
            }
            let sampled = entries == 0
                || entries.is_multiple_of(HINT_SAMPLE_EVERY)
                || entries + 1 == hints.entries;
            if sampled || entry.kind == RecordKind::DropRange {
                let disagrees = match segment.record_at(start, entry.kind == RecordKind::DropRange)
                {
                    Ok(record) => {
                        record.seq != entry.seq
                            || record.len != entry.record_len as usize
                            || record.kind != entry.kind
                            || record.namespace_tag != entry.namespace_tag
                            // A log-only record's key is not listed (recovery needs none).
                            || (entry.kind != RecordKind::Append && record.key != entry.key)
                    }
                    Err(_) => true,
                };
                if disagrees {
                    return Err(format!(
                        "entry at offset {} disagrees with the segment",
                        entry.offset
                    ));
                }
            }
            entries += 1;
        }
        if entries != hints.entries {
            return Err(format!(
                "footer counts {} entries, file holds {entries}",
                hints.entries
            ));
        }
        let mut group = Vec::with_capacity(RESOLVE_GROUP);
        for entry in hints.iter() {
            let entry = entry?;
            let location = Location {
                segment: segment.slot,
                offset: entry.offset,
            };
            let value = match entry.kind {
                RecordKind::DropRange => {
                    segment
                        .record_at(entry.offset as usize, false)
                        .expect("checked above")
                        .value
                }
                _ => &[],
            };
            let (seq, location, count) = match entry.run {
                Some(run) => (
                    run.last_seq,
                    Location {
                        segment: segment.slot,
                        offset: run.last_offset,
                    },
                    run.count as u64,
                ),
                None => (entry.seq, location, 1),
            };
            let found = Found {
                kind: entry.kind,
                namespace_tag: entry.namespace_tag,
                key: entry.key,
                value,
                location,
                seq,
                expiry_ms: entry.expiry_ms,
                record_len: entry.record_len as usize,
                hash: key_hash(entry.namespace_tag, entry.key),
                first_seq: entry.seq,
                count,
            };
            self.push(&mut group, found);
        }
        self.resolve_group(&mut group);
        self.finish_segment(segment);
        Ok(())
    }

    /// Scans a segment record by record. Returns where the valid records end and, if the scan
    /// stopped early, why. `strict` segments must decode to their last byte.
    pub fn scan(
        &mut self,
        segment: &Arc<Segment>,
        strict: bool,
    ) -> Result<(usize, Option<String>)> {
        let bytes = segment.scan_bytes();
        let mut offset = SEGMENT_HEADER_BYTES;
        let mut previous_seq = 0;
        let mut group = Vec::with_capacity(RESOLVE_GROUP);
        let stop = loop {
            if offset == bytes.len() {
                break None;
            }
            let record = match format::decode_record(&bytes[offset..], offset as u64, true) {
                Ok(record) => record,
                // The written part of the tail ends at zeroed bytes; a sealed segment may not.
                Err(DecodeError::End) if strict => {
                    break Some("zeroed bytes where a record was expected".to_string())
                }
                Err(DecodeError::End) => break None,
                Err(DecodeError::Truncated) => {
                    break Some("record runs past the end of the file".to_string())
                }
                Err(DecodeError::Corrupt(c)) => break Some(c.reason),
            };
            if record.seq < previous_seq {
                break Some(format!(
                    "record seq {} after seq {previous_seq}",
                    record.seq
                ));
            }
            if record.flags & format::FLAG_IN_BATCH != 0 {
                break Some("batch member outside a batch".to_string());
            }
            previous_seq = record.seq;
            // Visible to reads from here on, so key comparisons can look at it.
            segment.set_published(offset + record.len);
            if record.kind == RecordKind::Batch {
                self.load_batch(segment, offset, &record, &mut group)?;
            } else {
                let location = Location {
                    segment: segment.slot,
                    offset: offset as u32,
                };
                self.push(&mut group, Found::from_record(&record, location));
            }
            offset += record.len;
        };
        self.resolve_group(&mut group);
        self.finish_segment(segment);
        if strict {
            if let Some(reason) = stop {
                // The tail of an active segment is all zeros; a sealed one ends exactly.
                return Err(Error::corrupt(
                    segment.display_path(),
                    offset as u64,
                    reason,
                ));
            }
        }
        Ok((offset, stop))
    }

    /// Loads the inner records of a batch (its CRC already covered them all).
    fn load_batch<'a>(
        &mut self,
        segment: &Arc<Segment>,
        batch_offset: usize,
        batch: &RecordView<'a>,
        group: &mut Vec<Found<'a>>,
    ) -> Result<()> {
        segment.add_dead(RECORD_HEADER_BYTES);
        let body = batch.value;
        let mut at = 0;
        while at < body.len() {
            let absolute = batch_offset + RECORD_HEADER_BYTES + at;
            let inner = format::decode_record(&body[at..], absolute as u64, true).map_err(|e| {
                Error::corrupt(
                    segment.display_path(),
                    absolute as u64,
                    format!("bad record inside a batch: {e:?}"),
                )
            })?;
            if inner.kind == RecordKind::Batch || inner.seq != batch.seq || inner.term != batch.term
            {
                return Err(Error::corrupt(
                    segment.display_path(),
                    absolute as u64,
                    "malformed batch member",
                ));
            }
            let location = Location {
                segment: segment.slot,
                offset: absolute as u32,
            };
            self.push(group, Found::from_record(&inner, location));
            at += inner.len;
        }
        Ok(())
    }

    /// The term of the newest record (0 when the log is empty): read from the record, since a
    /// hint file does not list terms.
    pub fn last_term(&self) -> u64 {
        self.last_location.map_or(0, |location| {
            format::peek_term(
                self.table
                    .get(location.segment)
                    .bytes(location.offset as usize, RECORD_HEADER_BYTES),
            )
        })
    }

    /// Drops tombstone slots: they only mattered while older records could still show up.
    pub fn purge_tombstones(&mut self) {
        for shard in 0..SHARD_COUNT {
            if !self.shards_with_tombstones[shard] {
                continue;
            }
            let segments = &self.table;
            for tag in 0..NAMESPACE_TAGS as u8 {
                self.index.shard_mut(tag, shard).table.retain(|slot| {
                    if slot.is_tombstone() {
                        Inner::mark_dead(segments, slot.location());
                        false
                    } else {
                        true
                    }
                });
            }
        }
    }
}
