//! The fault proxy on one directed link between peers: node A dials this proxy instead of
//! B's cluster port (`--cluster-peers`), and the proxy forwards to B. A node sends its raft
//! messages only on the connection it dialled, so the proxy on A->B carries exactly A's
//! messages to B, and faulting it faults that one direction.
//!
//! A link passes traffic, drops it (closes every connection it carries and closes each new one
//! at once, as a dead link looks to a dialler), or delays it (each chunk is written a fixed
//! time after it was read, so latency grows and throughput does not shrink).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a blocked proxy thread looks at its link's mode and the stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Bytes read from a socket at once.
const CHUNK_BYTES: usize = 64 * 1024;

/// What a link does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    Pass,
    Drop,
    Delay(Duration),
}

struct Shared {
    mode: Mutex<LinkMode>,
    /// Bumped when the link starts dropping: connections of an older generation close.
    generation: AtomicU64,
    stop: AtomicBool,
}

/// A running proxy for one directed link.
pub struct LinkProxy {
    pub listen: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl LinkProxy {
    /// Listens on `listen` and forwards every connection to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> Result<LinkProxy, String> {
        let listener = TcpListener::bind(listen)
            .map_err(|e| format!("fault proxy cannot listen on {listen}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("fault proxy on {listen}: {e}"))?;
        let shared = Arc::new(Shared {
            mode: Mutex::new(LinkMode::Pass),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let acceptor_shared = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("proxy-{}", listen.port()))
            .spawn(move || accept_loop(listener, target, acceptor_shared))
            .map_err(|e| format!("fault proxy thread: {e}"))?;
        Ok(LinkProxy {
            listen,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn set_mode(&self, mode: LinkMode) {
        let mut current = self.shared.mode.lock().expect("proxy mode lock");
        if mode == LinkMode::Drop && *current != LinkMode::Drop {
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
        }
        *current = mode;
    }

    pub fn mode(&self) -> LinkMode {
        *self.shared.mode.lock().expect("proxy mode lock")
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let incoming = match listener.accept() {
            Ok((incoming, _)) => incoming,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
            Err(_) => {
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
        };
        if *shared.mode.lock().expect("proxy mode lock") == LinkMode::Drop {
            let _ = incoming.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(outgoing) = TcpStream::connect_timeout(&target, Duration::from_millis(500)) else {
            let _ = incoming.shutdown(Shutdown::Both);
            continue;
        };
        let generation = shared.generation.load(Ordering::SeqCst);
        for (from, to) in [
            (incoming.try_clone(), outgoing.try_clone()),
            (outgoing.try_clone(), incoming.try_clone()),
        ] {
            if let (Ok(from), Ok(to)) = (from, to) {
                let shared = shared.clone();
                std::thread::spawn(move || pump(from, to, shared, generation));
            }
        }
    }
}

/// Copies `from` to `to` until either closes or the link drops, delaying each chunk by the
/// link's delay at the time it was read (a writer thread sleeps until it is due).
fn pump(mut from: TcpStream, to: TcpStream, shared: Arc<Shared>, generation: u64) {
    let _ = from.set_read_timeout(Some(POLL_INTERVAL));
    let _ = to.set_nodelay(true);
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer_shared = shared.clone();
    let mut writer_to = match to.try_clone() {
        Ok(stream) => stream,
        Err(_) => return,
    };
    let writer = std::thread::spawn(move || {
        while let Ok((at, chunk)) = due.recv() {
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if cut(&writer_shared, generation) || writer_to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = writer_to.shutdown(Shutdown::Both);
    });
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        if cut(&shared, generation) {
            break;
        }
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                let delay = match *shared.mode.lock().expect("proxy mode lock") {
                    LinkMode::Delay(delay) => delay,
                    _ => Duration::ZERO,
                };
                if chunks
                    .send((Instant::now() + delay, buffer[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    drop(chunks);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    let _ = writer.join();
}

/// True if the connection of `generation` must close: the link dropped since, or the proxy
/// stops.
fn cut(shared: &Shared, generation: u64) -> bool {
    shared.stop.load(Ordering::SeqCst) || shared.generation.load(Ordering::SeqCst) != generation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_delays_and_drops() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            for stream in server.incoming().take(2) {
                let mut stream = stream.unwrap();
                let mut reader = stream.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut reader, &mut stream);
                });
            }
        });
        let listen = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap()
        };
        let proxy = LinkProxy::start(listen, target).unwrap();
        let mut client = TcpStream::connect(listen).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reply = [0u8; 4];
        client.write_all(b"ping").unwrap();
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"ping");

        proxy.set_mode(LinkMode::Delay(Duration::from_millis(150)));
        let sent = Instant::now();
        client.write_all(b"pong").unwrap();
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"pong");
        assert!(sent.elapsed() >= Duration::from_millis(150));

        proxy.set_mode(LinkMode::Drop);
        let mut rest = Vec::new();
        // The carried connection is closed: the read ends (EOF or reset), it does not hang.
        let _ = client.read_to_end(&mut rest);
        let mut again = TcpStream::connect(listen).unwrap();
        again
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = again.write_all(b"x");
        assert!(matches!(again.read(&mut reply), Ok(0) | Err(_)));

        proxy.set_mode(LinkMode::Pass);
        let mut third = TcpStream::connect(listen).unwrap();
        third
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        third.write_all(b"back").unwrap();
        third.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"back");
        drop(proxy);
        drop(echo);
    }
}
