//! Flin's binary protocol: length-prefixed frames on the same port as RESP.
//!
//! Every frame, request or response, is a 12-byte header and a body:
//!
//! ```text
//! offset  width  field
//!      0      1  magic 0xFB
//!      1      1  version (1)
//!      2      1  opcode
//!      3      1  request: flags / response: status
//!      4      4  request id, u32 little-endian (echoed in the response)
//!      8      4  body length, u32 little-endian
//!     12      n  body
//! ```
//!
//! The magic 0xFB is not ASCII and never occurs in UTF-8, so it cannot begin
//! a RESP frame (type bytes are ASCII punctuation) or an inline command
//! (typed text): the server tells the protocols apart by a connection's
//! first byte. `docs/protocol.md` draws every body.
//!
//! As for RESP, [`check`] first finds out, without allocating, whether a
//! whole frame is buffered (it only reads the header), then
//! [`parse_request`] / [`parse_response`] decode it, borrowing every byte
//! string from the buffer.

pub mod commands;
mod frame;
mod request;
mod response;
pub mod value;

pub use commands::{CommandSpec, TABLE};
pub use frame::{check, peek_header, FrameWriter, Header};
pub use request::{
    encode_auth, encode_call, encode_command, encode_del, encode_exists, encode_expire, encode_get,
    encode_incr, encode_incr_by, encode_mdel, encode_mget, encode_mset, encode_ping, encode_scan,
    encode_set, encode_ttl, parse_request, Items, Op, Pairs, ReplyTo, Request, SetCondition,
};
pub use response::{
    encode_error, encode_push, parse_response, OptionalItems, Response, ScanPage, PUSH_REQUEST_ID,
};
pub use value::{decode_value, Value, ValueWriter, MAX_VALUE_DEPTH};

/// First byte of every frame.
pub const MAGIC: u8 = 0xFB;
// 0xF5..=0xFF never occur in UTF-8, so no typed text starts with the magic.
const _: () = assert!(MAGIC >= 0xF5);
/// The protocol version this build speaks. A peer that receives another
/// version replies with a protocol error and closes; new opcodes and flags
/// are added without changing it (see `docs/protocol.md`).
pub const VERSION: u8 = 1;

/// Bytes of the header in front of every body.
pub const HEADER_LEN: usize = 12;
// magic + version + opcode + flags/status + request id + body length.
const _: () = assert!(HEADER_LEN == 1 + 1 + 1 + 1 + 4 + 4);

/// Longest request body: one maximal value (Redis's 512 MiB) plus room for
/// its key and the other fields.
pub const MAX_REQUEST_BODY_BYTES: usize = 512 * 1024 * 1024 + 64 * 1024;
/// Longest request body before the connection authenticated (with a password set): room for
/// an AUTH with a long password, and for nothing that could grow the server's memory.
pub const UNAUTHENTICATED_MAX_BODY_BYTES: usize = 16 * 1024;
/// Longest response body: what the u32 length field can say.
pub const MAX_RESPONSE_BODY_BYTES: usize = u32::MAX as usize;
/// Most keys (MGET, MDEL, SCAN replies) or pairs (MSET) in one batch; the
/// same bound as RESP's argument count.
pub const MAX_BATCH_ITEMS: usize = 1024 * 1024;
/// Length value that marks a missing item in an MGET response.
pub const NULL_LEN: u32 = u32::MAX;

/// The opcodes with a codec of their own. Ranges 0x40..=0x5F (queues), 0x60..=0x7F (streams)
/// and 0x80..=0x9F (documents) belong to the data models' rows of [`commands::TABLE`];
/// 0xF0..=0xFF to protocol extensions ([`Opcode::Call`] is the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Liveness check; echoes the body.
    Ping = 0x01,
    /// Authenticate the connection.
    Auth = 0x02,
    /// Read a key.
    Get = 0x10,
    /// Write a key, optionally with a TTL and an NX/XX condition.
    Set = 0x11,
    /// Delete a key.
    Del = 0x12,
    /// Test a key.
    Exists = 0x13,
    /// Add 1 to an integer value.
    Incr = 0x14,
    /// Add a signed delta to an integer value.
    IncrBy = 0x15,
    /// Set a key's time to live in milliseconds.
    Expire = 0x16,
    /// A key's remaining time to live in milliseconds.
    Ttl = 0x17,
    /// Read many keys.
    MGet = 0x20,
    /// Write many keys.
    MSet = 0x21,
    /// Delete many keys.
    MDel = 0x22,
    /// Iterate over keys with a cursor.
    Scan = 0x28,
    /// Any command by name: the body is an argument list whose first item is the name; the
    /// response a typed value (see [`commands`]).
    Call = 0xF0,
}

impl Opcode {
    /// Every opcode, for tests and documentation.
    pub const ALL: [Opcode; 15] = [
        Opcode::Ping,
        Opcode::Auth,
        Opcode::Get,
        Opcode::Set,
        Opcode::Del,
        Opcode::Exists,
        Opcode::Incr,
        Opcode::IncrBy,
        Opcode::Expire,
        Opcode::Ttl,
        Opcode::MGet,
        Opcode::MSet,
        Opcode::MDel,
        Opcode::Scan,
        Opcode::Call,
    ];

    /// The opcode with this byte, if this build knows it. A `match` (a jump table), not a
    /// search of `ALL`: it runs once per request.
    #[inline]
    pub fn from_u8(byte: u8) -> Option<Opcode> {
        Some(match byte {
            0x01 => Opcode::Ping,
            0x02 => Opcode::Auth,
            0x10 => Opcode::Get,
            0x11 => Opcode::Set,
            0x12 => Opcode::Del,
            0x13 => Opcode::Exists,
            0x14 => Opcode::Incr,
            0x15 => Opcode::IncrBy,
            0x16 => Opcode::Expire,
            0x17 => Opcode::Ttl,
            0x20 => Opcode::MGet,
            0x21 => Opcode::MSet,
            0x22 => Opcode::MDel,
            0x28 => Opcode::Scan,
            0xF0 => Opcode::Call,
            _ => return None,
        })
    }
}

/// Request flag bits for SET.
pub mod flags {
    /// SET only if the key does not exist (Redis NX).
    pub const SET_NX: u8 = 0x01;
    /// SET only if the key exists (Redis XX).
    pub const SET_XX: u8 = 0x02;
    /// SET body ends with a u64 TTL in milliseconds.
    pub const SET_TTL: u8 = 0x04;
    /// SCAN body ends with a match pattern.
    pub const SCAN_PATTERN: u8 = 0x01;
}

/// Response status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// Done; the body is the opcode's result.
    Ok = 0x00,
    /// The key does not exist (GET); empty body.
    NotFound = 0x01,
    /// SET's NX/XX condition was not met; empty body.
    NotStored = 0x02,
    /// The command failed; the body is a UTF-8 message (`ERR ...`).
    Error = 0x10,
    /// The key holds another data model's value; body is a message.
    WrongType = 0x11,
    /// Authentication is required or failed; body is a message.
    NoAuth = 0x12,
    /// The opcode is not known to this server; the connection stays open.
    UnknownOpcode = 0x13,
    /// The frame was malformed; body is a message and the server closes the
    /// connection after sending it.
    ProtocolError = 0x1F,
    /// Not a response: a message the server sent on its own (request id 0; the opcode names
    /// the kind of push; the body is a typed value). A client routes it aside and goes on
    /// waiting for its response.
    Push = 0x20,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 9] = [
        Status::Ok,
        Status::NotFound,
        Status::NotStored,
        Status::Error,
        Status::WrongType,
        Status::NoAuth,
        Status::UnknownOpcode,
        Status::ProtocolError,
        Status::Push,
    ];

    /// The status with this byte, if known.
    pub fn from_u8(byte: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|status| *status as u8 == byte)
    }
}

/// True for bytes that start a binary frame rather than RESP.
pub fn is_binary_first_byte(byte: u8) -> bool {
    byte == MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_cannot_start_resp_or_text() {
        for resp_type in b"*$+-:_,#!=(%~|>" {
            assert!(!is_binary_first_byte(*resp_type));
        }
        for byte in 0u8..0x80 {
            assert!(!is_binary_first_byte(byte), "ASCII 0x{byte:02x}");
        }
    }

    #[test]
    fn opcode_and_status_bytes_round_trip() {
        for op in Opcode::ALL {
            assert_eq!(Opcode::from_u8(op as u8), Some(op));
            let byte = op as u8;
            assert!(!(0x40..=0x9F).contains(&byte), "{op:?} in a model range");
            assert!(
                commands::by_opcode(TABLE, byte).is_none(),
                "{op:?} in the table"
            );
        }
        for status in Status::ALL {
            assert_eq!(Status::from_u8(status as u8), Some(status));
        }
        let known = (0..=u8::MAX).filter(|byte| Opcode::from_u8(*byte).is_some());
        assert_eq!(
            known.count(),
            Opcode::ALL.len(),
            "from_u8 knows exactly ALL"
        );
        assert_eq!(Opcode::from_u8(0x40), None);
        assert_eq!(Status::from_u8(0x03), None);
    }
}

#[cfg(test)]
mod codec_tests;
