//! Message-queue commands (issue 11): [`Queues`], the group [`super::Client::queue`]
//! returns, and the two handles that own a connection, [`Consumer`] and [`Subscription`].
//!
//! Layout:
//! - this file: the types callers build and get back ([`QueueOptions`], [`PushOptions`],
//!   [`Message`], [`QueueInfo`], [`Binding`] ...) and [`Queues`], whose calls each use one
//!   pooled connection for one request, sent as a row of `binary::commands::TABLE`.
//! - `args`: each request's argument list (pure, unit-tested word by word).
//! - `reply`: each reply's typed value to what a method returns (pure, unit-tested with
//!   hand-built values).
//! - `consumer`: [`Consumer`] and [`Subscription`], each on a connection of its own
//!   (why: [`Queues`], on acknowledgements).
//!
//! Names, payloads and header keys and values are byte strings (`&str`, `&[u8]`,
//! `Vec<u8>` all work); limits (payload size, priority 0-9, MAXLEN ...) are checked by the
//! server, which names the argument it refuses ([`super::Error::Server`]).

mod args;
mod consumer;
pub(crate) mod reply;

use std::time::Duration;

use self::args::Args;
use super::connection::Connection;
use super::error::Result;
use super::kv::duration_ms;
use super::Client;
use crate::binary::Value;

pub use consumer::{Consumer, Subscription};
pub use reply::PRIORITY_MAX;

/// Messages a [`Subscription`] may hold unacknowledged when the caller does not say
/// (QUEUE.SUBSCRIBE's own default, and RabbitMQ's common prefetch).
pub const DEFAULT_PREFETCH: u32 = 100;

/// What a full queue (MAXLEN reached) does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse the push (RabbitMQ's `reject-publish`).
    Reject,
    /// Drop, or dead-letter, the oldest ready message (RabbitMQ's default, `drop-head`).
    DropHead,
}

/// QUEUE.DECLARE's options. The default is a durable queue with the server's defaults for
/// everything else (no length limit, no TTL, no DLQ, no delivery limit, the server's
/// visibility timeout). Declaring again with the same options is a no-op; with different
/// ones, a server error naming the option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    pub(crate) durable: bool,
    pub(crate) exclusive: bool,
    pub(crate) max_len: Option<(u64, Overflow)>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) dlq: Option<Vec<u8>>,
    pub(crate) max_deliveries: Option<u32>,
    pub(crate) visibility: Option<Duration>,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            durable: true,
            exclusive: false,
            max_len: None,
            ttl: None,
            dlq: None,
            max_deliveries: None,
            visibility: None,
        }
    }
}

impl QueueOptions {
    /// A durable queue, the server's defaults for the rest.
    pub fn new() -> QueueOptions {
        QueueOptions::default()
    }

    /// Kept in memory only: gone after a restart (TRANSIENT).
    pub fn transient(mut self) -> Self {
        self.durable = false;
        self
    }

    /// Belongs to the declaring connection and is deleted when it closes (EXCLUSIVE). With
    /// [`Queues::declare`] that is a pooled connection, closed whenever the pool drops it:
    /// declare an exclusive queue from a [`Consumer`] ([`Consumer::declare`]).
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }

    /// At most `max_len` ready messages; `overflow` says what one more does (MAXLEN n
    /// OVERFLOW ...).
    pub fn max_len(mut self, max_len: u64, overflow: Overflow) -> Self {
        self.max_len = Some((max_len, overflow));
        self
    }

    /// A message not consumed this long after its push is dead-lettered (TTL, millisecond
    /// precision).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Where expired, rejected and over-delivered messages go (DLQ).
    pub fn dlq(mut self, queue: impl Into<Vec<u8>>) -> Self {
        self.dlq = Some(queue.into());
        self
    }

    /// Deliveries after which a message goes to the DLQ instead (MAXDELIVERIES).
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.max_deliveries = Some(deliveries);
        self
    }

    /// How long a delivered message may stay unacknowledged before it is redelivered
    /// (VISIBILITY; zero: until its connection closes).
    pub fn visibility(mut self, visibility: Duration) -> Self {
        self.visibility = Some(visibility);
        self
    }
}

/// The options of QUEUE.PUSH, QUEUE.MPUSH and EXCHANGE.PUBLISH: a priority, a time to live
/// and headers. The default sets none of them (priority 0, the queue's TTL, no headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOptions {
    pub(crate) priority: Option<u8>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl PushOptions {
    /// No priority, TTL or headers.
    pub fn new() -> PushOptions {
        PushOptions::default()
    }

    /// 0 (the default) to [`PRIORITY_MAX`]; higher is delivered first, FIFO within one
    /// priority. The server refuses a higher one.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The message is dead-lettered if not consumed this long after the push (millisecond
    /// precision).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Adds a header (sent in the order added).
    pub fn header(mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }
}

/// A message as POP, BPOP and a subscription deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its id, unique on the server; ack and nack name it.
    pub id: u64,
    /// The bytes pushed.
    pub payload: Vec<u8>,
    /// 0 to [`PRIORITY_MAX`].
    pub priority: u8,
    /// Deliveries so far, this one included (1 on the first).
    pub deliveries: u32,
    /// Its headers, in the order pushed (the server adds the reason and source queue to a
    /// dead-lettered message's).
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What QUEUE.INFO reports: the queue's options and counters. A limit the queue does not
/// have is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// The queue's name.
    pub name: Vec<u8>,
    /// Survives restarts.
    pub durable: bool,
    /// Belongs to one connection.
    pub exclusive: bool,
    /// Most ready messages.
    pub max_len: Option<u64>,
    /// What a push to a full queue does.
    pub overflow: Overflow,
    /// Message time to live.
    pub ttl: Option<Duration>,
    /// Dead-letter queue.
    pub dlq: Option<Vec<u8>>,
    /// Deliveries before dead-lettering.
    pub max_deliveries: Option<u32>,
    /// How long a delivery may stay unacknowledged.
    pub visibility: Option<Duration>,
    /// Messages ready for delivery (QUEUE.LEN).
    pub ready: u64,
    /// Messages delivered and not acknowledged.
    pub in_flight: u64,
    /// Subscribed consumers.
    pub consumers: u64,
    /// Messages pushed, ever (since the server started).
    pub pushed: u64,
    /// Deliveries, redeliveries included.
    pub delivered: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages sent to the DLQ or dropped for TTL, MAXDELIVERIES or NACK DEAD.
    pub dead_lettered: u64,
}

/// An exchange's routing rule (EXCHANGE.DECLARE's type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// To queues whose binding key equals the routing key.
    Direct,
    /// To every bound queue.
    Fanout,
    /// To queues whose binding pattern matches the routing key (`*` one word, `#` zero or
    /// more, words separated by dots).
    Topic,
    /// To queues whose bound headers match the message's (all or any of them).
    Headers,
}

impl ExchangeKind {
    /// The word EXCHANGE.DECLARE takes.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "DIRECT",
            ExchangeKind::Fanout => "FANOUT",
            ExchangeKind::Topic => "TOPIC",
            ExchangeKind::Headers => "HEADERS",
        }
    }
}

/// How a headers binding matches a message's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadersMatch {
    /// Every bound pair is among the message's headers (RabbitMQ's `x-match: all`).
    All,
    /// At least one is (`x-match: any`).
    Any,
}

/// What a queue is bound to an exchange with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// A binding key (direct), a pattern (topic); ignored by fanout exchanges.
    Key(Vec<u8>),
    /// Header pairs, for a headers exchange.
    Headers {
        /// All of them or any.
        matching: HeadersMatch,
        /// The pairs.
        headers: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

impl Binding {
    /// A key or topic-pattern binding.
    pub fn key(key: impl Into<Vec<u8>>) -> Binding {
        Binding::Key(key.into())
    }

    /// A headers binding.
    pub fn headers<K: Into<Vec<u8>>, V: Into<Vec<u8>>>(
        matching: HeadersMatch,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Binding {
        Binding::Headers {
            matching,
            headers: headers
                .into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        }
    }
}

/// One binding of an exchange, as EXCHANGE.BINDINGS lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeBinding {
    /// The bound queue.
    pub queue: Vec<u8>,
    /// What it is bound with.
    pub binding: Binding,
}

pub(crate) use super::{table_request as request, table_row as row};

/// QUEUE.BPOP's wait in milliseconds: zero waits forever, and a non-zero wait shorter than a
/// millisecond is one, so it does not turn into forever.
fn bpop_timeout_ms(timeout: Duration) -> u64 {
    if timeout.is_zero() {
        0
    } else {
        duration_ms(timeout).max(1)
    }
}

/// QUEUE.BPOP on `connection`, whose reads may block `read_timeout` normally. The server
/// answers when a message comes or the wait ends, so for this one request a read may block
/// the wait plus `read_timeout` (forever for a wait of zero, or no read timeout); the normal
/// timeout is back before this returns.
fn bpop_on(
    connection: &mut Connection,
    read_timeout: Option<Duration>,
    queue: &[u8],
    timeout: Duration,
    count: u32,
    no_ack: bool,
) -> Result<Option<Vec<Message>>> {
    let wait = match (timeout.is_zero(), read_timeout) {
        (false, Some(read_timeout)) => Some(read_timeout.saturating_add(timeout)),
        _ => None,
    };
    connection.set_read_timeout(wait)?;
    let args = args::bpop(queue, bpop_timeout_ms(timeout), count, no_ack);
    let popped = request(connection, "queue.bpop", &args, reply::optional_messages);
    // Restored whatever the outcome: after a server error (no such queue) the connection
    // goes on, back to the pool.
    connection.set_read_timeout(read_timeout)?;
    popped
}

/// Message-queue and exchange commands on a [`Client`]'s pool; each call uses one pooled
/// connection for one request and reply.
///
/// # Acknowledgements need a connection of their own
///
/// A message popped without NOACK is in flight *for the connection that received it*: only
/// that connection can ack or nack it, and it is redelivered when that connection closes.
/// A pooled connection goes back to the pool after each call, so the ack of a message
/// [`Queues::pop`] fetched may leave on another connection and be refused (`ERR ... not in
/// flight`), and the message stays in flight until its visibility timeout or until that
/// pooled connection closes. Use
/// [`Queues::pop`] and [`Queues::bpop`] with `no_ack` (fire-and-forget consumption), and a
/// [`Consumer`] ([`Queues::consumer`]) or a [`Subscription`] ([`Queues::subscribe`]) to
/// consume with acknowledgements. [`Queues::ack`] and [`Queues::nack`] are there for the
/// commands' completeness; they succeed only when the pool hands out the connection that
/// received the messages.
#[derive(Debug, Clone, Copy)]
pub struct Queues<'c> {
    client: &'c Client,
}

impl<'c> Queues<'c> {
    pub(crate) fn new(client: &'c Client) -> Queues<'c> {
        Queues { client }
    }

    fn run<T>(
        &self,
        command: &'static str,
        args: &Args<'_>,
        decode: impl FnOnce(&Value, u8) -> Result<T>,
    ) -> Result<T> {
        let mut connection = self.client.checkout()?;
        request(&mut connection, command, args, decode)
    }

    /// Creates `queue`, or checks that it exists with these options (QUEUE.DECLARE).
    pub fn declare(&self, queue: impl AsRef<[u8]>, options: &QueueOptions) -> Result<()> {
        self.run(
            "queue.declare",
            &args::declare(queue.as_ref(), options),
            reply::ok,
        )
    }

    /// Deletes `queue` and its messages; returns how many messages it held.
    pub fn delete(&self, queue: impl AsRef<[u8]>) -> Result<u64> {
        self.run("queue.delete", &args::name(queue.as_ref()), reply::count)
    }

    /// Drops `queue`'s ready messages (not those in flight); returns how many.
    pub fn purge(&self, queue: impl AsRef<[u8]>) -> Result<u64> {
        self.run("queue.purge", &args::name(queue.as_ref()), reply::count)
    }

    /// Ready messages in `queue`.
    pub fn len(&self, queue: impl AsRef<[u8]>) -> Result<u64> {
        self.run("queue.len", &args::name(queue.as_ref()), reply::count)
    }

    /// Queue names, sorted; with a pattern, those matching the glob (`*`, `?`, `[a-z]`).
    pub fn list(&self, pattern: Option<&[u8]>) -> Result<Vec<Vec<u8>>> {
        self.run("queue.list", &args::list(pattern), reply::names)
    }

    /// `queue`'s options and counters.
    pub fn info(&self, queue: impl AsRef<[u8]>) -> Result<QueueInfo> {
        self.run("queue.info", &args::name(queue.as_ref()), reply::info)
    }

    /// Pushes one message; returns its id.
    pub fn push(
        &self,
        queue: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
        options: &PushOptions,
    ) -> Result<u64> {
        let args = args::push(queue.as_ref(), payload.as_ref(), options);
        self.run("queue.push", &args, reply::count)
    }

    /// Pushes every payload, with the same options, in one engine batch (all or none
    /// survive a crash); returns their ids in order. An empty batch sends nothing.
    pub fn push_many<P: AsRef<[u8]>>(
        &self,
        queue: impl AsRef<[u8]>,
        payloads: &[P],
        options: &PushOptions,
    ) -> Result<Vec<u64>> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let args = args::mpush(queue.as_ref(), payloads, options);
        self.run("queue.mpush", &args, |value, opcode| {
            reply::ids(value, opcode, payloads.len())
        })
    }

    /// Up to `count` ready messages, highest priority first; none if the queue has none
    /// ready. Without `no_ack` they stay in flight on the pooled connection that fetched
    /// them: see [`Queues`] on acknowledgements.
    pub fn pop(&self, queue: impl AsRef<[u8]>, count: u32, no_ack: bool) -> Result<Vec<Message>> {
        let args = args::pop(queue.as_ref(), count, no_ack);
        self.run("queue.pop", &args, reply::messages)
    }

    /// Up to `count` messages, waiting up to `timeout` for the first (zero waits forever);
    /// `None` if none came. While it waits, its pooled connection is not available to other
    /// calls. Without `no_ack`: see [`Queues::pop`].
    pub fn bpop(
        &self,
        queue: impl AsRef<[u8]>,
        timeout: Duration,
        count: u32,
        no_ack: bool,
    ) -> Result<Option<Vec<Message>>> {
        let mut connection = self.client.checkout()?;
        let read_timeout = self.client.options().read_timeout;
        bpop_on(
            &mut connection,
            read_timeout,
            queue.as_ref(),
            timeout,
            count,
            no_ack,
        )
    }

    /// Acknowledges messages; returns how many. The server refuses (and acks none) if one
    /// is not in flight for the connection this call happens to use: see the
    /// [`Queues`] on acknowledgements, and prefer [`Consumer::ack`] or
    /// [`Subscription::ack`].
    pub fn ack(&self, queue: impl AsRef<[u8]>, ids: &[u64]) -> Result<u64> {
        self.run("queue.ack", &args::ack(queue.as_ref(), ids), reply::count)
    }

    /// Returns messages to the queue (`requeue`) or dead-letters them; returns how many.
    /// The same caveat as [`Queues::ack`].
    pub fn nack(&self, queue: impl AsRef<[u8]>, ids: &[u64], requeue: bool) -> Result<u64> {
        let args = args::nack(queue.as_ref(), ids, requeue);
        self.run("queue.nack", &args, reply::count)
    }

    /// A consumer on a new connection of its own (not from the pool, not counted in its
    /// size): pops, blocking pops, acks and nacks on it all refer to the same in-flight
    /// messages. Dropping it closes the connection; the server redelivers what it left
    /// unacknowledged.
    pub fn consumer(&self) -> Result<Consumer> {
        Consumer::open(self.client)
    }

    /// Subscribes to `queue` on a new connection of its own: the server pushes messages to
    /// it, at most `prefetch` unacknowledged at a time (0: no limit; [`DEFAULT_PREFETCH`] is
    /// QUEUE.SUBSCRIBE's default), round-robin across the queue's consumers. Read them with
    /// [`Subscription::next`] and ack them with [`Subscription::ack`].
    pub fn subscribe(&self, queue: impl AsRef<[u8]>, prefetch: u32) -> Result<Subscription> {
        Subscription::open(self.client, queue.as_ref(), prefetch)
    }

    /// Creates an exchange, or checks that it exists with this kind and durability.
    pub fn exchange_declare(
        &self,
        exchange: impl AsRef<[u8]>,
        kind: ExchangeKind,
        durable: bool,
    ) -> Result<()> {
        let args = args::exchange_declare(exchange.as_ref(), kind, durable);
        self.run("exchange.declare", &args, reply::ok)
    }

    /// Deletes an exchange and its bindings (not the bound queues).
    pub fn exchange_delete(&self, exchange: impl AsRef<[u8]>) -> Result<()> {
        self.run("exchange.delete", &args::name(exchange.as_ref()), reply::ok)
    }

    /// Binds `queue` to `exchange`.
    pub fn bind(
        &self,
        exchange: impl AsRef<[u8]>,
        queue: impl AsRef<[u8]>,
        binding: &Binding,
    ) -> Result<()> {
        let args = args::binding(exchange.as_ref(), queue.as_ref(), binding);
        self.run("exchange.bind", &args, reply::ok)
    }

    /// Removes a binding; false if there was no such binding.
    pub fn unbind(
        &self,
        exchange: impl AsRef<[u8]>,
        queue: impl AsRef<[u8]>,
        binding: &Binding,
    ) -> Result<bool> {
        let args = args::binding(exchange.as_ref(), queue.as_ref(), binding);
        self.run("exchange.unbind", &args, reply::flag)
    }

    /// Exchange names.
    pub fn exchange_list(&self) -> Result<Vec<Vec<u8>>> {
        self.run("exchange.list", &Vec::new(), reply::names)
    }

    /// An exchange's bindings.
    pub fn bindings(&self, exchange: impl AsRef<[u8]>) -> Result<Vec<ExchangeBinding>> {
        let args = args::name(exchange.as_ref());
        self.run("exchange.bindings", &args, reply::bindings)
    }

    /// Routes one message to every queue whose binding matches `routing_key`, in one
    /// atomic batch; returns how many queues got it. With `mandatory`, a message no queue
    /// would get is refused (a server error) instead of counted and dropped.
    pub fn publish(
        &self,
        exchange: impl AsRef<[u8]>,
        routing_key: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
        options: &PushOptions,
        mandatory: bool,
    ) -> Result<u64> {
        let args = args::publish(
            exchange.as_ref(),
            routing_key.as_ref(),
            payload.as_ref(),
            options,
            mandatory,
        );
        self.run("exchange.publish", &args, reply::count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary;

    /// Every command the client sends is a row, and its requests fit the row's arity, so
    /// none is refused before sending for a reason the caller cannot see.
    #[test]
    fn every_request_fits_its_row() {
        let options = QueueOptions::new();
        let push = PushOptions::new();
        let one: [&[u8]; 1] = [b"p"];
        let key = Binding::key("k");
        let headers = Binding::headers(HeadersMatch::All, [("k", "v")]);
        let requests: Vec<(&str, Args<'_>)> = vec![
            ("queue.declare", args::declare(b"q", &options)),
            ("queue.delete", args::name(b"q")),
            ("queue.purge", args::name(b"q")),
            ("queue.len", args::name(b"q")),
            ("queue.list", args::list(None)),
            ("queue.list", args::list(Some(b"*"))),
            ("queue.info", args::name(b"q")),
            ("queue.push", args::push(b"q", b"p", &push)),
            ("queue.mpush", args::mpush(b"q", &one, &push)),
            ("queue.pop", args::pop(b"q", 1, false)),
            ("queue.bpop", args::bpop(b"q", 0, 1, true)),
            ("queue.ack", args::ack(b"q", &[1])),
            ("queue.nack", args::nack(b"q", &[1], true)),
            ("queue.subscribe", args::subscribe(b"q", DEFAULT_PREFETCH)),
            (
                "exchange.declare",
                args::exchange_declare(b"x", ExchangeKind::Direct, true),
            ),
            ("exchange.delete", args::name(b"x")),
            ("exchange.bind", args::binding(b"x", b"q", &key)),
            ("exchange.bind", args::binding(b"x", b"q", &headers)),
            ("exchange.unbind", args::binding(b"x", b"q", &key)),
            ("exchange.list", Vec::new()),
            ("exchange.bindings", args::name(b"x")),
            (
                "exchange.publish",
                args::publish(b"x", b"k", b"p", &push, false),
            ),
        ];
        for (command, args) in &requests {
            let spec = row(command);
            assert!(
                spec.arity_ok(args.len()),
                "{command} with {} args",
                args.len()
            );
            let mut out = Vec::new();
            binary::encode_command(&mut out, 1, spec, args).unwrap();
            let request = binary::parse_request(&out).unwrap();
            let binary::Op::Command {
                name, args: sent, ..
            } = request.op
            else {
                panic!("{command} parsed as {:?}", request.op);
            };
            assert_eq!(name, *command);
            let sent: Vec<&[u8]> = sent.collect();
            let expected: Vec<&[u8]> = args.iter().map(|arg| &arg[..]).collect();
            assert_eq!(sent, expected, "{command}");
        }
    }

    #[test]
    fn bpop_waits_are_never_turned_into_forever() {
        assert_eq!(bpop_timeout_ms(Duration::ZERO), 0);
        assert_eq!(bpop_timeout_ms(Duration::from_micros(10)), 1);
        assert_eq!(bpop_timeout_ms(Duration::from_millis(250)), 250);
        assert_eq!(bpop_timeout_ms(Duration::MAX), u64::MAX);
    }
}
