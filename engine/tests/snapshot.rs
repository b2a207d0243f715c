//! `Engine::snapshot_into` (issue 14's catch-up by snapshot): the files it links hold exactly
//! the state through the seq it names, whatever the engine does afterwards (more writes,
//! overwrites, deletes, hint files, compaction), and open as a data directory through normal
//! recovery.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::quiet_config;
use flin_engine::{Engine, Namespace, SnapshotFiles, WriteBatch};

/// Copies the snapshot's files (their first `len` bytes, as a follower receives them) from
/// `from` into a new data directory `to`.
fn copy_snapshot(snapshot: &SnapshotFiles, from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in &snapshot.files {
        let bytes = std::fs::read(from.join(&file.name)).unwrap();
        assert!(bytes.len() as u64 >= file.len, "{} is shorter", file.name);
        std::fs::write(to.join(&file.name), &bytes[..file.len as usize]).unwrap();
    }
}

/// Every Kv key and its value.
fn state(engine: &Engine) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut keys = BTreeMap::new();
    engine
        .for_each(Namespace::Kv, b"", |record| {
            keys.insert(record.key.to_vec(), record.value.to_vec());
        })
        .unwrap();
    keys
}

#[test]
fn a_snapshot_holds_exactly_the_state_through_its_seq_after_later_writes_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let links = dir.path().join("links");
    let engine = Engine::open(quiet_config(&data)).unwrap();
    // Overwrites and deletes across many 4 KiB segments, compacted, with hint files.
    for round in 0..5u32 {
        for key in 0..200u32 {
            let value = format!("value {round} of {key} {}", "x".repeat(40));
            engine
                .put(
                    Namespace::Kv,
                    format!("k{key}").as_bytes(),
                    value.as_bytes(),
                    0,
                )
                .unwrap();
        }
        for key in (round..200).step_by(7) {
            engine
                .delete(Namespace::Kv, format!("k{key}").as_bytes())
                .unwrap();
        }
    }
    engine.write_missing_hints().unwrap();
    assert!(engine.compact(0.0).unwrap().segments_in > 0);
    // A few writes left in the active segment: the snapshot must rotate them out.
    engine
        .put(Namespace::Kv, b"last", b"in the active", 0)
        .unwrap();
    let expected = state(&engine);
    let before = engine.last_seq();

    let snapshot = engine.snapshot_into(&links).unwrap();
    assert_eq!(snapshot.seq, before);
    assert!(snapshot.files.iter().any(|f| f.name.ends_with(".hint")));

    // Afterwards: every key overwritten, new keys, deletes, hints, a full compaction.
    for key in 0..200u32 {
        engine
            .put(Namespace::Kv, format!("k{key}").as_bytes(), b"after", 0)
            .unwrap();
    }
    let mut batch = WriteBatch::new();
    batch.put(Namespace::Kv, b"new", b"after", 0);
    batch.delete(Namespace::Kv, b"last");
    engine.write(&batch).unwrap();
    engine.write_missing_hints().unwrap();
    assert!(engine.compact(0.0).unwrap().segments_in > 0);

    let copy = dir.path().join("copy");
    copy_snapshot(&snapshot, &links, &copy);
    let opened = Engine::open(quiet_config(&copy)).unwrap();
    assert_eq!(opened.last_seq(), snapshot.seq, "no record after the seq");
    assert_eq!(state(&opened), expected, "the state through the seq");
    assert!(opened.recovery_report().segments_from_hints > 0);
    // It takes writes like any directory.
    opened.put(Namespace::Kv, b"next", b"v", 0).unwrap();
    assert_eq!(opened.last_seq(), snapshot.seq + 1);
}

/// On a replicated engine the snapshot names the term of its last entry, leaves out what a
/// truncation cut (its cut applied only at the next open) and opens at its seq as the commit
/// point, its log's last entry that seq and term.
#[test]
fn a_replicated_engine_s_snapshot_leaves_out_a_cut_suffix_and_names_its_term() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let links = dir.path().join("links");
    let engine = Engine::open(quiet_config(&data).replicated(0)).unwrap();
    let entry = |key: &str, value: &str| {
        let mut batch = WriteBatch::new();
        batch.put(Namespace::Kv, key.as_bytes(), value.as_bytes(), 0);
        batch
    };
    for seq in 1..=100u64 {
        let value = format!("term 1 {seq} {}", "y".repeat(60));
        engine
            .append_entry(seq, 1, &entry(&format!("k{}", seq % 30), &value))
            .unwrap();
    }
    engine.commit_through(80).unwrap();
    // Entries 81..=100 replaced by a new leader's.
    engine.truncate_after(80).unwrap();
    for seq in 81..=90u64 {
        engine
            .append_entry(seq, 2, &entry(&format!("k{}", seq % 30), "term 2"))
            .unwrap();
    }
    engine.commit_through(90).unwrap();
    let expected = state(&engine);

    let snapshot = engine.snapshot_into(&links).unwrap();
    assert_eq!((snapshot.seq, snapshot.term), (90, 2));

    let copy = dir.path().join("copy");
    copy_snapshot(&snapshot, &links, &copy);
    drop(engine);
    let opened = Engine::open(quiet_config(&copy).replicated(snapshot.seq)).unwrap();
    assert_eq!(opened.last_entry(), (90, 2));
    assert_eq!(opened.term_at(90).unwrap(), Some(2));
    assert_eq!(opened.committed_seq(), 90);
    assert_eq!(state(&opened), expected);
    opened.append_entry(91, 3, &entry("k1", "term 3")).unwrap();
}

#[test]
fn an_engine_in_memory_has_no_snapshot() {
    let engine = Engine::open(flin_engine::Config::memory()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert!(engine.snapshot_into(dir.path()).is_err());
}
