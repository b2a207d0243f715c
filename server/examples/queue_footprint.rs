//! Memory per ready message of a durable queue, and how long a restart takes to load it.
//!
//! `cargo run --release -p flin-server --example queue_footprint -- --messages 10000000`
//!
//! Fills one durable queue on a directory engine (`--fsync everysec`) with `--messages` N
//! messages of `--payload-bytes` B (default 100) pushed in batches of 1,000, then reports per
//! message: the model's entries (the priority rings' capacity), the engine's index bytes, and
//! the process's anonymous RSS growth (heap: index + model + everything else; the log itself
//! is file-backed and not counted there). Then it drops everything, reopens the directory,
//! and times the engine's recovery and the queue model's load.

use std::time::Instant;

use flin_engine::{Config, Durability, Engine};
use flin_server::queue::codec::QueueOptions;
use flin_server::queue::{NewMessage, Queues, Scope};
use flin_server::store::Store;

#[path = "support/measure.rs"]
mod measure;
use measure::rss_anon_bytes;

fn main() {
    let mut messages: u64 = 10_000_000;
    let mut payload_bytes = 100;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().expect("option value");
        match arg.as_str() {
            "--messages" => messages = value.replace('_', "").parse().expect("--messages N"),
            "--payload-bytes" => payload_bytes = value.parse().expect("--payload-bytes B"),
            other => panic!("unknown option {other}"),
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("flin-queue-footprint-")
        .tempdir_in(std::env::current_dir().unwrap())
        .unwrap();
    let open = || {
        Engine::open(Config::directory(dir.path()).durability(Durability::EverySec))
            .expect("engine")
    };
    let engine = open();
    let store = Store::new(engine.clone());
    let queues = Queues::load(&store).expect("load");
    queues
        .declare(&store, b"q", QueueOptions::default(), 1)
        .expect("declare");
    let rss_before = rss_anon_bytes();
    let index_before = engine.index_memory_bytes();
    let started = Instant::now();
    let payload = vec![b'p'; payload_bytes];
    let mut left = messages;
    while left > 0 {
        let n = left.min(1000);
        let batch = (0..n)
            .map(|_| NewMessage {
                payload: payload.clone(),
                ..NewMessage::default()
            })
            .collect();
        queues
            .push(Scope::Own(&store), b"q", batch, 1, 0)
            .expect("push");
        left -= n;
    }
    let fill = started.elapsed();
    let per = |bytes: u64| bytes as f64 / messages as f64;
    let rss = rss_anon_bytes().saturating_sub(rss_before);
    let index = (engine.index_memory_bytes() - index_before) as u64;
    let model = queues.ready_entry_bytes() as u64;
    println!(
        "messages={messages} payload_bytes={payload_bytes} fill_s={:.1} ({:.0} msgs/s, batches of 1000)",
        fill.as_secs_f64(),
        messages as f64 / fill.as_secs_f64()
    );
    println!(
        "per ready message: model entries {:.1} B, engine index {:.1} B, anonymous RSS growth {:.1} B (payloads stay in the log)",
        per(model),
        per(index),
        per(rss)
    );
    assert_eq!(queues.len(Scope::Own(&store), b"q", 1).unwrap(), messages);
    engine.flush().expect("flush");
    drop(queues);
    drop(store);
    drop(engine);
    let started = Instant::now();
    let engine = open();
    let recovered = started.elapsed();
    let store = Store::new(engine.clone());
    let queues = Queues::load(&store).expect("load");
    let loaded = started.elapsed() - recovered;
    assert_eq!(queues.len(Scope::Own(&store), b"q", 1).unwrap(), messages);
    println!(
        "restart: engine recovery {:.2} s, queue load {:.2} s ({:.1} M msgs/s)",
        recovered.as_secs_f64(),
        loaded.as_secs_f64(),
        messages as f64 / loaded.as_secs_f64() / 1e6
    );
}
