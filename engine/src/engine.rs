//! The engine: the write path (one writer at a time, group commit), the read path (sharded
//! index, records read in place from the mapping), transactions, scans, and the background
//! threads (flush every second, compaction, active expiry).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::backend::{Backend, DirLock};
use crate::compaction::{self, CompactionReport, CompactionStep};
use crate::error::{Error, Result};
use crate::format::{
    self, Namespace, RecordKind, FLAG_IN_BATCH, KEY_BYTES_MAX, RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES, VALUE_BYTES_MAX,
};
use crate::index::{Index, Location, Shard, Slot, SHARD_COUNT};
use crate::recovery::{self, CreateError, RecoveryReport};
use crate::segment::{Segment, SegmentSlot, SegmentWriter, SEGMENT_CAPACITY_ALIGN_BYTES};
use crate::sim::SimDisk;

/// When a write is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Durable before the write call returns; concurrent writers share one flush (group commit).
    Always,
    /// A background flush runs every second: a crash loses at most about the last second.
    EverySec,
    /// The operating system writes pages back when it likes.
    No,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "always" => Ok(Durability::Always),
            "everysec" => Ok(Durability::EverySec),
            "no" => Ok(Durability::No),
            other => Err(format!(
                "unknown fsync policy '{other}' (expected always, everysec or no)"
            )),
        }
    }
}

/// Where the data lives.
#[derive(Clone, Debug)]
pub enum Storage {
    /// Segment files in this directory (created if missing).
    Directory(PathBuf),
    /// Anonymous memory: the same engine, no files, nothing survives the process.
    Memory,
    /// Segment files in this directory of a simulated disk (power-loss and fault-injection
    /// tests; see `sim`).
    Simulated { disk: SimDisk, dir: PathBuf },
}

/// The time source: injected so tests can move time.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock(AtomicU64::new(now_ms))
    }
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Where the engine reports what it notices (a truncated torn tail, a bad hint file, a
/// compaction). The server sends it to its log.
pub type Logger = Arc<dyn Fn(&str) + Send + Sync>;

/// Background compaction settings.
#[derive(Clone, Debug)]
pub struct CompactionConfig {
    /// Run compaction and active expiry on a background thread.
    pub background: bool,
    /// A sealed segment is merged once this share of its bytes is dead.
    pub garbage_ratio_min: f64,
    /// How often the background thread looks for work.
    pub interval_ms: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            background: true,
            garbage_ratio_min: 0.5,
            interval_ms: 1000,
        }
    }
}

/// Engine settings.
#[derive(Clone)]
pub struct Config {
    pub storage: Storage,
    pub durability: Durability,
    /// Size of a new segment; a record larger than this gets a segment of its own size.
    pub segment_bytes: usize,
    pub compaction: CompactionConfig,
    /// Check each record's CRC when it is read (not only at recovery).
    pub verify_checksums_on_read: bool,
    pub clock: Arc<dyn Clock>,
    pub logger: Logger,
    /// Test hook: a compaction asks it before each step and stops (as if the process died) when
    /// it answers true.
    pub compaction_fail_point: Option<Arc<dyn Fn(CompactionStep) -> bool + Send + Sync>>,
    /// Seal rotated segments on the `flin-seal` thread (the default). `false` seals each one
    /// inside the rotation, after the next segment exists: slower writes, but every file
    /// operation then happens in an order the writer alone decides, so a simulated-disk test
    /// replays exactly from its seed.
    pub background_sealing: bool,
}

/// Smallest segment size accepted (room for the header and some records).
pub const SEGMENT_BYTES_MIN: usize = 4096;
/// Largest segment: offsets in the index are 32 bits.
pub const SEGMENT_BYTES_MAX: usize = u32::MAX as usize;

impl Config {
    /// Defaults for a data directory: `everysec`, 64 MiB segments, background compaction.
    pub fn directory(path: impl Into<PathBuf>) -> Config {
        Config {
            storage: Storage::Directory(path.into()),
            durability: Durability::EverySec,
            segment_bytes: 64 << 20,
            compaction: CompactionConfig::default(),
            verify_checksums_on_read: true,
            clock: Arc::new(SystemClock),
            logger: Arc::new(|line: &str| eprintln!("flin-engine: {line}")),
            compaction_fail_point: None,
            background_sealing: true,
        }
    }

    /// Defaults for a directory on a simulated disk (as `directory`).
    pub fn simulated(disk: &SimDisk, dir: impl Into<PathBuf>) -> Config {
        Config {
            storage: Storage::Simulated {
                disk: disk.clone(),
                dir: dir.into(),
            },
            ..Config::directory("")
        }
    }

    /// Defaults for memory mode.
    pub fn memory() -> Config {
        Config {
            storage: Storage::Memory,
            durability: Durability::No,
            ..Config::directory("")
        }
    }

    pub fn durability(mut self, durability: Durability) -> Config {
        self.durability = durability;
        self
    }

    pub fn segment_bytes(mut self, bytes: usize) -> Config {
        self.segment_bytes = bytes;
        self
    }

    pub fn background_compaction(mut self, on: bool) -> Config {
        self.compaction.background = on;
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Config {
        self.clock = clock;
        self
    }

    pub fn logger(mut self, logger: Logger) -> Config {
        self.logger = logger;
        self
    }
}

/// What the write path needs of one write: implemented by `OpView`, a put or delete
/// borrowing its key and value (from a `WriteBatch`'s buffer, or from `Engine::put`'s
/// arguments, which then allocates nothing).
pub(crate) trait WriteOp {
    fn namespace(&self) -> Namespace;
    fn key(&self) -> &[u8];
    /// Value and expiry of a put; `None` for a delete.
    fn put_value(&self) -> Option<(&[u8], u64)>;

    fn record_len(&self) -> usize {
        format::record_len(
            self.key().len(),
            self.put_value().map_or(0, |(v, _)| v.len()),
        )
    }

    fn validate(&self) -> Result<()> {
        if self.key().len() > KEY_BYTES_MAX {
            return Err(Error::TooLarge {
                field: "key",
                bytes: self.key().len(),
                limit: KEY_BYTES_MAX,
            });
        }
        if let Some((value, expiry_ms)) = self.put_value() {
            if value.len() > VALUE_BYTES_MAX {
                return Err(Error::TooLarge {
                    field: "value",
                    bytes: value.len(),
                    limit: VALUE_BYTES_MAX,
                });
            }
            if expiry_ms > format::EXPIRY_MS_MAX {
                return Err(Error::Invalid(format!(
                    "expiry {expiry_ms} ms is out of range"
                )));
            }
        }
        Ok(())
    }
}

/// One write, borrowing its key and value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpView<'a> {
    namespace: Namespace,
    key: &'a [u8],
    /// Value and expiry of a put; `None` for a delete.
    put: Option<(&'a [u8], u64)>,
}

impl WriteOp for OpView<'_> {
    fn namespace(&self) -> Namespace {
        self.namespace
    }

    fn key(&self) -> &[u8] {
        self.key
    }

    fn put_value(&self) -> Option<(&[u8], u64)> {
        self.put
    }
}

/// Bytes a group of writes takes in the log: one record, or a batch record around them.
fn encoded_len<O: WriteOp>(ops: &[O]) -> usize {
    match ops.len() {
        1 => ops[0].record_len(),
        _ => RECORD_HEADER_BYTES + ops.iter().map(WriteOp::record_len).sum::<usize>(),
    }
}

/// Several writes applied all-or-nothing, also across a crash. Keys and values are copied
/// into one buffer, back to back: a batch of a hundred puts makes a few allocations as it
/// grows, not two per put (they were a tenth of a batched put's time).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Every op's key, then (for a put) its value.
    bytes: Vec<u8>,
    ops: Vec<BatchOp>,
}

/// Where one write of a `WriteBatch` lies in its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BatchOp {
    namespace: Namespace,
    /// Offset of the key in `WriteBatch::bytes`; the value follows the key.
    start: usize,
    key_len: usize,
    value_len: usize,
    /// `Some(expiry_ms)` for a put (0 = no expiry), `None` for a delete.
    expiry_ms: Option<u64>,
}

/// Most operations one batch may hold.
pub const BATCH_OPS_MAX: usize = 1 << 20;

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    pub fn put(
        &mut self,
        namespace: Namespace,
        key: &[u8],
        value: &[u8],
        expiry_ms: u64,
    ) -> &mut Self {
        self.push(namespace, key, value, Some(expiry_ms))
    }

    pub fn delete(&mut self, namespace: Namespace, key: &[u8]) -> &mut Self {
        self.push(namespace, key, &[], None)
    }

    fn push(
        &mut self,
        namespace: Namespace,
        key: &[u8],
        value: &[u8],
        expiry_ms: Option<u64>,
    ) -> &mut Self {
        self.ops.push(BatchOp {
            namespace,
            start: self.bytes.len(),
            key_len: key.len(),
            value_len: value.len(),
            expiry_ms,
        });
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(value);
        self
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Write number `i`.
    pub(crate) fn op(&self, i: usize) -> OpView<'_> {
        let op = &self.ops[i];
        let key_end = op.start + op.key_len;
        OpView {
            namespace: op.namespace,
            key: &self.bytes[op.start..key_end],
            put: op
                .expiry_ms
                .map(|expiry_ms| (&self.bytes[key_end..key_end + op.value_len], expiry_ms)),
        }
    }

    /// Every write, in order.
    pub(crate) fn views(&self) -> Vec<OpView<'_>> {
        (0..self.ops.len()).map(|i| self.op(i)).collect()
    }
}

/// A value read from the engine, borrowed from the mapping for the duration of a callback.
#[derive(Clone, Copy, Debug)]
pub struct ValueRef<'a> {
    pub value: &'a [u8],
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
    pub compactions: u64,
    pub compaction_reclaimed_bytes: u64,
    pub expired_keys_reclaimed: u64,
}

/// The segments in use, by slot. The engine's copy sits behind `Inner::segments`; every change
/// to it is published to the index shards (`Index::publish_segments`), whose snapshots lookups
/// use.
#[derive(Clone, Default)]
pub(crate) struct SegmentTable {
    slots: Vec<Option<Arc<Segment>>>,
    free: Vec<SegmentSlot>,
}

impl SegmentTable {
    pub fn get(&self, slot: SegmentSlot) -> &Arc<Segment> {
        self.slots[slot as usize]
            .as_ref()
            .unwrap_or_else(|| panic!("index points at empty segment slot {slot}"))
    }

    /// A free slot number for a segment about to be created.
    pub fn reserve(&mut self) -> Result<SegmentSlot> {
        if let Some(slot) = self.free.pop() {
            return Ok(slot);
        }
        if self.slots.len() > SegmentSlot::MAX as usize {
            return Err(Error::Invalid("too many segments (65536)".into()));
        }
        self.slots.push(None);
        Ok((self.slots.len() - 1) as SegmentSlot)
    }

    pub fn release(&mut self, slot: SegmentSlot) {
        assert!(
            self.slots[slot as usize].is_none(),
            "release of a slot in use"
        );
        self.free.push(slot);
    }

    pub fn install(&mut self, segment: Arc<Segment>) {
        let slot = segment.slot as usize;
        self.slots[slot] = Some(segment);
    }

    pub fn remove(&mut self, slot: SegmentSlot) -> Option<Arc<Segment>> {
        let removed = self.slots[slot as usize].take();
        if removed.is_some() {
            self.free.push(slot);
        }
        removed
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Segment>> {
        self.slots.iter().flatten()
    }
}

pub(crate) struct Writer {
    pub active: SegmentWriter,
    pub next_seq: u64,
}

#[derive(Default)]
struct SyncState {
    /// Every record with seq <= this is on disk.
    durable_seq: u64,
    /// A thread is flushing; others wait for it instead of flushing again.
    flushing: bool,
    /// How far the active segment has been flushed: (segment id, offset).
    flushed_segment_id: u64,
    flushed_offset: usize,
}

pub(crate) struct Inner {
    pub config: Config,
    /// The filesystem or the simulated disk: every file operation goes through it.
    pub backend: Backend,
    pub dir: Option<PathBuf>,
    _lock: Option<DirLock>,
    pub index: Index,
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
            segments: RwLock::new(recovered.segments),
            writer: Mutex::new(Writer {
                active: recovered.active,
                next_seq: recovered.last_seq + 1,
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
        Ok(Engine {
            inner,
            _threads: threads,
        })
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
        Ok(self
            .inner
            .lookup(namespace, key)
            .map(|slot| slot.expiry_ms()))
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
        let put = [OpView {
            namespace,
            key,
            put: Some((value, expiry_ms)),
        }];
        let seq = self.inner.append(&mut self.inner.lock_writer(), &put)?;
        self.wait_durable(Some(seq))?;
        Ok(seq)
    }

    /// Removes a key; returns whether it existed. Writes nothing if it did not.
    pub fn delete(&self, namespace: Namespace, key: &[u8]) -> Result<bool> {
        let committed = self.transaction(|txn| Ok(txn.delete(namespace, key)))?;
        self.wait_durable(committed.seq)?;
        Ok(committed.value)
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
        let ops = batch.views();
        let mut writer = self.inner.lock_writer();
        self.inner.append(&mut writer, &ops)
    }

    /// Runs `decide` with the writer lock held: it reads the current state, decides, and queues
    /// writes, which commit as one atomic record when it returns `Ok`. This is the seam where a
    /// command turns into a log record (replication will sit between decide and apply). Does not
    /// wait for durability: pass the returned seq to `wait_durable`.
    pub fn transaction<R>(
        &self,
        decide: impl FnOnce(&mut Txn<'_>) -> Result<R>,
    ) -> Result<Committed<R>> {
        let mut writer = self.inner.lock_writer();
        let mut txn = Txn {
            inner: &self.inner,
            batch: WriteBatch::new(),
            overlay: std::cell::OnceCell::new(),
            now_ms: self.inner.config.clock.now_ms(),
        };
        let value = decide(&mut txn)?;
        let seq = if txn.batch.is_empty() {
            None
        } else {
            Some(self.inner.append(&mut writer, &txn.batch.views())?)
        };
        Ok(Committed { value, seq })
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

    /// Every record with seq >= `from_seq`, in seq order (replication and streams read the log
    /// this way). Records that compaction dropped (overwritten, deleted) are gone.
    pub fn log_from(&self, from_seq: u64) -> crate::LogIter {
        crate::log_iter::LogIter::new(&self.inner, from_seq)
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

/// The result of a transaction: what `decide` returned and the seq of the record written, if
/// any.
#[derive(Debug)]
pub struct Committed<R> {
    pub value: R,
    pub seq: Option<u64>,
}

/// A transaction in progress (see `Engine::transaction`). Reads see the transaction's own
/// writes.
pub struct Txn<'a> {
    inner: &'a Inner,
    batch: WriteBatch,
    /// Latest queued op per key, for read-your-writes; built by the first read of a
    /// transaction that holds more than `OVERLAY_AFTER_OPS` writes (below that a linear scan is
    /// cheaper than hashing), then kept up to date by every write. A transaction that only
    /// writes (MSET) never builds it: hashing and copying each key again cost a quarter of the
    /// server's CPU in a 100-key MSET benchmark (docs/benchmarks.md, issue 4).
    overlay: std::cell::OnceCell<HashMap<(Namespace, Vec<u8>), usize>>,
    now_ms: u64,
}

const OVERLAY_AFTER_OPS: usize = 16;

/// Keys `get_many_with` looks up together: enough independent misses in flight to cover the
/// memory latency, few enough that the shard locks of one group are a handful.
const GET_MANY_GROUP: usize = 16;

/// Cache lines of each candidate record `get_many_with` loads ahead: a 16-byte key with a
/// 100-byte value spans three or four.
const GET_MANY_LINES_TOUCHED: usize = 4;

impl Txn<'_> {
    /// Index of the latest queued write of a key.
    fn pending_op(&self, namespace: Namespace, key: &[u8]) -> Option<usize> {
        let batch = &self.batch;
        if batch.len() <= OVERLAY_AFTER_OPS && self.overlay.get().is_none() {
            return (0..batch.len()).rev().find(|&at| {
                let op = batch.op(at);
                op.namespace == namespace && op.key == key
            });
        }
        let overlay = self.overlay.get_or_init(|| {
            (0..batch.len())
                .map(|at| {
                    let op = batch.op(at);
                    ((op.namespace, op.key.to_vec()), at)
                })
                .collect()
        });
        overlay.get(&(namespace, key.to_vec())).copied()
    }

    /// A queued write's value and expiry, if it is a put still live at the transaction's time.
    fn pending_value(&self, at: usize) -> Option<(&[u8], u64)> {
        self.batch
            .op(at)
            .put
            .filter(|&(_, expiry_ms)| expiry_ms == 0 || expiry_ms > self.now_ms)
    }

    /// The clock reading taken when the transaction started (all its expiry checks use it).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The key's current value, including this transaction's own writes; expired keys are
    /// absent.
    pub fn get(&self, namespace: Namespace, key: &[u8]) -> Result<Option<Value>> {
        if let Some(at) = self.pending_op(namespace, key) {
            return Ok(self.pending_value(at).map(|(value, expiry_ms)| Value {
                value: value.to_vec(),
                expiry_ms,
            }));
        }
        self.inner
            .get_with_at(namespace, key, Some(self.now_ms), |v| Value {
                value: v.value.to_vec(),
                expiry_ms: v.expiry_ms,
            })
    }

    /// Whether the key exists (seeing this transaction's writes).
    pub fn contains(&self, namespace: Namespace, key: &[u8]) -> Result<bool> {
        if let Some(at) = self.pending_op(namespace, key) {
            return Ok(self.pending_value(at).is_some());
        }
        Ok(self
            .inner
            .lookup_at(namespace, key, Some(self.now_ms))
            .is_some())
    }

    /// The key's version (see `Engine::version`) as committed before this transaction; keys
    /// this transaction wrote report `None` for "changed".
    pub fn version(&self, namespace: Namespace, key: &[u8]) -> Option<u64> {
        if self.pending_op(namespace, key).is_some() {
            return None;
        }
        self.inner.version_at(namespace, key, Some(self.now_ms))
    }

    /// Queues a put.
    pub fn put(
        &mut self,
        namespace: Namespace,
        key: &[u8],
        value: &[u8],
        expiry_ms: u64,
    ) -> Result<()> {
        OpView {
            namespace,
            key,
            put: Some((value, expiry_ms)),
        }
        .validate()?;
        self.push(namespace, key, value, Some(expiry_ms))
    }

    /// Queues a delete if the key exists; returns whether it did.
    pub fn delete(&mut self, namespace: Namespace, key: &[u8]) -> bool {
        if !self.contains(namespace, key).unwrap_or(false) {
            return false;
        }
        self.push(namespace, key, &[], None).is_ok()
    }

    fn push(
        &mut self,
        namespace: Namespace,
        key: &[u8],
        value: &[u8],
        expiry_ms: Option<u64>,
    ) -> Result<()> {
        if self.batch.len() >= BATCH_OPS_MAX {
            return Err(Error::Invalid(format!(
                "transaction exceeds {BATCH_OPS_MAX} writes"
            )));
        }
        self.batch.push(namespace, key, value, expiry_ms);
        if let Some(overlay) = self.overlay.get_mut() {
            overlay.insert((namespace, key.to_vec()), self.batch.len() - 1);
        }
        Ok(())
    }

    /// Writes queued so far.
    pub fn pending(&self) -> usize {
        self.batch.len()
    }
}

impl BackgroundThreads {
    fn spawn(&self, name: &str, work: impl FnOnce() + Send + 'static) {
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(work)
            .expect("spawn engine thread");
        self.handles.lock().expect("handles lock").push(handle);
    }
}

impl Inner {
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().expect("writer lock poisoned")
    }

    pub(crate) fn segments_read(&self) -> RwLockReadGuard<'_, SegmentTable> {
        self.segments.read().expect("segment table lock poisoned")
    }

    fn check_writable(&self) -> Result<()> {
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
            (self.config.logger)(&format!(
                "engine poisoned, refusing writes from now on: {reason}"
            ));
            *poison = Some(reason);
        }
        self.poisoned.store(true, Ordering::Release);
    }

    /// Whether the record at `location` holds `key` in `namespace`.
    pub(crate) fn record_is(
        table: &SegmentTable,
        location: Location,
        namespace_tag: u8,
        key: &[u8],
    ) -> bool {
        let segment = table.get(location.segment);
        let offset = location.offset as usize;
        let header = segment.bytes(offset, RECORD_HEADER_BYTES);
        let (key_len, _) = format::peek_lengths(header);
        // Checked read: the location may come from a hint file only sampled at recovery.
        key_len == key.len()
            && header[5] == namespace_tag
            && segment.bytes_checked(offset + RECORD_HEADER_BYTES, key_len) == Some(key)
    }

    /// Whether a slot has expired at `now_ms`, or now if `None`: most keys have no expiry, so
    /// the clock is only read for those that do.
    fn has_expired(&self, slot: &Slot, now_ms: Option<u64>) -> bool {
        slot.expiry_ms() != 0
            && slot.is_expired(now_ms.unwrap_or_else(|| self.config.clock.now_ms()))
    }

    /// `record_is` for the read path: whether the record at `location` holds `key`, or else is
    /// damaged (fails to decode, checksum included). Only a slot whose 32-bit tag matches gets
    /// here, so a record holding another key is almost always another key with the same tag;
    /// but in a segment loaded from a hint file (whose records recovery did not read) it may be
    /// this key's own record, damaged. The read claims such a slot and reports the damage,
    /// rather than calling the key missing. The check is off the way of a hit, and of nearly
    /// every miss. (`record_is`'s body, not a call to it: the wrapper cost a hit ~10
    /// instructions.)
    fn record_is_or_damaged(
        table: &SegmentTable,
        location: Location,
        namespace_tag: u8,
        key: &[u8],
    ) -> bool {
        let segment = table.get(location.segment);
        let offset = location.offset as usize;
        let header = segment.bytes(offset, RECORD_HEADER_BYTES);
        let (key_len, _) = format::peek_lengths(header);
        (key_len == key.len()
            && header[5] == namespace_tag
            && segment.bytes_checked(offset + RECORD_HEADER_BYTES, key_len) == Some(key))
            || Inner::is_damaged(segment, offset)
    }

    #[cold]
    #[inline(never)]
    fn is_damaged(segment: &Segment, offset: usize) -> bool {
        segment.loaded_from_hints() && segment.record_at(offset, true).is_err()
    }

    fn lookup_at(&self, namespace: Namespace, key: &[u8], now_ms: Option<u64>) -> Option<Slot> {
        let hash = key_hash(namespace.tag(), key);
        let shard = self.index.read(Index::shard_of(hash));
        let position = shard.table.find(hash, |l| {
            Inner::record_is(&shard.segments, l, namespace.tag(), key)
        })?;
        let slot = shard.table.slot(position);
        (!self.has_expired(&slot, now_ms)).then_some(slot)
    }

    fn version_at(&self, namespace: Namespace, key: &[u8], now_ms: Option<u64>) -> Option<u64> {
        let hash = key_hash(namespace.tag(), key);
        let shard = self.index.read(Index::shard_of(hash));
        let position = shard.table.find(hash, |l| {
            Inner::record_is(&shard.segments, l, namespace.tag(), key)
        })?;
        let slot = shard.table.slot(position);
        if self.has_expired(&slot, now_ms) {
            return None;
        }
        let location = slot.location();
        Some(format::peek_seq(
            shard
                .segments
                .get(location.segment)
                .bytes(location.offset as usize, RECORD_HEADER_BYTES),
        ))
    }

    fn lookup(&self, namespace: Namespace, key: &[u8]) -> Option<Slot> {
        self.lookup_at(namespace, key, None)
    }

    fn get_with<R>(
        &self,
        namespace: Namespace,
        key: &[u8],
        read: impl FnOnce(ValueRef<'_>) -> R,
    ) -> Result<Option<R>> {
        self.get_with_at(namespace, key, None, read)
    }

    fn get_with_at<R>(
        &self,
        namespace: Namespace,
        key: &[u8],
        now_ms: Option<u64>,
        read: impl FnOnce(ValueRef<'_>) -> R,
    ) -> Result<Option<R>> {
        let hash = key_hash(namespace.tag(), key);
        let shard = self.index.read(Index::shard_of(hash));
        self.read_in_shard(&shard, namespace, key, hash, now_ms, read)
    }

    /// Looks a key up in its shard (locked by the caller) and hands its value to `read`.
    fn read_in_shard<R>(
        &self,
        shard: &Shard,
        namespace: Namespace,
        key: &[u8],
        hash: u64,
        now_ms: Option<u64>,
        read: impl FnOnce(ValueRef<'_>) -> R,
    ) -> Result<Option<R>> {
        // A damaged record claims the slot whose tag it matches, so that the read below reports
        // it (see `record_is_or_damaged`).
        let Some(position) = shard.table.find(hash, |l| {
            Inner::record_is_or_damaged(&shard.segments, l, namespace.tag(), key)
        }) else {
            return Ok(None);
        };
        let slot = shard.table.slot(position);
        if self.has_expired(&slot, now_ms) {
            return Ok(None);
        }
        let location = slot.location();
        let segment = shard.segments.get(location.segment);
        match segment.record_at(
            location.offset as usize,
            self.config.verify_checksums_on_read,
        ) {
            Ok(record) => Ok(Some(read(ValueRef {
                value: record.value,
                expiry_ms: slot.expiry_ms(),
            }))),
            Err(format::DecodeError::Corrupt(c)) => {
                Err(Error::corrupt(segment.display_path(), c.offset, c.reason))
            }
            Err(other) => Err(Error::corrupt(
                segment.display_path(),
                location.offset as u64,
                format!("indexed record unreadable: {other:?}"),
            )),
        }
    }

    /// `Engine::get_many_with`: groups of up to `GET_MANY_GROUP` keys. Each group locks its
    /// shards (in shard order, as batch writers do, so neither can deadlock the other), then
    /// makes three passes: load every key's home slot, load every first candidate's record
    /// header, then do the real lookups, which find both in cache. The loads of one pass do not
    /// depend on each other, so their cache and TLB misses overlap.
    fn get_many_with<K: AsRef<[u8]>>(
        &self,
        namespace: Namespace,
        keys: &[K],
        mut read: impl FnMut(usize, Option<ValueRef<'_>>),
    ) -> Result<()> {
        let tag = namespace.tag();
        for (group_number, group) in keys.chunks(GET_MANY_GROUP).enumerate() {
            let first = group_number * GET_MANY_GROUP;
            let mut hashes = [0u64; GET_MANY_GROUP];
            let mut by_shard = [0usize; GET_MANY_GROUP];
            for (i, key) in group.iter().enumerate() {
                hashes[i] = key_hash(tag, key.as_ref());
                by_shard[i] = i;
            }
            let by_shard = &mut by_shard[..group.len()];
            by_shard.sort_unstable_by_key(|&i| Index::shard_of(hashes[i]));
            let mut guards: [Option<RwLockReadGuard<'_, Shard>>; GET_MANY_GROUP] =
                std::array::from_fn(|_| None);
            let mut guard_of = [0usize; GET_MANY_GROUP];
            let mut locked = 0;
            let mut previous = usize::MAX;
            for &i in by_shard.iter() {
                let shard = Index::shard_of(hashes[i]);
                if shard != previous {
                    guards[locked] = Some(self.index.read(shard));
                    locked += 1;
                    previous = shard;
                }
                guard_of[i] = locked - 1;
            }
            let shard_of_key = |i: usize| guards[guard_of[i]].as_deref().expect("locked");
            let mut touched = 0u64;
            for (i, &hash) in hashes[..group.len()].iter().enumerate() {
                touched ^= shard_of_key(i).table.home_tag(hash) as u64;
            }
            for (i, &hash) in hashes[..group.len()].iter().enumerate() {
                let shard = shard_of_key(i);
                if let Some(location) = shard.table.first_candidate(hash) {
                    // The first cache lines of the record: its header, key and (for small
                    // values) all of the value, which the CRC check reads whole.
                    let segment = shard.segments.get(location.segment);
                    let bytes = segment.bytes_from(location.offset as usize);
                    for line in bytes.iter().step_by(64).take(GET_MANY_LINES_TOUCHED) {
                        touched ^= *line as u64;
                    }
                }
            }
            std::hint::black_box(touched);
            for (i, key) in group.iter().enumerate() {
                let shard = shard_of_key(i);
                let found =
                    self.read_in_shard(shard, namespace, key.as_ref(), hashes[i], None, |v| {
                        read(first + i, Some(v))
                    })?;
                if found.is_none() {
                    read(first + i, None);
                }
            }
        }
        Ok(())
    }

    /// Appends a batch as one record (or a batch record) and updates the index. Caller holds
    /// the writer lock.
    pub(crate) fn append<O: WriteOp>(&self, writer: &mut Writer, ops: &[O]) -> Result<u64> {
        self.check_writable()?;
        if ops.is_empty() || ops.len() > BATCH_OPS_MAX {
            return Err(Error::Invalid(format!(
                "batch of {} writes is outside 1..={BATCH_OPS_MAX}",
                ops.len()
            )));
        }
        for op in ops {
            op.validate()?;
        }
        let total = encoded_len(ops);
        if total > SEGMENT_BYTES_MAX - SEGMENT_HEADER_BYTES {
            return Err(Error::TooLarge {
                field: "batch",
                bytes: total,
                limit: SEGMENT_BYTES_MAX - SEGMENT_HEADER_BYTES,
            });
        }
        // A sealed active segment means an earlier rotation sealed it but could not create the
        // next one (a full disk, say): try again rather than write past its end.
        if total > writer.active.remaining() || writer.active.segment.is_sealed() {
            self.rotate(writer, total)?;
        }
        let seq = writer.next_seq;
        let single = ops.len() == 1;
        let start = writer
            .active
            .append(total, |out| encode_batch(out, ops, seq));
        writer.active.publish();
        let segment = writer.active.segment.clone();
        segment.note_appended_seq(seq);
        let first_record = if single {
            start
        } else {
            start + RECORD_HEADER_BYTES
        };
        if !single {
            // The batch header itself is overhead compaction reclaims.
            segment.add_dead(RECORD_HEADER_BYTES);
        }
        self.apply_to_index(&segment, first_record, ops);
        writer.next_seq += 1;
        self.last_seq.store(seq, Ordering::Release);
        // Only writers holding the writer lock change it: a load and a store, not a locked add.
        self.writes
            .store(self.writes.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        Ok(seq)
    }

    /// Points the index at freshly appended records. Every shard the batch touches is locked
    /// (in shard order, so two writers cannot deadlock) before any changes, so no reader sees
    /// half a batch.
    fn apply_to_index<O: WriteOp>(&self, segment: &Arc<Segment>, first_record: usize, ops: &[O]) {
        if let [op] = ops {
            // One write, one shard: no bookkeeping to allocate.
            let hash = key_hash(op.namespace().tag(), op.key());
            let mut shard = self.index.write(Index::shard_of(hash));
            self.apply_one(&mut shard, segment, op, hash, first_record);
            return;
        }
        let hashes: Vec<u64> = ops
            .iter()
            .map(|op| key_hash(op.namespace().tag(), op.key()))
            .collect();
        let mut shards: Vec<usize> = hashes.iter().map(|&h| Index::shard_of(h)).collect();
        shards.sort_unstable();
        shards.dedup();
        let mut guards: Vec<_> = shards.iter().map(|&s| (s, self.index.write(s))).collect();
        let guard_of: Vec<usize> = hashes
            .iter()
            .map(|&hash| {
                guards
                    .binary_search_by_key(&Index::shard_of(hash), |(s, _)| *s)
                    .expect("shard locked")
            })
            .collect();
        // As in `get_many_with`: load every key's home slot, then the record a matching tag
        // points at (an overwrite compares keys there), before changing anything, so the
        // batch's cache misses overlap instead of coming one per key.
        let mut touched = 0u64;
        for (&hash, &at) in hashes.iter().zip(&guard_of) {
            touched ^= guards[at].1.table.home_tag(hash) as u64;
        }
        for (&hash, &at) in hashes.iter().zip(&guard_of) {
            let shard = &guards[at].1;
            if let Some(location) = shard.table.first_candidate(hash) {
                let candidate = shard.segments.get(location.segment);
                touched ^= candidate.bytes(location.offset as usize, 1)[0] as u64;
            }
        }
        std::hint::black_box(touched);
        let mut offset = first_record;
        for ((op, &hash), &at) in ops.iter().zip(&hashes).zip(&guard_of) {
            self.apply_one(&mut guards[at].1, segment, op, hash, offset);
            offset += op.record_len();
        }
    }

    /// Points the index at one record written at `offset` of `segment`.
    fn apply_one<O: WriteOp>(
        &self,
        shard: &mut Shard,
        segment: &Arc<Segment>,
        op: &O,
        hash: u64,
        offset: usize,
    ) {
        let location = Location {
            segment: segment.slot,
            offset: offset as u32,
        };
        let Shard { table, segments } = shard;
        let tag = op.namespace().tag();
        let found = table.find(hash, |l| Inner::record_is(segments, l, tag, op.key()));
        if let Some(position) = found {
            Inner::mark_dead(segments, table.slot(position).location());
        }
        match (op.put_value(), found) {
            (Some((_, expiry_ms)), Some(position)) => {
                table.replace(position, Slot::new(hash, location, expiry_ms))
            }
            (Some((_, expiry_ms)), None) => {
                table.insert_new(Slot::new(hash, location, expiry_ms));
                self.key_counts[tag as usize].fetch_add(1, Ordering::Relaxed);
            }
            (None, found) => {
                if let Some(position) = found {
                    table.remove_at(position);
                    self.key_counts[tag as usize].fetch_sub(1, Ordering::Relaxed);
                }
                // A tombstone is dead from birth: it only shadows older records.
                segment.add_dead(op.record_len());
            }
        }
    }

    /// Adds the length of the record at `location` to its segment's dead bytes (tombstones
    /// were counted dead when written).
    pub(crate) fn mark_dead(segments: &SegmentTable, location: Location) {
        let segment = segments.get(location.segment);
        let header = segment.bytes(location.offset as usize, RECORD_HEADER_BYTES);
        if header[4] == RecordKind::Delete as u8 {
            return;
        }
        let (key_len, value_len) = format::peek_lengths(header);
        segment.add_dead(format::record_len(key_len, value_len));
    }

    /// Starts a new active segment with room for `needed` bytes. The old one takes no more
    /// appends at once; flushing it, cutting it to its last record and remapping it read-only
    /// (a 64 MiB write-back under `everysec` or `no`) happens on the sealer thread, so the
    /// writer lock is not held through it. Until then, every flush covers it too (`flush_active`).
    fn rotate(&self, writer: &mut Writer, needed: usize) -> Result<()> {
        let old = writer.active.segment.clone();
        // At most one segment waits for its seal: finish an earlier one here if need be.
        let earlier = self.seal_pending.lock().expect("seal lock").clone();
        if let Some(earlier) = earlier {
            if !Arc::ptr_eq(&earlier, &old) {
                self.seal_segment(&earlier)?;
            }
        }
        // From here the old segment takes no more appends, even if creating the next one fails.
        old.mark_sealed();
        if old.is_memory() {
            old.mark_durably_sealed();
        } else if old.published() == SEGMENT_HEADER_BYTES {
            // No records (a write too large for a fresh segment): sealing costs one truncate and
            // fsync, and done before the next segment exists it lets recovery read an unsealed
            // segment without records as one whose records were all lost.
            self.seal_segment(&old)?;
        } else if !old.is_durably_sealed() {
            *self.seal_pending.lock().expect("seal lock") = Some(old);
            self.seal_wanted.notify_one();
        }
        let capacity = (needed + SEGMENT_HEADER_BYTES)
            .max(self.config.segment_bytes)
            .next_multiple_of(SEGMENT_CAPACITY_ALIGN_BYTES);
        let segment = self.create_segment(capacity)?;
        if self.config.background_sealing {
            self.request_prefault(segment.clone());
        }
        writer.active = SegmentWriter::new(segment).expect("new segment has no writer");
        if !self.config.background_sealing {
            let pending = self.seal_pending.lock().expect("seal lock").clone();
            if let Some(pending) = pending {
                self.seal_segment(&pending)?;
            }
        }
        Ok(())
    }

    /// Flushes a sealed segment, cuts its file to the last record, fsyncs it, and swaps in a
    /// read-only mapping. Idempotent. A failure poisons the engine (its records may not be on
    /// disk, and the flush will not be retried).
    fn seal_segment(&self, segment: &Arc<Segment>) -> Result<()> {
        let _sealing = self.seal_lock.lock().expect("seal lock");
        if !segment.is_durably_sealed() {
            // After a failed flush nothing is flushed again (decision 10).
            self.check_writable()?;
            // Nothing writes this segment any more: its page-table entries can go before the
            // flush, which then sends no TLB-shootdown interrupt per page to the writer's core.
            segment.drop_page_entries(segment.published());
            let sealed = segment
                .flush_range(0, segment.published())
                .and_then(|_| segment.truncate_to_published())
                .and_then(|_| segment.reopen_read_only(&self.backend));
            match sealed {
                Ok(Some(read_only)) => {
                    let mut table = self.segments.write().expect("segment table lock");
                    table.install(Arc::new(read_only));
                    self.index.publish_segments(&table);
                    drop(table);
                    segment.mark_durably_sealed();
                }
                Ok(None) => segment.mark_durably_sealed(),
                Err(e) => {
                    self.set_poison(e.to_string());
                    return Err(e);
                }
            }
        }
        let mut pending = self.seal_pending.lock().expect("seal lock");
        if pending.as_ref().is_some_and(|p| Arc::ptr_eq(p, segment)) {
            *pending = None;
        }
        Ok(())
    }

    /// Seals the segment waiting for the sealer thread, if any, on this thread: compaction and
    /// hint writing only take durably sealed segments, and a caller asking for either now
    /// should not depend on how far the sealer has got.
    pub(crate) fn finish_pending_seal(&self) -> Result<()> {
        let pending = self.seal_pending.lock().expect("seal lock").clone();
        match pending {
            Some(segment) => self.seal_segment(&segment),
            None => Ok(()),
        }
    }

    /// The sealer thread: seals what rotation hands over, and finishes before shutdown.
    /// Asks the sealer thread to fault in the pages of a new active segment.
    fn request_prefault(&self, segment: Arc<Segment>) {
        let _wake_after = self.seal_pending.lock().expect("seal lock");
        *self.prefault_wanted.lock().expect("prefault lock") = Some(segment);
        self.seal_wanted.notify_one();
    }

    /// Faults in the unwritten pages of the active segment, a few MiB at a time, ahead of the
    /// writer: the page faults (page-cache allocation and zeroing, `page_mkwrite` for a file)
    /// were a fifth of a put's time when the writer took them itself.
    fn prefault(&self, segment: &Segment) {
        const CHUNK_BYTES: usize = 4 << 20;
        let mut from =
            segment.published() / SEGMENT_CAPACITY_ALIGN_BYTES * SEGMENT_CAPACITY_ALIGN_BYTES;
        let end = segment.capacity();
        while from < end {
            if segment.is_sealed() || *self.shutdown.lock().expect("shutdown lock") {
                return;
            }
            let to = (from + CHUNK_BYTES).min(end);
            if segment.prefault(from, to).is_err() {
                return;
            }
            from = to;
        }
    }

    /// The sealer thread: prefaults each new active segment, seals what rotation hands over,
    /// and finishes before shutdown.
    fn seal_in_background(&self) {
        loop {
            let (pending, prefault) = {
                let pending = self.seal_pending.lock().expect("seal lock");
                // Shutdown also notifies `seal_wanted`; the timeout is only a backstop.
                let stopping = || *self.shutdown.lock().expect("shutdown lock");
                let prefault_wanted = || {
                    self.prefault_wanted
                        .lock()
                        .expect("prefault lock")
                        .is_some()
                };
                let (pending, _) = self
                    .seal_wanted
                    .wait_timeout_while(pending, Duration::from_millis(100), |p| {
                        p.is_none() && !prefault_wanted() && !stopping()
                    })
                    .expect("seal lock");
                let prefault = self.prefault_wanted.lock().expect("prefault lock").take();
                (pending.clone(), prefault)
            };
            // The writer is waiting on page faults now; the seal only has to finish before the
            // next rotation.
            if let Some(segment) = &prefault {
                self.prefault(segment);
            }
            if let Some(segment) = pending {
                if let Err(e) = self.seal_segment(&segment) {
                    // The engine is poisoned: no rotation hands over another segment, and
                    // trying this one again would retry a failed flush. The next open finishes
                    // the seal from what is on disk.
                    (self.config.logger)(&format!("sealing segment {} failed: {e}", segment.id));
                    return;
                }
            } else if prefault.is_none() && *self.shutdown.lock().expect("shutdown lock") {
                return;
            }
        }
    }

    /// Creates a log segment and installs it in the table.
    pub(crate) fn create_segment(&self, capacity: usize) -> Result<Arc<Segment>> {
        let id = self.next_segment_id.fetch_add(1, Ordering::Relaxed);
        let slot = self
            .segments
            .write()
            .expect("segment table lock")
            .reserve()?;
        let created =
            recovery::create_log_segment(&self.backend, self.dir.as_deref(), id, slot, capacity);
        let mut table = self.segments.write().expect("segment table lock");
        match created {
            Ok(segment) => {
                let segment = Arc::new(segment);
                table.install(segment.clone());
                self.index.publish_segments(&table);
                Ok(segment)
            }
            Err(e) => {
                table.release(slot);
                if let CreateError::InstalledUnsynced(e) = &e {
                    // The new segment may or may not be in the directory after a power loss, and
                    // a retried fsync could lie: refuse writes, as after any failed fsync. (It
                    // stays the newest log segment, so the next open takes it as the tail.)
                    self.set_poison(e.to_string());
                }
                Err(e.into_error())
            }
        }
    }

    /// Flushes the active segment up to what is written now; returns the seq that is durable.
    fn flush_active(&self) -> Result<u64> {
        let (segment, to, seq, sealing) = {
            let writer = self.lock_writer();
            (
                writer.active.segment.clone(),
                writer.active.segment.published(),
                self.last_seq.load(Ordering::Acquire),
                self.seal_pending.lock().expect("seal lock").clone(),
            )
        };
        // Records of a segment still waiting for its seal are older than the active ones: they
        // must be on disk before this flush may declare `seq` durable.
        if let Some(sealing) = sealing {
            sealing.flush_range(0, sealing.published())?;
        }
        let from = {
            let state = self.sync.lock().expect("sync lock");
            if state.flushed_segment_id == segment.id {
                state.flushed_offset
            } else {
                0
            }
        };
        segment.flush_range(from, to)?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        let mut state = self.sync.lock().expect("sync lock");
        state.flushed_segment_id = segment.id;
        state.flushed_offset = to;
        Ok(seq)
    }

    /// Makes `seq` durable, sharing one flush among all threads waiting at the same time.
    pub(crate) fn sync_to(&self, seq: u64) -> Result<()> {
        if self.dir.is_none() {
            return Ok(());
        }
        let mut state = self.sync.lock().expect("sync lock");
        loop {
            if state.durable_seq >= seq {
                return Ok(());
            }
            if self.poisoned.load(Ordering::Acquire) {
                drop(state);
                return self.check_writable();
            }
            if state.flushing {
                state = self.sync_done.wait(state).expect("sync lock");
                continue;
            }
            state.flushing = true;
            drop(state);
            let result = self.flush_active();
            state = self.sync.lock().expect("sync lock");
            state.flushing = false;
            match result {
                Ok(durable) => state.durable_seq = state.durable_seq.max(durable),
                Err(e) => {
                    // After a failed fsync the kernel may have dropped the dirty pages:
                    // retrying could report success for data that is gone. Poison for good.
                    self.set_poison(e.to_string());
                }
            }
            self.sync_done.notify_all();
        }
    }

    pub(crate) fn flush(&self) -> Result<()> {
        let seq = self.last_seq.load(Ordering::Acquire);
        self.sync_to(seq)
    }

    fn wait_for_shutdown(&self, timeout: Duration) -> bool {
        let stopped = self.shutdown.lock().expect("shutdown lock");
        let (stopped, _) = self
            .shutdown_signal
            .wait_timeout_while(stopped, timeout, |stopped| !*stopped)
            .expect("shutdown lock");
        *stopped
    }

    fn flush_every_second(&self) {
        while !self.wait_for_shutdown(Duration::from_secs(1)) {
            let _ = self.flush();
        }
    }

    fn background_maintenance(&self) {
        let interval = Duration::from_millis(self.config.compaction.interval_ms.max(10));
        // Active expiry walks a slice of the shards each round, so a large index is never
        // locked for long.
        let mut next_shard = 0;
        const SHARDS_PER_ROUND: usize = 64;
        while !self.wait_for_shutdown(interval) {
            let end = (next_shard + SHARDS_PER_ROUND).min(SHARD_COUNT);
            self.reclaim_expired(next_shard..end);
            next_shard = if end == SHARD_COUNT { 0 } else { end };
            if self.poisoned.load(Ordering::Acquire) {
                continue;
            }
            let started = Instant::now();
            match compaction::compact(self, self.config.compaction.garbage_ratio_min) {
                Ok(report) if report.segments_in > 0 => (self.config.logger)(&format!(
                    "compacted {} segments into {}: reclaimed {} bytes in {} ms",
                    report.segments_in,
                    report.segments_out,
                    report.bytes_reclaimed,
                    started.elapsed().as_millis()
                )),
                Ok(_) => {}
                Err(e) => (self.config.logger)(&format!("compaction failed: {e}")),
            }
            if let Err(e) = compaction::write_missing_hints(self) {
                (self.config.logger)(&format!("hint file writing failed: {e}"));
            }
        }
    }

    /// Drops expired keys of the given shards from the index. Nothing is written: recovery
    /// treats an expired record as a tombstone, and compaction drops it.
    pub(crate) fn reclaim_expired(&self, shards: std::ops::Range<usize>) -> usize {
        let now_ms = self.config.clock.now_ms();
        let mut reclaimed = 0;
        for shard in shards {
            if !self
                .index
                .read(shard)
                .table
                .iter()
                .any(|s| s.is_expired(now_ms))
            {
                continue;
            }
            let mut guard = self.index.write(shard);
            let Shard { table, segments } = &mut *guard;
            reclaimed += table.retain(|slot| {
                if !slot.is_expired(now_ms) {
                    return true;
                }
                Inner::mark_dead(segments, slot.location());
                let segment = segments.get(slot.location().segment);
                let tag = segment.bytes(slot.location().offset as usize, RECORD_HEADER_BYTES)[5];
                self.key_counts[tag as usize].fetch_sub(1, Ordering::Relaxed);
                false
            });
        }
        self.expired_reclaimed
            .fetch_add(reclaimed as u64, Ordering::Relaxed);
        reclaimed
    }

    fn scan(&self, namespace: Namespace, cursor: u64, count: usize) -> Result<(u64, Vec<Vec<u8>>)> {
        let now_ms = self.config.clock.now_ms();
        let mut shard = (cursor >> 32) as usize;
        let mut bucket = cursor as u32;
        let mut keys = Vec::new();
        let mut positions = Vec::new();
        while shard < SHARD_COUNT {
            let guard = self.index.read(shard);
            let Shard { table, segments } = &*guard;
            if table.is_empty() {
                shard += 1;
                bucket = 0;
                continue;
            }
            let mask = (table.capacity() - 1) as u32;
            loop {
                positions.clear();
                table.bucket_positions(bucket as usize, &mut positions);
                for &position in &positions {
                    let slot = table.slot(position);
                    if slot.is_expired(now_ms) {
                        continue;
                    }
                    let location = slot.location();
                    let segment = segments.get(location.segment);
                    let header = segment.bytes(location.offset as usize, RECORD_HEADER_BYTES);
                    if header[5] != namespace.tag() {
                        continue;
                    }
                    let (key_len, _) = format::peek_lengths(header);
                    keys.push(
                        segment
                            .bytes(location.offset as usize + RECORD_HEADER_BYTES, key_len)
                            .to_vec(),
                    );
                }
                // Redis's reverse-binary cursor: stays correct when the table grows between
                // calls, because buckets are visited in the order of their reversed bits.
                bucket |= !mask;
                bucket = bucket.reverse_bits().wrapping_add(1).reverse_bits();
                if bucket == 0 {
                    shard += 1;
                    break;
                }
                if keys.len() >= count {
                    return Ok((((shard as u64) << 32) | bucket as u64, keys));
                }
            }
            if keys.len() >= count && shard < SHARD_COUNT {
                return Ok(((shard as u64) << 32, keys));
            }
        }
        Ok((0, keys))
    }
}

/// Encodes writes: a single one as a plain record, several inside a batch record.
fn encode_batch<O: WriteOp>(out: &mut [u8], ops: &[O], seq: u64) {
    let single = ops.len() == 1;
    let (mut at, flags) = if single {
        (0, 0)
    } else {
        (RECORD_HEADER_BYTES, FLAG_IN_BATCH)
    };
    for op in ops {
        at += match op.put_value() {
            Some((value, expiry_ms)) => format::encode_record(
                &mut out[at..],
                RecordKind::Put,
                op.namespace().tag(),
                flags,
                seq,
                expiry_ms,
                op.key(),
                value,
            ),
            None => format::encode_record(
                &mut out[at..],
                RecordKind::Delete,
                op.namespace().tag(),
                flags,
                seq,
                0,
                op.key(),
                &[],
            ),
        };
    }
    if !single {
        format::encode_header(
            out,
            RecordKind::Batch,
            0,
            0,
            seq,
            0,
            0,
            at - RECORD_HEADER_BYTES,
        );
        format::seal_record(&mut out[..at]);
    }
}
