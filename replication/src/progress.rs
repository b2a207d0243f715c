//! What a leader knows of one follower: how far its log matches, what to send next, and how
//! many appends are on the way.

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProgressState {
    /// Where the follower's log matches is unknown: one append at a time, backing off on
    /// rejections, until one is accepted.
    Probe,
    /// The follower is in step: appends go out back to back, `next` advanced optimistically,
    /// at most `inflight_appends_max` unanswered.
    Replicate,
}

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// The follower's log matches ours through this index (0: nothing known).
    pub(crate) match_index: u64,
    /// The next index to send.
    pub(crate) next_index: u64,
    pub(crate) state: ProgressState,
    /// In `Probe`: an append is out and unanswered, so send no other until an answer or a
    /// heartbeat response.
    pub(crate) probe_sent: bool,
    /// In `Replicate`: the last index of each unanswered append, oldest first.
    pub(crate) inflight: VecDeque<u64>,
    /// We heard from the follower since the last quorum check.
    pub(crate) recent_active: bool,
    /// The latest heartbeat round the follower answered in this term (0: none).
    pub(crate) acked_round: u64,
}

impl Progress {
    pub(crate) fn new(next_index: u64) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: false,
            acked_round: 0,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// An accepted append: returns whether the match index moved.
    pub(crate) fn accept(&mut self, match_index: u64) -> bool {
        if match_index <= self.match_index {
            // A duplicate or a late answer; in `Probe` it still means the probe is answered,
            // and the follower holds what it was known to: appends go on from there (else a
            // probe below the known match, as a snapshot's can be, is answered with no
            // higher match again and again).
            self.probe_sent = false;
            if self.state == ProgressState::Probe {
                self.state = ProgressState::Replicate;
                self.next_index = self.next_index.max(self.match_index + 1);
            }
            return false;
        }
        self.match_index = match_index;
        self.next_index = self.next_index.max(match_index + 1);
        while self
            .inflight
            .front()
            .is_some_and(|&last| last <= match_index)
        {
            self.inflight.pop_front();
        }
        if self.state == ProgressState::Probe {
            self.state = ProgressState::Replicate;
            self.next_index = match_index + 1;
            self.probe_sent = false;
        }
        true
    }

    /// Whether another append may go out now.
    pub(crate) fn can_send(&self, inflight_appends_max: usize) -> bool {
        match self.state {
            ProgressState::Probe => !self.probe_sent,
            ProgressState::Replicate => self.inflight.len() < inflight_appends_max,
        }
    }
}
