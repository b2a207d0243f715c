//! Pacing the leader's catch-up feed from its log (`--catch-up-rate-mb`, docs/ARCHITECTURE.md
//! decision 101): a token bucket per follower, refilled at the rate asked, that the raft
//! thread asks before it reads the next batch back from the engine. It never sleeps (the raft
//! thread must keep ticking and answering): it says when the next batch may go, and the
//! thread's poll wakes then.

use std::time::{Duration, Instant};

/// What one entry costs on top of its data (its index, term and length on the wire, and the
/// engine record's header it is read from): small entries are paced by their count too.
pub const ENTRY_OVERHEAD_BYTES: u64 = 32;
/// `--catch-up-rate-mb` unless given: MB (10^6 bytes) per second per follower.
pub const CATCH_UP_RATE_MB_DEFAULT: u64 = 16;
/// The most the bucket holds, in time at the rate: how large a burst may follow a pause.
const BURST: Duration = Duration::from_millis(5);

/// A paced feed goes at least this many times as fast as the leader's own writes (measured
/// by `WriteRate`), whatever `--catch-up-rate-mb` says, so a follower fed from the log closes
/// its gap under any sustained load.
pub const FEED_OVER_WRITES: u64 = 2;
/// The window over which `WriteRate` measures.
const WRITE_WINDOW: Duration = Duration::from_secs(1);

/// The leader's write rate in bytes per second (its entries' data plus
/// `ENTRY_OVERHEAD_BYTES` each), over the last whole window: what the feed of a lagging
/// follower must outrun.
#[derive(Debug)]
pub struct WriteRate {
    window_start: Instant,
    in_window: u64,
    last: u64,
}

impl WriteRate {
    pub fn new(now: Instant) -> WriteRate {
        WriteRate {
            window_start: now,
            in_window: 0,
            last: 0,
        }
    }

    /// Counts `bytes` written at `now`.
    pub fn note(&mut self, bytes: u64, now: Instant) {
        self.roll(now);
        self.in_window += bytes;
    }

    /// Bytes per second over the last whole window before `now` (0 after a window with
    /// nothing written, or if more than a window passed since the last write).
    pub fn per_second(&mut self, now: Instant) -> u64 {
        self.roll(now);
        self.last
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WRITE_WINDOW {
            return;
        }
        self.last = match elapsed < 2 * WRITE_WINDOW {
            true => (self.in_window as f64 / elapsed.as_secs_f64()) as u64,
            false => 0,
        };
        self.in_window = 0;
        self.window_start = now;
    }
}

/// A token bucket in bytes. A batch may go while the bucket holds anything; what it costs is
/// taken afterwards and may leave the bucket in debt, which later refills pay off first (so a
/// batch is never split and the rate holds over time).
#[derive(Debug)]
pub struct Pacer {
    bytes_per_second: u64,
    /// Bytes that may go now; negative: owed.
    allowance: f64,
    burst: f64,
    at: Instant,
}

impl Pacer {
    /// A full bucket at `now`. `bytes_per_second` 0: no limit.
    pub fn new(bytes_per_second: u64, now: Instant) -> Pacer {
        let burst = bytes_per_second as f64 * BURST.as_secs_f64();
        Pacer {
            bytes_per_second,
            allowance: burst,
            burst,
            at: now,
        }
    }

    /// Refills at `bytes_per_second` from now on (the burst follows); a pacer with no limit
    /// (0) keeps none.
    pub fn set_rate(&mut self, bytes_per_second: u64) {
        if self.bytes_per_second == 0 || bytes_per_second == self.bytes_per_second {
            return;
        }
        self.bytes_per_second = bytes_per_second;
        self.burst = bytes_per_second as f64 * BURST.as_secs_f64();
        self.allowance = self.allowance.min(self.burst);
    }

    /// `None` if a batch may go at `now`; otherwise when one may.
    pub fn wait_until(&mut self, now: Instant) -> Option<Instant> {
        if self.bytes_per_second == 0 {
            return None;
        }
        if now > self.at {
            let earned = (now - self.at).as_secs_f64() * self.bytes_per_second as f64;
            self.allowance = (self.allowance + earned).min(self.burst);
            self.at = now;
        }
        if self.allowance > 0.0 {
            return None;
        }
        // One byte past the debt, rounded up to the next microsecond.
        let owed = -self.allowance + 1.0;
        let micros = (owed * 1e6 / self.bytes_per_second as f64).ceil() as u64;
        Some(self.at + Duration::from_micros(micros.max(1)))
    }

    /// Takes what a batch that went cost: its entries' data plus `ENTRY_OVERHEAD_BYTES` each.
    pub fn spend(&mut self, bytes: u64) {
        if self.bytes_per_second > 0 {
            self.allowance -= bytes as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_never_waits() {
        let now = Instant::now();
        let mut pacer = Pacer::new(0, now);
        pacer.spend(u64::MAX / 2);
        assert_eq!(pacer.wait_until(now), None);
    }

    #[test]
    fn a_batch_in_debt_waits_until_the_rate_pays_it_off() {
        let start = Instant::now();
        // 1 MB/s: the bucket holds 5,000 bytes (5 ms).
        let mut pacer = Pacer::new(1_000_000, start);
        assert_eq!(
            pacer.wait_until(start),
            None,
            "a full bucket lets a batch go"
        );
        pacer.spend(100_000);
        let at = pacer.wait_until(start).expect("in debt");
        // 95,000 owed and one byte more at 1 MB/s: 95.001 ms.
        assert_eq!(at - start, Duration::from_micros(95_001));
        assert!(
            pacer
                .wait_until(start + Duration::from_millis(95))
                .is_some(),
            "still 1 byte short a microsecond early"
        );
        assert_eq!(pacer.wait_until(at), None);
    }

    #[test]
    fn a_raised_rate_pays_a_debt_off_sooner_and_no_limit_stays_no_limit() {
        let start = Instant::now();
        let mut pacer = Pacer::new(1_000_000, start);
        pacer.spend(100_000);
        let slow = pacer.wait_until(start).expect("in debt");
        pacer.set_rate(4_000_000);
        let fast = pacer.wait_until(start).expect("still in debt");
        // 95,001 bytes at 4 MB/s: 23.75 ms, against 95 ms at 1 MB/s.
        assert_eq!(fast - start, Duration::from_micros(23_751));
        assert!(fast < slow);
        let mut unlimited = Pacer::new(0, start);
        unlimited.set_rate(4_000_000);
        unlimited.spend(u64::MAX / 2);
        assert_eq!(unlimited.wait_until(start), None);
    }

    #[test]
    fn the_write_rate_is_the_last_whole_window_and_falls_to_zero_when_writes_stop() {
        let start = Instant::now();
        let mut rate = WriteRate::new(start);
        assert_eq!(rate.per_second(start), 0, "no window has ended yet");
        for ms in 0..1000 {
            rate.note(1_000, start + Duration::from_millis(ms));
        }
        // The window that ended at 1 s held 1,000 writes of 1,000 bytes.
        assert_eq!(rate.per_second(start + Duration::from_secs(1)), 1_000_000);
        assert_eq!(
            rate.per_second(start + Duration::from_millis(1500)),
            1_000_000,
            "the next window has not ended"
        );
        assert_eq!(
            rate.per_second(start + Duration::from_millis(2500)),
            0,
            "a whole window without a write"
        );
        assert_eq!(rate.per_second(start + Duration::from_secs(10)), 0);
    }

    #[test]
    fn over_a_second_the_rate_holds_and_a_pause_earns_no_more_than_the_burst() {
        let start = Instant::now();
        let mut pacer = Pacer::new(1_000_000, start);
        // Send 10,000-byte batches whenever allowed, for one simulated second.
        let (mut now, mut sent) = (start, 0u64);
        while now < start + Duration::from_secs(1) {
            match pacer.wait_until(now) {
                None => {
                    pacer.spend(10_000);
                    sent += 10_000;
                }
                Some(at) => now = at,
            }
        }
        // The first batch goes on the burst, then one per 10 ms: 1 MB, give or take a batch.
        assert!(
            (1_000_000..=1_020_000).contains(&sent),
            "{sent} bytes in a second"
        );
        // A long pause refills only the burst (5,000 bytes): one batch, then a wait.
        let later = now + Duration::from_secs(60);
        assert_eq!(pacer.wait_until(later), None);
        pacer.spend(10_000);
        let at = pacer.wait_until(later).expect("the burst is spent");
        assert_eq!(at - later, Duration::from_micros(5_001));
    }
}
