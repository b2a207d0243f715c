//! [`Timers`]: one loop's parked deadlines, a min-heap of `(deadline, connection, park)`.
//!
//! Entries are never removed when a park ends early (a wake completed it, the connection
//! closed): each names the connection's slot, its id and the park's number, and the loop
//! ignores an entry that no longer matches a parked connection when it fires. So completing a
//! park costs nothing, and a stale entry is dropped when its time comes, or sooner by
//! [`Timers::compact`] when stale entries pile up (many short-lived parks with long deadlines).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Entries the heap may hold beyond twice the loop's connections before it is compacted.
const STALE_SLACK: usize = 64;

/// One deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Timer {
    /// Absolute milliseconds on the server's clock. First, so the heap orders by it.
    pub deadline_ms: u64,
    /// The connection's slot in its loop.
    pub slot: usize,
    /// The connection's id: a slot reused by a later connection does not match.
    pub id: u64,
    /// Which park of that connection set it: a later park does not match.
    pub park: u64,
}

#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
}

impl Timers {
    pub(super) fn add(&mut self, timer: Timer) {
        self.heap.push(Reverse(timer));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest deadline (possibly of a stale entry: waking for it once is harmless).
    pub(super) fn next_deadline_ms(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(timer)| timer.deadline_ms)
    }

    /// Removes and returns an entry whose deadline is at or before `now_ms`.
    pub(super) fn pop_due(&mut self, now_ms: u64) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse(timer)) if timer.deadline_ms <= now_ms => {
                self.heap.pop().map(|Reverse(timer)| timer)
            }
            _ => None,
        }
    }

    /// Drops the entries `is_live` rejects once the heap holds more than twice `connections`
    /// (each connection has at most one live entry) plus some slack, so its size stays
    /// proportional to the connections at an amortized O(1) per entry.
    pub(super) fn compact(&mut self, connections: usize, is_live: impl Fn(&Timer) -> bool) {
        if self.heap.len() > 2 * connections + STALE_SLACK {
            self.heap.retain(|Reverse(timer)| is_live(timer));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(deadline_ms: u64, park: u64) -> Timer {
        Timer {
            deadline_ms,
            slot: 0,
            id: 1,
            park,
        }
    }

    #[test]
    fn due_entries_come_out_in_deadline_order() {
        let mut timers = Timers::default();
        for (deadline, park) in [(30, 1), (10, 2), (20, 3), (10, 4)] {
            timers.add(timer(deadline, park));
        }
        assert_eq!(timers.next_deadline_ms(), Some(10));
        assert_eq!(timers.pop_due(9), None);
        let due: Vec<u64> = std::iter::from_fn(|| timers.pop_due(20))
            .map(|t| t.park)
            .collect();
        assert_eq!(due, vec![2, 4, 3]);
        assert_eq!(timers.next_deadline_ms(), Some(30));
    }

    #[test]
    fn stale_entries_are_compacted_past_the_slack() {
        let mut timers = Timers::default();
        for park in 0..200 {
            timers.add(timer(1000 + park, park));
        }
        // One connection, whose live park is 199: compaction keeps only that.
        timers.compact(1, |t| t.park == 199);
        assert_eq!(timers.len(), 1);
        for park in 0..10 {
            timers.add(timer(5, park));
        }
        timers.compact(1, |_| false);
        assert_eq!(timers.len(), 11, "under the slack, nothing is scanned");
    }
}
