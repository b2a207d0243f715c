//! What nodes say to each other, and what a node keeps on disk.
//!
//! Every message carries its sender's term; a receiver that sees a higher term than its own
//! adopts it (except for pre-votes, which ask "would you vote?" without changing anything).

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

use crate::config::Membership;

/// A node's id in the cluster. Ids are chosen by the operator and never reused; 0 is not an id.
pub type NodeId = u64;

/// One log entry: the leader of `term` put `data` at `index`. Indexes start at 1 and map
/// one-to-one onto the engine's seqs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    /// Opaque to the protocol; empty for the entry a new leader appends to commit its term.
    pub data: EntryData,
}

/// An entry's data, shared rather than copied: the log, a `Ready`'s entries and committed
/// entries, and the append to each follower all hold the same bytes, and cloning is a
/// reference count (docs/ARCHITECTURE.md, decision 94). It is a range of a buffer that may
/// hold other entries' data too: a proposer can lay a batch of entries out in one buffer, and
/// [`crate::wire::decode`] gives an append's entries ranges of one copy of the message.
/// Equality compares the bytes.
#[derive(Clone)]
pub struct EntryData {
    buffer: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl EntryData {
    /// `range` of `buffer`, which the new value shares. Panics if `range` is not within it.
    pub fn shared(buffer: &Arc<Vec<u8>>, range: Range<usize>) -> EntryData {
        assert!(
            range.start <= range.end && range.end <= buffer.len(),
            "entry data {range:?} outside a buffer of {} bytes",
            buffer.len()
        );
        EntryData {
            buffer: buffer.clone(),
            start: range.start,
            end: range.end,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }
}

impl Default for EntryData {
    fn default() -> EntryData {
        EntryData::from(Vec::new())
    }
}

/// Takes the vector without copying it.
impl From<Vec<u8>> for EntryData {
    fn from(bytes: Vec<u8>) -> EntryData {
        let end = bytes.len();
        EntryData {
            buffer: Arc::new(bytes),
            start: 0,
            end,
        }
    }
}

impl From<&[u8]> for EntryData {
    fn from(bytes: &[u8]) -> EntryData {
        EntryData::from(bytes.to_vec())
    }
}

impl Deref for EntryData {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for EntryData {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for EntryData {
    fn eq(&self, other: &EntryData) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for EntryData {}

impl PartialEq<[u8]> for EntryData {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<u8>> for EntryData {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<EntryData> for Vec<u8> {
    fn eq(&self, other: &EntryData) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for EntryData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}

/// One membership change, the raft dissertation's single-server change (§4.1) in etcd's
/// shape (`ConfChange`). Its entry's data is [`crate::wire::encode_conf_change`]'s bytes:
/// a reserved prefix, the change, then the caller's own payload. A change takes effect on
/// each node when its entry is applied, and a leader proposes no other until it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfChange {
    pub kind: ConfChangeKind,
    pub node: NodeId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChangeKind {
    /// `node` joins as a learner: it receives appends, never votes or campaigns, and counts
    /// in no quorum.
    AddLearner,
    /// The learner `node` becomes a voter (the leader accepts it only once it caught up).
    PromoteLearner,
    /// `node` (voter or learner) leaves. A leader that removes itself steps down once the
    /// change is applied.
    RemoveNode,
}

/// What must be on disk before a node sends anything that depends on it: a vote given twice
/// in one term, or a term gone back, would break election safety after a crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    /// Who this node voted for in `term`.
    pub vote: Option<NodeId>,
    /// The highest index known committed. Persisting it is an optimisation (a restarted node
    /// applies at once what it knew was committed); losing it is safe.
    pub commit: u64,
}

/// One message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term, except a pre-vote, which carries the term its sender would campaign in.
    pub term: u64,
    pub body: Body,
}

/// The kinds of message, as in raft's paper plus pre-vote, heartbeats and leadership transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// "Would you vote for me in `term`?" Changes no state on either side.
    PreVote {
        last_index: u64,
        last_term: u64,
    },
    PreVoteResponse {
        granted: bool,
    },
    /// RequestVote (§5.2). `transfer` marks a campaign the leader asked for (TimeoutNow): it
    /// overrides the receivers' leader lease.
    Vote {
        last_index: u64,
        last_term: u64,
        transfer: bool,
    },
    VoteResponse {
        granted: bool,
    },
    /// AppendEntries (§5.3): `entries` follow the entry at `prev_index`, whose term is
    /// `prev_term`; `commit` is the leader's commit index.
    Append {
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    },
    /// The follower's log matches the leader's through `match_index`.
    AppendAccepted {
        match_index: u64,
    },
    /// The follower has no entry at `prev_index` with the leader's `prev_term`. Its log holds
    /// `hint_term` at `hint_index`, the last index at or below `prev_index` whose term is no
    /// higher than `prev_term` (etcd's hint), so the leader can skip a whole term at once.
    AppendRejected {
        prev_index: u64,
        hint_index: u64,
        hint_term: u64,
    },
    /// The leader is alive; `commit` is capped at what this follower is known to hold, so a
    /// follower never marks committed an entry it holds from another leader.
    /// `round` counts the leader's heartbeat broadcasts; the follower sends it back, and the
    /// rounds a majority answered date the leader's lease (`Node::lease_round`).
    Heartbeat {
        commit: u64,
        round: u64,
    },
    /// Answers a `Heartbeat` with its `round` (0 when it answers a stale leader's message
    /// with this node's newer term).
    HeartbeatResponse {
        round: u64,
    },
    /// The leader hands over: campaign now, without waiting for a timeout or a pre-vote.
    TimeoutNow,
    /// The leader no longer holds the entries this follower needs: the follower's state is
    /// replaced by the snapshot through `index`, whose entry has `term`, and its log restarts
    /// after it. The snapshot's bytes travel outside the protocol (the two nodes' callers move
    /// them before the leader sends this; the core never sees them). Answered with
    /// `AppendAccepted { match_index }` once installed (or at once, if the follower already
    /// holds the entry at `index` in `term`).
    InstallSnapshot {
        index: u64,
        term: u64,
        /// The membership in force as of `index` (etcd's `ConfState` in the snapshot's
        /// metadata): the changes it results from are among the entries the follower skips.
        membership: Membership,
    },
}
