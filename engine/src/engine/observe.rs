//! Apply hooks: how a data model keeps in-memory structures beside the hash index (a queue's
//! ready order, a partition's offsets, a collection's secondary indexes) in step with the log.
//!
//! # The contract
//! A model registers one [`Observer`] for its namespace in [`Config::observe`]. It then sees
//! every committed change of that namespace, in seq order, through one method,
//! [`Observer::apply`]:
//!
//! 1. **At open**, after recovery and before any write, compaction or other observer call,
//!    the engine calls [`Observer::start`]. The model drops whatever it holds, loads what it
//!    persisted, if anything (it may read the engine), and answers with a [`Replay`]:
//!    - [`Replay::Rebuild`]: the model starts empty. The engine replays the namespace's
//!      **current state** in seq order: every live indexed record (a put), every live
//!      log-only record (an append no range marker drops) and every range marker in effect,
//!      each at its seq, the ops of one seq together. Superseded and deleted records are not
//!      replayed (compaction may have removed them): a model rebuilt this way must start
//!      empty, and its end state is the namespace's.
//!    - [`Replay::After`]`(s)`: the model's state already reflects the log through seq `s`.
//!      The engine replays **every** change of the namespace with a seq above `s`, exactly as
//!      written: puts, deletes, appends and markers, superseded ones included. A delete whose
//!      put was compacted away still arrives: that is what the model's pin guarantees (3).
//! 2. **Live**: every write that commits ops of the namespace calls `apply` once, with those
//!    ops, on the writing thread, with the writer lock held, after the index shows the write
//!    and before the next write. A follower applying replicated entries goes through the same
//!    path. `apply` must be quick and must not write to the engine.
//! 3. **Snapshots**: a model that persists its state ([`Observer::keeps_snapshots`]) holds a
//!    compaction pin, kept by the engine, from open on: at `s + 1` after `Replay::After(s)`,
//!    at the log's end after `Replay::Rebuild`. Records at or after the pin are never
//!    compacted, so the next open's replay after the snapshot's seq is complete. The model
//!    takes its state in [`Engine::quiesced`], which names the seq `t` that state reflects
//!    (the log's last: the model's own last change may be older, and the changes in between
//!    are other namespaces'), and once that snapshot is durable it calls
//!    [`Engine::observer_persisted`]`(ns, t)`, which moves the pin to `t + 1`. (Moving it
//!    before the snapshot is durable would let compaction drop a delete the next open needs.)
//!    A model that answers `Rebuild` has no snapshot any more: an older one is not protected
//!    by any pin from then on and must not be loaded again.
//! 4. **Truncation** (`Engine::truncate_after`, replication): the model is started again, as
//!    at open, since its state may hold the changes removed.

use std::sync::{Arc, Mutex};

use super::{Engine, Inner, Op};
use crate::error::Result;
use crate::format::{self, Namespace, RecordKind, RECORD_HEADER_BYTES};
use crate::index::{Location, SHARD_COUNT};
use crate::log_iter::{visit_records, LogIter};
use crate::segment::Segment;
use crate::Pin;

/// How the engine brings a model up to date at open (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// The model starts empty: replay the namespace's current state.
    Rebuild,
    /// The model's state reflects the log through this seq: replay every change after it.
    After(u64),
}

/// Whether a change is replayed at open or written now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Replay,
    Live,
}

/// One committed change of a namespace: its ops written under one seq.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    pub seq: u64,
    pub term: u64,
    /// The namespace's ops of that write, in the order they were written.
    pub ops: &'a [Op<'a>],
    pub origin: Origin,
}

/// A data model's apply hook (see the module doc for the contract).
pub trait Observer: Send + Sync {
    /// At open (and after a truncation): reset, load what was persisted, say how to replay.
    fn start(&self, engine: &Engine) -> Replay;
    /// One committed change of the namespace, in seq order.
    fn apply(&self, change: &Change<'_>);
    /// Whether the model persists snapshots and so needs a compaction pin (module doc, 3).
    fn keeps_snapshots(&self) -> bool {
        false
    }
}

/// The observers of an engine, by namespace tag, and the pins of those that keep snapshots.
#[derive(Default)]
pub(crate) struct Observers {
    by_tag: [Option<Arc<dyn Observer>>; 8],
    /// A bit per tag with an observer: a write of other namespaces costs one test.
    mask: u8,
    pins: Mutex<[Option<Pin>; 8]>,
}

impl Observers {
    pub fn new(list: &[(Namespace, Arc<dyn Observer>)]) -> Observers {
        let mut observers = Observers::default();
        for (namespace, observer) in list {
            let tag = namespace.tag();
            assert!(
                observers.by_tag[tag as usize].is_none(),
                "one observer per namespace ({namespace:?} has two)"
            );
            observers.by_tag[tag as usize] = Some(observer.clone());
            observers.mask |= 1 << tag;
        }
        observers
    }

    /// Whether any namespace has an observer.
    #[inline]
    pub fn any(&self) -> bool {
        self.mask != 0
    }

    /// Whether any observer watches a namespace of these ops.
    #[inline]
    pub fn watches_any(&self, ops: &[Op<'_>]) -> bool {
        self.mask != 0
            && ops
                .iter()
                .any(|op| self.mask & (1 << op.namespace.tag()) != 0)
    }

    /// Hands a committed write to the observers of its namespaces.
    pub fn deliver(&self, seq: u64, term: u64, ops: &[Op<'_>], origin: Origin) {
        for (tag, observer) in self.by_tag.iter().enumerate() {
            let Some(observer) = observer else { continue };
            let mine = |op: &Op<'_>| op.namespace.tag() as usize == tag;
            if !ops.iter().any(mine) {
                continue;
            }
            if ops.iter().all(mine) {
                observer.apply(&Change {
                    seq,
                    term,
                    ops,
                    origin,
                });
            } else {
                let filtered: Vec<Op<'_>> = ops.iter().copied().filter(mine).collect();
                observer.apply(&Change {
                    seq,
                    term,
                    ops: &filtered,
                    origin,
                });
            }
        }
    }

    /// Moves the pin of `namespace`'s observer to `seq + 1` (its snapshot through `seq` is
    /// durable).
    pub fn persisted(&self, namespace: Namespace, seq: u64) {
        if let Some(pin) = &self.pins.lock().expect("observer pins lock")[namespace.tag() as usize]
        {
            pin.advance(seq + 1);
        }
    }
}

impl Engine {
    /// Starts every observer and replays what each asks for (at open, before the background
    /// threads run, and after a truncation).
    pub(crate) fn start_observers(&self) -> Result<()> {
        let inner = &self.inner;
        for (tag, observer) in inner.observers.by_tag.iter().enumerate() {
            let Some(observer) = observer else { continue };
            let namespace = Namespace::from_tag(tag as u8).expect("observed namespace");
            let replay = observer.start(self);
            let pin_at = match replay {
                Replay::Rebuild => inner.last_seq() + 1,
                Replay::After(seq) => seq + 1,
            };
            // Held before the replay reads anything, and kept if the model snapshots.
            let pin = self.pin(pin_at);
            match replay {
                Replay::Rebuild => inner.replay_current_state(namespace, &**observer)?,
                Replay::After(seq) => inner.replay_after(namespace, seq, &**observer)?,
            }
            inner.observers.pins.lock().expect("observer pins lock")[tag] =
                observer.keeps_snapshots().then_some(pin);
        }
        Ok(())
    }

    /// Runs `capture` with the writer lock held, so no write is in flight: every observer has
    /// seen every change through the seq `capture` is given (the log's last). A model takes the
    /// state its snapshot will hold here, then writes it out with the lock released.
    pub fn quiesced<R>(&self, capture: impl FnOnce(u64) -> R) -> R {
        let _writer = self.inner.lock_writer();
        capture(self.inner.last_seq())
    }

    /// The observer of `namespace` has made durable a snapshot that reflects the log through
    /// `seq`: its compaction pin moves to `seq + 1` (module doc, 3).
    pub fn observer_persisted(&self, namespace: Namespace, seq: u64) {
        self.inner.observers.persisted(namespace, seq);
    }
}

impl Inner {
    fn last_seq(&self) -> u64 {
        self.last_seq.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `Replay::After(seq)`: every entry after `seq`, from the log, the namespace's ops only.
    fn replay_after(&self, namespace: Namespace, seq: u64, observer: &dyn Observer) -> Result<()> {
        for entry in LogIter::new(self, seq + 1) {
            let entry = entry?;
            let ops: Vec<Op<'_>> = entry
                .ops
                .iter()
                .filter(|op| op.namespace == namespace)
                .map(|op| op.as_op())
                .collect();
            if !ops.is_empty() {
                observer.apply(&Change {
                    seq: entry.seq,
                    term: entry.term,
                    ops: &ops,
                    origin: Origin::Replay,
                });
            }
        }
        Ok(())
    }

    /// `Replay::Rebuild`: the namespace's live indexed records, live log-only records and
    /// markers in effect, in seq order, grouped by seq. Only the namespace's index tables and
    /// the segments holding its log-only records are read.
    fn replay_current_state(&self, namespace: Namespace, observer: &dyn Observer) -> Result<()> {
        let tag = namespace.tag();
        let segments = self.segments_read().clone();
        let now_ms = self.config.clock.now_ms();
        // (seq, segment slot, offset) of every record to replay.
        let mut found: Vec<(u64, Location)> = Vec::new();
        for shard in 0..SHARD_COUNT {
            let guard = self.index.read(tag, shard);
            for slot in guard.table.iter() {
                if slot.is_expired(now_ms) {
                    continue;
                }
                let location = slot.location();
                let header = segments
                    .get(location.segment)
                    .bytes(location.offset as usize, RECORD_HEADER_BYTES);
                found.push((format::peek_seq(header), location));
            }
        }
        {
            let ranges = self.ranges.read().expect("range markers lock");
            for segment in segments.all() {
                if segment.is_superseded() || !segment.has_appends_in(tag) {
                    continue;
                }
                visit_records(segment, |record, offset| {
                    if record.kind == RecordKind::Append
                        && record.namespace_tag == tag
                        && ranges.covering(tag, record.key, record.seq).is_none()
                    {
                        let location = Location {
                            segment: segment.slot,
                            offset: offset as u32,
                        };
                        found.push((record.seq, location));
                    }
                })?;
            }
            for (marker_tag, _, marker) in ranges.iter() {
                if marker_tag == tag {
                    found.push((marker.seq, marker.location));
                }
            }
        }
        found.sort_unstable_by_key(|&(seq, location)| (seq, location.segment, location.offset));
        let mut at = 0;
        while at < found.len() {
            let seq = found[at].0;
            let group_end = at + found[at..].iter().take_while(|(s, _)| *s == seq).count();
            let mut term = 0;
            let mut ops = Vec::with_capacity(group_end - at);
            for &(_, location) in &found[at..group_end] {
                let segment: &Segment = segments.get(location.segment);
                let record = segment
                    .record_at(location.offset as usize, true)
                    .map_err(|e| super::read::decode_error(segment, location, e))?;
                term = record.term;
                ops.push(Op {
                    kind: record.kind,
                    namespace,
                    key: record.key,
                    value: record.value,
                    expiry_ms: record.expiry_ms,
                });
            }
            observer.apply(&Change {
                seq,
                term,
                ops: &ops,
                origin: Origin::Replay,
            });
            at = group_end;
        }
        Ok(())
    }
}
