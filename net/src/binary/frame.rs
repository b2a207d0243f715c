//! The frame header, the completeness check, the body reader and the frame
//! writer shared by requests and responses.

use super::{HEADER_LEN, MAGIC, VERSION};
use crate::error::{Error, Result};

/// A decoded header. `flags_or_status` is the flags byte in a request and
/// the status byte in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Opcode byte (not yet checked against the known opcodes).
    pub opcode: u8,
    /// Request flags or response status.
    pub flags_or_status: u8,
    /// Chosen by the client, echoed by the server, so a pipelining client
    /// can match responses to requests.
    pub request_id: u32,
    /// Bytes after the header.
    pub body_len: usize,
}

/// Checks whether `buf` starts with a whole frame whose body is at most
/// `max_body_bytes`, and returns its total length. Reads only the header, so
/// the cost does not depend on the body; the magic and version are checked
/// as soon as their bytes arrive, and the body limit before any body byte is
/// buffered.
pub fn check(buf: &[u8], max_body_bytes: usize) -> Result<usize> {
    match buf.first() {
        None => return Err(Error::Incomplete),
        Some(&got) if got != MAGIC => return Err(Error::BadMagic { got }),
        Some(_) => {}
    }
    match buf.get(1) {
        Some(&got) if got != VERSION => return Err(Error::UnsupportedVersion { got }),
        _ => {}
    }
    let header = peek_header(buf).ok_or(Error::Incomplete)?;
    if header.body_len > max_body_bytes {
        return Err(Error::BodyTooLong {
            len: header.body_len,
            limit: max_body_bytes,
        });
    }
    let frame_len = HEADER_LEN + header.body_len;
    if buf.len() < frame_len {
        return Err(Error::Incomplete);
    }
    Ok(frame_len)
}

/// The header at the start of `buf`, if all 12 bytes are there; used to
/// echo the opcode and request id in an error response. Does not check the
/// magic or version.
pub fn peek_header(buf: &[u8]) -> Option<Header> {
    let header = buf.get(..HEADER_LEN)?;
    Some(Header {
        opcode: header[2],
        flags_or_status: header[3],
        request_id: u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")),
        body_len: u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize,
    })
}

/// Reads fields from a body, front to back, naming the field in errors.
pub(crate) struct BodyReader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> BodyReader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        BodyReader { body, at: 0 }
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.body.len())
            .ok_or(Error::Truncated {
                field,
                offset: self.at,
            })?;
        let bytes = &self.body[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.take(1, field)?[0])
    }

    /// Three bytes (a verbatim string's format).
    pub(crate) fn array3(&mut self, field: &'static str) -> Result<[u8; 3]> {
        Ok(self.take(3, field)?.try_into().expect("3 bytes"))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, field)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, field)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64> {
        Ok(i64::from_le_bytes(
            self.take(8, field)?.try_into().expect("8 bytes"),
        ))
    }

    /// A byte string: u32 LE length, then the bytes. The length is checked
    /// against the bytes present, so it never drives an allocation.
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8]> {
        let start = self.at;
        let len = self.u32(field)?;
        self.take(len as usize, field)
            .map_err(|_| Error::Truncated {
                field,
                offset: start,
            })
    }

    /// A byte string or the [`super::NULL_LEN`] marker.
    pub(crate) fn optional_bytes(&mut self, field: &'static str) -> Result<Option<&'a [u8]>> {
        let start = self.at;
        let len = self.u32(field)?;
        if len == super::NULL_LEN {
            return Ok(None);
        }
        self.take(len as usize, field)
            .map(Some)
            .map_err(|_| Error::Truncated {
                field,
                offset: start,
            })
    }

    /// A batch count, checked against [`super::MAX_BATCH_ITEMS`].
    pub(crate) fn count(&mut self, field: &'static str) -> Result<usize> {
        let count = self.u32(field)? as usize;
        if count > super::MAX_BATCH_ITEMS {
            return Err(Error::TooManyItems {
                count,
                limit: super::MAX_BATCH_ITEMS,
            });
        }
        Ok(count)
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = &self.body[self.at..];
        self.at = self.body.len();
        rest
    }

    /// Everything not read yet, without consuming it.
    pub(crate) fn rest_view(&self) -> &'a [u8] {
        &self.body[self.at..]
    }

    /// Offset of the next unread byte.
    pub(crate) fn offset(&self) -> usize {
        self.at
    }

    /// The body must have been read entirely.
    pub(crate) fn finish(self) -> Result<()> {
        if self.at != self.body.len() {
            return Err(Error::TrailingBytes { offset: self.at });
        }
        Ok(())
    }
}

/// Appends one frame to an output buffer: the header goes first with a zero
/// body length, fields follow, and [`FrameWriter::finish`] patches the
/// length in.
#[must_use = "a frame is only valid after finish()"]
pub struct FrameWriter<'a> {
    out: &'a mut Vec<u8>,
    frame_start: usize,
    max_body_bytes: usize,
}

impl<'a> FrameWriter<'a> {
    /// Starts a frame with the given header fields.
    pub fn new(
        out: &'a mut Vec<u8>,
        opcode: u8,
        flags_or_status: u8,
        request_id: u32,
        max_body_bytes: usize,
    ) -> Self {
        let frame_start = out.len();
        out.extend_from_slice(&[MAGIC, VERSION, opcode, flags_or_status]);
        out.extend_from_slice(&request_id.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        FrameWriter {
            out,
            frame_start,
            max_body_bytes,
        }
    }

    /// A u32 LE field.
    pub fn u32(self, value: u32) -> Self {
        self.out.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A u64 LE field.
    pub fn u64(self, value: u64) -> Self {
        self.out.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// An i64 LE field.
    pub fn i64(self, value: i64) -> Self {
        self.out.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A length-prefixed byte string. A string longer than a u32 can say
    /// gets a length the reader will reject as truncated; `finish` fails
    /// first because the body limit is below 4 GiB for requests.
    pub fn bytes(self, value: &[u8]) -> Self {
        let len = u32::try_from(value.len()).unwrap_or(u32::MAX - 1);
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(value);
        self
    }

    /// A byte string or the null marker.
    pub fn optional_bytes(self, value: Option<&[u8]>) -> Self {
        match value {
            Some(value) => self.bytes(value),
            None => self.u32(super::NULL_LEN),
        }
    }

    /// Bytes with no length prefix (a body that is one value).
    pub fn raw(self, value: &[u8]) -> Self {
        self.out.extend_from_slice(value);
        self
    }

    /// A typed value (`super::value`), written by `write`: the body of a table command's
    /// response or of a push.
    pub fn value(self, write: impl FnOnce(&mut super::ValueWriter<'_>)) -> Self {
        write(&mut super::ValueWriter::new(self.out));
        self
    }

    /// Writes the body length. If the body is over the limit, the frame is
    /// removed from the buffer again and the error says by how much.
    pub fn finish(self) -> Result<()> {
        let body_len = self.out.len() - self.frame_start - HEADER_LEN;
        if body_len > self.max_body_bytes {
            self.out.truncate(self.frame_start);
            return Err(Error::BodyTooLong {
                len: body_len,
                limit: self.max_body_bytes,
            });
        }
        let len_at = self.frame_start + 8;
        self.out[len_at..len_at + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
        Ok(())
    }
}
