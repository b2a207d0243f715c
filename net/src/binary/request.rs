//! Requests: the decoded [`Request`] the server handles, and one encoder per
//! opcode for the client.

use super::commands::{self, CommandSpec};
use super::frame::{check, BodyReader, FrameWriter};
use super::{flags, Opcode, Status, HEADER_LEN, MAX_REQUEST_BODY_BYTES, MAX_RESPONSE_BODY_BYTES};
use crate::error::{Error, Result};

/// A decoded request. Byte strings borrow from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Echo this in the response.
    pub request_id: u32,
    /// What to do.
    pub op: Op<'a>,
}

/// SET's condition (Redis NX / XX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    /// Always write.
    Always,
    /// NX: only if the key does not exist.
    IfAbsent,
    /// XX: only if the key exists.
    IfPresent,
}

/// The operation of a request: one variant per typed opcode, one for the rows of the opcode
/// table, one for a command called by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    /// PING; the response echoes `payload`.
    Ping { payload: &'a [u8] },
    /// AUTH; an empty username means the default user.
    Auth {
        username: &'a [u8],
        password: &'a [u8],
    },
    /// GET.
    Get { key: &'a [u8] },
    /// SET with optional TTL and condition.
    Set {
        key: &'a [u8],
        value: &'a [u8],
        ttl_ms: Option<u64>,
        condition: SetCondition,
    },
    /// DEL of one key.
    Del { key: &'a [u8] },
    /// EXISTS of one key.
    Exists { key: &'a [u8] },
    /// INCR.
    Incr { key: &'a [u8] },
    /// INCRBY.
    IncrBy { key: &'a [u8], delta: i64 },
    /// PEXPIRE: the key expires `ttl_ms` from now.
    Expire { key: &'a [u8], ttl_ms: u64 },
    /// PTTL.
    Ttl { key: &'a [u8] },
    /// MGET.
    MGet { keys: Items<'a> },
    /// MSET.
    MSet { pairs: Pairs<'a> },
    /// DEL of many keys.
    MDel { keys: Items<'a> },
    /// SCAN from `cursor` (0 starts), about `count` keys, optional glob.
    Scan {
        cursor: u64,
        count: u32,
        pattern: Option<&'a [u8]>,
    },
    /// A row of the opcode table ([`commands::TABLE`]): the command `name`, with `args`
    /// after the name. Answered with a typed value.
    Command {
        /// The row's name (lower case).
        name: &'static str,
        /// The row's opcode, echoed in the response.
        opcode: u8,
        /// The arguments after the name.
        args: Items<'a>,
    },
    /// [`Opcode::Call`]: any command by name; `args[0]` is the name. Answered with a typed
    /// value.
    Call { args: Items<'a> },
}

impl Op<'_> {
    /// The opcode byte of this operation, echoed in its response.
    pub fn opcode(&self) -> u8 {
        let typed = match self {
            Op::Ping { .. } => Opcode::Ping,
            Op::Auth { .. } => Opcode::Auth,
            Op::Get { .. } => Opcode::Get,
            Op::Set { .. } => Opcode::Set,
            Op::Del { .. } => Opcode::Del,
            Op::Exists { .. } => Opcode::Exists,
            Op::Incr { .. } => Opcode::Incr,
            Op::IncrBy { .. } => Opcode::IncrBy,
            Op::Expire { .. } => Opcode::Expire,
            Op::Ttl { .. } => Opcode::Ttl,
            Op::MGet { .. } => Opcode::MGet,
            Op::MSet { .. } => Opcode::MSet,
            Op::MDel { .. } => Opcode::MDel,
            Op::Scan { .. } => Opcode::Scan,
            Op::Call { .. } => Opcode::Call,
            Op::Command { opcode, .. } => return *opcode,
        };
        typed as u8
    }
}

impl Request<'_> {
    /// Starts the response to this request in `out`; add the body fields
    /// and call `finish()`. Response bodies may be up to 4 GiB - 1.
    pub fn respond<'o>(&self, out: &'o mut Vec<u8>, status: Status) -> FrameWriter<'o> {
        self.reply_to().respond(out, status)
    }

    /// What a response to this request must echo, kept after the request's bytes are gone:
    /// a request that parks (`Action::Park`) is answered later from it.
    pub fn reply_to(&self) -> ReplyTo {
        ReplyTo {
            opcode: self.op.opcode(),
            request_id: self.request_id,
        }
    }
}

/// The opcode and request id a response echoes: enough to answer a request later, when its
/// bytes are no longer in the read buffer (a parked request completed in `Service::on_wake`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyTo {
    /// The request's opcode.
    pub opcode: u8,
    /// The request's id.
    pub request_id: u32,
}

impl ReplyTo {
    /// Starts the response in `out`; add the body and call `finish()`.
    pub fn respond<'o>(&self, out: &'o mut Vec<u8>, status: Status) -> FrameWriter<'o> {
        FrameWriter::new(
            out,
            self.opcode,
            status as u8,
            self.request_id,
            MAX_RESPONSE_BODY_BYTES,
        )
    }
}

/// Length-prefixed byte strings, validated when the request was parsed, so
/// iterating cannot fail. Nothing is copied or collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Items<'a> {
    remaining: usize,
    bytes: &'a [u8],
}

impl<'a> Items<'a> {
    /// Validates `count` byte strings at the reader's position and returns
    /// them as a lazy sequence.
    pub(crate) fn read(
        reader: &mut BodyReader<'a>,
        count: usize,
        per_item: usize,
        field: &'static str,
    ) -> Result<Items<'a>> {
        let start = reader.offset();
        let before = reader.rest_view();
        for _ in 0..count * per_item {
            reader.bytes(field)?;
        }
        let used = reader.offset() - start;
        Ok(Items {
            remaining: count * per_item,
            bytes: &before[..used],
        })
    }

    /// Items left.
    pub fn len(&self) -> usize {
        self.remaining
    }

    /// True if there are none left.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        let mut reader = BodyReader::new(self.bytes);
        let item = reader
            .bytes("item")
            .expect("items were validated when parsed");
        self.bytes = reader.rest();
        self.remaining -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Items<'_> {}

/// Key-value pairs of an MSET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairs<'a> {
    items: Items<'a>,
}

impl Pairs<'_> {
    /// Pairs left.
    pub fn len(&self) -> usize {
        self.items.len() / 2
    }

    /// True if there are none left.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let key = self.items.next()?;
        let value = self
            .items
            .next()
            .expect("pairs hold an even number of items");
        Some((key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl ExactSizeIterator for Pairs<'_> {}

/// Decodes a request frame that [`super::check`] accepted (or checks it
/// here: a frame shorter than its header says gives `Incomplete`). `frame`
/// must be exactly one frame. Opcodes without a codec of their own are looked up in
/// [`commands::TABLE`].
pub fn parse_request(frame: &[u8]) -> Result<Request<'_>> {
    parse_request_in(frame, commands::TABLE)
}

/// [`parse_request`] with another opcode table (tests of rows the real table does not hold
/// yet).
pub(crate) fn parse_request_in<'a>(
    frame: &'a [u8],
    table: &'static [CommandSpec],
) -> Result<Request<'a>> {
    let len = check(frame, MAX_REQUEST_BODY_BYTES)?;
    if len != frame.len() {
        return Err(Error::TrailingBytes {
            offset: len - HEADER_LEN,
        });
    }
    let header = super::peek_header(frame).expect("checked frame has a header");
    let Some(opcode) = Opcode::from_u8(header.opcode) else {
        let spec = commands::by_opcode(table, header.opcode).ok_or(Error::UnknownOpcode {
            opcode: header.opcode,
        })?;
        return parse_table_command(frame, &header, spec);
    };
    let allowed_flags = match opcode {
        Opcode::Set => flags::SET_NX | flags::SET_XX | flags::SET_TTL,
        Opcode::Scan => flags::SCAN_PATTERN,
        _ => 0,
    };
    let flag_bits = header.flags_or_status;
    if flag_bits & !allowed_flags != 0 {
        return Err(Error::UnknownFlags {
            opcode: header.opcode,
            flags: flag_bits,
        });
    }
    let mut body = BodyReader::new(&frame[HEADER_LEN..]);
    let op = match opcode {
        Opcode::Ping => Op::Ping {
            payload: body.rest(),
        },
        Opcode::Auth => Op::Auth {
            username: body.bytes("username")?,
            password: body.bytes("password")?,
        },
        Opcode::Get => Op::Get {
            key: body.bytes("key")?,
        },
        Opcode::Set => parse_set(&mut body, header.opcode, flag_bits)?,
        Opcode::Del => Op::Del {
            key: body.bytes("key")?,
        },
        Opcode::Exists => Op::Exists {
            key: body.bytes("key")?,
        },
        Opcode::Incr => Op::Incr {
            key: body.bytes("key")?,
        },
        Opcode::IncrBy => Op::IncrBy {
            key: body.bytes("key")?,
            delta: body.i64("delta")?,
        },
        Opcode::Expire => Op::Expire {
            key: body.bytes("key")?,
            ttl_ms: body.u64("ttl_ms")?,
        },
        Opcode::Ttl => Op::Ttl {
            key: body.bytes("key")?,
        },
        Opcode::MGet => {
            let count = body.count("count")?;
            Op::MGet {
                keys: Items::read(&mut body, count, 1, "key")?,
            }
        }
        Opcode::MSet => {
            let count = body.count("count")?;
            Op::MSet {
                pairs: Pairs {
                    items: Items::read(&mut body, count, 2, "pair")?,
                },
            }
        }
        Opcode::MDel => {
            let count = body.count("count")?;
            Op::MDel {
                keys: Items::read(&mut body, count, 1, "key")?,
            }
        }
        Opcode::Scan => Op::Scan {
            cursor: body.u64("cursor")?,
            count: body.u32("count")?,
            pattern: if flag_bits & flags::SCAN_PATTERN != 0 {
                Some(body.bytes("pattern")?)
            } else {
                None
            },
        },
        Opcode::Call => Op::Call {
            args: read_arguments(&mut body)?,
        },
    };
    body.finish()?;
    Ok(Request {
        request_id: header.request_id,
        op,
    })
}

/// A request for a row of the opcode table: no flags, an argument list.
fn parse_table_command<'a>(
    frame: &'a [u8],
    header: &super::Header,
    spec: &'static CommandSpec,
) -> Result<Request<'a>> {
    if header.flags_or_status != 0 {
        return Err(Error::UnknownFlags {
            opcode: header.opcode,
            flags: header.flags_or_status,
        });
    }
    let mut body = BodyReader::new(&frame[HEADER_LEN..]);
    let args = match spec.body {
        commands::Body::Arguments => read_arguments(&mut body)?,
    };
    body.finish()?;
    Ok(Request {
        request_id: header.request_id,
        op: Op::Command {
            name: spec.name,
            opcode: spec.opcode,
            args,
        },
    })
}

/// An argument list: u32 count, then count × bytes.
fn read_arguments<'a>(body: &mut BodyReader<'a>) -> Result<Items<'a>> {
    let count = body.count("count")?;
    Items::read(body, count, 1, "argument")
}

fn parse_set<'a>(body: &mut BodyReader<'a>, opcode: u8, flag_bits: u8) -> Result<Op<'a>> {
    let condition = match (
        flag_bits & flags::SET_NX != 0,
        flag_bits & flags::SET_XX != 0,
    ) {
        (true, true) => {
            return Err(Error::ConflictingFlags {
                opcode,
                flags: flag_bits,
            })
        }
        (true, false) => SetCondition::IfAbsent,
        (false, true) => SetCondition::IfPresent,
        (false, false) => SetCondition::Always,
    };
    let key = body.bytes("key")?;
    let value = body.bytes("value")?;
    let ttl_ms = if flag_bits & flags::SET_TTL != 0 {
        Some(body.u64("ttl_ms")?)
    } else {
        None
    };
    Ok(Op::Set {
        key,
        value,
        ttl_ms,
        condition,
    })
}

fn request(out: &mut Vec<u8>, opcode: Opcode, flag_bits: u8, request_id: u32) -> FrameWriter<'_> {
    FrameWriter::new(
        out,
        opcode as u8,
        flag_bits,
        request_id,
        MAX_REQUEST_BODY_BYTES,
    )
}

/// Appends a PING request. Fails (and appends nothing) only if a body would
/// exceed [`MAX_REQUEST_BODY_BYTES`]; the same holds for every encoder here.
pub fn encode_ping(out: &mut Vec<u8>, request_id: u32, payload: &[u8]) -> Result<()> {
    request(out, Opcode::Ping, 0, request_id)
        .raw(payload)
        .finish()
}

/// Appends an AUTH request.
pub fn encode_auth(out: &mut Vec<u8>, request_id: u32, user: &[u8], password: &[u8]) -> Result<()> {
    request(out, Opcode::Auth, 0, request_id)
        .bytes(user)
        .bytes(password)
        .finish()
}

/// Appends a GET request.
pub fn encode_get(out: &mut Vec<u8>, request_id: u32, key: &[u8]) -> Result<()> {
    request(out, Opcode::Get, 0, request_id).bytes(key).finish()
}

/// Appends a SET request.
pub fn encode_set(
    out: &mut Vec<u8>,
    request_id: u32,
    key: &[u8],
    value: &[u8],
    ttl_ms: Option<u64>,
    condition: SetCondition,
) -> Result<()> {
    let mut flag_bits = match condition {
        SetCondition::Always => 0,
        SetCondition::IfAbsent => flags::SET_NX,
        SetCondition::IfPresent => flags::SET_XX,
    };
    if ttl_ms.is_some() {
        flag_bits |= flags::SET_TTL;
    }
    let writer = request(out, Opcode::Set, flag_bits, request_id)
        .bytes(key)
        .bytes(value);
    match ttl_ms {
        Some(ttl_ms) => writer.u64(ttl_ms).finish(),
        None => writer.finish(),
    }
}

/// Appends a DEL request for one key.
pub fn encode_del(out: &mut Vec<u8>, request_id: u32, key: &[u8]) -> Result<()> {
    request(out, Opcode::Del, 0, request_id).bytes(key).finish()
}

/// Appends an EXISTS request.
pub fn encode_exists(out: &mut Vec<u8>, request_id: u32, key: &[u8]) -> Result<()> {
    request(out, Opcode::Exists, 0, request_id)
        .bytes(key)
        .finish()
}

/// Appends an INCR request.
pub fn encode_incr(out: &mut Vec<u8>, request_id: u32, key: &[u8]) -> Result<()> {
    request(out, Opcode::Incr, 0, request_id)
        .bytes(key)
        .finish()
}

/// Appends an INCRBY request.
pub fn encode_incr_by(out: &mut Vec<u8>, request_id: u32, key: &[u8], delta: i64) -> Result<()> {
    request(out, Opcode::IncrBy, 0, request_id)
        .bytes(key)
        .i64(delta)
        .finish()
}

/// Appends an EXPIRE request (milliseconds).
pub fn encode_expire(out: &mut Vec<u8>, request_id: u32, key: &[u8], ttl_ms: u64) -> Result<()> {
    request(out, Opcode::Expire, 0, request_id)
        .bytes(key)
        .u64(ttl_ms)
        .finish()
}

/// Appends a TTL request.
pub fn encode_ttl(out: &mut Vec<u8>, request_id: u32, key: &[u8]) -> Result<()> {
    request(out, Opcode::Ttl, 0, request_id).bytes(key).finish()
}

fn encode_keys(out: &mut Vec<u8>, opcode: Opcode, request_id: u32, keys: &[&[u8]]) -> Result<()> {
    if keys.len() > super::MAX_BATCH_ITEMS {
        return Err(Error::TooManyItems {
            count: keys.len(),
            limit: super::MAX_BATCH_ITEMS,
        });
    }
    let mut writer = request(out, opcode, 0, request_id).u32(keys.len() as u32);
    for key in keys {
        writer = writer.bytes(key);
    }
    writer.finish()
}

/// Appends an MGET request.
pub fn encode_mget(out: &mut Vec<u8>, request_id: u32, keys: &[&[u8]]) -> Result<()> {
    encode_keys(out, Opcode::MGet, request_id, keys)
}

/// Appends an MDEL request.
pub fn encode_mdel(out: &mut Vec<u8>, request_id: u32, keys: &[&[u8]]) -> Result<()> {
    encode_keys(out, Opcode::MDel, request_id, keys)
}

/// Appends an MSET request.
pub fn encode_mset(out: &mut Vec<u8>, request_id: u32, pairs: &[(&[u8], &[u8])]) -> Result<()> {
    if pairs.len() > super::MAX_BATCH_ITEMS {
        return Err(Error::TooManyItems {
            count: pairs.len(),
            limit: super::MAX_BATCH_ITEMS,
        });
    }
    let mut writer = request(out, Opcode::MSet, 0, request_id).u32(pairs.len() as u32);
    for (key, value) in pairs {
        writer = writer.bytes(key).bytes(value);
    }
    writer.finish()
}

fn encode_arguments<A: AsRef<[u8]>>(
    out: &mut Vec<u8>,
    opcode: u8,
    request_id: u32,
    args: &[A],
) -> Result<()> {
    if args.len() > super::MAX_BATCH_ITEMS {
        return Err(Error::TooManyItems {
            count: args.len(),
            limit: super::MAX_BATCH_ITEMS,
        });
    }
    let mut writer =
        FrameWriter::new(out, opcode, 0, request_id, MAX_REQUEST_BODY_BYTES).u32(args.len() as u32);
    for arg in args {
        writer = writer.bytes(arg.as_ref());
    }
    writer.finish()
}

/// Appends a CALL request: any command by name, `args[0]` being the name
/// (`[b"APPEND", b"k", b"v"]`). The response is a typed value.
pub fn encode_call<A: AsRef<[u8]>>(out: &mut Vec<u8>, request_id: u32, args: &[A]) -> Result<()> {
    encode_arguments(out, Opcode::Call as u8, request_id, args)
}

/// Appends a request for a row of the opcode table, `args` being the arguments after the
/// name. Refused (nothing appended) if their number does not fit the row's arity.
pub fn encode_command<A: AsRef<[u8]>>(
    out: &mut Vec<u8>,
    request_id: u32,
    spec: &CommandSpec,
    args: &[A],
) -> Result<()> {
    if !spec.arity_ok(args.len()) {
        return Err(Error::WrongArity {
            name: spec.name,
            args: args.len(),
        });
    }
    match spec.body {
        commands::Body::Arguments => encode_arguments(out, spec.opcode, request_id, args),
    }
}

/// Appends a SCAN request.
pub fn encode_scan(
    out: &mut Vec<u8>,
    request_id: u32,
    cursor: u64,
    count: u32,
    pattern: Option<&[u8]>,
) -> Result<()> {
    let flag_bits = if pattern.is_some() {
        flags::SCAN_PATTERN
    } else {
        0
    };
    let writer = request(out, Opcode::Scan, flag_bits, request_id)
        .u64(cursor)
        .u32(count);
    match pattern {
        Some(pattern) => writer.bytes(pattern).finish(),
        None => writer.finish(),
    }
}
