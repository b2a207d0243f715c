//! The crate's one error type.
//!
//! Codec errors carry the byte offset (from the start of the frame) where the
//! problem was found, so a log line points at the broken byte. RESP errors
//! start with Redis's exact wording ("Protocol error: invalid bulk length"),
//! because client test suites match on it; [`Error::resp_reply`] adds the
//! `ERR ` prefix that goes on the wire.

use std::fmt;
use std::io;

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in `flin-net`.
#[derive(Debug)]
pub enum Error {
    /// Not a whole frame yet: read more bytes and check again. Not a failure.
    Incomplete,

    // --- RESP ---
    /// `*` line that is not a decimal integer in range.
    InvalidMultibulkLength { offset: usize },
    /// `$` line that is not a decimal integer in `0..=MAX_BULK_BYTES`.
    InvalidBulkLength { offset: usize },
    /// A `*` count above `UNAUTHENTICATED_MAX_ARGS` before the connection authenticated.
    UnauthenticatedMultibulkLength { offset: usize },
    /// A `$` length above `UNAUTHENTICATED_MAX_BULK_BYTES` before the connection authenticated.
    UnauthenticatedBulkLength { offset: usize },
    /// An element of a multibulk that does not start with `$`.
    ExpectedBulk { got: u8, offset: usize },
    /// A bulk string not followed by `\r\n`: the stream is out of step.
    ExpectedCrlf { offset: usize },
    /// A `*` or `$` count line longer than the inline limit without `\r\n`.
    CountLineTooLong { multibulk: bool },
    /// An inline command longer than `MAX_INLINE_BYTES` without a newline.
    InlineTooLong { limit: usize },
    /// Inline command with an unterminated `"` or `'`, or a closing quote not
    /// followed by a space.
    UnbalancedQuotes { offset: usize },
    /// The whole frame would exceed `MAX_FRAME_BYTES`.
    FrameTooLarge { len: usize, limit: usize },

    // --- binary protocol ---
    /// First byte of a binary frame is not the magic.
    BadMagic { got: u8 },
    /// A protocol version this build does not speak.
    UnsupportedVersion { got: u8 },
    /// An opcode this build does not know (the frame itself is intact).
    UnknownOpcode { opcode: u8 },
    /// Flag bits that are not defined for the opcode.
    UnknownFlags { opcode: u8, flags: u8 },
    /// Two flags that cannot be set together (SET with NX and XX).
    ConflictingFlags { opcode: u8, flags: u8 },
    /// The header claims a body longer than the limit.
    BodyTooLong { len: usize, limit: usize },
    /// A field runs past the end of the body.
    Truncated { field: &'static str, offset: usize },
    /// Bytes left in the body after the last field.
    TrailingBytes { offset: usize },
    /// A batch count above the limit.
    TooManyItems { count: usize, limit: usize },
    /// A response status byte this build does not know.
    UnknownStatus { got: u8 },
    /// A typed value's tag byte this build does not know.
    UnknownValueTag { tag: u8, offset: usize },
    /// Aggregates nested deeper than `binary::MAX_VALUE_DEPTH`.
    ValueTooDeep { limit: usize, offset: usize },
    /// A text field (simple string, error, verbatim, big number) that is not UTF-8.
    InvalidText { field: &'static str, offset: usize },
    /// A boolean byte other than 0 and 1.
    InvalidBoolean { got: u8, offset: usize },
    /// A table command given a number of arguments its arity does not allow (refused by the
    /// encoder, before anything is sent).
    WrongArity { name: &'static str, args: usize },

    /// A socket or poll call failed.
    Io(io::Error),
}

impl Error {
    /// True for the "wait for more bytes" case.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, Error::Incomplete)
    }

    /// True if the connection can go on after replying with this error: the
    /// frame was delimited correctly, only its content is not understood.
    /// Every other codec error leaves the stream out of step, so the server
    /// replies and closes, as Redis does.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, Error::UnknownOpcode { .. })
    }

    /// The RESP error line for this error, without the leading `-` and the
    /// trailing CRLF: `ERR Protocol error: invalid bulk length at byte 4`.
    pub fn resp_reply(&self) -> String {
        format!("ERR {self}")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Incomplete => write!(f, "incomplete frame"),
            Error::InvalidMultibulkLength { offset } => {
                write!(
                    f,
                    "Protocol error: invalid multibulk length at byte {offset}"
                )
            }
            Error::InvalidBulkLength { offset } => {
                write!(f, "Protocol error: invalid bulk length at byte {offset}")
            }
            Error::UnauthenticatedMultibulkLength { offset } => write!(
                f,
                "Protocol error: unauthenticated multibulk length at byte {offset}"
            ),
            Error::UnauthenticatedBulkLength { offset } => write!(
                f,
                "Protocol error: unauthenticated bulk length at byte {offset}"
            ),
            Error::ExpectedBulk { got, offset } => {
                let shown = if got.is_ascii_graphic() || *got == b' ' {
                    format!("'{}'", *got as char)
                } else {
                    format!("0x{got:02x}")
                };
                write!(
                    f,
                    "Protocol error: expected '$', got {shown} at byte {offset}"
                )
            }
            Error::ExpectedCrlf { offset } => {
                write!(
                    f,
                    "Protocol error: expected CRLF after bulk string at byte {offset}"
                )
            }
            Error::CountLineTooLong { multibulk: true } => {
                write!(f, "Protocol error: too big mbulk count string")
            }
            Error::CountLineTooLong { multibulk: false } => {
                write!(f, "Protocol error: too big bulk count string")
            }
            Error::InlineTooLong { limit } => {
                write!(
                    f,
                    "Protocol error: too big inline request (limit {limit} bytes)"
                )
            }
            Error::UnbalancedQuotes { offset } => {
                write!(
                    f,
                    "Protocol error: unbalanced quotes in request at byte {offset}"
                )
            }
            Error::FrameTooLarge { len, limit } => write!(
                f,
                "Protocol error: request of at least {len} bytes exceeds the limit of {limit} bytes"
            ),
            Error::BadMagic { got } => write!(f, "bad magic 0x{got:02x} at byte 0"),
            Error::UnsupportedVersion { got } => {
                write!(f, "unsupported protocol version {got} at byte 1")
            }
            Error::UnknownOpcode { opcode } => write!(f, "unknown opcode 0x{opcode:02x}"),
            Error::UnknownFlags { opcode, flags } => {
                write!(f, "unknown flags 0x{flags:02x} for opcode 0x{opcode:02x}")
            }
            Error::ConflictingFlags { opcode, flags } => {
                write!(
                    f,
                    "conflicting flags 0x{flags:02x} for opcode 0x{opcode:02x}"
                )
            }
            Error::BodyTooLong { len, limit } => {
                write!(f, "body length {len} exceeds limit {limit}")
            }
            Error::Truncated { field, offset } => {
                write!(f, "truncated field '{field}' at body offset {offset}")
            }
            Error::TrailingBytes { offset } => {
                write!(f, "unexpected trailing bytes at body offset {offset}")
            }
            Error::TooManyItems { count, limit } => {
                write!(f, "batch of {count} items exceeds limit {limit}")
            }
            Error::UnknownStatus { got } => write!(f, "unknown status 0x{got:02x}"),
            Error::UnknownValueTag { tag, offset } => {
                write!(f, "unknown value tag 0x{tag:02x} at body offset {offset}")
            }
            Error::ValueTooDeep { limit, offset } => write!(
                f,
                "values nested deeper than {limit} levels at body offset {offset}"
            ),
            Error::InvalidText { field, offset } => {
                write!(f, "field '{field}' at body offset {offset} is not UTF-8")
            }
            Error::InvalidBoolean { got, offset } => {
                write!(f, "invalid boolean {got} at body offset {offset}")
            }
            Error::WrongArity { name, args } => write!(
                f,
                "wrong number of arguments for '{name}' command ({args} after the name)"
            ),
            Error::Io(err) => write!(f, "i/o error: {err}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        Error::Io(err)
    }
}
