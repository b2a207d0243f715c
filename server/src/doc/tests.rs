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
    // A document that has its _id is stored as the text sent.
    run(
        &mut h,
        &["DOC.INSERT", "sent", r#"{ "_id" : 7, "a" : [1, 2.50] }"#],
    );
    assert_eq!(
        run(&mut h, &["DOC.GET", "sent", "7"]),
        Frame::bulk(r#"{ "_id" : 7, "a" : [1, 2.50] }"#)
    );
    assert_eq!(run(&mut h, &["DOC.DROP", "sent"]), Frame::Integer(1));
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
    let queued = run(&mut h, &["DOC.INDEX", "u", "a"]);
    assert_eq!(
        queued,
        Frame::error("ERR DOC.INDEX is not allowed inside MULTI")
    );
}

fn json_of(frame: Frame) -> serde_json::Value {
    match frame {
        Frame::Bulk(b) => serde_json::from_slice(&b).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn explain(h: &mut Harness, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["DOC.EXPLAIN"];
    all.extend_from_slice(args);
    json_of(run(h, &all))
}

/// 1,000 documents `{_id: i, k: i % 100, city: "c{i % 7}", tags: [...]}`, in batches.
fn load(h: &mut Harness, coll: &str, n: i64) {
    for start in (0..n).step_by(250) {
        let docs: Vec<String> = (start..(start + 250).min(n))
            .map(|i| {
                serde_json::json!({"_id": i, "k": i % 100, "city": format!("c{}", i % 7), "tags": [i % 3, i % 5]})
                    .to_string()
            })
            .collect();
        let mut args = vec!["DOC.INSERT", coll];
        args.extend(docs.iter().map(String::as_str));
        assert!(matches!(run(h, &args), Frame::Array(_)));
    }
}

#[test]
fn indexes_serve_equality_ranges_and_sorts_and_explain_shows_the_plan() {
    let mut h = Harness::new();
    load(&mut h, "p", 1000);
    let scan = explain(&mut h, &["p", r#"{"k":42}"#]);
    assert_eq!(scan["queryPlanner"]["winningPlan"]["stage"], "COLLSCAN");
    assert_eq!(scan["executionStats"]["totalDocsExamined"], 1000);
    assert_eq!(run(&mut h, &["DOC.INDEX", "p", "k"]), Frame::bulk("k_1"));
    let eq = explain(&mut h, &["p", r#"{"k":42}"#]);
    assert_eq!(eq["queryPlanner"]["winningPlan"]["stage"], "IXSCAN", "{eq}");
    assert_eq!(eq["queryPlanner"]["winningPlan"]["index"], "k_1");
    assert_eq!(eq["queryPlanner"]["rejectedPlans"][0]["stage"], "COLLSCAN");
    assert_eq!(eq["executionStats"]["totalKeysExamined"], 10);
    assert_eq!(eq["executionStats"]["nReturned"], 10);
    // Range, sort by the index, limit: stops after the limit.
    let args = [
        "p",
        r#"{"k":{"$gte":10,"$lt":20}}"#,
        "SORT",
        "k",
        "-1",
        "LIMIT",
        "5",
    ];
    let ranged = explain(&mut h, &args);
    let plan = &ranged["queryPlanner"]["winningPlan"];
    assert_eq!(plan["sortedByIndex"], true, "{ranged}");
    assert_eq!(plan["direction"], "backward");
    assert!(
        ranged["executionStats"]["totalKeysExamined"]
            .as_u64()
            .unwrap()
            <= 64
    );
    let mut find = vec!["DOC.FIND"];
    find.extend_from_slice(&args);
    let found = texts(run(&mut h, &find));
    assert_eq!(found.len(), 5);
    assert!(found.iter().all(|d| d["k"] == 19), "{found:?}");
    // $in, a compound index and its prefix, and a multikey index.
    assert_eq!(
        run(&mut h, &["DOC.INDEX", "p", "city", "k:-1"]),
        Frame::bulk("city_1_k_-1")
    );
    let compound = explain(&mut h, &["p", r#"{"city":"c3","k":{"$in":[3,10,17]}}"#]);
    assert_eq!(
        compound["queryPlanner"]["winningPlan"]["index"], "city_1_k_-1",
        "{compound}"
    );
    let expected = (0..1000)
        .filter(|i| i % 7 == 3 && [3, 10, 17].contains(&(i % 100)))
        .count();
    assert_eq!(compound["executionStats"]["nReturned"], expected);
    assert_eq!(
        run(&mut h, &["DOC.INDEX", "p", "tags"]),
        Frame::bulk("tags_1")
    );
    let multikey = explain(&mut h, &["p", r#"{"tags":4}"#]);
    assert_eq!(multikey["queryPlanner"]["winningPlan"]["index"], "tags_1");
    assert_eq!(multikey["executionStats"]["nReturned"], 200);
    let listed = texts(run(&mut h, &["DOC.INDEXES", "p"]));
    let names: Vec<&str> = listed.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["_id_", "k_1", "city_1_k_-1", "tags_1"]);
    assert_eq!(
        run(&mut h, &["DOC.DROPINDEX", "p", "k_1"]),
        Frame::Integer(1)
    );
    assert_eq!(
        run(&mut h, &["DOC.DROPINDEX", "p", "k_1"]),
        Frame::Integer(0)
    );
    let after = explain(&mut h, &["p", r#"{"k":42}"#]);
    assert_eq!(after["queryPlanner"]["winningPlan"]["stage"], "COLLSCAN");
}

#[test]
fn unique_indexes_refuse_duplicates_and_write_nothing() {
    let mut h = Harness::new();
    run(
        &mut h,
        &[
            "DOC.INSERT",
            "u",
            r#"{"_id":1,"email":"a@x"}"#,
            r#"{"_id":2,"email":"b@x"}"#,
        ],
    );
    assert_eq!(
        run(&mut h, &["DOC.INDEX", "u", "email", "UNIQUE"]),
        Frame::bulk("email_1")
    );
    let refused = run(
        &mut h,
        &[
            "DOC.INSERT",
            "u",
            r#"{"_id":3,"email":"c@x"}"#,
            r#"{"_id":4,"email":"a@x"}"#,
        ],
    );
    assert_eq!(
        refused,
        Frame::error(
            r#"ERR DOC.INSERT: duplicate key: index 'email_1' already holds {"email":"a@x"} (document _id 1)"#
        )
    );
    assert_eq!(
        run(&mut h, &["DOC.GET", "u", "3"]),
        Frame::Null,
        "all or nothing"
    );
    assert_eq!(run(&mut h, &["DOC.COUNT", "u", "{}"]), Frame::Integer(2));
    // Two documents of one insert with the same key.
    let refused = run(
        &mut h,
        &[
            "DOC.INSERT",
            "u",
            r#"{"_id":5,"email":"d@x"}"#,
            r#"{"_id":6,"email":"d@x"}"#,
        ],
    );
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("email_1")),
        "{refused:?}"
    );
    // An update onto a taken key; a swap through the same key in one MULTI update is fine.
    let refused = run(
        &mut h,
        &[
            "DOC.UPDATE",
            "u",
            r#"{"_id":2}"#,
            r#"{"$set":{"email":"a@x"}}"#,
        ],
    );
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("duplicate key")),
        "{refused:?}"
    );
    assert_eq!(json_of(run(&mut h, &["DOC.GET", "u", "2"]))["email"], "b@x");
    run(
        &mut h,
        &[
            "DOC.UPDATE",
            "u",
            r#"{"_id":1}"#,
            r#"{"$set":{"email":"z@x"}}"#,
        ],
    );
    run(&mut h, &["DOC.INSERT", "u", r#"{"_id":7,"email":"a@x"}"#]);
    assert_eq!(
        texts(run(&mut h, &["DOC.FIND", "u", r#"{"email":"a@x"}"#]))[0]["_id"],
        7
    );
    // A unique index over existing duplicates is refused and leaves nothing behind.
    run(
        &mut h,
        &[
            "DOC.INSERT",
            "u",
            r#"{"_id":8,"n":1}"#,
            r#"{"_id":9,"n":1}"#,
        ],
    );
    let refused = run(&mut h, &["DOC.INDEX", "u", "n", "UNIQUE"]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("duplicate key: index 'n_1'")),
        "{refused:?}"
    );
    let names: Vec<serde_json::Value> = texts(run(&mut h, &["DOC.INDEXES", "u"]));
    assert_eq!(names.len(), 2, "{names:?}");
    // Sparse: documents without the field are not in the index (so not duplicates).
    assert_eq!(
        run(&mut h, &["DOC.INDEX", "u", "m", "UNIQUE", "SPARSE"]),
        Frame::bulk("m_1")
    );
    let both = run(
        &mut h,
        &[
            "DOC.INSERT",
            "u",
            r#"{"_id":10,"email":"e@x"}"#,
            r#"{"_id":11,"email":"f@x"}"#,
        ],
    );
    assert!(matches!(both, Frame::Array(_)), "{both:?}");
    // Not sparse: a missing field is null, and null is a key like any other (as MongoDB).
    let nulls = run(
        &mut h,
        &["DOC.INSERT", "u", r#"{"_id":12}"#, r#"{"_id":13}"#],
    );
    assert!(
        matches!(&nulls, Frame::Error(e) if e.contains(r#"{"email":null}"#)),
        "{nulls:?}"
    );
}

#[test]
fn find_and_modify_returns_the_old_or_new_document() {
    let mut h = Harness::new();
    run(
        &mut h,
        &[
            "DOC.INSERT",
            "j",
            r#"{"_id":1,"state":"ready","p":2}"#,
            r#"{"_id":2,"state":"ready","p":9}"#,
        ],
    );
    let claimed = run(
        &mut h,
        &[
            "DOC.FINDANDMODIFY",
            "j",
            r#"{"state":"ready"}"#,
            "SORT",
            "p",
            "-1",
            "UPDATE",
            r#"{"$set":{"state":"taken"}}"#,
            "NEW",
        ],
    );
    assert_eq!(
        json_of(claimed),
        serde_json::json!({"_id": 2, "state": "taken", "p": 9})
    );
    let old = run(
        &mut h,
        &[
            "DOC.FINDANDMODIFY",
            "j",
            r#"{"_id":1}"#,
            "UPDATE",
            r#"{"$inc":{"p":1}}"#,
        ],
    );
    assert_eq!(json_of(old)["p"], 2);
    let removed = run(
        &mut h,
        &["DOC.FINDANDMODIFY", "j", r#"{"_id":1}"#, "REMOVE"],
    );
    assert_eq!(json_of(removed)["p"], 3);
    assert_eq!(run(&mut h, &["DOC.COUNT", "j", "{}"]), Frame::Integer(1));
    assert_eq!(
        run(
            &mut h,
            &["DOC.FINDANDMODIFY", "j", r#"{"_id":1}"#, "REMOVE"]
        ),
        Frame::Null
    );
    let upserted = run(
        &mut h,
        &[
            "DOC.FINDANDMODIFY",
            "j",
            r#"{"_id":5}"#,
            "UPDATE",
            r#"{"$set":{"x":1}}"#,
            "UPSERT",
            "NEW",
        ],
    );
    assert_eq!(json_of(upserted), serde_json::json!({"_id": 5, "x": 1}));
    let bad = run(&mut h, &["DOC.FINDANDMODIFY", "j", "{}", "REMOVE", "NEW"]);
    assert!(matches!(bad, Frame::Error(_)));
}

#[test]
fn multi_exec_commits_documents_with_key_value_writes_as_one_batch() {
    let mut h = Harness::new();
    run(
        &mut h,
        &[
            "DOC.INSERT",
            "orders",
            r#"{"_id":1,"state":"new","total":5}"#,
        ],
    );
    run(&mut h, &["DOC.INDEX", "orders", "state"]);
    assert_eq!(run(&mut h, &["MULTI"]), Frame::ok());
    for cmd in [
        vec![
            "DOC.UPDATE",
            "orders",
            r#"{"_id":1}"#,
            r#"{"$set":{"state":"paid"}}"#,
        ],
        vec!["DOC.INSERT", "orders", r#"{"_id":2,"state":"new"}"#],
        // Reads inside EXEC see the writes queued before them, through the index too.
        vec!["DOC.COUNT", "orders", r#"{"state":"new"}"#],
        vec!["DOC.FIND", "orders", r#"{"state":"paid"}"#],
        vec!["DOC.INSERT", "orders", r#"{"_id":1}"#],
        vec!["SET", "outbox:1", "order 1 paid"],
    ] {
        assert_eq!(run(&mut h, &cmd), Frame::Simple("QUEUED".into()));
    }
    let Frame::Array(replies) = run(&mut h, &["EXEC"]) else {
        panic!()
    };
    assert_eq!(
        replies[0],
        Frame::Array(vec![Frame::Integer(1), Frame::Integer(1), Frame::Null])
    );
    assert_eq!(
        replies[2],
        Frame::Integer(1),
        "the new order, not the paid one"
    );
    assert_eq!(texts(replies[3].clone())[0]["_id"], 1);
    assert!(
        matches!(&replies[4], Frame::Error(e) if e.contains("duplicate key")),
        "{:?}",
        replies[4]
    );
    assert_eq!(replies[5], Frame::ok());
    assert_eq!(
        run(&mut h, &["DOC.COUNT", "orders", r#"{"state":"paid"}"#]),
        Frame::Integer(1)
    );
    assert_eq!(
        run(&mut h, &["DOC.COUNT", "orders", "{}"]),
        Frame::Integer(2)
    );
    assert_eq!(
        run(&mut h, &["GET", "outbox:1"]),
        Frame::bulk("order 1 paid")
    );
    // DOC.WATCH: another connection's change aborts the EXEC.
    assert_eq!(run(&mut h, &["DOC.WATCH", "orders", "1"]), Frame::ok());
    let mut other = crate::context::Session::new(2, "127.0.0.1:2".parse().unwrap(), true);
    let update: [&[u8]; 4] = [
        b"DOC.UPDATE",
        b"orders",
        br#"{"_id":1}"#,
        br#"{"$set":{"seen":true}}"#,
    ];
    crate::dispatch::execute(&h.shared, &mut other, &update);
    run(&mut h, &["MULTI"]);
    run(&mut h, &["SET", "outbox:2", "x"]);
    assert_eq!(run(&mut h, &["EXEC"]), Frame::NullArray);
    assert_eq!(run(&mut h, &["GET", "outbox:2"]), Frame::Null);
    // Unchanged (and a still-missing document): EXEC runs.
    run(&mut h, &["DOC.WATCH", "orders", "1", "99"]);
    run(&mut h, &["MULTI"]);
    run(&mut h, &["SET", "outbox:2", "x"]);
    assert_eq!(run(&mut h, &["EXEC"]), Frame::Array(vec![Frame::ok()]));
    // A watched document that appears aborts.
    run(&mut h, &["DOC.WATCH", "orders", "99"]);
    let insert: [&[u8]; 3] = [b"DOC.INSERT", b"orders", br#"{"_id":99}"#];
    crate::dispatch::execute(&h.shared, &mut other, &insert);
    run(&mut h, &["MULTI"]);
    run(&mut h, &["SET", "outbox:3", "x"]);
    assert_eq!(run(&mut h, &["EXEC"]), Frame::NullArray);
}

#[test]
fn documents_and_indexes_survive_a_restart_and_interrupted_work_is_finished() {
    use crate::config::Options;
    use crate::doc::keys;
    use flin_engine::Config;
    let dir = tempfile::tempdir().unwrap();
    let config = || Config::directory(dir.path());
    {
        let mut h = Harness::with_config(config(), Options::default());
        load(&mut h, "r", 600);
        run(&mut h, &["DOC.INDEX", "r", "k", "UNIQUE"]); // refused: k repeats
        run(&mut h, &["DOC.INDEX", "r", "city"]);
        run(&mut h, &["DOC.DELETE", "r", r#"{"city":"c0"}"#, "MULTI"]);
        run(
            &mut h,
            &[
                "DOC.UPDATE",
                "r",
                r#"{"_id":1}"#,
                r#"{"$set":{"city":"zz"}}"#,
            ],
        );
        run(&mut h, &["DOC.INSERT", "gone", "{}"]);
        // A crash in the middle of a drop and of a build: their marks, as written.
        let shared = &h.shared;
        shared.docs.drop_collection(&shared.store, b"gone").unwrap();
        let coll = shared.docs.indexes().read().by_name[&b"r"[..]];
        let spec = crate::doc::index::IndexSpec {
            name: "tags_1".into(),
            fields: vec![("tags".into(), false)],
            unique: false,
            sparse: false,
            ready: false,
            dropping: false,
        };
        crate::doc::collection::write(&shared.store, |txn| {
            txn.put(
                crate::doc::collection::NS,
                &keys::spec_key(coll, 7),
                &serde_json::to_vec(&spec.to_json()).unwrap(),
                0,
            )?;
            Ok(())
        })
        .unwrap();
    }
    let mut h = Harness::with_config(config(), Options::default());
    let count = |h: &mut Harness, f: &str| run(h, &["DOC.COUNT", "r", f]);
    assert_eq!(count(&mut h, "{}"), Frame::Integer(600 - 86));
    let by_city = explain(&mut h, &["r", r#"{"city":"zz"}"#]);
    assert_eq!(by_city["queryPlanner"]["winningPlan"]["index"], "city_1");
    assert_eq!(by_city["executionStats"]["nReturned"], 1);
    assert_eq!(count(&mut h, r#"{"city":"c0"}"#), Frame::Integer(0));
    assert_eq!(
        count(&mut h, r#"{"city":"c1"}"#),
        Frame::Integer(85),
        "86, less _id 1"
    );
    // The interrupted build was finished at open: the index is ready and exact.
    let by_tag = explain(&mut h, &["r", r#"{"tags":4}"#]);
    assert_eq!(
        by_tag["queryPlanner"]["winningPlan"]["index"], "tags_1",
        "{by_tag}"
    );
    let expected = (0..600)
        .filter(|i| i % 7 != 0 && (i % 3 == 4 || i % 5 == 4))
        .count();
    assert_eq!(by_tag["executionStats"]["nReturned"], expected);
    let names: Vec<serde_json::Value> = texts(run(&mut h, &["DOC.INDEXES", "r"]));
    assert_eq!(
        names.len(),
        3,
        "_id_, city_1, tags_1 (the refused unique one is gone): {names:?}"
    );
    // The dropped collection's records are gone.
    let mut left = 0;
    h.shared
        .store
        .reader()
        .for_each(crate::doc::collection::NS, &[keys::DROPPING], |_| left += 1)
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(
        run(&mut h, &["DOC.COLLECTIONS"]),
        Frame::Array(vec![Frame::bulk("r")])
    );
}

/// Random filters, sorts and updates against a naive evaluator (the filter and sort over a
/// plain list of documents), with no index and with each index set: identical results.
/// `FLIN_DOC_PROP_CASES` sets the rounds (default 40, of 40 queries and 8 updates each).
#[test]
fn queries_agree_with_a_naive_evaluator_with_and_without_indexes() {
    use serde_json::{json, Value};
    let rounds: u64 = std::env::var("FLIN_DOC_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut seed = 0x5EED_0D0C_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let index_sets: [&[&[&str]]; 4] = [
        &[],
        &[&["a"]],
        &[&["b", "a:-1"], &["c.d"]],
        &[&["a", "b"], &["b"], &["c.d:-1"]],
    ];
    for round in 0..rounds {
        let value = |next: &mut dyn FnMut(u64) -> u64| -> Value {
            match next(9) {
                0 => Value::Null,
                1 => json!(next(5) as f64 + 0.5),
                2 => json!(format!("s{}", next(4))),
                3 => json!([next(6), next(6)]),
                4 => json!(next(3) == 0),
                _ => json!(next(8)),
            }
        };
        let mut docs: Vec<Value> = Vec::new();
        for id in 0..60 {
            let mut doc = serde_json::Map::new();
            doc.insert("_id".into(), json!(id));
            if next(6) != 0 {
                doc.insert("a".into(), value(&mut next));
            }
            if next(5) != 0 {
                doc.insert("b".into(), value(&mut next));
            }
            if next(3) != 0 {
                doc.insert("c".into(), json!({"d": value(&mut next)}));
            }
            docs.push(Value::Object(doc));
        }
        let set = index_sets[(round % 4) as usize];
        let mut h = Harness::new();
        let texts_of: Vec<String> = docs.iter().map(Value::to_string).collect();
        let mut insert = vec!["DOC.INSERT", "t"];
        insert.extend(texts_of.iter().map(String::as_str));
        assert!(matches!(run(&mut h, &insert), Frame::Array(_)));
        for index in set {
            let mut args = vec!["DOC.INDEX", "t"];
            args.extend_from_slice(index);
            let reply = run(&mut h, &args);
            // Parallel arrays refuse a compound index over a and b: then there is none.
            assert!(
                matches!(&reply, Frame::Bulk(_))
                    || matches!(&reply, Frame::Error(e) if e.contains("parallel arrays")),
                "{reply:?}"
            );
        }
        for step in 0..48 {
            let condition = |next: &mut dyn FnMut(u64) -> u64| -> Value {
                let path = ["a", "b", "c.d"][next(3) as usize];
                let operand = value(next);
                let body = match next(8) {
                    0 => operand,
                    1 => json!({"$gt": operand}),
                    2 => json!({"$gte": operand, "$lt": value(next)}),
                    3 => json!({"$lte": operand}),
                    4 => json!({"$in": [operand, value(next)]}),
                    5 => json!({"$ne": operand}),
                    6 => json!({"$exists": next(2) == 0}),
                    _ => json!({"$lt": operand}),
                };
                json!({path: body})
            };
            let filter = match next(5) {
                0 => json!({}),
                1 => json!({"$and": [condition(&mut next), condition(&mut next)]}),
                2 => json!({"$or": [condition(&mut next), condition(&mut next)]}),
                _ => {
                    let mut merged = condition(&mut next);
                    if next(2) == 0 {
                        let more = condition(&mut next);
                        for (k, v) in more.as_object().unwrap() {
                            merged
                                .as_object_mut()
                                .unwrap()
                                .entry(k.clone())
                                .or_insert(v.clone());
                        }
                    }
                    merged
                }
            };
            let parsed = super::filter::Filter::parse(&filter).unwrap();
            if step % 6 == 5 {
                // An update, to both.
                let update = match next(3) {
                    0 => json!({"$set": {"a": value(&mut next)}}),
                    1 => json!({"$inc": {"c.d": 1}}),
                    _ => json!({"$unset": {"b": ""}}),
                };
                let parsed_update = super::update::Update::parse(&update).unwrap();
                let mut naive_ok = true;
                let mut naive = docs.clone();
                for doc in naive.iter_mut().filter(|d| parsed.matches(d)) {
                    if parsed_update.apply(doc, 0).is_err() {
                        naive_ok = false;
                    }
                }
                let reply = run(
                    &mut h,
                    &[
                        "DOC.UPDATE",
                        "t",
                        &filter.to_string(),
                        &update.to_string(),
                        "MULTI",
                    ],
                );
                match reply {
                    Frame::Array(_) => {
                        assert!(naive_ok, "{filter} {update}");
                        docs = naive;
                    }
                    // $inc on a non-number, or parallel arrays in a compound index: refused whole.
                    Frame::Error(_) => {}
                    other => panic!("{other:?}"),
                }
                continue;
            }
            let sort: Vec<(&str, bool)> = (0..next(3))
                .map(|_| (["a", "b", "c.d"][next(3) as usize], next(2) == 0))
                .collect();
            let limit = [0, 1, 3, 10][next(4) as usize];
            let mut args = vec!["DOC.FIND".to_string(), "t".into(), filter.to_string()];
            let mut options = super::collection::FindOptions::default();
            for (path, descending) in &sort {
                if options.sort.iter().any(|(p, _)| p == path) {
                    continue;
                }
                args.extend([
                    "SORT".into(),
                    path.to_string(),
                    if *descending { "-1" } else { "1" }.into(),
                ]);
                options.sort.push((path.to_string(), *descending));
            }
            if limit > 0 {
                args.extend(["LIMIT".into(), limit.to_string()]);
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let found = texts(run(&mut h, &refs));
            let mut expected: Vec<&Value> = docs.iter().filter(|d| parsed.matches(d)).collect();
            let key = |d: &Value| -> Vec<Value> {
                options
                    .sort
                    .iter()
                    .map(|(p, desc)| {
                        super::order::sort_key(super::collection::lookup_path(d, p), *desc)
                    })
                    .collect()
            };
            expected.sort_by(|x, y| {
                let (kx, ky) = (key(x), key(y));
                for (i, (_, desc)) in options.sort.iter().enumerate() {
                    let o = super::order::compare(&kx[i], &ky[i]);
                    let o = if *desc { o.reverse() } else { o };
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
            let context = format!("round {round} step {step}: {refs:?} indexes {set:?}");
            let want = if limit > 0 {
                expected.len().min(limit)
            } else {
                expected.len()
            };
            assert_eq!(found.len(), want, "{context}");
            // Ties may come in any order: the sort keys agree, and every document found is one
            // the naive evaluator selects.
            let found_keys: Vec<Vec<Value>> = found.iter().map(&key).collect();
            let want_keys: Vec<Vec<Value>> = expected.iter().take(want).map(|d| key(d)).collect();
            assert_eq!(found_keys, want_keys, "{context}");
            for doc in &found {
                assert!(
                    parsed.matches(doc) && docs.contains(doc),
                    "{context}: {doc}"
                );
            }
            if limit == 0 {
                let count = run(&mut h, &["DOC.COUNT", "t", &filter.to_string()]);
                assert_eq!(count, Frame::Integer(expected.len() as i64), "{context}");
            }
        }
    }
}

#[test]
fn publishes_inside_exec_get_consecutive_offsets_after_the_queued_ones() {
    let mut h = Harness::new();
    run(&mut h, &["STREAM.CREATE", "ev", "PARTITIONS", "2"]);
    run(
        &mut h,
        &["STREAM.PUBLISH", "ev", "PARTITION", "0", "before"],
    );
    run(&mut h, &["MULTI"]);
    run(&mut h, &["STREAM.PUBLISH", "ev", "PARTITION", "0", "a"]);
    run(&mut h, &["DOC.INSERT", "o", r#"{"_id":1}"#]);
    run(&mut h, &["STREAM.PUBLISH", "ev", "PARTITION", "0", "b"]);
    run(
        &mut h,
        &[
            "STREAM.MPUBLISH",
            "ev",
            "PARTITION",
            "0",
            "VALUES",
            "c",
            "d",
        ],
    );
    run(&mut h, &["STREAM.PUBLISH", "ev", "PARTITION", "1", "e"]);
    let Frame::Array(replies) = run(&mut h, &["EXEC"]) else {
        panic!()
    };
    let placed = |p: i64, o: i64| Frame::Array(vec![Frame::Integer(p), Frame::Integer(o)]);
    assert_eq!(replies[0], placed(0, 1));
    assert_eq!(replies[2], placed(0, 2));
    assert!(matches!(&replies[3], Frame::Array(_)), "{:?}", replies[3]);
    assert_eq!(replies[4], placed(1, 0));
    let Frame::Array(records) = run(&mut h, &["STREAM.FETCH", "ev", "0", "0", "COUNT", "10"])
    else {
        panic!()
    };
    assert_eq!(records.len(), 5, "before, a, b, c, d at offsets 0..5");
    // Group commands stay outside transactions, and doom the EXEC.
    run(&mut h, &["MULTI"]);
    let refused = run(&mut h, &["STREAM.JOIN", "ev", "g", "m"]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("not allowed inside MULTI")),
        "{refused:?}"
    );
}

#[test]
fn aggregate_runs_the_pipeline_and_names_the_failing_stage() {
    let mut h = Harness::new();
    load(&mut h, "a", 700);
    run(&mut h, &["DOC.INDEX", "a", "k"]);
    let out = texts(run(
        &mut h,
        &[
            "DOC.AGGREGATE",
            "a",
            r#"[{"$match":{"k":{"$lt":2}}},{"$group":{"_id":"$city","n":{"$sum":1},"top":{"$max":"$_id"}}},{"$sort":{"_id":1}},{"$limit":2}]"#,
        ],
    ));
    // k < 2: _ids 0, 1, 100, 101, ... 601: 14 documents over cities c0..c6.
    let counted: Vec<(String, i64)> = out
        .iter()
        .map(|g| {
            (
                g["_id"].as_str().unwrap().to_string(),
                g["n"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected = |city: i64| (0..700).filter(|i| i % 100 < 2 && i % 7 == city).count() as i64;
    assert_eq!(
        counted,
        [
            ("c0".to_string(), expected(0)),
            ("c1".to_string(), expected(1))
        ]
    );
    let bad = run(
        &mut h,
        &[
            "DOC.AGGREGATE",
            "a",
            r#"[{"$group":{"_id":null,"m":{"$median":"$k"}}}]"#,
        ],
    );
    assert!(
        matches!(&bad, Frame::Error(e) if e.starts_with("ERR DOC.AGGREGATE: pipeline: stage 1 ($group)")),
        "{bad:?}"
    );
    assert_eq!(
        run(&mut h, &["DOC.AGGREGATE", "none", r#"[{"$count":"n"}]"#]),
        Frame::Array(vec![])
    );
}

/// An index build over a large collection goes in batches: another connection's writes run
/// between them (not after the whole build), and the documents they write while it builds are
/// in the index when it is ready.
#[test]
fn an_index_build_lets_other_writes_run_and_indexes_them_too() {
    use crate::context::Session;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut h = Harness::new();
    load(&mut h, "big", 40_000);
    let building = AtomicBool::new(true);
    let shared = &h.shared;
    let written_during = std::thread::scope(|scope| {
        let builder = scope.spawn(|| {
            let mut session = Session::new(7, "127.0.0.1:7".parse().unwrap(), true);
            let reply =
                crate::dispatch::execute(shared, &mut session, &[b"DOC.INDEX", b"big", b"k"]).0;
            building.store(false, Ordering::SeqCst);
            reply
        });
        let mut session = Session::new(8, "127.0.0.1:8".parse().unwrap(), true);
        let mut during = Vec::new();
        let mut id = 1_000_000;
        while building.load(Ordering::SeqCst) {
            let doc = format!(r#"{{"_id":{id},"k":7}}"#);
            let reply = crate::dispatch::execute(
                shared,
                &mut session,
                &[b"DOC.INSERT", b"big", doc.as_bytes()],
            )
            .0;
            assert!(matches!(reply, Frame::Array(_)), "{reply:?}");
            if building.load(Ordering::SeqCst) {
                during.push(id);
            }
            id += 1;
        }
        assert_eq!(builder.join().unwrap(), Frame::bulk("k_1"));
        during
    });
    assert!(
        !written_during.is_empty(),
        "no write ran while the index was built"
    );
    let through_index = explain(&mut h, &["big", r#"{"k":7}"#]);
    assert_eq!(through_index["queryPlanner"]["winningPlan"]["index"], "k_1");
    let scanned = explain(&mut h, &["big", r#"{"$or":[{"k":7}]}"#]);
    assert_eq!(
        through_index["executionStats"]["nReturned"],
        scanned["executionStats"]["nReturned"]
    );
    assert!(
        scanned["executionStats"]["nReturned"].as_u64().unwrap()
            >= 400 + written_during.len() as u64
    );
}

#[test]
fn oversized_documents_and_paths_that_cannot_apply_are_refused_and_write_nothing() {
    let mut h = Harness::new();
    run(&mut h, &["DOC.INSERT", "s", r#"{"_id":1,"n":5,"a":[1,2]}"#]);
    // Over 16 MiB as sent, and over 16 MiB once an update grows it.
    let big = format!(r#"{{"_id":2,"pad":"{}"}}"#, "x".repeat(16 << 20));
    let refused = run(&mut h, &["DOC.INSERT", "s", &big]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("over the limit of 16777216")),
        "{refused:?}"
    );
    let half = "y".repeat(9 << 20);
    let update = format!(r#"{{"$set":{{"p":"{half}"}}}}"#);
    assert!(matches!(
        run(&mut h, &["DOC.UPDATE", "s", r#"{"_id":1}"#, &update]),
        Frame::Array(_)
    ));
    let update = format!(r#"{{"$set":{{"q":"{half}"}}}}"#);
    let refused = run(&mut h, &["DOC.UPDATE", "s", r#"{"_id":1}"#, &update]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("16 MiB")),
        "{refused:?}"
    );
    // A path through a number, and $inc of a string: refused, naming the path.
    let refused = run(
        &mut h,
        &["DOC.UPDATE", "s", r#"{"_id":1}"#, r#"{"$set":{"n.x":1}}"#],
    );
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("'n.x'")),
        "{refused:?}"
    );
    let refused = run(
        &mut h,
        &["DOC.UPDATE", "s", r#"{"_id":1}"#, r#"{"$inc":{"p":1}}"#],
    );
    assert!(
        matches!(&refused, Frame::Error(e) if e.contains("non-number at 'p'")),
        "{refused:?}"
    );
    let doc = json_of(run(&mut h, &["DOC.GET", "s", "1"]));
    assert_eq!(
        (doc["n"].clone(), doc.get("q").is_none()),
        (serde_json::json!(5), true),
        "nothing written"
    );
    assert_eq!(run(&mut h, &["DOC.COUNT", "s", "{}"]), Frame::Integer(1));
}

#[test]
fn an_insert_parsed_before_an_index_existed_still_gets_its_entries() {
    let mut h = Harness::new();
    load(&mut h, "late", 10);
    // The texts are parsed for `_id` alone (no index yet), then an index on `k` is built
    // before the insert takes the writer lock: the insert must parse them whole again.
    let texts: [&[u8]; 2] = [br#"{"_id":100,"k":7,"x":1}"#, br#"{"_id":101,"k":8}"#];
    let prepared = h.shared.docs.prepare_insert(b"late", &texts, 0).unwrap();
    assert_eq!(run(&mut h, &["DOC.INDEX", "late", "k"]), Frame::bulk("k_1"));
    let reader = h.shared.store.reader();
    let ids = h
        .shared
        .store
        .write(|txn| {
            h.shared
                .docs
                .insert_prepared(reader, txn, b"late", prepared)
                .map_err(|e| Frame::error(e.0))
        })
        .unwrap()
        .reply;
    assert_eq!(ids, [serde_json::json!(100), serde_json::json!(101)]);
    let through_index = explain(&mut h, &["late", r#"{"k":7}"#]);
    assert_eq!(through_index["queryPlanner"]["winningPlan"]["index"], "k_1");
    // load's k is i % 100: document 7 and the late one.
    assert_eq!(through_index["executionStats"]["nReturned"], 2);
    assert_eq!(
        run(&mut h, &["DOC.GET", "late", "100"]),
        Frame::bulk(r#"{"_id":100,"k":7,"x":1}"#)
    );
}

#[test]
fn inserts_refuse_what_a_whole_parse_refuses_though_only_some_fields_are_read() {
    let mut h = Harness::new();
    assert_eq!(
        run(&mut h, &["DOC.INDEX", "strict", "k"]),
        Frame::bulk("k_1")
    );
    let deep = format!(r#"{{"_id":1,"x":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
    for text in [
        r#"{"_id":1,"x":1e999}"#,
        r#"{"_id":1,"x":"\ud800"}"#,
        r#"{"_id":1,"x":[1,]}"#,
        deep.as_str(),
    ] {
        let reply = run(&mut h, &["DOC.INSERT", "strict", r#"{"_id":0}"#, text]);
        assert!(
            matches!(&reply, Frame::Error(e) if e.starts_with("ERR DOC.INSERT: document 2 is not valid JSON")),
            "{text}: {reply:?}"
        );
    }
    assert_eq!(
        run(&mut h, &["DOC.COUNT", "strict", "{}"]),
        Frame::Integer(0)
    );
    // Accepted text is stored as sent, and its indexed field is found through the index.
    let ok = r#"{"_id":2, "pad":"\u00e9x", "k":[3, {"y":null}], "n":-1.5e3}"#;
    assert!(matches!(
        run(&mut h, &["DOC.INSERT", "strict", ok]),
        Frame::Array(_)
    ));
    assert_eq!(run(&mut h, &["DOC.GET", "strict", "2"]), Frame::bulk(ok));
    assert_eq!(
        run(&mut h, &["DOC.COUNT", "strict", r#"{"k":3}"#]),
        Frame::Integer(1)
    );
}
