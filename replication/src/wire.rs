//! The bytes of a [`Message`], of a frame on a peer connection, and of the hello that opens
//! one. docs/replication.md ("Messages, byte by byte") draws every body; docs/protocol.md says
//! where cluster traffic goes.
//!
//! The conventions are the binary protocol's (docs/protocol.md): integers little-endian and
//! fixed-width, lengths u32, a version byte up front, trailing bytes an error. Fixed widths
//! cost a few bytes per message against varints, and keep every offset computable, which is
//! what lets an error name the exact field and byte it stopped at.
//!
//! Decoding takes bytes from a peer, which may be broken or hostile: it never panics, and it
//! never allocates more than the input justifies (every claimed length and count is checked
//! against the bytes that remain before anything is reserved). A whole message is at most
//! [`MESSAGE_BYTES_MAX`]; a frame claiming more is refused from its length prefix alone.

use std::fmt;
use std::sync::Arc;

use crate::config::Membership;
use crate::message::{Body, ConfChange, ConfChangeKind, Entry, EntryData, Message, NodeId};

/// The message encoding's version, its first byte. Bumped only by an incompatible change;
/// a new body tag is not one (an old node refuses the unknown tag, naming it).
pub const VERSION: u8 = 1;

/// The most bytes one encoded message may take (a frame's length prefix excluded). The core's
/// largest message is an append of `append_bytes_max` plus one `entry_bytes_max` entry (1 MiB
/// and 8 MiB by default); `Config` refuses limits that could exceed this.
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;

/// version, tag, from, to, term.
pub const MESSAGE_HEADER_LEN: usize = 1 + 1 + 8 + 8 + 8;
/// An append's prev_index, prev_term, commit and entry count: what it takes before its entries.
pub const APPEND_FIXED_LEN: usize = 8 + 8 + 8 + 4;
/// term, index, data length: what an entry takes before its data.
pub const ENTRY_HEADER_LEN: usize = 8 + 8 + 4;
/// An InstallSnapshot's index, term, voter count and learner count: what it takes besides
/// its ids (8 bytes each).
pub const INSTALL_SNAPSHOT_FIXED_LEN: usize = 8 + 8 + 4 + 4;
/// The u32 length before each message on a stream.
pub const FRAME_PREFIX_LEN: usize = 4;

/// The first bytes a peer sends on a cluster connection.
pub const HELLO_MAGIC: [u8; 8] = *b"FLINRAFT";
/// The hello's version: the version of everything that follows on the connection.
pub const HELLO_VERSION: u8 = 1;
/// magic, version, node id.
pub const HELLO_LEN: usize = 8 + 1 + 8;

const _: () = assert!(MESSAGE_HEADER_LEN == 26);
const _: () = assert!(ENTRY_HEADER_LEN == 20);
const _: () = assert!(HELLO_LEN == 17);
const _: () = assert!(MESSAGE_BYTES_MAX <= u32::MAX as usize);

/// Body tags, the message's second byte. 0 is never a tag, so a zeroed buffer is refused.
mod tag {
    pub const PRE_VOTE: u8 = 1;
    pub const PRE_VOTE_RESPONSE: u8 = 2;
    pub const VOTE: u8 = 3;
    pub const VOTE_RESPONSE: u8 = 4;
    pub const APPEND: u8 = 5;
    pub const APPEND_ACCEPTED: u8 = 6;
    pub const APPEND_REJECTED: u8 = 7;
    pub const HEARTBEAT: u8 = 8;
    pub const HEARTBEAT_RESPONSE: u8 = 9;
    pub const TIMEOUT_NOW: u8 = 10;
    pub const INSTALL_SNAPSHOT: u8 = 11;
}

/// Why bytes are not a message (or a frame, or a hello): what was wrong, in which field, at
/// which byte offset. Offsets count from the first byte of what was decoded: the message for
/// [`decode`], the frame (its length prefix) for [`FrameReader`], the hello for
/// [`decode_hello`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    /// The field being read, e.g. `"entries[3].data"`.
    pub field: String,
    /// Where that field starts.
    pub offset: usize,
    pub kind: WireErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireErrorKind {
    /// The input ends inside the field: it needs `needed` bytes from `offset`, `available` are there.
    Truncated { needed: usize, available: usize },
    /// A version this build does not speak.
    UnknownVersion(u8),
    /// A body tag this build does not know.
    UnknownTag(u8),
    /// A boolean byte other than 0 or 1.
    InvalidBool(u8),
    /// A length (or the input itself) over `limit`.
    OverLimit { length: u64, limit: u64 },
    /// Bytes left after the last field.
    TrailingBytes { count: usize },
    /// The hello does not start with `FLINRAFT`.
    BadMagic,
    /// A node id of 0 (not an id).
    ZeroNodeId,
    /// A membership's id not above the one before it in its list (ids are listed in
    /// ascending order, each once, so a membership has one encoding).
    NodeIdNotAscending { previous: NodeId, id: NodeId },
    /// A learner that is also listed as a voter.
    LearnerIsVoter(NodeId),
    /// A membership without a voter.
    NoVoters,
}

impl WireError {
    fn new(field: impl Into<String>, offset: usize, kind: WireErrorKind) -> WireError {
        WireError {
            field: field.into(),
            offset,
            kind,
        }
    }

    /// The same error in entry `i` of an append: its field becomes `entries[i].field`.
    fn in_entry(mut self, i: usize) -> WireError {
        self.field = format!("entries[{i}].{}", self.field);
        self
    }

    /// The same error, its offset counted from `by` bytes earlier (a frame's prefix).
    fn shifted(mut self, by: usize) -> WireError {
        self.offset += by;
        self
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (field, offset) = (&self.field, self.offset);
        match &self.kind {
            WireErrorKind::Truncated { needed, available } => write!(
                f,
                "truncated {field} at byte {offset}: needs {needed} bytes, {available} left"
            ),
            WireErrorKind::UnknownVersion(v) => {
                write!(f, "unknown {field} {v} at byte {offset}")
            }
            WireErrorKind::UnknownTag(t) => write!(f, "unknown {field} {t} at byte {offset}"),
            WireErrorKind::InvalidBool(b) => {
                write!(f, "invalid boolean {b} in {field} at byte {offset}")
            }
            WireErrorKind::OverLimit { length, limit } => write!(
                f,
                "{field} of {length} at byte {offset} is over the limit of {limit}"
            ),
            WireErrorKind::TrailingBytes { count } => {
                write!(f, "{count} trailing bytes after {field} at byte {offset}")
            }
            WireErrorKind::BadMagic => write!(f, "bad {field} at byte {offset}: not FLINRAFT"),
            WireErrorKind::ZeroNodeId => write!(f, "{field} 0 at byte {offset} is not a node id"),
            WireErrorKind::NodeIdNotAscending { previous, id } => write!(
                f,
                "{field} {id} at byte {offset} is not above the id before it ({previous})"
            ),
            WireErrorKind::LearnerIsVoter(id) => {
                write!(f, "{field} {id} at byte {offset} is a voter too")
            }
            WireErrorKind::NoVoters => write!(f, "{field} 0 at byte {offset}: no voter"),
        }
    }
}

impl std::error::Error for WireError {}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends `message`'s encoding to `out`.
///
/// Panics if the encoding would exceed [`MESSAGE_BYTES_MAX`]: the core never builds such a
/// message (`Config` bounds an append below it), so one is a bug, not a peer's fault.
pub fn encode(message: &Message, out: &mut Vec<u8>) {
    let len = encoded_len(message);
    assert!(
        len <= MESSAGE_BYTES_MAX,
        "a {len}-byte message is over MESSAGE_BYTES_MAX"
    );
    out.reserve(len);
    let start = out.len();
    out.push(VERSION);
    out.push(body_tag(&message.body));
    put_u64(out, message.from);
    put_u64(out, message.to);
    put_u64(out, message.term);
    match &message.body {
        Body::PreVote {
            last_index,
            last_term,
        } => {
            put_u64(out, *last_index);
            put_u64(out, *last_term);
        }
        Body::PreVoteResponse { granted } | Body::VoteResponse { granted } => {
            out.push(u8::from(*granted));
        }
        Body::Vote {
            last_index,
            last_term,
            transfer,
        } => {
            put_u64(out, *last_index);
            put_u64(out, *last_term);
            out.push(u8::from(*transfer));
        }
        Body::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => {
            put_u64(out, *prev_index);
            put_u64(out, *prev_term);
            put_u64(out, *commit);
            put_u32(out, entries.len() as u32);
            for entry in entries {
                put_u64(out, entry.term);
                put_u64(out, entry.index);
                put_u32(out, entry.data.len() as u32);
                out.extend_from_slice(&entry.data);
            }
        }
        Body::AppendAccepted { match_index } => put_u64(out, *match_index),
        Body::AppendRejected {
            prev_index,
            hint_index,
            hint_term,
        } => {
            put_u64(out, *prev_index);
            put_u64(out, *hint_index);
            put_u64(out, *hint_term);
        }
        Body::Heartbeat { commit, round } => {
            put_u64(out, *commit);
            put_u64(out, *round);
        }
        Body::HeartbeatResponse { round } => put_u64(out, *round),
        Body::TimeoutNow => {}
        Body::InstallSnapshot {
            index,
            term,
            membership,
        } => {
            put_u64(out, *index);
            put_u64(out, *term);
            put_ids(out, membership.voters().count(), membership.voters());
            put_ids(out, membership.learners().count(), membership.learners());
        }
    }
    debug_assert_eq!(out.len() - start, len, "encoded_len disagrees with encode");
}

/// The number of bytes [`encode`] appends for `message`.
pub fn encoded_len(message: &Message) -> usize {
    MESSAGE_HEADER_LEN
        + match &message.body {
            Body::PreVote { .. } => 16,
            Body::PreVoteResponse { .. } | Body::VoteResponse { .. } => 1,
            Body::Vote { .. } => 17,
            Body::Append { entries, .. } => {
                APPEND_FIXED_LEN
                    + entries
                        .iter()
                        .map(|entry| ENTRY_HEADER_LEN + entry.data.len())
                        .sum::<usize>()
            }
            Body::AppendAccepted { .. } | Body::HeartbeatResponse { .. } => 8,
            Body::Heartbeat { .. } => 16,
            Body::AppendRejected { .. } => 24,
            Body::TimeoutNow => 0,
            Body::InstallSnapshot { membership, .. } => {
                INSTALL_SNAPSHOT_FIXED_LEN + 8 * membership.members().count()
            }
        }
}

/// Appends a frame to `out`: the encoding's length (u32) and the encoding.
pub fn write_frame(message: &Message, out: &mut Vec<u8>) {
    let len = encoded_len(message);
    out.reserve(FRAME_PREFIX_LEN + len);
    // `encode` asserts `len <= MESSAGE_BYTES_MAX`, which fits in a u32.
    put_u32(out, len as u32);
    encode(message, out);
}

/// Appends the hello that opens a cluster connection from node `node_id`.
pub fn encode_hello(node_id: NodeId, out: &mut Vec<u8>) {
    out.extend_from_slice(&HELLO_MAGIC);
    out.push(HELLO_VERSION);
    put_u64(out, node_id);
}

fn body_tag(body: &Body) -> u8 {
    match body {
        Body::PreVote { .. } => tag::PRE_VOTE,
        Body::PreVoteResponse { .. } => tag::PRE_VOTE_RESPONSE,
        Body::Vote { .. } => tag::VOTE,
        Body::VoteResponse { .. } => tag::VOTE_RESPONSE,
        Body::Append { .. } => tag::APPEND,
        Body::AppendAccepted { .. } => tag::APPEND_ACCEPTED,
        Body::AppendRejected { .. } => tag::APPEND_REJECTED,
        Body::Heartbeat { .. } => tag::HEARTBEAT,
        Body::HeartbeatResponse { .. } => tag::HEARTBEAT_RESPONSE,
        Body::TimeoutNow => tag::TIMEOUT_NOW,
        Body::InstallSnapshot { .. } => tag::INSTALL_SNAPSHOT,
    }
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// `count` (u32), then the ids in the order given (a membership's sets iterate ascending).
/// `Membership::MEMBERS_MAX` keeps the count far below u32::MAX.
fn put_ids(out: &mut Vec<u8>, count: usize, ids: impl Iterator<Item = NodeId>) {
    put_u32(out, count as u32);
    for id in ids {
        put_u64(out, id);
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Decodes one message: `bytes` must be exactly one encoding.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(WireError::new(
            "message",
            0,
            WireErrorKind::OverLimit {
                length: bytes.len() as u64,
                limit: MESSAGE_BYTES_MAX as u64,
            },
        ));
    }
    let mut reader = Reader {
        bytes,
        at: 0,
        shared: None,
    };
    let version = reader.u8("version")?;
    if version != VERSION {
        return Err(WireError::new(
            "version",
            0,
            WireErrorKind::UnknownVersion(version),
        ));
    }
    let body_tag = reader.u8("body tag")?;
    let from = reader.u64("from")?;
    let to = reader.u64("to")?;
    let term = reader.u64("term")?;
    let body = match body_tag {
        tag::PRE_VOTE => Body::PreVote {
            last_index: reader.u64("last_index")?,
            last_term: reader.u64("last_term")?,
        },
        tag::PRE_VOTE_RESPONSE => Body::PreVoteResponse {
            granted: reader.bool("granted")?,
        },
        tag::VOTE => Body::Vote {
            last_index: reader.u64("last_index")?,
            last_term: reader.u64("last_term")?,
            transfer: reader.bool("transfer")?,
        },
        tag::VOTE_RESPONSE => Body::VoteResponse {
            granted: reader.bool("granted")?,
        },
        tag::APPEND => {
            let prev_index = reader.u64("prev_index")?;
            let prev_term = reader.u64("prev_term")?;
            let commit = reader.u64("commit")?;
            let entries = reader.entries()?;
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            }
        }
        tag::APPEND_ACCEPTED => Body::AppendAccepted {
            match_index: reader.u64("match_index")?,
        },
        tag::APPEND_REJECTED => Body::AppendRejected {
            prev_index: reader.u64("prev_index")?,
            hint_index: reader.u64("hint_index")?,
            hint_term: reader.u64("hint_term")?,
        },
        tag::HEARTBEAT => Body::Heartbeat {
            commit: reader.u64("commit")?,
            round: reader.u64("round")?,
        },
        tag::HEARTBEAT_RESPONSE => Body::HeartbeatResponse {
            round: reader.u64("round")?,
        },
        tag::TIMEOUT_NOW => Body::TimeoutNow,
        tag::INSTALL_SNAPSHOT => Body::InstallSnapshot {
            index: reader.u64("index")?,
            term: reader.u64("term")?,
            membership: reader.membership()?,
        },
        unknown => {
            return Err(WireError::new(
                "body tag",
                1,
                WireErrorKind::UnknownTag(unknown),
            ))
        }
    };
    reader.finish("message")?;
    Ok(Message {
        from,
        to,
        term,
        body,
    })
}

/// Decodes a hello: `bytes` must be exactly [`HELLO_LEN`] bytes. Returns the peer's node id.
pub fn decode_hello(bytes: &[u8]) -> Result<NodeId, WireError> {
    let mut reader = Reader {
        bytes,
        at: 0,
        shared: None,
    };
    let magic = reader.take("hello magic", HELLO_MAGIC.len())?;
    if magic != HELLO_MAGIC {
        return Err(WireError::new("hello magic", 0, WireErrorKind::BadMagic));
    }
    let version = reader.u8("hello version")?;
    if version != HELLO_VERSION {
        return Err(WireError::new(
            "hello version",
            8,
            WireErrorKind::UnknownVersion(version),
        ));
    }
    let node_id = reader.u64("node id")?;
    if node_id == 0 {
        return Err(WireError::new("node id", 9, WireErrorKind::ZeroNodeId));
    }
    reader.finish("hello")?;
    Ok(node_id)
}

// ---------------------------------------------------------------------------------------------
// Membership changes inside entry data

/// An entry whose data starts with these bytes is a membership change; the core refuses
/// ordinary proposals that start with them (`Error::ReservedData`).
pub const CONF_CHANGE_MAGIC: [u8; 8] = *b"FLINCONF";
/// The change encoding's version, after the magic.
pub const CONF_CHANGE_VERSION: u8 = 1;
/// magic, version, kind, node id: what a change's data holds before the caller's payload.
pub const CONF_CHANGE_HEADER_LEN: usize = 8 + 1 + 1 + 8;

const _: () = assert!(CONF_CHANGE_HEADER_LEN == 18);

/// Change kinds, the byte after the version. 0 is never a kind.
mod conf_change_kind {
    pub const ADD_LEARNER: u8 = 1;
    pub const PROMOTE_LEARNER: u8 = 2;
    pub const REMOVE_NODE: u8 = 3;
}

/// Appends the data of an entry carrying `change`, then `payload` (the caller's bytes for
/// the same entry; the core never reads them), to `out`.
pub fn encode_conf_change(change: ConfChange, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(CONF_CHANGE_HEADER_LEN + payload.len());
    out.extend_from_slice(&CONF_CHANGE_MAGIC);
    out.push(CONF_CHANGE_VERSION);
    out.push(match change.kind {
        ConfChangeKind::AddLearner => conf_change_kind::ADD_LEARNER,
        ConfChangeKind::PromoteLearner => conf_change_kind::PROMOTE_LEARNER,
        ConfChangeKind::RemoveNode => conf_change_kind::REMOVE_NODE,
    });
    put_u64(out, change.node);
    out.extend_from_slice(payload);
}

/// Whether `data` starts with [`CONF_CHANGE_MAGIC`].
pub fn is_conf_change(data: &[u8]) -> bool {
    data.starts_with(&CONF_CHANGE_MAGIC)
}

/// The change an entry's data carries and the payload after it: `None` for data that does
/// not start with [`CONF_CHANGE_MAGIC`] (an ordinary entry), an error for a broken header.
pub fn decode_conf_change(data: &[u8]) -> Option<Result<(ConfChange, &[u8]), WireError>> {
    if !is_conf_change(data) {
        return None;
    }
    let mut reader = Reader {
        bytes: data,
        at: CONF_CHANGE_MAGIC.len(),
        shared: None,
    };
    let decoded = (|| {
        let version = reader.u8("change version")?;
        if version != CONF_CHANGE_VERSION {
            return Err(WireError::new(
                "change version",
                8,
                WireErrorKind::UnknownVersion(version),
            ));
        }
        let kind = match reader.u8("change kind")? {
            conf_change_kind::ADD_LEARNER => ConfChangeKind::AddLearner,
            conf_change_kind::PROMOTE_LEARNER => ConfChangeKind::PromoteLearner,
            conf_change_kind::REMOVE_NODE => ConfChangeKind::RemoveNode,
            other => {
                return Err(WireError::new(
                    "change kind",
                    9,
                    WireErrorKind::UnknownTag(other),
                ))
            }
        };
        let node = reader.u64("change node id")?;
        if node == 0 {
            return Err(WireError::new(
                "change node id",
                10,
                WireErrorKind::ZeroNodeId,
            ));
        }
        Ok((ConfChange { kind, node }, &data[CONF_CHANGE_HEADER_LEN..]))
    })();
    Some(decoded)
}

/// A cursor over the input that names what it reads, so every failure says where.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// An append's entries share one copy of the input (made at its first entry): one
    /// allocation per message, not one per entry (`EntryData`).
    shared: Option<Arc<Vec<u8>>>,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, field: &str, len: usize) -> Result<&'a [u8], WireError> {
        if self.remaining() < len {
            return Err(WireError::new(
                field,
                self.at,
                WireErrorKind::Truncated {
                    needed: len,
                    available: self.remaining(),
                },
            ));
        }
        let taken = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(taken)
    }

    fn u8(&mut self, field: &str) -> Result<u8, WireError> {
        Ok(self.take(field, 1)?[0])
    }

    fn bool(&mut self, field: &str) -> Result<bool, WireError> {
        let at = self.at;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(WireError::new(field, at, WireErrorKind::InvalidBool(other))),
        }
    }

    fn u32(&mut self, field: &str) -> Result<u32, WireError> {
        let bytes = self.take(field, 4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("took 4 bytes")))
    }

    fn u64(&mut self, field: &str) -> Result<u64, WireError> {
        let bytes = self.take(field, 8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("took 8 bytes")))
    }

    /// The entry count and the entries. The count is checked against what the remaining bytes
    /// can hold (each entry takes at least `ENTRY_HEADER_LEN`) before the vector is reserved,
    /// so a claimed count of 4 billion costs nothing.
    fn entries(&mut self) -> Result<Vec<Entry>, WireError> {
        let count_at = self.at;
        let count = self.u32("entry count")? as usize;
        let fits = self.remaining() / ENTRY_HEADER_LEN;
        if count > fits {
            return Err(WireError::new(
                "entry count",
                count_at,
                WireErrorKind::Truncated {
                    needed: count * ENTRY_HEADER_LEN,
                    available: self.remaining(),
                },
            ));
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            entries.push(self.entry().map_err(|error| error.in_entry(i))?);
        }
        Ok(entries)
    }

    /// One entry; an error's field is named within the entry (`data length`) and prefixed
    /// with the entry's position by the caller, so a good append formats no names.
    fn entry(&mut self) -> Result<Entry, WireError> {
        let term = self.u64("term")?;
        let index = self.u64("index")?;
        let length_at = self.at;
        let length = self.u32("data length")? as usize;
        if length > MESSAGE_BYTES_MAX {
            return Err(WireError::new(
                "data length",
                length_at,
                WireErrorKind::OverLimit {
                    length: length as u64,
                    limit: MESSAGE_BYTES_MAX as u64,
                },
            ));
        }
        // `take` checks `length` against the remaining bytes before anything is copied.
        let start = self.at;
        self.take("data", length)?;
        let shared = self
            .shared
            .get_or_insert_with(|| Arc::new(self.bytes.to_vec()));
        let data = EntryData::shared(shared, start..start + length);
        Ok(Entry { term, index, data })
    }

    /// A membership: the voters, then the learners, each a count and ascending ids (so a
    /// duplicate is refused too). Each count is checked against `Membership::MEMBERS_MAX` (the
    /// two together) and against what the remaining bytes can hold before anything is
    /// reserved; an empty voter list, an id 0 and a learner that is a voter are refused, so
    /// `Membership::with_learners` cannot panic on what this returns.
    fn membership(&mut self) -> Result<Membership, WireError> {
        let voter_count_at = self.at;
        let voters = self.ids("voter", Membership::MEMBERS_MAX)?;
        if voters.is_empty() {
            return Err(WireError::new(
                "voter count",
                voter_count_at,
                WireErrorKind::NoVoters,
            ));
        }
        let learners_at = self.at + 4;
        let learners = self.ids("learner", Membership::MEMBERS_MAX - voters.len())?;
        for (i, &learner) in learners.iter().enumerate() {
            if voters.binary_search(&learner).is_ok() {
                return Err(WireError::new(
                    format!("learners[{i}]"),
                    learners_at + 8 * i,
                    WireErrorKind::LearnerIsVoter(learner),
                ));
            }
        }
        Ok(Membership::with_learners(voters, learners))
    }

    /// A count (at most `limit`) and that many ids, ascending and none 0; `what` names them
    /// (`voter`: the fields `voter count`, `voters[i]`).
    fn ids(&mut self, what: &str, limit: usize) -> Result<Vec<NodeId>, WireError> {
        let count_field = format!("{what} count");
        let count_at = self.at;
        let count = self.u32(&count_field)? as usize;
        if count > limit {
            return Err(WireError::new(
                count_field,
                count_at,
                WireErrorKind::OverLimit {
                    length: count as u64,
                    limit: limit as u64,
                },
            ));
        }
        if count > self.remaining() / 8 {
            return Err(WireError::new(
                count_field,
                count_at,
                WireErrorKind::Truncated {
                    needed: count * 8,
                    available: self.remaining(),
                },
            ));
        }
        let mut ids: Vec<NodeId> = Vec::with_capacity(count);
        for i in 0..count {
            let at = self.at;
            let field = || format!("{what}s[{i}]");
            // The count was checked against the bytes that remain: this read cannot fail.
            let id = self.u64("id").map_err(|error| WireError {
                field: field(),
                ..error
            })?;
            if id == 0 {
                return Err(WireError::new(field(), at, WireErrorKind::ZeroNodeId));
            }
            if let Some(&previous) = ids.last() {
                if id <= previous {
                    let kind = WireErrorKind::NodeIdNotAscending { previous, id };
                    return Err(WireError::new(field(), at, kind));
                }
            }
            ids.push(id);
        }
        Ok(ids)
    }

    fn finish(&self, what: &str) -> Result<(), WireError> {
        if self.remaining() > 0 {
            return Err(WireError::new(
                what,
                self.at,
                WireErrorKind::TrailingBytes {
                    count: self.remaining(),
                },
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Streams

/// Turns the bytes of a cluster connection, as the socket hands them out, into messages.
///
/// `push` what a read returned, then call `next` until it returns `None`. The reader holds at
/// most one incomplete frame plus what was pushed since; a length prefix over
/// [`MESSAGE_BYTES_MAX`] is refused as soon as its 4 bytes are in, before the frame is
/// buffered. After an error the stream is out of step: every later `next` returns the same
/// error, and the caller should close the connection.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
    /// Where the first unread byte of `buffer` is; consumed bytes are dropped in bulk.
    start: usize,
    /// Bytes consumed before `buffer[start]`, over the connection's life, so that an error's
    /// offset counts from the start of the stream (after the hello if `take_hello` read it).
    consumed: usize,
    failed: Option<WireError>,
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buffer.len() / 2 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes pushed and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// Reads the connection's hello off the front: `None` until [`HELLO_LEN`] bytes are in.
    /// Call it once, before the first `next`, on the accepting side.
    pub fn take_hello(&mut self) -> Option<Result<NodeId, WireError>> {
        if let Some(error) = &self.failed {
            return Some(Err(error.clone()));
        }
        if self.buffered() < HELLO_LEN {
            return None;
        }
        let result = decode_hello(&self.buffer[self.start..self.start + HELLO_LEN]);
        self.consume(HELLO_LEN);
        Some(self.remember(result.map_err(|error| error.shifted(self.consumed - HELLO_LEN))))
    }

    /// The next complete message, `None` if more bytes are needed. Error offsets count from
    /// the first byte pushed.
    #[allow(clippy::should_implement_trait)] // not an Iterator: None means "not yet", not "done"
    pub fn next(&mut self) -> Option<Result<Message, WireError>> {
        if let Some(error) = &self.failed {
            return Some(Err(error.clone()));
        }
        let available = &self.buffer[self.start..];
        let prefix: [u8; FRAME_PREFIX_LEN] = available.get(..FRAME_PREFIX_LEN)?.try_into().ok()?;
        let length = u32::from_le_bytes(prefix) as usize;
        if length > MESSAGE_BYTES_MAX {
            let error = WireError::new(
                "frame length",
                self.consumed,
                WireErrorKind::OverLimit {
                    length: length as u64,
                    limit: MESSAGE_BYTES_MAX as u64,
                },
            );
            return Some(self.remember(Err(error)));
        }
        let frame = available.get(FRAME_PREFIX_LEN..FRAME_PREFIX_LEN + length)?;
        let result = decode(frame).map_err(|error| error.shifted(self.consumed + FRAME_PREFIX_LEN));
        self.consume(FRAME_PREFIX_LEN + length);
        Some(self.remember(result))
    }

    fn consume(&mut self, len: usize) {
        self.start += len;
        self.consumed += len;
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
    }

    fn remember<T>(&mut self, result: Result<T, WireError>) -> Result<T, WireError> {
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }
}

#[cfg(test)]
mod tests;
