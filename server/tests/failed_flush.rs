//! The durability bug of issue 10, end to end: under `--fsync always`, when the group flush
//! fails, no reply may acknowledge a write that is not durable. The server runs in this process
//! on the engine's simulated disk, which fails the flush on request; clients speak RESP and
//! the binary protocol over real sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use flin_engine::sim::{SimDisk, SyncKind};
use flin_engine::{Config, Durability};
use flin_server::config::Options;
use flin_server::daemon::Daemon;

struct Running {
    addr: std::net::SocketAddr,
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

fn start(disk: &SimDisk) -> Running {
    let options = Options {
        port: 0,
        bind: "127.0.0.1".parse().unwrap(),
        threads: 2,
        fsync: Durability::Always,
        ..Options::default()
    };
    let config = Config::simulated(disk, "/data")
        .durability(Durability::Always)
        .logger(Arc::new(|_, _: &str| {}));
    let daemon = Daemon::start(&options, config).expect("daemon starts");
    let addr = daemon.local_addr();
    let shutdown = daemon.shutdown_handle();
    let thread = std::thread::spawn(move || daemon.serve());
    Running {
        addr,
        shutdown,
        thread: Some(thread),
    }
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Everything the server sends until it closes the connection.
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream
        .read_to_end(&mut all)
        .expect("the server closes the connection");
    all
}

/// Reads exactly `expected.len()` bytes and compares.
fn expect(stream: &mut TcpStream, expected: &[u8]) {
    let mut got = vec![0u8; expected.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

#[test]
fn replies_of_a_failed_flush_are_withdrawn_with_one_error_then_the_connection_closes() {
    let disk = SimDisk::new();
    let server = start(&disk);
    let mut before = connect(server.addr);
    before.write_all(b"SET a 1\r\n").unwrap();
    expect(&mut before, b"+OK\r\n");

    disk.fail_next_sync(Some(SyncKind::Flush), "");
    let mut client = connect(server.addr);
    // A pipeline: two writes and a read of the first. None of their replies may leave.
    client
        .write_all(b"SET b 2\r\nSET c 3\r\nGET b\r\n")
        .unwrap();
    let sent = read_to_close(&mut client);
    let text = String::from_utf8_lossy(&sent);
    assert!(
        text.starts_with("-ERR flush failed, this write may not be durable"),
        "{text:?}"
    );
    assert_eq!(
        text.matches("\r\n").count(),
        1,
        "one error, nothing else: {text:?}"
    );
    assert!(
        !text.contains("+OK"),
        "a write that may not be durable was acknowledged"
    );

    // The engine is poisoned: writes are refused with the reason, reads go on.
    let mut after = connect(server.addr);
    after.write_all(b"SET d 4\r\nGET a\r\n").unwrap();
    let mut reply = vec![0u8; 512];
    let n = after.read(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]).into_owned();
    assert!(
        reply.starts_with("-ERR engine refuses writes after a failed flush"),
        "{reply:?}"
    );
    assert!(reply.ends_with("$1\r\n1\r\n"), "{reply:?}");
}

#[test]
fn the_binary_protocol_gets_the_error_for_its_first_withdrawn_request() {
    use flin_net::binary::{self, Status};
    let disk = SimDisk::new();
    let server = start(&disk);
    let mut client = connect(server.addr);
    let mut requests = Vec::new();
    binary::encode_set(
        &mut requests,
        7,
        b"k",
        b"v",
        None,
        binary::SetCondition::Always,
    )
    .unwrap();
    client.write_all(&requests).unwrap();
    let mut ok = vec![0u8; binary::HEADER_LEN];
    client.read_exact(&mut ok).unwrap();
    assert_eq!(binary::parse_response(&ok).unwrap().status, Status::Ok);

    disk.fail_next_sync(Some(SyncKind::Flush), "");
    requests.clear();
    binary::encode_set(
        &mut requests,
        8,
        b"x",
        b"1",
        None,
        binary::SetCondition::Always,
    )
    .unwrap();
    binary::encode_get(&mut requests, 9, b"x").unwrap();
    client.write_all(&requests).unwrap();
    let sent = read_to_close(&mut client);
    let len = binary::check(&sent, usize::MAX).expect("one whole frame");
    assert_eq!(len, sent.len(), "one frame and nothing more");
    let response = binary::parse_response(&sent).unwrap();
    assert_eq!((response.request_id, response.status), (8, Status::Error));
    assert!(
        String::from_utf8_lossy(response.body).contains("flush failed"),
        "{:?}",
        String::from_utf8_lossy(response.body)
    );
}

/// While one connection's replies wait for a flush, the loop serves others: a client that
/// only reads what is durable is answered at once, and a slow flush delays only the replies
/// that wait on it.
#[test]
fn acknowledged_writes_survive_and_reads_of_durable_data_are_not_held() {
    let disk = SimDisk::new();
    let server = start(&disk);
    let mut writer = connect(server.addr);
    for i in 0..50 {
        writer
            .write_all(format!("SET key{i} value{i}\r\n").as_bytes())
            .unwrap();
        expect(&mut writer, b"+OK\r\n");
    }
    let mut reader = connect(server.addr);
    reader.write_all(b"GET key49\r\n").unwrap();
    expect(&mut reader, b"$7\r\nvalue49\r\n");
    drop(server);
    // Every acknowledged write is on the platter: a power loss right now keeps all of them.
    let image = disk.after_power_loss(7);
    let engine = flin_engine::Engine::open(Config::simulated(&image, "/data")).unwrap();
    for i in 0..50 {
        assert_eq!(
            engine
                .get(flin_engine::Namespace::Kv, format!("key{i}").as_bytes())
                .unwrap()
                .unwrap()
                .value,
            format!("value{i}").into_bytes()
        );
    }
}
