//! flin-engine: the log-structured store under every Flin data model.
//!
//! The design is Bitcask's (one active append-only segment, an in-memory key directory, merges
//! with hint files), with atomic batches, seq numbers for replication, and a memory mode.
//!
//! # Layout
//! - [`format`]: the bytes: segment header, record header, batch records, limits.
//! - `segment`: a mapped segment; the published prefix is immutable and shared, the tail
//!   belongs to its one writer. (A module with `unsafe`: slices of the mapping.)
//! - `backend`: the storage backend seam. Every file operation (create, preallocate, map,
//!   msync, fsync, truncate, rename, remove, directory fsync, read, list) goes through it: the
//!   real filesystem, or [`sim::SimDisk`]. Records are read and written through the mapping's
//!   raw pointer, never through the backend. (`unsafe`: `posix_fallocate`, `flock`.)
//! - [`sim`]: the simulated disk for power-loss and fault-injection tests: it keeps what was
//!   flushed apart from what was only written, loses power at a chosen operation, and builds
//!   the image a machine would boot from. (`unsafe`: its page-cache buffers.)
//! - `index`: the sharded Robin Hood hash index, key -> (segment, offset, expiry), 16 B a slot.
//! - `engine/`: [`Engine`] and the state behind it, a module per concern: `config`, `batch` (the
//!   typed list of writes), `table` (segments by slot), `write` (writer lock, append, index update,
//!   rotation), `read`, `txn` ([`Txn`]: decide under the writer lock, then append), `sync` (group
//!   commit), `seal` (the sealer thread), `maintenance` (expiry and compaction threads), and the
//!   seams the data models and replication use: `observe` (apply hooks, [`Observer`]), `wake`
//!   (wake-ups on a key prefix), `pins` (compaction pins), `reader` ([`LogReader`], the exact
//!   tail reader), `replicate` (terms, leader-chosen seqs, commit point, `truncate_after`),
//!   `undo` (what an uncommitted entry replaced) and `snapshot` (the files holding the state
//!   through a seq, for a follower the log cannot catch up).
//! - `ranges`: range markers (`DropRange` records) and what they drop.
//! - `recovery`: open a directory: finish an interrupted compaction, hint files or full scans,
//!   torn-tail truncation, highest-seq-wins index rebuild.
//! - `compaction`: merge sealed segments, hint files, the manifest-driven atomic swap.
//! - `log_iter`: the surviving records in seq order from any seq (k-way merge over segments),
//!   for compaction and replays.
//! - `hint`, `dir`: hint file format; directory layout, manifest.
//! - `fuzzing` (hidden): the decoders recovery runs on disk bytes, for the fuzz targets in
//!   `fuzz/` and the property tests in `tests/hostile_bytes.rs`.
//!
//! # Data flow
//! A write takes the writer lock, encodes its record(s) straight into the active segment's
//! mapping, publishes them, points the index at them, and releases the lock; under
//! `Durability::Always` it then waits for a flush that covers its seq (one flush serves every
//! writer waiting at the time). A read hashes the key (xxh3), read-locks one index shard,
//! compares the key against the record in the mapping, and hands out the value in place.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod backend;
mod compaction;
mod dir;
mod engine;
mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
mod hint;
mod index;
mod log_iter;
mod ranges;
mod recovery;
#[allow(unsafe_code)]
mod segment;
#[allow(unsafe_code)]
pub mod sim;

pub use compaction::{CompactionReport, CompactionStep};
pub use engine::{
    Change, Clock, CompactionConfig, Config, Durability, Engine, EntryOps, LiveRecord, LogLevel,
    LogReader, Logger, ManualClock, Observer, Op, Origin, Pin, Replay, SnapshotFile, SnapshotFiles,
    Stats, Storage, SystemClock, Txn, Value, ValueRef, WaitHandle, Wake, WriteBatch, BATCH_OPS_MAX,
    SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN,
};
pub use error::{Corruption, Error, Result};
pub use format::{Namespace, RecordKind, KEY_BYTES_MAX, VALUE_BYTES_MAX};
pub use log_iter::{LogEntry, LogIter, LogOp};
pub use recovery::{RecoveryReport, TornTail};
