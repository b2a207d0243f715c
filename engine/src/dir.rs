//! The data directory: file names, directory fsync, and the merge manifest that makes a
//! compaction's swap atomic. (The lock file's flock lives with the other syscalls in
//! `backend.rs`.)
//!
//! Layout:
//! - `LOCK`: held with flock(LOCK_EX) while an engine has the directory open.
//! - `{id:020}.seg`: segments; `{id:020}.hint`: hint file of a sealed segment.
//! - `{id:020}.seg.tmp`, `{id:020}.hint.tmp`: compaction output not yet installed.
//! - `MERGE`: a committed compaction whose swap may be unfinished (see `Manifest`).
//! - `CUT`: log suffixes a truncation removed, for recovery to cut off (see `Cuts`).

use std::path::{Path, PathBuf};

use crate::backend::Backend;
use crate::error::{Error, Result};

pub const LOCK_FILE: &str = "LOCK";
pub const MANIFEST_FILE: &str = "MERGE";
const MANIFEST_TMP_FILE: &str = "MERGE.tmp";
const MANIFEST_MAGIC: &str = "FLINMERGE 1";
pub const CUTS_FILE: &str = "CUT";
const CUTS_TMP_FILE: &str = "CUT.tmp";
const CUTS_MAGIC: &str = "FLINCUT 1";

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

pub fn hint_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.hint"))
}

pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// What a file name in the data directory is.
#[derive(Debug, PartialEq, Eq)]
pub enum FileKind {
    Segment(u64),
    Hint(u64),
    Temporary,
    Other,
}

pub fn classify(name: &str) -> FileKind {
    if name.ends_with(".tmp") {
        return FileKind::Temporary;
    }
    let parse = |stem: &str| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit());
    if let Some(stem) = name.strip_suffix(".seg") {
        if parse(stem) {
            return FileKind::Segment(stem.parse().expect("20 digits fit u64"));
        }
    }
    if let Some(stem) = name.strip_suffix(".hint") {
        if parse(stem) {
            return FileKind::Hint(stem.parse().expect("20 digits fit u64"));
        }
    }
    FileKind::Other
}

/// fsyncs a directory so that file creations, renames and removals in it are durable.
pub fn sync_dir(backend: &Backend, dir: &Path) -> Result<()> {
    backend
        .sync_dir(dir)
        .map_err(|e| Error::io(dir, "fsync directory", e))
}

/// A committed compaction: remove `inputs`, install `outputs` (rename their `.tmp` files). Written
/// (to a temporary name, fsynced, renamed) once every output is durable; recovery finishes the
/// swap if the manifest exists and deletes stray `.tmp` files if it does not.
#[derive(Debug, PartialEq, Eq)]
pub struct Manifest {
    pub inputs: Vec<u64>,
    pub outputs: Vec<u64>,
}

impl Manifest {
    fn encode(&self) -> String {
        let mut body = format!("{MANIFEST_MAGIC}\n");
        for id in &self.inputs {
            body.push_str(&format!("remove {id}\n"));
        }
        for id in &self.outputs {
            body.push_str(&format!("install {id}\n"));
        }
        let crc = crc32fast::hash(body.as_bytes());
        body.push_str(&format!("crc {crc}\n"));
        body
    }

    fn decode(text: &str) -> Option<Manifest> {
        let (body, crc_line) = text.trim_end_matches('\n').rsplit_once('\n')?;
        let body = format!("{body}\n");
        let crc: u32 = crc_line.strip_prefix("crc ")?.parse().ok()?;
        if crc32fast::hash(body.as_bytes()) != crc {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != MANIFEST_MAGIC {
            return None;
        }
        let mut manifest = Manifest {
            inputs: Vec::new(),
            outputs: Vec::new(),
        };
        for line in lines {
            let (verb, id) = line.split_once(' ')?;
            let id = id.parse().ok()?;
            match verb {
                "remove" => manifest.inputs.push(id),
                "install" => manifest.outputs.push(id),
                _ => return None,
            }
        }
        Some(manifest)
    }

    /// Makes the manifest durable under its final name.
    pub fn commit(&self, backend: &Backend, dir: &Path) -> Result<()> {
        let tmp = dir.join(MANIFEST_TMP_FILE);
        let path = dir.join(MANIFEST_FILE);
        let mut file = backend
            .create_truncate(&tmp)
            .map_err(|e| Error::io(&tmp, "create manifest", e))?;
        file.write_all(self.encode().as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io(&tmp, "write manifest", e))?;
        backend
            .rename(&tmp, &path)
            .map_err(|e| Error::io(&path, "rename manifest", e))?;
        sync_dir(backend, dir)
    }

    /// Reads a committed manifest. A manifest that fails its checksum was never committed (the
    /// rename is atomic, so this means a damaged disk) and is reported as corruption.
    pub fn read(backend: &Backend, dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE);
        match backend.read(&path) {
            Ok(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(Manifest::decode)
                .map(Some)
                .ok_or_else(|| Error::corrupt(&path, 0, "merge manifest fails its checksum")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, "read manifest", e)),
        }
    }

    /// Finishes the swap: installs outputs, removes inputs and their hints, then the manifest.
    /// Every step is idempotent, so a crash anywhere in here is finished by the next open.
    pub fn finish(&self, backend: &Backend, dir: &Path) -> Result<()> {
        // Inputs go only if every output is there: a manifest whose outputs vanished must not
        // take the only copy of the data with it.
        for &id in &self.outputs {
            let path = segment_path(dir, id);
            if !backend.exists(&path) && !backend.exists(&tmp_path(&path)) {
                return Err(Error::corrupt(
                    dir.join(MANIFEST_FILE),
                    0,
                    format!("merge manifest installs segment {id}, which is missing; inputs kept"),
                ));
            }
        }
        self.install_outputs(backend, dir)?;
        self.remove_inputs(backend, dir)?;
        self.remove(backend, dir)
    }

    /// Renames the outputs' `.tmp` segment and hint files into place.
    pub fn install_outputs(&self, backend: &Backend, dir: &Path) -> Result<()> {
        for &id in &self.outputs {
            for path in [segment_path(dir, id), hint_path(dir, id)] {
                let tmp = tmp_path(&path);
                if backend.exists(&tmp) {
                    backend
                        .rename(&tmp, &path)
                        .map_err(|e| Error::io(&tmp, "install compacted file", e))?;
                }
            }
        }
        sync_dir(backend, dir)
    }

    /// Deletes the inputs' segment and hint files.
    pub fn remove_inputs(&self, backend: &Backend, dir: &Path) -> Result<()> {
        for &id in &self.inputs {
            for path in [segment_path(dir, id), hint_path(dir, id)] {
                match backend.remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&path, "remove compacted input", e)),
                }
            }
        }
        sync_dir(backend, dir)
    }

    /// Deletes the manifest: the compaction is over.
    pub fn remove(&self, backend: &Backend, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        backend
            .remove_file(&path)
            .map_err(|e| Error::io(&path, "remove manifest", e))?;
        sync_dir(backend, dir)
    }
}

/// Log suffixes removed by `Engine::truncate_after`: for each segment, the offset its valid
/// records end at (the header's end: none are valid). The engine cannot cut a segment that
/// readers may have mapped, so it writes this list (fsynced) before appending anything after
/// the truncation, stops reading past the cuts, and recovery makes them real: it cuts each
/// file there (deleting one left without records) and its hint file, then deletes the list.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cuts {
    /// (segment id, offset of the first byte cut off).
    pub cuts: Vec<(u64, u64)>,
}

impl Cuts {
    fn encode(&self) -> String {
        let mut body = format!("{CUTS_MAGIC}\n");
        for (id, offset) in &self.cuts {
            body.push_str(&format!("cut {id} {offset}\n"));
        }
        let crc = crc32fast::hash(body.as_bytes());
        body.push_str(&format!("crc {crc}\n"));
        body
    }

    fn decode(text: &str) -> Option<Cuts> {
        let (body, crc_line) = text.trim_end_matches('\n').rsplit_once('\n')?;
        let body = format!("{body}\n");
        let crc: u32 = crc_line.strip_prefix("crc ")?.parse().ok()?;
        if crc32fast::hash(body.as_bytes()) != crc {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != CUTS_MAGIC {
            return None;
        }
        let mut cuts = Cuts::default();
        for line in lines {
            let rest = line.strip_prefix("cut ")?;
            let (id, offset) = rest.split_once(' ')?;
            cuts.cuts.push((id.parse().ok()?, offset.parse().ok()?));
        }
        Some(cuts)
    }

    /// Makes the list durable under its final name (replacing an earlier one).
    pub fn commit(&self, backend: &Backend, dir: &Path) -> Result<()> {
        let tmp = dir.join(CUTS_TMP_FILE);
        let path = dir.join(CUTS_FILE);
        let mut file = backend
            .create_truncate(&tmp)
            .map_err(|e| Error::io(&tmp, "create cut list", e))?;
        file.write_all(self.encode().as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io(&tmp, "write cut list", e))?;
        backend
            .rename(&tmp, &path)
            .map_err(|e| Error::io(&path, "rename cut list", e))?;
        sync_dir(backend, dir)
    }

    /// Reads the list, if there is one; a damaged one is corruption (it was renamed into place
    /// whole).
    pub fn read(backend: &Backend, dir: &Path) -> Result<Option<Cuts>> {
        let path = dir.join(CUTS_FILE);
        match backend.read(&path) {
            Ok(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(Cuts::decode)
                .map(Some)
                .ok_or_else(|| Error::corrupt(&path, 0, "cut list fails its checksum")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, "read cut list", e)),
        }
    }

    /// Cuts every listed segment (a missing one was compacted away after the cut, its valid
    /// records copied), deletes their hint files, then the list. Idempotent, so a crash in
    /// here is finished by the next open.
    pub fn finish(&self, backend: &Backend, dir: &Path, header_bytes: u64) -> Result<()> {
        for &(id, offset) in &self.cuts {
            let path = segment_path(dir, id);
            if !backend.exists(&path) {
                continue;
            }
            let hint = hint_path(dir, id);
            match backend.remove_file(&hint) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&hint, "remove hint of a cut segment", e)),
            }
            if offset <= header_bytes {
                backend
                    .remove_file(&path)
                    .map_err(|e| Error::io(&path, "remove cut segment", e))?;
            } else {
                backend
                    .open(&path, true)
                    .and_then(|file| {
                        if file.len()? > offset {
                            file.set_len(offset)?;
                        }
                        file.sync_all()
                    })
                    .map_err(|e| Error::io(&path, "cut segment", e))?;
            }
        }
        sync_dir(backend, dir)?;
        let path = dir.join(CUTS_FILE);
        backend
            .remove_file(&path)
            .map_err(|e| Error::io(&path, "remove cut list", e))?;
        sync_dir(backend, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let dir = Path::new("/d");
        let name = |p: PathBuf| p.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(
            classify(&name(segment_path(dir, 42))),
            FileKind::Segment(42)
        );
        assert_eq!(classify(&name(hint_path(dir, 7))), FileKind::Hint(7));
        assert_eq!(
            classify(&name(tmp_path(&segment_path(dir, 7)))),
            FileKind::Temporary
        );
        assert_eq!(classify("LOCK"), FileKind::Other);
        assert_eq!(classify("12.seg"), FileKind::Other);
    }

    #[test]
    fn manifest_round_trip_and_checksum() {
        let manifest = Manifest {
            inputs: vec![1, 2],
            outputs: vec![9],
        };
        let text = manifest.encode();
        assert_eq!(Manifest::decode(&text), Some(manifest));
        assert_eq!(
            Manifest::decode(&text.replace("remove 2", "remove 3")),
            None
        );
    }

    #[test]
    fn finish_keeps_inputs_when_an_output_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment_path(dir.path(), 1), b"input").unwrap();
        let manifest = Manifest {
            inputs: vec![1],
            outputs: vec![9],
        };
        manifest.commit(&Backend::Os, dir.path()).unwrap();
        assert!(
            matches!(Manifest::read(&Backend::Os, dir.path()).unwrap(), Some(m) if m == manifest)
        );
        assert!(manifest.finish(&Backend::Os, dir.path()).is_err());
        assert!(
            segment_path(dir.path(), 1).exists(),
            "input deleted without its output"
        );
    }

    #[test]
    fn cut_list_round_trip_and_checksum() {
        let cuts = Cuts {
            cuts: vec![(4, 120), (5, 32)],
        };
        let text = cuts.encode();
        assert_eq!(Cuts::decode(&text), Some(cuts));
        assert_eq!(Cuts::decode(&text.replace("cut 4 120", "cut 4 121")), None);
    }

    #[test]
    fn second_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Backend::Os.lock_dir(dir.path()).unwrap();
        assert!(matches!(
            Backend::Os.lock_dir(dir.path()),
            Err(Error::Locked { .. })
        ));
    }
}
