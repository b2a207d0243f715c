//! One client connection: its buffers, protocol detection, request
//! dispatch and writing.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::{Action, Protocol, Service};
use crate::binary::{self, Status};
use crate::error::Error;
use crate::resp::{self, Reply, RespVersion};

/// Bytes asked of the socket per `read` call.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Bytes one connection may read per loop iteration before the others get
/// their turn; a flooding client cannot starve the rest.
const READ_BUDGET_BYTES: usize = 1024 * 1024;
/// Idle buffers above this capacity are shrunk back, so one large request
/// or reply does not pin its memory for the life of the connection.
const IDLE_BUFFER_KEEP_BYTES: usize = 64 * 1024;

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
    /// `None` until the first byte arrives.
    protocol: Option<Protocol>,
    /// Received bytes; `read_start..` is not yet handled.
    read_buf: Vec<u8>,
    read_start: usize,
    resp_checker: resp::Checker,
    /// Replies; `write_start..` is not yet sent.
    out: Vec<u8>,
    write_start: usize,
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
}

impl<T> Connection<T> {
    pub(super) fn new(stream: TcpStream, session: T, max_request_bytes: usize) -> Self {
        Connection {
            stream,
            session,
            protocol: None,
            read_buf: Vec::new(),
            read_start: 0,
            resp_checker: resp::Checker::with_max_frame_bytes(max_request_bytes),
            out: Vec::new(),
            write_start: 0,
            closing: false,
            wants_writable: false,
            last_received_at: Instant::now(),
            partial_request_since: None,
            accounted_request_bytes: 0,
        }
    }

    /// Brings this connection's share of `total` (bytes of incomplete requests over all
    /// connections) up to date and returns the new total.
    pub(super) fn account_request_bytes(&mut self, total: &AtomicUsize) -> usize {
        let unhandled = if self.closing {
            0
        } else {
            self.read_buf.len() - self.read_start
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
        !self.closing && self.read_start < self.read_buf.len()
    }

    /// Whether the connection is past its idle or request timeout at `now`.
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
        self.closing = true;
    }

    pub(super) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    pub(super) fn session_mut(&mut self) -> &mut T {
        &mut self.session
    }

    pub(super) fn has_pending_output(&self) -> bool {
        self.write_start < self.out.len()
    }

    fn pending_output_bytes(&self) -> usize {
        self.out.len() - self.write_start
    }

    /// Reads what the socket has (up to the budget) and handles every complete
    /// request; the replies wait in the output buffer until the loop calls
    /// `finish_replies`, after every ready connection has been handled, so one
    /// group fsync covers the writes of all of them.
    pub(super) fn read_and_handle<S: Service<Session = T>>(
        &mut self,
        service: &S,
        scratch: &mut Scratch,
        output_limit_bytes: usize,
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
            let filled = self.read_buf.len();
            self.read_buf.resize(filled + READ_CHUNK_BYTES, 0);
            let result = self.stream.read(&mut self.read_buf[filled..]);
            let received = *result.as_ref().unwrap_or(&0);
            self.read_buf.truncate(filled + received);
            match result {
                Ok(0) => {
                    peer_closed = true;
                    break;
                }
                Ok(received) => {
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
            if !self.handle_requests(service, scratch, output_limit_bytes, now) {
                return ReadOutcome {
                    keep_open: false,
                    read_budget_used: false,
                };
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
            // it was promised, then close.
            self.closing = true;
        }
        ReadOutcome {
            keep_open: !self.closing || self.has_pending_output(),
            read_budget_used: false,
        }
    }

    /// Drops handled bytes from the front of the read buffer, and its excess
    /// capacity when it is empty.
    fn make_room_for_read(&mut self) {
        if self.read_start == self.read_buf.len() {
            self.read_buf.clear();
            self.read_start = 0;
            if self.read_buf.capacity() > IDLE_BUFFER_KEEP_BYTES {
                self.read_buf.shrink_to(IDLE_BUFFER_KEEP_BYTES);
            }
        } else if self.read_start > 0 {
            self.read_buf.drain(..self.read_start);
            self.read_start = 0;
        }
    }

    /// Handles every complete request in the buffer, in order, and restarts
    /// the request timeout's clock when a new request is left at the front.
    /// Returns false if the connection must close at once (output limit
    /// passed).
    fn handle_requests<S: Service<Session = T>>(
        &mut self,
        service: &S,
        scratch: &mut Scratch,
        output_limit_bytes: usize,
        now: Instant,
    ) -> bool {
        let first_pending = self.read_start;
        let keep = self.handle_buffered_requests(service, scratch, output_limit_bytes);
        if self.read_start == self.read_buf.len() {
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
        service: &S,
        scratch: &mut Scratch,
        output_limit_bytes: usize,
    ) -> bool {
        while !self.closing && self.read_start < self.read_buf.len() {
            let first = self.read_buf[self.read_start];
            let protocol = *self
                .protocol
                .get_or_insert(if binary::is_binary_first_byte(first) {
                    Protocol::Binary
                } else {
                    Protocol::Resp
                });
            let handled = match protocol {
                Protocol::Resp => self.handle_resp(service, scratch),
                Protocol::Binary => self.handle_binary(service),
            };
            if !handled {
                break; // incomplete
            }
            if self.pending_output_bytes() > output_limit_bytes {
                return false;
            }
        }
        true
    }

    /// Handles one RESP command if a whole one is buffered.
    fn handle_resp<S: Service<Session = T>>(&mut self, service: &S, scratch: &mut Scratch) -> bool {
        let start = self.read_start;
        self.resp_checker
            .set_unauthenticated(service.requires_auth(&self.session));
        let frame = match self.resp_checker.check(&self.read_buf[start..]) {
            Ok(frame) => frame,
            Err(Error::Incomplete) => return false,
            Err(err) => {
                // Like Redis: reply, then close; the stream is out of step.
                Reply::new(&mut self.out, RespVersion::Resp2).error(&err.resp_reply());
                self.closing = true;
                return true;
            }
        };
        self.read_start += frame.len;
        if frame.argc == 0 {
            return true;
        }
        let buf = &mut self.read_buf[start..start + frame.len];
        resp::parse(buf, &frame, &mut scratch.ranges);
        let buf = &*buf;
        let mut args = recycle(std::mem::take(&mut scratch.args));
        args.extend(scratch.ranges.iter().map(|range| &buf[range.clone()]));
        let action = service.handle_resp(&mut self.session, &args, &mut self.out);
        scratch.args = recycle(args);
        if action == Action::Close {
            self.closing = true;
        }
        true
    }

    /// Handles one binary request if a whole one is buffered.
    fn handle_binary<S: Service<Session = T>>(&mut self, service: &S) -> bool {
        let start = self.read_start;
        let pending = &self.read_buf[start..];
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
                self.closing = true;
                return true;
            }
        };
        self.read_start += len;
        let frame = &self.read_buf[start..start + len];
        match binary::parse_request(frame) {
            Ok(request) => {
                if service.handle_binary(&mut self.session, &request, &mut self.out)
                    == Action::Close
                {
                    self.closing = true;
                }
            }
            Err(err) => {
                let header = binary::peek_header(frame).expect("checked frame has a header");
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
                self.closing |= !err.is_recoverable();
            }
        }
        true
    }

    /// Lets the service make the handled writes durable, then writes the
    /// replies. Returns false if the connection must close.
    pub(super) fn finish_replies<S: Service<Session = T>>(
        &mut self,
        service: &S,
        output_limit_bytes: usize,
    ) -> bool {
        service.before_reply_flush(&mut self.session);
        self.flush(output_limit_bytes)
    }

    /// Writes as much pending output as the socket takes. Returns false if
    /// the connection must close (write error, or output over the limit).
    pub(super) fn flush(&mut self, output_limit_bytes: usize) -> bool {
        while self.has_pending_output() {
            match self.stream.write(&self.out[self.write_start..]) {
                Ok(0) => return false,
                Ok(sent) => self.write_start += sent,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        if !self.has_pending_output() {
            self.out.clear();
            self.write_start = 0;
            if self.out.capacity() > IDLE_BUFFER_KEEP_BYTES {
                self.out.shrink_to(IDLE_BUFFER_KEEP_BYTES);
            }
        } else if self.write_start > IDLE_BUFFER_KEEP_BYTES {
            self.out.drain(..self.write_start);
            self.write_start = 0;
        }
        self.pending_output_bytes() <= output_limit_bytes
    }

    /// Registers for WRITABLE while output is pending, READABLE only
    /// otherwise. Returns false if the connection is done (closing with
    /// nothing left to send) or the registry failed.
    pub(super) fn update_interest(&mut self, registry: &Registry, token: Token) -> bool {
        let pending = self.has_pending_output();
        if self.closing && !pending {
            return false;
        }
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
