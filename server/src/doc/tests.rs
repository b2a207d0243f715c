//! The document commands through the real dispatcher (the first cut of issue 13).

use crate::cmd::test_support::Harness;
use crate::frame::Frame;

fn run(h: &mut Harness, args: &[&str]) -> Frame {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    h.run_args(&args)
}

fn texts(frame: Frame) -> Vec<serde_json::Value> {
    let Frame::Array(items) = frame else {
        panic!("{frame:?}")
    };
    items
        .into_iter()
        .map(|item| match item {
            Frame::Bulk(b) => serde_json::from_slice(&b).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn insert_find_update_delete_round_trip() {
    let mut h = Harness::new();
    let ids = texts(run(
        &mut h,
        &[
            "DOC.INSERT",
            "u",
            r#"{"_id":1,"n":"a","age":30}"#,
            r#"{"_id":2,"n":"b","age":20,"tags":["x"]}"#,
            r#"{"n":"c","age":40}"#,
        ],
    ));
    assert_eq!(ids[..2], [serde_json::json!(1), serde_json::json!(2)]);
    assert!(
        ids[2].as_str().is_some_and(|s| s.len() == 24),
        "a generated, time-ordered _id"
    );
    let found = texts(run(
        &mut h,
        &[
            "DOC.FIND",
            "u",
            r#"{"age":{"$gte":25}}"#,
            "SORT",
            "age",
            "-1",
            "PROJECT",
            r#"{"n":1,"_id":0}"#,
        ],
    ));
    assert_eq!(
        found,
        [serde_json::json!({"n": "c"}), serde_json::json!({"n": "a"})]
    );
    let page = texts(run(
        &mut h,
        &[
            "DOC.FIND", "u", "{}", "SORT", "age", "1", "SKIP", "1", "LIMIT", "1",
        ],
    ));
    assert_eq!(page[0]["n"], "a");
    assert_eq!(
        run(&mut h, &["DOC.COUNT", "u", r#"{"tags":"x"}"#]),
        Frame::Integer(1)
    );
    // A duplicate _id refuses the whole insert.
    let refused = run(
        &mut h,
        &["DOC.INSERT", "u", r#"{"_id":9}"#, r#"{"_id":1.0}"#],
    );
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("duplicate key")),
        "{refused:?}"
    );
    assert_eq!(
        run(&mut h, &["DOC.GET", "u", "9"]),
        Frame::Null,
        "nothing of a refused insert"
    );
    let updated = run(
        &mut h,
        &[
            "DOC.UPDATE",
            "u",
            r#"{"age":{"$lt":35}}"#,
            r#"{"$inc":{"age":1}}"#,
            "MULTI",
        ],
    );
    assert_eq!(
        updated,
        Frame::Array(vec![Frame::Integer(2), Frame::Integer(2), Frame::Null])
    );
    let Frame::Bulk(one) = run(&mut h, &["DOC.GET", "u", "2"]) else {
        panic!()
    };
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&one).unwrap()["age"],
        21
    );
    let upsert = run(
        &mut h,
        &[
            "DOC.UPDATE",
            "u",
            r#"{"n":"z"}"#,
            r#"{"$set":{"age":1}}"#,
            "UPSERT",
        ],
    );
    let Frame::Array(parts) = upsert else {
        panic!()
    };
    assert_eq!(parts[..2], [Frame::Integer(0), Frame::Integer(0)]);
    assert_eq!(
        run(&mut h, &["DOC.COUNT", "u", r#"{"n":"z","age":1}"#]),
        Frame::Integer(1),
        "upsert seeds the filter's equalities"
    );
    let id_change = run(
        &mut h,
        &["DOC.UPDATE", "u", r#"{"_id":1}"#, r#"{"$set":{"_id":5}}"#],
    );
    assert!(matches!(&id_change, Frame::Error(e) if e.contains("_id")));
    assert!(matches!(
        run(&mut h, &["DOC.REPLACE", "u", r#"{"_id":1}"#, r#"{"m":1}"#]),
        Frame::Array(_)
    ));
    let Frame::Bulk(replaced) = run(&mut h, &["DOC.GET", "u", "1"]) else {
        panic!()
    };
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&replaced).unwrap(),
        serde_json::json!({"_id": 1, "m": 1})
    );
    assert_eq!(
        run(&mut h, &["DOC.DELETE", "u", "{}"]),
        Frame::Integer(1),
        "without MULTI, one"
    );
    assert_eq!(
        run(&mut h, &["DOC.DELETE", "u", "{}", "MULTI"]),
        Frame::Integer(3)
    );
    assert_eq!(
        run(&mut h, &["DOC.COLLECTIONS"]),
        Frame::Array(vec![Frame::bulk("u")])
    );
    assert_eq!(run(&mut h, &["DOC.DROP", "u"]), Frame::Integer(1));
    assert_eq!(run(&mut h, &["DOC.COLLECTIONS"]), Frame::Array(vec![]));
}

#[test]
fn bad_input_names_what_and_where() {
    let mut h = Harness::new();
    let bad = run(&mut h, &["DOC.INSERT", "u", "{\n  \"a\": }"]);
    assert_eq!(
        bad,
        Frame::error(
            "ERR DOC.INSERT: document 1 is not valid JSON: expected value at line 2 column 8"
        )
    );
    let bad = run(&mut h, &["DOC.FIND", "u", r#"{"a":{"$in":3}}"#]);
    assert_eq!(
        bad,
        Frame::error("ERR DOC.FIND: filter: $in needs an array (at 'a')")
    );
    let bad = run(&mut h, &["DOC.INSERT", "u", "[1]"]);
    assert_eq!(
        bad,
        Frame::error("ERR DOC.INSERT: document 1 is not a JSON object")
    );
    let bad = run(&mut h, &["DOC.UPDATE", "u", "{}", r#"{"a":1}"#]);
    assert!(matches!(&bad, Frame::Error(e) if e.contains("DOC.REPLACE")));
    assert!(matches!(run(&mut h, &["MULTI"]), Frame::Simple(_)));
    let queued = run(&mut h, &["DOC.INSERT", "u", "{}"]);
    assert_eq!(
        queued,
        Frame::error("ERR DOC.INSERT is not allowed inside MULTI")
    );
}
