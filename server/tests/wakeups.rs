//! The seams a blocking command stands on, composed end to end (issue 10): a command parks its
//! request (flin-net), registers a wake-up on a key prefix of a namespace (flin-engine), and a
//! write committed by a connection of *another* event loop wakes it, through the parked
//! connection's `ConnectionHandle`; the requests pipelined behind the parked one are answered
//! after it, in order. The service here is a test's own (no KV command blocks), built from the
//! same pieces a blocking pop or a long-poll fetch will use.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use flin_engine::{Config, Engine, Namespace, WaitHandle};
use flin_net::resp::{Reply, RespVersion};
use flin_net::{Action, ConnectionHandle, Server, ServerConfig, Service};

const NS: Namespace = Namespace::Queue;

struct Waiting {
    engine: Engine,
}

struct Session {
    handle: ConnectionHandle,
    /// The key a parked WAITFOR waits for, and its wake-up registration.
    parked: Option<(Vec<u8>, WaitHandle)>,
}

impl Waiting {
    /// Answers WAITFOR with the key's value if it is there.
    fn answer(&self, key: &[u8], out: &mut Vec<u8>) -> bool {
        match self.engine.get(NS, key).unwrap() {
            Some(found) => {
                Reply::new(out, RespVersion::Resp2).bulk(&found.value);
                true
            }
            None => false,
        }
    }
}

impl Service for Waiting {
    type Session = Session;

    fn new_session(&self, handle: ConnectionHandle, _peer: SocketAddr) -> Session {
        Session {
            handle,
            parked: None,
        }
    }

    /// Commands: LOOP (the connection's event loop), PUT k v, WAITFOR k (the value, once
    /// there), PING.
    fn handle_resp(&self, session: &mut Session, args: &[&[u8]], out: &mut Vec<u8>) -> Action {
        let mut reply = Reply::new(out, RespVersion::Resp2);
        match args[0] {
            b"LOOP" => reply.integer(session.handle.loop_index() as i64),
            b"PUT" => {
                self.engine.put(NS, args[1], args[2], 0).unwrap();
                reply.simple("OK");
            }
            b"PING" => reply.simple("PONG"),
            b"WAITFOR" => {
                let key = args[1].to_vec();
                // Register first, then look: a write between the two still wakes us.
                let handle = session.handle.clone();
                let registration = self
                    .engine
                    .wake_on(NS, &key, Arc::new(move || handle.wake()));
                if self.answer(&key, out) {
                    return Action::Continue;
                }
                session.parked = Some((key, registration));
                return Action::Park { deadline_ms: None };
            }
            _ => reply.error("ERR unknown"),
        }
        Action::Continue
    }

    fn handle_binary(
        &self,
        _session: &mut Session,
        _request: &flin_net::binary::Request<'_>,
        _out: &mut Vec<u8>,
    ) -> Action {
        Action::Close
    }

    fn on_wake(&self, session: &mut Session, out: &mut Vec<u8>) -> Action {
        let Some((key, _)) = &session.parked else {
            return Action::Continue;
        };
        if self.answer(&key.clone(), out) {
            session.parked = None; // drops the registration
            Action::Continue
        } else {
            Action::Park { deadline_ms: None }
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

fn call(stream: &mut TcpStream, command: &[u8], reply_len: usize) -> Vec<u8> {
    stream.write_all(command).unwrap();
    let mut reply = vec![0u8; reply_len];
    stream.read_exact(&mut reply).unwrap();
    reply
}

#[test]
fn a_write_on_one_loop_wakes_a_request_parked_on_another_and_the_pipeline_keeps_its_order() {
    let engine = Engine::open(Config::memory().background_compaction(false)).unwrap();
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.threads = 2;
    let server = Server::bind(
        config,
        Arc::new(Waiting {
            engine: engine.clone(),
        }),
    )
    .unwrap();
    let addr = server.local_addr();
    let shutdown = server.shutdown_handle();
    let running = std::thread::spawn(move || server.run());

    let mut waiter = connect(addr);
    let waiter_loop = call(&mut waiter, b"LOOP\r\n", 4);
    // Connections land on a loop by the kernel's choice: open some until one is on the other.
    let mut writer = None;
    for _ in 0..64 {
        let mut candidate = connect(addr);
        if call(&mut candidate, b"LOOP\r\n", 4) != waiter_loop {
            writer = Some(candidate);
            break;
        }
    }
    let mut writer = writer.expect("a connection on the other event loop");

    // Park WAITFOR, with a PING pipelined behind it: nothing comes back yet.
    waiter.write_all(b"WAITFOR q/orders/1\r\nPING\r\n").unwrap();
    waiter
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut early = [0u8; 1];
    assert!(
        waiter.read(&mut early).is_err(),
        "nothing answered while parked"
    );
    waiter
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A write under another key does not complete it (it wakes nobody, or wakes and re-parks).
    assert_eq!(
        call(&mut writer, b"PUT q/orders/2 other\r\n", 5),
        b"+OK\r\n"
    );
    assert_eq!(
        call(&mut writer, b"PUT q/orders/1 hello\r\n", 5),
        b"+OK\r\n"
    );
    let mut replies = vec![0u8; b"$5\r\nhello\r\n+PONG\r\n".len()];
    waiter.read_exact(&mut replies).unwrap();
    assert_eq!(
        replies, b"$5\r\nhello\r\n+PONG\r\n",
        "the value, then the PING behind it"
    );

    shutdown.shutdown();
    running.join().unwrap().unwrap();
}
