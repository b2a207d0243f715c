//! The queue model: producers push numbered messages into one durable queue, consumers pop
//! and acknowledge them, the server is killed under both.
//!
//! The promises checked (under `--fsync always`; other policies only count what was lost):
//! - every acknowledged push is delivered at least once over the run: after each restart the
//!   check drains the queue, and every message pushed and acknowledged but never acked (the
//!   ack's reply never seen) must be in it;
//! - a message whose ack was acknowledged is never delivered again: not to a consumer (checked
//!   as each message arrives) and not in the drain;
//! - no message is delivered twice in one drain.
//!
//! Messages in flight at the kill come back with a higher delivery count; a message whose push
//! or ack was in flight may or may not have been applied.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::client::{encode, Client, Reply};
use super::model::{CycleFacts, Fsync, Model, Tally, Violation, Writer};
use super::rng::Rng;

const QUEUE: &[u8] = b"crash.q";
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);
const MODEL: &str = "queue";

/// How many of each.
#[derive(Clone, Copy, Debug)]
pub struct QueueSettings {
    pub producers: usize,
    pub consumers: usize,
    /// Pushes in flight at once per producer (pipelining), at most.
    pub pipeline_max: usize,
    /// Messages a consumer pops at once, at most.
    pub pop_max: usize,
}

/// What every writer shares: the numbers whose ack the server acknowledged.
#[derive(Default)]
struct Acked {
    numbers: HashSet<u64>,
}

enum Role {
    Producer { next: u64 },
    Consumer,
}

struct QueueWriter {
    index: usize,
    role: Role,
    settings: QueueSettings,
    acked: Arc<Mutex<Acked>>,
    /// Producers: pushes acknowledged this cycle, and the ones in flight at the kill.
    pushed: Vec<u64>,
    push_in_flight: Vec<u64>,
    /// Consumers: acks in flight at the kill (their messages may come back or not).
    ack_in_flight: Vec<u64>,
    /// Messages delivered to this consumer whose ack the server acknowledged, this cycle.
    acks: u64,
    fsync: Fsync,
}

impl QueueWriter {
    fn violation(&self, what: String) -> Violation {
        Violation {
            model: MODEL,
            writer: Some(self.index),
            what,
        }
    }

    fn produce(&mut self, client: &mut Client, stop: &AtomicBool, rng: &mut Rng) -> Vec<Violation> {
        let depth = rng.between(1, self.settings.pipeline_max as u64) as usize;
        let Role::Producer { next } = &mut self.role else {
            unreachable!()
        };
        while !stop.load(Ordering::Relaxed) {
            let mut out = Vec::new();
            let first = *next;
            for _ in 0..depth {
                let payload = next.to_string();
                encode(&mut out, &[b"QUEUE.PUSH", QUEUE, payload.as_bytes()]);
                *next += 1;
            }
            self.push_in_flight = (first..*next).collect();
            if client.send(&out).is_err() {
                return Vec::new();
            }
            for number in first..*next {
                match client.read_reply() {
                    Ok(Reply::Integer(id)) if id > 0 => {
                        self.pushed.push(number);
                        self.push_in_flight.retain(|n| *n != number);
                    }
                    Ok(other) => {
                        return vec![self.violation(format!(
                            "QUEUE.PUSH of message {number}: unexpected reply {other:?}"
                        ))]
                    }
                    Err(_) => return Vec::new(), // killed: the rest stays in flight
                }
            }
        }
        Vec::new()
    }

    fn consume(&mut self, client: &mut Client, stop: &AtomicBool, rng: &mut Rng) -> Vec<Violation> {
        while !stop.load(Ordering::Relaxed) {
            let count = rng.between(1, self.settings.pop_max as u64).to_string();
            let reply =
                match client.call(&[b"QUEUE.BPOP", QUEUE, b"50", b"COUNT", count.as_bytes()]) {
                    Ok(reply) => reply,
                    Err(_) => return Vec::new(),
                };
            let messages = match reply {
                Reply::Array(None) => continue,
                Reply::Array(Some(messages)) => messages,
                other => {
                    return vec![self.violation(format!("QUEUE.BPOP: unexpected reply {other:?}"))]
                }
            };
            let mut ids = Vec::new();
            let mut numbers = Vec::new();
            for message in &messages {
                let Some((id, number)) = parse_message(message) else {
                    return vec![
                        self.violation(format!("QUEUE.BPOP: malformed message {message:?}"))
                    ];
                };
                if self.fsync == Fsync::Always
                    && self.acked.lock().expect("acked").numbers.contains(&number)
                {
                    return vec![self.violation(format!(
                        "message {number} (id {id}) delivered again after its ack was acknowledged"
                    ))];
                }
                ids.push(id.to_string());
                numbers.push(number);
            }
            let mut args: Vec<&[u8]> = vec![b"QUEUE.ACK", QUEUE];
            args.extend(ids.iter().map(|id| id.as_bytes()));
            self.ack_in_flight = numbers.clone();
            match client.call(&args) {
                Ok(Reply::Integer(n)) if n as usize == ids.len() => {
                    self.acked.lock().expect("acked").numbers.extend(&numbers);
                    self.acks += numbers.len() as u64;
                    self.ack_in_flight.clear();
                }
                Ok(other) => {
                    return vec![
                        self.violation(format!("QUEUE.ACK of {ids:?}: unexpected reply {other:?}"))
                    ]
                }
                Err(_) => return Vec::new(),
            }
        }
        Vec::new()
    }
}

/// `[id, payload, priority, deliveries, headers]` -> (id, the payload's number).
fn parse_message(message: &Reply) -> Option<(u64, u64)> {
    let Reply::Array(Some(items)) = message else {
        return None;
    };
    let (Some(Reply::Integer(id)), Some(Reply::Bulk(Some(payload)))) =
        (items.first(), items.get(1))
    else {
        return None;
    };
    let number = std::str::from_utf8(payload).ok()?.parse().ok()?;
    Some((*id as u64, number))
}

impl Writer for QueueWriter {
    fn drive(&mut self, addr: SocketAddr, stop: &AtomicBool, mut rng: Rng) -> Vec<Violation> {
        let Ok(mut client) = Client::connect(addr, REPLY_TIMEOUT) else {
            return Vec::new();
        };
        match client.call(&[b"QUEUE.DECLARE", QUEUE]) {
            Ok(Reply::Simple(_)) => {}
            Ok(other) => return vec![self.violation(format!("QUEUE.DECLARE: {other:?}"))],
            Err(_) => return Vec::new(),
        }
        match self.role {
            Role::Producer { .. } => self.produce(&mut client, stop, &mut rng),
            Role::Consumer => self.consume(&mut client, stop, &mut rng),
        }
    }
}

/// The queue model: its writers, and the drain that checks what survived.
pub struct QueueModel {
    writers: Vec<QueueWriter>,
    acked: Arc<Mutex<Acked>>,
    /// Acknowledged pushes not yet seen acked (by a consumer or a drain), over the run.
    outstanding: HashSet<u64>,
}

impl QueueModel {
    pub fn new(settings: QueueSettings, fsync: Fsync, first_writer: usize) -> QueueModel {
        let acked = Arc::new(Mutex::new(Acked::default()));
        let mut writers = Vec::new();
        for i in 0..settings.producers + settings.consumers {
            let role = if i < settings.producers {
                // Each producer numbers its messages in its own range.
                Role::Producer {
                    next: (i as u64 + 1) << 40,
                }
            } else {
                Role::Consumer
            };
            writers.push(QueueWriter {
                index: first_writer + i,
                role,
                settings,
                acked: acked.clone(),
                pushed: Vec::new(),
                push_in_flight: Vec::new(),
                ack_in_flight: Vec::new(),
                acks: 0,
                fsync,
            });
        }
        QueueModel {
            writers,
            acked,
            outstanding: HashSet::new(),
        }
    }
}

impl Model for QueueModel {
    fn name(&self) -> &'static str {
        MODEL
    }

    fn writers(&mut self) -> Vec<&mut dyn Writer> {
        self.writers
            .iter_mut()
            .map(|w| w as &mut dyn Writer)
            .collect()
    }

    fn verify(&mut self, client: &mut Client, facts: &CycleFacts) -> Result<Tally, Vec<Violation>> {
        let violation = |what: String| Violation {
            model: MODEL,
            writer: None,
            what,
        };
        let mut tally = Tally::default();
        let mut maybe_pushed = HashSet::new();
        let mut maybe_acked = HashSet::new();
        for writer in &mut self.writers {
            tally.acknowledged += writer.pushed.len() as u64 + writer.acks;
            tally.in_flight += (writer.push_in_flight.len() + writer.ack_in_flight.len()) as u64;
            self.outstanding.extend(writer.pushed.drain(..));
            maybe_pushed.extend(writer.push_in_flight.drain(..));
            maybe_acked.extend(writer.ack_in_flight.drain(..));
            writer.acks = 0;
        }
        // Every number whose ack was acknowledged, over the whole run.
        let acked = self.acked.lock().expect("acked").numbers.clone();
        self.outstanding.retain(|n| !acked.contains(n));
        // Drain: pop and ack everything, checking each message.
        let mut drained: HashMap<u64, u64> = HashMap::new();
        let mut violations = Vec::new();
        loop {
            let reply = client
                .call(&[b"QUEUE.POP", QUEUE, b"COUNT", b"1000"])
                .map_err(|e| vec![violation(format!("drain: QUEUE.POP failed: {e}"))])?;
            let Reply::Array(Some(messages)) = reply else {
                return Err(vec![violation(format!(
                    "drain: QUEUE.POP replied {reply:?}"
                ))]);
            };
            if messages.is_empty() {
                break;
            }
            let mut ids = Vec::new();
            for message in &messages {
                let Some((id, number)) = parse_message(message) else {
                    return Err(vec![violation(format!(
                        "drain: malformed message {message:?}"
                    ))]);
                };
                if drained.insert(number, id).is_some() {
                    violations.push(violation(format!(
                        "drain: message {number} delivered twice"
                    )));
                }
                if acked.contains(&number)
                    && !maybe_acked.contains(&number)
                    && facts.fsync == Fsync::Always
                {
                    violations.push(violation(format!(
                        "message {number} (id {id}) came back after its ack was acknowledged"
                    )));
                }
                ids.push(id.to_string());
            }
            let mut args: Vec<&[u8]> = vec![b"QUEUE.ACK", QUEUE];
            args.extend(ids.iter().map(|id| id.as_bytes()));
            client
                .call(&args)
                .map_err(|e| vec![violation(format!("drain: QUEUE.ACK failed: {e}"))])?;
        }
        tally.keys_checked = drained.len() as u64;
        tally.in_flight_applied = maybe_pushed
            .iter()
            .filter(|n| drained.contains_key(n))
            .count() as u64;
        let lost: Vec<u64> = self
            .outstanding
            .iter()
            .filter(|n| !drained.contains_key(n) && !maybe_acked.contains(n))
            .copied()
            .collect();
        tally.acknowledged_lost = lost.len() as u64;
        if facts.fsync == Fsync::Always && !lost.is_empty() {
            let mut shown = lost.clone();
            shown.sort_unstable();
            shown.truncate(10);
            violations.push(violation(format!(
                "{} acknowledged pushes never delivered nor found after the restart, e.g. {shown:?}",
                lost.len()
            )));
        }
        // Everything drained is consumed (and acked) now.
        self.outstanding.clear();
        self.acked
            .lock()
            .expect("acked")
            .numbers
            .extend(drained.keys().copied());
        if violations.is_empty() {
            Ok(tally)
        } else {
            Err(violations)
        }
    }
}
