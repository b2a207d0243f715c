use flin_engine::{Config, Durability, Engine, Namespace};

#[test]
fn put_get_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || {
        Config::directory(dir.path())
            .durability(Durability::Always)
            .segment_bytes(4096)
            .background_compaction(false)
    };
    {
        let engine = Engine::open(cfg()).unwrap();
        for i in 0..200u32 {
            engine
                .put(
                    Namespace::Kv,
                    format!("key{i}").as_bytes(),
                    format!("value{i}").as_bytes(),
                    0,
                )
                .unwrap();
        }
        assert!(engine.delete(Namespace::Kv, b"key7").unwrap());
        assert_eq!(
            engine.get(Namespace::Kv, b"key5").unwrap().unwrap().value,
            b"value5"
        );
        let report = engine.compact(0.0).unwrap();
        eprintln!("{report:?}");
    }
    let engine = Engine::open(cfg()).unwrap();
    eprintln!("{:?}", engine.recovery_report());
    assert_eq!(
        engine.get(Namespace::Kv, b"key5").unwrap().unwrap().value,
        b"value5"
    );
    assert_eq!(engine.get(Namespace::Kv, b"key7").unwrap(), None);
    assert_eq!(engine.len(Namespace::Kv), 199);
}
