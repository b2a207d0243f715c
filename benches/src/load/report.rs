//! The end-of-run summary: throughput and latency percentiles (p50, p90,
//! p99, p99.9, max), as text for people or JSON for scripts.

use serde_json::{json, Value};

use super::driver::{RunConfig, RunResult};

/// Percentiles reported, with their JSON names.
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9)];

/// The header line: what was run against what.
pub fn describe(config: &RunConfig) -> String {
    let bound = match config.requests {
        Some(requests) => format!(
            "{requests} requests (at most {} s)",
            config.duration.as_secs_f64()
        ),
        None => format!("{} s", config.duration.as_secs_f64()),
    };
    format!(
        "{} protocol at {}, {} connections on {} thread(s), pipeline {}, keyspace {}, values {} B, {bound} per workload",
        config.protocol,
        config.addr,
        config.connections,
        config.threads,
        config.pipeline,
        config.keyspace,
        config.value_bytes,
    )
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Two lines per workload.
pub fn text(result: &RunResult) -> String {
    let histogram = &result.latency_ns;
    let mut latency = String::new();
    for (name, percentile) in PERCENTILES {
        latency.push_str(&format!(
            "{name} {:.0}  ",
            us(histogram.value_at_percentile(percentile))
        ));
    }
    let keys = if result.keys == result.requests {
        String::new()
    } else {
        format!(" = {:.0} keys/s", result.keys_per_second())
    };
    let refused = match &result.first_refusal {
        Some(message) => format!(", {} refused (first: {message})", result.refused),
        None => String::new(),
    };
    let cpu = match (result.server_cpu_seconds, result.server_cpu_us_per_key()) {
        (Some(seconds), Some(per_key)) => {
            format!("\n  server CPU: {seconds:.2} s = {per_key:.2} us per key")
        }
        _ => String::new(),
    };
    format!(
        "{}: {} requests in {:.2} s: {:.0} requests/s{keys}{refused}\n  latency us: {latency}max {:.0}  (mean {:.1}){cpu}",
        result.workload,
        result.requests,
        result.elapsed.as_secs_f64(),
        result.requests_per_second(),
        us(histogram.max()),
        histogram.mean() / 1000.0,
    )
}

/// One JSON object per workload.
pub fn json(result: &RunResult) -> Value {
    let histogram = &result.latency_ns;
    let mut latency = serde_json::Map::new();
    for (name, percentile) in PERCENTILES {
        latency.insert(
            name.into(),
            json!(us(histogram.value_at_percentile(percentile))),
        );
    }
    latency.insert("max".into(), json!(us(histogram.max())));
    latency.insert("mean".into(), json!(histogram.mean() / 1000.0));
    json!({
        "workload": result.workload.to_string(),
        "requests": result.requests,
        "keys": result.keys,
        "refused": result.refused,
        "first_refusal": result.first_refusal,
        "seconds": result.elapsed.as_secs_f64(),
        "requests_per_sec": result.requests_per_second(),
        "keys_per_sec": result.keys_per_second(),
        "latency_us": Value::Object(latency),
        "server_cpu_seconds": result.server_cpu_seconds,
        "server_cpu_us_per_key": result.server_cpu_us_per_key(),
    })
}

/// The whole run as one JSON document.
pub fn json_document(config: &RunConfig, results: &[RunResult]) -> Value {
    json!({
        "tool": "flin-bench",
        "machine": crate::machine_line(),
        "protocol": config.protocol.to_string(),
        "addr": config.addr.to_string(),
        "connections": config.connections,
        "threads": config.threads,
        "pipeline": config.pipeline,
        "keyspace": config.keyspace,
        "value_bytes": config.value_bytes,
        "results": results.iter().map(json).collect::<Vec<_>>(),
    })
}
