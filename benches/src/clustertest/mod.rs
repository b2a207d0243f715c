//! The real-process fault test of a 3-node cluster (issue 14, `flin-clustertest`): three
//! `flin-server` processes on 127.0.0.1, a fault proxy on each directed link between them,
//! concurrent clients, faults drawn from a seed, then heal and check.
//!
//! # Layout
//! - [`node`]: a node as a child process (start, SIGKILL, SIGSTOP/SIGCONT).
//! - [`proxy`]: the fault proxy of one directed link (pass, drop, delay); each node dials its
//!   peers through them (`--cluster-peers`).
//! - [`workload`]: the clients, which run GET, SET, INCR and compare-and-set (`SET .. IFEQ`,
//!   `SET .. NX`), follow `-MOVED`, and record the history the linearizability checker reads.
//! - [`models`]: the clients' writes to documents, a queue (pushes, and takes: pop then ack)
//!   and a stream (publishes, and a consumer group's steps), and each model's end check.
//! - this file: the run: faults one after another while the clients run, then the checks.
//!
//! # Faults
//! One at a time, with a quiet gap of 0.2 to 1 s between them, each drawn from the seed and
//! aimed at the leader half the time: kill -9 and restart after 0.1 to 1.5 s; SIGSTOP for 0.2
//! to 2 s and SIGCONT; isolate a node (both directions of its links dropped) for 0.3 to 3 s;
//! drop one directed link; delay every link of a node by 20 to 200 ms; flap a node's links
//! (dropped and restored a few times). Where a fault lands also depends on the scheduler: a seed
//! repeats a run's choices, not its interleaving.
//!
//! # The checks, after the faults
//! The clients stop, every fault is healed (links pass, paused nodes resume, killed ones
//! restart) and a leader must be elected within [`SETTLE_TIMEOUT`]. Then:
//! 1. a final GET of every key the clients used, through the leader, joins the history, so an
//!    acknowledged write that was lost makes the history illegal; and each other model is
//!    read back through the leader (`models`: every acknowledged document insert, queue push
//!    and stream publish present, at the id or offset it was acknowledged with, unless an
//!    acknowledged ack took the message, which must then be gone; the counter document within
//!    what its acknowledged and unknown increments allow; the group's committed offset never
//!    gone back);
//! 2. the three nodes' commit indexes must become equal to their last indexes, and each node's
//!    own copy of every key (read with READONLY) must equal the leader's final read, and its
//!    copy of the other models (`models::ModelCopy`: document count, counter, stream end,
//!    group offset) what the checks read through the leader; then each node is made leader
//!    in turn (CLUSTER.TRANSFER) and its queue, which it rebuilds from its own log when it
//!    leads, must hold as many messages not acked (ready or in flight) as the first leader's;
//! 3. no node exited on its own during the run;
//! 4. the history is checked for linearizability per key, and the time it took reported (a
//!    check that runs out of its budget is reported as undecided, not passed).

pub mod history;
pub mod models;
pub mod node;
pub mod proxy;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flin_replication::linearizability::{
    self, KvCommand, KvInput, KvModel, KvOutput, Limits, Outcome,
};

use crate::crashtest::client::{Client, Reply};
use crate::crashtest::rng::Rng;
use node::{NodeProcess, NodeSettings};
use proxy::{LinkMode, LinkProxy};
use workload::{ClientRecord, KvOperation, Session, WorkloadSettings};

/// Nodes in the cluster.
pub const NODES: usize = 3;
/// How long the healed cluster has to elect a leader, and then to agree on its log.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of the harness's own CLUSTER INFO probes.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Random streams (see `Rng::derive`).
const STREAM_FAULTS: u64 = 11;
const STREAM_CLIENT: u64 = 12;

/// Everything a run is told.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `flin-server` binary.
    pub server: PathBuf,
    pub seed: u64,
    /// Faults to inject.
    pub faults: u64,
    /// Stop injecting faults after this long, even if fewer than `faults` ran.
    pub duration_max: Duration,
    /// Client ports: `port_base + 1 ..= port_base + 3` (cluster ports are + 10000).
    pub port_base: u16,
    /// Proxy ports: `proxy_base .. proxy_base + 6`.
    pub proxy_base: u16,
    pub clients: u64,
    pub workload: WorkloadSettings,
    pub tick_ms: u64,
    /// More flags for every node (e.g. a short `--raft-retain-entries` and small segments,
    /// so that followers back from a fault are caught up by snapshots).
    pub server_args: Vec<String>,
    /// Wall-clock limit of the linearizability check.
    pub check_time_max: Duration,
    /// Parent of the scratch directory (default: the system's temporary directory).
    pub work_dir: Option<PathBuf>,
    pub keep: bool,
    /// Print a line per fault.
    pub verbose: bool,
}

impl Options {
    pub fn new(server: PathBuf, seed: u64, faults: u64) -> Options {
        Options {
            server,
            seed,
            faults,
            duration_max: Duration::from_secs(24 * 3600),
            port_base: 7900,
            proxy_base: 7940,
            clients: 4,
            workload: WorkloadSettings {
                keys: 5,
                key_epoch_ms: 3_000,
                op_timeout: Duration::from_millis(1500),
                stale_reads: false,
                model_percent: 30,
            },
            tick_ms: 20,
            server_args: Vec::new(),
            check_time_max: Duration::from_secs(300),
            work_dir: None,
            keep: false,
            verbose: false,
        }
    }
}

/// A fault, as drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Kill { node: usize, down_ms: u64 },
    Pause { node: usize, ms: u64 },
    Isolate { node: usize, ms: u64 },
    OneWay { from: usize, to: usize, ms: u64 },
    Delay { node: usize, delay_ms: u64, ms: u64 },
    Flap { node: usize, times: u64 },
}

impl Fault {
    /// Index into [`Report::faults_by_kind`].
    fn kind(&self) -> usize {
        match self {
            Fault::Kill { .. } => 0,
            Fault::Pause { .. } => 1,
            Fault::Isolate { .. } => 2,
            Fault::OneWay { .. } => 3,
            Fault::Delay { .. } => 4,
            Fault::Flap { .. } => 5,
        }
    }
}

const FAULT_KINDS: [&str; 6] = [
    "kill -9",
    "SIGSTOP",
    "isolate",
    "one-way drop",
    "delay",
    "flap",
];

/// What a run did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub faults: u64,
    pub faults_by_kind: [u64; 6],
    pub faults_on_leader: u64,
    pub operations: u64,
    pub acknowledged: u64,
    pub unknown: u64,
    pub acknowledged_writes: u64,
    pub keys: usize,
    /// Writes to the other models: acknowledged, unknown outcome.
    pub model_writes: (u64, u64),
    pub models: models::ModelSummary,
    pub odd_replies: Vec<String>,
    pub odd_reply_count: u64,
    pub check_time: Duration,
    /// "linearizable", or why it is undecided.
    pub verdict: String,
    pub commit_index: u64,
    pub term: u64,
    /// The messages not acked that each node made leader in turn held in its queue, rebuilt
    /// from its own log (all equal, or the run failed).
    pub queue_copies: Vec<i64>,
    pub duration: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "flin-clustertest: seed={} faults={} passed in {:.1} s",
            self.seed,
            self.faults,
            self.duration.as_secs_f64()
        )?;
        let kinds: Vec<String> = FAULT_KINDS
            .iter()
            .zip(self.faults_by_kind)
            .map(|(name, n)| format!("{n} {name}"))
            .collect();
        writeln!(
            f,
            "  faults: {} ({} aimed at the leader)",
            kinds.join(", "),
            self.faults_on_leader
        )?;
        writeln!(
            f,
            "  operations: {} ({} acknowledged, {} of them writes; {} unknown outcome) on {} keys",
            self.operations, self.acknowledged, self.acknowledged_writes, self.unknown, self.keys
        )?;
        writeln!(
            f,
            "  other models: {} writes acknowledged, {} unknown; found {} documents (counter {}), \
             {} queued messages ({} taken by the clients, acked), {} stream records, every \
             acknowledged one among them; group offset {} after {} acknowledged commits, none \
             gone back",
            self.model_writes.0,
            self.model_writes.1,
            self.models.documents,
            self.models.counter,
            self.models.messages,
            self.models.taken,
            self.models.records,
            self.models.committed,
            self.models.commits
        )?;
        writeln!(
            f,
            "  history: {} in {:.2} s; nodes agree at commit index {} (term {}); each node made \
             leader held {:?} messages not acked in its rebuilt queue",
            self.verdict,
            self.check_time.as_secs_f64(),
            self.commit_index,
            self.term,
            self.queue_copies
        )?;
        write!(f, "  unexpected replies: {}", self.odd_reply_count)?;
        for odd in &self.odd_replies {
            write!(f, "\n    {odd}")?;
        }
        Ok(())
    }
}

/// A broken promise, or a harness that could not go on.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub what: Vec<String>,
    pub dir: PathBuf,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "flin-clustertest FAILED (seed {}; rerun with --seed {}); data and node logs kept in {}",
            self.seed,
            self.seed,
            self.dir.display()
        )?;
        for what in &self.what {
            writeln!(f, "  {what}")?;
        }
        Ok(())
    }
}

/// The cluster under test: nodes (None while killed) and the proxies.
struct Cluster {
    settings: Vec<NodeSettings>,
    nodes: Vec<Option<NodeProcess>>,
    /// `links[from][to]`: the proxy `from` dials to reach `to`.
    links: BTreeMap<(usize, usize), LinkProxy>,
    addrs: Vec<SocketAddr>,
    /// Nodes found exited on their own.
    crashed: Vec<String>,
}

impl Cluster {
    fn start(options: &Options, dir: &std::path::Path) -> Result<Cluster, String> {
        let ports: Vec<u16> = (1..=NODES as u16).map(|i| options.port_base + i).collect();
        let addrs: Vec<SocketAddr> = ports
            .iter()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], *port)))
            .collect();
        let members = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{}={addr}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut links = BTreeMap::new();
        let mut proxy_port = options.proxy_base;
        for from in 0..NODES {
            for (to, port) in ports.iter().enumerate() {
                if from == to {
                    continue;
                }
                let listen = SocketAddr::from(([127, 0, 0, 1], proxy_port));
                let target = SocketAddr::from(([127, 0, 0, 1], port + 10_000));
                links.insert((from, to), LinkProxy::start(listen, target)?);
                proxy_port += 1;
            }
        }
        let settings: Vec<NodeSettings> = (0..NODES)
            .map(|i| NodeSettings {
                binary: options.server.clone(),
                id: i as u64 + 1,
                port: ports[i],
                data: dir.join(format!("node{}", i + 1)),
                log: dir.join(format!("node{}.log", i + 1)),
                members: members.clone(),
                dial: (0..NODES)
                    .filter(|&to| to != i)
                    .map(|to| format!("{}={}", to + 1, links[&(i, to)].listen))
                    .collect::<Vec<_>>()
                    .join(","),
                tick_ms: options.tick_ms,
                extra: options.server_args.clone(),
            })
            .collect();
        let mut cluster = Cluster {
            settings,
            nodes: Vec::new(),
            links,
            addrs,
            crashed: Vec::new(),
        };
        for settings in &cluster.settings {
            cluster.nodes.push(Some(NodeProcess::start(settings)?));
        }
        Ok(cluster)
    }

    fn restart(&mut self, node: usize) -> Result<(), String> {
        if self.nodes[node].is_none() {
            self.nodes[node] = Some(NodeProcess::start(&self.settings[node])?);
        }
        Ok(())
    }

    /// Notes any node that exited without being killed.
    fn look_for_crashes(&mut self) {
        for (i, slot) in self.nodes.iter_mut().enumerate() {
            if let Some(node) = slot {
                if let Some(status) = node.exited() {
                    self.crashed.push(format!(
                        "node {} (pid {}) exited on its own: {status}",
                        i + 1,
                        node.pid()
                    ));
                    *slot = None;
                }
            }
        }
    }

    fn set_links(&self, node: usize, mode: LinkMode) {
        for ((from, to), link) in &self.links {
            if *from == node || *to == node {
                link.set_mode(mode);
            }
        }
    }

    fn heal(&mut self) -> Result<(), String> {
        for link in self.links.values() {
            link.set_mode(LinkMode::Pass);
        }
        for i in 0..NODES {
            if let Some(node) = &mut self.nodes[i] {
                node.resume();
            }
            self.restart(i)?;
        }
        Ok(())
    }

    /// The node that says it is leader and accepts writes, if one answers.
    fn leader(&self) -> Option<usize> {
        (0..NODES).find(|&i| {
            self.nodes[i].is_some()
                && cluster_info(self.addrs[i]).is_some_and(|info| {
                    info.get("accepting_writes").map(String::as_str) == Some("1")
                })
        })
    }

    fn apply(&mut self, fault: Fault, log: &dyn Fn(&str)) -> Result<(), String> {
        let sleep = |ms: u64| std::thread::sleep(Duration::from_millis(ms));
        match fault {
            Fault::Kill { node, down_ms } => {
                if let Some(mut process) = self.nodes[node].take() {
                    process.kill();
                }
                sleep(down_ms);
                self.restart(node)?;
            }
            Fault::Pause { node, ms } => {
                if let Some(process) = &mut self.nodes[node] {
                    process.pause();
                    sleep(ms);
                    process.resume();
                }
            }
            Fault::Isolate { node, ms } => {
                self.set_links(node, LinkMode::Drop);
                sleep(ms);
                self.set_links(node, LinkMode::Pass);
            }
            Fault::OneWay { from, to, ms } => {
                self.links[&(from, to)].set_mode(LinkMode::Drop);
                sleep(ms);
                self.links[&(from, to)].set_mode(LinkMode::Pass);
            }
            Fault::Delay { node, delay_ms, ms } => {
                self.set_links(node, LinkMode::Delay(Duration::from_millis(delay_ms)));
                sleep(ms);
                self.set_links(node, LinkMode::Pass);
            }
            Fault::Flap { node, times } => {
                for _ in 0..times {
                    self.set_links(node, LinkMode::Drop);
                    sleep(150);
                    self.set_links(node, LinkMode::Pass);
                    sleep(150);
                }
            }
        }
        log(&format!("{fault:?} done"));
        Ok(())
    }
}

/// `CLUSTER INFO` of the node at `addr` as key-value pairs, if it answers in time.
fn cluster_info(addr: SocketAddr) -> Option<BTreeMap<String, String>> {
    let mut client = Client::connect(addr, PROBE_TIMEOUT).ok()?;
    let Reply::Bulk(Some(text)) = client.call(&[b"CLUSTER", b"INFO"]).ok()? else {
        return None;
    };
    let text = String::from_utf8(text).ok()?;
    Some(
        text.lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Draws the next fault; `leader` is the node believed to lead, if any.
fn draw_fault(rng: &mut Rng, leader: Option<usize>) -> (Fault, bool) {
    let aimed = leader.is_some() && rng.percent(50);
    let node = match (aimed, leader) {
        (true, Some(leader)) => leader,
        _ => rng.below(NODES as u64) as usize,
    };
    let fault = match rng.weighted(&[25, 20, 20, 15, 10, 10]) {
        0 => Fault::Kill {
            node,
            down_ms: rng.between(100, 1500),
        },
        1 => Fault::Pause {
            node,
            ms: rng.between(200, 2000),
        },
        2 => Fault::Isolate {
            node,
            ms: rng.between(300, 3000),
        },
        3 => {
            let other = (node + 1 + rng.below(NODES as u64 - 1) as usize) % NODES;
            let (from, to) = if rng.percent(50) {
                (node, other)
            } else {
                (other, node)
            };
            Fault::OneWay {
                from,
                to,
                ms: rng.between(300, 3000),
            }
        }
        4 => Fault::Delay {
            node,
            delay_ms: rng.between(20, 200),
            ms: rng.between(300, 2000),
        },
        _ => Fault::Flap {
            node,
            times: rng.between(2, 6),
        },
    };
    (fault, aimed)
}

/// Runs the faults under the clients, heals, and checks. `Ok` only if every check passed.
pub fn run(options: &Options) -> Result<Report, Failure> {
    let started = Instant::now();
    let scratch = match &options.work_dir {
        Some(parent) => tempfile::Builder::new()
            .prefix("flin-clustertest-")
            .tempdir_in(parent),
        None => tempfile::Builder::new()
            .prefix("flin-clustertest-")
            .tempdir(),
    }
    .map_err(|e| Failure {
        seed: options.seed,
        what: vec![format!("cannot create a scratch directory: {e}")],
        dir: PathBuf::new(),
    })?;
    let mut report = Report {
        seed: options.seed,
        ..Report::default()
    };
    let outcome = run_in(options, scratch.path(), &mut report);
    report.duration = started.elapsed();
    match outcome {
        Ok(()) => {
            if options.keep {
                let kept = scratch.keep();
                eprintln!("flin-clustertest: kept {}", kept.display());
            }
            Ok(report)
        }
        Err(what) => Err(Failure {
            seed: options.seed,
            what,
            dir: scratch.keep(),
        }),
    }
}

fn run_in(
    options: &Options,
    dir: &std::path::Path,
    report: &mut Report,
) -> Result<(), Vec<String>> {
    let one = |what: String| vec![what];
    let mut cluster = Cluster::start(options, dir).map_err(one)?;
    let clock = Instant::now();
    let stop = AtomicBool::new(false);
    let verbose = options.verbose;
    let log = move |line: &str| {
        if verbose {
            eprintln!("flin-clustertest: {line}");
        }
    };
    let addrs = cluster.addrs.clone();
    let mut setup = Session::new(addrs.clone(), 0, SETTLE_TIMEOUT);
    models::setup(&mut setup).map_err(one)?;
    let (records, fault_result) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..options.clients)
            .map(|client| {
                let rng = Rng::derive(options.seed, STREAM_CLIENT, client);
                let addrs = addrs.clone();
                let stop = &stop;
                let settings = options.workload;
                scope.spawn(move || workload::run_client(client, addrs, rng, settings, clock, stop))
            })
            .collect();
        let fault_result = inject_faults(options, &mut cluster, report, &log);
        stop.store(true, Ordering::SeqCst);
        let records: Vec<ClientRecord> = handles
            .into_iter()
            .map(|h| h.join().expect("client thread panicked"))
            .collect();
        (records, fault_result)
    });
    fault_result.map_err(one)?;
    cluster.look_for_crashes();
    cluster.heal().map_err(one)?;
    let mut history: Vec<KvOperation> = Vec::new();
    let mut keys = BTreeSet::new();
    let mut model_writes = models::ModelRecord::default();
    for record in records {
        model_writes.merge(record.models);
        history.extend(record.operations);
        keys.extend(record.keys);
        report.odd_reply_count += record.odd_reply_count;
        report.odd_replies.extend(record.odd_replies);
    }
    report.odd_replies.truncate(10);
    report.keys = keys.len();
    let mut violations = Vec::new();
    // 1. A leader, and a final read of every key through it.
    let settle = Instant::now();
    let leader = loop {
        if let Some(leader) = cluster.leader() {
            break leader;
        }
        if settle.elapsed() > SETTLE_TIMEOUT {
            return Err(one(format!(
                "no leader within {SETTLE_TIMEOUT:?} after healing"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    log(&format!("healed; node index {leader} leads"));
    let final_client = options.clients;
    let mut final_record = ClientRecord::default();
    let mut session = Session::new(addrs.clone(), leader, SETTLE_TIMEOUT);
    let mut final_values: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for key in &keys {
        match session.perform(
            final_client,
            KvInput::get(key.clone()),
            clock,
            &mut final_record,
        ) {
            Some(KvOutput::Value(value)) => {
                final_values.insert(key.clone(), value);
            }
            other => violations.push(format!(
                "the final read of {} got no value: {other:?}",
                String::from_utf8_lossy(key)
            )),
        }
    }
    history.extend(final_record.operations);
    report.model_writes = model_writes.counts();
    report.models = models::check(&mut session, &model_writes, &mut violations);
    // 2. The nodes agree: equal commit and last indexes, then equal copies.
    match converge(&cluster) {
        Ok((commit, term)) => {
            report.commit_index = commit;
            report.term = term;
            for (i, addr) in addrs.iter().enumerate() {
                let mut copy = Session::readonly(*addr, Duration::from_secs(5));
                let mut scratch = ClientRecord::default();
                for (key, expected) in &final_values {
                    let got =
                        copy.perform(i as u64, KvInput::get(key.clone()), clock, &mut scratch);
                    if got.as_ref() != Some(&KvOutput::Value(expected.clone())) {
                        violations.push(format!(
                            "node {} holds {:?} for {}, the leader read {:?}",
                            i + 1,
                            got,
                            String::from_utf8_lossy(key),
                            KvOutput::Value(expected.clone())
                        ));
                    }
                }
                let expected = models::ModelCopy::expected(&report.models);
                match models::read_copy(&mut copy) {
                    Ok(held) if held == expected => {}
                    Ok(held) => violations.push(format!(
                        "node {}'s copy of the other models is {held:?}, the leader's {expected:?}",
                        i + 1
                    )),
                    Err(why) => {
                        violations.push(format!("node {}'s copy of the other models: {why}", i + 1))
                    }
                }
            }
        }
        Err(why) => violations.push(why),
    }
    // 2b. Each node's queue: made leader in turn, each rebuilds the queue from its own log,
    // and must hold as many messages not acked (ready or in flight) as the first did; after
    // the drain above, normally none. An ack one node's log lacks would bring its message back
    // there.
    if violations.is_empty() {
        let first = cluster.leader();
        let order = first
            .into_iter()
            .chain((0..NODES).filter(|&n| Some(n) != first));
        let mut expected = None;
        for node in order {
            let read = lead_with(&cluster, node).and_then(|()| {
                let mut session = Session::new(vec![addrs[node]], 0, SETTLE_TIMEOUT);
                models::read_queue(&mut session)
                    .map_err(|why| format!("node {}'s queue: {why}", node + 1))
            });
            match read {
                Ok((ready, in_flight)) => {
                    let held = *expected.get_or_insert(ready + in_flight);
                    match ready + in_flight == held {
                        true => report.queue_copies.push(held),
                        false => violations.push(format!(
                            "node {} made leader holds {ready} ready and {in_flight} in-flight messages in {}, the first leader {held} not acked",
                            node + 1,
                            models::QUEUE
                        )),
                    }
                }
                Err(why) => violations.push(why),
            }
        }
    }
    // 3. No node died on its own.
    cluster.look_for_crashes();
    violations.extend(cluster.crashed.iter().cloned());
    // 4. Linearizable.
    report.operations = history.len() as u64;
    for operation in &history {
        match &operation.returned {
            Some(returned) => {
                report.acknowledged += 1;
                if !matches!(
                    returned.output,
                    KvOutput::Value(_) | KvOutput::Refused | KvOutput::Swapped(false)
                ) {
                    report.acknowledged_writes += 1;
                }
            }
            None => report.unknown += 1,
        }
    }
    let checking = Instant::now();
    let limits = Limits {
        time_max: Some(options.check_time_max),
        ..Limits::default()
    };
    let outcome = linearizability::check(&KvModel, &history, limits);
    report.check_time = checking.elapsed();
    match outcome {
        Outcome::Ok => report.verdict = "linearizable".into(),
        Outcome::Timeout { part, exhausted } => {
            let saved = save_part(options, &history, &part.0);
            report.verdict = format!(
                "undecided (key {part:?}: the {exhausted:?} limit ran out; {}; {saved})",
                describe_part(&history, &part.0)
            )
        }
        Outcome::Illegal(illegal) => violations.push(format!("{illegal}")),
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

fn inject_faults(
    options: &Options,
    cluster: &mut Cluster,
    report: &mut Report,
    log: &dyn Fn(&str),
) -> Result<(), String> {
    let started = Instant::now();
    let mut rng = Rng::derive(options.seed, STREAM_FAULTS, 0);
    // Let the first election happen and the clients get going.
    std::thread::sleep(Duration::from_millis(500));
    while report.faults < options.faults && started.elapsed() < options.duration_max {
        std::thread::sleep(Duration::from_millis(rng.between(200, 1000)));
        cluster.look_for_crashes();
        if !cluster.crashed.is_empty() {
            return Err(cluster.crashed.join("; "));
        }
        let leader = cluster.leader();
        let (fault, aimed) = draw_fault(&mut rng, leader);
        log(&format!(
            "fault {}: {fault:?} (nodes by index 0..=2; the leader is {})",
            report.faults + 1,
            leader.map_or("unknown".into(), |l| l.to_string())
        ));
        cluster.apply(fault, log)?;
        report.faults += 1;
        report.faults_by_kind[fault.kind()] += 1;
        report.faults_on_leader += u64::from(aimed);
    }
    // A last quiet stretch, so the history ends with a healthy cluster serving the clients.
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

/// What makes one key's history hard to check: its operations, those of unknown outcome by
/// command, and the most that were in flight at once (an unknown one stays in flight to the
/// end).
/// Writes the operations on `key` to `flin-clustertest-<seed>.history` in the work
/// directory's parent (`--dir`, or the system's temporary directory), for `--recheck`; says
/// where, or why not.
fn save_part(options: &Options, history: &[KvOperation], key: &[u8]) -> String {
    let part: Vec<&KvOperation> = history.iter().filter(|op| op.input.key == key).collect();
    let dir = options.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("flin-clustertest-{}.history", options.seed));
    match std::fs::write(&path, history::encode(&part)) {
        Ok(()) => format!("its history: {}, for --recheck", path.display()),
        Err(error) => format!("its history not saved: {}: {error}", path.display()),
    }
}

fn describe_part(history: &[KvOperation], key: &[u8]) -> String {
    let part: Vec<&KvOperation> = history.iter().filter(|op| op.input.key == key).collect();
    let mut unknown = BTreeMap::<&str, usize>::new();
    let mut events = Vec::new();
    for op in &part {
        events.push((op.call_ns, 1i64));
        match &op.returned {
            Some(returned) => events.push((returned.at_ns.saturating_add(1), -1)),
            None => {
                let name = match op.input.command {
                    KvCommand::Get => "GET",
                    KvCommand::Set(_) => "SET",
                    KvCommand::Incr => "INCR",
                    KvCommand::CompareAndSet { .. } => "CAS",
                };
                *unknown.entry(name).or_default() += 1;
            }
        }
    }
    events.sort_unstable();
    let (mut open, mut most) = (0i64, 0i64);
    for (_, change) in events {
        open += change;
        most = most.max(open);
    }
    let unknown: Vec<String> = unknown
        .iter()
        .map(|(name, n)| format!("{n} {name}"))
        .collect();
    format!(
        "{} operations, unknown outcome: {}; at most {most} in flight",
        part.len(),
        if unknown.is_empty() {
            "none".into()
        } else {
            unknown.join(", ")
        }
    )
}

/// Makes `node` the leader (CLUSTER.TRANSFER through the leader, again until it leads or
/// `SETTLE_TIMEOUT` passes).
fn lead_with(cluster: &Cluster, node: usize) -> Result<(), String> {
    let started = Instant::now();
    let id = (node + 1).to_string();
    while started.elapsed() < SETTLE_TIMEOUT {
        match cluster.leader() {
            Some(leader) if leader == node => return Ok(()),
            Some(leader) => {
                if let Ok(mut client) = Client::connect(cluster.addrs[leader], PROBE_TIMEOUT) {
                    let _ = client.call(&[b"CLUSTER.TRANSFER", id.as_bytes()]);
                }
                let asked = Instant::now();
                while asked.elapsed() < Duration::from_secs(2) && cluster.leader() != Some(node) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    Err(format!(
        "node {} did not take the leadership within {SETTLE_TIMEOUT:?} (CLUSTER.TRANSFER {id})",
        node + 1
    ))
}

/// Waits until every node reports one commit index equal to its last index (and to the
/// others'), stable over two probes; returns it and the term.
fn converge(cluster: &Cluster) -> Result<(u64, u64), String> {
    let started = Instant::now();
    let mut previous = None;
    let mut last_seen = Vec::new();
    while started.elapsed() < SETTLE_TIMEOUT {
        let infos: Vec<_> = cluster.addrs.iter().map(|a| cluster_info(*a)).collect();
        let field = |info: &Option<BTreeMap<String, String>>, name: &str| -> Option<u64> {
            info.as_ref()?.get(name)?.parse().ok()
        };
        let indexes: Vec<(Option<u64>, Option<u64>, Option<u64>)> = infos
            .iter()
            .map(|info| {
                (
                    field(info, "commit_index"),
                    field(info, "last_index"),
                    field(info, "term"),
                )
            })
            .collect();
        last_seen = indexes.clone();
        let first = indexes[0];
        let agreed = first.0.is_some()
            && first.0 == first.1
            && indexes
                .iter()
                .all(|i| i.0 == first.0 && i.1 == first.1 && i.2 == first.2);
        if agreed {
            if previous == Some(first) {
                return Ok((first.0.unwrap_or(0), first.2.unwrap_or(0)));
            }
            previous = Some(first);
        } else {
            previous = None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "the nodes did not agree on one log within {SETTLE_TIMEOUT:?}: (commit, last, term) per node {last_seen:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undecided_key_is_described_by_its_unknown_outcomes_and_concurrency() {
        let history = vec![
            KvOperation::completed(1, 0, KvInput::get("a"), 10, KvOutput::value(None)),
            KvOperation::unknown(2, 5, KvInput::incr("a")),
            KvOperation::completed(3, 6, KvInput::set("a", "x"), 20, KvOutput::Done),
            // Another key's operations do not count, and one that returned before the next
            // call leaves the flight.
            KvOperation::unknown(4, 7, KvInput::set("b", "y")),
            KvOperation::completed(1, 30, KvInput::get("a"), 40, KvOutput::value(Some(b"x"))),
            KvOperation::unknown(1, 50, KvInput::set("a", "z")),
        ];
        assert_eq!(
            describe_part(&history, b"a"),
            "5 operations, unknown outcome: 1 INCR, 1 SET; at most 3 in flight"
        );
        assert_eq!(
            describe_part(&history[..1], b"a"),
            "1 operations, unknown outcome: none; at most 1 in flight"
        );
    }
}
