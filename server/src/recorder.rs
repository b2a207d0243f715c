//! [`Recorder`]: what the request path counts for the admin port, at the cost of a few relaxed
//! atomic adds per command: calls per command and result (ok / error), and latency histograms
//! per command family.
//!
//! # Why shards
//! Every event loop runs commands; one counter shared by all of them would bounce its cache
//! line between cores on every command. So the counters live in [`SHARDS`] shards, each on
//! cache lines of its own, and a thread always adds to the same shard (assigned round-robin on
//! its first command). With no more loops than shards each shard has one writer, and its adds
//! never contend. A scrape sums the shards; it reads each counter once, so a scrape taken while
//! commands run is a little behind, never torn.
//!
//! # Latency
//! Measured by the service from the moment a request is parsed to the moment its reply is in
//! the connection's output buffer: the command's own time, not the durability wait (a reply
//! held behind its gate under `--fsync always`) nor the socket write. A parked command
//! (QUEUE.BPOP, a long poll) is measured up to its park, not while it waits. Buckets are fixed
//! and log-spaced: powers of two from 256 ns to about 1.07 s ([`BUCKET_BOUNDS_NS`]), and an
//! overflow bucket, so recording is a shift and a leading-zeros count.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Shards of the counters; more loops than this share shards (still correct, since every add
/// is atomic).
pub const SHARDS: usize = 8;

/// Finite bucket bounds of a latency histogram.
pub const BUCKETS: usize = 23;

/// Upper bound of the first bucket, as a power of two of nanoseconds (256 ns).
const FIRST_BOUND_SHIFT: u32 = 8;

/// The finite buckets' upper bounds, in nanoseconds: 256 ns doubling to 2^30 ns (~1.07 s).
pub const BUCKET_BOUNDS_NS: [u64; BUCKETS] = {
    let mut bounds = [0u64; BUCKETS];
    let mut i = 0;
    while i < BUCKETS {
        bounds[i] = 1 << (FIRST_BOUND_SHIFT + i as u32);
        i += 1;
    }
    bounds
};

/// A command family: the latency histograms are per family, not per command, so their series
/// stay few whatever the command table grows to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Kv = 0,
    Queue = 1,
    Stream = 2,
    Doc = 3,
    /// Connection, server and transaction commands (and unknown ones).
    Server = 4,
}

impl Family {
    pub const ALL: [Family; 5] = [
        Family::Kv,
        Family::Queue,
        Family::Stream,
        Family::Doc,
        Family::Server,
    ];

    /// The `family` label's value.
    pub fn name(self) -> &'static str {
        match self {
            Family::Kv => "kv",
            Family::Queue => "queue",
            Family::Stream => "stream",
            Family::Doc => "doc",
            Family::Server => "server",
        }
    }
}

/// A command's result, as its reply says: an error reply is `Error`, anything else `Ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok = 0,
    Error = 1,
}

/// One shard's latency histogram of one family: counts per bucket (not cumulative; the
/// exposition adds them up) and the sum of the latencies.
#[derive(Default)]
struct Histogram {
    /// `buckets[i]` counts latencies in `(bound[i-1], bound[i]]`; the last one, past every bound.
    buckets: [AtomicU64; BUCKETS + 1],
    sum_ns: AtomicU64,
}

/// One shard: 128-byte aligned, so two shards never share a cache line (nor the adjacent line
/// a core prefetches with it).
#[repr(align(128))]
struct Shard {
    /// `[ok, error]` per command number (`cmd::Command::number`).
    results: Box<[[AtomicU64; 2]]>,
    /// Requests naming no command.
    unknown: AtomicU64,
    /// Every request dispatched, queued in MULTI or not, known or not (INFO's
    /// `total_commands_processed`).
    processed: AtomicU64,
    latency: [Histogram; Family::ALL.len()],
}

/// The counters, one per daemon (in `Shared`).
pub struct Recorder {
    shards: Box<[Shard]>,
}

/// Which bucket `nanos` falls in: the first bound at or above it, or the overflow bucket.
pub fn bucket_of(nanos: u64) -> usize {
    if nanos <= 1 << FIRST_BOUND_SHIFT {
        return 0;
    }
    let index = (64 - ((nanos - 1) >> FIRST_BOUND_SHIFT).leading_zeros()) as usize;
    index.min(BUCKETS)
}

/// This thread's shard, assigned round-robin on first use.
fn shard_index() -> usize {
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD.with(|shard| {
        let index = shard.get();
        if index != usize::MAX {
            return index;
        }
        let index = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
        shard.set(index);
        index
    })
}

impl Recorder {
    /// Counters for a table of `commands` commands.
    pub fn new(commands: usize) -> Recorder {
        let shards = (0..SHARDS)
            .map(|_| Shard {
                results: (0..commands).map(|_| Default::default()).collect(),
                unknown: AtomicU64::new(0),
                processed: AtomicU64::new(0),
                latency: Default::default(),
            })
            .collect();
        Recorder { shards }
    }

    fn shard(&self) -> &Shard {
        &self.shards[shard_index()]
    }

    /// A request was dispatched.
    pub fn processed(&self) {
        self.shard().processed.fetch_add(1, Ordering::Relaxed);
    }

    /// Command `number` replied with `outcome`.
    pub fn result(&self, number: usize, outcome: Outcome) {
        self.shard().results[number][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A request named no command.
    pub fn unknown(&self) {
        self.shard().unknown.fetch_add(1, Ordering::Relaxed);
    }

    /// A command of `family` took `elapsed` from parse to reply.
    pub fn latency(&self, family: Family, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let histogram = &self.shard().latency[family as usize];
        histogram.buckets[bucket_of(nanos)].fetch_add(1, Ordering::Relaxed);
        histogram.sum_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The sums over the shards.
    pub fn totals(&self) -> Totals {
        let commands = self.shards.first().map_or(0, |s| s.results.len());
        let mut totals = Totals {
            results: vec![[0; 2]; commands],
            unknown: 0,
            processed: 0,
            latency: Default::default(),
        };
        for shard in self.shards.iter() {
            for (sum, counters) in totals.results.iter_mut().zip(shard.results.iter()) {
                sum[0] += counters[0].load(Ordering::Relaxed);
                sum[1] += counters[1].load(Ordering::Relaxed);
            }
            totals.unknown += shard.unknown.load(Ordering::Relaxed);
            totals.processed += shard.processed.load(Ordering::Relaxed);
            for (sum, histogram) in totals.latency.iter_mut().zip(&shard.latency) {
                for (bucket, count) in sum.buckets.iter_mut().zip(&histogram.buckets) {
                    *bucket += count.load(Ordering::Relaxed);
                }
                sum.sum_ns += histogram.sum_ns.load(Ordering::Relaxed);
            }
        }
        totals
    }

    /// Requests dispatched so far (INFO's `total_commands_processed`).
    pub fn processed_total(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.processed.load(Ordering::Relaxed))
            .sum()
    }
}

/// The recorder's counters summed over its shards.
#[derive(Debug, Clone)]
pub struct Totals {
    /// `[ok, error]` per command number.
    pub results: Vec<[u64; 2]>,
    pub unknown: u64,
    pub processed: u64,
    /// Per family, in [`Family::ALL`]'s order.
    pub latency: [LatencyTotals; Family::ALL.len()],
}

/// One family's histogram, summed.
#[derive(Debug, Clone, Default)]
pub struct LatencyTotals {
    /// Per bucket, not cumulative; the last is the overflow bucket.
    pub buckets: [u64; BUCKETS + 1],
    pub sum_ns: u64,
}

impl LatencyTotals {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The `q` quantile (0 < q <= 1) in seconds, as Prometheus's `histogram_quantile`
    /// estimates it: the bucket holding it, linearly interpolated between its bounds (the
    /// first bucket from 0; the overflow bucket answers the last finite bound). `None` with no
    /// samples.
    pub fn quantile_seconds(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (i, &in_bucket) in self.buckets.iter().enumerate() {
            if in_bucket == 0 || ((below + in_bucket) as f64) < rank {
                below += in_bucket;
                continue;
            }
            let Some(&upper) = BUCKET_BOUNDS_NS.get(i) else {
                return Some(BUCKET_BOUNDS_NS[BUCKETS - 1] as f64 / 1e9);
            };
            let lower = if i == 0 { 0 } else { BUCKET_BOUNDS_NS[i - 1] };
            let fraction = (rank - below as f64) / in_bucket as f64;
            let nanos = lower as f64 + (upper - lower) as f64 * fraction;
            return Some(nanos / 1e9);
        }
        Some(BUCKET_BOUNDS_NS[BUCKETS - 1] as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_the_first_bound_at_or_above() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(256), 0);
        assert_eq!(bucket_of(257), 1);
        assert_eq!(bucket_of(512), 1);
        assert_eq!(bucket_of(513), 2);
        for (i, &bound) in BUCKET_BOUNDS_NS.iter().enumerate() {
            assert_eq!(bucket_of(bound), i, "bound {bound}");
            assert_eq!(bucket_of(bound + 1), i + 1, "past bound {bound}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS);
        assert_eq!(BUCKET_BOUNDS_NS[BUCKETS - 1], 1 << 30);
    }

    #[test]
    fn totals_sum_the_shards_of_every_thread() {
        let recorder = std::sync::Arc::new(Recorder::new(3));
        let threads: Vec<_> = (0..SHARDS + 2)
            .map(|_| {
                let recorder = recorder.clone();
                std::thread::spawn(move || {
                    recorder.result(2, Outcome::Ok);
                    recorder.result(2, Outcome::Error);
                    recorder.processed();
                    recorder.latency(Family::Queue, Duration::from_nanos(300));
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let totals = recorder.totals();
        let n = (SHARDS + 2) as u64;
        assert_eq!(totals.results, vec![[0, 0], [0, 0], [n, n]]);
        assert_eq!((totals.processed, recorder.processed_total()), (n, n));
        let queue = &totals.latency[Family::Queue as usize];
        assert_eq!(
            (queue.count(), queue.buckets[1], queue.sum_ns),
            (n, n, 300 * n)
        );
        assert_eq!(totals.latency[Family::Kv as usize].count(), 0);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let mut totals = LatencyTotals::default();
        assert_eq!(totals.quantile_seconds(0.5), None);
        // 100 samples in (512, 1024] ns: the median is half-way.
        totals.buckets[2] = 100;
        assert_eq!(totals.quantile_seconds(0.5), Some(768e-9));
        assert_eq!(totals.quantile_seconds(1.0), Some(1024e-9));
        // One sample past every bound: p100 is the last finite bound.
        totals.buckets[BUCKETS] = 1;
        assert_eq!(
            totals.quantile_seconds(1.0),
            Some((1u64 << 30) as f64 / 1e9)
        );
        let median = totals.quantile_seconds(0.5).unwrap();
        assert!(
            (median - (512.0 + 512.0 * 50.5 / 100.0) * 1e-9).abs() < 1e-15,
            "{median}"
        );
    }
}
