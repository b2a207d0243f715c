//! Opening a data directory: finish an interrupted compaction swap, load hint files (checked
//! against their segment by sampling; record CRCs are then checked on read) or scan segments
//! (checking every CRC), truncate a torn tail, rebuild the index.
//!
//! Recovery policy: the newest log segment (the tail) may end in a torn or corrupt record, the
//! trace of a crash mid-write; it is cut back to its last whole record, the cut is logged with
//! file and byte offset, and the bytes after it are zeroed. Any other scanned segment must decode
//! to its last byte: damage there is an error naming file and offset, and is never served as
//! data.
//!
//! Which record of a key wins is decided by seq, not by file order: compaction outputs carry old
//! seqs in new files, so the highest seq wins, and tombstones (and expired records, which count
//! as tombstones) take part in that comparison until the end of recovery.

//!
//! Layout: this file runs the steps (finish a compaction swap, list and open the files, load
//! each segment in its role, start the active segment); `loader` rebuilds the index, the range
//! markers and each segment's accounting from the records.

mod loader;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::dir::{self, Cuts, FileKind, Manifest};
use crate::engine::{Config, LogLevel, SegmentTable};
use crate::error::{Error, Result};
use crate::format::{self, SegmentOrigin, SEGMENT_HEADER_BYTES};
use crate::hint::HintFile;
use crate::index::Index;
use crate::ranges::RangeMarkers;
use crate::segment::{Segment, SegmentWriter, SEGMENT_CAPACITY_ALIGN_BYTES};
use loader::Loader;

/// Where recovery cut a torn tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    /// Offset of the first byte dropped.
    pub offset: u64,
    /// What was wrong with the record there.
    pub reason: String,
}

/// What recovery found.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub keys: u64,
    pub segments: usize,
    pub segments_from_hints: usize,
    pub segments_scanned: usize,
    pub records_scanned: u64,
    pub torn_tail: Option<TornTail>,
    /// Hint files that were unusable (each was replaced by a scan of its segment).
    pub bad_hints: Vec<String>,
    /// An interrupted compaction swap was finished.
    pub finished_compaction: bool,
    pub last_seq: u64,
    pub duration: Duration,
}

pub(crate) struct Recovered {
    pub index: Index,
    pub segments: SegmentTable,
    pub ranges: RangeMarkers,
    pub active: SegmentWriter,
    pub last_seq: u64,
    /// The term of the newest record (the writer's term until told otherwise).
    pub last_term: u64,
    /// The commit point: `last_seq`, or a replicated engine's durable one if lower (the
    /// entries above it are not in `index`).
    pub committed_seq: u64,
    pub next_segment_id: u64,
    pub key_counts: [u64; 8],
    pub report: RecoveryReport,
}

/// How creating a log segment failed.
pub(crate) enum CreateError {
    /// Nothing was installed: the directory is as before (a `.tmp` file may be left, which the
    /// next open deletes). Trying again later is fine (a full disk, say).
    NotInstalled(Error),
    /// The segment was renamed into place but the directory fsync failed: whether its name is
    /// durable is unknown, and a second fsync could not be trusted to tell (decision 10).
    InstalledUnsynced(Error),
}

impl CreateError {
    pub fn into_error(self) -> Error {
        match self {
            CreateError::NotInstalled(e) | CreateError::InstalledUnsynced(e) => e,
        }
    }
}

/// Creates a log segment: in a directory under a temporary name, synced, then renamed, so a
/// segment file in the directory always starts with a whole header. The file stays open and
/// mapped across the rename: nothing can fail between the rename and the directory fsync.
pub(crate) fn create_log_segment(
    backend: &Backend,
    dir: Option<&Path>,
    id: u64,
    slot: u16,
    capacity: usize,
) -> std::result::Result<Segment, CreateError> {
    let Some(dir) = dir else {
        return Segment::create_anonymous(id, slot, capacity, SegmentOrigin::Log)
            .map_err(CreateError::NotInstalled);
    };
    let path = dir::segment_path(dir, id);
    let tmp = dir::tmp_path(&path);
    let mut segment = Segment::create_file(backend, &tmp, id, slot, capacity, SegmentOrigin::Log)
        .map_err(CreateError::NotInstalled)?;
    segment
        .flush_range(0, SEGMENT_HEADER_BYTES)
        .and_then(|_| segment.sync_file())
        .and_then(|_| {
            backend
                .rename(&tmp, &path)
                .map_err(|e| Error::io(&path, "install segment", e))
        })
        .map_err(CreateError::NotInstalled)?;
    segment.renamed(&path);
    dir::sync_dir(backend, dir).map_err(CreateError::InstalledUnsynced)?;
    Ok(segment)
}

/// Why the tail's records must go because the segment before it, whose seal never finished,
/// lost records at its end. A rotation appends the write that did not fit as the tail's first
/// record, so that record's seq must follow the last one in the segment before; and a rotation
/// away from a segment without records seals it before the tail exists, so an unsealed segment
/// without records lost all of them.
fn tail_gap(tail: &Segment, unsealed: Option<(Option<u64>, PathBuf)>) -> Option<String> {
    let (last_seq, path) = unsealed?;
    let bytes = tail.scan_bytes();
    let first = format::decode_record(&bytes[SEGMENT_HEADER_BYTES..], 0, true).ok()?;
    match last_seq {
        Some(last_seq) if first.seq == last_seq + 1 => None,
        Some(last_seq) => Some(format!(
            "it starts at seq {}, but {} (whose seal never finished) ends at seq {last_seq}: \
             the records between were lost",
            first.seq,
            path.display()
        )),
        None => Some(format!(
            "it starts at seq {}, but no record of {} (whose seal never finished) survived",
            first.seq,
            path.display()
        )),
    }
}

/// The part a segment plays at recovery, which decides how damage in it is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Sealed: must decode to its last byte; may load from its hint file.
    Sealed,
    /// The log segment before the tail, still at its preallocated length: its seal never
    /// finished, so it may end in a torn write, which recovery cuts off (and then the tail's
    /// records go too, so the log stays a prefix).
    Sealing,
    /// The newest log segment: may end in a torn write; becomes the active segment.
    Tail,
}

/// What loading the sealing segment and the tail found out about the log's end.
#[derive(Default)]
struct TailCheck {
    /// Why the tail's records must be discarded (records before them were lost).
    discard_tail: Option<String>,
    /// The segment before the tail, if its seal never finished, and its last seq: the tail
    /// must then continue right after it (`tail_gap`).
    unsealed_before_tail: Option<(Option<u64>, PathBuf)>,
}

pub(crate) fn recover(config: &Config, backend: &Backend, dir: Option<&Path>) -> Result<Recovered> {
    let started = Instant::now();
    let mut report = RecoveryReport::default();
    let mut loader = Loader::new(config.clock.now_ms(), config.replicated.unwrap_or(u64::MAX));
    let Some(dir) = dir else {
        return fresh_memory(loader, config, backend, report);
    };
    if let Some(manifest) = Manifest::read(backend, dir)? {
        (config.logger)(
            LogLevel::Warn,
            &format!(
                "finishing an interrupted compaction: installing segments {:?}, removing {:?}",
                manifest.outputs, manifest.inputs
            ),
        );
        manifest.finish(backend, dir)?;
        report.finished_compaction = true;
    }
    if let Some(cuts) = Cuts::read(backend, dir)? {
        (config.logger)(
            LogLevel::Warn,
            &format!(
                "finishing a truncation of the log: cutting segments at {:?}",
                cuts.cuts
            ),
        );
        cuts.finish(backend, dir, SEGMENT_HEADER_BYTES as u64)?;
    }
    let segment_ids = list_directory(backend, dir)?;
    let segments = open_segments(&mut loader, backend, dir, &segment_ids)?;
    let roles = roles(&segments);
    reserve_index(&loader, backend, dir, &segments, &roles);
    let mut check = TailCheck::default();
    let mut active = None;
    for (segment, role) in segments.into_iter().zip(roles) {
        if let Some(writer) = load_segment(
            &mut loader,
            config,
            backend,
            dir,
            segment,
            role,
            &mut check,
            &mut report,
        )? {
            active = Some(writer);
        }
    }
    loader.purge_tombstones();
    report.records_scanned = loader.records;

    let mut next_segment_id = segment_ids.last().map_or(1, |id| id + 1);
    let active = match active {
        Some(writer) => writer,
        None => {
            let slot = loader.table.reserve()?;
            let segment = Arc::new(
                create_log_segment(
                    backend,
                    Some(dir),
                    next_segment_id,
                    slot,
                    // As at rotation: an unsealed segment is known by its aligned length.
                    config
                        .segment_bytes
                        .next_multiple_of(SEGMENT_CAPACITY_ALIGN_BYTES),
                )
                .map_err(CreateError::into_error)?,
            );
            next_segment_id += 1;
            loader.table.install(segment.clone());
            SegmentWriter::new(segment).expect("fresh segment")
        }
    };
    report.segments = loader.table.all().count();
    report.keys = loader.key_counts.iter().sum();
    report.last_seq = loader.last_seq;
    report.duration = started.elapsed();
    Ok(Recovered {
        last_term: loader.last_term(),
        committed_seq: loader.last_seq.min(loader.commit_limit),
        last_seq: loader.last_seq,
        index: loader.index,
        segments: loader.table,
        ranges: loader.ranges,
        active,
        next_segment_id,
        key_counts: loader.key_counts,
        report,
    })
}

/// Memory mode: nothing to recover, one fresh segment.
fn fresh_memory(
    mut loader: Loader,
    config: &Config,
    backend: &Backend,
    report: RecoveryReport,
) -> Result<Recovered> {
    let slot = loader.table.reserve()?;
    let segment = Arc::new(
        create_log_segment(backend, None, 1, slot, config.segment_bytes)
            .map_err(CreateError::into_error)?,
    );
    loader.table.install(segment.clone());
    Ok(Recovered {
        index: loader.index,
        segments: loader.table,
        ranges: loader.ranges,
        active: SegmentWriter::new(segment).expect("fresh segment"),
        last_seq: 0,
        last_term: 0,
        committed_seq: 0,
        next_segment_id: 2,
        key_counts: [0; 8],
        report,
    })
}

/// The segment ids in the directory, sorted. Deletes leftover temporary files (outputs of a
/// compaction that never committed, segments never installed) and refuses a hint file whose
/// segment is missing.
fn list_directory(backend: &Backend, dir: &Path) -> Result<Vec<u64>> {
    let mut segment_ids = Vec::new();
    let mut hint_ids = Vec::new();
    let names = backend
        .list_dir(dir)
        .map_err(|e| Error::io(dir, "list data directory", e))?;
    for name in names {
        let Some(name) = name.to_str() else { continue };
        match dir::classify(name) {
            FileKind::Segment(id) => segment_ids.push(id),
            FileKind::Temporary => {
                let path = dir.join(name);
                backend
                    .remove_file(&path)
                    .map_err(|e| Error::io(&path, "remove temporary file", e))?;
            }
            FileKind::Hint(id) => hint_ids.push(id),
            FileKind::Other => {}
        }
    }
    segment_ids.sort_unstable();
    // A hint file is deleted only after its segment, and a compaction that deletes both leaves
    // its manifest until both are gone (acted on above). A hint without its segment therefore
    // means the segment file was lost: its records, and the older values they replaced or
    // deleted, cannot be told apart from live data any more. Refuse to guess.
    if let Some(&id) = hint_ids
        .iter()
        .find(|id| segment_ids.binary_search(id).is_err())
    {
        return Err(Error::corrupt(
            dir::segment_path(dir, id),
            0,
            format!(
                "segment file is missing but its hint file {} remains: its records are lost; \
                 restore the segment, or delete the hint file to accept the loss",
                dir::hint_path(dir, id).display()
            ),
        ));
    }
    Ok(segment_ids)
}

/// Maps every segment read-only, in id order, each in a reserved slot, checking that its
/// header names the id its file name says. A segment of another format version is refused
/// with the version named.
fn open_segments(
    loader: &mut Loader,
    backend: &Backend,
    dir: &Path,
    ids: &[u64],
) -> Result<Vec<Segment>> {
    let mut segments = Vec::with_capacity(ids.len());
    for &id in ids {
        let path = dir::segment_path(dir, id);
        let slot = loader.table.reserve()?;
        let segment = Segment::open_file(backend, &path, slot, false)?;
        if segment.id != id {
            return Err(Error::corrupt(
                &path,
                16,
                format!("header names segment {}, file name says {id}", segment.id),
            ));
        }
        segments.push(segment);
    }
    Ok(segments)
}

/// The role of each segment: the newest log segment is the tail, and the log segment before it
/// may have been waiting for its seal (flush, cut to its last record, fsync: done off the
/// writer's path) when the process stopped. Only a file still at its preallocated length can be
/// waiting: a sealed one was cut to its last record (and ends on a page boundary only by
/// chance), so damage in it is an error, as in any sealed segment, not a torn write.
fn roles(segments: &[Segment]) -> Vec<Role> {
    let mut log_ids: Vec<u64> = segments
        .iter()
        .filter(|s| s.origin == SegmentOrigin::Log)
        .map(|s| s.id)
        .collect();
    log_ids.sort_unstable();
    let tail_id = log_ids.last().copied();
    let sealing_id = log_ids.iter().rev().nth(1).copied();
    segments
        .iter()
        .map(|segment| {
            if Some(segment.id) == tail_id {
                Role::Tail
            } else if Some(segment.id) == sealing_id
                && segment
                    .capacity()
                    .is_multiple_of(SEGMENT_CAPACITY_ALIGN_BYTES)
            {
                Role::Sealing
            } else {
                Role::Sealed
            }
        })
        .collect()
}

/// Sizes each namespace's index tables once, from the counts in the hint files' footers (only
/// the footers are read here; each file is loaded and checked when its segment is).
fn reserve_index(
    loader: &Loader,
    backend: &Backend,
    dir: &Path,
    segments: &[Segment],
    roles: &[Role],
) {
    let mut per_tag = [0u64; 8];
    for (segment, role) in segments.iter().zip(roles) {
        if *role == Role::Tail {
            continue;
        }
        if let Some(counts) = HintFile::footer_counts(backend, &dir::hint_path(dir, segment.id)) {
            for (total, count) in per_tag.iter_mut().zip(counts) {
                *total = total.saturating_add(count);
            }
        }
    }
    for (tag, keys) in per_tag.iter().enumerate() {
        if *keys > 0 {
            loader.index.reserve(tag as u8, *keys as usize);
        }
    }
}

/// Reads a segment's hint file; a bad one is logged (and reported) and the segment scanned.
fn read_hints(
    config: &Config,
    backend: &Backend,
    dir: &Path,
    segment: &Segment,
    report: &mut RecoveryReport,
) -> Option<HintFile> {
    match HintFile::read(backend, &dir::hint_path(dir, segment.id), segment.id) {
        Ok(hint) => hint,
        Err(reason) => {
            bad_hint(config, dir, segment, &reason, report);
            None
        }
    }
}

fn bad_hint(
    config: &Config,
    dir: &Path,
    segment: &Segment,
    reason: &str,
    report: &mut RecoveryReport,
) {
    let line = format!(
        "{}: {reason}; scanning the segment instead",
        dir::hint_path(dir, segment.id).display()
    );
    (config.logger)(LogLevel::Warn, &line);
    report.bad_hints.push(line);
}

/// Loads one segment in its role; returns the writer of the tail, which becomes the active
/// segment.
#[allow(clippy::too_many_arguments)]
fn load_segment(
    loader: &mut Loader,
    config: &Config,
    backend: &Backend,
    dir: &Path,
    segment: Segment,
    role: Role,
    check: &mut TailCheck,
    report: &mut RecoveryReport,
) -> Result<Option<SegmentWriter>> {
    let hint = match role {
        Role::Tail => None,
        _ => read_hints(config, backend, dir, &segment, report),
    };
    let segment = match role {
        Role::Tail => {
            let path = dir::segment_path(dir, segment.id);
            Arc::new(Segment::open_file(backend, &path, segment.slot, true)?)
        }
        _ => {
            segment.mark_sealed();
            Arc::new(segment)
        }
    };
    loader.table.install(segment.clone());
    if let Some(hint) = &hint {
        match loader.load_hints(&segment, hint) {
            Ok(()) => {
                // Hint files are only written for segments whose seal finished.
                segment.mark_durably_sealed();
                segment.mark_loaded_from_hints();
                report.segments_from_hints += 1;
                return Ok(None);
            }
            Err(reason) => bad_hint(config, dir, &segment, &reason, report),
        }
    }
    report.segments_scanned += 1;
    match role {
        Role::Sealed => {
            segment.set_published(SEGMENT_HEADER_BYTES);
            loader.scan(&segment, true)?;
            segment.mark_durably_sealed();
            Ok(None)
        }
        Role::Sealing => {
            segment.set_published(SEGMENT_HEADER_BYTES);
            let (end, stop) = loader.scan(&segment, false)?;
            finish_seal(config, backend, &segment, end, stop, check)?;
            Ok(None)
        }
        Role::Tail => take_tail(loader, config, segment, check, report).map(Some),
    }
}

/// Finishes the seal of the segment that was waiting for it: cuts the file to its last whole
/// record. Bytes after a clean end must be zeros; anything else there (or a torn record) means
/// records were lost, and then the tail's records cannot be kept either.
fn finish_seal(
    config: &Config,
    backend: &Backend,
    segment: &Segment,
    end: usize,
    stop: Option<String>,
    check: &mut TailCheck,
) -> Result<()> {
    let path = segment.display_path();
    let file_len = segment.capacity();
    let garbage_after = segment.scan_bytes()[end..].iter().any(|&b| b != 0);
    if let Some(reason) =
        stop.or_else(|| garbage_after.then(|| "non-zero bytes after the last record".to_string()))
    {
        (config.logger)(
            LogLevel::Warn,
            &format!(
            "segment {} was waiting for its seal and is torn at byte {end} ({reason}); cut there",
            path.display()
        ),
        );
        check.discard_tail = Some(format!(
            "the segment before it was torn at byte {end} of {}",
            path.display()
        ));
    } else if file_len > end {
        // Zeros after the last record: the room a rotation left, or records whose pages
        // never reached the disk. Only the tail's first seq can tell them apart.
        let max_seq = segment.max_seq.load(std::sync::atomic::Ordering::Relaxed);
        check.unsealed_before_tail = Some(((max_seq > 0).then_some(max_seq), path.clone()));
    }
    if file_len > end {
        backend
            .open(&path, true)
            .and_then(|file| {
                file.set_len(end as u64)?;
                file.sync_all()
            })
            .map_err(|e| Error::io(&path, "finish sealing segment", e))?;
    }
    segment.mark_durably_sealed();
    Ok(())
}

/// Scans the tail and makes it the active segment: whatever follows its last whole record is
/// zeroed (torn or not: a stale record left past a gap could otherwise line up with a later
/// append and come back). If records before the tail's were lost (`TailCheck`), the tail's
/// records go too, so the log stays a prefix: none of them was acknowledged under `always`
/// (a flush covers the sealing segment before the active one).
fn take_tail(
    loader: &mut Loader,
    config: &Config,
    segment: Arc<Segment>,
    check: &mut TailCheck,
    report: &mut RecoveryReport,
) -> Result<SegmentWriter> {
    let discard = check
        .discard_tail
        .take()
        .or_else(|| tail_gap(&segment, check.unsealed_before_tail.take()));
    if let Some(reason) = discard {
        let mut writer =
            SegmentWriter::new(segment.clone()).expect("recovery holds the only writer");
        let zeroed = writer.zero_tail();
        segment.flush_range(SEGMENT_HEADER_BYTES, segment.capacity())?;
        let path = segment.display_path();
        (config.logger)(
            LogLevel::Warn,
            &format!("discarded {zeroed} bytes of {}: {reason}", path.display()),
        );
        report.torn_tail = Some(TornTail {
            path,
            offset: SEGMENT_HEADER_BYTES as u64,
            reason,
        });
        return Ok(writer);
    }
    segment.set_published(SEGMENT_HEADER_BYTES);
    let (end, stop) = loader.scan(&segment, false)?;
    let mut writer = SegmentWriter::new(segment.clone()).expect("recovery holds the only writer");
    let zeroed = writer.zero_tail();
    if zeroed > 0 {
        segment.flush_range(end, segment.capacity())?;
    }
    if let Some(reason) = stop {
        let path = segment.display_path();
        (config.logger)(
            LogLevel::Warn,
            &format!(
            "truncated torn tail of {} at byte {end} ({reason}); zeroed {zeroed} bytes after it",
            path.display()
        ),
        );
        report.torn_tail = Some(TornTail {
            path,
            offset: end as u64,
            reason,
        });
    }
    Ok(writer)
}
