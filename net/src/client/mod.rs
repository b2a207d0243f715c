//! The Rust client: blocking, raw sockets, the binary protocol.
//!
//! Layout:
//! - [`Client`] (this file): a cheap-to-clone handle, safe to share across
//!   threads, with one group of methods per data model: [`Client::kv`] and
//!   [`Client::queue`] now; [`Client::stream`] and [`Client::db`] are there
//!   already and gain their methods with the issues that add those models to
//!   the server.
//! - `queue`: [`Queues`] (queue and exchange commands on the pool), and
//!   [`Consumer`] and [`Subscription`], which own a connection each, since a
//!   message in flight belongs to the connection that received it.
//! - `pool`: up to [`ClientOptions::pool_size`] connections; each call
//!   checks one out, uses it, and returns it.
//! - [`Connection`]: one socket; queues requests, writes them in one go,
//!   reads responses in order and checks their ids and opcodes; sets push
//!   frames aside for [`Connection::receive_push`].
//! - [`Pipeline`]: many requests in one write, replies in order.
//! - `decode`: response frame to return value, shared by single calls and
//!   pipelines; [`Reply`], [`Ttl`], [`ScanPage`].
//! - [`error`]: [`Error`] tells a server error from a network error from a
//!   protocol error.
//!
//! # Failures, reconnecting, and retries
//!
//! - A call that fails on the network ([`Error::Network`]) or gets bytes
//!   that make no sense ([`Error::Protocol`]) returns that error and its
//!   connection is discarded. The next call opens a new connection, so a
//!   `Client` outlives server restarts without being re-created.
//! - Before an idle pooled connection is used, a non-blocking peek checks
//!   that the server has not closed it (a restart does that to every idle
//!   connection). A closed one is replaced before anything is sent, which is
//!   not a retry: the request has not left the client.
//! - **Nothing is ever retried.** Once any byte of a request has been
//!   written, a failure is reported to the caller, whatever the request:
//!   the client cannot know whether the server applied it, and resending an
//!   INCR or a SET NX could apply it twice. A caller that knows a request
//!   is idempotent (a GET, a plain SET) may call again.
//! - A server error ([`Error::Server`]: wrong type, not an integer, NOAUTH)
//!   leaves the connection in use; the request was understood and refused.
//!
//! Blocking calls are bounded by [`ClientOptions`]' connect, read and write
//! timeouts; a timed-out connection is discarded like any network failure
//! (its late reply would put the stream out of step).
//!
//! # A cluster
//!
//! [`Client::connect_cluster`] takes seed addresses and follows the leader (`cluster`,
//! decision 78): a `MOVED` makes the call resend to the named node and routes later calls
//! there; `CLUSTERDOWN` and `TRYAGAIN` make it back off and resend; a node that cannot be
//! reached sends it to the seeds. Those answers mean the request did not run, so they are
//! always retried, within the [`RetryPolicy`]'s budget. After a failure that leaves a
//! request's fate unknown (its connection lost after it was written, a withdrawn reply) a
//! read is resent and a write is [`Error::Indeterminate`], unless
//! [`RetryPolicy::retry_writes`]. Single calls of every group on the pool are covered, and a
//! pipeline refused as a whole; blocking stream fetches and the dedicated connections of
//! consumers and producers go to the leader the pool knows but are not retried. A client of one node
//! ([`Client::connect`]) does none of this: its calls take the path they always took.

mod cluster;
mod connection;
mod db;
mod decode;
pub mod error;
mod kv;
mod pipeline;
mod pool;
mod query;
mod queue;
mod stream;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

pub use cluster::{
    RetryPolicy, DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_RETRY_TIME,
};

pub use crate::binary::Value;
pub use connection::{Connection, Push};
pub use decode::{Reply, ScanPage, Ttl};
pub use error::{Error, ProtocolError, Result, ServerError};
pub use kv::{Kv, Scan, SetOptions};
pub use pipeline::{KvPipeline, Pipeline};
pub use queue::{
    Binding, Consumer, ExchangeBinding, ExchangeKind, HeadersMatch, Message, Overflow, PushOptions,
    QueueInfo, QueueOptions, Queues, Subscription, DEFAULT_PREFETCH, PRIORITY_MAX,
};

use crate::binary;
pub use db::{Db, FindOptions as DocFindOptions, UpdateResult};
pub use query::{Collection, Filter, Find, Json, Update};
pub use stream::{
    Assignment, FetchOptions, GroupConsumer, GroupInfo, Lag, PartitionInfo, Producer,
    ProducerOptions, Published, PublishedRange, Record, Reset, SeekTo, Stream, TopicInfo,
};

/// Default for [`ClientOptions::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`ClientOptions::read_timeout`] and
/// [`ClientOptions::write_timeout`].
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`ClientOptions::pool_size`].
pub const DEFAULT_POOL_SIZE: usize = 8;
/// Default for [`ClientOptions::pool_wait_timeout`].
pub const DEFAULT_POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`ClientOptions::max_response_body_bytes`]: what the server
/// accepts as a request (1 GiB), so a hostile or broken server cannot make
/// the client buffer 4 GiB.
pub const DEFAULT_MAX_RESPONSE_BODY_BYTES: usize = 1024 * 1024 * 1024;
/// Default for [`ClientOptions::max_queued_pushes`].
pub const DEFAULT_MAX_QUEUED_PUSHES: usize = 65_536;

/// How a [`Client`] connects. Build with [`ClientOptions::new`] and the
/// chained setters.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) username: Option<Vec<u8>>,
    pub(crate) password: Option<Vec<u8>>,
    pub(crate) pool_size: usize,
    pub(crate) pool_wait_timeout: Duration,
    pub(crate) max_response_body_bytes: usize,
    pub(crate) max_queued_pushes: usize,
    pub(crate) retry: RetryPolicy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: Some(DEFAULT_IO_TIMEOUT),
            write_timeout: Some(DEFAULT_IO_TIMEOUT),
            username: None,
            password: None,
            pool_size: DEFAULT_POOL_SIZE,
            pool_wait_timeout: DEFAULT_POOL_WAIT_TIMEOUT,
            max_response_body_bytes: DEFAULT_MAX_RESPONSE_BODY_BYTES,
            max_queued_pushes: DEFAULT_MAX_QUEUED_PUSHES,
            retry: RetryPolicy::default(),
        }
    }
}

impl ClientOptions {
    /// The defaults: 5 s to connect, 30 s per read or write, no password,
    /// 8 pooled connections, 5 s to wait for one.
    pub fn new() -> ClientOptions {
        ClientOptions::default()
    }

    /// How long opening a TCP connection may take (per address).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one read may block; `None` blocks forever. A zero duration
    /// is refused by the socket when a connection is opened.
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// How long one write may block; `None` blocks forever.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Authenticate every connection with this password (the server's
    /// `--requirepass`), as the default user.
    pub fn password(mut self, password: impl Into<Vec<u8>>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Authenticate as this user (with [`ClientOptions::password`]).
    pub fn username(mut self, username: impl Into<Vec<u8>>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Most connections open at once (at least 1). A call that finds them
    /// all in use waits for one.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long a call waits for a pooled connection before it fails with
    /// [`Error::PoolExhausted`].
    pub fn pool_wait_timeout(mut self, timeout: Duration) -> Self {
        self.pool_wait_timeout = timeout;
        self
    }

    /// Largest response body accepted; a longer one is a protocol error
    /// (and its connection is dropped) before its bytes are buffered.
    pub fn max_response_body_bytes(mut self, limit: usize) -> Self {
        self.max_response_body_bytes = limit.min(binary::MAX_RESPONSE_BODY_BYTES);
        self
    }

    /// Most push frames a [`Connection`] keeps unread (65,536 by default); one more is a
    /// protocol error that drops the connection, so a subscriber that stops reading cannot
    /// grow the client's memory without bound.
    pub fn max_queued_pushes(mut self, limit: usize) -> Self {
        self.max_queued_pushes = limit.max(1);
        self
    }

    /// How a client of a cluster ([`Client::connect_cluster`]) retries a call; ignored by a
    /// client of one node, which never retries.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
}

/// A handle to a Flin server. Clones share one connection pool; it is
/// `Send + Sync`, so threads can share one `Client` (or clone it).
///
/// ```no_run
/// use flin_net::Client;
///
/// let client = Client::connect("127.0.0.1:7380")?;
/// client.kv().set("greeting", "hello")?;
/// assert_eq!(client.kv().get("greeting")?.as_deref(), Some(&b"hello"[..]));
/// # Ok::<(), flin_net::ClientError>(())
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) pool: Arc<pool::Pool>,
}

impl Client {
    /// Connects with the default [`ClientOptions`]. One connection is
    /// opened (and authenticated) at once, so an unreachable server or a
    /// wrong password is reported here rather than by the first call.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client> {
        Client::connect_with(addr, ClientOptions::default())
    }

    /// Connects with `options`.
    pub fn connect_with(addr: impl ToSocketAddrs, options: ClientOptions) -> Result<Client> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(Error::Network(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            )));
        }
        Client::with_pool(pool::Pool::new(addrs, options, false))
    }

    /// Connects to a cluster through `seeds` (any of its nodes, leader or not) with the
    /// default [`ClientOptions`]; calls then follow the leader (see [`RetryPolicy`]).
    ///
    /// ```no_run
    /// use flin_net::Client;
    ///
    /// let client = Client::connect_cluster(&["127.0.0.1:7380", "127.0.0.1:7381", "127.0.0.1:7382"])?;
    /// client.kv().set("greeting", "hello")?; // sent to the leader, wherever it is
    /// # Ok::<(), flin_net::ClientError>(())
    /// ```
    pub fn connect_cluster<A: ToSocketAddrs>(seeds: &[A]) -> Result<Client> {
        Client::connect_cluster_with(seeds, ClientOptions::default())
    }

    /// [`Client::connect_cluster`] with `options` (their [`ClientOptions::retry`] policy).
    /// One connection is opened at once, to the first seed that accepts, as
    /// [`Client::connect`] does.
    pub fn connect_cluster_with<A: ToSocketAddrs>(
        seeds: &[A],
        options: ClientOptions,
    ) -> Result<Client> {
        let mut addrs = Vec::new();
        for seed in seeds {
            addrs.extend(seed.to_socket_addrs()?);
        }
        if addrs.is_empty() {
            return Err(Error::Network(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no seed address (or they resolved to nothing)",
            )));
        }
        Client::with_pool(pool::Pool::new(addrs, options, true))
    }

    fn with_pool(pool: pool::Pool) -> Result<Client> {
        let first = pool.open_connection()?;
        pool.adopt(first);
        Ok(Client {
            pool: Arc::new(pool),
        })
    }

    /// Key-value commands.
    pub fn kv(&self) -> Kv<'_> {
        Kv::new(self)
    }

    /// Message queues and exchanges (`QUEUE.*`, `EXCHANGE.*`; opcodes 0x40..=0x5F).
    /// Consume with acknowledgements through [`Queues::consumer`] or
    /// [`Queues::subscribe`], which own a connection each.
    pub fn queue(&self) -> Queues<'_> {
        Queues::new(self)
    }

    /// Streams (`STREAM.*`; opcodes 0x60..=0x70): topics, publishing, fetching by offset,
    /// consumer groups. Batch publishing through [`Stream::producer`], group consumption
    /// through [`Stream::group_consumer`], each on a connection of its own.
    pub fn stream(&self) -> Stream<'_> {
        Stream::new(self)
    }

    /// Documents (`DOC.*`, opcodes 0x80..=0x88; first cut of issue 13): JSON text in and out.
    pub fn db(&self) -> Db<'_> {
        Db::new(self)
    }

    /// A new, empty pipeline: queue requests, then
    /// [`Pipeline::execute`] sends them in one write on one connection.
    pub fn pipeline(&self) -> Pipeline<'_> {
        Pipeline::new(self)
    }

    /// Sends a PING and returns its echoed payload.
    pub fn ping(&self, payload: &[u8]) -> Result<Vec<u8>> {
        self.call(
            |out, id| binary::encode_ping(out, id, payload),
            decode::pong,
        )
    }

    /// Runs one command by name, `args[0]` being the name (`["APPEND", "k", "v"]`), over the
    /// binary protocol's CALL opcode: any command the server knows, with its reply as a typed
    /// [`Value`]. A command that replies with an error is [`Error::Server`].
    ///
    /// Subscriptions do not belong on the pool (their pushes would arrive on a connection
    /// other calls share): for queues use [`Queues::subscribe`]; for others open a
    /// [`Connection`] and read [`Connection::receive_push`].
    pub fn command<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Value> {
        self.call(|out, id| binary::encode_call(out, id, args), decode::typed)
    }

    /// Connections open now (idle or in use), at most the pool size.
    pub fn open_connections(&self) -> usize {
        self.pool.open_count()
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.pool.options
    }

    /// A client of a cluster: the leader's address as the last redirect named it (`None`
    /// before one did, after it failed, and always for a client of one node).
    pub fn cluster_leader(&self) -> Option<SocketAddr> {
        self.pool.leader()
    }

    /// One request on a pooled connection: encode, send, read the response,
    /// decode it. A response the decoder refuses discards the connection:
    /// a server that answers nonsense is not trusted with the next request.
    /// A client of a cluster goes through [`Client::call_cluster`] instead.
    pub(crate) fn call<T>(
        &self,
        encode: impl FnOnce(&mut Vec<u8>, u32) -> crate::Result<()>,
        decode: impl FnOnce(&binary::Response<'_>) -> Result<T>,
    ) -> Result<T> {
        if self.pool.is_cluster() {
            return self.call_cluster(encode, decode);
        }
        let mut connection = self.pool.checkout()?;
        connection.queue(encode)?;
        let response = connection.receive()?;
        let result = decode(&response);
        if matches!(&result, Err(error) if error.breaks_connection()) {
            connection.mark_broken();
        }
        result
    }

    /// [`Client::call`] for a client of a cluster: the request is encoded once, then sent
    /// (with a fresh request id each time) until a node other than a refusing one answers it
    /// or the budget is spent. See `cluster` for what each answer leads to.
    fn call_cluster<T>(
        &self,
        encode: impl FnOnce(&mut Vec<u8>, u32) -> crate::Result<()>,
        decode: impl FnOnce(&binary::Response<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut frame = Vec::new();
        encode(&mut frame, 0).map_err(Error::Request)?;
        let opcode = binary::peek_header(&frame)
            .expect("encode appended a frame header")
            .opcode;
        let policy = self.pool.options.retry;
        let resend_unknown = policy.retry_writes || cluster::is_read(opcode);
        let mut budget = cluster::Budget::start(policy);
        loop {
            budget.attempt();
            let mut connection = match self.pool.checkout_noting(Some(&mut budget.tried)) {
                Ok(connection) => connection,
                // Nothing was sent: another attempt is always safe.
                Err(error @ Error::Network(_)) => {
                    self.wait_or_give_up(&mut budget, false, error)?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let addr = connection.addr();
            budget.note_tried(addr);
            connection.queue_encoded(&frame);
            let (failure, moved) = match connection.receive() {
                Ok(response) => match cluster::refusal(&response) {
                    None => {
                        if cluster::only_the_leader_serves(opcode) {
                            // Reached through the seeds after the leader was forgotten.
                            self.pool.learn_leader(addr);
                        }
                        let result = decode(&response);
                        if matches!(&result, Err(error) if error.breaks_connection()) {
                            connection.mark_broken();
                        }
                        return result;
                    }
                    Some(answer) => {
                        let error = Error::Server(ServerError {
                            status: response.status,
                            message: response.message().into_owned(),
                        });
                        match answer {
                            cluster::Answer::Refused(cluster::Refusal::Moved(leader)) => {
                                self.pool.set_leader(leader);
                                (error, true)
                            }
                            cluster::Answer::Refused(cluster::Refusal::Busy(_)) => (error, false),
                            cluster::Answer::Withdrawn(_) => {
                                // The server closes the connection after this reply.
                                connection.mark_broken();
                                self.pool.forget_leader(addr);
                                if !resend_unknown {
                                    return Err(indeterminate(addr, error));
                                }
                                (error, false)
                            }
                        }
                    }
                },
                // Written, then lost: the request may have run.
                Err(error @ Error::Network(_)) => {
                    self.pool.forget_leader(addr);
                    if !resend_unknown {
                        return Err(indeterminate(addr, error));
                    }
                    (error, false)
                }
                Err(error) => return Err(error),
            };
            drop(connection);
            self.wait_or_give_up(&mut budget, moved, failure)?;
        }
    }

    /// Sleeps before the next attempt, or ends the call with [`Error::RetriesExhausted`].
    pub(crate) fn wait_or_give_up(
        &self,
        budget: &mut cluster::Budget,
        after_moved: bool,
        failure: Error,
    ) -> Result<()> {
        match budget.next_wait(after_moved) {
            Some(wait) => {
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                Ok(())
            }
            None => Err(Error::RetriesExhausted {
                attempts: budget.attempts(),
                elapsed: budget.elapsed(),
                tried: std::mem::take(&mut budget.tried),
                last: Box::new(failure),
            }),
        }
    }

    /// One row of `binary::commands::TABLE` on the pool, decoded by `decode` (given the value
    /// and the row's opcode): [`table_request`] on a pooled connection, or, for a client of a
    /// cluster, through the retry loop. Documents and streams send their single calls here.
    pub(crate) fn table_call<T>(
        &self,
        command: &'static str,
        args: &[std::borrow::Cow<'_, [u8]>],
        decode: impl FnOnce(&Value, u8) -> Result<T>,
    ) -> Result<T> {
        if !self.pool.is_cluster() {
            let mut connection = self.pool.checkout()?;
            return table_request(&mut connection, command, args, decode);
        }
        let spec = table_row(command);
        self.call(
            |out, id| binary::encode_command(out, id, spec, args),
            |response| decode::typed(response).and_then(|value| decode(&value, spec.opcode)),
        )
    }

    pub(crate) fn checkout(&self) -> Result<pool::Pooled<'_>> {
        self.pool.checkout()
    }

    /// A new connection outside the pool (and its size), with the client's options: for a
    /// consumer or subscriber, whose connection holds state other calls must not share.
    pub(crate) fn open_dedicated(&self) -> Result<Connection> {
        self.pool.open_connection()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("open_connections", &self.pool.open_count())
            .finish()
    }
}

/// [`Error::Indeterminate`] for a request sent to `addr` whose outcome `cause` hides.
fn indeterminate(addr: SocketAddr, cause: Error) -> Error {
    Error::Indeterminate {
        addr,
        cause: Box::new(cause),
    }
}

/// The row of `binary::commands::TABLE` a data model's command is sent as.
pub(crate) fn table_row(name: &'static str) -> &'static binary::CommandSpec {
    binary::commands::by_name(name.as_bytes())
        .unwrap_or_else(|| panic!("'{name}' is a row of binary::commands::TABLE"))
}

/// One table-row request on `connection` (pooled or owned) and its typed answer, decoded by
/// `decode` (given the value and the row's opcode). A response that makes no sense breaks the
/// connection, as for every other call. Queues, streams and documents all send this way.
pub(crate) fn table_request<T>(
    connection: &mut Connection,
    command: &'static str,
    args: &[std::borrow::Cow<'_, [u8]>],
    decode: impl FnOnce(&Value, u8) -> Result<T>,
) -> Result<T> {
    let spec = table_row(command);
    connection.queue(|out, id| binary::encode_command(out, id, spec, args))?;
    let response = connection.receive()?;
    let result = decode::typed(&response).and_then(|value| decode(&value, spec.opcode));
    if matches!(&result, Err(error) if error.breaks_connection()) {
        connection.mark_broken();
    }
    result
}
