//! stream-bench: the same stream workloads against Flin (RESP), Redis streams (RESP) and NATS
//! JetStream (NATS's text protocol), for `benches/stream-compare.sh` (docs/benchmarks.md).
//! No client libraries: each peer is spoken to over a plain socket, so the three sides cost
//! the client the same (and this bench adds no dependency).
//!
//! `stream-bench --target flin|redis|nats --port N --workload publish|consume|fetch|latency [options]`
//!
//! - `publish`: `--connections` connections each keep `--window` publishes unanswered until
//!   `--messages` in all are acknowledged. Flin: STREAM.PUBLISH (one partition); Redis:
//!   `XADD s * f <value>`; NATS: a JetStream publish with a reply subject, counted when
//!   JetStream's ack (`{"stream":..,"seq":..}`) arrives (acked async publish, file storage).
//! - `consume`: fills the stream with `--messages` first (untimed), then one group consumer
//!   reads and acknowledges them in batches of `--batch`: Flin: STREAM.CONSUME COUNT b then
//!   STREAM.COMMIT of the last offset + 1; Redis: XREADGROUP COUNT b then XACK of every id;
//!   NATS: a durable pull consumer (explicit acks), a fetch of b then an ack per message.
//! - `fetch` (Flin): fills one partition, then one connection reads it from offset 0 with
//!   STREAM.FETCH COUNT `--batch`, request after request.
//! - `latency` (Flin and Redis): one producer publishes `--rate` records/s carrying their
//!   send time; one consumer waits with BLOCK (STREAM.CONSUME / XREADGROUP) and records
//!   publish-to-receive latency (p50, p99, p99.9).
//!
//! Options: `--host` (127.0.0.1), `--port`, `--messages` (200000), `--size` (value bytes,
//! 100, at least 8), `--connections` (4), `--window` (16), `--batch` (100), `--rate`
//! (20000), `--server-pid PID` (reports the server's CPU per message from /proc). Every run
//! stops after 120 s.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

const TIME_LIMIT: Duration = Duration::from_secs(120);
const TOPIC: &str = "bench";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Flin,
    Redis,
    Nats,
}

#[derive(Clone, Debug)]
struct Args {
    target: Target,
    host: String,
    port: u16,
    workload: String,
    messages: u64,
    size: usize,
    connections: usize,
    window: usize,
    batch: usize,
    rate: u64,
    server_pid: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        target: Target::Flin,
        host: "127.0.0.1".into(),
        port: 7380,
        workload: "publish".into(),
        messages: 200_000,
        size: 100,
        connections: 4,
        window: 16,
        batch: 100,
        rate: 20_000,
        server_pid: None,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < raw.len() {
        let value = raw
            .get(i + 1)
            .cloned()
            .ok_or(format!("{} needs a value", raw[i]))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{}: not a number", raw[i]))
        };
        match raw[i].as_str() {
            "--target" => {
                args.target = match value.as_str() {
                    "flin" => Target::Flin,
                    "redis" => Target::Redis,
                    "nats" => Target::Nats,
                    other => return Err(format!("unknown target {other}")),
                }
            }
            "--host" => args.host = value,
            "--port" => args.port = number()? as u16,
            "--workload" => args.workload = value,
            "--messages" => args.messages = number()?,
            "--size" => args.size = (number()? as usize).max(8),
            "--connections" => args.connections = (number()? as usize).max(1),
            "--window" => args.window = (number()? as usize).max(1),
            "--batch" => args.batch = (number()? as usize).max(1),
            "--rate" => args.rate = number()?.max(1),
            "--server-pid" => args.server_pid = Some(number()? as u32),
            other => return Err(format!("unknown option {other}")),
        }
        i += 2;
    }
    Ok(args)
}

// ----- RESP ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Resp {
    Simple(Vec<u8>),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

/// A RESP connection with a read buffer.
struct RespConn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    out: Vec<u8>,
}

impl RespConn {
    fn open(args: &Args) -> RespConn {
        let stream = TcpStream::connect((args.host.as_str(), args.port)).expect("connect");
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(TIME_LIMIT)).ok();
        RespConn {
            stream,
            buf: Vec::with_capacity(1 << 20),
            start: 0,
            out: Vec::with_capacity(1 << 16),
        }
    }

    fn queue(&mut self, args: &[&[u8]]) {
        self.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            self.out
                .extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            self.out.extend_from_slice(arg);
            self.out.extend_from_slice(b"\r\n");
        }
    }

    fn flush(&mut self) {
        self.stream.write_all(&self.out).expect("write");
        self.out.clear();
    }

    fn call(&mut self, args: &[&[u8]]) -> Resp {
        self.queue(args);
        self.flush();
        self.read()
    }

    fn read(&mut self) -> Resp {
        loop {
            if let Some((value, used)) = parse(&self.buf[self.start..]) {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                return value;
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let len = self.buf.len();
            self.buf.resize(len + (1 << 16), 0);
            let n = self.stream.read(&mut self.buf[len..]).expect("read");
            assert!(n > 0, "server closed the connection");
            self.buf.truncate(len + n);
        }
    }
}

fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[..end], end + 2))
}

fn parse(buf: &[u8]) -> Option<(Resp, usize)> {
    let (head, used) = line(buf)?;
    let text = std::str::from_utf8(&head[1..]).ok()?;
    match head.first()? {
        b'+' => Some((Resp::Simple(head[1..].to_vec()), used)),
        b'-' => Some((Resp::Error(text.to_string()), used)),
        b':' => Some((Resp::Int(text.parse().ok()?), used)),
        b'$' => {
            let n: i64 = text.parse().ok()?;
            if n < 0 {
                return Some((Resp::Bulk(None), used));
            }
            let n = n as usize;
            (buf.len() >= used + n + 2)
                .then(|| (Resp::Bulk(Some(buf[used..used + n].to_vec())), used + n + 2))
        }
        b'*' | b'%' => {
            let n: i64 = text.parse().ok()?;
            if n < 0 {
                return Some((Resp::Array(None), used));
            }
            let items = if head[0] == b'%' {
                2 * n as usize
            } else {
                n as usize
            };
            let mut at = used;
            let mut values = Vec::with_capacity(items);
            for _ in 0..items {
                let (value, more) = parse(&buf[at..])?;
                values.push(value);
                at += more;
            }
            Some((Resp::Array(Some(values)), at))
        }
        b'_' => Some((Resp::Bulk(None), used)),
        _ => panic!("unexpected reply byte {:?}", head[0] as char),
    }
}

fn check(reply: &Resp, what: &str) {
    if let Resp::Error(e) = reply {
        panic!("{what}: {e}");
    }
}

fn items(reply: Resp) -> Vec<Resp> {
    match reply {
        Resp::Array(Some(items)) => items,
        Resp::Array(None) | Resp::Bulk(None) => Vec::new(),
        Resp::Error(e) => panic!("{e}"),
        other => panic!("expected an array, got {other:?}"),
    }
}

fn bulk(reply: Resp) -> Vec<u8> {
    match reply {
        Resp::Bulk(Some(b)) | Resp::Simple(b) => b,
        other => panic!("expected a string, got {other:?}"),
    }
}

fn int(reply: &Resp) -> i64 {
    match reply {
        Resp::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

// ----- NATS ---------------------------------------------------------------------------------

/// A NATS connection speaking the text protocol; `MSG`/`HMSG` payloads are handed to the
/// caller, PINGs answered.
struct NatsConn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    out: Vec<u8>,
}

/// A message: subject, reply subject, payload.
type NatsMsg = (Vec<u8>, Vec<u8>, Vec<u8>);

impl NatsConn {
    fn open(args: &Args) -> NatsConn {
        let stream = TcpStream::connect((args.host.as_str(), args.port)).expect("connect");
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(TIME_LIMIT)).ok();
        let mut conn = NatsConn {
            stream,
            buf: Vec::with_capacity(1 << 20),
            start: 0,
            out: Vec::new(),
        };
        conn.out.extend_from_slice(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\n",
        );
        conn.flush();
        conn
    }

    fn publish(&mut self, subject: &str, reply: Option<&str>, payload: &[u8]) {
        let head = match reply {
            Some(reply) => format!("PUB {subject} {reply} {}\r\n", payload.len()),
            None => format!("PUB {subject} {}\r\n", payload.len()),
        };
        self.out.extend_from_slice(head.as_bytes());
        self.out.extend_from_slice(payload);
        self.out.extend_from_slice(b"\r\n");
    }

    fn subscribe(&mut self, subject: &str, sid: u32) {
        self.out
            .extend_from_slice(format!("SUB {subject} {sid}\r\n").as_bytes());
    }

    fn flush(&mut self) {
        self.stream.write_all(&self.out).expect("write");
        self.out.clear();
    }

    fn fill(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + (1 << 16), 0);
        let n = self.stream.read(&mut self.buf[len..]).expect("read");
        assert!(n > 0, "nats closed the connection");
        self.buf.truncate(len + n);
    }

    /// The next MSG or HMSG (headers included in the payload for HMSG).
    fn next_msg(&mut self) -> NatsMsg {
        loop {
            let Some((head, used)) = line(&self.buf[self.start..]) else {
                self.fill();
                continue;
            };
            let head = head.to_vec();
            let words: Vec<&[u8]> = head.split(|&b| b == b' ').collect();
            match words[0] {
                b"PING" => {
                    self.start += used;
                    self.out.extend_from_slice(b"PONG\r\n");
                    self.flush();
                }
                b"PONG" | b"+OK" | b"INFO" => self.start += used,
                b"-ERR" => panic!("nats: {}", String::from_utf8_lossy(&head)),
                b"MSG" | b"HMSG" => {
                    let total: usize = std::str::from_utf8(words[words.len() - 1])
                        .unwrap()
                        .parse()
                        .unwrap();
                    let reply = match (words[0], words.len()) {
                        (b"MSG", 5) | (b"HMSG", 6) => words[3].to_vec(),
                        _ => Vec::new(),
                    };
                    if self.buf.len() - self.start < used + total + 2 {
                        self.fill();
                        continue;
                    }
                    let at = self.start + used;
                    let payload = self.buf[at..at + total].to_vec();
                    self.start = at + total + 2;
                    return (words[1].to_vec(), reply, payload);
                }
                other => panic!("nats: unexpected {}", String::from_utf8_lossy(other)),
            }
        }
    }

    /// A JetStream API request and its answer (a JSON document).
    fn api(&mut self, subject: &str, body: &str) -> String {
        self.subscribe("_INBOX.api", 9);
        self.publish(subject, Some("_INBOX.api"), body.as_bytes());
        self.flush();
        let (_, _, payload) = self.next_msg();
        self.out.extend_from_slice(b"UNSUB 9\r\n");
        String::from_utf8_lossy(&payload).into_owned()
    }
}

fn nats_setup(args: &Args) {
    let mut conn = NatsConn::open(args);
    let _ = conn.api(&format!("$JS.API.STREAM.DELETE.{TOPIC}"), "");
    let created = conn.api(
        &format!("$JS.API.STREAM.CREATE.{TOPIC}"),
        &format!(
            "{{\"name\":\"{TOPIC}\",\"subjects\":[\"{TOPIC}.>\"],\"storage\":\"file\",\"retention\":\"limits\",\"num_replicas\":1}}"
        ),
    );
    assert!(!created.contains("\"error\""), "stream create: {created}");
}

// ----- workloads ----------------------------------------------------------------------------

fn value(size: usize, stamp: bool) -> Vec<u8> {
    let mut v = vec![b'x'; size];
    if stamp {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        v[..8].copy_from_slice(&now.to_le_bytes());
    }
    v
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn setup(args: &Args) {
    match args.target {
        Target::Flin => {
            let mut c = RespConn::open(args);
            let _ = c.call(&[b"STREAM.DELETE", TOPIC.as_bytes()]);
            check(
                &c.call(&[b"STREAM.CREATE", TOPIC.as_bytes(), b"PARTITIONS", b"1"]),
                "create",
            );
        }
        Target::Redis => {
            let mut c = RespConn::open(args);
            c.call(&[b"DEL", TOPIC.as_bytes()]);
        }
        Target::Nats => nats_setup(args),
    }
}

/// Publishes `count` messages on one connection, `window` in flight.
fn publish_on(args: &Args, count: u64, conn_index: usize) {
    let payload = value(args.size, false);
    match args.target {
        Target::Flin | Target::Redis => {
            let mut c = RespConn::open(args);
            let mut sent = 0;
            while sent < count {
                let n = (count - sent).min(args.window as u64);
                for _ in 0..n {
                    match args.target {
                        Target::Flin => c.queue(&[b"STREAM.PUBLISH", TOPIC.as_bytes(), &payload]),
                        _ => c.queue(&[b"XADD", TOPIC.as_bytes(), b"*", b"f", &payload]),
                    }
                }
                c.flush();
                for _ in 0..n {
                    check(&c.read(), "publish");
                }
                sent += n;
            }
        }
        Target::Nats => {
            let mut c = NatsConn::open(args);
            let inbox = format!("_INBOX.p{conn_index}");
            c.subscribe(&format!("{inbox}.*"), 1);
            let subject = format!("{TOPIC}.s");
            let mut sent = 0;
            while sent < count {
                let n = (count - sent).min(args.window as u64);
                for i in 0..n {
                    c.publish(&subject, Some(&format!("{inbox}.{i}")), &payload);
                }
                c.flush();
                for _ in 0..n {
                    let (_, _, ack) = c.next_msg();
                    assert!(
                        !ack.windows(5).any(|w| w == b"error"),
                        "publish: {}",
                        String::from_utf8_lossy(&ack)
                    );
                }
                sent += n;
            }
        }
    }
}

fn publish(args: &Args) -> u64 {
    let per = args.messages / args.connections as u64;
    std::thread::scope(|scope| {
        for i in 0..args.connections {
            scope.spawn(move || publish_on(args, per, i));
        }
    });
    per * args.connections as u64
}

/// Fills the stream (untimed) for a consume run.
fn fill(args: &Args) {
    match args.target {
        Target::Flin => {
            let mut c = RespConn::open(args);
            let payload = value(args.size, false);
            let mut left = args.messages;
            while left > 0 {
                let n = left.min(1000);
                let mut cmd: Vec<&[u8]> = vec![b"STREAM.MPUBLISH", TOPIC.as_bytes(), b"VALUES"];
                cmd.extend(std::iter::repeat_n(payload.as_slice(), n as usize));
                check(&c.call(&cmd), "fill");
                left -= n;
            }
        }
        _ => {
            let fill_args = Args {
                connections: 1,
                window: 1000,
                ..args.clone()
            };
            publish_on(&fill_args, args.messages, 99);
        }
    }
}

/// Reads and acknowledges every message with one consumer, `batch` at a time.
fn consume(args: &Args) -> u64 {
    let mut got = 0u64;
    let deadline = Instant::now() + TIME_LIMIT;
    let batch = args.batch.to_string();
    match args.target {
        Target::Flin => {
            let mut c = RespConn::open(args);
            let joined = items(c.call(&[
                b"STREAM.JOIN",
                TOPIC.as_bytes(),
                b"g",
                b"c",
                b"RESET",
                b"EARLIEST",
            ]));
            let generation = int(&joined[0]).to_string();
            while got < args.messages && Instant::now() < deadline {
                let records = items(c.call(&[
                    b"STREAM.CONSUME",
                    TOPIC.as_bytes(),
                    b"g",
                    b"c",
                    b"COUNT",
                    batch.as_bytes(),
                ]));
                let Some(last) = records.last().cloned() else {
                    continue;
                };
                let fields = items(last);
                let next = (int(&fields[1]) + 1).to_string();
                got += records.len() as u64;
                check(
                    &c.call(&[
                        b"STREAM.COMMIT",
                        TOPIC.as_bytes(),
                        b"g",
                        b"c",
                        generation.as_bytes(),
                        b"0",
                        next.as_bytes(),
                    ]),
                    "commit",
                );
            }
        }
        Target::Redis => {
            let mut c = RespConn::open(args);
            let _ = c.call(&[
                b"XGROUP",
                b"CREATE",
                TOPIC.as_bytes(),
                b"g",
                b"0",
                b"MKSTREAM",
            ]);
            while got < args.messages && Instant::now() < deadline {
                let reply = items(c.call(&[
                    b"XREADGROUP",
                    b"GROUP",
                    b"g",
                    b"c",
                    b"COUNT",
                    batch.as_bytes(),
                    b"STREAMS",
                    TOPIC.as_bytes(),
                    b">",
                ]));
                let Some(stream) = reply.into_iter().next() else {
                    continue;
                };
                let mut parts = items(stream);
                let entries = items(parts.remove(1));
                let ids: Vec<Vec<u8>> = entries
                    .into_iter()
                    .map(|e| bulk(items(e).remove(0)))
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                got += ids.len() as u64;
                let mut cmd: Vec<&[u8]> = vec![b"XACK", TOPIC.as_bytes(), b"g"];
                cmd.extend(ids.iter().map(Vec::as_slice));
                check(&c.call(&cmd), "xack");
            }
        }
        Target::Nats => {
            let mut c = NatsConn::open(args);
            let created = c.api(
                &format!("$JS.API.CONSUMER.DURABLE.CREATE.{TOPIC}.c"),
                &format!("{{\"stream_name\":\"{TOPIC}\",\"config\":{{\"durable_name\":\"c\",\"ack_policy\":\"explicit\",\"deliver_policy\":\"all\",\"max_ack_pending\":-1}}}}"),
            );
            assert!(!created.contains("\"error\""), "consumer create: {created}");
            c.subscribe("_INBOX.pull", 2);
            while got < args.messages && Instant::now() < deadline {
                let want = (args.messages - got).min(args.batch as u64);
                let request = format!("{{\"batch\":{want},\"expires\":5000000000}}");
                c.publish(
                    &format!("$JS.API.CONSUMER.MSG.NEXT.{TOPIC}.c"),
                    Some("_INBOX.pull"),
                    request.as_bytes(),
                );
                c.flush();
                let mut this = 0;
                while this < want {
                    let (_, reply, _) = c.next_msg();
                    if reply.is_empty() {
                        continue; // a status message (timeout)
                    }
                    c.publish(std::str::from_utf8(&reply).unwrap(), None, b"");
                    this += 1;
                }
                c.flush();
                got += this;
            }
        }
    }
    got
}

/// Flin only: reads the filled partition from offset 0 with STREAM.FETCH COUNT `batch`, one
/// request after another (a sequential reader, no group).
fn fetch(args: &Args) -> u64 {
    let mut c = RespConn::open(args);
    let batch = args.batch.to_string();
    let mut offset = 0u64;
    let deadline = Instant::now() + TIME_LIMIT;
    while offset < args.messages && Instant::now() < deadline {
        let at = offset.to_string();
        let records = items(c.call(&[
            b"STREAM.FETCH",
            TOPIC.as_bytes(),
            b"0",
            at.as_bytes(),
            b"COUNT",
            batch.as_bytes(),
        ]));
        offset += records.len() as u64;
    }
    offset
}

/// One producer at `rate`/s, one blocking consumer; publish-to-receive latency.
fn latency(args: &Args) -> (u64, Histogram<u64>) {
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let consumer_args = args.clone();
    let handle = std::thread::spawn(move || {
        let args = consumer_args;
        let mut hist = Histogram::<u64>::new(3).unwrap();
        let mut c = RespConn::open(&args);
        let mut got = 0;
        let deadline = Instant::now() + TIME_LIMIT;
        let generation = match args.target {
            Target::Flin => int(&items(c.call(&[
                b"STREAM.JOIN",
                TOPIC.as_bytes(),
                b"lat",
                b"c",
                b"RESET",
                b"EARLIEST",
            ]))[0]),
            _ => {
                let _ = c.call(&[
                    b"XGROUP",
                    b"CREATE",
                    TOPIC.as_bytes(),
                    b"lat",
                    b"0",
                    b"MKSTREAM",
                ]);
                0
            }
        };
        let _ = generation;
        while got < args.messages && Instant::now() < deadline {
            let values: Vec<Vec<u8>> = match args.target {
                Target::Flin => items(c.call(&[
                    b"STREAM.CONSUME",
                    TOPIC.as_bytes(),
                    b"lat",
                    b"c",
                    b"COUNT",
                    b"1000",
                    b"BLOCK",
                    b"1000",
                ]))
                .into_iter()
                .map(|r| bulk(items(r).remove(5)))
                .collect(),
                _ => {
                    let reply = items(c.call(&[
                        b"XREADGROUP",
                        b"GROUP",
                        b"lat",
                        b"c",
                        b"COUNT",
                        b"1000",
                        b"BLOCK",
                        b"1000",
                        b"NOACK",
                        b"STREAMS",
                        TOPIC.as_bytes(),
                        b">",
                    ]));
                    reply
                        .into_iter()
                        .flat_map(|s| items(items(s).remove(1)))
                        .map(|e| {
                            let mut fv = items(items(e).remove(1));
                            bulk(fv.remove(1))
                        })
                        .collect()
                }
            };
            let now = now_ns();
            for v in &values {
                let sent = u64::from_le_bytes(v[..8].try_into().unwrap());
                hist.record(now.saturating_sub(sent) / 1000).ok();
            }
            got += values.len() as u64;
        }
        (got, hist)
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut c = RespConn::open(args);
    let interval = Duration::from_nanos(1_000_000_000 / args.rate);
    let started = Instant::now();
    for i in 0..args.messages {
        let due = started + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let v = value(args.size, true);
        let reply = match args.target {
            Target::Flin => c.call(&[b"STREAM.PUBLISH", TOPIC.as_bytes(), &v]),
            _ => c.call(&[b"XADD", TOPIC.as_bytes(), b"*", b"f", &v]),
        };
        check(&reply, "publish");
    }
    let (got, consumer_hist) = handle.join().unwrap();
    hist.add(consumer_hist).unwrap();
    (got, hist)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("stream-bench: {e}");
            std::process::exit(2);
        }
    };
    setup(&args);
    if args.workload == "consume" || args.workload == "fetch" {
        fill(&args);
    }
    let cpu_before = args.server_pid.and_then(flin_benches::process_cpu_seconds);
    let started = Instant::now();
    let (count, hist) = match args.workload.as_str() {
        "publish" => (publish(&args), None),
        "consume" => (consume(&args), None),
        "fetch" if args.target == Target::Flin => (fetch(&args), None),
        "latency" if args.target != Target::Nats => {
            let (n, h) = latency(&args);
            (n, Some(h))
        }
        other => {
            eprintln!(
                "stream-bench: unknown workload {other} for {:?}",
                args.target
            );
            std::process::exit(2);
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (
        cpu_before,
        args.server_pid.and_then(flin_benches::process_cpu_seconds),
    ) {
        (Some(a), Some(b)) => format!(
            "  server CPU {:.3} us/msg",
            (b - a) / count.max(1) as f64 * 1e6
        ),
        _ => String::new(),
    };
    print!(
        "{:?} {}: {count} messages in {elapsed:.2} s = {:.0} msg/s{cpu}",
        args.target,
        args.workload,
        count as f64 / elapsed
    );
    if let Some(h) = hist {
        print!(
            "  latency us p50 {} p99 {} p99.9 {} max {}",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    }
    println!();
}
