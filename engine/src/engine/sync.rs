//! Durability: group commit (a waiter flushes for everyone who arrived before it, and up to
//! `Config::flushes_in_flight` flushes of successive ranges run at once) and the
//! once-a-second flush.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Inner, SyncState};
use crate::error::Result;
use crate::segment::Segment;

/// A flush under way (`SyncState::flights`).
pub(super) struct Flight {
    number: u64,
    /// Every record through this seq is in this flush's range or an earlier one's (lowered
    /// by a truncation that removes records above it).
    seq: u64,
    /// `Some(succeeded)` once it returned.
    landed: Option<bool>,
}

/// The bytes one flush covers: taken under the writer lock, so they hold every record
/// through its seq that earlier flushes do not.
struct Range {
    number: u64,
    segment: Arc<Segment>,
    from: usize,
    to: usize,
    /// A rotated segment still waiting for its seal: its records are older than the active
    /// ones and must be on disk before this flush may declare its seq durable.
    sealing: Option<Arc<Segment>>,
}

impl Inner {
    /// Takes the next flush's range, from where the last one taken ended to what is written
    /// now, and enters it in `flights` (the caller counted itself in `starting`).
    fn take_range(&self) -> Range {
        let writer = self.lock_writer();
        let segment = writer.active.segment.clone();
        let to = segment.published();
        let seq = self.last_seq.load(Ordering::Acquire);
        let sealing = self.seal_pending.lock().expect("seal lock").clone();
        let mut state = self.sync.lock().expect("sync lock");
        let from = match state.taken_segment_id == segment.id {
            true => state.taken_offset.min(to),
            false => 0,
        };
        state.taken_segment_id = segment.id;
        state.taken_offset = to;
        let number = state.next_flight;
        state.next_flight += 1;
        state.starting -= 1;
        state.flights.push_back(Flight {
            number,
            seq,
            landed: None,
        });
        drop(state);
        drop(writer);
        Range {
            number,
            segment,
            from,
            to,
            sealing,
        }
    }

    /// Flushes one range (no lock held: other flushes, and writes, go on meanwhile).
    fn flush_range(&self, range: &Range) -> Result<()> {
        let started = Instant::now();
        if let Some(sealing) = &range.sealing {
            sealing.flush_range(0, sealing.published())?;
        }
        range.segment.flush_range(range.from, range.to)?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.flush_nanos.fetch_add(nanos, Ordering::Relaxed);
        Ok(())
    }

    /// Makes `seq` durable. Threads waiting at the same time share a flush: one that finds a
    /// flush under way whose range holds `seq` waits for it. Up to `flushes_in_flight`
    /// flushes run at once, each over the bytes written since the one before it was taken:
    /// a write that arrives during a flush starts its own at once instead of waiting for it
    /// (concurrent fsyncs of disjoint ranges overlap in the device; decision 108). A flush
    /// declares its seq durable only once every earlier one has landed too.
    pub(crate) fn sync_to(&self, seq: u64) -> Result<()> {
        if self.dir.is_none() {
            return Ok(());
        }
        let most = self.config.flushes_in_flight.max(1);
        let mut state = self.sync.lock().expect("sync lock");
        loop {
            // A truncation may have removed the records above `seq`'s place since the caller
            // asked: what remains written is all there is to make durable.
            let seq = seq.min(self.last_seq.load(Ordering::Acquire));
            if state.durable_seq >= seq {
                return Ok(());
            }
            if self.poisoned.load(Ordering::Acquire) {
                drop(state);
                return self.check_writable();
            }
            let covered = state.flights.iter().any(|flight| flight.seq >= seq);
            if covered || state.flights.len() + state.starting >= most {
                state = self.sync_done.wait(state).expect("sync lock");
                continue;
            }
            state.starting += 1;
            drop(state);
            let range = self.take_range();
            let result = self.flush_range(&range);
            state = self.sync.lock().expect("sync lock");
            if let Err(e) = &result {
                // After a failed fsync the kernel may have dropped the dirty pages:
                // retrying could report success for data that is gone. Poison for good.
                self.set_poison(e.to_string());
            }
            land(&mut state, range.number, result.is_ok());
            self.sync_done.notify_all();
        }
    }

    /// A truncation removed the entries above `seq`: nothing above it is durable any more,
    /// and a flush under way (its range taken before the cut) covers nothing above it either.
    pub(super) fn lower_durable_seq(&self, seq: u64) {
        let mut state = self.sync.lock().expect("sync lock");
        state.durable_seq = state.durable_seq.min(seq);
        for flight in &mut state.flights {
            flight.seq = flight.seq.min(seq);
        }
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

/// A flush returned: marks it, and declares durable the seq of every flush at the front of
/// `flights` that has landed (a failed one declares nothing: the engine is poisoned).
fn land(state: &mut SyncState, number: u64, succeeded: bool) {
    if let Some(flight) = state.flights.iter_mut().find(|f| f.number == number) {
        flight.landed = Some(succeeded);
    }
    if !succeeded {
        // The bytes of this range may be gone: no later range makes its records durable.
        let durable = state.durable_seq;
        for flight in &mut state.flights {
            flight.seq = flight.seq.min(durable);
        }
    }
    while let Some(flight) = state.flights.front() {
        let Some(succeeded) = flight.landed else {
            break;
        };
        if succeeded {
            state.durable_seq = state.durable_seq.max(flight.seq);
        }
        state.flights.pop_front();
    }
}
