//! The raft state machine: [`Node`], driven by [`Node::tick`], [`Node::step`] and
//! [`Node::propose`], handing back [`Ready`] batches. No I/O, no clock, no threads: the
//! caller owns the disk, the network and time, and the election timeouts come from a seeded
//! generator, so a run is a function of its inputs and its seed.
//!
//! The caller's loop, after any call that may have changed the node:
//! 1. `if node.has_ready() { let ready = node.ready(); ... }`
//! 2. persist `ready.truncate_after` (cut the log after that index), then `ready.entries`,
//!    then `ready.hard_state`, all durably;
//! 3. send `ready.messages` (only now: a vote or an acknowledgement promises what is on disk);
//! 4. apply `ready.committed` in order;
//! 5. `node.advance()`. No other call may come between `ready` and `advance`.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::log::Log;
use crate::message::{Body, Entry, HardState, Message, NodeId};
use crate::progress::{Progress, ProgressState};
use crate::rng::Rng;

/// A node's role in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Asking for pre-votes, term unchanged.
    PreCandidate,
    Candidate,
    Leader,
}

/// Why a node campaigns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Campaign {
    /// Its election timeout passed: a pre-vote first, if configured.
    Timeout,
    /// A majority said it would vote: the real election.
    PreVoteWon,
    /// The leader handed over (TimeoutNow): no pre-vote, and voters ignore their lease.
    Transfer,
}

/// What a node hands back to be persisted, sent and applied (see the module doc for the order).
#[derive(Debug, Default)]
pub struct Ready {
    /// Set when the hard state changed since the last `Ready`.
    pub hard_state: Option<HardState>,
    /// Cut the persisted log after this index before appending `entries` (a new leader
    /// replaced an uncommitted suffix).
    pub truncate_after: Option<u64>,
    /// Entries to append to the persisted log, contiguous, following `truncate_after` or the
    /// persisted end.
    pub entries: Vec<Entry>,
    /// Messages to send once everything above is durable.
    pub messages: Vec<Message>,
    /// Committed entries to apply, in index order, each exactly once (across restarts: from
    /// the `applied` index given to [`Node::restart`]).
    pub committed: Vec<Entry>,
}

/// What a node finds on disk at restart.
#[derive(Clone, Debug, Default)]
pub struct Persisted {
    pub hard_state: HardState,
    /// The whole persisted log, from index 1.
    pub entries: Vec<Entry>,
    /// Entries through this index were applied before the crash (at most the persisted commit).
    pub applied: u64,
}

/// Switches that break the protocol on purpose, so the simulator's checker can be shown to
/// catch the bug. Test builds only.
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Faults {
    /// Grant votes without §5.4.1's up-to-date check.
    pub(crate) vote_ignores_log: bool,
    /// Commit an entry of an earlier term once a majority holds it (§5.4.2 forbids it).
    pub(crate) commit_counts_old_terms: bool,
    /// Followers take the leader's commit index as far as their own log goes, not only as
    /// far as it was checked against the leader's (§5.3's min(leaderCommit, last new entry)).
    pub(crate) follower_commit_unchecked: bool,
}

/// The handed-out part of a `Ready`, made official by `advance`.
#[derive(Debug)]
struct Handed {
    last_index: u64,
    applied: u64,
    hard_state: HardState,
}

/// One raft node.
#[derive(Debug)]
pub struct Node {
    config: Config,
    term: u64,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: Log,
    /// The leader's view of each other voter.
    progress: BTreeMap<NodeId, Progress>,
    /// Answers to this campaign (pre-vote or vote), ours included.
    votes: BTreeMap<NodeId, bool>,
    /// Ticks since the last reset: for a follower, since it heard from a leader or granted a
    /// vote; for a leader, since the last quorum check.
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    /// This term's election timeout, drawn from `election_ticks..2 * election_ticks`.
    election_timeout: u32,
    /// The node a leadership transfer is handing over to.
    transferee: Option<NodeId>,
    rng: Rng,
    messages: Vec<Message>,
    /// The hard state last handed out.
    persisted_hard_state: HardState,
    /// New proposals wait to be sent (see `propose`).
    appends_due: bool,
    handed: Option<Handed>,
    #[cfg(test)]
    faults: Faults,
}

impl Node {
    /// A node that has never run: empty log, term 0.
    pub fn new(config: Config, seed: u64) -> Node {
        Node::restart(config, seed, Persisted::default())
    }

    /// A node started from what it had persisted. It comes back as a follower of no one.
    pub fn restart(config: Config, seed: u64, persisted: Persisted) -> Node {
        config.validate();
        let on_disk = persisted.hard_state;
        let mut hard_state = on_disk;
        let log = Log::restore(persisted.entries, hard_state.commit, persisted.applied);
        if log.last_term() > hard_state.term {
            // A crash after the entries of a `Ready` were written and before its hard state:
            // the node had moved to the entries' term. Any vote it gave in that term was never
            // sent (messages leave after the whole `Ready` is durable), so none is owed.
            hard_state.term = log.last_term();
            hard_state.vote = None;
        }
        let mut node = Node {
            config,
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: None,
            log,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout: 0,
            transferee: None,
            rng: Rng::new(seed),
            messages: Vec::new(),
            persisted_hard_state: on_disk,
            appends_due: false,
            handed: None,
            #[cfg(test)]
            faults: Faults::default(),
        };
        node.reset_timers();
        node
    }

    #[cfg(test)]
    pub(crate) fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Who this node believes leads its term.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn commit_index(&self) -> u64 {
        self.log.commit
    }

    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }

    /// The entry at `index`, if the log holds one.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// A leader's view of a follower's match index (for status pages and tests).
    pub fn match_index(&self, follower: NodeId) -> Option<u64> {
        match self.role {
            Role::Leader => self
                .progress
                .get(&follower)
                .map(|progress| progress.match_index),
            _ => None,
        }
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit,
        }
    }

    fn assert_advanced(&self) {
        assert!(
            self.handed.is_none(),
            "call advance() after ready() before anything else"
        );
    }

    // ---- Inputs ----

    /// One unit of time passed.
    pub fn tick(&mut self) {
        self.assert_advanced();
        match self.role {
            Role::Leader => self.tick_leader(),
            Role::Follower | Role::PreCandidate | Role::Candidate => self.tick_election(),
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.campaign(Campaign::Timeout);
        }
    }

    fn tick_leader(&mut self) {
        self.election_elapsed += 1;
        self.heartbeat_elapsed += 1;
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                self.become_follower(self.term, None);
                return;
            }
            // A transfer that did not finish within an election timeout is abandoned.
            self.transferee = None;
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Counts the voters heard from since the last check (ourselves included) and starts a
    /// new round.
    fn quorum_recently_active(&mut self) -> bool {
        let mut active = 1;
        for progress in self.progress.values_mut() {
            active += usize::from(progress.recent_active);
            progress.recent_active = false;
        }
        active >= self.config.membership.quorum()
    }

    /// Appends `data` as a new entry (leader only) and returns its index. The entry is
    /// committed when a later `Ready` lists it in `committed` with this index and the
    /// current term; it may instead be lost if leadership changes first.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64> {
        self.assert_advanced();
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if self.transferee.is_some() {
            return Err(Error::TransferInProgress);
        }
        if data.len() > self.config.entry_bytes_max {
            return Err(Error::TooLarge { bytes: data.len() });
        }
        if self.log.last_index() - self.log.commit >= self.config.uncommitted_entries_max {
            return Err(Error::Busy);
        }
        let index = self.append_own(data);
        // Sent from `ready`, so that the proposals made between two `Ready`s travel together.
        self.appends_due = true;
        Ok(index)
    }

    /// Hands leadership to `to` once its log has caught up (leader only). Proposals are
    /// refused until it happens or an election timeout passes.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<()> {
        self.assert_advanced();
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if !self.config.membership.contains(to) {
            return Err(Error::UnknownNode(to));
        }
        if to == self.id() {
            return Ok(());
        }
        self.transferee = Some(to);
        self.election_elapsed = 0;
        if self.progress[&to].match_index == self.log.last_index() {
            self.send(to, Body::TimeoutNow);
        } else {
            self.send_appends(to);
        }
        Ok(())
    }

    /// Takes in a message from another node.
    pub fn step(&mut self, message: Message) -> Result<()> {
        self.assert_advanced();
        if message.to != self.id() {
            return Err(Error::Misdelivered { to: message.to });
        }
        if !self.config.membership.contains(message.from) || message.from == self.id() {
            return Err(Error::UnknownNode(message.from));
        }
        if message.term > self.term {
            if !self.adopt_higher_term(&message) {
                return Ok(());
            }
        } else if message.term < self.term {
            self.answer_stale(&message);
            return Ok(());
        }
        self.step_current(message);
        Ok(())
    }

    /// A message from a higher term: returns false if it is to be ignored.
    fn adopt_higher_term(&mut self, message: &Message) -> bool {
        let asks_for_vote = matches!(
            message.body,
            Body::PreVote { .. }
                | Body::Vote {
                    transfer: false,
                    ..
                }
        );
        if asks_for_vote && self.in_leader_lease() {
            // A leader we heard from recently is alive: a node that merely lost touch with
            // it must not depose it (etcd's check-quorum lease).
            return false;
        }
        match message.body {
            // Neither a pre-vote nor a pre-vote grant changes anyone's term.
            Body::PreVote { .. } | Body::PreVoteResponse { granted: true } => {}
            Body::Append { .. } | Body::Heartbeat { .. } | Body::TimeoutNow => {
                self.become_follower(message.term, Some(message.from))
            }
            _ => self.become_follower(message.term, None),
        }
        true
    }

    fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && self.leader.is_some()
            && self.election_elapsed < self.config.election_ticks
    }

    /// A message from an older term: tell its sender our term where that helps it recover.
    fn answer_stale(&mut self, message: &Message) {
        match message.body {
            // A deposed leader cut off by a partition learns our term and steps down. (Without
            // this, with check-quorum, a node whose term ran ahead could never rejoin.)
            Body::Append { .. } | Body::Heartbeat { .. } => {
                self.send(message.from, Body::HeartbeatResponse)
            }
            Body::PreVote { .. } => {
                self.send(message.from, Body::PreVoteResponse { granted: false })
            }
            _ => {}
        }
    }

    /// A message whose term is ours (or a pre-vote for a later one).
    fn step_current(&mut self, message: Message) {
        let from = message.from;
        match message.body {
            Body::PreVote {
                last_index,
                last_term,
            } => self.answer_vote_request(from, message.term, last_index, last_term, true),
            Body::Vote {
                last_index,
                last_term,
                ..
            } => self.answer_vote_request(from, message.term, last_index, last_term, false),
            Body::PreVoteResponse { granted } => {
                if self.role == Role::PreCandidate && message.term == self.term + 1 {
                    self.tally(from, granted);
                }
            }
            Body::VoteResponse { granted } => {
                if self.role == Role::Candidate {
                    self.tally(from, granted);
                }
            }
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                if self.follow(from) {
                    self.handle_append(from, prev_index, prev_term, &entries, commit);
                }
            }
            Body::Heartbeat { commit } => {
                if self.follow(from) {
                    self.log.commit_to(commit.min(self.log.last_index()));
                    self.send(from, Body::HeartbeatResponse);
                }
            }
            Body::TimeoutNow => {
                if self.role == Role::Follower {
                    self.campaign(Campaign::Transfer);
                }
            }
            Body::AppendAccepted { match_index } => {
                if self.role == Role::Leader {
                    self.handle_append_accepted(from, match_index);
                }
            }
            Body::AppendRejected {
                prev_index,
                hint_index,
                hint_term,
            } => {
                if self.role == Role::Leader {
                    self.handle_append_rejected(from, prev_index, hint_index, hint_term);
                }
            }
            Body::HeartbeatResponse => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(from);
                }
            }
        }
    }

    /// A leader of our term spoke: follow it. Returns false if we are a leader ourselves
    /// (two leaders in one term cannot happen; the simulator's checker would say so).
    fn follow(&mut self, leader: NodeId) -> bool {
        match self.role {
            Role::Leader => false,
            Role::PreCandidate | Role::Candidate => {
                self.become_follower(self.term, Some(leader));
                true
            }
            Role::Follower => {
                self.leader = Some(leader);
                self.election_elapsed = 0;
                true
            }
        }
    }

    // ---- Elections (§5.2, §5.4.1, pre-vote) ----

    fn campaign(&mut self, reason: Campaign) {
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

    fn answer_vote_request(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
        pre_vote: bool,
    ) {
        let free = if pre_vote {
            term > self.term
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

    /// Records one answer to our campaign and acts on a decided outcome.
    fn tally(&mut self, from: NodeId, granted: bool) {
        self.votes.entry(from).or_insert(granted);
        let quorum = self.config.membership.quorum();
        let yes = self.votes.values().filter(|&&granted| granted).count();
        let no = self.votes.len() - yes;
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

    // ---- Role changes ----

    fn reset_timers(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let base = self.config.election_ticks;
        self.election_timeout = base + self.rng.below(u64::from(base)) as u32;
        self.votes.clear();
        self.transferee = None;
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        assert!(term >= self.term, "term going back");
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.reset_timers();
    }

    fn become_pre_candidate(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.reset_timers();
    }

    fn become_candidate(&mut self) {
        self.term += 1;
        self.vote = Some(self.id());
        self.role = Role::Candidate;
        self.leader = None;
        self.reset_timers();
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.id());
        self.reset_timers();
        let next_index = self.log.last_index() + 1;
        let id = self.id();
        self.progress = self
            .config
            .membership
            .voters()
            .filter(|&voter| voter != id)
            .map(|voter| (voter, Progress::new(next_index)))
            .collect();
        // An entry of our own term, so that what earlier leaders left gets committed (§5.4.2, §8).
        self.append_own(Vec::new());
        self.broadcast_append();
    }

    // ---- Replication (§5.3) ----

    fn append_own(&mut self, data: Vec<u8>) -> u64 {
        let index = self.log.last_index() + 1;
        self.log.push(Entry {
            term: self.term,
            index,
            data,
        });
        index
    }

    fn send(&mut self, to: NodeId, body: Body) {
        self.messages.push(Message {
            from: self.id(),
            to,
            term: self.term,
            body,
        });
    }

    fn broadcast_append(&mut self) {
        let followers: Vec<NodeId> = self.progress.keys().copied().collect();
        for follower in followers {
            self.send_appends(follower);
        }
    }

    /// Sends what `to` lacks, as many batches as its progress allows; returns how many.
    fn send_appends(&mut self, to: NodeId) -> usize {
        let mut sent = 0;
        while self.send_append(to, false) {
            sent += 1;
            if self.progress[&to].state == ProgressState::Probe {
                break;
            }
        }
        sent
    }

    /// Sends one append to `to` if its progress allows; returns whether one went out. In
    /// `Replicate` with nothing new to send, an empty append goes out only if `send_if_empty`:
    /// it checks that the follower really holds what we believe we sent.
    fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let progress = &self.progress[&to];
        if !progress.can_send(self.config.inflight_appends_max) {
            return false;
        }
        let next_index = progress.next_index;
        let last_index = self.log.last_index();
        if progress.state == ProgressState::Replicate && next_index > last_index && !send_if_empty {
            return false;
        }
        let prev_index = next_index - 1;
        let prev_term = self
            .log
            .term_at(prev_index)
            .expect("no compaction yet: every index is held");
        let entries = self.batch_from(next_index);
        let commit = self.log.commit;
        let progress = self.progress.get_mut(&to).expect("a follower");
        match progress.state {
            ProgressState::Probe => progress.probe_sent = true,
            ProgressState::Replicate => {
                if let Some(last) = entries.last() {
                    progress.next_index = last.index + 1;
                    progress.inflight.push_back(last.index);
                }
            }
        }
        self.send(
            to,
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            },
        );
        true
    }

    /// Entries from `from` on, up to the batch limits (at least one if there is one).
    fn batch_from(&self, from: u64) -> Vec<Entry> {
        let last_index = self.log.last_index();
        if from > last_index {
            return Vec::new();
        }
        let through = last_index.min(from + self.config.append_entries_max as u64 - 1);
        let mut bytes = 0;
        let mut batch = Vec::new();
        for entry in self.log.slice(from, through) {
            if !batch.is_empty() && bytes + entry.data.len() > self.config.append_bytes_max {
                break;
            }
            bytes += entry.data.len();
            batch.push(entry.clone());
        }
        batch
    }

    fn broadcast_heartbeat(&mut self) {
        let beats: Vec<(NodeId, u64)> = self
            .progress
            .iter()
            .map(|(&follower, progress)| (follower, self.heartbeat_commit(progress)))
            .collect();
        for (follower, commit) in beats {
            self.send(follower, Body::Heartbeat { commit });
        }
    }

    /// The commit index a follower may learn from a heartbeat: no more than it is known to
    /// hold of our log.
    fn heartbeat_commit(&self, progress: &Progress) -> u64 {
        #[cfg(test)]
        if self.faults.follower_commit_unchecked {
            return self.log.commit;
        }
        progress.match_index.min(self.log.commit)
    }

    fn handle_append(
        &mut self,
        leader: NodeId,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
        commit: u64,
    ) {
        if prev_index < self.log.commit {
            // Everything through our commit index matches any leader's log already.
            let match_index = self.log.commit;
            self.send(leader, Body::AppendAccepted { match_index });
            return;
        }
        match self.log.try_append(prev_index, prev_term, entries) {
            Some(match_index) => {
                // Only what the leader showed us matches it; beyond that our log may differ.
                let checked = match_index;
                #[cfg(test)]
                let checked = match self.faults.follower_commit_unchecked {
                    true => self.log.last_index(),
                    false => checked,
                };
                self.log.commit_to(commit.min(checked));
                self.send(leader, Body::AppendAccepted { match_index });
            }
            None => {
                let (hint_index, hint_term) =
                    self.log.last_index_with_term_at_most(prev_index, prev_term);
                self.send(
                    leader,
                    Body::AppendRejected {
                        prev_index,
                        hint_index,
                        hint_term,
                    },
                );
            }
        }
    }

    fn handle_append_accepted(&mut self, from: NodeId, match_index: u64) {
        let progress = self.progress.get_mut(&from).expect("a follower");
        progress.recent_active = true;
        if progress.accept(match_index) {
            self.maybe_commit();
            if self.transferee == Some(from) && match_index == self.log.last_index() {
                self.send(from, Body::TimeoutNow);
            }
        }
        self.send_appends(from);
    }

    fn handle_append_rejected(
        &mut self,
        from: NodeId,
        prev_index: u64,
        hint_index: u64,
        hint_term: u64,
    ) {
        let (next_index, _) = self.log.last_index_with_term_at_most(hint_index, hint_term);
        let progress = self.progress.get_mut(&from).expect("a follower");
        progress.recent_active = true;
        let stale = match progress.state {
            ProgressState::Replicate => prev_index <= progress.match_index,
            ProgressState::Probe => prev_index + 1 != progress.next_index,
        };
        if stale {
            return;
        }
        // Back off below the rejected index, never below what is known to match.
        progress.next_index = (next_index + 1)
            .min(prev_index)
            .max(progress.match_index + 1);
        progress.become_probe();
        self.send_appends(from);
    }

    fn handle_heartbeat_response(&mut self, from: NodeId) {
        let inflight_appends_max = self.config.inflight_appends_max;
        let progress = self.progress.get_mut(&from).expect("a follower");
        progress.recent_active = true;
        progress.probe_sent = false;
        // A full pipeline may be full of lost appends: let one more out, whose answer
        // (accepted or rejected) puts the progress right.
        if progress.state == ProgressState::Replicate
            && progress.inflight.len() >= inflight_appends_max
        {
            progress.inflight.pop_front();
        }
        // Appends may have been lost: in `Replicate` with nothing left to send, an empty one
        // finds out (the follower rejects it if it lacks what came before).
        if progress.match_index < self.log.last_index() && self.send_appends(from) == 0 {
            self.send_append(from, true);
        }
    }

    /// §5.3 and §5.4.2: the highest index a majority holds becomes committed, if its entry is
    /// of the current term. Our own log counts only as far as it is persisted.
    fn maybe_commit(&mut self) -> bool {
        let mut matched: Vec<u64> = self
            .progress
            .values()
            .map(|progress| progress.match_index)
            .collect();
        matched.push(self.log.stable);
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let majority_index = matched[self.config.membership.quorum() - 1];
        let current_term = self.log.term_at(majority_index) == Some(self.term);
        #[cfg(test)]
        let current_term = current_term || self.faults.commit_counts_old_terms;
        current_term && self.log.commit_to(majority_index)
    }

    // ---- Output ----

    /// Whether `ready` would hand back anything.
    pub fn has_ready(&self) -> bool {
        !self.messages.is_empty()
            || self.appends_due
            || self.hard_state() != self.persisted_hard_state
            || self.log.cut_after.is_some()
            || !self.log.unstable().is_empty()
            || self.log.commit > self.log.applied
    }

    /// Hands out what to persist, send and apply; call [`Node::advance`] when done.
    pub fn ready(&mut self) -> Ready {
        self.assert_advanced();
        if std::mem::take(&mut self.appends_due) && self.role == Role::Leader {
            self.broadcast_append();
        }
        let hard_state = self.hard_state();
        let applied = self.log.applied;
        let ready = Ready {
            hard_state: (hard_state != self.persisted_hard_state).then_some(hard_state),
            truncate_after: self.log.cut_after.take(),
            entries: self.log.unstable().to_vec(),
            messages: std::mem::take(&mut self.messages),
            committed: self.log.slice(applied + 1, self.log.commit).to_vec(),
        };
        self.handed = Some(Handed {
            last_index: self.log.last_index(),
            applied: self.log.commit,
            hard_state,
        });
        ready
    }

    /// The last `Ready` is persisted, sent and applied.
    pub fn advance(&mut self) {
        let handed = self.handed.take().expect("advance() without ready()");
        self.persisted_hard_state = handed.hard_state;
        self.log.stable = handed.last_index;
        self.log.applied = handed.applied;
        if self.role == Role::Leader {
            // Our own entries count toward a majority now that they are on disk.
            self.maybe_commit();
        }
    }
}

#[cfg(test)]
mod tests;
