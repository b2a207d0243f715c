//! How a node is set up: who the members are, its timeouts in ticks, and its limits.

use std::collections::BTreeSet;

use crate::message::NodeId;
use crate::wire;

/// The voting members. A struct so that learners and joint configurations (membership
/// changes, not yet written) can join it without changing every caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    voters: BTreeSet<NodeId>,
}

impl Membership {
    /// Panics on an empty set or on id 0: a cluster must have a voter, and 0 means "nobody".
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        let voters: BTreeSet<NodeId> = voters.into_iter().collect();
        assert!(!voters.is_empty(), "a cluster needs at least one voter");
        assert!(!voters.contains(&0), "node id 0 is reserved");
        Membership { voters }
    }

    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().copied()
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// How many voters make a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// A node's settings. Times are in ticks: the caller decides how long a tick is (etcd's
/// defaults are 100 ms, a heartbeat every tick and an election timeout of 10).
#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
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
}

impl Config {
    /// Defaults in etcd's spirit: election after 10..20 ticks, heartbeat every 2, pre-vote and
    /// check-quorum on.
    pub fn new(id: NodeId, membership: Membership) -> Config {
        assert!(membership.contains(id), "node {id} is not among the voters");
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
        }
    }

    pub(crate) fn validate(&self) {
        assert!(
            self.membership.contains(self.id),
            "node {} is not a voter",
            self.id
        );
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
