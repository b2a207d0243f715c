//! The engine's behaviour through its public API: reads, writes, batches, TTL, scans, the log,
//! reopening, memory mode, locking, poisoning, corruption reporting.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use common::*;
use flin_engine::{
    Config, Durability, Engine, Error, ManualClock, Namespace, RecordKind, WriteBatch,
};

const KV: Namespace = Namespace::Kv;

fn value(engine: &Engine, key: &[u8]) -> Option<Vec<u8>> {
    engine.get(KV, key).unwrap().map(|v| v.value)
}

#[test]
fn put_overwrite_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open(quiet_config(dir.path()));
        engine.put(KV, b"a", b"1", 0).unwrap();
        engine.put(KV, b"a", b"2", 0).unwrap();
        engine.put(KV, b"b", b"", 0).unwrap();
        assert!(engine.delete(KV, b"b").unwrap());
        assert!(
            !engine.delete(KV, b"b").unwrap(),
            "second delete finds nothing"
        );
        assert_eq!(value(&engine, b"a"), Some(b"2".to_vec()));
        assert_eq!(value(&engine, b"b"), None);
        assert_eq!(engine.len(KV), 1);
    }
    let engine = open(quiet_config(dir.path()));
    assert_eq!(value(&engine, b"a"), Some(b"2".to_vec()));
    assert_eq!(value(&engine, b"b"), None);
    assert_eq!(engine.len(KV), 1);
    assert_eq!(engine.recovery_report().keys, 1);
}

#[test]
fn namespaces_keep_equal_keys_apart() {
    let engine = open(Config::memory());
    for ns in Namespace::ALL {
        engine.put(ns, b"same", &[ns.tag()], 0).unwrap();
    }
    for ns in Namespace::ALL {
        assert_eq!(
            engine.get(ns, b"same").unwrap().unwrap().value,
            vec![ns.tag()]
        );
        assert_eq!(engine.len(ns), 1);
    }
    engine.delete(Namespace::Queue, b"same").unwrap();
    assert!(engine.get(Namespace::Queue, b"same").unwrap().is_none());
    assert!(engine.get(Namespace::Stream, b"same").unwrap().is_some());
    let (_, keys) = engine.scan(Namespace::Document, 0, 100).unwrap();
    assert_eq!(keys, vec![b"same".to_vec()]);
}

#[test]
fn expired_keys_are_invisible_at_once_and_stay_dead_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = Arc::new(Mutex::new(Vec::new()));
    {
        let engine = open(small_config(dir.path(), &clock, &log));
        engine.put(KV, b"old", b"forever", 0).unwrap();
        // Fill a few segments so "old" sits in a sealed one.
        for i in 0..100u32 {
            engine
                .put(KV, format!("filler{i}").as_bytes(), &[0u8; 64], 0)
                .unwrap();
        }
        engine.put(KV, b"old", b"short-lived", 1_000_500).unwrap();
        assert_eq!(engine.expiry_of(KV, b"old").unwrap(), Some(1_000_500));
        clock.advance(499);
        assert_eq!(value(&engine, b"old"), Some(b"short-lived".to_vec()));
        clock.advance(1);
        assert_eq!(
            value(&engine, b"old"),
            None,
            "expired exactly at its expiry time"
        );
        assert!(!engine.contains(KV, b"old").unwrap());
        let (_, keys) = engine.scan(KV, 0, 1000).unwrap();
        assert!(!keys.contains(&b"old".to_vec()));
    }
    // The expired record must not let the older "forever" value come back.
    let engine = open(small_config(dir.path(), &clock, &log));
    assert_eq!(value(&engine, b"old"), None);
    engine.compact(0.0).unwrap();
    drop(engine);
    let engine = open(small_config(dir.path(), &clock, &log));
    assert_eq!(value(&engine, b"old"), None);
    assert_eq!(engine.len(KV), 100);
}

#[test]
fn reclaim_expired_drops_index_entries() {
    let clock = Arc::new(ManualClock::new(10_000));
    let engine = open(
        Config::memory()
            .clock(clock.clone())
            .background_compaction(false),
    );
    for i in 0..50u32 {
        engine
            .put(
                KV,
                &i.to_le_bytes(),
                b"v",
                if i % 2 == 0 { 10_100 } else { 0 },
            )
            .unwrap();
    }
    assert_eq!(
        engine.len(KV),
        50,
        "expired keys count until reclaimed, as in DBSIZE"
    );
    clock.advance(100);
    assert_eq!(engine.reclaim_expired(), 25);
    assert_eq!(engine.len(KV), 25);
    assert_eq!(engine.stats().expired_keys_reclaimed, 25);
}

#[test]
fn batch_is_one_record_and_one_seq() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(quiet_config(dir.path()));
    engine.put(KV, b"gone", b"x", 0).unwrap();
    let mut batch = WriteBatch::new();
    batch
        .put(KV, b"k1", b"v1", 0)
        .put(Namespace::Queue, b"q1", b"m1", 0)
        .delete(KV, b"gone")
        .put(KV, b"k1", b"v1-again", 0);
    let seq = engine.write(&batch).unwrap();
    assert_eq!(
        value(&engine, b"k1"),
        Some(b"v1-again".to_vec()),
        "later op in a batch wins"
    );
    assert_eq!(
        engine.get(Namespace::Queue, b"q1").unwrap().unwrap().value,
        b"m1"
    );
    assert_eq!(value(&engine, b"gone"), None);
    let entries: Vec<_> = engine.log_from(seq).map(|e| e.unwrap()).collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].seq, seq);
    assert_eq!(entries[0].ops.len(), 4);
    assert_eq!(entries[0].ops[2].kind, RecordKind::Delete);
    drop(engine);
    let engine = open(quiet_config(dir.path()));
    assert_eq!(value(&engine, b"k1"), Some(b"v1-again".to_vec()));
    assert_eq!(value(&engine, b"gone"), None);
}

#[test]
fn transaction_reads_its_own_writes_and_commits_atomically() {
    let engine = open(Config::memory());
    engine.put(KV, b"counter", b"41", 0).unwrap();
    let mut txn = engine.begin();
    let current: i64 = std::str::from_utf8(&txn.get(KV, b"counter").unwrap().unwrap().value)
        .unwrap()
        .parse()
        .unwrap();
    txn.put(KV, b"counter", (current + 1).to_string().as_bytes(), 0)
        .unwrap();
    let seen = txn.get(KV, b"counter").unwrap().unwrap().value;
    assert!(txn.delete(KV, b"counter").unwrap());
    assert!(!txn.contains(KV, b"counter").unwrap());
    txn.put(KV, b"counter", &seen, 0).unwrap();
    assert_eq!(txn.batch().len(), 3, "the queued writes are a typed list");
    let seq = txn.commit().unwrap();
    assert_eq!(seen, b"42");
    assert!(seq.is_some());
    assert_eq!(value(&engine, b"counter"), Some(b"42".to_vec()));
    // A transaction dropped without committing writes nothing.
    let before = engine.last_seq();
    let mut txn = engine.begin();
    txn.put(KV, b"counter", b"0", 0).unwrap();
    drop(txn);
    assert_eq!(engine.last_seq(), before);
    assert_eq!(value(&engine, b"counter"), Some(b"42".to_vec()));
    // A read-only transaction writes nothing either.
    assert_eq!(engine.begin().commit().unwrap(), None);
}

/// Past 16 queued writes, reads inside a transaction go through a hash map of the latest write
/// per key, built by the first such read; writes after it must keep it current.
#[test]
fn a_long_transaction_reads_its_latest_writes_before_and_after_the_overlay_exists() {
    let engine = open(Config::memory());
    engine.put(KV, b"old", b"committed", 0).unwrap();
    let mut txn = engine.begin();
    for i in 0..40u32 {
        txn.put(KV, format!("k{i}").as_bytes(), &i.to_le_bytes(), 0)
            .unwrap();
    }
    // The first read past 16 writes builds the map; it must hold the latest of each key.
    txn.put(KV, b"k3", b"rewritten", 0).unwrap();
    assert_eq!(txn.get(KV, b"k3").unwrap().unwrap().value, b"rewritten");
    assert_eq!(
        txn.get(KV, b"k39").unwrap().unwrap().value,
        39u32.to_le_bytes()
    );
    assert_eq!(txn.get(KV, b"old").unwrap().unwrap().value, b"committed");
    // Writes after it: a put, a delete, a put of a new key.
    txn.put(KV, b"k5", b"again", 0).unwrap();
    assert!(txn.delete(KV, b"k6").unwrap());
    assert!(txn.delete(KV, b"old").unwrap());
    txn.put(KV, b"new", b"n", 0).unwrap();
    assert_eq!(txn.get(KV, b"k5").unwrap().unwrap().value, b"again");
    assert!(!txn.contains(KV, b"k6").unwrap());
    assert!(!txn.contains(KV, b"old").unwrap());
    assert_eq!(txn.get(KV, b"new").unwrap().unwrap().value, b"n");
    txn.commit().unwrap();
    assert_eq!(value(&engine, b"k3"), Some(b"rewritten".to_vec()));
    assert_eq!(value(&engine, b"k5"), Some(b"again".to_vec()));
    assert_eq!(value(&engine, b"k6"), None);
    assert_eq!(value(&engine, b"old"), None);
    assert_eq!(value(&engine, b"k39"), Some(39u32.to_le_bytes().to_vec()));
}

#[test]
fn concurrent_increments_through_transactions_lose_nothing() {
    let engine = open(Config::memory());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let mut txn = engine.begin();
                    let n: u64 = txn.get(KV, b"n").unwrap().map_or(0, |v| {
                        std::str::from_utf8(&v.value).unwrap().parse().unwrap()
                    });
                    txn.put(KV, b"n", (n + 1).to_string().as_bytes(), 0)
                        .unwrap();
                    txn.commit().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(value(&engine, b"n"), Some(b"2000".to_vec()));
}

#[test]
fn version_changes_on_every_write() {
    let engine = open(Config::memory());
    assert_eq!(engine.version(KV, b"k").unwrap(), None);
    engine.put(KV, b"k", b"1", 0).unwrap();
    let first = engine.version(KV, b"k").unwrap().unwrap();
    engine.put(KV, b"k", b"1", 0).unwrap();
    let second = engine.version(KV, b"k").unwrap().unwrap();
    assert!(second > first);
    engine.delete(KV, b"k").unwrap();
    assert_eq!(engine.version(KV, b"k").unwrap(), None);
}

#[test]
fn scan_returns_every_key_even_while_the_index_grows() {
    let engine = open(Config::memory());
    let mut expected = BTreeSet::new();
    for i in 0..3000u32 {
        let key = format!("key:{i}").into_bytes();
        engine.put(KV, &key, b"v", 0).unwrap();
        expected.insert(key);
    }
    let mut seen = BTreeSet::new();
    let mut cursor = 0;
    let mut added = 0u32;
    loop {
        let (next, keys) = engine.scan(KV, cursor, 10).unwrap();
        seen.extend(keys);
        // Grow the index between calls: keys present all along must still be returned.
        for _ in 0..20 {
            engine
                .put(KV, format!("late:{added}").as_bytes(), b"v", 0)
                .unwrap();
            added += 1;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let missing: Vec<_> = expected.difference(&seen).collect();
    assert!(missing.is_empty(), "{} keys never returned", missing.len());
    assert!(engine.random_key(KV, 7).unwrap().is_some());
    assert!(open(Config::memory()).random_key(KV, 7).unwrap().is_none());
}

#[test]
fn log_from_yields_every_seq_in_order_across_segments_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(quiet_config(dir.path()));
    for i in 0..300u32 {
        engine
            .put(KV, format!("k{}", i % 50).as_bytes(), &[1u8; 40], 0)
            .unwrap();
    }
    let all: Vec<_> = engine.log_from(0).map(|e| e.unwrap()).collect();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    let tail: Vec<u64> = engine.log_from(290).map(|e| e.unwrap().seq).collect();
    assert_eq!(tail, (290..=300).collect::<Vec<_>>());
    engine.compact(0.0).unwrap();
    let after: Vec<u64> = engine.log_from(0).map(|e| e.unwrap().seq).collect();
    assert!(
        after.windows(2).all(|w| w[0] < w[1]),
        "still in seq order after compaction"
    );
    assert!(after.len() < 300, "compaction dropped overwritten records");
    assert!(after.ends_with(&[300]));
}

#[test]
fn memory_mode_has_the_same_api_and_no_files() {
    let engine = open(Config::memory().segment_bytes(4096));
    for i in 0..500u32 {
        engine.put(KV, &i.to_le_bytes(), &[7u8; 100], 0).unwrap();
    }
    for i in 0..250u32 {
        engine.put(KV, &i.to_le_bytes(), &[8u8; 100], 0).unwrap();
    }
    let report = engine.compact(0.3).unwrap();
    assert!(
        report.segments_in > 0 && report.bytes_reclaimed > 0,
        "{report:?}"
    );
    for i in 0..500u32 {
        let expected = if i < 250 { 8u8 } else { 7u8 };
        assert_eq!(value(&engine, &i.to_le_bytes()), Some(vec![expected; 100]));
    }
    engine.flush().unwrap();
}

#[test]
fn a_second_engine_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(quiet_config(dir.path()));
    match Engine::open(quiet_config(dir.path())) {
        Err(Error::Locked { path }) => assert!(path.ends_with("LOCK")),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("second open succeeded"),
    }
}

#[test]
fn poisoned_engine_refuses_writes_and_keeps_serving_reads() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(quiet_config(dir.path()));
    engine.put(KV, b"k", b"v", 0).unwrap();
    engine.poison_for_test("fsync failed: Input/output error");
    let err = engine.put(KV, b"k2", b"v", 0).unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }));
    assert!(err.to_string().contains("refuses writes"), "{err}");
    let mut txn = engine.begin();
    txn.put(KV, b"x", b"y", 0).unwrap();
    assert!(txn.commit().is_err());
    assert_eq!(value(&engine, b"k"), Some(b"v".to_vec()));
    assert!(engine.poisoned().is_some());
}

#[test]
fn oversized_and_invalid_writes_are_refused_with_the_field_named() {
    let engine = open(Config::memory());
    let key = vec![0u8; flin_engine::KEY_BYTES_MAX + 1];
    match engine.put(KV, &key, b"v", 0) {
        Err(Error::TooLarge { field: "key", .. }) => {}
        other => panic!("{other:?}"),
    }
    let mut expiring_append = WriteBatch::new();
    expiring_append.push_op(&flin_engine::Op {
        kind: flin_engine::RecordKind::Append,
        namespace: KV,
        key: b"k",
        value: b"v",
        expiry_ms: 5,
    });
    match engine.write(&expiring_append) {
        Err(Error::Invalid(message)) => assert!(message.contains("expiry"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(engine.write(&WriteBatch::new()).is_err());
    assert_eq!(engine.len(KV), 0, "nothing half-written");
}

/// Redis accepts expiries up to the year 292 million (`PEXPIREAT k 9223372036854770000`); the
/// index keeps 48 bits of them, the record the exact time, which reads report.
#[test]
fn expiries_past_the_index_range_are_kept_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let far = 9_223_372_036_854_770_000u64;
    {
        let engine = open(quiet_config(dir.path()));
        engine.put(KV, b"far", b"v", far).unwrap();
        engine.put(KV, b"max", b"v", u64::MAX).unwrap();
        assert_eq!(engine.expiry_of(KV, b"far").unwrap(), Some(far));
        assert_eq!(engine.get(KV, b"max").unwrap().unwrap().expiry_ms, u64::MAX);
        engine.flush().unwrap();
    }
    let engine = open(quiet_config(dir.path()));
    assert_eq!(engine.expiry_of(KV, b"far").unwrap(), Some(far));
    assert_eq!(engine.get(KV, b"far").unwrap().unwrap().expiry_ms, far);
    assert_eq!(engine.len(KV), 2);
}

#[test]
fn values_larger_than_a_segment_get_a_segment_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![0xabu8; 100_000];
    {
        let engine = open(quiet_config(dir.path()));
        engine.put(KV, b"small", b"s", 0).unwrap();
        engine.put(KV, b"big", &big, 0).unwrap();
        engine.put(KV, b"after", b"a", 0).unwrap();
        assert_eq!(value(&engine, b"big"), Some(big.clone()));
    }
    let engine = open(quiet_config(dir.path()));
    assert_eq!(value(&engine, b"big"), Some(big));
    assert_eq!(value(&engine, b"after"), Some(b"a".to_vec()));
}

#[test]
fn group_commit_under_always_makes_every_acknowledged_write_durable() {
    let dir = tempfile::tempdir().unwrap();
    let config = quiet_config(dir.path())
        .durability(Durability::Always)
        .segment_bytes(1 << 20);
    let engine = open(config.clone());
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..100u32 {
                    let seq = engine
                        .put(KV, format!("{t}:{i}").as_bytes(), b"v", 0)
                        .unwrap();
                    assert!(engine.durable_seq() >= seq, "acknowledged before durable");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = engine.stats();
    assert_eq!(stats.writes, 400);
    assert!(stats.flushes <= 400, "at most one flush per write");
    assert_eq!(stats.durable_seq, stats.last_seq);
}

#[test]
fn corruption_in_a_sealed_segment_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open(quiet_config(dir.path()));
        for i in 0..200u32 {
            engine.put(KV, &i.to_le_bytes(), &[3u8; 50], 0).unwrap();
        }
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    let victim = &files[0];
    let mut bytes = std::fs::read(victim).unwrap();
    let (start, _) = record_ranges(&bytes)[5];
    bytes[start + 40] ^= 0x10;
    std::fs::write(victim, &bytes).unwrap();
    match Engine::open(quiet_config(dir.path())) {
        Err(Error::Corrupt { path, corruption }) => {
            assert_eq!(&path, victim);
            assert_eq!(corruption.offset, start as u64);
            assert!(
                corruption.reason.contains("checksum"),
                "{}",
                corruption.reason
            );
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("corrupt segment opened"),
    }
}

#[test]
fn corruption_found_on_read_is_an_error_not_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = open(quiet_config(dir.path()));
        for i in 0..200u32 {
            engine.put(KV, &i.to_le_bytes(), &[3u8; 50], 0).unwrap();
        }
        engine.write_missing_hints().unwrap();
    }
    // With hint files, recovery does not read values: damage a value and read it.
    let files = segment_files(dir.path());
    let victim = &files[0];
    let mut bytes = std::fs::read(victim).unwrap();
    let (start, end) = record_ranges(&bytes)[2];
    bytes[end - 1] ^= 1;
    std::fs::write(victim, &bytes).unwrap();
    let engine = open(quiet_config(dir.path()));
    assert!(engine.recovery_report().segments_from_hints >= 1);
    let damaged = std::fs::read(victim).unwrap();
    let key = flin_engine::format::decode_record(&damaged[start..], 0, false)
        .unwrap()
        .key
        .to_vec();
    match engine.get(KV, &key) {
        Err(Error::Corrupt { path, corruption }) => {
            assert_eq!(&path, victim);
            assert_eq!(corruption.offset, start as u64);
        }
        other => panic!("damaged value served: {other:?}"),
    }
}

#[test]
fn damaged_hint_files_fall_back_to_scanning() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = HashMap::new();
    {
        let engine = open(quiet_config(dir.path()));
        for i in 0..300u32 {
            let key = format!("k{}", i % 120);
            engine.put(KV, key.as_bytes(), &i.to_le_bytes(), 0).unwrap();
            model.insert(key, i);
        }
        assert!(engine.write_missing_hints().unwrap() >= 2);
    }
    let hints: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hint"))
        .collect();
    // One truncated, one with a flipped bit.
    let bytes = std::fs::read(&hints[0]).unwrap();
    std::fs::write(&hints[0], &bytes[..bytes.len() / 2]).unwrap();
    let mut bytes = std::fs::read(&hints[1]).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&hints[1], &bytes).unwrap();
    let engine = open(quiet_config(dir.path()));
    assert_eq!(engine.recovery_report().bad_hints.len(), 2);
    for (key, i) in &model {
        assert_eq!(
            value(&engine, key.as_bytes()),
            Some(i.to_le_bytes().to_vec()),
            "{key}"
        );
    }
    assert_eq!(engine.len(KV), model.len() as u64);
}

#[test]
fn a_failed_rotation_refuses_writes_without_losing_any_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(quiet_config(dir.path()));
    let next_id = segment_files(dir.path()).len() as u64 + 1;
    // Block the names the next segments would be created under (each failed attempt uses up
    // one id), as a full disk would refuse them.
    let blockers: Vec<_> = (next_id..next_id + 400)
        .map(|id| dir.path().join(format!("{id:020}.seg.tmp")))
        .collect();
    for blocker in &blockers {
        std::fs::create_dir(blocker).unwrap();
    }
    let mut acknowledged = Vec::new();
    let mut failures = 0;
    for i in 0..200u32 {
        match engine.put(KV, &i.to_le_bytes(), &[5u8; 40], 0) {
            Ok(_) => acknowledged.push(i),
            Err(e) => {
                assert!(matches!(e, Error::Io { .. }), "{e}");
                failures += 1;
            }
        }
    }
    assert!(failures > 0 && !acknowledged.is_empty());
    // A write small enough for the sealed segment's leftover space must fail too, not land
    // past the end of the truncated file.
    assert!(engine.put(KV, b"t", b"", 0).is_err());
    // Once rotation failed, no write may land in the sealed segment (it would be past its end).
    let first_failure = (0..200u32).find(|i| !acknowledged.contains(i)).unwrap();
    assert!(
        acknowledged.iter().all(|&i| i < first_failure),
        "a write succeeded after rotation failed"
    );
    for &i in &acknowledged {
        assert!(
            value(&engine, &i.to_le_bytes()).is_some(),
            "reads keep working"
        );
    }
    for blocker in &blockers {
        std::fs::remove_dir(blocker).unwrap();
    }
    engine.put(KV, b"after", b"space is back", 0).unwrap();
    drop(engine);
    let engine = open(quiet_config(dir.path()));
    for &i in &acknowledged {
        assert!(value(&engine, &i.to_le_bytes()).is_some(), "key {i} lost");
    }
    assert_eq!(value(&engine, b"after"), Some(b"space is back".to_vec()));
}

#[test]
fn a_hint_file_describing_another_segment_is_rejected_before_use() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = HashMap::new();
    {
        let engine = open(quiet_config(dir.path()));
        for i in 0..300u32 {
            let key = format!("k{}", i % 90);
            engine.put(KV, key.as_bytes(), &i.to_le_bytes(), 0).unwrap();
            model.insert(key, i);
        }
        engine.write_missing_hints().unwrap();
    }
    // Give segment 2 the hint file of segment 1, with its id and checksum patched so that only
    // the entries themselves are wrong.
    let hint = |id: u64| dir.path().join(format!("{id:020}.hint"));
    let mut bytes = std::fs::read(hint(1)).unwrap();
    bytes[16..24].copy_from_slice(&2u64.to_le_bytes());
    let footer = bytes.len() - 16;
    let crc = crc32fast::hash(&bytes[..footer + 8]);
    bytes[footer + 8..footer + 12].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(hint(2), &bytes).unwrap();
    let engine = open(quiet_config(dir.path()));
    assert_eq!(
        engine.recovery_report().bad_hints.len(),
        1,
        "{:?}",
        engine.recovery_report()
    );
    for (key, i) in &model {
        assert_eq!(
            value(&engine, key.as_bytes()),
            Some(i.to_le_bytes().to_vec()),
            "{key}"
        );
    }
}

/// Readers on other threads see a whole, current-or-newer value of every key while the writer
/// rotates 4 KiB segments, the sealer remaps them read-only and compaction merges and retires
/// them: the segments a lookup reaches through the index stay mapped for as long as it needs
/// them.
#[test]
fn readers_see_whole_values_through_rotation_sealing_and_compaction() {
    const KEYS: u32 = 64;
    let dir = tempfile::tempdir().unwrap();
    let engine = open(quiet_config(dir.path()));
    // Value of key k at version n: k and n, then filler, so a reader can check it is whole.
    let value_of = |key: u32, version: u32| -> Vec<u8> {
        let mut value = Vec::with_capacity(200);
        value.extend_from_slice(&key.to_le_bytes());
        value.extend_from_slice(&version.to_le_bytes());
        value.resize(200, (key ^ version) as u8);
        value
    };
    for key in 0..KEYS {
        engine
            .put(KV, &key.to_le_bytes(), &value_of(key, 0), 0)
            .unwrap();
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let engine = engine.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut newest_seen = vec![0u32; KEYS as usize];
                let mut reads = 0u64;
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    for key in 0..KEYS {
                        let value = value(&engine, &key.to_le_bytes()).expect("key never deleted");
                        let version = u32::from_le_bytes(value[4..8].try_into().unwrap());
                        assert_eq!(value, value_of(key, version), "torn value of key {key}");
                        assert!(
                            version >= newest_seen[key as usize],
                            "key {key} went back in time"
                        );
                        newest_seen[key as usize] = version;
                        reads += 1;
                    }
                }
                reads
            })
        })
        .collect();
    for version in 1..=60u32 {
        for key in 0..KEYS {
            engine
                .put(KV, &key.to_le_bytes(), &value_of(key, version), 0)
                .unwrap();
        }
        if version % 5 == 0 {
            engine.compact(0.0).unwrap();
        }
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    for reader in readers {
        assert!(reader.join().expect("reader panicked") > 0);
    }
    assert!(engine.stats().compactions >= 12);
    for key in 0..KEYS {
        assert_eq!(value(&engine, &key.to_le_bytes()), Some(value_of(key, 60)));
    }
}

#[test]
fn get_many_answers_each_key_in_order_like_get() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = Arc::new(Mutex::new(Vec::new()));
    let engine = open(small_config(dir.path(), &clock, &log));
    for i in 0..500u32 {
        let expiry = if i % 7 == 0 { 1_000_100 } else { 0 };
        engine
            .put(KV, format!("k{i}").as_bytes(), &i.to_le_bytes(), expiry)
            .unwrap();
    }
    engine
        .put(Namespace::Queue, b"k1", b"other namespace", 0)
        .unwrap();
    for i in (0..500u32).step_by(5) {
        engine.delete(KV, format!("k{i}").as_bytes()).unwrap();
    }
    clock.advance(100);
    // More than one group, duplicates, misses, deleted, expired, and a key of another
    // namespace.
    let keys: Vec<String> = (0..700u32)
        .map(|i| format!("k{}", (i * 37) % 600))
        .chain(["k1".to_string(), "k1".to_string(), "nope".to_string()])
        .collect();
    let mut answers = Vec::new();
    engine
        .get_many_with(KV, &keys, |i, v| {
            answers.push((i, v.map(|v| v.value.to_vec())))
        })
        .unwrap();
    let expected: Vec<(usize, Option<Vec<u8>>)> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| (i, value(&engine, key.as_bytes())))
        .collect();
    assert_eq!(answers, expected);
    let hits = answers.iter().filter(|(_, v)| v.is_some()).count();
    assert!(hits > 300 && hits < answers.len(), "{hits} hits");
    assert_eq!(value(&engine, b"k7"), None, "expired");
    let mut none = 0;
    engine
        .get_many_with(KV, &[] as &[&[u8]], |_, _| none += 1)
        .unwrap();
    assert_eq!(none, 0);
}
