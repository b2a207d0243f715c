//! Documents (issue 13) through the real binary, over RESP with the `redis` crate: the
//! transactional outbox (a document write, a stream record and a key-value write in one
//! MULTI/EXEC) all or nothing through kill -9 under `--fsync always`, with a unique index
//! and a secondary index exact afterwards.

mod common;

use std::time::Duration;

use common::ServerGuard;
use redis::Value;

fn connect(server: &ServerGuard) -> redis::Connection {
    let con = redis::Client::open(server.url())
        .expect("client")
        .get_connection()
        .expect("connection");
    con.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    con
}

fn json(value: &Value) -> serde_json::Value {
    match value {
        Value::BulkString(bytes) => serde_json::from_slice(bytes).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn find(con: &mut redis::Connection, filter: &str) -> Vec<serde_json::Value> {
    let found: Vec<Value> = redis::cmd("DOC.FIND")
        .arg("orders")
        .arg(filter)
        .query(con)
        .unwrap();
    found.iter().map(json).collect()
}

fn explain(con: &mut redis::Connection, filter: &str) -> serde_json::Value {
    let report: Value = redis::cmd("DOC.EXPLAIN")
        .arg("orders")
        .arg(filter)
        .query(con)
        .unwrap();
    json(&report)
}

/// One outbox step: order `i` is inserted, order `i - 1` is paid, the event is published and
/// the last order number set, in one EXEC. `Err` when the connection died (the kill).
fn step(con: &mut redis::Connection, i: u64) -> redis::RedisResult<Vec<Value>> {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("DOC.INSERT")
        .arg("orders")
        .arg(format!(r#"{{"_id":{i},"state":"new","ref":"r{i}"}}"#))
        .cmd("DOC.UPDATE")
        .arg("orders")
        .arg(format!(r#"{{"_id":{}}}"#, i.saturating_sub(1)))
        .arg(r#"{"$set":{"state":"paid"}}"#)
        .cmd("STREAM.PUBLISH")
        .arg("events")
        .arg("PARTITION")
        .arg(0)
        .arg(format!("order {i}"))
        .cmd("SET")
        .arg("last")
        .arg(i);
    pipe.query(con)
}

#[test]
fn the_outbox_is_all_or_nothing_through_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &["--fsync", "always"]);
    let mut con = connect(&server);
    let _: String = redis::cmd("DOC.INDEX")
        .arg("orders")
        .arg("state")
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("DOC.INDEX")
        .arg("orders")
        .arg("ref")
        .arg("UNIQUE")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("STREAM.CREATE")
        .arg("events")
        .arg("PARTITIONS")
        .arg(1)
        .query(&mut con)
        .unwrap();
    let replies = step(&mut con, 0).unwrap();
    assert_eq!(replies[2], Value::Array(vec![Value::Int(0), Value::Int(0)]));
    let url = server.url();
    let writer = std::thread::spawn(move || {
        let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut acked = 0;
        for i in 1.. {
            match step(&mut con, i) {
                Ok(replies) => {
                    assert_eq!(
                        replies[2],
                        Value::Array(vec![Value::Int(0), Value::Int(i as i64)]),
                        "offset = order"
                    );
                    acked = i;
                }
                Err(_) => return acked,
            }
        }
        unreachable!("the server is killed first")
    });
    std::thread::sleep(Duration::from_millis(400));
    let status = std::process::Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let acked = writer.join().unwrap();
    assert!(acked > 0, "steps were acknowledged before the kill");
    server.crash();

    let server = ServerGuard::start(dir.path(), &["--fsync", "always"]);
    let mut con = connect(&server);
    let last: u64 = redis::cmd("GET").arg("last").query(&mut con).unwrap();
    assert!(
        last >= acked,
        "acknowledged step {acked} lost (last {last})"
    );
    // Every step up to `last` whole, none after it: no document without its event.
    let count: u64 = redis::cmd("DOC.COUNT")
        .arg("orders")
        .arg("{}")
        .query(&mut con)
        .unwrap();
    assert_eq!(count, last + 1);
    let fetched: Vec<Value> = redis::cmd("STREAM.FETCH")
        .arg("events")
        .arg(0)
        .arg(0)
        .arg("COUNT")
        .arg(last + 10)
        .query(&mut con)
        .unwrap();
    assert_eq!(fetched.len() as u64, last + 1, "one event per order");
    let paid = find(&mut con, r#"{"state":"paid"}"#);
    assert_eq!(paid.len() as u64, last, "every order but the last is paid");
    // The state index is exact: through it, and through a scan, the same documents.
    let through_index = explain(&mut con, r#"{"state":"new"}"#);
    assert_eq!(
        through_index["queryPlanner"]["winningPlan"]["stage"],
        "IXSCAN"
    );
    assert_eq!(through_index["executionStats"]["nReturned"], 1);
    assert_eq!(through_index["executionStats"]["totalKeysExamined"], 1);
    let scanned = explain(&mut con, r#"{"$or":[{"state":"new"}]}"#);
    assert_eq!(scanned["queryPlanner"]["winningPlan"]["stage"], "COLLSCAN");
    assert_eq!(scanned["executionStats"]["nReturned"], 1);
    // The unique index still refuses what it holds, and takes the next order.
    let duplicate: redis::RedisResult<Value> = redis::cmd("DOC.INSERT")
        .arg("orders")
        .arg(r#"{"ref":"r0"}"#)
        .query(&mut con);
    let message = duplicate.unwrap_err().to_string();
    assert!(message.contains("ref_1"), "{message}");
    let next = step(&mut con, last + 1).unwrap();
    assert_eq!(
        next[2],
        Value::Array(vec![Value::Int(0), Value::Int(last as i64 + 1)])
    );
}
