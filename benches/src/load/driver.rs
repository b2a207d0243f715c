//! Runs one workload: `connections` connections spread over `threads`
//! threads, each connection keeping `pipeline` requests in flight (closed
//! loop, as redis-benchmark does), until the request count or the time
//! runs out. A request's latency is from the write of its batch to the
//! arrival of its reply, as in redis-benchmark.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::wire::{Outcome, Protocol, Wire, WireError};
use super::workload::{Generator, Workload};

/// Highest latency the histogram tells apart (longer ones are counted at
/// this value): 100 s, in nanoseconds.
const LATENCY_MAX_NS: u64 = 100_000_000_000;
/// Significant decimal digits the histogram keeps (0.1% precision).
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// What to run and against what.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub password: Option<String>,
    pub workload: Workload,
    pub connections: usize,
    pub threads: usize,
    pub pipeline: usize,
    /// Stop after this many requests (`None`: only the time bounds the run).
    pub requests: Option<u64>,
    /// Stop after this long, whatever the count.
    pub duration: Duration,
    pub keyspace: u64,
    pub value_bytes: usize,
    pub seed: u64,
    /// Draw a progress line on stderr.
    pub progress: bool,
    /// The server's process id, on this machine: its CPU time during the run is reported.
    pub server_pid: Option<u32>,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunResult {
    pub workload: Workload,
    pub requests: u64,
    pub keys: u64,
    pub refused: u64,
    /// The first refusal's message, to show what went wrong.
    pub first_refusal: Option<String>,
    pub elapsed: Duration,
    /// Latencies in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// CPU seconds (user + system) the server used during the run, with `server_pid`.
    pub server_cpu_seconds: Option<f64>,
}

impl RunResult {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn keys_per_second(&self) -> f64 {
        self.keys as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU microseconds per key (per request for single-key workloads).
    pub fn server_cpu_us_per_key(&self) -> Option<f64> {
        let seconds = self.server_cpu_seconds?;
        Some(seconds * 1e6 / self.keys.max(1) as f64)
    }
}

/// State every thread of a run shares.
struct Shared {
    config: RunConfig,
    /// Requests not yet claimed by a batch (`u64::MAX`: unbounded).
    unclaimed: AtomicU64,
    /// Replies received, for the progress line.
    completed: AtomicU64,
    deadline: Instant,
    /// Set when one thread fails, so the others stop.
    failed: AtomicBool,
}

impl Shared {
    /// Claims up to `want` requests for a batch; 0 means the run is over.
    fn claim(&self, want: u64) -> u64 {
        if self.failed.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            return 0;
        }
        let mut unclaimed = self.unclaimed.load(Ordering::Relaxed);
        loop {
            let take = unclaimed.min(want);
            if take == 0 {
                return 0;
            }
            match self.unclaimed.compare_exchange_weak(
                unclaimed,
                unclaimed - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => unclaimed = now,
            }
        }
    }
}

/// One connection's state in its thread.
struct Slot {
    wire: Wire,
    generator: Generator,
    in_flight: u64,
    sent_at: Instant,
}

/// Per-thread results, merged at the end.
struct ThreadTotals {
    requests: u64,
    refused: u64,
    first_refusal: Option<String>,
    latency_ns: Histogram<u64>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, LATENCY_SIGNIFICANT_DIGITS)
        .expect("valid histogram bounds")
}

/// Runs `config` and returns what it measured.
pub fn run(config: RunConfig) -> Result<RunResult, WireError> {
    let threads = config.threads.clamp(1, config.connections.max(1));
    // Open every connection before the clock starts.
    let mut per_thread: Vec<Vec<Slot>> = (0..threads).map(|_| Vec::new()).collect();
    for index in 0..config.connections.max(1) {
        let wire = Wire::open(config.protocol, config.addr, config.password.as_deref())?;
        let generator = Generator::new(
            config.workload,
            config.keyspace,
            config.value_bytes,
            config.seed.wrapping_add(index as u64),
        );
        per_thread[index % threads].push(Slot {
            wire,
            generator,
            in_flight: 0,
            sent_at: Instant::now(),
        });
    }
    let server_cpu_before = config.server_pid.and_then(crate::process_cpu_seconds);
    let started = Instant::now();
    let shared = Arc::new(Shared {
        unclaimed: AtomicU64::new(config.requests.unwrap_or(u64::MAX)),
        completed: AtomicU64::new(0),
        deadline: started + config.duration,
        failed: AtomicBool::new(false),
        config,
    });
    let first_error: Arc<Mutex<Option<WireError>>> = Arc::new(Mutex::new(None));
    let handles: Vec<_> = per_thread
        .into_iter()
        .enumerate()
        .map(|(index, slots)| {
            let shared = Arc::clone(&shared);
            let first_error = Arc::clone(&first_error);
            std::thread::Builder::new()
                .name(format!("flin-bench-{index}"))
                .spawn(move || match drive(&shared, slots) {
                    Ok(totals) => Some(totals),
                    Err(error) => {
                        shared.failed.store(true, Ordering::Relaxed);
                        first_error.lock().expect("error slot").get_or_insert(error);
                        None
                    }
                })
                .expect("spawn a bench thread")
        })
        .collect();
    let mut progress = Progress::new(&shared, started);
    while !handles.iter().all(|handle| handle.is_finished()) {
        std::thread::sleep(PROGRESS_INTERVAL.min(Duration::from_millis(20)));
        progress.maybe_draw(&shared);
    }
    let elapsed = started.elapsed();
    let server_cpu_after = shared
        .config
        .server_pid
        .and_then(crate::process_cpu_seconds);
    progress.finish(&shared);
    let mut merged = ThreadTotals {
        requests: 0,
        refused: 0,
        first_refusal: None,
        latency_ns: new_histogram(),
    };
    for handle in handles {
        if let Some(totals) = handle.join().expect("bench thread") {
            merged.requests += totals.requests;
            merged.refused += totals.refused;
            merged.first_refusal = merged.first_refusal.or(totals.first_refusal);
            merged
                .latency_ns
                .add(&totals.latency_ns)
                .expect("histograms with the same bounds");
        }
    }
    if let Some(error) = first_error.lock().expect("error slot").take() {
        return Err(error);
    }
    let workload = shared.config.workload;
    Ok(RunResult {
        workload,
        requests: merged.requests,
        keys: merged.requests * workload.keys_per_request() as u64,
        refused: merged.refused,
        first_refusal: merged.first_refusal,
        elapsed,
        latency_ns: merged.latency_ns,
        server_cpu_seconds: server_cpu_before
            .zip(server_cpu_after)
            .map(|(before, after)| after - before),
    })
}

/// Sends one request of the configured workload (connection 0's first) on a connection of
/// its own and reads the reply: whether the server takes the workload's command at all, so a
/// command it does not know is reported as a failed workload instead of a run of refusals
/// timed as if it were a measurement.
pub fn probe(config: &RunConfig) -> Result<(), WireError> {
    let mut wire = Wire::open(config.protocol, config.addr, config.password.as_deref())?;
    let mut generator = Generator::new(
        config.workload,
        config.keyspace,
        config.value_bytes,
        config.seed,
    );
    wire.queue(&generator.next_op())?;
    wire.flush()?;
    match wire.receive()? {
        Outcome::Done => Ok(()),
        Outcome::Refused(message) => Err(WireError(format!("refused: {message}"))),
    }
}

/// One thread's closed loop over its connections: send a batch on each,
/// then, connection by connection, read the batch's replies and send the
/// next one, until nothing is left to claim.
fn drive(shared: &Shared, mut slots: Vec<Slot>) -> Result<ThreadTotals, WireError> {
    let pipeline = shared.config.pipeline.max(1) as u64;
    let mut totals = ThreadTotals {
        requests: 0,
        refused: 0,
        first_refusal: None,
        latency_ns: new_histogram(),
    };
    for slot in &mut slots {
        send_batch(shared, slot, pipeline)?;
    }
    while slots.iter().any(|slot| slot.in_flight > 0) {
        for slot in &mut slots {
            if slot.in_flight == 0 {
                continue;
            }
            for _ in 0..slot.in_flight {
                let outcome = slot.wire.receive()?;
                let latency = slot.sent_at.elapsed();
                totals
                    .latency_ns
                    .saturating_record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
                if let Outcome::Refused(message) = outcome {
                    totals.refused += 1;
                    totals.first_refusal.get_or_insert(message);
                }
            }
            totals.requests += slot.in_flight;
            shared
                .completed
                .fetch_add(slot.in_flight, Ordering::Relaxed);
            slot.in_flight = 0;
            send_batch(shared, slot, pipeline)?;
        }
    }
    Ok(totals)
}

fn send_batch(shared: &Shared, slot: &mut Slot, pipeline: u64) -> Result<(), WireError> {
    let claimed = shared.claim(pipeline);
    for _ in 0..claimed {
        let op = slot.generator.next_op();
        slot.wire.queue(&op)?;
    }
    if claimed > 0 {
        slot.sent_at = Instant::now();
        slot.wire.flush()?;
    }
    slot.in_flight = claimed;
    Ok(())
}

/// The live line on stderr: requests done, the rate over the last
/// interval, and the overall rate.
struct Progress {
    enabled: bool,
    on_terminal: bool,
    started: Instant,
    last_drawn: Instant,
    last_completed: u64,
    drawn: bool,
}

impl Progress {
    fn new(shared: &Shared, started: Instant) -> Progress {
        use std::io::IsTerminal;
        Progress {
            enabled: shared.config.progress,
            on_terminal: std::io::stderr().is_terminal(),
            started,
            last_drawn: started,
            last_completed: 0,
            drawn: false,
        }
    }

    fn maybe_draw(&mut self, shared: &Shared) {
        // Off a terminal (a log file), one line a second instead of a
        // redrawn one.
        let interval = if self.on_terminal {
            PROGRESS_INTERVAL
        } else {
            Duration::from_secs(1)
        };
        if !self.enabled || self.last_drawn.elapsed() < interval {
            return;
        }
        let now = Instant::now();
        let completed = shared.completed.load(Ordering::Relaxed);
        let recent = (completed - self.last_completed) as f64
            / now.duration_since(self.last_drawn).as_secs_f64();
        let overall = completed as f64 / now.duration_since(self.started).as_secs_f64();
        let target = match shared.config.requests {
            Some(total) => format!("/{total}"),
            None => String::new(),
        };
        let line = format!(
            "{}: {completed}{target} requests, {:.1} s, now {:.0} req/s, overall {:.0} req/s",
            shared.config.workload,
            now.duration_since(self.started).as_secs_f64(),
            recent,
            overall
        );
        if self.on_terminal {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        self.drawn = true;
        self.last_drawn = now;
        self.last_completed = completed;
    }

    fn finish(&mut self, _shared: &Shared) {
        if self.enabled && self.drawn && self.on_terminal {
            eprint!("\r\x1b[2K");
        }
    }
}
