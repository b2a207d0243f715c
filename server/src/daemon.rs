//! The daemon's life: open the engine, bind, print the startup line, serve until SIGINT or
//! SIGTERM, then stop accepting, finish in-flight requests, flush the engine and return.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flin_engine::{Config, Engine};
use flin_net::{Server, ServerConfig};

use crate::config::Options;
use crate::context::Shared;
use crate::service::KvService;

/// How often the watcher thread looks at the signal flag.
const SIGNAL_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Runs the daemon until a signal stops it.
pub fn run(options: Options) -> Result<(), String> {
    crate::signal::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let mut config = match &options.data {
        Some(dir) => Config::directory(dir),
        None => Config::memory(),
    }
    .durability(options.fsync)
    .segment_bytes(options.segment_bytes);
    config.compaction.interval_ms = options.compaction_interval_ms;
    let engine = Engine::open(config).map_err(|e| format!("cannot open the engine: {e}"))?;
    let report = engine.recovery_report();
    let data = options
        .data
        .as_ref()
        .map_or("(memory)".to_string(), |d| d.display().to_string());
    let keys = report.keys;
    let recovery_ms = report.duration.as_secs_f64() * 1000.0;

    let shared = Arc::new(Shared::new(engine.clone(), options.clone()));
    let mut server_config = ServerConfig::new(SocketAddr::new(options.bind, options.port));
    server_config.threads = options.threads;
    server_config.max_clients = options.max_clients;
    let seconds = |n: u64| (n > 0).then(|| Duration::from_secs(n));
    server_config.idle_timeout = seconds(options.timeout_seconds);
    server_config.request_timeout = seconds(options.request_timeout_seconds);
    server_config.output_buffer_limit_bytes = options.output_buffer_limit_bytes;
    server_config.max_request_memory_bytes =
        (options.max_request_memory_bytes > 0).then_some(options.max_request_memory_bytes);
    let server = Server::bind(server_config, Arc::new(KvService::new(shared)))
        .map_err(|e| format!("cannot listen on {}:{}: {e}", options.bind, options.port))?;
    // One line, flushed at once: tests and operators read the bound address from it.
    println!(
        "flin-server {} data={data} fsync={:?} keys_recovered={keys} recovery_ms={recovery_ms:.1} listening={}",
        env!("CARGO_PKG_VERSION"),
        options.fsync,
        server.local_addr()
    );

    let shutdown = server.shutdown_handle();
    let watcher = std::thread::Builder::new()
        .name("flin-signals".into())
        .spawn(move || {
            while !crate::signal::stop_requested() && !shutdown.is_shutdown() {
                std::thread::sleep(SIGNAL_POLL_INTERVAL);
            }
            shutdown.shutdown();
        })
        .map_err(|e| format!("cannot start the signal watcher: {e}"))?;
    let served = server.run();
    let _ = watcher.join();
    let flushed = engine.flush();
    served.map_err(|e| format!("event loop failed: {e}"))?;
    flushed.map_err(|e| format!("final flush failed: {e}"))?;
    eprintln!("flin-server: stopped cleanly");
    Ok(())
}
