//! A fixed workload for counting the instructions of the engine's put and get paths with
//! callgrind, which is steady where wall-clock timings on a shared machine are not.
//!
//! `engine_hotpath put|batch|get|miss|always|follower N`: N puts of fresh keys (one at a time,
//! or in batches of 100) (`Durability::No`, one 1 GiB segment, so no rotation), N gets that
//! hit or N that miss (after N keys written in batches), N puts under `Durability::Always`
//! (for counting system calls), or a follower's path: a replicated engine holding N keys takes
//! N entries of one overwrite each (`append_entry_ops`), committing every
//! `FOLLOWER_COMMIT_EVERY` (the undo log's push and trim included). Only the functions named
//! `timed_*` are meant to be counted:
//!
//!     cargo build --release -p flin-benches --bin engine_hotpath
//!     valgrind --tool=callgrind --toggle-collect='*timed_*' target/release/engine_hotpath get 200000
//!     strace -f -c target/release/engine_hotpath always 2000
//!
//! Build it at two commits and compare (docs/reliability.md, section 5, has the figures for
//! the storage backend).

use std::sync::Arc;

use flin_benches::{key, value};
use flin_engine::{Config, Durability, Engine, Namespace, Op, RecordKind, WriteBatch};

const VALUE_BYTES: usize = 100;

/// Entries a follower's commit point trails by, and moves by, in `follower` mode.
const FOLLOWER_COMMIT_EVERY: u64 = 1000;

#[inline(never)]
fn timed_puts(engine: &Engine, n: u64, v: &[u8]) {
    for i in 0..n {
        engine.put(Namespace::Kv, &key(i), v, 0).expect("put");
    }
}

#[inline(never)]
fn timed_gets(engine: &Engine, keys: std::ops::Range<u64>) -> usize {
    let mut bytes = 0;
    for i in keys {
        bytes += engine
            .get_with(Namespace::Kv, &key(i), |v| v.value.len())
            .expect("get")
            .unwrap_or(0);
    }
    bytes
}

#[inline(never)]
fn timed_batches(engine: &Engine, n: u64, v: &[u8]) {
    let mut i = 0;
    while i < n {
        let mut batch = WriteBatch::new();
        for k in i..(i + 100).min(n) {
            batch.put(Namespace::Kv, &key(k), v, 0);
        }
        engine.write(&batch).expect("batch");
        i += 100;
    }
}

#[inline(never)]
fn timed_follower(engine: &Engine, n: u64, v: &[u8]) {
    let first = engine.last_seq() + 1;
    for i in 0..n {
        let key = key(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n);
        let op = Op {
            kind: RecordKind::Put,
            namespace: Namespace::Kv,
            key: &key,
            value: v,
            expiry_ms: 0,
        };
        let seq = first + i;
        engine.append_entry_ops(seq, 1, &[op]).expect("append");
        if (i + 1) % FOLLOWER_COMMIT_EVERY == 0 {
            engine
                .commit_through(seq - FOLLOWER_COMMIT_EVERY)
                .expect("commit");
        }
    }
}

fn populate(engine: &Engine, n: u64, v: &[u8]) {
    let mut i = 0;
    while i < n {
        let mut batch = WriteBatch::new();
        for k in i..(i + 1000).min(n) {
            batch.put(Namespace::Kv, &key(k), v, 0);
        }
        engine.write(&batch).expect("populate");
        i += 1000;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: engine_hotpath put|batch|get|miss|always|follower N";
    let (Some(mode), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let v = value(VALUE_BYTES);
    let dir = tempfile::tempdir().expect("tempdir");
    let durability = if mode == "always" {
        Durability::Always
    } else {
        Durability::No
    };
    let mut config = Config::directory(dir.path())
        .durability(durability)
        .background_compaction(false)
        .segment_bytes(1 << 30)
        .logger(Arc::new(|_, _: &str| {}));
    if mode == "follower" {
        config = config.replicated(0);
    }
    let engine = Engine::open(config).expect("open");
    match mode.as_str() {
        "put" | "always" => timed_puts(&engine, n, &v),
        "batch" => timed_batches(&engine, n, &v),
        "get" => {
            populate(&engine, n, &v);
            std::hint::black_box(timed_gets(&engine, 0..n));
        }
        "follower" => {
            engine.set_term(1).expect("term");
            populate(&engine, n, &v);
            engine.commit_through(engine.last_seq()).expect("commit");
            timed_follower(&engine, n, &v);
        }
        "miss" => {
            populate(&engine, n, &v);
            std::hint::black_box(timed_gets(&engine, n..2 * n));
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
