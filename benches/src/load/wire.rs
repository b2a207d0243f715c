//! The two protocols behind one interface, so a run differs between them
//! only in the bytes: [`Wire::Binary`] is flin-net's client [`Connection`]
//! (the one a `flin_net::Client` uses), [`Wire::Resp`] a minimal RESP2
//! client written the same way (one output buffer, one write per batch, a
//! read buffer parsed in place). Neither copies reply values out.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use flin_net::binary::{self, FrameWriter, Opcode, SetCondition, Status};
use flin_net::client::{ClientOptions, Connection};
use flin_net::resp;

use super::workload::Op;

/// Which protocol a run speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Binary,
    Resp,
}

impl Protocol {
    pub fn parse(text: &str) -> Result<Protocol, String> {
        match text.to_ascii_lowercase().as_str() {
            "binary" => Ok(Protocol::Binary),
            "resp" => Ok(Protocol::Resp),
            _ => Err(format!("unknown protocol '{text}' (binary or resp)")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Binary => "binary",
            Protocol::Resp => "resp",
        })
    }
}

/// How one reply came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (including "not found" and "not stored").
    Done,
    /// The server refused the request; its message.
    Refused(String),
}

/// Why a connection cannot go on.
#[derive(Debug)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<io::Error> for WireError {
    fn from(error: io::Error) -> Self {
        WireError(format!("network error: {error}"))
    }
}

impl From<flin_net::client::Error> for WireError {
    fn from(error: flin_net::client::Error) -> Self {
        WireError(error.to_string())
    }
}

/// Time a benchmark read or write may block before the run fails.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One benchmark connection.
pub enum Wire {
    Binary(Connection),
    Resp(RespConnection),
}

impl Wire {
    /// Connects and, with a password, authenticates.
    pub fn open(
        protocol: Protocol,
        addr: SocketAddr,
        password: Option<&str>,
    ) -> Result<Wire, WireError> {
        match protocol {
            Protocol::Binary => {
                let mut options = ClientOptions::new()
                    .read_timeout(Some(IO_TIMEOUT))
                    .write_timeout(Some(IO_TIMEOUT));
                if let Some(password) = password {
                    options = options.password(password);
                }
                Ok(Wire::Binary(Connection::open(addr, &options)?))
            }
            Protocol::Resp => {
                let mut connection = RespConnection::open(addr)?;
                if let Some(password) = password {
                    resp::encode_command(&mut connection.out, &[b"AUTH", password.as_bytes()]);
                    if let Outcome::Refused(message) = connection.receive()? {
                        return Err(WireError(format!("AUTH refused: {message}")));
                    }
                }
                Ok(Wire::Resp(connection))
            }
        }
    }

    /// Queues one request (written by the next `flush`).
    pub fn queue(&mut self, op: &Op<'_>) -> Result<(), WireError> {
        match self {
            Wire::Binary(connection) => {
                connection.queue(|out, id| encode_binary(out, id, op))?;
                Ok(())
            }
            Wire::Resp(connection) => {
                connection.queue(op);
                Ok(())
            }
        }
    }

    /// Writes everything queued.
    pub fn flush(&mut self) -> Result<(), WireError> {
        match self {
            Wire::Binary(connection) => Ok(connection.flush()?),
            Wire::Resp(connection) => Ok(connection.flush()?),
        }
    }

    /// Reads the oldest reply.
    pub fn receive(&mut self) -> Result<Outcome, WireError> {
        match self {
            Wire::Binary(connection) => {
                let response = connection.receive()?;
                Ok(match response.status {
                    Status::Ok | Status::NotFound | Status::NotStored => Outcome::Done,
                    _ => Outcome::Refused(response.message().into_owned()),
                })
            }
            Wire::Resp(connection) => connection.receive(),
        }
    }
}

fn encode_binary(out: &mut Vec<u8>, request_id: u32, op: &Op<'_>) -> flin_net::Result<()> {
    match *op {
        Op::Set { key, value } => {
            binary::encode_set(out, request_id, key, value, None, SetCondition::Always)
        }
        Op::Get { key } => binary::encode_get(out, request_id, key),
        Op::Incr { key } => binary::encode_incr(out, request_id, key),
        // Written field by field: building the `&[(key, value)]` that
        // `encode_mset` takes would allocate per request.
        Op::MSet { keys, value } => {
            let mut frame = FrameWriter::new(
                out,
                Opcode::MSet as u8,
                0,
                request_id,
                binary::MAX_REQUEST_BODY_BYTES,
            )
            .u32(keys.len() as u32);
            for key in keys {
                frame = frame.bytes(key).bytes(value);
            }
            frame.finish()
        }
        Op::QueuePush { queue, value } => {
            binary::encode_command(out, request_id, queue_row("queue.push"), &[queue, value])
        }
        Op::QueuePop { queue, count } => binary::encode_command(
            out,
            request_id,
            queue_row("queue.pop"),
            &[queue, b"COUNT", count, b"NOACK"],
        ),
        Op::StreamPublish { topic, value } => binary::encode_command(
            out,
            request_id,
            queue_row("stream.publish"),
            &[topic, value],
        ),
        Op::StreamMPublish {
            topic,
            value,
            count,
        } => {
            let mut args: Vec<&[u8]> = Vec::with_capacity(count + 2);
            args.extend([topic, b"VALUES".as_slice()]);
            args.extend(std::iter::repeat_n(value, count));
            binary::encode_command(out, request_id, queue_row("stream.mpublish"), &args)
        }
        // A document command with a row in the opcode table goes as that row; one without
        // (a command newer than the table) as CALL with its name, which any command the
        // server knows accepts, so a missing row is the server's refusal, not the bench's.
        Op::Document { command, args } => match binary::commands::by_name(command) {
            Some(spec) => binary::encode_command(out, request_id, spec, args),
            None => {
                let mut call: Vec<&[u8]> = Vec::with_capacity(1 + args.len());
                call.push(command);
                call.extend(args.iter().map(Vec::as_slice));
                binary::encode_call(out, request_id, &call)
            }
        },
        Op::MGet { keys } => {
            let mut frame = FrameWriter::new(
                out,
                Opcode::MGet as u8,
                0,
                request_id,
                binary::MAX_REQUEST_BODY_BYTES,
            )
            .u32(keys.len() as u32);
            for key in keys {
                frame = frame.bytes(key);
            }
            frame.finish()
        }
    }
}

/// The opcode-table row of a queue or stream command.
fn queue_row(name: &str) -> &'static binary::commands::CommandSpec {
    binary::commands::TABLE
        .iter()
        .find(|spec| spec.name == name)
        .expect("queue commands are in the opcode table")
}

/// Most bytes one RESP reply may take before the bench calls it broken.
const RESP_REPLY_BYTES_MAX: usize = 1 << 30;
/// Initial read buffer.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// A RESP2 connection for the benchmark: multibulk requests, replies
/// checked for completeness in place.
pub struct RespConnection {
    stream: TcpStream,
    out: Vec<u8>,
    /// `read_start..read_end` not parsed yet; kept at full length.
    read_buf: Vec<u8>,
    read_start: usize,
    read_end: usize,
}

impl RespConnection {
    pub fn open(addr: SocketAddr) -> io::Result<RespConnection> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(RespConnection {
            stream,
            out: Vec::new(),
            read_buf: vec![0; READ_BUFFER_BYTES],
            read_start: 0,
            read_end: 0,
        })
    }

    fn queue(&mut self, op: &Op<'_>) {
        encode_resp(&mut self.out, op);
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    fn receive(&mut self) -> Result<Outcome, WireError> {
        if !self.out.is_empty() {
            self.flush()?;
        }
        loop {
            let pending = &self.read_buf[self.read_start..self.read_end];
            match resp_reply_len(pending).map_err(WireError)? {
                Some(len) => {
                    let outcome = if pending[0] == b'-' {
                        let line = &pending[1..len - 2];
                        Outcome::Refused(String::from_utf8_lossy(line).into_owned())
                    } else {
                        Outcome::Done
                    };
                    self.read_start += len;
                    return Ok(outcome);
                }
                None if pending.len() > RESP_REPLY_BYTES_MAX => {
                    return Err(WireError(format!(
                        "a reply longer than {RESP_REPLY_BYTES_MAX} bytes"
                    )))
                }
                None => self.fill()?,
            }
        }
    }

    fn fill(&mut self) -> Result<(), WireError> {
        if self.read_start == self.read_end {
            self.read_start = 0;
            self.read_end = 0;
        } else if self.read_start > 0 {
            self.read_buf.copy_within(self.read_start..self.read_end, 0);
            self.read_end -= self.read_start;
            self.read_start = 0;
        }
        if self.read_end == self.read_buf.len() {
            let doubled = self.read_buf.len() * 2;
            self.read_buf.resize(doubled, 0);
        }
        match self.stream.read(&mut self.read_buf[self.read_end..])? {
            0 => Err(WireError("the server closed the connection".into())),
            received => {
                self.read_end += received;
                Ok(())
            }
        }
    }
}

/// Appends `op` as a RESP multibulk request (doc-bench sends its Flin side's requests with it).
pub fn encode_resp(out: &mut Vec<u8>, op: &Op<'_>) {
    match *op {
        Op::Set { key, value } => resp::encode_command(out, &[b"SET", key, value]),
        Op::Get { key } => resp::encode_command(out, &[b"GET", key]),
        Op::Incr { key } => resp::encode_command(out, &[b"INCR", key]),
        Op::QueuePush { queue, value } => resp::encode_command(out, &[b"QUEUE.PUSH", queue, value]),
        Op::QueuePop { queue, count } => {
            resp::encode_command(out, &[b"QUEUE.POP", queue, b"COUNT", count, b"NOACK"])
        }
        Op::StreamPublish { topic, value } => {
            resp::encode_command(out, &[b"STREAM.PUBLISH", topic, value])
        }
        Op::StreamMPublish {
            topic,
            value,
            count,
        } => {
            resp::encode_array_header(out, 3 + count);
            resp::encode_bulk(out, b"STREAM.MPUBLISH");
            resp::encode_bulk(out, topic);
            resp::encode_bulk(out, b"VALUES");
            for _ in 0..count {
                resp::encode_bulk(out, value);
            }
        }
        Op::Document { command, args } => {
            resp::encode_array_header(out, 1 + args.len());
            resp::encode_bulk(out, command);
            for arg in args {
                resp::encode_bulk(out, arg);
            }
        }
        Op::MSet { keys, value } => {
            resp::encode_array_header(out, 1 + 2 * keys.len());
            resp::encode_bulk(out, b"MSET");
            for key in keys {
                resp::encode_bulk(out, key);
                resp::encode_bulk(out, value);
            }
        }
        Op::MGet { keys } => {
            resp::encode_array_header(out, 1 + keys.len());
            resp::encode_bulk(out, b"MGET");
            for key in keys {
                resp::encode_bulk(out, key);
            }
        }
    }
}

/// Length of the RESP2 reply at the start of `buf`, `None` if it is not
/// all there yet, an error if it is not RESP.
pub fn resp_reply_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(line_end) = find_crlf(buf) else {
        return Ok(None);
    };
    let after_line = line_end + 2;
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    match kind {
        b'+' | b'-' | b':' => Ok(Some(after_line)),
        b'$' => {
            let len = parse_length(&buf[1..line_end])?;
            match len {
                None => Ok(Some(after_line)),
                Some(len) => {
                    let end = after_line + len + 2;
                    Ok((buf.len() >= end).then_some(end))
                }
            }
        }
        b'*' => {
            let Some(count) = parse_length(&buf[1..line_end])? else {
                return Ok(Some(after_line));
            };
            let mut at = after_line;
            for _ in 0..count {
                match resp_reply_len(&buf[at..])? {
                    Some(len) => at += len,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(format!("not a RESP reply: first byte 0x{other:02x}")),
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|pair| pair == b"\r\n")
}

/// A `$` or `*` length: `None` for -1 (null).
fn parse_length(digits: &[u8]) -> Result<Option<usize>, String> {
    if digits == b"-1" {
        return Ok(None);
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .map(Some)
        .ok_or_else(|| format!("bad RESP length {:?}", String::from_utf8_lossy(digits)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_reply_lengths() {
        assert_eq!(resp_reply_len(b"+OK\r\n+"), Ok(Some(5)));
        assert_eq!(resp_reply_len(b"-ERR x\r\n"), Ok(Some(8)));
        assert_eq!(resp_reply_len(b":12\r\n"), Ok(Some(5)));
        assert_eq!(resp_reply_len(b"$3\r\nabc\r\n"), Ok(Some(9)));
        assert_eq!(resp_reply_len(b"$3\r\nab"), Ok(None));
        assert_eq!(resp_reply_len(b"$-1\r\n"), Ok(Some(5)));
        assert_eq!(resp_reply_len(b"*2\r\n$1\r\na\r\n$-1\r\n"), Ok(Some(16)));
        assert_eq!(resp_reply_len(b"*2\r\n$1\r\na\r\n"), Ok(None));
        assert_eq!(resp_reply_len(b"+O"), Ok(None));
        assert!(resp_reply_len(b"?\r\n").is_err());
        assert!(resp_reply_len(b"$x\r\n").is_err());
    }
}
