//! One client connection: its buffers, protocol detection, request
//! dispatch, parked requests, gated replies and writing.
//!
//! Requests are handled in order as they arrive, until one parks (`Action::Park`): then
//! bytes keep being read into the buffer, but no request is handled until the parked one
//! completes (`wake`, `park_timed_out`), which keeps replies in request order. Replies go to
//! `out`; with reply gates, a [`GateQueue`] says from which byte on they wait.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::gates::{GateQueue, ReplyOrigin};
use super::wake::ConnectionHandle;
use super::{Action, Protocol, Service};
use crate::binary::{self, Status};
use crate::error::Error;
use crate::io_counters::IoSlot;
use crate::resp::{self, Reply, RespVersion};

/// Bytes asked of the socket per `read` call.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Bytes one connection may read per loop iteration before the others get
/// their turn; a flooding client cannot starve the rest.
const READ_BUDGET_BYTES: usize = 1024 * 1024;
/// Idle buffers above this capacity are shrunk back, so one large request
/// or reply does not pin its memory for the life of the connection. Large
/// enough for a batch of a hundred 1 KB documents (DOC.INSERT of ~105 KB):
/// at 64 KiB, every such request regrew its buffer (a fresh allocation, page
/// faults and zeroing: ~18% of a batched insert's server time) and shrank it
/// again (docs/benchmarks.md, "Documents").
const IDLE_BUFFER_KEEP_BYTES: usize = 256 * 1024;

/// Per-loop buffers reused across requests, so parsing a command allocates
/// nothing once they have grown.
#[derive(Default)]
pub(super) struct Scratch {
    ranges: Vec<Range<usize>>,
    /// Always empty between requests; kept only for its allocation.
    args: Vec<&'static [u8]>,
}

/// Re-types an empty vector of slices to another lifetime, keeping its
/// allocation (the in-place `collect` reuses the buffer because the element
/// layout is the same). This is how a reusable `Vec<&[u8]>` can hold slices
/// of a buffer that is borrowed only for one request, without `unsafe`.
fn recycle<'b>(mut slices: Vec<&[u8]>) -> Vec<&'b [u8]> {
    slices.clear();
    slices
        .into_iter()
        .map(|_| -> &'b [u8] { unreachable!("vector is empty") })
        .collect()
}

/// The origin recorded for a RESP request's reply: RESP has no opcode or request id.
const RESP_REQUEST: ReplyOrigin = ReplyOrigin::Request {
    opcode: 0,
    request_id: 0,
};

/// What a connection's handling needs from its loop, for one call.
pub(super) struct Handling<'a, S> {
    pub service: &'a S,
    pub scratch: &'a mut Scratch,
    pub output_limit_bytes: usize,
    /// `Some(seq)` when reply gates are configured: the highest seq the loop has seen open.
    /// `None`: no gates, and `Service::take_reply_gate` is never called.
    pub gates_known_open: Option<u64>,
}

/// A request waiting to be completed by `on_wake` or `on_park_timeout`.
#[derive(Debug, Clone, Copy)]
struct Parked {
    /// Which park this is (the connection counts them): a timer set by an earlier park does
    /// not fire for this one.
    number: u64,
    /// The parked request, for a gate recorded when it completes.
    origin: ReplyOrigin,
}

/// Why a connection is past its time.
pub(super) enum TimedOut {
    /// Nothing received for the idle timeout.
    Idle,
    /// The request at the front of the buffer has been incomplete for this long.
    Request(Duration),
}

/// What a read pass decided.
pub(super) struct ReadOutcome {
    /// False: close the connection now.
    pub keep_open: bool,
    /// The read budget ran out; read again next iteration.
    pub read_budget_used: bool,
}

pub(super) struct Connection<T> {
    stream: TcpStream,
    session: T,
    /// Names this connection to other threads; its id is the connection's id.
    handle: ConnectionHandle,
    /// `None` until the first byte arrives.
    protocol: Option<Protocol>,
    /// Received bytes are `read_buf[..read_end]`; `read_start..read_end` is not yet handled.
    /// The buffer's length past `read_end` is room already zeroed for the next read, so a
    /// read does not zero 16 KiB first (that memset was 5% of a pipelined server's
    /// instructions).
    read_buf: Vec<u8>,
    read_start: usize,
    read_end: usize,
    resp_checker: resp::Checker,
    /// Most unhandled bytes buffered behind a parked request (`ServerConfig::
    /// max_request_bytes`): a client pipelining without end behind a blocked request is
    /// refused, as one sending an endless request is.
    max_request_bytes: usize,
    /// Replies; `write_start..` is not yet sent.
    out: Vec<u8>,
    write_start: usize,
    /// Output-stream position of `out[0]` (bytes drained from its front so far): gates
    /// record stream positions, which draining does not move.
    out_base: u64,
    /// Replies waiting for their gates (empty unless some do).
    gates: GateQueue,
    /// This connection is in its loop's list of gated connections.
    listed_as_gated: bool,
    /// The request being waited on; requests behind it are not handled until it completes.
    parked: Option<Parked>,
    /// Parks so far, to number them.
    parks_begun: u64,
    /// `(deadline_ms, park number)` of a park with a deadline, for the loop's timers.
    new_timer: Option<(u64, u64)>,
    /// No more requests will be handled; close once `out` is sent.
    closing: bool,
    /// WRITABLE is part of the registered interest.
    wants_writable: bool,
    /// When bytes last arrived (or the connection opened): for the idle timeout.
    last_received_at: Instant,
    /// When the first byte of the incomplete request at the front of the buffer arrived
    /// (`None`: no partial request buffered): for the request timeout.
    partial_request_since: Option<Instant>,
    /// Unhandled bytes this connection last added to the server-wide count of incomplete
    /// requests (`Shared::request_bytes`; kept only under `max_request_memory_bytes`).
    accounted_request_bytes: usize,
    /// Its loop's byte counters.
    io: IoSlot,
}

impl<T> Connection<T> {
    pub(super) fn new(
        stream: TcpStream,
        session: T,
        handle: ConnectionHandle,
        max_request_bytes: usize,
        io: IoSlot,
    ) -> Self {
        Connection {
            stream,
            session,
            handle,
            protocol: None,
            read_buf: Vec::new(),
            read_end: 0,
            read_start: 0,
            resp_checker: resp::Checker::with_max_frame_bytes(max_request_bytes),
            max_request_bytes,
            out: Vec::new(),
            write_start: 0,
            out_base: 0,
            gates: GateQueue::default(),
            listed_as_gated: false,
            parked: None,
            parks_begun: 0,
            new_timer: None,
            closing: false,
            wants_writable: false,
            last_received_at: Instant::now(),
            partial_request_since: None,
            accounted_request_bytes: 0,
            io,
        }
    }

    /// The connection's id (unique over the process).
    pub(super) fn id(&self) -> u64 {
        self.handle.id()
    }

    pub(super) fn handle(&self) -> &ConnectionHandle {
        &self.handle
    }

    pub(super) fn is_closing(&self) -> bool {
        self.closing
    }

    /// The number of the current park, if a request is parked.
    pub(super) fn parked_number(&self) -> Option<u64> {
        self.parked.map(|parked| parked.number)
    }

    /// The deadline of a park begun since the last call: `(deadline_ms, park number)`.
    pub(super) fn take_new_timer(&mut self) -> Option<(u64, u64)> {
        self.new_timer.take()
    }

    /// True the first time it is called while replies wait for gates: the loop then lists
    /// the connection among those whose gates it checks.
    pub(super) fn needs_gate_listing(&mut self) -> bool {
        let needed = !self.gates.is_empty() && !self.listed_as_gated;
        self.listed_as_gated |= needed;
        needed
    }

    /// The loop took the connection off its gated list (no reply waits any more).
    pub(super) fn unlist_gated(&mut self) {
        self.listed_as_gated = false;
    }

    pub(super) fn has_gated_replies(&self) -> bool {
        !self.gates.is_empty()
    }

    /// The highest gate a reply of this connection waits for.
    pub(super) fn highest_gate(&self) -> u64 {
        self.gates.highest_seq()
    }

    /// Opens the gates up to `opened_through`; true if some reply may now leave.
    pub(super) fn release_gates(
        &mut self,
        opened_through: u64,
        withdrawn: Option<&super::gates::Withdrawn>,
    ) -> bool {
        self.gates.release(opened_through, withdrawn)
    }

    /// Whether a held reply waits on a gate in `withdrawn`.
    pub(super) fn holds_withdrawn(&self, withdrawn: &super::gates::Withdrawn) -> bool {
        self.gates.holds_withdrawn(withdrawn)
    }

    /// The gates still closed failed (`reason`): drops every reply from the first of them on,
    /// answers the first request among those with one error, and closes once that is sent.
    /// After a failed flush the client cannot know which of its pipelined writes reached the
    /// disk; one truthful error and a close is all that can be said. Replies before the
    /// failed gate were already allowed out and stay.
    pub(super) fn withdraw_replies(&mut self, reason: &str) {
        let Some(withdrawal) = self.gates.withdraw() else {
            return;
        };
        let cut = usize::try_from(withdrawal.from - self.out_base)
            .expect("a gated reply lies inside the output buffer");
        assert!(
            self.write_start <= cut && cut <= self.out.len(),
            "held replies were never sent"
        );
        self.out.truncate(cut);
        let message = format!("ERR {reason}");
        match self.protocol {
            Some(Protocol::Binary) => {
                let (opcode, request_id) = withdrawal.first_request.unwrap_or((0, 0));
                binary::encode_error(&mut self.out, opcode, request_id, Status::Error, &message);
            }
            _ => Reply::new(&mut self.out, RespVersion::Resp2).error(&message),
        }
        self.stop_handling();
    }

    /// No request will be handled any more; the connection closes once its output is sent.
    fn stop_handling(&mut self) {
        self.closing = true;
        self.parked = None;
    }

    /// Brings this connection's share of `total` (bytes of incomplete requests over all
    /// connections) up to date and returns the new total.
    pub(super) fn account_request_bytes(&mut self, total: &AtomicUsize) -> usize {
        let unhandled = if self.closing {
            0
        } else {
            self.read_end - self.read_start
        };
        self.share_request_bytes(total, unhandled)
    }

    /// Takes this connection's share out of `total` (it is closing).
    pub(super) fn release_request_bytes(&mut self, total: &AtomicUsize) {
        self.share_request_bytes(total, 0);
    }

    /// Sets this connection's share of `total` to `bytes`; returns the new total. The change
    /// may be negative: added as a wrapped difference, which the atomic's wrapping add undoes.
    fn share_request_bytes(&mut self, total: &AtomicUsize, bytes: usize) -> usize {
        let before = std::mem::replace(&mut self.accounted_request_bytes, bytes);
        let change = bytes.wrapping_sub(before);
        total
            .fetch_add(change, Ordering::Relaxed)
            .wrapping_add(change)
    }

    /// An incomplete request is buffered (and the connection still reads).
    pub(super) fn holds_partial_request(&self) -> bool {
        !self.closing && self.read_start < self.read_end
    }

    /// Whether the connection is past its idle or request timeout at `now`. A connection
    /// whose request is parked, or whose replies wait for gates, is waiting on the server,
    /// not idle (a blocking pop may wait for ever, as in Redis); and bytes buffered behind a
    /// parked request are not an incomplete request.
    pub(super) fn timed_out(
        &self,
        now: Instant,
        idle_timeout: Option<Duration>,
        request_timeout: Option<Duration>,
    ) -> Option<TimedOut> {
        if self.closing {
            return None;
        }
        if let (Some(since), Some(limit)) = (self.partial_request_since, request_timeout) {
            let waited = now.saturating_duration_since(since);
            if waited >= limit {
                return Some(TimedOut::Request(limit));
            }
        }
        if self.parked.is_some() || !self.gates.is_empty() {
            return None;
        }
        match idle_timeout {
            Some(limit) if now.saturating_duration_since(self.last_received_at) >= limit => {
                Some(TimedOut::Idle)
            }
            _ => None,
        }
    }

    /// Answers a request that did not arrive in time with a protocol error; the connection
    /// closes once it is sent.
    pub(super) fn refuse_slow_request(&mut self, after: Duration) {
        self.refuse(&format!(
            "Protocol error: request not complete after {} s",
            after.as_secs_f64()
        ));
    }

    /// Answers the incomplete request at the front with `message` (a protocol error in the
    /// connection's protocol) and stops reading; the connection closes once it is sent.
    pub(super) fn refuse(&mut self, message: &str) {
        match self.protocol {
            Some(Protocol::Binary) => {
                binary::encode_error(&mut self.out, 0, 0, Status::ProtocolError, message)
            }
            _ => Reply::new(&mut self.out, RespVersion::Resp2).error(&format!("ERR {message}")),
        }
        self.stop_handling();
    }

    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub(super) fn session_mut(&mut self) -> &mut T {
        &mut self.session
    }

    /// Output not sent yet, held by a gate or not.
    pub(super) fn has_pending_output(&self) -> bool {
        self.write_start < self.out.len()
    }

    /// End of what may be sent now: the start of the first reply held by a gate, or all.
    fn sendable_end(&self) -> usize {
        match self.gates.held_from() {
            Some(at) => usize::try_from(at - self.out_base)
                .expect("a gated reply lies inside the output buffer"),
            None => self.out.len(),
        }
    }

    fn has_sendable_output(&self) -> bool {
        self.write_start < self.sendable_end()
    }

    fn pending_output_bytes(&self) -> usize {
        self.out.len() - self.write_start
    }

    /// Reads what the socket has (up to the budget) and handles every complete
    /// request (none while one is parked); the replies wait in the output buffer until the
    /// loop calls `finish_replies`, after every ready connection has been handled, so one
    /// group fsync covers the writes of all of them.
    pub(super) fn read_and_handle<S: Service<Session = T>>(
        &mut self,
        ctx: &mut Handling<'_, S>,
    ) -> ReadOutcome {
        let mut budget = READ_BUDGET_BYTES;
        let mut peer_closed = false;
        // One clock read per readiness event serves both timeouts.
        let now = Instant::now();
        while !self.closing {
            if budget == 0 {
                return ReadOutcome {
                    keep_open: true,
                    read_budget_used: true,
                };
            }
            self.make_room_for_read();
            let filled = self.read_end;
            let result = self
                .stream
                .read(&mut self.read_buf[filled..filled + READ_CHUNK_BYTES]);
            let received = *result.as_ref().unwrap_or(&0);
            self.read_end = filled + received;
            match result {
                Ok(0) => {
                    peer_closed = true;
                    break;
                }
                Ok(received) => {
                    self.io.read(received);
                    budget = budget.saturating_sub(received);
                    self.last_received_at = now;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    return ReadOutcome {
                        keep_open: false,
                        read_budget_used: false,
                    }
                }
            }
            if !self.handle_requests(ctx, now) {
                return ReadOutcome {
                    keep_open: false,
                    read_budget_used: false,
                };
            }
            if self.parked.is_some() && self.read_end - self.read_start > self.max_request_bytes {
                self.refuse(&format!(
                    "Protocol error: more than {} bytes of requests behind a blocked one",
                    self.max_request_bytes
                ));
            }
            if received < READ_CHUNK_BYTES {
                // A short read drained the socket: no need to spend a syscall on
                // the read that would only say WouldBlock (edge-triggered
                // readiness fires again when more bytes arrive).
                break;
            }
        }
        if peer_closed {
            // The peer may only have shut down its sending side: send what
            // it was promised, then close. A parked request is dropped, as Redis drops a
            // blocked client whose peer closed: the peer is most likely gone, and completing
            // it (a pop) would hand it data it never reads; `on_close` releases it.
            self.stop_handling();
        }
        ReadOutcome {
            keep_open: !self.closing || self.has_pending_output(),
            read_budget_used: false,
        }
    }

    /// Drops handled bytes from the front of the read buffer (and its excess memory when it
    /// is empty), and makes sure `READ_CHUNK_BYTES` of room follow the unhandled ones.
    fn make_room_for_read(&mut self) {
        if self.read_start == self.read_end {
            self.read_start = 0;
            self.read_end = 0;
            if self.read_buf.len() > IDLE_BUFFER_KEEP_BYTES {
                self.read_buf.truncate(IDLE_BUFFER_KEEP_BYTES);
                self.read_buf.shrink_to_fit();
            }
        } else if self.read_start > 0 {
            self.read_buf.copy_within(self.read_start..self.read_end, 0);
            self.read_end -= self.read_start;
            self.read_start = 0;
        }
        if self.read_buf.len() < self.read_end + READ_CHUNK_BYTES {
            self.read_buf.resize(self.read_end + READ_CHUNK_BYTES, 0);
        }
    }

    /// Handles every complete request in the buffer, in order, until one parks, and
    /// restarts the request timeout's clock when a new request is left at the front.
    /// Returns false if the connection must close at once (output limit passed).
    fn handle_requests<S: Service<Session = T>>(
        &mut self,
        ctx: &mut Handling<'_, S>,
        now: Instant,
    ) -> bool {
        let first_pending = self.read_start;
        let keep = self.handle_buffered_requests(ctx);
        if self.parked.is_some() || self.read_start == self.read_end {
            // Bytes behind a parked request wait for it, not for the client.
            self.partial_request_since = None;
        } else if self.read_start != first_pending || self.partial_request_since.is_none() {
            // A new request is at the front: its clock starts now.
            self.partial_request_since = Some(now);
        }
        keep
    }

    /// The loop of `handle_requests`.
    fn handle_buffered_requests<S: Service<Session = T>>(
        &mut self,
        ctx: &mut Handling<'_, S>,
    ) -> bool {
        while !self.closing && self.parked.is_none() && self.read_start < self.read_end {
            let first = self.read_buf[self.read_start];
            let protocol = *self
                .protocol
                .get_or_insert(if binary::is_binary_first_byte(first) {
                    Protocol::Binary
                } else {
                    Protocol::Resp
                });
            let handled = match protocol {
                Protocol::Resp => self.handle_resp(ctx),
                Protocol::Binary => self.handle_binary(ctx),
            };
            if !handled {
                break; // incomplete
            }
            if self.pending_output_bytes() > ctx.output_limit_bytes {
                return false;
            }
        }
        true
    }

    /// After the service wrote a reply (or parked) starting at `reply_start`: applies its
    /// action and, with gates configured, records the reply's gate.
    fn settle<S: Service<Session = T>>(
        &mut self,
        ctx: &Handling<'_, S>,
        reply_start: usize,
        action: Action,
        origin: ReplyOrigin,
    ) {
        match action {
            Action::Continue => self.parked = None,
            Action::Close => self.stop_handling(),
            Action::Park { deadline_ms } => self.park(deadline_ms, origin),
        }
        if let Some(known_open) = ctx.gates_known_open {
            let seq = ctx.service.take_reply_gate(&mut self.session);
            self.record_reply(reply_start, seq, known_open, origin);
        }
    }

    /// The loop answered a request itself (a protocol error, an unknown opcode), and closes
    /// after it if `close`.
    fn answered<S>(
        &mut self,
        ctx: &Handling<'_, S>,
        reply_start: usize,
        origin: ReplyOrigin,
        close: bool,
    ) {
        if close {
            self.stop_handling();
        }
        if ctx.gates_known_open.is_some() {
            self.record_reply(reply_start, None, 0, origin);
        }
    }

    fn record_reply(
        &mut self,
        reply_start: usize,
        seq: Option<u64>,
        known_open: u64,
        origin: ReplyOrigin,
    ) {
        let at = self.out_base + reply_start as u64;
        self.gates.record(at, seq, known_open, origin);
    }

    /// Parks (or parks again: a new number, so the previous deadline no longer fires). A
    /// park keeps the origin of the request that first parked.
    fn park(&mut self, deadline_ms: Option<u64>, origin: ReplyOrigin) {
        self.parks_begun += 1;
        let number = self.parks_begun;
        let origin = self.parked.map_or(origin, |parked| parked.origin);
        self.parked = Some(Parked { number, origin });
        self.new_timer = deadline_ms.map(|deadline_ms| (deadline_ms, number));
    }

    /// The connection was woken: lets the service complete its parked request or push
    /// messages (`Service::on_wake`), then handles the requests buffered behind a completed
    /// one. Returns false if the connection must close at once.
    pub(super) fn wake<S: Service<Session = T>>(
        &mut self,
        ctx: &mut Handling<'_, S>,
        now: Instant,
    ) -> bool {
        assert!(!self.closing, "a closing connection is not woken");
        let origin = self
            .parked
            .map_or(ReplyOrigin::Push, |parked| parked.origin);
        let reply_start = self.out.len();
        let action = ctx.service.on_wake(&mut self.session, &mut self.out);
        self.after_callback(ctx, reply_start, action, origin, now)
    }

    /// The parked request's deadline passed: lets the service write its timeout reply
    /// (`Service::on_park_timeout`), then handles the requests buffered behind it.
    pub(super) fn park_timed_out<S: Service<Session = T>>(
        &mut self,
        ctx: &mut Handling<'_, S>,
        now: Instant,
    ) -> bool {
        let parked = self.parked.expect("only a parked request times out");
        let reply_start = self.out.len();
        let action = ctx
            .service
            .on_park_timeout(&mut self.session, &mut self.out);
        self.after_callback(ctx, reply_start, action, parked.origin, now)
    }

    fn after_callback<S: Service<Session = T>>(
        &mut self,
        ctx: &mut Handling<'_, S>,
        reply_start: usize,
        action: Action,
        origin: ReplyOrigin,
        now: Instant,
    ) -> bool {
        let was_parked = self.parked.is_some();
        self.settle(ctx, reply_start, action, origin);
        if was_parked && self.parked.is_none() {
            // The wait was the server's: the idle clock starts again now.
            self.last_received_at = now;
        }
        let keep = self.handle_requests(ctx, now);
        keep && self.pending_output_bytes() <= ctx.output_limit_bytes
    }

    /// Handles one RESP command if a whole one is buffered; false if none is.
    fn handle_resp<S: Service<Session = T>>(&mut self, ctx: &mut Handling<'_, S>) -> bool {
        let (service, reply_start) = (ctx.service, self.out.len());
        let start = self.read_start;
        self.resp_checker
            .set_unauthenticated(service.requires_auth(&self.session));
        let frame = match self
            .resp_checker
            .check(&self.read_buf[start..self.read_end])
        {
            Ok(frame) => frame,
            Err(Error::Incomplete) => return false,
            Err(err) => {
                // Like Redis: reply, then close; the stream is out of step.
                Reply::new(&mut self.out, RespVersion::Resp2).error(&err.resp_reply());
                self.answered(ctx, reply_start, RESP_REQUEST, true);
                return true;
            }
        };
        self.read_start += frame.len;
        if frame.argc == 0 {
            return true;
        }
        let scratch = &mut *ctx.scratch;
        let buf = &mut self.read_buf[start..start + frame.len];
        resp::parse(buf, &frame, &mut scratch.ranges);
        let buf = &*buf;
        let mut args = recycle(std::mem::take(&mut scratch.args));
        args.extend(scratch.ranges.iter().map(|range| &buf[range.clone()]));
        let action = service.handle_resp(&mut self.session, &args, &mut self.out);
        scratch.args = recycle(args);
        self.settle(ctx, reply_start, action, RESP_REQUEST);
        true
    }

    /// Handles one binary request if a whole one is buffered.
    fn handle_binary<S: Service<Session = T>>(&mut self, ctx: &mut Handling<'_, S>) -> bool {
        let (service, reply_start) = (ctx.service, self.out.len());
        let start = self.read_start;
        let pending = &self.read_buf[start..self.read_end];
        let limit = if service.requires_auth(&self.session) {
            binary::UNAUTHENTICATED_MAX_BODY_BYTES
        } else {
            binary::MAX_REQUEST_BODY_BYTES
        };
        let len = match binary::check(pending, limit) {
            Ok(len) => len,
            Err(Error::Incomplete) => return false,
            Err(err) => {
                let header = binary::peek_header(pending);
                let (opcode, id) = header.map_or((0, 0), |h| (h.opcode, h.request_id));
                binary::encode_error(
                    &mut self.out,
                    opcode,
                    id,
                    Status::ProtocolError,
                    &err.to_string(),
                );
                let origin = ReplyOrigin::Request {
                    opcode,
                    request_id: id,
                };
                self.answered(ctx, reply_start, origin, true);
                return true;
            }
        };
        self.read_start += len;
        let frame = &self.read_buf[start..start + len];
        let header = binary::peek_header(frame).expect("checked frame has a header");
        let origin = ReplyOrigin::Request {
            opcode: header.opcode,
            request_id: header.request_id,
        };
        match binary::parse_request(frame) {
            Ok(request) => {
                let action = service.handle_binary(&mut self.session, &request, &mut self.out);
                self.settle(ctx, reply_start, action, origin);
            }
            Err(err) => {
                let status = if err.is_recoverable() {
                    Status::UnknownOpcode
                } else {
                    Status::ProtocolError
                };
                binary::encode_error(
                    &mut self.out,
                    header.opcode,
                    header.request_id,
                    status,
                    &err.to_string(),
                );
                self.answered(ctx, reply_start, origin, !err.is_recoverable());
            }
        }
        true
    }

    /// Writes the replies the gates let go. Returns false if the connection must close.
    pub(super) fn finish_replies(&mut self, output_limit_bytes: usize) -> bool {
        self.flush(output_limit_bytes)
    }

    /// Writes as much output as the socket takes, up to the first reply a gate holds.
    /// Returns false if the connection must close (write error, or output, held replies
    /// included, over the limit).
    pub(super) fn flush(&mut self, output_limit_bytes: usize) -> bool {
        let sendable_end = self.sendable_end();
        while self.write_start < sendable_end {
            match self.stream.write(&self.out[self.write_start..sendable_end]) {
                Ok(0) => return false,
                Ok(sent) => {
                    self.io.written(sent);
                    self.write_start += sent;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        if !self.has_pending_output() {
            self.out_base += self.out.len() as u64;
            self.out.clear();
            self.write_start = 0;
            if self.out.capacity() > IDLE_BUFFER_KEEP_BYTES {
                self.out.shrink_to(IDLE_BUFFER_KEEP_BYTES);
            }
        } else if self.write_start > IDLE_BUFFER_KEEP_BYTES {
            self.out.drain(..self.write_start);
            self.out_base += self.write_start as u64;
            self.write_start = 0;
        }
        self.pending_output_bytes() <= output_limit_bytes
    }

    /// Registers for WRITABLE while output may be sent, READABLE only
    /// otherwise (replies held by a gate are not the socket's to wait for). Returns false
    /// if the connection is done (closing with nothing left to send, held or not) or the
    /// registry failed.
    pub(super) fn update_interest(&mut self, registry: &Registry, token: Token) -> bool {
        if self.closing && !self.has_pending_output() {
            return false;
        }
        let pending = self.has_sendable_output();
        if pending != self.wants_writable {
            let interest = if pending {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry
                .reregister(&mut self.stream, token, interest)
                .is_err()
            {
                return false;
            }
            self.wants_writable = pending;
        }
        true
    }
}
