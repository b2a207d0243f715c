//! Message queues through the real server binary: blocking pops across event loops, push
//! consumers in RESP2 and RESP3, redelivery when a connection closes, kill -9 under
//! `--fsync always`, and 8 producers with 8 consumers moving 100,000 messages.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ServerGuard;

/// A RESP value, as much of RESP3 as the queue commands answer with.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<V>),
    Push(Vec<V>),
}

impl V {
    fn int(&self) -> i64 {
        match self {
            V::Int(n) => *n,
            other => panic!("not an integer: {other:?}"),
        }
    }

    fn items(&self) -> &[V] {
        match self {
            V::Array(items) | V::Push(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    fn bulk(&self) -> &[u8] {
        match self {
            V::Bulk(b) => b,
            other => panic!("not a bulk: {other:?}"),
        }
    }
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Conn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn send(&mut self, args: &[&[u8]]) {
        self.writer.write_all(&common::resp(args)).unwrap();
    }

    fn send_many(&mut self, commands: &[Vec<Vec<u8>>]) {
        let mut out = Vec::new();
        for command in commands {
            let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            out.extend(common::resp(&args));
        }
        self.writer.write_all(&out).unwrap();
    }

    fn cmd(&mut self, args: &[&str]) -> V {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&args);
        self.read()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("reply line");
        assert!(line.ends_with("\r\n"), "short line {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    fn read(&mut self) -> V {
        let line = self.line();
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => V::Simple(rest.into()),
            "-" => V::Error(rest.into()),
            ":" => V::Int(rest.parse().unwrap()),
            "_" => V::Null,
            "#" => V::Int((rest == "t") as i64),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return V::Null;
                }
                let mut buf = vec![0; n as usize + 2];
                std::io::Read::read_exact(&mut self.reader, &mut buf).unwrap();
                buf.truncate(n as usize);
                V::Bulk(buf)
            }
            "*" | ">" | "%" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return V::Null;
                }
                let n = if kind == "%" { 2 * n } else { n };
                let items = (0..n).map(|_| self.read()).collect();
                if kind == ">" {
                    V::Push(items)
                } else {
                    V::Array(items)
                }
            }
            _ => panic!("unexpected reply line {line:?}"),
        }
    }
}

fn start(extra: &[&str]) -> (tempfile::TempDir, ServerGuard) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), extra);
    (dir, server)
}

/// Waits (at most 10 s) until QUEUE.INFO shows `n` connections parked in QUEUE.BPOP on `queue`.
fn wait_for_waiters(conn: &mut Conn, queue: &str, n: i64) {
    for _ in 0..1000 {
        let info = conn.cmd(&["QUEUE.INFO", queue]);
        let waiters = info
            .items()
            .chunks(2)
            .find(|p| p[0] == V::Bulk(b"waiters".to_vec()))
            .expect("waiters field")[1]
            .int();
        if waiters >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{n} waiters never parked on {queue}");
}

/// `[id, payload, priority, deliveries, headers]` -> (id, payload, deliveries).
fn message(v: &V) -> (u64, Vec<u8>, i64) {
    let items = v.items();
    (
        items[0].int() as u64,
        items[1].bulk().to_vec(),
        items[3].int(),
    )
}

#[test]
fn bpop_wakes_the_longest_waiter_whatever_loop_got_the_push() {
    let (_dir, server) = start(&[]);
    let mut producer = Conn::open(server.addr);
    assert_eq!(
        producer.cmd(&["QUEUE.DECLARE", "q"]),
        V::Simple("OK".into())
    );
    // Several waiters, opened in order: with two loops, they land on both.
    let mut waiters: Vec<Conn> = (0..4).map(|_| Conn::open(server.addr)).collect();
    for (i, waiter) in waiters.iter_mut().enumerate() {
        waiter.send(&[b"QUEUE.BPOP", b"q", b"0"]);
        // Each is parked before the next one asks.
        wait_for_waiters(&mut producer, "q", i as i64 + 1);
    }
    for (i, waiter) in waiters.iter_mut().enumerate() {
        let id = producer.cmd(&["QUEUE.PUSH", "q", &format!("m{i}")]).int();
        let got = waiter.read();
        let (got_id, payload, deliveries) = message(&got.items()[0]);
        assert_eq!(
            (got_id, payload, deliveries),
            (id as u64, format!("m{i}").into_bytes(), 1)
        );
    }
    // Timeout: a null array; NOACK: nothing left in flight.
    let mut c = Conn::open(server.addr);
    assert_eq!(c.cmd(&["QUEUE.BPOP", "q", "50"]), V::Null);
    producer.cmd(&["QUEUE.PUSH", "q", "later"]);
    let got = c.cmd(&["QUEUE.BPOP", "q", "1000", "NOACK"]);
    assert_eq!(message(&got.items()[0]).1, b"later");
    let info = c.cmd(&["QUEUE.INFO", "q"]);
    let inflight = info
        .items()
        .chunks(2)
        .find(|p| p[0] == V::Bulk(b"inflight".to_vec()))
        .unwrap()[1]
        .int();
    assert_eq!(
        inflight, 4,
        "the 4 waiters hold theirs; the NOACK pop holds none"
    );
    // Requests pipelined behind a parked BPOP wait for it, in order.
    c.send(&[b"QUEUE.BPOP", b"q", b"0"]);
    c.send(&[b"PING"]);
    std::thread::sleep(Duration::from_millis(50));
    producer.cmd(&["QUEUE.PUSH", "q", "x"]);
    assert_eq!(message(&c.read().items()[0]).1, b"x");
    assert_eq!(c.read(), V::Simple("PONG".into()));
}

#[test]
fn subscriptions_push_within_prefetch_in_resp3_and_resp2() {
    let (_dir, server) = start(&[]);
    let mut producer = Conn::open(server.addr);
    producer.cmd(&["QUEUE.DECLARE", "q"]);
    let mut resp3 = Conn::open(server.addr);
    assert!(matches!(resp3.cmd(&["HELLO", "3"]), V::Array(_)));
    assert_eq!(
        resp3.cmd(&["QUEUE.SUBSCRIBE", "q", "PREFETCH", "3"]),
        V::Simple("OK".into())
    );
    let mut resp2 = Conn::open(server.addr);
    assert_eq!(
        resp2.cmd(&["QUEUE.SUBSCRIBE", "q", "PREFETCH", "3"]),
        V::Simple("OK".into())
    );
    for i in 0..10 {
        producer.cmd(&["QUEUE.PUSH", "q", &i.to_string()]);
    }
    let mut ids3 = Vec::new();
    for _ in 0..3 {
        let push = resp3.read();
        assert!(matches!(push, V::Push(_)), "{push:?}");
        assert_eq!(push.items()[0], V::Bulk(b"message".to_vec()));
        assert_eq!(push.items()[1], V::Bulk(b"q".to_vec()));
        ids3.push(push.items()[2].int());
    }
    for _ in 0..3 {
        let push = resp2.read();
        assert!(matches!(push, V::Array(_)), "{push:?}");
        assert_eq!(push.items()[0], V::Bulk(b"message".to_vec()));
    }
    // Prefetch 3 each: 4 stay ready.
    assert_eq!(producer.cmd(&["QUEUE.LEN", "q"]).int(), 4);
    // Acking one lets exactly one more through; the ack's reply comes first.
    assert_eq!(
        resp3.cmd(&["QUEUE.ACK", "q", &ids3[0].to_string()]).int(),
        1
    );
    let push = resp3.read();
    assert!(matches!(push, V::Push(_)));
    assert_eq!(producer.cmd(&["QUEUE.LEN", "q"]).int(), 3);
}

#[test]
fn a_closed_connection_returns_its_messages_and_its_exclusive_queue_goes() {
    let (_dir, server) = start(&[]);
    let mut a = Conn::open(server.addr);
    a.cmd(&["QUEUE.DECLARE", "q"]);
    a.cmd(&["QUEUE.DECLARE", "mine", "EXCLUSIVE"]);
    a.cmd(&["QUEUE.PUSH", "q", "m"]);
    let mut b = Conn::open(server.addr);
    assert!(matches!(b.cmd(&["QUEUE.PUSH", "mine", "x"]), V::Error(e) if e.contains("exclusive")));
    let held = b.cmd(&["QUEUE.POP", "q"]);
    assert_eq!(message(&held.items()[0]).2, 1);
    drop(b);
    let mut got = V::Array(vec![]);
    for _ in 0..100 {
        got = a.cmd(&["QUEUE.POP", "q"]);
        if !got.items().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        message(&got.items()[0]).2,
        2,
        "redelivered with a higher count"
    );
    drop(a);
    let mut c = Conn::open(server.addr);
    for _ in 0..100 {
        if c.cmd(&["QUEUE.LIST"]).items().len() == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        c.cmd(&["QUEUE.LIST"]),
        V::Array(vec![V::Bulk(b"q".to_vec())])
    );
    // Pops are refused inside MULTI (pushes run in EXEC's transaction), and doom the EXEC.
    c.cmd(&["MULTI"]);
    assert!(
        matches!(c.cmd(&["QUEUE.POP", "q"]), V::Error(e) if e.contains("QUEUE.POP is not allowed inside MULTI"))
    );
    assert!(matches!(c.cmd(&["EXEC"]), V::Error(e) if e.starts_with("EXECABORT")));
}

/// Under `--fsync always`: every acknowledged push survives kill -9, an acknowledged ack
/// never comes back, in-flight messages come back.
#[test]
fn kill_9_keeps_acknowledged_pushes_and_acks() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &["--fsync", "always"]);
    let mut c = Conn::open(server.addr);
    c.cmd(&["QUEUE.DECLARE", "q", "MAXDELIVERIES", "5"]);
    let mut pushed = Vec::new();
    for i in 0..300 {
        pushed.push(c.cmd(&["QUEUE.PUSH", "q", &format!("m{i}")]).int() as u64);
    }
    let popped = c.cmd(&["QUEUE.POP", "q", "COUNT", "200"]);
    let ids: Vec<u64> = popped.items().iter().map(|m| message(m).0).collect();
    let acked: Vec<String> = ids[..100].iter().map(u64::to_string).collect();
    let mut args = vec!["QUEUE.ACK", "q"];
    args.extend(acked.iter().map(String::as_str));
    assert_eq!(c.cmd(&args).int(), 100);
    server.crash();
    let server = ServerGuard::start(dir.path(), &["--fsync", "always"]);
    let mut c = Conn::open(server.addr);
    assert_eq!(c.cmd(&["QUEUE.LEN", "q"]).int(), 200);
    let all = c.cmd(&["QUEUE.POP", "q", "COUNT", "1000"]);
    let back: Vec<u64> = all.items().iter().map(|m| message(m).0).collect();
    let expected: Vec<u64> = pushed
        .iter()
        .copied()
        .filter(|id| !ids[..100].contains(id))
        .collect();
    assert_eq!(back, expected, "the unacked, in push order; no acked one");
}

#[test]
fn eight_producers_and_eight_consumers_move_100k_messages_each_acked_once() {
    const PRODUCERS: usize = 8;
    const CONSUMERS: usize = 8;
    const PER_PRODUCER: usize = 12_500;
    const TOTAL: usize = PRODUCERS * PER_PRODUCER;
    const PIPELINE: usize = 100;
    let (_dir, server) = start(&["--fsync", "everysec"]);
    Conn::open(server.addr).cmd(&["QUEUE.DECLARE", "work"]);
    let addr = server.addr;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let duplicates = Arc::new(Mutex::new(0usize));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                for chunk in 0..PER_PRODUCER / PIPELINE {
                    let commands: Vec<Vec<Vec<u8>>> = (0..PIPELINE)
                        .map(|i| {
                            let n = p * PER_PRODUCER + chunk * PIPELINE + i;
                            vec![
                                b"QUEUE.PUSH".to_vec(),
                                b"work".to_vec(),
                                n.to_string().into_bytes(),
                            ]
                        })
                        .collect();
                    c.send_many(&commands);
                    for _ in 0..PIPELINE {
                        assert!(matches!(c.read(), V::Int(_)));
                    }
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let acked = acked.clone();
            let duplicates = duplicates.clone();
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                loop {
                    if acked.lock().unwrap().len() >= TOTAL {
                        return;
                    }
                    let got = c.cmd(&["QUEUE.BPOP", "work", "200", "COUNT", "50"]);
                    let V::Array(items) = got else { continue };
                    let batch: Vec<(u64, Vec<u8>, i64)> = items.iter().map(message).collect();
                    let ids: Vec<String> = batch.iter().map(|m| m.0.to_string()).collect();
                    let mut args = vec!["QUEUE.ACK", "work"];
                    args.extend(ids.iter().map(String::as_str));
                    assert_eq!(c.cmd(&args).int() as usize, batch.len());
                    let mut acked = acked.lock().unwrap();
                    for (_, payload, _) in batch {
                        if !acked.insert(payload) {
                            *duplicates.lock().unwrap() += 1;
                        }
                    }
                }
            })
        })
        .collect();
    producers.into_iter().for_each(|t| t.join().unwrap());
    consumers.into_iter().for_each(|t| t.join().unwrap());
    let acked = acked.lock().unwrap();
    assert_eq!(acked.len(), TOTAL, "every message acked");
    assert_eq!(*duplicates.lock().unwrap(), 0, "none delivered twice");
    for n in 0..TOTAL {
        assert!(acked.contains(n.to_string().as_bytes()), "message {n} lost");
    }
    let mut c = Conn::open(addr);
    assert_eq!(c.cmd(&["QUEUE.LEN", "work"]).int(), 0);
}

/// A parked BPOP with NOACK is answered from the mailbox and acks before it replies; a
/// BPOP whose queue is deleted while it waits gets an error and the connection goes on.
#[test]
fn parked_bpop_noack_and_deleted_queue() {
    let (_dir, server) = start(&["--fsync", "always"]);
    let mut producer = Conn::open(server.addr);
    producer.cmd(&["QUEUE.DECLARE", "q"]);
    let mut waiter = Conn::open(server.addr);
    waiter.send(&[b"QUEUE.BPOP", b"q", b"0", b"NOACK"]);
    std::thread::sleep(Duration::from_millis(50));
    producer.cmd(&["QUEUE.PUSH", "q", "m"]);
    let got = waiter.read();
    assert_eq!(message(&got.items()[0]).1, b"m");
    let info = producer.cmd(&["QUEUE.INFO", "q"]);
    let field = |name: &str| {
        info.items()
            .chunks(2)
            .find(|p| p[0] == V::Bulk(name.as_bytes().to_vec()))
            .unwrap()[1]
            .int()
    };
    assert_eq!((field("inflight"), field("acked")), (0, 1));
    waiter.send(&[b"QUEUE.BPOP", b"q", b"0"]);
    wait_for_waiters(&mut producer, "q", 1);
    assert_eq!(producer.cmd(&["QUEUE.DELETE", "q"]).int(), 0);
    assert!(
        matches!(waiter.read(), V::Error(e) if e.contains("was deleted while waiting")),
        "the waiter is told"
    );
    assert_eq!(waiter.cmd(&["PING"]), V::Simple("PONG".into()));
    // A subscriber of a deleted queue is told its subscription ended.
    producer.cmd(&["QUEUE.DECLARE", "s"]);
    let mut subscriber = Conn::open(server.addr);
    assert_eq!(
        subscriber.cmd(&["QUEUE.SUBSCRIBE", "s"]),
        V::Simple("OK".into())
    );
    producer.cmd(&["QUEUE.DELETE", "s"]);
    assert_eq!(
        subscriber.read(),
        V::Array(vec![V::Bulk(b"cancelled".to_vec()), V::Bulk(b"s".to_vec())])
    );
}
