//! From a response frame to what a call returns, one function per reply
//! shape; single calls and pipelines share them. Each checks that the
//! status is one the request can have and that the body holds exactly its
//! fields, so a wrong or malformed answer is a [`ProtocolError`], never a
//! panic or a silently wrong value.

use std::time::Duration;

use super::error::{Error, ProtocolError, Result, ServerError};
use crate::binary::{Response, Status, Value};

/// A key's time to live, as TTL reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// There is no such key.
    Missing,
    /// The key exists and does not expire.
    Persistent,
    /// The key expires after this long (millisecond precision).
    Expires(Duration),
}

/// One page of a SCAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// Pass this to the next `scan_page`; 0 means the iteration is done.
    pub cursor: u64,
    /// The keys of this page.
    pub keys: Vec<Vec<u8>>,
}

/// The answer to one pipelined request, by the shape of its method's
/// return value (a pipelined `get` gives `Value`, `incr` gives `Integer`).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Done, nothing to return: `set`, `mset`.
    Done,
    /// `set_with`: false if its NX/XX condition was not met.
    Stored(bool),
    /// `get`: the value, `None` if there is no such key.
    Value(Option<Vec<u8>>),
    /// `incr`, `incr_by`: the new value.
    Integer(i64),
    /// `mdel`: keys removed.
    Count(u64),
    /// `del`, `exists`, `expire`: whether the key was there.
    Flag(bool),
    /// `mget`: one entry per key, in order.
    Values(Vec<Option<Vec<u8>>>),
    /// `ttl`.
    Ttl(Ttl),
    /// `scan_page`.
    Page(ScanPage),
    /// `ping`: the payload, echoed.
    Pong(Vec<u8>),
    /// `command`: the command's typed value.
    Command(Value),
}

/// How to decode a pipelined request's response into a [`Reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyKind {
    Done,
    Stored,
    Value,
    Integer,
    Count,
    Flag,
    Values,
    Ttl,
    Page,
    Pong,
    Command,
}

impl ReplyKind {
    pub(crate) fn decode(self, response: &Response<'_>) -> Result<Reply> {
        Ok(match self {
            ReplyKind::Done => {
                done(response)?;
                Reply::Done
            }
            ReplyKind::Stored => Reply::Stored(stored(response)?),
            ReplyKind::Value => Reply::Value(value(response)?),
            ReplyKind::Integer => Reply::Integer(integer(response)?),
            ReplyKind::Count => Reply::Count(count(response)?),
            ReplyKind::Flag => Reply::Flag(flag(response)?),
            ReplyKind::Values => Reply::Values(values(response)?),
            ReplyKind::Ttl => Reply::Ttl(ttl(response)?),
            ReplyKind::Page => Reply::Page(page(response)?),
            ReplyKind::Pong => Reply::Pong(pong(response)?),
            ReplyKind::Command => Reply::Command(typed(response)?),
        })
    }
}

/// `Ok(())` for OK; the server's error for an error status; a protocol
/// error for a status this request cannot have.
fn ok_status(response: &Response<'_>) -> Result<()> {
    match response.status {
        Status::Ok => Ok(()),
        Status::Error
        | Status::WrongType
        | Status::NoAuth
        | Status::UnknownOpcode
        | Status::ProtocolError => Err(Error::Server(ServerError {
            status: response.status,
            message: response.message().into_owned(),
        })),
        // A push never gets here: `Connection::receive` routes it aside.
        Status::NotFound | Status::NotStored | Status::Push => Err(unexpected_status(response)),
    }
}

fn unexpected_status(response: &Response<'_>) -> Error {
    Error::Protocol(ProtocolError::UnexpectedStatus {
        opcode: response.opcode,
        status: response.status,
    })
}

fn frame_error(error: crate::Error) -> Error {
    Error::Protocol(ProtocolError::Frame(error))
}

/// OK with an empty body (SET, MSET, AUTH).
pub(crate) fn done(response: &Response<'_>) -> Result<()> {
    ok_status(response)?;
    if !response.body.is_empty() {
        return Err(frame_error(crate::Error::TrailingBytes { offset: 0 }));
    }
    Ok(())
}

/// SET with a condition: OK is true, NOT_STORED false.
pub(crate) fn stored(response: &Response<'_>) -> Result<bool> {
    if response.status == Status::NotStored && response.body.is_empty() {
        return Ok(false);
    }
    done(response).map(|()| true)
}

/// GET: OK carries the value, NOT_FOUND (empty body) is `None`.
pub(crate) fn value(response: &Response<'_>) -> Result<Option<Vec<u8>>> {
    if response.status == Status::NotFound {
        if !response.body.is_empty() {
            return Err(frame_error(crate::Error::TrailingBytes { offset: 0 }));
        }
        return Ok(None);
    }
    ok_status(response)?;
    Ok(Some(response.value().to_vec()))
}

/// INCR, INCRBY: an i64.
pub(crate) fn integer(response: &Response<'_>) -> Result<i64> {
    ok_status(response)?;
    response.integer().map_err(frame_error)
}

/// MDEL: a u64.
pub(crate) fn count(response: &Response<'_>) -> Result<u64> {
    ok_status(response)?;
    response.count().map_err(frame_error)
}

/// DEL, EXISTS, EXPIRE: a u64 that must be 0 or 1.
pub(crate) fn flag(response: &Response<'_>) -> Result<bool> {
    match count(response)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::Protocol(ProtocolError::UnexpectedValue {
            opcode: response.opcode,
            what: "a count above 1 for one key",
        })),
    }
}

/// MGET: the values, `None` for missing keys.
pub(crate) fn values(response: &Response<'_>) -> Result<Vec<Option<Vec<u8>>>> {
    ok_status(response)?;
    let values = response.values().map_err(frame_error)?;
    Ok(values.map(|value| value.map(<[u8]>::to_vec)).collect())
}

/// TTL: milliseconds left, -2 for no key, -1 for no expiry.
pub(crate) fn ttl(response: &Response<'_>) -> Result<Ttl> {
    match integer(response)? {
        -2 => Ok(Ttl::Missing),
        -1 => Ok(Ttl::Persistent),
        ms if ms >= 0 => Ok(Ttl::Expires(Duration::from_millis(ms as u64))),
        _ => Err(Error::Protocol(ProtocolError::UnexpectedValue {
            opcode: response.opcode,
            what: "a negative TTL other than -1 and -2",
        })),
    }
}

/// SCAN: the next cursor and the keys.
pub(crate) fn page(response: &Response<'_>) -> Result<ScanPage> {
    ok_status(response)?;
    let page = response.scan_page().map_err(frame_error)?;
    Ok(ScanPage {
        cursor: page.cursor,
        keys: page.keys.map(<[u8]>::to_vec).collect(),
    })
}

/// PING: the payload.
pub(crate) fn pong(response: &Response<'_>) -> Result<Vec<u8>> {
    ok_status(response)?;
    Ok(response.value().to_vec())
}

/// A table command or CALL: a typed value.
pub(crate) fn typed(response: &Response<'_>) -> Result<Value> {
    ok_status(response)?;
    response.typed_value().map_err(frame_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KINDS: [ReplyKind; 11] = [
        ReplyKind::Done,
        ReplyKind::Stored,
        ReplyKind::Value,
        ReplyKind::Integer,
        ReplyKind::Count,
        ReplyKind::Flag,
        ReplyKind::Values,
        ReplyKind::Ttl,
        ReplyKind::Page,
        ReplyKind::Pong,
        ReplyKind::Command,
    ];

    fn response(status: Status, body: &[u8]) -> Response<'_> {
        Response {
            opcode: 0x10,
            status,
            request_id: 1,
            body,
        }
    }

    #[test]
    fn each_shape_decodes_its_own_body() {
        fn ok(body: &[u8]) -> Response<'_> {
            response(Status::Ok, body)
        }
        assert_eq!(done(&ok(b"")).ok(), Some(()));
        assert_eq!(stored(&response(Status::NotStored, b"")).ok(), Some(false));
        assert_eq!(value(&ok(b"v")).unwrap(), Some(b"v".to_vec()));
        assert_eq!(value(&response(Status::NotFound, b"")).unwrap(), None);
        assert_eq!(integer(&ok(&(-3i64).to_le_bytes())).unwrap(), -3);
        assert!(flag(&ok(&1u64.to_le_bytes())).unwrap());
        assert_eq!(ttl(&ok(&(-2i64).to_le_bytes())).unwrap(), Ttl::Missing);
        assert_eq!(ttl(&ok(&(-1i64).to_le_bytes())).unwrap(), Ttl::Persistent);
        assert_eq!(
            ttl(&ok(&1500i64.to_le_bytes())).unwrap(),
            Ttl::Expires(Duration::from_millis(1500))
        );
        let mut mget = 2u32.to_le_bytes().to_vec();
        mget.extend_from_slice(&u32::MAX.to_le_bytes());
        mget.extend_from_slice(&1u32.to_le_bytes());
        mget.push(b'x');
        assert_eq!(
            values(&response(Status::Ok, &mget)).unwrap(),
            vec![None, Some(b"x".to_vec())]
        );
        assert_eq!(
            typed(&ok(&[0x03, 5, 0, 0, 0, 0, 0, 0, 0])).unwrap(),
            Value::Integer(5)
        );
        assert!(typed(&ok(&[0x03, 5])).unwrap_err().is_protocol());
        let error = integer(&response(Status::WrongType, b"WRONGTYPE no")).unwrap_err();
        assert_eq!(error.status(), Some(Status::WrongType));
    }

    proptest! {
        /// Whatever status and body a server sends, decoding returns a value
        /// or an error; it never panics.
        #[test]
        fn any_status_and_body_decode_without_panicking(
            status in proptest::sample::select(Status::ALL.to_vec()),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            kind in proptest::sample::select(KINDS.to_vec()),
        ) {
            let _ = kind.decode(&response(status, &body));
        }
    }
}
