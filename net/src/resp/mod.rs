//! RESP2/RESP3: request framing ([`parse`]) and reply encoding ([`reply`]).

pub mod parse;
pub mod reply;

pub use parse::{
    parse, Checker, Frame, FrameKind, MAX_ARGS, MAX_BULK_BYTES, MAX_FRAME_BYTES, MAX_INLINE_BYTES,
};
pub use reply::{format_i64, Reply, RespVersion};
