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
    /// The message's sender or the transfer's target is not a member.
    UnknownNode(NodeId),
    /// The message was addressed to another node.
    Misdelivered { to: NodeId },
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
        }
    }
}

impl std::error::Error for Error {}
