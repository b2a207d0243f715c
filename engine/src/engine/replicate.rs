//! What replication needs of the engine, in one node: terms, entries appended at the seqs a
//! leader chose, the commit point, `truncate_after` for an uncommitted suffix, and the log
//! reader.
//!
//! A replicated engine (`Config::replicated`) keeps an undo log for every entry above the
//! commit point (`undo`) and a compaction pin at the commit point itself, so the uncommitted
//! suffix is never compacted and can be removed with the index rolled back exactly, and the
//! entry at the commit point keeps its term readable (a truncation back to it needs it). A
//! lone node keeps neither: it commits as it writes.

use std::sync::atomic::Ordering;

use super::batch::Ops;
use super::reader::LogReader;
use super::write::EntryOps;
use super::{Engine, Inner, WriteBatch};
use crate::error::{Error, Result};
use crate::format::{self, RecordKind, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::log_iter::visit_records;

impl Engine {
    /// At open: puts the entries above the commit point (recovery left them out) into the
    /// index and the markers in seq order, recording their undo items, as if they had just
    /// been appended.
    pub(super) fn apply_uncommitted(&self, committed: u64) -> Result<()> {
        let inner = &self.inner;
        let undo = inner.undo.as_ref().expect("a replicated engine");
        let mut reader = self.reader(committed + 1);
        let mut items = Vec::new();
        while let Some(entry) = reader.next_entry()? {
            for op in &entry.ops {
                let segment = inner.segments_read().get(op.location.segment).clone();
                match op.kind {
                    RecordKind::Put | RecordKind::Delete => {
                        let hash = super::key_hash(op.namespace.tag(), &op.key);
                        let mut shard = inner
                            .index
                            .write(op.namespace.tag(), crate::index::Index::shard_of(hash));
                        inner.apply_one(
                            &mut shard,
                            &segment,
                            &op.as_op(),
                            hash,
                            op.location.offset as usize,
                            Some(&mut items),
                        );
                    }
                    RecordKind::DropRange => {
                        inner.install_marker(&op.as_op(), entry.seq, op.location, Some(&mut items))
                    }
                    // Counted in their segment by recovery; no index entry.
                    RecordKind::Append | RecordKind::Batch => {}
                }
            }
            undo.lock()
                .expect("undo log lock")
                .push(entry.seq, &mut items);
        }
        Ok(())
    }

    /// The term new writes are written in.
    pub fn term(&self) -> u64 {
        self.inner.lock_writer().term
    }

    /// Sets the term new writes are written in (the node became leader of `term`). A term
    /// never goes back.
    pub fn set_term(&self, term: u64) -> Result<()> {
        let mut writer = self.inner.lock_writer();
        if term < writer.term {
            return Err(Error::Invalid(format!(
                "term {term} is older than the current term {}",
                writer.term
            )));
        }
        writer.term = term;
        Ok(())
    }

    /// The seq and term of the log's last entry ((0, 0) when the log is empty).
    pub fn last_entry(&self) -> (u64, u64) {
        let writer = self.inner.lock_writer();
        (writer.next_seq - 1, writer.last_term)
    }

    /// Appends an entry a leader chose: `seq` must be the next one (truncate first to replace
    /// a suffix) and `term` no older than the last entry's. Returns the seq.
    pub fn append_entry(&self, seq: u64, term: u64, batch: &WriteBatch) -> Result<u64> {
        self.append_entry_of(seq, term, batch)
    }

    /// [`Engine::append_entry`] of ops borrowed from the caller (a follower's entry decoded
    /// in place), without building a `WriteBatch`.
    pub fn append_entry_ops(&self, seq: u64, term: u64, ops: &[crate::Op<'_>]) -> Result<u64> {
        self.append_entry_of(seq, term, ops)
    }

    fn append_entry_of<O: Ops + ?Sized>(&self, seq: u64, term: u64, ops: &O) -> Result<u64> {
        let mut writer = self.inner.lock_writer();
        self.inner.append_next(&mut writer, ops, seq, term)
    }

    /// Appends consecutive entries a leader chose, as [`Engine::append_entry_ops`] of each in
    /// turn would, under one hold of the writer lock. A run of two or more entries whose writes
    /// are all puts and deletes (and watched by no observer) has its records written first
    /// and the index pointed at them in one pass, so that the two cache misses each key costs
    /// (its slot, the record it replaces) overlap across the run instead of coming one after
    /// the other, entry by entry: a follower applies a message of its leader's one-write
    /// entries this way. Readers see the run's writes at once. On an error, the entries before
    /// the failing one are in the log (`last_seq` says how far).
    pub fn append_entries_ops(&self, entries: &[EntryOps<'_>]) -> Result<()> {
        let mut writer = self.inner.lock_writer();
        let batchable = |entry: &EntryOps<'_>| {
            entry
                .ops
                .iter()
                .all(|op| matches!(op.kind, RecordKind::Put | RecordKind::Delete))
                && !self.inner.observers.watches_any(entry.ops)
        };
        let mut at = 0;
        while at < entries.len() {
            let run = entries[at..].iter().take_while(|e| batchable(e)).count();
            if run >= 2 {
                self.inner.append_run(&mut writer, &entries[at..at + run])?;
                at += run;
            } else {
                let entry = &entries[at];
                self.inner
                    .append_next(&mut writer, entry.ops, entry.seq, entry.term)?;
                at += 1;
            }
        }
        Ok(())
    }

    /// The entry with `seq`, read from the log (`None`: beyond the log's end).
    pub fn entry(&self, seq: u64) -> Result<Option<crate::LogEntry>> {
        if seq == 0 || seq > self.last_seq() {
            return Ok(None);
        }
        self.reader(seq).next_entry()
    }

    /// The term of the entry with `seq` (`None`: beyond the log's end; `Some(0)` for seq 0,
    /// before the first entry, as raft's log matching wants).
    pub fn term_at(&self, seq: u64) -> Result<Option<u64>> {
        if seq == 0 {
            return Ok(Some(0));
        }
        Ok(self.entry(seq)?.map(|entry| entry.term))
    }

    /// How much of the log's tail fits a byte budget: `budget` is given the bytes of every
    /// segment (published lengths, the active one included) and returns how many bytes of the
    /// newest segments to count; the answer is the lowest seq of the newest segments that fit
    /// it (the newest, with the active one, always counts), or the log's next seq when it is
    /// empty. Segments are counted whole, newest `max_seq` first. A replicated leader holds
    /// its log for a lagging follower from there on and no further back (a follower behind it
    /// gets a snapshot): what that follower misses is then at most about `budget` bytes.
    pub fn seq_within_bytes(&self, budget: impl FnOnce(u64) -> u64) -> u64 {
        let mut segments: Vec<(u64, u64, u64)> = {
            let table = self.inner.segments_read();
            table
                .all()
                .filter(|s| !s.is_superseded())
                .map(|s| {
                    (
                        s.max_seq.load(Ordering::Relaxed),
                        s.min_seq.load(Ordering::Relaxed),
                        s.published() as u64,
                    )
                })
                .collect()
        };
        let budget = budget(segments.iter().map(|&(_, _, bytes)| bytes).sum());
        segments.retain(|&(_, min_seq, _)| min_seq != u64::MAX);
        segments.sort_unstable_by_key(|&(max_seq, _, _)| std::cmp::Reverse(max_seq));
        let mut floor = self.last_seq() + 1;
        let mut counted = 0u64;
        for (i, &(_, min_seq, bytes)) in segments.iter().enumerate() {
            counted = counted.saturating_add(bytes);
            if i > 0 && counted > budget {
                break;
            }
            floor = floor.min(min_seq);
        }
        floor.max(1)
    }

    /// A reader of the log from `from_seq` on (see [`LogReader`]).
    pub fn reader(&self, from_seq: u64) -> LogReader {
        LogReader::new(self.inner.clone(), from_seq)
    }

    /// The highest seq a majority has (replicated engines; a lone node's is its last seq).
    pub fn committed_seq(&self) -> u64 {
        if self.inner.undo.is_some() {
            self.inner.committed.load(Ordering::Acquire)
        } else {
            self.last_seq()
        }
    }

    /// Marks everything through `seq` committed: its undo items go, and compaction may take
    /// it. The commit point never goes back, nor past the log's end.
    pub fn commit_through(&self, seq: u64) -> Result<()> {
        let Some(undo) = &self.inner.undo else {
            return Err(Error::Invalid(
                "commit_through needs a replicated engine (Config::replicated)".into(),
            ));
        };
        let seq = seq.min(self.last_seq());
        if self.inner.committed.fetch_max(seq, Ordering::AcqRel) >= seq {
            return Ok(());
        }
        undo.lock().expect("undo log lock").trim_through(seq);
        if let Some(pin) = &*self.inner.replication_pin.lock().expect("pin lock") {
            pin.advance(seq);
        }
        Ok(())
    }

    /// Removes every entry after `seq` (an uncommitted suffix a new leader replaced), rolling
    /// the index and the range markers back to exactly the state after `seq`, and starts the
    /// observers again. Durable before it returns (under every durability policy): the cut is
    /// recorded in the directory's `CUT` list before anything else is appended, and the next
    /// open applies it. Readers already past `seq` fail with `Error::Truncated`.
    pub fn truncate_after(&self, seq: u64) -> Result<()> {
        let inner = &self.inner;
        let Some(undo) = &inner.undo else {
            return Err(Error::Invalid(
                "truncate_after needs a replicated engine (Config::replicated)".into(),
            ));
        };
        // No compaction moves records while the index is rolled back.
        let _no_compaction = inner.compaction_lock.lock().expect("compaction lock");
        let mut writer = inner.lock_writer();
        inner.check_writable()?;
        let last = writer.next_seq - 1;
        if seq >= last {
            return Ok(());
        }
        // A seal under way swaps a segment for a read-only copy made from it: a cut set on the
        // old object between the copy and the swap would be lost, and the cut records would
        // come back to log readers. Finish it first (no new one starts: rotation needs the
        // writer lock, held here).
        inner.finish_pending_seal()?;
        let committed = inner.committed.load(Ordering::Acquire);
        if seq < committed {
            return Err(Error::Invalid(format!(
                "cannot truncate after {seq}: entries through {committed} are committed"
            )));
        }
        let taken = undo.lock().expect("undo log lock").take_after(seq);
        for (_, items) in taken {
            for item in items.into_iter().rev() {
                inner.undo(item);
            }
        }
        inner.cut_log_after(seq)?;
        // Appends continue in a fresh segment: the cut ones keep their bytes until the next
        // open (a reader may still map them).
        inner.rotate(&mut writer, 0)?;
        writer.next_seq = seq + 1;
        writer.last_term = match seq {
            0 => 0,
            _ => inner.term_of_kept(seq)?,
        };
        inner.last_seq.store(seq, Ordering::Release);
        inner.lower_durable_seq(seq);
        inner
            .truncation_log
            .lock()
            .expect("truncation log lock")
            .push(seq);
        inner.truncations.fetch_add(1, Ordering::AcqRel);
        // The models' state may hold what was removed: they start again, as at open, with the
        // writer lock held so nothing is written meanwhile.
        self.start_observers()
    }
}

impl Inner {
    /// The lowest seq kept by any truncation after the first `since` (readers made before
    /// them may be past it).
    pub(super) fn kept_through_since(&self, since: u64) -> u64 {
        self.truncation_log.lock().expect("truncation log lock")[since as usize..]
            .iter()
            .copied()
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Cuts every log segment's records after `seq` off: in memory now (readers, compaction
    /// and hint files stop at the cut) and, through the durable `CUT` list, in the files at the
    /// next open. The bytes cut count as dead.
    fn cut_log_after(&self, seq: u64) -> Result<()> {
        let segments: Vec<_> = self
            .segments_read()
            .all()
            .filter(|s| !s.is_superseded() && s.max_seq.load(Ordering::Relaxed) > seq)
            .cloned()
            .collect();
        let mut cuts = Vec::new();
        for segment in segments {
            let end = segment.readable_len();
            let mut offset = SEGMENT_HEADER_BYTES;
            let mut kept_max = 0;
            while offset + RECORD_HEADER_BYTES <= end {
                let header = segment.bytes(offset, RECORD_HEADER_BYTES);
                let record_seq = format::peek_seq(header);
                if record_seq > seq {
                    break;
                }
                kept_max = record_seq;
                let (key_len, value_len) = format::peek_lengths(header);
                offset += format::record_len(key_len, value_len);
            }
            // Log-only records cut off are dead (puts and markers were counted by the undo).
            let mut appended = 0;
            visit_records(&segment, |record, at| {
                if at >= offset && record.kind == RecordKind::Append {
                    appended += record.len;
                }
            })?;
            segment.add_dead(appended);
            segment.cut(offset);
            segment.max_seq.store(kept_max, Ordering::Relaxed);
            if kept_max == 0 {
                segment.min_seq.store(u64::MAX, Ordering::Relaxed);
            }
            cuts.push((segment.id, offset as u64));
        }
        if let Some(dir) = &self.dir {
            let mut list = self.cuts.lock().expect("cut list lock");
            list.cuts.extend(cuts);
            list.commit(&self.backend, dir)?;
        }
        Ok(())
    }

    /// The term of the kept entry `seq` (the log's last after a truncation).
    fn term_of_kept(&self, seq: u64) -> Result<u64> {
        let candidates: Vec<_> = self
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
            let mut term = None;
            visit_records(&segment, |record, _| {
                if record.seq == seq {
                    term = Some(record.term);
                }
            })?;
            if let Some(term) = term {
                return Ok(term);
            }
        }
        Err(Error::NotInLog { seq })
    }
}
