//! The one error type of the crate: what a caller asked that the node refuses. A broken
//! invariant is a panic, never one of these.

use std::fmt;

use crate::message::NodeId;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// Only the leader takes proposals and transfers; `leader` is who this node believes leads.
    NotLeader { leader: Option<NodeId> },
    /// A leadership transfer is under way; proposals wait until it ends or is abandoned.
    TransferInProgress,
    /// `uncommitted_entries_max` entries wait for a majority already.
    Busy,
    /// The proposal is longer than `entry_bytes_max`.
    TooLarge { bytes: usize },
    /// The message's sender is 0 or this node, or the target of a transfer or a membership
    /// change is not a member (not a voter, for a transfer).
    UnknownNode(NodeId),
    /// The message was addressed to another node.
    Misdelivered { to: NodeId },
    /// The membership change at `index` is not applied yet: one change at a time.
    ChangePending { index: u64 },
    /// An added learner's id is a member already.
    AlreadyMember(NodeId),
    /// The membership has `Membership::MEMBERS_MAX` members already.
    TooManyMembers { limit: usize },
    /// Only a learner can be promoted.
    NotALearner(NodeId),
    /// Removing this voter would leave no voter.
    LastVoter(NodeId),
    /// The learner's log is not caught up with the leader's (see `Config::learner_lag_max`).
    LearnerBehind { node: NodeId, match_index: u64 },
    /// A proposal's data starts with the prefix reserved for membership changes.
    ReservedData,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotLeader { leader: Some(id) } => write!(f, "not the leader (node {id} is)"),
            Error::NotLeader { leader: None } => write!(f, "not the leader (no leader known)"),
            Error::TransferInProgress => write!(f, "a leadership transfer is in progress"),
            Error::Busy => write!(f, "too many uncommitted entries"),
            Error::TooLarge { bytes } => write!(f, "entry of {bytes} bytes is too large"),
            Error::UnknownNode(id) => write!(f, "node {id} is not a member"),
            Error::Misdelivered { to } => write!(f, "message for node {to}"),
            Error::ChangePending { index } => {
                write!(
                    f,
                    "the membership change at index {index} is not applied yet"
                )
            }
            Error::AlreadyMember(id) => write!(f, "node {id} is a member already"),
            Error::TooManyMembers { limit } => {
                write!(
                    f,
                    "the membership has {limit} members, the most it may have"
                )
            }
            Error::NotALearner(id) => write!(f, "node {id} is not a learner"),
            Error::LastVoter(id) => write!(f, "node {id} is the last voter"),
            Error::LearnerBehind { node, match_index } => write!(
                f,
                "learner {node} has not caught up (its log matches through index {match_index})"
            ),
            Error::ReservedData => write!(f, "data starts with the membership change prefix"),
        }
    }
}

impl std::error::Error for Error {}
