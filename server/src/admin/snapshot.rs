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
use crate::recorder::{Family, LatencyTotals};
use flin_engine::Namespace;

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
    /// `[ok, error]` results per command name, for the commands called at least once
    /// (bounded by the command table, not by clients), in the table's order.
    pub command_results: Vec<(&'static str, [u64; 2])>,
    /// Requests that named no command.
    pub commands_unknown: u64,
    /// Latency per command family, in [`Family::ALL`]'s order.
    pub latency: Vec<(Family, LatencyTotals)>,
    /// Bytes the event loops read from and wrote to client sockets.
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub engine: flin_engine::Stats,
    /// Live keys per engine namespace (`kv`, `queue`, `stream`, `document`, `system`).
    pub keys_by_namespace: Vec<(&'static str, u64)>,
    /// Document selections by plan: by `_id`, by index, by scan.
    pub doc_plans: [(&'static str, u64); 3],
    pub cluster: ClusterFigures,
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

/// What this node knows of its cluster ([`cluster_figures`]).
#[derive(Debug)]
pub struct ClusterFigures {
    /// `standalone`, `leader`, `follower`, `pre-candidate` or `candidate`.
    pub role: &'static str,
    pub term: u64,
    /// The highest log entry known committed (a standalone node commits what it writes).
    pub commit_index: u64,
    /// The highest log entry applied to the models.
    pub applied_index: u64,
    /// Elections this node won since it started.
    pub elections: u64,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    pub last_index: u64,
    /// On the leader: each follower's id and match index.
    pub followers: Vec<(u64, u64)>,
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
        let recorded = shared.recorder.totals();
        let engine = reader.stats();
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
            connections_rejected: shared.io.connections_refused(),
            commands_processed: recorded.processed,
            command_results: crate::cmd::commands()
                .zip(recorded.results)
                .filter(|(_, results)| results[0] + results[1] > 0)
                .map(|(command, results)| (command.name, results))
                .collect(),
            commands_unknown: recorded.unknown,
            latency: Family::ALL.into_iter().zip(recorded.latency).collect(),
            bytes_read: shared.io.bytes_read(),
            bytes_written: shared.io.bytes_written(),
            keys_by_namespace: Namespace::ALL
                .into_iter()
                .map(|namespace| (namespace_name(namespace), reader.len(namespace)))
                .collect(),
            doc_plans: [
                ("id", shared.docs.plans.id_lookup.load(Ordering::Relaxed)),
                ("index", shared.docs.plans.index.load(Ordering::Relaxed)),
                ("collscan", shared.docs.plans.scan.load(Ordering::Relaxed)),
            ],
            cluster: cluster_figures(shared, &engine),
            engine,
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
                "unknown": self.commands_unknown,
                "calls": self.command_results.iter().map(|(name, [ok, error])| (name.to_string(), json!(ok + error))).collect::<serde_json::Map<_, _>>(),
                "errors": self.command_results.iter().filter(|(_, [_, error])| *error > 0).map(|(name, [_, error])| (name.to_string(), json!(error))).collect::<serde_json::Map<_, _>>(),
            },
            "latency": self.latency.iter().map(|(family, totals)| (family.name().to_string(), json!({
                "count": totals.count(),
                "sum_seconds": totals.sum_ns as f64 / 1e9,
                "p50_seconds": totals.quantile_seconds(0.5),
                "p99_seconds": totals.quantile_seconds(0.99),
            }))).collect::<serde_json::Map<_, _>>(),
            "network": {
                "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written,
            },
            "cluster": {
                "role": self.cluster.role,
                "term": self.cluster.term,
                "commit_index": self.cluster.commit_index,
                "applied_index": self.cluster.applied_index,
                "elections": self.cluster.elections,
                "leader": self.cluster.leader,
                "last_index": self.cluster.last_index,
                "followers": self.cluster.followers.iter().map(|(id, matched)| serde_json::json!({
                    "id": id,
                    "match_index": matched,
                    "lag": self.cluster.last_index.saturating_sub(*matched),
                })).collect::<Vec<_>>(),
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
                "keys_by_namespace": self.keys_by_namespace.iter().map(|(name, keys)| (name.to_string(), json!(keys))).collect::<serde_json::Map<_, _>>(),
                "writes": engine.writes,
                "flushes": engine.flushes,
                "flush_seconds": engine.flush_nanos as f64 / 1e9,
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
                "queries_by_plan": self.doc_plans.iter().map(|(plan, n)| (plan.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
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

/// The cluster as this node sees it: a lone node is `standalone` (term 0, no elections,
/// everything it wrote committed and applied); a cluster node reports what its raft thread
/// last saw (`cluster::View`).
fn cluster_figures(shared: &Shared, engine: &flin_engine::Stats) -> ClusterFigures {
    let Some(cluster) = shared.store.cluster() else {
        return ClusterFigures {
            role: "standalone",
            term: 0,
            commit_index: engine.last_seq,
            applied_index: engine.last_seq,
            elections: 0,
            leader: None,
            last_index: engine.last_seq,
            followers: Vec::new(),
        };
    };
    let view = cluster.view();
    ClusterFigures {
        role: crate::cmd::cluster::role_name(view.role),
        term: view.term,
        commit_index: view.commit,
        applied_index: view.applied,
        elections: view.elections_won,
        leader: view.leader,
        last_index: view.last_index,
        followers: view.matches.into_iter().collect(),
    }
}

/// A namespace's label value.
fn namespace_name(namespace: Namespace) -> &'static str {
    match namespace {
        Namespace::Kv => "kv",
        Namespace::Queue => "queue",
        Namespace::Stream => "stream",
        Namespace::Document => "document",
        Namespace::System => "system",
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::admin::metrics;
    use crate::context::{open_engine, Session};
    use crate::recorder::Family;

    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    /// A compaction moves the compaction counters; fsyncs move the flush summary; the
    /// per-namespace key counts and the standalone cluster figures are shown.
    #[test]
    fn engine_figures_move_with_compaction_and_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let config = flin_engine::Config::directory(dir.path())
            .segment_bytes(4096)
            .background_compaction(false);
        let (engine, observers) = open_engine(config).unwrap();
        let shared = Arc::new(Shared::open(engine.clone(), observers, Default::default()).unwrap());
        let mut session = Session::new(1, "127.0.0.1:1".parse().unwrap(), true);
        let before = metrics::render(&Snapshot::gather(&shared, 0.0));
        assert_eq!(sample(&before, "flin_engine_compactions_total"), 0.0);
        // Overwrites of one key fill several segments with dead records.
        let value = "v".repeat(500);
        for _ in 0..40 {
            let (reply, _) =
                crate::dispatch::execute(&shared, &mut session, &[b"SET", b"k", value.as_bytes()]);
            assert_eq!(reply, crate::frame::Frame::ok());
        }
        engine.flush().unwrap();
        let report = engine.compact(0.0).unwrap();
        assert!(report.bytes_reclaimed > 0, "{report:?}");
        let after = metrics::render(&Snapshot::gather(&shared, 0.0));
        assert_eq!(sample(&after, "flin_engine_compactions_total"), 1.0);
        assert_eq!(
            sample(&after, "flin_engine_compaction_reclaimed_bytes_total"),
            report.bytes_reclaimed as f64
        );
        assert!(sample(&after, "flin_engine_flush_duration_seconds_count") >= 1.0);
        assert!(sample(&after, "flin_engine_flush_duration_seconds_sum") > 0.0);
        assert_eq!(
            sample(&after, "flin_engine_namespace_keys{namespace=\"kv\"}"),
            1.0
        );
        assert_eq!(
            sample(&after, "flin_commands_total{command=\"set\",result=\"ok\"}"),
            40.0
        );
        assert_eq!(
            sample(&after, "flin_cluster_role{role=\"standalone\"}"),
            1.0
        );
    }

    /// Results by command, the unknown count, and the document plans; the JSON carries the
    /// same, with p50/p99 per family computed from the buckets.
    #[test]
    fn commands_results_and_plans_are_counted() {
        let shared = Shared::new(flin_engine::Config::memory(), Default::default());
        let mut session = Session::new(1, "127.0.0.1:1".parse().unwrap(), true);
        let mut run = |args: &[&[u8]]| crate::dispatch::execute(&shared, &mut session, args).0;
        run(&[b"SET", b"k", b"v"]);
        assert!(run(&[b"INCR", b"k"]).is_error());
        assert!(
            run(&[b"GET"]).is_error(),
            "a refusal counts as the command's error"
        );
        assert!(run(&[b"NOSUCH"]).is_error());
        run(&[b"DOC.INSERT", b"c", br#"{"_id":1,"a":1}"#]);
        run(&[b"DOC.FIND", b"c", br#"{"_id":1}"#]);
        run(&[b"DOC.FIND", b"c", br#"{"a":1}"#]);
        shared
            .recorder
            .latency(Family::Kv, std::time::Duration::from_micros(3));
        let snapshot = Snapshot::gather(&shared, 0.0);
        let text = metrics::render(&snapshot);
        for (series, value) in [
            ("flin_commands_total{command=\"set\",result=\"ok\"}", 1.0),
            (
                "flin_commands_total{command=\"incr\",result=\"error\"}",
                1.0,
            ),
            ("flin_commands_total{command=\"get\",result=\"error\"}", 1.0),
            ("flin_commands_total{command=\"get\",result=\"ok\"}", 0.0),
            ("flin_commands_unknown_total", 1.0),
            ("flin_doc_queries_total{plan=\"id\"}", 1.0),
            ("flin_doc_queries_total{plan=\"collscan\"}", 1.0),
            ("flin_doc_queries_total{plan=\"index\"}", 0.0),
            ("flin_command_duration_seconds_count{family=\"kv\"}", 1.0),
            (
                "flin_command_duration_seconds_bucket{family=\"kv\",le=\"0.000002048\"}",
                0.0,
            ),
            (
                "flin_command_duration_seconds_bucket{family=\"kv\",le=\"0.000004096\"}",
                1.0,
            ),
            (
                "flin_command_duration_seconds_bucket{family=\"kv\",le=\"+Inf\"}",
                1.0,
            ),
        ] {
            assert_eq!(sample(&text, series), value, "{series}");
        }
        let json = snapshot.to_json();
        assert_eq!(json["commands"]["errors"]["incr"], 1);
        assert_eq!(json["commands"]["calls"]["set"], 1);
        assert_eq!(json["documents"]["queries_by_plan"]["id"], 1);
        assert_eq!(json["latency"]["kv"]["count"], 1);
        let p50 = json["latency"]["kv"]["p50_seconds"].as_f64().unwrap();
        assert!((2.048e-6..=4.096e-6).contains(&p50), "{p50}");
        assert!(json["latency"]["doc"]["p99_seconds"].is_null());
        assert_eq!(json["cluster"]["role"], "standalone");
    }
}
