//! Replies that wait, over real sockets with a small test service: parked requests completed
//! from another thread or by a deadline on a manual clock, pushes to idle connections in
//! RESP2, RESP3 and the binary protocol, and reply gates that hold, release or withdraw
//! replies.
//!
//! Nothing here sleeps for a timeout: deadlines are driven by a manual clock and
//! `LoopsHandle::wake_all`, and "the loop has run since" is proven by a round trip on another
//! connection of the same (single) loop.

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flin_net::binary::{self, Op, ReplyTo, Request, Status, Value};
use flin_net::client::{ClientOptions, Connection};
use flin_net::resp::{Reply, RespVersion};
use flin_net::{
    Action, Clock, ConnectionHandle, GateStatus, LoopsHandle, Protocol, ReplyGates, Server,
    ServerConfig, Service, ShutdownHandle,
};

/// Bounds every wait for another thread; reaching it fails the test (not a timing claim).
const PATIENCE: Duration = Duration::from_secs(10);

/// Waits until `condition` holds, at most `PATIENCE`.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A clock that moves only when told to.
struct ManualClock(AtomicU64);

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A gate authority the test drives: gates open when the test says, or fail.
#[derive(Default)]
struct TestGates {
    opened_through: AtomicU64,
    failed: Mutex<Option<String>>,
    /// Highest seq a loop asked for.
    requested: AtomicU64,
}

impl ReplyGates for TestGates {
    fn status(&self) -> GateStatus {
        GateStatus {
            opened_through: self.opened_through.load(Ordering::SeqCst),
            failed: self.failed.lock().unwrap().clone(),

            withdrawn: None,
        }
    }

    fn request(&self, seq: u64, _loops: &LoopsHandle) {
        self.requested.fetch_max(seq, Ordering::SeqCst);
    }
}

/// What the service keeps of each connection, for the test thread to reach it.
struct Peer {
    handle: ConnectionHandle,
    /// A value for the parked BLOCK, set by `deliver`.
    delivered: Option<Vec<u8>>,
    /// Messages to push, `(channel, payload)`.
    pushes: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The test service. Commands (RESP, or binary CALL): PING, ECHO x, ID (the connection's
/// id), HELLO3 (switch to RESP3), BLOCK ms (park until `deliver`, or for ms on the clock;
/// 0: no deadline), WRITE (+OK behind the next gate seq).
struct WaitService {
    clock: Arc<ManualClock>,
    peers: Mutex<HashMap<u64, Peer>>,
    /// Every handle ever given, never removed: the test wakes closed connections with them.
    handles: Mutex<HashMap<u64, ConnectionHandle>>,
    /// Connections whose BLOCK waits.
    waiting: Mutex<HashSet<u64>>,
    /// `on_wake` calls per connection id.
    wakes: Mutex<HashMap<u64, usize>>,
    handled: AtomicUsize,
    timeouts: AtomicUsize,
    closed: Mutex<Vec<u64>>,
    next_seq: AtomicU64,
}

struct Session {
    id: u64,
    protocol: Option<Protocol>,
    version: RespVersion,
    /// The parked BLOCK: its deadline, and for the binary protocol whom to answer.
    parked: Option<(Option<u64>, Option<ReplyTo>)>,
    /// The gate of the reply just written.
    gate: Option<u64>,
}

/// A command's answer, written in either protocol.
enum Answer {
    Simple(&'static str),
    Bulk(Vec<u8>),
    Integer(i64),
    Null,
    Error(String),
}

impl WaitService {
    fn new(clock: Arc<ManualClock>) -> WaitService {
        WaitService {
            clock,
            peers: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashSet::new()),
            wakes: Mutex::new(HashMap::new()),
            handled: AtomicUsize::new(0),
            timeouts: AtomicUsize::new(0),
            closed: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(0),
        }
    }

    /// Completes connection `id`'s BLOCK with `value` (from any thread).
    fn deliver(&self, id: u64, value: &[u8]) {
        let mut peers = self.peers.lock().unwrap();
        let peer = peers.get_mut(&id).expect("an open connection");
        peer.delivered = Some(value.to_vec());
        peer.handle.wake();
    }

    /// Pushes a message to connection `id` (from any thread).
    fn push(&self, id: u64, channel: &[u8], payload: &[u8]) {
        let mut peers = self.peers.lock().unwrap();
        let peer = peers.get_mut(&id).expect("an open connection");
        peer.pushes.push((channel.to_vec(), payload.to_vec()));
        peer.handle.wake();
    }

    fn wakes_of(&self, id: u64) -> usize {
        self.wakes.lock().unwrap().get(&id).copied().unwrap_or(0)
    }

    fn is_waiting(&self, id: u64) -> bool {
        self.waiting.lock().unwrap().contains(&id)
    }

    fn run(
        &self,
        session: &mut Session,
        args: &[&[u8]],
        reply_to: Option<ReplyTo>,
    ) -> (Answer, Action) {
        self.handled.fetch_add(1, Ordering::SeqCst);
        let name = args[0].to_ascii_uppercase();
        let answer = match (&name[..], args.len()) {
            (b"PING", 1) => Answer::Simple("PONG"),
            (b"ECHO", 2) => Answer::Bulk(args[1].to_vec()),
            (b"ID", 1) => Answer::Integer(session.id as i64),
            (b"HELLO3", 1) => {
                session.version = RespVersion::Resp3;
                Answer::Simple("OK")
            }
            (b"WRITE", 1) => {
                session.gate = Some(self.next_seq.fetch_add(1, Ordering::SeqCst) + 1);
                Answer::Simple("OK")
            }
            (b"BLOCK", 2) => {
                let ms: u64 = std::str::from_utf8(args[1]).unwrap().parse().unwrap();
                let deadline_ms = (ms > 0).then(|| self.clock.now_ms() + ms);
                session.parked = Some((deadline_ms, reply_to));
                self.waiting.lock().unwrap().insert(session.id);
                return (Answer::Null, Action::Park { deadline_ms });
            }
            _ => Answer::Error("ERR unknown command".into()),
        };
        (answer, Action::Continue)
    }

    fn write(
        &self,
        session: &Session,
        reply_to: Option<ReplyTo>,
        answer: &Answer,
        out: &mut Vec<u8>,
    ) {
        match reply_to {
            None => {
                let mut reply = Reply::new(out, session.version);
                match answer {
                    Answer::Simple(text) => reply.simple(text),
                    Answer::Bulk(bytes) => reply.bulk(bytes),
                    Answer::Integer(n) => reply.integer(*n),
                    Answer::Null => reply.null(),
                    Answer::Error(text) => reply.error(text),
                }
            }
            Some(reply_to) => {
                let frame = match answer {
                    Answer::Error(text) => {
                        reply_to.respond(out, Status::Error).raw(text.as_bytes())
                    }
                    _ => reply_to
                        .respond(out, Status::Ok)
                        .value(|value| match answer {
                            Answer::Simple(text) => value.simple(text),
                            Answer::Bulk(bytes) => value.bulk(bytes),
                            Answer::Integer(n) => value.integer(*n),
                            Answer::Null => value.null(),
                            Answer::Error(_) => unreachable!(),
                        }),
                };
                frame.finish().unwrap();
            }
        }
    }

    /// Writes the parked BLOCK's answer and ends the park.
    fn complete(&self, session: &mut Session, answer: Answer, out: &mut Vec<u8>) {
        let (_, reply_to) = session.parked.take().expect("a parked BLOCK");
        self.waiting.lock().unwrap().remove(&session.id);
        self.write(session, reply_to, &answer, out);
    }
}

impl Service for WaitService {
    type Session = Session;

    fn new_session(&self, handle: ConnectionHandle, _peer: SocketAddr) -> Session {
        let id = handle.id();
        self.handles.lock().unwrap().insert(id, handle.clone());
        self.peers.lock().unwrap().insert(
            id,
            Peer {
                handle,
                delivered: None,
                pushes: Vec::new(),
            },
        );
        Session {
            id,
            protocol: None,
            version: RespVersion::Resp2,
            parked: None,
            gate: None,
        }
    }

    fn handle_resp(&self, session: &mut Session, args: &[&[u8]], out: &mut Vec<u8>) -> Action {
        session.protocol = Some(Protocol::Resp);
        let (answer, action) = self.run(session, args, None);
        if action == Action::Continue {
            self.write(session, None, &answer, out);
        }
        action
    }

    fn handle_binary(
        &self,
        session: &mut Session,
        request: &Request<'_>,
        out: &mut Vec<u8>,
    ) -> Action {
        session.protocol = Some(Protocol::Binary);
        let Op::Call { args } = &request.op else {
            binary::encode_error(
                out,
                request.op.opcode(),
                request.request_id,
                Status::Error,
                "ERR CALL only",
            );
            return Action::Continue;
        };
        let args: Vec<&[u8]> = args.clone().collect();
        let (answer, action) = self.run(session, &args, Some(request.reply_to()));
        if action == Action::Continue {
            self.write(session, Some(request.reply_to()), &answer, out);
        }
        action
    }

    fn on_wake(&self, session: &mut Session, out: &mut Vec<u8>) -> Action {
        *self.wakes.lock().unwrap().entry(session.id).or_default() += 1;
        let (pushes, delivered) = {
            let mut peers = self.peers.lock().unwrap();
            let peer = peers.get_mut(&session.id).expect("open");
            (std::mem::take(&mut peer.pushes), peer.delivered.take())
        };
        for (channel, payload) in pushes {
            match session.protocol {
                Some(Protocol::Binary) => {
                    binary::encode_push(out, binary::Opcode::Call as u8, |value| {
                        value.array(3);
                        value.bulk(b"message");
                        value.bulk(&channel);
                        value.bulk(&payload);
                    })
                    .unwrap()
                }
                _ => Reply::new(out, session.version).message(&channel, &payload),
            }
        }
        match (session.parked, delivered) {
            (Some(_), Some(value)) => {
                self.complete(session, Answer::Bulk(value), out);
                Action::Continue
            }
            (Some((deadline_ms, _)), None) => Action::Park { deadline_ms },
            (None, _) => Action::Continue,
        }
    }

    fn on_park_timeout(&self, session: &mut Session, out: &mut Vec<u8>) -> Action {
        self.timeouts.fetch_add(1, Ordering::SeqCst);
        self.complete(session, Answer::Null, out);
        Action::Continue
    }

    fn take_reply_gate(&self, session: &mut Session) -> Option<u64> {
        session.gate.take()
    }

    fn on_close(&self, session: &mut Session) {
        self.waiting.lock().unwrap().remove(&session.id);
        self.peers.lock().unwrap().remove(&session.id);
        self.closed.lock().unwrap().push(session.id);
    }
}

struct Running {
    addr: SocketAddr,
    shutdown: ShutdownHandle,
    loops: LoopsHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    service: Arc<WaitService>,
    clock: Arc<ManualClock>,
}

impl Running {
    /// One loop, so a round trip on one connection proves the loop ran for the others.
    fn start(gates: Option<Arc<TestGates>>) -> Running {
        Running::start_with(gates, |_| {})
    }

    fn start_with(
        gates: Option<Arc<TestGates>>,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Running {
        let clock = Arc::new(ManualClock(AtomicU64::new(1_000_000)));
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        config.threads = 1;
        config.clock = clock.clone();
        config.gates = gates.map(|gates| gates as Arc<dyn ReplyGates>);
        configure(&mut config);
        let service = Arc::new(WaitService::new(Arc::clone(&clock)));
        let server = Server::bind(config, Arc::clone(&service)).unwrap();
        let addr = server.local_addr();
        let shutdown = server.shutdown_handle();
        let loops = server.loops_handle();
        let thread = Some(std::thread::spawn(move || server.run()));
        Running {
            addr,
            shutdown,
            loops,
            thread,
            service,
            clock,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
    }

    /// A PING answered on a fresh connection: the loop has run a whole iteration since the
    /// call (deliveries, deadlines and gates of that iteration are done).
    fn round_trip(&self) {
        let mut probe = self.connect();
        probe.write_all(b"PING\r\n").unwrap();
        assert_eq!(read_exact_len(&mut probe, 7), b"+PONG\r\n");
    }

    /// Moves the clock and makes the loop look at it.
    fn advance_clock(&self, ms: u64) {
        self.clock.0.fetch_add(ms, Ordering::SeqCst);
        self.loops.wake_all();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_exact_len(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).unwrap();
    buf
}

fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    buf
}

/// Asserts nothing has arrived on `stream` (it is only read when data is there).
fn assert_nothing_arrived(stream: &mut TcpStream) {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let result = stream.read(&mut byte);
    stream.set_nonblocking(false).unwrap();
    match result {
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        other => panic!("expected nothing, got {other:?} ({:?})", byte),
    }
}

/// Sends `ID` over RESP and returns the connection's id.
fn resp_id(stream: &mut TcpStream) -> u64 {
    stream.write_all(b"ID\r\n").unwrap();
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        line.extend(read_exact_len(stream, 1));
    }
    std::str::from_utf8(&line[1..line.len() - 2])
        .unwrap()
        .parse()
        .unwrap()
}

/// Reads one binary frame.
fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut frame = read_exact_len(stream, binary::HEADER_LEN);
    let body_len = binary::peek_header(&frame).unwrap().body_len;
    frame.extend(read_exact_len(stream, body_len));
    frame
}

fn call(out: &mut Vec<u8>, id: u32, args: &[&str]) {
    binary::encode_call(out, id, args).unwrap();
}

/// `(request id, status, value or message)` of a response frame.
fn response_of(frame: &[u8]) -> (u32, Status, Result<Value, String>) {
    let response = binary::parse_response(frame).unwrap();
    let outcome = match response.status {
        Status::Ok | Status::Push => Ok(response.typed_value().unwrap()),
        _ => Err(response.message().into_owned()),
    };
    (response.request_id, response.status, outcome)
}

fn bulk(bytes: &[u8]) -> Value {
    Value::Bulk(bytes.to_vec())
}

#[test]
fn a_parked_request_holds_the_pipeline_until_woken_from_another_thread() {
    let server = Running::start(None);
    let mut client = server.connect();
    let id = resp_id(&mut client);
    client
        .write_all(b"BLOCK 0\r\nECHO a\r\nECHO b\r\n")
        .unwrap();
    eventually("the BLOCK to park", || server.service.is_waiting(id));
    server.round_trip();
    assert_nothing_arrived(&mut client);
    // ID, BLOCK and the probe's PING: the ECHOs wait behind the BLOCK, unhandled.
    assert_eq!(server.service.handled.load(Ordering::SeqCst), 3);

    let service = Arc::clone(&server.service);
    std::thread::spawn(move || service.deliver(id, b"v"))
        .join()
        .unwrap();
    let expected = b"$1\r\nv\r\n$1\r\na\r\n$1\r\nb\r\n";
    assert_eq!(read_exact_len(&mut client, expected.len()), expected);
    // The connection goes on as usual.
    client.write_all(b"ECHO c\r\n").unwrap();
    assert_eq!(read_exact_len(&mut client, 7), b"$1\r\nc\r\n");
}

#[test]
fn a_parked_binary_request_is_answered_in_order_with_its_own_id() {
    let server = Running::start(None);
    let mut client = server.connect();
    let mut request = Vec::new();
    call(&mut request, 1, &["ID"]);
    client.write_all(&request).unwrap();
    let (_, _, id) = response_of(&read_frame(&mut client));
    let id = id.unwrap().as_integer().unwrap() as u64;

    request.clear();
    call(&mut request, 2, &["BLOCK", "0"]);
    call(&mut request, 3, &["ECHO", "after"]);
    client.write_all(&request).unwrap();
    eventually("the BLOCK to park", || server.service.is_waiting(id));
    server.round_trip();
    assert_nothing_arrived(&mut client);

    let service = Arc::clone(&server.service);
    std::thread::spawn(move || service.deliver(id, b"v"))
        .join()
        .unwrap();
    assert_eq!(
        response_of(&read_frame(&mut client)),
        (2, Status::Ok, Ok(bulk(b"v")))
    );
    assert_eq!(
        response_of(&read_frame(&mut client)),
        (3, Status::Ok, Ok(bulk(b"after")))
    );
}

#[test]
fn a_park_deadline_fires_on_the_manual_clock() {
    let server = Running::start(None);
    let mut client = server.connect();
    let id = resp_id(&mut client);
    // An hour on the injected clock: only the clock can end it in this test's time.
    client
        .write_all(b"BLOCK 3600000\r\nECHO after\r\n")
        .unwrap();
    eventually("the BLOCK to park", || server.service.is_waiting(id));

    server.advance_clock(3_599_999);
    server.round_trip();
    assert_eq!(server.service.timeouts.load(Ordering::SeqCst), 0);
    assert_nothing_arrived(&mut client);

    server.advance_clock(1);
    let expected = b"$-1\r\n$5\r\nafter\r\n";
    assert_eq!(read_exact_len(&mut client, expected.len()), expected);
    assert_eq!(server.service.timeouts.load(Ordering::SeqCst), 1);
    // A wake after the deadline answered finds nothing parked: a plain on_wake.
    server.service.deliver(id, b"late");
    server.round_trip();
    assert_nothing_arrived(&mut client);
}

#[test]
fn a_completed_park_ignores_its_deadline() {
    let server = Running::start(None);
    let mut client = server.connect();
    let id = resp_id(&mut client);
    client.write_all(b"BLOCK 100\r\n").unwrap();
    eventually("the BLOCK to park", || server.service.is_waiting(id));
    server.service.deliver(id, b"v");
    assert_eq!(read_exact_len(&mut client, 7), b"$1\r\nv\r\n");
    // A second park with a later deadline: the first one's timer fires and is ignored.
    client.write_all(b"BLOCK 1000\r\n").unwrap();
    eventually("the second BLOCK to park", || server.service.is_waiting(id));
    server.advance_clock(500);
    server.round_trip();
    assert_eq!(server.service.timeouts.load(Ordering::SeqCst), 0);
    assert_nothing_arrived(&mut client);
    server.advance_clock(500);
    assert_eq!(read_exact_len(&mut client, 5), b"$-1\r\n");
    assert_eq!(server.service.timeouts.load(Ordering::SeqCst), 1);
}

#[test]
fn a_parked_connection_that_closes_is_released_and_its_handle_and_timer_are_harmless() {
    let server = Running::start(None);
    let mut first = server.connect();
    let first_id = resp_id(&mut first);
    first.write_all(b"BLOCK 1000\r\n").unwrap();
    eventually("the BLOCK to park", || server.service.is_waiting(first_id));
    drop(first);
    eventually("on_close", || {
        server.service.closed.lock().unwrap().contains(&first_id)
    });
    assert!(!server.service.is_waiting(first_id), "on_close released it");

    // The next connection takes the freed slot (one loop, one free slot).
    let mut second = server.connect();
    let second_id = resp_id(&mut second);
    assert_ne!(second_id, first_id);
    second.write_all(b"BLOCK 0\r\n").unwrap();
    eventually("the second BLOCK to park", || {
        server.service.is_waiting(second_id)
    });
    // The first connection's handle, woken from another thread, and its deadline passing.
    let stale = server.service.handles.lock().unwrap()[&first_id].clone();
    std::thread::spawn(move || stale.wake()).join().unwrap();
    server.advance_clock(2000);
    server.round_trip();
    assert_eq!(
        server.service.wakes_of(second_id),
        0,
        "the stale wake hit nobody"
    );
    assert_eq!(server.service.wakes_of(first_id), 0);
    assert_eq!(server.service.timeouts.load(Ordering::SeqCst), 0);
    assert_nothing_arrived(&mut second);
    server.service.deliver(second_id, b"mine");
    assert_eq!(read_exact_len(&mut second, 10), b"$4\r\nmine\r\n");
}

#[test]
fn neither_the_idle_nor_the_request_timeout_closes_a_parked_connection() {
    let server = Running::start_with(None, |config| {
        config.idle_timeout = Some(Duration::from_millis(100));
        config.request_timeout = Some(Duration::from_millis(100));
    });
    let mut parked = server.connect();
    let id = resp_id(&mut parked);
    // A blocked request, and the start of another behind it.
    parked.write_all(b"BLOCK 0\r\nECHO").unwrap();
    eventually("the BLOCK to park", || server.service.is_waiting(id));
    // An idle connection opened after it: once the sweep has closed this one, it has also
    // seen the parked one, idle for longer.
    let mut idle = server.connect();
    idle.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_exact_len(&mut idle, 7), b"+PONG\r\n");
    assert_eq!(read_to_close(&mut idle), b"");
    server.service.deliver(id, b"v");
    assert_eq!(read_exact_len(&mut parked, 7), b"$1\r\nv\r\n");
    parked.write_all(b" x\r\n").unwrap();
    assert_eq!(read_exact_len(&mut parked, 7), b"$1\r\nx\r\n");
}

#[test]
fn requests_behind_a_parked_one_are_bounded_by_the_request_limit() {
    let server = Running::start_with(None, |config| config.max_request_bytes = 1024);
    let mut client = server.connect();
    let id = resp_id(&mut client);
    client.write_all(b"BLOCK 0\r\n").unwrap();
    eventually("the BLOCK to park", || server.service.is_waiting(id));
    // 1,000 bytes of whole requests: buffered, unhandled.
    client.write_all(&b"PING\r\n".repeat(166)[..996]).unwrap();
    server.round_trip();
    assert_nothing_arrived(&mut client);
    // Past 1,024: refused and closed, as an oversized request is.
    client.write_all(&b"PING\r\n".repeat(10)).unwrap();
    assert_eq!(
        String::from_utf8(read_to_close(&mut client)).unwrap(),
        "-ERR Protocol error: more than 1024 bytes of requests behind a blocked one\r\n"
    );
    eventually("on_close", || {
        server.service.closed.lock().unwrap().contains(&id)
    });
}

#[test]
fn a_parked_connection_whose_peer_shuts_down_is_closed() {
    let server = Running::start(None);
    let mut client = server.connect();
    let id = resp_id(&mut client);
    client.write_all(b"BLOCK 0\r\nECHO never\r\n").unwrap();
    eventually("the BLOCK to park", || server.service.is_waiting(id));
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        read_to_close(&mut client),
        b"",
        "dropped, as Redis drops a blocked client"
    );
    eventually("on_close", || {
        server.service.closed.lock().unwrap().contains(&id)
    });
}

#[test]
fn pushes_reach_an_idle_connection_in_each_protocol() {
    let server = Running::start(None);
    let push_from_another_thread = |id: u64| {
        let service = Arc::clone(&server.service);
        std::thread::spawn(move || service.push(id, b"news", b"hi"))
            .join()
            .unwrap();
    };
    let message = "3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n";

    // RESP2: the array a subscribed Redis client gets.
    let mut resp2 = server.connect();
    let id = resp_id(&mut resp2);
    push_from_another_thread(id);
    let expected = format!("*{message}");
    assert_eq!(
        read_exact_len(&mut resp2, expected.len()),
        expected.as_bytes()
    );

    // RESP3: the push type.
    let mut resp3 = server.connect();
    resp3.write_all(b"HELLO3\r\n").unwrap();
    assert_eq!(read_exact_len(&mut resp3, 5), b"+OK\r\n");
    let id = resp_id(&mut resp3);
    push_from_another_thread(id);
    let expected = format!(">{message}");
    assert_eq!(
        read_exact_len(&mut resp3, expected.len()),
        expected.as_bytes()
    );

    // Binary: a push frame, told apart by its header.
    let mut raw = server.connect();
    let mut request = Vec::new();
    call(&mut request, 7, &["ID"]);
    raw.write_all(&request).unwrap();
    let (_, _, id) = response_of(&read_frame(&mut raw));
    push_from_another_thread(id.unwrap().as_integer().unwrap() as u64);
    let frame = read_frame(&mut raw);
    let header = binary::peek_header(&frame).unwrap();
    assert_eq!(
        (header.opcode, header.flags_or_status, header.request_id),
        (0xF0, Status::Push as u8, 0)
    );
    let message = Value::Array(vec![bulk(b"message"), bulk(b"news"), bulk(b"hi")]);
    assert_eq!(response_of(&frame), (0, Status::Push, Ok(message.clone())));

    // The Rust client: a push while idle, and one that arrives before a response.
    let options = ClientOptions::new().read_timeout(Some(PATIENCE));
    let mut connection = Connection::open(server.addr, &options).unwrap();
    let id = connection.command(&["ID"]).unwrap().as_integer().unwrap() as u64;
    push_from_another_thread(id);
    let push = connection.receive_push().unwrap();
    assert_eq!((push.opcode, &push.value), (0xF0, &message));
    push_from_another_thread(id);
    eventually("the push to be written", || {
        server.service.wakes_of(id) == 2
    });
    assert_eq!(connection.command(&["ECHO", "x"]).unwrap(), bulk(b"x"));
    assert_eq!(connection.try_receive_push().unwrap().value, message);
}

#[test]
fn replies_wait_for_their_gate_while_other_connections_are_served() {
    let gates = Arc::new(TestGates::default());
    let server = Running::start(Some(Arc::clone(&gates)));
    let mut client = server.connect();
    client
        .write_all(b"ECHO first\r\nWRITE\r\nECHO x\r\n")
        .unwrap();
    // The reply before the gate leaves at once.
    assert_eq!(read_exact_len(&mut client, 11), b"$5\r\nfirst\r\n");
    eventually("the loop to request gate 1", || {
        gates.requested.load(Ordering::SeqCst) == 1
    });
    // Another connection is served meanwhile.
    server.round_trip();
    assert_nothing_arrived(&mut client);

    gates.opened_through.store(1, Ordering::SeqCst);
    server.loops.wake_all();
    let expected = b"+OK\r\n$1\r\nx\r\n";
    assert_eq!(read_exact_len(&mut client, expected.len()), expected);

    // A gate already open holds nothing.
    client.write_all(b"ECHO y\r\n").unwrap();
    assert_eq!(read_exact_len(&mut client, 7), b"$1\r\ny\r\n");

    // Without a gate authority, the same WRITE is answered at once.
    let ungated = Running::start(None);
    let mut client = ungated.connect();
    client.write_all(b"WRITE\r\n").unwrap();
    assert_eq!(read_exact_len(&mut client, 5), b"+OK\r\n");
}

#[test]
fn a_failed_gate_withdraws_the_replies_behind_it_with_one_error_then_closes() {
    let gates = Arc::new(TestGates::default());
    let server = Running::start(Some(Arc::clone(&gates)));
    let mut client = server.connect();
    client
        .write_all(b"ECHO first\r\nWRITE\r\nWRITE\r\nECHO x\r\n")
        .unwrap();
    assert_eq!(read_exact_len(&mut client, 11), b"$5\r\nfirst\r\n");
    eventually("the loop to request gate 2", || {
        gates.requested.load(Ordering::SeqCst) == 2
    });
    // Gate 1 opened, then the flush for gate 2 failed.
    gates.opened_through.store(1, Ordering::SeqCst);
    *gates.failed.lock().unwrap() = Some("flush failed: EIO".into());
    server.loops.wake_all();
    assert_eq!(
        String::from_utf8(read_to_close(&mut client)).unwrap(),
        "+OK\r\n-ERR flush failed: EIO\r\n"
    );
    // Requests without a gate are still served; a new gated reply is withdrawn at once.
    server.round_trip();
    let mut other = server.connect();
    other.write_all(b"WRITE\r\n").unwrap();
    assert_eq!(read_to_close(&mut other), b"-ERR flush failed: EIO\r\n");
}

#[test]
fn a_failed_gate_withdraws_binary_replies_naming_the_first_withdrawn_request() {
    let gates = Arc::new(TestGates::default());
    let server = Running::start(Some(Arc::clone(&gates)));
    let mut client = server.connect();
    let mut request = Vec::new();
    call(&mut request, 1, &["ECHO", "first"]);
    call(&mut request, 2, &["WRITE"]);
    call(&mut request, 3, &["ECHO", "between"]);
    call(&mut request, 4, &["WRITE"]);
    call(&mut request, 5, &["ECHO", "last"]);
    client.write_all(&request).unwrap();
    assert_eq!(
        response_of(&read_frame(&mut client)),
        (1, Status::Ok, Ok(bulk(b"first")))
    );
    eventually("the loop to request gate 2", || {
        gates.requested.load(Ordering::SeqCst) == 2
    });
    gates.opened_through.store(1, Ordering::SeqCst);
    *gates.failed.lock().unwrap() = Some("flush failed: EIO".into());
    server.loops.wake_all();
    assert_eq!(
        response_of(&read_frame(&mut client)),
        (2, Status::Ok, Ok(Value::Simple("OK".into())))
    );
    assert_eq!(
        response_of(&read_frame(&mut client)),
        (3, Status::Ok, Ok(bulk(b"between")))
    );
    let error = read_frame(&mut client);
    assert_eq!(binary::peek_header(&error).unwrap().opcode, 0xF0);
    assert_eq!(
        response_of(&error),
        (4, Status::Error, Err("ERR flush failed: EIO".into()))
    );
    assert_eq!(
        read_to_close(&mut client),
        b"",
        "then the connection closes"
    );
}

#[test]
fn a_parked_write_behind_a_gate_waits_for_both() {
    let gates = Arc::new(TestGates::default());
    let server = Running::start(Some(Arc::clone(&gates)));
    let mut client = server.connect();
    let id = resp_id(&mut client);
    client.write_all(b"WRITE\r\nBLOCK 0\r\nECHO z\r\n").unwrap();
    eventually("the BLOCK to park", || server.service.is_waiting(id));
    server.service.deliver(id, b"v");
    eventually("the BLOCK to complete", || !server.service.is_waiting(id));
    server.round_trip();
    assert_nothing_arrived(&mut client);
    gates.opened_through.store(1, Ordering::SeqCst);
    server.loops.wake_all();
    let expected = b"+OK\r\n$1\r\nv\r\n$1\r\nz\r\n";
    assert_eq!(read_exact_len(&mut client, expected.len()), expected);
}
