//! Reply gates: a reply may leave only once the sequence number its gate names is open
//! (durable under `--fsync always`; later, committed by a cluster majority).
//!
//! The authority is the server's [`ReplyGates`]. Each connection keeps a [`GateQueue`]: where
//! in its output stream each gated reply starts and the seq it waits for. Bytes before the
//! first closed gate are sent as usual; from it on they wait. When the authority reports a
//! failure, the replies from the first closed gate on are withdrawn (see
//! [`GateQueue::withdraw`] and `docs/protocol.md`).

use std::collections::VecDeque;

use super::wake::LoopsHandle;

/// The authority that opens reply gates. Gates open in seq order: once `opened_through` is
/// `n`, every gate `<= n` is open.
pub trait ReplyGates: Send + Sync {
    /// Where the gates stand. Called once per loop iteration while some connection of the
    /// loop waits on a gate (never per reply), so it may take a lock.
    fn status(&self) -> GateStatus;
    /// Asks that gates open through `seq` (start a flush, say), without blocking. When the
    /// state changes (gates opened, or failed), call `loops.wake_all()` so the loops look
    /// again; a loop that is not woken still looks every 100 ms. Called at most once per
    /// loop iteration, with the highest seq the loop's connections wait on, and again in
    /// later iterations while they still wait.
    fn request(&self, seq: u64, loops: &LoopsHandle);
}

/// What [`ReplyGates::status`] reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateStatus {
    /// Every gate up to and including this seq is open.
    pub opened_through: u64,
    /// Set once the gates above `opened_through` can no longer open (a flush failed): their
    /// replies are withdrawn. Says why, for the one error reply each affected client gets
    /// (`-ERR <failed>`). Final: a failed authority never opens another gate.
    pub failed: Option<String>,
    /// Gates in `(from, through]` can never open, though later ones may (a replicated
    /// server's writes that a new leader's log replaced: docs/ARCHITECTURE.md, decision 76).
    /// A reply behind such a gate is withdrawn as for `failed`, even once `opened_through`
    /// has passed it: the authority never reuses a withdrawn gate, and this range wins over
    /// `opened_through`. An authority that withdraws twice before a loop looks may widen the
    /// range to cover both (withdrawing too much only costs an error reply).
    pub withdrawn: Option<Withdrawn>,
}

/// Gates that can never open, in a [`GateStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Withdrawn {
    /// Exclusive.
    pub from: u64,
    pub through: u64,
    pub reason: String,
}

impl Withdrawn {
    pub fn contains(&self, gate: u64) -> bool {
        self.from < gate && gate <= self.through
    }
}

/// Whom a reply answers, kept with its gate so a withdrawal can name the first request it
/// takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplyOrigin {
    /// The reply to a request. For the binary protocol, its opcode and id; RESP has neither
    /// (both 0).
    Request { opcode: u8, request_id: u32 },
    /// A message the service pushed on its own.
    Push,
}

/// One reply's place in a connection's output stream.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Output-stream position (bytes ever written to the connection's output, not an index
    /// into its buffer, which is drained from the front) where the reply starts.
    at: u64,
    /// The seq its gate waits for; 0 for a reply with no gate of its own, recorded only to
    /// mark where it starts (behind a closed gate it waits anyway).
    seq: u64,
    origin: ReplyOrigin,
}

/// A connection's gated replies, in output order. Empty (and costing nothing) unless some
/// reply waits.
#[derive(Debug, Default)]
pub(super) struct GateQueue {
    entries: VecDeque<Entry>,
}

/// What [`GateQueue::withdraw`] takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Withdrawal {
    /// Output-stream position from which everything is dropped.
    pub from: u64,
    /// The first request whose reply is dropped: the one error reply names it. `None` if
    /// only pushes were dropped.
    pub first_request: Option<(u8, u32)>,
}

impl GateQueue {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records a reply that starts at output-stream position `at` and needs gate `seq` (if
    /// any). A gate at or below `known_open` (a seq the loop has already seen open) is no
    /// gate at all when nothing waits before it, which is the common case and records
    /// nothing; behind a closed gate, every reply is recorded so a withdrawal knows where
    /// each one starts.
    pub(super) fn record(
        &mut self,
        at: u64,
        seq: Option<u64>,
        known_open: u64,
        origin: ReplyOrigin,
    ) {
        let waiting = !self.entries.is_empty();
        match seq {
            Some(seq) if waiting || seq > known_open => {
                self.entries.push_back(Entry { at, seq, origin })
            }
            None if waiting => self.entries.push_back(Entry { at, seq: 0, origin }),
            _ => {}
        }
    }

    /// Output-stream position where held bytes start, if any are held.
    pub(super) fn held_from(&self) -> Option<u64> {
        self.entries.front().map(|entry| entry.at)
    }

    /// Highest seq waited on.
    pub(super) fn highest_seq(&self) -> u64 {
        self.entries
            .iter()
            .map(|entry| entry.seq)
            .max()
            .unwrap_or(0)
    }

    /// Opens every gate at the front up to `opened_through`, stopping at a withdrawn one.
    /// Returns true if any opened.
    pub(super) fn release(&mut self, opened_through: u64, withdrawn: Option<&Withdrawn>) -> bool {
        let before = self.entries.len();
        while self.entries.front().is_some_and(|entry| {
            entry.seq <= opened_through && !withdrawn.is_some_and(|w| w.contains(entry.seq))
        }) {
            self.entries.pop_front();
        }
        self.entries.len() != before
    }

    /// Whether a reply still held waits on a withdrawn gate.
    pub(super) fn holds_withdrawn(&self, withdrawn: &Withdrawn) -> bool {
        self.entries
            .iter()
            .any(|entry| withdrawn.contains(entry.seq))
    }

    /// The gates still closed after `release` can never open: empties the queue and says
    /// from where the output is dropped and which request to answer with the error.
    pub(super) fn withdraw(&mut self) -> Option<Withdrawal> {
        let from = self.entries.front()?.at;
        let first_request = self.entries.iter().find_map(|entry| match entry.origin {
            ReplyOrigin::Request { opcode, request_id } => Some((opcode, request_id)),
            ReplyOrigin::Push => None,
        });
        self.entries.clear();
        Some(Withdrawal {
            from,
            first_request,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: u32) -> ReplyOrigin {
        ReplyOrigin::Request {
            opcode: 0xF0,
            request_id: id,
        }
    }

    #[test]
    fn open_gates_record_nothing_and_closed_ones_hold_what_follows() {
        let mut gates = GateQueue::default();
        gates.record(0, None, 5, request(1));
        gates.record(10, Some(5), 5, request(2));
        assert!(
            gates.is_empty(),
            "no gate, or one known open: nothing to hold"
        );
        gates.record(20, Some(7), 5, request(3));
        gates.record(30, None, 5, request(4));
        gates.record(40, Some(6), 5, request(5));
        assert_eq!(gates.held_from(), Some(20));
        assert_eq!(gates.highest_seq(), 7);
        assert!(
            !gates.release(6, None),
            "the front gate (7) is still closed"
        );
        assert!(gates.release(7, None));
        assert!(
            gates.is_empty(),
            "the reply behind it and the lower gate open with it"
        );
    }

    #[test]
    fn a_withdrawal_starts_at_the_first_closed_gate_and_names_its_first_request() {
        let mut gates = GateQueue::default();
        gates.record(0, Some(3), 0, request(1));
        gates.record(10, Some(4), 0, ReplyOrigin::Push);
        gates.record(20, None, 0, request(2));
        gates.release(3, None);
        assert_eq!(
            gates.withdraw(),
            Some(Withdrawal {
                from: 10,
                first_request: Some((0xF0, 2)),
            })
        );
        assert!(gates.is_empty());
        assert_eq!(gates.withdraw(), None);
    }

    #[test]
    fn a_withdrawn_gate_stops_the_release_even_below_opened_through() {
        let mut gates = GateQueue::default();
        gates.record(0, Some(3), 0, request(1));
        gates.record(10, Some(5), 0, request(2));
        gates.record(20, Some(9), 0, request(3));
        let withdrawn = Withdrawn {
            from: 4,
            through: 6,
            reason: "replaced".into(),
        };
        assert!(gates.release(9, Some(&withdrawn)), "gate 3 opens");
        assert!(gates.holds_withdrawn(&withdrawn));
        assert_eq!(
            gates.held_from(),
            Some(10),
            "gate 5 never opens, nor what follows it"
        );
        assert_eq!(
            gates.withdraw().map(|w| w.first_request),
            Some(Some((0xF0, 2)))
        );
    }
}
