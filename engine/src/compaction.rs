//! Compaction: merge sealed segments with much dead data into new segments holding only what is
//! live, with a hint file each, and swap them in atomically.
//!
//! Steps (a crash after any of them leaves a directory that opens with every live key):
//! 1. Copy live records of the inputs, in seq order, into `.seg.tmp` outputs; write `.hint.tmp`
//!    files; fsync all. A crash here: recovery deletes the .tmp files.
//! 2. Flush the log (the records that made the dropped ones dead must outlive them), then
//!    commit the MERGE manifest (inputs to remove, outputs to install). A crash after this:
//!    recovery finishes the swap from it.
//! 3. Rename outputs into place; map them; put them in the segment table.
//! 4. Repoint the index, a group of records at a time, from input to output locations.
//! 5. Drop the inputs from the table, delete their files, delete the manifest.
//!
//! Readers and the writer are never blocked for more than a group of records: liveness checks
//! and repointing go `GROUP_RECORDS` records at a time, each group holding the read (or write)
//! locks of the shards its records hash to, taken in shard order as a batch writer takes them.
//! Within a group the index loads of all its records are issued before any is used, so their
//! cache misses overlap: one lookup's miss, not the copy, was most of a compaction's time.
//!
//! What is dropped: records the index no longer points at (overwritten or deleted), expired
//! records, and tombstones, except that a tombstone (or an expired record, rewritten as a
//! tombstone) is kept while a segment outside the merge may hold an older record of its key
//! (any such segment has a record with a lower seq), so the older record cannot come back.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dir::{self, Manifest};
use crate::engine::{key_hash, Inner, LogLevel};
use crate::error::{Error, Result};
use crate::format::{self, Header, RecordKind, SegmentOrigin, SEGMENT_HEADER_BYTES};
use crate::hint::{HintEntry, HintWriter};
use crate::index::{Index, Location, Slot};
use crate::log_iter::{merge_records, OpRef};
use crate::ranges::RangeMarkers;
use crate::segment::{Segment, SegmentWriter, SEGMENT_CAPACITY_ALIGN_BYTES};

/// A point in a compaction where the test hook may stop it (as if the process died there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactionStep {
    /// Outputs and hints written as .tmp files and synced; nothing committed.
    OutputsWritten,
    /// The manifest is committed; nothing renamed yet.
    ManifestCommitted,
    /// Outputs renamed into place and in the segment table; the index still points at inputs.
    OutputsInstalled,
    /// The index points at the outputs; inputs still on disk.
    IndexUpdated,
    /// Inputs deleted; the manifest still exists.
    InputsRemoved,
}

impl CompactionStep {
    pub const ALL: [CompactionStep; 5] = [
        CompactionStep::OutputsWritten,
        CompactionStep::ManifestCommitted,
        CompactionStep::OutputsInstalled,
        CompactionStep::IndexUpdated,
        CompactionStep::InputsRemoved,
    ];
}

/// What one compaction did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompactionReport {
    pub segments_in: usize,
    pub segments_out: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub bytes_reclaimed: u64,
    pub records_copied: u64,
    pub tombstones_kept: u64,
    pub expired_dropped: u64,
    /// Log-only records dropped because a range marker covers them.
    pub appends_dropped: u64,
    pub duration: Duration,
}

/// One output segment being filled.
struct Output {
    writer: SegmentWriter,
    hints: HintWriter,
}

/// Records whose index lookups one group does together (see the module's doc).
const GROUP_RECORDS: usize = 64;

/// A live record that moved: the index must follow it.
struct Moved {
    namespace_tag: u8,
    hash: u64,
    from: Location,
    to: Location,
    record_len: usize,
}

struct Merge<'a> {
    inner: &'a Inner,
    outputs: Vec<Output>,
    moved: Vec<Moved>,
    /// Expired records whose index slots should go: (namespace tag, hash, location).
    expired: Vec<(u8, u64, Location)>,
    /// Range markers in effect that moved: (namespace tag, prefix, from, to, record length).
    moved_markers: Vec<(u8, Vec<u8>, Location, Location, usize)>,
    /// Records kept because an uncommitted write replaced them: (from, to).
    moved_held: Vec<(Location, Location)>,
    /// Records above this seq may still be truncated (a replicated engine's commit point;
    /// `u64::MAX` on a lone node): a decision must not rest on them.
    committed: u64,
    report: CompactionReport,
    /// The test hook stopped the merge: leave everything as a crash would.
    stopped_by_hook: bool,
    /// The manifest was (perhaps) written: outputs must not be deleted any more.
    manifest_may_exist: bool,
}

impl Merge<'_> {
    fn stop_at(&mut self, step: CompactionStep) -> Result<()> {
        match &self.inner.config.compaction_fail_point {
            Some(hook) if hook(step) => {
                self.stopped_by_hook = true;
                Err(Error::Invalid(format!(
                    "compaction stopped at {step:?} by the test hook"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The output with room for `len` bytes, creating one if needed.
    fn output_for(&mut self, len: usize) -> Result<&mut Output> {
        if self
            .outputs
            .last()
            .is_none_or(|o| o.writer.remaining() < len)
        {
            let inner = self.inner;
            let id = inner.next_segment_id.fetch_add(1, Ordering::Relaxed);
            let slot = inner
                .segments
                .write()
                .expect("segment table lock")
                .reserve()?;
            let capacity = (len + SEGMENT_HEADER_BYTES)
                .max(inner.config.segment_bytes)
                .next_multiple_of(SEGMENT_CAPACITY_ALIGN_BYTES);
            let created = match &inner.dir {
                Some(dir) => Segment::create_file(
                    &inner.backend,
                    &dir::tmp_path(&dir::segment_path(dir, id)),
                    id,
                    slot,
                    capacity,
                    SegmentOrigin::Compaction,
                ),
                None => Segment::create_anonymous(id, slot, capacity, SegmentOrigin::Compaction),
            };
            let segment = match created {
                Ok(segment) => segment,
                Err(e) => {
                    inner
                        .segments
                        .write()
                        .expect("segment table lock")
                        .release(slot);
                    return Err(e);
                }
            };
            self.outputs.push(Output {
                writer: SegmentWriter::new(Arc::new(segment)).expect("fresh segment"),
                hints: HintWriter::new(id),
            });
        }
        Ok(self.outputs.last_mut().expect("an output exists"))
    }

    /// Copies one record into the outputs (as a plain record: batches come apart, their
    /// members keeping the batch's seq and term); returns its new location.
    fn copy(&mut self, header: &Header, key: &[u8], value: &[u8]) -> Result<Location> {
        let len = format::record_len(key.len(), value.len());
        let output = self.output_for(len)?;
        let offset = output.writer.append(len, |out| {
            format::encode_record(out, header, key, value);
        });
        output.writer.publish();
        let segment = &output.writer.segment;
        let (kind, namespace_tag, seq, expiry_ms) = (
            header.kind,
            header.namespace_tag,
            header.seq,
            header.expiry_ms,
        );
        segment.note_seq(seq);
        match kind {
            RecordKind::Delete => segment.add_dead(len),
            RecordKind::Append => segment.note_append(namespace_tag, len),
            _ => {}
        }
        output.hints.add(&HintEntry {
            seq,
            expiry_ms,
            offset: offset as u32,
            record_len: len as u32,
            kind,
            namespace_tag,
            key,
            run: None,
        });
        let location = Location {
            segment: segment.slot,
            offset: offset as u32,
        };
        self.report.bytes_out += len as u64;
        Ok(location)
    }

    /// Counts `bytes` of the copy at `location` (in an output) as dead.
    fn output_dead(&self, location: Location, bytes: usize) {
        let output = self
            .outputs
            .iter()
            .find(|o| o.writer.segment.slot == location.segment)
            .expect("a copy lives in an output");
        output.writer.segment.add_dead(bytes);
    }

    /// For each `(place, hash, location)` of `lookups` (`Index::place` of the key's shard),
    /// whether the index still points there, into `live`. The group's shards are read-locked
    /// together, in place order, and every home slot is loaded before any probe, so the
    /// group's cache misses overlap.
    fn still_indexed(&self, lookups: &[(usize, u64, Location)], live: &mut Vec<bool>) {
        live.clear();
        let mut order: Vec<usize> = (0..lookups.len()).collect();
        order.sort_unstable_by_key(|&i| lookups[i].0);
        let mut guards = Vec::with_capacity(lookups.len());
        let mut guard_of = vec![0usize; lookups.len()];
        let mut previous = usize::MAX;
        for &i in &order {
            let place = lookups[i].0;
            if place != previous {
                guards.push(self.inner.index.read_at(place));
                previous = place;
            }
            guard_of[i] = guards.len() - 1;
        }
        let mut touched = 0u64;
        for (i, &(_, hash, _)) in lookups.iter().enumerate() {
            touched ^= guards[guard_of[i]].table.home_tag(hash) as u64;
        }
        std::hint::black_box(touched);
        for (i, &(_, hash, location)) in lookups.iter().enumerate() {
            let table = &guards[guard_of[i]].table;
            live.push(table.find(hash, |l| l == location).is_some());
        }
    }

    /// Where the index says the key lives now, if anywhere.
    /// Where the index says the key lives now, if anywhere, counting a key whose newest record
    /// is not committed yet as absent: a truncation may take that record back, and then a
    /// tombstone this compaction kept must still shadow older values.
    fn current_location(&self, namespace_tag: u8, key: &[u8], hash: u64) -> Option<Location> {
        let shard = self.inner.index.read(namespace_tag, Index::shard_of(hash));
        let table = &shard.table;
        let location = table
            .find(hash, |l| {
                Inner::record_is(&shard.segments, l, namespace_tag, key)
            })
            .map(|p| table.slot(p).location())?;
        let header = shard
            .segments
            .get(location.segment)
            .bytes(location.offset as usize, format::RECORD_HEADER_BYTES);
        (format::peek_seq(header) <= self.committed).then_some(location)
    }
}

/// Segments whose covered bytes one background round counts at most (each count reads the
/// segment's record headers and keys).
pub(crate) const COVERED_COUNTS_PER_ROUND: usize = 16;

/// Counts, for up to `segments_max` sealed segments whose figure is stale (the range markers
/// changed since it was counted), the bytes of log-only records the markers in effect drop
/// (`Segment::covered_bytes`), so that compaction's garbage ratio sees them. Returns how many
/// segments it counted.
pub(crate) fn count_covered(inner: &Inner, segments_max: usize) -> Result<usize> {
    let (markers, generation) = markers_in_effect(inner);
    let stale: Vec<Arc<Segment>> = inner
        .segments_read()
        .all()
        .filter(|s| {
            s.is_durably_sealed()
                && !s.is_superseded()
                && s.append_bytes.load(Ordering::Relaxed) > 0
                && s.covered_generation.load(Ordering::Relaxed) != generation
        })
        .take(segments_max)
        .cloned()
        .collect();
    for segment in &stale {
        let mut covered = 0u64;
        crate::log_iter::visit_records(segment, |record, _| {
            if record.kind == RecordKind::Append
                && markers
                    .covering(record.namespace_tag, record.key, record.seq)
                    .is_some()
            {
                covered += record.len as u64;
            }
        })?;
        segment.covered_bytes.store(covered, Ordering::Relaxed);
        segment
            .covered_generation
            .store(generation, Ordering::Relaxed);
    }
    Ok(stale.len())
}

/// A copy of the committed range markers in effect and their generation, so a long pass does
/// not hold the writer's markers lock. A marker not committed yet (a replicated engine) drops
/// nothing here: a truncation may take it back.
fn markers_in_effect(inner: &Inner) -> (RangeMarkers, u64) {
    let committed = inner.committed_for_compaction();
    let ranges = inner.ranges.read().expect("range markers lock");
    let mut copy = RangeMarkers::default();
    for (tag, prefix, marker) in ranges.iter() {
        if marker.seq <= committed {
            copy.install(tag, prefix, marker.clone());
        }
    }
    (copy, ranges.generation())
}

/// Runs one compaction of the sealed segments whose garbage ratio is at least `ratio_min`,
/// after counting what range markers drop in every segment whose count is stale.
pub(crate) fn compact(inner: &Inner, ratio_min: f64) -> Result<CompactionReport> {
    compact_counting(inner, ratio_min, usize::MAX)
}

/// `compact`, counting covered bytes in at most `counts_max` segments first (the background
/// thread bounds the work of one round).
pub(crate) fn compact_counting(
    inner: &Inner,
    ratio_min: f64,
    counts_max: usize,
) -> Result<CompactionReport> {
    let _one_at_a_time = inner.compaction_lock.lock().expect("compaction lock");
    count_covered(inner, counts_max)?;
    if inner.compaction_disabled.load(Ordering::Acquire) {
        return Err(Error::Invalid(
            "compaction is off after a failed swap; restart to finish it".into(),
        ));
    }
    let started = Instant::now();
    inner.finish_pending_seal()?;
    let active_slot = inner.lock_writer().active.segment.slot;
    // Records at or after the lowest pin stay exactly as written: segments holding any are
    // left alone.
    let pinned_from = inner.pins.lowest().unwrap_or(u64::MAX);
    let (inputs, outside_min_seq) = {
        let table = inner.segments_read();
        let mut inputs = Vec::new();
        let mut outside_min_seq = u64::MAX;
        for segment in table.all() {
            if segment.slot != active_slot
                && segment.is_durably_sealed()
                && segment.max_seq.load(Ordering::Relaxed) < pinned_from
                && segment.reclaimable_bytes() > 0
                && segment.garbage_ratio() >= ratio_min
            {
                inputs.push(segment.clone());
            } else {
                outside_min_seq = outside_min_seq.min(segment.min_seq.load(Ordering::Relaxed));
            }
        }
        (inputs, outside_min_seq)
    };
    if inputs.is_empty() {
        return Ok(CompactionReport::default());
    }
    let now_ms = inner.config.clock.now_ms();
    let mut merge = Merge {
        inner,
        outputs: Vec::new(),
        moved: Vec::new(),
        expired: Vec::new(),
        moved_markers: Vec::new(),
        moved_held: Vec::new(),
        committed: inner.committed_for_compaction(),
        stopped_by_hook: false,
        manifest_may_exist: false,
        report: CompactionReport {
            segments_in: inputs.len(),
            bytes_in: inputs.iter().map(|s| s.published() as u64).sum(),
            ..CompactionReport::default()
        },
    };
    let result = copy_and_swap(&mut merge, &inputs, outside_min_seq, now_ms);
    if result.is_err() && merge.manifest_may_exist {
        // The swap is committed (or may be) on disk: the next open finishes it. Keep every file,
        // and stop compacting in this process so no second merge races with it.
        inner.compaction_disabled.store(true, Ordering::Release);
        (inner.config.logger)(LogLevel::Error, "compaction failed after its manifest was written; compaction is off until restart, which finishes the swap");
    } else if result.is_err() && !merge.stopped_by_hook {
        // A real failure (a full disk, say) before the outputs were installed: abandon them.
        let mut table = inner.segments.write().expect("segment table lock");
        for output in &merge.outputs {
            let segment = &output.writer.segment;
            if table.all().all(|s| s.slot != segment.slot) {
                table.release(segment.slot);
                if let Some(dir) = &inner.dir {
                    let backend = &inner.backend;
                    let _ =
                        backend.remove_file(&dir::tmp_path(&dir::segment_path(dir, segment.id)));
                    let _ = backend.remove_file(&dir::tmp_path(&dir::hint_path(dir, segment.id)));
                }
            }
        }
    }
    result?;
    let mut report = merge.report;
    report.bytes_reclaimed = report.bytes_in.saturating_sub(report.bytes_out);
    report.duration = started.elapsed();
    inner.compactions.fetch_add(1, Ordering::Relaxed);
    inner
        .reclaimed_bytes
        .fetch_add(report.bytes_reclaimed, Ordering::Relaxed);
    Ok(report)
}

/// A group's index lookups, reused from group to group.
#[derive(Default)]
struct Group {
    /// (`Index::place`, hash, location) of each put whose liveness the index decides.
    lookups: Vec<(usize, u64, Location)>,
    /// For each record of the group, its lookup's number (`usize::MAX`: none).
    lookup_of: Vec<usize>,
    /// For each lookup, whether the index still points at the record.
    live: Vec<bool>,
}

/// Step 1 for one group of records (in seq order): the live puts' index lookups together,
/// then each record copied, rewritten as a tombstone, or dropped.
fn copy_group(
    merge: &mut Merge<'_>,
    markers: &RangeMarkers,
    records: &[(u64, u64, OpRef<'_>)],
    group: &mut Group,
    outside_min_seq: u64,
    now_ms: u64,
) -> Result<()> {
    let inner = merge.inner;
    let expired = |op: &OpRef<'_>| op.expiry_ms != 0 && op.expiry_ms <= now_ms;
    group.lookups.clear();
    group.lookup_of.clear();
    for (_, _, op) in records {
        let lookup = if op.kind == RecordKind::Put && !expired(op) {
            let tag = op.namespace.tag();
            let hash = key_hash(tag, op.key);
            let place = Index::place(tag, Index::shard_of(hash));
            group.lookups.push((place, hash, op.location));
            group.lookups.len() - 1
        } else {
            usize::MAX
        };
        group.lookup_of.push(lookup);
    }
    merge.still_indexed(&group.lookups, &mut group.live);
    for (i, &(seq, term, op)) in records.iter().enumerate() {
        let tag = op.namespace.tag();
        let older_may_exist = seq >= outside_min_seq;
        let header = |kind: RecordKind, expiry_ms: u64| Header {
            kind,
            namespace_tag: tag,
            flags: 0,
            seq,
            term,
            expiry_ms,
        };
        // In a replicated engine a record an uncommitted write replaced is still the committed
        // one: it stays, whatever the index says, and the undo log follows it (step 4). It
        // counts as dead unless a truncation brings it back. Asked after the index (a write
        // that replaces a record enters the undo log before the index, under the undo log's
        // lock), so a record is always found in one or the other.
        let copy_held = |merge: &mut Merge<'_>| -> Result<()> {
            let to = merge.copy(&header(op.kind, op.expiry_ms), op.key, op.value)?;
            merge.output_dead(to, op.record_len);
            merge.moved_held.push((op.location, to));
            merge.report.records_copied += 1;
            Ok(())
        };
        match op.kind {
            RecordKind::Put if expired(&op) => {
                // An expired record is a tombstone while it is the key's newest version (its
                // slot may already be gone: recovery and active expiry drop them).
                let hash = key_hash(tag, op.key);
                let current = merge.current_location(tag, op.key, hash);
                if inner.undo_holds(op.location) {
                    copy_held(merge)?;
                    continue;
                }
                if current == Some(op.location) {
                    merge.expired.push((tag, hash, op.location));
                }
                merge.report.expired_dropped += 1;
                if older_may_exist && (current.is_none() || current == Some(op.location)) {
                    merge.copy(&header(RecordKind::Delete, 0), op.key, &[])?;
                    merge.report.tombstones_kept += 1;
                }
            }
            RecordKind::Put => {
                let lookup = group.lookup_of[i];
                if !group.live[lookup] {
                    if inner.undo_holds(op.location) {
                        copy_held(merge)?;
                    }
                    continue; // overwritten or deleted since
                }
                let to = merge.copy(&header(RecordKind::Put, op.expiry_ms), op.key, op.value)?;
                merge.moved.push(Moved {
                    namespace_tag: tag,
                    hash: group.lookups[lookup].1,
                    from: op.location,
                    to,
                    record_len: op.record_len,
                });
                merge.report.records_copied += 1;
            }
            RecordKind::Delete => {
                let hash = key_hash(tag, op.key);
                if older_may_exist && merge.current_location(tag, op.key, hash).is_none() {
                    merge.copy(&header(RecordKind::Delete, 0), op.key, &[])?;
                    merge.report.tombstones_kept += 1;
                }
            }
            RecordKind::Append => {
                if markers.covering(tag, op.key, seq).is_some() {
                    merge.report.appends_dropped += 1;
                    continue;
                }
                merge.copy(&header(RecordKind::Append, 0), op.key, op.value)?;
                merge.report.records_copied += 1;
            }
            RecordKind::DropRange => {
                if inner.undo_holds(op.location) {
                    copy_held(merge)?;
                    continue;
                }
                if !markers.is_current(tag, op.key, op.location) {
                    continue; // a newer marker for the prefix replaced it
                }
                let to = merge.copy(&header(RecordKind::DropRange, 0), op.key, op.value)?;
                merge
                    .moved_markers
                    .push((tag, op.key.to_vec(), op.location, to, op.record_len));
                merge.report.records_copied += 1;
            }
            RecordKind::Batch => unreachable!("the log iterator unpacks batches"),
        }
    }
    Ok(())
}

fn copy_and_swap(
    merge: &mut Merge<'_>,
    inputs: &[Arc<Segment>],
    outside_min_seq: u64,
    now_ms: u64,
) -> Result<()> {
    let inner = merge.inner;
    // Step 1: copy. Range markers are read once: one written meanwhile only drops more, which
    // the next compaction sees (the generation makes the outputs' coverage count again).
    let (markers, markers_generation) = markers_in_effect(inner);
    // Records wait until a group is full; then the group's index lookups are done together
    // and its records handled in seq order.
    let mut pending: Vec<(u64, u64, OpRef<'_>)> = Vec::with_capacity(2 * GROUP_RECORDS);
    let mut group = Group::default();
    merge_records(inputs, 0, |seq, term, ops| {
        pending.extend(ops.iter().map(|&op| (seq, term, op)));
        if pending.len() >= GROUP_RECORDS {
            copy_group(
                merge,
                &markers,
                &pending,
                &mut group,
                outside_min_seq,
                now_ms,
            )?;
            pending.clear();
        }
        Ok(())
    })?;
    copy_group(
        merge,
        &markers,
        &pending,
        &mut group,
        outside_min_seq,
        now_ms,
    )?;
    for output in &merge.outputs {
        output
            .writer
            .segment
            .covered_generation
            .store(markers_generation, Ordering::Relaxed);
    }
    merge.report.segments_out = merge.outputs.len();
    for output in &merge.outputs {
        let segment = &output.writer.segment;
        segment.flush_range(0, segment.published())?;
        segment.truncate_to_published()?;
    }
    if let Some(dir) = &inner.dir {
        for output in std::mem::take(&mut merge.outputs) {
            let id = output.writer.segment.id;
            output
                .hints
                .write(&inner.backend, &dir::tmp_path(&dir::hint_path(dir, id)))?;
            merge.outputs.push(Output {
                writer: output.writer,
                hints: HintWriter::new(id),
            });
        }
        dir::sync_dir(&inner.backend, dir)?;
    }
    merge.stop_at(CompactionStep::OutputsWritten)?;

    // Step 2: commit. Records were left out because newer ones replaced them (or a newer put
    // replaced a tombstone); once the inputs are gone, losing one of those newer records to a
    // power failure would bring back an older value, or none, instead of the dropped one. So
    // everything appended until now, which includes every write the copy saw in the index,
    // is made durable first. (Taking the writer lock waits for an append still under way.)
    let appended = inner.lock_writer().next_seq - 1;
    inner.sync_to(appended)?;
    let manifest = Manifest {
        inputs: inputs.iter().map(|s| s.id).collect(),
        outputs: merge.outputs.iter().map(|o| o.writer.segment.id).collect(),
    };
    if let Some(dir) = &inner.dir {
        merge.manifest_may_exist = true;
        manifest.commit(&inner.backend, dir)?;
    }
    merge.stop_at(CompactionStep::ManifestCommitted)?;

    // Step 3: install outputs.
    if let Some(dir) = &inner.dir {
        manifest.install_outputs(&inner.backend, dir)?;
    }
    {
        let mut table = inner.segments.write().expect("segment table lock");
        for output in &merge.outputs {
            let segment = &output.writer.segment;
            let installed = match &inner.dir {
                Some(dir) => {
                    let mut reopened = Segment::open_file(
                        &inner.backend,
                        &dir::segment_path(dir, segment.id),
                        segment.slot,
                        false,
                    )?;
                    reopened.set_published(segment.published());
                    reopened.take_accounting_from(segment);
                    Arc::new(reopened)
                }
                None => segment.clone(),
            };
            // Written whole, synced and cut to its last record before the manifest: later
            // compactions may take it as an input (until this, outputs waited for a restart).
            installed.mark_sealed();
            installed.mark_durably_sealed();
            table.install(installed);
        }
        // From here a log reader sees the outputs instead of the inputs (both are in the table
        // until the index points at the outputs): the same records, never twice.
        for input in inputs {
            input.mark_superseded();
        }
        inner.index.publish_segments(&table);
    }
    merge.stop_at(CompactionStep::OutputsInstalled)?;

    // Step 4: repoint the index, a group of records at a time (their shards write-locked
    // together, in place order as a batch writer locks them; every home slot loaded first).
    for moved in merge.moved.chunks(GROUP_RECORDS) {
        let place = |m: &Moved| Index::place(m.namespace_tag, Index::shard_of(m.hash));
        let mut order: Vec<usize> = (0..moved.len()).collect();
        order.sort_unstable_by_key(|&i| place(&moved[i]));
        let mut guards = Vec::with_capacity(moved.len());
        let mut guard_of = vec![0usize; moved.len()];
        let mut previous = usize::MAX;
        for &i in &order {
            if place(&moved[i]) != previous {
                previous = place(&moved[i]);
                guards.push(inner.index.write_at(previous));
            }
            guard_of[i] = guards.len() - 1;
        }
        let mut touched = 0u64;
        for (m, &at) in moved.iter().zip(&guard_of) {
            touched ^= guards[at].table.home_tag(m.hash) as u64;
        }
        std::hint::black_box(touched);
        for (m, &at) in moved.iter().zip(&guard_of) {
            let (table, segments) = guards[at].split_mut();
            match table.find(m.hash, |l| l == m.from) {
                Some(position) => {
                    let expiry = table.slot(position).expiry_ms();
                    table.replace(position, Slot::new(m.hash, m.to, expiry));
                }
                None => {
                    // Overwritten or deleted while we copied: the copy is dead.
                    segments.get(m.to.segment).add_dead(m.record_len);
                }
            }
        }
    }
    {
        let mut ranges = inner.ranges.write().expect("range markers lock");
        for (tag, prefix, from, to, record_len) in &merge.moved_markers {
            if ranges.is_current(*tag, prefix, *from) {
                ranges.relocate(*tag, prefix, *from, *to);
            } else {
                // Replaced by a newer marker while we copied: the copy is dead.
                inner.segments_read().get(to.segment).add_dead(*record_len);
            }
        }
    }
    if let Some(undo) = &inner.undo {
        let moved: std::collections::HashMap<Location, Location> = merge
            .moved
            .iter()
            .map(|m| (m.from, m.to))
            .chain(merge.moved_markers.iter().map(|m| (m.2, m.3)))
            .chain(merge.moved_held.iter().copied())
            .collect();
        undo.lock().expect("undo log lock").relocate(&moved);
    }
    for &(tag, hash, location) in &merge.expired {
        let mut shard = inner.index.write(tag, Index::shard_of(hash));
        let table = &mut shard.table;
        if let Some(position) = table.find(hash, |l| l == location) {
            table.remove_at(position);
            inner.key_counts[tag as usize].fetch_sub(1, Ordering::Relaxed);
            inner.expired_reclaimed.fetch_add(1, Ordering::Relaxed);
        }
    }
    merge.stop_at(CompactionStep::IndexUpdated)?;

    // Step 5: retire the inputs.
    {
        let mut table = inner.segments.write().expect("segment table lock");
        for input in inputs {
            table.remove(input.slot);
        }
        inner.index.publish_segments(&table);
    }
    if let Some(dir) = &inner.dir {
        manifest.remove_inputs(&inner.backend, dir)?;
        merge.stop_at(CompactionStep::InputsRemoved)?;
        manifest.remove(&inner.backend, dir)?;
    }
    Ok(())
}

/// Writes hint files for sealed log segments that have none, so the next open can skip
/// reading their values. Returns how many it wrote.
pub(crate) fn write_missing_hints(inner: &Inner) -> Result<usize> {
    let Some(dir) = &inner.dir else {
        return Ok(0);
    };
    inner.finish_pending_seal()?;
    let sealed: Vec<Arc<Segment>> = inner
        .segments_read()
        .all()
        .filter(|s| s.is_durably_sealed())
        .cloned()
        .collect();
    let mut written = 0;
    for segment in sealed {
        let path = dir::hint_path(dir, segment.id);
        if inner.backend.exists(&path) {
            continue;
        }
        let mut hints = HintWriter::new(segment.id);
        merge_records(std::slice::from_ref(&segment), 0, |seq, _, ops| {
            for op in ops {
                hints.add(&HintEntry {
                    seq,
                    expiry_ms: op.expiry_ms,
                    offset: op.location.offset,
                    record_len: op.record_len as u32,
                    kind: op.kind,
                    namespace_tag: op.namespace.tag(),
                    key: op.key,
                    run: None,
                });
            }
            Ok(())
        })?;
        let tmp = dir::tmp_path(&path);
        hints.write(&inner.backend, &tmp)?;
        // The segment may have been compacted away meanwhile; its hint must not outlive it.
        let _one_at_a_time = inner.compaction_lock.lock().expect("compaction lock");
        if !inner.backend.exists(&dir::segment_path(dir, segment.id)) {
            let _ = inner.backend.remove_file(&tmp);
            continue;
        }
        inner
            .backend
            .rename(&tmp, &path)
            .map_err(|e| Error::io(&path, "install hint file", e))?;
        dir::sync_dir(&inner.backend, dir)?;
        written += 1;
    }
    Ok(written)
}
