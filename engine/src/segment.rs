//! One segment of the log: a preallocated file (or an anonymous map in memory mode) written
//! through a memory mapping.
//!
//! This is one of the modules allowed `unsafe` (with `backend.rs` and `sim.rs`): the mapping
//! hands out byte slices, and the split between the published prefix (immutable, read by any
//! thread) and the unpublished tail (written by exactly one `SegmentWriter`) is what makes those
//! slices sound. Files are created, mapped, flushed and cut through the storage backend
//! (`backend.rs`); records are read and written through the mapping's raw pointer alone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::backend::{Backend, FileHandle, Mapping};
use crate::error::{Error, Result};
use crate::format::{
    self, DecodeError, RecordView, SegmentOrigin, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};

/// A segment's capacity (its preallocated file length) is a multiple of this. Sealing cuts the
/// file to its last record, so an unsealed segment is told apart by its length.
pub const SEGMENT_CAPACITY_ALIGN_BYTES: usize = 4096;

/// Index of a segment in the engine's segment table (what an index slot stores).
pub type SegmentSlot = u16;

/// A mapped segment. Bytes `[0, published)` hold the header and whole records and never change
/// again; bytes past `published` belong to the segment's single writer.
pub struct Segment {
    /// File id: the number in the file name; increases with every new segment.
    pub id: u64,
    /// Written by the log writer or by compaction.
    pub origin: SegmentOrigin,
    /// Position in the segment table; reused after the segment is deleted.
    pub slot: SegmentSlot,
    /// The file, or `None` in memory mode.
    path: Option<PathBuf>,
    file: Option<FileHandle>,
    map: Mapping,
    /// Bytes of the prefix that readers may see.
    published: AtomicUsize,
    /// Where a truncation (`Engine::truncate_after`) cut the segment's valid records off
    /// (`usize::MAX`: never cut). The bytes after it stay mapped (a reader may still hold
    /// them), but log readers, compaction and hint files stop there, and the next open cuts
    /// the file.
    cut_at: AtomicUsize,
    /// Whether a `SegmentWriter` was handed out (there is at most one, ever).
    writer_taken: AtomicBool,
    /// Bytes of records that no longer hold a live value (overwritten, deleted, expired,
    /// tombstones): what compaction would reclaim.
    pub dead_bytes: AtomicU64,
    /// Lowest and highest seq of any record in the segment (u64::MAX / 0 when empty).
    pub min_seq: AtomicU64,
    pub max_seq: AtomicU64,
    /// Bytes of log-only (`Append`) records, and a bit per namespace tag that has any here.
    pub append_bytes: AtomicU64,
    pub append_namespaces: AtomicU8,
    /// Bytes of `Append` records that range markers drop, as last counted (they are not in
    /// `dead_bytes`: a marker does not say which segments it reaches), and the marker
    /// generation that count is for (`u64::MAX`: never counted).
    pub covered_bytes: AtomicU64,
    pub covered_generation: AtomicU64,
    /// Set once the segment is sealed (no more appends).
    sealed: AtomicBool,
    /// Set once a sealed segment is flushed, cut to its last record and fsynced (or was found
    /// so at recovery): only then may compaction or a hint file rely on its file.
    durably_sealed: AtomicBool,
    /// A compaction installed copies of this segment's live records: log readers skip it from
    /// now on (it leaves the table once the index points at the copies).
    superseded: AtomicBool,
    /// Recovery loaded the index entries from a hint file instead of reading (and checking)
    /// the records: damage in them is found only when they are read.
    loaded_from_hints: AtomicBool,
    /// A sparse seq -> offset index of the published prefix, built lazily by [`Segment::seek`]
    /// (a data model reading its log-only records from a seq).
    seq_marks: std::sync::Mutex<SeqMarks>,
}

/// Every [`SEQ_MARK_SPACING`] bytes or so, the seq and offset of a top-level record: a seek
/// bisects these and scans at most that many bytes. 16 B a mark: 0.4% of the segment.
#[derive(Default)]
struct SeqMarks {
    marks: Vec<(u64, usize)>,
    /// Offset of the first record not yet looked at.
    scanned_to: usize,
}

/// Bytes between two seq marks (at least).
const SEQ_MARK_SPACING: usize = 4096;

// SAFETY: the mapping is only read below `published` (immutable bytes, published with
// Release and read with Acquire) and only written past it by the unique `SegmentWriter`, so
// sharing `&Segment` across threads cannot race.
unsafe impl Send for Segment {}
unsafe impl Sync for Segment {}

impl Segment {
    fn new(
        id: u64,
        slot: SegmentSlot,
        path: Option<PathBuf>,
        file: Option<FileHandle>,
        map: Mapping,
        published: usize,
    ) -> Segment {
        Segment {
            id,
            origin: SegmentOrigin::Log,
            slot,
            path,
            file,
            map,
            published: AtomicUsize::new(published),
            cut_at: AtomicUsize::new(usize::MAX),
            writer_taken: AtomicBool::new(false),
            dead_bytes: AtomicU64::new(0),
            min_seq: AtomicU64::new(u64::MAX),
            max_seq: AtomicU64::new(0),
            append_bytes: AtomicU64::new(0),
            append_namespaces: AtomicU8::new(0),
            covered_bytes: AtomicU64::new(0),
            covered_generation: AtomicU64::new(u64::MAX),
            sealed: AtomicBool::new(false),
            durably_sealed: AtomicBool::new(false),
            superseded: AtomicBool::new(false),
            loaded_from_hints: AtomicBool::new(false),
            seq_marks: std::sync::Mutex::new(SeqMarks::default()),
        }
    }

    /// The offset of the first top-level record with seq >= `seq` in the readable prefix (the
    /// readable length when there is none). Records in a segment are in seq order (the writer
    /// and compaction both append in seq order). Extends the segment's sparse seq marks over
    /// what was published since the last call, then bisects them, then scans at most
    /// [`SEQ_MARK_SPACING`] bytes and a record.
    pub(crate) fn seek(&self, seq: u64) -> usize {
        let end = self.readable_len();
        let mut marks = self.seq_marks.lock().expect("seq marks lock");
        let mut offset = marks.scanned_to.max(SEGMENT_HEADER_BYTES);
        let mut last_mark = marks.marks.last().map_or(0, |m| m.1);
        while offset + RECORD_HEADER_BYTES <= end {
            let header = self.bytes(offset, RECORD_HEADER_BYTES);
            if header.iter().all(|&b| b == 0) {
                break;
            }
            let (key_len, value_len) = format::peek_lengths(header);
            let len = format::record_len(key_len, value_len);
            if offset + len > end {
                break;
            }
            if marks.marks.is_empty() || offset >= last_mark + SEQ_MARK_SPACING {
                marks.marks.push((format::peek_seq(header), offset));
                last_mark = offset;
            }
            offset += len;
        }
        marks.scanned_to = offset;
        // The last mark before `seq` (marks may repeat a seq: a compacted batch's members).
        let before = marks.marks.partition_point(|m| m.0 < seq);
        let mut at = match before {
            0 => SEGMENT_HEADER_BYTES,
            n => marks.marks[n - 1].1,
        };
        drop(marks);
        while at + RECORD_HEADER_BYTES <= end {
            let header = self.bytes(at, RECORD_HEADER_BYTES);
            if header.iter().all(|&b| b == 0) || format::peek_seq(header) >= seq {
                return at;
            }
            let (key_len, value_len) = format::peek_lengths(header);
            at += format::record_len(key_len, value_len);
        }
        end.min(at)
    }

    /// Creates a new preallocated segment file at `path` with its header written and synced.
    pub fn create_file(
        backend: &Backend,
        path: &Path,
        id: u64,
        slot: SegmentSlot,
        capacity: usize,
        origin: SegmentOrigin,
    ) -> Result<Segment> {
        let file = backend
            .create_new(path)
            .map_err(|e| Error::io(path, "create segment", e))?;
        file.preallocate(capacity as u64)
            .map_err(|e| Error::io(path, "preallocate segment", e))?;
        let map = file
            .map(capacity, true)
            .map_err(|e| Error::io(path, "map segment", e))?;
        let mut segment = Segment::new(id, slot, Some(path.to_path_buf()), Some(file), map, 0);
        segment.origin = origin;
        segment.write_header();
        Ok(segment)
    }

    /// Creates a segment in anonymous memory (memory mode).
    pub fn create_anonymous(
        id: u64,
        slot: SegmentSlot,
        capacity: usize,
        origin: SegmentOrigin,
    ) -> Result<Segment> {
        let map = Mapping::anonymous(capacity)
            .map_err(|e| Error::io("<memory>", "map anonymous segment", e))?;
        let mut segment = Segment::new(id, slot, None, None, map, 0);
        segment.origin = origin;
        segment.write_header();
        Ok(segment)
    }

    /// Writes the header of a segment nobody else can see yet.
    fn write_header(&mut self) {
        // SAFETY: `&mut self` on a segment not yet shared: nothing else reads or writes the
        // mapping, which is at least a header long (capacity is checked by the engine).
        let header =
            unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr(), SEGMENT_HEADER_BYTES) };
        format::encode_segment_header(header, self.id, self.origin);
        self.published
            .store(SEGMENT_HEADER_BYTES, Ordering::Release);
    }

    /// Maps an existing segment file. `writable` maps it read-write for the tail segment, whose
    /// torn tail recovery may zero and to which the writer appends.
    pub fn open_file(
        backend: &Backend,
        path: &Path,
        slot: SegmentSlot,
        writable: bool,
    ) -> Result<Segment> {
        let file = backend
            .open(path, writable)
            .map_err(|e| Error::io(path, "open segment", e))?;
        let len = file.len().map_err(|e| Error::io(path, "stat segment", e))? as usize;
        if len < SEGMENT_HEADER_BYTES {
            return Err(Error::corrupt(
                path,
                len as u64,
                "file shorter than the segment header",
            ));
        }
        let map = file
            .map(len, writable)
            .map_err(|e| Error::io(path, "map segment", e))?;
        // Until recovery has scanned it, only the header is known to be good.
        let mut segment = Segment::new(0, slot, Some(path.to_path_buf()), Some(file), map, len);
        let (id, origin) = format::decode_segment_header(segment.bytes(0, SEGMENT_HEADER_BYTES))
            .map_err(|c| Error::corrupt(path, c.offset, c.reason))?;
        segment.id = id;
        segment.origin = origin;
        segment
            .published
            .store(SEGMENT_HEADER_BYTES, Ordering::Release);
        Ok(segment)
    }

    /// Records that the file was renamed to `path` (its descriptor and mapping stay valid).
    pub(crate) fn renamed(&mut self, path: &Path) {
        self.path = Some(path.to_path_buf());
        self.map.renamed(path);
        if let Some(FileHandle::Sim(file)) = &mut self.file {
            file.renamed(path);
        }
    }

    /// The file path, or a placeholder for memory segments (for error messages).
    pub fn display_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("<memory segment {}>", self.id)))
    }

    /// Mapped length.
    pub fn capacity(&self) -> usize {
        self.map.len()
    }

    /// Bytes readers may see.
    pub fn published(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// The published bytes a log reader may use: all of them, or up to a truncation's cut.
    pub fn readable_len(&self) -> usize {
        self.published().min(self.cut_at.load(Ordering::Acquire))
    }

    /// Cuts the valid records off at `offset` (a record boundary): see `cut_at`.
    pub(crate) fn cut(&self, offset: usize) {
        self.cut_at.fetch_min(offset, Ordering::AcqRel);
    }

    /// Marks the published prefix as known-good (recovery, after scanning the whole file).
    pub(crate) fn set_published(&self, bytes: usize) {
        assert!(bytes <= self.capacity());
        self.published.store(bytes, Ordering::Release);
    }

    /// The whole mapping as bytes, for recovery's scan before anyone else sees the segment.
    /// Only valid while no writer exists.
    pub(crate) fn scan_bytes(&self) -> &[u8] {
        assert!(
            !self.writer_taken.load(Ordering::Acquire),
            "scan_bytes while a writer exists"
        );
        // SAFETY: no writer exists (checked above, and recovery owns the segment exclusively
        // before handing out a writer), so nothing mutates the mapping during this borrow.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }

    /// Published bytes `[offset, offset + len)`.
    pub fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        let published = self.published();
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= published),
            "read of [{offset}, +{len}) past the published {published} bytes of segment {}",
            self.id
        );
        // SAFETY: the range lies inside the published prefix, which is never written again
        // while the mapping lives, and the mapping lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset), len) }
    }

    /// Published bytes `[offset, offset + len)`, or `None` if they run past the published
    /// prefix (for lengths read from bytes that may be wrong, such as a bad hint's target).
    pub fn bytes_checked(&self, offset: usize, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        (end <= self.published()).then(|| self.bytes(offset, len))
    }

    /// Published bytes from `offset` to the end of the published prefix.
    pub fn bytes_from(&self, offset: usize) -> &[u8] {
        let published = self.published();
        self.bytes(offset.min(published), published.saturating_sub(offset))
    }

    /// Decodes the record at `offset`.
    pub fn record_at(
        &self,
        offset: usize,
        verify_crc: bool,
    ) -> std::result::Result<RecordView<'_>, DecodeError> {
        format::decode_record(self.bytes_from(offset), offset as u64, verify_crc)
    }

    /// Faults the unwritten bytes `[from, to)` in ahead of the writer (see
    /// `Mapping::populate_write`). Fails with the kernel's error (e.g. when the file was cut
    /// shorter meanwhile); the caller just stops.
    pub fn prefault(&self, from: usize, to: usize) -> std::io::Result<()> {
        if to <= from {
            return Ok(());
        }
        self.map
            .populate_write(from, to.min(self.capacity()) - from)
    }

    /// Drops the mapping's page-table entries for bytes `[0, to)` of a file segment before its
    /// final flush, so writeback need not write-protect them one by one (see
    /// `Mapping::drop_file_page_entries`). The bytes stay readable. Nothing for a segment
    /// without a file (memory mode), whose anonymous memory would be lost.
    pub fn drop_page_entries(&self, to: usize) {
        if self.file.is_none() || to == 0 {
            return;
        }
        // An optimisation only: on failure the flush write-protects the entries itself.
        let _ = self.map.drop_file_page_entries(0, to.min(self.capacity()));
    }

    /// Flushes bytes `[from, to)` of the mapping to the file and waits for the disk.
    pub fn flush_range(&self, from: usize, to: usize) -> Result<()> {
        if self.file.is_none() || to <= from {
            return Ok(());
        }
        self.map
            .flush_range(from, to - from)
            .map_err(|e| Error::io(self.display_path(), "flush segment", e))
    }

    /// fsyncs the file (data and metadata such as its length).
    pub fn sync_file(&self) -> Result<()> {
        match &self.file {
            Some(file) => file
                .sync_all()
                .map_err(|e| Error::io(self.display_path(), "fsync segment", e)),
            None => Ok(()),
        }
    }

    /// Cuts the file to its published length (a sealed segment ends exactly at its last record)
    /// and fsyncs it.
    pub fn truncate_to_published(&self) -> Result<()> {
        if let Some(file) = &self.file {
            let path = self.display_path();
            file.set_len(self.published() as u64)
                .map_err(|e| Error::io(&path, "truncate segment", e))?;
            file.sync_all()
                .map_err(|e| Error::io(&path, "fsync segment", e))?;
        }
        Ok(())
    }

    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    pub(crate) fn mark_sealed(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    pub fn is_durably_sealed(&self) -> bool {
        self.durably_sealed.load(Ordering::Acquire)
    }

    pub(crate) fn mark_durably_sealed(&self) {
        self.mark_sealed();
        self.durably_sealed.store(true, Ordering::Release);
    }

    pub(crate) fn mark_superseded(&self) {
        self.superseded.store(true, Ordering::Release);
    }

    pub(crate) fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }

    pub(crate) fn loaded_from_hints(&self) -> bool {
        self.loaded_from_hints.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_loaded_from_hints(&self) {
        self.loaded_from_hints.store(true, Ordering::Relaxed);
    }

    pub fn is_memory(&self) -> bool {
        self.file.is_none()
    }

    /// Notes that a record with `seq` lives in this segment.
    pub(crate) fn note_seq(&self, seq: u64) {
        self.min_seq.fetch_min(seq, Ordering::Relaxed);
        self.max_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// `note_seq` for the one thread appending to this segment in seq order (the log writer,
    /// a compaction filling its output): plain loads and stores, no locked instructions on
    /// the put path.
    pub(crate) fn note_appended_seq(&self, seq: u64) {
        debug_assert!(
            seq >= self.max_seq.load(Ordering::Relaxed),
            "seqs appended out of order"
        );
        if self.min_seq.load(Ordering::Relaxed) == u64::MAX {
            self.min_seq.store(seq, Ordering::Relaxed);
        }
        self.max_seq.store(seq, Ordering::Relaxed);
    }

    pub(crate) fn add_dead(&self, bytes: usize) {
        self.dead_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Takes back dead bytes (a truncation restored the record they were).
    pub(crate) fn sub_dead(&self, bytes: usize) {
        self.dead_bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
    }

    /// Notes a log-only record of namespace `tag` of `bytes` bytes.
    pub(crate) fn note_append(&self, tag: u8, bytes: usize) {
        self.append_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.append_namespaces.fetch_or(1 << tag, Ordering::Relaxed);
    }

    /// Whether the segment holds log-only records of namespace `tag`.
    pub fn has_appends_in(&self, tag: u8) -> bool {
        self.append_namespaces.load(Ordering::Relaxed) & (1 << tag) != 0
    }

    /// Bytes compaction would reclaim: dead records plus log-only records range markers drop.
    pub fn reclaimable_bytes(&self) -> u64 {
        self.dead_bytes.load(Ordering::Relaxed) + self.covered_bytes.load(Ordering::Relaxed)
    }

    /// Share of the published bytes that compaction would reclaim.
    pub fn garbage_ratio(&self) -> f64 {
        let total = self.published().saturating_sub(SEGMENT_HEADER_BYTES).max(1);
        self.reclaimable_bytes() as f64 / total as f64
    }

    /// Takes over `other`'s accounting (dead bytes, seq range, log-only records): `other` is
    /// the same file, mapped anew.
    pub(crate) fn take_accounting_from(&mut self, other: &Segment) {
        let copy = |to: &mut AtomicU64, from: &AtomicU64| {
            *to = AtomicU64::new(from.load(Ordering::Relaxed));
        };
        copy(&mut self.dead_bytes, &other.dead_bytes);
        copy(&mut self.min_seq, &other.min_seq);
        copy(&mut self.max_seq, &other.max_seq);
        copy(&mut self.append_bytes, &other.append_bytes);
        copy(&mut self.covered_bytes, &other.covered_bytes);
        copy(&mut self.covered_generation, &other.covered_generation);
        self.append_namespaces = AtomicU8::new(other.append_namespaces.load(Ordering::Relaxed));
        self.cut_at = AtomicUsize::new(other.cut_at.load(Ordering::Acquire));
    }

    /// A read-only mapping of this sealed file segment (replaces the writable one after sealing).
    pub(crate) fn reopen_read_only(&self, backend: &Backend) -> Result<Option<Segment>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let mut reopened = Segment::open_file(backend, path, self.slot, false)?;
        reopened.id = self.id;
        reopened
            .published
            .store(self.published(), Ordering::Release);
        reopened.take_accounting_from(self);
        reopened.mark_durably_sealed();
        Ok(Some(reopened))
    }
}

/// The single writer of a segment's tail: appends records and publishes them to readers.
pub struct SegmentWriter {
    pub segment: Arc<Segment>,
    /// Next byte to write; `>= published`.
    offset: usize,
}

impl SegmentWriter {
    /// The writer of `segment`, or `None` if one was already handed out (there is one, ever).
    pub fn new(segment: Arc<Segment>) -> Option<SegmentWriter> {
        if segment.writer_taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        let offset = segment.published();
        Some(SegmentWriter { segment, offset })
    }

    /// Bytes left after the write position.
    pub fn remaining(&self) -> usize {
        self.segment.capacity() - self.offset
    }

    /// Reserves `len` bytes at the write position, lets `fill` write them, and returns their
    /// offset. The bytes stay invisible to readers until `publish`.
    pub fn append(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> usize {
        assert!(
            len <= self.remaining(),
            "append of {len} bytes past the segment end"
        );
        let at = self.offset;
        // SAFETY: `[at, at + len)` lies past `published` (readers never look there) and inside
        // the mapping; this writer is the only one (`writer_taken`), and `&mut self` makes the
        // borrow unique for the duration of `fill`.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(self.segment.map.as_mut_ptr().add(at), len) };
        fill(bytes);
        self.offset += len;
        at
    }

    /// The write position: bytes appended so far, published or not.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Appends `bytes` at the write position through the file (`pwrite`) instead of the
    /// mapping, and returns their offset; invisible to readers until `publish`, as `append`'s.
    /// The mapping reads them from the same page-cache pages, and a flush of the range makes
    /// them durable as it does stores (msync writes back the range's dirty pages however they
    /// were dirtied). What it saves: pages never stored to through the mapping have no
    /// writable page-table entries, so writeback has none to write-protect (a TLB-shootdown
    /// interrupt each) and the next append takes no write fault. On the simulated disk and in
    /// memory mode the bytes are copied into the mapping. On an error nothing is appended.
    pub fn write(&mut self, bytes: &[u8]) -> Result<usize> {
        assert!(
            bytes.len() <= self.remaining(),
            "write of {} bytes past the segment end",
            bytes.len()
        );
        let Some(FileHandle::Os(file)) = &self.segment.file else {
            return Ok(self.append(bytes.len(), |out| out.copy_from_slice(bytes)));
        };
        let at = self.offset;
        use std::os::unix::fs::FileExt;
        file.write_all_at(bytes, at as u64).map_err(|e| {
            let path = self
                .segment
                .path
                .as_deref()
                .unwrap_or(Path::new("<segment>"));
            Error::io(path, "write log records", e)
        })?;
        self.offset += bytes.len();
        Ok(at)
    }

    /// Makes everything appended so far visible to readers.
    pub fn publish(&mut self) {
        self.segment.published.store(self.offset, Ordering::Release);
    }

    /// Zeroes every non-zero byte from the write position to the end of the mapping, so stale
    /// bytes past a torn tail can never be mistaken for records later. Returns bytes zeroed.
    pub fn zero_tail(&mut self) -> usize {
        const CHUNK: usize = 4096;
        let mut zeroed = 0;
        let mut at = self.offset;
        let end = self.segment.capacity();
        while at < end {
            let len = CHUNK.min(end - at);
            // SAFETY: as in `append`: past `published`, inside the mapping, unique writer.
            let chunk = unsafe {
                std::slice::from_raw_parts_mut(self.segment.map.as_mut_ptr().add(at), len)
            };
            if chunk.iter().any(|&b| b != 0) {
                chunk.fill(0);
                zeroed += len;
            }
            at += len;
        }
        zeroed
    }
}
