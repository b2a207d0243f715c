//! flin-bench: a load generator for Flin (and anything that speaks RESP), like redis-benchmark,
//! for the binary protocol and RESP. See `flin-bench --help` and docs/benchmarks.md.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use flin_benches::load::document::{self, Collection, LOAD_BATCH_DOCUMENTS};
use flin_benches::load::report;
use flin_benches::load::workload::{
    QueueWorkload, BENCH_COLLECTION, BENCH_INSERT_COLLECTION, BENCH_QUEUE, BENCH_TOPIC,
};
use flin_benches::load::{probe, run, Protocol, RunConfig, Workload};

/// A count-bounded run still stops after this long, so no run is unbounded in time.
const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(300);

const HELP: &str = "\
flin-bench: load generator for Flin's binary protocol and RESP (like redis-benchmark)

USAGE:
    flin-bench [FLAGS]

FLAGS:
    -h, --host <HOST>          server host (default 127.0.0.1)
    -p, --port <PORT>          server port (default 7380)
        --protocol <P>         binary (default) or resp
    -a, --password <PASS>      authenticate every connection
    -c, --connections <N>      connections (default 50)
        --threads <N>          client threads sharing the connections (default 1)
    -P, --pipeline <N>         requests in flight per connection, written together (default 1)
    -n, --requests <N>         requests per workload (default 100000; an MSET counts once)
        --duration <SECS>      run each workload this long instead of -n (with -n: whichever
                               ends first); a count-bounded run stops after 300 s anyway
    -r, --keyspace <N>         keys are key:000000000000 .. key:<N-1>, uniformly random
                               (default 1000000)
    -d, --value-size <BYTES>   value size (default 3, as redis-benchmark)
    -t, --workload <LIST>      comma-separated, run in order (default set,get):
                               set, get, incr, mixed[:GET%] (default 50),
                               mset[:KEYS] (default 10), mget[:KEYS] (default 10),
                               qpush (QUEUE.PUSH of -d bytes to the queue flin-bench, which
                               is declared first), qpop[:N] (QUEUE.POP COUNT N NOACK, default 1;
                               rates count messages; with -n, the queue must hold them
                               all, or the run is refused); subscribers, acks and
                               end-to-end latency: queue-bench;
                               spub (STREAM.PUBLISH of -d bytes to the topic flin-bench,
                               created first with one partition), smpub[:N] (STREAM.MPUBLISH
                               VALUES of N records, default 1000; rates count records);
                               fetch, group consume, end-to-end latency and the peers:
                               stream-bench;
                               documents (about 1 KB of JSON each; the field k is indexed
                               first, DOC.INDEX): dinsert[:N] (DOC.INSERT of N documents
                               into the collection flin-bench-inserts, default 1, the
                               server assigning _ids; rates count documents), and, on the
                               collection flin-bench holding documents 0..keyspace (loaded
                               first, untimed, if missing):
                               dget (DOC.GET by _id), dfind (equality on k), drange (a
                               range of k, SORT k 1 LIMIT 10), dinc (DOC.UPDATE of an _id
                               with $inc of k), dagg (DOC.AGGREGATE, $group by city with
                               $sum: a pass over the collection, so keep -r small);
                               the PostgreSQL comparison: doc-bench
        --allow-unindexed      run dfind, drange and dinc even if the server refuses
                               DOC.INDEX (they are reported as failed otherwise)
        --seed <N>             key generator seed (default 1)
        --server-pid <PID>     report the CPU time this process (the server, on this machine)
                               used during each workload, per key
        --json                 print the results as one JSON document on stdout
    -q, --quiet                no progress line on stderr
        --help                 print this help
";

/// One RESP command on a connection of its own (AUTH first when a password is set); the
/// first line of its reply.
fn resp_call(config: &RunConfig, args: &[&[u8]]) -> Result<String, String> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect_timeout(&config.addr, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    if let Some(password) = &config.password {
        flin_net::resp::encode_command(&mut out, &[b"AUTH".as_slice(), password.as_bytes()]);
    }
    flin_net::resp::encode_command(&mut out, args);
    (&stream).write_all(&out).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if config.password.is_some() {
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        line.clear();
    }
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    match line.starts_with('-') {
        true => Err(line.trim_end().to_string()),
        false => Ok(line.trim_end().to_string()),
    }
}

/// Ready messages in the bench queue.
fn bench_queue_len(config: &RunConfig) -> Result<u64, String> {
    let line = resp_call(config, &[b"QUEUE.LEN", BENCH_QUEUE])?;
    line.trim_start_matches(':')
        .parse()
        .map_err(|_| format!("QUEUE.LEN replied {line}"))
}

struct Invocation {
    config: RunConfig,
    workloads: Vec<Workload>,
    json: bool,
    allow_unindexed: bool,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Invocation>, String> {
    let mut host = "127.0.0.1".to_string();
    let mut port: u16 = 7380;
    let mut protocol = Protocol::Binary;
    let mut password = None;
    let mut connections = 50usize;
    let mut threads = 1usize;
    let mut pipeline = 1usize;
    let mut requests: Option<u64> = None;
    let mut duration: Option<Duration> = None;
    let mut keyspace = 1_000_000u64;
    let mut value_bytes = 3usize;
    let mut workloads = vec![Workload::parse("set")?, Workload::parse("get")?];
    let mut seed = 1u64;
    let mut json = false;
    let mut quiet = false;
    let mut server_pid = None;
    let mut allow_unindexed = false;

    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_string(), Some(value.to_string()))
            }
            _ => (flag, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value (see --help)"))
        };
        match flag.as_str() {
            "--help" => return Ok(None),
            "-h" | "--host" => host = value()?,
            "-p" | "--port" => port = number(&flag, &value()?)?,
            "--protocol" => protocol = Protocol::parse(&value()?)?,
            "-a" | "--password" => password = Some(value()?),
            "-c" | "--connections" => connections = positive(&flag, &value()?)?,
            "--threads" => threads = positive(&flag, &value()?)?,
            "-P" | "--pipeline" => pipeline = positive(&flag, &value()?)?,
            "-n" | "--requests" => requests = Some(positive(&flag, &value()?)?),
            "--duration" => {
                let text = value()?;
                let seconds: f64 = text
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| {
                        format!("--duration: '{text}' is not a positive number of seconds")
                    })?;
                duration = Some(Duration::from_secs_f64(seconds));
            }
            "-r" | "--keyspace" => keyspace = positive(&flag, &value()?)?,
            "-d" | "--value-size" => value_bytes = number(&flag, &value()?)?,
            "-t" | "--workload" => {
                workloads = value()?
                    .split(',')
                    .map(Workload::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--seed" => seed = number(&flag, &value()?)?,
            "--server-pid" => server_pid = Some(number(&flag, &value()?)?),
            "--json" => json = true,
            "--allow-unindexed" => allow_unindexed = true,
            "-q" | "--quiet" => quiet = true,
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    if requests.is_none() && duration.is_none() {
        requests = Some(100_000);
    }
    let addr = resolve(&host, port)?;
    Ok(Some(Invocation {
        config: RunConfig {
            addr,
            protocol,
            password,
            workload: workloads[0],
            connections,
            threads: threads.min(connections),
            pipeline,
            requests,
            duration: duration.unwrap_or(DEFAULT_TIME_LIMIT),
            keyspace,
            value_bytes,
            seed,
            progress: !quiet,
            server_pid,
        },
        workloads,
        json,
        allow_unindexed,
    }))
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: '{text}' is not a valid number"))
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    flag: &str,
    text: &str,
) -> Result<T, String> {
    let value: T = number(flag, text)?;
    if value <= T::default() {
        return Err(format!("{flag}: must be at least 1"));
    }
    Ok(value)
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolved to no address"))
}

/// The document workloads' setup: the index on `k` of both collections (DOC.INDEX; an index
/// that exists already is fine) and, when a workload reads them, documents `0..keyspace`.
/// Returns the server's refusal of DOC.INDEX, if it refused: the workloads whose point is the
/// index then fail.
fn prepare_documents(config: &RunConfig, workloads: &[Workload]) -> Result<Option<String>, String> {
    let mut options = flin_net::ClientOptions::new().read_timeout(Some(Duration::from_secs(120)));
    if let Some(password) = &config.password {
        options = options.password(password.as_bytes());
    }
    let client = flin_net::Client::connect_with(config.addr, options).map_err(|e| e.to_string())?;
    let mut index_refusal = None;
    for collection in [BENCH_COLLECTION, BENCH_INSERT_COLLECTION] {
        match client.command(&document::index_command(collection)) {
            Ok(_) => {}
            Err(flin_net::ClientError::Server(refusal))
                if refusal.to_string().contains("exists") => {}
            Err(flin_net::ClientError::Server(refusal)) => {
                index_refusal.get_or_insert(refusal.to_string());
            }
            Err(error) => return Err(format!("DOC.INDEX: {error}")),
        }
    }
    let reads = workloads
        .iter()
        .any(|w| matches!(w, Workload::Document(d) if d.needs_documents()));
    if reads {
        load_documents(&client, config.keyspace)?;
    }
    Ok(index_refusal)
}

/// Inserts documents `0..keyspace` with their `_id`s, unless the first and the last are there
/// (a batch whose `_id`s are there already is refused whole, and skipped).
fn load_documents(client: &flin_net::Client, keyspace: u64) -> Result<(), String> {
    let db = client.db();
    let collection_name = std::str::from_utf8(BENCH_COLLECTION).expect("an ASCII name");
    let present = |id: u64| {
        db.get(collection_name, &id.to_string())
            .map(|found| found.is_some())
            .map_err(|e| format!("DOC.GET: {e}"))
    };
    if present(0)? && present(keyspace - 1)? {
        return Ok(());
    }
    eprintln!("flin-bench: loading documents 0..{keyspace} (untimed)");
    let collection = Collection::new(keyspace);
    let mut args = Vec::new();
    for first in (0..keyspace).step_by(LOAD_BATCH_DOCUMENTS as usize) {
        let count = LOAD_BATCH_DOCUMENTS.min(keyspace - first);
        document::insert_command(&collection, BENCH_COLLECTION, first, count, true, &mut args);
        match db.insert(collection_name, &args[1..]) {
            Ok(_) => {}
            Err(flin_net::ClientError::Server(refusal))
                if refusal.to_string().contains("duplicate key") => {}
            Err(error) => return Err(format!("DOC.INSERT: {error}")),
        }
    }
    Ok(())
}

/// Why `workload` cannot be measured here, if it cannot: a document workload whose point is
/// the index when the server refused it, or whose command the server refuses.
fn unmeasurable(
    config: &RunConfig,
    workload: Workload,
    index_refusal: Option<&str>,
    allow_unindexed: bool,
) -> Option<String> {
    let Workload::Document(document) = workload else {
        return None;
    };
    if let (true, Some(refusal), false) = (document.needs_index(), index_refusal, allow_unindexed) {
        return Some(format!(
            "it needs the index on k, and DOC.INDEX was refused: {refusal} (--allow-unindexed runs it without)"
        ));
    }
    probe(config).err().map(|e| e.to_string())
}

fn main() {
    let invocation = match parse_args(std::env::args().skip(1)) {
        Ok(Some(invocation)) => invocation,
        Ok(None) => {
            print!("{HELP}");
            return;
        }
        Err(message) => {
            eprintln!("flin-bench: {message}");
            std::process::exit(2);
        }
    };
    let mut config = invocation.config;
    if !invocation.json {
        println!("flin-bench: {}", report::describe(&config));
        println!("machine: {}", flin_benches::machine_line());
    }
    if invocation
        .workloads
        .iter()
        .any(|w| matches!(w, Workload::Queue(_)))
    {
        if let Err(error) = resp_call(&config, &[b"QUEUE.DECLARE", BENCH_QUEUE]) {
            eprintln!("flin-bench: cannot declare the queue: {error}");
            std::process::exit(1);
        }
    }
    if invocation
        .workloads
        .iter()
        .any(|w| matches!(w, Workload::Stream(_)))
    {
        // Created once; an existing topic (a second run on the same server) is fine.
        if let Err(error) = resp_call(
            &config,
            &[b"STREAM.CREATE", BENCH_TOPIC, b"PARTITIONS", b"1"],
        ) {
            if !error.contains("already exists") {
                eprintln!("flin-bench: cannot create the topic: {error}");
                std::process::exit(1);
            }
        }
    }
    let mut index_refusal = None;
    if invocation
        .workloads
        .iter()
        .any(|w| matches!(w, Workload::Document(_)))
    {
        match prepare_documents(&config, &invocation.workloads) {
            Ok(refusal) => index_refusal = refusal,
            Err(error) => {
                eprintln!("flin-bench: cannot set the document collection up: {error}");
                std::process::exit(1);
            }
        }
        if let Some(refusal) = &index_refusal {
            eprintln!(
                "flin-bench: DOC.INDEX was refused ({refusal}): the collection has no index on k"
            );
        }
    }
    let mut results = Vec::new();
    let mut failed = Vec::new();
    for workload in invocation.workloads {
        config.workload = workload;
        if let Some(reason) = unmeasurable(
            &config,
            workload,
            index_refusal.as_deref(),
            invocation.allow_unindexed,
        ) {
            eprintln!("flin-bench: {workload} FAILED: {reason}");
            failed.push(workload);
            continue;
        }
        if matches!(workload, Workload::Document(d) if d.needs_index()) && index_refusal.is_some() {
            eprintln!("flin-bench: {workload} runs WITHOUT the index on k (--allow-unindexed)");
        }
        // A pop's rate counts the messages asked for: it is only a rate of messages while the
        // queue holds them all.
        if let (Workload::Queue(QueueWorkload::Pop { count }), Some(requests)) =
            (workload, config.requests)
        {
            match bench_queue_len(&config) {
                Ok(len) if len >= requests * count as u64 => {}
                Ok(len) => {
                    eprintln!(
                        "flin-bench: {workload} with -n {requests} needs {} messages in the queue and it holds {len}: push more first (qpush with a larger -n)",
                        requests * count as u64
                    );
                    std::process::exit(1);
                }
                Err(error) => {
                    eprintln!("flin-bench: QUEUE.LEN: {error}");
                    std::process::exit(1);
                }
            }
        }
        match run(config.clone()) {
            Ok(result) => {
                if !invocation.json {
                    println!("{}", report::text(&result));
                }
                results.push(result);
            }
            Err(error) => {
                eprintln!("flin-bench: {workload} FAILED: {error}");
                failed.push(workload);
            }
        }
    }
    if invocation.json {
        let document = report::json_document(&config, &results);
        println!("{}", serde_json::to_string_pretty(&document).expect("JSON"));
    }
    if !failed.is_empty() {
        let names: Vec<String> = failed.iter().map(Workload::to_string).collect();
        eprintln!("flin-bench: failed: {}", names.join(", "));
        std::process::exit(1);
    }
}
