//! flin-bench's driver against the real key-value service, in process (memory engine, port 0 on
//! 127.0.0.1): every workload over both protocols sends exactly the requests it was asked for,
//! records one latency per request, and counts refusals; the keys it wrote are there afterwards.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flin_benches::load::{run, Protocol, RunConfig, Workload};
use flin_engine::Config;
use flin_net::{Client, Server, ServerConfig, ShutdownHandle};
use flin_server::config::Options;
use flin_server::context::Shared;
use flin_server::service::KvService;

/// An in-process server; dropping it stops the loops and joins them.
struct InProcess {
    addr: SocketAddr,
    shutdown: ShutdownHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    fn start() -> InProcess {
        let shared = Arc::new(Shared::new(Config::memory(), Options::default()));
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
        config.threads = 2;
        let server = Server::bind(config, Arc::new(KvService::new(shared))).unwrap();
        let addr = server.local_addr();
        let shutdown = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run().unwrap());
        InProcess {
            addr,
            shutdown,
            thread: Some(thread),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn config(addr: SocketAddr, protocol: Protocol, workload: &str, requests: u64) -> RunConfig {
    RunConfig {
        addr,
        protocol,
        password: None,
        workload: Workload::parse(workload).unwrap(),
        connections: 3,
        threads: 2,
        pipeline: 4,
        requests: Some(requests),
        duration: Duration::from_secs(60),
        keyspace: 500,
        value_bytes: 10,
        seed: 1,
        progress: false,
        server_pid: None,
    }
}

#[test]
fn every_workload_sends_its_requests_over_both_protocols() {
    let server = InProcess::start();
    for protocol in [Protocol::Binary, Protocol::Resp] {
        // 1001 is not a multiple of the pipeline depth: the last batch is a short one.
        for workload in ["set", "get", "mixed:70", "mset:7", "mget:5"] {
            let result = run(config(server.addr, protocol, workload, 1001)).unwrap();
            assert_eq!(result.requests, 1001, "{protocol} {workload}");
            let keys_per_request = result.workload.keys_per_request() as u64;
            assert_eq!(result.keys, 1001 * keys_per_request);
            assert_eq!(result.latency_ns.len(), 1001, "one latency per request");
            assert_eq!(
                result.refused, 0,
                "{protocol} {workload}: {:?}",
                result.first_refusal
            );
        }
    }
    // What the SETs wrote is there: keys of the benchmark's shape, within the keyspace.
    let client = Client::connect(server.addr).unwrap();
    let keys: Vec<Vec<u8>> = client
        .kv()
        .scan()
        .pattern("key:*")
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!keys.is_empty() && keys.len() <= 500, "{} keys", keys.len());
    assert_eq!(client.kv().get(&keys[0]).unwrap(), Some(vec![b'x'; 10]));
}

#[test]
fn refusals_are_counted_with_the_first_message() {
    let server = InProcess::start();
    let one_key = |workload, requests| RunConfig {
        keyspace: 1,
        ..config(server.addr, Protocol::Binary, workload, requests)
    };
    run(one_key("set", 1)).unwrap();
    for protocol in [Protocol::Binary, Protocol::Resp] {
        // The one key holds "xxxxxxxxxx": INCR is refused each time.
        let result = run(RunConfig {
            protocol,
            ..one_key("incr", 100)
        })
        .unwrap();
        assert_eq!((result.requests, result.refused), (100, 100), "{protocol}");
        let message = result.first_refusal.unwrap();
        assert!(
            message.starts_with("ERR value is not an integer"),
            "{message}"
        );
    }
}

#[test]
fn a_time_bound_stops_a_run_without_a_count() {
    let server = InProcess::start();
    let mut config = config(server.addr, Protocol::Binary, "get", 1);
    config.requests = None;
    config.duration = Duration::from_millis(200);
    // The in-process server is this process: its CPU time is readable.
    config.server_pid = Some(std::process::id());
    let result = run(config).unwrap();
    assert!(result.requests > 0);
    assert!(result.server_cpu_seconds.is_some_and(|s| s >= 0.0));
    assert_eq!(result.latency_ns.len(), result.requests);
}

#[test]
fn an_unreachable_server_is_an_error() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let error = run(config(addr, Protocol::Resp, "set", 10)).unwrap_err();
    assert!(error.to_string().contains("network error"), "{error}");
}

#[test]
fn document_workloads_send_their_requests_over_both_protocols() {
    use flin_benches::load::document::{insert_command, Collection};
    use flin_benches::load::probe;
    use flin_benches::load::workload::BENCH_COLLECTION;

    let server = InProcess::start();
    // Documents 0..64 with their _ids, as flin-bench loads them before a read workload.
    let keyspace = 64;
    let mut args = Vec::new();
    insert_command(
        &Collection::new(keyspace),
        BENCH_COLLECTION,
        0,
        keyspace,
        true,
        &mut args,
    );
    let client = Client::connect(server.addr).unwrap();
    let collection = std::str::from_utf8(BENCH_COLLECTION).unwrap();
    assert_eq!(
        client.db().insert(collection, &args[1..]).unwrap().len(),
        64
    );
    let documents = |workload, protocol| RunConfig {
        keyspace,
        ..config(server.addr, protocol, workload, 101)
    };
    for protocol in [Protocol::Binary, Protocol::Resp] {
        // dfind, drange and dinc pass over the collection until DOC.INDEX exists: 64 documents
        // keep that quick.
        for workload in ["dinsert", "dinsert:5", "dget", "dfind", "drange", "dinc"] {
            probe(&documents(workload, protocol)).unwrap();
            let result = run(documents(workload, protocol)).unwrap();
            assert_eq!(result.requests, 101, "{protocol} {workload}");
            assert_eq!(
                result.refused, 0,
                "{protocol} {workload}: {:?}",
                result.first_refusal
            );
        }
        // DOC.AGGREGATE may not exist yet: then the probe says so with the server's words,
        // for flin-bench to report the workload failed.
        if let Err(error) = probe(&documents("dagg", protocol)) {
            assert!(
                error.to_string().contains("DOC.AGGREGATE"),
                "{protocol}: {error}"
            );
        }
    }
    // The inserts went to their own collection, in batches of 5: the read collection still
    // holds its 64 documents.
    let inserted = client.db().count("flin-bench-inserts", "{}").unwrap();
    // Per protocol: dinsert's 101 requests and its probe's one, and as many of dinsert:5.
    assert_eq!(inserted, 2 * (102 + 102 * 5));
    assert_eq!(client.db().count(collection, "{}").unwrap(), 64);
}
