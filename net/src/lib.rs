//! flin-net: Flin's wire protocols and event loop.
//!
//! Layout:
//! - [`resp`]: RESP2/RESP3 requests (multibulk and inline) are checked, then
//!   parsed into argument ranges of the read buffer; [`resp::Reply`] encodes
//!   replies for either version.
//! - [`binary`]: Flin's own length-prefixed protocol on the same port, with
//!   the same check-then-parse split; encoders for requests (client side)
//!   and responses (server side). `binary::commands` is the opcode table
//!   (one row per command without a codec of its own, plus CALL, any command
//!   by name); `binary::value` the typed values those commands and push
//!   frames carry.
//! - `event_loop`: N mio loops, one per core, each with its own listener.
//!   Bytes read from a socket go to the connection's buffer, the first byte
//!   picks RESP or binary, every complete request is handed to the
//!   [`Service`] in order, and the replies it appended are written once per
//!   read. A request may park ([`Action::Park`]): the requests behind it
//!   wait, and the service completes it later from `on_wake` (after a
//!   [`ConnectionHandle::wake`] from any thread) or `on_park_timeout` (its
//!   deadline on the injected [`Clock`] passed); `on_wake` may also push
//!   messages. A reply may wait behind a gate ([`ReplyGates`]) without
//!   blocking the loop.
//! - `io_counters`: [`IoCounters`], bytes read and written over all loops (one slot per
//!   loop), for the daemon's metrics.
//! - `clock`: [`Clock`] and [`SystemClock`], the time parked deadlines use.
//! - [`client`]: the blocking Rust client ([`Client`]): a thread-safe
//!   connection pool, one group of methods per data model, pipelines, and
//!   its own [`ClientError`] that tells server, network and protocol
//!   errors apart. It uses the binary codec's request encoders and response
//!   decoders, the other side of what the server uses.
//! - [`error`]: the codec's and the server side's [`Error`] type.
//! - `sys`: the only `unsafe` code: the libc calls that make an
//!   `SO_REUSEPORT` listener, and the client's non-blocking peek at idle
//!   connections.
//!
//! Data flow (server): socket → read buffer → `resp::Checker::check` /
//! `binary::check` → parse (no copies) → `Service::handle_*` appends to the
//! output buffer (or parks) → `Service::take_reply_gate`
//! → socket, up to the first reply whose gate is closed. Other threads reach a
//! connection through its `ConnectionHandle` → the loop's mailbox →
//! `Service::on_wake` → the same output path.
//!
//! Data flow (client): `Kv` method → `binary::encode_*` (a `Queues` method:
//! its argument list → `binary::encode_command` with its table row) into the
//! connection's output buffer → one write → read buffer → `binary::check` →
//! push frames set aside for `Connection::receive_push` → `binary::parse_response`
//! (request id and opcode checked) → decoded value (a queue reply: typed value →
//! `Message`, `QueueInfo` ...).

#![deny(unsafe_code)]

pub mod binary;
pub mod client;
mod clock;
pub mod error;
mod event_loop;
mod io_counters;
pub mod resp;
#[allow(unsafe_code)]
mod sys;

pub use client::{Client, ClientOptions, Error as ClientError, RetryPolicy};
pub use clock::{Clock, SystemClock};
pub use error::{Error, Result};
pub use event_loop::{
    Action, ConnectionHandle, GateStatus, LoopsHandle, Protocol, ReplyGates, Server, ServerConfig,
    Service, ShutdownHandle, Withdrawn, DEFAULT_MAX_CLIENTS, DEFAULT_OUTPUT_BUFFER_LIMIT_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
};
pub use io_counters::{IoCounters, IO_SLOTS};
/// Socket calls std does not offer, for the server's cluster transport.
pub mod socket {
    pub use crate::sys::{peek_idle, send_nonblocking, IdleSocket};
}
