//! Issue 10's "one write path": every write of a MULTI/EXEC, whatever its command, commits as
//! one engine batch, so one log entry with one seq. The server runs in this process (memory
//! mode); the test reads the engine's log through `Engine::reader`, as a follower would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use flin_engine::{Engine, LogEntry, RecordKind};
use flin_server::config::Options;
use flin_server::daemon::Daemon;

struct Running {
    addr: std::net::SocketAddr,
    engine: Engine,
    shutdown: flin_net::ShutdownHandle,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn start() -> Running {
    let options = Options {
        port: 0,
        bind: "127.0.0.1".parse().unwrap(),
        threads: 2,
        // Memory mode: no ./data directory left in the working tree.
        data: None,
        ..Options::default()
    };
    let config = Daemon::engine_config(&options);
    let daemon = Daemon::start(&options, config).expect("daemon starts");
    let engine = daemon.engine.clone();
    let addr = daemon.local_addr();
    let shutdown = daemon.shutdown_handle();
    let thread = std::thread::spawn(move || daemon.serve());
    Running {
        addr,
        engine,
        shutdown,
        thread: Some(thread),
    }
}

/// Sends `commands` (RESP) and reads until `lines` CRLF-terminated lines arrived.
fn roundtrip(stream: &mut TcpStream, commands: &[&[&str]], lines: usize) -> String {
    let mut out = Vec::new();
    for command in commands {
        out.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
        for arg in *command {
            out.extend_from_slice(format!("${}\r\n{}\r\n", arg.len(), arg).as_bytes());
        }
    }
    stream.write_all(&out).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(2).filter(|w| w == b"\r\n").count() < lines {
        let n = stream.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "server closed; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

fn entries_from(engine: &Engine, seq: u64) -> Vec<LogEntry> {
    let mut reader = engine.reader(seq);
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry().unwrap() {
        entries.push(entry);
    }
    entries
}

fn keys(entry: &LogEntry) -> Vec<(RecordKind, String)> {
    entry
        .ops
        .iter()
        .map(|op| (op.kind, String::from_utf8_lossy(&op.key).into_owned()))
        .collect()
}

#[test]
fn every_write_of_an_exec_is_one_log_entry() {
    let server = start();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let replies = roundtrip(
        &mut stream,
        &[&["SET", "gone", "1"], &["SET", "counter", "41"]],
        2,
    );
    assert_eq!(replies, "+OK\r\n+OK\r\n");
    let before = server.engine.last_seq();

    // Five commands of different shapes: a plain write, a read-modify-write, a delete, a
    // multi-key write, a TTL change; and a read and a failing command, which write nothing.
    let replies = roundtrip(
        &mut stream,
        &[
            &["MULTI"],
            &["SET", "x", "1"],
            &["INCR", "counter"],
            &["DEL", "gone"],
            &["MSET", "m1", "a", "m2", "b"],
            &["PEXPIRE", "x", "100000"],
            &["GET", "m1"],
            &["INCR", "m1"],
            &["EXEC"],
        ],
        // +OK, 7 x +QUEUED, *7, +OK, :42, :1, +OK, :1, $1 and a, -ERR
        17,
    );
    assert!(replies.starts_with("+OK\r\n"), "{replies}");
    assert!(
        replies.ends_with(
            "*7\r\n+OK\r\n:42\r\n:1\r\n+OK\r\n:1\r\n$1\r\na\r\n\
             -ERR value is not an integer or out of range\r\n"
        ),
        "{replies}"
    );

    // Exactly one entry after the two SETs, holding every write of the EXEC.
    let after = entries_from(&server.engine, before + 1);
    assert_eq!(after.len(), 1, "EXEC wrote {} entries", after.len());
    let entry = &after[0];
    assert_eq!(entry.seq, server.engine.last_seq());
    let written = keys(entry);
    for expected in [
        (RecordKind::Put, "x"),
        (RecordKind::Put, "counter"),
        (RecordKind::Delete, "gone"),
        (RecordKind::Put, "m1"),
        (RecordKind::Put, "m2"),
    ] {
        assert!(
            written.contains(&(expected.0, expected.1.to_string())),
            "{expected:?} missing from the EXEC's entry {written:?}"
        );
    }
    let x = entry
        .ops
        .iter()
        .rev()
        .find(|op| op.key == b"x")
        .expect("x is in the entry");
    assert_ne!(x.expiry_ms, 0, "the last write of x carries its PEXPIRE");
    assert!(
        entry
            .ops
            .iter()
            .all(|op| op.key != b"m1" || op.value == b"a"),
        "the failed INCR wrote nothing"
    );

    // An EXEC that writes nothing adds no entry; one that a WATCH aborts adds none either.
    let last = server.engine.last_seq();
    let replies = roundtrip(&mut stream, &[&["MULTI"], &["GET", "x"], &["EXEC"]], 5);
    assert_eq!(replies, "+OK\r\n+QUEUED\r\n*1\r\n$1\r\n1\r\n");
    assert_eq!(server.engine.last_seq(), last);

    let mut other = TcpStream::connect(server.addr).unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(roundtrip(&mut stream, &[&["WATCH", "x"]], 1), "+OK\r\n");
    assert_eq!(roundtrip(&mut other, &[&["SET", "x", "2"]], 1), "+OK\r\n");
    let last = server.engine.last_seq();
    let replies = roundtrip(&mut stream, &[&["MULTI"], &["SET", "y", "1"], &["EXEC"]], 3);
    assert_eq!(replies, "+OK\r\n+QUEUED\r\n*-1\r\n");
    assert_eq!(server.engine.last_seq(), last);
}
