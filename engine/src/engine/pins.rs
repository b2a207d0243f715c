//! Compaction pins: a pin at seq `s` keeps compaction away from every segment that holds a
//! record with seq `s` or later, so those records stay exactly as written (nothing dropped,
//! nothing merged). A follower that lags, a tail reader, a data model replaying the log after
//! its snapshot: each holds a pin at the first seq it still needs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The pins held, by id.
#[derive(Default)]
pub(crate) struct PinSet {
    pins: Mutex<PinTable>,
}

#[derive(Default)]
struct PinTable {
    next_id: u64,
    seq_by_id: BTreeMap<u64, u64>,
}

impl PinSet {
    fn table(&self) -> std::sync::MutexGuard<'_, PinTable> {
        self.pins.lock().expect("pin table lock")
    }

    /// The lowest pinned seq, if any pin is held.
    pub fn lowest(&self) -> Option<u64> {
        self.table().seq_by_id.values().copied().min()
    }
}

/// A held pin (see the module doc). Dropping it releases it.
pub struct Pin {
    set: Arc<PinSet>,
    id: u64,
}

impl Pin {
    pub(crate) fn new(set: &Arc<PinSet>, seq: u64) -> Pin {
        let mut table = set.table();
        let id = table.next_id;
        table.next_id += 1;
        table.seq_by_id.insert(id, seq);
        Pin {
            set: set.clone(),
            id,
        }
    }

    /// The first seq this pin keeps.
    pub fn seq(&self) -> u64 {
        self.set.table().seq_by_id[&self.id]
    }

    /// Moves the pin forward to `seq` (records before it may be compacted from now on); a
    /// lower `seq` than the pin's is ignored: a pin never moves back, since what it released
    /// may already be gone.
    pub fn advance(&self, seq: u64) {
        let mut table = self.set.table();
        let pinned = table.seq_by_id.get_mut(&self.id).expect("held pin");
        *pinned = (*pinned).max(seq);
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.set.table().seq_by_id.remove(&self.id);
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pin").field("seq", &self.seq()).finish()
    }
}
