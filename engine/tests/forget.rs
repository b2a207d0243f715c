//! `Engine::forget`: keys leave the index without a record; compaction reclaims their records;
//! a restart indexes them again (the model that forgot them forgets them again).

use flin_engine::{Config, Engine, Namespace};

fn open(dir: &std::path::Path) -> Engine {
    Engine::open(
        Config::directory(dir)
            .segment_bytes(64 * 1024)
            .background_compaction(false),
    )
    .unwrap()
}

#[test]
fn forgotten_keys_leave_the_index_and_their_records_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let value = vec![7u8; 500];
    let keys: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    for key in &keys {
        engine.put(Namespace::Queue, key, &value, 0).unwrap();
    }
    engine
        .put(Namespace::Kv, &keys[0], b"other namespace", 0)
        .unwrap();
    let log_before = engine.stats().log_bytes;
    let forgotten = engine.forget(Namespace::Queue, &keys[..900]).unwrap();
    assert_eq!(forgotten, 900);
    assert_eq!(
        engine.forget(Namespace::Queue, &keys[..1]).unwrap(),
        0,
        "already gone"
    );
    assert_eq!(engine.len(Namespace::Queue), 100);
    assert_eq!(engine.get(Namespace::Queue, &keys[0]).unwrap(), None);
    assert!(engine.get(Namespace::Queue, &keys[950]).unwrap().is_some());
    assert!(
        engine.get(Namespace::Kv, &keys[0]).unwrap().is_some(),
        "the same key in another namespace is untouched"
    );
    // Nothing was written, and compaction finds the forgotten records dead.
    assert_eq!(engine.stats().log_bytes, log_before);
    let report = engine.compact(0.5).unwrap();
    assert!(report.bytes_reclaimed > 400 * 1000, "{report:?}");
    assert!(engine.get(Namespace::Queue, &keys[999]).unwrap().is_some());
    // A forgotten record compaction has not reached yet comes back at open: the model that
    // forgot it must forget it again.
    let survivors: usize = keys[..900]
        .iter()
        .filter(|k| engine.get(Namespace::Queue, k).unwrap().is_some())
        .count();
    assert_eq!(survivors, 0);
    drop(engine);
    let engine = open(dir.path());
    let back = keys[..900]
        .iter()
        .filter(|k| engine.get(Namespace::Queue, k).unwrap().is_some())
        .count();
    assert!(
        back < 900,
        "compaction dropped most of them for good ({back} back)"
    );
    assert_eq!(engine.len(Namespace::Queue), 100 + back as u64);
}
