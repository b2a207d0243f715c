//! Hint files: a sealed segment's keys with their record offsets, so recovery can rebuild the
//! index without reading the values (Bitcask's hint files). Every record is listed, range
//! markers too, except that consecutive log-only records of one namespace are listed as one
//! *run* (their first and last seq and offset, their count and bytes: all recovery needs of
//! them), and the footer counts the indexed ones per namespace, so recovery sizes each
//! namespace's tables once.
//!
//! A hint file is an optimization only: if it is missing, truncated or fails its checksum,
//! recovery scans the segment instead.

use std::path::Path;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::format::RecordKind;

const HINT_MAGIC: [u8; 8] = *b"FLINHINT";
const HINT_VERSION: u16 = 3;
/// Version 2 (no runs) is still read: its entries mean what they meant.
const HINT_VERSION_NO_RUNS: u16 = 2;
/// The kind byte of a run entry: the Append kind with this bit set.
const RUN_FLAG: u8 = 0x80;
/// Bytes of a run entry's key: last seq u64, last offset u32, count u32.
const RUN_KEY_BYTES: usize = 16;
pub const HINT_HEADER_BYTES: usize = 24;
pub const HINT_ENTRY_HEADER_BYTES: usize = 32;
/// Namespace tags counted in the footer (as `index::NAMESPACE_TAGS`).
const FOOTER_TAGS: usize = 8;
/// Footer: a u64 count of indexed entries per namespace tag, the u64 count of all entries, a
/// u32 CRC of everything before it, 4 bytes of padding.
pub const HINT_FOOTER_BYTES: usize = FOOTER_TAGS * 8 + 16;

/// One record of the segment, as the hint file lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HintEntry<'a> {
    pub seq: u64,
    pub expiry_ms: u64,
    pub offset: u32,
    pub record_len: u32,
    pub kind: RecordKind,
    pub namespace_tag: u8,
    pub key: &'a [u8],
    /// For a run of consecutive log-only records (read from a file; the writer makes runs
    /// itself): the entry's seq, offset and kind are the first record's, `record_len` spans
    /// the whole run, and this names the last record and the count. The key is empty.
    pub run: Option<AppendRun>,
}

/// The last record of a run of log-only records, and how many the run holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendRun {
    pub last_seq: u64,
    pub last_offset: u32,
    pub count: u32,
}

/// A run being collected: (first entry's seq, offset, namespace), end, last seq and offset,
/// count.
#[derive(Clone, Copy)]
struct OpenRun {
    first_seq: u64,
    first_offset: u32,
    namespace_tag: u8,
    end: u64,
    last_seq: u64,
    last_offset: u32,
    count: u32,
}

/// Builds a hint file in memory.
pub struct HintWriter {
    buf: Vec<u8>,
    entries: u64,
    /// Put and delete entries per namespace tag.
    indexed_per_tag: [u64; FOOTER_TAGS],
    /// Consecutive log-only records not yet written.
    run: Option<OpenRun>,
}

impl HintWriter {
    pub fn new(segment_id: u64) -> HintWriter {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(&HINT_MAGIC);
        buf.extend_from_slice(&HINT_VERSION.to_le_bytes());
        buf.extend_from_slice(&[0u8; 6]);
        buf.extend_from_slice(&segment_id.to_le_bytes());
        debug_assert_eq!(buf.len(), HINT_HEADER_BYTES);
        HintWriter {
            buf,
            entries: 0,
            indexed_per_tag: [0; FOOTER_TAGS],
            run: None,
        }
    }

    /// Lists a record. A log-only record right after another of its namespace joins that
    /// one's run; a run is written when something else comes (or at the end).
    pub fn add(&mut self, entry: &HintEntry<'_>) {
        if entry.kind == RecordKind::Append && entry.run.is_none() {
            let end = entry.offset as u64 + entry.record_len as u64;
            if let Some(run) = self.run.as_mut() {
                if run.namespace_tag == entry.namespace_tag
                    && run.end == entry.offset as u64
                    && run.count < u32::MAX
                {
                    run.end = end;
                    run.last_seq = entry.seq;
                    run.last_offset = entry.offset;
                    run.count += 1;
                    return;
                }
            }
            self.flush_run();
            self.run = Some(OpenRun {
                first_seq: entry.seq,
                first_offset: entry.offset,
                namespace_tag: entry.namespace_tag,
                end,
                last_seq: entry.seq,
                last_offset: entry.offset,
                count: 1,
            });
            return;
        }
        self.flush_run();
        self.push(entry);
    }

    /// Writes the open run: as a plain entry when it holds one record.
    fn flush_run(&mut self) {
        let Some(run) = self.run.take() else { return };
        let len = (run.end - run.first_offset as u64) as u32;
        if run.count == 1 {
            self.push(&HintEntry {
                seq: run.first_seq,
                expiry_ms: 0,
                offset: run.first_offset,
                record_len: len,
                kind: RecordKind::Append,
                namespace_tag: run.namespace_tag,
                key: &[],
                run: None,
            });
            return;
        }
        let mut key = [0u8; RUN_KEY_BYTES];
        key[..8].copy_from_slice(&run.last_seq.to_le_bytes());
        key[8..12].copy_from_slice(&run.last_offset.to_le_bytes());
        key[12..].copy_from_slice(&run.count.to_le_bytes());
        self.push(&HintEntry {
            seq: run.first_seq,
            expiry_ms: 0,
            offset: run.first_offset,
            record_len: len,
            kind: RecordKind::Append,
            namespace_tag: run.namespace_tag,
            key: &key,
            run: Some(AppendRun {
                last_seq: run.last_seq,
                last_offset: run.last_offset,
                count: run.count,
            }),
        });
    }

    fn push(&mut self, entry: &HintEntry<'_>) {
        self.buf.extend_from_slice(&entry.seq.to_le_bytes());
        self.buf.extend_from_slice(&entry.expiry_ms.to_le_bytes());
        self.buf.extend_from_slice(&entry.offset.to_le_bytes());
        self.buf.extend_from_slice(&entry.record_len.to_le_bytes());
        self.buf
            .extend_from_slice(&(entry.key.len() as u32).to_le_bytes());
        let flag = if entry.run.is_some() { RUN_FLAG } else { 0 };
        self.buf.push(entry.kind as u8 | flag);
        self.buf.push(entry.namespace_tag);
        self.buf.extend_from_slice(&[0u8; 2]);
        self.buf.extend_from_slice(entry.key);
        self.entries += 1;
        if entry.kind.is_indexed() {
            self.indexed_per_tag[entry.namespace_tag as usize % FOOTER_TAGS] += 1;
        }
    }

    /// A whole hint file for segment `segment_id` around entry bytes taken as they are (the
    /// fuzz targets use it to reach the entry decoder past the file's checks).
    pub fn with_raw_entries(segment_id: u64, entries: &[u8]) -> Vec<u8> {
        let mut writer = HintWriter::new(segment_id);
        writer.buf.extend_from_slice(entries);
        writer.finish()
    }

    /// The file's bytes: the entries and the footer.
    fn finish(mut self) -> Vec<u8> {
        self.flush_run();
        for count in self.indexed_per_tag {
            self.buf.extend_from_slice(&count.to_le_bytes());
        }
        self.buf.extend_from_slice(&self.entries.to_le_bytes());
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf.extend_from_slice(&[0u8; 4]);
        self.buf
    }

    /// Writes the file to `path` and fsyncs it (the caller fsyncs the directory).
    pub fn write(self, backend: &Backend, path: &Path) -> Result<()> {
        let bytes = self.finish();
        let mut file = backend
            .create_truncate(path)
            .map_err(|e| Error::io(path, "create hint file", e))?;
        file.write_all(&bytes)
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io(path, "write hint file", e))
    }
}

/// A hint file read and checked in full.
pub struct HintFile {
    buf: Vec<u8>,
    pub entries: u64,
}

impl HintFile {
    /// Reads and checks the hint file of segment `segment_id`. `Ok(None)` if there is none;
    /// `Err` names what is wrong with it (the caller logs it and scans the segment instead).
    pub fn read(
        backend: &Backend,
        path: &Path,
        segment_id: u64,
    ) -> std::result::Result<Option<HintFile>, String> {
        let buf = match backend.read(path) {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read: {e}")),
        };
        HintFile::parse(buf, segment_id).map(Some)
    }

    /// Checks the bytes of a hint file for segment `segment_id` (header, footer, checksum; the
    /// entries are checked as `iter` reaches them). `Err` names what is wrong and where.
    pub fn parse(buf: Vec<u8>, segment_id: u64) -> std::result::Result<HintFile, String> {
        if buf.len() < HINT_HEADER_BYTES + HINT_FOOTER_BYTES {
            return Err(format!("only {} bytes long", buf.len()));
        }
        if buf[0..8] != HINT_MAGIC {
            return Err("bad magic bytes at byte 0".into());
        }
        let version = u16::from_le_bytes([buf[8], buf[9]]);
        if version != HINT_VERSION && version != HINT_VERSION_NO_RUNS {
            return Err(format!("unsupported version {version} at byte 8"));
        }
        let named = u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes"));
        if named != segment_id {
            return Err(format!(
                "names segment {named} at byte 16, expected {segment_id}"
            ));
        }
        let footer = buf.len() - HINT_FOOTER_BYTES;
        let crc_at = footer + FOOTER_TAGS * 8 + 8;
        let stored = u32::from_le_bytes(buf[crc_at..crc_at + 4].try_into().expect("4 bytes"));
        let actual = crc32fast::hash(&buf[..crc_at]);
        if stored != actual {
            return Err(format!("checksum mismatch at byte {crc_at}"));
        }
        if buf[crc_at + 4..].iter().any(|&b| b != 0) {
            return Err(format!("non-zero padding at byte {}", crc_at + 4));
        }
        let entries = u64::from_le_bytes(buf[crc_at - 8..crc_at].try_into().expect("8 bytes"));
        Ok(HintFile { buf, entries })
    }

    /// The indexed entries per namespace tag a hint file's footer claims, read without loading
    /// the file (an estimate for sizing the index; the file is checked in full when it is
    /// loaded).
    pub fn footer_counts(backend: &Backend, path: &Path) -> Option<[u64; FOOTER_TAGS]> {
        let (len, footer) = backend.read_tail(path, HINT_FOOTER_BYTES).ok()?;
        if footer.len() < HINT_FOOTER_BYTES {
            return None;
        }
        let mut counts = [0u64; FOOTER_TAGS];
        for (tag, count) in counts.iter_mut().enumerate() {
            *count = u64::from_le_bytes(footer[tag * 8..tag * 8 + 8].try_into().expect("8 bytes"));
        }
        // A damaged footer must not size the index: no more entries than the file can hold.
        let most = len.saturating_sub((HINT_HEADER_BYTES + HINT_FOOTER_BYTES) as u64)
            / HINT_ENTRY_HEADER_BYTES as u64;
        (counts.iter().try_fold(0u64, |sum, &c| sum.checked_add(c))? <= most).then_some(counts)
    }

    /// The entries, in file order. The checksum matched, so a malformed entry means a bug in the
    /// writer, and is reported as an error rather than trusted.
    pub fn iter(&self) -> HintIter<'_> {
        HintIter {
            buf: &self.buf[..self.buf.len() - HINT_FOOTER_BYTES],
            at: HINT_HEADER_BYTES,
        }
    }
}

pub struct HintIter<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Iterator for HintIter<'a> {
    type Item = std::result::Result<HintEntry<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == self.buf.len() {
            return None;
        }
        let at = self.at;
        // A malformed entry ends the iteration: without a valid length there is no next entry
        // to find, and a caller that skipped errors would otherwise get this one for ever.
        let buf_len = self.buf.len();
        let mut bad = || {
            self.at = buf_len;
            Some(Err(format!("malformed entry at byte {at}")))
        };
        let Some(header) = self.buf.get(at..at + HINT_ENTRY_HEADER_BYTES) else {
            return bad();
        };
        let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes"));
        let key_len = u32_at(24) as usize;
        let is_run = header[28] == RUN_FLAG | RecordKind::Append as u8;
        let kind = match RecordKind::from_u8(header[28] & !RUN_FLAG) {
            _ if header[28] & RUN_FLAG != 0 && !is_run => return bad(),
            Some(RecordKind::Batch) | None => return bad(),
            Some(kind) => kind,
        };
        let key_start = at + HINT_ENTRY_HEADER_BYTES;
        let Some(key) = self.buf.get(key_start..key_start + key_len) else {
            return bad();
        };
        let run = match is_run {
            false => None,
            true if key_len != RUN_KEY_BYTES => return bad(),
            true => Some(AppendRun {
                last_seq: u64::from_le_bytes(key[..8].try_into().expect("8 bytes")),
                last_offset: u32::from_le_bytes(key[8..12].try_into().expect("4 bytes")),
                count: u32::from_le_bytes(key[12..].try_into().expect("4 bytes")),
            }),
        };
        self.at = key_start + key_len;
        Some(Ok(HintEntry {
            seq: u64_at(0),
            expiry_ms: u64_at(8),
            offset: u32_at(16),
            record_len: u32_at(20),
            kind,
            namespace_tag: header[29],
            key: if is_run { &[] } else { key },
            run,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn entry(key: &[u8], seq: u64) -> HintEntry<'_> {
        HintEntry {
            seq,
            expiry_ms: if seq % 3 == 2 { 0 } else { seq * 10 },
            offset: 40 + seq as u32,
            record_len: 48,
            kind: match seq % 3 {
                0 => RecordKind::Put,
                1 => RecordKind::Delete,
                _ => RecordKind::Append,
            },
            namespace_tag: 1,
            // A log-only record's key is not listed.
            key: if seq % 3 == 2 { &[] } else { key },
            run: None,
        }
    }

    fn append(seq: u64, offset: u32, len: u32, tag: u8) -> HintEntry<'static> {
        HintEntry {
            seq,
            expiry_ms: 0,
            offset,
            record_len: len,
            kind: RecordKind::Append,
            namespace_tag: tag,
            key: b"k",
            run: None,
        }
    }

    #[test]
    fn consecutive_appends_of_a_namespace_become_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let mut writer = HintWriter::new(5);
        // Three contiguous appends of namespace 3, one of namespace 2, a gap, then two more.
        writer.add(&append(10, 32, 100, 3));
        writer.add(&append(11, 132, 60, 3));
        writer.add(&append(12, 192, 50, 3));
        writer.add(&append(13, 242, 50, 2));
        writer.add(&append(14, 400, 50, 2));
        writer.add(&entry(b"put", 15));
        writer.add(&append(16, 600, 70, 3));
        writer.write(&Backend::Os, &path).unwrap();
        let file = HintFile::read(&Backend::Os, &path, 5).unwrap().unwrap();
        let entries: Vec<_> = file.iter().map(|e| e.unwrap()).collect();
        let run = |seq, offset, len, tag, last_seq, last_offset, count| HintEntry {
            seq,
            expiry_ms: 0,
            offset,
            record_len: len,
            kind: RecordKind::Append,
            namespace_tag: tag,
            key: &[],
            run: Some(AppendRun {
                last_seq,
                last_offset,
                count,
            }),
        };
        let single = |seq, offset, len, tag| HintEntry {
            key: &[],
            ..append(seq, offset, len, tag)
        };
        assert_eq!(
            entries,
            vec![
                run(10, 32, 210, 3, 12, 192, 3),
                single(13, 242, 50, 2),
                single(14, 400, 50, 2),
                entry(b"put", 15),
                single(16, 600, 70, 3),
            ]
        );
        assert_eq!(file.entries, 5);
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let mut writer = HintWriter::new(5);
        writer.add(&entry(b"alpha", 2));
        writer.add(&entry(b"", 3));
        writer.add(&entry(b"beta", 4));
        writer.write(&Backend::Os, &path).unwrap();
        let file = HintFile::read(&Backend::Os, &path, 5).unwrap().unwrap();
        let entries: Vec<_> = file.iter().map(|e| e.unwrap()).collect();
        assert_eq!(
            entries,
            vec![entry(b"alpha", 2), entry(b"", 3), entry(b"beta", 4)]
        );
        assert_eq!(file.entries, 3);
        let mut counts = [0u64; FOOTER_TAGS];
        counts[1] = 2; // the put and the delete, not the append
        assert_eq!(HintFile::footer_counts(&Backend::Os, &path), Some(counts));
    }

    #[test]
    fn damage_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let mut writer = HintWriter::new(5);
        writer.add(&entry(b"alpha", 3));
        writer.write(&Backend::Os, &path).unwrap();
        assert!(
            HintFile::read(&Backend::Os, &path, 6).is_err(),
            "wrong segment id"
        );
        let good = fs::read(&path).unwrap();
        for cut in 0..good.len() {
            fs::write(&path, &good[..cut]).unwrap();
            assert!(
                HintFile::read(&Backend::Os, &path, 5).is_err(),
                "truncated at {cut}"
            );
        }
        let mut malformed = HintWriter::new(5);
        malformed.add(&entry(b"alpha", 3));
        malformed.buf[HINT_HEADER_BYTES + 28] = 9; // an unknown kind
        malformed.write(&Backend::Os, &path).unwrap();
        let file = HintFile::read(&Backend::Os, &path, 5).unwrap().unwrap();
        let entries: Vec<_> = file.iter().take(3).collect();
        assert_eq!(
            entries,
            vec![Err("malformed entry at byte 24".to_string())],
            "a malformed entry is reported once and ends the iteration"
        );
        let mut flipped = good.clone();
        flipped[30] ^= 4;
        fs::write(&path, &flipped).unwrap();
        assert!(HintFile::read(&Backend::Os, &path, 5).is_err());
        assert!(HintFile::read(&Backend::Os, &dir.path().join("missing"), 5)
            .unwrap()
            .is_none());
    }
}
