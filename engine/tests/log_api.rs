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

mod observers {
    use super::common::{small_config, Rng};
    use flin_engine::{
        Change, Engine, ManualClock, Namespace, Observer, Origin, RecordKind, Replay, WriteBatch,
    };
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    const NS: Namespace = Namespace::Document;

    /// What a model of the namespace holds: indexed keys, and log-only records by key.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    struct State {
        keys: BTreeMap<Vec<u8>, Vec<u8>>,
        appends: BTreeMap<Vec<u8>, Vec<u8>>,
    }

    impl State {
        fn apply(&mut self, kind: RecordKind, key: &[u8], value: &[u8]) {
            match kind {
                RecordKind::Put => {
                    self.keys.insert(key.to_vec(), value.to_vec());
                }
                RecordKind::Delete => {
                    self.keys.remove(key);
                }
                RecordKind::Append => {
                    self.appends.insert(key.to_vec(), value.to_vec());
                }
                RecordKind::DropRange => self
                    .appends
                    .retain(|k, _| !(k.starts_with(key) && &k[key.len()..] < value)),
                RecordKind::Batch => unreachable!(),
            }
        }

        fn encode(&self, seq: u64) -> Vec<u8> {
            format!("{seq}\n{:?}\n{:?}", self.keys, self.appends).into_bytes()
        }
    }

    /// A data model that rebuilds or loads its snapshot file, as asked.
    struct Model {
        state: Mutex<(State, u64)>,
        snapshot_file: PathBuf,
        use_snapshot: bool,
        replayed: Mutex<Vec<u64>>,
    }

    impl Model {
        fn new(dir: &Path, use_snapshot: bool) -> Arc<Model> {
            Arc::new(Model {
                state: Mutex::new((State::default(), 0)),
                snapshot_file: dir.join("model-snapshot"),
                use_snapshot,
                replayed: Mutex::new(Vec::new()),
            })
        }

        /// Saves the state (the file stands for whatever durable store a model uses), then
        /// lets the engine move the pin.
        fn snapshot(&self, engine: &Engine) {
            let (bytes, seq, state) = engine.quiesced(|seq| {
                let guard = self.state.lock().unwrap();
                (guard.0.encode(seq), seq, guard.0.clone())
            });
            std::fs::write(&self.snapshot_file, &bytes).unwrap();
            SNAPSHOTS
                .lock()
                .unwrap()
                .insert(self.snapshot_file.clone(), (state, seq));
            engine.observer_persisted(NS, seq);
        }
    }

    /// The snapshot files' contents, decoded (the test keeps the parsed form beside each file).
    static SNAPSHOTS: Mutex<BTreeMap<PathBuf, (State, u64)>> = Mutex::new(BTreeMap::new());

    impl Observer for Model {
        fn start(&self, _engine: &Engine) -> Replay {
            let saved = SNAPSHOTS.lock().unwrap().get(&self.snapshot_file).cloned();
            let mut guard = self.state.lock().unwrap();
            match saved {
                Some((state, seq)) if self.use_snapshot && self.snapshot_file.exists() => {
                    *guard = (state, seq);
                    Replay::After(seq)
                }
                _ => {
                    // Starting empty: an older snapshot is not protected any more.
                    let _ = std::fs::remove_file(&self.snapshot_file);
                    SNAPSHOTS.lock().unwrap().remove(&self.snapshot_file);
                    *guard = (State::default(), 0);
                    Replay::Rebuild
                }
            }
        }

        fn apply(&self, change: &Change<'_>) {
            let mut guard = self.state.lock().unwrap();
            assert!(change.seq > guard.1, "changes arrive in seq order");
            for op in change.ops {
                assert_eq!(op.namespace, NS, "only the observed namespace");
                guard.0.apply(op.kind, op.key, op.value);
            }
            guard.1 = change.seq;
            if change.origin == Origin::Replay {
                self.replayed.lock().unwrap().push(change.seq);
            }
        }

        fn keeps_snapshots(&self) -> bool {
            true
        }
    }

    fn open(dir: &Path, clock: &Arc<ManualClock>, model: &Arc<Model>) -> Engine {
        let log = Arc::new(Mutex::new(Vec::new()));
        Engine::open(small_config(dir, clock, &log).observe(NS, model.clone())).unwrap()
    }

    fn filler(engine: &Engine, tag: &str, count: u32) {
        for i in 0..count {
            engine
                .put(
                    Namespace::Kv,
                    format!("{tag}{i}").as_bytes(),
                    &[b'f'; 80],
                    0,
                )
                .unwrap();
        }
    }

    /// The case the contract exists for: the model's snapshot holds a key, the key is deleted
    /// after the snapshot, and compaction removes the segment that held the put. The delete
    /// must still reach the model at the next open, and does, because the model's pin keeps
    /// the delete's segment out of compaction.
    #[test]
    fn a_delete_after_the_snapshot_reaches_the_model_though_its_put_was_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000));
        let model = Model::new(dir.path(), true);
        let engine = open(dir.path(), &clock, &model);
        engine.put(NS, b"doomed", b"v", 0).unwrap();
        filler(&engine, "a", 60);
        model.snapshot(&engine);
        engine.delete(NS, b"doomed").unwrap();
        filler(&engine, "b", 60);
        // Overwrite the filler so every sealed segment has garbage, then compact all of it.
        filler(&engine, "a", 60);
        filler(&engine, "b", 60);
        let report = engine.compact(0.0).unwrap();
        assert!(report.segments_in > 0, "{report:?}");
        drop(engine);

        let model = Model::new(dir.path(), true);
        let engine = open(dir.path(), &clock, &model);
        assert!(
            !model
                .state
                .lock()
                .unwrap()
                .0
                .keys
                .contains_key(&b"doomed"[..]),
            "the delete after the snapshot was replayed"
        );
        assert!(!model.replayed.lock().unwrap().is_empty());
        drop(engine);
    }

    /// Random writes in the observed namespace and another, batches across both, range drops,
    /// compactions, snapshots and reopens (rebuilding or loading the snapshot), against an
    /// independent model: after every open and at the end the observer holds exactly the
    /// namespace's state.
    #[test]
    fn observers_stay_exact_across_recovery_compaction_and_snapshots() {
        for seed in 1..=5u64 {
            let dir = tempfile::tempdir().unwrap();
            let clock = Arc::new(ManualClock::new(1_000));
            let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
            let mut model = Model::new(dir.path(), false);
            let mut engine = open(dir.path(), &clock, &model);
            let mut expected = State::default();
            let mut next_append = 0u32;
            let mut bound = 0u32;
            for step in 0..700 {
                let key = format!("k{}", rng.below(40)).into_bytes();
                let value = format!("{seed}/{step}").into_bytes();
                match rng.below(100) {
                    0..=34 => {
                        engine.put(NS, &key, &value, 0).unwrap();
                        expected.apply(RecordKind::Put, &key, &value);
                    }
                    35..=49 => {
                        engine.delete(NS, &key).unwrap();
                        expected.apply(RecordKind::Delete, &key, &[]);
                    }
                    50..=64 => {
                        let mut batch = WriteBatch::new();
                        batch.put(Namespace::Kv, &key, &value, 0);
                        batch.put(NS, &key, &value, 0);
                        let appended = next_append.to_be_bytes();
                        let append_key = [&b"log/"[..], &appended].concat();
                        batch.append(NS, &append_key, &value);
                        next_append += 1;
                        engine.write(&batch).unwrap();
                        expected.apply(RecordKind::Put, &key, &value);
                        expected.apply(RecordKind::Append, &append_key, &value);
                    }
                    65..=69 => {
                        bound += rng.below((next_append - bound) as u64 + 1) as u32;
                        let mut batch = WriteBatch::new();
                        batch.drop_range(NS, b"log/", &bound.to_be_bytes());
                        engine.write(&batch).unwrap();
                        expected.apply(RecordKind::DropRange, b"log/", &bound.to_be_bytes());
                    }
                    70..=79 => filler(&engine, "f", 20),
                    80..=86 => {
                        engine.compact(0.0).unwrap();
                    }
                    87..=92 => model.snapshot(&engine),
                    _ => {
                        drop(engine);
                        model = Model::new(dir.path(), rng.below(2) == 0);
                        engine = open(dir.path(), &clock, &model);
                        assert_eq!(
                            model.state.lock().unwrap().0,
                            expected,
                            "seed {seed} step {step}"
                        );
                    }
                }
            }
            assert_eq!(model.state.lock().unwrap().0, expected, "seed {seed}, live");
            drop(engine);
            let model = Model::new(dir.path(), true);
            let _engine = open(dir.path(), &clock, &model);
            assert_eq!(
                model.state.lock().unwrap().0,
                expected,
                "seed {seed}, reopened"
            );
        }
    }
}

mod wakeups {
    use flin_engine::{Namespace, WriteBatch};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::time::Duration;

    /// Waiters on several threads, each on its own prefix: a write from yet another thread
    /// wakes exactly the waiters whose prefix its keys start with, once per write, and a
    /// dropped registration is not woken again.
    #[test]
    fn a_write_wakes_the_waiters_of_its_prefix_on_any_thread() {
        let engine = super::memory();
        let (woken_tx, woken_rx) = mpsc::channel::<&'static str>();
        let mut waiting = Vec::new();
        for (name, namespace, prefix) in [
            ("orders", Namespace::Queue, &b"q/orders/"[..]),
            ("all-queues", Namespace::Queue, &b"q/"[..]),
            ("mails", Namespace::Queue, &b"q/mails/"[..]),
            ("kv-orders", Namespace::Kv, &b"q/orders/"[..]),
        ] {
            let (registered_tx, registered_rx) = mpsc::channel();
            let engine = engine.clone();
            let woken_tx = woken_tx.clone();
            waiting.push(std::thread::spawn(move || {
                let (wake_tx, wake_rx) = mpsc::channel::<()>();
                let wake_tx = std::sync::Mutex::new(wake_tx);
                let handle = engine.wake_on(
                    namespace,
                    prefix,
                    Arc::new(move || {
                        let _ = wake_tx.lock().unwrap().send(());
                    }),
                );
                registered_tx.send(()).unwrap();
                // Each waiter waits for two wake-ups, reporting each, then unregisters.
                for _ in 0..2 {
                    if wake_rx.recv_timeout(Duration::from_secs(10)).is_ok() {
                        woken_tx.send(name).unwrap();
                    }
                }
                drop(handle);
            }));
            registered_rx.recv().unwrap();
        }
        let mut batch = WriteBatch::new();
        batch.append(Namespace::Queue, b"q/orders/1", b"m");
        batch.append(Namespace::Queue, b"q/orders/2", b"m");
        engine.write(&batch).unwrap();
        let mut first: Vec<_> = (0..2).map(|_| woken_rx.recv().unwrap()).collect();
        first.sort();
        assert_eq!(first, ["all-queues", "orders"], "once each per write");
        engine.put(Namespace::Queue, b"q/mails/9", b"m", 0).unwrap();
        let mut second: Vec<_> = (0..2).map(|_| woken_rx.recv().unwrap()).collect();
        second.sort();
        assert_eq!(second, ["all-queues", "mails"]);
        engine.put(Namespace::Kv, b"q/orders/3", b"v", 0).unwrap();
        assert_eq!(woken_rx.recv().unwrap(), "kv-orders");
        // all-queues has had its two wake-ups and unregistered; orders and mails wait on.
        engine.delete(Namespace::Queue, b"q/mails/9").unwrap();
        assert_eq!(woken_rx.recv().unwrap(), "mails");
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        let handle = engine.wake_on(
            Namespace::Stream,
            b"",
            Arc::new(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            }),
        );
        engine.put(Namespace::Stream, b"anything", b"v", 0).unwrap();
        drop(handle);
        engine.put(Namespace::Stream, b"anything", b"v", 0).unwrap();
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "dropped registrations are not woken"
        );
        // The second wake-ups of the two left: then every thread is done.
        engine
            .put(Namespace::Queue, b"q/orders/4", b"m", 0)
            .unwrap();
        assert_eq!(woken_rx.recv().unwrap(), "orders");
        engine.put(Namespace::Kv, b"q/orders/5", b"m", 0).unwrap();
        assert_eq!(woken_rx.recv().unwrap(), "kv-orders");
        for thread in waiting {
            thread.join().unwrap();
        }
        assert!(woken_rx.try_recv().is_err(), "no extra wake-ups");
    }
}

/// `seq_within_bytes` counts whole segments newest first: no budget keeps the newest segment
/// only, the whole log's bytes keep every entry, and a larger budget never keeps less. The
/// budget is asked with the bytes of every segment, and what the answer keeps can be read.
#[test]
fn the_tail_within_a_byte_budget_is_whole_segments_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::open(common::quiet_config(dir.path()));
    for i in 0..200u32 {
        engine
            .put(Namespace::Kv, format!("key-{i}").as_bytes(), &[7u8; 200], 0)
            .unwrap();
    }
    let last = engine.last_seq();
    assert_eq!(last, 200);
    let total = engine.stats().log_bytes;
    assert!(engine.stats().segments > 5, "the test needs many segments");

    let mut asked = 0;
    let everything = engine.seq_within_bytes(|all| {
        asked = all;
        all
    });
    assert_eq!(asked, total);
    assert_eq!(everything, 1);

    let newest_only = engine.seq_within_bytes(|_| 0);
    assert!(
        1 < newest_only && newest_only <= last,
        "the newest segment alone holds {newest_only}..={last}"
    );
    // A 4,096-byte segment holds at most 16 of these ~250-byte records.
    assert!(last - newest_only < 16);

    let mut previous = newest_only;
    for budget in (0..=total).step_by(2048) {
        let floor = engine.seq_within_bytes(|_| budget);
        assert!(floor <= previous, "budget {budget}: {floor} > {previous}");
        previous = floor;
        // Everything from the floor on is in the log, read back in order.
        let mut reader = engine.reader(floor);
        let read = reader.read(1_000, usize::MAX).unwrap();
        assert_eq!(read.first().map(|e| e.seq), Some(floor));
        assert_eq!(read.last().map(|e| e.seq), Some(last));
    }
    // Half of the bytes keep about half of the entries (segments of equal records).
    let half = engine.seq_within_bytes(|all| all / 2);
    assert!(
        (70..=130).contains(&half),
        "half the bytes keep from {half}"
    );
}
