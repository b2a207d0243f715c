//! Durability: group commit (the first waiter flushes for everyone) and the once-a-second flush.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Inner;
use crate::error::Result;

impl Inner {
    /// Flushes the active segment up to what is written now; returns the seq that is durable.
    pub(super) fn flush_active(&self) -> Result<u64> {
        let (segment, to, seq, sealing) = {
            let writer = self.lock_writer();
            (
                writer.active.segment.clone(),
                writer.active.segment.published(),
                self.last_seq.load(Ordering::Acquire),
                self.seal_pending.lock().expect("seal lock").clone(),
            )
        };
        let started = Instant::now();
        // Records of a segment still waiting for its seal are older than the active ones: they
        // must be on disk before this flush may declare `seq` durable.
        if let Some(sealing) = sealing {
            sealing.flush_range(0, sealing.published())?;
        }
        let from = {
            let state = self.sync.lock().expect("sync lock");
            if state.flushed_segment_id == segment.id {
                state.flushed_offset
            } else {
                0
            }
        };
        segment.flush_range(from, to)?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.flush_nanos.fetch_add(nanos, Ordering::Relaxed);
        let mut state = self.sync.lock().expect("sync lock");
        state.flushed_segment_id = segment.id;
        state.flushed_offset = to;
        Ok(seq)
    }

    /// Makes `seq` durable, sharing one flush among all threads waiting at the same time.
    pub(crate) fn sync_to(&self, seq: u64) -> Result<()> {
        if self.dir.is_none() {
            return Ok(());
        }
        let mut state = self.sync.lock().expect("sync lock");
        loop {
            if state.durable_seq >= seq {
                return Ok(());
            }
            if self.poisoned.load(Ordering::Acquire) {
                drop(state);
                return self.check_writable();
            }
            if state.flushing {
                state = self.sync_done.wait(state).expect("sync lock");
                continue;
            }
            state.flushing = true;
            drop(state);
            let result = self.flush_active();
            state = self.sync.lock().expect("sync lock");
            state.flushing = false;
            match result {
                Ok(durable) => state.durable_seq = state.durable_seq.max(durable),
                Err(e) => {
                    // After a failed fsync the kernel may have dropped the dirty pages:
                    // retrying could report success for data that is gone. Poison for good.
                    self.set_poison(e.to_string());
                }
            }
            self.sync_done.notify_all();
        }
    }

    /// A truncation removed the entries above `seq`: nothing above it is durable any more.
    pub(super) fn lower_durable_seq(&self, seq: u64) {
        let mut state = self.sync.lock().expect("sync lock");
        state.durable_seq = state.durable_seq.min(seq);
    }

    pub(crate) fn flush(&self) -> Result<()> {
        let seq = self.last_seq.load(Ordering::Acquire);
        self.sync_to(seq)
    }

    pub(super) fn flush_every_second(&self) {
        while !self.wait_for_shutdown(Duration::from_secs(1)) {
            let _ = self.flush();
        }
    }
}
