//! The event loop over real sockets, with a toy in-memory map service:
//! raw bytes in, exact bytes out.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use flin_net::binary::{self, Op, Request, Status};
use flin_net::resp::{Reply, RespVersion};
use flin_net::{Action, ConnectionHandle, Server, ServerConfig, Service, ShutdownHandle};

#[derive(Default)]
struct MapService {
    map: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    closed: AtomicUsize,
}

impl Service for MapService {
    type Session = ();

    fn new_session(&self, _handle: ConnectionHandle, _peer: SocketAddr) {}

    fn handle_resp(&self, _: &mut (), args: &[&[u8]], out: &mut Vec<u8>) -> Action {
        let mut reply = Reply::new(out, RespVersion::Resp2);
        let name = args[0].to_ascii_uppercase();
        match (&name[..], args.len()) {
            (b"PING", 1) => reply.simple("PONG"),
            (b"GET", 2) => match self.map.lock().unwrap().get(args[1]) {
                Some(value) => reply.bulk(value),
                None => reply.null(),
            },
            (b"SET", 3) => {
                self.map
                    .lock()
                    .unwrap()
                    .insert(args[1].to_vec(), args[2].to_vec());
                reply.simple("OK");
            }
            (b"ECHO", 2) => reply.bulk(args[1]),
            (b"BIG", 2) => {
                let len: usize = std::str::from_utf8(args[1]).unwrap().parse().unwrap();
                reply.bulk(&vec![b'x'; len]);
            }
            (b"QUIT", 1) => {
                reply.simple("OK");
                return Action::Close;
            }
            _ => reply.error("ERR unknown command"),
        }
        Action::Continue
    }

    fn handle_binary(&self, _: &mut (), request: &Request<'_>, out: &mut Vec<u8>) -> Action {
        let mut map = self.map.lock().unwrap();
        let result = match &request.op {
            Op::Ping { payload } => request.respond(out, Status::Ok).raw(payload).finish(),
            Op::Get { key } => match map.get(*key) {
                Some(value) => request.respond(out, Status::Ok).raw(value).finish(),
                None => request.respond(out, Status::NotFound).finish(),
            },
            Op::Set { key, value, .. } => {
                map.insert(key.to_vec(), value.to_vec());
                request.respond(out, Status::Ok).finish()
            }
            Op::MGet { keys } => {
                let mut writer = request.respond(out, Status::Ok).u32(keys.len() as u32);
                for key in keys.clone() {
                    writer = writer.optional_bytes(map.get(key).map(Vec::as_slice));
                }
                writer.finish()
            }
            _ => request
                .respond(out, Status::Error)
                .raw(b"ERR not in the toy")
                .finish(),
        };
        result.expect("toy responses are small");
        Action::Continue
    }

    fn on_close(&self, _: &mut ()) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
}

struct Running {
    addr: SocketAddr,
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    service: Arc<MapService>,
}

impl Running {
    fn start(configure: impl FnOnce(&mut ServerConfig)) -> Running {
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        config.threads = 2;
        configure(&mut config);
        let service = Arc::new(MapService::default());
        let server = Server::bind(config, Arc::clone(&service)).unwrap();
        let addr = server.local_addr();
        let shutdown = server.shutdown_handle();
        let thread = Some(std::thread::spawn(move || server.run()));
        Running {
            addr,
            shutdown,
            thread,
            service,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    fn stop(mut self) {
        self.shutdown.shutdown();
        self.thread.take().unwrap().join().unwrap().unwrap();
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

#[test]
fn resp_commands_get_exact_replies() {
    let server = Running::start(|_| {});
    let mut client = server.connect();
    client
        .write_all(b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n")
        .unwrap();
    client
        .write_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$1\r\nx\r\n")
        .unwrap();
    let expected = b"+PONG\r\n+OK\r\n$2\r\nv1\r\n$-1\r\n";
    assert_eq!(read_exact_len(&mut client, expected.len()), expected);
    server.stop();
}

#[test]
fn inline_commands() {
    let server = Running::start(|_| {});
    let mut client = server.connect();
    client
        .write_all(b"PING\r\n\r\nSET k \"a b\"\nGET k\r\n")
        .unwrap();
    let expected = b"+PONG\r\n+OK\r\n$3\r\na b\r\n";
    assert_eq!(read_exact_len(&mut client, expected.len()), expected);
}

#[test]
fn pipeline_of_ten_thousand_answered_in_order() {
    let server = Running::start(|_| {});
    let mut client = server.connect();
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..10_000 {
        let word = i.to_string();
        request.extend_from_slice(
            format!("*2\r\n$4\r\nECHO\r\n${}\r\n{word}\r\n", word.len()).as_bytes(),
        );
        expected.extend_from_slice(format!("${}\r\n{word}\r\n", word.len()).as_bytes());
    }
    let mut writer = client.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&request).unwrap());
    assert_eq!(read_exact_len(&mut client, expected.len()), expected);
    sender.join().unwrap();
}

#[test]
fn frame_sent_one_byte_at_a_time() {
    let server = Running::start(|_| {});
    let mut client = server.connect();
    client.set_nodelay(true).unwrap();
    for byte in b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n" {
        client.write_all(&[*byte]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(read_exact_len(&mut client, 11), b"$5\r\nhello\r\n");
}

#[test]
fn request_still_incomplete_after_the_request_timeout_is_refused() {
    let server = Running::start(|config| config.request_timeout = Some(Duration::from_millis(300)));
    let mut slow = server.connect();
    slow.write_all(b"*2\r\n$4\r\nECHO\r\n$5\r\nhel").unwrap();
    // Never finished: the server answers with an error and closes.
    assert_eq!(
        String::from_utf8_lossy(&read_to_close(&mut slow)),
        "-ERR Protocol error: request not complete after 0.3 s\r\n"
    );
    // A request that arrives whole is answered on a fresh connection.
    let mut other = server.connect();
    other.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_exact_len(&mut other, 7), b"+PONG\r\n");
}

#[test]
fn request_timeout_counts_from_each_request_not_the_connection() {
    let server = Running::start(|config| config.request_timeout = Some(Duration::from_millis(400)));
    let mut client = server.connect();
    // Ten whole requests, 100 ms apart: together longer than the timeout, each well inside it.
    for _ in 0..10 {
        client.write_all(b"PING\r\n").unwrap();
        assert_eq!(read_exact_len(&mut client, 7), b"+PONG\r\n");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn idle_connection_is_closed_after_the_idle_timeout() {
    let server = Running::start(|config| config.idle_timeout = Some(Duration::from_millis(300)));
    let mut idle = server.connect();
    idle.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_exact_len(&mut idle, 7), b"+PONG\r\n");
    // Then silence: the server closes without a word, as Redis does.
    assert_eq!(read_to_close(&mut idle), b"");
    assert_eq!(server.service.closed.load(Ordering::Relaxed), 1);
}

#[test]
fn protocol_error_is_replied_then_the_connection_closes() {
    let server = Running::start(|_| {});
    let mut client = server.connect();
    client.write_all(b"*1\r\n$x\r\n").unwrap();
    assert_eq!(
        read_to_close(&mut client),
        b"-ERR Protocol error: invalid bulk length at byte 5\r\n"
    );
    let mut client = server.connect();
    client
        .write_all(b"PING\r\nSET \"unterminated\r\nPING\r\n")
        .unwrap();
    assert_eq!(
        read_to_close(&mut client),
        &b"+PONG\r\n-ERR Protocol error: unbalanced quotes in request at byte 17\r\n"[..]
    );
}

#[test]
fn close_action_flushes_then_closes() {
    let server = Running::start(|_| {});
    let mut client = server.connect();
    client.write_all(b"PING\r\nQUIT\r\nPING\r\n").unwrap();
    assert_eq!(read_to_close(&mut client), b"+PONG\r\n+OK\r\n");
}

#[test]
fn binary_frames_on_the_same_port() {
    let server = Running::start(|_| {});
    let mut client = server.connect();
    let mut request = Vec::new();
    binary::encode_set(
        &mut request,
        1,
        b"k",
        b"v",
        None,
        binary::SetCondition::Always,
    )
    .unwrap();
    binary::encode_get(&mut request, 2, b"k").unwrap();
    binary::encode_get(&mut request, 3, b"missing").unwrap();
    binary::encode_mget(&mut request, 4, &[b"k", b"missing"]).unwrap();
    binary::encode_ping(&mut request, 5, b"hi").unwrap();
    client.write_all(&request).unwrap();

    let read_response = |client: &mut TcpStream| {
        let mut header = read_exact_len(client, binary::HEADER_LEN);
        let body_len = binary::peek_header(&header).unwrap().body_len;
        header.extend(read_exact_len(client, body_len));
        header
    };
    let frame = read_response(&mut client);
    let response = binary::parse_response(&frame).unwrap();
    assert_eq!((response.request_id, response.status), (1, Status::Ok));
    let frame = read_response(&mut client);
    let response = binary::parse_response(&frame).unwrap();
    assert_eq!(
        (response.request_id, response.status, response.value()),
        (2, Status::Ok, &b"v"[..])
    );
    let frame = read_response(&mut client);
    assert_eq!(
        binary::parse_response(&frame).unwrap().status,
        Status::NotFound
    );
    let frame = read_response(&mut client);
    let values: Vec<_> = binary::parse_response(&frame)
        .unwrap()
        .values()
        .unwrap()
        .collect();
    assert_eq!(values, vec![Some(&b"v"[..]), None]);
    let frame = read_response(&mut client);
    assert_eq!(binary::parse_response(&frame).unwrap().value(), b"hi");

    // An unknown opcode (0x7E: a free stream opcode) is answered and the connection goes on.
    client
        .write_all(&[0xFB, 1, 0x7E, 0, 9, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let frame = read_response(&mut client);
    let response = binary::parse_response(&frame).unwrap();
    assert_eq!(
        (response.status, response.request_id),
        (Status::UnknownOpcode, 9)
    );
    assert_eq!(response.message(), "unknown opcode 0x7e");
    // A bad version is a protocol error: answered, then closed.
    client.write_all(&[0xFB, 7]).unwrap();
    let rest = read_to_close(&mut client);
    let response = binary::parse_response(&rest).unwrap();
    assert_eq!(response.status, Status::ProtocolError);
    assert_eq!(
        response.message(),
        "unsupported protocol version 7 at byte 1"
    );
}

#[test]
fn hundred_concurrent_connections() {
    let server = Running::start(|_| {});
    let clients: Vec<_> = (0..100).map(|_| server.connect()).collect();
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            std::thread::spawn(move || {
                for round in 0..20 {
                    let word = format!("c{i}r{round}");
                    let request = format!("*2\r\n$4\r\nECHO\r\n${}\r\n{word}\r\n", word.len());
                    client.write_all(request.as_bytes()).unwrap();
                    let expected = format!("${}\r\n{word}\r\n", word.len());
                    assert_eq!(
                        read_exact_len(&mut client, expected.len()),
                        expected.as_bytes()
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn client_that_never_reads_is_disconnected_at_the_output_limit() {
    let server = Running::start(|config| config.output_buffer_limit_bytes = 1024 * 1024);
    let mut client = server.connect();
    client
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Each reply is 256 KiB; the socket buffers fill, then pending output
    // passes 1 MiB and the server drops the client.
    let mut disconnected = false;
    for _ in 0..2000 {
        if client.write_all(b"BIG 262144\r\n").is_err() {
            disconnected = true;
            break;
        }
        if server.service.closed.load(Ordering::Relaxed) == 1 {
            disconnected = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(disconnected, "the server should have closed the connection");
    // The server is still fine for others.
    let mut other = server.connect();
    other.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_exact_len(&mut other, 7), b"+PONG\r\n");
}

#[test]
fn max_clients_refuses_the_next_connection() {
    let server = Running::start(|config| config.max_clients = 2);
    let mut first = server.connect();
    let mut second = server.connect();
    for client in [&mut first, &mut second] {
        client.write_all(b"PING\r\n").unwrap();
        assert_eq!(read_exact_len(client, 7), b"+PONG\r\n");
    }
    let mut third = server.connect();
    assert_eq!(
        read_to_close(&mut third),
        b"-ERR max number of clients reached\r\n"
    );
    drop(first);
    // Once one leaves, a new client gets in (the close is noticed shortly).
    let mut admitted = false;
    for _ in 0..100 {
        let mut client = server.connect();
        client.write_all(b"PING\r\n").unwrap();
        let mut reply = [0u8; 7];
        if client.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n" {
            admitted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(admitted);
}

#[test]
fn shutdown_returns_and_closes_connections() {
    let server = Running::start(|_| {});
    let mut client = server.connect();
    client.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_exact_len(&mut client, 7), b"+PONG\r\n");
    let service = Arc::clone(&server.service);
    server.stop();
    assert_eq!(read_to_close(&mut client), b"");
    assert_eq!(service.closed.load(Ordering::Relaxed), 1);
}

#[test]
fn bind_error_is_reported_before_running() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = ServerConfig::new(taken.local_addr().unwrap());
    assert!(Server::bind(config, Arc::new(MapService::default())).is_err());
}
