//! Engine settings: where the data lives, when writes are durable, segment size, compaction,
//! and the injected clock and logger.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::Observer;
use crate::compaction::CompactionStep;
use crate::format::Namespace;
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
/// compaction), with how much it matters. The server sends it to its log.
pub type Logger = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

/// How much a logged event matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Something failed that no caller will see (a background compaction, a seal, a flush
    /// that poisons the engine).
    Error,
    /// Recovery repaired something (a torn tail, a bad hint file, an interrupted compaction).
    Warn,
    /// Routine work done (a compaction's result).
    Info,
}

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
    /// Check a record's CRC each time it is read when recovery did not read it (its segment was
    /// loaded from a hint file); records recovery scanned or this process wrote are checked
    /// once, at recovery or by the writer's own CRC (decision 72 in docs/ARCHITECTURE.md).
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
    /// The apply hook of each observed namespace (see `observe`).
    pub observers: Vec<(Namespace, Arc<dyn Observer>)>,
    /// Replication runs on this engine, and this is the commit point it recorded durably (the
    /// highest seq it passed to `Engine::commit_through` and persisted): entries above it are
    /// applied at open with an undo log, kept for every entry above the commit point, so that
    /// `truncate_after` can remove them; they are never compacted. `None`: a lone node, which
    /// commits as it writes.
    pub replicated: Option<u64>,
    /// How many flushes may run at once, each over the bytes written since the one before
    /// it began (decision 108). 1: a write that arrives during a flush waits for it to end
    /// before its own starts.
    pub flushes_in_flight: usize,
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
            logger: Arc::new(|level: LogLevel, line: &str| {
                eprintln!("flin-engine: {level:?}: {line}")
            }),
            compaction_fail_point: None,
            background_sealing: true,
            observers: Vec::new(),
            replicated: None,
            flushes_in_flight: 2,
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

    pub fn flushes_in_flight(mut self, flushes: usize) -> Config {
        self.flushes_in_flight = flushes.max(1);
        self
    }

    /// A replicated engine whose durable commit point is `committed_seq` (see the field).
    pub fn replicated(mut self, committed_seq: u64) -> Config {
        self.replicated = Some(committed_seq);
        self
    }

    /// Registers the apply hook of `namespace` (one per namespace): it sees every committed
    /// change of the namespace, in seq order, from open on (the contract is in
    /// `engine::observe`).
    pub fn observe(mut self, namespace: Namespace, observer: Arc<dyn Observer>) -> Config {
        self.observers.push((namespace, observer));
        self
    }
}
