//! The node's copy of the log: every entry in memory (no compaction or snapshots yet), with
//! how far it is on disk (`stable`), committed and applied.
//!
//! Invariants: `applied <= commit <= last_index()`; entry `i` sits at `entries[i - 1]`; terms
//! never decrease along the log; nothing at or below `commit` is ever removed.

use crate::message::Entry;

#[derive(Debug)]
pub(crate) struct Log {
    entries: Vec<Entry>,
    /// Entries through this index have been handed out to be persisted (or came from disk).
    pub(crate) stable: u64,
    /// A persisted suffix after this index was cut and the cut is not yet handed out: the
    /// caller must truncate its log there before appending the unstable entries.
    pub(crate) cut_after: Option<u64>,
    pub(crate) commit: u64,
    pub(crate) applied: u64,
}

impl Log {
    /// A log read back from disk: `entries` must start at index 1 and be contiguous.
    pub(crate) fn restore(entries: Vec<Entry>, commit: u64, applied: u64) -> Log {
        for (position, entry) in entries.iter().enumerate() {
            assert_eq!(entry.index, position as u64 + 1, "persisted log has a gap");
        }
        for pair in entries.windows(2) {
            assert!(
                pair[0].term <= pair[1].term,
                "persisted log's terms go back"
            );
        }
        let stable = entries.len() as u64;
        assert!(
            commit <= stable,
            "commit {commit} beyond the persisted log {stable}"
        );
        assert!(
            applied <= commit,
            "applied {applied} beyond commit {commit}"
        );
        Log {
            entries,
            stable,
            cut_after: None,
            commit,
            applied,
        }
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.entries.last().map_or(0, |entry| entry.term)
    }

    /// The term at `index`: `Some(0)` at 0 (before the first entry), `None` beyond the end.
    pub(crate) fn term_at(&self, index: u64) -> Option<u64> {
        match index {
            0 => Some(0),
            _ => self.entries.get(index as usize - 1).map(|entry| entry.term),
        }
    }

    pub(crate) fn entry(&self, index: u64) -> Option<&Entry> {
        index
            .checked_sub(1)
            .and_then(|position| self.entries.get(position as usize))
    }

    /// Entries `from..=through` (both within the log).
    pub(crate) fn slice(&self, from: u64, through: u64) -> &[Entry] {
        assert!(
            from >= 1 && through <= self.last_index(),
            "slice {from}..={through}"
        );
        if from > through {
            return &[];
        }
        &self.entries[from as usize - 1..through as usize]
    }

    pub(crate) fn unstable(&self) -> &[Entry] {
        &self.entries[self.stable as usize..]
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
        loop {
            let at = self.term_at(index).expect("index within the log");
            if at <= term {
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
        self.entries.truncate(index as usize);
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
                data: vec![],
            })
            .collect();
        Log::restore(entries, 0, 0)
    }

    fn entries(first_index: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(offset, &term)| Entry {
                term,
                index: first_index + offset as u64,
                data: vec![],
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
}
