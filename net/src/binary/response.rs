//! Responses: decoding for the client, and the error-response encoder the
//! server uses when it cannot decode a request. Successful responses are
//! written with [`super::Request::respond`].

use super::frame::{check, peek_header, BodyReader, FrameWriter};
use super::request::Items;
use super::value::{decode_value, Value, ValueWriter};
use super::{Status, HEADER_LEN, MAX_RESPONSE_BODY_BYTES};
use crate::error::{Error, Result};

/// A decoded response; the body is interpreted by the typed accessors,
/// which the client picks by the opcode it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    /// The request's opcode, echoed (raw, since a server may answer an
    /// opcode this client build does not know).
    pub opcode: u8,
    /// Outcome.
    pub status: Status,
    /// The request's id, echoed.
    pub request_id: u32,
    /// The body, still encoded.
    pub body: &'a [u8],
}

/// Decodes one response frame (exactly one frame).
pub fn parse_response(frame: &[u8]) -> Result<Response<'_>> {
    let len = check(frame, MAX_RESPONSE_BODY_BYTES)?;
    if len != frame.len() {
        return Err(Error::TrailingBytes {
            offset: len - HEADER_LEN,
        });
    }
    let header = peek_header(frame).expect("checked frame has a header");
    let status = Status::from_u8(header.flags_or_status).ok_or(Error::UnknownStatus {
        got: header.flags_or_status,
    })?;
    Ok(Response {
        opcode: header.opcode,
        status,
        request_id: header.request_id,
        body: &frame[HEADER_LEN..],
    })
}

impl<'a> Response<'a> {
    /// The value of a GET or the payload of a PING: the whole body.
    pub fn value(&self) -> &'a [u8] {
        self.body
    }

    /// The message of an error status (lossy UTF-8).
    pub fn message(&self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.body)
    }

    /// The u64 of DEL, EXISTS, EXPIRE, MDEL.
    pub fn count(&self) -> Result<u64> {
        let mut reader = BodyReader::new(self.body);
        let value = reader.u64("count")?;
        reader.finish()?;
        Ok(value)
    }

    /// The i64 of INCR, INCRBY, TTL.
    pub fn integer(&self) -> Result<i64> {
        let mut reader = BodyReader::new(self.body);
        let value = reader.i64("integer")?;
        reader.finish()?;
        Ok(value)
    }

    /// The values of an MGET, `None` for missing keys.
    pub fn values(&self) -> Result<OptionalItems<'a>> {
        let mut reader = BodyReader::new(self.body);
        let count = reader.count("count")?;
        let start = reader.offset();
        for _ in 0..count {
            reader.optional_bytes("value")?;
        }
        let end = reader.offset();
        reader.finish()?;
        Ok(OptionalItems {
            remaining: count,
            bytes: &self.body[start..end],
        })
    }

    /// The typed value of a table command, a CALL, or a push.
    pub fn typed_value(&self) -> Result<Value> {
        decode_value(self.body)
    }

    /// True for a push frame (a message the server sent on its own, not a response).
    pub fn is_push(&self) -> bool {
        self.status == Status::Push
    }

    /// The page of a SCAN.
    pub fn scan_page(&self) -> Result<ScanPage<'a>> {
        let mut reader = BodyReader::new(self.body);
        let cursor = reader.u64("cursor")?;
        let count = reader.count("count")?;
        let keys = Items::read(&mut reader, count, 1, "key")?;
        reader.finish()?;
        Ok(ScanPage { cursor, keys })
    }
}

/// A SCAN response: the cursor to continue from (0: done) and the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage<'a> {
    /// Pass this back in the next SCAN; 0 means the iteration is complete.
    pub cursor: u64,
    /// Keys of this page.
    pub keys: Items<'a>,
}

/// MGET values, validated by [`Response::values`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionalItems<'a> {
    remaining: usize,
    bytes: &'a [u8],
}

impl<'a> Iterator for OptionalItems<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let mut reader = BodyReader::new(self.bytes);
        let item = reader
            .optional_bytes("value")
            .expect("values were validated");
        self.bytes = reader.rest();
        self.remaining -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for OptionalItems<'_> {}

/// Appends a response with an error `status` and `message` as its body.
/// Used for requests that could not be decoded: pass the opcode and request
/// id from [`super::peek_header`] when the header was readable, zeros
/// otherwise.
pub fn encode_error(out: &mut Vec<u8>, opcode: u8, request_id: u32, status: Status, message: &str) {
    FrameWriter::new(
        out,
        opcode,
        status as u8,
        request_id,
        MAX_RESPONSE_BODY_BYTES,
    )
    .raw(message.as_bytes())
    .finish()
    .expect("an error message is far below 4 GiB");
}

/// Request id of every push frame. Pushes are told from responses by their status
/// ([`Status::Push`]), not by this id: a client's ids may wrap around to 0.
pub const PUSH_REQUEST_ID: u32 = 0;

/// Appends a push frame: status [`Status::Push`], request id 0, `opcode` naming the kind of
/// push (the opcode of the command that subscribed to it; [`super::Opcode::Call`] for
/// commands called by name), and the typed value `write` writes as its body. Fails (and
/// appends nothing) only if the body passes 4 GiB - 1.
pub fn encode_push(
    out: &mut Vec<u8>,
    opcode: u8,
    write: impl FnOnce(&mut ValueWriter<'_>),
) -> Result<()> {
    FrameWriter::new(
        out,
        opcode,
        Status::Push as u8,
        PUSH_REQUEST_ID,
        MAX_RESPONSE_BODY_BYTES,
    )
    .value(write)
    .finish()
}
