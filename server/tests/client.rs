//! flin-net's Rust client against the real binary: every key-value method, pipelines, the pool
//! shared by threads, passwords, and server restarts in the middle of use.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ServerGuard;
use flin_net::binary::{self, Status};
use flin_net::client::{Client, ClientOptions, Connection, Error, Reply, SetOptions, Ttl, Value};

/// Upper bound on how long a test waits for something another thread does; reaching it fails
/// the test (it bounds a hang, it is not a performance assertion).
const PATIENCE: Duration = Duration::from_secs(30);

fn start(dir: &std::path::Path, extra: &[&str]) -> (ServerGuard, Client) {
    let server = ServerGuard::start(dir, extra);
    let client = Client::connect(server.addr).expect("connect");
    (server, client)
}

/// Starts the server again on the port it had, with the same data directory.
fn restart_on(port: u16, dir: &std::path::Path, extra: &[&str]) -> ServerGuard {
    let port = port.to_string();
    let mut flags = vec!["--port", port.as_str()];
    flags.extend_from_slice(extra);
    ServerGuard::start(dir, &flags)
}

#[test]
fn every_kv_method_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start(dir.path(), &[]);
    let kv = client.kv();

    assert_eq!(client.ping(b"hi").unwrap(), b"hi");
    assert_eq!(kv.get("k").unwrap(), None);
    kv.set("k", "v").unwrap();
    assert_eq!(kv.get("k").unwrap(), Some(b"v".to_vec()));
    kv.set("bin", b"\0\xff\r\n").unwrap();
    assert_eq!(kv.get("bin").unwrap(), Some(b"\0\xff\r\n".to_vec()));

    assert!(!kv
        .set_with("k", "w", SetOptions::new().if_absent())
        .unwrap());
    assert!(kv
        .set_with("k", "w", SetOptions::new().if_present())
        .unwrap());
    assert!(kv
        .set_with("new", "n", SetOptions::new().if_absent())
        .unwrap());
    assert!(!kv
        .set_with("absent", "a", SetOptions::new().if_present())
        .unwrap());
    assert_eq!(kv.get("k").unwrap(), Some(b"w".to_vec()));
    assert_eq!(kv.get("absent").unwrap(), None);

    let ttl = Duration::from_secs(100);
    assert!(kv.set_with("t", "v", SetOptions::new().ttl(ttl)).unwrap());
    let Ttl::Expires(left) = kv.ttl("t").unwrap() else {
        panic!("t has a TTL");
    };
    assert!(left <= ttl && left > Duration::from_secs(90), "{left:?}");
    assert_eq!(kv.ttl("k").unwrap(), Ttl::Persistent);
    assert_eq!(kv.ttl("nope").unwrap(), Ttl::Missing);
    assert!(kv.expire("k", Duration::from_secs(50)).unwrap());
    assert!(!kv.expire("nope", Duration::from_secs(50)).unwrap());
    assert!(matches!(kv.ttl("k").unwrap(), Ttl::Expires(_)));
    kv.set("k", "plain").unwrap();
    assert_eq!(kv.ttl("k").unwrap(), Ttl::Persistent, "SET clears the TTL");

    assert!(kv.exists("k").unwrap());
    assert!(kv.del("k").unwrap());
    assert!(!kv.del("k").unwrap());
    assert!(!kv.exists("k").unwrap());

    assert_eq!(kv.incr("n").unwrap(), 1);
    assert_eq!(kv.incr_by("n", 41).unwrap(), 42);
    assert_eq!(kv.incr_by("n", -50).unwrap(), -8);
    let error = kv.incr("bin").unwrap_err();
    assert_eq!(error.status(), Some(Status::Error));
    assert!(error.to_string().contains("not an integer"), "{error}");

    kv.mset(&[("a", "1"), ("b", "2"), ("c", "3")]).unwrap();
    assert_eq!(
        kv.mget(&["a", "missing", "c"]).unwrap(),
        vec![Some(b"1".to_vec()), None, Some(b"3".to_vec())]
    );
    assert_eq!(kv.mdel(&["a", "b", "missing"]).unwrap(), 2);
    assert_eq!(kv.mget(&["a", "b", "c"]).unwrap()[2], Some(b"3".to_vec()));
}

#[test]
fn any_command_by_name_over_the_binary_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start(dir.path(), &[]);
    assert_eq!(
        client.command(&["APPEND", "k", "ab"]).unwrap(),
        Value::Integer(2)
    );
    assert_eq!(
        client.command(&["append", "k", "c"]).unwrap(),
        Value::Integer(3)
    );
    assert_eq!(client.kv().get("k").unwrap(), Some(b"abc".to_vec()));
    assert_eq!(
        client.command(&["GETRANGE", "k", "1", "-1"]).unwrap(),
        Value::Bulk(b"bc".to_vec())
    );
    assert_eq!(client.command(&["GET", "missing"]).unwrap(), Value::Null);
    let Value::Map(hello) = client.command(&["HELLO"]).unwrap() else {
        panic!("HELLO answers a map");
    };
    assert!(hello.contains(&(
        Value::Bulk(b"server".to_vec()),
        Value::Bulk(b"flin".to_vec())
    )));
    let error = client.command(&["INCR", "k"]).unwrap_err();
    assert_eq!(error.status(), Some(Status::Error));
    // Pipelined, with per-command outcomes.
    let mut pipeline = client.pipeline();
    pipeline
        .command(&["SET", "n", "41"])
        .command(&["INCR", "n"])
        .command(&["NOSUCH"]);
    let replies = pipeline.execute().unwrap();
    assert_eq!(replies[0], Ok(Reply::Command(Value::Simple("OK".into()))));
    assert_eq!(replies[1], Ok(Reply::Command(Value::Integer(42))));
    assert!(replies[2]
        .as_ref()
        .unwrap_err()
        .message
        .starts_with("ERR unknown command 'NOSUCH'"));
}

#[test]
fn scan_returns_every_matching_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start(dir.path(), &[]);
    let users: BTreeSet<Vec<u8>> = (0..250).map(|i| format!("user:{i}").into_bytes()).collect();
    let pairs: Vec<(&[u8], &[u8])> = users.iter().map(|k| (&k[..], &b"x"[..])).collect();
    client.kv().mset(&pairs).unwrap();
    client
        .kv()
        .mset(&[("other:1", "y"), ("other:2", "y")])
        .unwrap();

    let scanned: BTreeSet<Vec<u8>> = client
        .kv()
        .scan()
        .pattern("user:*")
        .page_size(10)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(scanned, users);
    assert_eq!(client.kv().scan().page_size(7).count(), 252);

    // The page-at-a-time form: the cursor comes back to 0.
    let mut cursor = 0;
    let mut pages = 0;
    loop {
        let page = client
            .kv()
            .scan_page(cursor, 100, Some(b"other:*"))
            .unwrap();
        pages += 1;
        cursor = page.cursor;
        if cursor == 0 {
            break;
        }
        assert!(pages < 1000, "SCAN never finished");
    }
}

#[test]
fn a_pipeline_sends_many_requests_and_reads_replies_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start(dir.path(), &[]);
    let mut pipeline = client.pipeline();
    pipeline
        .kv()
        .set("p", "1")
        .incr("p")
        .get("p")
        .incr("missing-is-zero")
        .set("text", "abc")
        .incr("text") // refused by the server: not an integer
        .get("text")
        .set_with("p", "x", SetOptions::new().if_absent())
        .mset(&[("m1", "a"), ("m2", "b")])
        .mget(&["m1", "nope", "m2"])
        .exists("m1")
        .del("m1")
        .mdel(&["m1", "m2"])
        .ttl("p")
        .expire("p", Duration::from_secs(60));
    pipeline.ping(b"end");
    assert_eq!(pipeline.len(), 16);
    let replies = pipeline.execute().unwrap();
    assert!(pipeline.is_empty());
    let expected_before_error = [
        Reply::Done,
        Reply::Integer(2),
        Reply::Value(Some(b"2".to_vec())),
        Reply::Integer(1),
        Reply::Done,
    ];
    for (got, want) in replies.iter().zip(&expected_before_error) {
        assert_eq!(got.as_ref().unwrap(), want);
    }
    let refused = replies[5].as_ref().unwrap_err();
    assert_eq!(refused.status, Status::Error);
    assert!(refused.message.starts_with("ERR value is not an integer"));
    let expected_after_error = [
        Reply::Value(Some(b"abc".to_vec())),
        Reply::Stored(false),
        Reply::Done,
        Reply::Values(vec![Some(b"a".to_vec()), None, Some(b"b".to_vec())]),
        Reply::Flag(true),
        Reply::Flag(true),
        Reply::Count(1),
        Reply::Ttl(Ttl::Persistent),
        Reply::Flag(true),
        Reply::Pong(b"end".to_vec()),
    ];
    for (got, want) in replies[6..].iter().zip(&expected_after_error) {
        assert_eq!(got.as_ref().unwrap(), want);
    }

    // A thousand requests in one write, on one connection.
    for i in 0..1000 {
        pipeline.kv().set(format!("bulk:{i}"), i.to_string());
    }
    assert!(pipeline
        .execute()
        .unwrap()
        .iter()
        .all(|r| r == &Ok(Reply::Done)));
    for i in (0..1000).step_by(97) {
        pipeline.kv().get(format!("bulk:{i}"));
    }
    let values = pipeline.execute().unwrap();
    for (reply, i) in values.iter().zip((0..1000).step_by(97)) {
        assert_eq!(reply, &Ok(Reply::Value(Some(i.to_string().into_bytes()))));
    }
}

#[test]
fn the_low_level_connection_queues_flushes_and_checks_ids() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let mut connection = Connection::open(server.addr, &ClientOptions::new()).unwrap();
    let mut ids = Vec::new();
    for i in 0..64u8 {
        ids.push(
            connection
                .queue(|out, id| binary::encode_incr_by(out, id, b"sum", i64::from(i)))
                .unwrap(),
        );
    }
    connection.flush().unwrap();
    let mut total = 0;
    for (i, id) in ids.into_iter().enumerate() {
        let response = connection.receive().unwrap();
        assert_eq!(response.request_id, id);
        total += i as i64;
        assert_eq!(response.integer().unwrap(), total);
    }
    assert_eq!(connection.awaiting_responses(), 0);
}

#[test]
fn the_pool_is_shared_by_threads_and_stays_within_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let client = Client::connect_with(server.addr, ClientOptions::new().pool_size(2)).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || {
                for _ in 0..250 {
                    client.kv().incr("shared").unwrap();
                    assert!(client.open_connections() <= 2);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(client.kv().get("shared").unwrap(), Some(b"1000".to_vec()));
    assert!(client.open_connections() <= 2);
}

#[test]
fn a_password_is_checked_at_connect_and_sent_on_every_new_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &["--requirepass", "secret"]);
    let wrong = Client::connect_with(server.addr, ClientOptions::new().password("nope"));
    assert_eq!(wrong.unwrap_err().status(), Some(Status::NoAuth));

    let anonymous = Client::connect(server.addr).unwrap();
    let error = anonymous.kv().get("k").unwrap_err();
    assert_eq!(error.status(), Some(Status::NoAuth));
    assert!(error.to_string().contains("NOAUTH"), "{error}");

    let client =
        Client::connect_with(server.addr, ClientOptions::new().password("secret")).unwrap();
    client.kv().set("k", "v").unwrap();
    let port = server.addr.port();
    server.terminate();
    let _server = restart_on(port, dir.path(), &["--requirepass", "secret"]);
    // A new connection: it must authenticate again to read.
    assert_eq!(client.kv().get("k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn idle_connections_closed_by_a_restart_are_replaced_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let client = Client::connect_with(server.addr, ClientOptions::new().pool_size(3)).unwrap();
    // Threads at once open more than one connection (how many is up to the scheduler); they are
    // all idle in the pool when the server goes away.
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let client = client.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    client.kv().set(format!("k{i}"), "v").unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let idle_before = client.open_connections();
    assert!((1..=3).contains(&idle_before));
    let port = server.addr.port();
    server.terminate();

    // While the server is down: a network error, reported.
    assert!(client.kv().get("k0").unwrap_err().is_network());

    let _server = restart_on(port, dir.path(), &[]);
    // Every idle connection the old server closed is found before anything is sent on it, so
    // the first call after the restart already succeeds.
    assert_eq!(client.kv().get("k0").unwrap(), Some(b"v".to_vec()));
    assert_eq!(
        client.open_connections(),
        1,
        "all {idle_before} stale connections were dropped, one new one opened"
    );
}

#[test]
fn a_request_on_a_connection_the_server_dropped_is_reported_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &["--fsync", "always"]);
    let mut connection = Connection::open(server.addr, &ClientOptions::new()).unwrap();
    connection
        .queue(|out, id| binary::encode_incr(out, id, b"n"))
        .unwrap();
    assert_eq!(connection.receive().unwrap().integer().unwrap(), 1);
    let port = server.addr.port();
    server.crash();
    let server = restart_on(port, dir.path(), &["--fsync", "always"]);

    // The old socket is dead; the INCR written on it fails and is not resent.
    connection
        .queue(|out, id| binary::encode_incr(out, id, b"n"))
        .unwrap();
    let error = connection.receive().unwrap_err();
    assert!(error.is_network(), "{error}");
    assert!(connection.is_broken());
    let client = Client::connect(server.addr).unwrap();
    assert_eq!(client.kv().get("n").unwrap(), Some(b"1".to_vec()));
}

/// A thread increments a counter through one `Client` while the server is killed (kill -9) and
/// started again on the same port. Every failure must be a network error, the client must
/// recover by itself, and under `--fsync always` every acknowledged INCR must survive the crash
/// (the final count lies between the acknowledged and the attempted increments).
#[test]
fn a_client_survives_a_server_crash_in_the_middle_of_use() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &["--fsync", "always"]);
    let port = server.addr.port();
    let client = Client::connect_with(server.addr, ClientOptions::new().pool_size(2)).unwrap();

    let acknowledged = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    let worker = {
        let (client, acknowledged, failures, restarted) = (
            client.clone(),
            Arc::clone(&acknowledged),
            Arc::clone(&failures),
            Arc::clone(&restarted),
        );
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut attempted = 0u64;
            let mut last_value = 0;
            let mut acknowledged_after_restart = 0;
            while acknowledged_after_restart < 200 {
                assert!(started.elapsed() < PATIENCE, "the client did not recover");
                attempted += 1;
                match client.kv().incr("counter") {
                    Ok(value) => {
                        assert!(value > last_value, "{value} after {last_value}");
                        last_value = value;
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                        if restarted.load(Ordering::SeqCst) {
                            acknowledged_after_restart += 1;
                        }
                    }
                    Err(Error::Network(_)) => {
                        failures.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(other) => panic!("only network errors are expected, got {other}"),
                }
            }
            attempted
        })
    };

    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < PATIENCE, "waited too long for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    wait_for("200 increments", &|| {
        acknowledged.load(Ordering::SeqCst) >= 200
    });
    server.crash();
    // Keep the server down until the worker has seen it fail at least once.
    wait_for("a failure", &|| failures.load(Ordering::SeqCst) > 0);
    let _server = restart_on(port, dir.path(), &["--fsync", "always"]);
    restarted.store(true, Ordering::SeqCst);
    let attempted = worker.join().unwrap();

    let acknowledged = acknowledged.load(Ordering::SeqCst);
    let value: u64 = String::from_utf8(client.kv().get("counter").unwrap().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        acknowledged <= value && value <= attempted,
        "acknowledged {acknowledged}, stored {value}, attempted {attempted}"
    );
}
