//! The real binary through the `redis` crate, a third-party client, plus persistence across a
//! SIGTERM restart and across kill -9 under `--fsync always`.

mod common;

use common::ServerGuard;
use redis::{Commands, Value};

fn connect(server: &ServerGuard) -> redis::Connection {
    redis::Client::open(server.url())
        .expect("client")
        .get_connection()
        .expect("connection")
}

#[test]
fn redis_crate_covers_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let mut con = connect(&server);
    let _: () = con.set("s", "v").unwrap();
    assert_eq!(con.get::<_, String>("s").unwrap(), "v");
    assert_eq!(con.get::<_, Option<String>>("nope").unwrap(), None);
    let _: () = con.set_ex("t", "v", 100).unwrap();
    assert_eq!(con.ttl::<_, i64>("t").unwrap(), 100);
    assert!(con.pttl::<_, i64>("t").unwrap() > 99_000);
    assert!(con.persist::<_, bool>("t").unwrap());
    assert!(con.expire::<_, bool>("t", 50).unwrap());
    assert!(con.set_nx::<_, _, bool>("nx", 1).unwrap());
    assert!(!con.set_nx::<_, _, bool>("nx", 2).unwrap());
    assert_eq!(con.getset::<_, _, i64>("nx", 3).unwrap(), 1);
    assert_eq!(con.incr::<_, _, i64>("c", 5).unwrap(), 5);
    assert_eq!(con.decr::<_, _, i64>("c", 2).unwrap(), 3);
    assert_eq!(con.incr::<_, _, f64>("f", 1.5f64).unwrap(), 1.5);
    assert_eq!(con.append::<_, _, i64>("s", "w").unwrap(), 2);
    assert_eq!(con.strlen::<_, i64>("s").unwrap(), 2);
    assert_eq!(con.getrange::<_, String>("s", 0, 0).unwrap(), "v");
    assert_eq!(con.setrange::<_, _, i64>("s", 1, "x").unwrap(), 2);
    let _: () = con.mset(&[("m1", "1"), ("m2", "2")]).unwrap();
    assert_eq!(
        con.mget::<_, Vec<Option<String>>>(&["m1", "m2", "m3"])
            .unwrap(),
        vec![Some("1".into()), Some("2".into()), None]
    );
    assert!(con
        .mset_nx::<_, _, bool>(&[("m3", "3"), ("m4", "4")])
        .unwrap());
    assert_eq!(con.exists::<_, i64>(&["m1", "m2", "zz"]).unwrap(), 2);
    assert_eq!(con.del::<_, i64>(&["m1", "m2", "zz"]).unwrap(), 2);
    let _: () = con.rename("m3", "r").unwrap();
    assert!(con.rename_nx::<_, _, bool>("r", "r2").unwrap());
    assert_eq!(con.key_type::<_, String>("r2").unwrap(), "string");
    let mut keys: Vec<String> = con.keys("m*").unwrap();
    keys.sort();
    assert_eq!(keys, vec!["m4"]);
    let scanned: Vec<String> = con.scan_match("r*").unwrap().collect();
    assert_eq!(scanned, vec!["r2"]);
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, con.keys::<_, Vec<String>>("*").unwrap().len() as i64);
    let getdel: String = redis::cmd("GETDEL").arg("r2").query(&mut con).unwrap();
    assert_eq!(getdel, "3");
    let getex: String = redis::cmd("GETEX")
        .arg("s")
        .arg("EX")
        .arg(9)
        .query(&mut con)
        .unwrap();
    assert_eq!(getex, "vx");
    assert_eq!(con.ttl::<_, i64>("s").unwrap(), 9);
    let random: Option<String> = redis::cmd("RANDOMKEY").query(&mut con).unwrap();
    assert!(random.is_some());
    let info: redis::InfoDict = redis::cmd("INFO").query(&mut con).unwrap();
    assert_eq!(
        info.get::<String>("redis_version").as_deref(),
        Some("7.2.0")
    );
    let time: (String, String) = redis::cmd("TIME").query(&mut con).unwrap();
    assert!(time.0.parse::<u64>().unwrap() > 1_600_000_000);
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut con).unwrap();
    assert!(count > 50);
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut con).unwrap();
    assert!(id > 0);
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
    assert!(list.contains(&format!("id={id} ")), "{list}");
    // MULTI/EXEC through the client's atomic pipeline.
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("tx", 1)
        .incr("tx", 10)
        .query(&mut con)
        .unwrap();
    assert_eq!((a, b), (1, 11));
    let error = con.incr::<_, _, i64>("s", 1).unwrap_err();
    assert_eq!(error.code(), Some("ERR"));
    assert_eq!(
        error.detail(),
        Some("value is not an integer or out of range")
    );
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 0);
}

#[test]
fn empty_and_sixteen_mebibyte_values() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let mut con = connect(&server);
    let _: () = con.set("empty", Vec::<u8>::new()).unwrap();
    assert_eq!(con.get::<_, Vec<u8>>("empty").unwrap(), Vec::<u8>::new());
    assert_eq!(con.strlen::<_, i64>("empty").unwrap(), 0);
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    let _: () = con.set("big", &big).unwrap();
    assert_eq!(con.get::<_, Vec<u8>>("big").unwrap(), big);
    assert_eq!(con.strlen::<_, i64>("big").unwrap(), 16 << 20);
}

#[test]
fn data_survives_sigterm_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    {
        let mut con = connect(&server);
        for i in 0..200 {
            let _: () = con.set(format!("k{i}"), i).unwrap();
        }
        let _: () = con.set_ex("ttl", "v", 1000).unwrap();
        let _: i64 = con.del("k0").unwrap();
    }
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    let server = ServerGuard::start(dir.path(), &[]);
    let mut con = connect(&server);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 200);
    assert_eq!(con.get::<_, Option<i64>>("k0").unwrap(), None);
    assert_eq!(con.get::<_, i64>("k199").unwrap(), 199);
    let ttl: i64 = con.ttl("ttl").unwrap();
    assert!((990..=1000).contains(&ttl), "ttl {ttl}");
}

#[test]
fn acknowledged_writes_survive_kill_9_under_fsync_always() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &["--fsync", "always"]);
    {
        let mut con = connect(&server);
        for i in 0..300 {
            let _: () = con.set(format!("k{i}"), i).unwrap();
        }
        let (_, n): ((), i64) = redis::pipe()
            .set("p", 1)
            .incr("p", 1)
            .query(&mut con)
            .unwrap();
        assert_eq!(n, 2);
    }
    server.crash();
    let server = ServerGuard::start(dir.path(), &["--fsync", "always"]);
    let mut con = connect(&server);
    for i in 0..300 {
        assert_eq!(
            con.get::<_, Option<i64>>(format!("k{i}")).unwrap(),
            Some(i),
            "k{i} lost"
        );
    }
    assert_eq!(con.get::<_, i64>("p").unwrap(), 2);
}

#[test]
fn resp3_through_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let mut con = connect(&server);
    let hello: Value = redis::cmd("HELLO").arg(3).query(&mut con).unwrap();
    assert!(matches!(hello, Value::Map(_)), "{hello:?}");
    let missing: Value = redis::cmd("GET").arg("nope").query(&mut con).unwrap();
    assert_eq!(missing, Value::Nil);
}

/// The commands the first test leaves out, so every command of the key-value set goes through
/// a third-party client at least once.
#[test]
fn redis_crate_covers_the_remaining_commands() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let mut con = connect(&server);
    let query = |con: &mut redis::Connection, args: &[&str]| -> Value {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(con).unwrap()
    };
    let ok = Value::Okay;
    let int = Value::Int;
    let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
    assert_eq!(
        query(&mut con, &["PING"]),
        Value::SimpleString("PONG".into())
    );
    assert_eq!(query(&mut con, &["PING", "hi"]), bulk("hi"));
    assert_eq!(query(&mut con, &["ECHO", "echo"]), bulk("echo"));
    assert_eq!(query(&mut con, &["SELECT", "0"]), ok);
    // SET and every option.
    assert_eq!(query(&mut con, &["SET", "k", "1", "EX", "100"]), ok);
    assert_eq!(query(&mut con, &["TTL", "k"]), int(100));
    assert_eq!(query(&mut con, &["SET", "k", "2", "KEEPTTL"]), ok);
    assert_eq!(query(&mut con, &["TTL", "k"]), int(100));
    assert_eq!(
        query(&mut con, &["SET", "k", "3", "PX", "5000", "GET"]),
        bulk("2")
    );
    assert!(
        matches!(query(&mut con, &["PTTL", "k"]), Value::Int(ms) if (4000..=5000).contains(&ms))
    );
    assert_eq!(query(&mut con, &["SET", "k", "4", "NX"]), Value::Nil);
    assert_eq!(query(&mut con, &["SET", "absent", "4", "XX"]), Value::Nil);
    assert_eq!(query(&mut con, &["EXISTS", "absent"]), int(0));
    assert_eq!(
        query(&mut con, &["SET", "k", "5", "EXAT", "4102444800"]),
        ok
    );
    assert_eq!(query(&mut con, &["EXPIRETIME", "k"]), int(4_102_444_800));
    assert_eq!(
        query(&mut con, &["SET", "k", "6", "PXAT", "4102444800123"]),
        ok
    );
    assert_eq!(
        query(&mut con, &["PEXPIRETIME", "k"]),
        int(4_102_444_800_123)
    );
    assert_eq!(query(&mut con, &["SETEX", "se", "50", "v"]), ok);
    assert_eq!(query(&mut con, &["TTL", "se"]), int(50));
    assert_eq!(query(&mut con, &["PSETEX", "pse", "50000", "v"]), ok);
    assert!(
        matches!(query(&mut con, &["PTTL", "pse"]), Value::Int(ms) if (49_000..=50_000).contains(&ms))
    );
    assert_eq!(query(&mut con, &["SETNX", "se", "w"]), int(0));
    // Expiry commands.
    assert_eq!(query(&mut con, &["EXPIREAT", "se", "4102444800"]), int(1));
    assert_eq!(query(&mut con, &["EXPIRETIME", "se"]), int(4_102_444_800));
    assert_eq!(
        query(&mut con, &["PEXPIREAT", "se", "4102444800500"]),
        int(1)
    );
    assert_eq!(
        query(&mut con, &["PEXPIRETIME", "se"]),
        int(4_102_444_800_500)
    );
    assert_eq!(query(&mut con, &["PEXPIRE", "se", "20000"]), int(1));
    assert_eq!(query(&mut con, &["EXPIRE", "se", "10", "GT"]), int(0));
    assert_eq!(query(&mut con, &["EXPIREAT", "se", "1"]), int(1));
    assert_eq!(
        query(&mut con, &["EXISTS", "se"]),
        int(0),
        "a past EXPIREAT deletes"
    );
    // Counters.
    assert_eq!(query(&mut con, &["INCRBY", "n", "40"]), int(40));
    assert_eq!(query(&mut con, &["DECRBY", "n", "-2"]), int(42));
    assert_eq!(query(&mut con, &["INCRBYFLOAT", "n", "0.5"]), bulk("42.5"));
    // Deletes and substrings.
    assert_eq!(query(&mut con, &["SET", "s", "hello"]), ok);
    assert_eq!(query(&mut con, &["SUBSTR", "s", "1", "3"]), bulk("ell"));
    assert_eq!(query(&mut con, &["UNLINK", "s", "absent"]), int(1));
    assert_eq!(
        query(&mut con, &["TYPE", "s"]),
        Value::SimpleString("none".into())
    );
    assert_eq!(
        query(&mut con, &["SCAN", "0", "COUNT", "1000", "MATCH", "p*"]),
        Value::Array(vec![bulk("0"), Value::Array(vec![bulk("pse")])])
    );
    // Server and client commands.
    assert!(
        matches!(query(&mut con, &["CONFIG", "GET", "maxmemory"]), Value::Array(ref a) if a == &[bulk("maxmemory"), bulk("0")])
    );
    assert_eq!(query(&mut con, &["CONFIG", "SET", "maxmemory", "0"]), ok);
    assert_eq!(query(&mut con, &["CLIENT", "SETNAME", "tester"]), ok);
    assert_eq!(query(&mut con, &["CLIENT", "GETNAME"]), bulk("tester"));
    assert_eq!(
        query(&mut con, &["CLIENT", "SETINFO", "LIB-NAME", "redis-rs"]),
        ok
    );
    let list = query(&mut con, &["CLIENT", "LIST"]);
    let Value::BulkString(list) = list else {
        panic!("CLIENT LIST: {list:?}")
    };
    assert!(String::from_utf8_lossy(&list).contains("name=tester"));
    // RESP2: the map of command docs arrives as a flat array of name, docs.
    let Value::Array(docs) = query(&mut con, &["COMMAND", "DOCS", "GET"]) else {
        panic!("COMMAND DOCS")
    };
    assert_eq!(docs[0], bulk("get"));
    let Value::Array(info) = query(&mut con, &["COMMAND", "INFO", "SET"]) else {
        panic!("COMMAND INFO")
    };
    assert_eq!(info.len(), 1);
    let keyspace: String = redis::cmd("INFO").arg("keyspace").query(&mut con).unwrap();
    assert!(keyspace.contains("db0:keys="), "{keyspace}");
    // WATCH, UNWATCH and DISCARD.
    assert_eq!(query(&mut con, &["WATCH", "n"]), ok);
    assert_eq!(query(&mut con, &["UNWATCH"]), ok);
    assert_eq!(query(&mut con, &["MULTI"]), ok);
    assert_eq!(
        query(&mut con, &["INCR", "n"]),
        Value::SimpleString("QUEUED".into())
    );
    assert_eq!(query(&mut con, &["DISCARD"]), ok);
    assert_eq!(query(&mut con, &["GET", "n"]), bulk("42.5"));
    assert_eq!(query(&mut con, &["FLUSHDB"]), ok);
    assert_eq!(query(&mut con, &["DBSIZE"]), int(0));
    assert_eq!(query(&mut con, &["QUIT"]), ok);
}

#[test]
fn redis_crate_authenticates_with_requirepass() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &["--requirepass", "pa55"]);
    let mut anonymous = connect(&server);
    let refused = redis::cmd("GET")
        .arg("k")
        .query::<Value>(&mut anonymous)
        .unwrap_err();
    assert_eq!(refused.code(), Some("NOAUTH"));
    let url = format!("redis://:pa55@{}/", server.addr);
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: () = con.set("k", "v").unwrap();
    assert_eq!(con.get::<_, String>("k").unwrap(), "v");
    let wrong = format!("redis://:nope@{}/", server.addr);
    let error = redis::Client::open(wrong)
        .unwrap()
        .get_connection()
        .err()
        .expect("wrong password refused");
    assert_eq!(
        error.kind(),
        redis::ErrorKind::AuthenticationFailed,
        "{error}"
    );
}
