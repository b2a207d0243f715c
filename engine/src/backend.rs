//! The storage backend seam: every file, directory and mapping operation the engine performs
//! goes through here, so a test can swap the real filesystem for a simulated disk
//! ([`crate::sim::SimDisk`]) that records writes and flushes and can lose power.
//!
//! The seam is at file level only (create, open, preallocate, map, flush a range, fsync,
//! truncate, rename, remove, directory fsync, read, list). Appends and reads of records go
//! through the raw pointer of a [`Mapping`], exactly as before the seam existed: the write and
//! read paths see no backend at all. `Backend` is an enum rather than a trait object because
//! there are exactly two implementations, both in this crate: a `match` is static dispatch
//! (no vtable call and nothing boxed per file), and the production arm of every operation is
//! the same system call the engine made before (see docs/ARCHITECTURE.md, decision 26).
//!
//! This module holds part of the engine's `unsafe`: the two syscalls std does not wrap
//! (`posix_fallocate`, `flock`) and the `Send`/`Sync` promise of a mapping's raw pointer.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::sim::{SimDisk, SimFile, SimMapping};

/// Where the engine's files live: the operating system's filesystem, or a simulated disk.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    /// The real filesystem (production).
    Os,
    /// A simulated disk that can lose power at a chosen operation (tests).
    Sim(SimDisk),
}

/// An open file.
pub(crate) enum FileHandle {
    Os(File),
    Sim(SimFile),
}

/// A file mapped into memory (or an anonymous mapping in memory mode). The engine reads and
/// writes through `ptr` directly; the owner only keeps the memory alive and flushes it.
pub(crate) struct Mapping {
    /// Start of the mapped bytes: cached here so the read and write paths pay one field load,
    /// whatever the backend.
    ptr: *mut u8,
    len: usize,
    owner: MappingOwner,
}

enum MappingOwner {
    /// A kernel mapping: of a file (msync flushes it) or anonymous (memory mode).
    Os(MmapRaw),
    /// Memory owned by the simulated disk, standing in for the file's page cache.
    Sim(SimMapping),
}

// SAFETY: `ptr` points into memory that `owner` keeps mapped for as long as the `Mapping`
// lives, and both owners are themselves `Send + Sync` (memmap2's `MmapRaw`; the simulated
// disk's reference-counted buffer). The pointer carries no thread affinity; what may be read
// or written through it, and by whom, is `Segment`'s published/unpublished split (segment.rs).
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// An anonymous read-write mapping of `len` zero bytes (memory mode).
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        let map = MmapRaw::from(MmapOptions::new().len(len).map_anon()?);
        Ok(Mapping::os(map))
    }

    fn os(map: MmapRaw) -> Mapping {
        Mapping {
            ptr: map.as_mut_ptr(),
            len: map.len(),
            owner: MappingOwner::Os(map),
        }
    }

    pub(crate) fn sim(map: SimMapping) -> Mapping {
        Mapping {
            ptr: map.ptr(),
            len: map.len(),
            owner: MappingOwner::Sim(map),
        }
    }

    /// The mapped file was renamed (the simulated disk names it in its trace and faults).
    pub fn renamed(&mut self, path: &Path) {
        if let MappingOwner::Sim(map) = &mut self.owner {
            map.renamed(path);
        }
    }

    #[inline(always)]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    #[inline(always)]
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Faults bytes `[offset, offset + len)` in, writable, without changing them
    /// (`MADV_POPULATE_WRITE`), so a writer that comes later takes no page faults there. Safe
    /// while another thread writes those bytes: the kernel maps pages, it does not store to
    /// them. A no-op on the simulated disk, whose memory is an ordinary buffer.
    pub fn populate_write(&self, offset: usize, len: usize) -> io::Result<()> {
        match &self.owner {
            MappingOwner::Os(map) => map.advise_range(memmap2::Advice::PopulateWrite, offset, len),
            MappingOwner::Sim(_) => Ok(()),
        }
    }

    /// Drops this process's page-table entries for bytes `[offset, offset + len)` of a **file**
    /// mapping (`MADV_DONTNEED`), keeping the data: for a shared file mapping the kernel moves
    /// each entry's dirty bit to its page-cache page, and a later access maps the page again
    /// from the cache. The seal calls it before flushing a full segment: writeback then finds
    /// no writable entry to write-protect, where it would otherwise clear them one page at a
    /// time, each with a TLB-shootdown interrupt to the writer's core (a fifth of the CPU of a
    /// `put/directory` run). Never call it on an anonymous mapping, whose data it would drop
    /// (the caller checks that the segment has a file). A no-op on the simulated disk.
    pub fn drop_file_page_entries(&self, offset: usize, len: usize) -> io::Result<()> {
        match &self.owner {
            // SAFETY: the mapping stays mapped; for a shared file mapping MADV_DONTNEED keeps
            // the contents (they come back from the page cache, dirty data included), so no
            // reference into it sees different bytes. Anonymous mappings never get here.
            MappingOwner::Os(map) => unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len)
            },
            MappingOwner::Sim(_) => Ok(()),
        }
    }

    /// Writes bytes `[offset, offset + len)` back to the file and waits for the disk (msync
    /// with `MS_SYNC`, whose start memmap2 rounds down to a page). The caller must not be
    /// writing these bytes concurrently (they are published, or the caller is their writer).
    pub fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        match &self.owner {
            MappingOwner::Os(map) => map.flush_range(offset, len),
            MappingOwner::Sim(map) => map.flush_range(offset, len),
        }
    }
}

impl Backend {
    pub fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        match self {
            Backend::Os => std::fs::create_dir_all(dir),
            Backend::Sim(disk) => disk.create_dir_all(dir),
        }
    }

    /// Takes the data directory's lock (`LOCK`, flock) for as long as the returned guard lives.
    pub fn lock_dir(&self, dir: &Path) -> Result<DirLock> {
        match self {
            Backend::Os => DirLock::acquire_os(dir),
            Backend::Sim(disk) => disk.lock_dir(dir).map(DirLock::Sim),
        }
    }

    /// Creates a file that must not exist yet, open for reading and writing.
    pub fn create_new(&self, path: &Path) -> io::Result<FileHandle> {
        match self {
            Backend::Os => OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
                .map(FileHandle::Os),
            Backend::Sim(disk) => disk.create(path, true).map(FileHandle::Sim),
        }
    }

    /// Creates a file, or truncates an existing one, open for writing.
    pub fn create_truncate(&self, path: &Path) -> io::Result<FileHandle> {
        match self {
            Backend::Os => File::create(path).map(FileHandle::Os),
            Backend::Sim(disk) => disk.create(path, false).map(FileHandle::Sim),
        }
    }

    /// Opens an existing file for reading, and for writing too if `writable`.
    pub fn open(&self, path: &Path, writable: bool) -> io::Result<FileHandle> {
        match self {
            Backend::Os => OpenOptions::new()
                .read(true)
                .write(writable)
                .open(path)
                .map(FileHandle::Os),
            Backend::Sim(disk) => disk.open(path, writable).map(FileHandle::Sim),
        }
    }

    /// The whole file.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self {
            Backend::Os => std::fs::read(path),
            Backend::Sim(disk) => disk.read_file(path),
        }
    }

    /// The file's length and its last `len` bytes (fewer if the file is shorter).
    pub fn read_tail(&self, path: &Path, len: usize) -> io::Result<(u64, Vec<u8>)> {
        match self {
            Backend::Os => {
                let mut file = File::open(path)?;
                let file_len = file.metadata()?.len();
                let take = (len as u64).min(file_len);
                file.seek(SeekFrom::Start(file_len - take))?;
                let mut tail = vec![0; take as usize];
                file.read_exact(&mut tail)?;
                Ok((file_len, tail))
            }
            Backend::Sim(disk) => {
                let bytes = disk.read_file(path)?;
                let take = len.min(bytes.len());
                Ok((bytes.len() as u64, bytes[bytes.len() - take..].to_vec()))
            }
        }
    }

    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            Backend::Os => std::fs::rename(from, to),
            Backend::Sim(disk) => disk.rename(from, to),
        }
    }

    pub fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self {
            Backend::Os => std::fs::remove_file(path),
            Backend::Sim(disk) => disk.remove(path),
        }
    }

    pub fn exists(&self, path: &Path) -> bool {
        match self {
            Backend::Os => path.exists(),
            Backend::Sim(disk) => disk.exists(path),
        }
    }

    /// The names in a directory (files only matter to the engine; order unspecified).
    pub fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        match self {
            Backend::Os => std::fs::read_dir(dir)?
                .map(|entry| entry.map(|e| e.file_name()))
                .collect(),
            Backend::Sim(disk) => disk.list_dir(dir),
        }
    }

    /// fsyncs a directory, so that creations, renames and removals in it are durable.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        match self {
            Backend::Os => File::open(dir).and_then(|d| d.sync_all()),
            Backend::Sim(disk) => disk.sync_dir(dir),
        }
    }
}

impl FileHandle {
    pub fn len(&self) -> io::Result<u64> {
        match self {
            FileHandle::Os(file) => Ok(file.metadata()?.len()),
            FileHandle::Sim(file) => file.len(),
        }
    }

    /// Reserves `bytes` of disk for the file (its length becomes `bytes`), so a full disk
    /// shows up here rather than as SIGBUS on a page fault. Filesystems without fallocate get
    /// a sparse file instead (see docs/storage-format.md, 6.2).
    pub fn preallocate(&self, bytes: u64) -> io::Result<()> {
        match self {
            FileHandle::Os(file) => {
                // SAFETY: posix_fallocate only reads its integer arguments and the descriptor,
                // which is open for the whole call because `file` is borrowed.
                let rc =
                    unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, bytes as libc::off_t) };
                match rc {
                    0 => Ok(()),
                    libc::EOPNOTSUPP | libc::EINVAL => file.set_len(bytes),
                    errno => Err(io::Error::from_raw_os_error(errno)),
                }
            }
            FileHandle::Sim(file) => file.set_len(bytes, true),
        }
    }

    /// Cuts (or extends) the file to `bytes`.
    pub fn set_len(&self, bytes: u64) -> io::Result<()> {
        match self {
            FileHandle::Os(file) => file.set_len(bytes),
            FileHandle::Sim(file) => file.set_len(bytes, false),
        }
    }

    /// fsync: the file's data and metadata (its length) are durable when this returns.
    pub fn sync_all(&self) -> io::Result<()> {
        match self {
            FileHandle::Os(file) => file.sync_all(),
            FileHandle::Sim(file) => file.sync_all(),
        }
    }

    /// Appends `bytes` at the write position (files written whole: hints, the manifest).
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            FileHandle::Os(file) => file.write_all(bytes),
            FileHandle::Sim(file) => file.write_all(bytes),
        }
    }

    /// Maps the first `len` bytes, shared: read-write if `writable` (the file must have been
    /// opened so), read-only otherwise.
    pub fn map(&self, len: usize, writable: bool) -> io::Result<Mapping> {
        match self {
            FileHandle::Os(file) => {
                let mut options = MmapOptions::new();
                options.len(len);
                let map = if writable {
                    options.map_raw(file)?
                } else {
                    options.map_raw_read_only(file)?
                };
                Ok(Mapping::os(map))
            }
            FileHandle::Sim(file) => file.map(len, writable).map(Mapping::sim),
        }
    }
}

/// The held lock on a data directory; released when dropped (the kernel drops flock locks when
/// the descriptor closes, also when the process dies).
pub(crate) enum DirLock {
    Os(#[allow(dead_code)] File),
    Sim(#[allow(dead_code)] crate::sim::SimLock),
}

impl DirLock {
    fn acquire_os(dir: &Path) -> Result<DirLock> {
        let path = dir.join(crate::dir::LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, "open lock file", e))?;
        // SAFETY: flock only reads the descriptor, which `file` keeps open during the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::Locked { path });
            }
            return Err(Error::io(&path, "lock", err));
        }
        Ok(DirLock::Os(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropping a file mapping's page-table entries keeps every byte written through it, dirty
    /// or not: reads through the mapping see them, and a flush puts them in the file.
    #[test]
    fn dropping_file_page_entries_keeps_the_written_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let file = Backend::Os.create_new(&path).unwrap();
        const LEN: usize = 64 * 1024;
        file.set_len(LEN as u64).unwrap();
        let map = file.map(LEN, true).unwrap();
        let pattern: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 4096) as u8).collect();
        // SAFETY: this test is the mapping's only user.
        unsafe { std::ptr::copy_nonoverlapping(pattern.as_ptr(), map.as_mut_ptr(), LEN) };
        map.drop_file_page_entries(0, LEN).unwrap();
        // SAFETY: as above; the mapping is LEN bytes long.
        let seen = unsafe { std::slice::from_raw_parts(map.as_ptr(), LEN) };
        assert!(
            seen == pattern.as_slice(),
            "bytes changed after MADV_DONTNEED"
        );
        map.flush_range(0, LEN).unwrap();
        assert!(
            std::fs::read(&path).unwrap() == pattern,
            "file differs after the flush"
        );
    }
}
