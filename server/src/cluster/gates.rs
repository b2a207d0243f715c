//! [`ClusterGates`]: in a cluster, a reply that acknowledges a write leaves only once a
//! majority holds the write (and, under `--fsync always`, has it durable), and a reply to a
//! read waits for every write acknowledged before it was answered.
//!
//! A gate here is a *token*, not a seq: every write committed on this node gets the next
//! token, registered with its seq while the engine's writer lock orders writes (so tokens and
//! seqs rise together). Seqs are reused when a new leader replaces an uncommitted suffix
//! (`Engine::truncate_after`); tokens never are. When that happens the tokens of the cut
//! writes are withdrawn (`GateStatus::withdrawn`): their replies become an error and the
//! connection closes, as after a crash, because the client cannot know what became of them.
//! Later tokens open normally (docs/ARCHITECTURE.md, decision 76).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use flin_net::{GateStatus, LoopsHandle, ReplyGates, Withdrawn};

/// The gates of a replicated server.
#[derive(Default)]
pub struct ClusterGates {
    registry: Mutex<Registry>,
    /// Every token up to this one is open.
    opened_through: AtomicU64,
    /// The last token handed out.
    last_token: AtomicU64,
    loops: Mutex<Option<LoopsHandle>>,
}

#[derive(Default)]
pub struct Registry {
    next: u64,
    /// Tokens not yet open, with their seqs, in token (and seq) order.
    pending: VecDeque<(u64, u64)>,
    withdrawn: Option<Withdrawn>,
}

impl Registry {
    /// Registers the write committed at `seq` and returns its token.
    pub fn register(&mut self, gates: &ClusterGates, seq: u64) -> u64 {
        self.next += 1;
        let token = self.next;
        self.pending.push_back((token, seq));
        gates.last_token.store(token, Ordering::Release);
        token
    }
}

impl ClusterGates {
    /// Held from before a write commits (inside its transaction, under the writer lock) until
    /// its token is registered: tokens follow seqs.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().expect("cluster gates lock")
    }

    /// Everything through `seq` is committed: opens the tokens of those writes.
    pub fn committed_through(&self, seq: u64) {
        let mut registry = self.registry();
        let mut opened = None;
        while let Some(&(token, at)) = registry.pending.front() {
            if at > seq {
                break;
            }
            registry.pending.pop_front();
            opened = Some(token);
        }
        if registry.pending.is_empty() {
            opened = Some(registry.next);
        }
        drop(registry);
        if let Some(token) = opened {
            if self.opened_through.fetch_max(token, Ordering::AcqRel) < token {
                self.wake_loops();
            }
        }
    }

    /// The log was cut after `seq`: the writes above it will never commit.
    pub fn withdraw_after(&self, seq: u64, reason: &str) {
        let mut registry = self.registry();
        let Some(first) = registry.pending.iter().position(|&(_, at)| at > seq) else {
            return;
        };
        let from = registry.pending[first].0 - 1;
        let through = registry.pending.back().expect("a pending token").0;
        registry.pending.truncate(first);
        let from = registry
            .withdrawn
            .as_ref()
            .map_or(from, |earlier| earlier.from.min(from));
        registry.withdrawn = Some(Withdrawn {
            from,
            through,
            reason: reason.to_string(),
        });
        if registry.pending.is_empty() {
            // Nothing before the cut waits: every token so far is open or withdrawn.
            self.opened_through.fetch_max(through, Ordering::AcqRel);
        }
        drop(registry);
        self.wake_loops();
    }

    /// The gate of a reply that wrote nothing: the last token handed out, so a read shows no
    /// write before a majority has it.
    pub fn gate_for_read(&self) -> Option<u64> {
        let last = self.last_token.load(Ordering::Acquire);
        (last > self.opened_through.load(Ordering::Acquire)).then_some(last)
    }

    fn wake_loops(&self) {
        if let Some(loops) = &*self.loops.lock().expect("loops lock") {
            loops.wake_all();
        }
    }
}

impl ReplyGates for ClusterGates {
    fn status(&self) -> GateStatus {
        GateStatus {
            opened_through: self.opened_through.load(Ordering::Acquire),
            failed: None,
            withdrawn: self.registry().withdrawn.clone(),
        }
    }

    fn request(&self, _token: u64, loops: &LoopsHandle) {
        let mut known = self.loops.lock().expect("loops lock");
        if known.is_none() {
            *known = Some(loops.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(gates: &ClusterGates, seq: u64) -> u64 {
        gates.registry().register(gates, seq)
    }

    #[test]
    fn tokens_open_as_their_seqs_commit() {
        let gates = ClusterGates::default();
        let a = register(&gates, 5);
        let b = register(&gates, 6);
        assert_eq!(gates.gate_for_read(), Some(b));
        gates.committed_through(5);
        assert_eq!(gates.status().opened_through, a);
        gates.committed_through(9);
        assert_eq!(gates.status().opened_through, b);
        assert_eq!(gates.gate_for_read(), None);
    }

    #[test]
    fn a_cut_withdraws_the_tokens_above_it_and_later_tokens_still_open() {
        let gates = ClusterGates::default();
        let kept = register(&gates, 5);
        let cut = register(&gates, 6);
        let cut_too = register(&gates, 7);
        gates.withdraw_after(5, "replaced by the new leader's log");
        let status = gates.status();
        let withdrawn = status.withdrawn.expect("a withdrawal");
        assert!(!withdrawn.contains(kept));
        assert!(withdrawn.contains(cut) && withdrawn.contains(cut_too));
        // The new leader's entries reuse seqs 6 and 7; a later write of ours gets a new token.
        let later = register(&gates, 8);
        gates.committed_through(8);
        let status = gates.status();
        assert_eq!(status.opened_through, later);
        assert!(!status.withdrawn.unwrap().contains(later));
    }
}
