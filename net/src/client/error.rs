//! The client's error: which side failed, so a caller can decide what to do.
//!
//! The codec's [`crate::Error`] describes bytes; this one tells a program
//! whether the server refused the request ([`Error::Server`]: the
//! connection is fine, the request was understood and answered), the
//! network failed ([`Error::Network`]: the request may or may not have been
//! applied), the server's bytes made no sense ([`Error::Protocol`]), or the
//! request was refused before anything was sent ([`Error::Request`]). A client connected to
//! a cluster adds two: a write whose fate is unknown ([`Error::Indeterminate`]) and a retry
//! budget spent ([`Error::RetriesExhausted`]).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::binary::Status;

/// `Result` with the client's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything a client call can fail with.
#[derive(Debug)]
pub enum Error {
    /// The server answered with an error status. The connection stays
    /// usable, except after [`Status::ProtocolError`] (the server closes it).
    Server(ServerError),
    /// Connecting, reading or writing failed, timed out, or the server
    /// closed the connection. That connection is discarded; the next call
    /// opens a new one. A request that was written before the failure may
    /// or may not have been applied: a client connected to one node never
    /// resends it (a cluster client's rules are [`Error::Indeterminate`]'s).
    Network(io::Error),
    /// The server sent bytes that are not a valid answer to what was asked.
    /// That connection is discarded.
    Protocol(ProtocolError),
    /// The request was refused before anything was sent: it would pass a
    /// protocol limit (body over `MAX_REQUEST_BODY_BYTES`, more than
    /// `MAX_BATCH_ITEMS` keys).
    Request(crate::Error),
    /// Every one of the pool's connections stayed in use for the whole
    /// wait ([`super::ClientOptions::pool_wait_timeout`]).
    PoolExhausted {
        /// The pool's size.
        size: usize,
        /// How long the call waited for a connection.
        waited: Duration,
    },
    /// Cluster mode: a write was sent and then its connection failed, or its reply was
    /// withdrawn because a new leader replaced it, so it may or may not have been applied.
    /// It was not resent ([`super::RetryPolicy::retry_writes`] is off); the caller decides
    /// (read the key back, or resend a write it knows to be idempotent). Never a false
    /// success: a write the client reports as done was acknowledged by the leader.
    Indeterminate {
        /// The node the request was sent to.
        addr: SocketAddr,
        /// What happened: [`Error::Network`], or [`Error::Server`] with the withdrawal.
        cause: Box<Error>,
    },
    /// Cluster mode: the retry budget ([`super::RetryPolicy`]) ran out before a leader
    /// answered: every node refused (no leader elected yet) or could not be reached.
    RetriesExhausted {
        /// Sends and connection attempts made.
        attempts: u32,
        /// From the first attempt to giving up.
        elapsed: Duration,
        /// Every address a connection was tried to, in first-use order.
        tried: Vec<SocketAddr>,
        /// The last attempt's failure.
        last: Box<Error>,
    },
}

impl Error {
    /// True for [`Error::Server`].
    pub fn is_server(&self) -> bool {
        matches!(self, Error::Server(_))
    }

    /// True for [`Error::Network`].
    pub fn is_network(&self) -> bool {
        matches!(self, Error::Network(_))
    }

    /// True for [`Error::Protocol`].
    pub fn is_protocol(&self) -> bool {
        matches!(self, Error::Protocol(_))
    }

    /// True for [`Error::Indeterminate`]: a write that may or may not have been applied.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Error::Indeterminate { .. })
    }

    /// True for [`Error::RetriesExhausted`].
    pub fn is_retries_exhausted(&self) -> bool {
        matches!(self, Error::RetriesExhausted { .. })
    }

    /// True for a stream group member told to join again (`REBALANCE ...`: a new generation,
    /// or it is no longer a member). [`crate::client::GroupConsumer`] handles it itself.
    pub fn is_rebalance(&self) -> bool {
        matches!(self, Error::Server(error) if error.message.starts_with("REBALANCE"))
    }

    /// The status of a server error.
    pub fn status(&self) -> Option<Status> {
        match self {
            Error::Server(error) => Some(error.status),
            _ => None,
        }
    }

    /// True if the connection this error came from must not be reused.
    pub(crate) fn breaks_connection(&self) -> bool {
        match self {
            Error::Server(error) => error.status == Status::ProtocolError,
            Error::Network(_) | Error::Protocol(_) => true,
            Error::Request(_)
            | Error::PoolExhausted { .. }
            | Error::Indeterminate { .. }
            | Error::RetriesExhausted { .. } => false,
        }
    }
}

/// An error status and its message, as the server sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// Which kind of error (never [`Status::Ok`], `NotFound` or `NotStored`).
    pub status: Status,
    /// The server's message, Redis style: `ERR value is not an integer or
    /// out of range`, `NOAUTH Authentication required.`.
    pub message: String,
}

/// Ways a server's bytes can fail to answer a request.
#[derive(Debug)]
pub enum ProtocolError {
    /// The frame itself is malformed: bad magic or version, a body over the
    /// client's limit, a truncated field, trailing bytes, an unknown status.
    Frame(crate::Error),
    /// Responses come back in request order; this one carries another id.
    UnexpectedRequestId {
        /// The id of the oldest unanswered request.
        expected: u32,
        /// The id in the response.
        got: u32,
    },
    /// The response echoes another opcode than its request's.
    UnexpectedOpcode {
        /// The request's opcode.
        expected: u8,
        /// The response's opcode.
        got: u8,
    },
    /// A status the request's opcode cannot have (NOT_STORED for a GET).
    UnexpectedStatus {
        /// The request's opcode.
        opcode: u8,
        /// The status that came back.
        status: Status,
    },
    /// A value outside what the opcode can answer (a TTL of -5 ms).
    UnexpectedValue {
        /// The request's opcode.
        opcode: u8,
        /// What was wrong.
        what: &'static str,
    },
    /// A map in the response lacks a field its command always sends (QUEUE.INFO's `ready`).
    MissingField {
        /// The request's opcode.
        opcode: u8,
        /// The field's name.
        field: &'static str,
    },
    /// The server answered in RESP, not the binary protocol: this is what a
    /// server says before it knows the protocol, e.g. `-ERR max number of
    /// clients reached`. Holds the line without `-` and CRLF.
    Resp(String),
    /// A response arrived while no request was awaiting one.
    UnsolicitedResponse {
        /// The response's request id.
        request_id: u32,
        /// The response's opcode.
        opcode: u8,
    },
    /// More pushes arrived unread than [`super::ClientOptions::max_queued_pushes`] allows.
    PushQueueFull {
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Server(error) => write!(f, "{error}"),
            Error::Network(error) => write!(f, "network error: {error}"),
            Error::Protocol(error) => write!(f, "protocol error: {error}"),
            Error::Request(error) => write!(f, "request refused before sending: {error}"),
            Error::PoolExhausted { size, waited } => write!(
                f,
                "all {size} pooled connections stayed busy for {} ms",
                waited.as_millis()
            ),
            Error::Indeterminate { addr, cause } => write!(
                f,
                "indeterminate: the write sent to {addr} may or may not have been applied ({cause})"
            ),
            Error::RetriesExhausted {
                attempts,
                elapsed,
                tried,
                last,
            } => {
                write!(
                    f,
                    "no cluster node served the request: {attempts} attempts in {} ms, tried ",
                    elapsed.as_millis()
                )?;
                for (n, addr) in tried.iter().enumerate() {
                    write!(f, "{}{addr}", if n == 0 { "" } else { ", " })?;
                }
                if tried.is_empty() {
                    write!(f, "no address")?;
                }
                write!(f, "; last error: {last}")
            }
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server error ({:?}): {}", self.status, self.message)
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Frame(error) => write!(f, "{error}"),
            ProtocolError::UnexpectedRequestId { expected, got } => {
                write!(f, "response to request id {got} where {expected} was due")
            }
            ProtocolError::UnexpectedOpcode { expected, got } => write!(
                f,
                "response opcode 0x{got:02x} to a request with opcode 0x{expected:02x}"
            ),
            ProtocolError::UnexpectedStatus { opcode, status } => {
                write!(
                    f,
                    "status {status:?} is not an answer to opcode 0x{opcode:02x}"
                )
            }
            ProtocolError::UnexpectedValue { opcode, what } => {
                write!(f, "{what} in the response to opcode 0x{opcode:02x}")
            }
            ProtocolError::MissingField { opcode, field } => {
                write!(
                    f,
                    "no field '{field}' in the response to opcode 0x{opcode:02x}"
                )
            }
            ProtocolError::Resp(line) => write!(f, "the server answered in RESP: {line}"),
            ProtocolError::UnsolicitedResponse { request_id, opcode } => write!(
                f,
                "a response (id {request_id}, opcode 0x{opcode:02x}) with no request awaiting it"
            ),
            ProtocolError::PushQueueFull { limit } => {
                write!(f, "more than {limit} pushes received and not read")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Network(error) => Some(error),
            Error::Protocol(ProtocolError::Frame(error)) | Error::Request(error) => Some(error),
            Error::Indeterminate { cause, .. } => Some(cause.as_ref()),
            Error::RetriesExhausted { last, .. } => Some(last.as_ref()),
            _ => None,
        }
    }
}

impl std::error::Error for ServerError {}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        Error::Network(error)
    }
}

impl From<ProtocolError> for Error {
    fn from(error: ProtocolError) -> Self {
        Error::Protocol(error)
    }
}

impl From<ServerError> for Error {
    fn from(error: ServerError) -> Self {
        Error::Server(error)
    }
}
