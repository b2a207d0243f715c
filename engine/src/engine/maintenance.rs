//! The background threads' bookkeeping, and the maintenance thread: active expiry and
//! compaction.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{BackgroundThreads, Inner, LogLevel};
use crate::compaction;
use crate::index::{NAMESPACE_TAGS, SHARD_COUNT};

impl BackgroundThreads {
    pub(super) fn spawn(&self, name: &str, work: impl FnOnce() + Send + 'static) {
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(work)
            .expect("spawn engine thread");
        self.handles.lock().expect("handles lock").push(handle);
    }
}

impl Inner {
    pub(super) fn wait_for_shutdown(&self, timeout: Duration) -> bool {
        let stopped = self.shutdown.lock().expect("shutdown lock");
        let (stopped, _) = self
            .shutdown_signal
            .wait_timeout_while(stopped, timeout, |stopped| !*stopped)
            .expect("shutdown lock");
        *stopped
    }

    pub(super) fn background_maintenance(&self) {
        let interval = Duration::from_millis(self.config.compaction.interval_ms.max(10));
        // Active expiry walks a slice of the shards each round, so a large index is never
        // locked for long.
        let mut next_shard = 0;
        const SHARDS_PER_ROUND: usize = 64;
        while !self.wait_for_shutdown(interval) {
            let end = (next_shard + SHARDS_PER_ROUND).min(SHARD_COUNT);
            self.reclaim_expired(next_shard..end);
            next_shard = if end == SHARD_COUNT { 0 } else { end };
            if self.poisoned.load(Ordering::Acquire) {
                continue;
            }
            let started = Instant::now();
            match compaction::compact_counting(
                self,
                self.config.compaction.garbage_ratio_min,
                compaction::COVERED_COUNTS_PER_ROUND,
            ) {
                Ok(report) if report.segments_in > 0 => (self.config.logger)(
                    LogLevel::Info,
                    &format!(
                        "compacted {} segments into {}: reclaimed {} bytes in {} ms",
                        report.segments_in,
                        report.segments_out,
                        report.bytes_reclaimed,
                        started.elapsed().as_millis()
                    ),
                ),
                Ok(_) => {}
                Err(e) => (self.config.logger)(LogLevel::Error, &format!("compaction failed: {e}")),
            }
            if let Err(e) = compaction::write_missing_hints(self) {
                (self.config.logger)(LogLevel::Warn, &format!("hint file writing failed: {e}"));
            }
        }
    }

    /// Drops expired keys of the given shards from the index. Nothing is written: recovery
    /// treats an expired record as a tombstone, and compaction drops it.
    pub(crate) fn reclaim_expired(&self, shards: std::ops::Range<usize>) -> usize {
        let now_ms = self.config.clock.now_ms();
        let mut reclaimed = 0;
        for shard in shards {
            for tag in 0..NAMESPACE_TAGS as u8 {
                let has_expired = self
                    .index
                    .read(tag, shard)
                    .table
                    .iter()
                    .any(|s| s.is_expired(now_ms));
                if !has_expired {
                    continue;
                }
                let mut guard = self.index.write(tag, shard);
                let (table, segments) = guard.split_mut();
                let dropped = table.retain(|slot| {
                    if !slot.is_expired(now_ms) {
                        return true;
                    }
                    Inner::mark_dead(segments, slot.location());
                    false
                });
                self.key_counts[tag as usize].fetch_sub(dropped as u64, Ordering::Relaxed);
                reclaimed += dropped;
            }
        }
        self.expired_reclaimed
            .fetch_add(reclaimed as u64, Ordering::Relaxed);
        reclaimed
    }
}
