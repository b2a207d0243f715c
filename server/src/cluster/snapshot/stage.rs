//! The follower's side of a transfer: stage the offered files under `cluster/snapshot/`,
//! resumable, and check them before saying they are staged.
//!
//! The staging directory holds `OFFER` (the offer being received: its bytes, then their
//! CRC-32), `files/` (each file as far as it has arrived) and, once the raft thread installs
//! the snapshot, `INSTALL` (`install`). A transfer of the same offer (same point, same files)
//! continues where the staged files stop: after a lost connection, or after this process was
//! restarted mid-transfer. A different offer replaces what is staged. Every file is synced
//! when it is complete; after the last byte every file's length and CRC-32 are checked
//! against the offer (a file that fails is deleted, to be sent again), and only then is the
//! snapshot reported staged, here (`Staging::verified`, which the raft thread checks before
//! it lets the core take an `InstallSnapshot`) and to the leader.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{read_frame, write_frame, Frame, Offer, HELLO_BYTES};

const OFFER_FILE: &str = "OFFER";
const FILES_DIR: &str = "files";
/// How long the follower waits for the leader's next frame.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// The follower's staging directory and what is known of it in this process.
pub struct Staging {
    dir: PathBuf,
    state: Mutex<StagingState>,
}

#[derive(Default)]
struct StagingState {
    /// A transfer is being received (one at a time).
    receiving: bool,
    /// The staged snapshot's point, once every file was checked in this process.
    verified: Option<(u64, u64)>,
    /// The install marker is written: the staged files must stay as they are.
    installing: bool,
    /// How long the last transfer's check took (every file read back for its CRC-32), for
    /// the log line that reports it.
    checked_in: std::time::Duration,
}

/// Clears `receiving` however the transfer ends.
struct Receiving<'a>(&'a Staging);

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.0.state.lock().expect("staging lock").receiving = false;
    }
}

impl Staging {
    /// The staging directory of a node whose cluster files are in `cluster_dir`.
    pub fn new(cluster_dir: &Path) -> Staging {
        Staging {
            dir: cluster_dir.join(super::install::STAGING_DIR),
            state: Mutex::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long the last transfer received took to check (its files read back for CRC-32s).
    pub fn checked_in(&self) -> std::time::Duration {
        self.state.lock().expect("staging lock").checked_in
    }

    /// The point of the snapshot staged and checked in this process, if any.
    pub fn verified(&self) -> Option<(u64, u64)> {
        self.state.lock().expect("staging lock").verified
    }

    /// Receives one transfer on `stream` (the leader dialled this node's cluster port with
    /// the snapshot hello, not yet read), answering `Staged` or `Refused`. Returns the point
    /// staged, or why not.
    pub fn receive(&self, mut stream: TcpStream) -> Result<(u64, u64), String> {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(FRAME_TIMEOUT));
        let _ = stream.set_write_timeout(Some(FRAME_TIMEOUT));
        let mut hello = [0u8; HELLO_BYTES];
        stream
            .read_exact(&mut hello)
            .map_err(|e| format!("reading the hello: {e}"))?;
        let leader = super::decode_hello(&hello)?;
        let offer = match read_frame(&mut stream)? {
            Frame::Offer(offer) => offer,
            other => return Err(format!("leader {leader} sent {other:?} before its offer")),
        };
        let received = self.receive_offer(&mut stream, &offer);
        let answer = match &received {
            Ok(_) => Frame::Staged {
                index: offer.index,
                term: offer.term,
            },
            Err(why) => Frame::Refused(why.clone()),
        };
        let _ = write_frame(&mut stream, &answer);
        received.map_err(|why| format!("snapshot from leader {leader}: {why}"))
    }

    fn receive_offer(&self, stream: &mut TcpStream, offer: &Offer) -> Result<(u64, u64), String> {
        let _receiving = {
            let mut state = self.state.lock().expect("staging lock");
            if state.receiving {
                return Err("another transfer is under way".into());
            }
            if state.installing {
                return Err("a staged snapshot is being installed".into());
            }
            state.receiving = true;
            if state.verified != Some((offer.index, offer.term)) {
                state.verified = None;
            }
            Receiving(self)
        };
        let (mut file, mut offset) = self.resume_point(offer)?;
        write_frame(
            stream,
            &Frame::Resume {
                file: file as u32,
                offset,
            },
        )
        .map_err(|e| format!("sending where to resume: {e}"))?;
        let mut writing: Option<File> = None;
        // Where this file's writeback was last started (a resumed file: its start).
        let mut written_back = offset;
        loop {
            match read_frame(stream)? {
                Frame::Chunk {
                    file: chunk_file,
                    offset: chunk_offset,
                    data,
                } => {
                    let Some(offered) = offer.files.get(file) else {
                        return Err(format!("a chunk of file {chunk_file} after the last file"));
                    };
                    if chunk_file as usize != file || chunk_offset != offset {
                        return Err(format!(
                            "a chunk of file {chunk_file} at {chunk_offset}, expected file {file} at {offset}"
                        ));
                    }
                    if offset + data.len() as u64 > offered.len {
                        return Err(format!(
                            "a chunk past the end of {} ({} bytes)",
                            offered.name, offered.len
                        ));
                    }
                    let path = self.file_path(&offered.name);
                    let out = match &mut writing {
                        Some(out) => out,
                        None => writing.insert(open_at(&path, offset)?),
                    };
                    out.write_all(&data)
                        .map_err(|e| format!("writing {}: {e}", path.display()))?;
                    offset += data.len() as u64;
                    if offset - written_back >= WRITE_BEHIND {
                        crate::os::start_writeback(out, written_back, offset - written_back);
                        written_back = offset;
                    }
                    // A file complete: synced, and the next one starts at 0.
                    while file < offer.files.len() && offset == offer.files[file].len {
                        if let Some(out) = writing.take() {
                            out.sync_all()
                                .map_err(|e| format!("syncing {}: {e}", path.display()))?;
                        } else {
                            // An empty file: nothing arrives for it.
                            open_at(&self.file_path(&offer.files[file].name), 0)?;
                        }
                        file += 1;
                        offset = 0;
                        written_back = 0;
                    }
                }
                Frame::Done => break,
                other => return Err(format!("unexpected {other:?} during the transfer")),
            }
        }
        drop(writing);
        let checking = std::time::Instant::now();
        self.verify(offer)?;
        let mut state = self.state.lock().expect("staging lock");
        state.verified = Some((offer.index, offer.term));
        state.checked_in = checking.elapsed();
        drop(state);
        Ok((offer.index, offer.term))
    }

    /// Writes the install marker for `(index, term)` if that is the point staged and checked
    /// here, and from then on refuses transfers (they would rewrite the staged files).
    pub fn install(&self, index: u64, term: u64) -> Result<(), String> {
        let mut state = self.state.lock().expect("staging lock");
        if state.verified != Some((index, term)) {
            return Err(format!(
                "no snapshot through {index} (term {term}) is staged and checked here"
            ));
        }
        state.installing = true;
        super::install::write_marker(&self.dir, index, term)
    }

    fn file_path(&self, name: &str) -> PathBuf {
        self.dir.join(FILES_DIR).join(name)
    }

    /// Where the staged copy of `offer` stops: the first file not staged whole and its staged
    /// length. A different offer than the one staged replaces it (written and synced first).
    fn resume_point(&self, offer: &Offer) -> Result<(usize, u64), String> {
        let files = self.dir.join(FILES_DIR);
        if read_offer(&self.dir).ok().flatten().as_ref() != Some(offer) {
            if self.dir.exists() {
                std::fs::remove_dir_all(&self.dir)
                    .map_err(|e| format!("clearing {}: {e}", self.dir.display()))?;
            }
            std::fs::create_dir_all(&files)
                .map_err(|e| format!("creating {}: {e}", files.display()))?;
            let mut body = Vec::new();
            offer.encode(&mut body);
            body.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            write_synced(&self.dir.join(OFFER_FILE), &body)?;
            sync_dir(&self.dir)?;
            return Ok((0, 0));
        }
        std::fs::create_dir_all(&files)
            .map_err(|e| format!("creating {}: {e}", files.display()))?;
        for (i, offered) in offer.files.iter().enumerate() {
            let staged = std::fs::metadata(files.join(&offered.name)).map_or(0, |m| m.len());
            if staged < offered.len {
                return Ok((i, staged));
            }
            if staged > offered.len {
                // Longer than offered: not this file; it starts again.
                return Ok((i, 0));
            }
        }
        Ok((offer.files.len(), 0))
    }

    /// Every staged file has the offered length and CRC-32; the directories are synced. A file
    /// that fails is deleted (sent again next time).
    pub fn verify(&self, offer: &Offer) -> Result<(), String> {
        for offered in &offer.files {
            let path = self.file_path(&offered.name);
            let len = std::fs::metadata(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len();
            let fault = if len != offered.len {
                Some(format!("{len} bytes, {} offered", offered.len))
            } else {
                let crc = super::file_crc(&path, len)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                (crc != offered.crc).then(|| format!("CRC {crc:08x}, {:08x} offered", offered.crc))
            };
            if let Some(fault) = fault {
                let _ = std::fs::remove_file(&path);
                return Err(format!(
                    "staged file {} has {fault}; deleted, to be sent again",
                    offered.name
                ));
            }
        }
        sync_dir(&self.dir.join(FILES_DIR))?;
        sync_dir(&self.dir)
    }
}

/// The staged offer in `dir`, if there is a whole one (`None`: none; an error: damaged).
pub fn read_offer(dir: &Path) -> Result<Option<Offer>, String> {
    let path = dir.join(OFFER_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let Some(split) = bytes.len().checked_sub(4) else {
        return Err(format!("{} is {} bytes", path.display(), bytes.len()));
    };
    let (body, crc) = bytes.split_at(split);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(format!("{} fails its checksum", path.display()));
    }
    super::decode_offer(body)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The staged files' directory of the staging directory `dir`.
pub fn files_dir(dir: &Path) -> PathBuf {
    dir.join(FILES_DIR)
}

/// A staged file's writeback is started every this many bytes (`os::start_writeback`), so
/// that its final fsync finds little left and the disk takes the transfer in small pieces
/// between the cluster's own flushes rather than a segment at a time.
const WRITE_BEHIND: u64 = 1 << 20;

/// Opens a staged file for writing at `offset` (its length now; 0 creates or empties it).
fn open_at(path: &Path, offset: u64) -> Result<File, String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let len = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len != offset {
        if offset != 0 {
            return Err(format!(
                "{} holds {len} bytes, the chunk starts at {offset}",
                path.display()
            ));
        }
        file.set_len(0)
            .map_err(|e| format!("emptying {}: {e}", path.display()))?;
    }
    Ok(file)
}

/// Writes a small file whole and syncs it.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut file = File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// fsyncs a directory (creations, renames and removals in it become durable).
pub fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("syncing directory {}: {e}", dir.display()))
}
