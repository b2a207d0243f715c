//! Elections (§5.2, §5.4.1) with etcd's pre-vote, and the role changes they drive.

use super::{Campaign, Node, Role};
use crate::message::{Body, Message, NodeId};
use crate::progress::Progress;

impl Node {
    pub(super) fn campaign(&mut self, reason: Campaign) {
        let transfer = reason == Campaign::Transfer;
        if self.config.pre_vote && reason == Campaign::Timeout {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
        let (pre_vote, term) = match self.role {
            Role::PreCandidate => (true, self.term + 1),
            _ => (false, self.term),
        };
        let id = self.id();
        let voters: Vec<NodeId> = self
            .config
            .membership
            .voters()
            .filter(|&voter| voter != id)
            .collect();
        for voter in voters {
            let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
            let body = if pre_vote {
                Body::PreVote {
                    last_index,
                    last_term,
                }
            } else {
                Body::Vote {
                    last_index,
                    last_term,
                    transfer,
                }
            };
            self.messages.push(Message {
                from: id,
                to: voter,
                term,
                body,
            });
        }
        self.tally(self.id(), true);
    }

    pub(super) fn answer_vote_request(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
        pre_vote: bool,
    ) {
        let free = if pre_vote {
            term > self.term && !self.rival_campaign(from, term, last_index, last_term)
        } else {
            self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none())
        };
        let log_ok = self.log.is_up_to_date(last_index, last_term);
        #[cfg(test)]
        let log_ok = log_ok || self.faults.vote_ignores_log;
        let granted = free && log_ok;
        if granted && !pre_vote {
            self.vote = Some(from);
            self.election_elapsed = 0;
        }
        if granted && pre_vote && self.role == Role::Follower {
            // The asker is about to ask for real votes: a campaign of our own before its vote
            // arrives would split the election (both candidates in one term, one vote each).
            // Not etcd's rule (a pre-vote grant changes nothing there); it matters once
            // followers campaign soon after forgetting a dead leader (`forget_leader`), at
            // nearly the same time.
            self.reset_timers();
            // A grant means the leader's lease had run out here (`adopt_higher_term` refuses
            // pre-votes within it); forget that leader, or the timer just reset would renew
            // its lease and make us ignore the asker's real vote (found by the membership
            // sweep, seed 1: a follower granted every pre-vote and ignored every vote).
            self.leader = None;
        }
        // A grant answers in the term asked about; a refusal in ours, so the asker can catch up.
        let answer_term = if granted { term } else { self.term };
        let body = if pre_vote {
            Body::PreVoteResponse { granted }
        } else {
            Body::VoteResponse { granted }
        };
        self.messages.push(Message {
            from: self.id(),
            to: from,
            term: answer_term,
            body,
        });
    }

    /// Whether a pre-vote for `term` competes with our own pre-vote for the same term and
    /// loses the tie: two followers that lost the same leader may start pre-votes at nearly
    /// the same time, and if each granted the other's, both would become candidates and split
    /// the vote. The better log wins the tie, then the lower id; the loser's pre-vote stays
    /// undecided, and the winner's real vote then reaches it (no lease: it has no leader).
    /// A pre-vote grant promises nothing, so this refusal costs no safety.
    fn rival_campaign(&self, from: NodeId, term: u64, last_index: u64, last_term: u64) -> bool {
        if self.role != Role::PreCandidate || term != self.term + 1 {
            return false;
        }
        let ours = (self.log.last_term(), self.log.last_index());
        let theirs = (last_term, last_index);
        theirs < ours || (theirs == ours && from > self.id())
    }

    /// Records one answer to our campaign and acts on a decided outcome.
    pub(super) fn tally(&mut self, from: NodeId, granted: bool) {
        self.votes.entry(from).or_insert(granted);
        let membership = &self.config.membership;
        let quorum = membership.quorum();
        // Only voters' answers count (a node asked before a change was applied may not be one).
        let answers = self
            .votes
            .iter()
            .filter(|(&voter, _)| membership.is_voter(voter));
        let (yes, no) = answers.fold((0, 0), |(yes, no), (_, &granted)| match granted {
            true => (yes + 1, no),
            false => (yes, no + 1),
        });
        if yes >= quorum {
            match self.role {
                Role::PreCandidate => self.campaign(Campaign::PreVoteWon),
                Role::Candidate => self.become_leader(),
                Role::Follower | Role::Leader => {}
            }
        } else if no >= quorum {
            self.become_follower(self.term, None);
        }
    }

    pub(super) fn reset_timers(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let base = self.config.election_ticks;
        self.election_timeout = base + self.rng.below(u64::from(base)) as u32;
        self.votes.clear();
        self.transferee = None;
    }

    pub(super) fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        assert!(term >= self.term, "term going back");
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.forget_unsynced();
        self.role = Role::Follower;
        self.leader = leader;
        self.reset_timers();
    }

    pub(super) fn become_pre_candidate(&mut self) {
        self.forget_unsynced();
        self.role = Role::PreCandidate;
        self.leader = None;
        self.reset_timers();
    }

    pub(super) fn become_candidate(&mut self) {
        self.forget_unsynced();
        self.term += 1;
        self.vote = Some(self.id());
        self.role = Role::Candidate;
        self.leader = None;
        self.reset_timers();
    }

    pub(super) fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.handed_over = false;
        self.leader = Some(self.id());
        self.reset_timers();
        let next_index = self.log.last_index() + 1;
        let id = self.id();
        self.progress = self
            .config
            .membership
            .members()
            .filter(|&member| member != id)
            .map(|member| (member, Progress::new(next_index)))
            .collect();
        // An entry of our own term, so that what earlier leaders left gets committed (§5.4.2, §8).
        // Its index is where a new membership change may follow: any change an earlier leader
        // left in our log is applied by then, and our term has committed an entry (the fix to
        // the single-server change bug the dissertation's author described in 2015).
        self.pending_conf_index = self.append_own(Default::default());
        self.broadcast_append();
        // The first round of the lease at once, not a heartbeat interval later: until a
        // majority answers one, this leader serves no reads.
        self.broadcast_heartbeat();
    }
}
