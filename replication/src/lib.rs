//! flin-replication: the raft protocol core that makes three Flin nodes one cluster (issue
//! 14): the protocol as a pure state machine, the simulator that checks it, and the pieces the
//! server's raft thread (server/src/cluster) drives it with (the wire codec, the hard state
//! file).
//!
//! # Layout
//! - `core`: [`Node`], the state machine in raft-rs's `RawNode` style. It is driven by
//!   [`Node::tick`], [`Node::step`] (a [`Message`] from a peer) and [`Node::propose`], and
//!   hands back a [`Ready`]: what to persist (a cut point, entries, the [`HardState`]), the
//!   messages to send once that is durable, and the committed entries to apply. No sockets,
//!   threads, clock reads or files; election timeouts come from a seeded generator.
//!   `core/election.rs` holds campaigns, votes and role changes, `core/replicate.rs` the
//!   leader's appends, the follower's side and the commit rule, `core/membership.rs` the
//!   membership changes (learners, one change at a time, in force once appended) and the
//!   membership as of an index, which a snapshot carries.
//! - `log`: the node's copy of the log (all in memory for now) with its persisted, committed
//!   and applied marks, and the follower's side of AppendEntries.
//! - `progress`: what a leader knows of each follower (match and next index, probe or
//!   pipelined replication, appends in flight).
//! - `message`: [`Message`], [`Body`], [`Entry`], [`HardState`], [`ConfChange`], and
//!   [`EntryData`], an entry's bytes shared (not copied) between the log, a `Ready`, every
//!   follower's append and the decoded message.
//! - `wire`: the bytes of a [`Message`] ([`wire::encode`], [`wire::decode`]), of a frame on a
//!   peer connection ([`wire::write_frame`], [`wire::FrameReader`]) and of the hello that
//!   opens one. Pure: it takes and returns bytes, and refuses any input it cannot decode with
//!   a [`wire::WireError`] naming the field and byte, never a panic.
//! - `hard_state`: [`hard_state::HardStateFile`], the durable home of the [`HardState`] (a
//!   40-byte file beside the log, replaced whole by temp file, fsync, rename and directory
//!   fsync). It does file I/O, so it is a shell for the server to call, outside `core`, which
//!   stays pure.
//! - `config`: [`Config`] (timeouts in ticks, batch and pipeline limits) and [`Membership`]
//!   (voters and learners, and what one change makes of them).
//! - `rng`: splitmix64, the one seeded generator of the crate.
//! - `sim` (tests only): the deterministic simulator and its safety checker.
//! - `linearizability`: a checker of client histories (Wing & Gong with Lowe's just-in-time
//!   linearization, Porcupine's algorithm) against a key-value model; the simulator checks its clients' histories with it, and
//!   flin-clustertest (benches/) those of real processes.
//!
//! # Data flow
//! A leader's `propose` appends to its log; the next `ready` sends the new entries to every
//! follower in batches (`append_entries_max`, `append_bytes_max`), at most
//! `inflight_appends_max` unanswered per follower. A follower appends what matches, cuts a
//! conflicting uncommitted suffix (`Ready::truncate_after`) and answers once its `Ready` is
//! persisted. The leader commits the highest index a majority holds if that entry is of its
//! own term, and every node hands committed entries out to be applied. The caller's loop is
//! described in the `core` module (`Node`'s docs): persist, then send, then apply, then
//! `advance`.
//!
//! Indexes are the engine's seqs and each entry carries its term, so a server can persist a
//! `Ready` with the engine's replication seam: `truncate_after(seq)`, `append_entry(seq, term,
//! batch)`, `commit_through(seq)` (docs/ARCHITECTURE.md, decision 39).
//!
//! # Not yet
//! Joint consensus (membership changes are one server at a time) and read index (the server's
//! leader reads rely on a lease).
//! docs/replication.md says what is implemented and checked.

#![forbid(unsafe_code)]

mod config;
mod core;
mod error;
pub mod hard_state;
pub mod linearizability;
mod log;
mod message;
mod progress;
mod rng;
#[cfg(test)]
mod sim;
pub mod wire;

pub use crate::config::{Config, Membership};
pub use crate::core::{Node, Persisted, Ready, Role, SnapshotPoint, Wanted};
pub use crate::error::{Error, Result};
pub use crate::message::{
    Body, ConfChange, ConfChangeKind, Entry, EntryData, HardState, Message, NodeId,
};
