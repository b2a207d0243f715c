//! Running raft in the server (issue 14): a node of a 3-node cluster decides every write on
//! the leader, replicates it as the same engine records, and acknowledges it once a majority
//! holds it.
//!
//! - `transport`: TCP between peers on the cluster port (client port + 10000).
//! - `entry`: a log entry's data, the engine ops of one seq.
//! - `gates`: [`ClusterGates`], replies wait until their writes are committed; replies of
//!   writes a new leader replaced are withdrawn.
//! - `snapshot`: a follower the leader's log cannot feed any more is shipped the engine's
//!   files, stages them, and re-executes itself to open them (docs/replication.md).
//! - `driver`: the raft thread, the one owner of `flin_replication::Node`: it ticks, steps
//!   peers' messages, proposes what the engine appended on the leader, persists what the
//!   `Ready`s say through the engine's replication seam (`append_entry`, `truncate_after`,
//!   `commit_through`) and the hard state file, sends, and opens gates.
//!
//! The write path stays the one in `store.rs`: on the leader a command decides under the
//! writer lock and commits to the engine at the next seq, in the current term, exactly as a
//! lone node does; the raft thread then reads that entry back from the log and proposes it
//! (the core's index is the seq). A node that is not the leader refuses writes with
//! `-MOVED <slot> <leader's client address>` (Redis Cluster's redirect; `dispatch` puts in the
//! slot of the command's first key), and reads too unless the
//! connection said READONLY.

pub mod driver;
pub mod elections;
pub mod entry;
pub mod gates;
pub mod membership;
pub mod pace;
pub mod slot;
pub mod snapshot;
pub mod transport;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use flin_replication::{NodeId, Role};

pub use gates::ClusterGates;

/// Where the raft thread and the transport write their log lines (`crate::log` in the
/// daemon), with each line's level.
pub type LogFn = std::sync::Arc<dyn Fn(crate::log::Level, &str) + Send + Sync>;

use crate::frame::Frame;

/// A node's place in its cluster, from `--node-id` and `--cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    pub id: NodeId,
    /// Every voter's client address, this node's included (with `--join`: the voters, and
    /// this node's own address, which is not a member yet).
    pub members: BTreeMap<NodeId, SocketAddr>,
    /// The length of one raft tick (elections after 10..20 ticks, heartbeats every 2).
    pub tick_ms: u64,
    /// `--cluster-peers`: addresses this node dials for some peers instead of their cluster
    /// addresses, so a test can put a fault proxy on each directed link (flin-clustertest).
    /// The node still listens on its own cluster address.
    pub dial_overrides: BTreeMap<NodeId, SocketAddr>,
    /// `--join`: this node joins a running cluster: it is not among the voters of `--cluster`
    /// and waits to be added (CLUSTER.ADD) and fed by the leader.
    pub join: bool,
    /// `--raft-held-entries`: the most entries a node keeps in memory past what it applied;
    /// a follower behind that is fed from the engine's log (docs/replication.md "Catch-up").
    pub held_entries_max: u64,
    /// `--raft-retain-entries`: how far behind the log's end the leader's engine keeps
    /// entries for a lagging follower (a compaction pin); one further behind needs a
    /// snapshot.
    pub retain_entries_max: u64,
    /// `--snapshot-rate-mb`: MB (10^6 bytes) per second a snapshot is shipped to one
    /// follower at, at most (0: no limit).
    pub snapshot_rate_mb: u64,
    /// `--catch-up-rate-mb`: MB (10^6 bytes) per second of entries, at most, the leader
    /// feeds one follower from its engine's log (0: no limit; `pace`).
    pub catch_up_rate_mb: u64,
    /// `--raft-retain-mb`: MB (10^6 bytes) of log, at least, the leader keeps for a lagging
    /// follower; it keeps a quarter of its engine's log when that is more. A follower further
    /// behind is shipped a snapshot (decision 105).
    pub retain_mb: u64,
    /// `--raft-flush-offload`: under `--fsync always`, a follower hands the flush of a
    /// `Ready` of at least this many entries to its flush threads (decision 108).
    pub flush_offload_entries: u64,
}

/// `--raft-flush-offload` unless given: a full pipeline's appends are 256 entries, a plain
/// load's a few dozen at most.
pub const FLUSH_OFFLOAD_ENTRIES_DEFAULT: u64 = 64;

/// `--raft-held-entries` unless given.
pub const HELD_ENTRIES_DEFAULT: u64 = 200_000;
/// `--raft-retain-entries` unless given.
pub const RETAIN_ENTRIES_DEFAULT: u64 = 1_000_000;
/// `--raft-retain-mb` unless given.
pub const RETAIN_MB_DEFAULT: u64 = 256;
/// The share of the engine's log (every segment's bytes: what a snapshot ships, about) a
/// leader keeps for a lagging follower when it is more than `--raft-retain-mb`: a follower
/// missing more than that is caught up sooner by a snapshot, which moves files at disk speed,
/// than by entries the raft thread reads and paces (decision 105).
pub const RETAIN_LOG_SHARE: u64 = 4;

impl ClusterOptions {
    /// Parses `1=127.0.0.1:7380,2=127.0.0.1:7381,3=127.0.0.1:7382` for node `id`.
    pub fn parse(id: &str, members: &str, tick_ms: u64) -> Result<ClusterOptions, String> {
        let options = ClusterOptions::parse_members(id, members, tick_ms)?;
        if !options.members.contains_key(&options.id) {
            return Err(format!(
                "--cluster: this node ({}) is not among the members",
                options.id
            ));
        }
        Ok(options)
    }

    /// `--join`: node `id`, listening for clients on `own`, joins the cluster whose current
    /// voters `--cluster` names (it is not one of them).
    pub fn joining(
        id: &str,
        members: &str,
        tick_ms: u64,
        own: SocketAddr,
    ) -> Result<ClusterOptions, String> {
        let mut options = ClusterOptions::parse_members(id, members, tick_ms)?;
        if options.members.contains_key(&options.id) {
            return Err(format!(
                "--join: this node ({}) is among --cluster's voters; a joining node is not a member yet",
                options.id
            ));
        }
        options.members.insert(options.id, own);
        options.join = true;
        Ok(options)
    }

    /// The voters `--cluster` names: the initial membership (without this node under
    /// `--join`).
    pub fn initial_voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .keys()
            .copied()
            .filter(move |&node| !(self.join && node == self.id))
    }

    fn parse_members(id: &str, members: &str, tick_ms: u64) -> Result<ClusterOptions, String> {
        let id: NodeId = id.parse().ok().filter(|&id| id > 0).ok_or_else(|| {
            format!("--node-id: '{id}' is not a node id (a positive integer) as --cluster needs")
        })?;
        let mut parsed = BTreeMap::new();
        for member in members.split(',') {
            let (node, addr) = member
                .split_once('=')
                .ok_or_else(|| format!("--cluster: '{member}' is not <id>=<ip>:<port>"))?;
            let node: NodeId = node
                .trim()
                .parse()
                .ok()
                .filter(|&node| node > 0)
                .ok_or_else(|| format!("--cluster: '{node}' is not a node id"))?;
            let addr: SocketAddr = addr
                .trim()
                .parse()
                .map_err(|_| format!("--cluster: '{addr}' is not <ip>:<port>"))?;
            if addr
                .port()
                .checked_add(transport::CLUSTER_PORT_OFFSET)
                .is_none()
            {
                return Err(format!(
                    "--cluster: port {} leaves no room for its cluster port (+{})",
                    addr.port(),
                    transport::CLUSTER_PORT_OFFSET
                ));
            }
            if parsed.insert(node, addr).is_some() {
                return Err(format!("--cluster: node {node} is named twice"));
            }
        }
        Ok(ClusterOptions {
            id,
            members: parsed,
            tick_ms,
            dial_overrides: BTreeMap::new(),
            join: false,
            held_entries_max: HELD_ENTRIES_DEFAULT,
            retain_entries_max: RETAIN_ENTRIES_DEFAULT,
            snapshot_rate_mb: snapshot::RATE_MB_DEFAULT,
            catch_up_rate_mb: pace::CATCH_UP_RATE_MB_DEFAULT,
            flush_offload_entries: FLUSH_OFFLOAD_ENTRIES_DEFAULT,
            retain_mb: RETAIN_MB_DEFAULT,
        })
    }

    /// Parses `--cluster-peers 2=127.0.0.1:7941,3=127.0.0.1:7942`: the address to dial for
    /// each named peer (another member, not this node) instead of its cluster address.
    pub fn set_dial_overrides(&mut self, peers: &str) -> Result<(), String> {
        for peer in peers.split(',') {
            let (node, addr) = peer
                .split_once('=')
                .ok_or_else(|| format!("--cluster-peers: '{peer}' is not <id>=<ip>:<port>"))?;
            let node: NodeId = node
                .trim()
                .parse()
                .ok()
                .filter(|node| self.members.contains_key(node) && *node != self.id)
                .ok_or_else(|| format!("--cluster-peers: '{node}' is not another member's id"))?;
            let addr: SocketAddr = addr
                .trim()
                .parse()
                .map_err(|_| format!("--cluster-peers: '{addr}' is not <ip>:<port>"))?;
            if self.dial_overrides.insert(node, addr).is_some() {
                return Err(format!("--cluster-peers: node {node} is named twice"));
            }
        }
        Ok(())
    }

    /// The address this node dials to send to `peer`: its cluster address, unless
    /// `--cluster-peers` named another.
    pub fn dial_addr(&self, peer: NodeId) -> SocketAddr {
        self.dial_overrides
            .get(&peer)
            .copied()
            .unwrap_or_else(|| self.cluster_addr(peer))
    }

    /// A member's cluster address: its client address with the port + 10000.
    pub fn cluster_addr(&self, node: NodeId) -> SocketAddr {
        let mut addr = self.members[&node];
        addr.set_port(addr.port() + transport::CLUSTER_PORT_OFFSET);
        addr
    }
}

/// What the raft thread last saw, for redirects, CLUSTER INFO/NODES and the admin port.
#[derive(Clone, Debug)]
pub struct View {
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub first_index: u64,
    /// The leader's view of each follower's match index.
    pub matches: BTreeMap<NodeId, u64>,
    /// Times this node became leader.
    pub elections_won: u64,
    /// The membership in force on this node (the latest in its log, applied or not).
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// When this node last received a message from each peer (a leader hears its followers'
    /// answers, a follower its leader): INFO's `lag`, CLUSTER SHARDS' health, CLUSTER NODES'
    /// link state.
    pub heard: BTreeMap<NodeId, std::time::Instant>,
    /// Since when this node leads (`None` while it does not): a new leader counts a
    /// follower's silence from its election, not from before it (as a follower it never
    /// heard from the other followers).
    pub leading_since: Option<std::time::Instant>,
}

/// A peer not heard from for this many ticks (the longest election timeout at the core's
/// defaults, 1 s at 50 ms ticks: heartbeats go every 2 ticks, so a live peer is heard ten
/// times in it) is reported down: `failed` in CLUSTER SHARDS, `fail?` and `disconnected` in CLUSTER NODES, and
/// no longer a connected replica in INFO.
pub const SILENT_TICKS_MAX: u64 = 20;

/// How a node looks from this one, by when it was last heard from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contact {
    /// This node itself.
    Myself,
    /// Heard from within `SILENT_TICKS_MAX` ticks, this long ago (on a leader: at most as
    /// long ago as its election).
    Live(std::time::Duration),
    /// Heard from longer ago, or never (`None`).
    Silent(Option<std::time::Duration>),
}

/// The cluster as the rest of the server sees it.
pub struct Cluster {
    pub options: ClusterOptions,
    pub gates: std::sync::Arc<ClusterGates>,
    /// The term this node accepts writes in, once its empty entry of that term is in its log;
    /// 0 while it is not the leader.
    writable_term: AtomicU64,
    /// Until when (`os::lease_clock_ns`) this leader may serve reads from its own state: no
    /// other leader can be elected before (the driver's `publish_lease`); 0: no lease.
    lease_until: AtomicU64,
    view: Mutex<View>,
    /// The client address of every node this one has known as a member: `--cluster`'s, then
    /// those the membership records name (never forgotten: a removed node's address is
    /// harmless, and a redirect may still need it while the removal is in flight).
    addresses: Mutex<BTreeMap<NodeId, SocketAddr>>,
    /// Wakes the raft thread when the engine appended (set once the thread runs).
    pub(crate) wake: Mutex<Option<driver::Inbox>>,
    /// Set by the first write since the raft thread last looked at the engine's log, which
    /// alone sends the wake-up: under load one wake-up per raft turn, not one per write
    /// (each was a channel send, a lock and often a futex wake).
    pub(crate) appended_unseen: std::sync::atomic::AtomicBool,
    /// Snapshots this node sent `InstallSnapshot` for, as the leader (CLUSTER INFO).
    pub snapshots_sent: AtomicU64,
    /// The mailboxes of connections parked in WAIT on this leader: rung (and forgotten) when
    /// a follower's match index moves (`set_view`), so a WAIT looks again at once.
    ack_waiters: Mutex<Vec<std::sync::Arc<crate::queue::Mailbox>>>,
    /// Bytes of snapshot files this node shipped, as the leader (CLUSTER INFO).
    pub snapshot_bytes_sent: AtomicU64,
    /// The index of the snapshot this process opened at its start (0: none; CLUSTER INFO).
    pub snapshot_installed_index: AtomicU64,
}

impl Cluster {
    pub fn new(options: ClusterOptions) -> Cluster {
        let voters = options.initial_voters().collect();
        let addresses = Mutex::new(options.members.clone());
        Cluster {
            options,
            addresses,
            gates: Default::default(),
            writable_term: AtomicU64::new(0),
            lease_until: AtomicU64::new(0),
            view: Mutex::new(View {
                role: Role::Follower,
                term: 0,
                leader: None,
                commit: 0,
                applied: 0,
                last_index: 0,
                first_index: 1,
                matches: BTreeMap::new(),
                elections_won: 0,
                voters,
                learners: Vec::new(),
                heard: BTreeMap::new(),
                leading_since: None,
            }),
            wake: Mutex::new(None),
            appended_unseen: std::sync::atomic::AtomicBool::new(false),
            snapshots_sent: AtomicU64::new(0),
            ack_waiters: Mutex::new(Vec::new()),
            snapshot_bytes_sent: AtomicU64::new(0),
            snapshot_installed_index: AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> NodeId {
        self.options.id
    }

    /// Whether this node leads and accepts writes now.
    pub fn writable(&self) -> bool {
        self.writable_term.load(Ordering::Acquire) != 0
    }

    pub(crate) fn set_writable_term(&self, term: u64) {
        self.writable_term.store(term, Ordering::Release);
    }

    /// Whether this node leads and may serve a read from its own state now: it accepts
    /// writes and its lease holds (docs/replication.md, "Reads on the leader"). Read at the
    /// moment of asking: a caller reads the state right after, not a turn later.
    pub fn readable(&self) -> bool {
        self.writable() && crate::os::lease_clock_ns() < self.lease_until.load(Ordering::Acquire)
    }

    pub(crate) fn set_lease_until(&self, until_ns: u64) {
        self.lease_until.store(until_ns, Ordering::Release);
    }

    /// The refusal of a read on a leader whose lease has run out: a majority has not answered
    /// its heartbeats for most of an election timeout, so another leader may exist.
    pub fn lease_refusal(&self) -> Frame {
        Frame::error("TRYAGAIN the leader has not heard from a majority within its lease; retry")
    }

    pub fn view(&self) -> View {
        self.view.lock().expect("cluster view lock").clone()
    }

    /// How `id` looks from this node in `view`, by when it was last heard from.
    pub fn contact(&self, view: &View, id: NodeId) -> Contact {
        if id == self.id() {
            return Contact::Myself;
        }
        let silent_max = std::time::Duration::from_millis(SILENT_TICKS_MAX * self.options.tick_ms);
        let since = match (view.heard.get(&id).copied(), view.leading_since) {
            (Some(heard), Some(leading)) => Some(heard.max(leading)),
            (heard, leading) => heard.or(leading),
        };
        match since.map(|at| at.elapsed()) {
            Some(ago) if ago <= silent_max => Contact::Live(ago),
            ago => Contact::Silent(ago),
        }
    }

    pub(crate) fn set_view(&self, view: View) {
        let moved = {
            let mut held = self.view.lock().expect("cluster view lock");
            let moved = held.matches != view.matches;
            *held = view;
            moved
        };
        if moved {
            let waiters = std::mem::take(&mut *self.ack_waiters.lock().expect("ack waiters lock"));
            for mailbox in waiters {
                mailbox.ring();
            }
        }
    }

    /// Rings `mailbox` the next time a follower's match index moves (once: a WAIT that
    /// still waits asks again).
    pub fn wake_on_ack(&self, mailbox: std::sync::Arc<crate::queue::Mailbox>) {
        let mut waiters = self.ack_waiters.lock().expect("ack waiters lock");
        // Once each: a WAIT with no follower answering asks at every look.
        if !waiters
            .iter()
            .any(|waiter| std::sync::Arc::ptr_eq(waiter, &mailbox))
        {
            waiters.push(mailbox);
        }
    }

    /// A node's client address, if this node knows it.
    pub fn address(&self, node: NodeId) -> Option<SocketAddr> {
        self.addresses
            .lock()
            .expect("cluster addresses lock")
            .get(&node)
            .copied()
    }

    /// Remembers the client addresses a membership record names.
    pub(crate) fn learn_addresses(&self, addresses: &BTreeMap<NodeId, SocketAddr>) {
        let mut known = self.addresses.lock().expect("cluster addresses lock");
        known.extend(addresses);
    }

    /// The address this node dials to send to `peer`: `--cluster-peers`' if it named one,
    /// else the peer's cluster address (client port + 10000).
    pub fn dial_addr(&self, peer: NodeId) -> Option<SocketAddr> {
        if let Some(&addr) = self.options.dial_overrides.get(&peer) {
            return Some(addr);
        }
        let mut addr = self.address(peer)?;
        addr.set_port(addr.port().checked_add(transport::CLUSTER_PORT_OFFSET)?);
        Some(addr)
    }

    /// The refusal of a command this node cannot serve: `-MOVED 0 <addr>` naming the
    /// leader's client address (`dispatch::with_key_slot` replaces the 0 with the slot of the
    /// command's first key), or `-CLUSTERDOWN` while no leader is known.
    pub fn redirect(&self) -> Frame {
        let view = self.view();
        match view.leader {
            Some(leader) if leader != self.id() => match self.address(leader) {
                Some(addr) => Frame::error(format!("MOVED 0 {addr}")),
                None => Frame::error(format!("CLUSTERDOWN leader {leader} is not a member")),
            },
            Some(_) => Frame::error(
                "TRYAGAIN this node was just elected and is committing its term; retry",
            ),
            None => {
                Frame::error("CLUSTERDOWN no leader is known (an election is under way); retry")
            }
        }
    }

    /// Tells the raft thread the engine appended an entry to propose.
    pub fn notify_appended(&self) {
        if self.appended_unseen.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(wake) = &*self.wake.lock().expect("cluster wake lock") {
            let _ = wake.send(driver::Input::Appended);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::{Cluster, ClusterOptions};
    use crate::queue::Mailbox;

    /// A WAIT's mailbox is rung once when a follower's match index moves, not when a view
    /// leaves them as they were, and a mailbox asked for twice is rung once.
    #[test]
    fn a_waiting_mailbox_rings_once_when_a_match_index_moves() {
        let members = "1=127.0.0.1:7900,2=127.0.0.1:7901,3=127.0.0.1:7902";
        let cluster = Cluster::new(ClusterOptions::parse("1", members, 50).unwrap());
        let rings = Arc::new(AtomicU64::new(0));
        let mailbox = Mailbox::new({
            let rings = rings.clone();
            move || {
                rings.fetch_add(1, Ordering::SeqCst);
            }
        });
        cluster.wake_on_ack(mailbox.clone());
        cluster.wake_on_ack(mailbox.clone());
        let mut view = cluster.view();
        view.commit = 7;
        cluster.set_view(view.clone());
        assert_eq!(rings.load(Ordering::SeqCst), 0, "no match index moved");
        view.matches.insert(2, 5);
        cluster.set_view(view.clone());
        assert_eq!(rings.load(Ordering::SeqCst), 1, "rung once");
        view.matches.insert(2, 6);
        cluster.set_view(view);
        assert_eq!(rings.load(Ordering::SeqCst), 1, "forgotten once rung");
    }
}
