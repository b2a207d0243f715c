//! Engine micro-benchmarks: put (directory and memory), batch put, get hit/miss with and without
//! read-time checksums, and compaction throughput. See docs/benchmarks.md for the figures.
//!
//! `cargo bench -p flin-benches --bench engine` runs them all in a few minutes; pass a filter
//! (`-- get_hit`) to run some. Under `cargo test` (`--bench` absent) criterion runs each body
//! once, and the sizes below shrink (`FLIN_BENCH_KEYS`) so that stays fast.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use flin_benches::{key, machine_line, permuted, value, KEY_BYTES};
use flin_engine::{Config, Durability, Engine, Namespace, WriteBatch};
use tempfile::TempDir;

const VALUE_BYTES: usize = 100;
/// Lookups per timed iteration of the get benchmarks (amortizes the timer).
const GETS_PER_ITER: u64 = 1024;
const BATCH: usize = 100;

/// Whether criterion is really benchmarking (`cargo bench` passes `--bench`); under
/// `cargo test` it runs each routine once and the data sets stay small.
fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Keys in the populated engine for the get benchmarks (a power of two): 2^20 by default,
/// `FLIN_BENCH_GET_KEYS` overrides it (rounded up to a power of two), e.g. 16384 for a set that
/// fits in the CPU caches.
fn populated_keys() -> u64 {
    if !benching() {
        return 1 << 12;
    }
    std::env::var("FLIN_BENCH_GET_KEYS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
        .map(|n| n.max(2).next_power_of_two())
        .unwrap_or(1 << 20)
}

/// Most fresh keys one engine takes in the put benchmarks before it is replaced (untimed), so
/// a long run does not fill the disk or memory.
fn keys_per_engine() -> u64 {
    if benching() {
        1 << 20
    } else {
        1 << 12
    }
}

/// A tempdir engine's settings. `FLIN_BENCH_SEGMENT_MIB` overrides the engine's 64 MiB
/// segments (e.g. 1024, so a 2^20-key put run never rotates); the compaction benchmark sets
/// its own.
fn directory_config(dir: &TempDir) -> Config {
    let config = Config::directory(dir.path())
        .durability(Durability::No)
        .background_compaction(false);
    match std::env::var("FLIN_BENCH_SEGMENT_MIB")
        .ok()
        .and_then(|m| m.parse::<usize>().ok())
    {
        Some(mib) => config.segment_bytes(mib << 20),
        None => config,
    }
}

fn memory_config() -> Config {
    Config::memory().background_compaction(false)
}

enum Mode {
    Directory,
    Memory,
}

/// A fresh engine (and the directory that must outlive it).
fn fresh(mode: &Mode) -> (Engine, Option<TempDir>) {
    match mode {
        Mode::Directory => {
            let dir = tempfile::tempdir().expect("tempdir");
            let engine = Engine::open(directory_config(&dir)).expect("open");
            (engine, Some(dir))
        }
        Mode::Memory => (Engine::open(memory_config()).expect("open"), None),
    }
}

/// Times `iters` operations of `op_keys` fresh keys each, spread over as many fresh engines as
/// needed; opening and dropping (flushing, deleting) the engines is not timed.
fn time_fresh_inserts(
    mode: &Mode,
    iters: u64,
    keys_per_op: u64,
    mut op: impl FnMut(&Engine, u64),
) -> Duration {
    let per_engine = (keys_per_engine() / keys_per_op).max(1);
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = per_engine.min(iters - done);
        let (engine, dir) = fresh(mode);
        let start = Instant::now();
        for i in 0..n {
            op(&engine, i * keys_per_op);
        }
        total += start.elapsed();
        drop(engine);
        drop(dir);
        done += n;
    }
    total
}

fn bench_put(c: &mut Criterion) {
    eprintln!("machine: {}", machine_line());
    let v = value(VALUE_BYTES);
    let mut group = c.benchmark_group("put");
    group.throughput(Throughput::Elements(1));
    for (name, mode) in [("directory", Mode::Directory), ("memory", Mode::Memory)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                time_fresh_inserts(&mode, iters, 1, |engine, i| {
                    engine.put(Namespace::Kv, &key(i), &v, 0).expect("put");
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("batch_put");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, mode) in [("directory", Mode::Directory), ("memory", Mode::Memory)] {
        group.bench_function(format!("{name}/{BATCH}"), |b| {
            b.iter_custom(|iters| {
                time_fresh_inserts(&mode, iters, BATCH as u64, |engine, first| {
                    let mut batch = WriteBatch::new();
                    for i in first..first + BATCH as u64 {
                        batch.put(Namespace::Kv, &key(i), &v, 0);
                    }
                    engine.write(&batch).expect("write");
                })
            })
        });
    }
    group.finish();
}

fn populate(engine: &Engine, keys: u64, value_bytes: usize) {
    let v = value(value_bytes);
    let mut i = 0;
    while i < keys {
        let mut batch = WriteBatch::new();
        for k in i..(i + 1000).min(keys) {
            batch.put(Namespace::Kv, &key(k), &v, 0);
        }
        engine.write(&batch).expect("populate");
        i += 1000;
    }
}

fn bench_get(c: &mut Criterion) {
    let keys = populated_keys();
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let engine = Engine::open(directory_config(&dir)).expect("open");
        populate(&engine, keys, VALUE_BYTES);
        engine.write_missing_hints().expect("hints");
    }
    eprintln!("get: {keys} keys populated");
    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Elements(GETS_PER_ITER));
    for verify in [true, false] {
        let label = if verify { "verify_on" } else { "verify_off" };
        let mut config = directory_config(&dir);
        config.verify_checksums_on_read = verify;
        let engine = Engine::open(config).expect("reopen");
        assert_eq!(engine.len(Namespace::Kv), keys);
        let mut next = 0u64;
        group.bench_function(format!("hit/{label}"), |b| {
            b.iter(|| {
                let mut bytes = 0;
                for _ in 0..GETS_PER_ITER {
                    let k = key(permuted(next, keys));
                    next = next.wrapping_add(1);
                    bytes += engine
                        .get_with(Namespace::Kv, &k, |v| v.value.len())
                        .expect("get")
                        .expect("hit");
                }
                bytes
            })
        });
        let mut next = 0u64;
        group.bench_function(format!("miss/{label}"), |b| {
            b.iter(|| {
                let mut found = 0;
                for _ in 0..GETS_PER_ITER {
                    // Keys numbered from `keys` up were never written.
                    let k = key(keys + (next & ((1 << 40) - 1)));
                    next = next.wrapping_add(1);
                    found += engine
                        .get_with(Namespace::Kv, &k, |v| v.value.len())
                        .expect("get")
                        .is_some() as usize;
                }
                assert_eq!(found, 0);
            })
        });
    }
    // The same lookups through `get_many_with`, 16 keys a call (an MGET of 16), default
    // verification: the keys of one call have their memory accesses overlapped.
    let engine = Engine::open(directory_config(&dir)).expect("reopen");
    let mut next = 0u64;
    group.bench_function("many16/hit", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for _ in 0..GETS_PER_ITER / 16 {
                let batch: [[u8; KEY_BYTES]; 16] =
                    std::array::from_fn(|j| key(permuted(next.wrapping_add(j as u64), keys)));
                next = next.wrapping_add(16);
                engine
                    .get_many_with(Namespace::Kv, &batch, |_, v| {
                        bytes += v.expect("hit").value.len()
                    })
                    .expect("get_many");
            }
            bytes
        })
    });
    let mut next = 0u64;
    group.bench_function("many16/miss", |b| {
        b.iter(|| {
            let mut found = 0;
            for _ in 0..GETS_PER_ITER / 16 {
                let batch: [[u8; KEY_BYTES]; 16] = std::array::from_fn(|j| {
                    key(keys + (next.wrapping_add(j as u64) & ((1 << 40) - 1)))
                });
                next = next.wrapping_add(16);
                engine
                    .get_many_with(Namespace::Kv, &batch, |_, v| found += v.is_some() as usize)
                    .expect("get_many");
            }
            assert_eq!(found, 0);
        })
    });
    group.finish();
}

/// Compaction: populate `keys` keys in small segments, overwrite every other one, then time
/// `compact(0.0)` alone. Throughput is the bytes of the segments read.
fn bench_compaction(c: &mut Criterion) {
    let keys = if benching() { 1 << 18 } else { 1 << 10 };
    let segment_bytes = if benching() { 4 << 20 } else { 16 << 10 };
    let v = value(VALUE_BYTES);
    let setup = || {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine =
            Engine::open(directory_config(&dir).segment_bytes(segment_bytes)).expect("open");
        for i in 0..keys {
            engine.put(Namespace::Kv, &key(i), &v, 0).expect("put");
        }
        for i in (0..keys).step_by(2) {
            engine
                .put(Namespace::Kv, &key(i), &v, 0)
                .expect("overwrite");
        }
        (engine, dir)
    };
    // One untimed probe for the bytes a compaction reads (the same every time).
    let probe = {
        let (engine, _dir) = setup();
        engine.compact(0.0).expect("compact")
    };
    eprintln!(
        "compaction probe: {} keys, segments {} -> {}, bytes_in {}, bytes_out {}, reclaimed {}, {:?}",
        keys,
        probe.segments_in,
        probe.segments_out,
        probe.bytes_in,
        probe.bytes_out,
        probe.bytes_reclaimed,
        probe.duration
    );
    let mut group = c.benchmark_group("compaction");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(probe.bytes_in));
    group.bench_function("half_overwritten", |b| {
        b.iter_batched(
            setup,
            |(engine, dir)| {
                let report = engine.compact(0.0).expect("compact");
                black_box(report.bytes_in);
                (engine, dir)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_put, bench_get, bench_compaction
}
criterion_main!(benches);
