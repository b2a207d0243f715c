//! Memory per record of a stream, and how long a restart takes to rebuild the model.
//!
//! `cargo run --release -p flin-server --example stream_footprint -- --partitions 10 --records 1000000`
//!
//! Fills `--partitions` P partitions of one topic on a directory engine (`--fsync everysec`)
//! with `--records` N records each of `--value-bytes` B (default 100), published in batches of
//! 1,000 (one chunk each), then reports per record: the model's offset-index blocks, the
//! engine's index bytes, and the process's anonymous RSS growth (heap: index + model +
//! everything else; the log itself is file-backed and not counted). Then it drops
//! everything, reopens the directory, and times recovery with the model's rebuild.

use std::time::Instant;

use flin_engine::{Config, Durability};
use flin_server::context::open_engine;
use flin_server::store::Store;
use flin_server::stream::codec::NewRecord;
use flin_server::stream::Target;

#[path = "support/measure.rs"]
mod measure;
use measure::{arg, rss_anon_bytes};

fn main() {
    let partitions = arg("--partitions", 10) as u32;
    let records = arg("--records", 1_000_000);
    let value_bytes = arg("--value-bytes", 100) as usize;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = || Config::directory(dir.path()).durability(Durability::EverySec);
    let rss_start = rss_anon_bytes();
    let (engine, observers) = open_engine(config()).expect("open");
    let streams = observers.streams;
    let store = Store::new(engine.clone());
    streams
        .create(&store, b"t", partitions, 0, 0)
        .expect("create");
    let value = vec![b'v'; value_bytes];
    let batch: Vec<NewRecord<'_>> = (0..1000)
        .map(|_| NewRecord {
            key: None,
            headers: &[],
            value: &value,
        })
        .collect();
    let started = Instant::now();
    for p in 0..partitions {
        let mut written = 0;
        while written < records {
            let n = (records - written).min(1000) as usize;
            streams
                .publish(&store, b"t", Target::Partition(p), &batch[..n], 0)
                .expect("publish");
            written += n as u64;
        }
    }
    let elapsed = started.elapsed();
    let total = records * partitions as u64;
    let info = streams.describe(b"t").expect("describe");
    let blocks: usize = info.partitions.iter().map(|p| p.index_blocks).sum();
    let stats = engine.stats();
    let rss = rss_anon_bytes().saturating_sub(rss_start);
    println!(
        "{total} records of {value_bytes} B in {partitions} partitions: published in {:.2} s ({:.0} records/s through the model, no network)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  offset index: {blocks} blocks ({:.4} blocks/record, {:.3} B/record at 64 B a block)",
        blocks as f64 / total as f64,
        blocks as f64 * 64.0 / total as f64
    );
    println!(
        "  engine index: {} B ({} keys: the topic and counters only)",
        stats.index_bytes, stats.keys
    );
    println!(
        "  log: {} B ({:.1} B/record); anonymous RSS growth: {} B ({:.2} B/record)",
        stats.log_bytes,
        stats.log_bytes as f64 / total as f64,
        rss,
        rss as f64 / total as f64
    );
    drop(store);
    drop(streams);
    drop(engine);
    let started = Instant::now();
    let (engine, observers) = open_engine(config()).expect("reopen");
    let streams = observers.streams;
    let reopened = started.elapsed();
    let info = streams.describe(b"t").expect("describe");
    let next: u64 = info.partitions.iter().map(|p| p.next).sum();
    assert_eq!(next, total, "every record is back");
    println!(
        "  restart: recovery + model rebuild {:.2} s ({} records)",
        reopened.as_secs_f64(),
        next
    );
    drop(engine);
}
