//! flin-failover: how long a 3-node cluster takes to accept writes again after its leader is
//! killed with SIGKILL, and whether any acknowledged write was lost (issue 14's failover figure;
//! see docs/benchmarks.md, "Cluster (issue 14)", and docs/reliability.md).
//!
//! `cargo build --release -p flin-server -p flin-benches && target/release/flin-failover --kills 100`
//!
//! One round: find the leader (the node whose `CLUSTER INFO` says `accepting_writes:1`), start a
//! writer thread that SETs `fo:<n> <n>` one at a time, following `-MOVED`, retrying
//! `-CLUSTERDOWN` / `-TRYAGAIN` and moving to the next node on a connection error; after a delay
//! drawn from the seed, SIGKILL the leader (by the pid this tool started); the failover time is
//! from the kill to the first SET acknowledged by another node. Then stop the writer, check that
//! every SET acknowledged so far (this round and all before) reads back from the new leader,
//! restart the killed node on its data directory, wait until its commit index equals the
//! leader's, check this round's SETs on it (READONLY), and go on.
//!
//! Exit status 0 when no acknowledged write was lost and every failover finished within
//! `--failover-timeout-ms`, 1 otherwise, 2 on bad arguments.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flin_benches::crashtest::client::{Client, Reply};
use flin_benches::crashtest::rng::Rng;

const NODES: usize = 3;
/// Peers talk on the client port + this (server/src/cluster).
const CLUSTER_PORT_OFFSET: u16 = 10_000;
/// Connect, read and write timeout of every connection this tool opens.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a node may take to answer PING after it is started (recovery included).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the nodes may take to elect a leader, or a rejoined node to catch up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The writer's pause before retrying a node that answered CLUSTERDOWN or TRYAGAIN, or after a
/// refused connection: short against an election, long enough not to spin.
const RETRY_PAUSE: Duration = Duration::from_millis(2);
/// The writer goes on this long after the first write the new leader accepted, so the check
/// also covers writes of the new term.
const WRITE_AFTER_FAILOVER: Duration = Duration::from_millis(100);
/// Keys per MGET when reading acknowledged SETs back.
const CHECK_BATCH_KEYS: usize = 500;

const HELP: &str = "\
flin-failover: SIGKILL a 3-node cluster's leader under a writer, again and again; the time until
a new leader accepts a write (p50/p90/p99/max), and acknowledged SETs lost (must be 0)

USAGE:
    flin-failover [FLAGS]

FLAGS:
        --server <PATH>        flin-server binary (default: flin-server beside this binary)
        --port <PORT>          client port of node 1; nodes 2 and 3 use the next two, and
                               each node's cluster port is its client port + 10000 (default 7800)
        --kills <N>            leader kills (default 20)
        --raft-tick-ms <MS>    the nodes' raft tick (default 50, the server's default)
        --fsync <POLICY>       always (default) or everysec
        --run-ms <MIN,MAX>     the writer runs this long before each kill, drawn from the seed
                               (default 100,400)
        --failover-timeout-ms <MS>
                               a failover not done in this long fails the run (default 30000)
        --seed <N>             seed of the kill delays (default 1)
        --dir <PATH>           parent of the nodes' data directories (default: a temporary
                               directory, removed at the end)
        --keep                 keep the data directories and the nodes' logs at the end
        --json                 print the summary as JSON on stdout
    -q, --quiet                no line per kill on stderr
        --help                 print this help
";

struct Options {
    server: PathBuf,
    port: u16,
    kills: usize,
    tick_ms: u64,
    fsync: String,
    run_ms: (u64, u64),
    failover_timeout: Duration,
    seed: u64,
    dir: Option<PathBuf>,
    json: bool,
    keep: bool,
    quiet: bool,
}

fn parse_options(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        server: std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("flin-server")))
            .unwrap_or_else(|| PathBuf::from("flin-server")),
        port: 7800,
        kills: 20,
        tick_ms: 50,
        fsync: "always".into(),
        run_ms: (100, 400),
        failover_timeout: Duration::from_secs(30),
        seed: 1,
        dir: None,
        json: false,
        keep: false,
        quiet: false,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |name: &str, text: String| -> Result<u64, String> {
            text.replace('_', "")
                .parse()
                .map_err(|_| format!("{name}: '{text}' is not a number"))
        };
        match flag.as_str() {
            "--server" => options.server = PathBuf::from(value("--server")?),
            "--port" => {
                let port = number("--port", value("--port")?)?;
                if port == 0 || port + NODES as u64 + CLUSTER_PORT_OFFSET as u64 > 65_535 {
                    return Err(format!("--port: {port} leaves no room for 3 nodes"));
                }
                options.port = port as u16;
            }
            "--kills" => options.kills = number("--kills", value("--kills")?)?.max(1) as usize,
            "--raft-tick-ms" => {
                options.tick_ms = number("--raft-tick-ms", value("--raft-tick-ms")?)?
            }
            "--fsync" => {
                let text = value("--fsync")?;
                if text != "always" && text != "everysec" {
                    return Err(format!("--fsync: '{text}' is not always or everysec"));
                }
                options.fsync = text;
            }
            "--run-ms" => {
                let text = value("--run-ms")?;
                let (low, high) = text
                    .split_once(',')
                    .ok_or(format!("--run-ms: '{text}' is not MIN,MAX"))?;
                let (low, high) = (
                    number("--run-ms", low.into())?,
                    number("--run-ms", high.into())?,
                );
                if low > high {
                    return Err(format!("--run-ms: {low} > {high}"));
                }
                options.run_ms = (low, high);
            }
            "--failover-timeout-ms" => {
                options.failover_timeout = Duration::from_millis(number(
                    "--failover-timeout-ms",
                    value("--failover-timeout-ms")?,
                )?)
            }
            "--seed" => options.seed = number("--seed", value("--seed")?)?,
            "--dir" => options.dir = Some(PathBuf::from(value("--dir")?)),
            "--json" => options.json = true,
            "--keep" => options.keep = true,
            "-q" | "--quiet" => options.quiet = true,
            "--help" => return Ok(None),
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    Ok(Some(options))
}

/// The three nodes: their processes (`None` while killed), ports and data directories.
struct Cluster {
    server: PathBuf,
    ports: [u16; NODES],
    members: String,
    dir: PathBuf,
    tick_ms: u64,
    fsync: String,
    nodes: [Option<Child>; NODES],
}

impl Cluster {
    fn start(options: &Options, dir: &Path) -> Result<Cluster, String> {
        let ports = [options.port, options.port + 1, options.port + 2];
        let members = (0..NODES)
            .map(|i| format!("{}=127.0.0.1:{}", i + 1, ports[i]))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            server: options.server.clone(),
            ports,
            members,
            dir: dir.to_path_buf(),
            tick_ms: options.tick_ms,
            fsync: options.fsync.clone(),
            nodes: [None, None, None],
        };
        for node in 0..NODES {
            cluster.start_node(node)?;
        }
        for node in 0..NODES {
            cluster.wait_answering(node)?;
        }
        Ok(cluster)
    }

    fn addr(&self, node: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[node]))
    }

    /// Starts node `node` (0-based; its cluster id is `node + 1`) on its data directory; its
    /// stdout and stderr are appended to `node<id>.log` beside it.
    fn start_node(&mut self, node: usize) -> Result<(), String> {
        assert!(self.nodes[node].is_none(), "node {} is running", node + 1);
        let id = (node + 1).to_string();
        let log_path = self.dir.join(format!("node{id}.log"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        let child = Command::new(&self.server)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.ports[node].to_string(),
            ])
            .arg("--data")
            .arg(self.dir.join(format!("node{id}")))
            .args(["--node-id", &id, "--cluster", &self.members])
            .args(["--raft-tick-ms", &self.tick_ms.to_string()])
            .args(["--fsync", &self.fsync, "--admin-port", "0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.server.display()))?;
        self.nodes[node] = Some(child);
        Ok(())
    }

    fn wait_answering(&mut self, node: usize) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let answered = Client::connect(self.addr(node), IO_TIMEOUT)
                .and_then(|mut client| client.call(&[b"PING"]))
                .is_ok_and(|reply| reply == Reply::Simple("PONG".into()));
            if answered {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.nodes[node].as_mut().map(Child::try_wait) {
                return Err(format!("node {} exited: {status}", node + 1));
            }
            if Instant::now() > deadline {
                return Err(format!("node {} did not answer PING", node + 1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (std's `Child::kill`) of the process this tool started, then reap it.
    fn kill(&mut self, node: usize) {
        let mut child = self.nodes[node].take().expect("killing a running node");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `CLUSTER INFO` of a running node, or `None` if it does not answer.
    fn info(&self, node: usize) -> Option<String> {
        self.nodes[node].as_ref()?;
        let mut client = Client::connect(self.addr(node), IO_TIMEOUT).ok()?;
        match client.call(&[b"CLUSTER", b"INFO"]).ok()? {
            Reply::Bulk(Some(text)) => String::from_utf8(text).ok(),
            _ => None,
        }
    }

    /// Waits until a running node accepts writes; its index.
    fn leader(&self) -> Result<usize, String> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            for node in 0..NODES {
                let info = self.info(node).unwrap_or_default();
                if field(&info, "accepting_writes") == Some(1) {
                    return Ok(node);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no leader accepts writes after {SETTLE_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `node`'s commit index equals the leader's (no writes run meanwhile).
    fn wait_caught_up(&self, node: usize, leader: usize) -> Result<(), String> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let leader_commit = self
                .info(leader)
                .and_then(|info| field(&info, "commit_index"));
            let commit = self
                .info(node)
                .and_then(|info| field(&info, "commit_index"));
            if leader_commit.is_some() && commit == leader_commit {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {} at commit {commit:?} did not reach the leader's {leader_commit:?}",
                    node + 1
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A numeric `name:value` line of `CLUSTER INFO`.
fn field(info: &str, name: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(':')?
            .trim()
            .parse()
            .ok()
    })
}

/// One acknowledged SET: its number, when the OK arrived, and which node sent it.
#[derive(Clone, Copy, Debug)]
struct Ack {
    number: u64,
    at: Instant,
    node: usize,
}

/// The writer thread's shared state.
struct Writes {
    acks: Mutex<Vec<Ack>>,
    stop: AtomicBool,
}

fn key(number: u64) -> String {
    format!("fo:{number}")
}

/// SETs one at a time from `first` on, starting at node `target`, until told to stop. A write
/// counts only when it was answered `+OK`; any other outcome leaves it unacknowledged (it may
/// or may not have been applied, and is not checked).
/// Returns the number after the last one sent.
fn write_until_stopped(ports: [u16; NODES], mut target: usize, first: u64, writes: &Writes) -> u64 {
    let mut number = first;
    let mut client: Option<Client> = None;
    while !writes.stop.load(Ordering::Relaxed) {
        let connection = match client.as_mut() {
            Some(connection) => connection,
            None => {
                let addr = SocketAddr::from(([127, 0, 0, 1], ports[target]));
                match Client::connect(addr, IO_TIMEOUT) {
                    Ok(connection) => client.insert(connection),
                    Err(_) => {
                        target = (target + 1) % NODES;
                        std::thread::sleep(RETRY_PAUSE);
                        continue;
                    }
                }
            }
        };
        let text = number.to_string();
        let reply = connection.call(&[b"SET", key(number).as_bytes(), text.as_bytes()]);
        number += 1;
        match reply {
            Ok(Reply::Simple(ok)) if ok == "OK" => {
                let ack = Ack {
                    number: number - 1,
                    at: Instant::now(),
                    node: target,
                };
                writes.acks.lock().expect("acks lock").push(ack);
            }
            Ok(Reply::Error(error)) if error.starts_with("MOVED ") => {
                let port = error
                    .rsplit(':')
                    .next()
                    .and_then(|port| port.trim().parse::<u16>().ok());
                if let Some(node) = ports.iter().position(|p| Some(*p) == port) {
                    target = node;
                }
                client = None;
            }
            Ok(Reply::Error(error))
                if error.starts_with("CLUSTERDOWN") || error.starts_with("TRYAGAIN") =>
            {
                std::thread::sleep(RETRY_PAUSE);
            }
            // A withdrawn write (its reply is an error and a close), or anything else: start
            // again on a fresh connection.
            Ok(_) => client = None,
            Err(_) => {
                client = None;
                target = (target + 1) % NODES;
            }
        }
    }
    number
}

/// How many of `acks` do not read back from `node` (READONLY first when it is a follower).
fn count_missing(
    cluster: &Cluster,
    node: usize,
    acks: &[Ack],
    readonly: bool,
) -> Result<u64, String> {
    let mut client = Client::connect(cluster.addr(node), IO_TIMEOUT)
        .map_err(|e| format!("node {}: {e}", node + 1))?;
    if readonly {
        client
            .call(&[b"READONLY"])
            .map_err(|e| format!("READONLY on node {}: {e}", node + 1))?;
    }
    let mut missing = 0;
    for batch in acks.chunks(CHECK_BATCH_KEYS) {
        let keys: Vec<String> = batch.iter().map(|ack| key(ack.number)).collect();
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        let reply = client
            .call(&args)
            .map_err(|e| format!("MGET on node {}: {e}", node + 1))?;
        let Reply::Array(Some(values)) = reply else {
            return Err(format!("MGET on node {} replied {reply:?}", node + 1));
        };
        for (ack, value) in batch.iter().zip(&values) {
            if *value != Reply::Bulk(Some(ack.number.to_string().into_bytes())) {
                missing += 1;
                eprintln!(
                    "LOST: {} acknowledged by node {} reads {value:?} on node {}",
                    key(ack.number),
                    ack.node + 1,
                    node + 1
                );
            }
        }
    }
    Ok(missing)
}

/// The `p`-th percentile (nearest rank) of sorted `values`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

struct Summary {
    failover_ms: Vec<f64>,
    catch_up_ms: Vec<f64>,
    acknowledged: u64,
    lost: u64,
    timed_out: usize,
}

fn run(options: &Options, dir: &Path) -> Result<Summary, String> {
    let mut cluster = Cluster::start(options, dir)?;
    let mut rng = Rng::new(options.seed);
    let mut all_acks: Vec<Ack> = Vec::new();
    let mut next_number = 0;
    let mut summary = Summary {
        failover_ms: Vec::new(),
        catch_up_ms: Vec::new(),
        acknowledged: 0,
        lost: 0,
        timed_out: 0,
    };
    for kill in 1..=options.kills {
        let old_leader = cluster.leader()?;
        let writes = Arc::new(Writes {
            acks: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let writer = {
            let (ports, writes, first) = (cluster.ports, Arc::clone(&writes), next_number);
            std::thread::spawn(move || write_until_stopped(ports, old_leader, first, &writes))
        };
        std::thread::sleep(Duration::from_millis(
            rng.between(options.run_ms.0, options.run_ms.1),
        ));
        let killed_at = Instant::now();
        cluster.kill(old_leader);
        // The first write another node acknowledged after the kill.
        let deadline = killed_at + options.failover_timeout;
        let failover = loop {
            let first = writes
                .acks
                .lock()
                .expect("acks lock")
                .iter()
                .find(|ack| ack.node != old_leader && ack.at > killed_at)
                .copied();
            if let Some(ack) = first {
                break Some(ack);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        std::thread::sleep(WRITE_AFTER_FAILOVER);
        writes.stop.store(true, Ordering::Relaxed);
        // Writes whose replies never came were numbered too: the next round starts past them.
        next_number = writer.join().map_err(|_| "the writer panicked")?;
        let round_acks = std::mem::take(&mut *writes.acks.lock().expect("acks lock"));
        all_acks.extend_from_slice(&round_acks);
        let Some(first) = failover else {
            summary.timed_out += 1;
            eprintln!(
                "kill {kill}: no write accepted within {:?} of killing node {}",
                options.failover_timeout,
                old_leader + 1
            );
            cluster.start_node(old_leader)?;
            cluster.wait_answering(old_leader)?;
            continue;
        };
        let failover_ms = (first.at - killed_at).as_secs_f64() * 1e3;
        summary.failover_ms.push(failover_ms);

        let new_leader = cluster.leader()?;
        let lost = count_missing(&cluster, new_leader, &all_acks, false)?;
        summary.lost += lost;

        let restarted_at = Instant::now();
        cluster.start_node(old_leader)?;
        cluster.wait_answering(old_leader)?;
        cluster.wait_caught_up(old_leader, new_leader)?;
        let catch_up_ms = restarted_at.elapsed().as_secs_f64() * 1e3;
        summary.catch_up_ms.push(catch_up_ms);
        let lost_on_rejoined = count_missing(&cluster, old_leader, &round_acks, true)?;
        summary.lost += lost_on_rejoined;
        if !options.quiet {
            eprintln!(
                "kill {kill}: node {} killed, node {} accepted a write after {failover_ms:.1} ms; \
                 {} SETs acknowledged this round, {lost} missing on the new leader; \
                 restarted and caught up in {catch_up_ms:.0} ms, {lost_on_rejoined} missing there",
                old_leader + 1,
                first.node + 1,
                round_acks.len()
            );
        }
    }
    summary.acknowledged = all_acks.len() as u64;
    Ok(summary)
}

fn main() {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{HELP}");
            return;
        }
        Err(message) => {
            eprintln!("flin-failover: {message}");
            std::process::exit(2);
        }
    };
    for port in options.port..options.port + NODES as u16 {
        for port in [port, port + CLUSTER_PORT_OFFSET] {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                eprintln!("flin-failover: 127.0.0.1:{port} is in use; nothing started");
                std::process::exit(2);
            }
        }
    }
    let temporary;
    let dir = match &options.dir {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    };
    let dir = match dir {
        Ok(dir) => {
            temporary = dir;
            temporary.path().to_path_buf()
        }
        Err(e) => {
            eprintln!("flin-failover: scratch directory: {e}");
            std::process::exit(2);
        }
    };
    eprintln!(
        "flin-failover: {} kills, raft tick {} ms, fsync {}, seed {}; {}",
        options.kills,
        options.tick_ms,
        options.fsync,
        options.seed,
        flin_benches::machine_line()
    );
    let summary = match run(&options, &dir) {
        Ok(summary) => summary,
        Err(message) => {
            eprintln!("flin-failover: {message} (logs in {})", dir.display());
            let _ = temporary.keep();
            std::process::exit(1);
        }
    };
    if options.keep {
        eprintln!("flin-failover: data and logs kept in {}", dir.display());
        let _ = temporary.keep();
    }
    let mut sorted = summary.failover_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let mut catch_up = summary.catch_up_ms.clone();
    catch_up.sort_by(f64::total_cmp);
    let (p50, p90, p99, max) = match sorted.is_empty() {
        true => (0.0, 0.0, 0.0, 0.0),
        false => (
            percentile(&sorted, 50.0),
            percentile(&sorted, 90.0),
            percentile(&sorted, 99.0),
            sorted[sorted.len() - 1],
        ),
    };
    let catch_up_p50 = match catch_up.is_empty() {
        true => 0.0,
        false => percentile(&catch_up, 50.0),
    };
    if options.json {
        let json = serde_json::json!({
            "kills": options.kills,
            "raft_tick_ms": options.tick_ms,
            "fsync": options.fsync,
            "seed": options.seed,
            "failover_ms": {"p50": p50, "p90": p90, "p99": p99, "max": max},
            "failovers_timed_out": summary.timed_out,
            "catch_up_ms_p50": catch_up_p50,
            "acknowledged_sets": summary.acknowledged,
            "lost_acknowledged_sets": summary.lost,
        });
        println!("{json}");
    } else {
        println!(
            "kills={} tick_ms={} fsync={} failover_ms p50={p50:.1} p90={p90:.1} p99={p99:.1} \
             max={max:.1} timed_out={} catch_up_ms_p50={catch_up_p50:.0} acknowledged={} lost={}",
            options.kills,
            options.tick_ms,
            options.fsync,
            summary.timed_out,
            summary.acknowledged,
            summary.lost
        );
    }
    if summary.lost > 0 || summary.timed_out > 0 {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::{field, percentile};

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn cluster_info_fields_are_read_by_name() {
        let info = "role:leader\r\naccepting_writes:1\r\ncommit_index:42\r\n";
        assert_eq!(field(info, "accepting_writes"), Some(1));
        assert_eq!(field(info, "commit_index"), Some(42));
        assert_eq!(field(info, "commit"), None);
        assert_eq!(field(info, "role"), None);
    }
}
