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
