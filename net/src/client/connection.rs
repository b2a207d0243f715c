//! [`Connection`]: one blocking socket speaking the binary protocol, with
//! request ids checked on every response. The pool and the pipelines are
//! built on it; tools that manage their own sockets (`flin-bench`) use it
//! directly.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::decode;
use super::error::{Error, ProtocolError, Result, ServerError};
use super::ClientOptions;
use crate::binary::{self, Response, Status, Value, HEADER_LEN};
use crate::sys::{self, IdleSocket};

/// Size of the read buffer of a new connection; it doubles when a response
/// needs more.
const READ_BUFFER_INITIAL_BYTES: usize = 64 * 1024;
/// Buffers above this are shrunk back once empty, so one large response or
/// pipeline does not pin its memory for the life of the connection.
const IDLE_BUFFER_KEEP_BYTES: usize = 1024 * 1024;
/// Bytes of a RESP error line shown when the server answers in RESP.
const RESP_LINE_SHOWN_BYTES: usize = 256;

/// A message the server sent on its own (a binary push frame): what a subscription delivers.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// The kind of push: the opcode of the command that subscribed to it
    /// ([`binary::Opcode::Call`] for commands called by name).
    pub opcode: u8,
    /// The message.
    pub value: Value,
}

/// One request sent (or queued) and not answered yet.
#[derive(Debug, Clone, Copy)]
struct Awaiting {
    request_id: u32,
    opcode: u8,
}

/// A blocking connection to a Flin server over the binary protocol.
///
/// Requests are queued with [`Connection::queue`] (nothing is written yet),
/// written together by [`Connection::flush`], and their responses read in
/// order by [`Connection::receive`], which checks that each carries the id
/// and opcode of the oldest unanswered request. After a network or protocol
/// error the connection is *broken*: every later call fails at once, and the
/// pool discards it.
///
/// Push frames (messages the server sends on its own, told apart by their status byte) may
/// arrive between responses: `receive` sets them aside, in arrival order, and
/// [`Connection::receive_push`] hands them out. Responses keep their strict id and opcode
/// checks; a push never counts as one.
pub struct Connection {
    stream: TcpStream,
    /// The address it was opened to (kept, not asked of the socket: a cluster client compares
    /// it with the leader's at every checkout).
    addr: SocketAddr,
    /// Encoded requests not written yet.
    out: Vec<u8>,
    /// Received bytes: `read_start..read_end` are not parsed yet. The vector
    /// is kept at its full length (zeroed once when it grows), so reads need
    /// no fresh zeroing.
    read_buf: Vec<u8>,
    read_start: usize,
    read_end: usize,
    /// Id for the next request; wraps around (ids only have to tell
    /// consecutive requests apart).
    next_request_id: u32,
    /// Requests queued or sent whose responses have not been read, oldest
    /// first.
    awaiting: VecDeque<Awaiting>,
    /// A network or protocol error left the stream out of step.
    broken: bool,
    /// Largest response body accepted; a longer claim is a protocol error
    /// before any of its bytes are buffered.
    max_response_body_bytes: usize,
    /// Pushes received and not handed out yet, oldest first.
    pushes: VecDeque<Push>,
    /// Most pushes kept unread; one more is a protocol error that breaks the connection,
    /// so a subscriber that never reads cannot grow the client's memory without bound.
    max_queued_pushes: usize,
    /// The socket's read timeout as last set, so setting it again to the same value costs
    /// no system call (a subscriber alternates between waiting for a push and an ack).
    read_timeout: Option<Duration>,
}

impl Connection {
    /// Connects to `addr` with `options`' timeouts and, if the options carry
    /// a password, authenticates.
    pub fn open(addr: SocketAddr, options: &ClientOptions) -> Result<Connection> {
        let stream = TcpStream::connect_timeout(&addr, options.connect_timeout)?;
        // Requests are written once per call or pipeline: Nagle would only
        // add latency.
        stream.set_nodelay(true)?;
        stream.set_read_timeout(options.read_timeout)?;
        stream.set_write_timeout(options.write_timeout)?;
        let mut connection = Connection {
            stream,
            addr,
            out: Vec::new(),
            read_buf: vec![0; READ_BUFFER_INITIAL_BYTES],
            read_start: 0,
            read_end: 0,
            next_request_id: 1,
            awaiting: VecDeque::new(),
            broken: false,
            max_response_body_bytes: options.max_response_body_bytes,
            pushes: VecDeque::new(),
            max_queued_pushes: options.max_queued_pushes,
            read_timeout: options.read_timeout,
        };
        if let Some(password) = &options.password {
            let username = options.username.as_deref().unwrap_or_default();
            connection.queue(|out, id| binary::encode_auth(out, id, username, password))?;
            let response = connection.receive()?;
            decode::done(&response)?;
        }
        Ok(connection)
    }

    /// Queues one request: `encode` appends exactly one frame with the id it
    /// is given (use the `binary::encode_*` functions). Nothing is written
    /// until [`Connection::flush`] or [`Connection::receive`]. Returns the
    /// request id. If `encode` refuses (a limit would be passed), nothing is
    /// queued and the error is [`Error::Request`].
    ///
    /// Panics if `encode` appends something other than one frame with the
    /// given id: that is a bug in the caller, not something a server did.
    pub fn queue(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>, u32) -> crate::Result<()>,
    ) -> Result<u32> {
        let request_id = self.next_request_id;
        let frame_start = self.out.len();
        encode(&mut self.out, request_id).map_err(Error::Request)?;
        let header =
            binary::peek_header(&self.out[frame_start..]).expect("encode appended a frame header");
        assert!(
            header.request_id == request_id
                && frame_start + HEADER_LEN + header.body_len == self.out.len(),
            "encode must append exactly one frame with the request id it is given"
        );
        self.next_request_id = request_id.wrapping_add(1);
        self.awaiting.push_back(Awaiting {
            request_id,
            opcode: header.opcode,
        });
        Ok(request_id)
    }

    /// Queues frames encoded elsewhere (a pipeline's), giving each the next
    /// request id. `frames` must be whole frames from this crate's encoders.
    pub(crate) fn queue_encoded(&mut self, frames: &[u8]) -> usize {
        let mut at = self.out.len();
        self.out.extend_from_slice(frames);
        let mut count = 0;
        while at < self.out.len() {
            let header = binary::peek_header(&self.out[at..]).expect("whole frames");
            let request_id = self.next_request_id;
            self.next_request_id = request_id.wrapping_add(1);
            self.out[at + 4..at + 8].copy_from_slice(&request_id.to_le_bytes());
            self.awaiting.push_back(Awaiting {
                request_id,
                opcode: header.opcode,
            });
            at += HEADER_LEN + header.body_len;
            count += 1;
        }
        count
    }

    /// Writes every queued request in one `write_all`.
    pub fn flush(&mut self) -> Result<()> {
        self.check_usable()?;
        if self.out.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.stream.write_all(&self.out) {
            self.broken = true;
            return Err(Error::Network(error));
        }
        self.out.clear();
        if self.out.capacity() > IDLE_BUFFER_KEEP_BYTES {
            self.out.shrink_to(IDLE_BUFFER_KEEP_BYTES);
        }
        Ok(())
    }

    /// Reads the response to the oldest unanswered request (flushing queued
    /// requests first, so it cannot wait for an answer to something never
    /// sent). Every status is returned as it came except
    /// [`Status::ProtocolError`], which is an [`Error::Server`] and breaks
    /// the connection (the server closes it after sending that status).
    /// Push frames read on the way are queued for [`Connection::receive_push`].
    ///
    /// Panics if no request is awaiting a response (a bug in the caller).
    pub fn receive(&mut self) -> Result<Response<'_>> {
        let awaiting = *self
            .awaiting
            .front()
            .expect("receive() called with no request awaiting a response");
        self.flush()?;
        let start = loop {
            let frame_len = self.next_frame_len(true)?;
            let start = self.read_start;
            self.read_start += frame_len;
            if !self.take_push(start, frame_len)? {
                break start;
            }
        };
        self.awaiting.pop_front();
        let end = self.read_start;
        let response = match binary::parse_response(&self.read_buf[start..end]) {
            Ok(response) => response,
            Err(error) => {
                self.broken = true;
                return Err(Error::Protocol(ProtocolError::Frame(error)));
            }
        };
        if response.status == Status::ProtocolError {
            self.broken = true;
            return Err(Error::Server(ServerError {
                status: response.status,
                message: response.message().into_owned(),
            }));
        }
        if response.request_id != awaiting.request_id {
            self.broken = true;
            return Err(Error::Protocol(ProtocolError::UnexpectedRequestId {
                expected: awaiting.request_id,
                got: response.request_id,
            }));
        }
        if response.opcode != awaiting.opcode {
            self.broken = true;
            return Err(Error::Protocol(ProtocolError::UnexpectedOpcode {
                expected: awaiting.opcode,
                got: response.opcode,
            }));
        }
        Ok(response)
    }

    /// The next push: a queued one, or else the next frame from the server, which must be a
    /// push (no request may be awaiting its response: read those with
    /// [`Connection::receive`] first). Blocks up to the read timeout; a timeout returns
    /// [`Error::Network`] but leaves the connection usable (nothing is out of step while no
    /// response is awaited), so a subscriber can poll with a short timeout.
    ///
    /// Panics if a request is awaiting its response (a bug in the caller).
    pub fn receive_push(&mut self) -> Result<Push> {
        if let Some(push) = self.pushes.pop_front() {
            return Ok(push);
        }
        assert!(
            self.awaiting.is_empty(),
            "receive_push() called with a response awaited: receive() it first"
        );
        self.check_usable()?;
        let frame_len = self.next_frame_len(false)?;
        let start = self.read_start;
        self.read_start += frame_len;
        if self.take_push(start, frame_len)? {
            return Ok(self.pushes.pop_front().expect("a push was just queued"));
        }
        self.broken = true;
        let header = binary::peek_header(&self.read_buf[start..]).expect("a checked frame");
        Err(Error::Protocol(ProtocolError::UnsolicitedResponse {
            request_id: header.request_id,
            opcode: header.opcode,
        }))
    }

    /// A push already received, without reading from the socket.
    pub fn try_receive_push(&mut self) -> Option<Push> {
        self.pushes.pop_front()
    }

    /// Pushes received and not handed out yet.
    pub fn queued_pushes(&self) -> usize {
        self.pushes.len()
    }

    /// Runs one command by name (`["APPEND", "k", "v"]`) over the CALL opcode and returns
    /// its typed value; a server error is [`Error::Server`]. Pushes that arrive before the
    /// response are queued for [`Connection::receive_push`].
    ///
    /// Panics if another request is still awaiting its response (its response would come
    /// first: a bug in the caller).
    pub fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value> {
        assert!(
            self.awaiting.is_empty(),
            "command() called with another request awaiting its response"
        );
        self.queue(|out, id| binary::encode_call(out, id, args))?;
        let response = self.receive()?;
        decode::typed(&response)
    }

    /// Length of the next whole frame in the read buffer, reading until one is there. A
    /// malformed frame breaks the connection; so does a read error if `break_on_timeout`,
    /// or any read error but a timeout otherwise.
    fn next_frame_len(&mut self, break_on_timeout: bool) -> Result<usize> {
        loop {
            match binary::check(
                &self.read_buf[self.read_start..self.read_end],
                self.max_response_body_bytes,
            ) {
                Ok(frame_len) => return Ok(frame_len),
                Err(crate::Error::Incomplete) => self.fill(break_on_timeout)?,
                Err(error) => {
                    self.broken = true;
                    return Err(self.unreadable_frame(error));
                }
            }
        }
    }

    /// If the frame at `start` is a push, decodes and queues it and returns true. A push
    /// that does not decode, or one past the queue's limit, breaks the connection.
    fn take_push(&mut self, start: usize, frame_len: usize) -> Result<bool> {
        let frame = &self.read_buf[start..start + frame_len];
        if frame[3] != Status::Push as u8 {
            return Ok(false);
        }
        let push = binary::parse_response(frame).and_then(|push| {
            Ok(Push {
                opcode: push.opcode,
                value: push.typed_value()?,
            })
        });
        let push = match push {
            Ok(push) => push,
            Err(error) => {
                self.broken = true;
                return Err(Error::Protocol(ProtocolError::Frame(error)));
            }
        };
        if self.pushes.len() >= self.max_queued_pushes {
            self.broken = true;
            return Err(Error::Protocol(ProtocolError::PushQueueFull {
                limit: self.max_queued_pushes,
            }));
        }
        self.pushes.push_back(push);
        Ok(true)
    }

    /// How long one read may block from now on; `None` blocks forever. A blocking command
    /// (QUEUE.BPOP) needs longer than the options' read timeout, a subscriber polling for
    /// pushes shorter. A zero duration is refused, as by [`TcpStream::set_read_timeout`];
    /// any failure breaks the connection (its reads would no longer wait as the caller
    /// means).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        if self.read_timeout != timeout {
            if let Err(error) = self.stream.set_read_timeout(timeout) {
                self.broken = true;
                return Err(Error::Network(error));
            }
            self.read_timeout = timeout;
        }
        Ok(())
    }

    /// Requests queued or sent whose responses have not been read.
    pub fn awaiting_responses(&self) -> usize {
        self.awaiting.len()
    }

    /// True after a network or protocol error: the connection cannot be
    /// used again.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Marks the connection unusable (a response made no sense to its
    /// caller, so the stream cannot be trusted).
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// True if the connection can take a new request: not broken, nothing
    /// outstanding, and a non-blocking peek finds neither a close (a server
    /// restart) nor bytes nobody asked for.
    pub(crate) fn is_reusable(&self) -> bool {
        !self.broken
            && self.awaiting.is_empty()
            && self.pushes.is_empty()
            && self.out.is_empty()
            && self.read_start == self.read_end
            && sys::peek_idle(&self.stream) == IdleSocket::Quiet
    }

    /// The server's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// The address the connection was opened to (no system call).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn check_usable(&self) -> Result<()> {
        if self.broken {
            return Err(Error::Network(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection was broken by an earlier error",
            )));
        }
        Ok(())
    }

    /// Reads more bytes into the buffer, making room first. Any failure breaks the
    /// connection, except a timeout when `break_on_timeout` is false.
    fn fill(&mut self, break_on_timeout: bool) -> Result<()> {
        self.make_room();
        loop {
            match self.stream.read(&mut self.read_buf[self.read_end..]) {
                Ok(0) => {
                    self.broken = true;
                    return Err(Error::Network(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    )));
                }
                Ok(received) => {
                    self.read_end += received;
                    return Ok(());
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    let timed_out = matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    );
                    self.broken |= break_on_timeout || !timed_out;
                    return Err(Error::Network(error));
                }
            }
        }
    }

    /// Moves unparsed bytes to the front, and doubles the buffer if it is
    /// still full (the frame is longer than the buffer). Growth is bounded
    /// because `check` refuses bodies over the limit from their header.
    fn make_room(&mut self) {
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
        if self.read_end == self.read_buf.len() {
            let doubled = self.read_buf.len() * 2;
            self.read_buf.resize(doubled, 0);
        }
    }

    /// The error for bytes that are not a frame. A server that has not seen
    /// our first byte yet answers in RESP (`-ERR max number of clients
    /// reached`); show that line rather than "bad magic 0x2d".
    fn unreadable_frame(&self, error: crate::Error) -> Error {
        let pending = &self.read_buf[self.read_start..self.read_end];
        if let crate::Error::BadMagic { got: b'-' | b'+' } = error {
            let line = &pending[1..pending.len().min(RESP_LINE_SHOWN_BYTES)];
            let line = line.split(|byte| *byte == b'\r').next().unwrap_or(line);
            return Error::Protocol(ProtocolError::Resp(
                String::from_utf8_lossy(line).into_owned(),
            ));
        }
        Error::Protocol(ProtocolError::Frame(error))
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.stream.peer_addr().ok())
            .field("awaiting", &self.awaiting.len())
            .field("broken", &self.broken)
            .finish()
    }
}
