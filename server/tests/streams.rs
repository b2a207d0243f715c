//! Streams (issue 12) through the real server binary, over RESP: dense offsets under 8
//! concurrent publishers, long polls woken by another connection's publish, restarts and
//! kill -9 under `--fsync always`, a 4-member group consuming while 2 publishers publish,
//! the refusals clients see, and retention by bytes and by age run by the server's timer.
//!
//! Counts are small by default so each test stays within seconds in a debug build on CI's
//! 2 cores; `FLIN_STREAM_FULL=1` runs the sizes (1,000,000 records in the group test).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::ServerGuard;

/// A RESP2 value (the stream commands' maps arrive as flat arrays).
#[derive(Debug, Clone, PartialEq)]
enum V {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<V>),
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
            V::Array(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    fn bulk(&self) -> &[u8] {
        match self {
            V::Bulk(b) => b,
            other => panic!("not a bulk: {other:?}"),
        }
    }

    fn error(&self) -> &str {
        match self {
            V::Error(e) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    /// The value under `name` in a map reply (a flat array of name, value pairs in RESP2).
    fn field(&self, name: &str) -> &V {
        self.items()
            .chunks(2)
            .find(|pair| pair[0].bulk() == name.as_bytes())
            .unwrap_or_else(|| panic!("no field {name} in {self:?}"))
            .get(1)
            .expect("a value after the name")
    }
}

/// A RESP connection (the same reader as tests/queues.rs, without RESP3 pushes).
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

    fn send(&mut self, args: &[&str]) {
        self.try_send(args).expect("send");
    }

    fn try_send(&mut self, args: &[&str]) -> std::io::Result<()> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.writer.write_all(&common::resp(&args))
    }

    fn cmd(&mut self, args: &[&str]) -> V {
        self.send(args);
        self.read()
    }

    /// `cmd` for arguments built as strings.
    fn cmd_owned(&mut self, args: &[String]) -> V {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cmd(&args)
    }

    fn ok(&mut self, args: &[&str]) {
        assert_eq!(self.cmd(args), V::Simple("OK".into()), "{args:?}");
    }

    fn read(&mut self) -> V {
        self.try_read().expect("a whole reply")
    }

    /// One reply, or `None` if the connection ended first (the server was killed).
    fn try_read(&mut self) -> Option<V> {
        let mut line = String::new();
        self.reader.read_line(&mut line).ok()?;
        let line = line.strip_suffix("\r\n")?;
        let (kind, rest) = line.split_at(1);
        Some(match kind {
            "+" => V::Simple(rest.into()),
            "-" => V::Error(rest.into()),
            ":" => V::Int(rest.parse().unwrap()),
            "_" => V::Null,
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return Some(V::Null);
                }
                let mut buf = vec![0; n as usize + 2];
                std::io::Read::read_exact(&mut self.reader, &mut buf).ok()?;
                buf.truncate(n as usize);
                V::Bulk(buf)
            }
            "*" | "%" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return Some(V::Null);
                }
                let n = if kind == "%" { 2 * n } else { n };
                V::Array((0..n).map(|_| self.try_read()).collect::<Option<_>>()?)
            }
            _ => panic!("unexpected reply line {line:?}"),
        })
    }

    /// True while the server has sent nothing back: a long poll is still parked.
    fn nothing_to_read(&mut self) -> bool {
        assert!(self.reader.buffer().is_empty(), "a reply half read");
        self.writer.set_nonblocking(true).unwrap();
        let peeked = self.writer.peek(&mut [0u8; 1]);
        self.writer.set_nonblocking(false).unwrap();
        matches!(peeked, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

fn start(extra: &[&str]) -> (tempfile::TempDir, ServerGuard) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), extra);
    (dir, server)
}

/// `FLIN_STREAM_FULL=1` asks for the full sizes.
fn full_size() -> bool {
    std::env::var_os("FLIN_STREAM_FULL").is_some_and(|v| v != "0")
}

/// A fetched or consumed record: `[partition, offset, timestamp, key, headers, value]`.
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    partition: u32,
    offset: u64,
    timestamp_ms: i64,
    key: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    value: Vec<u8>,
}

fn record(v: &V) -> Rec {
    let items = v.items();
    assert_eq!(items.len(), 6, "a record has six fields: {v:?}");
    Rec {
        partition: items[0].int() as u32,
        offset: items[1].int() as u64,
        timestamp_ms: items[2].int(),
        key: match &items[3] {
            V::Null => None,
            key => Some(key.bulk().to_vec()),
        },
        headers: items[4]
            .items()
            .chunks(2)
            .map(|h| (h[0].bulk().to_vec(), h[1].bulk().to_vec()))
            .collect(),
        value: items[5].bulk().to_vec(),
    }
}

fn records(v: &V) -> Vec<Rec> {
    v.items().iter().map(record).collect()
}

/// One partition as STREAM.DESCRIBE shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PartitionInfo {
    first: u64,
    next: u64,
    bytes: u64,
    oldest_timestamp_ms: i64,
}

fn partitions(c: &mut Conn, topic: &str) -> Vec<PartitionInfo> {
    let described = c.cmd(&["STREAM.DESCRIBE", topic]);
    described
        .field("partition_info")
        .items()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            assert_eq!(p.field("partition").int(), i as i64);
            PartitionInfo {
                first: p.field("first").int() as u64,
                next: p.field("next").int() as u64,
                bytes: p.field("bytes").int() as u64,
                oldest_timestamp_ms: p.field("oldest_timestamp").int(),
            }
        })
        .collect()
}

/// Every record of `partition` from `from` to its next offset, fetched in pages.
fn fetch_all(c: &mut Conn, topic: &str, partition: u32, from: u64) -> Vec<Rec> {
    let next = partitions(c, topic)[partition as usize].next;
    let mut all = Vec::new();
    let mut at = from;
    while at < next {
        let page = c.cmd_owned(&[
            "STREAM.FETCH".into(),
            topic.into(),
            partition.to_string(),
            at.to_string(),
            "COUNT".into(),
            "10000".into(),
            "MAXBYTES".into(),
            "100000000".into(),
        ]);
        let page = records(&page);
        assert!(
            !page.is_empty(),
            "offset {at} below next {next} gave nothing"
        );
        at = page.last().unwrap().offset + 1;
        all.extend(page);
    }
    all
}

/// STREAM.JOIN: (generation, partitions).
fn join(c: &mut Conn, topic: &str, group: &str, consumer: &str, extra: &[&str]) -> (u64, Vec<u32>) {
    let mut args = vec!["STREAM.JOIN", topic, group, consumer];
    args.extend_from_slice(extra);
    let joined = c.cmd(&args);
    let items = joined.items();
    let partitions = items[1].items().iter().map(|p| p.int() as u32).collect();
    (items[0].int() as u64, partitions)
}

/// STREAM.OFFSETS as (partition, committed or -1).
fn committed(c: &mut Conn, topic: &str, group: &str) -> Vec<(u32, i64)> {
    c.cmd(&["STREAM.OFFSETS", topic, group])
        .items()
        .iter()
        .map(|pair| (pair.items()[0].int() as u32, pair.items()[1].int()))
        .collect()
}

/// `[partition, offset]` from STREAM.PUBLISH.
fn placed(v: &V) -> (u32, u64) {
    let items = v.items();
    (items[0].int() as u32, items[1].int() as u64)
}

/// `[[partition, base, count]...]` from STREAM.MPUBLISH.
fn placed_batch(v: &V) -> Vec<(u32, u64, u64)> {
    v.items()
        .iter()
        .map(|entry| {
            let e = entry.items();
            (e[0].int() as u32, e[1].int() as u64, e[2].int() as u64)
        })
        .collect()
}

/// Publishes `values` as one MPUBLISH batch; returns (partition, offset) per value, in order.
/// Only for batches that land in one partition (VALUES, or KEYED under a single key).
fn mpublish_one_partition(c: &mut Conn, head: &[&str], values: &[String]) -> Vec<(u32, u64)> {
    let mut args: Vec<String> = head.iter().map(|a| a.to_string()).collect();
    let keyed = head.last() == Some(&"KEYED");
    for value in values {
        if keyed {
            args.push("same-key".into());
        }
        args.push(value.clone());
    }
    let reply = c.cmd_owned(&args);
    let batch = placed_batch(&reply);
    assert_eq!(batch.len(), 1, "one partition: {reply:?}");
    let (partition, base, count) = batch[0];
    assert_eq!(count, values.len() as u64);
    (0..count).map(|i| (partition, base + i)).collect()
}

/// Polls `check` every 20 ms until it holds, at most `limit`; false if it never did.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

// ----- 1. dense offsets -----------------------------------------------------------------------

/// 8 connections publish at once to a 3-partition topic, through every publish form (sticky,
/// PARTITION, KEY with headers, MPUBLISH VALUES, MPUBLISH PARTITION, MPUBLISH KEYED under one
/// key). Afterwards every partition's offsets 0..next are each held by exactly one
/// acknowledged record, and the record fetched at each offset is the one acknowledged there.
#[test]
fn eight_publishers_get_dense_offsets_each_held_by_one_acknowledged_record() {
    const PUBLISHERS: usize = 8;
    const PARTITIONS: u32 = 3;
    // Records per publisher: 1,000 here (about a second in a debug build); 25,000 with
    // FLIN_STREAM_FULL=1.
    let per_publisher: usize = if full_size() { 25_000 } else { 1_000 };
    let (_dir, server) = start(&[]);
    Conn::open(server.addr).ok(&["STREAM.CREATE", "dense", "PARTITIONS", "3"]);
    let addr = server.addr;
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                // (partition, offset, value, key) per acknowledged record.
                let mut acked: Vec<(u32, u64, String, Option<String>)> = Vec::new();
                let mut n = 0;
                let mut step = 0;
                while n < per_publisher {
                    let value = |i: usize| format!("p{publisher}-r{i}");
                    match step % 6 {
                        0 => {
                            let at = placed(&c.cmd(&["STREAM.PUBLISH", "dense", &value(n)]));
                            acked.push((at.0, at.1, value(n), None));
                            n += 1;
                        }
                        1 => {
                            let p = (step % PARTITIONS as usize).to_string();
                            let at = placed(&c.cmd(&[
                                "STREAM.PUBLISH",
                                "dense",
                                "PARTITION",
                                &p,
                                &value(n),
                            ]));
                            assert_eq!(at.0.to_string(), p);
                            acked.push((at.0, at.1, value(n), None));
                            n += 1;
                        }
                        2 => {
                            let key = format!("k{publisher}-{n}");
                            let at = placed(&c.cmd(&[
                                "STREAM.PUBLISH",
                                "dense",
                                "KEY",
                                &key,
                                &value(n),
                                "HEADER",
                                "from",
                                &publisher.to_string(),
                            ]));
                            acked.push((at.0, at.1, value(n), Some(key)));
                            n += 1;
                        }
                        form => {
                            let len = (1 + step % 37).min(per_publisher - n);
                            let values: Vec<String> = (n..n + len).map(value).collect();
                            let p = (step % PARTITIONS as usize).to_string();
                            let head = match form {
                                3 => vec!["STREAM.MPUBLISH", "dense", "VALUES"],
                                4 => vec!["STREAM.MPUBLISH", "dense", "PARTITION", &p, "VALUES"],
                                _ => vec!["STREAM.MPUBLISH", "dense", "KEYED"],
                            };
                            let at = mpublish_one_partition(&mut c, &head, &values);
                            for ((partition, offset), value) in at.into_iter().zip(values) {
                                let key = (form == 5).then(|| "same-key".to_string());
                                acked.push((partition, offset, value, key));
                            }
                            n += len;
                        }
                    }
                    step += 1;
                }
                acked
            })
        })
        .collect();
    let mut by_offset: HashMap<(u32, u64), (String, Option<String>)> = HashMap::new();
    for publisher in publishers {
        let acked = publisher.join().unwrap();
        // One connection's publishes are sequential: in each partition its offsets rise.
        let mut last: HashMap<u32, u64> = HashMap::new();
        for (partition, offset, value, key) in acked {
            if let Some(&before) = last.get(&partition) {
                assert!(offset > before, "{value} at {offset} after {before}");
            }
            last.insert(partition, offset);
            let twice = by_offset.insert((partition, offset), (value.clone(), key));
            assert!(
                twice.is_none(),
                "partition {partition} offset {offset} acknowledged twice: {twice:?} and {value}"
            );
        }
    }
    assert_eq!(by_offset.len(), PUBLISHERS * per_publisher);
    let mut c = Conn::open(server.addr);
    let described = partitions(&mut c, "dense");
    assert_eq!(described.len(), PARTITIONS as usize);
    let mut total = 0;
    for (p, info) in described.iter().enumerate() {
        let p = p as u32;
        assert_eq!(info.first, 0);
        let held = by_offset.keys().filter(|(q, _)| *q == p).count() as u64;
        assert_eq!(
            info.next, held,
            "partition {p}: next offset vs records acknowledged"
        );
        let fetched = fetch_all(&mut c, "dense", p, 0);
        assert_eq!(fetched.len() as u64, info.next);
        for (i, rec) in fetched.iter().enumerate() {
            assert_eq!(
                (rec.partition, rec.offset),
                (p, i as u64),
                "dense, in order"
            );
            let (value, key) = &by_offset[&(p, rec.offset)];
            assert_eq!(rec.value, value.as_bytes(), "partition {p} offset {i}");
            assert_eq!(rec.key.as_deref(), key.as_ref().map(String::as_bytes));
            // PUBLISH ... KEY (keys "k<publisher>-<n>") carried the publisher as a header.
            let headers = match key {
                Some(k) if k.starts_with('k') => {
                    let publisher = value[1..].split('-').next().unwrap();
                    vec![(b"from".to_vec(), publisher.as_bytes().to_vec())]
                }
                _ => Vec::new(),
            };
            assert_eq!(rec.headers, headers, "partition {p} offset {i}");
            assert!(rec.timestamp_ms > 0);
        }
        total += fetched.len();
    }
    assert_eq!(total, PUBLISHERS * per_publisher);
}

// ----- 2. long polls --------------------------------------------------------------------------

/// Waits until `conn`, which sent a long poll, is parked (a reply to its first look would
/// have arrived by now), so what follows exercises the wake-up, not the first look.
fn assert_parked(conn: &mut Conn) {
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        conn.nothing_to_read(),
        "the long poll answered before any publish"
    );
}

/// A STREAM.FETCH or STREAM.CONSUME with BLOCK 5000 answers as soon as another connection
/// publishes (a publish to another partition does not answer a FETCH); with nothing
/// published it answers an empty array once its BLOCK time has passed.
#[test]
fn long_polls_wake_on_a_publish_and_time_out_empty() {
    const WAKE_MS_MAX: u128 = 1000;
    let (_dir, server) = start(&[]);
    let mut producer = Conn::open(server.addr);
    producer.ok(&["STREAM.CREATE", "lp", "PARTITIONS", "2"]);

    // FETCH BLOCK: a publish to partition 1 wakes the topic's waiters but gives partition 0
    // nothing; the publish to partition 0 answers it.
    let mut fetcher = Conn::open(server.addr);
    fetcher.send(&["STREAM.FETCH", "lp", "0", "0", "BLOCK", "5000"]);
    assert_parked(&mut fetcher);
    producer.cmd(&["STREAM.PUBLISH", "lp", "PARTITION", "1", "elsewhere"]);
    assert_parked(&mut fetcher);
    let published = Instant::now();
    assert_eq!(
        placed(&producer.cmd(&["STREAM.PUBLISH", "lp", "PARTITION", "0", "hello"])),
        (0, 0)
    );
    let got = records(&fetcher.read());
    let fetch_wake = published.elapsed();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].partition, got[0].offset), (0, 0));
    assert_eq!(got[0].value, b"hello");

    // CONSUME BLOCK: the member starts at LATEST, parks, and the publish answers it.
    let mut consumer = Conn::open(server.addr);
    join(&mut consumer, "lp", "g", "c1", &[]);
    consumer.send(&["STREAM.CONSUME", "lp", "g", "c1", "BLOCK", "5000"]);
    assert_parked(&mut consumer);
    let published = Instant::now();
    assert_eq!(
        placed(&producer.cmd(&["STREAM.PUBLISH", "lp", "PARTITION", "1", "later"])),
        (1, 1)
    );
    let got = records(&consumer.read());
    let consume_wake = published.elapsed();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].partition, got[0].offset), (1, 1));
    assert_eq!(got[0].value, b"later");

    println!("long-poll wake-up after a publish: FETCH {fetch_wake:?}, CONSUME {consume_wake:?}");
    assert!(
        fetch_wake.as_millis() < WAKE_MS_MAX,
        "FETCH woke after {fetch_wake:?}"
    );
    assert!(
        consume_wake.as_millis() < WAKE_MS_MAX,
        "CONSUME woke after {consume_wake:?}"
    );

    // Timeouts: nothing arrives, an empty array after about the BLOCK time.
    for (what, conn, args) in [
        (
            "FETCH",
            &mut fetcher,
            ["STREAM.FETCH", "lp", "0", "1", "BLOCK", "300"],
        ),
        (
            "CONSUME",
            &mut consumer,
            ["STREAM.CONSUME", "lp", "g", "c1", "BLOCK", "300"],
        ),
    ] {
        let started = Instant::now();
        assert_eq!(conn.cmd(&args), V::Array(vec![]));
        let waited = started.elapsed();
        println!("{what} BLOCK 300 with nothing published answered after {waited:?}");
        assert!(
            waited >= Duration::from_millis(290),
            "{what} gave up early: {waited:?}"
        );
        assert!(
            waited < Duration::from_millis(1300),
            "{what} overslept: {waited:?}"
        );
    }
    // Without BLOCK, nothing there is an empty array at once; the connections still work.
    assert_eq!(
        fetcher.cmd(&["STREAM.FETCH", "lp", "0", "1"]),
        V::Array(vec![])
    );
    assert_eq!(consumer.cmd(&["PING"]), V::Simple("PONG".into()));
}

// ----- 3. restarts ----------------------------------------------------------------------------

/// Under `--fsync always`, through a clean restart and then kill -9 (SIGKILL by the server's
/// pid) while a publisher is mid-stream: every acknowledged record is fetchable at its offset,
/// next offsets continue (none is reused), committed offsets, topics, partitions and
/// retention settings survive, and group members must JOIN again (REBALANCE before that).
#[test]
fn restart_and_kill_9_keep_acknowledged_records_offsets_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &["--fsync", "always"]);
    let mut c = Conn::open(server.addr);
    // Retention large enough that the timer never trims what this test checks.
    c.ok(&[
        "STREAM.CREATE",
        "orders",
        "PARTITIONS",
        "4",
        "RETENTION",
        "86400000",
        "RETENTIONBYTES",
        "1000000000",
    ]);
    c.ok(&["STREAM.CREATE", "audit", "PARTITIONS", "2"]);
    c.ok(&["STREAM.ALTER", "audit", "PARTITIONS", "3"]);
    let mut acked: Vec<(u32, u64, String)> = Vec::new();
    for batch in 0..8 {
        let values: Vec<String> = (0..25).map(|i| format!("b{batch}-{i}")).collect();
        let at = mpublish_one_partition(&mut c, &["STREAM.MPUBLISH", "orders", "VALUES"], &values);
        acked.extend(at.into_iter().zip(values).map(|((p, o), v)| (p, o, v)));
    }
    for i in 0..20 {
        let value = format!("single-{i}");
        let (p, o) = placed(&c.cmd(&["STREAM.PUBLISH", "orders", "KEY", &value, &value]));
        acked.push((p, o, value));
    }
    // A member consumes some and commits where it got in each partition.
    let (generation, assigned) = join(&mut c, "orders", "billing", "m1", &["RESET", "EARLIEST"]);
    assert_eq!(assigned, vec![0, 1, 2, 3]);
    let got = records(&c.cmd(&["STREAM.CONSUME", "orders", "billing", "m1", "COUNT", "120"]));
    assert_eq!(got.len(), 120);
    let mut commit = vec![
        "STREAM.COMMIT".to_string(),
        "orders".into(),
        "billing".into(),
        "m1".into(),
        generation.to_string(),
    ];
    let mut consumed_to: HashMap<u32, u64> = HashMap::new();
    for rec in &got {
        consumed_to.insert(rec.partition, rec.offset + 1);
    }
    for (p, o) in &consumed_to {
        commit.push(p.to_string());
        commit.push(o.to_string());
    }
    assert_eq!(c.cmd_owned(&commit), V::Simple("OK".into()));
    let offsets_before = committed(&mut c, "orders", "billing");
    let describe_before = c.cmd(&["STREAM.DESCRIBE", "orders"]);
    let audit_before = c.cmd(&["STREAM.DESCRIBE", "audit"]);
    drop(c);

    // A clean restart.
    server.terminate();
    let server = ServerGuard::start(dir.path(), &["--fsync", "always"]);
    let mut c = Conn::open(server.addr);
    assert_eq!(c.cmd(&["STREAM.DESCRIBE", "orders"]), describe_before);
    assert_eq!(c.cmd(&["STREAM.DESCRIBE", "audit"]), audit_before);
    acked.extend(check_after_restart(
        &mut c,
        &acked,
        &offsets_before,
        generation,
    ));
    // Joining again resumes from the committed offsets (EARLIEST where none), once.
    let (generation, _) = join(&mut c, "orders", "billing", "m1", &[]);
    let resumed = records(&c.cmd(&["STREAM.CONSUME", "orders", "billing", "m1", "COUNT", "1000"]));
    let mut first_seen: HashMap<u32, u64> = HashMap::new();
    for rec in &resumed {
        first_seen.entry(rec.partition).or_insert(rec.offset);
    }
    for (p, o) in &first_seen {
        assert_eq!(
            *o,
            consumed_to.get(p).copied().unwrap_or(0),
            "partition {p} resumes there"
        );
    }
    assert_eq!(resumed.len(), acked.len() - got.len(), "the rest, once");
    drop(c);

    // kill -9 while a publisher is mid-stream: what it was told is durable.
    let addr = server.addr;
    let publisher = std::thread::spawn(move || {
        let mut c = Conn::open(addr);
        let mut acked = Vec::new();
        for i in 0.. {
            let value = format!("racing-{i}");
            if c.try_send(&["STREAM.PUBLISH", "orders", &value]).is_err() {
                return acked;
            }
            let Some(reply) = c.try_read() else {
                return acked; // the server died before answering
            };
            let (p, o) = placed(&reply);
            acked.push((p, o, value));
        }
        unreachable!("the server is killed first")
    });
    std::thread::sleep(Duration::from_millis(300));
    kill_9(server.pid());
    let racing = publisher.join().unwrap();
    assert!(
        !racing.is_empty(),
        "the publisher got acknowledgements before the kill"
    );
    println!("{} publishes acknowledged before kill -9", racing.len());
    acked.extend(racing);
    server.crash(); // reaps the process kill -9 ended
    let server = ServerGuard::start(dir.path(), &["--fsync", "always"]);
    let mut c = Conn::open(server.addr);
    let described = c.cmd(&["STREAM.DESCRIBE", "orders"]);
    for (name, value) in [
        ("partitions", 4),
        ("retention", 86_400_000),
        ("retentionbytes", 1_000_000_000),
    ] {
        assert_eq!(described.field(name).int(), value, "{name}");
    }
    assert_eq!(c.cmd(&["STREAM.DESCRIBE", "audit"]), audit_before);
    assert_eq!(
        c.cmd(&["STREAM.LIST"]),
        V::Array(vec![
            V::Bulk(b"audit".to_vec()),
            V::Bulk(b"orders".to_vec())
        ])
    );
    check_after_restart(&mut c, &acked, &offsets_before, generation);
}

/// SIGKILL by pid, as `kill -9 <pid>` does.
fn kill_9(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -9 {pid}");
}

/// After a restart: every acknowledged record is at its offset; a new publish to each
/// partition gets an offset past every acknowledged one (no reuse); the committed offsets are
/// `offsets`; the member of `generation` must join again. Returns the records it published.
fn check_after_restart(
    c: &mut Conn,
    acked: &[(u32, u64, String)],
    offsets: &[(u32, i64)],
    generation: u64,
) -> Vec<(u32, u64, String)> {
    let mut published = Vec::new();
    let described = partitions(c, "orders");
    let mut fetched: HashMap<u32, Vec<Rec>> = HashMap::new();
    for (p, info) in described.iter().enumerate() {
        let p = p as u32;
        fetched.insert(p, fetch_all(c, "orders", p, info.first));
        let highest = acked.iter().filter(|a| a.0 == p).map(|a| a.1 + 1).max();
        assert!(
            info.next >= highest.unwrap_or(0),
            "partition {p}: {info:?} vs {highest:?}"
        );
        let (at_p, at_o) = placed(&c.cmd(&[
            "STREAM.PUBLISH",
            "orders",
            "PARTITION",
            &p.to_string(),
            "after-restart",
        ]));
        assert_eq!((at_p, at_o), (p, info.next), "the next offset continues");
        published.push((at_p, at_o, "after-restart".to_string()));
    }
    for (p, o, value) in acked {
        let first = described[*p as usize].first;
        let rec = &fetched[p][(*o - first) as usize];
        assert_eq!((rec.partition, rec.offset), (*p, *o));
        assert_eq!(rec.value, value.as_bytes(), "partition {p} offset {o}");
    }
    assert_eq!(committed(c, "orders", "billing"), offsets);
    let heartbeat = c.cmd(&[
        "STREAM.HEARTBEAT",
        "orders",
        "billing",
        "m1",
        &generation.to_string(),
    ]);
    assert!(heartbeat.error().starts_with("REBALANCE "), "{heartbeat:?}");
    let consume = c.cmd(&["STREAM.CONSUME", "orders", "billing", "m1"]);
    assert!(consume.error().starts_with("REBALANCE "), "{consume:?}");
    let commit = c.cmd(&[
        "STREAM.COMMIT",
        "orders",
        "billing",
        "m1",
        &generation.to_string(),
        "0",
        "0",
    ]);
    assert!(commit.error().starts_with("REBALANCE "), "{commit:?}");
    assert_eq!(
        committed(c, "orders", "billing"),
        offsets,
        "the refused commit"
    );
    published
}

// ----- 4. a consumer group under load ---------------------------------------------------------

/// 4 members of a group (all joined before the first publish, so no rebalance happens while
/// they consume) read an 8-partition topic while 2 publishers publish into it: every record
/// is delivered, and with clean commits and no rebalance, exactly once; the group ends with
/// every offset committed and no lag.
#[test]
fn four_members_consume_what_two_publishers_publish_exactly_once() {
    const CONSUMERS: usize = 4;
    const PUBLISHERS: usize = 2;
    const BATCH: usize = 500;
    // The 1,000,000 records with FLIN_STREAM_FULL=1; 100,000 here (a few seconds in a
    // debug build).
    let total: usize = if full_size() { 1_000_000 } else { 100_000 };
    let deadline = Instant::now() + Duration::from_secs(if full_size() { 900 } else { 60 });
    let (_dir, server) = start(&[]);
    let addr = server.addr;
    Conn::open(addr).ok(&["STREAM.CREATE", "load", "PARTITIONS", "8"]);
    let joined = Arc::new(Barrier::new(CONSUMERS + PUBLISHERS));
    let delivered = Arc::new(Mutex::new(HashSet::<u64>::with_capacity(total)));
    let duplicates = Arc::new(AtomicUsize::new(0));
    let rebalances = Arc::new(AtomicUsize::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|i| {
            let (joined, delivered, duplicates, rebalances) = (
                joined.clone(),
                delivered.clone(),
                duplicates.clone(),
                rebalances.clone(),
            );
            std::thread::spawn(move || {
                let name = format!("c{i}");
                let mut c = Conn::open(addr);
                join(&mut c, "load", "g", &name, &["RESET", "EARLIEST"]);
                joined.wait();
                // Every member is in: joining again changes nothing and names the generation
                // and partitions everyone consumes under.
                let (mut generation, assigned) = join(&mut c, "load", "g", &name, &[]);
                assert_eq!(assigned.len(), 2, "{name}: 8 partitions over 4 members");
                let consume = [
                    "STREAM.CONSUME",
                    "load",
                    "g",
                    name.as_str(),
                    "COUNT",
                    "500",
                    "BLOCK",
                    "100",
                ];
                while delivered.lock().unwrap().len() < total {
                    assert!(Instant::now() < deadline, "{name}: out of time");
                    let reply = c.cmd(&consume);
                    if let V::Error(e) = &reply {
                        assert!(e.starts_with("REBALANCE "), "{e}");
                        rebalances.fetch_add(1, Ordering::Relaxed);
                        generation = join(&mut c, "load", "g", &name, &[]).0;
                        continue;
                    }
                    let got = records(&reply);
                    if got.is_empty() {
                        continue;
                    }
                    let mut commit = vec![
                        "STREAM.COMMIT".to_string(),
                        "load".into(),
                        "g".into(),
                        name.clone(),
                        generation.to_string(),
                    ];
                    let mut next: HashMap<u32, u64> = HashMap::new();
                    for rec in &got {
                        let at = next.entry(rec.partition).or_insert(rec.offset);
                        assert!(rec.offset >= *at, "in order within a partition");
                        *at = rec.offset + 1;
                    }
                    for (p, o) in &next {
                        commit.push(p.to_string());
                        commit.push(o.to_string());
                    }
                    let committed = c.cmd_owned(&commit);
                    if let V::Error(e) = &committed {
                        assert!(e.starts_with("REBALANCE "), "{e}");
                        rebalances.fetch_add(1, Ordering::Relaxed);
                        generation = join(&mut c, "load", "g", &name, &[]).0;
                    }
                    // Counted once committed, so when the last record is counted every commit
                    // that covers it has been acknowledged.
                    let mut delivered = delivered.lock().unwrap();
                    for rec in got {
                        let id: u64 = std::str::from_utf8(&rec.value).unwrap().parse().unwrap();
                        if !delivered.insert(id) {
                            duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (joined, published) = (joined.clone(), published.clone());
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                joined.wait();
                let share = total / PUBLISHERS;
                for start in (p * share..(p + 1) * share).step_by(BATCH) {
                    let end = (start + BATCH).min((p + 1) * share);
                    let mut args = vec![
                        "STREAM.MPUBLISH".to_string(),
                        "load".into(),
                        "VALUES".into(),
                    ];
                    args.extend((start..end).map(|id| id.to_string()));
                    let batch = placed_batch(&c.cmd_owned(&args));
                    assert_eq!(batch.iter().map(|b| b.2).sum::<u64>(), (end - start) as u64);
                    published.fetch_add((end - start) as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    publishers.into_iter().for_each(|t| t.join().unwrap());
    let published_in = started.elapsed();
    consumers.into_iter().for_each(|t| t.join().unwrap());
    println!(
        "{total} records: published in {published_in:?}, all consumed in {:?}; {} duplicates, {} rebalances",
        started.elapsed(),
        duplicates.load(Ordering::Relaxed),
        rebalances.load(Ordering::Relaxed)
    );
    assert_eq!(published.load(Ordering::Relaxed), total as u64);
    let delivered = delivered.lock().unwrap();
    assert_eq!(delivered.len(), total, "every record delivered");
    assert!((0..total as u64).all(|id| delivered.contains(&id)));
    assert_eq!(
        rebalances.load(Ordering::Relaxed),
        0,
        "nobody joined or left"
    );
    assert_eq!(
        duplicates.load(Ordering::Relaxed),
        0,
        "clean commits: exactly once"
    );
    let mut c = Conn::open(addr);
    let described = partitions(&mut c, "load");
    assert_eq!(described.iter().map(|p| p.next).sum::<u64>(), total as u64);
    let offsets = committed(&mut c, "load", "g");
    for (p, info) in described.iter().enumerate() {
        assert_eq!(
            offsets[p],
            (p as u32, info.next as i64),
            "partition {p} committed to its end"
        );
    }
    for entry in c.cmd(&["STREAM.LAG", "load", "g"]).items() {
        assert_eq!(entry.items()[3], V::Int(0), "no lag: {entry:?}");
    }
}

// ----- 5. refusals ----------------------------------------------------------------------------

/// The errors a client sees, worded as issue 12 says; a refused command changes nothing.
#[test]
fn refusals_name_what_is_wrong_and_change_nothing() {
    let (_dir, server) = start(&[]);
    let mut c = Conn::open(server.addr);
    c.ok(&["STREAM.CREATE", "t", "PARTITIONS", "3"]);
    assert_eq!(
        c.cmd(&["STREAM.CREATE", "t", "PARTITIONS", "3"]).error(),
        "ERR STREAM.CREATE: topic 't' already exists"
    );
    for i in 0..3 {
        c.cmd(&["STREAM.PUBLISH", "t", "PARTITION", "0", &format!("v{i}")]);
    }

    // Unknown topic.
    assert_eq!(
        c.cmd(&["STREAM.FETCH", "nope", "0", "0"]).error(),
        "ERR STREAM.FETCH: unknown topic 'nope'"
    );
    assert_eq!(
        c.cmd(&["STREAM.PUBLISH", "nope", "v"]).error(),
        "ERR STREAM.PUBLISH: unknown topic 'nope'"
    );
    assert_eq!(
        c.cmd(&["STREAM.DESCRIBE", "nope"]).error(),
        "ERR STREAM.DESCRIBE: unknown topic 'nope'"
    );
    assert_eq!(
        c.cmd(&["STREAM.JOIN", "nope", "g", "c"]).error(),
        "ERR STREAM.JOIN: unknown topic 'nope'"
    );

    // A partition the topic does not have.
    assert_eq!(
        c.cmd(&["STREAM.FETCH", "t", "3", "0"]).error(),
        "ERR STREAM.FETCH: partition 3 does not exist: topic 't' has partitions 0 to 2"
    );
    assert_eq!(
        c.cmd(&["STREAM.PUBLISH", "t", "PARTITION", "7", "v"])
            .error(),
        "ERR STREAM.PUBLISH: partition 7 does not exist: topic 't' has partitions 0 to 2"
    );
    assert!(c
        .cmd(&["STREAM.FETCH", "t", "x", "0"])
        .error()
        .starts_with("ERR STREAM.FETCH: partition must be an integer"));

    // Offsets that are not numbers, or not there.
    for bad in ["abc", "-1", "1.5"] {
        assert_eq!(
            c.cmd(&["STREAM.FETCH", "t", "0", bad]).error(),
            format!(
                "ERR STREAM.FETCH: offset must be an integer from 0 to {}, got '{bad}'",
                i64::MAX
            )
        );
    }
    assert_eq!(
        c.cmd(&["STREAM.FETCH", "t", "0", "5"]).error(),
        "ERR STREAM.FETCH: offset 5 out of range for topic 't' partition 0 (first 0, next 3)"
    );
    assert_eq!(
        c.cmd(&["STREAM.FETCH", "t", "1", "1"]).error(),
        "ERR STREAM.FETCH: offset 1 out of range for topic 't' partition 1 (first 0, next 0)"
    );
    assert_eq!(
        c.cmd(&["STREAM.FETCH", "t", "0", "3"]),
        V::Array(vec![]),
        "next: nothing yet"
    );
    assert_eq!(
        describe_nexts(&mut c, "t"),
        vec![3, 0, 0],
        "no refusal published anything"
    );

    // Generation fencing: c1 joined at generation 1; c2's join moves the group to 2.
    let (first_generation, all) = join(&mut c, "t", "g", "c1", &["RESET", "EARLIEST"]);
    assert_eq!(all, vec![0, 1, 2]);
    c.ok(&[
        "STREAM.COMMIT",
        "t",
        "g",
        "c1",
        &first_generation.to_string(),
        "0",
        "1",
    ]);
    let mut other = Conn::open(server.addr);
    let (generation, theirs) = join(&mut other, "t", "g", "c2", &[]);
    assert_eq!(generation, first_generation + 1);
    assert_eq!(
        c.cmd(&[
            "STREAM.COMMIT",
            "t",
            "g",
            "c1",
            &first_generation.to_string(),
            "0",
            "3",
        ])
        .error(),
        format!(
            "REBALANCE group 'g' is at generation {generation}, not {first_generation}: join again"
        )
    );
    let heartbeat = c.cmd(&[
        "STREAM.HEARTBEAT",
        "t",
        "g",
        "c1",
        &first_generation.to_string(),
    ]);
    assert!(heartbeat.error().starts_with("REBALANCE "), "{heartbeat:?}");
    assert_eq!(
        committed(&mut c, "t", "g"),
        vec![(0, 1), (1, -1), (2, -1)],
        "nothing committed"
    );

    // After joining again, c1 may commit only the partitions it holds, and a commit naming
    // one it does not hold commits none of its pairs.
    let (now, mine) = join(&mut c, "t", "g", "c1", &[]);
    assert_eq!(now, generation);
    assert!(
        theirs.iter().all(|p| !mine.contains(p)),
        "{mine:?} vs {theirs:?}"
    );
    let (held, not_held) = (mine[0], theirs[0]);
    let refused = c.cmd(&[
        "STREAM.COMMIT",
        "t",
        "g",
        "c1",
        &now.to_string(),
        &held.to_string(),
        "0",
        &not_held.to_string(),
        "0",
    ]);
    assert_eq!(
        refused.error(),
        format!("REBALANCE partition {not_held} is not assigned to consumer 'c1' in generation {now}: join again")
    );
    assert_eq!(
        committed(&mut c, "t", "g"),
        vec![(0, 1), (1, -1), (2, -1)],
        "all or none"
    );
    assert_eq!(
        c.cmd(&["STREAM.COMMIT", "t", "g", "c1", &now.to_string(), "9", "0"])
            .error(),
        "ERR STREAM.COMMIT: partition 9 does not exist: topic 't' has partitions 0 to 2"
    );
    assert_eq!(
        c.cmd(&["STREAM.HEARTBEAT", "t", "g", "stranger", &now.to_string()]).error(),
        "REBALANCE consumer 'stranger' is not a member of group 'g' (never joined, left or evicted): join again"
    );
    // Past the next offset: a commit and a seek are refused.
    assert_eq!(
        c.cmd(&["STREAM.COMMIT", "t", "g", "c1", &now.to_string(), "0", "4"])
            .error(),
        "ERR STREAM.COMMIT: offset 4 for partition 0 is past its next offset 3"
    );
    assert_eq!(
        c.cmd(&["STREAM.SEEK", "t", "g", "0", "4"]).error(),
        "ERR STREAM.SEEK: offset 4 out of range for topic 't' partition 0 (first 0, next 3)"
    );
    assert_eq!(committed(&mut c, "t", "g"), vec![(0, 1), (1, -1), (2, -1)]);

    // Partition counts out of bounds; a shrink.
    for bad in ["0", "1025"] {
        assert_eq!(
            c.cmd(&["STREAM.CREATE", "u", "PARTITIONS", bad]).error(),
            format!("ERR STREAM.CREATE: PARTITIONS must be from 1 to 1024, got {bad}")
        );
    }
    assert_eq!(
        c.cmd(&["STREAM.ALTER", "t", "PARTITIONS", "2"]).error(),
        "ERR STREAM.ALTER: partitions can only grow: topic 't' has 3, asked for 2"
    );
    assert_eq!(
        c.cmd(&["STREAM.LIST"]),
        V::Array(vec![V::Bulk(b"t".to_vec())])
    );

    // Group commands are not allowed inside MULTI (publishes are: the outbox, tested in
    // server/tests/documents.rs); the refusal dooms the EXEC.
    c.ok(&["MULTI"]);
    assert_eq!(
        c.cmd(&["STREAM.JOIN", "t", "g", "m"]).error(),
        "ERR STREAM.JOIN is not allowed inside MULTI"
    );
    assert_eq!(
        c.cmd(&["STREAM.PUBLISH", "t", "PARTITION", "0", "v"]),
        V::Simple("QUEUED".into())
    );
    assert!(c.cmd(&["EXEC"]).error().starts_with("EXECABORT"));
    assert_eq!(describe_nexts(&mut c, "t"), vec![3, 0, 0]);
}

fn describe_nexts(c: &mut Conn, topic: &str) -> Vec<u64> {
    partitions(c, topic).iter().map(|p| p.next).collect()
}

// ----- 6. retention ---------------------------------------------------------------------------

/// Blocks close at 64 KiB (`BLOCK_BYTES`), and retention drops whole blocks.
const BLOCK_BYTES: u64 = 64 << 10;

/// RETENTIONBYTES: the server's timer (every 50 ms) drops the oldest blocks while the rest
/// still holds the limit; the first offset moves, a fetch below it is out of range, the bytes
/// stay bounded, and all of that survives a restart. RETENTION by age: once every record is
/// older than the limit, the first offset reaches the next.
#[test]
fn retention_by_bytes_and_by_age_moves_the_first_offset() {
    const RETENTION_BYTES: u64 = 150_000;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerGuard::start(dir.path(), &[]);
    let mut c = Conn::open(server.addr);
    c.ok(&[
        "STREAM.CREATE",
        "sized",
        "PARTITIONS",
        "1",
        "RETENTIONBYTES",
        &RETENTION_BYTES.to_string(),
    ]);
    // 20 batches of 40 records of 1,000 bytes: about 800 KB, a dozen blocks.
    let mut next = 0;
    for batch in 0..20 {
        let values: Vec<String> = (0..40)
            .map(|i| format!("{batch:04}-{i:04}-{}", "x".repeat(990)))
            .collect();
        let at = mpublish_one_partition(&mut c, &["STREAM.MPUBLISH", "sized", "VALUES"], &values);
        assert_eq!(at[0], (0, next));
        next += values.len() as u64;
    }
    assert!(
        eventually(Duration::from_secs(5), || partitions(&mut c, "sized")[0]
            .first
            > 0),
        "the timer never trimmed: {:?}",
        partitions(&mut c, "sized")
    );
    let trimmed = partitions(&mut c, "sized")[0];
    println!("RETENTIONBYTES {RETENTION_BYTES}: {trimmed:?}");
    assert_eq!(trimmed.next, next);
    assert!(
        trimmed.bytes >= RETENTION_BYTES,
        "keeps at least the limit: {trimmed:?}"
    );
    assert!(
        trimmed.bytes < RETENTION_BYTES + 2 * BLOCK_BYTES,
        "bounded: {trimmed:?}"
    );
    let below = trimmed.first - 1;
    assert_eq!(
        c.cmd(&["STREAM.FETCH", "sized", "0", &below.to_string()]).error(),
        format!(
            "ERR STREAM.FETCH: offset {below} out of range for topic 'sized' partition 0 (first {}, next {next})",
            trimmed.first
        )
    );
    let kept = fetch_all(&mut c, "sized", 0, trimmed.first);
    assert_eq!(kept.len() as u64, next - trimmed.first);
    assert_eq!(kept[0].offset, trimmed.first);
    let (batch, i) = (trimmed.first / 40, trimmed.first % 40);
    assert!(kept[0]
        .value
        .starts_with(format!("{batch:04}-{i:04}-").as_bytes()));

    // By age: everything published before the limit passes goes, down to the next offset.
    c.ok(&[
        "STREAM.CREATE",
        "aged",
        "PARTITIONS",
        "1",
        "RETENTION",
        "1000",
    ]);
    for batch in 0..3 {
        let values: Vec<String> = (0..40)
            .map(|i| format!("{batch}-{i}-{}", "y".repeat(1000)))
            .collect();
        mpublish_one_partition(&mut c, &["STREAM.MPUBLISH", "aged", "VALUES"], &values);
    }
    let before = partitions(&mut c, "aged")[0];
    assert_eq!((before.first, before.next), (0, 120));
    assert!(before.oldest_timestamp_ms > 0);
    assert!(
        eventually(Duration::from_secs(5), || partitions(&mut c, "aged")[0]
            .first
            == 120),
        "age retention never ran: {:?}",
        partitions(&mut c, "aged")
    );
    let aged = partitions(&mut c, "aged")[0];
    assert_eq!(
        aged,
        PartitionInfo {
            first: 120,
            next: 120,
            bytes: 0,
            oldest_timestamp_ms: -1
        }
    );
    assert!(c
        .cmd(&["STREAM.FETCH", "aged", "0", "0"])
        .error()
        .contains("(first 120, next 120)"));
    assert_eq!(
        c.cmd(&["STREAM.FETCH", "aged", "0", "120"]),
        V::Array(vec![])
    );
    drop(c);

    // After a restart the first offsets stay where retention put them; the next offsets too.
    server.terminate();
    let server = ServerGuard::start(dir.path(), &[]);
    let mut c = Conn::open(server.addr);
    let after = partitions(&mut c, "sized")[0];
    assert_eq!(
        (after.first, after.next, after.bytes),
        (trimmed.first, trimmed.next, trimmed.bytes)
    );
    let aged_after = partitions(&mut c, "aged")[0];
    assert_eq!((aged_after.first, aged_after.next), (120, 120));
    assert_eq!(
        placed(&c.cmd(&["STREAM.PUBLISH", "aged", "fresh"])),
        (0, 120),
        "offsets are not reused after every record aged out"
    );
}

// ----- 7. found while writing these ----------------------------------------------------------

/// One MPUBLISH larger than a chunk (`CHUNK_BYTES_MAX`, 1 MiB) is several chunks of one
/// write, so of one seq. A fetch that stops at the end of a chunk leaves the hint
/// (end, seq + 1) (core.rs, `Streams::fetch`), and the next fetch from `end` starts reading
/// the log after the write that holds the rest of the batch: it answers an empty array
/// though `end` < next, and keeps doing so after later publishes (before c79fb91 it
/// answered records of a later write instead: a gap). A CONSUME whose COUNT ends on a chunk
/// boundary (COUNT 1 always does) is stuck there for good, its lag never shrinking; a
/// restart, which forgets the hints, unsticks it.
#[test]
fn fetches_continue_across_the_chunks_of_one_large_batch() {
    let (_dir, server) = start(&[]);
    let mut c = Conn::open(server.addr);
    // 4 records of 400 KB: two chunks of two records (a third would pass 1 MiB), one write.
    let values: Vec<String> = (0..4)
        .map(|i| format!("{i}{}", "v".repeat(400_000)))
        .collect();
    let offsets = |got: &[Rec]| got.iter().map(|r| r.offset).collect::<Vec<_>>();
    for topic in ["control", "paged", "consumed"] {
        c.ok(&["STREAM.CREATE", topic, "PARTITIONS", "1"]);
        mpublish_one_partition(&mut c, &["STREAM.MPUBLISH", topic, "VALUES"], &values);
    }
    // Before any fetch has left a hint, offset 2 reads fine.
    let got = records(&c.cmd(&["STREAM.FETCH", "control", "0", "2", "COUNT", "2"]));
    assert_eq!(offsets(&got), vec![2, 3]);
    // Paging by COUNT 2 stops at the first chunk's end; the next page is the second chunk.
    let got = records(&c.cmd(&["STREAM.FETCH", "paged", "0", "0", "COUNT", "2"]));
    assert_eq!(offsets(&got), vec![0, 1]);
    let got = records(&c.cmd(&["STREAM.FETCH", "paged", "0", "2", "COUNT", "2"]));
    assert_eq!(offsets(&got), vec![2, 3], "the second chunk of the write");
    // A member consuming one record at a time sees every record once, in order.
    let (generation, _) = join(&mut c, "consumed", "g", "m", &["RESET", "EARLIEST"]);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let got = records(&c.cmd(&["STREAM.CONSUME", "consumed", "g", "m", "COUNT", "1"]));
        seen.extend(offsets(&got));
    }
    assert_eq!(seen, vec![0, 1, 2, 3]);
    c.ok(&[
        "STREAM.COMMIT",
        "consumed",
        "g",
        "m",
        &generation.to_string(),
        "0",
        "4",
    ]);
}

/// The same with default limits: a record larger than MAXBYTES (1 MiB) is a chunk of its
/// own and fills a fetch alone, so the fetch stops at its chunk's end; the small records
/// published with it in one MPUBLISH must come next.
#[test]
fn a_fetch_after_a_record_larger_than_maxbytes_gets_the_rest_of_its_batch() {
    let (_dir, server) = start(&[]);
    let mut c = Conn::open(server.addr);
    c.ok(&["STREAM.CREATE", "t", "PARTITIONS", "1"]);
    let large = "L".repeat(1_500_000);
    let batch = placed_batch(&c.cmd(&["STREAM.MPUBLISH", "t", "VALUES", &large, "a", "b"]));
    assert_eq!(batch, vec![(0, 0, 3)]);
    let got = records(&c.cmd(&["STREAM.FETCH", "t", "0", "0"]));
    assert_eq!(got.len(), 1, "the large record alone fills MAXBYTES");
    let got = records(&c.cmd(&["STREAM.FETCH", "t", "0", "1"]));
    let values: Vec<&[u8]> = got.iter().map(|r| r.value.as_slice()).collect();
    assert_eq!(values, vec![b"a".as_slice(), b"b".as_slice()]);
}

/// A member waiting in `CONSUME ... BLOCK` is consuming, but the wait does not count as
/// alive: only a look (the first, and one per wake-up) refreshes the member, so on a quiet
/// topic it is evicted after SESSION while it waits, its partitions move, and nothing tells
/// it (an eviction wakes no long poll; the first publish to the topic, or the BLOCK deadline,
/// answers REBALANCE). Kafka's consumer keeps heartbeating while it polls. Either fix passes:
/// the waiting member stays in the group, or its wait is answered REBALANCE when it is
/// evicted.
#[test]
fn a_member_waiting_in_consume_block_stays_a_member_or_is_told_it_left() {
    let (_dir, server) = start(&[]);
    let mut c = Conn::open(server.addr);
    c.ok(&["STREAM.CREATE", "quiet", "PARTITIONS", "2"]);
    join(&mut c, "quiet", "g", "waiter", &["SESSION", "300"]);
    c.send(&["STREAM.CONSUME", "quiet", "g", "waiter", "BLOCK", "0"]);
    // Well past SESSION and the 50 ms timer that evicts.
    std::thread::sleep(Duration::from_millis(1000));
    let mut other = Conn::open(server.addr);
    let groups = other.cmd(&["STREAM.GROUPS", "quiet"]);
    let members = groups.items()[0].field("members").items().len();
    if members == 1 {
        assert!(c.nothing_to_read(), "still a member, still waiting");
    } else {
        assert!(!c.nothing_to_read(), "evicted while waiting and never told");
        assert!(c.read().error().starts_with("REBALANCE "));
    }
}
