//! Snapshots of the whole log for a follower that lags beyond what the leader's log still
//! holds: the set of segment files (and their hint files) that holds exactly the state through
//! one seq, hard-linked into a directory of the caller's.
//!
//! Why this set is exact: under the writer lock the active segment is rotated away (if it
//! holds records), so every record with a seq at or below the log's last seq `S` is in a
//! segment that takes no more appends, and every later record goes to the new active segment,
//! which is left out. Compaction is held off (its lock) from before the rotation until every
//! file is linked, so no segment of the set is merged away or deleted meanwhile; afterwards the
//! links keep the files alive whatever a later compaction unlinks. A segment cut by a
//! truncation (its `CUT` entry is applied only at the next open) is listed at its readable
//! length, without its hint file, which may describe the records cut off. Opened as a data
//! directory, the set recovers to the state through `S`: recovery picks each key's highest seq,
//! as for any directory a compaction left.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Engine;
use crate::backend::Backend;
use crate::dir;
use crate::error::{Error, Result};
use crate::format::SEGMENT_HEADER_BYTES;
use crate::segment::Segment;

/// What [`Engine::snapshot_into`] linked: the files, which hold the state through `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFiles {
    /// Every record with this seq or a lower one is in the files, and no later one.
    pub seq: u64,
    /// The term of the entry at `seq` (0 when the log is empty).
    pub term: u64,
    /// File names in the destination (the data directory's names), in name order.
    pub files: Vec<SnapshotFile>,
}

/// One file of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    pub name: String,
    /// The bytes of the file that belong to the snapshot, from its start (a segment cut by a
    /// truncation is longer on disk until the next open applies the cut).
    pub len: u64,
}

impl Engine {
    /// Links the files holding exactly the state through the log's last seq into `dest`
    /// (created if missing; on the data directory's filesystem) and says which they are and
    /// through which seq (see the module doc). The links are the caller's: deleting them is
    /// the caller's business, and nothing the engine does later changes their first `len`
    /// bytes. On a replicated engine records above the commit point are included: a caller
    /// that needs a committed state waits for the commit point to reach `seq`.
    ///
    /// Refused for an engine in memory or on the simulated disk (nothing to link), a poisoned
    /// engine, and after a failed compaction swap (until a restart finishes it).
    pub fn snapshot_into(&self, dest: &Path) -> Result<SnapshotFiles> {
        let inner = &self.inner;
        let dir = match (&inner.backend, &inner.dir) {
            (Backend::Os, Some(dir)) => dir.clone(),
            _ => {
                return Err(Error::Invalid(
                    "a snapshot needs an engine in a directory on the real filesystem".into(),
                ))
            }
        };
        let _no_compaction = inner.compaction_lock.lock().expect("compaction lock");
        if inner.compaction_disabled.load(Ordering::Acquire) {
            return Err(Error::Invalid(
                "no snapshot after a failed compaction swap; restart to finish it".into(),
            ));
        }
        let (seq, term, segments) = {
            let mut writer = inner.lock_writer();
            inner.check_writable()?;
            if writer.active.segment.published() > SEGMENT_HEADER_BYTES {
                inner.rotate(&mut writer, 0)?;
            }
            let active = writer.active.segment.slot;
            let segments: Vec<Arc<Segment>> = inner
                .segments_read()
                .all()
                .filter(|segment| segment.slot != active)
                .cloned()
                .collect();
            (writer.next_seq - 1, writer.last_term, segments)
        };
        std::fs::create_dir_all(dest).map_err(|e| Error::io(dest, "create snapshot dir", e))?;
        let mut files = Vec::new();
        for segment in &segments {
            assert!(
                !segment.is_superseded(),
                "a superseded segment outside a compaction"
            );
            // The rotated segment may still wait for the sealer: its file is cut to its last
            // record and synced here (idempotent).
            inner.seal_segment(segment)?;
            let len = segment.readable_len();
            if len <= SEGMENT_HEADER_BYTES {
                continue; // no records (or all of them cut off)
            }
            let path = dir::segment_path(&dir, segment.id);
            link(&path, dest, &mut files, len as u64)?;
            let hint = dir::hint_path(&dir, segment.id);
            if len == segment.published() && inner.backend.exists(&hint) {
                let hint_len = std::fs::metadata(&hint)
                    .map_err(|e| Error::io(&hint, "read hint file length", e))?
                    .len();
                link(&hint, dest, &mut files, hint_len)?;
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(SnapshotFiles { seq, term, files })
    }
}

/// Hard-links `path` into `dest` under its own name.
fn link(path: &Path, dest: &Path, files: &mut Vec<SnapshotFile>, len: u64) -> Result<()> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .expect("the engine's file names are ASCII")
        .to_string();
    let target = dest.join(&name);
    std::fs::hard_link(path, &target).map_err(|e| Error::io(&target, "link snapshot file", e))?;
    files.push(SnapshotFile { name, len });
    Ok(())
}
