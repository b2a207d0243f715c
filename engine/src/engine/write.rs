//! The write path: one writer at a time appends a group of writes as one record, points the
//! index at it, and rotates to a new segment when the active one is full.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLockWriteGuard};

use super::batch::{encode_batch, encoded_len, Ops};
use super::undo::{MarkerUndo, UndoItem};
use super::{key_hash, Inner, Op, Origin, SegmentTable, Writer, BATCH_OPS_MAX, SEGMENT_BYTES_MAX};
use crate::error::{Error, Result};
use crate::format::{self, RecordKind, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::index::{Index, Location, Shard, Slot};
use crate::ranges::Marker;
use crate::recovery::{self, CreateError};
use crate::segment::{Segment, SegmentWriter, SEGMENT_CAPACITY_ALIGN_BYTES};

/// The write path's bookkeeping for a batch, kept by the writer and reused (its locks make it
/// single-threaded): a batch of a hundred keys allocated three vectors for it every time.
#[derive(Default)]
pub(crate) struct ApplyScratch {
    /// (op number, key hash, record offset) of each indexed op.
    indexed: Vec<(usize, u64, usize)>,
    /// The shards to lock (`Index::place`: namespace and shard in one number), sorted and
    /// deduplicated.
    shards: Vec<usize>,
    /// For each indexed op, its shard's place, then the position of that shard's guard.
    guard_of: Vec<usize>,
    /// A replicated engine's undo items of the write being applied, before the undo log
    /// takes them (kept, empty, for the next write).
    undo: Vec<UndoItem>,
    /// `append_run`'s record of each entry it wrote: its segment and first write's offset.
    placed: Vec<(Arc<Segment>, usize)>,
    /// `append_run`'s records, encoded before they are written.
    run_bytes: Vec<u8>,
}

/// One entry of a run a follower appends at once (`Engine::append_entries_ops`): its seq, its
/// term and its writes.
pub struct EntryOps<'a> {
    pub seq: u64,
    pub term: u64,
    pub ops: &'a [Op<'a>],
}

/// The offset of the first write's record in a record of `count` writes written at `start`
/// (a batch's writes follow its header).
fn first_record(start: usize, count: usize) -> usize {
    match count {
        1 => start,
        _ => start + RECORD_HEADER_BYTES,
    }
}

impl Inner {
    /// Appends a group of writes as one record (or a batch record) at the next seq, in the
    /// writer's current term, and updates the index. Caller holds the writer lock.
    pub(crate) fn append<O: Ops + ?Sized>(&self, writer: &mut Writer, ops: &O) -> Result<u64> {
        let seq = writer.next_seq;
        let term = writer.term;
        self.append_at(writer, ops, seq, term)
    }

    /// Appends a group of writes at `seq` (which must be the next one) in `term`.
    pub(crate) fn append_at<O: Ops + ?Sized>(
        &self,
        writer: &mut Writer,
        ops: &O,
        seq: u64,
        term: u64,
    ) -> Result<u64> {
        writer.writes_through_file = false;
        let (segment, first_record) = self.write_record(writer, ops, seq, term)?;
        let mut undo_log = self.lock_undo_log();
        let mut undo = undo_log
            .as_ref()
            .map(|_| std::mem::take(&mut writer.scratch.undo));
        let scratch = &mut writer.scratch;
        self.apply_to_index(&segment, first_record, ops, seq, undo.as_mut(), scratch);
        if let (Some(log), Some(mut items)) = (undo_log.as_mut(), undo) {
            log.push(seq, &mut items);
            writer.scratch.undo = items;
        }
        drop(undo_log);
        writer.last_term = term;
        if self.observers.any() || self.waiters.any() {
            let ops: Vec<Op<'_>> = (0..ops.count()).map(|i| ops.at(i)).collect();
            if self.observers.watches_any(&ops) {
                self.observers.deliver(seq, term, &ops, Origin::Live);
            }
            writer.next_seq += 1;
            self.last_seq.store(seq, Ordering::Release);
            self.waiters.wake_for(&ops);
        } else {
            writer.next_seq += 1;
            self.last_seq.store(seq, Ordering::Release);
        }
        // Only writers holding the writer lock change it: a load and a store, not a locked add.
        self.writes
            .store(self.writes.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        Ok(seq)
    }

    /// Writes a group of writes as the record of `seq` (which must be the next one) in
    /// `term` and publishes it, the index not yet pointed at it. Returns its segment and the
    /// offset of its first write's record.
    fn write_record<O: Ops + ?Sized>(
        &self,
        writer: &mut Writer,
        ops: &O,
        seq: u64,
        term: u64,
    ) -> Result<(Arc<Segment>, usize)> {
        let total = self.checked_len(ops)?;
        assert_eq!(seq, writer.next_seq, "appends take the next seq");
        if Inner::needs_rotation(writer, total, 0) {
            self.rotate(writer, total)?;
        }
        let start = writer
            .active
            .append(total, |out| encode_batch(out, ops, seq, term));
        writer.active.publish();
        let segment = writer.active.segment.clone();
        Inner::note_record(&segment, seq, ops.count());
        Ok((segment, first_record(start, ops.count())))
    }

    /// The bytes a group of writes takes in the log, once the engine takes writes and the
    /// group passes `check_group`.
    fn checked_len<O: Ops + ?Sized>(&self, ops: &O) -> Result<usize> {
        self.check_writable()?;
        self.check_group(ops)
    }

    /// Whether a record of `total` bytes, after `pending` bytes not yet written, needs a new
    /// segment. A sealed active segment means an earlier rotation sealed it but could not
    /// create the next one (a full disk, say): try again rather than write past its end.
    fn needs_rotation(writer: &Writer, total: usize, pending: usize) -> bool {
        total > writer.active.remaining() - pending || writer.active.segment.is_sealed()
    }

    /// Notes in `segment` a record of `count` writes written at `seq`.
    fn note_record(segment: &Segment, seq: u64, count: usize) {
        segment.note_appended_seq(seq);
        if count > 1 {
            // The batch header itself is overhead compaction reclaims.
            segment.add_dead(RECORD_HEADER_BYTES);
        }
    }

    /// Appends a run of entries a leader chose (`Engine::append_entries_ops`), each the next
    /// seq in a term no older than the last, whose writes are all puts and deletes that no
    /// observer watches: their records are encoded into one buffer and written with one
    /// `pwrite` per segment they land in (`SegmentWriter::write`: the follower's appends leave
    /// no writable page-table entries for its flush to write-protect), then the index is
    /// pointed at them in one pass over every write of the run, whose cache misses overlap
    /// (`apply_run_to_index`). On an error, the entries before the failing one are in the log
    /// and the index, as if appended one by one, and no later one is.
    pub(crate) fn append_run(&self, writer: &mut Writer, entries: &[EntryOps<'_>]) -> Result<()> {
        writer.writes_through_file = true;
        let mut placed = std::mem::take(&mut writer.scratch.placed);
        let mut bytes = std::mem::take(&mut writer.scratch.run_bytes);
        placed.clear();
        bytes.clear();
        let (seq_before, term_before) = (writer.next_seq, writer.last_term);
        // Entries of `placed` whose records are written and published.
        let mut written = 0;
        let mut outcome = Ok(());
        for entry in entries {
            let checked = Inner::check_next(writer, entry.seq, entry.term)
                .and_then(|()| self.checked_len(entry.ops));
            let total = match checked {
                Ok(total) => total,
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            };
            if Inner::needs_rotation(writer, total, bytes.len()) {
                // The run's records for this segment first, then the next segment.
                let rotated = Inner::write_run_bytes(writer, &mut bytes)
                    .inspect(|()| written = placed.len())
                    .and_then(|()| self.rotate(writer, total));
                if let Err(error) = rotated {
                    outcome = Err(error);
                    break;
                }
            }
            let at = writer.active.offset() + bytes.len();
            let start = bytes.len();
            bytes.resize(start + total, 0);
            encode_batch(&mut bytes[start..], entry.ops, entry.seq, entry.term);
            placed.push((
                writer.active.segment.clone(),
                first_record(at, entry.ops.len()),
            ));
            // The seq is taken (the next entry's check reads it); readers see it once the
            // index points at the run (`last_seq` below).
            writer.next_seq += 1;
            writer.last_term = entry.term;
        }
        match Inner::write_run_bytes(writer, &mut bytes) {
            Ok(()) => written = placed.len(),
            Err(error) => outcome = outcome.and(Err(error)),
        }
        // Entries encoded but not written are not in the log.
        if written < placed.len() {
            placed.truncate(written);
            writer.next_seq = seq_before + written as u64;
            writer.last_term = match written {
                0 => term_before,
                n => entries[n - 1].term,
            };
        }
        let done = &entries[..written];
        for (entry, (segment, _)) in done.iter().zip(&placed) {
            Inner::note_record(segment, entry.seq, entry.ops.len());
        }
        if let Some(last) = done.last() {
            self.apply_run_to_index(done, &placed, &mut writer.scratch);
            self.last_seq.store(last.seq, Ordering::Release);
            for entry in done {
                self.waiters.wake_for(entry.ops);
            }
            self.writes.store(
                self.writes.load(Ordering::Relaxed) + done.len() as u64,
                Ordering::Relaxed,
            );
        }
        placed.clear();
        bytes.clear();
        writer.scratch.placed = placed;
        writer.scratch.run_bytes = bytes;
        outcome
    }

    /// Writes the records `append_run` encoded for the active segment at its write position
    /// and publishes them; `bytes` is left empty (on an error too: none of them are in the
    /// log then).
    fn write_run_bytes(writer: &mut Writer, bytes: &mut Vec<u8>) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let written = writer.active.write(bytes);
        bytes.clear();
        written?;
        writer.active.publish();
        Ok(())
    }

    /// A replicated engine's undo log, locked. It stays locked across an index update, so
    /// that compaction, which asks the index first and the undo log second, finds a replaced
    /// record in one or the other.
    fn lock_undo_log(&self) -> Option<std::sync::MutexGuard<'_, super::undo::UndoLog>> {
        self.undo
            .as_ref()
            .map(|log| log.lock().expect("undo log lock"))
    }

    /// Appends an entry a leader chose at `seq` in `term`, if it may come next
    /// (`check_next`).
    pub(crate) fn append_next<O: Ops + ?Sized>(
        &self,
        writer: &mut Writer,
        ops: &O,
        seq: u64,
        term: u64,
    ) -> Result<u64> {
        Inner::check_next(writer, seq, term)?;
        self.append_at(writer, ops, seq, term)
    }

    /// Whether an entry at `seq` in `term` may be appended next: the log's next seq, in a
    /// term no older than its last entry's.
    pub(crate) fn check_next(writer: &Writer, seq: u64, term: u64) -> Result<()> {
        if seq != writer.next_seq {
            return Err(Error::Invalid(format!(
                "entry {seq} does not follow the log's last entry {}",
                writer.next_seq - 1
            )));
        }
        if term < writer.last_term {
            return Err(Error::Invalid(format!(
                "entry {seq} has term {term}, older than the last entry's {}",
                writer.last_term
            )));
        }
        Ok(())
    }

    /// Checks a group of writes before any byte of it is written: its size, each op's limits,
    /// and that no range marker lowers a bound already in effect. Returns the bytes it takes
    /// in the log.
    fn check_group<O: Ops + ?Sized>(&self, ops: &O) -> Result<usize> {
        let count = ops.count();
        if count == 0 || count > BATCH_OPS_MAX {
            return Err(Error::Invalid(format!(
                "batch of {count} writes is outside 1..={BATCH_OPS_MAX}"
            )));
        }
        let mut markers = 0;
        let mut total = if count == 1 { 0 } else { RECORD_HEADER_BYTES };
        for i in 0..count {
            let op = ops.at(i);
            op.validate()?;
            markers += (op.kind == RecordKind::DropRange) as usize;
            total += op.record_len();
        }
        debug_assert_eq!(total, encoded_len(ops));
        if total > SEGMENT_BYTES_MAX - SEGMENT_HEADER_BYTES {
            return Err(Error::TooLarge {
                field: "batch",
                bytes: total,
                limit: SEGMENT_BYTES_MAX - SEGMENT_HEADER_BYTES,
            });
        }
        if markers > 0 {
            self.check_markers(ops)?;
        }
        Ok(total)
    }

    /// No range marker of `ops` may lower a bound in effect, nor share its prefix with another.
    #[cold]
    fn check_markers<O: Ops + ?Sized>(&self, ops: &O) -> Result<()> {
        let ranges = self.ranges.read().expect("range markers lock");
        let markers: Vec<Op<'_>> = (0..ops.count())
            .map(|i| ops.at(i))
            .filter(|op| op.kind == RecordKind::DropRange)
            .collect();
        for (at, op) in markers.iter().enumerate() {
            if let Some(refusal) = ranges.refusal(op.namespace.tag(), op.key, op.value) {
                return Err(Error::Invalid(refusal));
            }
            if markers[at + 1..]
                .iter()
                .any(|other| other.namespace == op.namespace && other.key == op.key)
            {
                return Err(Error::Invalid(format!(
                    "two drop_range markers for prefix {:?} in one batch",
                    op.key
                )));
            }
        }
        Ok(())
    }

    /// Points the index at freshly appended records (and records log-only ones and range
    /// markers where they belong). Every shard the batch touches is locked (in (namespace,
    /// shard) order, so two writers cannot deadlock) before any changes, so no reader sees
    /// half a batch. `scratch` is the writer's reusable bookkeeping (no allocation a write but
    /// the shard guards').
    pub(super) fn apply_to_index<O: Ops + ?Sized>(
        &self,
        segment: &Arc<Segment>,
        first_record: usize,
        ops: &O,
        seq: u64,
        mut undo: Option<&mut Vec<UndoItem>>,
        scratch: &mut ApplyScratch,
    ) {
        if ops.count() == 1 {
            let op = ops.at(0);
            if op.kind.is_indexed() {
                // One write, one shard: no bookkeeping.
                let hash = key_hash(op.namespace.tag(), op.key);
                let mut shard = self.index.write(op.namespace.tag(), Index::shard_of(hash));
                self.apply_one(&mut shard, segment, &op, hash, first_record, undo);
                return;
            }
        }
        let ApplyScratch {
            indexed,
            shards,
            guard_of,
            ..
        } = scratch;
        indexed.clear();
        shards.clear();
        guard_of.clear();
        // (op number, hash, offset) of every indexed op; the others are handled on the way.
        let mut offset = first_record;
        for i in 0..ops.count() {
            let op = ops.at(i);
            match op.kind {
                RecordKind::Put | RecordKind::Delete => {
                    let hash = key_hash(op.namespace.tag(), op.key);
                    indexed.push((i, hash, offset));
                    guard_of.push(Index::place(op.namespace.tag(), Index::shard_of(hash)));
                }
                RecordKind::Append => segment.note_append(op.namespace.tag(), op.record_len()),
                RecordKind::DropRange => {
                    let location = Location {
                        segment: segment.slot,
                        offset: offset as u32,
                    };
                    self.install_marker(&op, seq, location, undo.as_deref_mut());
                }
                RecordKind::Batch => unreachable!("validated: batches do not nest"),
            }
            offset += op.record_len();
        }
        let mut guards = self.lock_shards(shards, guard_of);
        Inner::warm(indexed, guard_of, &guards);
        for (&(i, hash, offset), &at) in indexed.iter().zip(guard_of.iter()) {
            let op = ops.at(i);
            self.apply_one(
                &mut guards[at],
                segment,
                &op,
                hash,
                offset,
                undo.as_deref_mut(),
            );
        }
    }

    /// Locks the shards `guard_of` names (`Index::place`s), in (namespace, shard) order so
    /// two writers cannot deadlock, and turns each entry of `guard_of` into the position of
    /// its shard's guard.
    fn lock_shards(
        &self,
        shards: &mut Vec<usize>,
        guard_of: &mut [usize],
    ) -> Vec<RwLockWriteGuard<'_, Shard>> {
        shards.clear();
        shards.extend_from_slice(guard_of);
        shards.sort_unstable();
        shards.dedup();
        let guards: Vec<_> = shards
            .iter()
            .map(|&place| self.index.write_at(place))
            .collect();
        for slot in guard_of.iter_mut() {
            *slot = shards.binary_search(slot).expect("shard locked");
        }
        guards
    }

    /// As in `get_many_with`: loads every key's home slot, then the record a matching tag
    /// points at (an overwrite compares keys there), before anything changes, so that the
    /// cache misses of a batch's keys overlap instead of coming one per key.
    fn warm(
        indexed: &[(usize, u64, usize)],
        guard_of: &[usize],
        guards: &[RwLockWriteGuard<'_, Shard>],
    ) {
        let mut touched = 0u64;
        for (&(_, hash, _), &at) in indexed.iter().zip(guard_of.iter()) {
            touched ^= guards[at].table.home_tag(hash) as u64;
        }
        for (&(_, hash, _), &at) in indexed.iter().zip(guard_of.iter()) {
            let shard = &guards[at];
            if let Some(location) = shard.table.first_candidate(hash) {
                let candidate = shard.segments.get(location.segment);
                let offset = location.offset as usize;
                touched ^= candidate.bytes(offset, 1)[0] as u64;
                // The key follows the 40-byte header, so it ends in the next cache line for
                // most records (a 16-byte key: unless the record starts in a line's first 9
                // bytes): load that line too, or the key compare misses there.
                if let Some(&[byte]) = candidate.bytes_checked(offset + 63, 1) {
                    touched ^= byte as u64;
                }
            }
        }
        std::hint::black_box(touched);
    }

    /// `apply_to_index` for a run of entries (`append_run`), each written at its `placed`
    /// segment and offset: every shard the run touches is locked at once and every key warmed
    /// before the first change, then the entries are applied in order, each with its own
    /// undo entry.
    fn apply_run_to_index(
        &self,
        entries: &[EntryOps<'_>],
        placed: &[(Arc<Segment>, usize)],
        scratch: &mut ApplyScratch,
    ) {
        let mut undo_log = self.lock_undo_log();
        let ApplyScratch {
            indexed,
            shards,
            guard_of,
            undo,
            ..
        } = scratch;
        indexed.clear();
        guard_of.clear();
        for (entry, (_, first_record)) in entries.iter().zip(placed) {
            let mut offset = *first_record;
            for (i, op) in entry.ops.iter().enumerate() {
                debug_assert!(matches!(op.kind, RecordKind::Put | RecordKind::Delete));
                let hash = key_hash(op.namespace.tag(), op.key);
                indexed.push((i, hash, offset));
                guard_of.push(Index::place(op.namespace.tag(), Index::shard_of(hash)));
                offset += op.record_len();
            }
        }
        let mut guards = self.lock_shards(shards, guard_of);
        Inner::warm(indexed, guard_of, &guards);
        let mut next = 0;
        for (entry, (segment, _)) in entries.iter().zip(placed) {
            for _ in entry.ops {
                let (i, hash, offset) = indexed[next];
                let items = undo_log.as_ref().map(|_| &mut *undo);
                self.apply_one(
                    &mut guards[guard_of[next]],
                    segment,
                    &entry.ops[i],
                    hash,
                    offset,
                    items,
                );
                next += 1;
            }
            if let Some(log) = undo_log.as_mut() {
                log.push(entry.seq, undo);
            }
        }
    }

    /// Puts a range marker written at `location` in effect; the one it replaces is dead.
    pub(super) fn install_marker(
        &self,
        op: &Op<'_>,
        seq: u64,
        location: Location,
        undo: Option<&mut Vec<UndoItem>>,
    ) {
        let marker = Marker {
            bound: op.value.to_vec(),
            seq,
            location,
            record_len: op.record_len(),
        };
        let replaced = self.ranges.write().expect("range markers lock").install(
            op.namespace.tag(),
            op.key,
            marker,
        );
        if let Some(old) = &replaced {
            let segments = self.segments_read();
            segments.get(old.location.segment).add_dead(old.record_len);
        }
        if let Some(undo) = undo {
            undo.push(UndoItem::Marker(Box::new(MarkerUndo {
                tag: op.namespace.tag(),
                prefix: op.key.to_vec(),
                written: location,
                record_len: op.record_len(),
                before: replaced,
            })));
        }
    }

    /// Points the index at one record written at `offset` of `segment`.
    pub(super) fn apply_one(
        &self,
        shard: &mut Shard,
        segment: &Arc<Segment>,
        op: &Op<'_>,
        hash: u64,
        offset: usize,
        undo: Option<&mut Vec<UndoItem>>,
    ) {
        let location = Location {
            segment: segment.slot,
            offset: offset as u32,
        };
        let tag = op.namespace.tag();
        let (table, segments) = shard.split_mut();
        let found = table.find(hash, |l| Inner::record_is(segments, l, tag, op.key));
        if let Some(position) = found {
            Inner::mark_dead(segments, table.slot(position).location());
        }
        if let Some(undo) = undo {
            let written = (op.kind == RecordKind::Put).then_some(location);
            let before = found.map(|position| table.slot(position));
            if written.is_some() || before.is_some() {
                undo.push(UndoItem::Slot {
                    tag,
                    hash,
                    written,
                    before,
                });
            }
        }
        match (op.kind, found) {
            (RecordKind::Put, Some(position)) => table.replace(
                position,
                Slot::new(hash, location, Slot::indexed_expiry(op.expiry_ms)),
            ),
            (RecordKind::Put, None) => {
                table.insert_new(Slot::new(
                    hash,
                    location,
                    Slot::indexed_expiry(op.expiry_ms),
                ));
                self.key_counts[tag as usize].fetch_add(1, Ordering::Relaxed);
            }
            (_, found) => {
                if let Some(position) = found {
                    table.remove_at(position);
                    self.key_counts[tag as usize].fetch_sub(1, Ordering::Relaxed);
                }
                // A tombstone is dead from birth: it only shadows older records.
                segment.add_dead(op.record_len());
            }
        }
    }

    /// Takes `key` out of the index, its record counted dead (`Engine::forget`; the caller
    /// holds the writer lock). Whether it was there.
    pub(crate) fn forget(&self, namespace: crate::format::Namespace, key: &[u8]) -> bool {
        let tag = namespace.tag();
        let hash = key_hash(tag, key);
        let mut shard = self.index.write(tag, Index::shard_of(hash));
        let (table, segments) = shard.split_mut();
        let Some(position) = table.find(hash, |l| Inner::record_is(segments, l, tag, key)) else {
            return false;
        };
        Inner::mark_dead(segments, table.slot(position).location());
        table.remove_at(position);
        self.key_counts[tag as usize].fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Adds the length of the record at `location` to its segment's dead bytes (tombstones
    /// were counted dead when written).
    pub(crate) fn mark_dead(segments: &SegmentTable, location: Location) {
        let segment = segments.get(location.segment);
        let header = segment.bytes(location.offset as usize, RECORD_HEADER_BYTES);
        if header[4] == RecordKind::Delete as u8 {
            return;
        }
        let (key_len, value_len) = format::peek_lengths(header);
        segment.add_dead(format::record_len(key_len, value_len));
    }

    /// Starts a new active segment with room for `needed` bytes. The old one takes no more
    /// appends at once; flushing it, cutting it to its last record and remapping it read-only
    /// (a 64 MiB write-back under `everysec` or `no`) happens on the sealer thread, so the
    /// writer lock is not held through it. Until then, every flush covers it too (`flush_active`).
    pub(super) fn rotate(&self, writer: &mut Writer, needed: usize) -> Result<()> {
        let old = writer.active.segment.clone();
        // At most one segment waits for its seal: finish an earlier one here if need be.
        let earlier = self.seal_pending.lock().expect("seal lock").clone();
        if let Some(earlier) = earlier {
            if !Arc::ptr_eq(&earlier, &old) {
                self.seal_segment(&earlier)?;
            }
        }
        // From here the old segment takes no more appends, even if creating the next one fails.
        old.mark_sealed();
        if old.is_memory() {
            old.mark_durably_sealed();
        } else if old.published() == SEGMENT_HEADER_BYTES {
            // No records (a write too large for a fresh segment): sealing costs one truncate and
            // fsync, and done before the next segment exists it lets recovery read an unsealed
            // segment without records as one whose records were all lost.
            self.seal_segment(&old)?;
        } else if !old.is_durably_sealed() {
            *self.seal_pending.lock().expect("seal lock") = Some(old);
            self.seal_wanted.notify_one();
        }
        let capacity = (needed + SEGMENT_HEADER_BYTES)
            .max(self.config.segment_bytes)
            .next_multiple_of(SEGMENT_CAPACITY_ALIGN_BYTES);
        let segment = self.create_segment(capacity)?;
        // Prefaulting maps the pages writable: a writer that writes through the file
        // (`append_run`) wants none of them so.
        if self.config.background_sealing && !writer.writes_through_file {
            self.request_prefault(segment.clone());
        }
        writer.active = SegmentWriter::new(segment).expect("new segment has no writer");
        if !self.config.background_sealing {
            let pending = self.seal_pending.lock().expect("seal lock").clone();
            if let Some(pending) = pending {
                self.seal_segment(&pending)?;
            }
        }
        Ok(())
    }

    /// Creates a log segment and installs it in the table.
    pub(crate) fn create_segment(&self, capacity: usize) -> Result<Arc<Segment>> {
        let id = self.next_segment_id.fetch_add(1, Ordering::Relaxed);
        let slot = self
            .segments
            .write()
            .expect("segment table lock")
            .reserve()?;
        let created =
            recovery::create_log_segment(&self.backend, self.dir.as_deref(), id, slot, capacity);
        let mut table = self.segments.write().expect("segment table lock");
        match created {
            Ok(segment) => {
                let segment = Arc::new(segment);
                table.install(segment.clone());
                self.index.publish_segments(&table);
                Ok(segment)
            }
            Err(e) => {
                table.release(slot);
                if let CreateError::InstalledUnsynced(e) = &e {
                    // The new segment may or may not be in the directory after a power loss, and
                    // a retried fsync could lie: refuse writes, as after any failed fsync. (It
                    // stays the newest log segment, so the next open takes it as the tail.)
                    self.set_poison(e.to_string());
                }
                Err(e.into_error())
            }
        }
    }
}
