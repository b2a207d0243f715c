//! Model-based property test: random sequences of put, delete, batch, expire, clock moves,
//! compaction (at random garbage thresholds, so merges are partial), active expiry and reopen,
//! checked after every step against a HashMap model.
//!
//! `PROPTEST_CASES=2000 cargo test -p flin-engine --test model --release` for a long run.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use flin_engine::{Clock, Engine, ManualClock, Namespace, WriteBatch};
use proptest::prelude::*;

const KEYS: u32 = 24;

#[derive(Clone, Debug)]
enum Step {
    Put {
        key: u32,
        len: usize,
        ttl_ms: Option<u64>,
    },
    Delete {
        key: u32,
    },
    Batch {
        ops: Vec<(u32, Option<usize>)>,
    },
    Advance {
        ms: u64,
    },
    Compact {
        ratio: f64,
    },
    ReclaimExpired,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..KEYS, 0usize..400, proptest::option::weighted(0.4, 1u64..3000))
            .prop_map(|(key, len, ttl_ms)| Step::Put { key, len, ttl_ms }),
        2 => (0..KEYS).prop_map(|key| Step::Delete { key }),
        2 => proptest::collection::vec((0..KEYS, proptest::option::of(0usize..60)), 1..6)
            .prop_map(|ops| Step::Batch { ops }),
        1 => (0u64..2000).prop_map(|ms| Step::Advance { ms }),
        1 => prop_oneof![Just(0.0), Just(0.2), Just(0.5), Just(0.9)].prop_map(|ratio| Step::Compact { ratio }),
        1 => Just(Step::ReclaimExpired),
        1 => Just(Step::Reopen),
    ]
}

/// Key bytes, and a value that names the step that wrote it (a stale value cannot pass).
fn key_bytes(key: u32) -> Vec<u8> {
    format!("key{key}").into_bytes()
}

fn value_bytes(key: u32, step: usize, len: usize) -> Vec<u8> {
    let mut value = format!("{key}@{step}:").into_bytes();
    value.resize(len.max(value.len()), b'.');
    value
}

struct Model {
    entries: HashMap<u32, (Vec<u8>, u64)>,
}

impl Model {
    fn visible(&self, key: u32, now_ms: u64) -> Option<&Vec<u8>> {
        self.entries
            .get(&key)
            .filter(|(_, expiry)| *expiry == 0 || *expiry > now_ms)
            .map(|(value, _)| value)
    }
}

fn check(engine: &Engine, model: &Model, now_ms: u64, at: usize, step: &Step) {
    for key in 0..KEYS {
        let got = engine
            .get(Namespace::Kv, &key_bytes(key))
            .unwrap()
            .map(|v| v.value);
        assert_eq!(
            got.as_ref(),
            model.visible(key, now_ms),
            "key{key} after step {at}: {step:?}"
        );
    }
}

fn run(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = Arc::new(Mutex::new(Vec::new()));
    let config = || small_config(dir.path(), &clock, &log);
    let mut engine = open(config());
    let mut model = Model {
        entries: HashMap::new(),
    };
    for (at, step) in steps.iter().enumerate() {
        let now = clock.now_ms();
        match step {
            Step::Put { key, len, ttl_ms } => {
                let value = value_bytes(*key, at, *len);
                let expiry = ttl_ms.map_or(0, |ttl| now + ttl);
                engine
                    .put(Namespace::Kv, &key_bytes(*key), &value, expiry)
                    .unwrap();
                model.entries.insert(*key, (value, expiry));
            }
            Step::Delete { key } => {
                let existed = engine.delete(Namespace::Kv, &key_bytes(*key)).unwrap();
                assert_eq!(
                    existed,
                    model.visible(*key, now).is_some(),
                    "delete of key{key} at step {at}"
                );
                model.entries.remove(key);
            }
            Step::Batch { ops } => {
                let mut batch = WriteBatch::new();
                for (i, (key, len)) in ops.iter().enumerate() {
                    match len {
                        Some(len) => {
                            let value = value_bytes(*key, at * 100 + i, *len);
                            batch.put(Namespace::Kv, &key_bytes(*key), &value, 0);
                            model.entries.insert(*key, (value, 0));
                        }
                        None => {
                            batch.delete(Namespace::Kv, &key_bytes(*key));
                            model.entries.remove(key);
                        }
                    }
                }
                engine.write(&batch).unwrap();
            }
            Step::Advance { ms } => clock.advance(*ms),
            Step::Compact { ratio } => {
                engine.compact(*ratio).unwrap();
            }
            Step::ReclaimExpired => {
                engine.reclaim_expired();
                let live = (0..KEYS)
                    .filter(|k| model.visible(*k, now).is_some())
                    .count();
                assert_eq!(
                    engine.len(Namespace::Kv) as usize,
                    live,
                    "key count after reclaiming, step {at}"
                );
            }
            Step::Reopen => {
                drop(engine);
                engine = open(config());
                let live = (0..KEYS)
                    .filter(|k| model.visible(*k, now).is_some())
                    .count();
                assert_eq!(
                    engine.len(Namespace::Kv) as usize,
                    live,
                    "key count after reopen, step {at}"
                );
            }
        }
        check(&engine, &model, clock.now_ms(), at, step);
    }
    // Whatever happened, a final full compaction and reopen agree with the model.
    engine.compact(0.0).unwrap();
    drop(engine);
    let engine = open(config());
    check(&engine, &model, clock.now_ms(), steps.len(), &Step::Reopen);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_a_hashmap_model(steps in proptest::collection::vec(step(), 1..200)) {
        run(steps);
    }
}
