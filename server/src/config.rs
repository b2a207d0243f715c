//! Command-line flags (hand-written parser) and the options they produce.

use std::net::IpAddr;
use std::path::PathBuf;

use flin_engine::Durability;

pub const DEFAULT_PORT: u16 = 7380;
pub const DEFAULT_BIND: &str = "127.0.0.1";
pub const DEFAULT_DATA: &str = "./data";
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
pub const DEFAULT_COMPACTION_INTERVAL_MS: u64 = 1000;
/// Below this the background thread would spin; the engine itself floors the interval at 10.
pub const COMPACTION_INTERVAL_MS_MIN: u64 = 10;
/// The admin HTTP port defaults to the client port plus this (7380 -> 8380).
pub const ADMIN_PORT_OFFSET: u16 = 1000;
pub const DEFAULT_ADMIN_BIND: &str = "127.0.0.1";
/// A raft tick: elections after 0.5 to 1 s of silence, heartbeats every 100 ms.
pub const DEFAULT_RAFT_TICK_MS: u64 = 50;

/// The daemon's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub port: u16,
    pub bind: IpAddr,
    /// `None` with `--memory`: nothing is written to disk.
    pub data: Option<PathBuf>,
    pub fsync: Durability,
    /// Event loops; 0 = one per core.
    pub threads: usize,
    pub requirepass: Option<Vec<u8>>,
    pub max_clients: usize,
    pub node_id: String,
    /// Size of a new log segment; small values make rotation and compaction frequent (tests).
    pub segment_bytes: usize,
    /// How often the background thread looks for segments to compact (and expired keys to
    /// drop); small values make compaction frequent (the crash harness).
    pub compaction_interval_ms: u64,
    /// Close a connection idle this many seconds (Redis's `timeout`); 0 = never.
    pub timeout_seconds: u64,
    /// Close a connection whose request is still incomplete this many seconds after its
    /// first byte arrived (slow-request protection); 0 = never.
    pub request_timeout_seconds: u64,
    /// Disconnect a client whose unsent replies pass this many bytes (Redis's hard
    /// client-output-buffer limit).
    pub output_buffer_limit_bytes: usize,
    /// Most bytes of incomplete requests buffered over all connections; 0 = no limit beyond
    /// each connection's own (1 GiB).
    pub max_request_memory_bytes: usize,
    /// The admin HTTP port (health, readiness, stats, Prometheus metrics); `None` = off.
    /// Defaults to the client port + [`ADMIN_PORT_OFFSET`], and to off when the client port
    /// is 0 (tests pick free ports, and name an admin port when they want one).
    pub admin_port: Option<u16>,
    /// The address the admin HTTP port listens on.
    pub admin_bind: IpAddr,
    /// Events below this level are not logged (`crate::log`).
    pub log_level: crate::log::Level,
    /// How log lines are written: text or one JSON object per line.
    pub log_format: crate::log::Format,
    /// `--node-id N --cluster 1=ip:port,...`: a node of a replicated cluster (issue 14).
    pub cluster: Option<Box<crate::cluster::ClusterOptions>>,
}

impl Options {
    /// The admin port the flags ask for: `--admin-port` if given (0 = off), else the client
    /// port + 1000, and off when the client port is 0 or the sum does not fit.
    fn default_admin_port(port: u16) -> Option<u16> {
        match port {
            0 => None,
            port => port.checked_add(ADMIN_PORT_OFFSET),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: DEFAULT_PORT,
            bind: DEFAULT_BIND.parse().expect("default bind address"),
            data: Some(PathBuf::from(DEFAULT_DATA)),
            fsync: Durability::EverySec,
            threads: 0,
            requirepass: None,
            max_clients: DEFAULT_MAX_CLIENTS,
            node_id: "flin-0".into(),
            segment_bytes: 64 << 20,
            compaction_interval_ms: DEFAULT_COMPACTION_INTERVAL_MS,
            timeout_seconds: 0,
            request_timeout_seconds: flin_net::DEFAULT_REQUEST_TIMEOUT.as_secs(),
            output_buffer_limit_bytes: flin_net::DEFAULT_OUTPUT_BUFFER_LIMIT_BYTES,
            max_request_memory_bytes: 0,
            admin_port: Options::default_admin_port(DEFAULT_PORT),
            admin_bind: DEFAULT_ADMIN_BIND.parse().expect("default admin address"),
            cluster: None,
            log_level: crate::log::Level::Info,
            log_format: crate::log::Format::Text,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Invocation {
    Run(Options),
    Help,
    Version,
}

pub const HELP: &str = "\
flin-server: Flin's daemon (Redis-compatible RESP and Flin's binary protocol on one port)

USAGE:
    flin-server [CONFIG-FILE] [FLAGS]

A configuration file holds one flag per line without its dashes (`port 7381`,
`cluster 1=127.0.0.1:7380,...`, `join yes`; `#` starts a comment); flags given on the
command line override it (docs/operations.md).

FLAGS:
    --config <FILE>        read flags from FILE first (as a first argument, the same)
    --port <PORT>          TCP port to listen on (default 7380; 0 picks a free port,
                           and the startup line says which)
    --bind <ADDR>          IP address to listen on (default 127.0.0.1)
    --data <DIR>           data directory, created if missing (default ./data)
    --memory               keep everything in memory: no files, nothing survives a restart
                           (--data is then ignored)
    --fsync <POLICY>       when writes reach the disk: always (before each reply, shared
                           by concurrent clients), everysec (default: a crash loses at
                           most about a second), no (the OS decides)
    --threads <N>          event-loop threads (default: one per core)
    --requirepass <PASS>   require AUTH <PASS> (or HELLO ... AUTH default <PASS>) before
                           any other command
    --maxclients <N>       most connections open at once (default 10000)
    --timeout <SECONDS>    close a connection that sends nothing for this long (default 0:
                           never, as in Redis)
    --request-timeout <SECONDS>
                           close a connection whose request is still incomplete this long
                           after its first byte (default 60; 0: never)
    --output-buffer-limit <BYTES>
                           disconnect a client whose unsent replies pass this size (default
                           268435456 = 256 MiB)
    --max-request-memory <BYTES>
                           most bytes of incomplete requests buffered over all connections;
                           the client whose read passes it gets an error and is closed
                           (default 0: no total limit, each request at most 1 GiB)
    --admin-port <PORT>    admin HTTP port: the dashboard (/), /health, /ready,
                           /api/stats, /metrics (Prometheus), /api/cluster (default: the
                           client port + 1000, 8380; 0: off; off by default when --port
                           is 0); see docs/operations.md
    --admin-bind <ADDR>    IP address the admin port listens on (default 127.0.0.1)
    --log-level <LEVEL>    error, warn, info (default) or debug: events below it are not
                           logged (stderr, one line per event)
    --log-format <FORMAT>  text (default) or json (one object per line); see
                           docs/operations.md
    --node-id <ID>         this node's name, shown by INFO (default flin-0); with
                           --cluster, its id there (a positive integer)
    --cluster <MEMBERS>    run as a node of a replicated cluster: every member's id and
                           client address, this node's included, e.g.
                           1=127.0.0.1:7380,2=127.0.0.1:7381,3=127.0.0.1:7382; peers
                           talk on the client port + 10000 (docs/replication.md)
    --join                 with --cluster naming the running cluster's voters (not this
                           node): join it; this node waits to be added (CLUSTER.ADD on
                           the leader) and catches up from the leader's log
    --cluster-peers <PEERS>
                           for tests: the address to dial for some peers instead of
                           their cluster port, e.g. 2=127.0.0.1:7941 (a fault proxy)
    --raft-tick-ms <MS>    length of one raft tick (default 50): elections after 10 to 20
                           ticks of silence, heartbeats every 2
    --raft-held-entries <N>
                           most raft entries a node keeps in memory past what it applied
                           (default 200000; at least 1); a follower further behind is fed
                           from the engine's log
    --raft-retain-entries <N>
                           how far behind the log's end the leader's engine keeps entries
                           for a lagging follower (default 1000000; at least 1); a follower
                           further behind needs a snapshot
    --raft-retain-mb <N>   MB (10^6 bytes) of log at least the leader keeps for a lagging
                           follower (default 256), or a quarter of its log if that is
                           more; a follower missing more gets a snapshot, which moves at
                           disk speed
    --snapshot-rate-mb <N> MB (10^6 bytes) per second at most a leader ships a snapshot to
                           one follower at (default 500; 0: no limit, faster but the
                           copying takes the cores from the clients; on a shared link,
                           less than the link's); a snapshot goes to a follower the
                           leader's log can no longer feed
    --catch-up-rate-mb <N> MB (10^6 bytes) per second of entries at most a leader feeds
                           one lagging follower from its log at (default 16; 0: no
                           limit), or twice the leader's own write rate if that is more:
                           the leader's own clients keep their latency meanwhile
    --raft-flush-offload <N>
                           under --fsync always, a follower hands the flush of an append
                           of at least N entries (default 64; at least 1) to its two
                           flush threads, and writes the next append meanwhile; it
                           flushes a smaller one itself, which costs less CPU
    --segment-bytes <N>    size of a log segment file (default 67108864 = 64 MiB; at least
                           4096): smaller means more frequent rotation and compaction
    --compaction-interval-ms <MS>
                           how often background compaction looks for work (default 1000;
                           at least 10): smaller means more frequent compaction
    --help, -h             print this help and exit
    --version, -V          print the version and exit
";

/// Parses the arguments after the program name: flags, and a configuration file's directives
/// (`--config FILE`, or the file's path as the first argument, as `redis-server FILE` takes
/// it), applied before every flag of the command line, which override them.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Invocation, String> {
    let mut args: Vec<String> = args.into_iter().collect();
    let mut flags = Flags::default();
    if let Some(path) = take_config_path(&mut args)? {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("--config: cannot read {path}: {e}"))?;
        for (number, line) in text.lines().enumerate() {
            let Some((flag, value)) = directive(line) else {
                continue;
            };
            let at = |message: String| format!("{path} line {}: {message}", number + 1);
            if flag == "--config" {
                return Err(at("a configuration file cannot name another".into()));
            }
            let mut value = value.into_iter();
            if let Taken::Exit(_) = flags.take(flag.clone(), &mut value).map_err(at)? {
                return Err(at(format!("{flag} is not a directive")));
            }
            if let Some(extra) = value.next() {
                return Err(at(format!("{flag} takes no value, found '{extra}'")));
            }
        }
    }
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if let Taken::Exit(invocation) = flags.take(flag, &mut args)? {
            return Ok(invocation);
        }
    }
    flags.finish()
}

/// The configuration file's path, taken out of `args`: `--config FILE` (or `--config=FILE`)
/// anywhere, or a first argument that is not a flag.
fn take_config_path(args: &mut Vec<String>) -> Result<Option<String>, String> {
    if args.first().is_some_and(|first| !first.starts_with('-')) {
        return Ok(Some(args.remove(0)));
    }
    let Some(at) = args
        .iter()
        .position(|arg| arg == "--config" || arg.starts_with("--config="))
    else {
        return Ok(None);
    };
    let path = match args.remove(at).strip_prefix("--config=") {
        Some(path) => path.to_string(),
        None if at < args.len() => args.remove(at),
        None => return Err("flag --config needs a value (see --help)".into()),
    };
    if path.is_empty() {
        return Err("--config: the path must not be empty".into());
    }
    Ok(Some(path))
}

/// A configuration file's line as a flag and its value: `port 7381` is `--port 7381`, the
/// value being the rest of the line (trimmed; double quotes around it are dropped, so a
/// value may hold spaces). A flag without a value (`memory`, `join`) may be written alone
/// or followed by `yes`; `no` leaves it off. Blank lines and lines starting with `#` are
/// nothing.
fn directive(line: &str) -> Option<(String, Option<String>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(name, rest)| (name, rest.trim()));
    let flag = format!("--{}", name.trim_start_matches("--"));
    let rest = rest
        .strip_prefix('"')
        .and_then(|quoted| quoted.strip_suffix('"'))
        .unwrap_or(rest);
    if SWITCHES.contains(&flag.as_str()) {
        return match rest {
            "" | "yes" => Some((flag, None)),
            "no" => None,
            other => Some((flag, Some(other.to_string()))),
        };
    }
    Some((flag, (!rest.is_empty()).then(|| rest.to_string())))
}

/// The flags that take no value.
const SWITCHES: &[&str] = &["--memory", "--join"];

/// What one flag did.
enum Taken {
    /// It set an option.
    Flag,
    /// The invocation ends here (--help, --version).
    Exit(Invocation),
}

/// The flags seen so far, before the checks that span several of them (`finish`).
struct Flags {
    options: Options,
    memory: bool,
    /// `None`: not given, so it follows --port (whichever order the flags come in).
    admin_port: Option<u16>,
    cluster: Option<String>,
    cluster_peers: Option<String>,
    join: bool,
    tick_ms: u64,
    held_entries: u64,
    retain_entries: u64,
    retain_mb: u64,
    snapshot_rate_mb: u64,
    catch_up_rate_mb: u64,
    flush_offload_entries: u64,
}

impl Default for Flags {
    fn default() -> Flags {
        Flags {
            options: Options::default(),
            memory: false,
            admin_port: None,
            cluster: None,
            cluster_peers: None,
            join: false,
            tick_ms: DEFAULT_RAFT_TICK_MS,
            held_entries: crate::cluster::HELD_ENTRIES_DEFAULT,
            retain_entries: crate::cluster::RETAIN_ENTRIES_DEFAULT,
            retain_mb: crate::cluster::RETAIN_MB_DEFAULT,
            snapshot_rate_mb: crate::cluster::snapshot::RATE_MB_DEFAULT,
            catch_up_rate_mb: crate::cluster::pace::CATCH_UP_RATE_MB_DEFAULT,
            flush_offload_entries: crate::cluster::FLUSH_OFFLOAD_ENTRIES_DEFAULT,
        }
    }
}

impl Flags {
    /// Applies `flag`, taking its value (if it has one) from `--flag=value` or `args`.
    fn take(
        &mut self,
        flag: String,
        args: &mut impl Iterator<Item = String>,
    ) -> Result<Taken, String> {
        let options = &mut self.options;
        // Accept --flag=value as well as --flag value.
        let (flag, inline_value) = match flag.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_string(), Some(value.to_string()))
            }
            _ => (flag, None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("flag {name} needs a value (see --help)"))
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Taken::Exit(Invocation::Help)),
            "--version" | "-V" => return Ok(Taken::Exit(Invocation::Version)),
            "--port" => options.port = parse_number(&flag, &value(&flag)?)?,
            "--bind" => {
                let text = value(&flag)?;
                options.bind = text
                    .parse()
                    .map_err(|_| format!("--bind: '{text}' is not an IP address"))?;
            }
            "--data" => {
                let text = value(&flag)?;
                if text.is_empty() {
                    return Err("--data: the directory must not be empty".into());
                }
                options.data = Some(PathBuf::from(text));
            }
            "--memory" => self.memory = true,
            "--fsync" => {
                options.fsync = value(&flag)?.parse().map_err(|e| format!("--fsync: {e}"))?;
            }
            "--segment-bytes" => {
                options.segment_bytes = parse_number(&flag, &value(&flag)?)?;
                let range = flin_engine::SEGMENT_BYTES_MIN..=flin_engine::SEGMENT_BYTES_MAX;
                if !range.contains(&options.segment_bytes) {
                    return Err(format!("--segment-bytes: must be within {range:?}"));
                }
            }
            "--compaction-interval-ms" => {
                options.compaction_interval_ms = parse_number(&flag, &value(&flag)?)?;
                if options.compaction_interval_ms < COMPACTION_INTERVAL_MS_MIN {
                    return Err(format!(
                        "--compaction-interval-ms: must be at least {COMPACTION_INTERVAL_MS_MIN}"
                    ));
                }
            }
            "--timeout" => options.timeout_seconds = parse_number(&flag, &value(&flag)?)?,
            "--request-timeout" => {
                options.request_timeout_seconds = parse_number(&flag, &value(&flag)?)?
            }
            "--output-buffer-limit" => {
                options.output_buffer_limit_bytes = parse_number(&flag, &value(&flag)?)?;
                if options.output_buffer_limit_bytes == 0 {
                    return Err("--output-buffer-limit: must be at least 1".into());
                }
            }
            "--max-request-memory" => {
                options.max_request_memory_bytes = parse_number(&flag, &value(&flag)?)?
            }
            "--threads" => {
                options.threads = parse_number(&flag, &value(&flag)?)?;
                if options.threads == 0 {
                    return Err("--threads: must be at least 1".into());
                }
            }
            "--requirepass" => {
                let pass = value(&flag)?;
                if pass.is_empty() {
                    return Err("--requirepass: the password must not be empty".into());
                }
                options.requirepass = Some(pass.into_bytes());
            }
            "--maxclients" => {
                options.max_clients = parse_number(&flag, &value(&flag)?)?;
                if options.max_clients == 0 {
                    return Err("--maxclients: must be at least 1".into());
                }
            }
            "--admin-port" => self.admin_port = Some(parse_number(&flag, &value(&flag)?)?),
            "--admin-bind" => {
                let text = value(&flag)?;
                options.admin_bind = text
                    .parse()
                    .map_err(|_| format!("--admin-bind: '{text}' is not an IP address"))?;
            }
            "--log-level" => {
                options.log_level = value(&flag)?
                    .parse()
                    .map_err(|e| format!("--log-level: {e}"))?;
            }
            "--log-format" => {
                options.log_format = value(&flag)?
                    .parse()
                    .map_err(|e| format!("--log-format: {e}"))?;
            }
            "--node-id" => {
                let id = value(&flag)?;
                if id.is_empty() || id.contains(char::is_whitespace) {
                    return Err("--node-id: must be non-empty, without spaces".into());
                }
                options.node_id = id;
            }
            "--cluster" => self.cluster = Some(value(&flag)?),
            "--cluster-peers" => self.cluster_peers = Some(value(&flag)?),
            "--join" => self.join = true,
            "--raft-tick-ms" => {
                self.tick_ms = parse_number(&flag, &value(&flag)?)?;
                if !(1..=10_000).contains(&self.tick_ms) {
                    return Err("--raft-tick-ms: must be within 1..=10000".into());
                }
            }
            "--raft-held-entries" => {
                self.held_entries = parse_number(&flag, &value(&flag)?)?;
                if self.held_entries == 0 {
                    return Err("--raft-held-entries: must be at least 1".into());
                }
            }
            "--raft-retain-entries" => {
                self.retain_entries = parse_number(&flag, &value(&flag)?)?;
                if self.retain_entries == 0 {
                    return Err("--raft-retain-entries: must be at least 1".into());
                }
            }
            "--raft-retain-mb" => self.retain_mb = parse_number(&flag, &value(&flag)?)?,
            "--snapshot-rate-mb" => self.snapshot_rate_mb = parse_number(&flag, &value(&flag)?)?,
            "--catch-up-rate-mb" => self.catch_up_rate_mb = parse_number(&flag, &value(&flag)?)?,
            "--raft-flush-offload" => {
                self.flush_offload_entries = parse_number(&flag, &value(&flag)?)?;
                if self.flush_offload_entries == 0 {
                    return Err("--raft-flush-offload: must be at least 1".into());
                }
            }
            other => return Err(format!("unknown flag '{other}' (see --help)")),
        }
        Ok(Taken::Flag)
    }

    /// The checks that span several flags, and the options.
    fn finish(self) -> Result<Invocation, String> {
        let Flags {
            mut options,
            memory,
            admin_port,
            cluster,
            cluster_peers,
            join,
            tick_ms,
            held_entries,
            retain_entries,
            retain_mb,
            snapshot_rate_mb,
            catch_up_rate_mb,
            flush_offload_entries,
        } = self;
        if memory {
            options.data = None;
        }
        if let Some(members) = cluster {
            if options.data.is_none() {
                return Err(
                "--cluster needs a data directory: a node that forgets its log and votes on restart breaks raft's safety"
                    .into(),
            );
            }
            let mut cluster = if join {
                let own = std::net::SocketAddr::new(options.bind, options.port);
                crate::cluster::ClusterOptions::joining(&options.node_id, &members, tick_ms, own)?
            } else {
                crate::cluster::ClusterOptions::parse(&options.node_id, &members, tick_ms)?
            };
            if let Some(peers) = cluster_peers {
                cluster.set_dial_overrides(&peers)?;
            }
            cluster.held_entries_max = held_entries;
            cluster.retain_entries_max = retain_entries;
            cluster.retain_mb = retain_mb;
            cluster.snapshot_rate_mb = snapshot_rate_mb;
            cluster.catch_up_rate_mb = catch_up_rate_mb;
            cluster.flush_offload_entries = flush_offload_entries;
            options.cluster = Some(Box::new(cluster));
        } else if cluster_peers.is_some() {
            return Err("--cluster-peers needs --cluster".into());
        } else if join {
            return Err("--join needs --cluster (the running cluster's voters)".into());
        }
        options.admin_port = match admin_port {
            Some(0) => None,
            Some(port) => Some(port),
            None => Options::default_admin_port(options.port),
        };
        Ok(Invocation::Run(options))
    }
}

fn parse_number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: '{text}' is not a valid number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    /// Parses `args` after writing `text` to a file, whose path replaces `FILE` in them.
    fn parse_with_file(text: &str, args: &[&str]) -> Result<Invocation, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flin.conf");
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap();
        parse_args(args.iter().map(|arg| arg.replace("FILE", path)))
    }

    #[test]
    fn a_configuration_file_gives_flags_that_the_command_line_overrides() {
        let text = "\
# node 2 of three
port 7381
data \"/tmp/flin node 2\"
fsync always
node-id 2
cluster 1=127.0.0.1:7380,2=127.0.0.1:7381,3=127.0.0.1:7382
  raft-tick-ms   20

memory no
log-level warn
";
        let expected = |port: u16, level: &str| {
            let Invocation::Run(options) = parse(&[
                "--port",
                &port.to_string(),
                "--data",
                "/tmp/flin node 2",
                "--fsync",
                "always",
                "--node-id",
                "2",
                "--cluster",
                "1=127.0.0.1:7380,2=127.0.0.1:7381,3=127.0.0.1:7382",
                "--raft-tick-ms",
                "20",
                "--log-level",
                level,
            ])
            .unwrap() else {
                panic!("not a run");
            };
            Invocation::Run(options)
        };
        for args in [&["FILE"][..], &["--config", "FILE"], &["--config=FILE"]] {
            assert_eq!(parse_with_file(text, args).unwrap(), expected(7381, "warn"));
        }
        // The command line wins, whether it comes before or after --config.
        assert_eq!(
            parse_with_file(text, &["FILE", "--port", "7390", "--log-level", "debug"]).unwrap(),
            expected(7390, "debug")
        );
        assert_eq!(
            parse_with_file(
                text,
                &["--log-level", "debug", "--config", "FILE", "--port", "7390"]
            )
            .unwrap(),
            expected(7390, "debug")
        );
        // A switch alone or with yes is on.
        let Invocation::Run(options) = parse_with_file("memory\n", &["FILE"]).unwrap() else {
            panic!("not a run");
        };
        assert_eq!(options.data, None);
        let Invocation::Run(options) = parse_with_file("memory yes\n", &["FILE"]).unwrap() else {
            panic!("not a run");
        };
        assert_eq!(options.data, None);
    }

    #[test]
    fn a_bad_configuration_file_is_refused_naming_its_line() {
        let refusal = |text: &str| {
            let error = parse_with_file(text, &["FILE"]).unwrap_err();
            // The path is the temporary file's; what follows it is the point.
            error[error.find(" line ").expect(&error)..].to_string()
        };
        assert_eq!(
            refusal("port 7381\nprot 7382\n"),
            " line 2: unknown flag '--prot' (see --help)"
        );
        assert_eq!(
            refusal("# comment\n\nport seven\n"),
            " line 3: --port: 'seven' is not a valid number"
        );
        assert_eq!(
            refusal("port\n"),
            " line 1: flag --port needs a value (see --help)"
        );
        assert_eq!(
            refusal("join maybe\n"),
            " line 1: --join takes no value, found 'maybe'"
        );
        assert_eq!(refusal("help\n"), " line 1: --help is not a directive");
        assert_eq!(
            refusal("config other.conf\n"),
            " line 1: a configuration file cannot name another"
        );
        let missing = parse(&["/nonexistent/flin.conf"]).unwrap_err();
        assert!(
            missing.starts_with("--config: cannot read /nonexistent/flin.conf: "),
            "{missing}"
        );
        assert_eq!(
            parse(&["--config"]).unwrap_err(),
            "flag --config needs a value (see --help)"
        );
        // Checks across flags still run on the whole.
        assert_eq!(
            parse_with_file("join\n", &["FILE"]).unwrap_err(),
            "--join needs --cluster (the running cluster's voters)"
        );
    }

    #[test]
    fn defaults_and_flags() {
        assert_eq!(parse(&[]).unwrap(), Invocation::Run(Options::default()));
        let Invocation::Run(options) = parse(&[
            "--port",
            "0",
            "--bind",
            "0.0.0.0",
            "--data",
            "/tmp/x",
            "--fsync",
            "always",
            "--threads=2",
            "--requirepass",
            "pw",
            "--maxclients",
            "5",
            "--node-id",
            "n1",
            "--segment-bytes",
            "8192",
            "--compaction-interval-ms",
            "50",
            "--timeout",
            "30",
            "--request-timeout=5",
            "--output-buffer-limit",
            "1048576",
            "--max-request-memory",
            "4096",
        ])
        .unwrap() else {
            panic!("expected Run")
        };
        assert_eq!(options.port, 0);
        assert_eq!(options.segment_bytes, 8192);
        assert!(parse(&["--segment-bytes", "100"]).is_err());
        assert_eq!(options.compaction_interval_ms, 50);
        assert_eq!(
            (
                options.timeout_seconds,
                options.request_timeout_seconds,
                options.output_buffer_limit_bytes
            ),
            (30, 5, 1 << 20)
        );
        assert_eq!(options.max_request_memory_bytes, 4096);
        assert_eq!(
            parse(&["--compaction-interval-ms", "5"]).unwrap_err(),
            "--compaction-interval-ms: must be at least 10"
        );
        assert_eq!(options.bind.to_string(), "0.0.0.0");
        assert_eq!(options.data, Some(PathBuf::from("/tmp/x")));
        assert_eq!(options.fsync, Durability::Always);
        assert_eq!(options.threads, 2);
        assert_eq!(options.requirepass.as_deref(), Some(&b"pw"[..]));
        assert_eq!(options.max_clients, 5);
        assert_eq!(options.node_id, "n1");
        let Invocation::Run(options) = parse(&["--memory"]).unwrap() else {
            panic!()
        };
        assert_eq!(options.data, None);
        assert_eq!(parse(&["--help"]).unwrap(), Invocation::Help);
    }

    fn admin(args: &[&str]) -> (Option<u16>, String) {
        let Invocation::Run(options) = parse(args).unwrap() else {
            panic!("expected Run")
        };
        (options.admin_port, options.admin_bind.to_string())
    }

    #[test]
    fn admin_port_follows_the_client_port_unless_given() {
        assert_eq!(admin(&[]), (Some(8380), "127.0.0.1".into()));
        assert_eq!(admin(&["--port", "6000"]).0, Some(7000));
        // Whichever order the flags come in.
        assert_eq!(
            admin(&["--admin-port", "9000", "--port", "6000"]).0,
            Some(9000)
        );
        assert_eq!(admin(&["--port", "6000", "--admin-port=0"]).0, None);
        // A free client port (tests): off unless named.
        assert_eq!(admin(&["--port", "0"]).0, None);
        assert_eq!(
            admin(&["--port", "0", "--admin-port", "9001"]).0,
            Some(9001)
        );
        // No room above the client port: off.
        assert_eq!(admin(&["--port", "65000"]).0, None);
        assert_eq!(
            admin(&["--admin-bind", "0.0.0.0"]),
            (Some(8380), "0.0.0.0".into())
        );
        assert_eq!(
            parse(&["--admin-bind", "localhost"]).unwrap_err(),
            "--admin-bind: 'localhost' is not an IP address"
        );
        assert_eq!(
            parse(&["--admin-port", "x"]).unwrap_err(),
            "--admin-port: 'x' is not a valid number"
        );
        assert!(HELP.contains("--admin-port") && HELP.contains("--admin-bind"));
    }

    #[test]
    fn log_flags() {
        use crate::log::{Format, Level};
        let Ok(Invocation::Run(options)) = parse(&[]) else {
            panic!("runs")
        };
        assert_eq!(
            (options.log_level, options.log_format),
            (Level::Info, Format::Text)
        );
        let Ok(Invocation::Run(options)) = parse(&["--log-level", "warn", "--log-format=json"])
        else {
            panic!("runs")
        };
        assert_eq!(
            (options.log_level, options.log_format),
            (Level::Warn, Format::Json)
        );
        assert_eq!(
            parse(&["--log-level", "trace"]).unwrap_err(),
            "--log-level: 'trace' is not a level (error, warn, info, debug)"
        );
        assert_eq!(
            parse(&["--log-format", "xml"]).unwrap_err(),
            "--log-format: 'xml' is not a log format (text, json)"
        );
        assert!(HELP.contains("--log-level") && HELP.contains("--log-format"));
    }

    #[test]
    fn bad_flags_are_explained() {
        assert_eq!(
            parse(&["--port", "x"]).unwrap_err(),
            "--port: 'x' is not a valid number"
        );
        assert_eq!(
            parse(&["--port", "70000"]).unwrap_err(),
            "--port: '70000' is not a valid number"
        );
        assert_eq!(
            parse(&["--port"]).unwrap_err(),
            "flag --port needs a value (see --help)"
        );
        assert_eq!(
            parse(&["--frob"]).unwrap_err(),
            "unknown flag '--frob' (see --help)"
        );
        assert!(parse(&["--fsync", "sometimes"])
            .unwrap_err()
            .starts_with("--fsync: unknown fsync policy"));
        assert_eq!(
            parse(&["--bind", "localhost"]).unwrap_err(),
            "--bind: 'localhost' is not an IP address"
        );
    }

    #[test]
    fn a_joining_node_is_not_among_the_voters_it_names() {
        let voters = "1=127.0.0.1:7900,2=127.0.0.1:7901";
        let join = |id: &str| {
            parse(&[
                "--data",
                "/tmp/x",
                "--bind",
                "127.0.0.1",
                "--port",
                "7903",
                "--node-id",
                id,
                "--cluster",
                voters,
                "--join",
            ])
        };
        let Invocation::Run(options) = join("4").unwrap() else {
            panic!("not a run");
        };
        let cluster = options.cluster.unwrap();
        assert!(cluster.join);
        assert_eq!(cluster.initial_voters().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(cluster.cluster_addr(4), "127.0.0.1:17903".parse().unwrap());
        assert_eq!(
            join("2").unwrap_err(),
            "--join: this node (2) is among --cluster's voters; a joining node is not a member yet"
        );
        assert_eq!(
            parse(&["--join"]).unwrap_err(),
            "--join needs --cluster (the running cluster's voters)"
        );
        assert!(HELP.contains("--join"));
    }

    /// The cluster options of node 1 of a 3-node cluster started with `extra` flags.
    fn cluster_options(extra: &[&str]) -> crate::cluster::ClusterOptions {
        let cluster = "1=127.0.0.1:7900,2=127.0.0.1:7901,3=127.0.0.1:7902";
        let mut args = vec!["--data", "/tmp/x", "--node-id", "1", "--cluster", cluster];
        args.extend(extra);
        let Invocation::Run(options) = parse(&args).unwrap() else {
            panic!("not a run");
        };
        *options.cluster.unwrap()
    }

    #[test]
    fn the_snapshot_rate_defaults_to_500_mb_and_0_lifts_it() {
        let rate = |extra: &[&str]| cluster_options(extra).snapshot_rate_mb;
        assert_eq!(rate(&[]), 500);
        assert_eq!(rate(&["--snapshot-rate-mb", "0"]), 0);
        assert_eq!(rate(&["--snapshot-rate-mb", "40"]), 40);
        assert_eq!(
            parse(&["--snapshot-rate-mb", "fast"]).unwrap_err(),
            "--snapshot-rate-mb: 'fast' is not a valid number"
        );
        assert!(HELP.contains("--snapshot-rate-mb"));
    }

    #[test]
    fn the_catch_up_rate_defaults_to_16_mb_and_0_lifts_it() {
        let rate = |extra: &[&str]| cluster_options(extra).catch_up_rate_mb;
        assert_eq!(rate(&[]), 16);
        assert_eq!(rate(&["--catch-up-rate-mb", "0"]), 0);
        assert_eq!(rate(&["--catch-up-rate-mb=40"]), 40);
        assert_eq!(
            parse(&["--catch-up-rate-mb", "-1"]).unwrap_err(),
            "--catch-up-rate-mb: '-1' is not a valid number"
        );
        assert!(HELP.contains("--catch-up-rate-mb"));
    }

    #[test]
    fn a_follower_offloads_flushes_of_64_entries_unless_told() {
        let offload = |extra: &[&str]| cluster_options(extra).flush_offload_entries;
        assert_eq!(offload(&[]), 64);
        assert_eq!(offload(&["--raft-flush-offload", "1"]), 1);
        assert_eq!(
            parse(&["--raft-flush-offload", "0"]).unwrap_err(),
            "--raft-flush-offload: must be at least 1"
        );
        assert!(HELP.contains("--raft-flush-offload"));
    }

    #[test]
    fn the_log_kept_for_followers_defaults_to_256_mb() {
        let kept = |extra: &[&str]| cluster_options(extra).retain_mb;
        assert_eq!(kept(&[]), 256);
        assert_eq!(kept(&["--raft-retain-mb", "0"]), 0);
        assert_eq!(kept(&["--raft-retain-mb=1024"]), 1024);
        assert_eq!(
            parse(&["--raft-retain-mb", "1G"]).unwrap_err(),
            "--raft-retain-mb: '1G' is not a valid number"
        );
        assert!(HELP.contains("--raft-retain-mb"));
    }

    #[test]
    fn cluster_peers_override_what_a_node_dials() {
        let cluster = "1=127.0.0.1:7900,2=127.0.0.1:7901,3=127.0.0.1:7902";
        let base = ["--data", "/tmp/x", "--node-id", "1", "--cluster", cluster];
        let with = |peers: &str| {
            let mut args = base.to_vec();
            args.extend(["--cluster-peers", peers]);
            parse(&args)
        };
        let Invocation::Run(options) = with("2=127.0.0.1:7941").unwrap() else {
            panic!("not a run");
        };
        let cluster = options.cluster.unwrap();
        assert_eq!(cluster.dial_addr(2), "127.0.0.1:7941".parse().unwrap());
        assert_eq!(cluster.dial_addr(3), "127.0.0.1:17902".parse().unwrap());
        assert_eq!(cluster.cluster_addr(2), "127.0.0.1:17901".parse().unwrap());
        assert_eq!(
            with("1=127.0.0.1:7941").unwrap_err(),
            "--cluster-peers: '1' is not another member's id"
        );
        assert_eq!(
            with("2=x").unwrap_err(),
            "--cluster-peers: 'x' is not <ip>:<port>"
        );
        assert_eq!(
            parse(&["--cluster-peers", "2=127.0.0.1:1"]).unwrap_err(),
            "--cluster-peers needs --cluster"
        );
        assert!(HELP.contains("--cluster-peers"));
    }
}
