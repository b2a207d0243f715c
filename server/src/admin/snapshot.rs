//! [`Snapshot`]: the daemon's figures at one moment, gathered from [`Shared`] once per request
//! and rendered two ways, as `/api/stats`'s JSON ([`Snapshot::to_json`]) and as `/metrics`
//! (`admin::metrics`), so the two always cover the same things.
//!
//! Per-object figures (queues, topics, consumer groups, collections) are bounded by
//! [`OBJECTS_PER_MODEL_MAX`]: the first ones in name order are shown, and how many were left
//! out is counted, so a server with a million queues does not answer with a million series.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::context::{Shared, KV};
use crate::queue::QueueInfo;

/// Most queues, topics, consumer groups (over all topics) and collections a snapshot shows
/// each; the rest are counted in `dropped` (`flin_metrics_series_dropped`).
pub const OBJECTS_PER_MODEL_MAX: usize = 100;

/// The daemon's figures at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub version: &'static str,
    pub node_id: String,
    pub uptime_seconds: u64,
    pub recovery_seconds: f64,
    pub connected_clients: u64,
    pub connections_received: u64,
    pub connections_rejected: u64,
    pub commands_processed: u64,
    /// Calls per command name, for the commands called at least once (bounded by the
    /// command table, not by clients), in the table's order.
    pub command_calls: Vec<(&'static str, u64)>,
    pub engine: flin_engine::Stats,
    pub poisoned: bool,
    pub kv_keys: u64,
    pub queues_total: usize,
    pub queues: Vec<QueueInfo>,
    pub topics_total: usize,
    pub topics: Vec<TopicFigures>,
    pub collections_total: usize,
    pub collections: Vec<CollectionFigures>,
    /// Objects left out per model (`queue`, `topic`, `group`, `collection`).
    pub dropped: Dropped,
    /// Resident memory, the data directory's bytes, a millisecond clock (`admin::process`).
    pub process: super::process::ProcessFigures,
}

#[derive(Debug, Default)]
pub struct Dropped {
    pub queues: usize,
    pub topics: usize,
    pub groups: usize,
    pub collections: usize,
}

#[derive(Debug)]
pub struct TopicFigures {
    pub name: String,
    pub partitions: u32,
    /// Records retained, over all partitions (end offset minus first offset).
    pub records: u64,
    pub bytes: u64,
    pub groups: Vec<GroupFigures>,
}

#[derive(Debug)]
pub struct GroupFigures {
    pub name: String,
    pub members: usize,
    /// Records not yet committed, over all partitions.
    pub lag: u64,
}

#[derive(Debug)]
pub struct CollectionFigures {
    pub name: String,
    pub documents: u64,
    pub indexes: Vec<IndexFigures>,
}

#[derive(Debug)]
pub struct IndexFigures {
    pub name: String,
    pub entries: u64,
    /// False while the index is being built.
    pub ready: bool,
}

/// A name for JSON and labels: names are bytes, shown as UTF-8 (invalid bytes replaced).
fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Snapshot {
    /// Gathers the figures; each model is read under its own lock, one after the other, so
    /// the models' figures are each consistent but not taken at exactly the same instant.
    pub fn gather(shared: &Shared, recovery_seconds: f64) -> Snapshot {
        let counters = &shared.counters;
        let reader = shared.store.reader();
        let mut dropped = Dropped::default();
        let (queues, queues_total) = shared.queues.snapshot(OBJECTS_PER_MODEL_MAX);
        dropped.queues = queues_total - queues.len();
        let (topics, topics_total) = topic_figures(shared, &mut dropped);
        let (collections, collections_total) = collection_figures(shared);
        dropped.collections = collections_total - collections.len();
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            node_id: shared.options.node_id.clone(),
            uptime_seconds: shared.started.elapsed().as_secs(),
            recovery_seconds,
            connected_clients: counters.connected_clients.load(Ordering::Relaxed),
            connections_received: counters.connections_received.load(Ordering::Relaxed),
            connections_rejected: counters.rejected_connections.load(Ordering::Relaxed),
            commands_processed: counters.commands_processed.load(Ordering::Relaxed),
            command_calls: crate::cmd::commands()
                .map(|c| (c.name, c.calls.load(Ordering::Relaxed)))
                .filter(|(_, calls)| *calls > 0)
                .collect(),
            engine: reader.stats(),
            poisoned: reader.poisoned().is_some(),
            kv_keys: reader.len(KV),
            queues_total,
            queues,
            topics_total,
            topics,
            collections_total,
            collections,
            dropped,
            process: super::process::ProcessFigures::gather(
                shared.started,
                shared.options.data.as_deref(),
            ),
        }
    }

    /// `/api/stats`'s body.
    pub fn to_json(&self) -> Value {
        let engine = &self.engine;
        json!({
            "version": self.version,
            "node_id": self.node_id,
            "uptime_seconds": self.uptime_seconds,
            "recovery_seconds": self.recovery_seconds,
            "connections": {
                "connected": self.connected_clients,
                "received": self.connections_received,
                "rejected": self.connections_rejected,
            },
            "commands": {
                "processed": self.commands_processed,
                "calls": self.command_calls.iter().map(|(name, calls)| (name.to_string(), json!(calls))).collect::<serde_json::Map<_, _>>(),
            },
            "engine": {
                "keys": engine.keys,
                "kv_keys": self.kv_keys,
                "segments": engine.segments,
                "log_bytes": engine.log_bytes,
                "dead_bytes": engine.dead_bytes,
                "index_bytes": engine.index_bytes,
                "last_seq": engine.last_seq,
                "durable_seq": engine.durable_seq,
                "writes": engine.writes,
                "flushes": engine.flushes,
                "compactions": engine.compactions,
                "compaction_reclaimed_bytes": engine.compaction_reclaimed_bytes,
                "expired_keys_reclaimed": engine.expired_keys_reclaimed,
                "poisoned": self.poisoned,
            },
            "queues": {
                "total": self.queues_total,
                "shown": self.queues.iter().map(|q| json!({
                    "name": shown(&q.name),
                    "ready": q.ready,
                    "in_flight": q.in_flight,
                    "consumers": q.consumers,
                    "waiters": q.waiters,
                    "pushed": q.pushed,
                    "delivered": q.delivered,
                    "acked": q.acked,
                    "dead_lettered": q.dead_lettered,
                })).collect::<Vec<_>>(),
            },
            "streams": {
                "total": self.topics_total,
                "shown": self.topics.iter().map(|t| json!({
                    "name": t.name,
                    "partitions": t.partitions,
                    "records": t.records,
                    "bytes": t.bytes,
                    "groups": t.groups.iter().map(|g| json!({
                        "name": g.name,
                        "members": g.members,
                        "lag": g.lag,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            },
            "documents": {
                "total": self.collections_total,
                "shown": self.collections.iter().map(|c| json!({
                    "name": c.name,
                    "documents": c.documents,
                    "indexes": c.indexes.iter().map(|i| json!({
                        "name": i.name,
                        "entries": i.entries,
                        "ready": i.ready,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            },
            "dropped": {
                "limit": OBJECTS_PER_MODEL_MAX,
                "queues": self.dropped.queues,
                "topics": self.dropped.topics,
                "groups": self.dropped.groups,
                "collections": self.dropped.collections,
            },
            "process": self.process.process_json(),
            "disk": self.process.disk_json(),
        })
    }
}

/// The first topics in name order with their groups (at most [`OBJECTS_PER_MODEL_MAX`] groups
/// over all of them), and how many topics there are. A topic deleted between the listing and
/// its description is skipped.
fn topic_figures(shared: &Shared, dropped: &mut Dropped) -> (Vec<TopicFigures>, usize) {
    let names = shared.streams.list(None);
    let mut topics = Vec::new();
    let mut groups_left = OBJECTS_PER_MODEL_MAX;
    for name in names.iter().take(OBJECTS_PER_MODEL_MAX) {
        let Ok(info) = shared.streams.describe(name) else {
            continue;
        };
        let mut groups = Vec::new();
        for group in shared.streams.groups(name).unwrap_or_default() {
            if groups_left == 0 {
                dropped.groups += 1;
                continue;
            }
            groups_left -= 1;
            let lag = shared
                .streams
                .lag(name, &group.name)
                .map_or(0, |partitions| partitions.iter().map(|p| p.3).sum());
            groups.push(GroupFigures {
                name: shown(&group.name),
                members: group.members.len(),
                lag,
            });
        }
        topics.push(TopicFigures {
            name: shown(name),
            partitions: info.meta.partitions,
            records: info.partitions.iter().map(|p| p.next - p.first).sum(),
            bytes: info.partitions.iter().map(|p| p.bytes).sum(),
            groups,
        });
    }
    dropped.topics = names.len().saturating_sub(OBJECTS_PER_MODEL_MAX);
    (topics, names.len())
}

/// The first collections in name order, from the documents' catalog (the engine's observer:
/// counts kept as documents are written, so nothing is scanned), and how many there are.
fn collection_figures(shared: &Shared) -> (Vec<CollectionFigures>, usize) {
    let catalog = shared.docs.indexes().read();
    let mut collections: Vec<_> = catalog
        .collections
        .values()
        .filter(|c| !c.name.is_empty())
        .collect();
    collections.sort_by(|a, b| a.name.cmp(&b.name));
    let total = collections.len();
    let shown_collections = collections
        .into_iter()
        .take(OBJECTS_PER_MODEL_MAX)
        .map(|c| CollectionFigures {
            name: shown(&c.name),
            documents: c.count,
            indexes: c
                .indexes
                .values()
                .filter_map(|index| {
                    let spec = index.spec.as_ref()?;
                    (!spec.dropping).then(|| IndexFigures {
                        name: spec.name.clone(),
                        entries: index.entries.len() as u64,
                        ready: spec.ready,
                    })
                })
                .collect(),
        })
        .collect();
    (shown_collections, total)
}
