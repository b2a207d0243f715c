//! The clients: each runs random GET, SET, INCR and compare-and-set on a few keys of the
//! cluster, mixed with writes to the other models (`models`: document inserts and increments,
//! queue pushes and takes, stream publishes and consumer-group steps), follows `-MOVED` to the
//! leader, gives up on an operation after a timeout, and records every key-value operation
//! for the linearizability checker (`flin_replication::linearizability`): the time it was
//! sent, the input, and the time and content of the reply, or no reply when the outcome is
//! unknown.
//!
//! # Compare-and-set
//! `SET key new IFEQ old` (Redis 8.4's form) when the client last saw `old` in the key, and
//! `SET key new NX` (compare-and-set against a missing key) when it saw the key missing or
//! does not know: `+OK` is a swap, null is a refusal ([`KvOutput::Swapped`]). What the client
//! last saw is its own last GET, SET, INCR or successful swap on the key, so many swaps succeed
//! and many fail (another client wrote in between).
//!
//! # What is unknown
//! A write is recorded without a reply (it may or may not have taken effect, as Porcupine and
//! Jepsen record it) when its connection dropped or timed out after the request was sent, or
//! when the server answered that a new leader replaced it (the reply is followed by a close).
//! A refusal that names the leader (`-MOVED`) or says there is none yet (`-CLUSTERDOWN`,
//! `-TRYAGAIN`) means the node did not run the command: the client retries elsewhere within the
//! same operation, whose call time stays the first attempt's (a wider interval claims less).
//!
//! # Keys
//! Keys are `k<slot>.<epoch>`: a few slots, and a new epoch every `key_epoch_ms`, so that no
//! key's history grows beyond what the checker searches quickly (its module doc has the
//! figures). SET writes unique decimal values (client and sequence number), so a read pins
//! which write it saw, and INCR works on any value a SET left.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flin_replication::linearizability::{KvCommand, KvInput, KvOutput, Operation};

use crate::crashtest::client::{Client, Reply};
use crate::crashtest::rng::Rng;

use super::models::{self, ModelRecord, ModelWrite};

/// One recorded operation.
pub type KvOperation = Operation<KvInput, KvOutput>;

/// Timeout of a connect to a node.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Pause before retrying when no leader is known.
const NO_LEADER_PAUSE: Duration = Duration::from_millis(20);
/// Error messages kept for the report.
const ODD_REPLIES_KEPT: usize = 10;

/// What every client does.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadSettings {
    /// Key slots in use at a time.
    pub keys: u64,
    /// A new set of keys this often.
    pub key_epoch_ms: u64,
    /// An operation without a reply after this long has an unknown outcome.
    pub op_timeout: Duration,
    /// Broken on purpose (to show the checker catches it): GETs go to a random node with
    /// READONLY, which may serve a stale copy.
    pub stale_reads: bool,
    /// Share of operations that write to the other models instead of the keys (0 to 100).
    pub model_percent: u64,
}

/// What one client did.
#[derive(Debug, Default)]
pub struct ClientRecord {
    pub operations: Vec<KvOperation>,
    pub keys: BTreeSet<Vec<u8>>,
    /// Replies the client did not expect (recorded as unknown outcomes).
    pub odd_replies: Vec<String>,
    pub odd_reply_count: u64,
    /// Its writes to the other models.
    pub models: ModelRecord,
}

impl ClientRecord {
    fn odd(&mut self, what: String) {
        self.odd_reply_count += 1;
        if self.odd_replies.len() < ODD_REPLIES_KEPT {
            self.odd_replies.push(what);
        }
    }
}

/// How an attempt ended.
pub enum Attempt {
    Reply(Reply),
    /// Sent, no usable reply: may or may not have taken effect.
    Unknown,
    /// Never reached a node that could run it before the deadline: did not happen.
    NotSent,
}

/// A client's connection, pointed at the node it believes leads.
pub struct Session {
    nodes: Vec<SocketAddr>,
    target: usize,
    connection: Option<Client>,
    timeout: Duration,
    readonly: bool,
}

impl Session {
    pub fn new(nodes: Vec<SocketAddr>, target: usize, timeout: Duration) -> Session {
        Session {
            nodes,
            target,
            connection: None,
            timeout,
            readonly: false,
        }
    }

    /// A session that says READONLY and stays on its node (stale reads, and the final
    /// comparison of the nodes' copies).
    pub fn readonly(node: SocketAddr, timeout: Duration) -> Session {
        Session {
            readonly: true,
            ..Session::new(vec![node], 0, timeout)
        }
    }

    fn next_node(&mut self) {
        self.connection = None;
        self.target = (self.target + 1) % self.nodes.len();
    }

    fn connect(&mut self) -> Option<&mut Client> {
        if self.connection.is_none() {
            let mut client = Client::connect(self.nodes[self.target], CONNECT_TIMEOUT).ok()?;
            client.stream().set_read_timeout(Some(self.timeout)).ok()?;
            if self.readonly && client.call(&[b"READONLY"]).ok()? != Reply::Simple("OK".into()) {
                return None;
            }
            self.connection = Some(client);
        }
        self.connection.as_mut()
    }

    /// Forgets the connection (after a reply it did not expect).
    pub fn drop_connection(&mut self) {
        self.connection = None;
    }

    /// Runs `args` until a node answers it or this session's timeout passes.
    pub fn run(&mut self, args: &[&[u8]]) -> Attempt {
        self.attempt(args, Instant::now() + self.timeout)
    }

    /// Runs `args` until a node answers it or `deadline` passes.
    fn attempt(&mut self, args: &[&[u8]], deadline: Instant) -> Attempt {
        // Every way round this loop is a refusal: the command did not run.
        while Instant::now() < deadline {
            let Some(client) = self.connect() else {
                if self.readonly {
                    return Attempt::NotSent;
                }
                self.next_node();
                std::thread::sleep(NO_LEADER_PAUSE);
                continue;
            };
            let reply = match client.call(args) {
                Ok(reply) => reply,
                Err(_) => {
                    self.next_node();
                    return Attempt::Unknown;
                }
            };
            let Reply::Error(message) = &reply else {
                return Attempt::Reply(reply);
            };
            // `MOVED <slot> <addr>`: the slot is the key's, the address the leader's.
            let moved = message
                .strip_prefix("MOVED ")
                .and_then(|rest| rest.split_once(' '))
                .map(|(_, addr)| addr);
            if let Some(addr) = moved {
                self.connection = None;
                match self.nodes.iter().position(|n| n.to_string() == addr) {
                    Some(index) => self.target = index,
                    None => self.next_node(),
                }
            } else if message.starts_with("CLUSTERDOWN") || message.starts_with("TRYAGAIN") {
                self.next_node();
                std::thread::sleep(NO_LEADER_PAUSE);
            } else if message.contains("not committed") {
                self.connection = None;
                return Attempt::Unknown;
            } else {
                return Attempt::Reply(reply);
            }
        }
        Attempt::NotSent
    }

    /// Runs `input` and records it into `record`, on `clock`.
    pub fn perform(
        &mut self,
        client: u64,
        input: KvInput,
        clock: Instant,
        record: &mut ClientRecord,
    ) -> Option<KvOutput> {
        let call_ns = ns_since(clock);
        let deadline = Instant::now() + self.timeout;
        let args: Vec<&[u8]> = match &input.command {
            KvCommand::Get => vec![b"GET", &input.key],
            KvCommand::Set(new) => vec![b"SET", &input.key, new],
            KvCommand::Incr => vec![b"INCR", &input.key],
            KvCommand::CompareAndSet {
                expected: Some(old),
                new,
            } => vec![b"SET", &input.key, new, b"IFEQ", old],
            KvCommand::CompareAndSet {
                expected: None,
                new,
            } => vec![b"SET", &input.key, new, b"NX"],
        };
        let attempt = self.attempt(&args, deadline);
        let return_ns = ns_since(clock);
        record.keys.insert(input.key.clone());
        let output = match attempt {
            Attempt::NotSent => return None,
            Attempt::Unknown => None,
            Attempt::Reply(reply) => match output_of(&input.command, &reply) {
                Some(output) => Some(output),
                None => {
                    record.odd(format!("{input:?} answered {reply:?}"));
                    self.connection = None;
                    None
                }
            },
        };
        let operation = match &output {
            Some(output) => {
                KvOperation::completed(client, call_ns, input, return_ns, output.clone())
            }
            None => KvOperation::unknown(client, call_ns, input),
        };
        record.operations.push(operation);
        output
    }
}

/// The model's output for `reply` to `command`, if the reply is one the command gets.
pub fn output_of(command: &KvCommand, reply: &Reply) -> Option<KvOutput> {
    match (command, reply) {
        (KvCommand::Get, Reply::Bulk(value)) => Some(KvOutput::Value(value.clone())),
        (KvCommand::Set(_), Reply::Simple(ok)) if ok == "OK" => Some(KvOutput::Done),
        (KvCommand::Incr, Reply::Integer(new)) => Some(KvOutput::Incremented(*new)),
        (KvCommand::CompareAndSet { .. }, Reply::Simple(ok)) if ok == "OK" => {
            Some(KvOutput::Swapped(true))
        }
        (KvCommand::CompareAndSet { .. }, Reply::Bulk(None)) => Some(KvOutput::Swapped(false)),
        (KvCommand::Incr, Reply::Error(message))
            if message.contains("not an integer") || message.contains("overflow") =>
        {
            Some(KvOutput::Refused)
        }
        _ => None,
    }
}

/// Nanoseconds since `clock`: the history's time line.
pub fn ns_since(clock: Instant) -> u64 {
    clock.elapsed().as_nanos() as u64
}

/// The key of `slot` in the epoch `elapsed` falls in.
pub fn key_name(slot: u64, elapsed: Duration, key_epoch_ms: u64) -> Vec<u8> {
    let epoch = elapsed.as_millis() as u64 / key_epoch_ms.max(1);
    format!("k{slot}.{epoch}").into_bytes()
}

/// One client's loop: random operations until `stop`.
pub fn run_client(
    client: u64,
    nodes: Vec<SocketAddr>,
    mut rng: Rng,
    settings: WorkloadSettings,
    clock: Instant,
    stop: &AtomicBool,
) -> ClientRecord {
    let mut record = ClientRecord::default();
    let start_node = rng.below(nodes.len() as u64) as usize;
    let mut session = Session::new(nodes.clone(), start_node, settings.op_timeout);
    let mut stale: Vec<Session> = nodes
        .iter()
        .map(|&node| Session::readonly(node, settings.op_timeout))
        .collect();
    let mut sequence = 0u64;
    let mut member = models::Member::default();
    // What this client last saw in each key (`None`: missing), for its compare-and-sets.
    let mut seen: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    while !stop.load(Ordering::SeqCst) {
        sequence += 1;
        if rng.weighted(&[100 - settings.model_percent, settings.model_percent]) == 1 {
            let write = match rng.weighted(&[20, 15, 20, 15, 15, 15]) {
                0 => Some(ModelWrite::DocInsert),
                1 => Some(ModelWrite::DocIncrement),
                2 => Some(ModelWrite::QueuePush),
                3 => Some(ModelWrite::QueueTake),
                4 => Some(ModelWrite::StreamPublish),
                _ => None,
            };
            let odd = match write {
                Some(write) => {
                    models::perform(&mut session, client, sequence, write, &mut record.models)
                }
                None => {
                    models::group_step(&mut session, client, &mut member, clock, &mut record.models)
                }
            };
            if let Some(odd) = odd {
                record.odd(odd);
            }
            continue;
        }
        let slot = rng.below(settings.keys);
        let key = key_name(slot, clock.elapsed(), settings.key_epoch_ms);
        // Unique, and INCR can add a million before it reaches another's value.
        let unique = ((client + 1) * 1_000_000_000_000 + sequence * 1_000_000).to_string();
        let input = match rng.weighted(&[35, 30, 20, 15]) {
            0 => KvInput::get(key),
            1 => KvInput::set(key, unique),
            2 => KvInput::incr(key),
            _ => {
                let expected = seen.get(&key).cloned().flatten();
                KvInput::compare_and_set(key, expected.as_deref(), unique)
            }
        };
        let output = if settings.stale_reads && input.command == KvCommand::Get {
            let node = rng.below(nodes.len() as u64) as usize;
            stale[node].perform(client, input.clone(), clock, &mut record)
        } else {
            session.perform(client, input.clone(), clock, &mut record)
        };
        let now_holds = match (&input.command, output) {
            (_, None) => None,
            (KvCommand::Get, Some(KvOutput::Value(value))) => Some(value),
            (KvCommand::Set(value), Some(_)) => Some(Some(value.clone())),
            (KvCommand::Incr, Some(KvOutput::Incremented(new))) => {
                Some(Some(new.to_string().into_bytes()))
            }
            (KvCommand::CompareAndSet { new, .. }, Some(KvOutput::Swapped(true))) => {
                Some(Some(new.clone()))
            }
            _ => None,
        };
        if let Some(value) = now_holds {
            seen.insert(input.key, value);
        }
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use flin_replication::linearizability::{check, KvModel, Limits};

    #[test]
    fn replies_map_to_outputs() {
        let get = KvCommand::Get;
        assert_eq!(
            output_of(&get, &Reply::Bulk(Some(b"7".to_vec()))),
            Some(KvOutput::Value(Some(b"7".to_vec())))
        );
        assert_eq!(output_of(&get, &Reply::Integer(1)), None);
        assert_eq!(
            output_of(&KvCommand::Incr, &Reply::Integer(8)),
            Some(KvOutput::Incremented(8))
        );
        assert_eq!(
            output_of(
                &KvCommand::Incr,
                &Reply::Error("ERR value is not an integer or out of range".into())
            ),
            Some(KvOutput::Refused)
        );
        assert_eq!(
            output_of(&KvCommand::Set(b"1".to_vec()), &Reply::Simple("OK".into())),
            Some(KvOutput::Done)
        );
        let cas = KvInput::compare_and_set("k", Some(b"1"), "2").command;
        assert_eq!(
            output_of(&cas, &Reply::Simple("OK".into())),
            Some(KvOutput::Swapped(true))
        );
        assert_eq!(
            output_of(&cas, &Reply::Bulk(None)),
            Some(KvOutput::Swapped(false))
        );
        assert_eq!(output_of(&cas, &Reply::Bulk(Some(b"1".to_vec()))), None);
    }

    /// What a deposed leader serving reads would leave in the record: an acknowledged write,
    /// then, strictly later, a read of the value before it. The checker refuses it; with the
    /// read's outcome unknown, or the read concurrent with the write, it accepts.
    #[test]
    fn the_checker_refuses_a_stale_read_from_the_recorder() {
        let key = key_name(0, Duration::ZERO, 1000);
        let set = |at: u64, value: &str| {
            KvOperation::completed(
                0,
                at,
                KvInput::set(key.clone(), value),
                at + 10,
                KvOutput::Done,
            )
        };
        let get = |call: u64, ret: u64, value: &str| {
            KvOperation::completed(
                1,
                call,
                KvInput::get(key.clone()),
                ret,
                KvOutput::value(Some(value.as_bytes())),
            )
        };
        let stale = vec![set(0, "1"), set(20, "2"), get(40, 50, "1")];
        let outcome = check(&KvModel, &stale, Limits::default());
        assert!(outcome.is_illegal(), "{outcome:?}");
        let concurrent = vec![set(0, "1"), set(20, "2"), get(25, 50, "1")];
        assert!(check(&KvModel, &concurrent, Limits::default()).is_ok());
        let mut lost_incr = vec![set(0, "1")];
        lost_incr.push(KvOperation::unknown(2, 15, KvInput::incr(key.clone())));
        lost_incr.push(get(40, 50, "2"));
        assert!(check(&KvModel, &lost_incr, Limits::default()).is_ok());
    }
}
