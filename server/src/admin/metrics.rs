//! `/metrics`: a [`Snapshot`] in Prometheus's text exposition format, version 0.0.4. Every
//! family has `# HELP` and `# TYPE`; counters end in `_total`; label values are escaped
//! (backslash, double quote, newline). Per-object families are as bounded as the snapshot
//! ([`super::snapshot::OBJECTS_PER_MODEL_MAX`] objects per model), and
//! `flin_metrics_series_dropped{model}` says how many objects were left out.

use std::fmt::Write as _;

use super::snapshot::Snapshot;
use crate::recorder::BUCKET_BOUNDS_NS;

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    /// Samples `_bucket{le}` (cumulative), `_sum` and `_count`.
    Histogram,
    /// Here only `_sum` and `_count` (no quantiles): a mean over any interval.
    Summary,
}

/// The text being built, one family at a time.
struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family: its HELP and TYPE lines.
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(valid_name(name), "metric name {name:?}");
        debug_assert_eq!(matches!(kind, Kind::Counter), name.ends_with("_total"));
        debug_assert!(
            !matches!(kind, Kind::Histogram | Kind::Summary) || name.ends_with("_seconds"),
            "{name}: the only histograms and summaries are durations"
        );
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// A label value as the format wants it: `\`, `"` and newline escaped.
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// HELP text escapes only `\` and newline.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The exposition of `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    use Kind::{Counter, Gauge, Histogram, Summary};
    let mut x = Exposition { out: String::new() };
    x.family(
        "flin_build_info",
        Gauge,
        "Always 1; the labels name the build and node.",
    );
    x.sample(
        "flin_build_info",
        &[
            ("version", snapshot.version),
            ("node_id", &snapshot.node_id),
        ],
        1,
    );
    x.single(
        "flin_uptime_seconds",
        Gauge,
        "Seconds since the daemon started.",
        snapshot.uptime_seconds,
    );
    x.single(
        "flin_recovery_seconds",
        Gauge,
        "How long opening the engine (recovery) took at startup.",
        snapshot.recovery_seconds,
    );
    if let Some(rss) = snapshot.process.rss_bytes {
        x.single(
            "flin_process_resident_memory_bytes",
            Gauge,
            "Resident memory of the daemon (VmRSS).",
            rss,
        );
    }
    if let Some(bytes) = snapshot.process.data_dir_bytes {
        x.single(
            "flin_data_dir_bytes",
            Gauge,
            "Bytes of the regular files under the data directory (a lower bound past 100000 entries).",
            bytes,
        );
    }
    x.single(
        "flin_connected_clients",
        Gauge,
        "Client connections open now.",
        snapshot.connected_clients,
    );
    x.single(
        "flin_connections_received_total",
        Counter,
        "Client connections accepted.",
        snapshot.connections_received,
    );
    x.single(
        "flin_connections_rejected_total",
        Counter,
        "Client connections refused (--maxclients).",
        snapshot.connections_rejected,
    );
    x.single(
        "flin_commands_processed_total",
        Counter,
        "Commands run, of every model and protocol.",
        snapshot.commands_processed,
    );

    x.family(
        "flin_commands_total",
        Counter,
        "Commands run, by name and result (an error reply, or a refusal before running, is an \
         error; inside EXEC each queued command counts; commands never called are left out).",
    );
    for (command, [ok, error]) in &snapshot.command_results {
        for (result, count) in [("ok", ok), ("error", error)] {
            x.sample(
                "flin_commands_total",
                &[("command", command), ("result", result)],
                count,
            );
        }
    }
    x.single(
        "flin_commands_unknown_total",
        Counter,
        "Requests naming no command.",
        snapshot.commands_unknown,
    );
    x.family(
        "flin_command_duration_seconds",
        Histogram,
        "Time from a request parsed to its reply in the output buffer, per command family \
         (not the durability wait nor the socket write).",
    );
    for (family, totals) in &snapshot.latency {
        let family = [("family", family.name())];
        let mut cumulative = 0;
        for (bound_ns, in_bucket) in BUCKET_BOUNDS_NS.iter().zip(&totals.buckets) {
            cumulative += in_bucket;
            let le = (*bound_ns as f64 / 1e9).to_string();
            x.sample(
                "flin_command_duration_seconds_bucket",
                &[family[0], ("le", &le)],
                cumulative,
            );
        }
        x.sample(
            "flin_command_duration_seconds_bucket",
            &[family[0], ("le", "+Inf")],
            totals.count(),
        );
        x.sample(
            "flin_command_duration_seconds_sum",
            &family,
            totals.sum_ns as f64 / 1e9,
        );
        x.sample(
            "flin_command_duration_seconds_count",
            &family,
            totals.count(),
        );
    }
    x.single(
        "flin_network_received_bytes_total",
        Counter,
        "Bytes read from client connections.",
        snapshot.bytes_read,
    );
    x.single(
        "flin_network_sent_bytes_total",
        Counter,
        "Bytes written to client connections.",
        snapshot.bytes_written,
    );

    let engine = &snapshot.engine;
    x.single(
        "flin_engine_keys",
        Gauge,
        "Live keys in the engine's indexes, over all namespaces.",
        engine.keys,
    );
    x.family(
        "flin_engine_namespace_keys",
        Gauge,
        "Live keys of the engine namespace (expired ones included until reclaimed).",
    );
    for (namespace, keys) in &snapshot.keys_by_namespace {
        x.sample(
            "flin_engine_namespace_keys",
            &[("namespace", namespace)],
            keys,
        );
    }
    x.single(
        "flin_kv_keys",
        Gauge,
        "Keys in the key-value namespace (DBSIZE).",
        snapshot.kv_keys,
    );
    x.single(
        "flin_engine_segments",
        Gauge,
        "Log segment files.",
        engine.segments,
    );
    x.single(
        "flin_engine_log_bytes",
        Gauge,
        "Bytes of the log, live and dead.",
        engine.log_bytes,
    );
    x.single(
        "flin_engine_dead_bytes",
        Gauge,
        "Bytes of the log that compaction may reclaim.",
        engine.dead_bytes,
    );
    x.single(
        "flin_engine_index_bytes",
        Gauge,
        "Bytes of the in-memory key indexes.",
        engine.index_bytes,
    );
    x.single(
        "flin_engine_last_seq",
        Gauge,
        "Seq of the last entry written to the log.",
        engine.last_seq,
    );
    x.single(
        "flin_engine_durable_seq",
        Gauge,
        "Every entry up to this seq is on disk.",
        engine.durable_seq,
    );
    x.single(
        "flin_engine_writes_total",
        Counter,
        "Log entries written.",
        engine.writes,
    );
    x.family(
        "flin_engine_flush_duration_seconds",
        Summary,
        "Flushes (msync/fsync) of the log and the time they took.",
    );
    x.sample(
        "flin_engine_flush_duration_seconds_sum",
        &[],
        engine.flush_nanos as f64 / 1e9,
    );
    x.sample(
        "flin_engine_flush_duration_seconds_count",
        &[],
        engine.flushes,
    );
    x.single(
        "flin_engine_compactions_total",
        Counter,
        "Compaction runs that finished (each merges one or more segments).",
        engine.compactions,
    );
    x.single(
        "flin_engine_compaction_reclaimed_bytes_total",
        Counter,
        "Bytes reclaimed by compaction.",
        engine.compaction_reclaimed_bytes,
    );
    x.single(
        "flin_engine_expired_keys_reclaimed_total",
        Counter,
        "Expired keys dropped from the indexes.",
        engine.expired_keys_reclaimed,
    );
    x.single(
        "flin_engine_poisoned",
        Gauge,
        "1 after a failed flush: the engine refuses writes until restarted.",
        snapshot.poisoned as u8,
    );

    x.single(
        "flin_queues",
        Gauge,
        "Queues declared.",
        snapshot.queues_total,
    );
    type QueueField = fn(&crate::queue::QueueInfo) -> u64;
    let queue_families: [(&str, Kind, &str, QueueField); 7] = [
        (
            "flin_queue_ready",
            Gauge,
            "Messages ready for delivery.",
            |q| q.ready,
        ),
        (
            "flin_queue_in_flight",
            Gauge,
            "Messages delivered and not yet acknowledged.",
            |q| q.in_flight,
        ),
        (
            "flin_queue_consumers",
            Gauge,
            "Push consumers subscribed.",
            |q| q.consumers,
        ),
        (
            "flin_queue_pushed_total",
            Counter,
            "Messages pushed since startup.",
            |q| q.pushed,
        ),
        (
            "flin_queue_delivered_total",
            Counter,
            "Deliveries since startup.",
            |q| q.delivered,
        ),
        (
            "flin_queue_acked_total",
            Counter,
            "Messages acknowledged since startup.",
            |q| q.acked,
        ),
        (
            "flin_queue_dead_lettered_total",
            Counter,
            "Messages dead-lettered since startup.",
            |q| q.dead_lettered,
        ),
    ];
    for (name, kind, help, field) in queue_families {
        x.family(name, kind, help);
        for queue in &snapshot.queues {
            let label = String::from_utf8_lossy(&queue.name);
            x.sample(name, &[("queue", &label)], field(queue));
        }
    }

    x.single(
        "flin_stream_topics",
        Gauge,
        "Stream topics.",
        snapshot.topics_total,
    );
    type TopicField = fn(&super::snapshot::TopicFigures) -> u64;
    let topic_families: [(&str, &str, TopicField); 3] = [
        ("flin_stream_partitions", "Partitions of the topic.", |t| {
            t.partitions.into()
        }),
        (
            "flin_stream_records",
            "Records retained, over the topic's partitions.",
            |t| t.records,
        ),
        (
            "flin_stream_bytes",
            "Bytes retained, over the topic's partitions.",
            |t| t.bytes,
        ),
    ];
    for (name, help, field) in topic_families {
        x.family(name, Gauge, help);
        for topic in &snapshot.topics {
            x.sample(name, &[("topic", &topic.name)], field(topic));
        }
    }
    x.family(
        "flin_stream_group_lag",
        Gauge,
        "Records not yet committed by the consumer group, over the topic's partitions.",
    );
    for topic in &snapshot.topics {
        for group in &topic.groups {
            x.sample(
                "flin_stream_group_lag",
                &[("topic", &topic.name), ("group", &group.name)],
                group.lag,
            );
        }
    }
    x.family(
        "flin_stream_group_members",
        Gauge,
        "Members of the consumer group.",
    );
    for topic in &snapshot.topics {
        for group in &topic.groups {
            x.sample(
                "flin_stream_group_members",
                &[("topic", &topic.name), ("group", &group.name)],
                group.members,
            );
        }
    }

    x.single(
        "flin_doc_collections",
        Gauge,
        "Document collections.",
        snapshot.collections_total,
    );
    x.family("flin_doc_documents", Gauge, "Documents in the collection.");
    for collection in &snapshot.collections {
        x.sample(
            "flin_doc_documents",
            &[("collection", &collection.name)],
            collection.documents,
        );
    }
    x.family(
        "flin_doc_index_entries",
        Gauge,
        "Entries of the secondary index (one per document, more for a multikey index).",
    );
    for collection in &snapshot.collections {
        for index in &collection.indexes {
            x.sample(
                "flin_doc_index_entries",
                &[("collection", &collection.name), ("index", &index.name)],
                index.entries,
            );
        }
    }

    x.family(
        "flin_doc_queries_total",
        Counter,
        "Document selections (finds, counts, updates and deletes by filter, EXPLAIN) by the \
         plan that found their documents: id (by _id), index, collscan.",
    );
    for (plan, count) in &snapshot.doc_plans {
        x.sample("flin_doc_queries_total", &[("plan", plan)], count);
    }

    let cluster = &snapshot.cluster;
    x.family(
        "flin_cluster_role",
        Gauge,
        "1 for this node's role: standalone (no cluster), leader, follower, pre-candidate or candidate.",
    );
    x.sample("flin_cluster_role", &[("role", cluster.role)], 1);
    x.single(
        "flin_cluster_term",
        Gauge,
        "The replication term this node is in (0 standalone).",
        cluster.term,
    );
    x.single(
        "flin_cluster_commit_index",
        Gauge,
        "The highest log entry known committed.",
        cluster.commit_index,
    );
    x.single(
        "flin_cluster_applied_index",
        Gauge,
        "The highest log entry applied.",
        cluster.applied_index,
    );
    x.single(
        "flin_cluster_elections_total",
        Counter,
        "Elections this node won.",
        cluster.elections,
    );
    x.family(
        "flin_cluster_follower_lag",
        Gauge,
        "On the leader: entries each follower is behind the leader's last entry.",
    );
    for (follower, matched) in &cluster.followers {
        let id = follower.to_string();
        x.sample(
            "flin_cluster_follower_lag",
            &[("follower", &id)],
            cluster.last_index.saturating_sub(*matched),
        );
    }

    x.family("flin_metrics_series_dropped", Gauge, "Objects of the model left out of this exposition by the per-model cap (100); a gauge, since it falls when objects are deleted.");
    let dropped = &snapshot.dropped;
    for (model, count) in [
        ("queue", dropped.queues),
        ("topic", dropped.topics),
        ("group", dropped.groups),
        ("collection", dropped.collections),
    ] {
        x.sample("flin_metrics_series_dropped", &[("model", model)], count);
    }
    x.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_escapes() {
        assert!(valid_name("flin_queue_ready") && valid_name("a:b_c9") && valid_name("_x"));
        assert!(!valid_name("") && !valid_name("9a") && !valid_name("a-b") && !valid_name("a b"));
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("x\\y\nz"), "x\\\\y\\nz");
    }
}
