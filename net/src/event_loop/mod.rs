//! The server side: one mio event loop per thread, each with its own
//! `SO_REUSEPORT` listener on the shared port (see `sys` for why), feeding
//! complete requests to a [`Service`].
//!
//! Layout: `connection` (one client's buffers, parsing, parking and gated output), `wake`
//! (waking a loop from other threads: [`ConnectionHandle`], [`LoopsHandle`]), `timers`
//! (parked deadlines), `gates` (reply gates: [`ReplyGates`] and each connection's queue).
//!
//! One iteration of a loop: poll (for at most 100 ms, or until the next parked deadline);
//! accept; read and handle every ready connection; deliver wakes from the mailbox
//! (`Service::on_wake`); fire due deadlines (`Service::on_park_timeout`); check the reply
//! gates its connections wait on; write every reply a gate does not hold; sweep for
//! timed-out connections.

mod connection;
mod gates;
mod timers;
mod wake;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::binary;
use crate::clock::{Clock, SystemClock};
use crate::io_counters::{IoCounters, IoSlot};
use connection::{Connection, Handling, Scratch};
pub use gates::{GateStatus, ReplyGates, Withdrawn};
use timers::{Timer, Timers};
use wake::LoopSignal;
pub use wake::{ConnectionHandle, LoopsHandle};

/// The protocol of a connection, chosen by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2/RESP3, multibulk or inline.
    Resp,
    /// Flin's binary frames (first byte [`binary::MAGIC`]).
    Binary,
}

/// What the connection should do after a request (or a wake, or a parked deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next request.
    Continue,
    /// Flush the replies written so far, then close. Requests after this
    /// one in the same read are not handled.
    Close,
    /// The request's reply is not written yet: it will be, from `Service::on_wake` (after
    /// someone calls the connection's [`ConnectionHandle::wake`]) or from
    /// `Service::on_park_timeout` once `deadline_ms` (absolute, on
    /// [`ServerConfig::clock`]) passes. Until then the requests pipelined after it are not
    /// handled (their bytes are buffered), so replies stay in request order, as for a
    /// blocked Redis client. `None`: no deadline. Neither the idle nor the request timeout
    /// closes a parked connection.
    Park {
        /// When to call `on_park_timeout`; `None` waits for a wake only.
        deadline_ms: Option<u64>,
    },
}

/// The server's command layer, called by the loops.
pub trait Service: Send + Sync + 'static {
    /// Per-connection state (auth, RESP version, transaction queue...).
    type Session: Send;
    /// A new connection was accepted. `handle` names it (`handle.id()` is its id, unique
    /// over the process); keep a clone to wake it from another thread, to complete a parked
    /// request or push messages to it.
    fn new_session(&self, handle: ConnectionHandle, peer: SocketAddr) -> Self::Session;
    /// One RESP command; `args[0]` is the command name. Append the reply to `out`.
    fn handle_resp(&self, session: &mut Self::Session, args: &[&[u8]], out: &mut Vec<u8>)
        -> Action;
    /// One binary request. Append the response frame to `out`
    /// (`request.respond(out, status)...finish()`).
    fn handle_binary(
        &self,
        session: &mut Self::Session,
        request: &binary::Request<'_>,
        out: &mut Vec<u8>,
    ) -> Action;
    /// The connection was woken ([`ConnectionHandle::wake`]); called on its loop's thread.
    /// With a parked request: complete it (write its reply, return `Continue`: the
    /// requests buffered behind it are handled next) or keep waiting (return `Park` again,
    /// with a new deadline or none). With or without one: write any messages to push into
    /// `out` (`resp::Reply::push` / `Reply::message`, `binary::encode_push`), in the
    /// protocol the session speaks. A connection that never sent a byte has no protocol yet
    /// and should not be pushed to. Not called for a connection that is closing. Default:
    /// `Continue` (a service that parks must answer here).
    fn on_wake(&self, _session: &mut Self::Session, _out: &mut Vec<u8>) -> Action {
        Action::Continue
    }
    /// The parked request's deadline passed: write its timeout reply (a null for a
    /// blocking pop) and return `Continue`, or `Park` again. Default: `Close` (a service
    /// that parks with a deadline must answer here; closing beats leaving the client out of
    /// step).
    fn on_park_timeout(&self, _session: &mut Self::Session, _out: &mut Vec<u8>) -> Action {
        Action::Close
    }
    /// Asked after every reply the service wrote (each handled request, each `on_wake` and
    /// `on_park_timeout`), only when [`ServerConfig::gates`] is set: the seq that must be
    /// open ([`ReplyGates`]) before that reply, and everything written after it on this
    /// connection, may be sent; `None` if the reply needs no gate. Called once per reply,
    /// so it should be a field read (take the seq the request's write left in the session).
    /// Default: `None`.
    fn take_reply_gate(&self, _session: &mut Self::Session) -> Option<u64> {
        None
    }
    /// True while the connection still has to authenticate (a password is set and it has not
    /// given it): its next request is then held to the small size limits Redis puts on such
    /// clients (`resp::UNAUTHENTICATED_*`, `binary::UNAUTHENTICATED_MAX_BODY_BYTES`), so a
    /// client without the password cannot make the server buffer a large request. Default:
    /// false.
    fn requires_auth(&self, _session: &Self::Session) -> bool {
        false
    }
    /// Called when a connection closes (client gone, error, shutdown), parked or not:
    /// release what a parked request holds (its place among a key's waiters, a message
    /// handed to it and not yet written). Its handles stay valid objects; waking them does
    /// nothing.
    fn on_close(&self, _session: &mut Self::Session) {}
}

/// Default for [`ServerConfig::max_clients`] (Redis's `maxclients`).
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// Default for [`ServerConfig::output_buffer_limit_bytes`].
pub const DEFAULT_OUTPUT_BUFFER_LIMIT_BYTES: usize = 256 * 1024 * 1024;
/// Default for [`ServerConfig::request_timeout`]: long enough for a 512 MiB value over a link
/// of 10 MB/s, short enough that a client trickling a request (slowloris) cannot pin its
/// connection and buffer for long.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a loop looks for connections past their idle or request timeout.
const TIMEOUT_SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// How often a loop looks at the shutdown flag even without a wake-up, so a
/// signal handler that can only set the flag still stops the server.
const SHUTDOWN_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long shutdown keeps trying to flush pending replies.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// Events taken from one `poll` call.
const EVENTS_PER_POLL: usize = 1024;

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);

/// How the server listens and what it allows.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Event loops (threads); 0 means one per available core.
    pub threads: usize,
    /// Connections open at once, over all loops; the next one gets
    /// `-ERR max number of clients reached` and is closed.
    pub max_clients: usize,
    /// A client whose unsent replies exceed this is disconnected, so a
    /// client that never reads cannot grow the server's memory.
    pub output_buffer_limit_bytes: usize,
    /// Largest RESP request (Redis's `client-query-buffer-limit`).
    pub max_request_bytes: usize,
    /// A connection that sends nothing for this long is closed (Redis's `timeout`); `None`
    /// (the default, as in Redis) keeps idle connections open.
    pub idle_timeout: Option<Duration>,
    /// A request still incomplete this long after its first byte arrived closes its
    /// connection with a protocol error; `None` waits for ever.
    pub request_timeout: Option<Duration>,
    /// Most bytes of incomplete requests buffered over all connections; the connection whose
    /// read passes it, if it holds an incomplete request, is answered with an error and
    /// closed. `None` (the default): each connection is bounded by `max_request_bytes` only.
    pub max_request_memory_bytes: Option<usize>,
    /// The time parked requests' deadlines are measured in ([`SystemClock`] by default);
    /// tests inject a clock they move by hand, then call [`LoopsHandle::wake_all`].
    pub clock: Arc<dyn Clock>,
    /// The authority that opens reply gates; `None` (the default): replies are never held,
    /// and `Service::take_reply_gate` is never called.
    pub gates: Option<Arc<dyn ReplyGates>>,
    /// Where the loops count the bytes they read and write (a fresh set by default; the
    /// daemon passes the one its metrics read).
    pub io: Arc<IoCounters>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("bind", &self.bind)
            .field("threads", &self.threads)
            .field("max_clients", &self.max_clients)
            .field("output_buffer_limit_bytes", &self.output_buffer_limit_bytes)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("idle_timeout", &self.idle_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_request_memory_bytes", &self.max_request_memory_bytes)
            .field("clock_now_ms", &self.clock.now_ms())
            .field("gates", &self.gates.as_ref().map(|gates| gates.status()))
            .finish()
    }
}

impl ServerConfig {
    /// Defaults: one loop per core, 10,000 clients, 256 MiB output limit,
    /// 1 GiB requests, no idle timeout, 60 s to finish a request.
    pub fn new(bind: SocketAddr) -> Self {
        ServerConfig {
            bind,
            threads: 0,
            max_clients: DEFAULT_MAX_CLIENTS,
            output_buffer_limit_bytes: DEFAULT_OUTPUT_BUFFER_LIMIT_BYTES,
            max_request_bytes: crate::resp::MAX_FRAME_BYTES,
            idle_timeout: None,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            max_request_memory_bytes: None,
            clock: Arc::new(SystemClock),
            gates: None,
            io: Arc::new(IoCounters::new()),
        }
    }

    fn thread_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Stops a running server from any thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    state: Arc<ShutdownState>,
}

struct ShutdownState {
    requested: AtomicBool,
    loops: LoopsHandle,
}

impl ShutdownHandle {
    /// Asks every loop to stop: they stop accepting, flush pending replies
    /// (best effort, for up to a second), close connections, and `run`
    /// returns.
    pub fn shutdown(&self) {
        self.state.requested.store(true, Ordering::SeqCst);
        // A failed wake is covered by the periodic flag check.
        self.state.loops.wake_all();
    }

    /// True once shutdown was requested.
    pub fn is_shutdown(&self) -> bool {
        self.state.requested.load(Ordering::SeqCst)
    }
}

type LoopRunner = Box<dyn FnOnce() -> io::Result<()> + Send>;

/// A bound, not yet running server.
pub struct Server {
    local_addr: SocketAddr,
    loops: Vec<LoopRunner>,
    shutdown: ShutdownHandle,
    loops_handle: LoopsHandle,
}

impl Server {
    /// Binds (so a bind error is reported before threads start) and returns
    /// the handle.
    pub fn bind<S: Service>(config: ServerConfig, service: Arc<S>) -> io::Result<Server> {
        let threads = config.thread_count();
        // Port 0: the first listener picks the port, the others join it.
        let first = crate::sys::reuseport_listener(config.bind)?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..threads {
            listeners.push(crate::sys::reuseport_listener(local_addr)?);
        }
        let mut polls = Vec::with_capacity(threads);
        let mut signals = Vec::with_capacity(threads);
        for _ in 0..threads {
            let poll = Poll::new()?;
            signals.push(Arc::new(LoopSignal::new(Waker::new(
                poll.registry(),
                WAKER,
            )?)));
            polls.push(poll);
        }
        let loops_handle = LoopsHandle::new(signals.clone());
        let shutdown = ShutdownHandle {
            state: Arc::new(ShutdownState {
                requested: AtomicBool::new(false),
                loops: loops_handle.clone(),
            }),
        };
        let shared = Arc::new(Shared {
            config,
            client_count: AtomicUsize::new(0),
            next_conn_id: AtomicU64::new(1),
            request_bytes: AtomicUsize::new(0),
        });
        let mut loops: Vec<LoopRunner> = Vec::with_capacity(threads);
        for (index, ((poll, listener), signal)) in
            polls.into_iter().zip(listeners).zip(signals).enumerate()
        {
            let mut listener = TcpListener::from_std(listener);
            poll.registry()
                .register(&mut listener, LISTENER, Interest::READABLE)?;
            let event_loop = EventLoop {
                index,
                signal,
                loops: loops_handle.clone(),
                poll,
                listener: Some(listener),
                service: Arc::clone(&service),
                shared: Arc::clone(&shared),
                shutdown: shutdown.clone(),
                connections: Vec::new(),
                free_slots: Vec::new(),
                deferred_reads: Vec::new(),
                accept_pending: false,
                replies_pending: Vec::new(),
                scratch: Scratch::default(),
                next_timeout_sweep: Instant::now() + TIMEOUT_SWEEP_INTERVAL,
                timers: Timers::default(),
                mail: Vec::new(),
                gated: Vec::new(),
                gates_known_open: 0,
                io: IoSlot::new(shared.config.io.clone(), index),
            };
            loops.push(Box::new(move || event_loop.run()));
        }
        Ok(Server {
            local_addr,
            loops,
            shutdown,
            loops_handle,
        })
    }

    /// The address the listeners are bound to (with the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// A handle that wakes every loop (for the reply-gate authority, and for tests that
    /// move a manual clock).
    pub fn loops_handle(&self) -> LoopsHandle {
        self.loops_handle.clone()
    }

    /// Runs the loops until `shutdown()` is called from another thread.
    /// Returns the first loop error, if any (an error in one loop shuts the
    /// others down).
    pub fn run(self) -> io::Result<()> {
        let mut threads = Vec::with_capacity(self.loops.len());
        for (index, run_loop) in self.loops.into_iter().enumerate() {
            let shutdown = self.shutdown.clone();
            let thread = std::thread::Builder::new()
                .name(format!("flin-net-{index}"))
                .spawn(move || {
                    let result = run_loop();
                    if result.is_err() {
                        shutdown.shutdown();
                    }
                    result
                })?;
            threads.push(thread);
        }
        let mut first_error = None;
        for thread in threads {
            let result = thread.join().unwrap_or_else(|_| {
                self.shutdown.shutdown();
                Err(io::Error::other("event loop thread panicked"))
            });
            if let Err(err) = result {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// State every loop shares.
struct Shared {
    config: ServerConfig,
    /// Open connections over all loops, for `max_clients`.
    client_count: AtomicUsize,
    /// Source of connection ids, unique over the process.
    next_conn_id: AtomicU64,
    /// Bytes of incomplete requests buffered over all loops; kept only when
    /// `max_request_memory_bytes` is set.
    request_bytes: AtomicUsize,
}

struct EventLoop<S: Service> {
    /// This loop's place among the server's loops.
    index: usize,
    /// Its doorbell and mailbox, shared with the handles of its connections.
    signal: Arc<LoopSignal>,
    /// Every loop's doorbell, for the gate authority.
    loops: LoopsHandle,
    poll: Poll,
    /// `None` once shutdown has stopped accepting.
    listener: Option<TcpListener>,
    service: Arc<S>,
    shared: Arc<Shared>,
    shutdown: ShutdownHandle,
    /// Slot `i` holds the connection with token `i`.
    connections: Vec<Option<Connection<S::Session>>>,
    free_slots: Vec<usize>,
    /// Connections that used their read budget with bytes possibly left in
    /// the socket; edge-triggered readiness will not fire again for those,
    /// so the loop reads them next iteration without waiting.
    deferred_reads: Vec<usize>,
    /// An accept failed with something other than WouldBlock (EMFILE...);
    /// retry next iteration, since edge-triggered readiness will not repeat.
    accept_pending: bool,
    /// Connections that handled requests this iteration: their replies are
    /// written after all of them were handled (see `finish_iteration`).
    replies_pending: Vec<usize>,
    scratch: Scratch,
    /// When to look for timed-out connections next.
    next_timeout_sweep: Instant,
    /// Deadlines of parked requests.
    timers: Timers,
    /// Mail taken from the signal, kept for its allocation.
    mail: Vec<(usize, u64)>,
    /// `(slot, id)` of the connections whose replies wait for a gate: the only ones the
    /// gate check looks at. Entries of closed connections are dropped by that check.
    gated: Vec<(usize, u64)>,
    /// The highest seq this loop has seen open (gates only open further).
    gates_known_open: u64,
    /// This loop's slot of the byte counters, handed to each connection.
    io: IoSlot,
}

/// What a connection's handling needs from its loop. A function, not a method, so it
/// borrows the loop's fields one by one and the connection can be borrowed beside them.
fn handling<'a, S: Service>(
    service: &'a S,
    scratch: &'a mut Scratch,
    config: &ServerConfig,
    gates_known_open: u64,
) -> Handling<'a, S> {
    Handling {
        service,
        scratch,
        output_limit_bytes: config.output_buffer_limit_bytes,
        gates_known_open: config.gates.as_ref().map(|_| gates_known_open),
    }
}

impl<S: Service> EventLoop<S> {
    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        while !self.shutdown.is_shutdown() {
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    self.close_all();
                    return Err(err);
                }
            }
            if std::mem::take(&mut self.accept_pending) {
                self.accept_all();
            }
            let mut woken = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => woken = true,
                    Token(slot) => {
                        let readable = event.is_readable() || event.is_read_closed();
                        self.on_ready(slot, readable, event.is_writable());
                    }
                }
            }
            for slot in std::mem::take(&mut self.deferred_reads) {
                self.on_ready(slot, true, false);
            }
            if woken {
                self.deliver_wakes();
            }
            self.fire_due_timers();
            self.finish_iteration();
            self.close_timed_out();
        }
        self.shut_down();
        Ok(())
    }

    /// How long `poll` may wait: until the next parked deadline, at most the shutdown
    /// poll interval; not at all while reads or accepts are pending.
    fn poll_timeout(&self) -> Duration {
        let mut timeout = if self.deferred_reads.is_empty() && !self.accept_pending {
            SHUTDOWN_POLL_INTERVAL
        } else {
            Duration::ZERO
        };
        if let Some(deadline_ms) = self.timers.next_deadline_ms() {
            let now_ms = self.shared.config.clock.now_ms();
            timeout = timeout.min(Duration::from_millis(deadline_ms.saturating_sub(now_ms)));
        }
        timeout
    }

    fn accept_all(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(_) => {
                    self.accept_pending = true;
                    return;
                }
            };
            self.admit(stream, peer);
        }
    }

    fn admit(&mut self, mut stream: mio::net::TcpStream, peer: SocketAddr) {
        let previous = self.shared.client_count.fetch_add(1, Ordering::SeqCst);
        if previous >= self.shared.config.max_clients {
            self.shared.client_count.fetch_sub(1, Ordering::SeqCst);
            self.shared.config.io.refused_one();
            // A fresh socket's send buffer has room for one line; if not,
            // the client is closed without it, which is all Redis promises.
            let _ = io::Write::write(&mut stream, b"-ERR max number of clients reached\r\n");
            return;
        }
        // Replies are written once per read; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.connections.push(None);
            self.connections.len() - 1
        });
        if self
            .poll
            .registry()
            .register(&mut stream, Token(slot), Interest::READABLE)
            .is_err()
        {
            self.free_slots.push(slot);
            self.shared.client_count.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let id = self.shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let handle = ConnectionHandle::new(Arc::clone(&self.signal), self.index, slot, id);
        let session = self.service.new_session(handle.clone(), peer);
        let max_request_bytes = self.shared.config.max_request_bytes;
        self.connections[slot] = Some(Connection::new(
            stream,
            session,
            handle,
            max_request_bytes,
            self.io.clone(),
        ));
    }

    fn on_ready(&mut self, slot: usize, readable: bool, writable: bool) {
        let Some(Some(connection)) = self.connections.get_mut(slot) else {
            return;
        };
        let limit = self.shared.config.output_buffer_limit_bytes;
        if readable {
            // Replies (old and new) are written in `finish_iteration`, after every ready
            // connection was handled, up to the first reply its gate holds.
            let mut ctx = handling(
                &*self.service,
                &mut self.scratch,
                &self.shared.config,
                self.gates_known_open,
            );
            let outcome = connection.read_and_handle(&mut ctx);
            if let Some(max) = self.shared.config.max_request_memory_bytes {
                let total = connection.account_request_bytes(&self.shared.request_bytes);
                if total > max && connection.holds_partial_request() {
                    connection.refuse(&format!(
                        "Protocol error: incomplete requests of all clients passed the \
                         server's limit of {max} bytes (--max-request-memory)"
                    ));
                }
            }
            if outcome.read_budget_used {
                self.deferred_reads.push(slot);
            }
            self.after_handling(slot, outcome.keep_open);
            return;
        }
        let mut keep = !writable || connection.flush(limit);
        if keep {
            keep = connection.update_interest(self.poll.registry(), Token(slot));
        }
        if !keep {
            self.close(slot);
        }
    }

    /// After a connection handled something (requests, a wake, a deadline): closes it, or
    /// takes its new deadline and gate listing and queues its replies for writing.
    fn after_handling(&mut self, slot: usize, keep_open: bool) {
        if !keep_open {
            self.close(slot);
            return;
        }
        let connection = self.connections[slot]
            .as_mut()
            .expect("the connection just handled is open");
        if let Some((deadline_ms, park)) = connection.take_new_timer() {
            self.timers.add(Timer {
                deadline_ms,
                slot,
                id: connection.id(),
                park,
            });
        }
        if connection.needs_gate_listing() {
            self.gated.push((slot, connection.id()));
        }
        self.replies_pending.push(slot);
    }

    /// Calls `on_wake` for every connection in the mailbox. An entry whose connection is
    /// gone (or whose slot another connection took since) is ignored.
    fn deliver_wakes(&mut self) {
        let mut mail = std::mem::take(&mut self.mail);
        self.signal.take_mail(&mut mail);
        let now = Instant::now();
        for &(slot, id) in &mail {
            let Some(Some(connection)) = self.connections.get_mut(slot) else {
                continue;
            };
            if connection.id() != id {
                continue;
            }
            connection.handle().clear_queued();
            if connection.is_closing() {
                continue;
            }
            let mut ctx = handling(
                &*self.service,
                &mut self.scratch,
                &self.shared.config,
                self.gates_known_open,
            );
            let keep_open = connection.wake(&mut ctx, now);
            self.after_handling(slot, keep_open);
        }
        mail.clear();
        self.mail = mail;
    }

    /// Calls `on_park_timeout` for every parked request whose deadline passed. A timer of
    /// a park that already ended (completed, parked again, connection closed) is ignored.
    fn fire_due_timers(&mut self) {
        if self.timers.is_empty() {
            return;
        }
        let now_ms = self.shared.config.clock.now_ms();
        let now = Instant::now();
        while let Some(timer) = self.timers.pop_due(now_ms) {
            let Some(Some(connection)) = self.connections.get_mut(timer.slot) else {
                continue;
            };
            if connection.id() != timer.id || connection.parked_number() != Some(timer.park) {
                continue;
            }
            let mut ctx = handling(
                &*self.service,
                &mut self.scratch,
                &self.shared.config,
                self.gates_known_open,
            );
            let keep_open = connection.park_timed_out(&mut ctx, now);
            self.after_handling(timer.slot, keep_open);
        }
        let connections = &self.connections;
        let open = connections.len() - self.free_slots.len();
        self.timers.compact(open, |timer| {
            connections
                .get(timer.slot)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.id() == timer.id && c.parked_number() == Some(timer.park))
        });
    }

    /// Asks the gate authority to open the highest gate this loop's connections wait on,
    /// reads where the gates stand, and lets out (or, after a failure, withdraws) what each
    /// gated connection holds. Looks only at the gated connections.
    fn check_gates(&mut self) {
        if self.gated.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let Some(gates) = shared.config.gates.as_deref() else {
            return;
        };
        let connections = &self.connections;
        let mut highest = 0;
        self.gated.retain(
            |&(slot, id)| match connections.get(slot).and_then(Option::as_ref) {
                Some(connection) if connection.id() == id => {
                    highest = highest.max(connection.highest_gate());
                    true
                }
                _ => false,
            },
        );
        if highest > self.gates_known_open {
            gates.request(highest, &self.loops);
        }
        let status = gates.status();
        self.gates_known_open = self.gates_known_open.max(status.opened_through);
        let mut at = 0;
        while at < self.gated.len() {
            let (slot, _) = self.gated[at];
            let connection = self.connections[slot]
                .as_mut()
                .expect("closed connections were dropped from the list");
            let withdrawn = status.withdrawn.as_ref();
            let mut changed = connection.release_gates(status.opened_through, withdrawn);
            if let Some(reason) = &status.failed {
                changed |= connection.has_gated_replies();
                connection.withdraw_replies(reason);
            } else if let Some(withdrawn) = withdrawn.filter(|w| connection.holds_withdrawn(w)) {
                changed = true;
                connection.withdraw_replies(&withdrawn.reason);
            }
            if changed {
                self.replies_pending.push(slot);
            }
            if connection.has_gated_replies() {
                at += 1;
            } else {
                connection.unlist_gated();
                self.gated.swap_remove(at);
            }
        }
    }

    /// Second half of an iteration: gated replies whose gates opened are let out; every
    /// connection that handled requests waits for durability (the first wait flushes for
    /// all of them: group commit across connections) and writes its replies.
    fn finish_iteration(&mut self) {
        self.check_gates();
        let limit = self.shared.config.output_buffer_limit_bytes;
        for slot in std::mem::take(&mut self.replies_pending) {
            let Some(Some(connection)) = self.connections.get_mut(slot) else {
                continue;
            };
            let mut keep = connection.finish_replies(limit);
            if keep {
                keep = connection.update_interest(self.poll.registry(), Token(slot));
            }
            if !keep {
                self.close(slot);
            }
        }
    }

    /// Every `TIMEOUT_SWEEP_INTERVAL`: closes connections idle past `idle_timeout`, and
    /// answers a request incomplete past `request_timeout` with an error, then closes.
    fn close_timed_out(&mut self) {
        let config = &self.shared.config;
        if config.idle_timeout.is_none() && config.request_timeout.is_none() {
            return;
        }
        let now = Instant::now();
        if now < self.next_timeout_sweep {
            return;
        }
        self.next_timeout_sweep = now + TIMEOUT_SWEEP_INTERVAL;
        let (idle_timeout, request_timeout) = (config.idle_timeout, config.request_timeout);
        let limit = config.output_buffer_limit_bytes;
        for slot in 0..self.connections.len() {
            let Some(connection) = self.connections[slot].as_mut() else {
                continue;
            };
            let keep = match connection.timed_out(now, idle_timeout, request_timeout) {
                None => true,
                Some(connection::TimedOut::Idle) => false,
                Some(connection::TimedOut::Request(after)) => {
                    connection.refuse_slow_request(after);
                    connection.flush(limit)
                        && connection.update_interest(self.poll.registry(), Token(slot))
                }
            };
            if !keep {
                self.close(slot);
            }
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(mut connection) = self.connections[slot].take() {
            connection.release_request_bytes(&self.shared.request_bytes);
            let _ = self.poll.registry().deregister(connection.stream_mut());
            self.service.on_close(connection.session_mut());
            self.free_slots.push(slot);
            self.shared.client_count.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn close_all(&mut self) {
        for slot in 0..self.connections.len() {
            self.close(slot);
        }
    }

    /// Stop accepting, flush what was answered (best effort, bounded in
    /// time), close everything. Requests already read were handled when they
    /// were read, so there is nothing left to handle but parked requests, which are
    /// closed (`on_close` releases them) and replies held by gates, which leave if their
    /// gates open within the time.
    fn shut_down(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let limit = self.shared.config.output_buffer_limit_bytes;
        let deadline = std::time::Instant::now() + SHUTDOWN_FLUSH_TIMEOUT;
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            // Replies held by a gate may still be let out (or withdrawn) within the time.
            self.check_gates();
            self.replies_pending.clear();
            for slot in 0..self.connections.len() {
                let Some(connection) = self.connections[slot].as_mut() else {
                    continue;
                };
                let registry = self.poll.registry();
                if !connection.flush(limit)
                    || !connection.has_pending_output()
                    || !connection.update_interest(registry, Token(slot))
                {
                    self.close(slot);
                }
            }
            let now = std::time::Instant::now();
            if self.connections.iter().all(Option::is_none) || now >= deadline {
                break;
            }
            let _ = self.poll.poll(&mut events, Some(deadline - now));
        }
        self.close_all();
    }
}
