//! `Engine::read_appends`: a namespace's log-only records under a prefix, from a seq, in seq
//! order, across segments, batches, compaction, range markers and a restart.

use flin_engine::{Config, Engine, Namespace, WriteBatch};

fn open(dir: &std::path::Path) -> Engine {
    Engine::open(
        Config::directory(dir)
            .segment_bytes(64 * 1024)
            .background_compaction(false),
    )
    .unwrap()
}

fn key(prefix: u8, n: u32) -> Vec<u8> {
    let mut key = vec![b'r', prefix];
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// (seq, key) of every record `read_appends` visits from `from`.
fn read(engine: &Engine, prefix: &[u8], from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut seen = Vec::new();
    engine
        .read_appends(Namespace::Stream, prefix, from, |seq, key, value| {
            assert_eq!(
                value,
                &key[key.len() - 4..].repeat(50)[..],
                "value of {key:?}"
            );
            seen.push((seq, key.to_vec()));
            true
        })
        .unwrap();
    seen
}

/// Writes 3000 appends alternating between prefixes `a` and `b` (every tenth write a batch of
/// both, every seventh a key-value put in between), over many 64 KiB segments. Returns the
/// (seq, key) written under `a`.
fn fill(engine: &Engine) -> Vec<(u64, Vec<u8>)> {
    let mut written_a = Vec::new();
    for n in 0..3000u32 {
        let value = n.to_be_bytes().repeat(50);
        if n % 7 == 0 {
            engine
                .put(Namespace::Kv, &n.to_be_bytes(), b"kv", 0)
                .unwrap();
        }
        let prefix = if n % 2 == 0 { b'a' } else { b'b' };
        if n % 10 == 0 {
            let mut batch = WriteBatch::new();
            batch.append(Namespace::Stream, &key(prefix, n), &value);
            batch.put(Namespace::Kv, b"batch", b"member", 0);
            batch.append(Namespace::Queue, &key(prefix, n), b"other namespace");
            let seq = engine.write(&batch).unwrap();
            if prefix == b'a' {
                written_a.push((seq, key(prefix, n)));
            }
        } else {
            let mut batch = WriteBatch::new();
            batch.append(Namespace::Stream, &key(prefix, n), &value);
            let seq = engine.write(&batch).unwrap();
            if prefix == b'a' {
                written_a.push((seq, key(prefix, n)));
            }
        }
    }
    written_a
}

#[test]
fn reads_a_prefix_from_any_seq_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let written = fill(&engine);
    assert!(engine.stats().segments > 5, "the records span segments");
    for start in [0usize, 1, 17, 500, 1499] {
        let from = written[start].0;
        assert_eq!(read(&engine, b"ra", from), written[start..], "from {from}");
    }
    // A seq between two of the prefix's records starts at the next one.
    let between = written[100].0 + 1;
    assert_eq!(read(&engine, b"ra", between), written[101..]);
    assert!(read(&engine, b"ra", engine.last_seq() + 1).is_empty());
    // `false` stops the read.
    let mut visits = 0;
    engine
        .read_appends(Namespace::Stream, b"ra", 0, |_, _, _| {
            visits += 1;
            visits < 3
        })
        .unwrap();
    assert_eq!(visits, 3);
}

#[test]
fn reads_the_same_after_compaction_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let written = {
        let engine = open(dir.path());
        let written = fill(&engine);
        // Drop the first half of the b records and every key-value write: compaction rewrites
        // the segments, moving the a records.
        let mut batch = WriteBatch::new();
        batch.drop_range(Namespace::Stream, b"rb", &1500u32.to_be_bytes());
        engine.write(&batch).unwrap();
        for n in (0..3000u32).step_by(7) {
            engine.delete(Namespace::Kv, &n.to_be_bytes()).unwrap();
        }
        let report = engine.compact(0.0).unwrap();
        assert!(report.segments_in > 0, "{report:?}");
        for start in [0usize, 333, 1499] {
            assert_eq!(read(&engine, b"ra", written[start].0), written[start..]);
        }
        written
    };
    let engine = open(dir.path());
    for start in [0usize, 1, 750, 1499] {
        assert_eq!(read(&engine, b"ra", written[start].0), written[start..]);
    }
    let b_after: Vec<u32> = read(&engine, b"rb", 0)
        .iter()
        .map(|(_, k)| u32::from_be_bytes(k[2..].try_into().unwrap()))
        .collect();
    assert!(
        b_after.iter().all(|&n| n >= 1500),
        "compaction removed the dropped range"
    );
    assert_eq!(b_after.len(), 750);
}

/// Hint files list consecutive appends as runs: a hinted open must know every segment's seq
/// range, its appends' bytes and the log's last seq and term as a scanning open does, or reads
/// by seq go wrong.
#[test]
fn a_hinted_open_reads_the_same_as_a_scanning_one() {
    let dir = tempfile::tempdir().unwrap();
    let written = {
        let engine = open(dir.path());
        let written = fill(&engine);
        assert!(engine.write_missing_hints().unwrap() > 5);
        written
    };
    let hinted = open(dir.path());
    let report = hinted.recovery_report().clone();
    assert!(report.segments_from_hints > 5, "{report:?}");
    assert!(report.bad_hints.is_empty(), "{:?}", report.bad_hints);
    let hinted_stats = hinted.stats();
    for start in [0usize, 1, 600, 1499] {
        assert_eq!(read(&hinted, b"ra", written[start].0), written[start..]);
    }
    // Every entry is found by seq (a segment's seq range must start at its first run's
    // first record, not its last).
    for seq in 1..=hinted.last_seq() {
        let entry = hinted.entry(seq).unwrap();
        assert_eq!(
            entry.map(|e| e.seq),
            Some(seq),
            "entry {seq} after a hinted open"
        );
    }
    let last = hinted.last_seq();
    drop(hinted);
    // The same directory without its hint files: every segment scanned.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "hint") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let scanned = open(dir.path());
    assert_eq!(scanned.recovery_report().segments_from_hints, 0);
    assert_eq!(
        scanned.recovery_report().records_scanned,
        report.records_scanned
    );
    assert_eq!(scanned.last_seq(), last);
    let stats = scanned.stats();
    // Not dead_bytes: a scan counts each batch's outer header as dead, a hinted open (whose
    // file lists no batch headers) does not; that was so before runs (hint version 2) too.
    assert_eq!(
        (stats.keys, stats.log_bytes),
        (hinted_stats.keys, hinted_stats.log_bytes)
    );
    assert_eq!(read(&scanned, b"ra", 0), written);
}
