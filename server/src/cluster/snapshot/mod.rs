//! Snapshots in the server (issue 14's catch-up, docs/ARCHITECTURE.md decisions 84 and
//! 91-93): a follower the leader's engine log can no longer feed (compaction removed what it
//! needs, or it is further behind than `--raft-retain-entries`) is sent the leader's engine
//! files instead, and opens them through normal recovery.
//!
//! - `ship` (the leader): links the engine's segment and hint files holding exactly the state
//!   through a committed seq into `cluster/snapshot-out/` (`Engine::snapshot_into`), one
//!   snapshot shared by every follower that needs one, and streams it to a follower on a
//!   connection of its own, rate limited (`--snapshot-rate-mb`), from where the follower says
//!   its staged copy stops.
//! - `stage` (the follower): writes the files under `cluster/snapshot/`, resumable by
//!   (file, offset) across reconnections and restarts, and checks every file's length and
//!   CRC-32 against the offer before it reports the snapshot staged.
//! - `install`: once the leader's core sends `InstallSnapshot` for the staged point and the
//!   follower's core hands it out (`Ready::snapshot`), the raft thread writes the `INSTALL`
//!   marker and re-executes the process; at start, before the engine opens, `finish_install`
//!   swaps the staged files in (crash safe, idempotent), and the engine, the models and the
//!   raft node are built from them as at any start.
//!
//! This file holds what both sides share: the bytes of the snapshot connection (drawn in
//! docs/replication.md, "Snapshot transfer, byte by byte") and the offer.

pub mod install;
pub mod ship;
pub mod stage;

use std::io::{Read, Write};

/// The first bytes of a snapshot connection (a raft connection starts with `FLINRAFT`): the
/// cluster port's acceptor hands such a connection to `stage::receive`.
pub const HELLO_MAGIC: &[u8; 8] = b"FLINSNAP";
/// The version of the snapshot connection's frames.
pub const VERSION: u8 = 1;
/// Magic, version, the leader's node id.
pub const HELLO_BYTES: usize = 17;
/// File data in one chunk frame.
pub const CHUNK_BYTES: usize = 256 << 10;
/// The longest frame: a chunk and its header, or an offer (which bounds the file count).
pub const FRAME_BYTES_MAX: usize = 1 << 20;
/// `--snapshot-rate-mb` unless given: MB (10^6 bytes) per second per follower; 0, no limit.
/// Unlimited, a transfer is bound by the two cores' copying (650-900 MB/s here, the disk
/// writes 1.7 GB/s) and took the leader's client p99 to 1.3-2.65x its quiet value in the
/// first 4 s; at 500 MB/s, 1.15-1.81x for a second more per GB (decision 109). On a shared
/// slow link, set a rate below the link's.
pub const RATE_MB_DEFAULT: u64 = 500;

/// The nice value of the threads that move a snapshot (the leader's shipper, the follower's
/// stager; decision 104): below the event loops and raft threads (nice 0), so the copy takes
/// the cores' spare time first and a client's request waits less behind it.
pub const NICE: i32 = 10;

/// What the leader offers: the snapshot's point and its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The snapshot holds the state through this index (an engine seq), whose entry has
    /// `term`.
    pub index: u64,
    pub term: u64,
    pub files: Vec<OfferedFile>,
}

/// One file of an offer: an engine segment or hint file name, its length and the CRC-32
/// (IEEE) of its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferedFile {
    pub name: String,
    pub len: u64,
    pub crc: u32,
}

/// The frames of a snapshot connection after the hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Leader to follower, first.
    Offer(Offer),
    /// Follower to leader: send from this file (its number in the offer) and offset; every
    /// file before it is staged whole. `file` = the file count: all are staged.
    Resume { file: u32, offset: u64 },
    /// Leader to follower: bytes of a file at an offset.
    Chunk {
        file: u32,
        offset: u64,
        data: Vec<u8>,
    },
    /// Leader to follower: every byte is sent.
    Done,
    /// Follower to leader: every file is staged, checked and durable.
    Staged { index: u64, term: u64 },
    /// Follower to leader: why it stopped (the leader tries again later).
    Refused(String),
}

const TAG_OFFER: u8 = 1;
const TAG_RESUME: u8 = 2;
const TAG_CHUNK: u8 = 3;
const TAG_DONE: u8 = 4;
const TAG_STAGED: u8 = 5;
const TAG_REFUSED: u8 = 6;

/// The hello: magic, version, the leader's id.
pub fn encode_hello(leader: u64) -> [u8; HELLO_BYTES] {
    let mut hello = [0u8; HELLO_BYTES];
    hello[..8].copy_from_slice(HELLO_MAGIC);
    hello[8] = VERSION;
    hello[9..].copy_from_slice(&leader.to_le_bytes());
    hello
}

/// The leader's id from a hello.
pub fn decode_hello(hello: &[u8; HELLO_BYTES]) -> Result<u64, String> {
    if &hello[..8] != HELLO_MAGIC {
        return Err("not a snapshot connection (bad magic)".into());
    }
    if hello[8] != VERSION {
        return Err(format!("snapshot connection version {} (not 1)", hello[8]));
    }
    Ok(u64::from_le_bytes(hello[9..].try_into().expect("8 bytes")))
}

impl Offer {
    /// The offer's bytes (an offer frame's body, and the staged `OFFER` file before its CRC).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.term.to_le_bytes());
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for file in &self.files {
            out.extend_from_slice(&(file.name.len() as u16).to_le_bytes());
            out.extend_from_slice(file.name.as_bytes());
            out.extend_from_slice(&file.len.to_le_bytes());
            out.extend_from_slice(&file.crc.to_le_bytes());
        }
    }

    fn decode(bytes: &mut Cursor<'_>) -> Result<Offer, String> {
        let index = bytes.u64("offer index")?;
        let term = bytes.u64("offer term")?;
        let count = bytes.u32("offer file count")? as usize;
        // Each file takes at least 15 bytes: no allocation from a count the frame cannot hold.
        if count > bytes.left() / 15 {
            return Err(format!(
                "offer names {count} files in {} bytes",
                bytes.left()
            ));
        }
        let mut files = Vec::with_capacity(count);
        for i in 0..count {
            let name_len = bytes.u16("offer file name length")? as usize;
            let name = std::str::from_utf8(bytes.take(name_len, "offer file name")?)
                .map_err(|_| format!("offer file {i}: name is not UTF-8"))?
                .to_string();
            if !is_engine_file_name(&name) {
                return Err(format!(
                    "offer file {i}: '{name}' is not a segment or hint file name"
                ));
            }
            let len = bytes.u64("offer file length")?;
            let crc = bytes.u32("offer file crc")?;
            files.push(OfferedFile { name, len, crc });
        }
        Ok(Offer { index, term, files })
    }

    /// All the files' bytes.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|file| file.len).sum()
    }
}

/// Whether `name` is an engine segment or hint file name (`{id:020}.seg`, `{id:020}.hint`):
/// nothing else may be staged or swapped in, so an offer cannot name a path elsewhere.
pub fn is_engine_file_name(name: &str) -> bool {
    let stem = name
        .strip_suffix(".seg")
        .or_else(|| name.strip_suffix(".hint"));
    stem.is_some_and(|stem| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
}

/// Writes `frame` as a u32 length (of what follows), a tag byte and the body.
pub fn write_frame(stream: &mut impl Write, frame: &Frame) -> std::io::Result<()> {
    let mut body = Vec::new();
    match frame {
        Frame::Offer(offer) => {
            body.push(TAG_OFFER);
            offer.encode(&mut body);
        }
        Frame::Resume { file, offset } => {
            body.push(TAG_RESUME);
            body.extend_from_slice(&file.to_le_bytes());
            body.extend_from_slice(&offset.to_le_bytes());
        }
        Frame::Chunk { file, offset, data } => {
            body.reserve(17 + data.len());
            body.push(TAG_CHUNK);
            body.extend_from_slice(&file.to_le_bytes());
            body.extend_from_slice(&offset.to_le_bytes());
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
        }
        Frame::Done => body.push(TAG_DONE),
        Frame::Staged { index, term } => {
            body.push(TAG_STAGED);
            body.extend_from_slice(&index.to_le_bytes());
            body.extend_from_slice(&term.to_le_bytes());
        }
        Frame::Refused(why) => {
            body.push(TAG_REFUSED);
            body.extend_from_slice(&(why.len() as u32).to_le_bytes());
            body.extend_from_slice(why.as_bytes());
        }
    }
    assert!(
        body.len() <= FRAME_BYTES_MAX,
        "a snapshot frame over the limit"
    );
    let mut framed = Vec::with_capacity(4 + body.len());
    framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
    framed.extend_from_slice(&body);
    stream.write_all(&framed)
}

/// Reads one frame; an error names what was wrong.
/// The bytes a `Chunk` frame puts before its data: the frame's length, the tag, the file,
/// the offset and the data's length.
pub const CHUNK_HEADER_BYTES: usize = 4 + 1 + 4 + 8 + 4;

/// Sends a `Chunk` frame whose data is `framed[CHUNK_HEADER_BYTES..]`, writing its header into
/// `framed[..CHUNK_HEADER_BYTES]` first: the shipper reads each chunk from its file straight
/// behind the header, so the bytes are copied once on their way to the socket (the same bytes
/// as `write_frame(&Frame::Chunk { .. })`).
pub fn write_chunk(
    stream: &mut impl Write,
    file: u32,
    offset: u64,
    framed: &mut [u8],
) -> std::io::Result<()> {
    let data_len = framed.len() - CHUNK_HEADER_BYTES;
    let body_len = framed.len() - 4;
    assert!(
        body_len <= FRAME_BYTES_MAX,
        "a snapshot frame over the limit"
    );
    framed[..4].copy_from_slice(&(body_len as u32).to_le_bytes());
    framed[4] = TAG_CHUNK;
    framed[5..9].copy_from_slice(&file.to_le_bytes());
    framed[9..17].copy_from_slice(&offset.to_le_bytes());
    framed[17..21].copy_from_slice(&(data_len as u32).to_le_bytes());
    stream.write_all(framed)
}

pub fn read_frame(stream: &mut impl Read) -> Result<Frame, String> {
    let mut prefix = [0u8; 4];
    stream
        .read_exact(&mut prefix)
        .map_err(|e| format!("reading a frame's length: {e}"))?;
    let len = u32::from_le_bytes(prefix) as usize;
    if len == 0 || len > FRAME_BYTES_MAX {
        return Err(format!(
            "a frame of {len} bytes (1..={FRAME_BYTES_MAX} allowed)"
        ));
    }
    // A chunk's data is read into its own buffer straight from the stream (the bulk of a
    // transfer: no second copy); every other frame, and a chunk whose fields disagree with
    // its length, is read whole and decoded (which names what is wrong).
    let mut head = [0u8; CHUNK_HEADER_BYTES - 4];
    let head_len = len.min(head.len());
    stream
        .read_exact(&mut head[..head_len])
        .map_err(|e| format!("reading a frame of {len} bytes: {e}"))?;
    if head[0] == TAG_CHUNK && head_len == head.len() {
        let data_len = u32::from_le_bytes(head[13..17].try_into().expect("4 bytes")) as usize;
        if data_len == len - head.len() {
            let mut data = vec![0u8; data_len];
            stream
                .read_exact(&mut data)
                .map_err(|e| format!("reading a frame of {len} bytes: {e}"))?;
            return Ok(Frame::Chunk {
                file: u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")),
                offset: u64::from_le_bytes(head[5..13].try_into().expect("8 bytes")),
                data,
            });
        }
    }
    let mut body = vec![0u8; len];
    body[..head_len].copy_from_slice(&head[..head_len]);
    stream
        .read_exact(&mut body[head_len..])
        .map_err(|e| format!("reading a frame of {len} bytes: {e}"))?;
    decode_frame(&body)
}

/// A frame from its body (tag and fields); bytes left over are an error.
pub fn decode_frame(body: &[u8]) -> Result<Frame, String> {
    let mut bytes = Cursor { bytes: body, at: 0 };
    let frame = match bytes.u8("tag")? {
        TAG_OFFER => Frame::Offer(Offer::decode(&mut bytes)?),
        TAG_RESUME => Frame::Resume {
            file: bytes.u32("resume file")?,
            offset: bytes.u64("resume offset")?,
        },
        TAG_CHUNK => {
            let file = bytes.u32("chunk file")?;
            let offset = bytes.u64("chunk offset")?;
            let len = bytes.u32("chunk length")? as usize;
            Frame::Chunk {
                file,
                offset,
                data: bytes.take(len, "chunk data")?.to_vec(),
            }
        }
        TAG_DONE => Frame::Done,
        TAG_STAGED => Frame::Staged {
            index: bytes.u64("staged index")?,
            term: bytes.u64("staged term")?,
        },
        TAG_REFUSED => {
            let len = bytes.u32("refusal length")? as usize;
            Frame::Refused(String::from_utf8_lossy(bytes.take(len, "refusal")?).into_owned())
        }
        tag => return Err(format!("unknown frame tag {tag}")),
    };
    if bytes.left() > 0 {
        return Err(format!(
            "{} bytes after the frame's last field",
            bytes.left()
        ));
    }
    Ok(frame)
}

/// Reads little-endian fields off a frame body, naming the field that did not fit.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, len: usize, field: &str) -> Result<&'a [u8], String> {
        if len > self.left() {
            return Err(format!(
                "{field} at byte {}: needs {len} bytes, {} left",
                self.at,
                self.left()
            ));
        }
        let taken = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(taken)
    }

    fn u8(&mut self, field: &str) -> Result<u8, String> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2, field)?.try_into().expect("2"),
        ))
    }

    fn u32(&mut self, field: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4, field)?.try_into().expect("4"),
        ))
    }

    fn u64(&mut self, field: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8, field)?.try_into().expect("8"),
        ))
    }
}

/// Decodes a whole `Offer` (the staged `OFFER` file's body).
pub fn decode_offer(body: &[u8]) -> Result<Offer, String> {
    let mut bytes = Cursor { bytes: body, at: 0 };
    let offer = Offer::decode(&mut bytes)?;
    if bytes.left() > 0 {
        return Err(format!("{} bytes after the offer", bytes.left()));
    }
    Ok(offer)
}

/// The CRC-32 (IEEE) of a file's first `len` bytes, read in 1 MiB pieces; an error if it is
/// shorter.
pub fn file_crc(path: &std::path::Path, len: u64) -> std::io::Result<u32> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = buffer.len().min(left as usize);
        file.read_exact(&mut buffer[..want])?;
        hasher.update(&buffer[..want]);
        left -= want as u64;
    }
    Ok(hasher.finalize())
}

/// Test data for the transfer's tests: `keys` keys `k0..` whose values start with `label` and
/// run about `pad` bytes more, then every sealed segment's hint file.
#[cfg(test)]
pub(super) fn put_keys(engine: &flin_engine::Engine, keys: u32, label: &str, pad: usize) {
    for key in 0..keys {
        let value = format!("{label} {key} {}", "p".repeat(pad));
        engine
            .put(
                flin_engine::Namespace::Kv,
                format!("k{key}").as_bytes(),
                value.as_bytes(),
                0,
            )
            .unwrap();
    }
    engine.write_missing_hints().unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        Offer {
            index: 42,
            term: 3,
            files: vec![
                OfferedFile {
                    name: "00000000000000000007.seg".into(),
                    len: 4096,
                    crc: 0xdead_beef,
                },
                OfferedFile {
                    name: "00000000000000000007.hint".into(),
                    len: 100,
                    crc: 1,
                },
            ],
        }
    }

    #[test]
    fn a_chunk_written_in_place_is_the_chunk_frame() {
        let data = [7u8, 8, 9, 10, 11];
        let mut framed = vec![0xffu8; CHUNK_HEADER_BYTES];
        framed.extend_from_slice(&data);
        let mut in_place = Vec::new();
        write_chunk(&mut in_place, 2, 1 << 40, &mut framed).unwrap();
        let chunk = Frame::Chunk {
            file: 2,
            offset: 1 << 40,
            data: data.to_vec(),
        };
        let mut expected = Vec::new();
        write_frame(&mut expected, &chunk).unwrap();
        assert_eq!(in_place, expected);
        assert_eq!(read_frame(&mut &in_place[..]).unwrap(), chunk);
    }

    #[test]
    fn a_chunk_whose_length_disagrees_with_its_frame_is_refused() {
        let chunk = Frame::Chunk {
            file: 1,
            offset: 8,
            data: vec![5; 10],
        };
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &chunk).unwrap();
        for claimed in [11u32, 9, 0] {
            let mut wrong = bytes.clone();
            wrong[17..21].copy_from_slice(&claimed.to_le_bytes());
            let error = read_frame(&mut &wrong[..]).unwrap_err();
            assert!(
                error.contains("chunk data") || error.contains("after the frame's last field"),
                "{claimed}: {error}"
            );
        }
        // A stream that ends inside the data.
        let error = read_frame(&mut &bytes[..bytes.len() - 1]).unwrap_err();
        assert!(error.contains("reading a frame of 27 bytes"), "{error}");
        // A chunk frame too short to hold its header.
        let short = [5u8, 0, 0, 0, TAG_CHUNK, 1, 0, 0, 0];
        assert!(read_frame(&mut &short[..]).is_err());
    }

    #[test]
    fn every_frame_round_trips_and_every_truncation_is_refused() {
        let frames = [
            Frame::Offer(offer()),
            Frame::Resume { file: 1, offset: 9 },
            Frame::Chunk {
                file: 0,
                offset: 4,
                data: vec![1, 2, 3],
            },
            Frame::Done,
            Frame::Staged { index: 42, term: 3 },
            Frame::Refused("disk full".into()),
        ];
        for frame in frames {
            let mut bytes = Vec::new();
            write_frame(&mut bytes, &frame).unwrap();
            assert_eq!(read_frame(&mut &bytes[..]).unwrap(), frame);
            for cut in 5..bytes.len() {
                assert!(
                    decode_frame(&bytes[4..cut]).is_err(),
                    "{frame:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn an_offer_naming_a_path_outside_the_engine_s_files_is_refused() {
        let mut bad = offer();
        bad.files[0].name = "../../etc/passwd".into();
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &Frame::Offer(bad)).unwrap();
        let error = read_frame(&mut &bytes[..]).unwrap_err();
        assert!(error.contains("not a segment or hint file name"), "{error}");
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_from_its_length() {
        let bytes = ((FRAME_BYTES_MAX + 1) as u32).to_le_bytes();
        assert!(read_frame(&mut &bytes[..]).unwrap_err().contains("allowed"));
    }

    #[test]
    fn hello_round_trips() {
        assert_eq!(decode_hello(&encode_hello(7)), Ok(7));
        let mut raft = encode_hello(7);
        raft[..8].copy_from_slice(b"FLINRAFT");
        assert!(decode_hello(&raft).is_err());
    }
}
