//! Following a cluster's leader (issue 14, decision 78): the retry budget ([`RetryPolicy`]),
//! the refusals a node answers with before it runs anything ([`Refusal`]), which requests may
//! be sent again after an answer was lost ([`is_read`]), and the budget one call spends
//! ([`Budget`]). The loop that uses them is `Client::call_cluster` (`super`); a client made by
//! [`super::Client::connect`] never comes here.
//!
//! What a node of a cluster answers instead of running a request, and what the client does:
//!
//! | answer (status ERROR) | meaning | the client |
//! |---|---|---|
//! | `MOVED <slot> <ip:port>` | not the leader; that node is | resends to it at once (the first time), and routes every later call there |
//! | `CLUSTERDOWN ...` | no leader known (an election) | backs off, resends |
//! | `TRYAGAIN ...` | just elected, committing its term | backs off, resends |
//! | `ERR the write was not committed ...` + close | a new leader cut the write | like a lost connection: indeterminate |
//!
//! The first three mean the request was not executed, so resending is always safe. A
//! connection that fails after the request was written, or a withdrawn reply, leaves the
//! request's fate unknown: a read is sent again, a write is reported as
//! [`super::Error::Indeterminate`] unless the caller opted in with
//! [`RetryPolicy::retry_writes`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::binary::{commands, Opcode, Response, Status};

/// Default for [`RetryPolicy::attempts`].
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 20;
/// Default for [`RetryPolicy::time`]: an election with etcd's defaults takes about 1 s; five
/// leave room for a slow one and a client that is itself retrying its connects.
pub const DEFAULT_RETRY_TIME: Duration = Duration::from_secs(5);
/// Default for [`RetryPolicy::backoff`]'s first wait.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(10);
/// Default for [`RetryPolicy::backoff`]'s longest wait.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(250);

/// The prefix of the error a cluster node sends for a reply it withdrew (a new leader
/// replaced the write), before it closes the connection (`server/src/cluster/driver.rs`).
const WITHDRAWN_PREFIX: &str = "ERR the write was not committed";

/// How a client connected to a cluster ([`super::Client::connect_cluster`]) retries one call:
/// at most `attempts` sends, none started after `time` has passed since the first, with
/// waits doubling from `backoff_initial` to `backoff_max` between them. Ignored by a client
/// connected to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub(crate) attempts: u32,
    pub(crate) time: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) retry_writes: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: DEFAULT_RETRY_ATTEMPTS,
            time: DEFAULT_RETRY_TIME,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            retry_writes: false,
        }
    }
}

impl RetryPolicy {
    /// 20 attempts within 5 s, waits from 10 ms doubling to 250 ms, writes not resent after
    /// an indeterminate failure.
    pub fn new() -> RetryPolicy {
        RetryPolicy::default()
    }

    /// Most sends of one request (at least 1: no retry at all).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// No attempt starts later than this after the first. One attempt is bounded by the
    /// connect, read and write timeouts, not by this.
    pub fn time(mut self, time: Duration) -> Self {
        self.time = time;
        self
    }

    /// The first wait before a resend and the longest; each wait doubles the one before.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// Resend writes too after a failure that leaves their fate unknown (a connection lost
    /// after the request was written, a withdrawn reply). Off by default: resending an INCR,
    /// a DOC.INSERT without an `_id` or a SET NX that did happen applies it twice. Turn it on
    /// when every write the program sends is idempotent (plain SETs, DELs, upserts by `_id`).
    pub fn retry_writes(mut self, retry: bool) -> Self {
        self.retry_writes = retry;
        self
    }
}

/// A node's answer that says it did not run the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `MOVED <slot> <addr>`: the leader is there (the slot, the key's, is not used).
    Moved(SocketAddr),
    /// `CLUSTERDOWN` or `TRYAGAIN`: no node can take it now; the message as sent.
    Busy(String),
}

/// What a cluster node's response says about the request, if it is one of the answers the
/// retry loop handles; `None` for every other response (an answer to decode).
pub(crate) fn refusal(response: &Response<'_>) -> Option<Answer> {
    if response.status != Status::Error {
        return None;
    }
    let message = response.message();
    if let Some(rest) = message.strip_prefix("MOVED ") {
        // `MOVED <slot> <addr>`; an address we cannot read is left to the caller.
        let addr = rest.split_whitespace().nth(1)?;
        let addr = addr
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| addr.to_socket_addrs().ok()?.next())?;
        return Some(Answer::Refused(Refusal::Moved(addr)));
    }
    if message.starts_with("CLUSTERDOWN") || message.starts_with("TRYAGAIN") {
        return Some(Answer::Refused(Refusal::Busy(message.into_owned())));
    }
    if message.starts_with(WITHDRAWN_PREFIX) {
        return Some(Answer::Withdrawn(message.into_owned()));
    }
    None
}

/// A response the retry loop acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Not run: resend.
    Refused(Refusal),
    /// The reply was withdrawn and the connection is closing. The server says the write was
    /// not committed, but its gate authority may widen a withdrawn range over replies it had
    /// not sent yet (`GateStatus::withdrawn`), so the client does not count on it: the
    /// request's fate is unknown.
    Withdrawn(String),
}

/// True if `opcode` only reads, so sending it again after an unknown outcome cannot change
/// anything. CALL (a command by name) counts as a write: the client does not know every
/// command's flags, and a wrong "read" would resend a write.
pub(crate) fn is_read(opcode: u8) -> bool {
    match Opcode::from_u8(opcode) {
        Some(Opcode::Ping | Opcode::Get | Opcode::Exists | Opcode::Ttl | Opcode::MGet) => true,
        Some(Opcode::Scan) => true,
        Some(_) => false,
        None => commands::TABLE
            .iter()
            .find(|spec| spec.opcode == opcode)
            .is_some_and(|spec| READ_COMMANDS.contains(&spec.name)),
    }
}

/// True if only the leader answers `opcode` without a refusal (a follower serves PING, AUTH
/// and commands by name such as CLUSTER INFO), so an answer names the leader.
pub(crate) fn only_the_leader_serves(opcode: u8) -> bool {
    !matches!(
        Opcode::from_u8(opcode),
        Some(Opcode::Ping | Opcode::Auth | Opcode::Call)
    )
}

/// The rows of `binary::commands::TABLE` that read only. STREAM.CONSUME is not one: it
/// moves a group member's position. QUEUE.POP takes a message.
const READ_COMMANDS: [&str; 17] = [
    "queue.len",
    "queue.list",
    "queue.info",
    "exchange.list",
    "exchange.bindings",
    "stream.list",
    "stream.describe",
    "stream.fetch",
    "stream.offsets",
    "stream.lag",
    "stream.groups",
    "doc.get",
    "doc.find",
    "doc.count",
    "doc.collections",
    "doc.indexes",
    "doc.explain",
];

/// What one call has left to spend on retries, and how long to wait before the next.
#[derive(Debug)]
pub(crate) struct Budget {
    policy: RetryPolicy,
    started: Instant,
    attempts: u32,
    /// Waits so far: the next one is `backoff_initial * 2^waits`, capped.
    waits: u32,
    /// A MOVED was followed at once already: a second one waits, so two nodes that name
    /// each other (stale views during an election) cannot use up the attempts in a blink.
    moved_followed: bool,
    /// Every address a connection was opened to or a request sent to, in first-use order,
    /// for the error that ends the budget.
    pub(crate) tried: Vec<SocketAddr>,
}

impl Budget {
    pub(crate) fn start(policy: RetryPolicy) -> Budget {
        Budget {
            policy,
            started: Instant::now(),
            attempts: 0,
            waits: 0,
            moved_followed: false,
            tried: Vec::new(),
        }
    }

    /// Counts an attempt about to be made.
    pub(crate) fn attempt(&mut self) {
        self.attempts += 1;
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) fn note_tried(&mut self, addr: SocketAddr) {
        if !self.tried.contains(&addr) {
            self.tried.push(addr);
        }
    }

    /// How long to wait before the next attempt, or `None` if the budget is spent.
    /// `after_moved`: the last attempt was redirected (the first redirect is followed at
    /// once).
    pub(crate) fn next_wait(&mut self, after_moved: bool) -> Option<Duration> {
        let elapsed = self.elapsed();
        if self.attempts >= self.policy.attempts || elapsed >= self.policy.time {
            return None;
        }
        if after_moved && !self.moved_followed {
            self.moved_followed = true;
            return Some(Duration::ZERO);
        }
        let doubled = self
            .policy
            .backoff_initial
            .saturating_mul(1u32 << self.waits.min(16));
        self.waits += 1;
        Some(
            doubled
                .min(self.policy.backoff_max)
                .min(self.policy.time - elapsed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::commands;

    fn error(message: &str) -> Response<'_> {
        Response {
            opcode: Opcode::Get as u8,
            status: Status::Error,
            request_id: 1,
            body: message.as_bytes(),
        }
    }

    #[test]
    fn refusals_are_read_from_the_server_s_messages() {
        assert_eq!(
            refusal(&error("MOVED 0 127.0.0.1:7381")),
            Some(Answer::Refused(Refusal::Moved(
                "127.0.0.1:7381".parse().unwrap()
            )))
        );
        assert_eq!(
            refusal(&error("MOVED 12182 127.0.0.1:7381")),
            Some(Answer::Refused(Refusal::Moved(
                "127.0.0.1:7381".parse().unwrap()
            )))
        );
        let down = "CLUSTERDOWN no leader is known (an election is under way); retry";
        assert_eq!(
            refusal(&error(down)),
            Some(Answer::Refused(Refusal::Busy(down.into())))
        );
        assert!(matches!(
            refusal(&error("TRYAGAIN this node was just elected")),
            Some(Answer::Refused(Refusal::Busy(_)))
        ));
        assert!(matches!(
            refusal(&error(
                "ERR the write was not committed: a new leader replaced it"
            )),
            Some(Answer::Withdrawn(_))
        ));
        // Not refusals: other errors, a MOVED without a readable address, other statuses.
        assert_eq!(refusal(&error("ERR value is not an integer")), None);
        assert_eq!(refusal(&error("MOVED 0")), None);
        assert_eq!(refusal(&error("MOVED 0 not an address")), None);
        let mut wrong_type = error("MOVED 0 127.0.0.1:7381");
        wrong_type.status = Status::WrongType;
        assert_eq!(refusal(&wrong_type), None);
    }

    #[test]
    fn reads_are_told_from_writes() {
        for opcode in [Opcode::Get, Opcode::MGet, Opcode::Exists, Opcode::Ttl] {
            assert!(is_read(opcode as u8), "{opcode:?}");
        }
        for opcode in [Opcode::Set, Opcode::Incr, Opcode::Del, Opcode::MSet] {
            assert!(!is_read(opcode as u8), "{opcode:?}");
        }
        assert!(!is_read(Opcode::Call as u8), "a command by name may write");
        let row = |name: &str| commands::by_name(name.as_bytes()).unwrap().opcode;
        assert!(is_read(row("doc.find")) && is_read(row("stream.fetch")));
        assert!(!is_read(row("doc.insert")) && !is_read(row("stream.consume")));
        // Every read row names a row of the table (a renamed command is not silently a write).
        for name in READ_COMMANDS {
            assert!(commands::by_name(name.as_bytes()).is_some(), "{name}");
        }
    }

    #[test]
    fn the_budget_doubles_its_waits_and_follows_one_redirect_at_once() {
        let policy = RetryPolicy::new()
            .attempts(5)
            .backoff(Duration::from_millis(10), Duration::from_millis(25));
        let mut budget = Budget::start(policy);
        let mut waits = Vec::new();
        for after_moved in [true, true, false, false] {
            budget.attempt();
            waits.push(budget.next_wait(after_moved).unwrap().as_millis());
        }
        assert_eq!(waits, [0, 10, 20, 25]);
        budget.attempt();
        assert_eq!(budget.next_wait(false), None, "five attempts spent");

        let mut timed = Budget::start(RetryPolicy::new().time(Duration::ZERO));
        timed.attempt();
        assert_eq!(timed.next_wait(true), None, "no time left");
    }
}
