//! RESP2/RESP3: request framing ([`parse`]), reply encoding ([`reply`]), and request encoding
//! for clients ([`request`]).

pub mod parse;
pub mod reply;
pub mod request;

pub use parse::{
    parse, Checker, Frame, FrameKind, MAX_ARGS, MAX_BULK_BYTES, MAX_FRAME_BYTES, MAX_INLINE_BYTES,
    UNAUTHENTICATED_MAX_ARGS, UNAUTHENTICATED_MAX_BULK_BYTES,
};
pub use reply::{format_i64, Reply, RespVersion};
pub use request::{encode_array_header, encode_bulk, encode_command};
