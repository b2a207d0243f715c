//! How a node is set up: who the members are, its timeouts in ticks, and its limits.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::message::{ConfChange, ConfChangeKind, NodeId};
use crate::wire;

/// Who is in the cluster: the voters, and the learners that receive the log but neither
/// vote nor count in a quorum. The two sets never overlap. It changes one
/// [`ConfChange`] at a time ([`Membership::changed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
}

impl Membership {
    /// The most members (voters and learners together) a membership may have: an
    /// `InstallSnapshot` lists them all, and a peer's claim of more is refused before anything
    /// is allocated for it. Raft clusters have a handful of voters; this is far beyond need.
    pub const MEMBERS_MAX: usize = 1024;

    /// Panics on an empty set or on id 0: a cluster must have a voter, and 0 means "nobody".
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        let voters: BTreeSet<NodeId> = voters.into_iter().collect();
        assert!(!voters.is_empty(), "a cluster needs at least one voter");
        assert!(!voters.contains(&0), "node id 0 is reserved");
        Membership {
            voters,
            learners: BTreeSet::new(),
        }
    }

    /// `voters` and `learners`, as a caller restores them (panics as [`Membership::new`] and
    /// on an id in both).
    pub fn with_learners(
        voters: impl IntoIterator<Item = NodeId>,
        learners: impl IntoIterator<Item = NodeId>,
    ) -> Membership {
        let mut membership = Membership::new(voters);
        for learner in learners {
            assert!(learner != 0, "node id 0 is reserved");
            assert!(
                !membership.voters.contains(&learner),
                "node {learner} is both a voter and a learner"
            );
            membership.learners.insert(learner);
        }
        membership
    }

    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().copied()
    }

    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.learners.iter().copied()
    }

    /// Voters and learners.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.union(&self.learners).copied()
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    /// A voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// How many voters make a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The membership after `change`, or why it cannot be made: an added id must be new (and
    /// not 0) and fit under [`Membership::MEMBERS_MAX`], a promoted one a learner, a removed
    /// one a member, and a voter remains.
    pub fn changed(&self, change: ConfChange) -> Result<Membership> {
        let node = change.node;
        let mut next = self.clone();
        match change.kind {
            ConfChangeKind::AddLearner => {
                if node == 0 {
                    return Err(Error::UnknownNode(0));
                }
                if self.contains(node) {
                    return Err(Error::AlreadyMember(node));
                }
                if self.voters.len() + self.learners.len() >= Membership::MEMBERS_MAX {
                    return Err(Error::TooManyMembers {
                        limit: Membership::MEMBERS_MAX,
                    });
                }
                next.learners.insert(node);
            }
            ConfChangeKind::PromoteLearner => {
                if !next.learners.remove(&node) {
                    return Err(Error::NotALearner(node));
                }
                next.voters.insert(node);
            }
            ConfChangeKind::RemoveNode => {
                if !self.contains(node) {
                    return Err(Error::UnknownNode(node));
                }
                if self.voters.len() == 1 && self.is_voter(node) {
                    return Err(Error::LastVoter(node));
                }
                next.voters.remove(&node);
                next.learners.remove(&node);
            }
        }
        Ok(next)
    }
}

/// A node's settings. Times are in ticks: the caller decides how long a tick is (etcd's
/// defaults are 100 ms, a heartbeat every tick and an election timeout of 10).
#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// The membership as of the last applied entry (at restart: `Persisted::applied`'s); a
    /// new node that joins a running cluster starts from the initial voters, without itself,
    /// and learns the rest from the log.
    pub membership: Membership,
    /// A follower campaigns after a silence drawn uniformly from
    /// `election_ticks..2 * election_ticks` (§5.2's randomized timeouts), and a leader checks
    /// its quorum every `election_ticks`.
    pub election_ticks: u32,
    /// A leader sends heartbeats every `heartbeat_ticks`; must be below `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Campaign only after a majority said it would vote (a node that rejoins a healthy
    /// cluster does not raise everyone's term).
    pub pre_vote: bool,
    /// A leader that heard from no majority within `election_ticks` steps down, and a node
    /// that heard from a leader within `election_ticks` refuses to vote for anyone else (the
    /// leader lease that makes the first safe).
    pub check_quorum: bool,
    /// At most this many entries in one append message.
    pub append_entries_max: usize,
    /// An append message stops growing once its entries' data reach this many bytes (it holds
    /// at least one entry).
    pub append_bytes_max: usize,
    /// At most this many append messages in flight to one follower (pipelining).
    pub inflight_appends_max: usize,
    /// A leader refuses proposals while this many entries wait to be committed.
    pub uncommitted_entries_max: u64,
    /// The largest proposal accepted, in bytes.
    pub entry_bytes_max: usize,
    /// A learner has caught up (and may be promoted) once its log is known to match the
    /// leader's and its match index is within this many entries of the leader's commit index.
    pub learner_lag_max: u64,
}

impl Config {
    /// Defaults in etcd's spirit: election after 10..20 ticks, heartbeat every 2, pre-vote and
    /// check-quorum on. `id` need not be a member: a node joining a running cluster is not one
    /// until the log says so, and it never campaigns before it is a voter.
    pub fn new(id: NodeId, membership: Membership) -> Config {
        assert!(id != 0, "node id 0 is reserved");
        Config {
            id,
            membership,
            election_ticks: 10,
            heartbeat_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            append_entries_max: 64,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 8,
            uncommitted_entries_max: 4096,
            entry_bytes_max: 8 << 20,
            learner_lag_max: 1024,
        }
    }

    pub(crate) fn validate(&self) {
        assert!(self.id != 0, "node id 0 is reserved");
        assert!(self.heartbeat_ticks > 0, "heartbeat_ticks must be positive");
        assert!(
            self.election_ticks > self.heartbeat_ticks,
            "election_ticks must exceed heartbeat_ticks"
        );
        assert!(
            self.append_entries_max > 0,
            "append_entries_max must be positive"
        );
        assert!(
            self.inflight_appends_max > 0,
            "inflight_appends_max must be positive"
        );
        assert!(
            self.uncommitted_entries_max > 0,
            "uncommitted_entries_max must be positive"
        );
        // An append grows past `append_bytes_max` by at most one entry, and must still fit
        // in one message on the wire (`wire::encode` panics past the limit).
        let append_bytes_bound = self
            .append_bytes_max
            .saturating_add(self.entry_bytes_max)
            .saturating_add(
                self.append_entries_max
                    .saturating_mul(wire::ENTRY_HEADER_LEN),
            )
            .saturating_add(wire::MESSAGE_HEADER_LEN + wire::APPEND_FIXED_LEN);
        assert!(
            append_bytes_bound <= wire::MESSAGE_BYTES_MAX,
            "append_bytes_max + entry_bytes_max ({append_bytes_bound} bytes with headers) \
             must fit in wire::MESSAGE_BYTES_MAX"
        );
    }
}
