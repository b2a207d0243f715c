//! Model-based property test of what replication stands on (issue 10): a replicated engine
//! driven by random leader writes (in the current term), follower appends (entries at the seqs
//! a leader chose), commits, `truncate_after` of the uncommitted suffix, compactions and
//! reopens, checked against a model log after every step:
//! - the index (every key of two namespaces) is exactly the model log's state, so truncation
//!   rolled it back exactly and reopening rebuilt it;
//! - the range markers drop exactly what the model's do;
//! - a tail reader from a random seq returns exactly the model's entries (seq, term, ops),
//!   never skipping or repeating one, and follows appends made after it caught up;
//! - `term_at` and `last_entry` agree with the model.
//!
//! `PROPTEST_CASES=1000 cargo test -p flin-engine --test replicated_log --release` for a long
//! run.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::small_config;
use flin_engine::{Engine, EntryOps, ManualClock, Namespace, Op, RecordKind, WriteBatch};
use proptest::prelude::*;

const NAMESPACES: [Namespace; 2] = [Namespace::Kv, Namespace::Queue];

/// One write of a model entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelOp {
    kind: RecordKind,
    namespace: Namespace,
    key: Vec<u8>,
    value: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelEntry {
    seq: u64,
    term: u64,
    ops: Vec<ModelOp>,
}

#[derive(Clone, Debug)]
enum Step {
    /// A leader write of these ops (key number, put value length or delete, namespace).
    Write(Vec<(u8, Option<usize>, usize)>),
    /// A log-only append, or a range marker at this bound, in the Queue namespace.
    Append(u8),
    Drop(u8),
    /// A new term begins (this node leads it).
    NewTerm,
    /// A follower append: the entries after the `keep`-th uncommitted one are replaced by
    /// `count` entries of a newer term (as a new leader's log would replace them), appended
    /// one by one or `together` (`append_entries_ops`, as a follower appends a message's
    /// entries; every other entry also deletes the key the one before it put).
    Replace {
        keep: u8,
        count: u8,
        together: bool,
    },
    /// Commit this share (in 1/4) of the uncommitted entries.
    Commit(u8),
    /// Truncate after the `keep`-th uncommitted entry.
    Truncate(u8),
    Compact,
    Reopen,
    /// Read from the `start`-th entry (of all) with a new reader.
    Read(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => proptest::collection::vec((0u8..12, proptest::option::weighted(0.75, 0usize..120), 0usize..2), 1..4)
            .prop_map(Step::Write),
        2 => (0u8..4).prop_map(Step::Append),
        1 => (0u8..4).prop_map(Step::Drop),
        1 => Just(Step::NewTerm),
        2 => (0u8..6, 1u8..6, any::<bool>())
            .prop_map(|(keep, count, together)| Step::Replace { keep, count, together }),
        3 => (0u8..5).prop_map(Step::Commit),
        2 => (0u8..6).prop_map(Step::Truncate),
        1 => Just(Step::Compact),
        1 => Just(Step::Reopen),
        2 => (0u8..=255).prop_map(Step::Read),
    ]
}

/// The model: the log, the commit point, the current term, per-partition append counters.
struct Model {
    log: Vec<ModelEntry>,
    committed: u64,
    term: u64,
    appended: [u32; 4],
    bounds: [u32; 4],
}

impl Model {
    fn last_seq(&self) -> u64 {
        self.log.len() as u64
    }

    fn uncommitted(&self) -> u64 {
        self.last_seq() - self.committed
    }

    /// Indexed keys per namespace, after every entry.
    fn state(&self) -> BTreeMap<(Namespace, Vec<u8>), Vec<u8>> {
        let mut state = BTreeMap::new();
        for entry in &self.log {
            for op in &entry.ops {
                match op.kind {
                    RecordKind::Put => {
                        state.insert((op.namespace, op.key.clone()), op.value.clone());
                    }
                    RecordKind::Delete => {
                        state.remove(&(op.namespace, op.key.clone()));
                    }
                    _ => {}
                }
            }
        }
        state
    }

    /// Log-only records no marker drops, as (key, value).
    fn live_appends(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut appends = Vec::new();
        for entry in &self.log {
            for op in &entry.ops {
                match op.kind {
                    RecordKind::Append => appends.push((op.key.clone(), op.value.clone())),
                    RecordKind::DropRange => appends.retain(|(key, _): &(Vec<u8>, Vec<u8>)| {
                        !(key.starts_with(&op.key) && key[op.key.len()..] < op.value[..])
                    }),
                    _ => {}
                }
            }
        }
        appends.sort();
        appends
    }
}

fn batch_of(ops: &[ModelOp]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for op in ops {
        match op.kind {
            RecordKind::Put => batch.put(op.namespace, &op.key, &op.value, 0),
            RecordKind::Delete => batch.delete(op.namespace, &op.key),
            RecordKind::Append => batch.append(op.namespace, &op.key, &op.value),
            RecordKind::DropRange => batch.drop_range(op.namespace, &op.key, &op.value),
            RecordKind::Batch => unreachable!(),
        };
    }
    batch
}

/// The engine's borrowed op for a model op.
fn op_of(op: &ModelOp) -> Op<'_> {
    Op {
        kind: op.kind,
        namespace: op.namespace,
        key: &op.key,
        value: &op.value,
        expiry_ms: 0,
    }
}

/// Appends `entries` at once (`append_entries_ops`), as a follower appends a message's.
fn append_together(engine: &Engine, entries: &[ModelEntry]) {
    let ops: Vec<Vec<Op<'_>>> = entries
        .iter()
        .map(|entry| entry.ops.iter().map(op_of).collect())
        .collect();
    let run: Vec<EntryOps<'_>> = entries
        .iter()
        .zip(&ops)
        .map(|(entry, ops)| EntryOps {
            seq: entry.seq,
            term: entry.term,
            ops,
        })
        .collect();
    engine.append_entries_ops(&run).unwrap();
}

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>, committed: u64) -> Engine {
    let log = Arc::new(Mutex::new(Vec::new()));
    Engine::open(small_config(dir, clock, &log).replicated(committed)).expect("engine opens")
}

fn check(engine: &Engine, model: &Model, what: &str) {
    let mut state = BTreeMap::new();
    for namespace in NAMESPACES {
        engine
            .for_each(namespace, b"", |record| {
                state.insert((namespace, record.key.to_vec()), record.value.to_vec());
            })
            .unwrap();
    }
    assert_eq!(state, model.state(), "{what}: index state");
    let mut appends = Vec::new();
    for entry in engine.log_from(0) {
        let entry = entry.unwrap();
        for op in entry.ops {
            if op.kind == RecordKind::Append && !engine.is_dropped(op.namespace, &op.key, entry.seq)
            {
                appends.push((op.key, op.value));
            }
        }
    }
    appends.sort();
    assert_eq!(
        appends,
        model.live_appends(),
        "{what}: live log-only records"
    );
    let last_term = model.log.last().map_or(0, |e| e.term);
    assert_eq!(
        engine.last_entry(),
        (model.last_seq(), last_term),
        "{what}: last entry"
    );
    assert_eq!(
        engine.committed_seq(),
        model.committed,
        "{what}: commit point"
    );
}

/// The entries a reader from `from` returns, as model entries, until it catches up.
fn read_all(engine: &Engine, from: u64) -> Vec<ModelEntry> {
    let mut reader = engine.reader(from);
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry().unwrap() {
        entries.push(ModelEntry {
            seq: entry.seq,
            term: entry.term,
            ops: entry
                .ops
                .into_iter()
                .map(|op| ModelOp {
                    kind: op.kind,
                    namespace: op.namespace,
                    key: op.key,
                    value: op.value,
                })
                .collect(),
        });
    }
    entries
}

fn run(steps: Vec<Step>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let mut engine = open(dir.path(), &clock, 0);
    let mut model = Model {
        log: Vec::new(),
        committed: 0,
        term: 0,
        appended: [0; 4],
        bounds: [0; 4],
    };
    // A reader made at the start follows the whole history while nothing it read is removed.
    let mut follower = Some((engine.reader(1), Vec::<u64>::new()));
    for (number, step) in steps.into_iter().enumerate() {
        let what = format!("step {number} ({step:?})");
        match step {
            Step::Write(writes) => {
                let ops: Vec<ModelOp> = writes
                    .iter()
                    .map(|&(key, put, namespace)| ModelOp {
                        kind: if put.is_some() {
                            RecordKind::Put
                        } else {
                            RecordKind::Delete
                        },
                        namespace: NAMESPACES[namespace],
                        key: format!("k{key}").into_bytes(),
                        value: put.map_or(Vec::new(), |len| vec![b'a' + (number % 26) as u8; len]),
                    })
                    .collect();
                let seq = engine.write(&batch_of(&ops)).unwrap();
                model.log.push(ModelEntry {
                    seq,
                    term: model.term,
                    ops,
                });
            }
            Step::Append(partition) | Step::Drop(partition) => {
                let p = partition as usize;
                let prefix = format!("p{p}/").into_bytes();
                let op = if matches!(step, Step::Append(_)) {
                    model.appended[p] += 1;
                    ModelOp {
                        kind: RecordKind::Append,
                        namespace: Namespace::Queue,
                        key: [prefix, model.appended[p].to_be_bytes().to_vec()].concat(),
                        value: vec![b'v'; 30],
                    }
                } else {
                    model.bounds[p] = model.bounds[p].max(model.appended[p] / 2);
                    ModelOp {
                        kind: RecordKind::DropRange,
                        namespace: Namespace::Queue,
                        key: prefix,
                        value: model.bounds[p].to_be_bytes().to_vec(),
                    }
                };
                let ops = vec![op];
                match engine.write(&batch_of(&ops)) {
                    Ok(seq) => model.log.push(ModelEntry {
                        seq,
                        term: model.term,
                        ops,
                    }),
                    // A truncation took back a higher bound's marker the model still holds:
                    // the engine refuses nothing it should accept, so only a lower bound than
                    // the one in effect can fail here.
                    Err(e) => assert!(e.to_string().contains("may only grow"), "{what}: {e}"),
                }
            }
            Step::NewTerm => {
                model.term += 1;
                engine.set_term(model.term).unwrap();
            }
            Step::Replace {
                keep,
                count,
                together,
            } => {
                let keep = model.committed + (keep as u64).min(model.uncommitted());
                engine.truncate_after(keep).unwrap();
                model.log.truncate(keep as usize);
                model.term += 1;
                let key = |i: usize| format!("k{}", (i + number) % 12).into_bytes();
                let mut entries = Vec::new();
                for i in 0..count as usize {
                    let mut ops = vec![ModelOp {
                        kind: RecordKind::Put,
                        namespace: Namespace::Kv,
                        key: key(i),
                        value: format!("leader {number}/{i}").into_bytes(),
                    }];
                    if together && i % 2 == 1 {
                        ops.push(ModelOp {
                            kind: RecordKind::Delete,
                            namespace: Namespace::Kv,
                            key: key(i - 1),
                            value: Vec::new(),
                        });
                    }
                    entries.push(ModelEntry {
                        seq: model.last_seq() + 1 + i as u64,
                        term: model.term,
                        ops,
                    });
                }
                if together {
                    append_together(&engine, &entries);
                } else {
                    for entry in &entries {
                        engine
                            .append_entry(entry.seq, entry.term, &batch_of(&entry.ops))
                            .unwrap();
                    }
                }
                model.log.extend(entries);
                engine.set_term(model.term).unwrap();
            }
            Step::Commit(quarters) => {
                let seq = model.committed + model.uncommitted() * quarters as u64 / 4;
                engine.commit_through(seq).unwrap();
                model.committed = model.committed.max(seq);
            }
            Step::Truncate(keep) => {
                let keep = model.committed + (keep as u64).min(model.uncommitted());
                engine.truncate_after(keep).unwrap();
                model.log.truncate(keep as usize);
                // Markers the truncation removed go back to their earlier bounds.
                for p in 0..4 {
                    model.bounds[p] = 0;
                }
                for entry in &model.log {
                    for op in &entry.ops {
                        if op.kind == RecordKind::DropRange {
                            let p = (op.key[1] - b'0') as usize;
                            let bound = u32::from_be_bytes(op.value[..4].try_into().unwrap());
                            model.bounds[p] = model.bounds[p].max(bound);
                        }
                    }
                }
            }
            Step::Compact => {
                engine.compact(0.0).unwrap();
            }
            Step::Reopen => {
                follower = None;
                drop(engine);
                engine = open(dir.path(), &clock, model.committed);
                engine.set_term(model.term).unwrap();
            }
            Step::Read(start) => {
                let from = if model.log.is_empty() {
                    1
                } else {
                    1 + start as u64 % model.last_seq()
                };
                // Entries up to the commit point may be gone (superseded records compacted):
                // a reader made there reports it, never skips. Above it nothing was compacted.
                match engine.reader(from).next_entry() {
                    Err(flin_engine::Error::NotInLog { seq }) => {
                        assert!(seq <= model.committed, "{what}: entry {seq} missing");
                    }
                    other => {
                        other.unwrap();
                        if from > model.committed {
                            assert_eq!(
                                read_all(&engine, from),
                                model.log[from as usize - 1..].to_vec(),
                                "{what}: reader from {from}"
                            );
                        }
                    }
                }
            }
        }
        check(&engine, &model, &what);
        // The follower made at the start reads on, unless a truncation removed what it read.
        if let Some((reader, seen)) = &mut follower {
            match reader.read(1000, usize::MAX) {
                Ok(entries) => {
                    for entry in entries {
                        assert_eq!(entry.seq, seen.len() as u64 + 1, "{what}: follower order");
                        let expected = &model.log[entry.seq as usize - 1];
                        assert_eq!((entry.seq, entry.term), (expected.seq, expected.term));
                        seen.push(entry.seq);
                    }
                }
                Err(flin_engine::Error::Truncated { seq, .. }) => {
                    assert!(
                        seq < seen.len() as u64,
                        "{what}: truncated behind the follower"
                    );
                    follower = None;
                }
                Err(e) => panic!("{what}: follower: {e}"),
            }
        }
        for seq in [1, model.last_seq().max(1)] {
            if seq > model.committed && seq <= model.last_seq() {
                assert_eq!(
                    engine.term_at(seq).unwrap(),
                    Some(model.log[seq as usize - 1].term),
                    "{what}: term_at({seq})"
                );
            }
        }
    }
    // A reader holds the engine open, as a clone of it would.
    drop(follower);
    drop(engine);
    let engine = open(dir.path(), &clock, model.committed);
    check(&engine, &model, "final reopen");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn replicated_log_matches_a_model_log(steps in proptest::collection::vec(step(), 1..90)) {
        run(steps);
    }
}

/// A truncation is durable at once, whatever the policy: a crash right after it (simulated by
/// reopening from a copy of the directory taken then) comes back without the removed entries,
/// and new entries at their seqs win.
#[test]
fn a_truncation_survives_a_crash_right_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let engine = open(dir.path(), &clock, 0);
    for i in 0..40u32 {
        engine
            .put(Namespace::Kv, format!("k{i}").as_bytes(), &[b'x'; 90], 0)
            .unwrap();
    }
    engine.commit_through(10).unwrap();
    engine.truncate_after(20).unwrap();
    engine.set_term(3).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(Namespace::Kv, b"k25", b"new", 0);
    engine.append_entry(21, 3, &batch).unwrap();
    engine.flush().unwrap();
    let image = tempfile::tempdir().unwrap();
    common::copy_dir(dir.path(), image.path());
    drop(engine);
    let engine = open(image.path(), &clock, 10);
    assert_eq!(engine.last_entry(), (21, 3));
    assert_eq!(
        engine.get(Namespace::Kv, b"k25").unwrap().unwrap().value,
        b"new"
    );
    assert!(
        engine.get(Namespace::Kv, b"k30").unwrap().is_none(),
        "k30 was cut"
    );
    assert_eq!(
        engine
            .get(Namespace::Kv, b"k19")
            .unwrap()
            .unwrap()
            .value
            .len(),
        90
    );
    assert!(
        !image.path().join("CUT").exists(),
        "recovery applied the cut list"
    );
}

/// Found by the property test: a tombstone shadowed only by an uncommitted put was dropped by
/// compaction; truncating the put then let an older value of the key come back at the next
/// open. Compaction now counts a key whose newest record is uncommitted as absent.
#[test]
fn a_tombstone_shadowed_by_an_uncommitted_put_survives_compaction() {
    use Step::*;
    run(vec![
        Write(vec![(10, Some(0), 1)]),
        Write(vec![(0, None, 0)]),
        Write(vec![(0, None, 0)]),
        Write(vec![(0, None, 0)]),
        Replace {
            keep: 1,
            count: 1,
            together: false,
        },
        Write(vec![(0, None, 0)]),
        Write(vec![(0, None, 0)]),
        Commit(3),
        Write(vec![(10, None, 1)]),
        Compact,
        Replace {
            keep: 2,
            count: 1,
            together: false,
        },
        Replace {
            keep: 2,
            count: 1,
            together: false,
        },
        Write(vec![(10, Some(0), 1)]),
        Commit(3),
        Compact,
        Truncate(0),
    ]);
}

/// A follower's runs of entries (`append_entries_ops`, records written through the file, not
/// the mapping) across many segment rotations are what a crash leaves: a copy of the data
/// directory taken while the engine is open (the page cache, as kill -9 leaves it) opens with
/// every entry at its seq and term and the index of the last write of each key, and takes the
/// next entry.
#[test]
fn runs_written_through_the_file_across_rotations_are_what_a_crash_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let engine = open(dir.path(), &clock, 0);
    let key = |i: u64| format!("k{}", i % 37).into_bytes();
    let value = |i: u64| format!("entry {i} {}", "v".repeat(60 + (i % 50) as usize)).into_bytes();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut seq = 1;
    for (run, term) in [(40u64, 1u64), (75, 1), (1, 2), (60, 3)] {
        let entries: Vec<ModelEntry> = (seq..seq + run)
            .map(|i| {
                let mut ops = vec![ModelOp {
                    kind: RecordKind::Put,
                    namespace: Namespace::Kv,
                    key: key(i),
                    value: value(i),
                }];
                if i % 5 == 0 {
                    ops.push(ModelOp {
                        kind: RecordKind::Delete,
                        namespace: Namespace::Kv,
                        key: key(i + 3),
                        value: Vec::new(),
                    });
                }
                ModelEntry { seq: i, term, ops }
            })
            .collect();
        append_together(&engine, &entries);
        for entry in &entries {
            for op in &entry.ops {
                match op.kind {
                    RecordKind::Put => model.insert(op.key.clone(), op.value.clone()),
                    _ => model.remove(&op.key),
                };
            }
        }
        seq += run;
    }
    assert_eq!(engine.last_entry(), (seq - 1, 3));
    assert!(
        engine.stats().segments >= 5,
        "the runs crossed rotations: {} segments",
        engine.stats().segments
    );
    let holds_the_model = |engine: &Engine, what: &str| {
        for i in 0..37u64 {
            let key = key(i);
            let held = engine.get(Namespace::Kv, &key).unwrap().map(|v| v.value);
            assert_eq!(held.as_ref(), model.get(&key), "{what}: key {i}");
        }
    };
    holds_the_model(&engine, "before the crash");
    let image = tempfile::tempdir().unwrap();
    common::copy_dir(dir.path(), image.path());
    drop(engine);
    let engine = open(image.path(), &clock, 0);
    assert_eq!(engine.last_entry(), (seq - 1, 3));
    holds_the_model(&engine, "after the crash");
    let read = read_all(&engine, 1);
    assert_eq!(read.len() as u64, seq - 1);
    for (n, entry) in read.iter().enumerate() {
        assert_eq!(entry.seq, n as u64 + 1);
        assert_eq!(
            entry.term,
            if entry.seq < 116 {
                1
            } else if entry.seq == 116 {
                2
            } else {
                3
            }
        );
        assert_eq!(entry.ops[0].value, value(entry.seq), "entry {}", entry.seq);
    }
    let mut batch = WriteBatch::new();
    batch.put(Namespace::Kv, b"after", b"crash", 0);
    engine.append_entry(seq, 3, &batch).unwrap();
    assert_eq!(engine.last_entry(), (seq, 3));
}
