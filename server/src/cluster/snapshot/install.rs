//! Installing a staged snapshot: the `INSTALL` marker, the re-execution, and the swap at start.
//!
//! The raft thread, handed `Ready::snapshot` for the point it staged, writes
//! `cluster/snapshot/INSTALL` (the point and a CRC-32; written to a temporary name, synced,
//! renamed, the directory synced) and re-executes the process with the same arguments
//! (`restart`). At every start of a cluster node, before the hard state is read and the engine
//! opens, `finish_install` looks for the marker and, if it is there, finishes the swap; every
//! step can run again after a crash anywhere in it:
//! 1. delete the data directory's engine files (segments, hints, `.tmp` files, `MERGE`,
//!    `CUT`) that the snapshot does not name;
//! 2. rename each staged file into the data directory (one already moved is checked by its
//!    length), then sync the directory;
//! 3. save the hard state with the snapshot's index as its commit (term and vote kept): the
//!    engine then opens at that commit point, and the raft node's log starts after it;
//! 4. delete the staging directory (the marker last).
//!
//! A marker without a whole offer, or an offer naming another point, or a named file missing
//! from both places, stops the start with an error naming it: the data directory is then
//! neither the old state nor the snapshot, and only an operator can say which to keep.

use std::os::unix::process::CommandExt;
use std::path::Path;

use flin_replication::hard_state::HardStateFile;

use super::stage::{files_dir, read_offer, sync_dir, write_synced};

/// The staging directory's name in the cluster directory (`<data>/cluster/snapshot`).
pub const STAGING_DIR: &str = "snapshot";
/// The leader's directory of linked snapshot files (`<data>/cluster/snapshot-out`).
pub const OUTGOING_DIR: &str = "snapshot-out";
const MARKER_FILE: &str = "INSTALL";
const MARKER_TMP_FILE: &str = "INSTALL.tmp";
const MARKER_MAGIC: &[u8; 8] = b"FLININST";
const MARKER_BYTES: usize = 28;

/// Writes the marker for `(index, term)` in the staging directory `staging`, durably.
pub fn write_marker(staging: &Path, index: u64, term: u64) -> Result<(), String> {
    let mut bytes = Vec::with_capacity(MARKER_BYTES);
    bytes.extend_from_slice(MARKER_MAGIC);
    bytes.extend_from_slice(&index.to_le_bytes());
    bytes.extend_from_slice(&term.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
    let tmp = staging.join(MARKER_TMP_FILE);
    write_synced(&tmp, &bytes)?;
    let path = staging.join(MARKER_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| format!("renaming {}: {e}", path.display()))?;
    sync_dir(staging)
}

/// The marker's point, if the marker exists.
fn read_marker(staging: &Path) -> Result<Option<(u64, u64)>, String> {
    let path = staging.join(MARKER_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    if bytes.len() != MARKER_BYTES
        || &bytes[..8] != MARKER_MAGIC
        || crc32fast::hash(&bytes[..24]).to_le_bytes() != bytes[24..]
    {
        return Err(format!(
            "{} is damaged (a marker is renamed into place whole)",
            path.display()
        ));
    }
    let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    Ok(Some((field(8), field(16))))
}

/// Re-executes this process with its arguments, so the marker just written is acted on by
/// `finish_install` and everything is built from the snapshot as at any start. Returns only
/// if the exec failed.
pub fn restart() -> String {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => return format!("cannot find this program to restart it: {error}"),
    };
    let error = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    format!("cannot restart {}: {error}", exe.display())
}

/// At start: finishes an install the marker asks for (the module doc's steps); returns the
/// point installed, or `None` without a marker. Also deletes the leader's leftover outgoing
/// snapshot links (a snapshot is made again when needed).
pub fn finish_install(data: &Path, cluster_dir: &Path) -> Result<Option<(u64, u64)>, String> {
    let outgoing = cluster_dir.join(OUTGOING_DIR);
    if outgoing.exists() {
        std::fs::remove_dir_all(&outgoing)
            .map_err(|e| format!("removing {}: {e}", outgoing.display()))?;
    }
    let staging = cluster_dir.join(STAGING_DIR);
    let Some((index, term)) = read_marker(&staging)? else {
        remove_stale_staging(&staging, cluster_dir)?;
        return Ok(None);
    };
    let offer = read_offer(&staging)?
        .ok_or_else(|| format!("{} has an install marker but no offer", staging.display()))?;
    if (offer.index, offer.term) != (index, term) {
        return Err(format!(
            "the install marker names index {index} term {term}, the staged offer index {} term {}",
            offer.index, offer.term
        ));
    }
    let named: std::collections::BTreeSet<&str> =
        offer.files.iter().map(|file| file.name.as_str()).collect();
    // 1. The engine files the snapshot does not name go.
    let listed = std::fs::read_dir(data).map_err(|e| format!("listing {}: {e}", data.display()))?;
    for entry in listed {
        let entry = entry.map_err(|e| format!("listing {}: {e}", data.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_engine_log_file(name) && !named.contains(name) {
            std::fs::remove_file(entry.path())
                .map_err(|e| format!("removing {}: {e}", entry.path().display()))?;
        }
    }
    // 2. The staged files move in.
    let files = files_dir(&staging);
    for file in &offer.files {
        let staged = files.join(&file.name);
        let target = data.join(&file.name);
        if staged.exists() {
            std::fs::rename(&staged, &target)
                .map_err(|e| format!("moving {} in: {e}", staged.display()))?;
        } else {
            let len = std::fs::metadata(&target).map(|m| m.len()).map_err(|_| {
                format!(
                    "snapshot file {} is neither staged nor in {}",
                    file.name,
                    data.display()
                )
            })?;
            if len != file.len {
                return Err(format!(
                    "snapshot file {} in {} has {len} bytes, the offer {}",
                    file.name,
                    data.display(),
                    file.len
                ));
            }
        }
    }
    sync_dir(data)?;
    // 3. The commit point becomes the snapshot's index.
    let (mut hard_state_file, state) = HardStateFile::open(cluster_dir)
        .map_err(|e| format!("cannot read the raft hard state: {e}"))?;
    hard_state_file
        .save(&flin_replication::HardState {
            commit: index,
            ..state
        })
        .map_err(|e| format!("cannot save the raft hard state: {e}"))?;
    // 4. The staging directory goes, its marker last.
    let _ = std::fs::remove_dir_all(&files);
    let offer_path = staging.join("OFFER");
    let _ = std::fs::remove_file(offer_path);
    std::fs::remove_file(staging.join(MARKER_FILE))
        .map_err(|e| format!("removing the install marker: {e}"))?;
    let _ = std::fs::remove_dir(&staging);
    sync_dir(cluster_dir)?;
    Ok(Some((index, term)))
}

/// Without a marker: a staged snapshot (whole or not) that the node's commit point has
/// reached since is of no use any more (the node caught up from the log, from another leader);
/// it is deleted. One still ahead is kept, for a transfer to resume.
fn remove_stale_staging(staging: &Path, cluster_dir: &Path) -> Result<(), String> {
    let Ok(Some(offer)) = read_offer(staging) else {
        return Ok(());
    };
    let (_, state) = HardStateFile::open(cluster_dir)
        .map_err(|e| format!("cannot read the raft hard state: {e}"))?;
    if offer.index <= state.commit {
        std::fs::remove_dir_all(staging)
            .map_err(|e| format!("removing the stale {}: {e}", staging.display()))?;
    }
    Ok(())
}

/// The engine's files in a data directory: segments, hints, their `.tmp` forms, the merge
/// manifest and the cut list (docs/storage-format.md). `LOCK` and `cluster/` are not.
fn is_engine_log_file(name: &str) -> bool {
    let base = name.strip_suffix(".tmp").unwrap_or(name);
    super::is_engine_file_name(base) || matches!(base, "MERGE" | "CUT")
}

#[cfg(test)]
mod tests {
    use super::super::stage::Staging;
    use super::super::{Offer, OfferedFile};
    use super::*;
    use flin_engine::{Config, Engine, Namespace};

    fn quiet(dir: &Path) -> Config {
        Config::directory(dir)
            .segment_bytes(4096)
            .background_compaction(false)
            .logger(std::sync::Arc::new(|_, _: &str| {}))
    }

    /// A leader's engine with `keys` keys, its snapshot linked into `links`; the offer.
    fn leader_snapshot(dir: &Path, keys: u32) -> (Offer, std::path::PathBuf) {
        let data = dir.join("leader");
        let engine = Engine::open(quiet(&data)).unwrap();
        super::super::put_keys(&engine, keys, "leader", 50);
        let links = dir.join("links");
        let snapshot = engine.snapshot_into(&links).unwrap();
        let files = snapshot
            .files
            .iter()
            .map(|file| OfferedFile {
                name: file.name.clone(),
                len: file.len,
                crc: super::super::file_crc(&links.join(&file.name), file.len).unwrap(),
            })
            .collect();
        let offer = Offer {
            index: snapshot.seq,
            term: snapshot.term,
            files,
        };
        (offer, links)
    }

    /// A follower's data directory with an engine of its own (other keys) and a hard state.
    fn follower(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let data = dir.join("follower");
        let engine = Engine::open(quiet(&data)).unwrap();
        for key in 0..300u32 {
            engine
                .put(Namespace::Kv, format!("old{key}").as_bytes(), b"old", 0)
                .unwrap();
        }
        drop(engine);
        let cluster = data.join("cluster");
        std::fs::create_dir_all(&cluster).unwrap();
        let (mut file, _) = HardStateFile::open(&cluster).unwrap();
        file.save(&flin_replication::HardState {
            term: 7,
            vote: Some(2),
            commit: 12,
        })
        .unwrap();
        (data, cluster)
    }

    /// Stages `offer`'s files from `links` as a completed transfer leaves them.
    fn stage(offer: &Offer, links: &Path, cluster: &Path) -> Staging {
        let staging = Staging::new(cluster);
        let files = files_dir(staging.dir());
        std::fs::create_dir_all(&files).unwrap();
        let mut body = Vec::new();
        offer.encode(&mut body);
        body.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        std::fs::write(staging.dir().join("OFFER"), body).unwrap();
        for file in &offer.files {
            let bytes = std::fs::read(links.join(&file.name)).unwrap();
            std::fs::write(files.join(&file.name), &bytes[..file.len as usize]).unwrap();
        }
        staging
    }

    fn kv_keys(engine: &Engine) -> Vec<String> {
        let mut keys = Vec::new();
        engine
            .for_each(Namespace::Kv, b"", |r| {
                keys.push(String::from_utf8_lossy(r.key).into_owned())
            })
            .unwrap();
        keys.sort();
        keys
    }

    /// A crash after the old files went and some staged ones moved in: the next start finishes
    /// the swap, sets the commit point, keeps term and vote, and the engine opens the
    /// snapshot's state exactly; a second run finds nothing to do.
    #[test]
    fn a_swap_cut_short_is_finished_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (offer, links) = leader_snapshot(dir.path(), 400);
        let (data, cluster) = follower(dir.path());
        let staging = stage(&offer, &links, &cluster);
        staging.verify(&offer).unwrap();
        write_marker(staging.dir(), offer.index, offer.term).unwrap();
        // The crash: half the staged files already moved in, a stray compaction output.
        for file in offer.files.iter().take(offer.files.len() / 2) {
            std::fs::rename(
                files_dir(staging.dir()).join(&file.name),
                data.join(&file.name),
            )
            .unwrap();
        }
        std::fs::write(data.join("00000000000000009999.seg.tmp"), b"stray").unwrap();

        assert_eq!(
            finish_install(&data, &cluster).unwrap(),
            Some((offer.index, offer.term))
        );
        assert!(!staging.dir().exists(), "the staging directory is gone");
        let (_, state) = HardStateFile::open(&cluster).unwrap();
        assert_eq!(
            (state.term, state.vote, state.commit),
            (7, Some(2), offer.index)
        );
        let engine = Engine::open(quiet(&data).replicated(state.commit)).unwrap();
        assert_eq!(engine.last_entry().0, offer.index);
        let keys = kv_keys(&engine);
        assert_eq!(keys.len(), 400);
        assert!(keys.iter().all(|key| key.starts_with('k')), "{keys:?}");
        drop(engine);
        assert_eq!(finish_install(&data, &cluster).unwrap(), None);
    }

    /// A staged file whose bytes differ from the offer's CRC is refused (and deleted, to be
    /// sent again); without a marker the start changes nothing, and the old data opens.
    #[test]
    fn a_staged_file_with_a_bad_crc_is_refused_and_the_old_data_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (offer, links) = leader_snapshot(dir.path(), 400);
        let (data, cluster) = follower(dir.path());
        let staging = stage(&offer, &links, &cluster);
        let victim = files_dir(staging.dir()).join(&offer.files[0].name);
        let mut bytes = std::fs::read(&victim).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&victim, bytes).unwrap();

        let error = staging.verify(&offer).unwrap_err();
        assert!(error.contains("CRC"), "{error}");
        assert!(
            !victim.exists(),
            "the bad file is deleted, to be sent again"
        );
        assert_eq!(staging.verified(), None);
        assert_eq!(finish_install(&data, &cluster).unwrap(), None);
        assert!(staging.dir().exists(), "kept for the transfer to resume");
        let engine = Engine::open(quiet(&data)).unwrap();
        let keys = kv_keys(&engine);
        assert_eq!(keys.len(), 300);
        assert!(keys.iter().all(|key| key.starts_with("old")));

        // Once the node's commit point passed it (caught up otherwise), it goes at start.
        let (mut file, state) = HardStateFile::open(&cluster).unwrap();
        file.save(&flin_replication::HardState {
            commit: offer.index,
            ..state
        })
        .unwrap();
        assert_eq!(finish_install(&data, &cluster).unwrap(), None);
        assert!(
            !staging.dir().exists(),
            "a stale staged snapshot is deleted"
        );
    }

    #[test]
    fn a_damaged_marker_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let (data, cluster) = follower(dir.path());
        let staging = cluster.join(STAGING_DIR);
        std::fs::create_dir_all(&staging).unwrap();
        write_marker(&staging, 5, 1).unwrap();
        let marker = staging.join(MARKER_FILE);
        let mut bytes = std::fs::read(&marker).unwrap();
        bytes[9] ^= 1;
        std::fs::write(&marker, bytes).unwrap();
        assert!(finish_install(&data, &cluster)
            .unwrap_err()
            .contains("damaged"));
    }
}
