//! Sealing full segments (flush, cut to the last record, remap read-only) and prefaulting the
//! next one, on the `flin-seal` thread.

use std::sync::Arc;
use std::time::Duration;

use super::{Inner, LogLevel};
use crate::error::Result;
use crate::segment::{Segment, SEGMENT_CAPACITY_ALIGN_BYTES};

impl Inner {
    /// Flushes a sealed segment, cuts its file to the last record, fsyncs it, and swaps in a
    /// read-only mapping. Idempotent. A failure poisons the engine (its records may not be on
    /// disk, and the flush will not be retried).
    pub(super) fn seal_segment(&self, segment: &Arc<Segment>) -> Result<()> {
        let _sealing = self.seal_lock.lock().expect("seal lock");
        if !segment.is_durably_sealed() {
            // After a failed flush nothing is flushed again (decision 10).
            self.check_writable()?;
            // Nothing writes this segment any more: its page-table entries can go before the
            // flush, which then sends no TLB-shootdown interrupt per page to the writer's core.
            segment.drop_page_entries(segment.published());
            let sealed = segment
                .flush_range(0, segment.published())
                .and_then(|_| segment.truncate_to_published())
                .and_then(|_| segment.reopen_read_only(&self.backend));
            match sealed {
                Ok(Some(read_only)) => {
                    let mut table = self.segments.write().expect("segment table lock");
                    table.install(Arc::new(read_only));
                    self.index.publish_segments(&table);
                    drop(table);
                    segment.mark_durably_sealed();
                }
                Ok(None) => segment.mark_durably_sealed(),
                Err(e) => {
                    self.set_poison(e.to_string());
                    return Err(e);
                }
            }
        }
        let mut pending = self.seal_pending.lock().expect("seal lock");
        if pending.as_ref().is_some_and(|p| Arc::ptr_eq(p, segment)) {
            *pending = None;
        }
        Ok(())
    }

    /// Seals the segment waiting for the sealer thread, if any, on this thread: compaction and
    /// hint writing only take durably sealed segments, and a caller asking for either now
    /// should not depend on how far the sealer has got.
    pub(crate) fn finish_pending_seal(&self) -> Result<()> {
        let pending = self.seal_pending.lock().expect("seal lock").clone();
        match pending {
            Some(segment) => self.seal_segment(&segment),
            None => Ok(()),
        }
    }

    /// The sealer thread: seals what rotation hands over, and finishes before shutdown.
    /// Asks the sealer thread to fault in the pages of a new active segment.
    pub(super) fn request_prefault(&self, segment: Arc<Segment>) {
        let _wake_after = self.seal_pending.lock().expect("seal lock");
        *self.prefault_wanted.lock().expect("prefault lock") = Some(segment);
        self.seal_wanted.notify_one();
    }

    /// Faults in the unwritten pages of the active segment, a few MiB at a time, ahead of the
    /// writer: the page faults (page-cache allocation and zeroing, `page_mkwrite` for a file)
    /// were a fifth of a put's time when the writer took them itself.
    pub(super) fn prefault(&self, segment: &Segment) {
        const CHUNK_BYTES: usize = 4 << 20;
        let mut from =
            segment.published() / SEGMENT_CAPACITY_ALIGN_BYTES * SEGMENT_CAPACITY_ALIGN_BYTES;
        let end = segment.capacity();
        while from < end {
            if segment.is_sealed() || *self.shutdown.lock().expect("shutdown lock") {
                return;
            }
            let to = (from + CHUNK_BYTES).min(end);
            if segment.prefault(from, to).is_err() {
                return;
            }
            from = to;
        }
    }

    /// The sealer thread: prefaults each new active segment, seals what rotation hands over,
    /// and finishes before shutdown.
    pub(super) fn seal_in_background(&self) {
        loop {
            let (pending, prefault) = {
                let pending = self.seal_pending.lock().expect("seal lock");
                // Shutdown also notifies `seal_wanted`; the timeout is only a backstop.
                let stopping = || *self.shutdown.lock().expect("shutdown lock");
                let prefault_wanted = || {
                    self.prefault_wanted
                        .lock()
                        .expect("prefault lock")
                        .is_some()
                };
                let (pending, _) = self
                    .seal_wanted
                    .wait_timeout_while(pending, Duration::from_millis(100), |p| {
                        p.is_none() && !prefault_wanted() && !stopping()
                    })
                    .expect("seal lock");
                let prefault = self.prefault_wanted.lock().expect("prefault lock").take();
                (pending.clone(), prefault)
            };
            // The writer is waiting on page faults now; the seal only has to finish before the
            // next rotation.
            if let Some(segment) = &prefault {
                self.prefault(segment);
            }
            if let Some(segment) = pending {
                if let Err(e) = self.seal_segment(&segment) {
                    // The engine is poisoned: no rotation hands over another segment, and
                    // trying this one again would retry a failed flush. The next open finishes
                    // the seal from what is on disk.
                    (self.config.logger)(
                        LogLevel::Error,
                        &format!("sealing segment {} failed: {e}", segment.id),
                    );
                    return;
                }
            } else if prefault.is_none() && *self.shutdown.lock().expect("shutdown lock") {
                return;
            }
        }
    }
}
