//! The durable home of a node's [`HardState`] (term, vote, commit): one small file beside the
//! log, `hard_state`, replaced whole on every save, as etcd keeps its HardState apart from the
//! entries. The engine's log holds the entries and their terms; the vote has no place there.
//!
//! This is file I/O, so it lives outside `core`, which stays pure: the server calls
//! [`HardStateFile::save`] with a `Ready`'s `hard_state` before sending that `Ready`'s
//! messages, and hands what [`HardStateFile::open`] returned to `Node::restart`.
//!
//! # The file, byte by byte (40 bytes, integers little-endian)
//! | offset | width | field |
//! |---|---|---|
//! | 0 | 8 | magic `FLINHARD` |
//! | 8 | 4 | version, `1` |
//! | 12 | 8 | term |
//! | 20 | 8 | vote (0 = none; 0 is never a node id) |
//! | 28 | 8 | commit |
//! | 36 | 4 | CRC-32 (crc32fast, IEEE) of bytes 0..36 |
//!
//! # Crash safety (docs/ARCHITECTURE.md, decision 75)
//! A save writes `hard_state.tmp`, fsyncs it, renames it over `hard_state` and fsyncs the
//! directory. A crash leaves either the old file or the new one whole (rename is atomic), and
//! perhaps a stale `hard_state.tmp`, which `open` ignores and the next save overwrites. Since
//! every good file is whole, any damage to `hard_state` is reported as an error naming the file
//! and what is wrong, never read as a default: a forgotten vote could be given twice in a term.
//! A missing file is a node that never saved (a fresh node), and opens as the default.
//!
//! A save that fails (a write, an fsync, the rename) poisons the handle: whether the file now
//! holds the old state or the new is unknown, and Linux may have dropped the dirty pages that a
//! retried fsync would report as clean. Every later save fails; the node must restart.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::message::HardState;

/// The file's name inside the directory given to [`HardStateFile::open`].
pub const FILE_NAME: &str = "hard_state";
/// What a save writes before renaming it over [`FILE_NAME`].
pub const TEMP_FILE_NAME: &str = "hard_state.tmp";

const MAGIC: [u8; 8] = *b"FLINHARD";
const VERSION: u32 = 1;
/// magic, version, term, vote, commit, crc32.
const FILE_LEN: usize = 8 + 4 + 8 + 8 + 8 + 4;
const CRC_OFFSET: usize = FILE_LEN - 4;
const _: () = assert!(FILE_LEN == 40);

/// A directory's hard state file, open for saving.
#[derive(Debug)]
pub struct HardStateFile {
    dir: PathBuf,
    /// What the file holds, so that saving the same state again costs nothing.
    saved: HardState,
    /// Set when a save failed: the file's state is unknown, and no save is tried again.
    poisoned: bool,
}

impl HardStateFile {
    /// Reads `dir/hard_state` (the default [`HardState`] if there is none) and returns a
    /// handle to save later states with. `dir` must exist.
    pub fn open(dir: &Path) -> io::Result<(HardStateFile, HardState)> {
        let path = dir.join(FILE_NAME);
        let state = match fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|what| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {what}", path.display()),
                )
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                // Opening the directory now reports a missing or unreadable one here, not at
                // the first save.
                File::open(dir)?;
                HardState::default()
            }
            Err(error) => return Err(error),
        };
        let file = HardStateFile {
            dir: dir.to_path_buf(),
            saved: state,
            poisoned: false,
        };
        Ok((file, state))
    }

    /// The state last saved (or read by `open`).
    pub fn saved(&self) -> HardState {
        self.saved
    }

    /// Makes `state` durable: when this returns `Ok`, a crash at any later moment reopens as
    /// `state`. Saving the state already saved does no I/O.
    ///
    /// Panics if `state.vote` is `Some(0)` (0 is not a node id; the file spells "none" as 0).
    pub fn save(&mut self, state: &HardState) -> io::Result<()> {
        assert_ne!(state.vote, Some(0), "0 is not a node id");
        if self.poisoned {
            return Err(io::Error::other(format!(
                "{}: an earlier save failed; restart the node",
                self.dir.join(FILE_NAME).display()
            )));
        }
        if *state == self.saved {
            return Ok(());
        }
        match self.replace(state) {
            Ok(()) => {
                self.saved = *state;
                Ok(())
            }
            Err(error) => {
                self.poisoned = true;
                Err(error)
            }
        }
    }

    /// Write the temp file, fsync it, rename it over the file, fsync the directory (so the
    /// rename itself is durable).
    fn replace(&self, state: &HardState) -> io::Result<()> {
        let temp = self.dir.join(TEMP_FILE_NAME);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(&encode(state))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, self.dir.join(FILE_NAME))?;
        File::open(&self.dir)?.sync_all()
    }
}

fn encode(state: &HardState) -> [u8; FILE_LEN] {
    let mut bytes = [0u8; FILE_LEN];
    bytes[0..8].copy_from_slice(&MAGIC);
    bytes[8..12].copy_from_slice(&VERSION.to_le_bytes());
    bytes[12..20].copy_from_slice(&state.term.to_le_bytes());
    bytes[20..28].copy_from_slice(&state.vote.unwrap_or(0).to_le_bytes());
    bytes[28..36].copy_from_slice(&state.commit.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..CRC_OFFSET]);
    bytes[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// The state in `bytes`, or what is wrong with them. The CRC is checked first, so a damaged
/// magic or version reads as damage, not as some other file.
fn decode(bytes: &[u8]) -> Result<HardState, String> {
    if bytes.len() != FILE_LEN {
        return Err(format!(
            "{} bytes, a hard state file has {FILE_LEN}",
            bytes.len()
        ));
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let stored_crc = u32::from_le_bytes(bytes[CRC_OFFSET..].try_into().expect("4 bytes"));
    let crc = crc32fast::hash(&bytes[..CRC_OFFSET]);
    if stored_crc != crc {
        return Err(format!(
            "checksum mismatch (stored {stored_crc:#010x}, computed {crc:#010x})"
        ));
    }
    if bytes[0..8] != MAGIC {
        return Err("not a hard state file (bad magic)".to_string());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!("unknown version {version}"));
    }
    let vote = u64_at(20);
    Ok(HardState {
        term: u64_at(12),
        vote: (vote != 0).then_some(vote),
        commit: u64_at(28),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(term: u64, vote: Option<u64>, commit: u64) -> HardState {
        HardState { term, vote, commit }
    }

    #[test]
    fn a_missing_file_opens_as_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let (file, opened) = HardStateFile::open(dir.path()).unwrap();
        assert_eq!(opened, HardState::default());
        assert_eq!(file.saved(), HardState::default());
        assert!(HardStateFile::open(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn saves_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, _) = HardStateFile::open(dir.path()).unwrap();
        for saved in [
            state(1, Some(3), 0),
            state(2, None, 7),
            state(u64::MAX, Some(u64::MAX), u64::MAX),
        ] {
            file.save(&saved).unwrap();
            assert_eq!(HardStateFile::open(dir.path()).unwrap().1, saved);
        }
        assert!(!dir.path().join(TEMP_FILE_NAME).exists());
    }

    #[test]
    fn the_bytes_are_as_documented() {
        let bytes = encode(&state(0x0102, Some(3), 4));
        assert_eq!(&bytes[..12], b"FLINHARD\x01\0\0\0");
        assert_eq!(bytes[12..20], 0x0102u64.to_le_bytes());
        assert_eq!(bytes[20..28], 3u64.to_le_bytes());
        assert_eq!(bytes[28..36], 4u64.to_le_bytes());
        assert_eq!(decode(&encode(&state(5, None, 0))), Ok(state(5, None, 0)));
    }

    fn open_error(dir: &Path, bytes: &[u8]) -> String {
        fs::write(dir.join(FILE_NAME), bytes).unwrap();
        let error = HardStateFile::open(dir).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let message = error.to_string();
        assert!(message.contains(FILE_NAME), "{message}");
        message
    }

    #[test]
    fn every_corrupt_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode(&state(9, Some(2), 5));
        for at in 0..FILE_LEN {
            for flip in [0x01, 0x80, 0xFF] {
                let mut bad = good;
                bad[at] ^= flip;
                let message = open_error(dir.path(), &bad);
                assert!(message.contains("checksum mismatch"), "{message}");
            }
        }
    }

    #[test]
    fn every_truncation_and_extension_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode(&state(9, Some(2), 5));
        for len in 0..FILE_LEN {
            let message = open_error(dir.path(), &good[..len]);
            assert!(message.contains(&format!("{len} bytes")), "{message}");
        }
        let mut longer = good.to_vec();
        longer.push(0);
        open_error(dir.path(), &longer);
    }

    #[test]
    fn a_wrong_magic_or_version_with_a_good_crc_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode(&state(1, None, 0));
        bytes[8] = 2;
        let crc = crc32fast::hash(&bytes[..CRC_OFFSET]);
        bytes[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        assert!(open_error(dir.path(), &bytes).contains("unknown version 2"));
        bytes[8] = 1;
        bytes[0] = b'X';
        let crc = crc32fast::hash(&bytes[..CRC_OFFSET]);
        bytes[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        assert!(open_error(dir.path(), &bytes).contains("bad magic"));
    }

    /// A crash between writing the temp file and the rename leaves it behind, whole or torn:
    /// the state is the old file's, and the next save replaces both.
    #[test]
    fn a_leftover_temp_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, _) = HardStateFile::open(dir.path()).unwrap();
        file.save(&state(3, Some(1), 2)).unwrap();
        for leftover in [&b"torn"[..], &encode(&state(4, Some(2), 2))[..]] {
            fs::write(dir.path().join(TEMP_FILE_NAME), leftover).unwrap();
            let (mut file, opened) = HardStateFile::open(dir.path()).unwrap();
            assert_eq!(opened, state(3, Some(1), 2));
            file.save(&state(3, Some(1), 3)).unwrap();
            assert_eq!(
                HardStateFile::open(dir.path()).unwrap().1,
                state(3, Some(1), 3)
            );
            assert!(!dir.path().join(TEMP_FILE_NAME).exists());
            file.save(&state(3, Some(1), 2)).unwrap();
        }
    }

    #[test]
    fn a_failed_save_poisons_the_handle() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("node");
        fs::create_dir(&sub).unwrap();
        let (mut file, _) = HardStateFile::open(&sub).unwrap();
        fs::remove_dir(&sub).unwrap();
        assert!(file.save(&state(1, None, 0)).is_err());
        fs::create_dir(&sub).unwrap();
        let error = file.save(&state(1, None, 0)).unwrap_err();
        assert!(
            error.to_string().contains("an earlier save failed"),
            "{error}"
        );
    }

    #[test]
    fn saving_the_saved_state_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, _) = HardStateFile::open(dir.path()).unwrap();
        file.save(&state(1, Some(2), 3)).unwrap();
        fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        file.save(&state(1, Some(2), 3)).unwrap();
        assert!(
            !dir.path().join(FILE_NAME).exists(),
            "no I/O for an unchanged state"
        );
    }

    #[test]
    #[should_panic(expected = "0 is not a node id")]
    fn a_vote_for_node_zero_is_a_bug() {
        let dir = tempfile::tempdir().unwrap();
        let (mut file, _) = HardStateFile::open(dir.path()).unwrap();
        let _ = file.save(&state(1, Some(0), 0));
    }
}
