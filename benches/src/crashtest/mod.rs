//! The crash-recovery harness: `flin-server` as a child process under concurrent writers,
//! killed with SIGKILL at random moments, restarted, and checked.
//!
//! # Layout
//! - [`model`]: the [`model::Model`] and [`model::Writer`] traits a data model implements,
//!   and the [`model::Violation`] a check reports.
//! - [`kv`]: the key-value model (SET, MSET, INCR, DEL, EXPIRE, MULTI/EXEC).
//! - [`queue`]: the queue model (producers pushing into a durable queue, consumers popping
//!   and acking; every acknowledged push delivered at least once, no acked message again).
//! - [`stream`]: the stream model (producers publishing single and batched records to two
//!   partitions, group consumers consuming and committing; every acknowledged record at its
//!   offset, offsets never reused, committed offsets never going back).
//! - [`doc`]: the document model (the transactional outbox: an order document, its writer's
//!   head document, a key and a stream record in one MULTI/EXEC; no half transaction, indexes
//!   exact, nothing acknowledged lost).
//! - [`server`]: the child process, and [`server::inspect`], which reads from the data
//!   directory what the engine was doing (compaction, rotation, sealing) when it died.
//! - [`client`]: a small blocking RESP client.
//! - [`rng`]: the seeded generator every choice comes from.
//!
//! # A cycle
//! The server runs; every model's writers run on their own threads and connections; after a
//! delay drawn from the seed, the harness kills the server, either at once or, aiming, as soon
//! as the data directory shows a compaction or a segment rotation under way (polled every
//! [`AIM_POLL_INTERVAL`]). It notes what the directory showed at the kill, stops the writers,
//! restarts the server (recovery), and every model reads its data back and checks it against
//! what its writers were told. The first broken promise ends the run with the seed, the cycle
//! and the data directory, which is kept.
//!
//! The seed fixes every choice (operations, values, pipeline depths, kill delays and aims);
//! where exactly a kill lands also depends on the scheduler, so a seed repeats a run's
//! choices, not its interleaving.

pub mod client;
pub mod doc;
pub mod kv;
pub mod model;
pub mod queue;
pub mod rng;
pub mod server;
pub mod stream;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client::Client;
use model::{CycleFacts, Fsync, Model, Tally, Violation};
use rng::Rng;
use server::{DiskActivity, ServerProcess, ServerSettings};

/// How often an aimed kill looks at the data directory.
pub const AIM_POLL_INTERVAL: Duration = Duration::from_micros(250);
/// Timeout of the checking client's connect and reads.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Random streams, so each part of the run draws from its own (see `Rng::derive`).
const STREAM_KILL: u64 = 1;
const STREAM_WRITER: u64 = 2;

/// Wall-clock milliseconds since the epoch: the clock the server's expiries use.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything a run is told.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `flin-server` binary.
    pub server: PathBuf,
    pub seed: u64,
    pub cycles: u64,
    pub fsync: Fsync,
    /// `--segment-bytes` of the server: small, so segments rotate many times a cycle.
    pub segment_bytes: usize,
    /// `--compaction-interval-ms` of the server: small, so compaction runs often.
    pub compaction_interval_ms: u64,
    /// Event-loop threads of the server.
    pub threads: usize,
    /// A cycle runs the writers for a delay drawn from this range (ms) before it kills, or
    /// starts aiming.
    pub run_ms_min: u64,
    pub run_ms_max: u64,
    /// How long an aimed kill waits for what it aims at before it kills anyway.
    pub aim_ms_max: u64,
    pub kv: kv::KvSettings,
    /// The queue model's producers and consumers (`None`: the queue model does not run).
    pub queue: Option<queue::QueueSettings>,
    /// The stream model's producers and consumers (`None`: the stream model does not run).
    pub stream: Option<stream::StreamSettings>,
    /// The document model's writers (`None`: the document model does not run).
    pub doc: Option<doc::DocSettings>,
    /// Parent of the scratch directory (default: the system's temporary directory).
    pub work_dir: Option<PathBuf>,
    /// Keep the scratch directory after a successful run too.
    pub keep: bool,
    /// Print a line per cycle.
    pub verbose: bool,
}

impl Options {
    /// Defaults for a run of `cycles` against `server`.
    pub fn new(server: PathBuf, seed: u64, cycles: u64) -> Options {
        Options {
            server,
            seed,
            cycles,
            fsync: Fsync::Always,
            segment_bytes: 64 * 1024,
            compaction_interval_ms: 20,
            threads: 2,
            run_ms_min: 20,
            run_ms_max: 600,
            aim_ms_max: 1500,
            kv: kv::KvSettings {
                writers: 6,
                value_keys: 32,
                counter_keys: 8,
                pipeline_max: 4,
                value_bytes_max: 96 * 1024,
            },
            queue: Some(queue::QueueSettings {
                producers: 2,
                consumers: 2,
                pipeline_max: 4,
                pop_max: 8,
            }),
            stream: Some(stream::StreamSettings {
                producers: 2,
                consumers: 2,
                batch_max: 50,
            }),
            doc: Some(doc::DocSettings {
                writers: 2,
                pad_max: 400,
            }),
            work_dir: None,
            keep: false,
            verbose: false,
        }
    }
}

/// What a kill aims at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aim {
    /// Whatever the server is doing after the delay.
    Anything,
    /// A compaction writing outputs or swapping them in.
    Compaction,
    /// A log segment being created, or the previous one waiting for its seal.
    Rotation,
}

/// Counts over a whole run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub cycles: u64,
    pub fsync: Option<Fsync>,
    pub tally: Tally,
    /// Kills per aim, and how many of the aimed ones saw their target before the kill.
    pub aimed: [u64; 3],
    pub aim_hits: [u64; 3],
    /// Kills after which the directory showed each activity under way.
    pub landed_compaction_writing: u64,
    pub landed_compaction_swapping: u64,
    pub landed_segment_creating: u64,
    pub landed_seal_pending: u64,
    pub landed_hint_writing: u64,
    /// Recovery log lines over the run.
    pub recovered_torn_tails: u64,
    pub recovered_compaction_swaps: u64,
    pub recovered_seal_cuts: u64,
    pub recovered_bad_hints: u64,
    /// Compactions the server logged over the run.
    pub compactions: u64,
    pub duration: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.tally;
        writeln!(
            f,
            "flin-crashtest: seed={} cycles={} fsync={} passed in {:.1} s",
            self.seed,
            self.cycles,
            self.fsync.map_or("?", Fsync::as_str),
            self.duration.as_secs_f64()
        )?;
        writeln!(
            f,
            "  operations: {} acknowledged, {} in flight at a kill ({} of them applied), {} acknowledged lost; {} key readings checked",
            t.acknowledged, t.in_flight, t.in_flight_applied, t.acknowledged_lost, t.keys_checked
        )?;
        writeln!(
            f,
            "  kills: {} anytime, {} aimed at compaction ({} saw one), {} aimed at rotation ({} saw one)",
            self.aimed[0], self.aimed[1], self.aim_hits[1], self.aimed[2], self.aim_hits[2]
        )?;
        writeln!(
            f,
            "  on disk at the kill: compaction writing {}, compaction swap {}, segment being created {}, seal pending {}, hint being written {}",
            self.landed_compaction_writing,
            self.landed_compaction_swapping,
            self.landed_segment_creating,
            self.landed_seal_pending,
            self.landed_hint_writing
        )?;
        write!(
            f,
            "  recovery: {} torn tails cut, {} interrupted compaction swaps finished, {} torn sealing segments cut, {} bad hint files scanned instead; {} compactions ran",
            self.recovered_torn_tails,
            self.recovered_compaction_swaps,
            self.recovered_seal_cuts,
            self.recovered_bad_hints,
            self.compactions
        )
    }
}

/// A broken promise (or a harness that could not go on), with what reproduces it.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub cycle: u64,
    pub violations: Vec<Violation>,
    /// Scratch directory (data and server log), kept for a post-mortem.
    pub dir: PathBuf,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "flin-crashtest FAILED at cycle {} (seed {}; rerun with --seed {}); data and server.log kept in {}",
            self.cycle,
            self.seed,
            self.seed,
            self.dir.display()
        )?;
        for violation in self.violations.iter().take(20) {
            writeln!(f, "  {violation}")?;
        }
        if self.violations.len() > 20 {
            writeln!(f, "  ... and {} more", self.violations.len() - 20)?;
        }
        Ok(())
    }
}

/// Every model the harness runs. A new data model adds its line here.
fn models(options: &Options) -> Vec<Box<dyn Model>> {
    let mut models: Vec<Box<dyn Model>> = vec![Box::new(kv::KvModel::new(options.kv))];
    if let Some(settings) = options.queue {
        models.push(Box::new(queue::QueueModel::new(
            settings,
            options.fsync,
            options.kv.writers,
        )));
    }
    if let Some(settings) = options.stream {
        let first_writer =
            options.kv.writers + options.queue.map_or(0, |q| q.producers + q.consumers);
        models.push(Box::new(stream::StreamModel::new(
            settings,
            first_writer,
            options.seed,
        )));
    }
    if let Some(settings) = options.doc {
        let first_writer = options.kv.writers
            + options.queue.map_or(0, |q| q.producers + q.consumers)
            + options.stream.map_or(0, |s| s.producers + s.consumers);
        models.push(Box::new(doc::DocModel::new(settings, first_writer)));
    }
    models
}

fn harness_violation(what: String) -> Vec<Violation> {
    vec![Violation {
        model: "harness",
        writer: None,
        what,
    }]
}

/// Counts of the engine's log lines that show what recovery and compaction did.
#[derive(Default)]
struct LogCounts {
    torn_tails: u64,
    compaction_swaps: u64,
    seal_cuts: u64,
    bad_hints: u64,
    compactions: u64,
}

fn count_log_lines(log: &std::path::Path) -> LogCounts {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut counts = LogCounts::default();
    for line in text.lines() {
        if line.contains("truncated torn tail") || line.contains("discarded") {
            counts.torn_tails += 1;
        } else if line.contains("finishing an interrupted compaction") {
            counts.compaction_swaps += 1;
        } else if line.contains("was waiting for its seal and is torn") {
            counts.seal_cuts += 1;
        } else if line.contains("scanning the segment instead") {
            counts.bad_hints += 1;
        } else if line.contains("flin-engine: compacted") {
            counts.compactions += 1;
        }
    }
    counts
}

/// Runs the cycles. `Ok` only if every check of every cycle passed.
pub fn run(options: &Options) -> Result<Report, Failure> {
    let started = Instant::now();
    let scratch = match &options.work_dir {
        Some(parent) => tempfile::Builder::new()
            .prefix("flin-crashtest-")
            .tempdir_in(parent),
        None => tempfile::Builder::new().prefix("flin-crashtest-").tempdir(),
    }
    .map_err(|e| Failure {
        seed: options.seed,
        cycle: 0,
        violations: harness_violation(format!("cannot create a scratch directory: {e}")),
        dir: PathBuf::new(),
    })?;
    let settings = ServerSettings {
        binary: options.server.clone(),
        data: scratch.path().join("data"),
        log: scratch.path().join("server.log"),
        fsync: options.fsync.as_str().into(),
        segment_bytes: options.segment_bytes,
        compaction_interval_ms: options.compaction_interval_ms,
        threads: options.threads,
    };
    let mut models = models(options);
    let mut report = Report {
        seed: options.seed,
        fsync: Some(options.fsync),
        ..Report::default()
    };
    let outcome = run_cycles(options, &settings, &mut models, &mut report);
    let log_counts = count_log_lines(&settings.log);
    report.recovered_torn_tails = log_counts.torn_tails;
    report.recovered_compaction_swaps = log_counts.compaction_swaps;
    report.recovered_seal_cuts = log_counts.seal_cuts;
    report.recovered_bad_hints = log_counts.bad_hints;
    report.compactions = log_counts.compactions;
    report.duration = started.elapsed();
    match outcome {
        Ok(()) => {
            if options.keep {
                let kept = scratch.keep();
                eprintln!("flin-crashtest: kept {}", kept.display());
            }
            Ok(report)
        }
        Err((cycle, violations)) => Err(Failure {
            seed: options.seed,
            cycle,
            violations,
            dir: scratch.keep(),
        }),
    }
}

type CycleError = (u64, Vec<Violation>);

fn run_cycles(
    options: &Options,
    settings: &ServerSettings,
    models: &mut [Box<dyn Model>],
    report: &mut Report,
) -> Result<(), CycleError> {
    let start =
        |cycle: u64| ServerProcess::start(settings).map_err(|why| (cycle, harness_violation(why)));
    let mut server = start(0)?;
    for cycle in 0..options.cycles {
        let mut rng = Rng::derive(options.seed, STREAM_KILL, cycle);
        let (aim, delay_ms) = draw_kill(&mut rng, options);
        let stop = AtomicBool::new(false);
        let addr = server.addr;
        let mut activity = DiskActivity::default();
        let mut aim_hit = false;
        let mut kill_ms = 0;
        let writer_violations: Vec<Violation> = std::thread::scope(|scope| {
            let mut handles = Vec::new();
            let mut writer_index = 0;
            for model in models.iter_mut() {
                for writer in model.writers() {
                    let rng =
                        Rng::derive(options.seed, STREAM_WRITER, (cycle << 16) | writer_index);
                    writer_index += 1;
                    let stop = &stop;
                    handles.push(scope.spawn(move || writer.drive(addr, stop, rng)));
                }
            }
            std::thread::sleep(Duration::from_millis(delay_ms));
            aim_hit = wait_for_aim(aim, settings, options.aim_ms_max);
            server.kill();
            kill_ms = now_ms();
            activity = server::inspect(&settings.data, settings.segment_bytes);
            stop.store(true, Ordering::Relaxed);
            handles
                .into_iter()
                .flat_map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|_| harness_violation("a writer thread panicked".into()))
                })
                .collect()
        });
        record_kill(report, aim, aim_hit, &activity);
        if !writer_violations.is_empty() {
            return Err((cycle, writer_violations));
        }
        server = start(cycle)?;
        let facts = CycleFacts {
            fsync: options.fsync,
            kill_ms,
        };
        let mut client = Client::connect(server.addr, CHECK_TIMEOUT).map_err(|e| {
            (
                cycle,
                harness_violation(format!("cannot connect to check: {e}")),
            )
        })?;
        let mut cycle_tally = Tally::default();
        for model in models.iter_mut() {
            cycle_tally += model.verify(&mut client, &facts).map_err(|v| (cycle, v))?;
        }
        report.tally += cycle_tally;
        report.cycles += 1;
        if options.verbose {
            println!(
                "cycle {cycle}: aim={aim:?}{} delay={delay_ms}ms on-disk={:?} acked={} in-flight={} applied={} lost={}",
                if aim_hit { " (hit)" } else { "" },
                activity.names(),
                cycle_tally.acknowledged,
                cycle_tally.in_flight,
                cycle_tally.in_flight_applied,
                cycle_tally.acknowledged_lost
            );
        }
    }
    // An orderly stop must work after all this too.
    match server.terminate() {
        Ok(status) if status.success() => Ok(()),
        other => Err((
            options.cycles,
            harness_violation(format!(
                "SIGTERM did not stop the server cleanly: {other:?}"
            )),
        )),
    }
}

fn draw_kill(rng: &mut Rng, options: &Options) -> (Aim, u64) {
    let aim = match rng.below(3) {
        0 => Aim::Anything,
        1 => Aim::Compaction,
        _ => Aim::Rotation,
    };
    (aim, rng.between(options.run_ms_min, options.run_ms_max))
}

/// For an aimed kill, polls the data directory until it shows the target under way (true)
/// or `aim_ms_max` passes (false).
fn wait_for_aim(aim: Aim, settings: &ServerSettings, aim_ms_max: u64) -> bool {
    if aim == Aim::Anything {
        return false;
    }
    let deadline = Instant::now() + Duration::from_millis(aim_ms_max);
    while Instant::now() < deadline {
        let activity = server::inspect(&settings.data, settings.segment_bytes);
        let hit = match aim {
            Aim::Compaction => activity.compaction(),
            Aim::Rotation => activity.rotation(),
            Aim::Anything => unreachable!(),
        };
        if hit {
            return true;
        }
        std::thread::sleep(AIM_POLL_INTERVAL);
    }
    false
}

fn record_kill(report: &mut Report, aim: Aim, hit: bool, activity: &DiskActivity) {
    let index = aim as usize;
    report.aimed[index] += 1;
    report.aim_hits[index] += hit as u64;
    report.landed_compaction_writing += activity.compaction_writing as u64;
    report.landed_compaction_swapping += activity.compaction_swapping as u64;
    report.landed_segment_creating += activity.segment_creating as u64;
    report.landed_seal_pending += activity.seal_pending as u64;
    report.landed_hint_writing += activity.hint_writing as u64;
}
