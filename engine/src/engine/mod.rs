//! The engine: [`Engine`], a handle shared by every thread, over [`Inner`], the state behind it.
//!
//! # Layout
//! - `config`: [`Config`] and its parts (durability, storage, clock, logger, compaction).
//! - `batch`: [`WriteBatch`], the typed list of writes applied as one record, and its encoding.
//! - `table`: [`SegmentTable`], the segments in use by slot.
//! - `write`: the write path (append under the writer lock, index update, rotation).
//! - `read`: lookups, multi-key reads, scans.
//! - `txn`: [`Txn`], reads that see a transaction's own writes.
//! - `sync`: group commit and the once-a-second flush.
//! - `seal`: the sealer thread (seal full segments, prefault new ones).
//! - `maintenance`: background threads, active expiry, compaction's schedule.
//! - `snapshot`: the segment and hint files holding exactly the state through a seq, linked
//!   aside for a follower that lags beyond the log.

mod appends;
mod batch;
mod config;
mod maintenance;
mod observe;
mod pins;
mod read;
mod reader;
mod replicate;
mod seal;
mod snapshot;
mod sync;
mod table;
mod txn;
mod undo;
mod wake;
mod write;

pub use batch::{Op, WriteBatch, BATCH_OPS_MAX};
pub use config::{
    Clock, CompactionConfig, Config, Durability, LogLevel, Logger, ManualClock, Storage,
    SystemClock, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};
pub(crate) use observe::Observers;
pub use observe::{Change, Observer, Origin, Replay};
pub use pins::Pin;
pub(crate) use pins::PinSet;
pub use reader::LogReader;
pub use snapshot::{SnapshotFile, SnapshotFiles};
pub(crate) use table::SegmentTable;
pub use txn::Txn;
pub(crate) use wake::Waiters;
pub use wake::{WaitHandle, Wake};
pub use write::EntryOps;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::backend::{Backend, DirLock};
use crate::compaction::{self, CompactionReport};
use crate::error::{Error, Result};
use crate::format::{Namespace, RecordKind};
use crate::index::{Index, SHARD_COUNT};
use crate::ranges::RangeMarkers;
use crate::recovery::{self, RecoveryReport};
use crate::segment::{Segment, SegmentWriter};

/// A value read from the engine, borrowed from the mapping for the duration of a callback.
#[derive(Clone, Copy, Debug)]
pub struct ValueRef<'a> {
    pub value: &'a [u8],
    /// Absolute expiry in ms since the epoch; 0 = none.
    pub expiry_ms: u64,
}

/// A live record of a namespace, borrowed from the mapping for the duration of a callback
/// (`Engine::for_each`).
#[derive(Clone, Copy, Debug)]
pub struct LiveRecord<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// The seq of the write that set this value.
    pub seq: u64,
    /// Absolute expiry in ms since the epoch; 0 = none.
    pub expiry_ms: u64,
}

/// An owned value with its expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub value: Vec<u8>,
    pub expiry_ms: u64,
}

/// Counters for INFO and the benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub keys: u64,
    pub segments: u64,
    pub log_bytes: u64,
    pub dead_bytes: u64,
    pub index_bytes: u64,
    pub last_seq: u64,
    pub durable_seq: u64,
    pub writes: u64,
    pub flushes: u64,
    /// Time spent in those flushes (msync of the log), in nanoseconds.
    pub flush_nanos: u64,
    pub compactions: u64,
    pub compaction_reclaimed_bytes: u64,
    pub expired_keys_reclaimed: u64,
}

pub(crate) struct Writer {
    pub active: SegmentWriter,
    pub next_seq: u64,
    /// The term new records are written in (replication's leader term; 0 on a lone node).
    pub term: u64,
    /// The term of the log's last entry.
    pub last_term: u64,
    /// The write path's reusable bookkeeping.
    pub scratch: write::ApplyScratch,
    /// The last append wrote its records through the file (`append_run`, a follower's)
    /// rather than through the mapping: the next segment is not prefaulted.
    pub writes_through_file: bool,
    /// A batch buffer `begin` lends to its transaction and takes back, emptied, at its end,
    /// so a transaction allocates nothing once the buffer has grown.
    pub spare_batch: WriteBatch,
}

#[derive(Default)]
struct SyncState {
    /// Every record with seq <= this is on disk.
    durable_seq: u64,
    /// The flushes under way, oldest first (at most `Config::flushes_in_flight`): each
    /// covers the bytes written after the one before it, so a later one may finish first.
    flights: std::collections::VecDeque<sync::Flight>,
    /// Threads that took a flush's place and are about to say which range it covers.
    starting: usize,
    /// Where the next flush starts: (segment id, offset) of the end of the last one taken.
    taken_segment_id: u64,
    taken_offset: usize,
    /// Numbers the flushes taken, so a finished one finds its place in `flights`.
    next_flight: u64,
}

pub(crate) struct Inner {
    pub config: Config,
    /// The filesystem or the simulated disk: every file operation goes through it.
    pub backend: Backend,
    pub dir: Option<PathBuf>,
    _lock: Option<DirLock>,
    pub index: Index,
    /// The range markers in effect (log-only records they drop are dead).
    pub ranges: RwLock<RangeMarkers>,
    /// Compaction pins held.
    pub pins: Arc<PinSet>,
    /// The data models' apply hooks.
    pub observers: Observers,
    /// Who waits for writes under a key prefix.
    pub waiters: Arc<Waiters>,
    /// Replicated engines only: what each uncommitted entry replaced (`engine::undo`).
    pub undo: Option<Mutex<undo::UndoLog>>,
    /// Replicated engines only: the commit point, and the compaction pin just after it.
    pub committed: AtomicU64,
    pub replication_pin: Mutex<Option<Pin>>,
    /// Truncations so far, and the seq each kept through (log readers check them).
    pub truncations: AtomicU64,
    pub truncation_log: Mutex<Vec<u64>>,
    /// The cuts truncations made in this process, rewritten whole to `CUT` each time.
    pub cuts: Mutex<crate::dir::Cuts>,
    pub segments: RwLock<SegmentTable>,
    pub writer: Mutex<Writer>,
    sync: Mutex<SyncState>,
    sync_done: Condvar,
    poison: Mutex<Option<String>>,
    poisoned: AtomicBool,
    pub next_segment_id: AtomicU64,
    /// Highest seq appended and visible to readers.
    pub last_seq: AtomicU64,
    /// Keys in the index per namespace tag (expired ones included until reclaimed).
    pub key_counts: [AtomicU64; 8],
    writes: AtomicU64,
    flushes: AtomicU64,
    /// Nanoseconds spent in `flushes` (the metrics' fsync latency: sum over count).
    flush_nanos: AtomicU64,
    pub compactions: AtomicU64,
    pub reclaimed_bytes: AtomicU64,
    pub expired_reclaimed: AtomicU64,
    /// A sealed log segment waiting for the sealer thread to flush, truncate and remap it (at
    /// most one: a rotation finishes an earlier one itself if the sealer has not yet).
    seal_pending: Mutex<Option<Arc<Segment>>>,
    /// A new active segment whose pages the sealer thread should fault in ahead of the writer
    /// (set under `seal_pending`'s lock, so the sealer's wait cannot miss it).
    prefault_wanted: Mutex<Option<Arc<Segment>>>,
    /// Wakes the sealer thread.
    seal_wanted: Condvar,
    /// Held while a segment is being sealed, by the sealer thread or a rotation.
    seal_lock: Mutex<()>,
    /// Only one compaction at a time.
    pub compaction_lock: Mutex<()>,
    /// Set when a compaction failed after committing its manifest.
    pub compaction_disabled: AtomicBool,
    shutdown: Mutex<bool>,
    shutdown_signal: Condvar,
    recovery: RecoveryReport,
}

/// A handle to the engine; clone it freely across threads.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    _threads: Arc<BackgroundThreads>,
}

struct BackgroundThreads {
    inner: Arc<Inner>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for BackgroundThreads {
    fn drop(&mut self) {
        *self.inner.shutdown.lock().expect("shutdown lock") = true;
        self.inner.shutdown_signal.notify_all();
        self.inner.seal_wanted.notify_all();
        for handle in self.handles.lock().expect("handles lock").drain(..) {
            let _ = handle.join();
        }
        // Last flush on a clean close, whatever the policy.
        let _ = self.inner.flush();
    }
}

/// The key's hash: xxh3 of the key seeded with the namespace, so equal keys in two namespaces
/// land in unrelated places.
pub(crate) fn key_hash(namespace_tag: u8, key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, namespace_tag as u64)
}

impl Engine {
    /// Opens (recovering) or creates the engine.
    pub fn open(config: Config) -> Result<Engine> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&config.segment_bytes) {
            return Err(Error::Invalid(format!(
                "segment size {} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX} bytes",
                config.segment_bytes
            )));
        }
        let (backend, dir) = match &config.storage {
            Storage::Memory => (Backend::Os, None),
            Storage::Directory(path) => (Backend::Os, Some(path.clone())),
            Storage::Simulated { disk, dir } => (Backend::Sim(disk.clone()), Some(dir.clone())),
        };
        let lock = match &dir {
            Some(path) => {
                backend
                    .create_dir_all(path)
                    .map_err(|e| Error::io(path, "create data directory", e))?;
                Some(backend.lock_dir(path)?)
            }
            None => None,
        };
        let recovered = recovery::recover(&config, &backend, dir.as_deref())?;
        recovered.index.publish_segments(&recovered.segments);
        let inner = Arc::new(Inner {
            backend,
            dir,
            _lock: lock,
            index: recovered.index,
            ranges: RwLock::new(recovered.ranges),
            pins: Arc::new(PinSet::default()),
            observers: Observers::new(&config.observers),
            waiters: Arc::new(Waiters::default()),
            undo: config
                .replicated
                .map(|_| Mutex::new(undo::UndoLog::default())),
            committed: AtomicU64::new(recovered.committed_seq),
            replication_pin: Mutex::new(None),
            truncations: AtomicU64::new(0),
            truncation_log: Mutex::new(Vec::new()),
            cuts: Mutex::new(crate::dir::Cuts::default()),
            segments: RwLock::new(recovered.segments),
            writer: Mutex::new(Writer {
                active: recovered.active,
                next_seq: recovered.last_seq + 1,
                term: recovered.last_term,
                last_term: recovered.last_term,
                scratch: write::ApplyScratch::default(),
                spare_batch: WriteBatch::new(),
                writes_through_file: false,
            }),
            sync: Mutex::new(SyncState {
                durable_seq: recovered.last_seq,
                ..SyncState::default()
            }),
            sync_done: Condvar::new(),
            poison: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            next_segment_id: AtomicU64::new(recovered.next_segment_id),
            last_seq: AtomicU64::new(recovered.last_seq),
            key_counts: Default::default(),
            writes: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flush_nanos: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            reclaimed_bytes: AtomicU64::new(0),
            expired_reclaimed: AtomicU64::new(0),
            seal_pending: Mutex::new(None),
            prefault_wanted: Mutex::new(None),
            seal_wanted: Condvar::new(),
            seal_lock: Mutex::new(()),
            compaction_lock: Mutex::new(()),
            compaction_disabled: AtomicBool::new(false),
            shutdown: Mutex::new(false),
            shutdown_signal: Condvar::new(),
            recovery: recovered.report,
            config,
        });
        for (tag, count) in recovered.key_counts.iter().enumerate() {
            inner.key_counts[tag].store(*count, Ordering::Relaxed);
        }
        let threads = Arc::new(BackgroundThreads {
            inner: inner.clone(),
            handles: Mutex::new(Vec::new()),
        });
        let engine = Engine {
            inner: inner.clone(),
            _threads: threads.clone(),
        };
        if inner.undo.is_some() {
            // Entries from the commit point on are never compacted, and recovery left those
            // above it out of the index: they go in now, with their undo items.
            let committed = inner.committed.load(Ordering::Acquire);
            *inner.replication_pin.lock().expect("pin lock") = Some(engine.pin(committed));
            engine.apply_uncommitted(committed)?;
        }
        // Before any background thread: no compaction may run before the observers' pins are
        // held, and no write before their replay is done.
        engine.start_observers()?;
        if inner.config.background_sealing {
            // In memory mode it only prefaults: memory segments need no seal.
            let worker = inner.clone();
            let active = worker.lock_writer().active.segment.clone();
            worker.request_prefault(active);
            threads.spawn("flin-seal", move || worker.seal_in_background());
        }
        if inner.dir.is_some() && inner.config.durability == Durability::EverySec {
            let worker = inner.clone();
            threads.spawn("flin-flush", move || worker.flush_every_second());
        }
        if inner.config.compaction.background {
            let worker = inner.clone();
            threads.spawn("flin-compact", move || worker.background_maintenance());
        }
        Ok(engine)
    }

    /// What recovery found when this engine opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Reads a key's value inside `read` without copying it. `read` runs while a shard lock is
    /// held: keep it short (copy the bytes out or encode a reply).
    pub fn get_with<R>(
        &self,
        namespace: Namespace,
        key: &[u8],
        read: impl FnOnce(ValueRef<'_>) -> R,
    ) -> Result<Option<R>> {
        self.inner.get_with(namespace, key, read)
    }

    /// Reads many keys of one namespace, calling `read(i, value)` for each `keys[i]` in order
    /// (`None`: absent or expired). Much faster per key than as many `get_with` calls when the
    /// keys are spread over a large index: lookups go in groups whose memory accesses overlap
    /// (MGET uses it). `read` runs while shard locks are held: keep it short. On a corrupt
    /// record it returns the error, having called `read` for the keys before it.
    pub fn get_many_with<K: AsRef<[u8]>>(
        &self,
        namespace: Namespace,
        keys: &[K],
        read: impl FnMut(usize, Option<ValueRef<'_>>),
    ) -> Result<()> {
        self.inner.get_many_with(namespace, keys, read)
    }

    /// Starts bringing `key`'s index slot into the CPU's cache, for a lookup soon after (a
    /// hint; nothing changes). For a reader that knows its next key before it needs it.
    pub fn prefetch(&self, namespace: Namespace, key: &[u8]) {
        let tag = namespace.tag();
        let hash = key_hash(tag, key);
        self.inner
            .index
            .read(tag, Index::shard_of(hash))
            .table
            .prefetch_home(hash);
    }

    /// A key's value and expiry, copied.
    pub fn get(&self, namespace: Namespace, key: &[u8]) -> Result<Option<Value>> {
        self.get_with(namespace, key, |v| Value {
            value: v.value.to_vec(),
            expiry_ms: v.expiry_ms,
        })
    }

    /// Whether a live (unexpired) key exists.
    pub fn contains(&self, namespace: Namespace, key: &[u8]) -> Result<bool> {
        Ok(self.inner.lookup(namespace, key).is_some())
    }

    /// A key's expiry (0 = none), or `None` if the key does not exist.
    pub fn expiry_of(&self, namespace: Namespace, key: &[u8]) -> Result<Option<u64>> {
        Ok(self.inner.expiry_of(namespace, key))
    }

    /// The seq of the record that holds the key now, or `None` if it does not exist: changes
    /// whenever the key is written (WATCH compares it).
    pub fn version(&self, namespace: Namespace, key: &[u8]) -> Result<Option<u64>> {
        Ok(self.inner.version_at(namespace, key, None))
    }

    /// Sets a key; durable per the policy when this returns.
    pub fn put(
        &self,
        namespace: Namespace,
        key: &[u8],
        value: &[u8],
        expiry_ms: u64,
    ) -> Result<u64> {
        let put = [Op {
            kind: RecordKind::Put,
            namespace,
            key,
            value,
            expiry_ms,
        }];
        let seq = self.inner.append(&mut self.inner.lock_writer(), &put[..])?;
        self.wait_durable(Some(seq))?;
        Ok(seq)
    }

    /// Removes a key; returns whether it existed. Writes nothing if it did not.
    pub fn delete(&self, namespace: Namespace, key: &[u8]) -> Result<bool> {
        let mut txn = self.begin();
        let existed = txn.delete(namespace, key)?;
        let seq = txn.commit()?;
        self.wait_durable(seq)?;
        Ok(existed)
    }

    /// Takes keys out of the namespace's index without writing a record: their records become
    /// garbage that compaction reclaims, as an expired key's do. For a data model that records
    /// such deaths its own way, with one record for many keys (a queue's ack floor: every
    /// message of the queue below an id is gone): after a restart, recovery indexes those
    /// records again, and the model, which knows they are dead, forgets them again when it
    /// loads. Nothing else may rely on a forgotten key staying gone. Ordered with writes (the
    /// writer lock is held). Returns how many of the keys were in the index. Refused on a
    /// replicated engine, whose undo log could not bring a forgotten key back.
    /// Whether replication runs on this engine (`Config::replicated`).
    pub fn is_replicated(&self) -> bool {
        self.inner.undo.is_some()
    }

    pub fn forget<K: AsRef<[u8]>>(&self, namespace: Namespace, keys: &[K]) -> Result<usize> {
        if self.inner.undo.is_some() {
            return Err(Error::Invalid(
                "forget is not available on a replicated engine".into(),
            ));
        }
        let _writer = self.inner.lock_writer();
        Ok(keys
            .iter()
            .filter(|key| self.inner.forget(namespace, key.as_ref()))
            .count())
    }

    /// Applies a batch atomically; durable per the policy when this returns.
    pub fn write(&self, batch: &WriteBatch) -> Result<u64> {
        let seq = self.write_unsynced(batch)?;
        self.wait_durable(Some(seq))?;
        Ok(seq)
    }

    /// Applies a batch atomically and returns its seq without waiting for the flush: call
    /// `wait_durable` before acknowledging it (the server does so once per pipeline).
    pub fn write_unsynced(&self, batch: &WriteBatch) -> Result<u64> {
        if batch.is_empty() {
            return Err(Error::Invalid("empty batch".into()));
        }
        let mut writer = self.inner.lock_writer();
        self.inner.append(&mut writer, batch)
    }

    /// Starts a transaction: takes the writer lock, so what it reads stays current until it
    /// commits or is dropped (read-modify-write is atomic across threads). Its writes queue
    /// as a typed list ([`Txn::batch`]) and reach the log only at [`Txn::commit`], as one
    /// entry: the data crossing from the deciding code to the engine (and, later, to
    /// replication) is that list, not code. Dropping it without committing writes nothing.
    pub fn begin(&self) -> Txn<'_> {
        let mut writer = self.inner.lock_writer();
        let batch = std::mem::take(&mut writer.spare_batch);
        Txn {
            writer,
            inner: &self.inner,
            batch,
            overlay: std::cell::OnceCell::new(),
            now_ms: std::cell::OnceCell::new(),
        }
    }

    /// Waits until `seq` is durable if the policy is `always`; returns at once otherwise.
    pub fn wait_durable(&self, seq: Option<u64>) -> Result<()> {
        match seq {
            Some(seq) if self.inner.config.durability == Durability::Always => {
                self.inner.sync_to(seq)
            }
            _ => Ok(()),
        }
    }

    /// Flushes everything written so far, whatever the policy.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// Highest seq written (visible to readers).
    pub fn last_seq(&self) -> u64 {
        self.inner.last_seq.load(Ordering::Acquire)
    }

    /// Highest seq known to be on disk.
    pub fn durable_seq(&self) -> u64 {
        self.inner.sync.lock().expect("sync lock").durable_seq
    }

    /// Keys in a namespace (expired keys count until they are reclaimed, as in Redis's DBSIZE).
    pub fn len(&self, namespace: Namespace) -> u64 {
        self.inner.key_counts[namespace.tag() as usize].load(Ordering::Relaxed)
    }

    pub fn is_empty(&self, namespace: Namespace) -> bool {
        self.len(namespace) == 0
    }

    /// One step of a key scan: up to about `count` live keys of `namespace` and the cursor to
    /// continue from (0 when the scan is complete). Like Redis's SCAN, a key present for the
    /// whole scan is returned at least once, even if the index grows in between.
    pub fn scan(
        &self,
        namespace: Namespace,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        self.inner.scan(namespace, cursor, count.max(1))
    }

    /// Calls `visit` for every live record of `namespace` whose key starts with `prefix` (empty:
    /// all), in no particular order, and returns how many index slots it examined: the
    /// namespace's keys only, however many other namespaces hold (each namespace has tables of
    /// its own in every index shard). `visit` runs under one index shard's read lock at a time:
    /// keep it short. Records written while the walk runs may or may not be seen.
    pub fn for_each(
        &self,
        namespace: Namespace,
        prefix: &[u8],
        visit: impl FnMut(LiveRecord<'_>),
    ) -> Result<u64> {
        self.inner.for_each_in(namespace, prefix, visit)
    }

    /// A live key of `namespace` picked from a random spot (`seed` picks the spot).
    pub fn random_key(&self, namespace: Namespace, seed: u64) -> Result<Option<Vec<u8>>> {
        let start_shard = (seed as usize) % SHARD_COUNT;
        let mut cursor = (start_shard as u64) << 32;
        let mut wrapped = false;
        loop {
            let (next, keys) = self.inner.scan(namespace, cursor, 1)?;
            if let Some(key) = keys.into_iter().next() {
                return Ok(Some(key));
            }
            if next == 0 {
                if wrapped || start_shard == 0 {
                    return Ok(None);
                }
                wrapped = true;
            }
            cursor = next;
        }
    }

    /// Every record that survives, with seq >= `from_seq`, in seq order, as of now: each seq
    /// at most once (a compaction swapping segments meanwhile is seen before or after, never
    /// both), and no seq whose records compaction dropped (overwritten, deleted, covered by a
    /// range marker). For an exact read that follows the tail and never skips a seq, use
    /// [`Engine::reader`].
    pub fn log_from(&self, from_seq: u64) -> crate::LogIter {
        crate::log_iter::LogIter::new(&self.inner, from_seq)
    }

    /// Whether a log-only record of `namespace` with this key and seq is dropped by a range
    /// marker in effect (a reader of the log filters those out; compaction removes them).
    pub fn is_dropped(&self, namespace: Namespace, key: &[u8], seq: u64) -> bool {
        let ranges = self.inner.ranges.read().expect("range markers lock");
        ranges.any_in(namespace.tag()) && ranges.covering(namespace.tag(), key, seq).is_some()
    }

    /// Calls `wake` after every committed write with an op in `namespace` whose key starts
    /// with `prefix` (any kind: put, delete, append, range marker), until the handle is
    /// dropped. `wake` runs on the writing thread with the writer lock held: it must be quick
    /// (signal an event loop, a condvar) and must not write. Register, then look for data, then
    /// wait, and no write is missed.
    pub fn wake_on(&self, namespace: Namespace, prefix: &[u8], wake: Wake) -> WaitHandle {
        Waiters::register(&self.inner.waiters, namespace, prefix, wake)
    }

    /// Keeps compaction away from every record with seq >= `seq` until the returned pin is
    /// dropped or advanced (see [`Pin`]).
    pub fn pin(&self, seq: u64) -> Pin {
        Pin::new(&self.inner.pins, seq)
    }

    /// Merges sealed segments whose garbage ratio passes `garbage_ratio_min` (0 merges every
    /// sealed segment that has any dead bytes) now, on this thread.
    pub fn compact(&self, garbage_ratio_min: f64) -> Result<CompactionReport> {
        compaction::compact(&self.inner, garbage_ratio_min)
    }

    /// Removes expired keys from the index now (the background thread does this too).
    pub fn reclaim_expired(&self) -> usize {
        self.inner.reclaim_expired(0..SHARD_COUNT)
    }

    /// Writes hint files for sealed segments that lack one.
    pub fn write_missing_hints(&self) -> Result<usize> {
        compaction::write_missing_hints(&self.inner)
    }

    /// Counters and sizes.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let (segments, log_bytes, dead_bytes) = {
            let table = inner.segments.read().expect("segment table lock");
            table.all().fold((0, 0, 0), |(n, bytes, dead), s| {
                (
                    n + 1,
                    bytes + s.published() as u64,
                    dead + s.dead_bytes.load(Ordering::Relaxed),
                )
            })
        };
        Stats {
            keys: inner
                .key_counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum(),
            segments,
            log_bytes,
            dead_bytes,
            index_bytes: inner.index.memory_bytes() as u64,
            last_seq: self.last_seq(),
            durable_seq: self.durable_seq(),
            writes: inner.writes.load(Ordering::Relaxed),
            flushes: inner.flushes.load(Ordering::Relaxed),
            flush_nanos: inner.flush_nanos.load(Ordering::Relaxed),
            compactions: inner.compactions.load(Ordering::Relaxed),
            compaction_reclaimed_bytes: inner.reclaimed_bytes.load(Ordering::Relaxed),
            expired_keys_reclaimed: inner.expired_reclaimed.load(Ordering::Relaxed),
        }
    }

    /// Bytes of memory the index uses.
    pub fn index_memory_bytes(&self) -> usize {
        self.inner.index.memory_bytes()
    }

    /// The error that poisoned the engine, if any.
    pub fn poisoned(&self) -> Option<String> {
        self.inner.poison.lock().expect("poison lock").clone()
    }

    /// Test hook: poisons the engine as a failed fsync would.
    #[doc(hidden)]
    pub fn poison_for_test(&self, reason: &str) {
        self.inner.set_poison(reason.to_string());
    }
}

impl Inner {
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().expect("writer lock poisoned")
    }

    pub(crate) fn segments_read(&self) -> RwLockReadGuard<'_, SegmentTable> {
        self.segments.read().expect("segment table lock poisoned")
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            let reason = self
                .poison
                .lock()
                .expect("poison lock")
                .clone()
                .unwrap_or_default();
            return Err(Error::Poisoned { reason });
        }
        Ok(())
    }

    pub(crate) fn set_poison(&self, reason: String) {
        let mut poison = self.poison.lock().expect("poison lock");
        if poison.is_none() {
            (self.config.logger)(
                LogLevel::Error,
                &format!("engine poisoned, refusing writes from now on: {reason}"),
            );
            *poison = Some(reason);
        }
        self.poisoned.store(true, Ordering::Release);
    }
}
