//! A simulated disk for power-loss and fault-injection tests: the engine's other
//! [storage backend](crate::backend).
//!
//! It keeps two states of every file: what the running system sees (the page cache: an
//! anonymous buffer that the engine maps and writes through exactly as it would a file
//! mapping) and what is on the platter (bytes copied there only by a flush or an fsync). It
//! counts operations, can lose power just before a chosen one, and then builds the image a
//! machine would boot from: [`SimDisk::after_power_loss`].
//!
//! # The crash model
//! - **File data.** Bytes a successful msync (`flush_range`) or fsync covered are on the
//!   platter. Every other page that differs from the platter is, chosen by a seeded RNG,
//!   written (the new bytes), not written (the old bytes, or zeros past the old end), or torn
//!   (each 512-byte sector new or old). Nothing else is assumed: pages reach the disk in any
//!   order, and no write is atomic.
//! - **File length.** A new length (preallocation, truncation, appends) is durable after an
//!   fsync of the file; an msync also makes a larger length durable (Linux's msync is an
//!   `fdatasync` of the range, which commits the size needed to read the data back). Until
//!   then a power loss keeps the old length or the new one.
//! - **Names.** Creating, renaming and removing a file change the directory; those changes
//!   are durable only after an fsync of the directory. A power loss keeps the last synced
//!   directory plus a *prefix* of the changes made since, in order: ext4 (`data=ordered`) and
//!   xfs journal metadata in order, so what survives them is always such a prefix (and often
//!   more: an fsync of a file there also commits earlier directory changes, which this model
//!   never assumes). An fsync of a file does not make its name durable here.
//! - **A failed sync** (an injected EIO) drops the dirty pages it covered, as Linux may after a
//!   writeback error ("fsyncgate"): they stay in the page cache, readable, but a later sync
//!   reports success without writing them, and a power loss loses them.
//! - **After the power is gone** every operation fails with an error (`simulated power
//!   loss`), so nothing after the crash point reaches the platter. Stores into a mapping cannot
//!   be stopped and may land in the page cache; they count as unflushed pages, which a power
//!   loss may or may not keep: the image is then the one a disk that failed every request
//!   after the crash point, then lost power, would leave.
//! - Directories themselves are created durably at once (the engine creates its data directory
//!   once, at open).
//!
//! This module holds part of the engine's `unsafe`: reading and writing the buffer that stands
//! in for a file's page cache, while the engine may hold mappings of it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};

/// Page size of the simulated page cache: the unit in which unflushed data is kept or lost.
pub const PAGE_BYTES: usize = 4096;
/// Sector size: the unit in which a page may be torn.
pub const SECTOR_BYTES: usize = 512;
/// Lines of the operation trace kept for failure messages.
const TRACE_LINES_MAX: usize = 64;

/// Which kind of sync an injected failure hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// msync of a range of a mapping (log flushes, the header of a new segment, sealing).
    Flush,
    /// fsync of a file.
    File,
    /// fsync of a directory.
    Directory,
}

/// A simulated disk. Clones share the disk. See the module documentation for what survives a
/// power loss.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
    /// Names of threads whose operations wait until `resume_threads` (a test holding the
    /// sealer back, say).
    paused: Arc<(Mutex<BTreeSet<String>>, Condvar)>,
    /// How many threads wait in `wait_if_paused` now.
    held: Arc<AtomicUsize>,
}

/// A planned failure of one sync.
struct SyncFailure {
    kind: Option<SyncKind>,
    path_contains: String,
}

/// A change to the directory tree, durable only once its directory is synced.
#[derive(Clone, Debug)]
enum NameChange {
    Link { name: PathBuf, inode: u64 },
    Unlink { name: PathBuf },
    Rename { from: PathBuf, to: PathBuf },
}

impl NameChange {
    fn directory(&self) -> Option<&Path> {
        match self {
            NameChange::Link { name, .. } | NameChange::Unlink { name } => name.parent(),
            NameChange::Rename { to, .. } => to.parent(),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            NameChange::Link { name, inode } => {
                names.insert(name.clone(), *inode);
            }
            NameChange::Unlink { name } => {
                names.remove(name);
            }
            NameChange::Rename { from, to } => {
                if let Some(inode) = names.remove(from) {
                    names.insert(to.clone(), inode);
                }
            }
        }
    }
}

/// A file's two states.
struct Inode {
    /// The page cache: what the running system reads, and what mappings point into.
    cache: Arc<Memory>,
    /// Current length.
    len: usize,
    /// What is on the platter (its length is the durable file length).
    platter: Vec<u8>,
    /// Pages whose write-back failed: dropped, never written later (fsyncgate).
    lost_pages: BTreeSet<usize>,
}

struct State {
    dirs: BTreeSet<PathBuf>,
    /// The directory tree the running system sees.
    names: BTreeMap<PathBuf, u64>,
    /// The tree as of the last directory syncs.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Changes since, in order.
    pending: Vec<NameChange>,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    locks: BTreeSet<PathBuf>,
    /// Operations that change the disk or make it durable, so far.
    operations: u64,
    /// Syncs (msync, fsync, directory fsync) so far; each also counts as an operation.
    syncs: u64,
    /// Syncs attempted per path (including those that failed), while the power was on.
    sync_attempts: HashMap<PathBuf, u64>,
    crash_after_operations: Option<u64>,
    crash_after_syncs: Option<u64>,
    crashed: bool,
    full: bool,
    /// The disk fills once this many operations have happened.
    full_after_operations: Option<u64>,
    sync_failures: Vec<SyncFailure>,
    trace: VecDeque<String>,
}

/// A buffer standing in for one file's page cache. Mappings of the file point into it.
struct Memory {
    map: MmapRaw,
    /// Live writable mappings: while any exists, the engine may be storing into the buffer, so
    /// nothing here may read it except where the engine promises not to write (flushes).
    writable_maps: AtomicUsize,
}

impl Memory {
    fn new(capacity: usize) -> io::Result<Arc<Memory>> {
        let capacity = capacity.max(PAGE_BYTES).next_multiple_of(PAGE_BYTES);
        let map = MmapRaw::from(MmapOptions::new().len(capacity).map_anon()?);
        Ok(Arc::new(Memory {
            map,
            writable_maps: AtomicUsize::new(0),
        }))
    }

    fn capacity(&self) -> usize {
        self.map.len()
    }

    /// Copies `[from, from + len)` out of the buffer.
    ///
    /// # Safety
    /// No thread may be storing into these bytes during the call: they are published, or the
    /// caller is the only writer, or no writable mapping of the buffer exists.
    unsafe fn copy_out(&self, from: usize, len: usize) -> Vec<u8> {
        assert!(
            from + len <= self.capacity(),
            "read past the simulated file"
        );
        // SAFETY: in bounds (checked above); the caller promises no concurrent store.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(from), len) }.to_vec()
    }

    /// Writes `bytes` at `at` through the buffer.
    ///
    /// # Safety
    /// No thread may be reading or storing these bytes during the call: they lie past every
    /// length the engine reads (the file's end), or no mapping of the buffer exists.
    unsafe fn copy_in(&self, at: usize, bytes: &[u8]) {
        assert!(
            at + bytes.len() <= self.capacity(),
            "write past the simulated file"
        );
        // SAFETY: in bounds (checked above); the caller promises nobody else touches them.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add(at),
                bytes.len(),
            )
        }
    }
}

/// An open simulated file.
pub(crate) struct SimFile {
    disk: SimDisk,
    inode: u64,
    path: PathBuf,
    writable: bool,
    /// Where `write_all` appends.
    position: usize,
}

/// A mapping of a simulated file: a window onto its page cache.
pub(crate) struct SimMapping {
    disk: SimDisk,
    inode: u64,
    path: PathBuf,
    memory: Arc<Memory>,
    len: usize,
    writable: bool,
}

/// The simulated disk's lock on a data directory (the flock of `LOCK`).
pub(crate) struct SimLock {
    disk: SimDisk,
    dir: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.disk.lock().locks.remove(&self.dir);
    }
}

fn power_lost() -> io::Error {
    io::Error::other("simulated power loss: the disk is gone")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file on the simulated disk", path.display()),
    )
}

/// splitmix64: the RNG that picks the fate of each unflushed page.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

impl Default for SimDisk {
    fn default() -> Self {
        SimDisk::new()
    }
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SimDisk")
            .field("files", &state.names.len())
            .field("operations", &state.operations)
            .field("syncs", &state.syncs)
            .field("crashed", &state.crashed)
            .finish()
    }
}

impl State {
    fn trace(&mut self, line: String) {
        if self.trace.len() == TRACE_LINES_MAX {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    /// Fails if the power is gone (every request does then).
    fn powered(&self) -> io::Result<()> {
        if self.crashed {
            return Err(power_lost());
        }
        Ok(())
    }

    /// Starts an operation that changes the disk: counts it, or loses power just before it.
    fn operation(&mut self, what: &str, path: &Path) -> io::Result<()> {
        self.powered()?;
        if self.crash_after_operations == Some(self.operations) {
            self.crashed = true;
            self.trace(format!(
                "power lost before operation {} ({what} {})",
                self.operations + 1,
                path.display()
            ));
            return Err(power_lost());
        }
        self.operations += 1;
        self.trace(format!("#{} {what} {}", self.operations, path.display()));
        Ok(())
    }

    /// Starts a sync: an operation that may also be the crash point or an injected failure.
    fn sync(&mut self, kind: SyncKind, path: &Path) -> io::Result<()> {
        self.powered()?;
        if self.crash_after_syncs == Some(self.syncs) {
            self.crashed = true;
            self.trace(format!(
                "power lost before sync {} ({kind:?} {})",
                self.syncs + 1,
                path.display()
            ));
            return Err(power_lost());
        }
        self.operation(&format!("sync {kind:?}"), path)?;
        self.syncs += 1;
        *self.sync_attempts.entry(path.to_path_buf()).or_insert(0) += 1;
        let text = path.to_string_lossy();
        let planned = self.sync_failures.iter().position(|f| {
            f.kind.is_none_or(|k| k == kind) && text.contains(f.path_contains.as_str())
        });
        if let Some(at) = planned {
            self.sync_failures.remove(at);
            self.trace(format!("  injected EIO on sync {}", self.syncs));
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn is_full(&self) -> bool {
        self.full
            || self
                .full_after_operations
                .is_some_and(|n| self.operations >= n)
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }

    fn change_names(&mut self, change: NameChange) {
        change.apply(&mut self.names);
        self.pending.push(change);
    }

    fn new_inode(&mut self) -> io::Result<u64> {
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(
            id,
            Inode {
                cache: Memory::new(PAGE_BYTES)?,
                len: 0,
                platter: Vec::new(),
                lost_pages: BTreeSet::new(),
            },
        );
        Ok(id)
    }

    fn inode(&mut self, id: u64) -> &mut Inode {
        self.inodes
            .get_mut(&id)
            .expect("open files keep their inode")
    }
}

impl Inode {
    /// Changes the length, growing the page cache if it must (only while nothing maps it).
    fn resize(&mut self, len: usize) -> io::Result<()> {
        if len > self.cache.capacity() {
            if Arc::strong_count(&self.cache) > 1 {
                return Err(io::Error::other(
                    "simulated disk: cannot grow a mapped file past its page cache",
                ));
            }
            let grown = Memory::new(len.max(self.cache.capacity() * 2))?;
            // SAFETY: no mapping of either buffer exists (strong count 1, and `grown` is new),
            // so nothing else reads or writes them.
            unsafe { grown.copy_in(0, &self.cache.copy_out(0, self.len)) };
            self.cache = grown;
        }
        if len > self.len {
            // Bytes past the old end read as zeros. SAFETY: they lie past the file's end, which
            // the engine never reads or writes through a mapping.
            unsafe { self.cache.copy_in(self.len, &vec![0; len - self.len]) };
        }
        self.len = len;
        Ok(())
    }

    /// Copies `[from, to)` of the page cache to the platter, except pages lost earlier.
    ///
    /// # Safety
    /// As `Memory::copy_out`: no thread stores into `[from, to)` during the call.
    unsafe fn write_back(&mut self, from: usize, to: usize) {
        let to = to.min(self.len);
        if self.platter.len() < self.len {
            // The length needed to read the data back becomes durable with it.
            self.platter.resize(self.len, 0);
        }
        if from >= to {
            return;
        }
        // SAFETY: the caller's promise.
        let bytes = unsafe { self.cache.copy_out(from, to - from) };
        let mut at = from;
        while at < to {
            let page = at / PAGE_BYTES;
            let end = ((page + 1) * PAGE_BYTES).min(to);
            if !self.lost_pages.contains(&page) {
                self.platter[at..end].copy_from_slice(&bytes[at - from..end - from]);
            }
            at = end;
        }
    }

    fn lose_pages(&mut self, from: usize, to: usize) {
        if from < to {
            self.lost_pages
                .extend(from / PAGE_BYTES..to.div_ceil(PAGE_BYTES));
        }
    }
}

impl SimDisk {
    /// An empty disk with power on.
    pub fn new() -> SimDisk {
        SimDisk {
            state: Arc::new(Mutex::new(State {
                dirs: BTreeSet::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                pending: Vec::new(),
                inodes: HashMap::new(),
                next_inode: 1,
                locks: BTreeSet::new(),
                operations: 0,
                syncs: 0,
                sync_attempts: HashMap::new(),
                crash_after_operations: None,
                crash_after_syncs: None,
                crashed: false,
                full: false,
                full_after_operations: None,
                sync_failures: Vec::new(),
                trace: VecDeque::new(),
            })),
            paused: Arc::new((Mutex::new(BTreeSet::new()), Condvar::new())),
            held: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Makes every operation that changes the disk wait, when a thread named `name` issues it,
    /// until `resume_threads` (the engine's sealer is `flin-seal`): a test then decides when
    /// that thread's work reaches the disk.
    pub fn pause_thread(&self, name: &str) {
        let (paused, _) = &*self.paused;
        paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
    }

    /// Lets paused threads go on.
    pub fn resume_threads(&self) {
        let (paused, resumed) = &*self.paused;
        paused.lock().unwrap_or_else(|e| e.into_inner()).clear();
        resumed.notify_all();
    }

    /// Waits while the calling thread is paused.
    fn wait_if_paused(&self) {
        let (paused, resumed) = &*self.paused;
        let name = std::thread::current().name().map(str::to_string);
        let Some(name) = name else { return };
        let mut set = paused.lock().unwrap_or_else(|e| e.into_inner());
        if !set.contains(&name) {
            return;
        }
        self.held.fetch_add(1, Ordering::AcqRel);
        while set.contains(&name) {
            set = resumed.wait(set).unwrap_or_else(|e| e.into_inner());
        }
        self.held.fetch_sub(1, Ordering::AcqRel);
    }

    /// How many paused threads are waiting at the disk now (a test waits for a thread to
    /// get there before it goes on).
    pub fn threads_held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves consistent state behind: every
        // change is made whole under it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loses power just before operation `n + 1`: the first `n` operations (creates, writes,
    /// preallocations, truncations, renames, removals and syncs, counted from when the disk
    /// was made) happen; from then on everything fails.
    pub fn crash_after_operations(&self, n: u64) {
        self.lock().crash_after_operations = Some(n);
    }

    /// Loses power just before sync `n + 1` (msync, fsync or directory fsync).
    pub fn crash_after_syncs(&self, n: u64) {
        self.lock().crash_after_syncs = Some(n);
    }

    /// Loses power now.
    pub fn crash_now(&self) {
        let mut state = self.lock();
        state.crashed = true;
        state.trace("power lost (crash_now)".to_string());
    }

    /// Whether the power is gone.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Operations that changed the disk or synced it so far.
    pub fn operations(&self) -> u64 {
        self.lock().operations
    }

    /// Syncs so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Syncs attempted on `path` so far, failed ones included (a test that a failed sync is
    /// never retried).
    pub fn syncs_of(&self, path: &Path) -> u64 {
        self.lock().sync_attempts.get(path).copied().unwrap_or(0)
    }

    /// Makes the next sync of `kind` (any kind if `None`) on a path containing `path_contains`
    /// fail with EIO, once; the pages it covered are dropped as after a real writeback error.
    pub fn fail_next_sync(&self, kind: Option<SyncKind>, path_contains: &str) {
        self.lock().sync_failures.push(SyncFailure {
            kind,
            path_contains: path_contains.to_string(),
        });
    }

    /// While full, creating, preallocating, extending and renaming files fail with ENOSPC.
    pub fn set_full(&self, full: bool) {
        let mut state = self.lock();
        state.full = full;
        state.full_after_operations = None;
    }

    /// The disk fills (as `set_full(true)`) once `n` operations have happened in all.
    pub fn set_full_after_operations(&self, n: u64) {
        self.lock().full_after_operations = Some(n);
    }

    /// The last operations, one a line (for failure messages).
    pub fn trace(&self) -> String {
        let state = self.lock();
        state.trace.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The files in `dir` the running system sees, sorted.
    pub fn files(&self, dir: &Path) -> Vec<PathBuf> {
        let state = self.lock();
        state
            .names
            .keys()
            .filter(|name| name.parent() == Some(dir))
            .cloned()
            .collect()
    }

    /// A file's contents as the running system reads them. Panics if the engine still maps it
    /// writable (drop the engine first).
    pub fn file(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let inode = &state.inodes[state.names.get(path)?];
        Some(Self::contents(inode, path))
    }

    fn contents(inode: &Inode, path: &Path) -> Vec<u8> {
        assert_eq!(
            inode.cache.writable_maps.load(Ordering::Acquire),
            0,
            "{} is mapped writable: drop the engine before reading it",
            path.display()
        );
        // SAFETY: no writable mapping exists (checked above, and new ones are only made under
        // the state lock we hold), so nothing stores into the buffer.
        unsafe { inode.cache.copy_out(0, inode.len) }
    }

    /// Replaces a file's contents, durably and at once (a test damaging a disk image: bit
    /// flips, truncation). Creates the file if it is missing. Not an operation: not counted.
    pub fn replace_file(&self, path: &Path, bytes: &[u8]) {
        let mut state = self.lock();
        let id = match state.names.get(path) {
            Some(&id) => id,
            None => {
                let id = state.new_inode().expect("map a buffer");
                state.names.insert(path.to_path_buf(), id);
                state.durable_names.insert(path.to_path_buf(), id);
                id
            }
        };
        let inode = state.inode(id);
        assert_eq!(
            Arc::strong_count(&inode.cache),
            1,
            "{} is mapped: drop the engine before damaging it",
            path.display()
        );
        let fresh = Memory::new(bytes.len()).expect("map a buffer");
        // SAFETY: `fresh` is new and unmapped.
        unsafe { fresh.copy_in(0, bytes) };
        inode.cache = fresh;
        inode.len = bytes.len();
        inode.platter = bytes.to_vec();
        inode.lost_pages.clear();
    }

    /// Removes a file durably and at once (a test losing a segment). Not counted.
    pub fn delete_file(&self, path: &Path) -> bool {
        let mut state = self.lock();
        state.durable_names.remove(path);
        state.names.remove(path).is_some()
    }

    /// The disk a machine would boot from after losing power now (or at the crash point, if
    /// the power is already gone): flushed data, and each unflushed page written, not written
    /// or torn as `seed` decides; a prefix of the unsynced directory changes. Panics if the
    /// engine still maps a file writable (drop it first: the image is taken of a stopped
    /// machine).
    pub fn after_power_loss(&self, seed: u64) -> SimDisk {
        let state = self.lock();
        let mut rng = Rng(seed);
        let mut names = state.durable_names.clone();
        let kept = rng.below(state.pending.len() as u64 + 1) as usize;
        for change in &state.pending[..kept] {
            change.apply(&mut names);
        }
        let image = Self::build(&state, &names, |inode, name| {
            Self::power_loss_contents(inode, name, &mut rng)
        });
        image.trace_note(format!(
            "image of a power loss, seed {seed}, kept {kept} unsynced directory changes"
        ));
        image
    }

    /// A copy of the disk as the running system sees it, as if every write and name had
    /// reached the platter (a test damaging copies of one image). Panics as `after_power_loss`.
    pub fn copy(&self) -> SimDisk {
        let state = self.lock();
        let image = Self::build(&state, &state.names, Self::contents);
        image.trace_note("copy of a disk".to_string());
        image
    }

    /// A new disk holding `names`, each file with the bytes `contents` gives its inode, all on
    /// the platter.
    fn build(
        state: &State,
        names: &BTreeMap<PathBuf, u64>,
        mut contents: impl FnMut(&Inode, &Path) -> Vec<u8>,
    ) -> SimDisk {
        let image = SimDisk::new();
        {
            let mut fresh = image.lock();
            fresh.dirs = state.dirs.clone();
            let mut carried: HashMap<u64, u64> = HashMap::new();
            for (name, &old_id) in names {
                let id = match carried.get(&old_id) {
                    Some(&id) => id,
                    None => {
                        let bytes = contents(&state.inodes[&old_id], name);
                        let id = fresh.new_inode().expect("map a buffer");
                        let inode = fresh.inode(id);
                        inode.resize(bytes.len()).expect("grow an unmapped buffer");
                        // SAFETY: the buffer is new and unmapped.
                        unsafe { inode.cache.copy_in(0, &bytes) };
                        inode.platter = bytes;
                        carried.insert(old_id, id);
                        id
                    }
                };
                fresh.names.insert(name.clone(), id);
                fresh.durable_names.insert(name.clone(), id);
            }
        }
        image
    }

    fn trace_note(&self, line: String) {
        self.lock().trace(line);
    }

    /// What one file holds after the power loss.
    fn power_loss_contents(inode: &Inode, path: &Path, rng: &mut Rng) -> Vec<u8> {
        let cache = Self::contents(inode, path);
        let platter = &inode.platter;
        let len = if cache.len() == platter.len() || rng.below(2) == 0 {
            platter.len()
        } else {
            cache.len()
        };
        let mut out = vec![0u8; len];
        for page in 0..len.div_ceil(PAGE_BYTES) {
            let start = page * PAGE_BYTES;
            let end = (start + PAGE_BYTES).min(len);
            let old = |at: usize| platter.get(at).copied().unwrap_or(0);
            let new = |at: usize| {
                if inode.lost_pages.contains(&page) {
                    old(at)
                } else {
                    cache.get(at).copied().unwrap_or_else(|| old(at))
                }
            };
            let dirty = (start..end).any(|at| old(at) != new(at));
            let fate = if dirty { rng.below(3) } else { 0 };
            for sector in (start..end).step_by(SECTOR_BYTES) {
                let take_new = match fate {
                    0 => true,
                    1 => false,
                    _ => rng.below(2) == 0,
                };
                let sector_end = (sector + SECTOR_BYTES).min(end);
                for (at, byte) in (sector..).zip(&mut out[sector..sector_end]) {
                    *byte = if take_new { new(at) } else { old(at) };
                }
            }
        }
        out
    }

    // The backend's operations (crate-internal: the engine reaches them through `Backend`).

    pub(crate) fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.powered()?;
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    pub(crate) fn lock_dir(&self, dir: &Path) -> Result<SimLock> {
        let mut state = self.lock();
        let path = dir.join(crate::dir::LOCK_FILE);
        state
            .powered()
            .map_err(|e| Error::io(&path, "open lock file", e))?;
        if !state.locks.insert(dir.to_path_buf()) {
            return Err(Error::Locked { path });
        }
        Ok(SimLock {
            disk: self.clone(),
            dir: dir.to_path_buf(),
        })
    }

    pub(crate) fn create(&self, path: &Path, must_be_new: bool) -> io::Result<SimFile> {
        self.wait_if_paused();
        let mut state = self.lock();
        let parent = path.parent().unwrap_or(Path::new(""));
        if !state.dirs.contains(parent) {
            state.powered()?;
            return Err(not_found(parent));
        }
        let existing = state.names.get(path).copied();
        if existing.is_some() && must_be_new {
            state.powered()?;
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        if existing.is_none() && state.is_full() {
            state.powered()?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        state.operation("create", path)?;
        let id = match existing {
            Some(id) => {
                state.inode(id).resize(0)?;
                id
            }
            None => {
                let id = state.new_inode()?;
                state.change_names(NameChange::Link {
                    name: path.to_path_buf(),
                    inode: id,
                });
                id
            }
        };
        Ok(SimFile {
            disk: self.clone(),
            inode: id,
            path: path.to_path_buf(),
            writable: true,
            position: 0,
        })
    }

    pub(crate) fn open(&self, path: &Path, writable: bool) -> io::Result<SimFile> {
        let state = self.lock();
        state.powered()?;
        let inode = state.inode_of(path)?;
        Ok(SimFile {
            disk: self.clone(),
            inode,
            path: path.to_path_buf(),
            writable,
            position: 0,
        })
    }

    pub(crate) fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.lock();
        state.powered()?;
        let inode = &state.inodes[&state.inode_of(path)?];
        if inode.cache.writable_maps.load(Ordering::Acquire) > 0 {
            return Err(io::Error::other(
                "simulated disk: read of a file mapped writable",
            ));
        }
        Ok(Self::contents(inode, path))
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.wait_if_paused();
        let mut state = self.lock();
        state.powered()?;
        state.inode_of(from)?;
        if state.is_full() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        state.operation(&format!("rename {} ->", from.display()), to)?;
        state.change_names(NameChange::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        });
        Ok(())
    }

    pub(crate) fn remove(&self, path: &Path) -> io::Result<()> {
        self.wait_if_paused();
        let mut state = self.lock();
        state.powered()?;
        state.inode_of(path)?;
        state.operation("remove", path)?;
        state.change_names(NameChange::Unlink {
            name: path.to_path_buf(),
        });
        Ok(())
    }

    pub(crate) fn exists(&self, path: &Path) -> bool {
        let state = self.lock();
        state.names.contains_key(path) || state.dirs.contains(path)
    }

    pub(crate) fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let state = self.lock();
        state.powered()?;
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .names
            .keys()
            .filter(|name| name.parent() == Some(dir))
            .filter_map(|name| name.file_name().map(|n| n.to_os_string()))
            .collect())
    }

    pub(crate) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.wait_if_paused();
        let mut state = self.lock();
        state.sync(SyncKind::Directory, dir)?;
        let pending = std::mem::take(&mut state.pending);
        let (synced, rest): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|change| change.directory() == Some(dir));
        for change in &synced {
            change.apply(&mut state.durable_names);
        }
        state.pending = rest;
        Ok(())
    }
}

impl SimFile {
    /// The file's name changed (for the trace and fault matching).
    pub(crate) fn renamed(&mut self, path: &Path) {
        self.path = path.to_path_buf();
    }

    pub(crate) fn len(&self) -> io::Result<u64> {
        let mut state = self.disk.lock();
        state.powered()?;
        Ok(state.inode(self.inode).len as u64)
    }

    pub(crate) fn set_len(&self, bytes: u64, preallocate: bool) -> io::Result<()> {
        self.disk.wait_if_paused();
        let mut state = self.disk.lock();
        state.powered()?;
        let grows = bytes as usize > state.inode(self.inode).len;
        if grows && state.is_full() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let what = if preallocate {
            "preallocate"
        } else {
            "set_len"
        };
        state.operation(&format!("{what} {bytes}"), &self.path)?;
        state.inode(self.inode).resize(bytes as usize)
    }

    /// fsync. The engine calls it only when no thread stores into the file's mapping (a new
    /// segment before its writer exists, a sealed one, a compaction output written by the
    /// calling thread).
    pub(crate) fn sync_all(&self) -> io::Result<()> {
        self.disk.wait_if_paused();
        let mut state = self.disk.lock();
        if let Err(e) = state.sync(SyncKind::File, &self.path) {
            if !state.crashed {
                let inode = state.inode(self.inode);
                let len = inode.len;
                inode.lose_pages(0, len);
            }
            return Err(e);
        }
        let inode = state.inode(self.inode);
        let len = inode.len;
        // SAFETY: the engine does not store into the file while it fsyncs it (see above).
        unsafe { inode.write_back(0, len) };
        inode.platter.truncate(len);
        Ok(())
    }

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.disk.wait_if_paused();
        let mut state = self.disk.lock();
        state.powered()?;
        let inode_len = state.inode(self.inode).len;
        let end = self.position + bytes.len();
        if end > inode_len && state.is_full() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        state.operation(&format!("write {} bytes", bytes.len()), &self.path)?;
        let inode = state.inode(self.inode);
        if Arc::strong_count(&inode.cache) > 1 {
            return Err(io::Error::other("simulated disk: write() to a mapped file"));
        }
        if end > inode.len {
            inode.resize(end)?;
        }
        // SAFETY: nothing maps this buffer (checked above).
        unsafe { inode.cache.copy_in(self.position, bytes) };
        self.position = end;
        Ok(())
    }

    pub(crate) fn map(&self, len: usize, writable: bool) -> io::Result<SimMapping> {
        let mut state = self.disk.lock();
        state.powered()?;
        assert!(
            !writable || self.writable,
            "writable mapping of a read-only file"
        );
        let inode = state.inode(self.inode);
        if len > inode.cache.capacity() {
            return Err(io::Error::other(
                "simulated disk: mapping longer than the file's page cache",
            ));
        }
        if writable {
            inode.cache.writable_maps.fetch_add(1, Ordering::AcqRel);
        }
        Ok(SimMapping {
            disk: self.disk.clone(),
            inode: self.inode,
            path: self.path.clone(),
            memory: inode.cache.clone(),
            len,
            writable,
        })
    }
}

impl SimMapping {
    pub(crate) fn renamed(&mut self, path: &Path) {
        self.path = path.to_path_buf();
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.memory.map.as_mut_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// msync: copies the range to the platter. The caller does not store into it meanwhile
    /// (see `Mapping::flush_range`).
    pub(crate) fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.disk.wait_if_paused();
        let mut state = self.disk.lock();
        let end = (offset + len).min(self.len);
        if let Err(e) = state.sync(SyncKind::Flush, &self.path) {
            if !state.crashed {
                state.inode(self.inode).lose_pages(offset, end);
            }
            return Err(e);
        }
        let inode = state.inode(self.inode);
        assert!(
            Arc::ptr_eq(&inode.cache, &self.memory),
            "flush of a mapping whose file was replaced"
        );
        // SAFETY: the caller does not store into `[offset, end)` during the flush.
        unsafe { inode.write_back(offset, end) };
        Ok(())
    }
}

impl Drop for SimMapping {
    fn drop(&mut self) {
        if self.writable {
            self.memory.writable_maps.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
