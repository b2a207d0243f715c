//! [`IoCounters`]: bytes the event loops read from and wrote to client sockets, and
//! connections refused by `max_clients`, for the daemon's metrics. Each loop adds to a slot of its own (slots are 128-byte aligned, so two
//! loops never share a cache line): one relaxed add per read or write call, never contended
//! while there are no more loops than [`IO_SLOTS`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Slots of the counters; loop `i` adds to slot `i % IO_SLOTS`.
pub const IO_SLOTS: usize = 16;

#[derive(Default)]
#[repr(align(128))]
struct Slot {
    read: AtomicU64,
    written: AtomicU64,
}

/// Bytes read and written over all loops, and connections refused.
#[derive(Default)]
pub struct IoCounters {
    slots: [Slot; IO_SLOTS],
    /// Connections closed at once because `max_clients` were open (rare: one shared counter).
    refused: AtomicU64,
}

impl IoCounters {
    pub fn new() -> IoCounters {
        IoCounters::default()
    }

    /// Total bytes read from client sockets.
    pub fn bytes_read(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.read.load(Ordering::Relaxed))
            .sum()
    }

    /// Connections refused because `max_clients` were open.
    pub fn connections_refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn refused_one(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Total bytes written to client sockets.
    pub fn bytes_written(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.written.load(Ordering::Relaxed))
            .sum()
    }
}

/// One loop's view of the counters: where its connections add.
#[derive(Clone)]
pub(crate) struct IoSlot {
    counters: Arc<IoCounters>,
    slot: usize,
}

impl IoSlot {
    pub(crate) fn new(counters: Arc<IoCounters>, loop_index: usize) -> IoSlot {
        IoSlot {
            counters,
            slot: loop_index % IO_SLOTS,
        }
    }

    pub(crate) fn read(&self, bytes: usize) {
        self.counters.slots[self.slot]
            .read
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn written(&self, bytes: usize) {
        self.counters.slots[self.slot]
            .written
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_sum_into_the_totals() {
        let counters = Arc::new(IoCounters::new());
        for index in 0..IO_SLOTS + 3 {
            let slot = IoSlot::new(counters.clone(), index);
            slot.read(10);
            slot.written(1);
        }
        let loops = (IO_SLOTS + 3) as u64;
        assert_eq!(counters.bytes_read(), 10 * loops);
        assert_eq!(counters.bytes_written(), loops);
    }
}
