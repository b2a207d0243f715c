//! What a data model plugs into the harness: writers that run against the server and record
//! every acknowledged operation, and a check that reads everything back after a restart.
//!
//! Key-value is the first model (`kv`). A queue, stream or document model adds a module with
//! its own [`Model`] and [`Writer`]s and one line in `crashtest::models`; the harness runs
//! their writers beside the others, kills the server under all of them, and calls every
//! model's `verify` after each restart.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;

use super::client::Client;
use super::rng::Rng;

/// The durability policy the server runs with, as the checks need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Every acknowledged write is durable: nothing acknowledged may be lost.
    Always,
    /// A flush about once a second: a recent suffix of each writer's operations may be lost.
    EverySec,
    /// The OS writes back when it likes: as `EverySec`, any suffix.
    No,
}

impl Fsync {
    pub fn as_str(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        }
    }

    pub fn parse(text: &str) -> Option<Fsync> {
        match text {
            "always" => Some(Fsync::Always),
            "everysec" => Some(Fsync::EverySec),
            "no" => Some(Fsync::No),
            _ => None,
        }
    }
}

/// A broken promise: what was expected, what was found, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub model: &'static str,
    pub writer: Option<usize>,
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.writer {
            Some(writer) => write!(f, "[{} writer {writer}] {}", self.model, self.what),
            None => write!(f, "[{}] {}", self.model, self.what),
        }
    }
}

/// What the checks need to know about the cycle that just ended.
#[derive(Clone, Copy, Debug)]
pub struct CycleFacts {
    pub fsync: Fsync,
    /// Wall-clock time of the SIGKILL, in ms since the epoch: an operation still in flight
    /// then was applied, if at all, before it (expiry windows are computed from it).
    pub kill_ms: u64,
}

/// What one writer's operations came to in one cycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Operations acknowledged by the server.
    pub acknowledged: u64,
    /// Operations sent but not answered when the server died.
    pub in_flight: u64,
    /// Of those, how many recovery shows applied.
    pub in_flight_applied: u64,
    /// Acknowledged operations that did not survive (always 0 under `--fsync always`).
    pub acknowledged_lost: u64,
    /// Keys and counters read back and checked.
    pub keys_checked: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.acknowledged += other.acknowledged;
        self.in_flight += other.in_flight;
        self.in_flight_applied += other.in_flight_applied;
        self.acknowledged_lost += other.acknowledged_lost;
        self.keys_checked += other.keys_checked;
    }
}

/// One connection's worth of load. Runs on its own thread during a cycle.
pub trait Writer: Send {
    /// Connects to `addr` and runs operations until the connection breaks (the server was
    /// killed) or `stop` is set, recording each operation as in flight when it is sent and
    /// acknowledged when its reply arrives. Replies are checked as they come; a wrong one is
    /// returned as a violation.
    fn drive(&mut self, addr: SocketAddr, stop: &AtomicBool, rng: Rng) -> Vec<Violation>;
}

/// A data model's writers and checks.
pub trait Model: Send {
    fn name(&self) -> &'static str;
    /// The writers, each driven on its own thread and connection.
    fn writers(&mut self) -> Vec<&mut dyn Writer>;
    /// After a restart: reads the model's data back through `client` and checks it against
    /// what the writers recorded. On success the record becomes what survived, for the next
    /// cycle to build on.
    fn verify(&mut self, client: &mut Client, facts: &CycleFacts) -> Result<Tally, Vec<Violation>>;
}
