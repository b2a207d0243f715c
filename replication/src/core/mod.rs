//! The raft state machine: [`Node`], driven by [`Node::tick`], [`Node::step`] and
//! [`Node::propose`], handing back [`Ready`] batches. No I/O, no clock, no threads: the
//! caller owns the disk, the network and time, and the election timeouts come from a seeded
//! generator, so a run is a function of its inputs and its seed.
//!
//! The caller's loop, after any call that may have changed the node:
//! 1. `if node.has_ready() { let ready = node.ready(); ... }`
//! 2. install `ready.snapshot` if there is one (the caller's state becomes the snapshot the
//!    leader's caller moved to it, its log empty after the snapshot's index, and the
//!    membership it keeps for a restart `ready.snapshot_membership`), then persist
//!    `ready.truncate_after` (cut the log after that index), then `ready.entries`, then
//!    `ready.hard_state`, all durably;
//! 3. send `ready.messages` (only now: a vote or an acknowledgement promises what is on disk);
//! 4. apply `ready.committed` in order;
//! 5. `node.advance()`. No other call may come between `ready` and `advance`;
//! 6. on a leader, serve `ready.wanted`: followers that need entries the node no longer holds
//!    in memory. Read them from storage and hand them over with [`Node::send_stored`], or,
//!    where storage no longer holds them either, move a snapshot to the follower and call
//!    [`Node::send_snapshot`].
//!
//! This file holds the node's state, its inputs (term handling and message dispatch) and its
//! output; `election` holds campaigns, votes and role changes; `replicate` what a leader
//! sends, how a follower takes it, and the commit rule.

use std::collections::{BTreeMap, VecDeque};

use crate::config::{Config, Membership};
use crate::error::{Error, Result};
use crate::log::Log;
use crate::message::{Body, ConfChange, Entry, EntryData, HardState, Message, NodeId};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::wire;

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
    /// Followers that need entries from an index this node has forgotten (`Node::compact`):
    /// served after `advance` (see the module doc, step 6).
    pub wanted: Vec<Wanted>,
    /// Install this snapshot first (a follower): the leader's caller moved it here, and the
    /// node's log now starts after it; everything through its index counts as applied.
    pub snapshot: Option<SnapshotPoint>,
    /// With `snapshot`: the membership as of its index, which the leader sent with it. The
    /// caller keeps it with the installed state, as the membership as of the applied index
    /// that a restart is given back (`Config::membership`): the changes it results from are
    /// not in this node's log.
    pub snapshot_membership: Option<Membership>,
}

/// A follower that needs the entries from `from_index` on, which its leader no longer holds
/// in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub to: NodeId,
    pub from_index: u64,
}

/// Where a snapshot ends: the index and term of the last entry whose effect it holds. The
/// membership as of its index is not part of it: the leader's node knows it
/// ([`Node::membership_at`]) and sends it along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPoint {
    pub index: u64,
    pub term: u64,
}

/// What a node finds on disk at restart. The membership as of `applied` (or `offset`, if
/// higher) is not here but in `Config::membership`: the caller keeps it with its state
/// machine, from the changes it applies and the snapshots it installs
/// (`Ready::snapshot_membership`), since compaction may take the change entries away.
#[derive(Clone, Debug, Default)]
pub struct Persisted {
    pub hard_state: HardState,
    /// The persisted log from `offset + 1` on (from index 1 when `offset` is 0).
    pub entries: Vec<Entry>,
    /// Entries through this index are committed and applied, and not handed to the node
    /// (the caller's storage holds them: a compacted prefix).
    pub offset: u64,
    /// The term of the entry at `offset` (0 when `offset` is 0).
    pub offset_term: u64,
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
    /// A follower installing a snapshot keeps the membership it had applied instead of the
    /// one the snapshot carries (as before snapshots carried one).
    pub(crate) snapshot_keeps_old_membership: bool,
    /// A leader that sent `TimeoutNow` keeps its lease and its leadership once the transfer
    /// is abandoned (the build before `handed_over`).
    pub(crate) lease_ignores_handover: bool,
}

/// The handed-out part of a `Ready`, made official by `advance`.
#[derive(Debug)]
struct Handed {
    last_index: u64,
    /// The `Ready` handed entries to persist: its caller flushed (or, for
    /// `advance_unsynced`, wrote) them.
    had_entries: bool,
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
    /// Heartbeat broadcasts this node made as leader, in any term (`Body::Heartbeat::round`).
    heartbeat_round: u64,
    /// A node restarted from a term above 0 refuses votes for its first election timeout, as
    /// if it had just heard from a leader: before its crash it may have promised a leader
    /// exactly that (the lease), and it does not remember.
    start_hold: bool,
    /// This term's election timeout, drawn from `election_ticks..2 * election_ticks`.
    election_timeout: u32,
    /// The node a leadership transfer is handing over to.
    transferee: Option<NodeId>,
    /// This leader sent `TimeoutNow` in its term: the campaign it starts ignores every
    /// voter's lease, at any time the message arrives, so this leader holds no lease for the
    /// rest of its term, and steps down at its next quorum check if it still leads.
    handed_over: bool,
    rng: Rng,
    messages: Vec<Message>,
    /// The hard state last handed out.
    persisted_hard_state: HardState,
    /// New proposals wait to be sent (see `propose`).
    appends_due: bool,
    /// The index of the last membership change this leader may not have applied (or, after
    /// an election, of its first entry, which follows any change an earlier leader left):
    /// no new change is proposed until `applied` reaches it (etcd's `pendingConfIndex`).
    pending_conf_index: u64,
    /// The membership as of the applied index; `config.membership` is this with
    /// `unapplied_changes` made, the one every rule uses (the dissertation's §4.1: a node uses
    /// the latest configuration in its log, committed or not).
    applied_membership: Membership,
    /// The membership changes in the log after the applied index: (index, change).
    unapplied_changes: Vec<(u64, ConfChange)>,
    /// The applied memberships, oldest first, each with the index it was in force from (the
    /// change's, or for the first, the index this node knew it as of: its restart's applied
    /// index or its last installed snapshot's), at most `MEMBERSHIPS_KEPT`: what
    /// [`Node::membership_at`] answers from below the applied index.
    membership_history: VecDeque<(u64, Membership)>,
    /// Followers that need forgotten entries, by first index needed (`Ready::wanted`).
    wanted: BTreeMap<NodeId, u64>,
    /// A snapshot taken in and not yet handed out (`Ready::snapshot`), with its membership.
    snapshot_due: Option<(SnapshotPoint, Membership)>,
    handed: Option<Handed>,
    /// On a leader whose caller wrote entries without waiting for them to be durable
    /// ([`Node::advance_unsynced`]): the last index known durable. Its own log counts toward
    /// a majority, and it applies, only through here; `None`: through `log.stable`.
    own_synced: Option<u64>,
    #[cfg(test)]
    faults: Faults,
}

impl Node {
    /// A node that has never run: empty log, term 0.
    pub fn new(config: Config, seed: u64) -> Node {
        Node::restart(config, seed, Persisted::default())
    }

    /// A node started from what it had persisted. It comes back as a follower of no one.
    /// `config.membership` must be the membership as of `persisted.applied` (or its offset,
    /// if higher): the changes in the persisted entries after it are read back and in force
    /// at once. The caller knows it without the change entries (compaction may have taken
    /// them): it is what the entries it applied made of the membership it had, or the last
    /// `Ready::snapshot_membership` if a snapshot was installed since.
    pub fn restart(config: Config, seed: u64, persisted: Persisted) -> Node {
        config.validate();
        let on_disk = persisted.hard_state;
        let mut hard_state = on_disk;
        let log = Log::restore(
            persisted.offset,
            persisted.offset_term,
            persisted.entries,
            hard_state.commit,
            persisted.applied,
        );
        if log.last_term() > hard_state.term {
            // A crash after the entries of a `Ready` were written and before its hard state:
            // the node had moved to the entries' term. A vote it gave to another in that term
            // was never sent (messages leave after the whole `Ready` is durable), but a lone
            // voter's vote for itself needs no message: it won the term in memory and its own
            // entries of the term are these. So it counts as having voted for itself, which
            // only keeps it from voting in that term again.
            hard_state.term = log.last_term();
            hard_state.vote = Some(config.id);
        }
        let config_membership = config.membership.clone();
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
            heartbeat_round: 0,
            start_hold: hard_state.term > 0,
            election_timeout: 0,
            transferee: None,
            handed_over: false,
            rng: Rng::new(seed),
            messages: Vec::new(),
            persisted_hard_state: on_disk,
            appends_due: false,
            pending_conf_index: 0,
            applied_membership: config_membership.clone(),
            unapplied_changes: Vec::new(),
            membership_history: VecDeque::new(),
            wanted: BTreeMap::new(),
            snapshot_due: None,
            handed: None,
            own_synced: None,
            #[cfg(test)]
            faults: Faults::default(),
        };
        node.reset_timers();
        node.membership_history
            .push_back((node.log.applied, config_membership));
        node.rescan_conf_changes(node.log.applied + 1);
        node
    }

    #[cfg(test)]
    pub(crate) fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The membership in force: the latest in the log, applied or not.
    pub fn membership(&self) -> &Membership {
        &self.config.membership
    }

    /// The membership as of the applied index (what a restart must be given back).
    pub fn applied_membership(&self) -> &Membership {
        &self.applied_membership
    }

    /// Why a proposal is refused here: not the leader, or a leader that was removed (it
    /// names no leader: the next one is not known yet).
    fn not_leader(&self) -> Error {
        Error::NotLeader {
            leader: self.leader.filter(|&leader| leader != self.id()),
        }
    }

    /// Whether this node is a voter in the membership in force.
    fn is_voter(&self) -> bool {
        self.config.membership.is_voter(self.id())
    }

    /// Whether this node may campaign (etcd's `promotable`): it is a voter in the membership
    /// in force, or its removal is in its log but not applied. The latter must: the other
    /// voters may lack the removal, and only a leader holding it can commit it (its own vote
    /// does not count, `tally` counts the voters in force). A learner, a node not yet added
    /// and one whose removal is applied never campaign.
    fn promotable(&self) -> bool {
        self.is_voter() || self.applied_membership.is_voter(self.id())
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

    /// The first index whose entry the node holds in memory (1 unless compacted).
    pub fn first_index(&self) -> u64 {
        self.log.first_index()
    }

    /// The highest index handed out in `Ready::committed` and confirmed by `advance`.
    pub fn applied_index(&self) -> u64 {
        self.log.applied
    }

    /// Forgets the in-memory entries through `index` (never past what was applied): the
    /// caller's storage keeps them. A follower that needs a forgotten entry is listed in
    /// `Ready::wanted`, for the caller to serve from storage (`send_stored`) or with a
    /// snapshot (`send_snapshot`). Returns the new first index.
    pub fn compact(&mut self, index: u64) -> u64 {
        self.assert_advanced();
        self.log.compact_through(index) + 1
    }

    /// The term of the entry at `index`, if the log holds it (or `index` is where the held
    /// log starts after).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.log.term_at(index)
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
        if self.election_elapsed >= self.config.election_ticks {
            self.start_hold = false;
        }
        if self.election_elapsed >= self.election_timeout && self.promotable() {
            self.campaign(Campaign::Timeout);
        }
    }

    fn tick_leader(&mut self) {
        self.election_elapsed += 1;
        self.heartbeat_elapsed += 1;
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            let handed_over = self.handed_over();
            if self.config.check_quorum && (!self.quorum_recently_active() || handed_over) {
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
    /// new round. Learners are not counted.
    fn quorum_recently_active(&mut self) -> bool {
        let membership = &self.config.membership;
        let mut active = usize::from(membership.is_voter(self.config.id));
        for (&follower, progress) in self.progress.iter_mut() {
            active += usize::from(progress.recent_active && membership.is_voter(follower));
            progress.recent_active = false;
        }
        active >= membership.quorum()
    }

    /// Appends `data` as a new entry (leader only) and returns its index. The entry is
    /// committed when a later `Ready` lists it in `committed` with this index and the
    /// current term; it may instead be lost if leadership changes first.
    pub fn propose(&mut self, data: impl Into<EntryData>) -> Result<u64> {
        self.assert_advanced();
        let data = data.into();
        if self.role != Role::Leader || !self.is_voter() {
            // A leader whose own removal is in its log takes nothing new; it steps down once
            // the removal is applied.
            return Err(self.not_leader());
        }
        if self.transferee.is_some() {
            return Err(Error::TransferInProgress);
        }
        if wire::is_conf_change(&data) {
            return Err(Error::ReservedData);
        }
        self.append_proposal(data)
    }

    /// The checks every proposal passes, then the append.
    fn append_proposal(&mut self, data: EntryData) -> Result<u64> {
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
        if !self.config.membership.is_voter(to) {
            return Err(Error::UnknownNode(to));
        }
        if to == self.id() {
            return Ok(());
        }
        self.transferee = Some(to);
        self.election_elapsed = 0;
        if self.progress.get(&to).map(|progress| progress.match_index)
            == Some(self.log.last_index())
        {
            self.handed_over = true;
            self.send(to, Body::TimeoutNow);
        } else {
            self.send_appends(to);
        }
        Ok(())
    }

    /// A follower that knows its leader is gone forgets it, as etcd-io/raft's `ForgetLeader`
    /// does: without a leader it is out of its lease, so it grants pre-votes at once instead
    /// of an election timeout after the leader's last message. The caller must know, not
    /// guess: a leader serving reads on its lease (check-quorum) relies on its followers
    /// refusing votes for an election timeout after its last message, so only a leader that
    /// can no longer serve (its process is gone) may be forgotten; etcd-io/raft ignores
    /// `ForgetLeader` under lease-based reads for this reason. It also
    /// campaigns sooner, after a random 1..=`election_ticks / 2` ticks (the spread keeps two
    /// followers that lost the same leader from splitting the vote). A pre-vote wins only if a
    /// majority forgot the leader too, so one follower that lost its connection alone does
    /// not disturb a leader the others still hear; hearing from the leader again makes it a
    /// plain follower with a full timeout. Does nothing on a node that is not a follower of a
    /// known leader.
    pub fn forget_leader(&mut self) {
        self.assert_advanced();
        if self.role != Role::Follower || self.leader.is_none() {
            return;
        }
        self.leader = None;
        let spread = u64::from((self.config.election_ticks / 2).max(1));
        let soon = self.election_elapsed + 1 + self.rng.below(spread) as u32;
        self.election_timeout = self.election_timeout.min(soon);
    }

    /// Takes in a message from another node.
    pub fn step(&mut self, message: Message) -> Result<()> {
        self.assert_advanced();
        if message.to != self.id() {
            return Err(Error::Misdelivered { to: message.to });
        }
        // Not checked against the membership: nodes apply changes at different times, so a
        // candidate one node has not heard of yet may be a voter to others (the dissertation's
        // §4.1: servers process requests without consulting their configurations). Answers
        // from a node the leader does not track are ignored.
        if message.from == 0 || message.from == self.id() {
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
            Body::Append { .. }
            | Body::Heartbeat { .. }
            | Body::TimeoutNow
            | Body::InstallSnapshot { .. } => {
                self.become_follower(message.term, Some(message.from))
            }
            _ => self.become_follower(message.term, None),
        }
        true
    }

    fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && (self.leader.is_some() || self.start_hold)
            && self.election_elapsed < self.config.election_ticks
    }

    /// The leader's lease, as the oldest heartbeat round a majority of voters (this node
    /// counting as the latest) answered in this term: each of them received a heartbeat of
    /// that round or a later one, and refuses (pre-)votes for `election_ticks` of its ticks
    /// after (`in_leader_lease`), so no other leader can be elected before the caller's clock
    /// shows the round's sending time plus about that long (docs/replication.md, "Reads on
    /// the leader"). `None` off a leader, without check-quorum, during a leadership transfer
    /// (the transferee's vote ignores leases), and before a majority answered any round.
    pub fn lease_round(&self) -> Option<u64> {
        if self.role != Role::Leader
            || self.transferee.is_some()
            || self.handed_over()
            || !self.config.check_quorum
        {
            return None;
        }
        let membership = &self.config.membership;
        let mut rounds: Vec<u64> = membership
            .voters()
            .map(|voter| match voter == self.id() {
                true => self.heartbeat_round,
                false => self.progress.get(&voter).map_or(0, |p| p.acked_round),
            })
            .collect();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let round = *rounds.get(membership.quorum().checked_sub(1)?)?;
        (round > 0).then_some(round)
    }

    /// Whether this leader sent `TimeoutNow` in its term (a test build may pretend not).
    fn handed_over(&self) -> bool {
        #[cfg(test)]
        if self.faults.lease_ignores_handover {
            return false;
        }
        self.handed_over
    }

    /// The configuration the node runs with (its membership is the latest in its log).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Heartbeat broadcasts this node made as leader (the round of the last one).
    pub fn heartbeat_round(&self) -> u64 {
        self.heartbeat_round
    }

    /// A message from an older term: tell its sender our term where that helps it recover.
    fn answer_stale(&mut self, message: &Message) {
        match message.body {
            // A deposed leader cut off by a partition learns our term and steps down. (Without
            // this, with check-quorum, a node whose term ran ahead could never rejoin.)
            Body::Append { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. } => {
                self.send(message.from, Body::HeartbeatResponse { round: 0 })
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
            Body::Heartbeat { commit, round } => {
                if self.follow(from) {
                    self.log.commit_to(commit.min(self.log.last_index()));
                    self.send(from, Body::HeartbeatResponse { round });
                }
            }
            Body::TimeoutNow => {
                if self.role == Role::Follower && self.promotable() {
                    self.campaign(Campaign::Transfer);
                }
            }
            Body::InstallSnapshot {
                index,
                term,
                membership,
            } => {
                if self.follow(from) {
                    self.handle_install_snapshot(from, SnapshotPoint { index, term }, membership);
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
            Body::HeartbeatResponse { round } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(from, round);
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
                if self.election_timeout < self.config.election_ticks {
                    // `forget_leader` shortened the timeout: a full one again (a normal draw
                    // is never below `election_ticks`).
                    self.reset_timers();
                }
                self.leader = Some(leader);
                self.election_elapsed = 0;
                self.start_hold = false;
                true
            }
        }
    }

    /// Whether `ready` would hand back anything.
    pub fn has_ready(&self) -> bool {
        !self.messages.is_empty()
            || self.appends_due
            || self.hard_state() != self.persisted_hard_state
            || self.log.cut_after.is_some()
            || !self.log.unstable().is_empty()
            || self.apply_limit() > self.log.applied
            || !self.wanted.is_empty()
            || self.snapshot_due.is_some()
    }

    /// Hands out what to persist, send and apply; call [`Node::advance`] when done.
    pub fn ready(&mut self) -> Ready {
        self.assert_advanced();
        if std::mem::take(&mut self.appends_due) && self.role == Role::Leader {
            self.broadcast_append();
        }
        let hard_state = self.hard_state();
        let applied = self.log.applied;
        let apply_through = self.apply_limit();
        let (snapshot, snapshot_membership) = match self.snapshot_due.take() {
            Some((point, membership)) => (Some(point), Some(membership)),
            None => (None, None),
        };
        let had_entries = !self.log.unstable().is_empty();
        let ready = Ready {
            hard_state: (hard_state != self.persisted_hard_state).then_some(hard_state),
            truncate_after: self.log.cut_after.take(),
            entries: self.log.unstable().to_vec(),
            messages: std::mem::take(&mut self.messages),
            committed: self.log.slice(applied + 1, apply_through).to_vec(),
            wanted: std::mem::take(&mut self.wanted)
                .into_iter()
                .map(|(to, from_index)| Wanted { to, from_index })
                .collect(),
            snapshot,
            snapshot_membership,
        };
        self.handed = Some(Handed {
            last_index: self.log.last_index(),
            had_entries,
            applied: apply_through,
            hard_state,
        });
        ready
    }

    /// The last `Ready` is persisted, sent and applied. If it had entries, they were made
    /// durable by a flush, which made everything written before durable too.
    pub fn advance(&mut self) {
        if self
            .handed
            .as_ref()
            .is_some_and(|handed| handed.had_entries)
        {
            self.own_synced = None;
        }
        self.advance_with(None);
    }

    /// Like [`Node::advance`], on a leader whose caller wrote the `Ready`'s entries (its own
    /// proposals) and sent its messages without waiting for the entries to be durable: a
    /// flush runs elsewhere and [`Node::synced`] reports it. Until then the leader's own log
    /// counts toward a majority, and the leader hands out entries to apply, only through what
    /// was durable before (commit may still move on the followers' acknowledgements), and the
    /// raft thread is free to take those acknowledgements meanwhile (decision 98). Everything
    /// else of the `Ready` (a cut, the hard state) must be durable as with `advance`. If the
    /// node leaves the leadership with entries not known durable, it hands them out again in
    /// its next `Ready` as entries to persist, so that it acknowledges nothing as a follower
    /// on the strength of a write that may not survive.
    pub fn advance_unsynced(&mut self) {
        let durable = self.own_durable();
        self.advance_with(Some(durable));
    }

    /// A flush the caller ran for [`Node::advance_unsynced`] made the log durable through
    /// `index`, asked while this node led `term`. Ignored unless the node still leads that
    /// term (a node leads a term once, and a leader never cuts its own log, so the entries
    /// through `index` are the ones that were flushed).
    pub fn synced(&mut self, index: u64, term: u64) {
        let Some(synced) = self.own_synced else {
            return;
        };
        if self.role != Role::Leader || term != self.term {
            return;
        }
        let index = index.min(self.log.stable);
        if index <= synced {
            return;
        }
        self.own_synced = (index < self.log.stable).then_some(index);
        self.maybe_commit();
    }

    /// How far this node's own log is durable.
    pub fn own_durable(&self) -> u64 {
        self.own_synced.unwrap_or(self.log.stable)
    }

    /// Through where a `Ready` may hand out entries to apply: the commit index, on a leader
    /// with entries not known durable no further than what is.
    fn apply_limit(&self) -> u64 {
        match self.own_synced {
            Some(synced) => self.log.commit.min(synced.max(self.log.applied)),
            None => self.log.commit,
        }
    }

    /// `unsynced_before`: the durable end before this `Ready`, when its entries may not be
    /// durable yet.
    fn advance_with(&mut self, unsynced_before: Option<u64>) {
        let handed = self.handed.take().expect("advance() without ready()");
        self.persisted_hard_state = handed.hard_state;
        self.log.stable = handed.last_index;
        self.log.applied = handed.applied;
        self.conf_changes_applied(handed.applied);
        if let Some(durable) = unsynced_before {
            if self.log.stable > durable {
                self.own_synced = Some(durable);
            }
            if self.role != Role::Leader {
                // Not a leader's own entries: the next `Ready` hands them out again.
                self.forget_unsynced();
            }
        }
        if self.role == Role::Leader {
            // Our own entries count toward a majority now that they are on disk.
            self.maybe_commit();
        }
    }

    /// Leaving the leadership: entries written and not known durable count as not persisted
    /// (`log.stable` goes back), so the next `Ready` hands them out again and the caller
    /// persists them durably before this node acknowledges anything.
    pub(super) fn forget_unsynced(&mut self) {
        if let Some(synced) = self.own_synced.take() {
            self.log.stable = self.log.stable.min(synced);
        }
    }
}

mod election;
mod membership;
mod replicate;
#[cfg(test)]
mod tests;
