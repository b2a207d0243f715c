//! Peers talk over TCP on the cluster port (a node's client port + [`CLUSTER_PORT_OFFSET`]):
//! each node dials every peer and sends its messages on that one outgoing connection, and
//! reads each peer's messages on the connection the peer dialled. A connection opens with
//! the `FLINRAFT` hello naming the sender, then carries length-prefixed messages
//! (`flin_replication::wire`; the bytes are in docs/replication.md).
//!
//! Plain threads, no event loop: one acceptor, one reader per incoming connection, one
//! sender per peer. Raft tolerates lost messages, so a sender that cannot reach its peer
//! drops what is queued for it (the leader sends again on its next heartbeat) and dials again
//! after a pause; a full queue drops the newest message likewise. A reader that finds a bad
//! frame closes its connection (the stream is out of step) and says so in the log once.
//!
//! A connection that opens with the snapshot hello (`FLINSNAP`, `snapshot`) instead is a
//! leader shipping a snapshot: the acceptor hands it to the snapshot handler, so bulk file
//! bytes never share a connection with the raft messages.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use flin_replication::wire::{self, FrameReader};
use flin_replication::{Message, NodeId};

/// A node's cluster port is its client port plus this (7380 -> 17380).
pub const CLUSTER_PORT_OFFSET: u16 = 10_000;
/// Messages queued for one peer before new ones are dropped.
const QUEUE_DEPTH: usize = 8192;
/// A sender writes what is queued in one `write` once this many bytes are encoded (or the
/// queue is empty).
const SEND_BATCH_BYTES: usize = 1 << 20;
/// How often, and how far apart, a peer whose connection closed is dialled to learn whether
/// it is gone (`probe_gone`).
const GONE_PROBES: u32 = 3;
const GONE_PROBE_PAUSE: Duration = Duration::from_millis(10);
/// Pause between attempts to dial an unreachable peer.
const REDIAL_PAUSE: Duration = Duration::from_millis(100);
const DIAL_TIMEOUT: Duration = Duration::from_millis(500);

/// Receives a snapshot transfer on a connection that opened with the snapshot hello (not
/// read yet).
pub type SnapshotHandler = Arc<dyn Fn(TcpStream) + Send + Sync>;

/// What the transport hands the raft thread.
pub enum Incoming {
    Message(Message),
    /// The connection a peer dialled us on ended (EOF, reset, a bad frame), and then its
    /// cluster port refused a connection: no process listens there, so the peer is gone (a
    /// killed process's sockets are closed by its kernel at once). A closed connection alone
    /// says nothing (a live peer redials after a failed write), and a port that does not
    /// answer may sit behind a partition: neither is reported.
    Gone(NodeId),
}

/// The sending half: a queue of messages per peer. Each peer's sender thread encodes what it
/// takes off its queue straight into the bytes it writes (decision 95): the raft thread
/// neither encodes nor copies entry data, and the two followers' appends are encoded in
/// parallel, each message's entries shared with the raft thread's log (`EntryData`).
pub struct Transport {
    queues: BTreeMap<NodeId, SyncSender<Message>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    local: SocketAddr,
    id: NodeId,
    log: super::LogFn,
}

impl Transport {
    /// Listens on `listen` and starts a sender per peer (`peers`: the addresses to dial,
    /// this node excluded). Incoming messages go to `inbox`, wrapped by `wrap`. `listening`
    /// holds where each peer itself listens (`Incoming::Gone` dials it there, not through a
    /// `--cluster-peers` proxy, whose refusal would say nothing about the peer). Connections
    /// that open with the snapshot hello go to `snapshots`.
    #[allow(clippy::too_many_arguments)]
    pub fn start<T: Send + 'static>(
        id: NodeId,
        listen: SocketAddr,
        peers: &BTreeMap<NodeId, SocketAddr>,
        listening: BTreeMap<NodeId, SocketAddr>,
        inbox: Sender<T>,
        wrap: fn(Incoming) -> T,
        snapshots: SnapshotHandler,
        log: super::LogFn,
    ) -> Result<Transport, String> {
        let listener = TcpListener::bind(listen)
            .map_err(|e| format!("cannot listen on the cluster port {listen}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cluster port: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let stop = stop.clone();
            let log = log.clone();
            threads.push(spawn("flin-raft-accept", move || {
                accept(listener, id, inbox, wrap, stop, log, listening, snapshots)
            })?);
        }
        let mut transport = Transport {
            queues: BTreeMap::new(),
            stop,
            threads,
            local,
            id,
            log,
        };
        for (&peer, &addr) in peers {
            transport.add_peer(peer, addr)?;
        }
        Ok(transport)
    }

    /// Starts a sender to `peer` at `addr` (a member added at run time); a no-op for a peer
    /// it sends to already.
    pub fn add_peer(&mut self, peer: NodeId, addr: SocketAddr) -> Result<(), String> {
        if self.queues.contains_key(&peer) {
            return Ok(());
        }
        let (sender, receiver) = mpsc::sync_channel(QUEUE_DEPTH);
        let (id, stop, log) = (self.id, self.stop.clone(), self.log.clone());
        self.threads
            .push(spawn(&format!("flin-raft-to-{peer}"), move || {
                send_loop(id, peer, addr, receiver, stop, log)
            })?);
        self.queues.insert(peer, sender);
        Ok(())
    }

    /// Stops sending to `peer` (a removed member): its sender sees its queue closed and ends.
    pub fn remove_peer(&mut self, peer: NodeId) {
        self.queues.remove(&peer);
    }

    /// The peers this transport sends to.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.queues.keys().copied()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Queues `message` for its peer; drops it when the queue is full (raft resends).
    pub fn send(&self, message: Message) {
        let Some(queue) = self.queues.get(&message.to) else {
            return;
        };
        match queue.try_send(message) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Stops every thread (the acceptor notices within its poll interval).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        self.queues.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|e| format!("cannot start {name}: {e}"))
}

#[allow(clippy::too_many_arguments)]
fn accept<T: Send + 'static>(
    listener: TcpListener,
    id: NodeId,
    inbox: Sender<T>,
    wrap: fn(Incoming) -> T,
    stop: Arc<AtomicBool>,
    log: super::LogFn,
    listening: BTreeMap<NodeId, SocketAddr>,
    snapshots: SnapshotHandler,
) {
    let listening = Arc::new(listening);
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let inbox = inbox.clone();
                let stop = stop.clone();
                let log = log.clone();
                let listening = listening.clone();
                let snapshots = snapshots.clone();
                let _ = spawn("flin-raft-from", move || {
                    if opens_with_snapshot_hello(&stream) {
                        snapshots(stream);
                        return;
                    }
                    let mut from = None;
                    if let Err(reason) = read_loop(stream, id, &inbox, wrap, &stop, &mut from) {
                        log(
                            crate::log::Level::Warn,
                            &format!("cluster connection from {peer} closed: {reason}"),
                        );
                    }
                    let Some(from) = from else { return };
                    if let Some(&addr) = listening.get(&from) {
                        if probe_gone(addr, &stop) {
                            let _ = inbox.send(wrap(Incoming::Gone(from)));
                        }
                    }
                });
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => {
                log(
                    crate::log::Level::Warn,
                    &format!("cluster port accept failed: {error}"),
                );
                std::thread::sleep(REDIAL_PAUSE);
            }
        }
    }
}

/// Whether the connection's first bytes are the snapshot hello (peeked, not read; waits at
/// most a second for them).
fn opens_with_snapshot_hello(stream: &TcpStream) -> bool {
    let magic = super::snapshot::HELLO_MAGIC;
    let mut first = [0u8; 8];
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .is_err()
    {
        return false;
    }
    for _ in 0..20 {
        match stream.peek(&mut first) {
            Ok(n) if n >= magic.len() => return &first == magic,
            // A prefix of either hello so far: wait for the rest.
            Ok(n) if n > 0 && first[..n] != magic[..n] => return false,
            Ok(0) | Err(_) => return false,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    false
}

/// Reads one peer's messages until the connection ends, the stream goes out of step or the
/// transport stops. Messages must come from the peer the hello named (kept in `from`) and be
/// addressed to us.
fn read_loop<T>(
    mut stream: TcpStream,
    id: NodeId,
    inbox: &Sender<T>,
    wrap: fn(Incoming) -> T,
    stop: &AtomicBool,
    from: &mut Option<NodeId>,
) -> Result<(), String> {
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(Duration::from_millis(200))))
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let mut reader = FrameReader::new();
    let mut buffer = vec![0u8; 64 << 10];
    while !stop.load(Ordering::Acquire) {
        let read = match stream.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e.to_string()),
        };
        reader.push(&buffer[..read]);
        if from.is_none() {
            match reader.take_hello() {
                None => continue,
                Some(Ok(peer)) => *from = Some(peer),
                Some(Err(error)) => return Err(format!("bad hello: {error}")),
            }
        }
        while let Some(message) = reader.next() {
            let message = message.map_err(|e| format!("bad frame: {e}"))?;
            if Some(message.from) != *from || message.to != id {
                return Err(format!(
                    "a message from {} to {} on node {:?}'s connection",
                    message.from,
                    message.to,
                    from.unwrap_or(0)
                ));
            }
            if inbox.send(wrap(Incoming::Message(message))).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Sends what is queued for `peer`, dialling as needed; logs an unreachable peer once per
/// outage, not per attempt.
fn send_loop(
    id: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    queue: Receiver<Message>,
    stop: Arc<AtomicBool>,
    log: super::LogFn,
) {
    let mut stream: Option<TcpStream> = None;
    let mut reported = false;
    let mut batch = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let message = match queue.recv_timeout(Duration::from_millis(200)) {
            Ok(message) => message,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        batch.clear();
        wire::write_frame(&message, &mut batch);
        drop(message);
        while batch.len() < SEND_BATCH_BYTES {
            match queue.try_recv() {
                Ok(more) => wire::write_frame(&more, &mut batch),
                Err(_) => break,
            }
        }
        if stream.as_ref().is_some_and(peer_closed) {
            stream = None;
        }
        if stream.is_none() {
            match dial(id, addr) {
                Ok(connected) => {
                    if reported {
                        log(
                            crate::log::Level::Info,
                            &format!("peer {peer} at {addr} reachable again"),
                        );
                    }
                    reported = false;
                    stream = Some(connected);
                }
                Err(error) => {
                    if !reported {
                        log(
                            crate::log::Level::Warn,
                            &format!("peer {peer} at {addr} unreachable: {error}"),
                        );
                        reported = true;
                    }
                    // What was queued is dropped: raft sends again.
                    while queue.try_recv().is_ok() {}
                    std::thread::sleep(REDIAL_PAUSE);
                    continue;
                }
            }
        }
        if let Some(connected) = stream.as_mut() {
            if connected.write_all(&batch).is_err() {
                stream = None;
            }
        }
    }
}

/// Whether nothing listens at `addr`: a connection is refused (a reset answers the SYN), a few
/// times over `GONE_PROBES * GONE_PROBE_PAUSE`, since a dying process's listening socket may
/// close a moment after the connection that told us. A connection accepted, or one that
/// times out (a partition, a dropped SYN), means "not known to be gone".
fn probe_gone(addr: SocketAddr, stop: &AtomicBool) -> bool {
    for _ in 0..GONE_PROBES {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        match TcpStream::connect_timeout(&addr, DIAL_TIMEOUT) {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            Err(_) => return false,
            Ok(_) => std::thread::sleep(GONE_PROBE_PAUSE),
        }
    }
    false
}

/// Whether the peer closed the connection we dialled. Peers never write on it, so anything
/// to read there is its end: the process we dialled is gone (a restarted peer is another
/// process, which never knew this connection). Without this check the first write after a
/// peer's restart is taken by the kernel and lost (the peer answers it with a reset), which
/// lost the first campaign's pre-vote after a failover and cost an election timeout.
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let readable = match stream.peek(&mut [0u8; 1]) {
        Ok(_) => true,
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).is_err() || readable
}

fn dial(id: NodeId, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, DIAL_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut hello = Vec::new();
    wire::encode_hello(id, &mut hello);
    stream.write_all(&hello)?;
    Ok(stream)
}
