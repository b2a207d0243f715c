//! flin-replication: the raft protocol core.

#![forbid(unsafe_code)]

mod config;
mod core;
mod error;
mod log;
mod message;
mod progress;
mod rng;
#[cfg(test)]
mod sim;

pub use crate::config::{Config, Membership};
pub use crate::core::{Node, Persisted, Ready, Role};
pub use crate::error::{Error, Result};
pub use crate::message::{Body, Entry, HardState, Message, NodeId};
