//! flin-net: Flin's wire protocols and event loop.
//!
//! Layout:
//! - [`resp`]: RESP2/RESP3 requests (multibulk and inline) are checked, then
//!   parsed into argument ranges of the read buffer; [`resp::Reply`] encodes
//!   replies for either version.
//! - [`binary`]: Flin's own length-prefixed protocol on the same port, with
//!   the same check-then-parse split; encoders for requests (client side)
//!   and responses (server side).
//! - `event_loop`: N mio loops, one per core, each with its own listener.
//!   Bytes read from a socket go to the connection's buffer, the first byte
//!   picks RESP or binary, every complete request is handed to the
//!   [`Service`] in order, and the replies it appended are written once per
//!   read.
//! - [`error`]: the crate's one [`Error`] type.
//! - `sys`: the only `unsafe` code, the libc calls that make an
//!   `SO_REUSEPORT` listener.
//!
//! Data flow: socket → read buffer → `resp::Checker::check` /
//! `binary::check` → parse (no copies) → `Service::handle_*` appends to the
//! output buffer → `Service::before_reply_flush` → socket.

#![deny(unsafe_code)]

pub mod binary;
pub mod error;
mod event_loop;
pub mod resp;
#[allow(unsafe_code)]
mod sys;

pub use error::{Error, Result};
pub use event_loop::{
    Action, Protocol, Server, ServerConfig, Service, ShutdownHandle, DEFAULT_MAX_CLIENTS,
    DEFAULT_OUTPUT_BUFFER_LIMIT_BYTES, DEFAULT_REQUEST_TIMEOUT,
};
