//! Fault injection through the simulated disk (`flin_engine::sim`): failing fsyncs (group
//! commit, sealing, the directory), a full disk (segment creation, compaction, open), bit flips
//! in sealed segments, damaged hint files and missing segments. Each must end in a clear error
//! naming the file (and, for damaged bytes, the offset) or in correct data: never in wrong
//! data. A failed fsync poisons the engine (writes refused, reads served, the flush never
//! retried); a full disk fails writes until there is room again. After each fault, power-loss
//! images keep every acknowledged write.
//!
//! Byte-level tears of a tail and compaction stopped at each step are in `crash.rs`; corruption
//! found on read and damaged hint files on the real filesystem are in `behaviour.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flin_engine::sim::{SimDisk, SyncKind};
use flin_engine::{Config, Durability, Engine, Error, ManualClock, Namespace};

const KV: Namespace = Namespace::Kv;
/// Keys in `sealed_segments`: enough for a few segments, half of them with hint files.
const KEYS: u32 = 240;

fn dir() -> PathBuf {
    PathBuf::from("/sim/faults")
}

fn segment(id: u64) -> PathBuf {
    dir().join(format!("{id:020}.seg"))
}

fn config(disk: &SimDisk, durability: Durability) -> Config {
    let mut config = Config::simulated(disk, dir())
        .durability(durability)
        .segment_bytes(4096)
        .background_compaction(false)
        .clock(Arc::new(ManualClock::new(1_000_000)))
        .logger(Arc::new(|_, _: &str| {}));
    // Sealing on the writer's thread keeps every test's file operations in one order.
    config.background_sealing = false;
    config
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i}-{}", "v".repeat(i as usize % 90)).into_bytes()
}

fn get(engine: &Engine, i: u32) -> Option<Vec<u8>> {
    engine.get(KV, &key(i)).unwrap().map(|v| v.value)
}

/// Opens power-loss images of `disk` (seeds 0..16) and checks that each holds `acknowledged`.
fn assert_images_keep(disk: &SimDisk, acknowledged: &[u32], durability: Durability) {
    for seed in 0..16 {
        let image = disk.after_power_loss(seed);
        let engine = Engine::open(config(&image, durability))
            .unwrap_or_else(|e| panic!("image seed {seed}: open failed: {e}"));
        for &i in acknowledged {
            assert_eq!(
                get(&engine, i),
                Some(value(i)),
                "image seed {seed}: acknowledged key {i}"
            );
        }
        // The recovered engine takes writes again.
        engine.put(KV, b"after", b"1", 0).unwrap();
    }
}

#[test]
fn a_failed_group_commit_flush_poisons_the_engine_and_is_never_retried() {
    let disk = SimDisk::new();
    let engine = Engine::open(config(&disk, Durability::Always)).unwrap();
    for i in 0..5 {
        engine.put(KV, &key(i), &value(i), 0).unwrap();
    }
    let active = segment(1);
    disk.fail_next_sync(Some(SyncKind::Flush), "");
    let err = engine.put(KV, &key(5), &value(5), 0).unwrap_err();
    let flushes_after_failure = disk.syncs_of(&active);
    match &err {
        Error::Poisoned { reason } => assert!(
            reason.contains(&active.display().to_string()) && reason.contains("os error 5"),
            "{reason}"
        ),
        other => panic!("expected Poisoned, got {other}"),
    }
    // Writes are refused for good, flushes too; reads go on.
    assert!(matches!(
        engine.put(KV, &key(6), &value(6), 0),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(engine.flush(), Err(Error::Poisoned { .. })));
    let mut txn = engine.begin();
    txn.put(KV, b"t", b"t", 0).unwrap();
    assert!(txn.commit().is_err());
    for i in 0..5 {
        assert_eq!(get(&engine, i), Some(value(i)));
    }
    drop(engine);
    // Retrying would have "succeeded" (the simulated disk, like Linux, forgets the failed
    // pages) and acknowledged data that is not on the platter.
    assert_eq!(
        disk.syncs_of(&active),
        flushes_after_failure,
        "a failed flush was retried"
    );
    assert_images_keep(&disk, &[0, 1, 2, 3, 4], Durability::Always);
}

/// The sealer thread used to retry a failed seal at once, forever if it kept failing (Engine's
/// drop then never returned), and, when the retry "succeeded", mark the segment durably sealed
/// although the first attempt's pages were gone.
#[test]
fn a_failed_seal_poisons_the_engine_and_is_never_retried() {
    let disk = SimDisk::new();
    let mut config = config(&disk, Durability::No);
    config.background_sealing = true;
    let engine = Engine::open(config).unwrap();
    let mut acknowledged = Vec::new();
    let mut i = 0;
    while i < 30 {
        engine.put(KV, &key(i), &value(i), 0).unwrap();
        if i % 10 == 9 {
            engine.flush().unwrap();
            acknowledged.extend(i - 9..=i);
        }
        i += 1;
    }
    // Segment 1 is nearly full: its seal's fsync (after the cut) will fail.
    let syncs_before_seal = disk.syncs_of(&segment(1));
    disk.fail_next_sync(Some(SyncKind::File), "00000000000000000001.seg");
    while disk.files(&dir()).len() < 2 {
        engine.put(KV, &key(i), &value(i), 0).unwrap();
        i += 1;
    }
    // The sealer fails on its own thread; wait for it to say so.
    while engine.poisoned().is_none() {
        std::thread::yield_now();
    }
    let reason = engine.poisoned().unwrap();
    assert!(
        reason.contains("fsync segment") && reason.contains("00000000000000000001.seg"),
        "{reason}"
    );
    assert!(matches!(
        engine.put(KV, b"x", b"y", 0),
        Err(Error::Poisoned { .. })
    ));
    for &k in &acknowledged {
        assert_eq!(get(&engine, k), Some(value(k)));
    }
    drop(engine);
    // The seal's msync and its failed fsync, once each.
    assert_eq!(
        disk.syncs_of(&segment(1)),
        syncs_before_seal + 2,
        "{}",
        disk.trace()
    );
    assert_images_keep(&disk, &acknowledged, Durability::No);
    // Power on: a restart finishes the seal from what is there.
    let engine = Engine::open(config_after(&disk)).unwrap();
    for k in 0..i {
        assert_eq!(get(&engine, k), Some(value(k)), "key {k} after a restart");
    }
}

fn config_after(disk: &SimDisk) -> Config {
    config(disk, Durability::Always)
}

/// A new segment is renamed into place and then the directory is fsynced. If that fsync fails,
/// whether the segment's name is on disk is unknown: the engine used to carry on with another
/// segment, leaving an empty, unsealed one behind that a later open rejected as damaged.
#[test]
fn a_failed_directory_fsync_at_rotation_poisons_the_engine() {
    let disk = SimDisk::new();
    let engine = Engine::open(config(&disk, Durability::Always)).unwrap();
    disk.fail_next_sync(Some(SyncKind::Directory), "");
    let mut acknowledged = Vec::new();
    let mut failed = None;
    for i in 0..200 {
        match engine.put(KV, &key(i), &value(i), 0) {
            Ok(_) => acknowledged.push(i),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let err = failed.expect("a rotation happened");
    assert!(
        matches!(&err, Error::Io { action: "fsync directory", path, .. } if path == &dir()),
        "{err}"
    );
    assert!(engine.poisoned().unwrap().contains("fsync directory"));
    assert!(matches!(
        engine.put(KV, b"x", b"y", 0),
        Err(Error::Poisoned { .. })
    ));
    for &i in &acknowledged {
        assert_eq!(get(&engine, i), Some(value(i)));
    }
    drop(engine);
    assert_images_keep(&disk, &acknowledged, Durability::Always);
}

#[test]
fn a_full_disk_fails_writes_with_the_file_named_reads_go_on_and_writes_resume() {
    let disk = SimDisk::new();
    let engine = Engine::open(config(&disk, Durability::Always)).unwrap();
    disk.set_full(true);
    let mut acknowledged = Vec::new();
    let mut errors = Vec::new();
    for i in 0..100 {
        match engine.put(KV, &key(i), &value(i), 0) {
            Ok(_) => acknowledged.push(i),
            Err(e) => errors.push(e),
        }
    }
    assert!(!acknowledged.is_empty() && !errors.is_empty());
    for e in &errors {
        assert!(e.is_disk_full(), "{e}");
        assert!(
            matches!(e, Error::Io { path, .. } if path.to_string_lossy().ends_with(".seg.tmp")),
            "{e}"
        );
    }
    // Not poisoned: nothing of the refused writes reached the log.
    assert!(engine.poisoned().is_none());
    for &i in &acknowledged {
        assert_eq!(get(&engine, i), Some(value(i)));
    }
    let report = engine.compact(0.0);
    assert!(
        report.is_ok() || report.as_ref().unwrap_err().is_disk_full(),
        "{report:?}"
    );
    disk.set_full(false);
    for i in 100..120 {
        engine.put(KV, &key(i), &value(i), 0).unwrap();
        acknowledged.push(i);
    }
    drop(engine);
    assert_images_keep(&disk, &acknowledged, Durability::Always);
}

/// Builds a directory with overwritten keys over several sealed segments: compaction has work.
fn disk_with_garbage() -> (SimDisk, Vec<u32>) {
    let disk = SimDisk::new();
    let engine = Engine::open(config(&disk, Durability::Always)).unwrap();
    for _ in 0..3 {
        for i in 0..40 {
            engine.put(KV, &key(i), &value(i), 0).unwrap();
        }
    }
    drop(engine);
    (disk, (0..40).collect())
}

#[test]
fn a_full_disk_during_compaction_leaves_the_data_and_no_stray_files() {
    // The disk fills after each number of the compaction's operations in turn: at an output's
    // creation or preallocation, its hint file, the manifest, a rename.
    let (disk, keys) = disk_with_garbage();
    let operations_before = {
        let probe = disk.copy();
        let engine = Engine::open(config(&probe, Durability::Always)).unwrap();
        let before = probe.operations();
        engine.compact(0.0).unwrap();
        probe.operations() - before
    };
    assert!(operations_before > 5);
    for full_after in 0..operations_before {
        let image = disk.copy();
        let engine = Engine::open(config(&image, Durability::Always)).unwrap();
        image.set_full_after_operations(image.operations() + full_after);
        let result = engine.compact(0.0);
        let what = format!("disk full after {full_after} compaction operations");
        if let Err(e) = &result {
            assert!(e.is_disk_full(), "{what}: {e}");
        }
        for &i in &keys {
            assert_eq!(get(&engine, i), Some(value(i)), "{what}: key {i}");
        }
        image.set_full(false);
        drop(engine);
        let engine = Engine::open(config(&image, Durability::Always))
            .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
        for &i in &keys {
            assert_eq!(
                get(&engine, i),
                Some(value(i)),
                "{what}: key {i} after reopen"
            );
        }
        drop(engine);
        let stray: Vec<_> = image
            .files(&dir())
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(stray.is_empty(), "{what}: {stray:?}");
    }
}

#[test]
fn a_full_disk_at_open_is_a_clear_error() {
    let disk = SimDisk::new();
    disk.set_full(true);
    match Engine::open(config(&disk, Durability::Always)) {
        Err(e) => {
            assert!(e.is_disk_full(), "{e}");
            assert!(
                e.to_string().contains("00000000000000000001.seg.tmp"),
                "{e}"
            );
        }
        Ok(_) => panic!("opened on a full disk"),
    }
    disk.set_full(false);
    let engine = Engine::open(config(&disk, Durability::Always)).unwrap();
    engine.put(KV, b"k", b"v", 0).unwrap();
}

/// A clean directory of sealed segments, half of them with hint files (whose records are not
/// read at open, only on read).
fn sealed_segments() -> (SimDisk, Vec<PathBuf>) {
    let disk = SimDisk::new();
    let engine = Engine::open(config(&disk, Durability::Always)).unwrap();
    for i in 0..KEYS {
        engine.put(KV, &key(i), &value(i), 0).unwrap();
        if i == KEYS / 2 {
            engine.write_missing_hints().unwrap();
        }
    }
    drop(engine);
    let mut segments: Vec<_> = disk
        .files(&dir())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.pop(); // the tail, where damage reads as a torn write
    (disk, segments)
}

fn flip(disk: &SimDisk, path: &Path, byte: usize, bit: u8) {
    let mut bytes = disk.file(path).unwrap();
    bytes[byte] ^= 1 << bit;
    disk.replace_file(path, &bytes);
}

#[test]
fn bit_flips_in_sealed_segments_are_errors_naming_file_and_offset_never_wrong_data() {
    let (disk, segments) = sealed_segments();
    let mut rng = 0x5eed_f1ea_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut refused, mut reported_on_read, mut unharmed) = (0, 0, 0);
    for round in 0..400 {
        let image = disk.copy();
        let victim = &segments[next() as usize % segments.len()];
        let len = image.file(victim).unwrap().len();
        let byte = next() as usize % len;
        let bit = (next() % 8) as u8;
        flip(&image, victim, byte, bit);
        let what = format!(
            "round {round}: bit {bit} of byte {byte} of {}",
            victim.display()
        );
        let engine = match Engine::open(config(&image, Durability::Always)) {
            Err(Error::Corrupt { path, corruption }) => {
                assert_eq!(&path, victim, "{what}");
                // The record holding the byte, or the 32-byte segment header as a whole.
                let in_header = byte < 32 && corruption.offset < 32;
                assert!(
                    corruption.offset <= byte as u64 || in_header,
                    "{what}: {corruption:?}"
                );
                refused += 1;
                continue;
            }
            Err(other) => panic!("{what}: unexpected error {other}"),
            Ok(engine) => engine,
        };
        // Loaded from a hint file: every key reads back right, or fails naming the file.
        let mut reported = false;
        for i in 0..KEYS {
            match engine.get(KV, &key(i)) {
                Ok(Some(v)) => assert_eq!(v.value, value(i), "{what}: key {i}"),
                Ok(None) => panic!("{what}: key {i} silently missing"),
                Err(Error::Corrupt { path, corruption }) => {
                    assert_eq!(&path, victim, "{what}");
                    assert!(corruption.offset <= byte as u64, "{what}: {corruption:?}");
                    reported = true;
                }
                Err(other) => panic!("{what}: key {i}: {other}"),
            }
        }
        if reported {
            reported_on_read += 1;
        } else {
            unharmed += 1;
        }
    }
    eprintln!(
        "400 bit flips: {refused} refused at open, {reported_on_read} reported on read, \
         {unharmed} harmless (bytes no read covers)"
    );
    assert!(refused > 0 && reported_on_read > 0);
}

#[test]
fn damaged_hint_files_are_ignored_and_their_segment_scanned() {
    let (disk, _) = sealed_segments();
    let hint = disk
        .files(&dir())
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "hint"))
        .expect("a hint file");
    let good = disk.file(&hint).unwrap();
    let mut damaged: Vec<(String, Vec<u8>)> = (0..good.len())
        .step_by(3)
        .map(|cut| (format!("cut to {cut} bytes"), good[..cut].to_vec()))
        .collect();
    for byte in (0..good.len()).step_by(5) {
        let mut bytes = good.clone();
        bytes[byte] ^= 0x40;
        damaged.push((format!("byte {byte} flipped"), bytes));
    }
    for (what, bytes) in damaged {
        let image = disk.copy();
        image.replace_file(&hint, &bytes);
        let engine = Engine::open(config(&image, Durability::Always))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let report = engine.recovery_report();
        assert_eq!(report.bad_hints.len(), 1, "{what}: {report:?}");
        assert!(report.bad_hints[0].contains(&hint.display().to_string()));
        for i in 0..KEYS {
            assert_eq!(get(&engine, i), Some(value(i)), "{what}: key {i}");
        }
    }
}

#[test]
fn a_hint_file_without_its_segment_is_an_error_naming_the_missing_segment() {
    let (disk, segments) = sealed_segments();
    let hinted = segments
        .iter()
        .find(|s| disk.file(&s.with_extension("hint")).is_some())
        .expect("a segment with a hint file");
    assert!(disk.delete_file(hinted));
    match Engine::open(config(&disk, Durability::Always)) {
        Err(Error::Corrupt { path, corruption }) => {
            assert_eq!(&path, hinted);
            assert_eq!(corruption.offset, 0);
            assert!(
                corruption.reason.contains("missing"),
                "{}",
                corruption.reason
            );
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened with a segment missing"),
    }
}
