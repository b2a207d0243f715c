//! [`Streams`]: Kafka's model (topics of partitions, dense offsets, consumer groups,
//! retention) over the engine's Stream namespace. Typed arguments in, typed results or a
//! [`StreamError`] out; no sockets.
//!
//! # How the model and the log stay in step
//! The model is the engine's observer of the Stream namespace ([`flin_engine::Observer`]):
//! every committed change reaches [`Streams::apply`] in seq order, at open (the engine
//! replays the namespace's live records: `Replay::Rebuild`) and live, under the engine's
//! writer lock. Commands decide under that same lock ([`Store::write`]): a publish reads the
//! partition's next offset, queues its chunk, and the chunk's `apply` moves the offset on
//! before the lock is released. So offsets are dense and increasing whatever the number of
//! publishers, and what the model holds is exactly what the log says.
//!
//! # What is in memory
//! Per partition: its first and next offset, its bytes, and a *block* list: a block starts
//! at a chunk and covers chunks until it holds [`BLOCK_BYTES`]; it records the seq of its
//! first chunk, its offsets, bytes and timestamps. A fetch bisects the blocks and reads the
//! log from the block's seq (`Engine::read_appends`); retention drops whole blocks. That is
//! about 64 B per 64 KiB of records (a fraction of a byte per record), not a location per
//! record. Group membership is in memory only (members rejoin after a restart, as after a
//! coordinator failover in Kafka); committed offsets are records.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use flin_engine::{Change, Engine, Namespace, Observer, Op, RecordKind, Replay, Txn};

use super::codec::{self, NewRecord, Record, Reset, TopicMeta};
use super::group::{self, Member};
use crate::frame::Frame;
use crate::store::{Reader, Store};

/// The namespace streams live in.
pub const NS: Namespace = Namespace::Stream;

/// A block is closed once it holds this many bytes of chunks.
pub const BLOCK_BYTES: u64 = 64 << 10;
/// A publish splits a partition's records into chunks of at most this many bytes.
pub const CHUNK_BYTES_MAX: usize = 1 << 20;
/// Partitions a topic may have.
pub const PARTITIONS_MAX: u32 = 1024;
/// Kafka's `session.timeout.ms` default.
pub const SESSION_MS_DEFAULT: u64 = 45_000;

/// Why a stream command was refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    UnknownTopic(Vec<u8>),
    TopicExists(Vec<u8>),
    UnknownPartition {
        topic: Vec<u8>,
        partition: u64,
        partitions: u32,
    },
    OutOfRange {
        topic: Vec<u8>,
        partition: u32,
        offset: u64,
        first: u64,
        next: u64,
    },
    /// The member must JOIN again (new generation, or not a member).
    Rebalance(String),
    Invalid(String),
    Engine(String),
}

pub type Result<T> = std::result::Result<T, StreamError>;

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::UnknownTopic(t) => write!(f, "unknown topic '{}'", show(t)),
            StreamError::TopicExists(t) => write!(f, "topic '{}' already exists", show(t)),
            StreamError::UnknownPartition { topic, partition, partitions } => write!(
                f,
                "partition {partition} does not exist: topic '{}' has partitions 0 to {}",
                show(topic),
                partitions.saturating_sub(1)
            ),
            StreamError::OutOfRange { topic, partition, offset, first, next } => write!(
                f,
                "offset {offset} out of range for topic '{}' partition {partition} (first {first}, next {next})",
                show(topic)
            ),
            StreamError::Rebalance(why) => f.write_str(why),
            StreamError::Invalid(why) => f.write_str(why),
            StreamError::Engine(why) => write!(f, "engine: {why}"),
        }
    }
}

impl From<flin_engine::Error> for StreamError {
    fn from(e: flin_engine::Error) -> StreamError {
        StreamError::Engine(e.to_string())
    }
}

/// A run of chunks of one partition.
#[derive(Clone, Copy, Debug)]
struct Block {
    base: u64,
    end: u64,
    seq: u64,
    bytes: u64,
    first_ts: u64,
    last_ts: u64,
}

#[derive(Default, Debug)]
struct Partition {
    first: u64,
    next: u64,
    bytes: u64,
    blocks: VecDeque<Block>,
    /// Where recent fetches stopped: (a chunk's base offset, its seq), so a sequential reader
    /// starts at its chunk instead of its block's first.
    hints: [(u64, u64); 4],
    hint_at: usize,
}

impl Partition {
    fn append(&mut self, base: u64, count: u64, seq: u64, bytes: u64, ts: u64) {
        if base < self.next || count == 0 {
            return; // already seen (a replay overlapping what was applied)
        }
        if self.blocks.is_empty() {
            self.first = self.first.max(base.min(self.next.max(self.first)));
        }
        let end = base + count;
        match self.blocks.back_mut() {
            Some(block) if block.bytes < BLOCK_BYTES && block.end == base => {
                block.end = end;
                block.bytes += bytes;
                block.last_ts = block.last_ts.max(ts);
            }
            _ => self.blocks.push_back(Block {
                base,
                end,
                seq,
                bytes,
                first_ts: ts,
                last_ts: ts,
            }),
        }
        self.next = end;
        self.bytes += bytes;
    }

    /// Drops the blocks wholly below `floor`; the first offset becomes `floor`.
    fn drop_below(&mut self, floor: u64) {
        while let Some(block) = self.blocks.front() {
            if block.end > floor {
                break;
            }
            self.bytes -= block.bytes;
            self.blocks.pop_front();
        }
        self.first = self.first.max(floor);
        self.next = self.next.max(floor);
    }

    /// The seq to read from for `offset` (within `first..next`).
    fn seq_for(&self, offset: u64) -> u64 {
        let at = self.blocks.partition_point(|b| b.base <= offset);
        let block_seq = match at {
            0 => self.blocks.front().map_or(0, |b| b.seq),
            n => self.blocks[n - 1].seq,
        };
        let block_base = at.checked_sub(1).map_or(0, |n| self.blocks[n].base);
        self.hints
            .iter()
            .filter(|(base, seq)| *seq >= block_seq && *base >= block_base && *base <= offset)
            .map(|h| h.1)
            .max()
            .unwrap_or(block_seq)
    }

    fn hint(&mut self, base: u64, seq: u64) {
        self.hints[self.hint_at] = (base, seq);
        self.hint_at = (self.hint_at + 1) % self.hints.len();
    }
}

#[derive(Debug)]
struct Group {
    reset: Reset,
    /// Whether `reset` is stored (a `g` record).
    stored: bool,
    committed: BTreeMap<u32, u64>,
    generation: u64,
    members: BTreeMap<Vec<u8>, Member>,
}

impl Group {
    fn new(reset: Reset) -> Group {
        Group {
            reset,
            stored: false,
            committed: BTreeMap::new(),
            generation: 0,
            members: BTreeMap::new(),
        }
    }

    fn rebalance(&mut self, partitions: u32) {
        self.generation += 1;
        group::assign(&mut self.members, partitions);
    }
}

#[derive(Debug, Default)]
struct Topic {
    name: Vec<u8>,
    meta: Option<TopicMeta>,
    partitions: Vec<Partition>,
    groups: BTreeMap<Vec<u8>, Group>,
    /// The partition the next keyless publish goes to (round robin, sticky per batch).
    round_robin: u32,
}

impl Topic {
    fn partition_mut(&mut self, p: u32) -> &mut Partition {
        if self.partitions.len() <= p as usize {
            self.partitions
                .resize_with(p as usize + 1, Partition::default);
        }
        &mut self.partitions[p as usize]
    }

    fn group_mut(&mut self, name: &[u8]) -> &mut Group {
        self.groups
            .entry(name.to_vec())
            .or_insert_with(|| Group::new(Reset::Latest))
    }

    fn partition_count(&self) -> u32 {
        self.meta.map_or(0, |m| m.partitions)
    }
}

#[derive(Default)]
struct State {
    names: BTreeMap<Vec<u8>, u32>,
    topics: BTreeMap<u32, Topic>,
    next_id: u32,
}

impl State {
    fn topic(&self, name: &[u8]) -> Result<&Topic> {
        self.names
            .get(name)
            .and_then(|id| self.topics.get(id))
            .ok_or_else(|| StreamError::UnknownTopic(name.to_vec()))
    }

    fn topic_mut(&mut self, name: &[u8]) -> Result<&mut Topic> {
        let id = *self
            .names
            .get(name)
            .ok_or_else(|| StreamError::UnknownTopic(name.to_vec()))?;
        self.topics
            .get_mut(&id)
            .ok_or_else(|| StreamError::UnknownTopic(name.to_vec()))
    }
}

/// A partition as STREAM.DESCRIBE shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    pub first: u64,
    pub next: u64,
    pub bytes: u64,
    /// -1 when the partition holds no record.
    pub oldest_timestamp_ms: i64,
    /// Entries of the partition's in-memory offset index (blocks of about `BLOCK_BYTES`).
    pub index_blocks: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: Vec<u8>,
    pub meta: TopicMeta,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: Vec<u8>,
    pub generation: u64,
    pub reset: Reset,
    pub members: Vec<(Vec<u8>, Vec<u32>)>,
}

/// Where a publish put records: (partition, base offset, count).
pub type Placed = (u32, u64, u64);

/// Where a publish sends its records.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Partition(u32),
    /// Each record by its key's hash (records without one: sticky).
    ByKey,
    /// The whole batch to one partition, the next batch to the next one.
    Sticky,
}

/// Limits of one fetch.
#[derive(Clone, Copy, Debug)]
pub struct FetchLimits {
    pub count: usize,
    pub max_bytes: usize,
}

/// The stream model.
#[derive(Default)]
pub struct Streams {
    state: Mutex<State>,
}

impl Streams {
    pub fn new() -> Streams {
        Streams::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("stream state lock")
    }

    // ----- topics ---------------------------------------------------------------------------

    pub fn create(
        &self,
        store: &Store,
        name: &[u8],
        partitions: u32,
        retention_ms: u64,
        retention_bytes: u64,
    ) -> Result<Option<u64>> {
        check_partitions(partitions)?;
        let written = write(store, |txn| {
            let meta = {
                let state = self.lock();
                if state.names.contains_key(name) {
                    return Err(StreamError::TopicExists(name.to_vec()));
                }
                TopicMeta {
                    id: state.next_id,
                    partitions,
                    retention_ms,
                    retention_bytes,
                }
            };
            put(txn, &[codec::NEXT_ID], &(meta.id + 1).to_le_bytes())?;
            put(txn, &codec::topic_key(name), &codec::encode_topic(&meta))?;
            Ok(())
        });
        written.map(|w| w.1)
    }

    /// STREAM.ALTER: retention, and a partition count that may only grow.
    pub fn alter(
        &self,
        store: &Store,
        name: &[u8],
        partitions: Option<u32>,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
    ) -> Result<Option<u64>> {
        if let Some(p) = partitions {
            check_partitions(p)?;
        }
        let written = write(store, |txn| {
            let mut meta = {
                let state = self.lock();
                let topic = state.topic(name)?;
                topic.meta.expect("a named topic has its settings")
            };
            if let Some(p) = partitions {
                if p < meta.partitions {
                    return Err(StreamError::Invalid(format!(
                        "partitions can only grow: topic '{}' has {}, asked for {p}",
                        show(name),
                        meta.partitions
                    )));
                }
                meta.partitions = p;
            }
            meta.retention_ms = retention_ms.unwrap_or(meta.retention_ms);
            meta.retention_bytes = retention_bytes.unwrap_or(meta.retention_bytes);
            put(txn, &codec::topic_key(name), &codec::encode_topic(&meta))
        });
        written.map(|w| w.1)
    }

    /// STREAM.DELETE: the topic, its records (one range marker), its groups' offsets.
    pub fn delete(&self, store: &Store, name: &[u8]) -> Result<Option<u64>> {
        let written = write(store, |txn| {
            let mut keys = Vec::new();
            let id = {
                let state = self.lock();
                let topic = state.topic(name)?;
                let id = topic.meta.expect("settings").id;
                for p in 0..topic.partitions.len() as u32 {
                    keys.push(codec::floor_key(id, p).to_vec());
                }
                for (group, g) in &topic.groups {
                    if g.stored {
                        keys.push(codec::group_key(id, group));
                    }
                    for &p in g.committed.keys() {
                        keys.push(codec::committed_key(id, p, group));
                    }
                }
                id
            };
            txn.delete(NS, &codec::topic_key(name))?;
            for key in &keys {
                txn.delete(NS, key)?;
            }
            push_op(
                txn,
                RecordKind::DropRange,
                &codec::topic_chunks_prefix(id),
                &[0xFF; 13],
            )
        });
        written.map(|w| w.1)
    }

    pub fn list(&self, pattern: Option<&[u8]>) -> Vec<Vec<u8>> {
        let state = self.lock();
        state
            .names
            .keys()
            .filter(|name| pattern.is_none_or(|p| crate::glob::matches(p, name)))
            .cloned()
            .collect()
    }

    pub fn describe(&self, name: &[u8]) -> Result<TopicInfo> {
        let state = self.lock();
        let topic = state.topic(name)?;
        let meta = topic.meta.expect("settings");
        let partitions = (0..meta.partitions)
            .map(|p| {
                let part = topic.partitions.get(p as usize);
                PartitionInfo {
                    partition: p,
                    first: part.map_or(0, |x| x.first),
                    next: part.map_or(0, |x| x.next),
                    bytes: part.map_or(0, |x| x.bytes),
                    oldest_timestamp_ms: part
                        .and_then(|x| x.blocks.front())
                        .map_or(-1, |b| b.first_ts as i64),
                    index_blocks: part.map_or(0, |x| x.blocks.len()),
                }
            })
            .collect();
        Ok(TopicInfo {
            name: name.to_vec(),
            meta,
            partitions,
        })
    }

    // ----- publishing -----------------------------------------------------------------------

    /// Publishes `records` as one engine write; returns (partition, base offset, count) per
    /// partition touched, in order of first appearance, and the write's seq.
    pub fn publish(
        &self,
        store: &Store,
        name: &[u8],
        target: Target,
        records: &[NewRecord<'_>],
        now_ms: u64,
    ) -> Result<(Vec<Placed>, Option<u64>)> {
        write(store, |txn| {
            self.publish_in(txn, name, target, records, now_ms)
        })
    }

    /// [`Streams::publish`] into a transaction (its own, or EXEC's, shared with other
    /// commands of any model: the transactional outbox). Offsets continue after the chunks
    /// the transaction already holds for a partition, so two publishes of one EXEC never
    /// share an offset.
    pub fn publish_in(
        &self,
        txn: &mut Txn<'_>,
        name: &[u8],
        target: Target,
        records: &[NewRecord<'_>],
        now_ms: u64,
    ) -> Result<Vec<Placed>> {
        let mut chunk = Vec::new();
        {
            if let [record] = records {
                // One record (STREAM.PUBLISH): no routing tables, a reused chunk buffer.
                let (id, p, base) = {
                    let mut state = self.lock();
                    let topic = state.topic_mut(name)?;
                    let meta = topic.meta.expect("settings");
                    let sticky = topic.round_robin % meta.partitions;
                    let p = route(name, target, record.key, meta.partitions, sticky)?;
                    if p == sticky {
                        topic.round_robin = topic.round_robin.wrapping_add(1);
                    }
                    let base = topic.partitions.get(p as usize).map_or(0, |x| x.next);
                    let base = pending_next(txn, meta.id, p).map_or(base, |n| n.max(base));
                    (meta.id, p, base)
                };
                ONE_CHUNK.with(|buffer| {
                    let mut buffer = buffer.borrow_mut();
                    codec::begin_chunk(&mut buffer, 1, now_ms);
                    codec::push_record(&mut buffer, record);
                    let pushed = push_op(
                        txn,
                        RecordKind::Append,
                        &codec::chunk_key(id, p, base),
                        &buffer,
                    );
                    if buffer.capacity() > CHUNK_BYTES_MAX {
                        *buffer = Vec::new(); // one huge record does not pin its size
                    }
                    pushed
                })?;
                return Ok(vec![(p, base, 1)]);
            }
            let (id, routed) = {
                let mut state = self.lock();
                let topic = state.topic_mut(name)?;
                let meta = topic.meta.expect("settings");
                let partitions = meta.partitions;
                let sticky_partition = topic.round_robin % partitions;
                // Records per partition, in order of first appearance.
                let mut routed: Vec<(u32, u64, Vec<usize>)> = Vec::new();
                for (i, record) in records.iter().enumerate() {
                    let p = route(name, target, record.key, partitions, sticky_partition)?;
                    match routed.iter_mut().find(|r| r.0 == p) {
                        Some(r) => r.2.push(i),
                        None => {
                            let next = topic.partitions.get(p as usize).map_or(0, |x| x.next);
                            let next = pending_next(txn, meta.id, p).map_or(next, |n| n.max(next));
                            routed.push((p, next, vec![i]));
                        }
                    }
                }
                if routed.iter().any(|r| r.0 == sticky_partition) {
                    topic.round_robin = topic.round_robin.wrapping_add(1);
                }
                (meta.id, routed)
            };
            for (p, base, indexes) in &routed {
                let mut offset = *base;
                let mut start = 0;
                while start < indexes.len() {
                    // One chunk: as many records as fit in CHUNK_BYTES_MAX (at least one).
                    let mut end = start;
                    let mut bytes = codec::CHUNK_HEADER_BYTES;
                    while end < indexes.len() {
                        let more = codec::record_bytes(&records[indexes[end]]);
                        if end > start && bytes + more > CHUNK_BYTES_MAX {
                            break;
                        }
                        bytes += more;
                        end += 1;
                    }
                    chunk.reserve(bytes);
                    codec::begin_chunk(&mut chunk, (end - start) as u32, now_ms);
                    for &i in &indexes[start..end] {
                        codec::push_record(&mut chunk, &records[i]);
                    }
                    push_op(
                        txn,
                        RecordKind::Append,
                        &codec::chunk_key(id, *p, offset),
                        &chunk,
                    )?;
                    offset += (end - start) as u64;
                    start = end;
                }
            }
            Ok(routed
                .iter()
                .map(|(p, base, indexes)| (*p, *base, indexes.len() as u64))
                .collect::<Vec<_>>())
        }
    }

    // ----- fetching -------------------------------------------------------------------------

    /// The records of `partition` from `offset`, within `limits`. `offset` may be the next
    /// offset (nothing yet); below the first or above the next is out of range.
    pub fn fetch(
        &self,
        reader: &Reader<'_>,
        name: &[u8],
        partition: u64,
        offset: u64,
        limits: FetchLimits,
    ) -> Result<Vec<Record>> {
        let (id, seq, next) = {
            let state = self.lock();
            let topic = state.topic(name)?;
            let meta = topic.meta.expect("settings");
            if partition >= meta.partitions as u64 {
                return Err(StreamError::UnknownPartition {
                    topic: name.to_vec(),
                    partition,
                    partitions: meta.partitions,
                });
            }
            let p = partition as u32;
            let (first, next) = topic
                .partitions
                .get(p as usize)
                .map_or((0, 0), |x| (x.first, x.next));
            if offset < first || offset > next {
                return Err(StreamError::OutOfRange {
                    topic: name.to_vec(),
                    partition: p,
                    offset,
                    first,
                    next,
                });
            }
            if offset == next || limits.count == 0 {
                return Ok(Vec::new());
            }
            (meta.id, topic.partitions[p as usize].seq_for(offset), next)
        };
        let p = partition as u32;
        let mut records = Vec::new();
        let mut want = offset;
        let mut bytes = 0usize;
        let mut stop_hint = None;
        let mut corrupt = None;
        reader.read_appends(
            NS,
            &codec::partition_prefix(id, p),
            seq,
            |chunk_seq, key, value| {
                let Some((_, _, base)) = codec::decode_chunk_key(key) else {
                    return true;
                };
                let Some((count, ts)) = codec::chunk_header(value) else {
                    corrupt = Some(base);
                    return false;
                };
                let end = base + count as u64;
                if end <= offset || base >= next {
                    return base < next;
                }
                let Some(iter) = codec::chunk_records(value) else {
                    corrupt = Some(base);
                    return false;
                };
                for (i, (k, headers, v)) in iter.enumerate() {
                    let at = base + i as u64;
                    // Only the offset wanted next: a chunk seen twice (two copies of a segment during
                    // a compaction's swap) adds nothing, and a gap is never papered over.
                    if at < want {
                        continue;
                    }
                    if at > want {
                        return false;
                    }
                    let size = v.len() + k.map_or(0, <[u8]>::len);
                    if records.len() >= limits.count
                        || (!records.is_empty() && bytes + size > limits.max_bytes)
                    {
                        stop_hint = Some((base, chunk_seq));
                        return false;
                    }
                    bytes += size;
                    want += 1;
                    records.push(Record {
                        partition: p,
                        offset: at,
                        timestamp_ms: ts,
                        key: k.map(<[u8]>::to_vec),
                        headers: headers
                            .into_iter()
                            .map(|(a, b)| (a.to_vec(), b.to_vec()))
                            .collect(),
                        value: v.to_vec(),
                    });
                }
                if end >= next {
                    return false;
                }
                // The next chunk may share this one's seq (one write's chunks of a large batch):
                // the next fetch starts at this seq and skips what ends at or before `end`.
                stop_hint = Some((end, chunk_seq));
                records.len() < limits.count && bytes < limits.max_bytes
            },
        )?;
        if let Some(base) = corrupt {
            return Err(StreamError::Engine(format!(
                "malformed chunk at offset {base} of topic '{}' partition {p}",
                show(name)
            )));
        }
        if let Some((base, seq)) = stop_hint {
            let mut state = self.lock();
            if let Ok(topic) = state.topic_mut(name) {
                if let Some(part) = topic.partitions.get_mut(p as usize) {
                    part.hint(base, seq);
                }
            }
        }
        Ok(records)
    }

    /// The topic's id and next offsets, for a long poll's wake-up prefix.
    pub fn chunks_prefix(&self, name: &[u8]) -> Result<Vec<u8>> {
        let state = self.lock();
        let topic = state.topic(name)?;
        Ok(codec::topic_chunks_prefix(topic.meta.expect("settings").id))
    }

    // ----- groups ---------------------------------------------------------------------------

    /// STREAM.JOIN: (generation, partitions). Writes the group's reset policy when it is new
    /// or changed.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &self,
        store: &Store,
        name: &[u8],
        group: &[u8],
        consumer: &[u8],
        session_ms: u64,
        reset: Option<Reset>,
        now_ms: u64,
    ) -> Result<(u64, Vec<u32>, Option<u64>)> {
        let mut seq = None;
        let needs_write = {
            let state = self.lock();
            let topic = state.topic(name)?;
            let stored = topic
                .groups
                .get(group)
                .filter(|g| g.stored)
                .map(|g| g.reset);
            match (stored, reset) {
                (None, _) => true,
                (Some(old), Some(new)) => old != new,
                (Some(_), None) => false,
            }
        };
        if needs_write {
            let written = write(store, |txn| {
                let id = {
                    let state = self.lock();
                    state.topic(name)?.meta.expect("settings").id
                };
                put(
                    txn,
                    &codec::group_key(id, group),
                    &codec::encode_reset(reset.unwrap_or(Reset::Latest)),
                )
            });
            seq = written?.1;
        }
        let mut state = self.lock();
        let topic = state.topic_mut(name)?;
        let partitions = topic.partition_count();
        let g = topic.group_mut(group);
        match g.members.get_mut(consumer) {
            Some(member) => {
                member.session_ms = session_ms;
                member.last_seen_ms = now_ms;
            }
            None => {
                g.members.insert(
                    consumer.to_vec(),
                    Member {
                        session_ms,
                        last_seen_ms: now_ms,
                        ..Member::default()
                    },
                );
                g.rebalance(partitions);
            }
        }
        let member = &g.members[consumer];
        Ok((g.generation, member.partitions.clone(), seq))
    }

    fn member_mut<'a>(g: &'a mut Group, group: &[u8], consumer: &[u8]) -> Result<&'a mut Member> {
        g.members.get_mut(consumer).ok_or_else(|| {
            StreamError::Rebalance(format!(
                "consumer '{}' is not a member of group '{}' (never joined, left or evicted): join again",
                show(consumer),
                show(group)
            ))
        })
    }

    pub fn heartbeat(
        &self,
        name: &[u8],
        group: &[u8],
        consumer: &[u8],
        generation: u64,
        now_ms: u64,
    ) -> Result<()> {
        let mut state = self.lock();
        let topic = state.topic_mut(name)?;
        let g = topic
            .groups
            .get_mut(group)
            .ok_or_else(|| not_member(group, consumer))?;
        let current = g.generation;
        let member = Self::member_mut(g, group, consumer)?;
        member.last_seen_ms = now_ms;
        if generation != current {
            return Err(stale(group, generation, current));
        }
        Ok(())
    }

    pub fn leave(&self, name: &[u8], group: &[u8], consumer: &[u8]) -> Result<bool> {
        let mut state = self.lock();
        let topic = state.topic_mut(name)?;
        let partitions = topic.partition_count();
        let Some(g) = topic.groups.get_mut(group) else {
            return Ok(false);
        };
        if g.members.remove(consumer).is_none() {
            return Ok(false);
        }
        if !g.members.is_empty() {
            g.rebalance(partitions);
        } else {
            g.generation += 1;
        }
        Ok(true)
    }

    /// STREAM.CONSUME: up to `count` records from the member's partitions, from its
    /// positions, which move past them.
    pub fn consume(
        &self,
        reader: &Reader<'_>,
        name: &[u8],
        group: &[u8],
        consumer: &[u8],
        count: usize,
        now_ms: u64,
    ) -> Result<Vec<Record>> {
        // Where to read, per partition, decided under the lock; read outside it.
        let plan: Vec<(u32, u64)> = {
            let mut state = self.lock();
            let topic = state.topic_mut(name)?;
            let bounds: Vec<(u64, u64)> =
                topic.partitions.iter().map(|p| (p.first, p.next)).collect();
            let g = topic
                .groups
                .get_mut(group)
                .ok_or_else(|| not_member(group, consumer))?;
            let reset = g.reset;
            let committed = g.committed.clone();
            let member = Self::member_mut(g, group, consumer)?;
            member.last_seen_ms = now_ms;
            let n = member.partitions.len();
            let mut plan = Vec::with_capacity(n);
            for i in 0..n {
                let p = member.partitions[(member.next_index + i) % n.max(1)];
                let (first, next) = bounds.get(p as usize).copied().unwrap_or((0, 0));
                let start = match member.positions.get(&p) {
                    Some(&at) => at,
                    None => match committed.get(&p) {
                        Some(&c) => c,
                        None if reset == Reset::Earliest => first,
                        None => next,
                    },
                };
                // Below the first kept offset (retention): the reset policy, as Kafka's
                // auto.offset.reset on OFFSET_OUT_OF_RANGE.
                let start = match start < first || start > next {
                    true if reset == Reset::Earliest => first,
                    true => next,
                    false => start,
                };
                member.positions.insert(p, start);
                if start < next {
                    plan.push((p, start));
                }
            }
            if n > 0 {
                member.next_index = (member.next_index + 1) % n;
            }
            plan
        };
        let mut records = Vec::new();
        for (p, start) in plan {
            if records.len() >= count {
                break;
            }
            let limits = FetchLimits {
                count: count - records.len(),
                max_bytes: usize::MAX,
            };
            match self.fetch(reader, name, p as u64, start, limits) {
                Ok(mut got) => {
                    if let Some(last) = got.last() {
                        let next = last.offset + 1;
                        let mut state = self.lock();
                        let member = state
                            .topic_mut(name)
                            .ok()
                            .and_then(|t| t.groups.get_mut(group))
                            .and_then(|g| g.members.get_mut(consumer));
                        match member {
                            Some(m) if m.partitions.contains(&p) => {
                                let at = m.positions.entry(p).or_insert(start);
                                if *at == start {
                                    *at = next;
                                } else {
                                    // Moved meanwhile (a SEEK): this read is stale.
                                    got.clear();
                                }
                            }
                            _ => got.clear(),
                        }
                    }
                    records.append(&mut got);
                }
                Err(StreamError::OutOfRange { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(records)
    }

    /// A CONSUME ... BLOCK of the member parks (`true`) or stops waiting (`false`): while one
    /// waits the member is not evicted, and when it stops its session starts again from
    /// `now_ms`. A member gone meanwhile is ignored.
    pub fn member_waiting(
        &self,
        name: &[u8],
        group: &[u8],
        consumer: &[u8],
        waiting: bool,
        now_ms: u64,
    ) {
        let mut state = self.lock();
        let member = state
            .topic_mut(name)
            .ok()
            .and_then(|t| t.groups.get_mut(group))
            .and_then(|g| g.members.get_mut(consumer));
        if let Some(member) = member {
            match waiting {
                true => member.waiting += 1,
                false => member.waiting = member.waiting.saturating_sub(1),
            }
            member.last_seen_ms = member.last_seen_ms.max(now_ms);
        }
    }

    /// STREAM.COMMIT: durable committed offsets, fenced by generation.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &self,
        store: &Store,
        name: &[u8],
        group: &[u8],
        consumer: &[u8],
        generation: u64,
        offsets: &[(u64, u64)],
        now_ms: u64,
    ) -> Result<Option<u64>> {
        let written = write(store, |txn| {
            let id = {
                let mut state = self.lock();
                let topic = state.topic_mut(name)?;
                let id = topic.meta.expect("settings").id;
                let partitions = topic.partition_count();
                let nexts: Vec<u64> = topic.partitions.iter().map(|p| p.next).collect();
                let g = topic
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| not_member(group, consumer))?;
                let current = g.generation;
                let member = Self::member_mut(g, group, consumer)?;
                if generation != current {
                    return Err(stale(group, generation, current));
                }
                member.last_seen_ms = now_ms;
                for &(p, offset) in offsets {
                    if p >= partitions as u64 {
                        return Err(StreamError::UnknownPartition {
                            topic: name.to_vec(),
                            partition: p,
                            partitions,
                        });
                    }
                    if !member.partitions.contains(&(p as u32)) {
                        return Err(StreamError::Rebalance(format!(
                            "partition {p} is not assigned to consumer '{}' in generation {current}: join again",
                            show(consumer)
                        )));
                    }
                    let next = nexts.get(p as usize).copied().unwrap_or(0);
                    if offset > next {
                        return Err(StreamError::Invalid(format!(
                            "offset {offset} for partition {p} is past its next offset {next}"
                        )));
                    }
                }
                id
            };
            for &(p, offset) in offsets {
                put(
                    txn,
                    &codec::committed_key(id, p as u32, group),
                    &offset.to_le_bytes(),
                )?;
            }
            Ok(())
        });
        written.map(|w| w.1)
    }

    /// (partition, committed) for every partition; -1: none.
    pub fn offsets(&self, name: &[u8], group: &[u8]) -> Result<Vec<(u32, i64)>> {
        let state = self.lock();
        let topic = state.topic(name)?;
        let g = topic.groups.get(group);
        Ok((0..topic.partition_count())
            .map(|p| {
                let c = g
                    .and_then(|g| g.committed.get(&p))
                    .map_or(-1, |&c| c as i64);
                (p, c)
            })
            .collect())
    }

    /// (partition, end offset, committed or -1, lag) for every partition.
    pub fn lag(&self, name: &[u8], group: &[u8]) -> Result<Vec<(u32, u64, i64, u64)>> {
        let state = self.lock();
        let topic = state.topic(name)?;
        let g = topic.groups.get(group);
        Ok((0..topic.partition_count())
            .map(|p| {
                let part = topic.partitions.get(p as usize);
                let (first, next) = part.map_or((0, 0), |x| (x.first, x.next));
                let committed = g.and_then(|g| g.committed.get(&p)).copied();
                let from = committed.unwrap_or(first).max(first);
                (
                    p,
                    next,
                    committed.map_or(-1, |c| c as i64),
                    next.saturating_sub(from),
                )
            })
            .collect())
    }

    /// STREAM.SEEK: the committed offset (durable) and the owner's position.
    pub fn seek(
        &self,
        store: &Store,
        name: &[u8],
        group: &[u8],
        partition: u64,
        to: SeekTo,
    ) -> Result<(u64, Option<u64>)> {
        let written = write(store, |txn| {
            let (id, offset) = {
                let state = self.lock();
                let topic = state.topic(name)?;
                let partitions = topic.partition_count();
                if partition >= partitions as u64 {
                    return Err(StreamError::UnknownPartition {
                        topic: name.to_vec(),
                        partition,
                        partitions,
                    });
                }
                let part = topic.partitions.get(partition as usize);
                let (first, next) = part.map_or((0, 0), |x| (x.first, x.next));
                let offset = match to {
                    SeekTo::Earliest => first,
                    SeekTo::Latest => next,
                    SeekTo::Offset(o) if o < first || o > next => {
                        return Err(StreamError::OutOfRange {
                            topic: name.to_vec(),
                            partition: partition as u32,
                            offset: o,
                            first,
                            next,
                        })
                    }
                    SeekTo::Offset(o) => o,
                };
                (topic.meta.expect("settings").id, offset)
            };
            put(
                txn,
                &codec::committed_key(id, partition as u32, group),
                &offset.to_le_bytes(),
            )?;
            Ok(offset)
        });
        let (offset, seq) = written?;
        let mut state = self.lock();
        if let Some(g) = state
            .topic_mut(name)
            .ok()
            .and_then(|t| t.groups.get_mut(group))
        {
            for member in g.members.values_mut() {
                if member.partitions.contains(&(partition as u32)) {
                    member.positions.insert(partition as u32, offset);
                }
            }
        }
        Ok((offset, seq))
    }

    pub fn groups(&self, name: &[u8]) -> Result<Vec<GroupInfo>> {
        let state = self.lock();
        let topic = state.topic(name)?;
        Ok(topic
            .groups
            .iter()
            .map(|(n, g)| GroupInfo {
                name: n.clone(),
                generation: g.generation,
                reset: g.reset,
                members: g
                    .members
                    .iter()
                    .map(|(c, m)| (c.clone(), m.partitions.clone()))
                    .collect(),
            })
            .collect())
    }

    // ----- the clock ------------------------------------------------------------------------

    /// Evicts members past their session timeout (their partitions move) and applies
    /// retention (a range marker and the new first offset per partition that has blocks to
    /// drop). Returns members evicted and partitions trimmed.
    pub fn tick(&self, store: &Store, now_ms: u64) -> Result<(usize, usize)> {
        let mut evicted = 0;
        let mut trims: Vec<(u32, u32, u64)> = Vec::new();
        {
            let mut state = self.lock();
            for topic in state.topics.values_mut() {
                let Some(meta) = topic.meta else { continue };
                for g in topic.groups.values_mut() {
                    let before = g.members.len();
                    g.members.retain(|_, m| {
                        m.waiting > 0 || m.last_seen_ms.saturating_add(m.session_ms) >= now_ms
                    });
                    if g.members.len() != before {
                        evicted += before - g.members.len();
                        g.rebalance(meta.partitions);
                    }
                }
                if meta.retention_ms == 0 && meta.retention_bytes == 0 {
                    continue;
                }
                for (p, part) in topic.partitions.iter().enumerate() {
                    let mut floor = part.first;
                    let mut bytes = part.bytes;
                    for (i, block) in part.blocks.iter().enumerate() {
                        let old = meta.retention_ms > 0
                            && block.last_ts.saturating_add(meta.retention_ms) < now_ms;
                        let big = meta.retention_bytes > 0
                            && i + 1 < part.blocks.len()
                            && bytes - block.bytes >= meta.retention_bytes;
                        if !(old || big) {
                            break;
                        }
                        bytes -= block.bytes;
                        floor = block.end;
                    }
                    if floor > part.first {
                        trims.push((meta.id, p as u32, floor));
                    }
                }
            }
        }
        if !trims.is_empty() {
            write(store, |txn| {
                for &(id, p, floor) in &trims {
                    push_op(
                        txn,
                        RecordKind::DropRange,
                        &codec::partition_prefix(id, p),
                        &floor.to_be_bytes(),
                    )?;
                    put(txn, &codec::floor_key(id, p), &floor.to_le_bytes())?;
                }
                Ok(())
            })?;
        }
        Ok((evicted, trims.len()))
    }

    // ----- the log's changes ----------------------------------------------------------------

    fn apply_op(state: &mut State, op: &Op<'_>, seq: u64) {
        let Some(&tag) = op.key.first() else { return };
        let key = &op.key[1..];
        match (tag, op.kind) {
            (codec::TOPIC, RecordKind::Put) => {
                let Some(meta) = codec::decode_topic(op.value) else {
                    return;
                };
                state.next_id = state.next_id.max(meta.id + 1);
                state.names.insert(key.to_vec(), meta.id);
                let topic = state.topics.entry(meta.id).or_default();
                topic.name = key.to_vec();
                let grew = topic.meta.is_some_and(|m| m.partitions < meta.partitions);
                topic.meta = Some(meta);
                if topic.partitions.len() < meta.partitions as usize {
                    topic
                        .partitions
                        .resize_with(meta.partitions as usize, Partition::default);
                }
                if grew {
                    for g in topic.groups.values_mut() {
                        if !g.members.is_empty() {
                            g.rebalance(meta.partitions);
                        }
                    }
                }
            }
            (codec::TOPIC, RecordKind::Delete) => {
                if let Some(id) = state.names.remove(key) {
                    state.topics.remove(&id);
                }
            }
            (codec::NEXT_ID, RecordKind::Put) if op.value.len() == 4 => {
                state.next_id = state.next_id.max(codec::u32_le(op.value, 0));
            }
            (codec::CHUNK, RecordKind::Append) => {
                let (Some((id, p, base)), Some((count, ts))) = (
                    codec::decode_chunk_key(op.key),
                    codec::chunk_header(op.value),
                ) else {
                    return;
                };
                let topic = state.topics.entry(id).or_default();
                topic
                    .partition_mut(p)
                    .append(base, count as u64, seq, op.value.len() as u64, ts);
            }
            (codec::CHUNK, RecordKind::DropRange) if op.key.len() == 9 && op.value.len() == 8 => {
                let id = codec::u32_be(op.key, 1);
                let p = codec::u32_be(op.key, 5);
                let floor = u64::from_be_bytes(op.value.try_into().expect("8 bytes"));
                if let Some(topic) = state.topics.get_mut(&id) {
                    topic.partition_mut(p).drop_below(floor);
                }
            }
            (codec::FLOOR, RecordKind::Put) if op.key.len() == 9 && op.value.len() == 8 => {
                let id = codec::u32_be(op.key, 1);
                let p = codec::u32_be(op.key, 5);
                let floor = codec::u64_le(op.value, 0);
                state
                    .topics
                    .entry(id)
                    .or_default()
                    .partition_mut(p)
                    .drop_below(floor);
            }
            (codec::GROUP, RecordKind::Put) if key.len() >= 4 => {
                let id = codec::u32_be(key, 0);
                let g = state.topics.entry(id).or_default().group_mut(&key[4..]);
                g.reset = codec::decode_reset(op.value);
                g.stored = true;
            }
            (codec::COMMITTED, RecordKind::Put) if key.len() >= 8 && op.value.len() == 8 => {
                let id = codec::u32_be(key, 0);
                let p = codec::u32_be(key, 4);
                let g = state.topics.entry(id).or_default().group_mut(&key[8..]);
                g.committed.insert(p, codec::u64_le(op.value, 0));
            }
            (codec::COMMITTED, RecordKind::Delete) if key.len() >= 8 => {
                let id = codec::u32_be(key, 0);
                let p = codec::u32_be(key, 4);
                if let Some(g) = state
                    .topics
                    .get_mut(&id)
                    .and_then(|t| t.groups.get_mut(&key[8..]))
                {
                    g.committed.remove(&p);
                }
            }
            _ => {}
        }
    }
}

thread_local! {
    /// A single-record publish's chunk, reused.
    static ONE_CHUNK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The offset after the chunks a transaction already holds for a partition (`None`: it holds
/// none; a transaction with no writes is not scanned).
fn pending_next(txn: &Txn<'_>, id: u32, p: u32) -> Option<u64> {
    if txn.pending() == 0 {
        return None;
    }
    txn.batch()
        .iter()
        .filter(|op| op.namespace == NS && op.kind == RecordKind::Append)
        .filter_map(|op| {
            let (chunk_id, chunk_p, base) = codec::decode_chunk_key(op.key)?;
            let (count, _) = codec::chunk_header(op.value)?;
            (chunk_id == id && chunk_p == p).then_some(base + count as u64)
        })
        .max()
}

/// The partition a record goes to.
fn route(
    name: &[u8],
    target: Target,
    key: Option<&[u8]>,
    partitions: u32,
    sticky: u32,
) -> Result<u32> {
    match (target, key) {
        (Target::Partition(p), _) if p >= partitions => Err(StreamError::UnknownPartition {
            topic: name.to_vec(),
            partition: p as u64,
            partitions,
        }),
        (Target::Partition(p), _) => Ok(p),
        (Target::ByKey, Some(key)) => Ok(super::partitioner::partition_for_key(key, partitions)),
        _ => Ok(sticky),
    }
}

/// Where STREAM.SEEK moves a group.
#[derive(Clone, Copy, Debug)]
pub enum SeekTo {
    Earliest,
    Latest,
    Offset(u64),
}

impl Observer for Streams {
    fn start(&self, _engine: &Engine) -> Replay {
        *self.lock() = State::default();
        Replay::Rebuild
    }

    fn apply(&self, change: &Change<'_>) {
        let mut state = self.lock();
        for op in change.ops {
            if op.namespace == NS {
                Streams::apply_op(&mut state, op, change.seq);
            }
        }
    }
}

fn check_partitions(partitions: u32) -> Result<()> {
    if partitions == 0 || partitions > PARTITIONS_MAX {
        return Err(StreamError::Invalid(format!(
            "PARTITIONS must be from 1 to {PARTITIONS_MAX}, got {partitions}"
        )));
    }
    Ok(())
}

fn not_member(group: &[u8], consumer: &[u8]) -> StreamError {
    StreamError::Rebalance(format!(
        "consumer '{}' is not a member of group '{}' (never joined, left or evicted): join again",
        show(consumer),
        show(group)
    ))
}

fn stale(group: &[u8], generation: u64, current: u64) -> StreamError {
    StreamError::Rebalance(format!(
        "group '{}' is at generation {current}, not {generation}: join again",
        show(group)
    ))
}

/// [`Store::write`] with the model's refusals: `decide` refuses before it queues anything, so
/// a refusal writes nothing.
fn write<R>(
    store: &Store,
    decide: impl FnOnce(&mut Txn<'_>) -> Result<R>,
) -> Result<(R, Option<u64>)> {
    let mut refusal = None;
    let written = store.write(|txn| {
        decide(txn).map_err(|e| {
            refusal = Some(e);
            Frame::error("ERR refused")
        })
    });
    match written {
        Ok(w) => Ok((w.reply, w.seq)),
        Err(frame) => Err(refusal.unwrap_or_else(|| match frame {
            Frame::Error(message) => StreamError::Engine(message),
            other => StreamError::Engine(format!("{other:?}")),
        })),
    }
}

fn put(txn: &mut Txn<'_>, key: &[u8], value: &[u8]) -> Result<()> {
    Ok(txn.put(NS, key, value, 0)?)
}

fn push_op(txn: &mut Txn<'_>, kind: RecordKind, key: &[u8], value: &[u8]) -> Result<()> {
    Ok(txn.push(Op {
        kind,
        namespace: NS,
        key,
        value,
        expiry_ms: 0,
    })?)
}
