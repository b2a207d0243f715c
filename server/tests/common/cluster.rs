//! Three real `flin-server` processes as one cluster on 127.0.0.1, for the cluster tests
//! (server/tests/cluster.rs, cluster_client.rs): free ports, start, kill, restart, and the
//! wait for a leader.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::ServerGuard;

/// Three client ports whose cluster ports (+10000) and admin ports (+1000) are free too.
pub fn free_ports() -> [u16; 3] {
    // Tests of one file run in parallel in one process: each call starts elsewhere.
    static CALLS: AtomicU16 = AtomicU16::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let mut ports = Vec::new();
    let mut candidate = 20_000 + ((std::process::id() % 5_000) as u16 * 5 + call * 100) % 25_000;
    while ports.len() < 3 {
        candidate = if candidate >= 45_000 {
            20_000
        } else {
            candidate + 1
        };
        let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(candidate) && free(candidate + 10_000) && free(candidate + 1_000) {
            ports.push(candidate);
        }
    }
    [ports[0], ports[1], ports[2]]
}

/// Nodes 1..=3 on `ports`; node `i + 1` is `nodes[i]`, its data in `n<i+1>` of a temporary
/// directory, its admin page on its client port + 1000.
pub struct TestCluster {
    pub ports: [u16; 3],
    pub addrs: [SocketAddr; 3],
    pub nodes: [Option<ServerGuard>; 3],
    members: String,
    flags: Vec<String>,
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts the three nodes with `flags` added to each one's command line.
    pub fn start(flags: &[&str]) -> TestCluster {
        let ports = free_ports();
        let members = (0..3)
            .map(|i| format!("{}=127.0.0.1:{}", i + 1, ports[i]))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = TestCluster {
            ports,
            addrs: ports.map(|port| SocketAddr::from(([127, 0, 0, 1], port))),
            nodes: [None, None, None],
            members,
            flags: flags.iter().map(|flag| flag.to_string()).collect(),
            dir: tempfile::tempdir().unwrap(),
        };
        for i in 0..3 {
            cluster.start_node(i);
        }
        cluster
    }

    /// Node `i + 1`'s data directory.
    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    /// Starts (or restarts, on its data directory) node `i + 1`.
    pub fn start_node(&mut self, i: usize) {
        let args = self.node_args(i);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.nodes[i] = Some(ServerGuard::start_on(
            self.ports[i],
            &self.data_dir(i),
            &args,
        ));
    }

    /// The flags `start_node` gives node `i + 1` (besides its port and data directory).
    pub fn node_args(&self, i: usize) -> Vec<String> {
        let mut args: Vec<String> = [
            "--node-id",
            &(i + 1).to_string(),
            "--cluster",
            &self.members,
            "--admin-port",
            &(self.ports[i] + 1_000).to_string(),
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        args.extend(self.flags.iter().cloned());
        args
    }

    /// Starts node `id` on `port` with a fresh data directory, joining the running cluster
    /// whose current voters `voters` names (`--join`); its admin page on `port` + 1000.
    pub fn start_joining(&self, id: u64, port: u16, voters: &str) -> ServerGuard {
        let (data, args) = self.joining(id, port, voters);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ServerGuard::start_on(port, &data, &args)
    }

    /// The data directory and flags `start_joining` gives node `id`.
    pub fn joining(&self, id: u64, port: u16, voters: &str) -> (std::path::PathBuf, Vec<String>) {
        let data = self.dir.path().join(format!("n{id}"));
        let mut args: Vec<String> = [
            "--node-id",
            &id.to_string(),
            "--cluster",
            voters,
            "--join",
            "--admin-port",
            &(port + 1_000).to_string(),
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        args.extend(self.flags.iter().cloned());
        (data, args)
    }

    /// SIGKILL of node `i + 1`.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].take().expect("running").crash();
    }

    /// A connection to node `i + 1` alone, with a 10 s read timeout.
    pub fn connect(&self, i: usize) -> redis::Connection {
        let node = self.nodes[i].as_ref().expect("running");
        let con = redis::Client::open(node.url())
            .unwrap()
            .get_connection()
            .unwrap();
        con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        con
    }

    /// `CLUSTER INFO` of node `i + 1`.
    pub fn info(&self, i: usize) -> String {
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut self.connect(i))
            .unwrap()
    }

    /// `CLUSTER INFO` of node `i + 1`, or `None` while it is down or does not answer (it
    /// re-executes itself to open a snapshot).
    pub fn try_info(&self, i: usize) -> Option<String> {
        let node = self.nodes[i].as_ref()?;
        let client = redis::Client::open(node.url()).ok()?;
        let mut con = client.get_connection().ok()?;
        redis::cmd("CLUSTER").arg("INFO").query(&mut con).ok()
    }

    /// Waits at most `within` until node `i + 1` reports a commit index of at least `commit`
    /// (a follower catching up); its `CLUSTER INFO` then.
    pub fn wait_commit(&self, i: usize, commit: u64, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(info) = self.try_info(i) {
                if field(&info, "commit_index") >= commit {
                    return info;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not reach commit index {commit} within {within:?}: {:?}",
                i + 1,
                self.try_info(i)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restarts node `i + 1` and waits at most `within` until it has the commit index that
    /// node `leader + 1` reports once it started (a follower back from a stop, caught up); its
    /// `CLUSTER INFO` then.
    pub fn rejoin(&mut self, i: usize, leader: usize, within: Duration) -> String {
        self.start_node(i);
        let commit = field(&self.info(leader), "commit_index");
        self.wait_commit(i, commit, within)
    }

    /// Waits (at most 20 s) for a running node that accepts writes; its index.
    pub fn leader(&self) -> usize {
        self.leader_other_than(None)
    }

    /// [`TestCluster::leader`] among the nodes but `skip` (one that is stopped, whose
    /// `CLUSTER INFO` would not answer).
    pub fn leader_other_than(&self, skip: Option<usize>) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for i in (0..3).filter(|&i| Some(i) != skip) {
                if self.nodes[i].is_some() && self.info(i).contains("accepting_writes:1") {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no leader within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// SETs `key(n)` to `value` for every `n` in `numbers`, pipelined 100 at a time.
pub fn set_pipelined(
    con: &mut redis::Connection,
    numbers: std::ops::Range<u64>,
    key: impl Fn(u64) -> String,
    value: &str,
) {
    let numbers: Vec<u64> = numbers.collect();
    for batch in numbers.chunks(100) {
        let mut pipe = redis::pipe();
        for &n in batch {
            pipe.cmd("SET").arg(key(n)).arg(value).ignore();
        }
        let () = pipe.query(con).unwrap();
    }
}

/// The number after `key:` in a `CLUSTER INFO` reply.
pub fn field(info: &str, key: &str) -> u64 {
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}:")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in {info}"))
}

/// A GET on the admin port: status and body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    (status, body)
}
