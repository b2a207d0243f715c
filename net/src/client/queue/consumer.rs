//! The two queue handles that own a connection: [`Consumer`] (pop, then ack on the
//! connection that popped) and [`Subscription`] (the server pushes, the caller acks). Each
//! opens its connection with the client's options and address, outside the pool: their
//! in-flight messages belong to that connection, and a pooled one would be reused by other
//! calls and closed at the pool's convenience.

use std::io;
use std::time::Duration;

use super::args::{self, Args};
use super::{bpop_on, reply, request, row, Message, QueueOptions};
use crate::binary::{Opcode, Value};
use crate::client::connection::Connection;
use crate::client::error::{Error, ProtocolError, Result};
use crate::client::Client;

/// Shortest wait [`Subscription::next`] puts on the socket: a socket refuses a zero read
/// timeout, and a wait of zero is read as "what has arrived".
const NEXT_WAIT_MIN: Duration = Duration::from_millis(1);

/// A connection of its own for popping and acknowledging: messages popped without NOACK are
/// in flight for it, so its acks and nacks find them. Dropping it closes the connection,
/// and the server redelivers whatever it left unacknowledged. Not shared between threads
/// (`&mut self`): open one per consuming thread.
#[derive(Debug)]
pub struct Consumer {
    connection: Connection,
    /// The client's read timeout, restored after a blocking pop.
    read_timeout: Option<Duration>,
}

impl Consumer {
    pub(crate) fn open(client: &Client) -> Result<Consumer> {
        Ok(Consumer {
            connection: client.open_dedicated()?,
            read_timeout: client.options().read_timeout,
        })
    }

    /// One request with the client's read timeout (a subscription shortens it while it
    /// waits for pushes; setting it again costs nothing when unchanged).
    fn run<T>(
        &mut self,
        command: &'static str,
        args: &Args<'_>,
        decode: impl FnOnce(&Value, u8) -> Result<T>,
    ) -> Result<T> {
        self.connection.set_read_timeout(self.read_timeout)?;
        request(&mut self.connection, command, args, decode)
    }

    /// QUEUE.DECLARE on this connection: the way to declare an exclusive queue, which is
    /// deleted when this consumer is dropped.
    pub fn declare(&mut self, queue: impl AsRef<[u8]>, options: &QueueOptions) -> Result<()> {
        let args = args::declare(queue.as_ref(), options);
        self.run("queue.declare", &args, reply::ok)
    }

    /// Up to `count` ready messages; none if the queue has none ready. Without `no_ack`
    /// they are in flight until [`Consumer::ack`] or [`Consumer::nack`], their visibility
    /// timeout, or this consumer's end.
    pub fn pop(
        &mut self,
        queue: impl AsRef<[u8]>,
        count: u32,
        no_ack: bool,
    ) -> Result<Vec<Message>> {
        let args = args::pop(queue.as_ref(), count, no_ack);
        self.run("queue.pop", &args, reply::messages)
    }

    /// Up to `count` messages, waiting up to `timeout` for the first (zero waits forever);
    /// `None` if none came. The connection's read timeout is lengthened by the wait for
    /// this one request.
    pub fn bpop(
        &mut self,
        queue: impl AsRef<[u8]>,
        timeout: Duration,
        count: u32,
        no_ack: bool,
    ) -> Result<Option<Vec<Message>>> {
        bpop_on(
            &mut self.connection,
            self.read_timeout,
            queue.as_ref(),
            timeout,
            count,
            no_ack,
        )
    }

    /// Acknowledges messages this consumer received; returns how many. If one of them is
    /// not in flight here, the server refuses the whole call and acks none.
    pub fn ack(&mut self, queue: impl AsRef<[u8]>, ids: &[u64]) -> Result<u64> {
        self.run("queue.ack", &args::ack(queue.as_ref(), ids), reply::count)
    }

    /// Returns messages to their queue (`requeue`, delivery count kept) or dead-letters
    /// them; returns how many.
    pub fn nack(&mut self, queue: impl AsRef<[u8]>, ids: &[u64], requeue: bool) -> Result<u64> {
        let args = args::nack(queue.as_ref(), ids, requeue);
        self.run("queue.nack", &args, reply::count)
    }

    /// True after a network or protocol error: every later call fails; open another.
    pub fn is_broken(&self) -> bool {
        self.connection.is_broken()
    }
}

/// A subscription to one queue on a connection of its own, like a Redis pub/sub client:
/// the server pushes messages, at most `prefetch` unacknowledged at a time, and
/// [`Subscription::next`] hands them out in arrival order. Ack each (or a batch) with
/// [`Subscription::ack`] to make room for more. Dropping the subscription closes the
/// connection: the server redelivers what it left unacknowledged, including messages
/// received and not yet handed out.
///
/// ```no_run
/// use std::time::Duration;
/// use flin_net::Client;
///
/// let client = Client::connect("127.0.0.1:7380")?;
/// let mut jobs = client.queue().subscribe("jobs", 100)?;
/// while let Some(message) = jobs.next(Duration::from_secs(1))? {
///     println!("{}", String::from_utf8_lossy(&message.payload));
///     jobs.ack(&[message.id])?;
/// }
/// # Ok::<(), flin_net::ClientError>(())
/// ```
#[derive(Debug)]
pub struct Subscription {
    consumer: Consumer,
    /// The subscribed queue: every message pushed must come from it.
    queue: Vec<u8>,
}

impl Subscription {
    pub(crate) fn open(client: &Client, queue: &[u8], prefetch: u32) -> Result<Subscription> {
        let mut consumer = Consumer::open(client)?;
        consumer.run(
            "queue.subscribe",
            &args::subscribe(queue, prefetch),
            reply::ok,
        )?;
        Ok(Subscription {
            consumer,
            queue: queue.to_vec(),
        })
    }

    /// The subscribed queue.
    pub fn queue(&self) -> &[u8] {
        &self.queue
    }

    /// The next message: one already received, or else one that arrives within `timeout`
    /// (at least a millisecond is waited). `None` if none came; the subscription goes on.
    /// A message that arrives partly by the deadline is waited for a little longer, up to
    /// another `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Message>> {
        let connection = &mut self.consumer.connection;
        let push = match connection.try_receive_push() {
            Some(push) => push,
            None => {
                connection.set_read_timeout(Some(timeout.max(NEXT_WAIT_MIN)))?;
                match connection.receive_push() {
                    Ok(push) => push,
                    Err(Error::Network(error)) if is_timeout(&error) && !connection.is_broken() => {
                        return Ok(None)
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        let subscribed = row("queue.subscribe").opcode;
        let decoded = if push.opcode == subscribed || push.opcode == Opcode::Call as u8 {
            reply::pushed_message(&push.value, push.opcode)
        } else {
            Err(Error::Protocol(ProtocolError::UnexpectedValue {
                opcode: push.opcode,
                what: "a push of a kind other than QUEUE.SUBSCRIBE's",
            }))
        };
        let message = match decoded {
            Ok((queue, _)) if queue != self.queue => {
                Err(Error::Protocol(ProtocolError::UnexpectedValue {
                    opcode: push.opcode,
                    what: "a message pushed from a queue not subscribed to",
                }))
            }
            Ok((_, message)) => Ok(message),
            Err(error) => Err(error),
        };
        if message.is_err() {
            // The server pushed what a subscription cannot receive: nothing later on this
            // connection can be trusted.
            connection.mark_broken();
        }
        message.map(Some)
    }

    /// Acknowledges messages this subscription received; returns how many. Messages pushed
    /// while the reply is awaited are kept for [`Subscription::next`].
    pub fn ack(&mut self, ids: &[u64]) -> Result<u64> {
        self.consumer.ack(&self.queue, ids)
    }

    /// Returns messages to the queue (`requeue`) or dead-letters them; returns how many.
    pub fn nack(&mut self, ids: &[u64], requeue: bool) -> Result<u64> {
        self.consumer.nack(&self.queue, ids, requeue)
    }

    /// Messages received and not yet handed out by [`Subscription::next`].
    pub fn buffered(&self) -> usize {
        self.consumer.connection.queued_pushes()
    }

    /// Ends the subscription (QUEUE.UNSUBSCRIBE) and closes the connection. Messages in
    /// flight (received, not acknowledged) go back to the queue when it closes.
    pub fn unsubscribe(mut self) -> Result<()> {
        let args = args::name(&self.queue);
        self.consumer
            .run("queue.unsubscribe", &args, reply::ok_or_count)
    }

    /// True after a network or protocol error: every later call fails; subscribe again.
    pub fn is_broken(&self) -> bool {
        self.consumer.is_broken()
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
