//! The seams the data models and replication stand on (issue 10): per-namespace iteration,
//! apply hooks, wake-ups, range reclamation, terms, leader-chosen seqs, truncation, compaction
//! pins and the tail reader.

mod common;

use flin_engine::{Config, Engine, Namespace, WriteBatch};

fn memory() -> Engine {
    Engine::open(Config::memory().background_compaction(false)).expect("memory engine")
}

/// Iterating one namespace examines that namespace's keys only: the count of slots examined
/// stays the same when another namespace grows a hundredfold.
#[test]
fn namespace_iteration_costs_the_namespace_not_the_index() {
    let engine = memory();
    for i in 0..300u32 {
        engine
            .put(Namespace::Queue, format!("q/{i}").as_bytes(), b"m", 0)
            .unwrap();
    }
    for round in 0..2 {
        let mut batch = WriteBatch::new();
        for i in 0..15_000u32 {
            batch.put(Namespace::Kv, format!("k{round}/{i}").as_bytes(), b"v", 0);
        }
        engine.write(&batch).unwrap();
        let mut seen = 0;
        let examined = engine
            .for_each(Namespace::Queue, b"", |record| {
                assert!(record.key.starts_with(b"q/"));
                assert_eq!(record.value, b"m");
                seen += 1;
            })
            .unwrap();
        assert_eq!((seen, examined), (300, 300), "round {round}");
    }
    assert_eq!(engine.len(Namespace::Kv), 30_000);
}

#[test]
fn namespace_iteration_filters_by_prefix_and_skips_expired_and_deleted() {
    let clock = std::sync::Arc::new(flin_engine::ManualClock::new(1_000));
    let engine = Engine::open(
        Config::memory()
            .background_compaction(false)
            .clock(clock.clone()),
    )
    .unwrap();
    let ns = Namespace::Document;
    engine.put(ns, b"users/1", b"a", 0).unwrap();
    engine.put(ns, b"users/2", b"b", 0).unwrap();
    engine.put(ns, b"users/3", b"c", 1_500).unwrap();
    engine.put(ns, b"orders/1", b"x", 0).unwrap();
    engine
        .put(ns, b"users", b"shorter than the prefix", 0)
        .unwrap();
    engine.delete(ns, b"users/2").unwrap();
    engine
        .put(Namespace::Kv, b"users/9", b"other namespace", 0)
        .unwrap();
    let collect = |engine: &Engine| {
        let mut found = Vec::new();
        engine
            .for_each(ns, b"users/", |r| {
                found.push((r.key.to_vec(), r.value.to_vec(), r.expiry_ms))
            })
            .unwrap();
        found.sort();
        found
    };
    assert_eq!(
        collect(&engine),
        vec![
            (b"users/1".to_vec(), b"a".to_vec(), 0),
            (b"users/3".to_vec(), b"c".to_vec(), 1_500)
        ]
    );
    clock.set(1_500);
    assert_eq!(
        collect(&engine),
        vec![(b"users/1".to_vec(), b"a".to_vec(), 0)]
    );
}

mod ranges {
    use super::common::{small_config, Rng};
    use flin_engine::{Engine, Namespace, RecordKind, WriteBatch};
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    const NS: Namespace = Namespace::Stream;

    fn key(partition: u8, offset: u32) -> Vec<u8> {
        let mut key = vec![b'p', partition, b'/'];
        key.extend_from_slice(&offset.to_be_bytes());
        key
    }

    /// The log-only records of the namespace a reader sees: every Append in the log that no
    /// marker in effect drops, as (key, value).
    fn live_appends(engine: &Engine) -> BTreeSet<(Vec<u8>, Vec<u8>)> {
        let mut live = BTreeSet::new();
        for entry in engine.log_from(0) {
            let entry = entry.unwrap();
            for op in entry.ops {
                if op.kind == RecordKind::Append && !engine.is_dropped(NS, &op.key, entry.seq) {
                    live.insert((op.key, op.value));
                }
            }
        }
        live
    }

    /// Random appends to four partitions, range drops, compactions and reopens, checked against
    /// a model: what a reader sees is exactly the records no drop covered, whatever compaction
    /// did in between, and compaction reclaims what the markers drop.
    #[test]
    fn drops_are_exact_across_compaction_and_reopen() {
        for seed in 1..=6u64 {
            let dir = tempfile::tempdir().unwrap();
            let clock = Arc::new(flin_engine::ManualClock::new(1_000));
            let log = Arc::new(Mutex::new(Vec::new()));
            let mut engine = Engine::open(small_config(dir.path(), &clock, &log)).unwrap();
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut next_offset = [0u32; 4];
            let mut first_kept = [0u32; 4];
            let mut model = BTreeSet::new();
            let mut dropped_by_compaction = 0;
            for step in 0..600 {
                match rng.below(100) {
                    0..=69 => {
                        let partition = rng.below(4) as usize;
                        let mut batch = WriteBatch::new();
                        for _ in 0..1 + rng.below(3) {
                            let k = key(partition as u8, next_offset[partition]);
                            let value = format!("v{seed}-{step}").into_bytes();
                            batch.append(NS, &k, &value);
                            model.insert((k, value));
                            next_offset[partition] += 1;
                        }
                        engine.write(&batch).unwrap();
                    }
                    70..=84 => {
                        let partition = rng.below(4) as usize;
                        let bound = first_kept[partition]
                            + rng.below((next_offset[partition] - first_kept[partition]) as u64 + 1)
                                as u32;
                        let prefix = vec![b'p', partition as u8, b'/'];
                        let mut batch = WriteBatch::new();
                        batch.drop_range(NS, &prefix, &bound.to_be_bytes());
                        engine.write(&batch).unwrap();
                        first_kept[partition] = bound;
                        model.retain(|(k, _)| {
                            !(k.starts_with(&prefix) && k[prefix.len()..] < bound.to_be_bytes()[..])
                        });
                    }
                    85..=94 => {
                        dropped_by_compaction += engine.compact(0.0).unwrap().appends_dropped;
                    }
                    _ => {
                        // Hint files list markers too: the next open loads some segments
                        // from them.
                        engine.write_missing_hints().unwrap();
                        drop(engine);
                        engine = Engine::open(small_config(dir.path(), &clock, &log)).unwrap();
                        assert!(engine.recovery_report().bad_hints.is_empty());
                    }
                }
            }
            assert_eq!(live_appends(&engine), model, "seed {seed}");
            dropped_by_compaction += engine.compact(0.0).unwrap().appends_dropped;
            assert!(
                dropped_by_compaction > 0,
                "seed {seed}: compaction reclaimed no range"
            );
            drop(engine);
            let engine = Engine::open(small_config(dir.path(), &clock, &log)).unwrap();
            assert_eq!(live_appends(&engine), model, "seed {seed}, reopened");
        }
    }

    #[test]
    fn a_bound_may_only_grow() {
        let engine = super::memory();
        let mut batch = WriteBatch::new();
        batch.append(NS, b"p/4", b"v");
        let appended = engine.write(&batch).unwrap();
        let mut batch = WriteBatch::new();
        batch.drop_range(NS, b"p/", b"5");
        engine.write(&batch).unwrap();
        let mut lower = WriteBatch::new();
        lower.drop_range(NS, b"p/", b"4");
        let refused = engine.write(&lower).unwrap_err().to_string();
        assert!(refused.contains("may only grow"), "{refused}");
        let mut twice = WriteBatch::new();
        twice
            .drop_range(NS, b"q/", b"1")
            .drop_range(NS, b"q/", b"2");
        assert!(engine.write(&twice).is_err());
        assert!(
            !engine.is_dropped(NS, b"q/0", appended),
            "nothing of a refused batch applies"
        );
        assert!(engine.is_dropped(NS, b"p/4", appended));
        assert!(
            !engine.is_dropped(NS, b"p/5", appended),
            "the bound is exclusive"
        );
        assert!(
            !engine.is_dropped(NS, b"p/4", engine.last_seq() + 1),
            "written after"
        );
    }
}
