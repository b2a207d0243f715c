//! The daemon's life: open the engine, bind, print the startup line, serve until SIGINT or
//! SIGTERM, then stop accepting, finish in-flight requests, flush the engine and return.
//!
//! [`Daemon::start`] does everything up to serving, on any engine configuration: the binary
//! passes the one its flags describe, and tests pass one on the simulated disk, to make the
//! disk fail under a running server.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flin_engine::{Config, Durability, Engine, Storage};
use flin_net::{Server, ServerConfig, ShutdownHandle};

use crate::admin::{AdminServer, AdminState};
use crate::config::Options;
use crate::context::Shared;
use crate::gates::DurableGates;
use crate::service::KvService;

/// How often the queues' timer returns timed-out deliveries and expires messages.
pub const QUEUE_TICK: Duration = Duration::from_millis(50);

/// How often the watcher thread looks at the signal flag.
const SIGNAL_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A server bound and ready to serve.
pub struct Daemon {
    pub engine: Engine,
    pub shared: Arc<Shared>,
    server: Server,
    gates: Option<Arc<DurableGates>>,
    /// The raft thread of a cluster node.
    raft: Option<crate::cluster::driver::Driver>,
}

impl Daemon {
    /// The engine configuration the flags describe.
    pub fn engine_config(options: &Options) -> Config {
        let mut config = match &options.data {
            Some(dir) => Config::directory(dir),
            None => Config::memory(),
        }
        .durability(options.fsync)
        .segment_bytes(options.segment_bytes)
        .logger(crate::log::engine_logger());
        config.compaction.interval_ms = options.compaction_interval_ms;
        config
    }

    /// Opens the engine with `engine_config` (recovering its data) and binds the port
    /// `options` name. Under `--fsync always` on disk, replies wait for their writes to be
    /// durable (`gates`).
    pub fn start(options: &Options, engine_config: Config) -> Result<Daemon, String> {
        let on_disk = !matches!(engine_config.storage, Storage::Memory);
        let always = engine_config.durability == Durability::Always;
        let mut installed = None;
        let (engine_config, hard_state) = match &options.cluster {
            Some(_) => {
                let dir = options
                    .data
                    .as_ref()
                    .ok_or("--cluster needs a data directory")?
                    .join("cluster");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                // A snapshot the raft thread installed before re-executing this process is
                // swapped in before anything reads the directory (cluster::snapshot::install).
                let data = options.data.as_ref().expect("checked above");
                installed = crate::cluster::snapshot::install::finish_install(data, &dir)
                    .map_err(|e| format!("cannot install the staged snapshot: {e}"))?;
                if let Some((index, term)) = installed {
                    crate::log::info(
                        "cluster",
                        &format!("opened the snapshot through {index} (term {term}) installed before this restart"),
                    );
                }
                let (file, state) = flin_replication::hard_state::HardStateFile::open(&dir)
                    .map_err(|e| format!("cannot read the raft hard state: {e}"))?;
                (engine_config.replicated(state.commit), Some((file, state)))
            }
            None => (engine_config, None),
        };
        let (engine, observers) = crate::context::open_engine(engine_config)?;
        let gates = match on_disk && always && options.cluster.is_none() {
            true => Some(
                DurableGates::start(engine.clone())
                    .map_err(|e| format!("cannot start the flusher thread: {e}"))?,
            ),
            false => None,
        };
        let mut shared = Shared::open(engine.clone(), observers, options.clone())?;
        shared.gates = gates.clone();
        let shared = Arc::new(shared);
        let cluster = options
            .cluster
            .as_ref()
            .map(|cluster| Arc::new(crate::cluster::Cluster::new((**cluster).clone())));
        if let Some(cluster) = &cluster {
            shared.store.attach_cluster(cluster.clone());
            if let Some((index, _)) = installed {
                cluster
                    .snapshot_installed_index
                    .store(index, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let mut server_config = ServerConfig::new(SocketAddr::new(options.bind, options.port));
        server_config.threads = options.threads;
        server_config.max_clients = options.max_clients;
        let seconds = |n: u64| (n > 0).then(|| Duration::from_secs(n));
        server_config.idle_timeout = seconds(options.timeout_seconds);
        server_config.request_timeout = seconds(options.request_timeout_seconds);
        server_config.output_buffer_limit_bytes = options.output_buffer_limit_bytes;
        server_config.max_request_memory_bytes =
            (options.max_request_memory_bytes > 0).then_some(options.max_request_memory_bytes);
        if let Some(gates) = &gates {
            server_config.gates = Some(gates.clone());
        }
        if let Some(cluster) = &cluster {
            server_config.gates = Some(cluster.gates.clone());
        }
        server_config.io = shared.io.clone();
        let server = Server::bind(server_config, Arc::new(KvService::new(shared.clone())))
            .map_err(|e| format!("cannot listen on {}:{}: {e}", options.bind, options.port))?;
        let raft = match (cluster, hard_state) {
            (Some(cluster), Some(hard_state)) => Some(crate::cluster::driver::Driver::start(
                cluster,
                engine.clone(),
                hard_state,
                always && on_disk,
                options.bind,
                crate::cluster::driver::Hooks {
                    on_lead: {
                        let shared = shared.clone();
                        Box::new(move || {
                            shared
                                .queues
                                .reload(&shared.store)
                                .map_err(|e| format!("queues: {e}"))?;
                            finish_documents_when_writable(shared.clone());
                            Ok(())
                        })
                    },
                    on_removed: {
                        let shutdown = server.shutdown_handle();
                        Box::new(move || shutdown.shutdown())
                    },
                },
                Arc::new(|level, line: &str| crate::log::log(level, "cluster", line)),
            )?),
            _ => None,
        };
        Ok(Daemon {
            engine,
            shared,
            server,
            gates,
            raft,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.server.shutdown_handle()
    }

    /// Serves until the shutdown handle is used, then stops the flusher and flushes the
    /// engine once more. A timer thread runs the queues' clock work (visibility timeouts,
    /// expiry at the head) every [`QUEUE_TICK`].
    pub fn serve(self) -> Result<(), String> {
        let shutdown = self.server.shutdown_handle();
        let shared = self.shared.clone();
        let timer = std::thread::Builder::new()
            .name("flin-queue-timer".into())
            .spawn(move || {
                while !shutdown.is_shutdown() {
                    std::thread::sleep(QUEUE_TICK);
                    // A failing tick fails again every tick: the log's repeat filter writes
                    // it once a minute.
                    if !shared.store.accepts_writes() {
                        // A cluster's follower: the leader runs the models' clocks.
                        continue;
                    }
                    if let Err(error) = shared.queues.tick(&shared.store, shared.now_ms()) {
                        crate::log::error("queue", &format!("timer: {error}"));
                    }
                    if let Err(error) = shared.streams.tick(&shared.store, shared.now_ms()) {
                        crate::log::error("stream", &format!("timer: {error}"));
                    }
                }
            })
            .map_err(|e| format!("cannot start the queue timer: {e}"))?;
        let served = self.server.run();
        let _ = timer.join();
        if let Some(raft) = self.raft {
            raft.stop();
        }
        if let Some(gates) = &self.gates {
            gates.stop();
        }
        let flushed = self.engine.flush();
        served.map_err(|e| format!("event loop failed: {e}"))?;
        flushed.map_err(|e| format!("final flush failed: {e}"))
    }
}

/// Runs the daemon until a signal stops it.
pub fn run(options: Options) -> Result<(), String> {
    crate::log::init(options.log_level, options.log_format);
    crate::log::info("server", &startup_config(&options));
    crate::signal::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // The admin port listens before recovery, so `/health` answers and `/ready` says 503
    // while the engine opens.
    let admin_state = Arc::new(AdminState::new(options.requirepass.clone()));
    let admin = match options.admin_port {
        Some(port) => Some(AdminServer::start(
            SocketAddr::new(options.admin_bind, port),
            admin_state.clone(),
        )?),
        None => None,
    };
    let daemon = Daemon::start(&options, Daemon::engine_config(&options))?;
    let report = daemon.engine.recovery_report();
    let data = options
        .data
        .as_ref()
        .map_or("(memory)".to_string(), |d| d.display().to_string());
    let admin_addr = admin
        .as_ref()
        .map_or("off".to_string(), |a| a.local_addr().to_string());
    admin_state.serving(daemon.shared.clone(), report.duration);
    crate::log::info("engine", &recovery_summary(report));
    crate::log::info(
        "server",
        &format!("listening on {}, admin {admin_addr}", daemon.local_addr()),
    );
    // One line, flushed at once: tests and operators read the bound addresses from it. A
    // failed write is ignored, not a panic as println!'s: a node that re-executed itself to
    // open a snapshot (cluster::snapshot) prints it again, and whoever read the first one
    // may have closed the pipe.
    let _ = writeln!(
        std::io::stdout(),
        "flin-server {} data={data} fsync={:?} keys_recovered={} recovery_ms={:.1} listening={} admin={admin_addr}",
        env!("CARGO_PKG_VERSION"),
        options.fsync,
        report.keys,
        report.duration.as_secs_f64() * 1000.0,
        daemon.local_addr()
    );
    let shutdown = daemon.shutdown_handle();
    let stopping = admin_state.clone();
    let watcher = std::thread::Builder::new()
        .name("flin-signals".into())
        .spawn(move || {
            while !crate::signal::stop_requested() && !shutdown.is_shutdown() {
                std::thread::sleep(SIGNAL_POLL_INTERVAL);
            }
            // `/ready` says 503 from the moment shutdown begins, so a load balancer stops
            // sending work while in-flight requests finish.
            stopping.stopping();
            shutdown.shutdown();
        })
        .map_err(|e| format!("cannot start the signal watcher: {e}"))?;
    let served = daemon.serve();
    if let Some(admin) = admin {
        admin.stop();
    }
    let _ = watcher.join();
    served?;
    crate::log::info("server", "stopped cleanly");
    Ok(())
}

/// The startup event's message: every setting (the password only as set or not).
fn startup_config(options: &Options) -> String {
    let data = options
        .data
        .as_ref()
        .map_or("(memory)".to_string(), |d| d.display().to_string());
    let admin = options.admin_port.map_or("off".to_string(), |port| {
        format!("{}:{port}", options.admin_bind)
    });
    format!(
        "flin-server {} starting: bind={}:{} data={data} fsync={:?} threads={} maxclients={} \
         requirepass={} timeout_s={} request_timeout_s={} output_buffer_limit={} \
         max_request_memory={} segment_bytes={} compaction_interval_ms={} admin={admin} \
         node_id={} log_level={} log_format={:?}",
        env!("CARGO_PKG_VERSION"),
        options.bind,
        options.port,
        options.fsync,
        options.threads,
        options.max_clients,
        if options.requirepass.is_some() {
            "set"
        } else {
            "unset"
        },
        options.timeout_seconds,
        options.request_timeout_seconds,
        options.output_buffer_limit_bytes,
        options.max_request_memory_bytes,
        options.segment_bytes,
        options.compaction_interval_ms,
        options.node_id,
        options.log_level.name(),
        options.log_format,
    )
}

/// The recovery report as one event's message.
fn recovery_summary(report: &flin_engine::RecoveryReport) -> String {
    let torn = report.torn_tail.as_ref().map_or("none".to_string(), |t| {
        format!("{} at byte {} ({})", t.path.display(), t.offset, t.reason)
    });
    format!(
        "recovered in {:.1} ms: keys={} last_seq={} segments={} from_hints={} scanned={} \
         records_scanned={} torn_tail={torn} bad_hints={} finished_compaction={}",
        report.duration.as_secs_f64() * 1000.0,
        report.keys,
        report.last_seq,
        report.segments,
        report.segments_from_hints,
        report.segments_scanned,
        report.records_scanned,
        report.bad_hints.len(),
        report.finished_compaction,
    )
}

/// On a node that just became its cluster's leader: finishes the document index builds and
/// drops an earlier leader left unfinished (its failover interrupted them), as a lone node
/// does at open. On a thread of its own, since a build walks a whole collection and the raft
/// thread that calls this must keep ticking; it starts once the node takes writes (the raft
/// thread marks it writable after this returns) and gives up if that does not happen within
/// 10 s (another node leads: its own turn will come). One at a time: a second leadership in
/// quick succession leaves the work to the running one.
fn finish_documents_when_writable(shared: Arc<Shared>) {
    static RUNNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    use std::sync::atomic::Ordering;
    if RUNNING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("flin-doc-finish".into())
        .spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !shared.store.accepts_writes() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if shared.store.accepts_writes() {
                if let Err(error) = shared.docs.finish_pending(&shared.store) {
                    crate::log::error(
                        "doc",
                        &format!(
                            "cannot finish an earlier leader's index builds and drops: {error}"
                        ),
                    );
                }
            }
            RUNNING.store(false, Ordering::Release);
        });
    if spawned.is_err() {
        RUNNING.store(false, Ordering::Release);
        crate::log::error("doc", "cannot start the thread that finishes index builds");
    }
}
