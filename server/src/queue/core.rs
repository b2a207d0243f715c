//! The queue model's core: queues, their ready order and in-flight set, consumers and
//! waiters, exchanges and bindings. Typed arguments in, typed results or a [`QueueError`] out;
//! no sockets, frames or argument lists.
//!
//! # How state and log agree
//! One mutex guards the whole model. An operation that may write begins an engine
//! transaction first (the writer lock) and takes the model's lock second; nothing that holds
//! the model's lock waits for the writer lock (decision 70: EXEC holds the writer lock while
//! its queue commands take the model's). It decides, builds a [`Plan`] (the log writes, and
//! the in-memory changes they stand for), commits the writes as one log entry keeping the
//! writer lock (`Txn::commit_part`), and only then applies the in-memory changes and hands out
//! messages. So what the model shows is always what the log holds (plus deliveries, which
//! are memory only): a failed commit changes nothing. Reads and memory-only changes take the
//! model's lock alone.
//!
//! Inside EXEC ([`Scope::Exec`]) the EXEC keeps the model's lock from its first queue command
//! until its entry committed: each command's writes join the EXEC's transaction and its
//! changes apply at once, journaled, so the EXEC's later commands see them and no one else
//! does; the commit dispatches the touched queues, a failed commit undoes the journal
//! ([`InTransaction`]).
//!
//! # What is on disk
//! A durable queue's declaration, every message (key `m` qid id, see `codec`), its exchanges
//! and bindings. Not on disk: which messages are in flight and to whom. After a restart every
//! message is ready again (its consumer's connection is gone, so RabbitMQ would requeue it
//! too), with the delivery count it had when it last came back (a delivery cut short by the
//! crash is not counted). An ack deletes the message's record (a tombstone; compaction drops
//! both). A transient or exclusive queue keeps its messages in memory, encoded as on disk.
//!
//! # Memory
//! A ready message costs a 16-byte entry (id, expiry) in its priority's ring, plus the
//! engine's index entry for its key; its payload and headers stay in the log.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use flin_engine::{Namespace, Op, RecordKind, Txn};

use super::codec::{
    self, BindingRule, ExchangeKind, Overflow, QueueOptions, StoredMessage, DELIVERIES_OFFSET,
};
use super::routing;
use crate::store::Store;

/// The engine namespace every queue record lives in.
pub const NS: Namespace = Namespace::Queue;
/// Priorities run 0 (lowest, the default) to 9.
pub const PRIORITIES: usize = 10;
/// The largest payload a message may carry (RabbitMQ's default `max_message_size`).
pub const PAYLOAD_BYTES_MAX: usize = 128 << 20;
/// Ids are reserved this many at a time (one small record per block).
const ID_BLOCK: u64 = 1 << 20;
/// Deliveries one dispatch hands out at most (the rest at the timer's next tick).
const DISPATCH_MAX: usize = 4096;
/// Expired messages a tick dead-letters at most (the rest go at the next tick).
const TICK_MOVES_MAX: usize = 10_000;
/// Deletes per log entry when a queue is deleted or purged.
const DELETE_CHUNK: usize = 64 * 1024;

/// A connection, as the model knows it.
pub type ConnId = u64;

/// Why an operation was refused; the shell turns it into an error naming the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueError {
    NoQueue(Vec<u8>),
    NoExchange(Vec<u8>),
    /// An exclusive queue used from a connection that did not declare it.
    Locked(Vec<u8>),
    /// A redeclaration whose option differs from the declared one.
    Mismatch {
        name: Vec<u8>,
        option: &'static str,
    },
    /// An id that is not in flight on this queue.
    NotInFlight(u64),
    /// An id in flight to another connection.
    Foreign(u64),
    /// A queue at MAXLEN with OVERFLOW REJECT.
    Full(Vec<u8>),
    /// MANDATORY, and no queue matched.
    Unroutable(Vec<u8>),
    /// A binding that does not fit its exchange's kind.
    BindingKind(&'static str),
    Invalid(String),
    Corrupt(String),
    Engine(String),
}

pub type Result<T> = std::result::Result<T, QueueError>;

pub(crate) fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueError::NoQueue(name) => write!(f, "no queue '{}'", shown(name)),
            QueueError::NoExchange(name) => write!(f, "no exchange '{}'", shown(name)),
            QueueError::Locked(name) => write!(
                f,
                "queue '{}' is exclusive to the connection that declared it",
                shown(name)
            ),
            QueueError::Mismatch { name, option } => write!(
                f,
                "'{}' already exists with a different {option}",
                shown(name)
            ),
            QueueError::NotInFlight(id) => write!(f, "message id {id} is not in flight"),
            QueueError::Foreign(id) => {
                write!(f, "message id {id} was delivered to another connection")
            }
            QueueError::Full(name) => write!(
                f,
                "queue '{}' is full (MAXLEN with OVERFLOW REJECT)",
                shown(name)
            ),
            QueueError::Unroutable(name) => write!(
                f,
                "MANDATORY message matched no queue of exchange '{}'",
                shown(name)
            ),
            QueueError::BindingKind(why) => write!(f, "{why}"),
            QueueError::Invalid(why) => write!(f, "{why}"),
            QueueError::Corrupt(what) => write!(f, "corrupt {what} record"),
            QueueError::Engine(why) => write!(f, "{why}"),
        }
    }
}

/// A message as delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub payload: Vec<u8>,
    pub priority: u8,
    /// 1 on the first delivery.
    pub deliveries: u32,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A message to push.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewMessage {
    pub payload: Vec<u8>,
    pub priority: u8,
    /// Per-message TTL in ms (0: none; the queue's TTL applies when lower).
    pub ttl_ms: u64,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Messages handed to a waiting or subscribed connection, to be written on its own thread.
#[derive(Debug)]
pub struct Delivery {
    pub queue: Vec<u8>,
    pub kind: DeliveryKind,
    pub messages: Vec<Message>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryKind {
    /// The reply to a parked QUEUE.BPOP (with NOACK: the connection acks them before it
    /// replies).
    Pop { noack: bool },
    /// The queue a parked QUEUE.BPOP waited on was deleted.
    Deleted,
    /// The queue a subscription consumed was deleted: the subscription ended (RabbitMQ's
    /// basic.cancel from the server).
    Cancelled,
    /// A subscription's message, pushed.
    Push,
}

/// Where a connection receives what other threads hand it; posting wakes its loop.
pub struct Mailbox {
    deliveries: Mutex<VecDeque<Delivery>>,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl Mailbox {
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Arc<Mailbox> {
        Arc::new(Mailbox {
            deliveries: Mutex::new(VecDeque::new()),
            wake: Box::new(wake),
        })
    }

    /// Everything posted so far, oldest first.
    pub fn take(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .expect("mailbox lock")
            .drain(..)
            .collect()
    }

    /// Wakes the connection's loop with nothing posted (a stream's long poll: its
    /// `on_wake` looks again).
    pub fn ring(&self) {
        (self.wake)();
    }

    fn post(&self, delivery: Delivery) {
        self.deliveries
            .lock()
            .expect("mailbox lock")
            .push_back(delivery);
        (self.wake)();
    }
}

/// QUEUE.INFO's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueInfo {
    pub name: Vec<u8>,
    pub options: QueueOptions,
    pub ready: u64,
    pub in_flight: u64,
    pub consumers: u64,
    /// Connections parked in QUEUE.BPOP on it.
    pub waiters: u64,
    pub pushed: u64,
    pub delivered: u64,
    pub acked: u64,
    pub dead_lettered: u64,
}

fn queue_info(name: &[u8], queue: &Queue) -> QueueInfo {
    QueueInfo {
        name: name.to_vec(),
        options: queue.options.clone(),
        ready: queue.ready_len,
        in_flight: queue.in_flight.len() as u64,
        consumers: queue.consumers.len() as u64,
        waiters: queue.waiters.len() as u64,
        pushed: queue.counters.pushed,
        delivered: queue.counters.delivered,
        acked: queue.counters.acked,
        dead_lettered: queue.counters.dead_lettered,
    }
}

/// EXCHANGE.INFO's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeInfo {
    pub name: Vec<u8>,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub bindings: u64,
    pub published: u64,
    pub unroutable: u64,
}

/// A ready message: its id and absolute expiry (0: none). 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    id: u64,
    expiry_ms: u64,
}

/// A delivered, unacknowledged message.
#[derive(Clone, Copy, Debug)]
struct Flight {
    owner: ConnId,
    /// When it returns to the queue (0: never).
    deadline_ms: u64,
    priority: u8,
    deliveries: u32,
    expiry_ms: u64,
    /// Handed to a subscription (counts against its prefetch).
    consumer: bool,
}

struct Consumer {
    conn: ConnId,
    mailbox: Arc<Mailbox>,
    prefetch: u32,
    unacked: u32,
}

struct Waiter {
    conn: ConnId,
    mailbox: Arc<Mailbox>,
    count: usize,
    noack: bool,
}

#[derive(Default, Clone, Copy)]
struct Counters {
    pushed: u64,
    delivered: u64,
    acked: u64,
    dead_lettered: u64,
}

struct Queue {
    qid: u32,
    options: QueueOptions,
    /// The declaring connection of an exclusive queue.
    owner: Option<ConnId>,
    /// Ready messages by priority, each ring in id (push) order.
    ready: [VecDeque<Entry>; PRIORITIES],
    ready_len: u64,
    /// Deliveries so far of ready messages that were delivered before (sparse).
    returned: HashMap<u64, u32>,
    in_flight: HashMap<u64, Flight>,
    /// The in-flight ids in order (the lowest bounds the floor).
    in_flight_ids: BTreeSet<u64>,
    /// Every message of this queue with a lower id is gone (acked or removed): one record
    /// (`codec::floor_key`) stands for all of them, instead of a tombstone each.
    floor: u64,
    /// (deadline, id) of in-flight messages with a visibility deadline.
    deadlines: BTreeSet<(u64, u64)>,
    /// A transient queue's messages, encoded as on disk.
    memory: HashMap<u64, Vec<u8>>,
    consumers: Vec<Consumer>,
    next_consumer: usize,
    waiters: VecDeque<Waiter>,
    counters: Counters,
}

impl Queue {
    fn new(qid: u32, options: QueueOptions, owner: Option<ConnId>) -> Queue {
        Queue {
            qid,
            options,
            owner,
            ready: Default::default(),
            ready_len: 0,
            returned: HashMap::new(),
            in_flight: HashMap::new(),
            in_flight_ids: BTreeSet::new(),
            floor: 0,
            deadlines: BTreeSet::new(),
            memory: HashMap::new(),
            consumers: Vec::new(),
            next_consumer: 0,
            waiters: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    fn on_disk(&self) -> bool {
        self.options.durable && !self.options.exclusive
    }

    /// Inserts a ready entry in id order (at the back, for a new message).
    fn insert_ready(&mut self, priority: u8, entry: Entry) {
        let ring = &mut self.ready[priority as usize];
        let at = match ring.back() {
            Some(last) if last.id > entry.id => ring.partition_point(|e| e.id < entry.id),
            _ => ring.len(),
        };
        ring.insert(at, entry);
        self.ready_len += 1;
    }

    /// Removes a ready entry by id; returns its priority and the entry.
    fn remove_ready(&mut self, id: u64) -> Option<(u8, Entry)> {
        for priority in 0..PRIORITIES {
            let ring = &mut self.ready[priority];
            let at = ring.partition_point(|e| e.id < id);
            if ring.get(at).is_some_and(|e| e.id == id) {
                let entry = ring.remove(at).expect("found");
                self.ready_len -= 1;
                self.returned.remove(&id);
                return Some((priority as u8, entry));
            }
        }
        None
    }

    /// The next ready message (highest priority, then oldest), removed.
    fn pop_ready(&mut self) -> Option<(u8, Entry)> {
        for priority in (0..PRIORITIES).rev() {
            if let Some(entry) = self.ready[priority].pop_front() {
                self.ready_len -= 1;
                return Some((priority as u8, entry));
            }
        }
        None
    }

    /// The lowest id still in the queue once the sorted `removed` ids are gone (`next_id`
    /// when none is left): the floor the queue may move to.
    fn floor_without(&self, removed: &[u64], next_id: u64) -> u64 {
        let kept = |id: &u64| removed.binary_search(id).is_err();
        let ready = self
            .ready
            .iter()
            .filter_map(|ring| ring.iter().map(|e| e.id).find(kept))
            .min();
        let in_flight = self.in_flight_ids.iter().copied().find(kept);
        ready.into_iter().chain(in_flight).min().unwrap_or(next_id)
    }

    /// Starts loading the index slot of the message the next pop takes (a durable queue's:
    /// its record is found through the hash index), so that miss overlaps the work between
    /// two pops instead of stalling the next one.
    fn prefetch_next(&self, store: &Store) {
        if !self.on_disk() {
            return;
        }
        if let Some(id) = self
            .ready
            .iter()
            .rev()
            .find_map(|ring| ring.front().map(|e| e.id))
        {
            store
                .reader()
                .prefetch(NS, &codec::message_key(self.qid, id));
        }
    }

    /// Puts a delivered message in flight (to its owner, with its visibility deadline).
    fn put_in_flight(&mut self, id: u64, flight: Flight) {
        self.in_flight_ids.insert(id);
        self.in_flight.insert(id, flight);
        if flight.deadline_ms != 0 {
            self.deadlines.insert((flight.deadline_ms, id));
        }
    }

    /// When a message delivered now returns to the queue unless acked (0: never).
    fn deadline_from(&self, now_ms: u64) -> u64 {
        match self.options.visibility_ms {
            0 => 0,
            visibility => now_ms.saturating_add(visibility),
        }
    }

    fn remove_flight(&mut self, id: u64) -> Option<Flight> {
        let flight = self.in_flight.remove(&id)?;
        self.in_flight_ids.remove(&id);
        if flight.deadline_ms != 0 {
            self.deadlines.remove(&(flight.deadline_ms, id));
        }
        if flight.consumer {
            if let Some(c) = self.consumers.iter_mut().find(|c| c.conn == flight.owner) {
                c.unacked = c.unacked.saturating_sub(1);
            }
        }
        Some(flight)
    }
}

struct Exchange {
    kind: ExchangeKind,
    durable: bool,
    bindings: BTreeSet<(Vec<u8>, BindingRule)>,
    published: u64,
    unroutable: u64,
}

/// One change to apply after its log writes commit.
enum Change {
    /// A message joins a queue's ready set (new, returned, or dead-lettered into it).
    Ready {
        queue: Vec<u8>,
        priority: u8,
        entry: Entry,
        /// Deliveries so far (0 for a new message).
        deliveries: u32,
        /// A transient queue's encoded message.
        memory: Option<Vec<u8>>,
    },
    /// A message leaves its queue (acked, dropped, dead-lettered, or about to return).
    Gone {
        queue: Vec<u8>,
        id: u64,
    },
    DeadLettered {
        queue: Vec<u8>,
    },
    /// Messages acknowledged (removed by their `Gone`), for the queue's counter.
    Acked {
        queue: Vec<u8>,
        count: u64,
    },
    /// A publish routed to at least one queue, for the exchange's counter.
    Published {
        exchange: Vec<u8>,
    },
}

/// Log writes and the changes they stand for.
#[derive(Default)]
struct Plan {
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    changes: Vec<Change>,
    /// Ids handed out by this plan: `next_id` after it commits.
    next_id: Option<u64>,
    high_water: Option<u64>,
    /// A queue's new floor (written in `writes`), set once they commit.
    floor: Option<(Vec<u8>, u64)>,
    /// Message keys the new floor covers: taken out of the index once it commits.
    forget: Vec<[u8; 13]>,
}

impl Plan {
    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.writes.push((key.to_vec(), Some(value)));
    }

    fn delete(&mut self, key: &[u8]) {
        self.writes.push((key.to_vec(), None));
    }
}

/// Where a queue write runs.
pub enum Scope<'x, 't> {
    /// On its own: it takes the writer lock (beginning its transaction), then the model's,
    /// commits its own entry and hands out what it made ready.
    Own(&'x Store),
    /// Inside EXEC: its writes join the EXEC's transaction (which holds the writer lock), and
    /// the model's lock is the EXEC's until it committed ([`InTransaction`]).
    Exec(&'x mut Txn<'t>, &'x mut InTransaction<'t>),
}

/// The queue model's part of an EXEC (decision 70). The first queue command takes the
/// model's lock (after the writer lock, which the EXEC's transaction holds) and the EXEC
/// keeps it until its entry committed, so no other connection sees the model between a
/// command and the commit. Each command decides against the model as the EXEC's earlier
/// commands left it (QUEUE.LEN after a QUEUE.PUSH counts the push), queues its writes in the
/// transaction and applies its changes at once, recording in a journal how to undo them; a
/// refused command has applied and queued nothing. [`InTransaction::commit`] commits the
/// EXEC's entry and hands the queues' new messages to waiters and subscribers, or, if the
/// commit fails, undoes the journal, so the model again shows what the log holds.
pub struct InTransaction<'q> {
    queues: &'q Queues,
    state: Option<MutexGuard<'q, State>>,
    journal: Journal,
    /// Message keys the EXEC's floors cover: taken out of the index once it committed.
    forget: Vec<[u8; 13]>,
    /// Queues that may have messages to hand out once the EXEC committed.
    touched: BTreeSet<Vec<u8>>,
}

impl<'q> InTransaction<'q> {
    /// Commits the EXEC's transaction as one entry (every model's writes), keeping the writer
    /// lock; then, if queue commands ran, forgets what their floors cover and dispatches the
    /// queues they touched, or undoes their changes if the commit failed. The caller drops
    /// the transaction after this (the model's lock goes first).
    pub fn commit(
        self,
        store: &Store,
        txn: &mut Txn<'q>,
        now_ms: u64,
    ) -> flin_engine::Result<Option<u64>> {
        let InTransaction {
            state,
            mut journal,
            forget,
            touched,
            ..
        } = self;
        let Some(mut state) = state else {
            return store.commit_part(txn, NS, &forget);
        };
        match store.commit_part(txn, NS, &forget) {
            Ok(seq) => {
                for name in touched {
                    dispatch(&mut state, store, txn, &name, now_ms);
                }
                Ok(seq)
            }
            Err(error) => {
                journal.undo(&mut state);
                Err(error)
            }
        }
    }
}

/// How to undo the changes an EXEC applied before its commit: the model's scalars as they
/// were, and a step per change, undone newest first.
#[derive(Default)]
struct Journal {
    /// `next_id` and `high_water` before the EXEC.
    ids: (u64, u64),
    /// Each touched queue's floor and counters before the EXEC.
    queues: HashMap<Vec<u8>, (u64, Counters)>,
    /// Every exchange's `published` and `unroutable` before the EXEC.
    exchanges: Vec<(Vec<u8>, u64, u64)>,
    steps: Vec<Undo>,
}

/// The undoing of one applied change.
enum Undo {
    /// A message joined `queue`'s ready set: take it out, and give back the delivery count
    /// and transient payload it replaced.
    Joined {
        queue: Vec<u8>,
        id: u64,
        returned: Option<u32>,
        memory: Option<Vec<u8>>,
    },
    /// A message left `queue`: put it back where it was, with what it had.
    Left {
        queue: Vec<u8>,
        id: u64,
        place: Place,
        returned: Option<u32>,
        memory: Option<Vec<u8>>,
    },
}

/// Where a message was before it left its queue.
enum Place {
    Ready((u8, Entry)),
    InFlight(Flight),
    Nowhere,
}

impl Journal {
    /// Called when the EXEC takes the model's lock.
    fn begin(&mut self, state: &State) {
        self.ids = (state.next_id, state.high_water);
        self.exchanges = state
            .exchanges
            .iter()
            .map(|(name, ex)| (name.clone(), ex.published, ex.unroutable))
            .collect();
    }

    /// Remembers the scalars of the queues `plan` changes, before their first change.
    fn touch(&mut self, state: &State, plan: &Plan) {
        let names = plan
            .changes
            .iter()
            .map(|change| match change {
                Change::Ready { queue, .. }
                | Change::Gone { queue, .. }
                | Change::DeadLettered { queue }
                | Change::Acked { queue, .. } => Some(queue),
                Change::Published { .. } => None,
            })
            .chain(std::iter::once(plan.floor.as_ref().map(|(queue, _)| queue)))
            .flatten();
        for name in names {
            if let Some(queue) = state.queues.get(name) {
                self.queues
                    .entry(name.clone())
                    .or_insert((queue.floor, queue.counters));
            }
        }
    }

    /// Puts the model back as it was before the EXEC's first queue command.
    fn undo(&mut self, state: &mut State) {
        for step in self.steps.drain(..).rev() {
            match step {
                Undo::Joined {
                    queue,
                    id,
                    returned,
                    memory,
                } => {
                    let Some(q) = state.queues.get_mut(&queue) else {
                        continue;
                    };
                    q.remove_ready(id);
                    restore(q, id, returned, memory);
                }
                Undo::Left {
                    queue,
                    id,
                    place,
                    returned,
                    memory,
                } => {
                    let Some(q) = state.queues.get_mut(&queue) else {
                        continue;
                    };
                    match place {
                        Place::Ready((priority, entry)) => q.insert_ready(priority, entry),
                        Place::InFlight(flight) => {
                            q.put_in_flight(id, flight);
                            if flight.consumer {
                                if let Some(c) =
                                    q.consumers.iter_mut().find(|c| c.conn == flight.owner)
                                {
                                    c.unacked += 1;
                                }
                            }
                        }
                        Place::Nowhere => {}
                    }
                    restore(q, id, returned, memory);
                }
            }
        }
        (state.next_id, state.high_water) = self.ids;
        for (name, (floor, counters)) in self.queues.drain() {
            if let Some(q) = state.queues.get_mut(&name) {
                q.floor = floor;
                q.counters = counters;
            }
        }
        for (name, published, unroutable) in self.exchanges.drain(..) {
            if let Some(ex) = state.exchanges.get_mut(&name) {
                ex.published = published;
                ex.unroutable = unroutable;
            }
        }
    }
}

/// Sets a message's delivery count and transient payload to what they were.
fn restore(queue: &mut Queue, id: u64, returned: Option<u32>, memory: Option<Vec<u8>>) {
    match returned {
        Some(count) => queue.returned.insert(id, count),
        None => queue.returned.remove(&id),
    };
    match memory {
        Some(value) => queue.memory.insert(id, value),
        None => queue.memory.remove(&id),
    };
}

/// Why a message goes to the dead-letter queue (its `x-death-reason` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeathReason {
    Expired,
    Rejected,
    MaxDeliveries,
    MaxLen,
}

impl DeathReason {
    fn text(self) -> &'static [u8] {
        match self {
            DeathReason::Expired => b"expired",
            DeathReason::Rejected => b"rejected",
            DeathReason::MaxDeliveries => b"maxdeliveries",
            DeathReason::MaxLen => b"maxlen",
        }
    }
}

/// The header naming why a message was dead-lettered.
pub const DEATH_REASON_HEADER: &[u8] = b"x-death-reason";
/// The header naming the queue a dead-lettered message came from.
pub const DEATH_QUEUE_HEADER: &[u8] = b"x-death-queue";

#[derive(Default)]
struct State {
    queues: BTreeMap<Vec<u8>, Queue>,
    exchanges: BTreeMap<Vec<u8>, Exchange>,
    next_qid: u32,
    next_id: u64,
    /// Ids at or above this are recorded as never handed out.
    high_water: u64,
}

/// The queue model.
#[derive(Default)]
pub struct Queues {
    state: Mutex<State>,
}

/// A result and the seq of the log entry it wrote (the reply waits for it).
pub type Written<T> = (T, Option<u64>);

impl Queues {
    /// Loads every queue, message, exchange and binding from the engine's Queue namespace
    /// (a walk of that namespace only). Messages below their queue's floor, and messages of
    /// deleted queues, are dead: they are forgotten from the index again (compaction drops
    /// their records); bindings and floors of deleted queues are deleted.
    pub fn load(store: &Store) -> Result<Queues> {
        let mut state = State::default();
        let mut messages: Vec<(u32, u64, u8, u32, u64)> = Vec::new();
        let mut bindings = Vec::new();
        let mut failure = None;
        let mut high_water = 0;
        let mut next_qid = 0;
        let mut floors: HashMap<u32, u64> = HashMap::new();
        store
            .reader()
            .for_each(NS, b"", |record| {
                let key = record.key;
                let outcome = match key.first() {
                    Some(&codec::QUEUE_PREFIX) => {
                        codec::decode_queue(record.value).map(|(qid, options)| {
                            state
                                .queues
                                .insert(key[1..].to_vec(), Queue::new(qid, options, None));
                        })
                    }
                    Some(&codec::MESSAGE_PREFIX) => codec::parse_message_key(key)
                        .zip(message_header(record.value))
                        .map(|((qid, id), (priority, deliveries, expiry))| {
                            messages.push((qid, id, priority, deliveries, expiry))
                        })
                        .ok_or(QueueError::Corrupt("message".into())),
                    Some(&codec::EXCHANGE_PREFIX) => codec::decode_exchange(record.value)
                        .map(|kind| {
                            state.exchanges.insert(
                                key[1..].to_vec(),
                                Exchange {
                                    kind,
                                    durable: true,
                                    bindings: BTreeSet::new(),
                                    published: 0,
                                    unroutable: 0,
                                },
                            );
                        })
                        .ok_or(QueueError::Corrupt("exchange".into())),
                    Some(&codec::FLOOR_PREFIX) => codec::parse_floor_key(key)
                        .zip(u64_value(record.value))
                        .map(|(qid, floor)| {
                            floors.insert(qid, floor);
                        })
                        .ok_or(QueueError::Corrupt("floor".into())),
                    Some(&codec::BINDING_PREFIX) => codec::parse_binding(key)
                        .map(|binding| bindings.push(binding))
                        .ok_or(QueueError::Corrupt("binding".into())),
                    _ if key == codec::HIGH_WATER_KEY => u64_value(record.value)
                        .map(|v| high_water = v)
                        .ok_or(QueueError::Corrupt("id high-water".into())),
                    _ if key == codec::NEXT_QID_KEY => u64_value(record.value)
                        .map(|v| next_qid = v as u32)
                        .ok_or(QueueError::Corrupt("next qid".into())),
                    _ => Err(QueueError::Corrupt(format!("unknown key {:?}", shown(key)))),
                };
                if let Err(error) = outcome {
                    failure.get_or_insert(error);
                }
            })
            .map_err(engine_error)?;
        if let Some(error) = failure {
            return Err(error);
        }
        let by_qid: HashMap<u32, Vec<u8>> = state
            .queues
            .iter()
            .map(|(name, q)| (q.qid, name.clone()))
            .collect();
        let mut stale: Vec<Vec<u8>> = Vec::new();
        for (qid, floor) in floors {
            match by_qid.get(&qid) {
                Some(name) => state.queues.get_mut(name).expect("queue by qid").floor = floor,
                None => stale.push(codec::floor_key(qid).to_vec()),
            }
        }
        messages.sort_unstable_by_key(|m| m.1);
        let mut dead: Vec<[u8; 13]> = Vec::new();
        let mut max_id = 0;
        for (qid, id, priority, deliveries, expiry_ms) in messages {
            max_id = max_id.max(id);
            match by_qid.get(&qid) {
                Some(name) if id < state.queues[name].floor => {
                    dead.push(codec::message_key(qid, id))
                }
                Some(name) => {
                    let queue = state.queues.get_mut(name).expect("queue by qid");
                    let priority = priority.min(PRIORITIES as u8 - 1);
                    queue.ready[priority as usize].push_back(Entry { id, expiry_ms });
                    queue.ready_len += 1;
                    if deliveries > 0 {
                        queue.returned.insert(id, deliveries);
                    }
                }
                None => dead.push(codec::message_key(qid, id)),
            }
        }
        for (exchange, queue, rule) in bindings {
            match state.exchanges.get_mut(&exchange) {
                Some(ex) if state.queues.contains_key(&queue) => {
                    ex.bindings.insert((queue, rule));
                }
                _ => stale.push(codec::binding_key(&exchange, &queue, &rule)),
            }
        }
        let max_qid = state.queues.values().map(|q| q.qid + 1).max().unwrap_or(0);
        state.next_qid = next_qid.max(max_qid).max(1);
        state.next_id = high_water.max(max_id + 1).max(1);
        state.high_water = state.next_id;
        if !dead.is_empty() {
            store.forget(NS, &dead).map_err(engine_error)?;
        }
        // Clean-up of records nothing refers to: only where writes are taken (a cluster's
        // follower leaves it to its leader).
        if store.accepts_writes() {
            for chunk in stale.chunks(DELETE_CHUNK) {
                let mut plan = Plan::default();
                chunk.iter().for_each(|key| plan.delete(key));
                commit(store, &mut store.begin(), &plan)?;
            }
        }
        Ok(Queues {
            state: Mutex::new(state),
        })
    }

    /// Loads the model again from the engine, replacing what it held: for a cluster node
    /// that becomes the leader, whose model was not fed the entries it appended as a
    /// follower. Deliveries in flight and their deadlines are not in the log: their messages
    /// are ready again (redelivered, at least once); consumers and waiters are dropped (none
    /// is registered on a follower, which redirects queue commands); transient queues, kept
    /// in memory only, are gone.
    pub fn reload(&self, store: &Store) -> Result<()> {
        let fresh = Queues::load(store)?;
        let state = fresh.state.into_inner().unwrap_or_else(|p| p.into_inner());
        *self.lock() = state;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The model's part of an EXEC, to pass to the commands it runs ([`Scope::Exec`]).
    pub fn transaction(&self) -> InTransaction<'_> {
        InTransaction {
            queues: self,
            state: None,
            journal: Journal::default(),
            forget: Vec::new(),
            touched: BTreeSet::new(),
        }
    }

    /// Runs a write the one way every queue write runs (the lock order of decision 70): the
    /// engine's writer lock first, then the model's. `decide` reads the model (and the log
    /// through the transaction, which sees the EXEC's earlier writes), plans its writes and
    /// changes, and names the queues that may have something to hand out after them. On its
    /// own, the plan commits as one entry with the writer lock kept, is applied, and those
    /// queues are dispatched; inside EXEC, its writes join the EXEC's transaction and its
    /// changes are applied at once under the model's lock, which the EXEC keeps until it
    /// commits (undone if that commit fails); the queues are dispatched after the commit.
    /// A refusal from `decide` leaves nothing, in the log or in memory.
    fn write<T>(
        &self,
        scope: Scope<'_, '_>,
        now_ms: u64,
        decide: impl FnOnce(&mut State, &Txn<'_>, &mut Plan) -> Result<(T, Vec<Vec<u8>>)>,
    ) -> Result<Written<T>> {
        match scope {
            Scope::Own(store) => {
                let mut txn = store.begin();
                let mut state = self.lock();
                let mut plan = Plan::default();
                let (value, touched) = decide(&mut state, &txn, &mut plan)?;
                let seq = finish(&mut state, store, &mut txn, plan)?;
                for name in touched {
                    dispatch(&mut state, store, &mut txn, &name, now_ms);
                }
                Ok((value, seq))
            }
            Scope::Exec(txn, part) => {
                let InTransaction {
                    queues,
                    state,
                    journal,
                    forget,
                    touched: to_dispatch,
                } = part;
                debug_assert!(std::ptr::eq(*queues, self), "one model per EXEC");
                let state = state.get_or_insert_with(|| {
                    let state = queues.lock();
                    journal.begin(&state);
                    state
                });
                let mut plan = Plan::default();
                let (value, touched) = decide(state, txn, &mut plan)?;
                queue_writes(txn, &plan)?;
                forget.append(&mut plan.forget);
                apply_recording(state, plan, Some(journal));
                to_dispatch.extend(touched);
                Ok((value, None))
            }
        }
    }

    // ----- queues -----

    /// QUEUE.DECLARE: creates the queue, or checks that the existing one has these options.
    pub fn declare(
        &self,
        store: &Store,
        name: &[u8],
        options: QueueOptions,
        conn: ConnId,
    ) -> Result<Written<bool>> {
        let mut txn = store.begin();
        let mut state = self.lock();
        if let Some(queue) = state.queues.get(name) {
            check_owner(name, queue, conn)?;
            let declared = &queue.options;
            let differs = [
                (
                    declared.durable != options.durable,
                    "durability (DURABLE|TRANSIENT)",
                ),
                (declared.exclusive != options.exclusive, "EXCLUSIVE"),
                (declared.max_len != options.max_len, "MAXLEN"),
                (declared.overflow != options.overflow, "OVERFLOW"),
                (declared.ttl_ms != options.ttl_ms, "TTL"),
                (declared.dlq != options.dlq, "DLQ"),
                (
                    declared.max_deliveries != options.max_deliveries,
                    "MAXDELIVERIES",
                ),
                (
                    declared.visibility_ms != options.visibility_ms,
                    "VISIBILITY",
                ),
            ];
            if let Some((_, option)) = differs.into_iter().find(|(d, _)| *d) {
                return Err(QueueError::Mismatch {
                    name: name.to_vec(),
                    option,
                });
            }
            return Ok((false, None));
        }
        let qid = state.next_qid;
        let queue = Queue::new(qid, options, None);
        let mut plan = Plan::default();
        plan.put(codec::NEXT_QID_KEY, (qid as u64 + 1).to_le_bytes().to_vec());
        if queue.on_disk() {
            plan.put(
                &codec::queue_key(name),
                codec::encode_queue(qid, &queue.options),
            );
        }
        let seq = commit(store, &mut txn, &plan)?;
        let owner = queue.options.exclusive.then_some(conn);
        state.next_qid = qid + 1;
        state.queues.insert(name.to_vec(), Queue { owner, ..queue });
        Ok((true, seq))
    }

    /// QUEUE.DELETE: the queue, its messages and its bindings; returns how many messages went.
    pub fn delete(&self, store: &Store, name: &[u8], conn: ConnId) -> Result<Written<u64>> {
        let mut txn = store.begin();
        let mut state = self.lock();
        let queue = state.queue(name, conn)?;
        let count = queue.ready_len + queue.in_flight.len() as u64;
        delete_queue(&mut state, store, &mut txn, name).map(|seq| (count, seq))
    }

    /// QUEUE.PURGE: drops the ready messages (in-flight ones stay); returns how many.
    pub fn purge(&self, scope: Scope<'_, '_>, name: &[u8], conn: ConnId) -> Result<Written<u64>> {
        self.write(scope, 0, |state, _, plan| {
            let queue = state.queue(name, conn)?;
            let mut ids: Vec<u64> = queue.ready.iter().flatten().map(|e| e.id).collect();
            ids.sort_unstable();
            let count = ids.len() as u64;
            // One entry: the floor covers the purged messages below the lowest in flight;
            // the ones above it get tombstones (in one batch, at most BATCH_OPS_MAX).
            plan_removal(state, plan, name, &ids, true);
            if plan.writes.len() > flin_engine::BATCH_OPS_MAX {
                return Err(QueueError::Invalid(format!(
                    "purging {count} messages above the lowest in flight needs more than {} tombstones in one entry; ack or return the in-flight messages first",
                    flin_engine::BATCH_OPS_MAX
                )));
            }
            Ok((count, Vec::new()))
        })
    }

    /// QUEUE.LEN: ready messages (inside EXEC, with the EXEC's earlier changes).
    pub fn len(&self, scope: Scope<'_, '_>, name: &[u8], conn: ConnId) -> Result<u64> {
        self.read(scope, |state| Ok(state.queue(name, conn)?.ready_len))
    }

    /// Runs a read under the model's lock: inside EXEC the lock the EXEC already holds (a
    /// second lock would wait for itself), so the read sees the EXEC's earlier changes.
    fn read<T>(&self, scope: Scope<'_, '_>, read: impl FnOnce(&State) -> Result<T>) -> Result<T> {
        match scope {
            Scope::Own(_) => read(&self.lock()),
            Scope::Exec(_, part) => match &part.state {
                Some(state) => read(state),
                None => read(&self.lock()),
            },
        }
    }

    /// QUEUE.LIST: names matching a glob pattern, in order.
    pub fn list(&self, pattern: Option<&[u8]>) -> Vec<Vec<u8>> {
        self.lock()
            .queues
            .keys()
            .filter(|name| pattern.is_none_or(|p| crate::glob::matches(p, name)))
            .cloned()
            .collect()
    }

    /// QUEUE.INFO (inside EXEC, with the EXEC's earlier changes).
    pub fn info(&self, scope: Scope<'_, '_>, name: &[u8], conn: ConnId) -> Result<QueueInfo> {
        self.read(scope, |state| {
            Ok(queue_info(name, state.queue(name, conn)?))
        })
    }

    /// The figures of the first `max` queues in name order (exclusive ones too: this is the
    /// operator's view, not a connection's), and how many queues there are, under one lock.
    pub fn snapshot(&self, max: usize) -> (Vec<QueueInfo>, usize) {
        let state = self.lock();
        let infos = state
            .queues
            .iter()
            .take(max)
            .map(|(name, queue)| queue_info(name, queue))
            .collect();
        (infos, state.queues.len())
    }

    /// QUEUE.PUSH / QUEUE.MPUSH: the messages join the queue in one log entry; returns their
    /// ids.
    pub fn push(
        &self,
        scope: Scope<'_, '_>,
        name: &[u8],
        messages: Vec<NewMessage>,
        conn: ConnId,
        now_ms: u64,
    ) -> Result<Written<Vec<u64>>> {
        self.write(scope, now_ms, |state, txn, plan| {
            state.queue(name, conn)?;
            let ids = plan_push(state, plan, txn, name, &messages, now_ms)?;
            Ok((ids, vec![name.to_vec()]))
        })
    }

    /// QUEUE.POP: up to `count` messages, in flight to `conn` until acked (with `noack`,
    /// deleted at once).
    pub fn pop(
        &self,
        store: &Store,
        name: &[u8],
        count: usize,
        noack: bool,
        conn: ConnId,
        now_ms: u64,
    ) -> Result<Written<Vec<Message>>> {
        let mut txn = store.begin();
        let mut state = self.lock();
        let queue = state.queue(name, conn)?;
        if !queue.on_disk() {
            // A transient queue's messages are in memory: read under the lock.
            let (messages, mut seq) = take(
                &mut state, store, &mut txn, name, count, conn, false, noack, now_ms,
            )?;
            if noack && !messages.is_empty() {
                let mut ids: Vec<u64> = messages.iter().map(|m| m.id).collect();
                ids.sort_unstable();
                let mut plan = Plan::default();
                plan_removal(&state, &mut plan, name, &ids, false);
                plan.changes.push(Change::Acked {
                    queue: name.to_vec(),
                    count: ids.len() as u64,
                });
                seq = finish(&mut state, store, &mut txn, plan)?.or(seq);
            }
            return Ok((messages, seq));
        }
        // A durable queue's payloads are read from the log outside the model's lock (the
        // index lookups and the copies were the longest part of holding it) and outside the
        // writer lock. The taken ids stay in `in_flight_ids` meanwhile, so no floor passes
        // them; with NOACK they are removed, under both locks again, once read.
        let qid = queue.qid;
        let (entries, mut seq) = take_entries(&mut state, store, &mut txn, name, count, now_ms)?;
        let queue = state.queues.get_mut(name).expect("present");
        let mut taken = Vec::with_capacity(entries.len());
        for (priority, entry) in entries {
            let deliveries = queue.returned.remove(&entry.id).unwrap_or(0) + 1;
            queue.counters.delivered += 1;
            if noack {
                // Not in flight to anyone, but no floor may pass it until it is removed.
                queue.in_flight_ids.insert(entry.id);
            } else {
                let flight = Flight {
                    owner: conn,
                    deadline_ms: queue.deadline_from(now_ms),
                    priority,
                    deliveries,
                    expiry_ms: entry.expiry_ms,
                    consumer: false,
                };
                queue.put_in_flight(entry.id, flight);
            }
            taken.push((priority, entry.id, deliveries));
        }
        drop(state);
        drop(txn);
        let reader = store.reader();
        let mut messages = Vec::with_capacity(taken.len());
        let mut failure = None;
        for &(priority, id, deliveries) in &taken {
            let key = codec::message_key(qid, id);
            match reader.get_with(NS, &key, |found| codec::decode_message(found.value)) {
                Ok(Some(Ok(stored))) => messages.push(Message {
                    id,
                    payload: stored.payload,
                    priority,
                    deliveries,
                    headers: stored.headers,
                }),
                // Gone meanwhile (its queue deleted): nothing to deliver.
                Ok(None) => {}
                Ok(Some(Err(error))) => {
                    failure.get_or_insert(error);
                }
                Err(error) => {
                    failure.get_or_insert(engine_error(error));
                }
            }
        }
        if noack && !taken.is_empty() {
            let mut txn = store.begin();
            let mut state = self.lock();
            if let Some(queue) = state.queues.get_mut(name).filter(|q| q.qid == qid) {
                let mut ids: Vec<u64> = taken.iter().map(|t| t.1).collect();
                ids.sort_unstable();
                for id in &ids {
                    queue.in_flight_ids.remove(id);
                }
                let mut plan = Plan::default();
                plan_removal(&state, &mut plan, name, &ids, false);
                plan.changes.push(Change::Acked {
                    queue: name.to_vec(),
                    count: ids.len() as u64,
                });
                seq = finish(&mut state, store, &mut txn, plan)?.or(seq);
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        Ok((messages, seq))
    }

    /// QUEUE.BPOP's wait: registers `conn` as the queue's newest waiter. What arrives is
    /// posted to `mailbox`. Returns the messages at once if some are ready.
    #[allow(clippy::too_many_arguments)]
    pub fn pop_or_wait(
        &self,
        store: &Store,
        name: &[u8],
        count: usize,
        noack: bool,
        conn: ConnId,
        mailbox: &Arc<Mailbox>,
        now_ms: u64,
    ) -> Result<Option<Written<Vec<Message>>>> {
        loop {
            let mut txn = store.begin();
            let mut state = self.lock();
            let queue = state.queue(name, conn)?;
            // Older waiters come first: take only when nobody waits.
            if queue.waiters.is_empty() && queue.ready_len > 0 {
                drop(state);
                drop(txn);
                // Another consumer may take what was ready before this pop locks again (the
                // pop reads payloads outside the lock): an empty take waits, it never
                // answers an empty array.
                let (messages, seq) = self.pop(store, name, count, noack, conn, now_ms)?;
                if messages.is_empty() {
                    continue;
                }
                return Ok(Some((messages, seq)));
            }
            let queue = state.queue_mut(name, conn)?;
            queue.waiters.push_back(Waiter {
                conn,
                mailbox: mailbox.clone(),
                count,
                noack,
            });
            dispatch(&mut state, store, &mut txn, name, now_ms);
            return Ok(None);
        }
    }

    /// A parked QUEUE.BPOP gave up (timeout): `conn` no longer waits on `name`.
    pub fn stop_waiting(&self, name: &[u8], conn: ConnId) {
        if let Some(queue) = self.lock().queues.get_mut(name) {
            queue.waiters.retain(|w| w.conn != conn);
        }
    }

    /// QUEUE.ACK: every id must be in flight to `conn`, or nothing is acked.
    pub fn ack(
        &self,
        scope: Scope<'_, '_>,
        name: &[u8],
        ids: &[u64],
        conn: ConnId,
        now_ms: u64,
    ) -> Result<Written<u64>> {
        self.write(scope, now_ms, |state, _, plan| {
            let queue = state.queue(name, conn)?;
            let ids = owned_ids(queue, ids, conn)?;
            plan_removal(state, plan, name, &ids, true);
            plan.changes.push(Change::Acked {
                queue: name.to_vec(),
                count: ids.len() as u64,
            });
            Ok((ids.len() as u64, vec![name.to_vec()]))
        })
    }

    /// QUEUE.NACK: returns the messages to the queue (`requeue`), or dead-letters them.
    pub fn nack(
        &self,
        scope: Scope<'_, '_>,
        name: &[u8],
        ids: &[u64],
        requeue: bool,
        conn: ConnId,
        now_ms: u64,
    ) -> Result<Written<u64>> {
        self.write(scope, now_ms, |state, txn, plan| {
            let queue = state.queue(name, conn)?;
            let ids = owned_ids(queue, ids, conn)?;
            let flights: Vec<(u64, Flight)> =
                ids.iter().map(|id| (*id, queue.in_flight[id])).collect();
            for (id, flight) in flights {
                let reason = (!requeue).then_some(DeathReason::Rejected);
                plan_return(state, plan, txn, name, id, flight, reason, now_ms)?;
            }
            Ok((ids.len() as u64, vec![name.to_vec()]))
        })
    }

    /// QUEUE.SUBSCRIBE: `conn` consumes pushed messages, at most `prefetch` unacked (0: no
    /// limit). Subscribing again changes the prefetch.
    pub fn subscribe(
        &self,
        store: &Store,
        name: &[u8],
        prefetch: u32,
        conn: ConnId,
        mailbox: &Arc<Mailbox>,
        now_ms: u64,
    ) -> Result<()> {
        let mut txn = store.begin();
        let mut state = self.lock();
        let queue = state.queue_mut(name, conn)?;
        match queue.consumers.iter_mut().find(|c| c.conn == conn) {
            Some(consumer) => consumer.prefetch = prefetch,
            None => queue.consumers.push(Consumer {
                conn,
                mailbox: mailbox.clone(),
                prefetch,
                unacked: 0,
            }),
        }
        dispatch(&mut state, store, &mut txn, name, now_ms);
        Ok(())
    }

    /// QUEUE.UNSUBSCRIBE: `conn` stops consuming `name` (every queue: `None`); what it holds
    /// stays in flight until acked or until it closes. Returns the queues it left.
    pub fn unsubscribe(&self, name: Option<&[u8]>, conn: ConnId) -> Result<u64> {
        let mut state = self.lock();
        if let Some(name) = name {
            state.queue(name, conn)?;
        }
        let mut left = 0;
        for (queue_name, queue) in state.queues.iter_mut() {
            if name.is_some_and(|n| n != queue_name.as_slice()) {
                continue;
            }
            let before = queue.consumers.len();
            queue.consumers.retain(|c| c.conn != conn);
            if queue.consumers.len() < before {
                left += 1;
                // Its in-flight messages no longer count against a prefetch.
                queue
                    .in_flight
                    .values_mut()
                    .filter(|f| f.owner == conn)
                    .for_each(|f| f.consumer = false);
            }
        }
        Ok(left)
    }

    /// A connection closed: its waits and subscriptions end, what it held returns to its
    /// queues (delivery count kept), and the exclusive queues it declared are deleted.
    pub fn connection_closed(&self, store: &Store, conn: ConnId, now_ms: u64) -> Result<()> {
        let mut txn = store.begin();
        let mut state = self.lock();
        let mut exclusive = Vec::new();
        let mut held = Vec::new();
        for (name, queue) in state.queues.iter_mut() {
            queue.waiters.retain(|w| w.conn != conn);
            queue.consumers.retain(|c| c.conn != conn);
            if queue.owner == Some(conn) {
                exclusive.push(name.clone());
                continue;
            }
            for (id, flight) in &queue.in_flight {
                if flight.owner == conn {
                    held.push((name.clone(), *id, *flight));
                }
            }
        }
        for name in exclusive {
            delete_queue(&mut state, store, &mut txn, &name)?;
        }
        let mut plan = Plan::default();
        let mut touched = BTreeSet::new();
        for (name, id, flight) in held {
            plan_return(&mut state, &mut plan, &txn, &name, id, flight, None, now_ms)?;
            touched.insert(name);
        }
        finish(&mut state, store, &mut txn, plan)?;
        for name in touched {
            dispatch(&mut state, store, &mut txn, &name, now_ms);
        }
        Ok(())
    }

    /// The clock's work, called every few tens of ms (and by tests with an injected time):
    /// in-flight messages past their visibility deadline return, expired messages at the
    /// head of their queue are dead-lettered or dropped. Returns how many messages moved.
    pub fn tick(&self, store: &Store, now_ms: u64) -> Result<usize> {
        let mut txn = store.begin();
        let mut state = self.lock();
        let mut plan = Plan::default();
        let mut moved = 0;
        let names: Vec<Vec<u8>> = state.queues.keys().cloned().collect();
        let mut touched = Vec::new();
        for name in names {
            let queue = state.queues.get_mut(&name).expect("listed");
            let due: Vec<u64> = queue
                .deadlines
                .range(..=(now_ms, u64::MAX))
                .map(|(_, id)| *id)
                .collect();
            let mut expired = Vec::new();
            for priority in 0..PRIORITIES {
                while let Some(entry) = queue.ready[priority].front().copied() {
                    // Bounded per tick, so one tick never holds the model for long; the rest
                    // waits for the next tick (50 ms later).
                    if !is_expired(entry, now_ms) || moved + expired.len() >= TICK_MOVES_MAX {
                        break;
                    }
                    queue.ready[priority].pop_front();
                    queue.ready_len -= 1;
                    expired.push((priority as u8, entry));
                }
            }
            if due.is_empty() && expired.is_empty() {
                continue;
            }
            moved += due.len() + expired.len();
            for id in due {
                let flight = queue_of(&state, &name).in_flight[&id];
                plan_return(&mut state, &mut plan, &txn, &name, id, flight, None, now_ms)?;
            }
            for (priority, entry) in expired {
                plan_dead_letter(
                    &mut state,
                    &mut plan,
                    &txn,
                    &name,
                    entry.id,
                    priority,
                    DeathReason::Expired,
                )?;
            }
            touched.push(name);
        }
        finish(&mut state, store, &mut txn, plan)?;
        // Queues with ready messages and someone to take them: what a bounded dispatch left.
        let waiting: Vec<Vec<u8>> = state
            .queues
            .iter()
            .filter(|(_, q)| q.ready_len > 0 && (!q.consumers.is_empty() || !q.waiters.is_empty()))
            .map(|(name, _)| name.clone())
            .collect();
        for name in touched.into_iter().chain(waiting) {
            dispatch(&mut state, store, &mut txn, &name, now_ms);
        }
        Ok(moved)
    }

    // ----- exchanges -----

    /// EXCHANGE.DECLARE.
    pub fn exchange_declare(
        &self,
        store: &Store,
        name: &[u8],
        kind: ExchangeKind,
        durable: bool,
    ) -> Result<Written<bool>> {
        let mut txn = store.begin();
        let mut state = self.lock();
        if let Some(exchange) = state.exchanges.get(name) {
            if exchange.kind != kind {
                return Err(QueueError::Mismatch {
                    name: name.to_vec(),
                    option: "type",
                });
            }
            if exchange.durable != durable {
                return Err(QueueError::Mismatch {
                    name: name.to_vec(),
                    option: "durability (DURABLE|TRANSIENT)",
                });
            }
            return Ok((false, None));
        }
        let mut plan = Plan::default();
        if durable {
            plan.put(&codec::exchange_key(name), codec::encode_exchange(kind));
        }
        let seq = commit(store, &mut txn, &plan)?;
        state.exchanges.insert(
            name.to_vec(),
            Exchange {
                kind,
                durable,
                bindings: BTreeSet::new(),
                published: 0,
                unroutable: 0,
            },
        );
        Ok((true, seq))
    }

    /// EXCHANGE.DELETE: the exchange and its bindings.
    pub fn exchange_delete(&self, store: &Store, name: &[u8]) -> Result<Written<()>> {
        let mut txn = store.begin();
        let mut state = self.lock();
        let exchange = state
            .exchanges
            .get(name)
            .ok_or_else(|| QueueError::NoExchange(name.to_vec()))?;
        let mut plan = Plan::default();
        if exchange.durable {
            plan.delete(&codec::exchange_key(name));
            for (queue, rule) in &exchange.bindings {
                if binding_on_disk(&state, exchange, queue) {
                    plan.delete(&codec::binding_key(name, queue, rule));
                }
            }
        }
        let seq = commit(store, &mut txn, &plan)?;
        state.exchanges.remove(name);
        Ok(((), seq))
    }

    /// EXCHANGE.BIND (idempotent).
    pub fn bind(
        &self,
        store: &Store,
        exchange: &[u8],
        queue: &[u8],
        rule: BindingRule,
        conn: ConnId,
    ) -> Result<Written<()>> {
        let mut txn = store.begin();
        let mut state = self.lock();
        state.queue(queue, conn)?;
        let ex = state
            .exchanges
            .get(exchange)
            .ok_or_else(|| QueueError::NoExchange(exchange.to_vec()))?;
        match (&rule, ex.kind) {
            (BindingRule::Headers { .. }, ExchangeKind::Headers) => {}
            (BindingRule::Headers { .. }, _) => {
                return Err(QueueError::BindingKind(
                    "HEADERS bindings belong to HEADERS exchanges",
                ))
            }
            (BindingRule::Key(_), ExchangeKind::Headers) => {
                return Err(QueueError::BindingKind(
                    "a HEADERS exchange binds with HEADERS ALL|ANY k v ...",
                ))
            }
            (BindingRule::Key(_), _) => {}
        }
        let binding = (queue.to_vec(), rule);
        if ex.bindings.contains(&binding) {
            return Ok(((), None));
        }
        let mut plan = Plan::default();
        if binding_on_disk(&state, ex, queue) {
            plan.put(&codec::binding_key(exchange, queue, &binding.1), Vec::new());
        }
        let seq = commit(store, &mut txn, &plan)?;
        state
            .exchanges
            .get_mut(exchange)
            .expect("checked")
            .bindings
            .insert(binding);
        Ok(((), seq))
    }

    /// EXCHANGE.UNBIND: whether the binding existed.
    pub fn unbind(
        &self,
        store: &Store,
        exchange: &[u8],
        queue: &[u8],
        rule: BindingRule,
    ) -> Result<Written<bool>> {
        let mut txn = store.begin();
        let mut state = self.lock();
        let ex = state
            .exchanges
            .get(exchange)
            .ok_or_else(|| QueueError::NoExchange(exchange.to_vec()))?;
        let binding = (queue.to_vec(), rule);
        if !ex.bindings.contains(&binding) {
            return Ok((false, None));
        }
        let mut plan = Plan::default();
        if binding_on_disk(&state, ex, queue) {
            plan.delete(&codec::binding_key(exchange, queue, &binding.1));
        }
        let seq = commit(store, &mut txn, &plan)?;
        state
            .exchanges
            .get_mut(exchange)
            .expect("checked")
            .bindings
            .remove(&binding);
        Ok((true, seq))
    }

    /// EXCHANGE.LIST.
    pub fn exchanges(&self) -> Vec<Vec<u8>> {
        self.lock().exchanges.keys().cloned().collect()
    }

    /// EXCHANGE.BINDINGS: (queue, rule) pairs in order.
    pub fn bindings(&self, exchange: &[u8]) -> Result<Vec<(Vec<u8>, BindingRule)>> {
        let state = self.lock();
        let ex = state
            .exchanges
            .get(exchange)
            .ok_or_else(|| QueueError::NoExchange(exchange.to_vec()))?;
        Ok(ex.bindings.iter().cloned().collect())
    }

    /// EXCHANGE.INFO.
    pub fn exchange_info(&self, exchange: &[u8]) -> Result<ExchangeInfo> {
        let state = self.lock();
        let ex = state
            .exchanges
            .get(exchange)
            .ok_or_else(|| QueueError::NoExchange(exchange.to_vec()))?;
        Ok(ExchangeInfo {
            name: exchange.to_vec(),
            kind: ex.kind,
            durable: ex.durable,
            bindings: ex.bindings.len() as u64,
            published: ex.published,
            unroutable: ex.unroutable,
        })
    }

    /// EXCHANGE.PUBLISH: the message joins every matching queue, in one log entry; returns
    /// how many queues got it. A queue at MAXLEN with OVERFLOW REJECT refuses the whole
    /// publish (RabbitMQ nacks the publish when any queue rejects it).
    pub fn publish(
        &self,
        scope: Scope<'_, '_>,
        exchange: &[u8],
        routing_key: &[u8],
        message: NewMessage,
        mandatory: bool,
        now_ms: u64,
    ) -> Result<Written<u64>> {
        self.write(scope, now_ms, |state, txn, plan| {
            let messages = [message];
            if exchange.is_empty() {
                // RabbitMQ's default exchange: the routing key names the queue.
                if !state.queues.contains_key(routing_key) {
                    if mandatory {
                        return Err(QueueError::Unroutable(Vec::new()));
                    }
                    return Ok((0, Vec::new()));
                }
                plan_push(state, plan, txn, routing_key, &messages, now_ms)?;
                return Ok((1, vec![routing_key.to_vec()]));
            }
            let ex = state
                .exchanges
                .get(exchange)
                .ok_or_else(|| QueueError::NoExchange(exchange.to_vec()))?;
            let headers = &messages[0].headers;
            let mut targets: Vec<Vec<u8>> = ex
                .bindings
                .iter()
                .filter(|(_, rule)| match (ex.kind, rule) {
                    (ExchangeKind::Fanout, _) => true,
                    (ExchangeKind::Direct, BindingRule::Key(key)) => key == routing_key,
                    (ExchangeKind::Topic, BindingRule::Key(key)) => {
                        routing::topic_matches(key, routing_key)
                    }
                    (ExchangeKind::Headers, BindingRule::Headers { all, pairs }) => {
                        routing::headers_match(BindingRule::headers_mode(*all), pairs, headers)
                    }
                    _ => false,
                })
                .map(|(queue, _)| queue.clone())
                .collect();
            targets.dedup();
            if targets.is_empty() {
                let ex = state.exchanges.get_mut(exchange).expect("checked");
                ex.unroutable += 1;
                if mandatory {
                    return Err(QueueError::Unroutable(exchange.to_vec()));
                }
                return Ok((0, Vec::new()));
            }
            for queue in &targets {
                plan_push(state, plan, txn, queue, &messages, now_ms)?;
            }
            plan.changes.push(Change::Published {
                exchange: exchange.to_vec(),
            });
            Ok((targets.len() as u64, targets))
        })
    }

    /// Bytes the model holds for ready messages' entries (capacity of the priority rings),
    /// for the memory figures.
    pub fn ready_entry_bytes(&self) -> usize {
        self.lock()
            .queues
            .values()
            .flat_map(|q| q.ready.iter())
            .map(|ring| ring.capacity() * std::mem::size_of::<Entry>())
            .sum()
    }
}

impl State {
    fn queue(&self, name: &[u8], conn: ConnId) -> Result<&Queue> {
        let queue = self
            .queues
            .get(name)
            .ok_or_else(|| QueueError::NoQueue(name.to_vec()))?;
        check_owner(name, queue, conn)?;
        Ok(queue)
    }

    fn queue_mut(&mut self, name: &[u8], conn: ConnId) -> Result<&mut Queue> {
        let queue = self
            .queues
            .get_mut(name)
            .ok_or_else(|| QueueError::NoQueue(name.to_vec()))?;
        check_owner(name, queue, conn)?;
        Ok(queue)
    }

    /// Reserves `n` ids for `plan`; writes a new high-water mark when they pass the old one.
    fn reserve_ids(&self, plan: &mut Plan, n: u64) -> u64 {
        let first = plan.next_id.unwrap_or(self.next_id);
        let next = first + n;
        plan.next_id = Some(next);
        let high_water = plan.high_water.unwrap_or(self.high_water);
        if next > high_water {
            let new = next + ID_BLOCK;
            plan.writes
                .retain(|(key, _)| key.as_slice() != codec::HIGH_WATER_KEY);
            plan.put(codec::HIGH_WATER_KEY, new.to_le_bytes().to_vec());
            plan.high_water = Some(new);
        }
        first
    }
}

fn queue_of<'s>(state: &'s State, name: &[u8]) -> &'s Queue {
    state.queues.get(name).expect("queue present")
}

fn check_owner(name: &[u8], queue: &Queue, conn: ConnId) -> Result<()> {
    match queue.owner {
        Some(owner) if owner != conn => Err(QueueError::Locked(name.to_vec())),
        _ => Ok(()),
    }
}

/// A binding is on disk when its exchange is durable and its queue is on disk.
fn binding_on_disk(state: &State, exchange: &Exchange, queue: &[u8]) -> bool {
    exchange.durable && state.queues.get(queue).is_some_and(Queue::on_disk)
}

fn is_expired(entry: Entry, now_ms: u64) -> bool {
    entry.expiry_ms != 0 && entry.expiry_ms <= now_ms
}

fn engine_error(error: flin_engine::Error) -> QueueError {
    QueueError::Engine(error.to_string())
}

fn u64_value(value: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(value.try_into().ok()?))
}

/// Priority, deliveries and expiry of a stored message, without decoding the rest.
fn message_header(value: &[u8]) -> Option<(u8, u32, u64)> {
    if value.len() < 18 || value[0] != 1 {
        return None;
    }
    Some((
        value[1],
        u32::from_le_bytes(value[2..6].try_into().ok()?),
        u64::from_le_bytes(value[6..14].try_into().ok()?),
    ))
}

/// A plan's write as an engine op.
fn op_of((key, value): &(Vec<u8>, Option<Vec<u8>>)) -> Op<'_> {
    match value {
        Some(value) => Op {
            kind: RecordKind::Put,
            namespace: NS,
            key,
            value,
            expiry_ms: 0,
        },
        None => Op {
            kind: RecordKind::Delete,
            namespace: NS,
            key,
            value: &[],
            expiry_ms: 0,
        },
    }
}

/// Queues a plan's writes in `txn`, all or none: every op is checked first (its sizes, and
/// the transaction's op limit), so a refusal leaves the transaction as it was (inside EXEC
/// it holds the other commands' writes).
fn queue_writes(txn: &mut Txn<'_>, plan: &Plan) -> Result<()> {
    if txn.pending() + plan.writes.len() > flin_engine::BATCH_OPS_MAX {
        return Err(QueueError::Invalid(format!(
            "the transaction would hold more than {} writes",
            flin_engine::BATCH_OPS_MAX
        )));
    }
    for write in &plan.writes {
        op_of(write).validate().map_err(engine_error)?;
    }
    for write in &plan.writes {
        txn.push(op_of(write)).map_err(engine_error)?;
    }
    Ok(())
}

/// Commits a plan's writes as one log entry (none: no entry), keeping the writer lock.
fn commit(store: &Store, txn: &mut Txn<'_>, plan: &Plan) -> Result<Option<u64>> {
    commit_forgetting(store, txn, plan, &[])
}

/// Commits a plan's writes, then, under the same hold of the writer lock (which it keeps),
/// takes `forget` out of the index (a replicated engine forgets nothing: the records then
/// stay indexed until the next load forgets them; the floor is written either way).
fn commit_forgetting(
    store: &Store,
    txn: &mut Txn<'_>,
    plan: &Plan,
    forget: &[[u8; 13]],
) -> Result<Option<u64>> {
    queue_writes(txn, plan)?;
    // Through the store: in a cluster only the leader commits, and the reply's gate is a
    // token (`Store::commit_part`).
    store.commit_part(txn, NS, forget).map_err(engine_error)
}

/// Applies a committed plan's changes.
fn apply(state: &mut State, plan: Plan) {
    apply_recording(state, plan, None);
}

/// Applies a plan's changes; with a journal (inside EXEC, before the commit), records how to
/// undo each.
fn apply_recording(state: &mut State, plan: Plan, mut journal: Option<&mut Journal>) {
    if let Some(journal) = journal.as_deref_mut() {
        journal.touch(state, &plan);
    }
    if let Some(next) = plan.next_id {
        state.next_id = next;
    }
    if let Some(high_water) = plan.high_water {
        state.high_water = high_water;
    }
    if let Some((queue, floor)) = plan.floor {
        if let Some(q) = state.queues.get_mut(&queue) {
            q.floor = floor;
        }
    }
    for change in plan.changes {
        match change {
            Change::Ready {
                queue,
                priority,
                entry,
                deliveries,
                memory,
            } => {
                let Some(q) = state.queues.get_mut(&queue) else {
                    continue;
                };
                if let Some(journal) = journal.as_deref_mut() {
                    journal.steps.push(Undo::Joined {
                        queue: queue.clone(),
                        id: entry.id,
                        returned: q.returned.get(&entry.id).copied(),
                        memory: q.memory.get(&entry.id).cloned(),
                    });
                }
                q.insert_ready(priority, entry);
                if deliveries > 0 {
                    q.returned.insert(entry.id, deliveries);
                } else {
                    q.counters.pushed += 1;
                }
                if let Some(memory) = memory {
                    q.memory.insert(entry.id, memory);
                }
            }
            Change::Gone { queue, id } => {
                let Some(q) = state.queues.get_mut(&queue) else {
                    continue;
                };
                let returned = q.returned.remove(&id);
                let memory = q.memory.remove(&id);
                let place = match q.remove_flight(id) {
                    Some(flight) => Place::InFlight(flight),
                    None => match q.remove_ready(id) {
                        Some(ready) => Place::Ready(ready),
                        None => Place::Nowhere,
                    },
                };
                if let Some(journal) = journal.as_deref_mut() {
                    journal.steps.push(Undo::Left {
                        queue,
                        id,
                        place,
                        returned,
                        memory,
                    });
                }
            }
            Change::DeadLettered { queue } => {
                if let Some(q) = state.queues.get_mut(&queue) {
                    q.counters.dead_lettered += 1;
                }
            }
            Change::Acked { queue, count } => {
                if let Some(q) = state.queues.get_mut(&queue) {
                    q.counters.acked += count;
                }
            }
            Change::Published { exchange } => {
                if let Some(ex) = state.exchanges.get_mut(&exchange) {
                    ex.published += 1;
                }
            }
        }
    }
}

/// Plans new messages into `name` (MAXLEN applied); returns their ids.
fn plan_push(
    state: &mut State,
    plan: &mut Plan,
    txn: &Txn<'_>,
    name: &[u8],
    messages: &[NewMessage],
    now_ms: u64,
) -> Result<Vec<u64>> {
    let queue = queue_of(state, name);
    let (qid, on_disk, options) = (queue.qid, queue.on_disk(), queue.options.clone());
    let mut drop_heads = 0;
    if options.max_len > 0 {
        let pending = plan
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Ready { queue, .. } if queue == name))
            .count() as u64;
        let after = queue.ready_len + pending + messages.len() as u64;
        if after > options.max_len {
            match options.overflow {
                Overflow::Reject => return Err(QueueError::Full(name.to_vec())),
                Overflow::DropHead => {
                    drop_heads = (after - options.max_len).min(queue.ready_len) as usize
                }
            }
        }
    }
    if drop_heads > 0 {
        // The messages next in line make room, as RabbitMQ's drop-head does.
        let mut order: Vec<(u8, Entry)> = Vec::new();
        for priority in (0..PRIORITIES).rev() {
            for entry in &queue.ready[priority] {
                if order.len() == drop_heads {
                    break;
                }
                order.push((priority as u8, *entry));
            }
        }
        for (priority, entry) in order {
            plan_dead_letter(
                state,
                plan,
                txn,
                name,
                entry.id,
                priority,
                DeathReason::MaxLen,
            )?;
        }
    }
    let first = state.reserve_ids(plan, messages.len() as u64);
    let mut ids = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let id = first + i as u64;
        let ttl = match (message.ttl_ms, options.ttl_ms) {
            (0, queue) => queue,
            (own, 0) => own,
            (own, queue) => own.min(queue),
        };
        let expiry_ms = if ttl > 0 {
            now_ms.saturating_add(ttl)
        } else {
            0
        };
        let value = codec::encode_message(&StoredMessage {
            priority: message.priority,
            deliveries: 0,
            expiry_ms,
            headers: message.headers.clone(),
            payload: message.payload.clone(),
        });
        let memory = if on_disk {
            plan.put(&codec::message_key(qid, id), value);
            None
        } else {
            Some(value)
        };
        plan.changes.push(Change::Ready {
            queue: name.to_vec(),
            priority: message.priority,
            entry: Entry { id, expiry_ms },
            deliveries: 0,
            memory,
        });
        ids.push(id);
    }
    Ok(ids)
}

/// A stored message of `name` (from the log, through the transaction, which sees an EXEC's
/// earlier writes, or, for a transient queue, memory).
fn read_message(
    state: &State,
    txn: &Txn<'_>,
    name: &[u8],
    id: u64,
) -> Result<Option<StoredMessage>> {
    let queue = queue_of(state, name);
    if let Some(value) = queue.memory.get(&id) {
        return codec::decode_message(value).map(Some);
    }
    // (No plan rewrites a message it also dead-letters: a message is either in flight, and
    // returns, or ready, and expires; so the log holds what this plan would read.)
    let key = codec::message_key(queue.qid, id);
    txn.get(NS, &key)
        .map_err(engine_error)?
        .map(|found| codec::decode_message(&found.value))
        .transpose()
}

/// Plans the removal of the sorted messages `ids` from `name`: in a queue on disk, the ones
/// below the queue's new floor (the lowest id left) are covered by one floor record and
/// forgotten from the index once it commits; the others get a tombstone each.
fn plan_removal(state: &State, plan: &mut Plan, name: &[u8], ids: &[u64], in_model: bool) {
    let queue = queue_of(state, name);
    if in_model {
        for &id in ids {
            plan.changes.push(Change::Gone {
                queue: name.to_vec(),
                id,
            });
        }
    }
    if !queue.on_disk() {
        return;
    }
    let floor = queue.floor_without(ids, plan.next_id.unwrap_or(state.next_id));
    for &id in ids {
        let key = codec::message_key(queue.qid, id);
        if id < floor {
            plan.forget.push(key);
        } else {
            plan.delete(&key);
        }
    }
    if floor > queue.floor {
        plan.put(&codec::floor_key(queue.qid), floor.to_le_bytes().to_vec());
        plan.floor = Some((name.to_vec(), floor));
    }
}

/// Commits a plan (keeping the writer lock), applies it, and forgets what its floor covers.
fn finish(
    state: &mut State,
    store: &Store,
    txn: &mut Txn<'_>,
    mut plan: Plan,
) -> Result<Option<u64>> {
    let forget = std::mem::take(&mut plan.forget);
    let seq = commit_forgetting(store, txn, &plan, &forget)?;
    apply(state, plan);
    Ok(seq)
}

/// Plans a message of `name` into its dead-letter queue (or away, when it has none): the
/// copy gets `x-death-reason` and `x-death-queue` headers, no expiry, a new id.
#[allow(clippy::too_many_arguments)]
fn plan_dead_letter(
    state: &mut State,
    plan: &mut Plan,
    txn: &Txn<'_>,
    name: &[u8],
    id: u64,
    priority: u8,
    reason: DeathReason,
) -> Result<()> {
    let queue = queue_of(state, name);
    let (qid, on_disk) = (queue.qid, queue.on_disk());
    let dlq = queue
        .options
        .dlq
        .clone()
        .filter(|dlq| state.queues.contains_key(dlq));
    if let Some(dlq) = dlq {
        let Some(stored) = read_message(state, txn, name, id)? else {
            return plan_gone(plan, name, qid, id, on_disk);
        };
        let mut headers = stored.headers;
        headers.retain(|(k, _)| k != DEATH_REASON_HEADER && k != DEATH_QUEUE_HEADER);
        headers.push((DEATH_REASON_HEADER.to_vec(), reason.text().to_vec()));
        headers.push((DEATH_QUEUE_HEADER.to_vec(), name.to_vec()));
        let new_id = state.reserve_ids(plan, 1);
        let target = queue_of(state, &dlq);
        let value = codec::encode_message(&StoredMessage {
            priority,
            deliveries: 0,
            expiry_ms: 0,
            headers,
            payload: stored.payload,
        });
        let memory = if target.on_disk() {
            plan.put(&codec::message_key(target.qid, new_id), value);
            None
        } else {
            Some(value)
        };
        plan.changes.push(Change::Ready {
            queue: dlq,
            priority,
            entry: Entry {
                id: new_id,
                expiry_ms: 0,
            },
            deliveries: 0,
            memory,
        });
    }
    plan.changes.push(Change::DeadLettered {
        queue: name.to_vec(),
    });
    plan_gone(plan, name, qid, id, on_disk)
}

fn plan_gone(plan: &mut Plan, name: &[u8], qid: u32, id: u64, on_disk: bool) -> Result<()> {
    if on_disk {
        plan.delete(&codec::message_key(qid, id));
    }
    plan.changes.push(Change::Gone {
        queue: name.to_vec(),
        id,
    });
    Ok(())
}

/// Plans an in-flight message's return: dead-lettered with `reason`, or when its deliveries
/// reached MAXDELIVERIES or its TTL passed; otherwise back to ready with its delivery count
/// written.
#[allow(clippy::too_many_arguments)]
fn plan_return(
    state: &mut State,
    plan: &mut Plan,
    txn: &Txn<'_>,
    name: &[u8],
    id: u64,
    flight: Flight,
    reason: Option<DeathReason>,
    now_ms: u64,
) -> Result<()> {
    let queue = queue_of(state, name);
    let max = queue.options.max_deliveries;
    let reason = reason
        .or_else(|| (max > 0 && flight.deliveries >= max).then_some(DeathReason::MaxDeliveries))
        .or_else(|| {
            is_expired(
                Entry {
                    id,
                    expiry_ms: flight.expiry_ms,
                },
                now_ms,
            )
            .then_some(DeathReason::Expired)
        });
    if let Some(reason) = reason {
        return plan_dead_letter(state, plan, txn, name, id, flight.priority, reason);
    }
    let (qid, on_disk) = (queue.qid, queue.on_disk());
    let mut memory = None;
    if on_disk {
        let key = codec::message_key(qid, id);
        if let Some(found) = txn.get(NS, &key).map_err(engine_error)? {
            let mut value = found.value;
            if value.len() >= DELIVERIES_OFFSET + 4 {
                value[DELIVERIES_OFFSET..DELIVERIES_OFFSET + 4]
                    .copy_from_slice(&flight.deliveries.to_le_bytes());
            }
            plan.put(&key, value);
        }
    } else if let Some(value) = queue.memory.get(&id) {
        let mut value = value.clone();
        value[DELIVERIES_OFFSET..DELIVERIES_OFFSET + 4]
            .copy_from_slice(&flight.deliveries.to_le_bytes());
        memory = Some(value);
    }
    plan.changes.push(Change::Gone {
        queue: name.to_vec(),
        id,
    });
    plan.changes.push(Change::Ready {
        queue: name.to_vec(),
        priority: flight.priority,
        entry: Entry {
            id,
            expiry_ms: flight.expiry_ms,
        },
        deliveries: flight.deliveries.max(1),
        memory,
    });
    Ok(())
}

/// The ids, sorted and deduplicated, if every one is in flight to `conn`. (A client may repeat
/// an id; a linear search per id made an ACK of a million ids quadratic.)
fn owned_ids(queue: &Queue, ids: &[u64], conn: ConnId) -> Result<Vec<u64>> {
    for &id in ids {
        match queue.in_flight.get(&id) {
            Some(flight) if flight.owner == conn => {}
            Some(_) => return Err(QueueError::Foreign(id)),
            None => return Err(QueueError::NotInFlight(id)),
        }
    }
    let mut unique = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    Ok(unique)
}

/// Takes up to `count` ready messages out of the ready rings (highest priority, then oldest;
/// expired ones on the way are dead-lettered); the caller puts them in flight.
fn take_entries(
    state: &mut State,
    store: &Store,
    txn: &mut Txn<'_>,
    name: &[u8],
    count: usize,
    now_ms: u64,
) -> Result<Written<Vec<(u8, Entry)>>> {
    let mut taken = Vec::with_capacity(count.min(1024));
    let mut expired = Vec::new();
    {
        let queue = state.queues.get_mut(name).expect("present");
        // Expired heads on the way are bounded as a tick's are: a pop behind more of them
        // gets what it found, the next pop (or tick) goes on.
        while taken.len() < count && expired.len() < TICK_MOVES_MAX {
            let Some((priority, entry)) = queue.pop_ready() else {
                break;
            };
            if is_expired(entry, now_ms) {
                expired.push((priority, entry));
            } else {
                taken.push((priority, entry));
            }
        }
    }
    let mut seq = None;
    if !expired.is_empty() {
        let mut plan = Plan::default();
        for (priority, entry) in expired {
            plan_dead_letter(
                state,
                &mut plan,
                txn,
                name,
                entry.id,
                priority,
                DeathReason::Expired,
            )?;
        }
        seq = commit(store, txn, &plan)?;
        apply(state, plan);
    }
    queue_of(state, name).prefetch_next(store);
    Ok((taken, seq))
}

/// Takes up to `count` ready messages for `conn` (expired heads on the way are dead-lettered)
/// and puts them in flight, or, with `noack`, leaves them out of every set (the caller plans
/// their removal).
#[allow(clippy::too_many_arguments)]
fn take(
    state: &mut State,
    store: &Store,
    txn: &mut Txn<'_>,
    name: &[u8],
    count: usize,
    conn: ConnId,
    consumer: bool,
    noack: bool,
    now_ms: u64,
) -> Result<Written<Vec<Message>>> {
    let (taken, seq) = take_entries(state, store, txn, name, count, now_ms)?;
    let mut messages = Vec::with_capacity(taken.len());
    for (priority, entry) in taken {
        let Some(stored) = read_message(state, txn, name, entry.id)? else {
            continue; // Gone from the log (cannot happen while the model agrees with it).
        };
        let queue = state.queues.get_mut(name).expect("present");
        let deliveries = queue.returned.remove(&entry.id).unwrap_or(0) + 1;
        queue.counters.delivered += 1;
        if noack {
            queue.memory.remove(&entry.id);
            messages.push(Message {
                id: entry.id,
                payload: stored.payload,
                priority,
                deliveries,
                headers: stored.headers,
            });
            continue;
        }
        let flight = Flight {
            owner: conn,
            deadline_ms: queue.deadline_from(now_ms),
            priority,
            deliveries,
            expiry_ms: entry.expiry_ms,
            consumer,
        };
        queue.put_in_flight(entry.id, flight);
        messages.push(Message {
            id: entry.id,
            payload: stored.payload,
            priority,
            deliveries,
            headers: stored.headers,
        });
    }
    Ok((messages, seq))
}

/// Hands ready messages to the queue's waiters (oldest first), then to its subscriptions
/// (round-robin, within their prefetch), posting them to their mailboxes.
fn dispatch(state: &mut State, store: &Store, txn: &mut Txn<'_>, name: &[u8], now_ms: u64) {
    // Bounded per call, so a subscription without a prefetch limit on a long queue does not
    // hold the model for the whole queue; the timer's next tick hands out the rest.
    for _ in 0..DISPATCH_MAX {
        let Some(queue) = state.queues.get_mut(name) else {
            return;
        };
        if queue.ready_len == 0 {
            return;
        }
        if let Some(waiter) = queue.waiters.pop_front() {
            let Ok((messages, _)) = take(
                state,
                store,
                txn,
                name,
                waiter.count,
                waiter.conn,
                false,
                false,
                now_ms,
            ) else {
                return;
            };
            if messages.is_empty() {
                // Everything left had expired: the waiter keeps its place.
                if let Some(queue) = state.queues.get_mut(name) {
                    queue.waiters.push_front(waiter);
                }
                return;
            }
            waiter.mailbox.post(Delivery {
                queue: name.to_vec(),
                kind: DeliveryKind::Pop {
                    noack: waiter.noack,
                },
                messages,
            });
            continue;
        }
        let n = queue.consumers.len();
        let Some(index) = (0..n).map(|i| (queue.next_consumer + i) % n).find(|&i| {
            let c = &queue.consumers[i];
            c.prefetch == 0 || c.unacked < c.prefetch
        }) else {
            return;
        };
        queue.next_consumer = (index + 1) % n;
        let (conn, mailbox) = {
            let c = &mut queue.consumers[index];
            c.unacked += 1;
            (c.conn, c.mailbox.clone())
        };
        let Ok((messages, _)) = take(state, store, txn, name, 1, conn, true, false, now_ms) else {
            return;
        };
        if messages.is_empty() {
            if let Some(c) = state
                .queues
                .get_mut(name)
                .and_then(|q| q.consumers.iter_mut().find(|c| c.conn == conn))
            {
                c.unacked -= 1;
            }
            continue;
        }
        mailbox.post(Delivery {
            queue: name.to_vec(),
            kind: DeliveryKind::Push,
            messages,
        });
    }
}

/// Deletes a queue: its declaration, floor and bindings in one entry; its messages are
/// forgotten (no record each: without their queue they are dead for good, and every load
/// forgets them again until compaction drops them).
fn delete_queue(
    state: &mut State,
    store: &Store,
    txn: &mut Txn<'_>,
    name: &[u8],
) -> Result<Option<u64>> {
    let queue = queue_of(state, name);
    let mut plan = Plan::default();
    if queue.on_disk() {
        plan.delete(&codec::queue_key(name));
        if queue.floor > 0 {
            plan.delete(&codec::floor_key(queue.qid));
        }
    }
    let mut unbind = Vec::new();
    for (ex_name, ex) in &state.exchanges {
        for (q, rule) in &ex.bindings {
            if q.as_slice() == name {
                if binding_on_disk(state, ex, q) {
                    plan.delete(&codec::binding_key(ex_name, q, rule));
                }
                unbind.push((ex_name.clone(), (q.clone(), rule.clone())));
            }
        }
    }
    let seq = commit(store, txn, &plan)?;
    for (ex_name, binding) in unbind {
        if let Some(ex) = state.exchanges.get_mut(&ex_name) {
            ex.bindings.remove(&binding);
        }
    }
    let queue = state.queues.remove(name).expect("present");
    if queue.on_disk() {
        // With the declaration gone the messages are orphans for good (qids are never
        // reused): forgotten now, and again by every load until compaction drops them.
        let keys: Vec<[u8; 13]> = queue
            .ready
            .iter()
            .flatten()
            .map(|e| e.id)
            .chain(queue.in_flight.keys().copied())
            .map(|id| codec::message_key(queue.qid, id))
            .collect();
        let _ = txn.commit_part(NS, &keys);
    }
    for waiter in queue.waiters {
        waiter.mailbox.post(Delivery {
            queue: name.to_vec(),
            kind: DeliveryKind::Deleted,
            messages: Vec::new(),
        });
    }
    for consumer in queue.consumers {
        consumer.mailbox.post(Delivery {
            queue: name.to_vec(),
            kind: DeliveryKind::Cancelled,
            messages: Vec::new(),
        });
    }
    Ok(seq)
}
