//! Peers talk over TCP on the cluster port (a node's client port + [`CLUSTER_PORT_OFFSET`]):
//! each node dials every peer and sends its messages on that one outgoing connection, and
//! reads each peer's messages on the connection the peer dialled. A connection opens with
//! the `FLINRAFT` hello naming the sender, then carries length-prefixed messages
//! (`flin_replication::wire`; the bytes are in docs/replication.md).
//!
//! Plain threads, no event loop of their own: one acceptor, one sender per peer; the
//! connections peers dial us on are read by the raft thread itself, in the poll it waits in
//! ([`PeerStream`], decision 99). Raft tolerates lost messages, so a sender that cannot reach its peer
//! drops what is queued for it (the leader sends again on its next heartbeat) and dials again
//! after a pause; a full queue drops the newest message likewise. A connection with a bad
//! frame is closed by the raft thread (the stream is out of step), which says so in the log once.
//!
//! The raft thread writes small replication messages (appends up to [`DIRECT_BYTES`], their
//! answers, heartbeats) to the peer's connection itself when nothing is queued for that peer
//! and the socket takes them without blocking (decision 97): waking the sender thread and
//! putting the raft thread to sleep cost more CPU than the write, and a round trip woke
//! two senders on the leader and one on each follower. Anything else, or a peer whose
//! connection is busy, down or full, goes through the sender's queue, in order: the raft
//! thread writes directly only while no message it queued earlier is still unwritten.
//!
//! A connection that opens with the snapshot hello (`FLINSNAP`, `snapshot`) instead is a
//! leader shipping a snapshot: the acceptor hands it to the snapshot handler, so bulk file
//! bytes never share a connection with the raft messages.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use flin_net::socket::{send_nonblocking, IdleSocket};
use flin_replication::wire::{self, FrameReader};
use flin_replication::{Message, NodeId};

/// A node's cluster port is its client port plus this (7380 -> 17380).
pub const CLUSTER_PORT_OFFSET: u16 = 10_000;
/// Messages queued for one peer before new ones are dropped.
const QUEUE_DEPTH: usize = 8192;
/// A sender writes what is queued in one `write` once this many bytes are encoded (or the
/// queue is empty).
const SEND_BATCH_BYTES: usize = 1 << 20;
/// The raft thread writes a peer's messages itself when they encode to at most this many
/// bytes (larger appends are encoded by the sender thread, in parallel with the other
/// peer's).
pub const DIRECT_BYTES: usize = 64 << 10;
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
    /// A peer dialled us and opened with the raft hello (not read yet): the raft thread reads
    /// this connection itself ([`PeerStream`], decision 99).
    Connection(TcpStream),
    /// A leader told this node that its removal is applied (`membership::Notice`).
    Removed(super::membership::Notice),
    /// The connection a peer dialled us on ended (EOF, reset, a bad frame), and then its
    /// cluster port refused a connection: no process listens there, so the peer is gone (a
    /// killed process's sockets are closed by its kernel at once). A closed connection alone
    /// says nothing (a live peer redials after a failed write), and a port that does not
    /// answer may sit behind a partition: neither is reported.
    Gone(NodeId),
}

/// Where the transport hands what it has for the raft thread.
pub type Deliver = Arc<dyn Fn(Incoming) + Send + Sync>;

/// The sending half: a queue of messages per peer. Each peer's sender thread encodes what it
/// takes off its queue straight into the bytes it writes (decision 95): the raft thread
/// neither encodes nor copies entry data, and the two followers' appends are encoded in
/// parallel, each message's entries shared with the raft thread's log (`EntryData`).
pub struct Transport {
    peers: BTreeMap<NodeId, Peer>,
    /// Where each peer listens (`watch_gone` dials it there).
    listening: Arc<BTreeMap<NodeId, SocketAddr>>,
    deliver: Deliver,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    local: SocketAddr,
    id: NodeId,
    log: super::LogFn,
}

/// The raft thread's side of one peer: the sender's queue and the connection they share.
struct Peer {
    queue: SyncSender<Outgoing>,
    link: Arc<Mutex<Link>>,
    /// Messages queued and not yet written or dropped by the sender (it counts them down
    /// under the link's lock once written): while this is not zero, a direct write would
    /// overtake them.
    unsent: Arc<AtomicUsize>,
}

/// The connection to a peer, written by its sender thread and, directly, by the raft thread.
#[derive(Default)]
struct Link {
    stream: Option<TcpStream>,
    /// The end of a frame the raft thread began writing and the socket did not take whole:
    /// the sender writes it before anything else (the raft thread queues an
    /// [`Outgoing::Rest`] to wake it).
    rest: Vec<u8>,
}

impl Link {
    fn close(&mut self) {
        self.stream = None;
        self.rest.clear();
    }
}

/// What a sender thread takes off its queue.
enum Outgoing {
    Message(Message),
    /// Write `Link::rest`.
    Rest,
}

/// Whether the raft thread may write `message` itself: the replication traffic, which is
/// sent on every round trip, not votes (a sender checks first whether a restarted peer
/// closed the connection, so that a campaign's first message is not lost) or snapshots.
fn direct(message: &Message) -> bool {
    use flin_replication::Body;
    matches!(
        message.body,
        Body::Append { .. }
            | Body::AppendAccepted { .. }
            | Body::AppendRejected { .. }
            | Body::Heartbeat { .. }
            | Body::HeartbeatResponse { .. }
    )
}

/// Locks a peer's link (a sender that panicked holding it left it usable: a connection and
/// a frame tail, which `close` resets).
fn lock(link: &Mutex<Link>) -> MutexGuard<'_, Link> {
    link.lock().unwrap_or_else(|poisoned| {
        let mut link = poisoned.into_inner();
        link.close();
        link
    })
}

impl Transport {
    /// Listens on `listen` and starts a sender per peer (`peers`: the addresses to dial,
    /// this node excluded). Connections peers open with the raft hello go to `deliver`, as do
    /// peers found gone. `listening` holds where each peer itself listens
    /// (`Incoming::Gone` dials it there, not through a `--cluster-peers` proxy, whose refusal
    /// would say nothing about the peer). Connections that open with the snapshot hello go to
    /// `snapshots`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        id: NodeId,
        listen: SocketAddr,
        peers: &BTreeMap<NodeId, SocketAddr>,
        listening: BTreeMap<NodeId, SocketAddr>,
        deliver: Deliver,
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
            let (stop, log, deliver) = (stop.clone(), log.clone(), deliver.clone());
            threads.push(spawn("flin-raft-accept", move || {
                accept(listener, deliver, stop, log, snapshots)
            })?);
        }
        let mut transport = Transport {
            peers: BTreeMap::new(),
            listening: Arc::new(listening),
            deliver,
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

    /// The connection `from` dialled us on ended: probes, on a thread of its own, whether
    /// anything still listens where that peer does, and delivers `Incoming::Gone` if not.
    pub fn watch_gone(&self, from: NodeId) {
        let Some(&addr) = self.listening.get(&from) else {
            return;
        };
        let (stop, deliver) = (self.stop.clone(), self.deliver.clone());
        let _ = spawn("flin-raft-probe", move || {
            if probe_gone(addr, &stop) {
                deliver(Incoming::Gone(from));
            }
        });
    }

    /// Starts a sender to `peer` at `addr` (a member added at run time); a no-op for a peer
    /// it sends to already.
    pub fn add_peer(&mut self, peer: NodeId, addr: SocketAddr) -> Result<(), String> {
        if self.peers.contains_key(&peer) {
            return Ok(());
        }
        let (queue, receiver) = mpsc::sync_channel(QUEUE_DEPTH);
        let link = Arc::new(Mutex::new(Link::default()));
        let unsent = Arc::new(AtomicUsize::new(0));
        let sender = SendLoop {
            id: self.id,
            peer,
            addr,
            queue: receiver,
            link: link.clone(),
            unsent: unsent.clone(),
            stop: self.stop.clone(),
            log: self.log.clone(),
        };
        self.threads
            .push(spawn(&format!("flin-raft-to-{peer}"), move || {
                sender.run()
            })?);
        self.peers.insert(
            peer,
            Peer {
                queue,
                link,
                unsent,
            },
        );
        Ok(())
    }

    /// Stops sending to `peer` (a removed member): its sender sees its queue closed and ends.
    pub fn remove_peer(&mut self, peer: NodeId) {
        self.peers.remove(&peer);
    }

    /// The peers this transport sends to.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.keys().copied()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends `messages` in their order (each peer's in order): a peer's run of small
    /// replication messages is written by this thread in one `send(2)` when that peer's
    /// connection is idle (nothing queued, nothing half-written) and its socket takes it
    /// without blocking; the rest is queued for the peer's sender, and dropped when its queue
    /// is full (raft resends).
    pub fn send_all(&self, messages: Vec<Message>) {
        let mut messages = messages.into_iter().peekable();
        let mut frames = Vec::new();
        while let Some(first) = messages.next() {
            let Some(peer) = self.peers.get(&first.to) else {
                continue;
            };
            let (to, may_go_directly) = (first.to, direct(&first));
            let mut bytes = wire::encoded_len(&first);
            let mut run = vec![first];
            if may_go_directly && bytes <= DIRECT_BYTES {
                // The run of messages to this peer that may go directly, within DIRECT_BYTES.
                while let Some(next) = messages.next_if(|next| {
                    next.to == to && direct(next) && bytes + wire::encoded_len(next) <= DIRECT_BYTES
                }) {
                    bytes += wire::encoded_len(&next);
                    run.push(next);
                }
                frames.clear();
                for message in &run {
                    wire::write_frame(message, &mut frames);
                }
                if peer.write_directly(&frames) {
                    continue;
                }
            }
            for message in run {
                peer.queue(Outgoing::Message(message));
            }
        }
    }

    /// Stops every thread (the acceptor notices within its poll interval).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        self.peers.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Peer {
    /// Writes `frames` on the connection if it is idle: whether they left (whole, or with
    /// the tail handed to the sender). `false`: nothing was written; queue them instead.
    fn write_directly(&self, frames: &[u8]) -> bool {
        if self.unsent.load(Ordering::Acquire) != 0 {
            return false;
        }
        let Ok(mut link) = self.link.try_lock() else {
            return false;
        };
        // Counted down under this lock once written: zero here means every message queued
        // before these is on the wire.
        if self.unsent.load(Ordering::Acquire) != 0 || !link.rest.is_empty() {
            return false;
        }
        let Some(stream) = link.stream.as_ref() else {
            return false;
        };
        match send_nonblocking(stream, frames) {
            Ok(0) => false,
            Ok(sent) if sent == frames.len() => true,
            Ok(sent) => {
                link.rest.extend_from_slice(&frames[sent..]);
                drop(link);
                self.queue(Outgoing::Rest);
                true
            }
            // The sender dials again when the queued copies come.
            Err(_) => {
                link.close();
                false
            }
        }
    }

    /// Queues for the sender; drops when its queue is full or gone (raft resends).
    fn queue(&self, outgoing: Outgoing) {
        self.unsent.fetch_add(1, Ordering::AcqRel);
        if self.queue.try_send(outgoing).is_err() {
            self.unsent.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|e| format!("cannot start {name}: {e}"))
}

fn accept(
    listener: TcpListener,
    deliver: Deliver,
    stop: Arc<AtomicBool>,
    log: super::LogFn,
    snapshots: SnapshotHandler,
) {
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                let deliver = deliver.clone();
                let snapshots = snapshots.clone();
                // The peek waits (up to a second) for the hello: not on this thread.
                let log = log.clone();
                let _ = spawn("flin-raft-hello", move || match opening(&stream) {
                    Opening::Snapshot => snapshots(stream),
                    Opening::Raft => deliver(Incoming::Connection(stream)),
                    Opening::Notice => match read_notice(stream) {
                        Ok(notice) => deliver(Incoming::Removed(notice)),
                        Err(why) => log(crate::log::Level::Warn, &format!("raft: {why}")),
                    },
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

/// What a connection to the cluster port opened with.
#[derive(Debug, PartialEq, Eq)]
enum Opening {
    /// `FLINRAFT`, or anything else: the raft thread reads it (and refuses a bad hello).
    Raft,
    /// `FLINSNAP`: a snapshot transfer.
    Snapshot,
    /// `FLINGONE`: a removal notice.
    Notice,
}

/// What the connection's first bytes are (peeked, not read; waits at most a second for
/// them).
fn opening(stream: &TcpStream) -> Opening {
    let magics = [
        (super::snapshot::HELLO_MAGIC, Opening::Snapshot),
        (super::membership::NOTICE_MAGIC, Opening::Notice),
    ];
    let mut first = [0u8; 8];
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .is_err()
    {
        return Opening::Raft;
    }
    for _ in 0..20 {
        match stream.peek(&mut first) {
            Ok(n) if n >= first.len() => {
                return magics
                    .into_iter()
                    .find(|(magic, _)| *magic == &first)
                    .map_or(Opening::Raft, |(_, opening)| opening);
            }
            // A prefix of another hello so far: wait for the rest.
            Ok(n) if n > 0 && magics.iter().all(|(magic, _)| first[..n] != magic[..n]) => {
                return Opening::Raft;
            }
            Ok(0) | Err(_) => return Opening::Raft,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    Opening::Raft
}

/// Reads the removal notice a connection carries (its read timeout is set by `opening`).
fn read_notice(mut stream: TcpStream) -> Result<super::membership::Notice, String> {
    use std::io::Read;
    let mut bytes = [0u8; super::membership::NOTICE_BYTES];
    stream
        .read_exact(&mut bytes)
        .map_err(|e| format!("removal notice: cannot read its {} bytes: {e}", bytes.len()))?;
    super::membership::Notice::decode(&bytes)
}

/// Sends `notice` to `to` (the removed node's cluster port) on a connection of its own, on a
/// thread of its own: tried up to 5 times a second apart (the node may be restarting); a
/// node that never gets it stays up until stopped.
pub fn send_notice(
    to: SocketAddr,
    notice: super::membership::Notice,
    log: super::LogFn,
) -> Result<(), String> {
    spawn("flin-raft-notice", move || {
        let mut last_error = String::new();
        for attempt in 0..5 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            let sent =
                TcpStream::connect_timeout(&to, Duration::from_secs(1)).and_then(|mut stream| {
                    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
                    stream.write_all(&notice.encode())
                });
            match sent {
                Ok(()) => {
                    log(
                        crate::log::Level::Info,
                        &format!(
                            "raft: told node {} ({to}) of its removal at index {}",
                            notice.node, notice.index
                        ),
                    );
                    return;
                }
                Err(error) => last_error = error.to_string(),
            }
        }
        log(
            crate::log::Level::Warn,
            &format!(
                "raft: could not tell node {} ({to}) of its removal: {last_error}",
                notice.node
            ),
        );
    })
    .map(|_| ())
}

/// A connection a peer dialled us on, read by the raft thread itself when its poll says it
/// is readable (decision 99): no reader thread, no hand-off through a channel. Messages must
/// come from the peer the hello named and be addressed to us.
pub struct PeerStream {
    stream: mio::net::TcpStream,
    reader: FrameReader,
    from: Option<NodeId>,
    addr: Option<SocketAddr>,
}

impl PeerStream {
    pub fn new(stream: TcpStream) -> std::io::Result<PeerStream> {
        stream.set_nonblocking(true)?;
        let _ = stream.set_nodelay(true);
        let addr = stream.peer_addr().ok();
        Ok(PeerStream {
            stream: mio::net::TcpStream::from_std(stream),
            reader: FrameReader::new(),
            from: None,
            addr,
        })
    }

    /// The source to register with the raft thread's poll.
    pub fn source(&mut self) -> &mut mio::net::TcpStream {
        &mut self.stream
    }

    /// The node the hello named, once read.
    pub fn from(&self) -> Option<NodeId> {
        self.from
    }

    /// Where the connection comes from, for the log.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Reads everything that arrived (until the socket would block) into `out`, through
    /// `buffer`. `Err(None)`: the peer closed the connection; `Err(Some(why))`: it failed or
    /// went out of step. Either way the caller drops it (the messages read before are good).
    pub fn read(
        &mut self,
        id: NodeId,
        buffer: &mut [u8],
        out: &mut Vec<Message>,
    ) -> Result<(), Option<String>> {
        loop {
            let read = match self.stream.read(buffer) {
                Ok(0) => return Err(None),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Some(e.to_string())),
            };
            self.reader.push(&buffer[..read]);
            if self.from.is_none() {
                match self.reader.take_hello() {
                    None => continue,
                    Some(Ok(peer)) => self.from = Some(peer),
                    Some(Err(error)) => return Err(Some(format!("bad hello: {error}"))),
                }
            }
            while let Some(message) = self.reader.next() {
                let message = message.map_err(|e| Some(format!("bad frame: {e}")))?;
                if Some(message.from) != self.from || message.to != id {
                    return Err(Some(format!(
                        "a message from {} to {} on node {:?}'s connection",
                        message.from,
                        message.to,
                        self.from.unwrap_or(0)
                    )));
                }
                out.push(message);
            }
        }
    }
}

/// A peer's sender thread: writes what is queued for the peer, dialling as needed.
struct SendLoop {
    id: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    queue: Receiver<Outgoing>,
    link: Arc<Mutex<Link>>,
    unsent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    log: super::LogFn,
}

impl SendLoop {
    /// Sends what is queued, dialling as needed; logs an unreachable peer once per outage,
    /// not per attempt.
    fn run(self) {
        let mut reported = false;
        let mut batch = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            let first = match self.queue.recv_timeout(Duration::from_millis(200)) {
                Ok(outgoing) => outgoing,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            // Encoded before the lock is taken (the raft thread writes directly meanwhile only
            // if `unsent` is zero, and these are still counted).
            batch.clear();
            let mut taken = 1;
            if let Outgoing::Message(message) = first {
                wire::write_frame(&message, &mut batch);
            }
            while batch.len() < SEND_BATCH_BYTES {
                match self.queue.try_recv() {
                    Ok(Outgoing::Message(more)) => wire::write_frame(&more, &mut batch),
                    Ok(Outgoing::Rest) => {}
                    Err(_) => break,
                }
                taken += 1;
            }
            let mut link = lock(&self.link);
            if link.stream.as_ref().is_some_and(peer_closed) {
                link.close();
            }
            if link.stream.is_none() {
                match dial(self.id, self.addr) {
                    Ok(connected) => {
                        if reported {
                            (self.log)(
                                crate::log::Level::Info,
                                &format!("peer {} at {} reachable again", self.peer, self.addr),
                            );
                        }
                        reported = false;
                        link.stream = Some(connected);
                    }
                    Err(error) => {
                        if !reported {
                            (self.log)(
                                crate::log::Level::Warn,
                                &format!(
                                    "peer {} at {} unreachable: {error}",
                                    self.peer, self.addr
                                ),
                            );
                            reported = true;
                        }
                        // What was queued is dropped: raft sends again.
                        while self.queue.try_recv().is_ok() {
                            taken += 1;
                        }
                        self.unsent.fetch_sub(taken, Ordering::AcqRel);
                        drop(link);
                        std::thread::sleep(REDIAL_PAUSE);
                        continue;
                    }
                }
            }
            let rest = std::mem::take(&mut link.rest);
            let written = match link.stream.as_mut() {
                Some(stream) => stream
                    .write_all(&rest)
                    .and_then(|()| stream.write_all(&batch)),
                None => Ok(()),
            };
            if written.is_err() {
                link.close();
            }
            self.unsent.fetch_sub(taken, Ordering::AcqRel);
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
    // One `recv(MSG_PEEK | MSG_DONTWAIT)`: bytes or the end of the stream both mean closed.
    flin_net::socket::peek_idle(stream) != IdleSocket::Quiet
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

#[cfg(test)]
mod tests {
    use super::*;
    use flin_replication::{Body, Entry};

    /// The accepting side of a connection on which `first` was written (and, after 30 ms,
    /// `rest`), classified by `opening`.
    fn opening_of(first: &[u8], rest: &[u8]) -> Opening {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut dialled = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        dialled.write_all(first).unwrap();
        let rest = rest.to_vec();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            dialled.write_all(&rest).unwrap();
            dialled
        });
        let opening = opening(&accepted);
        drop(writer.join().unwrap());
        opening
    }

    #[test]
    fn a_connection_is_told_apart_by_its_first_eight_bytes() {
        let notice = super::super::membership::Notice {
            from: 1,
            node: 3,
            index: 10,
            term: 2,
        }
        .encode();
        assert_eq!(opening_of(&notice, b""), Opening::Notice);
        assert_eq!(opening_of(b"FLINSNAP\x01", b""), Opening::Snapshot);
        assert_eq!(opening_of(b"FLINRAFT\x01", b""), Opening::Raft);
        // A prefix of a hello waits for the rest.
        assert_eq!(opening_of(b"FLIN", b"GONE"), Opening::Notice);
        assert_eq!(opening_of(b"FLINS", b"NAP"), Opening::Snapshot);
        // Anything else is the raft thread's to refuse.
        assert_eq!(opening_of(b"GET x\r\n\r\n", b""), Opening::Raft);
    }

    fn append(n: u64, bytes: usize) -> Message {
        Message {
            from: 1,
            to: 2,
            term: n,
            body: Body::Append {
                prev_index: n,
                prev_term: 1,
                entries: vec![Entry {
                    term: 1,
                    index: n + 1,
                    data: vec![(n % 251) as u8; bytes].into(),
                }],
                commit: 0,
            },
        }
    }

    /// A peer that reads slowly fills the socket: the raft thread's direct writes find it
    /// full (nothing written, or a frame's head written and its tail handed to the sender),
    /// the rest goes through the queue, and the peer still reads every message once, whole and
    /// in the order sent, behind one hello.
    #[test]
    fn a_slow_peer_gets_every_message_in_order_through_direct_and_queued_writes() {
        let peer = TcpListener::bind("127.0.0.1:0").unwrap();
        let peers = BTreeMap::from([(2, peer.local_addr().unwrap())]);
        let log: super::super::LogFn = Arc::new(|_, _| {});
        let transport = Transport::start(
            1,
            "127.0.0.1:0".parse().unwrap(),
            &peers,
            BTreeMap::new(),
            Arc::new(|_| {}),
            Arc::new(|_| {}),
            log,
        )
        .unwrap();
        // The first message dials (through the queue); once connected, later ones may go
        // directly.
        transport.send_all(vec![append(0, 10)]);
        let (mut stream, _) = peer.accept().unwrap();
        let count = 3000u64;
        let sender = std::thread::spawn(move || {
            for n in 1..count {
                // Small ones (direct) and ones past DIRECT_BYTES (queued), in runs.
                let bytes = match n % 97 {
                    50..=54 => DIRECT_BYTES,
                    _ => 4000 + (n as usize % 7) * 1000,
                };
                transport.send_all(vec![append(n, bytes)]);
                // Let the sender drain its queue now and then, so that direct writes resume.
                if n % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            transport
        });
        // Read nothing for a while: the socket's buffers fill.
        std::thread::sleep(Duration::from_millis(300));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = FrameReader::new();
        let mut buffer = vec![0u8; 64 << 10];
        let mut next = 0u64;
        let mut hello = None;
        while next < count {
            let read = stream
                .read(&mut buffer)
                .expect("the peer reads every message");
            assert!(read > 0, "the connection closed after {next} messages");
            reader.push(&buffer[..read]);
            if hello.is_none() {
                hello = reader.take_hello();
                if hello.is_none() {
                    continue;
                }
            }
            while let Some(message) = reader.next() {
                let message = message.expect("whole frames");
                assert_eq!(message.term, next, "messages out of order or lost");
                let Body::Append { entries, .. } = &message.body else {
                    panic!("not an append")
                };
                assert!(entries[0].data.iter().all(|&b| b == (next % 251) as u8));
                next += 1;
            }
        }
        assert_eq!(hello.unwrap().unwrap(), 1);
        sender.join().unwrap().stop();
    }
}
