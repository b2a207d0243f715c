//! The raft thread: the one owner of the node's `flin_replication::Node`. It waits in a
//! `mio::Poll` on its peers' connections, which it reads itself, and on its `Inbox`'s waker
//! (decision 99). Each turn it takes what arrived (peers' messages, "the engine appended", a
//! transfer request), ticks when a
//! tick is due, proposes on the leader what the engine appended since the last turn, and
//! handles every `Ready` in the order the core asks: cut the log, append the entries, save
//! the hard state, (under `--fsync always`, flush), send, apply, advance. A leader's `Ready`
//! of only its own writes is flushed by the flusher thread instead (`start_flusher`, decision 98):
//! this thread calls `Node::advance_unsynced` and goes on taking acknowledgements, and the
//! flusher's `Input::Synced` becomes `Node::synced`. It asks that flush only after
//! `OWN_FLUSH_DELAY`, or at once unless the followers keeping up make a majority by themselves,
//! and opens its writes' gates at the core's commit index, which the followers' durable
//! acknowledgements alone can move (`flush_own_when_due`, decision 103).
//!
//! "Persisting" an entry is `Engine::append_entry` at its seq and term, except where the
//! engine already holds that seq in that term (the leader's own writes, which it committed
//! through the write path before proposing them): same index and term, same entry (raft's
//! log matching). "Applying" is `Engine::commit_through` and opening the writes' gates: the
//! models already saw each entry when it was appended (they are the engine's observers), and
//! a cut starts them again.
//!
//! Membership changes (CLUSTER.ADD, CLUSTER.REMOVE, and the promotion of a learner that
//! caught up, which this thread makes by itself): on the leader this thread writes the
//! change's record (`membership::Record`) to the engine as one batch and proposes that entry
//! with `Node::propose_conf_change`; followers strip the change header before appending it.
//! The asker is answered once the entry is applied (or told it was cut). The transport
//! follows the membership in force: it dials added peers and drops removed ones.
//!
//! Catch-up: the node keeps at most `--raft-held-entries` entries in memory. A follower that
//! needs older ones is listed in `Ready::wanted`; the leader reads them back from the engine's
//! log (a reader per lagging follower, `serve_wanted`) and hands them to the core
//! (`Node::send_stored`). The engine keeps them because the leader holds a compaction pin at
//! the slowest follower's next index, never more than `--raft-retain-entries` behind the
//! log's end (`pin_for_followers`): a follower further behind than that, or one whose
//! entries compaction took before this node led, is shipped a snapshot (`snapshot`): a
//! shipper thread per such follower streams the engine's files to it; once the follower
//! says they are staged, this thread sends `InstallSnapshot` (`Node::send_snapshot`). On the
//! follower, this thread lets the core take an `InstallSnapshot` only for the point staged
//! here, and when the core hands it out (`Ready::snapshot`) writes the install marker and
//! re-executes the process, which opens the snapshot at start.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flin_engine::{Engine, EntryOps};
use flin_replication::hard_state::HardStateFile;
use flin_replication::{
    wire, Body, ConfChange, ConfChangeKind, Config, Entry, EntryData, Error as RaftError,
    HardState, Membership, Message, Node, NodeId, Persisted, Ready, Role, SnapshotPoint, Wanted,
};

use super::elections::ElectionLog;
use super::membership::{is_record_op, Notice, Record};
use super::pace::{self, Pacer, WriteRate};
use super::snapshot::{install, ship, stage::Staging};
use super::transport::{Incoming, PeerStream, Transport};
use super::{entry, Cluster, View};

/// Entries the leader reads back from the engine per turn, at most...
const PROPOSE_BATCH: usize = 1024;
/// ... and bytes of their data (past which one more entry may go).
const PROPOSE_BYTES: usize = 4 << 20;
/// The node forgets applied entries once it holds this many more than it must.
const COMPACT_SLACK: u64 = 4096;
/// The most bytes of entry data in one append (an entry carries one engine batch).
const APPEND_BYTES_MAX: usize = 4 << 20;
/// The most entries in one append (the core's `append_entries_max`, 64 by default), live or
/// read back from the engine for a lagging follower. Each client write is an entry: under a
/// pipelined SET load 256 made the appends four times fewer and the cluster 7-17% faster than
/// 64, at 11% less CPU per SET (docs/benchmarks.md, "Bigger appends").
const STORED_ENTRIES_MAX: usize = 256;
/// How long the leader holds, past the retention bound, what a follower it shipped a snapshot
/// needs next while that follower makes no progress (`pin_for_followers`).
const SNAPSHOT_HOLD: Duration = Duration::from_secs(60);
/// How often the leader measures again which seq the log's bytes kept for followers reach
/// back to (`retain_floor`).
const BYTES_FLOOR_EVERY: Duration = Duration::from_millis(100);
/// Under `--fsync always`, how long the leader's own writes may wait for its flush while
/// both followers keep up (decision 103): their acknowledgements alone commit them, and the
/// flush comes this much later, covering every batch written meanwhile.
const OWN_FLUSH_DELAY: Duration = Duration::from_millis(5);
/// How often the commit point is made durable and handed to the engine (`persist_commit`).
const COMMIT_SAVE_INTERVAL: Duration = Duration::from_millis(100);
/// ... or after this many entries, whichever comes first.
const COMMIT_SAVE_ENTRIES: u64 = 20_000;
/// Heartbeat rounds dated at most (`Raft::round_times`): a majority answers within a few.
const ROUND_TIMES_MAX: usize = 1024;
/// The clocks' rates may differ by this many percent at most (the lease's clock assumption).
const CLOCK_DRIFT_MAX_PERCENT: u64 = 10;

/// A `Ready` or a commit save that blocks the raft thread longer than this is logged: the
/// thread neither ticks nor answers meanwhile, which stalls elections (a loaded disk's fsync).
const SLOW_PERSIST: Duration = Duration::from_millis(250);
/// After a snapshot transfer failed, the next attempt to the same follower waits this long.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(1);
/// A shipper waits at most this long for the commit index to reach its snapshot's index.
const SNAPSHOT_COMMIT_WAIT: Duration = Duration::from_secs(30);
/// A node that applied its own removal stops this many ticks later (1 s at the default tick):
/// time for the asker's answer to leave and, if it led, for its commit of the removal to
/// reach the others in a heartbeat.
const REMOVED_STOP_TICKS: u64 = 20;
/// In the `cluster` directory: written when this node learns it was removed (why, one line);
/// a node that finds it does not start.
const REMOVED_FILE: &str = "removed";
/// A removed node that keeps sending messages is told it was removed at most this often.
const TELL_REMOVED_EVERY: Duration = Duration::from_secs(10);

/// How long after a heartbeat round left this leader it may serve reads once a majority
/// answered it. A follower that received the round refuses (pre-)votes until its tick count
/// since reaches `election_ticks` (`Node::in_leader_lease`); its ticks never come faster
/// than one per `tick_ms` after the first (the driver's `next_tick` is at most one tick
/// late), so that is at least `(election_ticks - 2) * tick_ms` of its clock after the round
/// left, and at least `100 - CLOCK_DRIFT_MAX_PERCENT` percent of that on this node's clock.
fn lease_span_ns(election_ticks: u32, tick_ms: u64) -> u64 {
    let ticks = u64::from(election_ticks.saturating_sub(2));
    ticks * tick_ms.max(1) * 1_000_000 / 100 * (100 - CLOCK_DRIFT_MAX_PERCENT)
}

/// The raft thread's inbox: a channel, and the waker of the poll the thread waits in (it
/// also reads its peers' connections there: decision 99). Every input is sent through this.
#[derive(Clone)]
pub struct Inbox {
    sender: Sender<Input>,
    waker: Arc<mio::Waker>,
}

impl Inbox {
    /// Hands `input` to the raft thread; false once it stopped.
    pub fn send(&self, input: Input) -> bool {
        if self.sender.send(input).is_err() {
            return false;
        }
        let _ = self.waker.wake();
        true
    }
}

/// The poll token of the inbox's waker (peer connections take the others).
const WAKER: mio::Token = mio::Token(0);

/// What the raft thread is told.
pub enum Input {
    Peer(Message),
    /// A peer dialled us (`transport::Incoming::Connection`): the raft thread reads it.
    Connection(std::net::TcpStream),
    /// The peer's process is gone (`transport::Incoming::Gone`).
    PeerGone(NodeId),
    /// The write path committed an entry to the engine (on the leader).
    Appended,
    /// CLUSTER.TRANSFER: hand leadership to this node; the answer goes back on the channel.
    Transfer(NodeId, Sender<Result<(), String>>),
    /// CLUSTER.ADD (with the new node's client address) or CLUSTER.REMOVE: answered with the
    /// change's index once it is applied, or why not.
    Change(ConfChange, Option<SocketAddr>, Sender<Result<u64, String>>),
    /// A snapshot shipper ended: the point the follower staged, or why not.
    SnapshotShipped(NodeId, Result<(u64, u64), String>),
    /// The leader's flusher made the engine's log durable through this index, asked while
    /// this node led this term (`Node::synced`); or the flush failed.
    Synced(Result<(u64, u64), String>),
    /// The commit saver saved the commit point through this index; or it failed.
    CommitSaved(Result<u64, String>),
    /// A follower's flusher made the engine's log durable through this seq (messages held
    /// for it may leave: `release_held`); or the flush failed.
    Durable(Result<u64, String>),
    /// A leader says this node's removal is applied (`transport::Incoming::Removed`).
    Removed(Notice),
    Stop,
}

/// A thread that does one kind of disk work off the raft thread and reports each result to
/// its inbox: the leader's flusher under `--fsync always` (decision 98: flushes the engine
/// while the raft thread takes the followers' acknowledgements, reports `Input::Synced`) and
/// the commit saver (decision 102: `save_commit`, reports `Input::CommitSaved`; measured at
/// 1-5 ms a save, ten a second, which every write waiting to commit waited out when it ran on
/// the raft thread). Requests queued while it works are served by its next turn, for the
/// highest of them.
struct Worker<T> {
    requests: Option<Sender<T>>,
    threads: Vec<JoinHandle<()>>,
}

impl<T: Ord + Send + 'static> Worker<T> {
    /// `work` does a request and says what to report and whether to go on (not after a
    /// failure: the raft thread stops taking part). `threads` threads take requests from one
    /// queue: while one works, another takes the next request.
    fn start(
        name: &str,
        threads: usize,
        inbox: Inbox,
        work: impl FnMut(T) -> (Input, bool) + Send + Clone + 'static,
    ) -> Result<Worker<T>, String> {
        let (requests, receiver) = mpsc::channel::<T>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut worker = Worker {
            requests: Some(requests),
            threads: Vec::new(),
        };
        for _ in 0..threads.max(1) {
            let (receiver, inbox, mut work) = (receiver.clone(), inbox.clone(), work.clone());
            let thread = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || loop {
                    let request = {
                        let receiver = receiver.lock().unwrap_or_else(|e| e.into_inner());
                        let Ok(mut request) = receiver.recv() else {
                            return;
                        };
                        while let Ok(later) = receiver.try_recv() {
                            request = request.max(later);
                        }
                        request
                    };
                    let (report, go_on) = work(request);
                    if !inbox.send(report) || !go_on {
                        return;
                    }
                });
            match thread {
                Ok(thread) => worker.threads.push(thread),
                Err(e) => {
                    worker.stop();
                    return Err(format!("cannot start {name}: {e}"));
                }
            }
        }
        Ok(worker)
    }

    fn request(&self, request: T) {
        if let Some(requests) = &self.requests {
            let _ = requests.send(request);
        }
    }

    fn stop(&mut self) {
        self.requests = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The leader's flusher: asked to make the log durable through (index, term), the leader's
/// in that term.
fn start_flusher(engine: Engine, inbox: Inbox) -> Result<Worker<(u64, u64)>, String> {
    Worker::start("flin-raft-flush", 1, inbox, move |request| {
        let synced = engine
            .flush()
            .map(|()| request)
            .map_err(|e| format!("flush: {e}"));
        let ok = synced.is_ok();
        (Input::Synced(synced), ok)
    })
}

/// A follower's flushers under `--fsync always` (decision 108): asked to make the log durable
/// through a seq, the entries the raft thread wrote. Two threads, so that a batch written
/// while one flushes starts its own flush at once (the engine runs both: its ranges are
/// disjoint) instead of waiting for the first to end.
fn start_follower_flushers(engine: Engine, inbox: Inbox) -> Result<Worker<u64>, String> {
    Worker::start(
        "flin-raft-fflush",
        FOLLOWER_FLUSHERS,
        inbox,
        move |_through| {
            let durable = engine
                .flush()
                .map(|()| engine.durable_seq())
                .map_err(|e| format!("flush: {e}"));
            let ok = durable.is_ok();
            (Input::Durable(durable), ok)
        },
    )
}

/// A follower's flush threads (`start_follower_flushers`): as many as the engine runs
/// flushes at once by default.
const FOLLOWER_FLUSHERS: usize = 2;

/// The commit saver: asked to save a commit point.
fn start_commit_saver(
    engine: Engine,
    file: Arc<Mutex<HardStateFile>>,
    inbox: Inbox,
) -> Result<Worker<u64>, String> {
    Worker::start("flin-raft-commit", 1, inbox, move |commit| {
        let saved = save_commit(&engine, &file, commit);
        let ok = saved.is_ok();
        (Input::CommitSaved(saved), ok)
    })
}

/// Makes the commit point `commit` durable: the engine's log through it first (the file must
/// never name a commit point the log does not hold after a crash), then the hard state file,
/// then the engine's `commit_through` (compaction may take what is below it only once the
/// file says so). A file that already holds a later commit point (a snapshot's, set by its
/// install) is left alone. Returns the commit point saved.
fn save_commit(engine: &Engine, file: &Mutex<HardStateFile>, commit: u64) -> Result<u64, String> {
    engine.flush().map_err(|e| format!("flush: {e}"))?;
    {
        let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let saved = file.saved();
        if commit <= saved.commit {
            return Ok(commit);
        }
        file.save(&HardState { commit, ..saved })
            .map_err(|e| format!("hard state: {e}"))?;
    }
    engine
        .commit_through(commit)
        .map_err(|e| format!("commit through {commit}: {e}"))?;
    Ok(commit)
}

/// A membership change written to the engine and not yet applied: its seq, and who waits.
struct ChangeInFlight {
    seq: u64,
    answer: Option<Sender<Result<u64, String>>>,
}

/// A running raft thread.
pub struct Driver {
    inbox: Inbox,
    thread: Option<JoinHandle<()>>,
}

/// What the raft thread calls on the server around it.
pub struct Hooks {
    /// Brings the models that are not the engine's observers up to date (the queues), before
    /// this node takes writes as the leader.
    pub on_lead: Box<dyn Fn() -> Result<(), String> + Send>,
    /// Stops the server: this node was removed from the cluster (`Raft::watch_removals`).
    pub on_removed: Box<dyn FnOnce() + Send>,
}

impl Driver {
    /// Restores the node from the engine's log and the hard state file and starts the thread
    /// and the transport. `engine` must be replicated (`Config::replicated`).
    pub fn start(
        cluster: Arc<Cluster>,
        engine: Engine,
        hard_state: (HardStateFile, HardState),
        always: bool,
        bind: std::net::IpAddr,
        hooks: Hooks,
        log: super::LogFn,
    ) -> Result<Driver, String> {
        let Hooks {
            on_lead,
            on_removed,
        } = hooks;
        let id = cluster.id();
        let cluster_dir = match &engine.config().storage {
            flin_engine::Storage::Directory(data) => data.join("cluster"),
            _ => return Err("a cluster node's engine must be in a directory".into()),
        };
        if let Ok(why) = std::fs::read_to_string(cluster_dir.join(REMOVED_FILE)) {
            return Err(format!(
                "node {id} was removed from the cluster ({}): a removed node does not start again; start a new node under a new id on an empty data directory",
                why.trim()
            ));
        }
        let node = restore(&cluster, &engine, hard_state.1)?;
        let applied_members = node.applied_membership().members().collect();
        let (sender, receiver) = mpsc::channel();
        let poll =
            mio::Poll::new().map_err(|e| format!("cannot make the raft thread's poll: {e}"))?;
        let waker = mio::Waker::new(poll.registry(), WAKER)
            .map_err(|e| format!("cannot make the raft thread's waker: {e}"))?;
        let inbox = Inbox {
            sender,
            waker: Arc::new(waker),
        };
        let staging = Arc::new(Staging::new(&cluster_dir));
        let receive: super::transport::SnapshotHandler = {
            let (staging, log) = (staging.clone(), log.clone());
            Arc::new(move |stream| {
                // This thread is the connection's own (the acceptor's hello thread).
                crate::os::lower_this_thread(super::snapshot::NICE);
                match staging.receive(stream) {
                    Ok((index, term)) => log(
                        crate::log::Level::Info,
                        &format!(
                            "raft: snapshot through {index} (term {term}) staged and checked (the check read the files back in {} ms)",
                            staging.checked_in().as_millis()
                        ),
                    ),
                    Err(why) => log(crate::log::Level::Warn, &format!("raft: {why}")),
                }
            })
        };
        let peers: BTreeMap<NodeId, SocketAddr> = node
            .membership()
            .members()
            .filter(|&peer| peer != id)
            .filter_map(|peer| Some((peer, cluster.dial_addr(peer)?)))
            .collect();
        let mut listen = cluster.options.cluster_addr(id);
        listen.set_ip(bind);
        // Where the members at start listen (a peer added later is not probed when its
        // connection closes: it is only forgotten as leader at its election timeout).
        let listening = peers
            .keys()
            .filter_map(|&peer| {
                let mut addr = cluster.address(peer)?;
                addr.set_port(
                    addr.port()
                        .checked_add(super::transport::CLUSTER_PORT_OFFSET)?,
                );
                Some((peer, addr))
            })
            .collect();
        let deliver: super::transport::Deliver = {
            let inbox = inbox.clone();
            Arc::new(move |incoming| {
                let _ = inbox.send(match incoming {
                    Incoming::Connection(stream) => Input::Connection(stream),
                    Incoming::Gone(peer) => Input::PeerGone(peer),
                    Incoming::Removed(notice) => Input::Removed(notice),
                });
            })
        };
        let transport =
            Transport::start(id, listen, &peers, listening, deliver, receive, log.clone())?;
        *cluster.wake.lock().expect("cluster wake lock") = Some(inbox.clone());
        let committed = engine.committed_seq();
        let elections = ElectionLog::new(&node, log.clone());
        let flusher = match always {
            true => Some(start_flusher(engine.clone(), inbox.clone())?),
            false => None,
        };
        let follower_flushers = match always {
            true => Some(start_follower_flushers(engine.clone(), inbox.clone())?),
            false => None,
        };
        let hard_state_file = Arc::new(Mutex::new(hard_state.0));
        let commit_saver = Some(start_commit_saver(
            engine.clone(),
            hard_state_file.clone(),
            inbox.clone(),
        )?);
        let lease_span_ns = lease_span_ns(node.config().election_ticks, cluster.options.tick_ms);
        let mut raft = Raft {
            turn_started_ns: crate::os::lease_clock_ns(),
            round_times: VecDeque::new(),
            lease_span_ns,
            lease_until_ns: 0,
            flusher,
            follower_flushers,
            held: HeldMessages::default(),
            commit_saver,
            commit_save_pending: false,
            own_unflushed: None,
            heard: BTreeMap::new(),
            leading_since: None,
            live_window: Duration::from_millis(3 * cluster.options.tick_ms.max(1)),
            gates_opened: 0,
            poll,
            connections: BTreeMap::new(),
            next_token: WAKER.0 + 1,
            read_buffer: vec![0; 64 << 10],
            elections,
            cluster,
            always,
            engine,
            proposed_through: 0,
            proposed_term: 0,
            durable_commit: committed,
            applied: committed,
            last_commit_save: Instant::now(),
            on_lead,
            applied_members,
            removed_at: None,
            on_removed: Some(on_removed),
            told_removed: BTreeMap::new(),
            proposal_reader: None,
            node,
            saved_vote: hard_state.1,
            hard_state: hard_state_file,
            transport: Some(transport),
            log,
            elections_won: 0,
            change: None,
            peers_of: None,
            catch_ups: BTreeMap::new(),
            feed_pacers: BTreeMap::new(),
            write_rate: WriteRate::new(Instant::now()),
            paced: BTreeMap::new(),
            follower_pin: None,
            inbox: inbox.clone(),
            staging,
            outbox: Arc::new(ship::Outbox::new(&cluster_dir)),
            cluster_dir,
            shippers: BTreeMap::new(),
            snapshot_retry: BTreeMap::new(),
            snapshot_holds: BTreeMap::new(),
            pinned_from: 0,
            bytes_floor: None,
        };
        let tick = Duration::from_millis(raft.cluster.options.tick_ms.max(1));
        let thread = std::thread::Builder::new()
            .name("flin-raft".into())
            .spawn(move || raft.run(receiver, tick))
            .map_err(|e| format!("cannot start the raft thread: {e}"))?;
        Ok(Driver {
            inbox,
            thread: Some(thread),
        })
    }

    /// Stops the thread and the transport.
    pub fn stop(mut self) {
        let _ = self.inbox.send(Input::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The node as the engine and the hard state file left it: entries above the engine's
/// commit point are read back (the engine pins them: never compacted); below it the engine
/// holds the state, and only the commit point's term is needed.
///
/// The membership as of the commit point is the first change read back's "before", else the
/// engine's latest record's "after", else `--cluster`'s voters; the changes read back get
/// their header again, so the node has them in force at once.
///
/// A node whose removal is committed does not start (etcd's removed member does not either):
/// it would get no entries, and its id is never added again.
fn restore(cluster: &Cluster, engine: &Engine, hard_state: HardState) -> Result<Node, String> {
    let options = &cluster.options;
    let mut membership = None;
    // The nodes removed as of the commit point: the latest record's list, or, when changes
    // follow the commit point, the first one's without its own removal.
    let mut removed = BTreeSet::new();
    if let Some(record) = Record::latest(engine)? {
        cluster.learn_addresses(&record.addresses);
        removed = record.removed;
        membership = Some(record.after);
    }
    let offset = engine.committed_seq();
    let offset_term = engine
        .term_at(offset)
        .map_err(|e| format!("cannot read the term at the commit point {offset}: {e}"))?
        .unwrap_or(0);
    let mut entries = Vec::new();
    let mut first_change_before = None;
    let mut reader = engine.reader(offset + 1);
    while let Some(read) = reader
        .next_entry()
        .map_err(|e| format!("cannot read the log back from {}: {e}", offset + 1))?
    {
        let mut data = entry::encode(&read);
        if let Some(record) = Record::in_ops(&read.ops) {
            let record = record.map_err(|e| format!("entry {}: {e}", read.seq))?;
            cluster.learn_addresses(&record.addresses);
            if first_change_before.is_none() {
                first_change_before = Some(record.before.clone());
                removed = record.removed.clone();
                if record.change.kind == ConfChangeKind::RemoveNode {
                    removed.remove(&record.change.node);
                }
            }
            let mut with_header = Vec::new();
            wire::encode_conf_change(record.change, &data, &mut with_header);
            data = with_header;
        }
        entries.push(Entry {
            term: read.term,
            index: read.seq,
            data: data.into(),
        });
    }
    if removed.contains(&options.id) {
        return Err(format!(
            "node {} was removed from the cluster (its membership record says so at the commit point {offset}): a removed node does not start again; start a new node under a new id on an empty data directory",
            options.id
        ));
    }
    let membership = first_change_before
        .or(membership)
        .unwrap_or_else(|| Membership::new(options.initial_voters()));
    let mut config = Config::new(options.id, membership);
    // Entries carry engine batches (up to a few MiB each).
    config.append_bytes_max = APPEND_BYTES_MAX;
    config.append_entries_max = STORED_ENTRIES_MAX;
    // Two full pipelines of appends, as the core's default (decision 80).
    config.learner_lag_max = 2 * (STORED_ENTRIES_MAX * config.inflight_appends_max) as u64;
    config.entry_bytes_max = 32 << 20;
    let mut hard_state = hard_state;
    // Under `everysec` a crash may have lost entries the file says were committed.
    hard_state.commit = hard_state
        .commit
        .clamp(offset, offset + entries.len() as u64);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ options.id.rotate_left(32);
    Ok(Node::restart(
        config,
        seed,
        Persisted {
            hard_state,
            entries,
            applied: offset,
            offset,
            offset_term,
        },
    ))
}

/// Waits until the node still leads `term` and its commit index reached `index` (a snapshot
/// holds committed entries only).
fn wait_committed(
    cluster: &Cluster,
    term: u64,
    index: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let view = cluster.view();
        if view.role != Role::Leader || view.term != term {
            return Err(format!("no longer the leader of term {term}"));
        }
        if view.commit >= index {
            return Ok(());
        }
        if stop.load(std::sync::atomic::Ordering::Acquire) {
            return Err("stopped".into());
        }
        if started.elapsed() > SNAPSHOT_COMMIT_WAIT {
            return Err(format!(
                "the commit index {} did not reach the snapshot's {index} within {} s",
                view.commit,
                SNAPSHOT_COMMIT_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An entry's data as read back from the engine's log: a membership record gets the core's
/// change header again (as the leader proposed it).
fn stored_data(read: &flin_engine::LogEntry) -> Vec<u8> {
    let data = entry::encode(read);
    match Record::in_ops(&read.ops) {
        Some(Ok(record)) => {
            let mut with_header = Vec::new();
            wire::encode_conf_change(record.change, &data, &mut with_header);
            with_header
        }
        _ => data,
    }
}

struct Raft {
    cluster: Arc<Cluster>,
    /// When this turn started, on the lease clock (`os::lease_clock_ns`): no heartbeat round
    /// made during the turn left earlier.
    turn_started_ns: u64,
    /// Heartbeat rounds made as leader, with the start of the turn that made them, oldest
    /// first: (the last round made by then, turn start). Pruned below the lease's round.
    round_times: VecDeque<(u64, u64)>,
    /// How long after a round left a majority that answered it refuses other candidates, as
    /// this node may count on it (`lease_span_ns`).
    lease_span_ns: u64,
    /// The lease last published (`Cluster::readable`), 0 for none.
    lease_until_ns: u64,
    engine: Engine,
    always: bool,
    /// What this thread waits in: its inbox's waker and its peers' connections.
    poll: mio::Poll,
    /// The connections peers dialled us on, by poll token.
    connections: BTreeMap<usize, PeerStream>,
    next_token: usize,
    read_buffer: Vec<u8>,
    /// Under `--fsync always`: flushes the leader's own entries off this thread.
    flusher: Option<Worker<(u64, u64)>>,
    /// Under `--fsync always`: flush the entries this node writes as a follower, off this
    /// thread, two at a time (`start_follower_flushers`).
    follower_flushers: Option<Worker<u64>>,
    /// Messages that leave only once the engine's log is durable through their entries.
    held: HeldMessages,
    /// Saves the commit point off this thread (`persist_commit`); `None` once stopped.
    commit_saver: Option<Worker<u64>>,
    /// A save was asked of the commit saver and it has not answered yet.
    commit_save_pending: bool,
    /// On the leader under `--fsync always`: its own entries written without a flush asked
    /// yet, through which index and in which term, and since when (decision 103).
    own_unflushed: Option<OwnUnflushed>,
    /// When each peer's last message arrived: a follower not heard from for
    /// `live_window` does not count on to commit the leader's writes without its flush.
    heard: BTreeMap<NodeId, Instant>,
    live_window: Duration,
    /// When this node's current leadership was first published (`View::leading_since`).
    leading_since: Option<Instant>,
    /// The leader opened its writes' gates through this index (`flush_own_when_due`).
    gates_opened: u64,
    node: Node,
    /// The hard state file, shared with the commit saver: this thread saves the term and
    /// vote, the saver the commit point.
    hard_state: Arc<Mutex<HardStateFile>>,
    /// The term and vote the file holds (only this thread changes them; its commit field is
    /// not kept up to date).
    saved_vote: HardState,
    transport: Option<Transport>,
    log: super::LogFn,
    elections_won: u64,
    elections: ElectionLog,
    /// The leader proposed the engine's entries through this seq, in `proposed_term`:
    /// persisting them again is a no-op (same index and term, same entry), known without
    /// reading the log.
    proposed_through: u64,
    proposed_term: u64,
    /// The commit point saved in the hard state file, and passed to the engine's
    /// `commit_through` (which lets compaction take what is below it): never more than the
    /// file says, or a restart would open at an older commit point whose entries compaction
    /// already removed.
    durable_commit: u64,
    /// Entries through this index are committed and their writes' gates open.
    applied: u64,
    last_commit_save: Instant,
    /// Brings the models that are not the engine's observers up to date (the queues), before
    /// this node takes writes as the leader.
    on_lead: Box<dyn Fn() -> Result<(), String> + Send>,
    /// The members of the membership this node applied (`watch_removals`).
    applied_members: BTreeSet<NodeId>,
    /// When this node applied its own removal: it stops `REMOVED_STOP_TICKS` later.
    removed_at: Option<Instant>,
    /// Stops the server (etcd's member stops once it is removed); taken when called.
    on_removed: Option<Box<dyn FnOnce() + Send>>,
    /// Removed nodes that sent this node a message, and when it last told them so.
    told_removed: BTreeMap<NodeId, Instant>,
    /// The leader's reader of its own writes, kept from turn to turn at the next seq to
    /// propose: a new reader finds its seq by walking the segment's records from the start,
    /// which made every turn cost the segment's length (most of the leader's CPU under load).
    /// Dropped off the leader and on a cut, so its compaction pin holds nothing back.
    proposal_reader: Option<flin_engine::LogReader>,
    /// The membership change this node wrote and has not seen applied (one at a time).
    change: Option<ChangeInFlight>,
    /// The membership the transport's peers were last set from.
    peers_of: Option<Membership>,
    /// On the leader: a reader of the engine's log per follower being fed entries the node
    /// no longer holds in memory (kept, like `proposal_reader`, so each batch continues
    /// where the last stopped).
    catch_ups: BTreeMap<NodeId, CatchUp>,
    /// On the leader: the pace of each follower's feed from the log (`--catch-up-rate-mb`).
    feed_pacers: BTreeMap<NodeId, Pacer>,
    /// On the leader: its own write rate, which a paced feed outruns (`FEED_OVER_WRITES`).
    write_rate: WriteRate,
    /// On the leader: followers whose feed waits for its pacer, the index each needs next and
    /// when it may go on (the poll wakes then: `resume_paced`).
    paced: BTreeMap<NodeId, (u64, Instant)>,
    /// On the leader: keeps the engine from compacting what the slowest follower needs next,
    /// within `retain_entries_max` of the log's end (`pin_for_followers`).
    follower_pin: Option<flin_engine::Pin>,
    /// This thread's own inbox (shipper threads report there).
    inbox: Inbox,
    /// On a follower: the snapshot being received or staged (`snapshot::stage`).
    staging: Arc<Staging>,
    /// On the leader: the snapshot shared by the shippers (`snapshot::ship`).
    outbox: Arc<ship::Outbox>,
    /// The data directory's `cluster` directory (hard state, snapshots, `REMOVED_FILE`).
    cluster_dir: std::path::PathBuf,
    /// On the leader: a running shipper per follower being sent a snapshot.
    shippers: BTreeMap<NodeId, Shipper>,
    /// On the leader: followers whose last transfer failed, and when to try again.
    snapshot_retry: BTreeMap<NodeId, Instant>,
    /// On the leader: followers shipped a snapshot, the index they have (the snapshot's, then
    /// their match) and when they last moved: the pin holds the entry after it, past the
    /// retention bound (`pin_for_followers`).
    snapshot_holds: BTreeMap<NodeId, (u64, Instant)>,
    /// On the leader: the first seq the follower pin holds; a follower that needs an older
    /// entry is shipped a snapshot (`serve`).
    pinned_from: u64,
    /// On the leader: the oldest seq within the log's bytes kept for followers
    /// (`--raft-retain-mb`, a share of the log), and when it was measured (`retain_floor`).
    bytes_floor: Option<(u64, Instant)>,
}

/// Whether a handled `Ready`'s entries are durable (`Node::advance`), or their flush was
/// handed to the flusher (`Node::advance_unsynced`).
enum Flushed {
    Yes,
    Asked,
}

/// Whether the voters of `membership` other than `leader` that were `heard_lately` and hold
/// everything through `commit` (their `matched` index) are a majority by themselves.
fn followers_make_a_majority(
    membership: &Membership,
    leader: NodeId,
    commit: u64,
    heard_lately: impl Fn(NodeId) -> bool,
    matched: impl Fn(NodeId) -> Option<u64>,
) -> bool {
    let keeping_up = membership
        .voters()
        .filter(|&voter| voter != leader && heard_lately(voter))
        .filter(|&voter| matched(voter).is_some_and(|index| index >= commit))
        .count();
    keeping_up >= membership.quorum()
}

/// Messages that may leave only once the engine's log is durable through a seq, oldest first:
/// a follower's acknowledgements of entries its flushers are flushing, and every message made
/// after them, so that none overtakes them (decision 108).
#[derive(Default)]
struct HeldMessages {
    queue: VecDeque<(u64, Vec<Message>)>,
    /// The last entry of the latest flush handed off and not known durable yet: every
    /// message made after it waits for it, even with nothing queued before.
    flushing_through: Option<u64>,
}

impl HeldMessages {
    fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.flushing_through.is_none()
    }

    /// Queues `messages` of a `Ready` whose entries' flush was handed off (`through`: its
    /// last entry), or of any `Ready` while others wait (`None`: behind them). Returns them
    /// if they need not wait.
    fn hold(&mut self, through: Option<u64>, messages: Vec<Message>) -> Option<Vec<Message>> {
        let through = through.or(self.flushing_through);
        match through {
            Some(through) => {
                self.flushing_through = Some(through);
                if !messages.is_empty() {
                    self.queue.push_back((through, messages));
                }
                None
            }
            None => Some(messages),
        }
    }

    /// The held messages free to leave now the log is durable through `durable`, in order.
    fn release(&mut self, durable: u64) -> Vec<Message> {
        let mut free = Vec::new();
        while self
            .queue
            .front()
            .is_some_and(|&(through, _)| through <= durable)
        {
            if let Some((_, messages)) = self.queue.pop_front() {
                free.extend(messages);
            }
        }
        if self
            .flushing_through
            .is_some_and(|through| through <= durable)
        {
            self.flushing_through = None;
        }
        free
    }
}

/// The leader's own entries written and not yet handed to its flusher.
struct OwnUnflushed {
    through: u64,
    term: u64,
    since: Instant,
}

/// A shipper thread: stopped by its flag when this node stops leading.
struct Shipper {
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// The index the snapshot runs through, once the shipper has made it (0 until then).
    point: Arc<AtomicU64>,
}

/// What the leader read back to propose: the entries' data laid out in one buffer.
struct Proposals {
    buffer: Vec<u8>,
    entries: Vec<Proposal>,
}

struct Proposal {
    seq: u64,
    term: u64,
    /// Where the entry's data lies in `Proposals::buffer`.
    data: std::ops::Range<usize>,
    /// The entry writes a membership record.
    membership: bool,
}

/// A lagging follower's reader of the leader's engine log.
struct CatchUp {
    reader: flin_engine::LogReader,
    /// The term of the entry before the reader's next one.
    prev_term: u64,
    /// Entries read that the core did not take (the follower's pipeline was full): the next
    /// batch, if the follower still needs them from there.
    ahead: Vec<Entry>,
}

impl Raft {
    fn run(&mut self, inbox: Receiver<Input>, tick: Duration) {
        let mut next_tick = Instant::now() + tick;
        let mut events = mio::Events::with_capacity(64);
        let mut arrived = Vec::new();
        loop {
            // Messages a new connection brought (`take_connection`) are taken at once.
            let own_flush = self
                .own_unflushed
                .as_ref()
                .map(|own| own.since + OWN_FLUSH_DELAY);
            let wake = self
                .paced
                .values()
                .map(|&(_, at)| at)
                .chain(own_flush)
                .fold(next_tick, Instant::min);
            let wait = match arrived.is_empty() {
                true => wake.saturating_duration_since(Instant::now()),
                false => Duration::ZERO,
            };
            let polled = self.poll.poll(&mut events, Some(wait));
            self.turn_started_ns = crate::os::lease_clock_ns();
            if let Err(error) = polled {
                if error.kind() != std::io::ErrorKind::Interrupted {
                    (self.log)(
                        crate::log::Level::Warn,
                        &format!("raft: poll failed: {error}"),
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            // Peers' messages first (each connection's in order), then the inbox.
            for event in events.iter() {
                if event.token() != WAKER {
                    self.read_peer(event.token().0, &mut arrived);
                }
            }
            let mut stop = false;
            let mut disconnected = false;
            let inputs = arrived
                .drain(..)
                .map(Input::Peer)
                .chain(std::iter::from_fn(|| match inbox.try_recv() {
                    Ok(input) => Some(input),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        disconnected = true;
                        None
                    }
                }))
                .collect::<Vec<_>>();
            if disconnected {
                stop = true;
            }
            let arrived_at = Instant::now();
            for input in inputs {
                match input {
                    // The core restarts its log after the snapshot's point: only for the
                    // point whose files are staged and checked here.
                    Input::Peer(Message {
                        body: Body::InstallSnapshot { index, term, .. },
                        ..
                    }) if index > self.node.commit_index()
                        && self.staging.verified() != Some((index, term)) =>
                    {
                        (self.log)(
                            crate::log::Level::Warn,
                            &format!("raft: InstallSnapshot through {index} (term {term}) refused: no such snapshot is staged here"),
                        );
                    }
                    Input::Peer(message) => {
                        self.heard.insert(message.from, arrived_at);
                        if !self.applied_members.contains(&message.from) {
                            self.tell_if_removed(message.from);
                        }
                        self.elections.received(&message, &self.node);
                        if let Err(error) = self.node.step(message) {
                            (self.log)(
                                crate::log::Level::Warn,
                                &format!("raft: a peer's message refused: {error}"),
                            );
                        }
                    }
                    Input::PeerGone(peer) => {
                        self.elections.peer_gone(peer, &self.node);
                        // A dead leader's connection closes and its port refuses at once: no
                        // need to wait out an election timeout to know (`Node::forget_leader`).
                        // Its lease dies with it, so leader reads stay safe (decision 85).
                        if self.node.leader() == Some(peer) {
                            self.node.forget_leader();
                        }
                    }
                    Input::Appended => {}
                    Input::Connection(stream) => self.take_connection(stream, &mut arrived),
                    Input::Transfer(to, answer) => {
                        let _ =
                            answer.send(self.node.transfer_leader(to).map_err(|e| e.to_string()));
                    }
                    Input::Change(change, addr, answer) => {
                        if let Err(error) = self.write_change(change, addr, Some(answer.clone())) {
                            let _ = answer.send(Err(error));
                        }
                    }
                    Input::SnapshotShipped(to, result) => self.snapshot_shipped(to, result),
                    Input::Synced(Ok((index, term))) => self.node.synced(index, term),
                    Input::Durable(Ok(durable)) => self.release_held(durable),
                    Input::Synced(Err(error)) | Input::Durable(Err(error)) => {
                        // The disk failed under the log: this node cannot keep its promises.
                        self.stop_taking_part(
                            crate::log::Level::Warn,
                            &format!("cannot persist: {error}"),
                        );
                        self.stop_flusher();
                        return;
                    }
                    Input::CommitSaved(Ok(commit)) => {
                        self.durable_commit = self.durable_commit.max(commit);
                        self.commit_save_pending = false;
                    }
                    Input::CommitSaved(Err(error)) => {
                        self.stop_taking_part(
                            crate::log::Level::Error,
                            &format!("cannot persist the commit point: {error}"),
                        );
                        self.stop_flusher();
                        return;
                    }
                    Input::Removed(notice) if notice.node == self.node.id() => {
                        self.removed(&format!(
                            "node {} told it its removal was applied at index {} (term {})",
                            notice.from, notice.index, notice.term
                        ));
                    }
                    Input::Removed(notice) => (self.log)(
                        crate::log::Level::Warn,
                        &format!(
                            "raft: a removal notice for node {} from node {} ignored: this is node {}",
                            notice.node,
                            notice.from,
                            self.node.id()
                        ),
                    ),
                    Input::Stop => stop = true,
                }
                self.watch_role();
            }
            if stop {
                break;
            }
            if Instant::now() >= next_tick {
                next_tick += tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + tick;
                }
                self.node.tick();
                self.watch_role();
            }
            self.promote_caught_up();
            self.propose_appended();
            self.resume_paced();
            while self.node.has_ready() {
                let mut ready = self.node.ready();
                let wanted = std::mem::take(&mut ready.wanted);
                let started = Instant::now();
                let handled = self.handle(ready);
                self.note_slow(started, "persisting a Ready");
                match handled {
                    Ok(Flushed::Yes) => self.node.advance(),
                    Ok(Flushed::Asked) => self.node.advance_unsynced(),
                    Err(error) => {
                        // The disk failed under the log: this node cannot keep its promises.
                        self.stop_taking_part(
                            crate::log::Level::Warn,
                            &format!("cannot persist: {error}"),
                        );
                        self.stop_flusher();
                        return;
                    }
                }
                self.serve_wanted(wanted);
                self.watch_role();
            }
            self.flush_own_when_due();
            let started = Instant::now();
            let persisted = self.persist_commit(false);
            self.note_slow(started, "saving the commit point");
            if let Err(error) = persisted {
                self.stop_taking_part(
                    crate::log::Level::Error,
                    &format!("cannot persist the commit point: {error}"),
                );
                return;
            }
            self.compact();
            self.follow_membership();
            self.publish_view();
            self.watch_removals();
        }
        // The saver first: the last save runs here, after any it had under way.
        self.stop_flusher();
        let _ = self.persist_commit(true);
        self.stop_transport();
    }

    /// Starts reading a connection a peer dialled us on: registers it with the poll and
    /// reads what already arrived (into `arrived`, for the next turn).
    fn take_connection(&mut self, stream: std::net::TcpStream, arrived: &mut Vec<Message>) {
        let token = self.next_token;
        self.next_token += 1;
        let registered = PeerStream::new(stream).and_then(|mut peer| {
            self.poll.registry().register(
                peer.source(),
                mio::Token(token),
                mio::Interest::READABLE,
            )?;
            Ok(peer)
        });
        match registered {
            Ok(peer) => {
                self.connections.insert(token, peer);
                self.read_peer(token, arrived);
            }
            Err(error) => (self.log)(
                crate::log::Level::Warn,
                &format!("raft: cannot read a peer's connection: {error}"),
            ),
        }
    }

    /// Reads what a peer's connection holds into `arrived`; a connection that ended is
    /// dropped, and the transport probes whether its peer is gone.
    fn read_peer(&mut self, token: usize, arrived: &mut Vec<Message>) {
        let Some(peer) = self.connections.get_mut(&token) else {
            return;
        };
        let id = self.node.id();
        let Err(ended) = peer.read(id, &mut self.read_buffer, arrived) else {
            return;
        };
        let Some(mut peer) = self.connections.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(peer.source());
        if let Some(reason) = ended {
            (self.log)(
                crate::log::Level::Warn,
                &format!(
                    "cluster connection from {} closed: {reason}",
                    peer.addr().map_or("?".into(), |addr| addr.to_string())
                ),
            );
        }
        if let (Some(from), Some(transport)) = (peer.from(), &self.transport) {
            transport.watch_gone(from);
        }
    }

    /// Stops the threads that write for this one: the flusher and the commit saver.
    fn stop_flusher(&mut self) {
        if let Some(mut flusher) = self.flusher.take() {
            flusher.stop();
        }
        if let Some(mut flushers) = self.follower_flushers.take() {
            flushers.stop();
        }
        if let Some(mut saver) = self.commit_saver.take() {
            saver.stop();
        }
    }

    fn note_slow(&self, started: Instant, what: &str) {
        let took = started.elapsed();
        if took >= SLOW_PERSIST {
            (self.log)(
                crate::log::Level::Warn,
                &format!(
                    "raft: {what} took {} ms (no ticks, no answers meanwhile)",
                    took.as_millis()
                ),
            );
        }
    }

    /// A disk failure: logs `why`, refuses writes and leaves the cluster (the caller returns
    /// from the raft loop).
    fn stop_taking_part(&mut self, level: crate::log::Level, why: &str) {
        (self.log)(level, &format!("raft: {why}; the node stops taking part"));
        self.cluster.set_writable_term(0);
        self.stop_transport();
    }

    fn stop_transport(&mut self) {
        if let Some(transport) = self.transport.take() {
            transport.stop();
        }
    }

    /// Refuses writes the moment this node is no longer the leader of the term it took writes
    /// in, and takes them once it leads and its term's empty entry is in the engine.
    fn watch_role(&mut self) {
        self.elections.watch(&self.node);
        self.publish_lease();
        let term = self.node.term();
        let leads = self.node.role() == Role::Leader;
        let writable = self
            .cluster
            .writable_term
            .load(std::sync::atomic::Ordering::Acquire);
        if writable != 0 && (!leads || writable != term) {
            self.cluster.set_writable_term(0);
        }
        if leads && writable != term && self.engine.last_seq() >= self.node.last_index() {
            // The empty entry is persisted once the engine's log reaches the node's last index
            // in this term (handle() put it there).
            if self.engine.term_at(self.node.last_index()).ok().flatten() == Some(term) {
                if let Err(error) = self.engine.set_term(term) {
                    (self.log)(
                        crate::log::Level::Warn,
                        &format!("raft: cannot take term {term}: {error}"),
                    );
                    return;
                }
                if let Err(error) = (self.on_lead)() {
                    (self.log)(
                        crate::log::Level::Warn,
                        &format!("raft: cannot load the models to lead term {term}: {error}"),
                    );
                    return;
                }
                self.elections_won += 1;
                self.cluster.set_writable_term(term);
                (self.log)(
                    crate::log::Level::Info,
                    &format!("raft: node {} leads term {term}", self.node.id()),
                );
            }
        }
    }

    /// Dates the heartbeat rounds the core made since the last call (every input, tick and
    /// `Ready` is followed by one, in the same turn, before any message leaves), and publishes
    /// the lease of the round a majority answered: its turn's start plus `lease_span_ns`.
    /// Cleared at once when the core has no lease (not the leader, a transfer under way).
    fn publish_lease(&mut self) {
        let made = self.node.heartbeat_round();
        if self
            .round_times
            .back()
            .is_none_or(|&(round, _)| round < made)
        {
            if self.round_times.len() == ROUND_TIMES_MAX {
                self.round_times.pop_front(); // a lease round older than this has no date
            }
            self.round_times.push_back((made, self.turn_started_ns));
        }
        let until = match self.node.lease_round() {
            None => 0,
            Some(round) => {
                // The first record at or after `round` dates it: the rounds between the
                // record before and it were made in its turn.
                while self.round_times.len() > 1 && self.round_times[1].0 <= round {
                    self.round_times.pop_front();
                }
                match self.round_times.iter().find(|&&(made, _)| made >= round) {
                    Some(&(_, started)) => (started + self.lease_span_ns).max(self.lease_until_ns),
                    None => 0,
                }
            }
        };
        if until != self.lease_until_ns {
            self.lease_until_ns = until;
            self.cluster.set_lease_until(until);
        }
    }

    /// On the leader: proposes what the write path appended to the engine since the node's
    /// last index (the core's indexes are the seqs). An entry of an older term found there
    /// was written by a write that raced this node's loss of leadership: it is cut.
    fn propose_appended(&mut self) {
        // Cleared before the engine's last seq is read, by a read-modify-write: it reads the
        // flag a write set after its append (so that append is visible below), and a write
        // that swaps after it finds it clear and wakes the next turn (`notify_appended`).
        self.cluster
            .appended_unseen
            .swap(false, std::sync::atomic::Ordering::AcqRel);
        if self.node.role() != Role::Leader || !self.cluster.writable() {
            self.proposal_reader = None;
            return;
        }
        let term = self.node.term();
        while self.node.last_index() < self.engine.last_seq() {
            let Some(read) = self.read_proposals() else {
                return;
            };
            if read.entries.is_empty() {
                return;
            }
            // The buffer holds exactly the entries' data, one after another.
            let written =
                read.buffer.len() as u64 + read.entries.len() as u64 * pace::ENTRY_OVERHEAD_BYTES;
            self.write_rate.note(written, Instant::now());
            let buffer = Arc::new(read.buffer);
            for proposal in read.entries {
                let seq = proposal.seq;
                if proposal.term != term {
                    if let Err(error) = self.cut(seq - 1) {
                        (self.log)(
                            crate::log::Level::Warn,
                            &format!("raft: cannot cut a stale write: {error}"),
                        );
                    }
                    return;
                }
                let data = EntryData::shared(&buffer, proposal.data);
                let record = match proposal.membership {
                    true => self.membership_record(seq, &data),
                    false => None,
                };
                let proposed = match &record {
                    Some(record) => self.node.propose_conf_change(record.change, &data),
                    None => self.node.propose(data),
                };
                match proposed {
                    Ok(index) if index == seq => {
                        self.proposed_through = index;
                        self.proposed_term = term;
                    }
                    Ok(index) => {
                        (self.log)(
                            crate::log::Level::Warn,
                            &format!(
                                "raft: proposal landed at {index}, not seq {seq}; stepping aside"
                            ),
                        );
                        self.cluster.set_writable_term(0);
                        return;
                    }
                    // Busy (too much uncommitted) or a transfer: again next turn (the kept
                    // reader is past these entries: the next turn makes a new one).
                    Err(RaftError::Busy | RaftError::TransferInProgress) => return,
                    // A change the core refuses (checked before it was written, so only if
                    // the membership moved meanwhile): it is cut, and its asker told.
                    Err(error) if record.is_some() => {
                        self.refuse_change(seq, &error.to_string());
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
    }

    /// Reads what the write path appended after the node's last index through the kept
    /// proposal reader, laying the entries' data out in one buffer (decision 94): no op is
    /// copied out of the log but into that buffer. `None` (logged) if the log cannot be read.
    fn read_proposals(&mut self) -> Option<Proposals> {
        let next = self.node.last_index() + 1;
        let reader = match &mut self.proposal_reader {
            Some(reader) if reader.next_seq() == next => reader,
            slot => slot.insert(self.engine.reader(next)),
        };
        let mut read = Proposals {
            buffer: Vec::new(),
            entries: Vec::new(),
        };
        while read.entries.len() < PROPOSE_BATCH && read.buffer.len() < PROPOSE_BYTES {
            let start = read.buffer.len();
            let mut writer = entry::EntryWriter::begin(&mut read.buffer);
            let mut membership = false;
            let next = reader.next_ops(|op| {
                membership |= is_record_op(op);
                writer.op(op);
            });
            match next {
                Ok(Some((seq, term))) => {
                    writer.finish();
                    read.entries.push(Proposal {
                        seq,
                        term,
                        data: start..read.buffer.len(),
                        membership,
                    });
                }
                Ok(None) => {
                    read.buffer.truncate(start);
                    break;
                }
                Err(error) => {
                    (self.log)(
                        crate::log::Level::Warn,
                        &format!(
                            "raft: cannot read entry {} back: {error}",
                            reader.next_seq()
                        ),
                    );
                    self.proposal_reader = None;
                    return None;
                }
            }
        }
        Some(read)
    }

    /// The membership record the entry at `seq` carries (only this thread writes one: a
    /// broken one is a bug, logged; it goes as it is, an ordinary entry that changes nothing).
    fn membership_record(&self, seq: u64, data: &[u8]) -> Option<Record> {
        let mut ops = Vec::new();
        let decoded = entry::decode_ops(data, &[], &mut ops)
            .ok()
            .and_then(|()| Record::in_entry(&ops));
        match decoded {
            Some(Ok(record)) => Some(record),
            Some(Err(error)) => {
                (self.log)(
                    crate::log::Level::Warn,
                    &format!("raft: the membership record at {seq} is broken: {error}"),
                );
                None
            }
            None => None,
        }
    }

    /// Persists, sends and applies one `Ready`.
    ///
    /// A leader sends its appends and heartbeats before it flushes (Ongaro's thesis §10.2.1:
    /// the leader writes its log in parallel with replicating it), so that under `--fsync
    /// always` a commit waits for the slower of the leader's and a follower's fsync, not for
    /// their sum. The core counts the leader's own entries toward a majority only once
    /// `advance` says they are persisted, and a leader's appends promise nothing about its
    /// own disk; its term and vote, which they do rest on, were saved before it campaigned
    /// (the early sending is skipped if this `Ready` changes them). Every other message (votes,
    /// a follower's acknowledgements) still leaves only after the flush.
    fn handle(&mut self, mut ready: Ready) -> Result<Flushed, String> {
        if let Some(point) = ready.snapshot {
            self.flush_held()?;
            return self
                .install_snapshot(point, ready.hard_state)
                .map(|()| Flushed::Yes);
        }
        // The leader's own writes, which the write path put in the engine (`persist` keeps
        // them as they are): their flush may run off this thread.
        let own = self.node.role() == Role::Leader
            && ready.entries.iter().all(|logged| {
                logged.index <= self.proposed_through && logged.term == self.proposed_term
            });
        let saved = self.saved_vote;
        let term_kept = ready
            .hard_state
            .is_none_or(|state| (state.term, state.vote) == (saved.term, saved.vote));
        if self.node.role() == Role::Leader && term_kept {
            let (early, late): (Vec<Message>, Vec<Message>) = std::mem::take(&mut ready.messages)
                .into_iter()
                .partition(|message| {
                    matches!(message.body, Body::Append { .. } | Body::Heartbeat { .. })
                });
            self.send_all(early);
            ready.messages = late;
        }
        if let Some(cut) = ready.truncate_after {
            self.cut(cut)?;
        }
        let has_entries = !ready.entries.is_empty();
        self.persist_all(&ready.entries)?;
        if let Some(hard_state) = ready.hard_state {
            // Term and vote at once (a vote must be durable before it is sent); the commit
            // index only as `persist_commit` moves it (two fsyncs per `Ready` would cost
            // more than losing it, which is safe).
            self.save_vote(hard_state)?;
        }
        let mut flushed = Flushed::Yes;
        let mut handed_off = None;
        if has_entries && self.always {
            let offload = self.node.role() != Role::Leader
                && ready.entries.len() as u64 >= self.cluster.options.flush_offload_entries
                && self.follower_flushers.is_some();
            match (&self.flusher, own, ready.entries.last()) {
                (_, false, Some(last)) if offload => {
                    // Off this thread (decision 108): the core counts the entries as
                    // persisted, and every message it makes from here on waits in `held`
                    // until the log is durable through them. What it hands out to apply
                    // is committed, so durable on a majority already.
                    if let Some(flushers) = &self.follower_flushers {
                        flushers.request(last.index);
                    }
                    handed_off = Some(last.index);
                }
                (Some(_), true, Some(last)) => {
                    // Asked by `flush_own_when_due`.
                    let since = self
                        .own_unflushed
                        .as_ref()
                        .map_or_else(Instant::now, |own| own.since);
                    self.own_unflushed = Some(OwnUnflushed {
                        through: last.index,
                        term: self.node.term(),
                        since,
                    });
                    flushed = Flushed::Asked;
                }
                _ => {
                    self.engine.flush().map_err(|e| format!("flush: {e}"))?;
                    // It covered every entry written before it, those of held messages too.
                    if !self.held.is_empty() {
                        self.release_held(self.engine.durable_seq());
                    }
                }
            }
        }
        let messages = std::mem::take(&mut ready.messages);
        if let Some(free) = self.held.hold(handed_off, messages) {
            self.send_all(free);
        }
        if let Some(last) = ready.committed.last() {
            self.applied = last.index;
            self.cluster.gates.committed_through(last.index);
            if self.change.as_ref().is_some_and(|c| c.seq <= last.index) {
                if let Some(ChangeInFlight {
                    seq,
                    answer: Some(answer),
                }) = self.change.take()
                {
                    let _ = answer.send(Ok(seq));
                }
            }
        }
        Ok(flushed)
    }

    /// On the leader: opens the gates of its writes through the commit index, and hands its
    /// own entries written since the last flush to the flusher once they waited
    /// `OWN_FLUSH_DELAY`, or at once unless enough followers keep up to commit them alone
    /// (decision 103). The core counts the leader's own log toward a majority only as far as
    /// a flush reported it durable, so a commit index past that is one the followers' durable
    /// copies make: a majority has those writes on disk, and their replies may leave. The core
    /// still hands them out to apply (and the commit point is saved) only after the flush.
    fn flush_own_when_due(&mut self) {
        if self.node.role() != Role::Leader {
            self.own_unflushed = None;
            return;
        }
        let commit = self.node.commit_index();
        if commit > self.gates_opened {
            self.gates_opened = commit;
            self.cluster.gates.committed_through(commit);
        }
        let Some(own) = &self.own_unflushed else {
            return;
        };
        if own.term != self.node.term() {
            self.own_unflushed = None;
            return;
        }
        let now = Instant::now();
        if now < own.since + OWN_FLUSH_DELAY && self.followers_keep_up(now) {
            return;
        }
        if let Some(flusher) = &self.flusher {
            flusher.request((own.through, own.term));
        }
        self.own_unflushed = None;
    }

    /// Enough voters besides the leader to make a majority were heard from lately and hold
    /// everything committed: their acknowledgements alone can commit what the leader writes.
    fn followers_keep_up(&self, now: Instant) -> bool {
        followers_make_a_majority(
            self.node.membership(),
            self.node.id(),
            self.node.commit_index(),
            |voter| {
                self.heard
                    .get(&voter)
                    .is_some_and(|&at| now.saturating_duration_since(at) <= self.live_window)
            },
            |voter| self.node.match_index(voter),
        )
    }

    /// Sends the held messages whose entries are durable now (through `durable`), in order.
    fn release_held(&mut self, durable: u64) {
        let free = self.held.release(durable);
        if !free.is_empty() {
            self.send_all(free);
        }
    }

    /// Flushes here and sends every held message: before a cut or a snapshot install changes
    /// the log that they speak of.
    fn flush_held(&mut self) -> Result<(), String> {
        if self.held.is_empty() {
            return Ok(());
        }
        self.engine.flush().map_err(|e| format!("flush: {e}"))?;
        self.release_held(u64::MAX);
        Ok(())
    }

    fn send_all(&self, messages: Vec<Message>) {
        if let Some(transport) = &self.transport {
            for message in &messages {
                self.elections.sent(message);
            }
            transport.send_all(messages);
        }
    }

    /// Every `COMMIT_SAVE_INTERVAL` (or sooner after many entries): flushes the engine's log
    /// through the applied index, saves that index in the hard state file, and only then
    /// tells the engine (`commit_through`), whose compaction pin follows it. The engine's
    /// contract (`Config::replicated`): the commit point it opens with is one it was given
    /// and that was recorded durably, so the entry there and everything above it are still
    /// in the log.
    fn persist_commit(&mut self, force: bool) -> Result<(), String> {
        let due = self.last_commit_save.elapsed() >= COMMIT_SAVE_INTERVAL
            || self.applied.saturating_sub(self.durable_commit) >= COMMIT_SAVE_ENTRIES;
        if self.applied <= self.durable_commit || !(due || force) {
            return Ok(());
        }
        match (&self.commit_saver, force) {
            (Some(saver), false) => {
                if !self.commit_save_pending {
                    saver.request(self.applied);
                    self.commit_save_pending = true;
                    self.last_commit_save = Instant::now();
                }
            }
            _ => {
                let commit = save_commit(&self.engine, &self.hard_state, self.applied)?;
                self.durable_commit = self.durable_commit.max(commit);
                self.last_commit_save = Instant::now();
            }
        }
        Ok(())
    }

    /// Saves `state`'s term and vote if they changed, with the commit point the file holds.
    fn save_vote(&mut self, state: HardState) -> Result<(), String> {
        if (state.term, state.vote) == (self.saved_vote.term, self.saved_vote.vote) {
            return Ok(());
        }
        let mut file = self
            .hard_state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let saved = file.saved();
        file.save(&HardState {
            commit: saved.commit,
            ..state
        })
        .map_err(|e| format!("hard state: {e}"))?;
        self.saved_vote = file.saved();
        Ok(())
    }

    /// Makes the engine hold `entries` (consecutive) at their seqs: those that extend the
    /// engine's log, as a follower receives its leader's, together (`persist_run`), any other
    /// one by one (`persist`).
    fn persist_all(&mut self, entries: &[Entry]) -> Result<(), String> {
        let mut at = 0;
        while at < entries.len() {
            let logged = &entries[at];
            let own = logged.index <= self.proposed_through && logged.term == self.proposed_term;
            let extends = logged.index == self.engine.last_seq() + 1;
            let held = if !own && extends && entries.len() - at >= 2 {
                self.persist_run(&entries[at..])?
            } else {
                0
            };
            if held == 0 {
                self.persist(logged)?;
                at += 1;
            } else {
                at += held;
            }
        }
        Ok(())
    }

    /// Appends the longest run of `entries` (the first extends the engine's log) in one term
    /// and without membership changes with `Engine::append_entries_ops`, whose index update
    /// overlaps the cache misses of the run's keys (on a follower, two misses a key paid one
    /// after the other were half its raft thread's time under a pipelined SET load). Returns
    /// how many entries the engine now holds from the first (0: none, `persist` takes over).
    fn persist_run(&mut self, entries: &[Entry]) -> Result<usize, String> {
        let term = entries[0].term;
        let leader_value = entry::leader_value(term, self.node.leader().unwrap_or(0));
        let mut ops = Vec::new();
        let mut ends = Vec::new();
        for logged in entries {
            if logged.term != term || wire::decode_conf_change(&logged.data).is_some() {
                break;
            }
            let start = ops.len();
            entry::decode_ops(&logged.data, &leader_value, &mut ops)
                .map_err(|e| format!("entry {}: {e}", logged.index))?;
            if Record::in_entry(&ops[start..]).is_some() {
                ops.truncate(start);
                break;
            }
            ends.push(ops.len());
        }
        if ends.len() < 2 {
            return Ok(0);
        }
        let mut start = 0;
        let run: Vec<EntryOps<'_>> = entries
            .iter()
            .zip(&ends)
            .map(|(logged, &end)| {
                let entry = EntryOps {
                    seq: logged.index,
                    term,
                    ops: &ops[start..end],
                };
                start = end;
                entry
            })
            .collect();
        let first = entries[0].index;
        match self.engine.append_entries_ops(&run) {
            Ok(()) => Ok(run.len()),
            // A write that raced this node's loss of leadership took a seq: `persist` checks
            // each entry's term where the engine holds one, cuts and retries.
            Err(flin_engine::Error::Invalid(_)) => Ok(0),
            Err(error) => Err(format!("append entries {first}..: {error}")),
        }
    }

    /// Makes the engine hold `logged` at its seq.
    fn persist(&mut self, logged: &Entry) -> Result<(), String> {
        if logged.index <= self.proposed_through && logged.term == self.proposed_term {
            return Ok(());
        }
        for _ in 0..3 {
            if logged.index <= self.engine.last_seq() {
                let held = self
                    .engine
                    .term_at(logged.index)
                    .map_err(|e| e.to_string())?;
                if held == Some(logged.term) {
                    return Ok(());
                }
                self.cut(logged.index - 1)?;
            }
            let leader = self.node.leader().unwrap_or(0);
            // A membership change: the core's header, then the record's entry.
            let data = match wire::decode_conf_change(&logged.data) {
                Some(Ok((_, payload))) => payload,
                Some(Err(error)) => return Err(format!("entry {}: {error}", logged.index)),
                None => &logged.data[..],
            };
            let leader_value = entry::leader_value(logged.term, leader);
            let mut ops = Vec::new();
            entry::decode_ops(data, &leader_value, &mut ops)
                .map_err(|e| format!("entry {}: {e}", logged.index))?;
            if let Some(Ok(record)) = Record::in_entry(&ops) {
                self.cluster.learn_addresses(&record.addresses);
            }
            match self
                .engine
                .append_entry_ops(logged.index, logged.term, &ops)
            {
                Ok(_) => return Ok(()),
                // A write that raced this node's loss of leadership took the seq: cut, retry.
                Err(flin_engine::Error::Invalid(_)) => continue,
                Err(error) => return Err(format!("append entry {}: {error}", logged.index)),
            }
        }
        Err(format!("entry {} could not be appended", logged.index))
    }

    /// Cuts the engine's log after `seq` and withdraws the replies of the writes cut.
    fn cut(&mut self, seq: u64) -> Result<(), String> {
        if seq >= self.engine.last_seq() {
            return Ok(());
        }
        // A held acknowledgement speaks of entries the cut removes: it leaves first, with
        // them durable, or it would leave later claiming entries this log no longer holds.
        self.flush_held()?;
        self.engine
            .truncate_after(seq)
            .map_err(|e| format!("truncate after {seq}: {e}"))?;
        self.proposed_through = self.proposed_through.min(seq);
        self.proposal_reader = None;
        self.cluster
            .gates
            .withdraw_after(seq, "the write was not committed: a new leader replaced it");
        if self.change.as_ref().is_some_and(|change| change.seq > seq) {
            if let Some(ChangeInFlight {
                answer: Some(answer),
                ..
            }) = self.change.take()
            {
                let _ = answer.send(Err(
                    "the change was not committed: a new leader replaced it".into(),
                ));
            }
        }
        Ok(())
    }

    /// Feeds followers that need entries the node forgot from the engine's log, as many
    /// appends as each one's pipeline takes.
    fn serve_wanted(&mut self, wanted: Vec<Wanted>) {
        for Wanted { to, from_index } in wanted {
            self.serve(to, from_index);
        }
    }

    /// Feeds the followers whose pacer lets them go on by now.
    fn resume_paced(&mut self) {
        let now = Instant::now();
        let due: Vec<(NodeId, u64)> = self
            .paced
            .iter()
            .filter(|(_, &(_, at))| at <= now)
            .map(|(&to, &(next, _))| (to, next))
            .collect();
        for (to, next) in due {
            self.paced.remove(&to);
            self.serve(to, next);
        }
    }

    /// Feeds `to` from `from_index` on from the engine's log, or ships it a snapshot if the
    /// log no longer holds that entry or the leader no longer holds it for followers (below
    /// `pinned_from`: too many entries or bytes behind, `retain_floor`).
    fn serve(&mut self, to: NodeId, from_index: u64) {
        // A want kept while its pacer waited (`paced`) is stale once the core has fed the
        // follower from memory meanwhile: it holds what was asked for, and a leader that took
        // the want as needing entries below the pin shipped it a second snapshot (seen: match
        // 5,121,615, a paced want from 5,120,656, 0.5 s after a 1.5 GB install).
        if self
            .node
            .match_index(to)
            .is_some_and(|matched| from_index <= matched)
        {
            self.catch_ups.remove(&to);
            self.paced.remove(&to);
            return;
        }
        // Below what the pin holds (the retention bound, or a snapshot's hold) a reader
        // would be dropped at once (`pin_for_followers`) and found again, a walk of its
        // segment, on every turn: a snapshot is what such a follower gets.
        if from_index < self.pinned_from {
            self.catch_ups.remove(&to);
            self.paced.remove(&to);
            let why = format!(
                "the leader holds its log for followers from {} (--raft-retain-entries, --raft-retain-mb)",
                self.pinned_from
            );
            self.ship_snapshot(to, from_index, &why);
            return;
        }
        if let Err(error) = self.feed(to, from_index) {
            self.catch_ups.remove(&to);
            self.paced.remove(&to);
            if matches!(error, flin_engine::Error::NotInLog { .. }) {
                let why = format!("the engine's log no longer holds it: {error}");
                self.ship_snapshot(to, from_index, &why);
            } else {
                (self.log)(
                    crate::log::Level::Warn,
                    &format!(
                        "raft: cannot read entry {from_index} back for follower {to}: {error}"
                    ),
                );
            }
        }
    }

    /// Sends `to` batches read back from the engine's log from `from_index` on, as many as
    /// its pipeline takes and its pacer allows; when the pacer says wait, notes where to go on
    /// (`paced`).
    fn feed(&mut self, to: NodeId, from_index: u64) -> flin_engine::Result<()> {
        let commit = self.node.commit_index();
        let mut next = from_index;
        let asked = self
            .cluster
            .options
            .catch_up_rate_mb
            .saturating_mul(1_000_000);
        let rate = asked.max(
            self.write_rate
                .per_second(Instant::now())
                .saturating_mul(pace::FEED_OVER_WRITES),
        );
        self.paced.remove(&to);
        while next <= commit {
            let now = Instant::now();
            let pacer = self
                .feed_pacers
                .entry(to)
                .or_insert_with(|| Pacer::new(asked, now));
            pacer.set_rate(rate);
            if let Some(at) = pacer.wait_until(now) {
                self.paced.insert(to, (next, at));
                return Ok(());
            }
            let catch_up = match self.catch_ups.remove(&to) {
                Some(catch_up)
                    if catch_up.ahead.first().map(|entry| entry.index) == Some(next)
                        || (catch_up.ahead.is_empty() && catch_up.reader.next_seq() == next) =>
                {
                    catch_up
                }
                _ => CatchUp {
                    prev_term: self
                        .engine
                        .term_at(next - 1)?
                        .ok_or(flin_engine::Error::NotInLog { seq: next - 1 })?,
                    reader: self.engine.reader(next),
                    ahead: Vec::new(),
                },
            };
            let mut catch_up = catch_up;
            let entries = match std::mem::take(&mut catch_up.ahead) {
                ahead if !ahead.is_empty() => ahead,
                _ => {
                    // Committed entries only: the core sends nothing beyond its commit index
                    // from storage (what is above it is still in memory).
                    let count = STORED_ENTRIES_MAX.min((commit - next + 1) as usize);
                    catch_up
                        .reader
                        .read(count, APPEND_BYTES_MAX)?
                        .iter()
                        .map(|read| Entry {
                            term: read.term,
                            index: read.seq,
                            data: stored_data(read).into(),
                        })
                        .collect()
                }
            };
            let Some(last) = entries.last() else {
                return Ok(());
            };
            let (last_index, last_term) = (last.index, last.term);
            let cost = entries
                .iter()
                .map(|entry| entry.data.len() as u64 + pace::ENTRY_OVERHEAD_BYTES)
                .sum();
            if !self
                .node
                .send_stored(to, catch_up.prev_term, entries.clone())
            {
                catch_up.ahead = entries;
                self.catch_ups.insert(to, catch_up);
                return Ok(());
            }
            if let Some(pacer) = self.feed_pacers.get_mut(&to) {
                pacer.spend(cost);
            }
            catch_up.prev_term = last_term;
            self.catch_ups.insert(to, catch_up);
            next = last_index + 1;
        }
        Ok(())
    }

    /// On the leader: starts shipping a snapshot to `to`, which needs entries from
    /// `from_index` on that the engine's log no longer holds or the leader no longer holds
    /// for followers (`why` says which), unless a shipper runs for it or its last one failed
    /// less than `SNAPSHOT_RETRY` ago. The shipper thread makes (or shares) the snapshot,
    /// waits until it is committed, streams it and reports `Input::SnapshotShipped`.
    fn ship_snapshot(&mut self, to: NodeId, from_index: u64, why: &str) {
        let now = Instant::now();
        if self.shippers.contains_key(&to)
            || self.snapshot_retry.get(&to).is_some_and(|at| now < *at)
        {
            return;
        }
        let Some(addr) = self.cluster.dial_addr(to) else {
            return;
        };
        (self.log)(
            crate::log::Level::Info,
            &format!(
                "raft: follower {to} (match {}) needs entry {from_index}; {why}; shipping it a snapshot",
                self.node.match_index(to).unwrap_or(0)
            ),
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (engine, outbox, cluster) = (
            self.engine.clone(),
            self.outbox.clone(),
            self.cluster.clone(),
        );
        let (inbox, log, flag) = (self.inbox.clone(), self.log.clone(), stop.clone());
        let point = Arc::new(AtomicU64::new(0));
        let made = point.clone();
        let (leader, term) = (self.node.id(), self.node.term());
        let rate = self
            .cluster
            .options
            .snapshot_rate_mb
            .saturating_mul(1_000_000);
        let spawned = std::thread::Builder::new()
            .name(format!("flin-snap-to-{to}"))
            .spawn(move || {
                crate::os::lower_this_thread(super::snapshot::NICE);
                let result = outbox
                    .get_or_make(&engine, from_index)
                    .and_then(|prepared| {
                        made.store(prepared.offer.index, Ordering::Relaxed);
                        wait_committed(&cluster, term, prepared.offer.index, &flag)?;
                        let offer = &prepared.offer;
                        log(crate::log::Level::Info, &format!(
                            "raft: shipping the snapshot through {} (term {}, {} files, {} bytes; made in {} ms to link and {} ms to checksum) to follower {to}",
                            offer.index, offer.term, offer.files.len(), offer.bytes(),
                            prepared.linked_in.as_millis(), prepared.checksummed_in.as_millis()
                        ));
                        ship::ship(leader, addr, &prepared, rate, &flag, &cluster.snapshot_bytes_sent)
                    });
                let _ = inbox.send(Input::SnapshotShipped(to, result));
            });
        match spawned {
            Ok(_) => {
                self.shippers.insert(to, Shipper { stop, point });
            }
            Err(error) => (self.log)(
                crate::log::Level::Warn,
                &format!("raft: cannot start a snapshot shipper for follower {to}: {error}"),
            ),
        }
    }

    /// A shipper ended: if `to` staged the snapshot and this node still leads, the core tells
    /// it to install it (`Node::send_snapshot`); a failure is logged and tried again later.
    fn snapshot_shipped(&mut self, to: NodeId, result: Result<(u64, u64), String>) {
        if self.shippers.remove(&to).is_none() {
            return; // stopped when this node stopped leading
        }
        match result {
            Ok((index, term)) => {
                let leads = self.node.role() == Role::Leader && index <= self.node.commit_index();
                let sent = leads && self.node.send_snapshot(to, SnapshotPoint { index, term });
                let outcome = if sent {
                    self.cluster
                        .snapshots_sent
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    "InstallSnapshot sent"
                } else if leads {
                    // The core no longer remembers the membership as of `index` (more than
                    // its 64 last changes since): a newer snapshot is made at the retry.
                    self.outbox.release();
                    self.snapshot_retry
                        .insert(to, Instant::now() + SNAPSHOT_RETRY);
                    "older than the memberships the node remembers; a newer one follows"
                } else {
                    "no longer the leader, not installed"
                };
                (self.log)(
                    crate::log::Level::Info,
                    &format!(
                        "raft: follower {to} staged the snapshot through {index} (term {term}); {outcome}"
                    ),
                );
            }
            Err(why) => {
                self.snapshot_retry
                    .insert(to, Instant::now() + SNAPSHOT_RETRY);
                (self.log)(
                    crate::log::Level::Warn,
                    &format!(
                        "raft: snapshot to follower {to} failed: {why}; trying again in {} s",
                        SNAPSHOT_RETRY.as_secs()
                    ),
                );
            }
        }
    }

    /// Off the leader: shippers stop, and the shared snapshot goes once they have.
    fn stop_shipping(&mut self) {
        for shipper in std::mem::take(&mut self.shippers).into_values() {
            shipper
                .stop
                .store(true, std::sync::atomic::Ordering::Release);
        }
        self.snapshot_retry.clear();
        self.outbox.release();
    }

    /// On the leader, with no shipper running: the shared snapshot goes once every follower
    /// matches past it, or once it is more than `--raft-retain-entries` behind the log's end
    /// (a follower that needs one then gets a newer one).
    fn release_snapshot_when_done(&mut self) {
        if !self.shippers.is_empty() {
            return;
        }
        let Some(index) = self.outbox.index() else {
            return;
        };
        let id = self.node.id();
        let done = self
            .node
            .membership()
            .members()
            .filter(|&peer| peer != id)
            .all(|peer| self.node.match_index(peer).unwrap_or(0) >= index);
        let stale =
            index.saturating_add(self.cluster.options.retain_entries_max) < self.node.last_index();
        if done || stale {
            self.outbox.release();
        }
    }

    /// On a follower, the core handed out the snapshot staged here: saves the term and vote
    /// of this `Ready` (the commit point is set by the swap), writes the install marker and
    /// re-executes the process, whose start swaps the files in and opens them. Returns only
    /// on failure (the marker, if written, is acted on at the next start).
    fn install_snapshot(
        &mut self,
        point: SnapshotPoint,
        hard_state: Option<HardState>,
    ) -> Result<(), String> {
        if let Some(state) = hard_state {
            self.save_vote(state)?;
        }
        self.staging
            .install(point.index, point.term)
            .map_err(|e| format!("the core installed a snapshot: {e}"))?;
        self.cluster.set_writable_term(0);
        (self.log)(
            crate::log::Level::Info,
            &format!(
                "raft: installing the snapshot through {} (term {}): restarting to open it",
                point.index, point.term
            ),
        );
        Err(install::restart())
    }

    /// On the leader: holds the engine's compaction pin at the next index of the slowest
    /// follower, but never more than `retain_entries_max` behind the log's end, so a follower
    /// that is gone for good cannot keep the disk growing; readers of followers behind that
    /// bound are dropped (their pins too). Off the leader nothing is held.
    fn pin_for_followers(&mut self) {
        if self.node.role() != Role::Leader {
            self.follower_pin = None;
            self.catch_ups.clear();
            self.feed_pacers.clear();
            self.paced.clear();
            self.snapshot_holds.clear();
            self.pinned_from = 0;
            self.bytes_floor = None;
            self.stop_shipping();
            return;
        }
        // A follower shipped a snapshot through `S` goes on from `S + 1` in the log once it
        // has installed it, and may still be behind the retention bound then (a leader that
        // wrote more than the bound while the transfer ran): what it needs next is held, past
        // the bound, or it would be shipped one snapshot after another (measured: 1.5 GB at
        // 100 MB/s against a bound of 100,000 entries). The hold ends once the follower is
        // within the bound, or when it has made no progress for `SNAPSHOT_HOLD` (a follower
        // gone for good must not keep the disk growing). Once within the bound it stays
        // there: its feed outruns the leader's writes (`pace::FEED_OVER_WRITES`).
        let now = Instant::now();
        for (&to, shipper) in &self.shippers {
            let point = shipper.point.load(Ordering::Relaxed);
            if point > 0 {
                self.snapshot_holds.insert(to, (point, now));
            }
        }
        let floor = self.retain_floor(now);
        let mut seq = (self.slowest_match().unwrap_or(0) + 1).max(floor);
        let matched: BTreeMap<NodeId, u64> = self
            .snapshot_holds
            .keys()
            .map(|&to| (to, self.node.match_index(to).unwrap_or(0)))
            .collect();
        self.snapshot_holds.retain(|to, (point, since)| {
            let matched = matched[to];
            if matched > *point {
                // Progress: the hold follows the follower.
                *point = matched;
                *since = now;
            }
            if *point + 1 >= floor || now.duration_since(*since) >= SNAPSHOT_HOLD {
                return false;
            }
            seq = seq.min(*point + 1);
            true
        });
        match &self.follower_pin {
            Some(pin) => pin.advance(seq),
            None => self.follower_pin = Some(self.engine.pin(seq)),
        }
        self.pinned_from = seq;
        self.catch_ups
            .retain(|_, catch_up| catch_up.reader.next_seq() >= seq);
    }

    /// The oldest entry the leader keeps in its engine's log for a lagging follower: at most
    /// `retain_entries_max` behind the log's end, and within the newest segments that hold
    /// `--raft-retain-mb`, or a quarter of the log if that is more (decision 105: a follower
    /// missing more is caught up sooner by a snapshot). The bytes are measured again every
    /// `BYTES_FLOOR_EVERY`: a walk of the segment table, kept off most turns.
    fn retain_floor(&mut self, now: Instant) -> u64 {
        let by_entries = self
            .node
            .last_index()
            .saturating_sub(self.cluster.options.retain_entries_max)
            .max(1);
        let by_bytes = match self.bytes_floor {
            Some((floor, at)) if now.duration_since(at) < BYTES_FLOOR_EVERY => floor,
            _ => {
                let least = self.cluster.options.retain_mb.saturating_mul(1_000_000);
                let floor = self
                    .engine
                    .seq_within_bytes(|all| least.max(all / super::RETAIN_LOG_SHARE));
                self.bytes_floor = Some((floor, now));
                floor
            }
        };
        by_entries.max(by_bytes.min(self.node.last_index().max(1)))
    }

    /// On the leader: the lowest match index among the other members it knows one for.
    fn slowest_match(&self) -> Option<u64> {
        self.node
            .membership()
            .members()
            .filter(|&peer| peer != self.node.id())
            .filter_map(|peer| self.node.match_index(peer))
            .min()
    }

    /// Forgets applied entries no follower needs (the engine keeps them).
    fn compact(&mut self) {
        self.pin_for_followers();
        self.release_snapshot_when_done();
        let applied = self.node.applied_index();
        let first = self.node.first_index();
        if applied < first + COMPACT_SLACK {
            return;
        }
        let mut through = applied;
        if self.node.role() == Role::Leader {
            through = through.min(self.slowest_match().unwrap_or(applied));
            // The cap is on what memory holds: a follower whose match is not known yet (0,
            // just after an election) must not make a new leader forget everything at once.
            // A follower that needs what memory forgot is fed from the engine's log.
            if self.node.last_index().saturating_sub(first) > self.cluster.options.held_entries_max
            {
                through = applied;
            }
        }
        if through >= first + COMPACT_SLACK {
            self.node.compact(through - COMPACT_SLACK / 2);
        }
    }

    fn publish_view(&mut self) {
        let id = self.node.id();
        self.leading_since = match self.node.role() {
            Role::Leader => Some(self.leading_since.unwrap_or_else(Instant::now)),
            _ => None,
        };
        let matches = self
            .node
            .membership()
            .members()
            .filter(|&peer| peer != id)
            .filter_map(|peer| self.node.match_index(peer).map(|index| (peer, index)))
            .collect();
        self.cluster.set_view(View {
            role: self.node.role(),
            term: self.node.term(),
            leader: self.node.leader(),
            commit: self.node.commit_index(),
            applied: self.node.applied_index(),
            last_index: self.node.last_index(),
            first_index: self.node.first_index(),
            matches,
            elections_won: self.elections_won,
            voters: self.node.membership().voters().collect(),
            learners: self.node.membership().learners().collect(),
            heard: self.heard.clone(),
            leading_since: self.leading_since,
        });
    }

    /// On the leader: writes the record of `change` to the engine (one batch, at the next
    /// seq), to be proposed as a membership change by `propose_appended`; `answer` hears
    /// once it is applied. Refused (with why) when this node does not take writes, while a
    /// change is not applied, and when the change does not fit the membership in force.
    fn write_change(
        &mut self,
        change: ConfChange,
        addr: Option<SocketAddr>,
        answer: Option<Sender<Result<u64, String>>>,
    ) -> Result<(), String> {
        if self.node.role() != Role::Leader || !self.cluster.writable() {
            return Err(match self.node.leader() {
                Some(leader) if leader != self.node.id() => {
                    format!("not the leader (node {leader} is)")
                }
                _ => "not the leader (no leader known)".into(),
            });
        }
        if let Some(change) = &self.change {
            return Err(format!(
                "the membership change at index {} is not applied yet",
                change.seq
            ));
        }
        let pending = self.node.pending_conf_index();
        if pending > self.node.applied_index() {
            return Err(format!(
                "the membership change at index {pending} is not applied yet"
            ));
        }
        // The latest record (the change before this one is applied, so it is in force).
        let previous = Record::latest(&self.engine)?;
        if change.kind == ConfChangeKind::AddLearner
            && previous
                .as_ref()
                .is_some_and(|r| r.removed.contains(&change.node))
        {
            return Err(format!(
                "node {} was removed from the cluster and its id is not used again (add the new node under a new id)",
                change.node
            ));
        }
        let before = self.node.membership().clone();
        let after = before.changed(change).map_err(|e| e.to_string())?;
        let mut addresses = std::collections::BTreeMap::new();
        for member in before.members() {
            if let Some(known) = self.cluster.address(member) {
                addresses.insert(member, known);
            }
        }
        if let Some(addr) = addr {
            if let Some((&other, _)) = addresses.iter().find(|&(_, &known)| known == addr) {
                return Err(format!("{addr} is node {other}'s address"));
            }
            addresses.insert(change.node, addr);
        }
        if change.kind == ConfChangeKind::AddLearner && !addresses.contains_key(&change.node) {
            return Err(format!("node {}'s address is not known", change.node));
        }
        addresses.retain(|member, _| after.contains(*member) || before.contains(*member));
        let record = Record {
            removed: Record::removed_after(previous.as_ref(), change),
            change,
            before,
            after,
            addresses,
        };
        let seq = self
            .engine
            .write(&record.batch())
            .map_err(|e| format!("cannot write the membership record: {e}"))?;
        self.cluster.learn_addresses(&record.addresses);
        (self.log)(
            crate::log::Level::Info,
            &format!(
                "raft: membership change {:?} of node {} written at {seq}",
                change.kind, change.node
            ),
        );
        self.change = Some(ChangeInFlight { seq, answer });
        Ok(())
    }

    /// The core refused the change written at `seq` (the membership moved since it was
    /// checked): cuts it and tells its asker why.
    fn refuse_change(&mut self, seq: u64, why: &str) {
        let answer = self
            .change
            .take_if(|change| change.seq == seq)
            .and_then(|change| change.answer);
        if let Err(error) = self.cut(seq - 1) {
            (self.log)(
                crate::log::Level::Warn,
                &format!("raft: cannot cut a refused membership change: {error}"),
            );
        }
        if let Some(answer) = answer {
            let _ = answer.send(Err(why.to_string()));
        }
    }

    /// On the leader: promotes a learner that has caught up, one at a time, through the same
    /// path as CLUSTER.ADD (the asker of the addition has its answer already).
    fn promote_caught_up(&mut self) {
        if self.change.is_some() || self.node.role() != Role::Leader || !self.cluster.writable() {
            return;
        }
        let Some(&learner) = self.node.caught_up_learners().first() else {
            return;
        };
        let change = ConfChange {
            kind: ConfChangeKind::PromoteLearner,
            node: learner,
        };
        // Refused while a change is pending (a new leader's first entry not applied yet):
        // tried again next turn.
        if self.write_change(change, None, None).is_ok() {
            (self.log)(
                crate::log::Level::Info,
                &format!("raft: learner {learner} caught up; promoting it to voter"),
            );
        }
    }

    /// Nodes that left the membership this node applied: this node itself (`removed`), or,
    /// on the leader, another, which is told (`transport::send_notice`): the leader stops
    /// sending to a node once its removal is appended, so a removed follower would not learn
    /// that it was committed. Then stops the server `REMOVED_STOP_TICKS` after this node
    /// learned of its own removal, as etcd's removed member stops.
    fn watch_removals(&mut self) {
        let id = self.node.id();
        // Every turn: compared in place, collected only when it changed.
        let applied = self.node.applied_membership();
        let same = applied.members().count() == self.applied_members.len()
            && applied.members().all(|m| self.applied_members.contains(&m));
        if !same {
            let members: BTreeSet<NodeId> = applied.members().collect();
            let gone: Vec<NodeId> = self.applied_members.difference(&members).copied().collect();
            for node in gone {
                if node == id {
                    self.removed(&format!(
                        "it applied its removal at index {}",
                        self.node.applied_index()
                    ));
                } else if self.node.role() == Role::Leader {
                    self.send_notice(node);
                }
            }
            self.applied_members = members;
        }
        let Some(at) = self.removed_at else {
            return;
        };
        let delay = Duration::from_millis(REMOVED_STOP_TICKS * self.cluster.options.tick_ms);
        if at.elapsed() >= delay {
            if let Some(stop) = self.on_removed.take() {
                (self.log)(
                    crate::log::Level::Warn,
                    &format!("raft: this node ({id}) was removed from the cluster; stopping"),
                );
                stop();
            }
        }
    }

    /// Tells `node` that its removal is applied (`transport::send_notice`).
    fn send_notice(&mut self, node: NodeId) {
        let notice = Notice {
            from: self.node.id(),
            node,
            index: self.node.applied_index(),
            term: self.node.term(),
        };
        self.told_removed.insert(node, Instant::now());
        match self.cluster.dial_addr(node) {
            Some(to) => {
                if let Err(error) = super::transport::send_notice(to, notice, self.log.clone()) {
                    (self.log)(crate::log::Level::Warn, &format!("raft: {error}"));
                }
            }
            None => (self.log)(
                crate::log::Level::Warn,
                &format!("raft: node {node}'s address is not known: it is not told of its removal"),
            ),
        }
    }

    /// A message came from `from`, no member of the membership this node applied: if the
    /// applied membership record lists it as removed, it is told so (at most every
    /// `TELL_REMOVED_EVERY`), as etcd's peers answer a removed member. This reaches a removed
    /// node that was down when the leader sent its notice and came back believing it is a
    /// member (it dials its old peers).
    fn tell_if_removed(&mut self, from: NodeId) {
        if self
            .told_removed
            .get(&from)
            .is_some_and(|at| at.elapsed() < TELL_REMOVED_EVERY)
        {
            return;
        }
        // The latest record is the applied one unless a change is pending.
        if self.node.pending_conf_index() > self.node.applied_index() {
            return;
        }
        let removed = Record::latest(&self.engine)
            .is_ok_and(|record| record.is_some_and(|record| record.removed.contains(&from)));
        if removed {
            (self.log)(
                crate::log::Level::Info,
                &format!("raft: removed node {from} sent a message; telling it it was removed"),
            );
            self.send_notice(from);
        } else {
            // Not removed (a node not added yet): asked again after the interval.
            self.told_removed.insert(from, Instant::now());
        }
    }

    /// This node learned that its removal is committed (`why`): it writes `REMOVED_FILE`
    /// (so it does not start again) and stops `REMOVED_STOP_TICKS` later.
    fn removed(&mut self, why: &str) {
        if self.removed_at.is_some() {
            return;
        }
        self.removed_at = Some(Instant::now());
        let id = self.node.id();
        (self.log)(
            crate::log::Level::Warn,
            &format!(
                "raft: this node ({id}) was removed from the cluster: {why}; it stops in {} ms",
                REMOVED_STOP_TICKS * self.cluster.options.tick_ms
            ),
        );
        let path = self.cluster_dir.join(REMOVED_FILE);
        // The file and then its directory entry made durable.
        let written = std::fs::File::create(&path)
            .and_then(|mut file| {
                use std::io::Write;
                writeln!(file, "{why}")?;
                file.sync_all()
            })
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
            .and_then(|()| super::snapshot::stage::sync_dir(&self.cluster_dir));
        if let Err(error) = written {
            (self.log)(crate::log::Level::Warn, &format!("raft: {error}"));
        }
    }

    /// Points the transport at the membership in force: dials added members, drops removed
    /// ones (a node not yet a member keeps its `--cluster` peers, to answer the leader).
    fn follow_membership(&mut self) {
        let membership = self.node.membership();
        if self.peers_of.as_ref() == Some(membership) {
            return;
        }
        let Some(transport) = &mut self.transport else {
            return;
        };
        let id = self.node.id();
        let wanted: Vec<NodeId> = membership.members().filter(|&peer| peer != id).collect();
        let mut complete = true;
        for &peer in &wanted {
            match self.cluster.dial_addr(peer) {
                Some(addr) => {
                    if let Err(error) = transport.add_peer(peer, addr) {
                        (self.log)(crate::log::Level::Warn, &format!("raft: {error}"));
                        complete = false;
                    }
                }
                None => complete = false,
            }
        }
        if membership.contains(id) {
            let removed: Vec<NodeId> = transport
                .peers()
                .filter(|peer| !wanted.contains(peer))
                .collect();
            for peer in removed {
                transport.remove_peer(peer);
            }
        }
        if complete {
            self.peers_of = Some(membership.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(term: u64) -> Message {
        Message {
            from: 2,
            to: 1,
            term,
            body: Body::TimeoutNow,
        }
    }

    fn terms(messages: &[Message]) -> Vec<u64> {
        messages.iter().map(|message| message.term).collect()
    }

    #[test]
    fn held_messages_leave_in_order_once_their_entries_are_durable() {
        let mut held = HeldMessages::default();
        // Nothing held: a Ready's messages leave at once.
        assert_eq!(
            held.hold(None, vec![message(1)]).map(|m| terms(&m)),
            Some(vec![1])
        );
        // An acknowledgement of entries through 10, being flushed elsewhere.
        assert!(held.hold(Some(10), vec![message(2)]).is_none());
        // A later Ready with no entries (a heartbeat's answer) waits behind it.
        assert!(held.hold(None, vec![message(3)]).is_none());
        assert!(held.hold(Some(20), vec![message(4)]).is_none());
        // A Ready with nothing to send holds nothing, but what comes after it waits for its
        // entries too.
        assert!(held.hold(Some(25), Vec::new()).is_none());
        assert!(held.release(9).is_empty(), "entry 10 is not durable yet");
        assert_eq!(terms(&held.release(19)), vec![2, 3]);
        assert!(!held.is_empty());
        assert_eq!(terms(&held.release(20)), vec![4]);
        assert!(held.hold(None, vec![message(5)]).is_none());
        assert!(held.release(24).is_empty());
        assert_eq!(terms(&held.release(25)), vec![5]);
        assert!(held.is_empty());
        assert_eq!(
            held.hold(None, vec![message(6)]).map(|m| terms(&m)),
            Some(vec![6])
        );
    }

    #[test]
    fn a_lease_runs_the_ticks_a_follower_surely_waits_less_the_drift() {
        // Defaults: 10 ticks of 50 ms; a follower waits at least 8 full ticks after a round.
        assert_eq!(lease_span_ns(10, 50), 360_000_000);
        assert_eq!(lease_span_ns(10, 20), 144_000_000);
        assert_eq!(
            lease_span_ns(2, 50),
            0,
            "no lease when the timeout is that short"
        );
    }

    #[test]
    fn the_leader_s_flush_waits_only_while_followers_alone_make_a_majority() {
        let three = Membership::new([1, 2, 3]);
        let all = |_: NodeId| true;
        let at_commit = |_: NodeId| Some(10);
        assert!(followers_make_a_majority(&three, 1, 10, all, at_commit));
        // One follower not heard from lately (dead, stopped, cut off): the leader flushes.
        assert!(!followers_make_a_majority(
            &three,
            1,
            10,
            |v| v != 3,
            at_commit
        ));
        // One follower behind the commit point (being caught up): the same.
        let behind = |v: NodeId| Some(if v == 2 { 7 } else { 10 });
        assert!(!followers_make_a_majority(&three, 1, 10, all, behind));
        // A follower the leader does not track yet counts as behind.
        let untracked = |v: NodeId| (v != 3).then_some(10);
        assert!(!followers_make_a_majority(&three, 1, 10, all, untracked));
        // Five voters: three of the four followers make a majority without the leader.
        let five = Membership::new([1, 2, 3, 4, 5]);
        assert!(followers_make_a_majority(
            &five,
            1,
            10,
            |v| v != 5,
            at_commit
        ));
        assert!(!followers_make_a_majority(
            &five,
            1,
            10,
            |v| v <= 3,
            at_commit
        ));
        // A learner does not count.
        let learner = Membership::with_learners([1, 2], [3]);
        assert!(!followers_make_a_majority(&learner, 1, 10, all, at_commit));
    }
}
