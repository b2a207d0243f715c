//! queue-bench: the same queue workloads against Flin (RESP) and RabbitMQ (AMQP 0-9-1, the
//! `amiquip` client), for `benches/queue-compare.sh` (docs/benchmarks.md).
//!
//! `queue-bench --target flin|rabbit --port N --workload publish|consume|both [options]`
//!
//! - `publish`: `--producers` connections each keep `--window` messages unconfirmed (Flin: a
//!   QUEUE.PUSH whose reply has not come; RabbitMQ: a persistent publish on a durable queue
//!   whose publisher confirm has not come) until `--messages` in all are confirmed. Reports
//!   the rate and the confirm latency.
//! - `consume`: fills the queue with `--messages` first (untimed), then `--consumers`
//!   subscriptions (Flin: QUEUE.SUBSCRIBE PREFETCH p; RabbitMQ: basic.consume, qos p, manual
//!   acks) take and acknowledge them; each consumer acks what it has read in one command
//!   (Flin: QUEUE.ACK with every id; RabbitMQ: ack with `multiple`). Reports the rate.
//!   `--consume-by pop` (Flin only): consumers pull with QUEUE.BPOP COUNT prefetch and ack each
//!   batch with one QUEUE.ACK, instead of subscribing.
//! - `both`: producers and consumers at once; each payload carries its send time, so the
//!   consumers measure the end-to-end latency (p50, p99, p99.9).
//!
//! Options: `--host` (127.0.0.1), `--port`, `--queue` (bench.q), `--messages` (200000),
//! `--size` (payload bytes, 100, at least 8), `--producers` (4), `--consumers` (4),
//! `--window` (100), `--prefetch` (100), `--server-pid PID` (reports the server's CPU time
//! per message from /proc), `--rate N` (messages per second over all producers, paced; for
//! latency runs, so the queue does not grow). Bounded: every run stops after 120 s.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

const TIME_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Flin,
    Rabbit,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Publish,
    Consume,
    Both,
}

#[derive(Clone, Debug)]
struct Args {
    target: Target,
    host: String,
    port: u16,
    queue: String,
    workload: Workload,
    messages: u64,
    size: usize,
    producers: usize,
    consumers: usize,
    window: usize,
    prefetch: u16,
    server_pid: Option<u32>,
    /// Messages per second over all producers (0: as fast as the window allows).
    rate: u64,
    /// Flin consumers take messages with QUEUE.BPOP COUNT prefetch instead of a subscription.
    pop: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        target: Target::Flin,
        host: "127.0.0.1".into(),
        port: 7380,
        queue: "bench.q".into(),
        workload: Workload::Publish,
        messages: 200_000,
        size: 100,
        producers: 4,
        consumers: 4,
        window: 100,
        prefetch: 100,
        server_pid: None,
        rate: 0,
        pop: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| -> Result<u64, String> {
            text.replace('_', "")
                .parse()
                .map_err(|_| format!("'{text}' is not a number"))
        };
        match flag.as_str() {
            "--target" => {
                args.target = match value()?.as_str() {
                    "flin" => Target::Flin,
                    "rabbit" => Target::Rabbit,
                    other => return Err(format!("--target: '{other}' is not flin or rabbit")),
                }
            }
            "--workload" => {
                args.workload = match value()?.as_str() {
                    "publish" => Workload::Publish,
                    "consume" => Workload::Consume,
                    "both" => Workload::Both,
                    other => return Err(format!("--workload: '{other}'")),
                }
            }
            "--host" => args.host = value()?,
            "--port" => args.port = number(value()?)? as u16,
            "--queue" => args.queue = value()?,
            "--messages" => args.messages = number(value()?)?,
            "--size" => args.size = (number(value()?)? as usize).max(8),
            "--producers" => args.producers = number(value()?)?.max(1) as usize,
            "--consumers" => args.consumers = number(value()?)?.max(1) as usize,
            "--window" => args.window = number(value()?)?.max(1) as usize,
            "--prefetch" => args.prefetch = number(value()?)?.clamp(1, 65535) as u16,
            "--server-pid" => args.server_pid = Some(number(value()?)? as u32),
            "--rate" => args.rate = number(value()?)?,
            "--consume-by" => {
                args.pop = match value()?.as_str() {
                    "pop" => true,
                    "subscribe" => false,
                    other => {
                        return Err(format!("--consume-by: '{other}' is not pop or subscribe"))
                    }
                }
            }
            other => {
                return Err(format!(
                    "unknown flag {other} (see the top of queue-bench.rs)"
                ))
            }
        }
    }
    Ok(args)
}

/// Nanoseconds since the process's first call: producers stamp payloads with it, consumers
/// (in the same process) compare.
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn payload(size: usize) -> Vec<u8> {
    let mut payload = vec![b'x'; size];
    payload[..8].copy_from_slice(&now_ns().to_le_bytes());
    payload
}

fn stamp_of(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn server_cpu_ticks(pid: Option<u32>) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// What the threads share: counts, histograms, the stop flag.
struct Shared {
    confirmed: AtomicU64,
    consumed: AtomicU64,
    stop: AtomicBool,
    confirm_us: Mutex<Histogram<u64>>,
    e2e_us: Mutex<Histogram<u64>>,
    /// Messages each producer still has to publish (taken in chunks).
    to_publish: AtomicU64,
    total: u64,
    /// Pacing: message i may leave at `started + i / rate`.
    rate: u64,
    started: OnceLock<Instant>,
}

impl Shared {
    fn paced(messages: u64, rate: u64) -> Arc<Shared> {
        let mut shared = Shared::new(messages);
        Arc::get_mut(&mut shared).expect("fresh").rate = rate;
        shared
    }

    fn new(messages: u64) -> Arc<Shared> {
        Arc::new(Shared {
            confirmed: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            confirm_us: Mutex::new(histogram()),
            e2e_us: Mutex::new(histogram()),
            to_publish: AtomicU64::new(messages),
            total: messages,
            rate: 0,
            started: OnceLock::new(),
        })
    }

    /// Takes one message to publish, if any is left.
    fn take_one(&self) -> bool {
        let Ok(left) = self
            .to_publish
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        else {
            return false;
        };
        if let Some(offset_ns) = ((self.total - left) * 1_000_000_000).checked_div(self.rate) {
            let started = *self.started.get_or_init(Instant::now);
            let due = started + Duration::from_nanos(offset_ns);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        true
    }
}

// ----- Flin over RESP -----

enum V {
    Int(i64),
    Simple,
    Error(String),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<V>),
}

fn read_value(reader: &mut BufReader<TcpStream>) -> std::io::Result<V> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.len() < 3 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ));
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad reply");
    Ok(match line[0] {
        b'+' => V::Simple,
        b'-' => V::Error(text),
        b':' => V::Int(text.parse().map_err(|_| bad())?),
        b'$' => {
            let n: i64 = text.parse().map_err(|_| bad())?;
            if n < 0 {
                return Ok(V::Null);
            }
            let mut buf = vec![0; n as usize + 2];
            std::io::Read::read_exact(reader, &mut buf)?;
            buf.truncate(n as usize);
            V::Bulk(buf)
        }
        b'*' | b'>' | b'%' => {
            let n: i64 = text.parse().map_err(|_| bad())?;
            if n < 0 {
                return Ok(V::Null);
            }
            let n = if line[0] == b'%' { 2 * n } else { n };
            V::Array(
                (0..n)
                    .map(|_| read_value(reader))
                    .collect::<Result<_, _>>()?,
            )
        }
        _ => return Err(bad()),
    })
}

fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn flin_connect(args: &Args) -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
    let stream = TcpStream::connect((args.host.as_str(), args.port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok((
        stream.try_clone()?,
        BufReader::with_capacity(1 << 16, stream),
    ))
}

fn flin_call(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, args: &[&[u8]]) -> V {
    let mut out = Vec::new();
    encode(&mut out, args);
    stream.write_all(&out).expect("send");
    read_value(reader).expect("reply")
}

/// A paced producer sends each message when it is due and reads the replies on a thread of
/// its own, so a sleeping sender never delays a confirm's reading.
fn flin_paced_producer(args: Args, shared: Arc<Shared>) {
    let (mut stream, mut reader) = flin_connect(&args).expect("connect");
    let sent_at = Arc::new(Mutex::new(std::collections::VecDeque::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let replies = {
        let (sent_at, sent, done, shared) =
            (sent_at.clone(), sent.clone(), done.clone(), shared.clone());
        std::thread::spawn(move || {
            let mut local = histogram();
            let mut received = 0;
            while received < sent.load(Ordering::Acquire) || !done.load(Ordering::Acquire) {
                if received == sent.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
                match read_value(&mut reader).expect("reply") {
                    V::Int(_) => {}
                    V::Error(e) => panic!("QUEUE.PUSH: {e}"),
                    _ => panic!("QUEUE.PUSH: unexpected reply"),
                }
                let sent: Instant = sent_at.lock().unwrap().pop_front().expect("sent");
                local.record(sent.elapsed().as_micros().max(1) as u64).ok();
                received += 1;
                shared.confirmed.fetch_add(1, Ordering::Relaxed);
            }
            shared.confirm_us.lock().unwrap().add(&local).ok();
        })
    };
    let mut out = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) && shared.take_one() {
        out.clear();
        encode(
            &mut out,
            &[b"QUEUE.PUSH", args.queue.as_bytes(), &payload(args.size)],
        );
        sent_at.lock().unwrap().push_back(Instant::now());
        sent.fetch_add(1, Ordering::Release);
        stream.write_all(&out).expect("send");
    }
    done.store(true, Ordering::Release);
    replies.join().expect("reply reader");
}

fn flin_producer(args: Args, shared: Arc<Shared>) {
    if args.rate > 0 {
        return flin_paced_producer(args, shared);
    }
    let (mut stream, mut reader) = flin_connect(&args).expect("connect");
    let mut sent_at = std::collections::VecDeque::new();
    let mut out = Vec::new();
    let queue = args.queue.as_bytes();
    let refill =
        |out: &mut Vec<u8>, sent_at: &mut std::collections::VecDeque<Instant>, n: usize| {
            for _ in 0..n {
                if !shared.take_one() {
                    break;
                }
                let body = payload(args.size);
                encode(out, &[b"QUEUE.PUSH", queue, &body]);
                sent_at.push_back(Instant::now());
            }
        };
    refill(&mut out, &mut sent_at, args.window);
    stream.write_all(&out).expect("send");
    let mut local = histogram();
    while let Some(sent) = sent_at.pop_front() {
        match read_value(&mut reader).expect("reply") {
            V::Int(_) => {}
            V::Error(e) => panic!("QUEUE.PUSH: {e}"),
            _ => panic!("QUEUE.PUSH: unexpected reply"),
        }
        local.record(sent.elapsed().as_micros().max(1) as u64).ok();
        let mut done = 1;
        while !reader.buffer().is_empty() && !sent_at.is_empty() {
            let sent = sent_at.pop_front().expect("outstanding");
            match read_value(&mut reader).expect("reply") {
                V::Int(_) => {}
                V::Error(e) => panic!("QUEUE.PUSH: {e}"),
                _ => panic!("QUEUE.PUSH: unexpected reply"),
            }
            local.record(sent.elapsed().as_micros().max(1) as u64).ok();
            done += 1;
        }
        shared.confirmed.fetch_add(done, Ordering::Relaxed);
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        out.clear();
        refill(&mut out, &mut sent_at, done as usize);
        if !out.is_empty() {
            stream.write_all(&out).expect("send");
        }
    }
    shared.confirm_us.lock().unwrap().add(&local).ok();
}

/// A consumer that pulls: QUEUE.BPOP COUNT prefetch, then one QUEUE.ACK of every id taken.
fn flin_pop_consumer(args: Args, shared: Arc<Shared>, target: u64) {
    let (mut stream, mut reader) = flin_connect(&args).expect("connect");
    let count = args.prefetch.to_string();
    let queue = args.queue.as_bytes();
    let mut local = histogram();
    while shared.consumed.load(Ordering::Relaxed) < target && !shared.stop.load(Ordering::Relaxed) {
        let V::Array(messages) = flin_call(
            &mut stream,
            &mut reader,
            &[b"QUEUE.BPOP", queue, b"100", b"COUNT", count.as_bytes()],
        ) else {
            continue; // timed out (a null array)
        };
        let mut ids = Vec::with_capacity(messages.len());
        for message in &messages {
            if let V::Array(items) = message {
                if let (Some(V::Int(id)), Some(V::Bulk(body))) = (items.first(), items.get(1)) {
                    ids.push(id.to_string());
                    if let Some(stamp) = stamp_of(body) {
                        local
                            .record((now_ns().saturating_sub(stamp) / 1000).max(1))
                            .ok();
                    }
                }
            }
        }
        if ids.is_empty() {
            continue;
        }
        let mut command: Vec<&[u8]> = vec![b"QUEUE.ACK", queue];
        command.extend(ids.iter().map(|id| id.as_bytes()));
        match flin_call(&mut stream, &mut reader, &command) {
            V::Int(n) if n as usize == ids.len() => {}
            V::Error(e) => panic!("QUEUE.ACK: {e}"),
            _ => panic!("QUEUE.ACK: unexpected reply"),
        }
        shared
            .consumed
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
    }
    shared.e2e_us.lock().unwrap().add(&local).ok();
}

fn flin_consumer(args: Args, shared: Arc<Shared>, target: u64) {
    if args.pop {
        return flin_pop_consumer(args, shared, target);
    }
    let (mut stream, mut reader) = flin_connect(&args).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let prefetch = args.prefetch.to_string();
    let mut out = Vec::new();
    encode(
        &mut out,
        &[
            b"QUEUE.SUBSCRIBE",
            args.queue.as_bytes(),
            b"PREFETCH",
            prefetch.as_bytes(),
        ],
    );
    stream.write_all(&out).expect("send");
    let mut local = histogram();
    let mut ids: Vec<String> = Vec::new();
    loop {
        if shared.consumed.load(Ordering::Relaxed) >= target || shared.stop.load(Ordering::Relaxed)
        {
            break;
        }
        let value = match read_value(&mut reader) {
            Ok(value) => value,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => panic!("consumer: {e}"),
        };
        let mut handle = |value: V, ids: &mut Vec<String>| match value {
            V::Array(items) if items.len() == 7 => {
                if let (V::Int(id), V::Bulk(body)) = (&items[2], &items[3]) {
                    ids.push(id.to_string());
                    if let Some(stamp) = stamp_of(body) {
                        local
                            .record((now_ns().saturating_sub(stamp) / 1000).max(1))
                            .ok();
                    }
                }
            }
            V::Int(_) | V::Simple => {}
            V::Error(e) => panic!("consumer: {e}"),
            _ => {}
        };
        handle(value, &mut ids);
        while !reader.buffer().is_empty() {
            let value = read_value(&mut reader).expect("value");
            handle(value, &mut ids);
        }
        if !ids.is_empty() {
            out.clear();
            let mut command: Vec<&[u8]> = vec![b"QUEUE.ACK", args.queue.as_bytes()];
            command.extend(ids.iter().map(|id| id.as_bytes()));
            encode(&mut out, &command);
            stream.write_all(&out).expect("ack");
            shared
                .consumed
                .fetch_add(ids.len() as u64, Ordering::Relaxed);
            ids.clear();
        }
    }
    shared.e2e_us.lock().unwrap().add(&local).ok();
}

fn flin_prepare(args: &Args) {
    let (mut stream, mut reader) = flin_connect(args).expect("connect");
    let queue = args.queue.as_bytes();
    if let V::Error(e) = flin_call(&mut stream, &mut reader, &[b"QUEUE.DECLARE", queue]) {
        panic!("QUEUE.DECLARE: {e}");
    }
    flin_call(&mut stream, &mut reader, &[b"QUEUE.PURGE", queue]);
}

// ----- RabbitMQ over AMQP -----

fn rabbit_url(args: &Args) -> String {
    format!("amqp://guest:guest@{}:{}", args.host, args.port)
}

fn rabbit_declare(channel: &amiquip::Channel, args: &Args) -> amiquip::Result<()> {
    channel.queue_declare(
        args.queue.clone(),
        amiquip::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
    )?;
    Ok(())
}

fn rabbit_prepare(args: &Args) {
    let mut connection = amiquip::Connection::insecure_open(&rabbit_url(args)).expect("connect");
    let channel = connection.open_channel(None).expect("channel");
    rabbit_declare(&channel, args).expect("declare");
    channel.queue_purge(args.queue.clone()).expect("purge");
    connection.close().ok();
}

fn rabbit_paced_producer(args: Args, shared: Arc<Shared>) {
    let mut connection = amiquip::Connection::insecure_open(&rabbit_url(&args)).expect("connect");
    let channel = connection.open_channel(None).expect("channel");
    let confirms = channel.listen_for_publisher_confirms().expect("confirms");
    channel.enable_publisher_confirms().expect("confirm.select");
    let properties = amiquip::AmqpProperties::default().with_delivery_mode(2);
    let sent_at = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (sent_at, sent, done, shared) =
            (sent_at.clone(), sent.clone(), done.clone(), shared.clone());
        std::thread::spawn(move || {
            let mut local = histogram();
            let mut confirmed = 0;
            while confirmed < sent.load(Ordering::Acquire) || !done.load(Ordering::Acquire) {
                let Ok(confirm) = confirms.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let (amiquip::Confirm::Ack(p) | amiquip::Confirm::Nack(p)) = confirm;
                let mut sent_at = sent_at.lock().unwrap();
                let tags: Vec<u64> = if p.multiple {
                    sent_at.range(..=p.delivery_tag).map(|(t, _)| *t).collect()
                } else {
                    vec![p.delivery_tag]
                };
                for tag in tags {
                    if let Some(at) = sent_at.remove(&tag) {
                        let at: Instant = at;
                        local.record(at.elapsed().as_micros().max(1) as u64).ok();
                        confirmed += 1;
                        shared.confirmed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            shared.confirm_us.lock().unwrap().add(&local).ok();
        })
    };
    let mut tag = 0;
    while !shared.stop.load(Ordering::Relaxed) && shared.take_one() {
        let body = payload(args.size);
        tag += 1;
        sent_at.lock().unwrap().insert(tag, Instant::now());
        channel
            .basic_publish(
                "",
                amiquip::Publish::with_properties(&body, args.queue.clone(), properties.clone()),
            )
            .expect("publish");
        sent.fetch_add(1, Ordering::Release);
    }
    done.store(true, Ordering::Release);
    reader.join().expect("confirm reader");
    connection.close().ok();
}

fn rabbit_producer(args: Args, shared: Arc<Shared>) {
    if args.rate > 0 {
        return rabbit_paced_producer(args, shared);
    }
    let mut connection = amiquip::Connection::insecure_open(&rabbit_url(&args)).expect("connect");
    let channel = connection.open_channel(None).expect("channel");
    let confirms = channel.listen_for_publisher_confirms().expect("confirms");
    channel.enable_publisher_confirms().expect("confirm.select");
    let properties = amiquip::AmqpProperties::default().with_delivery_mode(2);
    let mut sent_at = std::collections::BTreeMap::new();
    let mut next_tag = 1u64;
    let mut publish = |sent_at: &mut std::collections::BTreeMap<u64, Instant>, n: usize| {
        for _ in 0..n {
            if !shared.take_one() {
                break;
            }
            let body = payload(args.size);
            channel
                .basic_publish(
                    "",
                    amiquip::Publish::with_properties(
                        &body,
                        args.queue.clone(),
                        properties.clone(),
                    ),
                )
                .expect("publish");
            sent_at.insert(next_tag, Instant::now());
            next_tag += 1;
        }
    };
    publish(&mut sent_at, args.window);
    let mut local = histogram();
    while !sent_at.is_empty() {
        let Ok(confirm) = confirms.recv_timeout(Duration::from_secs(30)) else {
            panic!("no publisher confirm within 30 s");
        };
        let (amiquip::Confirm::Ack(p) | amiquip::Confirm::Nack(p)) = confirm;
        let done: Vec<u64> = if p.multiple {
            sent_at.range(..=p.delivery_tag).map(|(t, _)| *t).collect()
        } else {
            vec![p.delivery_tag]
        };
        for tag in &done {
            if let Some(sent) = sent_at.remove(tag) {
                local.record(sent.elapsed().as_micros().max(1) as u64).ok();
            }
        }
        shared
            .confirmed
            .fetch_add(done.len() as u64, Ordering::Relaxed);
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        publish(&mut sent_at, done.len());
    }
    shared.confirm_us.lock().unwrap().add(&local).ok();
    connection.close().ok();
}

fn rabbit_consumer(args: Args, shared: Arc<Shared>, target: u64) {
    let mut connection = amiquip::Connection::insecure_open(&rabbit_url(&args)).expect("connect");
    let channel = connection.open_channel(None).expect("channel");
    channel.qos(0, args.prefetch, false).expect("qos");
    let queue = channel
        .queue_declare(
            args.queue.clone(),
            amiquip::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
        )
        .expect("declare");
    let consumer = queue
        .consume(amiquip::ConsumerOptions::default())
        .expect("consume");
    let mut local = histogram();
    while shared.consumed.load(Ordering::Relaxed) < target && !shared.stop.load(Ordering::Relaxed) {
        let Ok(first) = consumer.receiver().recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let mut last = None;
        let mut count = 0u64;
        let mut take = |message: amiquip::ConsumerMessage| {
            if let amiquip::ConsumerMessage::Delivery(delivery) = message {
                if let Some(stamp) = stamp_of(&delivery.body) {
                    local
                        .record((now_ns().saturating_sub(stamp) / 1000).max(1))
                        .ok();
                }
                count += 1;
                last = Some(delivery);
            }
        };
        take(first);
        while let Ok(message) = consumer.receiver().try_recv() {
            take(message);
        }
        if let Some(delivery) = last {
            consumer.ack_multiple(delivery).expect("ack");
            shared.consumed.fetch_add(count, Ordering::Relaxed);
        }
    }
    shared.e2e_us.lock().unwrap().add(&local).ok();
    connection.close().ok();
}

// ----- the run -----

fn spawn_producers(args: &Args, shared: &Arc<Shared>) -> Vec<std::thread::JoinHandle<()>> {
    (0..args.producers)
        .map(|_| {
            let (args, shared) = (args.clone(), shared.clone());
            std::thread::spawn(move || match args.target {
                Target::Flin => flin_producer(args, shared),
                Target::Rabbit => rabbit_producer(args, shared),
            })
        })
        .collect()
}

fn spawn_consumers(
    args: &Args,
    shared: &Arc<Shared>,
    target: u64,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..args.consumers)
        .map(|_| {
            let (args, shared) = (args.clone(), shared.clone());
            std::thread::spawn(move || match args.target {
                Target::Flin => flin_consumer(args, shared, target),
                Target::Rabbit => rabbit_consumer(args, shared, target),
            })
        })
        .collect()
}

fn watchdog(shared: &Arc<Shared>) {
    let shared = shared.clone();
    std::thread::spawn(move || {
        std::thread::sleep(TIME_LIMIT);
        shared.stop.store(true, Ordering::Relaxed);
    });
}

fn percentiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "-".into();
    }
    format!(
        "{}/{}/{}",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999)
    )
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("queue-bench: {e}");
            std::process::exit(2);
        }
    };
    now_ns();
    match args.target {
        Target::Flin => flin_prepare(&args),
        Target::Rabbit => rabbit_prepare(&args),
    }
    if args.workload == Workload::Consume {
        // Fill the queue, untimed.
        let fill = Shared::new(args.messages);
        spawn_producers(&args, &fill)
            .into_iter()
            .for_each(|t| t.join().expect("producer"));
    }
    let shared = Shared::paced(args.messages, args.rate);
    watchdog(&shared);
    let cpu_before = server_cpu_ticks(args.server_pid);
    let started = Instant::now();
    let mut threads = Vec::new();
    if args.workload != Workload::Consume {
        threads.extend(spawn_producers(&args, &shared));
    }
    if args.workload != Workload::Publish {
        threads.extend(spawn_consumers(&args, &shared, args.messages));
    }
    threads.into_iter().for_each(|t| t.join().expect("worker"));
    let seconds = started.elapsed().as_secs_f64();
    let cpu = server_cpu_ticks(args.server_pid)
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let messages = match args.workload {
        Workload::Publish => shared.confirmed.load(Ordering::Relaxed),
        _ => shared.consumed.load(Ordering::Relaxed),
    };
    let confirm = shared.confirm_us.lock().unwrap();
    let e2e = shared.e2e_us.lock().unwrap();
    println!(
        "target={:?}{} workload={:?} messages={messages} size={} producers={} consumers={} window={} prefetch={} seconds={seconds:.2} rate={:.0} confirm_us_p50/p99/p999={} e2e_us_p50/p99/p999={} server_cpu_us_per_msg={}{}",
        args.target,
        if args.pop { "-pop" } else { "" },
        args.workload,
        args.size,
        args.producers,
        args.consumers,
        args.window,
        args.prefetch,
        messages as f64 / seconds,
        percentiles(&confirm),
        percentiles(&e2e),
        cpu.map_or("-".to_string(), |ticks| format!("{:.2}", ticks as f64 * 10_000.0 / messages.max(1) as f64)),
        if shared.stop.load(Ordering::Relaxed) { " (stopped by the 120 s limit)" } else { "" },
    );
}
