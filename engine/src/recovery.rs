//! Opening a data directory: finish an interrupted compaction swap, load hint files (checked
//! against their segment by sampling; record CRCs are then checked on read) or scan segments
//! (checking every CRC), truncate a torn tail, rebuild the index.
//!
//! Recovery policy: the newest log segment (the tail) may end in a torn or corrupt record, the
//! trace of a crash mid-write; it is cut back to its last whole record, the cut is logged with
//! file and byte offset, and the bytes after it are zeroed. Any other scanned segment must decode
//! to its last byte: damage there is an error naming file and offset, and is never served as
//! data.
//!
//! Which record of a key wins is decided by seq, not by file order: compaction outputs carry old
//! seqs in new files, so the highest seq wins, and tombstones (and expired records, which count
//! as tombstones) take part in that comparison until the end of recovery.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::dir::{self, FileKind, Manifest};
use crate::engine::{key_hash, Config, Inner, SegmentTable};
use crate::error::{Error, Result};
use crate::format::{
    self, DecodeError, RecordKind, SegmentOrigin, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::hint::HintFile;
use crate::index::{Index, Location, Slot, EXPIRY_TOMBSTONE, SHARD_COUNT};
use crate::segment::{Segment, SegmentWriter, SEGMENT_CAPACITY_ALIGN_BYTES};

/// Where recovery cut a torn tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    /// Offset of the first byte dropped.
    pub offset: u64,
    /// What was wrong with the record there.
    pub reason: String,
}

/// What recovery found.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub keys: u64,
    pub segments: usize,
    pub segments_from_hints: usize,
    pub segments_scanned: usize,
    pub records_scanned: u64,
    pub torn_tail: Option<TornTail>,
    /// Hint files that were unusable (each was replaced by a scan of its segment).
    pub bad_hints: Vec<String>,
    /// An interrupted compaction swap was finished.
    pub finished_compaction: bool,
    pub last_seq: u64,
    pub duration: Duration,
}

pub(crate) struct Recovered {
    pub index: Index,
    pub segments: SegmentTable,
    pub active: SegmentWriter,
    pub last_seq: u64,
    pub next_segment_id: u64,
    pub key_counts: [u64; 8],
    pub report: RecoveryReport,
}

/// How creating a log segment failed.
pub(crate) enum CreateError {
    /// Nothing was installed: the directory is as before (a `.tmp` file may be left, which the
    /// next open deletes). Trying again later is fine (a full disk, say).
    NotInstalled(Error),
    /// The segment was renamed into place but the directory fsync failed: whether its name is
    /// durable is unknown, and a second fsync could not be trusted to tell (decision 10).
    InstalledUnsynced(Error),
}

impl CreateError {
    pub fn into_error(self) -> Error {
        match self {
            CreateError::NotInstalled(e) | CreateError::InstalledUnsynced(e) => e,
        }
    }
}

/// Creates a log segment: in a directory under a temporary name, synced, then renamed, so a
/// segment file in the directory always starts with a whole header. The file stays open and
/// mapped across the rename: nothing can fail between the rename and the directory fsync.
pub(crate) fn create_log_segment(
    backend: &Backend,
    dir: Option<&Path>,
    id: u64,
    slot: u16,
    capacity: usize,
) -> std::result::Result<Segment, CreateError> {
    let Some(dir) = dir else {
        return Segment::create_anonymous(id, slot, capacity, SegmentOrigin::Log)
            .map_err(CreateError::NotInstalled);
    };
    let path = dir::segment_path(dir, id);
    let tmp = dir::tmp_path(&path);
    let mut segment = Segment::create_file(backend, &tmp, id, slot, capacity, SegmentOrigin::Log)
        .map_err(CreateError::NotInstalled)?;
    segment
        .flush_range(0, SEGMENT_HEADER_BYTES)
        .and_then(|_| segment.sync_file())
        .and_then(|_| {
            backend
                .rename(&tmp, &path)
                .map_err(|e| Error::io(&path, "install segment", e))
        })
        .map_err(CreateError::NotInstalled)?;
    segment.renamed(&path);
    dir::sync_dir(backend, dir).map_err(CreateError::InstalledUnsynced)?;
    Ok(segment)
}

/// Rebuilds the index while segments load.
struct Loader {
    index: Index,
    table: SegmentTable,
    now_ms: u64,
    last_seq: u64,
    key_counts: [u64; 8],
    /// Shards holding tombstone slots, purged at the end.
    shards_with_tombstones: Vec<bool>,
    records: u64,
    /// Lowest and highest seq seen in the segment being loaded, stored into it once it is
    /// done (`finish_segment`) rather than with two atomic updates per record.
    segment_seqs: (u64, u64),
}

/// A record found by a scan or named by a hint, waiting in a group for `resolve_group`.
struct Found<'a> {
    kind: RecordKind,
    namespace_tag: u8,
    key: &'a [u8],
    location: Location,
    seq: u64,
    expiry_ms: u64,
    record_len: usize,
    hash: u64,
}

/// Records resolved together: their index slots are loaded first, all at once, so the cache
/// misses of a 10M-key index overlap instead of coming one per record (they were most of a
/// hinted open's time).
const RESOLVE_GROUP: usize = 16;

impl<'a> Found<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        kind: RecordKind,
        namespace_tag: u8,
        key: &'a [u8],
        location: Location,
        seq: u64,
        expiry_ms: u64,
        record_len: usize,
    ) -> Found<'a> {
        Found {
            kind,
            namespace_tag,
            key,
            location,
            seq,
            expiry_ms,
            record_len,
            hash: key_hash(namespace_tag, key),
        }
    }
}

impl Loader {
    /// Adds a record to `group`, resolving the group once it is full.
    fn push<'a>(&mut self, group: &mut Vec<Found<'a>>, found: Found<'a>) {
        group.push(found);
        if group.len() == RESOLVE_GROUP {
            self.resolve_group(group);
        }
    }

    /// Resolves (and empties) a group: touches every record's home slot, then applies each
    /// in order.
    fn resolve_group(&mut self, group: &mut Vec<Found<'_>>) {
        let mut touched = 0u64;
        for found in group.iter() {
            let shard = self.index.shard_mut(Index::shard_of(found.hash));
            touched ^= shard.table(found.namespace_tag).home_tag(found.hash) as u64;
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
        } = found;
        self.records += 1;
        self.last_seq = self.last_seq.max(seq);
        self.segment_seqs = (self.segment_seqs.0.min(seq), self.segment_seqs.1.max(seq));
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
            if live { expiry_ms } else { EXPIRY_TOMBSTONE },
        );
        let (table, _) = index.shard_mut(shard).table_mut(namespace_tag);
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
    /// for the first, the last and every `HINT_SAMPLE_EVERY`-th entry. Checking every record
    /// would read the whole segment, which is what the hint file is there to avoid; a record the
    /// sample missed is still checked on read (CRC and key compare).
    fn load_hints(
        &mut self,
        segment: &Arc<Segment>,
        hints: &HintFile,
    ) -> std::result::Result<(), String> {
        const HINT_SAMPLE_EVERY: u64 = 64;
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
            if entries == 0
                || entries.is_multiple_of(HINT_SAMPLE_EVERY)
                || entries + 1 == hints.entries
            {
                let header = segment.bytes(start, RECORD_HEADER_BYTES);
                let (key_len, value_len) = format::peek_lengths(header);
                if format::peek_seq(header) != entry.seq
                    || key_len != entry.key.len()
                    || format::record_len(key_len, value_len) != entry.record_len as usize
                    || header[4] != entry.kind as u8
                    || header[5] != entry.namespace_tag
                    || segment.bytes(start + RECORD_HEADER_BYTES, key_len) != entry.key
                {
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
            let found = Found::new(
                entry.kind,
                entry.namespace_tag,
                entry.key,
                location,
                entry.seq,
                entry.expiry_ms,
                entry.record_len as usize,
            );
            self.push(&mut group, found);
        }
        self.resolve_group(&mut group);
        self.finish_segment(segment);
        Ok(())
    }

    /// Scans a segment record by record. Returns where the valid records end and, if the scan
    /// stopped early, why. `strict` segments must decode to their last byte.
    fn scan(&mut self, segment: &Arc<Segment>, strict: bool) -> Result<(usize, Option<String>)> {
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
                self.load_batch(segment, offset, record.seq, record.value, &mut group)?;
            } else {
                let location = Location {
                    segment: segment.slot,
                    offset: offset as u32,
                };
                let found = Found::new(
                    record.kind,
                    record.namespace_tag,
                    record.key,
                    location,
                    record.seq,
                    record.expiry_ms,
                    record.len,
                );
                self.push(&mut group, found);
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
        seq: u64,
        body: &'a [u8],
        group: &mut Vec<Found<'a>>,
    ) -> Result<()> {
        segment.add_dead(RECORD_HEADER_BYTES);
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
            if inner.kind == RecordKind::Batch || inner.seq != seq {
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
            let found = Found::new(
                inner.kind,
                inner.namespace_tag,
                inner.key,
                location,
                seq,
                inner.expiry_ms,
                inner.len,
            );
            self.push(group, found);
            at += inner.len;
        }
        Ok(())
    }

    /// Drops tombstone slots: they only mattered while older records could still show up.
    fn purge_tombstones(&mut self) {
        for shard in 0..SHARD_COUNT {
            if !self.shards_with_tombstones[shard] {
                continue;
            }
            let segments = &self.table;
            for table in self.index.shard_mut(shard).tables.iter_mut() {
                table.retain(|slot| {
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

/// Why the tail's records must go because the segment before it, whose seal never finished,
/// lost records at its end. A rotation appends the write that did not fit as the tail's first
/// record, so that record's seq must follow the last one in the segment before; and a rotation
/// away from a segment without records seals it before the tail exists, so an unsealed segment
/// without records lost all of them.
fn tail_gap(tail: &Segment, unsealed: Option<(Option<u64>, PathBuf)>) -> Option<String> {
    let (last_seq, path) = unsealed?;
    let bytes = tail.scan_bytes();
    let first = format::decode_record(&bytes[SEGMENT_HEADER_BYTES..], 0, true).ok()?;
    match last_seq {
        Some(last_seq) if first.seq == last_seq + 1 => None,
        Some(last_seq) => Some(format!(
            "it starts at seq {}, but {} (whose seal never finished) ends at seq {last_seq}: \
             the records between were lost",
            first.seq,
            path.display()
        )),
        None => Some(format!(
            "it starts at seq {}, but no record of {} (whose seal never finished) survived",
            first.seq,
            path.display()
        )),
    }
}

pub(crate) fn recover(config: &Config, backend: &Backend, dir: Option<&Path>) -> Result<Recovered> {
    let started = Instant::now();
    let mut report = RecoveryReport::default();
    let mut loader = Loader {
        index: Index::new(),
        table: SegmentTable::default(),
        now_ms: config.clock.now_ms(),
        last_seq: 0,
        key_counts: [0; 8],
        shards_with_tombstones: vec![false; SHARD_COUNT],
        records: 0,
        segment_seqs: (u64::MAX, 0),
    };
    let Some(dir) = dir else {
        let slot = loader.table.reserve()?;
        let segment = Arc::new(
            create_log_segment(backend, None, 1, slot, config.segment_bytes)
                .map_err(CreateError::into_error)?,
        );
        loader.table.install(segment.clone());
        return Ok(Recovered {
            index: loader.index,
            segments: loader.table,
            active: SegmentWriter::new(segment).expect("fresh segment"),
            last_seq: 0,
            next_segment_id: 2,
            key_counts: [0; 8],
            report,
        });
    };

    if let Some(manifest) = Manifest::read(backend, dir)? {
        (config.logger)(&format!(
            "finishing an interrupted compaction: installing segments {:?}, removing {:?}",
            manifest.outputs, manifest.inputs
        ));
        manifest.finish(backend, dir)?;
        report.finished_compaction = true;
    }

    let mut segment_ids = Vec::new();
    let mut hint_ids = Vec::new();
    let names = backend
        .list_dir(dir)
        .map_err(|e| Error::io(dir, "list data directory", e))?;
    for name in names {
        let Some(name) = name.to_str() else { continue };
        match dir::classify(name) {
            FileKind::Segment(id) => segment_ids.push(id),
            FileKind::Temporary => {
                // Output of a compaction that never committed, or a segment never installed.
                let path = dir.join(name);
                backend
                    .remove_file(&path)
                    .map_err(|e| Error::io(&path, "remove temporary file", e))?;
            }
            FileKind::Hint(id) => hint_ids.push(id),
            FileKind::Other => {}
        }
    }
    segment_ids.sort_unstable();
    // A hint file is deleted only after its segment, and a compaction that deletes both leaves
    // its manifest until both are gone (acted on above). A hint without its segment therefore
    // means the segment file was lost: its records, and the older values they replaced or
    // deleted, cannot be told apart from live data any more. Refuse to guess.
    if let Some(&id) = hint_ids
        .iter()
        .find(|id| segment_ids.binary_search(id).is_err())
    {
        return Err(Error::corrupt(
            dir::segment_path(dir, id),
            0,
            format!(
                "segment file is missing but its hint file {} remains: its records are lost; \
                 restore the segment, or delete the hint file to accept the loss",
                dir::hint_path(dir, id).display()
            ),
        ));
    }

    // Map every segment read-only first, to learn which is the tail (the newest log segment).
    let mut segments = Vec::new();
    for &id in &segment_ids {
        let path = dir::segment_path(dir, id);
        let slot = loader.table.reserve()?;
        let segment = Segment::open_file(backend, &path, slot, false)?;
        if segment.id != id {
            return Err(Error::corrupt(
                &path,
                16,
                format!("header names segment {}, file name says {id}", segment.id),
            ));
        }
        segments.push(segment);
    }
    let mut log_ids: Vec<u64> = segments
        .iter()
        .filter(|s| s.origin == SegmentOrigin::Log)
        .map(|s| s.id)
        .collect();
    log_ids.sort_unstable();
    let tail_id = log_ids.last().copied();
    // The log segment before the tail may have been waiting for its seal (flush, cut to its
    // last record, fsync: done off the writer's path) when the process stopped.
    let sealing_id = log_ids.iter().rev().nth(1).copied();
    let mut discard_tail = None;
    // The segment before the tail, if its seal never finished, and the last seq in it: the tail
    // must then continue right after it, or records at its end were lost (`tail_gap`).
    let mut unsealed_before_tail = None;

    // Hint files tell how many keys to expect: size the index once instead of growing it. Only
    // their footers are read here; each file is loaded (and checked) when its segment is.
    let expected_keys: u64 = segments
        .iter()
        .filter(|s| Some(s.id) != tail_id)
        .filter_map(|s| HintFile::footer_entries(backend, &dir::hint_path(dir, s.id)))
        .sum();
    loader
        .index
        .reserve(crate::format::Namespace::Kv.tag(), expected_keys as usize);

    let mut active = None;
    for segment in segments {
        let is_tail = Some(segment.id) == tail_id;
        let hint = if is_tail {
            None
        } else {
            match HintFile::read(backend, &dir::hint_path(dir, segment.id), segment.id) {
                Ok(hint) => hint,
                Err(reason) => {
                    let line = format!(
                        "{}: {reason}; scanning the segment instead",
                        dir::hint_path(dir, segment.id).display()
                    );
                    (config.logger)(&line);
                    report.bad_hints.push(line);
                    None
                }
            }
        };
        // Only a file still at its preallocated length can be waiting for its seal: a sealed
        // one was cut to its last record (and ends on a page boundary only by chance), so
        // damage in it is an error, as in any sealed segment, not a torn write to cut off.
        let is_sealing = Some(segment.id) == sealing_id
            && segment
                .capacity()
                .is_multiple_of(SEGMENT_CAPACITY_ALIGN_BYTES);
        let segment = if is_tail {
            let path = dir::segment_path(dir, segment.id);
            Arc::new(Segment::open_file(backend, &path, segment.slot, true)?)
        } else {
            segment.mark_sealed();
            Arc::new(segment)
        };
        loader.table.install(segment.clone());
        let from_hint = match &hint {
            Some(hint) => match loader.load_hints(&segment, hint) {
                Ok(()) => true,
                Err(reason) => {
                    let line = format!(
                        "{}: {reason}; scanning the segment instead",
                        dir::hint_path(dir, segment.id).display()
                    );
                    (config.logger)(&line);
                    report.bad_hints.push(line);
                    false
                }
            },
            None => false,
        };
        if from_hint {
            // Hint files are only written for segments whose seal finished.
            segment.mark_durably_sealed();
            segment.mark_loaded_from_hints();
            report.segments_from_hints += 1;
            continue;
        }
        report.segments_scanned += 1;
        if is_tail && discard_tail.is_none() {
            discard_tail = tail_gap(&segment, unsealed_before_tail.take());
        }
        if is_tail {
            if let Some(reason) = discard_tail.take() {
                // The records here came after records lost in the segment before: keeping them
                // would not leave a prefix of the log. None was acknowledged under `always`
                // (a flush covers the sealing segment before the active one).
                let mut writer =
                    SegmentWriter::new(segment.clone()).expect("recovery holds the only writer");
                let zeroed = writer.zero_tail();
                segment.flush_range(SEGMENT_HEADER_BYTES, segment.capacity())?;
                let path = segment.display_path();
                (config.logger)(&format!(
                    "discarded {zeroed} bytes of {}: {reason}",
                    path.display()
                ));
                report.torn_tail = Some(TornTail {
                    path,
                    offset: SEGMENT_HEADER_BYTES as u64,
                    reason,
                });
                active = Some(writer);
                continue;
            }
        }
        segment.set_published(SEGMENT_HEADER_BYTES);
        let (end, stop) = loader.scan(&segment, !is_tail && !is_sealing)?;
        if is_sealing {
            // Finish its seal: cut the file to its last whole record. Bytes after a clean end
            // must be zeros; anything else there (or a torn record) means records were lost,
            // and then the tail's records cannot be kept either.
            let path = segment.display_path();
            let file_len = segment.capacity();
            let garbage_after = segment.scan_bytes()[end..].iter().any(|&b| b != 0);
            if let Some(reason) = stop.or_else(|| {
                garbage_after.then(|| "non-zero bytes after the last record".to_string())
            }) {
                (config.logger)(&format!(
                    "segment {} was waiting for its seal and is torn at byte {end} ({reason}); cut there",
                    path.display()
                ));
                discard_tail = Some(format!(
                    "the segment before it was torn at byte {end} of {}",
                    path.display()
                ));
            } else if file_len > end {
                // Zeros after the last record: the room a rotation left, or records whose pages
                // never reached the disk. Only the tail's first seq can tell them apart.
                let max_seq = segment.max_seq.load(std::sync::atomic::Ordering::Relaxed);
                unsealed_before_tail = Some(((max_seq > 0).then_some(max_seq), path.clone()));
            }
            if file_len > end {
                backend
                    .open(&path, true)
                    .and_then(|file| {
                        file.set_len(end as u64)?;
                        file.sync_all()
                    })
                    .map_err(|e| Error::io(&path, "finish sealing segment", e))?;
            }
            segment.mark_durably_sealed();
            continue;
        }
        if !is_tail {
            segment.mark_durably_sealed();
        }
        if is_tail {
            let mut writer =
                SegmentWriter::new(segment.clone()).expect("recovery holds the only writer");
            // Whatever follows the last whole record goes, torn or not: a stale record left
            // past a gap could otherwise line up with a later append and come back.
            let zeroed = writer.zero_tail();
            if zeroed > 0 {
                segment.flush_range(end, segment.capacity())?;
            }
            if let Some(reason) = stop {
                let path = segment.display_path();
                (config.logger)(&format!(
                    "truncated torn tail of {} at byte {end} ({reason}); zeroed {zeroed} bytes after it",
                    path.display()
                ));
                report.torn_tail = Some(TornTail {
                    path,
                    offset: end as u64,
                    reason,
                });
            }
            active = Some(writer);
        }
    }
    loader.purge_tombstones();
    report.records_scanned = loader.records;

    let mut next_segment_id = segment_ids.last().map_or(1, |id| id + 1);
    let active = match active {
        Some(writer) => writer,
        None => {
            let slot = loader.table.reserve()?;
            let segment = Arc::new(
                create_log_segment(
                    backend,
                    Some(dir),
                    next_segment_id,
                    slot,
                    // As at rotation: an unsealed segment is known by its aligned length.
                    config
                        .segment_bytes
                        .next_multiple_of(SEGMENT_CAPACITY_ALIGN_BYTES),
                )
                .map_err(CreateError::into_error)?,
            );
            next_segment_id += 1;
            loader.table.install(segment.clone());
            SegmentWriter::new(segment).expect("fresh segment")
        }
    };
    report.segments = loader.table.all().count();
    report.keys = loader.key_counts.iter().sum();
    report.last_seq = loader.last_seq;
    report.duration = started.elapsed();
    Ok(Recovered {
        index: loader.index,
        segments: loader.table,
        active,
        last_seq: loader.last_seq,
        next_segment_id,
        key_counts: loader.key_counts,
        report,
    })
}
