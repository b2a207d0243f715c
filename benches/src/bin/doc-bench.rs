//! doc-bench: the document workloads against Flin (RESP, DOC.*) and PostgreSQL (a jsonb table,
//! the `postgres` crate), side by side, for `benches/doc-compare.sh` (docs/benchmarks.md,
//! "Documents (issue 13)").
//!
//! `doc-bench --workload LIST [--target flin|postgres|both] [options]`
//!
//! Both sides store the same documents (`flin_benches::load::document`: about 1 KB of JSON,
//! `_id` an integer) and answer the same questions, one statement per operation, from
//! `--connections` connections (one thread each, one request in flight each):
//!
//! | workload | Flin | PostgreSQL |
//! |---|---|---|
//! | `dinsert` | DOC.INSERT of one document | INSERT of one row |
//! | `dinsert:N` | DOC.INSERT of N documents | INSERT ... SELECT FROM unnest($1::text[]) of N rows |
//! | `dget` | DOC.GET by `_id` | SELECT by the `_id` expression |
//! | `dfind` | DOC.FIND `{"k": v}` | SELECT WHERE the `k` expression = v |
//! | `drange` | DOC.FIND of a range of `k`, SORT k 1 LIMIT 10 | the same range, ORDER BY, LIMIT 10 |
//! | `dinc` | DOC.UPDATE `{"_id": i}` `{"$inc": {"k": 1}}` | UPDATE ... jsonb_set(doc, '{k}', k + 1) |
//! | `dagg` | DOC.AGGREGATE `$group` by city, `$sum`s | SELECT city, sum, count GROUP BY city |
//!
//! PostgreSQL's table is `docbench (doc jsonb)` with a unique index on
//! `((doc->>'_id')::bigint)` and one on `((doc->>'k')::bigint)`; Flin's collection `docbench`
//! has its `_id` and DOC.INDEX on `k`. Documents travel as JSON text both ways (`$1::text::jsonb`
//! in, `doc::text` out).
//!
//! The inserts start from an empty collection and insert documents `0..` (`dinsert`:
//! `--inserts` of them; `dinsert:N`: `--documents` in batches of N, which leaves the
//! collection loaded). The other workloads need documents `0..--documents`: if the collection
//! holds another number, it is made again and loaded (untimed). They run `--operations`
//! operations (`dagg`: `--aggregations`), operation `i` asking for draw `mix(i)`, so both sides
//! get the same questions and the rows they return must add up to the same total (checked).
//! Before a PostgreSQL read: VACUUM ANALYZE, CHECKPOINT, and the EXPLAIN of the statement is
//! printed (a plan without an index where one is due is flagged).
//!
//! Each line reports operations/s (and documents/s for batched inserts), latency percentiles
//! (µs), the rows returned, and the server's CPU per operation: user + system time from
//! `/proc/<pid>/stat` around the run, over the server's process and its children (PostgreSQL
//! serves each connection from a process of its own), with `--flin-pid` / `--postgres-pid`.
//!
//! A workload whose command the server refuses (DOC.AGGREGATE before it exists, say) is
//! reported FAILED with the server's message, and so are `dfind`, `drange` and `dinc` on
//! Flin when DOC.INDEX is refused, unless `--allow-unindexed` (their lines are then marked).
//! The exit status is 1 if any workload failed.
//!
//! Options: `--host` (127.0.0.1), `--flin-port` (7420), `--postgres-port` (7421),
//! `--postgres-user` (postgres), `--connections` (8), `--documents` (100000), `--inserts`
//! (20000), `--operations` (50000), `--aggregations` (20), `--seconds` (60: every run stops
//! after this long, whatever its count), `--flin-pid`, `--postgres-pid`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flin_benches::crashtest::client::{Client as RespClient, Reply};
use flin_benches::load::document::{self, Collection, LOAD_BATCH_DOCUMENTS, RANGE_K_WIDTH};
use flin_benches::load::wire::encode_resp;
use flin_benches::load::workload::DocumentWorkload;
use flin_benches::load::{Op, Workload};
use hdrhistogram::Histogram;

/// Flin's collection and PostgreSQL's table.
const COLLECTION: &str = "docbench";
/// How long one request may take before the run fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest latency the histogram tells apart, in µs.
const LATENCY_MAX_US: u64 = 600_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Flin,
    Postgres,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Flin => "flin",
            Target::Postgres => "postgres",
        }
    }
}

#[derive(Clone, Debug)]
struct Args {
    targets: Vec<Target>,
    workloads: Vec<DocumentWorkload>,
    host: String,
    flin_port: u16,
    postgres_port: u16,
    postgres_user: String,
    connections: usize,
    documents: u64,
    inserts: u64,
    operations: u64,
    aggregations: u64,
    seconds: u64,
    flin_pid: Option<u32>,
    postgres_pid: Option<u32>,
    allow_unindexed: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            targets: vec![Target::Flin, Target::Postgres],
            workloads: Vec::new(),
            host: "127.0.0.1".into(),
            flin_port: 7420,
            postgres_port: 7421,
            postgres_user: "postgres".into(),
            connections: 8,
            documents: 100_000,
            inserts: 20_000,
            operations: 50_000,
            aggregations: 20,
            seconds: 60,
            flin_pid: None,
            postgres_pid: None,
            allow_unindexed: false,
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--allow-unindexed" {
            args.allow_unindexed = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || -> Result<u64, String> {
            value
                .replace('_', "")
                .parse()
                .map_err(|_| format!("{flag}: '{value}' is not a number"))
        };
        match flag.as_str() {
            "--target" => {
                args.targets = match value.as_str() {
                    "flin" => vec![Target::Flin],
                    "postgres" => vec![Target::Postgres],
                    "both" => vec![Target::Flin, Target::Postgres],
                    other => {
                        return Err(format!("--target: '{other}' is not flin, postgres or both"))
                    }
                }
            }
            "--workload" => {
                args.workloads = value
                    .split(',')
                    .map(|text| match Workload::parse(text)? {
                        Workload::Document(workload) => Ok(workload),
                        _ => Err(format!("{text} is not a document workload (dinsert[:N], dget, dfind, drange, dinc, dagg)")),
                    })
                    .collect::<Result<_, String>>()?;
            }
            "--host" => args.host = value,
            "--flin-port" => args.flin_port = number()? as u16,
            "--postgres-port" => args.postgres_port = number()? as u16,
            "--postgres-user" => args.postgres_user = value,
            "--connections" => args.connections = number()?.clamp(1, 1024) as usize,
            "--documents" => args.documents = number()?.max(1),
            "--inserts" => args.inserts = number()?.max(1),
            "--operations" => args.operations = number()?.max(1),
            "--aggregations" => args.aggregations = number()?.max(1),
            "--seconds" => args.seconds = number()?.max(1),
            "--flin-pid" => args.flin_pid = Some(number()? as u32),
            "--postgres-pid" => args.postgres_pid = Some(number()? as u32),
            other => {
                return Err(format!(
                    "unknown flag {other} (see the top of doc-bench.rs)"
                ))
            }
        }
    }
    if args.workloads.is_empty() {
        return Err(
            "--workload LIST is required (dinsert, dinsert:100, dget, dfind, drange, dinc, dagg)"
                .into(),
        );
    }
    Ok(args)
}

/// What one workload does, on either side: how many operations, and which documents an insert
/// operation writes.
#[derive(Clone, Copy, Debug)]
struct Plan {
    workload: DocumentWorkload,
    collection: Collection,
    operations: u64,
    /// Documents in all, for inserts (the last batch may be short).
    insert_documents: u64,
}

impl Plan {
    fn new(args: &Args, workload: DocumentWorkload) -> Plan {
        let collection = Collection::new(args.documents);
        let (operations, insert_documents) = match workload {
            DocumentWorkload::Insert { count: 1 } => (args.inserts, args.inserts),
            DocumentWorkload::Insert { count } => {
                (args.documents.div_ceil(count as u64), args.documents)
            }
            DocumentWorkload::Aggregate => (args.aggregations, 0),
            _ => (args.operations, 0),
        };
        Plan {
            workload,
            collection,
            operations,
            insert_documents,
        }
    }

    /// The documents insert operation `index` writes: `first..first + count`.
    fn insert_batch(&self, index: u64) -> (u64, u64) {
        let DocumentWorkload::Insert { count } = self.workload else {
            panic!("not an insert workload");
        };
        let first = index * count as u64;
        (first, (count as u64).min(self.insert_documents - first))
    }

    /// The number operation `index` draws its `_id` or `k` from: the same on both sides.
    fn draw(index: u64) -> u64 {
        flin_benches::mix(index)
    }
}

/// One connection's way of running operations.
trait Session: Send {
    /// Runs operation `index`; the rows (documents, groups, updated documents) it returned.
    fn run(&mut self, index: u64) -> Result<u64, String>;
}

// ----- Flin ---------------------------------------------------------------------------------

fn flin_addr(args: &Args) -> Result<SocketAddr, String> {
    (args.host.as_str(), args.flin_port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{} resolves to nothing", args.host))
}

fn flin_connect(args: &Args) -> Result<RespClient, String> {
    RespClient::connect(flin_addr(args)?, REQUEST_TIMEOUT)
        .map_err(|e| format!("connect to Flin: {e}"))
}

fn flin_call(client: &mut RespClient, args: &[&[u8]]) -> Result<Reply, String> {
    match client.call(args).map_err(|e| format!("Flin: {e}"))? {
        Reply::Error(message) => Err(message),
        reply => Ok(reply),
    }
}

struct FlinSession {
    client: RespClient,
    plan: Plan,
    args: Vec<Vec<u8>>,
    out: Vec<u8>,
}

impl Session for FlinSession {
    fn run(&mut self, index: u64) -> Result<u64, String> {
        let plan = self.plan;
        let (command, expected) = match plan.workload {
            DocumentWorkload::Insert { .. } => {
                let (first, count) = plan.insert_batch(index);
                let command = document::insert_command(
                    &plan.collection,
                    COLLECTION.as_bytes(),
                    first,
                    count,
                    true,
                    &mut self.args,
                );
                (command, Some(count))
            }
            workload => (
                document::command(
                    workload,
                    &plan.collection,
                    COLLECTION.as_bytes(),
                    Plan::draw(index),
                    &mut self.args,
                ),
                None,
            ),
        };
        self.out.clear();
        encode_resp(
            &mut self.out,
            &Op::Document {
                command,
                args: &self.args,
            },
        );
        self.client
            .send(&self.out)
            .map_err(|e| format!("Flin: {e}"))?;
        let reply = self.client.read_reply().map_err(|e| format!("Flin: {e}"))?;
        let rows = flin_rows(plan.workload, reply)?;
        match expected {
            Some(count) if count != rows => {
                Err(format!("DOC.INSERT of {count} returned {rows} _ids"))
            }
            _ => Ok(rows),
        }
    }
}

/// The rows in a reply: documents, `_id`s, groups, or the documents an update matched.
fn flin_rows(workload: DocumentWorkload, reply: Reply) -> Result<u64, String> {
    match (workload, reply) {
        (_, Reply::Error(message)) => Err(message),
        (DocumentWorkload::Get, Reply::Bulk(found)) => Ok(u64::from(found.is_some())),
        (DocumentWorkload::Inc, Reply::Array(Some(items))) => match items.first() {
            Some(Reply::Integer(matched)) => Ok(*matched as u64),
            _ => Err(format!("DOC.UPDATE replied {items:?}")),
        },
        (_, Reply::Array(Some(items))) => Ok(items.len() as u64),
        (_, other) => Err(format!("unexpected reply {other:?}")),
    }
}

/// Flin's side of the setup (one connection, untimed).
struct FlinSetup {
    client: RespClient,
}

impl FlinSetup {
    /// DOC.INDEX on `k`: the server's refusal, if it refused (an index that exists is fine).
    fn index(&mut self) -> Result<Option<String>, String> {
        let [name, collection, field] = document::index_command(COLLECTION.as_bytes());
        let reply = self
            .client
            .call(&[&name, &collection, &field])
            .map_err(|e| format!("Flin: {e}"))?;
        match reply {
            Reply::Error(message) if !message.contains("exists") => Ok(Some(message)),
            _ => Ok(None),
        }
    }

    fn recreate(&mut self) -> Result<Option<String>, String> {
        flin_call(&mut self.client, &[b"DOC.DROP", COLLECTION.as_bytes()])?;
        self.index()
    }

    fn count(&mut self) -> Result<u64, String> {
        match flin_call(
            &mut self.client,
            &[b"DOC.COUNT", COLLECTION.as_bytes(), b"{}"],
        )? {
            Reply::Integer(n) => Ok(n as u64),
            other => Err(format!("DOC.COUNT replied {other:?}")),
        }
    }

    fn load(&mut self, collection: &Collection) -> Result<(), String> {
        let mut args = Vec::new();
        for first in (0..collection.documents).step_by(LOAD_BATCH_DOCUMENTS as usize) {
            let count = LOAD_BATCH_DOCUMENTS.min(collection.documents - first);
            let command = document::insert_command(
                collection,
                COLLECTION.as_bytes(),
                first,
                count,
                true,
                &mut args,
            );
            let mut call: Vec<&[u8]> = vec![command];
            call.extend(args.iter().map(Vec::as_slice));
            flin_call(&mut self.client, &call)?;
        }
        Ok(())
    }
}

// ----- PostgreSQL ---------------------------------------------------------------------------

fn postgres_connect(args: &Args) -> Result<postgres::Client, String> {
    let config = format!(
        "host={} port={} user={} dbname=postgres connect_timeout=10",
        args.host, args.postgres_port, args.postgres_user
    );
    postgres::Client::connect(&config, postgres::NoTls)
        .map_err(|e| format!("connect to PostgreSQL: {e}"))
}

/// The statement of each workload, over `docbench (doc jsonb)`; `$1`, `$2` are bigints, except
/// the inserts' text and text[].
fn postgres_sql(workload: DocumentWorkload) -> String {
    match workload {
        DocumentWorkload::Insert { count: 1 } => {
            "INSERT INTO docbench (doc) VALUES ($1::text::jsonb)".into()
        }
        DocumentWorkload::Insert { .. } => {
            "INSERT INTO docbench (doc) SELECT d::jsonb FROM unnest($1::text[]) AS d".into()
        }
        DocumentWorkload::Get => {
            "SELECT doc::text FROM docbench WHERE (doc->>'_id')::bigint = $1".into()
        }
        DocumentWorkload::Find => {
            "SELECT doc::text FROM docbench WHERE (doc->>'k')::bigint = $1".into()
        }
        DocumentWorkload::Range => format!(
            "SELECT doc::text FROM docbench WHERE (doc->>'k')::bigint >= $1 AND (doc->>'k')::bigint < $2 ORDER BY (doc->>'k')::bigint LIMIT {}",
            document::RANGE_LIMIT
        ),
        DocumentWorkload::Inc => "UPDATE docbench SET doc = jsonb_set(doc, '{k}', to_jsonb((doc->>'k')::bigint + 1)) WHERE (doc->>'_id')::bigint = $1".into(),
        DocumentWorkload::Aggregate => "SELECT doc->>'city', sum((doc->>'amount')::bigint)::bigint, count(*) FROM docbench GROUP BY doc->>'city'".into(),
    }
}

/// The bigint parameters of a read or update for draw `number` (the same `_id` or `k` as
/// `document::command` asks Flin for).
fn postgres_parameters(plan: &Plan, number: u64) -> Vec<i64> {
    let id = plan.collection.drawn_id(number) as i64;
    let k = plan.collection.drawn_k(number) as i64;
    match plan.workload {
        DocumentWorkload::Get | DocumentWorkload::Inc => vec![id],
        DocumentWorkload::Find => vec![k],
        DocumentWorkload::Range => vec![k, k + RANGE_K_WIDTH as i64],
        DocumentWorkload::Aggregate => Vec::new(),
        DocumentWorkload::Insert { .. } => panic!("inserts bind documents"),
    }
}

struct PostgresSession {
    client: postgres::Client,
    statement: postgres::Statement,
    plan: Plan,
    document: Vec<u8>,
}

impl PostgresSession {
    fn open(args: &Args, plan: Plan) -> Result<PostgresSession, String> {
        let mut client = postgres_connect(args)?;
        let statement = client
            .prepare(&postgres_sql(plan.workload))
            .map_err(|e| format!("prepare: {e}"))?;
        Ok(PostgresSession {
            client,
            statement,
            plan,
            document: Vec::new(),
        })
    }
}

impl Session for PostgresSession {
    fn run(&mut self, index: u64) -> Result<u64, String> {
        let plan = self.plan;
        let error = |e: postgres::Error| format!("PostgreSQL: {e}");
        match plan.workload {
            DocumentWorkload::Insert { count: 1 } => {
                self.document.clear();
                plan.collection.document(index, true, &mut self.document);
                let text = std::str::from_utf8(&self.document).expect("JSON is UTF-8");
                self.client
                    .execute(&self.statement, &[&text])
                    .map_err(error)
            }
            DocumentWorkload::Insert { .. } => {
                let (first, count) = plan.insert_batch(index);
                let texts = document_texts(&plan.collection, first, count);
                let inserted = self
                    .client
                    .execute(&self.statement, &[&texts])
                    .map_err(error)?;
                match inserted == count {
                    true => Ok(inserted),
                    false => Err(format!("INSERT of {count} inserted {inserted}")),
                }
            }
            DocumentWorkload::Inc => {
                let parameters = postgres_parameters(&plan, Plan::draw(index));
                self.client
                    .execute(&self.statement, &[&parameters[0]])
                    .map_err(error)
            }
            _ => {
                let parameters = postgres_parameters(&plan, Plan::draw(index));
                let bound: Vec<&(dyn postgres::types::ToSql + Sync)> = parameters
                    .iter()
                    .map(|p| p as &(dyn postgres::types::ToSql + Sync))
                    .collect();
                let rows = self.client.query(&self.statement, &bound).map_err(error)?;
                Ok(rows.len() as u64)
            }
        }
    }
}

/// Documents `first..first + count` as JSON texts.
fn document_texts(collection: &Collection, first: u64, count: u64) -> Vec<String> {
    (first..first + count)
        .map(|number| {
            let mut text = Vec::new();
            collection.document(number, true, &mut text);
            String::from_utf8(text).expect("JSON is UTF-8")
        })
        .collect()
}

/// PostgreSQL's side of the setup (one connection, untimed).
struct PostgresSetup {
    client: postgres::Client,
}

impl PostgresSetup {
    fn execute(&mut self, sql: &str) -> Result<(), String> {
        self.client
            .batch_execute(sql)
            .map_err(|e| format!("PostgreSQL: {sql}: {e}"))
    }

    /// The table and its indexes, the twins of Flin's `_id` and its index on `k`.
    fn recreate(&mut self) -> Result<(), String> {
        self.execute(
            "DROP TABLE IF EXISTS docbench;
             CREATE TABLE docbench (doc jsonb NOT NULL);
             CREATE UNIQUE INDEX docbench_id ON docbench (((doc->>'_id')::bigint));
             CREATE INDEX docbench_k ON docbench (((doc->>'k')::bigint));",
        )
    }

    fn count(&mut self) -> Result<u64, String> {
        let exists = self
            .client
            .query_one("SELECT to_regclass('docbench') IS NOT NULL", &[])
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        if !exists.get::<_, bool>(0) {
            return Ok(u64::MAX);
        }
        let row = self
            .client
            .query_one("SELECT count(*) FROM docbench", &[])
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn load(&mut self, collection: &Collection) -> Result<(), String> {
        let statement = self
            .client
            .prepare(&postgres_sql(DocumentWorkload::Insert { count: 2 }))
            .map_err(|e| format!("PostgreSQL: {e}"))?;
        for first in (0..collection.documents).step_by(LOAD_BATCH_DOCUMENTS as usize) {
            let count = LOAD_BATCH_DOCUMENTS.min(collection.documents - first);
            let texts = document_texts(collection, first, count);
            self.client
                .execute(&statement, &[&texts])
                .map_err(|e| format!("PostgreSQL: load: {e}"))?;
        }
        Ok(())
    }

    /// EXPLAIN of the workload's statement with operation 0's parameters: the plan's lines,
    /// and whether it uses an index.
    fn explain(&mut self, plan: &Plan) -> Result<(Vec<String>, bool), String> {
        let mut sql = format!("EXPLAIN (COSTS OFF) {}", postgres_sql(plan.workload));
        // Literals in place of $1, $2 (integers only), so the plan is the one PostgreSQL picks
        // for such values.
        for (at, value) in postgres_parameters(plan, Plan::draw(0))
            .iter()
            .enumerate()
            .rev()
        {
            sql = sql.replace(&format!("${}", at + 1), &value.to_string());
        }
        let rows = self
            .client
            .query(sql.as_str(), &[])
            .map_err(|e| format!("PostgreSQL: {sql}: {e}"))?;
        let lines: Vec<String> = rows.iter().map(|row| row.get::<_, String>(0)).collect();
        let indexed = lines.iter().any(|line| line.contains("Index"));
        Ok((lines, indexed))
    }
}

// ----- a run --------------------------------------------------------------------------------

/// What one (side, workload) run measured.
struct Measurement {
    operations: u64,
    documents: u64,
    rows: u64,
    seconds: f64,
    latency_us: Histogram<u64>,
    cpu_seconds: Option<f64>,
    /// This process's own CPU over the run (the client threads): on a box whose cores the
    /// client shares with the server, it bounds the rate whatever the server spends.
    client_cpu_seconds: Option<f64>,
    stopped_by_time: bool,
    /// Why the figure is not what the workload's name says (no index on Flin's side).
    caveat: Option<String>,
}

impl Measurement {
    fn rate(&self) -> f64 {
        self.operations as f64 / self.seconds
    }

    fn cpu_us_per_operation(&self) -> Option<f64> {
        Some(self.cpu_seconds? * 1e6 / self.operations.max(1) as f64)
    }

    fn client_cpu_us_per_operation(&self) -> Option<f64> {
        Some(self.client_cpu_seconds? * 1e6 / self.operations.max(1) as f64)
    }
}

/// Sets the side up for the workload and runs it: the measurement, or why it failed.
fn measure(args: &Args, target: Target, plan: Plan) -> Result<Measurement, String> {
    let loaded = plan.workload.needs_documents();
    let mut caveat = None;
    match target {
        Target::Flin => {
            let mut setup = FlinSetup {
                client: flin_connect(args)?,
            };
            let refusal = if loaded {
                let refusal = setup.index()?;
                if setup.count()? != plan.collection.documents {
                    eprintln!(
                        "doc-bench: flin: loading {} documents (untimed)",
                        plan.collection.documents
                    );
                    setup.recreate()?;
                    setup.load(&plan.collection)?;
                }
                refusal
            } else {
                setup.recreate()?
            };
            if let Some(refusal) = refusal {
                if plan.workload.needs_index() && !args.allow_unindexed {
                    return Err(format!("needs the index on k, and DOC.INDEX was refused: {refusal} (--allow-unindexed runs it without)"));
                }
                caveat = Some(format!(
                    "WITHOUT the index on k (DOC.INDEX refused: {refusal})"
                ));
            }
        }
        Target::Postgres => {
            let mut setup = PostgresSetup {
                client: postgres_connect(args)?,
            };
            if !loaded {
                setup.recreate()?;
            } else if setup.count()? != plan.collection.documents {
                eprintln!(
                    "doc-bench: postgres: loading {} documents (untimed)",
                    plan.collection.documents
                );
                setup.recreate()?;
                setup.load(&plan.collection)?;
            }
            if loaded {
                setup.execute("VACUUM ANALYZE docbench")?;
                let (lines, indexed) = setup.explain(&plan)?;
                for line in &lines {
                    println!("  postgres plan: {line}");
                }
                if !indexed && plan.workload != DocumentWorkload::Aggregate {
                    println!(
                        "  WARNING: PostgreSQL's plan for {} uses no index",
                        Workload::Document(plan.workload)
                    );
                }
            }
            setup.execute("CHECKPOINT")?;
            drop(setup);
            // The set-up connection's backend exits now; until the postmaster reaps it, its
            // CPU is in neither a live process nor the postmaster's children's times, so a
            // first sample taken meanwhile misses it and the run's figure is too low (read as
            // 0.0 or half the usual once). Let it be reaped first.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let sessions = (0..args.connections)
        .map(|_| -> Result<Box<dyn Session>, String> {
            Ok(match target {
                Target::Flin => Box::new(FlinSession {
                    client: flin_connect(args)?,
                    plan,
                    args: Vec::new(),
                    out: Vec::new(),
                }),
                Target::Postgres => Box::new(PostgresSession::open(args, plan)?),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pid = match target {
        Target::Flin => args.flin_pid,
        Target::Postgres => args.postgres_pid,
    };
    let mut measurement = drive(args, plan, sessions, pid)?;
    measurement.caveat = caveat;
    Ok(measurement)
}

/// Runs `plan.operations` operations over the sessions, one thread each, until they are done,
/// the time is up, or one fails.
fn drive(
    args: &Args,
    plan: Plan,
    sessions: Vec<Box<dyn Session>>,
    pid: Option<u32>,
) -> Result<Measurement, String> {
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let time_limit = Duration::from_secs(args.seconds);
    let cpu_before = pid.and_then(flin_benches::process_tree_cpu_seconds);
    let client_cpu_before = flin_benches::process_tree_cpu_seconds(std::process::id());
    let started = Instant::now();
    let deadline = started + time_limit;
    let per_thread: Vec<(u64, u64, Histogram<u64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .into_iter()
            .map(|mut session| {
                let (next, stop, failure) = (&next, &stop, &failure);
                scope.spawn(move || {
                    let mut histogram = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 3)
                        .expect("histogram bounds");
                    let (mut done, mut rows) = (0, 0);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= plan.operations {
                            break;
                        }
                        let sent = Instant::now();
                        match session.run(index) {
                            Ok(returned) => {
                                histogram
                                    .saturating_record(sent.elapsed().as_micros().max(1) as u64);
                                done += 1;
                                rows += returned;
                            }
                            Err(message) => {
                                failure.lock().expect("failure slot").get_or_insert(message);
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                    (done, rows, histogram)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a bench thread"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = pid.and_then(flin_benches::process_tree_cpu_seconds);
    let client_cpu_after = flin_benches::process_tree_cpu_seconds(std::process::id());
    if let Some(message) = failure.into_inner().expect("failure slot") {
        return Err(message);
    }
    let mut latency_us =
        Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, 3).expect("histogram bounds");
    let (mut operations, mut rows) = (0, 0);
    for (done, returned, histogram) in per_thread {
        operations += done;
        rows += returned;
        latency_us.add(histogram).expect("same bounds");
    }
    let documents = match plan.workload {
        DocumentWorkload::Insert { .. } => rows,
        _ => operations,
    };
    Ok(Measurement {
        operations,
        documents,
        rows,
        seconds,
        latency_us,
        cpu_seconds: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| after - before),
        client_cpu_seconds: client_cpu_before
            .zip(client_cpu_after)
            .map(|(before, after)| after - before),
        stopped_by_time: operations < plan.operations,
        caveat: None,
    })
}

fn report_line(
    target: Target,
    workload: DocumentWorkload,
    result: &Result<Measurement, String>,
) -> String {
    let name = Workload::Document(workload).to_string();
    let m = match result {
        Ok(m) => m,
        Err(reason) => return format!("{:<8} {name:<11} FAILED: {reason}", target.name()),
    };
    let cpu = m
        .cpu_us_per_operation()
        .map_or(String::new(), |us| format!("  server CPU {us:.1} us/op"));
    let client_cpu = m
        .client_cpu_us_per_operation()
        .map_or(String::new(), |us| format!("  client CPU {us:.1} us/op"));
    let documents = match workload {
        DocumentWorkload::Insert { count } if count > 1 => {
            format!(" ({:.0} docs/s)", m.documents as f64 / m.seconds)
        }
        _ => String::new(),
    };
    let mut line = format!(
        "{:<8} {name:<11} {} ops in {:.2} s = {:.0} ops/s{documents}  latency us p50 {} p99 {} p99.9 {}{cpu}{client_cpu}  rows {}",
        target.name(),
        m.operations,
        m.seconds,
        m.rate(),
        m.latency_us.value_at_quantile(0.5),
        m.latency_us.value_at_quantile(0.99),
        m.latency_us.value_at_quantile(0.999),
        m.rows,
    );
    if m.stopped_by_time {
        line.push_str("  (stopped by the time limit)");
    }
    if let Some(caveat) = &m.caveat {
        line.push_str(&format!("  [{caveat}]"));
    }
    line
}

/// Flin's figures over PostgreSQL's, and whether both returned the same rows.
fn ratio_line(workload: DocumentWorkload, flin: &Measurement, postgres: &Measurement) -> String {
    let cpu = match (flin.cpu_us_per_operation(), postgres.cpu_us_per_operation()) {
        (Some(f), Some(p)) if p > 0.0 => format!(", server CPU per op {:.2}x PostgreSQL's", f / p),
        _ => String::new(),
    };
    let rows = if flin.stopped_by_time || postgres.stopped_by_time {
        "rows not compared (a run stopped early)".to_string()
    } else if flin.rows == postgres.rows {
        "same rows".to_string()
    } else {
        format!("ROWS DIFFER: flin {} postgres {}", flin.rows, postgres.rows)
    };
    format!(
        "{:<8} {:<11} flin/postgres {:.2}x ops/s{cpu}; {rows}",
        "ratio",
        Workload::Document(workload).to_string(),
        flin.rate() / postgres.rate(),
    )
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("doc-bench: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "doc-bench: {} connections, {} documents of {} B, machine: {}",
        args.connections,
        args.documents,
        document::DOCUMENT_BYTES,
        flin_benches::machine_line()
    );
    let mut failed = false;
    for &workload in &args.workloads {
        let plan = Plan::new(&args, workload);
        let results: Vec<(Target, Result<Measurement, String>)> = args
            .targets
            .iter()
            .map(|&target| {
                let result = measure(&args, target, plan);
                println!("{}", report_line(target, workload, &result));
                (target, result)
            })
            .collect();
        failed |= results.iter().any(|(_, result)| result.is_err());
        if let [(Target::Flin, Ok(flin)), (Target::Postgres, Ok(postgres))] = results.as_slice() {
            println!("{}", ratio_line(workload, flin, postgres));
            failed |=
                !flin.stopped_by_time && !postgres.stopped_by_time && flin.rows != postgres.rows;
        }
    }
    if failed {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both sides ask the same question for the same operation: the `_id` or `k` bound to
    /// PostgreSQL's statement is the one in Flin's filter.
    #[test]
    fn both_sides_draw_the_same_id_and_k() {
        let collection = Collection::new(10_000);
        let mut args = Vec::new();
        for workload in [
            DocumentWorkload::Get,
            DocumentWorkload::Find,
            DocumentWorkload::Range,
            DocumentWorkload::Inc,
        ] {
            let plan = Plan {
                workload,
                collection,
                operations: 1,
                insert_documents: 0,
            };
            for index in 0..100 {
                let number = Plan::draw(index);
                document::command(workload, &collection, b"c", number, &mut args);
                let flin = String::from_utf8(args[1].clone()).unwrap();
                let numbers: Vec<i64> = flin
                    .split(|c: char| !c.is_ascii_digit())
                    .filter(|part| !part.is_empty())
                    .map(|part| part.parse().unwrap())
                    .collect();
                assert_eq!(numbers, postgres_parameters(&plan, number), "{flin}");
            }
        }
    }

    #[test]
    fn inserts_cover_the_documents_once() {
        let args = Args {
            documents: 1050,
            ..Args::default()
        };
        let plan = Plan::new(&args, DocumentWorkload::Insert { count: 100 });
        assert_eq!(plan.operations, 11);
        assert_eq!(plan.insert_batch(0), (0, 100));
        assert_eq!(plan.insert_batch(10), (1000, 50));
        let single = Plan::new(&args, DocumentWorkload::Insert { count: 1 });
        assert_eq!(single.operations, args.inserts);
        assert_eq!(single.insert_batch(7), (7, 1));
    }

    #[test]
    fn replies_count_their_rows() {
        let ids = Reply::Array(Some(vec![Reply::Bulk(Some(b"1".to_vec())); 3]));
        assert_eq!(flin_rows(DocumentWorkload::Insert { count: 3 }, ids), Ok(3));
        assert_eq!(flin_rows(DocumentWorkload::Get, Reply::Bulk(None)), Ok(0));
        let updated = Reply::Array(Some(vec![
            Reply::Integer(1),
            Reply::Integer(1),
            Reply::Bulk(None),
        ]));
        assert_eq!(flin_rows(DocumentWorkload::Inc, updated), Ok(1));
        let refused = Reply::Error("ERR unknown command".into());
        assert!(flin_rows(DocumentWorkload::Aggregate, refused).is_err());
    }
}
