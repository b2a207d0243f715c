//! Memory per document and per index entry, and how long a restart takes to rebuild the
//! documents' catalog.
//!
//! `cargo run --release -p flin-server --example doc_footprint -- --documents 1000000`
//!
//! Inserts `--documents` N documents of about `--bytes` B (default 1,000) into one collection
//! on a directory engine (`--fsync everysec`), 1,000 per write, then builds an index on an
//! integer field and one on a string field, reporting after each step the engine's index bytes
//! and the process's anonymous RSS growth (the log itself is file-backed and not counted), per
//! document and per index entry. Then it drops everything, reopens the directory and times
//! recovery with the catalog's rebuild (index entries replayed from their records).

#[path = "support/measure.rs"]
mod measure;

use std::time::Instant;

use flin_engine::{Config, Durability};
use flin_server::config::Options;
use flin_server::context::{open_engine, Shared};
use flin_server::doc::collection::{write, View};
use flin_server::doc::filter::Filter;
use flin_server::doc::index::IndexSpec;
use measure::{arg, rss_anon_bytes};

fn spec(path: &str) -> IndexSpec {
    IndexSpec {
        name: format!("{path}_1"),
        fields: vec![(path.to_string(), false)],
        unique: false,
        sparse: false,
        ready: false,
        dropping: false,
    }
}

fn main() {
    let documents = arg("--documents", 1_000_000);
    let bytes = arg("--bytes", 1000) as usize;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = || Config::directory(dir.path()).durability(Durability::EverySec);
    let rss_start = rss_anon_bytes();
    let (engine, observers) = open_engine(config()).expect("open");
    let shared = Shared::open(engine.clone(), observers, Options::default()).expect("shared");
    let pad = "x".repeat(bytes.saturating_sub(80));
    let started = Instant::now();
    let mut next = 0u64;
    while next < documents {
        let batch: Vec<serde_json::Value> = (next..(next + 1000).min(documents))
            .map(|i| serde_json::json!({"_id": i, "k": i % 100_000, "city": format!("city-{}", i % 5000), "pad": pad}))
            .collect();
        next += batch.len() as u64;
        write(&shared.store, |txn| {
            shared
                .docs
                .insert(shared.store.reader(), txn, b"c", batch, 0)
        })
        .expect("insert");
    }
    let inserted = started.elapsed();
    let report = |what: &str, per: &str, count: u64, base: u64| {
        let stats = engine.stats();
        let rss = rss_anon_bytes().saturating_sub(rss_start);
        println!(
            "  {what}: engine index {} B, log {} B, anonymous RSS growth {} B; {:.1} B per {per} over the step before",
            stats.index_bytes,
            stats.log_bytes,
            rss,
            (rss.saturating_sub(base)) as f64 / count as f64,
        );
        rss
    };
    println!(
        "{documents} documents of ~{bytes} B inserted in {:.2} s ({:.0} documents/s through the model, 1,000 a write, no network)",
        inserted.as_secs_f64(),
        documents as f64 / inserted.as_secs_f64()
    );
    let mut before = report("documents", "document", documents, 0);
    for path in ["k", "city"] {
        let started = Instant::now();
        shared
            .docs
            .create_index(&shared.store, b"c", spec(path))
            .expect("index");
        println!(
            "index on {path} built in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        before = report(
            &format!("index on {path}"),
            "index entry",
            documents,
            before,
        );
    }
    drop(shared);
    drop(engine);
    let started = Instant::now();
    let (engine, observers) = open_engine(config()).expect("reopen");
    let shared = Shared::open(engine.clone(), observers, Options::default()).expect("shared");
    let reopened = started.elapsed();
    let view = View::committed(shared.store.reader());
    let count = shared
        .docs
        .count(
            &view,
            b"c",
            &Filter::parse(&serde_json::json!({"k": 7})).unwrap(),
        )
        .expect("count");
    assert_eq!(
        count,
        (0..documents).filter(|i| i % 100_000 == 7).count() as u64
    );
    println!(
        "  restart: recovery + catalog rebuild {:.2} s ({documents} documents, {} index entries)",
        reopened.as_secs_f64(),
        2 * documents
    );
}
