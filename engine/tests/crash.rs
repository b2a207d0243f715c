//! Crash images: torn tails at every byte of the last record, random garbage past random cuts,
//! and a compaction stopped after each of its steps. Recovery must give exactly a prefix of the
//! writes (torn tails) or every live key and no dead one (compaction).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use flin_engine::{CompactionStep, Engine, ManualClock, Namespace, WriteBatch};

const KV: Namespace = Namespace::Kv;

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

fn val(i: usize) -> Vec<u8> {
    format!("value-{i}-{}", "x".repeat(i % 37)).into_bytes()
}

/// Writes `n` distinct keys, the last write being a batch of three when `batch_last`.
/// Returns the groups of keys in write order (a batch is one group).
fn write_keys(dir: &Path, n: usize, batch_last: bool) -> Vec<Vec<usize>> {
    let engine = open(quiet_config(dir).segment_bytes(1 << 20));
    let mut groups = Vec::new();
    let singles = if batch_last { n - 3 } else { n };
    for i in 0..singles {
        engine.put(KV, &key(i), &val(i), 0).unwrap();
        groups.push(vec![i]);
    }
    if batch_last {
        let mut batch = WriteBatch::new();
        for i in singles..n {
            batch.put(KV, &key(i), &val(i), 0);
        }
        engine.write(&batch).unwrap();
        groups.push((singles..n).collect());
    }
    groups
}

/// Opens the image and checks that what it holds is exactly the first `k` groups, for some
/// `k >= at_least`; returns `k`.
fn assert_prefix(dir: &Path, groups: &[Vec<usize>], at_least: usize, what: &str) -> usize {
    let engine = Engine::open(quiet_config(dir).segment_bytes(1 << 20))
        .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    let present: Vec<bool> = groups
        .iter()
        .map(|group| {
            let found: Vec<bool> = group
                .iter()
                .map(|&i| match engine.get(KV, &key(i)).unwrap() {
                    Some(v) => {
                        assert_eq!(v.value, val(i), "{what}: key {i} has a wrong value");
                        true
                    }
                    None => false,
                })
                .collect();
            assert!(
                found.iter().all(|&f| f == found[0]),
                "{what}: batch half applied: {found:?}"
            );
            found[0]
        })
        .collect();
    let k = present.iter().take_while(|&&p| p).count();
    assert!(
        present[k..].iter().all(|&p| !p),
        "{what}: not a prefix: {present:?}"
    );
    assert!(
        k >= at_least,
        "{what}: lost whole records: kept {k}, expected at least {at_least}"
    );
    assert_eq!(
        engine.len(KV) as usize,
        groups[..k].iter().map(Vec::len).sum::<usize>(),
        "{what}"
    );
    // The engine keeps working on the recovered image, and a second recovery agrees.
    engine.put(KV, b"after-recovery", b"1", 0).unwrap();
    drop(engine);
    let engine = Engine::open(quiet_config(dir).segment_bytes(1 << 20)).unwrap();
    assert_eq!(
        engine.get(KV, b"after-recovery").unwrap().unwrap().value,
        b"1",
        "{what}"
    );
    for group in &groups[..k] {
        for &i in group {
            assert!(
                engine.get(KV, &key(i)).unwrap().is_some(),
                "{what}: key {i} lost on second open"
            );
        }
    }
    k
}

fn torn_tail_at_every_byte(batch_last: bool) {
    let original = tempfile::tempdir().unwrap();
    let groups = write_keys(original.path(), 20, batch_last);
    let segment = segment_files(original.path()).pop().unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    let (start, end) = *record_ranges(&bytes).last().unwrap();
    for cut in start..end {
        for garbage in [false, true] {
            let image = tempfile::tempdir().unwrap();
            copy_dir(original.path(), image.path());
            let mut torn = bytes.clone();
            for (offset, byte) in torn[cut..end].iter_mut().enumerate() {
                *byte = if garbage {
                    (offset as u8).wrapping_mul(31).wrapping_add(7)
                } else {
                    0
                };
            }
            std::fs::write(image.path().join(segment.file_name().unwrap()), &torn).unwrap();
            let what = format!("cut at byte {cut} of record [{start}, {end}), garbage={garbage}");
            let kept = assert_prefix(image.path(), &groups, groups.len() - 1, &what);
            assert_eq!(kept, groups.len() - 1, "{what}: the torn record survived");
        }
    }
}

#[test]
fn torn_last_record_at_every_byte_offset_gives_the_prefix() {
    torn_tail_at_every_byte(false);
}

#[test]
fn torn_last_batch_at_every_byte_offset_is_all_or_nothing() {
    torn_tail_at_every_byte(true);
}

#[test]
fn random_cuts_followed_by_random_garbage_give_a_prefix() {
    let seed = std::env::var("FLIN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234u64);
    let rounds: usize = std::env::var("FLIN_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    eprintln!("seed {seed} (FLIN_SEED), rounds {rounds} (FLIN_CRASH_ROUNDS)");
    let mut rng = Rng(seed);
    let original = tempfile::tempdir().unwrap();
    let groups = write_keys(original.path(), 60, true);
    let segment = segment_files(original.path()).pop().unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    let ranges = record_ranges(&bytes);
    let written_end = ranges.last().unwrap().1;
    for round in 0..rounds {
        let cut =
            format_header_end() + rng.below((written_end - format_header_end()) as u64) as usize;
        let garbage_len = 1 + rng.below(600) as usize;
        let mut torn = bytes.clone();
        for byte in torn[cut..(cut + garbage_len).min(bytes.len())].iter_mut() {
            *byte = rng.next() as u8;
        }
        let image = tempfile::tempdir().unwrap();
        copy_dir(original.path(), image.path());
        std::fs::write(image.path().join(segment.file_name().unwrap()), &torn).unwrap();
        let whole_before_cut = ranges.iter().take_while(|(_, end)| *end <= cut).count();
        let what = format!("seed {seed} round {round}: garbage [{cut}, +{garbage_len})");
        assert_prefix(image.path(), &groups, whole_before_cut, &what);
    }
}

fn format_header_end() -> usize {
    flin_engine::format::SEGMENT_HEADER_BYTES
}

/// Builds a directory with overwrites, deletes and expiring keys across many segments; returns
/// the expected live state at `now`.
fn build_garbage(dir: &Path, clock: &Arc<ManualClock>) -> HashMap<Vec<u8>, Vec<u8>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let engine = open(small_config(dir, clock, &log));
    let mut model = HashMap::new();
    for round in 0..6u32 {
        for i in 0..40u32 {
            let k = format!("k{i}").into_bytes();
            match (i + round) % 5 {
                0 => {
                    engine.delete(KV, &k).unwrap();
                    model.remove(&k);
                }
                1 if round == 5 => {
                    // Expires before the compaction runs: must stay dead, even though older
                    // values of this key sit in other segments.
                    engine
                        .put(KV, &k, b"short", clock.now_ms_for_test() + 10)
                        .unwrap();
                    model.remove(&k);
                }
                _ => {
                    let v = format!("v{round}-{i}").into_bytes();
                    engine.put(KV, &k, &v, 0).unwrap();
                    model.insert(k, v);
                }
            }
        }
    }
    let mut batch = WriteBatch::new();
    batch
        .put(KV, b"batched-a", b"A", 0)
        .put(KV, b"batched-b", b"B", 0)
        .delete(KV, b"k3");
    engine.write(&batch).unwrap();
    model.insert(b"batched-a".to_vec(), b"A".to_vec());
    model.insert(b"batched-b".to_vec(), b"B".to_vec());
    model.remove(b"k3".as_slice());
    // Filler, so the records above sit in sealed segments that compaction may take.
    for i in 0..60u32 {
        let k = format!("filler{i}").into_bytes();
        engine.put(KV, &k, &[b'f'; 60], 0).unwrap();
        model.insert(k, vec![b'f'; 60]);
    }
    clock.advance(100);
    model
}

trait NowForTest {
    fn now_ms_for_test(&self) -> u64;
}

impl NowForTest for Arc<ManualClock> {
    fn now_ms_for_test(&self) -> u64 {
        use flin_engine::Clock;
        self.now_ms()
    }
}

fn assert_model(engine: &Engine, model: &HashMap<Vec<u8>, Vec<u8>>, what: &str) {
    for i in 0..40u32 {
        let k = format!("k{i}").into_bytes();
        let got = engine.get(KV, &k).unwrap().map(|v| v.value);
        assert_eq!(got.as_ref(), model.get(&k), "{what}: key k{i}");
    }
    for (k, v) in model {
        assert_eq!(
            engine.get(KV, k).unwrap().map(|v| v.value).as_ref(),
            Some(v),
            "{what}"
        );
    }
    assert_eq!(engine.len(KV) as usize, model.len(), "{what}: key count");
}

#[test]
fn compaction_stopped_after_each_step_reopens_with_every_live_key() {
    for step in CompactionStep::ALL {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let model = build_garbage(dir.path(), &clock);
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let mut config = small_config(dir.path(), &clock, &log);
            config.compaction_fail_point = Some(Arc::new(move |at| at == step));
            let engine = open(config);
            assert_model(&engine, &model, "before compaction");
            let err = engine.compact(0.0).unwrap_err();
            assert!(err.to_string().contains("test hook"), "{err}");
            // Dropped here as if the process died: nothing else runs.
        }
        let engine = open(small_config(dir.path(), &clock, &log));
        let what = format!("reopened after a stop at {step:?}");
        assert_model(&engine, &model, &what);
        let manifest_pending = step != CompactionStep::OutputsWritten;
        assert_eq!(
            engine.recovery_report().finished_compaction,
            manifest_pending,
            "{what}"
        );
        assert!(
            !dir.path().join("MERGE").exists(),
            "{what}: manifest left behind"
        );
        let stray: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(stray.is_empty(), "{what}: stray files {stray:?}");
        // A full compaction afterwards, then another reopen, still agree with the model.
        engine.compact(0.0).unwrap();
        assert_model(&engine, &model, &format!("{what}, compacted again"));
        drop(engine);
        let engine = open(small_config(dir.path(), &clock, &log));
        assert_model(
            &engine,
            &model,
            &format!("{what}, compacted again and reopened"),
        );
    }
}

#[test]
fn compaction_then_reopen_keeps_every_live_key_and_no_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let model = build_garbage(dir.path(), &clock);
    let log = Arc::new(Mutex::new(Vec::new()));
    let engine = open(small_config(dir.path(), &clock, &log));
    let before = engine.stats();
    let report = engine.compact(0.0).unwrap();
    assert!(
        report.bytes_reclaimed > 0 && report.segments_in > 1,
        "{report:?}"
    );
    assert!(report.expired_dropped > 0, "{report:?}");
    let after = engine.stats();
    assert!(after.log_bytes < before.log_bytes);
    assert_model(&engine, &model, "after compaction");
    drop(engine);
    let engine = open(small_config(dir.path(), &clock, &log));
    assert_model(&engine, &model, "after compaction and reopen");
    assert!(
        engine.recovery_report().segments_from_hints > 0,
        "compaction outputs have hint files"
    );
}

/// An expired record in a merged segment must keep shadowing an older value of its key in a
/// segment the merge leaves alone (the bug the crash tests found first).
#[test]
fn expired_record_keeps_shadowing_an_older_value_outside_a_partial_merge() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let log = Arc::new(Mutex::new(Vec::new()));
    let engine = open(small_config(dir.path(), &clock, &log));
    engine.put(KV, b"victim", b"old value", 0).unwrap();
    // Segment A: live filler up to its end, so its garbage ratio stays low; the filler that
    // did not fit starts segment B.
    let segments = engine.stats().segments;
    let mut i = 0u32;
    while engine.stats().segments == segments {
        engine
            .put(KV, format!("a{i}").as_bytes(), &[b'a'; 60], 0)
            .unwrap();
        i += 1;
    }
    engine.put(KV, b"victim", b"new value", 1_000_010).unwrap();
    // Segment B: one key overwritten again and again, so it is mostly garbage.
    for i in 0..120u32 {
        engine
            .put(KV, b"churn", &i.to_le_bytes().repeat(15), 0)
            .unwrap();
    }
    // Seal B.
    for i in 0..60u32 {
        engine
            .put(KV, format!("c{i}").as_bytes(), &[b'c'; 60], 0)
            .unwrap();
    }
    clock.advance(100);
    assert!(engine.get(KV, b"victim").unwrap().is_none());
    assert_eq!(engine.reclaim_expired(), 1);
    let report = engine.compact(0.5).unwrap();
    assert!(report.segments_in >= 1, "{report:?}");
    assert!(
        report.tombstones_kept >= 1,
        "the expired record must become a tombstone: {report:?}"
    );
    drop(engine);
    let engine = open(small_config(dir.path(), &clock, &log));
    assert_eq!(
        engine.get(KV, b"victim").unwrap(),
        None,
        "older value came back"
    );
    engine.compact(0.0).unwrap();
    drop(engine);
    let engine = open(small_config(dir.path(), &clock, &log));
    assert_eq!(
        engine.get(KV, b"victim").unwrap(),
        None,
        "older value came back after a full merge"
    );
}

/// Writes `n` distinct keys into small segments; returns their groups (one key each) and the
/// log segment files, oldest first.
fn write_across_segments(dir: &Path, n: usize) -> (Vec<Vec<usize>>, Vec<std::path::PathBuf>) {
    let engine = open(quiet_config(dir));
    for i in 0..n {
        engine.put(KV, &key(i), &val(i), 0).unwrap();
    }
    drop(engine);
    ((0..n).map(|i| vec![i]).collect(), segment_files(dir))
}

/// The key index of every record of a segment file, in file order.
fn keys_in(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    record_ranges(&bytes)
        .iter()
        .map(|&(start, _)| {
            let record = flin_engine::format::decode_record(&bytes[start..], 0, true).unwrap();
            std::str::from_utf8(&record.key[4..])
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_previous_segment_still_waiting_for_its_seal_opens_and_gets_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (groups, files) = write_across_segments(dir.path(), 250);
    assert!(files.len() >= 3);
    // A crash before the sealer ran: the segment keeps its preallocated zero tail.
    let previous = &files[files.len() - 2];
    let sealed_len = std::fs::metadata(previous).unwrap().len();
    // Back to a preallocated length: capacities are multiples of 4096 bytes.
    let capacity = (sealed_len + 1).next_multiple_of(4096);
    std::fs::OpenOptions::new()
        .write(true)
        .open(previous)
        .unwrap()
        .set_len(capacity)
        .unwrap();
    assert_prefix(
        dir.path(),
        &groups,
        groups.len(),
        "unsealed previous segment",
    );
    assert_eq!(
        std::fs::metadata(previous).unwrap().len(),
        sealed_len,
        "seal finished at recovery"
    );
}

#[test]
fn a_torn_previous_segment_is_cut_and_the_newer_records_go_with_it() {
    let original = tempfile::tempdir().unwrap();
    let (groups, files) = write_across_segments(original.path(), 250);
    let previous = files[files.len() - 2].file_name().unwrap().to_owned();
    let bytes = std::fs::read(&files[files.len() - 2]).unwrap();
    let (start, end) = *record_ranges(&bytes).last().unwrap();
    let torn_key = *keys_in(&files[files.len() - 2]).last().unwrap();
    for cut in [start + 1, start + 31, (start + end) / 2, end - 1] {
        let image = tempfile::tempdir().unwrap();
        copy_dir(original.path(), image.path());
        let mut torn = bytes.clone();
        torn[cut..end].fill(0);
        // Back to its preallocated length, as before its seal.
        torn.resize((bytes.len() + 1).next_multiple_of(4096), 0);
        std::fs::write(image.path().join(&previous), &torn).unwrap();
        let what =
            format!("previous segment torn at byte {cut} of its last record [{start}, {end})");
        let kept = assert_prefix(image.path(), &groups, torn_key, &what);
        assert_eq!(
            kept, torn_key,
            "{what}: exactly the records before the torn one survive"
        );
    }
}
