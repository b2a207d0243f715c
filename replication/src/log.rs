//! The node's copy of the log in memory, with how far it is on disk (`stable`), committed and
//! applied. It may start after a prefix it no longer holds (`offset`): entries through
//! `offset` are committed and applied, and live only in the engine (a compacted prefix, or
//! what a restarted node did not read back); only `offset`'s term is kept, for log matching.
//!
//! Invariants: `offset <= applied <= commit <= last_index()`; entry `i` sits at
//! `entries[i - offset - 1]`; terms never decrease along the log; nothing at or below
//! `commit` is ever removed, except by `compact_through`, which forgets an applied prefix.

use crate::message::Entry;

#[derive(Debug)]
pub(crate) struct Log {
    entries: Vec<Entry>,
    /// The index before the first entry held (0: the log is held from index 1).
    offset: u64,
    /// The term of the entry at `offset` (0 when `offset` is 0).
    offset_term: u64,
    /// Entries through this index have been handed out to be persisted (or came from disk).
    pub(crate) stable: u64,
    /// A persisted suffix after this index was cut and the cut is not yet handed out: the
    /// caller must truncate its log there before appending the unstable entries.
    pub(crate) cut_after: Option<u64>,
    pub(crate) commit: u64,
    pub(crate) applied: u64,
}

impl Log {
    /// A log read back from disk: `entries` must follow `offset` (whose term is
    /// `offset_term`) and be contiguous. Everything through `offset` counts as committed and
    /// applied.
    pub(crate) fn restore(
        offset: u64,
        offset_term: u64,
        entries: Vec<Entry>,
        commit: u64,
        applied: u64,
    ) -> Log {
        for (position, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                offset + position as u64 + 1,
                "persisted log has a gap"
            );
        }
        let mut previous = offset_term;
        for entry in &entries {
            assert!(entry.term >= previous, "persisted log's terms go back");
            previous = entry.term;
        }
        let stable = offset + entries.len() as u64;
        let commit = commit.max(offset);
        assert!(
            commit <= stable,
            "commit {commit} beyond the persisted log {stable}"
        );
        let applied = applied.max(offset);
        assert!(
            applied <= commit,
            "applied {applied} beyond commit {commit}"
        );
        Log {
            entries,
            offset,
            offset_term,
            stable,
            cut_after: None,
            commit,
            applied,
        }
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.offset_term, |entry| entry.term)
    }

    /// The first index whose entry the log holds (`offset + 1`).
    pub(crate) fn first_index(&self) -> u64 {
        self.offset + 1
    }

    /// The term at `index`: `Some(0)` at 0 (before the first entry), `None` beyond the end
    /// or before `offset` (forgotten).
    pub(crate) fn term_at(&self, index: u64) -> Option<u64> {
        match index {
            _ if index == self.offset => Some(self.offset_term),
            _ if index < self.offset => None,
            _ => self
                .entries
                .get((index - self.offset) as usize - 1)
                .map(|entry| entry.term),
        }
    }

    pub(crate) fn entry(&self, index: u64) -> Option<&Entry> {
        if index <= self.offset {
            return None;
        }
        self.entries.get((index - self.offset) as usize - 1)
    }

    /// Entries `from..=through` (both within the held log).
    pub(crate) fn slice(&self, from: u64, through: u64) -> &[Entry] {
        assert!(
            from > self.offset && through <= self.last_index(),
            "slice {from}..={through} outside {}..={}",
            self.first_index(),
            self.last_index()
        );
        if from > through {
            return &[];
        }
        let base = self.offset + 1;
        &self.entries[(from - base) as usize..=(through - base) as usize]
    }

    pub(crate) fn unstable(&self) -> &[Entry] {
        &self.entries[(self.stable - self.offset) as usize..]
    }

    /// Forgets the entries through `index` (at most `applied`; the caller's engine holds
    /// them). Returns the new offset.
    pub(crate) fn compact_through(&mut self, index: u64) -> u64 {
        let index = index.min(self.applied).min(self.stable);
        if index <= self.offset {
            return self.offset;
        }
        let term = self.term_at(index).expect("an index within the held log");
        self.entries.drain(..(index - self.offset) as usize);
        self.offset = index;
        self.offset_term = term;
        self.offset
    }

    /// Replaces the whole log by a snapshot through `index` (whose entry has `term`): the log
    /// restarts after it, as if restored with that offset, and the snapshot's state counts as
    /// committed, applied and on disk (the caller installs it before anything else of the
    /// `Ready` that reports it). Only past the commit index: nothing committed is dropped.
    pub(crate) fn restore_snapshot(&mut self, index: u64, term: u64) {
        assert!(
            index > self.commit,
            "a snapshot through {index} at or below the commit index {}",
            self.commit
        );
        self.entries.clear();
        self.offset = index;
        self.offset_term = term;
        self.stable = index;
        // The snapshot replaces the persisted log whole: a cut not yet handed out is moot.
        self.cut_after = None;
        self.commit = index;
        self.applied = index;
    }

    /// §5.4.1: a candidate's log is at least as up to date as ours.
    pub(crate) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The leader's own append.
    pub(crate) fn push(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index() + 1, "append out of order");
        assert!(entry.term >= self.last_term(), "append with an older term");
        self.entries.push(entry);
    }

    /// The last index at or below `index` whose term is at most `term` (and its term): where
    /// two logs that disagree about `index` may still agree (etcd's `findConflictByTerm`).
    pub(crate) fn last_index_with_term_at_most(&self, index: u64, term: u64) -> (u64, u64) {
        let mut index = index.min(self.last_index());
        if index < self.offset {
            // Forgotten here (a leader told of a follower's hint below its offset): the index
            // stands, its term is unknown (only a snapshot could serve that follower).
            return (index, 0);
        }
        loop {
            let at = self.term_at(index).expect("index within the held log");
            // At the offset the logs agree (it is committed): no need to look further back.
            if at <= term || index == self.offset {
                return (index, at);
            }
            index -= 1;
        }
    }

    /// A follower's side of AppendEntries (§5.3): if our entry at `prev_index` has
    /// `prev_term`, drop whatever conflicts with `entries`, append what is new, and return the
    /// index of the last entry the leader sent (our log matches the leader's through it).
    pub(crate) fn try_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
    ) -> Option<u64> {
        if self.term_at(prev_index) != Some(prev_term) {
            return None;
        }
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                prev_index + 1 + offset as u64,
                "append message has a gap"
            );
        }
        let first_new = entries
            .iter()
            .position(|entry| self.term_at(entry.index) != Some(entry.term));
        if let Some(first_new) = first_new {
            let index = entries[first_new].index;
            if index <= self.last_index() {
                self.cut_after(index - 1);
            }
            self.entries.extend_from_slice(&entries[first_new..]);
        }
        Some(prev_index + entries.len() as u64)
    }

    /// Removes every entry after `index`: only ever an uncommitted suffix.
    fn cut_after(&mut self, index: u64) {
        assert!(
            index >= self.commit,
            "cutting committed entries: after {index}, commit {}",
            self.commit
        );
        self.entries.truncate((index - self.offset) as usize);
        if index < self.stable {
            self.stable = index;
            self.cut_after = Some(self.cut_after.map_or(index, |earlier| earlier.min(index)));
        }
    }

    /// Raises the commit index (never lowers it; never beyond the log).
    pub(crate) fn commit_to(&mut self, index: u64) -> bool {
        assert!(index <= self.last_index(), "commit {index} beyond the log");
        if index > self.commit {
            self.commit = index;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(terms: &[u64]) -> Log {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(position, &term)| Entry {
                term,
                index: position as u64 + 1,
                data: Default::default(),
            })
            .collect();
        Log::restore(0, 0, entries, 0, 0)
    }

    fn entries(first_index: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(offset, &term)| Entry {
                term,
                index: first_index + offset as u64,
                data: Default::default(),
            })
            .collect()
    }

    #[test]
    fn append_refuses_a_mismatched_prev_entry() {
        let mut log = log_of(&[1, 1, 2]);
        assert_eq!(log.try_append(3, 3, &entries(4, &[3])), None);
        assert_eq!(log.try_append(4, 2, &entries(5, &[3])), None);
        assert_eq!(log.last_index(), 3);
    }

    #[test]
    fn append_cuts_a_conflicting_suffix_and_reports_the_cut() {
        let mut log = log_of(&[1, 1, 2, 2]);
        assert_eq!(log.try_append(2, 1, &entries(3, &[3])), Some(3));
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.term_at(3), Some(3));
        assert_eq!(log.cut_after, Some(2));
        assert_eq!(log.unstable(), &entries(3, &[3])[..]);
    }

    #[test]
    fn append_of_entries_already_held_changes_nothing() {
        let mut log = log_of(&[1, 1, 2, 2]);
        // A delayed, shorter append must not cut what a later one added (§5.3, step 3).
        assert_eq!(log.try_append(1, 1, &entries(2, &[1])), Some(2));
        assert_eq!(log.last_index(), 4);
        assert_eq!(log.cut_after, None);
    }

    #[test]
    #[should_panic(expected = "cutting committed entries")]
    fn cutting_a_committed_entry_panics() {
        let mut log = log_of(&[1, 1, 2]);
        log.commit_to(3);
        log.try_append(1, 1, &entries(2, &[3]));
    }

    #[test]
    fn conflict_hint_skips_a_term() {
        let log = log_of(&[1, 1, 2, 2, 2, 4]);
        assert_eq!(log.last_index_with_term_at_most(6, 3), (5, 2));
        assert_eq!(log.last_index_with_term_at_most(9, 1), (2, 1));
        assert_eq!(log.last_index_with_term_at_most(4, 0), (0, 0));
    }

    #[test]
    fn up_to_date_compares_last_term_then_length() {
        let log = log_of(&[1, 2, 2]);
        assert!(log.is_up_to_date(1, 3));
        assert!(log.is_up_to_date(3, 2));
        assert!(!log.is_up_to_date(2, 2));
        assert!(!log.is_up_to_date(9, 1));
    }

    #[test]
    fn a_log_after_an_offset_knows_the_offset_term_and_nothing_before() {
        let mut log = Log::restore(10, 3, entries(11, &[3, 4]), 11, 11);
        assert_eq!(log.first_index(), 11);
        assert_eq!(log.last_index(), 12);
        assert_eq!(log.term_at(10), Some(3));
        assert_eq!(log.term_at(9), None);
        assert_eq!(log.entry(10), None);
        assert_eq!(log.slice(11, 12).len(), 2);
        assert_eq!(log.last_index_with_term_at_most(12, 2), (10, 3));
        assert_eq!(log.try_append(12, 4, &entries(13, &[5])), Some(13));
        assert_eq!(
            log.try_append(9, 3, &entries(10, &[3])),
            None,
            "9 is forgotten"
        );
        log.commit_to(13);
        log.applied = 12;
        assert_eq!(log.compact_through(13), 12, "never past applied");
        assert_eq!(log.term_at(12), Some(4));
        assert_eq!(log.unstable(), &entries(13, &[5])[..]);
    }
}
