//! Hostile clients against the real binary: a frame trickled byte by byte, length claims of
//! 4 GiB, deeply nested arrays, thousands of idle connections, a client that never reads. In
//! each test the server stays up, a well-behaved client on another connection gets every
//! answer right throughout, and the server's peak resident memory (VmHWM) and address space
//! (VmSize) stay within `RSS_GROWTH_BYTES_MAX` and `VM_SIZE_GROWTH_BYTES_MAX` of what they were
//! before (docs/reliability.md names the limits).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{resp, ServerGuard};
use flin_benches::crashtest::client::{Client, Reply};
use flin_benches::process_status_bytes;

/// Most the server's peak RSS may grow over its size before the hostile client came. Far less
/// than any claimed length (4 GiB, 512 MiB); more than the 4 MiB output limit these tests set
/// plus the buffers of 2,000 connections.
const RSS_GROWTH_BYTES_MAX: u64 = 64 << 20;
/// Most the server's address space (VmSize) may grow: a buffer reserved from a claimed length
/// (512 MiB, 4 GiB) would show here even if its pages were never touched. (It stays within
/// about a megabyte in these tests.)
const VM_SIZE_GROWTH_BYTES_MAX: u64 = 256 << 20;
/// Output limit the server runs with here, so the never-reading client is cut early.
const OUTPUT_LIMIT_BYTES: usize = 4 << 20;
/// Request timeout the server runs with here (seconds), so the slow client is cut in seconds.
const REQUEST_TIMEOUT_SECONDS: u64 = 3;
/// Idle connections opened at most (fewer if the descriptor limit is lower).
const IDLE_CONNECTIONS_MAX: usize = 2000;

/// A server and a well-behaved client that INCRs a counter every few milliseconds on its own
/// connection, checking every answer, until the test is over.
struct Watched {
    server: ServerGuard,
    _dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    good: Option<std::thread::JoinHandle<Result<u64, String>>>,
    rss_before: u64,
    size_before: u64,
}

impl Watched {
    fn start() -> Watched {
        Watched::start_with(&[])
    }

    /// `start` with more server flags.
    fn start_with(extra: &[&str]) -> Watched {
        let dir = tempfile::tempdir().unwrap();
        let timeout = REQUEST_TIMEOUT_SECONDS.to_string();
        let output_limit = OUTPUT_LIMIT_BYTES.to_string();
        let mut flags = vec![
            "--request-timeout",
            &timeout,
            "--output-buffer-limit",
            &output_limit,
        ];
        flags.extend_from_slice(extra);
        let server = ServerGuard::start(dir.path(), &flags);
        let stop = Arc::new(AtomicBool::new(false));
        let addr = server.addr;
        let flag = Arc::clone(&stop);
        let good = std::thread::spawn(move || well_behaved(addr, &flag));
        // Let the good client's first answers arrive, so the baseline includes its connection.
        std::thread::sleep(Duration::from_millis(100));
        let rss_before = process_status_bytes(server.pid() as u32, "VmRSS").expect("VmRSS");
        let size_before = process_status_bytes(server.pid() as u32, "VmSize").expect("VmSize");
        Watched {
            server,
            _dir: dir,
            stop,
            good: Some(good),
            rss_before,
            size_before,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// Ends the test: the good client got every answer right, the server is up and answers
    /// a fresh connection, and its peak memory stayed within the bound.
    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let answered = self.good.take().unwrap().join().unwrap();
        let answered = answered.unwrap_or_else(|why| panic!("the well-behaved client: {why}"));
        assert!(answered > 0, "the well-behaved client got no answer at all");
        let mut fresh = Client::connect(self.server.addr, Duration::from_secs(10)).unwrap();
        assert_eq!(
            fresh.call(&[b"PING"]).unwrap(),
            Reply::Simple("PONG".into())
        );
        let peak = process_status_bytes(self.server.pid() as u32, "VmHWM").expect("VmHWM");
        let size = process_status_bytes(self.server.pid() as u32, "VmSize").expect("VmSize");
        // Resident memory misses a buffer reserved but never touched; the address space does
        // not.
        assert!(
            size <= self.size_before + VM_SIZE_GROWTH_BYTES_MAX,
            "address space {size} bytes, {} before the hostile client",
            self.size_before
        );
        assert!(
            peak <= self.rss_before + RSS_GROWTH_BYTES_MAX,
            "peak RSS {peak} bytes, {} before the hostile client",
            self.rss_before
        );
    }
}

fn well_behaved(addr: SocketAddr, stop: &AtomicBool) -> Result<u64, String> {
    let mut client = Client::connect(addr, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let mut answered = 0u64;
    // Bounded: the tests end in seconds; this is the backstop.
    for _ in 0..20_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match client.call(&[b"INCR", b"good"]) {
            Ok(Reply::Integer(n)) if n == answered as i64 + 1 => answered += 1,
            other => return Err(format!("INCR #{} answered {other:?}", answered + 1)),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(answered)
}

fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    bytes
}

#[test]
fn a_frame_sent_byte_by_byte_is_answered_and_one_too_slow_is_cut() {
    let watched = Watched::start();
    // 39 bytes, one every 20 ms: under a second, well inside the request timeout.
    let mut patient = watched.connect();
    for byte in resp(&[b"SET", b"slow", b"trickled"]) {
        patient.write_all(&[byte]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut reply = [0u8; 5];
    patient.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
    // One byte every 500 ms never finishes inside the 3 s request timeout: refused, closed.
    let mut slow = watched.connect();
    slow.set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    for byte in b"*2\r\n$3\r\nGET\r\n" {
        if slow.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        String::from_utf8_lossy(&read_until_closed(&mut slow)),
        format!("-ERR Protocol error: request not complete after {REQUEST_TIMEOUT_SECONDS} s\r\n")
    );
    watched.finish();
}

#[test]
fn claims_of_4_gib_are_refused_before_anything_is_allocated() {
    let watched = Watched::start();
    let mut resp_claim = watched.connect();
    resp_claim
        .write_all(b"*2\r\n$3\r\nGET\r\n$4294967296\r\n")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read_until_closed(&mut resp_claim)),
        "-ERR Protocol error: invalid bulk length at byte 14\r\n"
    );
    // The largest length RESP allows (512 MiB), then nothing: the server waits for the bytes
    // without reserving room for them.
    let mut big_claim = watched.connect();
    big_claim
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\nabc")
        .unwrap();
    let mut binary_claim = watched.connect();
    let mut header = vec![0xFB, 1, 0x11, 0, 9, 0, 0, 0];
    header.extend_from_slice(&u32::MAX.to_le_bytes());
    binary_claim.write_all(&header).unwrap();
    let reply = read_until_closed(&mut binary_claim);
    assert_eq!(
        &reply[..4],
        &[0xFB, 1, 0x11, 0x1F],
        "PROTOCOL_ERROR for SET"
    );
    assert!(
        String::from_utf8_lossy(&reply[12..]).starts_with("body length 4294967295 exceeds limit")
    );
    std::thread::sleep(Duration::from_millis(200));
    drop(big_claim);
    watched.finish();
}

#[test]
fn deeply_nested_arrays_are_a_protocol_error() {
    let watched = Watched::start();
    let mut nested = watched.connect();
    // Requests are arrays of bulk strings; an array inside is refused at its first byte,
    // however deep the nesting was meant to go.
    let _ = nested.write_all(&b"*1\r\n".repeat(100_000));
    assert_eq!(
        String::from_utf8_lossy(&read_until_closed(&mut nested)),
        "-ERR Protocol error: expected '$', got '*' at byte 4\r\n"
    );
    watched.finish();
}

/// The descriptor limit, raised to its hard maximum (the server, started after, inherits it).
fn raise_descriptor_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass, which lives for
    // the calls.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur as usize
}

#[test]
fn thousands_of_idle_connections_leave_the_server_answering() {
    let descriptors = raise_descriptor_limit();
    let watched = Watched::start();
    // Both processes hold one descriptor per connection; leave room for everything else.
    let count = IDLE_CONNECTIONS_MAX.min(descriptors.saturating_sub(256));
    assert!(
        count >= 500,
        "descriptor limit {descriptors} leaves only {count} connections"
    );
    let idle: Vec<TcpStream> = (0..count).map(|_| watched.connect()).collect();
    // Half of them send part of a command and stop, holding a partial request each.
    for stream in idle.iter().step_by(2) {
        (&*stream).write_all(b"*2\r\n$3\r\nGE").unwrap();
    }
    let mut info = Client::connect(watched.server.addr, Duration::from_secs(10)).unwrap();
    let connected_clients = |info: &mut Client| -> usize {
        let Reply::Bulk(Some(text)) = info.call(&[b"INFO", b"clients"]).unwrap() else {
            panic!("INFO replied something else");
        };
        String::from_utf8_lossy(&text)
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    // The kernel has completed every connect; each event loop accepts its share when it
    // next runs, so ask until all are in (bounded).
    let mut connected = 0;
    for _ in 0..200 {
        connected = connected_clients(&mut info);
        if connected > count {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The idle ones, the good client and this one.
    assert!(
        connected > count,
        "INFO says {connected} clients, {count} idle ones are open"
    );
    drop(idle);
    watched.finish();
}

#[test]
fn a_client_that_never_reads_is_cut_at_the_output_limit() {
    let watched = Watched::start();
    let mut setup = Client::connect(watched.server.addr, Duration::from_secs(10)).unwrap();
    let value = vec![b'v'; 256 * 1024];
    assert_eq!(
        setup.call(&[b"SET", b"big", &value]).unwrap(),
        Reply::Simple("OK".into())
    );
    let mut greedy = watched.connect();
    greedy
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // GETs of 256 KiB, never read: once the socket buffers are full the replies pile up in
    // the server until they pass the 4 MiB limit, and the server drops the connection.
    let request = resp(&[b"GET", b"big"]).repeat(16);
    let mut cut = false;
    for _ in 0..1000 {
        if greedy.write_all(&request).is_err() {
            cut = true;
            break;
        }
    }
    if !cut {
        // Writes may still fit the socket buffers; the reading side tells the truth.
        greedy
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut sink = vec![0u8; 1 << 20];
        let mut total = 0usize;
        loop {
            match greedy.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        let asked = 1000 * 16 * (256 * 1024);
        cut = total < asked;
    }
    assert!(cut, "the server kept answering a client that never read");
    watched.finish();
}

/// With `--max-request-memory`, incomplete requests are capped over all connections: three
/// clients each send 3 MiB of a 4 MiB SET and stop; the first two fit under 8 MiB, the third
/// passes it and is answered with an error and closed, and the first two then finish their
/// requests normally.
#[test]
fn incomplete_requests_of_all_clients_are_capped_in_total() {
    const LIMIT_BYTES: usize = 8 << 20;
    let limit = LIMIT_BYTES.to_string();
    let watched = Watched::start_with(&["--max-request-memory", &limit]);
    let header = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4194304\r\n";
    let part = vec![b'x'; 3 << 20];
    let mut started = Vec::new();
    for _ in 0..2 {
        let mut client = watched.connect();
        client.write_all(header).unwrap();
        client.write_all(&part).unwrap();
        started.push(client);
        // Let the server read it all before the next client comes.
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut third = watched.connect();
    third
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The server stops reading it once it is refused, so the write may fail: the reply says.
    let _ = third.write_all(header).and_then(|_| third.write_all(&part));
    let refused = read_until_closed(&mut third);
    let expected = format!(
        "-ERR Protocol error: incomplete requests of all clients passed the server's limit of \
         {LIMIT_BYTES} bytes (--max-request-memory)\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&refused), expected);
    // The two that fitted finish their SETs.
    for mut client in started {
        client.write_all(&vec![b'x'; 1 << 20]).unwrap();
        client.write_all(b"\r\n").unwrap();
        let mut reply = [0u8; 5];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"+OK\r\n");
    }
    watched.finish();
}
